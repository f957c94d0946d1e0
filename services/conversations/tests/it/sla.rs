//! Service levels applied to conversations through real gRPC, with the
//! service's clock (and its timer workers) driven by a `ManualClock`: the
//! policy pinned on create, each metric's clock on the Conversation
//! resource, the peer bugs of peers.md §(c) as scenarios, warnings and
//! breaches at their business-time moments, exactly once across replicas
//! and a restart, escalation, and the metric facts KPIs read.
use chrono::{DateTime, Duration, TimeZone as _, Utc};
use rapport_usecase::ManualClock;

use crate::harness::*;
use crate::messages::agent;

const HUMAN: &str = "apiKeys/ada";
const BOT: &str = "apiKeys/bot";
/// Who writes in.
const CUSTOMER: &str = "ada@example.com";

/// Monday 7 December 2026, 08:00 UTC.
fn monday_8() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap()
}

/// Services at Monday 08:00 with the fallback policy (in calendar time, or
/// on `office` hours), an email inbox, a human agent and a bot.
async fn setup(office: bool) -> (Harness, String) {
    let (h, _) = start_under_sla(monday_8(), office).await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 86_400))
        .await;
    agent(&h, TENANT, HUMAN, pb::AgentKind::Human).await;
    agent(&h, TENANT, BOT, pb::AgentKind::Bot).await;
    (h, inbox.name)
}

fn metric(c: &pb::Conversation, m: pb::SlaMetric) -> Option<pb::SlaMetricStatus> {
    c.sla
        .as_ref()?
        .metrics
        .iter()
        .find(|s| s.metric == m as i32)
        .cloned()
}

fn time(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref()
        .map(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap())
}

fn state(s: &pb::SlaMetricStatus) -> pb::SlaMetricState {
    pb::SlaMetricState::try_from(s.state).unwrap()
}

async fn set_priority(h: &Harness, c: &pb::Conversation, p: pb::Priority) -> pb::Conversation {
    set_priority_with(&h.client(), c, p).await
}

async fn set_priority_with(
    client: &Client,
    c: &pb::Conversation,
    p: pb::Priority,
) -> pb::Conversation {
    client
        .clone()
        .update_conversation(tenant_request(
            TENANT,
            pb::UpdateConversationRequest {
                conversation: Some(pb::Conversation {
                    name: c.name.clone(),
                    priority: p as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["priority".into()],
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("UpdateConversation: {}", describe(&s)))
        .into_inner()
        .conversation
        .unwrap()
}

#[tokio::test]
async fn the_policy_is_pinned_on_create_and_a_priority_change_recomputes_from_the_start() {
    let (h, inbox) = setup(false).await;
    let c = h.write(&inbox, CUSTOMER, 1).await;
    let sla = c.sla.clone().expect("the fallback applies");
    assert_eq!(sla.revision, 1);
    let frt = metric(&c, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(state(&frt), pb::SlaMetricState::Running);
    assert_eq!(time(&frt.start_time), Some(monday_8()));
    assert_eq!(time(&frt.due_time), Some(monday_8() + Duration::hours(1)));
    assert_eq!(
        time(&frt.warn_time),
        Some(monday_8() + Duration::minutes(30))
    );
    let res = metric(&c, pb::SlaMetric::Resolution).unwrap();
    assert_eq!(time(&res.due_time), Some(monday_8() + Duration::days(1)));
    // Not measured before the first reply.
    assert!(metric(&c, pb::SlaMetric::NextResponse).is_none());
    assert!(metric(&c, pb::SlaMetric::PeriodicUpdate).is_none());

    // Twenty minutes later it becomes urgent: 15 minutes from the original
    // start, so already breached.
    h.clock().advance(Duration::minutes(20));
    let urgent = set_priority(&h, &c, pb::Priority::Urgent).await;
    assert_eq!(urgent.sla.as_ref().unwrap().revision, 1, "the pinned copy");
    let frt = metric(&urgent, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(
        time(&frt.due_time),
        Some(monday_8() + Duration::minutes(15))
    );
    assert_eq!(state(&frt), pb::SlaMetricState::Breached);
    assert_eq!(
        time(&frt.breach_time),
        Some(monday_8() + Duration::minutes(15))
    );
    // The urgent targets measure no resolution.
    assert!(metric(&urgent, pb::SlaMetric::Resolution).is_none());

    // Editing the policy never rewrites the open conversation.
    let back = set_priority(&h, &urgent, pb::Priority::Normal).await;
    let frt = metric(&back, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(time(&frt.due_time), Some(monday_8() + Duration::hours(1)));
    assert_eq!(state(&frt), pb::SlaMetricState::Running);
}

/// The `SlaWarningRaised` (`warning`) or `SlaBreached` events of `c`, as
/// (metric, cycle, due time).
async fn alerts(db: &rapport_store::Db, c: &str, warning: bool) -> Vec<(i32, i32, DateTime<Utc>)> {
    let kind = if warning {
        "rapport.conversations.v1.SlaWarningRaised"
    } else {
        "rapport.conversations.v1.SlaBreached"
    };
    outbox_events(db, TENANT, c)
        .await
        .iter()
        .filter(|e| e.r#type == kind)
        .map(|e| {
            let b: pb::SlaBreached = payload(e);
            (b.metric, b.cycle, time(&b.due_time).unwrap())
        })
        .collect()
}

/// Waits (polling, up to 10 s) until `c` has `n` alerts of the kind.
async fn until_alerts(
    db: &rapport_store::Db,
    c: &str,
    warning: bool,
    n: usize,
) -> Vec<(i32, i32, DateTime<Utc>)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = alerts(db, c, warning).await;
        if got.len() >= n || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The SLA timers scheduled for `c` (their keys), read from the table.
async fn sla_timers(db: &rapport_store::Db, c: &str) -> Vec<String> {
    use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
    let id = c.trim_start_matches("conversations/");
    rapport_events::timers::entity::Entity::find()
        .filter(rapport_events::timers::entity::Column::Key.starts_with(format!("sla:{id}:")))
        .all(&db.reader)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.key)
        .collect()
}

const FRT: i32 = pb::SlaMetric::FirstResponse as i32;

#[tokio::test]
async fn warning_and_breach_fire_at_their_business_time_moments_once() {
    let (h, inbox) = setup(true).await;
    // Monday 08:00, before the 09:00 opening: the clock starts at 09:00;
    // one business hour, warning at 50 %.
    let c = h.write(&inbox, CUSTOMER, 1).await;
    let frt = metric(&c, pb::SlaMetric::FirstResponse).unwrap();
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 12, 7, h, m, 0).unwrap();
    assert_eq!(time(&frt.warn_time), Some(at(9, 30)));
    assert_eq!(time(&frt.due_time), Some(at(10, 0)));
    assert!(frt.business_calendar.starts_with("businessCalendars/"));
    h.clock().advance(Duration::minutes(89)); // 09:29
    // Both timers are scheduled and nothing is due yet.
    let mut keys = sla_timers(&h.db, &c.name).await;
    keys.sort();
    assert!(
        keys.iter()
            .any(|k| k.ends_with(":first_response:0:warning")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with(":first_response:0:breach")),
        "{keys:?}"
    );
    assert!(alerts(&h.db, &c.name, true).await.is_empty());
    h.clock().advance(Duration::minutes(1)); // 09:30
    let warned = until_alerts(&h.db, &c.name, true, 1).await;
    assert_eq!(warned, vec![(FRT, 0, at(10, 0))]);
    assert!(
        alerts(&h.db, &c.name, false).await.is_empty(),
        "not due before 10:00"
    );
    h.clock().advance(Duration::minutes(30)); // 10:00
    let breached = until_alerts(&h.db, &c.name, false, 1).await;
    assert_eq!(breached, vec![(FRT, 0, at(10, 0))]);
    let now = h.conversation(&c.name).await;
    let frt = metric(&now, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(state(&frt), pb::SlaMetricState::Breached);
    // A late reply leaves it breached; nothing is raised again.
    h.answer(&c.name, HUMAN).await;
    h.clock().advance(Duration::hours(30));
    let later = h.conversation(&c.name).await;
    assert_eq!(
        state(&metric(&later, pb::SlaMetric::FirstResponse).unwrap()),
        pb::SlaMetricState::Breached
    );
    assert!(
        !sla_timers(&h.db, &c.name)
            .await
            .iter()
            .any(|k| k.contains(":first_response:"))
    );
    assert_eq!(
        alerts(&h.db, &c.name, false)
            .await
            .iter()
            .filter(|a| a.0 == FRT)
            .count(),
        1
    );
    assert_eq!(
        alerts(&h.db, &c.name, true)
            .await
            .iter()
            .filter(|a| a.0 == FRT)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_target_met_in_time_never_warns_nor_breaches() {
    let (h, inbox) = setup(false).await;
    let c = h.write(&inbox, CUSTOMER, 1).await;
    h.clock().advance(Duration::minutes(29));
    h.answer(&c.name, HUMAN).await;
    let met = h.conversation(&c.name).await;
    let frt = metric(&met, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(state(&frt), pb::SlaMetricState::Met);
    assert_eq!(
        time(&frt.stop_time),
        Some(monday_8() + Duration::minutes(29))
    );
    // Its timers are gone with the stop; a day later it is still met.
    assert!(
        !sla_timers(&h.db, &c.name)
            .await
            .iter()
            .any(|k| k.contains(":first_response:"))
    );
    h.clock().advance(Duration::days(1));
    let later = h.conversation(&c.name).await;
    assert_eq!(
        state(&metric(&later, pb::SlaMetric::FirstResponse).unwrap()),
        pb::SlaMetricState::Met
    );
    // The update clock (2 h from the reply) did breach meanwhile: that one
    // alone, once.
    let breached = until_alerts(&h.db, &c.name, false, 2).await;
    assert!(breached.iter().all(|a| a.0 != FRT), "{breached:?}");
    assert!(
        alerts(&h.db, &c.name, true)
            .await
            .iter()
            .all(|a| a.0 != FRT)
    );
}

#[tokio::test]
async fn each_breach_is_raised_once_across_two_workers_and_a_restart() {
    let (mut h, inbox) = setup(false).await;
    let (second, client, db) = h.replica().await;
    let mut names = Vec::new();
    for n in 0..12 {
        names.push(h.write(&inbox, CUSTOMER, n).await.name);
    }
    // Both replicas' workers race for the due timers.
    h.clock().advance(Duration::minutes(61));
    for name in &names {
        let got = until_alerts(&h.db, name, false, 1).await;
        assert_eq!(got.iter().filter(|a| a.0 == FRT).count(), 1, "{name}");
    }
    // A restart: the first replica stops, a third starts; then the due
    // times move (urgent: 15 minutes, then back), which reschedules every
    // breach timer of the same cycle: they fire again and raise nothing.
    h.stop_first();
    let (_third, _, _) = h.replica().await;
    for name in &names {
        let c = client
            .clone()
            .get_conversation(tenant_request(
                TENANT,
                pb::GetConversationRequest { name: name.clone() },
            ))
            .await
            .unwrap()
            .into_inner()
            .conversation
            .unwrap();
        let urgent = set_priority_with(&client, &c, pb::Priority::Urgent).await;
        // Each change schedules the breach timer again, due at once: the
        // workers fire it right away and find the breach raised.
        set_priority_with(&client, &urgent, pb::Priority::Normal).await;
    }
    h.clock().advance(Duration::minutes(1));
    // Wait until every rescheduled first-response timer has fired.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for name in &names {
        while sla_timers(&db, name)
            .await
            .iter()
            .any(|k| k.contains(":first_response:"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}'s timers never fired"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let got = alerts(&db, name, false).await;
        assert_eq!(
            got.iter().filter(|a| a.0 == FRT).count(),
            1,
            "{name}: {got:?}"
        );
    }
    drop(second);
}

#[tokio::test]
async fn a_breach_escalates_through_the_transition_once() {
    let h = start_at(ManualClock::at(monday_8())).await;
    let team = h
        .client()
        .create_team(tenant_request(
            TENANT,
            pb::CreateTeamRequest {
                team: Some(pb::Team {
                    display_name: "Escalations".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .team
        .unwrap();
    // A team that does not exist is refused, named by its field.
    let mut bad = fallback("");
    bad.escalation = Some(pb::SlaEscalation {
        raise_priority_to: pb::Priority::Urgent as i32,
        move_to_team: format!("teams/{}", uuid::Uuid::now_v7()),
    });
    let err = try_create_policy(&h, bad.clone(), "").await.unwrap_err();
    assert_violation(&err, "sla_policy.escalation.move_to_team");
    bad.escalation.as_mut().unwrap().move_to_team = team.name.clone();
    // Raising to a priority the policy has no targets for would leave the
    // escalated conversation unmeasured: refused.
    bad.escalation.as_mut().unwrap().raise_priority_to = pb::Priority::High as i32;
    let err = try_create_policy(&h, bad.clone(), "").await.unwrap_err();
    assert_violation(&err, "sla_policy.escalation.raise_priority_to");
    bad.escalation.as_mut().unwrap().raise_priority_to = pb::Priority::Urgent as i32;
    let policy = create_policy(&h, bad).await;
    assert_eq!(
        policy.escalation.as_ref().unwrap().raise_priority_to,
        pb::Priority::Urgent as i32
    );
    let inbox = h.create_inbox(email_inbox("support@acme.example", 0)).await;
    let c = h.write(&inbox.name, CUSTOMER, 1).await;
    assert_eq!(c.priority, pb::Priority::Normal as i32);
    h.clock().advance(Duration::minutes(60));
    until_alerts(&h.db, &c.name, false, 1).await;
    let escalated = h.conversation(&c.name).await;
    assert_eq!(escalated.priority, pb::Priority::Urgent as i32);
    assert_eq!(escalated.team, team.name);
    // Urgent's 15 minutes from the original start: breached already, and
    // that breach of the same cycle is not raised again.
    let frt = metric(&escalated, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(
        time(&frt.due_time),
        Some(monday_8() + Duration::minutes(15))
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sla_timers(&h.db, &c.name)
        .await
        .iter()
        .any(|k| k.contains(":first_response:"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the rescheduled breach never fired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let events = outbox_events(&h.db, TENANT, &c.name).await;
    let escalations: Vec<pb::ConversationEscalated> = events
        .iter()
        .filter(|e| e.r#type == "rapport.conversations.v1.ConversationEscalated")
        .map(payload)
        .collect();
    assert_eq!(escalations.len(), 1, "{:?}", event_types(&events));
    assert_eq!(
        escalations[0].previous_priority,
        pb::Priority::Normal as i32
    );
    assert_eq!(escalations[0].metric, FRT);
    assert_eq!(escalations[0].cause, pb::TransitionCause::Automation as i32);
    assert_eq!(alerts(&h.db, &c.name, false).await.len(), 1);
}

/// `(metric, cycle, calendar seconds, business seconds, met)` of every
/// metric fact stored for `c`, in order.
async fn facts(h: &Harness, c: &str) -> Vec<(String, i32, i64, i64, Option<bool>)> {
    use sea_orm::{ConnectionTrait as _, Statement};
    let id = c.trim_start_matches("conversations/");
    let backend = h.db.reader.get_database_backend();
    let sql = format!(
        "SELECT metric, cycle, calendar_seconds, business_seconds, met FROM conv_metric_facts \
         WHERE tenant = '{TENANT}' AND conversation_id = '{id}' \
         AND metric IN ('first_response', 'next_response', 'periodic_update', 'resolution') \
         ORDER BY stop_time, metric, cycle"
    );
    h.db.reader
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "metric").unwrap(),
                r.try_get("", "cycle").unwrap(),
                r.try_get("", "calendar_seconds").unwrap(),
                r.try_get("", "business_seconds").unwrap(),
                r.try_get("", "met").unwrap(),
            )
        })
        .collect()
}

fn minutes(m: i64) -> DateTime<Utc> {
    monday_8() + Duration::minutes(m)
}

#[tokio::test]
async fn a_customer_message_while_pending_reopens_and_resumes_the_clock() {
    // Zammad #1322: a customer note did not restart escalation.
    let (h, inbox) = setup(false).await;
    let c = h.write(&inbox, CUSTOMER, 1).await;
    h.clock().advance(Duration::minutes(10));
    h.pending(&c.name).await;
    let paused = h.conversation(&c.name).await;
    let frt = metric(&paused, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(state(&frt), pb::SlaMetricState::Paused);
    assert_eq!(frt.due_time, None);
    h.clock().advance(Duration::minutes(30));
    let back = h.write(&inbox, CUSTOMER, 2).await;
    assert_eq!(back.name, c.name);
    assert_eq!(back.state, pb::ConversationState::Open as i32);
    let frt = metric(&back, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(state(&frt), pb::SlaMetricState::Running);
    // The 30 pending minutes are added back to the hour.
    assert_eq!(time(&frt.due_time), Some(minutes(90)));
    h.clock().advance(Duration::minutes(50)); // +90
    let breached = until_alerts(&h.db, &c.name, false, 1).await;
    assert_eq!(breached, vec![(FRT, 0, minutes(90))]);
}

#[tokio::test]
async fn every_agent_reply_stops_the_update_clock_and_first_response_is_independent() {
    // Zammad #3140 (update escalated despite a reply) and #5177 (update
    // time overrode the first response).
    let (h, inbox) = setup(false).await;
    let c = h.write(&inbox, CUSTOMER, 1).await;
    h.clock().advance(Duration::minutes(20));
    h.write(&inbox, CUSTOMER, 2).await; // more messages move nothing
    let waiting = h.conversation(&c.name).await;
    assert!(metric(&waiting, pb::SlaMetric::PeriodicUpdate).is_none());
    let frt = metric(&waiting, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(
        (time(&frt.start_time), time(&frt.due_time)),
        (Some(minutes(0)), Some(minutes(60)))
    );
    h.clock().advance(Duration::minutes(10)); // +30
    h.answer(&c.name, HUMAN).await;
    h.clock().advance(Duration::minutes(30)); // +60
    h.write(&inbox, CUSTOMER, 3).await;
    h.clock().advance(Duration::minutes(80)); // +140: a reply within the update's 2 h
    h.answer(&c.name, HUMAN).await;
    let now = h.conversation(&c.name).await;
    let update = metric(&now, pb::SlaMetric::PeriodicUpdate).unwrap();
    assert_eq!(
        (update.cycle, time(&update.start_time)),
        (1, Some(minutes(140)))
    );
    assert_eq!(state(&update), pb::SlaMetricState::Running);
    let nrt = metric(&now, pb::SlaMetric::NextResponse).unwrap();
    // 80 minutes for a 30-minute target: breached, and stopped.
    assert_eq!(state(&nrt), pb::SlaMetricState::Breached);
    assert_eq!(time(&nrt.stop_time), Some(minutes(140)));
    assert_eq!(
        facts(&h, &c.name).await,
        vec![
            ("first_response".into(), 0, 1800, 1800, Some(true)),
            ("next_response".into(), 0, 4800, 4800, Some(false)),
            ("periodic_update".into(), 0, 6600, 6600, Some(true)),
        ]
    );
    // The update clock of the first reply was met: it never breaches.
    h.clock().advance(Duration::minutes(1));
    let breached = until_alerts(&h.db, &c.name, false, 1).await;
    assert_eq!(
        breached,
        vec![(pb::SlaMetric::NextResponse as i32, 0, minutes(90))]
    );
}

#[tokio::test]
async fn bot_time_is_not_counted_and_a_bot_reply_is_no_response() {
    // Chatwoot #7679 / PR #6409.
    let (h, inbox) = setup(false).await;
    let c = h.write(&inbox, CUSTOMER, 1).await;
    let bot = h
        .client()
        .list_agents(tenant_request(TENANT, pb::ListAgentsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .agents;
    let (bot, human) = (
        bot.iter()
            .find(|a| a.principal == BOT)
            .unwrap()
            .name
            .clone(),
        bot.iter()
            .find(|a| a.principal == HUMAN)
            .unwrap()
            .name
            .clone(),
    );
    h.assign(&c.name, &bot).await;
    h.clock().advance(Duration::minutes(5));
    h.answer(&c.name, BOT).await;
    h.clock().advance(Duration::minutes(25));
    let after_bot = h.conversation(&c.name).await;
    assert_eq!(after_bot.first_response_time, None);
    assert_eq!(
        state(&metric(&after_bot, pb::SlaMetric::FirstResponse).unwrap()),
        pb::SlaMetricState::Running
    );
    h.assign(&c.name, &human).await; // the hand-off, at +30
    let handed = h.conversation(&c.name).await;
    let frt = metric(&handed, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(time(&frt.start_time), Some(minutes(30)));
    assert_eq!(time(&frt.due_time), Some(minutes(90)));
    let res = metric(&handed, pb::SlaMetric::Resolution).unwrap();
    assert_eq!(time(&res.start_time), Some(minutes(30)));
    h.clock().advance(Duration::minutes(40));
    h.answer(&c.name, HUMAN).await;
    h.resolve(&c.name).await.unwrap();
    assert_eq!(
        facts(&h, &c.name).await,
        vec![
            ("first_response".into(), 0, 2400, 2400, Some(true)),
            ("periodic_update".into(), 0, 0, 0, Some(true)),
            ("resolution".into(), 0, 2400, 2400, Some(true)),
        ]
    );
}

#[tokio::test]
async fn a_reopen_measures_from_the_reopen() {
    // Chatwoot PR #12058 / #11787: first response and reply time were wrong
    // after a reopen.
    let (h, inbox) = setup(false).await;
    let c = h.write(&inbox, CUSTOMER, 1).await;
    h.clock().advance(Duration::minutes(10));
    h.answer(&c.name, HUMAN).await;
    h.clock().advance(Duration::minutes(50));
    h.resolve(&c.name).await.unwrap();
    let resolved = h.conversation(&c.name).await;
    assert_eq!(
        state(&metric(&resolved, pb::SlaMetric::Resolution).unwrap()),
        pb::SlaMetricState::Met
    );
    h.clock().advance(Duration::hours(2)); // +180, inside the reopen window
    let reopened = h.write(&inbox, CUSTOMER, 2).await;
    assert_eq!(reopened.name, c.name);
    assert_eq!(reopened.reopen_count, 1);
    let res = metric(&reopened, pb::SlaMetric::Resolution).unwrap();
    assert_eq!((res.cycle, time(&res.start_time)), (1, Some(minutes(180))));
    assert_eq!(time(&res.due_time), Some(minutes(180) + Duration::days(1)));
    let nrt = metric(&reopened, pb::SlaMetric::NextResponse).unwrap();
    assert_eq!((nrt.cycle, time(&nrt.start_time)), (0, Some(minutes(180))));
    assert_eq!(time(&nrt.due_time), Some(minutes(210)));
    let sla = reopened.sla.unwrap();
    assert_eq!(
        time(&sla.apply_time),
        Some(minutes(180)),
        "selected again on reopen"
    );
    let stored = facts(&h, &c.name).await;
    assert_eq!(
        stored,
        vec![
            ("first_response".into(), 0, 600, 600, Some(true)),
            ("periodic_update".into(), 0, 3000, 3000, Some(true)),
            ("resolution".into(), 0, 3600, 3600, Some(true)),
        ]
    );
}

#[tokio::test]
async fn the_acknowledgement_states_the_reply_time_of_the_customers_sla_and_the_next_opening() {
    let h = start_at(ManualClock::at(monday_8())).await;
    let office = office_hours(&h, "UTC").await;
    // Ada is a VIP: two business hours; everyone else a day.
    h.profiles
        .clone()
        .create_customer(tenant_request(
            TENANT,
            rapport_proto::profiles::CreateCustomerRequest {
                customer: Some(rapport_proto::profiles::Customer {
                    display_name: "Ada Lovelace".into(),
                    given_name: "Ada".into(),
                    emails: vec![rapport_proto::profiles::EmailAddress {
                        address: "ada@example.com".into(),
                        primary: true,
                        ..Default::default()
                    }],
                    tags: vec!["vip".into()],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("CreateCustomer: {}", describe(&s)));
    create_policy(&h, fallback("")).await;
    let vip = create_policy(
        &h,
        pb::SlaPolicy {
            display_name: "VIP".into(),
            condition: Some(pb::SlaCondition {
                customer_tags: vec!["VIP".into()],
                ..Default::default()
            }),
            targets: vec![sla_targets(pb::Priority::Normal, [7200, 0, 0, 0], &office)],
            ..Default::default()
        },
    )
    .await;
    let inbox = h
        .create_inbox(pb::Inbox {
            business_calendar: office.clone(),
            auto_acknowledgement: Some(pb::AutoAcknowledgement {
                enabled: true,
                subject: "Case {{case_number}}".into(),
                body: "Hi {{customer.given_name}}, we answer within {{expected_reply_time}}, \
                       by {{expected_reply_by}}. We open {{next_opening}}."
                    .into(),
            }),
            ..email_inbox("support@acme.example", 3600)
        })
        .await;
    let c = h.write(&inbox.name, CUSTOMER, 1).await;
    assert_eq!(c.sla.as_ref().unwrap().sla_policy, vip.name);
    let mail = h.smtp.wait_for("Subject", "Case 1").await;
    // Quoted-printable soft line breaks undone.
    let text = mail.data.replace("=\r\n", "").replace("=\n", "");
    assert!(
        text.contains(
            "Hi Ada, we answer within 2 hours, by Monday 7 December 2026, 11:00 UTC. \
             We open Monday 7 December 2026, 09:00 UTC."
        ),
        "{text}"
    );
    // The acknowledgement is no response: the first response still runs.
    let frt = metric(&h.conversation(&c.name).await, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(state(&frt), pb::SlaMetricState::Running);

    // The calendar is in use by the policy, then the inbox, then the open
    // conversation's pinned copy; once that one is resolved it can go.
    let delete = |name: String| {
        let client = h.client();
        async move {
            client
                .clone()
                .delete_business_calendar(tenant_request(
                    TENANT,
                    pb::DeleteBusinessCalendarRequest {
                        name,
                        ..Default::default()
                    },
                ))
                .await
        }
    };
    let in_use = |s: tonic::Status, by: &str| {
        assert_error(&s, tonic::Code::FailedPrecondition, "RESOURCE_IN_USE");
        assert!(s.message().contains(by), "{}", describe(&s));
    };
    in_use(delete(office.clone()).await.unwrap_err(), &vip.name);
    h.client()
        .delete_sla_policy(tenant_request(
            TENANT,
            pb::DeleteSlaPolicyRequest {
                name: vip.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    in_use(delete(office.clone()).await.unwrap_err(), &inbox.name);
    h.client()
        .update_inbox(tenant_request(
            TENANT,
            pb::UpdateInboxRequest {
                inbox: Some(pb::Inbox {
                    name: inbox.name.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["business_calendar".into()],
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();
    in_use(delete(office.clone()).await.unwrap_err(), &c.name);
    h.resolve(&c.name).await.unwrap();
    delete(office.clone()).await.unwrap();
}

/// The due time of the timer `sla:{c}:{suffix}`.
async fn timer_due(h: &Harness, c: &str, suffix: &str) -> Option<DateTime<Utc>> {
    let id = c.trim_start_matches("conversations/");
    rapport_events::timers::get(&h.db.reader, TENANT, &format!("sla:{id}:{suffix}"))
        .await
        .unwrap()
        .map(|t| t.due)
}

#[tokio::test]
async fn editing_a_calendar_moves_open_due_times_and_their_timers() {
    let (h, inbox) = setup(true).await;
    let c = h.write(&inbox, CUSTOMER, 1).await;
    let office = metric(&c, pb::SlaMetric::FirstResponse)
        .unwrap()
        .business_calendar;
    let at = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap();
    assert_eq!(
        timer_due(&h, &c.name, "first_response:0:breach").await,
        Some(at(7, 10))
    );
    let holiday = |holidays: Vec<pb::Holiday>| {
        let calendar = pb::BusinessCalendar {
            name: office.clone(),
            holidays,
            ..Default::default()
        };
        update_calendar(&h, calendar, &["holidays"])
    };
    // Monday becomes a holiday: due Tuesday 10:00, the timers with it.
    holiday(vec![pb::Holiday {
        date: "2026-12-07".into(),
        display_name: "Closed".into(),
        open_hours: vec![],
    }])
    .await;
    let moved = h.conversation(&c.name).await;
    let frt = metric(&moved, pb::SlaMetric::FirstResponse).unwrap();
    assert_eq!(time(&frt.due_time), Some(at(8, 10)));
    assert_eq!(
        timer_due(&h, &c.name, "first_response:0:breach").await,
        Some(at(8, 10))
    );
    // And back: due earlier again, and the breach fires then.
    holiday(vec![]).await;
    assert_eq!(
        timer_due(&h, &c.name, "first_response:0:breach").await,
        Some(at(7, 10))
    );
    h.clock().advance(Duration::hours(2));
    assert_eq!(
        until_alerts(&h.db, &c.name, false, 1).await,
        vec![(FRT, 0, at(7, 10))]
    );
}

#[tokio::test]
async fn an_inbox_calendar_change_moves_the_warning_timers_of_its_open_conversations() {
    // Calendar-time targets: a 1 h first response from Monday 08:00 warns at
    // 50 %, 08:30. The inbox's calendar places warnings within its hours.
    let (h, inbox) = setup(false).await;
    let c = h.write(&inbox, CUSTOMER, 1).await;
    let at = |hh: u32, mm: u32| Utc.with_ymd_and_hms(2026, 12, 7, hh, mm, 0).unwrap();
    assert_eq!(
        timer_due(&h, &c.name, "first_response:0:warning").await,
        Some(at(8, 30))
    );
    let office = office_hours(&h, "UTC").await;
    let set_calendar = |calendar: String| {
        let client = h.client();
        let inbox = inbox.clone();
        async move {
            client
                .clone()
                .update_inbox(tenant_request(
                    TENANT,
                    pb::UpdateInboxRequest {
                        inbox: Some(pb::Inbox {
                            name: inbox,
                            business_calendar: calendar,
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["business_calendar".into()],
                        }),
                        request_id: String::new(),
                    },
                ))
                .await
                .unwrap_or_else(|s| panic!("UpdateInbox: {}", describe(&s)))
        }
    };
    // Office hours from 09:00: the warning would fall at the due time, so
    // there is none.
    set_calendar(office.clone()).await;
    assert_eq!(
        timer_due(&h, &c.name, "first_response:0:warning").await,
        None
    );
    // The calendar the inbox names opens at 08:00 now: an edit of it moves
    // the inbox's conversations, and the warning is back at 08:30.
    let monday = pb::WeeklyInterval {
        day: pb::DayOfWeek::Monday as i32,
        start_time: "08:00".into(),
        end_time: "17:00".into(),
    };
    let calendar = pb::BusinessCalendar {
        name: office,
        weekly_hours: vec![monday],
        ..Default::default()
    };
    update_calendar(&h, calendar, &["weekly_hours"]).await;
    assert_eq!(
        timer_due(&h, &c.name, "first_response:0:warning").await,
        Some(at(8, 30))
    );
    // No calendar again: 08:30, and it is raised then (the warning names
    // the due time it warns of).
    set_calendar(String::new()).await;
    assert_eq!(
        timer_due(&h, &c.name, "first_response:0:warning").await,
        Some(at(8, 30))
    );
    h.clock().advance(Duration::minutes(29));
    assert!(alerts(&h.db, &c.name, true).await.is_empty());
    h.clock().advance(Duration::minutes(1));
    assert_eq!(
        until_alerts(&h.db, &c.name, true, 1).await,
        vec![(FRT, 0, at(9, 0))]
    );
}
