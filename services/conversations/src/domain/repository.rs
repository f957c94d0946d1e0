//! What the use-cases need from storage. One implementation lives in
//! `storage/` (sea-orm over SQLite or PostgreSQL).
use std::future::Future;

use chrono::{DateTime, Utc};

use rapport_usecase::{Claim, Priors};

use super::{
    error::{Error, Kind},
    managed::Managed,
    model::*,
};

/// A row to write, guarded by the version it was read at.
#[derive(Debug, Clone)]
pub enum RowWrite<T> {
    /// A new row.
    Insert(T),
    /// A changed row (its version already incremented); a version conflict
    /// unless the stored version is still `expected_version`.
    Update {
        /// The new state.
        value: T,
        /// The version it was read at.
        expected_version: i64,
    },
}

/// A change of the conversation a customer's next message on an inbox
/// threads into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadWrite {
    /// The first conversation of (inbox, customer): a [`Clash::Thread`] when
    /// a concurrent first message claimed it first.
    Start {
        /// The inbox.
        inbox: InboxId,
        /// The customer.
        customer: CustomerId,
        /// The new conversation.
        conversation: ConversationId,
    },
    /// A new conversation after `from` (after its reopen window): a version
    /// conflict unless the thread is still at `from`.
    Continue {
        /// The inbox.
        inbox: InboxId,
        /// The customer.
        customer: CustomerId,
        /// The conversation it was at.
        from: ConversationId,
        /// The new conversation.
        to: ConversationId,
    },
}

/// A managed resource (team, agent, canned response) as stored: its kind,
/// id, unique key, version, times and its JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedRow {
    /// Which kind.
    pub kind: Kind,
    /// Its id.
    pub id: uuid::Uuid,
    /// Its key, unique per tenant and kind.
    pub key: String,
    /// The field the key is in (for ALREADY_EXISTS).
    pub key_field: &'static str,
    /// Its version.
    pub version: i64,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// The whole resource, JSON.
    pub document: String,
}

impl ManagedRow {
    /// The row of `value`.
    pub fn of<T: Managed>(value: &T) -> Result<Self, Error> {
        let (create_time, update_time) = value.times();
        Ok(Self {
            kind: T::KIND,
            id: value.id(),
            key: value.key(),
            key_field: T::key_field(),
            version: value.version(),
            create_time,
            update_time,
            document: serde_json::to_string(value)
                .map_err(|e| Error::Internal(format!("encoding a {:?}: {e}", T::KIND)))?,
        })
    }
}

/// A managed row to delete, guarded by the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedDelete {
    /// Which kind.
    pub kind: Kind,
    /// Its id.
    pub id: uuid::Uuid,
    /// The version it was read at: a version conflict unless still stored.
    pub expected_version: i64,
}

/// Everything one use-case changes, committed in one transaction together
/// with its idempotency key and its events (the outbox).
#[derive(Debug, Clone)]
pub struct ChangeSet {
    /// Tenant of every row.
    pub tenant: Tenant,
    /// The request's idempotency key with the result it answers.
    pub claim: Option<Claim>,
    /// Inbox rows.
    pub inboxes: Vec<RowWrite<Inbox>>,
    /// Team, agent and canned response rows.
    pub managed: Vec<RowWrite<ManagedRow>>,
    /// Managed rows to delete.
    pub managed_deletes: Vec<ManagedDelete>,
    /// Conversation rows.
    pub conversations: Vec<RowWrite<Conversation>>,
    /// New messages (immutable). Each is counted in its conversation
    /// (`message_count`, `last_message_time`) by an increment, unless the
    /// change inserts the conversation.
    pub messages: Vec<Message>,
    /// A conversation a message was threaded into without a versioned
    /// write (it was open and nothing but its counts changed): a version
    /// conflict unless it is still open.
    pub still_open: Option<ConversationId>,
    /// Thread changes.
    pub threads: Vec<ThreadWrite>,
    /// What happened.
    pub events: Vec<DomainEvent>,
    /// Outbound messages to hand to their channel at a time: durable
    /// timers written with the message, so a crash never loses one.
    pub deliveries: Vec<DeliveryDue>,
    /// Delivery changes of stored messages (a connector's reports).
    pub delivery_writes: Vec<DeliveryWrite>,
    /// SLA warning and breach timers to (re)schedule or cancel.
    pub sla_timers: Vec<SlaTimer>,
    /// Metric facts of clocks that stopped (KPIs).
    pub metric_facts: Vec<MetricFact>,
    /// When the change happens.
    pub occur_time: DateTime<Utc>,
    /// Promise rows; storage keeps each one's timers (due, reminder) in
    /// step with it in the same transaction.
    pub promises: Vec<RowWrite<super::promise::Promise>>,
    /// The pending timer to (re)schedule for a conversation (check-in or
    /// auto-resolve); storage cancels it on every transition out of
    /// PENDING.
    pub pending_timer: Option<super::check_in::PendingTimer>,
    /// A conversation the change depends on without writing it (a promise
    /// made in it while it was not closed): a version conflict unless it is
    /// still at this version. Storage takes its row lock, so that a
    /// concurrent versioned write of it (a close) commits wholly before or
    /// after this change.
    pub conversation_at: Option<(ConversationId, i64)>,
    /// A conversation that must hold no OPEN promise when the change
    /// commits (it closes it), checked in the transaction after the
    /// conversation's write: a promise made concurrently either finds the
    /// conversation's version moved, or is found here (RESOURCE_IN_USE).
    pub no_open_promise: Option<ConversationId>,
}

/// A message's delivery changed, valid only while its delivery is still
/// `expected` (a version conflict otherwise). Only the delivery and, when
/// the message has none, the external id are written: nothing else of a
/// message changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryWrite {
    /// The message as it becomes.
    pub message: Message,
    /// Its delivery as read.
    pub expected: Option<Delivery>,
}

impl ChangeSet {
    /// An empty change of `tenant` at `now`.
    pub fn new(tenant: &Tenant, now: DateTime<Utc>) -> Self {
        Self {
            tenant: tenant.clone(),
            claim: None,
            inboxes: Vec::new(),
            managed: Vec::new(),
            managed_deletes: Vec::new(),
            conversations: Vec::new(),
            messages: Vec::new(),
            still_open: None,
            threads: Vec::new(),
            events: Vec::new(),
            deliveries: Vec::new(),
            delivery_writes: Vec::new(),
            sla_timers: Vec::new(),
            metric_facts: Vec::new(),
            occur_time: now,
            promises: Vec::new(),
            pending_timer: None,
            conversation_at: None,
            no_open_promise: None,
        }
    }
}

/// Which alert of an SLA clock a timer raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alert {
    /// The warning (at the policy's percentage of the target).
    Warning,
    /// The breach (at the due time).
    Breach,
}

/// The durable timer of one alert of one cycle of one metric of one
/// conversation: scheduled at `due`, or cancelled (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaTimer {
    /// The conversation.
    pub conversation: ConversationId,
    /// The metric.
    pub metric: super::sla::Metric,
    /// The cycle.
    pub cycle: u32,
    /// Warning or breach.
    pub alert: Alert,
    /// When; `None`: cancel it.
    pub due: Option<DateTime<Utc>>,
}

/// A stopped SLA clock, stored for KPIs (recomputable: both bases, the
/// definitions' version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricFact {
    /// The conversation.
    pub conversation: ConversationId,
    /// What it measures.
    pub metric: super::metrics::FactMetric,
    /// Its cycle.
    pub cycle: u32,
    /// Started.
    pub start: DateTime<Utc>,
    /// Stopped.
    pub stop: DateTime<Utc>,
    /// Calendar seconds counted (pauses the policy excludes left out).
    pub calendar_seconds: i64,
    /// Business seconds counted (the target's calendar, else the inbox's;
    /// equal to calendar seconds with neither).
    pub business_seconds: i64,
    /// Met (`Some(true)`), breached (`Some(false)`), or no target.
    pub met: Option<bool>,
    /// The target, seconds.
    pub target_seconds: Option<i64>,
    /// The assignee when it stopped.
    pub agent: Option<AgentId>,
    /// The team.
    pub team: Option<TeamId>,
    /// The latest channel.
    pub channel: Option<Channel>,
    /// The inbox.
    pub inbox: InboxId,
    /// The priority.
    pub priority: Priority,
    /// The interaction type.
    pub interaction_type: Option<InteractionType>,
    /// The applied policy and revision.
    pub policy: Option<(super::sla::SlaPolicyId, i64)>,
    /// Of a resolution: whether automation resolved it.
    pub auto: Option<bool>,
    /// Of a resolution: the distinct human agents who replied publicly in
    /// its cycle.
    pub human_agents: Option<i32>,
    /// The definitions' version ([`super::sla_clock::DEFINITION_VERSION`]).
    pub definition_version: i32,
}

/// An outbound message due for delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryDue {
    /// Its conversation.
    pub conversation: ConversationId,
    /// The message.
    pub message: MessageId,
    /// Not before then.
    pub due: DateTime<Utc>,
}

/// The unique clashes of the conversations schema, and failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clash {
    /// Another inbox holds the address.
    InboxAddress,
    /// Another resource of this kind holds the key.
    ManagedKey(Kind, &'static str),
    /// A concurrent first message started the thread.
    Thread,
    /// The message was stored already (inbox, external id).
    DuplicateMessage,
    /// Another conversation answers the source.
    Source,
    /// The customer a message was resolved to has been erased since.
    CustomerErased,
    /// Anything else.
    Failed(Error),
}

impl From<Clash> for Error {
    fn from(c: Clash) -> Self {
        match c {
            Clash::InboxAddress => Error::InboxAddressTaken,
            Clash::ManagedKey(kind, field) => Error::AlreadyExists(kind, field),
            Clash::Source => Error::AlreadyExists(Kind::Conversation, "source"),
            // Answered by reading again; reaching the caller is a bug.
            Clash::Thread | Clash::DuplicateMessage | Clash::CustomerErased => {
                Error::Internal("unhandled clash".to_owned())
            }
            Clash::Failed(e) => e,
        }
    }
}

/// Why a commit did not happen.
pub type CommitError = rapport_usecase::CommitError<Clash>;

/// Filters of ListConversations that storage applies (the rest are applied
/// to the page read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationFilter {
    /// Only this customer's.
    pub customer: Option<CustomerId>,
    /// Only in these states (all when empty).
    pub states: Vec<State>,
    /// Only assigned to (`Some(None)`: unassigned).
    pub assignee: Option<Option<AgentId>>,
    /// Only of this team.
    pub team: Option<TeamId>,
    /// Only of these priorities (all when empty).
    pub priorities: Vec<Priority>,
    /// Only of this inbox.
    pub inbox: Option<InboxId>,
    /// Created at or after.
    pub create_from: Option<DateTime<Utc>>,
    /// Created before.
    pub create_to: Option<DateTime<Utc>>,
}

/// Who keeps the hours of one business calendar, each in id order: what a
/// change of the calendar moves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalendarUsers {
    /// The inboxes naming it (their calendar places the warnings of
    /// calendar-time targets and counts business seconds).
    pub inboxes: Vec<InboxId>,
    /// The agents working by it (it places their promises' reminders).
    pub agents: Vec<AgentId>,
}

/// Storage of the conversations service. Every method is scoped to one
/// tenant; stored idempotent results are read through [`Priors`].
pub trait Repository:
    Priors<Error = Error> + super::promise::PromiseStore + Clone + Send + Sync + 'static
{
    /// One inbox.
    fn inbox(
        &self,
        tenant: &Tenant,
        id: InboxId,
    ) -> impl Future<Output = Result<Option<Inbox>, Error>> + Send;

    /// The KPI aggregates of the tenant's metric facts in `scope`.
    fn metric_aggregates(
        &self,
        tenant: &Tenant,
        scope: &super::metrics::Scope,
    ) -> impl Future<Output = Result<super::metrics::Aggregates, Error>> + Send;

    /// A page of inboxes in creation order after `after`.
    fn inboxes(
        &self,
        tenant: &Tenant,
        after: Option<InboxId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Inbox>, Error>> + Send;

    /// One team, agent or canned response.
    fn managed<T: Managed>(
        &self,
        tenant: &Tenant,
        id: uuid::Uuid,
    ) -> impl Future<Output = Result<Option<T>, Error>> + Send;

    /// The team, agent or canned response holding `key`.
    fn managed_by_key<T: Managed>(
        &self,
        tenant: &Tenant,
        key: &str,
    ) -> impl Future<Output = Result<Option<T>, Error>> + Send;

    /// A page of teams, agents or canned responses in creation order after
    /// `after`.
    fn managed_list<T: Managed>(
        &self,
        tenant: &Tenant,
        after: Option<uuid::Uuid>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<T>, Error>> + Send;

    /// How many open, pending or snoozed conversations `agent` is assigned.
    fn active_count(
        &self,
        tenant: &Tenant,
        agent: AgentId,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// One conversation.
    fn conversation(
        &self,
        tenant: &Tenant,
        id: ConversationId,
    ) -> impl Future<Output = Result<Option<Conversation>, Error>> + Send;

    /// The conversation of a case number.
    fn conversation_by_case_number(
        &self,
        tenant: &Tenant,
        case_number: i64,
    ) -> impl Future<Output = Result<Option<Conversation>, Error>> + Send;

    /// A page of conversations matching `filter`, newest first, before
    /// `before`.
    fn conversations(
        &self,
        tenant: &Tenant,
        filter: &ConversationFilter,
        before: Option<ConversationId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Conversation>, Error>> + Send;

    /// The conversation a customer's next message on `inbox` threads into.
    fn thread(
        &self,
        tenant: &Tenant,
        inbox: InboxId,
        customer: CustomerId,
    ) -> impl Future<Output = Result<Option<ConversationId>, Error>> + Send;

    /// The customer's most recently created conversation the team still
    /// works (open, pending or snoozed), in any inbox.
    fn latest_active(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
    ) -> impl Future<Output = Result<Option<Conversation>, Error>> + Send;

    /// A page of the conversations the team still works whose pinned SLA
    /// counts time on business calendar `calendar`, by id after `after`.
    fn pinned_to_calendar(
        &self,
        tenant: &Tenant,
        calendar: uuid::Uuid,
        after: Option<ConversationId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Conversation>, Error>> + Send;

    /// The inboxes and agents whose business calendar is `calendar`.
    fn calendar_users(
        &self,
        tenant: &Tenant,
        calendar: super::calendars::CalendarId,
    ) -> impl Future<Output = Result<CalendarUsers, Error>> + Send;

    /// One message of a conversation.
    fn message(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        id: MessageId,
    ) -> impl Future<Output = Result<Option<Message>, Error>> + Send;

    /// The message received on `inbox` with this external id.
    fn message_by_external_id(
        &self,
        tenant: &Tenant,
        inbox: InboxId,
        external_id: &str,
    ) -> impl Future<Output = Result<Option<Message>, Error>> + Send;

    /// The external ids of a conversation's messages, oldest first, at
    /// most the latest `limit`: an email thread's References.
    fn external_ids(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send;

    /// A page of a conversation's messages, oldest first, after `after`.
    fn messages(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Message>, Error>> + Send;

    /// A page of every message of a customer, newest first, before `before`.
    fn history(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        before: Option<MessageId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Message>, Error>> + Send;

    /// The tenant's next case number: a sequence, so a number is never
    /// given twice (one taken by a create that then lost its race is
    /// skipped).
    fn next_case_number(&self, tenant: &Tenant) -> impl Future<Output = Result<i64, Error>> + Send;

    /// Applies a change set atomically.
    fn commit(&self, change: ChangeSet) -> impl Future<Output = Result<(), CommitError>> + Send;
}
