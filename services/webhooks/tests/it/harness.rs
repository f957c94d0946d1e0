//! Shared setup of the webhooks integration tests: the real server bound to
//! `127.0.0.1:0` over a fresh database (SQLite, or PostgreSQL when
//! `RAPPORT_TEST_POSTGRES_URL` is set), a real tonic client, an in-process
//! bus to publish profiles' events on, and real HTTP receivers (hyper, on
//! `127.0.0.1:0`) that record what they are sent.
//!
//! Two ways to run the service: [`start`] as in production (the service's
//! own worker makes attempts on the system clock), and [`start_driven`],
//! where a [`ManualClock`] stands still until a test moves it and attempts
//! are made only when the test calls [`Harness::run_due`].
use std::{net::SocketAddr, sync::Arc, time::Duration};

use chrono::Utc;
pub use rapport_proto::webhooks as pb;
use rapport_proto::{
    types::EventEnvelope, webhooks::webhooks_service_client::WebhooksServiceClient,
};
pub use rapport_testkit::status::{assert_error, assert_violation, describe, expect_err};
pub use rapport_testkit::tenant_request;
use rapport_testkit::{Running, TEST_SECRET, TestDb};
pub use rapport_usecase::ManualClock;
use rapport_webhooks::{Config, Deliverer, DeliveryConfig, Firing};
use tonic::Status;

/// The tenant most tests act as.
pub const TENANT: &str = "acme";
/// A second tenant, for isolation tests.
pub const OTHER_TENANT: &str = "globex";
/// How long a test waits for something the service does in the background
/// (a consumed event, an attempt by the worker) before it fails. Not a
/// measurement: a generous bound so that a broken service fails the test
/// instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The gRPC client under test.
pub type Client = WebhooksServiceClient<tonic::transport::Channel>;

/// What tests deliver to: plain http, to receivers on this machine.
pub fn local_delivery() -> DeliveryConfig {
    DeliveryConfig {
        allow_http: true,
        allow_private_addresses: true,
        poll_ms: 20,
        ..DeliveryConfig::default()
    }
}

/// The configuration of the webhooks service under test: listening on
/// `127.0.0.1:0`, over `testdb` (migrated at start), with the test secrets
/// and `delivery`. The only place these tests build a webhooks `Config`.
pub fn webhooks_config(testdb: &TestDb, delivery: DeliveryConfig) -> Config {
    Config {
        server: rapport_testkit::server_config(),
        database: rapport_testkit::database_config(testdb),
        page_token_secret: TEST_SECRET.into(),
        assertion_public_keys: rapport_testkit::test_assertion_public_key(),
        events: Default::default(),
        delivery,
    }
}

/// One running webhooks service and what a test needs to talk to it.
///
/// Field order is drop order: the client goes first, then the server is
/// told to stop, and the database goes last.
pub struct Harness {
    /// Client of the service.
    pub client: Client,
    /// The in-process bus the service consumes events from.
    pub bus: rapport_events::Bus,
    /// The service's database.
    pub db: rapport_store::Db,
    /// Fires due attempts ([`start_driven`] only).
    pub deliverer: Deliverer,
    /// The service's clock ([`start_driven`] only).
    pub clock: Option<ManualClock>,
    running: Option<Running>,
    testdb: TestDb,
}

/// Starts the service as in production: its worker makes attempts on the
/// system clock. Deliveries may go to plain http on this machine.
pub async fn start() -> Harness {
    start_on(fresh().await, local_delivery(), None).await
}

/// Starts the service with a manual clock, making attempts only when the
/// test calls [`Harness::run_due`].
pub async fn start_driven(delivery: DeliveryConfig) -> Harness {
    let clock = ManualClock::at(Utc::now());
    start_on(fresh().await, delivery, Some(clock)).await
}

/// A fresh test database.
pub async fn fresh() -> TestDb {
    TestDb::fresh().await.expect("creating the test database")
}

/// Starts the service over `testdb` (which may hold an earlier run's data)
/// with `delivery`; with `clock`, time is the test's and attempts are made
/// only by [`Harness::run_due`].
pub async fn start_on(
    testdb: TestDb,
    delivery: DeliveryConfig,
    clock: Option<ManualClock>,
) -> Harness {
    let config = webhooks_config(&testdb, delivery);
    let bus = rapport_events::Bus::in_process();
    let built = match &clock {
        Some(c) => {
            rapport_webhooks::build_with(&config, &bus, Arc::new(c.clone()), Firing::Caller).await
        }
        None => rapport_webhooks::build(&config, &bus).await,
    }
    .unwrap_or_else(|e| panic!("building webhooks on {}: {e:#}", testdb.backend_name()));
    let addr: SocketAddr = built.local_addr();
    let db = built.db().clone();
    let deliverer = built.deliverer();
    let running = Running::start(move |shutdown| built.serve(shutdown));
    let channel = rapport_testkit::connect(addr)
        .await
        .expect("connecting to the service under test");
    Harness {
        client: WebhooksServiceClient::new(channel),
        bus,
        db,
        deliverer,
        clock,
        running: Some(running),
        testdb,
    }
}

impl Harness {
    /// A clone of the client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Stops the service gracefully and hands back its database.
    pub async fn stop(mut self) -> TestDb {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
        self.testdb
    }

    /// The manual clock ([`start_driven`] only).
    pub fn clock(&self) -> &ManualClock {
        self.clock.as_ref().expect("a driven harness")
    }

    /// Makes every attempt due by the service's clock; how many were made.
    pub async fn run_due(&self) -> usize {
        self.deliverer.run_due().await.expect("firing due attempts")
    }

    /// CreateWebhookSubscription in `tenant` with `request_id`.
    pub async fn try_create_in(
        &self,
        tenant: &str,
        subscription: pb::WebhookSubscription,
        request_id: &str,
    ) -> Result<pb::CreateWebhookSubscriptionResponse, Status> {
        let request = pb::CreateWebhookSubscriptionRequest {
            webhook_subscription: Some(subscription),
            request_id: request_id.to_owned(),
        };
        self.client()
            .create_webhook_subscription(tenant_request(tenant, request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Subscribes `url` to `event_types` in `tenant`: the subscription and
    /// its signing secret.
    pub async fn subscribe(
        &self,
        tenant: &str,
        url: &str,
        event_types: &[&str],
    ) -> (pb::WebhookSubscription, String) {
        let created = self
            .try_create_in(tenant, subscription(url, event_types), "")
            .await
            .unwrap_or_else(|s| panic!("CreateWebhookSubscription failed: {}", describe(&s)));
        (
            created.webhook_subscription.expect("a subscription"),
            created.signing_secret,
        )
    }

    /// GetWebhookSubscription in `tenant`.
    pub async fn get_in(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<pb::WebhookSubscription, Status> {
        let request = pb::GetWebhookSubscriptionRequest {
            name: name.to_owned(),
        };
        self.client()
            .get_webhook_subscription(tenant_request(tenant, request))
            .await
            .map(|r| r.into_inner().webhook_subscription.expect("a subscription"))
    }

    /// UpdateWebhookSubscription in `tenant` with the given mask paths.
    pub async fn update_in(
        &self,
        tenant: &str,
        subscription: pb::WebhookSubscription,
        paths: &[&str],
    ) -> Result<pb::WebhookSubscription, Status> {
        let request = pb::UpdateWebhookSubscriptionRequest {
            webhook_subscription: Some(subscription),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            request_id: String::new(),
        };
        self.client()
            .update_webhook_subscription(tenant_request(tenant, request))
            .await
            .map(|r| r.into_inner().webhook_subscription.expect("a subscription"))
    }

    /// Sets the state of a subscription of `tenant`.
    pub async fn set_state(
        &self,
        tenant: &str,
        name: &str,
        state: pb::WebhookSubscriptionState,
    ) -> pb::WebhookSubscription {
        let s = pb::WebhookSubscription {
            name: name.to_owned(),
            state: state as i32,
            ..Default::default()
        };
        self.update_in(tenant, s, &["state"])
            .await
            .unwrap_or_else(|s| panic!("UpdateWebhookSubscription failed: {}", describe(&s)))
    }

    /// DeleteWebhookSubscription in `tenant`.
    pub async fn delete_in(
        &self,
        tenant: &str,
        name: &str,
        etag: &str,
        request_id: &str,
    ) -> Result<(), Status> {
        let request = pb::DeleteWebhookSubscriptionRequest {
            name: name.to_owned(),
            etag: etag.to_owned(),
            request_id: request_id.to_owned(),
        };
        self.client()
            .delete_webhook_subscription(tenant_request(tenant, request))
            .await
            .map(drop)
    }

    /// One page of ListWebhookSubscriptions in `tenant`.
    pub async fn list_in(
        &self,
        tenant: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::ListWebhookSubscriptionsResponse, Status> {
        let request = pb::ListWebhookSubscriptionsRequest {
            page_size,
            page_token: page_token.to_owned(),
        };
        self.client()
            .list_webhook_subscriptions(tenant_request(tenant, request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every delivery of the subscription `parent` of `tenant`, newest
    /// first, following page tokens.
    pub async fn deliveries_in(
        &self,
        tenant: &str,
        parent: &str,
    ) -> Result<Vec<pb::WebhookDelivery>, Status> {
        let mut request = pb::ListWebhookDeliveriesRequest {
            parent: parent.to_owned(),
            page_size: 0,
            page_token: String::new(),
        };
        let mut all = Vec::new();
        for _ in 0..1_000 {
            let page = self
                .client()
                .list_webhook_deliveries(tenant_request(tenant, request.clone()))
                .await?
                .into_inner();
            all.extend(page.webhook_deliveries);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            request.page_token = page.next_page_token;
        }
        panic!("ListWebhookDeliveries never returned a last page");
    }

    /// The one delivery of `parent` in [`TENANT`].
    pub async fn only_delivery(&self, parent: &str) -> pb::WebhookDelivery {
        let mut all = self
            .deliveries_in(TENANT, parent)
            .await
            .expect("ListWebhookDeliveries");
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    /// SendTestWebhook in `tenant`.
    pub async fn send_test_in(
        &self,
        tenant: &str,
        name: &str,
        request_id: &str,
    ) -> Result<pb::WebhookDelivery, Status> {
        let request = pb::SendTestWebhookRequest {
            name: name.to_owned(),
            request_id: request_id.to_owned(),
        };
        self.client()
            .send_test_webhook(tenant_request(tenant, request))
            .await
            .map(|r| r.into_inner().webhook_delivery.expect("a delivery"))
    }

    /// Publishes `events` as profiles does, on the service's bus.
    pub async fn publish(&self, events: &[EventEnvelope]) {
        self.bus
            .publish("profiles", events)
            .await
            .expect("publishing on the in-process bus");
    }
}

/// A subscription to create.
pub fn subscription(url: &str, event_types: &[&str]) -> pb::WebhookSubscription {
    pb::WebhookSubscription {
        url: url.to_owned(),
        event_types: event_types.iter().map(|t| (*t).to_owned()).collect(),
        ..Default::default()
    }
}

/// An event of `tenant` about `subject` carrying `payload`, as profiles'
/// outbox relay publishes it.
pub fn event<M: prost::Name>(tenant: &str, subject: &str, payload: &M) -> EventEnvelope {
    let now = Utc::now();
    EventEnvelope {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: M::full_name(),
        tenant: tenant.to_owned(),
        subject: subject.to_owned(),
        occur_time: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: (now.timestamp_subsec_micros() * 1000) as i32,
        }),
        payload: Some(prost_types::Any {
            type_url: M::type_url(),
            value: payload.encode_to_vec(),
        }),
        ..Default::default()
    }
}

/// A CustomerCreated event of `tenant`.
pub fn customer_created(tenant: &str) -> EventEnvelope {
    let customer = format!("customers/{}", uuid::Uuid::now_v7());
    event(
        tenant,
        &customer,
        &rapport_proto::profiles::CustomerCreated {
            customer: customer.clone(),
            lifecycle_stage: rapport_proto::profiles::LifecycleStage::Awareness as i32,
        },
    )
}

// --------------------------------------------------------------- receivers

pub use rapport_testkit::receiver::Receiver;
