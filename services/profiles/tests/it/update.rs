//! UpdateCustomer: field masks, etags and optimistic concurrency, identity
//! clashes, non-active customers, idempotency and the CustomerUpdated event.

use std::collections::BTreeSet;

use crate::harness::*;
use pb::{Birthday, ContactPreferences, CustomerState, QuietHours};
use tonic::Code;

fn rich_customer() -> pb::Customer {
    pb::Customer {
        given_name: "Ada".into(),
        family_name: "Lovelace".into(),
        locale: "en-GB".into(),
        time_zone: "Europe/London".into(),
        birthday: Some(Birthday {
            month: 12,
            day: 10,
            year: 1985,
        }),
        contact_preferences: Some(ContactPreferences {
            preferred_channel: Channel::Email as i32,
            preferred_language: "en".into(),
            quiet_hours: Some(QuietHours {
                start: "22:00".into(),
                end: "07:00".into(),
            }),
            do_not_contact: false,
        }),
        tags: vec!["vip".into()],
        attributes: [
            ("plan".to_owned(), attr_str("gold")),
            ("seats".to_owned(), attr_int(5)),
        ]
        .into(),
        ..customer("Ada Lovelace", "ada@example.com")
    }
}

#[tokio::test]
async fn only_masked_fields_change() {
    let h = start().await;
    let created = h.create(rich_customer()).await;
    let updated = h
        .update(
            pb::Customer {
                name: created.name.clone(),
                display_name: "Countess of Lovelace".into(),
                // Not in the mask: must be left alone.
                given_name: String::new(),
                locale: "fr-FR".into(),
                tags: vec![],
                ..Default::default()
            },
            &["display_name"],
        )
        .await
        .unwrap_or_else(|s| panic!("{}", describe(&s)));
    assert_eq!(updated.display_name, "Countess of Lovelace");
    let mut expected = created.clone();
    expected.display_name = updated.display_name.clone();
    expected.etag = updated.etag.clone();
    expected.update_time = updated.update_time;
    assert_eq!(updated, expected, "nothing but display_name changed");
    assert_ne!(updated.etag, created.etag);
    assert!(
        to_chrono(updated.update_time.as_ref().unwrap())
            >= to_chrono(created.update_time.as_ref().unwrap())
    );
    assert_eq!(h.get(&created.name).await, updated);
}

#[tokio::test]
async fn every_updatable_path_can_be_replaced() {
    let h = start().await;
    let created = h.create(rich_customer()).await;
    let new = pb::Customer {
        name: created.name.clone(),
        display_name: "A. L.".into(),
        given_name: "Augusta".into(),
        family_name: "King".into(),
        emails: vec![email("augusta@example.com")],
        phones: vec![phone("+442079460000")],
        identities: vec![identity(Channel::Social, "mastodon", "ada")],
        locale: "de-DE".into(),
        time_zone: "Europe/Berlin".into(),
        birthday: Some(Birthday {
            month: 1,
            day: 2,
            year: 0,
        }),
        contact_preferences: Some(ContactPreferences {
            preferred_channel: Channel::Sms as i32,
            preferred_language: "de".into(),
            quiet_hours: None,
            do_not_contact: true,
        }),
        tags: vec!["engine".into(), "poet".into()],
        attributes: [("analytical".to_owned(), attr_bool(true))].into(),
        ..Default::default()
    };
    let updated = h
        .update(
            new.clone(),
            &[
                "display_name",
                "given_name",
                "family_name",
                "emails",
                "phones",
                "identities",
                "locale",
                "time_zone",
                "birthday",
                "contact_preferences",
                "tags",
                "attributes",
            ],
        )
        .await
        .unwrap_or_else(|s| panic!("{}", describe(&s)));
    assert_eq!(updated.display_name, new.display_name);
    assert_eq!(updated.given_name, new.given_name);
    assert_eq!(updated.family_name, new.family_name);
    assert_eq!(updated.emails.len(), 1);
    assert!(
        updated.emails[0]
            .address
            .eq_ignore_ascii_case("augusta@example.com")
    );
    assert!(updated.emails[0].primary, "a lone email becomes primary");
    assert_eq!(updated.phones[0].number, "+442079460000");
    assert_eq!(updated.identities, new.identities);
    assert_eq!(updated.locale, "de-DE");
    assert_eq!(updated.time_zone, "Europe/Berlin");
    assert_eq!(updated.birthday, new.birthday);
    let prefs = updated.contact_preferences.clone().unwrap();
    assert!(prefs.do_not_contact);
    assert_eq!(prefs.preferred_channel, Channel::Sms as i32);
    assert!(prefs.quiet_hours.is_none());
    let tags: BTreeSet<_> = updated.tags.iter().cloned().collect();
    assert_eq!(tags, ["engine".to_owned(), "poet".to_owned()].into());
    assert_eq!(updated.attributes, new.attributes);

    // The old identities are free again; the new ones are taken.
    assert_error(
        &expect_err(h.lookup_in(TENANT, by_email("ada@example.com")).await),
        Code::NotFound,
        "CUSTOMER_NOT_FOUND",
    );
    let found = h
        .lookup_in(TENANT, by_email("augusta@example.com"))
        .await
        .unwrap();
    assert_eq!(found.name, created.name);
    h.create(customer("New Ada", "ada@example.com")).await;
}

#[tokio::test]
async fn contact_preference_sub_fields_update_alone() {
    let h = start().await;
    let created = h.create(rich_customer()).await;
    let updated = h
        .update(
            pb::Customer {
                name: created.name.clone(),
                contact_preferences: Some(ContactPreferences {
                    do_not_contact: true,
                    // Not masked: must be kept.
                    preferred_channel: Channel::Social as i32,
                    ..Default::default()
                }),
                ..Default::default()
            },
            &["contact_preferences.do_not_contact"],
        )
        .await
        .unwrap_or_else(|s| panic!("{}", describe(&s)));
    let before = created.contact_preferences.unwrap();
    let after = updated.contact_preferences.unwrap();
    assert!(after.do_not_contact);
    assert_eq!(after.preferred_channel, before.preferred_channel);
    assert_eq!(after.preferred_language, before.preferred_language);
    assert_eq!(after.quiet_hours, before.quiet_hours);

    let updated = h
        .update(
            pb::Customer {
                name: created.name.clone(),
                contact_preferences: Some(ContactPreferences {
                    quiet_hours: Some(QuietHours {
                        start: "23:15".into(),
                        end: "06:45".into(),
                    }),
                    preferred_language: "fr".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &[
                "contact_preferences.quiet_hours",
                "contact_preferences.preferred_language",
                "contact_preferences.preferred_channel",
            ],
        )
        .await
        .unwrap_or_else(|s| panic!("{}", describe(&s)));
    let after = updated.contact_preferences.unwrap();
    assert!(after.do_not_contact, "kept from the previous update");
    assert_eq!(after.preferred_language, "fr");
    assert_eq!(after.preferred_channel, Channel::Unspecified as i32);
    assert_eq!(after.quiet_hours.unwrap().start, "23:15");
}

#[tokio::test]
async fn attribute_keys_can_be_set_and_removed_one_by_one() {
    let h = start().await;
    let created = h.create(rich_customer()).await;
    let updated = h
        .update(
            pb::Customer {
                name: created.name.clone(),
                // `seats` is masked but absent: removed. `trial` is added.
                // `plan` is not masked: kept.
                attributes: [
                    ("trial".to_owned(), attr_bool(true)),
                    ("plan".to_owned(), attr_str("ignored")),
                ]
                .into(),
                ..Default::default()
            },
            &["attributes.seats", "attributes.trial"],
        )
        .await
        .unwrap_or_else(|s| panic!("{}", describe(&s)));
    let expected = [
        ("plan".to_owned(), attr_str("gold")),
        ("trial".to_owned(), attr_bool(true)),
    ]
    .into();
    assert_eq!(updated.attributes, expected);
}

#[tokio::test]
async fn the_update_mask_is_required_and_limited_to_updatable_paths() {
    let h = start().await;
    let created = h.create(rich_customer()).await;
    let target = || pb::Customer {
        name: created.name.clone(),
        display_name: "Changed".into(),
        ..Default::default()
    };

    let err = expect_err(h.update(target(), &[]).await);
    assert_violation(&err, "update_mask");
    let err = expect_err(
        h.client()
            .update_customer(tenant_request(
                TENANT,
                pb::UpdateCustomerRequest {
                    customer: Some(target()),
                    update_mask: None,
                    request_id: String::new(),
                },
            ))
            .await,
    );
    assert_violation(&err, "update_mask");

    for (paths, bad_index) in [
        (&["state"][..], 0),
        (&["display_name", "etag"][..], 1),
        (&["lifecycle_stage"][..], 0),
        (&["create_time"][..], 0),
        (&["update_time"][..], 0),
        (&["consents"][..], 0),
        (&["merged_into"][..], 0),
        (&["name"][..], 0),
        (&["display_name", "tags", "no_such_field"][..], 2),
        (&["contact_preferences.no_such_field"][..], 0),
    ] {
        let err = expect_err(h.update(target(), paths).await);
        assert_violation(&err, &format!("update_mask.paths[{bad_index}]"));
    }
    assert_eq!(
        h.get(&created.name).await,
        created,
        "no rejected update changed anything"
    );
}

#[tokio::test]
async fn invalid_values_in_an_update_are_field_violations() {
    let h = start().await;
    let created = h.create(rich_customer()).await;
    let err = expect_err(
        h.update(
            pb::Customer {
                name: created.name.clone(),
                emails: vec![email("broken")],
                time_zone: "Atlantis/Capital".into(),
                ..Default::default()
            },
            &["emails", "time_zone"],
        )
        .await,
    );
    assert_violation(&err, "customer.emails[0].address");
    assert_violation(&err, "customer.time_zone");
    assert_eq!(h.get(&created.name).await, created);
}

#[tokio::test]
async fn bad_or_unknown_names_in_an_update() {
    let h = start().await;
    let err = expect_err(
        h.update(
            pb::Customer {
                name: "customers/not-a-uuid".into(),
                display_name: "x".into(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await,
    );
    assert_eq!(err.code(), Code::InvalidArgument, "{}", describe(&err));
    let err = expect_err(
        h.update(
            pb::Customer {
                name: unknown_customer(),
                display_name: "x".into(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await,
    );
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
}

#[tokio::test]
async fn etags_guard_updates() {
    let h = start().await;
    let created = h.create(rich_customer()).await;

    let err = expect_err(
        h.update(
            pb::Customer {
                name: created.name.clone(),
                display_name: "Stale".into(),
                etag: "W/\"not-the-etag\"".into(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await,
    );
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");

    let first = h
        .update(
            pb::Customer {
                name: created.name.clone(),
                display_name: "First".into(),
                etag: created.etag.clone(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await
        .unwrap();
    assert_ne!(first.etag, created.etag);

    // The etag read before the first update is now stale.
    let err = expect_err(
        h.update(
            pb::Customer {
                name: created.name.clone(),
                display_name: "Lost".into(),
                etag: created.etag.clone(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await,
    );
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(h.get(&created.name).await.display_name, "First");

    // An empty etag skips the check.
    let second = h
        .update(
            pb::Customer {
                name: created.name.clone(),
                display_name: "Second".into(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await
        .unwrap();
    assert_ne!(second.etag, first.etag);
    assert_ne!(second.etag, created.etag);
    assert_eq!(h.get(&created.name).await.etag, second.etag);
}

/// Read-modify-write with etags from concurrent writers loses no update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_write_loses_no_update() {
    const WRITERS: usize = 8;
    let h = start().await;
    let created = h
        .create(pb::Customer {
            tags: vec![],
            ..customer("Contended", "contended@example.com")
        })
        .await;

    let writers = (0..WRITERS).map(|i| {
        let mut client = h.client();
        let name = created.name.clone();
        tokio::spawn(async move {
            let tag = format!("writer-{i}");
            for _attempt in 0..500 {
                let current = client
                    .get_customer(tenant_request(
                        TENANT,
                        pb::GetCustomerRequest { name: name.clone() },
                    ))
                    .await
                    .expect("get")
                    .into_inner()
                    .customer
                    .unwrap();
                let mut tags = current.tags.clone();
                tags.push(tag.clone());
                let request = pb::UpdateCustomerRequest {
                    customer: Some(pb::Customer {
                        name: name.clone(),
                        tags,
                        etag: current.etag.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(mask(&["tags"])),
                    request_id: String::new(),
                };
                match client
                    .update_customer(tenant_request(TENANT, request))
                    .await
                {
                    Ok(_) => return,
                    Err(status) if status.code() == Code::Aborted => continue,
                    Err(status) => panic!("writer {i}: {}", describe(&status)),
                }
            }
            panic!("writer {i} never won the race");
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.expect("writer task");
    }

    let tags: BTreeSet<String> = h.get(&created.name).await.tags.into_iter().collect();
    let expected: BTreeSet<String> = (0..WRITERS).map(|i| format!("writer-{i}")).collect();
    assert_eq!(tags, expected);
    let events = h.events(&created.name).await;
    assert_eq!(count_events(&events, "CustomerUpdated"), WRITERS);
}

#[tokio::test]
async fn an_update_that_clashes_with_another_customer_changes_nothing() {
    let h = start().await;
    let other = h.create(customer("Other", "taken@example.com")).await;
    let created = h.create(rich_customer()).await;
    let events_before = h.events(&created.name).await.len();

    let err = expect_err(
        h.update(
            pb::Customer {
                name: created.name.clone(),
                display_name: "Would change".into(),
                emails: vec![email("ada@example.com"), email("TAKEN@example.com")],
                ..Default::default()
            },
            &["display_name", "emails"],
        )
        .await,
    );
    assert_error(&err, Code::AlreadyExists, "IDENTITY_ALREADY_EXISTS");
    assert_eq!(error_metadata(&err).get("holder"), Some(&other.name));
    assert_eq!(h.get(&created.name).await, created, "nothing changed");
    assert_eq!(
        h.events(&created.name).await.len(),
        events_before,
        "no event"
    );
}

#[tokio::test]
async fn a_stale_etag_writes_no_event() {
    let h = start().await;
    let created = h.create(rich_customer()).await;
    let err = expect_err(
        h.update(
            pb::Customer {
                name: created.name.clone(),
                display_name: "Nope".into(),
                etag: "stale".into(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await,
    );
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(
        event_types(&h.events(&created.name).await),
        vec!["rapport.profiles.v1.CustomerCreated".to_owned()]
    );
}

#[tokio::test]
async fn update_writes_customer_updated_with_the_changed_paths() {
    let h = start().await;
    let created = h.create(rich_customer()).await;
    h.update(
        pb::Customer {
            name: created.name.clone(),
            display_name: "Renamed".into(),
            tags: vec!["vip".into(), "speaker".into()],
            ..Default::default()
        },
        &["display_name", "tags"],
    )
    .await
    .unwrap();
    let events = h.events(&created.name).await;
    assert_eq!(
        event_types(&events),
        vec![
            "rapport.profiles.v1.CustomerCreated".to_owned(),
            "rapport.profiles.v1.CustomerUpdated".to_owned()
        ]
    );
    let updated: pb::CustomerUpdated = payload(&events[1]);
    assert_eq!(updated.customer, created.name);
    let paths: BTreeSet<&str> = updated.changed_paths.iter().map(String::as_str).collect();
    assert!(paths.contains("display_name"), "{paths:?}");
    assert!(paths.contains("tags"), "{paths:?}");
    assert!(!paths.contains("emails"), "{paths:?}");
    assert_eq!(events[1].tenant, TENANT);
    assert_eq!(events[1].subject, created.name);
}

#[tokio::test]
async fn an_update_replayed_with_its_request_id_applies_once() {
    let h = start().await;
    let created = h.create(rich_customer()).await;
    let request = pb::Customer {
        name: created.name.clone(),
        tags: vec!["vip".into(), "replayed".into()],
        ..Default::default()
    };
    let first = h
        .update_with_id(request.clone(), &["tags"], "upd-1")
        .await
        .unwrap();
    // Change the customer in between: the replay must still answer the
    // first result and not re-apply.
    h.update(
        pb::Customer {
            name: created.name.clone(),
            display_name: "Between".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap();
    let replay = h
        .update_with_id(request.clone(), &["tags"], "upd-1")
        .await
        .unwrap();
    assert_eq!(
        replay.etag, first.etag,
        "the replay answers the first result"
    );
    assert_eq!(h.get(&created.name).await.display_name, "Between");
    assert_eq!(
        count_events(&h.events(&created.name).await, "CustomerUpdated"),
        2
    );

    let err = expect_err(
        h.update_with_id(
            pb::Customer {
                tags: vec!["different".into()],
                ..request
            },
            &["tags"],
            "upd-1",
        )
        .await,
    );
    assert_error(&err, Code::InvalidArgument, "REQUEST_ID_REUSED");
}

/// An update that changes nothing is still answered under its request id:
/// its retry after another writer's change replays that answer instead of
/// applying the request again over the other change.
#[tokio::test]
async fn a_retried_update_that_changed_nothing_does_not_undo_a_later_change() {
    let h = start().await;
    let created = h.create(rich_customer()).await;
    let same_name = pb::Customer {
        name: created.name.clone(),
        display_name: created.display_name.clone(),
        ..Default::default()
    };
    let first = h
        .update_with_id(same_name.clone(), &["display_name"], "noop-1")
        .await
        .unwrap();
    assert_eq!(first.etag, created.etag, "nothing changed");
    h.update(
        pb::Customer {
            name: created.name.clone(),
            display_name: "Renamed by someone else".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap();
    let retry = h
        .update_with_id(same_name, &["display_name"], "noop-1")
        .await
        .unwrap();
    assert_eq!(retry, first, "the retry answers the first result");
    assert_eq!(
        h.get(&created.name).await.display_name,
        "Renamed by someone else",
        "the retry did not undo the later change"
    );
}

#[tokio::test]
async fn merged_and_erased_customers_cannot_be_updated() {
    let h = start().await;
    let survivor = h.create(customer("Survivor", "survivor@example.com")).await;
    let merged = h.create(customer("Merged", "merged@example.com")).await;
    let erased = h.create(customer("Erased", "erased@example.com")).await;
    h.merge(&survivor.name, &merged.name, "").await.unwrap();
    h.erase(&erased.name, "").await.unwrap();

    for (name, state) in [
        (&merged.name, CustomerState::Merged),
        (&erased.name, CustomerState::Erased),
    ] {
        assert_eq!(h.get(name).await.state, state as i32);
        let err = expect_err(
            h.update(
                pb::Customer {
                    name: name.clone(),
                    display_name: "Resurrected".into(),
                    ..Default::default()
                },
                &["display_name"],
            )
            .await,
        );
        assert_error(&err, Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE");
    }
}
