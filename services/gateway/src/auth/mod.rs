//! Authentication: who is calling. API keys (`authorization: Bearer rk_…` or
//! `x-api-key`) and JWT bearer tokens. The result is a [`Principal`]; the
//! credential itself never leaves this module and is never logged.
pub mod api_keys;
pub mod jwt;

use std::collections::BTreeSet;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Tenant the caller acts for.
    pub tenant: String,
    /// Stable id for audit and rate limits: `apiKeys/{key_id}` or `jwt:{sub}` (one issuer per gateway).
    pub id: String,
    /// Granted scopes.
    pub scopes: BTreeSet<String>,
    /// Requests per second allowed; `None` for the gateway default.
    pub rate_limit_per_second: Option<u32>,
}

impl Principal {
    /// Whether the principal holds `scope` (`admin` holds every scope).
    pub fn allows(&self, scope: &str) -> bool {
        self.scopes.contains(scope) || self.scopes.contains("admin")
    }
}

/// Why a credential was refused. Each maps to UNAUTHENTICATED with its own
/// `ErrorInfo.reason`; none says more than the reason to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No credential at all.
    Missing,
    /// Not an API key nor a JWT.
    Malformed,
    /// No such API key, or the secret does not match.
    UnknownKey,
    /// The API key was revoked.
    Revoked,
    /// The API key or token has expired.
    Expired,
    /// The JWT failed verification; the text names the check, for logs and
    /// the error message (never the token).
    InvalidToken(&'static str),
    /// JWT bearer tokens are not configured on this gateway.
    JwtDisabled,
    /// The credential store could not be reached.
    Unavailable,
    /// Too many lookups of unknown API keys right now: refused without
    /// reading the key store.
    Throttled,
}

impl AuthError {
    /// The `ErrorInfo.reason`.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "CREDENTIALS_MISSING",
            AuthError::Malformed => "CREDENTIALS_MALFORMED",
            AuthError::UnknownKey => "API_KEY_INVALID",
            AuthError::Revoked => "API_KEY_REVOKED",
            AuthError::Expired => "CREDENTIALS_EXPIRED",
            AuthError::InvalidToken(_) => "TOKEN_INVALID",
            AuthError::JwtDisabled => "TOKEN_INVALID",
            AuthError::Unavailable => "AUTH_UNAVAILABLE",
            AuthError::Throttled => "AUTH_THROTTLED",
        }
    }
}

/// The bearer credential of a request: `authorization: Bearer X` or `x-api-key: X`.
pub fn credential(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = v.split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::Malformed);
        }
        return Ok(token.trim());
    }
    if let Some(v) = headers.get("x-api-key") {
        let v = v.to_str().map_err(|_| AuthError::Malformed)?.trim();
        if v.is_empty() {
            return Err(AuthError::Malformed);
        }
        return Ok(v);
    }
    Err(AuthError::Missing)
}
