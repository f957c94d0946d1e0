//! Profiles publishes its events: a change commits its outbox rows, the
//! relay publishes them to the bus, and a durable consumer of
//! `rapport.profiles.>` receives them in order, with ids only.
use std::time::Duration;

use prost::Message as _;
use rapport_events::{ConsumerOptions, subjects_of};
use rapport_proto::profiles::{CreateCustomerRequest, EraseCustomerRequest};

use crate::harness::{TENANT, customer, start};

#[tokio::test]
async fn changes_reach_the_bus_in_order_and_carry_no_personal_data() {
    let h = start().await;
    let mut client = h.client.clone();
    let created = client
        .create_customer(rapport_testkit::tenant_request(
            TENANT,
            CreateCustomerRequest {
                customer: Some(customer("Ada Lovelace", "ada@example.com")),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .customer
        .unwrap();
    client
        .erase_customer(rapport_testkit::tenant_request(
            TENANT,
            EraseCustomerRequest {
                name: created.name.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .expect("erase");

    let mut consumer = h
        .bus
        .consumer(
            "test-reader",
            rapport_profiles::EVENTS_NAME,
            &subjects_of(rapport_profiles::EVENTS_NAME),
            &ConsumerOptions::default(),
        )
        .await
        .unwrap();
    let mut received = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("the relay published within 10 s")
            .unwrap();
        received.push((d.subject.clone(), d.envelope.clone()));
        d.ack().await.unwrap();
    }
    let subjects: Vec<_> = received.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "rapport.profiles.CustomerCreated",
            "rapport.profiles.CustomerErased"
        ]
    );
    for (_, e) in &received {
        assert_eq!(
            (e.tenant.as_str(), e.subject.as_str()),
            (TENANT, created.name.as_str())
        );
        let bytes = e.encode_to_vec();
        for personal in ["ada@example.com", "Lovelace"] {
            assert!(
                !bytes
                    .windows(personal.len())
                    .any(|w| w == personal.as_bytes()),
                "{personal} on the bus"
            );
        }
    }
}
