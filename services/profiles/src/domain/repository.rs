//! What the use-cases need from storage. One implementation lives in
//! `storage/` (sea-orm over SQLite or PostgreSQL).
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use rapport_usecase::{Claim, Priors};

use super::{error::Error, model::*, rules::IdentityKind, values::Tag};

/// A customer row to write.
#[derive(Debug, Clone)]
pub enum CustomerWrite {
    /// A new customer.
    Insert(Customer),
    /// A changed customer; fails with [`CommitError::VersionConflict`] unless
    /// the stored version is still `expected_version`.
    Update {
        /// The new state (its version already incremented).
        customer: Customer,
        /// The version it was read at.
        expected_version: i64,
    },
    /// A customer the change depends on but does not alter (a consent
    /// decision that changes no state still appends to its ledger): fails
    /// with [`CommitError::VersionConflict`] unless the stored version is
    /// still `expected_version`, so that nothing is added to a customer
    /// erased or merged since it was read.
    Unchanged {
        /// The customer.
        customer: CustomerId,
        /// The version it was read at.
        expected_version: i64,
    },
}

/// Everything one use-case changes, committed in one transaction together with
/// its outbox events and idempotency key.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    /// Tenant of every row.
    pub tenant: Tenant,
    /// The request's idempotency key with the result it answers.
    pub claim: Option<Claim>,
    /// Customer rows, written in order (a merge writes the tombstone first so
    /// that its identities are free for the survivor).
    pub customers: Vec<CustomerWrite>,
    /// Consent ledger entries to append.
    pub consent_events: Vec<ConsentEvent>,
    /// Lifecycle history entries to append.
    pub lifecycle_events: Vec<LifecycleEvent>,
    /// A merge record to keep.
    pub merge_record: Option<MergeRecord>,
    /// Ledgers to move from the first customer to the second (merge).
    pub move_history: Option<(CustomerId, CustomerId)>,
    /// An erasure: scrub the customer's ledgers and stored results, keep the receipt.
    pub erasure: Option<ErasureReceipt>,
    /// When the erasure, if still incomplete, is reported.
    pub erasure_overdue: Option<DateTime<Utc>>,
    /// Birthday timers to schedule or cancel.
    pub birthdays: Vec<BirthdayTimer>,
    /// Events for the outbox.
    pub events: Vec<DomainEvent>,
    /// When the change happens.
    pub occur_time: DateTime<Utc>,
}

impl ChangeSet {
    /// An empty change of `tenant` at `now`.
    pub fn new(tenant: &Tenant, now: DateTime<Utc>) -> Self {
        Self {
            tenant: tenant.clone(),
            claim: None,
            customers: Vec::new(),
            consent_events: Vec::new(),
            lifecycle_events: Vec::new(),
            merge_record: None,
            move_history: None,
            erasure: None,
            erasure_overdue: None,
            birthdays: Vec::new(),
            events: Vec::new(),
            occur_time: now,
        }
    }
}

/// Why a commit did not happen: the protocol's reasons, or a [`Clash`].
pub type CommitError = rapport_usecase::CommitError<Clash>;

/// A commit failure the profiles use-cases tell apart themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clash {
    /// An identity is already held (a lost race with another writer).
    IdentityTaken {
        /// Kind.
        kind: IdentityKind,
        /// Unique value.
        value: String,
    },
    /// Anything else.
    Failed(Error),
}

/// Filters of a customer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Record state (ACTIVE unless asked otherwise).
    pub state: CustomerState,
    /// Lifecycle stage.
    pub stage: Option<LifecycleStage>,
    /// Tag.
    pub tag: Option<Tag>,
    /// Changed strictly after.
    pub update_time_after: Option<DateTime<Utc>>,
}

/// Sort key of a customer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Creation time.
    CreateTime,
    /// Last change.
    UpdateTime,
    /// Display name.
    DisplayName,
}

/// Ordering of a customer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOrder {
    /// Key.
    pub key: SortKey,
    /// Descending.
    pub descending: bool,
}

/// Keyset position: the sort value and id of the last row returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCursor {
    /// Sort value: µs since the epoch for times.
    #[serde(rename = "t", skip_serializing_if = "Option::is_none", default)]
    pub time: Option<i64>,
    /// Sort value for names.
    #[serde(rename = "s", skip_serializing_if = "Option::is_none", default)]
    pub text: Option<String>,
    /// Tie-breaker.
    #[serde(rename = "i")]
    pub id: Uuid,
}

/// Position in a ledger: (time in µs, id) of the last entry returned.
pub type LedgerCursor = (i64, Uuid);

/// Storage of the profiles service. Every method is scoped to one tenant;
/// stored idempotent results are read through [`Priors`].
pub trait Repository: Priors<Error = Error> + 'static {
    /// One customer.
    fn get(
        &self,
        tenant: &Tenant,
        id: CustomerId,
    ) -> impl Future<Output = Result<Option<Customer>, Error>> + Send;

    /// Holders of identities: `(index into values, holder)` for every value held.
    fn holders(
        &self,
        tenant: &Tenant,
        keys: &[(IdentityKind, String)],
    ) -> impl Future<Output = Result<Vec<(usize, CustomerId)>, Error>> + Send;

    /// A page of customers after `after`.
    fn list(
        &self,
        tenant: &Tenant,
        filter: &ListFilter,
        order: ListOrder,
        after: Option<&ListCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Customer>, Error>> + Send;

    /// Active customers holding an identity whose bare form equals one of `match_keys`.
    fn exact_matches(
        &self,
        tenant: &Tenant,
        match_keys: &[String],
    ) -> impl Future<Output = Result<Vec<Customer>, Error>> + Send;

    /// Active customers whose search text contains `needle`, by id, after `after`.
    fn text_matches(
        &self,
        tenant: &Tenant,
        needle: &str,
        exclude: &[CustomerId],
        after: Option<CustomerId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Customer>, Error>> + Send;

    /// Consent ledger, oldest first.
    fn consent_events(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        after: Option<LedgerCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ConsentEvent>, Error>> + Send;

    /// Lifecycle history, oldest first.
    fn lifecycle_events(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        after: Option<LedgerCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<LifecycleEvent>, Error>> + Send;

    /// Merge records naming the customer on either side.
    fn merge_records(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
    ) -> impl Future<Output = Result<Vec<MergeRecord>, Error>> + Send;

    /// An erasure receipt with its confirmations.
    fn erasure_receipt(
        &self,
        tenant: &Tenant,
        id: ErasureReceiptId,
    ) -> impl Future<Output = Result<Option<ErasureReceipt>, Error>> + Send;

    /// Applies a change set atomically.
    fn commit(&self, change: ChangeSet) -> impl Future<Output = Result<(), CommitError>> + Send;
}
