//! Promises in storage: their rows, their reads, and their two durable
//! timers — the due time (BROKEN) and the owner's reminder — kept in step
//! with every write of the promise, in the same transaction. The timer
//! handler applies the domain's `break_at` / `remind_at` in the
//! transaction that removes the timer, with the promise's version as the
//! guard: a firing claimed twice (two workers, a restart) finds the timer
//! gone or the promise no longer open at that due time, so a promise
//! breaks once.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rapport_events::{
    consume::HandlerError,
    timers::{self, Fired, TimerHandler},
};
use rapport_store::{
    micros,
    outbox::{self, Encode},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{
    SqlRepository,
    rows::{db_err, document},
    write::failed,
};
use crate::domain::{
    DomainEvent, Error,
    model::*,
    promise::{Promise, PromiseCursor, PromiseFilter, PromiseId, PromiseState, PromiseStore},
    repository::{CommitError, RowWrite},
};

/// The promises table.
pub mod entity {
    #![allow(missing_docs)]
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conv_promises")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub version: i64,
        pub conversation_id: String,
        pub owner: String,
        pub state: String,
        pub due_time: i64,
        /// JSON of the whole promise.
        pub document: String,
        pub create_time: i64,
        pub update_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::Column as P;

/// Timer kind: a promise is due (it breaks unless kept).
pub const PROMISE_DUE: &str = "conversations.promise_due";
/// Timer kind: the owner of a promise is reminded.
pub const PROMISE_REMINDER: &str = "conversations.promise_reminder";

fn row(tenant: &Tenant, p: &Promise) -> Result<entity::ActiveModel, Error> {
    Ok(entity::ActiveModel {
        tenant: Set(tenant.to_string()),
        id: Set(p.id.to_string()),
        version: Set(p.version),
        conversation_id: Set(p.conversation.to_string()),
        owner: Set(p.owner.to_string()),
        state: Set(p.state.as_str().to_owned()),
        due_time: Set(micros(p.due_time)),
        document: Set(document(p)?),
        create_time: Set(micros(p.create_time)),
        update_time: Set(micros(p.update_time)),
    })
}

fn to_promise(row: entity::Model) -> Result<Promise, Error> {
    serde_json::from_str(&row.document)
        .map_err(|_| Error::Internal(format!("stored promise {} is unreadable", row.id)))
}

fn due_key(p: &Promise) -> String {
    format!("promise-due:{}", p.id)
}

fn reminder_key(p: &Promise) -> String {
    format!("promise-reminder:{}", p.id)
}

fn timer(
    tenant: &Tenant,
    p: &Promise,
    kind: &str,
    key: String,
    due: DateTime<Utc>,
) -> timers::Timer {
    timers::Timer {
        tenant: tenant.to_string(),
        key,
        kind: kind.to_owned(),
        due,
        payload: format!("{} {}", p.conversation, p.id).into_bytes(),
    }
}

/// Keeps `p`'s timers in step with it: an open promise breaks at its due
/// time and reminds at its reminder time; anything else has no timer.
/// Scheduling again replaces (a new generation), so a renegotiated due
/// time never fires at the old one.
async fn sync_timers<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    p: &Promise,
) -> Result<(), DbErr> {
    let open = p.state == PromiseState::Open;
    if open {
        timers::schedule(conn, &timer(tenant, p, PROMISE_DUE, due_key(p), p.due_time)).await?;
    } else {
        timers::cancel(conn, tenant.as_str(), &due_key(p)).await?;
    }
    match p.reminder_time.filter(|_| open) {
        Some(at) => {
            timers::schedule(
                conn,
                &timer(tenant, p, PROMISE_REMINDER, reminder_key(p), at),
            )
            .await
        }
        None => timers::cancel(conn, tenant.as_str(), &reminder_key(p))
            .await
            .map(drop),
    }
}

/// Writes the promise rows of a change (and their timers) in `txn`; the
/// facts of their outcomes add to `rollups`.
pub(super) async fn write(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    promises: &[RowWrite<Promise>],
    rollups: &mut super::metrics::Rollups,
) -> Result<(), CommitError> {
    for w in promises {
        let p = match w {
            RowWrite::Insert(p) => {
                let row = row(tenant, p)
                    .map_err(|e| CommitError::Other(crate::domain::repository::Clash::Failed(e)))?;
                rapport_store::insert_row(row, txn).await.map_err(failed)?;
                p
            }
            RowWrite::Update {
                value,
                expected_version,
            } => {
                update(txn, tenant, value, *expected_version)
                    .await
                    .map_err(failed)?
                    .then_some(())
                    .ok_or(CommitError::VersionConflict)?;
                value
            }
        };
        sync_timers(txn, tenant, p).await.map_err(failed)?;
        outcome_fact(txn, tenant, p, rollups)
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// The KPI fact of a promise kept or broken, with its conversation's
/// dimensions (written once: a broken promise kept late stays broken).
async fn outcome_fact(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    p: &Promise,
    rollups: &mut super::metrics::Rollups,
) -> Result<(), DbErr> {
    use crate::domain::promise::PromiseState;
    if !matches!(p.state, PromiseState::Kept | PromiseState::Broken) {
        return Ok(());
    }
    let Some(row) = super::entities::conversations::Entity::find_by_id((
        tenant.to_string(),
        p.conversation.to_string(),
    ))
    .one(txn)
    .await?
    else {
        return Ok(());
    };
    let c = super::rows::to_conversation(row).map_err(|e| DbErr::Custom(e.to_string()))?;
    match crate::domain::metrics::promise_fact(p, &c) {
        Some(f) => super::metrics::record(txn, tenant, &f, rollups).await,
        None => Ok(()),
    }
}

/// Stores `p` if the stored version is still `expected`; whether it was.
async fn update<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    p: &Promise,
    expected: i64,
) -> Result<bool, DbErr> {
    let mut active = row(tenant, p).map_err(|e| DbErr::Custom(e.to_string()))?;
    active.create_time = sea_orm::ActiveValue::NotSet;
    let updated = entity::Entity::update_many()
        .set(active)
        .filter(P::Tenant.eq(tenant.as_str()))
        .filter(P::Id.eq(p.id.to_string()))
        .filter(P::Version.eq(expected))
        .exec(conn)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// The version a promise event sequences by: the promise's once `promises`
/// are written.
pub(super) fn version_after(promises: &[RowWrite<Promise>], event: &DomainEvent) -> Option<u64> {
    let DomainEvent::Promise(e) = event else {
        return None;
    };
    let id = e.promise().id;
    promises
        .iter()
        .map(|w| match w {
            RowWrite::Insert(p) | RowWrite::Update { value: p, .. } => p,
        })
        .find(|p| p.id == id)
        .and_then(|p| u64::try_from(p.version).ok())
}

/// The name of an OPEN promise of `conversation`, if it holds one.
pub(super) async fn open_promise<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    conversation: ConversationId,
) -> Result<Option<String>, DbErr> {
    let row = entity::Entity::find()
        .filter(P::Tenant.eq(tenant.as_str()))
        .filter(P::ConversationId.eq(conversation.to_string()))
        .filter(P::State.eq(PromiseState::Open.as_str()))
        .one(conn)
        .await?;
    Ok(row.map(|r| format!("conversations/{conversation}/promises/{}", r.id)))
}

impl PromiseStore for SqlRepository {
    async fn promise(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        id: PromiseId,
    ) -> Result<Option<Promise>, Error> {
        entity::Entity::find()
            .filter(P::Tenant.eq(tenant.as_str()))
            .filter(P::Id.eq(id.to_string()))
            .filter(P::ConversationId.eq(conversation.to_string()))
            .one(&self.db.reader)
            .await
            .map_err(db_err)?
            .map(to_promise)
            .transpose()
    }

    async fn promises(
        &self,
        tenant: &Tenant,
        filter: &PromiseFilter,
        after: Option<PromiseCursor>,
        limit: u32,
    ) -> Result<Vec<Promise>, Error> {
        let mut q = entity::Entity::find().filter(P::Tenant.eq(tenant.as_str()));
        if let Some(c) = filter.conversation {
            q = q.filter(P::ConversationId.eq(c.to_string()));
        }
        if let Some(o) = filter.owner {
            q = q.filter(P::Owner.eq(o.to_string()));
        }
        if !filter.states.is_empty() {
            q = q.filter(P::State.is_in(filter.states.iter().map(|s| s.as_str())));
        }
        if let Some(t) = filter.due_from {
            q = q.filter(P::DueTime.gte(micros(t)));
        }
        if let Some(t) = filter.due_before {
            q = q.filter(P::DueTime.lt(micros(t)));
        }
        if let Some((due, id)) = after {
            let due = micros(due);
            q = q.filter(
                Condition::any().add(P::DueTime.gt(due)).add(
                    Condition::all()
                        .add(P::DueTime.eq(due))
                        .add(P::Id.gt(id.to_string())),
                ),
            );
        }
        q.order_by_asc(P::DueTime)
            .order_by_asc(P::Id)
            .limit(u64::from(limit))
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_promise)
            .collect()
    }
}

/// The handler of promise timers (kinds [`PROMISE_DUE`], [`PROMISE_REMINDER`]); events it raises are
/// made by `encode`.
pub fn timer_handler(encode: Encode<DomainEvent>) -> TimerHandler {
    Arc::new(move |txn, fired| Box::pin(async move { fire(encode, txn, fired).await }))
}

async fn fire(
    encode: Encode<DomainEvent>,
    txn: &DatabaseTransaction,
    fired: &Fired,
) -> Result<(), HandlerError> {
    use HandlerError::{Reject, Retry};
    let t = &fired.timer;
    let tenant =
        Tenant::parse(&t.tenant).map_err(|why| Reject(format!("the timer's tenant {why}")))?;
    let id = std::str::from_utf8(&t.payload)
        .ok()
        .and_then(|s| s.split_once(' '))
        .and_then(|(_, p)| uuid::Uuid::parse_str(p).ok())
        .ok_or_else(|| Reject("unreadable promise timer payload".into()))?;
    let retry = |e: DbErr| Retry(rapport_store::to_error::<Error>(&e).to_string());
    let Some(stored) = entity::Entity::find()
        .filter(P::Tenant.eq(tenant.as_str()))
        .filter(P::Id.eq(id.to_string()))
        .one(txn)
        .await
        .map_err(retry)?
    else {
        return Ok(());
    };
    let current = to_promise(stored).map_err(|e| Retry(e.to_string()))?;
    let outcome = match t.kind.as_str() {
        PROMISE_DUE => current.break_at(t.due),
        PROMISE_REMINDER => current.remind_at(t.due),
        other => return Err(Reject(format!("unknown timer kind {other}"))),
    };
    let Some((next, event)) = outcome else {
        // Kept, cancelled or moved since it was scheduled.
        return Ok(());
    };
    if !update(txn, &tenant, &next, current.version)
        .await
        .map_err(retry)?
    {
        return Err(Retry("the promise changed while firing".into()));
    }
    // The reminder timer of a broken promise goes with it.
    sync_timers(txn, &tenant, &next).await.map_err(retry)?;
    let mut rollups = super::metrics::Rollups::default();
    outcome_fact(txn, &tenant, &next, &mut rollups)
        .await
        .map_err(retry)?;
    rollups.write(txn, &tenant).await.map_err(retry)?;
    let event = DomainEvent::Promise(event);
    let trace = rapport_telemetry::propagation::current_traceparent();
    let version = u64::try_from(next.version).ok();
    let envelopes = outbox::envelopes(
        encode,
        |_: &DomainEvent| version,
        tenant.as_str(),
        t.due,
        &trace,
        None,
        std::slice::from_ref(&event),
    )
    .map_err(retry)?;
    for envelope in &envelopes {
        txn.execute(&outbox::append_insert(envelope))
            .await
            .map_err(retry)?;
    }
    Ok(())
}
