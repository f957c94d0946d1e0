//! Tenant and principal of a call, read from request metadata.
//!
//! Today the tenant comes from the `x-rapport-tenant` header. The gateway will
//! replace it with a signed assertion; services must only ever read tenant
//! context through this module so that the change lands in one place.
use std::fmt;

use tonic::{Code, Request, Status};

use crate::error::ErrorBuilder;

/// Metadata key holding the tenant id.
pub const TENANT_HEADER: &str = "x-rapport-tenant";
/// Metadata key holding the calling principal (API key id, user or service).
pub const PRINCIPAL_HEADER: &str = "x-rapport-principal";
const DOMAIN: &str = "rapport.dev";

/// A validated tenant id: 1 to 63 characters of `[a-z0-9_-]`, starting with a
/// letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Parses and validates a tenant id.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let valid_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        match raw.chars().next() {
            None => Err("must not be empty"),
            _ if raw.len() > 63 => Err("must be at most 63 characters"),
            Some(first) if !(first.is_ascii_lowercase() || first.is_ascii_digit()) => {
                Err("must start with a lower-case letter or digit")
            }
            _ if !raw.chars().all(valid_char) => Err("must contain only a-z, 0-9, '-' and '_'"),
            _ => Ok(Self(raw.to_owned())),
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is calling, on behalf of which tenant. Put into request extensions by
/// [`require_tenant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The tenant every query of this call is scoped to.
    pub tenant: TenantId,
    /// The calling principal, `anonymous` when none was given.
    pub principal: String,
}

impl RequestContext {
    /// The context of a request that passed [`require_tenant`].
    ///
    /// A handler reached without the interceptor is a wiring bug; it fails
    /// closed with UNAUTHENTICATED rather than panicking.
    pub fn from_request<T>(request: &Request<T>) -> Result<Self, Status> {
        match request.extensions().get::<RequestContext>() {
            Some(ctx) => Ok(ctx.clone()),
            None => extract(request),
        }
    }
}

/// Tonic interceptor: rejects a call without a valid tenant with
/// UNAUTHENTICATED and stores the [`RequestContext`] in its extensions.
pub fn require_tenant(mut request: Request<()>) -> Result<Request<()>, Status> {
    let ctx = extract(&request)?;
    request.extensions_mut().insert(ctx);
    Ok(request)
}

fn extract<T>(request: &Request<T>) -> Result<RequestContext, Status> {
    let Some(raw) = request.metadata().get(TENANT_HEADER) else {
        return Err(
            ErrorBuilder::new(Code::Unauthenticated, DOMAIN, "TENANT_MISSING")
                .message(format!("the `{TENANT_HEADER}` metadata is required"))
                .build(),
        );
    };
    let tenant = raw
        .to_str()
        .map_err(|_| "must be ASCII")
        .and_then(TenantId::parse)
        .map_err(|why| {
            ErrorBuilder::new(Code::Unauthenticated, DOMAIN, "TENANT_INVALID")
                .message(format!("the `{TENANT_HEADER}` metadata {why}"))
                .build()
        })?;
    let principal = request
        .metadata()
        .get(PRINCIPAL_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|p| !p.is_empty() && p.len() <= 128)
        .unwrap_or("anonymous")
        .to_owned();
    Ok(RequestContext { tenant, principal })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_validated() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("acme-eu_2").is_ok());
        for bad in ["", "Acme", "-acme", "acme corp", "a/b", &"a".repeat(64)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn missing_tenant_is_unauthenticated() {
        let err = require_tenant(Request::new(())).unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        let mut req = Request::new(());
        req.metadata_mut()
            .insert(TENANT_HEADER, "ACME".parse().unwrap());
        assert_eq!(
            require_tenant(req).unwrap_err().code(),
            Code::Unauthenticated
        );
    }

    #[test]
    fn valid_tenant_lands_in_extensions() {
        let mut req = Request::new(());
        req.metadata_mut()
            .insert(TENANT_HEADER, "acme".parse().unwrap());
        let req = require_tenant(req).unwrap();
        let ctx = RequestContext::from_request(&req).unwrap();
        assert_eq!(ctx.tenant.as_str(), "acme");
        assert_eq!(ctx.principal, "anonymous");
    }
}
