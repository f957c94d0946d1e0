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

use crate::{call::GrpcCall, catalog::Catalog};

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
pub fn router(catalog: Arc<Catalog>, calls: Arc<dyn GrpcCall>) -> Router {
    let routes = RouteTable::new(&catalog);
    let openapi = Bytes::from(openapi::document(&routes).to_string());
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
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let (route, bindings) = match rest.routes.find(&parts.method, path) {
        Lookup::Found(route, bindings) => (route, bindings),
        Lookup::WrongMethod(allowed) => {
            return RestError::method_not_allowed(&parts.method, path, &allowed).into_response();
        }
        Lookup::NotFound => {
            return RestError::route_not_found(&parts.method, path).into_response();
        }
    };
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(err) => {
            let too_large = err.into_inner().is::<http_body_util::LengthLimitError>();
            return if too_large {
                RestError::gateway(
                    Code::InvalidArgument,
                    "REQUEST_TOO_LARGE",
                    format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
                )
                .with_http(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                RestError::gateway(
                    Code::InvalidArgument,
                    "UNREADABLE_BODY",
                    "the request body could not be read",
                )
            }
            .into_response();
        }
    };
    if !body.is_empty()
        && let Some(content_type) = parts.headers.get(header::CONTENT_TYPE)
        && !is_json(content_type)
    {
        return RestError::gateway(
            Code::InvalidArgument,
            "UNSUPPORTED_MEDIA_TYPE",
            "the request body must be application/json",
        )
        .with_http(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .into_response();
    }
    transcode::call(
        rest.calls.as_ref(),
        &rest.pool,
        route,
        &parts,
        &bindings,
        &body,
    )
    .await
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
