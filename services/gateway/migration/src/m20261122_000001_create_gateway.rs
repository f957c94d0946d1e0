//! API keys (hashed secrets only) and the audit log.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ApiKeys {
    Table,
    KeyId,
    SecretHash,
    DisplayName,
    Tenant,
    Scopes,
    ExpireTime,
    Revoked,
    RateLimit,
    CreateTime,
    LastUseTime,
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvents {
    Table,
    Id,
    EventTime,
    Tenant,
    Principal,
    Method,
    Resource,
    RequestId,
    Code,
    Protocol,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(string_len(ApiKeys::KeyId, 32).primary_key())
                    // SHA-256 of the secret, hex. The secret itself is never stored.
                    .col(string_len(ApiKeys::SecretHash, 64))
                    .col(string_len(ApiKeys::DisplayName, 100))
                    .col(string_len(ApiKeys::Tenant, 63))
                    .col(text(ApiKeys::Scopes))
                    .col(big_integer_null(ApiKeys::ExpireTime))
                    .col(boolean(ApiKeys::Revoked))
                    .col(integer(ApiKeys::RateLimit))
                    .col(big_integer(ApiKeys::CreateTime))
                    .col(big_integer_null(ApiKeys::LastUseTime))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_keys_by_tenant")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::Tenant)
                    .col(ApiKeys::CreateTime)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(string_len(AuditEvents::Id, 36).primary_key())
                    .col(big_integer(AuditEvents::EventTime))
                    .col(string_len(AuditEvents::Tenant, 63))
                    .col(string_len(AuditEvents::Principal, 300))
                    .col(string_len(AuditEvents::Method, 200))
                    .col(string_len(AuditEvents::Resource, 300))
                    .col(string_len(AuditEvents::RequestId, 128))
                    .col(string_len(AuditEvents::Code, 32))
                    .col(string_len(AuditEvents::Protocol, 16))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            (
                "audit_by_time",
                vec![AuditEvents::EventTime, AuditEvents::Id],
            ),
            (
                "audit_by_principal",
                vec![AuditEvents::Principal, AuditEvents::EventTime],
            ),
            (
                "audit_by_tenant",
                vec![AuditEvents::Tenant, AuditEvents::EventTime],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(AuditEvents::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        rapport_store::schema::create_idempotency_keys(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["audit_events", "api_keys", "idempotency_keys"] {
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
