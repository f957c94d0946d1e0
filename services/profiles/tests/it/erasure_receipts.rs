//! Erasure that reaches every service: the receipt awaits one
//! `CustomerDataErased` per service holding customer data, arriving through
//! the bus; it completes with the last (raising `ErasureCompleted`), stays
//! incomplete otherwise, and is reported once overdue.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use rapport_proto::types::CustomerDataErased;
use rapport_testkit::TestDb;
use rapport_usecase::ManualClock;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::*;

const PATIENCE: Duration = Duration::from_secs(20);

/// Profiles configured to await `services`.
async fn awaiting(services: &[&str], clock: Arc<dyn rapport_usecase::Clock>) -> Harness {
    let services: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    start_on(
        TestDb::fresh().await.unwrap(),
        move |c| {
            c.erasure.services = Some(services);
            c.erasure.overdue_after_hours = 48;
            c.timer_poll_ms = 5;
            c.server.metrics_listen = Some(([127, 0, 0, 1], 0).into());
        },
        clock,
    )
    .await
}

async fn receipt_in(
    h: &Harness,
    tenant: &str,
    name: &str,
) -> Result<pb::ErasureReceipt, tonic::Status> {
    h.client()
        .get_erasure_receipt(tenant_request(
            tenant,
            pb::GetErasureReceiptRequest {
                name: name.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner().erasure_receipt.expect("a receipt"))
}

/// `service`'s confirmation of `receipt`, as its outbox relay publishes it.
fn confirmation(tenant: &str, receipt: &pb::ErasureReceipt, service: &str) -> EventEnvelope {
    let message = CustomerDataErased {
        customer: receipt.customer.clone(),
        erasure_receipt: receipt.name.clone(),
        service: service.to_owned(),
    };
    EventEnvelope {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: <CustomerDataErased as prost::Name>::full_name(),
        tenant: tenant.to_owned(),
        subject: receipt.customer.clone(),
        occur_time: Some(rapport_kit::convert::ts(Utc::now())),
        payload: Some(prost_types::Any {
            type_url: <CustomerDataErased as prost::Name>::type_url(),
            value: prost::Message::encode_to_vec(&message),
        }),
        ..Default::default()
    }
}

/// Waits until the receipt satisfies `done`.
async fn wait_until(
    h: &Harness,
    name: &str,
    done: impl Fn(&pb::ErasureReceipt) -> bool,
) -> pb::ErasureReceipt {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let r = receipt_in(h, TENANT, name).await.unwrap();
            if done(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the receipt changed within the test's patience")
}

fn confirmed(r: &pb::ErasureReceipt) -> Vec<&str> {
    r.confirmations.iter().map(|c| c.service.as_str()).collect()
}

async fn completions(h: &Harness, customer: &str) -> usize {
    rapport_testkit::store::outbox_events(&h.db, TENANT, customer)
        .await
        .iter()
        .filter(|e| e.r#type == "rapport.profiles.v1.ErasureCompleted")
        .count()
}

#[tokio::test]
async fn with_no_other_service_holding_data_the_receipt_is_complete_at_once() {
    let h = awaiting(&[], Arc::new(rapport_usecase::SystemClock)).await;
    let c = h.create(customer("Ada", "ada@example.com")).await;
    let receipt = h.erase(&c.name, "").await.unwrap();
    assert_eq!(confirmed(&receipt), ["profiles"]);
    assert!(receipt.pending_services.is_empty());
    assert!(receipt.complete_time.is_some());
    assert_eq!(
        receipt_in(&h, TENANT, &receipt.name).await.unwrap(),
        receipt
    );
    assert_eq!(completions(&h, &c.name).await, 1);
}

#[tokio::test]
async fn the_receipt_completes_when_every_service_has_confirmed_through_the_bus() {
    let h = awaiting(
        &["conversations", "loyalty"],
        Arc::new(rapport_usecase::SystemClock),
    )
    .await;
    let c = h.create(customer("Ada", "ada@example.com")).await;
    let receipt = h.erase(&c.name, "").await.unwrap();
    assert_eq!(confirmed(&receipt), ["profiles"]);
    assert_eq!(receipt.pending_services, ["conversations", "loyalty"]);
    assert_eq!(receipt.complete_time, None);

    // Conversations confirms, twice (the bus delivers at least once, and a
    // service may confirm again): one confirmation.
    h.bus
        .publish(
            "conversations",
            &[confirmation(TENANT, &receipt, "conversations")],
        )
        .await
        .unwrap();
    h.bus
        .publish(
            "conversations",
            &[confirmation(TENANT, &receipt, "conversations")],
        )
        .await
        .unwrap();
    let partial = wait_until(&h, &receipt.name, |r| r.confirmations.len() == 2).await;
    assert_eq!(confirmed(&partial), ["profiles", "conversations"]);
    assert_eq!(partial.pending_services, ["loyalty"]);
    assert_eq!(
        partial.complete_time, None,
        "incomplete while loyalty has not confirmed"
    );
    assert_eq!(completions(&h, &c.name).await, 0);

    // A confirmation published by a service the receipt does not await, or
    // for another tenant's receipt, changes nothing.
    h.bus
        .publish("billing", &[confirmation(TENANT, &receipt, "billing")])
        .await
        .unwrap();
    h.bus
        .publish(
            "loyalty",
            &[confirmation(OTHER_TENANT, &receipt, "loyalty")],
        )
        .await
        .unwrap();

    h.bus
        .publish("loyalty", &[confirmation(TENANT, &receipt, "loyalty")])
        .await
        .unwrap();
    let complete = wait_until(&h, &receipt.name, |r| r.complete_time.is_some()).await;
    assert_eq!(
        confirmed(&complete),
        ["profiles", "conversations", "loyalty"]
    );
    assert!(complete.pending_services.is_empty());
    assert_eq!(completions(&h, &c.name).await, 1);
    let completed = rapport_testkit::store::outbox_events(&h.db, TENANT, &c.name)
        .await
        .into_iter()
        .find(|e| e.r#type == "rapport.profiles.v1.ErasureCompleted")
        .unwrap();
    let event: pb::ErasureCompleted = payload(&completed);
    assert_eq!(
        (event.customer, event.erasure_receipt),
        (c.name.clone(), receipt.name.clone())
    );
}

#[tokio::test]
async fn receipts_are_read_by_name_within_the_tenant() {
    let h = awaiting(&[], Arc::new(rapport_usecase::SystemClock)).await;
    let c = h.create(customer("Ada", "ada@example.com")).await;
    let receipt = h.erase(&c.name, "").await.unwrap();
    let other = receipt_in(&h, OTHER_TENANT, &receipt.name)
        .await
        .unwrap_err();
    assert_error(&other, tonic::Code::NotFound, "ERASURE_RECEIPT_NOT_FOUND");
    let unknown = receipt_in(
        &h,
        TENANT,
        &format!("erasureReceipts/{}", uuid::Uuid::nil()),
    )
    .await
    .unwrap_err();
    assert_error(&unknown, tonic::Code::NotFound, "ERASURE_RECEIPT_NOT_FOUND");
    for bad in ["", "customers/x", "erasureReceipts/not-a-uuid"] {
        let err = receipt_in(&h, TENANT, bad).await.unwrap_err();
        assert_violation(&err, "name");
    }
}

async fn overdue_gauge(h: &Harness) -> f64 {
    let addr = h.metrics.expect("a metrics listener");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
        .lines()
        .find_map(|l| l.strip_prefix("rapport_erasure_receipts_overdue "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the overdue gauge is exported")
}

#[tokio::test]
async fn an_erasure_incomplete_past_its_deadline_is_reported() {
    let start: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
    let clock = ManualClock::at(start);
    let h = awaiting(&["conversations"], Arc::new(clock.clone())).await;
    let late = h.create(customer("Ada", "ada@example.com")).await;
    let on_time = h.create(customer("Bob", "bob@example.com")).await;
    let late = h.erase(&late.name, "").await.unwrap();
    let on_time = h.erase(&on_time.name, "").await.unwrap();
    h.bus
        .publish(
            "conversations",
            &[confirmation(TENANT, &on_time, "conversations")],
        )
        .await
        .unwrap();
    wait_until(&h, &on_time.name, |r| r.complete_time.is_some()).await;
    assert_eq!(
        overdue_gauge(&h).await,
        0.0,
        "nothing overdue before the deadline"
    );
    // Past the 48 h: the one still waiting for conversations is overdue.
    clock.advance(chrono::Duration::hours(49));
    assert_eq!(overdue_gauge(&h).await, 1.0);
    // Its overdue timer fired (and logged): gone from the timers table.
    let key = format!(
        "erasure-overdue:{}",
        late.name.trim_start_matches("erasureReceipts/")
    );
    tokio::time::timeout(PATIENCE, async {
        while rapport_events::timers::get(&h.db.reader, TENANT, &key)
            .await
            .unwrap()
            .is_some()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the overdue check fired");
    assert_eq!(
        receipt_in(&h, TENANT, &late.name)
            .await
            .unwrap()
            .complete_time,
        None
    );
}
