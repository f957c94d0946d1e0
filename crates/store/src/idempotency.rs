//! Idempotency keys, kept in the service's own database so that the key and
//! the change it guards commit in one transaction: the database side of
//! `rapport_usecase::write`.
//!
//! Protocol: inside the write transaction, [`claim`] inserts the key first,
//! with the result it will answer (the use-cases know it before they write).
//! If another request already holds the key, the insert fails (on PostgreSQL
//! it waits for that transaction to finish first), the caller rolls back and
//! answers from [`find`]. A request whose change fails rolls the key back with
//! it, so a retry runs again. One statement, not an insert and a later update:
//! every statement of a create is a round trip (to sqlx's worker thread on
//! SQLite, to the server on PostgreSQL), and creates are made of them.
use std::time::Duration;

use rapport_usecase::{Claim, Idempotency, Prior, Tenant};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryTrait,
    entity::prelude::*,
};

use crate::Db;

/// Idempotency row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// Tenant.
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    /// gRPC method.
    #[sea_orm(primary_key, auto_increment = false)]
    pub method: String,
    /// Client request id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// Request fingerprint.
    pub fingerprint: String,
    /// Resource id the result is about.
    pub subject: String,
    /// Stored result (JSON). NULL only in rows written before the result
    /// was stored with the claim; read as "no result".
    pub response: Option<String>,
    /// µs since the epoch.
    pub create_time: i64,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Looks the key up outside any write transaction. Readers see every
/// committed transaction (WAL on SQLite), so a request that lost the claim
/// race sees the winner's result here.
pub async fn find<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    key: &Idempotency,
) -> Result<Option<Prior>, DbErr> {
    let row = crate::by_key(
        Entity::find_by_id((
            tenant.to_string(),
            key.method.to_owned(),
            key.request_id.clone(),
        )),
        conn,
    )
    .await?;
    Ok(row.and_then(|r| {
        if r.response.as_deref() == Some(ERASED) {
            // Whatever the fingerprint (blanked by the erasure): the key was
            // used, and its result is gone.
            Some(Prior::Erased { subject: r.subject })
        } else if r.fingerprint != key.fingerprint {
            Some(Prior::Mismatch)
        } else {
            r.response.map(Prior::Replay)
        }
    }))
}

/// Inserts the claim as the first write of a transaction; it counts only if
/// the transaction commits. `Ok(false)` means another request holds the key:
/// roll back and answer from [`find`].
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    claim: &Claim,
    now_micros: i64,
) -> Result<bool, DbErr> {
    match conn.execute(&claim_insert(tenant, claim, now_micros)).await {
        Ok(_) => Ok(true),
        Err(e) if crate::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The INSERT [`claim`] runs, for a caller that sends it together with
/// other statements; a unique violation on this table means the key is
/// taken.
pub fn claim_insert(
    tenant: &Tenant,
    claim: &Claim,
    now_micros: i64,
) -> sea_orm::sea_query::InsertStatement {
    Entity::insert(ActiveModel {
        tenant: Set(tenant.to_string()),
        method: Set(claim.key.method.to_owned()),
        request_id: Set(claim.key.request_id.clone()),
        fingerprint: Set(claim.key.fingerprint.clone()),
        subject: Set(claim.subject.clone()),
        response: Set(Some(claim.result.clone())),
        create_time: Set(now_micros),
    })
    .into_query()
}

/// The stored result of a key whose subject was erased. Results are JSON
/// documents; this bare word is not one, so no result is ever mistaken for it.
pub const ERASED: &str = "erased";

/// Replaces the stored result of every key about `subject` (results may hold
/// personal data that an erasure must remove) with the tombstone [`ERASED`],
/// except `keep`: the erasing request's own key, claimed earlier in the same
/// transaction, whose result is the receipt.
///
/// Why a tombstone and not a delete: a deleted key is a free key, and a late
/// retry of the request that created the subject (a sync job retrying a
/// create that timed out) would create the erased person again from the
/// personal data it carries. A tombstone answers that retry "erased" for as
/// long as keys are kept ([`RETENTION`]). It keeps the tenant, method,
/// request id and subject id only: the fingerprint (a hash of the request,
/// personal data too) is blanked.
pub async fn forget_subject<C: ConnectionTrait>(
    conn: &C,
    tenant: &Tenant,
    subject: &str,
    keep: Option<&Idempotency>,
) -> Result<u64, DbErr> {
    let mut update = Entity::update_many()
        .col_expr(Column::Response, sea_orm::sea_query::Expr::value(ERASED))
        .col_expr(Column::Fingerprint, sea_orm::sea_query::Expr::value(""))
        .filter(Column::Tenant.eq(tenant.as_str()))
        .filter(Column::Subject.eq(subject));
    if let Some(k) = keep {
        update = update.filter(
            sea_orm::Condition::any()
                .add(Column::Method.ne(k.method))
                .add(Column::RequestId.ne(k.request_id.clone())),
        );
    }
    let r = update.exec(conn).await?;
    Ok(r.rows_affected)
}

/// Most keys one purge statement deletes. Why: on SQLite every write goes
/// through one writer connection, and one DELETE of a day's expired keys
/// held it for longer than other writes wait for it (`acquire_timeout_ms`),
/// failing them; many short statements let the writes queue in between.
pub const PURGE_BATCH: u64 = 1_000;

/// Deletes keys recorded before `cutoff_micros`, [`PURGE_BATCH`] at a time.
/// Keys are kept at least 24 h.
pub async fn purge_before<C: ConnectionTrait>(conn: &C, cutoff_micros: i64) -> Result<u64, DbErr> {
    let mut total = 0;
    loop {
        let deleted = purge_batch(conn, cutoff_micros, PURGE_BATCH).await?;
        total += deleted;
        if deleted < PURGE_BATCH {
            return Ok(total);
        }
        // Let the writes that queued behind this statement go first.
        tokio::task::yield_now().await;
    }
}

/// Deletes at most `limit` keys recorded before `cutoff_micros`: one short
/// statement (row values, which both backends support).
pub async fn purge_batch<C: ConnectionTrait>(
    conn: &C,
    cutoff_micros: i64,
    limit: u64,
) -> Result<u64, DbErr> {
    let backend = conn.get_database_backend();
    let (cutoff, max) = match backend {
        sea_orm::DatabaseBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    let sql = format!(
        "DELETE FROM idempotency_keys WHERE (tenant, method, request_id) IN \
         (SELECT tenant, method, request_id FROM idempotency_keys \
          WHERE create_time < {cutoff} LIMIT {max})"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let r = conn
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            [cutoff_micros.into(), limit.into()],
        ))
        .await?;
    Ok(r.rows_affected())
}

/// Idempotency keys are promised for at least 24 hours; keeping them 48 gives
/// clients retrying across a day boundary some slack.
pub const RETENTION: Duration = Duration::from_secs(48 * 3600);

/// How often expired keys are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Starts deleting keys older than [`RETENTION`] once an hour (the first
/// time right away) until the returned task is aborted. Every service that
/// stores keys runs one, or its table grows forever.
pub fn spawn_purger(db: Db) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_EVERY);
        loop {
            tick.tick().await;
            let cutoff = chrono::Utc::now() - RETENTION;
            match purge_before(&db.writer, cutoff.timestamp_micros()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "purged expired idempotency keys"),
                Err(e) => tracing::warn!(error = %e, "purging idempotency keys failed; will retry"),
            }
        }
    })
}
