//! Use-cases of the conversations API.
//!
//! Every mutation follows the write protocol of `rapport_usecase::write`:
//! answer a replayed `request_id` from the stored result; read; apply the
//! rules; commit the rows, the events and the idempotency claim in one
//! transaction with an optimistic version check; on a lost race read again
//! and retry.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use rapport_usecase::{
    Clock, Idempotency, Outcome, Violations, Write, page_of, write::MAX_ATTEMPTS,
};

use super::{
    error::{Error, Kind},
    model::*,
    ports::{Contact, Customers, Identity},
    repository::*,
    rules::{self, Action, Thread},
    sla_clock::ClockEvent,
};

/// A new inbox, as asked (its id, times and version are the service's).
pub type NewInbox = Inbox;

/// The updatable fields of an inbox an update names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxMask {
    /// `display_name`.
    pub display_name: bool,
    /// `provider`.
    pub provider: bool,
    /// `address`.
    pub address: bool,
    /// `default_team`.
    pub default_team: bool,
    /// `auto_acknowledgement`.
    pub auto_ack: bool,
    /// `reopen_window`.
    pub reopen_window: bool,
    /// `continue_across_channels`.
    pub continue_across_channels: bool,
    /// `expected_reply_time`.
    pub expected_reply_time: bool,
    /// `business_calendar`.
    pub business_calendar: bool,
    /// `connector`.
    pub connector: bool,
    /// `pending_check_in_after`.
    pub pending_check_in_after: bool,
    /// `auto_resolve_after`.
    pub auto_resolve_after: bool,
    /// `check_in_text`.
    pub check_in_text: bool,
    /// `delivery_connector`.
    pub delivery_connector: bool,
}

/// Which message a connector reports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTarget {
    /// By its name.
    Message(ConversationId, MessageId),
    /// By the connector's id of it.
    External(String),
}

/// A connector's report of what became of an outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The inbox it went out on.
    pub inbox: InboxId,
    /// The message.
    pub target: ReportTarget,
    /// The connector's id of it, to store (with a [`ReportTarget::Message`]).
    pub external_id: Option<String>,
    /// What became of it.
    pub report: super::delivery::Report,
}

/// An inbound message, as a channel adapter hands it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The inbox.
    pub inbox: InboxId,
    /// The sender.
    pub sender: SenderIdentity,
    /// The sender's display name, if the channel gives one.
    pub display_name: String,
    /// Channel, when not the inbox's.
    pub channel: Option<Channel>,
    /// Subject.
    pub subject: String,
    /// Text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// The channel's id of it.
    pub external_id: String,
    /// The external id it answers.
    pub in_reply_to: String,
    /// The external ids of the thread it belongs to, oldest first (an
    /// email's References): tried, newest first, after `in_reply_to`.
    pub references: Vec<String>,
    /// When it was sent, if the channel says.
    pub send_time: Option<DateTime<Utc>>,
}

/// The sender of an inbound message as the request names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderIdentity {
    /// An email address.
    Email(String),
    /// An E.164 phone number.
    Phone(String),
    /// A handle on the inbox's channel and provider.
    Handle(String),
}

/// What ReceiveMessage answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// The stored message.
    pub message: Message,
    /// Its conversation.
    pub conversation: Conversation,
    /// Whether this call stored it.
    pub created: bool,
}

/// A conversation an agent or another service starts (CreateConversation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversation {
    /// The customer.
    pub customer: CustomerId,
    /// The inbox.
    pub inbox: InboxId,
    /// Subject.
    pub subject: String,
    /// Priority.
    pub priority: Priority,
    /// Interaction type.
    pub interaction_type: Option<InteractionType>,
    /// How it started (never INBOUND).
    pub origin: Origin,
    /// What it answers, or empty.
    pub source: String,
    /// Labels.
    pub labels: Vec<String>,
}

/// An agent's or a bot's message, as CreateMessage asks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The conversation.
    pub conversation: ConversationId,
    /// The caller's principal: the agent acting as it writes.
    pub principal: String,
    /// Public reply or internal note.
    pub visibility: Visibility,
    /// Channel, when not the conversation's latest.
    pub channel: Option<Channel>,
    /// Why it is sent (public messages).
    pub purpose: Purpose,
    /// Subject.
    pub subject: String,
    /// Text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// A logged call or visit (PHONE, IN_PERSON), or `None`.
    pub call: Option<Call>,
}

/// The conversation fields an update may change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationUpdate {
    /// New subject.
    pub subject: Option<String>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New interaction type (`Some(None)` clears it).
    pub interaction_type: Option<Option<InteractionType>>,
    /// New labels.
    pub labels: Option<Vec<String>>,
}

/// The conversations use-cases over a repository, the customer directory
/// and a clock.
#[derive(Debug, Clone)]
pub struct Conversations<R, P, C> {
    repo: R,
    customers: P,
    clock: C,
    /// The zone of "today" for agents without a business calendar.
    default_zone: chrono_tz::Tz,
}

impl<R: Repository, P: Customers, C: Clock> Conversations<R, P, C> {
    /// Use-cases over `repo`, resolving senders with `customers`, telling
    /// time by `clock`.
    pub fn new(repo: R, customers: P, clock: C) -> Self {
        Self {
            repo,
            customers,
            clock,
            default_zone: chrono_tz::UTC,
        }
    }

    /// These use-cases with `zone` as the default zone of agents without
    /// a business calendar.
    pub fn with_default_zone(self, zone: chrono_tz::Tz) -> Self {
        Self {
            default_zone: zone,
            ..self
        }
    }

    /// The zone of agents without a business calendar.
    pub(super) fn default_zone(&self) -> chrono_tz::Tz {
        self.default_zone
    }

    /// The repository.
    pub(super) fn repo(&self) -> &R {
        &self.repo
    }

    /// The clock.
    pub(super) fn clock(&self) -> &C {
        &self.clock
    }

    /// The customer directory.
    pub(super) fn customers(&self) -> &P {
        &self.customers
    }

    /// Commits `change` with `result` as the answer stored under the
    /// request's key, about `subject`. `Err(Clash::Failed(Conflict))`: lost
    /// a race; read again.
    pub(super) async fn commit_as<T: Serialize + DeserializeOwned>(
        &self,
        w: &Write<'_, R>,
        mut change: ChangeSet,
        subject: impl std::fmt::Display,
        result: T,
    ) -> Result<Result<T, Clash>, Error> {
        change.claim = w.claim(subject, &result)?;
        match w.finish(self.repo.commit(change).await, result).await? {
            Outcome::Done(r) => Ok(Ok(r)),
            Outcome::Retry => Ok(Err(Clash::Failed(Error::Conflict))),
            Outcome::Other(clash) => Ok(Err(clash)),
        }
    }

    // ---- inboxes ----

    /// Creates an inbox.
    pub async fn create_inbox(
        &self,
        tenant: &Tenant,
        new: NewInbox,
        idem: Option<Idempotency>,
    ) -> Result<Inbox, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            let now = self.clock.now();
            let inbox = Inbox {
                id: InboxId::generate(),
                address: rules::normalize_address(new.channel, &new.address),
                display_name: new.display_name.trim().to_owned(),
                create_time: now,
                update_time: now,
                version: 1,
                ..new
            };
            let mut v = Violations::default();
            rules::check_inbox(&inbox, "inbox", &mut v);
            v.check()?;
            let mut change = ChangeSet::new(tenant, now);
            change.inboxes.push(RowWrite::Insert(inbox.clone()));
            match self.commit_as(&w, change, inbox.id, inbox).await? {
                Ok(i) => Ok(i),
                Err(clash) => Err(clash.into()),
            }
        }
        .await;
        w.settle(result).await
    }

    /// The inbox `id`, or NotFound.
    pub async fn inbox(&self, tenant: &Tenant, id: InboxId) -> Result<Inbox, Error> {
        self.repo
            .inbox(tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(Kind::Inbox, format!("inboxes/{id}")))
    }

    /// A page of inboxes and the cursor of the next.
    pub async fn inboxes(
        &self,
        tenant: &Tenant,
        after: Option<InboxId>,
        limit: u32,
    ) -> Result<(Vec<Inbox>, Option<InboxId>), Error> {
        let rows = self.repo.inboxes(tenant, after, limit + 1).await?;
        Ok(page_of(rows, limit, |i| i.id))
    }

    /// Updates the fields of an inbox `mask` names from `patch`.
    pub async fn update_inbox(
        &self,
        tenant: &Tenant,
        patch: Inbox,
        mask: InboxMask,
        etag: Option<String>,
        idem: Option<Idempotency>,
    ) -> Result<Inbox, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            for _ in 0..MAX_ATTEMPTS {
                let current = self.inbox(tenant, patch.id).await?;
                if etag.as_ref().is_some_and(|e| *e != current.etag()) {
                    return Err(Error::EtagMismatch);
                }
                let mut next = current.clone();
                let m = mask;
                if m.display_name {
                    next.display_name = patch.display_name.trim().to_owned();
                }
                if m.provider {
                    next.provider = patch.provider.clone();
                }
                if m.address {
                    next.address = rules::normalize_address(next.channel, &patch.address);
                }
                if m.default_team {
                    next.default_team = patch.default_team;
                }
                if m.auto_ack {
                    next.auto_ack = patch.auto_ack.clone();
                }
                if m.reopen_window {
                    next.reopen_window_secs = patch.reopen_window_secs;
                }
                if m.continue_across_channels {
                    next.continue_across_channels = patch.continue_across_channels;
                }
                if m.expected_reply_time {
                    next.expected_reply_secs = patch.expected_reply_secs;
                }
                if m.business_calendar {
                    next.business_calendar = patch.business_calendar.clone();
                }
                if m.connector {
                    next.connector = patch.connector.clone();
                }
                if m.pending_check_in_after {
                    next.pending.check_in_after_secs = patch.pending.check_in_after_secs;
                }
                if m.auto_resolve_after {
                    next.pending.auto_resolve_after_secs = patch.pending.auto_resolve_after_secs;
                }
                if m.check_in_text {
                    next.pending.check_in_text = patch.pending.check_in_text.trim().to_owned();
                }
                if m.delivery_connector {
                    // A secret left out keeps the current one.
                    next.delivery_connector = patch.delivery_connector.clone().map(|c| Connector {
                        secret: c.secret.or_else(|| {
                            current
                                .delivery_connector
                                .as_ref()
                                .and_then(|k| k.secret.clone())
                        }),
                        ..c
                    });
                }
                let mut v = Violations::default();
                rules::check_inbox(&next, "inbox", &mut v);
                v.check()?;
                if next == current {
                    return Ok(current);
                }
                let now = self.clock.now();
                next.version = current.version + 1;
                next.update_time = now;
                let mut change = ChangeSet::new(tenant, now);
                change.inboxes.push(RowWrite::Update {
                    value: next.clone(),
                    expected_version: current.version,
                });
                match self.commit_as(&w, change, next.id, next).await? {
                    Ok(i) => return Ok(i),
                    Err(Clash::Failed(Error::Conflict)) => continue,
                    Err(clash) => return Err(clash.into()),
                }
            }
            Err(w.exhausted())
        }
        .await;
        let updated = w.settle(result).await?;
        // After the commit (a retry reschedules again): the inbox's
        // calendar places warnings and counts business seconds.
        if mask.business_calendar {
            self.reschedule_for_inbox(tenant, updated.id).await?;
        }
        Ok(updated)
    }

    // ---- conversations ----

    /// The conversation `id`, or NotFound.
    pub async fn conversation(
        &self,
        tenant: &Tenant,
        id: ConversationId,
    ) -> Result<Conversation, Error> {
        self.repo
            .conversation(tenant, id)
            .await?
            .ok_or_else(|| Error::NotFound(Kind::Conversation, format!("conversations/{id}")))
    }

    /// The conversation of a case number, or NotFound.
    pub async fn by_case_number(
        &self,
        tenant: &Tenant,
        case_number: i64,
    ) -> Result<Conversation, Error> {
        self.repo
            .conversation_by_case_number(tenant, case_number)
            .await?
            .ok_or_else(|| {
                Error::NotFound(Kind::Conversation, format!("case number {case_number}"))
            })
    }

    /// A page of conversations matching `filter` (and, on the page read,
    /// `channel` and `label`), newest first, and the next page's cursor.
    pub async fn conversations(
        &self,
        tenant: &Tenant,
        filter: &ConversationFilter,
        channel: Option<Channel>,
        label: Option<&str>,
        before: Option<ConversationId>,
        limit: u32,
    ) -> Result<(Vec<Conversation>, Option<ConversationId>), Error> {
        let rows = self
            .repo
            .conversations(tenant, filter, before, limit + 1)
            .await?;
        let (page, next) = page_of(rows, limit, |c| c.id);
        // A page may come back shorter than asked: the rest are read by
        // the next one.
        let page = page
            .into_iter()
            .filter(|c| channel.is_none_or(|ch| c.channels.contains(&ch)))
            .filter(|c| label.is_none_or(|l| c.labels.iter().any(|x| x == l)))
            .collect();
        Ok((page, next))
    }

    /// Changes the state of conversation `id` by `action` (an agent's call),
    /// through the one transition function.
    pub async fn act(
        &self,
        tenant: &Tenant,
        id: ConversationId,
        action: Action,
        etag: Option<String>,
        idem: Option<Idempotency>,
    ) -> Result<Conversation, Error> {
        if action == Action::Close {
            // Answered before the transition's own refusals; the commit
            // checks again (`ChangeSet::no_open_promise`).
            self.check_no_open_promise(tenant, id).await?;
        }
        self.change_conversation(tenant, id, etag, idem, |c, now| {
            rules::transition(c, action.clone(), Cause::Agent, now)
        })
        .await
    }

    /// Updates subject, priority, interaction type or labels.
    pub async fn update_conversation(
        &self,
        tenant: &Tenant,
        id: ConversationId,
        update: ConversationUpdate,
        etag: Option<String>,
        idem: Option<Idempotency>,
    ) -> Result<Conversation, Error> {
        self.change_conversation(tenant, id, etag, idem, |c, now| {
            let mut next = c.clone();
            if let Some(s) = &update.subject {
                next.subject.clone_from(s);
            }
            if let Some(p) = update.priority {
                next.priority = p;
            }
            if let Some(t) = update.interaction_type {
                next.interaction_type = t;
            }
            if let Some(l) = &update.labels {
                next.labels.clone_from(l);
            }
            if next != *c {
                next.version = c.version + 1;
                next.update_time = now;
            }
            Ok((next, Vec::new()))
        })
        .await
    }

    /// Reads conversation `id`, applies `f`, commits: the shape of every
    /// change of one conversation.
    pub(super) async fn change_conversation(
        &self,
        tenant: &Tenant,
        id: ConversationId,
        etag: Option<String>,
        idem: Option<Idempotency>,
        f: impl Fn(&Conversation, DateTime<Utc>) -> Result<(Conversation, Vec<DomainEvent>), Error>,
    ) -> Result<Conversation, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            for _ in 0..MAX_ATTEMPTS {
                let current = self.conversation(tenant, id).await?;
                if etag.as_ref().is_some_and(|e| *e != current.etag()) {
                    return Err(Error::EtagMismatch);
                }
                let now = self.clock.now();
                let (mut next, events) = f(&current, now)?;
                if next == current {
                    return Ok(current);
                }
                self.reapply_sla(tenant, &current, &mut next, now).await?;
                let mut change = ChangeSet::new(tenant, now);
                if super::check_in::became_pending(&events) {
                    let inbox = self.inbox(tenant, next.inbox).await?;
                    change.pending_timer = super::check_in::on_pending(&inbox.pending, &next, now);
                }
                self.sla_effects(tenant, Some(&current), &next, &mut change)
                    .await?;
                if next.state == State::Closed && current.state != State::Closed {
                    // Closed is final: a promise still open would outlive it.
                    change.no_open_promise = Some(id);
                }
                change.conversations.push(RowWrite::Update {
                    value: next.clone(),
                    expected_version: current.version,
                });
                change.events = events;
                match self.commit_as(&w, change, id, next).await? {
                    Ok(c) => return Ok(c),
                    Err(Clash::Failed(Error::Conflict)) => continue,
                    Err(clash) => return Err(clash.into()),
                }
            }
            Err(w.exhausted())
        }
        .await;
        w.settle(result).await
    }

    /// Starts a conversation nobody has written in yet: an agent's
    /// (OUTBOUND), Rapport's own (PROACTIVE), or another service's
    /// (FEEDBACK_FOLLOW_UP, REVIEW, with the `source` it answers, unique per
    /// tenant). Its messages are checked against the customer's contact
    /// policy when sent. It takes no place in the inbox's thread of the
    /// customer: the customer's answer finds it by its threading headers.
    pub async fn create_conversation(
        &self,
        tenant: &Tenant,
        new: NewConversation,
        idem: Option<Idempotency>,
    ) -> Result<Conversation, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            // NotFound for an inbox of another tenant or none.
            let inbox = self.inbox(tenant, new.inbox).await?;
            let now = self.clock.now();
            let case_number = self.repo.next_case_number(tenant).await?;
            let mut c = Conversation {
                id: ConversationId::generate(),
                case_number,
                customer: new.customer,
                inbox: inbox.id,
                channels: Vec::new(),
                subject: new.subject.trim().to_owned(),
                state: State::Open,
                priority: new.priority,
                interaction_type: new.interaction_type,
                origin: new.origin,
                source: new.source.clone(),
                assignee: None,
                team: inbox.default_team,
                labels: new.labels.clone(),
                snooze_until: None,
                waiting_since: None,
                first_response_time: None,
                last_agent_reply_time: None,
                customer_wrote: false,
                resolve_count: 0,
                reopen_count: 0,
                resolution: None,
                previous: None,
                applied_sla: None,
                sla: Default::default(),
                message_count: 0,
                last_message_time: now,
                create_time: now,
                update_time: now,
                version: 1,
            };
            c.sla.apply(
                ClockEvent::Created {
                    customer_waiting: false,
                },
                now,
            );
            c.sla.apply(
                ClockEvent::Assigned {
                    assigned: c.assignee.is_some(),
                },
                now,
            );
            c.applied_sla = self.select_sla(tenant, &c, inbox.channel, now).await?;
            let mut change = ChangeSet::new(tenant, now);
            self.sla_effects(tenant, None, &c, &mut change).await?;
            change.conversations.push(RowWrite::Insert(c.clone()));
            change.events.push(DomainEvent::ConversationCreated {
                conversation: c.clone(),
                channel: inbox.channel,
            });
            match self.commit_as(&w, change, c.id, c).await? {
                Ok(c) => Ok(c),
                Err(clash) => Err(clash.into()),
            }
        }
        .await;
        w.settle(result).await
    }

    // ---- messages ----

    /// Receives a customer's message: dedupes on (inbox, external id),
    /// resolves the sender, threads it: into the conversation of the
    /// message it answers (`in_reply_to`) when that is the customer's and
    /// takes it, else by the inbox's thread (see [`rules::thread`]).
    pub async fn receive(
        &self,
        tenant: &Tenant,
        inbound: Inbound,
        idem: Option<Idempotency>,
    ) -> Result<Received, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.receive_once(&w, tenant, inbound).await;
        w.settle(result).await
    }

    async fn receive_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        inbound: Inbound,
    ) -> Result<Received, Error> {
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        let inbox = self.inbox(tenant, inbound.inbox).await?;
        if let Some(stored) = self.stored(tenant, &inbox, &inbound.external_id).await? {
            return Ok(stored);
        }
        let identity = match &inbound.sender {
            SenderIdentity::Email(e) => Identity::Email(e.clone()),
            SenderIdentity::Phone(p) => Identity::Phone(p.clone()),
            SenderIdentity::Handle(h) => Identity::Handle {
                channel: inbox.channel,
                provider: inbox.provider.clone(),
                handle: h.clone(),
            },
        };
        let mut customer = self
            .customers
            .resolve(tenant, &identity, &inbound.display_name)
            .await?;
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            // An answer to a message of ours (an email's In-Reply-To) goes
            // to that message's conversation while it takes messages — if
            // it is this customer's: a header names no one else's case.
            let mut answered = None;
            let named =
                std::iter::once(&inbound.in_reply_to).chain(inbound.references.iter().rev());
            for id in named.filter(|id| !id.is_empty()).take(10) {
                if let Some(m) = self
                    .repo
                    .message_by_external_id(tenant, inbox.id, id)
                    .await?
                    && m.customer == customer
                {
                    answered = self.repo.conversation(tenant, m.conversation).await?;
                    break;
                }
            }
            let mut decision = match answered.map(|c| rules::thread(&inbox, Some(c), now)) {
                Some(d @ (Thread::Into(_) | Thread::Reopen(_))) => d,
                // Else the inbox's thread of the customer.
                _ => {
                    let current = match self.repo.thread(tenant, inbox.id, customer).await? {
                        Some(id) => self.repo.conversation(tenant, id).await?,
                        None => None,
                    };
                    rules::thread(&inbox, current, now)
                }
            };
            if inbox.continue_across_channels
                && matches!(decision, Thread::New { .. })
                && let Some(active) = self.repo.latest_active(tenant, customer).await?
            {
                decision = Thread::Into(active);
            }
            let message = Message {
                id: MessageId::generate(),
                conversation: ConversationId(uuid::Uuid::nil()),
                inbox: inbox.id,
                customer,
                direction: Direction::Inbound,
                sender_kind: SenderKind::Customer,
                agent: None,
                visibility: Visibility::Public,
                channel: inbound.channel.unwrap_or(inbox.channel),
                subject: inbound.subject.clone(),
                text: inbound.text.clone(),
                html: inbound.html.clone(),
                attachments: inbound.attachments.clone(),
                external_id: Some(inbound.external_id.clone()).filter(|e| !e.is_empty()),
                in_reply_to: inbound.in_reply_to.clone(),
                send_time: inbound.send_time.unwrap_or(now).min(now),
                create_time: now,
                purpose: None,
                delivery: None,
                call: None,
            };
            let mut change = ChangeSet::new(tenant, now);
            let (conversation, message) = match decision {
                Thread::Into(c) | Thread::Reopen(c) => {
                    let (mut next, events) = rules::transition(
                        &c,
                        Action::CustomerMessage,
                        Cause::CustomerMessage,
                        now,
                    )?;
                    let message = Message {
                        conversation: c.id,
                        ..message
                    };
                    rules::add_customer_message(&mut next, &message);
                    self.reapply_sla(tenant, &c, &mut next, now).await?;
                    self.sla_effects(tenant, Some(&c), &next, &mut change)
                        .await?;
                    change.events = events;
                    if rules::only_counts_changed(&c, &next) {
                        // The common case of a busy conversation: counted
                        // by storage, no versioned write to conflict on.
                        next = Conversation {
                            version: c.version,
                            update_time: c.update_time,
                            ..next
                        };
                        change.still_open = Some(c.id);
                    } else {
                        next.version = c.version + 1;
                        change.conversations.push(RowWrite::Update {
                            value: next.clone(),
                            expected_version: c.version,
                        });
                    }
                    change.events.push(DomainEvent::MessageReceived {
                        message: message.clone(),
                        first_of_conversation: false,
                    });
                    (next, message)
                }
                Thread::New { previous } => {
                    let case_number = self.repo.next_case_number(tenant).await?;
                    let id = ConversationId::generate();
                    let message = Message {
                        conversation: id,
                        ..message
                    };
                    let mut c = rules::inbound_conversation(
                        &inbox,
                        (id, case_number),
                        customer,
                        &message.subject,
                        previous,
                        now,
                    );
                    rules::add_customer_message(&mut c, &message);
                    c.sla.apply(
                        ClockEvent::Created {
                            customer_waiting: true,
                        },
                        now,
                    );
                    c.sla.apply(
                        ClockEvent::Assigned {
                            assigned: c.assignee.is_some(),
                        },
                        now,
                    );
                    c.applied_sla = self.select_sla(tenant, &c, message.channel, now).await?;
                    self.sla_effects(tenant, None, &c, &mut change).await?;
                    // At most one acknowledgement per new conversation, in
                    // the same change: never a response, never counted as
                    // one (it goes through no transition).
                    let known = if inbox.auto_ack.as_ref().is_some_and(|a| a.enabled) {
                        self.acknowledgement_values(tenant, &inbox, &c, now).await?
                    } else {
                        Default::default()
                    };
                    if let Some(ack) = rules::acknowledgement(&inbox, &c, &message, &known, now) {
                        rules::add_sent_message(&mut c, &ack);
                        change.deliveries.push(DeliveryDue {
                            conversation: id,
                            message: ack.id,
                            due: now,
                        });
                        change.events.push(DomainEvent::MessageSent {
                            message: ack.clone(),
                            first_response: false,
                        });
                        change.messages.push(ack);
                    }
                    change.threads.push(match previous {
                        None => ThreadWrite::Start {
                            inbox: inbox.id,
                            customer,
                            conversation: id,
                        },
                        Some(from) => ThreadWrite::Continue {
                            inbox: inbox.id,
                            customer,
                            from,
                            to: id,
                        },
                    });
                    change.conversations.push(RowWrite::Insert(c.clone()));
                    change.events.push(DomainEvent::ConversationCreated {
                        conversation: c.clone(),
                        channel: message.channel,
                    });
                    change.events.push(DomainEvent::MessageReceived {
                        message: message.clone(),
                        first_of_conversation: true,
                    });
                    (c, message)
                }
            };
            change.messages.push(message.clone());
            let received = Received {
                message,
                conversation,
                created: true,
            };
            let subject = received.conversation.id;
            match self.commit_as(w, change, subject, received).await? {
                Ok(r) => return Ok(r),
                // Another first message started the thread, or changed the
                // conversation: read again.
                Err(Clash::Thread | Clash::Failed(Error::Conflict)) => continue,
                Err(Clash::DuplicateMessage) => {
                    if let Some(stored) = self.stored(tenant, &inbox, &inbound.external_id).await? {
                        return Ok(stored);
                    }
                }
                // The customer resolved before was erased meanwhile: the
                // sender is someone profiles no longer knows, so resolve
                // them again (a new customer) rather than store their
                // words under the erased one.
                Err(Clash::CustomerErased) => {
                    customer = self
                        .customers
                        .resolve(tenant, &identity, &inbound.display_name)
                        .await?;
                }
                Err(clash) => return Err(clash.into()),
            }
        }
        Err(w.exhausted())
    }

    /// Adds an agent's or a bot's message to a conversation: a public reply
    /// goes through the one transition function (a human's answers the
    /// customer; the first is the first response), an internal note changes
    /// nothing but the counts. Replies in a conversation are service
    /// messages; a public one waits for delivery (SCHEDULED).
    pub async fn send(
        &self,
        tenant: &Tenant,
        outbound: Outbound,
        idem: Option<Idempotency>,
    ) -> Result<Message, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = self.send_once(&w, tenant, outbound).await;
        w.settle(result).await
    }

    async fn send_once(
        &self,
        w: &Write<'_, R>,
        tenant: &Tenant,
        out: Outbound,
    ) -> Result<Message, Error> {
        if let Some(prior) = w.replay().await? {
            return Ok(prior);
        }
        let agent: Agent = self
            .repo
            .managed_by_key(tenant, &out.principal)
            .await?
            .ok_or_else(|| Error::NotAnAgent(out.principal.clone()))?;
        for _ in 0..MAX_ATTEMPTS {
            let c = self.conversation(tenant, out.conversation).await?;
            let now = self.clock.now();
            let (change, message) = self.outbound_change(tenant, &out, &agent, &c, now).await?;
            match self.commit_as(w, change, c.id, message).await? {
                Ok(m) => return Ok(m),
                // The conversation changed meanwhile: read it again.
                Err(Clash::Failed(Error::Conflict)) => continue,
                Err(clash) => return Err(clash.into()),
            }
        }
        Err(w.exhausted())
    }

    /// The change that adds `out`, written by `agent`, to `c` at `now`,
    /// and the message: the outbound path every public message takes (a
    /// reply, a note, a promise's renegotiation notice), so each is
    /// delivered and checked against the contact policy alike.
    pub(super) async fn outbound_change(
        &self,
        tenant: &Tenant,
        out: &Outbound,
        agent: &Agent,
        c: &Conversation,
        now: DateTime<Utc>,
    ) -> Result<(ChangeSet, Message), Error> {
        let (sender_kind, human) = match agent.kind {
            AgentKind::Human => (SenderKind::Agent, true),
            AgentKind::Bot => (SenderKind::Bot, false),
        };
        let public = out.visibility == Visibility::Public;
        // A logged call or visit happened already: nothing to deliver or to
        // ask a contact policy about.
        let logged = out.call.is_some();
        let message_id = MessageId::generate();
        // Default: the conversation's latest channel, else (nobody has
        // written yet) its inbox's.
        let channel = match out.channel.or(c.channels.last().copied()) {
            Some(ch) => ch,
            None => self.inbox(tenant, c.inbox).await?.channel,
        };
        let (mut next, events) = if public {
            rules::transition(c, Action::AgentReply { human }, Cause::Agent, now)?
        } else {
            (c.clone(), Vec::new())
        };
        let first_response = public && human && c.first_response_time.is_none();
        // An email gets its Message-ID now, on the inbox's domain (so
        // the customer's answer, In-Reply-To it, threads back here),
        // and answers the thread's latest message.
        let (external_id, in_reply_to) = if public && !logged && channel == Channel::Email {
            let inbox = self.inbox(tenant, c.inbox).await?;
            let thread = self.repo.external_ids(tenant, c.id, 1).await?;
            (
                Some(rules::message_id_for(message_id, &inbox.address)),
                thread.last().cloned().unwrap_or_default(),
            )
        } else {
            (None, String::new())
        };
        // A service reply in a conversation the customer wrote in goes
        // out as it is; anything else public is proactive and asks the
        // customer's contact policy now, at send time: refused, it is
        // not stored; in quiet hours, its delivery waits.
        let proactive = public && !logged && rules::proactive(c, out.purpose);
        let due = if proactive {
            match self
                .customers
                .contact(tenant, c.customer, channel, out.purpose)
                .await?
            {
                Contact::Allowed => now,
                Contact::Deferred(until) => until.max(now),
                Contact::Refused(why) => return Err(Error::ContactNotPermitted(why)),
            }
        } else {
            now
        };
        let message = Message {
            id: message_id,
            conversation: c.id,
            inbox: c.inbox,
            customer: c.customer,
            direction: Direction::Outbound,
            sender_kind,
            agent: Some(agent.id),
            visibility: out.visibility,
            channel,
            subject: out.subject.clone(),
            text: out.text.clone(),
            html: out.html.clone(),
            attachments: out.attachments.clone(),
            external_id,
            in_reply_to,
            send_time: now,
            create_time: now,
            purpose: public.then_some(out.purpose),
            call: out.call.clone(),
            // Internal notes and logged calls never leave Rapport.
            delivery: (public && !logged).then_some(Delivery {
                state: DeliveryState::Scheduled,
                failure_reason: String::new(),
                scheduled_time: (due > now).then_some(due),
                update_time: now,
                attempts: 0,
            }),
        };
        rules::add_sent_message(&mut next, &message);
        // What the KPIs need of this cycle's work: who answered (first
        // contact resolution) and the logged call's handle time.
        if public && human {
            next.sla.replied_by(agent.id);
        }
        if let Some(call) = &out.call {
            next.sla.logged_call(
                i64::from(call.talk_secs)
                    + i64::from(call.hold_secs)
                    + i64::from(call.wrap_up_secs),
            );
        }
        let mut change = ChangeSet::new(tenant, now);
        self.sla_effects(tenant, Some(c), &next, &mut change)
            .await?;
        // A public reply is only valid in the state read: a versioned
        // write (or, for an open conversation that changed nothing but
        // counts, the open guard) makes a concurrent resolve win and
        // this one read again. A note is valid in any state: counted.
        let changed = next.version != c.version || next.channels != c.channels || next.sla != c.sla;
        if changed || (public && c.state != State::Open) {
            next.version = c.version + 1;
            next.update_time = now;
            change.conversations.push(RowWrite::Update {
                value: next,
                expected_version: c.version,
            });
        } else if public {
            change.still_open = Some(c.id);
        }
        change.events = events;
        change.events.push(DomainEvent::MessageSent {
            message: message.clone(),
            first_response,
        });
        if public && !logged {
            change.deliveries.push(DeliveryDue {
                conversation: c.id,
                message: message.id,
                due,
            });
        }
        change.messages.push(message.clone());
        Ok((change, message))
    }

    /// A connector's report of what became of a message it was handed:
    /// its delivery moves forward (a late or repeated report changes
    /// nothing and is no error), with a DeliveryChanged event; the
    /// connector's id of it is stored when the message has none.
    pub async fn report_delivery(
        &self,
        tenant: &Tenant,
        r: DeliveryReport,
        idem: Option<Idempotency>,
    ) -> Result<Message, Error> {
        let w = Write::new(&self.repo, tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            let inbox = self.inbox(tenant, r.inbox).await?;
            for _ in 0..MAX_ATTEMPTS {
                let (found, name) = match &r.target {
                    ReportTarget::Message(c, id) => (
                        self.repo.message(tenant, *c, *id).await?,
                        format!("conversations/{c}/messages/{id}"),
                    ),
                    ReportTarget::External(x) => (
                        self.repo
                            .message_by_external_id(tenant, inbox.id, x)
                            .await?,
                        format!("{}/messages/{x}", r.inbox),
                    ),
                };
                // A message of another inbox is none of this connector's.
                let m = found
                    .filter(|m| m.inbox == inbox.id)
                    .ok_or_else(|| Error::NotFound(Kind::Message, name.clone()))?;
                let Some(current) = m.delivery.clone() else {
                    return Err(Error::NoDelivery(name));
                };
                let now = self.clock.now();
                let moved = super::delivery::report(&current, &r.report, now);
                let external_id = r.external_id.clone().filter(|_| m.external_id.is_none());
                if moved.is_none() && external_id.is_none() {
                    return Ok(m);
                }
                let mut next = m.clone();
                if let Some(d) = &moved {
                    next.delivery = Some(d.clone());
                }
                if external_id.is_some() {
                    next.external_id = external_id;
                }
                let mut change = ChangeSet::new(tenant, now);
                if moved.is_some() {
                    change.events.push(DomainEvent::DeliveryChanged {
                        message: next.clone(),
                        from: current.state,
                    });
                }
                change.delivery_writes.push(DeliveryWrite {
                    message: next.clone(),
                    expected: Some(current),
                });
                // Keyed by the conversation, as every stored result holding
                // a message is: an erasure forgets it with the conversation.
                match self.commit_as(&w, change, next.conversation, next).await? {
                    Ok(m) => return Ok(m),
                    Err(Clash::Failed(Error::Conflict)) => continue,
                    Err(Clash::DuplicateMessage) => {
                        return Err(Error::AlreadyExists(Kind::Message, "external_id"));
                    }
                    Err(clash) => return Err(clash.into()),
                }
            }
            Err(w.exhausted())
        }
        .await;
        w.settle(result).await
    }

    /// The message already received on `inbox` as `external_id`, with its
    /// conversation.
    async fn stored(
        &self,
        tenant: &Tenant,
        inbox: &Inbox,
        external_id: &str,
    ) -> Result<Option<Received>, Error> {
        if external_id.is_empty() {
            return Ok(None);
        }
        let Some(message) = self
            .repo
            .message_by_external_id(tenant, inbox.id, external_id)
            .await?
        else {
            return Ok(None);
        };
        let conversation = self.conversation(tenant, message.conversation).await?;
        Ok(Some(Received {
            message,
            conversation,
            created: false,
        }))
    }

    /// One message, or NotFound.
    pub async fn message(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        id: MessageId,
    ) -> Result<Message, Error> {
        self.repo
            .message(tenant, conversation, id)
            .await?
            .ok_or_else(|| {
                Error::NotFound(
                    Kind::Message,
                    format!("conversations/{conversation}/messages/{id}"),
                )
            })
    }

    /// A page of a conversation's messages, oldest first.
    pub async fn messages(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<(Vec<Message>, Option<MessageId>), Error> {
        // NotFound for a conversation that does not exist, not an empty list.
        self.conversation(tenant, conversation).await?;
        let rows = self
            .repo
            .messages(tenant, conversation, after, limit + 1)
            .await?;
        Ok(page_of(rows, limit, |m| m.id))
    }

    /// A page of a customer's whole history, newest first.
    pub async fn history(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<(Vec<Message>, Option<MessageId>), Error> {
        let rows = self
            .repo
            .history(tenant, customer, before, limit + 1)
            .await?;
        Ok(page_of(rows, limit, |m| m.id))
    }
}
