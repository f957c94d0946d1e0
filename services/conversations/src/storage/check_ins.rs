//! The pending timer of each conversation (check-in, then auto-resolve)
//! in storage: scheduled from the change that makes a conversation PENDING
//! or that sends its check-in, cancelled by every transition out of
//! PENDING (read from the ConversationStatusChanged the one transition
//! function always emits), and fired in the transaction that removes it:
//! the domain's `check_in::fire` makes the change, which is written by the
//! same code as every request's change.
use std::sync::Arc;

use rapport_events::{
    consume::HandlerError,
    timers::{self, Fired, TimerHandler},
};
use rapport_store::outbox::Encode;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::{entities::*, rows::*, write};
use crate::domain::{
    DomainEvent,
    check_in::{self, PendingTimer, Stage},
    model::*,
    repository::{ChangeSet, CommitError, RowWrite},
    sla_apply,
};

/// Timer kind: a pending conversation's check-in or auto-resolve.
pub const PENDING: &str = "conversations.pending";

/// One key per conversation: each pending stretch (cycle) schedules it
/// anew, so a firing of an earlier stretch (an older generation) never
/// acts.
fn key(conversation: ConversationId) -> String {
    format!("pending:{conversation}")
}

fn timer(tenant: &Tenant, t: &PendingTimer) -> timers::Timer {
    timers::Timer {
        tenant: tenant.to_string(),
        key: key(t.conversation),
        kind: PENDING.to_owned(),
        due: t.due,
        payload: format!("{} {}", t.conversation, t.stage.as_str()).into_bytes(),
    }
}

/// Cancels the pending timer of each conversation `change` moves out of
/// PENDING, then schedules the one it asks for.
pub(super) async fn sync<C: ConnectionTrait>(conn: &C, change: &ChangeSet) -> Result<(), DbErr> {
    let tenant = change.tenant.as_str();
    for e in &change.events {
        if let DomainEvent::StatusChanged {
            conversation,
            from: State::Pending,
            to,
            ..
        } = e
            && *to != State::Pending
        {
            timers::cancel(conn, tenant, &key(*conversation)).await?;
        }
    }
    if let Some(t) = &change.pending_timer {
        timers::schedule(conn, &timer(&change.tenant, t)).await?;
    }
    Ok(())
}

/// The handler of pending timers (kind [`PENDING`]).
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
    let (id, stage) = std::str::from_utf8(&t.payload)
        .ok()
        .and_then(|s| s.split_once(' '))
        .and_then(|(c, s)| Some((uuid::Uuid::parse_str(c).ok()?, Stage::parse(s)?)))
        .ok_or_else(|| Reject("unreadable pending timer payload".into()))?;
    let retry = |e: DbErr| Retry(rapport_store::to_error::<crate::domain::Error>(&e).to_string());
    // With the calendars its clocks count on: an auto-resolve stops them
    // like any other resolve (metric facts, timers).
    let Some((c, hours)) = super::sla::load(txn, &tenant, ConversationId(id))
        .await
        .map_err(|e| Retry(e.to_string()))?
    else {
        return Ok(());
    };
    let Some(inbox) = inboxes::Entity::find_by_id((tenant.to_string(), c.inbox.to_string()))
        .one(txn)
        .await
        .map_err(retry)?
    else {
        return Ok(());
    };
    let inbox = to_inbox(inbox).map_err(|e| Retry(e.to_string()))?;
    let in_reply_to = latest_external_id(txn, &tenant, c.id)
        .await
        .map_err(retry)?;
    // The time it was due: firing late (a worker down) acts as on time.
    let now = t.due;
    let Some(mut change) = check_in::fire(&tenant, &c, &inbox, stage, in_reply_to, now)
        .map_err(|e| Retry(e.to_string()))?
    else {
        return Ok(());
    };
    let updated: Vec<Conversation> = change
        .conversations
        .iter()
        .filter_map(|w| match w {
            RowWrite::Update { value, .. } if value.id == c.id => Some(value.clone()),
            _ => None,
        })
        .collect();
    for next in &updated {
        sla_apply::add_effects(&mut change, &c, next, &hours);
    }
    let prepared = write::prepare(encode, change).map_err(commit_error)?;
    write::apply(txn, &prepared).await.map_err(commit_error)
}

fn commit_error(e: CommitError) -> HandlerError {
    HandlerError::Retry(format!("{e:?}"))
}

/// The external id of a conversation's latest message that has one.
async fn latest_external_id(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    conversation: ConversationId,
) -> Result<String, DbErr> {
    use messages::Column as M;
    Ok(messages::Entity::find()
        .select_only()
        .column(M::ExternalId)
        .filter(M::Tenant.eq(tenant.as_str()))
        .filter(M::ConversationId.eq(conversation.to_string()))
        .filter(M::ExternalId.is_not_null())
        .order_by_desc(M::Id)
        .limit(1)
        .into_tuple::<Option<String>>()
        .one(txn)
        .await?
        .flatten()
        .unwrap_or_default())
}
