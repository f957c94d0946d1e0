//! Tables every service's migrations create: the outbox and idempotency keys.
use sea_orm_migration::{prelude::*, schema::*};

/// Outbox columns.
#[derive(DeriveIden)]
pub enum Outbox {
    /// Table name `outbox`.
    Table,
    /// Event id (UUIDv7), also the bus message id.
    Id,
    /// Tenant of the event.
    Tenant,
    /// Fully qualified event type.
    EventType,
    /// Resource name of the subject.
    Subject,
    /// Encoded `rapport.type.v1.EventEnvelope`.
    Envelope,
    /// When the change happened, µs since the epoch.
    OccurTime,
    /// When the relay published the row, µs since the epoch; NULL until then.
    PublishTime,
}

/// Idempotency key columns.
#[derive(DeriveIden)]
pub enum IdempotencyKeys {
    /// Table name `idempotency_keys`.
    Table,
    /// Tenant that sent the request.
    Tenant,
    /// Full gRPC method name.
    Method,
    /// The client's `request_id`.
    RequestId,
    /// SHA-256 of the request without its request_id.
    Fingerprint,
    /// Id of the resource the result is about (erasure deletes its keys).
    Subject,
    /// The first result, as JSON.
    Response,
    /// When the key was recorded, µs since the epoch.
    CreateTime,
}

/// Creates the `outbox` table and its index.
pub async fn create_outbox(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Outbox::Table)
                .if_not_exists()
                .col(string_len(Outbox::Id, 36).primary_key())
                .col(string_len(Outbox::Tenant, 63))
                .col(string_len(Outbox::EventType, 128))
                .col(string_len(Outbox::Subject, 256))
                .col(blob(Outbox::Envelope))
                .col(big_integer(Outbox::OccurTime))
                .col(big_integer_null(Outbox::PublishTime))
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .if_not_exists()
                .name("outbox_unpublished")
                .table(Outbox::Table)
                .col(Outbox::PublishTime)
                .col(Outbox::Id)
                .to_owned(),
        )
        .await?;
    create_outbox_pending_index(manager).await
}

/// Creates the partial index the relay reads: the unpublished rows in id
/// (commit) order.
///
/// Why partial: the relay asks for `publish_time IS NULL ORDER BY id`, and
/// with published rows kept for their retention PostgreSQL's planner walked
/// the primary key through every published row to find the few pending ones
/// (23–28 ms a batch with a day of events; 0.2 ms with this index). The index
/// holds only pending rows, so it stays as small as the backlog. SQLite and
/// PostgreSQL both support partial indexes with this syntax.
pub async fn create_outbox_pending_index(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(
            "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE publish_time IS NULL",
        )
        .await
        .map(drop)
}

/// The migration that adds [`create_outbox_pending_index`] to a database
/// made before `create_outbox` created it, under the name the service's
/// history records it by (sea-orm names migrations by their file stem, so a
/// shared one takes its name).
#[derive(Debug, Clone, Copy)]
pub struct OutboxPendingIndex(pub &'static str);

impl MigrationName for OutboxPendingIndex {
    fn name(&self) -> &str {
        self.0
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OutboxPendingIndex {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_outbox_pending_index(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS outbox_pending")
            .await
            .map(drop)
    }
}

/// Creates the `idempotency_keys` table and its indexes.
pub async fn create_idempotency_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(IdempotencyKeys::Table)
                .if_not_exists()
                .col(string_len(IdempotencyKeys::Tenant, 63))
                .col(string_len(IdempotencyKeys::Method, 128))
                .col(string_len(IdempotencyKeys::RequestId, 128))
                .col(string_len(IdempotencyKeys::Fingerprint, 64))
                .col(string_len(IdempotencyKeys::Subject, 64))
                .col(text_null(IdempotencyKeys::Response))
                .col(big_integer(IdempotencyKeys::CreateTime))
                .primary_key(
                    Index::create()
                        .col(IdempotencyKeys::Tenant)
                        .col(IdempotencyKeys::Method)
                        .col(IdempotencyKeys::RequestId),
                )
                .to_owned(),
        )
        .await?;
    for (name, cols) in [
        (
            "idempotency_keys_subject",
            vec![IdempotencyKeys::Tenant, IdempotencyKeys::Subject],
        ),
        (
            "idempotency_keys_create_time",
            vec![IdempotencyKeys::CreateTime],
        ),
    ] {
        let mut index = Index::create();
        index
            .if_not_exists()
            .name(name)
            .table(IdempotencyKeys::Table);
        for col in cols {
            index.col(col);
        }
        manager.create_index(index.to_owned()).await?;
    }
    Ok(())
}

/// Replaces index `old` of `table` with index `new` on `cols` (in that
/// order). Both steps tolerate having run before, so a half-applied
/// migration can run again.
pub async fn replace_index(
    manager: &SchemaManager<'_>,
    table: &str,
    old: &str,
    new: &str,
    cols: &[&str],
) -> Result<(), DbErr> {
    manager
        .drop_index(
            Index::drop()
                .name(old)
                .table(table.to_owned().into_iden())
                .if_exists()
                .to_owned(),
        )
        .await?;
    let mut index = Index::create();
    index
        .if_not_exists()
        .name(new)
        .table(table.to_owned().into_iden());
    for col in cols {
        index.col((*col).to_owned().into_iden());
    }
    manager.create_index(index.to_owned()).await
}

/// Second shape of the idempotency keys' subject index: the subject first.
///
/// Why: with the tenant first, `(tenant, subject)` shares its leading column
/// with the primary key `(tenant, method, request_id)`. On a table the
/// planner has no statistics for yet (a new database, or one growing from
/// empty faster than autovacuum analyzes it), PostgreSQL costs both indexes
/// alike and its cached generic plan for the key lookup took the subject
/// index with only `tenant` as its condition, reading every key of the
/// tenant per request (seen in a bench: 1,100–1,300 buffers per lookup).
/// A secondary index that leads with its own column can never pass for a
/// primary key lookup.
pub async fn idempotency_subject_first(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    replace_index(
        manager,
        "idempotency_keys",
        "idempotency_keys_subject",
        "idempotency_keys_by_subject",
        &["subject", "tenant"],
    )
    .await
}

/// Undoes [`idempotency_subject_first`].
pub async fn idempotency_tenant_first(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    replace_index(
        manager,
        "idempotency_keys",
        "idempotency_keys_by_subject",
        "idempotency_keys_subject",
        &["tenant", "subject"],
    )
    .await
}
