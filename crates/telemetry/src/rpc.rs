//! The SERVER span of every call (gRPC, gRPC-web, REST): named and
//! attributed by the OpenTelemetry conventions, with tenant and status code,
//! parented on the caller's W3C trace context. Health and reflection are not traced.
use std::time::Duration;

use opentelemetry::trace::TraceContextExt as _;
use tower_http::{
    classify::{GrpcErrorsAsFailures, GrpcFailureClass, SharedClassifier},
    trace::{MakeSpan, OnEos, OnFailure, OnResponse, TraceLayer},
};
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The tower layer every Rapport server installs.
pub type RpcTraceLayer = TraceLayer<
    SharedClassifier<GrpcErrorsAsFailures>,
    RpcSpan,
    (),
    RecordStatus,
    (),
    RecordStatus,
    LogFailure,
>;

/// Builds the per-RPC tracing layer.
pub fn layer() -> RpcTraceLayer {
    TraceLayer::new_for_grpc()
        .make_span_with(RpcSpan)
        .on_request(())
        .on_response(RecordStatus)
        .on_body_chunk(())
        .on_eos(RecordStatus)
        .on_failure(LogFailure)
}

/// Makes the SERVER span of one call: `rpc` for gRPC and gRPC-web, `http`
/// for anything else (REST), none for health and reflection.
#[derive(Debug, Clone, Copy)]
pub struct RpcSpan;

/// Whether a path is a health check or reflection: Kubernetes probes every
/// few seconds per pod, and tracing each would drown the traces that matter.
pub fn is_probe(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

impl<B> MakeSpan<B> for RpcSpan {
    fn make_span(&mut self, request: &http::Request<B>) -> Span {
        let path = request.uri().path();
        if is_probe(path) {
            return Span::none();
        }
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/grpc"));
        // `tenant` is recorded by whoever establishes it (the gateway after
        // authentication), never taken from a header a client can set.
        let span = if grpc {
            let (service, method) = path
                .trim_start_matches('/')
                .split_once('/')
                .unwrap_or((path, ""));
            tracing::info_span!(
                "rpc",
                otel.name = %path.trim_start_matches('/'),
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                tenant = Empty,
                rpc.grpc.status_code = Empty,
            )
        } else {
            // Named by the HTTP method alone until the REST door matches a
            // route and renames it `METHOD /route/{template}`: the URL holds
            // ids, unbounded and personal, and never goes into a span name.
            let method = request.method().as_str();
            tracing::info_span!(
                "http",
                otel.name = %method,
                otel.kind = "server",
                otel.status_code = Empty,
                http.request.method = %method,
                http.route = Empty,
                http.response.status_code = Empty,
                rpc.system = Empty,
                rpc.service = Empty,
                rpc.method = Empty,
                tenant = Empty,
                rpc.grpc.status_code = Empty,
            )
        };
        let _ = span.set_parent(crate::propagation::extract(request.headers()));
        span
    }
}

/// Names an `http` SERVER span by the route its request matched:
/// `GET /v1/{name=customers/*}`, with `http.route`.
pub fn record_route(span: &Span, method: &http::Method, route: &str) {
    span.record("http.route", route);
    // The OpenTelemetry span started when the span was first entered, so
    // `otel.name` recorded now would be ignored: rename the span itself.
    span.context()
        .span()
        .update_name(format!("{method} {route}"));
}

/// Whether a gRPC code marks a SERVER span as failed, by the OpenTelemetry
/// conventions for gRPC: the server's own faults, not the caller's
/// (NOT_FOUND or INVALID_ARGUMENT are answers, not errors of the server).
pub fn is_server_error(code: i32) -> bool {
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Records a call's gRPC status on a SERVER span (`rpc` or `http`), and
/// marks it ERROR where the conventions say so. For a REST call those codes
/// are exactly the ones answered with a 5xx.
pub fn record_server_status(span: &Span, code: i32) {
    span.record("rpc.grpc.status_code", code);
    if is_server_error(code) {
        span.record("otel.status_code", "ERROR");
    }
}

/// Records `rpc.grpc.status_code` from response headers (trailers-only
/// responses) or trailers, and a REST response's HTTP status.
#[derive(Debug, Clone, Copy)]
pub struct RecordStatus;

fn record(headers: &http::HeaderMap, span: &Span) {
    if let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    {
        record_server_status(span, code);
    }
}

impl<B> OnResponse<B> for RecordStatus {
    fn on_response(self, response: &http::Response<B>, _latency: Duration, span: &Span) {
        // Declared on `http` spans only; a no-op on `rpc` ones.
        span.record(
            "http.response.status_code",
            i64::from(response.status().as_u16()),
        );
        if response.status().is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        record(response.headers(), span);
    }
}

impl OnEos for RecordStatus {
    fn on_eos(self, trailers: Option<&http::HeaderMap>, _duration: Duration, span: &Span) {
        if let Some(trailers) = trailers {
            record(trailers, span);
        }
    }
}

/// Logs failed calls at debug level: the service already logged the cause
/// once, at its error mapping point.
#[derive(Debug, Clone, Copy)]
pub struct LogFailure;

impl OnFailure<GrpcFailureClass> for LogFailure {
    fn on_failure(&mut self, class: GrpcFailureClass, latency: Duration, _span: &Span) {
        tracing::debug!(%class, latency_ms = latency.as_millis() as u64, "rpc failed");
    }
}
