//! Tables a service's migrations create when it consumes events (its
//! `inbox` and `dead_letters`) or schedules work (its `timers`).
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

#[derive(DeriveIden)]
enum Timers {
    Table,
    Tenant,
    Key,
    Kind,
    DueTime,
    Payload,
    Generation,
    Attempts,
    LeaseUntil,
}

/// Creates `timers` (idempotent): a service's durable timers.
pub async fn create_timers(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Timers::Table)
                .if_not_exists()
                .col(string_len(Timers::Tenant, 63))
                .col(string_len(Timers::Key, 256))
                .col(string_len(Timers::Kind, 64))
                .col(big_integer(Timers::DueTime))
                .col(blob(Timers::Payload))
                .col(big_integer(Timers::Generation))
                .col(big_integer(Timers::Attempts))
                .col(big_integer_null(Timers::LeaseUntil))
                .primary_key(Index::create().col(Timers::Tenant).col(Timers::Key))
                .to_owned(),
        )
        .await?;
    // The worker's question: what is due now?
    manager
        .create_index(
            Index::create()
                .if_not_exists()
                .name("timers_due")
                .table(Timers::Table)
                .col(Timers::DueTime)
                .to_owned(),
        )
        .await
}

/// Indexes `timers` by (kind, due time) (idempotent): a worker's questions
/// name its kinds — what of mine is due now, when is my next one — and
/// this answers each with a range scan of its own kind, however many
/// timers of other kinds (100,000 live SLA timers beside a few deliveries)
/// the table holds.
pub async fn index_timers_by_kind(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_index(
            Index::create()
                .if_not_exists()
                .name(TIMERS_KIND_DUE)
                .table(Timers::Table)
                .col(Timers::Kind)
                .col(Timers::DueTime)
                .to_owned(),
        )
        .await
}

/// The migration that adds [`index_timers_by_kind`] to a service whose
/// `timers` table was made without it, under the name the service's history
/// records it by (sea-orm names migrations by their file stem, so a shared
/// one takes its name).
#[derive(Debug, Clone, Copy)]
pub struct TimersByKind(pub &'static str);

impl MigrationName for TimersByKind {
    fn name(&self) -> &str {
        self.0
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TimersByKind {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        index_timers_by_kind(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_timers_kind_index(manager).await
    }
}

/// Drops the index [`index_timers_by_kind`] creates.
pub async fn drop_timers_kind_index(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .drop_index(
            Index::drop()
                .if_exists()
                .name(TIMERS_KIND_DUE)
                .table(Timers::Table)
                .to_owned(),
        )
        .await
}

/// The name of the (kind, due time) index of `timers`.
const TIMERS_KIND_DUE: &str = "timers_kind_due";

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
