//! Per-principal rate limits (token buckets) and the global concurrency
//! limit. Limit keys come from the authenticated principal, never from
//! headers a client controls.
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

use crate::auth::Principal;

/// Token buckets, one per principal.
pub struct RateLimits {
    default_per_second: NonZeroU32,
    burst_seconds: u32,
    buckets: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("default_per_second", &self.default_per_second)
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    /// Buckets refilling at `per_second` (unless a key says otherwise) and
    /// holding `burst_seconds` worth of requests.
    pub fn new(default_per_second: u32, burst_seconds: u32) -> Self {
        Self {
            default_per_second: NonZeroU32::new(default_per_second.max(1))
                .expect("max(1) is non-zero"),
            burst_seconds: burst_seconds.max(1),
            buckets: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one token for `principal`; `Err(wait)` when the bucket is empty.
    pub fn check(&self, principal: &Principal) -> Result<(), Duration> {
        let rate = principal
            .rate_limit_per_second
            .and_then(NonZeroU32::new)
            .unwrap_or(self.default_per_second);
        let limiter = {
            let mut buckets = self.buckets.lock().expect("rate limit lock");
            match buckets.get(&principal.id) {
                Some((r, l)) if *r == rate.get() => l.clone(),
                _ => {
                    let burst = NonZeroU32::new(rate.get().saturating_mul(self.burst_seconds))
                        .unwrap_or(rate);
                    let l = Arc::new(RateLimiter::direct(
                        Quota::per_second(rate).allow_burst(burst),
                    ));
                    buckets.insert(principal.id.clone(), (rate.get(), l.clone()));
                    l
                }
            }
        };
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(id: &str, rps: Option<u32>) -> Principal {
        Principal {
            tenant: "acme".into(),
            id: id.into(),
            scopes: Default::default(),
            rate_limit_per_second: rps,
        }
    }

    #[test]
    fn a_burst_past_the_bucket_is_refused_and_others_are_unaffected() {
        let limits = RateLimits::new(100, 1);
        let greedy = principal("apiKeys/a", Some(5));
        let ok = (0..20).filter(|_| limits.check(&greedy).is_ok()).count();
        assert_eq!(ok, 5, "a bucket of one second holds five requests");
        let wait = limits.check(&greedy).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limits.check(&principal("apiKeys/b", None)).is_ok());
    }
}
