//! What the use-cases need from storage. One implementation lives in
//! `storage/` (sea-orm over SQLite or PostgreSQL).
use std::future::Future;

use chrono::{DateTime, Utc};

use rapport_usecase::{Claim, Priors};

use super::{error::Error, model::*};

/// A subscription row to write.
#[derive(Debug, Clone)]
pub enum SubscriptionWrite {
    /// A new subscription.
    Insert(Subscription),
    /// A changed subscription; fails with a version conflict unless the
    /// stored version is still `expected_version`.
    Update {
        /// The new state (its version already incremented).
        subscription: Subscription,
        /// The version it was read at.
        expected_version: i64,
    },
    /// Deletes the subscription (at `expected_version`) and its deliveries,
    /// and cancels their pending attempts.
    Delete {
        /// Which.
        id: SubscriptionId,
        /// The version it was read at.
        expected_version: i64,
    },
}

/// A delivery row to write.
#[derive(Debug, Clone)]
pub enum DeliveryWrite {
    /// A new delivery.
    Insert(Delivery),
    /// The outcome of an attempt; fails with a version conflict unless the
    /// stored delivery is still pending at `expected_attempts` (a later
    /// attempt overtook this one).
    Update {
        /// The new state.
        delivery: Delivery,
        /// The attempts it was claimed at.
        expected_attempts: u32,
    },
}

/// A change of a delivery's timer: its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// The next attempt of the delivery is due at this time (replacing any
    /// earlier schedule).
    Attempt(DeliveryId, DateTime<Utc>),
    /// No more attempts.
    Cancel(DeliveryId),
}

/// Everything one use-case changes, committed in one transaction together
/// with its idempotency key.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    /// Tenant of every row.
    pub tenant: Tenant,
    /// The request's idempotency key with the result it answers.
    pub claim: Option<Claim>,
    /// Subscription rows.
    pub subscriptions: Vec<SubscriptionWrite>,
    /// Delivery rows.
    pub deliveries: Vec<DeliveryWrite>,
    /// Delivery timers.
    pub schedules: Vec<Schedule>,
    /// When the change happens.
    pub occur_time: DateTime<Utc>,
}

impl ChangeSet {
    /// An empty change of `tenant` at `now`.
    pub fn new(tenant: &Tenant, now: DateTime<Utc>) -> Self {
        Self {
            tenant: tenant.clone(),
            claim: None,
            subscriptions: Vec::new(),
            deliveries: Vec::new(),
            schedules: Vec::new(),
            occur_time: now,
        }
    }
}

/// Why a commit did not happen. The webhooks schema has no unique clash of
/// its own: anything else is a failure.
pub type CommitError = rapport_usecase::CommitError<Error>;

/// Storage of the webhooks service. Every method is scoped to one tenant;
/// stored idempotent results are read through [`Priors`].
pub trait Repository: Priors<Error = Error> + Clone + 'static {
    /// One subscription.
    fn get(
        &self,
        tenant: &Tenant,
        id: SubscriptionId,
    ) -> impl Future<Output = Result<Option<Subscription>, Error>> + Send;

    /// A page of subscriptions by id (creation order) after `after`.
    fn list(
        &self,
        tenant: &Tenant,
        after: Option<SubscriptionId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Subscription>, Error>> + Send;

    /// One delivery.
    fn delivery(
        &self,
        tenant: &Tenant,
        id: DeliveryId,
    ) -> impl Future<Output = Result<Option<Delivery>, Error>> + Send;

    /// A page of a subscription's deliveries, newest first, before
    /// `before`.
    fn deliveries(
        &self,
        tenant: &Tenant,
        subscription: SubscriptionId,
        before: Option<DeliveryId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Delivery>, Error>> + Send;

    /// Applies a change set atomically.
    fn commit(&self, change: ChangeSet) -> impl Future<Output = Result<(), CommitError>> + Send;
}
