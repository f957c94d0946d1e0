//! Failing endpoints, with time driven by a manual clock: a delivery is
//! retried with growing waits while its endpoint fails, for the whole
//! retry window (at least a day), then fails and disables its
//! subscription; attempts time out; an address is checked again when an
//! attempt connects.
use rapport_webhooks::DeliveryConfig;
use tonic::Code;

use crate::harness::*;

/// The longest wait after the `attempt`-th failure (the service draws each
/// wait at random up to it): 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h,
/// 4 h, then 8 h.
fn ceiling(attempt: usize) -> chrono::Duration {
    const STEPS: [i64; 9] = [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800];
    chrono::Duration::seconds(STEPS[(attempt - 1).min(STEPS.len() - 1)])
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_for_a_day_then_its_subscription_is_disabled() {
    let h = start_driven(local_delivery()).await;
    let mut receiver = Receiver::answering(500).await;
    let (sub, secret) = h
        .subscribe(TENANT, &receiver.url, &["rapport.profiles.v1.*"])
        .await;
    let pending = h.send_test_in(TENANT, &sub.name, "").await.unwrap();
    assert_eq!(pending.attempt_count, 0);

    assert_eq!(h.run_due().await, 1);
    let first = receiver.next().await;
    assert!(first.signed_with(&secret));
    let d = h.only_delivery(&sub.name).await;
    assert_eq!(d.state, pb::WebhookDeliveryState::Pending as i32);
    assert_eq!((d.attempt_count, d.last_status_code), (1, 500));
    assert!(d.last_error.contains("500"), "{}", d.last_error);
    let last = d.last_attempt_time.unwrap();
    let next = d.next_attempt_time.unwrap();
    let wait = next.seconds - last.seconds;
    assert!((1..=5).contains(&wait), "first retry after {wait} s");

    // Not due yet: nothing happens until time moves.
    assert_eq!(h.run_due().await, 0);

    let mut attempts = vec![first];
    for _ in 0..30 {
        h.clock().advance(ceiling(attempts.len()));
        assert_eq!(
            h.run_due().await,
            1,
            "the retry after attempt {}",
            attempts.len()
        );
        let got = receiver.next().await;
        assert!(
            got.signed_with(&secret),
            "attempt {} is signed",
            attempts.len() + 1
        );
        attempts.push(got);
        if h.only_delivery(&sub.name).await.state != pb::WebhookDeliveryState::Pending as i32 {
            break;
        }
    }

    let failed = h.only_delivery(&sub.name).await;
    assert_eq!(failed.state, pb::WebhookDeliveryState::Failed as i32);
    assert_eq!(failed.attempt_count as usize, attempts.len());
    assert!(failed.next_attempt_time.is_none());
    assert!(attempts.len() >= 10, "only {} attempts", attempts.len());
    // Every attempt is the same event, stamped with its own time.
    let stamps: Vec<i64> = attempts
        .iter()
        .map(|a| {
            assert_eq!(a.header("webhook-id"), pending.event_id);
            assert_eq!(a.body, attempts[0].body);
            a.header("webhook-timestamp").parse().unwrap()
        })
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    // Retried for the whole window: at least 26 hours.
    assert!(
        stamps[stamps.len() - 1] - stamps[0] >= 26 * 3600,
        "{stamps:?}"
    );

    let disabled = h.get_in(TENANT, &sub.name).await.unwrap();
    assert_eq!(
        disabled.state,
        pb::WebhookSubscriptionState::Disabled as i32
    );
    assert_eq!(
        disabled.disable_reason,
        pb::DisableReason::DeliveryFailing as i32
    );
    // Nothing more is attempted, and a disabled subscription takes no test.
    h.clock().advance(chrono::Duration::days(2));
    assert_eq!(h.run_due().await, 0);
    let refused = expect_err(h.send_test_in(TENANT, &sub.name, "").await);
    assert_error(
        &refused,
        Code::FailedPrecondition,
        "WEBHOOK_SUBSCRIPTION_DISABLED",
    );

    // Re-enabled, it receives again.
    let active = h
        .set_state(TENANT, &sub.name, pb::WebhookSubscriptionState::Active)
        .await;
    assert_eq!(active.disable_reason, pb::DisableReason::Unspecified as i32);
    h.send_test_in(TENANT, &sub.name, "").await.unwrap();
    assert_eq!(h.run_due().await, 1);
    receiver.next().await;
}

#[tokio::test]
async fn a_delivery_succeeds_once_the_endpoint_recovers() {
    let h = start_driven(local_delivery()).await;
    let failing = Receiver::answering(503).await;
    let mut healthy = Receiver::answering(200).await;
    let (sub, _) = h.subscribe(TENANT, &failing.url, &["*"]).await;
    h.send_test_in(TENANT, &sub.name, "").await.unwrap();
    assert_eq!(h.run_due().await, 1);
    // The partner fixes its endpoint: the pending delivery goes there.
    let moved = pb::WebhookSubscription {
        name: sub.name.clone(),
        url: healthy.url.clone(),
        ..Default::default()
    };
    h.update_in(TENANT, moved, &["url"]).await.unwrap();
    h.clock().advance(ceiling(1));
    assert_eq!(h.run_due().await, 1);
    healthy.next().await;
    let d = h.only_delivery(&sub.name).await;
    assert_eq!(d.state, pb::WebhookDeliveryState::Delivered as i32);
    assert_eq!((d.attempt_count, d.last_status_code), (2, 200));
    assert_eq!(d.last_error, "");
}

#[tokio::test]
async fn pending_deliveries_of_a_disabled_or_deleted_subscription_are_not_attempted() {
    let h = start_driven(local_delivery()).await;
    let mut receiver = Receiver::answering(200).await;
    let (paused, _) = h.subscribe(TENANT, &receiver.url, &["*"]).await;
    let (deleted, _) = h.subscribe(TENANT, &receiver.url, &["*"]).await;
    h.send_test_in(TENANT, &paused.name, "").await.unwrap();
    h.send_test_in(TENANT, &deleted.name, "").await.unwrap();
    h.set_state(TENANT, &paused.name, pb::WebhookSubscriptionState::Disabled)
        .await;
    h.delete_in(TENANT, &deleted.name, "", "").await.unwrap();

    assert_eq!(h.run_due().await, 0);
    assert!(receiver.received_so_far().is_empty());
    let d = h.only_delivery(&paused.name).await;
    assert_eq!(d.state, pb::WebhookDeliveryState::Failed as i32);
    assert_eq!(d.attempt_count, 0);
    assert!(d.last_error.contains("disabled"), "{}", d.last_error);
}

#[tokio::test]
async fn an_attempt_that_gets_no_answer_times_out_and_is_retried() {
    let h = start_driven(DeliveryConfig {
        timeout_ms: 300,
        ..local_delivery()
    })
    .await;
    let mut dead = Receiver::holding().await;
    let (sub, _) = h.subscribe(TENANT, &dead.url, &["*"]).await;
    h.send_test_in(TENANT, &sub.name, "").await.unwrap();
    assert_eq!(h.run_due().await, 1);
    dead.next().await;
    let d = h.only_delivery(&sub.name).await;
    assert_eq!(d.state, pb::WebhookDeliveryState::Pending as i32);
    assert_eq!(d.last_status_code, 0);
    assert!(
        d.last_error.contains("no answer within 300 ms"),
        "{}",
        d.last_error
    );
    assert!(d.next_attempt_time.is_some());
}

#[tokio::test]
async fn https_to_an_endpoint_without_tls_fails_the_handshake() {
    let h = start_driven(local_delivery()).await;
    let plain = Receiver::answering(200).await;
    let url = format!("https://127.0.0.1:{}/hook", plain.port);
    let (sub, _) = h.subscribe(TENANT, &url, &["*"]).await;
    h.send_test_in(TENANT, &sub.name, "").await.unwrap();
    assert_eq!(h.run_due().await, 1);
    let d = h.only_delivery(&sub.name).await;
    assert_eq!(d.state, pb::WebhookDeliveryState::Pending as i32);
    assert!(d.last_error.contains("TLS"), "{}", d.last_error);
}

#[tokio::test]
async fn the_address_is_checked_again_when_an_attempt_connects() {
    // Stored while private addresses were allowed (or, in production, while
    // the name resolved elsewhere: DNS rebinding)...
    let h = start_driven(local_delivery()).await;
    let mut receiver = Receiver::answering(200).await;
    let (sub, _) = h.subscribe(TENANT, &receiver.url, &["*"]).await;
    let testdb = h.stop().await;
    // ...an attempt by a service that refuses them never connects.
    let strict = DeliveryConfig {
        allow_http: true,
        ..DeliveryConfig::default()
    };
    let h = start_on(testdb, strict, Some(ManualClock::at(chrono::Utc::now()))).await;
    h.send_test_in(TENANT, &sub.name, "").await.unwrap();
    assert_eq!(h.run_due().await, 1);
    let d = h.only_delivery(&sub.name).await;
    assert_eq!(d.state, pb::WebhookDeliveryState::Pending as i32);
    assert!(d.last_error.contains("loopback"), "{}", d.last_error);
    assert_eq!(d.last_status_code, 0);
    assert!(receiver.received_so_far().is_empty());
}
