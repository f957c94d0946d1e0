//! rapport-store: how a Rapport service reaches its database — connect by URL
//! (SQLite or PostgreSQL) with the right pool settings, run migrations, and the
//! two tables every service shares the shape of: the transactional outbox and
//! idempotency keys. It holds no service's domain tables.
#![forbid(unsafe_code)]

pub mod db;
pub mod idempotency;
pub mod outbox;
pub mod schema;

pub use db::{Db, DbOptions};

use sea_orm::{DbErr, SqlErr};

/// Whether `err` is a unique-constraint violation (a lost insert race or a
/// duplicate key), on either backend.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
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
