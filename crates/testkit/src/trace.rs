//! Trace context in tests: a process-wide tracing subscriber with an
//! OpenTelemetry layer that samples every span and exports nowhere, so a
//! server under test continues the trace a request carries (`traceparent`)
//! and what it records (outbox envelopes) can be checked against it.
use std::sync::Once;

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt as _;

static INIT: Once = Once::new();

/// Installs the W3C propagator and the sampling subscriber once per test
/// process (a no-op when a subscriber is already installed: then traces are
/// whatever that one records).
pub fn capture() {
    INIT.call_once(|| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("rapport-test")));
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// A `traceparent` header value of a sampled remote parent with a fresh
/// random trace id: `(header value, trace id in hex)`.
pub fn remote_parent() -> (String, String) {
    let trace_id = uuid::Uuid::now_v7().simple().to_string();
    // The random half of another v7 id: never all zeros.
    let span_id = &uuid::Uuid::now_v7().simple().to_string()[16..];
    (format!("00-{trace_id}-{span_id}-01"), trace_id)
}
