//! rapport-profiles: the customer profiles service — one customer across every
//! channel, their contact preferences, consent ledger and lifecycle stage,
//! merge, GDPR export and erasure. `domain/` holds the rules and never sees
//! tonic, prost or sea_orm; `api/` adapts gRPC to it; `storage/` persists it.
#![forbid(unsafe_code)]

mod api;
mod domain;
pub mod seed;
mod storage;

#[cfg(test)]
mod races;

/// The storage write ceilings of the profiles schema (`rapport bench`,
/// `rapport seed --ceiling`). Feature `bench`, off by default: benchmark
/// code, outside the service's production build.
#[cfg(feature = "bench")]
pub mod ceiling {
    pub use crate::storage::ceiling::{PgbenchScript, pgbench_ceiling, raw_insert_ceiling};
    pub use rapport_bench::CeilingReport;
}

use std::{future::Future, net::SocketAddr};

use rapport_events::{
    Bus, EventsConfig,
    relay::Wake,
    service::{Basics, Foundation},
};
use rapport_kit::{GrpcServer, Secret, ServerConfig, server::App};
use rapport_proto::profiles::profiles_service_server::ProfilesServiceServer;
use rapport_store::{DatabaseConfig, Db};
use serde::{Deserialize, Serialize};

/// ErrorInfo domain of this service.
pub const ERROR_DOMAIN: &str = "profiles.rapport.dev";

/// Configuration of the profiles service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listener and limits.
    pub server: ServerConfig,
    /// Database.
    pub database: DatabaseConfig,
    /// Secret that signs page tokens; every replica must share it. At least 32
    /// characters. Secret: only from the environment.
    pub page_token_secret: Secret,
    /// The gateway's public keys (base64url Ed25519, separated by commas):
    /// calls without an assertion signed by one of their private keys, for
    /// this service and the method called, are refused. Two during a
    /// rotation of the gateway's key. Public, so not a secret.
    pub assertion_public_keys: String,
    /// The event bus (NATS JetStream when `events.nats_url` is set) and the
    /// outbox's retention.
    pub events: EventsConfig,
    /// The tenant's IANA time zone, for customers without one: their quiet
    /// hours (CheckContactPolicy). Default `UTC`.
    pub default_time_zone: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
                ..ServerConfig::default()
            },
            database: DatabaseConfig::sqlite_file("profiles"),
            page_token_secret: Secret::default(),
            assertion_public_keys: String::new(),
            events: EventsConfig::default(),
            default_time_zone: "UTC".to_owned(),
        }
    }
}

/// A built, bound, not yet serving profiles service.
#[derive(Debug)]
pub struct Profiles {
    server: GrpcServer,
    db: Db,
    app: App,
    bus: Bus,
    wake: Wake,
    outbox_retention: std::time::Duration,
}

/// The name of this service on the event bus: its events are published on
/// `rapport.profiles.<EventType>`, in the stream `RAPPORT_PROFILES`.
pub const EVENTS_NAME: &str = "profiles";

/// The consumers this service runs, with their handlers (for `rapport
/// events dead-letters`): none — profiles publishes events and consumes
/// none yet.
pub fn event_handlers() -> Vec<(&'static str, rapport_events::consume::Handler)> {
    Vec::new()
}

/// The profiles schema's migrations (`rapport migrate profiles`).
pub type Migrator = rapport_profiles_migration::Migrator;

/// Runs the profiles migrations on `db`.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    rapport_store::config::migrate::<Migrator>(db).await
}

/// Connects to the database, migrates if configured, and binds the
/// listener. Events go to `bus` (the process's bus: see
/// `rapport_events::Bus::from_config`).
pub async fn build(config: &Config, bus: &Bus) -> anyhow::Result<Profiles> {
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
    let repo = storage::SqlRepository::new(db.clone(), api::events::encode, wake.clone());
    let default_zone: chrono_tz::Tz = config.default_time_zone.parse().map_err(|_| {
        anyhow::anyhow!(
            "default_time_zone {:?} is not an IANA time zone (e.g. `Europe/Paris`)",
            config.default_time_zone
        )
    })?;
    let service =
        domain::service::Profiles::new(repo, domain::SystemClock).with_default_zone(default_zone);
    let handler = api::handler::Handler::new(service, tokens);
    let grpc = ProfilesServiceServer::new(handler)
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
    Ok(Profiles {
        server,
        db,
        app,
        bus: bus.clone(),
        wake,
        outbox_retention: rapport_events::service::outbox_retention(&config.events),
    })
}

/// Fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "rapport.profiles.v1.ProfilesService";

impl Profiles {
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

    /// Serves until `shutdown` resolves, then drains and closes the database.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        rapport_events::service::serve_with_outbox(
            (self.server, self.db, self.wake),
            self.app,
            self.bus,
            EVENTS_NAME,
            self.outbox_retention,
            shutdown,
        )
        .await
    }
}
