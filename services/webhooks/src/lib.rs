//! rapport-webhooks: partner webhooks — partners subscribe to a tenant's
//! events and receive each as a signed HTTPS POST (Standard Webhooks),
//! retried with backoff for at least a day. The first service built on the
//! event platform: it consumes other services' events (`rapport-events`
//! consumers with an inbox) and schedules attempts as durable timers.
//! `domain/` holds the rules and never sees tonic, prost or sea_orm; `api/`
//! adapts gRPC to it; `storage/` persists it; `outbound` is the HTTP
//! client, and the only code that calls outside.
#![forbid(unsafe_code)]

mod api;
mod delivery;
mod domain;
mod outbound;
mod storage;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use rapport_events::{Bus, ConsumerOptions, EventsConfig, consume, subjects_of};
use rapport_kit::{GrpcServer, Secret, ServerConfig, server::App};
use rapport_proto::webhooks::webhooks_service_server::WebhooksServiceServer;
use rapport_store::{DatabaseConfig, Db};
use rapport_usecase::{Clock, SystemClock};
use serde::{Deserialize, Serialize};

pub use delivery::Deliverer;

/// ErrorInfo domain of this service.
pub const ERROR_DOMAIN: &str = "webhooks.rapport.dev";

/// Fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "rapport.webhooks.v1.WebhooksService";

/// The durable consumer name of this service, on every producing service's
/// stream (and its inbox and dead-letter key).
pub const CONSUMER: &str = "webhooks";

/// The services whose events are delivered: one durable consumer
/// [`CONSUMER`] on `rapport.<service>.>` each. A list here for now: a new
/// producing service adds its name (a registry of producers can replace it
/// once there are several).
pub const PRODUCERS: &[&str] = &["profiles"];

/// Webhooks holds no customer data: its deliveries carry events, which
/// carry ids only. It does not confirm erasures.
pub const HOLDS_CUSTOMER_DATA: bool = false;

/// Configuration of the webhooks service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listener and limits.
    pub server: ServerConfig,
    /// Database.
    pub database: DatabaseConfig,
    /// Secret that signs page tokens; every replica must share it. At least
    /// 32 characters. Secret: only from the environment.
    pub page_token_secret: Secret,
    /// The gateway's public keys (base64url Ed25519, separated by commas):
    /// calls without an assertion signed by one of their private keys, for
    /// this service and the method called, are refused. Two during a
    /// rotation of the gateway's key. Public, so not a secret.
    pub assertion_public_keys: String,
    /// The event bus the consumed events come from (NATS JetStream when
    /// `events.nats_url` is set).
    pub events: EventsConfig,
    /// Outbound deliveries.
    pub delivery: DeliveryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
                ..ServerConfig::default()
            },
            database: DatabaseConfig::sqlite_file("webhooks"),
            page_token_secret: Secret::default(),
            assertion_public_keys: String::new(),
            events: EventsConfig::default(),
            delivery: DeliveryConfig::default(),
        }
    }
}

/// The `delivery` section: where deliveries may go and how they are
/// retried.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Accept plain-http URLs (development: `RAPPORT_WEBHOOKS__DELIVERY__ALLOW_HTTP=true`).
    /// Off by default: only https.
    pub allow_http: bool,
    /// Deliver to loopback, private, link-local and shared addresses
    /// (development: `RAPPORT_WEBHOOKS__DELIVERY__ALLOW_PRIVATE_ADDRESSES=true`
    /// for a receiver on the same machine). Off by default. Cloud metadata,
    /// multicast and unspecified addresses are refused even then.
    pub allow_private_addresses: bool,
    /// Most time one attempt may take: resolving, connecting, TLS, the
    /// answer's status line. Milliseconds.
    pub timeout_ms: u64,
    /// How long a failing delivery is retried, from when its event
    /// arrived, before it fails and its subscription is disabled. Hours.
    pub max_attempt_window_hours: u64,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// How often due attempts are looked for. Milliseconds.
    pub poll_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private_addresses: false,
            timeout_ms: 10_000,
            max_attempt_window_hours: 26,
            concurrency: 64,
            poll_ms: 1_000,
        }
    }
}

/// The webhooks schema's migrations (`rapport migrate webhooks`).
pub type Migrator = rapport_webhooks_migration::Migrator;

/// Runs the webhooks migrations on `db`.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    rapport_store::config::migrate::<Migrator>(db).await
}

/// Who fires due delivery attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// The service's own worker, every `delivery.poll_ms` (production).
    Worker,
    /// Only the embedder, through [`Webhooks::deliverer`]: tests that drive
    /// time with a manual clock.
    Caller,
}

/// A built, bound, not yet serving webhooks service.
pub struct Webhooks {
    server: GrpcServer,
    db: Db,
    app: App,
    bus: Bus,
    deliverer: Deliverer,
    firing: Firing,
    poll: Duration,
    consumer: consume::Handler,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("addr", &self.local_addr())
            .field("firing", &self.firing)
            .finish_non_exhaustive()
    }
}

/// The consumers this service runs, by name, with their handlers: what
/// `rapport events dead-letters replay webhooks …` runs a parked event
/// through once its cause is fixed.
pub fn event_handlers() -> Vec<(&'static str, consume::Handler)> {
    vec![(
        CONSUMER,
        storage::fanout::handler(api::events::render, Arc::new(SystemClock)),
    )]
}

/// Connects to the database, migrates if configured, and binds the
/// listener; events come from `bus` (the process's bus: see
/// `rapport_events::Bus::from_config`). Time is the system's, and the
/// service's own worker makes the attempts.
pub async fn build(config: &Config, bus: &Bus) -> anyhow::Result<Webhooks> {
    build_with(config, bus, Arc::new(SystemClock), Firing::Worker).await
}

/// [`build`] telling time by `clock`, with attempts fired as `firing` says.
pub async fn build_with(
    config: &Config,
    bus: &Bus,
    clock: Arc<dyn Clock>,
    firing: Firing,
) -> anyhow::Result<Webhooks> {
    let delivery = &config.delivery;
    if delivery.timeout_ms == 0 || delivery.max_attempt_window_hours == 0 {
        anyhow::bail!("delivery.timeout_ms and delivery.max_attempt_window_hours must be positive");
    }
    // Webhooks publishes no events of its own: no relay to wake.
    let rapport_events::service::Foundation {
        server,
        db,
        guard,
        tokens,
        wake: _,
    } = rapport_events::service::open::<Migrator>(rapport_events::service::Basics {
        name: "webhooks",
        error_domain: ERROR_DOMAIN,
        server: &config.server,
        database: &config.database,
        page_token_secret: &config.page_token_secret,
        assertion_public_keys: &config.assertion_public_keys,
    })
    .await?;
    let timeout = Duration::from_millis(delivery.timeout_ms);
    let outbound = outbound::Outbound::new(delivery.allow_private_addresses, timeout);
    let repo = storage::SqlRepository::new(db.clone());
    let service_clock = delivery::ServiceClock(clock.clone());
    let dispatcher = domain::dispatch::Dispatcher::new(
        repo.clone(),
        outbound.clone(),
        service_clock.clone(),
        Duration::from_secs(delivery.max_attempt_window_hours.saturating_mul(3600)),
    );
    // An attempt that has not reported back well after its timeout (the
    // process died during it) is made again.
    let watchdog = timeout + Duration::from_secs(60);
    let deliverer = Deliverer::new(
        db.clone(),
        clock.clone(),
        dispatcher,
        watchdog,
        delivery.concurrency,
    );
    let service = domain::service::Subscriptions::new(repo, outbound, service_clock);
    let dead_letters = rapport_events::admin::DeadLetterAdmin::new(
        db.clone(),
        vec![(
            CONSUMER,
            storage::fanout::handler(api::events::render, clock.clone()),
        )],
        tokens.clone(),
        ERROR_DOMAIN,
    );
    let handler = api::handler::Handler::new(service, tokens, dead_letters, delivery.allow_http);
    let grpc = WebhooksServiceServer::new(handler)
        .max_decoding_message_size(config.server.max_message_bytes)
        .max_encoding_message_size(config.server.max_message_bytes * 4);
    let app = App {
        routes: tonic::service::Routes::new(tonic::service::interceptor::InterceptedService::new(
            grpc, guard,
        )),
        service_names: vec![SERVICE_NAME],
        file_descriptor_sets: vec![rapport_proto::FILE_DESCRIPTOR_SET],
        accept_http1: false,
    };
    Ok(Webhooks {
        server,
        db,
        app,
        bus: bus.clone(),
        deliverer,
        firing,
        poll: Duration::from_millis(delivery.poll_ms.max(1)),
        consumer: storage::fanout::handler(api::events::render, clock),
    })
}

impl Webhooks {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Where `/metrics` is served, when `server.metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.metrics_addr()
    }

    /// The service's database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// What fires due attempts: for [`Firing::Caller`] embedders.
    pub fn deliverer(&self) -> Deliverer {
        self.deliverer.clone()
    }

    /// Serves until `shutdown` resolves — consuming every producing
    /// service's events and (with [`Firing::Worker`]) making delivery
    /// attempts — then drains and closes the database.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Self {
            server,
            db,
            app,
            bus,
            deliverer,
            firing,
            poll,
            consumer,
        } = self;
        let purge = rapport_store::idempotency::spawn_purger(db.clone());
        let consumers: Vec<_> = PRODUCERS
            .iter()
            .map(|service| {
                consume::spawn(
                    db.clone(),
                    bus.clone(),
                    consume::Subscription {
                        consumer: CONSUMER.to_owned(),
                        service: (*service).to_owned(),
                        filter: subjects_of(service),
                        options: ConsumerOptions::default(),
                    },
                    consumer.clone(),
                )
            })
            .collect();
        let worker = (firing == Firing::Worker).then(|| deliverer.spawn(poll));
        let result = server.serve(app, shutdown).await;
        purge.abort();
        for c in consumers {
            c.abort();
        }
        if let Some(w) = worker {
            // In-flight attempts stop with it; their claims' timers make
            // them again after the next start.
            w.abort();
        }
        db.close().await;
        result.context("serving webhooks")
    }
}
