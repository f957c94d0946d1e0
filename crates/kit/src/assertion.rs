//! The tenant trust boundary. The gateway authenticates a caller and attaches
//! a short-lived, HMAC-signed assertion of who it is (tenant, principal,
//! scopes). Services believe tenant context only from a valid assertion, so a
//! call that reaches a service directly with a forged or unsigned tenant is
//! UNAUTHENTICATED.
//!
//! Format of the `x-rapport-assertion` metadata:
//! `base64url(JSON claims) "." base64url(HMAC-SHA256(key, "rapport-assertion-v1" || JSON))`.
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Metadata key of the assertion.
pub const ASSERTION_HEADER: &str = "x-rapport-assertion";

/// Shortest accepted key.
pub const MIN_KEY_LEN: usize = 32;

/// What the gateway asserts about a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant id.
    #[serde(rename = "t")]
    pub tenant: String,
    /// Principal, e.g. `apiKeys/k1` or `jwt:alice`.
    #[serde(rename = "p")]
    pub principal: String,
    /// Granted scopes.
    #[serde(rename = "s", default)]
    pub scopes: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    #[serde(rename = "e")]
    pub expires: i64,
}

/// Why an assertion was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not in the expected format.
    Malformed,
    /// The signature does not match.
    BadSignature,
    /// Past its expiry.
    Expired,
}

/// The shared secret that signs and verifies assertions.
#[derive(Clone)]
pub struct AssertionKey(Vec<u8>);

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssertionKey(<redacted>)")
    }
}

impl AssertionKey {
    /// A key from secret bytes; `None` when shorter than [`MIN_KEY_LEN`].
    pub fn new(secret: &[u8]) -> Option<Self> {
        (secret.len() >= MIN_KEY_LEN).then(|| Self(secret.to_vec()))
    }

    fn mac(&self, json: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"rapport-assertion-v1");
        mac.update(json);
        mac
    }

    /// Signs claims into a header value.
    pub fn sign(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize infallibly");
        let tag = self.mac(&json).finalize().into_bytes();
        format!("{}.{}", B64.encode(&json), B64.encode(tag))
    }

    /// Verifies a header value at time `now` (seconds since the epoch).
    pub fn verify(&self, value: &str, now: i64) -> Result<Claims, Refusal> {
        if value.len() > 8192 {
            return Err(Refusal::Malformed);
        }
        let (body, tag) = value.split_once('.').ok_or(Refusal::Malformed)?;
        let json = B64.decode(body).map_err(|_| Refusal::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| Refusal::Malformed)?;
        self.mac(&json)
            .verify_slice(&tag)
            .map_err(|_| Refusal::BadSignature)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| Refusal::Malformed)?;
        if claims.expires < now {
            return Err(Refusal::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires: i64) -> Claims {
        Claims {
            tenant: "acme".into(),
            principal: "apiKeys/k1".into(),
            scopes: vec!["profiles.read".into()],
            expires,
        }
    }

    #[test]
    fn signed_claims_verify_and_tampering_does_not() {
        let key = AssertionKey::new(&[1; 32]).unwrap();
        let token = key.sign(&claims(100));
        assert_eq!(key.verify(&token, 50).unwrap(), claims(100));
        assert_eq!(key.verify(&token, 101), Err(Refusal::Expired));
        let other = AssertionKey::new(&[2; 32]).unwrap();
        assert_eq!(other.verify(&token, 50), Err(Refusal::BadSignature));
        // Re-encode the claims with another tenant under the old signature.
        let (_, tag) = token.split_once('.').unwrap();
        let forged_body = B64.encode(
            serde_json::to_vec(&Claims {
                tenant: "globex".into(),
                ..claims(100)
            })
            .unwrap(),
        );
        assert_eq!(
            key.verify(&format!("{forged_body}.{tag}"), 50),
            Err(Refusal::BadSignature)
        );
        assert_eq!(key.verify("acme", 50), Err(Refusal::Malformed));
        assert!(AssertionKey::new(b"short").is_none());
    }
}
