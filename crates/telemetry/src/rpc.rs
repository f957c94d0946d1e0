//! A span per RPC: method, tenant and gRPC status code, parented on the
//! caller's W3C trace context.
use std::time::Duration;

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

/// Makes the `rpc` span of one call.
#[derive(Debug, Clone, Copy)]
pub struct RpcSpan;

impl<B> MakeSpan<B> for RpcSpan {
    fn make_span(&mut self, request: &http::Request<B>) -> Span {
        let path = request.uri().path();
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        // `tenant` is recorded by whoever establishes it (the gateway after
        // authentication), never taken from a header a client can set.
        let span = tracing::info_span!(
            "rpc",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            tenant = Empty,
            rpc.grpc.status_code = Empty,
        );
        let _ = span.set_parent(crate::propagation::extract(request.headers()));
        span
    }
}

/// Records `rpc.grpc.status_code` from response headers (trailers-only
/// responses) or trailers.
#[derive(Debug, Clone, Copy)]
pub struct RecordStatus;

fn record(headers: &http::HeaderMap, span: &Span) {
    if let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
    {
        span.record("rpc.grpc.status_code", code);
    }
}

impl<B> OnResponse<B> for RecordStatus {
    fn on_response(self, response: &http::Response<B>, _latency: Duration, span: &Span) {
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
