//! Secondary indexes that find rows by a column within a tenant lead with
//! that column, not the tenant.
//!
//! Why: an index led by `tenant` shares its first column with the primary
//! key. On tables PostgreSQL has no statistics for yet (a new database, a
//! table growing from empty faster than autovacuum analyzes it) every index
//! costs the same, and a cached generic plan for a lookup by the whole key
//! took `identities_by_match_key` with only `tenant` as its condition: every
//! identity of the tenant read per lookup (seen in a bench, 1 ms of database
//! CPU per call). Indexes that serve tenant-wide listings (`customers_by_*`)
//! keep the tenant first: there it is the point.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (table, old name, new name, new columns, old columns).
type Reordered = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const REORDERED: &[Reordered] = &[
    (
        "customer_identities",
        "identities_by_customer",
        "identities_by_customer_id",
        &["customer_id", "tenant"],
        &["tenant", "customer_id"],
    ),
    (
        "customer_identities",
        "identities_by_match_key",
        "identities_by_match_key_first",
        &["match_key", "tenant"],
        &["tenant", "match_key"],
    ),
    (
        "customer_tags",
        "tags_by_customer",
        "tags_by_customer_id",
        &["customer_id", "tenant"],
        &["tenant", "customer_id"],
    ),
    (
        "consent_events",
        "consent_events_by_customer",
        "consent_events_by_customer_id",
        &["customer_id", "tenant", "capture_time", "id"],
        &["tenant", "customer_id", "capture_time", "id"],
    ),
    (
        "lifecycle_events",
        "lifecycle_events_by_customer",
        "lifecycle_events_by_customer_id",
        &["customer_id", "tenant", "create_time", "id"],
        &["tenant", "customer_id", "create_time", "id"],
    ),
    (
        "merge_records",
        "merge_records_by_survivor",
        "merge_records_by_survivor_id",
        &["survivor_id", "tenant"],
        &["tenant", "survivor_id"],
    ),
    (
        "merge_records",
        "merge_records_by_merged",
        "merge_records_by_merged_id",
        &["merged_id", "tenant"],
        &["tenant", "merged_id"],
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, old, new, cols, _) in REORDERED {
            rapport_store::schema::replace_index(manager, table, old, new, cols).await?;
        }
        rapport_store::schema::idempotency_subject_first(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, old, new, _, old_cols) in REORDERED {
            rapport_store::schema::replace_index(manager, table, new, old, old_cols).await?;
        }
        rapport_store::schema::idempotency_tenant_first(manager).await
    }
}
