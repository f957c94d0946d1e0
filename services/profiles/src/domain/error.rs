//! The one error type of the profiles domain. The API layer maps each variant
//! to a gRPC code and an `ErrorInfo.reason` in one place.
use std::fmt;

pub use rapport_usecase::Violations;

use super::model::{CustomerId, CustomerState, ErasureReceiptId};

/// Everything that can go wrong in a profiles use-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is invalid; nothing was changed.
    Invalid(Violations),
    /// No such customer in this tenant.
    NotFound(CustomerId),
    /// No such erasure receipt in this tenant.
    ReceiptNotFound(ErasureReceiptId),
    /// No active customer holds the identity looked up.
    NoIdentityHolder,
    /// An email, phone or channel identity already belongs to another customer.
    IdentityTaken {
        /// Field path of the offending identity in the request.
        field: String,
        /// The customer holding it.
        holder: CustomerId,
    },
    /// The etag sent does not match the current one.
    EtagMismatch,
    /// Concurrent changes kept winning; the caller may retry.
    Conflict,
    /// The customer is merged or erased and cannot change.
    NotActive(CustomerId, CustomerState),
    /// The customer is already at the requested lifecycle stage.
    StageUnchanged,
    /// This request (its request id) was applied before, but the customer
    /// it was about has since been erased: it is not applied again.
    AppliedThenErased(CustomerId),
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
            Error::NotFound(id) => write!(f, "customer {id} not found"),
            Error::ReceiptNotFound(id) => write!(f, "erasure receipt {id} not found"),
            Error::NoIdentityHolder => f.write_str("no active customer holds this identity"),
            Error::IdentityTaken { field, holder } => {
                write!(f, "{field} already belongs to customers/{holder}")
            }
            Error::EtagMismatch => f.write_str("etag mismatch"),
            Error::Conflict => f.write_str("concurrent modification"),
            Error::NotActive(id, state) => write!(f, "customer {id} is {state:?}"),
            Error::StageUnchanged => f.write_str("lifecycle stage unchanged"),
            Error::AppliedThenErased(id) => {
                write!(f, "request applied before; customer {id} since erased")
            }
            Error::RequestIdReused => f.write_str("request id reused"),
            Error::Unavailable(why) => write!(f, "database unavailable: {why}"),
            Error::Internal(why) => write!(f, "internal: {why}"),
        }
    }
}

impl std::error::Error for Error {}

// A twin that committed first took the identities, changed the stage,
// merged or erased the customer, or moved its version.
rapport_usecase::service_error!(
    Error,
    twins: [Error::IdentityTaken { .. }, Error::NotActive(..), Error::StageUnchanged, Error::EtagMismatch, Error::Conflict],
    fn result_erased(subject: &str) -> Self {
        match uuid::Uuid::parse_str(subject) {
            Ok(id) => Error::AppliedThenErased(CustomerId(id)),
            Err(_) => Error::Internal(format!("erased subject {subject:?} is not a customer id")),
        }
    }
);
