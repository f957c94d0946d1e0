//! The one place where domain errors become gRPC statuses, and the one place
//! they are logged. Messages and metadata carry ids, never personal data or
//! SQL text.
use rapport_kit::{
    ErrorBuilder, FieldViolations,
    error::{common, invalid_argument},
    idempotency,
};
use tonic::{Code, Status};

use crate::{ERROR_DOMAIN, domain::Error};

/// Converts domain violations.
pub fn violations(v: crate::domain::Violations) -> FieldViolations {
    let mut out = FieldViolations::new();
    for (f, d) in v.0 {
        out.add(f, d);
    }
    out
}

/// Maps a domain error to a status, logging it once.
pub fn to_status(err: Error) -> Status {
    let b = |code, reason| ErrorBuilder::new(code, ERROR_DOMAIN, reason);
    let status = match &err {
        Error::Invalid(v) => invalid_argument(ERROR_DOMAIN, violations(v.clone())),
        Error::NotFound(id) => b(Code::NotFound, "CUSTOMER_NOT_FOUND")
            .message(format!("customers/{id} does not exist"))
            .meta("resource", format!("customers/{id}"))
            .build(),
        Error::NoIdentityHolder => b(Code::NotFound, "CUSTOMER_NOT_FOUND")
            .message("no active customer holds this identity")
            .build(),
        Error::ReceiptNotFound(id) => b(Code::NotFound, "ERASURE_RECEIPT_NOT_FOUND")
            .message(format!("erasureReceipts/{id} does not exist"))
            .meta("resource", format!("erasureReceipts/{id}"))
            .build(),
        Error::IdentityTaken { field, holder } => b(Code::AlreadyExists, "IDENTITY_ALREADY_EXISTS")
            .message(format!("{field} already belongs to customers/{holder}"))
            .meta("field", field.clone())
            .meta("holder", format!("customers/{holder}"))
            .build(),
        Error::EtagMismatch => common::etag_mismatch(ERROR_DOMAIN, "the customer"),
        Error::Conflict => common::conflict(ERROR_DOMAIN, "the customer"),
        Error::NotActive(id, state) => b(Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE")
            .message(format!(
                "customers/{id} is {} and cannot change",
                state.as_str()
            ))
            .meta("resource", format!("customers/{id}"))
            .meta("state", state.as_str())
            .build(),
        Error::StageUnchanged => b(Code::FailedPrecondition, "LIFECYCLE_STAGE_UNCHANGED")
            .message("the customer is already at this lifecycle stage")
            .build(),
        Error::AppliedThenErased(id) => b(Code::FailedPrecondition, "CUSTOMER_ERASED")
            .message(format!(
                "this request_id was applied before, but customers/{id} has since been erased; \
                 the request is not applied again"
            ))
            .meta("resource", format!("customers/{id}"))
            .build(),
        Error::RequestIdReused => idempotency::reused(ERROR_DOMAIN),
        Error::Unavailable(_) => common::database_unavailable(ERROR_DOMAIN, "profiles"),
        Error::Internal(_) => common::internal(ERROR_DOMAIN),
    };
    let detail = match &err {
        Error::Internal(detail) | Error::Unavailable(detail) => Some(detail.as_str()),
        // Client errors: the message may hold input, so log only the code.
        _ => None,
    };
    common::log(&status, detail);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CustomerId, CustomerState, Violations};

    #[test]
    fn every_error_has_its_code_and_reason() {
        let id = CustomerId(uuid::Uuid::nil());
        let table = [
            (
                Error::Invalid(Violations(vec![("name".into(), "bad".into())])),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (Error::NotFound(id), Code::NotFound, "CUSTOMER_NOT_FOUND"),
            (
                Error::NoIdentityHolder,
                Code::NotFound,
                "CUSTOMER_NOT_FOUND",
            ),
            (
                Error::ReceiptNotFound(crate::domain::ErasureReceiptId(uuid::Uuid::nil())),
                Code::NotFound,
                "ERASURE_RECEIPT_NOT_FOUND",
            ),
            (
                Error::IdentityTaken {
                    field: "customer.emails[0].address".into(),
                    holder: id,
                },
                Code::AlreadyExists,
                "IDENTITY_ALREADY_EXISTS",
            ),
            (Error::EtagMismatch, Code::Aborted, "ETAG_MISMATCH"),
            (Error::Conflict, Code::Aborted, "CONCURRENT_MODIFICATION"),
            (
                Error::NotActive(id, CustomerState::Erased),
                Code::FailedPrecondition,
                "CUSTOMER_NOT_ACTIVE",
            ),
            (
                Error::StageUnchanged,
                Code::FailedPrecondition,
                "LIFECYCLE_STAGE_UNCHANGED",
            ),
            (
                Error::AppliedThenErased(id),
                Code::FailedPrecondition,
                "CUSTOMER_ERASED",
            ),
            (
                Error::RequestIdReused,
                Code::InvalidArgument,
                "REQUEST_ID_REUSED",
            ),
            (
                Error::Unavailable("pool timed out".into()),
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
            ),
            (
                Error::Internal("SELECT * FROM customers".into()),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (err, code, reason) in table {
            rapport_testkit::status::assert_mapping(&to_status(err), code, reason, ERROR_DOMAIN);
        }
    }
}
