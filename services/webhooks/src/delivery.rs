//! The delivery worker. It loops over `rapport_events::timers::fire_due`
//! rather than running `timers::spawn`: a handler passed to `spawn` runs
//! inside the timer's transaction, and an HTTP call there would hold
//! SQLite's one writer (and a PostgreSQL connection) for as long as a slow
//! endpoint takes. Here each firing only claims its attempt
//! (`storage::claims`); once the pass has committed, the attempts run as
//! tasks of their own, at most `delivery.concurrency` at once, each bounded
//! by `delivery.timeout_ms` — so one slow or dead endpoint delays no other.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use rapport_events::timers;
use rapport_store::Db;
use rapport_usecase::Clock;
use tokio::{
    sync::Semaphore,
    task::{JoinHandle, JoinSet},
};

use crate::{
    domain::dispatch::{Attempted, Dispatcher, Job},
    outbound::Outbound,
    storage::{SqlRepository, claims},
};

/// The service's clock, shared by the use-cases, the consumer and the
/// worker (a `ManualClock` in tests that drive time).
#[derive(Clone)]
pub(crate) struct ServiceClock(pub Arc<dyn Clock>);

impl Clock for ServiceClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

/// Fires due delivery attempts. Cheap to clone.
#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    clock: Arc<dyn Clock>,
    dispatcher: Dispatcher<SqlRepository, Outbound, ServiceClock>,
    /// How long an attempt may take before its delivery is attempted anew.
    watchdog: Duration,
    /// Attempts in flight at once.
    limit: Arc<Semaphore>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").finish_non_exhaustive()
    }
}

impl Deliverer {
    pub(crate) fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        dispatcher: Dispatcher<SqlRepository, Outbound, ServiceClock>,
        watchdog: Duration,
        concurrency: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                clock,
                dispatcher,
                watchdog,
                limit: Arc::new(Semaphore::new(concurrency.max(1))),
            }),
        }
    }

    /// One firing pass: the attempts claimed (committed or not: the
    /// dispatcher makes only committed ones) and how many timers fired.
    async fn claim_due(&self) -> (Vec<Job>, Result<usize, sea_orm::DbErr>) {
        let claimed = claims::Claimed::default();
        let handler = claims::handler(
            self.inner.clock.clone(),
            self.inner.watchdog,
            claimed.clone(),
        );
        let fired = timers::fire_due(
            &self.inner.db,
            self.inner.clock.as_ref(),
            &[crate::storage::ATTEMPT_TIMER],
            &handler,
        )
        .await;
        let jobs = std::mem::take(&mut *claimed.lock().expect("claims lock"));
        (jobs, fired)
    }

    /// Makes one claimed attempt; whether an HTTP call was made.
    async fn attempt(&self, job: Job) -> bool {
        match self.inner.dispatcher.attempt(&job).await {
            Ok(Attempted::Skipped) => false,
            Ok(Attempted::Recorded(state)) => {
                tracing::debug!(tenant = %job.tenant, delivery = %job.delivery, attempt = job.attempt, state = state.as_str(), "webhook attempt recorded");
                true
            }
            Ok(Attempted::Overtaken) => true,
            Err(e) => {
                // Not recorded: the claim's own timer tries again.
                tracing::warn!(tenant = %job.tenant, delivery = %job.delivery, error = %e, "webhook attempt not recorded");
                true
            }
        }
    }

    /// Makes every attempt due by the service's clock — concurrently,
    /// bounded as the worker's — and waits for all of them; the number of
    /// HTTP calls made. For embedders that drive time themselves
    /// ([`crate::Firing::Caller`]: tests with a manual clock).
    pub async fn run_due(&self) -> anyhow::Result<usize> {
        let (jobs, fired) = self.claim_due().await;
        let mut attempts = JoinSet::new();
        for job in jobs {
            let permit = self.inner.limit.clone().acquire_owned().await?;
            let me = self.clone();
            attempts.spawn(async move {
                let made = me.attempt(job).await;
                drop(permit);
                made
            });
        }
        let mut made = 0;
        while let Some(result) = attempts.join_next().await {
            if result? {
                made += 1;
            }
        }
        fired?;
        Ok(made)
    }

    /// Starts the worker: a firing pass every `poll` (at once again after a
    /// pass that fired anything), each claimed attempt a task of its own.
    /// Aborting the worker aborts its attempts; their claims' timers try
    /// them again.
    pub(crate) fn spawn(&self, poll: Duration) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut attempts = JoinSet::new();
            loop {
                while attempts.try_join_next().is_some() {}
                let (jobs, fired) = me.claim_due().await;
                for job in jobs {
                    let Ok(permit) = me.inner.limit.clone().acquire_owned().await else {
                        return;
                    };
                    let worker = me.clone();
                    attempts.spawn(async move {
                        worker.attempt(job).await;
                        drop(permit);
                    });
                }
                match fired {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "firing webhook attempts failed; retrying")
                    }
                }
                tokio::time::sleep(poll).await;
            }
        })
    }
}
