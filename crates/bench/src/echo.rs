//! The echo server: a bare tonic server that answers with what it was sent.
//! No health, reflection, telemetry layer or deadline, only the RPC path
//! itself, so it is the ceiling every other scenario is read against.
use std::future::Future;

use rapport_proto::bench::{
    EchoRequest, EchoResponse,
    echo_service_server::{EchoService, EchoServiceServer},
};
use tokio::net::TcpListener;
use tonic::{
    Request, Response, Status,
    transport::{Server, server::TcpIncoming},
};

/// The echo handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let EchoRequest { payload } = request.into_inner();
        Ok(Response::new(EchoResponse { payload }))
    }
}

/// Serves echo on an already bound listener until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    // tonic ignores Server::tcp_nodelay with serve_with_incoming: set it on
    // the incoming stream, or small responses wait for Nagle.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_service(EchoServiceServer::new(Echo))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
