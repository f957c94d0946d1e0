//! The history seed of `rapport bench`: what it writes is what the API
//! reads — resolved conversations of the customer, their messages newest
//! first, and pages starting at the seed's cursors.
use rapport_conversations::seed::{HistoryPlan, history_page_token, seed_history};
use rapport_testkit::TEST_SECRET;

use crate::harness::*;

#[tokio::test]
async fn a_seeded_history_reads_through_the_api_from_any_cursor() {
    let h = start().await;
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    let inbox_id: uuid::Uuid = inbox.name.trim_start_matches("inboxes/").parse().unwrap();
    let customer = uuid::Uuid::now_v7();
    let plan = HistoryPlan {
        tenant: TENANT.to_owned(),
        inbox: inbox_id,
        customer,
        messages: 250,
        per_conversation: 100,
        cursors: 10,
        page: 20,
    };
    let seeded = seed_history(&h.db, &plan).await.unwrap();
    assert_eq!((seeded.messages, seeded.conversations), (250, 3));
    assert!(!seeded.cursors.is_empty() && seeded.cursors.len() <= 10);

    let page = |token: String| {
        let mut client = h.client();
        async move {
            client
                .list_customer_history(tenant_request(
                    TENANT,
                    pb::ListCustomerHistoryRequest {
                        customer: format!("customers/{customer}"),
                        page_size: 20,
                        page_token: token,
                    },
                ))
                .await
                .unwrap_or_else(|s| panic!("ListCustomerHistory: {}", describe(&s)))
                .into_inner()
        }
    };
    let first = page(String::new()).await;
    assert_eq!(first.messages.len(), 20);
    let id = |m: &pb::Message| m.name.rsplit('/').next().unwrap().to_owned();
    assert!(
        first.messages.windows(2).all(|w| id(&w[0]) > id(&w[1])),
        "newest first"
    );
    let conversations: std::collections::BTreeSet<_> = first
        .messages
        .iter()
        .map(|m| m.name.split("/messages/").next().unwrap().to_owned())
        .collect();
    for name in conversations {
        let c = h
            .client()
            .get_conversation(tenant_request(TENANT, pb::GetConversationRequest { name }))
            .await
            .unwrap()
            .into_inner()
            .conversation
            .unwrap();
        assert_eq!(c.customer, format!("customers/{customer}"));
        assert_eq!(c.state, pb::ConversationState::Resolved as i32);
        assert!(c.case_number > 0);
    }

    for cursor in &seeded.cursors {
        let token = history_page_token(TEST_SECRET, TENANT, customer, *cursor).unwrap();
        let after = page(token).await;
        assert_eq!(after.messages.len(), 20, "a full page before every cursor");
        assert!(
            after.messages.iter().all(|m| id(m) < cursor.to_string()),
            "the page starts before its cursor"
        );
    }
    // Another customer's scope does not open the token.
    let foreign =
        history_page_token(TEST_SECRET, TENANT, uuid::Uuid::now_v7(), seeded.cursors[0]).unwrap();
    let refused = h
        .client()
        .list_customer_history(tenant_request(
            TENANT,
            pb::ListCustomerHistoryRequest {
                customer: format!("customers/{customer}"),
                page_size: 20,
                page_token: foreign,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}
