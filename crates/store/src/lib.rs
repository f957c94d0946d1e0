//! rapport-store: how a Rapport service reaches its database — one
//! `DatabaseConfig` and one `open` (SQLite or PostgreSQL by URL, the right
//! pool settings, migrations), SQLite's group commit, and the two tables
//! every service shares the shape of: the transactional outbox and
//! idempotency keys (with their purger). It holds no service's domain tables
//! and no transport code.
#![forbid(unsafe_code)]

pub mod config;
pub mod crash;
pub mod db;
pub mod failure;
pub mod group_commit;
pub mod idempotency;
pub mod metrics;
pub mod outbox;
pub mod schema;

pub use config::{DatabaseConfig, open};
pub use db::{Db, DbOptions, readiness, with_database};
pub use failure::{DbFailure, FromDbFailure, WHOLE_REQUEST, classify, to_error};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Select, SqlErr,
};

/// Inserts one row without `RETURNING` it.
///
/// Why: `ActiveModel::insert` reads the row back, and on SQLite every
/// returned row is one more message between the async caller and sqlx's
/// worker thread for that connection; a create writes six rows.
pub async fn insert_row<A, C>(row: A, conn: &C) -> Result<(), DbErr>
where
    A: ActiveModelTrait + Send,
    C: ConnectionTrait,
{
    A::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(())
}

/// The row a primary key names, if any: `select.one()` without its `LIMIT`.
///
/// Why not `.one()`: it binds its `LIMIT 1` as a parameter, and SQLite reads
/// a bound LIMIT's value while planning, so every execution of the cached
/// statement is parsed and planned again (`sqlite3Reprepare` was 11 % of the
/// profiles service's CPU on GetCustomer). A lookup by a whole primary key
/// returns at most one row anyway.
pub async fn by_key<E: EntityTrait, C: ConnectionTrait>(
    select: Select<E>,
    conn: &C,
) -> Result<Option<E::Model>, DbErr> {
    Ok(select.all(conn).await?.into_iter().next())
}

/// Which way a keyset page runs over its key column, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seek {
    /// Ascending, from the first key or after this one.
    After(Option<String>),
    /// Descending, from the last key or before this one.
    Before(Option<String>),
}

/// The page a list asks for: where it runs from, and how many rows at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Direction and cursor.
    pub seek: Seek,
    /// Rows at most.
    pub limit: u32,
}

impl Page {
    /// Ascending, after `cursor` (a list's page token) when there is one.
    pub fn after(cursor: Option<impl std::fmt::Display>, limit: u32) -> Self {
        let seek = Seek::After(cursor.map(|c| c.to_string()));
        Self { seek, limit }
    }

    /// Descending, before `cursor` (a list's page token) when there is one.
    pub fn before(cursor: Option<impl std::fmt::Display>, limit: u32) -> Self {
        let seek = Seek::Before(cursor.map(|c| c.to_string()));
        Self { seek, limit }
    }
}

/// A table whose rows are listed per tenant in keyset pages: which column
/// names the tenant and which unique, time-ordered key the pages run over.
/// Why a trait: every list of every service filters by the one and pages by
/// the other, so naming them once per table leaves a list only its own
/// filters (see [`tenant_page`]).
pub trait TenantKeyed: EntityTrait {
    /// The tenant every query of the table is scoped to.
    const TENANT: Self::Column;
    /// The key [`keyset_page`] runs over.
    const KEY: Self::Column;
}

/// [`TenantKeyed`] for the `Entity` of each named entity module whose
/// tenant column is `Tenant` and whose key is `Id` (every listed table's
/// shape).
#[macro_export]
macro_rules! tenant_keyed {
    ($($table:ident),+ $(,)?) => {
        $(impl $crate::TenantKeyed for $table::Entity {
            const TENANT: $table::Column = $table::Column::Tenant;
            const KEY: $table::Column = $table::Column::Id;
        })+
    };
}

/// One keyset page of tenant `tenant`'s rows of `select` (a list's own
/// filters, without the tenant's), each read by `row`: the one shape of
/// every service's list query, database errors classified by [`to_error`].
pub async fn tenant_page<E, T, Er, C>(
    tenant: &rapport_usecase::Tenant,
    select: Select<E>,
    page: Page,
    conn: &C,
    row: impl FnMut(E::Model) -> Result<T, Er>,
) -> Result<Vec<T>, Er>
where
    E: TenantKeyed,
    Er: FromDbFailure,
    C: ConnectionTrait,
{
    keyset_page(
        select.filter(E::TENANT.eq(tenant.as_str())),
        E::KEY,
        page.seek,
        page.limit,
        conn,
    )
    .await
    .map_err(|e| to_error(&e))?
    .into_iter()
    .map(row)
    .collect()
}

/// Tenant `tenant`'s row of `select` (narrowed to one by a unique key, or
/// ordered so that the first is the one wanted), read by `row`: the one
/// shape of every service's single-row read.
pub async fn tenant_one<E, T, Er, C>(
    tenant: &rapport_usecase::Tenant,
    select: Select<E>,
    conn: &C,
    row: impl FnOnce(E::Model) -> Result<T, Er>,
) -> Result<Option<T>, Er>
where
    E: TenantKeyed,
    Er: FromDbFailure,
    C: ConnectionTrait,
{
    select
        .filter(E::TENANT.eq(tenant.as_str()))
        .one(conn)
        .await
        .map_err(|e| to_error(&e))?
        .map(row)
        .transpose()
}

/// One keyset page of `select`: at most `limit` rows ordered by `key` (a
/// unique column, the resource's time-ordered id) in `seek`'s direction,
/// past its cursor. Why keyset and not OFFSET: a page costs the same
/// however deep it is (a customer's history of a million messages), and a
/// row written meanwhile never shifts the next page.
pub async fn keyset_page<E, K, C>(
    select: Select<E>,
    key: K,
    seek: Seek,
    limit: u32,
    conn: &C,
) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    K: ColumnTrait,
    C: ConnectionTrait,
{
    let select = match seek {
        Seek::After(cursor) => cursor
            .into_iter()
            .fold(select, |q, c| q.filter(key.gt(c)))
            .order_by_asc(key),
        Seek::Before(cursor) => cursor
            .into_iter()
            .fold(select, |q, c| q.filter(key.lt(c)))
            .order_by_desc(key),
    };
    select.limit(u64::from(limit)).all(conn).await
}

/// Whether `err` is a unique-constraint violation (a lost insert race or a
/// duplicate key), on either backend.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// The table whose unique constraint `err` violated, when the database says
/// (PostgreSQL does): tells which insert of a multi-table statement clashed.
pub fn unique_violation_table(err: &DbErr) -> Option<&str> {
    if !is_unique_violation(err) {
        return None;
    }
    match err {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e.as_database_error()?.table(),
        _ => None,
    }
}

/// Microseconds since the Unix epoch: how every timestamp is stored, so that
/// ordering and keyset comparisons are exact and identical on SQLite and
/// PostgreSQL.
pub fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// The inverse of [`micros`].
pub fn from_micros(us: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or_default()
}
