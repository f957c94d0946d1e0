//! Consumers: a service's handler of events, applied exactly once per
//! consumer however often the bus delivers.
//!
//! The bus delivers at least once. Each delivery runs the handler inside a
//! database transaction of the consuming service that first inserts
//! (consumer, event id) into its `inbox` table: a redelivery of an applied
//! event finds the row and is only acknowledged, so the handler's effect
//! (written through the same transaction) happens once. A handler that
//! fails transiently ([`HandlerError::Retry`]) rolls back and the event
//! comes again with backoff; one that rejects it ([`HandlerError::Reject`]),
//! one still failing after `max_deliver` deliveries, and a message that is
//! not an event at all are parked in the `dead_letters` table with their
//! error, where they can be listed and replayed once the cause is fixed.
//! Other events keep flowing meanwhile.
//!
//! The handler runs in a span whose parent is the request that caused the
//! event (the envelope's `traceparent`).
use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::{FutureExt as _, future::BoxFuture};
use prost::Message as _;
use rapport_store::{Db, is_unique_violation};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait as _, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
    sea_query::{OnConflict, Query},
};
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::{Bus, ConsumerOptions, Delivery, Error, EventEnvelope};

/// What a handler makes of an event it could not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// A passing failure (a dependency is down): deliver it again later.
    Retry(String),
    /// The event can never be applied as it is: park it now.
    Reject(String),
}

/// A handler: applies one event through `txn`, the transaction that also
/// records the event in the inbox. It must write only through `txn`.
pub type Handler = Arc<
    dyn for<'t> Fn(
            &'t DatabaseTransaction,
            &'t EventEnvelope,
        ) -> BoxFuture<'t, Result<(), HandlerError>>
        + Send
        + Sync,
>;

/// Which events a consumer reads, and how they are redelivered.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The consumer's durable name, also its inbox and dead-letter key
    /// (`webhooks`, `feedback.erasure`).
    pub consumer: String,
    /// The producing service (`profiles`).
    pub service: String,
    /// The subjects (`rapport.profiles.>`, `rapport.profiles.CustomerErased`).
    pub filter: String,
    /// Redelivery.
    pub options: ConsumerOptions,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The handler applied it now.
    Now,
    /// It was applied before (a redelivery): nothing was done.
    Before,
}

/// Why a delivery could not be processed; the text is for logs.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The handler's own failure.
    #[error("handler: {0:?}")]
    Handler(HandlerError),
    /// The consumer's database.
    #[error("inbox database: {0}")]
    Db(#[from] DbErr),
}

/// The inbox: the events each consumer applied.
pub mod inbox {
    use sea_orm::entity::prelude::*;

    /// One applied event.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        /// Consumer name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        /// Event id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        /// When it was applied, µs since the epoch.
        pub apply_time: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Events a consumer gave up on, with why.
pub mod dead_letters {
    use sea_orm::entity::prelude::*;

    /// One parked event.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        /// Consumer name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        /// Event id (the bus message id when the message did not decode).
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        /// Tenant of the event, empty when unknown.
        pub tenant: String,
        /// Event type, empty when unknown.
        pub event_type: String,
        /// The encoded envelope, empty when the message did not decode.
        pub envelope: Vec<u8>,
        /// The last error.
        pub error: String,
        /// Deliveries so far.
        pub attempts: i64,
        /// When it was parked, µs since the epoch.
        pub park_time: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Applies `envelope` for `consumer` once: records it in the inbox and runs
/// `handler` in one transaction. A failed handler leaves nothing behind.
pub async fn apply(
    db: &Db,
    consumer: &str,
    envelope: &EventEnvelope,
    handler: &Handler,
) -> Result<Applied, ConsumeError> {
    let txn = db.writer.begin().await?;
    match apply_in(&txn, consumer, envelope, handler).await? {
        Ok(applied) => {
            txn.commit().await?;
            Ok(applied)
        }
        Err(e) => {
            txn.rollback().await?;
            Err(ConsumeError::Handler(e))
        }
    }
}

/// Parks an event for `consumer` with `error` (replacing an earlier entry
/// of the same event).
pub async fn park(
    db: &Db,
    consumer: &str,
    event_id: &str,
    envelope: Option<&EventEnvelope>,
    error: &str,
    attempts: u64,
) -> Result<(), DbErr> {
    let row = dead_letters::ActiveModel {
        consumer: Set(consumer.to_owned()),
        event_id: Set(event_id.to_owned()),
        tenant: Set(envelope.map(|e| e.tenant.clone()).unwrap_or_default()),
        event_type: Set(envelope.map(|e| e.r#type.clone()).unwrap_or_default()),
        envelope: Set(envelope.map(|e| e.encode_to_vec()).unwrap_or_default()),
        error: Set(error.to_owned()),
        attempts: Set(i64::try_from(attempts).unwrap_or(i64::MAX)),
        park_time: Set(chrono::Utc::now().timestamp_micros()),
    };
    dead_letters::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                dead_letters::Column::Consumer,
                dead_letters::Column::EventId,
            ])
            .update_columns([
                dead_letters::Column::Error,
                dead_letters::Column::Attempts,
                dead_letters::Column::ParkTime,
            ])
            .to_owned(),
        )
        .exec_without_returning(&db.writer)
        .await?;
    Ok(())
}

/// The oldest `limit` of `consumer`'s dead letters (every consumer's when
/// `None`).
pub async fn dead_letters_page(
    db: &Db,
    consumer: Option<&str>,
    limit: u64,
) -> Result<Vec<dead_letters::Model>, DbErr> {
    let mut q = dead_letters::Entity::find();
    if let Some(c) = consumer {
        q = q.filter(dead_letters::Column::Consumer.eq(c));
    }
    q.order_by_asc(dead_letters::Column::ParkTime)
        .order_by_asc(dead_letters::Column::EventId)
        .limit(limit)
        .all(&db.reader)
        .await
}

/// Runs `consumer`'s parked event `event_id` through `handler` again, once
/// the cause is fixed. Applied (now or before), it leaves the dead letters;
/// failing again, it stays with the new error. `Ok(None)`: no such entry.
pub async fn replay(
    db: &Db,
    consumer: &str,
    event_id: &str,
    handler: &Handler,
) -> Result<Option<Applied>, ConsumeError> {
    let Some(row) = dead_letters::Entity::find_by_id((consumer.to_owned(), event_id.to_owned()))
        .one(&db.reader)
        .await?
    else {
        return Ok(None);
    };
    // An undecodable message was parked without an envelope: there is no
    // event to run again (an empty envelope would decode as an empty event).
    if row.envelope.is_empty() {
        return Err(ConsumeError::Handler(HandlerError::Reject(
            "the parked message was not an event; there is nothing to replay".into(),
        )));
    }
    let envelope = EventEnvelope::decode(row.envelope.as_slice()).map_err(|e| {
        ConsumeError::Handler(HandlerError::Reject(format!(
            "the parked message is not an event: {e}"
        )))
    })?;
    match apply(db, consumer, &envelope, handler).await {
        Ok(applied) => {
            dead_letters::Entity::delete_by_id((consumer.to_owned(), event_id.to_owned()))
                .exec(&db.writer)
                .await?;
            Ok(Some(applied))
        }
        Err(ConsumeError::Handler(e)) => {
            let why = match &e {
                HandlerError::Retry(w) | HandlerError::Reject(w) => w.clone(),
            };
            park(
                db,
                consumer,
                event_id,
                Some(&envelope),
                &why,
                row.attempts as u64 + 1,
            )
            .await?;
            Err(ConsumeError::Handler(e))
        }
        Err(e) => Err(e),
    }
}

/// Processes one delivery: applies it once, then acknowledges it, asks for
/// it again (a transient failure within `max_deliver`), or parks and
/// acknowledges it.
pub async fn process(
    db: &Db,
    subscription: &Subscription,
    delivery: Delivery,
    handler: &Handler,
) -> Result<(), Error> {
    process_batch(db, subscription, vec![delivery], handler).await
}

/// Deliveries applied in one transaction at most (see [`process_batch`]).
pub const APPLY_BATCH: usize = 32;

/// What became of one delivery of a batch.
enum Fate {
    Ack,
    Nak,
    Park(String),
}

/// Processes deliveries that were waiting together as [`process`] does each,
/// in one database transaction: each event in a savepoint of its own (the
/// inbox row and the handler's effect; a failing handler rolls back only its
/// event), one commit for all. Why: a commit is the consumer's dominant
/// cost (an fsync; on PostgreSQL ~1 ms with its round trips), and one per
/// event capped a consumer near 1,000 events/s, queueing seconds of lag
/// behind a burst (docs/benchmarks.md). Acknowledgements follow the commit,
/// sent together; if the commit fails every event comes again.
pub async fn process_batch(
    db: &Db,
    subscription: &Subscription,
    deliveries: Vec<Delivery>,
    handler: &Handler,
) -> Result<(), Error> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let consumer = subscription.consumer.as_str();
    let max_deliver = u64::from(subscription.options.max_deliver);
    let fates = match apply_all(db, consumer, &deliveries, handler, max_deliver).await {
        Ok(fates) => fates,
        Err(e) => {
            tracing::warn!(error = %e, %consumer, "inbox unavailable; delivering again later");
            deliveries.iter().map(|_| Fate::Nak).collect()
        }
    };
    let mut settled = Vec::with_capacity(deliveries.len());
    for (delivery, fate) in deliveries.into_iter().zip(fates) {
        let fate = match fate {
            Fate::Park(why) => {
                let parked = park(
                    db,
                    consumer,
                    &delivery.envelope.id,
                    Some(&delivery.envelope),
                    &why,
                    delivery.attempt,
                )
                .await;
                match parked {
                    Ok(()) => Fate::Ack,
                    // Not parked: let it come again rather than lose it.
                    Err(e) => {
                        tracing::warn!(error = %e, event.id = %delivery.envelope.id,
                            "parking failed; delivering again later");
                        Fate::Nak
                    }
                }
            }
            other => other,
        };
        settled.push(async move {
            match fate {
                Fate::Nak => delivery.nak(None).await,
                _ => delivery.ack().await,
            }
        });
    }
    // Sent together: one round trip for the batch's confirmations.
    let results = futures::future::join_all(settled).await;
    results.into_iter().collect()
}

/// Applies each delivery in a savepoint of one transaction and commits it;
/// what to do with each.
async fn apply_all(
    db: &Db,
    consumer: &str,
    deliveries: &[Delivery],
    handler: &Handler,
    max_deliver: u64,
) -> Result<Vec<Fate>, DbErr> {
    let (failed_at, failure) = match apply_all_at_once(db, consumer, deliveries, handler).await? {
        Ok(fates) => return Ok(fates),
        Err(failed) => failed,
    };
    let txn = db.writer.begin().await?;
    let mut fates = Vec::with_capacity(deliveries.len());
    let mut failure = Some(failure);
    for (i, delivery) in deliveries.iter().enumerate() {
        let span = event_span(consumer, delivery);
        let applied = match failure.take_if(|_| i == failed_at) {
            // Its handler already answered: running it again would be a
            // delivery the bus never counted.
            Some(e) => Err(e),
            None => {
                apply_in(&txn, consumer, &delivery.envelope, handler)
                    .instrument(span.clone())
                    .await?
            }
        };
        let _entered = span.enter();
        fates.push(match applied {
            Ok(_) => Fate::Ack,
            Err(HandlerError::Retry(why)) if delivery.attempt < max_deliver => {
                tracing::info!(error = %why, "event handler failed; delivering again later");
                Fate::Nak
            }
            Err(HandlerError::Retry(why) | HandlerError::Reject(why)) => {
                tracing::warn!(error = %why, "event parked in dead letters");
                Fate::Park(why)
            }
        });
    }
    txn.commit().await?;
    Ok(fates)
}

/// The common case first: every handler succeeds, so the batch needs no
/// savepoints (each costs two round trips to PostgreSQL, which doubled the
/// consumer's cost per event). When a handler fails, the transaction is
/// rolled back and its index and error returned: the caller applies the
/// batch again event by event in savepoints, so that the failure spoils
/// nothing else.
async fn apply_all_at_once(
    db: &Db,
    consumer: &str,
    deliveries: &[Delivery],
    handler: &Handler,
) -> Result<Result<Vec<Fate>, (usize, HandlerError)>, DbErr> {
    let txn = db.writer.begin().await?;
    // Every inbox row of the batch in one statement (one round trip, not
    // one per event); it answers which were new. Applied before (or twice
    // in this batch): not returned, nothing to run.
    let now = chrono::Utc::now().timestamp_micros();
    let mut insert = Query::insert();
    insert
        .into_table(inbox::Entity)
        .columns([
            inbox::Column::Consumer,
            inbox::Column::EventId,
            inbox::Column::ApplyTime,
        ])
        .on_conflict(
            OnConflict::columns([inbox::Column::Consumer, inbox::Column::EventId])
                .do_nothing()
                .to_owned(),
        )
        .returning_col(inbox::Column::EventId);
    for delivery in deliveries {
        insert.values_panic([
            consumer.into(),
            delivery.envelope.id.clone().into(),
            now.into(),
        ]);
    }
    let new: HashSet<String> = txn
        .query_all(&insert)
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect::<Result<_, _>>()?;
    let mut started = HashSet::with_capacity(new.len());
    for (i, delivery) in deliveries.iter().enumerate() {
        let envelope = &delivery.envelope;
        // The first delivery of a new event runs its handler; a second copy
        // in the same batch is a redelivery.
        if !new.contains(&envelope.id) || !started.insert(envelope.id.as_str()) {
            continue;
        }
        let span = event_span(consumer, delivery);
        if let Err(e) = handler(&txn, envelope).instrument(span).await {
            txn.rollback().await?;
            return Ok(Err((i, e)));
        }
    }
    txn.commit().await?;
    Ok(Ok(deliveries.iter().map(|_| Fate::Ack).collect()))
}

/// The span a delivery is handled in, a child of the producing request.
fn event_span(consumer: &str, delivery: &Delivery) -> tracing::Span {
    let envelope = &delivery.envelope;
    let span = tracing::info_span!(
        "event",
        otel.kind = "consumer",
        consumer = %consumer,
        event.id = %envelope.id,
        event.r#type = %envelope.r#type,
        tenant = %envelope.tenant,
        attempt = delivery.attempt,
    );
    let _ = span.set_parent(parent_of(envelope));
    span
}

/// One event in a savepoint of `txn`: the inbox row and the handler's
/// effect, or neither.
async fn apply_in(
    txn: &DatabaseTransaction,
    consumer: &str,
    envelope: &EventEnvelope,
    handler: &Handler,
) -> Result<Result<Applied, HandlerError>, DbErr> {
    let savepoint = txn.begin().await?;
    let recorded = inbox::Entity::insert(inbox::ActiveModel {
        consumer: Set(consumer.to_owned()),
        event_id: Set(envelope.id.clone()),
        apply_time: Set(chrono::Utc::now().timestamp_micros()),
    })
    .exec_without_returning(&savepoint)
    .await;
    match recorded {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            savepoint.rollback().await?;
            return Ok(Ok(Applied::Before));
        }
        Err(e) => return Err(e),
    }
    match handler(&savepoint, envelope).await {
        Ok(()) => {
            savepoint.commit().await?;
            Ok(Ok(Applied::Now))
        }
        Err(e) => {
            savepoint.rollback().await?;
            Ok(Err(e))
        }
    }
}

/// The producing request's trace context, from the envelope.
fn parent_of(envelope: &EventEnvelope) -> opentelemetry::Context {
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("traceparent", &envelope.traceparent),
        ("tracestate", &envelope.tracestate),
    ] {
        if let Ok(v) = http::HeaderValue::from_str(value)
            && !value.is_empty()
        {
            headers.insert(name, v);
        }
    }
    rapport_telemetry::propagation::extract(&headers)
}

/// The next deliveries of `consumer`: the first waits, and what else is
/// waiting already joins it, up to `max`. The error is what ended the
/// batch early (the deliveries before it are still to be processed).
pub async fn next_batch(
    consumer: &mut crate::Consumer,
    max: usize,
) -> (Vec<Delivery>, Option<Error>) {
    let mut batch = Vec::new();
    let mut next = Some(consumer.next().await);
    while let Some(result) = next.take() {
        match result {
            Ok(delivery) => batch.push(delivery),
            Err(e) => return (batch, Some(e)),
        }
        if batch.len() < max {
            // Cancel-safe: a delivery not ready now stays with the consumer.
            next = consumer.next().now_or_never();
        }
    }
    (batch, None)
}

/// Starts consuming `subscription` with `handler` until the task is
/// aborted, reconnecting with backoff while the bus is unavailable.
pub fn spawn(db: Db, bus: Bus, subscription: Subscription, handler: Handler) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let consumer = bus
                .consumer(
                    &subscription.consumer,
                    &subscription.service,
                    &subscription.filter,
                    &subscription.options,
                )
                .await;
            let mut consumer = match consumer {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, consumer = %subscription.consumer, "cannot subscribe; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            loop {
                let (batch, failed) = next_batch(&mut consumer, APPLY_BATCH).await;
                if !batch.is_empty() {
                    backoff = Duration::from_millis(100);
                    if let Err(e) = process_batch(&db, &subscription, batch, &handler).await {
                        tracing::warn!(error = %e, "acknowledging an event failed; it comes again");
                    }
                }
                match failed {
                    None => {}
                    Some(Error::Undecodable { id, why }) => {
                        tracing::warn!(%id, error = %why, "undecodable message parked in dead letters");
                        if let Err(e) = park(&db, &subscription.consumer, &id, None, &why, 1).await
                        {
                            tracing::warn!(error = %e, "parking an undecodable message failed");
                        }
                    }
                    Some(Error::Closed) => return,
                    Some(e) => {
                        tracing::warn!(error = %e, consumer = %subscription.consumer, "event bus unavailable; resubscribing");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        break;
                    }
                }
            }
        }
    })
}
