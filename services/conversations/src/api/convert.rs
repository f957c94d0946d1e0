//! Domain values ⇄ protobuf messages. Enums map by name: a domain value
//! stored as `live_chat` is `CHANNEL_LIVE_CHAT` on the wire, so no table of
//! variants is written twice.
use chrono::{DateTime, Utc};
use rapport_kit::convert::{from_ts, ts};
use rapport_proto::{conversations as pb, types::Channel as PbChannel};

use crate::domain::model::*;

/// `value` (a domain enum's stored name) as the protobuf enum `E` whose
/// names are `PREFIX_VALUE`.
macro_rules! to_pb {
    ($pb:ty, $prefix:literal, $value:expr) => {
        <$pb>::from_str_name(&format!(
            "{}_{}",
            $prefix,
            $value.as_str().to_ascii_uppercase()
        ))
        .map_or(0, |e| e as i32)
    };
}

/// The domain enum `$ty` of a protobuf enum value; `Ok(None)` for
/// UNSPECIFIED.
macro_rules! from_pb {
    ($pb:ty, $ty:ty, $prefix:literal, $raw:expr) => {{
        match <$pb>::try_from($raw) {
            Err(_) => Err("is not a known value"),
            Ok(e) => {
                let name = e.as_str_name();
                let stored = name
                    .strip_prefix(concat!($prefix, "_"))
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if stored == "unspecified" {
                    Ok(None)
                } else {
                    <$ty>::from_str_opt(&stored)
                        .map(Some)
                        .ok_or("is not supported")
                }
            }
        }
    }};
}

pub(crate) use {from_pb, to_pb};

/// The protobuf channel of a domain channel.
pub fn channel_to_pb(c: Channel) -> i32 {
    to_pb!(PbChannel, "CHANNEL", c)
}

/// The domain channel of a protobuf one; `Ok(None)` when unspecified.
pub fn channel_from_pb(raw: i32) -> Result<Option<Channel>, &'static str> {
    from_pb!(PbChannel, Channel, "CHANNEL", raw)
}

/// Priority from the wire; `Ok(None)` when unspecified.
pub fn priority_from_pb(raw: i32) -> Result<Option<Priority>, &'static str> {
    from_pb!(pb::Priority, Priority, "PRIORITY", raw)
}

/// State from the wire; `Ok(None)` when unspecified.
pub fn state_from_pb(raw: i32) -> Result<Option<State>, &'static str> {
    from_pb!(pb::ConversationState, State, "CONVERSATION_STATE", raw)
}

/// Interaction type from the wire; `Ok(None)` when unspecified.
pub fn interaction_type_from_pb(raw: i32) -> Result<Option<InteractionType>, &'static str> {
    from_pb!(
        pb::InteractionType,
        InteractionType,
        "INTERACTION_TYPE",
        raw
    )
}

/// Visibility from the wire; `Ok(None)` when unspecified.
pub fn visibility_from_pb(raw: i32) -> Result<Option<Visibility>, &'static str> {
    from_pb!(pb::Visibility, Visibility, "VISIBILITY", raw)
}

/// The wire value of a visibility.
pub fn visibility_to_pb(v: Visibility) -> i32 {
    to_pb!(pb::Visibility, "VISIBILITY", v)
}

/// Message purpose from the wire; `Ok(None)` when unspecified.
pub fn purpose_from_pb(raw: i32) -> Result<Option<Purpose>, &'static str> {
    from_pb!(pb::MessagePurpose, Purpose, "MESSAGE_PURPOSE", raw)
}

/// The wire value of a message purpose (0 for none).
pub fn purpose_to_pb(p: Option<Purpose>) -> i32 {
    p.map_or(0, |p| to_pb!(pb::MessagePurpose, "MESSAGE_PURPOSE", p))
}

/// The wire value of a state.
pub fn state_to_pb(s: State) -> i32 {
    to_pb!(pb::ConversationState, "CONVERSATION_STATE", s)
}

/// The wire value of a priority.
pub fn priority_to_pb(p: Priority) -> i32 {
    to_pb!(pb::Priority, "PRIORITY", p)
}

/// The wire value of an interaction type.
pub fn interaction_type_to_pb(t: Option<InteractionType>) -> i32 {
    t.map_or(0, |t| to_pb!(pb::InteractionType, "INTERACTION_TYPE", t))
}

/// Origin from the wire; `Ok(None)` when unspecified.
pub fn origin_from_pb(raw: i32) -> Result<Option<Origin>, &'static str> {
    from_pb!(pb::Origin, Origin, "ORIGIN", raw)
}

/// The wire value of an origin.
pub fn origin_to_pb(o: Origin) -> i32 {
    to_pb!(pb::Origin, "ORIGIN", o)
}

/// The wire value of a sender kind.
pub fn sender_kind_to_pb(k: SenderKind) -> i32 {
    to_pb!(pb::SenderKind, "SENDER_KIND", k)
}

/// The wire value of a transition cause.
pub fn cause_to_pb(c: Cause) -> i32 {
    to_pb!(pb::TransitionCause, "TRANSITION_CAUSE", c)
}

/// `inboxes/{id}`.
pub fn inbox_name(id: InboxId) -> String {
    format!("inboxes/{id}")
}

/// `conversations/{id}`.
pub fn conversation_name(id: ConversationId) -> String {
    format!("conversations/{id}")
}

/// `conversations/{c}/messages/{id}`.
pub fn message_name(m: &Message) -> String {
    format!("conversations/{}/messages/{}", m.conversation, m.id)
}

/// `customers/{id}`.
pub fn customer_name(id: CustomerId) -> String {
    format!("customers/{id}")
}

/// `teams/{id}`, or empty.
pub fn team_name(id: Option<TeamId>) -> String {
    id.map(|t| format!("teams/{t}")).unwrap_or_default()
}

/// `agents/{id}`, or empty.
pub fn agent_name(id: Option<AgentId>) -> String {
    id.map(|a| format!("agents/{a}")).unwrap_or_default()
}

fn secs(d: i64) -> Option<prost_types::Duration> {
    (d != 0).then_some(prost_types::Duration {
        seconds: d,
        nanos: 0,
    })
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(ts)
}

/// An inbox on the wire.
pub fn inbox_to_pb(i: &Inbox) -> pb::Inbox {
    pb::Inbox {
        name: inbox_name(i.id),
        display_name: i.display_name.clone(),
        channel: channel_to_pb(i.channel),
        provider: i.provider.clone(),
        address: i.address.clone(),
        default_team: team_name(i.default_team),
        auto_acknowledgement: i.auto_ack.as_ref().map(|a| pb::AutoAcknowledgement {
            enabled: a.enabled,
            subject: a.subject.clone(),
            body: a.body.clone(),
        }),
        reopen_window: secs(i.reopen_window_secs),
        continue_across_channels: i.continue_across_channels,
        expected_reply_time: secs(i.expected_reply_secs),
        business_calendar: i.business_calendar.clone(),
        connector: i.connector.clone(),
        pending_check_in_after: secs(i.pending.check_in_after_secs),
        auto_resolve_after: secs(i.pending.auto_resolve_after_secs),
        check_in_text: i.pending.check_in_text.clone(),
        // Never the secret: only its hint.
        delivery_connector: i.delivery_connector.as_ref().map(|c| pb::ChannelConnector {
            url: c.url.clone(),
            signing_secret: String::new(),
            signing_secret_hint: c.secret.as_ref().map(|s| s.hint()).unwrap_or_default(),
        }),
        etag: i.etag(),
        create_time: Some(ts(i.create_time)),
        update_time: Some(ts(i.update_time)),
    }
}

/// A conversation on the wire.
pub fn conversation_to_pb(c: &Conversation) -> pb::Conversation {
    pb::Conversation {
        name: conversation_name(c.id),
        case_number: c.case_number,
        customer: customer_name(c.customer),
        inbox: inbox_name(c.inbox),
        channels: c.channels.iter().map(|ch| channel_to_pb(*ch)).collect(),
        subject: c.subject.clone(),
        state: state_to_pb(c.state),
        priority: priority_to_pb(c.priority),
        interaction_type: interaction_type_to_pb(c.interaction_type),
        origin: origin_to_pb(c.origin),
        source: c.source.clone(),
        assignee: agent_name(c.assignee),
        team: team_name(c.team),
        labels: c.labels.clone(),
        snooze_until: opt_ts(c.snooze_until),
        waiting_since: opt_ts(c.waiting_since),
        first_response_time: opt_ts(c.first_response_time),
        resolve_count: c.resolve_count,
        reopen_count: c.reopen_count,
        resolution: c.resolution.as_ref().map(|r| pb::Resolution {
            code: r.code.clone(),
            summary: r.summary.clone(),
            auto: r.auto,
            resolved_by: agent_name(r.resolved_by),
            resolve_time: Some(ts(r.resolve_time)),
        }),
        previous_conversation: c.previous.map(conversation_name).unwrap_or_default(),
        message_count: c.message_count,
        last_message_time: Some(ts(c.last_message_time)),
        etag: c.etag(),
        create_time: Some(ts(c.create_time)),
        update_time: Some(ts(c.update_time)),
        // Where it stands needs the calendars: `Handler::conversation_out`.
        sla: None,
    }
}

/// A message on the wire.
pub fn message_to_pb(m: &Message) -> pb::Message {
    pb::Message {
        name: message_name(m),
        direction: to_pb!(pb::Direction, "DIRECTION", m.direction),
        sender: Some(pb::Sender {
            kind: sender_kind_to_pb(m.sender_kind),
            name: match m.sender_kind {
                SenderKind::Customer => customer_name(m.customer),
                SenderKind::Agent | SenderKind::Bot => agent_name(m.agent),
                SenderKind::System => String::new(),
            },
        }),
        visibility: visibility_to_pb(m.visibility),
        channel: channel_to_pb(m.channel),
        subject: m.subject.clone(),
        text: m.text.clone(),
        html: m.html.clone(),
        attachments: m
            .attachments
            .iter()
            .map(|a| pb::Attachment {
                file_name: a.file_name.clone(),
                content_type: a.content_type.clone(),
                size_bytes: a.size_bytes,
                uri: a.uri.clone(),
            })
            .collect(),
        external_id: m.external_id.clone().unwrap_or_default(),
        in_reply_to: m.in_reply_to.clone(),
        call: m.call.as_ref().map(|c| pb::Call {
            talk_seconds: c.talk_secs,
            hold_seconds: c.hold_secs,
            wrap_up_seconds: c.wrap_up_secs,
            recording_uri: c.recording_uri.clone(),
        }),
        delivery: m.delivery.as_ref().map(|d| pb::Delivery {
            state: delivery_state_to_pb(d.state),
            failure_reason: d.failure_reason.clone(),
            scheduled_time: opt_ts(d.scheduled_time),
            update_time: Some(ts(d.update_time)),
        }),
        purpose: purpose_to_pb(m.purpose),
        send_time: Some(ts(m.send_time)),
        create_time: Some(ts(m.create_time)),
    }
}

/// A protobuf duration as whole seconds; `Err` when negative or fractional.
pub fn duration_secs(d: Option<&prost_types::Duration>) -> Result<i64, &'static str> {
    match d {
        None => Ok(0),
        Some(d) if d.seconds < 0 || d.nanos != 0 => Err("must be whole, non-negative seconds"),
        Some(d) => Ok(d.seconds),
    }
}

/// A protobuf timestamp as a time; `Err` when invalid.
pub fn time(t: &prost_types::Timestamp) -> Result<DateTime<Utc>, &'static str> {
    from_ts(t).ok_or("is not a valid time")
}

/// A delivery state as protobuf.
pub fn delivery_state_to_pb(s: DeliveryState) -> i32 {
    to_pb!(pb::DeliveryState, "DELIVERY_STATE", s)
}

/// The protobuf enum of an SLA metric.
pub fn metric_to_pb(m: crate::domain::sla::Metric) -> i32 {
    use crate::domain::sla::Metric;
    (match m {
        Metric::FirstResponse => pb::SlaMetric::FirstResponse,
        Metric::NextResponse => pb::SlaMetric::NextResponse,
        Metric::PeriodicUpdate => pb::SlaMetric::PeriodicUpdate,
        Metric::Resolution => pb::SlaMetric::Resolution,
    }) as i32
}

/// `c`'s applied SLA with each metric's evaluation, if an SLA applies.
pub fn conversation_sla_to_pb(
    c: &Conversation,
    evaluations: &[crate::domain::sla_clock::Evaluation],
) -> Option<pb::ConversationSla> {
    use crate::domain::{calendars::Calendar, sla::TimeBasis, sla_clock::Status};
    let applied = c.applied_sla.as_ref()?;
    let targets = applied.policy_at_revision.targets_for(c.priority);
    let metrics = evaluations
        .iter()
        .map(|e| {
            let basis = targets.and_then(|t| t.target(e.metric)).map(|t| t.basis);
            pb::SlaMetricStatus {
                metric: metric_to_pb(e.metric),
                cycle: i32::try_from(e.cycle).unwrap_or(i32::MAX),
                target: Some(prost_types::Duration {
                    seconds: i64::try_from(e.target_seconds).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                business_calendar: match basis {
                    Some(TimeBasis::BusinessTime(id)) => Calendar::name_of(id.0),
                    _ => String::new(),
                },
                start_time: c.sla.get(e.metric).map(|k| ts(k.start)),
                due_time: opt_ts(e.due),
                warn_time: opt_ts(e.warn_at),
                state: (match e.status {
                    Status::Running => pb::SlaMetricState::Running,
                    Status::Paused => pb::SlaMetricState::Paused,
                    Status::Met => pb::SlaMetricState::Met,
                    Status::Breached => pb::SlaMetricState::Breached,
                }) as i32,
                breach_time: opt_ts(e.breached_at),
                stop_time: opt_ts(e.stop),
            }
        })
        .collect();
    Some(pb::ConversationSla {
        sla_policy: format!("slaPolicies/{}", applied.policy),
        revision: applied.revision,
        apply_time: Some(ts(applied.applied_time)),
        metrics,
    })
}
