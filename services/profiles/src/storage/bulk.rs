//! The bulk loader of synthetic customers (`rapport seed`, `rapport bench
//! --seeded`); its public face is [`crate::seed`].
//!
//! Seeded customers are written straight into the profiles tables in this
//! layer's own row format ([`to_row`], [`rules::identity_keys`],
//! [`rules::search_text`]): a `customers` row with its JSON document, one
//! `customer_identities` row per email and phone, one `customer_tags` row
//! per tag and the creation `lifecycle_events` row — the rows
//! `CreateCustomer` writes, so the API cannot tell them apart.
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

use super::{entities::*, to_row};
use crate::domain::{
    Violations,
    model::*,
    rules,
    values::{AttributeKey, Email, Locale, Phone, Tag, TimeZone},
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

/// Seeded customer `i` as `CreateCustomer` would have made it at `now`
/// (also the sample row of the storage ceilings).
pub(super) fn seed_customer(i: u64, now: DateTime<Utc>) -> anyhow::Result<Customer> {
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
    let tenant =
        Tenant::parse(&plan.tenant).map_err(|e| anyhow::anyhow!("tenant {:?} {e}", plan.tenant))?;
    if plan.batch == 0 {
        bail!("batch must be at least 1");
    }
    let resumed_at = seeded_count(db, &plan.tenant).await?;
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Batch>>(2);
    let producer = {
        let backend = db.backend();
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
}
