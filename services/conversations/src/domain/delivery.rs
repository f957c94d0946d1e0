//! What becomes of an outbound message's delivery: the outcome of handing
//! it to its channel (sent, tried again later, failed, deferred, cancelled
//! by the contact policy) and a connector's later reports. States only
//! move forward: SCHEDULED → SENT → DELIVERED, or to FAILED / CANCELLED
//! from SCHEDULED or SENT; anything else is a late or repeated report and
//! changes nothing.
use chrono::{DateTime, Duration, Utc};

use super::model::*;

/// How long a claimed hand-over may take before the message is handed
/// over again (its outcome never recorded: the worker stopped).
pub const WATCHDOG: Duration = Duration::minutes(5);

/// How long a message is retried after it was due before it fails.
pub const RETRY_WINDOW: Duration = Duration::days(3);

/// The longest wait between two tries.
const MAX_BACKOFF_SECS: i64 = 900;

/// The longest failure reason kept.
const MAX_REASON_CHARS: usize = 500;

/// What handing a message to its channel came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken; the channel's own id of it, when it gave one.
    Sent(Option<String>),
    /// Not now (the relay or connector is down, a 4xx, a 5xx from HTTP):
    /// again after a backoff.
    Retry(String),
    /// Refused for good (a 5xx from SMTP, no address).
    Failed(String),
    /// The contact policy defers it now (quiet hours).
    Deferred(DateTime<Utc>),
    /// The contact policy refuses it now (consent withdrawn): why.
    Refused(String),
}

/// A delivery after an outcome: its new state and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The delivery.
    pub delivery: Delivery,
    /// When the message is handed over again; `None`: never.
    pub next: Option<DateTime<Utc>>,
}

/// What claiming a hand-over makes of `d`: one more attempt.
pub fn claim(d: &Delivery) -> Delivery {
    Delivery {
        attempts: d.attempts + 1,
        ..d.clone()
    }
}

/// What `outcome` makes of the delivery `d` of a message created at
/// `created`, at `now`.
pub fn record(
    d: &Delivery,
    created: DateTime<Utc>,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Recorded {
    let set = |state: DeliveryState, reason: &str| Delivery {
        state,
        failure_reason: reason.chars().take(MAX_REASON_CHARS).collect(),
        update_time: now,
        ..d.clone()
    };
    match outcome {
        Outcome::Sent(_) => Recorded {
            delivery: set(DeliveryState::Sent, ""),
            next: None,
        },
        Outcome::Failed(why) => Recorded {
            delivery: set(DeliveryState::Failed, &why),
            next: None,
        },
        Outcome::Refused(why) => Recorded {
            delivery: set(
                DeliveryState::Cancelled,
                &format!("CONTACT_NOT_PERMITTED: {why}"),
            ),
            next: None,
        },
        Outcome::Deferred(until) => Recorded {
            delivery: Delivery {
                scheduled_time: Some(until),
                ..d.clone()
            },
            next: Some(until.max(now)),
        },
        Outcome::Retry(why) => {
            let due = d.scheduled_time.unwrap_or(created);
            if now - due > RETRY_WINDOW {
                return Recorded {
                    delivery: set(
                        DeliveryState::Failed,
                        &format!("gave up after {} attempts: {why}", d.attempts),
                    ),
                    next: None,
                };
            }
            Recorded {
                delivery: Delivery {
                    failure_reason: why.chars().take(MAX_REASON_CHARS).collect(),
                    ..d.clone()
                },
                next: Some(now + backoff(d.attempts)),
            }
        }
    }
}

/// The wait after the `attempt`-th try failed: 1 s, doubling, at most 15
/// minutes.
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    Duration::seconds((1_i64 << exp).min(MAX_BACKOFF_SECS))
}

/// What a connector reports of a message it was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The channel took it.
    Sent,
    /// It reached the customer.
    Delivered,
    /// It never will: why.
    Failed(String),
}

/// What `report` makes of the delivery `d` at `now`: `None` when it is a
/// late or repeated report that changes nothing (a SENT after DELIVERED).
pub fn report(d: &Delivery, report: &Report, now: DateTime<Utc>) -> Option<Delivery> {
    use DeliveryState as S;
    let open = matches!(d.state, S::Scheduled | S::Sent);
    let (state, reason) = match report {
        Report::Sent if d.state == S::Scheduled => (S::Sent, String::new()),
        Report::Delivered if open => (S::Delivered, String::new()),
        Report::Failed(why) if open => (S::Failed, why.chars().take(MAX_REASON_CHARS).collect()),
        _ => return None,
    };
    Some(Delivery {
        state,
        failure_reason: reason,
        update_time: now,
        ..d.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn scheduled() -> Delivery {
        Delivery {
            state: DeliveryState::Scheduled,
            failure_reason: String::new(),
            scheduled_time: None,
            update_time: at(0),
            attempts: 1,
        }
    }

    #[test]
    fn a_retry_backs_off_and_gives_up_after_the_window() {
        let r = record(&scheduled(), at(0), Outcome::Retry("421".into()), at(10));
        assert_eq!(r.delivery.state, DeliveryState::Scheduled);
        assert_eq!(r.next, Some(at(11)));
        let late = at(RETRY_WINDOW.num_seconds() + 1);
        let r = record(&scheduled(), at(0), Outcome::Retry("421".into()), late);
        assert_eq!(r.delivery.state, DeliveryState::Failed);
        assert_eq!(r.next, None);
        assert_eq!(backoff(3), Duration::seconds(4));
        assert_eq!(backoff(40), Duration::seconds(MAX_BACKOFF_SECS));
    }

    #[test]
    fn a_refusal_cancels_and_a_deferral_waits() {
        let r = record(
            &scheduled(),
            at(0),
            Outcome::Refused("NO_CONSENT".into()),
            at(5),
        );
        assert_eq!(r.delivery.state, DeliveryState::Cancelled);
        assert_eq!(
            r.delivery.failure_reason,
            "CONTACT_NOT_PERMITTED: NO_CONSENT"
        );
        let r = record(&scheduled(), at(0), Outcome::Deferred(at(100)), at(5));
        assert_eq!(r.delivery.state, DeliveryState::Scheduled);
        assert_eq!(r.next, Some(at(100)));
    }

    #[test]
    fn reports_only_move_forward() {
        let sent = report(&scheduled(), &Report::Sent, at(1)).unwrap();
        assert_eq!(sent.state, DeliveryState::Sent);
        assert_eq!(report(&sent, &Report::Sent, at(2)), None);
        let delivered = report(&sent, &Report::Delivered, at(2)).unwrap();
        assert_eq!(report(&delivered, &Report::Sent, at(3)), None);
        assert_eq!(report(&delivered, &Report::Failed("x".into()), at(3)), None);
        let failed = report(&sent, &Report::Failed("bounced".into()), at(3)).unwrap();
        assert_eq!(failed.failure_reason, "bounced");
        assert_eq!(report(&failed, &Report::Delivered, at(4)), None);
    }
}
