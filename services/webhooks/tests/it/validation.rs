//! Invalid requests are refused field by field, with the path of each bad
//! field — among them URLs that lead where deliveries must never go (SSRF).
use rapport_webhooks::DeliveryConfig;
use tonic::Code;

use crate::harness::*;

const TYPES: &[&str] = &["rapport.profiles.v1.CustomerCreated"];

async fn create_err(h: &Harness, s: pb::WebhookSubscription) -> tonic::Status {
    expect_err(h.try_create_in(TENANT, s, "").await)
}

#[tokio::test]
async fn each_invalid_field_is_named() {
    let h = start().await;
    let missing = expect_err(
        h.client()
            .create_webhook_subscription(tenant_request(
                TENANT,
                pb::CreateWebhookSubscriptionRequest::default(),
            ))
            .await,
    );
    assert_violation(&missing, "webhook_subscription");

    let cases: &[(&str, &[&str], &str)] = &[
        ("", TYPES, "webhook_subscription.url"),
        ("not a url", TYPES, "webhook_subscription.url"),
        (
            "https://user:pw@hooks.example.com/",
            TYPES,
            "webhook_subscription.url",
        ),
        (
            "https://hooks.example.com/#x",
            TYPES,
            "webhook_subscription.url",
        ),
        (
            "https://203.0.113.10/",
            &[],
            "webhook_subscription.event_types",
        ),
        (
            "https://203.0.113.10/",
            &[
                "rapport.profiles.v1.CustomerCreated",
                "rapport.profiles.v1.Nope",
            ],
            "webhook_subscription.event_types[1]",
        ),
        (
            "https://203.0.113.10/",
            &["rapport.profiles.v1.*", "rapport.profiles.v1.*"],
            "webhook_subscription.event_types[1]",
        ),
        (
            "https://203.0.113.10/",
            &["rapport.*.v1"],
            "webhook_subscription.event_types[0]",
        ),
        (
            "https://203.0.113.10/",
            &["rapport.orders.*"],
            "webhook_subscription.event_types[0]",
        ),
    ];
    for (url, types, field) in cases {
        let status = create_err(&h, subscription(url, types)).await;
        assert_violation(&status, field);
    }
    // Every bad field at once.
    let both = create_err(&h, subscription("ftp://x", &[])).await;
    assert_violation(&both, "webhook_subscription.url");
    assert_violation(&both, "webhook_subscription.event_types");
    assert!(
        h.list_in(TENANT, 0, "")
            .await
            .unwrap()
            .webhook_subscriptions
            .is_empty()
    );
}

#[tokio::test]
async fn updates_name_their_bad_fields_and_mask_paths() {
    let h = start().await;
    let (s, _) = h.subscribe(TENANT, "https://203.0.113.10/", TYPES).await;
    let named =
        |url: &str, types: &[&str], state: pb::WebhookSubscriptionState| pb::WebhookSubscription {
            name: s.name.clone(),
            url: url.into(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            state: state as i32,
            ..Default::default()
        };
    let unspecified = pb::WebhookSubscriptionState::Unspecified;
    let cases: &[(pb::WebhookSubscription, &[&str], &str)] = &[
        (
            named("ftp://x", TYPES, unspecified),
            &["url"],
            "webhook_subscription.url",
        ),
        (
            named("", &[], unspecified),
            &["event_types"],
            "webhook_subscription.event_types",
        ),
        (
            named("", &[], unspecified),
            &["state"],
            "webhook_subscription.state",
        ),
        (
            named("", &[], unspecified),
            &["secret_hint"],
            "update_mask.paths[0]",
        ),
        (
            named("", &[], unspecified),
            &["state", "colour"],
            "update_mask.paths[1]",
        ),
        (named("", &[], unspecified), &[], "update_mask.paths"),
    ];
    for (sub, paths, field) in cases {
        let status = expect_err(h.update_in(TENANT, sub.clone(), paths).await);
        assert_violation(&status, field);
    }
    let bad_name = pb::WebhookSubscription {
        name: "customers/1".into(),
        ..Default::default()
    };
    let status = expect_err(h.update_in(TENANT, bad_name, &["url"]).await);
    assert_violation(&status, "webhook_subscription.name");
    let no_mask = expect_err(
        h.client()
            .update_webhook_subscription(tenant_request(
                TENANT,
                pb::UpdateWebhookSubscriptionRequest {
                    webhook_subscription: Some(s.clone()),
                    update_mask: None,
                    request_id: String::new(),
                },
            ))
            .await,
    );
    assert_violation(&no_mask, "update_mask");
    // Nothing changed.
    assert_eq!(h.get_in(TENANT, &s.name).await.unwrap(), s);
}

#[tokio::test]
async fn names_and_pages_are_checked() {
    let h = start().await;
    for name in [
        "",
        "webhookSubscriptions/nope",
        "customers/0192e0c0-0000-7000-8000-000000000001",
    ] {
        let status = expect_err(h.get_in(TENANT, name).await);
        assert_violation(&status, "name");
        let status = expect_err(h.deliveries_in(TENANT, name).await);
        assert_violation(&status, "parent");
    }
    let status = expect_err(h.list_in(TENANT, -1, "").await);
    assert_violation(&status, "page_size");
    let status = expect_err(h.list_in(TENANT, 0, "forged").await);
    assert_error(&status, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
}

/// A service that accepts plain http (so the address is what is judged)
/// but not private addresses: production's address policy.
fn public_only() -> DeliveryConfig {
    DeliveryConfig {
        allow_http: true,
        allow_private_addresses: false,
        ..DeliveryConfig::default()
    }
}

#[tokio::test]
async fn ssrf_targets_are_refused_at_create_and_update() {
    let h = start_driven(public_only()).await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/hook",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://10.0.0.7/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        // A name that resolves to loopback: the resolved address is judged.
        "http://localhost:9/",
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
    ] {
        let status = create_err(&h, subscription(url, TYPES)).await;
        assert_violation(&status, "webhook_subscription.url");
    }
    assert!(
        h.list_in(TENANT, 0, "")
            .await
            .unwrap()
            .webhook_subscriptions
            .is_empty()
    );

    // An update to such a URL is refused too.
    let (s, _) = h.subscribe(TENANT, "http://203.0.113.10/hook", TYPES).await;
    let to_metadata = pb::WebhookSubscription {
        name: s.name.clone(),
        url: "http://169.254.169.254/".into(),
        ..Default::default()
    };
    let status = expect_err(h.update_in(TENANT, to_metadata, &["url"]).await);
    assert_violation(&status, "webhook_subscription.url");
    assert_eq!(
        h.get_in(TENANT, &s.name).await.unwrap().url,
        "http://203.0.113.10/hook"
    );
}

#[tokio::test]
async fn plain_http_is_refused_unless_allowed_and_metadata_always() {
    let h = start_driven(DeliveryConfig::default()).await;
    let status = create_err(&h, subscription("http://hooks.example.com/", TYPES)).await;
    assert_violation(&status, "webhook_subscription.url");
    drop(h);
    // Private addresses allowed (development): still never the metadata
    // service.
    let dev = start().await;
    let status = create_err(&dev, subscription("http://169.254.169.254/", TYPES)).await;
    assert_violation(&status, "webhook_subscription.url");
    dev.subscribe(TENANT, "http://127.0.0.1:9/hook", TYPES)
        .await;
}
