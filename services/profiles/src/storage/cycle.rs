//! Profiles' work that is not a request's: birthdays and overdue erasures on
//! durable timers (`rapport_events::timers`), and the other services'
//! erasure confirmations, consumed from the bus (`rapport_events::consume`).
//! Each runs in the transaction that removes its timer or records its event
//! in the inbox, so it happens once; events it raises go to the outbox in
//! the same transaction.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rapport_events::{
    consume::{Handler, HandlerError},
    timers::{self, Fired, TimerHandler},
};
use rapport_proto::types::EventEnvelope;
use rapport_store::{
    micros,
    outbox::{self, Encode},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    PaginatorTrait as _, QueryFilter as _, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};

use super::{
    entities::*,
    rows::{to_customer, to_receipt},
};
use crate::domain::{birthday, model::*};

/// Timer kind: a customer's birthday begins.
pub const BIRTHDAY: &str = "profiles.birthday";
/// Timer kind: an erasure should be complete by now.
pub const ERASURE_OVERDUE: &str = "profiles.erasure_overdue";
/// The kinds profiles' timer worker fires.
pub const KINDS: &[&str] = &[BIRTHDAY, ERASURE_OVERDUE];

/// Reads a confirmation event: (receipt, confirming service).
pub type DecodeConfirmation = fn(&EventEnvelope) -> Result<(ErasureReceiptId, String), String>;

/// What a birthday timer carries: the year it is for (ids and facts only:
/// never the date).
#[derive(Serialize, Deserialize)]
struct BirthdayPayload {
    year: i32,
}

/// The timer key of a customer's birthday.
fn birthday_key(customer: CustomerId) -> String {
    format!("birthday:{customer}")
}

/// The timer of a birthday: due at its start.
pub(super) fn birthday_timer(
    tenant: &Tenant,
    customer: CustomerId,
    year: i32,
    due: DateTime<Utc>,
) -> timers::Timer {
    timers::Timer {
        tenant: tenant.to_string(),
        key: birthday_key(customer),
        kind: BIRTHDAY.to_owned(),
        due,
        payload: serde_json::to_vec(&BirthdayPayload { year }).unwrap_or_default(),
    }
}

/// Schedules or cancels a customer's birthday timer in `conn`.
pub(super) async fn apply_birthday<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    change: &BirthdayTimer,
) -> Result<(), DbErr> {
    match change {
        BirthdayTimer::Schedule {
            customer,
            year,
            due,
        } => timers::schedule(conn, &birthday_timer(tenant, *customer, *year, *due)).await,
        BirthdayTimer::Cancel { customer } => {
            timers::cancel(conn, tenant.as_str(), &birthday_key(*customer))
                .await
                .map(drop)
        }
    }
}

/// The timer that reports `receipt` if it is still incomplete at `due`.
pub(super) fn overdue_timer(
    tenant: &Tenant,
    receipt: ErasureReceiptId,
    due: DateTime<Utc>,
) -> timers::Timer {
    timers::Timer {
        tenant: tenant.to_string(),
        key: format!("erasure-overdue:{receipt}"),
        kind: ERASURE_OVERDUE.to_owned(),
        due,
        payload: receipt.to_string().into_bytes(),
    }
}

/// A receipt with its confirmations, through `conn`.
pub(super) async fn load_receipt<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    id: ErasureReceiptId,
) -> Result<Option<ErasureReceipt>, DbErr> {
    let Some(row) = erasure_receipts::Entity::find_by_id((tenant.to_string(), id.to_string()))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    let confirmations = erasure_confirmations::Entity::find()
        .filter(erasure_confirmations::Column::Tenant.eq(tenant.as_str()))
        .filter(erasure_confirmations::Column::ReceiptId.eq(id.to_string()))
        .all(conn)
        .await?;
    to_receipt(row, confirmations)
        .map(Some)
        .map_err(|e| DbErr::Custom(e.to_string()))
}

/// Records one confirmation row.
pub(super) async fn insert_confirmation<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    receipt: ErasureReceiptId,
    confirmation: &ErasureConfirmation,
) -> Result<(), DbErr> {
    erasure_confirmations::Entity::insert(erasure_confirmations::ActiveModel {
        tenant: Set(tenant.to_string()),
        receipt_id: Set(receipt.to_string()),
        service: Set(confirmation.service.clone()),
        confirm_time: Set(micros(confirmation.confirm_time)),
    })
    .on_conflict(
        OnConflict::columns([
            erasure_confirmations::Column::Tenant,
            erasure_confirmations::Column::ReceiptId,
            erasure_confirmations::Column::Service,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await
    .map(drop)
}

/// Incomplete receipts issued before `before`: erasures overdue.
pub async fn overdue_count<C: ConnectionTrait>(
    conn: &C,
    before: DateTime<Utc>,
) -> Result<u64, DbErr> {
    erasure_receipts::Entity::find()
        .filter(erasure_receipts::Column::CompleteTime.is_null())
        .filter(erasure_receipts::Column::EraseTime.lt(micros(before)))
        .count(conn)
        .await
}

fn retry(e: DbErr) -> HandlerError {
    HandlerError::Retry(rapport_store::to_error::<crate::domain::Error>(&e).to_string())
}

/// Writes `events` to the outbox through `txn`: events raised by a timer or
/// by another service's event (`cause`), not by a request.
async fn raise(
    encode: Encode<DomainEvent>,
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    at: DateTime<Utc>,
    cause: Option<&EventEnvelope>,
    events: &[DomainEvent],
) -> Result<(), DbErr> {
    let trace = rapport_telemetry::propagation::current_traceparent();
    // Not tied to a version of the customer: no per-subject sequence.
    let envelopes = outbox::envelopes(
        encode,
        |_: &DomainEvent| None,
        tenant.as_str(),
        at,
        &trace,
        cause,
        events,
    )?;
    for envelope in &envelopes {
        txn.execute(&outbox::append_insert(envelope)).await?;
    }
    Ok(())
}

/// The handler of profiles' timers (kinds [`KINDS`]); events it raises
/// are made by `encode`.
pub fn timer_handler(encode: Encode<DomainEvent>, default_zone: chrono_tz::Tz) -> TimerHandler {
    Arc::new(move |txn, fired| {
        Box::pin(async move {
            match fired.timer.kind.as_str() {
                BIRTHDAY => birthday(encode, txn, fired, default_zone).await,
                ERASURE_OVERDUE => erasure_overdue(txn, fired).await,
                other => Err(HandlerError::Reject(format!("unknown timer kind {other}"))),
            }
        })
    })
}

/// A birthday began: greet once for the year (the greetings table is
/// the guard), then wait for the next one.
async fn birthday(
    encode: Encode<DomainEvent>,
    txn: &DatabaseTransaction,
    fired: &Fired,
    default_zone: chrono_tz::Tz,
) -> Result<(), HandlerError> {
    let timer = &fired.timer;
    let tenant = Tenant::parse(&timer.tenant)
        .map_err(|why| HandlerError::Reject(format!("the timer's tenant {why}")))?;
    let BirthdayPayload { year } = serde_json::from_slice(&timer.payload)
        .map_err(|e| HandlerError::Reject(format!("birthday payload: {e}")))?;
    let Some(id) = timer
        .key
        .strip_prefix("birthday:")
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .map(CustomerId)
    else {
        return Err(HandlerError::Reject(format!("birthday key {}", timer.key)));
    };
    let Some(row) = customers::Entity::find_by_id((tenant.to_string(), id.to_string()))
        .one(txn)
        .await
        .map_err(retry)?
    else {
        return Ok(());
    };
    let customer = to_customer(row).map_err(|e| HandlerError::Retry(e.to_string()))?;
    // Erased, merged or without a birthday since it was scheduled (their
    // changes cancel the timer; this is the guard against a firing
    // claimed just before).
    let Some(birthday) = customer
        .profile
        .birthday
        .filter(|_| customer.state == CustomerState::Active)
    else {
        return Ok(());
    };
    let greeted = birthday_greetings::Entity::insert(birthday_greetings::ActiveModel {
        tenant: Set(tenant.to_string()),
        customer_id: Set(id.to_string()),
        year: Set(year),
    })
    .on_conflict(
        OnConflict::columns([
            birthday_greetings::Column::Tenant,
            birthday_greetings::Column::CustomerId,
            birthday_greetings::Column::Year,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await
    .map_err(retry)?;
    if greeted == 1 {
        raise(
            encode,
            txn,
            &tenant,
            timer.due,
            None,
            &[DomainEvent::BirthdayReached { customer: id, year }],
        )
        .await
        .map_err(retry)?;
    }
    let zone = crate::domain::zone::zone_of(&customer, default_zone);
    if let Some(due) = birthday::begins(&birthday, zone, year + 1) {
        timers::schedule(txn, &birthday_timer(&tenant, id, year + 1, due))
            .await
            .map_err(retry)?;
    }
    Ok(())
}

/// An erasure should be complete: say so loudly if it is not (the
/// `rapport_erasure_receipts_overdue` gauge counts them meanwhile).
async fn erasure_overdue(txn: &DatabaseTransaction, fired: &Fired) -> Result<(), HandlerError> {
    let timer = &fired.timer;
    let tenant = Tenant::parse(&timer.tenant)
        .map_err(|why| HandlerError::Reject(format!("the timer's tenant {why}")))?;
    let id = std::str::from_utf8(&timer.payload)
        .ok()
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .map(ErasureReceiptId)
        .ok_or_else(|| HandlerError::Reject("erasure receipt id".into()))?;
    let receipt = load_receipt(txn, &tenant, id).await.map_err(retry)?;
    if let Some(r) = receipt.filter(|r| r.complete_time.is_none()) {
        tracing::error!(
            tenant = %tenant,
            erasure_receipt = %r.id,
            pending = ?r.pending(),
            erase_time = %r.erase_time,
            "erasure incomplete past its deadline: services have not confirmed erasing their part"
        );
    }
    Ok(())
}

/// The handler of other services' `CustomerDataErased` events: records
/// the confirmation; the last awaited one completes the receipt and
/// raises `ErasureCompleted`.
pub fn confirmation_handler(
    encode: Encode<DomainEvent>,
    decode: DecodeConfirmation,
    clock: Arc<dyn crate::domain::Clock>,
) -> Handler {
    Arc::new(move |txn, envelope| {
        let clock = clock.clone();
        Box::pin(async move { confirm(encode, txn, envelope, decode, clock.now()).await })
    })
}

async fn confirm(
    encode: Encode<DomainEvent>,
    txn: &DatabaseTransaction,
    envelope: &EventEnvelope,
    decode: DecodeConfirmation,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let tenant = Tenant::parse(&envelope.tenant)
        .map_err(|why| HandlerError::Reject(format!("the event's tenant {why}")))?;
    let (id, service) = decode(envelope).map_err(HandlerError::Reject)?;
    // Only this tenant's receipt: a confirmation naming another
    // tenant's receipt finds nothing.
    let Some(mut receipt) = load_receipt(txn, &tenant, id).await.map_err(retry)? else {
        return Err(HandlerError::Reject(format!("no erasure receipt {id}")));
    };
    match receipt.confirm(&service, now) {
        Confirmed::Again => Ok(()),
        Confirmed::NotAwaited => {
            tracing::warn!(erasure_receipt = %id, service = %service, "confirmation from a service the receipt does not await; ignored");
            Ok(())
        }
        outcome @ (Confirmed::Recorded | Confirmed::Completed) => {
            let confirmation =
                receipt
                    .confirmations
                    .last()
                    .cloned()
                    .unwrap_or(ErasureConfirmation {
                        service,
                        confirm_time: now,
                    });
            insert_confirmation(txn, &tenant, id, &confirmation)
                .await
                .map_err(retry)?;
            if outcome == Confirmed::Completed {
                erasure_receipts::Entity::update_many()
                    .col_expr(
                        erasure_receipts::Column::CompleteTime,
                        sea_orm::sea_query::Expr::value(micros(now)),
                    )
                    .filter(erasure_receipts::Column::Tenant.eq(tenant.as_str()))
                    .filter(erasure_receipts::Column::Id.eq(id.to_string()))
                    .exec(txn)
                    .await
                    .map_err(retry)?;
                timers::cancel(txn, tenant.as_str(), &overdue_timer(&tenant, id, now).key)
                    .await
                    .map_err(retry)?;
                raise(
                    encode,
                    txn,
                    &tenant,
                    now,
                    Some(envelope),
                    &[DomainEvent::ErasureCompleted {
                        customer: receipt.customer,
                        receipt: id,
                    }],
                )
                .await
                .map_err(retry)?;
            }
            Ok(())
        }
    }
}
