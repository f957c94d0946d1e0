//! SQLite: the trigram search index forgets deleted text at once.
//!
//! Why: FTS5 records a delete (an erasure blanking `search_text`) as a
//! tombstone entry and leaves the old trigrams in earlier index segments until
//! an automatic merge happens to rewrite them, so fragments of an erased
//! person's name and addresses stayed in the file indefinitely. With
//! `secure-delete` (SQLite 3.44+) a delete removes its entries from the
//! segments themselves. The option is stored in the index's config table, so
//! it holds for every connection. PostgreSQL's trigram index is a GIN index
//! over the table: its dead entries go with VACUUM (README.md, "Erasure and
//! what stays on disk").
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Sqlite {
            let db = manager.get_connection();
            db.execute_unprepared(
                "INSERT INTO customers_search(customers_search, rank) VALUES ('secure-delete', 1)",
            )
            .await?;
            // Entries deleted before now: rewrite the index once without them.
            db.execute_unprepared(
                "INSERT INTO customers_search(customers_search) VALUES ('optimize')",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Sqlite {
            manager
                .get_connection()
                .execute_unprepared(
                    "INSERT INTO customers_search(customers_search, rank) VALUES ('secure-delete', 0)",
                )
                .await?;
        }
        Ok(())
    }
}
