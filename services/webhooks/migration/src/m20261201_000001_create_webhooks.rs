//! The first schema: subscriptions and their deliveries, plus the shared
//! tables — idempotency keys and the outbox (`rapport-store`), the inbox
//! and dead letters of the service's consumers and its timers
//! (`rapport-events`).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum WebhookSubscriptions {
    Table,
    Tenant,
    Id,
    Version,
    Url,
    EventTypes,
    State,
    DisableReason,
    Secret,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookDeliveries {
    Table,
    Tenant,
    Id,
    SubscriptionId,
    EventId,
    EventType,
    Body,
    State,
    Attempts,
    LastStatusCode,
    LastError,
    CreateTime,
    LastAttemptTime,
    NextAttemptTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use WebhookDeliveries as D;
        use WebhookSubscriptions as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .if_not_exists()
                    .col(string_len(S::Tenant, 63))
                    .col(string_len(S::Id, 36))
                    .col(big_integer(S::Version))
                    .col(text(S::Url))
                    // JSON array of the event type patterns.
                    .col(text(S::EventTypes))
                    .col(string_len(S::State, 16))
                    // Empty while active.
                    .col(string_len(S::DisableReason, 32))
                    // `whsec_…`: the service signs with it, so it is kept,
                    // never shown again after the create.
                    .col(text(S::Secret))
                    .col(big_integer(S::CreateTime))
                    .col(big_integer(S::UpdateTime))
                    .primary_key(Index::create().col(S::Tenant).col(S::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(D::Table)
                    .if_not_exists()
                    .col(string_len(D::Tenant, 63))
                    .col(string_len(D::Id, 36))
                    .col(string_len(D::SubscriptionId, 36))
                    .col(string_len(D::EventId, 64))
                    .col(string_len(D::EventType, 128))
                    // The JSON body, rendered once so every attempt sends
                    // (and signs) the same bytes.
                    .col(text(D::Body))
                    .col(string_len(D::State, 16))
                    .col(big_integer(D::Attempts))
                    .col(integer(D::LastStatusCode))
                    .col(text(D::LastError))
                    .col(big_integer(D::CreateTime))
                    .col(big_integer_null(D::LastAttemptTime))
                    .col(big_integer_null(D::NextAttemptTime))
                    .primary_key(Index::create().col(D::Tenant).col(D::Id))
                    .to_owned(),
            )
            .await?;
        // A subscription's deliveries, newest first (ListWebhookDeliveries,
        // and deleting a subscription's deliveries). Led by its own column,
        // not the tenant (see profiles' second migration for why).
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("webhook_deliveries_by_subscription_id")
                    .table(D::Table)
                    .col(D::SubscriptionId)
                    .col(D::Tenant)
                    .col(D::Id)
                    .to_owned(),
            )
            .await?;
        rapport_store::schema::create_idempotency_keys(manager).await?;
        // No event of the service's own is published yet; the table is
        // there for the first one, as in every service.
        rapport_store::schema::create_outbox(manager).await?;
        rapport_events::schema::create_consumer_tables(manager).await?;
        rapport_events::schema::create_timers(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "timers",
            "dead_letters",
            "inbox",
            "outbox",
            "idempotency_keys",
            "webhook_deliveries",
            "webhook_subscriptions",
        ] {
            manager
                .drop_table(
                    Table::drop()
                        .table(table.into_iden())
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
