//! One port, three protocols: gRPC, gRPC-web and REST/JSON on the same
//! contract, plus health, reflection and the limits on what comes in.

use prost::Message as _;
use rapport_e2e::*;
use tonic::Code;

fn auth(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn rest_round_trip_with_json_and_json_errors() {
    let s = start().await;
    let key = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let a = auth(&key);
    let json = [
        ("authorization", a.as_str()),
        ("content-type", "application/json"),
    ];

    // Create.
    let body = r#"{"displayName":"Ada Lovelace","emails":[{"address":"ada@example.com"}]}"#;
    let created = http(
        s.gateway,
        "POST",
        "/v1/customers?requestId=rest-1",
        &json,
        body,
    )
    .await;
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let created = created.json();
    // The body is the RPC's response message: `{"customer": {...}}`.
    let name = created["customer"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    assert!(name.starts_with("customers/"));
    assert_eq!(
        created["customer"]["lifecycleStage"],
        "LIFECYCLE_STAGE_AWARENESS"
    );

    // Get.
    let got = http(s.gateway, "GET", &format!("/v1/{name}"), &json, "").await;
    assert_eq!(got.status, 200);
    let got = got.json();
    assert_eq!(got["customer"]["displayName"], "Ada Lovelace");
    let etag = got["customer"]["etag"].as_str().unwrap().to_owned();

    // Update with a mask and the etag.
    let patch = serde_json::json!({"timeZone": "Europe/London", "etag": etag}).to_string();
    let updated = http(
        s.gateway,
        "PATCH",
        &format!("/v1/{name}?updateMask=timeZone"),
        &json,
        patch.clone(),
    )
    .await;
    assert_eq!(
        updated.status,
        200,
        "{}",
        String::from_utf8_lossy(&updated.body)
    );
    assert_eq!(updated.json()["customer"]["timeZone"], "Europe/London");
    // The same etag again is stale now: 409 with the gRPC code name.
    let stale = http(
        s.gateway,
        "PATCH",
        &format!("/v1/{name}?updateMask=timeZone"),
        &json,
        patch,
    )
    .await;
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["error"]["status"], "ABORTED");

    // List and lookup.
    let listed = http(s.gateway, "GET", "/v1/customers?pageSize=10", &json, "").await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["customers"].as_array().map(Vec::len), Some(1));
    let found = http(
        s.gateway,
        "GET",
        "/v1/customers:lookup?email=ada@example.com",
        &json,
        "",
    )
    .await;
    assert_eq!(found.status, 200);
    assert_eq!(found.json()["customer"]["name"], name.as_str());

    // Invalid input: 400 with ErrorInfo and field violations, as JSON.
    let bad = http(
        s.gateway,
        "POST",
        "/v1/customers",
        &json,
        r#"{"emails":[{"address":"not-an-email"}]}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    let err = bad.json();
    assert_eq!(err["error"]["code"], 400);
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    let details = err["error"]["details"].as_array().expect("details");
    assert!(
        details
            .iter()
            .any(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
                && d["reason"] == "INVALID_ARGUMENT")
    );
    let violations = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .expect("BadRequest")["fieldViolations"]
        .clone();
    assert_eq!(violations[0]["field"], "customer.emails[0].address");

    // Not found, unauthenticated.
    let missing = http(
        s.gateway,
        "GET",
        "/v1/customers/0192f1e0-0000-7000-8000-000000000000",
        &json,
        "",
    )
    .await;
    assert_eq!(missing.status, 404);
    let anon = http(s.gateway, "GET", &format!("/v1/{name}"), &[], "").await;
    assert_eq!(anon.status, 401);
    assert_eq!(anon.json()["error"]["status"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let s = start().await;
    let doc = http(s.gateway, "GET", "/openapi.json", &[], "").await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    assert!(
        paths
            .keys()
            .any(|p| p.contains("customers:lookup") || p.contains("customers%3Alookup")),
        "{:?}",
        paths.keys()
    );
    assert!(paths.len() >= 10);
}

#[tokio::test]
async fn grpc_web_calls_reach_the_same_contract() {
    let s = start().await;
    let key = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let msg = pb::CreateCustomerRequest {
        customer: Some(customer("Grace Hopper", "grace@example.com")),
        request_id: String::new(),
    };
    let bytes = msg.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(&bytes);
    let a = auth(&key);
    let resp = http(
        s.gateway,
        "POST",
        "/rapport.profiles.v1.ProfilesService/CreateCustomer",
        &[
            ("authorization", a.as_str()),
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("origin", "https://app.example.com"),
        ],
        frame,
    )
    .await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web")
    );
    assert_eq!(
        resp.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    // Body: a data frame with the response, then a trailer frame (flag 0x80).
    let body = resp.body.as_ref();
    assert_eq!(body[0], 0);
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let created = pb::CreateCustomerResponse::decode(&body[5..5 + len]).unwrap();
    assert_eq!(created.customer.unwrap().display_name, "Grace Hopper");
    let trailer = &body[5 + len..];
    assert_eq!(trailer[0], 0x80);
    assert!(String::from_utf8_lossy(&trailer[5..]).contains("grpc-status:0"));
}

#[tokio::test]
async fn cors_preflight_allows_only_configured_origins() {
    let s = start().await;
    let pre = |origin: &'static str| {
        let addr = s.gateway;
        async move {
            http(
                addr,
                "OPTIONS",
                "/rapport.profiles.v1.ProfilesService/GetCustomer",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "content-type,x-grpc-web,authorization",
                    ),
                ],
                "",
            )
            .await
        }
    };
    let ok = pre("https://app.example.com").await;
    assert_eq!(
        ok.headers
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://app.example.com")
    );
    let other = pre("https://evil.example").await;
    assert!(other.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn health_and_reflection_cover_every_routed_service() {
    let s = start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(s.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "rapport.profiles.v1.ProfilesService",
        "rapport.gateway.v1.GatewayAdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn unknown_methods_are_unimplemented_and_oversize_requests_are_refused() {
    let s = start().await;
    let key = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let a = auth(&key);
    // A path no contract declares.
    let mut grpc = tonic::client::Grpc::new(s.channel.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/rapport.nothing.v1.Nothing/Do");
    let mut r = tonic::Request::new(pb::GetCustomerRequest::default());
    r.metadata_mut().insert("authorization", a.parse().unwrap());
    let err = grpc
        .unary::<_, pb::GetCustomerResponse, _>(r, path, tonic_prost::ProstCodec::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    // Five megabytes of display name: refused with a clear code, nothing created.
    let mut p = s.profiles();
    let huge = customer(&"x".repeat(5 * 1024 * 1024), "big@example.com");
    let err = p
        .create_customer(with_key(
            &key,
            pb::CreateCustomerRequest {
                customer: Some(huge),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange
        ),
        "{err:?}"
    );
    let listed = p
        .list_customers(with_key(&key, pb::ListCustomersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.customers.is_empty());
}

#[tokio::test]
async fn red_metrics_count_calls_by_route_and_code() {
    let s = start().await;
    let key = s.key("acme", &["profiles.read"]).await;
    let mut p = s.profiles();
    p.list_customers(with_key(&key, pb::ListCustomersRequest::default()))
        .await
        .unwrap();
    let _ = p
        .list_customers(tonic::Request::new(pb::ListCustomersRequest::default()))
        .await
        .unwrap_err();
    let text = http(s.metrics, "GET", "/metrics", &[], "").await;
    assert_eq!(text.status, 200);
    let text = String::from_utf8_lossy(&text.body).into_owned();
    let route = "/rapport.profiles.v1.ProfilesService/ListCustomers";
    assert!(
        text.contains(&format!(
            "rapport_gateway_requests_total{{route=\"{route}\",code=\"OK\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "rapport_gateway_requests_total{{route=\"{route}\",code=\"UNAUTHENTICATED\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "rapport_gateway_request_duration_seconds_count{{route=\"{route}\",code=\"OK\"}} 1"
        )),
        "{text}"
    );
    // The public port does not serve it.
    let public = http(s.gateway, "GET", "/metrics", &[], "").await;
    assert_eq!(public.status, 404);
}
