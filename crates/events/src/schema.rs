//! Tables a consuming service's first consumer migration creates: its
//! `inbox` (events applied, per consumer) and its `dead_letters`.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveIden)]
enum Inbox {
    Table,
    Consumer,
    EventId,
    ApplyTime,
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Consumer,
    EventId,
    Tenant,
    EventType,
    Envelope,
    Error,
    Attempts,
    ParkTime,
}

/// Creates `inbox` and `dead_letters` (idempotent).
pub async fn create_consumer_tables(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Inbox::Table)
                .if_not_exists()
                .col(string_len(Inbox::Consumer, 128))
                .col(string_len(Inbox::EventId, 64))
                .col(big_integer(Inbox::ApplyTime))
                .primary_key(Index::create().col(Inbox::Consumer).col(Inbox::EventId))
                .to_owned(),
        )
        .await?;
    manager
        .create_table(
            Table::create()
                .table(DeadLetters::Table)
                .if_not_exists()
                .col(string_len(DeadLetters::Consumer, 128))
                .col(string_len(DeadLetters::EventId, 64))
                .col(string_len(DeadLetters::Tenant, 63))
                .col(string_len(DeadLetters::EventType, 128))
                .col(blob(DeadLetters::Envelope))
                .col(text(DeadLetters::Error))
                .col(big_integer(DeadLetters::Attempts))
                .col(big_integer(DeadLetters::ParkTime))
                .primary_key(
                    Index::create()
                        .col(DeadLetters::Consumer)
                        .col(DeadLetters::EventId),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .if_not_exists()
                .name("dead_letters_park_time")
                .table(DeadLetters::Table)
                .col(DeadLetters::ParkTime)
                .to_owned(),
        )
        .await
}
