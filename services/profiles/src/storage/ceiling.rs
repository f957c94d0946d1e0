//! The storage write ceilings `rapport bench` and `rapport seed --ceiling`
//! read creates against, on the profiles schema (feature `bench`; public as
//! [`crate::ceiling`]).
//!
//! Only what needs this schema is here: raw single-row inserts into
//! `customers` through a [`Db`], and the statements of the pgbench scripts
//! with their sample payloads. Running pgbench, reading its output and the
//! report are `rapport_bench`'s ([`rapport_bench::pgbench`],
//! [`CeilingReport`]); nothing in this crate spawns a process.
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use rapport_bench::{
    CeilingReport,
    pgbench::{self, PgbenchRun, QueryMode, sql_literal},
};
use rapport_store::{Db, micros};
use sea_orm::{
    ColumnTrait as _, ConnectionTrait as _, DatabaseBackend, DbErr, EntityTrait, QueryFilter as _,
    Statement,
};

use super::{bulk::seed_customer, entities::customers, to_row};
use crate::domain::{CustomerId, Tenant, rules};

/// Tenant of the rows the raw insert ceiling writes, and deletes before and
/// after it runs. It is a valid tenant id: customers a client created in it
/// would be deleted with them.
const CEILING_TENANT: &str = "ceiling-scratch";

/// The tenant the ceilings write as.
fn ceiling_tenant() -> Tenant {
    Tenant::parse(CEILING_TENANT).expect("CEILING_TENANT is a valid tenant id")
}

fn backend_name(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => "postgres",
        DatabaseBackend::Sqlite => "sqlite",
        _ => "other",
    }
}

/// Raw single-row inserts into the `customers` table, one per transaction
/// (autocommit), from `concurrency` tasks for `duration`, through `db` — on
/// SQLite the same single writer connection and pragmas the service uses.
/// Each row is a realistic customer row (the seed document, a fresh id). The
/// rows are deleted afterwards. Reported as `{sqlite,postgres}.raw_insert`.
pub async fn raw_insert_ceiling(
    db: &Db,
    duration: Duration,
    concurrency: usize,
) -> anyhow::Result<CeilingReport> {
    let concurrency = concurrency.max(1);
    let backend = db.backend();
    let clean = || {
        customers::Entity::delete_many()
            .filter(customers::Column::Tenant.eq(CEILING_TENANT))
            .exec(&db.writer)
    };
    clean().await.context("clearing old ceiling rows")?;

    // The SQL is fixed, so the driver prepares it once per connection.
    let placeholders: Vec<String> = (1..=11)
        .map(|n| match backend {
            DatabaseBackend::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        })
        .collect();
    let sql = format!(
        "INSERT INTO customers (tenant, id, version, state, lifecycle_stage, display_name, \
         search_text, document, merged_into, create_time, update_time) VALUES ({})",
        placeholders.join(", ")
    );
    let sample = seed_customer(0, Utc::now())?;
    let row = to_row(&ceiling_tenant(), &sample)?;
    let template: Vec<sea_orm::Value> = vec![
        CEILING_TENANT.into(),
        String::new().into(),
        row.version.unwrap().into(),
        row.state.unwrap().into(),
        row.lifecycle_stage.unwrap().into(),
        row.display_name.unwrap().into(),
        row.search_text.unwrap().into(),
        row.document.unwrap().into(),
        row.merged_into.unwrap().into(),
        0i64.into(),
        0i64.into(),
    ];

    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (db, sql, template) = (db.clone(), sql.clone(), template.clone());
        writers.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let mut values = template.clone();
                let now = micros(Utc::now());
                values[1] = CustomerId::generate().to_string().into();
                values[9] = now.into();
                values[10] = now.into();
                let began = Instant::now();
                db.writer
                    .execute_raw(Statement::from_sql_and_values(backend, &sql, values))
                    .await?;
                latencies.push(began.elapsed().as_micros() as u64);
            }
            Ok::<_, DbErr>(latencies)
        });
    }
    let mut all = Vec::new();
    let mut failure = None;
    while let Some(joined) = writers.join_next().await {
        match joined.context("ceiling writer panicked")? {
            Ok(latencies) => all.extend(latencies),
            Err(e) => failure = Some(e),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    clean().await.context("deleting ceiling rows")?;
    if let Some(e) = failure {
        return Err(e).context("raw insert failed");
    }
    Ok(CeilingReport::from_latencies(
        format!("{}.raw_insert", backend_name(backend)),
        concurrency,
        elapsed,
        all,
    ))
}

/// What a pgbench ceiling runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgbenchScript {
    /// One single-row INSERT per transaction: the server's own write
    /// ceiling (`postgres.pgbench_insert`).
    OneRow,
    /// The statements a create sends, with the same payloads, into plain
    /// scratch tables: the identity pre-check, then one statement whose
    /// data-modifying CTEs insert the idempotency key, the customer, its
    /// identities (one multi-row INSERT), the lifecycle event and the outbox
    /// event (`postgres.pgbench_create_shape`). What a create would cost if
    /// our code added nothing to its statements but their round trips.
    CreateShape,
}

impl PgbenchScript {
    fn name(self) -> &'static str {
        match self {
            Self::OneRow => "postgres.pgbench_insert",
            Self::CreateShape => "postgres.pgbench_create_shape",
        }
    }

    /// The scratch tables the script writes.
    fn tables(self) -> &'static [&'static str] {
        match self {
            Self::OneRow => &["rows"],
            Self::CreateShape => &["keys", "customers", "identities", "events", "outbox"],
        }
    }

    fn mode(self) -> QueryMode {
        match self {
            // Kept as first measured (the simple query protocol).
            Self::OneRow => QueryMode::Simple,
            // As sqlx sends ours.
            Self::CreateShape => QueryMode::Prepared,
        }
    }
}

/// `pgbench` running `script` against the PostgreSQL at `url`, for
/// `seconds` with `clients` clients (one thread each): the server's own
/// write ceiling, without our driver or pool in the way. The create shape
/// runs with prepared statements, as sqlx sends ours.
///
/// The scripts write scratch tables (`bench_ceiling_<random>_*`: text
/// primary keys filled by `gen_random_uuid()`, the seed customer's document
/// as payload) that [`pgbench::pgbench_ceiling`] creates and drops
/// afterwards whatever happened. Blocking: call it from `spawn_blocking` in
/// async code. Needs `pgbench` and `psql` (postgresql-client) on `PATH` or
/// under `/usr/lib/postgresql/*/bin`.
pub fn pgbench_ceiling(
    url: &str,
    script: PgbenchScript,
    seconds: u32,
    clients: u32,
) -> anyhow::Result<CeilingReport> {
    let statements = ScriptStatements::new(script)?;
    let run = PgbenchRun {
        name: script.name(),
        tables: script.tables(),
        mode: script.mode(),
        seconds,
        clients,
    };
    pgbench::pgbench_ceiling(url, &run, |prefix| statements.text(prefix))
}

/// A pgbench script's payloads, taken from seed customer 0, waiting for the
/// scratch tables' prefix.
struct ScriptStatements {
    script: PgbenchScript,
    /// The customer's JSON document.
    document: String,
    /// The match keys of its identities.
    match_keys: Vec<String>,
}

impl ScriptStatements {
    fn new(script: PgbenchScript) -> anyhow::Result<Self> {
        let sample = seed_customer(0, Utc::now())?;
        let document = to_row(&ceiling_tenant(), &sample)?.document.unwrap();
        let match_keys = rules::identity_keys(&sample.profile, "")
            .into_iter()
            .map(|k| k.match_key)
            .collect();
        Ok(Self {
            script,
            document,
            match_keys,
        })
    }

    /// The pgbench script text over the tables named `{prefix}_*`.
    fn text(&self, prefix: &str) -> String {
        match self.script {
            PgbenchScript::OneRow => format!(
                "INSERT INTO {prefix}_rows (payload) VALUES ({});\n",
                sql_literal(&self.document)
            ),
            PgbenchScript::CreateShape => {
                // With prepared statements pgbench would take the JSON's
                // `:name`s for variables: same size, no colons.
                let document = self.document.replace(':', "=");
                let identity_rows: Vec<String> = self
                    .match_keys
                    .iter()
                    .map(|k| format!("(gen_random_uuid()::text, {})", sql_literal(k)))
                    .collect();
                let values =
                    |payload: &str| format!("(gen_random_uuid()::text, {})", sql_literal(payload));
                // The stored reply is the customer, as JSON: about the document's
                // size. Events carry ids only: an envelope is a couple hundred bytes.
                let ctes = [
                    ("keys", values(&document)),
                    ("customers", values(&document)),
                    ("identities", identity_rows.join(", ")),
                    ("events", values("created")),
                    ("outbox", values(&"e".repeat(200))),
                ];
                let ctes: Vec<String> = ctes
                    .iter()
                    .enumerate()
                    .map(|(i, (table, rows))| {
                        format!(
                            "w{i} AS (INSERT INTO {prefix}_{table} (id, payload) VALUES {rows})"
                        )
                    })
                    .collect();
                format!(
                    "SELECT payload FROM {prefix}_identities WHERE id = {};\nWITH {} SELECT 1;\n",
                    sql_literal(&uuid::Uuid::now_v7().to_string()),
                    ctes.join(", "),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_write_their_tables_only() {
        for script in [PgbenchScript::OneRow, PgbenchScript::CreateShape] {
            let text = ScriptStatements::new(script).unwrap().text("p");
            for table in script.tables() {
                assert!(text.contains(&format!("p_{table} ")), "{table}: {text}");
            }
            assert!(text.contains("Seed Customer 0"), "{text}");
        }
        let shape = ScriptStatements::new(PgbenchScript::CreateShape)
            .unwrap()
            .text("p");
        // `::text` casts are not variables; nothing else may look like one.
        assert!(!shape.replace("::", "").contains(':'), "{shape}");
        assert_eq!(shape.matches("INSERT INTO").count(), 5);
    }
}
