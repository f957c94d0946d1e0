//! Inboxes, conversations, messages and the events they raise.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use rapport_usecase::Tenant;
use rapport_usecase::{str_enum, uuid_id};

uuid_id!(
    /// Id of an inbox (`inboxes/{id}`).
    InboxId
);
uuid_id!(
    /// Id of a conversation (`conversations/{id}`).
    ConversationId
);
uuid_id!(
    /// Id of a message (`conversations/{conversation}/messages/{id}`).
    MessageId
);
uuid_id!(
    /// Id of a team (`teams/{id}`).
    TeamId
);
uuid_id!(
    /// Id of an agent (`agents/{id}`).
    AgentId
);
uuid_id!(
    /// Id of a customer of the profiles service (`customers/{id}`).
    CustomerId
);

/// The channels of the platform (`rapport.type.v1.Channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Channel {
    Email,
    Phone,
    LiveChat,
    Sms,
    Social,
    ReviewSite,
    InPerson,
    Community,
    InApp,
}
str_enum!(Channel {
    Email => "email", Phone => "phone", LiveChat => "live_chat", Sms => "sms",
    Social => "social", ReviewSite => "review_site", InPerson => "in_person",
    Community => "community", InApp => "in_app",
});

/// An inbox's automatic acknowledgement of a new conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoAck {
    /// Whether it is sent.
    pub enabled: bool,
    /// Subject, for email.
    pub subject: String,
    /// Body with variables.
    pub body: String,
}

/// One channel address customers write to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbox {
    /// Id.
    pub id: InboxId,
    /// Name shown to agents.
    pub display_name: String,
    /// Its channel; never changes.
    pub channel: Channel,
    /// Provider within the channel, lower-case; may be empty.
    pub provider: String,
    /// The address (normalized: email addresses lower-case).
    pub address: String,
    /// Team of its new conversations.
    pub default_team: Option<TeamId>,
    /// Acknowledgement of new conversations.
    pub auto_ack: Option<AutoAck>,
    /// Seconds after a resolve during which a customer message reopens; 0:
    /// never.
    pub reopen_window_secs: i64,
    /// Whether messages on it join the customer's open conversation of any
    /// inbox.
    pub continue_across_channels: bool,
    /// Reply time stated in acknowledgements, seconds; 0: none.
    pub expected_reply_secs: i64,
    /// `businessCalendars/{…}` or empty (service levels).
    pub business_calendar: String,
    /// `connectors/{…}` or empty (outbound delivery).
    pub connector: String,
    /// Check-in and auto-resolve of conversations left pending; absent
    /// from documents stored before it.
    #[serde(default)]
    pub pending: super::check_in::PendingPolicy,
    /// Where outbound messages of a non-email inbox are handed over.
    #[serde(default)]
    pub delivery_connector: Option<Connector>,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Optimistic concurrency version; the etag is derived from it.
    pub version: i64,
}

impl Inbox {
    /// The etag of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// A channel connector: outbound messages are POSTed to its URL, signed
/// with its secret (Standard Webhooks, as the webhooks service signs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connector {
    /// Where to.
    pub url: String,
    /// The signing secret; `None` in an update that keeps the current one.
    /// Its `Debug` never shows it.
    pub secret: Option<rapport_usecase::webhook::SigningSecret>,
}

/// Where a conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// Waiting on the team.
    Open,
    /// Waiting on the customer.
    Pending,
    /// Put aside until a time or the customer's next message.
    Snoozed,
    /// Answered; may reopen within the inbox's window.
    Resolved,
    /// Final.
    Closed,
}
str_enum!(State { Open => "open", Pending => "pending", Snoozed => "snoozed", Resolved => "resolved", Closed => "closed" });

/// Urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}
str_enum!(Priority { Low => "low", Normal => "normal", High => "high", Urgent => "urgent" });

/// The kind of interaction (the seven of s000 plus follow-up and review
/// reply); `None` on a conversation while unclassified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum InteractionType {
    Newcomer,
    Information,
    Evaluation,
    Clarification,
    Urgent,
    Complaint,
    Loyal,
    FollowUp,
    ReviewReply,
}
str_enum!(InteractionType {
    Newcomer => "newcomer", Information => "information", Evaluation => "evaluation",
    Clarification => "clarification", Urgent => "urgent", Complaint => "complaint",
    Loyal => "loyal", FollowUp => "follow_up", ReviewReply => "review_reply",
});

/// How a conversation started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Origin {
    Inbound,
    Outbound,
    Proactive,
    FeedbackFollowUp,
    Review,
}
str_enum!(Origin {
    Inbound => "inbound", Outbound => "outbound", Proactive => "proactive",
    FeedbackFollowUp => "feedback_follow_up", Review => "review",
});

/// What moved a conversation to another state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// An agent's call.
    Agent,
    /// A customer's message.
    CustomerMessage,
    /// Automation (a snooze ending).
    Automation,
}
str_enum!(Cause { Agent => "agent", CustomerMessage => "customer_message", Automation => "automation" });

/// How a conversation was resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// Tenant's code.
    pub code: String,
    /// What was done.
    pub summary: String,
    /// Whether automation resolved it.
    pub auto: bool,
    /// The agent, if one did.
    pub resolved_by: Option<AgentId>,
    /// When.
    pub resolve_time: DateTime<Utc>,
}

/// One case of one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Id.
    pub id: ConversationId,
    /// Per-tenant case number.
    pub case_number: i64,
    /// The customer.
    pub customer: CustomerId,
    /// The inbox.
    pub inbox: InboxId,
    /// Channels used, first first.
    pub channels: Vec<Channel>,
    /// Subject.
    pub subject: String,
    /// State.
    pub state: State,
    /// Priority.
    pub priority: Priority,
    /// Interaction type, when classified.
    pub interaction_type: Option<InteractionType>,
    /// Origin.
    pub origin: Origin,
    /// What it answers (`responses/…`), or empty.
    pub source: String,
    /// Assignee.
    pub assignee: Option<AgentId>,
    /// Team.
    pub team: Option<TeamId>,
    /// Labels, sorted, unique.
    pub labels: Vec<String>,
    /// Until when snoozed (Snoozed only).
    pub snooze_until: Option<DateTime<Utc>>,
    /// The oldest unanswered customer message's time.
    pub waiting_since: Option<DateTime<Utc>>,
    /// The first public human reply's time.
    pub first_response_time: Option<DateTime<Utc>>,
    /// The latest public human reply's time (service levels measure the
    /// next response from it). Absent from documents stored before it.
    #[serde(default)]
    pub last_agent_reply_time: Option<DateTime<Utc>>,
    /// Whether the customer has written in it: until then, messages of a
    /// conversation Rapport or an agent started are proactive.
    #[serde(default)]
    pub customer_wrote: bool,
    /// Times resolved.
    pub resolve_count: i32,
    /// Times reopened.
    pub reopen_count: i32,
    /// The latest resolution.
    pub resolution: Option<Resolution>,
    /// The conversation this one continues.
    pub previous: Option<ConversationId>,
    /// The SLA applied (the policy pinned at its revision), if any.
    #[serde(default)]
    pub applied_sla: Option<super::sla::AppliedSla>,
    /// The SLA clocks: what happened, folded per metric.
    #[serde(default)]
    pub sla: super::sla_clock::SlaClocks,
    /// Messages held.
    pub message_count: i32,
    /// The latest message's time.
    pub last_message_time: DateTime<Utc>,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Optimistic concurrency version.
    pub version: i64,
}

impl Conversation {
    /// The etag of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    /// Whether the team still works it (a customer message threads into it).
    pub fn is_active(&self) -> bool {
        matches!(self.state, State::Open | State::Pending | State::Snoozed)
    }
}

/// From the customer or to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Direction {
    Inbound,
    Outbound,
}
str_enum!(Direction { Inbound => "inbound", Outbound => "outbound" });

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum SenderKind {
    Customer,
    Agent,
    Bot,
    System,
}
str_enum!(SenderKind { Customer => "customer", Agent => "agent", Bot => "bot", System => "system" });

/// Who sees a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Visibility {
    Public,
    Internal,
}
str_enum!(Visibility { Public => "public", Internal => "internal" });

/// A file of a message, by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name.
    pub file_name: String,
    /// Media type.
    pub content_type: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Where it is stored.
    pub uri: String,
}

/// One message; immutable once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Id (time-ordered).
    pub id: MessageId,
    /// Its conversation.
    pub conversation: ConversationId,
    /// Its conversation's inbox (dedupe scope of `external_id`).
    pub inbox: InboxId,
    /// Its conversation's customer.
    pub customer: CustomerId,
    /// Direction.
    pub direction: Direction,
    /// Who wrote it.
    pub sender_kind: SenderKind,
    /// The agent, for agent and bot messages.
    pub agent: Option<AgentId>,
    /// Visibility.
    pub visibility: Visibility,
    /// Channel it travelled on.
    pub channel: Channel,
    /// Subject.
    pub subject: String,
    /// Text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// The channel's id of it.
    pub external_id: Option<String>,
    /// The external id it answers.
    pub in_reply_to: String,
    /// When it was sent or received on its channel.
    pub send_time: DateTime<Utc>,
    /// When it was stored.
    pub create_time: DateTime<Utc>,
    /// Why it is sent (outbound messages); absent from documents stored
    /// before it.
    #[serde(default)]
    pub purpose: Option<Purpose>,
    /// Where its delivery stands (outbound public messages only).
    #[serde(default)]
    pub delivery: Option<Delivery>,
    /// A logged phone call or visit.
    #[serde(default)]
    pub call: Option<Call>,
}

/// A logged phone call or visit: it happened, so nothing is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Talk time, seconds.
    pub talk_secs: i32,
    /// Hold time, seconds.
    pub hold_secs: i32,
    /// Wrap-up time, seconds.
    pub wrap_up_secs: i32,
    /// The recording (`https://`), or empty.
    pub recording_uri: String,
}

/// Why an outbound message is sent: contact policy treats them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Purpose {
    Service,
    Acknowledgement,
    Marketing,
    Surveys,
    Loyalty,
}
str_enum!(Purpose {
    Service => "service", Acknowledgement => "acknowledgement", Marketing => "marketing",
    Surveys => "surveys", Loyalty => "loyalty",
});

/// Delivery states of an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum DeliveryState {
    Scheduled,
    Sent,
    Delivered,
    Failed,
    Cancelled,
}
str_enum!(DeliveryState {
    Scheduled => "scheduled", Sent => "sent", Delivered => "delivered",
    Failed => "failed", Cancelled => "cancelled",
});

/// Where an outbound message stands with its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The state.
    pub state: DeliveryState,
    /// Why it failed, as the channel said.
    pub failure_reason: String,
    /// Not before when it is sent.
    pub scheduled_time: Option<DateTime<Utc>>,
    /// When the state last changed.
    pub update_time: DateTime<Utc>,
    /// Hand-overs to the channel claimed so far: an attempt records its
    /// outcome only while it is still the latest claim.
    #[serde(default)]
    pub attempts: u32,
}

/// What happened, for the outbox: ids and facts, never personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// A conversation started.
    ConversationCreated {
        /// It.
        conversation: Conversation,
        /// The channel of its first message.
        channel: Channel,
    },
    /// A customer message was added.
    MessageReceived {
        /// It.
        message: Message,
        /// Whether it started the conversation.
        first_of_conversation: bool,
    },
    /// An agent, a bot or Rapport added a message.
    MessageSent {
        /// It.
        message: Message,
        /// Whether it is the conversation's first response (the first
        /// public message of a human agent).
        first_response: bool,
    },
    /// An outbound message's delivery moved on (sent, delivered, failed,
    /// cancelled).
    DeliveryChanged {
        /// It, with its new delivery.
        message: Message,
        /// The state before.
        from: DeliveryState,
    },
    /// A conversation changed state.
    StatusChanged {
        /// Which.
        conversation: ConversationId,
        /// Before.
        from: State,
        /// After.
        to: State,
        /// Why.
        cause: Cause,
    },
    /// A conversation was resolved.
    Resolved {
        /// It, resolved.
        conversation: Conversation,
    },
    /// A conversation's assignee or team changed.
    Assigned {
        /// Which.
        conversation: ConversationId,
        /// The agent now.
        assignee: Option<AgentId>,
        /// The team now.
        team: Option<TeamId>,
        /// The agent before.
        previous_assignee: Option<AgentId>,
        /// The team before.
        previous_team: Option<TeamId>,
        /// Whether auto-assignment picked the agent.
        auto: bool,
    },
    /// A conversation was reopened.
    Reopened {
        /// Which.
        conversation: ConversationId,
        /// The resolve count it was reopened after.
        resolve_count: i32,
        /// Why.
        cause: Cause,
    },
    /// A promise was made, kept, broken, renegotiated or cancelled, or its
    /// reminder came due.
    Promise(super::promise::PromiseEvent),
    /// An SLA clock ran its warning percentage, within working time.
    SlaWarningRaised(SlaAlertRaised),
    /// An SLA clock's due time passed before it stopped.
    SlaBreached(SlaAlertRaised),
    /// A breach escalated a conversation (priority, team).
    Escalated {
        /// Which.
        conversation: ConversationId,
        /// The priority now.
        priority: Priority,
        /// The priority before.
        previous_priority: Priority,
        /// The team now.
        team: Option<TeamId>,
        /// The team before.
        previous_team: Option<TeamId>,
        /// The metric whose breach escalated it.
        metric: super::sla::Metric,
        /// Why (automation).
        cause: Cause,
    },
}

/// What an SLA warning or breach says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaAlertRaised {
    /// The conversation.
    pub conversation: ConversationId,
    /// The metric.
    pub metric: super::sla::Metric,
    /// Its cycle.
    pub cycle: u32,
    /// When it is (was) due.
    pub due: DateTime<Utc>,
    /// The applied policy.
    pub policy: super::sla::SlaPolicyId,
    /// Its pinned revision.
    pub revision: i64,
}

impl DomainEvent {
    /// The resource the event is about: its subject on the bus.
    pub fn subject(&self) -> String {
        match self {
            DomainEvent::ConversationCreated { conversation, .. }
            | DomainEvent::Resolved { conversation } => {
                format!("conversations/{}", conversation.id)
            }
            DomainEvent::MessageReceived { message, .. }
            | DomainEvent::MessageSent { message, .. }
            | DomainEvent::DeliveryChanged { message, .. } => {
                format!(
                    "conversations/{}/messages/{}",
                    message.conversation, message.id
                )
            }
            DomainEvent::StatusChanged { conversation, .. }
            | DomainEvent::Assigned { conversation, .. }
            | DomainEvent::Reopened { conversation, .. }
            | DomainEvent::Escalated { conversation, .. } => {
                format!("conversations/{conversation}")
            }
            DomainEvent::SlaWarningRaised(a) | DomainEvent::SlaBreached(a) => {
                format!("conversations/{}", a.conversation)
            }
            DomainEvent::Promise(e) => e.promise().name(),
        }
    }
}

/// A group of agents conversations are routed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    /// Id.
    pub id: TeamId,
    /// Name; unique per tenant (case-insensitively).
    pub display_name: String,
    /// Whether its conversations are assigned to its agents automatically.
    pub auto_assign: bool,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Optimistic concurrency version.
    pub version: i64,
}

/// Human or bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum AgentKind {
    Human,
    Bot,
}
str_enum!(AgentKind { Human => "human", Bot => "bot" });

/// Whether an agent takes new conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Availability {
    Available,
    Busy,
    Offline,
}
str_enum!(Availability { Available => "available", Busy => "busy", Offline => "offline" });

/// Someone, or something, that works conversations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// Id.
    pub id: AgentId,
    /// Name shown to colleagues and customers.
    pub display_name: String,
    /// Human or bot; never changes.
    pub kind: AgentKind,
    /// The principal it acts as; unique per tenant.
    pub principal: String,
    /// Its teams.
    pub teams: Vec<TeamId>,
    /// Availability.
    pub availability: Availability,
    /// Most open conversations auto-assignment gives it; 0: no limit.
    pub capacity: i32,
    /// Preferred locale of canned responses.
    pub locale: String,
    /// The agent's working hours and zone (promise reminders, "due
    /// today"); absent from documents stored before it.
    #[serde(default)]
    pub business_calendar: Option<super::calendars::CalendarId>,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Optimistic concurrency version.
    pub version: i64,
}

uuid_id!(
    /// Id of a canned response (`cannedResponses/{id}`).
    CannedResponseId
);

/// A canned response in one locale (and maybe for one channel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// BCP 47 locale.
    pub locale: String,
    /// The channel it is written for; `None`: every channel.
    pub channel: Option<Channel>,
    /// Body.
    pub body: String,
}

/// A saved answer agents insert by shortcode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannedResponse {
    /// Id.
    pub id: CannedResponseId,
    /// What agents type; unique per tenant.
    pub shortcode: String,
    /// Title.
    pub title: String,
    /// Default body.
    pub body: String,
    /// Locale and channel variants.
    pub variants: Vec<Variant>,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Optimistic concurrency version.
    pub version: i64,
}
