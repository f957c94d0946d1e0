//! ExportCustomerData and EraseCustomer (GDPR access and erasure), and that
//! no event or stored idempotent reply leaks personal data.

use crate::harness::*;
use chrono::{Duration, Utc};
use pb::{ConsentPurpose, ConsentStatus, CustomerState, LifecycleStage};
use tonic::Code;

const EMAIL: &str = "ada.private@example.com";
const DISPLAY_NAME: &str = "Ada Private-Person";
const PHONE: &str = "+14155550177";

async fn seeded(h: &Harness) -> pb::Customer {
    let c = h
        .create(pb::Customer {
            given_name: "Ada".into(),
            family_name: "Private-Person".into(),
            phones: vec![phone(PHONE)],
            identities: vec![identity(Channel::Social, "instagram", "ada_private")],
            birthday: Some(pb::Birthday {
                month: 12,
                day: 10,
                year: 1985,
            }),
            tags: vec!["vip".into()],
            attributes: [("favourite".to_owned(), attr_str("engines"))].into(),
            ..customer(DISPLAY_NAME, EMAIL)
        })
        .await;
    h.set_consent(pb::SetConsentRequest {
        evidence: format!("{EMAIL} ticked the box"),
        ..consent(
            &c.name,
            Channel::Email,
            ConsentPurpose::Marketing,
            ConsentStatus::Granted,
            Some(Utc::now() - Duration::hours(1)),
        )
    })
    .await
    .unwrap();
    h.change_stage(stage_change(
        &c.name,
        LifecycleStage::Conversion,
        "first order",
    ))
    .await
    .unwrap();
    h.get(&c.name).await
}

#[tokio::test]
async fn export_is_one_json_document_with_everything() {
    let h = start().await;
    let c = seeded(&h).await;
    let other = h.create(customer("Other", "other@example.com")).await;
    h.merge(&c.name, &other.name, "").await.unwrap();

    let export = h.export(&c.name).await.unwrap();
    assert_eq!(export.content_type, "application/json");
    let doc: serde_json::Value = serde_json::from_slice(&export.data).expect("export is JSON");
    for key in [
        "customer",
        "consent_events",
        "lifecycle_events",
        "merge_records",
    ] {
        assert!(doc.get(key).is_some(), "export lacks {key:?}: {doc}");
    }
    assert!(
        doc["consent_events"]
            .as_array()
            .is_some_and(|a| a.len() == 1),
        "{doc}"
    );
    assert!(
        doc["lifecycle_events"]
            .as_array()
            .is_some_and(|a| a.len() >= 2),
        "{doc}"
    );
    assert!(
        doc["merge_records"]
            .as_array()
            .is_some_and(|a| a.len() == 1),
        "{doc}"
    );
    let text = String::from_utf8(export.data.clone()).unwrap();
    assert!(
        text.to_lowercase().contains(EMAIL),
        "the export holds the email"
    );
    assert!(
        text.contains("other@example.com"),
        "and the merged-in email"
    );
    // The document identifies the customer (by resource name or bare id).
    assert!(text.contains(&customer_uuid(&c.name).to_string()));

    // Another tenant cannot export it.
    let err = expect_err(
        h.client()
            .export_customer_data(tenant_request(
                OTHER_TENANT,
                pb::ExportCustomerDataRequest {
                    name: c.name.clone(),
                },
            ))
            .await,
    );
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    let err = expect_err(h.export(&unknown_customer()).await);
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    let err = expect_err(h.export("customers/").await);
    assert_violation(&err, "name");
}

#[tokio::test]
async fn erase_leaves_a_tombstone_without_personal_data() {
    let h = start().await;
    let c = seeded(&h).await;

    let receipt = h.erase(&c.name, "erase-1").await.unwrap();
    assert!(
        is_name_with_uuid(&receipt.name, "erasureReceipts/"),
        "{}",
        receipt.name
    );
    assert_eq!(receipt.customer, c.name);
    assert!(receipt.erase_time.is_some());
    assert!(!receipt.erased_fields.is_empty());

    let tombstone = h.get(&c.name).await;
    assert_eq!(tombstone.state, CustomerState::Erased as i32);
    assert!(tombstone.display_name.is_empty());
    assert!(tombstone.given_name.is_empty());
    assert!(tombstone.family_name.is_empty());
    assert!(tombstone.emails.is_empty());
    assert!(tombstone.phones.is_empty());
    assert!(tombstone.identities.is_empty());
    assert!(tombstone.attributes.is_empty());
    assert!(tombstone.tags.is_empty());
    assert!(tombstone.birthday.is_none());

    for key in [
        by_email(EMAIL),
        by_phone(PHONE),
        by_identity(Channel::Social, "instagram", "ada_private"),
    ] {
        let err = expect_err(h.lookup_in(TENANT, key).await);
        assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    }

    // The ledger keeps the decisions but not their evidence or source.
    let ledger = h.consent_events(&c.name).await;
    assert_eq!(ledger.len(), 1);
    assert!(ledger[0].evidence.is_empty(), "{:?}", ledger[0]);
    assert!(ledger[0].source.is_empty(), "{:?}", ledger[0]);

    // The export shows no trace of the person.
    let export = h.export(&c.name).await.unwrap();
    let text = String::from_utf8(export.data).unwrap().to_lowercase();
    for secret in [
        EMAIL,
        "private-person",
        "ada_private",
        "4155550177",
        "engines",
    ] {
        assert!(
            !text.contains(secret),
            "export still holds {secret:?}: {text}"
        );
    }

    // The identities are free for someone new.
    let reborn = h
        .create(pb::Customer {
            phones: vec![phone(PHONE)],
            ..customer("Someone New", EMAIL)
        })
        .await;
    assert_ne!(reborn.name, c.name);
    assert_eq!(
        h.lookup_in(TENANT, by_email(EMAIL)).await.unwrap().name,
        reborn.name
    );

    // A replay answers the same receipt; a new erase is refused.
    let replay = h.erase(&c.name, "erase-1").await.unwrap();
    assert_eq!(replay.name, receipt.name);
    let err = expect_err(h.erase(&c.name, "erase-2").await);
    assert_error(&err, Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE");
    let err = expect_err(h.erase(&c.name, "").await);
    assert_error(&err, Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE");

    let events = h.events(&c.name).await;
    assert_eq!(
        count_events(&events, "CustomerErased"),
        1,
        "{:?}",
        event_types(&events)
    );
    let erased: pb::CustomerErased = payload(
        events
            .iter()
            .find(|e| e.r#type == "rapport.profiles.v1.CustomerErased")
            .unwrap(),
    );
    assert_eq!(erased.customer, c.name);
    assert_eq!(erased.erasure_receipt, receipt.name);
}

#[tokio::test]
async fn erase_of_unknown_or_foreign_customers_is_not_found() {
    let h = start().await;
    let c = h.create(customer("Mine", "mine@example.com")).await;
    let err = expect_err(h.erase(&unknown_customer(), "").await);
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    let err = expect_err(
        h.client()
            .erase_customer(tenant_request(
                OTHER_TENANT,
                pb::EraseCustomerRequest {
                    name: c.name.clone(),
                    request_id: String::new(),
                },
            ))
            .await,
    );
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    assert_eq!(h.get(&c.name).await.state, CustomerState::Active as i32);
    let err = expect_err(h.erase("foo/123", "").await);
    assert_violation(&err, "name");
}

/// Events carry ids and facts, never personal data: not in any envelope of
/// the whole life of a customer, from creation to erasure.
#[tokio::test]
async fn no_event_carries_personal_data() {
    let h = start().await;
    let c = seeded(&h).await;
    h.update(
        pb::Customer {
            name: c.name.clone(),
            display_name: "Ada Renamed-Private".into(),
            emails: vec![email(EMAIL), email("second.private@example.com")],
            ..Default::default()
        },
        &["display_name", "emails"],
    )
    .await
    .unwrap();
    let other = h
        .create(customer("Merge Me Private", "merge.private@example.com"))
        .await;
    h.merge(&c.name, &other.name, "").await.unwrap();
    h.erase(&c.name, "").await.unwrap();

    let rows = h.outbox_rows(TENANT).await;
    assert!(
        rows.len() >= 7,
        "every change wrote an event: {}",
        rows.len()
    );
    for row in &rows {
        for secret in [
            EMAIL,
            DISPLAY_NAME,
            "Ada Renamed-Private",
            "second.private@example.com",
            "merge.private@example.com",
            "Merge Me Private",
            PHONE,
            "ada_private",
            "ticked the box",
        ] {
            assert!(
                !contains_bytes(&row.envelope, secret),
                "{} event holds {secret:?}",
                row.event_type
            );
        }
    }
    // The typed reader agrees with the raw rows.
    for subject in [&c.name, &other.name] {
        for envelope in h.events(subject).await {
            assert_eq!(envelope.tenant, TENANT);
            assert!(!contains_bytes(&envelope_bytes(&envelope), EMAIL));
        }
    }
}

/// Stored idempotent replies may hold personal data; erasure removes those
/// of the erased customer.
#[tokio::test]
async fn erase_forgets_stored_replies_about_the_customer() {
    let h = start().await;
    let c = h
        .try_create_in(TENANT, customer(DISPLAY_NAME, EMAIL), "create-private")
        .await
        .unwrap();
    h.update_with_id(
        pb::Customer {
            name: c.name.clone(),
            given_name: "Ada".into(),
            ..Default::default()
        },
        &["given_name"],
        "update-private",
    )
    .await
    .unwrap();
    h.erase(&c.name, "").await.unwrap();
    for row in h.idempotency_rows(TENANT).await {
        let response = row.response.unwrap_or_default();
        assert!(
            !response.to_lowercase().contains(EMAIL) && !response.contains(DISPLAY_NAME),
            "a stored reply of {} still holds personal data",
            row.method
        );
    }
}

/// Twins of one keyed erasure racing each other all get the same receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_twins_of_an_erasure_get_one_receipt() {
    let h = start().await;
    let c = h.create(customer(DISPLAY_NAME, EMAIL)).await;
    let calls = (0..10).map(|_| {
        let mut client = h.client();
        let request = pb::EraseCustomerRequest {
            name: c.name.clone(),
            request_id: "twin-erase".into(),
        };
        async move { client.erase_customer(tenant_request(TENANT, request)).await }
    });
    let receipts: std::collections::BTreeSet<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(response) => response.into_inner().erasure_receipt.unwrap().name,
            Err(status) => panic!("an EraseCustomer twin failed: {}", describe(&status)),
        })
        .collect();
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert_eq!(count_events(&h.events(&c.name).await, "CustomerErased"), 1);
}

/// A late retry of the create that made a customer, after the customer was
/// erased (a sync job retrying a create that timed out), must not bring the
/// person back: the request id is remembered with a tombstone reply, and the
/// retry answers FAILED_PRECONDITION `CUSTOMER_ERASED` naming the erased
/// customer. Retries of other requests about the customer answer the same.
#[tokio::test]
async fn a_late_retry_of_the_create_does_not_bring_the_erased_customer_back() {
    let h = start().await;
    let created = h
        .try_create_in(TENANT, customer(DISPLAY_NAME, EMAIL), "create-then-erase")
        .await
        .unwrap();
    h.set_consent(pb::SetConsentRequest {
        request_id: "consent-then-erase".into(),
        ..consent(
            &created.name,
            Channel::Email,
            ConsentPurpose::Marketing,
            ConsentStatus::Granted,
            None,
        )
    })
    .await
    .unwrap();
    h.erase(&created.name, "").await.unwrap();

    let retry = expect_err(
        h.try_create_in(TENANT, customer(DISPLAY_NAME, EMAIL), "create-then-erase")
            .await,
    );
    assert_error(&retry, Code::FailedPrecondition, "CUSTOMER_ERASED");
    assert_eq!(
        error_metadata(&retry).get("resource"),
        Some(&created.name),
        "{}",
        describe(&retry)
    );
    let consent_retry = expect_err(
        h.set_consent(pb::SetConsentRequest {
            request_id: "consent-then-erase".into(),
            ..consent(
                &created.name,
                Channel::Email,
                ConsentPurpose::Marketing,
                ConsentStatus::Granted,
                None,
            )
        })
        .await,
    );
    assert_error(&consent_retry, Code::FailedPrecondition, "CUSTOMER_ERASED");

    assert!(
        h.active_names_in(TENANT).await.is_empty(),
        "the erased person is back"
    );
    let lookup = expect_err(h.lookup_in(TENANT, by_email(EMAIL)).await);
    assert_eq!(lookup.code(), Code::NotFound);
    // A new request (a new request id) may create the person again: that is
    // the client's decision, not a retry's.
    h.try_create_in(TENANT, customer(DISPLAY_NAME, EMAIL), "a-new-create")
        .await
        .unwrap();
}

/// SQLite keeps old page versions in its WAL and freed pages in the file; an
/// erasure leaves neither holding the erased strings (secure_delete, FTS5
/// secure-delete, a WAL checkpoint after the erasure). PostgreSQL's dead
/// tuples are VACUUM's (README.md, "Erasure and what stays on disk").
#[tokio::test]
async fn erased_strings_are_gone_from_the_sqlite_files() {
    let h = start().await;
    if h.testdb.backend_name() != "sqlite" {
        return;
    }
    let c = seeded(&h).await;
    // Some other customers, so the erased rows' pages are not simply freed whole.
    for i in 0..20 {
        h.create(customer(
            &format!("Other {i}"),
            &format!("other{i}@example.com"),
        ))
        .await;
    }
    h.erase(&c.name, "").await.unwrap();

    let db_file = h.testdb.url().trim_start_matches("sqlite://").to_owned();
    for path in [db_file.clone(), format!("{db_file}-wal")] {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for needle in [EMAIL, DISPLAY_NAME, PHONE, "ada_private", "Private-Person"] {
            assert!(
                !contains_bytes(&bytes, needle),
                "{needle:?} is still in {path} after the erasure"
            );
        }
    }
}
