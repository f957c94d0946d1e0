//! What the delivery worker reads and writes: the claim of a hand-over in
//! the transaction of the timer that fired (one more attempt, the timer set
//! again as a watchdog), the message with its conversation and inbox, the
//! thread's external ids, read outside any transaction, and the outcome in
//! a short transaction of its own, with its event.
use chrono::{DateTime, Utc};
use rapport_events::timers;
use rapport_store::{Db, outbox};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait as _,
};

use super::{entities::*, rows::*, write::delivery_timer};
use crate::domain::{Error, model::*, repository::DeliveryDue};

pub use super::write::DELIVER;

/// An outbound message with what sending it needs.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The message.
    pub message: Message,
    /// Its conversation.
    pub conversation: Conversation,
    /// Its inbox (the sender's address).
    pub inbox: Inbox,
    /// The external ids of the conversation's earlier messages, oldest
    /// first (at most 20): an email's References.
    pub references: Vec<String>,
}

/// The conversation and message ids of a delivery timer's payload.
pub fn parse_payload(payload: &[u8]) -> Option<(ConversationId, MessageId)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (c, m) = text.split_once(' ')?;
    Some((
        ConversationId(uuid::Uuid::parse_str(c).ok()?),
        MessageId(uuid::Uuid::parse_str(m).ok()?),
    ))
}

/// The message `id` of `conversation` with its conversation and inbox, or
/// `None` when any is gone.
pub async fn outgoing<C: ConnectionTrait>(
    txn: &C,
    tenant: &Tenant,
    conversation: ConversationId,
    id: MessageId,
) -> Result<Option<Outgoing>, Error> {
    let Some(row) = messages::Entity::find_by_id((tenant.to_string(), id.to_string()))
        .one(txn)
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let message = to_message(row)?;
    let Some(c) = conversations::Entity::find_by_id((tenant.to_string(), conversation.to_string()))
        .one(txn)
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let conversation = to_conversation(c)?;
    let Some(i) = inboxes::Entity::find_by_id((tenant.to_string(), conversation.inbox.to_string()))
        .one(txn)
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let inbox = to_inbox(i)?;
    use messages::Column as M;
    let mut references: Vec<String> = messages::Entity::find()
        .select_only()
        .column(M::ExternalId)
        .filter(M::ConversationId.eq(conversation.id.to_string()))
        .filter(M::Tenant.eq(tenant.as_str()))
        .filter(M::ExternalId.is_not_null())
        .filter(M::Id.lt(id.to_string()))
        .order_by_desc(M::Id)
        .limit(20)
        .into_tuple::<Option<String>>()
        .all(txn)
        .await
        .map_err(db_err)?
        .into_iter()
        .flatten()
        .collect();
    references.reverse();
    Ok(Some(Outgoing {
        message,
        conversation,
        inbox,
        references,
    }))
}

/// Claims a hand-over of message `id` at `now`, in the transaction of its
/// timer's firing: when its delivery is still SCHEDULED, one more attempt
/// is counted and the timer set again for `now + watchdog`, so that a
/// hand-over whose outcome is never recorded is made again (at least once;
/// the receiver dedupes on the stable Message-ID or message id). The
/// attempt's number, or `None` when there is nothing to hand over.
pub async fn claim(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    conversation: ConversationId,
    id: MessageId,
    now: DateTime<Utc>,
    watchdog: chrono::Duration,
) -> Result<Option<u32>, Error> {
    let Some(row) = messages::Entity::find_by_id((tenant.to_string(), id.to_string()))
        .one(txn)
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let mut m = to_message(row.clone())?;
    let Some(d) = m
        .delivery
        .as_ref()
        .filter(|d| d.state == DeliveryState::Scheduled)
    else {
        return Ok(None);
    };
    let claimed = crate::domain::delivery::claim(d);
    let attempt = claimed.attempts;
    m.delivery = Some(claimed);
    if !set_delivery_if(txn, tenant, &row.document, &m).await? {
        return Err(Error::Conflict);
    }
    timers::schedule(
        txn,
        &delivery_timer(
            tenant,
            &DeliveryDue {
                conversation,
                message: id,
                due: now + watchdog,
            },
        ),
    )
    .await
    .map_err(db_err)?;
    Ok(Some(attempt))
}

/// A change of a message's delivery, decided on the message as stored.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate {
    /// The delivery now.
    pub delivery: Delivery,
    /// The channel's id of the message, when it gave one and the message
    /// has none.
    pub external_id: Option<String>,
    /// When to hand it over again; `None`: never (the timer is cancelled).
    pub next: Option<DateTime<Utc>>,
}

/// Changes the delivery of message `id` as `decide` says on the message as
/// stored (`None`: nothing to change), with a DeliveryChanged event when
/// its state moved, in one short transaction; retried when the message
/// changed meanwhile (an erasure). The message as stored after it, or
/// `None` when it is gone.
pub async fn update(
    db: &Db,
    encode: outbox::Encode<DomainEvent>,
    tenant: &Tenant,
    id: MessageId,
    now: DateTime<Utc>,
    decide: impl Fn(&Message) -> Option<DeliveryUpdate>,
) -> Result<Option<Message>, Error> {
    for _ in 0..rapport_usecase::write::MAX_ATTEMPTS {
        let txn = db.writer.begin().await.map_err(db_err)?;
        let Some(row) = messages::Entity::find_by_id((tenant.to_string(), id.to_string()))
            .one(&txn)
            .await
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let mut m = to_message(row.clone())?;
        let Some(change) = decide(&m) else {
            return Ok(Some(m));
        };
        let from = m.delivery.as_ref().map(|d| d.state);
        m.delivery = Some(change.delivery.clone());
        if m.external_id.is_none() {
            m.external_id = change.external_id.clone();
        }
        if !set_delivery_if(&txn, tenant, &row.document, &m).await? {
            txn.rollback().await.map_err(db_err)?;
            continue;
        }
        let key = delivery_timer(
            tenant,
            &DeliveryDue {
                conversation: m.conversation,
                message: m.id,
                due: now,
            },
        );
        match change.next {
            Some(due) => timers::schedule(&txn, &timers::Timer { due, ..key })
                .await
                .map_err(db_err)?,
            None => {
                timers::cancel(&txn, tenant.as_str(), &key.key)
                    .await
                    .map_err(db_err)?;
            }
        }
        let moved = from.filter(|f| *f != change.delivery.state);
        if let Some(from) = moved {
            let events = [DomainEvent::DeliveryChanged {
                message: m.clone(),
                from,
            }];
            let trace = rapport_telemetry::propagation::current_traceparent();
            for e in outbox::envelopes(
                encode,
                |_| None,
                tenant.as_str(),
                now,
                &trace,
                None,
                &events,
            )
            .map_err(db_err)?
            {
                txn.execute(&outbox::append_insert(&e))
                    .await
                    .map_err(db_err)?;
            }
        }
        txn.commit().await.map_err(db_err)?;
        return Ok(Some(m));
    }
    Err(Error::Conflict)
}

/// Stores `m`'s delivery state and external id (the things of a message
/// that change) when its row still holds `document`: whether it did.
async fn set_delivery_if<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    document: &str,
    m: &Message,
) -> Result<bool, Error> {
    let row = message_row(tenant, m)?;
    let updated = messages::Entity::update_many()
        .set(messages::ActiveModel {
            document: row.document,
            external_id: row.external_id,
            ..Default::default()
        })
        .filter(messages::Column::Tenant.eq(tenant.as_str()))
        .filter(messages::Column::Id.eq(m.id.to_string()))
        .filter(messages::Column::Document.eq(document))
        .exec(conn)
        .await
        .map_err(db_err)?;
    Ok(updated.rows_affected == 1)
}

/// Makes every delivery of `customer` on `channel` (any, when `None`)
/// that waits for a later time (quiet hours) due at `now`, so that the
/// worker asks the contact policy again at once — after consent was
/// withdrawn, a message it now refuses is cancelled promptly instead of
/// sent later; one still allowed is deferred again. The number made due.
pub async fn recheck_waiting(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    customer: CustomerId,
    channel: Option<Channel>,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    use timers::entity::{Column as T, Entity as Timers};
    let waiting = Timers::find()
        .filter(T::Tenant.eq(tenant.as_str()))
        .filter(T::Kind.eq(DELIVER))
        .filter(T::DueTime.gt(rapport_store::micros(now)))
        .all(txn)
        .await
        .map_err(db_err)?;
    let mut made_due = 0;
    for timer in waiting {
        let Some((conversation, message)) = parse_payload(&timer.payload) else {
            continue;
        };
        let Some(row) = messages::Entity::find_by_id((tenant.to_string(), message.to_string()))
            .filter(messages::Column::Customer.eq(customer.to_string()))
            .one(txn)
            .await
            .map_err(db_err)?
        else {
            continue;
        };
        let m = to_message(row)?;
        let waits = m
            .delivery
            .as_ref()
            .is_some_and(|d| d.state == DeliveryState::Scheduled);
        if !waits || channel.is_some_and(|c| c != m.channel) {
            continue;
        }
        timers::schedule(
            txn,
            &delivery_timer(
                tenant,
                &DeliveryDue {
                    conversation,
                    message,
                    due: now,
                },
            ),
        )
        .await
        .map_err(db_err)?;
        made_due += 1;
    }
    Ok(made_due)
}
