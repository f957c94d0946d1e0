//! Connecting: one URL picks the backend.
//!
//! SQLite (the embedded default) runs in WAL mode with exactly one writer
//! connection and a small pool of readers: SQLite allows one writer at a time,
//! and a single writer connection turns would-be `SQLITE_BUSY` upgrade
//! deadlocks into an orderly queue. PostgreSQL uses one pool for both.
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait as _, Database, DatabaseBackend, DatabaseConnection, DbErr,
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous},
};
use serde::{Deserialize, Serialize};

/// Statements slower than this are logged at WARN (target `sqlx::query`,
/// SQL text with placeholders, never the bound values); every statement is
/// logged at DEBUG, so `RUST_LOG=sqlx::query=debug` shows what a request ran.
const SLOW_STATEMENT: Duration = Duration::from_millis(500);

/// Statement logging of every pool (see [`SLOW_STATEMENT`]).
fn logged(o: &mut ConnectOptions) {
    o.sqlx_logging(true)
        .sqlx_logging_level(log::LevelFilter::Debug)
        .sqlx_slow_statements_logging_settings(log::LevelFilter::Warn, SLOW_STATEMENT);
}

/// A PostgreSQL connection idle this long is pinged before it is handed
/// out: long enough that a busy pool never pings, short enough to find a
/// connection a proxy or firewall dropped (their idle timeouts are minutes).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// Pool settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DbOptions {
    /// Most connections (PostgreSQL) or reader connections (SQLite, at most 8).
    pub max_connections: u32,
    /// How long a query waits for a connection, or SQLite for a lock.
    pub acquire_timeout_ms: u64,
    /// PostgreSQL's `statement_timeout` of every connection, in ms (0: none).
    /// A handler dropped at its deadline does not stop the statement it was
    /// waiting on; this does, so an expensive query cannot keep a connection
    /// and the server busy for minutes after its caller gave up. Keep it near
    /// the server's `default_timeout_ms` (the longest a call may run).
    /// Migrations run without it. SQLite statements run in-process and stop
    /// when their connection's worker is dropped.
    pub statement_timeout_ms: u64,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 10_000,
        }
    }
}

/// A service's database: where writes go and where reads go. On PostgreSQL
/// both are the same pool.
#[derive(Debug, Clone)]
pub struct Db {
    /// Connection for transactions that write.
    pub writer: DatabaseConnection,
    /// Connections for reads.
    pub reader: DatabaseConnection,
}

impl Db {
    /// The backend in use.
    pub fn backend(&self) -> DatabaseBackend {
        self.writer.get_database_backend()
    }

    /// Connects to `url`: `sqlite://path/to/file.db` (created if missing),
    /// `sqlite::memory:` or `postgres://…`.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Self, DbErr> {
        let timeout = Duration::from_millis(options.acquire_timeout_ms);
        if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let url = if memory || url.contains("mode=") {
                url.to_owned()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            let sqlite_opts = move |o: SqliteConnectOptions| {
                o.journal_mode(SqliteJournalMode::Wal)
                    // NORMAL is durable in WAL mode except for the last
                    // transactions on power loss, the usual embedded trade-off.
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(timeout)
                    .foreign_keys(true)
                    // Deleted and overwritten content is zeroed in the file,
                    // not left in free pages and slack space: an erasure must
                    // leave no copy of the personal data it removed. Costs
                    // writes of whole pages on delete, which are rare here.
                    .pragma("secure_delete", "ON")
            };
            let mut w = ConnectOptions::new(url.clone());
            // No ping before each use (sqlx's default): an in-process
            // SQLite connection cannot have been dropped by anyone, and the
            // ping was a round trip to the connection's thread per query —
            // half the hops of a GetCustomer.
            w.max_connections(1)
                .min_connections(1)
                .acquire_timeout(timeout)
                .test_before_acquire(false)
                // A reaped in-memory connection would take the database with it.
                .idle_timeout(None::<Duration>)
                .max_lifetime(None::<Duration>)
                .map_sqlx_sqlite_opts(sqlite_opts);
            logged(&mut w);
            let writer = Database::connect(w).await?;
            if memory {
                // Each in-memory connection is its own database: read through the writer.
                return Ok(Self {
                    reader: writer.clone(),
                    writer,
                });
            }
            // Up to 8 readers whatever the CPU count. On one core, 1 reader
            // served 25 % more point reads than 8 (each connection is a sqlx
            // thread; fewer threads, fewer context switches), but then one
            // slow query (a search scanning a million rows) holds every read
            // up behind it (measured: at a million customers with one reader,
            // searches queued until they timed out waiting for a connection).
            let mut r = ConnectOptions::new(url);
            r.max_connections(options.max_connections.clamp(1, 8))
                .min_connections(0)
                .acquire_timeout(timeout)
                .test_before_acquire(false)
                .map_sqlx_sqlite_opts(sqlite_opts);
            logged(&mut r);
            let reader = Database::connect(r).await?;
            Ok(Self { writer, reader })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut o = ConnectOptions::new(url.to_owned());
            // Sent in the startup packet, so every connection of the pool,
            // including one reopened after a failover, has it.
            let statement_timeout = options.statement_timeout_ms.to_string();
            // sqlx pings every connection it hands out by default: one more
            // round trip to the server per query or transaction. Only a
            // connection idle for a while can have been dropped.
            o.max_connections(options.max_connections.max(1))
                .min_connections(1)
                .acquire_timeout(timeout)
                .connect_timeout(timeout)
                .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
                .map_sqlx_postgres_opts(move |pg| {
                    pg.options([("statement_timeout", statement_timeout.as_str())])
                });
            logged(&mut o);
            let pool = Database::connect(o).await?;
            Ok(Self {
                reader: pool.clone(),
                writer: pool,
            })
        } else {
            Err(DbErr::Custom(
                "database url must start with sqlite: or postgres://".to_owned(),
            ))
        }
    }

    /// Refreshes the planner's statistics after a bulk load (PostgreSQL's
    /// `ANALYZE`, as `pgbench -i` and `pg_restore` advise; SQLite keeps none
    /// and plans from its indexes alone). Without it, a freshly loaded table
    /// has no statistics, every index looks alike to the planner, and a
    /// prepared statement cached as a generic plan can pick an index that
    /// matches only the tenant: seen in a bench as a lookup by the full
    /// identity key reading all 3,000 identities of the tenant through
    /// `identities_by_match_key` (1 ms of PostgreSQL CPU per lookup) until
    /// autovacuum's first analyze.
    pub async fn refresh_statistics(&self) -> Result<(), DbErr> {
        if self.backend() == DatabaseBackend::Postgres {
            self.writer.execute_unprepared("ANALYZE").await?;
        }
        Ok(())
    }

    /// Whether the database answers a trivial statement now: what readiness
    /// reports. On SQLite the reader is asked, so that a long group commit
    /// on the one writer does not look like an outage.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.reader.ping().await
    }

    /// After an erasure committed: removes old copies of the erased rows
    /// that the database keeps outside its live pages, as far as it can now.
    ///
    /// SQLite: the WAL holds every page version written since the last
    /// checkpoint, the pre-erasure one included; a TRUNCATE checkpoint copies
    /// the live pages into the database file (where `secure_delete` zeroes
    /// what was freed) and empties the WAL. It waits for readers up to
    /// the busy timeout and is only logged when it cannot finish (the next
    /// automatic checkpoint overwrites the frames anyway).
    /// PostgreSQL: nothing to do here. The old row versions are dead tuples
    /// until VACUUM (autovacuum, within minutes on a busy table) reclaims
    /// their space, and stay in WAL segments until those are recycled
    /// (README.md, "Erasure and what stays on disk").
    pub async fn scrub_after_erasure(&self) {
        if self.backend() != DatabaseBackend::Sqlite {
            return;
        }
        let checkpoint = sea_orm::Statement::from_string(
            DatabaseBackend::Sqlite,
            "PRAGMA wal_checkpoint(TRUNCATE)",
        );
        match self.writer.query_one_raw(checkpoint).await {
            Ok(Some(row)) if row.try_get_by_index::<i64>(0).unwrap_or(1) == 0 => {}
            Ok(_) => tracing::warn!(
                "WAL checkpoint after an erasure could not finish; the next one will"
            ),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint after an erasure failed"),
        }
    }

    /// Closes both pools.
    pub async fn close(self) {
        let _ = self.reader.close().await;
        let _ = self.writer.close().await;
    }
}

/// The database's ping as a readiness check of the kit's server
/// (`GrpcServer::with_readiness`); the kit knows nothing of databases.
pub fn readiness(
    db: &Db,
) -> std::sync::Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>
{
    let db = db.clone();
    std::sync::Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { db.ping().await.map_err(|e| e.to_string()) })
    })
}

/// `url` with its database (the path) replaced by `database`, keeping the
/// query; `None` when `url` is not a URL. For creating and reaching
/// throw-away PostgreSQL databases (tests, `rapport bench`).
pub fn with_database(url: &str, database: &str) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    Some(format!("{}/{database}{query}", &base[..authority_end]))
}

/// Redacts the password of a database URL for logs and `--dump-config`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/rapport?sslmode=disable", "x").as_deref(),
            Some("postgres://u:p@h:5432/x?sslmode=disable")
        );
        assert_eq!(
            with_database("postgres://h", "x").as_deref(),
            Some("postgres://h/x")
        );
        assert_eq!(with_database("not a url", "x"), None);
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://rapport:s3cret@db:5432/rapport"),
            "postgres://rapport:***@db:5432/rapport"
        );
        assert_eq!(redact_url("sqlite://data/p.db"), "sqlite://data/p.db");
    }

    #[tokio::test]
    async fn sqlite_file_is_created_in_wal_mode() {
        let dir = std::env::temp_dir().join(format!("rapport-store-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let db = Db::connect(&url, &DbOptions::default()).await.unwrap();
        let row = db
            .reader
            .query_one_raw(sea_orm::Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA journal_mode",
            ))
            .await
            .unwrap()
            .unwrap();
        let mode: String = row.try_get_by_index(0).unwrap();
        assert_eq!(mode, "wal");
        db.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}
