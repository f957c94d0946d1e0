//! Claim, send, record: the hand-over to the relay runs outside any
//! database transaction, so a stuck relay holds up no other write; a relay
//! that is down is tried again until it takes the message; every move of a
//! delivery is an event.
use std::time::Duration;

use crate::harness::*;
use crate::messages::{GRACE, agent, reply, send};
use crate::outbound_email::delivered;

/// An email inbox and a conversation Ada started in it.
async fn conversation(h: &Harness, from: &str) -> (pb::Inbox, pb::Conversation) {
    agent(h, TENANT, GRACE, pb::AgentKind::Human).await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let c = h
        .receive(&inbox.name, from, email("Hello", "<first@example.com>"))
        .await
        .conversation
        .unwrap();
    (inbox, c)
}

#[tokio::test]
async fn a_stuck_relay_holds_up_no_other_write() {
    let h = start().await;
    let (inbox, c) = conversation(&h, "ada@example.com").await;
    h.smtp.stall();
    let m = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "On its way", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.smtp.stalled() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never got the message"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The relay holds the message unanswered: writes go on meanwhile.
    let other = tokio::time::timeout(
        Duration::from_secs(5),
        h.receive(
            &inbox.name,
            "bob@example.com",
            email("Hi", "<bob1@example.com>"),
        ),
    )
    .await
    .expect("ReceiveMessage completed while a send was stuck");
    assert!(other.created);
    tokio::time::timeout(
        Duration::from_secs(5),
        send(
            &h,
            TENANT,
            GRACE,
            reply(&c.name, "note", pb::Visibility::Internal),
        ),
    )
    .await
    .expect("CreateMessage completed while a send was stuck")
    .unwrap();
    let waiting = delivered_state(&h, &m.name).await;
    assert_eq!(
        waiting,
        pb::DeliveryState::Scheduled as i32,
        "not sent before the relay answered"
    );

    h.smtp.release();
    let sent = delivered(&h, &m.name).await.delivery.unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Sent as i32, "{sent:?}");
    let mail = h.smtp.wait_for("Message-ID", &m.external_id).await;
    assert!(mail.data.contains("On its way"));
}

#[tokio::test]
async fn a_relay_that_is_down_is_tried_again_until_it_takes_the_message() {
    let h = start().await;
    let (_, c) = conversation(&h, "ada@example.com").await;
    h.smtp.refuse_next(2);
    let m = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Third time lucky", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let sent = delivered(&h, &m.name).await.delivery.unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Sent as i32, "{sent:?}");
    assert_eq!(h.smtp.refused(), 2, "refused twice, then taken");
    let copies: Vec<_> = h
        .smtp
        .received()
        .into_iter()
        .filter(|mail| mail.header("Message-ID").as_deref() == Some(m.external_id.as_str()))
        .collect();
    assert_eq!(copies.len(), 1);

    // One event: SCHEDULED → SENT (the retries were no moves).
    let events = outbox_events(&h.db, TENANT, &m.name).await;
    let changes: Vec<pb::MessageDeliveryChanged> = events
        .iter()
        .filter(|e| e.r#type == "rapport.conversations.v1.MessageDeliveryChanged")
        .map(payload)
        .collect();
    assert_eq!(changes.len(), 1, "{:?}", event_types(&events));
    assert_eq!(changes[0].message, m.name);
    assert_eq!(changes[0].conversation, c.name);
    assert_eq!(changes[0].from, pb::DeliveryState::Scheduled as i32);
    assert_eq!(changes[0].to, pb::DeliveryState::Sent as i32);
}

#[tokio::test]
async fn a_permanent_refusal_fails_at_once_with_an_event() {
    let h = start().await;
    let (_, c) = conversation(&h, "reject@example.com").await;
    let m = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Hi", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let failed = delivered(&h, &m.name).await.delivery.unwrap();
    assert_eq!(failed.state, pb::DeliveryState::Failed as i32);
    let events = outbox_events(&h.db, TENANT, &m.name).await;
    let change: pb::MessageDeliveryChanged = payload(
        events
            .iter()
            .find(|e| e.r#type == "rapport.conversations.v1.MessageDeliveryChanged")
            .expect("a MessageDeliveryChanged"),
    );
    assert_eq!(change.to, pb::DeliveryState::Failed as i32);
}

async fn delivered_state(h: &Harness, name: &str) -> i32 {
    h.client()
        .get_message(tenant_request(
            TENANT,
            pb::GetMessageRequest { name: name.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
        .delivery
        .unwrap()
        .state
}

/// A reply to Ada through a harness whose relay is `smtp`, configured by
/// `email`; the message once its delivery left SCHEDULED.
async fn through_relay(
    smtp: crate::smtp::Sink,
    email: impl FnOnce(String) -> rapport_conversations::EmailConfig,
) -> (Harness, pb::Message) {
    let h = start_with_relay(smtp, email).await;
    let (_, c) = conversation(&h, "ada@example.com").await;
    let m = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Authenticated", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let m = delivered(&h, &m.name).await;
    (h, m)
}

#[tokio::test]
async fn a_relay_asking_for_authentication_gets_the_configured_credentials() {
    let password = "s3cret pass/:@";
    let (h, m) = through_relay(
        crate::smtp::Sink::requiring("rapport", password).await,
        |url| rapport_conversations::EmailConfig {
            smtp_url: url,
            smtp_username: "rapport".into(),
            smtp_password: password.into(),
        },
    )
    .await;
    let sent = m.delivery.clone().unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Sent as i32, "{sent:?}");
    let mail = h.smtp.wait_for("Message-ID", &m.external_id).await;
    assert_eq!(mail.user.as_deref(), Some("rapport"));

    // The credentials may ride in the URL instead, percent-encoded.
    let (h, m) = through_relay(
        crate::smtp::Sink::requiring("rapport", password).await,
        |url| rapport_conversations::EmailConfig {
            smtp_url: url.replace("smtp://", "smtp://rapport:s3cret%20pass%2F%3A%40@"),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(m.delivery.unwrap().state, pb::DeliveryState::Sent as i32);
    let mail = h.smtp.wait_for("Message-ID", &m.external_id).await;
    assert_eq!(mail.user.as_deref(), Some("rapport"));
}

#[tokio::test]
async fn a_wrong_password_fails_the_message_without_showing_it() {
    let (h, m) = through_relay(
        crate::smtp::Sink::requiring("rapport", "right").await,
        |url| rapport_conversations::EmailConfig {
            smtp_url: url,
            smtp_username: "rapport".into(),
            smtp_password: "wr0ng-Passw0rd".into(),
        },
    )
    .await;
    let failed = m.delivery.unwrap();
    assert_eq!(failed.state, pb::DeliveryState::Failed as i32, "{failed:?}");
    assert!(failed.failure_reason.contains("535"), "{failed:?}");
    assert!(!failed.failure_reason.contains("wr0ng"), "{failed:?}");
    assert!(h.smtp.received().is_empty());
}
