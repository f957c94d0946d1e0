//! The admin API (`rapport.gateway.v1.GatewayAdminService`): API keys and the
//! audit log. Served in-process behind the same pipeline as every other RPC,
//! so it needs the `admin` scope. An admin manages its own tenant; the
//! `platform` scope manages every tenant.
use std::sync::Arc;

use chrono::Utc;
use rapport_kit::{
    PageTokens, Tenant,
    convert::{from_ts, ts},
    idempotency, page,
};
use rapport_proto::gateway::{self as pb, gateway_admin_service_server::GatewayAdminService};
use rapport_store::micros;
use rapport_usecase::{Clock as _, SystemClock, Violations, page_of};
use tonic::{Request, Response, Status};

use crate::{
    audit::AuditSink,
    auth::{
        Principal,
        api_keys::{ApiKeys, NewKey, valid_scope},
    },
    error::{DOMAIN, Error},
    limits::TenantLimitConfig,
    storage::{ApiKeyRecord, AuditFilter, AuditRecord, Store},
};

/// Scope that manages every tenant.
pub const PLATFORM_SCOPE: &str = "platform";

/// The admin API handler.
pub struct Handler {
    keys: Arc<ApiKeys>,
    store: Store,
    audit: AuditSink,
    tokens: PageTokens,
    limits: TenantLimitConfig,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

impl Handler {
    /// A handler over the key store and the audit log.
    pub fn new(
        keys: Arc<ApiKeys>,
        store: Store,
        audit: AuditSink,
        tokens: PageTokens,
        limits: TenantLimitConfig,
    ) -> Self {
        Self {
            keys,
            store,
            audit,
            tokens,
            limits,
        }
    }
}

fn key_to_pb(k: &ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        name: format!("apiKeys/{}", k.key_id),
        key_id: k.key_id.clone(),
        display_name: k.display_name.clone(),
        tenant: k.tenant.clone(),
        scopes: k.scopes.clone(),
        expire_time: k.expire_time.map(ts),
        revoked: k.revoked,
        rate_limit_per_second: k.rate_limit.min(i32::MAX as u32) as i32,
        create_time: Some(ts(k.create_time)),
        last_use_time: k.last_use_time.map(ts),
    }
}

fn audit_to_pb(a: &AuditRecord) -> pb::AuditEvent {
    pb::AuditEvent {
        name: format!("auditEvents/{}", a.id),
        event_time: Some(ts(a.event_time)),
        tenant: a.tenant.clone(),
        principal: a.principal.clone(),
        method: a.method.clone(),
        resource: a.resource.clone(),
        request_id: a.request_id.clone(),
        code: a.code.clone(),
        protocol: a.protocol.clone(),
        count: i64::from(a.count),
    }
}

fn principal<T>(req: &Request<T>) -> Result<Principal, Error> {
    // The pipeline put it there; without it the call did not come through
    // the gateway's checks, so refuse.
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or(Error::NotAuthenticated)
}

/// The caller's tenant, which signs its page tokens and owns its
/// idempotency keys.
fn caller_tenant(p: &Principal) -> Result<Tenant, Error> {
    Tenant::parse(&p.tenant).map_err(|why| Error::Internal(format!("principal tenant: {why}")))
}

/// The tenant an admin may act on: its own, or any with the platform scope.
fn tenant_scope(p: &Principal, requested: &str) -> Result<Option<String>, Error> {
    if p.scopes.contains(PLATFORM_SCOPE) {
        if requested.is_empty() {
            return Ok(None);
        }
        // A filter goes into a query: a value no tenant can have (NUL,
        // which PostgreSQL refuses) is invalid input, not an internal error.
        return match Tenant::parse(requested) {
            Ok(_) => Ok(Some(requested.to_owned())),
            Err(why) => Err(Violations::one("tenant", why.to_string()).into()),
        };
    }
    if !requested.is_empty() && requested != p.tenant {
        return Err(Error::TenantForbidden);
    }
    Ok(Some(p.tenant.clone()))
}

#[tonic::async_trait]
impl GatewayAdminService for Handler {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        // At the storage precision, so a replay shows the same create_time.
        let now = SystemClock.now();
        let new = new_key(&req, now).map_err(Error::from)?;
        tenant_scope(&caller, &new.tenant)?;
        if new.scopes.iter().any(|s| s == PLATFORM_SCOPE) && !caller.scopes.contains(PLATFORM_SCOPE)
        {
            return Err(Error::ScopeEscalation.into());
        }
        // A tenant's capacity is the platform's to give: its admin can
        // neither raise a key above the cap nor mint keys without end (each
        // key is a fresh bucket).
        if !caller.scopes.contains(PLATFORM_SCOPE) {
            let max_rate = self.limits.max_key_per_second;
            if new.rate_limit > max_rate {
                return Err(Error::from(Violations::one(
                    "api_key.rate_limit_per_second",
                    format!(
                        "must be at most {max_rate} unless the caller holds the `platform` scope"
                    ),
                ))
                .into());
            }
            let active = self
                .store
                .active_keys(&new.tenant)
                .await
                .map_err(Error::from)?;
            if active >= u64::from(self.limits.max_keys) {
                return Err(Error::KeyQuotaExceeded {
                    limit: self.limits.max_keys,
                }
                .into());
            }
        }
        let key = idempotency::key(
            "/rapport.gateway.v1.GatewayAdminService/CreateApiKey",
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            DOMAIN,
        )?;
        let tenant = caller_tenant(&caller)?;
        let issued = self
            .keys
            .issue(new, now, key.as_ref().map(|k| (&tenant, k)))
            .await?;
        if !issued.secret.is_empty() {
            tracing::info!(key = %issued.record.key_id, tenant = %issued.record.tenant, by = %caller.id, "api key created");
        }
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(key_to_pb(&issued.record)),
            secret: issued.secret,
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, 50, 500, DOMAIN)?;
        let tenant = tenant_scope(&caller, &req.tenant)?;
        let token_tenant = caller_tenant(&caller)?;
        let scope = format!("keys;{}", tenant.as_deref().unwrap_or("*"));
        let after: Option<(i64, String)> =
            self.tokens
                .decode(&token_tenant, &scope, &req.page_token, "page_token")?;
        let rows = self
            .store
            .keys(tenant.as_deref(), after, u64::from(limit) + 1)
            .await
            .map_err(Error::from)?;
        let (rows, next) = page_of(rows, limit, |k| (micros(k.create_time), k.key_id.clone()));
        let next = next
            .map(|c| self.tokens.encode(&token_tenant, &scope, &c))
            .unwrap_or_default();
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: rows.iter().map(key_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let caller = principal(&request)?;
        let name = &request.get_ref().name;
        let Some(key_id) = name
            .strip_prefix("apiKeys/")
            .filter(|id| !id.is_empty() && id.len() <= 32)
        else {
            return Err(Error::from(Violations::one("name", "must be `apiKeys/{key_id}`")).into());
        };
        let not_found = || Error::ApiKeyNotFound { name: name.clone() };
        let record = self
            .store
            .key(key_id)
            .await
            .map_err(Error::from)?
            .ok_or_else(not_found)?;
        // Another tenant's key is NOT_FOUND, not PERMISSION_DENIED: its
        // existence is none of this admin's business.
        if !caller.scopes.contains(PLATFORM_SCOPE) && record.tenant != caller.tenant {
            return Err(not_found().into());
        }
        self.store.revoke(key_id).await.map_err(Error::from)?;
        self.keys.forget(key_id);
        tracing::info!(key = %key_id, by = %caller.id, "api key revoked");
        let record = ApiKeyRecord {
            revoked: true,
            ..record
        };
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(key_to_pb(&record)),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, 50, 500, DOMAIN)?;
        let tenant = tenant_scope(&caller, &req.tenant)?;
        let mut v = Violations::default();
        let mut time = |field: &str, t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .and_then(|t| v.take(field, from_ts(t).ok_or("not a valid timestamp")))
        };
        let (start, end) = (
            time("start_time", &req.start_time),
            time("end_time", &req.end_time),
        );
        if req.principal.chars().count() > 300 || req.principal.chars().any(char::is_control) {
            v.add(
                "principal",
                "must be a principal name: at most 300 characters, no control characters",
            );
        }
        v.check().map_err(Error::from)?;
        let filter = AuditFilter {
            start,
            end,
            principal: (!req.principal.is_empty()).then(|| req.principal.clone()),
            tenant,
        };
        let token_tenant = caller_tenant(&caller)?;
        let scope = format!(
            "audit;{:?};{:?};{:?};{:?}",
            filter.start.map(micros),
            filter.end.map(micros),
            filter.principal,
            filter.tenant
        );
        let after: Option<(i64, String)> =
            self.tokens
                .decode(&token_tenant, &scope, &req.page_token, "page_token")?;
        // Read-your-writes: the caller's own earlier calls are in the log.
        self.audit.flush().await;
        let rows = self
            .store
            .audit(&filter, after, u64::from(limit) + 1)
            .await
            .map_err(Error::from)?;
        let (rows, next) = page_of(rows, limit, |a| (micros(a.event_time), a.id.clone()));
        let next = next
            .map(|c| self.tokens.encode(&token_tenant, &scope, &c))
            .unwrap_or_default();
        Ok(Response::new(pb::ListAuditEventsResponse {
            audit_events: rows.iter().map(audit_to_pb).collect(),
            next_page_token: next,
        }))
    }
}

/// The key a CreateApiKey request asks for, every invalid field reported.
fn new_key(
    req: &pb::CreateApiKeyRequest,
    now: chrono::DateTime<Utc>,
) -> Result<NewKey, Violations> {
    let mut v = Violations::default();
    let key = req.api_key.clone().unwrap_or_default();
    if req.api_key.is_none() {
        v.add("api_key", "is required");
    }
    let display_name = key.display_name.trim().to_owned();
    if display_name.is_empty() || display_name.chars().count() > 100 {
        v.add("api_key.display_name", "must be 1 to 100 characters");
    } else if display_name.chars().any(char::is_control) {
        v.add(
            "api_key.display_name",
            "must not contain control characters",
        );
    }
    v.take("api_key.tenant", Tenant::parse(&key.tenant));
    if key.scopes.is_empty() {
        v.add("api_key.scopes", "grant at least one scope");
    }
    for (i, s) in key.scopes.iter().enumerate() {
        if !valid_scope(s) {
            v.add(
                format!("api_key.scopes[{i}]"),
                "scopes are lower-case names such as `profiles.read`",
            );
        }
    }
    let expire_time = key.expire_time.as_ref().and_then(|t| {
        v.take(
            "api_key.expire_time",
            from_ts(t)
                .filter(|t| *t > now)
                .ok_or("must be a valid time in the future"),
        )
    });
    if key.rate_limit_per_second < 0 {
        v.add("api_key.rate_limit_per_second", "must not be negative");
    }
    v.check()?;
    Ok(NewKey {
        display_name,
        tenant: key.tenant,
        scopes: key.scopes,
        expire_time,
        rate_limit: key.rate_limit_per_second.max(0) as u32,
    })
}
