//! Outbound conversations and messages: the durable timers that deliver
//! outbound messages (`rapport-events`' shared `timers` table), and the
//! `source` a conversation started by another
//! service answers (`responses/…`, `reviews/…`, `offers/…`), unique per
//! tenant when set (NULL otherwise: unique indexes ignore NULLs on SQLite
//! and PostgreSQL alike).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Conversations {
    Table,
    Source,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Conversations as C;
        manager
            .alter_table(
                Table::alter()
                    .table(C::Table)
                    .add_column(string_len_null(C::Source, 200))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("conversations_source")
                    .table(C::Table)
                    .col(C::Source)
                    .col(Alias::new("tenant"))
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        rapport_events::schema::create_timers(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("conversations_source")
                    .table(Conversations::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Conversations::Table)
                    .drop_column(Conversations::Source)
                    .to_owned(),
            )
            .await
    }
}
