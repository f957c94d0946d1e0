//! Writing a change: one transaction holding the subscription and delivery
//! rows, the deliveries' timers and the idempotency claim. On SQLite the
//! change joins the group commit of the one writer; on PostgreSQL every
//! change has its own transaction.
use rapport_events::timers;
use rapport_store::{group_commit::BoxFuture, idempotency, micros};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};

use super::{ATTEMPT_TIMER, SqlRepository, entities::*, rows::*, timer_key};
use crate::domain::{
    model::*,
    repository::{ChangeSet, CommitError, DeliveryWrite, Schedule, SubscriptionWrite},
};

impl SqlRepository {
    /// Applies `change` atomically.
    pub(super) async fn write(&self, change: ChangeSet) -> Result<(), CommitError> {
        self.writer.commit(change).await
    }
}

/// A database failure of a commit.
pub(super) fn failed(e: DbErr) -> CommitError {
    on_db_error(&e)
}

/// [`failed`] by reference, as the writer takes it.
pub(super) fn on_db_error(e: &DbErr) -> CommitError {
    rapport_store::group_commit::commit_error(e, db_error)
}

/// [`apply`] in the shape `GroupCommit` takes.
pub(super) fn apply_boxed<'t>(
    txn: &'t DatabaseTransaction,
    change: &'t ChangeSet,
) -> BoxFuture<'t, Result<(), CommitError>> {
    Box::pin(apply(txn, change))
}

/// Writes `change` in `txn`; a function of `change` alone, so that group
/// commit can run it again after rolling back another change's failure.
async fn apply(txn: &DatabaseTransaction, change: &ChangeSet) -> Result<(), CommitError> {
    let tenant = &change.tenant;
    if let Some(claim) = &change.claim {
        // First write of the transaction: a concurrent twin blocks here
        // (PostgreSQL) or is serialized behind us (SQLite's one writer).
        if !idempotency::claim(txn, tenant, claim, micros(change.occur_time))
            .await
            .map_err(failed)?
        {
            return Err(CommitError::KeyTaken);
        }
    }
    for write in &change.subscriptions {
        write_subscription(txn, tenant, write).await?;
    }
    for write in &change.deliveries {
        match write {
            DeliveryWrite::Insert(d) => {
                insert_delivery(txn, tenant, d).await.map_err(failed)?;
            }
            DeliveryWrite::Update {
                delivery,
                expected_attempts,
            } => {
                if !update_delivery(txn, tenant, delivery, *expected_attempts)
                    .await
                    .map_err(failed)?
                {
                    return Err(CommitError::VersionConflict);
                }
            }
        }
    }
    for schedule in &change.schedules {
        match *schedule {
            Schedule::Attempt(id, due) => schedule_attempt(txn, tenant, id, due)
                .await
                .map_err(failed)?,
            Schedule::Cancel(id) => {
                timers::cancel(txn, tenant.as_str(), &timer_key(id))
                    .await
                    .map_err(failed)?;
            }
        }
    }
    Ok(())
}

async fn write_subscription(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    write: &SubscriptionWrite,
) -> Result<(), CommitError> {
    use subscriptions::Column as C;
    match write {
        SubscriptionWrite::Insert(s) => {
            rapport_store::insert_row(subscription_row(tenant, s), txn)
                .await
                .map_err(failed)?;
        }
        SubscriptionWrite::Update {
            subscription,
            expected_version,
        } => {
            let updated = subscriptions::Entity::update_many()
                .set(subscription_row(tenant, subscription))
                .filter(C::Tenant.eq(tenant.as_str()))
                .filter(C::Id.eq(subscription.id.to_string()))
                .filter(C::Version.eq(*expected_version))
                .exec(txn)
                .await
                .map_err(failed)?;
            if updated.rows_affected != 1 {
                return Err(CommitError::VersionConflict);
            }
        }
        SubscriptionWrite::Delete {
            id,
            expected_version,
        } => {
            let deleted = subscriptions::Entity::delete_many()
                .filter(C::Tenant.eq(tenant.as_str()))
                .filter(C::Id.eq(id.to_string()))
                .filter(C::Version.eq(*expected_version))
                .exec(txn)
                .await
                .map_err(failed)?;
            if deleted.rows_affected != 1 {
                return Err(CommitError::VersionConflict);
            }
            delete_deliveries(txn, tenant, *id).await.map_err(failed)?;
        }
    }
    Ok(())
}

/// Deletes a subscription's deliveries and the timers of the pending ones.
async fn delete_deliveries(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    subscription: SubscriptionId,
) -> Result<(), DbErr> {
    use deliveries::Column as C;
    let pending: Vec<String> = deliveries::Entity::find()
        .select_only()
        .column(C::Id)
        .filter(C::SubscriptionId.eq(subscription.to_string()))
        .filter(C::Tenant.eq(tenant.as_str()))
        .filter(C::State.eq(DeliveryState::Pending.as_str()))
        .into_tuple()
        .all(txn)
        .await?;
    for chunk in pending.chunks(500) {
        timers::entity::Entity::delete_many()
            .filter(timers::entity::Column::Tenant.eq(tenant.as_str()))
            .filter(timers::entity::Column::Key.is_in(chunk.iter().map(timer_key)))
            .exec(txn)
            .await?;
    }
    deliveries::Entity::delete_many()
        .filter(C::SubscriptionId.eq(subscription.to_string()))
        .filter(C::Tenant.eq(tenant.as_str()))
        .exec(txn)
        .await?;
    Ok(())
}

/// Inserts a new delivery.
pub(super) async fn insert_delivery(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    d: &Delivery,
) -> Result<(), DbErr> {
    rapport_store::insert_row(delivery_row(tenant, d), txn).await
}

/// Writes a delivery's new state if it is still pending at
/// `expected_attempts`; whether it was.
pub(super) async fn update_delivery(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    d: &Delivery,
    expected_attempts: u32,
) -> Result<bool, DbErr> {
    use deliveries::Column as C;
    let updated = deliveries::Entity::update_many()
        .col_expr(C::State, Expr::value(d.state.as_str()))
        .col_expr(C::Attempts, Expr::value(i64::from(d.attempts)))
        .col_expr(
            C::LastStatusCode,
            Expr::value(d.last_status_code.map(i32::from).unwrap_or(0)),
        )
        .col_expr(C::LastError, Expr::value(d.last_error.clone()))
        .col_expr(
            C::LastAttemptTime,
            Expr::value(d.last_attempt_time.map(micros)),
        )
        .col_expr(
            C::NextAttemptTime,
            Expr::value(d.next_attempt_time.map(micros)),
        )
        .filter(C::Tenant.eq(tenant.as_str()))
        .filter(C::Id.eq(d.id.to_string()))
        .filter(C::State.eq(DeliveryState::Pending.as_str()))
        .filter(C::Attempts.eq(i64::from(expected_attempts)))
        .exec(txn)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Sets the timer of a delivery's next attempt (replacing any earlier one).
pub(super) async fn schedule_attempt(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    id: DeliveryId,
    due: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    timers::schedule(
        txn,
        &timers::Timer {
            tenant: tenant.to_string(),
            key: timer_key(id),
            kind: ATTEMPT_TIMER.to_owned(),
            due,
            payload: Vec::new(),
        },
    )
    .await
}
