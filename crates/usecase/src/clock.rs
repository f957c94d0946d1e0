//! Time as a dependency, so rules about "now" are testable.
use chrono::{DateTime, SubsecRound as _, Utc};

/// Source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, truncated to microseconds (the storage precision), so a value read
    /// back equals the value written.
    fn now(&self) -> DateTime<Utc>;
}

/// A shared clock is a clock (services hold one `Arc<dyn Clock>` that
/// tests replace with a [`ManualClock`]).
impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that stands still until told to move: tests drive time-based
/// rules (timers, service levels) with it instead of waiting.
#[derive(Debug, Clone)]
pub struct ManualClock(std::sync::Arc<std::sync::Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(
            now.trunc_subsecs(6),
        )))
    }

    /// Moves the clock (and every clone) forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().expect("clock lock");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}
