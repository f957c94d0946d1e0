//! The tonic handler: each RPC destructures its request, converts it into
//! a command ([`super::command`]), calls the use-case and converts the
//! answer back. No rules live here, and every error becomes a status
//! through [`to_status`].
use std::sync::Arc;

use rapport_events::admin::DeadLetterAdmin;
use rapport_kit::{PageTokens, RequestContext, idempotency, page};
use rapport_proto::webhooks::{self as pb, webhooks_service_server::WebhooksService};
use tonic::{Request, Response, Status};

use super::{
    command,
    convert::{delivery_to_pb, subscription_to_pb},
    error::to_status,
    events,
};
use crate::{
    ERROR_DOMAIN,
    domain::{
        Clock, Error, Violations, ports::AddressGuard, repository::Repository,
        service::Subscriptions,
    },
};

const LIST_DEFAULT: u32 = 50;
const LIST_MAX: u32 = 500;

/// The gRPC face of the webhooks use-cases.
pub struct Handler<R, G, C> {
    service: Arc<Subscriptions<R, G, C>>,
    tokens: PageTokens,
    /// The consumers' dead letters (the events library's admin API).
    dead_letters: DeadLetterAdmin,
    /// Whether plain-http URLs are accepted (development).
    allow_http: bool,
}

impl<R, G, C> std::fmt::Debug for Handler<R, G, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

impl<R: Repository, G: AddressGuard, C: Clock> Handler<R, G, C> {
    /// A handler over the use-cases, signing page tokens with `tokens`.
    pub fn new(
        service: Subscriptions<R, G, C>,
        tokens: PageTokens,
        dead_letters: DeadLetterAdmin,
        allow_http: bool,
    ) -> Self {
        Self {
            service: Arc::new(service),
            tokens,
            dead_letters,
            allow_http,
        }
    }
}

/// Invalid input, as the one error mapping words it.
fn invalid(v: Violations) -> Status {
    to_status(Error::Invalid(v))
}

#[tonic::async_trait]
impl<R: Repository, G: AddressGuard, C: Clock> WebhooksService for Handler<R, G, C> {
    async fn create_webhook_subscription(
        &self,
        request: Request<pb::CreateWebhookSubscriptionRequest>,
    ) -> Result<Response<pb::CreateWebhookSubscriptionResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let new = command::new_subscription(&req, self.allow_http).map_err(invalid)?;
        let s = self
            .service
            .create(&tenant, new, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateWebhookSubscriptionResponse {
            webhook_subscription: Some(subscription_to_pb(&s)),
            signing_secret: s.secret.expose(),
        }))
    }

    async fn get_webhook_subscription(
        &self,
        request: Request<pb::GetWebhookSubscriptionRequest>,
    ) -> Result<Response<pb::GetWebhookSubscriptionResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let id = command::subscription_id(&request.get_ref().name, "name").map_err(invalid)?;
        let s = self.service.get(&tenant, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetWebhookSubscriptionResponse {
            webhook_subscription: Some(subscription_to_pb(&s)),
        }))
    }

    async fn list_webhook_subscriptions(
        &self,
        request: Request<pb::ListWebhookSubscriptionsRequest>,
    ) -> Result<Response<pb::ListWebhookSubscriptionsResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let scope = "subscriptions";
        let cursor = self.tokens.cursor(&tenant, scope, &req.page_token)?;
        let (rows, next) = self
            .service
            .list(&tenant, cursor, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListWebhookSubscriptionsResponse {
            webhook_subscriptions: rows.iter().map(subscription_to_pb).collect(),
            next_page_token: self.tokens.next(&tenant, scope, next),
        }))
    }

    async fn update_webhook_subscription(
        &self,
        request: Request<pb::UpdateWebhookSubscriptionRequest>,
    ) -> Result<Response<pb::UpdateWebhookSubscriptionResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let cmd = command::UpdateSubscription::from_pb(&req, self.allow_http).map_err(invalid)?;
        let s = self
            .service
            .update(&tenant, cmd.id, cmd.updates, cmd.etag, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UpdateWebhookSubscriptionResponse {
            webhook_subscription: Some(subscription_to_pb(&s)),
        }))
    }

    async fn delete_webhook_subscription(
        &self,
        request: Request<pb::DeleteWebhookSubscriptionRequest>,
    ) -> Result<Response<pb::DeleteWebhookSubscriptionResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let (id, etag) = command::delete(&req).map_err(invalid)?;
        self.service
            .delete(&tenant, id, etag, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteWebhookSubscriptionResponse {}))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let id = command::subscription_id(&req.parent, "parent").map_err(invalid)?;
        let scope = format!("deliveries;{id}");
        let cursor = self.tokens.cursor(&tenant, &scope, &req.page_token)?;
        let (rows, next) = self
            .service
            .deliveries(&tenant, id, cursor, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            webhook_deliveries: rows.iter().map(delivery_to_pb).collect(),
            next_page_token: self.tokens.next(&tenant, &scope, next),
        }))
    }

    async fn send_test_webhook(
        &self,
        request: Request<pb::SendTestWebhookRequest>,
    ) -> Result<Response<pb::SendTestWebhookResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let id = command::subscription_id(&req.name, "name").map_err(invalid)?;
        let event = events::test_event(&tenant, id, self.service.now());
        let d = self
            .service
            .send_test(&tenant, id, event, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SendTestWebhookResponse {
            webhook_delivery: Some(delivery_to_pb(&d)),
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let (dead_letters, next_page_token) = self
            .dead_letters
            .list(&tenant, &req.parent, req.page_size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters,
            next_page_token,
        }))
    }

    async fn replay_dead_letter(
        &self,
        request: Request<pb::ReplayDeadLetterRequest>,
    ) -> Result<Response<pb::ReplayDeadLetterResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let applied_now = self
            .dead_letters
            .replay(&tenant, &request.get_ref().name)
            .await?;
        Ok(Response::new(pb::ReplayDeadLetterResponse { applied_now }))
    }
}
