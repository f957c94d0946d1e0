//! The server's own surface around the profiles API: the standard health
//! service, gRPC reflection, and graceful shutdown.

use crate::harness::*;
use tonic::Code;

#[tokio::test]
async fn health_reports_the_service_serving() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let h = start().await;
    let mut health = HealthClient::new(h.channel.clone());
    for service in [rapport_profiles::SERVICE_NAME, ""] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap_or_else(|s| panic!("health of {service:?}: {}", describe(&s)))
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let err = expect_err(
        health
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await,
    );
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_the_service() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let h = start().await;
    let mut reflection = ServerReflectionClient::new(h.channel.clone());
    let requests = futures::stream::iter([
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                rapport_profiles::SERVICE_NAME.to_owned(),
            )),
        },
    ]);
    let mut responses = reflection
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();

    let first = responses.message().await.unwrap().expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected reflection response {first:?}");
    };
    let services: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        services.iter().any(|s| s == rapport_profiles::SERVICE_NAME),
        "{services:?}"
    );
    assert!(
        services.iter().any(|s| s == "grpc.health.v1.Health"),
        "{services:?}"
    );

    let second = responses.message().await.unwrap().expect("a response");
    let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
        panic!("unexpected reflection response {second:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn shutdown_drains_and_then_refuses_new_calls() {
    let mut h = start().await;
    let created = h.create(customer("Before", "before@example.com")).await;
    let addr = h.addr;

    h.shutdown().await;

    assert!(
        rapport_testkit::connect(addr).await.is_err(),
        "the port still accepts connections after shutdown"
    );
    let result = h.try_get_in(TENANT, &created.name).await;
    assert!(
        result.is_err(),
        "a call succeeded after shutdown: {result:?}"
    );
}
