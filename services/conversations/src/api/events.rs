//! Domain events → protobuf event messages, for the outbox. Only ids and
//! facts cross this line, never personal data (no text, subject, address
//! or attachment metadata). The subject is the conversation's name, whose
//! version storage sequences the event by.
use prost::Name;
use rapport_proto::conversations as pb;

use super::convert::*;
use crate::domain::DomainEvent;

/// The subject and the protobuf message of one domain event.
pub fn encode(event: &DomainEvent) -> (String, prost_types::Any) {
    let subject = event.subject();
    let any = match event {
        DomainEvent::ConversationCreated {
            conversation: c,
            channel,
        } => any(&pb::ConversationCreated {
            conversation: conversation_name(c.id),
            case_number: c.case_number,
            customer: customer_name(c.customer),
            inbox: inbox_name(c.inbox),
            channel: channel_to_pb(*channel),
            origin: origin_to_pb(c.origin),
            source: c.source.clone(),
            interaction_type: interaction_type_to_pb(c.interaction_type),
            priority: priority_to_pb(c.priority),
            previous_conversation: c.previous.map(conversation_name).unwrap_or_default(),
        }),
        DomainEvent::MessageReceived {
            message: m,
            first_of_conversation,
        } => any(&pb::MessageReceived {
            message: message_name(m),
            conversation: conversation_name(m.conversation),
            customer: customer_name(m.customer),
            inbox: inbox_name(m.inbox),
            channel: channel_to_pb(m.channel),
            first_of_conversation: *first_of_conversation,
            attachment_count: i32::try_from(m.attachments.len()).unwrap_or(i32::MAX),
        }),
        DomainEvent::MessageSent {
            message: m,
            first_response,
        } => any(&pb::MessageSent {
            message: message_name(m),
            conversation: conversation_name(m.conversation),
            customer: customer_name(m.customer),
            channel: channel_to_pb(m.channel),
            sender_kind: sender_kind_to_pb(m.sender_kind),
            agent: agent_name(m.agent),
            visibility: visibility_to_pb(m.visibility),
            purpose: purpose_to_pb(m.purpose),
            first_response: *first_response,
        }),
        DomainEvent::DeliveryChanged { message: m, from } => any(&pb::MessageDeliveryChanged {
            message: message_name(m),
            conversation: conversation_name(m.conversation),
            customer: customer_name(m.customer),
            channel: channel_to_pb(m.channel),
            from: delivery_state_to_pb(*from),
            to: m
                .delivery
                .as_ref()
                .map_or(0, |d| delivery_state_to_pb(d.state)),
        }),
        DomainEvent::StatusChanged {
            conversation,
            from,
            to,
            cause,
        } => any(&pb::ConversationStatusChanged {
            conversation: conversation_name(*conversation),
            from: state_to_pb(*from),
            to: state_to_pb(*to),
            cause: cause_to_pb(*cause),
        }),
        DomainEvent::Resolved { conversation: c } => any(&pb::ConversationResolved {
            conversation: conversation_name(c.id),
            customer: customer_name(c.customer),
            inbox: inbox_name(c.inbox),
            channel: c.channels.last().map_or(0, |ch| channel_to_pb(*ch)),
            assignee: agent_name(c.assignee),
            team: team_name(c.team),
            interaction_type: interaction_type_to_pb(c.interaction_type),
            origin: origin_to_pb(c.origin),
            source: c.source.clone(),
            resolve_count: c.resolve_count,
            reopen_count: c.reopen_count,
            auto: c.resolution.as_ref().is_some_and(|r| r.auto),
            resolved_by_kind: 0,
        }),
        DomainEvent::Assigned {
            conversation,
            assignee,
            team,
            previous_assignee,
            previous_team,
            auto,
        } => any(&pb::ConversationAssigned {
            conversation: conversation_name(*conversation),
            assignee: agent_name(*assignee),
            team: team_name(*team),
            previous_assignee: agent_name(*previous_assignee),
            previous_team: team_name(*previous_team),
            auto: *auto,
        }),
        DomainEvent::Reopened {
            conversation,
            resolve_count,
            cause,
        } => any(&pb::ConversationReopened {
            conversation: conversation_name(*conversation),
            resolve_count: *resolve_count,
            cause: cause_to_pb(*cause),
        }),
        DomainEvent::Promise(e) => super::promises::encode_event(e),
        DomainEvent::SlaWarningRaised(a) => any(&pb::SlaWarningRaised {
            conversation: conversation_name(a.conversation),
            metric: metric_to_pb(a.metric),
            cycle: i32::try_from(a.cycle).unwrap_or(i32::MAX),
            due_time: Some(rapport_kit::convert::ts(a.due)),
            sla_policy: format!("slaPolicies/{}", a.policy),
            revision: a.revision,
        }),
        DomainEvent::SlaBreached(a) => any(&pb::SlaBreached {
            conversation: conversation_name(a.conversation),
            metric: metric_to_pb(a.metric),
            cycle: i32::try_from(a.cycle).unwrap_or(i32::MAX),
            due_time: Some(rapport_kit::convert::ts(a.due)),
            sla_policy: format!("slaPolicies/{}", a.policy),
            revision: a.revision,
        }),
        DomainEvent::Escalated {
            conversation,
            priority,
            previous_priority,
            team,
            previous_team,
            metric,
            cause,
        } => any(&pb::ConversationEscalated {
            conversation: conversation_name(*conversation),
            priority: priority_to_pb(*priority),
            previous_priority: priority_to_pb(*previous_priority),
            team: team_name(*team),
            previous_team: team_name(*previous_team),
            metric: metric_to_pb(*metric),
            cause: cause_to_pb(*cause),
        }),
    };
    (subject, any)
}

fn any<M: Name>(message: &M) -> prost_types::Any {
    prost_types::Any::from_msg(message).expect("encoding to a Vec cannot fail")
}
