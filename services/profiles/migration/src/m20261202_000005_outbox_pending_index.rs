//! The outbox's partial index of pending rows, for databases made before
//! `rapport_store::schema::create_outbox` created it (see there for why).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rapport_store::schema::create_outbox_pending_index(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS outbox_pending")
            .await
            .map(drop)
    }
}
