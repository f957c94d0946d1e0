//! The gateway's own tables: API keys (hashed secrets only) and the audit
//! log. The only module that speaks SQL.
use rapport_store::{Db, from_micros, idempotency, micros};
use rapport_usecase::{Claim, CommitError, Idempotency, Prior, Priors, Tenant};

use crate::error::Error;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait, sea_query::Expr,
};

use chrono::{DateTime, Utc};

mod api_keys {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: String,
        pub secret_hash: String,
        pub display_name: String,
        pub tenant: String,
        pub scopes: String,
        pub expire_time: Option<i64>,
        pub revoked: bool,
        pub rate_limit: i32,
        pub create_time: i64,
        pub last_use_time: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod audit_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub event_time: i64,
        pub tenant: String,
        pub principal: String,
        pub method: String,
        pub resource: String,
        pub request_id: String,
        pub code: String,
        pub protocol: String,
        pub count: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id.
    pub key_id: String,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
    /// Human-readable name.
    pub display_name: String,
    /// Tenant.
    pub tenant: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry.
    pub expire_time: Option<DateTime<Utc>>,
    /// Revoked.
    pub revoked: bool,
    /// Requests per second, 0 for the default.
    pub rate_limit: u32,
    /// Creation.
    pub create_time: DateTime<Utc>,
    /// Last authenticated use.
    pub last_use_time: Option<DateTime<Utc>>,
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// UUIDv7.
    pub id: String,
    /// When the call was answered.
    pub event_time: DateTime<Utc>,
    /// Tenant, empty when unauthenticated.
    pub tenant: String,
    /// Principal, empty when unknown.
    pub principal: String,
    /// gRPC method path.
    pub method: String,
    /// Resource name when known.
    pub resource: String,
    /// request_id when known.
    pub request_id: String,
    /// Canonical code name.
    pub code: String,
    /// grpc, grpc-web or rest.
    pub protocol: String,
    /// How many calls the record stands for: 1, or more for an aggregate of
    /// refused authentications.
    pub count: u32,
}

/// Filters of the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// At or after.
    pub start: Option<DateTime<Utc>>,
    /// Before.
    pub end: Option<DateTime<Utc>>,
    /// Principal.
    pub principal: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
}

fn to_key(m: api_keys::Model) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: m.key_id,
        secret_hash: m.secret_hash,
        display_name: m.display_name,
        tenant: m.tenant,
        scopes: serde_json::from_str(&m.scopes).unwrap_or_default(),
        expire_time: m.expire_time.map(from_micros),
        revoked: m.revoked,
        rate_limit: m.rate_limit.max(0) as u32,
        create_time: from_micros(m.create_time),
        last_use_time: m.last_use_time.map(from_micros),
    }
}

fn to_audit(m: audit_events::Model) -> AuditRecord {
    AuditRecord {
        id: m.id,
        event_time: from_micros(m.event_time),
        tenant: m.tenant,
        principal: m.principal,
        method: m.method,
        resource: m.resource,
        request_id: m.request_id,
        code: m.code,
        protocol: m.protocol,
        count: m.count.max(1) as u32,
    }
}

/// Gateway storage over its database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Storage over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

impl Priors for Store {
    type Error = Error;

    async fn prior(&self, tenant: &Tenant, key: &Idempotency) -> Result<Option<Prior>, Error> {
        Ok(idempotency::find(&self.db.reader, tenant, key).await?)
    }
}

impl Store {
    /// Inserts a new key; with a claim (of the calling tenant, which may
    /// differ from the key's), the key and the claim commit together.
    pub async fn insert_key(
        &self,
        k: &ApiKeyRecord,
        claim: Option<(&Tenant, &Claim)>,
    ) -> Result<(), CommitError<Error>> {
        let failed = |e: DbErr| CommitError::Other(Error::from(e));
        let txn = self.db.writer.begin().await.map_err(failed)?;
        if let Some((tenant, claim)) = claim
            && !idempotency::claim(&txn, tenant, claim, micros(k.create_time))
                .await
                .map_err(failed)?
        {
            return Err(CommitError::KeyTaken);
        }
        api_keys::ActiveModel {
            key_id: Set(k.key_id.clone()),
            secret_hash: Set(k.secret_hash.clone()),
            display_name: Set(k.display_name.clone()),
            tenant: Set(k.tenant.clone()),
            scopes: Set(serde_json::to_string(&k.scopes).unwrap_or_else(|_| "[]".into())),
            expire_time: Set(k.expire_time.map(micros)),
            revoked: Set(k.revoked),
            rate_limit: Set(k.rate_limit.min(i32::MAX as u32) as i32),
            create_time: Set(micros(k.create_time)),
            last_use_time: Set(k.last_use_time.map(micros)),
        }
        .insert(&txn)
        .await
        .map_err(failed)?;
        txn.commit().await.map_err(failed)
    }

    /// How many keys of `tenant` are not revoked.
    pub async fn active_keys(&self, tenant: &str) -> Result<u64, DbErr> {
        use sea_orm::PaginatorTrait as _;
        api_keys::Entity::find()
            .filter(api_keys::Column::Tenant.eq(tenant))
            .filter(api_keys::Column::Revoked.eq(false))
            .count(&self.db.reader)
            .await
    }

    /// One key by id.
    pub async fn key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, DbErr> {
        Ok(rapport_store::by_key(
            api_keys::Entity::find_by_id(key_id.to_owned()),
            &self.db.reader,
        )
        .await?
        .map(to_key))
    }

    /// Keys newest first, after the `(create_time µs, key_id)` cursor.
    pub async fn keys(
        &self,
        tenant: Option<&str>,
        after: Option<(i64, String)>,
        limit: u64,
    ) -> Result<Vec<ApiKeyRecord>, DbErr> {
        use api_keys::Column as C;
        let mut q = api_keys::Entity::find();
        if let Some(t) = tenant {
            q = q.filter(C::Tenant.eq(t));
        }
        if let Some((t, id)) = after {
            q = q.filter(
                Condition::any().add(C::CreateTime.lt(t)).add(
                    Condition::all()
                        .add(C::CreateTime.eq(t))
                        .add(C::KeyId.lt(id)),
                ),
            );
        }
        Ok(q.order_by_desc(C::CreateTime)
            .order_by_desc(C::KeyId)
            .limit(limit)
            .all(&self.db.reader)
            .await?
            .into_iter()
            .map(to_key)
            .collect())
    }

    /// Marks a key revoked; `false` when there is no such key.
    pub async fn revoke(&self, key_id: &str) -> Result<bool, DbErr> {
        let r = api_keys::Entity::update_many()
            .col_expr(api_keys::Column::Revoked, Expr::value(true))
            .filter(api_keys::Column::KeyId.eq(key_id))
            .exec(&self.db.writer)
            .await?;
        Ok(r.rows_affected == 1)
    }

    /// Records the last use of a key.
    pub async fn touch(&self, key_id: &str, at: DateTime<Utc>) -> Result<(), DbErr> {
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::LastUseTime, Expr::value(micros(at)))
            .filter(api_keys::Column::KeyId.eq(key_id))
            .exec(&self.db.writer)
            .await?;
        Ok(())
    }

    /// Appends audit records in one statement.
    pub async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), DbErr> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = records.iter().map(|r| audit_events::ActiveModel {
            count: Set(i32::try_from(r.count).unwrap_or(i32::MAX)),
            id: Set(r.id.clone()),
            event_time: Set(micros(r.event_time)),
            tenant: Set(r.tenant.clone()),
            principal: Set(r.principal.clone()),
            method: Set(r.method.clone()),
            resource: Set(r.resource.clone()),
            request_id: Set(r.request_id.clone()),
            code: Set(r.code.clone()),
            protocol: Set(r.protocol.clone()),
        });
        audit_events::Entity::insert_many(rows)
            .exec(&self.db.writer)
            .await?;
        Ok(())
    }

    /// Deletes up to `limit` audit records older than `before`, oldest
    /// first; how many it deleted. Bounded, so a purge never holds SQLite's
    /// one writer for long: call it again while it returns `limit`.
    pub async fn purge_audit(&self, before: DateTime<Utc>, limit: u64) -> Result<u64, DbErr> {
        use audit_events::Column as C;
        // One statement: the oldest `limit` ids and their deletion, atomic
        // and on the writer (a reader may not see the last purge yet).
        let oldest = sea_orm::sea_query::Query::select()
            .column(C::Id)
            .from(audit_events::Entity)
            .and_where(C::EventTime.lt(micros(before)))
            .order_by(C::EventTime, sea_orm::Order::Asc)
            .limit(limit)
            .to_owned();
        let deleted = audit_events::Entity::delete_many()
            .filter(C::Id.in_subquery(oldest))
            .exec(&self.db.writer)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Audit records newest first, after the `(event_time µs, id)` cursor.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        after: Option<(i64, String)>,
        limit: u64,
    ) -> Result<Vec<AuditRecord>, DbErr> {
        use audit_events::Column as C;
        let mut q = audit_events::Entity::find();
        if let Some(t) = filter.start {
            q = q.filter(C::EventTime.gte(micros(t)));
        }
        if let Some(t) = filter.end {
            q = q.filter(C::EventTime.lt(micros(t)));
        }
        if let Some(p) = &filter.principal {
            q = q.filter(C::Principal.eq(p.as_str()));
        }
        if let Some(t) = &filter.tenant {
            q = q.filter(C::Tenant.eq(t.as_str()));
        }
        if let Some((t, id)) = after {
            q = q.filter(
                Condition::any()
                    .add(C::EventTime.lt(t))
                    .add(Condition::all().add(C::EventTime.eq(t)).add(C::Id.lt(id))),
            );
        }
        Ok(q.order_by_desc(C::EventTime)
            .order_by_desc(C::Id)
            .limit(limit)
            .all(&self.db.reader)
            .await?
            .into_iter()
            .map(to_audit)
            .collect())
    }
}
