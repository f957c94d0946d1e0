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
use tracing::{Metadata, Subscriber, span, subscriber::Interest};
use tracing_subscriber::{
    EnvFilter, Layer as _,
    layer::{Context, Filter, SubscriberExt as _},
    util::SubscriberInitExt as _,
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
    let env_filter = AskedEveryTime(
        EnvFilter::try_new(filter).with_context(|| format!("log filter {filter:?}"))?,
    );
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
        let quiet = AskedEveryTime(EnvFilter::new(
            "info,h2=off,hyper=off,tonic=off,tower=off,opentelemetry=off",
        ));
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

/// A per-layer filter whose verdict is asked for every span and event, never
/// cached as "always" for a callsite.
///
/// Why: a per-layer filter hands its verdict from `enabled` to the span's
/// creation through a thread-local, and a callsite cached as "always" skips
/// `enabled`, so its span is judged by whatever the last `enabled` call on
/// that thread left there. `log::log_enabled!` (through tracing-log) asks
/// `enabled` without creating anything, and sqlx does that after every
/// statement; once a log filter has a DEBUG directive, a statement run on the
/// request's thread (PostgreSQL; SQLite runs on its own worker threads)
/// left "disabled" behind and the next span, such as the gateway's SERVER
/// or CLIENT span, was dropped from the logs and from the export
/// (tokio-rs/tracing#2519). Capping the interest at "sometimes" costs one
/// filter evaluation per span and event.
#[derive(Debug)]
struct AskedEveryTime<F>(F);

impl<S: Subscriber, F: Filter<S>> Filter<S> for AskedEveryTime<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        let interest = self.0.callsite_enabled(meta);
        if interest.is_always() {
            Interest::sometimes()
        } else {
            interest
        }
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, cx)
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        self.0.on_record(id, values, cx)
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx)
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx)
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Names of the spans a layer was given.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<&'static str>>>);

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Seen {
        fn on_new_span(&self, attrs: &span::Attributes<'_>, _: &span::Id, _: Context<'_, S>) {
            self.0.lock().unwrap().push(attrs.metadata().name());
        }
    }

    /// What sqlx does after a statement when no filter wants `sqlx::query`
    /// at DEBUG: ask through the `log` facade (which says yes: with
    /// per-layer filters the registry says no only when all 64 filter slots
    /// said no), then
    /// log through a callsite every filter has turned off, so nothing takes
    /// the verdicts that question left behind.
    fn statement_logged_nowhere() {
        let meta = log::Metadata::builder()
            .level(log::Level::Debug)
            .target("sqlx::query")
            .build();
        if log::Log::enabled(&tracing_log::LogTracer::new(), &meta) {
            tracing::debug!(target: "sqlx::query", "statement");
        }
    }

    #[test]
    fn a_span_after_a_log_enabled_check_reaches_every_layer() {
        // As in `init`: one filter for the logs (with a DEBUG directive, as
        // when someone debugs a service), another for the export.
        let logs = Seen::default();
        let export = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(
                logs.clone()
                    .with_filter(AskedEveryTime(EnvFilter::new("info,rapport=debug"))),
            )
            .with(
                export
                    .clone()
                    .with_filter(AskedEveryTime(EnvFilter::new("info,h2=off"))),
            );
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                statement_logged_nowhere();
                let _span = tracing::info_span!("rpc").entered();
            }
        });
        assert_eq!(*logs.0.lock().unwrap(), ["rpc"; 3]);
        assert_eq!(*export.0.lock().unwrap(), ["rpc"; 3]);
    }
}
