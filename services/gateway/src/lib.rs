//! rapport-gateway: the one public door of Rapport. It authenticates callers
//! (API keys, JWT), resolves their tenant and scopes, enforces the scope each
//! RPC declares in its contract, rate-limits and sheds load, writes the audit
//! log, and routes gRPC, gRPC-web and REST/JSON calls to the services, which
//! trust only the tenant assertion it signs.
#![forbid(unsafe_code)]

pub mod adaptive;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod backends;
pub mod call;
pub mod catalog;
pub mod connect;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod probes;
pub mod rest;
pub mod storage;

use std::{
    collections::BTreeMap, convert::Infallible, future::Future, net::SocketAddr, sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use rapport_kit::{AssertionSigner, GrpcServer, PageTokens, Secret, ServerConfig, server::App};
use rapport_proto::gateway::gateway_admin_service_server::GatewayAdminServiceServer;
use rapport_store::{DatabaseConfig, Db};
use serde::{Deserialize, Serialize};
use tonic::body::Body;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{
    audit::AuditSink,
    auth::{
        api_keys::ApiKeys,
        jwt::{JwtConfig, JwtVerifier},
    },
    backends::{BackendConfig, Backends},
    call::Protocol,
    catalog::Catalog,
    limits::RateLimits,
    pipeline::{ADMIN_SERVICE, Pipeline, PipelineCall},
    storage::Store,
};

/// Configuration of the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listener and limits. `server.default_timeout_ms` is the longest
    /// deadline a call gets (client deadlines are capped to it).
    pub server: ServerConfig,
    /// Deadline for calls that set none.
    pub default_timeout_ms: u64,
    /// The gateway's own database (API keys, audit log).
    pub database: DatabaseConfig,
    /// Backends by fully qualified gRPC service name.
    pub backends: BTreeMap<String, BackendConfig>,
    /// How often backend host names are re-resolved.
    pub resolve_every_ms: u64,
    /// Calls in flight at once, gateway-wide, before new ones are shed.
    pub concurrency_limit: usize,
    /// Per-backend adaptive limits, shedding before a backend's queue grows.
    pub backend_concurrency: adaptive::AdaptiveConfig,
    /// Default per-key rate limit.
    pub rate_limit: RateLimitConfig,
    /// Limits per tenant: rate, share of the calls in flight, keys.
    pub tenant_limits: limits::TenantLimitConfig,
    /// The API key cache and the key store reads authentication may cost.
    pub key_cache: auth::api_keys::KeyCacheConfig,
    /// Bytes of request bodies the gateway buffers at once, all calls
    /// together (REST bodies count twice: text and message). Past it new
    /// calls are shed (`OVERLOADED`). Size it well under the pod's memory.
    pub body_budget_bytes: usize,
    /// The longest a request body may take to arrive, apart from the call's
    /// deadline: a trickling body holds its slots for at most this long.
    pub body_read_timeout_ms: u64,
    /// Days an audit record is kept; older ones are deleted hourly. 0: kept
    /// for ever.
    pub audit_retention_days: u32,
    /// Origins allowed to call from a browser (gRPC-web, REST). Empty: none.
    pub cors_origins: Vec<String>,
    /// JWT bearer tokens; off unless a JWKS is configured.
    pub jwt: JwtConfig,
    /// The private key that signs tenant assertions: the base64url seed of
    /// an Ed25519 key (32 bytes). Only the gateway holds it; services verify
    /// with its public key (`rapport keys`-free: `rapport dev` generates the
    /// pair; see deploy/k8s/README.md for production and rotation). Secret:
    /// only from the environment.
    pub assertion_key: Secret,
    /// Lifetime of an assertion, seconds: an assertion is checked when the
    /// service receives the call, so this only covers the hop and clock skew.
    pub assertion_ttl_secs: u64,
    /// Secret signing the admin API's page tokens. Secret.
    pub page_token_secret: Secret,
    /// Where Prometheus scrapes `/metrics`; off when unset. A port of its
    /// own, never the public one.
    pub metrics_listen: Option<SocketAddr>,
}

/// Token bucket defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second per API key or token subject.
    pub per_second: u32,
    /// Bucket size, in seconds of refill.
    pub burst_seconds: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 100,
            burst_seconds: 2,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                default_timeout_ms: 60_000,
                // Admin and REST requests are small; 4 MiB leaves room for
                // services with bigger messages.
                max_message_bytes: 4 * 1024 * 1024,
                ..ServerConfig::default()
            },
            default_timeout_ms: 10_000,
            database: DatabaseConfig::sqlite_file("gateway"),
            backends: BTreeMap::new(),
            resolve_every_ms: 10_000,
            concurrency_limit: 1024,
            backend_concurrency: adaptive::AdaptiveConfig::default(),
            rate_limit: RateLimitConfig::default(),
            tenant_limits: limits::TenantLimitConfig::default(),
            key_cache: auth::api_keys::KeyCacheConfig::default(),
            // A quarter of the 256 MiB pod limit in deploy/k8s.
            body_budget_bytes: 64 * 1024 * 1024,
            body_read_timeout_ms: 5_000,
            audit_retention_days: 400,
            cors_origins: Vec::new(),
            jwt: JwtConfig::default(),
            assertion_key: Secret::default(),
            assertion_ttl_secs: 10,
            page_token_secret: Secret::default(),
            metrics_listen: None,
        }
    }
}

/// A built, bound gateway.
#[derive(Debug)]
pub struct Gateway {
    server: GrpcServer,
    db: Db,
    app: App,
    keys: Arc<ApiKeys>,
    metrics: Arc<metrics::Metrics>,
    gauges: Arc<Pipeline>,
    metrics_listener: Option<tokio::net::TcpListener>,
    audit: AuditSink,
    delay_probe: Option<tokio::task::JoinHandle<()>>,
    jwks_refresh: Option<tokio::task::JoinHandle<()>>,
    audit_retention: Option<Duration>,
    serving: tokio::sync::watch::Sender<bool>,
}

/// The gateway schema's migrations (`rapport migrate gateway`).
pub type Migrator = rapport_gateway_migration::Migrator;

/// Opens the gateway's database (for `rapport keys` and `rapport migrate`).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::new(
        rapport_store::open::<Migrator>(&config.database).await?,
    ))
}

fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

fn mark_grpc_web<B>(mut req: http::Request<B>) -> http::Request<B> {
    let web = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc-web"));
    if web {
        req.extensions_mut().insert(Protocol::GrpcWeb);
    }
    req
}

/// Connects, migrates, starts backend pools and binds the listener.
pub async fn build(config: &Config) -> anyhow::Result<Gateway> {
    let assertion = AssertionSigner::from_base64(config.assertion_key.expose())
        .context("assertion_key must be the base64url seed of an Ed25519 key (32 bytes)")?;
    if config.page_token_secret.len() < 32 {
        anyhow::bail!("page_token_secret must be at least 32 characters");
    }
    let catalog = Arc::new(Catalog::load(rapport_proto::FILE_DESCRIPTOR_SET)?);
    for service in config.backends.keys() {
        if !catalog.methods().any(|m| &m.service == service) {
            anyhow::bail!("backends.{service}: no such gRPC service in the contracts");
        }
    }
    let store = open_store(config).await?;
    let db = store.db().clone();
    let metrics = Arc::new(metrics::Metrics::default());
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics_listen {addr}"))?,
        ),
        None => None,
    };
    let keys = Arc::new(ApiKeys::with_cache(store.clone(), &config.key_cache));
    let audit = AuditSink::start(store.clone());
    let audit_sink = audit.clone();
    let jwt = JwtVerifier::from_config(&config.jwt)
        .await
        .context("jwt")?
        .map(Arc::new);
    let jwks_refresh = jwt
        .as_ref()
        .filter(|_| config.jwt.refresh_every_secs > 0)
        .map(|jwt| {
            jwt.clone()
                .spawn_refresher(Duration::from_secs(config.jwt.refresh_every_secs))
        });
    let admin = GatewayAdminServiceServer::new(admin::Handler::new(
        keys.clone(),
        store.clone(),
        audit.clone(),
        PageTokens::new(config.page_token_secret.expose().as_bytes(), error::DOMAIN),
        config.tenant_limits.clone(),
    ))
    .max_decoding_message_size(config.server.max_message_bytes);
    let backends = Arc::new(Backends::start(
        &config.backends,
        Duration::from_millis(config.resolve_every_ms.max(100)),
        &config.backend_concurrency,
    )?);
    let routed: Vec<String> = config.backends.keys().cloned().collect();
    let (serving, serving_rx) = tokio::sync::watch::channel(true);
    let probes = probes::Probes::new(
        probes::GatewayHealth::new(backends.clone(), serving_rx),
        &routed,
    )?;
    let max_delay = config.backend_concurrency.max_scheduling_delay_ms;
    let (cpu_gate, delay_probe) = if max_delay > 0 {
        let (delay, probe) = adaptive::SchedulingDelay::start(Duration::from_millis(max_delay));
        (
            Some(adaptive::CpuGate::new(delay, &config.backend_concurrency)),
            Some(probe),
        )
    } else {
        (None, None)
    };
    // Tokio caps a semaphore's permits; no budget could need more.
    let body_budget = config.body_budget_bytes.clamp(
        config.server.max_message_bytes + 5,
        tokio::sync::Semaphore::MAX_PERMITS,
    );
    let pipeline = Arc::new(Pipeline {
        catalog: catalog.clone(),
        keys: keys.clone(),
        jwt,
        limits: RateLimits::new(
            config.rate_limit.per_second,
            config.rate_limit.burst_seconds,
            &config.tenant_limits,
        ),
        shares: limits::TenantShares::new(config.tenant_limits.concurrency_share),
        concurrency: Arc::new(tokio::sync::Semaphore::new(config.concurrency_limit.max(1))),
        concurrency_limit: config.concurrency_limit.max(1),
        cpu_gate,
        body_budget: Arc::new(tokio::sync::Semaphore::new(body_budget)),
        body_read_timeout: Duration::from_millis(config.body_read_timeout_ms.max(1)),
        backends,
        admin,
        assertion,
        assertion_ttl: Duration::from_secs(config.assertion_ttl_secs.clamp(2, 300)),
        audit,
        default_timeout: Duration::from_millis(config.default_timeout_ms),
        max_timeout: Duration::from_millis(config.server.default_timeout_ms),
        metrics: metrics.clone(),
        max_message_bytes: config.server.max_message_bytes,
    });

    let rest = rest::router(
        catalog.clone(),
        Arc::new(PipelineCall(pipeline.clone())),
        &routed,
    );
    let gauges = pipeline.clone();
    let connect_door = pipeline.clone();
    let grpc = tower::service_fn(move |req: http::Request<Body>| {
        let pipeline = pipeline.clone();
        let probes = probes.clone();
        async move {
            // Health and reflection sit behind the same gRPC-web translation
            // as every other call, so browsers and `buf curl --protocol
            // grpcweb` can discover and probe services.
            if probes::is_probe(req.uri().path()) {
                return Ok::<_, Infallible>(probes.call(req).await);
            }
            Ok::<_, Infallible>(pipeline.handle(req).await)
        }
    });
    // gRPC-web is translated to gRPC on the way in and back on the way out.
    // tonic-web refuses plain HTTP/1.1 requests, so REST must not pass through it.
    let grpc = ServiceBuilder::new()
        .map_request(mark_grpc_web::<axum::body::Body>)
        .layer(tonic_web::GrpcWebLayer::new())
        .service(grpc);
    let front = tower::service_fn(move |req: http::Request<axum::body::Body>| {
        let grpc = grpc.clone();
        let rest = rest.clone();
        let connect_door = connect_door.clone();
        async move {
            let resp = if let Some(method) = connect::unary_method(&connect_door, &req) {
                connect::call(connect_door, method, req).await
            } else if is_grpc(&req) {
                grpc.oneshot(req).await?
            } else {
                rest.oneshot(req).await?.map(Body::new)
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let origins: Vec<http::HeaderValue> = config
        .cors_origins
        .iter()
        .map(|o| {
            http::HeaderValue::from_str(o)
                .with_context(|| format!("cors_origins: {o:?} is not a header value"))
        })
        .collect::<anyhow::Result<_>>()?;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            http::Method::GET,
            http::Method::POST,
            http::Method::PATCH,
            http::Method::PUT,
            http::Method::DELETE,
        ])
        .allow_headers([
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            http::HeaderName::from_static("x-api-key"),
            http::HeaderName::from_static("x-grpc-web"),
            http::HeaderName::from_static("x-user-agent"),
            http::HeaderName::from_static("grpc-timeout"),
            http::HeaderName::from_static("connect-protocol-version"),
            http::HeaderName::from_static("connect-timeout-ms"),
            http::HeaderName::from_static("traceparent"),
            http::HeaderName::from_static("tracestate"),
        ])
        .expose_headers([
            http::HeaderName::from_static("grpc-status"),
            http::HeaderName::from_static("grpc-message"),
            http::HeaderName::from_static("grpc-status-details-bin"),
            http::HeaderName::from_static("grpc-retry-pushback-ms"),
            http::header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(600));
    let front = ServiceBuilder::new().layer(cors).service(front);
    let router = axum::Router::new().fallback_service(front);
    let server = GrpcServer::bind(config.server.clone())
        .await
        .with_context(|| format!("binding {}", config.server.listen))?
        .without_builtin_probes();
    let app = App {
        routes: tonic::service::Routes::from(router),
        service_names: vec![ADMIN_SERVICE],
        file_descriptor_sets: vec![rapport_proto::FILE_DESCRIPTOR_SET],
        accept_http1: true,
    };
    Ok(Gateway {
        server,
        db,
        app,
        keys,
        metrics,
        gauges,
        metrics_listener,
        delay_probe,
        jwks_refresh,
        audit_retention: (config.audit_retention_days > 0)
            .then(|| Duration::from_secs(u64::from(config.audit_retention_days) * 86_400)),
        audit: audit_sink,
        serving,
    })
}

impl Gateway {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// API keys (for `rapport dev`'s bootstrap key).
    pub fn keys(&self) -> &Arc<ApiKeys> {
        &self.keys
    }

    /// The gateway's database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Where `/metrics` is served, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown`, then drains.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Self {
            server,
            db,
            app,
            metrics,
            gauges,
            metrics_listener,
            audit,
            delay_probe,
            jwks_refresh,
            audit_retention,
            serving,
            ..
        } = self;
        // Health answers NOT_SERVING from the moment shutdown begins, so load
        // balancers stop sending calls while in-flight ones drain.
        let shutdown = async move {
            shutdown.await;
            serving.send_replace(false);
        };
        let metrics_task = metrics_listener.map(|listener| {
            let router = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let metrics = metrics.clone();
                    let gauges = gauges.clone();
                    async move {
                        (
                            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                            metrics.render(&gauges.gauges()),
                        )
                    }
                }),
            );
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::warn!(error = %e, "metrics listener stopped");
                }
            })
        });
        // CreateApiKey stores idempotency keys like every service's writes.
        let purge = rapport_store::idempotency::spawn_purger(db.clone());
        let retention = audit_retention
            .map(|keep| audit::spawn_retention(storage::Store::new(db.clone()), keep));
        let result = server.serve(app, shutdown).await;
        for task in metrics_task
            .into_iter()
            .chain(delay_probe)
            .chain(jwks_refresh)
            .chain(retention)
            .chain([purge])
        {
            task.abort();
        }
        // The last calls' audit records are still queued: write them before
        // the database goes away.
        audit.flush().await;
        db.close().await;
        result.context("serving the gateway")
    }
}
