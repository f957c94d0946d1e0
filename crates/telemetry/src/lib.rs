//! rapport-telemetry: the tracing subscriber of every Rapport process,
//! OpenTelemetry OTLP export (configured by the standard `OTEL_*` variables,
//! off when unset) and W3C trace context in and out. It never logs request
//! bodies or metadata values other than the tenant id.
#![forbid(unsafe_code)]

pub mod propagation;
pub mod rpc;

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
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
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_timeout(Duration::from_secs(2))
            .build()
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
