//! ResolveCustomer: find-or-create by one identity, what every channel
//! adapter calls for the sender of an inbound message.
use pb::resolve_customer_request::Identity;
use tonic::Code;

use crate::harness::*;

async fn resolve_in(
    h: &Harness,
    tenant: &str,
    identity: Identity,
    display_name: &str,
) -> Result<(pb::Customer, bool), tonic::Status> {
    let request = pb::ResolveCustomerRequest {
        identity: Some(identity),
        display_name: display_name.into(),
        locale: "en-GB".into(),
        time_zone: "Europe/London".into(),
    };
    h.client()
        .resolve_customer(tenant_request(tenant, request))
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.customer.expect("a customer"), r.created)
        })
}

#[tokio::test]
async fn fifty_concurrent_calls_for_a_new_identity_create_one_customer() {
    let h = start().await;
    let calls = (0..50).map(|_| {
        let h = &h;
        async move {
            resolve_in(
                h,
                TENANT,
                Identity::Email("New.Person@Example.com".into()),
                "New Person",
            )
            .await
        }
    });
    let answers = futures::future::join_all(calls).await;
    let answers: Vec<_> = answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|s| panic!("every call answers: {}", describe(&s))))
        .collect();
    let created = answers.iter().filter(|(_, created)| *created).count();
    assert_eq!(created, 1, "exactly one call created it");
    let name = &answers[0].0.name;
    assert!(
        answers.iter().all(|(c, _)| &c.name == name),
        "all answer the same customer"
    );
    assert_eq!(h.active_names_in(TENANT).await, std::slice::from_ref(name));
    let c = &answers[0].0;
    assert_eq!(c.display_name, "New Person");
    assert_eq!(c.locale, "en-GB");
    assert_eq!(c.time_zone, "Europe/London");
    assert!(
        c.emails
            .iter()
            .any(|e| e.address.eq_ignore_ascii_case("new.person@example.com") && e.primary)
    );
    // Later calls find it, whatever the case, and ignore their hints.
    let (again, created) = resolve_in(
        &h,
        TENANT,
        Identity::Email("new.person@EXAMPLE.com".into()),
        "Someone Else",
    )
    .await
    .unwrap();
    assert!(!created);
    assert_eq!(&again.name, name);
    assert_eq!(again.display_name, "New Person");
    // Another tenant's identity is another customer.
    let (theirs, created) = resolve_in(
        &h,
        OTHER_TENANT,
        Identity::Email("new.person@example.com".into()),
        "",
    )
    .await
    .unwrap();
    assert!(created);
    assert_ne!(&theirs.name, name);
}

#[tokio::test]
async fn a_merged_identity_resolves_to_the_survivor_and_an_erased_one_to_a_new_customer() {
    let h = start().await;
    let (survivor, _) = resolve_in(&h, TENANT, Identity::Phone("+442071838750".into()), "Keep")
        .await
        .unwrap();
    let (merged, created) = resolve_in(
        &h,
        TENANT,
        Identity::Email("merged@example.com".into()),
        "Go",
    )
    .await
    .unwrap();
    assert!(created);
    h.merge(&survivor.name, &merged.name, "").await.unwrap();
    let (found, created) = resolve_in(&h, TENANT, Identity::Email("merged@example.com".into()), "")
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(found.name, survivor.name, "the survivor");

    h.erase(&survivor.name, "").await.unwrap();
    let (fresh, created) = resolve_in(&h, TENANT, Identity::Phone("+442071838750".into()), "Back")
        .await
        .unwrap();
    assert!(created, "the erased customer is not revived");
    assert_ne!(fresh.name, survivor.name);
    assert_eq!(fresh.state, pb::CustomerState::Active as i32);
}

#[tokio::test]
async fn resolve_names_its_bad_fields() {
    let h = start().await;
    let request = pb::ResolveCustomerRequest::default();
    let status = h
        .client()
        .resolve_customer(tenant_request(TENANT, request))
        .await
        .unwrap_err();
    assert_violation(&status, "identity");
    let status = resolve_in(&h, TENANT, Identity::Email("not an address".into()), "")
        .await
        .unwrap_err();
    assert_violation(&status, "email");
    let request = pb::ResolveCustomerRequest {
        identity: Some(Identity::Phone("+442071838751".into())),
        time_zone: "Mars/Olympus".into(),
        ..Default::default()
    };
    let status = h
        .client()
        .resolve_customer(tenant_request(TENANT, request))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_violation(&status, "time_zone");
    assert!(
        h.active_names_in(TENANT).await.is_empty(),
        "nothing created"
    );
}
