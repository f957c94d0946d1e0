//! KPI aggregates of `conv_metric_facts`, computed in SQL — counts, sums,
//! met counts, and percentiles from each value's 3-significant-digit
//! bucket — so a report never reads facts one by one into the service.
//!
//! **Rollups.** Every fact, in the transaction that writes it, adds itself
//! to `conv_metric_rollups` (migrations 000010, 000011): per UTC month and
//! per UTC year, per way of grouping, the counts and sums of its bucket. A
//! period in any time zone is the whole UTC years, then the whole UTC
//! months, between the UTC midnights nearest its edges, read from rollups,
//! the other whole UTC days read from facts, corrected by the facts of the
//! few hours between those midnights and the period's real edges (added or
//! taken away: every aggregate is a sum). A year is then one year of
//! rollups and two slivers of facts; all of it read in one snapshot, so a
//! fact written meanwhile counts in both or neither.
//!
//! A report filtered by inbox or channel reads the facts of its period
//! (rollups keep one grouping per row, not every combination), and so does
//! one grouped by agent ([`rolled_up_by`]).
use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate};
use rapport_store::{Db, from_micros, micros};
use sea_orm::{
    AccessMode, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, IntoActiveModel,
    IsolationLevel, QueryFilter, QueryOrder, QueryResult, QuerySelect, Statement, TransactionTrait,
    Value,
    sea_query::{Expr, OnConflict},
};

use super::{
    SqlRepository,
    entities::{metric_facts, metric_rollups},
    rows::{db_err, metric_fact_model},
};
use crate::domain::{
    Error, Tenant,
    metrics::{
        Aggregates, BucketCount, FactMetric, GroupBy, Kpi, RateCount, Scope, VolumeCount,
        VolumeDimension, bucket, bucket_sql,
    },
    repository::MetricFact,
};

const FACTS: &str = "conv_metric_facts";

/// PostgreSQL's memory for the sorts and hash tables of one report.
const REPORT_WORK_MEM: &str = "64MB";

/// An SQL text and its bound values, numbered placeholders (`?1` on
/// SQLite, `$1` on PostgreSQL) so the text may name them in any order.
struct Sql {
    backend: DatabaseBackend,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: DatabaseBackend) -> Self {
        Self {
            backend,
            values: Vec::new(),
        }
    }

    /// The placeholder of `v`, bound.
    fn bind(&mut self, v: impl Into<Value>) -> String {
        self.values.push(v.into());
        match self.backend {
            DatabaseBackend::Postgres => format!("${}", self.values.len()),
            _ => format!("?{}", self.values.len()),
        }
    }

    fn list<V: Into<Value>>(&mut self, items: impl IntoIterator<Item = V>) -> String {
        items
            .into_iter()
            .map(|v| self.bind(v))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn statement(self, text: String) -> Statement {
        Statement::from_sql_and_values(self.backend, text, self.values)
    }
}

/// The group key column of `f`; empty when not grouped (the rollups'
/// key), written as an expression of a column because PostgreSQL refuses
/// to group by a constant.
/// Whether `group_by` has rollups. Not by agent: an agent's month holds a
/// few hundred facts, and almost every value of those lands in a bucket of
/// its own, so an agent's rollup rows outnumber its facts (two per duration
/// fact, calendar and business: at 200 agents and a million conversations
/// a year, July had 750,000 agent rollup rows for 350,000 facts, and read
/// past 10 s where the facts take about one). The groupings kept are few
/// (teams, channels, inboxes, priorities), with thousands of facts each a
/// month.
fn rolled_up_by(group_by: GroupBy) -> bool {
    group_by != GroupBy::Agent
}

fn key(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::None => "SUBSTR(f.tenant, 1, 0)",
        GroupBy::Agent => "f.agent",
        GroupBy::Team => "f.team",
        GroupBy::Channel => "f.channel",
        GroupBy::Inbox => "f.inbox_id",
        GroupBy::Priority => "f.priority",
    }
}

/// `f`'s facts of `metrics` stopped in `[start, end)` in the tenant's
/// scope.
fn filter(
    q: &mut Sql,
    tenant: &Tenant,
    scope: &Scope,
    (start, end): (i64, i64),
    metrics: &[FactMetric],
) -> String {
    let mut sql = format!(
        "f.tenant = {} AND f.metric IN ({}) AND f.stop_time >= {} AND f.stop_time < {}",
        q.bind(tenant.as_str()),
        q.list(metrics.iter().map(|m| m.as_str())),
        q.bind(start),
        q.bind(end),
    );
    if !scope.inboxes.is_empty() {
        let inboxes = q.list(scope.inboxes.iter().map(ToString::to_string));
        sql.push_str(&format!(" AND f.inbox_id IN ({inboxes})"));
    }
    if !scope.channels.is_empty() {
        let channels = q.list(scope.channels.iter().map(|c| c.as_str()));
        sql.push_str(&format!(" AND f.channel IN ({channels})"));
    }
    sql
}

fn get<T: sea_orm::TryGetable>(r: &QueryResult, col: &str) -> Result<T, DbErr> {
    r.try_get("", col)
}

fn get_sum(r: &QueryResult, col: &str) -> Result<i64, DbErr> {
    Ok(get::<Option<i64>>(r, col)?.unwrap_or(0))
}

/// Aggregates read from facts and rollups, each with a sign, summed by
/// their keys: what is left once the slivers are added and taken away.
#[derive(Default)]
struct Net {
    buckets: BTreeMap<(String, Kpi, bool, i64), [i64; 4]>,
    fcr: BTreeMap<String, [i64; 2]>,
    promises: BTreeMap<String, [i64; 2]>,
    volume: BTreeMap<(String, VolumeDimension, String), i64>,
}

impl Net {
    fn add(&mut self, agg: Aggregates, sign: i64) {
        for b in agg.buckets {
            let e = self
                .buckets
                .entry((b.key, b.kpi, b.business, b.bucket))
                .or_default();
            for (i, v) in [b.count, b.sum, b.met, b.breached].into_iter().enumerate() {
                e[i] += sign * v;
            }
        }
        for (into, rates) in [(&mut self.fcr, agg.fcr), (&mut self.promises, agg.promises)] {
            for r in rates {
                let e = into.entry(r.key).or_default();
                e[0] += sign * r.count;
                e[1] += sign * r.total;
            }
        }
        for v in agg.volume {
            *self
                .volume
                .entry((v.key, v.dimension, v.value))
                .or_default() += sign * v.count;
        }
    }

    /// The sums, without what netted to nothing.
    fn into_aggregates(self) -> Aggregates {
        let rates = |m: BTreeMap<String, [i64; 2]>| {
            m.into_iter()
                .filter(|(_, v)| *v != [0, 0])
                .map(|(key, [count, total])| RateCount { key, count, total })
                .collect()
        };
        Aggregates {
            buckets: self
                .buckets
                .into_iter()
                .filter(|(_, v)| v[0] != 0)
                .map(
                    |((key, kpi, business, bucket), [count, sum, met, breached])| BucketCount {
                        key,
                        kpi,
                        business,
                        bucket,
                        count,
                        sum,
                        met,
                        breached,
                    },
                )
                .collect(),
            fcr: rates(self.fcr),
            promises: rates(self.promises),
            volume: self
                .volume
                .into_iter()
                .filter(|(_, n)| *n != 0)
                .map(|((key, dimension, value), count)| VolumeCount {
                    key,
                    dimension,
                    value,
                    count,
                })
                .collect(),
        }
    }
}

const DAY: i64 = 86_400_000_000;

/// The UTC day holding `t` (µs), as its start.
fn day_start(t: i64) -> i64 {
    t.div_euclid(DAY) * DAY
}

/// A rollup's span: a UTC month or a UTC year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Month,
    Year,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Month => "month",
            Self::Year => "year",
        }
    }

    /// The unit holding `t` (µs), as its start.
    fn start(self, t: i64) -> i64 {
        let d = from_micros(t).date_naive();
        let month = match self {
            Self::Month => d.month(),
            Self::Year => 1,
        };
        micros(
            NaiveDate::from_ymd_opt(d.year(), month, 1)
                .unwrap_or(d)
                .and_time(chrono::NaiveTime::MIN)
                .and_utc(),
        )
    }

    /// The start of the unit after the one starting at `start`.
    fn next(self, start: i64) -> i64 {
        let months = match self {
            Self::Month => 1,
            Self::Year => 12,
        };
        from_micros(start)
            .checked_add_months(Months::new(months))
            .map_or(i64::MAX, micros)
    }

    /// The whole units in `[a, b)`, by their starts, if any.
    fn within(self, a: i64, b: i64) -> Option<(i64, i64)> {
        let first = if self.start(a) == a {
            a
        } else {
            self.next(self.start(a))
        };
        let last = self.start(b);
        (first < last).then_some((first, last))
    }
}

/// How a period is read: ranges of UTC year and month rollups (by their
/// starts), ranges of whole UTC days read from facts, and the slivers of
/// facts to add (+1) or take away (-1).
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    days: Vec<(i64, i64)>,
    rollups: Vec<(Unit, (i64, i64))>,
    slivers: Vec<((i64, i64), i64)>,
}

/// The plan of `[start, end)`: the UTC midnights nearest its edges
/// (within 12 hours of any zone's midnight), whole years between them
/// where there are any, whole months around those, days around those.
fn plan(start: i64, end: i64) -> Plan {
    let near = |t: i64| day_start(t + DAY / 2);
    let (a, b) = (near(start), near(end));
    if b <= a {
        return Plan {
            slivers: vec![((start, end), 1)],
            ..Plan::default()
        };
    }
    let mut p = Plan::default();
    let mut rest = vec![(a, b)];
    for unit in [Unit::Year, Unit::Month] {
        let mut smaller = Vec::new();
        for (x, y) in rest {
            match unit.within(x, y) {
                Some((first, last)) => {
                    p.rollups.push((unit, (first, last)));
                    smaller.extend([(x, first), (last, y)]);
                }
                None => smaller.push((x, y)),
            }
        }
        rest = smaller.into_iter().filter(|(x, y)| x < y).collect();
    }
    p.days = rest;
    p.days.sort_unstable();
    // The edges' hours: facts in the period before `a` are added, facts
    // in `a`'s day before the period are taken away; likewise at the end.
    for (edge, aligned, inside) in [(start, a, 1), (end, b, -1)] {
        match edge.cmp(&aligned) {
            std::cmp::Ordering::Less => p.slivers.push(((edge, aligned), inside)),
            std::cmp::Ordering::Greater => p.slivers.push(((aligned, edge), -inside)),
            std::cmp::Ordering::Equal => {}
        }
    }
    p
}

impl SqlRepository {
    /// Every aggregate of `scope`, read in one snapshot.
    pub(super) async fn aggregates(
        &self,
        tenant: &Tenant,
        scope: &Scope,
    ) -> Result<Aggregates, Error> {
        let reader = &self.db.reader;
        let txn = match reader.get_database_backend() {
            // One statement's snapshot for the whole report.
            DatabaseBackend::Postgres => {
                reader
                    .begin_with_config(
                        Some(IsolationLevel::RepeatableRead),
                        Some(AccessMode::ReadOnly),
                    )
                    .await
            }
            // WAL: a read transaction keeps the snapshot of its first read.
            _ => reader.begin().await,
        }
        .map_err(db_err)?;
        if reader.get_database_backend() == DatabaseBackend::Postgres {
            // A report grouped by agent groups hundreds of thousands of
            // (agent, KPI, bucket) keys: past the default 4 MB the hash
            // aggregate spills to disk. For this transaction only.
            txn.execute_unprepared(&format!("SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
                .await
                .map_err(db_err)?;
        }
        let (start, end) = (micros(scope.bounds.start), micros(scope.bounds.end));
        let mut net = Net::default();
        if scope.inboxes.is_empty() && scope.channels.is_empty() && rolled_up_by(scope.group_by) {
            let p = plan(start, end);
            for (unit, range) in p.rollups {
                net.add(rolled_up(&txn, tenant, scope, unit, range).await?, 1);
            }
            let days = p.days.into_iter().map(|range| (range, 1));
            for (range, sign) in days.chain(p.slivers) {
                net.add(from_facts(&txn, tenant, scope, range).await?, sign);
            }
        } else {
            net.add(from_facts(&txn, tenant, scope, (start, end)).await?, 1);
        }
        txn.commit().await.map_err(db_err)?;
        Ok(net.into_aggregates())
    }
}

/// The aggregates of the `unit` rollups starting in `[start, end)`.
async fn rolled_up<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    scope: &Scope,
    unit: Unit,
    (start, end): (i64, i64),
) -> Result<Aggregates, Error> {
    let mut q = Sql::new(conn.get_database_backend());
    let units = format!(
        "unit = {} AND unit_start >= {} AND unit_start < {}",
        q.bind(unit.as_str()),
        q.bind(start),
        q.bind(end)
    );
    // A reopen's delay decides it against the window here, so reopens
    // fold into one row per group.
    let reopen = q.bind(REOPEN);
    let text = format!(
        "SELECT group_key AS k, measure AS m, label AS l, \
         CASE WHEN measure = {reopen} THEN 0 ELSE bucket END AS b, \
         CAST(SUM(facts) AS BIGINT) AS n, CAST(SUM(seconds) AS BIGINT) AS s, \
         CAST(SUM(met) AS BIGINT) AS met, CAST(SUM(breached) AS BIGINT) AS breached \
         FROM conv_metric_rollups \
         WHERE tenant = {tenant} AND group_kind = {kind} AND ({units}) \
         AND NOT (measure = {reopen} AND bucket >= {window}) \
         GROUP BY group_key, measure, label, CASE WHEN measure = {reopen} THEN 0 ELSE bucket END",
        tenant = q.bind(tenant.as_str()),
        kind = q.bind(scope.group_by.as_str()),
        window = q.bind(scope.fcr_window_secs.saturating_mul(1_000_000)),
    );
    let mut agg = Aggregates::default();
    for r in conn
        .query_all_raw(q.statement(text))
        .await
        .map_err(db_err)?
    {
        let key: String = get(&r, "k").map_err(db_err)?;
        let measure: String = get(&r, "m").map_err(db_err)?;
        let label: String = get(&r, "l").map_err(db_err)?;
        let n = get_sum(&r, "n").map_err(db_err)?;
        let met = get_sum(&r, "met").map_err(db_err)?;
        match measure.as_str() {
            FCR => agg.fcr.push(RateCount {
                key,
                count: met,
                total: n,
            }),
            REOPEN => agg.fcr.push(RateCount {
                key,
                count: -n,
                total: 0,
            }),
            PROMISE => agg.promises.push(RateCount {
                key,
                count: met,
                total: n,
            }),
            m => {
                if let Some(dimension) = VolumeDimension::from_str_opt(m) {
                    agg.volume.push(VolumeCount {
                        key,
                        dimension,
                        value: label,
                        count: n,
                    });
                } else if let Some(kpi) = Kpi::from_str_opt(m) {
                    agg.buckets.push(BucketCount {
                        key,
                        kpi,
                        business: label == BUSINESS,
                        bucket: get(&r, "b").map_err(db_err)?,
                        count: n,
                        sum: get_sum(&r, "s").map_err(db_err)?,
                        met,
                        breached: get_sum(&r, "breached").map_err(db_err)?,
                    });
                }
            }
        }
    }
    Ok(agg)
}

/// The aggregates of the facts stopped in `range`.
async fn from_facts<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    scope: &Scope,
    range: (i64, i64),
) -> Result<Aggregates, Error> {
    Ok(Aggregates {
        buckets: buckets(conn, tenant, scope, range).await?,
        fcr: fcr(conn, tenant, scope, range).await?,
        promises: promise_rates(conn, tenant, scope, range).await?,
        volume: volume(conn, tenant, scope, range).await?,
    })
}

async fn rows<C: ConnectionTrait>(
    conn: &C,
    q: Sql,
    text: String,
) -> Result<Vec<QueryResult>, Error> {
    conn.query_all_raw(q.statement(text)).await.map_err(db_err)
}

/// The duration buckets of every duration KPI, calendar and business.
async fn buckets<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    scope: &Scope,
    range: (i64, i64),
) -> Result<Vec<BucketCount>, Error> {
    use FactMetric as M;
    let k = key(scope.group_by);
    // Across reopens: a resolution's cycles so far summed (a point
    // look-up of the key for the few later cycles only).
    let total = |col: &str| {
        format!(
            "CASE WHEN f.cycle = 0 THEN f.{col} ELSE CAST((SELECT SUM(p.{col}) FROM {FACTS} p \
             WHERE p.tenant = f.tenant AND p.conversation_id = f.conversation_id \
             AND p.metric = 'resolution' AND p.cycle <= f.cycle) AS BIGINT) END"
        )
    };
    let mut out = Vec::new();
    for business in [false, true] {
        let col = if business {
            "business_seconds"
        } else {
            "calendar_seconds"
        };
        let mut q = Sql::new(conn.get_database_backend());
        let measured = filter(
            &mut q,
            tenant,
            scope,
            range,
            &[
                M::FirstResponse,
                M::NextResponse,
                M::PeriodicUpdate,
                M::Resolution,
                M::Handle,
            ],
        );
        let resolutions = filter(&mut q, tenant, scope, range, &[M::Resolution]);
        let text = format!(
            "SELECT k, m, {bucket} AS b, COUNT(*) AS n, CAST(SUM(v) AS BIGINT) AS s, \
             CAST(SUM(CASE WHEN ok THEN 1 ELSE 0 END) AS BIGINT) AS met, \
             CAST(SUM(CASE WHEN NOT ok THEN 1 ELSE 0 END) AS BIGINT) AS breached \
             FROM (SELECT {k} AS k, f.metric AS m, f.{col} AS v, f.met AS ok \
                   FROM {FACTS} f WHERE {measured} \
                   UNION ALL SELECT {k} AS k, 'resolution_total' AS m, {total} AS v, f.met AS ok \
                   FROM {FACTS} f WHERE {resolutions}) t \
             GROUP BY k, m, {bucket}",
            bucket = bucket_sql("v"),
            total = total(col),
        );
        for r in rows(conn, q, text).await? {
            let m: String = get(&r, "m").map_err(db_err)?;
            let Some(kpi) = Kpi::from_str_opt(&m) else {
                continue;
            };
            out.push(BucketCount {
                key: get(&r, "k").map_err(db_err)?,
                kpi,
                business,
                bucket: get(&r, "b").map_err(db_err)?,
                count: get(&r, "n").map_err(db_err)?,
                sum: get(&r, "s").map_err(db_err)?,
                met: get_sum(&r, "met").map_err(db_err)?,
                breached: get_sum(&r, "breached").map_err(db_err)?,
            });
        }
    }
    Ok(out)
}

/// First-contact resolution: first resolutions (cycle 0) not resolved by
/// automation; of those, answered by one human agent and not reopened
/// within the window.
async fn fcr<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    scope: &Scope,
    range: (i64, i64),
) -> Result<Vec<RateCount>, Error> {
    let mut q = Sql::new(conn.get_database_backend());
    let window = q.bind(scope.fcr_window_secs.saturating_mul(1_000_000));
    let filter = filter(&mut q, tenant, scope, range, &[FactMetric::Resolution]);
    let text = format!(
        "SELECT {k} AS k, COUNT(*) AS total, \
         CAST(SUM(CASE WHEN f.human_agents = 1 AND NOT EXISTS (SELECT 1 FROM {FACTS} r \
           WHERE r.tenant = f.tenant AND r.conversation_id = f.conversation_id \
           AND r.metric = 'reopen' AND r.cycle = 1 AND r.start_time < f.stop_time + {window}) \
         THEN 1 ELSE 0 END) AS BIGINT) AS n \
         FROM {FACTS} f WHERE {filter} AND f.cycle = 0 AND (f.auto IS NULL OR NOT f.auto) \
         GROUP BY {k}",
        k = key(scope.group_by),
    );
    rates(conn, q, text).await
}

/// Promises kept on time among those kept or broken.
async fn promise_rates<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    scope: &Scope,
    range: (i64, i64),
) -> Result<Vec<RateCount>, Error> {
    let mut q = Sql::new(conn.get_database_backend());
    let filter = filter(&mut q, tenant, scope, range, &[FactMetric::Promise]);
    let text = format!(
        "SELECT {k} AS k, COUNT(*) AS total, \
         CAST(SUM(CASE WHEN f.met THEN 1 ELSE 0 END) AS BIGINT) AS n \
         FROM {FACTS} f WHERE {filter} GROUP BY {k}",
        k = key(scope.group_by),
    );
    rates(conn, q, text).await
}

async fn rates<C: ConnectionTrait>(
    conn: &C,
    q: Sql,
    text: String,
) -> Result<Vec<RateCount>, Error> {
    rows(conn, q, text)
        .await?
        .iter()
        .map(|r| {
            Ok(RateCount {
                key: get(r, "k")?,
                count: get_sum(r, "n")?,
                total: get(r, "total")?,
            })
        })
        .collect::<Result<_, DbErr>>()
        .map_err(db_err)
}

/// Conversations created, by channel and by interaction type.
async fn volume<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    scope: &Scope,
    range: (i64, i64),
) -> Result<Vec<VolumeCount>, Error> {
    let mut q = Sql::new(conn.get_database_backend());
    let filter = filter(&mut q, tenant, scope, range, &[FactMetric::Created]);
    let text = format!(
        "SELECT {k} AS k, f.channel AS c, f.interaction_type AS t, COUNT(*) AS n \
         FROM {FACTS} f WHERE {filter} GROUP BY {k}, f.channel, f.interaction_type",
        k = key(scope.group_by),
    );
    let mut out = Vec::new();
    for r in rows(conn, q, text).await? {
        let key: String = get(&r, "k").map_err(db_err)?;
        let count: i64 = get(&r, "n").map_err(db_err)?;
        for (dimension, col) in [
            (VolumeDimension::Channel, "c"),
            (VolumeDimension::InteractionType, "t"),
        ] {
            out.push(VolumeCount {
                key: key.clone(),
                dimension,
                value: get(&r, col).map_err(db_err)?,
                count,
            });
        }
    }
    Ok(out)
}

// ---- Writing facts and their rollups ----

/// The rollups' unit: a UTC month. Days are not rolled up: for a year of
/// a million conversations, a day's facts are fewer than its rollup rows
/// per agent would be, so the days a period holds besides whole months
/// (a week; a day) are read from the facts.
const FCR: &str = "fcr";
const REOPEN: &str = "fcr_reopen";
const PROMISE: &str = "promise";
const CALENDAR: &str = "calendar";
const BUSINESS: &str = "business";
/// Rows of the measures every conversation adds to (volume, first-contact
/// resolution, promises) spread over this many shards.
const SHARDS: u32 = 8;

/// The rollup rows of some facts, summed by key before they are written:
/// a change writes its facts' rollups in one statement, last of the rows
/// it locks (see [`Rollups::write`]).
#[derive(Default)]
pub(super) struct Rollups(BTreeMap<RollupKey, [i64; 4]>);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RollupKey {
    group_kind: &'static str,
    unit: &'static str,
    unit_start: i64,
    group_key: String,
    measure: String,
    label: String,
    bucket: i64,
    shard: i16,
}

/// What one row adds.
struct Add<'a> {
    measure: &'a str,
    label: &'a str,
    bucket: i64,
    values: [i64; 4],
    sharded: bool,
}

fn shard_of(conversation: &str) -> i16 {
    let h = conversation
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    i16::try_from(h % SHARDS).unwrap_or(0)
}

/// A row of a count (and a met count) every conversation adds to.
fn once<'a>(measure: &'a str, label: &'a str, met: i64) -> Add<'a> {
    Add {
        measure,
        label,
        bucket: 0,
        values: [1, 0, met, 0],
        sharded: true,
    }
}

fn met_breached(met: Option<bool>) -> (i64, i64) {
    (i64::from(met == Some(true)), i64::from(met == Some(false)))
}

impl Rollups {
    /// Adds `add` for `at` (µs) under every grouping of `dims`.
    fn add(&mut self, dims: &metric_facts::Model, at: i64, add: &Add<'_>) {
        let shard = if add.sharded {
            shard_of(&dims.conversation_id)
        } else {
            0
        };
        let groups = [
            (GroupBy::None, ""),
            (GroupBy::Agent, dims.agent.as_str()),
            (GroupBy::Team, dims.team.as_str()),
            (GroupBy::Channel, dims.channel.as_str()),
            (GroupBy::Inbox, dims.inbox_id.as_str()),
            (GroupBy::Priority, dims.priority.as_str()),
        ];
        for unit in [Unit::Month, Unit::Year] {
            let unit_start = unit.start(at);
            for (kind, key) in groups.into_iter().filter(|(g, _)| rolled_up_by(*g)) {
                let e = self
                    .0
                    .entry(RollupKey {
                        group_kind: kind.as_str(),
                        unit: unit.as_str(),
                        unit_start,
                        group_key: key.to_owned(),
                        measure: add.measure.to_owned(),
                        label: add.label.to_owned(),
                        bucket: add.bucket,
                        shard,
                    })
                    .or_default();
                for (i, v) in add.values.iter().enumerate() {
                    e[i] += v;
                }
            }
        }
    }

    /// Adds fact `f`: `prior`, the calendar and business seconds of its
    /// conversation's earlier resolution cycles (a resolution's value
    /// across reopens); `first`, the conversation's first resolution (a
    /// reopen undoes it as a first-contact resolution).
    fn fact(
        &mut self,
        f: &metric_facts::Model,
        prior: (i64, i64),
        first: Option<&metric_facts::Model>,
    ) {
        let (met, breached) = met_breached(f.met);
        let duration = |rollups: &mut Self, measure: &str, cal: i64, biz: i64| {
            for (label, v) in [(CALENDAR, cal), (BUSINESS, biz)] {
                rollups.add(
                    f,
                    f.stop_time,
                    &Add {
                        measure,
                        label,
                        bucket: bucket(v),
                        values: [1, v, met, breached],
                        sharded: false,
                    },
                );
            }
        };
        match FactMetric::from_str_opt(&f.metric) {
            Some(
                m @ (FactMetric::FirstResponse
                | FactMetric::NextResponse
                | FactMetric::PeriodicUpdate
                | FactMetric::Handle),
            ) => duration(self, m.as_str(), f.calendar_seconds, f.business_seconds),
            Some(FactMetric::Resolution) => {
                duration(
                    self,
                    Kpi::Resolution.as_str(),
                    f.calendar_seconds,
                    f.business_seconds,
                );
                duration(
                    self,
                    Kpi::ResolutionAcrossReopens.as_str(),
                    prior.0 + f.calendar_seconds,
                    prior.1 + f.business_seconds,
                );
                if f.cycle == 0 && f.auto != Some(true) {
                    let one = i64::from(f.human_agents == Some(1));
                    self.add(f, f.stop_time, &once(FCR, "", one));
                }
            }
            Some(FactMetric::Reopen) => {
                // Counted against the first resolution, where it undoes a
                // first-contact resolution within the window.
                if let Some(r) = first
                    .filter(|r| f.cycle == 1 && r.auto != Some(true) && r.human_agents == Some(1))
                {
                    let delay = f.start_time - r.stop_time;
                    self.add(
                        r,
                        r.stop_time,
                        &Add {
                            bucket: delay,
                            ..once(REOPEN, "", 0)
                        },
                    );
                }
            }
            Some(FactMetric::Created) => {
                self.add(
                    f,
                    f.stop_time,
                    &once(VolumeDimension::Channel.as_str(), &f.channel, 0),
                );
                self.add(
                    f,
                    f.stop_time,
                    &once(
                        VolumeDimension::InteractionType.as_str(),
                        &f.interaction_type,
                        0,
                    ),
                );
            }
            Some(FactMetric::Promise) => {
                self.add(f, f.stop_time, &once(PROMISE, "", met));
            }
            None => {}
        }
    }

    /// Adds the rows, each key once, in key order: concurrent writers
    /// lock shared rows in one order and never deadlock.
    pub(super) async fn write<C: ConnectionTrait>(
        self,
        conn: &C,
        tenant: &Tenant,
    ) -> Result<(), DbErr> {
        let rows: Vec<_> = self
            .0
            .into_iter()
            .map(
                |(k, [facts, seconds, met, breached])| metric_rollups::Model {
                    tenant: tenant.to_string(),
                    group_kind: k.group_kind.to_owned(),
                    unit: k.unit.to_owned(),
                    unit_start: k.unit_start,
                    group_key: k.group_key,
                    measure: k.measure,
                    label: k.label,
                    bucket: k.bucket,
                    shard: k.shard,
                    facts,
                    seconds,
                    met,
                    breached,
                },
            )
            .collect();
        use metric_rollups::Column as R;
        let mut conflict = OnConflict::columns([
            R::Tenant,
            R::GroupKind,
            R::Unit,
            R::UnitStart,
            R::GroupKey,
            R::Measure,
            R::Label,
            R::Bucket,
            R::Shard,
        ]);
        for (target, col) in [
            (R::Facts, "facts"),
            (R::Seconds, "seconds"),
            (R::Met, "met"),
            (R::Breached, "breached"),
        ] {
            conflict.value(
                target,
                Expr::cust(format!("conv_metric_rollups.{col} + excluded.{col}")),
            );
        }
        // Below the bound-value limits of both databases.
        for chunk in rows.chunks(2000) {
            metric_rollups::Entity::insert_many(
                chunk
                    .iter()
                    .cloned()
                    .map(IntoActiveModel::into_active_model),
            )
            .on_conflict(conflict.clone())
            .exec_without_returning(conn)
            .await?;
        }
        Ok(())
    }
}

/// A fact's key: written once.
fn fact_key() -> OnConflict {
    OnConflict::columns([
        metric_facts::Column::Tenant,
        metric_facts::Column::ConversationId,
        metric_facts::Column::Metric,
        metric_facts::Column::Cycle,
    ])
    .do_nothing()
    .to_owned()
}

/// The conversation's earlier resolution cycles of `f`, summed.
async fn prior_resolutions<C: ConnectionTrait>(
    conn: &C,
    f: &metric_facts::Model,
) -> Result<(i64, i64), DbErr> {
    let rows = metric_facts::Entity::find()
        .filter(metric_facts::Column::Tenant.eq(&f.tenant))
        .filter(metric_facts::Column::ConversationId.eq(&f.conversation_id))
        .filter(metric_facts::Column::Metric.eq(FactMetric::Resolution.as_str()))
        .filter(metric_facts::Column::Cycle.lt(f.cycle))
        .all(conn)
        .await?;
    Ok(rows.iter().fold((0, 0), |(c, b), r| {
        (c + r.calendar_seconds, b + r.business_seconds)
    }))
}

/// The conversation's first resolution of `f`.
async fn first_resolution<C: ConnectionTrait>(
    conn: &C,
    f: &metric_facts::Model,
) -> Result<Option<metric_facts::Model>, DbErr> {
    metric_facts::Entity::find()
        .filter(metric_facts::Column::Tenant.eq(&f.tenant))
        .filter(metric_facts::Column::ConversationId.eq(&f.conversation_id))
        .filter(metric_facts::Column::Metric.eq(FactMetric::Resolution.as_str()))
        .filter(metric_facts::Column::Cycle.eq(0))
        .one(conn)
        .await
}

/// Writes metric fact `f` unless its key (conversation, metric, cycle) is
/// stored — a fact is written once, so a replay changes nothing — and,
/// when written, adds it to `rollups`, which the transaction writes.
pub(super) async fn record<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    f: &MetricFact,
    rollups: &mut Rollups,
) -> Result<(), DbErr> {
    let row = metric_fact_model(tenant, f);
    let written = metric_facts::Entity::insert(row.clone().into_active_model())
        .on_conflict(fact_key())
        .exec_without_returning(conn)
        .await?;
    if written == 0 {
        return Ok(());
    }
    let prior = match f.metric {
        FactMetric::Resolution if f.cycle > 0 => prior_resolutions(conn, &row).await?,
        _ => (0, 0),
    };
    let first = match f.metric {
        FactMetric::Reopen if f.cycle == 1 => first_resolution(conn, &row).await?,
        _ => None,
    };
    rollups.fact(&row, prior, first.as_ref());
    Ok(())
}

/// The rollups of the facts of whole conversations, each conversation's
/// facts together.
fn rollups_of(facts: &[metric_facts::Model]) -> Rollups {
    let mut rollups = Rollups::default();
    let mut by_conversation: BTreeMap<&str, Vec<&metric_facts::Model>> = BTreeMap::new();
    for f in facts {
        by_conversation
            .entry(&f.conversation_id)
            .or_default()
            .push(f);
    }
    for group in by_conversation.values() {
        let first = group
            .iter()
            .find(|f| f.metric == FactMetric::Resolution.as_str() && f.cycle == 0)
            .copied();
        for f in group {
            let prior = group
                .iter()
                .filter(|p| p.metric == FactMetric::Resolution.as_str() && p.cycle < f.cycle)
                .fold((0, 0), |(c, b), p| {
                    (c + p.calendar_seconds, b + p.business_seconds)
                });
            let prior = if f.metric == FactMetric::Resolution.as_str() {
                prior
            } else {
                (0, 0)
            };
            rollups.fact(f, prior, first);
        }
    }
    rollups
}

/// Bulk-writes `facts` of `tenant` (benchmark seeds: `crate::seed`) with
/// their rollups, a thousand rows per statement. Every conversation's
/// facts come in one call, and none is stored yet: a fact stored already
/// is refused rather than counted twice.
pub(crate) async fn insert_facts(
    db: &Db,
    tenant: &Tenant,
    facts: &[MetricFact],
) -> Result<(), DbErr> {
    let rows: Vec<_> = facts.iter().map(|f| metric_fact_model(tenant, f)).collect();
    let txn = db.writer.begin().await?;
    for chunk in rows.chunks(1000) {
        metric_facts::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    rollups_of(&rows).write(&txn, tenant).await?;
    txn.commit().await
}

/// Rebuilds every tenant's rollups from the facts when facts are stored
/// and no rollups are: the first start after migration 000010 on a
/// database that has facts. A page of whole conversations at a time, in
/// key order.
pub(crate) async fn ensure_rollups(db: &Db) -> Result<(), DbErr> {
    use metric_facts::Column as F;
    let txn = db.writer.begin().await?;
    if db.backend() == DatabaseBackend::Postgres {
        // Replicas starting together: one rebuilds, the others then find
        // its rollups. Writers of new facts wait to add theirs.
        txn.execute_unprepared("LOCK TABLE conv_metric_rollups IN SHARE ROW EXCLUSIVE MODE")
            .await?;
    }
    let has_rollups = metric_rollups::Entity::find().one(&txn).await?.is_some();
    if has_rollups || metric_facts::Entity::find().one(&txn).await?.is_none() {
        return txn.commit().await;
    }
    let mut after: Option<(String, String)> = None;
    loop {
        let mut keys = metric_facts::Entity::find()
            .select_only()
            .column(F::Tenant)
            .column(F::ConversationId)
            .distinct()
            .order_by_asc(F::Tenant)
            .order_by_asc(F::ConversationId)
            .limit(1000);
        if let Some((t, c)) = after.clone() {
            keys = keys.filter(
                sea_orm::Condition::any().add(F::Tenant.gt(t.clone())).add(
                    sea_orm::Condition::all()
                        .add(F::Tenant.eq(t))
                        .add(F::ConversationId.gt(c)),
                ),
            );
        }
        let keys: Vec<(String, String)> = keys.into_tuple().all(&txn).await?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        let mut by_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (t, c) in keys {
            by_tenant.entry(t).or_default().push(c);
        }
        for (tenant, conversations) in by_tenant {
            let facts = metric_facts::Entity::find()
                .filter(F::Tenant.eq(&tenant))
                .filter(F::ConversationId.is_in(conversations))
                .all(&txn)
                .await?;
            let tenant = Tenant::parse(&tenant).map_err(|e| DbErr::Custom(e.to_owned()))?;
            rollups_of(&facts).write(&txn, &tenant).await?;
        }
        after = Some(last);
    }
    txn.commit().await
}

/// After a bulk load: fresh statistics, and on PostgreSQL a visibility map
/// so the covering index answers without reading the table.
pub(crate) async fn settle_facts(db: &Db) -> Result<(), DbErr> {
    let sql: &[&str] = match db.backend() {
        DatabaseBackend::Postgres => &[
            "VACUUM ANALYZE conv_metric_facts",
            "VACUUM ANALYZE conv_metric_rollups",
        ],
        _ => &["ANALYZE conv_metric_facts", "ANALYZE conv_metric_rollups"],
    };
    for s in sql {
        db.writer.execute_unprepared(s).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn t(s: &str) -> i64 {
        micros(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
    }

    #[test]
    fn a_berlin_year_is_a_utc_year_and_two_slivers() {
        let p = plan(t("2025-12-31T23:00:00Z"), t("2026-12-31T23:00:00Z"));
        assert_eq!(
            p.rollups,
            [(
                Unit::Year,
                (t("2026-01-01T00:00:00Z"), t("2027-01-01T00:00:00Z"))
            )]
        );
        assert!(p.days.is_empty());
        assert_eq!(
            p.slivers,
            vec![
                ((t("2025-12-31T23:00:00Z"), t("2026-01-01T00:00:00Z")), 1),
                ((t("2026-12-31T23:00:00Z"), t("2027-01-01T00:00:00Z")), -1),
            ]
        );
    }

    #[test]
    fn a_new_york_week_is_utc_days_minus_and_plus_its_hours() {
        // Monday 30 November 2026 00:00 in New York is 05:00 UTC.
        let p = plan(t("2026-11-30T05:00:00Z"), t("2026-12-07T05:00:00Z"));
        assert!(p.rollups.is_empty());
        assert_eq!(
            p.days,
            vec![(t("2026-11-30T00:00:00Z"), t("2026-12-07T00:00:00Z"))]
        );
        assert_eq!(
            p.slivers,
            vec![
                ((t("2026-11-30T00:00:00Z"), t("2026-11-30T05:00:00Z")), -1),
                ((t("2026-12-07T00:00:00Z"), t("2026-12-07T05:00:00Z")), 1),
            ]
        );
    }

    #[test]
    fn a_quarter_across_months_reads_months_and_days_around_them() {
        let p = plan(t("2026-09-15T00:00:00Z"), t("2026-12-20T00:00:00Z"));
        assert_eq!(
            p.rollups,
            [(
                Unit::Month,
                (t("2026-10-01T00:00:00Z"), t("2026-12-01T00:00:00Z"))
            )]
        );
        assert_eq!(
            p.days,
            vec![
                (t("2026-09-15T00:00:00Z"), t("2026-10-01T00:00:00Z")),
                (t("2026-12-01T00:00:00Z"), t("2026-12-20T00:00:00Z")),
            ]
        );
        assert!(p.slivers.is_empty());
    }

    #[test]
    fn a_range_across_years_reads_the_whole_year_then_months_then_days() {
        let p = plan(t("2025-11-15T00:00:00Z"), t("2027-02-10T00:00:00Z"));
        assert_eq!(
            p.rollups,
            [
                (
                    Unit::Year,
                    (t("2026-01-01T00:00:00Z"), t("2027-01-01T00:00:00Z"))
                ),
                (
                    Unit::Month,
                    (t("2025-12-01T00:00:00Z"), t("2026-01-01T00:00:00Z"))
                ),
                (
                    Unit::Month,
                    (t("2027-01-01T00:00:00Z"), t("2027-02-01T00:00:00Z"))
                ),
            ]
        );
        assert_eq!(
            p.days,
            [
                (t("2025-11-15T00:00:00Z"), t("2025-12-01T00:00:00Z")),
                (t("2027-02-01T00:00:00Z"), t("2027-02-10T00:00:00Z")),
            ]
        );
        assert!(p.slivers.is_empty());
    }

    #[test]
    fn a_range_shorter_than_a_day_reads_facts_only() {
        let p = plan(t("2026-12-01T03:00:00Z"), t("2026-12-01T09:00:00Z"));
        assert_eq!(
            p,
            Plan {
                slivers: vec![((t("2026-12-01T03:00:00Z"), t("2026-12-01T09:00:00Z")), 1)],
                ..Plan::default()
            }
        );
    }

    #[test]
    fn shards_spread_conversations() {
        let shards: std::collections::BTreeSet<_> = (0..64)
            .map(|i| shard_of(&format!("0190a0b0-0000-7000-8000-{i:012}")))
            .collect();
        assert!(shards.len() > 4, "{shards:?}");
        assert!(shards.iter().all(|s| (0..8).contains(s)));
    }
}
