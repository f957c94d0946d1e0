//! Delivery attempts: the use-case a due delivery's timer sets off.
//!
//! A timer firing claims the attempt (`rules::claim`, in storage, inside
//! the timer's transaction): the attempt is counted and the delivery's
//! timer is set to try again should this attempt never report back. Only
//! once that is committed does [`Dispatcher::attempt`] make the HTTP call —
//! outside any transaction, so a slow endpoint holds no database lock —
//! and record its answer: delivered, retried later, or given up (and the
//! subscription disabled). A claim that was overtaken (a later claim of the
//! same delivery) makes no call and records nothing.
use std::time::Duration;

use rapport_usecase::{Clock, write::MAX_ATTEMPTS};

use super::{
    error::Error,
    model::*,
    ports::{Attempt, Sender},
    repository::*,
    rules,
};

/// One claimed attempt, to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Tenant of the delivery.
    pub tenant: Tenant,
    /// Which delivery.
    pub delivery: DeliveryId,
    /// The attempt's number, as claimed.
    pub attempt: u32,
}

/// What became of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempted {
    /// An attempt was made and recorded; the delivery's state after it.
    Recorded(DeliveryState),
    /// Nothing was sent: the claim was not committed, was overtaken, or the
    /// delivery is gone.
    Skipped,
    /// The attempt was made, but a later claim overtook it before its
    /// answer was recorded: that claim's attempt counts.
    Overtaken,
}

/// Makes delivery attempts.
#[derive(Debug, Clone)]
pub struct Dispatcher<R, S, C> {
    repo: R,
    sender: S,
    clock: C,
    window: Duration,
}

impl<R: Repository, S: Sender, C: Clock> Dispatcher<R, S, C> {
    /// Attempts through `sender`, recorded in `repo`; a delivery is retried
    /// for `window` after it was created.
    pub fn new(repo: R, sender: S, clock: C, window: Duration) -> Self {
        Self {
            repo,
            sender,
            clock,
            window,
        }
    }

    /// Makes the attempt `job` claimed, and records its answer.
    pub async fn attempt(&self, job: &Job) -> Result<Attempted, Error> {
        let Some(claimed) = self.claimed(job).await? else {
            return Ok(Attempted::Skipped);
        };
        let Some(mut subscription) = self.repo.get(&job.tenant, claimed.subscription).await? else {
            return Ok(Attempted::Skipped);
        };
        let timestamp = self.clock.now().timestamp();
        let attempt = Attempt {
            url: subscription.url.clone(),
            headers: subscription
                .secret
                .headers(&claimed.event_id, timestamp, &claimed.body),
            body: claimed.body.clone(),
        };
        let answer = self.sender.send(&attempt).await;
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let recorded = rules::record(
                &claimed,
                &subscription,
                answer.clone(),
                now,
                self.window,
                rand::random::<f64>(),
            );
            let state = recorded.delivery.state;
            let mut change = ChangeSet::new(&job.tenant, now);
            change
                .schedules
                .push(match recorded.delivery.next_attempt_time {
                    Some(at) => Schedule::Attempt(claimed.id, at),
                    None => Schedule::Cancel(claimed.id),
                });
            change.deliveries.push(DeliveryWrite::Update {
                delivery: recorded.delivery,
                expected_attempts: job.attempt,
            });
            if let Some(disabled) = recorded.disabled {
                change.subscriptions.push(SubscriptionWrite::Update {
                    subscription: disabled,
                    expected_version: subscription.version,
                });
            }
            match self.repo.commit(change).await {
                Ok(()) => return Ok(Attempted::Recorded(state)),
                Err(CommitError::VersionConflict) => {
                    // Either a later claim overtook this attempt, or the
                    // subscription changed while it was being disabled.
                    if self.claimed(job).await?.is_none() {
                        return Ok(Attempted::Overtaken);
                    }
                    match self.repo.get(&job.tenant, claimed.subscription).await? {
                        Some(s) => subscription = s,
                        None => return Ok(Attempted::Overtaken),
                    }
                }
                Err(CommitError::Other(e)) => return Err(e),
                Err(CommitError::KeyTaken) => {
                    return Err(Error::Internal("an attempt claimed a request key".into()));
                }
            }
        }
        Err(Error::Conflict)
    }

    /// The delivery as `job` claimed it, if that claim is committed and
    /// still the latest.
    async fn claimed(&self, job: &Job) -> Result<Option<Delivery>, Error> {
        Ok(self
            .repo
            .delivery(&job.tenant, job.delivery)
            .await?
            .filter(|d| d.state == DeliveryState::Pending && d.attempts == job.attempt))
    }
}
