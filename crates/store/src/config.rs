//! Where a service's data lives, and the one call that opens it.
use anyhow::Context as _;
use sea_orm_migration::MigratorTrait;
use serde::{Deserialize, Serialize};

use crate::{Db, DbOptions, db::redact_url};

/// The `database` section of every service's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/<service>.db` or `postgres://user:pass@host/db`.
    pub url: String,
    /// Run pending migrations at start (the embedded default); production runs
    /// `rapport migrate <service>` as a Job instead.
    pub migrate: bool,
    /// Pool settings.
    pub pool: DbOptions,
}

impl DatabaseConfig {
    /// The default of a service: an SQLite file named after it in the
    /// working directory, migrated at start.
    pub fn sqlite_file(service: &str) -> Self {
        Self {
            url: format!("sqlite://{service}.db"),
            migrate: true,
            pool: DbOptions::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self::sqlite_file("rapport")
    }
}

/// Connects to the configured database and, when configured, applies the
/// pending migrations of `M`. The error names the database without its
/// password.
pub async fn open<M: MigratorTrait>(config: &DatabaseConfig) -> anyhow::Result<Db> {
    let connect = |pool: DbOptions| async move {
        Db::connect(&config.url, &pool)
            .await
            .with_context(|| format!("connecting to {}", redact_url(&config.url)))
    };
    if config.migrate && !config.url.starts_with("sqlite:") {
        // Migrations (an index built over a large table) may rightly run
        // longer than any request: on their own pool, without the
        // statement timeout.
        let migrator = connect(DbOptions {
            statement_timeout_ms: 0,
            max_connections: 1,
            ..config.pool.clone()
        })
        .await?;
        let migrated = migrate::<M>(&migrator).await;
        migrator.close().await;
        migrated?;
        return connect(config.pool.clone()).await;
    }
    // SQLite has no statement timeout, and an in-memory database lives and
    // dies with its connection: migrate through the serving pool.
    let db = connect(config.pool.clone()).await?;
    if config.migrate {
        migrate::<M>(&db).await?;
    }
    Ok(db)
}

/// Applies the pending migrations of `M` (each service keeps its own
/// migration history table, so services may share one database).
pub async fn migrate<M: MigratorTrait>(db: &Db) -> anyhow::Result<()> {
    M::up(&db.writer, None)
        .await
        .with_context(|| format!("running migrations on {}", backend_name(db)))
}

fn backend_name(db: &Db) -> &'static str {
    match db.backend() {
        sea_orm::DatabaseBackend::Sqlite => "SQLite",
        sea_orm::DatabaseBackend::Postgres => "PostgreSQL",
        _ => "the database",
    }
}
