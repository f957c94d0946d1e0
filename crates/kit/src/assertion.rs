//! The tenant trust boundary. The gateway authenticates a caller and attaches
//! a short-lived assertion of who it is (tenant, principal, scopes) for one
//! call: its target service (audience) and method. Services believe tenant
//! context only from a valid assertion for themselves and the method called,
//! so a call that reaches a service directly with a forged, unsigned, expired
//! or replayed-elsewhere assertion is UNAUTHENTICATED.
//!
//! Signed with Ed25519: only the gateway holds the private key; services hold
//! public keys, so a service (or anyone who reads a service's configuration)
//! cannot mint an assertion. Services accept several public keys, so that
//! the gateway's key can be rotated without downtime: add the new public key
//! to the services, then switch the gateway to the new private key, then
//! remove the old public key.
//!
//! Format of the `x-rapport-assertion` metadata:
//! `base64url(JSON claims) "." base64url(Ed25519(key, "rapport-assertion-v2" || JSON))`.
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Metadata key of the assertion.
pub const ASSERTION_HEADER: &str = "x-rapport-assertion";

/// Signed together with the claims, so that a signature made for anything
/// else with the same key never verifies as an assertion.
const DOMAIN_TAG: &[u8] = b"rapport-assertion-v2";

/// Largest accepted header value.
const MAX_LEN: usize = 8192;

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
    /// Audience: the gRPC service the call is for,
    /// `rapport.profiles.v1.ProfilesService`.
    #[serde(rename = "a")]
    pub audience: String,
    /// The gRPC path of the method called,
    /// `/rapport.profiles.v1.ProfilesService/GetCustomer`.
    #[serde(rename = "m")]
    pub method: String,
}

impl Claims {
    /// The audience of a gRPC path: its service (`None` if `path` is not
    /// `/<service>/<method>`).
    pub fn audience_of(path: &str) -> Option<&str> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some(service)
    }
}

/// Why an assertion was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not in the expected format.
    Malformed,
    /// No accepted key signed it.
    BadSignature,
    /// Past its expiry.
    Expired,
    /// Signed for another service or another method.
    WrongTarget,
}

/// The gateway's private key: signs assertions. Only the gateway has one.
#[derive(Clone)]
pub struct AssertionSigner(SigningKey);

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssertionSigner(<redacted>)")
    }
}

impl AssertionSigner {
    /// The key whose 32-byte seed is `seed`, base64url (padding optional).
    pub fn from_base64(seed: &str) -> Option<Self> {
        let bytes = decode_32(seed)?;
        Some(Self(SigningKey::from_bytes(&bytes)))
    }

    /// A new random key, as the base64url seed [`Self::from_base64`] reads.
    pub fn generate_seed() -> String {
        B64.encode(rand::random::<[u8; 32]>())
    }

    /// The public key services verify with, base64url.
    pub fn public_key(&self) -> String {
        B64.encode(self.0.verifying_key().as_bytes())
    }

    /// Signs claims into a header value.
    pub fn sign(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize infallibly");
        let signature = self.0.sign(&signed_bytes(&json));
        format!("{}.{}", B64.encode(&json), B64.encode(signature.to_bytes()))
    }
}

/// The public keys a service accepts assertions from (one, or two during a
/// rotation).
#[derive(Debug, Clone)]
pub struct AssertionVerifier(Vec<VerifyingKey>);

impl AssertionVerifier {
    /// Reads `keys`: base64url Ed25519 public keys separated by commas.
    /// `None` when there is none or one is not a valid public key.
    pub fn from_base64_list(keys: &str) -> Option<Self> {
        let keys = keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| VerifyingKey::from_bytes(&decode_32(k)?).ok())
            .collect::<Option<Vec<_>>>()?;
        (!keys.is_empty()).then_some(Self(keys))
    }

    /// Verifies a header value for a call of `path` (the gRPC path the
    /// service is serving) at time `now` (seconds since the epoch).
    pub fn verify(&self, value: &str, path: &str, now: i64) -> Result<Claims, Refusal> {
        if value.len() > MAX_LEN {
            return Err(Refusal::Malformed);
        }
        let (body, signature) = value.split_once('.').ok_or(Refusal::Malformed)?;
        let json = B64.decode(body).map_err(|_| Refusal::Malformed)?;
        let signature = B64.decode(signature).map_err(|_| Refusal::Malformed)?;
        let signature = Signature::from_slice(&signature).map_err(|_| Refusal::Malformed)?;
        let message = signed_bytes(&json);
        // Strict: no malleable signatures or weak public keys.
        if !self
            .0
            .iter()
            .any(|key| key.verify_strict(&message, &signature).is_ok())
        {
            return Err(Refusal::BadSignature);
        }
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| Refusal::Malformed)?;
        if claims.expires < now {
            return Err(Refusal::Expired);
        }
        if claims.method != path || Claims::audience_of(path) != Some(claims.audience.as_str()) {
            return Err(Refusal::WrongTarget);
        }
        Ok(claims)
    }
}

fn signed_bytes(json: &[u8]) -> Vec<u8> {
    [DOMAIN_TAG, json].concat()
}

fn decode_32(b64: &str) -> Option<[u8; 32]> {
    let trimmed = b64.trim().trim_end_matches('=');
    B64.decode(trimmed).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &str = "/rapport.profiles.v1.ProfilesService/GetCustomer";
    const ERASE: &str = "/rapport.profiles.v1.ProfilesService/EraseCustomer";

    fn claims(expires: i64) -> Claims {
        Claims {
            tenant: "acme".into(),
            principal: "apiKeys/k1".into(),
            scopes: vec!["profiles.read".into()],
            expires,
            audience: "rapport.profiles.v1.ProfilesService".into(),
            method: GET.into(),
        }
    }

    fn signer(b: u8) -> AssertionSigner {
        AssertionSigner::from_base64(&B64.encode([b; 32])).unwrap()
    }

    #[test]
    fn signed_claims_verify_for_their_method_only() {
        let gateway = signer(1);
        let service = AssertionVerifier::from_base64_list(&gateway.public_key()).unwrap();
        let token = gateway.sign(&claims(100));
        assert_eq!(service.verify(&token, GET, 50).unwrap(), claims(100));
        assert_eq!(service.verify(&token, GET, 101), Err(Refusal::Expired));
        assert_eq!(service.verify(&token, ERASE, 50), Err(Refusal::WrongTarget));
        assert_eq!(
            service.verify(
                &token,
                "/rapport.webhooks.v1.WebhooksService/GetCustomer",
                50
            ),
            Err(Refusal::WrongTarget)
        );
        // Claims naming another audience than their method's service.
        let odd = gateway.sign(&Claims {
            audience: "rapport.webhooks.v1.WebhooksService".into(),
            ..claims(100)
        });
        assert_eq!(service.verify(&odd, GET, 50), Err(Refusal::WrongTarget));
    }

    #[test]
    fn only_the_private_key_signs_and_tampering_fails() {
        let gateway = signer(1);
        let service = AssertionVerifier::from_base64_list(&gateway.public_key()).unwrap();
        assert_eq!(
            service.verify(&signer(2).sign(&claims(100)), GET, 50),
            Err(Refusal::BadSignature)
        );
        let token = gateway.sign(&claims(100));
        let (_, signature) = token.split_once('.').unwrap();
        let forged_body = B64.encode(
            serde_json::to_vec(&Claims {
                tenant: "globex".into(),
                ..claims(100)
            })
            .unwrap(),
        );
        assert_eq!(
            service.verify(&format!("{forged_body}.{signature}"), GET, 50),
            Err(Refusal::BadSignature)
        );
        assert_eq!(service.verify("acme", GET, 50), Err(Refusal::Malformed));
        // The public key is not a private key: "signing" with it as a seed
        // gives a different key pair.
        let from_public = AssertionSigner::from_base64(&gateway.public_key()).unwrap();
        assert_eq!(
            service.verify(&from_public.sign(&claims(100)), GET, 50),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn two_public_keys_are_accepted_during_a_rotation() {
        let (old, new) = (signer(1), signer(2));
        let both = format!("{}, {}", old.public_key(), new.public_key());
        let service = AssertionVerifier::from_base64_list(&both).unwrap();
        for gateway in [&old, &new] {
            assert!(service.verify(&gateway.sign(&claims(100)), GET, 50).is_ok());
        }
        assert!(AssertionVerifier::from_base64_list("").is_none());
        assert!(AssertionVerifier::from_base64_list("not-a-key").is_none());
    }
}
