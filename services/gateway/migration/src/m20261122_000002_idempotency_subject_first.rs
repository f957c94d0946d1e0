//! The idempotency keys' subject index leads with the subject (see
//! `rapport_store::schema::idempotency_subject_first` for why).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rapport_store::schema::idempotency_subject_first(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rapport_store::schema::idempotency_tenant_first(manager).await
    }
}
