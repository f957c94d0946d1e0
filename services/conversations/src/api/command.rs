//! Requests → domain commands. Every bad field is reported with its path;
//! nothing here decides a rule the domain owns.
use rapport_kit::webhook::{SigningSecret, WebhookUrl};
use rapport_proto::conversations as pb;
use rapport_usecase::Violations;
use uuid::Uuid;

use super::convert::*;
use crate::domain::{
    model::*,
    repository::ConversationFilter,
    rules::{self, Action},
    service::{
        ConversationUpdate, DeliveryReport, Inbound, InboxMask, NewConversation, Outbound,
        ReportTarget, SenderIdentity,
    },
};

/// The id in `name`, a `{collection}/{uuid}` resource name.
pub fn id_in(name: &str, collection: &str) -> Result<Uuid, String> {
    name.strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| format!("must be a resource name `{collection}/{{id}}`"))
}

/// An inbox id from a name.
pub fn inbox_id(name: &str, field: &str) -> Result<InboxId, Violations> {
    id_in(name, "inboxes")
        .map(InboxId)
        .map_err(|why| Violations::one(field, why))
}

/// A conversation id from a name.
pub fn conversation_id(name: &str, field: &str) -> Result<ConversationId, Violations> {
    id_in(name, "conversations")
        .map(ConversationId)
        .map_err(|why| Violations::one(field, why))
}

/// A message name's conversation and message ids.
pub fn message_id(name: &str, field: &str) -> Result<(ConversationId, MessageId), Violations> {
    let parsed = name.strip_prefix("conversations/").and_then(|rest| {
        let (c, m) = rest.split_once("/messages/")?;
        Some((
            ConversationId(Uuid::parse_str(c).ok()?),
            MessageId(Uuid::parse_str(m).ok()?),
        ))
    });
    parsed.ok_or_else(|| {
        Violations::one(
            field,
            "must be a resource name `conversations/{id}/messages/{id}`",
        )
    })
}

/// A customer id from a name.
pub fn customer_id(name: &str, field: &str) -> Result<CustomerId, Violations> {
    id_in(name, "customers")
        .map(CustomerId)
        .map_err(|why| Violations::one(field, why))
}

fn opt_team(v: &mut Violations, name: &str, field: &str) -> Option<TeamId> {
    if name.is_empty() {
        return None;
    }
    v.take(field, id_in(name, "teams")).map(TeamId)
}

/// The inbox a create or update carries, before the service gives it an id
/// and times (`channel` required unless `update`).
fn inbox(i: &pb::Inbox, update: bool, v: &mut Violations) -> Inbox {
    let channel = if update {
        None
    } else {
        v.required("inbox.channel", channel_from_pb(i.channel))
    };
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    Inbox {
        id: InboxId(Uuid::nil()),
        display_name: i.display_name.clone(),
        channel: channel.unwrap_or(Channel::Email),
        provider: i.provider.clone(),
        address: i.address.clone(),
        default_team: opt_team(v, &i.default_team, "inbox.default_team"),
        auto_ack: i.auto_acknowledgement.as_ref().map(|a| AutoAck {
            enabled: a.enabled,
            subject: a.subject.clone(),
            body: a.body.clone(),
        }),
        reopen_window_secs: v
            .take(
                "inbox.reopen_window",
                duration_secs(i.reopen_window.as_ref()),
            )
            .unwrap_or(0),
        continue_across_channels: i.continue_across_channels,
        expected_reply_secs: v
            .take(
                "inbox.expected_reply_time",
                duration_secs(i.expected_reply_time.as_ref()),
            )
            .unwrap_or(0),
        business_calendar: i.business_calendar.clone(),
        connector: i.connector.clone(),
        pending: crate::domain::check_in::PendingPolicy {
            check_in_after_secs: v
                .take(
                    "inbox.pending_check_in_after",
                    duration_secs(i.pending_check_in_after.as_ref()),
                )
                .unwrap_or(0),
            auto_resolve_after_secs: v
                .take(
                    "inbox.auto_resolve_after",
                    duration_secs(i.auto_resolve_after.as_ref()),
                )
                .unwrap_or(0),
            check_in_text: i.check_in_text.trim().to_owned(),
        },
        delivery_connector: i.delivery_connector.as_ref().map(|c| Connector {
            url: v
                .take(
                    "inbox.delivery_connector.url",
                    WebhookUrl::parse(c.url.trim(), true).map(String::from),
                )
                .unwrap_or_default(),
            secret: (!c.signing_secret.is_empty())
                .then(|| {
                    v.take(
                        "inbox.delivery_connector.signing_secret",
                        SigningSecret::parse(&c.signing_secret)
                            .map_err(|_| "must be `whsec_` and base64".to_owned()),
                    )
                })
                .flatten(),
        }),
        create_time: epoch,
        update_time: epoch,
        version: 0,
    }
}

/// CreateInbox → the new inbox.
pub fn new_inbox(req: &pb::CreateInboxRequest) -> Result<Inbox, Violations> {
    let mut v = Violations::default();
    let Some(i) = &req.inbox else {
        return Err(Violations::one("inbox", "is required"));
    };
    let mut new = inbox(i, false, &mut v);
    new.address = rules::normalize_address(new.channel, &new.address);
    // The domain's rules too, so that every bad field is reported at once.
    rules::check_inbox(&new, "inbox", &mut v);
    v.check()?;
    Ok(new)
}

/// UpdateInbox → the patch, its mask and the etag to check.
pub fn inbox_update(
    req: &pb::UpdateInboxRequest,
) -> Result<(Inbox, InboxMask, Option<String>), Violations> {
    let mut v = Violations::default();
    let Some(i) = &req.inbox else {
        return Err(Violations::one("inbox", "is required"));
    };
    let id = v.take("inbox.name", id_in(&i.name, "inboxes")).map(InboxId);
    let mut patch = inbox(i, true, &mut v);
    let mut mask = InboxMask::default();
    let paths = req
        .update_mask
        .as_ref()
        .map(|m| m.paths.clone())
        .unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "is required");
    }
    for path in &paths {
        let all = path == "*";
        let known = match path.as_str() {
            "*" => true,
            "display_name" => set(&mut mask.display_name),
            "provider" => set(&mut mask.provider),
            "address" => set(&mut mask.address),
            "default_team" => set(&mut mask.default_team),
            "auto_acknowledgement" => set(&mut mask.auto_ack),
            "reopen_window" => set(&mut mask.reopen_window),
            "continue_across_channels" => set(&mut mask.continue_across_channels),
            "expected_reply_time" => set(&mut mask.expected_reply_time),
            "business_calendar" => set(&mut mask.business_calendar),
            "connector" => set(&mut mask.connector),
            "pending_check_in_after" => set(&mut mask.pending_check_in_after),
            "auto_resolve_after" => set(&mut mask.auto_resolve_after),
            "check_in_text" => set(&mut mask.check_in_text),
            "delivery_connector" => set(&mut mask.delivery_connector),
            _ => false,
        };
        if all {
            mask = InboxMask {
                display_name: true,
                provider: true,
                address: true,
                default_team: true,
                auto_ack: true,
                reopen_window: true,
                continue_across_channels: true,
                expected_reply_time: true,
                business_calendar: true,
                connector: true,
                pending_check_in_after: true,
                auto_resolve_after: true,
                check_in_text: true,
                delivery_connector: true,
            };
        }
        if !known {
            v.add(
                "update_mask",
                format!("`{path}` is not an updatable field of an inbox"),
            );
        }
    }
    v.check()?;
    patch.id = id.expect("checked");
    Ok((patch, mask, Some(i.etag.clone()).filter(|e| !e.is_empty())))
}

fn set(flag: &mut bool) -> bool {
    *flag = true;
    true
}

/// ReceiveMessage → the inbound message.
pub fn inbound(req: &pb::ReceiveMessageRequest) -> Result<Inbound, Violations> {
    use pb::receive_message_request::Sender as S;
    let mut v = Violations::default();
    let inbox = v.take("inbox", id_in(&req.inbox, "inboxes")).map(InboxId);
    let sender = match &req.sender {
        Some(S::Email(e)) if !e.trim().is_empty() => {
            Some(SenderIdentity::Email(e.trim().to_owned()))
        }
        Some(S::Phone(p)) if !p.trim().is_empty() => {
            Some(SenderIdentity::Phone(p.trim().to_owned()))
        }
        Some(S::Handle(h)) if !h.trim().is_empty() => {
            Some(SenderIdentity::Handle(h.trim().to_owned()))
        }
        _ => {
            v.add("email", "one of email, phone or handle is required");
            None
        }
    };
    let default = pb::Message::default();
    let m = req.message.as_ref().unwrap_or_else(|| {
        v.add("message", "is required");
        &default
    });
    let channel = v
        .take("message.channel", channel_from_pb(m.channel))
        .flatten();
    if m.text.trim().is_empty() && m.attachments.is_empty() {
        v.add(
            "message.text",
            "is required unless the message has attachments",
        );
    }
    if m.text.chars().count() > rules::MAX_TEXT {
        v.add("message.text", "is at most 100000 characters");
    }
    if m.subject.chars().count() > rules::MAX_SUBJECT {
        v.add("message.subject", "is at most 500 characters");
    }
    if m.html.chars().count() > 500_000 {
        v.add("message.html", "is at most 500000 characters");
    }
    if m.external_id.trim().is_empty() {
        v.add("message.external_id", "is required: it dedupes the message");
    } else if m.external_id.chars().count() > rules::MAX_EXTERNAL_ID {
        v.add("message.external_id", "is at most 500 characters");
    }
    if m.attachments.len() > rules::MAX_ATTACHMENTS {
        v.add("message.attachments", "holds at most 50 attachments");
    }
    let attachments = m
        .attachments
        .iter()
        .enumerate()
        .map(|(n, a)| attachment(a, &format!("message.attachments[{n}]"), &mut v))
        .collect();
    let send_time = m
        .send_time
        .as_ref()
        .and_then(|t| v.take("message.send_time", time(t)));
    if req.display_name.chars().count() > rules::MAX_NAME {
        v.add("display_name", "is at most 200 characters");
    }
    v.check()?;
    Ok(Inbound {
        inbox: inbox.expect("checked"),
        sender: sender.expect("checked"),
        display_name: req.display_name.trim().to_owned(),
        channel,
        subject: m.subject.clone(),
        text: m.text.clone(),
        html: m.html.clone(),
        attachments,
        external_id: m.external_id.trim().to_owned(),
        in_reply_to: m.in_reply_to.clone(),
        references: Vec::new(),
        send_time,
    })
}

/// CreateMessage → the agent's message, written by the agent acting as
/// `principal`.
pub fn outbound(req: &pb::CreateMessageRequest, principal: &str) -> Result<Outbound, Violations> {
    let mut v = Violations::default();
    let conversation = v
        .take("parent", id_in(&req.parent, "conversations"))
        .map(ConversationId);
    let default = pb::Message::default();
    let m = req.message.as_ref().unwrap_or_else(|| {
        v.add("message", "is required");
        &default
    });
    let visibility = v
        .take("message.visibility", visibility_from_pb(m.visibility))
        .flatten()
        .unwrap_or(Visibility::Public);
    let channel = v
        .take("message.channel", channel_from_pb(m.channel))
        .flatten();
    let call = m.call.as_ref().map(|c| {
        for (field, secs) in [
            ("talk_seconds", c.talk_seconds),
            ("hold_seconds", c.hold_seconds),
            ("wrap_up_seconds", c.wrap_up_seconds),
        ] {
            if secs < 0 {
                v.add(format!("message.call.{field}"), "must not be negative");
            }
        }
        if !c.recording_uri.is_empty()
            && (!c.recording_uri.starts_with("https://") || c.recording_uri.chars().count() > 2000)
        {
            v.add(
                "message.call.recording_uri",
                "must be an https:// URL of at most 2000 characters",
            );
        }
        if !matches!(channel, Some(Channel::Phone | Channel::InPerson)) {
            v.add(
                "message.channel",
                "must be PHONE or IN_PERSON for a logged call or visit",
            );
        }
        Call {
            talk_secs: c.talk_seconds,
            hold_secs: c.hold_seconds,
            wrap_up_secs: c.wrap_up_seconds,
            recording_uri: c.recording_uri.clone(),
        }
    });
    let purpose = v
        .take("message.purpose", purpose_from_pb(m.purpose))
        .flatten();
    if purpose == Some(Purpose::Acknowledgement) {
        v.add(
            "message.purpose",
            "ACKNOWLEDGEMENT is Rapport's own; an agent's is SERVICE, MARKETING, SURVEYS or LOYALTY",
        );
    }
    if m.text.trim().is_empty() && call.is_none() {
        v.add("message.text", "is required (the notes, for a logged call)");
    }
    if m.text.chars().count() > rules::MAX_TEXT {
        v.add("message.text", "is at most 100000 characters");
    }
    if m.subject.chars().count() > rules::MAX_SUBJECT {
        v.add("message.subject", "is at most 500 characters");
    }
    if m.html.chars().count() > 500_000 {
        v.add("message.html", "is at most 500000 characters");
    }
    if m.attachments.len() > rules::MAX_ATTACHMENTS {
        v.add("message.attachments", "holds at most 50 attachments");
    }
    let attachments = m
        .attachments
        .iter()
        .enumerate()
        .map(|(n, a)| attachment(a, &format!("message.attachments[{n}]"), &mut v))
        .collect();
    v.check()?;
    Ok(Outbound {
        conversation: conversation.expect("checked"),
        principal: principal.to_owned(),
        visibility,
        channel,
        purpose: purpose.unwrap_or(Purpose::Service),
        call,
        subject: m.subject.clone(),
        text: m.text.clone(),
        html: m.html.clone(),
        attachments,
    })
}

fn attachment(a: &pb::Attachment, path: &str, v: &mut Violations) -> Attachment {
    if a.file_name.trim().is_empty() || a.file_name.chars().count() > 255 {
        v.add(
            format!("{path}.file_name"),
            "is required, at most 255 characters",
        );
    }
    if a.content_type.chars().count() > 255 {
        v.add(format!("{path}.content_type"), "is at most 255 characters");
    }
    if a.size_bytes < 0 {
        v.add(format!("{path}.size_bytes"), "must not be negative");
    }
    if !a.uri.starts_with("https://") || a.uri.chars().count() > 2000 {
        v.add(
            format!("{path}.uri"),
            "must be an https:// URL of at most 2000 characters",
        );
    }
    Attachment {
        file_name: a.file_name.clone(),
        content_type: a.content_type.clone(),
        size_bytes: a.size_bytes,
        uri: a.uri.clone(),
    }
}

/// ListConversations → the storage filter, and the channel and label
/// filters applied to the page read.
pub fn conversation_filter(
    req: &pb::ListConversationsRequest,
) -> Result<(ConversationFilter, Option<Channel>, Option<String>), Violations> {
    let mut v = Violations::default();
    let mut f = ConversationFilter::default();
    if !req.customer.is_empty() {
        f.customer = v
            .take("customer", id_in(&req.customer, "customers"))
            .map(CustomerId);
    }
    for (n, s) in req.states.iter().enumerate() {
        if let Some(s) = v.required(&format!("states[{n}]"), state_from_pb(*s)) {
            f.states.push(s);
        }
    }
    match req.assignee.as_str() {
        "" => {}
        "-" => f.assignee = Some(None),
        a => {
            f.assignee = v
                .take("assignee", id_in(a, "agents"))
                .map(|id| Some(AgentId(id)))
        }
    }
    if !req.team.is_empty() {
        f.team = v.take("team", id_in(&req.team, "teams")).map(TeamId);
    }
    for (n, p) in req.priorities.iter().enumerate() {
        if let Some(p) = v.required(&format!("priorities[{n}]"), priority_from_pb(*p)) {
            f.priorities.push(p);
        }
    }
    if !req.inbox.is_empty() {
        f.inbox = v.take("inbox", id_in(&req.inbox, "inboxes")).map(InboxId);
    }
    f.create_from = req
        .create_time_from
        .as_ref()
        .and_then(|t| v.take("create_time_from", time(t)));
    f.create_to = req
        .create_time_to
        .as_ref()
        .and_then(|t| v.take("create_time_to", time(t)));
    let channel = v.take("channel", channel_from_pb(req.channel)).flatten();
    let label = Some(req.label.clone()).filter(|l| !l.is_empty());
    v.check()?;
    Ok((f, channel, label))
}

/// UpdateConversation → the update and the etag to check.
pub fn conversation_update(
    req: &pb::UpdateConversationRequest,
) -> Result<(ConversationId, ConversationUpdate, Option<String>), Violations> {
    let mut v = Violations::default();
    let Some(c) = &req.conversation else {
        return Err(Violations::one("conversation", "is required"));
    };
    let id = v
        .take("conversation.name", id_in(&c.name, "conversations"))
        .map(ConversationId);
    let mut u = ConversationUpdate::default();
    let paths = req
        .update_mask
        .as_ref()
        .map(|m| m.paths.clone())
        .unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "is required");
    }
    for path in &paths {
        match path.as_str() {
            "subject" => {
                if c.subject.chars().count() > rules::MAX_SUBJECT {
                    v.add("conversation.subject", "is at most 500 characters");
                }
                u.subject = Some(c.subject.clone());
            }
            "priority" => {
                u.priority = v.required("conversation.priority", priority_from_pb(c.priority));
            }
            "interaction_type" => {
                u.interaction_type = v.take(
                    "conversation.interaction_type",
                    interaction_type_from_pb(c.interaction_type),
                );
            }
            "labels" => u.labels = Some(labels(&c.labels, &mut v)),
            other => v.add(
                "update_mask",
                format!("`{other}` is not an updatable field of a conversation"),
            ),
        }
    }
    v.check()?;
    Ok((
        id.expect("checked"),
        u,
        Some(c.etag.clone()).filter(|e| !e.is_empty()),
    ))
}

/// CreateConversation → the conversation to start.
pub fn new_conversation(
    req: &pb::CreateConversationRequest,
) -> Result<NewConversation, Violations> {
    let mut v = Violations::default();
    let Some(c) = &req.conversation else {
        return Err(Violations::one("conversation", "is required"));
    };
    let customer = v
        .take("conversation.customer", id_in(&c.customer, "customers"))
        .map(CustomerId);
    let inbox = v
        .take("conversation.inbox", id_in(&c.inbox, "inboxes"))
        .map(InboxId);
    if c.subject.chars().count() > rules::MAX_SUBJECT {
        v.add("conversation.subject", "is at most 500 characters");
    }
    let priority = v
        .take("conversation.priority", priority_from_pb(c.priority))
        .flatten()
        .unwrap_or(Priority::Normal);
    let interaction_type = v
        .take(
            "conversation.interaction_type",
            interaction_type_from_pb(c.interaction_type),
        )
        .flatten();
    let origin = match v.take("origin", origin_from_pb(req.origin)).flatten() {
        Some(Origin::Inbound) => {
            v.add(
                "origin",
                "must not be INBOUND: conversations a customer starts come from ReceiveMessage",
            );
            Origin::Outbound
        }
        Some(o) => o,
        None => Origin::Outbound,
    };
    let source = c.source.trim().to_owned();
    if source.chars().count() > 200 || source.chars().any(char::is_control) {
        v.add(
            "conversation.source",
            "is at most 200 characters, without control characters",
        );
    }
    if matches!(origin, Origin::FeedbackFollowUp | Origin::Review) && source.is_empty() {
        v.add(
            "conversation.source",
            "is required for a follow-up or a review reply: what it answers",
        );
    }
    let labels = labels(&c.labels, &mut v);
    v.check()?;
    Ok(NewConversation {
        customer: customer.expect("checked"),
        inbox: inbox.expect("checked"),
        subject: c.subject.clone(),
        priority,
        interaction_type,
        origin,
        source,
        labels,
    })
}

fn labels(raw: &[String], v: &mut Violations) -> Vec<String> {
    if raw.len() > rules::MAX_LABELS {
        v.add("conversation.labels", "holds at most 50 labels");
    }
    let mut out = Vec::new();
    for (n, l) in raw.iter().enumerate() {
        let ok = !l.is_empty()
            && l.len() <= 64
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            out.push(l.clone());
        } else {
            v.add(
                format!("conversation.labels[{n}]"),
                "must be lower-case letters, digits, `-` or `_`, at most 64 characters",
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The conversation and etag of a state-changing request.
pub fn target(name: &str, etag: &str) -> Result<(ConversationId, Option<String>), Violations> {
    Ok((
        conversation_id(name, "name")?,
        Some(etag.to_owned()).filter(|e| !e.is_empty()),
    ))
}

/// SnoozeConversation → the action.
pub fn snooze(req: &pb::SnoozeConversationRequest) -> Result<Action, Violations> {
    match &req.snooze_until {
        None => Err(Violations::one("snooze_until", "is required")),
        Some(t) => time(t)
            .map(Action::Snooze)
            .map_err(|why| Violations::one("snooze_until", why)),
    }
}

/// ResolveConversation → the action.
pub fn resolve(req: &pb::ResolveConversationRequest) -> Result<Action, Violations> {
    let mut v = Violations::default();
    if req.code.chars().count() > 64 {
        v.add("code", "is at most 64 characters");
    }
    if req.summary.chars().count() > 2000 {
        v.add("summary", "is at most 2000 characters");
    }
    v.check()?;
    Ok(Action::Resolve {
        code: req.code.clone(),
        summary: req.summary.clone(),
        by: None,
        auto: false,
    })
}

/// AssignConversation → the agent and the team (each may be absent).
pub fn assignment(
    req: &pb::AssignConversationRequest,
) -> Result<(Option<AgentId>, Option<TeamId>), Violations> {
    let mut v = Violations::default();
    let assignee = Some(&req.assignee)
        .filter(|a| !a.is_empty())
        .and_then(|a| v.take("assignee", id_in(a, "agents")).map(AgentId));
    let team = Some(&req.team)
        .filter(|t| !t.is_empty())
        .and_then(|t| v.take("team", id_in(t, "teams")).map(TeamId));
    v.check()?;
    Ok((assignee, team))
}

/// RenderCannedResponse → what to render, for the caller `principal`.
pub fn render(
    req: &pb::RenderCannedResponseRequest,
    principal: &str,
) -> Result<crate::domain::directory::RenderRequest, Violations> {
    let mut v = Violations::default();
    let id = v
        .take("name", id_in(&req.name, "cannedResponses"))
        .map(CannedResponseId);
    let conversation = Some(&req.conversation)
        .filter(|c| !c.is_empty())
        .and_then(|c| {
            v.take("conversation", id_in(c, "conversations"))
                .map(ConversationId)
        });
    let agent = Some(&req.agent)
        .filter(|a| !a.is_empty())
        .and_then(|a| v.take("agent", id_in(a, "agents")).map(AgentId));
    let channel = v.take("channel", channel_from_pb(req.channel)).flatten();
    for name in req.variables.keys() {
        if !crate::domain::template::VARIABLES.contains(&name.as_str()) {
            v.add(format!("variables[{name}]"), "is not a known variable");
        }
    }
    v.check()?;
    Ok(crate::domain::directory::RenderRequest {
        id,
        conversation,
        agent,
        principal: principal.to_owned(),
        locale: req.locale.clone(),
        channel,
        variables: req.variables.clone(),
    })
}

/// ReportDelivery → the report.
pub fn delivery_report(req: &pb::ReportDeliveryRequest) -> Result<DeliveryReport, Violations> {
    use crate::domain::delivery::Report;
    let mut v = Violations::default();
    let inbox = v.take("inbox", id_in(&req.inbox, "inboxes")).map(InboxId);
    let external_id = req.external_id.trim();
    if external_id.chars().count() > rules::MAX_EXTERNAL_ID {
        v.add("external_id", "is at most 500 characters");
    }
    let target = if !req.message.is_empty() {
        message_id(&req.message, "message")
            .map_err(|e| v.0.extend(e.0))
            .ok()
            .map(|(c, m)| ReportTarget::Message(c, m))
    } else if !external_id.is_empty() {
        Some(ReportTarget::External(external_id.to_owned()))
    } else {
        v.add(
            "message",
            "is required unless external_id names the message",
        );
        None
    };
    if req.failure_reason.chars().count() > 500 {
        v.add("failure_reason", "is at most 500 characters");
    }
    let report = match pb::DeliveryState::try_from(req.state) {
        Ok(pb::DeliveryState::Sent) => Some(Report::Sent),
        Ok(pb::DeliveryState::Delivered) => Some(Report::Delivered),
        Ok(pb::DeliveryState::Failed) => Some(Report::Failed(req.failure_reason.trim().to_owned())),
        _ => {
            v.add("state", "must be SENT, DELIVERED or FAILED");
            None
        }
    };
    v.check()?;
    let target = target.expect("checked");
    Ok(DeliveryReport {
        inbox: inbox.expect("checked"),
        external_id: matches!(target, ReportTarget::Message(..))
            .then(|| external_id.to_owned())
            .filter(|x| !x.is_empty()),
        target,
        report: report.expect("checked"),
    })
}
