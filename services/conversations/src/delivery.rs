//! The delivery worker: hands outbound messages to their channel — email,
//! built in, or the inbox's connector — as their durable timers (`conversations.deliver`) come due.
//!
//! Claim, send, record, as the webhooks service delivers: a firing only
//! claims the hand-over, in the timer's short transaction (one more
//! attempt; the timer set again as a watchdog). Once that has committed,
//! the hand-over runs as a task of its own, outside any transaction — a
//! slow relay holds no database lock and delays no other message — and its
//! outcome is recorded in a second short transaction: SENT, tried again
//! after a backoff, FAILED with the reason, or CANCELLED when the contact
//! policy now refuses a proactive message. A crash between the hand-over
//! and the record leaves the watchdog timer, which hands the message over
//! again: at least once, under the same Message-ID, so the receiver
//! recognizes the copy.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rapport_events::{consume::HandlerError, relay::Wake, timers};
use rapport_store::{Db, outbox::Encode};
use rapport_usecase::Clock;
use tokio::{
    sync::Semaphore,
    task::{JoinHandle, JoinSet},
};

use crate::{
    connector::Connectors,
    domain::{
        Channel, ConversationId, DeliveryState, DomainEvent, MessageId, Tenant,
        delivery::{self as rules, Outcome},
        ports::Contact,
        rules::proactive,
    },
    email::{Mailer, SendError},
    profiles::Profiles,
    storage::delivery::{self as store, DeliveryUpdate, Outgoing},
};

/// Hand-overs in flight at once.
const CONCURRENCY: usize = 16;

/// How long one hand-over may take, all told (well within the watchdog).
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(120);

/// One claimed hand-over.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    tenant: Tenant,
    conversation: ConversationId,
    message: MessageId,
    attempt: u32,
}

/// Hands due messages over to their channels. Cheap to clone.
#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    clock: Arc<dyn Clock>,
    mailer: Option<Mailer>,
    connectors: Connectors,
    profiles: Profiles,
    encode: Encode<DomainEvent>,
    wake: Wake,
    limit: Arc<Semaphore>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deliverer")
    }
}

impl Deliverer {
    /// A deliverer over `db`, sending email through `mailer` (none: email
    /// waits, retried, until a relay is configured) and other channels'
    /// messages through their inboxes' `connectors`, asking `profiles` for
    /// addresses and contact policies, writing DeliveryChanged events as
    /// `encode` makes them.
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        mailer: Option<Mailer>,
        connectors: Connectors,
        profiles: Profiles,
        encode: Encode<DomainEvent>,
        wake: Wake,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                clock,
                mailer,
                connectors,
                profiles,
                encode,
                wake,
                limit: Arc::new(Semaphore::new(CONCURRENCY)),
            }),
        }
    }

    /// One firing pass: the hand-overs claimed (committed or not: a job
    /// whose claim is not in the database finds nothing to do) and how many
    /// timers fired.
    async fn claim_due(&self) -> (Vec<Job>, Result<usize, sea_orm::DbErr>) {
        let claimed: Arc<Mutex<Vec<Job>>> = Arc::default();
        let handler = claim_handler(self.inner.clock.clone(), claimed.clone());
        let fired = timers::fire_due(
            &self.inner.db,
            self.inner.clock.as_ref(),
            &[store::DELIVER],
            &handler,
        )
        .await;
        let jobs = std::mem::take(&mut *claimed.lock().expect("claims lock"));
        (jobs, fired)
    }

    /// Makes one claimed hand-over and records its outcome.
    async fn attempt(&self, job: Job) {
        let inner = &self.inner;
        let out = match store::outgoing(
            &inner.db.reader,
            &job.tenant,
            job.conversation,
            job.message,
        )
        .await
        {
            Ok(Some(out)) => out,
            // Erased or gone: nothing to send.
            Ok(None) => return,
            Err(e) => {
                // The watchdog timer hands it over again.
                tracing::warn!(tenant = %job.tenant, message = %job.message, error = %e, "reading a message to deliver failed");
                return;
            }
        };
        let current = |d: &crate::domain::Delivery| {
            d.state == DeliveryState::Scheduled && d.attempts == job.attempt
        };
        if !out.message.delivery.as_ref().is_some_and(current) {
            // Overtaken by a later claim, or no longer waiting.
            return;
        }
        let outcome = match tokio::time::timeout(
            HAND_OVER_TIMEOUT,
            self.hand_over(&job.tenant, &out),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retry(format!(
                "no answer within {} s",
                HAND_OVER_TIMEOUT.as_secs()
            )),
        };
        let now = inner.clock.now();
        let recorded = store::update(
            &inner.db,
            inner.encode,
            &job.tenant,
            job.message,
            now,
            |m| {
                let d = m.delivery.as_ref().filter(|d| current(d))?;
                let external_id = match &outcome {
                    Outcome::Sent(id) => id.clone(),
                    _ => None,
                };
                let r = rules::record(d, m.create_time, outcome.clone(), now);
                Some(DeliveryUpdate {
                    delivery: r.delivery,
                    external_id,
                    next: r.next,
                })
            },
        )
        .await;
        match recorded {
            Ok(Some(m)) => {
                inner.wake.wake();
                let state = m.delivery.map(|d| d.state.as_str()).unwrap_or_default();
                tracing::debug!(tenant = %job.tenant, message = %job.message, attempt = job.attempt, state, "delivery recorded");
            }
            Ok(None) => {}
            Err(e) => {
                // Not recorded: the watchdog timer hands it over again.
                tracing::warn!(tenant = %job.tenant, message = %job.message, error = %e, "delivery outcome not recorded");
            }
        }
    }

    /// Hands `out` to its channel: the recipient's address and, for a
    /// proactive message, the contact policy are asked now, at send time
    /// (consent may have been withdrawn while it waited for quiet hours
    /// to end).
    async fn hand_over(&self, tenant: &Tenant, out: &Outgoing) -> Outcome {
        let m = &out.message;
        let purpose = m.purpose.unwrap_or(crate::domain::Purpose::Service);
        let (contact, address) = match self
            .inner
            .profiles
            .check(tenant, m.customer, m.channel, purpose)
            .await
        {
            Ok(answer) => answer,
            Err(e) => return Outcome::Retry(format!("asking profiles: {e}")),
        };
        if proactive(&out.conversation, purpose) {
            match contact {
                Contact::Allowed => {}
                Contact::Deferred(until) => return Outcome::Deferred(until),
                Contact::Refused(why) => return Outcome::Refused(why),
            }
        }
        match m.channel {
            Channel::Email => {
                let Some(mailer) = self.inner.mailer.as_ref() else {
                    return Outcome::Retry("conversations.email.smtp_url is not set".into());
                };
                let Some(to) = address else {
                    return Outcome::Failed("the customer has no email address".into());
                };
                match mailer.send(out, &to).await {
                    Ok(()) => Outcome::Sent(None),
                    Err(SendError::Permanent(why)) => Outcome::Failed(why),
                    Err(SendError::Transient(why)) => Outcome::Retry(why),
                }
            }
            other => {
                let Some(to) = address else {
                    return Outcome::Failed(format!(
                        "the customer has no {} address",
                        other.as_str()
                    ));
                };
                self.inner
                    .connectors
                    .send(out, &to, self.inner.clock.now())
                    .await
            }
        }
    }

    /// Starts the worker: a firing pass every `poll` (at once again after a
    /// pass that fired anything), each claimed hand-over a task of its own,
    /// at most [`CONCURRENCY`] at once. Aborting the worker aborts its
    /// hand-overs; their watchdog timers make them again.
    pub fn spawn(&self, poll: Duration) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut running = JoinSet::new();
            loop {
                while running.try_join_next().is_some() {}
                let (jobs, fired) = me.claim_due().await;
                for job in jobs {
                    let Ok(permit) = me.inner.limit.clone().acquire_owned().await else {
                        return;
                    };
                    let worker = me.clone();
                    running.spawn(async move {
                        worker.attempt(job).await;
                        drop(permit);
                    });
                }
                match fired {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "firing deliveries failed; retrying"),
                }
                tokio::time::sleep(poll).await;
            }
        })
    }
}

/// The handler of due delivery timers: claims into `claimed`.
fn claim_handler(clock: Arc<dyn Clock>, claimed: Arc<Mutex<Vec<Job>>>) -> timers::TimerHandler {
    Arc::new(move |txn, fired| {
        let (clock, claimed) = (clock.clone(), claimed.clone());
        Box::pin(async move {
            let Some((conversation, message)) = store::parse_payload(&fired.timer.payload) else {
                return Err(HandlerError::Reject("unreadable delivery payload".into()));
            };
            let tenant = Tenant::parse(&fired.timer.tenant)
                .map_err(|_| HandlerError::Reject("a timer of no tenant".into()))?;
            let attempt = store::claim(
                txn,
                &tenant,
                conversation,
                message,
                clock.now(),
                rules::WATCHDOG,
            )
            .await
            .map_err(|e| HandlerError::Retry(e.to_string()))?;
            if let Some(attempt) = attempt {
                claimed.lock().expect("claims lock").push(Job {
                    tenant,
                    conversation,
                    message,
                    attempt,
                });
            }
            Ok(())
        })
    })
}
