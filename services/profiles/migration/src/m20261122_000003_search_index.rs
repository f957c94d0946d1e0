//! An index for substring search over `customers.search_text` (names,
//! e-mail addresses, phone numbers, lower-cased).
//!
//! Why: `SearchCustomers` matches `search_text LIKE '%needle%'`, which no
//! B-tree can answer: at a million customers a search for a rare name read
//! every row of the tenant (6 searches/s, p50 4.6 s on SQLite). Trigrams can:
//! PostgreSQL's `pg_trgm` GIN index serves `LIKE '%…%'` as it is; on SQLite
//! an FTS5 table with the trigram tokenizer, kept in step with `customers`
//! by triggers, gives the candidate rows, and the query checks the exact
//! pattern on them. Needles shorter than three characters have no trigram
//! and still scan.
use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    // pg_trgm is a trusted extension (PostgreSQL 13+): the database owner
    // may create it without superuser rights.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS customers_search_trgm ON customers USING gin (search_text gin_trgm_ops)",
];

const POSTGRES_DOWN: &[&str] = &["DROP INDEX IF EXISTS customers_search_trgm"];

const SQLITE_UP: &[&str] = &[
    // External content: the index stores trigrams, not a second copy of
    // the text, and reads `customers` by rowid.
    "CREATE VIRTUAL TABLE IF NOT EXISTS customers_search USING fts5(\
     search_text, content='customers', content_rowid='rowid', tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS customers_search_insert AFTER INSERT ON customers BEGIN \
     INSERT INTO customers_search(rowid, search_text) VALUES (new.rowid, new.search_text); END",
    "CREATE TRIGGER IF NOT EXISTS customers_search_delete AFTER DELETE ON customers BEGIN \
     INSERT INTO customers_search(customers_search, rowid, search_text) \
     VALUES ('delete', old.rowid, old.search_text); END",
    "CREATE TRIGGER IF NOT EXISTS customers_search_update AFTER UPDATE OF search_text ON customers BEGIN \
     INSERT INTO customers_search(customers_search, rowid, search_text) \
     VALUES ('delete', old.rowid, old.search_text); \
     INSERT INTO customers_search(rowid, search_text) VALUES (new.rowid, new.search_text); END",
    // Existing rows.
    "INSERT INTO customers_search(customers_search) VALUES ('rebuild')",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS customers_search_update",
    "DROP TRIGGER IF EXISTS customers_search_delete",
    "DROP TRIGGER IF EXISTS customers_search_insert",
    "DROP TABLE IF EXISTS customers_search",
];

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => run(manager, POSTGRES_UP).await,
            _ => run(manager, SQLITE_UP).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DatabaseBackend::Postgres => run(manager, POSTGRES_DOWN).await,
            _ => run(manager, SQLITE_DOWN).await,
        }
    }
}
