//! Writing a change: one transaction holding the rows, the thread, the
//! idempotency claim and the outbox rows. On SQLite the change joins the
//! group commit of the one writer; on PostgreSQL every change has its own
//! transaction.
use rapport_proto::types::EventEnvelope;
use rapport_store::{group_commit::BoxFuture, idempotency, is_unique_violation, micros, outbox};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait as _},
};

use super::{SqlRepository, entities::*, rows::*};
use crate::domain::{model::*, repository::*};

/// A change with its events already wrapped in envelopes: built on the
/// request's task, where the trace context is, before the change is handed
/// to SQLite's writer task (which has no request span).
#[derive(Debug)]
pub(super) struct Prepared {
    change: ChangeSet,
    envelopes: Vec<EventEnvelope>,
}

impl SqlRepository {
    /// Applies `change` atomically and, when it wrote events, wakes the
    /// outbox relay.
    pub(super) async fn write(&self, change: ChangeSet) -> Result<(), CommitError> {
        let events = !change.events.is_empty();
        let result = self.write_change(change).await;
        if events && result.is_ok() {
            self.wake.wake();
        }
        result
    }

    async fn write_change(&self, change: ChangeSet) -> Result<(), CommitError> {
        // Every change here is a request's: nothing caused it but the request.
        let prepared = prepare(self.encode, change)?;
        self.writer.commit(prepared).await
    }
}

/// `change` with its events wrapped in envelopes (in the current trace).
pub(super) fn prepare(
    encode: outbox::Encode<DomainEvent>,
    change: ChangeSet,
) -> Result<Prepared, CommitError> {
    let trace = rapport_telemetry::propagation::current_traceparent();
    let envelopes = outbox::envelopes(
        encode,
        |event: &DomainEvent| version_after(&change, event),
        change.tenant.as_str(),
        change.occur_time,
        &trace,
        None,
        &change.events,
    )
    .map_err(failed)?;
    Ok(Prepared { change, envelopes })
}

/// Writes `change` in `txn`, a transaction the caller holds (a timer's):
/// the same statements as a request's commit.
pub(super) async fn apply_in(
    txn: &DatabaseTransaction,
    change: ChangeSet,
    encode: outbox::Encode<DomainEvent>,
) -> Result<(), CommitError> {
    apply(txn, &prepare(encode, change)?).await
}

/// The version of the resource an event is about once `change` commits:
/// the per-subject order of its events (a message, immutable, is at 1).
fn version_after(change: &ChangeSet, event: &DomainEvent) -> Option<u64> {
    if let DomainEvent::MessageReceived { .. } = event {
        return Some(1);
    }
    if let DomainEvent::Promise(_) = event {
        return super::promises::version_after(&change.promises, event);
    }
    let subject = event.subject();
    change
        .conversations
        .iter()
        .map(|w| match w {
            RowWrite::Insert(c) | RowWrite::Update { value: c, .. } => c,
        })
        .find(|c| format!("conversations/{}", c.id) == subject)
        .and_then(|c| u64::try_from(c.version).ok())
}

/// A database failure of a commit.
pub(super) fn failed(e: DbErr) -> CommitError {
    on_db_error(&e)
}

/// [`failed`] by reference, as the writer takes it.
pub(super) fn on_db_error(e: &DbErr) -> CommitError {
    rapport_store::group_commit::commit_error(e, |e| Clash::Failed(db_error(e)))
}

/// A failure of a statement whose unique violation is `clash`.
fn clashing(clash: Clash) -> impl FnOnce(DbErr) -> CommitError {
    move |e| {
        if is_unique_violation(&e) {
            CommitError::Other(clash)
        } else {
            failed(e)
        }
    }
}

fn encoding(e: crate::domain::Error) -> CommitError {
    CommitError::Other(Clash::Failed(e))
}

/// [`apply`] in the shape `GroupCommit` takes.
pub(super) fn apply_boxed<'t>(
    txn: &'t DatabaseTransaction,
    change: &'t Prepared,
) -> BoxFuture<'t, Result<(), CommitError>> {
    Box::pin(apply(txn, change))
}

/// Writes `change` in `txn`; a function of `change` alone, so that group
/// commit can run it again after rolling back another change's failure.
pub(super) async fn apply(
    txn: &DatabaseTransaction,
    prepared: &Prepared,
) -> Result<(), CommitError> {
    let change = &prepared.change;
    let tenant = &change.tenant;
    if let Some(claim) = &change.claim {
        // First write of the transaction: a concurrent twin blocks here
        // (PostgreSQL) or is serialized behind us (SQLite's one writer).
        if !idempotency::claim(txn, tenant, claim, micros(change.occur_time))
            .await
            .map_err(failed)?
        {
            return Err(CommitError::KeyTaken);
        }
    }
    // The thread first: of concurrent first messages, the losers stop here.
    for t in &change.threads {
        write_thread(txn, tenant, t).await?;
    }
    for w in &change.inboxes {
        match w {
            RowWrite::Insert(i) => {
                rapport_store::insert_row(inbox_row(tenant, i).map_err(encoding)?, txn)
                    .await
                    .map_err(clashing(Clash::InboxAddress))?;
            }
            RowWrite::Update {
                value,
                expected_version,
            } => {
                let updated = inboxes::Entity::update_many()
                    .set(inbox_row(tenant, value).map_err(encoding)?)
                    .filter(inboxes::Column::Tenant.eq(tenant.as_str()))
                    .filter(inboxes::Column::Id.eq(value.id.to_string()))
                    .filter(inboxes::Column::Version.eq(*expected_version))
                    .exec(txn)
                    .await
                    .map_err(clashing(Clash::InboxAddress))?;
                if updated.rows_affected != 1 {
                    return Err(CommitError::VersionConflict);
                }
            }
        }
    }
    for w in &change.managed {
        let (row, expected) = match w {
            RowWrite::Insert(r) => (r, None),
            RowWrite::Update {
                value,
                expected_version,
            } => (value, Some(*expected_version)),
        };
        let clash = || Clash::ManagedKey(row.kind, row.key_field);
        match expected {
            None => {
                rapport_store::insert_row(managed_row(tenant, row), txn)
                    .await
                    .map_err(clashing(clash()))?;
            }
            Some(version) => {
                let mut active = managed_row(tenant, row);
                // Created once; an update keeps it.
                active.create_time = sea_orm::ActiveValue::NotSet;
                let updated = managed::Entity::update_many()
                    .set(active)
                    .filter(managed::Column::Tenant.eq(tenant.as_str()))
                    .filter(managed::Column::Id.eq(row.id.to_string()))
                    .filter(managed::Column::Version.eq(version))
                    .exec(txn)
                    .await
                    .map_err(clashing(clash()))?;
                if updated.rows_affected != 1 {
                    return Err(CommitError::VersionConflict);
                }
            }
        }
    }
    for d in &change.managed_deletes {
        let deleted = managed::Entity::delete_many()
            .filter(managed::Column::Tenant.eq(tenant.as_str()))
            .filter(managed::Column::Kind.eq(kind_name(d.kind)))
            .filter(managed::Column::Id.eq(d.id.to_string()))
            .filter(managed::Column::Version.eq(d.expected_version))
            .exec(txn)
            .await
            .map_err(failed)?;
        if deleted.rows_affected != 1 {
            return Err(CommitError::VersionConflict);
        }
    }
    for w in &change.conversations {
        match w {
            RowWrite::Insert(c) => {
                // The only unique key a new conversation can clash on is
                // its source (its id is new).
                rapport_store::insert_row(conversation_row(tenant, c).map_err(encoding)?, txn)
                    .await
                    .map_err(clashing(Clash::Source))?;
            }
            RowWrite::Update {
                value,
                expected_version,
            } => {
                let mut row = conversation_row(tenant, value).map_err(encoding)?;
                // Counted by increments below, never overwritten with a
                // count read earlier.
                row.message_count = sea_orm::ActiveValue::NotSet;
                row.last_message_time = sea_orm::ActiveValue::NotSet;
                let updated = conversations::Entity::update_many()
                    .set(row)
                    .filter(conversations::Column::Tenant.eq(tenant.as_str()))
                    .filter(conversations::Column::Id.eq(value.id.to_string()))
                    .filter(conversations::Column::Version.eq(*expected_version))
                    .exec(txn)
                    .await
                    .map_err(failed)?;
                if updated.rows_affected != 1 {
                    return Err(CommitError::VersionConflict);
                }
            }
        }
    }
    if let Some((id, version)) = change.conversation_at {
        // A write that changes nothing but takes the row's lock and checks
        // its version after any concurrent writer has committed.
        use conversations::Column as C;
        let updated = conversations::Entity::update_many()
            .col_expr(C::Version, Expr::col(C::Version))
            .filter(C::Tenant.eq(tenant.as_str()))
            .filter(C::Id.eq(id.to_string()))
            .filter(C::Version.eq(version))
            .exec(txn)
            .await
            .map_err(failed)?;
        if updated.rows_affected != 1 {
            return Err(CommitError::VersionConflict);
        }
    }
    if let Some(id) = change.no_open_promise {
        // After the conversation's write: on PostgreSQL a promise that held
        // its lock has committed by now, and this statement sees it.
        if let Some(p) = super::promises::open_promise(txn, tenant, id)
            .await
            .map_err(failed)?
        {
            return Err(CommitError::Other(Clash::Failed(
                crate::domain::Error::InUse(format!("conversations/{id}"), p),
            )));
        }
    }
    // Customers whose mark this transaction holds: asked once each (the row
    // lock keeps the answer until commit), not once per message.
    let mut marked: Vec<CustomerId> = Vec::new();
    for m in &change.messages {
        // What a customer wrote is stored only while they are not erased,
        // ordered against the erasure by their mark's row lock.
        if m.sender_kind == SenderKind::Customer && !marked.contains(&m.customer) {
            if super::marks::is_erased(txn, tenant.as_str(), &m.customer.to_string())
                .await
                .map_err(failed)?
            {
                return Err(CommitError::Other(Clash::CustomerErased));
            }
            marked.push(m.customer);
        }
        rapport_store::insert_row(message_row(tenant, m).map_err(encoding)?, txn)
            .await
            .map_err(clashing(Clash::DuplicateMessage))?;
        let inserted = change
            .conversations
            .iter()
            .any(|w| matches!(w, RowWrite::Insert(c) if c.id == m.conversation));
        if !inserted {
            count_message(txn, tenant, m, change.still_open == Some(m.conversation)).await?;
        }
    }
    let mut rollups = super::metrics::Rollups::default();
    super::promises::write(txn, tenant, &change.promises, &mut rollups).await?;
    super::check_ins::sync(txn, change).await.map_err(failed)?;
    for d in &change.delivery_writes {
        write_delivery(txn, tenant, d).await?;
    }
    for d in &change.deliveries {
        rapport_events::timers::schedule(txn, &delivery_timer(tenant, d))
            .await
            .map_err(failed)?;
    }
    for t in &change.sla_timers {
        let timer = sla_timer(tenant, t);
        match t.due {
            Some(_) => rapport_events::timers::schedule(txn, &timer).await,
            None => rapport_events::timers::cancel(txn, &timer.tenant, &timer.key)
                .await
                .map(drop),
        }
        .map_err(failed)?;
    }
    for f in &change.metric_facts {
        super::metrics::record(txn, tenant, f, &mut rollups)
            .await
            .map_err(failed)?;
    }
    // Last of the rows this change locks: rows every change shares wait
    // only for a commit, in one key order.
    rollups.write(txn, tenant).await.map_err(failed)?;
    for envelope in &prepared.envelopes {
        txn.execute(&outbox::append_insert(envelope))
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// Writes a message's new delivery (and external id, when it had none)
/// onto the message as stored — an erasure since it was read stays — if
/// its delivery is still the one read.
async fn write_delivery(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    d: &DeliveryWrite,
) -> Result<(), CommitError> {
    let id = d.message.id.to_string();
    let Some(row) = messages::Entity::find_by_id((tenant.to_string(), id.clone()))
        .one(txn)
        .await
        .map_err(failed)?
    else {
        return Err(CommitError::VersionConflict);
    };
    let mut stored = to_message(row.clone()).map_err(encoding)?;
    if stored.delivery != d.expected {
        return Err(CommitError::VersionConflict);
    }
    stored.delivery = d.message.delivery.clone();
    if stored.external_id.is_none() {
        stored.external_id = d.message.external_id.clone();
    }
    let next = message_row(tenant, &stored).map_err(encoding)?;
    let updated = messages::Entity::update_many()
        .set(messages::ActiveModel {
            document: next.document,
            external_id: next.external_id,
            ..Default::default()
        })
        .filter(messages::Column::Tenant.eq(tenant.as_str()))
        .filter(messages::Column::Id.eq(id))
        .filter(messages::Column::Document.eq(row.document))
        .exec(txn)
        .await
        .map_err(clashing(Clash::DuplicateMessage))?;
    if updated.rows_affected == 1 {
        Ok(())
    } else {
        Err(CommitError::VersionConflict)
    }
}

/// The timer kind of outbound deliveries.
pub const DELIVER: &str = "conversations.deliver";

/// The durable timer of a delivery: keyed by the message (scheduling it
/// again replaces it), its payload the two ids.
pub(super) fn delivery_timer(tenant: &Tenant, d: &DeliveryDue) -> rapport_events::timers::Timer {
    rapport_events::timers::Timer {
        tenant: tenant.to_string(),
        key: format!("deliver:{}", d.message),
        kind: DELIVER.to_owned(),
        due: d.due,
        payload: format!("{} {}", d.conversation, d.message).into_bytes(),
    }
}

/// The timer kind of SLA warnings and breaches.
pub const SLA_ALERT: &str = "conversations.sla";

/// The durable timer of an SLA alert: keyed by (conversation, metric,
/// cycle, alert), so a clock that pauses, resumes or changes priority
/// reschedules it; its payload the same four.
pub(super) fn sla_timer(tenant: &Tenant, t: &SlaTimer) -> rapport_events::timers::Timer {
    let alert = match t.alert {
        Alert::Warning => "warning",
        Alert::Breach => "breach",
    };
    let metric = metric_name(t.metric);
    rapport_events::timers::Timer {
        tenant: tenant.to_string(),
        key: format!("sla:{}:{metric}:{}:{alert}", t.conversation, t.cycle),
        kind: SLA_ALERT.to_owned(),
        due: t.due.unwrap_or_default(),
        payload: format!("{} {metric} {} {alert}", t.conversation, t.cycle).into_bytes(),
    }
}

/// Counts message `m` in its conversation: an increment, so that messages
/// added concurrently do not conflict. `still_open`: the message was
/// threaded into the conversation as it was, open, without a versioned
/// write; if it is no longer open (resolved meanwhile), read again.
async fn count_message(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    m: &Message,
    still_open: bool,
) -> Result<(), CommitError> {
    use conversations::Column as C;
    let at = micros(m.create_time);
    let mut update = conversations::Entity::update_many()
        .col_expr(C::MessageCount, Expr::col(C::MessageCount).add(1))
        .col_expr(
            C::LastMessageTime,
            Expr::case(Expr::col(C::LastMessageTime).lt(at), at)
                .finally(Expr::col(C::LastMessageTime))
                .into(),
        )
        .filter(C::Tenant.eq(tenant.as_str()))
        .filter(C::Id.eq(m.conversation.to_string()));
    if still_open {
        update = update.filter(C::State.eq(State::Open.as_str()));
    }
    let updated = update.exec(txn).await.map_err(failed)?;
    if updated.rows_affected == 1 {
        Ok(())
    } else {
        Err(CommitError::VersionConflict)
    }
}

async fn write_thread(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    t: &ThreadWrite,
) -> Result<(), CommitError> {
    use sea_orm::ActiveValue::Set;
    use threads::Column as T;
    match t {
        ThreadWrite::Start {
            inbox,
            customer,
            conversation,
        } => {
            let row = threads::ActiveModel {
                tenant: Set(tenant.to_string()),
                inbox_id: Set(inbox.to_string()),
                customer: Set(customer.to_string()),
                conversation_id: Set(conversation.to_string()),
            };
            rapport_store::insert_row(row, txn)
                .await
                .map_err(clashing(Clash::Thread))
        }
        ThreadWrite::Continue {
            inbox,
            customer,
            from,
            to,
        } => {
            let updated = threads::Entity::update_many()
                .col_expr(T::ConversationId, Expr::value(to.to_string()))
                .filter(T::Tenant.eq(tenant.as_str()))
                .filter(T::InboxId.eq(inbox.to_string()))
                .filter(T::Customer.eq(customer.to_string()))
                .filter(T::ConversationId.eq(from.to_string()))
                .exec(txn)
                .await
                .map_err(failed)?;
            if updated.rows_affected == 1 {
                Ok(())
            } else {
                Err(CommitError::VersionConflict)
            }
        }
    }
}
