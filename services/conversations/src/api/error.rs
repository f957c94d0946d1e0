//! The one place where domain errors become gRPC statuses, and the one
//! place they are logged. Messages and metadata carry ids, never SQL text
//! or the caller's input.
use rapport_kit::{
    ErrorBuilder, FieldViolations,
    error::{common, invalid_argument},
    idempotency,
};
use tonic::{Code, Status};

use crate::{
    ERROR_DOMAIN,
    domain::{Error, error::Kind},
};

/// `?` on a use-case's result in a handler maps through [`to_status`].
impl From<Error> for Status {
    fn from(err: Error) -> Self {
        to_status(err)
    }
}

/// Maps a domain error to a status, logging it once.
pub fn to_status(err: Error) -> Status {
    let b = |code, reason| ErrorBuilder::new(code, ERROR_DOMAIN, reason);
    let status = match &err {
        Error::Invalid(v) => invalid_argument(ERROR_DOMAIN, FieldViolations::from(v.clone())),
        Error::NotFound(kind, name) => b(
            Code::NotFound,
            match kind {
                Kind::Inbox => "INBOX_NOT_FOUND",
                Kind::Conversation => "CONVERSATION_NOT_FOUND",
                Kind::Message => "MESSAGE_NOT_FOUND",
                Kind::Team => "TEAM_NOT_FOUND",
                Kind::Agent => "AGENT_NOT_FOUND",
                Kind::CannedResponse => "CANNED_RESPONSE_NOT_FOUND",
                Kind::BusinessCalendar => "BUSINESS_CALENDAR_NOT_FOUND",
                Kind::SlaPolicy => "SLA_POLICY_NOT_FOUND",
                Kind::Promise => "PROMISE_NOT_FOUND",
            },
        )
        .message(format!("{name} does not exist"))
        .meta("resource", name.clone())
        .build(),
        Error::InboxAddressTaken => b(Code::AlreadyExists, "INBOX_ADDRESS_TAKEN")
            .message("another inbox has this address on this channel and provider")
            .violations(FieldViolations::single(
                "inbox.address",
                "is another inbox's address",
            ))
            .build(),
        Error::AlreadyExists(kind, field) => {
            let (reason, resource) = match kind {
                Kind::Team => ("TEAM_ALREADY_EXISTS", "team"),
                Kind::Agent => ("AGENT_ALREADY_EXISTS", "agent"),
                Kind::BusinessCalendar => ("BUSINESS_CALENDAR_ALREADY_EXISTS", "business_calendar"),
                Kind::SlaPolicy => ("SLA_POLICY_ALREADY_EXISTS", "sla_policy"),
                Kind::Conversation => ("CONVERSATION_ALREADY_EXISTS", "conversation"),
                Kind::Message => ("MESSAGE_ALREADY_EXISTS", "message"),
                _ => ("CANNED_RESPONSE_ALREADY_EXISTS", "canned_response"),
            };
            b(Code::AlreadyExists, reason)
                .message(format!("another {resource} has this {field}"))
                .violations(FieldViolations::single(
                    format!("{resource}.{field}"),
                    "is another's",
                ))
                .build()
        }
        Error::InvalidTransition { from, action } => {
            b(Code::FailedPrecondition, "INVALID_STATE_TRANSITION")
                .message(format!("cannot {action} a {} conversation", from.as_str()))
                .meta("state", from.as_str())
                .build()
        }
        Error::InUse(name, by) => b(Code::FailedPrecondition, "RESOURCE_IN_USE")
            .message(format!("{name} is used by {by}"))
            .meta("resource", name.clone())
            .meta("used_by", by.clone())
            .build(),
        Error::NotAnAgent(_) => b(Code::FailedPrecondition, "NOT_AN_AGENT")
            .message("the caller acts as no agent of this tenant; create one with CreateAgent")
            .build(),
        Error::ContactNotPermitted(why) => b(Code::FailedPrecondition, "CONTACT_NOT_PERMITTED")
            .message("the customer's contact policy refuses this message now")
            .meta("reason", why.clone())
            .build(),
        Error::PromiseState { state, action } => b(Code::FailedPrecondition, "PROMISE_NOT_OPEN")
            .message(format!("cannot {action} a {state} promise"))
            .meta("state", *state)
            .build(),
        Error::CustomerMessageRequired => b(Code::FailedPrecondition, "CUSTOMER_MESSAGE_REQUIRED")
            .message(
                "the customer sees this promise: renegotiating it needs `message` (a public message \
                 already sent in the conversation) or `message_text` (sent now) telling them when \
                 they will hear back",
            )
            .violations(FieldViolations::single(
                "message_text",
                "is required when the promise is visible to the customer (or `message`)",
            ))
            .build(),
        Error::NoDelivery(name) => b(Code::FailedPrecondition, "NO_DELIVERY")
            .message(format!(
                "{name} is not an outbound message handed to a channel"
            ))
            .meta("resource", name.clone())
            .build(),
        Error::EtagMismatch => common::etag_mismatch(ERROR_DOMAIN, "the resource"),
        Error::Conflict => common::conflict(ERROR_DOMAIN, "the resource"),
        Error::RequestIdReused => idempotency::reused(ERROR_DOMAIN),
        Error::ProfilesUnavailable(_) => b(Code::Unavailable, "PROFILES_UNAVAILABLE")
            .message(
                "the sender could not be resolved with the profiles service; retry with backoff",
            )
            .build(),
        Error::SenderRefused(why) => invalid_argument(
            ERROR_DOMAIN,
            FieldViolations::single("sender", format!("profiles refused the identity: {why}")),
        ),
        Error::Unavailable(_) => common::database_unavailable(ERROR_DOMAIN, "conversations"),
        Error::Internal(_) => common::internal(ERROR_DOMAIN),
    };
    let detail = match &err {
        Error::Internal(d) | Error::Unavailable(d) | Error::ProfilesUnavailable(d) => {
            Some(d.as_str())
        }
        _ => None,
    };
    common::log(&status, detail);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{State, Violations};

    #[test]
    fn every_error_has_its_code_and_reason() {
        let table = [
            (
                Error::Invalid(Violations::one("inbox.address", "bad")),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (
                Error::NotFound(Kind::Inbox, "inboxes/x".into()),
                Code::NotFound,
                "INBOX_NOT_FOUND",
            ),
            (
                Error::NotFound(Kind::Conversation, "conversations/x".into()),
                Code::NotFound,
                "CONVERSATION_NOT_FOUND",
            ),
            (
                Error::NotFound(Kind::Message, "conversations/x/messages/y".into()),
                Code::NotFound,
                "MESSAGE_NOT_FOUND",
            ),
            (
                Error::InboxAddressTaken,
                Code::AlreadyExists,
                "INBOX_ADDRESS_TAKEN",
            ),
            (
                Error::InvalidTransition {
                    from: State::Closed,
                    action: "reopen",
                },
                Code::FailedPrecondition,
                "INVALID_STATE_TRANSITION",
            ),
            (
                Error::InUse("businessCalendars/x".into(), "slaPolicies/y".into()),
                Code::FailedPrecondition,
                "RESOURCE_IN_USE",
            ),
            (
                Error::NotAnAgent("user:7".into()),
                Code::FailedPrecondition,
                "NOT_AN_AGENT",
            ),
            (
                Error::AlreadyExists(Kind::Conversation, "source"),
                Code::AlreadyExists,
                "CONVERSATION_ALREADY_EXISTS",
            ),
            (
                Error::ContactNotPermitted("NO_CONSENT".into()),
                Code::FailedPrecondition,
                "CONTACT_NOT_PERMITTED",
            ),
            (
                Error::NotFound(Kind::Promise, "conversations/x/promises/y".into()),
                Code::NotFound,
                "PROMISE_NOT_FOUND",
            ),
            (
                Error::PromiseState {
                    state: "kept",
                    action: "cancel",
                },
                Code::FailedPrecondition,
                "PROMISE_NOT_OPEN",
            ),
            (
                Error::CustomerMessageRequired,
                Code::FailedPrecondition,
                "CUSTOMER_MESSAGE_REQUIRED",
            ),
            (Error::EtagMismatch, Code::Aborted, "ETAG_MISMATCH"),
            (Error::Conflict, Code::Aborted, "CONCURRENT_MODIFICATION"),
            (
                Error::RequestIdReused,
                Code::InvalidArgument,
                "REQUEST_ID_REUSED",
            ),
            (
                Error::ProfilesUnavailable("connection refused".into()),
                Code::Unavailable,
                "PROFILES_UNAVAILABLE",
            ),
            (
                Error::SenderRefused("bad email".into()),
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            ),
            (
                Error::Unavailable("pool timed out".into()),
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
            ),
            (
                Error::Internal("SELECT * FROM conversations".into()),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (err, code, reason) in table {
            rapport_testkit::status::assert_mapping(&to_status(err), code, reason, ERROR_DOMAIN);
        }
    }
}
