//! The rules: what an inbox may hold, the one transition function every
//! change of a conversation's state goes through (and so emits its event on
//! every path: an agent's call, a customer's message, automation), how a
//! message is added, and where an inbound message threads.
use chrono::{DateTime, Duration, Utc};

use super::{error::Error, model::*};

/// Longest display name.
pub const MAX_NAME: usize = 200;
/// Longest address.
pub const MAX_ADDRESS: usize = 320;
/// Longest reopen window: a year.
pub const MAX_REOPEN_WINDOW_SECS: i64 = 365 * 24 * 3600;
/// Longest text body.
pub const MAX_TEXT: usize = 100_000;
/// Longest subject.
pub const MAX_SUBJECT: usize = 500;
/// Longest external id.
pub const MAX_EXTERNAL_ID: usize = 500;
/// Most attachments per message.
pub const MAX_ATTACHMENTS: usize = 50;
/// Most labels per conversation.
pub const MAX_LABELS: usize = 50;

/// Checks an inbox's fields, reporting each bad one under `prefix`.
pub fn check_inbox(inbox: &Inbox, prefix: &str, v: &mut rapport_usecase::Violations) {
    let f = |name: &str| format!("{prefix}.{name}");
    let name = inbox.display_name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        v.add(f("display_name"), "is required, at most 200 characters");
    }
    if inbox.provider.len() > 64
        || !inbox
            .provider
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        v.add(
            f("provider"),
            "must be lower-case letters, digits, `-` or `_`, at most 64 characters",
        );
    }
    if let Err(why) = check_address(inbox.channel, &inbox.address) {
        v.add(f("address"), why);
    }
    if !(0..=MAX_REOPEN_WINDOW_SECS).contains(&inbox.reopen_window_secs) {
        v.add(f("reopen_window"), "must be between 0 and 365 days");
    }
    if !(0..=MAX_REOPEN_WINDOW_SECS).contains(&inbox.expected_reply_secs) {
        v.add(f("expected_reply_time"), "must be between 0 and 365 days");
    }
    let p = &inbox.pending;
    if !(0..=MAX_REOPEN_WINDOW_SECS).contains(&p.check_in_after_secs) {
        v.add(
            f("pending_check_in_after"),
            "must be between 0 and 365 days",
        );
    }
    if !(0..=MAX_REOPEN_WINDOW_SECS).contains(&p.auto_resolve_after_secs) {
        v.add(f("auto_resolve_after"), "must be between 0 and 365 days");
    }
    if p.check_in_text.chars().count() > 10_000 {
        v.add(f("check_in_text"), "is at most 10000 characters");
    } else if let Err(why) = super::template::check(&p.check_in_text) {
        v.add(f("check_in_text"), why);
    }
    if let Some(connector) = &inbox.delivery_connector {
        if inbox.channel == Channel::Email {
            v.add(
                f("delivery_connector"),
                "email inboxes send over SMTP: a connector is for other channels",
            );
        }
        if connector.secret.is_none() {
            v.add(f("delivery_connector.signing_secret"), "is required");
        }
    }
    if let Some(ack) = &inbox.auto_ack {
        if ack.enabled && ack.body.trim().is_empty() {
            v.add(
                f("auto_acknowledgement.body"),
                "is required when acknowledgements are enabled",
            );
        }
        if ack.body.chars().count() > 10_000 {
            v.add(
                f("auto_acknowledgement.body"),
                "is at most 10000 characters",
            );
        }
        if ack.subject.chars().count() > MAX_NAME {
            v.add(
                f("auto_acknowledgement.subject"),
                "is at most 200 characters",
            );
        }
    }
}

/// An address as stored: email addresses lower-case, the rest trimmed.
pub fn normalize_address(channel: Channel, address: &str) -> String {
    let a = address.trim();
    match channel {
        Channel::Email => a.to_ascii_lowercase(),
        _ => a.to_owned(),
    }
}

fn check_address(channel: Channel, address: &str) -> Result<(), &'static str> {
    if address.is_empty() || address.chars().count() > MAX_ADDRESS {
        return Err("is required, at most 320 characters");
    }
    if address.chars().any(char::is_control) {
        return Err("must not hold control characters");
    }
    match channel {
        Channel::Email => {
            let ok = address
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
                && !address.contains(char::is_whitespace);
            if ok {
                Ok(())
            } else {
                Err("must be an email address (mailbox@domain)")
            }
        }
        Channel::Phone | Channel::Sms => {
            let digits = address.strip_prefix('+').unwrap_or("");
            if (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
                Ok(())
            } else {
                Err("must be a phone number in E.164 form (+ and 8 to 15 digits)")
            }
        }
        _ => Ok(()),
    }
}

/// A change of a conversation's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Waiting on the customer.
    MarkPending,
    /// Aside until a time.
    Snooze(DateTime<Utc>),
    /// Resolved.
    Resolve {
        /// Tenant's code.
        code: String,
        /// What was done.
        summary: String,
        /// The agent who resolved it.
        by: Option<AgentId>,
        /// Whether automation resolved it.
        auto: bool,
    },
    /// Back to open after a resolve.
    Reopen,
    /// Final.
    Close,
    /// A customer wrote: an open conversation stays open, a pending or
    /// snoozed one opens, a resolved one reopens.
    CustomerMessage,
    /// An agent (`human`) or a bot replied publicly at `at`: the state
    /// stays; a human's reply answers the customer (no longer waiting) and
    /// the first one is the first response. A bot's answers nothing:
    /// service levels count human replies only.
    AgentReply {
        /// A human agent, not a bot.
        human: bool,
    },
    /// An SLA breach escalates: the priority raised to at least
    /// `priority`, the conversation moved to `team`; the state stays.
    Escalate {
        /// At least this priority.
        priority: Option<Priority>,
        /// To this team.
        team: Option<TeamId>,
        /// The metric that breached.
        metric: super::sla::Metric,
    },
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::MarkPending => "mark pending",
            Action::Snooze(_) => "snooze",
            Action::Resolve { .. } => "resolve",
            Action::Reopen => "reopen",
            Action::Close => "close",
            Action::CustomerMessage => "add a customer message to",
            Action::AgentReply { .. } => "reply in",
            Action::Escalate { .. } => "escalate",
        }
    }
}

/// The one transition function: `c` after `action` at `now`, and the
/// events it raises. Every state change emits ConversationStatusChanged;
/// a resolve also ConversationResolved, a reopen also ConversationReopened.
/// The version moves by one when anything changed.
pub fn transition(
    c: &Conversation,
    action: Action,
    cause: Cause,
    now: DateTime<Utc>,
) -> Result<(Conversation, Vec<DomainEvent>), Error> {
    use State::*;
    let refuse = || Error::InvalidTransition {
        from: c.state,
        action: action.name(),
    };
    let mut next = c.clone();
    let mut events = Vec::new();
    let to = match (&action, c.state) {
        (Action::MarkPending, Open | Snoozed) => Pending,
        (Action::Snooze(until), Open | Pending | Snoozed) => {
            if *until <= now {
                return Err(rapport_usecase::Violations::one(
                    "snooze_until",
                    "must be in the future",
                )
                .into());
            }
            next.snooze_until = Some(*until);
            Snoozed
        }
        (
            Action::Resolve {
                code,
                summary,
                by,
                auto,
            },
            Open | Pending | Snoozed,
        ) => {
            next.resolve_count += 1;
            next.waiting_since = None;
            next.resolution = Some(Resolution {
                code: code.clone(),
                summary: summary.clone(),
                auto: *auto,
                resolved_by: *by,
                resolve_time: now,
            });
            Resolved
        }
        (Action::Reopen, Resolved) | (Action::CustomerMessage, Resolved) => {
            next.reopen_count += 1;
            events.push(DomainEvent::Reopened {
                conversation: c.id,
                resolve_count: c.resolve_count,
                cause,
            });
            Open
        }
        (Action::Close, Resolved) => Closed,
        (Action::CustomerMessage, Open | Pending | Snoozed) => Open,
        (Action::AgentReply { human }, Open | Pending | Snoozed) => {
            if *human {
                next.waiting_since = None;
                next.first_response_time.get_or_insert(now);
                next.last_agent_reply_time = Some(now);
            }
            c.state
        }
        (
            Action::Escalate {
                priority,
                team,
                metric,
            },
            Open | Pending | Snoozed,
        ) => {
            if let Some(p) = priority
                && rank(*p) > rank(c.priority)
            {
                next.priority = *p;
            }
            if team.is_some() {
                next.team = *team;
            }
            if next.priority != c.priority || next.team != c.team {
                events.push(DomainEvent::Escalated {
                    conversation: c.id,
                    priority: next.priority,
                    previous_priority: c.priority,
                    team: next.team,
                    previous_team: c.team,
                    metric: *metric,
                    cause,
                });
            }
            c.state
        }
        _ => return Err(refuse()),
    };
    if to != Snoozed {
        next.snooze_until = None;
    }
    next.state = to;
    if to != c.state {
        // First, so that consumers see the state change before its details.
        events.insert(
            0,
            DomainEvent::StatusChanged {
                conversation: c.id,
                from: c.state,
                to,
                cause,
            },
        );
    }
    // The SLA clocks see every state change and every human reply, here,
    // so no path can skip them.
    if to != c.state {
        next.sla.apply(
            super::sla_clock::ClockEvent::StateChanged { from: c.state, to },
            now,
        );
    }
    match &action {
        Action::CustomerMessage => {
            next.sla
                .apply(super::sla_clock::ClockEvent::CustomerMessage, now);
        }
        Action::AgentReply { human: true } => {
            next.sla
                .apply(super::sla_clock::ClockEvent::HumanReply, now);
        }
        _ => {}
    }
    if to == Resolved {
        events.push(DomainEvent::Resolved {
            conversation: next.clone(),
        });
    }
    if next != *c {
        next.version = c.version + 1;
        next.update_time = now;
    }
    Ok((next, events))
}

/// How urgent a priority is, lowest first.
fn rank(p: Priority) -> u8 {
    match p {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
        Priority::Urgent => 3,
    }
}

/// `c` assigned to `assignee` and `team` (either may be `None`: unassigned),
/// and its ConversationAssigned event when anything changed. `bot`: the
/// bot agent whose hand-off this is, when `c` is still assigned to it (a
/// hand-off to a human or a team moves the SLA clocks' start: bot time is
/// not counted).
pub fn assign(
    c: &Conversation,
    assignee: Option<AgentId>,
    team: Option<TeamId>,
    auto: bool,
    bot: Option<AgentId>,
    now: DateTime<Utc>,
) -> (Conversation, Vec<DomainEvent>) {
    if c.assignee == assignee && c.team == team {
        return (c.clone(), Vec::new());
    }
    let mut next = Conversation {
        assignee,
        team,
        version: c.version + 1,
        update_time: now,
        ..c.clone()
    };
    if bot.is_some() && c.assignee == bot && assignee != bot {
        next.sla
            .apply(super::sla_clock::ClockEvent::BotHandoff, now);
    }
    if assignee.is_some() != c.assignee.is_some() {
        next.sla.apply(
            super::sla_clock::ClockEvent::Assigned {
                assigned: assignee.is_some(),
            },
            now,
        );
    }
    let event = DomainEvent::Assigned {
        conversation: c.id,
        assignee,
        team,
        previous_assignee: c.assignee,
        previous_team: c.team,
        auto,
    };
    (next, vec![event])
}

/// A new conversation a customer's message starts on `inbox`: open, of
/// normal priority, for the inbox's default team, holding no message yet
/// (add it with [`add_customer_message`]). `(id, case_number)` are its own;
/// `previous` the conversation it continues.
pub fn inbound_conversation(
    inbox: &Inbox,
    (id, case_number): (ConversationId, i64),
    customer: CustomerId,
    subject: &str,
    previous: Option<ConversationId>,
    now: DateTime<Utc>,
) -> Conversation {
    Conversation {
        id,
        case_number,
        customer,
        inbox: inbox.id,
        channels: Vec::new(),
        subject: subject.to_owned(),
        state: State::Open,
        priority: Priority::Normal,
        interaction_type: None,
        origin: Origin::Inbound,
        source: String::new(),
        assignee: None,
        team: inbox.default_team,
        labels: Vec::new(),
        snooze_until: None,
        waiting_since: None,
        first_response_time: None,
        last_agent_reply_time: None,
        customer_wrote: false,
        resolve_count: 0,
        reopen_count: 0,
        resolution: None,
        previous,
        applied_sla: None,
        sla: Default::default(),
        message_count: 0,
        last_message_time: now,
        create_time: now,
        update_time: now,
        version: 1,
    }
}

/// `c` with a customer's message `m` added: counts, channels, and the time
/// the customer has waited since (kept when already waiting).
pub fn add_customer_message(c: &mut Conversation, m: &Message) {
    c.message_count += 1;
    c.last_message_time = c.last_message_time.max(m.create_time);
    if !c.channels.contains(&m.channel) {
        c.channels.push(m.channel);
    }
    if c.waiting_since.is_none() {
        c.waiting_since = Some(m.send_time);
    }
    c.customer_wrote = true;
    c.update_time = m.create_time;
}

/// `c` with an agent's, a bot's or Rapport's message `m` added: counts
/// and channels (the waiting time is the transition's: only a public human
/// reply answers).
pub fn add_sent_message(c: &mut Conversation, m: &Message) {
    c.message_count += 1;
    c.last_message_time = c.last_message_time.max(m.create_time);
    if !c.channels.contains(&m.channel) {
        c.channels.push(m.channel);
    }
}

/// The Message-ID of an email Rapport sends as message `id` from the inbox
/// `address`: unique (the message's id) on the inbox's own domain.
pub fn message_id_for(id: MessageId, address: &str) -> String {
    let domain = address.rsplit_once('@').map_or(address, |(_, d)| d);
    format!("<{id}@{domain}>")
}

/// The inbox's acknowledgement of conversation `c`, which `first` (the
/// customer's message) started, when the inbox sends one: a SYSTEM message
/// from its template (`{{case_number}}`, `{{expected_reply_time}}`,
/// `{{inbox.display_name}}`, and what `known` says: the applied SLA's
/// reply time and due time, the next opening, the customer's names), an
/// email when the inbox is one (answering `first`).
pub fn acknowledgement(
    inbox: &Inbox,
    c: &Conversation,
    first: &Message,
    known: &std::collections::BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Option<Message> {
    let ack = inbox.auto_ack.as_ref().filter(|a| a.enabled)?;
    let mut values = std::collections::BTreeMap::new();
    values.insert("case_number".to_owned(), c.case_number.to_string());
    values.insert(
        "expected_reply_time".to_owned(),
        human_duration(inbox.expected_reply_secs),
    );
    values.insert("inbox.display_name".to_owned(), inbox.display_name.clone());
    values.extend(known.iter().map(|(k, v)| (k.clone(), v.clone())));
    let (text, _) = super::template::render(&ack.body, &values);
    let (subject, _) = super::template::render(&ack.subject, &values);
    let id = MessageId::generate();
    let email = first.channel == Channel::Email;
    Some(Message {
        id,
        conversation: c.id,
        inbox: inbox.id,
        customer: c.customer,
        direction: Direction::Outbound,
        sender_kind: SenderKind::System,
        agent: None,
        visibility: Visibility::Public,
        channel: first.channel,
        subject,
        text,
        html: String::new(),
        attachments: Vec::new(),
        external_id: email.then(|| message_id_for(id, &inbox.address)),
        in_reply_to: if email {
            first.external_id.clone().unwrap_or_default()
        } else {
            String::new()
        },
        send_time: now,
        create_time: now,
        purpose: Some(Purpose::Acknowledgement),
        call: None,
        delivery: Some(Delivery {
            state: DeliveryState::Scheduled,
            failure_reason: String::new(),
            scheduled_time: None,
            update_time: now,
            attempts: 0,
        }),
    })
}

/// A reply time as people say it: `2 hours`, `30 minutes`, `1 day`.
pub fn human_duration(secs: i64) -> String {
    let (n, unit) = if secs > 0 && secs % 86_400 == 0 {
        (secs / 86_400, "day")
    } else if secs > 0 && secs % 3600 == 0 {
        (secs / 3600, "hour")
    } else {
        ((secs + 59) / 60, "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// `text` without the earlier message a reply quotes below it: from an
/// attribution line (`On … wrote:`), an `-----Original Message-----`
/// separator, or a trailing block of `>` lines on. The text above stays as
/// written; a message that is nothing but a quote is kept whole.
pub fn trim_quoted(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim();
        let attribution = t.starts_with("On ") && t.ends_with("wrote:");
        if attribution || t.starts_with("-----Original Message-----") {
            end = n;
            break;
        }
    }
    while end > 0 {
        let t = lines[end - 1].trim();
        if t.starts_with('>') || t.is_empty() {
            end -= 1;
        } else {
            break;
        }
    }
    let kept = lines[..end].join("\n");
    if kept.trim().is_empty() {
        text.to_owned()
    } else {
        kept.trim_end().to_owned()
    }
}

/// Whether `next` differs from `c` in its message count and times only
/// (an open conversation that took one more message on a channel it used
/// already while the customer was waiting): storage counts it without a
/// versioned write.
pub fn only_counts_changed(c: &Conversation, next: &Conversation) -> bool {
    c.state == State::Open
        && *c
            == Conversation {
                message_count: c.message_count,
                last_message_time: c.last_message_time,
                update_time: c.update_time,
                version: c.version,
                ..next.clone()
            }
}

/// Where an inbound message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thread {
    /// Into this conversation (open, pending or snoozed: it opens).
    Into(Conversation),
    /// Into this resolved conversation, which reopens.
    Reopen(Conversation),
    /// Into a new conversation, continuing `previous` when set.
    New {
        /// The conversation it continues.
        previous: Option<ConversationId>,
    },
}

/// Where a message on `inbox` goes, given the conversation its thread is
/// at: a conversation still worked takes it; a resolved one reopens within
/// the inbox's reopen window; after it, or once closed, a new conversation
/// continues it.
pub fn thread(inbox: &Inbox, current: Option<Conversation>, now: DateTime<Utc>) -> Thread {
    let Some(c) = current else {
        return Thread::New { previous: None };
    };
    if c.is_active() {
        return Thread::Into(c);
    }
    let within = c.state == State::Resolved
        && c.resolution.as_ref().is_some_and(|r| {
            inbox.reopen_window_secs > 0
                && now - r.resolve_time <= Duration::seconds(inbox.reopen_window_secs)
        });
    if within {
        Thread::Reopen(c)
    } else {
        Thread::New {
            previous: Some(c.id),
        }
    }
}

/// Whether a public outbound message of `purpose` in `c` is proactive, so
/// that the customer's contact policy decides whether and when it goes
/// out: anything not a service message, and a service message in a
/// conversation the customer neither started nor wrote in. An
/// acknowledgement answers the customer's own first message.
pub fn proactive(c: &Conversation, purpose: Purpose) -> bool {
    match purpose {
        Purpose::Acknowledgement => false,
        Purpose::Service => c.origin != Origin::Inbound && !c.customer_wrote,
        Purpose::Marketing | Purpose::Surveys | Purpose::Loyalty => true,
    }
}

/// A message of an erased customer: what they wrote or were sent (subject,
/// bodies, attachment names and links, a call's recording) is removed; the facts service
/// levels and KPIs count on stay (who sent it, on which channel, when,
/// direction, visibility, how many attachments there were not).
pub fn erase_message(m: &mut Message) {
    m.subject.clear();
    m.text.clear();
    m.html.clear();
    m.attachments.clear();
    // A call's durations stay (handling time); its recording is the voice.
    if let Some(call) = &mut m.call {
        call.recording_uri.clear();
    }
    // A relay's refusal often quotes the address it refused.
    if let Some(delivery) = &mut m.delivery {
        delivery.failure_reason.clear();
    }
}

/// A conversation of an erased customer: its subject and the resolution's
/// free text go; case number, states, times, assignment and labels stay.
pub fn erase_conversation(c: &mut Conversation) {
    c.subject.clear();
    if let Some(r) = &mut c.resolution {
        r.summary.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    /// An email conversation in `state`, created at `t(0)` (other modules'
    /// tests start from it too).
    pub(crate) fn conv(state: State) -> Conversation {
        Conversation {
            id: ConversationId::generate(),
            case_number: 1,
            customer: CustomerId::generate(),
            inbox: InboxId::generate(),
            channels: vec![Channel::Email],
            subject: String::new(),
            state,
            priority: Priority::Normal,
            interaction_type: None,
            origin: Origin::Inbound,
            source: String::new(),
            assignee: None,
            team: None,
            labels: vec![],
            snooze_until: None,
            waiting_since: Some(t(0)),
            first_response_time: None,
            last_agent_reply_time: None,
            customer_wrote: true,
            resolve_count: 0,
            reopen_count: 0,
            resolution: None,
            previous: None,
            applied_sla: None,
            sla: Default::default(),
            message_count: 1,
            last_message_time: t(0),
            create_time: t(0),
            update_time: t(0),
            version: 1,
        }
    }

    fn inbox(window: i64) -> Inbox {
        Inbox {
            id: InboxId::generate(),
            display_name: "Support".into(),
            channel: Channel::Email,
            provider: String::new(),
            address: "support@acme.example".into(),
            default_team: None,
            auto_ack: None,
            reopen_window_secs: window,
            continue_across_channels: false,
            expected_reply_secs: 0,
            business_calendar: String::new(),
            connector: String::new(),
            pending: Default::default(),
            delivery_connector: None,
            create_time: t(0),
            update_time: t(0),
            version: 1,
        }
    }

    fn resolve() -> Action {
        Action::Resolve {
            code: "fixed".into(),
            summary: String::new(),
            by: None,
            auto: false,
        }
    }

    #[test]
    fn a_quoted_earlier_reply_is_trimmed() {
        let reply = "Thanks, that works.\n\nOn Mon, 1 Dec 2026 at 10:00, Support <support@acme.example> wrote:\n> It shipped.\n> Tracking 42";
        assert_eq!(trim_quoted(reply), "Thanks, that works.");
        let outlook = "Fine\r\n-----Original Message-----\r\nFrom: x";
        assert_eq!(trim_quoted(outlook), "Fine");
        assert_eq!(trim_quoted("Yes\n> earlier\n>> older"), "Yes");
        assert_eq!(trim_quoted("> only a quote"), "> only a quote");
        assert_eq!(trim_quoted("plain\nmessage"), "plain\nmessage");
    }

    #[test]
    fn only_a_human_reply_answers_and_the_first_is_the_first_response() {
        let open = conv(State::Open);
        let bot = Action::AgentReply { human: false };
        let (same, ev) = transition(&open, bot, Cause::Agent, t(1)).unwrap();
        assert_eq!(same, open, "a bot's reply is no response");
        assert!(ev.is_empty());
        let human = Action::AgentReply { human: true };
        let (first, ev) = transition(&open, human.clone(), Cause::Agent, t(2)).unwrap();
        assert!(ev.is_empty(), "the state stays");
        assert_eq!(first.state, State::Open);
        assert_eq!(first.waiting_since, None);
        assert_eq!(first.first_response_time, Some(t(2)));
        assert_eq!(first.last_agent_reply_time, Some(t(2)));
        let (second, _) = transition(&first, human.clone(), Cause::Agent, t(5)).unwrap();
        assert_eq!(second.first_response_time, Some(t(2)));
        assert_eq!(second.last_agent_reply_time, Some(t(5)));
        for state in [State::Resolved, State::Closed] {
            assert!(matches!(
                transition(&conv(state), human.clone(), Cause::Agent, t(6)),
                Err(Error::InvalidTransition { .. })
            ));
        }
    }

    #[test]
    fn every_state_change_emits_status_changed_with_its_cause() {
        let (pending, ev) =
            transition(&conv(State::Open), Action::MarkPending, Cause::Agent, t(1)).unwrap();
        assert_eq!(pending.state, State::Pending);
        assert_eq!(pending.version, 2);
        assert!(matches!(
            ev[..],
            [DomainEvent::StatusChanged {
                from: State::Open,
                to: State::Pending,
                cause: Cause::Agent,
                ..
            }]
        ));
        // A customer message opens a pending conversation: the same event.
        let (open, ev) = transition(
            &pending,
            Action::CustomerMessage,
            Cause::CustomerMessage,
            t(2),
        )
        .unwrap();
        assert_eq!(open.state, State::Open);
        assert!(matches!(
            ev[..],
            [DomainEvent::StatusChanged {
                from: State::Pending,
                to: State::Open,
                cause: Cause::CustomerMessage,
                ..
            }]
        ));
        // On an open one it changes nothing and says nothing.
        let (same, ev) =
            transition(&open, Action::CustomerMessage, Cause::CustomerMessage, t(3)).unwrap();
        assert_eq!(same, open);
        assert!(ev.is_empty());
    }

    #[test]
    fn resolve_then_reopen_by_a_customer_message_counts_both() {
        let (resolved, ev) =
            transition(&conv(State::Snoozed), resolve(), Cause::Agent, t(5)).unwrap();
        assert_eq!(resolved.resolve_count, 1);
        assert_eq!(resolved.waiting_since, None);
        assert_eq!(resolved.resolution.as_ref().unwrap().resolve_time, t(5));
        assert!(matches!(
            ev[..],
            [
                DomainEvent::StatusChanged { .. },
                DomainEvent::Resolved { .. }
            ]
        ));
        let (reopened, ev) = transition(
            &resolved,
            Action::CustomerMessage,
            Cause::CustomerMessage,
            t(6),
        )
        .unwrap();
        assert_eq!((reopened.state, reopened.reopen_count), (State::Open, 1));
        assert!(matches!(
            ev[..],
            [
                DomainEvent::StatusChanged {
                    to: State::Open,
                    ..
                },
                DomainEvent::Reopened {
                    resolve_count: 1,
                    ..
                }
            ]
        ));
    }

    #[test]
    fn refused_transitions_name_the_state() {
        for (state, action) in [
            (State::Open, Action::Reopen),
            (State::Open, Action::Close),
            (State::Resolved, Action::MarkPending),
            (State::Resolved, resolve()),
            (State::Closed, Action::CustomerMessage),
            (State::Closed, Action::Reopen),
            (State::Pending, Action::MarkPending),
        ] {
            let err = transition(&conv(state), action, Cause::Agent, t(1)).unwrap_err();
            assert!(matches!(err, Error::InvalidTransition { from, .. } if from == state));
        }
        let err = transition(&conv(State::Open), Action::Snooze(t(0)), Cause::Agent, t(1));
        assert!(matches!(err, Err(Error::Invalid(_))));
    }

    #[test]
    fn threading_reopens_within_the_window_only() {
        let (resolved, _) =
            transition(&conv(State::Open), resolve(), Cause::Agent, t(100)).unwrap();
        let inbox = inbox(3600);
        assert_eq!(thread(&inbox, None, t(0)), Thread::New { previous: None });
        assert!(matches!(
            thread(&inbox, Some(conv(State::Pending)), t(0)),
            Thread::Into(_)
        ));
        assert!(matches!(
            thread(&inbox, Some(resolved.clone()), t(3700)),
            Thread::Reopen(_)
        ));
        assert_eq!(
            thread(&inbox, Some(resolved.clone()), t(3701)),
            Thread::New {
                previous: Some(resolved.id)
            }
        );
        // No window: never reopened.
        assert!(matches!(
            thread(&self::inbox(0), Some(resolved.clone()), t(101)),
            Thread::New { .. }
        ));
        let (closed, _) = transition(&resolved, Action::Close, Cause::Agent, t(101)).unwrap();
        assert!(matches!(
            thread(&inbox, Some(closed), t(102)),
            Thread::New { .. }
        ));
    }

    #[test]
    fn addresses_are_checked_per_channel() {
        assert!(check_address(Channel::Email, "support@acme.example").is_ok());
        assert!(check_address(Channel::Email, "support").is_err());
        assert!(check_address(Channel::Sms, "+33612345678").is_ok());
        assert!(check_address(Channel::Sms, "0612345678").is_err());
        assert!(check_address(Channel::LiveChat, "widget-1").is_ok());
        assert!(check_address(Channel::LiveChat, "").is_err());
        assert_eq!(
            normalize_address(Channel::Email, " Support@Acme.Example "),
            "support@acme.example"
        );
    }
}
