//! Races between use-cases, interleaved on purpose: a repository that runs
//! another use-case after a use-case has read and before it commits, over the
//! real storage (SQLite, or PostgreSQL when `RAPPORT_TEST_POSTGRES_URL` is
//! set). Through the API such an interleaving happens only by chance.
use std::sync::Mutex;

use chrono::{Duration, Utc};
use futures::future::BoxFuture;
use rapport_events::relay::Wake;
use rapport_usecase::{Idempotency, Prior, Priors};

use crate::{
    domain::{
        Error,
        model::*,
        repository::*,
        rules::IdentityKind,
        service::{Profiles, SetConsent},
        values::Email,
    },
    storage::SqlRepository,
};

/// `inner`, with a task to run once, just before the next commit.
struct Interleaved<R> {
    inner: R,
    before_commit: Mutex<Option<BoxFuture<'static, ()>>>,
}

impl<R: Priors<Error = Error> + Sync> Priors for Interleaved<R> {
    type Error = Error;
    async fn prior(&self, tenant: &Tenant, key: &Idempotency) -> Result<Option<Prior>, Error> {
        self.inner.prior(tenant, key).await
    }
}

impl<R: Repository + Sync> Repository for Interleaved<R> {
    async fn get(&self, tenant: &Tenant, id: CustomerId) -> Result<Option<Customer>, Error> {
        self.inner.get(tenant, id).await
    }
    async fn holders(
        &self,
        tenant: &Tenant,
        keys: &[(IdentityKind, String)],
    ) -> Result<Vec<(usize, CustomerId)>, Error> {
        self.inner.holders(tenant, keys).await
    }
    async fn list(
        &self,
        tenant: &Tenant,
        filter: &ListFilter,
        order: ListOrder,
        after: Option<&ListCursor>,
        limit: u32,
    ) -> Result<Vec<Customer>, Error> {
        self.inner.list(tenant, filter, order, after, limit).await
    }
    async fn exact_matches(
        &self,
        tenant: &Tenant,
        match_keys: &[String],
    ) -> Result<Vec<Customer>, Error> {
        self.inner.exact_matches(tenant, match_keys).await
    }
    async fn text_matches(
        &self,
        tenant: &Tenant,
        needle: &str,
        exclude: &[CustomerId],
        after: Option<CustomerId>,
        limit: u32,
    ) -> Result<Vec<Customer>, Error> {
        self.inner
            .text_matches(tenant, needle, exclude, after, limit)
            .await
    }
    async fn consent_events(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        after: Option<LedgerCursor>,
        limit: u32,
    ) -> Result<Vec<ConsentEvent>, Error> {
        self.inner
            .consent_events(tenant, customer, after, limit)
            .await
    }
    async fn lifecycle_events(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        after: Option<LedgerCursor>,
        limit: u32,
    ) -> Result<Vec<LifecycleEvent>, Error> {
        self.inner
            .lifecycle_events(tenant, customer, after, limit)
            .await
    }
    async fn merge_records(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
    ) -> Result<Vec<MergeRecord>, Error> {
        self.inner.merge_records(tenant, customer).await
    }
    async fn erasure_receipt(
        &self,
        tenant: &Tenant,
        id: ErasureReceiptId,
    ) -> Result<Option<ErasureReceipt>, Error> {
        self.inner.erasure_receipt(tenant, id).await
    }
    async fn commit(&self, change: ChangeSet) -> Result<(), CommitError> {
        let task = self.before_commit.lock().expect("not poisoned").take();
        if let Some(task) = task {
            task.await;
        }
        self.inner.commit(change).await
    }
}

const EMAIL: &str = "ada.race@example.com";
const EVIDENCE: &str = "ada.race@example.com ticked the box";

#[tokio::test]
async fn a_consent_that_changes_nothing_cannot_commit_after_an_erasure() {
    let testdb = rapport_testkit::TestDb::fresh().await.unwrap();
    let db = rapport_store::open::<crate::Migrator>(&rapport_testkit::database_config(&testdb))
        .await
        .unwrap();
    let repo = SqlRepository::new(db.clone(), crate::api::events::encode, Wake::default());
    let profiles = Profiles::new(repo.clone(), crate::domain::SystemClock);
    let tenant = Tenant::parse("acme").unwrap();
    let customer = profiles
        .create(
            &tenant,
            Profile {
                display_name: "Ada Race".into(),
                emails: vec![EmailEntry {
                    address: Email::parse(EMAIL).unwrap(),
                    label: String::new(),
                    primary: true,
                    verified: false,
                }],
                ..Profile::default()
            },
            None,
        )
        .await
        .unwrap();
    let decision = SetConsent {
        channel: Channel::Email,
        purpose: ConsentPurpose::Marketing,
        status: ConsentStatus::Granted,
        source: "signup form".into(),
        evidence: EVIDENCE.into(),
        capture_time: Some(Utc::now() - Duration::hours(1)),
        privacy_notice_version: String::new(),
    };
    profiles
        .set_consent(&tenant, customer.id, decision.clone(), None)
        .await
        .unwrap();

    // The same decision, captured earlier (an import): it changes no state,
    // only appends to the ledger. The customer is erased after it has read
    // the customer and before it commits.
    let eraser = Profiles::new(repo.clone(), crate::domain::SystemClock);
    let (erase_tenant, id) = (tenant.clone(), customer.id);
    let racer = Profiles::new(
        Interleaved {
            inner: repo.clone(),
            before_commit: Mutex::new(Some(Box::pin(async move {
                eraser
                    .erase(&erase_tenant, id, None)
                    .await
                    .expect("the erasure commits");
            }))),
        },
        crate::domain::SystemClock,
    );
    let late = racer
        .set_consent(
            &tenant,
            customer.id,
            SetConsent {
                capture_time: Some(Utc::now() - Duration::hours(2)),
                ..decision
            },
            Some(Idempotency {
                method: "/rapport.profiles.v1.ProfilesService/SetConsent",
                request_id: "late-consent".into(),
                fingerprint: "f".into(),
            }),
        )
        .await;
    assert_eq!(
        late.map(|r| r.event.id),
        Err(Error::NotActive(customer.id, CustomerState::Erased)),
        "a consent committed after the erasure"
    );
    let ledger = repo
        .consent_events(&tenant, customer.id, None, 100)
        .await
        .unwrap();
    assert!(
        ledger.iter().all(|e| !e.evidence.contains(EMAIL)),
        "personal data in the ledger after erasure: {ledger:?}"
    );
    for row in rapport_testkit::store::idempotency_rows(&db, "acme").await {
        assert!(
            !row.response.unwrap_or_default().contains(EMAIL),
            "a stored reply keeps the erased profile: {}",
            row.request_id
        );
    }
    db.close().await;
}
