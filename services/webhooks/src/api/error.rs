//! The one place where domain errors become gRPC statuses, and the one
//! place they are logged. Messages and metadata carry ids, never secrets
//! or SQL text.
use rapport_kit::{
    ErrorBuilder, FieldViolations,
    error::{common, invalid_argument},
    idempotency,
};
use tonic::{Code, Status};

use super::convert::subscription_name;
use crate::{ERROR_DOMAIN, domain::Error};

/// Maps a domain error to a status, logging it once.
pub fn to_status(err: Error) -> Status {
    let b = |code, reason| ErrorBuilder::new(code, ERROR_DOMAIN, reason);
    let status = match &err {
        Error::Invalid(v) => invalid_argument(ERROR_DOMAIN, FieldViolations::from(v.clone())),
        Error::NotFound(id) => b(Code::NotFound, "WEBHOOK_SUBSCRIPTION_NOT_FOUND")
            .message(format!("{} does not exist", subscription_name(*id)))
            .meta("resource", subscription_name(*id))
            .build(),
        Error::Disabled(id) => b(Code::FailedPrecondition, "WEBHOOK_SUBSCRIPTION_DISABLED")
            .message(format!(
                "{} is disabled; set its state to ACTIVE first",
                subscription_name(*id)
            ))
            .meta("resource", subscription_name(*id))
            .build(),
        Error::EtagMismatch => common::etag_mismatch(ERROR_DOMAIN, "the subscription"),
        Error::Conflict => common::conflict(ERROR_DOMAIN, "the subscription"),
        Error::RequestIdReused => idempotency::reused(ERROR_DOMAIN),
        Error::Unavailable(_) => common::database_unavailable(ERROR_DOMAIN, "webhooks"),
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
    use crate::domain::{SubscriptionId, Violations};

    #[test]
    fn every_error_has_its_code_and_reason() {
        let id = SubscriptionId(uuid::Uuid::nil());
        let table = [
            (
                Error::Invalid(Violations::one("webhook_subscription.url", "bad")),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (
                Error::NotFound(id),
                Code::NotFound,
                "WEBHOOK_SUBSCRIPTION_NOT_FOUND",
            ),
            (
                Error::Disabled(id),
                Code::FailedPrecondition,
                "WEBHOOK_SUBSCRIPTION_DISABLED",
            ),
            (Error::EtagMismatch, Code::Aborted, "ETAG_MISMATCH"),
            (Error::Conflict, Code::Aborted, "CONCURRENT_MODIFICATION"),
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
                Error::Internal("SELECT * FROM webhook_subscriptions".into()),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (err, code, reason) in table {
            rapport_testkit::status::assert_mapping(&to_status(err), code, reason, ERROR_DOMAIN);
        }
    }
}
