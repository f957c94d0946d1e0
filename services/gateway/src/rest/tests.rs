//! The REST door end to end: HTTP request in, the gRPC request the pipeline
//! would receive, a gRPC response built the way tonic builds one, HTTP
//! response out. The stand-in [`GrpcCall`] replaces the network and the
//! pipeline only.
use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, StreamBody};
use prost::Message;
use rapport_proto::profiles as pb;
use serde_json::{Value as Json, json};
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt as _};
use tower::ServiceExt as _;

use super::router;
use crate::{
    call::{GrpcCall, Protocol, RequestFacts, ResponseFuture},
    catalog::Catalog,
};

/// What the stand-in saw of one call.
struct Seen {
    parts: http::request::Parts,
    /// The message bytes, unframed.
    message: Bytes,
}

type Answer = dyn Fn() -> http::Response<tonic::body::Body> + Send + Sync;

/// Answers every call with `answer` and records it.
struct Backend {
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Answer>,
}

impl GrpcCall for Backend {
    fn call(&self, request: http::Request<tonic::body::Body>) -> ResponseFuture {
        let seen = self.seen.clone();
        let answer = self.answer.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            assert_eq!(bytes[0], 0, "uncompressed frame");
            let length = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
            assert_eq!(bytes.len(), 5 + length, "one whole frame");
            seen.lock().unwrap().push(Seen {
                parts,
                message: bytes.slice(5..),
            });
            answer()
        })
    }
}

struct Harness {
    router: axum::Router,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Harness {
    fn new(answer: impl Fn() -> http::Response<tonic::body::Body> + Send + Sync + 'static) -> Self {
        let catalog = Arc::new(Catalog::load(rapport_proto::FILE_DESCRIPTOR_SET).unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let backend = Backend {
            seen: seen.clone(),
            answer: Arc::new(answer),
        };
        Self {
            router: router(
                catalog,
                Arc::new(backend),
                &["rapport.profiles.v1.ProfilesService".to_owned()],
            ),
            seen,
        }
    }

    /// A backend that answers OK with `message`.
    fn ok<M: Message + Clone + 'static>(message: M) -> Self {
        Self::new(move || grpc_ok(&message))
    }

    async fn send(&self, request: Request<axum::body::Body>) -> (StatusCode, HeaderMap, Json) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = if body.is_empty() {
            Json::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        (status, headers, json)
    }

    async fn json(&self, method: Method, uri: &str, body: Json) -> (StatusCode, HeaderMap, Json) {
        self.send(request(method, uri, Some(body))).await
    }

    async fn get(&self, uri: &str) -> (StatusCode, HeaderMap, Json) {
        self.send(request(Method::GET, uri, None)).await
    }

    /// The single call the backend saw.
    fn call(&self) -> Seen {
        let mut seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "exactly one call");
        seen.pop().unwrap()
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn request(method: Method, uri: &str, body: Option<Json>) -> Request<axum::body::Body> {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, "Bearer rk_test_secret")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header(header::COOKIE, "session=do-not-forward")
        .header("x-rapport-tenant", "spoofed");
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(axum::body::Body::empty()).unwrap(),
    }
}

fn frame(message: &impl Message) -> Bytes {
    let payload = message.encode_to_vec();
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(payload.len() as u32);
    frame.put_slice(&payload);
    frame.freeze()
}

/// A body of data frames followed by trailers, as a gRPC server sends it.
fn body_with_trailers(data: Option<Bytes>, trailers: HeaderMap) -> tonic::body::Body {
    let mut frames = Vec::new();
    if let Some(data) = data {
        frames.push(Ok::<_, Infallible>(http_body::Frame::data(data)));
    }
    frames.push(Ok(http_body::Frame::trailers(trailers)));
    tonic::body::Body::new(StreamBody::new(futures::stream::iter(frames)))
}

fn grpc_ok(message: &impl Message) -> http::Response<tonic::body::Body> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    http::Response::builder()
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("x-request-id", "req-1")
        .body(body_with_trailers(Some(frame(message)), trailers))
        .unwrap()
}

fn customer() -> pb::Customer {
    pb::Customer {
        name: "customers/c1".into(),
        display_name: "Ada Lovelace".into(),
        lifecycle_stage: pb::LifecycleStage::Retention as i32,
        tags: vec!["vip".into()],
        attributes: BTreeMap::from([(
            "orders".into(),
            pb::AttributeValue {
                kind: Some(pb::attribute_value::Kind::IntValue(9_007_199_254_740_993)),
            },
        )]),
        create_time: Some(prost_types::Timestamp {
            seconds: 1_714_557_600,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn violation(body: &Json) -> (String, String) {
    let details = body["error"]["details"].as_array().unwrap();
    let bad_request = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .unwrap_or_else(|| panic!("no BadRequest in {body}"));
    let v = &bad_request["fieldViolations"][0];
    (
        v["field"].as_str().unwrap().to_owned(),
        v["description"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn get_becomes_a_grpc_call_and_its_answer_json() {
    let h = Harness::ok(pb::GetCustomerResponse {
        customer: Some(customer()),
    });
    let (status, headers, body) = h.get("/v1/customers/c1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers["x-request-id"], "req-1", "response metadata passes");
    assert_eq!(
        body,
        json!({"customer": {
            "name": "customers/c1",
            "displayName": "Ada Lovelace",
            "lifecycleStage": "LIFECYCLE_STAGE_RETENTION",
            "tags": ["vip"],
            "attributes": {"orders": {"intValue": "9007199254740993"}},
            "createTime": "2024-05-01T10:00:00Z",
        }})
    );

    let call = h.call();
    assert_eq!(call.parts.method, Method::POST);
    assert_eq!(
        call.parts.uri.path(),
        "/rapport.profiles.v1.ProfilesService/GetCustomer"
    );
    let headers = &call.parts.headers;
    assert_eq!(headers[header::CONTENT_TYPE], "application/grpc");
    assert_eq!(headers[header::TE], "trailers");
    assert_eq!(headers[header::AUTHORIZATION], "Bearer rk_test_secret");
    assert!(headers.contains_key("traceparent"));
    assert!(!headers.contains_key(header::COOKIE));
    assert!(!headers.contains_key("x-rapport-tenant"));
    assert_eq!(call.parts.extensions.get(), Some(&Protocol::Rest));
    assert_eq!(
        call.parts.extensions.get(),
        Some(&RequestFacts {
            resource: "customers/c1".into(),
            request_id: String::new(),
        })
    );
    assert_eq!(
        pb::GetCustomerRequest::decode(call.message).unwrap(),
        pb::GetCustomerRequest {
            name: "customers/c1".into()
        }
    );
}

#[tokio::test]
async fn body_field_path_variable_and_query_fill_one_message() {
    let h = Harness::ok(pb::UpdateCustomerResponse::default());
    let (status, _, body) = h
        .json(
            Method::PATCH,
            "/v1/customers/c1?update_mask=display_name,givenName,contactPreferences.doNotContact&requestId=r-1",
            json!({
                "displayName": "Ada",
                "given_name": "Augusta",
                "contactPreferences": {"doNotContact": true},
                "emails": [{"address": "ada@example.com", "primary": true}],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let call = h.call();
    assert_eq!(
        call.parts.extensions.get(),
        Some(&RequestFacts {
            resource: "customers/c1".into(),
            request_id: "r-1".into(),
        })
    );
    let request = pb::UpdateCustomerRequest::decode(call.message).unwrap();
    assert_eq!(
        request,
        pb::UpdateCustomerRequest {
            customer: Some(pb::Customer {
                name: "customers/c1".into(),
                display_name: "Ada".into(),
                given_name: "Augusta".into(),
                contact_preferences: Some(pb::ContactPreferences {
                    do_not_contact: true,
                    ..Default::default()
                }),
                emails: vec![pb::EmailAddress {
                    address: "ada@example.com".into(),
                    primary: true,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![
                    "display_name".into(),
                    "given_name".into(),
                    "contact_preferences.do_not_contact".into()
                ],
            }),
            request_id: "r-1".into(),
        }
    );
}

#[tokio::test]
async fn the_body_cannot_contradict_the_path() {
    let h = Harness::ok(pb::UpdateCustomerResponse::default());
    // Sending the resource back with its own name is fine.
    let (status, _, _) = h
        .json(
            Method::PATCH,
            "/v1/customers/c1",
            json!({"name": "customers/c1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = h
        .json(
            Method::PATCH,
            "/v1/customers/c1",
            json!({"name": "customers/c2"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(violation(&body).0, "customer.name");
    assert_eq!(h.calls(), 1, "the refused request made no call");
}

#[tokio::test]
async fn whole_body_custom_method_with_enums_and_timestamp() {
    let h = Harness::ok(pb::SetConsentResponse::default());
    let (status, _, body) = h
        .json(
            Method::POST,
            "/v1/customers/c1:setConsent",
            json!({
                "channel": "CHANNEL_EMAIL",
                "purpose": 2,
                "status": "CONSENT_STATUS_GRANTED",
                "source": "web-signup-form",
                "captureTime": "2024-05-01T10:00:00.5Z",
                "request_id": "r-2",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let request = pb::SetConsentRequest::decode(h.call().message).unwrap();
    assert_eq!(
        request,
        pb::SetConsentRequest {
            name: "customers/c1".into(),
            channel: rapport_proto::types::Channel::Email as i32,
            purpose: pb::ConsentPurpose::Marketing as i32,
            status: pb::ConsentStatus::Granted as i32,
            source: "web-signup-form".into(),
            capture_time: Some(prost_types::Timestamp {
                seconds: 1_714_557_600,
                nanos: 500_000_000,
            }),
            request_id: "r-2".into(),
            ..Default::default()
        }
    );

    // `*` leaves nothing to the query string.
    let (status, _, body) = h
        .json(
            Method::POST,
            "/v1/customers/c1:setConsent?source=x",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(violation(&body).0, "source");
}

#[tokio::test]
async fn merge_names_the_survivor_as_the_resource() {
    let h = Harness::ok(pb::MergeCustomersResponse::default());
    let (status, _, _) = h
        .json(
            Method::POST,
            "/v1/customers:merge",
            json!({"survivor": "customers/a", "merged": "customers/b", "requestId": "r-3"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        h.call().parts.extensions.get(),
        Some(&RequestFacts {
            resource: "customers/a".into(),
            request_id: "r-3".into(),
        })
    );
}

#[tokio::test]
async fn query_parameters_fill_list_filters() {
    let h = Harness::ok(pb::ListCustomersResponse::default());
    let (status, _, body) = h
        .get("/v1/customers?pageSize=10&lifecycle_stage=LIFECYCLE_STAGE_RETENTION&state=2&updateTimeAfter=2024-01-01T00%3A00%3A00Z&tag=vip+gold&orderBy=display_name%20desc")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        pb::ListCustomersRequest::decode(h.call().message).unwrap(),
        pb::ListCustomersRequest {
            page_size: 10,
            lifecycle_stage: pb::LifecycleStage::Retention as i32,
            state: pb::CustomerState::Merged as i32,
            update_time_after: Some(prost_types::Timestamp {
                seconds: 1_704_067_200,
                nanos: 0,
            }),
            tag: "vip gold".into(),
            order_by: "display_name desc".into(),
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn nested_query_parameters_and_oneofs() {
    let h = Harness::ok(pb::LookupCustomerResponse::default());
    let (status, _, body) = h
        .get("/v1/customers:lookup?channelIdentity.channel=CHANNEL_SOCIAL&channel_identity.provider=instagram&channelIdentity.handle=%40ada")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let request = pb::LookupCustomerRequest::decode(h.call().message).unwrap();
    assert_eq!(
        request.identity,
        Some(pb::lookup_customer_request::Identity::ChannelIdentity(
            pb::ChannelIdentity {
                channel: rapport_proto::types::Channel::Social as i32,
                provider: "instagram".into(),
                handle: "@ada".into(),
            }
        ))
    );

    // Two members of one oneof: refused, not silently one of them.
    let (status, _, body) = h
        .get("/v1/customers:lookup?email=a%40b.c&phone=%2B1555")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(violation(&body).0, "phone");
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let h = Harness::ok(pb::CreateCustomerResponse::default());
    let cases = [
        (
            json!({"displayName": "x", "emails": [{"address": "a@b.c"}, {"adress": "d@e.f"}]}),
            "customer.emails[1].adress",
            "unknown field",
        ),
        (
            json!({"nickname": "x"}),
            "customer.nickname",
            "unknown field",
        ),
        (
            json!({"birthday": {"month": "May"}}),
            "customer.birthday.month",
            "",
        ),
        (
            json!({"contactPreferences": {"preferredChannel": "CHANNEL_PIGEON"}}),
            "customer.contact_preferences.preferred_channel",
            "CHANNEL_PIGEON",
        ),
        (
            json!({"attributes": {"tier": {"stringValue": "gold"}, "since": {"timestampValue": "yesterday"}}}),
            "customer.attributes.since.timestamp_value",
            "",
        ),
        (json!({"createTime": 5}), "customer.create_time", ""),
        (json!(["not", "an", "object"]), "customer", "JSON object"),
    ];
    for (customer, field, description) in cases {
        let (status, _, body) = h.json(Method::POST, "/v1/customers", customer).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        let (got_field, got_description) = violation(&body);
        assert_eq!(got_field, field, "{body}");
        assert!(got_description.contains(description), "{body}");
    }

    let cases = [
        // Query parameters are named as the client sent them.
        ("/v1/customers?pageSize=many", "pageSize"),
        ("/v1/customers?page_size=1&page_size=2", "page_size"),
        ("/v1/customers?pageSize=99999999999", "pageSize"),
        ("/v1/customers?nope=1", "nope"),
        ("/v1/customers?state=CUSTOMER_STATE_ASLEEP", "state"),
        ("/v1/customers?updateTimeAfter=yesterday", "updateTimeAfter"),
        ("/v1/customers:lookup?channelIdentity=x", "channelIdentity"),
        ("/v1/customers/c1?name=customers/c2", "name"),
    ];
    for (uri, field) in cases {
        let (status, _, body) = h.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(violation(&body).0, field, "{uri}: {body}");
    }
    assert_eq!(h.calls(), 0);
}

#[tokio::test]
async fn malformed_requests_are_json_errors() {
    let h = Harness::ok(pb::GetCustomerResponse::default());

    let (status, _, body) = h.json(Method::GET, "/v1/customers/c1", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "GET takes no body: {body}");
    assert_eq!(body["error"]["details"][0]["reason"], "UNEXPECTED_BODY");

    let (status, _, body) = h.get("/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["status"], "NOT_FOUND");
    assert_eq!(body["error"]["code"], 404);

    let (status, headers, body) = h
        .send(request(Method::DELETE, "/v1/customers/c1", None))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(headers[header::ALLOW], "GET, PATCH");

    let not_json = Request::builder()
        .method(Method::POST)
        .uri("/v1/customers")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(axum::body::Body::from("displayName=x"))
        .unwrap();
    let (status, _, _) = h.send(not_json).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let syntax = Request::builder()
        .method(Method::POST)
        .uri("/v1/customers")
        .body(axum::body::Body::from("{\"displayName\":"))
        .unwrap();
    let (status, _, body) = h.send(syntax).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["details"][0]["reason"], "INVALID_JSON");

    let huge = format!("{{\"displayName\":\"{}\"}}", "x".repeat(5 << 20));
    let huge = Request::builder()
        .method(Method::POST)
        .uri("/v1/customers")
        .body(axum::body::Body::from(huge))
        .unwrap();
    let (status, _, _) = h.send(huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(h.calls(), 0);
}

#[tokio::test]
async fn grpc_errors_become_googles_json_errors() {
    // Trailers-only, as tonic answers an error: the status is in the headers.
    let h = Harness::new(|| {
        let mut details = ErrorDetails::with_error_info(
            "CUSTOMER_NOT_FOUND",
            "profiles.rapport.dev",
            HashMap::from([("resource".to_owned(), "customers/c9".to_owned())]),
        );
        details.add_bad_request_violation("name", "no such customer");
        tonic::Status::with_error_details(Code::NotFound, "customers/c9 does not exist", details)
            .into_http()
    });
    let (status, _, body) = h.get("/v1/customers/c9").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": {
            "code": 404,
            "message": "customers/c9 does not exist",
            "status": "NOT_FOUND",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                 "reason": "CUSTOMER_NOT_FOUND", "domain": "profiles.rapport.dev",
                 "metadata": {"resource": "customers/c9"}},
                {"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"field": "name", "description": "no such customer"}]},
            ],
        }})
    );
}

#[tokio::test]
async fn rate_limits_set_retry_after() {
    let h = Harness::new(|| {
        let mut details = ErrorDetails::with_retry_info(Some(Duration::from_millis(1500)));
        details.set_error_info("RATE_LIMITED", "gateway.rapport.dev", HashMap::new());
        let mut response: http::Response<tonic::body::Body> =
            tonic::Status::with_error_details(Code::ResourceExhausted, "slow down", details)
                .into_http();
        response
            .headers_mut()
            .insert("grpc-retry-pushback-ms", HeaderValue::from_static("1500"));
        response
    });
    let (status, headers, body) = h.get("/v1/customers").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "2");
    assert!(!headers.contains_key("grpc-retry-pushback-ms"));
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(body["error"]["details"][0]["retryDelay"], "1.500s");
}

#[tokio::test]
async fn errors_in_trailers_and_broken_backends() {
    // An error after the headers: the status is in the trailers.
    let h = Harness::new(|| {
        let mut trailers = HeaderMap::new();
        tonic::Status::new(Code::Aborted, "etag mismatch: 50% stale")
            .add_header(&mut trailers)
            .unwrap();
        http::Response::builder()
            .header(header::CONTENT_TYPE, "application/grpc")
            .body(body_with_trailers(None, trailers))
            .unwrap()
    });
    let (status, _, body) = h.json(Method::PATCH, "/v1/customers/c1", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["message"], "etag mismatch: 50% stale");
    assert_eq!(body["error"]["status"], "ABORTED");
    assert!(body["error"].get("details").is_none());

    // A proxy error without any grpc-status.
    let h = Harness::new(|| {
        http::Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(tonic::body::Body::empty())
            .unwrap()
    });
    let (status, _, body) = h.get("/v1/customers").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["status"], "UNAVAILABLE");

    // OK with a message that is not the output type's.
    let h = Harness::new(|| {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        http::Response::new(body_with_trailers(
            Some(Bytes::from_static(b"\0\0\0\0\x09truncated")),
            trailers,
        ))
    });
    let (status, _, body) = h.get("/v1/customers").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "INVALID_BACKEND_RESPONSE"
    );
}

#[tokio::test]
async fn openapi_document_is_served() {
    let h = Harness::ok(pb::GetCustomerResponse::default());
    let (status, headers, body) = h.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(body["openapi"], "3.0.3");
    assert!(body["paths"]["/v1/customers/{customer}"]["get"].is_object());
    let (status, _, _) = h
        .send(request(Method::POST, "/openapi.json", Some(json!({}))))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h.calls(), 0);
}
