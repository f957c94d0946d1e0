//! A call that outlives its deadline ends with DEADLINE_EXCEEDED (what gRPC
//! means by it), not the CANCELLED tonic's own timer would answer, on every
//! server built with rapport-kit, over a real socket.
use std::time::Duration;

use rapport_kit::{GrpcServer, ServerConfig, server::App};
use rapport_proto::bench::{
    EchoRequest, EchoResponse,
    echo_service_client::EchoServiceClient,
    echo_service_server::{EchoService, EchoServiceServer},
};
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt as _;

/// Answers at once, except `hold`, which it never answers.
struct Stuck;

#[tonic::async_trait]
impl EchoService for Stuck {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let EchoRequest { payload } = request.into_inner();
        if payload[..] == b"hold"[..] {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(EchoResponse { payload }))
    }
}

async fn start(
    default_timeout_ms: u64,
) -> (
    std::net::SocketAddr,
    EchoServiceClient<tonic::transport::Channel>,
) {
    let server = GrpcServer::bind(ServerConfig {
        default_timeout_ms,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let app = App {
        routes: tonic::service::Routes::new(EchoServiceServer::new(Stuck)),
        service_names: vec!["rapport.bench.v1.EchoService"],
        file_descriptor_sets: vec![rapport_proto::FILE_DESCRIPTOR_SET],
        accept_http1: false,
    };
    tokio::spawn(server.serve(app, std::future::pending()));
    let client = EchoServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (addr, client)
}

fn echo(payload: &[u8], timeout: Option<Duration>) -> Request<EchoRequest> {
    let mut request = Request::new(EchoRequest {
        payload: payload.to_vec(),
    });
    if let Some(t) = timeout {
        request.set_timeout(t);
    }
    request
}

fn assert_deadline_exceeded(status: &Status) {
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let info = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "DEADLINE_EXCEEDED");
    assert_eq!(info.domain, "rapport.dev");
}

/// The status of one Echo call carrying `grpc-timeout: <timeout>`, sent with
/// a bare HTTP/2 client: tonic's client would enforce the deadline itself.
async fn status_with_deadline(
    addr: std::net::SocketAddr,
    payload: &[u8],
    timeout: &str,
) -> (String, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let message = prost::Message::encode_to_vec(&EchoRequest {
        payload: payload.to_vec(),
    });
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = http::Request::post(format!("http://{addr}/rapport.bench.v1.EchoService/Echo"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = http_body_util::BodyExt::collect(body).await.unwrap();
    // Trailers-only responses carry the status in the headers.
    let headers = collected.trailers().cloned().unwrap_or(parts.headers);
    let get = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (get("grpc-status"), get("grpc-message"))
}

#[tokio::test]
async fn a_call_past_the_clients_deadline_is_deadline_exceeded() {
    let (addr, mut client) = start(10_000).await;
    let (code, message) = status_with_deadline(addr, b"hold", "200m").await;
    assert_eq!(
        code,
        (Code::DeadlineExceeded as i32).to_string(),
        "{message}"
    );
    // The same over tonic's client, with its ErrorInfo; which timer answers
    // first there is a race, so only the bare client above pins the code.
    let status = client
        .echo(echo(b"hold", Some(Duration::from_millis(200))))
        .await
        .expect_err("the call cannot finish");
    if status.code() == Code::DeadlineExceeded {
        assert_deadline_exceeded(&status);
    }
    // The server is fine: the next call is answered.
    let answer = client
        .echo(echo(b"hi", Some(Duration::from_secs(5))))
        .await
        .expect("a quick call is answered");
    assert_eq!(answer.into_inner().payload, b"hi");
}

#[tokio::test]
async fn a_call_without_a_deadline_gets_the_servers_own() {
    let (_, mut client) = start(300).await;
    let status = client
        .echo(echo(b"hold", None))
        .await
        .expect_err("the call cannot finish");
    assert_deadline_exceeded(&status);
}
