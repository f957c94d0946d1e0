//! The admin API (`rapport.gateway.v1.GatewayAdminService`): API keys and the
//! audit log. Served in-process behind the same pipeline as every other RPC,
//! so it needs the `admin` scope. An admin manages its own tenant; the
//! `platform` scope manages every tenant.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rapport_kit::{
    ErrorBuilder, FieldViolations, PageTokens, TenantId, error::invalid_argument, idempotency, page,
};
use rapport_proto::gateway::{self as pb, gateway_admin_service_server::GatewayAdminService};
use rapport_store::{idempotency as store_idem, micros};
use tonic::{Code, Request, Response, Status};

use crate::{
    audit::AuditSink,
    auth::{
        Principal,
        api_keys::{ApiKeys, NewKey, valid_scope},
    },
    pipeline::DOMAIN,
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
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

impl Handler {
    /// The answer to a repeated CreateApiKey: the key as it is now, without
    /// its secret (shown once).
    async fn replay_create(
        &self,
        k: &store_idem::Key,
    ) -> Result<Option<pb::CreateApiKeyResponse>, Status> {
        match store_idem::find(&self.store.db().reader, k)
            .await
            .map_err(internal)?
        {
            Some(store_idem::Prior::Mismatch) => Err(idempotency::reused(DOMAIN)),
            Some(store_idem::Prior::Replay(key_id)) => {
                let key_id: String = serde_json::from_str(&key_id).unwrap_or_default();
                let record = self.store.key(&key_id).await.map_err(internal)?;
                Ok(record.map(|r| pb::CreateApiKeyResponse {
                    api_key: Some(key_to_pb(&r)),
                    secret: String::new(),
                }))
            }
            None => Ok(None),
        }
    }

    /// A handler over the key store and the audit log.
    pub fn new(keys: Arc<ApiKeys>, store: Store, audit: AuditSink, tokens: PageTokens) -> Self {
        Self {
            keys,
            store,
            audit,
            tokens,
        }
    }
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn from_ts(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
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
    }
}

fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    // The pipeline put it there; without it the call did not come through
    // the gateway's checks, so refuse.
    req.extensions().get::<Principal>().cloned().ok_or_else(|| {
        ErrorBuilder::new(Code::Unauthenticated, DOMAIN, "CREDENTIALS_MISSING")
            .message("not authenticated")
            .build()
    })
}

fn internal(e: sea_orm::DbErr) -> Status {
    tracing::error!(error = %e, "gateway storage failed");
    ErrorBuilder::new(Code::Internal, DOMAIN, "INTERNAL")
        .message("internal error")
        .build()
}

/// The tenant an admin may act on: its own, or any with the platform scope.
fn tenant_scope(p: &Principal, requested: &str) -> Result<Option<String>, Status> {
    if p.scopes.contains(PLATFORM_SCOPE) {
        return Ok((!requested.is_empty()).then(|| requested.to_owned()));
    }
    if !requested.is_empty() && requested != p.tenant {
        return Err(
            ErrorBuilder::new(Code::PermissionDenied, DOMAIN, "TENANT_FORBIDDEN")
                .message("an admin manages only its own tenant; this needs the `platform` scope")
                .build(),
        );
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
        let mut v = FieldViolations::new();
        let key = req.api_key.clone().unwrap_or_default();
        if req.api_key.is_none() {
            v.add("api_key", "is required");
        }
        let display_name = key.display_name.trim().to_owned();
        if display_name.is_empty() || display_name.chars().count() > 100 {
            v.add("api_key.display_name", "must be 1 to 100 characters");
        }
        if let Err(why) = TenantId::parse(&key.tenant) {
            v.add("api_key.tenant", why);
        }
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
        let now = Utc::now();
        let expire_time = match key.expire_time.as_ref() {
            None => None,
            Some(t) => match from_ts(t) {
                Some(t) if t > now => Some(t),
                _ => {
                    v.add("api_key.expire_time", "must be a valid time in the future");
                    None
                }
            },
        };
        if key.rate_limit_per_second < 0 {
            v.add("api_key.rate_limit_per_second", "must not be negative");
        }
        if !v.is_empty() {
            return Err(invalid_argument(DOMAIN, v));
        }
        tenant_scope(&caller, &key.tenant)?;
        if key.scopes.iter().any(|s| s == PLATFORM_SCOPE) && !caller.scopes.contains(PLATFORM_SCOPE)
        {
            return Err(
                ErrorBuilder::new(Code::PermissionDenied, DOMAIN, "SCOPE_ESCALATION")
                    .message("only a platform admin can grant the `platform` scope")
                    .build(),
            );
        }
        let idem_key = match idempotency::request_id(&req.request_id, DOMAIN)? {
            None => None,
            Some(request_id) => {
                let mut canonical = req.clone();
                canonical.request_id.clear();
                Some(store_idem::Key {
                    tenant: caller.tenant.clone(),
                    method: "/rapport.gateway.v1.GatewayAdminService/CreateApiKey",
                    request_id,
                    fingerprint: idempotency::fingerprint(&canonical),
                })
            }
        };
        if let Some(k) = &idem_key
            && let Some(prior) = self.replay_create(k).await?
        {
            return Ok(Response::new(prior));
        }
        let new = NewKey {
            display_name,
            tenant: key.tenant.clone(),
            scopes: key.scopes.clone(),
            expire_time,
            rate_limit: key.rate_limit_per_second.max(0) as u32,
        };
        let issued = self
            .keys
            .issue(new, now, idem_key.as_ref())
            .await
            .map_err(internal)?;
        match issued {
            Some(issued) => {
                tracing::info!(key = %issued.record.key_id, tenant = %issued.record.tenant, by = %caller.id, "api key created");
                Ok(Response::new(pb::CreateApiKeyResponse {
                    api_key: Some(key_to_pb(&issued.record)),
                    secret: issued.secret,
                }))
            }
            None => {
                let k = idem_key
                    .as_ref()
                    .expect("only a keyed request can lose the claim");
                match self.replay_create(k).await? {
                    Some(prior) => Ok(Response::new(prior)),
                    None => Err(
                        ErrorBuilder::new(Code::Aborted, DOMAIN, "CONCURRENT_REQUEST")
                            .message("a request with this request_id is in progress; retry")
                            .build(),
                    ),
                }
            }
        }
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, 50, 500, DOMAIN)?;
        let tenant = tenant_scope(&caller, &req.tenant)?;
        let token_tenant = TenantId::parse(&caller.tenant)
            .map_err(|_| Status::internal("bad principal tenant"))?;
        let scope = format!("keys;{}", tenant.as_deref().unwrap_or("*"));
        let after: Option<(i64, String)> =
            self.tokens
                .decode(&token_tenant, &scope, &req.page_token, "page_token")?;
        let mut rows = self
            .store
            .keys(tenant.as_deref(), after, u64::from(limit) + 1)
            .await
            .map_err(internal)?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more
            .then(|| {
                rows.last().map(|k| {
                    self.tokens.encode(
                        &token_tenant,
                        &scope,
                        &(micros(k.create_time), k.key_id.clone()),
                    )
                })
            })
            .flatten()
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
            return Err(invalid_argument(
                DOMAIN,
                FieldViolations::single("name", "must be `apiKeys/{key_id}`"),
            ));
        };
        let not_found = || {
            ErrorBuilder::new(Code::NotFound, DOMAIN, "API_KEY_NOT_FOUND")
                .message(format!("{name} does not exist"))
                .build()
        };
        let record = self
            .store
            .key(key_id)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        // Another tenant's key is NOT_FOUND, not PERMISSION_DENIED: its
        // existence is none of this admin's business.
        if !caller.scopes.contains(PLATFORM_SCOPE) && record.tenant != caller.tenant {
            return Err(not_found());
        }
        self.store.revoke(key_id).await.map_err(internal)?;
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
        let mut v = FieldViolations::new();
        let start = req.start_time.as_ref().map(|t| from_ts(t).ok_or(()));
        let end = req.end_time.as_ref().map(|t| from_ts(t).ok_or(()));
        if matches!(start, Some(Err(()))) {
            v.add("start_time", "not a valid timestamp");
        }
        if matches!(end, Some(Err(()))) {
            v.add("end_time", "not a valid timestamp");
        }
        if !v.is_empty() {
            return Err(invalid_argument(DOMAIN, v));
        }
        let filter = AuditFilter {
            start: start.and_then(Result::ok),
            end: end.and_then(Result::ok),
            principal: (!req.principal.is_empty()).then(|| req.principal.clone()),
            tenant,
        };
        let token_tenant = TenantId::parse(&caller.tenant)
            .map_err(|_| Status::internal("bad principal tenant"))?;
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
        let mut rows = self
            .store
            .audit(&filter, after, u64::from(limit) + 1)
            .await
            .map_err(internal)?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more
            .then(|| {
                rows.last().map(|a| {
                    self.tokens
                        .encode(&token_tenant, &scope, &(micros(a.event_time), a.id.clone()))
                })
            })
            .flatten()
            .unwrap_or_default();
        Ok(Response::new(pb::ListAuditEventsResponse {
            audit_events: rows.iter().map(audit_to_pb).collect(),
            next_page_token: next,
        }))
    }
}
