//! `QueryInteractionMetrics` on the wire: the request parsed into a
//! [`MetricsQuery`] (every bad field reported), the KPI reports as
//! protobuf.
use rapport_kit::convert::ts;
use rapport_proto::conversations as pb;
use rapport_usecase::Violations;
use tonic::Status;

use super::{
    command::inbox_id,
    convert::{channel_from_pb, from_pb, time},
    error::to_status,
};
use crate::domain::{
    Clock, Error, Tenant,
    metrics::{DurationKpi, GroupBy, Kpi, MetricsQuery, Period, PeriodReport, Rate, Row, Summary},
    ports::Customers,
    repository::Repository,
    service::Conversations,
};

fn query(req: &pb::QueryInteractionMetricsRequest) -> Result<MetricsQuery, Violations> {
    let mut v = Violations::default();
    let period = v
        .take(
            "period",
            from_pb!(pb::MetricsPeriod, Period, "METRICS_PERIOD", req.period),
        )
        .flatten();
    let group_by = v
        .take(
            "group_by",
            from_pb!(
                pb::MetricsGroupBy,
                GroupBy,
                "METRICS_GROUP_BY",
                req.group_by
            ),
        )
        .flatten()
        .unwrap_or_default();
    let time = req.time.as_ref().and_then(|t| v.take("time", time(t)));
    let mut inboxes = Vec::new();
    for (i, name) in req.inboxes.iter().enumerate() {
        match inbox_id(name, &format!("inboxes[{i}]")) {
            Ok(id) => inboxes.push(id),
            Err(e) => v.0.extend(e.0),
        }
    }
    let mut channels = Vec::new();
    for (i, raw) in req.channels.iter().enumerate() {
        let field = format!("channels[{i}]");
        match v.take(&field, channel_from_pb(*raw)) {
            Some(Some(c)) => channels.push(c),
            Some(None) => v.add(field, "must name a channel"),
            None => {}
        }
    }
    let fcr_window_secs = req.fcr_window.as_ref().map(|d| {
        if d.nanos != 0 {
            v.add("fcr_window", "must be whole seconds");
        }
        d.seconds
    });
    v.check()?;
    Ok(MetricsQuery {
        period,
        time,
        time_zone: req.time_zone.clone(),
        group_by,
        inboxes,
        channels,
        fcr_window_secs,
    })
}

fn duration(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

fn summary_to_pb(s: &Summary) -> pb::DurationSummary {
    pb::DurationSummary {
        mean: Some(prost_types::Duration {
            seconds: s.mean_millis.div_euclid(1000),
            nanos: i32::try_from(s.mean_millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }),
        p50: Some(duration(s.p50)),
        p90: Some(duration(s.p90)),
    }
}

fn stats_to_pb(d: Option<&DurationKpi>) -> Option<pb::DurationStats> {
    let d = d.copied().unwrap_or_default();
    Some(pb::DurationStats {
        count: d.count,
        calendar: Some(summary_to_pb(&d.calendar)),
        business: Some(summary_to_pb(&d.business)),
        met_count: d.met,
        breached_count: d.breached,
        attainment: d.attainment(),
    })
}

fn rate_to_pb(r: Rate) -> Option<pb::RateStats> {
    Some(pb::RateStats {
        count: r.count,
        total: r.total,
        rate: r.rate(),
    })
}

fn volume_to_pb(m: &std::collections::BTreeMap<String, i64>) -> Vec<pb::VolumeCount> {
    m.iter()
        .map(|(value, count)| pb::VolumeCount {
            value: value.clone(),
            count: *count,
        })
        .collect()
}

fn row_to_pb(r: &Row) -> pb::MetricsRow {
    let d = |k: Kpi| stats_to_pb(r.durations.get(&k));
    pb::MetricsRow {
        key: r.key.clone(),
        first_response: d(Kpi::FirstResponse),
        next_response: d(Kpi::NextResponse),
        resolution: d(Kpi::Resolution),
        resolution_across_reopens: d(Kpi::ResolutionAcrossReopens),
        periodic_update: d(Kpi::PeriodicUpdate),
        handle: d(Kpi::Handle),
        first_contact_resolution: rate_to_pb(r.fcr),
        promise_kept: rate_to_pb(r.promise_kept),
        volume_by_channel: volume_to_pb(&r.volume_by_channel),
        volume_by_interaction_type: volume_to_pb(&r.volume_by_interaction_type),
    }
}

fn report_to_pb(r: &PeriodReport) -> pb::PeriodMetrics {
    pb::PeriodMetrics {
        start_time: Some(ts(r.bounds.start)),
        end_time: Some(ts(r.bounds.end)),
        rows: r.rows.iter().map(row_to_pb).collect(),
    }
}

/// `QueryInteractionMetrics`.
pub async fn query_interaction_metrics<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    tenant: &Tenant,
    req: &pb::QueryInteractionMetricsRequest,
) -> Result<pb::QueryInteractionMetricsResponse, Status> {
    let q = query(req).map_err(|v| to_status(Error::Invalid(v)))?;
    let (current, previous) = service
        .interaction_metrics(tenant, &q)
        .await
        .map_err(to_status)?;
    Ok(pb::QueryInteractionMetricsResponse {
        current: Some(report_to_pb(&current)),
        previous: Some(report_to_pb(&previous)),
    })
}
