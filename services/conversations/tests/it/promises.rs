//! Promises: made, kept on time or late, broken by their durable timer at
//! the due time exactly once (two workers, a restart), cancelled,
//! renegotiated (the original due time stays; a promise the customer sees
//! needs a message to them), reminders inside the owner's business hours,
//! "my promises due today" in the owner's zone, tenant isolation. The
//! service tells time by a `ManualClock` the tests move.
use chrono::{DateTime, Duration, Utc};
use rapport_conversations::ManualClock;
use rapport_kit::convert::{from_ts, ts};
use tonic::Code;

use crate::harness::*;

/// The caller of `tenant_request` acts as this principal.
const ME: &str = "test";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Setup {
    h: Harness,
    clock: ManualClock,
    conversation: String,
    inbox: String,
    me: pb::Agent,
}

/// The service at `now`, a conversation the customer started, and the
/// caller's agent (with `calendar`, or none).
async fn setup_at(now: &str, calendar_zone: Option<&str>) -> Setup {
    let clock = ManualClock::at(at(now));
    let h = start_at(clock.clone()).await;
    let calendar = match calendar_zone {
        Some(z) => office_hours(&h, z).await,
        None => String::new(),
    };
    let me = create_agent(&h, TENANT, ME, pb::AgentKind::Human, &calendar).await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let r = h
        .receive(
            &inbox.name,
            "ada@example.com",
            email("Call me back?", "<p1@example.com>"),
        )
        .await;
    Setup {
        h,
        clock,
        conversation: r.conversation.unwrap().name,
        inbox: inbox.name,
        me,
    }
}

fn promise(kind: pb::PromiseKind, due: DateTime<Utc>, visible: bool) -> pb::Promise {
    pb::Promise {
        kind: kind as i32,
        due_time: Some(ts(due)),
        customer_visible: visible,
        description: "Call back with the refund status".into(),
        ..Default::default()
    }
}

impl Setup {
    async fn try_make_in(
        &self,
        tenant: &str,
        p: pb::Promise,
        request_id: &str,
    ) -> Result<pb::Promise, tonic::Status> {
        self.h
            .client()
            .create_promise(tenant_request(
                tenant,
                pb::CreatePromiseRequest {
                    parent: self.conversation.clone(),
                    promise: Some(p),
                    request_id: request_id.into(),
                },
            ))
            .await
            .map(|r| r.into_inner().promise.unwrap())
    }

    async fn make(&self, p: pb::Promise) -> pb::Promise {
        self.try_make_in(TENANT, p, "")
            .await
            .unwrap_or_else(|s| panic!("CreatePromise: {}", describe(&s)))
    }

    async fn try_get_in(&self, tenant: &str, name: &str) -> Result<pb::Promise, tonic::Status> {
        self.h
            .client()
            .get_promise(tenant_request(
                tenant,
                pb::GetPromiseRequest { name: name.into() },
            ))
            .await
            .map(|r| r.into_inner().promise.unwrap())
    }

    async fn get(&self, name: &str) -> pb::Promise {
        self.try_get_in(TENANT, name)
            .await
            .unwrap_or_else(|s| panic!("GetPromise: {}", describe(&s)))
    }

    async fn keep(&self, name: &str, etag: &str) -> Result<pb::Promise, tonic::Status> {
        self.h
            .client()
            .keep_promise(tenant_request(
                TENANT,
                pb::KeepPromiseRequest {
                    name: name.into(),
                    etag: etag.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .map(|r| r.into_inner().promise.unwrap())
    }

    async fn cancel(&self, name: &str, etag: &str) -> Result<pb::Promise, tonic::Status> {
        self.h
            .client()
            .cancel_promise(tenant_request(
                TENANT,
                pb::CancelPromiseRequest {
                    name: name.into(),
                    etag: etag.into(),
                    request_id: String::new(),
                },
            ))
            .await
            .map(|r| r.into_inner().promise.unwrap())
    }

    async fn renegotiate(
        &self,
        req: pb::RenegotiatePromiseRequest,
    ) -> Result<pb::Promise, tonic::Status> {
        self.h
            .client()
            .renegotiate_promise(tenant_request(TENANT, req))
            .await
            .map(|r| r.into_inner().promise.unwrap())
    }

    async fn list_in(&self, tenant: &str, req: pb::ListPromisesRequest) -> Vec<pb::Promise> {
        self.h
            .client()
            .list_promises(tenant_request(tenant, req))
            .await
            .unwrap_or_else(|s| panic!("ListPromises: {}", describe(&s)))
            .into_inner()
            .promises
    }

    /// Moves time on and fires the due promise timers, as a second worker
    /// beside the service's own.
    async fn advance_and_fire(&self, by: Duration) {
        self.clock.advance(by);
        rapport_conversations::fire_automation_timers(&self.h.db, &self.clock)
            .await
            .expect("firing promise timers");
    }

    /// Waits (up to 10 s) until the promise is in `state`: the service's
    /// own worker may hold the timer's lease meanwhile.
    async fn eventually(&self, name: &str, state: pb::PromiseState) -> pb::Promise {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let p = self.get(name).await;
            if p.state == state as i32 {
                return p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} stayed {:?}",
                p.state()
            );
            rapport_conversations::fire_automation_timers(&self.h.db, &self.clock)
                .await
                .expect("firing promise timers");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn events(&self, name: &str) -> Vec<String> {
        event_types(&outbox_events(&self.h.db, TENANT, name).await)
    }
}

const MADE: &str = "rapport.conversations.v1.PromiseMade";
const KEPT: &str = "rapport.conversations.v1.PromiseKept";
const BROKEN: &str = "rapport.conversations.v1.PromiseBroken";
const RENEGOTIATED: &str = "rapport.conversations.v1.PromiseRenegotiated";
const CANCELLED: &str = "rapport.conversations.v1.PromiseCancelled";
const REMINDER: &str = "rapport.conversations.v1.PromiseReminderDue";

#[tokio::test]
async fn a_promise_is_made_then_kept_on_time_late_or_cancelled() {
    let s = setup_at("2026-12-03T09:00:00Z", None).await;
    let due = at("2026-12-03T15:00:00Z");

    // Made: the caller owns it; a retry makes nothing new.
    let p = s
        .try_make_in(
            TENANT,
            promise(pb::PromiseKind::Callback, due, true),
            "make-1",
        )
        .await
        .unwrap();
    let again = s
        .try_make_in(
            TENANT,
            promise(pb::PromiseKind::Callback, due, true),
            "make-1",
        )
        .await
        .unwrap();
    assert_eq!(again.name, p.name);
    assert!(p.name.starts_with(&format!("{}/promises/", s.conversation)));
    assert_eq!(p.owner, s.me.name);
    assert_eq!(p.state(), pb::PromiseState::Open);
    assert_eq!(p.due_time, p.original_due_time);
    assert_eq!(s.events(&p.name).await, [MADE]);
    let made: pb::PromiseMade = payload(&outbox_events(&s.h.db, TENANT, &p.name).await[0]);
    assert_eq!(made.owner, s.me.name);
    assert_eq!(made.kind, pb::PromiseKind::Callback as i32);
    assert!(made.customer_visible);
    assert_eq!(
        s.list_in(
            TENANT,
            pb::ListPromisesRequest {
                parent: s.conversation.clone(),
                ..Default::default()
            }
        )
        .await
        .len(),
        1
    );

    // Kept an hour early: on time. Not twice.
    s.clock.advance(Duration::hours(5));
    let stale = s.keep(&p.name, "\"9\"").await;
    assert_error(&expect_err(stale), Code::Aborted, "ETAG_MISMATCH");
    let kept = s.keep(&p.name, &p.etag).await.unwrap();
    assert_eq!(kept.state(), pb::PromiseState::Kept);
    assert!(kept.kept_on_time);
    assert_eq!(
        from_ts(kept.keep_time.as_ref().unwrap()),
        Some(at("2026-12-03T14:00:00Z"))
    );
    let events = outbox_events(&s.h.db, TENANT, &p.name).await;
    assert_eq!(event_types(&events), [MADE, KEPT]);
    assert!(payload::<pb::PromiseKept>(&events[1]).on_time);
    let twice = expect_err(s.keep(&p.name, "").await);
    assert_error(&twice, Code::FailedPrecondition, "PROMISE_NOT_OPEN");
    // A kept promise never breaks.
    s.advance_and_fire(Duration::hours(2)).await;
    assert_eq!(s.get(&p.name).await.state(), pb::PromiseState::Kept);
    assert_eq!(s.events(&p.name).await, [MADE, KEPT]);

    // Due in an hour, kept two hours late: broken at its due time, then
    // kept late (the break stays recorded).
    let late = s
        .make(promise(
            pb::PromiseKind::SendResource,
            s.clock_now() + Duration::hours(1),
            false,
        ))
        .await;
    s.advance_and_fire(Duration::hours(2)).await;
    let broken = s.eventually(&late.name, pb::PromiseState::Broken).await;
    assert_eq!(broken.break_time, late.due_time);
    let kept_late = s.keep(&late.name, "").await.unwrap();
    assert_eq!(kept_late.state(), pb::PromiseState::Kept);
    assert!(!kept_late.kept_on_time);
    assert_eq!(kept_late.break_time, late.due_time);
    let events = outbox_events(&s.h.db, TENANT, &late.name).await;
    assert_eq!(event_types(&events), [MADE, BROKEN, KEPT]);
    assert!(!payload::<pb::PromiseKept>(&events[2]).on_time);

    // Cancelled: never broken, never kept.
    let off = s
        .make(promise(
            pb::PromiseKind::Answer,
            s.clock_now() + Duration::hours(1),
            false,
        ))
        .await;
    let cancelled = s.cancel(&off.name, &off.etag).await.unwrap();
    assert_eq!(cancelled.state(), pb::PromiseState::Cancelled);
    assert_error(
        &expect_err(s.keep(&off.name, "").await),
        Code::FailedPrecondition,
        "PROMISE_NOT_OPEN",
    );
    assert_error(
        &expect_err(s.cancel(&off.name, "").await),
        Code::FailedPrecondition,
        "PROMISE_NOT_OPEN",
    );
    s.advance_and_fire(Duration::hours(2)).await;
    assert_eq!(s.events(&off.name).await, [MADE, CANCELLED]);
}

impl Setup {
    fn clock_now(&self) -> DateTime<Utc> {
        use rapport_conversations::Clock as _;
        self.clock.now()
    }
}

#[tokio::test]
async fn bad_promises_are_refused_and_change_nothing() {
    let s = setup_at("2026-12-03T09:00:00Z", None).await;
    let now = s.clock_now();
    let past = expect_err(
        s.try_make_in(TENANT, promise(pb::PromiseKind::Callback, now, true), "")
            .await,
    );
    assert_violation(&past, "promise.due_time");
    let mut no_kind = promise(pb::PromiseKind::Callback, now + Duration::hours(1), true);
    no_kind.kind = 0;
    assert_violation(
        &expect_err(s.try_make_in(TENANT, no_kind, "").await),
        "promise.kind",
    );
    let mut stranger = promise(pb::PromiseKind::Callback, now + Duration::hours(1), true);
    stranger.owner = format!("agents/{}", uuid::Uuid::now_v7());
    assert_violation(
        &expect_err(s.try_make_in(TENANT, stranger, "").await),
        "promise.owner",
    );
    let mut long_lead = promise(pb::PromiseKind::Callback, now + Duration::hours(1), true);
    long_lead.reminder_lead_time = Some(prost_types::Duration {
        seconds: 31 * 86_400,
        nanos: 0,
    });
    assert_violation(
        &expect_err(s.try_make_in(TENANT, long_lead, "").await),
        "promise.reminder_lead_time",
    );
    let missing = expect_err(
        s.try_get_in(
            TENANT,
            &format!("{}/promises/{}", s.conversation, uuid::Uuid::now_v7()),
        )
        .await,
    );
    assert_error(&missing, Code::NotFound, "PROMISE_NOT_FOUND");
    assert_violation(
        &expect_err(s.try_get_in(TENANT, "promises/x").await),
        "name",
    );
    // A closed conversation takes no promise.
    s.h.resolve(&s.conversation).await.unwrap();
    s.h.client()
        .close_conversation(tenant_request(
            TENANT,
            pb::CloseConversationRequest {
                name: s.conversation.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let closed = expect_err(
        s.try_make_in(
            TENANT,
            promise(pb::PromiseKind::Callback, now + Duration::hours(1), true),
            "",
        )
        .await,
    );
    assert_error(
        &closed,
        Code::FailedPrecondition,
        "INVALID_STATE_TRANSITION",
    );
    assert!(
        s.list_in(
            TENANT,
            pb::ListPromisesRequest {
                parent: "conversations/-".into(),
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );
}

#[tokio::test]
async fn a_promise_breaks_exactly_once_with_two_workers_and_a_restart() {
    let mut s = setup_at("2026-12-03T09:00:00Z", None).await;
    let due = s.clock_now() + Duration::hours(1);
    let mut names = Vec::new();
    for _ in 0..5 {
        names.push(
            s.make(promise(pb::PromiseKind::FollowUp, due, false))
                .await
                .name,
        );
    }
    // One renegotiated to later: its old due time must not break it.
    let moved = &names[4];
    s.renegotiate(pb::RenegotiatePromiseRequest {
        name: moved.clone(),
        due_time: Some(ts(due + Duration::hours(3))),
        ..Default::default()
    })
    .await
    .unwrap();

    s.clock.advance(Duration::hours(2));
    // Two workers at once, beside the service's own.
    let (a, b) = tokio::join!(
        rapport_conversations::fire_automation_timers(&s.h.db, &s.clock),
        rapport_conversations::fire_automation_timers(&s.h.db, &s.clock),
    );
    a.unwrap();
    b.unwrap();
    for name in &names[..4] {
        s.eventually(name, pb::PromiseState::Broken).await;
    }
    s.h.restart().await;
    s.advance_and_fire(Duration::minutes(1)).await;
    for name in &names[..4] {
        let events = outbox_events(&s.h.db, TENANT, name).await;
        assert_eq!(event_types(&events), [MADE, BROKEN], "{name}");
        let broken: pb::PromiseBroken = payload(&events[1]);
        assert_eq!(broken.due_time, Some(ts(due)));
        assert_eq!(s.get(name).await.state(), pb::PromiseState::Broken);
    }
    assert_eq!(s.get(moved).await.state(), pb::PromiseState::Open);
    assert_eq!(s.events(moved).await, [MADE, RENEGOTIATED]);
    // At its new due time, once.
    s.clock.advance(Duration::hours(2));
    let (a, b) = tokio::join!(
        rapport_conversations::fire_automation_timers(&s.h.db, &s.clock),
        rapport_conversations::fire_automation_timers(&s.h.db, &s.clock),
    );
    a.unwrap();
    b.unwrap();
    s.eventually(moved, pb::PromiseState::Broken).await;
    s.advance_and_fire(Duration::minutes(1)).await;
    assert_eq!(s.events(moved).await, [MADE, RENEGOTIATED, BROKEN]);
}

async fn messages(s: &Setup) -> Vec<pb::Message> {
    s.h.client()
        .list_messages(tenant_request(
            TENANT,
            pb::ListMessagesRequest {
                parent: s.conversation.clone(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .messages
}

#[tokio::test]
async fn renegotiation_keeps_the_original_due_time_and_tells_the_customer() {
    let s = setup_at("2026-12-03T09:00:00Z", None).await;
    let due = s.clock_now() + Duration::hours(2);
    let p = s.make(promise(pb::PromiseKind::Callback, due, true)).await;
    let later = due + Duration::days(1);
    let before = messages(&s).await.len();

    // Seen by the customer: no message, no change.
    let refused = expect_err(
        s.renegotiate(pb::RenegotiatePromiseRequest {
            name: p.name.clone(),
            due_time: Some(ts(later)),
            ..Default::default()
        })
        .await,
    );
    assert_error(
        &refused,
        Code::FailedPrecondition,
        "CUSTOMER_MESSAGE_REQUIRED",
    );
    assert_eq!(s.get(&p.name).await.etag, p.etag);
    assert_eq!(messages(&s).await.len(), before);

    // A past due time, or text and a message at once: invalid.
    let past = expect_err(
        s.renegotiate(pb::RenegotiatePromiseRequest {
            name: p.name.clone(),
            due_time: Some(ts(s.clock_now())),
            message_text: "Tomorrow".into(),
            ..Default::default()
        })
        .await,
    );
    assert_violation(&past, "due_time");

    // With text: sent through the outbound path in the same change.
    let moved = s
        .renegotiate(pb::RenegotiatePromiseRequest {
            name: p.name.clone(),
            etag: p.etag.clone(),
            due_time: Some(ts(later)),
            message_text: "We will call you tomorrow at this time.".into(),
            request_id: "reneg-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(moved.due_time, Some(ts(later)));
    assert_eq!(moved.original_due_time, Some(ts(due)));
    assert_eq!(moved.renegotiation_count, 1);
    let sent = messages(&s).await;
    assert_eq!(sent.len(), before + 1);
    let notice = sent.last().unwrap();
    assert_eq!(notice.visibility(), pb::Visibility::Public);
    assert_eq!(notice.text, "We will call you tomorrow at this time.");
    let events = outbox_events(&s.h.db, TENANT, &p.name).await;
    assert_eq!(event_types(&events), [MADE, RENEGOTIATED]);
    let r: pb::PromiseRenegotiated = payload(&events[1]);
    assert_eq!(r.message, notice.name);
    assert_eq!(r.original_due_time, Some(ts(due)));
    assert_eq!(r.previous_due_time, Some(ts(due)));
    // A retry sends nothing more.
    let retry = s
        .renegotiate(pb::RenegotiatePromiseRequest {
            name: p.name.clone(),
            etag: p.etag.clone(),
            due_time: Some(ts(later)),
            message_text: "We will call you tomorrow at this time.".into(),
            request_id: "reneg-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(retry.etag, moved.etag);
    assert_eq!(messages(&s).await.len(), before + 1);

    // With a message already sent: that one; an internal note is not one.
    let note = crate::messages::send(
        &s.h,
        TENANT,
        ME,
        crate::messages::reply(&s.conversation, "internal", pb::Visibility::Internal),
    )
    .await
    .unwrap();
    let refused = expect_err(
        s.renegotiate(pb::RenegotiatePromiseRequest {
            name: p.name.clone(),
            due_time: Some(ts(later + Duration::days(1))),
            message: note.name.clone(),
            ..Default::default()
        })
        .await,
    );
    assert_violation(&refused, "message");
    let again = s
        .renegotiate(pb::RenegotiatePromiseRequest {
            name: p.name.clone(),
            due_time: Some(ts(later + Duration::days(1))),
            message: notice.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.original_due_time, Some(ts(due)));
    assert_eq!(again.renegotiation_count, 2);

    // The old due times pass: still open.
    s.advance_and_fire(Duration::days(1) + Duration::hours(3))
        .await;
    assert_eq!(s.get(&p.name).await.state(), pb::PromiseState::Open);

    // Not seen by the customer: no message needed.
    let quiet = s
        .make(promise(
            pb::PromiseKind::Answer,
            s.clock_now() + Duration::hours(1),
            false,
        ))
        .await;
    let moved = s
        .renegotiate(pb::RenegotiatePromiseRequest {
            name: quiet.name.clone(),
            due_time: Some(ts(s.clock_now() + Duration::hours(5))),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(moved.original_due_time, quiet.due_time);
}

#[tokio::test]
async fn reminders_fall_inside_the_owners_business_hours() {
    // Thursday 3 December 2026, 10:00 in Berlin; the owner works weekdays
    // 09:00–17:00 Berlin.
    let s = setup_at("2026-12-03T09:00:00Z", Some("Europe/Berlin")).await;
    // Due Monday 10:00 Berlin, two hours' notice: Friday 16:00 Berlin
    // (15:00 UTC), not Monday 08:00 when the owner is not there.
    let mut p = promise(pb::PromiseKind::Callback, at("2026-12-07T09:00:00Z"), true);
    p.reminder_lead_time = Some(prost_types::Duration {
        seconds: 7200,
        nanos: 0,
    });
    let p = s.make(p).await;
    assert_eq!(p.reminder_time, Some(ts(at("2026-12-04T15:00:00Z"))));
    // Friday 15:59 Berlin: not yet.
    s.advance_and_fire(at("2026-12-04T14:59:00Z") - s.clock_now())
        .await;
    assert_eq!(s.events(&p.name).await, [MADE]);
    s.clock.advance(Duration::minutes(1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.events(&p.name).await.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no reminder");
        rapport_conversations::fire_automation_timers(&s.h.db, &s.clock)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let events = outbox_events(&s.h.db, TENANT, &p.name).await;
    assert_eq!(event_types(&events), [MADE, REMINDER]);
    let reminder: pb::PromiseReminderDue = payload(&events[1]);
    assert_eq!(reminder.owner, s.me.name);
    let after = s.get(&p.name).await;
    assert_eq!(after.reminder_time, None);
    assert_eq!(after.state(), pb::PromiseState::Open);
    // Once.
    s.advance_and_fire(Duration::hours(1)).await;
    assert_eq!(s.events(&p.name).await, [MADE, REMINDER]);
}

#[tokio::test]
async fn my_promises_due_today_end_at_midnight_in_my_zone() {
    // 23:30 on 1 December in Berlin, 22:30 UTC.
    let s = setup_at("2026-12-01T22:30:00Z", Some("Europe/Berlin")).await;
    let bob = create_agent(&s.h, TENANT, "apiKeys/bob", pb::AgentKind::Human, "").await;
    let before_berlin_midnight = at("2026-12-01T22:50:00Z");
    let after_berlin_midnight = at("2026-12-01T23:30:00Z");
    let tomorrow = at("2026-12-02T10:00:00Z");
    let mine_today = s
        .make(promise(
            pb::PromiseKind::Callback,
            before_berlin_midnight,
            true,
        ))
        .await;
    s.make(promise(
        pb::PromiseKind::Callback,
        after_berlin_midnight,
        true,
    ))
    .await;
    let mut bobs = Vec::new();
    for due in [before_berlin_midnight, after_berlin_midnight, tomorrow] {
        let mut p = promise(pb::PromiseKind::Answer, due, false);
        p.owner = bob.name.clone();
        bobs.push(s.make(p).await.name);
    }
    let names = |v: Vec<pb::Promise>| v.into_iter().map(|p| p.name).collect::<Vec<_>>();
    let today = |owner: &str| pb::ListPromisesRequest {
        parent: "conversations/-".into(),
        owner: owner.into(),
        due_today: true,
        states: vec![pb::PromiseState::Open as i32],
        ..Default::default()
    };
    // Mine: Berlin's day ends at 23:00 UTC.
    assert_eq!(
        names(s.list_in(TENANT, today("me")).await),
        [mine_today.name]
    );
    // Bob has no calendar: the default zone, UTC, whose day ends later.
    assert_eq!(names(s.list_in(TENANT, today(&bob.name)).await), bobs[..2]);
    // Everyone's, soonest due first, by page.
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let r =
            s.h.client()
                .list_promises(tenant_request(
                    TENANT,
                    pb::ListPromisesRequest {
                        parent: "conversations/-".into(),
                        page_size: 2,
                        page_token: token.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
        all.extend(r.promises);
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(all.len(), 5);
    assert!(
        all.windows(2)
            .all(|w| w[0].due_time.as_ref().map(from_ts) <= w[1].due_time.as_ref().map(from_ts))
    );
    // A due range.
    let ranged = s
        .list_in(
            TENANT,
            pb::ListPromisesRequest {
                parent: s.conversation.clone(),
                due_after: Some(ts(after_berlin_midnight)),
                due_before: Some(ts(tomorrow)),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(ranged.len(), 2);
    // Due today needs an owner.
    let status = expect_err(
        s.h.client()
            .list_promises(tenant_request(
                TENANT,
                pb::ListPromisesRequest {
                    parent: "conversations/-".into(),
                    due_today: true,
                    ..Default::default()
                },
            ))
            .await,
    );
    assert_violation(&status, "owner");
}

#[tokio::test]
async fn promises_stay_in_their_tenant() {
    let s = setup_at("2026-12-03T09:00:00Z", None).await;
    let p = s
        .make(promise(
            pb::PromiseKind::Resolution,
            s.clock_now() + Duration::hours(1),
            false,
        ))
        .await;
    create_agent(&s.h, OTHER_TENANT, ME, pb::AgentKind::Human, "").await;
    let status = expect_err(s.try_get_in(OTHER_TENANT, &p.name).await);
    assert_error(&status, Code::NotFound, "PROMISE_NOT_FOUND");
    assert!(
        s.list_in(
            OTHER_TENANT,
            pb::ListPromisesRequest {
                parent: "conversations/-".into(),
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );
    let status = expect_err(
        s.try_make_in(
            OTHER_TENANT,
            promise(
                pb::PromiseKind::Resolution,
                s.clock_now() + Duration::hours(1),
                false,
            ),
            "",
        )
        .await,
    );
    assert_error(&status, Code::NotFound, "CONVERSATION_NOT_FOUND");
    let status = expect_err(
        s.h.client()
            .keep_promise(tenant_request(
                OTHER_TENANT,
                pb::KeepPromiseRequest {
                    name: p.name.clone(),
                    ..Default::default()
                },
            ))
            .await,
    );
    assert_error(&status, Code::NotFound, "PROMISE_NOT_FOUND");
    assert_eq!(s.get(&p.name).await.state(), pb::PromiseState::Open);
}

#[tokio::test]
async fn open_promises_and_agents_keep_what_they_need() {
    let s = setup_at("2026-12-03T09:00:00Z", Some("Europe/Berlin")).await;
    let p = s
        .make(promise(
            pb::PromiseKind::Callback,
            s.clock_now() + Duration::days(2),
            true,
        ))
        .await;
    // Resolving leaves the promise as it is; closing waits for it.
    s.h.resolve(&s.conversation).await.unwrap();
    assert_eq!(s.get(&p.name).await.state(), pb::PromiseState::Open);
    let close = || async {
        s.h.client()
            .close_conversation(tenant_request(
                TENANT,
                pb::CloseConversationRequest {
                    name: s.conversation.clone(),
                    ..Default::default()
                },
            ))
            .await
    };
    let status = expect_err(close().await);
    assert_error(&status, Code::FailedPrecondition, "RESOURCE_IN_USE");
    s.keep(&p.name, "").await.unwrap();
    close().await.unwrap();
    // The owner's calendar cannot be deleted while the owner works by it.
    let status = expect_err(
        s.h.client()
            .delete_business_calendar(tenant_request(
                TENANT,
                pb::DeleteBusinessCalendarRequest {
                    name: s.me.business_calendar.clone(),
                    ..Default::default()
                },
            ))
            .await,
    );
    assert_error(&status, Code::FailedPrecondition, "RESOURCE_IN_USE");
}

#[tokio::test]
async fn new_hours_of_the_owner_move_a_pending_reminder() {
    // Thursday 3 December 2026, 09:00 UTC; the owner keeps no hours yet.
    let s = setup_at("2026-12-03T09:00:00Z", None).await;
    let mut p = promise(pb::PromiseKind::Callback, at("2026-12-07T09:00:00Z"), true);
    p.reminder_lead_time = Some(prost_types::Duration {
        seconds: 7200,
        nanos: 0,
    });
    let p = s.make(p).await;
    assert_eq!(p.reminder_time, Some(ts(at("2026-12-07T07:00:00Z"))));
    // The owner now works weekdays 09:00–17:00 Berlin: two working hours
    // before Monday 10:00 Berlin is Friday 16:00 Berlin.
    let office = office_hours(&s.h, "Europe/Berlin").await;
    s.h.client()
        .update_agent(tenant_request(
            TENANT,
            pb::UpdateAgentRequest {
                agent: Some(pb::Agent {
                    name: s.me.name.clone(),
                    business_calendar: office.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["business_calendar".into()],
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|st| panic!("UpdateAgent: {}", describe(&st)));
    assert_eq!(
        s.get(&p.name).await.reminder_time,
        Some(ts(at("2026-12-04T15:00:00Z")))
    );
    // Friday becomes a holiday of that calendar: Thursday 16:00 Berlin.
    let closed = pb::Holiday {
        date: "2026-12-04".into(),
        display_name: "Closed".into(),
        open_hours: vec![],
    };
    let calendar = pb::BusinessCalendar {
        name: office,
        holidays: vec![closed],
        ..Default::default()
    };
    update_calendar(&s.h, calendar, &["holidays"]).await;
    let moved = s.get(&p.name).await;
    assert_eq!(moved.reminder_time, Some(ts(at("2026-12-03T15:00:00Z"))));
    // The due time and the promise itself are untouched.
    assert_eq!(moved.due_time, p.due_time);
    assert_eq!(moved.state(), pb::PromiseState::Open);
    assert_eq!(s.events(&p.name).await, [MADE]);
}

/// CreatePromise and CloseConversation at once, many times: one of them
/// sees the other, so a CLOSED conversation never holds an OPEN promise
/// (the check and the write are ordered by the conversation's row).
#[tokio::test]
async fn a_promise_made_while_closing_never_outlives_the_close() {
    let s = setup_at("2026-12-03T09:00:00Z", None).await;
    let due = s.clock_now() + Duration::days(2);
    for n in 0..25 {
        let from = format!("race{n}@example.com");
        let r =
            s.h.receive(
                &s.inbox,
                &from,
                email("Race", &format!("<race{n}@example.com>")),
            )
            .await;
        let conversation = r.conversation.unwrap().name;
        s.h.resolve(&conversation).await.unwrap();
        let (mut a, mut b) = (s.h.client(), s.h.client());
        let make = a.create_promise(tenant_request(
            TENANT,
            pb::CreatePromiseRequest {
                parent: conversation.clone(),
                promise: Some(promise(pb::PromiseKind::Callback, due, false)),
                request_id: String::new(),
            },
        ));
        let close = b.close_conversation(tenant_request(
            TENANT,
            pb::CloseConversationRequest {
                name: conversation.clone(),
                ..Default::default()
            },
        ));
        let (made, closed) = tokio::join!(make, close);
        assert!(
            made.is_ok() || closed.is_ok(),
            "one of the two goes through: {made:?} {closed:?}"
        );
        let state = s.h.conversation(&conversation).await.state();
        let open = s
            .list_in(
                TENANT,
                pb::ListPromisesRequest {
                    parent: conversation.clone(),
                    states: vec![pb::PromiseState::Open as i32],
                    ..Default::default()
                },
            )
            .await;
        assert!(
            state != pb::ConversationState::Closed || open.is_empty(),
            "round {n}: {conversation} is CLOSED with OPEN promises {open:?}"
        );
        assert_eq!(made.is_ok(), !open.is_empty());
        assert_eq!(closed.is_ok(), state == pb::ConversationState::Closed);
    }
}
