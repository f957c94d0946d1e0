//! The load engine, in the style of ghz and wrk2.
//!
//! - Closed loop: `concurrency` workers over `connections` HTTP/2 connections
//!   (one tonic `Channel` each), every worker issuing its next call as soon
//!   as the last one returns. This finds the saturation throughput.
//! - Open loop: calls are due at fixed times (`rate` per second) whatever the
//!   server does, and a call's latency counts from when it was due, not from
//!   when a worker got round to it, so a stalled server is charged for the
//!   calls it delayed (no coordinated omission). `concurrency` bounds the
//!   calls in flight; set it well above rate × latency.
//!
//! Both run a warm-up, then a measured window. A closed-loop call belongs to
//! the window if it started in it; an open-loop call if it was due in it.
//! Calls of the window are waited for after it ends, so slow ones are not
//! dropped. Latency is recorded for successful calls only, in an HDR
//! histogram (1 ns to 60 s, 3 significant digits); failed calls are counted
//! by gRPC code. The CPU time of the watched processes is read from `/proc`
//! at the window's start and end.
use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tonic::{
    Status,
    transport::{Channel, Endpoint},
};

use crate::procfs;

/// How to load a target.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// Length of the measured window.
    pub duration: Duration,
    /// Load before the window, not measured.
    pub warmup: Duration,
    /// Workers: calls in flight at most.
    pub concurrency: usize,
    /// HTTP/2 connections the workers share (round robin).
    pub connections: usize,
    /// Calls per second; `Some` makes the loop open.
    pub rate: Option<f64>,
    /// Deadline of each call.
    pub call_timeout: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            concurrency: 32,
            connections: 4,
            rate: None,
            call_timeout: Duration::from_secs(10),
        }
    }
}

impl LoadConfig {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.duration.is_zero(), "duration must be above zero");
        anyhow::ensure!(self.concurrency >= 1, "concurrency must be at least 1");
        anyhow::ensure!(self.connections >= 1, "connections must be at least 1");
        if let Some(rate) = self.rate {
            anyhow::ensure!(
                rate.is_finite() && rate > 0.0,
                "rate must be a positive number of calls per second"
            );
        }
        Ok(())
    }

    fn mode(&self) -> LoadMode {
        match self.rate {
            None => LoadMode::Closed,
            Some(rate) => LoadMode::Open { rate },
        }
    }
}

/// Where the calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://host:port`.
    pub uri: String,
}

/// What a scenario calls: makes one [`Caller`] per worker.
pub trait Workload: Send + Sync + 'static {
    /// The per-worker caller.
    type Caller: Caller;

    /// A caller for one worker, on one of the run's connections.
    fn caller(&self, channel: Channel) -> Self::Caller;
}

/// One worker's view of a scenario: issues one call.
pub trait Caller: Send + 'static {
    /// Makes call number `i` (unique within a run; scenarios derive ids,
    /// emails or picks from it).
    fn call(&mut self, i: u64) -> impl Future<Output = Result<(), Status>> + Send;
}

/// Processes whose CPU time and peak memory are reported, under one role
/// (e.g. `gateway`, or every PostgreSQL backend of a database as `postgres`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// What the processes are.
    pub role: String,
    /// Their process ids; readings are summed.
    pub pids: Vec<u32>,
}

/// Closed or open loop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoadMode {
    /// Back-to-back calls, to saturation.
    Closed,
    /// Calls due at a fixed rate.
    Open {
        /// Calls per second.
        rate: f64,
    },
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// Closed or open loop.
    pub mode: LoadMode,
    /// Workers (calls in flight at most).
    pub concurrency: usize,
    /// HTTP/2 connections.
    pub connections: usize,
    /// Length of the measured window, seconds.
    pub window_secs: f64,
    /// Calls of the window (issued in it, closed loop; due in it, open
    /// loop), successful or not, all waited for.
    pub requests: u64,
    /// Successful calls of the window.
    pub ok: u64,
    /// Failed calls of the window by gRPC code name (`UNAVAILABLE`, …).
    pub errors: BTreeMap<String, u64>,
    /// The first message seen for each failing code.
    pub error_examples: BTreeMap<String, String>,
    /// Calls that completed inside the window per second of it: the
    /// throughput. In an overloaded open loop this is what the server
    /// managed, not the offered rate.
    pub requests_per_sec: f64,
    /// Successful calls that completed inside the window per second of it.
    pub ok_per_sec: f64,
    /// Latency of the window's successful calls.
    pub latency_us: Latency,
    /// The watched server processes over the window; CPU per request
    /// divides by the successful calls completed inside it.
    pub servers: Vec<ProcessUsage>,
    /// The load generator itself (this process).
    pub client: ProcessUsage,
    /// CPU the rest of the machine used over the window (every process but
    /// the watched ones and this one), as a share of one core, percent. More
    /// than a few percent means something else competed with the run and its
    /// numbers are disturbed.
    #[serde(default)]
    pub other_cpu_percent: Option<f64>,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest call.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// CPU and memory of a role's processes over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// What the processes are.
    pub role: String,
    /// Their process ids.
    pub pids: Vec<u32>,
    /// CPU time (user + system) over the window divided by successful calls,
    /// microseconds; `None` without `/proc` or without successful calls.
    pub cpu_us_per_request: Option<f64>,
    /// CPU time over the window as a share of one core, percent.
    pub cpu_percent: Option<f64>,
    /// Peak resident memory (`VmHWM`) of the largest of the pids, KiB: since
    /// the run started when the peak could be reset, else since process
    /// start. The largest, not the sum: processes of one role may share
    /// memory (PostgreSQL backends all map its shared buffers).
    pub peak_rss_kib: Option<u64>,
}

/// Runs a workload against a target and measures it. Runs on the caller's
/// Tokio runtime; see [`run_isolated`] for a runtime of its own.
pub async fn run<W: Workload>(
    target: &Target,
    workload: &W,
    config: &LoadConfig,
    watched: &[Watched],
) -> anyhow::Result<RunStats> {
    config.validate()?;
    let channels = connect(target, config).await?;
    let me = Watched {
        role: "client".to_owned(),
        pids: vec![std::process::id()],
    };
    for pid in watched.iter().chain([&me]).flat_map(|w| &w.pids) {
        procfs::reset_peak_rss(*pid);
    }

    let start = Instant::now();
    let window = Window {
        start: start + config.warmup,
        end: start + config.warmup + config.duration,
    };
    let tally = Arc::new(Mutex::new(Tally::new()));
    let mut workers = tokio::task::JoinSet::new();
    let mut pacer = None;
    match config.rate {
        None => {
            let next = Arc::new(AtomicU64::new(0));
            for w in 0..config.concurrency {
                let caller = workload.caller(channels[w % channels.len()].clone());
                workers.spawn(closed_worker(caller, next.clone(), window, tally.clone()));
            }
        }
        Some(rate) => {
            let (tx, rx) = mpsc::channel(config.concurrency);
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            for w in 0..config.concurrency {
                let caller = workload.caller(channels[w % channels.len()].clone());
                workers.spawn(open_worker(
                    caller,
                    rx.clone(),
                    window,
                    config.call_timeout,
                    tally.clone(),
                ));
            }
            let schedule = Schedule { start, rate };
            pacer = Some(
                std::thread::Builder::new()
                    .name("rapport-bench-pacer".to_owned())
                    .spawn(move || pace(schedule, window.end, tx))
                    .context("starting the pacer thread")?,
            );
        }
    }

    tokio::time::sleep_until(window.start.into()).await;
    let before = CpuSample::take(watched, &me);
    tokio::time::sleep_until(window.end.into()).await;
    let after = CpuSample::take(watched, &me);
    // Every call is bounded by its deadline; the grace covers an open loop's
    // queue of due calls on top.
    let grace = config.call_timeout * 3 + Duration::from_secs(5);
    let drained = tokio::time::timeout(grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        workers.abort_all();
    }
    if let Some(pacer) = pacer {
        // The pacer ends at the window's end or when the workers are gone.
        let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    }
    let tally = std::mem::replace(
        &mut *tally.lock().expect("tally lock is never poisoned"),
        Tally::new(),
    );
    Ok(tally.into_stats(config, watched, &me, &before, &after))
}

/// Runs [`run`] on a Tokio runtime of its own, on a thread of its own:
/// current-thread for `threads <= 1`, else multi-threaded with `threads`
/// workers. The load generator's own scheduling then does not mix with the
/// caller's runtime, and pinning the process keeps it on its core.
pub async fn run_isolated<W: Workload>(
    threads: usize,
    target: Target,
    workload: W,
    config: LoadConfig,
    watched: Vec<Watched>,
) -> anyhow::Result<RunStats> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("rapport-bench-load".to_owned())
        .spawn(move || {
            let runtime = if threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()
            };
            let result = match runtime {
                Ok(rt) => rt.block_on(run(&target, &workload, &config, &watched)),
                Err(e) => Err(anyhow::Error::new(e).context("building the load runtime")),
            };
            let _ = tx.send(result);
        })
        .context("starting the load thread")?;
    rx.await
        .context("the load thread stopped without a result")?
}

/// One HTTP/2 connection to `uri`, set up as the load generator's are.
pub async fn connect_one(uri: &str, call_timeout: Duration) -> anyhow::Result<Channel> {
    Endpoint::from_shared(uri.to_owned())
        .with_context(|| format!("{uri} is not a URI"))?
        // Small unary calls must not wait for Nagle.
        .tcp_nodelay(true)
        .timeout(call_timeout)
        .connect_timeout(Duration::from_secs(5))
        // Each connect() opens its own HTTP/2 connection.
        .connect()
        .await
        .with_context(|| format!("connecting to {uri}"))
}

async fn connect(target: &Target, config: &LoadConfig) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        channels.push(connect_one(&target.uri, config.call_timeout).await?);
    }
    Ok(channels)
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn holds(&self, t: Instant) -> bool {
        self.start <= t && t < self.end
    }
}

async fn closed_worker<C: Caller>(
    mut caller: C,
    next: Arc<AtomicU64>,
    window: Window,
    tally: Arc<Mutex<Tally>>,
) {
    loop {
        let started = Instant::now();
        if started >= window.end {
            return;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let result = caller.call(i).await;
        let done = Instant::now();
        tally.lock().expect("tally lock is never poisoned").record(
            result,
            done - started,
            window.holds(started),
            window.holds(done),
        );
    }
}

/// A call the pacer made due.
#[derive(Debug, Clone, Copy)]
struct Slot {
    i: u64,
    due: Instant,
    /// Where its latency counts from (see [`origin`]).
    origin: Instant,
}

async fn open_worker<C: Caller>(
    mut caller: C,
    slots: Arc<tokio::sync::Mutex<mpsc::Receiver<Slot>>>,
    window: Window,
    call_timeout: Duration,
    tally: Arc<Mutex<Tally>>,
) {
    loop {
        let Some(slot) = slots.lock().await.recv().await else {
            return;
        };
        let late = slot.origin.elapsed();
        let result = if late >= call_timeout {
            // Its deadline passed before any worker was free: a real client
            // would have given up on it. Counting it so keeps an overloaded
            // run from dragging on through its whole backlog.
            Err(Status::deadline_exceeded(format!(
                "not sent: {} ms late, every worker busy",
                late.as_millis()
            )))
        } else {
            caller.call(slot.i).await
        };
        let done = Instant::now();
        tally.lock().expect("tally lock is never poisoned").record(
            result,
            done - slot.origin,
            window.holds(slot.due),
            window.holds(done),
        );
    }
}

/// Due times of an open loop: call `k` is due `k / rate` seconds after start.
/// Absolute, so a late call never shifts the ones after it.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// When call 0 is due.
    pub start: Instant,
    /// Calls per second.
    pub rate: f64,
}

impl Schedule {
    /// How long after `start` call `k` is due.
    pub fn offset(&self, k: u64) -> Duration {
        Duration::from_nanos((k as f64 * 1e9 / self.rate).round() as u64)
    }

    /// When call `k` is due.
    pub fn due(&self, k: u64) -> Instant {
        self.start + self.offset(k)
    }
}

/// Where the latency of a call due at `due` counts from, given the time
/// `ready` when the pacer came to it and the time `woke` after it waited
/// (if it had to). A pacer that was on time and slept past the due time by
/// the OS timer's slack is not the server's fault: count from when the call
/// was really dispatched. A pacer that was already behind (the workers were
/// all busy, so it was held back) counts from the due time, which charges the
/// server for the delay it caused.
pub fn origin(due: Instant, ready: Instant, woke: Instant) -> Instant {
    if ready < due { woke } else { due }
}

/// The pacer thread: hands out calls at their due times until `end`. A
/// thread of its own, because `std::thread::sleep` is precise to tens of
/// microseconds while Tokio's timer has millisecond granularity.
fn pace(schedule: Schedule, end: Instant, slots: mpsc::Sender<Slot>) {
    for k in 0.. {
        let due = schedule.due(k);
        if due >= end {
            return;
        }
        let ready = Instant::now();
        if ready < due {
            std::thread::sleep(due - ready);
        }
        let slot = Slot {
            i: k,
            due,
            origin: origin(due, ready, Instant::now()),
        };
        // Blocks while every worker is busy and the queue is full: the calls
        // behind it then start late and are charged from their due time.
        if slots.blocking_send(slot).is_err() {
            return;
        }
    }
}

struct Tally {
    /// Latency of the window's successful calls.
    latency: Histogram<u64>,
    /// The window's successful calls.
    ok: u64,
    /// The window's failed calls by code.
    errors: BTreeMap<&'static str, u64>,
    examples: BTreeMap<&'static str, String>,
    /// Calls that completed inside the window, whenever issued, and the
    /// successful ones among them: the throughput, and what the window's
    /// CPU time was spent on.
    completed: u64,
    completed_ok: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("static histogram bounds are valid"),
            ok: 0,
            errors: BTreeMap::new(),
            examples: BTreeMap::new(),
            completed: 0,
            completed_ok: 0,
        }
    }

    /// Records a call: in the latency and error counts if it belongs to the
    /// window (issued, or due, in it), in the throughput if it completed in
    /// the window.
    fn record(
        &mut self,
        result: Result<(), Status>,
        latency: Duration,
        belongs: bool,
        completed_in_window: bool,
    ) {
        if completed_in_window {
            self.completed += 1;
            self.completed_ok += u64::from(result.is_ok());
        }
        if !belongs {
            return;
        }
        match result {
            Ok(()) => {
                self.ok += 1;
                self.latency
                    .saturating_record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
            }
            Err(status) => {
                let code = code_name(status.code());
                *self.errors.entry(code).or_default() += 1;
                self.examples
                    .entry(code)
                    .or_insert_with(|| status.message().to_owned());
            }
        }
    }

    fn into_stats(
        self,
        config: &LoadConfig,
        watched: &[Watched],
        me: &Watched,
        before: &CpuSample,
        after: &CpuSample,
    ) -> RunStats {
        let shape = Shape {
            mode: config.mode(),
            concurrency: config.concurrency,
            connections: config.connections,
            window_secs: config.duration.as_secs_f64(),
        };
        self.into_stats_of(shape, watched, me, before, after)
    }

    fn into_stats_of(
        self,
        shape: Shape,
        watched: &[Watched],
        me: &Watched,
        before: &CpuSample,
        after: &CpuSample,
    ) -> RunStats {
        let window_secs = shape.window_secs;
        let failed: u64 = self.errors.values().sum();
        let requests = self.ok + failed;
        let us = |ns: u64| ns as f64 / 1000.0;
        let h = &self.latency;
        let latency_us = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: us(h.value_at_quantile(0.50)),
                p90: us(h.value_at_quantile(0.90)),
                p99: us(h.value_at_quantile(0.99)),
                p999: us(h.value_at_quantile(0.999)),
                max: us(h.max()),
                mean: round3(h.mean() / 1000.0),
            }
        };
        let usage = |i: usize, w: &Watched| {
            usage(
                w,
                &before.pids[i],
                &after.pids[i],
                self.completed_ok,
                window_secs,
            )
        };
        RunStats {
            mode: shape.mode,
            concurrency: shape.concurrency,
            connections: shape.connections,
            window_secs,
            requests,
            ok: self.ok,
            errors: self
                .errors
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            error_examples: self
                .examples
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            requests_per_sec: round3(self.completed as f64 / window_secs),
            ok_per_sec: round3(self.completed_ok as f64 / window_secs),
            latency_us,
            servers: watched
                .iter()
                .enumerate()
                .map(|(i, w)| usage(i, w))
                .collect(),
            client: usage(watched.len(), me),
            other_cpu_percent: before.others(after).map(|ticks| {
                round3(ticks as f64 / procfs::clock_ticks_per_second() as f64 / window_secs * 100.0)
            }),
        }
    }
}

/// How a window was loaded, for its [`RunStats`].
#[derive(Debug, Clone, Copy)]
struct Shape {
    mode: LoadMode,
    concurrency: usize,
    connections: usize,
    window_secs: f64,
}

/// A window measured by its caller, for scenarios that are not RPC
/// workloads (the event relay draining its outbox, the lag from a commit to
/// a consumer's effect): the caller runs the load and says what happened,
/// the meter gives the same readings as [`run`] — latencies in the same HDR
/// histogram, failures by code, throughput, and the CPU time and peak
/// memory of the watched processes and of this one over the window.
pub struct Meter {
    tally: Tally,
    watched: Vec<Watched>,
    me: Watched,
    start: Option<(Instant, CpuSample)>,
    stop: Option<(Instant, CpuSample)>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

impl Meter {
    /// A meter of `watched` (and this process, as the client); resets their
    /// peak memory readings.
    pub fn new(watched: Vec<Watched>) -> Self {
        let me = Watched {
            role: "client".to_owned(),
            pids: vec![std::process::id()],
        };
        for pid in watched.iter().chain([&me]).flat_map(|w| &w.pids) {
            procfs::reset_peak_rss(*pid);
        }
        Self {
            tally: Tally::new(),
            watched,
            me,
            start: None,
            stop: None,
        }
    }

    /// The window starts now.
    pub fn start(&mut self) {
        self.start = Some((Instant::now(), CpuSample::take(&self.watched, &self.me)));
    }

    /// The window ends now.
    pub fn stop(&mut self) {
        self.stop = Some((Instant::now(), CpuSample::take(&self.watched, &self.me)));
    }

    /// `n` operations of the window succeeded, each taking `latency`.
    pub fn ok(&mut self, latency: Duration, n: u64) {
        self.tally.ok += n;
        self.tally
            .latency
            .saturating_record_n(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX), n);
    }

    /// An operation of the window failed; `code` names why (`NOT_APPLIED`),
    /// `example` is kept for the first failure of each code.
    pub fn failed(&mut self, code: &'static str, example: &str) {
        *self.tally.errors.entry(code).or_default() += 1;
        self.tally
            .examples
            .entry(code)
            .or_insert_with(|| example.to_owned());
    }

    /// `n` operations completed inside the window, `ok` of them
    /// successfully: the throughput, and what the window's CPU time is
    /// divided by.
    pub fn completed(&mut self, n: u64, ok: u64) {
        self.tally.completed += n;
        self.tally.completed_ok += ok;
    }

    /// The readings of the window, as [`run`] reports them; `concurrency`
    /// is what bounded the operations in flight.
    pub fn finish(self, mode: LoadMode, concurrency: usize) -> RunStats {
        let now = || (Instant::now(), CpuSample::take(&self.watched, &self.me));
        let (started, before) = self.start.unwrap_or_else(now);
        let (stopped, after) = self.stop.unwrap_or_else(now);
        let shape = Shape {
            mode,
            concurrency,
            connections: 0,
            // Never zero: rates divide by it.
            window_secs: stopped
                .saturating_duration_since(started)
                .as_secs_f64()
                .max(1e-6),
        };
        self.tally
            .into_stats_of(shape, &self.watched, &self.me, &before, &after)
    }
}

/// CPU ticks of every watched pid (then of this process), `None` where
/// `/proc` could not be read, and of the whole machine.
struct CpuSample {
    pids: Vec<Vec<Option<u64>>>,
    /// The same readings by pid, each pid once (roles may share one).
    distinct: BTreeMap<u32, Option<u64>>,
    machine: Option<u64>,
}

impl CpuSample {
    fn take(watched: &[Watched], me: &Watched) -> Self {
        let mut distinct = BTreeMap::new();
        let pids = watched
            .iter()
            .chain([me])
            .map(|w| {
                w.pids
                    .iter()
                    .map(|pid| {
                        *distinct
                            .entry(*pid)
                            .or_insert_with(|| procfs::cpu_ticks(*pid))
                    })
                    .collect()
            })
            .collect();
        Self {
            pids,
            distinct,
            machine: procfs::machine_busy_ticks(),
        }
    }

    /// Busy ticks of the machine between `self` and `after` not spent by any
    /// process read in both (the watched ones and this one).
    fn others(&self, after: &CpuSample) -> Option<u64> {
        let machine = after.machine?.saturating_sub(self.machine?);
        let ours: u64 = self
            .distinct
            .iter()
            .filter_map(|(pid, b)| {
                Some(
                    after
                        .distinct
                        .get(pid)?
                        .as_ref()?
                        .saturating_sub(*b.as_ref()?),
                )
            })
            .sum();
        Some(machine.saturating_sub(ours))
    }
}

fn usage(
    watched: &Watched,
    before: &[Option<u64>],
    after: &[Option<u64>],
    ok: u64,
    window_secs: f64,
) -> ProcessUsage {
    // Pids readable at both ends only: one that came or went mid-window has
    // no meaningful difference.
    let deltas: Vec<u64> = before
        .iter()
        .zip(after)
        .filter_map(|(b, a)| Some(a.as_ref()?.saturating_sub(*b.as_ref()?)))
        .collect();
    let cpu_secs = (!deltas.is_empty())
        .then(|| deltas.iter().sum::<u64>() as f64 / procfs::clock_ticks_per_second() as f64);
    let peaks: Vec<u64> = watched
        .pids
        .iter()
        .filter_map(|pid| procfs::peak_rss_kib(*pid))
        .collect();
    ProcessUsage {
        role: watched.role.clone(),
        pids: watched.pids.clone(),
        cpu_us_per_request: cpu_secs
            .filter(|_| ok > 0)
            .map(|s| round3(s * 1e6 / ok as f64)),
        cpu_percent: cpu_secs.map(|s| round3(s / window_secs * 100.0)),
        peak_rss_kib: peaks.iter().max().copied(),
    }
}

/// Three decimals are more than any reading here is worth, and short
/// decimals survive a JSON round trip exactly.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub use rapport_kit::error::code_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_due_times_are_absolute_and_exact() {
        let start = Instant::now();
        let s = Schedule {
            start,
            rate: 1000.0,
        };
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(1000), Duration::from_secs(1));
        assert_eq!(s.due(250), start + Duration::from_millis(250));
        // A rate that does not divide a second: no drift after many calls.
        let third = Schedule { start, rate: 3.0 };
        assert_eq!(third.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(third.offset(3_000_000), Duration::from_secs(1_000_000));
        // Calls due inside a window of 2 s at 1000/s: exactly 2000.
        let due_in_window = (0..)
            .take_while(|k| s.offset(*k) < Duration::from_secs(2))
            .count();
        assert_eq!(due_in_window, 2000);
    }

    #[test]
    fn latency_counts_from_due_time_when_the_pacer_was_held_back() {
        let due = Instant::now();
        let ms = Duration::from_millis(1);
        // On time: slept, woke 60 µs late by timer slack → dispatch time.
        let woke = due + Duration::from_micros(60);
        assert_eq!(origin(due, due - ms, woke), woke);
        // Held back by busy workers: ready 5 ms after due → due time, so the
        // 5 ms of queueing are charged.
        assert_eq!(origin(due, due + 5 * ms, due + 5 * ms), due);
    }

    #[test]
    fn a_meter_reports_what_its_caller_measured() {
        let me = std::process::id();
        let mut meter = Meter::new(vec![Watched {
            role: "self".into(),
            pids: vec![me],
        }]);
        meter.start();
        std::thread::sleep(Duration::from_millis(20));
        meter.stop();
        meter.ok(Duration::from_millis(2), 3);
        meter.ok(Duration::from_millis(40), 1);
        meter.failed("NOT_APPLIED", "no effect within 30 s");
        meter.failed("NOT_APPLIED", "another");
        meter.completed(5, 4);
        let stats = meter.finish(LoadMode::Open { rate: 100.0 }, 8);
        assert_eq!(stats.mode, LoadMode::Open { rate: 100.0 });
        assert_eq!((stats.ok, stats.requests, stats.concurrency), (4, 6, 8));
        assert_eq!(stats.errors["NOT_APPLIED"], 2);
        assert_eq!(stats.error_examples["NOT_APPLIED"], "no effect within 30 s");
        assert!(stats.window_secs >= 0.02, "{stats:?}");
        assert!(stats.ok_per_sec < stats.requests_per_sec, "{stats:?}");
        let l = stats.latency_us;
        assert!((1_990.0..2_010.0).contains(&l.p50), "{l:?}");
        assert!((39_900.0..40_100.0).contains(&l.max), "{l:?}");
        if cfg!(target_os = "linux") {
            assert!(stats.servers[0].cpu_percent.is_some(), "{stats:?}");
        }
    }

    #[test]
    fn window_calls_are_timed_and_counted_by_code_completions_make_throughput() {
        let mut t = Tally::new();
        let secs = Duration::from_secs;
        t.record(Ok(()), Duration::from_micros(100), true, true);
        t.record(Err(Status::unavailable("down")), secs(9), true, true);
        t.record(Err(Status::unavailable("again")), secs(9), true, false);
        t.record(Err(Status::resource_exhausted("shed")), secs(9), true, true);
        // A warm-up call completing in the window counts for throughput only.
        t.record(Ok(()), secs(30), false, true);
        let config = LoadConfig {
            duration: Duration::from_secs(1),
            ..LoadConfig::default()
        };
        let me = Watched {
            role: "client".into(),
            pids: vec![],
        };
        let empty = CpuSample {
            pids: vec![vec![]],
            distinct: BTreeMap::new(),
            machine: None,
        };
        let stats = t.into_stats(&config, &[], &me, &empty, &empty);
        assert_eq!(stats.requests, 4);
        assert_eq!(stats.ok, 1);
        assert_eq!(stats.requests_per_sec, 4.0);
        assert_eq!(stats.ok_per_sec, 2.0);
        assert_eq!(stats.errors["UNAVAILABLE"], 2);
        assert_eq!(stats.errors["RESOURCE_EXHAUSTED"], 1);
        assert_eq!(stats.error_examples["UNAVAILABLE"], "down");
        assert!(stats.latency_us.max < 1000.0, "{:?}", stats.latency_us);
    }
}
