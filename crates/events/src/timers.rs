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
//!
//! A pass claims up to a batch in one statement and fires what it claimed
//! with several transactions in flight ([`Firing`]): on PostgreSQL each
//! commit waits for its WAL flush, and one firing at a time managed about
//! 43 a second on a shared machine — a burst of SLA breaches queued for
//! seconds. Timers of one lane (a conversation's) still fire one after the
//! other in due order, so a worker never races itself over one subject.
//! A batched worker ([`Firing::batched`]) goes further: each transaction
//! in flight fires several claimed timers, each in a savepoint of its own
//! (a handler's failure rolls back its own timer only), and commits once —
//! one WAL flush for many firings. A batch that fails as a whole (a
//! deadlock, a lost connection, its commit) is rolled back and its timers
//! fired one transaction each, as an unbatched worker would.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::{StreamExt as _, future::BoxFuture};
use rapport_store::{Db, DbFailure};
use rapport_usecase::Clock;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait as _, TransactionTrait,
    sea_query::{
        Expr, ExprTrait as _, InsertStatement, LockBehavior, LockType, OnConflict, Order, Query,
    },
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

/// How a worker fires the timers a pass claimed.
#[derive(Debug, Clone, Copy)]
pub struct Firing {
    /// Most firing transactions in flight at once (at least 1). On
    /// PostgreSQL each holds a pool connection: keep it below the pool size
    /// so requests still get one. On SQLite the one writer connection runs
    /// them one after the other (a firing waits for the writer and never
    /// holds it while waiting for anything else, so this cannot deadlock);
    /// there it only overlaps the waits between them.
    pub concurrency: usize,
    /// The lane of a timer: timers of one tenant and lane never fire at
    /// once but one after the other, in due order. Handlers that read a
    /// subject and write it back under its version (a conversation's SLA
    /// escalation) would otherwise conflict with themselves and retry after
    /// a backoff; with a lane per subject they never do within a worker.
    pub lane: fn(&Timer) -> &[u8],
    /// Whether a transaction fires several timers (module docs). Only for
    /// handlers that act through their transaction alone: a batch rolled
    /// back fires its timers again, one by one.
    pub batched: bool,
}

impl Firing {
    /// One firing at a time: what a worker does unless told otherwise.
    pub const SEQUENTIAL: Self = Self {
        concurrency: 1,
        lane: key_lane,
        batched: false,
    };

    /// Up to `concurrency` firings at once, timers of one `lane` in turn.
    pub fn concurrent(concurrency: usize, lane: fn(&Timer) -> &[u8]) -> Self {
        Self {
            concurrency: concurrency.max(1),
            lane,
            batched: false,
        }
    }

    /// [`Firing::concurrent`], the claimed timers dealt out by lane to the
    /// `concurrency` transactions, each firing its share and committing
    /// once.
    pub fn batched(concurrency: usize, lane: fn(&Timer) -> &[u8]) -> Self {
        Self {
            batched: true,
            ..Self::concurrent(concurrency, lane)
        }
    }
}

/// Every timer its own lane (keys are unique within a tenant).
fn key_lane(t: &Timer) -> &[u8] {
    t.key.as_bytes()
}

/// The payload up to its first space: the lane of a service whose timer
/// payloads start with the id of the subject they act on.
pub fn payload_head_lane(t: &Timer) -> &[u8] {
    t.payload.split(|b| *b == b' ').next().unwrap_or_default()
}

/// Fires every timer of `kinds` due by `clock`'s now (up to a batch), one
/// at a time; the number fired. Safe to run in several workers at once. A
/// worker names the kinds it handles: services that share a database share
/// the timers table, and one service's worker must not fire another's
/// timers.
pub async fn fire_due(
    db: &Db,
    clock: &dyn Clock,
    kinds: &[&str],
    handler: &TimerHandler,
) -> Result<usize, DbErr> {
    fire_due_with(db, clock, kinds, handler, Firing::SEQUENTIAL).await
}

/// [`fire_due`], firing as `firing` says.
pub async fn fire_due_with(
    db: &Db,
    clock: &dyn Clock,
    kinds: &[&str],
    handler: &TimerHandler,
    firing: Firing,
) -> Result<usize, DbErr> {
    pass(db, clock, kinds, handler, firing)
        .await
        .map(|p| p.fired)
}

/// What one pass did.
struct Pass {
    /// Timers claimed: a whole batch means more may be due.
    claimed: usize,
    /// Timers whose effect was applied.
    fired: usize,
}

async fn pass(
    db: &Db,
    clock: &dyn Clock,
    kinds: &[&str],
    handler: &TimerHandler,
    firing: Firing,
) -> Result<Pass, DbErr> {
    let rows = claim(db, clock, kinds).await?;
    let claimed = rows.len();
    let lanes = lanes(rows, firing.lane);
    let in_flight = firing.concurrency.max(1);
    let outcomes: Vec<(usize, Result<(), DbErr>)> = if firing.batched {
        futures::stream::iter(deal(lanes, in_flight))
            .map(|share| fire_batch(db, share, handler, clock))
            .buffer_unordered(in_flight)
            .collect()
            .await
    } else {
        futures::stream::iter(lanes)
            .map(|lane| fire_lane(db, lane, handler, clock))
            .buffer_unordered(in_flight)
            .collect()
            .await
    };
    let fired = outcomes.iter().map(|(n, _)| n).sum();
    let mut failures = outcomes.into_iter().filter_map(|(_, r)| r.err());
    match failures.next() {
        // What a lane could not fire stays claimed and fires again when its
        // lease runs out.
        Some(e) if fired == 0 => Err(e),
        Some(e) => {
            tracing::warn!(error = %e, failed = 1 + failures.count(), fired, "firing some timers failed; they fire again after their lease");
            Ok(Pass { claimed, fired })
        }
        None => Ok(Pass { claimed, fired }),
    }
}

/// Claims up to a batch of the due, free timers of `kinds`, earliest first,
/// in one statement: a lease on each, its attempts counted. On PostgreSQL
/// rows another worker is claiming or firing right now are passed over
/// (`FOR UPDATE SKIP LOCKED`), so claims never wait on each other or on a
/// firing; SQLite, whose one writer runs one statement at a time, has no
/// row locks and the clause is left out.
async fn claim(db: &Db, clock: &dyn Clock, kinds: &[&str]) -> Result<Vec<entity::Model>, DbErr> {
    use entity::Column as C;
    let now = clock.now().timestamp_micros();
    let lease_until = now.saturating_add(LEASE.num_microseconds().unwrap_or(i64::MAX));
    let due = Query::select()
        .columns([C::Tenant, C::Key])
        .from(entity::Entity)
        .and_where(C::Kind.is_in(kinds.iter().copied()))
        .and_where(C::DueTime.lte(now))
        .cond_where(
            Condition::any()
                .add(C::LeaseUntil.is_null())
                .add(C::LeaseUntil.lt(now)),
        )
        .order_by(C::DueTime, Order::Asc)
        .limit(BATCH)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned();
    let update = Query::update()
        .table(entity::Entity)
        .value(C::LeaseUntil, lease_until)
        .value(C::Attempts, Expr::col(C::Attempts).add(1))
        .and_where(Expr::tuple([Expr::col(C::Tenant), Expr::col(C::Key)]).in_subquery(due))
        .returning_all()
        .to_owned();
    let mut rows = entity::Entity::find()
        .from_raw_sql(db.backend().build(&update))
        .all(&db.writer)
        .await?;
    rows.sort_by_key(|r| r.due_time);
    Ok(rows)
}

/// `rows` (in due order) grouped by tenant and lane, each group in due
/// order, the groups in the order of their earliest timer.
fn lanes(rows: Vec<entity::Model>, lane: fn(&Timer) -> &[u8]) -> Vec<Vec<(entity::Model, Timer)>> {
    let mut index: std::collections::HashMap<(String, Vec<u8>), usize> =
        std::collections::HashMap::new();
    let mut out: Vec<Vec<(entity::Model, Timer)>> = Vec::new();
    for row in rows {
        let timer = timer_of(&row);
        let id = (timer.tenant.clone(), lane(&timer).to_vec());
        let i = *index.entry(id).or_insert_with(|| {
            out.push(Vec::new());
            out.len() - 1
        });
        out[i].push((row, timer));
    }
    out
}

/// `lanes` dealt round-robin into at most `n` shares: the earliest lanes
/// spread over all of them, and a lane stays whole (its timers in turn).
fn deal<T>(lanes: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let mut shares: Vec<Vec<T>> = Vec::new();
    for (i, lane) in lanes.into_iter().enumerate() {
        match shares.get_mut(i % n) {
            Some(share) => share.push(lane),
            None => shares.push(vec![lane]),
        }
    }
    shares
}

type Lane = Vec<(entity::Model, Timer)>;

/// Fires a share of lanes in one transaction; if the batch fails as a
/// whole, each of its timers in a transaction of its own.
async fn fire_batch(
    db: &Db,
    share: Vec<Lane>,
    handler: &TimerHandler,
    clock: &dyn Clock,
) -> (usize, Result<(), DbErr>) {
    match apply_batch(db, &share, handler).await {
        Ok((fired, later)) => {
            let mut result = Ok(());
            for (row, attempt, why) in later {
                if let Err(e) = fire_later(db, &row, attempt, &why, clock).await {
                    result = Err(e);
                }
            }
            (fired, result)
        }
        Err(e) => {
            tracing::info!(error = %e, timers = share.iter().map(Vec::len).sum::<usize>(), "a batch of timers failed; firing them one by one");
            let mut fired = 0;
            let mut result = Ok(());
            for lane in share {
                let (n, r) = fire_lane(db, lane, handler, clock).await;
                fired += n;
                if r.is_err() {
                    result = r;
                }
            }
            (fired, result)
        }
    }
}

/// The one transaction of a batch: every timer of `share` in a savepoint
/// of its own. The number applied, and those whose handler failed
/// transiently (rolled back to their savepoint; to fire again later).
async fn apply_batch(
    db: &Db,
    share: &[Lane],
    handler: &TimerHandler,
) -> Result<(usize, Vec<(entity::Model, u64, String)>), DbErr> {
    let txn = db.writer.begin().await?;
    let mut fired = 0;
    let mut later = Vec::new();
    for (row, timer) in share.iter().flatten() {
        let firing = Fired {
            timer: timer.clone(),
            attempt: u64::try_from(row.attempts).unwrap_or(u64::MAX),
        };
        match apply_in(&txn, txn.begin().await?, row, &firing, handler).await? {
            Applied::Yes => fired += 1,
            Applied::No => {}
            Applied::Later(why) => later.push((row.clone(), firing.attempt, why)),
        }
    }
    txn.commit().await?;
    Ok((fired, later))
}

/// Fires a lane's timers one after the other: how many were applied, and
/// the error that stopped it (the rest stay claimed until their lease ends).
async fn fire_lane(
    db: &Db,
    lane: Vec<(entity::Model, Timer)>,
    handler: &TimerHandler,
    clock: &dyn Clock,
) -> (usize, Result<(), DbErr>) {
    let mut fired = 0;
    for (row, timer) in lane {
        let firing = Fired {
            timer,
            attempt: u64::try_from(row.attempts).unwrap_or(u64::MAX),
        };
        match fire_one(db, &row, &firing, handler, clock).await {
            Ok(true) => fired += 1,
            Ok(false) => {}
            Err(e) => return (fired, Err(e)),
        }
    }
    (fired, Ok(()))
}

/// Fires one claimed timer; whether its effect was applied now.
async fn fire_one(
    db: &Db,
    row: &entity::Model,
    fired: &Fired,
    handler: &TimerHandler,
    clock: &dyn Clock,
) -> Result<bool, DbErr> {
    let why = match apply(db, row, fired, handler).await {
        Ok(Applied::Yes) => return Ok(true),
        Ok(Applied::No) => return Ok(false),
        Ok(Applied::Later(why)) => why,
        // The database broke a deadlock or a serialization conflict with
        // another transaction (another replica firing a timer of the same
        // subject): rolled back, like a handler's transient failure.
        Err(e) if rapport_store::classify(&e) == DbFailure::Contention => e.to_string(),
        Err(e) => return Err(e),
    };
    fire_later(db, row, fired.attempt, &why, clock).await?;
    Ok(false)
}

/// Holds a timer whose `attempt`-th firing failed transiently (`why`) until
/// a backoff that grows with the attempts is over: its lease's end is when
/// it is free to fire again.
async fn fire_later(
    db: &Db,
    row: &entity::Model,
    attempt: u64,
    why: &str,
    clock: &dyn Clock,
) -> Result<(), DbErr> {
    use entity::Column as C;
    let wait = backoff(attempt);
    let retry_at =
        clock.now().timestamp_micros() + i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
    tracing::info!(key = %row.key, kind = %row.kind, error = %why, "timer handler failed; firing again later");
    entity::Entity::update_many()
        .col_expr(C::LeaseUntil, Expr::value(retry_at))
        .filter(C::Tenant.eq(&row.tenant))
        .filter(C::Key.eq(&row.key))
        .filter(C::Generation.eq(row.generation))
        .exec(&db.writer)
        .await?;
    Ok(())
}

/// What a firing's transaction did.
enum Applied {
    /// Committed with its effect.
    Yes,
    /// Committed or rolled back without one: already fired (the schedule it
    /// claimed is gone), or rejected by its handler.
    No,
    /// Rolled back: the handler failed transiently.
    Later(String),
}

/// The transaction of one firing.
async fn apply(
    db: &Db,
    row: &entity::Model,
    fired: &Fired,
    handler: &TimerHandler,
) -> Result<Applied, DbErr> {
    apply_in(&db.writer, db.writer.begin().await?, row, fired, handler).await
}

/// One firing in `txn` (a transaction, or a savepoint of a batch's
/// transaction `parent`): removes the schedule it claimed and runs the
/// handler, then commits or rolls back `txn`.
async fn apply_in<C: ConnectionTrait>(
    parent: &C,
    txn: DatabaseTransaction,
    row: &entity::Model,
    fired: &Fired,
    handler: &TimerHandler,
) -> Result<Applied, DbErr> {
    // First: remove the schedule this firing claimed. A second firing of
    // the same schedule waits here for the first and then finds nothing.
    if remove(&txn, row).await? != 1 {
        txn.rollback().await?;
        return Ok(Applied::No);
    }
    match handler(&txn, fired).await {
        Ok(()) => {
            txn.commit().await?;
            Ok(Applied::Yes)
        }
        Err(HandlerError::Retry(why)) => {
            txn.rollback().await?;
            Ok(Applied::Later(why))
        }
        Err(HandlerError::Reject(why)) => {
            // It can never fire as it is: drop it without whatever the
            // handler wrote before refusing, and say so loudly. (Another
            // firing may have removed it meanwhile: then nothing to drop.)
            tracing::error!(tenant = %row.tenant, key = %row.key, kind = %row.kind, error = %why, "timer rejected by its handler and dropped");
            txn.rollback().await?;
            remove(parent, row).await?;
            Ok(Applied::No)
        }
    }
}

/// Deletes the schedule of `row` (its generation); the rows deleted.
async fn remove<C: ConnectionTrait>(conn: &C, row: &entity::Model) -> Result<u64, DbErr> {
    use entity::Column as C;
    Ok(entity::Entity::delete_many()
        .filter(C::Tenant.eq(&row.tenant))
        .filter(C::Key.eq(&row.key))
        .filter(C::Generation.eq(row.generation))
        .exec(conn)
        .await?
        .rows_affected)
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

/// Starts firing due timers of `kinds` one at a time: sleeps until the
/// earliest due time of its kinds, at most `poll` (and not at all after a
/// pass that filled its batch), until the task is aborted.
pub fn spawn(
    db: Db,
    clock: Arc<dyn Clock>,
    kinds: Vec<String>,
    handler: TimerHandler,
    poll: Duration,
) -> JoinHandle<()> {
    spawn_waking(db, clock, kinds, handler, poll, Firing::SEQUENTIAL, None)
}

/// [`spawn`], firing as `firing` says and waking the outbox relay through
/// `wake` after a pass that fired timers, for handlers that raise events
/// (so they are published now, not at the relay's next poll).
pub fn spawn_waking(
    db: Db,
    clock: Arc<dyn Clock>,
    kinds: Vec<String>,
    handler: TimerHandler,
    poll: Duration,
    firing: Firing,
    wake: Option<crate::relay::Wake>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        loop {
            match pass(&db, clock.as_ref(), &kinds, &handler, firing).await {
                Ok(p) => {
                    if p.fired > 0
                        && let Some(w) = &wake
                    {
                        w.wake();
                    }
                    if p.claimed as u64 >= BATCH {
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
