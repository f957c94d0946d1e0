//! The REST/JSON door: every RPC whose contract declares an HTTP route
//! (`rapport.api.v1.http`, the shape of google.api.HttpRule) is served as
//! JSON over HTTP/1.1 or HTTP/2, transcoded to a gRPC call that goes through
//! the same pipeline as native gRPC ([`GrpcCall`]): authentication, scopes,
//! limits and audit are not repeated here, and must not be. Also serves the
//! OpenAPI document of those routes at `GET /openapi.json`.
//!
//! Nothing here is written per RPC: routes, request and response mapping and
//! the OpenAPI schemas all come from the descriptors in the [`Catalog`].
use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use prost_reflect::DescriptorPool;
use tonic::Code;

use crate::{
    call::{BodyError, GrpcCall},
    catalog::Catalog,
};

mod errors;
mod openapi;
mod route;
mod template;
mod transcode;

use errors::RestError;
use route::{Lookup, RouteTable};

/// Largest JSON request body accepted: gRPC's default message limit, so a
/// body that fits here fits the call it becomes.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What the handlers share.
struct Rest {
    routes: RouteTable,
    calls: Arc<dyn GrpcCall>,
    pool: DescriptorPool,
    openapi: Bytes,
}

/// The REST router: every RPC with an HTTP route, and `GET /openapi.json`.
/// Requests matching no route get a JSON 404, a route's path with another
/// HTTP method a JSON 405. It answers every path, so mount it as the
/// non-gRPC branch rather than merging it beside other fallbacks.
pub fn router(catalog: Arc<Catalog>, calls: Arc<dyn GrpcCall>, routed: &[String]) -> Router {
    let routes = RouteTable::new(&catalog);
    // A route of a service not routed here still answers (SERVICE_NOT_ROUTED)
    // but is not advertised.
    let advertised = |service: &str| {
        service == crate::pipeline::ADMIN_SERVICE || routed.iter().any(|r| r == service)
    };
    let openapi = Bytes::from(openapi::document(&routes, catalog.pool(), advertised).to_string());
    let state = Arc::new(Rest {
        routes,
        calls,
        pool: catalog.pool().clone(),
        openapi,
    });
    Router::new()
        .route(
            "/openapi.json",
            get(openapi_document).fallback(openapi_wrong_method),
        )
        .fallback(transcode_call)
        .with_state(state)
}

async fn openapi_document(State(rest): State<Arc<Rest>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        rest.openapi.clone(),
    )
        .into_response()
}

async fn openapi_wrong_method(request: Request) -> Response {
    RestError::method_not_allowed(request.method(), "/openapi.json", &[http::Method::GET])
        .into_response()
}

/// Routes one request, reads its body and makes the call.
async fn transcode_call(State(rest): State<Arc<Rest>>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let (route, bindings) = match rest.routes.find(&parts.method, path) {
        Lookup::Found(route, bindings) => (route, bindings),
        Lookup::WrongMethod(allowed) => {
            rest.calls.unmatched("UNIMPLEMENTED", started.elapsed());
            return RestError::method_not_allowed(&parts.method, path, &allowed).into_response();
        }
        Lookup::NotFound => {
            rest.calls.unmatched("NOT_FOUND", started.elapsed());
            return RestError::route_not_found(&parts.method, path).into_response();
        }
    };
    // The SERVER span is named by the route's template, never the URL (ids
    // are unbounded and personal), with the RPC it becomes.
    let span = tracing::Span::current();
    if let Some(rule) = &route.method.http {
        rapport_telemetry::rpc::record_route(&span, &parts.method, &rule.template);
    }
    span.record("rpc.system", "grpc");
    span.record("rpc.service", route.method.service.as_str());
    span.record("rpc.method", route.method.name.as_str());
    // Who is calling, before a byte of the body is read: an unauthenticated
    // request costs its headers and nothing more.
    let authorized = match rest.calls.authorize(&route.method, &parts).await {
        Ok(authorized) => authorized,
        Err(status) => return RestError::from_status(&status).into_response(),
    };
    if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE)
        && !is_json(content_type)
        && !body_is_empty(&body)
    {
        return RestError::invalid_body(
            "UNSUPPORTED_MEDIA_TYPE",
            "the request body must be application/json",
        )
        .with_http(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .into_response();
    }
    // Charged twice its size against the gateway's body budget: the JSON
    // text and the message built from it are both held until the call is
    // sent.
    let (body, _reserved) = match rest.calls.read_body(body, MAX_BODY_BYTES, 2).await {
        Ok(read) => read,
        Err(BodyError::TooLarge) => {
            return RestError::invalid_body(
                "REQUEST_TOO_LARGE",
                format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
            )
            .with_http(StatusCode::PAYLOAD_TOO_LARGE)
            .into_response();
        }
        Err(BodyError::TooSlow) => {
            return RestError::gateway(
                Code::DeadlineExceeded,
                "BODY_TOO_SLOW",
                "the request body did not arrive in time",
            )
            .with_http(StatusCode::REQUEST_TIMEOUT)
            .into_response();
        }
        Err(BodyError::OverBudget) => {
            let mut error = RestError::gateway(
                Code::ResourceExhausted,
                "OVERLOADED",
                "the gateway's memory for request bodies is in use; retry shortly",
            );
            error.retry_after = Some(1);
            return error.into_response();
        }
        Err(BodyError::Aborted) => {
            return RestError::gateway(
                Code::InvalidArgument,
                "UNREADABLE_BODY",
                "the request body could not be read",
            )
            .into_response();
        }
    };
    transcode::call(
        rest.calls.as_ref(),
        &rest.pool,
        route,
        &parts,
        &bindings,
        &body,
        authorized,
    )
    .await
}

/// Whether a body is known to be empty without reading it.
fn body_is_empty(body: &axum::body::Body) -> bool {
    use http_body::Body as _;
    body.is_end_stream() || body.size_hint().upper() == Some(0)
}

/// `application/json` or any `+json` type, parameters ignored.
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(value) = content_type.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

#[cfg(test)]
mod tests;
