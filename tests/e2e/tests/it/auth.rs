//! Who gets in: the API key matrix, scopes from the contract, the tenant
//! trust boundary, isolation between tenants, and rate limits.

use rapport_e2e::*;
use rapport_testkit::status::assert_error;
use tonic::Code;

#[tokio::test]
async fn credentials_are_checked_before_anything_reaches_a_service() {
    let s = start().await;
    let mut p = s.profiles();
    let list = || pb::ListCustomersRequest::default();

    let err = p
        .list_customers(tonic::Request::new(list()))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "CREDENTIALS_MISSING");

    let err = p
        .list_customers(with_key("not-a-key", list()))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "CREDENTIALS_MALFORMED");

    let unknown = format!("rk_0123456789abcdef_{}", "A".repeat(43));
    let err = p
        .list_customers(with_key(&unknown, list()))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "API_KEY_INVALID");

    // A real key id with a wrong secret is as unknown as a made-up one.
    let good = s.key("acme", &["profiles.read"]).await;
    let wrong_secret = format!("{}{}", &good[..good.len() - 4], "AAAA");
    let err = p
        .list_customers(with_key(&wrong_secret, list()))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "API_KEY_INVALID");

    let expired = s.expired_key("acme").await;
    let err = p
        .list_customers(with_key(&expired, list()))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "CREDENTIALS_EXPIRED");

    // x-api-key works as well as the bearer header.
    let mut r = tonic::Request::new(list());
    r.metadata_mut().insert("x-api-key", good.parse().unwrap());
    p.list_customers(r).await.expect("x-api-key is accepted");

    // A JWT-shaped token with no JWKS configured is refused.
    let err = p
        .list_customers(with_key("eyJhbGciOiJub25lIn0.e30.", list()))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "TOKEN_INVALID");
}

#[tokio::test]
async fn revoked_keys_stop_working_at_once() {
    let s = start().await;
    let key = s.key("acme", &["profiles.read"]).await;
    let mut p = s.profiles();
    p.list_customers(with_key(&key, pb::ListCustomersRequest::default()))
        .await
        .expect("works before revocation");

    let key_id = key.split('_').nth(1).unwrap().to_owned();
    let revoked = s
        .admin()
        .revoke_api_key(with_key(
            &s.admin_key,
            gw::RevokeApiKeyRequest {
                name: format!("apiKeys/{key_id}"),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.api_key.unwrap().revoked);
    let err = p
        .list_customers(with_key(&key, pb::ListCustomersRequest::default()))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "API_KEY_REVOKED");
}

#[tokio::test]
async fn each_rpc_needs_the_scope_its_contract_declares() {
    let s = start().await;
    let reader = s.key("acme", &["profiles.read"]).await;
    let mut p = s.profiles();
    let err = p
        .create_customer(with_key(
            &reader,
            pb::CreateCustomerRequest {
                customer: Some(customer("Ada", "ada@example.com")),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_error(&err, Code::PermissionDenied, "SCOPE_MISSING");
    let info = tonic_types::StatusExt::get_error_details(&err)
        .error_info()
        .cloned()
        .unwrap();
    assert_eq!(
        info.metadata.get("required_scope").map(String::as_str),
        Some("profiles.write")
    );
    p.list_customers(with_key(&reader, pb::ListCustomersRequest::default()))
        .await
        .expect("read scope reads");

    // The admin API needs `admin`.
    let err = s
        .admin()
        .list_api_keys(with_key(&reader, gw::ListApiKeysRequest::default()))
        .await
        .unwrap_err();
    assert_error(&err, Code::PermissionDenied, "SCOPE_MISSING");
}

#[tokio::test]
async fn a_client_cannot_choose_its_tenant() {
    let s = start().await;
    let acme = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let globex = s.key("globex", &["profiles.read", "profiles.write"]).await;
    let mut p = s.profiles();

    // Claiming another tenant in metadata changes nothing: the key decides.
    let mut r = with_key(
        &acme,
        pb::CreateCustomerRequest {
            customer: Some(customer("Ada", "ada@example.com")),
            request_id: String::new(),
        },
    );
    r.metadata_mut()
        .insert("x-rapport-tenant", "globex".parse().unwrap());
    r.metadata_mut()
        .insert("x-rapport-assertion", "forged.value".parse().unwrap());
    let created = p
        .create_customer(r)
        .await
        .expect("created under the key's tenant")
        .into_inner()
        .customer
        .unwrap();
    let err = p
        .get_customer(with_key(
            &globex,
            pb::GetCustomerRequest {
                name: created.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    p.get_customer(with_key(
        &acme,
        pb::GetCustomerRequest {
            name: created.name.clone(),
        },
    ))
    .await
    .expect("acme sees it");

    // Straight to the service, past the gateway: a forged assertion is refused.
    let direct = rapport_testkit::connect(s.profiles).await.unwrap();
    let mut direct = pb::profiles_service_client::ProfilesServiceClient::new(direct);
    let err = direct
        .get_customer(rapport_testkit::signed_request(
            b"an-attacker-key-an-attacker-key-0123",
            "acme",
            pb::GetCustomerRequest {
                name: created.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "ASSERTION_INVALID");
    let err = direct
        .get_customer(rapport_testkit::spoofed_tenant_request(
            "acme",
            pb::GetCustomerRequest { name: created.name },
        ))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "ASSERTION_MISSING");
}

#[tokio::test]
async fn one_tenant_never_sees_another_through_the_gateway() {
    let s = start().await;
    let acme = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let globex = s.key("globex", &["profiles.read", "profiles.write"]).await;
    let mut p = s.profiles();
    let ada = p
        .create_customer(with_key(
            &acme,
            pb::CreateCustomerRequest {
                customer: Some(customer("Ada Lovelace", "ada@example.com")),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();

    let err = p
        .get_customer(with_key(
            &globex,
            pb::GetCustomerRequest {
                name: ada.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = p
        .list_customers(with_key(&globex, pb::ListCustomersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.customers.is_empty());
    let found = p
        .search_customers(with_key(
            &globex,
            pb::SearchCustomersRequest {
                query: "lovelace".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(found.customers.is_empty());
    let err = p
        .lookup_customer(with_key(
            &globex,
            pb::LookupCustomerRequest {
                identity: Some(pb::lookup_customer_request::Identity::Email(
                    "ada@example.com".into(),
                )),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // And acme does see all of it.
    let listed = p
        .list_customers(with_key(&acme, pb::ListCustomersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.customers.len(), 1);
}

#[tokio::test]
async fn a_burst_past_the_rate_limit_is_refused_with_pushback_and_others_are_unaffected() {
    let s = start().await;
    let greedy = s.limited_key("acme", 3).await;
    let calm = s.key("acme", &["profiles.read"]).await;
    let mut p = s.profiles();
    let mut refused = Vec::new();
    let mut ok = 0;
    for _ in 0..20 {
        match p
            .list_customers(with_key(&greedy, pb::ListCustomersRequest::default()))
            .await
        {
            Ok(_) => ok += 1,
            Err(e) => refused.push(e),
        }
    }
    // Bucket: 3 per second × 2 seconds of burst.
    assert!((6..=8).contains(&ok), "{ok} calls admitted");
    assert!(!refused.is_empty());
    for e in &refused {
        assert_error(e, Code::ResourceExhausted, "RATE_LIMITED");
        let retry = tonic_types::StatusExt::get_error_details(e)
            .retry_info()
            .cloned()
            .expect("RetryInfo");
        assert!(
            retry
                .retry_delay
                .is_some_and(|d| d > std::time::Duration::ZERO)
        );
        let pushback: u64 = e
            .metadata()
            .get("grpc-retry-pushback-ms")
            .expect("pushback")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(pushback > 0 && pushback <= 1000);
    }
    p.list_customers(with_key(&calm, pb::ListCustomersRequest::default()))
        .await
        .expect("another key is unaffected");
}
