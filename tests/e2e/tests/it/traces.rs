//! Traces by the OpenTelemetry conventions, as a collector receives them:
//! spans of the real gateway and profiles service are captured through the
//! same tracing-opentelemetry layer the processes install, and checked for
//! kind, parent, name, attributes and status for a gRPC, a gRPC-web and a
//! REST call. Each call carries a `traceparent` of its own trace, so calls of
//! other tests running in this binary at the same time do not interfere.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use opentelemetry::{
    Value,
    trace::{SpanKind, Status, TracerProvider as _},
};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use prost::Message as _;
use rapport_e2e::*;
use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Spans as exported, and a wake-up per export.
#[derive(Debug, Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<SpanData>>>,
    exported: Arc<tokio::sync::Notify>,
}

impl SpanExporter for Capture {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.spans.lock().unwrap().extend(batch);
        self.exported.notify_waiters();
        Ok(())
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<(Capture, SdkTracerProvider)> = OnceLock::new();
    &CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            // Exported as each span ends, as a collector would receive them.
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(capture.clone())
                .build();
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            // Only the call spans: the database's spans are not under test.
            let calls = tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && matches!(meta.name(), "rpc" | "http" | "grpc client")
            });
            // A global filter, not a per-layer one: a per-layer filter's
            // verdict on a span cached as "always" is whatever the thread's
            // last `enabled` call left, and sqlx's `log_enabled!` after each
            // statement left "disabled" (on PostgreSQL, where statements run
            // on the call's thread), so call spans went missing now and then.
            // The processes' own subscriber avoids it another way
            // (rapport_telemetry's `AskedEveryTime`).
            tracing_subscriber::registry()
                .with(calls)
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("rapport-e2e")))
                .init();
            (capture, provider)
        })
        .0
}

impl Capture {
    /// The spans of `trace` once `done` holds of them. Spans end when the
    /// server lets go of the response, a moment after the client has it:
    /// this waits for exports, not for time (the timeout only turns a
    /// missing span into a failure instead of a hang).
    async fn trace(&self, trace: &str, done: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
        let wait = async {
            loop {
                let exported = self.exported.notified();
                let spans: Vec<SpanData> = self
                    .spans
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|s| s.span_context.trace_id().to_string() == trace)
                    .cloned()
                    .collect();
                if done(&spans) {
                    return spans;
                }
                exported.await;
            }
        };
        match tokio::time::timeout(Duration::from_secs(30), wait).await {
            Ok(spans) => spans,
            Err(_) => {
                let all = self.spans.lock().unwrap();
                let of_trace: Vec<_> = all
                    .iter()
                    .filter(|s| s.span_context.trace_id().to_string() == trace)
                    .map(|s| (&s.name, s.span_kind.clone()))
                    .collect();
                let names: Vec<_> = all
                    .iter()
                    .map(|s| {
                        (
                            s.span_context.trace_id().to_string(),
                            &s.name,
                            s.span_kind.clone(),
                            s.parent_span_id,
                            s.span_context.span_id(),
                        )
                    })
                    .collect();
                panic!("trace {trace} incomplete: {of_trace:#?}; captured: {names:#?}")
            }
        }
    }
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn attr_str(span: &SpanData, key: &str) -> String {
    match attr(span, key) {
        Some(v) => v.as_str().into_owned(),
        None => panic!("{} has no {key}: {:?}", span.name, span.attributes),
    }
}

fn attr_i64(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::I64(n)) => *n,
        other => panic!("{} has {key} = {other:?}", span.name),
    }
}

/// A `traceparent` of a fresh trace, and its trace and span ids.
fn traceparent(n: u8) -> (String, String, String) {
    let trace = format!(
        "{:032x}",
        0x4242_0000_0000_0000_0000_0000_0000_0000u128 + u128::from(n)
    );
    let parent = format!("{:016x}", 0x1000 + u64::from(n));
    (format!("00-{trace}-{parent}-01"), trace, parent)
}

/// The three spans of one call through the gateway: the gateway's SERVER
/// span (child of the caller's), its CLIENT span to the backend, and the
/// backend's SERVER span under that.
struct Hop {
    gateway: SpanData,
    client: SpanData,
    backend: SpanData,
}

fn hop(spans: &[SpanData], caller: &str) -> Option<Hop> {
    let gateway = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server && s.parent_span_id.to_string() == caller)?;
    let client = spans.iter().find(|s| {
        s.span_kind == SpanKind::Client && s.parent_span_id == gateway.span_context.span_id()
    })?;
    let backend = spans.iter().find(|s| {
        s.span_kind == SpanKind::Server && s.parent_span_id == client.span_context.span_id()
    })?;
    Some(Hop {
        gateway: gateway.clone(),
        client: client.clone(),
        backend: backend.clone(),
    })
}

const CREATE: &str = "rapport.profiles.v1.ProfilesService/CreateCustomer";

#[tokio::test]
async fn calls_are_traced_by_the_conventions_in_every_protocol() {
    let capture = capture();
    let s = start().await;
    let key = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let bearer = format!("Bearer {key}");

    // A probe first: it must leave no span at all.
    let (probe_parent, probe_trace, _) = traceparent(1);
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    let mut check = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
        service: "rapport.profiles.v1.ProfilesService".into(),
    });
    check
        .metadata_mut()
        .insert("traceparent", probe_parent.parse().unwrap());
    health.check(check).await.unwrap();

    // gRPC.
    let (parent, trace, caller) = traceparent(2);
    let mut request = with_key(
        &key,
        rapport_proto::profiles::CreateCustomerRequest {
            customer: Some(customer("Ada Lovelace", "ada@example.com")),
            request_id: String::new(),
        },
    );
    request
        .metadata_mut()
        .insert("traceparent", parent.parse().unwrap());
    let created = s
        .profiles()
        .create_customer(request)
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    let spans = capture.trace(&trace, |s| hop(s, &caller).is_some()).await;
    let Hop {
        gateway,
        client,
        backend,
    } = hop(&spans, &caller).unwrap();
    for span in [&gateway, &client, &backend] {
        assert_eq!(span.name, CREATE);
        assert_eq!(attr_str(span, "rpc.system"), "grpc");
        assert_eq!(
            attr_str(span, "rpc.service"),
            "rapport.profiles.v1.ProfilesService"
        );
        assert_eq!(attr_str(span, "rpc.method"), "CreateCustomer");
        assert_eq!(attr_i64(span, "rpc.grpc.status_code"), 0);
        assert_eq!(span.status, Status::Unset, "{}", span.name);
    }
    assert_eq!(attr_str(&gateway, "tenant"), "acme");
    assert_eq!(attr_str(&backend, "tenant"), "acme");

    // gRPC-web: the status code is in the body's trailer frame, and still
    // reaches the span.
    let (parent, trace, caller) = traceparent(3);
    let message = rapport_proto::profiles::CreateCustomerRequest {
        customer: Some(customer("Grace Hopper", "grace@example.com")),
        request_id: String::new(),
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let web = http(
        s.gateway,
        "POST",
        &format!("/{CREATE}"),
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("traceparent", parent.as_str()),
        ],
        frame,
    )
    .await;
    assert_eq!(web.status, 200);
    let spans = capture.trace(&trace, |s| hop(s, &caller).is_some()).await;
    let hop_web = hop(&spans, &caller).unwrap();
    assert_eq!(hop_web.gateway.name, CREATE);
    assert_eq!(attr_i64(&hop_web.gateway, "rpc.grpc.status_code"), 0);
    assert_eq!(attr_str(&hop_web.gateway, "tenant"), "acme");

    // A gRPC-web call the gateway cannot route: UNIMPLEMENTED, an error of
    // the server by the conventions.
    let (parent, trace, caller) = traceparent(4);
    let web = http(
        s.gateway,
        "POST",
        "/rapport.bench.v1.EchoService/Echo",
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("traceparent", parent.as_str()),
        ],
        vec![0u8, 0, 0, 0, 0],
    )
    .await;
    assert_eq!(web.status, 200);
    let spans = capture
        .trace(&trace, |s| {
            s.iter()
                .any(|s| s.parent_span_id.to_string() == caller && s.span_kind == SpanKind::Server)
        })
        .await;
    let refused = &spans[0];
    assert_eq!(attr_i64(refused, "rpc.grpc.status_code"), 12);
    assert!(
        matches!(refused.status, Status::Error { .. }),
        "{:?}",
        refused.status
    );

    // REST: named by the route template, never the URL with its id.
    let (parent, trace, caller) = traceparent(5);
    let path = format!("/v1/{}", created.name);
    let got = http(
        s.gateway,
        "GET",
        &path,
        &[
            ("authorization", bearer.as_str()),
            ("traceparent", parent.as_str()),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let spans = capture.trace(&trace, |s| hop(s, &caller).is_some()).await;
    let Hop {
        gateway,
        client,
        backend,
    } = hop(&spans, &caller).unwrap();
    assert_eq!(
        gateway.name, "GET /v1/{name=customers/*}",
        "{:?}",
        gateway.attributes
    );
    assert_eq!(attr_str(&gateway, "http.route"), "/v1/{name=customers/*}");
    assert_eq!(attr_str(&gateway, "http.request.method"), "GET");
    assert_eq!(attr_i64(&gateway, "http.response.status_code"), 200);
    assert_eq!(attr_str(&gateway, "rpc.method"), "GetCustomer");
    assert_eq!(attr_i64(&gateway, "rpc.grpc.status_code"), 0);
    assert_eq!(attr_str(&gateway, "tenant"), "acme");
    for span in [&gateway, &client, &backend] {
        let id = created.name.trim_start_matches("customers/");
        assert!(!span.name.contains(id), "{}", span.name);
    }
    assert_eq!(
        client.name,
        "rapport.profiles.v1.ProfilesService/GetCustomer"
    );
    assert_eq!(
        backend.name,
        "rapport.profiles.v1.ProfilesService/GetCustomer"
    );

    // Everything above has been exported; the probes, which ended before,
    // left nothing.
    let probes: Vec<_> = capture
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == probe_trace)
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(probes, Vec::<std::borrow::Cow<'static, str>>::new());
}
