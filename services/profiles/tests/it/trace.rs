//! Events continue the trace of the request that caused them: the outbox
//! envelope carries the request's trace context, so a consumer's span joins
//! the same trace. On SQLite the change is written by the group-commit
//! writer task, which has no request span; the envelope must be built before
//! the change is handed over.
use rapport_proto::profiles::{CreateCustomerRequest, UpdateCustomerRequest};

use crate::harness::{TENANT, customer, start};

fn traced<T: prost::Name>(msg: T, traceparent: &str) -> tonic::Request<T> {
    let mut req = rapport_testkit::tenant_request(TENANT, msg);
    req.metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    req
}

#[tokio::test]
async fn events_carry_the_trace_of_the_request_that_caused_them() {
    rapport_testkit::trace::capture();
    let h = start().await;
    let mut client = h.client.clone();

    let (parent, trace_id) = rapport_testkit::trace::remote_parent();
    let created = client
        .create_customer(traced(
            CreateCustomerRequest {
                customer: Some(customer("Grace Hopper", "grace@navy.example")),
                request_id: String::new(),
            },
            &parent,
        ))
        .await
        .expect("create")
        .into_inner()
        .customer
        .unwrap();

    // An update is written by another path than a create on PostgreSQL
    // (a transaction, not one statement): check both.
    let (update_parent, update_trace_id) = rapport_testkit::trace::remote_parent();
    let mut changed = created.clone();
    changed.display_name = "Rear Admiral Grace Hopper".into();
    client
        .update_customer(traced(
            UpdateCustomerRequest {
                customer: Some(changed),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                request_id: String::new(),
            },
            &update_parent,
        ))
        .await
        .expect("update");

    let events = h.events(&created.name).await;
    let by_type = |t: &str| {
        events
            .iter()
            .find(|e| e.r#type == t)
            .unwrap_or_else(|| panic!("no {t} among {events:?}"))
    };
    let created_event = by_type("rapport.profiles.v1.CustomerCreated");
    assert!(
        created_event.traceparent.contains(&trace_id),
        "CustomerCreated carries {:?}, not the request's trace {trace_id} ({})",
        created_event.traceparent,
        h.testdb.backend_name()
    );
    let updated_event = by_type("rapport.profiles.v1.CustomerUpdated");
    assert!(
        updated_event.traceparent.contains(&update_trace_id),
        "CustomerUpdated carries {:?}, not the request's trace {update_trace_id} ({})",
        updated_event.traceparent,
        h.testdb.backend_name()
    );
    // The event's own span id is the server's span, not the caller's.
    assert_ne!(created_event.traceparent, parent);
}
