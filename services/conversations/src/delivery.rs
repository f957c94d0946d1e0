//! The delivery worker: fires the durable delivery timers written with
//! every public outbound message (`conversations.deliver`) and hands the
//! message to its channel's connector — email, built in — recording SENT
//! or FAILED with the reason on the message.
//!
//! The timer is removed and the state recorded in one transaction, around
//! the send: a crash before the commit fires the timer again, so a message
//! is never lost; it may then be submitted twice, with the same Message-ID
//! (receivers and relays recognize the copy), never silently as another.
use std::sync::Arc;

use rapport_events::{consume::HandlerError, timers::TimerHandler};

use crate::{
    domain::{Channel, Clock, Delivery, DeliveryState, Tenant},
    email::{Mailer, SendError},
    profiles::Profiles,
    storage::delivery as store,
};

/// The handler of delivery timers.
#[derive(Clone)]
pub struct Deliveries(pub TimerHandler);

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deliveries")
    }
}

/// The handler of delivery timers.
pub fn timer_handler(
    mailer: Option<Mailer>,
    profiles: Profiles,
    clock: Arc<dyn Clock>,
) -> Deliveries {
    Deliveries(timer_handler_fn(mailer, profiles, clock))
}

fn timer_handler_fn(
    mailer: Option<Mailer>,
    profiles: Profiles,
    clock: Arc<dyn Clock>,
) -> TimerHandler {
    let mailer = Arc::new(mailer);
    Arc::new(move |txn, fired| {
        let mailer = mailer.clone();
        let profiles = profiles.clone();
        let clock = clock.clone();
        Box::pin(async move {
            let Some((conversation, message)) = store::parse_payload(&fired.timer.payload) else {
                return Err(HandlerError::Reject("unreadable delivery payload".into()));
            };
            let tenant = Tenant::parse(&fired.timer.tenant)
                .map_err(|_| HandlerError::Reject("a timer of no tenant".into()))?;
            let retry = |e: crate::domain::Error| HandlerError::Retry(e.to_string());
            let Some(out) = store::outgoing(txn, &tenant, conversation, message)
                .await
                .map_err(retry)?
            else {
                // Erased or gone: nothing to send.
                return Ok(());
            };
            if out
                .message
                .delivery
                .as_ref()
                .is_none_or(|d| d.state != DeliveryState::Scheduled)
            {
                return Ok(());
            }
            if out.message.channel != Channel::Email {
                // Its connector is not built yet: the timer waits for it.
                return Err(HandlerError::Retry(format!(
                    "no connector for {} yet",
                    out.message.channel.as_str()
                )));
            }
            let Some(mailer) = mailer.as_ref() else {
                return Err(HandlerError::Retry(
                    "conversations.email.smtp_url is not set".into(),
                ));
            };
            let now = clock.now();
            let outcome = match profiles
                .email_address(&tenant, out.message.customer)
                .await
                .map_err(retry)?
            {
                None => Err("the customer has no email address".to_owned()),
                Some(to) => match mailer.send(&out, &to).await {
                    Ok(()) => Ok(()),
                    Err(SendError::Permanent(why)) => Err(why),
                    Err(SendError::Transient(why)) => return Err(HandlerError::Retry(why)),
                },
            };
            let mut m = out.message;
            let scheduled_time = m.delivery.as_ref().and_then(|d| d.scheduled_time);
            m.delivery = Some(match outcome {
                Ok(()) => Delivery {
                    state: DeliveryState::Sent,
                    failure_reason: String::new(),
                    scheduled_time,
                    update_time: now,
                },
                Err(why) => Delivery {
                    state: DeliveryState::Failed,
                    failure_reason: why.chars().take(500).collect(),
                    scheduled_time,
                    update_time: now,
                },
            });
            store::set_delivery(txn, &tenant, &m).await.map_err(retry)
        })
    })
}
