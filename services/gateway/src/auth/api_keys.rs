//! API keys: `rk_{key_id}_{secret}`. The key id is public (it names the key in
//! the admin API and the audit log); the secret has 256 bits of entropy and
//! only its SHA-256 is stored. A fast hash is right here: the secret is
//! random, not a password, so there is nothing to brute-force.
use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hashlink::LruCache;
use serde::{Deserialize, Serialize};
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
/// Client addresses whose lookup budgets are remembered.
const PEERS: usize = 4_096;

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

/// Bounds of the key cache and of the key store reads that authentication
/// may cost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeyCacheConfig {
    /// Keys that exist, cached (least recently used evicted first).
    pub entries: usize,
    /// Key ids that do not exist, cached apart, so guessed ids cannot evict
    /// real keys.
    pub unknown_entries: usize,
    /// Key store reads per second, gateway-wide, for key ids never seen to
    /// exist. Past it a guessed id is refused (`AUTH_THROTTLED`) without a
    /// read; keys seen before are always re-read.
    pub unknown_lookups_per_second: u32,
    /// The same, per client address: one client flooding guessed keys
    /// spends its own share, not everyone's.
    pub unknown_lookups_per_peer_per_second: u32,
}

impl Default for KeyCacheConfig {
    fn default() -> Self {
        Self {
            entries: 10_000,
            unknown_entries: 4_096,
            unknown_lookups_per_second: 50,
            unknown_lookups_per_peer_per_second: 10,
        }
    }
}

struct Cached {
    fetched: Instant,
    record: ApiKeyRecord,
    touched: Option<Instant>,
}

/// Both caches, under one lock: a key moves from one to the other.
struct Caches {
    known: LruCache<String, Cached>,
    /// When each unknown key id was last found missing.
    unknown: LruCache<String, Instant>,
}

/// How big the caches are and how often the store was read (for tests and
/// diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Cached keys that exist.
    pub known: usize,
    /// Cached ids that do not.
    pub unknown: usize,
    /// Key store reads by authentication since start.
    pub store_reads: u64,
}

/// Issues and verifies API keys.
pub struct ApiKeys {
    store: Store,
    cache: Mutex<Caches>,
    /// Reads for ids never seen to exist: what a flood of guessed keys costs.
    unknown_lookups: DefaultDirectRateLimiter,
    /// The same per client address (bounded: least recently seen evicted).
    peer_lookups: Mutex<LruCache<IpAddr, Arc<DefaultDirectRateLimiter>>>,
    peer_quota: Quota,
    store_reads: AtomicU64,
}

/// What the cache says about a key id.
enum Cache {
    /// Fresh: the key, or `None` when it does not exist.
    Fresh(Option<ApiKeyRecord>),
    /// Known to exist, due for a re-read.
    Stale,
    /// Never seen, or long gone.
    Unseen,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// Keys kept in `store`, with the default cache bounds.
    pub fn new(store: Store) -> Self {
        Self::with_cache(store, &KeyCacheConfig::default())
    }

    /// Keys kept in `store`, cached within `config`'s bounds.
    pub fn with_cache(store: Store, config: &KeyCacheConfig) -> Self {
        let rate =
            NonZeroU32::new(config.unknown_lookups_per_second.max(1)).expect("max(1) is non-zero");
        Self {
            store,
            cache: Mutex::new(Caches {
                known: LruCache::new(config.entries.max(1)),
                unknown: LruCache::new(config.unknown_entries.max(1)),
            }),
            // A burst of two seconds' worth: a replica that just started
            // reads its callers' keys without refusing any.
            unknown_lookups: RateLimiter::direct(
                Quota::per_second(rate)
                    .allow_burst(NonZeroU32::new(rate.get().saturating_mul(2)).unwrap_or(rate)),
            ),
            peer_lookups: Mutex::new(LruCache::new(PEERS)),
            peer_quota: {
                let rate = NonZeroU32::new(config.unknown_lookups_per_peer_per_second.max(1))
                    .expect("max(1) is non-zero");
                Quota::per_second(rate)
                    .allow_burst(NonZeroU32::new(rate.get().saturating_mul(2)).unwrap_or(rate))
            },
            store_reads: AtomicU64::new(0),
        }
    }

    /// Whether a read for a never-seen key id fits the budgets: the
    /// client's own first, then the gateway's.
    fn may_look_up(&self, peer: Option<IpAddr>) -> bool {
        if let Some(peer) = peer {
            let limiter = {
                let mut peers = self.peer_lookups.lock().unwrap_or_else(|p| p.into_inner());
                match peers.get(&peer) {
                    Some(l) => l.clone(),
                    None => {
                        let l = Arc::new(RateLimiter::direct(self.peer_quota));
                        peers.insert(peer, l.clone());
                        l
                    }
                }
            };
            if limiter.check().is_err() {
                return false;
            }
        }
        self.unknown_lookups.check().is_ok()
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        // Plain maps: a panic elsewhere cannot leave them torn.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cache sizes and store reads.
    pub fn cache_stats(&self) -> CacheStats {
        let caches = self.caches();
        CacheStats {
            known: caches.known.len(),
            unknown: caches.unknown.len(),
            store_reads: self.store_reads.load(Ordering::Relaxed),
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
                    // Known here from now on: its first call needs no read,
                    // and is never taken for a guess.
                    self.caches().known.insert(
                        record.key_id.clone(),
                        Cached {
                            fetched: Instant::now(),
                            record: record.clone(),
                            touched: None,
                        },
                    );
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
        let mut caches = self.caches();
        caches.known.remove(key_id);
        caches.unknown.remove(key_id);
    }

    fn lookup(&self, key_id: &str) -> Cache {
        let mut caches = self.caches();
        if let Some(c) = caches.known.get(key_id) {
            return if c.fetched.elapsed() < CACHE_TTL {
                Cache::Fresh(Some(c.record.clone()))
            } else {
                Cache::Stale
            };
        }
        match caches.unknown.get(key_id) {
            Some(missing) if missing.elapsed() < CACHE_TTL => Cache::Fresh(None),
            _ => Cache::Unseen,
        }
    }

    /// Verifies a credential of the API key shape.
    pub async fn authenticate(
        &self,
        credential: &str,
        now: DateTime<Utc>,
    ) -> Result<Principal, AuthError> {
        self.authenticate_from(credential, now, None).await
    }

    /// Verifies a credential sent from `peer` (its address, when known).
    pub async fn authenticate_from(
        &self,
        credential: &str,
        now: DateTime<Utc>,
        peer: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let key_id = key_id(credential).ok_or(AuthError::Malformed)?.to_owned();
        let record = match self.lookup(&key_id) {
            Cache::Fresh(r) => r,
            state => {
                // Guessed ids are what a flood is made of: past the budget
                // they cost no read. Keys seen to exist are always re-read,
                // so a flood cannot lock real callers out.
                if matches!(state, Cache::Unseen) && !self.may_look_up(peer) {
                    return Err(AuthError::Throttled);
                }
                self.store_reads.fetch_add(1, Ordering::Relaxed);
                let r = self.store.key(&key_id).await.map_err(|e| {
                    tracing::warn!(error = %e, "api key lookup failed");
                    AuthError::Unavailable
                })?;
                let mut caches = self.caches();
                match &r {
                    Some(record) => {
                        let touched = caches.known.get(&key_id).and_then(|c| c.touched);
                        caches.unknown.remove(&key_id);
                        caches.known.insert(
                            key_id.clone(),
                            Cached {
                                fetched: Instant::now(),
                                record: record.clone(),
                                touched,
                            },
                        );
                    }
                    None => {
                        caches.known.remove(&key_id);
                        caches.unknown.insert(key_id.clone(), Instant::now());
                    }
                }
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
            let mut caches = self.caches();
            let Some(entry) = caches.known.get_mut(key_id) else {
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
