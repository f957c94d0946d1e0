//! The outbox relay: publishes a service's committed outbox rows to the bus,
//! oldest first, and marks them published.
//!
//! Guarantees: at least once, in commit order per subject. A row is marked
//! published only after the bus stored it (a JetStream PubAck), so a crash
//! at any point loses nothing: an unmarked row is published again, and the
//! bus stores an event id once (its duplicate window; consumers also
//! deduplicate by id). The relay is woken by commits ([`Wake`]) and polls
//! as a fallback (a commit of another replica, a wake-up lost to a crash).
//!
//! Several replicas of a service may run relays. On PostgreSQL each batch
//! runs in a transaction holding a per-service advisory lock, so one relay
//! publishes at a time and batches never overtake each other (two relays
//! each claiming rows with SKIP LOCKED could publish one subject's events
//! out of order). SQLite is one process's file: one relay.
use std::{sync::Arc, time::Duration};

use prost::Message as _;
use rapport_store::{Db, outbox};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait, sea_query::Expr,
};
use tokio::{sync::Notify, task::JoinHandle};

use crate::{Bus, EventEnvelope};

/// Rows published per batch.
const BATCH: u64 = 256;
/// How often the relay looks without being woken.
const POLL: Duration = Duration::from_secs(1);
/// How often published rows past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// Longest wait between attempts while the bus or database fails.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Wakes a relay after a commit wrote outbox rows. Cheap to clone; a wake
/// while the relay is busy is remembered, so none is lost.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// Tells the relay there is something to publish.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    task: JoinHandle<()>,
    db: Db,
    bus: Bus,
    service: &'static str,
}

impl Relay {
    /// Starts relaying `service`'s outbox in `db` to `bus`, woken by `wake`;
    /// published rows are deleted after `retention`.
    pub fn spawn(db: Db, bus: Bus, service: &'static str, wake: Wake, retention: Duration) -> Self {
        let task = tokio::spawn(run(db.clone(), bus.clone(), service, wake, retention));
        Self {
            task,
            db,
            bus,
            service,
        }
    }

    /// Stops the relay after one last pass (bounded), so events of the
    /// last calls before a shutdown go out now rather than at the next
    /// start.
    pub async fn stop(self) {
        self.task.abort();
        let last = relay_once(&self.db, &self.bus, self.service);
        match tokio::time::timeout(Duration::from_secs(2), last).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "last outbox relay pass failed; the next start publishes")
            }
            Err(_) => tracing::warn!("last outbox relay pass timed out; the next start publishes"),
        }
    }
}

async fn run(db: Db, bus: Bus, service: &'static str, wake: Wake, retention: Duration) {
    let mut backoff = Duration::from_millis(100);
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        match relay_once(&db, &bus, service).await {
            Ok(n) => {
                backoff = Duration::from_millis(100);
                if n as u64 >= BATCH {
                    // More is waiting: no pause.
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, service, "outbox relay failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            last_purge = Some(tokio::time::Instant::now());
            match purge(&db, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, service, "purged published outbox rows"),
                Err(e) => tracing::warn!(error = %e, service, "purging the outbox failed"),
            }
        }
        tokio::select! {
            _ = wake.0.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Why a relay pass failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The database.
    #[error("outbox database: {0}")]
    Db(#[from] DbErr),
    /// The bus.
    #[error(transparent)]
    Bus(#[from] crate::Error),
}

/// Publishes one batch of the oldest unpublished rows and marks them
/// published; the number published (0 when another replica holds the
/// relay lease).
pub async fn relay_once(db: &Db, bus: &Bus, service: &str) -> Result<usize, RelayError> {
    match db.backend() {
        DatabaseBackend::Postgres => {
            let txn = db.writer.begin().await?;
            // One relay per service at a time; released at COMMIT/ROLLBACK.
            let leased = txn
                .query_one_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    "SELECT pg_try_advisory_xact_lock($1)",
                    [lease_key(service).into()],
                ))
                .await?
                .map(|row| row.try_get_by_index::<bool>(0))
                .transpose()?
                .unwrap_or(false);
            if !leased {
                txn.rollback().await?;
                return Ok(0);
            }
            let n = publish_batch(&txn, &txn, bus, service).await?;
            txn.commit().await?;
            Ok(n)
        }
        // SQLite: read from a reader (WAL sees every commit), mark through
        // the one writer.
        _ => publish_batch(&db.reader, &db.writer, bus, service).await,
    }
}

async fn publish_batch<R: ConnectionTrait, W: ConnectionTrait>(
    reader: &R,
    writer: &W,
    bus: &Bus,
    service: &str,
) -> Result<usize, RelayError> {
    // Only this service's events (`rapport.<service>.v1.…`): services that
    // share a database also share the outbox table.
    let rows = outbox::Entity::find()
        .filter(outbox::Column::PublishTime.is_null())
        .filter(outbox::Column::EventType.starts_with(format!("rapport.{service}.")))
        .order_by_asc(outbox::Column::Id)
        .limit(BATCH)
        .all(reader)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut envelopes = Vec::with_capacity(rows.len());
    for row in &rows {
        match EventEnvelope::decode(row.envelope.as_slice()) {
            Ok(e) => envelopes.push(e),
            // A row this service wrote and cannot read back is a bug; it
            // must not stop every later event. It stays in the table
            // (marked, so it is not retried) until the retention purge.
            Err(e) => tracing::error!(id = %row.id, error = %e, "corrupt outbox row skipped"),
        }
    }
    rapport_store::crash::point("relay.before_publish");
    bus.publish(service, &envelopes).await?;
    rapport_store::crash::point("relay.after_publish");
    let now = chrono::Utc::now().timestamp_micros();
    outbox::Entity::update_many()
        .col_expr(outbox::Column::PublishTime, Expr::value(now))
        .filter(outbox::Column::Id.is_in(rows.iter().map(|r| r.id.clone())))
        .exec(writer)
        .await?;
    Ok(rows.len())
}

/// Most rows one purge statement deletes: on SQLite every write shares one
/// writer connection, and a single DELETE of a day's published rows held it
/// longer than requests wait for it; short statements let them in between.
const PURGE_BATCH: i64 = 1_000;

/// Deletes rows published longer than `retention` ago, [`PURGE_BATCH`] at a
/// time.
pub async fn purge(db: &Db, retention: Duration) -> Result<u64, DbErr> {
    let cutoff = chrono::Utc::now().timestamp_micros()
        - i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
    let backend = db.writer.get_database_backend();
    let (p1, p2) = match backend {
        sea_orm::DatabaseBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    let sql = format!(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
         WHERE publish_time IS NOT NULL AND publish_time < {p1} LIMIT {p2})"
    );
    let mut total = 0;
    loop {
        let deleted = db
            .writer
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                sql.clone(),
                [cutoff.into(), PURGE_BATCH.into()],
            ))
            .await?
            .rows_affected();
        total += deleted;
        if deleted < PURGE_BATCH as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// How far `service`'s relay is behind: the age of the oldest of its
/// unpublished rows, or zero when everything is published.
pub async fn lag(db: &Db, service: &str) -> Result<Duration, DbErr> {
    let oldest = outbox::Entity::find()
        .filter(outbox::Column::PublishTime.is_null())
        .filter(outbox::Column::EventType.starts_with(format!("rapport.{service}.")))
        .order_by_asc(outbox::Column::Id)
        .limit(1)
        .all(&db.reader)
        .await?
        .into_iter()
        .next();
    Ok(oldest.map_or(Duration::ZERO, |row| {
        let age = chrono::Utc::now().timestamp_micros() - row.occur_time;
        Duration::from_micros(u64::try_from(age).unwrap_or(0))
    }))
}

/// Registers `service`'s outbox lag in `metrics` as
/// `rapport_outbox_lag_seconds`, read at each scrape: the age of the oldest
/// event not yet on the bus (0 when the relay is caught up). It grows while
/// the bus is unreachable or the relay is stuck: alert on it staying above
/// a few seconds. A failed read leaves the last value.
pub fn register_lag(metrics: &mut rapport_kit::metrics::Metrics, db: Db, service: &'static str) {
    let gauge = metrics.gauge(
        "rapport_outbox_lag_seconds",
        "Age of the oldest committed event the relay has not published yet",
    );
    metrics.on_scrape(move || {
        let (db, gauge) = (db.clone(), gauge.clone());
        async move {
            match lag(&db, service).await {
                Ok(lag) => {
                    gauge.set(lag.as_secs_f64());
                }
                Err(e) => tracing::warn!(error = %e, service, "reading the outbox lag failed"),
            }
        }
    });
}

/// The advisory lock key of a service's relay: a stable 64-bit FNV-1a hash
/// of its name (stable across builds and replicas, unlike std's hasher).
fn lease_key(service: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "rapport-outbox-relay:".bytes().chain(service.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}
