//! Database migrations of the webhooks service (sea-orm-migration). One file
//! per migration: sea-orm names a migration after its file stem.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::*;

mod m20261201_000001_create_webhooks;

/// All webhooks migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261201_000001_create_webhooks::Migration),
            // Shared: the name is this history's.
            Box::new(rapport_store::schema::OutboxPendingIndex(
                "m20261202_000002_outbox_pending_index",
            )),
            // Shared: its workers ask by kind (`timers::next_due`).
            Box::new(rapport_events::schema::TimersByKind(
                "m20261202_000003_timers_by_kind",
            )),
        ]
    }

    // Its own history table, so that several services may share one
    // PostgreSQL database without clashing.
    fn migration_table_name() -> DynIden {
        "webhooks_migrations".into_iden()
    }
}
