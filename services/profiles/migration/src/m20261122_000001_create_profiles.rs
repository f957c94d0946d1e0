//! The first schema: customers, their identity and tag indexes, the consent
//! and lifecycle ledgers, merge records, erasure receipts, plus the shared
//! outbox and idempotency tables.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Customers {
    Table,
    Tenant,
    Id,
    Version,
    State,
    LifecycleStage,
    DisplayName,
    SearchText,
    Document,
    MergedInto,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden, Clone, Copy)]
enum CustomerIdentities {
    Table,
    Tenant,
    Kind,
    Value,
    MatchKey,
    CustomerId,
}

#[derive(DeriveIden, Clone, Copy)]
enum CustomerTags {
    Table,
    Tenant,
    Tag,
    CustomerId,
}

#[derive(DeriveIden, Clone, Copy)]
enum ConsentEvents {
    Table,
    Tenant,
    Id,
    CustomerId,
    Channel,
    Purpose,
    Status,
    Source,
    Evidence,
    CaptureTime,
    RecordTime,
}

#[derive(DeriveIden, Clone, Copy)]
enum LifecycleEvents {
    Table,
    Tenant,
    Id,
    CustomerId,
    FromStage,
    ToStage,
    Reason,
    CreateTime,
}

#[derive(DeriveIden, Clone, Copy)]
enum MergeRecords {
    Table,
    Tenant,
    Id,
    SurvivorId,
    MergedId,
    CreateTime,
}

#[derive(DeriveIden, Clone, Copy)]
enum ErasureReceipts {
    Table,
    Tenant,
    Id,
    CustomerId,
    ErasedFields,
    EraseTime,
}

async fn index<T: IntoIden + Copy + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    cols: &[T],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table);
    for col in cols {
        index.col(*col);
    }
    manager.create_index(index.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Customers::Table)
                    .col(string_len(Customers::Tenant, 63))
                    .col(string_len(Customers::Id, 36))
                    .col(big_integer(Customers::Version))
                    .col(string_len(Customers::State, 16))
                    .col(string_len(Customers::LifecycleStage, 16))
                    .col(string_len(Customers::DisplayName, 200))
                    .col(text(Customers::SearchText))
                    .col(text(Customers::Document))
                    .col(string_len_null(Customers::MergedInto, 36))
                    .col(big_integer(Customers::CreateTime))
                    .col(big_integer(Customers::UpdateTime))
                    .primary_key(Index::create().col(Customers::Tenant).col(Customers::Id))
                    .to_owned(),
            )
            .await?;
        use Customers as C;
        index(
            manager,
            "customers_by_create",
            C::Table,
            &[C::Tenant, C::State, C::CreateTime, C::Id],
        )
        .await?;
        index(
            manager,
            "customers_by_update",
            C::Table,
            &[C::Tenant, C::State, C::UpdateTime, C::Id],
        )
        .await?;
        index(
            manager,
            "customers_by_name",
            C::Table,
            &[C::Tenant, C::State, C::DisplayName, C::Id],
        )
        .await?;
        index(
            manager,
            "customers_by_stage",
            C::Table,
            &[C::Tenant, C::LifecycleStage],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(CustomerIdentities::Table)
                    .col(string_len(CustomerIdentities::Tenant, 63))
                    .col(string_len(CustomerIdentities::Kind, 16))
                    .col(string_len(CustomerIdentities::Value, 400))
                    .col(string_len(CustomerIdentities::MatchKey, 300))
                    .col(string_len(CustomerIdentities::CustomerId, 36))
                    // One holder per identity per tenant: the database enforces
                    // uniqueness even when two creates race.
                    .primary_key(
                        Index::create()
                            .col(CustomerIdentities::Tenant)
                            .col(CustomerIdentities::Kind)
                            .col(CustomerIdentities::Value),
                    )
                    .to_owned(),
            )
            .await?;
        use CustomerIdentities as I;
        index(
            manager,
            "identities_by_customer",
            I::Table,
            &[I::Tenant, I::CustomerId],
        )
        .await?;
        index(
            manager,
            "identities_by_match_key",
            I::Table,
            &[I::Tenant, I::MatchKey],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(CustomerTags::Table)
                    .col(string_len(CustomerTags::Tenant, 63))
                    .col(string_len(CustomerTags::Tag, 64))
                    .col(string_len(CustomerTags::CustomerId, 36))
                    .primary_key(
                        Index::create()
                            .col(CustomerTags::Tenant)
                            .col(CustomerTags::Tag)
                            .col(CustomerTags::CustomerId),
                    )
                    .to_owned(),
            )
            .await?;
        use CustomerTags as T;
        index(
            manager,
            "tags_by_customer",
            T::Table,
            &[T::Tenant, T::CustomerId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(ConsentEvents::Table)
                    .col(string_len(ConsentEvents::Tenant, 63))
                    .col(string_len(ConsentEvents::Id, 36))
                    .col(string_len(ConsentEvents::CustomerId, 36))
                    .col(string_len(ConsentEvents::Channel, 16))
                    .col(string_len(ConsentEvents::Purpose, 16))
                    .col(string_len(ConsentEvents::Status, 16))
                    .col(string_len(ConsentEvents::Source, 128))
                    .col(text(ConsentEvents::Evidence))
                    .col(big_integer(ConsentEvents::CaptureTime))
                    .col(big_integer(ConsentEvents::RecordTime))
                    .primary_key(
                        Index::create()
                            .col(ConsentEvents::Tenant)
                            .col(ConsentEvents::Id),
                    )
                    .to_owned(),
            )
            .await?;
        use ConsentEvents as CE;
        index(
            manager,
            "consent_events_by_customer",
            CE::Table,
            &[CE::Tenant, CE::CustomerId, CE::CaptureTime, CE::Id],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(LifecycleEvents::Table)
                    .col(string_len(LifecycleEvents::Tenant, 63))
                    .col(string_len(LifecycleEvents::Id, 36))
                    .col(string_len(LifecycleEvents::CustomerId, 36))
                    .col(string_len(LifecycleEvents::FromStage, 16))
                    .col(string_len(LifecycleEvents::ToStage, 16))
                    .col(string_len(LifecycleEvents::Reason, 500))
                    .col(big_integer(LifecycleEvents::CreateTime))
                    .primary_key(
                        Index::create()
                            .col(LifecycleEvents::Tenant)
                            .col(LifecycleEvents::Id),
                    )
                    .to_owned(),
            )
            .await?;
        use LifecycleEvents as LE;
        index(
            manager,
            "lifecycle_events_by_customer",
            LE::Table,
            &[LE::Tenant, LE::CustomerId, LE::CreateTime, LE::Id],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(MergeRecords::Table)
                    .col(string_len(MergeRecords::Tenant, 63))
                    .col(string_len(MergeRecords::Id, 36))
                    .col(string_len(MergeRecords::SurvivorId, 36))
                    .col(string_len(MergeRecords::MergedId, 36))
                    .col(big_integer(MergeRecords::CreateTime))
                    .primary_key(
                        Index::create()
                            .col(MergeRecords::Tenant)
                            .col(MergeRecords::Id),
                    )
                    .to_owned(),
            )
            .await?;
        use MergeRecords as M;
        index(
            manager,
            "merge_records_by_survivor",
            M::Table,
            &[M::Tenant, M::SurvivorId],
        )
        .await?;
        index(
            manager,
            "merge_records_by_merged",
            M::Table,
            &[M::Tenant, M::MergedId],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(ErasureReceipts::Table)
                    .col(string_len(ErasureReceipts::Tenant, 63))
                    .col(string_len(ErasureReceipts::Id, 36))
                    .col(string_len(ErasureReceipts::CustomerId, 36))
                    .col(text(ErasureReceipts::ErasedFields))
                    .col(big_integer(ErasureReceipts::EraseTime))
                    .primary_key(
                        Index::create()
                            .col(ErasureReceipts::Tenant)
                            .col(ErasureReceipts::Id),
                    )
                    .to_owned(),
            )
            .await?;

        rapport_store::schema::create_outbox(manager).await?;
        rapport_store::schema::create_idempotency_keys(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "erasure_receipts",
            "merge_records",
            "lifecycle_events",
            "consent_events",
            "customer_tags",
            "customer_identities",
            "customers",
            "outbox",
            "idempotency_keys",
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
