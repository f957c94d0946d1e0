//! Per-backend adaptive concurrency limits: the gateway sheds a call at once
//! (RESOURCE_EXHAUSTED, reason OVERLOADED) when a backend already has as many
//! calls in flight as it can serve without queueing.
//!
//! A fixed limit cannot fit both a 0.3 ms echo and a 50 ms write: sized for
//! one it either never sheds or starves the other. So the limit of each
//! backend follows Netflix's Gradient2 (from `tower-acc`): it shrinks while
//! the latest round-trip time rises above the long-run average (a queue is
//! forming) and grows again while it does not. Measured on the 2-core bench
//! machine: at twice the echo capacity, a 1,024 fixed limit let p99 reach the
//! 10 s deadline; see docs/benchmarks.md for the adaptive result.
use std::{
    cmp::Ordering,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering as AtomicOrdering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Code;
use tower_acc::{Algorithm, Gradient2};

/// Settings of the per-backend limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// Off: only the gateway-wide `concurrency_limit` applies.
    pub enabled: bool,
    /// Calls in flight allowed before any latency has been seen.
    pub initial_limit: usize,
    /// The limit never drops below this (enough to keep a backend busy).
    pub min_limit: usize,
    /// The limit never grows beyond this.
    pub max_limit: usize,
    /// How much slower than the long-run average a call may be before the
    /// limit shrinks (1.5: 50 % slower).
    pub rtt_tolerance: f64,
    /// The gateway's own overload: new calls are shed while its tasks wait
    /// longer than this for a CPU (scheduling delay, smoothed). 0: off.
    pub max_scheduling_delay_ms: u64,
    /// ... but only while more calls than this are in flight: a delay with
    /// few calls is the machine's (a neighbour, a CPU quota), not a backlog
    /// of the gateway's own, and refusing a lone call helps nobody.
    pub shed_in_flight_floor: usize,
    /// ... and only once the delay has stayed above the maximum this long.
    pub shed_after_ms: u64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_limit: 32,
            min_limit: 32,
            max_limit: 1024,
            rtt_tolerance: 1.5,
            max_scheduling_delay_ms: 10,
            shed_in_flight_floor: 32,
            shed_after_ms: 250,
        }
    }
}

/// The gate in front of everything: sheds new calls while the gateway's own
/// CPU is the bottleneck. It needs two signals at once: calls queued in the
/// gateway (in flight above a floor) and a scheduling delay sustained over a
/// window. Delay alone is what a busy neighbour or CFS throttling causes too.
#[derive(Debug)]
pub struct CpuGate {
    delay: Arc<SchedulingDelay>,
    floor: usize,
    window: Duration,
}

impl CpuGate {
    /// A gate over `delay`'s probe.
    pub fn new(delay: Arc<SchedulingDelay>, config: &AdaptiveConfig) -> Self {
        Self {
            delay,
            floor: config.shed_in_flight_floor,
            window: Duration::from_millis(config.shed_after_ms),
        }
    }

    /// Whether to shed a new call, with `in_flight` calls already admitted.
    pub fn sheds(&self, in_flight: usize) -> bool {
        in_flight > self.floor && self.delay.over_for() >= Some(self.window)
    }
}

/// The adaptive limit of one backend.
#[derive(Debug)]
pub struct AdaptiveLimit {
    semaphore: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    algorithm: Gradient2,
    /// Permits the semaphore holds in total (available + in flight).
    permits: usize,
}

/// A call admitted to a backend; report how it ended with [`Admission::finish`].
#[derive(Debug)]
pub struct Admission {
    limit: Arc<AdaptiveLimit>,
    started: Instant,
    permit: Option<OwnedSemaphorePermit>,
}

impl AdaptiveLimit {
    /// A limit with `config`'s bounds (sanitised: min ≤ initial ≤ max, min ≥ 1).
    pub fn new(config: &AdaptiveConfig) -> Arc<Self> {
        let min = config.min_limit.max(1);
        let max = config.max_limit.max(min);
        let initial = config.initial_limit.clamp(min, max);
        let algorithm = Gradient2::builder()
            .initial_limit(initial)
            .min_limit(min)
            .max_limit(max)
            .rtt_tolerance(config.rtt_tolerance.max(1.0))
            .build();
        let permits = algorithm.max_concurrency();
        Arc::new(Self {
            semaphore: Arc::new(Semaphore::new(permits)),
            state: Mutex::new(State { algorithm, permits }),
        })
    }

    /// Admits a call if the backend is under its limit; never waits.
    pub fn try_admit(self: &Arc<Self>) -> Option<Admission> {
        let permit = self.semaphore.clone().try_acquire_owned().ok()?;
        Some(Admission {
            limit: self.clone(),
            started: Instant::now(),
            permit: Some(permit),
        })
    }

    /// The current limit.
    pub fn current(&self) -> usize {
        self.lock().algorithm.max_concurrency()
    }

    /// Calls admitted and not yet finished.
    pub fn in_flight(&self) -> usize {
        let state = self.lock();
        state
            .permits
            .saturating_sub(self.semaphore.available_permits())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Learns from one finished call, whose `permit` is given back here.
    fn observe(
        &self,
        rtt: Duration,
        overloaded: bool,
        cancelled: bool,
        permit: OwnedSemaphorePermit,
    ) {
        let mut state = self.lock();
        // Calls in flight, this one included.
        let in_flight = state
            .permits
            .saturating_sub(self.semaphore.available_permits());
        drop(permit);
        state
            .algorithm
            .update(rtt, in_flight, overloaded, cancelled);
        let wanted = state.algorithm.max_concurrency();
        match wanted.cmp(&state.permits) {
            Ordering::Greater => {
                self.semaphore.add_permits(wanted - state.permits);
                state.permits = wanted;
            }
            // Only idle permits can be taken away now; the rest go when
            // later calls finish and this runs again.
            Ordering::Less => {
                state.permits -= self.semaphore.forget_permits(state.permits - wanted);
            }
            Ordering::Equal => {}
        }
    }
}

impl Admission {
    /// Reports the call's outcome. `measured` is false for streaming calls,
    /// whose duration says nothing about the backend's queue.
    pub fn finish(mut self, code: Code, measured: bool) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let rtt = self.started.elapsed();
        // A backend saying it is overloaded or unreachable is the signal to
        // back off even before its latency shows it.
        let overloaded = matches!(
            code,
            Code::ResourceExhausted | Code::Unavailable | Code::DeadlineExceeded
        );
        let cancelled = !measured || code == Code::Cancelled;
        self.limit.observe(rtt, overloaded, cancelled, permit);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // Dropped without a verdict (the client went away): free the slot,
        // learn nothing.
        self.permit.take();
    }
}

/// How long the gateway's tasks wait for a CPU: a probe task asks to be woken
/// every few milliseconds and measures how late it is. When the gateway's own
/// CPU is the bottleneck, requests queue before any limit can count them
/// (in socket buffers, in HTTP/2 frames not yet read): this delay is what
/// grows then.
#[derive(Debug)]
pub struct SchedulingDelay {
    /// Smoothed delay, µs.
    micros: AtomicU64,
    /// Above this the delay counts as overload.
    max: Duration,
    /// Since when (µs after `epoch`, plus one) the smoothed delay has stayed
    /// above `max`; 0 while it is not.
    over_since: AtomicU64,
    epoch: Instant,
}

impl SchedulingDelay {
    const PROBE_EVERY: Duration = Duration::from_millis(5);

    /// A delay that counts as overload above `max`, with no probe.
    pub fn new(max: Duration) -> Self {
        Self {
            micros: AtomicU64::new(0),
            max,
            over_since: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Starts the probe; it stops when the returned handle is aborted.
    pub fn start(max: Duration) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let delay = Arc::new(Self::new(max));
        let probe = delay.clone();
        let handle = tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                tokio::time::sleep(Self::PROBE_EVERY).await;
                let late = asked.elapsed().saturating_sub(Self::PROBE_EVERY);
                probe.record(late);
            }
        });
        (delay, handle)
    }

    fn record(&self, late: Duration) {
        let sample = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        let old = self.micros.load(AtomicOrdering::Relaxed);
        // Rises in two probes, decays over several: one late wake-up (a
        // page fault, a CFS throttle slice) must not shed, and one quiet
        // probe must not reopen the door to a backlog.
        let new = if sample > old {
            old + (sample - old) / 2
        } else {
            old - (old - sample) / 4
        };
        self.micros.store(new, AtomicOrdering::Relaxed);
        if Duration::from_micros(new) > self.max {
            let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1;
            let _ = self.over_since.compare_exchange(
                0,
                now,
                AtomicOrdering::Relaxed,
                AtomicOrdering::Relaxed,
            );
        } else {
            self.over_since.store(0, AtomicOrdering::Relaxed);
        }
    }

    /// How long the smoothed delay has stayed above the maximum, if it is.
    pub fn over_for(&self) -> Option<Duration> {
        match self.over_since.load(AtomicOrdering::Relaxed) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_micros(since - 1)),
            ),
        }
    }

    /// The current smoothed delay.
    pub fn current(&self) -> Duration {
        Duration::from_micros(self.micros.load(AtomicOrdering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(initial: usize, min: usize, max: usize) -> AdaptiveConfig {
        AdaptiveConfig {
            enabled: true,
            initial_limit: initial,
            min_limit: min,
            max_limit: max,
            rtt_tolerance: 1.5,
            max_scheduling_delay_ms: 10,
            ..AdaptiveConfig::default()
        }
    }

    #[test]
    fn the_cpu_gate_never_sheds_a_lone_call_nor_a_blip() {
        let delay = Arc::new(SchedulingDelay::new(Duration::from_millis(10)));
        let gate = CpuGate::new(
            delay.clone(),
            &AdaptiveConfig {
                shed_in_flight_floor: 8,
                shed_after_ms: 0,
                ..AdaptiveConfig::default()
            },
        );
        assert!(!gate.sheds(100), "no delay, no shedding");
        for _ in 0..4 {
            delay.record(Duration::from_millis(50));
        }
        assert!(delay.over_for().is_some());
        assert!(!gate.sheds(0), "a lone call is never shed");
        assert!(!gate.sheds(8), "nor a few");
        assert!(gate.sheds(9), "a backlog with a sustained delay is");
        for _ in 0..30 {
            delay.record(Duration::ZERO);
        }
        assert_eq!(delay.over_for(), None);
        assert!(!gate.sheds(100));
        let patient = CpuGate::new(
            delay.clone(),
            &AdaptiveConfig {
                shed_in_flight_floor: 0,
                shed_after_ms: 60_000,
                ..AdaptiveConfig::default()
            },
        );
        delay.record(Duration::from_millis(50));
        delay.record(Duration::from_millis(50));
        assert!(!patient.sheds(100), "not before the window has passed");
    }

    #[test]
    fn scheduling_delay_needs_a_sustained_signal() {
        let d = SchedulingDelay::new(Duration::from_millis(10));
        d.record(Duration::from_millis(40));
        assert_eq!(
            d.current(),
            Duration::from_millis(20),
            "one late probe counts half"
        );
        d.record(Duration::from_millis(40));
        assert_eq!(d.current(), Duration::from_millis(30));
        d.record(Duration::ZERO);
        assert_eq!(
            d.current(),
            Duration::from_micros(22_500),
            "one quiet probe is not enough"
        );
        for _ in 0..30 {
            d.record(Duration::ZERO);
        }
        assert!(d.current() < Duration::from_millis(1));
    }

    #[test]
    fn sheds_beyond_the_limit_and_frees_slots_on_finish() {
        let limit = AdaptiveLimit::new(&config(2, 1, 10));
        let a = limit.try_admit().expect("first call admitted");
        let b = limit.try_admit().expect("second call admitted");
        assert!(limit.try_admit().is_none(), "the third is shed");
        a.finish(Code::Ok, true);
        let c = limit.try_admit().expect("a finished call frees its slot");
        drop(b);
        drop(c);
        assert!(limit.try_admit().is_some(), "dropped calls free theirs");
    }

    /// Fills every slot, then one call finishes after `rtt`: a fully used
    /// backend.
    fn finish_one_of_a_full_house(limit: &Arc<AdaptiveLimit>, rtt: Duration) {
        let mut held: Vec<Admission> = std::iter::from_fn(|| limit.try_admit()).collect();
        let mut last = held.pop().expect("at least one slot");
        let permit = last
            .permit
            .take()
            .expect("a fresh admission holds its permit");
        limit.observe(rtt, false, false, permit);
    }

    #[test]
    fn rising_latency_shrinks_the_limit_and_it_never_leaves_its_bounds() {
        let limit = AdaptiveLimit::new(&config(40, 8, 100));
        // A steady backend at 1 ms, fully used.
        for _ in 0..200 {
            finish_one_of_a_full_house(&limit, Duration::from_millis(1));
        }
        let steady = limit.current();
        assert!(
            steady >= 40,
            "a steady backend keeps or grows its limit: {steady}"
        );
        // Then every call takes 20 ms: a queue.
        for _ in 0..200 {
            finish_one_of_a_full_house(&limit, Duration::from_millis(20));
        }
        let queued = limit.current();
        assert!(
            queued < steady,
            "queueing shrinks the limit: {steady} -> {queued}"
        );
        assert!(queued >= 8, "never below the minimum: {queued}");
        // The semaphore follows: no more than the limit is admitted.
        let admitted: Vec<_> = std::iter::from_fn(|| limit.try_admit())
            .take(1000)
            .collect();
        assert_eq!(admitted.len(), queued);
    }

    #[test]
    fn bounds_are_sanitised() {
        let limit = AdaptiveLimit::new(&config(0, 0, 0));
        assert_eq!(limit.current(), 1, "at least one call is always allowed");
        let limit = AdaptiveLimit::new(&config(1000, 4, 16));
        assert_eq!(limit.current(), 16, "initial is capped by max");
    }
}
