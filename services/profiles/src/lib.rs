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

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use domain::{Clock, SystemClock};
use rapport_events::{
    Bus, EventsConfig, consume,
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
    /// hours (CheckContactPolicy) and birthdays. Default `UTC`.
    pub default_time_zone: String,
    /// Erasure across services.
    pub erasure: ErasureConfig,
    /// How often due timers (birthdays, overdue erasures) are looked for.
    /// Milliseconds.
    pub timer_poll_ms: u64,
}

/// How an erasure reaches every service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ErasureConfig {
    /// The other services holding customer data, by their name on the bus:
    /// each must confirm an erasure (a `CustomerDataErased` event) before
    /// its receipt is complete. Unset: the services of Rapport's service
    /// table that hold customer data (`rapport` fills it in); set it only
    /// to run profiles with another set of services.
    pub services: Option<Vec<String>>,
    /// An erasure still incomplete this long after it began is reported:
    /// an error in the log, and the `rapport_erasure_receipts_overdue`
    /// gauge. Hours.
    pub overdue_after_hours: u64,
}

impl Default for ErasureConfig {
    fn default() -> Self {
        Self {
            services: None,
            overdue_after_hours: 24,
        }
    }
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
            erasure: ErasureConfig::default(),
            timer_poll_ms: 1_000,
        }
    }
}

/// A built, bound, not yet serving profiles service.
pub struct Profiles {
    server: GrpcServer,
    db: Db,
    app: App,
    bus: Bus,
    wake: Wake,
    outbox_retention: std::time::Duration,
    clock: Arc<dyn Clock>,
    timer_handler: rapport_events::timers::TimerHandler,
    timer_poll: Duration,
    /// The consumers of other services' erasure confirmations, one per
    /// service.
    confirmations: Vec<consume::Subscription>,
    confirmation_handler: consume::Handler,
}

impl std::fmt::Debug for Profiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiles")
            .field("addr", &self.local_addr())
            .field("confirmations", &self.confirmations)
            .finish_non_exhaustive()
    }
}

/// The name of this service on the event bus: its events are published on
/// `rapport.profiles.<EventType>`, in the stream `RAPPORT_PROFILES`.
pub const EVENTS_NAME: &str = "profiles";

/// Profiles holds customer data (it coordinates erasures and confirms its
/// own part in the erasure itself).
pub const HOLDS_CUSTOMER_DATA: bool = true;

/// The consumer of other services' erasure confirmations.
pub const CONFIRMATIONS: &str = "profiles.erasure";

/// The consumers this service runs, with their handlers (for `rapport
/// events dead-letters`): the erasure confirmations.
pub fn event_handlers() -> Vec<(&'static str, consume::Handler)> {
    vec![(CONFIRMATIONS, confirmation_handler(Arc::new(SystemClock)))]
}

fn confirmation_handler(clock: Arc<dyn Clock>) -> consume::Handler {
    storage::cycle::confirmation_handler(
        api::events::encode,
        api::events::decode_confirmation,
        clock,
    )
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
    build_with(config, bus, Arc::new(SystemClock)).await
}

/// [`build`] telling time by `clock` (tests drive birthdays with it).
pub async fn build_with(
    config: &Config,
    bus: &Bus,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Profiles> {
    let Foundation {
        mut server,
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
    let erasure_services = config.erasure.services.clone().unwrap_or_default();
    for service in &erasure_services {
        let valid = !service.is_empty()
            && service != EVENTS_NAME
            && service
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_');
        if !valid {
            anyhow::bail!("erasure.services: {service:?} is not another service's name on the bus");
        }
    }
    let overdue_after = chrono::Duration::hours(
        i64::try_from(config.erasure.overdue_after_hours).unwrap_or(i64::MAX / 3_600_000_000),
    );
    register_overdue(server.metrics(), db.clone(), clock.clone(), overdue_after);
    let service = domain::service::Profiles::new(repo, clock.clone())
        .with_default_zone(default_zone)
        .with_erasure_services(erasure_services.clone(), overdue_after);
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
        timer_handler: storage::cycle::timer_handler(api::events::encode, default_zone),
        timer_poll: Duration::from_millis(config.timer_poll_ms.max(1)),
        confirmations: erasure_services
            .iter()
            .map(|service| consume::Subscription {
                consumer: CONFIRMATIONS.to_owned(),
                service: service.clone(),
                filter: format!("rapport.{service}.CustomerDataErased"),
                options: rapport_events::ConsumerOptions::default(),
            })
            .collect(),
        confirmation_handler: confirmation_handler(clock.clone()),
        clock,
    })
}

/// The `rapport_erasure_receipts_overdue` gauge: erasures still incomplete
/// `overdue_after` after they began, counted when scraped.
fn register_overdue(
    metrics: &mut rapport_kit::metrics::Metrics,
    db: Db,
    clock: Arc<dyn Clock>,
    overdue_after: chrono::Duration,
) {
    let gauge = metrics.gauge(
        "rapport_erasure_receipts_overdue",
        "Erasures some service has not confirmed within erasure.overdue_after_hours",
    );
    metrics.on_scrape(move || {
        let (db, gauge, clock) = (db.clone(), gauge.clone(), clock.clone());
        async move {
            match storage::cycle::overdue_count(&db.reader, clock.now() - overdue_after).await {
                Ok(n) => {
                    gauge.set(n as f64);
                }
                Err(e) => tracing::warn!(error = %e, "counting overdue erasures failed"),
            }
        }
    });
}

/// Fires profiles' due timers every `poll` (at once again after a full
/// pass), waking the relay when a firing raised events.
async fn fire_timers(
    db: Db,
    clock: Arc<dyn Clock>,
    handler: rapport_events::timers::TimerHandler,
    poll: Duration,
    wake: Wake,
) {
    loop {
        match rapport_events::timers::fire_due(&db, clock.as_ref(), storage::cycle::KINDS, &handler)
            .await
        {
            Ok(0) => tokio::time::sleep(poll).await,
            Ok(_) => wake.wake(),
            Err(e) => {
                tracing::warn!(error = %e, "firing timers failed; retrying");
                tokio::time::sleep(poll).await;
            }
        }
    }
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

    /// Serves until `shutdown` resolves — firing its timers (birthdays,
    /// overdue erasures) and consuming other services' erasure
    /// confirmations — then drains and closes the database.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Self {
            server,
            db,
            app,
            bus,
            wake,
            outbox_retention,
            clock,
            timer_handler,
            timer_poll,
            confirmations,
            confirmation_handler,
        } = self;
        let mut workers: Vec<_> = confirmations
            .into_iter()
            .map(|s| consume::spawn(db.clone(), bus.clone(), s, confirmation_handler.clone()))
            .collect();
        workers.push(tokio::spawn(fire_timers(
            db.clone(),
            clock,
            timer_handler,
            timer_poll,
            wake.clone(),
        )));
        rapport_events::service::serve_with_outbox(
            (server, db, wake),
            app,
            bus,
            EVENTS_NAME,
            outbox_retention,
            workers,
            shutdown,
        )
        .await
    }
}
