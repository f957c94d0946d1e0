//! Interaction KPI rollups: the additive aggregates of the metric facts
//! (counts, sums, met and breached per duration bucket; first-contact
//! resolution, promise and volume counts) per UTC month (`unit`), for
//! each way a report groups rows. A year's report then reads twelve
//! months of rollups and the facts of the few hours its time zone moves
//! its edges, not a million conversations' facts.
//!
//! The key leads with what a report holds equal (tenant, grouping, unit)
//! and then the unit's start, so a period is one range scan. `shard`
//! spreads the few rows every new conversation would otherwise update
//! (volume, first-contact resolution, promises) over several rows, so
//! concurrent writers of one tenant do not queue behind one row lock.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ConvMetricRollups {
    Table,
    Tenant,
    GroupKind,
    Unit,
    UnitStart,
    GroupKey,
    Measure,
    Label,
    Bucket,
    Shard,
    Facts,
    Seconds,
    Met,
    Breached,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ConvMetricRollups as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .if_not_exists()
                    .col(string(R::Tenant))
                    .col(string(R::GroupKind))
                    .col(string(R::Unit))
                    .col(big_integer(R::UnitStart))
                    .col(string(R::GroupKey))
                    .col(string(R::Measure))
                    .col(string(R::Label))
                    .col(big_integer(R::Bucket))
                    .col(small_integer(R::Shard))
                    .col(big_integer(R::Facts))
                    .col(big_integer(R::Seconds))
                    .col(big_integer(R::Met))
                    .col(big_integer(R::Breached))
                    .primary_key(
                        Index::create()
                            .col(R::Tenant)
                            .col(R::GroupKind)
                            .col(R::Unit)
                            .col(R::UnitStart)
                            .col(R::GroupKey)
                            .col(R::Measure)
                            .col(R::Label)
                            .col(R::Bucket)
                            .col(R::Shard),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConvMetricRollups::Table).to_owned())
            .await
    }
}
