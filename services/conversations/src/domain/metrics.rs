//! Interaction KPIs (`QueryInteractionMetrics`): what each KPI counts, the
//! periods in a time zone's calendar, the facts the fold adds for them
//! (handle time, reopens, conversations created, promise outcomes), and
//! the summary of the aggregates storage computes in SQL — means from
//! sums, nearest-rank percentiles from 3-significant-digit buckets.
//!
//! Every KPI comes from `conv_metric_facts` rows, written once per
//! (conversation, metric, cycle) by the change that produced them, so a
//! replay of a history writes the same rows and a report is recomputable.
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, LocalResult, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rapport_usecase::{Clock, str_enum};

use super::{
    error::Error,
    model::*,
    ports::Customers,
    promise::{Promise, PromiseState},
    repository::{MetricFact, Repository},
    service::Conversations,
    sla::Metric,
    sla_clock::{self, MetricClock},
};

/// What a metric fact measures: a stopped SLA clock, or one of the facts
/// the KPIs add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FactMetric {
    /// A first-response cycle.
    FirstResponse,
    /// A next-response cycle.
    NextResponse,
    /// A periodic-update cycle.
    PeriodicUpdate,
    /// A resolution cycle (with `auto` and the human agents who answered).
    Resolution,
    /// The handle time of a resolution cycle, written when it resolves.
    Handle,
    /// A reopen: the start of resolution cycle `cycle` (≥ 1).
    Reopen,
    /// The conversation was created (cycle 0; volume).
    Created,
    /// A promise was kept or broken (keyed by the promise's id; `met`:
    /// kept on time).
    Promise,
}

str_enum!(FactMetric {
    FirstResponse => "first_response",
    NextResponse => "next_response",
    PeriodicUpdate => "periodic_update",
    Resolution => "resolution",
    Handle => "handle",
    Reopen => "reopen",
    Created => "created",
    Promise => "promise",
});

impl From<Metric> for FactMetric {
    fn from(m: Metric) -> Self {
        match m {
            Metric::FirstResponse => Self::FirstResponse,
            Metric::NextResponse => Self::NextResponse,
            Metric::PeriodicUpdate => Self::PeriodicUpdate,
            Metric::Resolution => Self::Resolution,
        }
    }
}

/// A fact of `c` at `at` with its dimensions as they are now and nothing
/// measured.
fn fact_of(c: &Conversation, metric: FactMetric, cycle: u32, at: DateTime<Utc>) -> MetricFact {
    MetricFact {
        conversation: c.id,
        metric,
        cycle,
        start: at,
        stop: at,
        calendar_seconds: 0,
        business_seconds: 0,
        met: None,
        target_seconds: None,
        agent: c.assignee,
        team: c.team,
        channel: c.channels.last().copied(),
        inbox: c.inbox,
        priority: c.priority,
        interaction_type: c.interaction_type,
        policy: c.applied_sla.as_ref().map(|a| (a.policy, a.revision)),
        auto: None,
        human_agents: None,
        definition_version: sla_clock::DEFINITION_VERSION,
    }
}

/// The facts of `before` → `after` that are no stopped SLA clock: the
/// conversation's creation (no `before`) and a reopen (a new resolution
/// cycle). Written whether or not an SLA applies.
pub fn lifecycle_facts(before: Option<&Conversation>, after: &Conversation) -> Vec<MetricFact> {
    let Some(b) = before else {
        return vec![fact_of(after, FactMetric::Created, 0, after.create_time)];
    };
    let cycle = |c: &Conversation| c.sla.get(Metric::Resolution).map(|k| (k.cycle, k.start));
    match (cycle(b), cycle(after)) {
        (Some((old, _)), Some((new, start))) if new > old => {
            vec![fact_of(after, FactMetric::Reopen, new, start)]
        }
        _ => Vec::new(),
    }
}

/// The handle-time fact of `c`'s resolution cycle `clock`, stopped: the
/// calls' talk + hold + wrap-up when a call was logged in the cycle, else
/// the time OPEN and assigned to an agent (bot time before a hand-off
/// left out). Business seconds equal calendar seconds: it is work time.
pub fn handle_fact(c: &Conversation, clock: &MetricClock) -> MetricFact {
    let stop = clock.stop.map_or(clock.start, |(t, _)| t);
    let seconds = c.sla.work.handle_seconds(stop);
    MetricFact {
        start: clock.start,
        calendar_seconds: seconds,
        business_seconds: seconds,
        ..fact_of(c, FactMetric::Handle, clock.cycle, stop)
    }
}

/// The fact of promise `p` of conversation `c` once it is kept or broken
/// (`None` otherwise): keyed by the promise's id (its first outcome
/// stands, so a broken promise kept late stays not kept on time), `met`
/// = kept on time, the owner as the agent.
pub fn promise_fact(p: &Promise, c: &Conversation) -> Option<MetricFact> {
    let at = match p.state {
        PromiseState::Kept => p.break_time.or(p.keep_time)?,
        PromiseState::Broken => p.break_time?,
        _ => return None,
    };
    Some(MetricFact {
        conversation: ConversationId(p.id.0),
        start: p.create_time,
        met: Some(p.state == PromiseState::Kept && p.kept_on_time),
        agent: Some(p.owner),
        ..fact_of(c, FactMetric::Promise, 0, at)
    })
}

/// A period's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Midnight to midnight.
    Day,
    /// Monday 00:00 to Monday 00:00.
    Week,
    /// A calendar month.
    Month,
    /// January, April, July or October for three months.
    Quarter,
    /// A calendar year.
    Year,
}

str_enum!(Period { Day => "day", Week => "week", Month => "month", Quarter => "quarter", Year => "year" });

/// What rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    /// One row.
    #[default]
    None,
    /// The assignee when the fact was written.
    Agent,
    /// The team.
    Team,
    /// The latest channel.
    Channel,
    /// The inbox.
    Inbox,
    /// The priority.
    Priority,
}

str_enum!(GroupBy { None => "none", Agent => "agent", Team => "team", Channel => "channel", Inbox => "inbox", Priority => "priority" });

impl Period {
    /// The first day of the period holding `day`.
    fn first_day(self, day: NaiveDate) -> NaiveDate {
        let month = |m: u32| NaiveDate::from_ymd_opt(day.year(), m, 1).unwrap_or(day);
        match self {
            Period::Day => day,
            Period::Week => day - Days::new(u64::from(day.weekday().num_days_from_monday())),
            Period::Month => month(day.month()),
            Period::Quarter => month((day.month() - 1) / 3 * 3 + 1),
            Period::Year => month(1),
        }
    }

    /// The first day of the next period after the one starting `first`.
    fn next_day(self, first: NaiveDate) -> Option<NaiveDate> {
        match self {
            Period::Day => first.checked_add_days(Days::new(1)),
            Period::Week => first.checked_add_days(Days::new(7)),
            Period::Month => first.checked_add_months(Months::new(1)),
            Period::Quarter => first.checked_add_months(Months::new(3)),
            Period::Year => first.checked_add_months(Months::new(12)),
        }
    }
}

/// Midnight starting `day` in `zone`; in a zone whose clocks skip
/// midnight, the end of the gap (as calendars resolve wall times).
fn midnight(zone: Tz, day: NaiveDate) -> Option<DateTime<Utc>> {
    let mut wall = day.and_hms_opt(0, 0, 0)?;
    // Gaps are at most a few hours; walk by minutes to their end.
    for _ in 0..(24 * 60) {
        match zone.from_local_datetime(&wall) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                return Some(t.with_timezone(&Utc));
            }
            LocalResult::None => wall += chrono::Duration::minutes(1),
        }
    }
    None
}

/// `[start, end)` of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Start, inclusive.
    pub start: DateTime<Utc>,
    /// End, exclusive.
    pub end: DateTime<Utc>,
}

/// The `period` holding `at` in `zone`'s calendar and the one before it.
pub fn periods(period: Period, at: DateTime<Utc>, zone: Tz) -> Option<(Bounds, Bounds)> {
    let first = period.first_day(at.with_timezone(&zone).date_naive());
    let previous = period.first_day(first.pred_opt()?);
    let end = period.next_day(first)?;
    let bounds = |a: NaiveDate, b: NaiveDate| {
        Some(Bounds {
            start: midnight(zone, a)?,
            end: midnight(zone, b)?,
        })
    };
    Some((bounds(first, end)?, bounds(previous, first)?))
}

/// The 3-significant-digit bucket of `seconds`: exact below 1000 s, else
/// rounded down to three significant digits (< 1 % below the value).
/// [`bucket_sql`] computes the same in SQL.
pub fn bucket(seconds: i64) -> i64 {
    let mut step = 1;
    while seconds / step >= 1000 {
        step *= 10;
    }
    seconds / step * step
}

/// [`bucket`] of the integer SQL expression `col`, in integer arithmetic
/// that SQLite and PostgreSQL evaluate alike.
pub fn bucket_sql(col: &str) -> String {
    let mut sql = format!("CASE WHEN {col} < 1000 THEN {col}");
    let mut step: i64 = 10;
    // Up to 10^15 s (31 million years): facts never get near.
    while step <= 1_000_000_000_000 {
        sql.push_str(&format!(
            " WHEN {col} < {} THEN {col} / {step} * {step}",
            step * 1000
        ));
        step *= 10;
    }
    sql.push_str(&format!(" ELSE {col} / {step} * {step} END"));
    sql
}

/// The nearest-rank `percent` percentile of `buckets` (lower bound →
/// count, any order): the lower bound of the bucket holding the value of
/// rank ⌈percent × n / 100⌉. 0 when empty.
pub fn percentile(buckets: &BTreeMap<i64, i64>, percent: i64) -> i64 {
    let n: i64 = buckets.values().sum();
    if n == 0 {
        return 0;
    }
    let rank = ((percent * n + 99) / 100).max(1);
    let mut seen = 0;
    for (&lower, &count) in buckets {
        seen += count;
        if seen >= rank {
            return lower;
        }
    }
    buckets.keys().next_back().copied().unwrap_or(0)
}

/// The duration KPIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kpi {
    /// First response cycles.
    FirstResponse,
    /// Next response cycles.
    NextResponse,
    /// Resolution cycles, each on its own.
    Resolution,
    /// Each resolution valued as the conversation's cycles so far summed.
    ResolutionAcrossReopens,
    /// Periodic update cycles.
    PeriodicUpdate,
    /// Handle time per resolution.
    Handle,
}

str_enum!(Kpi {
    FirstResponse => "first_response",
    NextResponse => "next_response",
    Resolution => "resolution",
    ResolutionAcrossReopens => "resolution_total",
    PeriodicUpdate => "periodic_update",
    Handle => "handle",
});

/// One bucket of one duration KPI of one group, as storage aggregates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketCount {
    /// The group's stored key.
    pub key: String,
    /// The KPI.
    pub kpi: Kpi,
    /// Business (`true`) or calendar seconds.
    pub business: bool,
    /// The bucket's lower bound ([`bucket`]).
    pub bucket: i64,
    /// Facts in it.
    pub count: i64,
    /// Their seconds summed (exact).
    pub sum: i64,
    /// Met their target (calendar rows only).
    pub met: i64,
    /// Breached it (calendar rows only).
    pub breached: i64,
}

/// A count out of a total of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCount {
    /// The group's stored key.
    pub key: String,
    /// Numerator.
    pub count: i64,
    /// Denominator.
    pub total: i64,
}

/// What volume is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VolumeDimension {
    /// The channel.
    Channel,
    /// The interaction type.
    InteractionType,
}

str_enum!(VolumeDimension {
    Channel => "volume_channel",
    InteractionType => "volume_type",
});

/// Conversations created of one group with one channel or interaction
/// type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeCount {
    /// The group's stored key.
    pub key: String,
    /// Counted by.
    pub dimension: VolumeDimension,
    /// The channel or type (empty: none).
    pub value: String,
    /// How many.
    pub count: i64,
}

/// What storage aggregates of one period's facts, every query scoped by
/// tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregates {
    /// Duration buckets.
    pub buckets: Vec<BucketCount>,
    /// First-contact resolutions among first resolutions, not automatic.
    pub fcr: Vec<RateCount>,
    /// Promises kept on time among kept and broken.
    pub promises: Vec<RateCount>,
    /// Conversations created.
    pub volume: Vec<VolumeCount>,
}

/// What storage aggregates: a tenant's facts in `bounds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The period.
    pub bounds: Bounds,
    /// Rows by.
    pub group_by: GroupBy,
    /// Only these inboxes (empty: all).
    pub inboxes: Vec<InboxId>,
    /// Only these channels (empty: all).
    pub channels: Vec<Channel>,
    /// A reopen this long after a first resolution undoes it as a
    /// first-contact resolution.
    pub fcr_window_secs: i64,
}

/// Mean and percentiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Mean, milliseconds.
    pub mean_millis: i64,
    /// Median, seconds (a bucket's lower bound).
    pub p50: i64,
    /// 90th percentile, seconds.
    pub p90: i64,
}

/// One duration KPI of one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationKpi {
    /// Facts.
    pub count: i64,
    /// Calendar seconds.
    pub calendar: Summary,
    /// Business seconds.
    pub business: Summary,
    /// Met their target.
    pub met: i64,
    /// Breached it.
    pub breached: i64,
}

impl DurationKpi {
    /// met / (met + breached); 0 without targets.
    pub fn attainment(&self) -> f64 {
        ratio(self.met, self.met + self.breached)
    }
}

/// A rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    /// Numerator.
    pub count: i64,
    /// Denominator.
    pub total: i64,
}

impl Rate {
    /// count / total; 0 when total is 0.
    pub fn rate(&self) -> f64 {
        ratio(self.count, self.total)
    }
}

#[allow(clippy::cast_precision_loss)]
fn ratio(a: i64, b: i64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The KPIs of one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// The group's key: `agents/{id}`, `teams/{id}`, `inboxes/{id}`, a
    /// channel or priority, empty when not grouped or none.
    pub key: String,
    /// The duration KPIs (absent: none stopped).
    pub durations: BTreeMap<Kpi, DurationKpi>,
    /// First-contact resolution.
    pub fcr: Rate,
    /// Promises kept on time.
    pub promise_kept: Rate,
    /// Conversations created by channel.
    pub volume_by_channel: BTreeMap<String, i64>,
    /// Conversations created by interaction type.
    pub volume_by_interaction_type: BTreeMap<String, i64>,
}

/// The KPIs of one period.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodReport {
    /// The period.
    pub bounds: Bounds,
    /// By key.
    pub rows: Vec<Row>,
}

/// The public key of a stored group key.
fn key_name(group_by: GroupBy, stored: &str) -> String {
    if stored.is_empty() {
        return String::new();
    }
    match group_by {
        GroupBy::None => String::new(),
        GroupBy::Agent => format!("agents/{stored}"),
        GroupBy::Team => format!("teams/{stored}"),
        GroupBy::Inbox => format!("inboxes/{stored}"),
        GroupBy::Channel | GroupBy::Priority => stored.to_owned(),
    }
}

fn summary(sum: i64, count: i64, buckets: &BTreeMap<i64, i64>) -> Summary {
    Summary {
        mean_millis: if count == 0 {
            0
        } else {
            i64::try_from(i128::from(sum) * 1000 / i128::from(count)).unwrap_or(i64::MAX)
        },
        p50: percentile(buckets, 50),
        p90: percentile(buckets, 90),
    }
}

/// The report of `agg`, aggregated over `bounds` by `group_by`.
pub fn report(bounds: Bounds, group_by: GroupBy, agg: Aggregates) -> PeriodReport {
    #[derive(Default)]
    struct Acc {
        count: i64,
        sums: [i64; 2],
        buckets: [BTreeMap<i64, i64>; 2],
        met: i64,
        breached: i64,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut accs: BTreeMap<(String, Kpi), Acc> = BTreeMap::new();
    let mut row = |stored: &str| -> String {
        let key = key_name(group_by, stored);
        rows.entry(key.clone()).or_insert_with(|| Row {
            key: key.clone(),
            ..Row::default()
        });
        key
    };
    for b in agg.buckets {
        let key = row(&b.key);
        let acc = accs.entry((key, b.kpi)).or_default();
        let i = usize::from(b.business);
        if !b.business {
            acc.count += b.count;
            acc.met += b.met;
            acc.breached += b.breached;
        }
        acc.sums[i] += b.sum;
        *acc.buckets[i].entry(b.bucket).or_default() += b.count;
    }
    let mut fcr = Vec::new();
    for r in agg.fcr {
        fcr.push((row(&r.key), r));
    }
    let mut promises = Vec::new();
    for r in agg.promises {
        promises.push((row(&r.key), r));
    }
    let mut volume = Vec::new();
    for v in agg.volume {
        volume.push((row(&v.key), v));
    }
    for ((key, kpi), a) in accs {
        if let Some(r) = rows.get_mut(&key) {
            r.durations.insert(
                kpi,
                DurationKpi {
                    count: a.count,
                    calendar: summary(a.sums[0], a.count, &a.buckets[0]),
                    business: summary(a.sums[1], a.count, &a.buckets[1]),
                    met: a.met,
                    breached: a.breached,
                },
            );
        }
    }
    for (key, f) in fcr {
        if let Some(r) = rows.get_mut(&key) {
            r.fcr.count += f.count;
            r.fcr.total += f.total;
        }
    }
    for (key, p) in promises {
        if let Some(r) = rows.get_mut(&key) {
            r.promise_kept.count += p.count;
            r.promise_kept.total += p.total;
        }
    }
    for (key, v) in volume {
        if let Some(r) = rows.get_mut(&key) {
            let by = match v.dimension {
                VolumeDimension::Channel => &mut r.volume_by_channel,
                VolumeDimension::InteractionType => &mut r.volume_by_interaction_type,
            };
            *by.entry(v.value).or_default() += v.count;
        }
    }
    PeriodReport {
        bounds,
        rows: rows.into_values().collect(),
    }
}

/// The default first-contact-resolution window: a reopen within 7 days
/// undoes it.
pub const FCR_WINDOW_DEFAULT_SECS: i64 = 7 * 24 * 3600;
/// The longest window.
pub const FCR_WINDOW_MAX_SECS: i64 = 90 * 24 * 3600;

/// A KPI query, its transport parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsQuery {
    /// The period length (required).
    pub period: Option<Period>,
    /// An instant in the period; `None`: now.
    pub time: Option<DateTime<Utc>>,
    /// The IANA zone; empty: the service's default.
    pub time_zone: String,
    /// Rows by.
    pub group_by: GroupBy,
    /// Only these inboxes.
    pub inboxes: Vec<InboxId>,
    /// Only these channels.
    pub channels: Vec<Channel>,
    /// The FCR window; `None`: [`FCR_WINDOW_DEFAULT_SECS`].
    pub fcr_window_secs: Option<i64>,
}

/// The earliest and latest instants a query may name: reports cover
/// stored history, not the far past or future.
fn time_range() -> (DateTime<Utc>, DateTime<Utc>) {
    (
        DateTime::from_timestamp(0, 0).unwrap_or_default(),
        // 2200-01-01.
        DateTime::from_timestamp(7_258_118_400, 0).unwrap_or_default(),
    )
}

impl<R: Repository, P: Customers, C: Clock> Conversations<R, P, C> {
    /// The KPIs of the period `q` names and of the one before it.
    pub async fn interaction_metrics(
        &self,
        tenant: &Tenant,
        q: &MetricsQuery,
    ) -> Result<(PeriodReport, PeriodReport), Error> {
        let mut v = super::Violations::default();
        if q.period.is_none() {
            v.add("period", "is required: DAY, WEEK, MONTH, QUARTER or YEAR");
        }
        let zone = if q.time_zone.trim().is_empty() {
            Some(self.default_zone())
        } else {
            match super::calendar::parse_zone(&q.time_zone) {
                Ok(z) => Some(z),
                Err(why) => {
                    v.add("time_zone", why);
                    None
                }
            }
        };
        let at = q.time.unwrap_or_else(|| self.clock().now());
        let (earliest, latest) = time_range();
        if at < earliest || at >= latest {
            v.add("time", "must lie between 1970 and 2200");
        }
        let window = q.fcr_window_secs.unwrap_or(FCR_WINDOW_DEFAULT_SECS);
        if !(0..=FCR_WINDOW_MAX_SECS).contains(&window) {
            v.add("fcr_window", "must lie between 0 and 90 days");
        }
        let (Some(period), Some(zone)) = (q.period, zone) else {
            return Err(Error::Invalid(v));
        };
        if !v.is_empty() {
            return Err(Error::Invalid(v));
        }
        let (current, previous) = periods(period, at, zone)
            .ok_or_else(|| Error::Invalid(super::Violations::one("time", "is out of range")))?;
        let scope = |bounds| Scope {
            bounds,
            group_by: q.group_by,
            inboxes: q.inboxes.clone(),
            channels: q.channels.clone(),
            fcr_window_secs: window,
        };
        // The two periods at once: each is its own read snapshot anyway.
        let (now_scope, before_scope) = (scope(current), scope(previous));
        let (now, before) = tokio::try_join!(
            self.repo().metric_aggregates(tenant, &now_scope),
            self.repo().metric_aggregates(tenant, &before_scope),
        )?;
        Ok((
            report(current, q.group_by, now),
            report(previous, q.group_by, before),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn buckets_keep_three_significant_digits() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(999), 999);
        assert_eq!(bucket(1000), 1000);
        assert_eq!(bucket(1009), 1000);
        assert_eq!(bucket(1019), 1010);
        assert_eq!(bucket(123_456), 123_000);
        assert_eq!(bucket(9_999_999), 9_990_000);
        // Never more than 1 % below the value.
        for s in [1000, 1999, 54_321, 99_999, 1_000_001, 31_536_000] {
            let b = bucket(s);
            assert!(b <= s && (s - b) * 100 < s, "{s} → {b}");
        }
    }

    #[test]
    fn bucket_sql_has_a_branch_per_decade() {
        let sql = bucket_sql("v");
        assert!(sql.starts_with("CASE WHEN v < 1000 THEN v WHEN v < 10000 THEN v / 10 * 10"));
        assert!(sql.ends_with("END"));
    }

    #[test]
    fn percentiles_are_nearest_rank_over_buckets() {
        let b: BTreeMap<i64, i64> = [(60, 1), (120, 1), (300, 1), (1800, 1)].into();
        // n = 4: p50 is rank 2, p90 rank 4.
        assert_eq!(percentile(&b, 50), 120);
        assert_eq!(percentile(&b, 90), 1800);
        let one: BTreeMap<i64, i64> = [(42, 1)].into();
        assert_eq!(percentile(&one, 50), 42);
        assert_eq!(percentile(&one, 90), 42);
        assert_eq!(percentile(&BTreeMap::new(), 50), 0);
        // Ten values 1..=10: p50 rank 5, p90 rank 9.
        let ten: BTreeMap<i64, i64> = (1..=10).map(|v| (v, 1)).collect();
        assert_eq!(percentile(&ten, 50), 5);
        assert_eq!(percentile(&ten, 90), 9);
    }

    #[test]
    fn periods_follow_the_local_calendar() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Wednesday 2 December 2026, 00:30 in Berlin (23:30 UTC the day
        // before): the Berlin week of Monday 30 November.
        let at = utc("2026-12-01T23:30:00Z");
        let (w, prev) = periods(Period::Week, at, berlin).unwrap();
        assert_eq!(w.start, utc("2026-11-29T23:00:00Z"));
        assert_eq!(w.end, utc("2026-12-06T23:00:00Z"));
        assert_eq!(prev.start, utc("2026-11-22T23:00:00Z"));
        let (d, _) = periods(Period::Day, at, berlin).unwrap();
        assert_eq!(d.start, utc("2026-12-01T23:00:00Z"));
        let (q, prev) = periods(Period::Quarter, at, berlin).unwrap();
        assert_eq!(q.start, utc("2026-09-30T22:00:00Z"));
        assert_eq!(q.end, utc("2026-12-31T23:00:00Z"));
        assert_eq!(prev.start, utc("2026-06-30T22:00:00Z"));
        let (y, prev) = periods(Period::Year, at, chrono_tz::UTC).unwrap();
        assert_eq!(y.start, utc("2026-01-01T00:00:00Z"));
        assert_eq!(prev.start, utc("2025-01-01T00:00:00Z"));
        // March in Berlin has 23 hours less one: DST.
        let (m, _) = periods(Period::Month, utc("2026-03-15T12:00:00Z"), berlin).unwrap();
        assert_eq!((m.end - m.start).num_hours(), 31 * 24 - 1);
    }

    #[test]
    fn a_midnight_that_does_not_exist_is_the_end_of_its_gap() {
        // Santiago skipped 00:00–01:00 on 6 September 2026.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let (d, _) = periods(Period::Day, utc("2026-09-06T12:00:00Z"), santiago).unwrap();
        assert_eq!(d.start, utc("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn handle_time_is_open_and_assigned_time_or_the_calls() {
        use crate::domain::sla_clock::{ClockEvent as E, SlaClocks};
        let t = |s: i64| utc("2026-12-07T08:00:00Z") + chrono::Duration::seconds(s);
        let state = |from, to| E::StateChanged { from, to };
        let mut k = SlaClocks::default();
        k.apply(
            E::Created {
                customer_waiting: true,
            },
            t(0),
        );
        k.apply(E::Assigned { assigned: true }, t(10));
        let before = k.clone();
        // A customer's message changes nothing of the work: a busy
        // conversation's messages stay counts-only writes.
        k.apply(E::CustomerMessage, t(50));
        assert_eq!(k.work, before.work);
        k.apply(state(State::Open, State::Pending), t(100));
        k.apply(state(State::Pending, State::Open), t(200));
        k.apply(state(State::Open, State::Resolved), t(300));
        assert_eq!(k.work.handle_seconds(t(300)), 90 + 100);
        assert_eq!(k.work.handle_seconds(t(9000)), 190, "stopped");
        // A reopen starts a new cycle of work; a logged call then counts
        // instead of the time.
        k.apply(state(State::Resolved, State::Open), t(400));
        k.logged_call(480);
        k.apply(state(State::Open, State::Resolved), t(1000));
        assert_eq!(k.work.handle_seconds(t(1000)), 480);
    }

    #[test]
    fn reports_sum_buckets_per_group() {
        let bounds = Bounds {
            start: utc("2026-12-01T00:00:00Z"),
            end: utc("2026-12-02T00:00:00Z"),
        };
        let b = |key: &str, business, bucket, count, sum, met, breached| BucketCount {
            key: key.into(),
            kpi: Kpi::FirstResponse,
            business,
            bucket,
            count,
            sum,
            met,
            breached,
        };
        let agg = Aggregates {
            buckets: vec![
                b("a", false, 60, 1, 60, 1, 0),
                b("a", false, 1200, 2, 2430, 0, 2),
                b("a", true, 30, 3, 90, 0, 0),
            ],
            fcr: vec![RateCount {
                key: "a".into(),
                count: 1,
                total: 2,
            }],
            promises: Vec::new(),
            volume: vec![VolumeCount {
                key: "".into(),
                dimension: VolumeDimension::Channel,
                value: "email".into(),
                count: 4,
            }],
        };
        let r = report(bounds, GroupBy::Agent, agg);
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[0].key, "");
        assert_eq!(r.rows[0].volume_by_channel["email"], 4);
        let a = &r.rows[1];
        assert_eq!(a.key, "agents/a");
        let fr = a.durations[&Kpi::FirstResponse];
        assert_eq!(fr.count, 3);
        assert_eq!(fr.calendar.mean_millis, 830_000);
        assert_eq!((fr.calendar.p50, fr.calendar.p90), (1200, 1200));
        assert_eq!(fr.business.mean_millis, 30_000);
        assert!((fr.attainment() - 1.0 / 3.0).abs() < 1e-9);
        assert!((a.fcr.rate() - 0.5).abs() < 1e-9);
    }
}
