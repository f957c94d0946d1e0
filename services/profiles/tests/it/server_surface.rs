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

#[tokio::test]
async fn shutdown_reports_not_serving_first_and_keeps_serving_through_the_delay() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    // Longer than the test: whatever the test sees happens inside the delay.
    let mut h = start_with(|c| c.server.shutdown_delay_ms = 600_000).await;
    let created = h.create(customer("During", "during@example.com")).await;
    let mut statuses = HealthClient::new(h.channel.clone())
        .watch(HealthCheckRequest {
            service: rapport_profiles::SERVICE_NAME.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        statuses
            .message()
            .await
            .unwrap()
            .expect("watch ended")
            .status
    };
    assert_eq!(next().await, ServingStatus::Serving as i32);

    h.begin_shutdown();
    assert_eq!(next().await, ServingStatus::NotServing as i32);
    // A load balancer that has not noticed yet still reaches a server that
    // accepts connections and answers calls.
    let late = rapport_testkit::connect(h.addr)
        .await
        .expect("the listener still accepts during the shutdown delay");
    let got = pb::profiles_service_client::ProfilesServiceClient::new(late)
        .get_customer(tenant_request(
            TENANT,
            pb::GetCustomerRequest {
                name: created.name.clone(),
            },
        ))
        .await;
    assert!(got.is_ok(), "{:?}", got.err().map(|s| describe(&s)));
}
