//! Inboxes: create, get, list, update; validation, uniqueness, etags,
//! retries and tenant isolation.
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn an_inbox_is_created_normalized_read_listed_and_updated() {
    let h = start().await;
    let created = h
        .create_inbox(pb::Inbox {
            continue_across_channels: true,
            auto_acknowledgement: Some(pb::AutoAcknowledgement {
                enabled: true,
                subject: "We got it".into(),
                body: "Case {{case_number}}".into(),
            }),
            ..email_inbox(" Support@Acme.Example ", 86_400)
        })
        .await;
    assert!(created.name.starts_with("inboxes/"));
    assert_eq!(created.address, "support@acme.example");
    assert_eq!(created.etag, "\"1\"");
    let got = h
        .client()
        .get_inbox(tenant_request(
            TENANT,
            pb::GetInboxRequest {
                name: created.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .inbox
        .unwrap();
    assert_eq!(got, created);

    let second = h.create_inbox(email_inbox("sales@acme.example", 0)).await;
    let first_page = h
        .client()
        .list_inboxes(tenant_request(
            TENANT,
            pb::ListInboxesRequest {
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.inboxes, vec![created.clone()]);
    let next = h
        .client()
        .list_inboxes(tenant_request(
            TENANT,
            pb::ListInboxesRequest {
                page_size: 1,
                page_token: first_page.next_page_token,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.inboxes, vec![second]);
    assert!(next.next_page_token.is_empty());

    let updated = h
        .client()
        .update_inbox(tenant_request(
            TENANT,
            pb::UpdateInboxRequest {
                inbox: Some(pb::Inbox {
                    display_name: "Customer care".into(),
                    channel: 0,
                    ..created.clone()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .inbox
        .unwrap();
    assert_eq!(updated.display_name, "Customer care");
    assert_eq!(
        updated.channel, created.channel,
        "the channel never changes"
    );
    assert_eq!(updated.etag, "\"2\"");
    // The etag read before the update is stale now.
    let stale = expect_err(
        h.client()
            .update_inbox(tenant_request(
                TENANT,
                pb::UpdateInboxRequest {
                    inbox: Some(created),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["display_name".into()],
                    }),
                    request_id: String::new(),
                },
            ))
            .await,
    );
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");
}

#[tokio::test]
async fn bad_fields_are_reported_each_with_its_path() {
    let h = start().await;
    let bad = pb::Inbox {
        display_name: String::new(),
        channel: Channel::Sms as i32,
        address: "0612345678".into(),
        provider: "Twilio!".into(),
        reopen_window: Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let status = expect_err(h.try_create_inbox(TENANT, bad, "").await);
    for field in [
        "inbox.display_name",
        "inbox.address",
        "inbox.provider",
        "inbox.reopen_window",
    ] {
        assert_violation(&status, field);
    }
    let no_channel = expect_err(
        h.try_create_inbox(
            TENANT,
            pb::Inbox {
                channel: 0,
                ..email_inbox("a@b.example", 0)
            },
            "",
        )
        .await,
    );
    assert_violation(&no_channel, "inbox.channel");
    let bad_id = expect_err(
        h.client()
            .get_inbox(tenant_request(
                TENANT,
                pb::GetInboxRequest {
                    name: "inboxes/nope".into(),
                },
            ))
            .await,
    );
    assert_violation(&bad_id, "name");
}

#[tokio::test]
async fn an_address_is_one_inbox_per_tenant_and_retries_apply_once() {
    let h = start().await;
    let first = h
        .try_create_inbox(TENANT, email_inbox("help@acme.example", 0), "req-1")
        .await
        .unwrap();
    // The same request again: the first answer, nothing new.
    let retry = h
        .try_create_inbox(TENANT, email_inbox("help@acme.example", 0), "req-1")
        .await
        .unwrap();
    assert_eq!(retry, first);
    let taken = expect_err(
        h.try_create_inbox(TENANT, email_inbox("HELP@acme.example", 0), "req-2")
            .await,
    );
    assert_error(&taken, Code::AlreadyExists, "INBOX_ADDRESS_TAKEN");
    // Another tenant has its own addresses, and cannot see this inbox.
    h.try_create_inbox(OTHER_TENANT, email_inbox("help@acme.example", 0), "req-1")
        .await
        .unwrap();
    let hidden = expect_err(
        h.client()
            .get_inbox(tenant_request(
                OTHER_TENANT,
                pb::GetInboxRequest { name: first.name },
            ))
            .await,
    );
    assert_error(&hidden, Code::NotFound, "INBOX_NOT_FOUND");
}
