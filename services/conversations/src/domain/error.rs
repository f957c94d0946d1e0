//! The one error type of the conversations domain. The API layer maps each
//! variant to a gRPC code and an `ErrorInfo.reason` in one place.
use std::fmt;

pub use rapport_usecase::Violations;

/// A resource of this service, for NotFound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `inboxes/{…}`.
    Inbox,
    /// `conversations/{…}`.
    Conversation,
    /// `conversations/{…}/messages/{…}`.
    Message,
    /// `teams/{…}`.
    Team,
    /// `agents/{…}`.
    Agent,
    /// `cannedResponses/{…}`.
    CannedResponse,
    /// `businessCalendars/{…}`.
    BusinessCalendar,
    /// `slaPolicies/{…}`.
    SlaPolicy,
    /// `conversations/{…}/promises/{…}`.
    Promise,
}

/// Everything that can go wrong in a conversations use-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is invalid; nothing was changed.
    Invalid(Violations),
    /// No such resource in this tenant (its resource name).
    NotFound(Kind, String),
    /// Another inbox of the tenant has this address on this channel.
    InboxAddressTaken,
    /// Another resource of this kind holds the key (the field it is in).
    AlreadyExists(Kind, &'static str),
    /// The conversation's state does not allow the action.
    InvalidTransition {
        /// The state it is in.
        from: super::State,
        /// What was asked.
        action: &'static str,
    },
    /// The resource (its name) cannot be deleted: another names it (its
    /// name).
    InUse(String, String),
    /// The caller acts as no agent of the tenant (the principal).
    NotAnAgent(String),
    /// The customer's contact policy refuses the message (why, as profiles
    /// says it).
    ContactNotPermitted(String),
    /// The promise's state does not allow the action.
    PromiseState {
        /// The state it is in.
        state: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// Renegotiating a promise the customer sees needs a message telling
    /// them when they will hear back.
    CustomerMessageRequired,
    /// The message (its name) has no delivery to report on: it is inbound,
    /// an internal note or a logged call.
    NoDelivery(String),
    /// The etag sent does not match the current one.
    EtagMismatch,
    /// Concurrent changes kept winning; the caller may retry.
    Conflict,
    /// The request id was used before for a different request.
    RequestIdReused,
    /// The profiles service could not resolve the sender right now.
    ProfilesUnavailable(String),
    /// The profiles service refused the sender's identity (the message).
    SenderRefused(String),
    /// The database cannot be reached right now.
    Unavailable(String),
    /// A bug or a broken invariant. The text is for logs only.
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(v) => write!(f, "invalid argument ({} violations)", v.0.len()),
            Error::NotFound(_, name) => write!(f, "{name} not found"),
            Error::InboxAddressTaken => f.write_str("inbox address taken"),
            Error::AlreadyExists(kind, field) => write!(f, "{kind:?} {field} taken"),
            Error::InvalidTransition { from, action } => {
                write!(f, "cannot {action} a {} conversation", from.as_str())
            }
            Error::InUse(name, by) => write!(f, "{name} is used by {by}"),
            Error::NotAnAgent(_) => f.write_str("the caller is no agent"),
            Error::ContactNotPermitted(why) => write!(f, "contact not permitted: {why}"),
            Error::PromiseState { state, action } => write!(f, "cannot {action} a {state} promise"),
            Error::CustomerMessageRequired => f.write_str("a message to the customer is required"),
            Error::NoDelivery(name) => write!(f, "{name} has no delivery"),
            Error::EtagMismatch => f.write_str("etag mismatch"),
            Error::Conflict => f.write_str("concurrent modification"),
            Error::RequestIdReused => f.write_str("request id reused"),
            Error::ProfilesUnavailable(why) => write!(f, "profiles unavailable: {why}"),
            Error::SenderRefused(why) => write!(f, "sender refused by profiles: {why}"),
            Error::Unavailable(why) => write!(f, "database unavailable: {why}"),
            Error::Internal(why) => write!(f, "internal: {why}"),
        }
    }
}

impl std::error::Error for Error {}

// A twin that committed first moved the version (etag) or the state (the
// transition no longer applies), or took the address or key.
rapport_usecase::service_error!(
    Error,
    twins: [Error::EtagMismatch, Error::PromiseState { .. }, Error::Conflict, Error::InvalidTransition { .. }, Error::InboxAddressTaken, Error::AlreadyExists(..)],
);
