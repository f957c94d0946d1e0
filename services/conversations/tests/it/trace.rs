//! The trace of a ReceiveMessage call continues through the call to
//! profiles: the conversation's events and the customer's (written by
//! profiles, called with the service's own assertion) carry the caller's
//! trace id.
use crate::harness::*;

#[tokio::test]
async fn the_request_trace_reaches_profiles_and_both_outboxes() {
    rapport_testkit::trace::capture();
    let h = start().await;
    let inbox = h.create_inbox(email_inbox("support@acme.example", 0)).await;
    let (parent, trace_id) = rapport_testkit::trace::remote_parent();
    let mut request = tenant_request(
        TENANT,
        receive_request(&inbox.name, "traced@example.com", email("hello", "<t@x>")),
    );
    request
        .metadata_mut()
        .insert("traceparent", parent.parse().unwrap());
    let received = h
        .client()
        .receive_message(request)
        .await
        .unwrap()
        .into_inner();
    let c = received.conversation.unwrap();
    let ours = outbox_events(&h.db, TENANT, &c.name).await;
    assert!(
        ours[0].traceparent.contains(&trace_id),
        "ConversationCreated carries {:?}, not {trace_id}",
        ours[0].traceparent
    );
    let theirs = outbox_events(&h.profiles_db, TENANT, &c.customer).await;
    let created = theirs
        .iter()
        .find(|e| e.r#type == "rapport.profiles.v1.CustomerCreated")
        .expect("profiles created the customer");
    assert!(
        created.traceparent.contains(&trace_id),
        "profiles' CustomerCreated carries {:?}, not the caller's trace {trace_id}",
        created.traceparent
    );
}
