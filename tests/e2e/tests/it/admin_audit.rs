//! The admin API and the audit log it exposes.

use rapport_e2e::*;
use rapport_testkit::status::assert_error;
use tonic::Code;

#[tokio::test]
async fn keys_are_created_shown_once_listed_without_secrets_and_scoped_by_tenant() {
    let s = start().await;
    let mut admin = s.admin();
    let created = admin
        .create_api_key(with_key(
            &s.admin_key,
            gw::CreateApiKeyRequest {
                api_key: Some(gw::ApiKey {
                    display_name: "crm-sync".into(),
                    tenant: "acme".into(),
                    scopes: vec!["profiles.read".into()],
                    ..Default::default()
                }),
                request_id: "create-crm-sync".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created.secret.starts_with("rk_"));
    let key = created.api_key.unwrap();
    assert_eq!(key.name, format!("apiKeys/{}", key.key_id));

    // The new key works, with exactly its scopes.
    let mut p = s.profiles();
    p.list_customers(with_key(
        &created.secret,
        pb::ListCustomersRequest::default(),
    ))
    .await
    .expect("new key reads");

    // A retry with the same request id creates nothing new and shows no secret.
    let again = admin
        .create_api_key(with_key(
            &s.admin_key,
            gw::CreateApiKeyRequest {
                api_key: Some(gw::ApiKey {
                    display_name: "crm-sync".into(),
                    tenant: "acme".into(),
                    scopes: vec!["profiles.read".into()],
                    ..Default::default()
                }),
                request_id: "create-crm-sync".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.api_key.unwrap().key_id, key.key_id);
    assert!(again.secret.is_empty());

    let listed = admin
        .list_api_keys(with_key(
            &s.admin_key,
            gw::ListApiKeysRequest {
                tenant: "acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .api_keys
            .iter()
            .filter(|k| k.key_id == key.key_id)
            .count(),
        1
    );

    // A tenant admin cannot mint keys for another tenant.
    let tenant_admin = s.key("globex", &["admin"]).await;
    let err = admin
        .create_api_key(with_key(
            &tenant_admin,
            gw::CreateApiKeyRequest {
                api_key: Some(gw::ApiKey {
                    display_name: "sneaky".into(),
                    tenant: "acme".into(),
                    scopes: vec!["profiles.read".into()],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_error(&err, Code::PermissionDenied, "TENANT_FORBIDDEN");
    // Nor see or revoke acme's keys.
    let theirs = admin
        .list_api_keys(with_key(&tenant_admin, gw::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.api_keys.iter().all(|k| k.tenant == "globex"));
    let err = admin
        .revoke_api_key(with_key(
            &tenant_admin,
            gw::RevokeApiKeyRequest {
                name: key.name.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Invalid input names its fields.
    let err = admin
        .create_api_key(with_key(
            &s.admin_key,
            gw::CreateApiKeyRequest {
                api_key: Some(gw::ApiKey::default()),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
}

#[tokio::test]
async fn the_audit_log_records_writes_and_refusals_without_secrets() {
    let s = start().await;
    let writer = s.key("acme", &["profiles.read", "profiles.write"]).await;
    let mut p = s.profiles();
    p.create_customer(with_key(
        &writer,
        pb::CreateCustomerRequest {
            customer: Some(customer("Ada", "ada@example.com")),
            request_id: "audit-1".into(),
        },
    ))
    .await
    .unwrap();
    // Reads are not audited; refusals are.
    p.list_customers(with_key(&writer, pb::ListCustomersRequest::default()))
        .await
        .unwrap();
    let _ = p
        .list_customers(tonic::Request::new(pb::ListCustomersRequest::default()))
        .await
        .unwrap_err();
    let reader = s.key("acme", &["profiles.read"]).await;
    let _ = p
        .create_customer(with_key(
            &reader,
            pb::CreateCustomerRequest {
                customer: Some(customer("Bob", "bob@example.com")),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();

    let events = s
        .admin()
        .list_audit_events(with_key(
            &s.admin_key,
            gw::ListAuditEventsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let create = events
        .iter()
        .find(|e| e.method.ends_with("/CreateCustomer") && e.code == "OK")
        .expect("the create is audited");
    assert_eq!(create.tenant, "acme");
    assert!(create.principal.starts_with("apiKeys/"));
    assert_eq!(create.protocol, "grpc");
    assert!(
        events
            .iter()
            .any(|e| e.code == "UNAUTHENTICATED" && e.method.ends_with("/ListCustomers"))
    );
    assert!(
        events
            .iter()
            .any(|e| e.code == "PERMISSION_DENIED" && e.method.ends_with("/CreateCustomer"))
    );
    assert!(
        !events
            .iter()
            .any(|e| e.method.ends_with("/ListCustomers") && e.code == "OK"),
        "reads are not audited"
    );

    // No secret, token or body anywhere in the log.
    let dump = format!("{events:?}");
    for secret in [&writer, &reader, &s.admin_key] {
        let secret_part = secret.splitn(3, '_').nth(2).unwrap();
        assert!(
            !dump.contains(secret_part),
            "a key secret leaked into the audit log"
        );
    }
    assert!(!dump.contains("ada@example.com"));

    // Filtered by principal.
    let only = s
        .admin()
        .list_audit_events(with_key(
            &s.admin_key,
            gw::ListAuditEventsRequest {
                principal: create.principal.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert!(!only.is_empty() && only.iter().all(|e| e.principal == create.principal));
}

/// Twins of one CreateApiKey (the same request id, sent at once, as a client
/// retrying over a flaky network does) create one key, and every twin is
/// answered with it — the loser of the race gets the winner's committed
/// result, as in every service, never ABORTED. Only the request that created
/// it sees the secret.
#[tokio::test]
async fn concurrent_twins_of_create_api_key_create_one_key_and_all_answer_it() {
    let s = start().await;
    let request = gw::CreateApiKeyRequest {
        api_key: Some(gw::ApiKey {
            display_name: "twins".into(),
            tenant: "acme".into(),
            scopes: vec!["profiles.read".into()],
            ..Default::default()
        }),
        request_id: "create-twins".into(),
    };
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (mut admin, key, request) = (s.admin(), s.admin_key.clone(), request.clone());
            tokio::spawn(async move { admin.create_api_key(with_key(&key, request)).await })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    let mut secrets = 0;
    for call in calls {
        let answer = call
            .await
            .unwrap()
            .expect("every twin is answered")
            .into_inner();
        ids.insert(answer.api_key.unwrap().key_id);
        secrets += usize::from(!answer.secret.is_empty());
    }
    assert_eq!(ids.len(), 1, "twins created {ids:?}");
    assert_eq!(secrets, 1, "the secret is shown once");
    let listed = s
        .admin()
        .list_api_keys(with_key(
            &s.admin_key,
            gw::ListApiKeysRequest {
                tenant: "acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let twins = listed
        .api_keys
        .iter()
        .filter(|k| k.display_name == "twins")
        .count();
    assert_eq!(twins, 1);

    // The same request id for another key is refused, and creates nothing.
    let mut other = request.clone();
    other.api_key.as_mut().unwrap().display_name = "not a twin".into();
    let err = s
        .admin()
        .create_api_key(with_key(&s.admin_key, other))
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "REQUEST_ID_REUSED");
}
