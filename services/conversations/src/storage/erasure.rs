//! Erasing a customer's part of the conversations data, in the transaction
//! of the erasure consumer (`rapport_events::erasure`), which then confirms
//! it. Messages and conversations are rewritten without what the customer
//! wrote (the domain's `erase_*` rules say what goes); each conversation's
//! version moves on, so a writer that read it before the erasure fails its
//! version check and reads it again instead of writing the old text back;
//! stored replies about the conversations become tombstones. The
//! customer's mark (`marks`) orders the erasure against messages of theirs
//! being stored at the same time.
use rapport_events::consume::HandlerError;
use rapport_store::idempotency;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, DatabaseTransaction, DbErr, EntityTrait as _,
    QueryFilter as _, sea_query::Expr,
};

use super::{
    entities::{conversations, messages},
    rows::{document, to_conversation, to_message},
};
use crate::domain::{Conversation, Error, Tenant, rules};

/// Erases what `tenant`'s conversations hold about `customer` (its id).
pub async fn erase(
    txn: &DatabaseTransaction,
    tenant: &str,
    customer: &str,
) -> Result<(), HandlerError> {
    let tenant = Tenant::parse(tenant)
        .map_err(|why| HandlerError::Reject(format!("the event's tenant {why}")))?;
    // First: a message of theirs being stored now is committed before this
    // reads the messages, and one stored after sees the mark.
    super::marks::mark_erased(txn, tenant.as_str(), customer)
        .await
        .map_err(retry)?;
    let rows = messages::Entity::find()
        .filter(messages::Column::Tenant.eq(tenant.as_str()))
        .filter(messages::Column::Customer.eq(customer))
        .all(txn)
        .await
        .map_err(retry)?;
    for row in rows {
        let id = row.id.clone();
        let mut message = to_message(row).map_err(broken)?;
        rules::erase_message(&mut message);
        messages::Entity::update_many()
            .col_expr(
                messages::Column::Document,
                Expr::value(document(&message).map_err(broken)?),
            )
            .filter(messages::Column::Tenant.eq(tenant.as_str()))
            .filter(messages::Column::Id.eq(id))
            .exec(txn)
            .await
            .map_err(retry)?;
    }
    for id in rewrite_conversations(txn, &tenant, customer, rules::erase_conversation).await? {
        idempotency::forget_subject(txn, &tenant, &id, None)
            .await
            .map_err(retry)?;
    }
    Ok(())
}

/// Rewrites every conversation of `customer` (an id) by `f`, the customer
/// column following the document; each one's version moves on, so that a
/// writer that read it before reads it again instead of writing the old
/// document back. A conversation written meanwhile (its version moved)
/// retries the whole event. The ids rewritten.
pub(super) async fn rewrite_conversations(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    customer: &str,
    f: impl Fn(&mut Conversation),
) -> Result<Vec<String>, HandlerError> {
    let rows = conversations::Entity::find()
        .filter(conversations::Column::Tenant.eq(tenant.as_str()))
        .filter(conversations::Column::Customer.eq(customer))
        .all(txn)
        .await
        .map_err(retry)?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.id.clone();
        let mut c = to_conversation(row).map_err(broken)?;
        let expected = c.version;
        f(&mut c);
        c.version = expected + 1;
        let updated = conversations::Entity::update_many()
            .set(conversations::ActiveModel {
                customer: Set(c.customer.to_string()),
                version: Set(c.version),
                document: Set(document(&c).map_err(broken)?),
                ..Default::default()
            })
            .filter(conversations::Column::Tenant.eq(tenant.as_str()))
            .filter(conversations::Column::Id.eq(&id))
            .filter(conversations::Column::Version.eq(expected))
            .exec(txn)
            .await
            .map_err(retry)?;
        if updated.rows_affected != 1 {
            return Err(HandlerError::Retry(format!(
                "conversation {id} changed meanwhile"
            )));
        }
        ids.push(id);
    }
    Ok(ids)
}

pub(super) fn retry(e: DbErr) -> HandlerError {
    HandlerError::Retry(crate::storage::rows::db_error(&e).to_string())
}

/// A stored row that does not read: it will not read on a redelivery
/// either, so the erasure is parked, loudly, for someone to look at.
pub(super) fn broken(e: Error) -> HandlerError {
    HandlerError::Reject(e.to_string())
}
