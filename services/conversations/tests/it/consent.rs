//! Consent withdrawn in profiles reaching conversations through the bus: a
//! proactive message waiting for the customer's quiet hours to end is
//! cancelled at once (the delivery worker asks the contact policy again)
//! instead of sent later — real profiles, real conversations, on SQLite
//! and PostgreSQL.
use std::time::Duration;

use rapport_proto::profiles as ppb;

use crate::harness::*;
use crate::messages::{GRACE, delivery_due, marketing, send};

#[tokio::test]
async fn withdrawn_consent_cancels_a_message_waiting_for_quiet_hours() {
    let h = start().await;
    let (inbound, proactive) = proactive(&h).await;
    set_consent(&h, &inbound.customer, ppb::ConsentStatus::Granted).await;
    quiet_for_two_more_hours(&h, &inbound.customer).await;
    let waiting = send(&h, TENANT, GRACE, marketing(&proactive.name, "20% off"))
        .await
        .unwrap();
    let delivery = waiting.delivery.clone().unwrap();
    assert_eq!(delivery.state, pb::DeliveryState::Scheduled as i32);
    assert!(delivery.scheduled_time.is_some(), "deferred");

    set_consent(&h, &inbound.customer, ppb::ConsentStatus::Revoked).await;
    let cancelled = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let m = h
                .client()
                .get_message(tenant_request(
                    TENANT,
                    pb::GetMessageRequest {
                        name: waiting.name.clone(),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .message
                .unwrap();
            let d = m.delivery.unwrap();
            if d.state != pb::DeliveryState::Scheduled as i32 {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the withdrawal reached the waiting message");
    assert_eq!(cancelled.state, pb::DeliveryState::Cancelled as i32);
    assert_eq!(
        cancelled.failure_reason,
        "CONTACT_NOT_PERMITTED: NO_CONSENT"
    );
    assert_eq!(
        delivery_due(&h, &waiting).await,
        None,
        "nothing left to send"
    );
    assert!(h.smtp.received().is_empty(), "never sent");
    let events = outbox_events(&h.db, TENANT, &waiting.name).await;
    let change: pb::MessageDeliveryChanged = payload(
        events
            .iter()
            .find(|e| e.r#type == "rapport.conversations.v1.MessageDeliveryChanged")
            .expect("a MessageDeliveryChanged"),
    );
    assert_eq!(change.to, pb::DeliveryState::Cancelled as i32);
    let parked = rapport_events::consume::dead_letters_page(&h.db, None, 10)
        .await
        .unwrap();
    assert!(parked.is_empty(), "parked: {parked:?}");
}
