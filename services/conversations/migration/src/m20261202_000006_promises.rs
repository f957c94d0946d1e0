//! Promises (`conversations/{c}/promises/{p}`): one row each, the columns
//! lists filter and sort on (conversation, owner, state, due time) plus a
//! JSON document of the rest. Their due and reminder timers live in the
//! shared `timers` table (migration 3).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ConvPromises {
    Table,
    Tenant,
    Id,
    Version,
    ConversationId,
    Owner,
    State,
    DueTime,
    Document,
    CreateTime,
    UpdateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ConvPromises as P;
        manager
            .create_table(
                Table::create()
                    .table(P::Table)
                    .if_not_exists()
                    .col(string_len(P::Tenant, 63))
                    .col(string_len(P::Id, 36))
                    .col(big_integer(P::Version))
                    .col(string_len(P::ConversationId, 36))
                    .col(string_len(P::Owner, 36))
                    .col(string_len(P::State, 16))
                    .col(big_integer(P::DueTime))
                    .col(text(P::Document))
                    .col(big_integer(P::CreateTime))
                    .col(big_integer(P::UpdateTime))
                    .primary_key(Index::create().col(P::Tenant).col(P::Id))
                    .to_owned(),
            )
            .await?;
        // "My promises due today": by owner, soonest due first.
        manager
            .create_index(
                Index::create()
                    .name("conv_promises_owner_due")
                    .table(P::Table)
                    .col(P::Owner)
                    .col(P::Tenant)
                    .col(P::DueTime)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("conv_promises_conversation_due")
                    .table(P::Table)
                    .col(P::ConversationId)
                    .col(P::Tenant)
                    .col(P::DueTime)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("conv_promises_tenant_due")
                    .table(P::Table)
                    .col(P::Tenant)
                    .col(P::DueTime)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConvPromises::Table).to_owned())
            .await
    }
}
