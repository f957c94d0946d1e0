//! What a platform team's tools expect of the gateway: health per routed
//! service as its backend reports it, health and reflection over gRPC-web
//! with a plain HTTP/1.1 client, only routed services advertised.

use prost::Message as _;
use rapport_e2e::*;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, ServerReflectionResponse, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse,
};

const PROFILES: &str = "rapport.profiles.v1.ProfilesService";
const ECHO: &str = "rapport.bench.v1.EchoService";

/// One gRPC-web call over HTTP/1.1: the message framed, the answer's data
/// frames and its trailer frame split apart.
async fn grpc_web(
    addr: std::net::SocketAddr,
    path: &str,
    message: &impl prost::Message,
) -> (Vec<Vec<u8>>, String) {
    let bytes = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(&bytes);
    let resp = http(
        addr,
        "POST",
        path,
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
        ],
        frame,
    )
    .await;
    assert_eq!(resp.status, 200);
    let content_type = resp.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/grpc-web"),
        "{path} answered {content_type}, not gRPC-web"
    );
    let mut body = resp.body.as_ref();
    let (mut messages, mut trailer) = (Vec::new(), String::new());
    // A trailers-only answer keeps its status in the headers.
    if let Some(status) = resp.headers.get("grpc-status") {
        trailer = format!("grpc-status:{}", status.to_str().unwrap());
    }
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = body[5..5 + len].to_vec();
        if body[0] & 0x80 != 0 {
            trailer = String::from_utf8(payload).unwrap();
        } else {
            messages.push(payload);
        }
        body = &body[5 + len..];
    }
    (messages, trailer)
}

#[tokio::test]
async fn health_answers_for_every_routed_service_as_its_backend_does() {
    let s = start().await;
    let mut health = HealthClient::new(s.channel.clone());
    for service in ["", PROFILES, "rapport.gateway.v1.GatewayAdminService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e:?}"))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    // In the contracts but not routed here, and not a service at all.
    for service in [ECHO, "no.such.Service"] {
        let err = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{service}");
        assert_reason(&err, "SERVICE_NOT_FOUND");
    }
    // A watch of a routed service is the backend's own stream.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: PROFILES.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn health_and_reflection_answer_grpc_web() {
    let s = start().await;
    for service in ["", PROFILES] {
        let (messages, trailer) = grpc_web(
            s.gateway,
            "/grpc.health.v1.Health/Check",
            &HealthCheckRequest {
                service: service.into(),
            },
        )
        .await;
        assert!(trailer.contains("grpc-status:0"), "{service:?}: {trailer}");
        let answer = HealthCheckResponse::decode(messages[0].as_slice()).unwrap();
        assert_eq!(answer.status, ServingStatus::Serving as i32);
    }

    // What `buf curl --protocol grpcweb` sends to discover the services.
    let (messages, trailer) = grpc_web(
        s.gateway,
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        &ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
    )
    .await;
    assert!(trailer.contains("grpc-status:0"), "{trailer}");
    let answer = ServerReflectionResponse::decode(messages[0].as_slice()).unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer: {answer:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        PROFILES,
        "rapport.gateway.v1.GatewayAdminService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    // The bench's echo service is in the contracts but not routed here.
    assert!(!names.iter().any(|n| n == ECHO), "{names:?}");

    // A file descriptor, as a client asks for it before its first call.
    let (messages, _) = grpc_web(
        s.gateway,
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        &ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(PROFILES.into())),
        },
    )
    .await;
    let answer = ServerReflectionResponse::decode(messages[0].as_slice()).unwrap();
    assert!(
        matches!(
            answer.message_response,
            Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()
        ),
        "{answer:?}"
    );
}

fn assert_reason(err: &tonic::Status, reason: &str) {
    use tonic_types::StatusExt as _;
    let info = err.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, reason, "{err:?}");
}

/// The samples of a Prometheus text exposition, by series (`name{labels}`),
/// checking each line is a comment or `series value`.
fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value {l:?}"));
            (series.to_owned(), value)
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_refusals_by_reason_and_calls_by_code() {
    let s = start().await;
    let mut p = s.profiles();
    // Unauthenticated.
    let err = p
        .list_customers(tonic::Request::new(
            rapport_proto::profiles::ListCustomersRequest::default(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Rate limited: a key of one call a second, two seconds of burst, called
    // until its bucket is empty.
    let limited = s.limited_key("acme", 1).await;
    let mut refused = 0;
    for _ in 0..10 {
        let answer = p
            .list_customers(with_key(
                &limited,
                rapport_proto::profiles::ListCustomersRequest::default(),
            ))
            .await;
        if let Err(e) = answer {
            assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
            refused += 1;
            break;
        }
    }
    assert_eq!(refused, 1, "the bucket never ran out");
    // Too large.
    let key = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let err = p
        .create_customer(with_key(
            &key,
            rapport_proto::profiles::CreateCustomerRequest {
                customer: Some(customer(&"x".repeat(5 * 1024 * 1024), "big@example.com")),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // A REST path no route matches.
    let missing = http(s.gateway, "GET", "/v1/nothing/here", &[], "").await;
    assert_eq!(missing.status, 404);

    let text = http(s.metrics, "GET", "/metrics", &[], "").await;
    let text = String::from_utf8(text.body.to_vec()).unwrap();
    let m = samples(&text);
    let get = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
    };
    assert_eq!(
        get(
            r#"rapport_gateway_refusals_total{reason="UNAUTHENTICATED",cause="CREDENTIALS_MISSING"}"#
        ),
        1.0
    );
    assert_eq!(
        get(r#"rapport_gateway_refusals_total{reason="RATE_LIMITED",cause=""}"#),
        1.0
    );
    assert_eq!(
        get(r#"rapport_gateway_refusals_total{reason="REQUEST_TOO_LARGE",cause=""}"#),
        1.0
    );
    let list = "/rapport.profiles.v1.ProfilesService/ListCustomers";
    assert_eq!(
        get(&format!(
            r#"rapport_gateway_requests_total{{route="{list}",code="RESOURCE_EXHAUSTED"}}"#
        )),
        1.0
    );
    let ok_calls = get(&format!(
        r#"rapport_gateway_requests_total{{route="{list}",code="OK"}}"#
    ));
    assert!(ok_calls >= 1.0);
    // The histogram has the code label and its 10 s bucket.
    assert_eq!(
        get(&format!(
            r#"rapport_gateway_request_duration_seconds_bucket{{route="{list}",code="OK",le="10"}}"#
        )),
        ok_calls
    );
    assert_eq!(
        get(r#"rapport_gateway_requests_total{route="unknown",code="NOT_FOUND"}"#),
        1.0
    );
    // Gauges: nothing in flight now, and the profiles backend's limit.
    assert_eq!(get("rapport_gateway_calls_in_flight"), 0.0);
    assert!(
        get(&format!(
            r#"rapport_gateway_backend_concurrency_limit{{service="{PROFILES}"}}"#
        )) >= 1.0
    );
    assert_eq!(
        get(&format!(
            r#"rapport_gateway_backend_calls_in_flight{{service="{PROFILES}"}}"#
        )),
        0.0
    );
}
