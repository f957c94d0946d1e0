//! Time as a dependency, so rules about "now" are testable.
use chrono::{DateTime, SubsecRound as _, Utc};

/// Source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, truncated to microseconds (the storage precision), so a value read
    /// back equals the value written.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
