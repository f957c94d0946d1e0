//! sea-orm storage of the profiles domain: the only module that speaks SQL.
//!
//! A customer is one row: queryable columns (state, stage, display name,
//! times, search text) plus a JSON document with the rest of the profile.
//! Identities and tags have their own tables so the database enforces
//! identity uniqueness per tenant and tag filters use an index.
// Crate-visible for the bulk loader (`crate::seed`), which writes these rows directly.
pub(crate) mod entities;

use std::collections::HashMap;

use rapport_store::{
    Db, from_micros,
    group_commit::{BoxFuture, GroupCommit},
    idempotency, is_unique_violation, micros,
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait as _, DatabaseTransaction, DbErr, EntityName as _,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait as _, TransactionTrait,
    sea_query::{
        Alias, CommonTableExpression, Expr, ExprTrait as _, InsertStatement, LikeExpr, Query,
        WithClause,
    },
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    Error,
    model::*,
    repository::*,
    rules::{self, IdentityKind},
};
use entities::*;

/// The sea-orm repository.
#[derive(Debug, Clone)]
pub struct SqlRepository {
    db: Db,
    /// SQLite's one writer, folding concurrent commits into one transaction;
    /// `None` on PostgreSQL, where each commit has its own transaction.
    group: Option<GroupCommit<ChangeSet, CommitError>>,
}

impl SqlRepository {
    /// A repository over `db`. Spawns SQLite's writer task on the current
    /// tokio runtime.
    pub fn new(db: Db) -> Self {
        let group = (db.backend() == sea_orm::DatabaseBackend::Sqlite).then(|| {
            GroupCommit::spawn(db.writer.clone(), apply_boxed, |e| {
                CommitError::Failed(db_error(e))
            })
        });
        Self { db, group }
    }
}

/// The JSON document column.
#[derive(Serialize, Deserialize)]
struct Document {
    profile: Profile,
    consents: Vec<ConsentState>,
}

fn db_err(e: DbErr) -> Error {
    db_error(&e)
}

fn db_error(e: &DbErr) -> Error {
    match e {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => Error::Unavailable(e.to_string()),
        other => Error::Internal(other.to_string()),
    }
}

fn corrupt(what: &str, id: &str) -> Error {
    Error::Internal(format!("stored {what} {id} is unreadable"))
}

fn parse_uuid(s: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(s).map_err(|_| corrupt("id", s))
}

fn to_customer(row: customers::Model) -> Result<Customer, Error> {
    let doc: Document =
        serde_json::from_str(&row.document).map_err(|_| corrupt("customer", &row.id))?;
    Ok(Customer {
        id: CustomerId(parse_uuid(&row.id)?),
        profile: doc.profile,
        consents: doc.consents,
        lifecycle_stage: LifecycleStage::from_str_opt(&row.lifecycle_stage)
            .ok_or_else(|| corrupt("stage", &row.id))?,
        state: CustomerState::from_str_opt(&row.state).ok_or_else(|| corrupt("state", &row.id))?,
        merged_into: row
            .merged_into
            .as_deref()
            .map(parse_uuid)
            .transpose()?
            .map(CustomerId),
        create_time: from_micros(row.create_time),
        update_time: from_micros(row.update_time),
        version: row.version,
    })
}

pub(crate) fn to_row(tenant: &Tenant, c: &Customer) -> Result<customers::ActiveModel, Error> {
    let doc = serde_json::to_string(&Document {
        profile: c.profile.clone(),
        consents: c.consents.clone(),
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(customers::ActiveModel {
        tenant: Set(tenant.0.clone()),
        id: Set(c.id.to_string()),
        version: Set(c.version),
        state: Set(c.state.as_str().to_owned()),
        lifecycle_stage: Set(c.lifecycle_stage.as_str().to_owned()),
        display_name: Set(c.profile.display_name.clone()),
        search_text: Set(rules::search_text(&c.profile)),
        document: Set(doc),
        merged_into: Set(c.merged_into.map(|m| m.to_string())),
        create_time: Set(micros(c.create_time)),
        update_time: Set(micros(c.update_time)),
    })
}

fn to_consent_event(r: consent_events::Model) -> Result<ConsentEvent, Error> {
    Ok(ConsentEvent {
        id: ConsentEventId(parse_uuid(&r.id)?),
        customer: CustomerId(parse_uuid(&r.customer_id)?),
        channel: Channel::from_str_opt(&r.channel)
            .ok_or_else(|| corrupt("consent channel", &r.id))?,
        purpose: ConsentPurpose::from_str_opt(&r.purpose)
            .ok_or_else(|| corrupt("consent purpose", &r.id))?,
        status: ConsentStatus::from_str_opt(&r.status)
            .ok_or_else(|| corrupt("consent status", &r.id))?,
        source: r.source,
        evidence: r.evidence,
        capture_time: from_micros(r.capture_time),
        record_time: from_micros(r.record_time),
    })
}

fn to_lifecycle_event(r: lifecycle_events::Model) -> Result<LifecycleEvent, Error> {
    Ok(LifecycleEvent {
        id: LifecycleEventId(parse_uuid(&r.id)?),
        customer: CustomerId(parse_uuid(&r.customer_id)?),
        from_stage: LifecycleStage::from_str_opt(&r.from_stage),
        to_stage: LifecycleStage::from_str_opt(&r.to_stage)
            .ok_or_else(|| corrupt("lifecycle stage", &r.id))?,
        reason: r.reason,
        create_time: from_micros(r.create_time),
    })
}

fn to_merge_record(r: merge_records::Model) -> Result<MergeRecord, Error> {
    Ok(MergeRecord {
        id: MergeRecordId(parse_uuid(&r.id)?),
        survivor: CustomerId(parse_uuid(&r.survivor_id)?),
        merged: CustomerId(parse_uuid(&r.merged_id)?),
        create_time: from_micros(r.create_time),
    })
}

fn store_key(tenant: &Tenant, key: &Idempotency) -> idempotency::Key {
    idempotency::Key {
        tenant: tenant.0.clone(),
        method: key.method,
        request_id: key.request_id.clone(),
        fingerprint: key.fingerprint.clone(),
    }
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
    let failed = |e: DbErr| CommitError::Failed(db_err(e));
    if !fresh {
        identities::Entity::delete_many()
            .filter(identities::Column::Tenant.eq(&tenant.0))
            .filter(identities::Column::CustomerId.eq(&id))
            .exec(txn)
            .await
            .map_err(failed)?;
        tags::Entity::delete_many()
            .filter(tags::Column::Tenant.eq(&tenant.0))
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
            tenant: Set(tenant.0.clone()),
            kind: Set(key.kind.as_str().to_owned()),
            value: Set(key.value.clone()),
            match_key: Set(key.match_key.clone()),
            customer_id: Set(id.clone()),
        }))
        .into_query()
    });
    let tag_rows = (!c.profile.tags.is_empty()).then(|| {
        tags::Entity::insert_many(c.profile.tags.iter().map(|tag| tags::ActiveModel {
            tenant: Set(tenant.0.clone()),
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
        Some(first) => CommitError::IdentityTaken {
            kind: first.kind,
            value: first.value,
        },
        None => CommitError::Failed(Error::Internal(
            "identity clash for a customer without identities".to_owned(),
        )),
    }
}

/// [`apply`] in the shape [`GroupCommit`] takes.
fn apply_boxed<'t>(
    txn: &'t DatabaseTransaction,
    change: &'t ChangeSet,
) -> BoxFuture<'t, Result<(), CommitError>> {
    Box::pin(apply(txn, change))
}

/// Writes `change` in `txn`; a function of `change` alone, so that group
/// commit can run it again after rolling back another change's failure.
async fn apply(txn: &DatabaseTransaction, change: &ChangeSet) -> Result<(), CommitError> {
    let failed = |e: DbErr| CommitError::Failed(db_err(e));
    let tenant = &change.tenant;
    let now = micros(change.occur_time);
    let own_key = change
        .idempotency
        .as_ref()
        .map(|(key, _, _)| store_key(tenant, key));
    if let (Some(key), Some((_, subject, json))) = (&own_key, &change.idempotency) {
        // First write of the transaction: a concurrent twin blocks here
        // (PostgreSQL) or is serialized behind us (SQLite's one writer).
        if !idempotency::claim(txn, key, &subject.to_string(), json.clone(), now)
            .await
            .map_err(failed)?
        {
            return Err(CommitError::IdempotencyTaken);
        }
    }
    for write in &change.customers {
        match write {
            CustomerWrite::Insert(c) => {
                let row = to_row(tenant, c).map_err(CommitError::Failed)?;
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
                let row = to_row(tenant, c).map_err(CommitError::Failed)?;
                let result = customers::Entity::update_many()
                    .set(row)
                    .filter(customers::Column::Tenant.eq(&tenant.0))
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
        }
    }
    if let Some((from, to)) = change.move_history {
        let (from, to) = (from.to_string(), to.to_string());
        consent_events::Entity::update_many()
            .col_expr(consent_events::Column::CustomerId, Expr::value(to.clone()))
            .filter(consent_events::Column::Tenant.eq(&tenant.0))
            .filter(consent_events::Column::CustomerId.eq(&from))
            .exec(txn)
            .await
            .map_err(failed)?;
        lifecycle_events::Entity::update_many()
            .col_expr(
                lifecycle_events::Column::CustomerId,
                Expr::value(to.clone()),
            )
            .filter(lifecycle_events::Column::Tenant.eq(&tenant.0))
            .filter(lifecycle_events::Column::CustomerId.eq(&from))
            .exec(txn)
            .await
            .map_err(failed)?;
        // Stored results about the merged customer now concern the
        // survivor: erasing the survivor must remove them too.
        idempotency::Entity::update_many()
            .col_expr(idempotency::Column::Subject, Expr::value(to))
            .filter(idempotency::Column::Tenant.eq(&tenant.0))
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
            .filter(consent_events::Column::Tenant.eq(&tenant.0))
            .filter(consent_events::Column::CustomerId.eq(&id))
            .exec(txn)
            .await
            .map_err(failed)?;
        lifecycle_events::Entity::update_many()
            .col_expr(lifecycle_events::Column::Reason, Expr::value(""))
            .filter(lifecycle_events::Column::Tenant.eq(&tenant.0))
            .filter(lifecycle_events::Column::CustomerId.eq(&id))
            .exec(txn)
            .await
            .map_err(failed)?;
        // Stored results of earlier requests may hold the erased data;
        // this request's own result is the receipt.
        idempotency::forget_subject(txn, &tenant.0, &id, own_key.as_ref())
            .await
            .map_err(failed)?;
        rapport_store::insert_row(
            erasure_receipts::ActiveModel {
                tenant: Set(tenant.0.clone()),
                id: Set(r.id.to_string()),
                customer_id: Set(id),
                erased_fields: Set(serde_json::to_string(&r.erased_fields).unwrap_or_default()),
                erase_time: Set(micros(r.erase_time)),
            },
            txn,
        )
        .await
        .map_err(failed)?;
    }
    for insert in outbox_inserts(change) {
        txn.execute(&insert).await.map_err(failed)?;
    }
    Ok(())
}

/// The ledger and history rows `change` appends: consent decisions,
/// lifecycle events, the merge record.
fn history_inserts(change: &ChangeSet) -> Vec<InsertStatement> {
    let tenant = &change.tenant;
    let consents = change.consent_events.iter().map(|e| {
        consent_events::Entity::insert(consent_events::ActiveModel {
            tenant: Set(tenant.0.clone()),
            id: Set(e.id.to_string()),
            customer_id: Set(e.customer.to_string()),
            channel: Set(e.channel.as_str().to_owned()),
            purpose: Set(e.purpose.as_str().to_owned()),
            status: Set(e.status.as_str().to_owned()),
            source: Set(e.source.clone()),
            evidence: Set(e.evidence.clone()),
            capture_time: Set(micros(e.capture_time)),
            record_time: Set(micros(e.record_time)),
        })
        .into_query()
    });
    let stages = change.lifecycle_events.iter().map(|e| {
        lifecycle_events::Entity::insert(lifecycle_events::ActiveModel {
            tenant: Set(tenant.0.clone()),
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
            tenant: Set(tenant.0.clone()),
            id: Set(m.id.to_string()),
            survivor_id: Set(m.survivor.to_string()),
            merged_id: Set(m.merged.to_string()),
            create_time: Set(micros(m.create_time)),
        })
        .into_query()
    });
    consents.chain(stages).chain(merge).collect()
}

/// The outbox rows of `change`'s domain events.
fn outbox_inserts(change: &ChangeSet) -> Vec<InsertStatement> {
    change
        .events
        .iter()
        .map(|event| {
            let envelope = crate::events::envelope(&change.tenant, change.occur_time, event);
            rapport_store::outbox::append_insert(&envelope)
        })
        .collect()
}

/// The customers `change` creates.
fn inserted(change: &ChangeSet) -> impl Iterator<Item = &Customer> {
    change.customers.iter().filter_map(|w| match w {
        CustomerWrite::Insert(c) => Some(c),
        CustomerWrite::Update { .. } => None,
    })
}

/// Every INSERT of a change that only inserts rows (a create); `None` for a
/// change that also updates or deletes, which [`apply`] writes step by step.
fn insert_only(change: &ChangeSet) -> Result<Option<Vec<InsertStatement>>, CommitError> {
    // Decided before anything is built: most changes that are not creates
    // would otherwise build statements only to throw them away.
    let updates = change
        .customers
        .iter()
        .any(|w| matches!(w, CustomerWrite::Update { .. }));
    if updates || change.move_history.is_some() || change.erasure.is_some() {
        return Ok(None);
    }
    let tenant = &change.tenant;
    let mut inserts = Vec::new();
    if let Some((key, subject, json)) = &change.idempotency {
        inserts.push(idempotency::claim_insert(
            &store_key(tenant, key),
            &subject.to_string(),
            json.clone(),
            micros(change.occur_time),
        ));
    }
    for c in inserted(change) {
        let row = to_row(tenant, c).map_err(CommitError::Failed)?;
        inserts.push(customers::Entity::insert(row).into_query());
        let (identity_rows, tag_rows) = index_inserts(tenant, c);
        inserts.extend(identity_rows.into_iter().chain(tag_rows));
    }
    inserts.extend(history_inserts(change));
    inserts.extend(outbox_inserts(change));
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
    let Err(e) = writer.execute(&statement).await else {
        return Ok(());
    };
    let clashed = rapport_store::unique_violation_table(&e);
    Err(match inserted(change).next() {
        _ if clashed == Some(idempotency::Entity.table_name()) => CommitError::IdempotencyTaken,
        Some(c) if clashed == Some(identities::Entity.table_name()) => identity_taken(c),
        _ => CommitError::Failed(db_err(e)),
    })
}

/// Most rows a search fetches by rowid from the trigram index; a needle
/// found in more is common enough that walking the tenant in id order fills
/// a page sooner.
const SEARCH_CANDIDATES: u64 = 2_000;

impl SqlRepository {
    /// On SQLite, the rowids whose text has the needle's trigrams (a
    /// superset of the matches: the index knows no ESCAPE), when there are
    /// at most [`SEARCH_CANDIDATES`]; `None` when the index cannot narrow the
    /// search (PostgreSQL, needles under three characters, common needles).
    async fn search_candidates(&self, needle: &str) -> Result<Option<Vec<i64>>, Error> {
        if self.db.backend() != sea_orm::DatabaseBackend::Sqlite || needle.chars().count() < 3 {
            return Ok(None);
        }
        let rows = self
            .db
            .reader
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Sqlite,
                "SELECT rowid FROM customers_search WHERE search_text LIKE ? LIMIT ?",
                [
                    format!("%{needle}%").into(),
                    i64::try_from(SEARCH_CANDIDATES + 1)
                        .unwrap_or(i64::MAX)
                        .into(),
                ],
            ))
            .await
            .map_err(db_err)?;
        if rows.len() as u64 > SEARCH_CANDIDATES {
            return Ok(None);
        }
        rows.iter()
            .map(|r| r.try_get_by_index::<i64>(0).map_err(db_err))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

impl Repository for SqlRepository {
    async fn get(&self, tenant: &Tenant, id: CustomerId) -> Result<Option<Customer>, Error> {
        rapport_store::by_key(
            customers::Entity::find_by_id((tenant.0.clone(), id.to_string())),
            &self.db.reader,
        )
        .await
        .map_err(db_err)?
        .map(to_customer)
        .transpose()
    }

    async fn holders(
        &self,
        tenant: &Tenant,
        keys: &[(IdentityKind, String)],
    ) -> Result<Vec<(usize, CustomerId)>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Every OR term names the whole primary key (tenant, kind, value).
        // With the tenant factored out, PostgreSQL's generic plan for this
        // prepared statement used the key for the tenant only and read every
        // identity of the tenant (seen in pg_stat_user_tables during a bench).
        let mut any = Condition::any();
        for (kind, value) in keys {
            any = any.add(
                Condition::all()
                    .add(identities::Column::Tenant.eq(&tenant.0))
                    .add(identities::Column::Kind.eq(kind.as_str()))
                    .add(identities::Column::Value.eq(value.as_str())),
            );
        }
        let rows = identities::Entity::find()
            .filter(any)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?;
        let index: HashMap<(&str, &str), usize> = keys
            .iter()
            .enumerate()
            .map(|(i, (k, v))| ((k.as_str(), v.as_str()), i))
            .collect();
        let mut out = Vec::new();
        for r in &rows {
            if let Some(i) = index.get(&(r.kind.as_str(), r.value.as_str())) {
                out.push((*i, CustomerId(parse_uuid(&r.customer_id)?)));
            }
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    async fn list(
        &self,
        tenant: &Tenant,
        filter: &ListFilter,
        order: ListOrder,
        after: Option<&ListCursor>,
        limit: u32,
    ) -> Result<Vec<Customer>, Error> {
        use customers::Column as C;
        let mut q = customers::Entity::find()
            .filter(C::Tenant.eq(&tenant.0))
            .filter(C::State.eq(filter.state.as_str()));
        if let Some(stage) = filter.stage {
            q = q.filter(C::LifecycleStage.eq(stage.as_str()));
        }
        if let Some(tag) = &filter.tag {
            q = q.filter(
                C::Id.in_subquery(
                    Query::select()
                        .column(tags::Column::CustomerId)
                        .from(tags::Entity)
                        .and_where(tags::Column::Tenant.eq(&tenant.0))
                        .and_where(tags::Column::Tag.eq(tag.as_str()))
                        .to_owned(),
                ),
            );
        }
        if let Some(t) = filter.update_time_after {
            q = q.filter(C::UpdateTime.gt(micros(t)));
        }
        let col = match order.key {
            SortKey::CreateTime => C::CreateTime,
            SortKey::UpdateTime => C::UpdateTime,
            SortKey::DisplayName => C::DisplayName,
        };
        if let Some(cursor) = after {
            let value: sea_orm::Value = match order.key {
                SortKey::DisplayName => cursor.text.clone().unwrap_or_default().into(),
                _ => cursor.time.unwrap_or_default().into(),
            };
            let id = cursor.id.to_string();
            let keyset = if order.descending {
                Condition::any()
                    .add(col.lt(value.clone()))
                    .add(Condition::all().add(col.eq(value)).add(C::Id.lt(id)))
            } else {
                Condition::any()
                    .add(col.gt(value.clone()))
                    .add(Condition::all().add(col.eq(value)).add(C::Id.gt(id)))
            };
            q = q.filter(keyset);
        }
        q = if order.descending {
            q.order_by_desc(col).order_by_desc(C::Id)
        } else {
            q.order_by_asc(col).order_by_asc(C::Id)
        };
        q.limit(u64::from(limit))
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_customer)
            .collect()
    }

    async fn exact_matches(
        &self,
        tenant: &Tenant,
        match_keys: &[String],
    ) -> Result<Vec<Customer>, Error> {
        let ids: Vec<String> = identities::Entity::find()
            .filter(identities::Column::Tenant.eq(&tenant.0))
            .filter(identities::Column::MatchKey.is_in(match_keys.iter().cloned()))
            .limit(100)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|r| r.customer_id)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        customers::Entity::find()
            .filter(customers::Column::Tenant.eq(&tenant.0))
            .filter(customers::Column::Id.is_in(ids))
            .filter(customers::Column::State.eq(CustomerState::Active.as_str()))
            .order_by_asc(customers::Column::Id)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_customer)
            .collect()
    }

    async fn text_matches(
        &self,
        tenant: &Tenant,
        needle: &str,
        exclude: &[CustomerId],
        after: Option<CustomerId>,
        limit: u32,
    ) -> Result<Vec<Customer>, Error> {
        let escaped: String = needle
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let candidates = self.search_candidates(needle).await?;
        let mut q = customers::Entity::find();
        q = match candidates {
            // Few rows hold the needle's trigrams: fetch those by rowid. The
            // tenant is tested with a unary `+` so that SQLite cannot pick the
            // primary key's (tenant, id) order instead and scan the tenant.
            Some(rowids) => q
                .filter(Expr::cust_with_values(
                    "+\"customers\".\"tenant\" = ?",
                    [tenant.0.clone()],
                ))
                .filter(Expr::col((customers::Entity, Alias::new("rowid"))).is_in(rowids)),
            // Common needle, or PostgreSQL (whose planner has the statistics
            // to choose between its trigram index and the key order): walk
            // the tenant in id order; the first page fills quickly.
            None => q.filter(customers::Column::Tenant.eq(&tenant.0)),
        };
        q = q
            .filter(customers::Column::State.eq(CustomerState::Active.as_str()))
            .filter(
                customers::Column::SearchText
                    .like(LikeExpr::new(format!("%{escaped}%")).escape('\\')),
            );
        if !exclude.is_empty() {
            q = q.filter(customers::Column::Id.is_not_in(exclude.iter().map(|c| c.to_string())));
        }
        if let Some(after) = after {
            q = q.filter(customers::Column::Id.gt(after.to_string()));
        }
        q.order_by_asc(customers::Column::Id)
            .limit(u64::from(limit))
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_customer)
            .collect()
    }

    async fn consent_events(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        after: Option<LedgerCursor>,
        limit: u32,
    ) -> Result<Vec<ConsentEvent>, Error> {
        use consent_events::Column as C;
        let mut q = consent_events::Entity::find()
            .filter(C::Tenant.eq(&tenant.0))
            .filter(C::CustomerId.eq(customer.to_string()));
        if let Some((t, id)) = after {
            q = q.filter(
                Condition::any().add(C::CaptureTime.gt(t)).add(
                    Condition::all()
                        .add(C::CaptureTime.eq(t))
                        .add(C::Id.gt(id.to_string())),
                ),
            );
        }
        q.order_by_asc(C::CaptureTime)
            .order_by_asc(C::Id)
            .limit(u64::from(limit))
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_consent_event)
            .collect()
    }

    async fn lifecycle_events(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
        after: Option<LedgerCursor>,
        limit: u32,
    ) -> Result<Vec<LifecycleEvent>, Error> {
        use lifecycle_events::Column as C;
        let mut q = lifecycle_events::Entity::find()
            .filter(C::Tenant.eq(&tenant.0))
            .filter(C::CustomerId.eq(customer.to_string()));
        if let Some((t, id)) = after {
            q = q.filter(
                Condition::any().add(C::CreateTime.gt(t)).add(
                    Condition::all()
                        .add(C::CreateTime.eq(t))
                        .add(C::Id.gt(id.to_string())),
                ),
            );
        }
        q.order_by_asc(C::CreateTime)
            .order_by_asc(C::Id)
            .limit(u64::from(limit))
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_lifecycle_event)
            .collect()
    }

    async fn merge_records(
        &self,
        tenant: &Tenant,
        customer: CustomerId,
    ) -> Result<Vec<MergeRecord>, Error> {
        let id = customer.to_string();
        merge_records::Entity::find()
            .filter(merge_records::Column::Tenant.eq(&tenant.0))
            .filter(
                Condition::any()
                    .add(merge_records::Column::SurvivorId.eq(&id))
                    .add(merge_records::Column::MergedId.eq(&id)),
            )
            .order_by_asc(merge_records::Column::Id)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(to_merge_record)
            .collect()
    }

    async fn idempotent(&self, tenant: &Tenant, key: &Idempotency) -> Result<Option<Prior>, Error> {
        // Readers see every committed transaction (WAL on SQLite), so a
        // request that lost the claim race sees the winner's result here.
        let prior = idempotency::find(&self.db.reader, &store_key(tenant, key))
            .await
            .map_err(db_err)?;
        Ok(prior.map(|p| match p {
            idempotency::Prior::Replay(json) => Prior::Replay(json),
            idempotency::Prior::Mismatch => Prior::Mismatch,
        }))
    }

    async fn commit(&self, change: ChangeSet) -> Result<(), CommitError> {
        if let Some(group) = &self.group {
            return group.commit(change).await;
        }
        if let Some(inserts) = insert_only(&change)? {
            return commit_in_one_statement(&self.db.writer, &change, inserts).await;
        }
        let failed = |e: DbErr| CommitError::Failed(db_err(e));
        let txn = self.db.writer.begin().await.map_err(failed)?;
        match apply(&txn, &change).await {
            Ok(()) => txn.commit().await.map_err(failed),
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
