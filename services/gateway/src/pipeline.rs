//! The path of every call through the gateway: find the RPC in the catalog,
//! authenticate, check the scope the contract declares, rate-limit, replace
//! whatever tenant metadata the client sent with a signed assertion, bound the
//! deadline, forward the message bytes untouched, and audit the outcome.
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use chrono::Utc;
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use rapport_kit::{AssertionSigner, assertion::Claims, error::code_name};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status, body::Body};
use tower::ServiceExt as _;

use crate::{
    adaptive::CpuGate,
    audit::AuditSink,
    auth::{AuthError, Principal, api_keys::ApiKeys, credential, jwt::JwtVerifier},
    backends::Backends,
    call::{Authorized, BodyError, GrpcCall, Protocol, RequestFacts, ResponseFuture, read_body},
    catalog::{Catalog, MethodInfo},
    error::{Error, to_status},
    limits::{RateLimits, TenantShares},
    storage::AuditRecord,
};

/// The admin service the gateway serves itself.
pub const ADMIN_SERVICE: &str = "rapport.gateway.v1.GatewayAdminService";

type AdminServer = rapport_proto::gateway::gateway_admin_service_server::GatewayAdminServiceServer<
    crate::admin::Handler,
>;

/// Everything a call needs.
pub struct Pipeline {
    /// RPCs by path.
    pub catalog: Arc<Catalog>,
    /// API key verification.
    pub keys: Arc<ApiKeys>,
    /// JWT verification, when configured.
    pub jwt: Option<Arc<JwtVerifier>>,
    /// Per-principal and per-tenant token buckets.
    pub limits: RateLimits,
    /// Each tenant's share of the calls in flight.
    pub shares: Arc<TenantShares>,
    /// Calls in flight, gateway-wide.
    pub concurrency: Arc<Semaphore>,
    /// The size of `concurrency`.
    pub concurrency_limit: usize,
    /// Sheds while the gateway's own CPU is the bottleneck.
    pub cpu_gate: Option<CpuGate>,
    /// Bytes of request bodies buffered at once, across all calls.
    pub body_budget: Arc<Semaphore>,
    /// The longest a request body may take to arrive, whatever the deadline.
    pub body_read_timeout: Duration,
    /// Backend pools.
    pub backends: Arc<Backends>,
    /// The admin API, served in-process behind the same checks.
    pub admin: AdminServer,
    /// Signs tenant assertions.
    pub assertion: AssertionSigner,
    /// Lifetime of an assertion.
    pub assertion_ttl: Duration,
    /// Audit log.
    pub audit: AuditSink,
    /// Deadline for calls that set none.
    pub default_timeout: Duration,
    /// Longest deadline granted.
    pub max_timeout: Duration,
    /// RED metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Largest request message accepted (unary calls).
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

/// A status as a trailers-only gRPC response.
pub fn status_response(status: Status) -> http::Response<Body> {
    status.into_http()
}

impl Pipeline {
    /// An OVERLOADED refusal, counted by the gate that made it (`cause`;
    /// empty when [`Pipeline::read_body`] already counted it).
    fn overloaded(
        &self,
        cause: &'static str,
        message: &str,
        backend: Option<&str>,
    ) -> http::Response<Body> {
        if !cause.is_empty() {
            self.metrics.refused("OVERLOADED", cause);
        }
        overloaded_response(message, backend)
    }

    /// The gauges of `/metrics`, read when Prometheus scrapes: the calls in
    /// flight and each backend's adaptive limit, next to its calls in flight.
    pub fn gauges(&self) -> Vec<crate::metrics::Gauge> {
        use crate::metrics::Gauge;
        let in_flight = self
            .concurrency_limit
            .saturating_sub(self.concurrency.available_permits());
        let mut services: Vec<&str> = self.backends.services().collect();
        services.sort_unstable();
        let per_backend = |read: fn(&crate::adaptive::AdaptiveLimit) -> usize| {
            services
                .iter()
                .filter_map(|s| {
                    let limit = self.backends.limit(s)?;
                    Some((format!("service=\"{s}\""), read(limit) as f64))
                })
                .collect()
        };
        vec![
            Gauge {
                name: "rapport_gateway_calls_in_flight",
                help: "Calls admitted and not yet answered, gateway-wide.",
                samples: vec![(String::new(), in_flight as f64)],
            },
            Gauge {
                name: "rapport_gateway_concurrency_limit",
                help: "The gateway-wide cap on calls in flight (concurrency_limit).",
                samples: vec![(String::new(), self.concurrency_limit as f64)],
            },
            Gauge {
                name: "rapport_gateway_backend_concurrency_limit",
                help: "Each backend's current adaptive limit on calls in flight.",
                samples: per_backend(crate::adaptive::AdaptiveLimit::current),
            },
            Gauge {
                name: "rapport_gateway_backend_calls_in_flight",
                help: "Calls in flight to each backend, counted against its adaptive limit.",
                samples: per_backend(crate::adaptive::AdaptiveLimit::in_flight),
            },
        ]
    }

    async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Principal, AuthError> {
        let credential = credential(headers)?;
        if credential.starts_with(crate::auth::api_keys::PREFIX) {
            return self
                .keys
                .authenticate_from(credential, Utc::now(), peer)
                .await;
        }
        if credential.split('.').count() == 3 {
            let Some(jwt) = &self.jwt else {
                return Err(AuthError::JwtDisabled);
            };
            return jwt.verify_with_refresh(credential).await;
        }
        Err(AuthError::Malformed)
    }

    fn audit(
        &self,
        method: &str,
        principal: Option<&Principal>,
        facts: &RequestFacts,
        protocol: Protocol,
        code: Code,
    ) {
        let Some(principal) = principal else {
            // Anyone can send these: counted, not queued one by one.
            self.audit
                .refused(method, code_name(code), protocol.as_str());
            return;
        };
        // The sink cleans and caps every field.
        self.audit.record(AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            event_time: Utc::now(),
            tenant: principal.tenant.clone(),
            principal: principal.id.clone(),
            method: method.to_owned(),
            resource: facts.resource.clone(),
            request_id: facts.request_id.clone(),
            code: code_name(code).to_owned(),
            protocol: protocol.as_str().to_owned(),
            count: 1,
        });
    }

    /// Authenticates the caller and checks the scope `method` declares,
    /// auditing a refusal. The REST door calls this before it reads a body;
    /// the gRPC path before it admits the call.
    pub(crate) async fn authorize(
        &self,
        method: &MethodInfo,
        headers: &http::HeaderMap,
        peer: Option<std::net::IpAddr>,
        facts: &RequestFacts,
        protocol: Protocol,
    ) -> Result<Principal, Status> {
        let path = method.path.as_str();
        let principal = match self.authenticate(headers, peer).await {
            Ok(p) => p,
            Err(e) => {
                let status = to_status(Error::Auth(e));
                tracing::debug!(method = %path, reason = e.reason(), "authentication refused");
                match e {
                    AuthError::Throttled => self.metrics.refused("AUTH_THROTTLED", ""),
                    AuthError::Unavailable => self.metrics.refused("AUTH_UNAVAILABLE", ""),
                    // The cause is the credential's fault, a bounded set.
                    e => self.metrics.refused("UNAUTHENTICATED", e.reason()),
                }
                self.audit(path, None, facts, protocol, status.code());
                return Err(status);
            }
        };
        match method.scope.as_deref() {
            None => {
                // Fail closed: an RPC whose contract declares no scope is unusable.
                let status = to_status(Error::ScopeUndeclared);
                self.audit(path, Some(&principal), facts, protocol, status.code());
                Err(status)
            }
            Some(scope) if !principal.allows(scope) => {
                let status = to_status(Error::ScopeMissing {
                    scope: scope.to_owned(),
                });
                tracing::info!(method = %path, principal = %principal.id, "scope refused");
                self.metrics.refused("PERMISSION_DENIED", "scope");
                self.audit(path, Some(&principal), facts, protocol, status.code());
                Err(status)
            }
            Some(_) => Ok(principal),
        }
    }

    /// Whether the gateway's own CPU is saturated with calls queued: the
    /// cheapest point to refuse is before any work on the call.
    pub(crate) fn cpu_saturated(&self) -> bool {
        self.cpu_gate.as_ref().is_some_and(|gate| {
            let in_flight = self
                .concurrency_limit
                .saturating_sub(self.concurrency.available_permits());
            gate.sheds(in_flight)
        })
    }

    /// Reads a whole request body: within `limit` bytes, within the
    /// body-read timeout (and `deadline`), each chunk reserved from the
    /// gateway-wide body budget before it is kept. `charge` scales the
    /// reservation for bodies that take more memory once parsed.
    pub(crate) async fn read_body<B>(
        &self,
        body: B,
        limit: usize,
        deadline: tokio::time::Instant,
        charge: u32,
    ) -> Result<(Bytes, OwnedSemaphorePermit), BodyError>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
    {
        let read = read_body(
            body,
            limit,
            deadline.min(tokio::time::Instant::now() + self.body_read_timeout),
            &self.body_budget,
            charge,
        )
        .await;
        match read {
            Err(BodyError::TooLarge) => self.metrics.refused("REQUEST_TOO_LARGE", ""),
            Err(BodyError::OverBudget) => self.metrics.refused("OVERLOADED", "body_budget"),
            _ => {}
        }
        read
    }

    /// Handles one gRPC request.
    pub async fn handle(self: Arc<Self>, req: http::Request<Body>) -> http::Response<Body> {
        let started = std::time::Instant::now();
        // Route labels come from the catalog, so clients cannot blow up the
        // metrics' cardinality with made-up paths.
        let route = self
            .catalog
            .method(req.uri().path())
            .map(|m| m.path.clone())
            .unwrap_or_else(|| crate::metrics::UNKNOWN_ROUTE.to_owned());
        let response = self.clone().handle_inner(req, started, route.clone()).await;
        if let Some(code) = grpc_code(response.headers()) {
            // Trailers-only: the outcome is known now. A gRPC-web response's
            // status is inside its body by the time the tracing layer sees
            // it, so the pipeline records it on the span itself.
            rapport_telemetry::rpc::record_server_status(&tracing::Span::current(), code as i32);
            self.metrics
                .observe(&route, code_name(code), started.elapsed());
        }
        response
    }

    async fn handle_inner(
        self: Arc<Self>,
        mut req: http::Request<Body>,
        started: std::time::Instant,
        route: String,
    ) -> http::Response<Body> {
        // The SERVER span of the call; tasks this call spawns do not inherit it.
        let server_span = tracing::Span::current();
        let protocol = req
            .extensions()
            .get::<Protocol>()
            .copied()
            .unwrap_or(Protocol::Grpc);
        let facts = req
            .extensions()
            .get::<RequestFacts>()
            .cloned()
            .unwrap_or_default();
        if self.cpu_saturated() {
            // The gateway's own CPU is the bottleneck: refuse before spending
            // any more of it (authentication included) on this call.
            return self.overloaded("cpu", "the gateway is at capacity; retry shortly", None);
        }
        let path = req.uri().path().to_owned();
        let Some(method) = self.catalog.method(&path).cloned() else {
            return status_response(to_status(Error::MethodNotFound { path }));
        };
        let routed =
            method.service == ADMIN_SERVICE || self.backends.channel(&method.service).is_some();
        if !routed {
            return status_response(to_status(Error::ServiceNotRouted {
                service: method.service.clone(),
            }));
        }

        // The REST door authorized the call, and took its rate-limit tokens,
        // before it read the body.
        let principal = match req.extensions_mut().remove::<Authorized>() {
            Some(Authorized(p)) => p,
            None => {
                let principal = match self
                    .authorize(
                        &method,
                        req.headers(),
                        peer(req.extensions()),
                        &facts,
                        protocol,
                    )
                    .await
                {
                    Ok(p) => p,
                    Err(status) => return throttled_response(status),
                };
                if let Err(wait) = self.limits.check(&principal) {
                    self.metrics.refused("RATE_LIMITED", "");
                    return rate_limited(wait);
                }
                principal
            }
        };
        // The rpc span's tenant, from the authenticated principal only.
        server_span.record("tenant", principal.tenant.as_str());
        // Shed at once: a call refused now can be retried elsewhere; one
        // queued behind an overload would only time out. A tenant holding
        // its share of the slots is refused before it takes the others'.
        let Some(tenant_slot) = self
            .shares
            .try_take(&principal.tenant, "", self.concurrency_limit)
        else {
            return self.overloaded(
                "tenant_share",
                "this tenant has its share of the gateway's calls in flight; retry shortly",
                None,
            );
        };
        let Ok(permit) = self.concurrency.clone().try_acquire_owned() else {
            return self.overloaded(
                "gateway_limit",
                "the gateway is at capacity; retry shortly",
                None,
            );
        };
        // Admitted before the body is read: shedding then costs the least
        // (measured at 2x overload: admitted p99 38 ms this way, 0.5-2.8 s
        // when the body was read first). A unary body is small and capped,
        // and must arrive within the body-read timeout.
        let (admission, backend_slot) = match self.backends.limit(&method.service) {
            Some(limit) => {
                let Some(slot) =
                    self.shares
                        .try_take(&principal.tenant, &method.service, limit.current())
                else {
                    return self.overloaded(
                        "backend_tenant_share",
                        &format!(
                            "this tenant has its share of {}'s capacity in flight; retry shortly",
                            method.service
                        ),
                        Some(&method.service),
                    );
                };
                match limit.try_admit() {
                    Some(admission) => (Some(admission), Some(slot)),
                    None => {
                        return self.overloaded(
                            "backend_limit",
                            &format!("{} is at capacity; retry shortly", method.service),
                            Some(&method.service),
                        );
                    }
                }
            }
            None => (None, None),
        };
        let slots = (permit, tenant_slot, backend_slot);
        // Only unary round trips say how long the backend's queue is.
        let measured =
            !method.descriptor.is_client_streaming() && !method.descriptor.is_server_streaming();

        // A little before the client's deadline: tonic's own timer (which
        // reads the same grpc-timeout) would otherwise fire first and answer
        // CANCELLED where gRPC means DEADLINE_EXCEEDED.
        let timeout = effective_timeout(req.headers(), &self);
        // Counted from when the call arrived, as tonic's timer is.
        let deadline = tokio::time::Instant::from_std(started)
            + timeout
                .saturating_sub(rapport_kit::deadline::MARGIN)
                .max(Duration::from_millis(1));
        // Held until the backend has answered: the bytes are in flight until then.
        let mut body_reserved = None;
        if !method.descriptor.is_client_streaming() {
            // A unary request is one message: read it whole (bounded) so an
            // oversized one is refused here with a clear error, before any
            // backend spends effort on it. The bytes are not decoded.
            let (parts, body) = req.into_parts();
            let limit = self.max_message_bytes + 5;
            match self.read_body(body, limit, deadline, 1).await {
                Ok((bytes, reserved)) => {
                    body_reserved = Some(reserved);
                    req = http::Request::from_parts(
                        parts,
                        Body::new(http_body_util::Full::new(bytes)),
                    );
                }
                Err(BodyError::TooLarge) => {
                    let status = to_status(Error::RequestTooLarge {
                        limit: self.max_message_bytes,
                    });
                    if method.is_audited() {
                        self.audit(&path, Some(&principal), &facts, protocol, status.code());
                    }
                    return status_response(status);
                }
                Err(BodyError::TooSlow) => return status_response(to_status(Error::BodyTooSlow)),
                Err(BodyError::OverBudget) => {
                    return self.overloaded(
                        "",
                        "the gateway's memory for request bodies is in use; retry shortly",
                        None,
                    );
                }
                Err(BodyError::Aborted) => {
                    return status_response(to_status(Error::RequestAborted));
                }
            }
        }
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        // The call to the backend is a CLIENT span under the SERVER span; the
        // backend's SERVER span continues from it through `traceparent`. The
        // admin API is served in-process: no hop, no client span.
        let client_span = if method.service == ADMIN_SERVICE {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                parent: &server_span,
                "grpc client",
                otel.name = %method.path.trim_start_matches('/'),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = %method.service,
                rpc.method = %method.name,
                rpc.grpc.status_code = tracing::field::Empty,
            )
        };
        prepare_headers(&mut req, &self, &principal, timeout, &client_span);
        if method.service == ADMIN_SERVICE {
            req.extensions_mut().insert(principal.clone());
        }
        let audited = method.is_audited();
        let me = self.clone();
        let flight = async move {
            let forwarded =
                tracing::Instrument::instrument(me.forward(&method, req), client_span.clone());
            let response = match tokio::time::timeout(timeout, forwarded).await {
                Ok(resp) => resp,
                Err(_) => status_response(to_status(Error::DeadlineExceeded)),
            };

            drop(body_reserved);

            let header_code = grpc_code(response.headers());
            if let Some(code) = header_code {
                // Trailers-only response: the outcome is known now.
                record_client_status(&client_span, code);
                if audited {
                    me.audit(&path, Some(&principal), &facts, protocol, code);
                }
                if let Some(admission) = admission {
                    admission.finish(code, measured);
                }
                drop(slots);
                return response;
            }
            let observer = me.clone();
            let on_done: Option<Box<dyn FnOnce(Code) + Send>> = Some(Box::new(move |code| {
                if let Some(admission) = admission {
                    admission.finish(code, measured);
                }
                record_client_status(&client_span, code);
                rapport_telemetry::rpc::record_server_status(&server_span, code as i32);
                observer
                    .metrics
                    .observe(&route, code_name(code), started.elapsed());
                if audited {
                    observer.audit(&path, Some(&principal), &facts, protocol, code);
                }
            }));
            response.map(|body| {
                Body::new(ObservedBody {
                    inner: Some(body),
                    code: None,
                    slots: Some(Box::new(slots)),
                    on_done,
                    deadline,
                    drain_on_drop: audited,
                })
            })
        };
        if !audited {
            return flight.await;
        }
        // An audited call runs to its end (or its deadline) even when the
        // client goes away: a write the backend has started may commit, and
        // the record must say what the backend did, not that the client left.
        // If nobody takes the response, dropping it reads the rest of the
        // backend's answer for the outcome (see ObservedBody).
        match tokio::spawn(flight).await {
            Ok(response) => response,
            Err(e) => {
                tracing::error!(error = %e, "forwarding task failed");
                status_response(to_status(Error::Internal("forwarding task failed".into())))
            }
        }
    }

    async fn forward(&self, method: &MethodInfo, req: http::Request<Body>) -> http::Response<Body> {
        if method.service == ADMIN_SERVICE {
            return match self.admin.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
        }
        let Some(channel) = self.backends.channel(&method.service) else {
            return status_response(to_status(Error::ServiceNotRouted {
                service: method.service.clone(),
            }));
        };
        match channel.oneshot(req).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::warn!(service = %method.service, error = %e, "backend call failed");
                status_response(to_status(Error::BackendUnavailable {
                    service: method.service.clone(),
                }))
            }
        }
    }
}

/// RESOURCE_EXHAUSTED, reason OVERLOADED (naming the backend when it is one
/// backend's limit), with the gRPC retry pushback header.
fn overloaded_response(message: &str, backend: Option<&str>) -> http::Response<Body> {
    let mut resp = status_response(to_status(Error::Overloaded {
        message: message.to_owned(),
        backend: backend.map(str::to_owned),
    }));
    resp.headers_mut().insert(
        "grpc-retry-pushback-ms",
        http::HeaderValue::from_static("100"),
    );
    resp
}

/// RESOURCE_EXHAUSTED with RetryInfo and the gRPC retry pushback header, so
/// clients back off for as long as the bucket needs.
fn rate_limited(wait: Duration) -> http::Response<Body> {
    let status = to_status(Error::RateLimited { wait });
    let mut resp = status_response(status);
    let ms = wait.as_millis().max(1).to_string();
    resp.headers_mut().insert(
        "grpc-retry-pushback-ms",
        http::HeaderValue::from_str(&ms).expect("digits are a valid header"),
    );
    resp
}

/// Strips what the client must not pass on, attaches the assertion and
/// trace context, and sets the effective deadline, which it returns.
fn prepare_headers(
    req: &mut http::Request<Body>,
    p: &Pipeline,
    principal: &Principal,
    timeout: Duration,
    client_span: &tracing::Span,
) {
    // For this call only: the backend refuses it for any other service or
    // method, so a captured assertion is worth one method for seconds.
    let method = req.uri().path().to_owned();
    let headers = req.headers_mut();
    // The client's own claims about tenant or identity are never passed on,
    // and neither are its credentials.
    let spoofable: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-rapport-"))
        .cloned()
        .collect();
    for k in spoofable {
        headers.remove(k);
    }
    headers.remove(http::header::AUTHORIZATION);
    headers.remove("x-api-key");
    let claims = Claims {
        tenant: principal.tenant.clone(),
        principal: principal.id.clone(),
        scopes: principal.scopes.iter().cloned().collect(),
        expires: Utc::now().timestamp() + p.assertion_ttl.as_secs() as i64,
        audience: Claims::audience_of(&method).unwrap_or_default().to_owned(),
        method,
    };
    headers.insert(
        rapport_kit::assertion::ASSERTION_HEADER,
        http::HeaderValue::from_str(&p.assertion.sign(&claims)).expect("assertions are ASCII"),
    );
    headers.insert(
        "grpc-timeout",
        http::HeaderValue::from_str(&rapport_kit::deadline::format_grpc_timeout(timeout))
            .expect("digits are a valid header"),
    );
    if client_span.is_none() {
        rapport_telemetry::propagation::inject_current(headers);
    } else {
        client_span.in_scope(|| rapport_telemetry::propagation::inject_current(headers));
    }
}

/// A CLIENT span's outcome: by the conventions, any code but OK is an error
/// of the call as its client sees it.
fn record_client_status(span: &tracing::Span, code: Code) {
    span.record("rpc.grpc.status_code", code as i32);
    if code != Code::Ok {
        span.record("otel.status_code", "ERROR");
    }
}

/// The call's deadline: the client's `grpc-timeout`, or the default, capped.
fn effective_timeout(headers: &http::HeaderMap, p: &Pipeline) -> Duration {
    rapport_kit::deadline::client_timeout(headers)
        .unwrap_or(p.default_timeout)
        .min(p.max_timeout)
}

fn grpc_code(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// A response body that reports the call's final status when the stream
/// ends and releases the call's slots then. When the client goes away
/// before the end, the rest of the backend's answer is still read (until the
/// deadline) in the background: the audit log records what the backend did
/// (an erase that committed is OK), not that the client left.
struct ObservedBody {
    inner: Option<Body>,
    code: Option<Code>,
    slots: Option<Box<dyn Send + Sync>>,
    on_done: Option<Box<dyn FnOnce(Code) + Send>>,
    deadline: tokio::time::Instant,
    /// Read the rest of an abandoned answer for its outcome (audited calls);
    /// otherwise dropping it cancels the backend's call, as the client did.
    drain_on_drop: bool,
}

impl ObservedBody {
    fn finish(&mut self, fallback: Code) {
        self.slots.take();
        if let Some(f) = self.on_done.take() {
            f(self.code.unwrap_or(fallback));
        }
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        let Some(on_done) = self.on_done.take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|_| self.drain_on_drop);
        let (Some(inner), Some(runtime)) = (self.inner.take(), runtime) else {
            on_done(self.code.unwrap_or(Code::Cancelled));
            return;
        };
        // Dropped before the end: the client went away. Learn the backend's
        // outcome from the rest of its answer.
        let slots = self.slots.take();
        let (known, deadline) = (self.code, self.deadline);
        runtime.spawn(async move {
            let rest = tokio::time::timeout_at(deadline, async move {
                let mut inner = inner;
                let mut code = known;
                while let Some(frame) = http_body_util::BodyExt::frame(&mut inner).await {
                    match frame {
                        Ok(frame) => {
                            if let Some(trailers) = frame.trailers_ref() {
                                code = grpc_code(trailers).or(code);
                            }
                        }
                        Err(status) => return Some(status.code()),
                    }
                }
                code
            })
            .await;
            drop(slots);
            on_done(rest.ok().flatten().unwrap_or(Code::Cancelled));
        });
    }
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.code = grpc_code(trailers).or(this.code);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.code = Some(e.code());
                this.inner = None;
                this.finish(Code::Unknown);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.inner = None;
                this.finish(Code::Unknown);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// The client's address, as the server saw the connection (never a header
/// the client sets).
fn peer(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .map(|addr| addr.ip())
}

/// A refusal as a response; an authentication throttle also tells gRPC
/// clients when to retry.
fn throttled_response(status: Status) -> http::Response<Body> {
    let throttled = status.code() == Code::ResourceExhausted;
    let mut resp = status_response(status);
    if throttled {
        resp.headers_mut().insert(
            "grpc-retry-pushback-ms",
            http::HeaderValue::from_static("1000"),
        );
    }
    resp
}

/// The pipeline as the REST transcoder's way into the gateway.
#[derive(Debug, Clone)]
pub struct PipelineCall(pub Arc<Pipeline>);

impl GrpcCall for PipelineCall {
    fn call(&self, request: http::Request<Body>) -> ResponseFuture {
        Box::pin(self.0.clone().handle(request))
    }

    fn unmatched(&self, code: &'static str, elapsed: Duration) {
        self.0
            .metrics
            .observe(crate::metrics::UNKNOWN_ROUTE, code, elapsed);
    }

    fn authorize<'a>(
        &'a self,
        method: &'a MethodInfo,
        parts: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Option<Authorized>, Status>> {
        Box::pin(async move {
            if self.0.cpu_saturated() {
                self.0.metrics.refused("OVERLOADED", "cpu");
                return Err(to_status(Error::Overloaded {
                    message: "the gateway is at capacity; retry shortly".to_owned(),
                    backend: None,
                }));
            }
            let principal = self
                .0
                .authorize(
                    method,
                    &parts.headers,
                    peer(&parts.extensions),
                    &RequestFacts::default(),
                    Protocol::Rest,
                )
                .await?;
            // A caller over its rate gets no body read either.
            self.0.limits.check(&principal).map_err(|wait| {
                self.0.metrics.refused("RATE_LIMITED", "");
                to_status(Error::RateLimited { wait })
            })?;
            Ok(Some(Authorized(principal)))
        })
    }

    fn read_body(
        &self,
        body: axum::body::Body,
        limit: usize,
        charge: u32,
    ) -> BoxFuture<'_, Result<(Bytes, OwnedSemaphorePermit), BodyError>> {
        Box::pin(self.0.read_body(
            body,
            limit,
            tokio::time::Instant::now() + self.0.max_timeout,
            charge,
        ))
    }
}
