//! Rows ⇄ domain values, and database errors as domain errors. Each
//! resource is a JSON document beside the columns queries filter on.
use rapport_store::micros;
use sea_orm::{ActiveValue::Set, DbErr};
use serde::{Serialize, de::DeserializeOwned};

use super::entities::*;
use crate::domain::{
    Error,
    error::Kind,
    managed::Managed,
    model::*,
    repository::{ManagedRow, MetricFact},
    sla::Metric,
};

pub(super) fn db_err(e: DbErr) -> Error {
    db_error(&e)
}

pub(super) fn db_error(e: &DbErr) -> Error {
    rapport_store::to_error(e)
}

pub(super) fn document<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("encoding a row: {e}")))
}

fn read<T: DeserializeOwned>(what: &str, id: &str, document: &str) -> Result<T, Error> {
    serde_json::from_str(document)
        .map_err(|_| Error::Internal(format!("stored {what} {id} is unreadable")))
}

fn opt(id: Option<impl ToString>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

pub(super) fn inbox_row(tenant: &Tenant, i: &Inbox) -> Result<inboxes::ActiveModel, Error> {
    Ok(inboxes::ActiveModel {
        tenant: Set(tenant.to_string()),
        id: Set(i.id.to_string()),
        version: Set(i.version),
        channel: Set(i.channel.as_str().to_owned()),
        provider: Set(i.provider.clone()),
        address: Set(i.address.clone()),
        document: Set(document(i)?),
        create_time: Set(micros(i.create_time)),
        update_time: Set(micros(i.update_time)),
    })
}

pub(super) fn to_inbox(row: inboxes::Model) -> Result<Inbox, Error> {
    read("inbox", &row.id, &row.document)
}

pub(super) fn conversation_row(
    tenant: &Tenant,
    c: &Conversation,
) -> Result<conversations::ActiveModel, Error> {
    Ok(conversations::ActiveModel {
        tenant: Set(tenant.to_string()),
        id: Set(c.id.to_string()),
        version: Set(c.version),
        case_number: Set(c.case_number),
        customer: Set(c.customer.to_string()),
        inbox_id: Set(c.inbox.to_string()),
        state: Set(c.state.as_str().to_owned()),
        priority: Set(c.priority.as_str().to_owned()),
        assignee: Set(opt(c.assignee)),
        team: Set(opt(c.team)),
        // The pinned SLA has its own column.
        document: Set(document(&Conversation {
            applied_sla: None,
            ..c.clone()
        })?),
        create_time: Set(micros(c.create_time)),
        update_time: Set(micros(c.update_time)),
        last_message_time: Set(micros(c.last_message_time)),
        message_count: Set(i64::from(c.message_count)),
        source: Set(Some(c.source.clone()).filter(|s| !s.is_empty())),
        applied_sla: Set(c.applied_sla.as_ref().map(document).transpose()?),
    })
}

pub(super) fn to_conversation(row: conversations::Model) -> Result<Conversation, Error> {
    let mut c: Conversation = read("conversation", &row.id, &row.document)?;
    // Kept by increments in their columns (see `write`).
    c.message_count = i32::try_from(row.message_count).unwrap_or(i32::MAX);
    c.last_message_time = rapport_store::from_micros(row.last_message_time);
    c.applied_sla = match &row.applied_sla {
        Some(json) => Some(read("applied SLA", &row.id, json)?),
        None => None,
    };
    Ok(c)
}

pub(super) fn message_row(tenant: &Tenant, m: &Message) -> Result<messages::ActiveModel, Error> {
    Ok(messages::ActiveModel {
        tenant: Set(tenant.to_string()),
        id: Set(m.id.to_string()),
        conversation_id: Set(m.conversation.to_string()),
        inbox_id: Set(m.inbox.to_string()),
        customer: Set(m.customer.to_string()),
        external_id: Set(m.external_id.clone()),
        document: Set(document(m)?),
        create_time: Set(micros(m.create_time)),
    })
}

pub(super) fn to_message(row: messages::Model) -> Result<Message, Error> {
    let mut m: Message = read("message", &row.id, &row.document)?;
    // The column is authoritative: a merge of customers re-points every
    // message of the merged-away customer with one statement.
    if let Ok(customer) = uuid::Uuid::parse_str(&row.customer) {
        m.customer = CustomerId(customer);
    }
    Ok(m)
}

/// The stored name of a managed kind.
pub(super) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Team => "team",
        Kind::Agent => "agent",
        Kind::CannedResponse => "canned_response",
        Kind::BusinessCalendar => "business_calendar",
        Kind::SlaPolicy => "sla_policy",
        // Not managed resources; never stored in this table.
        Kind::Inbox | Kind::Conversation | Kind::Message | Kind::Promise => "other",
    }
}

pub(super) fn managed_row(tenant: &Tenant, r: &ManagedRow) -> managed::ActiveModel {
    managed::ActiveModel {
        tenant: Set(tenant.to_string()),
        id: Set(r.id.to_string()),
        version: Set(r.version),
        kind: Set(kind_name(r.kind).to_owned()),
        key: Set(r.key.clone()),
        document: Set(r.document.clone()),
        create_time: Set(micros(r.create_time)),
        update_time: Set(micros(r.update_time)),
    }
}

pub(super) fn to_managed<T: Managed>(row: managed::Model) -> Result<T, Error> {
    read(kind_name(T::KIND), &row.id, &row.document)
}

/// The stored name of a metric.
pub(super) fn metric_name(m: Metric) -> &'static str {
    match m {
        Metric::FirstResponse => "first_response",
        Metric::NextResponse => "next_response",
        Metric::PeriodicUpdate => "periodic_update",
        Metric::Resolution => "resolution",
    }
}

/// The metric of a stored name.
pub(super) fn metric_of(name: &str) -> Option<Metric> {
    [
        Metric::FirstResponse,
        Metric::NextResponse,
        Metric::PeriodicUpdate,
        Metric::Resolution,
    ]
    .into_iter()
    .find(|m| metric_name(*m) == name)
}

pub(super) fn metric_fact_model(tenant: &Tenant, f: &MetricFact) -> metric_facts::Model {
    metric_facts::Model {
        tenant: tenant.to_string(),
        conversation_id: f.conversation.to_string(),
        metric: f.metric.as_str().to_owned(),
        cycle: i32::try_from(f.cycle).unwrap_or(i32::MAX),
        start_time: micros(f.start),
        stop_time: micros(f.stop),
        calendar_seconds: f.calendar_seconds,
        business_seconds: f.business_seconds,
        met: f.met,
        target_seconds: f.target_seconds,
        agent: opt(f.agent),
        team: opt(f.team),
        channel: f.channel.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        inbox_id: f.inbox.to_string(),
        priority: f.priority.as_str().to_owned(),
        interaction_type: f
            .interaction_type
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        policy: opt(f.policy.map(|(p, _)| p)),
        revision: f.policy.map_or(0, |(_, r)| r),
        definition_version: f.definition_version,
        auto: f.auto,
        human_agents: f.human_agents,
    }
}
