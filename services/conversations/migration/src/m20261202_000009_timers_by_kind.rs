//! Indexes the durable timers by (kind, due time): every worker asks for
//! its own kinds (what is due now, when is the next one), and with 100,000
//! open conversations under an SLA the table holds that many live
//! `conversations.sla` timers beside the few of deliveries and automation.
//! The index makes each question a range scan of one kind.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rapport_events::schema::index_timers_by_kind(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rapport_events::schema::drop_timers_kind_index(manager).await
    }
}
