//! Database migrations of the conversations service (sea-orm-migration).
//! One file per migration: sea-orm names a migration after its file stem.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::*;

mod m20261202_000001_create_conversations;
mod m20261202_000002_erasure_consumer;
mod m20261202_000003_outbound;
mod m20261202_000005_sla;
mod m20261202_000006_promises;
mod m20261202_000007_customer_marks;
mod m20261202_000008_interaction_metrics;
mod m20261202_000009_timers_by_kind;
mod m20261202_000010_metric_rollups;
mod m20261202_000011_rebuild_rollups;

/// All conversations migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261202_000001_create_conversations::Migration),
            Box::new(m20261202_000002_erasure_consumer::Migration),
            Box::new(m20261202_000003_outbound::Migration),
            Box::new(m20261202_000005_sla::Migration),
            Box::new(m20261202_000006_promises::Migration),
            Box::new(m20261202_000007_customer_marks::Migration),
            Box::new(m20261202_000008_interaction_metrics::Migration),
            Box::new(m20261202_000009_timers_by_kind::Migration),
            Box::new(m20261202_000010_metric_rollups::Migration),
            Box::new(m20261202_000011_rebuild_rollups::Migration),
        ]
    }

    // Its own history table, so that several services may share one
    // PostgreSQL database without clashing.
    fn migration_table_name() -> DynIden {
        "conversations_migrations".into_iden()
    }
}
