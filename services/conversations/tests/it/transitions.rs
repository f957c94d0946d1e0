//! State changes through the one transition function: every one emits
//! ConversationStatusChanged; refused ones say the state; etags and retries.
use tonic::Code;

use crate::harness::*;

async fn open_conversation(h: &Harness) -> pb::Conversation {
    let inbox = h
        .create_inbox(email_inbox("support@acme.example", 3600))
        .await;
    h.receive(&inbox.name, "ada@example.com", email("help", "<1@x>"))
        .await
        .conversation
        .unwrap()
}

#[tokio::test]
async fn pending_snooze_resolve_reopen_close_each_emit_their_events() {
    let h = start().await;
    let c = open_conversation(&h).await;
    let name = c.name.clone();
    let pending = h
        .client()
        .mark_conversation_pending(tenant_request(
            TENANT,
            pb::MarkConversationPendingRequest {
                name: name.clone(),
                etag: c.etag.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(pending.state, pb::ConversationState::Pending as i32);
    let until = rapport_kit::convert::ts(chrono::Utc::now() + chrono::Duration::hours(1));
    let snoozed = h
        .client()
        .snooze_conversation(tenant_request(
            TENANT,
            pb::SnoozeConversationRequest {
                name: name.clone(),
                snooze_until: Some(until),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(snoozed.state, pb::ConversationState::Snoozed as i32);
    assert!(snoozed.snooze_until.is_some());
    let resolved = h.resolve(&name).await.unwrap();
    assert_eq!(resolved.state, pb::ConversationState::Resolved as i32);
    assert_eq!(resolved.resolution.unwrap().code, "answered");
    let reopened = h
        .client()
        .reopen_conversation(tenant_request(
            TENANT,
            pb::ReopenConversationRequest {
                name: name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(reopened.state, pb::ConversationState::Open as i32);
    h.resolve(&name).await.unwrap();
    let closed = h
        .client()
        .close_conversation(tenant_request(
            TENANT,
            pb::CloseConversationRequest {
                name: name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(closed.state, pb::ConversationState::Closed as i32);

    let events = outbox_events(&h.db, TENANT, &name).await;
    let changes: Vec<(i32, i32)> = events
        .iter()
        .filter(|e| e.r#type == "rapport.conversations.v1.ConversationStatusChanged")
        .map(|e| {
            let p: pb::ConversationStatusChanged = payload(e);
            (p.from, p.to)
        })
        .collect();
    use pb::ConversationState as S;
    assert_eq!(
        changes,
        [
            (S::Open as i32, S::Pending as i32),
            (S::Pending as i32, S::Snoozed as i32),
            (S::Snoozed as i32, S::Resolved as i32),
            (S::Resolved as i32, S::Open as i32),
            (S::Open as i32, S::Resolved as i32),
            (S::Resolved as i32, S::Closed as i32),
        ]
    );
    let resolved: Vec<pb::ConversationResolved> = events
        .iter()
        .filter(|e| e.r#type == "rapport.conversations.v1.ConversationResolved")
        .map(payload)
        .collect();
    assert_eq!(
        resolved.iter().map(|r| r.resolve_count).collect::<Vec<_>>(),
        [1, 2]
    );
    // Sequences follow the conversation's versions: strictly increasing.
    assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
}

#[tokio::test]
async fn refused_transitions_stale_etags_and_retries() {
    let h = start().await;
    let c = open_conversation(&h).await;
    let refused = expect_err(
        h.client()
            .close_conversation(tenant_request(
                TENANT,
                pb::CloseConversationRequest {
                    name: c.name.clone(),
                    ..Default::default()
                },
            ))
            .await,
    );
    assert_error(
        &refused,
        Code::FailedPrecondition,
        "INVALID_STATE_TRANSITION",
    );
    let first = h
        .client()
        .resolve_conversation(tenant_request(
            TENANT,
            pb::ResolveConversationRequest {
                name: c.name.clone(),
                request_id: "r-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    // A retry answers the first result and resolves nothing twice.
    let retry = h
        .client()
        .resolve_conversation(tenant_request(
            TENANT,
            pb::ResolveConversationRequest {
                name: c.name.clone(),
                request_id: "r-1".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, first);
    assert_eq!(h.conversation(&c.name).await.resolve_count, 1);
    let stale = expect_err(
        h.client()
            .reopen_conversation(tenant_request(
                TENANT,
                pb::ReopenConversationRequest {
                    name: c.name.clone(),
                    etag: c.etag.clone(),
                    ..Default::default()
                },
            ))
            .await,
    );
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");
    let by_number = h
        .client()
        .get_conversation_by_case_number(tenant_request(
            TENANT,
            pb::GetConversationByCaseNumberRequest {
                case_number: c.case_number,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(by_number.name, c.name);
    let missing = expect_err(
        h.client()
            .get_conversation_by_case_number(tenant_request(
                OTHER_TENANT,
                pb::GetConversationByCaseNumberRequest {
                    case_number: c.case_number,
                },
            ))
            .await,
    );
    assert_error(&missing, Code::NotFound, "CONVERSATION_NOT_FOUND");
}
