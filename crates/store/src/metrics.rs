//! The database pool's metrics, read at each scrape: connections open, in
//! use and idle, and the most allowed, per pool (`main` on PostgreSQL, where
//! reads and writes share one; `writer` and `reader` on SQLite).
//!
//! What sqlx does not expose is not reported: how many tasks wait for a
//! connection and how long they waited. A pool at its maximum with no idle
//! connection is the sign of waiting; the RPC duration histogram shows what
//! it costs.
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, family::Family, gauge::Gauge},
    registry::Registry,
};
use sea_orm::{DatabaseBackend, DatabaseConnection};

use crate::Db;

/// Registers the pool collector of `db` in `registry`.
pub fn register(registry: &mut Registry, db: &Db) {
    registry.register_collector(Box::new(PoolCollector { db: db.clone() }));
}

/// One gauge per pool.
type PoolGauges = Family<Vec<(String, String)>, Gauge>;

#[derive(Debug)]
struct PoolCollector {
    db: Db,
}

/// (open, idle, max) of one pool.
fn stats(conn: &DatabaseConnection) -> Option<(i64, i64, i64)> {
    match conn.get_database_backend() {
        DatabaseBackend::Postgres => {
            let pool = conn.get_postgres_connection_pool();
            Some((
                i64::from(pool.size()),
                pool.num_idle() as i64,
                i64::from(pool.options().get_max_connections()),
            ))
        }
        DatabaseBackend::Sqlite => {
            let pool = conn.get_sqlite_connection_pool();
            Some((
                i64::from(pool.size()),
                pool.num_idle() as i64,
                i64::from(pool.options().get_max_connections()),
            ))
        }
        _ => None,
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pools: Vec<(&str, &DatabaseConnection)> = match self.db.backend() {
            DatabaseBackend::Postgres => vec![("main", &self.db.writer)],
            _ => vec![("writer", &self.db.writer), ("reader", &self.db.reader)],
        };
        let families: [(&str, &str, PoolGauges); 4] = [
            (
                "db_client_connections_open",
                "Connections open, per pool",
                Family::default(),
            ),
            (
                "db_client_connections_used",
                "Connections in use, per pool",
                Family::default(),
            ),
            (
                "db_client_connections_idle",
                "Connections idle, per pool",
                Family::default(),
            ),
            (
                "db_client_connections_max",
                "Most connections allowed, per pool",
                Family::default(),
            ),
        ];
        for (name, conn) in pools {
            let Some((open, idle, max)) = stats(conn) else {
                continue;
            };
            let labels = vec![("pool".to_owned(), name.to_owned())];
            for ((_, _, family), value) in families.iter().zip([open, open - idle, idle, max]) {
                family.get_or_create(&labels).set(value);
            }
        }
        for (name, help, family) in &families {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            family.encode(metric)?;
        }
        Ok(())
    }
}
