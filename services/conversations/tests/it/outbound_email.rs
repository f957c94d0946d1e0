//! Email delivery through a real SMTP listener: From the inbox, the
//! Message-ID stored, In-Reply-To and References from the thread, SENT or
//! FAILED with the relay's reason, notes never sent.
use std::time::Duration;

use crate::harness::*;
use crate::messages::{GRACE, agent, reply, send};

/// The message once its delivery left SCHEDULED (ten seconds at most).
pub(crate) async fn delivered(h: &Harness, name: &str) -> pb::Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = h
            .client()
            .get_message(tenant_request(
                TENANT,
                pb::GetMessageRequest { name: name.into() },
            ))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap();
        let state = m.delivery.as_ref().map(|d| d.state);
        if state != Some(pb::DeliveryState::Scheduled as i32) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} still scheduled after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_agent_reply_reaches_the_relay_threaded_from_the_inbox_address() {
    let h = start().await;
    agent(&h, TENANT, GRACE, pb::AgentKind::Human).await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let r = h
        .receive(
            &inbox.name,
            "ada@example.com",
            pb::Message {
                subject: "Order 42".into(),
                ..email("Where is it?", "<m1@example.com>")
            },
        )
        .await;
    let c = r.conversation.unwrap();

    let note = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "checking", pb::Visibility::Internal),
    )
    .await
    .unwrap();
    let first = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "It shipped today.", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let sent = delivered(&h, &first.name).await;
    let delivery = sent.delivery.clone().unwrap();
    assert_eq!(
        delivery.state,
        pb::DeliveryState::Sent as i32,
        "{delivery:?}"
    );
    let mail = h.smtp.wait_for("Message-ID", &first.external_id).await;
    assert_eq!(
        mail.from, "support@acme.example",
        "the inbox, never no-reply"
    );
    assert_eq!(mail.to, ["ada@example.com"]);
    assert_eq!(
        mail.header("From").as_deref(),
        Some("Support <support@acme.example>")
    );
    assert_eq!(mail.header("To").as_deref(), Some("ada@example.com"));
    assert_eq!(mail.header("Subject").as_deref(), Some("Re: Order 42"));
    assert_eq!(
        mail.header("In-Reply-To").as_deref(),
        Some("<m1@example.com>")
    );
    assert_eq!(
        mail.header("References").as_deref(),
        Some("<m1@example.com>")
    );
    assert!(mail.data.contains("It shipped today."), "{}", mail.data);

    // The next reply answers the first and references the whole thread.
    let second = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Tracking: 42", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let mail = h.smtp.wait_for("Message-ID", &second.external_id).await;
    assert_eq!(mail.header("In-Reply-To"), Some(first.external_id.clone()));
    assert_eq!(
        mail.header("References"),
        Some(format!("<m1@example.com> {}", first.external_id))
    );
    // The note never left.
    assert_eq!(h.smtp.received().len(), 2);
    assert_eq!(delivered(&h, &note.name).await.delivery, None);
}

#[tokio::test]
async fn a_relay_refusal_is_recorded_as_failed_with_its_reason() {
    let h = start().await;
    agent(&h, TENANT, GRACE, pb::AgentKind::Human).await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let r = h
        .receive(
            &inbox.name,
            "reject@example.com",
            email("Hello", "<m2@example.com>"),
        )
        .await;
    let c = r.conversation.unwrap();
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
    assert!(failed.failure_reason.contains("550"), "{failed:?}");
    assert!(h.smtp.received().is_empty());
}

#[tokio::test]
async fn the_customers_answer_threads_back_to_the_conversation_it_answers() {
    let h = start().await;
    agent(&h, TENANT, GRACE, pb::AgentKind::Human).await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    // Ada has a case open; an agent also starts another with her.
    let open = h
        .receive(
            &inbox.name,
            "ada@example.com",
            email("Case one", "<c1@example.com>"),
        )
        .await
        .conversation
        .unwrap();
    let started = h
        .client()
        .create_conversation(tenant_request(
            TENANT,
            pb::CreateConversationRequest {
                conversation: Some(pb::Conversation {
                    customer: open.customer.clone(),
                    inbox: inbox.name.clone(),
                    subject: "Your refund".into(),
                    ..Default::default()
                }),
                origin: pb::Origin::Outbound as i32,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    let ours = send(
        &h,
        TENANT,
        GRACE,
        reply(&started.name, "Refunded.", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let mail = h.smtp.wait_for("Message-ID", &ours.external_id).await;
    assert_eq!(mail.header("Subject").as_deref(), Some("Re: Your refund"));

    // Her answer names our Message-ID: it lands there, not in her open case.
    let answer = h
        .receive(
            &inbox.name,
            "ada@example.com",
            pb::Message {
                in_reply_to: ours.external_id.clone(),
                ..email("Thanks!", "<a1@example.com>")
            },
        )
        .await;
    let into = answer.conversation.unwrap();
    assert_eq!(into.name, started.name);
    assert!(into.waiting_since.is_some(), "she waits for an answer now");
    // Someone else quoting it is threaded by their own rules.
    let other = h
        .receive(
            &inbox.name,
            "eve@example.com",
            pb::Message {
                in_reply_to: ours.external_id.clone(),
                ..email("Me too", "<e1@example.com>")
            },
        )
        .await
        .conversation
        .unwrap();
    assert_ne!(other.name, started.name);
    assert_ne!(other.name, open.name);
}

#[tokio::test]
async fn a_new_conversation_is_acknowledged_once_and_that_is_no_response() {
    let h = start().await;
    let inbox = h
        .create_inbox(pb::Inbox {
            auto_acknowledgement: Some(pb::AutoAcknowledgement {
                enabled: true,
                subject: "Case {{case_number}} received".into(),
                body: "We have your case {{case_number}}; expect an answer within {{expected_reply_time}}."
                    .into(),
            }),
            expected_reply_time: Some(prost_types::Duration {
                seconds: 4 * 3600,
                nanos: 0,
            }),
            ..email_inbox("support@acme.example", 3600)
        })
        .await;
    let r = h
        .receive(
            &inbox.name,
            "ada@example.com",
            email("Help", "<h1@example.com>"),
        )
        .await;
    let c = r.conversation.unwrap();
    assert_eq!(c.message_count, 2);
    let mail = h.smtp.wait_for("Subject", "Case 1 received").await;
    assert_eq!(
        mail.header("In-Reply-To").as_deref(),
        Some("<h1@example.com>")
    );
    assert!(
        mail.data
            .contains("We have your case 1; expect an answer within 4 hours."),
        "{}",
        mail.data
    );
    // The customer writes again: no second acknowledgement.
    h.receive(
        &inbox.name,
        "ada@example.com",
        email("More", "<h2@example.com>"),
    )
    .await;
    let messages = h
        .client()
        .list_messages(tenant_request(
            TENANT,
            pb::ListMessagesRequest {
                parent: c.name.clone(),
                page_size: 10,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .messages;
    let kinds: Vec<i32> = messages
        .iter()
        .map(|m| m.sender.as_ref().unwrap().kind)
        .collect();
    let (customer, system) = (
        pb::SenderKind::Customer as i32,
        pb::SenderKind::System as i32,
    );
    assert_eq!(kinds, [customer, system, customer]);
    assert_eq!(
        messages[1].purpose,
        pb::MessagePurpose::Acknowledgement as i32
    );
    let after = h.conversation(&c.name).await;
    assert_eq!(after.first_response_time, None, "never a response");
    assert!(after.waiting_since.is_some());
    let sent: pb::MessageSent = payload(&outbox_events(&h.db, TENANT, &messages[1].name).await[0]);
    assert_eq!(sent.sender_kind, system);
    assert!(!sent.first_response);
}
