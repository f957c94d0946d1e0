//! The consumer of other services' events: in the inbox transaction the
//! event platform opens for each event (`rapport_events::consume`), the
//! event becomes one pending delivery per active subscription of its tenant
//! that wants its type, each with its first attempt due now.
use std::sync::Arc;

use rapport_events::{
    EventEnvelope,
    consume::{Handler, HandlerError},
};
use rapport_usecase::Clock;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder};

use super::{entities::*, rows::to_subscription, write};
use crate::domain::{Rendered, SubscriptionState, Tenant, rules};

/// Renders a consumed event as it is delivered; `Err` says why it cannot be
/// (the event is parked in dead letters).
pub type Render = fn(&EventEnvelope) -> Result<Rendered, String>;

/// The handler of every consumed event.
pub fn handler(render: Render, clock: Arc<dyn Clock>) -> Handler {
    Arc::new(move |txn, envelope| {
        let clock = clock.clone();
        Box::pin(async move { fan_out(txn, envelope, render, clock.as_ref()).await })
    })
}

async fn fan_out(
    txn: &DatabaseTransaction,
    envelope: &EventEnvelope,
    render: Render,
    clock: &dyn Clock,
) -> Result<(), HandlerError> {
    let tenant = Tenant::parse(&envelope.tenant)
        .map_err(|why| HandlerError::Reject(format!("the event's tenant {why}")))?;
    use subscriptions::Column as C;
    // Only the event's tenant's subscriptions: tenant isolation is this
    // filter.
    let rows = subscriptions::Entity::find()
        .filter(C::Tenant.eq(tenant.as_str()))
        .filter(C::State.eq(SubscriptionState::Active.as_str()))
        .order_by_asc(C::Id)
        .all(txn)
        .await
        .map_err(retry)?;
    let subscriptions = rows
        .into_iter()
        .map(to_subscription)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HandlerError::Retry(e.to_string()))?;
    if !subscriptions.iter().any(|s| s.receives(&envelope.r#type)) {
        return Ok(());
    }
    let event = render(envelope).map_err(HandlerError::Reject)?;
    let now = clock.now();
    for delivery in rules::fan_out(&subscriptions, &event, now) {
        write::insert_delivery(txn, &tenant, &delivery)
            .await
            .map_err(retry)?;
        write::schedule_attempt(txn, &tenant, delivery.id, now)
            .await
            .map_err(retry)?;
    }
    Ok(())
}

fn retry(e: sea_orm::DbErr) -> HandlerError {
    HandlerError::Retry(e.to_string())
}
