//! rapport-conversations: every conversation with every customer, on every
//! channel, in one history per customer — inboxes, conversations with
//! per-tenant case numbers, immutable messages, inbound threading. `domain/`
//! holds the rules and never sees tonic, prost or sea_orm; `api/` adapts
//! gRPC to it; `storage/` persists it; `profiles` is its one outbound call.
#![forbid(unsafe_code)]

mod api;
mod delivery;
mod domain;
mod email;
mod profiles;
pub mod seed;
mod storage;

pub use email::EmailConfig;

use std::{future::Future, net::SocketAddr};

use rapport_events::{
    Bus, EventsConfig,
    relay::Wake,
    service::{Basics, Foundation},
};
use rapport_kit::{GrpcServer, Peer, PeerConfig, Secret, ServerConfig, server::App};
use rapport_proto::conversations::conversations_service_server::ConversationsServiceServer;
use rapport_store::{DatabaseConfig, Db};
use serde::{Deserialize, Serialize};

/// ErrorInfo domain of this service.
pub const ERROR_DOMAIN: &str = "conversations.rapport.dev";

/// Fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "rapport.conversations.v1.ConversationsService";

/// The name of this service on the event bus: its events are published on
/// `rapport.conversations.<EventType>`, in the stream `RAPPORT_CONVERSATIONS`.
pub const EVENTS_NAME: &str = "conversations";

/// Conversations holds customer data (messages, their text and
/// attachments): every erasure waits for its confirmation.
pub const HOLDS_CUSTOMER_DATA: bool = true;

/// Configuration of the conversations service.
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
    /// The public keys (base64url Ed25519, comma-separated) whose assertions
    /// this service accepts: the gateway's.
    pub assertion_public_keys: String,
    /// The event bus and the outbox's retention.
    pub events: EventsConfig,
    /// This service's own Ed25519 private key (base64url seed): it signs the
    /// assertions of its calls to other services (profiles'
    /// `ResolveCustomer`), which trust its public key. Secret: only from the
    /// environment.
    pub service_key: Secret,
    /// The profiles service (sender resolution).
    pub profiles: PeerConfig,
    /// Outbound email (SMTP submission).
    pub email: EmailConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 50053)),
                ..ServerConfig::default()
            },
            database: DatabaseConfig::sqlite_file("conversations"),
            page_token_secret: Secret::default(),
            assertion_public_keys: String::new(),
            events: EventsConfig::default(),
            service_key: Secret::default(),
            profiles: PeerConfig {
                endpoint: "http://127.0.0.1:50051".to_owned(),
                ..PeerConfig::default()
            },
            email: EmailConfig::default(),
        }
    }
}

/// A built, bound, not yet serving conversations service.
#[derive(Debug)]
pub struct ConversationsServer {
    server: GrpcServer,
    db: Db,
    app: App,
    bus: Bus,
    wake: Wake,
    outbox_retention: std::time::Duration,
    deliveries: delivery::Deliveries,
}

/// The consumers this service runs, with their handlers (for `rapport
/// events dead-letters`): the erasure of a customer's data.
pub fn event_handlers() -> Vec<(&'static str, rapport_events::consume::Handler)> {
    vec![(ERASURE_CONSUMER, erasure_handler())]
}

/// The consumer of profiles' erasures (`rapport_events::erasure`).
pub const ERASURE_CONSUMER: &str = "conversations.erasure";

fn erasure_handler() -> rapport_events::consume::Handler {
    rapport_events::erasure::handler(
        EVENTS_NAME,
        std::sync::Arc::new(|txn, tenant, customer| {
            Box::pin(storage::erasure::erase(txn, tenant, customer))
        }),
    )
}

/// The conversations schema's migrations (`rapport migrate conversations`).
pub type Migrator = rapport_conversations_migration::Migrator;

/// Runs the conversations migrations on `db`.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    rapport_store::config::migrate::<Migrator>(db).await
}

/// Connects to the database, migrates if configured, and binds the
/// listener. Events go to `bus`.
pub async fn build(config: &Config, bus: &Bus) -> anyhow::Result<ConversationsServer> {
    let peer = Peer::new(&config.profiles, &config.service_key, EVENTS_NAME)
        .map_err(|why| anyhow::anyhow!("conversations.service_key / profiles: {why}"))?;
    let Foundation {
        server,
        db,
        guard,
        tokens,
        wake,
    } = rapport_events::service::open::<Migrator>(Basics {
        name: EVENTS_NAME,
        error_domain: ERROR_DOMAIN,
        server: &config.server,
        database: &config.database,
        page_token_secret: &config.page_token_secret,
        assertion_public_keys: &config.assertion_public_keys,
    })
    .await?;
    let mailer = email::Mailer::new(&config.email)?;
    let deliveries = delivery::timer_handler(mailer, profiles::Profiles::new(peer.clone()));
    let repo = storage::SqlRepository::new(db.clone(), api::events::encode, wake.clone());
    let service = domain::service::Conversations::new(
        repo,
        profiles::Profiles::new(peer),
        domain::SystemClock,
    );
    let handler = api::handler::Handler::new(service, tokens);
    let grpc = ConversationsServiceServer::new(handler)
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
    Ok(ConversationsServer {
        server,
        db,
        app,
        bus: bus.clone(),
        wake,
        outbox_retention: rapport_events::service::outbox_retention(&config.events),
        deliveries,
    })
}

impl ConversationsServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Where `/metrics` is served, when `server.metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.metrics_addr()
    }

    /// The service's database (tests inspect the outbox through it).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Serves until `shutdown` resolves — delivering outbound messages as
    /// their timers come due, erasing customers' data as profiles erases
    /// them — then drains and closes the database.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let erasure = rapport_events::consume::spawn(
            self.db.clone(),
            self.bus.clone(),
            rapport_events::erasure::subscription(EVENTS_NAME),
            erasure_handler(),
        );
        // Due deliveries are looked for every second (and at once again
        // after a full batch).
        let deliveries = rapport_events::timers::spawn(
            self.db.clone(),
            std::sync::Arc::new(domain::SystemClock),
            vec![storage::delivery::DELIVER.to_owned()],
            self.deliveries.0,
            std::time::Duration::from_secs(1),
        );
        rapport_events::service::serve_with_outbox(
            (self.server, self.db, self.wake),
            self.app,
            self.bus,
            EVENTS_NAME,
            self.outbox_retention,
            vec![erasure, deliveries],
            shutdown,
        )
        .await
    }
}
