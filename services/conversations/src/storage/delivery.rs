//! What the delivery worker reads and writes, inside the transaction of the
//! timer it fires: the message with its conversation and inbox, the
//! thread's external ids, and the message's delivery state.
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{entities::*, rows::*};
use crate::domain::{Error, model::*};

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
pub async fn outgoing(
    txn: &DatabaseTransaction,
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

/// Stores `m`'s delivery state (the one thing of a message that changes).
pub async fn set_delivery(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    m: &Message,
) -> Result<(), Error> {
    let row = message_row(tenant, m)?;
    messages::Entity::update_many()
        .set(messages::ActiveModel {
            document: row.document,
            ..Default::default()
        })
        .filter(messages::Column::Tenant.eq(tenant.as_str()))
        .filter(messages::Column::Id.eq(m.id.to_string()))
        .exec(txn)
        .await
        .map_err(db_err)?;
    Ok(())
}
