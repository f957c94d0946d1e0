//! The one table of Rapport's services. `rapport dev`, `rapport serve`,
//! `rapport migrate`, the configuration sections (and so the `RAPPORT_…`
//! variables and `--dump-config`) and the gateway's backends in dev are all
//! generated from the `services!` entry at the bottom of this file: a new
//! service is its own crate plus one line there.
//!
//! Every service crate exports the same items: `Config` (with `server`,
//! `database: rapport_store::DatabaseConfig`, `page_token_secret` as
//! `rapport_kit::Secret`, `assertion_public_keys: String`, `events:
//! rapport_events::EventsConfig`), `SERVICE_NAME`,
//! `HOLDS_CUSTOMER_DATA` (whether it must confirm erasures), `Migrator`, and
//! `build(&Config, &Bus)` returning a bound server with `local_addr()` and
//! `serve(shutdown)`.
use std::{future::Future, net::SocketAddr, path::Path, pin::Pin};

use rapport_events::Bus;
use rapport_store::DatabaseConfig;
use sea_orm_migration::MigratorTrait;
use serde::{Deserialize, Serialize};

use crate::{config::LogConfig, dev};

/// A service built by `rapport dev`, bound and ready to serve.
pub struct Started {
    /// Its configuration section (`profiles`).
    pub name: &'static str,
    /// Its fully qualified gRPC service name.
    pub grpc_name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Serves until the given future resolves, then drains.
    pub serve: Box<dyn FnOnce(StopSignal) -> ServeFuture + Send>,
}

/// Resolves when `rapport dev` stops.
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;
/// A service serving until its stop signal.
pub type ServeFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

macro_rules! services {
    ($( $(#[$doc:meta])* $name:ident => $krate:ident ),+ $(,)?) => {
        /// Everything the binary can be configured with: logging, the
        /// gateway, and one section per service.
        #[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        pub struct RapportConfig {
            /// Logging.
            pub log: LogConfig,
            /// The gateway.
            pub gateway: rapport_gateway::Config,
            $( $(#[$doc])* pub $name: $krate::Config, )+
        }

        /// What `rapport serve` and `rapport migrate` run.
        // Variant names are the configuration sections and command-line
        // names, generated from the table: lower case on purpose.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
        pub enum Service {
            /// The gateway.
            gateway,
            $( $(#[$doc])* $name, )+
        }

        impl Service {
            /// Its name on the command line and in configuration.
            pub fn name(self) -> &'static str {
                match self {
                    Service::gateway => "gateway",
                    $( Service::$name => stringify!($name), )+
                }
            }
        }

        /// Runs one service from configuration until SIGTERM or SIGINT.
        pub async fn serve(config: &RapportConfig, service: Service) -> anyhow::Result<()> {
            serve_until(config, service, rapport_kit::server::shutdown_signal(), |_| Ok(())).await
        }

        /// Runs one service from configuration until `shutdown` resolves;
        /// `bound` hears its address once it listens (`rapport bench`'s
        /// server processes announce it).
        pub async fn serve_until(
            config: &RapportConfig,
            service: Service,
            shutdown: impl Future<Output = ()> + Send,
            bound: impl FnOnce(SocketAddr) -> anyhow::Result<()>,
        ) -> anyhow::Result<()> {
            match service {
                Service::gateway => {
                    let gateway = rapport_gateway::build(&config.gateway).await?;
                    tracing::info!(addr = %gateway.local_addr(), "gateway serving");
                    bound(gateway.local_addr())?;
                    gateway.serve(shutdown).await
                }
                $( Service::$name => {
                    let bus = Bus::from_config(&config.$name.events, &Bus::in_process()).await?;
                    let built = $krate::build(&config.$name, &bus).await?;
                    tracing::info!(addr = %built.local_addr(), metrics = ?built.metrics_addr(), service = $krate::SERVICE_NAME, ?bus, "serving");
                    bound(built.local_addr())?;
                    built.serve(shutdown).await
                } )+
            }
        }

        /// Applies a service's pending migrations, then returns.
        pub async fn migrate(config: &RapportConfig, service: Service) -> anyhow::Result<()> {
            match service {
                Service::gateway => {
                    migrate_one::<rapport_gateway::Migrator>(&config.gateway.database, "gateway").await
                }
                $( Service::$name => {
                    migrate_one::<$krate::Migrator>(&config.$name.database, stringify!($name)).await
                } )+
            }
        }

        /// The consumers `service` runs, with their handlers, and its
        /// database configuration (`rapport events dead-letters`).
        pub fn consumers(
            config: &RapportConfig,
            service: Service,
        ) -> (Vec<(&'static str, rapport_events::consume::Handler)>, DatabaseConfig) {
            match service {
                // The gateway consumes no events.
                Service::gateway => (Vec::new(), config.gateway.database.clone()),
                $( Service::$name => ($krate::event_handlers(), config.$name.database.clone()), )+
            }
        }

        /// The services other than profiles that hold customer data, by
        /// their name on the bus: each confirms every erasure.
        pub fn customer_data_holders() -> Vec<String> {
            let mut holders = Vec::new();
            $(
                // A service's name on the bus is its name in this table.
                if $krate::HOLDS_CUSTOMER_DATA && stringify!($name) != rapport_profiles::EVENTS_NAME {
                    holders.push(stringify!($name).to_owned());
                }
            )+
            holders
        }

        /// `rapport dev`: every service on an SQLite file under `data_dir`,
        /// migrating, with dev secrets, trusting the dev gateway's assertion
        /// public key, unless configured otherwise.
        pub fn prepare_dev(
            config: &mut RapportConfig,
            data_dir: &Path,
            assertion_public_key: &str,
        ) -> anyhow::Result<()> {
            $(
                // No load balancer in front of one process: Ctrl-C drains at once.
                config.$name.server.shutdown_delay_ms = 0;
                if config.$name.assertion_public_keys.trim().is_empty() {
                    config.$name.assertion_public_keys = assertion_public_key.to_owned();
                }
                dev::embedded(
                    stringify!($name),
                    &mut config.$name.database,
                    &mut config.$name.page_token_secret,
                    data_dir,
                )?;
            )+
            prepare_dev_peers(config, data_dir)
        }

        /// `rapport dev`: builds every service on the process's bus (the
        /// in-process one unless a service is configured for NATS) and
        /// routes the gateway to it (unless a backend is configured for it
        /// already).
        pub async fn start_dev(config: &mut RapportConfig, bus: &Bus) -> anyhow::Result<Vec<Started>> {
            let mut started = Vec::new();
            $( {
                wire_dev_peers(config, &started);
                let service_bus = Bus::from_config(&config.$name.events, bus).await?;
                let built = $krate::build(&config.$name, &service_bus).await?;
                let addr = built.local_addr();
                config
                    .gateway
                    .backends
                    .entry($krate::SERVICE_NAME.to_owned())
                    .or_insert_with(|| rapport_gateway::backends::BackendConfig {
                        endpoints: vec![format!("http://{addr}")],
                        connections: 2,
                    });
                started.push(Started {
                    name: stringify!($name),
                    grpc_name: $krate::SERVICE_NAME,
                    addr,
                    serve: Box::new(move |stop| Box::pin(built.serve(stop))),
                });
            } )+
            Ok(started)
        }
    };
}

/// What configuration leaves to the service table: which services an
/// erasure waits for.
pub fn complete(config: &mut RapportConfig) {
    if config.profiles.erasure.services.is_none() {
        config.profiles.erasure.services = Some(customer_data_holders());
    }
}

/// `rapport dev`: the keys of service-to-service calls. Conversations
/// resolves senders with profiles, signing each call with its own key
/// (`conversations.service_key`, kept in the data directory); profiles
/// trusts that key's public half beside the gateway's.
fn prepare_dev_peers(config: &mut RapportConfig, data_dir: &Path) -> anyhow::Result<()> {
    if config.conversations.service_key.is_empty() {
        config.conversations.service_key =
            dev::dev_signing_key(data_dir, "conversations_service_key")?;
    }
    let public =
        rapport_kit::AssertionSigner::from_base64(config.conversations.service_key.expose())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "conversations.service_key must be the base64url seed of an Ed25519 key"
                )
            })?
            .public_key();
    let keys = &mut config.profiles.assertion_public_keys;
    if !keys.split(',').any(|k| k.trim() == public) {
        *keys = format!("{keys},{public}");
    }
    Ok(())
}

/// `rapport dev`: points each service at the services it calls, started
/// before it (the table's order), unless configured otherwise.
fn wire_dev_peers(config: &mut RapportConfig, started: &[Started]) {
    let default = rapport_conversations::Config::default().profiles.endpoint;
    if config.conversations.profiles.endpoint == default
        && let Some(profiles) = started
            .iter()
            .find(|s| s.grpc_name == rapport_profiles::SERVICE_NAME)
    {
        config.conversations.profiles.endpoint = format!("http://{}", profiles.addr);
    }
}

async fn migrate_one<M: MigratorTrait>(
    database: &DatabaseConfig,
    name: &str,
) -> anyhow::Result<()> {
    let db = rapport_store::open::<M>(&DatabaseConfig {
        migrate: true,
        ..database.clone()
    })
    .await?;
    tracing::info!(
        database = %rapport_store::db::redact_url(&database.url),
        service = name,
        "migrations applied"
    );
    db.close().await;
    Ok(())
}

services! {
    /// Customer profiles.
    profiles => rapport_profiles,
    /// Partner webhooks.
    webhooks => rapport_webhooks,
    /// Conversations on every channel.
    conversations => rapport_conversations,
}
