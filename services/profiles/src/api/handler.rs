//! The tonic handler: each RPC destructures its request, converts it into a
//! command ([`super::command`]), calls the use-case and converts the answer
//! back. No rules live here, and every error becomes a status through
//! [`to_status`].
use std::sync::Arc;

use rapport_kit::{PageTokens, RequestContext, idempotency, page};
use rapport_proto::profiles::{self as pb, profiles_service_server::ProfilesService};
use tonic::{Request, Response, Status};

use super::{
    command,
    convert::{self, customer_to_pb},
    error::to_status,
};
use crate::{
    ERROR_DOMAIN,
    domain::{
        Clock, CustomerId, Error, Tenant, Violations,
        repository::{LedgerCursor, Repository},
        service::{IdentityQuery, Profiles},
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

/// One page of a customer's ledger (consent or lifecycle), as asked.
struct LedgerPage {
    /// Whose ledger.
    id: CustomerId,
    /// What its page tokens are bound to.
    scope: String,
    /// Where the page starts; `None` for the first page.
    cursor: Option<LedgerCursor>,
    /// How many entries at most.
    limit: u32,
}

impl<R: Repository, C: Clock> Handler<R, C> {
    /// A handler over the use-cases, signing page tokens with `tokens`.
    pub fn new(service: Profiles<R, C>, tokens: PageTokens) -> Self {
        Self {
            service: Arc::new(service),
            tokens,
        }
    }

    /// The page a ledger request asks for; `kind` names the ledger in its
    /// page tokens.
    fn ledger_page(
        &self,
        tenant: &Tenant,
        kind: &str,
        parent: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<LedgerPage, Status> {
        let limit = page::page_size(page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let id = command::customer_id(parent, "parent").map_err(invalid)?;
        let scope = format!("{kind};{id}");
        let cursor = self.tokens.cursor(tenant, &scope, page_token)?;
        Ok(LedgerPage {
            id,
            scope,
            cursor,
            limit,
        })
    }
}

/// Invalid input, as the one error mapping words it.
fn invalid(v: Violations) -> Status {
    to_status(Error::Invalid(v))
}

#[tonic::async_trait]
impl<R: Repository, C: Clock> ProfilesService for Handler<R, C> {
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::CreateCustomerResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let profile = command::new_profile(&req, self.service.now()).map_err(invalid)?;
        let c = self
            .service
            .create(&tenant, profile, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateCustomerResponse {
            customer: Some(customer_to_pb(&c)),
        }))
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::GetCustomerResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let id = command::customer_id(&request.get_ref().name, "name").map_err(invalid)?;
        let c = self.service.get(&tenant, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetCustomerResponse {
            customer: Some(customer_to_pb(&c)),
        }))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::UpdateCustomerResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let cmd = command::UpdateCustomer::from_pb(&req, self.service.now()).map_err(invalid)?;
        let c = self
            .service
            .update(&tenant, cmd.id, cmd.updates, cmd.etag, key)
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
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let cmd = command::ListCustomers::try_from(&req).map_err(invalid)?;
        let scope = cmd.scope();
        let cursor = self.tokens.cursor(&tenant, &scope, &req.page_token)?;
        let (rows, next) = self
            .service
            .list(&tenant, &cmd.filter, cmd.order, cursor, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListCustomersResponse {
            customers: rows.iter().map(customer_to_pb).collect(),
            next_page_token: self.tokens.next(&tenant, &scope, next),
        }))
    }

    async fn search_customers(
        &self,
        request: Request<pb::SearchCustomersRequest>,
    ) -> Result<Response<pb::SearchCustomersResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, SEARCH_DEFAULT, SEARCH_MAX, ERROR_DOMAIN)?;
        let cmd = command::SearchCustomers::try_from(&req).map_err(invalid)?;
        let scope = cmd.scope();
        let cursor = self.tokens.cursor(&tenant, &scope, &req.page_token)?;
        let (rows, next) = self
            .service
            .search(&tenant, &cmd.query, cursor, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SearchCustomersResponse {
            customers: rows.iter().map(customer_to_pb).collect(),
            next_page_token: self.tokens.next(&tenant, &scope, next),
        }))
    }

    async fn lookup_customer(
        &self,
        request: Request<pb::LookupCustomerRequest>,
    ) -> Result<Response<pb::LookupCustomerResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let query = IdentityQuery::try_from(request.get_ref()).map_err(invalid)?;
        let c = self
            .service
            .lookup(&tenant, &query)
            .await
            .and_then(|c| c.ok_or(Error::NoIdentityHolder))
            .map_err(to_status)?;
        Ok(Response::new(pb::LookupCustomerResponse {
            customer: Some(customer_to_pb(&c)),
        }))
    }

    async fn resolve_customer(
        &self,
        request: Request<pb::ResolveCustomerRequest>,
    ) -> Result<Response<pb::ResolveCustomerResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let (query, profile) =
            command::resolve(request.get_ref(), self.service.now()).map_err(invalid)?;
        let (c, created) = self
            .service
            .resolve(&tenant, &query, profile)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ResolveCustomerResponse {
            customer: Some(customer_to_pb(&c)),
            created,
        }))
    }

    async fn check_contact_policy(
        &self,
        request: Request<pb::CheckContactPolicyRequest>,
    ) -> Result<Response<pb::CheckContactPolicyResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let (id, channel, purpose) = command::contact_policy(request.get_ref()).map_err(invalid)?;
        let d = self
            .service
            .contact_policy(&tenant, id, channel, purpose)
            .await
            .map_err(to_status)?;
        Ok(Response::new(super::convert::contact_decision_to_pb(&d)))
    }

    async fn merge_customers(
        &self,
        request: Request<pb::MergeCustomersRequest>,
    ) -> Result<Response<pb::MergeCustomersResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let cmd = command::MergeCustomers::try_from(&req).map_err(invalid)?;
        let m = self
            .service
            .merge(&tenant, cmd.survivor, cmd.merged, key)
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
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let cmd = command::SetConsent::try_from(&req).map_err(invalid)?;
        let r = self
            .service
            .set_consent(&tenant, cmd.id, cmd.consent, key)
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
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let page = self.ledger_page(
            &tenant,
            "consent",
            &req.parent,
            req.page_size,
            &req.page_token,
        )?;
        let (rows, next) = self
            .service
            .consent_events(&tenant, page.id, page.cursor, page.limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListConsentEventsResponse {
            consent_events: rows.iter().map(convert::consent_event_to_pb).collect(),
            next_page_token: self.tokens.next(&tenant, &page.scope, next),
        }))
    }

    async fn change_lifecycle_stage(
        &self,
        request: Request<pb::ChangeLifecycleStageRequest>,
    ) -> Result<Response<pb::ChangeLifecycleStageResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let cmd = command::ChangeLifecycleStage::try_from(&req).map_err(invalid)?;
        let r = self
            .service
            .change_stage(&tenant, cmd.id, cmd.stage, cmd.reason, cmd.etag, key)
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
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let page = self.ledger_page(
            &tenant,
            "lifecycle",
            &req.parent,
            req.page_size,
            &req.page_token,
        )?;
        let (rows, next) = self
            .service
            .lifecycle_events(&tenant, page.id, page.cursor, page.limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListLifecycleEventsResponse {
            lifecycle_events: rows.iter().map(convert::lifecycle_event_to_pb).collect(),
            next_page_token: self.tokens.next(&tenant, &page.scope, next),
        }))
    }

    async fn export_customer_data(
        &self,
        request: Request<pb::ExportCustomerDataRequest>,
    ) -> Result<Response<pb::ExportCustomerDataResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let id = command::customer_id(&request.get_ref().name, "name").map_err(invalid)?;
        let doc = self.service.export(&tenant, id).await.map_err(to_status)?;
        Ok(Response::new(
            convert::export_to_pb(&doc).map_err(to_status)?,
        ))
    }

    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let id = command::customer_id(&req.name, "name").map_err(invalid)?;
        let receipt = self
            .service
            .erase(&tenant, id, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::EraseCustomerResponse {
            erasure_receipt: Some(convert::receipt_to_pb(&receipt)),
        }))
    }

    async fn get_erasure_receipt(
        &self,
        request: Request<pb::GetErasureReceiptRequest>,
    ) -> Result<Response<pb::GetErasureReceiptResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let id = command::receipt_id(&request.get_ref().name, "name").map_err(invalid)?;
        let receipt = self
            .service
            .erasure_receipt(&tenant, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetErasureReceiptResponse {
            erasure_receipt: Some(convert::receipt_to_pb(&receipt)),
        }))
    }
}
