//! What profiles needs for its part of the customer cycle: the privacy
//! notice version on consent decisions; erasure receipts that wait for
//! every service holding customer data to confirm (its confirmations, and
//! the services a receipt waits for, fixed when it was issued); birthdays
//! on durable timers, with the years already greeted (once per customer
//! per year, however often a timer fires or a birthday is edited); and the
//! consumer tables for the confirmations that arrive as events.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ConsentEvents {
    Table,
    PrivacyNoticeVersion,
}

#[derive(DeriveIden)]
enum ErasureReceipts {
    Table,
    AwaitedServices,
    CompleteTime,
}

#[derive(DeriveIden, Clone, Copy)]
enum ErasureConfirmations {
    Table,
    Tenant,
    ReceiptId,
    Service,
    ConfirmTime,
}

#[derive(DeriveIden, Clone, Copy)]
enum BirthdayGreetings {
    Table,
    Tenant,
    CustomerId,
    Year,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ConsentEvents::Table)
                    .add_column(string_len(ConsentEvents::PrivacyNoticeVersion, 64).default(""))
                    .to_owned(),
            )
            .await?;
        // Receipts issued before this migration awaited nobody: '[]'.
        manager
            .alter_table(
                Table::alter()
                    .table(ErasureReceipts::Table)
                    .add_column(text(ErasureReceipts::AwaitedServices).default("[]"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ErasureReceipts::Table)
                    .add_column(big_integer_null(ErasureReceipts::CompleteTime))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ErasureConfirmations::Table)
                    .col(string_len(ErasureConfirmations::Tenant, 63))
                    .col(string_len(ErasureConfirmations::ReceiptId, 36))
                    .col(string_len(ErasureConfirmations::Service, 63))
                    .col(big_integer(ErasureConfirmations::ConfirmTime))
                    .primary_key(
                        Index::create()
                            .col(ErasureConfirmations::Tenant)
                            .col(ErasureConfirmations::ReceiptId)
                            .col(ErasureConfirmations::Service),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BirthdayGreetings::Table)
                    .col(string_len(BirthdayGreetings::Tenant, 63))
                    .col(string_len(BirthdayGreetings::CustomerId, 36))
                    .col(integer(BirthdayGreetings::Year))
                    .primary_key(
                        Index::create()
                            .col(BirthdayGreetings::Tenant)
                            .col(BirthdayGreetings::CustomerId)
                            .col(BirthdayGreetings::Year),
                    )
                    .to_owned(),
            )
            .await?;
        rapport_events::schema::create_timers(manager).await?;
        rapport_events::schema::create_consumer_tables(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "birthday_greetings",
            "erasure_confirmations",
            "timers",
            "dead_letters",
            "inbox",
        ] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        // SQLite drops one column per statement.
        for (table, column) in [
            ("erasure_receipts", "complete_time"),
            ("erasure_receipts", "awaited_services"),
            ("consent_events", "privacy_notice_version"),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
