//! AIP-193 errors: a canonical code, `google.rpc.ErrorInfo` (reason, domain,
//! metadata) on every error, and `google.rpc.BadRequest` field violations for
//! invalid input.
use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Builds a `tonic::Status` carrying `ErrorInfo` and optional field violations.
#[derive(Debug)]
pub struct ErrorBuilder {
    code: Code,
    reason: &'static str,
    domain: &'static str,
    message: String,
    metadata: HashMap<String, String>,
    violations: Vec<(String, String)>,
}

impl ErrorBuilder {
    /// Starts an error of `code` with an UPPER_SNAKE `reason` in `domain`.
    pub fn new(code: Code, domain: &'static str, reason: &'static str) -> Self {
        debug_assert!(
            reason
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "ErrorInfo.reason must be UPPER_SNAKE: {reason}"
        );
        Self {
            code,
            reason,
            domain,
            message: String::new(),
            metadata: HashMap::new(),
            violations: Vec::new(),
        }
    }

    /// The human-readable message (developer-facing, English).
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Adds one `ErrorInfo.metadata` entry. Never put personal data or secrets here.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Adds `BadRequest` field violations.
    pub fn violations(mut self, violations: FieldViolations) -> Self {
        self.violations.extend(violations.0);
        self
    }

    /// Finishes the status.
    pub fn build(self) -> Status {
        let mut details = ErrorDetails::with_error_info(self.reason, self.domain, self.metadata);
        for (field, description) in self.violations {
            details.add_bad_request_violation(field, description);
        }
        let message = if self.message.is_empty() {
            self.reason.to_ascii_lowercase().replace('_', " ")
        } else {
            self.message
        };
        Status::with_error_details(self.code, message, details)
    }
}

/// The canonical name of a gRPC code (`NOT_FOUND`), as in google.rpc.Code,
/// JSON error bodies, audit records and metric labels.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The refusals and failures every service words the same way, so that
/// each service's one mapping (`api::error::to_status`) writes only its own
/// reasons.
pub mod common {
    use tonic::{Code, Status};

    use super::ErrorBuilder;

    /// ABORTED `ETAG_MISMATCH`: `what` (`the inbox`) changed since it was read.
    pub fn etag_mismatch(domain: &'static str, what: &str) -> Status {
        ErrorBuilder::new(Code::Aborted, domain, "ETAG_MISMATCH")
            .message(format!(
                "{what} changed since it was read; read it again and retry with the new etag"
            ))
            .build()
    }

    /// ABORTED `CONCURRENT_MODIFICATION`: concurrent writers kept winning.
    pub fn conflict(domain: &'static str, what: &str) -> Status {
        ErrorBuilder::new(Code::Aborted, domain, "CONCURRENT_MODIFICATION")
            .message(format!("{what} kept changing concurrently; retry"))
            .build()
    }

    /// UNAVAILABLE `DATABASE_UNAVAILABLE` of `service`'s database.
    pub fn database_unavailable(domain: &'static str, service: &str) -> Status {
        ErrorBuilder::new(Code::Unavailable, domain, "DATABASE_UNAVAILABLE")
            .message(format!(
                "the {service} database is unavailable; retry with backoff"
            ))
            .build()
    }

    /// INTERNAL, saying nothing of the cause.
    pub fn internal(domain: &'static str) -> Status {
        ErrorBuilder::new(Code::Internal, domain, "INTERNAL")
            .message("internal error")
            .build()
    }

    /// Logs a status once, where it is made: a server-side failure with its
    /// detail (for operators, never sent), a refusal with its code only (its
    /// message may hold the caller's input).
    pub fn log(status: &Status, server_detail: Option<&str>) {
        match server_detail {
            Some(detail) => {
                tracing::error!(code = ?status.code(), error = %detail, "request failed");
            }
            None => tracing::debug!(code = ?status.code(), "request refused"),
        }
    }
}

/// INVALID_ARGUMENT with reason `INVALID_ARGUMENT` and the given violations.
pub fn invalid_argument(domain: &'static str, violations: FieldViolations) -> Status {
    let message = violations.summary();
    ErrorBuilder::new(Code::InvalidArgument, domain, "INVALID_ARGUMENT")
        .message(message)
        .violations(violations)
        .build()
}

impl From<rapport_usecase::Violations> for FieldViolations {
    fn from(v: rapport_usecase::Violations) -> Self {
        Self(v.0)
    }
}

/// A list of `BadRequest.FieldViolation`s, collected while validating input so
/// that the caller learns about every bad field at once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldViolations(Vec<(String, String)>);

impl FieldViolations {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// One violation.
    pub fn single(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut v = Self::new();
        v.add(field, description);
        v
    }

    /// Adds a violation of `field` (a path such as `customer.emails[1].address`).
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    /// Moves every violation of `other` into this list.
    pub fn extend(&mut self, other: FieldViolations) {
        self.0.extend(other.0);
    }

    /// Whether there is no violation.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The violations as (field, description) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(f, d)| (f.as_str(), d.as_str()))
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), FieldViolations> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// One line naming the first violation and how many others there are.
    pub fn summary(&self) -> String {
        match self.0.as_slice() {
            [] => "invalid argument".to_owned(),
            [(f, d)] => format!("{f}: {d}"),
            [(f, d), rest @ ..] => format!("{f}: {d} (and {} more)", rest.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_error_info_and_violations() {
        let mut v = FieldViolations::new();
        v.add("customer.emails[0].address", "not an email address");
        v.add("customer.time_zone", "unknown IANA time zone");
        let status = invalid_argument("profiles.rapport.dev", v);
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "INVALID_ARGUMENT");
        assert_eq!(info.domain, "profiles.rapport.dev");
        let bad = details.bad_request().expect("BadRequest");
        assert_eq!(bad.field_violations.len(), 2);
        assert_eq!(bad.field_violations[0].field, "customer.emails[0].address");
        assert!(status.message().contains("and 1 more"));
    }
}
