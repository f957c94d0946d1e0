//! The rules of webhooks, each a function of its inputs: which addresses
//! are never called, who receives an event, how an update changes a
//! subscription, when an attempt is made, and what an attempt's answer
//! means — retry later (exponential backoff, full jitter), done, or give up
//! and disable the subscription once the retry window has passed.
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Error,
    model::*,
    ports::Answer,
    values::{EventTypes, WebhookUrl},
};

// ------------------------------------------------------------ subscriptions

/// A new subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    /// Where to.
    pub url: WebhookUrl,
    /// Which events.
    pub event_types: EventTypes,
}

/// One field an update replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionUpdate {
    /// `url`.
    Url(WebhookUrl),
    /// `event_types`.
    EventTypes(EventTypes),
    /// `state`: ACTIVE re-enables, DISABLED pauses.
    State(SubscriptionState),
}

/// The subscription `current` becomes after `updates`, or `None` when
/// nothing changes (no new version).
pub fn apply_updates(
    current: &Subscription,
    updates: Vec<SubscriptionUpdate>,
    now: DateTime<Utc>,
) -> Option<Subscription> {
    let mut next = current.clone();
    for update in updates {
        match update {
            SubscriptionUpdate::Url(url) => next.url = url,
            SubscriptionUpdate::EventTypes(types) => next.event_types = types,
            SubscriptionUpdate::State(SubscriptionState::Active) => {
                next.state = SubscriptionState::Active;
                next.disable_reason = None;
            }
            SubscriptionUpdate::State(SubscriptionState::Disabled) => {
                if next.state == SubscriptionState::Active {
                    next.state = SubscriptionState::Disabled;
                    next.disable_reason = Some(DisableReason::Requested);
                }
            }
        }
    }
    (next != *current).then(|| Subscription {
        update_time: now,
        version: current.version + 1,
        ..next
    })
}

// --------------------------------------------------------------- deliveries

/// A pending delivery of `event` to `subscription`, due now.
pub fn new_delivery(
    subscription: SubscriptionId,
    event: &Rendered,
    now: DateTime<Utc>,
) -> Delivery {
    Delivery {
        id: DeliveryId::generate(),
        subscription,
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
        body: event.body.clone(),
        state: DeliveryState::Pending,
        attempts: 0,
        last_status_code: None,
        last_error: String::new(),
        create_time: now,
        last_attempt_time: None,
        next_attempt_time: Some(now),
    }
}

/// One delivery per subscription (of the event's tenant) that receives
/// `event`: active, with a matching event type.
pub fn fan_out(
    subscriptions: &[Subscription],
    event: &Rendered,
    now: DateTime<Utc>,
) -> Vec<Delivery> {
    subscriptions
        .iter()
        .filter(|s| s.receives(&event.event_type))
        .map(|s| new_delivery(s.id, event, now))
        .collect()
}

/// A test delivery to `subscription`, whatever its event types; only an
/// active subscription receives one.
pub fn test_delivery(
    subscription: &Subscription,
    event: &Rendered,
    now: DateTime<Utc>,
) -> Result<Delivery, Error> {
    if subscription.state != SubscriptionState::Active {
        return Err(Error::Disabled(subscription.id));
    }
    Ok(new_delivery(subscription.id, event, now))
}

/// What a due delivery's timer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Make an attempt: the delivery with its attempt counted and, as its
    /// next attempt, the time to try again should this one never report
    /// back (the process died during it).
    Attempt(Delivery),
    /// Give it up without an attempt: its subscription is disabled or gone.
    Abandon(Delivery),
    /// Not due yet: the timer fired before the delivery's next attempt
    /// (a stale firing by another worker). Set it again for then.
    NotYet(DateTime<Utc>),
    /// Nothing: delivered, failed, or gone already.
    Skip,
}

/// The claim of a delivery whose attempt is due at `now`; `watchdog` is how
/// long an attempt may take before another is made.
pub fn claim(
    delivery: Option<Delivery>,
    subscription: Option<&Subscription>,
    now: DateTime<Utc>,
    watchdog: Duration,
) -> Claim {
    let Some(delivery) = delivery.filter(|d| d.state == DeliveryState::Pending) else {
        return Claim::Skip;
    };
    if let Some(at) = delivery.next_attempt_time.filter(|at| *at > now) {
        return Claim::NotYet(at);
    }
    match subscription {
        Some(s) if s.state == SubscriptionState::Active => Claim::Attempt(Delivery {
            attempts: delivery.attempts + 1,
            last_attempt_time: Some(now),
            next_attempt_time: Some(now + watchdog),
            ..delivery
        }),
        _ => Claim::Abandon(Delivery {
            state: DeliveryState::Failed,
            next_attempt_time: None,
            last_error: "not attempted: the subscription is disabled".to_owned(),
            ..delivery
        }),
    }
}

/// The longest wait after the `attempt`-th attempt failed: 5 s, 30 s,
/// 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, then 8 h.
pub fn backoff_ceiling(attempt: u32) -> Duration {
    const STEPS: [u64; 9] = [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800];
    let i = (attempt.max(1) as usize - 1).min(STEPS.len() - 1);
    Duration::from_secs(STEPS[i])
}

/// When to try again after the `attempt`-th attempt of a delivery created
/// at `created` failed at `now`: a wait drawn uniformly up to the backoff
/// ceiling (full jitter; `jitter` in [0, 1], at least a second), no later
/// than the end of the retry window; `None` once the window has passed.
/// So the last attempt is made at the window's end, and a delivery is
/// retried for the whole window.
pub fn retry_at(
    created: DateTime<Utc>,
    attempt: u32,
    now: DateTime<Utc>,
    window: Duration,
    jitter: f64,
) -> Option<DateTime<Utc>> {
    let deadline = created + window;
    if now >= deadline {
        return None;
    }
    let wait = backoff_ceiling(attempt)
        .mul_f64(jitter.clamp(0.0, 1.0))
        .max(Duration::from_secs(1));
    Some((now + wait).min(deadline))
}

/// What an attempt's answer changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The delivery after the attempt.
    pub delivery: Delivery,
    /// The subscription, disabled, when the delivery was given up.
    pub disabled: Option<Subscription>,
}

/// Records `answer` to the attempt `claimed` made (as [`claim`] left it) to
/// `subscription`, at `now`: delivered on a 2xx; otherwise retried at
/// [`retry_at`], or failed once the window has passed — and then the
/// subscription is disabled with reason DELIVERY_FAILING.
pub fn record(
    claimed: &Delivery,
    subscription: &Subscription,
    answer: Answer,
    now: DateTime<Utc>,
    window: Duration,
    jitter: f64,
) -> Recorded {
    let (status, error) = match answer {
        Answer::Status(s) if (200..300).contains(&s) => {
            return Recorded {
                delivery: Delivery {
                    state: DeliveryState::Delivered,
                    last_status_code: Some(s),
                    last_error: String::new(),
                    next_attempt_time: None,
                    ..claimed.clone()
                },
                disabled: None,
            };
        }
        Answer::Status(s) => (Some(s), format!("the endpoint answered HTTP {s}")),
        Answer::NoAnswer(why) => (None, why),
    };
    let failing = Delivery {
        last_status_code: status,
        last_error: error,
        ..claimed.clone()
    };
    match retry_at(claimed.create_time, claimed.attempts, now, window, jitter) {
        Some(at) => Recorded {
            delivery: Delivery {
                next_attempt_time: Some(at),
                ..failing
            },
            disabled: None,
        },
        None => Recorded {
            delivery: Delivery {
                state: DeliveryState::Failed,
                next_attempt_time: None,
                ..failing
            },
            disabled: (subscription.state == SubscriptionState::Active).then(|| Subscription {
                state: SubscriptionState::Disabled,
                disable_reason: Some(DisableReason::DeliveryFailing),
                update_time: now,
                version: subscription.version + 1,
                ..subscription.clone()
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;
    use crate::domain::values::SigningSecret;

    #[test]
    fn backoff_grows_to_eight_hours() {
        let secs: Vec<u64> = (1..=11).map(|a| backoff_ceiling(a).as_secs()).collect();
        assert_eq!(
            secs,
            [
                5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 28_800, 28_800
            ]
        );
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn retries_are_jittered_up_to_the_ceiling_and_end_with_the_window() {
        let day = Duration::from_secs(26 * 3600);
        let after = |attempt, elapsed: i64, jitter| {
            retry_at(
                t0(),
                attempt,
                t0() + chrono::Duration::seconds(elapsed),
                day,
                jitter,
            )
            .map(|t| (t - t0()).num_seconds() - elapsed)
        };
        assert_eq!(after(1, 0, 1.0), Some(5));
        assert_eq!(after(2, 5, 0.5), Some(15));
        // Full jitter, but never at once.
        assert_eq!(after(3, 35, 0.0), Some(1));
        assert_eq!(after(9, 3600, 1.0), Some(28_800));
        // The last retry is at the window's end, then none.
        let end = 26 * 3600;
        assert_eq!(after(10, end - 60, 1.0), Some(60));
        assert_eq!(after(11, end, 1.0), None);
    }

    fn subscription() -> Subscription {
        Subscription {
            id: SubscriptionId::generate(),
            url: WebhookUrl::parse("https://hooks.example.com/", false).unwrap(),
            event_types: EventTypes::try_from(vec!["rapport.profiles.v1.*".to_owned()]).unwrap(),
            state: SubscriptionState::Active,
            disable_reason: None,
            secret: SigningSecret::generate(),
            create_time: t0(),
            update_time: t0(),
            version: 1,
        }
    }

    fn event(event_type: &str) -> Rendered {
        Rendered {
            id: "e1".into(),
            event_type: event_type.into(),
            body: "{}".into(),
        }
    }

    #[test]
    fn only_active_matching_subscriptions_receive_an_event() {
        let active = subscription();
        let disabled = Subscription {
            state: SubscriptionState::Disabled,
            disable_reason: Some(DisableReason::Requested),
            ..subscription()
        };
        let other = Subscription {
            event_types: EventTypes::try_from(vec!["rapport.orders.v1.*".to_owned()]).unwrap(),
            ..subscription()
        };
        let out = fan_out(
            &[active.clone(), disabled, other],
            &event("rapport.profiles.v1.CustomerCreated"),
            t0(),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].subscription, active.id);
        assert_eq!(out[0].state, DeliveryState::Pending);
        assert_eq!(out[0].next_attempt_time, Some(t0()));
    }

    #[test]
    fn an_attempt_is_claimed_only_for_a_pending_delivery_of_an_active_subscription() {
        let s = subscription();
        let d = new_delivery(s.id, &event("x"), t0());
        let watchdog = Duration::from_secs(70);
        let Claim::Attempt(claimed) = claim(Some(d.clone()), Some(&s), t0(), watchdog) else {
            panic!("not claimed");
        };
        assert_eq!(claimed.attempts, 1);
        assert_eq!(
            claimed.next_attempt_time,
            Some(t0() + chrono::Duration::seconds(70))
        );
        let disabled = Subscription {
            state: SubscriptionState::Disabled,
            ..s.clone()
        };
        assert!(matches!(
            claim(Some(d.clone()), Some(&disabled), t0(), watchdog),
            Claim::Abandon(a) if a.state == DeliveryState::Failed
        ));
        assert!(matches!(
            claim(Some(d.clone()), None, t0(), watchdog),
            Claim::Abandon(_)
        ));
        let delivered = Delivery {
            state: DeliveryState::Delivered,
            ..d
        };
        assert_eq!(
            claim(Some(delivered), Some(&s), t0(), watchdog),
            Claim::Skip
        );
        assert_eq!(claim(None, Some(&s), t0(), watchdog), Claim::Skip);
        // A firing before the next attempt is due (another worker's stale
        // firing) makes none.
        let later = t0() + chrono::Duration::seconds(30);
        let waiting = Delivery {
            next_attempt_time: Some(later),
            ..new_delivery(s.id, &event("x"), t0())
        };
        assert_eq!(
            claim(Some(waiting), Some(&s), t0(), watchdog),
            Claim::NotYet(later)
        );
    }

    #[test]
    fn answers_deliver_retry_or_give_up_and_disable() {
        let s = subscription();
        let window = Duration::from_secs(26 * 3600);
        let claimed = Delivery {
            attempts: 1,
            ..new_delivery(s.id, &event("x"), t0())
        };
        let ok = record(&claimed, &s, Answer::Status(204), t0(), window, 0.5);
        assert_eq!(ok.delivery.state, DeliveryState::Delivered);
        assert_eq!(ok.delivery.last_status_code, Some(204));
        assert_eq!(ok.delivery.next_attempt_time, None);
        assert!(ok.disabled.is_none());

        let retry = record(&claimed, &s, Answer::Status(500), t0(), window, 1.0);
        assert_eq!(retry.delivery.state, DeliveryState::Pending);
        assert_eq!(retry.delivery.last_status_code, Some(500));
        assert_eq!(
            retry.delivery.next_attempt_time,
            Some(t0() + chrono::Duration::seconds(5))
        );
        let redirect = record(&claimed, &s, Answer::Status(301), t0(), window, 1.0);
        assert_eq!(redirect.delivery.state, DeliveryState::Pending);

        let late = t0() + chrono::Duration::hours(27);
        let gave_up = record(
            &claimed,
            &s,
            Answer::NoAnswer("timed out".into()),
            late,
            window,
            1.0,
        );
        assert_eq!(gave_up.delivery.state, DeliveryState::Failed);
        assert_eq!(gave_up.delivery.last_status_code, None);
        assert_eq!(gave_up.delivery.last_error, "timed out");
        let disabled = gave_up.disabled.expect("subscription disabled");
        assert_eq!(disabled.state, SubscriptionState::Disabled);
        assert_eq!(
            disabled.disable_reason,
            Some(DisableReason::DeliveryFailing)
        );
        assert_eq!(disabled.version, s.version + 1);
    }

    #[test]
    fn updates_change_only_what_differs() {
        let s = subscription();
        assert_eq!(
            apply_updates(
                &s,
                vec![SubscriptionUpdate::State(SubscriptionState::Active)],
                t0()
            ),
            None
        );
        let paused = apply_updates(
            &s,
            vec![SubscriptionUpdate::State(SubscriptionState::Disabled)],
            t0(),
        )
        .unwrap();
        assert_eq!(paused.disable_reason, Some(DisableReason::Requested));
        assert_eq!(paused.version, 2);
        let resumed = apply_updates(
            &paused,
            vec![SubscriptionUpdate::State(SubscriptionState::Active)],
            t0(),
        )
        .unwrap();
        assert_eq!(resumed.state, SubscriptionState::Active);
        assert_eq!(resumed.disable_reason, None);
    }
}
