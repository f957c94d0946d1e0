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
    ColumnTrait as _, DatabaseTransaction, EntityTrait as _, QueryFilter as _, sea_query::Expr,
};

use super::{
    entities::{messages, threads},
    erasure::{retry, rewrite_conversations},
};
use crate::domain::{CustomerId, Tenant};

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
    rewrite_conversations(txn, &tenant, merged, |c| c.customer = survivor_id).await?;
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
