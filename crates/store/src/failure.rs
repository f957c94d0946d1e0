//! What a database error means to a caller: the one place where a driver
//! error becomes "retry later" (the database is away or overloaded), "retry
//! the transaction" (it lost a concurrency race the database resolved by
//! aborting it) or "a bug" — by SQLSTATE on PostgreSQL and result code on
//! SQLite, never by matching message text.
//!
//! Why here: every service maps its storage errors to its own domain error,
//! and before this each one knew only `DbErr::Conn`/`ConnectionAcquire`, so a
//! failover (the next statement on a killed connection fails with an I/O
//! error), a deadlock or a busy SQLite answered INTERNAL, which clients do not
//! retry.
use sea_orm::{DbErr, RuntimeErr};

/// The class of a database failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// The database cannot serve right now (unreachable, restarting, shutting
    /// down, out of connections or resources, read-only after a failover, a
    /// statement cancelled by `statement_timeout`): UNAVAILABLE, retry with
    /// backoff.
    Unavailable,
    /// The database aborted the transaction to resolve a concurrency race
    /// (deadlock, serialization failure, lock timeout): retry the whole
    /// transaction (ABORTED when the caller has to).
    Contention,
    /// The database refused a value the request carried: text it cannot
    /// store (a NUL character, PostgreSQL `22021`; an encoding it cannot
    /// convert, `22P05`) or longer than its column once normalized
    /// (`22001`; lower-casing can lengthen text). INVALID_ARGUMENT: the
    /// service's own validation should have caught it, and this keeps a gap
    /// there from becoming an INTERNAL that clients retry.
    InvalidInput,
    /// Anything else: a bug or a broken invariant (INTERNAL).
    Other,
}

/// The field path of a violation about the request as a whole (a value the
/// database refused, a message too large or not decodable), where no single
/// field can be named.
pub const WHOLE_REQUEST: &str = "request";

/// Classifies `err`.
pub fn classify(err: &DbErr) -> DbFailure {
    match err {
        // sea-orm's `Conn` is a connection that could not be opened,
        // acquired or pinged, whatever the server said (refused, starting
        // up, `ALLOW_CONNECTIONS false`, too many clients, failed
        // authentication after a credentials rotation): nothing a retry
        // against this process can't outlast, and what readiness reports.
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => DbFailure::Unavailable,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            classify_sqlx(e)
        }
        _ => DbFailure::Other,
    }
}

fn classify_sqlx(e: &sea_orm::sqlx::Error) -> DbFailure {
    use sea_orm::sqlx::Error as E;
    match e {
        // The socket broke (a failover, a restart, a terminated backend: the
        // server's FATAL arrives and the next statement reads EOF), or the
        // pool has no connection to give.
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut | E::PoolClosed => {
            DbFailure::Unavailable
        }
        // SQLite's worker thread for the connection is gone.
        E::WorkerCrashed => DbFailure::Unavailable,
        E::Database(db) => match db.code() {
            Some(code) if looks_like_sqlstate(&code) => sqlstate(&code),
            Some(code) => code.parse::<i32>().map_or(DbFailure::Other, sqlite_code),
            None => DbFailure::Other,
        },
        _ => DbFailure::Other,
    }
}

/// PostgreSQL's codes (SQLSTATE) are five characters; SQLite's are decimal
/// numbers of at most four digits (the largest extended code is below 10,000).
fn looks_like_sqlstate(code: &str) -> bool {
    code.len() == 5
}

/// PostgreSQL error codes (Appendix A of its manual).
fn sqlstate(code: &str) -> DbFailure {
    match code {
        // serialization_failure, deadlock_detected, lock_not_available
        // (lock_timeout).
        "40001" | "40P01" | "55P03" => DbFailure::Contention,
        // query_canceled (statement_timeout), admin_shutdown (a restart or a
        // pg_terminate_backend), crash_shutdown, cannot_connect_now (starting
        // up or in recovery), database_dropped.
        "57014" | "57P01" | "57P02" | "57P03" | "57P04" => DbFailure::Unavailable,
        "22021" | "22P05" | "22001" => DbFailure::InvalidInput,
        // read_only_sql_transaction: the primary we reached was demoted.
        "25006" => DbFailure::Unavailable,
        // Class 08 connection exception, 53 insufficient resources (too many
        // connections, disk full, out of memory), 58 system error (I/O).
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("58") => {
            DbFailure::Unavailable
        }
        _ => DbFailure::Other,
    }
}

/// SQLite extended result codes (the primary code is the low byte).
fn sqlite_code(code: i32) -> DbFailure {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    // A read transaction whose snapshot is too old to upgrade to a write:
    // only retrying the transaction helps.
    const BUSY_SNAPSHOT: i32 = BUSY | (2 << 8);
    match code {
        BUSY_SNAPSHOT => DbFailure::Contention,
        // The one writer (or a checkpoint) held the lock past busy_timeout.
        c if matches!(c & 0xff, BUSY | LOCKED) => DbFailure::Unavailable,
        c if matches!(c & 0xff, READONLY | IOERR | FULL | CANTOPEN) => DbFailure::Unavailable,
        _ => DbFailure::Other,
    }
}

/// What a service's error type says for each kind of database failure; every
/// [`rapport_usecase::ServiceError`] has it, and maps every `DbErr` through
/// [`to_error`].
pub trait FromDbFailure {
    /// The database is unreachable or restarting: retry later.
    fn unavailable(detail: String) -> Self;
    /// The database aborted the transaction to break a deadlock or a
    /// serialization conflict: the caller may retry it as a whole.
    fn contention() -> Self;
    /// The database refused a value that passed validation.
    fn invalid(violations: rapport_usecase::Violations) -> Self;
    /// Anything else: a bug, or a failure nobody can act on.
    fn internal(detail: String) -> Self;
}

/// Every service's error: its [`rapport_usecase::ServiceError`] says it all
/// (a contention is the protocol's conflict, which the caller may retry).
impl<E: rapport_usecase::ServiceError> FromDbFailure for E {
    fn unavailable(detail: String) -> Self {
        E::unavailable(detail)
    }
    fn contention() -> Self {
        E::conflict()
    }
    fn invalid(violations: rapport_usecase::Violations) -> Self {
        E::invalid(violations)
    }
    fn internal(detail: String) -> Self {
        <E as rapport_usecase::ProtocolError>::internal(detail)
    }
}

/// `e` as a service's error: classified once here, for every service. The
/// detail goes to the log only (the services' api layers never show it).
pub fn to_error<E: FromDbFailure>(e: &DbErr) -> E {
    match classify(e) {
        DbFailure::Unavailable => E::unavailable(e.to_string()),
        DbFailure::Contention => {
            tracing::warn!(error = %e, "transaction aborted by the database; the client may retry");
            E::contention()
        }
        DbFailure::InvalidInput => {
            tracing::warn!(error = %e, "the database refused a value that passed validation");
            E::invalid(rapport_usecase::Violations::one(
                WHOLE_REQUEST,
                "holds text the database cannot store (a NUL character, or a value too long once normalized)",
            ))
        }
        DbFailure::Other => E::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified_by_meaning() {
        for code in ["40001", "40P01", "55P03"] {
            assert_eq!(sqlstate(code), DbFailure::Contention, "{code}");
        }
        for code in [
            "57P01", "57P02", "57P03", "57014", "08006", "08001", "53300", "58030", "25006",
        ] {
            assert_eq!(sqlstate(code), DbFailure::Unavailable, "{code}");
        }
        for code in ["22021", "22P05", "22001"] {
            assert_eq!(sqlstate(code), DbFailure::InvalidInput, "{code}");
        }
        for code in ["23505", "42P01"] {
            assert_eq!(sqlstate(code), DbFailure::Other, "{code}");
        }
        assert!(looks_like_sqlstate("40P01") && looks_like_sqlstate("08006"));
        assert!(looks_like_sqlstate("40001") && looks_like_sqlstate("57014"));
    }

    #[test]
    fn sqlite_codes_are_classified_by_their_primary_code() {
        assert_eq!(sqlite_code(5), DbFailure::Unavailable);
        assert_eq!(sqlite_code(6), DbFailure::Unavailable);
        assert_eq!(sqlite_code(5 | (1 << 8)), DbFailure::Unavailable);
        assert_eq!(sqlite_code(517), DbFailure::Contention);
        assert_eq!(sqlite_code(10 | (3 << 8)), DbFailure::Unavailable);
        // SQLITE_CONSTRAINT_UNIQUE is the caller's to interpret.
        assert_eq!(sqlite_code(2067), DbFailure::Other);
    }

    #[test]
    fn other_errors_are_bugs() {
        assert_eq!(classify(&DbErr::Custom("x".into())), DbFailure::Other);
        let io = DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(
            sea_orm::sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
        )));
        assert_eq!(classify(&io), DbFailure::Unavailable);
    }
}
