//! rapport-telemetry: the tracing subscriber of every Rapport process,
//! OpenTelemetry OTLP export (configured by the standard `OTEL_*` variables,
//! off when unset) and W3C trace context in and out. It never logs request
//! bodies or metadata values other than the tenant id.
#![forbid(unsafe_code)]

pub mod propagation;
pub mod rpc;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines, for development.
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors in production.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}; expected `pretty` or `json`"
            )),
        }
    }
}

/// Handle on the installed telemetry; call [`Telemetry::shutdown`] before exit
/// to flush spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops span export. Bounded: a dead collector costs at most
    /// the export timeout.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            eprintln!("telemetry: span export shutdown: {err}");
        }
    }
}

/// Whether the standard OTEL_* variables ask for trace export.
fn otlp_requested() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The OTLP/HTTP client: hyper, run on the process's Tokio runtime.
///
/// Why the hop: the SDK's batch processor exports from a thread of its own
/// that has no Tokio runtime, and hyper's client spawns its connections
/// onto the current one: called there directly, every export failed (and,
/// the SDK's own logs being off, silently).
#[derive(Debug)]
struct OnRuntime {
    client: Arc<opentelemetry_http::hyper::HyperClient>,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// The OTLP transports this build speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

/// The transport `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`) asks for; gRPC when neither is set, as
/// before these variables were read (the collector's 4317). `http/json` is
/// refused by name rather than silently sent as something else.
fn otlp_protocol() -> anyhow::Result<OtlpProtocol> {
    let var = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|k| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (k, v))
    });
    match var {
        None => Ok(OtlpProtocol::Grpc),
        Some((_, v)) if v.trim() == "grpc" => Ok(OtlpProtocol::Grpc),
        Some((_, v)) if v.trim() == "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        Some((k, v)) => {
            anyhow::bail!("{k}={v:?}: Rapport exports traces over `grpc` or `http/protobuf`")
        }
    }
}

/// Installs the global subscriber: logs to stderr filtered by `filter`
/// (`RUST_LOG` syntax), plus OTLP span export when `OTEL_EXPORTER_OTLP_*` is
/// set. Must run inside a Tokio runtime (the OTLP exporter spawns on it).
/// A second call in the same process (tests) keeps the first subscriber.
pub fn init(service_name: &str, format: LogFormat, filter: &str) -> anyhow::Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let env_filter =
        EnvFilter::try_new(filter).with_context(|| format!("log filter {filter:?}"))?;
    let fmt = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .compact()
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };

    let provider = if otlp_requested() {
        let exporter = match otlp_protocol()? {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_timeout(Duration::from_secs(2))
                .build(),
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(OnRuntime {
                    client: Arc::new(
                        opentelemetry_http::hyper::HyperClient::with_default_connector(
                            Duration::from_secs(2),
                            None,
                        ),
                    ),
                    runtime: tokio::runtime::Handle::current(),
                })
                .with_timeout(Duration::from_secs(2))
                .build(),
        }
        .context("building the OTLP span exporter")?;
        let mut resource = Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name(service_name.to_owned());
        }
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build(),
        )
    } else {
        None
    };

    let otel = provider.as_ref().map(|p| {
        // The exporter's own transport must not feed its spans back into itself.
        let quiet = EnvFilter::new("info,h2=off,hyper=off,tonic=off,tower=off,opentelemetry=off");
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("rapport"))
            .with_filter(quiet)
    });

    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(env_filter))
        .with(otel)
        .try_init();
    if installed.is_err() {
        // Already installed (several servers in one test process): keep it.
        return Ok(Telemetry { provider: None });
    }
    if let Some(p) = &provider {
        opentelemetry::global::set_tracer_provider(p.clone());
    }
    Ok(Telemetry { provider })
}
