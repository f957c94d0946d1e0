//! ReceiveMessage: senders resolved with the real profiles service,
//! dedupe on (inbox, external id), threading, reopen window, continuation
//! across channels, case numbers, events.
use std::collections::BTreeSet;

use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn messages_thread_into_one_conversation_and_duplicates_are_stored_once() {
    let h = start().await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let first = h
        .receive(
            &inbox.name,
            "ada@example.com",
            pb::Message {
                subject: "Order 42".into(),
                ..email("Late", "<m1@x>")
            },
        )
        .await;
    assert!(first.created);
    let c = first.conversation.clone().unwrap();
    assert_eq!(c.case_number, 1);
    assert_eq!(c.state, pb::ConversationState::Open as i32);
    assert_eq!(c.origin, pb::Origin::Inbound as i32);
    assert_eq!(c.channels, vec![Channel::Email as i32]);
    assert_eq!(c.subject, "Order 42");
    let m = first.message.clone().unwrap();
    let sender = m.sender.clone().unwrap();
    assert_eq!(sender.kind, pb::SenderKind::Customer as i32);
    assert_eq!(sender.name, c.customer);
    assert_eq!(m.direction, pb::Direction::Inbound as i32);
    assert_eq!(m.visibility, pb::Visibility::Public as i32);

    // The customer exists in profiles, created from the sender.
    let customer = h
        .profiles
        .clone()
        .get_customer(tenant_request(
            TENANT,
            rapport_proto::profiles::GetCustomerRequest {
                name: c.customer.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(customer.display_name, "Ada");

    let second = h
        .receive(&inbox.name, "Ada@Example.com", email("Any news?", "<m2@x>"))
        .await;
    assert_eq!(second.conversation.as_ref().unwrap().name, c.name);
    assert_eq!(second.conversation.as_ref().unwrap().message_count, 2);

    // The first message again: stored once, answered with what was stored.
    let again = h
        .receive(&inbox.name, "ada@example.com", email("Late", "<m1@x>"))
        .await;
    assert!(!again.created);
    assert_eq!(again.message, first.message);

    let events = outbox_events(&h.db, TENANT, &c.name).await;
    assert_eq!(
        event_types(&events),
        ["rapport.conversations.v1.ConversationCreated"]
    );
    let created: pb::ConversationCreated = payload(&events[0]);
    assert_eq!(created.case_number, 1);
    assert_eq!(created.customer, c.customer);
    // Each message is the subject of its own MessageReceived, once.
    for (answer, first_of_conversation) in [(&first, true), (&second, false)] {
        let name = &answer.message.as_ref().unwrap().name;
        let events = outbox_events(&h.db, TENANT, name).await;
        assert_eq!(
            event_types(&events),
            ["rapport.conversations.v1.MessageReceived"]
        );
        let received: pb::MessageReceived = payload(&events[0]);
        assert_eq!(received.conversation, c.name);
        assert_eq!(received.first_of_conversation, first_of_conversation);
    }

    let history = h
        .client()
        .list_customer_history(tenant_request(
            TENANT,
            pb::ListCustomerHistoryRequest {
                customer: c.customer.clone(),
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        history.messages,
        vec![second.message.clone().unwrap()],
        "newest first"
    );
    assert!(!history.next_page_token.is_empty());
    let listed = h
        .client()
        .list_messages(tenant_request(
            TENANT,
            pb::ListMessagesRequest {
                parent: c.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(
        listed,
        vec![first.message.unwrap(), second.message.unwrap()],
        "oldest first"
    );
}

#[tokio::test]
async fn fifty_concurrent_first_messages_from_one_unknown_address_give_one_customer_and_one_conversation()
 {
    let h = start().await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let calls = (0..50).map(|n| {
        let h = &h;
        let inbox = inbox.name.clone();
        async move {
            h.receive(
                &inbox,
                "new@example.com",
                email(&format!("hello {n}"), &format!("<{n}@x>")),
            )
            .await
        }
    });
    let answers = futures::future::join_all(calls).await;
    let conversations: BTreeSet<_> = answers
        .iter()
        .map(|a| a.conversation.as_ref().unwrap().name.clone())
        .collect();
    let customers: BTreeSet<_> = answers
        .iter()
        .map(|a| a.conversation.as_ref().unwrap().customer.clone())
        .collect();
    assert_eq!(conversations.len(), 1, "one conversation");
    assert_eq!(customers.len(), 1, "one customer");
    assert!(answers.iter().all(|a| a.created));
    let all = h
        .conversations(pb::ListConversationsRequest::default())
        .await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].message_count, 50);
    let profiles = h
        .profiles
        .clone()
        .list_customers(tenant_request(
            TENANT,
            rapport_proto::profiles::ListCustomersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .customers;
    assert_eq!(profiles.len(), 1);
}

#[tokio::test]
async fn a_resolved_conversation_reopens_within_the_window_and_a_new_linked_one_starts_after_it() {
    let h = start().await;
    let reopening = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let first = h
        .receive(&reopening.name, "ada@example.com", email("1", "<1@x>"))
        .await;
    let c = first.conversation.unwrap();
    h.resolve(&c.name).await.unwrap();
    let back = h
        .receive(&reopening.name, "ada@example.com", email("2", "<2@x>"))
        .await;
    let reopened = back.conversation.unwrap();
    assert_eq!(reopened.name, c.name);
    assert_eq!(reopened.state, pb::ConversationState::Open as i32);
    assert_eq!((reopened.resolve_count, reopened.reopen_count), (1, 1));
    let types = event_types(&outbox_events(&h.db, TENANT, &c.name).await);
    assert!(
        types.ends_with(&[
            "rapport.conversations.v1.ConversationStatusChanged".to_owned(),
            "rapport.conversations.v1.ConversationReopened".to_owned(),
        ]),
        "{types:?}"
    );

    // No reopen window: the next message after a resolve starts a new
    // conversation that continues the resolved one, with the next number.
    let never = h.create_inbox(email_inbox("billing@acme.example", 0)).await;
    let old = h
        .receive(&never.name, "ada@example.com", email("a", "<a@x>"))
        .await
        .conversation
        .unwrap();
    h.resolve(&old.name).await.unwrap();
    let new = h
        .receive(&never.name, "ada@example.com", email("b", "<b@x>"))
        .await
        .conversation
        .unwrap();
    assert_ne!(new.name, old.name);
    assert_eq!(new.previous_conversation, old.name);
    assert!(new.case_number > old.case_number);
    assert_eq!(
        h.conversation(&old.name).await.state,
        pb::ConversationState::Resolved as i32
    );
}

#[tokio::test]
async fn an_inbox_that_continues_across_channels_joins_the_open_conversation() {
    let h = start().await;
    let mail = h.create_inbox(email_inbox("support@acme.example", 0)).await;
    let chat = h
        .create_inbox(pb::Inbox {
            display_name: "Chat".into(),
            channel: Channel::LiveChat as i32,
            address: "widget-1".into(),
            continue_across_channels: true,
            ..Default::default()
        })
        .await;
    let started = h
        .receive(&mail.name, "ada@example.com", email("by mail", "<1@x>"))
        .await;
    let joined = h
        .receive(&chat.name, "ada@example.com", email("by chat", "chat-1"))
        .await;
    let c = joined.conversation.unwrap();
    assert_eq!(c.name, started.conversation.unwrap().name);
    assert_eq!(
        c.channels,
        vec![Channel::Email as i32, Channel::LiveChat as i32]
    );
    assert_eq!(joined.message.unwrap().channel, Channel::LiveChat as i32);
    // An inbox that does not continue starts its own conversation.
    let other = h.create_inbox(email_inbox("sales@acme.example", 0)).await;
    let own = h
        .receive(&other.name, "ada@example.com", email("sales", "<2@x>"))
        .await;
    assert_ne!(own.conversation.unwrap().name, c.name);
}

#[tokio::test]
async fn bad_input_unknown_inboxes_and_other_tenants_are_refused() {
    let h = start().await;
    let inbox = h.create_inbox(email_inbox("support@acme.example", 0)).await;
    let status = expect_err(
        h.try_receive_in(
            TENANT,
            &inbox.name,
            "ada@example.com",
            pb::Message::default(),
        )
        .await,
    );
    assert_violation(&status, "message.external_id");
    assert_violation(&status, "message.text");
    let attachment = pb::Message {
        attachments: vec![pb::Attachment {
            file_name: "a.png".into(),
            uri: "ftp://x".into(),
            ..Default::default()
        }],
        ..email("see attached", "<3@x>")
    };
    let status = expect_err(
        h.try_receive_in(TENANT, &inbox.name, "ada@example.com", attachment)
            .await,
    );
    assert_violation(&status, "message.attachments[0].uri");
    let status = expect_err(
        h.try_receive_in(
            TENANT,
            "inboxes/00000000-0000-0000-0000-000000000000",
            "ada@example.com",
            email("x", "<4@x>"),
        )
        .await,
    );
    assert_error(&status, Code::NotFound, "INBOX_NOT_FOUND");
    let status = expect_err(
        h.try_receive_in(
            OTHER_TENANT,
            &inbox.name,
            "ada@example.com",
            email("x", "<5@x>"),
        )
        .await,
    );
    assert_error(&status, Code::NotFound, "INBOX_NOT_FOUND");
}

#[tokio::test]
async fn profiles_refuses_a_service_whose_key_it_does_not_trust() {
    let h = start_trusting(false).await;
    let inbox = h.create_inbox(email_inbox("support@acme.example", 0)).await;
    let status = expect_err(
        h.try_receive_in(TENANT, &inbox.name, "ada@example.com", email("x", "<1@x>"))
            .await,
    );
    assert_error(&status, Code::Unavailable, "PROFILES_UNAVAILABLE");
    assert!(
        h.conversations(pb::ListConversationsRequest::default())
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn concurrent_new_conversations_get_distinct_case_numbers_per_tenant() {
    let h = start().await;
    let inbox = h.create_inbox(email_inbox("support@acme.example", 0)).await;
    let calls = (0..20).map(|n| {
        let h = &h;
        let inbox = inbox.name.clone();
        async move {
            h.receive(
                &inbox,
                &format!("c{n}@example.com"),
                email("hi", &format!("<{n}@x>")),
            )
            .await
            .conversation
            .unwrap()
            .case_number
        }
    });
    let mut numbers = futures::future::join_all(calls).await;
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(
        numbers.len(),
        20,
        "every conversation its own number: {numbers:?}"
    );
    assert!(numbers[0] >= 1);
    // Another tenant counts from 1.
    let theirs = h
        .try_create_inbox(OTHER_TENANT, email_inbox("support@acme.example", 0), "")
        .await
        .unwrap();
    let first = h
        .try_receive_in(
            OTHER_TENANT,
            &theirs.name,
            "x@example.com",
            email("hi", "<x@x>"),
        )
        .await
        .unwrap();
    assert_eq!(first.conversation.unwrap().case_number, 1);
}
