//! Rate limits (token buckets per principal and per tenant) and each
//! tenant's share of the calls in flight. Limit keys come from the
//! authenticated principal, never from headers a client controls.
//!
//! A key's bucket alone does not isolate tenants: a tenant admin can mint
//! many keys, each with a fresh bucket. So every call also takes a token
//! from its tenant's bucket, and a tenant may hold only a share of the
//! gateway's slots and of each backend's: one tenant holding slow calls
//! leaves the rest to the others.
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use governor::{
    DefaultDirectRateLimiter, Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;

/// Limits per tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimitConfig {
    /// Requests per second per tenant, all its keys and tokens together.
    pub per_second: u32,
    /// Bucket size, in seconds of refill.
    pub burst_seconds: u32,
    /// The most of the gateway's calls in flight, and of each backend's
    /// limit, one tenant may hold (0.5: half). 1 turns shares off.
    pub concurrency_share: f64,
    /// The highest rate a tenant admin may give a key; only a `platform`
    /// caller may set more.
    pub max_key_per_second: u32,
    /// Active (not revoked) keys per tenant; only a `platform` caller may
    /// create more.
    pub max_keys: u32,
}

impl Default for TenantLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 1_000,
            burst_seconds: 2,
            concurrency_share: 0.5,
            max_key_per_second: 1_000,
            max_keys: 100,
        }
    }
}

/// One token bucket per key of `K`.
struct Buckets {
    burst_seconds: u32,
    map: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl Buckets {
    fn new(burst_seconds: u32) -> Self {
        Self {
            burst_seconds: burst_seconds.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn check(&self, key: &str, rate: NonZeroU32, clock: &DefaultClock) -> Result<(), Duration> {
        let limiter = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(key) {
                Some((r, l)) if *r == rate.get() => l.clone(),
                _ => {
                    let burst = NonZeroU32::new(rate.get().saturating_mul(self.burst_seconds))
                        .unwrap_or(rate);
                    let l = Arc::new(RateLimiter::direct(
                        Quota::per_second(rate).allow_burst(burst),
                    ));
                    map.insert(key.to_owned(), (rate.get(), l.clone()));
                    l
                }
            }
        };
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
    }
}

/// Token buckets, one per principal and one per tenant.
pub struct RateLimits {
    default_per_second: NonZeroU32,
    tenant_per_second: NonZeroU32,
    principals: Buckets,
    tenants: Buckets,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("default_per_second", &self.default_per_second)
            .field("tenant_per_second", &self.tenant_per_second)
            .finish_non_exhaustive()
    }
}

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("max(1) is non-zero")
}

impl RateLimits {
    /// Buckets refilling at `per_second` per principal (unless a key says
    /// otherwise) and `tenant.per_second` per tenant.
    pub fn new(default_per_second: u32, burst_seconds: u32, tenant: &TenantLimitConfig) -> Self {
        Self {
            default_per_second: non_zero(default_per_second),
            tenant_per_second: non_zero(tenant.per_second),
            principals: Buckets::new(burst_seconds),
            tenants: Buckets::new(tenant.burst_seconds),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one token for `principal` and one for its tenant; `Err(wait)`
    /// when either bucket is empty. The principal's comes first, so a key
    /// past its own limit does not spend its tenant's.
    pub fn check(&self, principal: &Principal) -> Result<(), Duration> {
        let rate = principal
            .rate_limit_per_second
            .and_then(NonZeroU32::new)
            .unwrap_or(self.default_per_second);
        self.principals.check(&principal.id, rate, &self.clock)?;
        self.tenants
            .check(&principal.tenant, self.tenant_per_second, &self.clock)
    }
}

/// Calls in flight per tenant and per backend (`""` for the gateway as a
/// whole), each capped at a share of the limit there.
#[derive(Debug)]
pub struct TenantShares {
    share: f64,
    in_flight: Mutex<HashMap<(String, String), usize>>,
}

/// A tenant's slot; given back when dropped.
#[derive(Debug)]
pub struct TenantSlot {
    shares: Arc<TenantShares>,
    key: (String, String),
}

impl TenantShares {
    /// Shares of `share` (clamped to 0..=1; 1 means no cap per tenant).
    pub fn new(share: f64) -> Arc<Self> {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Arc::new(Self {
            share,
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `tenant` at `place`, whose limit is `limit` calls, unless
    /// the tenant already holds its share of them. Never waits.
    pub fn try_take(
        self: &Arc<Self>,
        tenant: &str,
        place: &str,
        limit: usize,
    ) -> Option<TenantSlot> {
        // At least one call each, however small the limit.
        let cap = ((limit as f64 * self.share).ceil() as usize).max(1);
        let key = (tenant.to_owned(), place.to_owned());
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.clone()).or_default();
        if *n >= cap && self.share < 1.0 {
            return None;
        }
        *n += 1;
        Some(TenantSlot {
            shares: self.clone(),
            key,
        })
    }
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut map = self
            .shares
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            // Only tenants with calls in flight take room.
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(tenant: &str, id: &str, rps: Option<u32>) -> Principal {
        Principal {
            tenant: tenant.into(),
            id: id.into(),
            scopes: Default::default(),
            rate_limit_per_second: rps,
        }
    }

    #[test]
    fn a_burst_past_the_bucket_is_refused_and_others_are_unaffected() {
        let limits = RateLimits::new(100, 1, &TenantLimitConfig::default());
        let greedy = principal("acme", "apiKeys/a", Some(5));
        let ok = (0..20).filter(|_| limits.check(&greedy).is_ok()).count();
        assert_eq!(ok, 5, "a bucket of one second holds five requests");
        let wait = limits.check(&greedy).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limits.check(&principal("acme", "apiKeys/b", None)).is_ok());
    }

    #[test]
    fn many_keys_of_one_tenant_share_its_bucket() {
        let tenant = TenantLimitConfig {
            per_second: 10,
            burst_seconds: 1,
            ..Default::default()
        };
        let limits = RateLimits::new(100, 1, &tenant);
        let ok = (0..50)
            .filter(|i| {
                limits
                    .check(&principal("acme", &format!("apiKeys/{i}"), None))
                    .is_ok()
            })
            .count();
        assert_eq!(ok, 10, "fifty fresh keys get the tenant's ten");
        assert!(
            limits
                .check(&principal("globex", "apiKeys/g", None))
                .is_ok()
        );
    }

    #[test]
    fn a_tenant_holds_at_most_its_share() {
        let shares = TenantShares::new(0.5);
        let held: Vec<_> = std::iter::from_fn(|| shares.try_take("acme", "svc", 4))
            .take(10)
            .collect();
        assert_eq!(held.len(), 2, "half of four");
        assert!(
            shares.try_take("globex", "svc", 4).is_some(),
            "another tenant gets in"
        );
        assert!(shares.try_take("acme", "other", 4).is_some(), "per place");
        drop(held);
        assert!(
            shares.try_take("acme", "svc", 4).is_some(),
            "slots come back"
        );
        assert!(
            shares.in_flight.lock().unwrap().is_empty(),
            "idle tenants take no room"
        );
        let one = TenantShares::new(0.5);
        let _a = one
            .try_take("acme", "svc", 1)
            .expect("at least one call each");
    }
}
