//! The audit log writer. Requests hand records over without waiting for the
//! database; one task writes them in batches.
//!
//! What it guarantees, and why:
//! - Records of authenticated calls have a queue of their own. Refused
//!   authentications (anyone can send those, as fast as they like) never go
//!   into it: they are counted per method, outcome and protocol and written
//!   as one record with a `count` per interval, so a flood of them costs a
//!   few rows and cannot crowd out the records of real calls.
//! - Every text field is cleaned before it is queued: control characters
//!   (NUL among them, which PostgreSQL refuses in text) become U+FFFD and
//!   lengths are capped to the columns', so no input can make a row fail.
//! - A batch that fails is retried row by row: a bad row costs only itself.
//!   When no row can be written (the database is away), the records stay in
//!   memory (bounded) and are retried with backoff until it returns.
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::storage::{AuditRecord, Store};

/// Records of authenticated calls waiting for the writer.
const QUEUE: usize = 10_000;
/// Records the writer holds while the database is away (about 300 bytes
/// each: a few MiB at most).
const PENDING: usize = 20_000;
const BATCH: usize = 256;
/// Distinct (method, outcome, protocol) triples of refused authentications
/// kept between two writes; beyond that they are counted under method `*`.
const REFUSAL_KEYS: usize = 256;
/// How often aggregated refusals are written.
const REFUSALS_EVERY: Duration = Duration::from_secs(1);
/// A row the database refuses while it accepts others is dropped (and
/// logged) after this many attempts: it would otherwise block the queue.
const ROW_ATTEMPTS: u8 = 5;
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

enum Item {
    Record(AuditRecord),
    Flush(oneshot::Sender<()>),
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit item")
    }
}

/// Refused authentications of the current interval, by (method, code, protocol).
type Refusals = Mutex<HashMap<(String, String, String), u32>>;

/// Where the gateway sends audit records.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<Item>,
    refusals: Arc<Refusals>,
    dropped: Arc<AtomicU64>,
}

impl AuditSink {
    /// Starts the writer task.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let refusals = Arc::new(Refusals::default());
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(store, rx, refusals.clone(), dropped.clone()));
        Self {
            tx,
            refusals,
            dropped,
        }
    }

    /// Queues the record of an authenticated call without waiting.
    pub fn record(&self, record: AuditRecord) {
        if self.tx.try_send(Item::Record(sanitized(record))).is_err() {
            self.count_dropped(1);
        }
    }

    /// Counts a refused authentication; written aggregated.
    pub fn refused(&self, method: &str, code: &str, protocol: &str) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let key = (clean(method, 200), code.to_owned(), protocol.to_owned());
        let key = if refusals.len() >= REFUSAL_KEYS && !refusals.contains_key(&key) {
            ("*".to_owned(), key.1, key.2)
        } else {
            key
        };
        let n = refusals.entry(key).or_default();
        *n = n.saturating_add(1);
    }

    /// Records lost because the queue was full (the database away for long).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn count_dropped(&self, n: u64) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        if total.is_power_of_two() {
            tracing::warn!(dropped = total, "audit queue full; records dropped");
        }
    }

    /// Waits until every record queued before this call is written (or
    /// five seconds pass), so an admin reading the log sees their own calls.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Item::Flush(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }
}

/// Deletes audit records older than `retention`, every hour, in batches
/// (one DELETE of a bounded size at a time, so SQLite's single writer is
/// never held for long), until the task is aborted.
pub fn spawn_retention(store: Store, retention: Duration) -> tokio::task::JoinHandle<()> {
    const EVERY: Duration = Duration::from_secs(3600);
    const BATCH: u64 = 1_000;
    tokio::spawn(async move {
        // The first purge an hour after start: a starting gateway has
        // enough to do, and a restart loop must not purge on every start.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(age) = chrono::Duration::from_std(retention) else {
                return;
            };
            let before = Utc::now() - age;
            let mut total = 0;
            loop {
                match store.purge_audit(before, BATCH).await {
                    Ok(n) => {
                        total += n;
                        if n < BATCH {
                            break;
                        }
                        // Let the writers that queued behind this batch go first.
                        tokio::task::yield_now().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "purging old audit records failed; next hour");
                        break;
                    }
                }
            }
            if total > 0 {
                tracing::info!(deleted = total, "old audit records purged");
            }
        }
    })
}

/// `s` without control characters, at most `max` characters long.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// Every field fits its column and holds no control character.
fn sanitized(r: AuditRecord) -> AuditRecord {
    AuditRecord {
        tenant: clean(&r.tenant, 63),
        principal: clean(&r.principal, 300),
        method: clean(&r.method, 200),
        resource: clean(&r.resource, 300),
        request_id: clean(&r.request_id, 128),
        code: clean(&r.code, 32),
        protocol: clean(&r.protocol, 16),
        count: r.count.max(1),
        ..r
    }
}

fn take_refusals(refusals: &Refusals, pending: &mut VecDeque<(AuditRecord, u8)>) {
    let taken = std::mem::take(&mut *refusals.lock().unwrap_or_else(|p| p.into_inner()));
    let now = Utc::now();
    for ((method, code, protocol), count) in taken {
        pending.push_back((
            AuditRecord {
                id: uuid::Uuid::now_v7().to_string(),
                event_time: now,
                tenant: String::new(),
                principal: String::new(),
                method,
                resource: String::new(),
                request_id: String::new(),
                code,
                protocol,
                count,
            },
            0,
        ));
    }
}

async fn write_loop(
    store: Store,
    mut rx: mpsc::Receiver<Item>,
    refusals: Arc<Refusals>,
    dropped: Arc<AtomicU64>,
) {
    let mut pending: VecDeque<(AuditRecord, u8)> = VecDeque::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut retry: Option<(tokio::time::Instant, Duration)> = None;
    let mut tick = tokio::time::interval(REFUSALS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    let accept = |item: Item, pending: &mut VecDeque<_>, waiters: &mut Vec<_>| match item {
        Item::Record(r) => pending.push_back((r, 0)),
        Item::Flush(w) => {
            // A reader wants the refusals too.
            take_refusals(&refusals, pending);
            waiters.push(w);
        }
    };
    loop {
        let backing_off = retry.is_some();
        if pending.is_empty() || backing_off {
            if !open && pending.is_empty() {
                return;
            }
            let wake = retry.map(|(at, _)| at);
            tokio::select! {
                item = rx.recv(), if open && pending.len() < PENDING => match item {
                    Some(item) => accept(item, &mut pending, &mut waiters),
                    None => open = false,
                },
                _ = tick.tick() => take_refusals(&refusals, &mut pending),
                () = sleep_until(wake), if backing_off => retry = retry.map(|(_, d)| (tokio::time::Instant::now(), d)),
            }
            if retry.is_some_and(|(at, _)| at > tokio::time::Instant::now()) {
                continue;
            }
        }
        // Whatever else is queued, while there is room.
        while pending.len() < PENDING {
            match rx.try_recv() {
                Ok(item) => accept(item, &mut pending, &mut waiters),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let n = pending.len().min(BATCH);
        if n > 0 {
            let batch: Vec<AuditRecord> = pending.iter().take(n).map(|(r, _)| r.clone()).collect();
            match store.append_audit(&batch).await {
                Ok(()) => {
                    pending.drain(..n);
                    retry = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = n, "writing an audit batch failed; writing it row by row");
                    let mut written = 0usize;
                    let mut kept = Vec::new();
                    for (record, attempts) in pending.drain(..n) {
                        match store.append_audit(std::slice::from_ref(&record)).await {
                            Ok(()) => written += 1,
                            Err(e) => kept.push((record, attempts.saturating_add(1), e)),
                        }
                    }
                    if written == 0 {
                        // Nothing goes in: the database is away. Keep
                        // everything and try again later.
                        let wait = retry.map_or(RETRY_FIRST, |(_, d)| (d * 2).min(RETRY_MAX));
                        tracing::error!(
                            pending = pending.len() + kept.len(),
                            retry_in_ms = wait.as_millis() as u64,
                            "audit database unavailable; records kept"
                        );
                        retry = Some((tokio::time::Instant::now() + wait, wait));
                    } else {
                        retry = None;
                    }
                    for (record, attempts, e) in kept.into_iter().rev() {
                        if written > 0 && attempts >= ROW_ATTEMPTS {
                            // The database takes other rows but never this one.
                            tracing::error!(error = %e, id = %record.id, method = %record.method, "audit record refused by the database; dropped");
                            dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            pending.push_front((record, attempts));
                        }
                    }
                }
            }
        }
        if pending.is_empty() {
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_lose_control_characters_and_fit_their_columns() {
        assert_eq!(
            clean("a\0b\u{1b}c\u{7f}", 10),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}"
        );
        assert_eq!(clean(&"é".repeat(400), 300).chars().count(), 300);
    }
}
