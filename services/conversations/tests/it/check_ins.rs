//! Pending check-ins and auto-resolve: a conversation left PENDING gets
//! one check-in (a SYSTEM message, never a response), then is resolved by
//! automation, flagged `auto`; a customer's message or any state change
//! cancels the timers. The service tells time by a `ManualClock`.
use chrono::{DateTime, Duration, Utc};
use rapport_conversations::{Clock as _, ManualClock};

use crate::harness::*;

const DAY: i64 = 86_400;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn secs(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

struct Setup {
    h: Harness,
    clock: ManualClock,
    inbox: String,
    conversation: String,
}

/// An inbox checking in after 2 days and auto-resolving 3 days later; a
/// conversation the customer started, answered by an agent, then marked
/// pending.
async fn pending() -> Setup {
    let clock = ManualClock::at(at("2026-12-03T09:00:00Z"));
    let h = start_at(clock.clone()).await;
    crate::messages::agent(&h, TENANT, "test", pb::AgentKind::Human).await;
    let inbox = h
        .create_inbox(pb::Inbox {
            pending_check_in_after: secs(2 * DAY),
            auto_resolve_after: secs(3 * DAY),
            check_in_text: "Still there? Case {{case_number}} waits for you.".into(),
            ..email_inbox("support@acme.example", 3600)
        })
        .await;
    let r = h
        .receive(
            &inbox.name,
            "ada@example.com",
            email("My order is late", "<c1@example.com>"),
        )
        .await;
    let conversation = r.conversation.unwrap().name;
    crate::messages::send(
        &h,
        TENANT,
        "test",
        crate::messages::reply(
            &conversation,
            "Could you send the order number?",
            pb::Visibility::Public,
        ),
    )
    .await
    .unwrap();
    let s = Setup {
        h,
        clock,
        inbox: inbox.name,
        conversation,
    };
    s.mark_pending().await;
    s
}

impl Setup {
    async fn mark_pending(&self) {
        self.h
            .client()
            .mark_conversation_pending(tenant_request(
                TENANT,
                pb::MarkConversationPendingRequest {
                    name: self.conversation.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("MarkConversationPending: {}", describe(&s)));
    }

    /// Moves time on and fires the due timers with two workers at once,
    /// beside the service's own.
    async fn advance_and_fire(&self, by: Duration) {
        self.clock.advance(by);
        let (a, b) = tokio::join!(
            rapport_conversations::fire_automation_timers(&self.h.db, &self.clock),
            rapport_conversations::fire_automation_timers(&self.h.db, &self.clock),
        );
        a.unwrap();
        b.unwrap();
    }

    async fn messages(&self) -> Vec<pb::Message> {
        self.h
            .client()
            .list_messages(tenant_request(
                TENANT,
                pb::ListMessagesRequest {
                    parent: self.conversation.clone(),
                    page_size: 100,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .messages
    }

    /// Waits (up to 10 s) until `check` holds of the conversation: the
    /// service's own worker may hold a timer's lease meanwhile.
    async fn until(&self, what: &str, check: impl Fn(&pb::Conversation, usize) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let c = self.h.conversation(&self.conversation).await;
            if check(&c, self.messages().await.len()) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "never {what}: {c:?}");
            rapport_conversations::fire_automation_timers(&self.h.db, &self.clock)
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn customer_writes(&self, external_id: &str) {
        self.h
            .receive(
                &self.inbox,
                "ada@example.com",
                email("Here it is: 1234", external_id),
            )
            .await;
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

#[tokio::test]
async fn a_pending_conversation_gets_one_check_in_then_is_auto_resolved() {
    let s = pending().await;
    let before = s.h.conversation(&s.conversation).await;
    let count = s.messages().await.len();

    // A minute early: nothing.
    s.advance_and_fire(Duration::seconds(2 * DAY) - Duration::minutes(1))
        .await;
    assert_eq!(s.messages().await.len(), count);

    // Two days: one check-in, by Rapport, public, never a response.
    s.advance_and_fire(Duration::minutes(1)).await;
    s.until("checked in", |_, n| n == count + 1).await;
    s.advance_and_fire(Duration::minutes(1)).await;
    let messages = s.messages().await;
    assert_eq!(messages.len(), count + 1);
    let check_in = messages.last().unwrap();
    assert_eq!(
        check_in.sender.as_ref().unwrap().kind(),
        pb::SenderKind::System
    );
    assert_eq!(check_in.visibility(), pb::Visibility::Public);
    assert_eq!(
        check_in.text,
        format!("Still there? Case {} waits for you.", before.case_number)
    );
    let sent: pb::MessageSent = payload(&outbox_events(&s.h.db, TENANT, &check_in.name).await[0]);
    assert!(!sent.first_response);
    let c = s.h.conversation(&s.conversation).await;
    assert_eq!(c.state(), pb::ConversationState::Pending);
    assert_eq!(c.first_response_time, before.first_response_time);

    // Three days later: resolved by automation, flagged.
    s.advance_and_fire(Duration::seconds(3 * DAY)).await;
    s.until("auto-resolved", |c, _| {
        c.state() == pb::ConversationState::Resolved
    })
    .await;
    s.advance_and_fire(Duration::minutes(1)).await;
    let c = s.h.conversation(&s.conversation).await;
    let resolution = c.resolution.unwrap();
    assert!(resolution.auto);
    assert_eq!(resolution.code, "auto_resolved");
    assert_eq!(resolution.resolved_by, "");
    let events = outbox_events(&s.h.db, TENANT, &s.conversation).await;
    let resolved: Vec<_> = events
        .iter()
        .filter(|e| e.r#type == "rapport.conversations.v1.ConversationResolved")
        .collect();
    assert_eq!(resolved.len(), 1, "resolved exactly once");
    assert!(payload::<pb::ConversationResolved>(resolved[0]).auto);
    let changed: pb::ConversationStatusChanged = payload(
        events
            .iter()
            .rfind(|e| e.r#type == "rapport.conversations.v1.ConversationStatusChanged")
            .unwrap(),
    );
    assert_eq!(changed.cause(), pb::TransitionCause::Automation);
    // One check-in in all.
    assert_eq!(s.messages().await.len(), count + 1);
}

#[tokio::test]
async fn a_customer_reply_cancels_the_check_in_and_the_auto_resolve() {
    let s = pending().await;
    let count = s.messages().await.len();

    // The customer answers before the check-in: open, nothing sent.
    s.advance_and_fire(Duration::seconds(DAY)).await;
    s.customer_writes("<c2@example.com>").await;
    assert_eq!(
        s.h.conversation(&s.conversation).await.state(),
        pb::ConversationState::Open
    );
    s.advance_and_fire(Duration::seconds(10 * DAY)).await;
    assert_eq!(s.messages().await.len(), count + 1);
    assert_eq!(
        s.h.conversation(&s.conversation).await.state(),
        pb::ConversationState::Open
    );

    // Pending again (a new cycle): checked in two days after that.
    s.mark_pending().await;
    let pending_since = s.now();
    s.advance_and_fire(Duration::seconds(2 * DAY)).await;
    s.until("checked in", |_, n| n == count + 2).await;
    assert!(s.now() >= pending_since + Duration::seconds(2 * DAY));

    // The customer answers after the check-in: no auto-resolve.
    s.customer_writes("<c3@example.com>").await;
    s.advance_and_fire(Duration::seconds(10 * DAY)).await;
    let c = s.h.conversation(&s.conversation).await;
    assert_eq!(c.state(), pb::ConversationState::Open);
    assert!(c.resolution.is_none());
    let events = event_types(&outbox_events(&s.h.db, TENANT, &s.conversation).await);
    assert!(!events.iter().any(|e| e.ends_with("ConversationResolved")));
}

#[tokio::test]
async fn an_agents_resolve_cancels_the_auto_resolve() {
    let s = pending().await;
    s.h.resolve(&s.conversation).await.unwrap();
    s.advance_and_fire(Duration::seconds(10 * DAY)).await;
    let c = s.h.conversation(&s.conversation).await;
    assert_eq!(c.state(), pb::ConversationState::Resolved);
    assert!(!c.resolution.unwrap().auto);
    let events = outbox_events(&s.h.db, TENANT, &s.conversation).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.r#type.ends_with("ConversationResolved"))
            .count(),
        1
    );
}

#[tokio::test]
async fn check_in_settings_are_validated_and_updatable() {
    let h = start().await;
    let status = expect_err(
        h.try_create_inbox(
            TENANT,
            pb::Inbox {
                pending_check_in_after: secs(-5),
                auto_resolve_after: secs(400 * DAY),
                ..email_inbox("help@acme.example", 0)
            },
            "",
        )
        .await,
    );
    assert_violation(&status, "inbox.pending_check_in_after");
    assert_violation(&status, "inbox.auto_resolve_after");
    let inbox = h.create_inbox(email_inbox("help@acme.example", 0)).await;
    assert_eq!(inbox.pending_check_in_after, None);
    let updated = h
        .client()
        .update_inbox(tenant_request(
            TENANT,
            pb::UpdateInboxRequest {
                inbox: Some(pb::Inbox {
                    name: inbox.name.clone(),
                    auto_resolve_after: secs(7 * DAY),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["auto_resolve_after".into()],
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .inbox
        .unwrap();
    assert_eq!(updated.auto_resolve_after, secs(7 * DAY));
    assert_eq!(updated.pending_check_in_after, None);
    assert_eq!(updated.address, "help@acme.example");
}
