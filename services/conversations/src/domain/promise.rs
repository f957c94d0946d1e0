//! Promises (`conversations/{c}/promises/{p}`): what an agent committed to
//! a customer, by when. OPEN → KEPT (on time or late), BROKEN (by itself at
//! the due time, once: a durable timer storage keeps in step with every
//! write of the promise) or CANCELLED; a broken promise may still be kept,
//! late. Renegotiating moves the due time, never the original one, and a
//! promise the customer sees needs a message telling them when they will
//! hear back — an already sent public message, or one sent in the same
//! change through the one outbound path.
//!
//! Promises are nested in their conversation (AIP-122: a promise is made in
//! one conversation and cannot move), and listed across conversations
//! with the `conversations/-` wildcard (AIP-159) for "my promises due
//! today".
use std::future::Future;

use chrono::{DateTime, Duration, NaiveTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use rapport_usecase::{Idempotency, Violations, Write, str_enum, uuid_id, write::MAX_ATTEMPTS};
use serde::{Deserialize, Serialize};

use super::{
    calendar::BusinessCalendar,
    calendars::Calendar,
    error::{Error, Kind},
    model::*,
    ports::Customers,
    repository::{ChangeSet, Clash, Repository, RowWrite},
    service::{Conversations, Outbound},
};
use rapport_usecase::Clock;

uuid_id!(
    /// Id of a promise (`conversations/{conversation}/promises/{id}`).
    PromiseId
);

/// Longest description.
pub const MAX_DESCRIPTION: usize = 2000;
/// Longest reminder lead time: 30 days.
pub const MAX_REMINDER_LEAD_SECS: i64 = 30 * 86_400;

/// What was promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum PromiseKind {
    Callback,
    SendResource,
    Answer,
    Resolution,
    FollowUp,
}
str_enum!(PromiseKind {
    Callback => "callback", SendResource => "send_resource", Answer => "answer",
    Resolution => "resolution", FollowUp => "follow_up",
});

/// Where a promise stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum PromiseState {
    Open,
    Kept,
    Broken,
    Cancelled,
}
str_enum!(PromiseState { Open => "open", Kept => "kept", Broken => "broken", Cancelled => "cancelled" });

/// A promise to the customer of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// Id.
    pub id: PromiseId,
    /// Its conversation.
    pub conversation: ConversationId,
    /// The agent who keeps it.
    pub owner: AgentId,
    /// What was promised.
    pub kind: PromiseKind,
    /// In words.
    pub description: String,
    /// Whether the customer was told.
    pub customer_visible: bool,
    /// Due now.
    pub due_time: DateTime<Utc>,
    /// Due as first made; never moves.
    pub original_due_time: DateTime<Utc>,
    /// State.
    pub state: PromiseState,
    /// When kept.
    pub keep_time: Option<DateTime<Utc>>,
    /// Whether kept by its due time.
    pub kept_on_time: bool,
    /// When it broke (its due time).
    pub break_time: Option<DateTime<Utc>>,
    /// When cancelled.
    pub cancel_time: Option<DateTime<Utc>>,
    /// Times renegotiated.
    pub renegotiation_count: i32,
    /// Notice the owner gets before the due time, seconds of the owner's
    /// business time; 0: none.
    pub reminder_lead_secs: i64,
    /// When the owner's reminder is due, while pending.
    pub reminder_time: Option<DateTime<Utc>>,
    /// Created.
    pub create_time: DateTime<Utc>,
    /// Last changed.
    pub update_time: DateTime<Utc>,
    /// Optimistic concurrency version.
    pub version: i64,
}

impl Promise {
    /// Its resource name.
    pub fn name(&self) -> String {
        format!("conversations/{}/promises/{}", self.conversation, self.id)
    }

    /// The etag of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }

    fn bumped(&self, now: DateTime<Utc>) -> Promise {
        Promise {
            version: self.version + 1,
            update_time: now,
            ..self.clone()
        }
    }

    fn refuse(&self, action: &'static str) -> Error {
        Error::PromiseState {
            state: self.state.as_str(),
            action,
        }
    }

    /// Kept at `now`: an open promise, or a broken one late.
    pub fn keep(&self, now: DateTime<Utc>) -> Result<(Promise, PromiseEvent), Error> {
        if !matches!(self.state, PromiseState::Open | PromiseState::Broken) {
            return Err(self.refuse("keep"));
        }
        let mut next = self.bumped(now);
        next.state = PromiseState::Kept;
        next.keep_time = Some(now);
        next.kept_on_time = now <= self.due_time;
        next.reminder_time = None;
        Ok((next.clone(), PromiseEvent::Kept(next)))
    }

    /// Withdrawn at `now` (open only).
    pub fn cancel(&self, now: DateTime<Utc>) -> Result<(Promise, PromiseEvent), Error> {
        if self.state != PromiseState::Open {
            return Err(self.refuse("cancel"));
        }
        let mut next = self.bumped(now);
        next.state = PromiseState::Cancelled;
        next.cancel_time = Some(now);
        next.reminder_time = None;
        Ok((next.clone(), PromiseEvent::Cancelled(next)))
    }

    /// Broken, if its due timer scheduled for `due` still stands for it:
    /// open and due then (a renegotiated or kept promise is not).
    pub fn break_at(&self, due: DateTime<Utc>) -> Option<(Promise, PromiseEvent)> {
        if self.state != PromiseState::Open || self.due_time != due {
            return None;
        }
        let mut next = self.bumped(due);
        next.state = PromiseState::Broken;
        next.break_time = Some(due);
        next.reminder_time = None;
        Some((next.clone(), PromiseEvent::Broken(next)))
    }

    /// Its reminder, if the reminder timer scheduled for `at` still stands
    /// for it.
    pub fn remind_at(&self, at: DateTime<Utc>) -> Option<(Promise, PromiseEvent)> {
        if self.state != PromiseState::Open || self.reminder_time != Some(at) {
            return None;
        }
        let mut next = self.bumped(at);
        next.reminder_time = None;
        Some((next.clone(), PromiseEvent::ReminderDue(next)))
    }
}

/// What happened to a promise: ids and facts, never its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromiseEvent {
    /// Made.
    Made(Promise),
    /// Kept (on time or late: `kept_on_time`).
    Kept(Promise),
    /// Broken at its due time.
    Broken(Promise),
    /// Its due time moved.
    Renegotiated {
        /// It, renegotiated.
        promise: Promise,
        /// The due time before.
        previous_due_time: DateTime<Utc>,
        /// The message that told the customer.
        message: Option<MessageId>,
    },
    /// Withdrawn.
    Cancelled(Promise),
    /// The owner's reminder is due.
    ReminderDue(Promise),
}

impl PromiseEvent {
    /// The promise it is about.
    pub fn promise(&self) -> &Promise {
        match self {
            PromiseEvent::Made(p)
            | PromiseEvent::Kept(p)
            | PromiseEvent::Broken(p)
            | PromiseEvent::Cancelled(p)
            | PromiseEvent::ReminderDue(p)
            | PromiseEvent::Renegotiated { promise: p, .. } => p,
        }
    }
}

/// When the owner is reminded of a promise due at `due` with `lead_secs`
/// of notice.
///
/// The rule: the notice is the owner's working time. The reminder comes
/// when `lead_secs` of the owner's business time remain before the due
/// time, so it always falls inside the owner's hours: due Monday 10:00,
/// lead 2 h, hours 09:00–17:00 → Friday 16:00 (one hour on Friday, one on
/// Monday morning), not Monday 08:00 when nobody is there. Without a
/// calendar, plain time: `due - lead`. A time already past (the promise
/// was made or moved late) means now, or the owner's next opening, when
/// that is still before the due time; otherwise no reminder. No lead, no
/// reminder.
pub fn reminder_time(
    calendar: Option<&BusinessCalendar>,
    due: DateTime<Utc>,
    lead_secs: i64,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if lead_secs <= 0 || due <= now {
        return None;
    }
    let at = match calendar {
        None => due - Duration::seconds(lead_secs),
        Some(cal) => business_before(cal, due, lead_secs.unsigned_abs())?,
    };
    if at > now {
        return Some(at);
    }
    let soonest = match calendar {
        None => now,
        Some(cal) => cal.next_opening(now).ok()?,
    };
    (soonest < due).then_some(soonest)
}

/// The latest instant from which `lead` seconds of `cal`'s working time
/// remain before `due`; `None` when the calendar has not that much working
/// time in the ten years before.
fn business_before(cal: &BusinessCalendar, due: DateTime<Utc>, lead: u64) -> Option<DateTime<Utc>> {
    let due_s = due.timestamp();
    let limit = due_s - 10 * 366 * 86_400;
    let enough = |t: i64| {
        DateTime::from_timestamp(t, 0).is_some_and(|t| t <= due && cal.measure(t, due) >= lead)
    };
    // Back in growing steps to an instant with enough working time after
    // it, then bisect: working time left is non-increasing in the start.
    let mut step = i64::try_from(lead).ok()?.max(3600);
    let mut lo = due_s - i64::try_from(lead).ok()?;
    while !enough(lo) {
        if lo < limit {
            return None;
        }
        lo -= step;
        step = step.saturating_mul(2);
    }
    let mut hi = due_s;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if enough(mid) { lo = mid } else { hi = mid }
    }
    DateTime::from_timestamp(lo, 0)
}

/// The end of `now`'s day in `zone` (the next local midnight; on a day
/// whose midnight does not exist, the first instant after it).
pub fn end_of_day(zone: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now.with_timezone(&zone).date_naive() + chrono::Days::new(1);
    let midnight = tomorrow.and_time(NaiveTime::MIN);
    (0..=4)
        .find_map(|h| {
            zone.from_local_datetime(&(midnight + Duration::hours(h)))
                .earliest()
        })
        .map_or(now + Duration::days(1), |t| t.with_timezone(&Utc))
}

/// Which promises a list reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromiseFilter {
    /// Of this conversation only.
    pub conversation: Option<ConversationId>,
    /// Of this owner only.
    pub owner: Option<AgentId>,
    /// In these states (all when empty).
    pub states: Vec<PromiseState>,
    /// Due at or after.
    pub due_from: Option<DateTime<Utc>>,
    /// Due before.
    pub due_before: Option<DateTime<Utc>>,
}

/// The position of a promise in a list: soonest due first, then by id.
pub type PromiseCursor = (DateTime<Utc>, PromiseId);

/// Storage of promises (reads; writes go through the change set).
pub trait PromiseStore: Send + Sync {
    /// One promise of a conversation.
    fn promise(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        id: PromiseId,
    ) -> impl Future<Output = Result<Option<Promise>, Error>> + Send;

    /// Promises matching `filter`, soonest due first, after `after`.
    fn promises(
        &self,
        tenant: &Tenant,
        filter: &PromiseFilter,
        after: Option<PromiseCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Promise>, Error>> + Send;
}

/// A promise as CreatePromise asks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPromise {
    /// The conversation.
    pub conversation: ConversationId,
    /// What.
    pub kind: PromiseKind,
    /// The owner; `None`: the caller's agent.
    pub owner: Option<AgentId>,
    /// The caller's principal.
    pub principal: String,
    /// Due.
    pub due_time: DateTime<Utc>,
    /// Whether the customer was told.
    pub customer_visible: bool,
    /// In words.
    pub description: String,
    /// Reminder notice, seconds; 0: none.
    pub reminder_lead_secs: i64,
}

/// A renegotiation as RenegotiatePromise asks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renegotiation {
    /// The new due time.
    pub due_time: DateTime<Utc>,
    /// A public message already sent in the conversation.
    pub message: Option<MessageId>,
    /// Or text to send now.
    pub message_text: String,
    /// The caller's principal (the sender of `message_text`).
    pub principal: String,
}

/// What KeepPromise, CancelPromise and RenegotiatePromise do to a promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromiseChange {
    /// Recorded as kept now.
    Keep,
    /// Withdrawn.
    Cancel,
    /// Its due time moved.
    Renegotiate(Renegotiation),
}

/// Who a list of promises is for, as ListPromises names the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Anyone's.
    Any,
    /// The caller's agent's.
    Me,
    /// This agent's.
    Agent(AgentId),
}

/// ListPromises as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromiseQuery {
    /// Of one conversation, or all.
    pub conversation: Option<ConversationId>,
    /// Whose.
    pub owner: Owner,
    /// The caller's principal (for [`Owner::Me`]).
    pub principal: String,
    /// States (all when empty).
    pub states: Vec<PromiseState>,
    /// Due at or after.
    pub due_from: Option<DateTime<Utc>>,
    /// Due before.
    pub due_before: Option<DateTime<Utc>>,
    /// Due before the end of the owner's today.
    pub due_today: bool,
}

fn check_due(due: DateTime<Utc>, now: DateTime<Utc>, field: &str, v: &mut Violations) {
    if due <= now {
        v.add(field, "must be in the future");
    }
}

impl<R: Repository, P: Customers, C: Clock> Conversations<R, P, C> {
    /// The agent acting as `principal`.
    async fn agent_of(&self, tenant: &Tenant, principal: &str) -> Result<Agent, Error> {
        self.repo()
            .managed_by_key(tenant, principal)
            .await?
            .ok_or_else(|| Error::NotAnAgent(principal.to_owned()))
    }

    /// The owner's business calendar, if the owner names one.
    async fn calendar_of(
        &self,
        tenant: &Tenant,
        owner: &Agent,
    ) -> Result<Option<BusinessCalendar>, Error> {
        let Some(id) = owner.business_calendar else {
            return Ok(None);
        };
        let Some(calendar) = self.repo().managed::<Calendar>(tenant, id.0).await? else {
            // Deleted since: the owner has no hours now.
            return Ok(None);
        };
        calendar
            .business()
            .map(Some)
            .map_err(|v| Error::Internal(format!("stored calendar invalid: {v:?}")))
    }

    /// When the owner of `p` is reminded of it, told at `now`.
    async fn reminder_for(
        &self,
        tenant: &Tenant,
        p: &Promise,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        if p.reminder_lead_secs == 0 {
            return Ok(None);
        }
        let owner: Option<Agent> = self.repo().managed(tenant, p.owner.0).await?;
        let calendar = match &owner {
            Some(o) => self.calendar_of(tenant, o).await?,
            None => None,
        };
        Ok(reminder_time(
            calendar.as_ref(),
            p.due_time,
            p.reminder_lead_secs,
            now,
        ))
    }

    /// Places again the pending reminders of `owner`'s open promises after
    /// the owner's hours changed (another calendar named, or the calendar
    /// edited): the lead time is working time, so new hours move it. A
    /// promise already reminded (no pending reminder) is left alone: the
    /// reminder is given once.
    pub(super) async fn remind_again(&self, tenant: &Tenant, owner: AgentId) -> Result<(), Error> {
        const PAGE: u32 = 200;
        let filter = PromiseFilter {
            owner: Some(owner),
            states: vec![PromiseState::Open],
            ..PromiseFilter::default()
        };
        let mut after = None;
        loop {
            let page = self.repo().promises(tenant, &filter, after, PAGE).await?;
            for p in page.iter().filter(|p| p.reminder_time.is_some()) {
                self.remind_again_one(tenant, p.clone()).await?;
            }
            if page.len() < PAGE as usize {
                return Ok(());
            }
            after = page.last().map(|p| (p.due_time, p.id));
        }
    }

    /// Moves the pending reminder of `p` to where the owner's hours put it
    /// now; on a concurrent change, again from the promise as it is then.
    async fn remind_again_one(&self, tenant: &Tenant, mut p: Promise) -> Result<(), Error> {
        for _ in 0..MAX_ATTEMPTS {
            if p.state != PromiseState::Open || p.reminder_time.is_none() {
                return Ok(());
            }
            let now = self.clock().now();
            let at = self.reminder_for(tenant, &p, now).await?;
            if at == p.reminder_time {
                return Ok(());
            }
            let mut next = p.bumped(now);
            next.reminder_time = at;
            let mut change = ChangeSet::new(tenant, now);
            change.promises.push(RowWrite::Update {
                value: next,
                expected_version: p.version,
            });
            match self.repo().commit(change).await {
                Ok(()) => return Ok(()),
                Err(rapport_usecase::CommitError::Other(clash)) => {
                    return Err(Error::from(clash));
                }
                Err(_) => p = self.promise(tenant, p.conversation, p.id).await?,
            }
        }
        Err(Error::Conflict)
    }

    /// `InUse` when conversation `id` holds an open promise.
    pub(super) async fn check_no_open_promise(
        &self,
        tenant: &Tenant,
        id: ConversationId,
    ) -> Result<(), Error> {
        let filter = PromiseFilter {
            conversation: Some(id),
            states: vec![PromiseState::Open],
            ..PromiseFilter::default()
        };
        match self
            .repo()
            .promises(tenant, &filter, None, 1)
            .await?
            .first()
        {
            Some(p) => Err(Error::InUse(format!("conversations/{id}"), p.name())),
            None => Ok(()),
        }
    }

    /// The promise `id` of `conversation`, or NotFound.
    pub async fn promise(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        id: PromiseId,
    ) -> Result<Promise, Error> {
        self.repo()
            .promise(tenant, conversation, id)
            .await?
            .ok_or_else(|| {
                Error::NotFound(
                    Kind::Promise,
                    format!("conversations/{conversation}/promises/{id}"),
                )
            })
    }

    /// Makes a promise in a conversation that is not closed.
    pub async fn make_promise(
        &self,
        tenant: &Tenant,
        new: NewPromise,
        idem: Option<Idempotency>,
    ) -> Result<Promise, Error> {
        let w = Write::new(self.repo(), tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            let now = self.clock().now();
            let mut v = Violations::default();
            check_due(new.due_time, now, "promise.due_time", &mut v);
            if new.description.chars().count() > MAX_DESCRIPTION {
                v.add("promise.description", "is at most 2000 characters");
            }
            if !(0..=MAX_REMINDER_LEAD_SECS).contains(&new.reminder_lead_secs) {
                v.add(
                    "promise.reminder_lead_time",
                    "must be between 0 and 30 days",
                );
            }
            let owner = match new.owner {
                None => Some(self.agent_of(tenant, &new.principal).await?),
                Some(id) => self.repo().managed::<Agent>(tenant, id.0).await?,
            };
            if owner.is_none() {
                v.add("promise.owner", "is no agent of this tenant");
            }
            v.check()?;
            let owner = owner.expect("checked");
            let calendar = self.calendar_of(tenant, &owner).await?;
            let mut p = Promise {
                id: PromiseId::generate(),
                conversation: new.conversation,
                owner: owner.id,
                kind: new.kind,
                description: new.description.trim().to_owned(),
                customer_visible: new.customer_visible,
                due_time: new.due_time,
                original_due_time: new.due_time,
                state: PromiseState::Open,
                keep_time: None,
                kept_on_time: false,
                break_time: None,
                cancel_time: None,
                renegotiation_count: 0,
                reminder_lead_secs: new.reminder_lead_secs,
                reminder_time: None,
                create_time: now,
                update_time: now,
                version: 1,
            };
            p.reminder_time =
                reminder_time(calendar.as_ref(), p.due_time, p.reminder_lead_secs, now);
            for _ in 0..MAX_ATTEMPTS {
                let c = self.conversation(tenant, new.conversation).await?;
                if c.state == State::Closed {
                    return Err(Error::InvalidTransition {
                        from: c.state,
                        action: "make a promise in",
                    });
                }
                let mut change = ChangeSet::new(tenant, now);
                // Made only in the conversation as read, not closed: a
                // close committed meanwhile moved its version.
                change.conversation_at = Some((c.id, c.version));
                change.promises.push(RowWrite::Insert(p.clone()));
                change
                    .events
                    .push(DomainEvent::Promise(PromiseEvent::Made(p.clone())));
                match self.commit_as(&w, change, p.id, p.clone()).await? {
                    Ok(p) => return Ok(p),
                    Err(Clash::Failed(Error::Conflict)) => continue,
                    Err(clash) => return Err(clash.into()),
                }
            }
            Err(w.exhausted())
        }
        .await;
        w.settle(result).await
    }

    /// Keeps, cancels or renegotiates promise `id` (KeepPromise,
    /// CancelPromise, RenegotiatePromise), guarded by its etag and version.
    pub async fn change_promise(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        id: PromiseId,
        action: PromiseChange,
        etag: Option<String>,
        idem: Option<Idempotency>,
    ) -> Result<Promise, Error> {
        let w = Write::new(self.repo(), tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            let sender = match &action {
                PromiseChange::Renegotiate(r) => {
                    self.check_renegotiation(tenant, conversation, r).await?
                }
                PromiseChange::Keep | PromiseChange::Cancel => None,
            };
            for _ in 0..MAX_ATTEMPTS {
                let current = self.promise(tenant, conversation, id).await?;
                if etag.as_ref().is_some_and(|e| *e != current.etag()) {
                    return Err(Error::EtagMismatch);
                }
                let now = self.clock().now();
                let (mut change, (next, event)) = match &action {
                    PromiseChange::Keep => (ChangeSet::new(tenant, now), current.keep(now)?),
                    PromiseChange::Cancel => (ChangeSet::new(tenant, now), current.cancel(now)?),
                    PromiseChange::Renegotiate(r) => {
                        self.renegotiated(tenant, &current, r, sender.as_ref(), now)
                            .await?
                    }
                };
                change.promises.push(RowWrite::Update {
                    value: next.clone(),
                    expected_version: current.version,
                });
                change.events.push(DomainEvent::Promise(event));
                match self.commit_as(&w, change, id, next).await? {
                    Ok(p) => return Ok(p),
                    Err(Clash::Failed(Error::Conflict)) => continue,
                    Err(clash) => return Err(clash.into()),
                }
            }
            Err(w.exhausted())
        }
        .await;
        w.settle(result).await
    }

    /// What a renegotiation asks that does not depend on the promise: a
    /// due time in the future, a message named or text (not both), the
    /// message a public one sent to the customer in this conversation; the
    /// agent sending the text, if any.
    async fn check_renegotiation(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        r: &Renegotiation,
    ) -> Result<Option<Agent>, Error> {
        let text = r.message_text.trim();
        let mut v = Violations::default();
        check_due(r.due_time, self.clock().now(), "due_time", &mut v);
        if r.message.is_some() && !text.is_empty() {
            v.add("message_text", "must be empty when `message` is given");
        }
        if text.chars().count() > super::rules::MAX_TEXT {
            v.add("message_text", "is at most 100000 characters");
        }
        v.check()?;
        if let Some(m) = r.message {
            let message = self.message(tenant, conversation, m).await?;
            if message.direction != Direction::Outbound || message.visibility != Visibility::Public
            {
                return Err(Violations::one(
                    "message",
                    "must be a public message sent to the customer",
                )
                .into());
            }
        }
        if text.is_empty() {
            Ok(None)
        } else {
            Some(self.agent_of(tenant, &r.principal).await).transpose()
        }
    }

    /// `current` renegotiated at `now`: the promise as it becomes, its
    /// event, and the change holding the message `sender` sends (a promise
    /// the customer sees needs one telling them, or a message named).
    async fn renegotiated(
        &self,
        tenant: &Tenant,
        current: &Promise,
        r: &Renegotiation,
        sender: Option<&Agent>,
        now: DateTime<Utc>,
    ) -> Result<(ChangeSet, (Promise, PromiseEvent)), Error> {
        if current.state != PromiseState::Open {
            return Err(current.refuse("renegotiate"));
        }
        if current.customer_visible && r.message.is_none() && sender.is_none() {
            return Err(Error::CustomerMessageRequired);
        }
        let conversation = current.conversation;
        let (change, sent) = match sender {
            Some(agent) => {
                let c = self.conversation(tenant, conversation).await?;
                let out = Outbound {
                    conversation,
                    principal: r.principal.clone(),
                    visibility: Visibility::Public,
                    channel: None,
                    purpose: Purpose::Service,
                    subject: String::new(),
                    text: r.message_text.trim().to_owned(),
                    html: String::new(),
                    attachments: Vec::new(),
                    call: None,
                };
                let (change, m) = self.outbound_change(tenant, &out, agent, &c, now).await?;
                (change, Some(m.id))
            }
            None => (ChangeSet::new(tenant, now), r.message),
        };
        let mut next = current.bumped(now);
        next.due_time = r.due_time;
        next.renegotiation_count += 1;
        next.reminder_time = self.reminder_for(tenant, &next, now).await?;
        let event = PromiseEvent::Renegotiated {
            promise: next.clone(),
            previous_due_time: current.due_time,
            message: sent,
        };
        Ok((change, (next, event)))
    }

    /// A page of promises, soonest due first, and the next page's cursor.
    /// "Due today" ends at the owner's midnight: the zone of the owner's
    /// business calendar, else the service's default zone.
    pub async fn promises(
        &self,
        tenant: &Tenant,
        q: &PromiseQuery,
        after: Option<PromiseCursor>,
        limit: u32,
    ) -> Result<(Vec<Promise>, Option<PromiseCursor>), Error> {
        let owner = match q.owner {
            Owner::Any => None,
            Owner::Me => Some(self.agent_of(tenant, &q.principal).await?),
            Owner::Agent(id) => Some(
                self.repo()
                    .managed::<Agent>(tenant, id.0)
                    .await?
                    .ok_or_else(|| Error::NotFound(Kind::Agent, format!("agents/{id}")))?,
            ),
        };
        let mut due_before = q.due_before;
        if q.due_today {
            let Some(o) = &owner else {
                return Err(Violations::one("owner", "is required with `due_today`").into());
            };
            let zone = match self.calendar_of(tenant, o).await? {
                Some(cal) => cal.zone(),
                None => self.default_zone(),
            };
            let end = end_of_day(zone, self.clock().now());
            due_before = Some(due_before.map_or(end, |b| b.min(end)));
        }
        if let Some(c) = q.conversation {
            // NotFound for a conversation that does not exist, not an
            // empty list.
            self.conversation(tenant, c).await?;
        }
        let filter = PromiseFilter {
            conversation: q.conversation,
            owner: owner.map(|o| o.id),
            states: q.states.clone(),
            due_from: q.due_from,
            due_before,
        };
        let rows = self
            .repo()
            .promises(tenant, &filter, after, limit + 1)
            .await?;
        Ok(rapport_usecase::page_of(rows, limit, |p| {
            (p.due_time, p.id)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{CalendarSpec, WeeklyHours};
    use chrono::Weekday;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekdays_9_to_5(zone: &str) -> BusinessCalendar {
        let weekly_hours = [
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
        ]
        .into_iter()
        .map(|day| WeeklyHours {
            day,
            start_seconds: 9 * 3600,
            end_seconds: 17 * 3600,
        })
        .collect();
        BusinessCalendar::new(&CalendarSpec {
            time_zone: zone.into(),
            always_open: false,
            weekly_hours,
            holidays: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn a_reminder_falls_inside_the_owners_hours() {
        let cal = weekdays_9_to_5("Europe/Berlin");
        // Monday 7 December 2026, 10:00 Berlin (09:00 UTC).
        let due = utc("2026-12-07T09:00:00Z");
        let made = utc("2026-12-03T09:00:00Z");
        // Two hours of working time before: one Monday morning, one on
        // Friday afternoon → Friday 16:00 Berlin.
        assert_eq!(
            reminder_time(Some(&cal), due, 2 * 3600, made),
            Some(utc("2026-12-04T15:00:00Z"))
        );
        // Half an hour: Monday 09:30.
        assert_eq!(
            reminder_time(Some(&cal), due, 1800, made),
            Some(utc("2026-12-07T08:30:00Z"))
        );
        // Without hours: plain time.
        assert_eq!(
            reminder_time(None, due, 2 * 3600, made),
            Some(utc("2026-12-07T07:00:00Z"))
        );
        // Made on Sunday, too late for Friday: Monday's opening.
        let sunday = utc("2026-12-06T12:00:00Z");
        assert_eq!(
            reminder_time(Some(&cal), due, 2 * 3600, sunday),
            Some(utc("2026-12-07T08:00:00Z"))
        );
        // Made at 09:30 Monday: now.
        let late = utc("2026-12-07T08:30:00Z");
        assert_eq!(reminder_time(Some(&cal), due, 2 * 3600, late), Some(late));
        // No lead, no reminder.
        assert_eq!(reminder_time(Some(&cal), due, 0, made), None);
    }

    #[test]
    fn the_day_ends_at_the_zones_midnight() {
        // 23:30 UTC on 1 December is already 2 December in Berlin.
        let now = utc("2026-12-01T23:30:00Z");
        assert_eq!(
            end_of_day(chrono_tz::Europe::Berlin, now),
            utc("2026-12-02T23:00:00Z")
        );
        assert_eq!(
            end_of_day(chrono_tz::America::New_York, now),
            utc("2026-12-02T05:00:00Z")
        );
        assert_eq!(end_of_day(chrono_tz::UTC, now), utc("2026-12-02T00:00:00Z"));
    }

    #[test]
    fn a_promise_breaks_once_and_may_be_kept_late() {
        let due = utc("2026-12-07T09:00:00Z");
        let p = Promise {
            id: PromiseId::generate(),
            conversation: ConversationId::generate(),
            owner: AgentId::generate(),
            kind: PromiseKind::Callback,
            description: String::new(),
            customer_visible: true,
            due_time: due,
            original_due_time: due,
            state: PromiseState::Open,
            keep_time: None,
            kept_on_time: false,
            break_time: None,
            cancel_time: None,
            renegotiation_count: 0,
            reminder_lead_secs: 0,
            reminder_time: None,
            create_time: due,
            update_time: due,
            version: 1,
        };
        let (kept, _) = p.keep(due).unwrap();
        assert!(kept.kept_on_time);
        let (broken, _) = p.break_at(due).unwrap();
        assert_eq!(broken.state, PromiseState::Broken);
        assert!(broken.break_at(due).is_none());
        assert!(p.break_at(due - Duration::hours(1)).is_none());
        let (late, _) = broken.keep(due + Duration::minutes(1)).unwrap();
        assert!(!late.kept_on_time);
        assert_eq!(late.break_time, Some(due));
        assert!(late.cancel(due).is_err());
    }
}
