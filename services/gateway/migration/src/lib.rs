//! Database migrations of the gateway: API keys and the audit log. One file
//! per migration: sea-orm names a migration after its file stem.
#![forbid(unsafe_code)]

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_gateway;
mod m20261122_000002_idempotency_subject_first;
mod m20261202_000003_audit_count;

/// All gateway migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_gateway::Migration),
            Box::new(m20261122_000002_idempotency_subject_first::Migration),
            Box::new(m20261202_000003_audit_count::Migration),
        ]
    }

    // Its own history table, so services may share one PostgreSQL database.
    fn migration_table_name() -> DynIden {
        "gateway_migrations".into_iden()
    }
}
