//! Pending check-ins and auto-resolve: an inbox may say that a conversation
//! left waiting on the customer (PENDING) for `check_in_after` gets one
//! check-in message to the customer, and `auto_resolve_after` later is
//! resolved by automation, flagged `auto` on its resolution and on
//! ConversationResolved (so FCR and surveys leave it out).
//!
//! One durable timer per conversation carries the pending stretch (its
//! cycle): scheduled when the conversation becomes PENDING, moved to the
//! auto-resolve stage by the check-in, and cancelled by storage on every
//! transition out of PENDING — a customer's message, an agent's resolve or
//! snooze — which the one transition function always announces with
//! ConversationStatusChanged. Firing re-reads the conversation and acts
//! only if it is still PENDING, through the same transition function and
//! the same outbound path as everything else.
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{
    error::Error,
    model::*,
    repository::{ChangeSet, DeliveryDue, RowWrite},
    rules::{self, Action},
};

/// The check-in sent when the inbox sets no text.
pub const DEFAULT_TEXT: &str = "We have not heard back from you about case {{case_number}}. \
Is there anything else we can help with? Just reply to this message.";

/// The resolution code of an auto-resolved conversation.
pub const AUTO_RESOLVED: &str = "auto_resolved";

/// What an inbox does with conversations left pending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPolicy {
    /// Seconds in PENDING before the one check-in; 0: none.
    pub check_in_after_secs: i64,
    /// Seconds after the check-in (or, without one, after becoming
    /// PENDING) before auto-resolve; 0: never.
    pub auto_resolve_after_secs: i64,
    /// The check-in's text (`{{case_number}}`); empty: [`DEFAULT_TEXT`].
    pub check_in_text: String,
}

/// The step a pending conversation's timer takes when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Send the check-in.
    CheckIn,
    /// Resolve.
    AutoResolve,
}

impl Stage {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::CheckIn => "check_in",
            Stage::AutoResolve => "auto_resolve",
        }
    }

    /// The stage of a stored name.
    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "check_in" => Some(Stage::CheckIn),
            "auto_resolve" => Some(Stage::AutoResolve),
            _ => None,
        }
    }
}

/// The pending timer of a conversation, to (re)schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingTimer {
    /// The conversation.
    pub conversation: ConversationId,
    /// What firing does.
    pub stage: Stage,
    /// When.
    pub due: DateTime<Utc>,
}

/// The timer a conversation gets from its inbox as it becomes PENDING at
/// `now`, if the inbox checks in or auto-resolves.
pub fn on_pending(
    policy: &PendingPolicy,
    c: &Conversation,
    now: DateTime<Utc>,
) -> Option<PendingTimer> {
    let (stage, after) = if policy.check_in_after_secs > 0 {
        (Stage::CheckIn, policy.check_in_after_secs)
    } else if policy.auto_resolve_after_secs > 0 {
        (Stage::AutoResolve, policy.auto_resolve_after_secs)
    } else {
        return None;
    };
    Some(PendingTimer {
        conversation: c.id,
        stage,
        due: now + Duration::seconds(after),
    })
}

/// Whether `change` became PENDING (so its inbox's timer is due).
pub fn became_pending(events: &[DomainEvent]) -> bool {
    events.iter().any(|e| {
        matches!(
            e,
            DomainEvent::StatusChanged {
                to: State::Pending,
                ..
            }
        )
    })
}

/// What the pending timer of `c` does at `now` in `stage`: `None` when `c`
/// is no longer PENDING (a firing that lost its race with the customer).
/// `in_reply_to`: the external id of the thread's latest message (an
/// email check-in answers it).
pub fn fire(
    tenant: &Tenant,
    c: &Conversation,
    inbox: &Inbox,
    stage: Stage,
    in_reply_to: String,
    now: DateTime<Utc>,
) -> Result<Option<ChangeSet>, Error> {
    if c.state != State::Pending {
        return Ok(None);
    }
    let mut change = ChangeSet::new(tenant, now);
    match stage {
        Stage::CheckIn => {
            // Only a customer who wrote is checked in with: anything else
            // would be proactive contact, which needs their contact policy.
            if c.customer_wrote {
                let message = check_in_message(c, inbox, in_reply_to, now);
                let mut next = c.clone();
                rules::add_sent_message(&mut next, &message);
                next.version = c.version + 1;
                next.update_time = now;
                change.conversations.push(RowWrite::Update {
                    value: next,
                    expected_version: c.version,
                });
                change.deliveries.push(DeliveryDue {
                    conversation: c.id,
                    message: message.id,
                    due: now,
                });
                change.events.push(DomainEvent::MessageSent {
                    message: message.clone(),
                    first_response: false,
                });
                change.messages.push(message);
            }
            let after = inbox.pending.auto_resolve_after_secs;
            change.pending_timer = (after > 0).then(|| PendingTimer {
                conversation: c.id,
                stage: Stage::AutoResolve,
                due: now + Duration::seconds(after),
            });
        }
        Stage::AutoResolve => {
            let (next, events) = rules::transition(
                c,
                Action::Resolve {
                    code: AUTO_RESOLVED.to_owned(),
                    summary: String::new(),
                    by: None,
                    auto: true,
                },
                Cause::Automation,
                now,
            )?;
            change.conversations.push(RowWrite::Update {
                value: next,
                expected_version: c.version,
            });
            change.events = events;
        }
    }
    Ok(Some(change))
}

/// The check-in: a SYSTEM public message on the conversation's latest
/// channel, delivered like any reply; never a response (it goes through no
/// transition).
fn check_in_message(
    c: &Conversation,
    inbox: &Inbox,
    in_reply_to: String,
    now: DateTime<Utc>,
) -> Message {
    let mut values = BTreeMap::new();
    values.insert("case_number".to_owned(), c.case_number.to_string());
    let body = if inbox.pending.check_in_text.trim().is_empty() {
        DEFAULT_TEXT
    } else {
        &inbox.pending.check_in_text
    };
    let (text, _) = super::template::render(body, &values);
    let id = MessageId::generate();
    let channel = c.channels.last().copied().unwrap_or(inbox.channel);
    let email = channel == Channel::Email;
    Message {
        id,
        conversation: c.id,
        inbox: c.inbox,
        customer: c.customer,
        direction: Direction::Outbound,
        sender_kind: SenderKind::System,
        agent: None,
        visibility: Visibility::Public,
        channel,
        subject: match (email, c.subject.is_empty()) {
            (false, _) => String::new(),
            (true, true) => format!("Case {}", c.case_number),
            (true, false) => format!("Re: {}", c.subject),
        },
        text,
        html: String::new(),
        attachments: Vec::new(),
        external_id: email.then(|| rules::message_id_for(id, &inbox.address)),
        in_reply_to: if email { in_reply_to } else { String::new() },
        send_time: now,
        create_time: now,
        purpose: Some(Purpose::Service),
        call: None,
        delivery: Some(Delivery {
            state: DeliveryState::Scheduled,
            failure_reason: String::new(),
            scheduled_time: None,
            update_time: now,
            attempts: 0,
        }),
    }
}
