//! `rapport events`: operating a service's event consumers — list the events
//! its consumers parked as dead letters, and replay one once its cause is
//! fixed (through the same handler, applied once: the inbox still guards it).
use anyhow::{Context as _, bail};
use clap::Subcommand;
use rapport_events::consume::{self, Applied};
use rapport_store::Db;

use crate::{config::RapportConfig, services::Service};

/// `rapport events …`
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// A service's dead letters: events its consumers gave up on.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
}

/// `rapport events dead-letters …`
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Lists the oldest parked events (with their error).
    List {
        /// The consuming service.
        service: Service,
        /// Only this consumer's.
        #[arg(long)]
        consumer: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Runs a parked event through its consumer's handler again; applied,
    /// it leaves the dead letters.
    Replay {
        /// The consuming service.
        service: Service,
        /// The consumer that parked it.
        consumer: String,
        /// The event id.
        event_id: String,
    },
}

/// Runs an `events` command.
pub async fn run(config: &RapportConfig, command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::DeadLetters { command } = command;
    let service = match &command {
        DeadLettersCommand::List { service, .. } | DeadLettersCommand::Replay { service, .. } => {
            *service
        }
    };
    let (handlers, database) = crate::services::consumers(config, service);
    if handlers.is_empty() {
        bail!("{service:?} consumes no events, so it has no dead letters");
    }
    let db = Db::connect(&database.url, &database.pool)
        .await
        .with_context(|| {
            format!(
                "connecting to {}",
                rapport_store::db::redact_url(&database.url)
            )
        })?;
    let result = match command {
        DeadLettersCommand::List {
            consumer, limit, ..
        } => list(&db, consumer.as_deref(), limit).await,
        DeadLettersCommand::Replay {
            consumer, event_id, ..
        } => {
            let Some((_, handler)) = handlers.iter().find(|(name, _)| *name == consumer) else {
                let known: Vec<_> = handlers.iter().map(|(n, _)| *n).collect();
                bail!("{service:?} has no consumer {consumer:?} (it runs {known:?})");
            };
            match consume::replay(&db, &consumer, &event_id, handler).await {
                Ok(Some(Applied::Now)) => {
                    println!("{event_id}: applied; removed from the dead letters")
                }
                Ok(Some(Applied::Before)) => {
                    println!("{event_id}: had been applied already; removed from the dead letters")
                }
                Ok(None) => bail!("no dead letter {event_id} of consumer {consumer:?}"),
                Err(e) => bail!("{event_id} failed again and stays parked: {e}"),
            }
            Ok(())
        }
    };
    db.close().await;
    result
}

async fn list(db: &Db, consumer: Option<&str>, limit: u64) -> anyhow::Result<()> {
    let rows = consume::dead_letters_page(db, consumer, limit)
        .await
        .context("reading dead letters")?;
    if rows.is_empty() {
        println!("no dead letters");
    }
    for r in rows {
        let parked = chrono::DateTime::from_timestamp_micros(r.park_time).unwrap_or_default();
        println!(
            "{}  {}  {}  {}  tenant={}  attempts={}  error={}",
            parked.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            r.consumer,
            r.event_id,
            if r.event_type.is_empty() {
                "(undecodable)"
            } else {
                &r.event_type
            },
            r.tenant,
            r.attempts,
            r.error
        );
    }
    Ok(())
}
