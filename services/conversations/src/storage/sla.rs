//! What the SLA alert worker reads and writes inside the transaction of the
//! timer it fires: the conversation with the calendars its clocks count on,
//! the claim of an alert's business key, and the change it commits (events
//! to the outbox, an escalation, rescheduled timers).
use rapport_store::{micros, outbox};
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, sea_query::OnConflict};

use super::{entities::*, rows::*, write};
use crate::domain::{
    Error,
    calendars::{Calendar, CalendarId},
    model::*,
    repository::{Alert, ChangeSet, CommitError, SlaTimer},
    sla::Metric,
    sla_apply::{Hours, calendar_ids, calendar_of_name},
};

pub use super::write::SLA_ALERT;

/// The conversation, metric, cycle and alert of an SLA timer's payload.
pub fn parse_payload(payload: &[u8]) -> Option<(ConversationId, Metric, u32, Alert)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split(' ');
    let conversation = ConversationId(uuid::Uuid::parse_str(parts.next()?).ok()?);
    let metric = metric_of(parts.next()?)?;
    let cycle = parts.next()?.parse().ok()?;
    let alert = match parts.next()? {
        "warning" => Alert::Warning,
        "breach" => Alert::Breach,
        _ => return None,
    };
    Some((conversation, metric, cycle, alert))
}

async fn calendar(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    id: CalendarId,
) -> Result<Option<crate::domain::calendar::BusinessCalendar>, Error> {
    let Some(row) = managed::Entity::find()
        .filter(managed::Column::Tenant.eq(tenant.as_str()))
        .filter(managed::Column::Id.eq(id.to_string()))
        .filter(managed::Column::Kind.eq("business_calendar"))
        .one(txn)
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let cal: Calendar = to_managed(row)?;
    Ok(cal.business().ok())
}

/// Conversation `id` with the calendars its clocks count on, or `None`.
pub async fn load(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    id: ConversationId,
) -> Result<Option<(Conversation, Hours)>, Error> {
    let Some(row) = conversations::Entity::find_by_id((tenant.to_string(), id.to_string()))
        .one(txn)
        .await
        .map_err(db_err)?
    else {
        return Ok(None);
    };
    let c = to_conversation(row)?;
    let mut hours = Hours::default();
    for cal in calendar_ids(c.applied_sla.as_ref()) {
        if let Some(b) = calendar(txn, tenant, cal).await? {
            hours.calendars.insert(cal, b);
        }
    }
    if let Some(i) = inboxes::Entity::find_by_id((tenant.to_string(), c.inbox.to_string()))
        .one(txn)
        .await
        .map_err(db_err)?
        && let Some(cal) = calendar_of_name(&to_inbox(i)?.business_calendar)
    {
        hours.inbox = calendar(txn, tenant, cal).await?;
    }
    Ok(Some((c, hours)))
}

/// Claims the business key of an alert: `true` the first time, `false`
/// once it was raised (by another worker, replica or an earlier run).
pub async fn claim(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    timer: &SlaTimer,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, Error> {
    use sla_alerts::Column as A;
    let inserted = sla_alerts::Entity::insert(sla_alerts::ActiveModel {
        tenant: sea_orm::ActiveValue::Set(tenant.to_string()),
        conversation_id: sea_orm::ActiveValue::Set(timer.conversation.to_string()),
        metric: sea_orm::ActiveValue::Set(metric_name(timer.metric).to_owned()),
        cycle: sea_orm::ActiveValue::Set(i32::try_from(timer.cycle).unwrap_or(i32::MAX)),
        alert: sea_orm::ActiveValue::Set(
            match timer.alert {
                Alert::Warning => "warning",
                Alert::Breach => "breach",
            }
            .to_owned(),
        ),
        due_time: sea_orm::ActiveValue::Set(micros(timer.due.unwrap_or(now))),
        raise_time: sea_orm::ActiveValue::Set(micros(now)),
    })
    .on_conflict(
        OnConflict::columns([A::Tenant, A::ConversationId, A::Metric, A::Cycle, A::Alert])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await
    .map_err(db_err)?;
    Ok(inserted == 1)
}

/// Writes `change` in `txn` (the timer's transaction): rows, timers, facts
/// and its events to the outbox.
pub async fn commit_in(
    txn: &DatabaseTransaction,
    change: ChangeSet,
    encode: outbox::Encode<DomainEvent>,
) -> Result<(), Error> {
    let failed = |e: CommitError| match e {
        CommitError::Other(c) => Error::from(c),
        CommitError::VersionConflict => Error::Conflict,
        other => Error::Internal(format!("{other:?}")),
    };
    write::apply_in(txn, change, encode).await.map_err(failed)?;
    Ok(())
}
