//! Server bootstrap shared by every service: bind early, serve gRPC with
//! health and reflection, a default deadline, size limits, readiness that
//! follows the service's dependencies (its database), and a graceful drain
//! that first lets load balancers see NOT_SERVING.
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use futures::future::BoxFuture;

use serde::{Deserialize, Serialize};

use crate::metrics::{Metrics, RedLayer};
use tokio::net::TcpListener;
use tonic::{
    service::Routes,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};

/// Listener and limits of one gRPC server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Deadline applied to calls that set none, and the cap on those that do.
    pub default_timeout_ms: u64,
    /// Largest accepted request message, in bytes.
    pub max_message_bytes: usize,
    /// Largest accepted metadata (HTTP/2 header list), in bytes.
    pub max_metadata_bytes: u32,
    /// How long in-flight calls may run after a shutdown signal.
    pub drain_grace_ms: u64,
    /// How long the server keeps serving after a shutdown signal while
    /// reporting NOT_SERVING, before it stops accepting: Kubernetes removes a
    /// terminating pod from its endpoints asynchronously, and clients keep
    /// sending to it until their load balancer notices (a readiness probe
    /// period or an endpoints update later). 0 in tests and `rapport dev`.
    pub shutdown_delay_ms: u64,
    /// How often readiness asks the service's dependencies (its database)
    /// whether they answer.
    pub readiness_interval_ms: u64,
    /// Where Prometheus scrapes `/metrics` (`0.0.0.0:9464` in the
    /// manifests); off when unset. A listener of its own, apart from the
    /// gRPC port (see [`crate::metrics`]).
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            default_timeout_ms: 10_000,
            max_message_bytes: 1024 * 1024,
            max_metadata_bytes: 16 * 1024,
            drain_grace_ms: 10_000,
            shutdown_delay_ms: 5_000,
            metrics_listen: None,
            readiness_interval_ms: 2_000,
        }
    }
}

/// Asks a dependency whether it answers now (`Err` says why not, for logs):
/// a service hands its database's ping to [`GrpcServer::with_readiness`].
pub type Readiness = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What a service hands to [`GrpcServer::serve`]: its routes, the gRPC
/// service names to report in health, and descriptor sets for reflection.
#[derive(Debug)]
pub struct App {
    /// The service's own gRPC services.
    pub routes: Routes,
    /// Fully qualified gRPC service names, e.g. `rapport.profiles.v1.ProfilesService`.
    pub service_names: Vec<&'static str>,
    /// Encoded `FileDescriptorSet`s that describe those services.
    pub file_descriptor_sets: Vec<&'static [u8]>,
    /// Accept HTTP/1.1 too (gRPC-web and REST front doors); plain gRPC
    /// services speak HTTP/2 only.
    pub accept_http1: bool,
}

/// A gRPC server whose socket is already bound, so its address is known (and
/// can be printed or handed to a test) before serving starts.
pub struct GrpcServer {
    listener: TcpListener,
    addr: SocketAddr,
    config: ServerConfig,
    health: HealthReporter,
    readiness: Option<Readiness>,
    metrics: Metrics,
    metrics_listener: Option<TcpListener>,
    builtin_probes: bool,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl GrpcServer {
    /// Binds the listener now. Binding early makes a taken port fail at boot,
    /// before any other work, and lets `127.0.0.1:0` report its real port.
    pub async fn bind(config: ServerConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let metrics_listener = match config.metrics_listen {
            Some(at) => Some(TcpListener::bind(at).await?),
            None => None,
        };
        let (health, _) = tonic_health::server::health_reporter();
        Ok(Self {
            listener,
            addr,
            config,
            health,
            readiness: None,
            metrics: Metrics::new(),
            metrics_listener,
            builtin_probes: true,
        })
    }

    /// Leaves health and reflection to the app's routes. The gateway
    /// answers them itself: health as each backend reports it, reflection of
    /// only the services it routes, both over gRPC-web too.
    pub fn without_builtin_probes(mut self) -> Self {
        self.builtin_probes = false;
        self
    }

    /// The service's metrics, to register its own (database pool, outbox
    /// lag) before serving.
    pub fn metrics(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    /// Where `/metrics` is served, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Reports the service NOT_SERVING while `probe` fails and SERVING again
    /// once it succeeds, checked every `readiness_interval_ms`, so that a
    /// pod whose database is unreachable leaves its Service's endpoints
    /// instead of answering UNAVAILABLE to every call. Only the service
    /// names change: the overall status (`""`, the liveness probe's) stays
    /// SERVING, because restarting the pod would not bring the database back.
    pub fn with_readiness(mut self, probe: Readiness) -> Self {
        self.readiness = Some(probe);
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `app` until `shutdown` resolves, then drains.
    ///
    /// On shutdown: every service reports NOT_SERVING (so a load balancer stops
    /// sending new calls), the listener closes, in-flight calls get
    /// `drain_grace_ms` to finish, and whatever is left is cancelled.
    pub async fn serve(
        self,
        app: App,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let Self {
            listener,
            addr,
            config,
            health,
            readiness,
            metrics,
            metrics_listener,
            builtin_probes,
        } = self;
        let metrics = Arc::new(metrics);
        // Scrapes are answered until this function returns, however it does.
        // Calls are recorded only where they are served.
        let red = metrics_listener
            .is_some()
            .then(|| RedLayer(metrics.clone()));
        let _metrics_task = metrics_listener.map(|l| AbortOnDrop(metrics.clone().serve(l)));
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );
        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let mut reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for fds in &app.file_descriptor_sets {
            reflection = reflection.register_encoded_file_descriptor_set(fds);
            reflection_alpha = reflection_alpha.register_encoded_file_descriptor_set(fds);
        }
        // Both reflection versions: grpcurl and Postman still speak v1alpha.
        let reflection = reflection
            .build_v1()
            .expect("descriptor sets compiled by rapport-proto are valid");
        let reflection_alpha = reflection_alpha
            .build_v1alpha()
            .expect("descriptor sets compiled by rapport-proto are valid");
        for name in &app.service_names {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        health.set_service_status("", ServingStatus::Serving).await;

        let routes = if builtin_probes {
            app.routes
                .add_service(health_service)
                .add_service(reflection)
                .add_service(reflection_alpha)
        } else {
            app.routes
        };

        // tonic ignores Server::tcp_nodelay with serve_with_incoming: set it on
        // the incoming stream, or small responses wait for Nagle.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = Server::builder()
            .accept_http1(app.accept_http1)
            .timeout(Duration::from_millis(config.default_timeout_ms))
            .http2_max_header_list_size(config.max_metadata_bytes)
            .layer(rapport_telemetry::rpc::layer())
            .layer(tower::util::option_layer(red))
            // The called path, for TenantGuard to check the assertion's
            // method against (interceptors do not see the URI).
            .layer(tower::util::MapRequestLayer::new(
                record_called_method as fn(http::Request<_>) -> http::Request<_>,
            ))
            .layer(tower::util::MapResponseLayer::new(
                codec_errors_as_invalid_argument as fn(_) -> _,
            ))
            // Inside tonic's own timer, so that DEADLINE_EXCEEDED (not
            // tonic's CANCELLED) is what a client whose deadline passed sees.
            .layer(crate::deadline::DeadlineLayer::new(Duration::from_millis(
                config.default_timeout_ms,
            )))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            });
        let mut server = tokio::spawn(server);
        let watcher = readiness.map(|probe| {
            tokio::spawn(watch_readiness(
                probe,
                health.clone(),
                app.service_names.clone(),
                Duration::from_millis(config.readiness_interval_ms.max(1)),
            ))
        });

        tokio::select! {
            ended = &mut server => {
                if let Some(w) = &watcher { w.abort(); }
                return flatten(ended);
            }
            () = shutdown => {}
        }
        // Stopped first, so that it cannot report SERVING again mid-drain.
        if let Some(w) = watcher {
            w.abort();
            let _ = w.await;
        }
        tracing::info!(%addr, delay_ms = config.shutdown_delay_ms, "shutdown requested: reporting NOT_SERVING, then draining");
        for name in &app.service_names {
            health
                .set_service_status(*name, ServingStatus::NotServing)
                .await;
        }
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        // Keep accepting and serving while load balancers and Kubernetes
        // endpoints catch up with NOT_SERVING; closing now would refuse the
        // calls still routed here (connection refused, which a client sees
        // as UNAVAILABLE on a call that never reached a server).
        if config.shutdown_delay_ms > 0 {
            tokio::select! {
                ended = &mut server => return flatten(ended),
                () = tokio::time::sleep(Duration::from_millis(config.shutdown_delay_ms)) => {}
            }
        }
        let _ = stop_tx.send(());
        let grace = Duration::from_millis(config.drain_grace_ms);
        match tokio::time::timeout(grace, &mut server).await {
            Ok(ended) => flatten(ended),
            Err(_) => {
                tracing::warn!(%addr, grace_ms = config.drain_grace_ms, "drain grace elapsed; cancelling remaining calls");
                server.abort();
                Ok(())
            }
        }
    }
}

fn record_called_method<B>(mut request: http::Request<B>) -> http::Request<B> {
    let path = crate::context::CalledMethod(request.uri().path().to_owned());
    request.extensions_mut().insert(path);
    request
}

/// Flips the service names between SERVING and NOT_SERVING as `probe`
/// answers. Two failures in a row make the service NOT_SERVING (one lost
/// ping is not an outage); one success makes it SERVING again.
async fn watch_readiness(
    probe: Readiness,
    health: HealthReporter,
    names: Vec<&'static str>,
    interval: Duration,
) {
    const FAILURES_TO_UNREADY: u32 = 2;
    let mut failures = 0u32;
    let mut serving = true;
    loop {
        tokio::time::sleep(interval).await;
        // A probe that hangs (a black-holed database) is a failure too.
        let answer = tokio::time::timeout(interval.max(Duration::from_secs(1)), probe())
            .await
            .unwrap_or_else(|_| Err("no answer in time".to_owned()));
        match answer {
            Ok(()) => failures = 0,
            Err(why) => {
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(error = %why, "readiness check failed");
                }
            }
        }
        let now_serving = failures < FAILURES_TO_UNREADY;
        if now_serving != serving {
            serving = now_serving;
            let status = if serving {
                tracing::info!("dependencies answer again: reporting SERVING");
                ServingStatus::Serving
            } else {
                tracing::warn!("dependencies unreachable: reporting NOT_SERVING");
                ServingStatus::NotServing
            };
            for name in &names {
                health.set_service_status(*name, status).await;
            }
        }
    }
}

/// tonic answers two kinds of bad input on its own, before any handler runs:
/// an over-limit message with a bare OUT_OF_RANGE, and bytes that are not
/// the request message with INTERNAL ("failed to decode Protobuf
/// message"), which tells the client the server is broken. Clients get the
/// same shape as every other invalid request instead: INVALID_ARGUMENT with
/// `ErrorInfo` and a field violation (as Google APIs answer), so neither is
/// retried.
fn codec_errors_as_invalid_argument(
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    // grpc-message is percent-encoded on the wire.
    let message = header("grpc-message").replace("%20", " ");
    let (reason, text, violation) = match header("grpc-status") {
        "11" if message.contains("message length too large") => (
            "REQUEST_TOO_LARGE",
            "the request message is larger than this server accepts",
            "the whole request exceeds the maximum message size",
        ),
        "13" if message.starts_with("failed to decode Protobuf message") => (
            "MALFORMED_MESSAGE",
            "the request body is not a valid message of this RPC's request type",
            "the whole request could not be decoded",
        ),
        // tonic-health's answer for a service it does not know has no
        // details; every other Rapport error carries ErrorInfo.
        "5" if message == "service not registered" => {
            return crate::ErrorBuilder::new(
                tonic::Code::NotFound,
                "rapport.dev",
                "SERVICE_NOT_FOUND",
            )
            .message("no health status is kept for this service name here")
            .build()
            .into_http();
        }
        _ => return response,
    };
    crate::ErrorBuilder::new(tonic::Code::InvalidArgument, "rapport.dev", reason)
        .message(text)
        // AIP-193 wants a field path; the whole request is named `request`
        // (README, "Errors"), as in rapport_store::WHOLE_REQUEST.
        .violations(crate::FieldViolations::single("request", violation))
        .build()
        .into_http()
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn flatten(
    joined: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), tonic::transport::Error> {
    match joined {
        Ok(result) => result,
        // The server task only ends by returning; a panic inside it is a bug
        // we surface loudly rather than hide.
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    // Kubernetes sends SIGTERM to start a graceful shutdown; a developer presses Ctrl-C.
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler only fails outside a Tokio runtime");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
