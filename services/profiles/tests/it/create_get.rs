//! CreateCustomer and GetCustomer: defaults, output-only fields, identity
//! uniqueness, input validation, idempotency and the CustomerCreated event.

use std::collections::BTreeSet;

use crate::harness::*;
use pb::{
    Birthday, ContactPreferences, CustomerState, LifecycleStage, QuietHours,
    lookup_customer_request,
};
use tonic::Code;

#[tokio::test]
async fn create_returns_an_active_customer_with_server_fields() {
    let h = start().await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let created = h
        .create(pb::Customer {
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            locale: "en-GB".into(),
            time_zone: "Europe/London".into(),
            tags: vec!["vip".into()],
            ..customer("Ada Lovelace", "ada@example.com")
        })
        .await;

    customer_uuid(&created.name);
    assert_eq!(created.state, CustomerState::Active as i32);
    assert_eq!(created.lifecycle_stage, LifecycleStage::Awareness as i32);
    assert!(!created.etag.is_empty(), "etag is set");
    let create_time = to_chrono(created.create_time.as_ref().expect("create_time"));
    let update_time = to_chrono(created.update_time.as_ref().expect("update_time"));
    assert!(
        create_time >= before,
        "create_time {create_time} is now-ish"
    );
    assert!(update_time >= create_time);
    assert_eq!(created.display_name, "Ada Lovelace");
    assert_eq!(created.given_name, "Ada");
    assert_eq!(created.family_name, "Lovelace");
    assert_eq!(created.locale, "en-GB");
    assert_eq!(created.time_zone, "Europe/London");
    assert_eq!(created.tags, vec!["vip".to_owned()]);
    assert_eq!(created.emails.len(), 1);
    assert!(
        created.emails[0]
            .address
            .eq_ignore_ascii_case("ada@example.com")
    );
    assert!(created.merged_into.is_empty());

    let fetched = h.get(&created.name).await;
    assert_eq!(fetched, created, "Get returns what Create returned");
}

#[tokio::test]
async fn output_only_fields_are_ignored_on_create() {
    let h = start().await;
    let forged_name = unknown_customer();
    let created = h
        .create(pb::Customer {
            name: forged_name.clone(),
            state: CustomerState::Merged as i32,
            lifecycle_stage: LifecycleStage::Advocacy as i32,
            consents: vec![pb::ConsentState {
                channel: Channel::Email as i32,
                purpose: pb::ConsentPurpose::Marketing as i32,
                status: pb::ConsentStatus::Granted as i32,
                source: "forged".into(),
                capture_time: None,
                privacy_notice_version: String::new(),
            }],
            merged_into: unknown_customer(),
            etag: "forged-etag".into(),
            create_time: Some(prost_types::Timestamp {
                seconds: 946_684_800,
                nanos: 0,
            }),
            update_time: Some(prost_types::Timestamp {
                seconds: 946_684_800,
                nanos: 0,
            }),
            ..customer("Forger", "forger@example.com")
        })
        .await;
    assert_ne!(created.name, forged_name);
    customer_uuid(&created.name);
    assert_eq!(created.state, CustomerState::Active as i32);
    assert_eq!(created.lifecycle_stage, LifecycleStage::Awareness as i32);
    assert!(created.consents.is_empty(), "consents are output only");
    assert!(created.merged_into.is_empty());
    assert_ne!(created.etag, "forged-etag");
    assert!(created.create_time.unwrap().seconds > 946_684_800);
    assert!(created.update_time.unwrap().seconds > 946_684_800);
    let err = expect_err(h.try_get_in(TENANT, &forged_name).await);
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
}

#[tokio::test]
async fn first_email_becomes_primary_and_two_primaries_are_rejected() {
    let h = start().await;
    let created = h
        .create(pb::Customer {
            emails: vec![email("one@example.com"), email("two@example.com")],
            phones: vec![phone("+14155550100"), phone("+14155550101")],
            ..Default::default()
        })
        .await;
    let primaries: Vec<bool> = created.emails.iter().map(|e| e.primary).collect();
    assert_eq!(primaries, vec![true, false]);

    let mut a = email("a@example.com");
    a.primary = true;
    let mut b = email("b@example.com");
    b.primary = true;
    let err = expect_err(
        h.try_create(pb::Customer {
            emails: vec![a, b],
            ..Default::default()
        })
        .await,
    );
    assert_violation_under(&err, "customer.emails");

    // An explicit primary that is not the first is kept.
    let mut second = email("second@example.com");
    second.primary = true;
    let created = h
        .create(pb::Customer {
            emails: vec![email("first@example.com"), second],
            ..Default::default()
        })
        .await;
    let primaries: Vec<bool> = created.emails.iter().map(|e| e.primary).collect();
    assert_eq!(primaries, vec![false, true]);
}

#[tokio::test]
async fn emails_are_unique_case_insensitively_within_a_tenant() {
    let h = start().await;
    let holder = h.create(customer("Ada", "ada@example.com")).await;
    let rows_before = h.outbox_rows(TENANT).await.len();

    let err = expect_err(
        h.try_create(pb::Customer {
            emails: vec![email("other@example.com"), email("ADA@Example.com")],
            ..Default::default()
        })
        .await,
    );
    assert_error(&err, Code::AlreadyExists, "IDENTITY_ALREADY_EXISTS");
    let meta = error_metadata(&err);
    assert_eq!(meta.get("holder"), Some(&holder.name), "{meta:?}");
    assert_eq!(
        meta.get("field").map(String::as_str),
        Some("customer.emails[1].address"),
        "{meta:?}"
    );
    // Errors are logged and shown to callers: they carry no personal data.
    assert!(
        !err.message().to_lowercase().contains("ada@example.com")
            && meta
                .values()
                .all(|v| !v.to_lowercase().contains("ada@example.com")),
        "the error echoes the email: {}",
        describe(&err)
    );
    // Atomic: nothing was created and no event written, and the other,
    // non-clashing address is still free.
    assert_eq!(h.active_names_in(TENANT).await, vec![holder.name.clone()]);
    assert_eq!(h.outbox_rows(TENANT).await.len(), rows_before);
    h.create(customer("Other", "other@example.com")).await;
}

#[tokio::test]
async fn phones_are_unique_after_normalization() {
    let h = start().await;
    let holder = h
        .create(pb::Customer {
            phones: vec![phone("+14155550123")],
            ..Default::default()
        })
        .await;
    let err = expect_err(
        h.try_create(pb::Customer {
            phones: vec![phone("+1 (415) 555-0123")],
            ..Default::default()
        })
        .await,
    );
    assert_error(&err, Code::AlreadyExists, "IDENTITY_ALREADY_EXISTS");
    let meta = error_metadata(&err);
    assert_eq!(meta.get("holder"), Some(&holder.name), "{meta:?}");
    assert_eq!(
        meta.get("field").map(String::as_str),
        Some("customer.phones[0].number"),
        "{meta:?}"
    );
}

/// 'İ' is one character as typed and two in lower case, as stored: a
/// handle within the limit as typed but over it as stored is refused as
/// invalid, never INTERNAL from a column too short (PostgreSQL).
#[tokio::test]
async fn a_handle_that_lengthens_when_lower_cased_is_measured_as_stored() {
    let h = start().await;
    let err = expect_err(
        h.try_create(pb::Customer {
            identities: vec![identity(Channel::Social, "instagram", &"İ".repeat(200))],
            ..Default::default()
        })
        .await,
    );
    assert_violation(&err, "customer.identities[0].handle");
    // At the limit as stored, it is kept.
    let kept = h
        .create(pb::Customer {
            identities: vec![identity(Channel::Social, "instagram", &"İ".repeat(128))],
            ..Default::default()
        })
        .await;
    assert_eq!(kept.identities[0].handle.chars().count(), 128);
}

#[tokio::test]
async fn channel_identities_are_unique_per_channel_provider_and_handle() {
    let h = start().await;
    let holder = h
        .create(pb::Customer {
            identities: vec![identity(Channel::Social, "instagram", "AdaL")],
            ..Default::default()
        })
        .await;
    let err = expect_err(
        h.try_create(pb::Customer {
            identities: vec![identity(Channel::Social, "instagram", "adal")],
            ..Default::default()
        })
        .await,
    );
    assert_error(&err, Code::AlreadyExists, "IDENTITY_ALREADY_EXISTS");
    let meta = error_metadata(&err);
    assert_eq!(meta.get("holder"), Some(&holder.name), "{meta:?}");
    assert!(
        meta.get("field")
            .is_some_and(|f| f.starts_with("customer.identities[0]")),
        "{meta:?}"
    );

    // Another provider or another channel is another identity.
    h.create(pb::Customer {
        identities: vec![identity(Channel::Social, "twitter", "adal")],
        ..Default::default()
    })
    .await;
    h.create(pb::Customer {
        identities: vec![identity(Channel::LiveChat, "", "adal")],
        ..Default::default()
    })
    .await;
}

#[tokio::test]
async fn phone_separators_are_normalized_to_e164() {
    let h = start().await;
    let created = h
        .create(pb::Customer {
            phones: vec![phone("+1 (415) 555-0123"), phone("+44 20 7946 0958")],
            ..Default::default()
        })
        .await;
    let numbers: Vec<&str> = created.phones.iter().map(|p| p.number.as_str()).collect();
    assert_eq!(numbers, vec!["+14155550123", "+442079460958"]);
}

/// Each case is one bad field; the violation must name its path.
#[tokio::test]
async fn invalid_fields_are_named_in_field_violations() {
    let h = start().await;
    let base = || customer("Valid Name", "valid@example.com");
    let too_many_emails: Vec<_> = (0..11)
        .map(|i| email(&format!("e{i}@example.com")))
        .collect();
    let too_many_tags: Vec<String> = (0..51).map(|i| format!("tag{i}")).collect();
    let too_many_attributes = (0..51).map(|i| (format!("key{i}"), attr_int(i))).collect();

    // (case, customer, field, exact?)
    let cases: Vec<(&str, pb::Customer, &str, bool)> = vec![
        (
            "malformed email",
            pb::Customer {
                emails: vec![email("not-an-email")],
                ..base()
            },
            "customer.emails[0].address",
            true,
        ),
        (
            "phone without +",
            pb::Customer {
                phones: vec![phone("4155550123")],
                ..base()
            },
            "customer.phones[0].number",
            true,
        ),
        (
            "phone with letters",
            pb::Customer {
                phones: vec![phone("+1 415 CALL-NOW")],
                ..base()
            },
            "customer.phones[0].number",
            true,
        ),
        (
            "unknown time zone",
            pb::Customer {
                time_zone: "Mars/Olympus_Mons".into(),
                ..base()
            },
            "customer.time_zone",
            true,
        ),
        (
            "locale with underscore",
            pb::Customer {
                locale: "en_US".into(),
                ..base()
            },
            "customer.locale",
            true,
        ),
        (
            "locale that is a word",
            pb::Customer {
                locale: "english".into(),
                ..base()
            },
            "customer.locale",
            true,
        ),
        (
            "unknown channel",
            pb::Customer {
                identities: vec![pb::ChannelIdentity {
                    channel: 99,
                    provider: "x".into(),
                    handle: "h".into(),
                }],
                ..base()
            },
            "customer.identities[0].channel",
            true,
        ),
        (
            "email channel identity",
            pb::Customer {
                identities: vec![identity(Channel::Email, "", "ada@example.com")],
                ..base()
            },
            "customer.identities[0]",
            false,
        ),
        (
            "phone channel identity",
            pb::Customer {
                identities: vec![identity(Channel::Phone, "", "+14155550123")],
                ..base()
            },
            "customer.identities[0]",
            false,
        ),
        (
            "month 13",
            pb::Customer {
                birthday: Some(Birthday {
                    month: 13,
                    day: 1,
                    year: 0,
                }),
                ..base()
            },
            "customer.birthday",
            false,
        ),
        (
            "February 30",
            pb::Customer {
                birthday: Some(Birthday {
                    month: 2,
                    day: 30,
                    year: 1990,
                }),
                ..base()
            },
            "customer.birthday",
            false,
        ),
        (
            "display name of 201 characters",
            pb::Customer {
                display_name: "x".repeat(201),
                ..base()
            },
            "customer.display_name",
            true,
        ),
        (
            "eleven emails",
            pb::Customer {
                emails: too_many_emails,
                ..base()
            },
            "customer.emails",
            true,
        ),
        (
            "51 tags",
            pb::Customer {
                tags: too_many_tags,
                ..base()
            },
            "customer.tags",
            true,
        ),
        (
            "51 attributes",
            pb::Customer {
                attributes: too_many_attributes,
                ..base()
            },
            "customer.attributes",
            true,
        ),
        (
            "attribute string of 1025 characters",
            pb::Customer {
                attributes: [("note".to_owned(), attr_str(&"n".repeat(1025)))].into(),
                ..base()
            },
            "customer.attributes",
            false,
        ),
        (
            "quiet hours not HH:MM",
            pb::Customer {
                contact_preferences: Some(ContactPreferences {
                    quiet_hours: Some(QuietHours {
                        start: "25:00".into(),
                        end: "9am".into(),
                    }),
                    ..Default::default()
                }),
                ..base()
            },
            "customer.contact_preferences.quiet_hours",
            false,
        ),
        (
            "same email twice in one request",
            pb::Customer {
                emails: vec![email("twice@example.com"), email("TWICE@example.com")],
                ..base()
            },
            "customer.emails",
            false,
        ),
        // Limits stated in the proto comments.
        (
            "quiet hours that start when they end",
            pb::Customer {
                contact_preferences: Some(ContactPreferences {
                    quiet_hours: Some(QuietHours {
                        start: "22:00".into(),
                        end: "22:00".into(),
                    }),
                    ..Default::default()
                }),
                ..base()
            },
            "customer.contact_preferences.quiet_hours",
            false,
        ),
        (
            "given name of 101 characters",
            pb::Customer {
                given_name: "g".repeat(101),
                ..base()
            },
            "customer.given_name",
            true,
        ),
        (
            "tag of 65 characters",
            pb::Customer {
                tags: vec!["t".repeat(65)],
                ..base()
            },
            "customer.tags",
            false,
        ),
        (
            "attribute key of 65 characters",
            pb::Customer {
                attributes: [("k".repeat(65), attr_int(1))].into(),
                ..base()
            },
            "customer.attributes",
            false,
        ),
        (
            "attribute without a value",
            pb::Customer {
                attributes: [("empty".to_owned(), pb::AttributeValue { kind: None })].into(),
                ..base()
            },
            "customer.attributes",
            false,
        ),
        (
            "attribute that is not a finite number",
            pb::Customer {
                attributes: [(
                    "ratio".to_owned(),
                    pb::AttributeValue {
                        kind: Some(pb::attribute_value::Kind::DoubleValue(f64::NAN)),
                    },
                )]
                .into(),
                ..base()
            },
            "customer.attributes",
            false,
        ),
        (
            "21 identities",
            pb::Customer {
                identities: (0..21)
                    .map(|i| identity(Channel::LiveChat, "", &format!("visitor-{i}")))
                    .collect(),
                ..base()
            },
            "customer.identities",
            true,
        ),
        (
            "email label of 33 characters",
            pb::Customer {
                emails: vec![pb::EmailAddress {
                    label: "l".repeat(33),
                    ..email("labelled@example.com")
                }],
                ..base()
            },
            "customer.emails[0]",
            false,
        ),
    ];

    for (case, customer, field, exact) in cases {
        let err = match h.try_create(customer).await {
            Ok(created) => panic!("{case}: accepted as {}", created.name),
            Err(status) => status,
        };
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{case}: {}",
            describe(&err)
        );
        if exact {
            assert_violation(&err, field);
        } else {
            assert_violation_under(&err, field);
        }
    }
    assert!(
        h.active_names_in(TENANT).await.is_empty(),
        "no invalid customer was created"
    );
}

#[tokio::test]
async fn valid_edge_values_are_accepted() {
    let h = start().await;
    let created = h
        .create(pb::Customer {
            display_name: "x".repeat(200),
            locale: "fr-CA".into(),
            time_zone: "America/Argentina/Buenos_Aires".into(),
            birthday: Some(Birthday {
                month: 2,
                day: 29,
                year: 0,
            }),
            contact_preferences: Some(ContactPreferences {
                preferred_channel: Channel::Sms as i32,
                preferred_language: "de".into(),
                quiet_hours: Some(QuietHours {
                    start: "22:00".into(),
                    end: "07:30".into(),
                }),
                do_not_contact: false,
            }),
            emails: (0..10)
                .map(|i| email(&format!("e{i}@example.com")))
                .collect(),
            tags: (0..50).map(|i| format!("tag{i}")).collect(),
            attributes: (0..50).map(|i| (format!("key{i}"), attr_int(i))).collect(),
            ..Default::default()
        })
        .await;
    assert_eq!(created.emails.len(), 10);
    assert_eq!(created.tags.len(), 50);
    assert_eq!(created.attributes.len(), 50);
    assert_eq!(created.birthday.unwrap().day, 29);
    let prefs = created.contact_preferences.unwrap();
    assert_eq!(prefs.quiet_hours.unwrap().end, "07:30");
    assert_eq!(prefs.preferred_channel, Channel::Sms as i32);
}

#[tokio::test]
async fn several_bad_fields_give_several_violations() {
    let h = start().await;
    let err = expect_err(
        h.try_create(pb::Customer {
            emails: vec![email("nope")],
            time_zone: "Nowhere/Land".into(),
            locale: "en_US".into(),
            ..Default::default()
        })
        .await,
    );
    assert_violation(&err, "customer.emails[0].address");
    assert_violation(&err, "customer.time_zone");
    assert_violation(&err, "customer.locale");
    assert!(violation_fields(&err).len() >= 3, "{}", describe(&err));
}

#[tokio::test]
async fn a_request_over_the_message_limit_is_rejected_and_creates_nothing() {
    let h = start().await;
    let huge = pb::Customer {
        display_name: "x".repeat(1024 * 1024 + 1),
        ..customer("Huge", "huge@example.com")
    };
    let err = expect_err(h.try_create(huge).await);
    // The server turns tonic's bare OUT_OF_RANGE into the same shape as every
    // other invalid request: INVALID_ARGUMENT with ErrorInfo, not retryable.
    assert_error(&err, Code::InvalidArgument, "REQUEST_TOO_LARGE");
    assert_eq!(violation_fields(&err), ["request"], "{}", describe(&err));
    assert!(h.active_names_in(TENANT).await.is_empty());
    assert!(h.outbox_rows(TENANT).await.is_empty());
}

#[tokio::test]
async fn bytes_that_are_not_the_request_message_are_invalid_argument() {
    let h = start().await;
    // Field 1 (name) claims 21 bytes and brings 20: not a GetCustomerRequest.
    let mut truncated = b"\n\x15".to_vec();
    truncated.extend_from_slice(b"customers/not-a-uuid");
    let path = "/rapport.profiles.v1.ProfilesService/GetCustomer";
    let err = rapport_testkit::raw_unary(
        h.channel.clone(),
        path,
        rapport_testkit::request_with_claims(
            &rapport_testkit::claims_for(path, TENANT, &["profiles.read"]),
            truncated,
        ),
    )
    .await
    .expect_err("a malformed message is refused");
    // tonic says INTERNAL (a server fault, so retried); the server answers
    // like every other invalid request instead.
    assert_error(&err, Code::InvalidArgument, "MALFORMED_MESSAGE");
    assert_eq!(violation_fields(&err), ["request"], "{}", describe(&err));
}

#[tokio::test]
async fn concurrent_creates_with_one_request_id_create_one_customer() {
    let h = start().await;
    once_under_concurrency(&h, customer("Once", "once@example.com")).await;
}

/// Without an e-mail or phone nothing but the request id can clash: the
/// twins lose on the idempotency key alone.
#[tokio::test]
async fn concurrent_creates_with_one_request_id_and_no_identity_create_one_customer() {
    let h = start().await;
    once_under_concurrency(
        &h,
        pb::Customer {
            display_name: "Nameless Once".into(),
            ..Default::default()
        },
    )
    .await;
}

async fn once_under_concurrency(h: &Harness, customer: pb::Customer) {
    let request = pb::CreateCustomerRequest {
        customer: Some(customer),
        request_id: "4b0f1a0e-create-once".into(),
    };
    let calls = (0..10).map(|_| {
        let mut client = h.client();
        let request = request.clone();
        async move {
            client
                .create_customer(tenant_request(TENANT, request))
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let names: BTreeSet<String> = results
        .into_iter()
        .map(|r| match r {
            Ok(response) => response.into_inner().customer.unwrap().name,
            Err(status) => panic!("a replay failed: {}", describe(&status)),
        })
        .collect();
    assert_eq!(
        names.len(),
        1,
        "every replay returns the same customer: {names:?}"
    );
    let name = names.into_iter().next().unwrap();
    assert_eq!(h.active_names_in(TENANT).await, vec![name.clone()]);
    assert_eq!(count_events(&h.events(&name).await, "CustomerCreated"), 1);
}

/// Concurrent creates are committed together (SQLite's group commit) or
/// race on PostgreSQL: either way one customer holds the address, every
/// other request is told who, and no loser left anything behind.
#[tokio::test]
async fn concurrent_creates_of_one_email_create_one_customer_and_name_it_to_the_rest() {
    let h = start().await;
    let calls = (0..12).map(|i| {
        let mut client = h.client();
        async move {
            client
                .create_customer(tenant_request(
                    TENANT,
                    pb::CreateCustomerRequest {
                        customer: Some(customer(&format!("Racer {i}"), "race@example.com")),
                        request_id: format!("4b0f1a0e-race-{i}"),
                    },
                ))
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let loser = results.iter().position(Result::is_err).expect("a loser");
    let (won, lost): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(won.len(), 1, "exactly one create wins: {lost:?}");
    let winner = won.into_iter().next().unwrap().unwrap().into_inner();
    let winner = winner.customer.unwrap().name;
    for status in lost.into_iter().map(Result::unwrap_err) {
        assert_error(&status, Code::AlreadyExists, "IDENTITY_ALREADY_EXISTS");
        assert_eq!(error_metadata(&status).get("holder"), Some(&winner));
    }
    assert_eq!(h.active_names_in(TENANT).await, vec![winner.clone()]);
    assert_eq!(h.outbox_rows(TENANT).await.len(), 1);
    // The losers' request ids were not spent: one of them, with a free
    // address, creates.
    h.try_create_in(
        TENANT,
        customer("Racer", "racer@example.com"),
        &format!("4b0f1a0e-race-{loser}"),
    )
    .await
    .expect("a loser's request id is free again");
}

#[tokio::test]
async fn a_request_id_reused_for_another_body_is_rejected() {
    let h = start().await;
    let first = h
        .try_create_in(TENANT, customer("First", "first@example.com"), "req-1")
        .await
        .unwrap();
    let replay = h
        .try_create_in(TENANT, customer("First", "first@example.com"), "req-1")
        .await
        .unwrap();
    assert_eq!(replay.name, first.name);
    assert_eq!(replay.etag, first.etag);

    let err = expect_err(
        h.try_create_in(TENANT, customer("Second", "second@example.com"), "req-1")
            .await,
    );
    assert_error(&err, Code::InvalidArgument, "REQUEST_ID_REUSED");
    assert_eq!(h.active_names_in(TENANT).await, vec![first.name]);

    // Keys are per tenant: another tenant may use the same request id.
    h.try_create_in(
        OTHER_TENANT,
        customer("Second", "second@example.com"),
        "req-1",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn malformed_request_ids_are_rejected() {
    let h = start().await;
    for bad in [
        "has space".to_owned(),
        "r".repeat(129),
        "tab\there".to_owned(),
    ] {
        let err = expect_err(
            h.try_create_in(TENANT, customer("X", "x@example.com"), &bad)
                .await,
        );
        assert_violation(&err, "request_id");
    }
    h.try_create_in(TENANT, customer("X", "x@example.com"), &"r".repeat(128))
        .await
        .unwrap();
}

#[tokio::test]
async fn create_writes_one_customer_created_event() {
    let h = start().await;
    let created = h.create(customer("Evented", "evented@example.com")).await;
    let events = h.events(&created.name).await;
    assert_eq!(
        event_types(&events),
        vec!["rapport.profiles.v1.CustomerCreated".to_owned()]
    );
    let envelope = &events[0];
    assert_eq!(envelope.tenant, TENANT);
    assert_eq!(envelope.subject, created.name);
    assert!(!envelope.id.is_empty());
    assert!(envelope.occur_time.is_some());
    let any = envelope.payload.as_ref().unwrap();
    assert!(
        any.type_url
            .ends_with("rapport.profiles.v1.CustomerCreated"),
        "{}",
        any.type_url
    );
    let event: pb::CustomerCreated = payload(envelope);
    assert_eq!(event.customer, created.name);
    assert_eq!(event.lifecycle_stage, LifecycleStage::Awareness as i32);
    // Nothing for the other tenant.
    assert!(h.outbox_rows(OTHER_TENANT).await.is_empty());
}

#[tokio::test]
async fn created_customers_can_be_looked_up_by_every_identity() {
    let h = start().await;
    let created = h
        .create(pb::Customer {
            phones: vec![phone("+14155550199")],
            identities: vec![identity(Channel::LiveChat, "", "visitor-42")],
            ..customer("Findable", "findable@example.com")
        })
        .await;
    for key in [
        by_email("findable@example.com"),
        by_phone("+14155550199"),
        by_identity(Channel::LiveChat, "", "visitor-42"),
        lookup_customer_request::Identity::Email("FINDABLE@EXAMPLE.COM".into()),
    ] {
        let found = h.lookup_in(TENANT, key.clone()).await.unwrap_or_else(|s| {
            panic!("lookup {key:?}: {}", describe(&s));
        });
        assert_eq!(found.name, created.name);
    }
}
