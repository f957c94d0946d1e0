//! Subscriptions: create, get, list, update, delete — the secret shown
//! once, idempotent retries, etags, pages, tenants kept apart.
use tonic::Code;

use crate::harness::*;

const TYPES: &[&str] = &["rapport.profiles.v1.CustomerCreated"];

#[tokio::test]
async fn the_secret_is_shown_once_and_only_its_hint_after() {
    let h = start().await;
    let (created, secret) = h.subscribe(TENANT, "https://203.0.113.10/in", TYPES).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &secret[6..])
        .expect("base64 after whsec_");
    assert!((24..=64).contains(&key.len()), "{} key bytes", key.len());
    assert!(created.name.starts_with("webhookSubscriptions/"));
    assert_eq!(created.url, "https://203.0.113.10/in");
    assert_eq!(created.event_types, TYPES);
    assert_eq!(created.state, pb::WebhookSubscriptionState::Active as i32);
    assert_eq!(
        created.disable_reason,
        pb::DisableReason::Unspecified as i32
    );
    assert_eq!(created.secret_hint, secret[secret.len() - 4..]);
    assert!(created.create_time.is_some() && created.update_time.is_some());
    assert!(!created.etag.is_empty());

    let got = h.get_in(TENANT, &created.name).await.unwrap();
    assert_eq!(got, created);
    let listed = h.list_in(TENANT, 0, "").await.unwrap();
    assert_eq!(listed.webhook_subscriptions, vec![created.clone()]);
    // Nowhere but in the create's answer.
    let shown = format!("{got:?}{listed:?}");
    assert!(!shown.contains(&secret[6..]), "the secret leaked: {shown}");
    // A second subscription gets another secret.
    let (_, other) = h
        .subscribe(TENANT, "https://203.0.113.10/other", TYPES)
        .await;
    assert_ne!(other, secret);
}

#[tokio::test]
async fn a_retried_create_answers_the_first_result_with_the_same_secret() {
    let h = start().await;
    let s = subscription("https://203.0.113.10/in", TYPES);
    let first = h
        .try_create_in(TENANT, s.clone(), "create-1")
        .await
        .unwrap();
    let again = h
        .try_create_in(TENANT, s.clone(), "create-1")
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        h.list_in(TENANT, 0, "")
            .await
            .unwrap()
            .webhook_subscriptions
            .len(),
        1
    );

    let other = subscription("https://203.0.113.10/other", TYPES);
    let reused = expect_err(h.try_create_in(TENANT, other, "create-1").await);
    assert_error(&reused, Code::InvalidArgument, "REQUEST_ID_REUSED");
}

#[tokio::test]
async fn updates_replace_masked_fields_and_honour_the_etag() {
    let h = start().await;
    let (created, _) = h.subscribe(TENANT, "https://203.0.113.10/in", TYPES).await;
    let changed = pb::WebhookSubscription {
        name: created.name.clone(),
        url: "https://203.0.113.10/v2".into(),
        event_types: vec!["rapport.profiles.v1.*".into()],
        etag: created.etag.clone(),
        ..Default::default()
    };
    let updated = h
        .update_in(TENANT, changed.clone(), &["url", "event_types"])
        .await
        .unwrap();
    assert_eq!(updated.url, "https://203.0.113.10/v2");
    assert_eq!(updated.event_types, ["rapport.profiles.v1.*"]);
    assert_ne!(updated.etag, created.etag);
    assert_eq!(updated.secret_hint, created.secret_hint);
    assert_eq!(updated.create_time, created.create_time);

    // The etag read before is stale now.
    let stale = expect_err(h.update_in(TENANT, changed, &["url"]).await);
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");

    // Pause and resume.
    let paused = h
        .set_state(
            TENANT,
            &created.name,
            pb::WebhookSubscriptionState::Disabled,
        )
        .await;
    assert_eq!(paused.state, pb::WebhookSubscriptionState::Disabled as i32);
    assert_eq!(paused.disable_reason, pb::DisableReason::Requested as i32);
    let resumed = h
        .set_state(TENANT, &created.name, pb::WebhookSubscriptionState::Active)
        .await;
    assert_eq!(resumed.state, pb::WebhookSubscriptionState::Active as i32);
    assert_eq!(
        resumed.disable_reason,
        pb::DisableReason::Unspecified as i32
    );

    // Nothing changes: no new version.
    let same = h
        .set_state(TENANT, &created.name, pb::WebhookSubscriptionState::Active)
        .await;
    assert_eq!(same.etag, resumed.etag);
}

#[tokio::test]
async fn deletes_remove_and_a_retry_answers_the_first_result() {
    let h = start().await;
    let (created, _) = h.subscribe(TENANT, "https://203.0.113.10/in", TYPES).await;
    let stale = expect_err(h.delete_in(TENANT, &created.name, "\"41\"", "").await);
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");
    h.delete_in(TENANT, &created.name, &created.etag, "delete-1")
        .await
        .unwrap();
    // The retry: the same answer, not NOT_FOUND.
    h.delete_in(TENANT, &created.name, &created.etag, "delete-1")
        .await
        .unwrap();
    let gone = expect_err(h.get_in(TENANT, &created.name).await);
    assert_error(&gone, Code::NotFound, "WEBHOOK_SUBSCRIPTION_NOT_FOUND");
    let again = expect_err(h.delete_in(TENANT, &created.name, "", "").await);
    assert_error(&again, Code::NotFound, "WEBHOOK_SUBSCRIPTION_NOT_FOUND");
    assert!(
        h.list_in(TENANT, 0, "")
            .await
            .unwrap()
            .webhook_subscriptions
            .is_empty()
    );
}

#[tokio::test]
async fn lists_come_in_keyset_pages_oldest_first() {
    let h = start().await;
    let mut names = Vec::new();
    for i in 0..5 {
        let (s, _) = h
            .subscribe(TENANT, &format!("https://203.0.113.10/{i}"), TYPES)
            .await;
        names.push(s.name);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = h.list_in(TENANT, 2, &token).await.unwrap();
        assert!(page.webhook_subscriptions.len() <= 2);
        seen.extend(page.webhook_subscriptions.into_iter().map(|s| s.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, names);
    // A token is bound to its tenant.
    let page = h.list_in(TENANT, 2, "").await.unwrap();
    let foreign = expect_err(h.list_in(OTHER_TENANT, 2, &page.next_page_token).await);
    assert_error(&foreign, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
}

#[tokio::test]
async fn tenants_never_see_each_others_subscriptions() {
    let h = start().await;
    let (mine, _) = h.subscribe(TENANT, "https://203.0.113.10/in", TYPES).await;
    let hidden = expect_err(h.get_in(OTHER_TENANT, &mine.name).await);
    assert_error(&hidden, Code::NotFound, "WEBHOOK_SUBSCRIPTION_NOT_FOUND");
    assert!(
        h.list_in(OTHER_TENANT, 0, "")
            .await
            .unwrap()
            .webhook_subscriptions
            .is_empty()
    );
    let deliveries = expect_err(h.deliveries_in(OTHER_TENANT, &mine.name).await);
    assert_error(
        &deliveries,
        Code::NotFound,
        "WEBHOOK_SUBSCRIPTION_NOT_FOUND",
    );
    let test = expect_err(h.send_test_in(OTHER_TENANT, &mine.name, "").await);
    assert_error(&test, Code::NotFound, "WEBHOOK_SUBSCRIPTION_NOT_FOUND");
    let paused = pb::WebhookSubscription {
        name: mine.name.clone(),
        state: pb::WebhookSubscriptionState::Disabled as i32,
        ..Default::default()
    };
    let update = expect_err(h.update_in(OTHER_TENANT, paused, &["state"]).await);
    assert_error(&update, Code::NotFound, "WEBHOOK_SUBSCRIPTION_NOT_FOUND");
    let delete = expect_err(h.delete_in(OTHER_TENANT, &mine.name, "", "").await);
    assert_error(&delete, Code::NotFound, "WEBHOOK_SUBSCRIPTION_NOT_FOUND");
    assert_eq!(h.get_in(TENANT, &mine.name).await.unwrap(), mine);
}

#[tokio::test]
async fn calls_without_the_gateways_assertion_are_refused() {
    let h = start().await;
    let request = rapport_testkit::spoofed_tenant_request(
        TENANT,
        pb::ListWebhookSubscriptionsRequest::default(),
    );
    let refused = expect_err(h.client().list_webhook_subscriptions(request).await);
    assert_eq!(refused.code(), Code::Unauthenticated);
}
