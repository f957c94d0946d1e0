//! Use-cases of teams, agents and canned responses (written once over
//! [`Managed`]), assignment and the rendering of canned responses.
use std::collections::BTreeMap;

use rapport_usecase::{Clock, Idempotency, Violations, Write, page_of, write::MAX_ATTEMPTS};

use super::{
    error::{Error, Kind},
    managed::{Managed, pick_variant},
    model::*,
    ports::Customers,
    repository::*,
    rules,
    service::Conversations,
    template,
};

/// What RenderCannedResponse asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderRequest {
    /// The canned response.
    pub id: Option<CannedResponseId>,
    /// The conversation it answers.
    pub conversation: Option<ConversationId>,
    /// The agent sending it; `None`: the agent acting as `principal`.
    pub agent: Option<AgentId>,
    /// The caller's principal.
    pub principal: String,
    /// Locale of the variant; empty: the agent's, else the customer's.
    pub locale: String,
    /// Channel of the variant; `None`: the conversation's latest.
    pub channel: Option<Channel>,
    /// Values given by the caller (they win).
    pub variables: BTreeMap<String, String>,
}

/// What RenderCannedResponse answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// The variant's locale; empty: the default body.
    pub locale: String,
    /// Variables without a value.
    pub missing: Vec<String>,
}

fn not_found<T: Managed>(id: uuid::Uuid) -> Error {
    let collection = match T::KIND {
        Kind::Team => "teams",
        Kind::Agent => "agents",
        _ => "cannedResponses",
    };
    Error::NotFound(T::KIND, format!("{collection}/{id}"))
}

impl<R: Repository, P: Customers, C: Clock> Conversations<R, P, C> {
    /// Creates a team, an agent or a canned response.
    pub async fn create_managed<T: Managed>(
        &self,
        tenant: &Tenant,
        mut value: T,
        idem: Option<Idempotency>,
    ) -> Result<T, Error> {
        let w = Write::new(self.repo(), tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            let now = self.clock().now();
            value.stamp(Some(uuid::Uuid::now_v7()), 1, now, now);
            let mut v = Violations::default();
            value.check(T::FIELD, &mut v);
            v.check()?;
            self.check_references(tenant, &value).await?;
            let mut change = ChangeSet::new(tenant, now);
            change
                .managed
                .push(RowWrite::Insert(ManagedRow::of(&value)?));
            match self.commit_as(&w, change, value.id(), value).await? {
                Ok(t) => Ok(t),
                Err(clash) => Err(clash.into()),
            }
        }
        .await;
        w.settle(result).await
    }

    /// One team, agent or canned response, or NotFound.
    pub async fn managed<T: Managed>(&self, tenant: &Tenant, id: uuid::Uuid) -> Result<T, Error> {
        self.repo()
            .managed(tenant, id)
            .await?
            .ok_or_else(|| not_found::<T>(id))
    }

    /// A page of teams, agents or canned responses.
    pub async fn managed_list<T: Managed>(
        &self,
        tenant: &Tenant,
        after: Option<uuid::Uuid>,
        limit: u32,
    ) -> Result<(Vec<T>, Option<uuid::Uuid>), Error> {
        let rows = self.repo().managed_list(tenant, after, limit + 1).await?;
        Ok(page_of(rows, limit, |t: &T| t.id()))
    }

    /// Updates a team, an agent or a canned response by `patch` (the fields
    /// the request's mask names).
    pub async fn update_managed<T: Managed>(
        &self,
        tenant: &Tenant,
        id: uuid::Uuid,
        etag: Option<String>,
        idem: Option<Idempotency>,
        patch: impl Fn(&T) -> T,
    ) -> Result<T, Error> {
        let w = Write::new(self.repo(), tenant, idem.as_ref());
        let result = async {
            if let Some(prior) = w.replay().await? {
                return Ok(prior);
            }
            for _ in 0..MAX_ATTEMPTS {
                let current: T = self.managed(tenant, id).await?;
                if etag.as_ref().is_some_and(|e| *e != current.etag()) {
                    return Err(Error::EtagMismatch);
                }
                let mut next = patch(&current);
                let (create, _) = current.times();
                let now = self.clock().now();
                next.stamp(None, current.version(), create, current.times().1);
                if next == current {
                    return Ok(current);
                }
                next.stamp(None, current.version() + 1, create, now);
                let mut v = Violations::default();
                next.check(T::FIELD, &mut v);
                v.check()?;
                self.check_references(tenant, &next).await?;
                let mut change = ChangeSet::new(tenant, now);
                change.managed.push(RowWrite::Update {
                    value: ManagedRow::of(&next)?,
                    expected_version: current.version(),
                });
                match self.commit_as(&w, change, id, next).await? {
                    Ok(t) => return Ok(t),
                    Err(Clash::Failed(Error::Conflict)) => continue,
                    Err(clash) => return Err(clash.into()),
                }
            }
            Err(w.exhausted())
        }
        .await;
        let updated = w.settle(result).await?;
        // After the commit, so a retry of the request (answered from its
        // stored result) reschedules again.
        if T::KIND == Kind::BusinessCalendar {
            self.reschedule_for_calendar(tenant, id).await?;
        }
        // An agent's calendar places the reminders of its promises.
        if T::KIND == Kind::Agent {
            self.remind_again(tenant, AgentId(id)).await?;
        }
        Ok(updated)
    }

    /// The teams and calendars a resource names must exist.
    async fn check_references<T: Managed>(&self, tenant: &Tenant, value: &T) -> Result<(), Error> {
        let mut v = Violations::default();
        for (field, team) in value.teams() {
            if self.repo().managed::<Team>(tenant, team.0).await?.is_none() {
                v.add(
                    format!("{}.{field}", T::FIELD),
                    format!("teams/{team} does not exist"),
                );
            }
        }
        for (field, id) in value.calendars() {
            if self
                .repo()
                .managed::<super::calendars::Calendar>(tenant, id)
                .await?
                .is_none()
            {
                v.add(
                    format!("{}.{field}", T::FIELD),
                    format!("businessCalendars/{id} does not exist"),
                );
            }
        }
        Ok(v.check()?)
    }

    /// Assigns conversation `id` to an agent and/or a team (both `None`:
    /// unassigns). A team alone whose auto-assignment is on gets the
    /// available agent of it with capacity and the fewest active
    /// conversations.
    pub async fn assign(
        &self,
        tenant: &Tenant,
        id: ConversationId,
        assignee: Option<AgentId>,
        team: Option<TeamId>,
        etag: Option<String>,
        idem: Option<Idempotency>,
    ) -> Result<Conversation, Error> {
        let mut v = Violations::default();
        if let Some(a) = assignee
            && self.repo().managed::<Agent>(tenant, a.0).await?.is_none()
        {
            v.add("assignee", format!("agents/{a} does not exist"));
        }
        let mut auto = None;
        if let Some(t) = team {
            match self.repo().managed::<Team>(tenant, t.0).await? {
                None => v.add("team", format!("teams/{t} does not exist")),
                Some(team) if assignee.is_none() && team.auto_assign => {
                    auto = self.pick_agent(tenant, team.id).await?;
                }
                Some(_) => {}
            }
        }
        v.check()?;
        let chosen = assignee.or(auto);
        // A hand-off from a bot (to a human agent or a team): the bot
        // assigned now, when a human (or no agent) takes over.
        let mut bot = None;
        if let Some(current) = self.repo().conversation(tenant, id).await?
            && let Some(a) = current.assignee
            && let Some(agent) = self.repo().managed::<Agent>(tenant, a.0).await?
            && agent.kind == AgentKind::Bot
        {
            let to_human = match chosen {
                Some(h) => self
                    .repo()
                    .managed::<Agent>(tenant, h.0)
                    .await?
                    .is_some_and(|h| h.kind == AgentKind::Human),
                None => team.is_some(),
            };
            bot = to_human.then_some(a);
        }
        self.change_conversation(tenant, id, etag, idem, |c, now| {
            Ok(rules::assign(c, chosen, team, auto.is_some(), bot, now))
        })
        .await
    }

    /// The available agent of `team` with capacity left and the fewest
    /// active conversations (ties: the oldest agent).
    async fn pick_agent(&self, tenant: &Tenant, team: TeamId) -> Result<Option<AgentId>, Error> {
        let mut best: Option<(u64, AgentId)> = None;
        let mut after = None;
        loop {
            let page: Vec<Agent> = self.repo().managed_list(tenant, after, 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.0);
            for agent in page
                .iter()
                .filter(|a| a.teams.contains(&team) && a.availability == Availability::Available)
            {
                let load = self.repo().active_count(tenant, agent.id).await?;
                let room = agent.capacity == 0 || load < u64::try_from(agent.capacity).unwrap_or(0);
                if room && best.is_none_or(|(b, _)| load < b) {
                    best = Some((load, agent.id));
                }
            }
            if page.len() < 500 {
                break;
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    /// Renders a canned response for a conversation and an agent.
    pub async fn render(&self, tenant: &Tenant, req: RenderRequest) -> Result<Rendered, Error> {
        let id = req
            .id
            .ok_or_else(|| Error::Internal("no canned response".into()))?;
        let canned: CannedResponse = self.managed(tenant, id.0).await?;
        let agent: Option<Agent> = match req.agent {
            Some(a) => Some(self.managed(tenant, a.0).await?),
            None => self.repo().managed_by_key(tenant, &req.principal).await?,
        };
        let mut values = BTreeMap::new();
        let mut locale = req.locale.clone();
        let mut channel = req.channel;
        if let Some(c) = req.conversation {
            let c = self.conversation(tenant, c).await?;
            values.insert("case_number".to_owned(), c.case_number.to_string());
            values.insert("conversation.subject".to_owned(), c.subject.clone());
            if let Ok(inbox) = self.inbox(tenant, c.inbox).await {
                values.insert("inbox.address".to_owned(), inbox.address);
            }
            channel = channel.or(c.channels.last().copied());
            let facts = self.customers().facts(tenant, c.customer).await?;
            values.insert("customer.given_name".to_owned(), facts.given_name);
            values.insert("customer.family_name".to_owned(), facts.family_name);
            values.insert("customer.display_name".to_owned(), facts.display_name);
            if locale.is_empty() {
                locale = facts.locale;
            }
        }
        if let Some(a) = &agent {
            values.insert("agent.display_name".to_owned(), a.display_name.clone());
            if locale.is_empty() {
                locale.clone_from(&a.locale);
            }
        }
        values.extend(req.variables);
        let (body, used) = match pick_variant(&canned, &locale, channel) {
            Some(v) => (v.body.as_str(), v.locale.clone()),
            None => (canned.body.as_str(), String::new()),
        };
        let (text, missing) = template::render(body, &values);
        Ok(Rendered {
            text,
            locale: used,
            missing,
        })
    }
}
