//! Use-cases of the webhooks API: subscriptions and their deliveries.
//!
//! Every mutation follows the write protocol of `rapport_usecase::write`:
//! answer a replayed `request_id` from the stored result; read; apply the
//! rules; commit the rows, their timers and the idempotency claim in one
//! transaction with an optimistic version check; on a lost race read again
//! and retry (a client that sent an etag gets ABORTED instead, since it
//! asked to act on what it read).
use serde::{Serialize, de::DeserializeOwned};

use rapport_usecase::{Clock, Idempotency, Outcome, Write, page_of, write::MAX_ATTEMPTS};

use super::{
    error::{Error, Violations},
    model::*,
    ports::AddressGuard,
    repository::*,
    rules::{self, NewSubscription, SubscriptionUpdate},
    values::{SigningSecret, WebhookUrl},
};

/// The field a URL is reported under.
pub const URL_FIELD: &str = "webhook_subscription.url";

/// The webhooks use-cases over a repository, the address check of URLs and
/// a clock.
#[derive(Debug, Clone)]
pub struct Subscriptions<R, G, C> {
    repo: R,
    guard: G,
    clock: C,
}

impl<R: Repository, G: AddressGuard, C: Clock> Subscriptions<R, G, C> {
    /// Use-cases over `repo`, checking URLs with `guard`, telling time by
    /// `clock`.
    pub fn new(repo: R, guard: G, clock: C) -> Self {
        Self { repo, guard, clock }
    }

    /// The current time of the service's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Refuses a URL whose host is, or resolves to, an address deliveries
    /// must never reach.
    async fn check_url(&self, url: &WebhookUrl) -> Result<(), Error> {
        self.guard
            .check(url)
            .await
            .map_err(|why| Violations::one(URL_FIELD, why).into())
    }

    /// Commits `change` with `result` as the answer stored under the
    /// request's key, about `subject`. `None`: lost a race; read again and
    /// retry.
    async fn commit<T: Serialize + DeserializeOwned>(
        &self,
        w: &Write<'_, R>,
        mut change: ChangeSet,
        subject: impl std::fmt::Display,
        result: T,
    ) -> Result<Option<T>, Error> {
        change.claim = w.claim(subject, &result)?;
        match w.finish(self.repo.commit(change).await, result).await? {
            Outcome::Done(r) => Ok(Some(r)),
            Outcome::Retry => Ok(None),
            Outcome::Other(e) => Err(e),
        }
    }

    /// The subscription `id`, or NotFound.
    async fn load(&self, tenant: &Tenant, id: SubscriptionId) -> Result<Subscription, Error> {
        self.repo.get(tenant, id).await?.ok_or(Error::NotFound(id))
    }

    fn check_etag(s: &Subscription, etag: Option<&str>) -> Result<(), Error> {
        match etag {
            Some(e) if e != s.etag() => Err(Error::EtagMismatch),
            _ => Ok(()),
        }
    }

    /// Creates an active subscription with a new signing secret (the result
    /// carries it: the API shows it this once).
    pub async fn create(
        &self,
        tenant: &Tenant,
        new: NewSubscription,
        idem: Option<Idempotency>,
    ) -> Result<Subscription, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.create_once(&w, tenant, new).await;
        w.settle(result).await
    }

    async fn create_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        new: NewSubscription,
    ) -> Result<Subscription, Error> {
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        self.check_url(&new.url).await?;
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let s = Subscription {
                id: SubscriptionId::generate(),
                url: new.url.clone(),
                event_types: new.event_types.clone(),
                state: SubscriptionState::Active,
                disable_reason: None,
                secret: SigningSecret::generate(),
                create_time: now,
                update_time: now,
                version: 1,
            };
            let mut change = ChangeSet::new(tenant, now);
            change
                .subscriptions
                .push(SubscriptionWrite::Insert(s.clone()));
            if let Some(s) = self.commit(w, change, s.id, s.clone()).await? {
                return Ok(s);
            }
        }
        Err(w.exhausted())
    }

    /// One subscription.
    pub async fn get(&self, tenant: &Tenant, id: SubscriptionId) -> Result<Subscription, Error> {
        self.load(tenant, id).await
    }

    /// A page of subscriptions (creation order) and the cursor of the next.
    pub async fn list(
        &self,
        tenant: &Tenant,
        after: Option<SubscriptionId>,
        limit: u32,
    ) -> Result<(Vec<Subscription>, Option<SubscriptionId>), Error> {
        // One extra row tells whether another page exists.
        let rows = self.repo.list(tenant, after, limit + 1).await?;
        Ok(page_of(rows, limit, |s| s.id))
    }

    /// Applies `updates`; `etag` (when given) must match. A new URL is
    /// checked as on create.
    pub async fn update(
        &self,
        tenant: &Tenant,
        id: SubscriptionId,
        updates: Vec<SubscriptionUpdate>,
        etag: Option<String>,
        idem: Option<Idempotency>,
    ) -> Result<Subscription, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.update_once(&w, tenant, id, updates, etag).await;
        w.settle(result).await
    }

    async fn update_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        id: SubscriptionId,
        updates: Vec<SubscriptionUpdate>,
        etag: Option<String>,
    ) -> Result<Subscription, Error> {
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        for update in &updates {
            if let SubscriptionUpdate::Url(url) = update {
                self.check_url(url).await?;
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self.load(tenant, id).await?;
            Self::check_etag(&current, etag.as_deref())?;
            let now = self.clock.now();
            let Some(updated) = rules::apply_updates(&current, updates.clone(), now) else {
                // Nothing changes: no new version.
                return Ok(current);
            };
            let mut change = ChangeSet::new(tenant, now);
            change.subscriptions.push(SubscriptionWrite::Update {
                subscription: updated.clone(),
                expected_version: current.version,
            });
            match self.commit(w, change, id, updated).await? {
                Some(s) => return Ok(s),
                None if etag.is_some() => return Err(Error::EtagMismatch),
                None => continue,
            }
        }
        Err(w.exhausted())
    }

    /// Deletes a subscription with its deliveries; `etag` (when given)
    /// must match.
    pub async fn delete(
        &self,
        tenant: &Tenant,
        id: SubscriptionId,
        etag: Option<String>,
        idem: Option<Idempotency>,
    ) -> Result<(), Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.delete_once(&w, tenant, id, etag).await;
        w.settle(result).await
    }

    async fn delete_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        id: SubscriptionId,
        etag: Option<String>,
    ) -> Result<(), Error> {
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self.load(tenant, id).await?;
            Self::check_etag(&current, etag.as_deref())?;
            let mut change = ChangeSet::new(tenant, self.clock.now());
            change.subscriptions.push(SubscriptionWrite::Delete {
                id,
                expected_version: current.version,
            });
            match self.commit(w, change, id, ()).await? {
                Some(()) => return Ok(()),
                None if etag.is_some() => return Err(Error::EtagMismatch),
                None => continue,
            }
        }
        Err(w.exhausted())
    }

    /// A page of a subscription's deliveries, newest first, and the cursor
    /// of the next.
    pub async fn deliveries(
        &self,
        tenant: &Tenant,
        subscription: SubscriptionId,
        before: Option<DeliveryId>,
        limit: u32,
    ) -> Result<(Vec<Delivery>, Option<DeliveryId>), Error> {
        self.load(tenant, subscription).await?;
        let rows = self
            .repo
            .deliveries(tenant, subscription, before, limit + 1)
            .await?;
        Ok(page_of(rows, limit, |d| d.id))
    }

    /// Queues `event` (a test event) for the active subscription `id`, its
    /// first attempt due now.
    pub async fn send_test(
        &self,
        tenant: &Tenant,
        id: SubscriptionId,
        event: Rendered,
        idem: Option<Idempotency>,
    ) -> Result<Delivery, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.send_test_once(&w, tenant, id, &event).await;
        w.settle(result).await
    }

    async fn send_test_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        id: SubscriptionId,
        event: &Rendered,
    ) -> Result<Delivery, Error> {
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        for _ in 0..MAX_ATTEMPTS {
            let current = self.load(tenant, id).await?;
            let now = self.clock.now();
            let delivery = rules::test_delivery(&current, event, now)?;
            let mut change = ChangeSet::new(tenant, now);
            change.schedules.push(Schedule::Attempt(delivery.id, now));
            change
                .deliveries
                .push(DeliveryWrite::Insert(delivery.clone()));
            if let Some(d) = self.commit(w, change, id, delivery).await? {
                return Ok(d);
            }
        }
        Err(w.exhausted())
    }
}
