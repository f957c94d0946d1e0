//! Health and reflection as the gateway answers them, for gRPC and gRPC-web
//! alike: health of the gateway itself (`""` and its admin service) from its
//! own state, and of every routed service as that service's backend reports
//! it; reflection of exactly the services it routes.
//!
//! They need no credential (probes and tools call them bare), so they do not
//! go through the pipeline, and they are not traced (see rapport-telemetry's
//! `rpc` module): Kubernetes probes every few seconds would drown the traces.
use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt as _, stream::BoxStream};
use tokio::sync::watch;
use tonic::{Request, Response, Status, body::Body};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_client::HealthClient,
    health_server::{Health, HealthServer},
};
use tower::ServiceExt as _;

use crate::{backends::Backends, pipeline::ADMIN_SERVICE};

/// Path prefix of the health service.
const HEALTH: &str = "/grpc.health.v1.Health/";
/// Path prefixes of the reflection services.
const REFLECTION_V1: &str = "/grpc.reflection.v1.ServerReflection/";
const REFLECTION_V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/";

/// How long a backend's health answer is reused. Health needs no credential,
/// so without it anyone could make the gateway call a backend per request;
/// with it a backend sees at most one check per second per gateway.
const BACKEND_HEALTH_TTL: Duration = Duration::from_secs(1);
/// How long the gateway waits for a backend's health answer before it
/// reports the service NOT_SERVING.
const BACKEND_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a request is for health or reflection.
pub fn is_probe(path: &str) -> bool {
    path.starts_with(HEALTH)
        || path.starts_with(REFLECTION_V1)
        || path.starts_with(REFLECTION_V1ALPHA)
}

/// The gateway's health service.
#[derive(Clone)]
pub struct GatewayHealth {
    backends: Arc<Backends>,
    serving: watch::Receiver<bool>,
    cache: Arc<Mutex<HashMap<String, (Instant, i32)>>>,
}

impl GatewayHealth {
    /// `serving` is the gateway's own state: true until shutdown begins.
    pub fn new(backends: Arc<Backends>, serving: watch::Receiver<bool>) -> Self {
        Self {
            backends,
            serving,
            cache: Arc::default(),
        }
    }

    fn own(&self) -> i32 {
        own_status(*self.serving.borrow())
    }

    async fn backend_status(&self, service: &str) -> Option<i32> {
        let channel = self.backends.channel(service)?;
        if let Some((at, status)) = self.cache.lock().expect("health cache").get(service)
            && at.elapsed() < BACKEND_HEALTH_TTL
        {
            return Some(*status);
        }
        let mut request = Request::new(HealthCheckRequest {
            service: service.to_owned(),
        });
        request.set_timeout(BACKEND_HEALTH_TIMEOUT);
        let checked = tokio::time::timeout(
            BACKEND_HEALTH_TIMEOUT,
            HealthClient::new(channel).check(request),
        )
        .await;
        // A backend that cannot be reached, or does not know its own name, is
        // not serving as far as a caller of the gateway can tell.
        let status = match checked {
            Ok(Ok(response)) => response.into_inner().status,
            Ok(Err(e)) => {
                tracing::debug!(%service, code = ?e.code(), "backend health check failed");
                ServingStatus::NotServing as i32
            }
            Err(_) => ServingStatus::NotServing as i32,
        };
        self.cache
            .lock()
            .expect("health cache")
            .insert(service.to_owned(), (Instant::now(), status));
        Some(status)
    }
}

fn own_status(serving: bool) -> i32 {
    if serving {
        ServingStatus::Serving as i32
    } else {
        ServingStatus::NotServing as i32
    }
}

fn not_found() -> Status {
    rapport_kit::ErrorBuilder::new(tonic::Code::NotFound, "rapport.dev", "SERVICE_NOT_FOUND")
        .message("this gateway neither is nor routes a service of this name")
        .build()
}

#[tonic::async_trait]
impl Health for GatewayHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        let status = if service.is_empty() || service == ADMIN_SERVICE {
            self.own()
        } else {
            self.backend_status(&service).await.ok_or_else(not_found)?
        };
        Ok(Response::new(HealthCheckResponse { status }))
    }

    type WatchStream = BoxStream<'static, Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        if service.is_empty() || service == ADMIN_SERVICE {
            // The current state at once, then each change.
            let serving = self.serving.clone();
            let stream = futures::stream::unfold((serving, true), |(mut rx, first)| async move {
                if !first && rx.changed().await.is_err() {
                    return None;
                }
                let status = own_status(*rx.borrow_and_update());
                Some((Ok(HealthCheckResponse { status }), (rx, false)))
            });
            return Ok(Response::new(stream.boxed()));
        }
        let Some(channel) = self.backends.channel(&service) else {
            return Err(not_found());
        };
        // A watch is the backend's own stream, relayed as it comes.
        let stream = HealthClient::new(channel)
            .watch(HealthCheckRequest { service })
            .await?
            .into_inner();
        Ok(Response::new(stream.boxed()))
    }
}

/// Health and both reflection versions, by path.
#[derive(Clone)]
pub struct Probes {
    health: HealthServer<GatewayHealth>,
    reflection: GrpcService,
    reflection_alpha: GrpcService,
}

type GrpcService =
    tower::util::BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

impl Probes {
    /// Reflection advertises the admin service, every routed service, health
    /// and reflection; a service in the contracts that this gateway does not
    /// route (the bench's echo service, in most deployments) is not listed.
    pub fn new(health: GatewayHealth, routed: &[String]) -> anyhow::Result<Self> {
        let mut names = vec![ADMIN_SERVICE.to_owned(), "grpc.health.v1.Health".to_owned()];
        names.extend(routed.iter().cloned());
        let configure = || {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(rapport_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
            for name in &names {
                builder = builder.with_service_name(name.clone());
            }
            builder
        };
        let reflection = configure()
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .build_v1()?;
        let reflection_alpha = configure()
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
            .build_v1alpha()?;
        Ok(Self {
            health: HealthServer::new(health),
            reflection: GrpcService::new(reflection),
            reflection_alpha: GrpcService::new(reflection_alpha),
        })
    }

    /// Answers a health or reflection request ([`is_probe`]).
    pub async fn call(&self, request: http::Request<Body>) -> http::Response<Body> {
        let path = request.uri().path();
        let answered: Result<_, Infallible> = if path.starts_with(HEALTH) {
            self.health.clone().oneshot(request).await
        } else if path.starts_with(REFLECTION_V1) {
            self.reflection.clone().oneshot(request).await
        } else {
            self.reflection_alpha.clone().oneshot(request).await
        };
        match answered {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}
