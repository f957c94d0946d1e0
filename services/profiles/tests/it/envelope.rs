//! The envelope's ordering and chain fields: `sequence` (per subject,
//! strictly increasing in commit order: the subject's version × 16 + the
//! event's rank among the change's events about it), `causation_id` (empty:
//! every change here is a request's) and `correlation_id` (the request's
//! trace id when it is traced, else the event's own id).
use rapport_proto::profiles::{MergeCustomersRequest, UpdateCustomerRequest};

use crate::harness::*;

/// A request of [`TENANT`] carrying a W3C `traceparent` header.
fn traced<T: prost::Name>(msg: T, traceparent: &str) -> tonic::Request<T> {
    let mut req = tenant_request(TENANT, msg);
    req.metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    req
}

fn short_type(e: &EventEnvelope) -> &str {
    e.r#type.rsplit('.').next().unwrap_or_default()
}

/// `(type, sequence)` of each event, oldest first.
fn sequences(events: &[EventEnvelope]) -> Vec<(&str, u64)> {
    events.iter().map(|e| (short_type(e), e.sequence)).collect()
}

/// What a consumer does with `sequence`: applies an event only when it is
/// newer than the last one it applied for the subject.
fn strictly_increasing(events: &[EventEnvelope]) -> bool {
    events.windows(2).all(|w| w[0].sequence < w[1].sequence)
        && events.iter().all(|e| e.sequence > 0)
}

/// A survivor and a customer to merge into it: the second is further along
/// its lifecycle and has an email of its own, so the merge changes the
/// survivor's stage and profile (StageChanged, Merged and Updated, all about
/// the survivor, in one change).
async fn merge_pair(h: &Harness, tag: &str) -> (pb::Customer, pb::Customer) {
    let survivor = h
        .create(customer("Ada Lovelace", &format!("ada-{tag}@example.com")))
        .await;
    let merged = h
        .create(customer("Ada L.", &format!("ada.l-{tag}@example.com")))
        .await;
    h.change_stage(stage_change(
        &merged.name,
        pb::LifecycleStage::Retention,
        "repeat buyer",
    ))
    .await
    .expect("change stage");
    (survivor, merged)
}

#[tokio::test]
async fn sequences_strictly_increase_per_subject_in_commit_order() {
    let h = start().await;
    let backend = h.testdb.backend_name();
    let (survivor, merged) = merge_pair(&h, "seq").await;

    let mut changed = survivor.clone();
    changed.display_name = "Augusta Ada King".into();
    let changed = h
        .update(changed, &["display_name"])
        .await
        .expect("update 1");
    let mut again = changed.clone();
    again.given_name = "Augusta".into();
    let again = h.update(again, &["given_name"]).await.expect("update 2");
    assert_eq!(again.etag, "\"3\"");
    h.merge(&survivor.name, &merged.name, "")
        .await
        .expect("merge");
    h.erase(&survivor.name, "").await.expect("erase");

    let events = h.events(&survivor.name).await;
    // Version 1 (create) … 5 (erase), × 16; the merge (version 4) numbers
    // its three events about the survivor 64, 65, 66, the erasure its two
    // 80, 81.
    assert_eq!(
        sequences(&events),
        [
            ("CustomerCreated", 16),
            ("CustomerUpdated", 32),
            ("CustomerUpdated", 48),
            ("LifecycleStageChanged", 64),
            ("CustomersMerged", 65),
            ("CustomerUpdated", 66),
            ("CustomerErased", 80),
            // Nobody else holds customer data here: the erasure completes
            // in the same change.
            ("ErasureCompleted", 81),
        ],
        "{backend}"
    );
    assert!(strictly_increasing(&events), "{backend}: {events:?}");

    // The merged customer's own events: its create and its stage change. The
    // merge wrote its tombstone (version 3) but no event is about it.
    let merged_events = h.events(&merged.name).await;
    assert_eq!(
        sequences(&merged_events),
        [("CustomerCreated", 16), ("LifecycleStageChanged", 32)],
        "{backend}"
    );

    // A consumer that has applied the latest event drops a redelivery of any
    // earlier one.
    let last = events.last().unwrap().sequence;
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|e| e.sequence <= last)
    );
}

#[tokio::test]
async fn consent_and_stage_changes_are_sequenced_by_the_version_too() {
    let h = start().await;
    let backend = h.testdb.backend_name();
    let c = h
        .create(customer("Grace Hopper", "grace-seq@navy.example"))
        .await;
    h.set_consent(consent(
        &c.name,
        Channel::Email,
        pb::ConsentPurpose::Marketing,
        pb::ConsentStatus::Granted,
        None,
    ))
    .await
    .expect("consent");
    h.change_stage(stage_change(
        &c.name,
        pb::LifecycleStage::Consideration,
        "asked for a quote",
    ))
    .await
    .expect("stage");
    let events = h.events(&c.name).await;
    assert_eq!(
        sequences(&events),
        [
            ("CustomerCreated", 16),
            ("ConsentChanged", 32),
            ("LifecycleStageChanged", 48),
        ],
        "{backend}"
    );
}

#[tokio::test]
async fn a_traced_request_correlates_its_events_by_its_trace_id() {
    rapport_testkit::trace::capture();
    let h = start().await;
    let backend = h.testdb.backend_name();
    let mut client = h.client();
    let (survivor, merged) = merge_pair(&h, "traced").await;

    // An update (one event) and a merge (three events about the survivor,
    // none about the tombstone), each a traced request of its own.
    let (update_parent, update_trace) = rapport_testkit::trace::remote_parent();
    let mut changed = survivor.clone();
    changed.display_name = "Countess of Lovelace".into();
    client
        .update_customer(traced(
            UpdateCustomerRequest {
                customer: Some(changed),
                update_mask: Some(mask(&["display_name"])),
                request_id: String::new(),
            },
            &update_parent,
        ))
        .await
        .expect("update");
    let (merge_parent, merge_trace) = rapport_testkit::trace::remote_parent();
    client
        .merge_customers(traced(
            MergeCustomersRequest {
                survivor: survivor.name.clone(),
                merged: merged.name.clone(),
                request_id: String::new(),
            },
            &merge_parent,
        ))
        .await
        .expect("merge");

    let events = h.events(&survivor.name).await;
    let expected: Vec<(&str, &str)> = vec![
        ("CustomerUpdated", &update_trace),
        ("LifecycleStageChanged", &merge_trace),
        ("CustomersMerged", &merge_trace),
        ("CustomerUpdated", &merge_trace),
    ];
    let traced_events: Vec<(&str, &str)> = events[1..]
        .iter()
        .map(|e| (short_type(e), e.correlation_id.as_str()))
        .collect();
    assert_eq!(traced_events, expected, "{backend}");
    for e in &events {
        assert_eq!(e.causation_id, "", "{backend}: a request caused {e:?}");
        // Whether traced by the client or not, the correlation id is the
        // trace the event continues (the service traces every request while
        // a tracer is installed), or the event's own id without one.
        assert_eq!(e.correlation_id, trace_id_or_own(e), "{backend}");
    }
}

#[tokio::test]
async fn an_untraced_request_correlates_each_event_by_its_own_id() {
    // No tracer on this test's thread, which runs the service too (a
    // current-thread runtime): even once another test has installed the
    // process-wide one, the service traces nothing here.
    let _untraced = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    let h = start().await;
    let backend = h.testdb.backend_name();
    let (survivor, merged) = merge_pair(&h, "untraced").await;
    h.merge(&survivor.name, &merged.name, "")
        .await
        .expect("merge");

    let mut events = h.events(&survivor.name).await;
    events.extend(h.events(&merged.name).await);
    assert_eq!(events.len(), 6, "{backend}: {events:?}");
    for e in &events {
        assert_eq!(e.traceparent, "", "{backend}: the request was traced");
        assert_eq!(e.correlation_id, e.id, "{backend}: {e:?}");
        assert_eq!(e.causation_id, "", "{backend}: {e:?}");
    }
}

/// The trace id of `e`'s `traceparent`, else `e`'s id.
fn trace_id_or_own(e: &EventEnvelope) -> String {
    match e.traceparent.split('-').nth(1) {
        Some(trace_id) => trace_id.to_owned(),
        None => e.id.clone(),
    }
}
