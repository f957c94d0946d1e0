//! Events become deliveries, end to end: an event published on the bus as
//! profiles publishes it is consumed (durable consumer `webhooks`), fanned
//! out to the subscriptions of its tenant that want its type, and POSTed by
//! the service's own worker to a real HTTP receiver, signed as the
//! Standard Webhooks specification says.
use rapport_events::consume;

use crate::harness::*;

#[tokio::test]
async fn a_subscriber_gets_a_signed_delivery_and_another_tenant_gets_nothing() {
    let h = start().await;
    let mut mine = Receiver::answering(204).await;
    let mut theirs = Receiver::answering(204).await;
    let mut wildcard = Receiver::answering(200).await;
    let mut erasures = Receiver::answering(200).await;
    let (sub, secret) = h
        .subscribe(TENANT, &mine.url, &["rapport.profiles.v1.CustomerCreated"])
        .await;
    let (all, all_secret) = h
        .subscribe(TENANT, &wildcard.url, &["rapport.profiles.v1.*"])
        .await;
    let (erased, _) = h
        .subscribe(
            TENANT,
            &erasures.url,
            &["rapport.profiles.v1.CustomerErased"],
        )
        .await;
    let (other, _) = h
        .subscribe(OTHER_TENANT, &theirs.url, &["rapport.profiles.v1.*"])
        .await;

    let event = customer_created(TENANT);
    h.publish(std::slice::from_ref(&event)).await;

    let got = mine.next().await;
    assert!(
        got.signed_with(&secret),
        "signature does not verify: {got:?}"
    );
    assert!(
        !got.signed_with(&all_secret),
        "signed with another subscription's secret"
    );
    assert_eq!(got.header("webhook-id"), event.id);
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.path, "/hook");
    let timestamp: i64 = got
        .header("webhook-timestamp")
        .parse()
        .expect("unix seconds");
    assert!((timestamp - chrono::Utc::now().timestamp()).abs() < 600);
    let body = got.json();
    assert_eq!(body["type"], "rapport.profiles.v1.CustomerCreated");
    assert_eq!(body["tenant"], TENANT);
    assert_eq!(body["subject"], event.subject.as_str());
    assert_eq!(body["data"]["customer"], event.subject.as_str());
    assert_eq!(body["data"]["lifecycleStage"], "LIFECYCLE_STAGE_AWARENESS");
    let time = body["time"].as_str().expect("time");
    chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339 time");

    let got_all = wildcard.next().await;
    assert!(got_all.signed_with(&all_secret));
    assert_eq!(
        got_all.body, got.body,
        "every subscriber gets the same body"
    );

    // One event is fanned out in one transaction: had the other tenant's
    // subscription (or the one for erasures) been picked, its delivery would
    // exist by now.
    assert!(
        h.deliveries_in(OTHER_TENANT, &other.name)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        h.deliveries_in(TENANT, &erased.name)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(theirs.received_so_far().is_empty());
    assert!(erasures.received_so_far().is_empty());

    // The delivery is recorded as delivered (the worker records it right
    // after the answer).
    let delivered = wait_for_state(&h, &sub.name, pb::WebhookDeliveryState::Delivered).await;
    assert_eq!(delivered.event_id, event.id);
    assert_eq!(delivered.event_type, "rapport.profiles.v1.CustomerCreated");
    assert_eq!(delivered.attempt_count, 1);
    assert_eq!(delivered.last_status_code, 204);
    assert!(delivered.next_attempt_time.is_none());
    let to_all = wait_for_state(&h, &all.name, pb::WebhookDeliveryState::Delivered).await;
    assert_eq!(to_all.event_id, event.id);
}

/// The delivery of `parent` once it reaches `state`, polling the API (the
/// worker records an answer just after the receiver sent it).
async fn wait_for_state(
    h: &Harness,
    parent: &str,
    state: pb::WebhookDeliveryState,
) -> pb::WebhookDelivery {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let d = h.only_delivery(parent).await;
            if d.state == state as i32 {
                return d;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the delivery reached its state within the test's patience")
}

#[tokio::test]
async fn one_slow_endpoint_does_not_hold_up_another() {
    let h = start().await;
    let mut slow = Receiver::holding().await;
    let mut fast = Receiver::answering(200).await;
    let types = &["rapport.profiles.v1.CustomerCreated"];
    h.subscribe(TENANT, &slow.url, types).await;
    let (fast_sub, _) = h.subscribe(TENANT, &fast.url, types).await;
    h.publish(&[customer_created(TENANT)]).await;
    // The slow endpoint has the request and does not answer; the fast one
    // is delivered to meanwhile, and its delivery recorded.
    slow.next().await;
    fast.next().await;
    wait_for_state(&h, &fast_sub.name, pb::WebhookDeliveryState::Delivered).await;
    // And the next event too.
    h.publish(&[customer_created(TENANT)]).await;
    fast.next().await;
    slow.release();
}

#[tokio::test]
async fn a_test_ping_is_delivered_whatever_the_event_types() {
    let h = start().await;
    let mut receiver = Receiver::answering(200).await;
    let (sub, secret) = h
        .subscribe(
            TENANT,
            &receiver.url,
            &["rapport.profiles.v1.CustomerErased"],
        )
        .await;
    let pending = h.send_test_in(TENANT, &sub.name, "ping-1").await.unwrap();
    assert_eq!(pending.event_type, "rapport.webhooks.v1.WebhookTest");
    assert_eq!(pending.state, pb::WebhookDeliveryState::Pending as i32);
    assert!(
        pending
            .name
            .starts_with(&format!("{}/deliveries/", sub.name))
    );
    // A retry of the same request queues nothing more.
    let again = h.send_test_in(TENANT, &sub.name, "ping-1").await.unwrap();
    assert_eq!(again.name, pending.name);

    let got = receiver.next().await;
    assert!(got.signed_with(&secret));
    assert_eq!(got.header("webhook-id"), pending.event_id);
    let body = got.json();
    assert_eq!(body["type"], "rapport.webhooks.v1.WebhookTest");
    assert_eq!(body["subject"], sub.name.as_str());
    assert_eq!(body["data"]["webhookSubscription"], sub.name.as_str());
    wait_for_state(&h, &sub.name, pb::WebhookDeliveryState::Delivered).await;
    assert!(receiver.received_so_far().is_empty(), "delivered twice");
}

#[tokio::test]
async fn an_event_that_cannot_be_rendered_is_parked_and_others_keep_flowing() {
    let h = start().await;
    let mut receiver = Receiver::answering(200).await;
    h.subscribe(TENANT, &receiver.url, &["*"]).await;
    let mut unknown = customer_created(TENANT);
    unknown.r#type = "rapport.profiles.v1.NotYetKnown".into();
    unknown.payload.as_mut().unwrap().type_url =
        "type.googleapis.com/rapport.profiles.v1.NotYetKnown".into();
    let good = customer_created(TENANT);
    h.publish(&[unknown.clone(), good.clone()]).await;
    // The consumer handles events in order: once the later one is
    // delivered, the first was handled (parked).
    assert_eq!(receiver.next().await.header("webhook-id"), good.id);
    let parked = consume::dead_letters_page(&h.db, Some(rapport_webhooks::CONSUMER), 10)
        .await
        .unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].event_id, unknown.id);
    assert!(
        parked[0].error.contains("unknown event type"),
        "{}",
        parked[0].error
    );
}
