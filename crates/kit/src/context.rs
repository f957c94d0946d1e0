//! Tenant and principal of a call.
//!
//! Services take tenant context only from the gateway's signed assertion (see
//! [`crate::assertion`]) made for the method called: a client-sent
//! `x-rapport-tenant`, a forged assertion, or one made for another method or
//! service gets UNAUTHENTICATED, and a principal without the scope the
//! method's contract declares gets PERMISSION_DENIED (the gateway checks it
//! first; a service checks again, so that a way around the gateway is not a
//! way around scopes). Handlers read the verified context with
//! [`RequestContext::from_request`].

use tonic::{Code, Request, Status, service::Interceptor};

use crate::{
    assertion::{ASSERTION_HEADER, AssertionVerifier, Claims, Refusal},
    error::ErrorBuilder,
};

/// Metadata key a client might use to claim a tenant. Never trusted: the
/// gateway strips it and services ignore it.
pub const TENANT_HEADER: &str = "x-rapport-tenant";
const DOMAIN: &str = "rapport.dev";

/// The scope that grants every other (as at the gateway).
const ADMIN_SCOPE: &str = "admin";

pub use rapport_usecase::Tenant;

/// The gRPC path of the call being served, put into the request's extensions
/// by the kit's server (an interceptor does not see the URI otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalledMethod(pub String);

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

    /// The tenant of a request that passed [`TenantGuard`] (what most
    /// handlers need of the context).
    pub fn tenant_of<T>(request: &Request<T>) -> Result<Tenant, Status> {
        Ok(Self::from_request(request)?.tenant)
    }
}

fn unauthenticated(reason: &'static str, message: &str) -> Status {
    ErrorBuilder::new(Code::Unauthenticated, DOMAIN, reason)
        .message(message.to_owned())
        .build()
}

/// Tonic interceptor: verifies the gateway's assertion for the method called,
/// rejects the call with UNAUTHENTICATED when it is missing, forged, expired
/// or made for another method, with PERMISSION_DENIED when it lacks the
/// method's declared scope, and stores the [`RequestContext`] in the
/// request's extensions.
#[derive(Debug, Clone)]
pub struct TenantGuard {
    keys: AssertionVerifier,
}

impl TenantGuard {
    /// A guard trusting assertions signed by the private keys of `keys`.
    pub fn new(keys: AssertionVerifier) -> Self {
        Self { keys }
    }

    /// Verifies the assertion of a call of `path` (its gRPC path).
    pub fn verify(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        path: &str,
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
            .and_then(|v| self.keys.verify(v, path, now))
            .map_err(|why| {
                let why = match why {
                    Refusal::Malformed => "the tenant assertion is malformed",
                    Refusal::BadSignature => "the tenant assertion is not signed by the gateway",
                    Refusal::Expired => "the tenant assertion has expired",
                    Refusal::WrongTarget => {
                        "the tenant assertion was made for another service or method"
                    }
                };
                unauthenticated("ASSERTION_INVALID", why)
            })?;
        let tenant = Tenant::parse(&claims.tenant).map_err(|why| {
            unauthenticated("TENANT_INVALID", &format!("the asserted tenant {why}"))
        })?;
        // The contract's scope, as the gateway enforces it: an RPC that
        // declares none is unusable.
        let scope = rapport_proto::methods::by_path(path)
            .map(|m| m.scope)
            .filter(|s| !s.is_empty());
        let granted =
            scope.is_some_and(|scope| claims.scopes.iter().any(|s| s == scope || s == ADMIN_SCOPE));
        if !granted {
            return Err(
                ErrorBuilder::new(Code::PermissionDenied, DOMAIN, "SCOPE_MISSING")
                    .message("the caller lacks the scope this method requires")
                    .meta("required_scope", scope.unwrap_or_default())
                    .build(),
            );
        }
        Ok(RequestContext {
            tenant,
            principal: claims.principal,
            scopes: claims.scopes,
        })
    }
}

impl Interceptor for TenantGuard {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        // Set by the kit's server for every call; without it nothing can be
        // checked, so nothing is trusted.
        let path = request
            .extensions()
            .get::<CalledMethod>()
            .map(|m| m.0.clone())
            .unwrap_or_default();
        let ctx = self.verify(request.metadata(), &path)?;
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
    use crate::assertion::AssertionSigner;

    const GET: &str = "/rapport.profiles.v1.ProfilesService/GetCustomer";
    const ERASE: &str = "/rapport.profiles.v1.ProfilesService/EraseCustomer";

    fn signer(b: u8) -> AssertionSigner {
        use base64::Engine as _;
        AssertionSigner::from_base64(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([b; 32]),
        )
        .unwrap()
    }

    fn guard() -> TenantGuard {
        TenantGuard::new(AssertionVerifier::from_base64_list(&signer(1).public_key()).unwrap())
    }

    fn call(
        key: &AssertionSigner,
        tenant: &str,
        expires: i64,
        signed_for: &str,
        called: &str,
        scope: &str,
    ) -> Request<()> {
        let mut req = Request::new(());
        let claims = Claims {
            tenant: tenant.into(),
            principal: "apiKeys/k1".into(),
            scopes: vec![scope.into()],
            expires,
            audience: Claims::audience_of(signed_for).unwrap_or_default().into(),
            method: signed_for.into(),
        };
        req.metadata_mut()
            .insert(ASSERTION_HEADER, key.sign(&claims).parse().unwrap());
        req.extensions_mut().insert(CalledMethod(called.into()));
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
    fn only_a_valid_assertion_for_the_method_gives_a_tenant() {
        let mut guard = guard();
        let later = chrono::Utc::now().timestamp() + 60;
        let read = "profiles.read";

        let ok = guard
            .call(call(&signer(1), "acme", later, GET, GET, read))
            .unwrap();
        let ctx = RequestContext::from_request(&ok).unwrap();
        assert_eq!(ctx.tenant.as_str(), "acme");
        assert_eq!(ctx.principal, "apiKeys/k1");

        let mut spoofed = Request::new(());
        spoofed
            .metadata_mut()
            .insert(TENANT_HEADER, "acme".parse().unwrap());
        spoofed.extensions_mut().insert(CalledMethod(GET.into()));
        let err = guard.call(spoofed).unwrap_err();
        assert_eq!(
            (err.code(), reason(&err).as_str()),
            (Code::Unauthenticated, "ASSERTION_MISSING")
        );

        let refused = |req| {
            let err = guard.clone().call(req).unwrap_err();
            (err.code(), reason(&err))
        };
        let invalid = (Code::Unauthenticated, "ASSERTION_INVALID".to_owned());
        // Another key (a service's, say), expired, or replayed on another method.
        assert_eq!(
            refused(call(&signer(2), "acme", later, GET, GET, read)),
            invalid
        );
        assert_eq!(
            refused(call(&signer(1), "acme", 1, GET, GET, read)),
            invalid
        );
        assert_eq!(
            refused(call(&signer(1), "acme", later, GET, ERASE, "admin")),
            invalid
        );
        assert_eq!(
            refused(call(&signer(1), "ACME", later, GET, GET, read)),
            (Code::Unauthenticated, "TENANT_INVALID".to_owned())
        );
        // Signed for EraseCustomer, but without the scope its contract declares.
        assert_eq!(
            refused(call(&signer(1), "acme", later, ERASE, ERASE, read)),
            (Code::PermissionDenied, "SCOPE_MISSING".to_owned())
        );
        assert!(
            guard
                .clone()
                .call(call(&signer(1), "acme", later, ERASE, ERASE, "admin"))
                .is_ok()
        );
        // No path recorded by the server: nothing is trusted.
        let mut unrouted = call(&signer(1), "acme", later, GET, GET, read);
        unrouted.extensions_mut().remove::<CalledMethod>();
        assert_eq!(refused(unrouted), invalid);
    }
}
