//! Load shedding per backend: when one backend has as many calls in flight as
//! its limit allows, the next call to it is refused at once with
//! RESOURCE_EXHAUSTED (reason OVERLOADED, naming the backend) instead of
//! queueing, while calls to other backends go on.
mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use rapport_gateway::backends::BackendConfig;
use rapport_proto::bench::{
    EchoRequest, EchoResponse,
    echo_service_client::EchoServiceClient,
    echo_service_server::{EchoService, EchoServiceServer},
};
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

#[tokio::test]
async fn a_full_backend_sheds_at_once_and_other_backends_go_on() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = listener.local_addr().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
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
            // One call in flight per backend, whatever latency says.
            let limits = &mut config.backend_concurrency;
            limits.initial_limit = 1;
            limits.min_limit = 1;
            limits.max_limit = 1;
        })),
    })
    .await;
    let key = s
        .key("acme", &["bench.echo", "profiles.read", "profiles.write"])
        .await;
    let client = EchoServiceClient::new(s.channel.clone());

    // The first call is admitted and held by the backend.
    let held = tokio::spawn({
        let mut client = client.clone();
        let key = key.clone();
        async move { client.echo(with_key(&key, echo(b"hold"))).await }
    });
    tokio::time::timeout(Duration::from_secs(10), arrived.recv())
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
    let mut profiles = s.profiles();
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
    gate.add_permits(1);
    let answered = held.await.unwrap().expect("the held call completes");
    assert_eq!(answered.into_inner().payload[..], b"hold"[..]);
    let again = client
        .clone()
        .echo(with_key(&key, echo(b"again")))
        .await
        .expect("admitted once the backend has room");
    assert_eq!(again.into_inner().payload[..], b"again"[..]);

    drop(s);
    let _ = stop_echo.send(());
    echo_server.await.unwrap().unwrap();
}
