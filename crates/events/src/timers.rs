//! Durable timers: work due at a time (an SLA deadline, a promise's due
//! time, a survey send, point expiry, a birthday) kept in the service's own
//! database, fired at or after its due time, at least once and with one
//! effect, across restarts and with several replicas.
//!
//! A timer is a row `(tenant, key)` with a kind, a due time and a payload.
//! Scheduling the same key again replaces it (reschedule); cancelling
//! deletes it. A worker claims due timers with a lease (a conditional
//! UPDATE that only one worker can win, on SQLite and PostgreSQL alike),
//! then fires each in one transaction that first deletes the timer — the
//! delete of the schedule it claimed (its `generation`) — and runs the
//! handler: two workers that both fire a timer (a lease ran out under a
//! slow handler) serialize on that row, and the second finds it gone and
//! does nothing. A handler that fails transiently rolls back; the timer
//! fires again after a backoff. Time comes from a [`Clock`], so tests drive
//! it.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rapport_store::Db;
use rapport_usecase::Clock;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait as _, TransactionTrait,
    sea_query::{Expr, ExprTrait as _, InsertStatement, OnConflict},
};
use tokio::task::JoinHandle;

use crate::consume::HandlerError;

/// The timers table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One scheduled timer.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "timers")]
    pub struct Model {
        /// Tenant.
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        /// The caller's key (`sla:{conversation}:first_response`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// What to do when it fires; the handler dispatches on it.
        pub kind: String,
        /// When it is due, µs since the epoch.
        pub due_time: i64,
        /// The caller's data (ids, never personal data).
        pub payload: Vec<u8>,
        /// New with every schedule of the key: a firing claimed under an
        /// older schedule neither claims nor deletes a newer one.
        pub generation: i64,
        /// Firings started.
        pub attempts: i64,
        /// A worker holds it until then, µs since the epoch.
        pub lease_until: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A timer to schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Tenant.
    pub tenant: String,
    /// Unique per tenant; scheduling it again reschedules.
    pub key: String,
    /// What to do.
    pub kind: String,
    /// When.
    pub due: DateTime<Utc>,
    /// Ids and facts for the handler.
    pub payload: Vec<u8>,
}

/// A timer firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The timer as scheduled.
    pub timer: Timer,
    /// 1 for the first firing, more after transient failures.
    pub attempt: u64,
}

/// Fires timers: applies one through `txn`, the transaction that also
/// removes it. It must write only through `txn`.
pub type TimerHandler = Arc<
    dyn for<'t> Fn(&'t DatabaseTransaction, &'t Fired) -> BoxFuture<'t, Result<(), HandlerError>>
        + Send
        + Sync,
>;

/// How long a worker holds a claimed timer before another may fire it.
const LEASE: chrono::Duration = chrono::Duration::seconds(30);
/// Timers claimed per pass.
const BATCH: u64 = 64;

/// Schedules `timer`, replacing a timer of the same tenant and key.
/// Call it on the transaction of the change that makes the work due.
pub async fn schedule<C: ConnectionTrait>(conn: &C, timer: &Timer) -> Result<(), DbErr> {
    conn.execute(&schedule_statement(timer)).await.map(drop)
}

/// The statement [`schedule`] runs, for a caller that writes its change as
/// one statement (profiles' create on PostgreSQL).
pub fn schedule_statement(timer: &Timer) -> InsertStatement {
    use entity::Column as C;
    // A new identity for every schedule, also when the key was cancelled or
    // fired and is scheduled again: a firing claimed under an earlier
    // schedule can never claim or remove this one. Wall-clock nanoseconds:
    // an identity, not a time (the service's clock may be a test's).
    let generation = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    entity::Entity::insert(entity::ActiveModel {
        tenant: Set(timer.tenant.clone()),
        key: Set(timer.key.clone()),
        kind: Set(timer.kind.clone()),
        due_time: Set(timer.due.timestamp_micros()),
        payload: Set(timer.payload.clone()),
        generation: Set(generation),
        attempts: Set(0),
        lease_until: Set(None),
    })
    .on_conflict(
        OnConflict::columns([C::Tenant, C::Key])
            .update_columns([C::Kind, C::DueTime, C::Payload])
            .value(
                C::Generation,
                Expr::col((entity::Entity, C::Generation)).add(1),
            )
            .value(C::Attempts, Expr::value(0))
            .value(C::LeaseUntil, Expr::value(Option::<i64>::None))
            .to_owned(),
    )
    .into_query()
}

/// Cancels the timer of `tenant` and `key`; whether there was one.
pub async fn cancel<C: ConnectionTrait>(conn: &C, tenant: &str, key: &str) -> Result<bool, DbErr> {
    let r = entity::Entity::delete_by_id((tenant.to_owned(), key.to_owned()))
        .exec(conn)
        .await?;
    Ok(r.rows_affected == 1)
}

/// The timer of `tenant` and `key`, if scheduled.
pub async fn get<C: ConnectionTrait>(
    conn: &C,
    tenant: &str,
    key: &str,
) -> Result<Option<Timer>, DbErr> {
    Ok(
        entity::Entity::find_by_id((tenant.to_owned(), key.to_owned()))
            .one(conn)
            .await?
            .map(|m| timer_of(&m)),
    )
}

fn timer_of(m: &entity::Model) -> Timer {
    Timer {
        tenant: m.tenant.clone(),
        key: m.key.clone(),
        kind: m.kind.clone(),
        due: DateTime::from_timestamp_micros(m.due_time).unwrap_or_default(),
        payload: m.payload.clone(),
    }
}

/// Fires every timer of `kinds` due by `clock`'s now (up to a batch); the
/// number fired. Safe to run in several workers at once. A worker names
/// the kinds it handles: services that share a database share the timers
/// table, and one service's worker must not fire another's timers.
pub async fn fire_due(
    db: &Db,
    clock: &dyn Clock,
    kinds: &[&str],
    handler: &TimerHandler,
) -> Result<usize, DbErr> {
    use entity::Column as C;
    let now = clock.now().timestamp_micros();
    let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
    let free = Condition::any()
        .add(C::LeaseUntil.is_null())
        .add(C::LeaseUntil.lt(now));
    let due = entity::Entity::find()
        .filter(C::Kind.is_in(kinds.clone()))
        .filter(C::DueTime.lte(now))
        .filter(free.clone())
        .order_by_asc(C::DueTime)
        .limit(BATCH)
        .all(&db.reader)
        .await?;
    let mut fired = 0;
    for row in due {
        // The claim: only one worker's UPDATE matches a free row.
        let lease_until = now + LEASE.num_microseconds().unwrap_or(i64::MAX);
        let claimed = entity::Entity::update_many()
            .col_expr(C::LeaseUntil, Expr::value(lease_until))
            .col_expr(C::Attempts, Expr::col(C::Attempts).add(1))
            .filter(C::Tenant.eq(&row.tenant))
            .filter(C::Key.eq(&row.key))
            .filter(C::Generation.eq(row.generation))
            .filter(C::DueTime.lte(now))
            .filter(free.clone())
            .exec(&db.writer)
            .await?;
        if claimed.rows_affected != 1 {
            continue;
        }
        let fired_timer = Fired {
            timer: timer_of(&row),
            attempt: u64::try_from(row.attempts + 1).unwrap_or(u64::MAX),
        };
        if fire_one(db, &row, &fired_timer, handler, clock).await? {
            fired += 1;
        }
    }
    Ok(fired)
}

/// Fires one claimed timer; whether its effect was applied now.
async fn fire_one(
    db: &Db,
    row: &entity::Model,
    fired: &Fired,
    handler: &TimerHandler,
    clock: &dyn Clock,
) -> Result<bool, DbErr> {
    use entity::Column as C;
    let txn = db.writer.begin().await?;
    // First: remove the schedule this firing claimed. A second firing of
    // the same schedule waits here for the first and then finds nothing.
    let removed = entity::Entity::delete_many()
        .filter(C::Tenant.eq(&row.tenant))
        .filter(C::Key.eq(&row.key))
        .filter(C::Generation.eq(row.generation))
        .exec(&txn)
        .await?;
    if removed.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    match handler(&txn, fired).await {
        Ok(()) => {
            txn.commit().await?;
            Ok(true)
        }
        Err(HandlerError::Retry(why)) => {
            txn.rollback().await?;
            // Again after a backoff that grows with the attempts (lease
            // expiry is when it is free to fire again).
            let wait = backoff(fired.attempt);
            let retry_at = clock.now().timestamp_micros()
                + i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
            tracing::info!(key = %row.key, kind = %row.kind, error = %why, "timer handler failed; firing again later");
            entity::Entity::update_many()
                .col_expr(C::LeaseUntil, Expr::value(retry_at))
                .filter(C::Tenant.eq(&row.tenant))
                .filter(C::Key.eq(&row.key))
                .filter(C::Generation.eq(row.generation))
                .exec(&db.writer)
                .await?;
            Ok(false)
        }
        Err(HandlerError::Reject(why)) => {
            // It can never fire as it is: keep the removal, say so loudly.
            tracing::error!(tenant = %row.tenant, key = %row.key, kind = %row.kind, error = %why, "timer rejected by its handler and dropped");
            txn.commit().await?;
            Ok(false)
        }
    }
}

/// The wait before firing again after the `attempt`-th failed.
fn backoff(attempt: u64) -> Duration {
    let exp = u32::try_from(Ord::min(attempt.saturating_sub(1), 10)).unwrap_or(10);
    Ord::min(Duration::from_secs(1u64 << exp), Duration::from_secs(600))
}

/// The earliest due time after `clock`'s now of a timer of `kinds`, µs
/// since the epoch: when a worker has something to do next. One index probe
/// per kind (`timers_kind_due`), whatever the number of timers scheduled
/// later.
pub async fn next_due(db: &Db, clock: &dyn Clock, kinds: &[&str]) -> Result<Option<i64>, DbErr> {
    use entity::Column as C;
    let now = clock.now().timestamp_micros();
    let mut next: Option<i64> = None;
    for kind in kinds {
        let due: Option<i64> = entity::Entity::find()
            .select_only()
            .column(C::DueTime)
            .filter(C::Kind.eq(*kind))
            .filter(C::DueTime.gt(now))
            .order_by_asc(C::DueTime)
            .limit(1)
            .into_tuple()
            .one(&db.reader)
            .await?;
        next = match (next, due) {
            (Some(a), Some(b)) => Some(Ord::min(a, b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// The shortest sleep between passes: a timer due within it fires at most
/// this late. It also keeps a clock that does not follow real time (a
/// test's `ManualClock`, standing a moment before a due time) from turning
/// the loop into a busy one.
const MIN_WAIT: Duration = Duration::from_millis(5);

/// How long to sleep after a pass that left nothing due: until the earliest
/// due time of `kinds` (so a timer fires at its due time, not up to a poll
/// late), at most `poll` (a timer scheduled meanwhile for sooner is found
/// then; a manual clock's tests advance it and wait at most that).
async fn wait_after_pass(db: &Db, clock: &dyn Clock, kinds: &[&str], poll: Duration) -> Duration {
    let next = match next_due(db, clock, kinds).await {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(error = %e, "reading the next due timer failed; polling");
            None
        }
    };
    next.map_or(poll, |due| {
        let until = due.saturating_sub(clock.now().timestamp_micros());
        let until = Duration::from_micros(u64::try_from(until).unwrap_or(0));
        until.clamp(Ord::min(MIN_WAIT, poll), poll)
    })
}

/// Starts firing due timers of `kinds`: sleeps until the earliest due time
/// of its kinds, at most `poll` (and not at all after a pass that filled
/// its batch), until the task is aborted.
pub fn spawn(
    db: Db,
    clock: Arc<dyn Clock>,
    kinds: Vec<String>,
    handler: TimerHandler,
    poll: Duration,
) -> JoinHandle<()> {
    spawn_waking(db, clock, kinds, handler, poll, None)
}

/// [`spawn`], waking the outbox relay through `wake` after a pass that
/// fired timers, for handlers that raise events (so they are published
/// now, not at the relay's next poll).
pub fn spawn_waking(
    db: Db,
    clock: Arc<dyn Clock>,
    kinds: Vec<String>,
    handler: TimerHandler,
    poll: Duration,
    wake: Option<crate::relay::Wake>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        loop {
            match fire_due(&db, clock.as_ref(), &kinds, &handler).await {
                Ok(n) => {
                    if n > 0
                        && let Some(w) = &wake
                    {
                        w.wake();
                    }
                    if n as u64 >= BATCH {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "firing timers failed; retrying"),
            }
            let wait = wait_after_pass(&db, clock.as_ref(), &kinds, poll).await;
            tokio::time::sleep(wait).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(40), Duration::from_secs(600));
    }
}
