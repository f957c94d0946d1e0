//! The SLA alert worker: fires the durable warning and breach timers every
//! change of a conversation's clocks (re)schedules (`conversations.sla`),
//! keyed by (conversation, metric, cycle, alert). Each firing re-derives
//! the clock from the conversation as it is now — a target met meanwhile
//! never breaches, a pause drops the alert until the clock resumes, a due
//! time a calendar edit moved fires then — and claims the alert's business
//! key in the same transaction as its event, so each warning and each
//! breach is raised exactly once across workers, replicas and restarts.
use std::sync::Arc;

use rapport_events::{consume::HandlerError, timers::TimerHandler};
use rapport_store::outbox::Encode;

use crate::{
    domain::{
        Clock, DomainEvent, Tenant,
        repository::{Alert, SlaTimer},
        sla_apply::{AlertDecision, decide},
    },
    storage::sla as store,
};

/// The handler of SLA alert timers, telling time by `clock`.
pub fn timer_handler(clock: Arc<dyn Clock>, encode: Encode<DomainEvent>) -> TimerHandler {
    Arc::new(move |txn, fired| {
        let clock = clock.clone();
        Box::pin(async move {
            let Some((conversation, metric, cycle, alert)) =
                store::parse_payload(&fired.timer.payload)
            else {
                return Err(HandlerError::Reject("unreadable SLA timer payload".into()));
            };
            let tenant = Tenant::parse(&fired.timer.tenant)
                .map_err(|_| HandlerError::Reject("a timer of no tenant".into()))?;
            let retry = |e: crate::domain::Error| HandlerError::Retry(e.to_string());
            let Some((c, hours)) = store::load(txn, &tenant, conversation)
                .await
                .map_err(retry)?
            else {
                return Ok(());
            };
            let now = clock.now();
            let timer = SlaTimer {
                conversation,
                metric,
                cycle,
                alert,
                due: None,
            };
            match decide(&c, &hours, metric, cycle, alert, now) {
                AlertDecision::Drop => Ok(()),
                AlertDecision::Later(at) => {
                    let mut change = crate::domain::repository::ChangeSet::new(&tenant, now);
                    change.sla_timers.push(SlaTimer {
                        due: Some(at),
                        ..timer
                    });
                    store::commit_in(txn, change, encode).await.map_err(retry)
                }
                AlertDecision::Raise(raised) => {
                    let claimed = SlaTimer {
                        due: Some(raised.due),
                        ..timer
                    };
                    if !store::claim(txn, &tenant, &claimed, now)
                        .await
                        .map_err(retry)?
                    {
                        return Ok(());
                    }
                    let event = match alert {
                        Alert::Warning => DomainEvent::SlaWarningRaised(raised),
                        Alert::Breach => DomainEvent::SlaBreached(raised),
                    };
                    tracing::info!(conversation = %conversation, ?metric, cycle, ?alert, "SLA alert raised");
                    store::append_events(txn, &tenant, &[event], now, encode)
                        .await
                        .map_err(retry)
                }
            }
        })
    })
}
