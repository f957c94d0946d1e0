//! One row per customer whose messages are stored here, saying whether the
//! customer was erased. Both the erasure and every inbound message of the
//! customer write this row first in their transaction, so the row lock
//! orders them: an erasure waits for a message being stored (and then
//! erases it too), a message waits for an erasure (and then sees it).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ConvCustomers {
    Table,
    Tenant,
    Customer,
    Erased,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ConvCustomers as C;
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .if_not_exists()
                    .col(string_len(C::Tenant, 63))
                    .col(string_len(C::Customer, 36))
                    .col(boolean(C::Erased))
                    .primary_key(Index::create().col(C::Tenant).col(C::Customer))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(ConvCustomers::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
