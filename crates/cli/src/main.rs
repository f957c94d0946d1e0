//! `rapport`: runs Rapport, and is its composition root — the one crate that
//! may depend on services. `dev` starts every service and the gateway in one
//! process on embedded storage; `serve <service>` runs one service from
//! configuration (a Kubernetes Deployment); `migrate <service>` applies
//! database migrations (a Kubernetes Job); `keys` manages API keys. Every
//! per-service part of it comes from the one table in `services.rs`.
#![forbid(unsafe_code)]

mod bench;
mod config;
mod dev;
mod events;
mod keys;
mod seed;
mod services;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use services::Service;

/// Rapport, the customer-interaction platform.
#[derive(Debug, Parser)]
#[command(name = "rapport", version, about)]
struct Cli {
    /// TOML configuration file; `RAPPORT_…` environment variables override it
    /// (`__` separates levels: `RAPPORT_PROFILES__DATABASE__URL`).
    #[arg(long, global = true, env = "RAPPORT_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long, global = true)]
    dump_config: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service and the gateway in one process on SQLite under a
    /// local data directory.
    Dev {
        /// Where the embedded databases and generated secrets live.
        #[arg(long, default_value = ".rapport", env = "RAPPORT_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Run one service from configuration.
    Serve {
        /// The service.
        service: Service,
    },
    /// Apply pending database migrations of a service, then exit.
    Migrate {
        /// The service.
        service: Service,
    },
    /// Operate event consumers: list and replay dead letters.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Manage the gateway's API keys directly in its database.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Measure: a gRPC load generator with scenarios, ceilings and reports.
    Bench(bench::BenchArgs),
    /// Bulk-load synthetic customers into the profiles database.
    Seed(seed::SeedArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = config::load(cli.config.as_deref())?;
    if let Command::Dev { data_dir } = &cli.command {
        dev::prepare(&mut config, data_dir)?;
    }
    if cli.dump_config {
        println!("{}", config::dump(&config)?);
        return Ok(());
    }

    // Each process reports itself (OpenTelemetry `service.name`, unless
    // OTEL_SERVICE_NAME says otherwise): `rapport-profiles` for `rapport
    // serve profiles`, `rapport-dev` for everything in one process.
    let service_name = match &cli.command {
        Command::Serve { service } => format!("rapport-{}", service.name()),
        Command::Dev { .. } => "rapport-dev".to_owned(),
        _ => "rapport".to_owned(),
    };
    let telemetry = rapport_telemetry::init(
        &service_name,
        config.log.format()?,
        &config.log.effective_filter(),
    )?;
    let result = match cli.command {
        Command::Dev { data_dir } => dev::run(config, &data_dir).await,
        Command::Serve { service } => services::serve(&config, service).await,
        Command::Migrate { service } => services::migrate(&config, service).await,
        Command::Events { command } => events::run(&config, command).await,
        Command::Keys { command } => keys::run(&config.gateway, command).await,
        Command::Bench(args) => bench::run(&config, args).await,
        Command::Seed(args) => seed::run(&config, args).await,
    };
    if let Err(err) = &result {
        tracing::error!(error = format!("{err:#}"), "rapport stopped with an error");
    }
    // Flush spans on a blocking thread: the exporter needs the runtime to run.
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .ok();
    result
}
