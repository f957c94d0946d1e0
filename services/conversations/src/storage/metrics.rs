//! KPI aggregates over `conv_metric_facts`, computed in SQL: counts, sums
//! and met counts with GROUP BY, and percentiles from a GROUP BY on each
//! value's 3-significant-digit bucket (`metrics::bucket_sql`), so a period
//! of a million conversations returns a few thousand rows, never the
//! facts. Each query reads one metric's range of the tenant's covering
//! index `(tenant, metric, stop_time, …)` (migration 000008).
//!
//! Values are inlined as SQL literals: every one is a validated tenant, a
//! UUID, an enum's stored name or an integer, and [`lit`] escapes quotes
//! besides — one text for SQLite and PostgreSQL, whose placeholders differ.
use rapport_store::{Db, micros};
use sea_orm::{
    ConnectionTrait, DbErr, EntityTrait, QueryResult, Statement, TransactionTrait,
    sea_query::OnConflict,
};

use super::{
    SqlRepository,
    entities::metric_facts,
    rows::{db_err, metric_fact_row},
};
use crate::domain::{
    Error, Tenant,
    metrics::{
        Aggregates, BucketCount, FactMetric, GroupBy, Kpi, RateCount, Scope, VolumeCount,
        bucket_sql,
    },
    repository::MetricFact,
};

const FACTS: &str = "conv_metric_facts";

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.map(|s| lit(&s)).collect::<Vec<_>>().join(", ")
}

/// The group key column of `f`; the tenant (constant) when not grouped.
fn key(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::None => "f.tenant",
        GroupBy::Agent => "f.agent",
        GroupBy::Team => "f.team",
        GroupBy::Channel => "f.channel",
        GroupBy::Inbox => "f.inbox_id",
        GroupBy::Priority => "f.priority",
    }
}

/// `f`'s facts of `metrics` in the tenant's scope.
fn filter(tenant: &Tenant, scope: &Scope, metrics: &[FactMetric]) -> String {
    let mut sql = format!(
        "f.tenant = {} AND f.metric IN ({}) AND f.stop_time >= {} AND f.stop_time < {}",
        lit(tenant.as_str()),
        list(metrics.iter().map(|m| m.as_str().to_owned())),
        micros(scope.bounds.start),
        micros(scope.bounds.end),
    );
    if !scope.inboxes.is_empty() {
        sql.push_str(&format!(
            " AND f.inbox_id IN ({})",
            list(scope.inboxes.iter().map(ToString::to_string))
        ));
    }
    if !scope.channels.is_empty() {
        sql.push_str(&format!(
            " AND f.channel IN ({})",
            list(scope.channels.iter().map(|c| c.as_str().to_owned()))
        ));
    }
    sql
}

fn get<T: sea_orm::TryGetable>(r: &QueryResult, col: &str) -> Result<T, Error> {
    r.try_get("", col).map_err(db_err)
}

impl SqlRepository {
    async fn rows(&self, sql: String) -> Result<Vec<QueryResult>, Error> {
        let backend = self.db.reader.get_database_backend();
        self.db
            .reader
            .query_all_raw(Statement::from_string(backend, sql))
            .await
            .map_err(db_err)
    }

    /// The duration buckets of every duration KPI, calendar and business.
    async fn buckets(&self, tenant: &Tenant, scope: &Scope) -> Result<Vec<BucketCount>, Error> {
        use FactMetric as M;
        let k = key(scope.group_by);
        let measured = filter(
            tenant,
            scope,
            &[
                M::FirstResponse,
                M::NextResponse,
                M::PeriodicUpdate,
                M::Resolution,
                M::Handle,
            ],
        );
        let resolutions = filter(tenant, scope, &[M::Resolution]);
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
            let sql = format!(
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
            for r in self.rows(sql).await? {
                let m: String = get(&r, "m")?;
                let Some(kpi) = Kpi::from_str_opt(&m) else {
                    continue;
                };
                out.push(BucketCount {
                    key: get(&r, "k")?,
                    kpi,
                    business,
                    bucket: get(&r, "b")?,
                    count: get(&r, "n")?,
                    sum: get(&r, "s")?,
                    met: get::<Option<i64>>(&r, "met")?.unwrap_or(0),
                    breached: get::<Option<i64>>(&r, "breached")?.unwrap_or(0),
                });
            }
        }
        Ok(out)
    }

    /// First-contact resolution: first resolutions (cycle 0) not resolved
    /// by automation; of those, answered by one human agent and not
    /// reopened within the window.
    async fn fcr(&self, tenant: &Tenant, scope: &Scope) -> Result<Vec<RateCount>, Error> {
        let window = scope.fcr_window_secs.saturating_mul(1_000_000);
        let sql = format!(
            "SELECT {k} AS k, COUNT(*) AS total, \
             CAST(SUM(CASE WHEN f.human_agents = 1 AND NOT EXISTS (SELECT 1 FROM {FACTS} r \
               WHERE r.tenant = f.tenant AND r.conversation_id = f.conversation_id \
               AND r.metric = 'reopen' AND r.cycle = 1 AND r.start_time < f.stop_time + {window}) \
             THEN 1 ELSE 0 END) AS BIGINT) AS n \
             FROM {FACTS} f WHERE {filter} AND f.cycle = 0 AND (f.auto IS NULL OR NOT f.auto) \
             GROUP BY {k}",
            k = key(scope.group_by),
            filter = filter(tenant, scope, &[FactMetric::Resolution]),
        );
        self.rates(sql).await
    }

    /// Promises kept on time among those kept or broken.
    async fn promise_rates(&self, tenant: &Tenant, scope: &Scope) -> Result<Vec<RateCount>, Error> {
        let sql = format!(
            "SELECT {k} AS k, COUNT(*) AS total, \
             CAST(SUM(CASE WHEN f.met THEN 1 ELSE 0 END) AS BIGINT) AS n \
             FROM {FACTS} f WHERE {filter} GROUP BY {k}",
            k = key(scope.group_by),
            filter = filter(tenant, scope, &[FactMetric::Promise]),
        );
        self.rates(sql).await
    }

    async fn rates(&self, sql: String) -> Result<Vec<RateCount>, Error> {
        self.rows(sql)
            .await?
            .iter()
            .map(|r| {
                Ok(RateCount {
                    key: get(r, "k")?,
                    count: get::<Option<i64>>(r, "n")?.unwrap_or(0),
                    total: get(r, "total")?,
                })
            })
            .collect()
    }

    /// Conversations created, by channel and interaction type.
    async fn volume(&self, tenant: &Tenant, scope: &Scope) -> Result<Vec<VolumeCount>, Error> {
        let sql = format!(
            "SELECT {k} AS k, f.channel AS c, f.interaction_type AS t, COUNT(*) AS n \
             FROM {FACTS} f WHERE {filter} GROUP BY {k}, f.channel, f.interaction_type",
            k = key(scope.group_by),
            filter = filter(tenant, scope, &[FactMetric::Created]),
        );
        self.rows(sql)
            .await?
            .iter()
            .map(|r| {
                Ok(VolumeCount {
                    key: get(r, "k")?,
                    channel: get(r, "c")?,
                    interaction_type: get(r, "t")?,
                    count: get(r, "n")?,
                })
            })
            .collect()
    }

    /// Every aggregate of `scope`.
    pub(super) async fn aggregates(
        &self,
        tenant: &Tenant,
        scope: &Scope,
    ) -> Result<Aggregates, Error> {
        let (buckets, fcr, promises, volume) = tokio::try_join!(
            self.buckets(tenant, scope),
            self.fcr(tenant, scope),
            self.promise_rates(tenant, scope),
            self.volume(tenant, scope),
        )?;
        Ok(Aggregates {
            buckets,
            fcr,
            promises,
            volume,
        })
    }
}

/// Bulk-writes `facts` of `tenant` (benchmark seeds: `crate::seed`), a
/// thousand rows per statement, each fact once by its key, as the change
/// that stops a clock writes it.
pub(crate) async fn insert_facts(
    db: &Db,
    tenant: &Tenant,
    facts: &[MetricFact],
) -> Result<(), DbErr> {
    let txn = db.writer.begin().await?;
    for chunk in facts.chunks(1000) {
        metric_facts::Entity::insert_many(chunk.iter().map(|f| metric_fact_row(tenant, f)))
            .on_conflict(
                OnConflict::columns([
                    metric_facts::Column::Tenant,
                    metric_facts::Column::ConversationId,
                    metric_facts::Column::Metric,
                    metric_facts::Column::Cycle,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await
}

/// After a bulk load: fresh statistics, and on PostgreSQL a visibility map
/// so the covering index answers without reading the table.
pub(crate) async fn settle_facts(db: &Db) -> Result<(), DbErr> {
    let sql = match db.backend() {
        sea_orm::DatabaseBackend::Postgres => "VACUUM ANALYZE conv_metric_facts",
        _ => "ANALYZE conv_metric_facts",
    };
    db.writer.execute_unprepared(sql).await.map(drop)
}
