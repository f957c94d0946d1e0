//! `QueryInteractionMetrics` against a hand-computed fixture, through real
//! gRPC with the service's clock driven: three conversations on Monday
//! 7 December 2026 under office hours (09:00–17:00 UTC) and the fallback
//! policy (first response 1 h, next response 30 min, periodic update 2 h,
//! resolution 1 day, business time, pausing while pending).
//!
//! - A (customer a@, assigned to Ada at 08:00): Ada logs a call at 09:30
//!   (talk 300 + hold 60 + wrap-up 120), resolves at 10:00. First response
//!   5400 s calendar / 1800 s business (met); resolution 7200 / 3600;
//!   periodic update 1800; handle 480 (the call). First-contact resolved.
//! - B (b@, Ben from 10:00): Ben replies at 12:00 (first response 7200 /
//!   7200, breached), pending 12:00–13:00, b@ writes at 13:00, Ben replies
//!   13:10 (next response 600), resolves 14:00 (resolution 10 800 with the
//!   pending hour left out; periodic updates 600 and 3000; handle 10 800).
//!   b@ writes again at 15:00 (a reopen), Ben replies 15:20 (next response
//!   1200), resolves 16:00 (resolution 3600, across reopens 14 400;
//!   periodic update 2400; handle 3600). Reopened: no first-contact
//!   resolution.
//! - C (c@, Ada from 16:00): Ada replies 16:05 (first response 300),
//!   pending, auto-resolved at 18:05 (resolution 300, periodic update 0,
//!   handle 300): left out of first-contact resolution.
//! - Promises: Ada's on A kept on time; Ben's on B broken at its due time.
use chrono::{DateTime, Duration, TimeZone as _, Utc};
use rapport_kit::convert::ts;
use rapport_usecase::Clock as _;

use crate::harness::*;
use crate::messages::{agent, send};

const ADA: &str = "apiKeys/ada";
const BEN: &str = "apiKeys/ben";

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, h, m, 0).unwrap()
}

fn secs(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

struct Fixture {
    h: Harness,
    ada: String,
    ben: String,
}

impl Fixture {
    async fn to(&self, h: u32, m: u32) {
        let now = self.h.clock().now();
        self.h.clock().advance(at(h, m) - now);
    }

    async fn promise(&self, c: &str, owner: &str, due: DateTime<Utc>) -> pb::Promise {
        self.h
            .client()
            .create_promise(tenant_request(
                TENANT,
                pb::CreatePromiseRequest {
                    parent: c.into(),
                    promise: Some(pb::Promise {
                        kind: pb::PromiseKind::Callback as i32,
                        owner: owner.into(),
                        due_time: Some(ts(due)),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("CreatePromise: {}", describe(&s)))
            .into_inner()
            .promise
            .unwrap()
    }

    /// Fires due timers until `done` holds (the service's own worker may
    /// hold a timer's lease meanwhile).
    async fn until<F: std::future::Future<Output = bool>>(&self, what: &str, done: impl Fn() -> F) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done().await {
            assert!(std::time::Instant::now() < deadline, "never {what}");
            rapport_conversations::fire_automation_timers(&self.h.db, self.h.clock())
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn query(
        &self,
        tenant: &str,
        req: pb::QueryInteractionMetricsRequest,
    ) -> Result<pb::QueryInteractionMetricsResponse, tonic::Status> {
        self.h
            .client()
            .query_interaction_metrics(tenant_request(tenant, req))
            .await
            .map(tonic::Response::into_inner)
    }
}

fn week(group_by: pb::MetricsGroupBy, time: DateTime<Utc>) -> pb::QueryInteractionMetricsRequest {
    pb::QueryInteractionMetricsRequest {
        period: pb::MetricsPeriod::Week as i32,
        time: Some(ts(time)),
        time_zone: "UTC".into(),
        group_by: group_by as i32,
        ..Default::default()
    }
}

async fn fixture() -> Fixture {
    let (h, _) = start_under_sla(at(8, 0), true).await;
    let inbox = h
        .create_inbox(pb::Inbox {
            auto_resolve_after: secs(7200),
            ..email_inbox("support@acme.example", 86_400)
        })
        .await
        .name;
    let ada = agent(&h, TENANT, ADA, pb::AgentKind::Human).await.name;
    let ben = agent(&h, TENANT, BEN, pb::AgentKind::Human).await.name;
    let f = Fixture { h, ada, ben };

    let a = f.h.write(&inbox, "a@example.com", 1).await.name;
    f.h.assign(&a, &f.ada).await;
    f.to(9, 30).await;
    send(
        &f.h,
        TENANT,
        ADA,
        pb::CreateMessageRequest {
            parent: a.clone(),
            message: Some(pb::Message {
                channel: Channel::Phone as i32,
                call: Some(pb::Call {
                    talk_seconds: 300,
                    hold_seconds: 60,
                    wrap_up_seconds: 120,
                    recording_uri: String::new(),
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        },
    )
    .await
    .unwrap_or_else(|s| panic!("log a call: {}", describe(&s)));
    let kept = f.promise(&a, &f.ada, at(11, 0)).await;
    f.to(10, 0).await;
    f.h.resolve(&a).await.unwrap();

    let b = f.h.write(&inbox, "b@example.com", 2).await.name;
    f.h.assign(&b, &f.ben).await;
    f.to(10, 30).await;
    f.h.client()
        .keep_promise(tenant_request(
            TENANT,
            pb::KeepPromiseRequest {
                name: kept.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("KeepPromise: {}", describe(&s)));
    f.to(12, 0).await;
    f.h.answer(&b, BEN).await;
    let broken = f.promise(&b, &f.ben, at(12, 30)).await;
    f.h.pending(&b).await;
    f.to(13, 0).await;
    f.until("broken", || async {
        f.h.client()
            .get_promise(tenant_request(
                TENANT,
                pb::GetPromiseRequest {
                    name: broken.name.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .promise
            .is_some_and(|p| p.state == pb::PromiseState::Broken as i32)
    })
    .await;
    assert_eq!(f.h.write(&inbox, "b@example.com", 3).await.name, b);
    f.to(13, 10).await;
    f.h.answer(&b, BEN).await;
    f.to(14, 0).await;
    f.h.resolve(&b).await.unwrap();
    f.to(15, 0).await;
    assert_eq!(
        f.h.write(&inbox, "b@example.com", 4).await.name,
        b,
        "reopened"
    );
    f.to(15, 20).await;
    f.h.answer(&b, BEN).await;
    f.to(16, 0).await;
    f.h.resolve(&b).await.unwrap();

    let c = f.h.write(&inbox, "c@example.com", 5).await.name;
    f.h.assign(&c, &f.ada).await;
    f.to(16, 5).await;
    f.h.answer(&c, ADA).await;
    f.h.pending(&c).await;
    f.to(18, 5).await;
    f.until("auto-resolved", || async {
        f.h.conversation(&c).await.state == pb::ConversationState::Resolved as i32
    })
    .await;
    f
}

/// (count, calendar mean/p50/p90, business mean/p50/p90, met, breached),
/// means in milliseconds.
type Stats = (i64, [i64; 3], [i64; 3], i64, i64);

fn stats(d: &Option<pb::DurationStats>) -> Stats {
    let d = (*d).unwrap();
    let s = |s: Option<pb::DurationSummary>| {
        let s = s.unwrap();
        let ms = |d: Option<prost_types::Duration>| {
            let d = d.unwrap();
            d.seconds * 1000 + i64::from(d.nanos) / 1_000_000
        };
        let sec = |d: Option<prost_types::Duration>| d.unwrap().seconds;
        [ms(s.mean), sec(s.p50), sec(s.p90)]
    };
    (
        d.count,
        s(d.calendar),
        s(d.business),
        d.met_count,
        d.breached_count,
    )
}

fn rate(r: &Option<pb::RateStats>) -> (i64, i64) {
    let r = (*r).unwrap();
    (r.count, r.total)
}

#[tokio::test]
async fn kpis_match_a_hand_computation() {
    let f = fixture().await;
    let r = f
        .query(TENANT, week(pb::MetricsGroupBy::None, at(12, 0)))
        .await
        .unwrap_or_else(|s| panic!("QueryInteractionMetrics: {}", describe(&s)));
    let current = r.current.unwrap();
    assert_eq!(current.start_time, Some(ts(at(0, 0))), "Monday");
    assert_eq!(current.end_time, Some(ts(at(0, 0) + Duration::days(7))));
    assert_eq!(current.rows.len(), 1);
    let row = &current.rows[0];
    assert_eq!(row.key, "");
    // First response: 5400, 7200, 300 calendar; 1800, 7200, 300 business.
    assert_eq!(
        stats(&row.first_response),
        (3, [4_300_000, 5400, 7200], [3_100_000, 1800, 7200], 2, 1)
    );
    let fr = row.first_response.unwrap();
    assert!((fr.attainment - 2.0 / 3.0).abs() < 1e-9);
    // Next response: 600, 1200.
    assert_eq!(
        stats(&row.next_response),
        (2, [900_000, 600, 1200], [900_000, 600, 1200], 2, 0)
    );
    // Resolution cycles: 7200 / 3600 (A), 10 800 and 3600 (B), 300 (C).
    assert_eq!(
        stats(&row.resolution),
        (
            4,
            [5_475_000, 3600, 10_800],
            [4_575_000, 3600, 10_800],
            4,
            0
        )
    );
    // Across reopens B's second resolution is 14 400.
    assert_eq!(
        stats(&row.resolution_across_reopens),
        (
            4,
            [8_175_000, 7200, 14_400],
            [7_275_000, 3600, 14_400],
            4,
            0
        )
    );
    // Periodic updates: 1800 (A), 600, 3000, 2400 (B), 0 (C).
    assert_eq!(
        stats(&row.periodic_update),
        (5, [1_560_000, 1800, 3000], [1_560_000, 1800, 3000], 5, 0)
    );
    // Handle: the call's 480 (A), 10 800 and 3600 (B), 300 (C).
    assert_eq!(
        stats(&row.handle),
        (4, [3_795_000, 480, 10_800], [3_795_000, 480, 10_800], 0, 0)
    );
    // A only: B reopened, C auto-resolved (not counted at all).
    assert_eq!(rate(&row.first_contact_resolution), (1, 2));
    assert_eq!(rate(&row.promise_kept), (1, 2));
    let volume: Vec<_> = row
        .volume_by_channel
        .iter()
        .map(|v| (v.value.as_str(), v.count))
        .collect();
    assert_eq!(volume, vec![("email", 3)]);
    // Nothing the week before.
    let previous = r.previous.unwrap();
    assert_eq!(previous.start_time, Some(ts(at(0, 0) - Duration::days(7))));
    assert!(previous.rows.is_empty());

    // The week after: this week is its previous period.
    let next = f
        .query(
            TENANT,
            week(pb::MetricsGroupBy::None, at(12, 0) + Duration::days(7)),
        )
        .await
        .unwrap();
    assert!(next.current.unwrap().rows.is_empty());
    assert_eq!(next.previous.unwrap().rows, current.rows);

    // By agent: Ada (A, C) and Ben (B).
    let by = f
        .query(TENANT, week(pb::MetricsGroupBy::Agent, at(12, 0)))
        .await
        .unwrap()
        .current
        .unwrap();
    let row = |agent: &str| {
        by.rows
            .iter()
            .find(|r| r.key == agent)
            .unwrap_or_else(|| panic!("no row {agent}: {:?}", by.rows))
            .clone()
    };
    let ada = row(&f.ada);
    assert_eq!(
        stats(&ada.first_response),
        (2, [2_850_000, 300, 5400], [1_050_000, 300, 1800], 2, 0)
    );
    assert_eq!(rate(&ada.first_contact_resolution), (1, 1));
    assert_eq!(rate(&ada.promise_kept), (1, 1));
    let ben = row(&f.ben);
    assert_eq!(stats(&ben.first_response).0, 1);
    assert_eq!(rate(&ben.first_contact_resolution), (0, 1));
    assert_eq!(rate(&ben.promise_kept), (0, 1));

    // Another tenant sees nothing.
    let other = f
        .query(OTHER_TENANT, week(pb::MetricsGroupBy::Agent, at(12, 0)))
        .await
        .unwrap();
    assert!(other.current.unwrap().rows.is_empty());
    assert!(other.previous.unwrap().rows.is_empty());

    // Filtered to another channel: nothing.
    let phone = f
        .query(
            TENANT,
            pb::QueryInteractionMetricsRequest {
                channels: vec![Channel::Sms as i32],
                ..week(pb::MetricsGroupBy::None, at(12, 0))
            },
        )
        .await
        .unwrap();
    assert!(phone.current.unwrap().rows.is_empty());
}

/// Reports read rollups of UTC days and months, corrected by the facts of
/// the hours a time zone moves a period's edges. In UTC−12 the fixture's
/// Monday splits at 12:00 UTC into two weeks (A's first resolution in
/// one, B's and its reopen in the other). Each report must equal the one
/// read from the facts alone (a channel filter reads only facts), and a
/// start that finds facts without rollups rebuilds them.
#[tokio::test]
async fn rollups_and_facts_give_one_report() {
    let mut f = fixture().await;
    // UTC−12 reads month rollups and days around them (its year starts at
    // noon UTC); Berlin's year is a whole UTC year of rollups, its month a
    // UTC month, each with an hour's sliver at both ends.
    let mut queries = Vec::new();
    for time_zone in ["Etc/GMT+12", "Europe/Berlin"] {
        for period in [
            pb::MetricsPeriod::Week,
            pb::MetricsPeriod::Month,
            pb::MetricsPeriod::Year,
        ] {
            for group_by in [
                pb::MetricsGroupBy::None,
                pb::MetricsGroupBy::Agent,
                pb::MetricsGroupBy::Priority,
            ] {
                // B reopened an hour after it resolved: a window of half
                // an hour keeps it a first-contact resolution.
                for window in [86_400, 1800] {
                    queries.push(pb::QueryInteractionMetricsRequest {
                        period: period as i32,
                        time_zone: time_zone.into(),
                        fcr_window: secs(window),
                        ..week(group_by, at(12, 0))
                    });
                }
            }
        }
    }
    let mut reports = Vec::new();
    for q in &queries {
        let rolled = f.query(TENANT, q.clone()).await.unwrap();
        // Every channel: the same facts, read without rollups.
        let facts = pb::QueryInteractionMetricsRequest {
            channels: (1..=6).collect(),
            ..q.clone()
        };
        let facts = f.query(TENANT, facts).await.unwrap();
        assert_eq!(rolled, facts, "{q:?}");
        reports.push(rolled);
    }
    // The split week in UTC−12: A's first response before 12:00 UTC, B's
    // and C's after; all three across both.
    let week = &reports[0];
    let current = &week.current.as_ref().unwrap().rows[0];
    let previous = &week.previous.as_ref().unwrap().rows[0];
    assert_eq!(stats(&previous.first_response).0, 1);
    assert_eq!(stats(&current.first_response).0, 2);
    assert_eq!(rate(&previous.first_contact_resolution), (1, 1), "A");
    assert_eq!(
        rate(&current.first_contact_resolution),
        (0, 1),
        "B reopened"
    );
    let short_window = &reports[1].current.as_ref().unwrap().rows[0];
    assert_eq!(rate(&short_window.first_contact_resolution), (1, 1), "B");
    // Berlin's year holds all three.
    let berlin_year = &reports[queries.len() - 6].current.as_ref().unwrap().rows[0];
    assert_eq!(stats(&berlin_year.first_response).0, 3);

    // A database with facts and no rollups (written before them): the
    // next start rebuilds them.
    use sea_orm::ConnectionTrait as _;
    f.h.db
        .writer
        .execute_unprepared("DELETE FROM conv_metric_rollups")
        .await
        .unwrap();
    f.h.restart().await;
    for (q, report) in queries.iter().zip(&reports) {
        let rebuilt = f.query(TENANT, q.clone()).await.unwrap();
        assert_eq!(&rebuilt, report, "rebuilt: {q:?}");
    }
}

#[tokio::test]
async fn bad_queries_are_invalid_arguments() {
    let h = start().await;
    let q = |req| {
        let h = &h;
        async move {
            h.client()
                .query_interaction_metrics(tenant_request(TENANT, req))
                .await
        }
    };
    let ok = pb::QueryInteractionMetricsRequest {
        period: pb::MetricsPeriod::Month as i32,
        ..Default::default()
    };
    q(ok.clone()).await.expect("now, in the default zone");
    let status = expect_err(
        q(pb::QueryInteractionMetricsRequest {
            period: 0,
            time_zone: "Mars/Olympus".into(),
            ..ok.clone()
        })
        .await,
    );
    assert_violation(&status, "period");
    assert_violation(&status, "time_zone");
    let status = expect_err(
        q(pb::QueryInteractionMetricsRequest {
            group_by: 99,
            period: 42,
            inboxes: vec!["teams/x".into()],
            channels: vec![0],
            ..ok.clone()
        })
        .await,
    );
    for field in ["group_by", "period", "inboxes[0]", "channels[0]"] {
        assert_violation(&status, field);
    }
    let status = expect_err(
        q(pb::QueryInteractionMetricsRequest {
            time: Some(ts(Utc.with_ymd_and_hms(2300, 1, 1, 0, 0, 0).unwrap())),
            fcr_window: secs(91 * 86_400),
            ..ok
        })
        .await,
    );
    assert_violation(&status, "time");
    assert_violation(&status, "fcr_window");
}
