//! API keys: `rk_{key_id}_{secret}`. The key id is public (it names the key in
//! the admin API and the audit log); the secret has 256 bits of entropy and
//! only its SHA-256 is stored. A fast hash is right here: the secret is
//! random, not a password, so there is nothing to brute-force.
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use rapport_usecase::{Idempotency, Outcome, Tenant, Write, write::MAX_ATTEMPTS};

use super::{AuthError, Principal};
use crate::{
    error::Error,
    storage::{ApiKeyRecord, Store},
};

/// Prefix of every key, so leaked keys are recognisable by secret scanners.
pub const PREFIX: &str = "rk_";
const KEY_ID_LEN: usize = 16;
/// How long a looked-up key is trusted before it is read again. Revocation
/// through this gateway replica is immediate; other replicas see it within
/// this time.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// `last_use_time` is written at most this often per key.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Human-readable name.
    pub display_name: String,
    /// Tenant.
    pub tenant: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry.
    pub expire_time: Option<DateTime<Utc>>,
    /// Requests per second, 0 for the default.
    pub rate_limit: u32,
}

/// A created key and its secret (shown once).
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// What is stored.
    pub record: ApiKeyRecord,
    /// The full credential, `rk_{key_id}_{secret}`; empty when a retry is
    /// answered (the secret is shown once).
    pub secret: String,
}

/// Hex SHA-256 of a credential.
pub fn hash(credential: &str) -> String {
    Sha256::digest(credential.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two equal-length strings without an early exit.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The key id of a credential that has the API key shape.
pub fn key_id(credential: &str) -> Option<&str> {
    let rest = credential.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_at_checked(KEY_ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    (id.chars().all(|c| c.is_ascii_hexdigit()) && secret.len() >= 32).then_some(id)
}

/// Checks the scope syntax: `name` or `area.verb`, lower case.
pub fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
}

struct Cached {
    fetched: Instant,
    record: Option<ApiKeyRecord>,
    touched: Option<Instant>,
}

/// Issues and verifies API keys.
pub struct ApiKeys {
    store: Store,
    cache: Mutex<HashMap<String, Cached>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// Keys kept in `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Creates a key; the caller validated the input. With an idempotency
    /// key (of the calling tenant) it follows the write protocol: a retry, or
    /// a twin that lost the race, answers the key the first request created
    /// — without its secret, which is shown once.
    pub async fn issue(
        &self,
        new: NewKey,
        now: DateTime<Utc>,
        idempotency: Option<(&Tenant, &Idempotency)>,
    ) -> Result<IssuedKey, Error> {
        let unkeyed = Tenant::parse(&new.tenant).map_err(|why| Error::Internal(why.into()))?;
        let (tenant, key) = match idempotency {
            Some((tenant, key)) => (tenant, Some(key)),
            None => (&unkeyed, None),
        };
        let w = Write::new(&self.store, tenant, key);
        if let Some(key_id) = w.replay::<String>().await? {
            return self.without_secret(&key_id).await;
        }
        for _ in 0..MAX_ATTEMPTS {
            let id: [u8; KEY_ID_LEN / 2] = rand::random();
            let key_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let secret = format!(
                "{PREFIX}{key_id}_{}",
                B64.encode(rand::random::<[u8; 32]>())
            );
            let record = ApiKeyRecord {
                key_id,
                secret_hash: hash(&secret),
                display_name: new.display_name.clone(),
                tenant: new.tenant.clone(),
                scopes: new.scopes.clone(),
                expire_time: new.expire_time,
                revoked: false,
                rate_limit: new.rate_limit,
                create_time: now,
                last_use_time: None,
            };
            // The stored answer is the key's id: a replay reads the key as
            // it is now.
            let claim = w.claim(&record.key_id, &record.key_id)?;
            let outcome = self
                .store
                .insert_key(&record, claim.as_ref().map(|c| (tenant, c)))
                .await;
            match w.finish(outcome, record.key_id.clone()).await? {
                Outcome::Done(id) if id == record.key_id => {
                    return Ok(IssuedKey { record, secret });
                }
                Outcome::Done(winner) => return self.without_secret(&winner).await,
                Outcome::Retry => continue,
                Outcome::Other(e) => return Err(e),
            }
        }
        Err(w.exhausted())
    }

    /// A key created earlier, answered to a retry: no secret.
    async fn without_secret(&self, key_id: &str) -> Result<IssuedKey, Error> {
        let record = self.store.key(key_id).await?.ok_or_else(|| {
            Error::Internal(format!("idempotent result names a missing key {key_id}"))
        })?;
        Ok(IssuedKey {
            record,
            secret: String::new(),
        })
    }

    /// Drops a key from the cache (after revocation).
    pub fn forget(&self, key_id: &str) {
        self.cache.lock().expect("cache lock").remove(key_id);
    }

    /// Verifies a credential of the API key shape.
    pub async fn authenticate(
        &self,
        credential: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        let key_id = key_id(credential).ok_or(AuthError::Malformed)?.to_owned();
        let cached = {
            let cache = self.cache.lock().expect("cache lock");
            cache
                .get(&key_id)
                .filter(|c| c.fetched.elapsed() < CACHE_TTL)
                .map(|c| c.record.clone())
        };
        let record = match cached {
            Some(r) => r,
            None => {
                let r = self.store.key(&key_id).await.map_err(|e| {
                    tracing::warn!(error = %e, "api key lookup failed");
                    AuthError::Unavailable
                })?;
                let mut cache = self.cache.lock().expect("cache lock");
                let touched = cache.get(&key_id).and_then(|c| c.touched);
                cache.insert(
                    key_id.clone(),
                    Cached {
                        fetched: Instant::now(),
                        record: r.clone(),
                        touched,
                    },
                );
                r
            }
        };
        let record = record.ok_or(AuthError::UnknownKey)?;
        if !constant_time_eq(&record.secret_hash, &hash(credential)) {
            return Err(AuthError::UnknownKey);
        }
        if record.revoked {
            return Err(AuthError::Revoked);
        }
        if record.expire_time.is_some_and(|t| t <= now) {
            return Err(AuthError::Expired);
        }
        self.touch(&key_id, now);
        Ok(Principal {
            tenant: record.tenant,
            id: format!("apiKeys/{key_id}"),
            scopes: record.scopes.into_iter().collect(),
            rate_limit_per_second: (record.rate_limit > 0).then_some(record.rate_limit),
        })
    }

    /// Writes `last_use_time` in the background, at most once a minute per key.
    fn touch(&self, key_id: &str, now: DateTime<Utc>) {
        {
            let mut cache = self.cache.lock().expect("cache lock");
            let Some(entry) = cache.get_mut(key_id) else {
                return;
            };
            if entry.touched.is_some_and(|t| t.elapsed() < TOUCH_EVERY) {
                return;
            }
            entry.touched = Some(Instant::now());
        }
        let store = self.store.clone();
        let key_id = key_id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = store.touch(&key_id, now).await {
                tracing::debug!(error = %e, "recording api key use failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shape() {
        let secret = format!("{PREFIX}0123456789abcdef_{}", "A".repeat(43));
        assert_eq!(key_id(&secret), Some("0123456789abcdef"));
        assert_eq!(key_id("rk_short_x"), None);
        assert_eq!(key_id("eyJhbGciOi.x.y"), None);
        assert_eq!(
            key_id(&format!("{PREFIX}0123456789abcdeg_{}", "A".repeat(43))),
            None
        );
        assert!(valid_scope("profiles.read"));
        assert!(!valid_scope("Profiles"));
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
    }
}
