//! Bulk loading of synthetic customers for benchmarks (`rapport seed`), and
//! the storage ceilings the benchmark report compares writes against.
//!
//! Seeded customers are written straight into the profiles tables in the
//! storage layer's own row format (`storage::to_row`,
//! [`rules::identity_keys`], [`rules::search_text`]): a `customers` row with its
//! JSON document, one `customer_identities` row per email and phone, one
//! `customer_tags` row per tag and the creation `lifecycle_events` row — the
//! rows `CreateCustomer` writes, so the API cannot tell them apart.
//!
//! This module bypasses the domain service on purpose (the service checks
//! identities and commits one customer per transaction, which is what the
//! benchmark measures, not how it should be loaded). It must not be used to
//! write anything a client sent.
//!
//! No outbox rows: a bulk import is not a stream of domain events. A million
//! `CustomerCreated` envelopes would only be relayed to subscribers that
//! never asked for synthetic data, and would swell the outbox the relay scans.
//! Idempotency keys are not written either: no client request stands behind a
//! seeded customer.
use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Range,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use rapport_store::{Db, is_unique_violation, micros};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait as _, ConnectionTrait as _, DatabaseBackend,
    DbErr, EntityTrait, QueryFilter as _, QuerySelect as _, Statement, TransactionTrait as _,
    sea_query::Expr,
};
use serde::{Deserialize, Serialize};

use crate::{
    domain::{
        Violations,
        model::*,
        rules,
        values::{AttributeKey, Email, Locale, Phone, Tag, TimeZone},
    },
    storage::{entities::*, to_row},
};

/// The tenant seeded customers belong to unless told otherwise.
pub const DEFAULT_TENANT: &str = "bench";

/// Customers per transaction unless told otherwise.
pub const DEFAULT_BATCH: usize = 1_000;

/// The email of seeded customer `i`; also what marks a customer as seeded.
pub fn seed_email(i: u64) -> String {
    format!("seed-{i}@example.com")
}

/// The phone number of seeded customer `i`, in E.164 form. Seven digits
/// after `+1555` up to ten million customers, more beyond (still ≤ 15 digits).
pub fn seed_phone(i: u64) -> String {
    format!("+1555{i:07}")
}

/// The display name of seeded customer `i`.
pub fn seed_display_name(i: u64) -> String {
    format!("Seed Customer {i}")
}

const GIVEN_NAMES: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances", "Dennis",
    "Radia", "John", "Hedy", "Tim", "Sophie", "Linus",
];
const FAMILY_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Hamilton",
    "Thompson",
    "Allen",
    "Ritchie",
    "Perlman",
    "McCarthy",
    "Lamarr",
    "Berners-Lee",
    "Wilson",
    "Torvalds",
];
/// Locale and a time zone where it is spoken.
const PLACES: &[(&str, &str)] = &[
    ("en-US", "America/New_York"),
    ("en-GB", "Europe/London"),
    ("fr-FR", "Europe/Paris"),
    ("de-DE", "Europe/Berlin"),
    ("es-ES", "Europe/Madrid"),
    ("ja-JP", "Asia/Tokyo"),
    ("pt-BR", "America/Sao_Paulo"),
    ("en-AU", "Australia/Sydney"),
];
// Eight tags picked with a stride of 3: up to three picks are always distinct.
const TAGS: &[&str] = &[
    "vip",
    "newsletter",
    "wholesale",
    "beta-tester",
    "churn-risk",
    "loyalty-gold",
    "b2b",
    "mobile-app",
];
const PLANS: &[&str] = &["free", "starter", "pro", "enterprise"];
const CHANNELS: &[Channel] = &[
    Channel::Email,
    Channel::Sms,
    Channel::Phone,
    Channel::LiveChat,
];

fn pick<T: Copy>(list: &[T], i: u64) -> T {
    list[(i % list.len() as u64) as usize]
}

fn parsed<T>(what: &str, r: Result<T, &'static str>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("seed {what}: {e}"))
}

/// The profile of seeded customer `i`: deterministic, normalized exactly as
/// `CreateCustomer` normalizes input, a document of a few hundred bytes.
pub fn seed_profile(i: u64) -> anyhow::Result<Profile> {
    let (locale, zone) = pick(PLACES, i);
    let locale = parsed("locale", Locale::parse(locale))?;
    let tags = (0..1 + i % 3)
        .map(|k| parsed("tag", Tag::parse(pick(TAGS, i + 3 * k))))
        .collect::<anyhow::Result<BTreeSet<_>>>()?;
    let attributes = BTreeMap::from([
        (
            parsed("attribute key", AttributeKey::parse("plan"))?,
            AttributeValue::String(pick(PLANS, i / 7).to_owned()),
        ),
        (
            parsed("attribute key", AttributeKey::parse("lifetime_orders"))?,
            AttributeValue::Int(((i * 7) % 120) as i64),
        ),
    ]);
    let mut profile = Profile {
        display_name: seed_display_name(i),
        given_name: pick(GIVEN_NAMES, i).to_owned(),
        family_name: pick(FAMILY_NAMES, i / 16).to_owned(),
        emails: vec![EmailEntry {
            address: parsed("email", Email::parse(&seed_email(i)))?,
            label: "personal".to_owned(),
            primary: false,
            verified: !i.is_multiple_of(3),
        }],
        phones: vec![PhoneEntry {
            number: parsed("phone", Phone::parse(&seed_phone(i)))?,
            label: "mobile".to_owned(),
            primary: false,
        }],
        identities: Vec::new(),
        locale: Some(locale.clone()),
        time_zone: Some(parsed("time zone", TimeZone::parse(zone))?),
        birthday: Some(Birthday {
            month: (1 + i % 12) as u8,
            day: (1 + i % 28) as u8,
            year: (!i.is_multiple_of(5)).then_some(1950 + (i % 55) as u16),
        }),
        contact_preferences: ContactPreferences {
            preferred_channel: Some(pick(CHANNELS, i)),
            preferred_language: Some(locale),
            quiet_hours: i.is_multiple_of(2).then_some(QuietHours {
                start_minute: 22 * 60,
                end_minute: 7 * 60,
            }),
            do_not_contact: i.is_multiple_of(50),
        },
        tags,
        attributes,
    };
    let mut v = Violations::default();
    rules::normalize_profile(&mut profile, "", &mut v);
    v.check().context("seed profile is invalid")?;
    Ok(profile)
}

/// Seeded customer `i` as `CreateCustomer` would have made it at `now`.
fn seed_customer(i: u64, now: DateTime<Utc>) -> anyhow::Result<Customer> {
    Ok(Customer::new_active(seed_profile(i)?, now))
}

/// What to seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedPlan {
    /// Tenant of the seeded customers.
    pub tenant: String,
    /// Seeded customers wanted in total: indexes `0..customers`.
    pub customers: u64,
    /// Customers per transaction.
    pub batch: usize,
}

impl SeedPlan {
    /// `customers` customers in [`DEFAULT_TENANT`], [`DEFAULT_BATCH`] at a time.
    pub fn new(customers: u64) -> Self {
        Self {
            tenant: DEFAULT_TENANT.to_owned(),
            customers,
            batch: DEFAULT_BATCH,
        }
    }
}

/// Where a running seed is, after each committed batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedProgress {
    /// Seeded customers present now (the next index to write).
    pub seeded: u64,
    /// The plan's total.
    pub target: u64,
    /// Customers written by this run so far.
    pub inserted: u64,
    /// Rows written by this run so far, all tables.
    pub rows: u64,
    /// Time since this run started writing.
    pub elapsed: Duration,
}

/// What a seed run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedReport {
    /// Tenant.
    pub tenant: String,
    /// Index this run started at: seeded customers already present.
    pub resumed_at: u64,
    /// Seeded customers present at the end.
    pub seeded: u64,
    /// Customers written by this run.
    pub inserted: u64,
    /// Rows written by this run, all tables.
    pub rows: u64,
    /// Wall time of the writing, seconds.
    pub elapsed_secs: f64,
    /// `inserted / elapsed_secs`.
    pub customers_per_sec: f64,
    /// `rows / elapsed_secs`.
    pub rows_per_sec: f64,
}

/// One batch, ready to execute: its multi-row INSERTs are rendered on the
/// builder thread so that the writer only sends them.
struct Batch {
    indexes: Range<u64>,
    rows: u64,
    statements: Vec<Statement>,
}

fn build_batch(
    backend: DatabaseBackend,
    tenant: &Tenant,
    indexes: Range<u64>,
) -> anyhow::Result<Batch> {
    let n = (indexes.end - indexes.start) as usize;
    let mut customers = Vec::with_capacity(n);
    let mut identities = Vec::with_capacity(2 * n);
    let mut tags = Vec::with_capacity(3 * n);
    let mut lifecycle = Vec::with_capacity(n);
    for i in indexes.clone() {
        let c = seed_customer(i, Utc::now())?;
        let id = c.id.to_string();
        customers.push(to_row(tenant, &c)?);
        // The same index rows `storage::write_indexes` writes for an active customer.
        for key in rules::identity_keys(&c.profile, "") {
            identities.push(identities::ActiveModel {
                tenant: Set(tenant.to_string()),
                kind: Set(key.kind.as_str().to_owned()),
                value: Set(key.value),
                match_key: Set(key.match_key),
                customer_id: Set(id.clone()),
            });
        }
        for tag in &c.profile.tags {
            tags.push(tags::ActiveModel {
                tenant: Set(tenant.to_string()),
                tag: Set(tag.as_str().to_owned()),
                customer_id: Set(id.clone()),
            });
        }
        // The creation entry of the lifecycle history, as the service writes it.
        lifecycle.push(lifecycle_events::ActiveModel {
            tenant: Set(tenant.to_string()),
            id: Set(LifecycleEventId::generate().to_string()),
            customer_id: Set(id),
            from_stage: Set(String::new()),
            to_stage: Set(LifecycleStage::Awareness.as_str().to_owned()),
            reason: Set("created".to_owned()),
            create_time: Set(micros(c.create_time)),
        });
    }
    let rows = (customers.len() + identities.len() + tags.len() + lifecycle.len()) as u64;
    let mut statements = Vec::new();
    insert_statements(backend, customers, &mut statements);
    insert_statements(backend, identities, &mut statements);
    insert_statements(backend, tags, &mut statements);
    insert_statements(backend, lifecycle, &mut statements);
    Ok(Batch {
        indexes,
        rows,
        statements,
    })
}

/// Bound parameters per statement: below SQLite's 32,766 and PostgreSQL's
/// 65,535, so a batch of any size splits into legal multi-row INSERTs.
const MAX_PARAMS: usize = 30_000;

/// Multi-row INSERTs (`insert_many`) of `rows`, as few as the parameter limit allows.
fn insert_statements<A: ActiveModelTrait>(
    backend: DatabaseBackend,
    rows: Vec<A>,
    out: &mut Vec<Statement>,
) {
    use sea_orm::{Iterable as _, QueryTrait as _};
    let columns = <A::Entity as EntityTrait>::Column::iter().count();
    let per_statement = (MAX_PARAMS / columns).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(per_statement).collect();
        out.push(<A::Entity as EntityTrait>::insert_many(chunk).build(backend));
    }
}

async fn write_batch(db: &Db, statements: Vec<Statement>) -> Result<(), DbErr> {
    let txn = db.writer.begin().await?;
    for statement in statements {
        txn.execute_raw(statement).await?;
    }
    txn.commit().await
}

/// How many seeded customers `tenant` has: one more than the highest index
/// whose email (`seed-{i}@example.com`) is in the identity index, or 0.
///
/// This is the resume point, kept in the data itself rather than in a
/// checkpoint: batches commit whole and in index order, so everything below
/// it is present. A seeded customer erased or merged away since leaves a gap
/// that is not refilled. A customer made through the API with a seed email
/// above the highest index moves the resume point past it; one holding a seed
/// email or phone still to be written makes the seed run fail on the
/// identity's uniqueness instead of duplicating it.
pub async fn seeded_count(db: &Db, tenant: &str) -> anyhow::Result<u64> {
    use identities::Column as I;
    // `seed-` is 5 characters and `@example.com` 12: the digits in between.
    const DIGITS: &str = "SUBSTR(value, 6, LENGTH(value) - 17)";
    let only_digits = match db.backend() {
        DatabaseBackend::Postgres => Expr::cust(r"value ~ '^seed-[0-9]{1,18}@example\.com$'"),
        _ => Expr::cust(format!(
            "value GLOB 'seed-[0-9]*@example.com' AND {DIGITS} NOT GLOB '*[^0-9]*' \
             AND LENGTH(value) <= 35"
        )),
    };
    let max: Option<Option<i64>> = identities::Entity::find()
        .select_only()
        .column_as(
            Expr::cust(format!("MAX(CAST({DIGITS} AS BIGINT))")),
            "max_index",
        )
        .filter(I::Tenant.eq(tenant))
        .filter(I::Kind.eq(rules::IdentityKind::Email.as_str()))
        .filter(only_digits)
        .into_tuple()
        .one(&db.writer)
        .await
        .context("finding the highest seeded index")?;
    Ok(max.flatten().map_or(0, |m| m as u64 + 1))
}

/// Seeds `plan.customers` customers into `plan.tenant`, resuming after the
/// ones already there, `plan.batch` per transaction. `progress` is called
/// after every committed batch.
///
/// Rows are built on a blocking thread while the previous batch is written,
/// so generation and the database overlap on two cores.
pub async fn seed(
    db: &Db,
    plan: &SeedPlan,
    mut progress: impl FnMut(&SeedProgress),
) -> anyhow::Result<SeedReport> {
    rapport_kit::context::Tenant::parse(&plan.tenant)
        .map_err(|e| anyhow::anyhow!("tenant {:?} {e}", plan.tenant))?;
    if plan.batch == 0 {
        bail!("batch must be at least 1");
    }
    let resumed_at = seeded_count(db, &plan.tenant).await?;
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Batch>>(2);
    let producer = {
        let (backend, tenant) = (db.backend(), Tenant::parse(&plan.tenant).map_err(|why| anyhow::anyhow!("tenant {:?}: {why}", plan.tenant))?);
        let (from, to, step) = (resumed_at, plan.customers, plan.batch as u64);
        tokio::task::spawn_blocking(move || {
            let mut next = from;
            while next < to {
                let end = to.min(next + step);
                let batch = build_batch(backend, &tenant, next..end);
                let failed = batch.is_err();
                if tx.blocking_send(batch).is_err() || failed {
                    return;
                }
                next = end;
            }
        })
    };
    let mut state = SeedProgress {
        seeded: resumed_at,
        target: plan.customers,
        inserted: 0,
        rows: 0,
        elapsed: Duration::ZERO,
    };
    while let Some(batch) = rx.recv().await {
        let Batch {
            indexes,
            rows,
            statements,
        } = batch?;
        if let Err(e) = write_batch(db, statements).await {
            if is_unique_violation(&e) {
                bail!(
                    "seeding customers {indexes:?} of tenant {:?}: an identity is already taken \
                     (a customer outside the seed uses a seed-N@example.com address or phone): {e}",
                    plan.tenant
                );
            }
            return Err(e).with_context(|| format!("seeding customers {indexes:?}"));
        }
        state.seeded = indexes.end;
        state.inserted += indexes.end - indexes.start;
        state.rows += rows;
        state.elapsed = start.elapsed();
        progress(&state);
    }
    producer.await.context("seed row builder panicked")?;
    db.refresh_statistics()
        .await
        .context("refreshing planner statistics")?;
    let secs = start.elapsed().as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    Ok(SeedReport {
        tenant: plan.tenant.clone(),
        resumed_at,
        seeded: state.seeded,
        inserted: state.inserted,
        rows: state.rows,
        elapsed_secs: secs,
        customers_per_sec: per_sec(state.inserted),
        rows_per_sec: per_sec(state.rows),
    })
}

// ------------------------------------------------------------------ ceilings

/// The physical write limit of a storage setup, measured with the simplest
/// possible write: one row per transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CeilingReport {
    /// What was measured: `sqlite.raw_insert`, `postgres.raw_insert`,
    /// `postgres.pgbench_insert`.
    pub name: String,
    /// Concurrent writers (tasks, or pgbench clients).
    pub concurrency: usize,
    /// Transactions committed.
    pub operations: u64,
    /// Measured wall time, seconds.
    pub elapsed_secs: f64,
    /// Committed transactions per second.
    pub ops_per_sec: f64,
    /// Mean latency, milliseconds.
    pub mean_ms: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest transaction, milliseconds.
    pub max_ms: f64,
}

impl CeilingReport {
    /// A report from per-transaction latencies in microseconds.
    fn from_latencies(
        name: String,
        concurrency: usize,
        elapsed_secs: f64,
        mut latencies_us: Vec<u64>,
    ) -> Self {
        latencies_us.sort_unstable();
        let n = latencies_us.len();
        let ms = |us: u64| us as f64 / 1_000.0;
        let at = |q: f64| {
            if n == 0 {
                0.0
            } else {
                ms(latencies_us[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
            }
        };
        Self {
            name,
            concurrency,
            operations: n as u64,
            elapsed_secs,
            ops_per_sec: if elapsed_secs > 0.0 {
                n as f64 / elapsed_secs
            } else {
                0.0
            },
            mean_ms: if n == 0 {
                0.0
            } else {
                ms(latencies_us.iter().sum::<u64>()) / n as f64
            },
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: latencies_us.last().copied().map_or(0.0, ms),
        }
    }
}

/// Tenant of the rows the raw insert ceiling writes. Not a valid tenant id
/// (leading `_`), so no client can ever see or clash with them.
const CEILING_TENANT: &str = "ceiling-scratch";

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
/// rows are deleted afterwards.
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

/// A PostgreSQL client program: on `PATH`, else where Debian installs it.
fn pg_program(name: &str) -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if let Some(p) = on_path {
        return Ok(p);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .with_context(|| format!("{name} not found on PATH nor under /usr/lib/postgresql"))
}

fn psql(psql: &Path, url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
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
}

/// `pgbench` running `script` against the PostgreSQL at `url`, for
/// `seconds` with `clients` clients (one thread each): the server's own
/// write ceiling, without our driver or pool in the way. The create shape
/// runs with prepared statements, as sqlx sends ours.
///
/// It creates scratch tables (`bench_ceiling_<random>_*`: text primary keys
/// filled by `gen_random_uuid()`, the seed customer's document as payload),
/// and drops them afterwards whatever happened. Throughput is pgbench's
/// `tps`; percentiles come from its per-transaction log. Blocking: call it
/// from `spawn_blocking` in async code. Needs `pgbench` and `psql`
/// (postgresql-client) on `PATH` or under `/usr/lib/postgresql/*/bin`.
pub fn pgbench_ceiling(
    url: &str,
    script: PgbenchScript,
    seconds: u32,
    clients: u32,
) -> anyhow::Result<CeilingReport> {
    if seconds == 0 || clients == 0 {
        bail!("pgbench needs at least one second and one client");
    }
    let pgbench = pg_program("pgbench")?;
    let psql_bin = pg_program("psql")?;
    let suffix = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let prefix = format!("bench_ceiling_{suffix}");
    let tables: &[&str] = match script {
        PgbenchScript::OneRow => &["rows"],
        PgbenchScript::CreateShape => &["keys", "customers", "identities", "events", "outbox"],
    };
    let dir = std::env::temp_dir().join(format!("rapport-pgbench-{suffix}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let create: String = tables
        .iter()
        .map(|t| {
            format!(
                "CREATE TABLE {prefix}_{t} (id text PRIMARY KEY DEFAULT gen_random_uuid()::text, \
                 payload text NOT NULL);"
            )
        })
        .collect();
    psql(&psql_bin, url, &create).context("creating the pgbench scratch tables")?;
    let result = run_pgbench(&pgbench, url, &dir, &prefix, script, seconds, clients);
    let drop: String = tables
        .iter()
        .map(|t| format!("DROP TABLE IF EXISTS {prefix}_{t};"))
        .collect();
    let dropped = psql(&psql_bin, url, &drop);
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    dropped.context("dropping the pgbench scratch tables")?;
    Ok(report)
}

/// The pgbench script text for `script` over the tables named `prefix_*`.
fn pgbench_script(prefix: &str, script: PgbenchScript) -> anyhow::Result<String> {
    let now = Utc::now();
    let sample = seed_customer(0, now)?;
    let tenant = ceiling_tenant();
    let document = to_row(&tenant, &sample)?.document.unwrap();
    // pgbench leaves `:name` alone unless a variable of that name exists, so
    // the JSON's colons pass through; quotes are doubled for SQL.
    let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let insert = |table: &str, payload: &str| {
        format!(
            "INSERT INTO {prefix}_{table} (payload) VALUES ({});\n",
            quote(payload)
        )
    };
    Ok(match script {
        PgbenchScript::OneRow => insert("rows", &document),
        PgbenchScript::CreateShape => {
            // With prepared statements pgbench would take the JSON's
            // `:name`s for variables: same size, no colons.
            let document = document.replace(':', "=");
            let identities = rules::identity_keys(&sample.profile, "");
            let identity_rows: Vec<String> = identities
                .iter()
                .map(|k| format!("(gen_random_uuid()::text, {})", quote(&k.match_key)))
                .collect();
            let values = |payload: &str| format!("(gen_random_uuid()::text, {})", quote(payload));
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
                    format!("w{i} AS (INSERT INTO {prefix}_{table} (id, payload) VALUES {rows})")
                })
                .collect();
            format!(
                "SELECT payload FROM {prefix}_identities WHERE id = {};\nWITH {} SELECT 1;\n",
                quote(&uuid::Uuid::now_v7().to_string()),
                ctes.join(", "),
            )
        }
    })
}

fn run_pgbench(
    pgbench: &Path,
    url: &str,
    dir: &Path,
    prefix: &str,
    script: PgbenchScript,
    seconds: u32,
    clients: u32,
) -> anyhow::Result<CeilingReport> {
    let file = dir.join("script.sql");
    std::fs::write(&file, pgbench_script(prefix, script)?).context("writing the pgbench script")?;
    let log_prefix = dir.join("txn");
    let mode = match script {
        // Kept as first measured (the simple query protocol).
        PgbenchScript::OneRow => "simple",
        PgbenchScript::CreateShape => "prepared",
    };
    let out = Command::new(pgbench)
        .arg("-n")
        .args(["-M", mode])
        .arg("-f")
        .arg(&file)
        .args(["-T", &seconds.to_string()])
        .args(["-c", &clients.to_string(), "-j", &clients.to_string()])
        .arg("-l")
        .arg("--log-prefix")
        .arg(&log_prefix)
        .arg(url)
        .output()
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let summary = parse_pgbench(&stdout)?;
    let mut latencies = Vec::with_capacity(summary.transactions as usize);
    for entry in std::fs::read_dir(dir).context("reading pgbench logs")? {
        let path = entry?.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("txn."));
        if is_log {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            latencies.extend(parse_pgbench_log(&text));
        }
    }
    let mut report = CeilingReport::from_latencies(
        script.name().to_owned(),
        clients as usize,
        f64::from(seconds),
        latencies,
    );
    // pgbench's own figures: its tps excludes connection set-up.
    report.ops_per_sec = summary.tps;
    report.mean_ms = summary.latency_avg_ms;
    report.operations = summary.transactions;
    Ok(report)
}

/// The figures of a pgbench summary.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PgbenchSummary {
    transactions: u64,
    latency_avg_ms: f64,
    tps: f64,
}

fn parse_pgbench(stdout: &str) -> anyhow::Result<PgbenchSummary> {
    let mut transactions = None;
    let mut latency = None;
    let mut tps = None;
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("number of transactions actually processed:") {
            transactions = v.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(v) = line.strip_prefix("latency average =") {
            latency = v.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(v) = line.strip_prefix("tps =") {
            tps = v.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    match (transactions, latency, tps) {
        (Some(transactions), Some(latency_avg_ms), Some(tps)) => Ok(PgbenchSummary {
            transactions,
            latency_avg_ms,
            tps,
        }),
        _ => bail!("unexpected pgbench output:\n{stdout}"),
    }
}

/// Latencies (µs) of a pgbench per-transaction log: `client_id
/// transaction_no time script_no time_epoch time_us ...`, `time` in µs.
fn parse_pgbench_log(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_profiles_are_valid_and_deterministic() {
        for i in [0, 1, 17, 9_999_999, 10_000_000, 123_456_789] {
            let p = seed_profile(i).unwrap();
            assert_eq!(p, seed_profile(i).unwrap());
            assert_eq!(p.display_name, format!("Seed Customer {i}"));
            assert_eq!(p.emails[0].address.as_str(), seed_email(i));
            assert!(p.emails[0].primary && p.phones[0].primary);
            assert!((1..=3).contains(&p.tags.len()));
            assert_eq!(p.attributes.len(), 2);
            assert_eq!(rules::identity_keys(&p, "").len(), 2);
        }
        assert_eq!(seed_phone(17), "+15550000017");
    }

    #[test]
    fn latency_percentiles() {
        let r = CeilingReport::from_latencies("x".into(), 1, 2.0, (1..=100).rev().collect());
        assert_eq!(r.operations, 100);
        assert_eq!(r.ops_per_sec, 50.0);
        assert_eq!(r.p50_ms, 0.050);
        assert_eq!(r.p99_ms, 0.099);
        assert_eq!(r.max_ms, 0.100);
        let empty = CeilingReport::from_latencies("x".into(), 1, 1.0, Vec::new());
        assert_eq!((empty.ops_per_sec, empty.p99_ms), (0.0, 0.0));
    }

    #[test]
    fn parses_pgbench_output_and_logs() {
        let out = "transaction type: s.sql\nnumber of transactions actually processed: 10041\n\
                   number of failed transactions: 0 (0.000%)\nlatency average = 0.396 ms\n\
                   initial connection time = 13.432 ms\n\
                   tps = 5053.018702 (without initial connection time)\n";
        assert_eq!(
            parse_pgbench(out).unwrap(),
            PgbenchSummary {
                transactions: 10041,
                latency_avg_ms: 0.396,
                tps: 5053.018702
            }
        );
        assert!(parse_pgbench("pgbench: error").is_err());
        let log = "0 1 2089 0 1795344133 638905\n1 2 313 0 1795344133 639227\n";
        assert_eq!(parse_pgbench_log(log).collect::<Vec<_>>(), vec![2089, 313]);
    }
}

/// The tenant the ceilings write as.
fn ceiling_tenant() -> Tenant {
    Tenant::parse(CEILING_TENANT).expect("CEILING_TENANT is a valid tenant id")
}
