//! `audit_events.count`: how many calls one record stands for. Refused
//! authentications are aggregated (one record per method, outcome and
//! protocol and interval, with a count), so a flood of them cannot flood the
//! table or crowd out the records of real calls. Every other record is 1.
use sea_orm_migration::{prelude::*, schema::integer};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Count,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .add_column(integer(AuditEvents::Count).default(1))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .drop_column(AuditEvents::Count)
                    .to_owned(),
            )
            .await
    }
}
