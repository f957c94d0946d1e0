//! Tenant metadata and isolation, and resource-name validation.

use crate::harness::*;
use pb::{ListCustomersRequest, SearchCustomersRequest};
use tonic::Code;

#[tokio::test]
async fn calls_without_a_valid_tenant_are_unauthenticated() {
    let h = start().await;
    let mut client = h.client();

    let err = expect_err(
        client
            .create_customer(tonic::Request::new(pb::CreateCustomerRequest {
                customer: Some(customer("No Tenant", "none@example.com")),
                request_id: String::new(),
            }))
            .await,
    );
    assert_error(&err, Code::Unauthenticated, "ASSERTION_MISSING");
    let err = expect_err(
        client
            .list_customers(tonic::Request::new(ListCustomersRequest::default()))
            .await,
    );
    assert_error(&err, Code::Unauthenticated, "ASSERTION_MISSING");
    let err = expect_err(
        client
            .get_customer(tonic::Request::new(pb::GetCustomerRequest {
                name: unknown_customer(),
            }))
            .await,
    );
    assert_error(&err, Code::Unauthenticated, "ASSERTION_MISSING");

    for bad in ["ACME", "-acme", "acme corp", "a/b", &"a".repeat(64)] {
        let err = expect_err(
            client
                .list_customers(tenant_request(bad, ListCustomersRequest::default()))
                .await,
        );
        assert_error(&err, Code::Unauthenticated, "TENANT_INVALID");
        let err = expect_err(
            client
                .create_customer(tenant_request(
                    bad,
                    pb::CreateCustomerRequest {
                        customer: Some(customer("Bad Tenant", "bad@example.com")),
                        request_id: String::new(),
                    },
                ))
                .await,
        );
        assert_error(&err, Code::Unauthenticated, "TENANT_INVALID");
    }
    // A client-claimed tenant is ignored: only the gateway's assertion counts.
    let err = expect_err(
        client
            .list_customers(rapport_testkit::spoofed_tenant_request(
                TENANT,
                ListCustomersRequest::default(),
            ))
            .await,
    );
    assert_error(&err, Code::Unauthenticated, "ASSERTION_MISSING");
    // An assertion signed with any key but the gateway's is a forgery.
    let err = expect_err(
        client
            .list_customers(rapport_testkit::signed_request(
                b"not-the-gateway-key-not-the-gateway-key",
                TENANT,
                ListCustomersRequest::default(),
            ))
            .await,
    );
    assert_error(&err, Code::Unauthenticated, "ASSERTION_INVALID");
    // Edge of the valid range.
    client
        .list_customers(tenant_request(
            &"a".repeat(63),
            ListCustomersRequest::default(),
        ))
        .await
        .unwrap();
    client
        .list_customers(tenant_request(
            "0-tenant_x",
            ListCustomersRequest::default(),
        ))
        .await
        .unwrap();

    // Nothing was created anywhere.
    assert!(h.active_names_in(TENANT).await.is_empty());
    assert!(h.outbox_rows("acme").await.is_empty());
}

#[tokio::test]
async fn tenants_are_isolated() {
    let h = start().await;
    let a = h
        .create(pb::Customer {
            phones: vec![phone("+14155550123")],
            identities: vec![identity(Channel::LiveChat, "", "visitor-7")],
            ..customer("Shared Name", "shared@example.com")
        })
        .await;

    let err = expect_err(h.try_get_in(OTHER_TENANT, &a.name).await);
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    assert!(h.active_names_in(OTHER_TENANT).await.is_empty());
    let found = h
        .client()
        .search_customers(tenant_request(
            OTHER_TENANT,
            SearchCustomersRequest {
                query: "shared".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(found.customers.is_empty());
    for key in [
        by_email("shared@example.com"),
        by_phone("+14155550123"),
        by_identity(Channel::LiveChat, "", "visitor-7"),
    ] {
        let err = expect_err(h.lookup_in(OTHER_TENANT, key).await);
        assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    }
    let err = expect_err(
        h.client()
            .update_customer(tenant_request(
                OTHER_TENANT,
                pb::UpdateCustomerRequest {
                    customer: Some(pb::Customer {
                        name: a.name.clone(),
                        display_name: "Hijacked".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(mask(&["display_name"])),
                    request_id: String::new(),
                },
            ))
            .await,
    );
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    let err = expect_err(
        h.client()
            .list_consent_events(tenant_request(
                OTHER_TENANT,
                pb::ListConsentEventsRequest {
                    parent: a.name.clone(),
                    ..Default::default()
                },
            ))
            .await,
    );
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");

    // Uniqueness is per tenant: the same identities are free in B.
    let b = h
        .create_in(
            OTHER_TENANT,
            pb::Customer {
                phones: vec![phone("+14155550123")],
                identities: vec![identity(Channel::LiveChat, "", "visitor-7")],
                ..customer("Shared Name", "SHARED@example.com")
            },
        )
        .await;
    assert_ne!(a.name, b.name);
    assert_eq!(
        h.lookup_in(OTHER_TENANT, by_email("shared@example.com"))
            .await
            .unwrap()
            .name,
        b.name
    );
    assert_eq!(
        h.lookup_in(TENANT, by_email("shared@example.com"))
            .await
            .unwrap()
            .name,
        a.name
    );
    assert_eq!(h.get(&a.name).await.display_name, "Shared Name");
    assert_eq!(h.active_names_in(TENANT).await, vec![a.name.clone()]);
    assert_eq!(h.active_names_in(OTHER_TENANT).await, vec![b.name.clone()]);

    // Events are tagged with their own tenant.
    let b_events = rapport_store::outbox::for_subject(&h.db.reader, OTHER_TENANT, &b.name)
        .await
        .unwrap();
    assert_eq!(b_events.len(), 1);
    assert_eq!(b_events[0].tenant, OTHER_TENANT);
    assert!(
        rapport_store::outbox::for_subject(&h.db.reader, OTHER_TENANT, &a.name)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn malformed_resource_names_are_invalid_and_unknown_ones_not_found() {
    let h = start().await;
    for bad in [
        "",
        "customers/",
        "foo/123",
        "customers/not-a-uuid",
        "customers/123e4567-e89b-12d3-a456-426614174000/extra",
        "Customers/123e4567-e89b-12d3-a456-426614174000",
    ] {
        let err = expect_err(h.try_get_in(TENANT, bad).await);
        assert_violation(&err, "name");
    }
    let err = expect_err(h.try_get_in(TENANT, &unknown_customer()).await);
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");

    let err = expect_err(
        h.client()
            .list_consent_events(tenant_request(
                TENANT,
                pb::ListConsentEventsRequest {
                    parent: "customers/not-a-uuid".into(),
                    ..Default::default()
                },
            ))
            .await,
    );
    assert_violation(&err, "parent");
    let err = expect_err(
        h.client()
            .list_lifecycle_events(tenant_request(
                TENANT,
                pb::ListLifecycleEventsRequest {
                    parent: "foo/123".into(),
                    ..Default::default()
                },
            ))
            .await,
    );
    assert_violation(&err, "parent");
    let err = expect_err(
        h.client()
            .list_lifecycle_events(tenant_request(
                TENANT,
                pb::ListLifecycleEventsRequest {
                    parent: unknown_customer(),
                    ..Default::default()
                },
            ))
            .await,
    );
    assert_error(&err, Code::NotFound, "CUSTOMER_NOT_FOUND");
    let err = expect_err(
        h.set_consent(consent(
            "customers/",
            Channel::Email,
            pb::ConsentPurpose::Marketing,
            pb::ConsentStatus::Granted,
            None,
        ))
        .await,
    );
    assert_violation(&err, "name");
    let err = expect_err(
        h.change_stage(stage_change(
            "customers/not-a-uuid",
            pb::LifecycleStage::Retention,
            "why",
        ))
        .await,
    );
    assert_violation(&err, "name");
}

/// An assertion is good for the one method of the one service the gateway
/// made it for, for seconds, with the scopes the caller has: captured on its
/// way to GetCustomer, it erases nobody and calls no other service; a
/// service that holds only the public key cannot make one; an expired one
/// is refused; and the scope the contract declares is checked here too.
#[tokio::test]
async fn an_assertion_is_bound_to_its_service_method_scope_and_expiry() {
    let h = start().await;
    let created = h.create(customer("Bound", "bound@example.com")).await;
    let get = "/rapport.profiles.v1.ProfilesService/GetCustomer";
    let erase = "/rapport.profiles.v1.ProfilesService/EraseCustomer";
    let read = rapport_testkit::claims_for(get, TENANT, &["profiles.read"]);
    let get_request = || pb::GetCustomerRequest {
        name: created.name.clone(),
    };
    let erase_request = || pb::EraseCustomerRequest {
        name: created.name.clone(),
        request_id: String::new(),
    };
    // The genuine use works.
    h.client()
        .get_customer(rapport_testkit::request_with_claims(&read, get_request()))
        .await
        .unwrap_or_else(|s| panic!("{}", describe(&s)));

    // Replayed on EraseCustomer: refused, even with every scope.
    let captured = rapport_testkit::claims_for(get, TENANT, &["admin"]);
    let err = expect_err(
        h.client()
            .erase_customer(rapport_testkit::request_with_claims(
                &captured,
                erase_request(),
            ))
            .await,
    );
    assert_error(&err, Code::Unauthenticated, "ASSERTION_INVALID");
    // Made for another service's method of the same name.
    let elsewhere = rapport_testkit::claims_for(
        "/rapport.webhooks.v1.WebhooksService/GetCustomer",
        TENANT,
        &["admin"],
    );
    let err = expect_err(
        h.client()
            .get_customer(rapport_testkit::request_with_claims(
                &elsewhere,
                get_request(),
            ))
            .await,
    );
    assert_error(&err, Code::Unauthenticated, "ASSERTION_INVALID");
    // Claims that name this service as audience but another method.
    let mismatched = rapport_kit::assertion::Claims {
        method: erase.to_owned(),
        ..read.clone()
    };
    let err = expect_err(
        h.client()
            .get_customer(rapport_testkit::request_with_claims(
                &mismatched,
                get_request(),
            ))
            .await,
    );
    assert_error(&err, Code::Unauthenticated, "ASSERTION_INVALID");
    // Expired.
    let expired = rapport_kit::assertion::Claims {
        expires: chrono::Utc::now().timestamp() - 1,
        ..read.clone()
    };
    let err = expect_err(
        h.client()
            .get_customer(rapport_testkit::request_with_claims(
                &expired,
                get_request(),
            ))
            .await,
    );
    assert_error(&err, Code::Unauthenticated, "ASSERTION_INVALID");
    // A service knows only the gateway's public key; "signing" with it (as
    // if it were a private key) makes another key pair's assertion.
    let public = rapport_testkit::test_assertion_public_key();
    let service_made = rapport_kit::AssertionSigner::from_base64(&public)
        .expect("32 bytes")
        .sign(&read);
    let mut forged = tonic::Request::new(get_request());
    forged.metadata_mut().insert(
        rapport_kit::assertion::ASSERTION_HEADER,
        service_made.parse().unwrap(),
    );
    let err = expect_err(h.client().get_customer(forged).await);
    assert_error(&err, Code::Unauthenticated, "ASSERTION_INVALID");
    // For EraseCustomer, but with only the read scope: the service checks
    // the scope the contract declares (profiles.erase), not only the gateway.
    let read_only_erase = rapport_testkit::claims_for(erase, TENANT, &["profiles.read"]);
    let err = expect_err(
        h.client()
            .erase_customer(rapport_testkit::request_with_claims(
                &read_only_erase,
                erase_request(),
            ))
            .await,
    );
    assert_error(&err, Code::PermissionDenied, "SCOPE_MISSING");
    assert_eq!(
        h.get(&created.name).await.state,
        pb::CustomerState::Active as i32
    );
}
