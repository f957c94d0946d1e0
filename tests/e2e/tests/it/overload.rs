//! Load shedding per backend: when one backend has as many calls in flight as
//! its limit allows, the next call to it is refused at once with
//! RESOURCE_EXHAUSTED (reason OVERLOADED, naming the backend) instead of
//! queueing, while calls to other backends go on.

use std::{sync::Arc, time::Duration};

use rapport_e2e::*;
use rapport_gateway::backends::BackendConfig;
use rapport_proto::bench::{
    EchoRequest, EchoResponse,
    echo_service_client::EchoServiceClient,
    echo_service_server::{EchoService, EchoServiceServer},
};
use rapport_testkit::status::assert_error;
use tokio::sync::{Semaphore, mpsc};
use tonic::{
    Code, Request, Response, Status,
    transport::{Server, server::TcpIncoming},
};
use tonic_types::StatusExt as _;

const ECHO: &str = "rapport.bench.v1.EchoService";

/// An echo backend that holds every `hold` call until the test lets it go.
#[derive(Clone)]
struct Gated {
    gate: Arc<Semaphore>,
    arrived: mpsc::UnboundedSender<()>,
}

#[tonic::async_trait]
impl EchoService for Gated {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let EchoRequest { payload } = request.into_inner();
        if payload[..] == b"hold"[..] {
            let _ = self.arrived.send(());
            let _permit = self.gate.acquire().await.expect("gate stays open");
        }
        Ok(Response::new(EchoResponse { payload }))
    }
}

fn echo(payload: &'static [u8]) -> EchoRequest {
    EchoRequest {
        payload: payload.to_vec(),
    }
}

/// A stack whose gateway routes the echo service to a gated backend, with
/// one call in flight allowed per backend.
struct EchoStack {
    s: Stack,
    gate: Arc<Semaphore>,
    arrived: mpsc::UnboundedReceiver<()>,
    key: String,
    stop_echo: tokio::sync::oneshot::Sender<()>,
    echo_server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EchoStack {
    async fn start() -> Self {
        Self::with_limit(1).await
    }

    /// `limit` calls in flight allowed to the echo backend.
    async fn with_limit(limit: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = listener.local_addr().unwrap();
        let gate = Arc::new(Semaphore::new(0));
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        let backend = Gated {
            gate: gate.clone(),
            arrived: arrived_tx,
        };
        let (stop_echo, stopped) = tokio::sync::oneshot::channel::<()>();
        let echo_server = tokio::spawn(
            Server::builder()
                .add_service(EchoServiceServer::new(backend))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                }),
        );
        let s = start_with(Options {
            tweak: Some(Arc::new(move |config: &mut rapport_gateway::Config| {
                config.backends.insert(
                    ECHO.to_owned(),
                    BackendConfig {
                        endpoints: vec![format!("http://{echo_addr}")],
                        connections: 1,
                    },
                );
                // `limit` calls in flight per backend, whatever latency says.
                let limits = &mut config.backend_concurrency;
                limits.initial_limit = limit;
                limits.min_limit = limit;
                limits.max_limit = limit;
            })),
        })
        .await;
        let key = s
            .key("acme", &["bench.echo", "profiles.read", "profiles.write"])
            .await;
        Self {
            s,
            gate,
            arrived,
            key,
            stop_echo,
            echo_server,
        }
    }

    fn client(&self) -> EchoServiceClient<tonic::transport::Channel> {
        EchoServiceClient::new(self.s.channel.clone())
    }

    async fn stop(self) {
        drop(self.s);
        let _ = self.stop_echo.send(());
        self.echo_server.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_full_backend_sheds_at_once_and_other_backends_go_on() {
    let mut e = EchoStack::start().await;
    let (key, client) = (e.key.clone(), e.client());

    // The first call is admitted and held by the backend.
    let held = tokio::spawn({
        let mut client = client.clone();
        let key = key.clone();
        async move { client.echo(with_key(&key, echo(b"hold"))).await }
    });
    tokio::time::timeout(Duration::from_secs(10), e.arrived.recv())
        .await
        .expect("the held call reaches the backend")
        .unwrap();

    // The next one is refused at once, not queued behind it.
    let refused = client
        .clone()
        .echo(with_key(&key, echo(b"next")))
        .await
        .expect_err("the backend is full");
    assert_error(&refused, Code::ResourceExhausted, "OVERLOADED");
    let details = refused.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(info.domain, "gateway.rapport.dev");
    assert_eq!(info.metadata.get("service").map(String::as_str), Some(ECHO));
    assert!(
        refused.metadata().get("grpc-retry-pushback-ms").is_some(),
        "clients are told when to retry"
    );

    // Another backend is not affected by this one's queue.
    let mut profiles = e.s.profiles();
    profiles
        .create_customer(with_key(
            &key,
            pb::CreateCustomerRequest {
                customer: Some(customer("Ada", "ada@example.com")),
                request_id: "overload-1".into(),
            },
        ))
        .await
        .expect("profiles has its own limit");

    // Once the held call finishes, its slot is free again.
    e.gate.add_permits(1);
    let answered = held.await.unwrap().expect("the held call completes");
    assert_eq!(answered.into_inner().payload[..], b"hold"[..]);
    let again = client
        .clone()
        .echo(with_key(&key, echo(b"again")))
        .await
        .expect("admitted once the backend has room");
    assert_eq!(again.into_inner().payload[..], b"again"[..]);

    e.stop().await;
}

#[tokio::test]
async fn a_trickling_body_holds_no_backend_slot_beyond_its_deadline() {
    let e = EchoStack::start().await;
    // An HTTP/2 gRPC request whose body never comes, with a 300 ms deadline.
    let stream = tokio::net::TcpStream::connect(e.s.gateway).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let never = http_body_util::StreamBody::new(futures::stream::pending::<
        Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >());
    let req = http::Request::post(format!("http://{}/{ECHO}/Echo", e.s.gateway))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .header("authorization", format!("Bearer {}", e.key))
        .body(never)
        .unwrap();
    let started = std::time::Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("answered within the deadline, not left hanging")
        .expect("a response");
    assert_eq!(
        resp.headers().get("grpc-status").map(|v| v.as_bytes()),
        Some(b"4".as_slice()),
        "DEADLINE_EXCEEDED: {:?}",
        resp.headers()
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // The slot it held is free again: with a limit of one, a call gets in.
    let answered = e
        .client()
        .echo(with_key(&e.key, echo(b"after")))
        .await
        .expect("the backend slot was released");
    assert_eq!(answered.into_inner().payload[..], b"after"[..]);
    e.stop().await;
}

#[tokio::test]
async fn one_tenant_holding_slow_calls_does_not_shed_another() {
    // Four slots at the echo backend; a tenant may hold half of them.
    let mut e = EchoStack::with_limit(4).await;
    let client = e.client();
    let held: Vec<_> = (0..4)
        .map(|_| {
            let mut client = client.clone();
            let key = e.key.clone();
            tokio::spawn(async move { client.echo(with_key(&key, echo(b"hold"))).await })
        })
        .collect();
    // Two of acme's calls reach the backend and stay there ...
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), e.arrived.recv())
            .await
            .expect("a held call reaches the backend")
            .unwrap();
    }
    // ... and acme's other two are refused: its share is taken.
    let mut results = Vec::new();
    let mut pending = Vec::new();
    for h in held {
        if h.is_finished() {
            results.push(h.await.unwrap());
        } else {
            pending.push(h);
        }
    }
    // The refusals come at once; wait for them rather than for the held.
    while results.len() < 2 {
        let (done, _, rest) = tokio::time::timeout(
            Duration::from_secs(10),
            futures::future::select_all(pending),
        )
        .await
        .expect("acme's calls beyond its share are refused at once");
        results.push(done.unwrap());
        pending = rest;
    }
    for r in &results {
        let err = r.as_ref().expect_err("acme is over its share");
        assert_error(err, Code::ResourceExhausted, "OVERLOADED");
    }

    // Another tenant's call gets in.
    let globex = e.s.key("globex", &["bench.echo"]).await;
    let answered = client
        .clone()
        .echo(with_key(&globex, echo(b"globex")))
        .await
        .expect("another tenant is not shed");
    assert_eq!(answered.into_inner().payload[..], b"globex"[..]);

    e.gate.add_permits(2);
    for h in pending {
        h.await.unwrap().expect("the held calls complete");
    }
    e.stop().await;
}

#[tokio::test]
async fn a_trickling_body_is_cut_off_by_the_body_read_timeout_not_the_deadline() {
    let e = EchoStack::start().await;
    let stream = tokio::net::TcpStream::connect(e.s.gateway).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let never = http_body_util::StreamBody::new(futures::stream::pending::<
        Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >());
    // A deadline of a minute; the body-read timeout (5 s by default) is
    // what ends it.
    let req = http::Request::post(format!("http://{}/{ECHO}/Echo", e.s.gateway))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "60S")
        .header("authorization", format!("Bearer {}", e.key))
        .body(never)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .expect("answered well before the call's deadline")
        .expect("a response");
    assert_eq!(
        resp.headers().get("grpc-status").map(|v| v.as_bytes()),
        Some(b"4".as_slice()),
        "DEADLINE_EXCEEDED: {:?}",
        resp.headers()
    );
    let answered = e
        .client()
        .echo(with_key(&e.key, echo(b"after")))
        .await
        .expect("the backend slot was released");
    assert_eq!(answered.into_inner().payload[..], b"after"[..]);
    e.stop().await;
}
