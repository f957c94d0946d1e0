//! Channel connectors through a real HTTP receiver on 127.0.0.1: an SMS
//! inbox hands its outbound messages over as POSTs signed as the webhooks
//! service signs (checked by the receiver on its own), tried again after a
//! failure with the same webhook-id; the connector reports delivery with
//! ReportDelivery, idempotently and only forward; the secret is never
//! returned.
use rapport_testkit::receiver::Receiver;
use tonic::Code;

use crate::harness::*;
use crate::messages::{GRACE, agent, reply, send};
use crate::outbound_email::delivered;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PHONE: &str = "+15551234567";

fn sms_inbox(url: &str) -> pb::Inbox {
    pb::Inbox {
        display_name: "Texts".into(),
        channel: Channel::Sms as i32,
        address: "+15550000001".into(),
        provider: "twilio".into(),
        delivery_connector: Some(pb::ChannelConnector {
            url: url.into(),
            signing_secret: SECRET.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An SMS inbox handing over to `receiver`, and a conversation a texter
/// started in it.
async fn texted(h: &Harness, receiver: &Receiver) -> (pb::Inbox, pb::ReceiveMessageResponse) {
    agent(h, TENANT, GRACE, pb::AgentKind::Human).await;
    let inbox = h.create_inbox(sms_inbox(&receiver.url)).await;
    let r = h
        .client()
        .receive_message(tenant_request(
            TENANT,
            pb::ReceiveMessageRequest {
                inbox: inbox.name.clone(),
                sender: Some(pb::receive_message_request::Sender::Phone(PHONE.into())),
                message: Some(pb::Message {
                    text: "Is my order late?".into(),
                    external_id: "SMin1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("ReceiveMessage: {}", describe(&s)))
        .into_inner();
    (inbox, r)
}

async fn report(
    h: &Harness,
    tenant: &str,
    req: pb::ReportDeliveryRequest,
) -> Result<pb::Message, tonic::Status> {
    h.client()
        .report_delivery(tenant_request(tenant, req))
        .await
        .map(|r| r.into_inner().message.expect("a message"))
}

fn delivery_changes(events: &[rapport_proto::types::EventEnvelope]) -> Vec<(i32, i32)> {
    events
        .iter()
        .filter(|e| e.r#type == "rapport.conversations.v1.MessageDeliveryChanged")
        .map(|e| {
            let p: pb::MessageDeliveryChanged = payload(e);
            (p.from, p.to)
        })
        .collect()
}

#[tokio::test]
async fn an_sms_reply_is_handed_to_the_connector_signed_and_reported_delivered() {
    let h = start().await;
    let mut receiver = Receiver::answering(202).await;
    let (inbox, r) = texted(&h, &receiver).await;
    // The secret is write-only.
    let connector = inbox.delivery_connector.clone().unwrap();
    assert_eq!(connector.signing_secret, "");
    assert_eq!(connector.signing_secret_hint, &SECRET[SECRET.len() - 4..]);
    assert_eq!(connector.url, receiver.url);
    let c = r.conversation.unwrap();

    let mut out = reply(&c.name, "It ships tomorrow.", pb::Visibility::Public);
    out.message.as_mut().unwrap().attachments = vec![pb::Attachment {
        file_name: "label.pdf".into(),
        content_type: "application/pdf".into(),
        size_bytes: 1234,
        uri: "https://files.example/label.pdf".into(),
    }];
    let m = send(&h, TENANT, GRACE, out).await.unwrap();
    let call = receiver.next().await;
    assert!(call.signed_with(SECRET), "{:?}", call.headers);
    assert_eq!(
        call.header("webhook-id"),
        m.name.rsplit('/').next().unwrap()
    );
    let body = call.json();
    assert_eq!(body["type"], "rapport.conversations.v1.OutboundMessage");
    assert_eq!(body["message"], m.name);
    assert_eq!(body["conversation"], c.name);
    assert_eq!(body["case_number"], c.case_number);
    assert_eq!(body["inbox"], inbox.name);
    assert_eq!(body["channel"], "sms");
    assert_eq!(body["from"], "+15550000001");
    assert_eq!(body["to"], PHONE);
    assert_eq!(body["text"], "It ships tomorrow.");
    assert_eq!(
        body["attachments"][0]["uri"],
        "https://files.example/label.pdf"
    );
    assert_eq!(body["attachments"][0]["size_bytes"], 1234);
    let sent = delivered(&h, &m.name).await.delivery.unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Sent as i32, "{sent:?}");

    // DELIVERED by name, storing the connector's id; a retry with the same
    // request id returns the same; a late SENT by the connector's id
    // changes nothing and is no error.
    let delivered_req = pb::ReportDeliveryRequest {
        inbox: inbox.name.clone(),
        message: m.name.clone(),
        external_id: "SM42".into(),
        state: pb::DeliveryState::Delivered as i32,
        request_id: "report-1".into(),
        ..Default::default()
    };
    let d = report(&h, TENANT, delivered_req.clone()).await.unwrap();
    assert_eq!(
        d.delivery.as_ref().unwrap().state,
        pb::DeliveryState::Delivered as i32
    );
    assert_eq!(d.external_id, "SM42");
    let again = report(&h, TENANT, delivered_req).await.unwrap();
    assert_eq!(again, d);
    let late = report(
        &h,
        TENANT,
        pb::ReportDeliveryRequest {
            inbox: inbox.name.clone(),
            external_id: "SM42".into(),
            state: pb::DeliveryState::Sent as i32,
            request_id: "report-2".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        late.delivery.unwrap().state,
        pb::DeliveryState::Delivered as i32
    );
    let events = outbox_events(&h.db, TENANT, &m.name).await;
    assert_eq!(
        delivery_changes(&events),
        [
            (
                pb::DeliveryState::Scheduled as i32,
                pb::DeliveryState::Sent as i32
            ),
            (
                pb::DeliveryState::Sent as i32,
                pb::DeliveryState::Delivered as i32
            ),
        ],
        "one event per move, none for the repeat or the late report"
    );
}

#[tokio::test]
async fn a_failing_connector_is_tried_again_with_the_same_webhook_id() {
    let h = start().await;
    let mut receiver = Receiver::answering(503).await;
    let (_, r) = texted(&h, &receiver).await;
    let c = r.conversation.unwrap();
    let m = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Hello", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let first = receiver.next().await;
    receiver.answer(200);
    let second = receiver.next().await;
    assert_eq!(first.header("webhook-id"), second.header("webhook-id"));
    assert_eq!(first.body, second.body, "the same message");
    assert!(second.signed_with(SECRET));
    let sent = delivered(&h, &m.name).await.delivery.unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Sent as i32, "{sent:?}");
}

#[tokio::test]
async fn a_refusing_connector_fails_the_message_for_good() {
    let h = start().await;
    let receiver = Receiver::answering(400).await;
    let (inbox, r) = texted(&h, &receiver).await;
    let c = r.conversation.unwrap();
    let m = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Hello", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let failed = delivered(&h, &m.name).await.delivery.unwrap();
    assert_eq!(failed.state, pb::DeliveryState::Failed as i32);
    assert!(failed.failure_reason.contains("400"), "{failed:?}");
    // FAILED is final: a later DELIVERED changes nothing.
    let after = report(
        &h,
        TENANT,
        pb::ReportDeliveryRequest {
            inbox: inbox.name.clone(),
            message: m.name.clone(),
            state: pb::DeliveryState::Delivered as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        after.delivery.unwrap().state,
        pb::DeliveryState::Failed as i32
    );
}

#[tokio::test]
async fn report_delivery_refuses_what_is_not_the_connectors_to_report() {
    let h = start().await;
    let receiver = Receiver::answering(200).await;
    let (inbox, r) = texted(&h, &receiver).await;
    let inbound = r.message.unwrap();
    let c = r.conversation.unwrap();
    let m = send(
        &h,
        TENANT,
        GRACE,
        reply(&c.name, "Hi", pb::Visibility::Public),
    )
    .await
    .unwrap();
    let base = pb::ReportDeliveryRequest {
        inbox: inbox.name.clone(),
        message: m.name.clone(),
        state: pb::DeliveryState::Delivered as i32,
        ..Default::default()
    };
    // Unknown message.
    let unknown = format!("{}/messages/{}", c.name, uuid::Uuid::now_v7());
    let s = expect_err(
        report(
            &h,
            TENANT,
            pb::ReportDeliveryRequest {
                message: unknown,
                ..base.clone()
            },
        )
        .await,
    );
    assert_error(&s, Code::NotFound, "MESSAGE_NOT_FOUND");
    let s = expect_err(
        report(
            &h,
            TENANT,
            pb::ReportDeliveryRequest {
                message: String::new(),
                external_id: "nobody-knows".into(),
                ..base.clone()
            },
        )
        .await,
    );
    assert_error(&s, Code::NotFound, "MESSAGE_NOT_FOUND");
    // Another tenant's message: its inbox is not found, nor the message
    // through an inbox of its own.
    let s = expect_err(report(&h, OTHER_TENANT, base.clone()).await);
    assert_error(&s, Code::NotFound, "INBOX_NOT_FOUND");
    let theirs = h
        .try_create_inbox(OTHER_TENANT, sms_inbox(&receiver.url), "")
        .await
        .unwrap();
    let s = expect_err(
        report(
            &h,
            OTHER_TENANT,
            pb::ReportDeliveryRequest {
                inbox: theirs.name.clone(),
                ..base.clone()
            },
        )
        .await,
    );
    assert_error(&s, Code::NotFound, "MESSAGE_NOT_FOUND");
    // An inbound message has no delivery.
    let s = expect_err(
        report(
            &h,
            TENANT,
            pb::ReportDeliveryRequest {
                message: inbound.name.clone(),
                ..base.clone()
            },
        )
        .await,
    );
    assert_error(&s, Code::FailedPrecondition, "NO_DELIVERY");
    // Bad requests.
    for (bad, field) in [
        (
            pb::ReportDeliveryRequest {
                state: pb::DeliveryState::Scheduled as i32,
                ..base.clone()
            },
            "state",
        ),
        (
            pb::ReportDeliveryRequest {
                state: 0,
                ..base.clone()
            },
            "state",
        ),
        (
            pb::ReportDeliveryRequest {
                message: String::new(),
                ..base.clone()
            },
            "message",
        ),
        (
            pb::ReportDeliveryRequest {
                message: "messages/x".into(),
                ..base.clone()
            },
            "message",
        ),
        (
            pb::ReportDeliveryRequest {
                inbox: String::new(),
                ..base.clone()
            },
            "inbox",
        ),
    ] {
        assert_violation(&expect_err(report(&h, TENANT, bad).await), field);
    }
    // A request id reused for another report.
    report(
        &h,
        TENANT,
        pb::ReportDeliveryRequest {
            request_id: "r".into(),
            ..base.clone()
        },
    )
    .await
    .unwrap();
    let s = expect_err(
        report(
            &h,
            TENANT,
            pb::ReportDeliveryRequest {
                request_id: "r".into(),
                state: pb::DeliveryState::Failed as i32,
                ..base.clone()
            },
        )
        .await,
    );
    assert_eq!(s.code(), Code::InvalidArgument, "{}", describe(&s));
}

#[tokio::test]
async fn a_connector_is_for_other_channels_and_its_secret_is_required_once() {
    let h = start().await;
    let receiver = Receiver::answering(200).await;
    // Not on email.
    let mut email = email_inbox("support@acme.example", 0);
    email.delivery_connector = sms_inbox(&receiver.url).delivery_connector;
    let s = expect_err(h.try_create_inbox(TENANT, email, "").await);
    assert_violation(&s, "inbox.delivery_connector");
    // A secret first, in its form; an https (here: any absolute) URL.
    for (connector, field) in [
        (
            pb::ChannelConnector {
                url: receiver.url.clone(),
                ..Default::default()
            },
            "inbox.delivery_connector.signing_secret",
        ),
        (
            pb::ChannelConnector {
                url: receiver.url.clone(),
                signing_secret: "hunter2".into(),
                ..Default::default()
            },
            "inbox.delivery_connector.signing_secret",
        ),
        (
            pb::ChannelConnector {
                url: "not a url".into(),
                signing_secret: SECRET.into(),
                ..Default::default()
            },
            "inbox.delivery_connector.url",
        ),
    ] {
        let s = expect_err(
            h.try_create_inbox(
                TENANT,
                pb::Inbox {
                    delivery_connector: Some(connector),
                    ..sms_inbox("")
                },
                "",
            )
            .await,
        );
        assert_violation(&s, field);
        assert!(
            !format!("{s:?}").contains("hunter2"),
            "the secret is never echoed"
        );
    }
    // An update of the URL alone keeps the secret.
    let inbox = h.create_inbox(sms_inbox(&receiver.url)).await;
    let moved = Receiver::answering(200).await;
    let updated = h
        .client()
        .update_inbox(tenant_request(
            TENANT,
            pb::UpdateInboxRequest {
                inbox: Some(pb::Inbox {
                    name: inbox.name.clone(),
                    delivery_connector: Some(pb::ChannelConnector {
                        url: moved.url.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["delivery_connector".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("UpdateInbox: {}", describe(&s)))
        .into_inner()
        .inbox
        .unwrap();
    let connector = updated.delivery_connector.unwrap();
    assert_eq!(connector.url, moved.url);
    assert_eq!(connector.signing_secret_hint, &SECRET[SECRET.len() - 4..]);
}
