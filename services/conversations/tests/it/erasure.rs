//! Erasure reaching conversations: profiles erases a customer, its
//! `CustomerErased` reaches conversations through the bus, conversations
//! removes what the customer wrote and confirms with `CustomerDataErased`,
//! and profiles' receipt completes — the whole loop, real services, real
//! relays, on SQLite and PostgreSQL.
use std::time::Duration;

use rapport_proto::profiles as profiles_pb;
use sea_orm::{ConnectionTrait as _, Statement};

use crate::harness::*;

const SECRET: &str = "Flat 3, 12 Secret Street";

async fn receipt(h: &Harness, name: &str) -> profiles_pb::ErasureReceipt {
    h.profiles
        .clone()
        .get_erasure_receipt(tenant_request(
            TENANT,
            profiles_pb::GetErasureReceiptRequest { name: name.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .erasure_receipt
        .unwrap()
}

/// Every stored document of the conversations database that holds `needle`.
async fn documents_holding(h: &Harness, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["conv_messages", "conversations"] {
        let rows =
            h.db.reader
                .query_all_raw(Statement::from_string(
                    h.db.backend(),
                    format!("SELECT id, document FROM {table}"),
                ))
                .await
                .unwrap();
        for row in rows {
            let doc: String = row.try_get_by_index(1).unwrap();
            if doc.contains(needle) {
                found.push(format!(
                    "{table}/{}",
                    row.try_get_by_index::<String>(0).unwrap()
                ));
            }
        }
    }
    found
}

#[tokio::test]
async fn an_erasure_in_profiles_erases_the_conversations_and_completes_its_receipt() {
    let h = start().await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let received = h
        .receive(
            &inbox.name,
            "ada@example.com",
            pb::Message {
                subject: format!("Delivery to {SECRET}"),
                attachments: vec![pb::Attachment {
                    file_name: "passport-ada.pdf".into(),
                    content_type: "application/pdf".into(),
                    size_bytes: 1000,
                    uri: "https://files.example/passport-ada.pdf".into(),
                }],
                ..email(&format!("Please send it to {SECRET}"), "<m1@x>")
            },
        )
        .await;
    // Another customer's conversation stays as it is.
    let other = h
        .receive(
            &inbox.name,
            "bob@example.com",
            email(&format!("Bob at {SECRET}"), "<b1@x>"),
        )
        .await;
    let conversation = received.conversation.unwrap();
    assert!(!documents_holding(&h, "passport-ada").await.is_empty());

    let erased = h
        .profiles
        .clone()
        .erase_customer(tenant_request(
            TENANT,
            profiles_pb::EraseCustomerRequest {
                name: conversation.customer.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .erasure_receipt
        .unwrap();
    assert_eq!(erased.pending_services, ["conversations"]);
    assert_eq!(erased.complete_time, None);

    let complete = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let r = receipt(&h, &erased.name).await;
            if r.complete_time.is_some() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let parked = rapport_events::consume::dead_letters_page(&h.db, None, 10)
        .await
        .unwrap();
    assert!(parked.is_empty(), "parked in conversations: {parked:?}");
    let parked = rapport_events::consume::dead_letters_page(&h.profiles_db, None, 10)
        .await
        .unwrap();
    assert!(parked.is_empty(), "parked in profiles: {parked:?}");
    let complete = complete.expect("conversations confirmed the erasure through the bus");
    let services: Vec<&str> = complete
        .confirmations
        .iter()
        .map(|c| c.service.as_str())
        .collect();
    assert_eq!(services, ["profiles", "conversations"]);

    // What the customer wrote is gone; the facts stay.
    let after = h.conversation(&conversation.name).await;
    assert_eq!(after.subject, "");
    assert_eq!(after.case_number, conversation.case_number);
    assert_eq!(after.customer, conversation.customer);
    let messages = h
        .client()
        .list_messages(tenant_request(
            TENANT,
            pb::ListMessagesRequest {
                parent: conversation.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        (messages[0].text.as_str(), messages[0].attachments.len()),
        ("", 0)
    );
    assert_eq!(
        documents_holding(&h, SECRET).await,
        [format!(
            "conv_messages/{}",
            other.message.unwrap().name.rsplit('/').next().unwrap()
        )],
        "only Bob's own message still holds the text"
    );
    assert!(documents_holding(&h, "passport-ada").await.is_empty());

    // The confirmation went out from conversations' outbox, ids only.
    let confirmations: Vec<_> = outbox_events(&h.db, TENANT, &conversation.customer)
        .await
        .into_iter()
        .filter(|e| e.r#type == "rapport.type.v1.CustomerDataErased")
        .collect();
    assert_eq!(confirmations.len(), 1);
    let c: rapport_proto::types::CustomerDataErased = payload(&confirmations[0]);
    assert_eq!(
        (
            c.customer.as_str(),
            c.erasure_receipt.as_str(),
            c.service.as_str()
        ),
        (
            conversation.customer.as_str(),
            erased.name.as_str(),
            "conversations"
        )
    );
}
