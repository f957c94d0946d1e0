//! Database migrations of the profiles service (sea-orm-migration). One file
//! per migration: sea-orm names a migration after its file stem.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_profiles;
mod m20261122_000002_selective_index_keys;
mod m20261122_000003_search_index;
mod m20261202_000004_search_secure_delete;
mod m20261202_000006_cycle;

/// All profiles migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_profiles::Migration),
            Box::new(m20261122_000002_selective_index_keys::Migration),
            Box::new(m20261122_000003_search_index::Migration),
            Box::new(m20261202_000004_search_secure_delete::Migration),
            // Shared: the name is this history's.
            Box::new(rapport_store::schema::OutboxPendingIndex(
                "m20261202_000005_outbox_pending_index",
            )),
            Box::new(m20261202_000006_cycle::Migration),
            // Shared: its workers ask by kind (`timers::next_due`).
            Box::new(rapport_events::schema::TimersByKind(
                "m20261202_000007_timers_by_kind",
            )),
        ]
    }

    // Its own history table, so that several services may share one
    // PostgreSQL database (with separate schemas or not) without clashing.
    fn migration_table_name() -> DynIden {
        "profiles_migrations".into_iden()
    }
}
