//! Re-pointing a merged-away customer's conversations to the survivor, in
//! the transaction of the merge consumer (profiles' `CustomersMerged`,
//! applied once through the consumer's inbox). Conversations are rewritten
//! one by one, their version moving on (a writer that read one before the
//! merge reads it again); messages, possibly many, are re-pointed with one
//! statement on their authoritative `customer` column; threads move to the
//! survivor, except in an inbox where the survivor already has one (theirs
//! stays the one new messages join). Running it again finds nothing left
//! to move.
use rapport_events::consume::HandlerError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, DatabaseTransaction, DbErr, EntityTrait as _,
    QueryFilter as _, sea_query::Expr,
};

use super::{
    entities::{conversations, messages, threads},
    rows::{document, to_conversation},
};
use crate::domain::{CustomerId, Error, Tenant};

/// Re-points what `tenant`'s conversations hold of `merged` to `survivor`
/// (customer ids).
pub async fn repoint(
    txn: &DatabaseTransaction,
    tenant: &str,
    merged: &str,
    survivor: &str,
) -> Result<(), HandlerError> {
    let tenant = Tenant::parse(tenant)
        .map_err(|why| HandlerError::Reject(format!("the event's tenant {why}")))?;
    let survivor_id = uuid::Uuid::parse_str(survivor)
        .map(CustomerId)
        .map_err(|_| HandlerError::Reject(format!("survivor {survivor:?} is no customer id")))?;
    if merged == survivor {
        return Ok(());
    }
    let rows = conversations::Entity::find()
        .filter(conversations::Column::Tenant.eq(tenant.as_str()))
        .filter(conversations::Column::Customer.eq(merged))
        .all(txn)
        .await
        .map_err(retry)?;
    for row in rows {
        let id = row.id.clone();
        let mut c = to_conversation(row).map_err(broken)?;
        let expected = c.version;
        c.customer = survivor_id;
        c.version += 1;
        conversations::Entity::update_many()
            .set(conversations::ActiveModel {
                customer: Set(survivor.to_owned()),
                version: Set(c.version),
                document: Set(document(&c).map_err(broken)?),
                ..Default::default()
            })
            .filter(conversations::Column::Tenant.eq(tenant.as_str()))
            .filter(conversations::Column::Id.eq(id))
            .filter(conversations::Column::Version.eq(expected))
            .exec(txn)
            .await
            .map_err(retry)?;
    }
    messages::Entity::update_many()
        .col_expr(messages::Column::Customer, Expr::value(survivor))
        .filter(messages::Column::Tenant.eq(tenant.as_str()))
        .filter(messages::Column::Customer.eq(merged))
        .exec(txn)
        .await
        .map_err(retry)?;
    let theirs = threads::Entity::find()
        .filter(threads::Column::Tenant.eq(tenant.as_str()))
        .filter(threads::Column::Customer.eq(merged))
        .all(txn)
        .await
        .map_err(retry)?;
    for t in theirs {
        let survivor_has = threads::Entity::find_by_id((
            tenant.to_string(),
            t.inbox_id.clone(),
            survivor.to_owned(),
        ))
        .one(txn)
        .await
        .map_err(retry)?
        .is_some();
        let this = threads::Entity::update_many()
            .filter(threads::Column::Tenant.eq(tenant.as_str()))
            .filter(threads::Column::InboxId.eq(&t.inbox_id))
            .filter(threads::Column::Customer.eq(merged));
        if survivor_has {
            threads::Entity::delete_by_id((tenant.to_string(), t.inbox_id.clone(), t.customer))
                .exec(txn)
                .await
                .map_err(retry)?;
        } else {
            this.col_expr(threads::Column::Customer, Expr::value(survivor))
                .exec(txn)
                .await
                .map_err(retry)?;
        }
    }
    Ok(())
}

fn retry(e: DbErr) -> HandlerError {
    HandlerError::Retry(crate::storage::rows::db_error(&e).to_string())
}

/// A stored row that does not read: parked, loudly, for someone to look at.
fn broken(e: Error) -> HandlerError {
    HandlerError::Reject(e.to_string())
}
