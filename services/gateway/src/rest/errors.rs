//! gRPC statuses as REST errors: the HTTP status of Google's mapping
//! (google/rpc/code.proto) and Google's JSON error body,
//! `{"error":{"code","message","status","details"}}`, whose details are the
//! `google.rpc.Status` details in the proto3 JSON mapping.
//!
//! Errors the REST door raises itself (no route, bad JSON) are built as
//! `tonic::Status` with `rapport_kit::ErrorBuilder`, like every other Rapport
//! error, and go through the same conversion, so a client sees one shape
//! whichever layer refused the call.
use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use rapport_kit::{ErrorBuilder, FieldViolations, error::invalid_argument};
use serde_json::{Map, Value as Json, json};
use tonic::Code;

use super::template::percent_decode;

/// `ErrorInfo.domain` of errors the REST door raises itself; the gateway's.
pub(crate) use crate::error::DOMAIN;

/// The field path of violations about the HTTP body as a whole.
pub(crate) const BODY_FIELD: &str = "body";

/// The HTTP status of a gRPC code, as Google's REST APIs map it.
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        // 499 "Client Closed Request" has no constant; it is in range.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Internal | Code::Unknown | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(crate) use rapport_kit::error::code_name;

/// The gRPC code of a response that carries no `grpc-status` at all (a proxy
/// answered, not a gRPC server), per the gRPC HTTP-to-code mapping.
pub(crate) fn code_of_http(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// Descriptors of the `google.rpc` detail messages (ErrorInfo, BadRequest,
/// RetryInfo, …) that tonic-types ships.
static RPC_TYPES: LazyLock<Option<DescriptorPool>> = LazyLock::new(|| {
    DescriptorPool::decode(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .inspect_err(|err| tracing::error!(%err, "tonic-types descriptors do not decode"))
        .ok()
});

/// A REST error response.
#[derive(Debug, Clone)]
pub(crate) struct RestError {
    pub(crate) http: StatusCode,
    pub(crate) code: Code,
    pub(crate) message: String,
    pub(crate) details: Vec<Json>,
    /// Seconds for `Retry-After`, from `RetryInfo`.
    pub(crate) retry_after: Option<u64>,
    /// Extra response headers (`Allow`, forwarded response metadata); boxed
    /// to keep `Result<_, RestError>` small.
    pub(crate) headers: Box<HeaderMap>,
}

impl RestError {
    /// Converts a gRPC status: `details` is the encoded `google.rpc.Status`
    /// of `grpc-status-details-bin` (empty when absent). Detail messages are
    /// resolved in the google.rpc descriptors, then in `services` (a service
    /// may attach its own detail types).
    pub(crate) fn from_grpc(
        code: Code,
        message: &str,
        details: &[u8],
        services: Option<&DescriptorPool>,
    ) -> Self {
        let mut error = Self {
            http: http_status(code),
            code,
            message: message.to_owned(),
            details: Vec::new(),
            retry_after: None,
            headers: Box::default(),
        };
        if details.is_empty() {
            return error;
        }
        let status = match tonic_types::pb::Status::decode(details) {
            Ok(status) => status,
            Err(err) => {
                tracing::warn!(%err, "grpc-status-details-bin is not a google.rpc.Status");
                return error;
            }
        };
        if error.message.is_empty() {
            error.message = status.message;
        }
        for any in status.details {
            if any.type_url.ends_with("/google.rpc.RetryInfo")
                && let Ok(info) = tonic_types::pb::RetryInfo::decode(any.value.as_slice())
                && let Some(delay) = info.retry_delay
                && delay.seconds >= 0
                && delay.nanos >= 0
            {
                // Retry-After has whole seconds: round up, never ask for a retry too early.
                let seconds = u64::try_from(delay.seconds).unwrap_or(0);
                error.retry_after = Some(seconds + u64::from(delay.nanos > 0));
            }
            error.details.push(detail_json(&any, services));
        }
        error
    }

    /// Converts a `tonic::Status` built in this process.
    pub(crate) fn from_status(status: &tonic::Status) -> Self {
        Self::from_grpc(status.code(), status.message(), status.details(), None)
    }

    /// INVALID_ARGUMENT naming one field.
    pub(crate) fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::from_status(&invalid_argument(
            DOMAIN,
            FieldViolations::single(field, description),
        ))
    }

    /// A gateway error with an `ErrorInfo` reason.
    pub(crate) fn gateway(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        Self::from_status(
            &ErrorBuilder::new(code, DOMAIN, reason)
                .message(message)
                .build(),
        )
    }

    /// INVALID_ARGUMENT about the request body as a whole: an `ErrorInfo`
    /// reason and a field violation whose path is `body`.
    pub(crate) fn invalid_body(reason: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::from_status(
            &ErrorBuilder::new(Code::InvalidArgument, DOMAIN, reason)
                .message(message.clone())
                .violations(FieldViolations::single(BODY_FIELD, message))
                .build(),
        )
    }

    /// No REST route has this path.
    pub(crate) fn route_not_found(method: &Method, path: &str) -> Self {
        Self::gateway(
            Code::NotFound,
            "ROUTE_NOT_FOUND",
            format!("no REST route matches {method} {path}"),
        )
    }

    /// Routes have this path, with other HTTP methods.
    pub(crate) fn method_not_allowed(method: &Method, path: &str, allowed: &[Method]) -> Self {
        let mut error = Self::gateway(
            Code::Unimplemented,
            "HTTP_METHOD_NOT_ALLOWED",
            format!("{path} does not accept {method}"),
        )
        .with_http(StatusCode::METHOD_NOT_ALLOWED);
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&allow) {
            error.headers.insert(header::ALLOW, value);
        }
        error
    }

    /// A more precise HTTP status than the code's (405, 413, 415).
    pub(crate) fn with_http(mut self, http: StatusCode) -> Self {
        self.http = http;
        self
    }

    /// Google's JSON error body.
    pub(crate) fn body(&self) -> Json {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.http.as_u16()));
        error.insert("message".into(), json!(self.message));
        error.insert("status".into(), json!(code_name(self.code)));
        if !self.details.is_empty() {
            error.insert("details".into(), Json::Array(self.details.clone()));
        }
        json!({ "error": error })
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.http, body).into_response();
        let headers = response.headers_mut();
        headers.extend(*self.headers);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after
            && matches!(
                self.http,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// One `google.protobuf.Any` detail in the proto3 JSON mapping:
/// `{"@type": url, ...fields}`, or `{"@type": url, "value": ...}` for a
/// well-known type whose JSON is not an object. A type no descriptor knows is
/// reported by its URL and base64 bytes rather than dropped.
fn detail_json(any: &prost_types::Any, services: Option<&DescriptorPool>) -> Json {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let descriptor = RPC_TYPES
        .as_ref()
        .and_then(|pool| pool.get_message_by_name(name))
        .or_else(|| services.and_then(|pool| pool.get_message_by_name(name)));
    let fields = descriptor
        .and_then(|desc| DynamicMessage::decode(desc, any.value.as_slice()).ok())
        .and_then(|message| {
            message
                .serialize_with_options(serde_json::value::Serializer, &json_options())
                .ok()
        });
    let mut out = Map::new();
    out.insert("@type".into(), json!(any.type_url));
    match fields {
        Some(Json::Object(fields)) => out.extend(fields),
        Some(value) => {
            out.insert("value".into(), value);
        }
        None => {
            out.insert(
                "value".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(&any.value)),
            );
        }
    }
    Json::Object(out)
}

/// The proto3 JSON mapping as Google's REST APIs print it: lowerCamelCase
/// names, enum names, 64-bit integers as strings, default values omitted.
pub(crate) fn json_options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(false)
        .use_enum_numbers(false)
        .stringify_64_bit_integers(true)
        .skip_default_fields(true)
}

/// The status a gRPC response carries in `headers` (trailers, or the headers
/// of a trailers-only response): code, percent-decoded message and the bytes
/// of `grpc-status-details-bin`. Read by hand rather than with
/// `tonic::Status::from_header_map`, which panics on malformed base64: a
/// backend's bad header must not take down the handler.
pub(crate) fn status_from_headers(headers: &HeaderMap) -> Option<(Code, String, Bytes)> {
    let code = Code::from_bytes(headers.get(GRPC_STATUS)?.as_bytes());
    let message = headers
        .get(GRPC_MESSAGE)
        .map(|v| {
            let raw = String::from_utf8_lossy(v.as_bytes());
            percent_decode(&raw, false).unwrap_or_else(|| raw.into_owned())
        })
        .unwrap_or_default();
    let details = headers
        .get(GRPC_STATUS_DETAILS)
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
                .decode(v.as_bytes())
                .inspect_err(|err| tracing::warn!(%err, "grpc-status-details-bin is not base64"))
                .ok()
        })
        .map(Bytes::from)
        .unwrap_or_default();
    Some((code, message, details))
}

pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_STATUS_DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use tonic_types::{ErrorDetails, StatusExt as _};

    use super::*;

    #[test]
    fn every_code_has_googles_http_status() {
        let table = [
            (Code::Ok, 200, "OK"),
            (Code::Cancelled, 499, "CANCELLED"),
            (Code::Unknown, 500, "UNKNOWN"),
            (Code::InvalidArgument, 400, "INVALID_ARGUMENT"),
            (Code::DeadlineExceeded, 504, "DEADLINE_EXCEEDED"),
            (Code::NotFound, 404, "NOT_FOUND"),
            (Code::AlreadyExists, 409, "ALREADY_EXISTS"),
            (Code::PermissionDenied, 403, "PERMISSION_DENIED"),
            (Code::ResourceExhausted, 429, "RESOURCE_EXHAUSTED"),
            (Code::FailedPrecondition, 400, "FAILED_PRECONDITION"),
            (Code::Aborted, 409, "ABORTED"),
            (Code::OutOfRange, 400, "OUT_OF_RANGE"),
            (Code::Unimplemented, 501, "UNIMPLEMENTED"),
            (Code::Internal, 500, "INTERNAL"),
            (Code::Unavailable, 503, "UNAVAILABLE"),
            (Code::DataLoss, 500, "DATA_LOSS"),
            (Code::Unauthenticated, 401, "UNAUTHENTICATED"),
        ];
        for (code, http, name) in table {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
            assert_eq!(code_name(code), name);
        }
    }

    #[test]
    fn status_headers_become_googles_json_error() {
        let mut details = ErrorDetails::with_error_info(
            "RATE_LIMITED",
            "gateway.rapport.dev",
            HashMap::from([("limit".to_owned(), "10".to_owned())]),
        );
        details.set_retry_info(Some(Duration::from_millis(1500)));
        details.add_bad_request_violation("page_size", "must be positive");
        let status = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "slow down: 100% used",
            details,
        );
        let response: http::Response<()> = status.into_http();
        let (code, message, bytes) = status_from_headers(response.headers()).unwrap();
        assert_eq!(message, "slow down: 100% used");
        let error = RestError::from_grpc(code, &message, &bytes, None);
        assert_eq!(error.http, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error.retry_after, Some(2));
        assert_eq!(
            error.body(),
            json!({"error": {
                "code": 429,
                "message": "slow down: 100% used",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.500s"},
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "RATE_LIMITED", "domain": "gateway.rapport.dev",
                     "metadata": {"limit": "10"}},
                    {"@type": "type.googleapis.com/google.rpc.BadRequest",
                     "fieldViolations": [{"field": "page_size", "description": "must be positive"}]},
                ],
            }})
        );
        let response = error.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn malformed_status_headers_do_not_panic() {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_STATUS, HeaderValue::from_static("5"));
        headers.insert(GRPC_MESSAGE, HeaderValue::from_static("bad %zz escape"));
        headers.insert(
            GRPC_STATUS_DETAILS,
            HeaderValue::from_static("!!not base64!!"),
        );
        let (code, message, details) = status_from_headers(&headers).unwrap();
        assert_eq!(
            (code, message.as_str(), details.len()),
            (Code::NotFound, "bad %zz escape", 0)
        );
        // Bytes that are not a google.rpc.Status: the code and message survive.
        let error = RestError::from_grpc(Code::NotFound, "gone", b"\xff\xff", None);
        assert_eq!((error.http.as_u16(), error.details.len()), (404, 0));
    }

    #[test]
    fn unknown_detail_types_are_kept_by_url() {
        let status = tonic_types::pb::Status {
            code: 3,
            message: "bad".into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/acme.Unknown".into(),
                value: vec![1, 2, 3],
            }],
        };
        let error = RestError::from_grpc(Code::InvalidArgument, "", &status.encode_to_vec(), None);
        assert_eq!(error.message, "bad");
        assert_eq!(
            error.details,
            [json!({"@type": "type.googleapis.com/acme.Unknown", "value": "AQID"})]
        );
    }

    #[test]
    fn gateway_errors_carry_error_info() {
        let error = RestError::method_not_allowed(
            &Method::DELETE,
            "/v1/customers",
            &[Method::GET, Method::POST],
        );
        assert_eq!(error.http, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(error.headers[header::ALLOW], "GET, POST");
        let body = error.body();
        assert_eq!(body["error"]["code"], 405);
        assert_eq!(body["error"]["status"], "UNIMPLEMENTED");
        assert_eq!(
            body["error"]["details"][0]["reason"],
            "HTTP_METHOD_NOT_ALLOWED"
        );
        assert_eq!(body["error"]["details"][0]["domain"], DOMAIN);
    }
}
