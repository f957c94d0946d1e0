//! Tenant and principal of a call.
//!
//! Services take tenant context only from the gateway's signed assertion (see
//! [`crate::assertion`]): a client-sent `x-rapport-tenant` or a forged
//! assertion gets UNAUTHENTICATED. Handlers read the verified context with
//! [`RequestContext::from_request`].

use tonic::{Code, Request, Status, service::Interceptor};

use crate::{
    assertion::{ASSERTION_HEADER, AssertionKey, Claims, Refusal},
    error::ErrorBuilder,
};

/// Metadata key a client might use to claim a tenant. Never trusted: the
/// gateway strips it and services ignore it.
pub const TENANT_HEADER: &str = "x-rapport-tenant";
const DOMAIN: &str = "rapport.dev";

pub use rapport_usecase::Tenant;

/// Who is calling, on behalf of which tenant, with which scopes. Put into
/// request extensions by [`TenantGuard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The tenant every query of this call is scoped to.
    pub tenant: Tenant,
    /// The authenticated principal, e.g. `apiKeys/k1`.
    pub principal: String,
    /// Scopes granted to the principal.
    pub scopes: Vec<String>,
}

impl RequestContext {
    /// The context of a request that passed [`TenantGuard`].
    ///
    /// A handler reached without the guard is a wiring bug; it fails closed
    /// with UNAUTHENTICATED rather than trusting anything.
    pub fn from_request<T>(request: &Request<T>) -> Result<Self, Status> {
        request
            .extensions()
            .get::<RequestContext>()
            .cloned()
            .ok_or_else(|| unauthenticated("ASSERTION_MISSING", "no verified tenant context"))
    }
}

fn unauthenticated(reason: &'static str, message: &str) -> Status {
    ErrorBuilder::new(Code::Unauthenticated, DOMAIN, reason)
        .message(message.to_owned())
        .build()
}

/// Tonic interceptor: verifies the gateway's assertion, rejects the call with
/// UNAUTHENTICATED when it is missing, forged or expired, and stores the
/// [`RequestContext`] in the request's extensions.
#[derive(Debug, Clone)]
pub struct TenantGuard {
    key: AssertionKey,
}

impl TenantGuard {
    /// A guard trusting assertions signed with `key`.
    pub fn new(key: AssertionKey) -> Self {
        Self { key }
    }

    /// Verifies the assertion of a request's metadata.
    pub fn verify(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<RequestContext, Status> {
        let Some(raw) = metadata.get(ASSERTION_HEADER) else {
            return Err(unauthenticated(
                "ASSERTION_MISSING",
                "call through the gateway: no tenant assertion on this call",
            ));
        };
        let now = chrono::Utc::now().timestamp();
        let claims: Claims = raw
            .to_str()
            .map_err(|_| Refusal::Malformed)
            .and_then(|v| self.key.verify(v, now))
            .map_err(|why| {
                let why = match why {
                    Refusal::Malformed => "the tenant assertion is malformed",
                    Refusal::BadSignature => "the tenant assertion is not signed by the gateway",
                    Refusal::Expired => "the tenant assertion has expired",
                };
                unauthenticated("ASSERTION_INVALID", why)
            })?;
        let tenant = Tenant::parse(&claims.tenant).map_err(|why| {
            unauthenticated("TENANT_INVALID", &format!("the asserted tenant {why}"))
        })?;
        Ok(RequestContext {
            tenant,
            principal: claims.principal,
            scopes: claims.scopes,
        })
    }
}

impl Interceptor for TenantGuard {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let ctx = self.verify(request.metadata())?;
        // The call's SERVER span (rapport-telemetry's `rpc`) gets its tenant
        // from the verified assertion only, never from a client's header.
        tracing::Span::current().record("tenant", ctx.tenant.as_str());
        request.extensions_mut().insert(ctx);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> AssertionKey {
        AssertionKey::new(&[b; 32]).unwrap()
    }

    fn with_assertion(key: &AssertionKey, tenant: &str, expires: i64) -> Request<()> {
        let mut req = Request::new(());
        let claims = Claims {
            tenant: tenant.into(),
            principal: "apiKeys/k1".into(),
            scopes: vec!["profiles.read".into()],
            expires,
        };
        req.metadata_mut()
            .insert(ASSERTION_HEADER, key.sign(&claims).parse().unwrap());
        req
    }

    fn reason(status: &Status) -> String {
        use tonic_types::StatusExt as _;
        status
            .get_error_details()
            .error_info()
            .unwrap()
            .reason
            .clone()
    }

    #[test]
    fn tenant_ids_are_validated() {
        assert!(Tenant::parse("acme").is_ok());
        assert!(Tenant::parse("acme-eu_2").is_ok());
        for bad in ["", "Acme", "-acme", "acme corp", "a/b", &"a".repeat(64)] {
            assert!(Tenant::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_a_valid_assertion_gives_a_tenant() {
        let mut guard = TenantGuard::new(key(1));
        let later = chrono::Utc::now().timestamp() + 60;

        let ok = guard.call(with_assertion(&key(1), "acme", later)).unwrap();
        let ctx = RequestContext::from_request(&ok).unwrap();
        assert_eq!(ctx.tenant.as_str(), "acme");
        assert_eq!(ctx.principal, "apiKeys/k1");

        let mut spoofed = Request::new(());
        spoofed
            .metadata_mut()
            .insert(TENANT_HEADER, "acme".parse().unwrap());
        let err = guard.call(spoofed).unwrap_err();
        assert_eq!(
            (err.code(), reason(&err).as_str()),
            (Code::Unauthenticated, "ASSERTION_MISSING")
        );

        let err = guard
            .call(with_assertion(&key(2), "acme", later))
            .unwrap_err();
        assert_eq!(
            (err.code(), reason(&err).as_str()),
            (Code::Unauthenticated, "ASSERTION_INVALID")
        );
        let err = guard.call(with_assertion(&key(1), "acme", 1)).unwrap_err();
        assert_eq!(reason(&err), "ASSERTION_INVALID");
        let err = guard
            .call(with_assertion(&key(1), "ACME", later))
            .unwrap_err();
        assert_eq!(reason(&err), "TENANT_INVALID");
    }
}
