//! Due delivery timers claim attempts. In the transaction that removes a
//! fired timer (`rapport_events::timers::fire_due`), the delivery's attempt
//! is counted and its timer set again for when to try anew should the
//! attempt never report back; the attempt itself is made after the commit
//! (`domain::dispatch`), outside any transaction.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rapport_events::{
    consume::HandlerError,
    timers::{Fired, TimerHandler},
};
use rapport_store::by_key;
use rapport_usecase::Clock;
use sea_orm::{DatabaseTransaction, EntityTrait};

use super::{
    ATTEMPT_TIMER, delivery_of_key,
    entities::*,
    rows::{to_delivery, to_subscription},
    write,
};
use crate::domain::{Tenant, dispatch::Job, rules};

/// Claimed jobs, collected while timers fire; taken after the firing pass,
/// once every claim is committed (or rolled back: the dispatcher makes no
/// attempt for a claim that is not in the database).
pub type Claimed = Arc<Mutex<Vec<Job>>>;

/// The handler of due delivery timers: claims into `claimed`; an attempt
/// not reported within `watchdog` is made again.
pub fn handler(clock: Arc<dyn Clock>, watchdog: Duration, claimed: Claimed) -> TimerHandler {
    Arc::new(move |txn, fired| {
        let (clock, claimed) = (clock.clone(), claimed.clone());
        Box::pin(async move { claim(txn, fired, clock.as_ref(), watchdog, &claimed).await })
    })
}

async fn claim(
    txn: &DatabaseTransaction,
    fired: &Fired,
    clock: &dyn Clock,
    watchdog: Duration,
    claimed: &Claimed,
) -> Result<(), HandlerError> {
    let timer = &fired.timer;
    if timer.kind != ATTEMPT_TIMER {
        // Another service's timer in a shared table: leave it to its owner
        // (rejecting would delete it).
        return Err(HandlerError::Retry(format!(
            "not a webhook timer: {} ({})",
            timer.key, timer.kind
        )));
    }
    let Some(id) = delivery_of_key(&timer.key) else {
        return Err(HandlerError::Reject(format!(
            "not a delivery timer key: {}",
            timer.key
        )));
    };
    let tenant = Tenant::parse(&timer.tenant)
        .map_err(|why| HandlerError::Reject(format!("the timer's tenant {why}")))?;
    let internal = |e: crate::domain::Error| HandlerError::Retry(e.to_string());
    let db = |e: sea_orm::DbErr| HandlerError::Retry(e.to_string());
    let delivery = by_key(
        deliveries::Entity::find_by_id((tenant.to_string(), id.to_string())),
        txn,
    )
    .await
    .map_err(db)?
    .map(to_delivery)
    .transpose()
    .map_err(internal)?;
    let subscription = match &delivery {
        Some(d) => by_key(
            subscriptions::Entity::find_by_id((tenant.to_string(), d.subscription.to_string())),
            txn,
        )
        .await
        .map_err(db)?
        .map(to_subscription)
        .transpose()
        .map_err(internal)?,
        None => None,
    };
    let attempts_before = delivery.as_ref().map_or(0, |d| d.attempts);
    let now = clock.now();
    match rules::claim(delivery, subscription.as_ref(), now, watchdog) {
        rules::Claim::Skip => Ok(()),
        rules::Claim::NotYet(at) => write::schedule_attempt(txn, &tenant, id, at)
            .await
            .map_err(db),
        rules::Claim::Abandon(d) => {
            write::update_delivery(txn, &tenant, &d, attempts_before)
                .await
                .map_err(db)?;
            Ok(())
        }
        rules::Claim::Attempt(d) => {
            if !write::update_delivery(txn, &tenant, &d, attempts_before)
                .await
                .map_err(db)?
            {
                return Ok(());
            }
            if let Some(again) = d.next_attempt_time {
                write::schedule_attempt(txn, &tenant, d.id, again)
                    .await
                    .map_err(db)?;
            }
            claimed.lock().expect("claims lock").push(Job {
                tenant,
                delivery: d.id,
                attempt: d.attempts,
            });
            Ok(())
        }
    }
}
