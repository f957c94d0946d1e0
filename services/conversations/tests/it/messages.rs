//! CreateMessage: an agent's or a bot's reply and an internal note, the
//! first-response facts service levels need, MessageSent, retries, refusals
//! and tenant isolation.
use tonic::Code;

use crate::harness::*;

const CREATE_MESSAGE: &str = "/rapport.conversations.v1.ConversationsService/CreateMessage";
pub(crate) const GRACE: &str = "apiKeys/grace";
const BOT: &str = "apiKeys/bot";

/// A CreateMessage request in `tenant` by `principal`.
fn as_principal(
    tenant: &str,
    principal: &str,
    msg: pb::CreateMessageRequest,
) -> tonic::Request<pb::CreateMessageRequest> {
    let mut claims = rapport_testkit::claims_for(CREATE_MESSAGE, tenant, &["conversations.write"]);
    claims.principal = principal.into();
    rapport_testkit::request_with_claims(&claims, msg)
}

pub(crate) fn reply(
    parent: &str,
    text: &str,
    visibility: pb::Visibility,
) -> pb::CreateMessageRequest {
    pb::CreateMessageRequest {
        parent: parent.into(),
        message: Some(pb::Message {
            text: text.into(),
            visibility: visibility as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

pub(crate) async fn send(
    h: &Harness,
    tenant: &str,
    principal: &str,
    req: pb::CreateMessageRequest,
) -> Result<pb::Message, tonic::Status> {
    h.client()
        .create_message(as_principal(tenant, principal, req))
        .await
        .map(|r| r.into_inner().message.expect("a message"))
}

pub(crate) async fn agent(
    h: &Harness,
    tenant: &str,
    principal: &str,
    kind: pb::AgentKind,
) -> pb::Agent {
    create_agent(h, tenant, principal, kind, "").await
}

/// A conversation the customer started with one email.
pub(crate) async fn started(h: &Harness) -> pb::Conversation {
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let r = h
        .receive(
            &inbox.name,
            "ada@example.com",
            email("Where is my order?", "<m1@example.com>"),
        )
        .await;
    r.conversation.unwrap()
}

async fn sent_event(h: &Harness, message: &pb::Message) -> pb::MessageSent {
    let events = outbox_events(&h.db, TENANT, &message.name).await;
    assert_eq!(
        event_types(&events),
        ["rapport.conversations.v1.MessageSent"]
    );
    payload(&events[0])
}

#[tokio::test]
async fn only_the_first_public_reply_of_a_human_agent_is_the_first_response() {
    let h = start().await;
    let grace = agent(&h, TENANT, GRACE, pb::AgentKind::Human).await;
    let bot = agent(&h, TENANT, BOT, pb::AgentKind::Bot).await;
    let c = started(&h).await;
    assert!(c.waiting_since.is_some());

    // An internal note: never delivered, answers nothing.
    let note = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "VIP, be quick", pb::Visibility::Internal),
    )
    .await
    .unwrap();
    assert_eq!(note.visibility, pb::Visibility::Internal as i32);
    assert_eq!(note.direction, pb::Direction::Outbound as i32);
    assert_eq!(note.delivery, None);
    assert_eq!(
        note.channel,
        Channel::Email as i32,
        "the conversation's latest"
    );
    // A bot's public reply: delivered, but no response.
    let by_bot = send(
        &h,
        TENANT,
        BOT,
        reply(&c.name, "We got it", pb::Visibility::Unspecified),
    )
    .await
    .unwrap();
    let sender = by_bot.sender.clone().unwrap();
    assert_eq!(sender.kind, pb::SenderKind::Bot as i32);
    assert_eq!(sender.name, bot.name);
    assert_eq!(by_bot.visibility, pb::Visibility::Public as i32);
    assert_eq!(by_bot.purpose, pb::MessagePurpose::Service as i32);
    let delivery = by_bot.delivery.clone().unwrap();
    assert_eq!(delivery.state, pb::DeliveryState::Scheduled as i32);
    let after_bot = h.conversation(&c.name).await;
    assert_eq!(after_bot.first_response_time, None);
    assert_eq!(after_bot.waiting_since, c.waiting_since);

    // Grace's first public reply is the first response; her second is not.
    let first = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Shipped today", pb::Visibility::Public),
    )
    .await
    .unwrap();
    assert_eq!(first.sender.clone().unwrap().name, grace.name);
    // An email reply: a Message-ID on the inbox's domain, answering the
    // thread's latest email (notes and the bot's reply had their own).
    let id = first.name.rsplit('/').next().unwrap();
    assert_eq!(first.external_id, format!("<{id}@acme.example>"));
    assert_eq!(by_bot.in_reply_to, "<m1@example.com>");
    assert_eq!(first.in_reply_to, by_bot.external_id);
    assert_eq!(note.external_id, "", "a note is no email");
    let answered = h.conversation(&c.name).await;
    assert_eq!(answered.first_response_time, first.create_time);
    assert_eq!(answered.waiting_since, None);
    assert_eq!(answered.state, pb::ConversationState::Open as i32);
    let second = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Tracking: 42", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let later = h.conversation(&c.name).await;
    assert_eq!(later.first_response_time, first.create_time);
    assert_eq!(later.message_count, 5);

    for (m, kind, visibility, first_response) in [
        (
            &note,
            pb::SenderKind::Agent,
            pb::Visibility::Internal,
            false,
        ),
        (&by_bot, pb::SenderKind::Bot, pb::Visibility::Public, false),
        (&first, pb::SenderKind::Agent, pb::Visibility::Public, true),
        (
            &second,
            pb::SenderKind::Agent,
            pb::Visibility::Public,
            false,
        ),
    ] {
        let e = sent_event(&h, m).await;
        assert_eq!(e.conversation, c.name);
        assert_eq!(e.customer, c.customer);
        assert_eq!(e.sender_kind, kind as i32);
        assert_eq!(e.visibility, visibility as i32);
        assert_eq!(e.first_response, first_response, "{}", m.text);
    }

    let listed = h
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
    assert_eq!(listed.len(), 5);
    assert_eq!(listed[4], second);
}

#[tokio::test]
async fn a_retry_applies_once_and_a_resolved_conversation_takes_notes_only() {
    let h = start().await;
    agent(&h, TENANT, GRACE, pb::AgentKind::Human).await;
    let c = started(&h).await;
    let req = pb::CreateMessageRequest {
        request_id: "reply-1".into(),
        ..reply(&c.name, "On it", pb::Visibility::Public)
    };
    let once = send(&h, TENANT, GRACE, req.clone()).await.unwrap();
    let twice = send(&h, TENANT, GRACE, req).await.unwrap();
    assert_eq!(once, twice);
    assert_eq!(h.conversation(&c.name).await.message_count, 2);

    h.resolve(&c.name).await.unwrap();
    let refused = expect_err(
        send(
            &h,
            TENANT,
            GRACE,
            reply(&c.name, "More", pb::Visibility::Public),
        )
        .await,
    );
    assert_error(
        &refused,
        Code::FailedPrecondition,
        "INVALID_STATE_TRANSITION",
    );
    send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Closed out", pb::Visibility::Internal),
    )
    .await
    .unwrap();
    let resolved = h.conversation(&c.name).await;
    assert_eq!(resolved.state, pb::ConversationState::Resolved as i32);
    assert_eq!(resolved.message_count, 3);
}

#[tokio::test]
async fn bad_requests_strangers_and_other_tenants_are_refused() {
    let h = start().await;
    agent(&h, TENANT, GRACE, pb::AgentKind::Human).await;
    agent(&h, OTHER_TENANT, GRACE, pb::AgentKind::Human).await;
    let c = started(&h).await;

    let stranger = expect_err(
        send(
            &h,
            TENANT,
            "apiKeys/nobody",
            reply(&c.name, "Hi", pb::Visibility::Public),
        )
        .await,
    );
    assert_error(&stranger, Code::FailedPrecondition, "NOT_AN_AGENT");

    let bad = expect_err(
        send(
            &h,
            TENANT,
            GRACE,
            pb::CreateMessageRequest {
                parent: "inboxes/x".into(),
                message: Some(pb::Message {
                    purpose: pb::MessagePurpose::Acknowledgement as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        )
        .await,
    );
    for field in ["parent", "message.text", "message.purpose"] {
        assert_violation(&bad, field);
    }

    let unknown = expect_err(
        send(
            &h,
            TENANT,
            GRACE,
            reply(
                "conversations/00000000-0000-0000-0000-000000000000",
                "Hi",
                pb::Visibility::Public,
            ),
        )
        .await,
    );
    assert_error(&unknown, Code::NotFound, "CONVERSATION_NOT_FOUND");
    let elsewhere = expect_err(
        send(
            &h,
            OTHER_TENANT,
            GRACE,
            reply(&c.name, "Hi", pb::Visibility::Public),
        )
        .await,
    );
    assert_error(&elsewhere, Code::NotFound, "CONVERSATION_NOT_FOUND");
    assert_eq!(h.conversation(&c.name).await.message_count, 1);
}

pub(crate) async fn try_start(
    h: &Harness,
    tenant: &str,
    conversation: pb::Conversation,
    origin: pb::Origin,
    request_id: &str,
) -> Result<pb::Conversation, tonic::Status> {
    h.client()
        .create_conversation(tenant_request(
            tenant,
            pb::CreateConversationRequest {
                conversation: Some(conversation),
                origin: origin as i32,
                request_id: request_id.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().conversation.expect("a conversation"))
}

#[tokio::test]
async fn an_agent_starts_a_conversation_and_writes_in_it() {
    let h = start().await;
    agent(&h, TENANT, GRACE, pb::AgentKind::Human).await;
    let inbound = started(&h).await;
    let asked = pb::Conversation {
        customer: inbound.customer.clone(),
        inbox: inbound.inbox.clone(),
        subject: "Your refund".into(),
        labels: vec!["billing".into()],
        ..Default::default()
    };
    let c = try_start(
        &h,
        TENANT,
        asked.clone(),
        pb::Origin::Unspecified,
        "start-1",
    )
    .await
    .unwrap();
    assert_eq!(c.origin, pb::Origin::Outbound as i32);
    assert_eq!(c.case_number, inbound.case_number + 1);
    assert_eq!(c.state, pb::ConversationState::Open as i32);
    assert_eq!(c.priority, pb::Priority::Normal as i32);
    assert_eq!((c.message_count, c.waiting_since), (0, None));
    let again = try_start(
        &h,
        TENANT,
        asked.clone(),
        pb::Origin::Unspecified,
        "start-1",
    )
    .await
    .unwrap();
    assert_eq!(again, c, "a retry starts nothing new");
    let events = outbox_events(&h.db, TENANT, &c.name).await;
    assert_eq!(
        event_types(&events),
        ["rapport.conversations.v1.ConversationCreated"]
    );
    let created: pb::ConversationCreated = payload(&events[0]);
    assert_eq!(created.origin, pb::Origin::Outbound as i32);

    // The first message takes the inbox's channel.
    let first = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Refunded", pb::Visibility::Public),
    )
    .await
    .unwrap();
    assert_eq!(first.channel, Channel::Email as i32);
    let written = h.conversation(&c.name).await;
    assert_eq!(written.channels, vec![Channel::Email as i32]);
    assert_eq!(written.message_count, 1);

    // One conversation per source; INBOUND is ReceiveMessage's.
    let follow_up = pb::Conversation {
        source: "responses/r1".into(),
        ..asked.clone()
    };
    try_start(
        &h,
        TENANT,
        follow_up.clone(),
        pb::Origin::FeedbackFollowUp,
        "",
    )
    .await
    .unwrap();
    let twice = expect_err(
        try_start(
            &h,
            TENANT,
            follow_up.clone(),
            pb::Origin::FeedbackFollowUp,
            "",
        )
        .await,
    );
    assert_error(&twice, Code::AlreadyExists, "CONVERSATION_ALREADY_EXISTS");
    // Sources are per tenant: another tenant's is its own (its inbox too).
    let other_inbox = h
        .try_create_inbox(OTHER_TENANT, email_inbox("support@globex.example", 0), "")
        .await
        .unwrap();
    try_start(
        &h,
        OTHER_TENANT,
        pb::Conversation {
            inbox: other_inbox.name.clone(),
            ..follow_up.clone()
        },
        pb::Origin::FeedbackFollowUp,
        "",
    )
    .await
    .unwrap();
    let foreign_inbox =
        expect_err(try_start(&h, OTHER_TENANT, asked.clone(), pb::Origin::Outbound, "").await);
    assert_error(&foreign_inbox, Code::NotFound, "INBOX_NOT_FOUND");

    let bad = expect_err(
        try_start(
            &h,
            TENANT,
            pb::Conversation {
                labels: vec!["Not OK".into()],
                ..Default::default()
            },
            pb::Origin::Inbound,
            "",
        )
        .await,
    );
    for field in ["conversation.customer", "conversation.inbox", "origin"] {
        assert_violation(&bad, field);
    }
    let no_source = expect_err(try_start(&h, TENANT, asked, pb::Origin::Review, "").await);
    assert_violation(&no_source, "conversation.source");
}

pub(crate) fn marketing(parent: &str, text: &str) -> pb::CreateMessageRequest {
    pb::CreateMessageRequest {
        parent: parent.into(),
        message: Some(pb::Message {
            text: text.into(),
            purpose: pb::MessagePurpose::Marketing as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

/// The delivery timer of `message`: its due time.
pub(crate) async fn delivery_due(h: &Harness, message: &pb::Message) -> Option<i64> {
    let id = message.name.rsplit('/').next().unwrap();
    rapport_events::timers::get(&h.db.reader, TENANT, &format!("deliver:{id}"))
        .await
        .expect("reading the timers")
        .map(|t| t.due.timestamp())
}

#[tokio::test]
async fn proactive_messages_ask_the_contact_policy_when_sent() {
    use rapport_proto::profiles as ppb;

    let h = start().await;
    let (inbound, proactive) = proactive(&h).await;

    // No marketing consent: refused with profiles' reason, nothing stored.
    let refused = expect_err(send(&h, TENANT, GRACE, marketing(&proactive.name, "20% off")).await);
    assert_error(&refused, Code::FailedPrecondition, "CONTACT_NOT_PERMITTED");
    assert_eq!(
        rapport_testkit::status::error_metadata(&refused)
            .get("reason")
            .map(String::as_str),
        Some("NO_CONSENT")
    );
    // Marketing inside the customer's own case is proactive too.
    let inside = expect_err(send(&h, TENANT, GRACE, marketing(&inbound.name, "20% off")).await);
    assert_error(&inside, Code::FailedPrecondition, "CONTACT_NOT_PERMITTED");
    assert_eq!(h.conversation(&proactive.name).await.message_count, 0);

    // A service message needs no consent: delivered now.
    let service = send(
        &h,
        TENANT,
        GRACE,
        reply(&proactive.name, "About your order", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let delivery = service.delivery.clone().unwrap();
    assert_eq!(delivery.scheduled_time, None, "due now: sent by the worker");

    // Consent given, but inside quiet hours (UTC, profiles' default zone):
    // accepted, its delivery deferred to their end on a durable timer.
    set_consent(&h, &inbound.customer, ppb::ConsentStatus::Granted).await;
    let now = quiet_for_two_more_hours(&h, &inbound.customer).await;
    let deferred = send(&h, TENANT, GRACE, marketing(&proactive.name, "20% off"))
        .await
        .unwrap();
    assert_eq!(deferred.purpose, pb::MessagePurpose::Marketing as i32);
    let delivery = deferred.delivery.clone().unwrap();
    assert_eq!(delivery.state, pb::DeliveryState::Scheduled as i32);
    let at = delivery.scheduled_time.expect("deferred").seconds;
    let wait = at - now.timestamp();
    assert!((3_540..=7_260).contains(&wait), "about two hours: {wait} s");
    assert_eq!(delivery_due(&h, &deferred).await, Some(at));
    // A note is never delivered: no timer.
    let note = send(
        &h,
        TENANT,
        GRACE,
        reply(&proactive.name, "sent the offer", pb::Visibility::Internal),
    )
    .await
    .unwrap();
    assert_eq!(delivery_due(&h, &note).await, None);
}

#[tokio::test]
async fn an_agent_logs_a_call_with_its_durations_and_nothing_is_delivered() {
    let h = start().await;
    agent(&h, TENANT, GRACE, pb::AgentKind::Human).await;
    let c = started(&h).await;
    let call = pb::Call {
        talk_seconds: 240,
        hold_seconds: 30,
        wrap_up_seconds: 60,
        recording_uri: "https://recordings.example/1".into(),
    };
    let logged = send(
        &h,
        TENANT,
        GRACE,
        pb::CreateMessageRequest {
            parent: c.name.clone(),
            message: Some(pb::Message {
                channel: Channel::Phone as i32,
                call: Some(call.clone()),
                ..Default::default()
            }),
            request_id: String::new(),
        },
    )
    .await
    .unwrap();
    assert_eq!(logged.call, Some(call));
    assert_eq!(logged.channel, Channel::Phone as i32);
    assert_eq!(logged.delivery, None, "it happened: nothing to deliver");
    assert_eq!(logged.external_id, "");
    let after = h.conversation(&c.name).await;
    assert!(
        after.first_response_time.is_some(),
        "the agent answered by phone"
    );
    assert!(after.channels.contains(&(Channel::Phone as i32)));
    assert_eq!(delivery_due(&h, &logged).await, None);

    let bad = expect_err(
        send(
            &h,
            TENANT,
            GRACE,
            pb::CreateMessageRequest {
                parent: c.name.clone(),
                message: Some(pb::Message {
                    channel: Channel::Email as i32,
                    call: Some(pb::Call {
                        talk_seconds: -1,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        )
        .await,
    );
    assert_violation(&bad, "message.call.talk_seconds");
    assert_violation(&bad, "message.channel");
}
