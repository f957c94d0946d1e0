//! Shared setup of the profiles integration tests: the real server bound to
//! `127.0.0.1:0` over a fresh database (SQLite, or PostgreSQL when
//! `RAPPORT_TEST_POSTGRES_URL` is set), a real tonic client and builders for
//! requests. Assertions on AIP-193 error details and the outbox and
//! idempotency readers come from `rapport_testkit` and are re-exported here,
//! so a test module needs only `use crate::harness::*;`.
//!
//! The profiles `Config` of these tests is built in one place only,
//! [`profiles_config`].

use std::{net::SocketAddr, sync::Arc};

use chrono::{DateTime, Utc};
use prost::Message as _;
use rapport_profiles::Config;
pub use rapport_proto::profiles as pb;
use rapport_proto::profiles::{
    AttributeValue, ChannelIdentity, CreateCustomerRequest, Customer, EmailAddress,
    GetCustomerRequest, ListCustomersRequest, PhoneNumber, UpdateCustomerRequest,
    attribute_value::Kind, profiles_service_client::ProfilesServiceClient,
};
pub use rapport_proto::types::{Channel, EventEnvelope};
use rapport_store::Db;
pub use rapport_testkit::status::{
    assert_error, assert_violation, assert_violation_under, describe, error_metadata, expect_err,
    violation_fields,
};
pub use rapport_testkit::store::{event_types, payload};
pub use rapport_testkit::tenant_request;
use rapport_testkit::{Running, TEST_SECRET, TestDb};
use tonic::Status;

/// The tenant most tests act as.
pub const TENANT: &str = "acme";
/// A second tenant, for isolation tests.
pub const OTHER_TENANT: &str = "globex";

/// The gRPC client under test.
pub type Client = ProfilesServiceClient<tonic::transport::Channel>;

/// One running profiles service and what a test needs to talk to it.
///
/// Field order is drop order: the client goes first, then the server is
/// told to stop, and the database goes last.
pub struct Harness {
    /// Client on `channel`.
    pub client: Client,
    /// The connected channel (for health and reflection clients).
    pub channel: tonic::transport::Channel,
    /// Where the server listens.
    pub addr: SocketAddr,
    /// Where it serves `/metrics`, when `server.metrics_listen` was set.
    pub metrics: Option<SocketAddr>,
    /// The service's database (outbox and idempotency inspection).
    pub db: Db,
    running: Option<Running>,
    /// The in-process bus the service publishes its events to.
    pub bus: rapport_events::Bus,
    /// The per-test database; dropped last.
    pub testdb: TestDb,
}

/// The configuration of the profiles service under test: listening on
/// `127.0.0.1:0`, over `testdb` (migrated at start), with the test secrets.
/// The only place these tests build a profiles `Config`.
pub fn profiles_config(testdb: &TestDb) -> Config {
    Config {
        server: rapport_testkit::server_config(),
        database: rapport_testkit::database_config(testdb),
        page_token_secret: TEST_SECRET.into(),
        assertion_public_keys: rapport_testkit::test_assertion_public_key(),
        events: Default::default(),
        ..Default::default()
    }
}

/// Starts the profiles service on `127.0.0.1:0` over a fresh, migrated
/// database and connects a client to it. The listener is bound before this
/// returns, so no waiting is needed.
pub async fn start() -> Harness {
    start_with(|_| {}).await
}

/// [`start`] with the configuration changed by `tweak` first.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Harness {
    let testdb = TestDb::fresh().await.expect("creating the test database");
    start_on(testdb, tweak, Arc::new(rapport_usecase::SystemClock)).await
}

/// [`start_with`] over `testdb` (a restart, when it served before), telling
/// time by `clock`.
pub async fn start_on(
    testdb: TestDb,
    tweak: impl FnOnce(&mut Config),
    clock: Arc<dyn rapport_usecase::Clock>,
) -> Harness {
    let mut config = profiles_config(&testdb);
    tweak(&mut config);
    let bus = rapport_events::Bus::in_process();
    let profiles = rapport_profiles::build_with(&config, &bus, clock)
        .await
        .unwrap_or_else(|e| panic!("building profiles on {}: {e:#}", testdb.backend_name()));
    let addr = profiles.local_addr();
    let metrics = profiles.metrics_addr();
    let db = profiles.db().clone();
    let running = Running::start(move |shutdown| profiles.serve(shutdown));
    let channel = rapport_testkit::connect(addr)
        .await
        .expect("connecting to the service under test");
    Harness {
        client: ProfilesServiceClient::new(channel.clone()),
        channel,
        addr,
        metrics,
        db,
        running: Some(running),
        bus,
        testdb,
    }
}

impl Harness {
    /// A clone of the client, for concurrent tasks.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Stops the server gracefully and waits until it has drained.
    pub async fn shutdown(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
    }

    /// Stops the server gracefully and hands back its database, for a
    /// restart with [`start_on`].
    pub async fn stop(mut self) -> TestDb {
        self.shutdown().await;
        let Harness { testdb, .. } = self;
        testdb
    }

    /// Signals shutdown without waiting for it (the server drains on its
    /// own, or is dropped with the test's runtime).
    pub fn begin_shutdown(&mut self) {
        drop(self.running.take());
    }

    /// Creates `customer` in [`TENANT`].
    pub async fn create(&self, customer: Customer) -> Customer {
        self.create_in(TENANT, customer).await
    }

    /// Creates `customer` in `tenant`, panicking on error.
    pub async fn create_in(&self, tenant: &str, customer: Customer) -> Customer {
        self.try_create_in(tenant, customer, "")
            .await
            .unwrap_or_else(|s| panic!("CreateCustomer failed: {}", describe(&s)))
    }

    /// CreateCustomer in [`TENANT`].
    pub async fn try_create(&self, customer: Customer) -> Result<Customer, Status> {
        self.try_create_in(TENANT, customer, "").await
    }

    /// CreateCustomer in `tenant` with `request_id`.
    pub async fn try_create_in(
        &self,
        tenant: &str,
        customer: Customer,
        request_id: &str,
    ) -> Result<Customer, Status> {
        let request = CreateCustomerRequest {
            customer: Some(customer),
            request_id: request_id.to_owned(),
        };
        self.client()
            .create_customer(tenant_request(tenant, request))
            .await
            .map(|r| r.into_inner().customer.expect("response has a customer"))
    }

    /// GetCustomer in [`TENANT`], panicking on error.
    pub async fn get(&self, name: &str) -> Customer {
        self.try_get_in(TENANT, name)
            .await
            .unwrap_or_else(|s| panic!("GetCustomer({name}) failed: {}", describe(&s)))
    }

    /// GetCustomer in `tenant`.
    pub async fn try_get_in(&self, tenant: &str, name: &str) -> Result<Customer, Status> {
        let request = GetCustomerRequest {
            name: name.to_owned(),
        };
        self.client()
            .get_customer(tenant_request(tenant, request))
            .await
            .map(|r| r.into_inner().customer.expect("response has a customer"))
    }

    /// UpdateCustomer in [`TENANT`] with the given mask paths.
    pub async fn update(&self, customer: Customer, paths: &[&str]) -> Result<Customer, Status> {
        self.update_with_id(customer, paths, "").await
    }

    /// UpdateCustomer in [`TENANT`] with the given mask paths and request id.
    pub async fn update_with_id(
        &self,
        customer: Customer,
        paths: &[&str],
        request_id: &str,
    ) -> Result<Customer, Status> {
        let request = UpdateCustomerRequest {
            customer: Some(customer),
            update_mask: Some(mask(paths)),
            request_id: request_id.to_owned(),
        };
        self.client()
            .update_customer(tenant_request(TENANT, request))
            .await
            .map(|r| r.into_inner().customer.expect("response has a customer"))
    }

    /// ListCustomers in `tenant`.
    pub async fn list_in(
        &self,
        tenant: &str,
        request: ListCustomersRequest,
    ) -> Result<pb::ListCustomersResponse, Status> {
        self.client()
            .list_customers(tenant_request(tenant, request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every customer of `tenant` matching `request`, following page tokens.
    pub async fn list_all_in(
        &self,
        tenant: &str,
        mut request: ListCustomersRequest,
    ) -> Vec<Customer> {
        let mut all = Vec::new();
        for _ in 0..1_000 {
            let page = self
                .list_in(tenant, request.clone())
                .await
                .unwrap_or_else(|s| panic!("ListCustomers failed: {}", describe(&s)));
            all.extend(page.customers);
            if page.next_page_token.is_empty() {
                return all;
            }
            request.page_token = page.next_page_token;
        }
        panic!("ListCustomers never returned a last page");
    }

    /// Names of the active customers of `tenant`.
    pub async fn active_names_in(&self, tenant: &str) -> Vec<String> {
        self.list_all_in(tenant, ListCustomersRequest::default())
            .await
            .into_iter()
            .map(|c| c.name)
            .collect()
    }

    /// SetConsent in [`TENANT`].
    pub async fn set_consent(
        &self,
        request: pb::SetConsentRequest,
    ) -> Result<pb::SetConsentResponse, Status> {
        self.client()
            .set_consent(tenant_request(TENANT, request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// ChangeLifecycleStage in [`TENANT`].
    pub async fn change_stage(
        &self,
        request: pb::ChangeLifecycleStageRequest,
    ) -> Result<pb::ChangeLifecycleStageResponse, Status> {
        self.client()
            .change_lifecycle_stage(tenant_request(TENANT, request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// MergeCustomers in [`TENANT`].
    pub async fn merge(
        &self,
        survivor: &str,
        merged: &str,
        request_id: &str,
    ) -> Result<pb::MergeCustomersResponse, Status> {
        let request = pb::MergeCustomersRequest {
            survivor: survivor.to_owned(),
            merged: merged.to_owned(),
            request_id: request_id.to_owned(),
        };
        self.client()
            .merge_customers(tenant_request(TENANT, request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// EraseCustomer in [`TENANT`].
    pub async fn erase(&self, name: &str, request_id: &str) -> Result<pb::ErasureReceipt, Status> {
        let request = pb::EraseCustomerRequest {
            name: name.to_owned(),
            request_id: request_id.to_owned(),
        };
        self.client()
            .erase_customer(tenant_request(TENANT, request))
            .await
            .map(|r| {
                r.into_inner()
                    .erasure_receipt
                    .expect("response has a receipt")
            })
    }

    /// LookupCustomer in `tenant`.
    pub async fn lookup_in(
        &self,
        tenant: &str,
        identity: pb::lookup_customer_request::Identity,
    ) -> Result<Customer, Status> {
        let request = pb::LookupCustomerRequest {
            identity: Some(identity),
        };
        self.client()
            .lookup_customer(tenant_request(tenant, request))
            .await
            .map(|r| r.into_inner().customer.expect("response has a customer"))
    }

    /// The whole consent ledger of `parent`, following page tokens.
    pub async fn consent_events(&self, parent: &str) -> Vec<pb::ConsentEvent> {
        let mut request = pb::ListConsentEventsRequest {
            parent: parent.to_owned(),
            ..Default::default()
        };
        let mut all = Vec::new();
        for _ in 0..1_000 {
            let page = self
                .client()
                .list_consent_events(tenant_request(TENANT, request.clone()))
                .await
                .unwrap_or_else(|s| panic!("ListConsentEvents failed: {}", describe(&s)))
                .into_inner();
            all.extend(page.consent_events);
            if page.next_page_token.is_empty() {
                return all;
            }
            request.page_token = page.next_page_token;
        }
        panic!("ListConsentEvents never returned a last page");
    }

    /// The whole lifecycle history of `parent`, following page tokens.
    pub async fn lifecycle_events(&self, parent: &str) -> Vec<pb::LifecycleEvent> {
        let mut request = pb::ListLifecycleEventsRequest {
            parent: parent.to_owned(),
            ..Default::default()
        };
        let mut all = Vec::new();
        for _ in 0..1_000 {
            let page = self
                .client()
                .list_lifecycle_events(tenant_request(TENANT, request.clone()))
                .await
                .unwrap_or_else(|s| panic!("ListLifecycleEvents failed: {}", describe(&s)))
                .into_inner();
            all.extend(page.lifecycle_events);
            if page.next_page_token.is_empty() {
                return all;
            }
            request.page_token = page.next_page_token;
        }
        panic!("ListLifecycleEvents never returned a last page");
    }

    /// ExportCustomerData in [`TENANT`].
    pub async fn export(&self, name: &str) -> Result<pb::ExportCustomerDataResponse, Status> {
        let request = pb::ExportCustomerDataRequest {
            name: name.to_owned(),
        };
        self.client()
            .export_customer_data(tenant_request(TENANT, request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Outbox events of [`TENANT`] about `subject`, oldest first.
    pub async fn events(&self, subject: &str) -> Vec<EventEnvelope> {
        rapport_testkit::store::outbox_events(&self.db, TENANT, subject).await
    }

    /// Every raw outbox row of `tenant`.
    pub async fn outbox_rows(&self, tenant: &str) -> Vec<rapport_store::outbox::Model> {
        rapport_testkit::store::outbox_rows(&self.db, tenant).await
    }

    /// Every raw idempotency row of `tenant`.
    pub async fn idempotency_rows(&self, tenant: &str) -> Vec<rapport_store::idempotency::Model> {
        rapport_testkit::store::idempotency_rows(&self.db, tenant).await
    }
}

// ---------------------------------------------------------------- builders

/// A customer with a display name and one email.
pub fn customer(display_name: &str, email_address: &str) -> Customer {
    Customer {
        display_name: display_name.to_owned(),
        emails: vec![email(email_address)],
        ..Default::default()
    }
}

/// A non-primary email address.
pub fn email(address: &str) -> EmailAddress {
    EmailAddress {
        address: address.to_owned(),
        ..Default::default()
    }
}

/// A non-primary phone number.
pub fn phone(number: &str) -> PhoneNumber {
    PhoneNumber {
        number: number.to_owned(),
        ..Default::default()
    }
}

/// A channel identity.
pub fn identity(channel: Channel, provider: &str, handle: &str) -> ChannelIdentity {
    ChannelIdentity {
        channel: channel as i32,
        provider: provider.to_owned(),
        handle: handle.to_owned(),
    }
}

/// A string attribute value.
pub fn attr_str(value: &str) -> AttributeValue {
    AttributeValue {
        kind: Some(Kind::StringValue(value.to_owned())),
    }
}

/// An integer attribute value.
pub fn attr_int(value: i64) -> AttributeValue {
    AttributeValue {
        kind: Some(Kind::IntValue(value)),
    }
}

/// A boolean attribute value.
pub fn attr_bool(value: bool) -> AttributeValue {
    AttributeValue {
        kind: Some(Kind::BoolValue(value)),
    }
}

/// A field mask of `paths`.
pub fn mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    }
}

/// A protobuf timestamp.
pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf timestamp as chrono.
pub fn to_chrono(t: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("timestamp in range")
}

/// A SetConsent request with every required field set.
pub fn consent(
    name: &str,
    channel: Channel,
    purpose: pb::ConsentPurpose,
    status: pb::ConsentStatus,
    capture_time: Option<DateTime<Utc>>,
) -> pb::SetConsentRequest {
    pb::SetConsentRequest {
        name: name.to_owned(),
        channel: channel as i32,
        purpose: purpose as i32,
        status: status as i32,
        source: "web-signup-form".to_owned(),
        evidence: "I agree to receive offers".to_owned(),
        capture_time: capture_time.map(ts),
        request_id: String::new(),
        privacy_notice_version: String::new(),
    }
}

/// A ChangeLifecycleStage request.
pub fn stage_change(
    name: &str,
    stage: pb::LifecycleStage,
    reason: &str,
) -> pb::ChangeLifecycleStageRequest {
    pb::ChangeLifecycleStageRequest {
        name: name.to_owned(),
        stage: stage as i32,
        reason: reason.to_owned(),
        ..Default::default()
    }
}

/// A lookup by email.
pub fn by_email(address: &str) -> pb::lookup_customer_request::Identity {
    pb::lookup_customer_request::Identity::Email(address.to_owned())
}

/// A lookup by phone.
pub fn by_phone(number: &str) -> pb::lookup_customer_request::Identity {
    pb::lookup_customer_request::Identity::Phone(number.to_owned())
}

/// A lookup by channel identity.
pub fn by_identity(
    channel: Channel,
    provider: &str,
    handle: &str,
) -> pb::lookup_customer_request::Identity {
    pb::lookup_customer_request::Identity::ChannelIdentity(identity(channel, provider, handle))
}

/// The UUID part of `customers/{uuid}`, checking the shape.
pub fn customer_uuid(name: &str) -> uuid::Uuid {
    let id = name
        .strip_prefix("customers/")
        .unwrap_or_else(|| panic!("{name:?} is not customers/{{id}}"));
    uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{name:?}: id is not a UUID: {e}"))
}

/// A well-formed name of a customer that does not exist.
pub fn unknown_customer() -> String {
    format!("customers/{}", uuid::Uuid::now_v7())
}

/// Whether `name` is `{prefix}{uuid}`.
pub fn is_name_with_uuid(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
}

/// How many of `envelopes` have the type `rapport.profiles.v1.{short}`.
pub fn count_events(envelopes: &[EventEnvelope], short: &str) -> usize {
    let full = format!("rapport.profiles.v1.{short}");
    envelopes.iter().filter(|e| e.r#type == full).count()
}

/// Whether `haystack` contains `needle` as bytes.
pub fn contains_bytes(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The encoded bytes of an envelope.
pub fn envelope_bytes(envelope: &EventEnvelope) -> Vec<u8> {
    envelope.encode_to_vec()
}
