//! Prometheus metrics every service serves on a listener of its own
//! (`server.metrics_listen`, e.g. `0.0.0.0:9464`), apart from its gRPC port
//! so a scrape never shares the calls' limits and the port can be opened to
//! Prometheus only.
//!
//! What every service gets from [`crate::GrpcServer`]: RED per RPC
//! (`rpc_server_requests_total` and `rpc_server_duration_seconds`, labelled
//! by `rpc_service`, `rpc_method` and `rpc_grpc_status_code` as the
//! OpenTelemetry RPC conventions name them) and the process (CPU seconds,
//! resident memory, open file descriptors, as the Prometheus client
//! libraries name them). A service adds its own with [`Metrics::registry`]
//! (its database pool: `rapport_store::metrics`) and [`Metrics::on_scrape`]
//! (values read asynchronously at scrape time: the outbox's lag).
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::AtomicU64},
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::Registry,
};

/// Upper bounds of the duration histogram, seconds: from a cached read to
/// a call that ran into the default deadline.
const BOUNDS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The labels of a call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    rpc_service: String,
    rpc_method: String,
    rpc_grpc_status_code: u8,
}

/// A value read at scrape time.
type Sampler = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// A service's metrics: the registry and what fills it.
pub struct Metrics {
    registry: Registry,
    requests: Family<RpcLabels, Counter>,
    duration: Family<RpcLabels, Histogram>,
    samplers: Vec<Sampler>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The RPC and process metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RpcLabels, Counter>::default();
        let duration = Family::<RpcLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BOUNDS)) as fn() -> Histogram,
        );
        registry.register(
            "rpc_server_requests",
            "gRPC calls answered, by service, method and status code",
            requests.clone(),
        );
        registry.register(
            "rpc_server_duration_seconds",
            "Time from a call's request to its response headers",
            duration.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            requests,
            duration,
            samplers: Vec::new(),
        }
    }

    /// The registry, for a service's own metrics and collectors.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Runs `sample` before every scrape (it sets gauges it holds), for
    /// values that need an await, such as a database query. Keep it cheap:
    /// scrapes come every 15–60 s.
    pub fn on_scrape<F, Fut>(&mut self, sample: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.samplers.push(Arc::new(move || Box::pin(sample())));
    }

    /// A gauge of floating-point values, registered under `name`.
    pub fn gauge(&mut self, name: &str, help: &str) -> Gauge<f64, AtomicU64> {
        let gauge = Gauge::<f64, AtomicU64>::default();
        self.registry.register(name, help, gauge.clone());
        gauge
    }

    /// Records one answered call of `path` (`/package.Service/Method`).
    fn observe(&self, path: &str, code: u8, seconds: f64) {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("", ""));
        // A path no service knows is answered UNIMPLEMENTED; its name came
        // from the caller, so it must not become a series of its own.
        let (service, method) = if code == 12 {
            ("unknown", "unknown")
        } else {
            (service, method)
        };
        let labels = RpcLabels {
            rpc_service: service.to_owned(),
            rpc_method: method.to_owned(),
            rpc_grpc_status_code: code,
        };
        self.requests.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(seconds);
    }

    /// The text exposition (OpenMetrics), after running the samplers.
    pub async fn render(&self) -> String {
        for sample in &self.samplers {
            sample().await;
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// Serves `GET /metrics` on `listener` until the task is aborted.
    pub fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> tokio::task::JoinHandle<()> {
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = self.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render().await,
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "metrics listener stopped");
            }
        })
    }
}

/// The process's CPU time, resident memory and open descriptors, read from
/// /proc at each scrape (Linux, where Rapport runs; elsewhere nothing).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = cpu_seconds() {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        if let Some(rss) = resident_bytes() {
            let gauge = ConstGauge::new(rss);
            let metric = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory, bytes",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let gauge = ConstGauge::new(fds.count() as i64);
            let metric = encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// utime + stime of /proc/self/stat, in seconds. Clock ticks are USER_HZ,
/// 100 on every Linux architecture Rapport builds for.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// VmRSS of /proc/self/status, in bytes.
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The tower layer that records every call in [`Metrics`].
#[derive(Debug, Clone)]
pub struct RedLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for RedLayer {
    type Service = Red<S>;
    fn layer(&self, inner: S) -> Red<S> {
        Red {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// See [`RedLayer`].
#[derive(Debug, Clone)]
pub struct Red<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Red<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A unary call that failed is answered trailers-only: its status
            // is in these headers. A success puts OK in the trailers, which
            // come after the body: no status here means OK. (Every
            // Rapport RPC is unary.)
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u8>().ok())
                .unwrap_or(0);
            metrics.observe(&path, code, started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_counted_by_rpc_and_code_and_unknown_paths_collapse() {
        let metrics = Metrics::new();
        metrics.observe("/rapport.profiles.v1.ProfilesService/GetCustomer", 0, 0.002);
        metrics.observe("/rapport.profiles.v1.ProfilesService/GetCustomer", 5, 0.001);
        metrics.observe("/x.Random/Guess", 12, 0.0001);
        let text = metrics.render().await;
        assert!(text.contains(
            "rpc_server_requests_total{rpc_service=\"rapport.profiles.v1.ProfilesService\",rpc_method=\"GetCustomer\",rpc_grpc_status_code=\"5\"} 1"
        ), "{text}");
        assert!(
            text.contains(
                "rpc_service=\"unknown\",rpc_method=\"unknown\",rpc_grpc_status_code=\"12\""
            ),
            "{text}"
        );
        assert!(!text.contains("Guess"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("process_open_fds"), "{text}");
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
        assert!(text.contains("le=\"10.0\""), "{text}");
    }
}
