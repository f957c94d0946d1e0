//! Traces reach an OpenTelemetry collector over both OTLP transports a
//! platform team may run (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, the default,
//! and `http/protobuf`), from a real `rapport serve profiles`, to a real
//! collector endpoint on 127.0.0.1:0: the process names itself
//! `rapport-profiles`, and a call is a SERVER span named by its RPC with its
//! gRPC status.
use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::span::SpanKind,
};
use prost::Message as _;
use rapport_proto::profiles::{GetCustomerRequest, profiles_service_client::ProfilesServiceClient};
use rapport_testkit::TestDb;
use tokio::{net::TcpListener, sync::mpsc};

type Exports = mpsc::UnboundedReceiver<ExportTraceServiceRequest>;

/// A gRPC OTLP collector: what it receives.
struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_collector() -> (String, Exports) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), rx)
}

/// An OTLP/HTTP collector (`POST /v1/traces`, protobuf bodies).
async fn http_collector() -> (String, Exports) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let path_ok = req.uri().path() == "/v1/traces";
                        let protobuf = req
                            .headers()
                            .get("content-type")
                            .is_some_and(|v| v == "application/x-protobuf");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = match ExportTraceServiceRequest::decode(body) {
                            Ok(export) if path_ok && protobuf => {
                                let _ = tx.send(export);
                                200
                            }
                            _ => 400,
                        };
                        let answer = ExportTraceServiceResponse::default().encode_to_vec();
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::from(answer)))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), rx)
}

async fn a_call_is_exported(protocol: &str, endpoint: String, mut exports: Exports) {
    let testdb = TestDb::fresh().await.unwrap();
    let serving = crate::process::serve_profiles(
        &testdb.url(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            // Export each batch promptly.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await
    .expect("rapport serve profiles serves");
    let channel = rapport_testkit::connect(serving.addr).await.unwrap();
    let missing = rapport_testkit::tenant_request(
        "acme",
        GetCustomerRequest {
            name: "customers/0192e0c0-0000-7000-8000-000000000001".into(),
        },
    );
    let status = ProfilesServiceClient::new(channel)
        .get_customer(missing)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    let wanted = "rapport.profiles.v1.ProfilesService/GetCustomer";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let export = tokio::time::timeout_at(deadline, exports.recv())
            .await
            .unwrap_or_else(|_| panic!("{protocol}: no span {wanted} exported"))
            .expect("the collector runs");
        for rs in &export.resource_spans {
            let service_name = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.clone());
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                if span.name != wanted {
                    continue;
                }
                assert_eq!(
                    service_name,
                    Some(Value::StringValue("rapport-profiles".into())),
                    "{protocol}: the process's service.name"
                );
                assert_eq!(span.kind, SpanKind::Server as i32, "{protocol}");
                let code = span
                    .attributes
                    .iter()
                    .find(|a| a.key == "rpc.grpc.status_code")
                    .and_then(|a| a.value.as_ref()?.value.clone());
                assert_eq!(code, Some(Value::IntValue(5)), "{protocol}: NOT_FOUND");
                return;
            }
        }
    }
}

#[tokio::test]
async fn spans_reach_a_grpc_collector() {
    let (endpoint, exports) = grpc_collector().await;
    a_call_is_exported("grpc", endpoint, exports).await;
}

#[tokio::test]
async fn spans_reach_an_http_protobuf_collector() {
    let (endpoint, exports) = http_collector().await;
    a_call_is_exported("http/protobuf", endpoint, exports).await;
}

/// Every call's SERVER span is exported while the log filter has a DEBUG
/// directive. Then sqlx asks `log_enabled!` after each statement, which
/// used to leave a verdict behind that dropped the next span on that thread
/// (see rapport_telemetry's `AskedEveryTime`); on PostgreSQL, where the
/// statement runs on the call's own thread, calls went missing.
#[tokio::test]
async fn every_call_is_exported_while_debug_logging() {
    let (endpoint, mut exports) = grpc_collector().await;
    let testdb = TestDb::fresh().await.unwrap();
    let serving = crate::process::serve_profiles(
        &testdb.url(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RUST_LOG", "info,rapport_profiles=debug"),
        ],
    )
    .await
    .expect("rapport serve profiles serves");
    let mut client =
        ProfilesServiceClient::new(rapport_testkit::connect(serving.addr).await.unwrap());
    const CALLS: usize = 20;
    for i in 0..CALLS {
        let missing = rapport_testkit::tenant_request(
            "acme",
            GetCustomerRequest {
                name: format!("customers/0192e0c0-0000-7000-8000-{i:012}"),
            },
        );
        let status = client.get_customer(missing).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }

    let wanted = "rapport.profiles.v1.ProfilesService/GetCustomer";
    let mut exported = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while exported < CALLS {
        let Ok(export) = tokio::time::timeout_at(deadline, exports.recv()).await else {
            panic!("{exported} of {CALLS} calls' spans exported");
        };
        exported += export
            .expect("the collector runs")
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .filter(|s| s.name == wanted && s.kind == SpanKind::Server as i32)
            .count();
    }
    assert_eq!(exported, CALLS);
}
