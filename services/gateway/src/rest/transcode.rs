//! JSON to gRPC and back for one call: builds the request message from the
//! body, the path variables and the query string (in that order, AIP-127),
//! frames it as a gRPC request for [`GrpcCall`], and turns the gRPC response
//! into JSON or into Google's JSON error.
//!
//! JSON follows the proto3 JSON mapping (prost-reflect): lowerCamelCase and
//! original field names are both accepted; unknown fields are refused, each
//! refusal naming the offending field path.
use std::collections::{HashMap, HashSet};

use axum::response::{IntoResponse, Response};
use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage as _,
    Value,
};
use serde_json::{Map, Value as Json};
use tonic::Code;

use super::{
    errors::{self, GRPC_STATUS, RestError},
    route::{BodyRule, Route},
    template::{Binding, percent_decode},
};
use crate::call::{Authorized, GrpcCall, Protocol, RequestFacts};

/// Request headers passed on to the gRPC call. Anything else (cookies,
/// client-chosen tenant headers) stays at the door.
const FORWARDED_HEADERS: [&str; 5] = [
    "authorization",
    "x-api-key",
    "traceparent",
    "tracestate",
    "grpc-timeout",
];

/// Fields whose value is the resource of the call, for the audit log, in
/// order of preference.
const RESOURCE_FIELDS: [&str; 4] = ["name", "parent", "customer.name", "survivor"];

/// Builds the request message of `route` (AIP-127 order: body, then path
/// variables, then query parameters for the fields neither binds).
pub(crate) fn request_message(
    route: &Route,
    bindings: &[Binding],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, RestError> {
    let mut message = body_message(route, body)?;
    for (binding, fields) in bindings.iter().zip(&route.path_fields) {
        let field = binding.field_path.join(".");
        // `%00` and friends: no resource name or id holds them, and some
        // databases refuse them in text.
        if binding.value.chars().any(char::is_control) {
            return Err(RestError::invalid_field(
                field,
                "must not contain control characters",
            ));
        }
        if let Some(sent) = string_at(&message, fields)
            && sent != binding.value
        {
            return Err(RestError::invalid_field(
                field,
                format!(
                    "the body says `{sent}` but the URL path says `{}`",
                    binding.value
                ),
            ));
        }
        match value_at(&mut message, fields) {
            Some(slot) => *slot = Value::String(binding.value.clone()),
            None => return Err(RestError::invalid_field(field, "cannot be set")),
        }
    }
    if let Some(query) = query {
        apply_query(route, &mut message, query)?;
    }
    Ok(message)
}

fn body_message(route: &Route, body: &[u8]) -> Result<DynamicMessage, RestError> {
    let input = route.method.descriptor.input();
    let empty = body.trim_ascii().is_empty();
    let json = match &route.body {
        BodyRule::None if empty => return Ok(DynamicMessage::new(input)),
        BodyRule::None => {
            return Err(RestError::invalid_body(
                "UNEXPECTED_BODY",
                format!(
                    "{} {} takes no request body",
                    route.verb,
                    route.template.as_str()
                ),
            ));
        }
        // An empty body is an empty message, as with gRPC.
        _ if empty => return Ok(DynamicMessage::new(input)),
        _ => match streamed(route, &input, body) {
            Ok(message) => return Ok(message),
            // Big bodies are not parsed a second time to locate the error:
            // the JSON tree of a few MiB is many times that in memory.
            Err(Some(err)) if body.len() > LOCATE_MAX_BYTES => {
                return Err(RestError::invalid_field(super::errors::BODY_FIELD, err));
            }
            // Not the shape the fast path reads, or an error to locate.
            Err(_) => serde_json::from_slice::<Json>(body).map_err(|err| {
                RestError::invalid_body(
                    "INVALID_JSON",
                    format!("the request body is not valid JSON: {err}"),
                )
            })?,
        },
    };
    let json = match &route.body {
        BodyRule::Field(field) => {
            if matches!(field.kind(), Kind::Message(m) if !is_well_known(&m))
                && !field.is_list()
                && !json.is_object()
            {
                return Err(RestError::invalid_field(
                    field.name(),
                    "the request body must be a JSON object",
                ));
            }
            object(field.name(), json)
        }
        _ if !json.is_object() => {
            return Err(RestError::invalid_body(
                "INVALID_JSON",
                "the request body must be a JSON object",
            ));
        }
        _ => json,
    };
    DynamicMessage::deserialize(input.clone(), &json).map_err(|err| {
        let (field, description) =
            locate(&input, &json, "").unwrap_or_else(|| (String::new(), err.to_string()));
        RestError::invalid_field(field, description)
    })
}

/// Bodies up to this size are parsed again on error, to name the field at fault.
const LOCATE_MAX_BYTES: usize = 64 * 1024;

/// The request message read straight from the JSON text, with no JSON tree
/// in between (no copy of the body, no amplification). Only for bodies that
/// are a JSON object for a message: `Err(None)` for any other shape, and
/// `Err(Some(why))` for invalid input (the caller decides whether to parse
/// again to locate the field).
fn streamed(
    route: &Route,
    input: &MessageDescriptor,
    body: &[u8],
) -> Result<DynamicMessage, Option<String>> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(None);
    }
    let read = |descriptor: MessageDescriptor| {
        let mut de = serde_json::Deserializer::from_slice(body);
        let message =
            DynamicMessage::deserialize(descriptor, &mut de).map_err(|e| Some(e.to_string()))?;
        de.end().map_err(|e| Some(e.to_string()))?;
        Ok(message)
    };
    match &route.body {
        BodyRule::Whole => read(input.clone()),
        BodyRule::Field(field) if !field.is_list() && !field.is_map() => match field.kind() {
            Kind::Message(inner) if !is_well_known(&inner) => {
                let value = read(inner)?;
                let mut message = DynamicMessage::new(input.clone());
                message.set_field(field, Value::Message(value));
                Ok(message)
            }
            _ => Err(None),
        },
        _ => Err(None),
    }
}

/// Finds which field of a JSON object makes it fail to deserialize, by
/// deserializing one field (one list item, one map entry) at a time and
/// descending into message values. Runs on the error path only. The path
/// uses proto field names with `[i]` for list items and `.key` for map
/// entries (the field mask notation), e.g. `customer.emails[1].address`.
fn locate(message: &MessageDescriptor, json: &Json, prefix: &str) -> Option<(String, String)> {
    let fails = |json: Json| DynamicMessage::deserialize(message.clone(), json).err();
    for (key, value) in json.as_object()? {
        let Some(field) = message
            .get_field_by_json_name(key)
            .or_else(|| message.get_field_by_name(key))
        else {
            return Some((join(prefix, key), "unknown field".to_owned()));
        };
        let Some(err) = fails(object(key, value.clone())) else {
            continue;
        };
        let path = join(prefix, field.name());
        // Descends into a message value, unless its JSON is a scalar (a
        // well-known type) and the error is the value itself.
        let inner = |kind: Kind, value: &Json, path: &str| match kind {
            Kind::Message(m) if !is_well_known(&m) => locate(&m, value, path),
            _ => None,
        };
        let found = match value {
            Json::Object(entries) if field.is_map() => {
                let value_kind = match field.kind() {
                    Kind::Message(entry) => entry.map_entry_value_field().kind(),
                    kind => kind,
                };
                entries.iter().find_map(|(k, v)| {
                    let err = fails(object(key, object(k, v.clone())))?;
                    let path = format!("{path}.{k}");
                    Some(inner(value_kind.clone(), v, &path).unwrap_or((path, err.to_string())))
                })
            }
            Json::Array(items) if field.is_list() => {
                items.iter().enumerate().find_map(|(i, item)| {
                    let err = fails(object(key, Json::Array(vec![item.clone()])))?;
                    let path = format!("{path}[{i}]");
                    Some(inner(field.kind(), item, &path).unwrap_or((path, err.to_string())))
                })
            }
            Json::Object(_) if !field.is_list() => inner(field.kind(), value, &path),
            _ => None,
        };
        return Some(found.unwrap_or((path, err.to_string())));
    }
    None
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn object(key: &str, value: Json) -> Json {
    let mut map = Map::new();
    map.insert(key.to_owned(), value);
    Json::Object(map)
}

/// Sets query parameters: `a.b=v` sets the field at that path (proto or
/// lowerCamelCase names), a repeated field takes the parameter once per
/// item. Parameters that name no field, or a field the path or body already
/// binds, are refused rather than ignored: a silently dropped filter would
/// return the wrong data.
fn apply_query(route: &Route, message: &mut DynamicMessage, query: &str) -> Result<(), RestError> {
    let mut singular_set = HashSet::new();
    // The member of each oneof the query string set, by parent path and
    // oneof name: a second member would silently replace the first.
    let mut oneofs: HashMap<(Vec<u32>, String), u32> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_decode(&s.replace('+', " "), false);
        let (Some(key), Some(raw)) = (decode(raw_key), decode(raw_value)) else {
            return Err(RestError::invalid_field(
                raw_key,
                "query parameter is not valid percent-encoded UTF-8",
            ));
        };
        if key.chars().chain(raw.chars()).any(char::is_control) {
            return Err(RestError::invalid_field(
                key,
                "must not contain control characters",
            ));
        }
        if matches!(route.body, BodyRule::Whole) {
            return Err(RestError::invalid_field(
                key,
                "query parameters are not accepted: the body carries the whole request",
            ));
        }
        let fields = query_fields(&message.descriptor(), &key)?;
        if let (BodyRule::Field(body), Some(first)) = (&route.body, fields.first())
            && body == first
        {
            return Err(RestError::invalid_field(
                key,
                "is carried by the request body",
            ));
        }
        if route.is_path_bound(&fields) {
            return Err(RestError::invalid_field(key, "is bound by the URL path"));
        }
        let Some(leaf) = fields.last() else {
            return Err(RestError::invalid_field(key, "unknown query parameter"));
        };
        let value = query_value(leaf, &raw).map_err(|e| RestError::invalid_field(&key, e))?;
        for (depth, field) in fields.iter().enumerate() {
            if let Some(oneof) = field.containing_oneof() {
                let parent = fields[..depth]
                    .iter()
                    .map(FieldDescriptor::number)
                    .collect();
                let member = *oneofs
                    .entry((parent, oneof.name().to_owned()))
                    .or_insert(field.number());
                if member != field.number() {
                    return Err(RestError::invalid_field(
                        key,
                        format!(
                            "another field of the oneof `{}` is already set",
                            oneof.name()
                        ),
                    ));
                }
            }
        }
        let Some(slot) = value_at(message, &fields) else {
            return Err(RestError::invalid_field(key, "cannot be set"));
        };
        match slot {
            Value::List(items) => items.push(value),
            slot => {
                let numbers: Vec<u32> = fields.iter().map(FieldDescriptor::number).collect();
                if !singular_set.insert(numbers) {
                    return Err(RestError::invalid_field(key, "is given more than once"));
                }
                *slot = value;
            }
        }
    }
    Ok(())
}

/// Resolves a dotted query parameter name to fields: singular messages on
/// the way, a scalar, enum, scalar-like well-known type or a list of those
/// at the end.
fn query_fields(message: &MessageDescriptor, key: &str) -> Result<Vec<FieldDescriptor>, RestError> {
    let unknown = || RestError::invalid_field(key, "unknown query parameter");
    let mut message = message.clone();
    let mut fields = Vec::new();
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let field = message
            .get_field_by_name(part)
            .or_else(|| message.get_field_by_json_name(part))
            .ok_or_else(unknown)?;
        let last = parts.peek().is_none();
        match field.kind() {
            _ if field.is_map() => {
                return Err(RestError::invalid_field(
                    key,
                    "map fields cannot be set from the query string",
                ));
            }
            Kind::Message(inner) if !is_query_scalar(&inner) => {
                if last || field.is_list() || is_well_known(&inner) {
                    return Err(RestError::invalid_field(
                        key,
                        "message fields cannot be set from the query string; name a sub-field",
                    ));
                }
                message = inner;
            }
            _ if !last => return Err(unknown()),
            _ => {}
        }
        fields.push(field);
    }
    Ok(fields)
}

/// Well-known message types with a scalar JSON form, settable from a query
/// parameter.
fn is_query_scalar(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

/// Whether a message type has its own JSON form (and so no fields to
/// descend into).
pub(crate) fn is_well_known(message: &MessageDescriptor) -> bool {
    message.package_name() == "google.protobuf" && message.full_name() != "google.protobuf.Empty"
}

/// Parses one query value for `field` (one item when the field is
/// repeated). Numbers, bytes, enums, timestamps and durations go through the
/// proto3 JSON parser as JSON strings, so the query string accepts exactly
/// what JSON does; booleans and field masks are read here because their JSON
/// forms (`true`, lowerCamelCase paths) are not what people type in URLs.
fn query_value(field: &FieldDescriptor, raw: &str) -> Result<Value, String> {
    let boolean = || match raw {
        "true" => Ok(Json::Bool(true)),
        "false" => Ok(Json::Bool(false)),
        _ => Err("must be true or false".to_owned()),
    };
    let json = match field.kind() {
        Kind::String => return Ok(Value::String(raw.to_owned())),
        Kind::Bool => boolean()?,
        Kind::Enum(_) => match raw.parse::<i32>() {
            Ok(number) => Json::from(number),
            Err(_) => Json::from(raw),
        },
        Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask" => {
            return field_mask(&m, raw);
        }
        Kind::Message(m) if m.full_name() == "google.protobuf.BoolValue" => boolean()?,
        _ => Json::from(raw),
    };
    let json = if field.is_list() {
        Json::Array(vec![json])
    } else {
        json
    };
    let parsed = DynamicMessage::deserialize(
        field.parent_message().clone(),
        object(field.json_name(), json),
    )
    .map_err(|err| err.to_string())?;
    match parsed.get_field(field).into_owned() {
        Value::List(mut items) if field.is_list() => {
            items.pop().ok_or_else(|| "no value".to_owned())
        }
        value => Ok(value),
    }
}

/// A field mask from `a,b.c` with proto (`display_name`) or lowerCamelCase
/// (`displayName`) paths.
fn field_mask(descriptor: &MessageDescriptor, raw: &str) -> Result<Value, String> {
    let mut paths = Vec::new();
    for path in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut snake = String::with_capacity(path.len() + 4);
        for c in path.chars() {
            if c.is_ascii_uppercase() {
                snake.push('_');
                snake.push(c.to_ascii_lowercase());
            } else {
                snake.push(c);
            }
        }
        paths.push(snake);
    }
    let mask = prost_types::FieldMask { paths };
    DynamicMessage::decode(descriptor.clone(), mask.encode_to_vec().as_slice())
        .map(Value::Message)
        .map_err(|err| err.to_string())
}

/// The slot of the field at `fields`, creating the messages on the way.
fn value_at<'a>(
    mut message: &'a mut DynamicMessage,
    fields: &[FieldDescriptor],
) -> Option<&'a mut Value> {
    let (last, parents) = fields.split_last()?;
    for field in parents {
        match message.get_field_mut(field) {
            Value::Message(inner) => message = inner,
            _ => return None,
        }
    }
    Some(message.get_field_mut(last))
}

/// The non-empty string at `fields`, if set.
fn string_at(message: &DynamicMessage, fields: &[FieldDescriptor]) -> Option<String> {
    match fields {
        [] => None,
        [last] => match message.get_field(last).as_ref() {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        },
        [first, rest @ ..] => {
            if !message.has_field(first) {
                return None;
            }
            match message.get_field(first).as_ref() {
                Value::Message(inner) => string_at(inner, rest),
                _ => None,
            }
        }
    }
}

/// The string field at a dotted path of proto names, if set.
fn string_by_name(message: &DynamicMessage, path: &str) -> Option<String> {
    let mut descriptor = message.descriptor();
    let mut fields = Vec::new();
    for name in path.split('.') {
        let field = descriptor.get_field_by_name(name)?;
        if let Kind::Message(inner) = field.kind() {
            descriptor = inner;
        }
        fields.push(field);
    }
    string_at(message, &fields)
}

/// What the audit log records of a request it cannot decode itself.
pub(crate) fn request_facts(message: &DynamicMessage) -> RequestFacts {
    RequestFacts {
        resource: RESOURCE_FIELDS
            .iter()
            .find_map(|path| string_by_name(message, path))
            .unwrap_or_default(),
        request_id: string_by_name(message, "request_id").unwrap_or_default(),
    }
}

/// The gRPC request for `message`: `POST /<service>/<Method>` with one
/// uncompressed frame, the forwarded headers, the incoming request's
/// extensions (connection info the pipeline may read) and the REST markers.
pub(crate) fn grpc_request(
    route: &Route,
    incoming: &http::request::Parts,
    message: &DynamicMessage,
) -> Result<http::Request<tonic::body::Body>, RestError> {
    let payload = message.encode_to_vec();
    let length = u32::try_from(payload.len()).map_err(|_| {
        RestError::invalid_body("REQUEST_TOO_LARGE", "the request message is too large")
    })?;
    let mut frame = BytesMut::with_capacity(5 + payload.len());
    frame.put_u8(0);
    frame.put_u32(length);
    frame.put_slice(&payload);
    let mut request = http::Request::new(tonic::body::Body::new(Full::new(frame.freeze())));
    *request.method_mut() = http::Method::POST;
    *request.version_mut() = http::Version::HTTP_2;
    *request.uri_mut() = route.method.path.parse().map_err(|_| {
        RestError::gateway(
            Code::Internal,
            "INVALID_RPC_PATH",
            "the RPC path is not a URI",
        )
    })?;
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    for name in FORWARDED_HEADERS {
        for value in incoming.headers.get_all(name) {
            headers.append(HeaderName::from_static(name), value.clone());
        }
    }
    *request.extensions_mut() = incoming.extensions.clone();
    request.extensions_mut().insert(Protocol::Rest);
    request.extensions_mut().insert(request_facts(message));
    Ok(request)
}

/// Transcodes and sends one call.
pub(crate) async fn call(
    calls: &dyn GrpcCall,
    pool: &DescriptorPool,
    route: &Route,
    incoming: &http::request::Parts,
    bindings: &[Binding],
    body: &[u8],
    authorized: Option<Authorized>,
) -> Response {
    let request = request_message(route, bindings, incoming.uri.query(), body)
        .and_then(|message| grpc_request(route, incoming, &message))
        .map(|mut request| {
            if let Some(authorized) = authorized {
                request.extensions_mut().insert(authorized);
            }
            request
        });
    match request {
        Ok(request) => rest_response(route, calls.call(request).await, pool).await,
        Err(error) => {
            tracing::debug!(rpc = %route.method.path, code = ?error.code, "REST request refused before the call");
            error.into_response()
        }
    }
}

/// Turns the gRPC response into the REST one. The status is in the trailers,
/// or in the headers of a trailers-only response.
pub(crate) async fn rest_response(
    route: &Route,
    response: http::Response<tonic::body::Body>,
    pool: &DescriptorPool,
) -> Response {
    let (parts, body) = response.into_parts();
    let forwarded = response_metadata(&parts.headers);
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(status) => {
            let mut error = RestError::from_grpc(
                status.code(),
                status.message(),
                status.details(),
                Some(pool),
            );
            error.headers.extend(forwarded);
            return error.into_response();
        }
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    let status_headers = if trailers.contains_key(GRPC_STATUS) {
        &trailers
    } else {
        &parts.headers
    };
    let (code, message, details) = match errors::status_from_headers(status_headers) {
        Some(status) => status,
        None if parts.status != StatusCode::OK => (
            errors::code_of_http(parts.status),
            format!("the backend answered HTTP {}", parts.status),
            Bytes::new(),
        ),
        None => (
            Code::Internal,
            "the backend answered without a grpc-status".to_owned(),
            Bytes::new(),
        ),
    };
    if code != Code::Ok {
        let mut error = RestError::from_grpc(code, &message, &details, Some(pool));
        error.headers.extend(forwarded);
        return error.into_response();
    }
    match decode_json(route, &data) {
        Ok(json) => {
            let mut response = (StatusCode::OK, json).into_response();
            response.headers_mut().extend(forwarded);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(why) => {
            tracing::warn!(rpc = %route.method.path, %why, "unusable gRPC response");
            RestError::gateway(
                Code::Internal,
                "INVALID_BACKEND_RESPONSE",
                "the service sent a response the gateway cannot read",
            )
            .into_response()
        }
    }
}

/// The single framed message of a unary response, as proto3 JSON.
fn decode_json(route: &Route, data: &[u8]) -> Result<Vec<u8>, String> {
    let [flag, a, b, c, d, payload @ ..] = data else {
        return Err("no message frame".into());
    };
    if *flag != 0 {
        // The call advertises no grpc-accept-encoding, so nothing may be compressed.
        return Err("compressed message".into());
    }
    let length = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if payload.len() != length {
        return Err(format!(
            "frame of {length} bytes, {} bytes received",
            payload.len()
        ));
    }
    let message = DynamicMessage::decode(route.method.descriptor.output(), payload)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(payload.len() * 2);
    message
        .serialize_with_options(
            &mut serde_json::Serializer::new(&mut out),
            &errors::json_options(),
        )
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Response metadata passed on as HTTP headers, less the gRPC framing ones.
fn response_metadata(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let framing = name.as_str().starts_with("grpc-")
            || name.as_str().ends_with("-bin")
            || [
                header::CONTENT_TYPE,
                header::CONTENT_LENGTH,
                header::TE,
                header::TRAILER,
                header::TRANSFER_ENCODING,
                header::CONNECTION,
            ]
            .contains(name);
        if !framing {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prost_reflect::DescriptorPool;
    use prost_types::{
        DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
        FileDescriptorProto, MethodDescriptorProto, ServiceDescriptorProto,
        field_descriptor_proto::{Label, Type},
    };

    use super::*;
    use crate::catalog::{HttpRule, MethodInfo};

    /// A route over a message with every kind of query field the contracts
    /// do not (yet) use: repeated scalars and enums, bools, floats, bytes.
    fn things_route() -> Route {
        let field = |name: &str, number, label: Label, ty: Type, type_name: Option<&str>| {
            FieldDescriptorProto {
                name: Some(name.into()),
                number: Some(number),
                label: Some(label as i32),
                r#type: Some(ty as i32),
                type_name: type_name.map(Into::into),
                ..Default::default()
            }
        };
        let file = FileDescriptorProto {
            name: Some("test/things.proto".into()),
            package: Some("test".into()),
            syntax: Some("proto3".into()),
            message_type: vec![DescriptorProto {
                name: Some("Filter".into()),
                field: vec![
                    field("tags", 1, Label::Repeated, Type::String, None),
                    field("sizes", 2, Label::Repeated, Type::Int64, None),
                    field(
                        "colors",
                        3,
                        Label::Repeated,
                        Type::Enum,
                        Some(".test.Color"),
                    ),
                    field("flag", 4, Label::Optional, Type::Bool, None),
                    field("ratio", 5, Label::Optional, Type::Double, None),
                    field("blob", 6, Label::Optional, Type::Bytes, None),
                    field("name", 7, Label::Optional, Type::String, None),
                ],
                ..Default::default()
            }],
            enum_type: vec![EnumDescriptorProto {
                name: Some("Color".into()),
                value: ["COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_BLUE"]
                    .iter()
                    .zip(0..)
                    .map(|(name, number)| EnumValueDescriptorProto {
                        name: Some((*name).into()),
                        number: Some(number),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            service: vec![ServiceDescriptorProto {
                name: Some("Things".into()),
                method: vec![MethodDescriptorProto {
                    name: Some("ListThings".into()),
                    input_type: Some(".test.Filter".into()),
                    output_type: Some(".test.Filter".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut pool = DescriptorPool::new();
        pool.add_file_descriptor_proto(file).unwrap();
        let descriptor = pool
            .get_service_by_name("test.Things")
            .unwrap()
            .methods()
            .next()
            .unwrap();
        let method = Arc::new(MethodInfo {
            path: "/test.Things/ListThings".into(),
            service: "test.Things".into(),
            name: "ListThings".into(),
            scope: Some("things.read".into()),
            http: Some(HttpRule {
                verb: http::Method::GET,
                template: "/v1/{name=shelves/*}/things".into(),
                body: String::new(),
            }),
            audit_read: false,
            descriptor,
        });
        Route::compile(&method).unwrap().unwrap()
    }

    fn field(message: &DynamicMessage, name: &str) -> Value {
        message.get_field_by_name(name).unwrap().into_owned()
    }

    #[test]
    fn repeated_query_parameters_append_in_order() {
        let route = things_route();
        let bindings = route.template.matches("/v1/shelves/s1/things").unwrap();
        let query = "tags=a&tags=b%20c&sizes=1&sizes=-9007199254740993&colors=COLOR_BLUE&colors=1\
                     &flag=true&ratio=0.25&blob=AQI%3D";
        let message = request_message(&route, &bindings, Some(query), b"").unwrap();
        assert_eq!(
            field(&message, "tags"),
            Value::List(vec![Value::String("a".into()), Value::String("b c".into())])
        );
        assert_eq!(
            field(&message, "sizes"),
            Value::List(vec![Value::I64(1), Value::I64(-9_007_199_254_740_993)])
        );
        assert_eq!(
            field(&message, "colors"),
            Value::List(vec![Value::EnumNumber(2), Value::EnumNumber(1)])
        );
        assert_eq!(field(&message, "flag"), Value::Bool(true));
        assert_eq!(field(&message, "ratio"), Value::F64(0.25));
        assert_eq!(field(&message, "blob"), Value::Bytes(vec![1, 2].into()));
        assert_eq!(field(&message, "name"), Value::String("shelves/s1".into()));
        assert_eq!(
            request_facts(&message),
            RequestFacts {
                resource: "shelves/s1".into(),
                request_id: String::new(),
            }
        );
    }

    #[test]
    fn query_values_are_checked_per_type() {
        let route = things_route();
        let bindings = route.template.matches("/v1/shelves/s1/things").unwrap();
        for (query, field) in [
            ("flag=yes", "flag"),
            ("sizes=1&sizes=x", "sizes"),
            ("colors=COLOR_GREEN", "colors"),
            ("ratio=half", "ratio"),
            ("blob=%%%", "blob"),
            ("flag=true&flag=false", "flag"),
            ("tags.x=1", "tags.x"),
            ("tags=a%00b", "tags"),
            ("tags=%1B", "tags"),
        ] {
            let error = request_message(&route, &bindings, Some(query), b"").unwrap_err();
            let body = error.body();
            assert_eq!(
                body["error"]["details"][1]["fieldViolations"][0]["field"], field,
                "{query}: {body}"
            );
        }
    }

    #[test]
    fn control_characters_in_path_variables_are_refused() {
        let route = things_route();
        let bindings = route.template.matches("/v1/shelves/s%001/things").unwrap();
        let error = request_message(&route, &bindings, None, b"").unwrap_err();
        let body = error.body();
        assert_eq!(
            body["error"]["details"][1]["fieldViolations"][0]["field"], "name",
            "{body}"
        );
    }

    #[test]
    fn grpc_request_frames_the_message() {
        let route = things_route();
        let bindings = route.template.matches("/v1/shelves/s1/things").unwrap();
        let message = request_message(&route, &bindings, Some("tags=a"), b"").unwrap();
        let incoming = http::Request::builder()
            .header("grpc-timeout", "5S")
            .header("x-api-key", "rk_1")
            .header("x-forwarded-for", "10.0.0.1")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let request = grpc_request(&route, &incoming, &message).unwrap();
        assert_eq!(request.uri(), "/test.Things/ListThings");
        assert_eq!(request.version(), http::Version::HTTP_2);
        assert_eq!(request.headers()["grpc-timeout"], "5S");
        assert_eq!(request.headers()["x-api-key"], "rk_1");
        assert!(!request.headers().contains_key("x-forwarded-for"));
        let expected = message.encode_to_vec();
        let mut framed = vec![0];
        framed.extend_from_slice(&(expected.len() as u32).to_be_bytes());
        framed.extend_from_slice(&expected);
        let body = futures::executor::block_on(request.into_body().collect())
            .unwrap()
            .to_bytes();
        assert_eq!(body, framed);
    }
}
