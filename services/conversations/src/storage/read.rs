//! Reads: every query filters by tenant.
use rapport_store::{Page, micros, tenant_one, tenant_page};
use sea_orm::{
    ColumnTrait, ConnectionTrait as _, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
};

use super::{SqlRepository, entities::*, rows::*};
use crate::domain::{
    Error,
    calendars::CalendarId,
    error::Kind,
    managed::Managed,
    model::*,
    repository::{CalendarUsers, ChangeSet, CommitError, ConversationFilter, Repository},
    sla_apply::calendar_of_name,
};

/// The states of a conversation someone still works on.
fn active() -> [&'static str; 3] {
    [
        State::Open.as_str(),
        State::Pending.as_str(),
        State::Snoozed.as_str(),
    ]
}

impl Repository for SqlRepository {
    async fn metric_aggregates(
        &self,
        tenant: &Tenant,
        scope: &crate::domain::metrics::Scope,
    ) -> Result<crate::domain::metrics::Aggregates, Error> {
        self.aggregates(tenant, scope).await
    }

    async fn inbox(&self, tenant: &Tenant, id: InboxId) -> Result<Option<Inbox>, Error> {
        let select = inboxes::Entity::find().filter(inboxes::Column::Id.eq(id.to_string()));
        tenant_one(tenant, select, &self.db.reader, to_inbox).await
    }

    async fn inboxes(
        &self,
        tenant: &Tenant,
        after: Option<InboxId>,
        limit: u32,
    ) -> Result<Vec<Inbox>, Error> {
        let select = inboxes::Entity::find();
        let page = Page::after(after, limit);
        tenant_page(tenant, select, page, &self.db.reader, to_inbox).await
    }

    async fn managed<T: Managed>(
        &self,
        tenant: &Tenant,
        id: uuid::Uuid,
    ) -> Result<Option<T>, Error> {
        let select = managed::Entity::find()
            .filter(managed::Column::Id.eq(id.to_string()))
            .filter(managed::Column::Kind.eq(kind_name(T::KIND)));
        tenant_one(tenant, select, &self.db.reader, to_managed).await
    }

    async fn managed_by_key<T: Managed>(
        &self,
        tenant: &Tenant,
        key: &str,
    ) -> Result<Option<T>, Error> {
        let select = managed::Entity::find()
            .filter(managed::Column::Key.eq(key))
            .filter(managed::Column::Kind.eq(kind_name(T::KIND)));
        tenant_one(tenant, select, &self.db.reader, to_managed).await
    }

    async fn managed_list<T: Managed>(
        &self,
        tenant: &Tenant,
        after: Option<uuid::Uuid>,
        limit: u32,
    ) -> Result<Vec<T>, Error> {
        let select = managed::Entity::find().filter(managed::Column::Kind.eq(kind_name(T::KIND)));
        let page = Page::after(after, limit);
        tenant_page(tenant, select, page, &self.db.reader, to_managed).await
    }

    async fn active_count(&self, tenant: &Tenant, agent: AgentId) -> Result<u64, Error> {
        use conversations::Column as C;
        use sea_orm::PaginatorTrait as _;
        conversations::Entity::find()
            .filter(C::Tenant.eq(tenant.as_str()))
            .filter(C::Assignee.eq(agent.to_string()))
            .filter(C::State.is_in(active()))
            .count(&self.db.reader)
            .await
            .map_err(db_err)
    }

    async fn conversation(
        &self,
        tenant: &Tenant,
        id: ConversationId,
    ) -> Result<Option<Conversation>, Error> {
        let select =
            conversations::Entity::find().filter(conversations::Column::Id.eq(id.to_string()));
        tenant_one(tenant, select, &self.db.reader, to_conversation).await
    }

    async fn conversation_by_case_number(
        &self,
        tenant: &Tenant,
        case_number: i64,
    ) -> Result<Option<Conversation>, Error> {
        let select =
            conversations::Entity::find().filter(conversations::Column::CaseNumber.eq(case_number));
        tenant_one(tenant, select, &self.db.reader, to_conversation).await
    }

    async fn conversations(
        &self,
        tenant: &Tenant,
        f: &ConversationFilter,
        before: Option<ConversationId>,
        limit: u32,
    ) -> Result<Vec<Conversation>, Error> {
        use conversations::Column as C;
        let mut q = conversations::Entity::find();
        if let Some(customer) = f.customer {
            q = q.filter(C::Customer.eq(customer.to_string()));
        }
        if !f.states.is_empty() {
            q = q.filter(C::State.is_in(f.states.iter().map(|s| s.as_str())));
        }
        if let Some(assignee) = f.assignee {
            q = q.filter(C::Assignee.eq(assignee.map(|a| a.to_string()).unwrap_or_default()));
        }
        if let Some(team) = f.team {
            q = q.filter(C::Team.eq(team.to_string()));
        }
        if !f.priorities.is_empty() {
            q = q.filter(C::Priority.is_in(f.priorities.iter().map(|p| p.as_str())));
        }
        if let Some(inbox) = f.inbox {
            q = q.filter(C::InboxId.eq(inbox.to_string()));
        }
        if let Some(from) = f.create_from {
            q = q.filter(C::CreateTime.gte(micros(from)));
        }
        if let Some(to) = f.create_to {
            q = q.filter(C::CreateTime.lt(micros(to)));
        }
        let page = Page::before(before, limit);
        tenant_page(tenant, q, page, &self.db.reader, to_conversation).await
    }

    async fn thread(
        &self,
        tenant: &Tenant,
        inbox: InboxId,
        customer: CustomerId,
    ) -> Result<Option<ConversationId>, Error> {
        let row = threads::Entity::find()
            .filter(threads::Column::Tenant.eq(tenant.as_str()))
            .filter(threads::Column::InboxId.eq(inbox.to_string()))
            .filter(threads::Column::Customer.eq(customer.to_string()))
            .one(&self.db.reader)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            uuid::Uuid::parse_str(&r.conversation_id)
                .map(ConversationId)
                .map_err(|_| {
                    Error::Internal(format!("stored thread {} is unreadable", r.conversation_id))
                })
        })
        .transpose()
    }

    async fn latest_active(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
    ) -> Result<Option<Conversation>, Error> {
        use conversations::Column as C;
        let select = conversations::Entity::find()
            .filter(C::Customer.eq(customer.to_string()))
            .filter(C::State.is_in(active()))
            .order_by_desc(C::Id);
        tenant_one(tenant, select, &self.db.reader, to_conversation).await
    }

    async fn pinned_to_calendar(
        &self,
        tenant: &Tenant,
        calendar: uuid::Uuid,
        after: Option<ConversationId>,
        limit: u32,
    ) -> Result<Vec<Conversation>, Error> {
        use conversations::Column as C;
        // Rare admin paths (a calendar's update or delete): a scan of the
        // tenant's active conversations' pinned copies (JSON), which name
        // calendars by id.
        let select = conversations::Entity::find()
            .filter(C::State.is_in(active()))
            .filter(C::AppliedSla.like(format!("%{calendar}%")));
        let page = Page::after(after, limit);
        tenant_page(tenant, select, page, &self.db.reader, to_conversation).await
    }

    async fn calendar_users(
        &self,
        tenant: &Tenant,
        calendar: CalendarId,
    ) -> Result<CalendarUsers, Error> {
        // Inboxes and agents name their calendar only inside their JSON
        // documents, so the database narrows by text and each candidate is
        // read to keep those whose calendar it is. An inbox holds the name
        // as it was given (any form of the id that parses), so inboxes are
        // narrowed to those naming a calendar at all; an agent's is always
        // the id's canonical text. Rare admin path: a calendar's update.
        let inboxes = inboxes::Entity::find()
            .filter(inboxes::Column::Tenant.eq(tenant.as_str()))
            .filter(inboxes::Column::Document.like("%businessCalendars/%"))
            .order_by_asc(inboxes::Column::Id)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?;
        let agents = managed::Entity::find()
            .filter(managed::Column::Tenant.eq(tenant.as_str()))
            .filter(managed::Column::Kind.eq(kind_name(Kind::Agent)))
            .filter(managed::Column::Document.like(format!("%{calendar}%")))
            .order_by_asc(managed::Column::Id)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?;
        let mut users = CalendarUsers::default();
        for row in inboxes {
            let inbox = to_inbox(row)?;
            if calendar_of_name(&inbox.business_calendar) == Some(calendar) {
                users.inboxes.push(inbox.id);
            }
        }
        for row in agents {
            let agent: Agent = to_managed(row)?;
            if agent.business_calendar == Some(calendar) {
                users.agents.push(agent.id);
            }
        }
        Ok(users)
    }

    async fn message(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        id: MessageId,
    ) -> Result<Option<Message>, Error> {
        let select = messages::Entity::find()
            .filter(messages::Column::Id.eq(id.to_string()))
            .filter(messages::Column::ConversationId.eq(conversation.to_string()));
        tenant_one(tenant, select, &self.db.reader, to_message).await
    }

    async fn message_by_external_id(
        &self,
        tenant: &Tenant,
        inbox: InboxId,
        external_id: &str,
    ) -> Result<Option<Message>, Error> {
        let select = messages::Entity::find()
            .filter(messages::Column::ExternalId.eq(external_id))
            .filter(messages::Column::InboxId.eq(inbox.to_string()));
        tenant_one(tenant, select, &self.db.reader, to_message).await
    }

    async fn external_ids(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        limit: u32,
    ) -> Result<Vec<String>, Error> {
        use messages::Column as M;
        let mut ids: Vec<String> = messages::Entity::find()
            .select_only()
            .column(M::ExternalId)
            .filter(M::ConversationId.eq(conversation.to_string()))
            .filter(M::Tenant.eq(tenant.as_str()))
            .filter(M::ExternalId.is_not_null())
            .order_by_desc(M::Id)
            .limit(u64::from(limit))
            .into_tuple::<Option<String>>()
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .flatten()
            .collect();
        ids.reverse();
        Ok(ids)
    }

    async fn messages(
        &self,
        tenant: &Tenant,
        conversation: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let select = messages::Entity::find()
            .filter(messages::Column::ConversationId.eq(conversation.to_string()));
        let page = Page::after(after, limit);
        tenant_page(tenant, select, page, &self.db.reader, to_message).await
    }

    async fn history(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<Message>, Error> {
        let select =
            messages::Entity::find().filter(messages::Column::Customer.eq(customer.to_string()));
        let page = Page::before(before, limit);
        tenant_page(tenant, select, page, &self.db.reader, to_message).await
    }

    async fn next_case_number(&self, tenant: &Tenant) -> Result<i64, Error> {
        // One statement, atomic on both databases: the row lock (PostgreSQL)
        // or the one writer (SQLite) orders concurrent creates, and the
        // number is committed before any conversation uses it, so it is never
        // given twice (a sequence: a create that then loses its race leaves a
        // gap, never a reuse).
        let backend = self.db.writer.get_database_backend();
        let placeholder = match backend {
            sea_orm::DatabaseBackend::Postgres => "$1",
            _ => "?",
        };
        let sql = format!(
            "INSERT INTO conv_case_numbers (tenant, last) VALUES ({placeholder}, 1) \
             ON CONFLICT (tenant) DO UPDATE SET last = conv_case_numbers.last + 1 \
             RETURNING last"
        );
        let row = self
            .db
            .writer
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                &sql,
                [tenant.as_str().into()],
            ))
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::Internal("the case number counter returned nothing".into()))?;
        row.try_get::<i64>("", "last").map_err(db_err)
    }

    async fn commit(&self, change: ChangeSet) -> Result<(), CommitError> {
        self.write(change).await
    }
}
