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
        Cause, Clock, DomainEvent, Tenant,
        repository::{Alert, ChangeSet, RowWrite, SlaTimer},
        rules::{self, Action},
        sla_apply::{AlertDecision, add_effects, decide},
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
                    let mut change = ChangeSet::new(&tenant, now);
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
                    tracing::info!(conversation = %conversation, ?metric, cycle, ?alert, "SLA alert raised");
                    let mut change = ChangeSet::new(&tenant, now);
                    change.events.push(match alert {
                        Alert::Warning => DomainEvent::SlaWarningRaised(raised),
                        Alert::Breach => DomainEvent::SlaBreached(raised),
                    });
                    let escalation = c
                        .applied_sla
                        .as_ref()
                        .and_then(|a| a.policy_at_revision.escalation);
                    if alert == Alert::Breach
                        && c.is_active()
                        && let Some(e) = escalation
                    {
                        // Through the one transition function, in the
                        // breach's transaction: a concurrent change of the
                        // conversation rolls both back and the timer fires
                        // again.
                        let action = Action::Escalate {
                            priority: e.raise_priority_to,
                            team: e.move_to_team,
                            metric,
                        };
                        let (next, events) = rules::transition(&c, action, Cause::Automation, now)
                            .map_err(|e| HandlerError::Reject(e.to_string()))?;
                        if next != c {
                            add_effects(&mut change, &c, &next, &hours);
                            change.conversations.push(RowWrite::Update {
                                value: next,
                                expected_version: c.version,
                            });
                            change.events.extend(events);
                        }
                    }
                    store::commit_in(txn, change, encode).await.map_err(retry)
                }
            }
        })
    })
}
