//! The one error type of the webhooks domain. The API layer maps each
//! variant to a gRPC code and an `ErrorInfo.reason` in one place.
use std::fmt;

pub use rapport_usecase::Violations;

use super::model::SubscriptionId;

/// Everything that can go wrong in a webhooks use-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is invalid; nothing was changed.
    Invalid(Violations),
    /// No such subscription in this tenant.
    NotFound(SubscriptionId),
    /// The subscription is disabled: it cannot be sent a test delivery.
    Disabled(SubscriptionId),
    /// The etag sent does not match the current one.
    EtagMismatch,
    /// Concurrent changes kept winning; the caller may retry.
    Conflict,
    /// The request id was used before for a different request.
    RequestIdReused,
    /// The database cannot be reached right now.
    Unavailable(String),
    /// A bug or a broken invariant. The text is for logs only.
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(v) => write!(f, "invalid argument ({} violations)", v.0.len()),
            Error::NotFound(id) => write!(f, "webhook subscription {id} not found"),
            Error::Disabled(id) => write!(f, "webhook subscription {id} is disabled"),
            Error::EtagMismatch => f.write_str("etag mismatch"),
            Error::Conflict => f.write_str("concurrent modification"),
            Error::RequestIdReused => f.write_str("request id reused"),
            Error::Unavailable(why) => write!(f, "database unavailable: {why}"),
            Error::Internal(why) => write!(f, "internal: {why}"),
        }
    }
}

impl std::error::Error for Error {}

// A twin that committed first deleted the subscription (a retried
// delete finds nothing), or moved its version.
rapport_usecase::service_error!(
    Error,
    twins: [Error::NotFound(_), Error::EtagMismatch, Error::Conflict],
);
