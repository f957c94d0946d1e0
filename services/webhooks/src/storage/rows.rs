//! Rows ⇄ domain values, and database errors as domain errors.
use rapport_store::{from_micros, micros};
use sea_orm::{ActiveValue::Set, DbErr};
use uuid::Uuid;

use super::entities::*;
use crate::domain::{Error, model::*, values::EventTypes};

pub(super) fn db_err(e: DbErr) -> Error {
    db_error(&e)
}

pub(super) fn db_error(e: &DbErr) -> Error {
    rapport_store::to_error(e)
}

fn corrupt(what: &str, id: &str) -> Error {
    Error::Internal(format!("stored {what} {id} is unreadable"))
}

fn parse_uuid(s: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(s).map_err(|_| corrupt("id", s))
}

pub(super) fn to_subscription(row: subscriptions::Model) -> Result<Subscription, Error> {
    let bad = |what| corrupt(what, &row.id);
    let event_types: Vec<String> =
        serde_json::from_str(&row.event_types).map_err(|_| bad("event types of"))?;
    Ok(Subscription {
        id: SubscriptionId(parse_uuid(&row.id)?),
        url: row.url.clone().try_into().map_err(|_| bad("url of"))?,
        event_types: EventTypes::try_from(event_types).map_err(|_| bad("event types of"))?,
        state: SubscriptionState::from_str_opt(&row.state).ok_or_else(|| bad("state of"))?,
        disable_reason: match row.disable_reason.as_str() {
            "" => None,
            r => Some(DisableReason::from_str_opt(r).ok_or_else(|| bad("disable reason of"))?),
        },
        secret: row
            .secret
            .clone()
            .try_into()
            .map_err(|_| bad("secret of"))?,
        create_time: from_micros(row.create_time),
        update_time: from_micros(row.update_time),
        version: row.version,
    })
}

pub(super) fn subscription_row(tenant: &Tenant, s: &Subscription) -> subscriptions::ActiveModel {
    subscriptions::ActiveModel {
        tenant: Set(tenant.to_string()),
        id: Set(s.id.to_string()),
        version: Set(s.version),
        url: Set(s.url.as_str().to_owned()),
        event_types: Set(
            serde_json::to_string(&s.event_types.to_strings()).unwrap_or_else(|_| "[]".into())
        ),
        state: Set(s.state.as_str().to_owned()),
        disable_reason: Set(s
            .disable_reason
            .map(|r| r.as_str())
            .unwrap_or("")
            .to_owned()),
        secret: Set(s.secret.expose()),
        create_time: Set(micros(s.create_time)),
        update_time: Set(micros(s.update_time)),
    }
}

pub(super) fn to_delivery(row: deliveries::Model) -> Result<Delivery, Error> {
    let bad = |what| corrupt(what, &row.id);
    Ok(Delivery {
        id: DeliveryId(parse_uuid(&row.id)?),
        subscription: SubscriptionId(parse_uuid(&row.subscription_id)?),
        event_id: row.event_id.clone(),
        event_type: row.event_type.clone(),
        body: row.body.clone(),
        state: DeliveryState::from_str_opt(&row.state).ok_or_else(|| bad("state of"))?,
        attempts: u32::try_from(row.attempts).map_err(|_| bad("attempts of"))?,
        last_status_code: u16::try_from(row.last_status_code).ok().filter(|s| *s != 0),
        last_error: row.last_error.clone(),
        create_time: from_micros(row.create_time),
        last_attempt_time: row.last_attempt_time.map(from_micros),
        next_attempt_time: row.next_attempt_time.map(from_micros),
    })
}

pub(super) fn delivery_row(tenant: &Tenant, d: &Delivery) -> deliveries::ActiveModel {
    deliveries::ActiveModel {
        tenant: Set(tenant.to_string()),
        id: Set(d.id.to_string()),
        subscription_id: Set(d.subscription.to_string()),
        event_id: Set(d.event_id.clone()),
        event_type: Set(d.event_type.clone()),
        body: Set(d.body.clone()),
        state: Set(d.state.as_str().to_owned()),
        attempts: Set(i64::from(d.attempts)),
        last_status_code: Set(d.last_status_code.map(i32::from).unwrap_or(0)),
        last_error: Set(d.last_error.clone()),
        create_time: Set(micros(d.create_time)),
        last_attempt_time: Set(d.last_attempt_time.map(micros)),
        next_attempt_time: Set(d.next_attempt_time.map(micros)),
    }
}
