//! Assertions on errors as every Rapport service reports them (AIP-193): a
//! gRPC code, `google.rpc.ErrorInfo` with a reason and metadata, and
//! `google.rpc.BadRequest` field violations for invalid input.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// A status, its reason and its field violations, for failure messages.
pub fn describe(status: &Status) -> String {
    format!(
        "{:?} {:?} reason={:?} fields={:?}",
        status.code(),
        status.message(),
        reason(status),
        violation_fields(status)
    )
}

/// `ErrorInfo.reason` of `status`, if any.
pub fn reason(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
}

/// `ErrorInfo.metadata` of `status` (empty when absent).
pub fn error_metadata(status: &Status) -> HashMap<String, String> {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.metadata.clone())
        .unwrap_or_default()
}

/// `BadRequest.field_violations[..].field` of `status`.
pub fn violation_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Asserts the code and `ErrorInfo.reason` of an error (a status without
/// `ErrorInfo` fails).
#[track_caller]
pub fn assert_error(status: &Status, code: Code, expected_reason: &str) {
    assert_eq!(
        status.code(),
        code,
        "unexpected status: {}",
        describe(status)
    );
    assert_eq!(
        reason(status).as_deref(),
        Some(expected_reason),
        "unexpected ErrorInfo.reason: {}",
        describe(status)
    );
}

/// Asserts what a service's one error mapping made of one error: the code,
/// an `ErrorInfo` with `reason` in the service's `domain`, and a message
/// without SQL (database details go to the log, never to the caller).
#[track_caller]
pub fn assert_mapping(status: &Status, code: Code, expected_reason: &str, domain: &str) {
    assert_error(status, code, expected_reason);
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo on every error");
    assert_eq!(info.domain, domain, "{}", describe(status));
    assert!(
        !status.message().contains("SELECT"),
        "SQL leaked: {}",
        status.message()
    );
}

/// Asserts the call failed and returns its status.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(result: Result<T, Status>) -> Status {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(status) => status,
    }
}

/// Asserts INVALID_ARGUMENT (reason `INVALID_ARGUMENT`) with a violation of
/// exactly `field`.
#[track_caller]
pub fn assert_violation(status: &Status, field: &str) {
    assert_error(status, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert!(
        violation_fields(status).iter().any(|f| f == field),
        "no violation of {field:?}: {}",
        describe(status)
    );
}

/// Asserts INVALID_ARGUMENT (reason `INVALID_ARGUMENT`) with a violation of
/// `field` or of a path under it (`field.x`, `field[0]`).
#[track_caller]
pub fn assert_violation_under(status: &Status, field: &str) {
    assert_error(status, Code::InvalidArgument, "INVALID_ARGUMENT");
    let under = |f: &String| {
        f == field
            || f.strip_prefix(field)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    assert!(
        violation_fields(status).iter().any(under),
        "no violation of or under {field:?}: {}",
        describe(status)
    );
}

#[cfg(test)]
mod tests {
    use tonic_types::{ErrorDetails, StatusExt as _};

    use super::*;

    fn invalid(fields: &[&str]) -> Status {
        let mut details = ErrorDetails::with_error_info(
            "INVALID_ARGUMENT",
            "test.rapport.dev",
            HashMap::from([("k".to_owned(), "v".to_owned())]),
        );
        for field in fields {
            details.add_bad_request_violation(*field, "bad");
        }
        Status::with_error_details(Code::InvalidArgument, "invalid", details)
    }

    #[test]
    fn reads_reason_metadata_and_violations() {
        let status = invalid(&["customer.emails[0].address"]);
        assert_eq!(reason(&status).as_deref(), Some("INVALID_ARGUMENT"));
        assert_eq!(
            error_metadata(&status).get("k").map(String::as_str),
            Some("v")
        );
        assert_eq!(violation_fields(&status), ["customer.emails[0].address"]);
        assert_error(&status, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_violation(&status, "customer.emails[0].address");
        assert_violation_under(&status, "customer.emails");
        assert_violation_under(&status, "customer");
        assert!(describe(&status).contains("INVALID_ARGUMENT"));
    }

    #[test]
    #[should_panic(expected = "unexpected ErrorInfo.reason")]
    fn a_status_without_error_info_fails_assert_error() {
        assert_error(&Status::not_found("gone"), Code::NotFound, "NOT_FOUND");
    }

    #[test]
    #[should_panic(expected = "no violation of or under")]
    fn a_prefix_is_not_a_parent_path() {
        assert_violation_under(&invalid(&["customer.emails_extra"]), "customer.emails");
    }
}
