//! JWT bearer tokens through the running gateway: a token from the
//! configured issuer gets in with its tenant and scopes; the classic attacks
//! do not. The full refusal matrix is in `auth::jwt`'s unit tests.

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rapport_e2e::*;
use rapport_testkit::status::assert_error;
use serde_json::{Value, json};
use tonic::Code;

/// The gateway's throw-away JWT key material, which its own unit tests
/// (`services/gateway/src/auth/jwt.rs`) include from there too.
macro_rules! jwt_data {
    ($file:literal) => {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../services/gateway/tests/data/jwt/",
            $file
        )
    };
}

const ISSUER: &str = "https://idp.example.com";
const AUDIENCE: &str = "rapport";

fn configure(config: &mut rapport_gateway::Config) {
    config.jwt.jwks_file = Some(jwt_data!("jwks.json").into());
    config.jwt.issuer = ISSUER.into();
    config.jwt.audience = AUDIENCE.into();
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(scope: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "tenant": "acme", "scope": scope, "iat": now(), "exp": now() + 300})
}

fn rs256(claims: &Value) -> String {
    let pem = include_str!(jwt_data!("rsa-private.pem"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&der)).unwrap()
}

#[tokio::test]
async fn a_token_from_the_configured_issuer_gets_in_with_its_tenant_and_scopes() {
    let s = start_with(Options {
        tweak: Some(std::sync::Arc::new(configure)),
    })
    .await;
    let mut p = s.profiles();
    let token = rs256(&claims("profiles.read profiles.write"));
    let created = p
        .create_customer(with_key(
            &token,
            pb::CreateCustomerRequest {
                customer: Some(customer("Ada", "ada@example.com")),
                request_id: String::new(),
            },
        ))
        .await
        .expect("a valid token is accepted")
        .into_inner()
        .customer
        .unwrap();
    // The tenant came from the token: an acme API key sees the customer.
    let acme_key = s.key("acme", &["profiles.read"]).await;
    p.get_customer(with_key(
        &acme_key,
        pb::GetCustomerRequest { name: created.name },
    ))
    .await
    .expect("same tenant");

    let events = s
        .admin()
        .list_audit_events(with_key(
            &s.admin_key,
            gw::ListAuditEventsRequest {
                principal: "jwt:alice".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert!(
        events
            .iter()
            .any(|e| e.method.ends_with("/CreateCustomer") && e.code == "OK")
    );
    assert!(
        !format!("{events:?}").contains(&token[..20]),
        "no token text in the audit log"
    );
}

#[tokio::test]
async fn forged_expired_and_misdirected_tokens_are_refused() {
    let s = start_with(Options {
        tweak: Some(std::sync::Arc::new(configure)),
    })
    .await;
    let mut p = s.profiles();
    let list = || pb::ListCustomersRequest::default();

    // Scope: a read-only token cannot write.
    let reader = rs256(&claims("profiles.read"));
    let err = p
        .create_customer(with_key(
            &reader,
            pb::CreateCustomerRequest {
                customer: Some(customer("Bob", "bob@example.com")),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_error(&err, Code::PermissionDenied, "SCOPE_MISSING");

    // alg none: unsigned.
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims("profiles.read").to_string());
    let err = p
        .list_customers(with_key(&format!("{header}.{payload}."), list()))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "TOKEN_INVALID");

    // HS256 keyed with the public RSA key: the algorithm confusion attack.
    let public = include_bytes!(jwt_data!("rsa-public.pem"));
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("rsa-1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims("profiles.read"),
        &EncodingKey::from_secret(public),
    )
    .unwrap();
    let err = p.list_customers(with_key(&hs, list())).await.unwrap_err();
    assert_error(&err, Code::Unauthenticated, "TOKEN_INVALID");

    // Stripped signature, wrong audience, wrong issuer, expired, not yet valid, unknown key.
    let good = rs256(&claims("profiles.read"));
    let stripped = format!("{}.", good.rsplit_once('.').unwrap().0);
    let mut wrong_aud = claims("profiles.read");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("profiles.read");
    wrong_iss["iss"] = json!("https://evil.example");
    let mut future = claims("profiles.read");
    future["nbf"] = json!(now() + 3600);
    for token in [
        stripped,
        rs256(&wrong_aud),
        rs256(&wrong_iss),
        rs256(&future),
    ] {
        let err = p
            .list_customers(with_key(&token, list()))
            .await
            .unwrap_err();
        assert_error(&err, Code::Unauthenticated, "TOKEN_INVALID");
    }
    let mut expired = claims("profiles.read");
    expired["exp"] = json!(now() - 3600);
    let err = p
        .list_customers(with_key(&rs256(&expired), list()))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "CREDENTIALS_EXPIRED");

    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("nobody".into());
    let pem = include_str!(jwt_data!("rsa-private.pem"));
    let der = STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let unknown_kid = jsonwebtoken::encode(
        &header,
        &claims("profiles.read"),
        &EncodingKey::from_rsa_der(&der),
    )
    .unwrap();
    let err = p
        .list_customers(with_key(&unknown_kid, list()))
        .await
        .unwrap_err();
    assert_error(&err, Code::Unauthenticated, "TOKEN_INVALID");

    // And the good one works.
    p.list_customers(with_key(&good, list()))
        .await
        .expect("valid token");
}
