//! The tonic handler: each RPC destructures its request, converts it into a
//! domain call, and converts the result back. No rules live here.
use std::sync::Arc;

use prost::Message;
use rapport_kit::{PageTokens, RequestContext, idempotency, page};
use rapport_usecase::Idempotency;
use rapport_proto::profiles::{self as pb, profiles_service_server::ProfilesService};
use tonic::{Request, Response, Status};

use super::{
    convert::{self, customer_to_pb},
    error::to_status,
};
use crate::{
    ERROR_DOMAIN,
    domain::{
        Tenant, Violations,
        Clock,
        model::*,
        repository::{LedgerCursor, ListCursor, ListFilter, ListOrder, Repository, SortKey},
        service::{IdentityQuery, Profiles, SearchCursor, SetConsent},
        values::{self, Email, Phone},
    },
};

const LIST_DEFAULT: u32 = 50;
const LIST_MAX: u32 = 500;
const SEARCH_DEFAULT: u32 = 20;
const SEARCH_MAX: u32 = 100;

/// The gRPC face of the profiles use-cases.
pub struct Handler<R, C> {
    service: Arc<Profiles<R, C>>,
    tokens: PageTokens,
}

impl<R, C> std::fmt::Debug for Handler<R, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

impl<R: Repository, C: Clock> Handler<R, C> {
    /// A handler over the use-cases, signing page tokens with `tokens`.
    pub fn new(service: Profiles<R, C>, tokens: PageTokens) -> Self {
        Self {
            service: Arc::new(service),
            tokens,
        }
    }
}

fn context<T>(req: &Request<T>) -> Result<Tenant, Status> {
    Ok(RequestContext::from_request(req)?.tenant)
}

fn invalid(v: Violations) -> Status {
    to_status(crate::domain::Error::Invalid(v))
}

/// The idempotency key of a request: its `request_id` and the fingerprint of
/// the request without it.
fn idem<M: Message + Clone>(
    method: &'static str,
    msg: &M,
    request_id: &str,
    clear: impl FnOnce(&mut M),
) -> Result<Option<Idempotency>, Status> {
    idempotency::key(method, msg, request_id, clear, ERROR_DOMAIN)
}

fn one_id(name: &str, field: &str) -> Result<CustomerId, Status> {
    let mut v = Violations::default();
    let id = convert::customer_id(name, field, &mut v);
    match id {
        Some(id) => Ok(id),
        None => Err(invalid(v)),
    }
}

fn order_from(raw: &str) -> Option<ListOrder> {
    let mut parts = raw.split_whitespace();
    let key = match parts.next() {
        None => {
            return Some(ListOrder {
                key: SortKey::CreateTime,
                descending: true,
            });
        }
        Some("create_time") => SortKey::CreateTime,
        Some("update_time") => SortKey::UpdateTime,
        Some("display_name") => SortKey::DisplayName,
        Some(_) => return None,
    };
    let descending = match parts.next() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return None,
    };
    parts
        .next()
        .is_none()
        .then_some(ListOrder { key, descending })
}

/// The full gRPC method name of a profiles RPC: idempotency keys live in
/// one namespace per RPC.
macro_rules! method {
    ($rpc:literal) => {
        concat!("/rapport.profiles.v1.ProfilesService/", $rpc)
    };
}

#[tonic::async_trait]
impl<R: Repository, C: Clock> ProfilesService for Handler<R, C> {
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::CreateCustomerResponse>, Status> {
        let tenant = context(&request)?;
        let req = request.into_inner();
        let key = idem(method!("CreateCustomer"), &req, &req.request_id, |r| {
            r.request_id.clear()
        })?;
        let Some(customer) = req.customer.as_ref() else {
            return Err(invalid(Violations(vec![(
                "customer".into(),
                "is required".into(),
            )])));
        };
        let mut v = Violations::default();
        let profile = convert::profile_from_pb(customer, "customer.", self.service.now(), &mut v);
        if !v.is_empty() {
            return Err(invalid(v));
        }
        let created = self
            .service
            .create(&tenant, profile, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateCustomerResponse {
            customer: Some(customer_to_pb(&created)),
        }))
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::GetCustomerResponse>, Status> {
        let tenant = context(&request)?;
        let id = one_id(&request.get_ref().name, "name")?;
        let c = self.service.get(&tenant, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetCustomerResponse {
            customer: Some(customer_to_pb(&c)),
        }))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::UpdateCustomerResponse>, Status> {
        let tenant = context(&request)?;
        let req = request.into_inner();
        let key = idem(method!("UpdateCustomer"), &req, &req.request_id, |r| {
            r.request_id.clear()
        })?;
        let mut v = Violations::default();
        let Some(customer) = req.customer.as_ref() else {
            return Err(invalid(Violations(vec![(
                "customer".into(),
                "is required".into(),
            )])));
        };
        let id = convert::customer_id(&customer.name, "customer.name", &mut v);
        let paths = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        let updates = convert::updates_from_mask(customer, &paths, self.service.now(), &mut v);
        let (Some(id), true) = (id, v.is_empty()) else {
            return Err(invalid(v));
        };
        let etag = (!customer.etag.is_empty()).then(|| customer.etag.clone());
        let c = self
            .service
            .update(&tenant, id, updates, etag, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UpdateCustomerResponse {
            customer: Some(customer_to_pb(&c)),
        }))
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        let tenant = context(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let mut v = Violations::default();
        let state = convert::state_from_pb(req.state).unwrap_or_else(|why| {
            v.add("state", why);
            None
        });
        let stage = convert::stage_from_pb(req.lifecycle_stage).unwrap_or_else(|why| {
            v.add("lifecycle_stage", why);
            None
        });
        let tag = (!req.tag.is_empty())
            .then(|| {
                values::Tag::parse(&req.tag)
                    .map_err(|why| v.add("tag", why))
                    .ok()
            })
            .flatten();
        let after = req.update_time_after.as_ref().and_then(|t| {
            let parsed = convert::from_ts(t);
            if parsed.is_none() {
                v.add("update_time_after", "not a valid timestamp");
            }
            parsed
        });
        let order = order_from(&req.order_by);
        if order.is_none() {
            v.add("order_by", "must be one of create_time, update_time, display_name, optionally followed by `desc`");
        }
        let Some(order) = order.filter(|_| v.is_empty()) else {
            return Err(invalid(v));
        };
        let filter = ListFilter {
            state: state.unwrap_or(CustomerState::Active),
            stage,
            tag,
            update_time_after: after,
        };
        // The token binds to everything that shapes the result set.
        let scope = format!(
            "list;state={};stage={};tag={};after={};order={:?}/{}",
            filter.state.as_str(),
            filter.stage.map(|s| s.as_str()).unwrap_or(""),
            filter.tag.as_ref().map(|t| t.as_str()).unwrap_or(""),
            after.map(|t| t.timestamp_micros()).unwrap_or(0),
            order.key,
            order.descending
        );
        let cursor: Option<ListCursor> =
            self.tokens
                .decode(&tenant, &scope, &req.page_token, "page_token")?;
        let (rows, next) = self
            .service
            .list(&tenant, &filter, order, cursor, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListCustomersResponse {
            customers: rows.iter().map(customer_to_pb).collect(),
            next_page_token: next
                .map(|c| self.tokens.encode(&tenant, &scope, &c))
                .unwrap_or_default(),
        }))
    }

    async fn search_customers(
        &self,
        request: Request<pb::SearchCustomersRequest>,
    ) -> Result<Response<pb::SearchCustomersResponse>, Status> {
        let tenant = context(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, SEARCH_DEFAULT, SEARCH_MAX, ERROR_DOMAIN)?;
        let query = req.query.trim();
        if query.is_empty() || query.chars().count() > 200 || query.chars().any(char::is_control) {
            return Err(invalid(Violations(vec![(
                "query".into(),
                "must be 1 to 200 characters".into(),
            )])));
        }
        let scope = format!("search;q={}", query.to_lowercase());
        let cursor: Option<SearchCursor> =
            self.tokens
                .decode(&tenant, &scope, &req.page_token, "page_token")?;
        let (rows, next) = self
            .service
            .search(&tenant, query, cursor, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SearchCustomersResponse {
            customers: rows.iter().map(customer_to_pb).collect(),
            next_page_token: next
                .map(|c| self.tokens.encode(&tenant, &scope, &c))
                .unwrap_or_default(),
        }))
    }

    async fn lookup_customer(
        &self,
        request: Request<pb::LookupCustomerRequest>,
    ) -> Result<Response<pb::LookupCustomerResponse>, Status> {
        use pb::lookup_customer_request::Identity;
        let tenant = context(&request)?;
        let req = request.into_inner();
        let bad = |field: &str, why: &str| invalid(Violations(vec![(field.into(), why.into())]));
        let query = match &req.identity {
            None => {
                return Err(bad(
                    "identity",
                    "set exactly one of email, phone or channel_identity",
                ));
            }
            Some(Identity::Email(e)) => {
                IdentityQuery::Email(Email::parse(e).map_err(|why| bad("email", why))?)
            }
            Some(Identity::Phone(p)) => {
                IdentityQuery::Phone(Phone::parse(p).map_err(|why| bad("phone", why))?)
            }
            Some(Identity::ChannelIdentity(c)) => {
                let mut v = Violations::default();
                match convert::channel_identity(c, "channel_identity.", &mut v) {
                    Some(identity) if v.is_empty() => IdentityQuery::Channel(identity),
                    _ => return Err(invalid(v)),
                }
            }
        };
        match self
            .service
            .lookup(&tenant, &query)
            .await
            .map_err(to_status)?
        {
            Some(c) => Ok(Response::new(pb::LookupCustomerResponse {
                customer: Some(customer_to_pb(&c)),
            })),
            None => Err(to_status(crate::domain::Error::NoIdentityHolder)),
        }
    }

    async fn merge_customers(
        &self,
        request: Request<pb::MergeCustomersRequest>,
    ) -> Result<Response<pb::MergeCustomersResponse>, Status> {
        let tenant = context(&request)?;
        let req = request.into_inner();
        let key = idem(method!("MergeCustomers"), &req, &req.request_id, |r| {
            r.request_id.clear()
        })?;
        let mut v = Violations::default();
        let survivor = convert::customer_id(&req.survivor, "survivor", &mut v);
        let merged = convert::customer_id(&req.merged, "merged", &mut v);
        let (Some(survivor), Some(merged)) = (survivor, merged) else {
            return Err(invalid(v));
        };
        let m = self
            .service
            .merge(&tenant, survivor, merged, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::MergeCustomersResponse {
            customer: Some(customer_to_pb(&m.survivor)),
            merge_record: Some(convert::merge_record_to_pb(&m.record)),
        }))
    }

    async fn set_consent(
        &self,
        request: Request<pb::SetConsentRequest>,
    ) -> Result<Response<pb::SetConsentResponse>, Status> {
        let tenant = context(&request)?;
        let req = request.into_inner();
        let key = idem(method!("SetConsent"), &req, &req.request_id, |r| {
            r.request_id.clear()
        })?;
        let mut v = Violations::default();
        let id = convert::customer_id(&req.name, "name", &mut v);
        let channel = match convert::channel_from_pb(req.channel) {
            Ok(Some(c)) => Some(c),
            Ok(None) => {
                v.add("channel", "is required");
                None
            }
            Err(why) => {
                v.add("channel", why);
                None
            }
        };
        let purpose = match convert::purpose_from_pb(req.purpose) {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                v.add("purpose", "is required");
                None
            }
            Err(why) => {
                v.add("purpose", why);
                None
            }
        };
        let status = match convert::status_from_pb(req.status) {
            Ok(Some(s)) => Some(s),
            Ok(None) => {
                v.add("status", "is required");
                None
            }
            Err(why) => {
                v.add("status", why);
                None
            }
        };
        if req.source.trim().is_empty() {
            v.add("source", "is required");
        }
        let source = values::text(req.source.trim(), 128)
            .map_err(|why| v.add("source", why))
            .unwrap_or_default();
        let evidence = values::text(&req.evidence, 4096)
            .map_err(|why| v.add("evidence", why))
            .unwrap_or_default();
        let capture_time = match req.capture_time.as_ref().map(convert::from_ts) {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => {
                v.add("capture_time", "not a valid timestamp");
                None
            }
        };
        let (Some(id), Some(channel), Some(purpose), Some(status), true) =
            (id, channel, purpose, status, v.is_empty())
        else {
            return Err(invalid(v));
        };
        let input = SetConsent {
            channel,
            purpose,
            status,
            source,
            evidence,
            capture_time,
        };
        let r = self
            .service
            .set_consent(&tenant, id, input, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SetConsentResponse {
            consent_event: Some(convert::consent_event_to_pb(&r.event)),
            customer: Some(customer_to_pb(&r.customer)),
        }))
    }

    async fn list_consent_events(
        &self,
        request: Request<pb::ListConsentEventsRequest>,
    ) -> Result<Response<pb::ListConsentEventsResponse>, Status> {
        let tenant = context(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let id = one_id(&req.parent, "parent")?;
        let scope = format!("consent;{id}");
        let cursor: Option<LedgerCursor> =
            self.tokens
                .decode(&tenant, &scope, &req.page_token, "page_token")?;
        let (rows, next) = self
            .service
            .consent_events(&tenant, id, cursor, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListConsentEventsResponse {
            consent_events: rows.iter().map(convert::consent_event_to_pb).collect(),
            next_page_token: next
                .map(|c| self.tokens.encode(&tenant, &scope, &c))
                .unwrap_or_default(),
        }))
    }

    async fn change_lifecycle_stage(
        &self,
        request: Request<pb::ChangeLifecycleStageRequest>,
    ) -> Result<Response<pb::ChangeLifecycleStageResponse>, Status> {
        let tenant = context(&request)?;
        let req = request.into_inner();
        let key = idem(method!("ChangeLifecycleStage"), &req, &req.request_id, |r| {
            r.request_id.clear()
        })?;
        let mut v = Violations::default();
        let id = convert::customer_id(&req.name, "name", &mut v);
        let stage = match convert::stage_from_pb(req.stage) {
            Ok(Some(s)) => Some(s),
            Ok(None) => {
                v.add("stage", "is required");
                None
            }
            Err(why) => {
                v.add("stage", why);
                None
            }
        };
        if req.reason.trim().is_empty() {
            v.add("reason", "is required");
        }
        let reason = values::text(req.reason.trim(), 500)
            .map_err(|why| v.add("reason", why))
            .unwrap_or_default();
        let (Some(id), Some(stage), true) = (id, stage, v.is_empty()) else {
            return Err(invalid(v));
        };
        let etag = (!req.etag.is_empty()).then(|| req.etag.clone());
        let r = self
            .service
            .change_stage(&tenant, id, stage, reason, etag, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ChangeLifecycleStageResponse {
            customer: Some(customer_to_pb(&r.customer)),
            lifecycle_event: Some(convert::lifecycle_event_to_pb(&r.event)),
        }))
    }

    async fn list_lifecycle_events(
        &self,
        request: Request<pb::ListLifecycleEventsRequest>,
    ) -> Result<Response<pb::ListLifecycleEventsResponse>, Status> {
        let tenant = context(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let id = one_id(&req.parent, "parent")?;
        let scope = format!("lifecycle;{id}");
        let cursor: Option<LedgerCursor> =
            self.tokens
                .decode(&tenant, &scope, &req.page_token, "page_token")?;
        let (rows, next) = self
            .service
            .lifecycle_events(&tenant, id, cursor, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListLifecycleEventsResponse {
            lifecycle_events: rows.iter().map(convert::lifecycle_event_to_pb).collect(),
            next_page_token: next
                .map(|c| self.tokens.encode(&tenant, &scope, &c))
                .unwrap_or_default(),
        }))
    }

    async fn export_customer_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> Result<Response<pb::ExportCustomerDataResponse>, Status> {
        let tenant = context(&request)?;
        let id = one_id(&request.get_ref().name, "name")?;
        let doc = self.service.export(&tenant, id).await.map_err(to_status)?;
        let data = serde_json::to_vec_pretty(&doc)
            .map_err(|e| to_status(crate::domain::Error::Internal(e.to_string())))?;
        Ok(Response::new(pb::ExportCustomerDataResponse {
            content_type: "application/json".to_owned(),
            data,
        }))
    }

    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let tenant = context(&request)?;
        let req = request.into_inner();
        let key = idem(method!("EraseCustomer"), &req, &req.request_id, |r| {
            r.request_id.clear()
        })?;
        let id = one_id(&req.name, "name")?;
        let receipt = self
            .service
            .erase(&tenant, id, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::EraseCustomerResponse {
            erasure_receipt: Some(convert::receipt_to_pb(&receipt)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_grammar() {
        assert_eq!(
            order_from(""),
            Some(ListOrder {
                key: SortKey::CreateTime,
                descending: true
            })
        );
        assert_eq!(
            order_from("display_name"),
            Some(ListOrder {
                key: SortKey::DisplayName,
                descending: false
            })
        );
        assert_eq!(
            order_from("update_time desc"),
            Some(ListOrder {
                key: SortKey::UpdateTime,
                descending: true
            })
        );
        assert_eq!(order_from("email"), None);
        assert_eq!(order_from("create_time sideways"), None);
        assert_eq!(order_from("create_time desc extra"), None);
    }
}
