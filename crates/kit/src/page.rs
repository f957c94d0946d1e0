//! Opaque, sealed page tokens for keyset pagination.
//!
//! A token is `base64url(nonce ‖ ChaCha20-Poly1305(cursor JSON))`, with the
//! tenant and a fingerprint of the list's filter as associated data. So a
//! forged token, a token of another tenant, and a token reused with a changed
//! filter all fail to open and become INVALID_ARGUMENT. Sealed, not only
//! signed: a cursor can hold a customer's display name (a list ordered by
//! name), and tokens travel in URLs, logs and browser histories — they must
//! not show it.
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, KeyInit, Mac};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Serialize, de::DeserializeOwned};
use sha2::Sha256;
use tonic::{Code, Status};

use crate::{FieldViolations, Tenant, error::ErrorBuilder};

type HmacSha256 = Hmac<Sha256>;

/// Seals and opens page tokens with one secret key.
#[derive(Clone)]
pub struct PageTokens {
    key: std::sync::Arc<LessSafeKey>,
    domain: &'static str,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageTokens")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl PageTokens {
    /// Tokens signed with `key` (at least 32 bytes; every replica of a service
    /// must share it). `domain` is the ErrorInfo domain of the service.
    pub fn new(key: &[u8], domain: &'static str) -> Self {
        // The AEAD key is derived from the configured secret (any length)
        // for this one use: the secret itself never keys anything else.
        let mut kdf = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        kdf.update(b"rapport-page-token-key-v2");
        let derived = kdf.finalize().into_bytes();
        let key = UnboundKey::new(&CHACHA20_POLY1305, &derived)
            .expect("a 32-byte key is a ChaCha20-Poly1305 key");
        Self {
            key: std::sync::Arc::new(LessSafeKey::new(key)),
            domain,
        }
    }

    /// What a token is bound to besides its cursor: length-prefixed parts,
    /// so `("ab", "c")` and `("a", "bc")` differ.
    fn bound_to(tenant: &Tenant, filter: &str) -> Vec<u8> {
        let mut aad = Vec::new();
        for part in [
            b"rapport-page-v2".as_slice(),
            tenant.as_str().as_bytes(),
            filter.as_bytes(),
        ] {
            aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }

    /// Encodes `cursor` for `tenant` and a canonical description of the filter.
    pub fn encode<C: Serialize>(&self, tenant: &Tenant, filter: &str, cursor: &C) -> String {
        let mut sealed = serde_json::to_vec(cursor).expect("cursor types serialize infallibly");
        // A random nonce per token: 96 bits, so a collision under one key
        // needs about 2^48 tokens.
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(Self::bound_to(tenant, filter)),
                &mut sealed,
            )
            .expect("a page cursor is far below the AEAD's length limit");
        let mut token = nonce_bytes.to_vec();
        token.extend_from_slice(&sealed);
        B64.encode(token)
    }

    /// The cursor of a request's `page_token`, which must have been issued
    /// for `filter` (a list and its parameters) and `tenant`; `None` on the
    /// first page.
    pub fn cursor<C: DeserializeOwned>(
        &self,
        tenant: &Tenant,
        filter: &str,
        page_token: &str,
    ) -> Result<Option<C>, Status> {
        self.decode(tenant, filter, page_token, "page_token")
    }

    /// The `next_page_token` of an answer: empty on the last page.
    pub fn next<C: Serialize>(&self, tenant: &Tenant, filter: &str, next: Option<C>) -> String {
        next.map(|c| self.encode(tenant, filter, &c))
            .unwrap_or_default()
    }

    /// Decodes a token; `Ok(None)` for the empty token (first page).
    /// `field` names the request field in the violation (usually `page_token`).
    pub fn decode<C: DeserializeOwned>(
        &self,
        tenant: &Tenant,
        filter: &str,
        token: &str,
        field: &str,
    ) -> Result<Option<C>, Status> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            ErrorBuilder::new(Code::InvalidArgument, self.domain, "INVALID_PAGE_TOKEN")
                .message("the page token is invalid, expired or belongs to another query")
                .violations(FieldViolations::single(
                    field,
                    "not a page token issued for this query",
                ))
                .build()
        };
        if token.len() > 4096 {
            return Err(invalid());
        }
        let mut raw = B64.decode(token).map_err(|_| invalid())?;
        if raw.len() < NONCE_LEN {
            return Err(invalid());
        }
        let mut sealed = raw.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&raw).map_err(|_| invalid())?;
        let json = self
            .key
            .open_in_place(
                nonce,
                Aad::from(Self::bound_to(tenant, filter)),
                &mut sealed,
            )
            .map_err(|_| invalid())?;
        serde_json::from_slice(json)
            .map(Some)
            .map_err(|_| invalid())
    }
}

/// Validates an AIP-158 `page_size`: negative is INVALID_ARGUMENT, zero means
/// `default`, above `max` is lowered to `max`.
pub fn page_size(raw: i32, default: u32, max: u32, domain: &'static str) -> Result<u32, Status> {
    match raw {
        n if n < 0 => Err(crate::error::invalid_argument(
            domain,
            FieldViolations::single("page_size", "must not be negative"),
        )),
        0 => Ok(default),
        n => Ok((n as u32).min(max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> Tenant {
        Tenant::parse(s).unwrap()
    }

    #[test]
    fn round_trip_and_rejections() {
        let tokens = PageTokens::new(&[7; 32], "test.rapport.dev");
        let cursor = (1_700_000_000i64, "0192abcd".to_owned());
        let token = tokens.encode(&tenant("acme"), "stage=1", &cursor);
        let back: Option<(i64, String)> = tokens
            .decode(&tenant("acme"), "stage=1", &token, "page_token")
            .unwrap();
        assert_eq!(back, Some(cursor));

        // Another tenant, another filter, a flipped byte, another key: all refused.
        let refused = |t: &str, f: &str, tok: &str, toks: &PageTokens| {
            let r: Result<Option<(i64, String)>, _> = toks.decode(&tenant(t), f, tok, "page_token");
            r.unwrap_err().code() == Code::InvalidArgument
        };
        assert!(refused("globex", "stage=1", &token, &tokens));
        assert!(refused("acme", "stage=2", &token, &tokens));
        let mut forged = token.clone().into_bytes();
        forged[2] = if forged[2] == b'A' { b'B' } else { b'A' };
        assert!(refused(
            "acme",
            "stage=1",
            &String::from_utf8(forged).unwrap(),
            &tokens
        ));
        assert!(refused("acme", "stage=1", "garbage", &tokens));
        assert!(refused(
            "acme",
            "stage=1",
            &token,
            &PageTokens::new(&[8; 32], "x")
        ));
    }

    #[test]
    fn a_token_does_not_show_its_cursor() {
        let tokens = PageTokens::new(&[7; 32], "test.rapport.dev");
        let cursor = ("Ada Lovelace".to_owned(), "0192abcd".to_owned());
        let token = tokens.encode(&tenant("acme"), "order=display_name", &cursor);
        let raw = B64.decode(&token).unwrap();
        for secret in ["Ada Lovelace", "0192abcd"] {
            assert!(
                !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} readable in the token"
            );
        }
        // Two tokens of one cursor differ (a fresh nonce each), and both open.
        let again = tokens.encode(&tenant("acme"), "order=display_name", &cursor);
        assert_ne!(token, again);
        for t in [&token, &again] {
            let back: Option<(String, String)> = tokens
                .decode(&tenant("acme"), "order=display_name", t, "page_token")
                .unwrap();
            assert_eq!(back.as_ref(), Some(&cursor));
        }
    }

    #[test]
    fn page_size_rules() {
        assert_eq!(page_size(0, 50, 500, "d").unwrap(), 50);
        assert_eq!(page_size(10, 50, 500, "d").unwrap(), 10);
        assert_eq!(page_size(10_000, 50, 500, "d").unwrap(), 500);
        assert_eq!(
            page_size(-1, 50, 500, "d").unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}
