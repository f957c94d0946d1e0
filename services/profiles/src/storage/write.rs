//! Writing a change: one transaction holding the customer rows, their
//! identity and tag indexes, the ledgers, the idempotency claim and the
//! outbox rows. On SQLite the change joins the group commit of the one
//! writer; on PostgreSQL a create is one statement and every other change
//! its own transaction.
use rapport_store::{group_commit::BoxFuture, idempotency, is_unique_violation, micros, outbox};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait as _, DatabaseTransaction, DbErr, EntityName as _, EntityTrait,
    QueryFilter, QueryTrait as _, TransactionTrait,
    sea_query::{Alias, CommonTableExpression, Expr, InsertStatement, Query, WithClause},
};

use super::{
    SqlRepository, cycle,
    entities::*,
    rows::{db_err, to_row},
};
use crate::domain::{Error, model::*, repository::*, rules};
use rapport_events::timers;
use rapport_proto::types::EventEnvelope;

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
        let erasure = change.erasure.is_some();
        let result = self.write_change(change).await;
        if events && result.is_ok() {
            self.wake.wake();
        }
        if erasure && result.is_ok() {
            // Before answering: the client is told the data is gone.
            self.db.scrub_after_erasure().await;
        }
        result
    }

    async fn write_change(&self, change: ChangeSet) -> Result<(), CommitError> {
        let trace = rapport_telemetry::propagation::current_traceparent();
        // Every change here is a request's: nothing caused it but the request.
        let envelopes = outbox::envelopes(
            self.encode,
            |event: &DomainEvent| version_after(&change, event.customer()),
            change.tenant.as_str(),
            change.occur_time,
            &trace,
            None,
            &change.events,
        )
        .map_err(failed)?;
        let prepared = Prepared { change, envelopes };
        if let Some(group) = &self.group {
            return group.commit(prepared).await;
        }
        if let Some(inserts) = insert_only(&prepared)? {
            return commit_in_one_statement(&self.db.writer, &prepared.change, inserts).await;
        }
        let txn = self.db.writer.begin().await.map_err(failed)?;
        match apply(&txn, &prepared).await {
            Ok(()) => {
                rapport_store::crash::point("write.before_commit");
                txn.commit().await.map_err(failed)?;
                rapport_store::crash::point("write.after_commit");
                Ok(())
            }
            Err(e) => {
                // Dropping would roll back too; doing it explicitly returns
                // the connection promptly and surfaces rollback failures in logs.
                if let Err(rb) = txn.rollback().await {
                    tracing::warn!(error = %rb, "rollback failed");
                }
                Err(e)
            }
        }
    }
}

/// The version `customer` has once `change` commits, from its row in the
/// change: the per-subject order of its events. Each change of a customer
/// writes its row with the version it read plus one, guarded by that version,
/// so versions grow by one per committed change in commit order (a create is
/// version 1). `None` when the change writes no row of `customer`.
fn version_after(change: &ChangeSet, customer: CustomerId) -> Option<u64> {
    change
        .customers
        .iter()
        .filter_map(|write| match write {
            CustomerWrite::Insert(c) | CustomerWrite::Update { customer: c, .. } => Some(c),
            CustomerWrite::Unchanged { .. } => None,
        })
        .find(|c| c.id == customer)
        .and_then(|c| u64::try_from(c.version).ok())
}

/// A database failure of a commit.
pub(super) fn failed(e: DbErr) -> CommitError {
    // A deadlock (two merges locking the same customers in opposite order)
    // or a serialization conflict is a version conflict: read again, retry.
    rapport_store::group_commit::commit_error(&e, |e| Clash::Failed(super::rows::db_error(e)))
}

/// Writes the identity and tag index rows of one customer; `fresh` for a new
/// customer (nothing to delete first). Each table takes one multi-row insert.
async fn write_indexes(
    txn: &DatabaseTransaction,
    tenant: &Tenant,
    c: &Customer,
    fresh: bool,
) -> Result<(), CommitError> {
    let id = c.id.to_string();
    if !fresh {
        identities::Entity::delete_many()
            .filter(identities::Column::Tenant.eq(tenant.as_str()))
            .filter(identities::Column::CustomerId.eq(&id))
            .exec(txn)
            .await
            .map_err(failed)?;
        tags::Entity::delete_many()
            .filter(tags::Column::Tenant.eq(tenant.as_str()))
            .filter(tags::Column::CustomerId.eq(&id))
            .exec(txn)
            .await
            .map_err(failed)?;
    }
    // Tombstones hold no identities (merged ones moved to the survivor,
    // erased ones are free for anyone to use again): `index_inserts` gives
    // none for them.
    let (identity_rows, tag_rows) = index_inserts(tenant, c);
    if let Some(insert) = identity_rows
        && let Err(e) = txn.execute(&insert).await
    {
        // Which row clashed cannot be asked inside this (now failed)
        // transaction. The use-case looks the first one up afterwards and,
        // if it is free, re-checks every identity before retrying, which
        // names the real holder.
        return Err(if is_unique_violation(&e) {
            identity_taken(c)
        } else {
            failed(e)
        });
    }
    if let Some(insert) = tag_rows {
        txn.execute(&insert).await.map_err(failed)?;
    }
    Ok(())
}

/// The identity and tag index rows of an active customer: one multi-row
/// INSERT per table, `None` where it has none.
fn index_inserts(
    tenant: &Tenant,
    c: &Customer,
) -> (Option<InsertStatement>, Option<InsertStatement>) {
    if c.state != CustomerState::Active {
        return (None, None);
    }
    let id = c.id.to_string();
    let keys = rules::identity_keys(&c.profile, "");
    let identity_rows = (!keys.is_empty()).then(|| {
        identities::Entity::insert_many(keys.iter().map(|key| identities::ActiveModel {
            tenant: Set(tenant.to_string()),
            kind: Set(key.kind.as_str().to_owned()),
            value: Set(key.value.clone()),
            match_key: Set(key.match_key.clone()),
            customer_id: Set(id.clone()),
        }))
        .into_query()
    });
    let tag_rows = (!c.profile.tags.is_empty()).then(|| {
        tags::Entity::insert_many(c.profile.tags.iter().map(|tag| tags::ActiveModel {
            tenant: Set(tenant.to_string()),
            tag: Set(tag.as_str().to_owned()),
            customer_id: Set(id.clone()),
        }))
        .into_query()
    });
    (identity_rows, tag_rows)
}

/// A clash on the identities of `c`, named by its first identity (see
/// [`write_indexes`] for why the first).
fn identity_taken(c: &Customer) -> CommitError {
    match rules::identity_keys(&c.profile, "").into_iter().next() {
        Some(first) => CommitError::Other(Clash::IdentityTaken {
            kind: first.kind,
            value: first.value,
        }),
        None => CommitError::Other(Clash::Failed(Error::Internal(
            "identity clash for a customer without identities".to_owned(),
        ))),
    }
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
async fn apply(txn: &DatabaseTransaction, prepared: &Prepared) -> Result<(), CommitError> {
    let change = &prepared.change;
    let tenant = &change.tenant;
    let now = micros(change.occur_time);
    if let Some(claim) = &change.claim {
        // First write of the transaction: a concurrent twin blocks here
        // (PostgreSQL) or is serialized behind us (SQLite's one writer).
        if !idempotency::claim(txn, tenant, claim, now)
            .await
            .map_err(failed)?
        {
            return Err(CommitError::KeyTaken);
        }
    }
    for write in &change.customers {
        match write {
            CustomerWrite::Insert(c) => {
                let row = to_row(tenant, c).map_err(|e| CommitError::Other(Clash::Failed(e)))?;
                customers::Entity::insert(row)
                    .exec_without_returning(txn)
                    .await
                    .map_err(failed)?;
                write_indexes(txn, tenant, c, true).await?;
            }
            CustomerWrite::Update {
                customer: c,
                expected_version,
            } => {
                let row = to_row(tenant, c).map_err(|e| CommitError::Other(Clash::Failed(e)))?;
                let result = customers::Entity::update_many()
                    .set(row)
                    .filter(customers::Column::Tenant.eq(tenant.as_str()))
                    .filter(customers::Column::Id.eq(c.id.to_string()))
                    .filter(customers::Column::Version.eq(*expected_version))
                    .exec(txn)
                    .await
                    .map_err(failed)?;
                if result.rows_affected != 1 {
                    return Err(CommitError::VersionConflict);
                }
                write_indexes(txn, tenant, c, false).await?;
            }
            CustomerWrite::Unchanged {
                customer,
                expected_version,
            } => {
                // Writes the version it read back: nothing changes, but the
                // row is locked (PostgreSQL) and the version checked, so a
                // change that committed since the read (an erasure, a merge)
                // fails this one instead of letting it add data to a
                // customer that is gone. The customer's row is written before
                // the ledgers below, so an erasure's scrub in a concurrent
                // transaction runs only after this commits or after it fails.
                let result = customers::Entity::update_many()
                    .col_expr(customers::Column::Version, Expr::value(*expected_version))
                    .filter(customers::Column::Tenant.eq(tenant.as_str()))
                    .filter(customers::Column::Id.eq(customer.to_string()))
                    .filter(customers::Column::Version.eq(*expected_version))
                    .exec(txn)
                    .await
                    .map_err(failed)?;
                if result.rows_affected != 1 {
                    return Err(CommitError::VersionConflict);
                }
            }
        }
    }
    if let Some((from, to)) = change.move_history {
        let (from, to) = (from.to_string(), to.to_string());
        consent_events::Entity::update_many()
            .col_expr(consent_events::Column::CustomerId, Expr::value(to.clone()))
            .filter(consent_events::Column::Tenant.eq(tenant.as_str()))
            .filter(consent_events::Column::CustomerId.eq(&from))
            .exec(txn)
            .await
            .map_err(failed)?;
        lifecycle_events::Entity::update_many()
            .col_expr(
                lifecycle_events::Column::CustomerId,
                Expr::value(to.clone()),
            )
            .filter(lifecycle_events::Column::Tenant.eq(tenant.as_str()))
            .filter(lifecycle_events::Column::CustomerId.eq(&from))
            .exec(txn)
            .await
            .map_err(failed)?;
        // Stored results about the merged customer now concern the
        // survivor: erasing the survivor must remove them too.
        idempotency::Entity::update_many()
            .col_expr(idempotency::Column::Subject, Expr::value(to))
            .filter(idempotency::Column::Tenant.eq(tenant.as_str()))
            .filter(idempotency::Column::Subject.eq(&from))
            .exec(txn)
            .await
            .map_err(failed)?;
    }
    for insert in history_inserts(change) {
        txn.execute(&insert).await.map_err(failed)?;
    }
    if let Some(r) = &change.erasure {
        let id = r.customer.to_string();
        consent_events::Entity::update_many()
            .col_expr(consent_events::Column::Source, Expr::value(""))
            .col_expr(consent_events::Column::Evidence, Expr::value(""))
            .filter(consent_events::Column::Tenant.eq(tenant.as_str()))
            .filter(consent_events::Column::CustomerId.eq(&id))
            .exec(txn)
            .await
            .map_err(failed)?;
        lifecycle_events::Entity::update_many()
            .col_expr(lifecycle_events::Column::Reason, Expr::value(""))
            .filter(lifecycle_events::Column::Tenant.eq(tenant.as_str()))
            .filter(lifecycle_events::Column::CustomerId.eq(&id))
            .exec(txn)
            .await
            .map_err(failed)?;
        // Stored results of earlier requests may hold the erased data;
        // this request's own result is the receipt.
        idempotency::forget_subject(txn, tenant, &id, change.claim.as_ref().map(|c| &c.key))
            .await
            .map_err(failed)?;
        rapport_store::insert_row(
            erasure_receipts::ActiveModel {
                tenant: Set(tenant.to_string()),
                id: Set(r.id.to_string()),
                customer_id: Set(id),
                erased_fields: Set(serde_json::to_string(&r.erased_fields).unwrap_or_default()),
                erase_time: Set(micros(r.erase_time)),
                awaited_services: Set(serde_json::to_string(&r.awaited).unwrap_or_default()),
                complete_time: Set(r.complete_time.map(micros)),
            },
            txn,
        )
        .await
        .map_err(failed)?;
        for confirmation in &r.confirmations {
            cycle::insert_confirmation(txn, tenant, r.id, confirmation)
                .await
                .map_err(failed)?;
        }
        if let Some(due) = change.erasure_overdue {
            timers::schedule(txn, &cycle::overdue_timer(tenant, r.id, due))
                .await
                .map_err(failed)?;
        }
    }
    for timer in &change.birthdays {
        cycle::apply_birthday(txn, tenant, timer)
            .await
            .map_err(failed)?;
    }
    for envelope in &prepared.envelopes {
        txn.execute(&outbox::append_insert(envelope))
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// The ledger and history rows `change` appends: consent decisions,
/// lifecycle events, the merge record.
fn history_inserts(change: &ChangeSet) -> Vec<InsertStatement> {
    let tenant = &change.tenant;
    let consents = change.consent_events.iter().map(|e| {
        consent_events::Entity::insert(consent_events::ActiveModel {
            tenant: Set(tenant.to_string()),
            id: Set(e.id.to_string()),
            customer_id: Set(e.customer.to_string()),
            channel: Set(e.channel.as_str().to_owned()),
            purpose: Set(e.purpose.as_str().to_owned()),
            status: Set(e.status.as_str().to_owned()),
            source: Set(e.source.clone()),
            evidence: Set(e.evidence.clone()),
            capture_time: Set(micros(e.capture_time)),
            record_time: Set(micros(e.record_time)),
            privacy_notice_version: Set(e.privacy_notice_version.clone()),
        })
        .into_query()
    });
    let stages = change.lifecycle_events.iter().map(|e| {
        lifecycle_events::Entity::insert(lifecycle_events::ActiveModel {
            tenant: Set(tenant.to_string()),
            id: Set(e.id.to_string()),
            customer_id: Set(e.customer.to_string()),
            from_stage: Set(e.from_stage.map(|s| s.as_str()).unwrap_or("").to_owned()),
            to_stage: Set(e.to_stage.as_str().to_owned()),
            reason: Set(e.reason.clone()),
            create_time: Set(micros(e.create_time)),
        })
        .into_query()
    });
    let merge = change.merge_record.iter().map(|m| {
        merge_records::Entity::insert(merge_records::ActiveModel {
            tenant: Set(tenant.to_string()),
            id: Set(m.id.to_string()),
            survivor_id: Set(m.survivor.to_string()),
            merged_id: Set(m.merged.to_string()),
            create_time: Set(micros(m.create_time)),
        })
        .into_query()
    });
    consents.chain(stages).chain(merge).collect()
}

/// The customers `change` creates.
fn inserted(change: &ChangeSet) -> impl Iterator<Item = &Customer> {
    change.customers.iter().filter_map(|w| match w {
        CustomerWrite::Insert(c) => Some(c),
        CustomerWrite::Update { .. } | CustomerWrite::Unchanged { .. } => None,
    })
}

/// Every INSERT of a change that only inserts rows (a create); `None` for a
/// change that also updates or deletes, which [`apply`] writes step by step.
fn insert_only(prepared: &Prepared) -> Result<Option<Vec<InsertStatement>>, CommitError> {
    let change = &prepared.change;
    // Decided before anything is built: most changes that are not creates
    // would otherwise build statements only to throw them away.
    let updates = change
        .customers
        .iter()
        .any(|w| !matches!(w, CustomerWrite::Insert(_)));
    if updates || change.move_history.is_some() || change.erasure.is_some() {
        return Ok(None);
    }
    let tenant = &change.tenant;
    let mut inserts = Vec::new();
    if let Some(claim) = &change.claim {
        inserts.push(idempotency::claim_insert(
            tenant,
            claim,
            micros(change.occur_time),
        ));
    }
    for c in inserted(change) {
        let row = to_row(tenant, c).map_err(|e| CommitError::Other(Clash::Failed(e)))?;
        inserts.push(customers::Entity::insert(row).into_query());
        let (identity_rows, tag_rows) = index_inserts(tenant, c);
        inserts.extend(identity_rows.into_iter().chain(tag_rows));
    }
    inserts.extend(history_inserts(change));
    // A new customer's birthday: only schedules (nothing to cancel yet).
    for timer in &change.birthdays {
        if let BirthdayTimer::Schedule {
            customer,
            year,
            due,
        } = timer
        {
            inserts.push(timers::schedule_statement(&cycle::birthday_timer(
                tenant, *customer, *year, *due,
            )));
        }
    }
    inserts.extend(prepared.envelopes.iter().map(outbox::append_insert));
    Ok(Some(inserts))
}

/// PostgreSQL: `inserts` as one statement, each INSERT a data-modifying CTE
/// of `WITH … SELECT 1`, run in its own implicit transaction: one round trip
/// instead of one per statement plus BEGIN and COMMIT (a create was eight
/// round trips, and pgbench runs that shape 5× slower than one row). All or
/// nothing, like the transaction it replaces. The sub-statements run
/// together, so a clash is told by the table whose unique key it hit.
async fn commit_in_one_statement(
    writer: &sea_orm::DatabaseConnection,
    change: &ChangeSet,
    inserts: Vec<InsertStatement>,
) -> Result<(), CommitError> {
    let mut with = WithClause::new();
    for (i, insert) in inserts.into_iter().enumerate() {
        // Built in place: the builder's `to_owned()` would copy the INSERT.
        let mut cte = CommonTableExpression::new();
        cte.query(insert).table_name(Alias::new(format!("w{i}")));
        with.cte(cte);
    }
    let statement = with.query(Query::select().expr(Expr::cust("1")).to_owned());
    // Nothing is committed before the statement runs, all of it after.
    rapport_store::crash::point("write.before_commit");
    let Err(e) = writer.execute(&statement).await else {
        rapport_store::crash::point("write.after_commit");
        return Ok(());
    };
    let clashed = rapport_store::unique_violation_table(&e);
    Err(match inserted(change).next() {
        _ if clashed == Some(idempotency::Entity.table_name()) => CommitError::KeyTaken,
        Some(c) if clashed == Some(identities::Entity.table_name()) => identity_taken(c),
        _ => CommitError::Other(Clash::Failed(db_err(e))),
    })
}
