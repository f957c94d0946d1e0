//! The Connect protocol's unary calls (buf's default protocol, used by
//! connect-web, connect-go and connect-python clients): `POST
//! /{service}/{method}` with an `application/proto` or `application/json`
//! body holding the bare request message. Each becomes a gRPC call through
//! the same pipeline as every other door (authentication, scopes, limits,
//! assertion, audit), and its answer the bare response message, or a Connect
//! JSON error (`{"code","message","details"}`) with the HTTP status the
//! Connect specification gives each code. Streaming RPCs are not served
//! over Connect.
use std::sync::Arc;

use base64::Engine as _;
use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use prost::Message as _;
use prost_reflect::{DynamicMessage, SerializeOptions};
use tonic::{Code, body::Body};

use crate::{
    call::{BodyError, Protocol},
    catalog::MethodInfo,
    error::{Error, to_status},
    pipeline::Pipeline,
};

/// How a Connect request's message is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Proto,
    Json,
}

impl Codec {
    fn content_type(self) -> &'static str {
        match self {
            Codec::Proto => "application/proto",
            Codec::Json => "application/json",
        }
    }
}

fn codec<B>(request: &http::Request<B>) -> Option<Codec> {
    let value = request.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/proto") {
        Some(Codec::Proto)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Some(Codec::Json)
    } else {
        None
    }
}

/// The unary RPC a request calls over Connect, if it is one: a POST of a
/// Connect content type to the gRPC path of a unary RPC. REST routes are
/// never gRPC paths, so the two doors cannot claim the same request.
pub fn unary_method<B>(pipeline: &Pipeline, request: &http::Request<B>) -> Option<Arc<MethodInfo>> {
    if request.method() != http::Method::POST || codec(request).is_none() {
        return None;
    }
    let method = pipeline.catalog.method(request.uri().path())?;
    let streaming =
        method.descriptor.is_client_streaming() || method.descriptor.is_server_streaming();
    (!streaming).then(|| method.clone())
}

/// Answers one Connect unary call of `method`.
pub async fn call(
    pipeline: Arc<Pipeline>,
    method: Arc<MethodInfo>,
    request: http::Request<axum::body::Body>,
) -> http::Response<Body> {
    let codec = codec(&request).unwrap_or(Codec::Proto);
    let span = tracing::Span::current();
    rapport_telemetry::rpc::record_route(&span, request.method(), &method.path);
    span.record("rpc.system", "grpc");
    span.record("rpc.service", method.service.as_str());
    span.record("rpc.method", method.name.as_str());
    let (parts, body) = request.into_parts();
    if parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v != "identity")
    {
        return error(&tonic::Status::unimplemented(
            "compressed Connect requests are not accepted",
        ));
    }
    let deadline = tokio::time::Instant::now() + pipeline.max_timeout;
    let body = match pipeline
        .read_body(body, pipeline.max_message_bytes, deadline, 2)
        .await
    {
        Ok((bytes, _reserved)) => bytes,
        Err(BodyError::TooLarge) => {
            return error(&to_status(Error::RequestTooLarge {
                limit: pipeline.max_message_bytes,
            }));
        }
        Err(BodyError::TooSlow) => return error(&to_status(Error::BodyTooSlow)),
        Err(BodyError::OverBudget) => {
            return error(&to_status(Error::Overloaded {
                message: "the gateway's memory for request bodies is in use; retry shortly"
                    .to_owned(),
                backend: None,
            }));
        }
        Err(BodyError::Aborted) => return error(&to_status(Error::RequestAborted)),
    };
    let message = match codec {
        Codec::Proto => body,
        Codec::Json => {
            let mut de = serde_json::Deserializer::from_slice(&body);
            match DynamicMessage::deserialize(method.descriptor.input(), &mut de) {
                Ok(message) => Bytes::from(message.encode_to_vec()),
                Err(e) => {
                    return error(&tonic::Status::invalid_argument(format!(
                        "the request body is not a valid {} in JSON: {e}",
                        method.descriptor.input().full_name()
                    )));
                }
            }
        }
    };

    // The same call in gRPC's framing: one uncompressed message.
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(&message);
    let mut grpc = http::Request::builder()
        .method(http::Method::POST)
        .uri(parts.uri.clone())
        .version(http::Version::HTTP_2)
        .body(Body::new(http_body_util::Full::new(framed.freeze())))
        .expect("a request of valid parts");
    *grpc.extensions_mut() = parts.extensions;
    grpc.extensions_mut().insert(Protocol::Connect);
    let headers = grpc.headers_mut();
    for (name, value) in &parts.headers {
        // Connect's own headers and the HTTP/1.1 body framing do not carry over.
        let skip = name == header::CONTENT_TYPE
            || name == header::CONTENT_LENGTH
            || name == header::CONTENT_ENCODING
            || name == header::ACCEPT_ENCODING
            || name == header::HOST
            || name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name.as_str().starts_with("connect-");
        if !skip {
            headers.append(name, value.clone());
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("te", HeaderValue::from_static("trailers"));
    if let Some(ms) = parts
        .headers
        .get("connect-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        headers.insert(
            "grpc-timeout",
            HeaderValue::from_str(&format!("{}m", ms.min(99_999_999)))
                .expect("digits are a valid header"),
        );
    }

    let response = pipeline.clone().handle(grpc).await;
    let (head, body) = response.into_parts();
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(status) => return error(&status),
    };
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    let status = tonic::Status::from_header_map(&head.headers)
        .or_else(|| trailers.as_ref().and_then(tonic::Status::from_header_map))
        .unwrap_or_else(|| tonic::Status::unknown("the backend's answer had no status"));
    if status.code() != Code::Ok {
        return error(&status);
    }
    let Some(message) = data.get(5..) else {
        return error(&tonic::Status::internal(
            "the backend answered OK with no message",
        ));
    };
    let body = match codec {
        Codec::Proto => Bytes::copy_from_slice(message),
        Codec::Json => {
            let decoded = DynamicMessage::decode(method.descriptor.output(), message);
            let Ok(decoded) = decoded else {
                return error(&tonic::Status::internal(
                    "the backend's answer does not decode",
                ));
            };
            let mut out = serde_json::Serializer::new(Vec::new());
            if decoded
                .serialize_with_options(&mut out, &SerializeOptions::new())
                .is_err()
            {
                return error(&tonic::Status::internal(
                    "the backend's answer has no JSON form",
                ));
            }
            Bytes::from(out.into_inner())
        }
    };
    http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, codec.content_type())
        .body(Body::new(http_body_util::Full::new(body)))
        .expect("a response of valid parts")
}

/// The Connect name of a gRPC code, and the HTTP status the specification
/// gives it.
fn connect_code(code: Code) -> (&'static str, StatusCode) {
    match code {
        Code::Ok => ("ok", StatusCode::OK),
        Code::Cancelled => ("canceled", StatusCode::from_u16(499).expect("499")),
        Code::Unknown => ("unknown", StatusCode::INTERNAL_SERVER_ERROR),
        Code::InvalidArgument => ("invalid_argument", StatusCode::BAD_REQUEST),
        Code::DeadlineExceeded => ("deadline_exceeded", StatusCode::GATEWAY_TIMEOUT),
        Code::NotFound => ("not_found", StatusCode::NOT_FOUND),
        Code::AlreadyExists => ("already_exists", StatusCode::CONFLICT),
        Code::PermissionDenied => ("permission_denied", StatusCode::FORBIDDEN),
        Code::ResourceExhausted => ("resource_exhausted", StatusCode::TOO_MANY_REQUESTS),
        Code::FailedPrecondition => ("failed_precondition", StatusCode::BAD_REQUEST),
        Code::Aborted => ("aborted", StatusCode::CONFLICT),
        Code::OutOfRange => ("out_of_range", StatusCode::BAD_REQUEST),
        Code::Unimplemented => ("unimplemented", StatusCode::NOT_IMPLEMENTED),
        Code::Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        Code::DataLoss => ("data_loss", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unauthenticated => ("unauthenticated", StatusCode::UNAUTHORIZED),
    }
}

/// A Connect error: always JSON, whatever the request's codec, with the
/// status details (ErrorInfo, BadRequest, RetryInfo) as `{type, value}`
/// pairs, `value` the message in unpadded base64.
fn error(status: &tonic::Status) -> http::Response<Body> {
    let (code, http_status) = connect_code(status.code());
    let details: Vec<serde_json::Value> = tonic_types::pb::Status::decode(status.details())
        .map(|s| s.details)
        .unwrap_or_default()
        .into_iter()
        .map(|any| {
            serde_json::json!({
                "type": any.type_url.rsplit('/').next().unwrap_or_default(),
                "value": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value),
            })
        })
        .collect();
    let body = serde_json::json!({
        "code": code,
        "message": status.message(),
        "details": details,
    });
    http::Response::builder()
        .status(http_status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::new(http_body_util::Full::new(Bytes::from(
            body.to_string(),
        ))))
        .expect("a response of valid parts")
}
