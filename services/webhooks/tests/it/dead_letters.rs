//! The dead-letter admin RPCs (the events library's `DeadLetterAdmin`, as
//! the webhooks service serves it): a tenant admin lists and replays only
//! its own tenant's parked events, a replay applies once, and one that fails
//! again stays parked with its new error.
use rapport_events::consume;
use rapport_webhooks::CONSUMER;
use tonic::Code;

use crate::harness::*;

async fn park(h: &Harness, event: &rapport_proto::types::EventEnvelope, why: &str) {
    consume::park(&h.db, CONSUMER, &event.id, Some(event), why, 5)
        .await
        .expect("parking an event");
}

async fn list(
    h: &Harness,
    tenant: &str,
    parent: &str,
    page_size: i32,
    page_token: &str,
) -> Result<pb::ListDeadLettersResponse, tonic::Status> {
    let request = pb::ListDeadLettersRequest {
        parent: parent.into(),
        page_size,
        page_token: page_token.into(),
    };
    h.client()
        .list_dead_letters(tenant_request(tenant, request))
        .await
        .map(tonic::Response::into_inner)
}

async fn replay(h: &Harness, tenant: &str, name: &str) -> Result<bool, tonic::Status> {
    let request = pb::ReplayDeadLetterRequest { name: name.into() };
    h.client()
        .replay_dead_letter(tenant_request(tenant, request))
        .await
        .map(|r| r.into_inner().applied_now)
}

fn name_of(event_id: &str) -> String {
    format!("consumers/{CONSUMER}/deadLetters/{event_id}")
}

#[tokio::test]
async fn a_tenant_lists_and_replays_only_its_own_dead_letters() {
    let h = start().await;
    let mut receiver = Receiver::answering(200).await;
    h.subscribe(TENANT, &receiver.url, &["*"]).await;
    let (first, second, theirs) = (
        customer_created(TENANT),
        customer_created(TENANT),
        customer_created(OTHER_TENANT),
    );
    park(&h, &first, "the deliveries table was locked").await;
    park(&h, &theirs, "the deliveries table was locked").await;
    park(&h, &second, "the deliveries table was locked").await;

    // Pages of one, oldest first, only this tenant's.
    let page = list(&h, TENANT, "consumers/-", 1, "").await.unwrap();
    assert_eq!(page.dead_letters.len(), 1);
    let one = &page.dead_letters[0];
    assert_eq!(one.name, name_of(&first.id));
    assert_eq!(one.event_type, first.r#type);
    assert_eq!(one.error, "the deliveries table was locked");
    assert_eq!(one.attempts, 5);
    assert!(!page.next_page_token.is_empty());
    let page2 = list(&h, TENANT, "consumers/-", 1, &page.next_page_token)
        .await
        .unwrap();
    assert_eq!(page2.dead_letters.len(), 1);
    assert_eq!(page2.dead_letters[0].event_id, second.id);
    assert!(page2.next_page_token.is_empty(), "two of this tenant's");
    let by_consumer = list(&h, TENANT, &format!("consumers/{CONSUMER}"), 0, "")
        .await
        .unwrap();
    assert_eq!(by_consumer.dead_letters.len(), 2);
    // A token is good only for the list it was made for.
    let status = expect_err(
        list(
            &h,
            TENANT,
            &format!("consumers/{CONSUMER}"),
            1,
            &page.next_page_token,
        )
        .await,
    );
    assert_error(&status, Code::InvalidArgument, "INVALID_PAGE_TOKEN");

    // Another tenant's dead letter does not exist for this one.
    let status = expect_err(replay(&h, TENANT, &name_of(&theirs.id)).await);
    assert_error(&status, Code::NotFound, "DEAD_LETTER_NOT_FOUND");

    // Replayed, it is applied (a delivery made) and leaves the list.
    assert!(replay(&h, TENANT, &name_of(&first.id)).await.unwrap());
    assert_eq!(receiver.next().await.header("webhook-id"), first.id);
    let left = list(&h, TENANT, "consumers/-", 0, "").await.unwrap();
    let ids: Vec<_> = left.dead_letters.iter().map(|d| &d.event_id).collect();
    assert_eq!(ids, [&second.id]);
    // Again: it is gone, and nothing is delivered twice.
    let status = expect_err(replay(&h, TENANT, &name_of(&first.id)).await);
    assert_error(&status, Code::NotFound, "DEAD_LETTER_NOT_FOUND");
    // The other tenant still has its own.
    let theirs_left = list(&h, OTHER_TENANT, "consumers/-", 0, "").await.unwrap();
    assert_eq!(theirs_left.dead_letters.len(), 1);
    assert!(receiver.received_so_far().is_empty(), "delivered twice");
}

#[tokio::test]
async fn a_replay_that_fails_again_stays_parked_with_its_new_error() {
    let h = start().await;
    // A subscriber, so that the event must be rendered (and cannot be).
    let receiver = Receiver::answering(200).await;
    h.subscribe(TENANT, &receiver.url, &["*"]).await;
    let mut unknown = customer_created(TENANT);
    unknown.r#type = "rapport.profiles.v1.NotYetKnown".into();
    unknown.payload.as_mut().unwrap().type_url =
        "type.googleapis.com/rapport.profiles.v1.NotYetKnown".into();
    park(&h, &unknown, "first failure").await;
    let status = expect_err(replay(&h, TENANT, &name_of(&unknown.id)).await);
    assert_error(&status, Code::FailedPrecondition, "EVENT_REJECTED");
    let left = list(&h, TENANT, "consumers/-", 0, "").await.unwrap();
    assert_eq!(left.dead_letters.len(), 1);
    assert_eq!(left.dead_letters[0].attempts, 6);
    assert!(
        left.dead_letters[0].error.contains("unknown event type"),
        "{}",
        left.dead_letters[0].error
    );
}

#[tokio::test]
async fn dead_letter_names_and_pages_are_checked() {
    let h = start().await;
    for parent in ["", "consumers/nope", "consumers", "webhookSubscriptions/-"] {
        let status = expect_err(list(&h, TENANT, parent, 0, "").await);
        assert_violation(&status, "parent");
    }
    let status = expect_err(list(&h, TENANT, "consumers/-", -1, "").await);
    assert_violation(&status, "page_size");
    for name in [
        "",
        "consumers/webhooks/deadLetters/",
        "consumers//deadLetters/x",
        "consumers/nope/deadLetters/x",
        "consumers/webhooks/deadLetters/a/b",
    ] {
        let status = expect_err(replay(&h, TENANT, name).await);
        assert_violation(&status, "name");
    }
    let status =
        expect_err(replay(&h, TENANT, &name_of("0192e0c0-0000-7000-8000-000000000001")).await);
    assert_error(&status, Code::NotFound, "DEAD_LETTER_NOT_FOUND");
}
