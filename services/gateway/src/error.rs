//! The one place where the gateway's own refusals become gRPC statuses (and
//! REST errors, which are made from these), and the one place they are
//! logged. Statuses of the services behind the gateway pass through
//! untouched; these are the gateway's own, in its ErrorInfo domain.
use std::{collections::HashMap, time::Duration};

use rapport_kit::{ErrorBuilder, FieldViolations, error::invalid_argument, idempotency};
use rapport_usecase::{ProtocolError, Violations};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::auth::AuthError;

/// ErrorInfo domain of the gateway.
pub const DOMAIN: &str = "gateway.rapport.dev";

/// Everything the gateway refuses or fails at by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Authentication failed (or could not be checked).
    Auth(AuthError),
    /// The admin API was reached without the pipeline's principal.
    NotAuthenticated,
    /// No such RPC in the contracts.
    MethodNotFound {
        /// The request path.
        path: String,
    },
    /// The RPC exists but its service has no backend here.
    ServiceNotRouted {
        /// Fully qualified service name.
        service: String,
    },
    /// The contract declares no scope for the RPC: fail closed.
    ScopeUndeclared,
    /// The caller lacks the scope the RPC declares.
    ScopeMissing {
        /// The scope required.
        scope: String,
    },
    /// An admin acting on another tenant without the platform scope.
    TenantForbidden,
    /// Granting the platform scope without holding it.
    ScopeEscalation,
    /// No such API key (or one of another tenant).
    ApiKeyNotFound {
        /// The resource name asked for.
        name: String,
    },
    /// The tenant has as many active API keys as it may.
    KeyQuotaExceeded {
        /// Keys per tenant.
        limit: u32,
    },
    /// The request body did not arrive in time.
    BodyTooSlow,
    /// The call did not finish before its deadline.
    DeadlineExceeded,
    /// The request message is larger than the limit.
    RequestTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body ended abnormally.
    RequestAborted,
    /// The backend could not be reached.
    BackendUnavailable {
        /// Fully qualified service name.
        service: String,
    },
    /// At a concurrency limit: the gateway's, or one backend's.
    Overloaded {
        /// What is at capacity.
        message: String,
        /// The backend service, when it is one backend's limit.
        backend: Option<String>,
    },
    /// The caller's rate limit; retry after `wait`.
    RateLimited {
        /// How long the bucket needs.
        wait: Duration,
    },
    /// Invalid input; nothing was changed.
    Invalid(Violations),
    /// The request id was used before for a different request.
    RequestIdReused,
    /// Concurrent writers kept winning; the caller may retry.
    Conflict,
    /// The gateway's database or a bug. The text is for logs only.
    Internal(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // For logs and for callers that wrap it (`rapport keys`); clients
        // get the status's message instead.
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Error {}

impl From<Violations> for Error {
    fn from(v: Violations) -> Self {
        Error::Invalid(v)
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        Error::Internal(format!("gateway storage failed: {e}"))
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        to_status(err)
    }
}

impl ProtocolError for Error {
    fn request_id_reused() -> Self {
        Error::RequestIdReused
    }

    fn conflict() -> Self {
        Error::Conflict
    }

    fn internal(why: String) -> Self {
        Error::Internal(why)
    }

    fn may_be_twins_change(&self) -> bool {
        // Creating a key checks nothing a twin could change.
        false
    }
}

/// Maps a gateway error to its status, logging it once.
pub fn to_status(err: Error) -> Status {
    let b = |code, reason| ErrorBuilder::new(code, DOMAIN, reason);
    match &err {
        Error::Internal(detail) => tracing::error!(error = %detail, "gateway call failed"),
        Error::BackendUnavailable { service } => {
            tracing::warn!(%service, "backend unavailable")
        }
        _ => tracing::debug!(error = ?err, "gateway refused a call"),
    }
    match err {
        Error::Auth(AuthError::Throttled) => Status::with_error_details(
            Code::ResourceExhausted,
            "too many authentication attempts with unknown API keys; retry shortly",
            {
                let mut d = tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(1)));
                d.set_error_info(AuthError::Throttled.reason(), DOMAIN, HashMap::new());
                d
            },
        ),
        Error::Auth(e) => {
            let message = match e {
                AuthError::Missing => {
                    "send an API key (`authorization: Bearer rk_…` or `x-api-key`) or a bearer token"
                }
                AuthError::Malformed => "the credential is not an API key or a bearer token",
                AuthError::UnknownKey => "the API key is not valid",
                AuthError::Revoked => "the API key was revoked",
                AuthError::Expired => "the credential has expired",
                AuthError::InvalidToken(_) => "the bearer token is not valid",
                AuthError::JwtDisabled => "bearer tokens are not accepted by this gateway",
                AuthError::Unavailable | AuthError::Throttled => {
                    "credentials cannot be checked right now; retry"
                }
            };
            let code = if e == AuthError::Unavailable {
                Code::Unavailable
            } else {
                Code::Unauthenticated
            };
            let mut builder = b(code, e.reason()).message(message);
            if let AuthError::InvalidToken(check) = e {
                builder = builder.meta("check", check);
            }
            builder.build()
        }
        Error::NotAuthenticated => b(Code::Unauthenticated, "CREDENTIALS_MISSING")
            .message("not authenticated")
            .build(),
        Error::MethodNotFound { path } => b(Code::Unimplemented, "METHOD_NOT_FOUND")
            .message(format!("no RPC {path} behind this gateway"))
            .build(),
        Error::ServiceNotRouted { service } => b(Code::Unimplemented, "SERVICE_NOT_ROUTED")
            .message(format!("{service} is not routed by this gateway"))
            .build(),
        Error::ScopeUndeclared => b(Code::PermissionDenied, "SCOPE_UNDECLARED")
            .message("this RPC declares no required scope and is refused")
            .build(),
        Error::ScopeMissing { scope } => b(Code::PermissionDenied, "SCOPE_MISSING")
            .message(format!("this RPC needs the `{scope}` scope"))
            .meta("required_scope", scope)
            .build(),
        Error::TenantForbidden => b(Code::PermissionDenied, "TENANT_FORBIDDEN")
            .message("an admin manages only its own tenant; this needs the `platform` scope")
            .build(),
        Error::ScopeEscalation => b(Code::PermissionDenied, "SCOPE_ESCALATION")
            .message("only a platform admin can grant the `platform` scope")
            .build(),
        Error::ApiKeyNotFound { name } => b(Code::NotFound, "API_KEY_NOT_FOUND")
            .message(format!("{name} does not exist"))
            .build(),
        Error::KeyQuotaExceeded { limit } => b(Code::ResourceExhausted, "API_KEY_QUOTA_EXCEEDED")
            .message(format!(
                "this tenant has {limit} active API keys, the most it may; revoke one or ask the platform"
            ))
            .meta("limit", limit.to_string())
            .build(),
        Error::BodyTooSlow => b(Code::DeadlineExceeded, "DEADLINE_EXCEEDED")
            .message("the request body did not arrive in time")
            .build(),
        Error::DeadlineExceeded => b(Code::DeadlineExceeded, "DEADLINE_EXCEEDED")
            .message("the call did not finish before its deadline")
            .build(),
        Error::RequestTooLarge { limit } => b(Code::InvalidArgument, "REQUEST_TOO_LARGE")
            .message(format!("the request message is larger than {limit} bytes"))
            .meta("limit_bytes", limit.to_string())
            // `request`: the message as a whole, not one of its fields.
            .violations(FieldViolations::single(
                "request",
                format!("the request message is larger than {limit} bytes"),
            ))
            .build(),
        Error::RequestAborted => b(Code::Cancelled, "REQUEST_ABORTED")
            .message("the request body ended abnormally")
            .build(),
        Error::BackendUnavailable { service } => b(Code::Unavailable, "BACKEND_UNAVAILABLE")
            .message(format!("{service} is unavailable; retry with backoff"))
            .build(),
        Error::Overloaded { message, backend } => {
            let mut builder = b(Code::ResourceExhausted, "OVERLOADED").message(message);
            if let Some(service) = backend {
                builder = builder.meta("service", service);
            }
            builder.build()
        }
        Error::RateLimited { wait } => Status::with_error_details(
            Code::ResourceExhausted,
            "rate limit exceeded for this API key; retry after the delay",
            {
                let mut d = tonic_types::ErrorDetails::with_retry_info(Some(wait));
                d.set_error_info("RATE_LIMITED", DOMAIN, HashMap::new());
                d
            },
        ),
        Error::Invalid(v) => invalid_argument(DOMAIN, v.into()),
        Error::RequestIdReused => idempotency::reused(DOMAIN),
        Error::Conflict => b(Code::Aborted, "CONCURRENT_MODIFICATION")
            .message("concurrent requests kept changing this; retry")
            .build(),
        Error::Internal(_) => b(Code::Internal, "INTERNAL")
            .message("internal error")
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_code_and_reason() {
        let table = [
            (
                Error::Auth(AuthError::Missing),
                Code::Unauthenticated,
                "CREDENTIALS_MISSING",
            ),
            (
                Error::Auth(AuthError::Unavailable),
                Code::Unavailable,
                "AUTH_UNAVAILABLE",
            ),
            (
                Error::Auth(AuthError::Throttled),
                Code::ResourceExhausted,
                "AUTH_THROTTLED",
            ),
            (
                Error::NotAuthenticated,
                Code::Unauthenticated,
                "CREDENTIALS_MISSING",
            ),
            (
                Error::MethodNotFound {
                    path: "/x.Y/Z".into(),
                },
                Code::Unimplemented,
                "METHOD_NOT_FOUND",
            ),
            (
                Error::ServiceNotRouted {
                    service: "x.Y".into(),
                },
                Code::Unimplemented,
                "SERVICE_NOT_ROUTED",
            ),
            (
                Error::ScopeUndeclared,
                Code::PermissionDenied,
                "SCOPE_UNDECLARED",
            ),
            (
                Error::ScopeMissing {
                    scope: "a.b".into(),
                },
                Code::PermissionDenied,
                "SCOPE_MISSING",
            ),
            (
                Error::TenantForbidden,
                Code::PermissionDenied,
                "TENANT_FORBIDDEN",
            ),
            (
                Error::ScopeEscalation,
                Code::PermissionDenied,
                "SCOPE_ESCALATION",
            ),
            (
                Error::ApiKeyNotFound {
                    name: "apiKeys/k".into(),
                },
                Code::NotFound,
                "API_KEY_NOT_FOUND",
            ),
            (
                Error::KeyQuotaExceeded { limit: 3 },
                Code::ResourceExhausted,
                "API_KEY_QUOTA_EXCEEDED",
            ),
            (
                Error::BodyTooSlow,
                Code::DeadlineExceeded,
                "DEADLINE_EXCEEDED",
            ),
            (
                Error::DeadlineExceeded,
                Code::DeadlineExceeded,
                "DEADLINE_EXCEEDED",
            ),
            (
                Error::RequestTooLarge { limit: 10 },
                Code::InvalidArgument,
                "REQUEST_TOO_LARGE",
            ),
            (Error::RequestAborted, Code::Cancelled, "REQUEST_ABORTED"),
            (
                Error::BackendUnavailable {
                    service: "x.Y".into(),
                },
                Code::Unavailable,
                "BACKEND_UNAVAILABLE",
            ),
            (
                Error::Overloaded {
                    message: "busy".into(),
                    backend: None,
                },
                Code::ResourceExhausted,
                "OVERLOADED",
            ),
            (
                Error::RateLimited {
                    wait: Duration::from_millis(5),
                },
                Code::ResourceExhausted,
                "RATE_LIMITED",
            ),
            (
                Error::Invalid(Violations::one("a", "b")),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (
                Error::RequestIdReused,
                Code::InvalidArgument,
                "REQUEST_ID_REUSED",
            ),
            (Error::Conflict, Code::Aborted, "CONCURRENT_MODIFICATION"),
            (
                Error::Internal("SELECT * FROM api_keys".into()),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (err, code, reason) in table {
            let status = to_status(err);
            assert_eq!(status.code(), code, "{reason}");
            let details = status.get_error_details();
            let info = details.error_info().expect("ErrorInfo on every error");
            assert_eq!(
                (info.reason.as_str(), info.domain.as_str()),
                (reason, DOMAIN)
            );
            assert!(!status.message().contains("SELECT"), "SQL leaked");
        }
    }
}
