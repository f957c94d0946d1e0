//! A merge in profiles reaching conversations through the bus: the
//! merged-away customer's conversations, messages and threads move to the
//! survivor — real profiles, real conversations, on SQLite and PostgreSQL.
use std::time::Duration;

use rapport_proto::profiles as profiles_pb;

use crate::harness::*;

async fn history(h: &Harness, customer: &str) -> Vec<pb::Message> {
    h.client()
        .list_customer_history(tenant_request(
            TENANT,
            pb::ListCustomerHistoryRequest {
                customer: customer.into(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .messages
}

#[tokio::test]
async fn a_merge_in_profiles_moves_the_merged_customers_conversations_to_the_survivor() {
    let h = start().await;
    let support = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let sales = h
        .create_inbox(email_inbox("sales@acme.example", 3600))
        .await;
    let ada = h
        .receive(
            &support.name,
            "ada@example.com",
            email("Order 1?", "<a1@x>"),
        )
        .await
        .conversation
        .unwrap();
    // The same person, known by another address: two more conversations.
    let work_support = h
        .receive(
            &support.name,
            "ada@work.example",
            email("Order 2?", "<w1@x>"),
        )
        .await
        .conversation
        .unwrap();
    let work_sales = h
        .receive(&sales.name, "ada@work.example", email("A quote?", "<w2@x>"))
        .await
        .conversation
        .unwrap();
    // Someone else's stays theirs.
    let bob = h
        .receive(&support.name, "bob@example.com", email("Hi", "<b1@x>"))
        .await
        .conversation
        .unwrap();
    let (survivor, merged) = (ada.customer.clone(), work_support.customer.clone());
    assert_ne!(survivor, merged);

    h.profiles
        .clone()
        .merge_customers(tenant_request(
            TENANT,
            profiles_pb::MergeCustomersRequest {
                survivor: survivor.clone(),
                merged: merged.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("MergeCustomers: {}", describe(&s)));

    let moved = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let theirs = h
                .conversations(pb::ListConversationsRequest {
                    customer: survivor.clone(),
                    ..Default::default()
                })
                .await;
            if theirs.len() == 3 {
                return theirs;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the merge reached conversations");
    let mut names: Vec<_> = moved.iter().map(|c| c.name.clone()).collect();
    names.sort();
    let mut expected = vec![
        ada.name.clone(),
        work_support.name.clone(),
        work_sales.name.clone(),
    ];
    expected.sort();
    assert_eq!(names, expected);
    assert!(
        h.conversations(pb::ListConversationsRequest {
            customer: merged.clone(),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    let moved_one = h.conversation(&work_sales.name).await;
    assert_eq!(moved_one.customer, survivor);
    assert_ne!(
        moved_one.etag, work_sales.etag,
        "a changed conversation has a new etag"
    );
    assert_eq!(h.conversation(&bob.name).await.customer, bob.customer);
    // One history: every message.
    let all = history(&h, &survivor).await;
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(history(&h, &merged).await.is_empty());

    // Threads moved: the merged address (now the survivor's) writes again
    // to sales and joins the moved conversation; to support, where the
    // survivor had their own thread, it joins the survivor's.
    let again = h
        .receive(&sales.name, "ada@work.example", email("And?", "<w3@x>"))
        .await;
    assert_eq!(again.conversation.unwrap().name, work_sales.name);
    let again = h
        .receive(&support.name, "ada@work.example", email("Still?", "<w4@x>"))
        .await;
    assert_eq!(again.conversation.unwrap().name, ada.name);
    let parked = rapport_events::consume::dead_letters_page(&h.db, None, 10)
        .await
        .unwrap();
    assert!(parked.is_empty(), "parked: {parked:?}");
}
