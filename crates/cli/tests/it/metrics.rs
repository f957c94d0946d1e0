//! Every service serves Prometheus metrics on `server.metrics_listen`, read
//! here as Prometheus reads them (the text format, parsed by a Prometheus
//! text parser) from a real `rapport serve <service>`: RED per RPC with the
//! status code, the database pool, the outbox lag and the process.
use std::collections::HashMap;

use prometheus_parse::{Scrape, Value};
use rapport_proto::profiles::{
    CreateCustomerRequest, Customer, GetCustomerRequest,
    profiles_service_client::ProfilesServiceClient,
};
use rapport_proto::webhooks::{
    ListWebhookSubscriptionsRequest, webhooks_service_client::WebhooksServiceClient,
};
use rapport_testkit::TestDb;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::process::{Serving, serve};

async fn scrape(serving: &Serving) -> Scrape {
    let addr = serving.metrics.expect("a metrics listener");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Chunked or not, the exposition's lines are what the parser reads.
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines).expect("a valid Prometheus exposition")
}

/// The value of `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

fn common(scrape: &Scrape, service: &str) {
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            value(scrape, name, &[]).is_some_and(|v| v > 0.0),
            "{service}: {name}"
        );
    }
    let max: HashMap<_, _> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "db_client_connections_max")
        .map(|s| {
            (
                s.labels.get("pool").unwrap_or("").to_owned(),
                s.value.clone(),
            )
        })
        .collect();
    assert!(!max.is_empty(), "{service}: the pool's size is reported");
    assert!(
        value(scrape, "rapport_outbox_lag_seconds", &[]).is_some_and(|v| v >= 0.0),
        "{service}: the outbox lag is reported"
    );
}

#[tokio::test]
async fn profiles_serves_red_per_rpc_with_the_code_and_its_pool_lag_and_process() {
    let testdb = TestDb::fresh().await.unwrap();
    let serving = serve(
        "profiles",
        &testdb.url(),
        &[("RAPPORT_PROFILES__SERVER__METRICS_LISTEN", "127.0.0.1:0")],
    )
    .await
    .expect("rapport serve profiles serves");
    let mut client =
        ProfilesServiceClient::new(rapport_testkit::connect(serving.addr).await.unwrap());
    let missing = GetCustomerRequest {
        name: "customers/0192e0c0-0000-7000-8000-000000000001".into(),
    };
    for _ in 0..3 {
        let status = client
            .get_customer(rapport_testkit::tenant_request("acme", missing.clone()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
    let create = CreateCustomerRequest {
        customer: Some(Customer {
            display_name: "Metric Person".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    client
        .create_customer(rapport_testkit::tenant_request("acme", create))
        .await
        .unwrap();

    let scrape = scrape(&serving).await;
    let rpc = |method: &str, code: &str| {
        value(
            &scrape,
            "rpc_server_requests_total",
            &[
                ("rpc_service", "rapport.profiles.v1.ProfilesService"),
                ("rpc_method", method),
                ("rpc_grpc_status_code", code),
            ],
        )
    };
    assert_eq!(rpc("GetCustomer", "5"), Some(3.0), "three NOT_FOUND");
    assert_eq!(rpc("CreateCustomer", "0"), Some(1.0), "one OK");
    assert_eq!(rpc("GetCustomer", "0"), None, "no OK GetCustomer");
    assert_eq!(
        value(
            &scrape,
            "rpc_server_duration_seconds",
            &[("rpc_method", "CreateCustomer")]
        ),
        Some(1.0),
        "the duration histogram counts the call"
    );
    common(&scrape, "profiles");
}

#[tokio::test]
async fn webhooks_serves_its_metrics_too() {
    let testdb = TestDb::fresh().await.unwrap();
    let serving = serve(
        "webhooks",
        &testdb.url(),
        &[("RAPPORT_WEBHOOKS__SERVER__METRICS_LISTEN", "127.0.0.1:0")],
    )
    .await
    .expect("rapport serve webhooks serves");
    let mut client =
        WebhooksServiceClient::new(rapport_testkit::connect(serving.addr).await.unwrap());
    client
        .list_webhook_subscriptions(rapport_testkit::tenant_request(
            "acme",
            ListWebhookSubscriptionsRequest::default(),
        ))
        .await
        .unwrap();
    let scrape = scrape(&serving).await;
    assert_eq!(
        value(
            &scrape,
            "rpc_server_requests_total",
            &[
                ("rpc_service", "rapport.webhooks.v1.WebhooksService"),
                ("rpc_method", "ListWebhookSubscriptions"),
                ("rpc_grpc_status_code", "0"),
            ]
        ),
        Some(1.0)
    );
    common(&scrape, "webhooks");
}
