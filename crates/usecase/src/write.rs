//! The idempotent write protocol every mutating use-case follows.
//!
//! A client may retry a mutation with the same `request_id`; it must never
//! apply twice, and every retry gets the first attempt's answer. The
//! protocol, in the order a use-case meets it:
//!
//! 1. **Replay.** [`Write::replay`]: a key seen before answers its stored
//!    result; the same key with a different request is `RequestIdReused`.
//!    (A create may skip this read: its claim below fails on a retry anyway.)
//! 2. **Claim and commit.** The use-case reads, applies its rules and commits
//!    its rows in one transaction together with a [`Claim`] — the key and the
//!    result it will answer ([`Write::claim`]). The database refuses a second
//!    claim of the same key, so of two concurrent twins only one commits.
//! 3. **Lost races.** [`Write::finish`] reads the commit's outcome: a version
//!    conflict (a row changed since it was read) means read again and retry;
//!    a lost claim answers the winner's committed result (or retries when
//!    the winner rolled back). One behaviour for every service.
//! 4. **Settle.** [`Write::settle`]: a request that lost to its own twin may
//!    be refused by its checks instead (the identity is taken, the state
//!    already changed — by the twin). When the twin's result is stored under
//!    the same key, that result is the answer, not the refusal.
//!
//! After [`MAX_ATTEMPTS`] lost races a use-case gives up with the service's
//! conflict error (ABORTED: the caller may retry).
use std::{fmt::Display, future::Future};

use serde::{Serialize, de::DeserializeOwned};

use crate::Tenant;

/// How often a mutation re-reads after losing a race before giving up.
pub const MAX_ATTEMPTS: usize = 5;

/// The idempotency key of one mutating request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// Full gRPC method name: one key namespace per RPC.
    pub method: &'static str,
    /// The client's request id.
    pub request_id: String,
    /// Fingerprint of the request without its request id: the same key with
    /// another fingerprint is a reused request id, not a retry.
    pub fingerprint: String,
}

/// What an earlier request with the same key left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// The same request: its result as JSON.
    Replay(String),
    /// A different request used this key.
    Mismatch,
    /// The key was used, but the resource its result was about has since
    /// been erased, and the result with it: the request must not run again
    /// (a create would bring the erased person back).
    Erased {
        /// Id of the erased resource.
        subject: String,
    },
}

/// The key a commit claims, with the result it will answer (JSON) and the
/// resource the result is about (so that erasing that resource can delete
/// stored results holding its personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The key.
    pub key: Idempotency,
    /// Id of the resource the result is about.
    pub subject: String,
    /// The result, as JSON.
    pub result: String,
}

/// Why a commit did not happen, as far as the protocol is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError<X> {
    /// A row changed since it was read (its version moved): read again and
    /// retry.
    VersionConflict,
    /// Another request holds this request's idempotency key.
    KeyTaken,
    /// Anything the service tells apart itself: a unique clash on its own
    /// data, a database failure.
    Other(X),
}

/// What [`Write::finish`] makes of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T, X> {
    /// Committed, or answered by the twin that committed first.
    Done(T),
    /// Lost a race: read again and try once more.
    Retry,
    /// The service's own failure, for it to handle.
    Other(X),
}

/// The errors the protocol raises itself. Each service's error type
/// implements it.
pub trait ProtocolError: Sized {
    /// The request id was used before for a different request.
    fn request_id_reused() -> Self;
    /// Concurrent writers kept winning for [`MAX_ATTEMPTS`] attempts.
    fn conflict() -> Self;
    /// A broken invariant (a stored result that does not read back).
    fn internal(why: String) -> Self;
    /// The request was applied before, but the resource `subject` it was
    /// about has since been erased (see [`Prior::Erased`]). Services that
    /// erase answer this with their own error; for the others a tombstone
    /// cannot exist, so meeting one is a broken invariant.
    fn result_erased(subject: &str) -> Self {
        Self::internal(format!("stored result about {subject} was erased"))
    }
    /// Whether this refusal may be what a request sees after its own twin
    /// committed (the twin's change makes the request's checks fail).
    fn may_be_twins_change(&self) -> bool;
}

/// The failures every service's error type can express beside the
/// protocol's own: what the shared storage side (`rapport_store::to_error`)
/// builds from a database failure without knowing the service. A service
/// implements it once, on its domain error.
pub trait ServiceError: ProtocolError {
    /// Input the service cannot take, field by field.
    fn invalid(violations: crate::Violations) -> Self;
    /// A dependency (the database) is unreachable right now: retry later.
    fn unavailable(detail: String) -> Self;
}

/// Implements [`ProtocolError`], [`ServiceError`] and `From<Violations>`
/// for a service's error enum with the variants every service has
/// (`Invalid(Violations)`, `Unavailable(String)`, `Conflict`,
/// `RequestIdReused`, `Internal(String)`); `twins` lists the refusals a
/// request may meet after its own twin committed, and any further
/// `ProtocolError` methods (such as `result_erased`) follow.
///
/// ```ignore
/// rapport_usecase::service_error!(Error, twins: [Error::EtagMismatch, Error::Conflict]);
/// ```
#[macro_export]
macro_rules! service_error {
    ($ty:ident, twins: [$($twin:pat),+ $(,)?] $(, $($extra:tt)*)?) => {
        impl ::core::convert::From<$crate::Violations> for $ty {
            fn from(v: $crate::Violations) -> Self {
                $ty::Invalid(v)
            }
        }

        impl $crate::ServiceError for $ty {
            fn invalid(violations: $crate::Violations) -> Self {
                $ty::Invalid(violations)
            }
            fn unavailable(detail: String) -> Self {
                $ty::Unavailable(detail)
            }
        }

        impl $crate::ProtocolError for $ty {
            fn request_id_reused() -> Self {
                $ty::RequestIdReused
            }
            fn conflict() -> Self {
                $ty::Conflict
            }
            fn internal(why: String) -> Self {
                $ty::Internal(why)
            }
            fn may_be_twins_change(&self) -> bool {
                matches!(self, $($twin)|+)
            }
            $($($extra)*)?
        }
    };
}

/// Where stored results are read: a service's repository.
pub trait Priors: Send + Sync {
    /// The service's error type.
    type Error: ProtocolError;

    /// What an earlier request with this key left, if any. Must see every
    /// committed claim, so that a request that lost the claim finds the
    /// winner's result.
    fn prior(
        &self,
        tenant: &Tenant,
        key: &Idempotency,
    ) -> impl Future<Output = Result<Option<Prior>, Self::Error>> + Send;
}

/// One idempotent write: the request's tenant and key, and where its stored
/// result would be. Without a key every step is a no-op pass-through.
#[derive(Debug)]
pub struct Write<'a, P> {
    priors: &'a P,
    tenant: &'a Tenant,
    key: Option<&'a Idempotency>,
}

impl<'a, P: Priors> Write<'a, P> {
    /// The write of a request of `tenant` carrying `key`.
    pub fn new(priors: &'a P, tenant: &'a Tenant, key: Option<&'a Idempotency>) -> Self {
        Self {
            priors,
            tenant,
            key,
        }
    }

    /// The stored result of an earlier request with this key, if any.
    pub async fn replay<T: DeserializeOwned>(&self) -> Result<Option<T>, P::Error> {
        let Some(key) = self.key else { return Ok(None) };
        match self.priors.prior(self.tenant, key).await? {
            None => Ok(None),
            Some(Prior::Mismatch) => Err(P::Error::request_id_reused()),
            Some(Prior::Erased { subject }) => Err(P::Error::result_erased(&subject)),
            Some(Prior::Replay(json)) => serde_json::from_str(&json).map(Some).map_err(|e| {
                P::Error::internal(format!("stored idempotent result unreadable: {e}"))
            }),
        }
    }

    /// The claim to commit with a change whose answer is `result`, about the
    /// resource `subject`; `None` for a request without a key.
    pub fn claim<T: Serialize>(
        &self,
        subject: impl Display,
        result: &T,
    ) -> Result<Option<Claim>, P::Error> {
        let Some(key) = self.key else { return Ok(None) };
        let result = serde_json::to_string(result)
            .map_err(|e| P::Error::internal(format!("result does not serialize: {e}")))?;
        Ok(Some(Claim {
            key: key.clone(),
            subject: subject.to_string(),
            result,
        }))
    }

    /// Reads a commit's outcome: `result` when it committed, the winner's
    /// result when another request holds the key, a retry after a version
    /// conflict or when the key's holder rolled back.
    pub async fn finish<T: DeserializeOwned, X>(
        &self,
        outcome: Result<(), CommitError<X>>,
        result: T,
    ) -> Result<Outcome<T, X>, P::Error> {
        match outcome {
            Ok(()) => Ok(Outcome::Done(result)),
            Err(CommitError::VersionConflict) => Ok(Outcome::Retry),
            Err(CommitError::KeyTaken) => Ok(match self.replay().await? {
                Some(prior) => Outcome::Done(prior),
                // The holder rolled back: the key is free again.
                None => Outcome::Retry,
            }),
            Err(CommitError::Other(x)) => Ok(Outcome::Other(x)),
        }
    }

    /// The answer to a request that ended with `result`: a refusal that may
    /// be the work of its own twin is replaced by the twin's stored result.
    pub async fn settle<T: DeserializeOwned>(
        &self,
        result: Result<T, P::Error>,
    ) -> Result<T, P::Error> {
        match result {
            Err(e) if self.key.is_some() && e.may_be_twins_change() => match self.replay().await? {
                Some(prior) => Ok(prior),
                None => Err(e),
            },
            other => other,
        }
    }

    /// The error after [`MAX_ATTEMPTS`] lost races.
    pub fn exhausted(&self) -> P::Error {
        P::Error::conflict()
    }
}

#[cfg(test)]
mod tests {
    //! The protocol against an in-memory store that behaves like the
    //! databases do: a claim is unique per (tenant, method, request id) and
    //! commits atomically with the change, versions are checked on commit.
    use std::{
        collections::HashMap,
        sync::{
            Arc, Mutex,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Error {
        Reused,
        Conflict,
        Internal(String),
        /// What a twin's change looks like to the loser's checks.
        AlreadyDone,
        /// A refusal a twin cannot cause.
        Invalid,
    }

    impl ProtocolError for Error {
        fn request_id_reused() -> Self {
            Error::Reused
        }
        fn conflict() -> Self {
            Error::Conflict
        }
        fn internal(why: String) -> Self {
            Error::Internal(why)
        }
        fn may_be_twins_change(&self) -> bool {
            matches!(self, Error::AlreadyDone)
        }
    }

    #[derive(Default)]
    struct Store {
        /// (tenant, request id) → (fingerprint, result).
        keys: Mutex<HashMap<(String, String), (String, String)>>,
        /// A counter and its version.
        counter: Mutex<(u64, u64)>,
        commits: AtomicUsize,
    }

    impl Priors for Arc<Store> {
        type Error = Error;
        async fn prior(&self, tenant: &Tenant, key: &Idempotency) -> Result<Option<Prior>, Error> {
            let keys = self.keys.lock().unwrap();
            Ok(keys
                .get(&(tenant.to_string(), key.request_id.clone()))
                .map(|(fp, result)| {
                    if *fp == key.fingerprint {
                        Prior::Replay(result.clone())
                    } else {
                        Prior::Mismatch
                    }
                }))
        }
    }

    impl Store {
        /// Sets the counter to `value` if it is still at `version`, with
        /// the claim, atomically.
        fn commit(
            &self,
            tenant: &Tenant,
            value: u64,
            version: u64,
            claim: Option<Claim>,
        ) -> Result<(), CommitError<Error>> {
            let mut keys = self.keys.lock().unwrap();
            let mut counter = self.counter.lock().unwrap();
            if let Some(c) = &claim
                && keys.contains_key(&(tenant.to_string(), c.key.request_id.clone()))
            {
                return Err(CommitError::KeyTaken);
            }
            if counter.1 != version {
                return Err(CommitError::VersionConflict);
            }
            *counter = (value, version + 1);
            if let Some(c) = claim {
                keys.insert(
                    (tenant.to_string(), c.key.request_id),
                    (c.key.fingerprint, c.result),
                );
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn key(request_id: &str, fingerprint: &str) -> Idempotency {
        Idempotency {
            method: "/test.v1.Counter/Add",
            request_id: request_id.to_owned(),
            fingerprint: fingerprint.to_owned(),
        }
    }

    fn acme() -> Tenant {
        Tenant::parse("acme").unwrap()
    }

    /// A use-case written the way services write them: replay, read,
    /// commit with the claim, retry on a lost race, settle.
    async fn add(
        store: &Arc<Store>,
        tenant: &Tenant,
        amount: u64,
        key: Option<&Idempotency>,
    ) -> Result<u64, Error> {
        let w = Write::new(store, tenant, key);
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            for _ in 0..MAX_ATTEMPTS {
                let (value, version) = *store.counter.lock().unwrap();
                tokio::task::yield_now().await;
                let new = value + amount;
                let outcome = store.commit(tenant, new, version, w.claim("counter", &new)?);
                match w.finish(outcome, new).await? {
                    Outcome::Done(v) => return Ok(v),
                    Outcome::Retry => continue,
                    Outcome::Other(e) => return Err(e),
                }
            }
            Err(w.exhausted())
        }
        .await;
        w.settle(result).await
    }

    #[tokio::test]
    async fn a_retry_answers_the_first_result_and_applies_nothing() {
        let store = Arc::new(Store::default());
        let k = key("r1", "fp");
        assert_eq!(add(&store, &acme(), 5, Some(&k)).await, Ok(5));
        assert_eq!(add(&store, &acme(), 5, Some(&k)).await, Ok(5));
        assert_eq!(store.commits.load(Ordering::SeqCst), 1);
        // Without a key every call applies.
        assert_eq!(add(&store, &acme(), 5, None).await, Ok(10));
        assert_eq!(add(&store, &acme(), 5, None).await, Ok(15));
    }

    #[tokio::test]
    async fn a_reused_request_id_is_refused() {
        let store = Arc::new(Store::default());
        add(&store, &acme(), 5, Some(&key("r1", "fp-a")))
            .await
            .unwrap();
        assert_eq!(
            add(&store, &acme(), 7, Some(&key("r1", "fp-b"))).await,
            Err(Error::Reused)
        );
        assert_eq!(store.counter.lock().unwrap().0, 5);
    }

    #[tokio::test]
    async fn keys_are_per_tenant() {
        let store = Arc::new(Store::default());
        let other = Tenant::parse("globex").unwrap();
        add(&store, &acme(), 5, Some(&key("r1", "fp")))
            .await
            .unwrap();
        assert_eq!(add(&store, &other, 5, Some(&key("r1", "fp"))).await, Ok(10));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_twins_apply_once_and_all_answer_the_winner() {
        let store = Arc::new(Store::default());
        let k = key("twin", "fp");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (store, k) = (store.clone(), k.clone());
                tokio::spawn(async move { add(&store, &acme(), 3, Some(&k)).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(3));
        }
        assert_eq!(store.commits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_different_requests_all_apply() {
        let store = Arc::new(Store::default());
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    add(&store, &acme(), 1, Some(&key(&format!("r{i}"), "fp"))).await
                })
            })
            .collect();
        // Each lost race means another writer committed, so with four
        // writers nobody loses more than three times: all apply.
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(store.counter.lock().unwrap().0, 4);
    }

    #[tokio::test]
    async fn a_lost_claim_whose_holder_rolled_back_retries() {
        let store = Arc::new(Store::default());
        let tenant = acme();
        let k = key("r1", "fp");
        let w = Write::new(&store, &tenant, Some(&k));
        // The holder's row is gone by the time the loser looks.
        let outcome = w
            .finish::<u64, Error>(Err(CommitError::KeyTaken), 1)
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Retry);
    }

    #[tokio::test]
    async fn settle_replaces_only_twin_refusals_and_only_with_a_key() {
        let store = Arc::new(Store::default());
        let tenant = acme();
        let k = key("r1", "fp");
        add(&store, &tenant, 4, Some(&k)).await.unwrap();
        let keyed = Write::new(&store, &tenant, Some(&k));
        assert_eq!(keyed.settle::<u64>(Err(Error::AlreadyDone)).await, Ok(4));
        assert_eq!(
            keyed.settle::<u64>(Err(Error::Invalid)).await,
            Err(Error::Invalid)
        );
        let unkeyed = Write::new(&store, &tenant, None);
        assert_eq!(
            unkeyed.settle::<u64>(Err(Error::AlreadyDone)).await,
            Err(Error::AlreadyDone)
        );
        // A twin refusal with a key nobody stored stays a refusal.
        let k2 = key("r2", "fp");
        let fresh = Write::new(&store, &tenant, Some(&k2));
        assert_eq!(
            fresh.settle::<u64>(Err(Error::AlreadyDone)).await,
            Err(Error::AlreadyDone)
        );
    }

    #[tokio::test]
    async fn an_unreadable_stored_result_is_internal() {
        let store = Arc::new(Store::default());
        let tenant = acme();
        store.keys.lock().unwrap().insert(
            ("acme".into(), "r1".into()),
            ("fp".into(), "not json".into()),
        );
        let k = key("r1", "fp");
        let w = Write::new(&store, &tenant, Some(&k));
        assert!(matches!(w.replay::<u64>().await, Err(Error::Internal(_))));
    }

    #[test]
    fn no_claim_without_a_key() {
        let store = Arc::new(Store::default());
        let tenant = acme();
        let w = Write::new(&store, &tenant, None);
        assert_eq!(w.claim("s", &1u64), Ok(None));
        let k = key("r1", "fp");
        let w = Write::new(&store, &tenant, Some(&k));
        let claim = w.claim("s", &7u64).unwrap().unwrap();
        assert_eq!((claim.subject.as_str(), claim.result.as_str()), ("s", "7"));
    }
}
