//! The one error type of the profiles domain. The API layer maps each variant
//! to a gRPC code and an `ErrorInfo.reason` in one place.
use std::fmt;

use super::model::{CustomerId, CustomerState};

/// Invalid input: (field path, description) pairs, e.g.
/// (`customer.emails[1].address`, `not an email address`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<(String, String)>);

impl Violations {
    /// Records one violation.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push((field.into(), description.into()));
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err(Error::Invalid)` when anything was recorded.
    pub fn check(self) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self))
        }
    }

    /// A single violation as an error.
    pub fn one(field: impl Into<String>, description: impl Into<String>) -> Error {
        let mut v = Self::default();
        v.add(field, description);
        Error::Invalid(v)
    }
}

/// Everything that can go wrong in a profiles use-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is invalid; nothing was changed.
    Invalid(Violations),
    /// No such customer in this tenant.
    NotFound(CustomerId),
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
            Error::IdentityTaken { field, holder } => {
                write!(f, "{field} already belongs to customers/{holder}")
            }
            Error::EtagMismatch => f.write_str("etag mismatch"),
            Error::Conflict => f.write_str("concurrent modification"),
            Error::NotActive(id, state) => write!(f, "customer {id} is {state:?}"),
            Error::StageUnchanged => f.write_str("lifecycle stage unchanged"),
            Error::RequestIdReused => f.write_str("request id reused"),
            Error::Unavailable(why) => write!(f, "database unavailable: {why}"),
            Error::Internal(why) => write!(f, "internal: {why}"),
        }
    }
}

impl std::error::Error for Error {}
