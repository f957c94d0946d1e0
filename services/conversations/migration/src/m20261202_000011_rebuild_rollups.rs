//! Rebuilds the KPI rollups in their new shape: by UTC year as well as by
//! UTC month (a year's report reads one year of rows instead of twelve
//! months'), and no longer by agent (a report grouped by agent reads the
//! facts: an agent's month is a few hundred facts, nearly each in a bucket
//! of its own, so its rollup rows outnumbered its facts and made the report
//! slower, not faster). Deleting every rollup is enough: the first start
//! that finds facts and no rollups rebuilds them from the facts
//! (`storage::metrics::ensure_rollups`), in this shape.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        delete_rollups(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The version before rebuilds its own shape the same way.
        delete_rollups(manager).await
    }
}

async fn delete_rollups(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared("DELETE FROM conv_metric_rollups")
        .await
        .map(drop)
}
