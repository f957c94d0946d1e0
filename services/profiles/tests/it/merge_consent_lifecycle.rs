//! MergeCustomers, the consent ledger (SetConsent, ListConsentEvents) and the
//! lifecycle history (ChangeLifecycleStage, ListLifecycleEvents), with their
//! idempotency and events.

use std::collections::{BTreeMap, BTreeSet};

use crate::harness::*;
use chrono::{Duration, Utc};
use pb::{Birthday, ConsentPurpose, ConsentStatus, CustomerState, LifecycleStage};
use tonic::Code;

/// (channel, purpose) → status of a customer's current consents.
fn consent_map(customer: &pb::Customer) -> BTreeMap<(i32, i32), i32> {
    customer
        .consents
        .iter()
        .map(|c| ((c.channel, c.purpose), c.status))
        .collect()
}

#[tokio::test]
async fn merge_moves_identities_and_fills_gaps_of_the_survivor() {
    let h = start().await;
    let t0 = Utc::now() - Duration::days(3);
    let t1 = Utc::now() - Duration::days(2);
    let t2 = Utc::now() - Duration::days(1);

    let mut s_email = email("s@example.com");
    s_email.primary = true;
    let survivor = h
        .create(pb::Customer {
            display_name: "Survivor".into(),
            emails: vec![s_email],
            tags: vec!["a".into()],
            attributes: [
                ("k".to_owned(), attr_str("from survivor")),
                ("only_s".to_owned(), attr_int(1)),
            ]
            .into(),
            ..Default::default()
        })
        .await;
    let mut m_email = email("m@example.com");
    m_email.primary = true;
    let merged = h
        .create(pb::Customer {
            display_name: "Merged".into(),
            given_name: "Mia".into(),
            locale: "fr-CA".into(),
            time_zone: "America/Toronto".into(),
            birthday: Some(Birthday {
                month: 5,
                day: 17,
                year: 0,
            }),
            emails: vec![m_email],
            phones: vec![phone("+15145550100")],
            identities: vec![identity(Channel::Social, "instagram", "mia")],
            tags: vec!["b".into()],
            attributes: [
                ("k".to_owned(), attr_str("from merged")),
                ("only_m".to_owned(), attr_bool(true)),
            ]
            .into(),
            ..Default::default()
        })
        .await;

    // Survivor: CONSIDERATION, marketing email granted at t1.
    h.change_stage(stage_change(
        &survivor.name,
        LifecycleStage::Consideration,
        "demo",
    ))
    .await
    .unwrap();
    h.set_consent(consent(
        &survivor.name,
        Channel::Email,
        ConsentPurpose::Marketing,
        ConsentStatus::Granted,
        Some(t1),
    ))
    .await
    .unwrap();
    // Merged: RETENTION, marketing email revoked later (t2), SMS service at t0.
    h.change_stage(stage_change(
        &merged.name,
        LifecycleStage::Retention,
        "second order",
    ))
    .await
    .unwrap();
    h.set_consent(consent(
        &merged.name,
        Channel::Email,
        ConsentPurpose::Marketing,
        ConsentStatus::Revoked,
        Some(t2),
    ))
    .await
    .unwrap();
    h.set_consent(consent(
        &merged.name,
        Channel::Sms,
        ConsentPurpose::Service,
        ConsentStatus::Granted,
        Some(t0),
    ))
    .await
    .unwrap();

    let response = h
        .merge(&survivor.name, &merged.name, "merge-1")
        .await
        .unwrap();
    let after = response.customer.clone().expect("survivor in the response");
    let record = response.merge_record.clone().expect("merge record");
    assert!(
        is_name_with_uuid(&record.name, "mergeRecords/"),
        "{}",
        record.name
    );
    assert_eq!(record.survivor, survivor.name);
    assert_eq!(record.merged, merged.name);
    assert!(record.create_time.is_some());

    assert_eq!(after.name, survivor.name);
    assert_eq!(after.state, CustomerState::Active as i32);
    assert_eq!(
        after.display_name, "Survivor",
        "the survivor keeps its own values"
    );
    let emails: BTreeSet<String> = after
        .emails
        .iter()
        .map(|e| e.address.to_lowercase())
        .collect();
    assert_eq!(
        emails,
        ["m@example.com".to_owned(), "s@example.com".to_owned()].into()
    );
    assert_eq!(
        after.emails.iter().filter(|e| e.primary).count(),
        1,
        "still exactly one primary email: {:?}",
        after.emails
    );
    assert_eq!(after.phones.len(), 1);
    assert_eq!(after.phones[0].number, "+15145550100");
    assert_eq!(
        after.identities,
        vec![identity(Channel::Social, "instagram", "mia")]
    );
    let tags: BTreeSet<String> = after.tags.iter().cloned().collect();
    assert_eq!(tags, ["a".to_owned(), "b".to_owned()].into());
    assert_eq!(after.attributes.get("k"), Some(&attr_str("from survivor")));
    assert_eq!(after.attributes.get("only_s"), Some(&attr_int(1)));
    assert_eq!(after.attributes.get("only_m"), Some(&attr_bool(true)));
    assert_eq!(
        after.given_name, "Mia",
        "empty fields are filled from the merged one"
    );
    assert_eq!(after.locale, "fr-CA");
    assert_eq!(after.time_zone, "America/Toronto");
    assert_eq!(after.birthday, merged.birthday);
    assert_eq!(
        after.lifecycle_stage,
        LifecycleStage::Retention as i32,
        "the furthest stage wins"
    );
    let consents = consent_map(&after);
    assert_eq!(
        consents.get(&(Channel::Email as i32, ConsentPurpose::Marketing as i32)),
        Some(&(ConsentStatus::Revoked as i32)),
        "the most recent decision wins"
    );
    assert_eq!(
        consents.get(&(Channel::Sms as i32, ConsentPurpose::Service as i32)),
        Some(&(ConsentStatus::Granted as i32))
    );
    assert_eq!(h.get(&survivor.name).await, after);

    // The merged customer is a tombstone without personal data.
    let tombstone = h.get(&merged.name).await;
    assert_eq!(tombstone.state, CustomerState::Merged as i32);
    assert_eq!(tombstone.merged_into, survivor.name);
    assert!(tombstone.emails.is_empty());
    assert!(tombstone.phones.is_empty());
    assert!(tombstone.identities.is_empty());
    assert!(tombstone.display_name.is_empty());
    assert!(tombstone.given_name.is_empty());

    // Lookups by the merged identities find the survivor.
    for key in [
        by_email("m@example.com"),
        by_phone("+15145550100"),
        by_identity(Channel::Social, "instagram", "MIA"),
    ] {
        assert_eq!(h.lookup_in(TENANT, key).await.unwrap().name, survivor.name);
    }

    // The ledgers moved with it.
    let ledger = h.consent_events(&survivor.name).await;
    assert_eq!(ledger.len(), 3, "{ledger:?}");
    let history = h.lifecycle_events(&survivor.name).await;
    assert!(
        history
            .iter()
            .any(|e| e.to_stage == LifecycleStage::Retention as i32 && e.reason == "second order"),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|e| e.to_stage == LifecycleStage::Consideration as i32 && e.reason == "demo"),
        "{history:?}"
    );

    // The event is about the survivor.
    let events = h.events(&survivor.name).await;
    assert_eq!(
        count_events(&events, "CustomersMerged"),
        1,
        "{:?}",
        event_types(&events)
    );
    let merged_event = events
        .iter()
        .find(|e| e.r#type == "rapport.profiles.v1.CustomersMerged")
        .unwrap();
    let event: pb::CustomersMerged = payload(merged_event);
    assert_eq!(event.survivor, survivor.name);
    assert_eq!(event.merged, merged.name);
    assert_eq!(event.merge_record, record.name);

    // A replay answers the same record and writes nothing.
    let replay = h
        .merge(&survivor.name, &merged.name, "merge-1")
        .await
        .unwrap();
    assert_eq!(replay.merge_record.unwrap().name, record.name);
    assert_eq!(
        count_events(&h.events(&survivor.name).await, "CustomersMerged"),
        1
    );

    // Merging the tombstone again is a precondition failure.
    let err = expect_err(h.merge(&survivor.name, &merged.name, "merge-2").await);
    assert_error(&err, Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE");
    let err = expect_err(h.merge(&merged.name, &survivor.name, "").await);
    assert_error(&err, Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE");
}

#[tokio::test]
async fn merge_rejects_bad_pairs() {
    let h = start().await;
    let a = h.create(customer("A", "a@example.com")).await;
    let erased = h.create(customer("E", "e@example.com")).await;
    h.erase(&erased.name, "").await.unwrap();

    let err = expect_err(h.merge(&a.name, &a.name, "").await);
    assert_error(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
    let err = expect_err(h.merge(&a.name, &erased.name, "").await);
    assert_error(&err, Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE");
    let err = expect_err(h.merge(&erased.name, &a.name, "").await);
    assert_error(&err, Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE");
    let err = expect_err(h.merge(&a.name, &unknown_customer(), "").await);
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    let err = expect_err(h.merge("customers/nope", &a.name, "").await);
    assert_violation(&err, "survivor");
    let err = expect_err(h.merge(&a.name, "nope", "").await);
    assert_violation(&err, "merged");

    // Another tenant's customer is not found, not merged.
    let foreign = h
        .create_in(OTHER_TENANT, customer("F", "f@example.com"))
        .await;
    let err = expect_err(h.merge(&a.name, &foreign.name, "").await);
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    assert_eq!(
        h.try_get_in(OTHER_TENANT, &foreign.name)
            .await
            .unwrap()
            .state,
        CustomerState::Active as i32
    );
    assert_eq!(h.get(&a.name).await.state, CustomerState::Active as i32);
}

#[tokio::test]
async fn set_consent_records_the_latest_decision_per_channel_and_purpose() {
    let h = start().await;
    let c = h
        .create(customer("Consenting", "consent@example.com"))
        .await;
    let now = Utc::now();

    let granted = h
        .set_consent(consent(
            &c.name,
            Channel::Email,
            ConsentPurpose::Marketing,
            ConsentStatus::Granted,
            Some(now - Duration::hours(1)),
        ))
        .await
        .unwrap();
    let event = granted.consent_event.clone().unwrap();
    assert!(
        is_name_with_uuid(&event.name, &format!("{}/consentEvents/", c.name)),
        "{}",
        event.name
    );
    assert_eq!(event.status, ConsentStatus::Granted as i32);
    assert_eq!(event.source, "web-signup-form");
    assert_eq!(event.evidence, "I agree to receive offers");
    assert!(event.record_time.is_some());
    let current = granted.customer.unwrap();
    assert_eq!(current.consents.len(), 1);
    assert_eq!(current.consents[0].status, ConsentStatus::Granted as i32);
    assert_eq!(current.consents[0].source, "web-signup-form");

    // A newer revocation replaces it.
    let revoked = h
        .set_consent(consent(
            &c.name,
            Channel::Email,
            ConsentPurpose::Marketing,
            ConsentStatus::Revoked,
            Some(now - Duration::minutes(30)),
        ))
        .await
        .unwrap()
        .customer
        .unwrap();
    assert_eq!(
        consent_map(&revoked),
        [(
            (Channel::Email as i32, ConsentPurpose::Marketing as i32),
            ConsentStatus::Revoked as i32
        )]
        .into()
    );

    // An older decision arriving late is recorded but does not win.
    let late = h
        .set_consent(consent(
            &c.name,
            Channel::Email,
            ConsentPurpose::Marketing,
            ConsentStatus::Granted,
            Some(now - Duration::days(7)),
        ))
        .await
        .unwrap()
        .customer
        .unwrap();
    assert_eq!(
        consent_map(&late).get(&(Channel::Email as i32, ConsentPurpose::Marketing as i32)),
        Some(&(ConsentStatus::Revoked as i32))
    );

    // Another purpose is tracked separately; capture_time defaults to now.
    let surveys = h
        .set_consent(consent(
            &c.name,
            Channel::Sms,
            ConsentPurpose::Surveys,
            ConsentStatus::Granted,
            None,
        ))
        .await
        .unwrap();
    let captured = to_chrono(
        surveys
            .consent_event
            .unwrap()
            .capture_time
            .as_ref()
            .unwrap(),
    );
    assert!(
        (captured - Utc::now()).num_seconds().abs() < 300,
        "{captured}"
    );
    let current = h.get(&c.name).await;
    assert_eq!(consent_map(&current).len(), 2);

    // The ledger is oldest first, by capture time.
    let ledger = h.consent_events(&c.name).await;
    assert_eq!(ledger.len(), 4);
    let times: Vec<_> = ledger
        .iter()
        .map(|e| to_chrono(e.capture_time.as_ref().unwrap()))
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    assert_eq!(
        ledger[0].status,
        ConsentStatus::Granted as i32,
        "the late, oldest one first"
    );
    assert_eq!(ledger[0].channel, Channel::Email as i32);

    // Small pages walk the same ledger.
    let page = h
        .client()
        .list_consent_events(tenant_request(
            TENANT,
            pb::ListConsentEventsRequest {
                parent: c.name.clone(),
                page_size: 3,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.consent_events.len(), 3);
    assert!(!page.next_page_token.is_empty());
    let rest = h
        .client()
        .list_consent_events(tenant_request(
            TENANT,
            pb::ListConsentEventsRequest {
                parent: c.name.clone(),
                page_size: 3,
                page_token: page.next_page_token,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.consent_events.len(), 1);
    let walked: Vec<String> = page
        .consent_events
        .iter()
        .chain(&rest.consent_events)
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(
        walked,
        ledger.iter().map(|e| e.name.clone()).collect::<Vec<_>>()
    );

    // One ConsentChanged per decision that changed the current consent: the
    // late, older decision is in the ledger but changed nothing, and an event
    // saying GRANTED while the current consent is REVOKED would mislead.
    let events = h.events(&c.name).await;
    let changes: Vec<pb::ConsentChanged> = events
        .iter()
        .filter(|e| e.r#type == "rapport.profiles.v1.ConsentChanged")
        .map(payload)
        .collect();
    let summary: Vec<(i32, i32, i32)> = changes
        .iter()
        .map(|e| (e.channel, e.purpose, e.status))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                Channel::Email as i32,
                ConsentPurpose::Marketing as i32,
                ConsentStatus::Granted as i32
            ),
            (
                Channel::Email as i32,
                ConsentPurpose::Marketing as i32,
                ConsentStatus::Revoked as i32
            ),
            (
                Channel::Sms as i32,
                ConsentPurpose::Surveys as i32,
                ConsentStatus::Granted as i32
            ),
        ],
        "{:?}",
        event_types(&events)
    );
    assert!(changes.iter().all(|e| e.customer == c.name));
}

#[tokio::test]
async fn set_consent_validates_its_input() {
    let h = start().await;
    let c = h
        .create(customer("Consenting", "consent@example.com"))
        .await;

    let err = expect_err(
        h.set_consent(pb::SetConsentRequest {
            name: c.name.clone(),
            ..Default::default()
        })
        .await,
    );
    for field in ["channel", "purpose", "status", "source"] {
        assert_violation(&err, field);
    }

    let err = expect_err(
        h.set_consent(consent(
            &c.name,
            Channel::Email,
            ConsentPurpose::Marketing,
            ConsentStatus::Granted,
            Some(Utc::now() + Duration::minutes(10)),
        ))
        .await,
    );
    assert_violation(&err, "capture_time");

    let err = expect_err(
        h.set_consent(pb::SetConsentRequest {
            source: "s".repeat(129),
            evidence: "e".repeat(4097),
            ..consent(
                &c.name,
                Channel::Email,
                ConsentPurpose::Marketing,
                ConsentStatus::Granted,
                None,
            )
        })
        .await,
    );
    assert_violation(&err, "source");
    assert_violation(&err, "evidence");

    let err = expect_err(
        h.set_consent(pb::SetConsentRequest {
            privacy_notice_version: "v".repeat(65),
            ..consent(
                &c.name,
                Channel::Email,
                ConsentPurpose::Marketing,
                ConsentStatus::Granted,
                None,
            )
        })
        .await,
    );
    assert_violation(&err, "privacy_notice_version");

    let err = expect_err(
        h.set_consent(pb::SetConsentRequest {
            channel: 99,
            ..consent(
                &c.name,
                Channel::Email,
                ConsentPurpose::Marketing,
                ConsentStatus::Granted,
                None,
            )
        })
        .await,
    );
    assert_violation(&err, "channel");

    let err = expect_err(
        h.set_consent(consent(
            &unknown_customer(),
            Channel::Email,
            ConsentPurpose::Marketing,
            ConsentStatus::Granted,
            None,
        ))
        .await,
    );
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    assert!(h.consent_events(&c.name).await.is_empty());
    assert_eq!(count_events(&h.events(&c.name).await, "ConsentChanged"), 0);
}

#[tokio::test]
async fn set_consent_replayed_with_its_request_id_appends_once() {
    let h = start().await;
    let c = h
        .create(customer("Consenting", "consent@example.com"))
        .await;
    let request = pb::SetConsentRequest {
        request_id: "consent-1".into(),
        ..consent(
            &c.name,
            Channel::Email,
            ConsentPurpose::Marketing,
            ConsentStatus::Granted,
            Some(Utc::now() - Duration::minutes(1)),
        )
    };
    let first = h.set_consent(request.clone()).await.unwrap();
    let again = h.set_consent(request.clone()).await.unwrap();
    assert_eq!(
        again.consent_event.unwrap().name,
        first.consent_event.unwrap().name
    );
    assert_eq!(h.consent_events(&c.name).await.len(), 1);
    assert_eq!(count_events(&h.events(&c.name).await, "ConsentChanged"), 1);

    let err = expect_err(
        h.set_consent(pb::SetConsentRequest {
            status: ConsentStatus::Revoked as i32,
            ..request
        })
        .await,
    );
    assert_error(&err, Code::InvalidArgument, "REQUEST_ID_REUSED");
}

#[tokio::test]
async fn lifecycle_changes_are_recorded_in_order() {
    let h = start().await;
    let c = h.create(customer("Lifecycle", "life@example.com")).await;

    let history = h.lifecycle_events(&c.name).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].from_stage, LifecycleStage::Unspecified as i32);
    assert_eq!(history[0].to_stage, LifecycleStage::Awareness as i32);
    assert_eq!(history[0].reason, "created");

    let changed = h
        .change_stage(stage_change(
            &c.name,
            LifecycleStage::Conversion,
            "first purchase",
        ))
        .await
        .unwrap();
    let customer_after = changed.customer.unwrap();
    assert_eq!(
        customer_after.lifecycle_stage,
        LifecycleStage::Conversion as i32
    );
    assert_ne!(customer_after.etag, c.etag);
    let entry = changed.lifecycle_event.unwrap();
    assert!(
        is_name_with_uuid(&entry.name, &format!("{}/lifecycleEvents/", c.name)),
        "{}",
        entry.name
    );
    assert_eq!(entry.from_stage, LifecycleStage::Awareness as i32);
    assert_eq!(entry.to_stage, LifecycleStage::Conversion as i32);
    assert_eq!(entry.reason, "first purchase");

    // Backwards moves are allowed; the history keeps everything.
    h.change_stage(stage_change(
        &c.name,
        LifecycleStage::Consideration,
        "refund",
    ))
    .await
    .unwrap();
    let history = h.lifecycle_events(&c.name).await;
    let steps: Vec<(i32, i32)> = history.iter().map(|e| (e.from_stage, e.to_stage)).collect();
    assert_eq!(
        steps,
        vec![
            (
                LifecycleStage::Unspecified as i32,
                LifecycleStage::Awareness as i32
            ),
            (
                LifecycleStage::Awareness as i32,
                LifecycleStage::Conversion as i32
            ),
            (
                LifecycleStage::Conversion as i32,
                LifecycleStage::Consideration as i32
            ),
        ]
    );
    let page = h
        .client()
        .list_lifecycle_events(tenant_request(
            TENANT,
            pb::ListLifecycleEventsRequest {
                parent: c.name.clone(),
                page_size: 2,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.lifecycle_events.len(), 2);
    assert!(!page.next_page_token.is_empty());

    let events = h.events(&c.name).await;
    assert_eq!(
        count_events(&events, "LifecycleStageChanged"),
        2,
        "{:?}",
        event_types(&events)
    );
    let first: pb::LifecycleStageChanged = payload(
        events
            .iter()
            .find(|e| e.r#type == "rapport.profiles.v1.LifecycleStageChanged")
            .unwrap(),
    );
    assert_eq!(first.customer, c.name);
    assert_eq!(first.from_stage, LifecycleStage::Awareness as i32);
    assert_eq!(first.to_stage, LifecycleStage::Conversion as i32);
}

#[tokio::test]
async fn lifecycle_changes_are_validated() {
    let h = start().await;
    let c = h.create(customer("Lifecycle", "life@example.com")).await;

    let err = expect_err(
        h.change_stage(stage_change(&c.name, LifecycleStage::Awareness, "again"))
            .await,
    );
    assert_error(&err, Code::FailedPrecondition, "LIFECYCLE_STAGE_UNCHANGED");
    let err = expect_err(
        h.change_stage(stage_change(
            &c.name,
            LifecycleStage::Unspecified,
            "why not",
        ))
        .await,
    );
    assert_violation(&err, "stage");
    let err = expect_err(
        h.change_stage(stage_change(&c.name, LifecycleStage::Retention, ""))
            .await,
    );
    assert_violation(&err, "reason");
    let err = expect_err(
        h.change_stage(stage_change(
            &c.name,
            LifecycleStage::Retention,
            &"r".repeat(501),
        ))
        .await,
    );
    assert_violation(&err, "reason");
    let err = expect_err(
        h.change_stage(pb::ChangeLifecycleStageRequest {
            stage: 42,
            ..stage_change(&c.name, LifecycleStage::Retention, "bogus")
        })
        .await,
    );
    assert_violation(&err, "stage");

    let err = expect_err(
        h.change_stage(pb::ChangeLifecycleStageRequest {
            etag: "stale".into(),
            ..stage_change(&c.name, LifecycleStage::Retention, "loyal")
        })
        .await,
    );
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    h.change_stage(pb::ChangeLifecycleStageRequest {
        etag: c.etag.clone(),
        ..stage_change(&c.name, LifecycleStage::Retention, "loyal")
    })
    .await
    .unwrap();
    // The etag read before that change is stale now.
    let err = expect_err(
        h.change_stage(pb::ChangeLifecycleStageRequest {
            etag: c.etag.clone(),
            ..stage_change(&c.name, LifecycleStage::Advocacy, "fan")
        })
        .await,
    );
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");

    assert_eq!(h.lifecycle_events(&c.name).await.len(), 2);
    assert_eq!(
        count_events(&h.events(&c.name).await, "LifecycleStageChanged"),
        1
    );
}

#[tokio::test]
async fn lifecycle_change_replayed_with_its_request_id_applies_once() {
    let h = start().await;
    let c = h.create(customer("Lifecycle", "life@example.com")).await;
    let request = pb::ChangeLifecycleStageRequest {
        request_id: "stage-1".into(),
        ..stage_change(&c.name, LifecycleStage::Conversion, "bought")
    };
    let first = h.change_stage(request.clone()).await.unwrap();
    // Without idempotency this would be LIFECYCLE_STAGE_UNCHANGED.
    let again = h.change_stage(request.clone()).await.unwrap();
    assert_eq!(
        again.lifecycle_event.unwrap().name,
        first.lifecycle_event.unwrap().name
    );
    assert_eq!(h.lifecycle_events(&c.name).await.len(), 2);
    assert_eq!(
        count_events(&h.events(&c.name).await, "LifecycleStageChanged"),
        1
    );
}

#[tokio::test]
async fn merged_and_erased_customers_take_no_consent_or_stage_change() {
    let h = start().await;
    let survivor = h.create(customer("S", "s@example.com")).await;
    let merged = h.create(customer("M", "m@example.com")).await;
    let erased = h.create(customer("E", "e@example.com")).await;
    h.merge(&survivor.name, &merged.name, "").await.unwrap();
    h.erase(&erased.name, "").await.unwrap();
    for name in [&merged.name, &erased.name] {
        let err = expect_err(
            h.set_consent(consent(
                name,
                Channel::Email,
                ConsentPurpose::Marketing,
                ConsentStatus::Granted,
                None,
            ))
            .await,
        );
        assert_error(&err, Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE");
        let err = expect_err(
            h.change_stage(stage_change(name, LifecycleStage::Advocacy, "ghost"))
                .await,
        );
        assert_error(&err, Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE");
    }
}

/// Twins of one keyed request racing each other all get the first result:
/// the loser must not see the winner's change as a precondition failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_twins_of_a_stage_change_all_get_the_first_result() {
    const TWINS: usize = 10;
    let h = start().await;
    let c = h.create(customer("Twin", "twin@example.com")).await;

    let request = pb::ChangeLifecycleStageRequest {
        request_id: "twin-stage".into(),
        ..stage_change(&c.name, LifecycleStage::Conversion, "bought")
    };
    let calls = (0..TWINS).map(|_| {
        let mut client = h.client();
        let request = request.clone();
        async move {
            client
                .change_lifecycle_stage(tenant_request(TENANT, request))
                .await
        }
    });
    let entries: BTreeSet<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(response) => response.into_inner().lifecycle_event.unwrap().name,
            Err(status) => panic!("a ChangeLifecycleStage twin failed: {}", describe(&status)),
        })
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(h.lifecycle_events(&c.name).await.len(), 2);
}

/// Twins of one keyed merge racing each other all get the same record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_twins_of_a_merge_all_get_the_first_result() {
    const TWINS: usize = 10;
    let h = start().await;
    let c = h.create(customer("Twin", "twin@example.com")).await;
    let other = h
        .create(customer("Other Twin", "other.twin@example.com"))
        .await;

    let calls = (0..TWINS).map(|_| {
        let mut client = h.client();
        let request = pb::MergeCustomersRequest {
            survivor: c.name.clone(),
            merged: other.name.clone(),
            request_id: "twin-merge".into(),
        };
        async move {
            client
                .merge_customers(tenant_request(TENANT, request))
                .await
        }
    });
    let records: BTreeSet<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(response) => response.into_inner().merge_record.unwrap().name,
            Err(status) => panic!("a MergeCustomers twin failed: {}", describe(&status)),
        })
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(count_events(&h.events(&c.name).await, "CustomersMerged"), 1);
}

/// Ledger page tokens are bound to their customer; sizes are validated.
#[tokio::test]
async fn ledger_lists_validate_page_sizes_and_tokens() {
    let h = start().await;
    let a = h.create(customer("A", "a@example.com")).await;
    let b = h.create(customer("B", "b@example.com")).await;
    for c in [&a, &b] {
        for purpose in [ConsentPurpose::Marketing, ConsentPurpose::Surveys] {
            h.set_consent(consent(
                &c.name,
                Channel::Email,
                purpose,
                ConsentStatus::Granted,
                None,
            ))
            .await
            .unwrap();
        }
    }
    let list = |parent: &str, page_size: i32, page_token: &str| pb::ListConsentEventsRequest {
        parent: parent.to_owned(),
        page_size,
        page_token: page_token.to_owned(),
    };
    let token = h
        .client()
        .list_consent_events(tenant_request(TENANT, list(&a.name, 1, "")))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());

    for (case, request) in [
        ("garbage", list(&a.name, 1, "garbage")),
        ("another customer's token", list(&b.name, 1, &token)),
    ] {
        let err = expect_err(
            h.client()
                .list_consent_events(tenant_request(TENANT, request))
                .await,
        );
        assert_error(&err, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
        assert!(
            violation_fields(&err).iter().any(|f| f == "page_token"),
            "{case}: {}",
            describe(&err)
        );
    }
    let err = expect_err(
        h.client()
            .list_consent_events(tenant_request(TENANT, list(&a.name, -5, "")))
            .await,
    );
    assert_violation(&err, "page_size");
    let err = expect_err(
        h.client()
            .list_lifecycle_events(tenant_request(
                TENANT,
                pb::ListLifecycleEventsRequest {
                    parent: a.name.clone(),
                    page_size: -1,
                    page_token: String::new(),
                },
            ))
            .await,
    );
    assert_violation(&err, "page_size");
    let err = expect_err(
        h.client()
            .list_lifecycle_events(tenant_request(
                TENANT,
                pb::ListLifecycleEventsRequest {
                    parent: b.name.clone(),
                    page_size: 1,
                    page_token: token.clone(),
                },
            ))
            .await,
    );
    assert_error(&err, Code::InvalidArgument, "INVALID_PAGE_TOKEN");
}

#[tokio::test]
async fn the_privacy_notice_shown_is_kept_with_the_decision() {
    let h = start().await;
    let c = h.create(customer("Ada", "ada@example.com")).await;
    let recorded = h
        .set_consent(pb::SetConsentRequest {
            privacy_notice_version: " 2026-03 ".into(),
            ..consent(
                &c.name,
                Channel::Email,
                ConsentPurpose::Marketing,
                ConsentStatus::Granted,
                None,
            )
        })
        .await
        .unwrap();
    let event = recorded.consent_event.unwrap();
    assert_eq!(event.privacy_notice_version, "2026-03");
    let state = &recorded.customer.unwrap().consents[0];
    assert_eq!(state.privacy_notice_version, "2026-03");
    // Read back: in the ledger and on the customer.
    assert_eq!(
        h.consent_events(&c.name).await[0].privacy_notice_version,
        "2026-03"
    );
    assert_eq!(
        h.get(&c.name).await.consents[0].privacy_notice_version,
        "2026-03"
    );
    // Not recorded: empty.
    let plain = h
        .set_consent(consent(
            &c.name,
            Channel::Sms,
            ConsentPurpose::Marketing,
            ConsentStatus::Granted,
            None,
        ))
        .await
        .unwrap();
    assert_eq!(plain.consent_event.unwrap().privacy_notice_version, "");
}
