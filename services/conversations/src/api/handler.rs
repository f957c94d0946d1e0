//! The tonic handler: each RPC destructures its request, converts it into a
//! command ([`super::command`]), calls the use-case and converts the answer
//! back. No rules live here, and every error becomes a status through
//! [`to_status`].
use std::sync::Arc;

use rapport_kit::{PageTokens, RequestContext, idempotency, page};
use rapport_proto::conversations::{
    self as pb, conversations_service_server::ConversationsService,
};
use tonic::{Request, Response, Status};

use super::{calendars, command, convert::*, error::to_status, managed, promises, sla_policies};
use crate::{
    ERROR_DOMAIN,
    domain::{
        Agent, CannedResponse, Clock, ConversationId, Error, InboxId, MessageId, Team, Violations,
        calendars::Calendar, ports::Customers, repository::Repository, rules::Action,
        service::Conversations, sla::SlaPolicy,
    },
};

const LIST_DEFAULT: u32 = 50;
const LIST_MAX: u32 = 500;

/// The gRPC face of the conversations use-cases.
pub struct Handler<R, P, C> {
    service: Arc<Conversations<R, P, C>>,
    tokens: PageTokens,
}

impl<R, P, C> std::fmt::Debug for Handler<R, P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

impl<R: Repository, P: Customers, C: Clock> Handler<R, P, C> {
    /// A handler over the use-cases, signing page tokens with `tokens`.
    pub fn new(service: Conversations<R, P, C>, tokens: PageTokens) -> Self {
        Self {
            service: Arc::new(service),
            tokens,
        }
    }

    /// The managed-resource RPCs for the caller's tenant.
    fn rpcs<T>(&self, request: &Request<T>) -> Result<managed::Rpcs<'_, R, P, C>, Status> {
        Ok(managed::Rpcs {
            service: &self.service,
            tokens: &self.tokens,
            tenant: RequestContext::tenant_of(request)?,
        })
    }

    /// A state change of one conversation through the transition function.
    async fn act<M: StateChange>(
        &self,
        request: &Request<M>,
        action: Result<Action, Violations>,
    ) -> Result<Option<pb::Conversation>, Status> {
        let tenant = RequestContext::tenant_of(request)?;
        let req = request.get_ref();
        let (name, etag, request_id) = req.target();
        let key =
            idempotency::key_of(req, request_id, StateChange::clear_request_id, ERROR_DOMAIN)?;
        let (id, etag) = command::target(name, etag).map_err(invalid)?;
        let action = action.map_err(invalid)?;
        let c = self
            .service
            .act(&tenant, id, action, etag, key)
            .await
            .map_err(to_status)?;
        Ok(Some(self.conversation_out(&tenant, &c).await?))
    }

    /// `c` as the API shows it: with where its SLA stands now.
    async fn conversation_out(
        &self,
        tenant: &crate::domain::Tenant,
        c: &crate::domain::Conversation,
    ) -> Result<pb::Conversation, Status> {
        let evaluations = self
            .service
            .sla_status(tenant, c)
            .await
            .map_err(to_status)?;
        Ok(pb::Conversation {
            sla: conversation_sla_to_pb(c, &evaluations),
            ..conversation_to_pb(c)
        })
    }
}

/// A request that changes one conversation's state: its name, etag and
/// request id.
trait StateChange: prost::Message + prost::Name + Clone {
    /// `(name, etag, request_id)`.
    fn target(&self) -> (&str, &str, &str);
    /// Clears the request id (for the fingerprint).
    fn clear_request_id(&mut self);
}

macro_rules! state_change {
    ($($t:ty),+) => {$(
        impl StateChange for $t {
            fn target(&self) -> (&str, &str, &str) {
                (&self.name, &self.etag, &self.request_id)
            }
            fn clear_request_id(&mut self) {
                self.request_id.clear();
            }
        }
    )+};
}

state_change!(
    pb::MarkConversationPendingRequest,
    pb::SnoozeConversationRequest,
    pb::ResolveConversationRequest,
    pb::ReopenConversationRequest,
    pb::CloseConversationRequest
);

/// Invalid input, as the one error mapping words it.
fn invalid(v: Violations) -> Status {
    to_status(Error::Invalid(v))
}

#[tonic::async_trait]
impl<R: Repository, P: Customers, C: Clock> ConversationsService for Handler<R, P, C> {
    async fn create_team(
        &self,
        request: Request<pb::CreateTeamRequest>,
    ) -> Result<Response<pb::CreateTeamResponse>, Status> {
        let rpcs = self.rpcs(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        let team = rpcs.create::<Team>(req.team.as_ref(), key).await?;
        Ok(Response::new(pb::CreateTeamResponse { team: Some(team) }))
    }

    async fn get_team(
        &self,
        request: Request<pb::GetTeamRequest>,
    ) -> Result<Response<pb::GetTeamResponse>, Status> {
        let team = self
            .rpcs(&request)?
            .get::<Team>(&request.get_ref().name)
            .await?;
        Ok(Response::new(pb::GetTeamResponse { team: Some(team) }))
    }

    async fn list_teams(
        &self,
        request: Request<pb::ListTeamsRequest>,
    ) -> Result<Response<pb::ListTeamsResponse>, Status> {
        let r = request.get_ref();
        let (teams, next_page_token) = self
            .rpcs(&request)?
            .list::<Team>(r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListTeamsResponse {
            teams,
            next_page_token,
        }))
    }

    async fn update_team(
        &self,
        request: Request<pb::UpdateTeamRequest>,
    ) -> Result<Response<pb::UpdateTeamResponse>, Status> {
        let rpcs = self.rpcs(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        let team = rpcs
            .update::<Team>(req.team.as_ref(), req.update_mask.as_ref(), key)
            .await?;
        Ok(Response::new(pb::UpdateTeamResponse { team: Some(team) }))
    }

    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        let rpcs = self.rpcs(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        let agent = rpcs.create::<Agent>(req.agent.as_ref(), key).await?;
        Ok(Response::new(pb::CreateAgentResponse {
            agent: Some(agent),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        let agent = self
            .rpcs(&request)?
            .get::<Agent>(&request.get_ref().name)
            .await?;
        Ok(Response::new(pb::GetAgentResponse { agent: Some(agent) }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let r = request.get_ref();
        let (agents, next_page_token) = self
            .rpcs(&request)?
            .list::<Agent>(r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents,
            next_page_token,
        }))
    }

    async fn update_agent(
        &self,
        request: Request<pb::UpdateAgentRequest>,
    ) -> Result<Response<pb::UpdateAgentResponse>, Status> {
        let rpcs = self.rpcs(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        let agent = rpcs
            .update::<Agent>(req.agent.as_ref(), req.update_mask.as_ref(), key)
            .await?;
        Ok(Response::new(pb::UpdateAgentResponse {
            agent: Some(agent),
        }))
    }

    async fn create_canned_response(
        &self,
        request: Request<pb::CreateCannedResponseRequest>,
    ) -> Result<Response<pb::CreateCannedResponseResponse>, Status> {
        let rpcs = self.rpcs(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        let canned_response = rpcs
            .create::<CannedResponse>(req.canned_response.as_ref(), key)
            .await?;
        Ok(Response::new(pb::CreateCannedResponseResponse {
            canned_response: Some(canned_response),
        }))
    }

    async fn get_canned_response(
        &self,
        request: Request<pb::GetCannedResponseRequest>,
    ) -> Result<Response<pb::GetCannedResponseResponse>, Status> {
        let canned_response = self
            .rpcs(&request)?
            .get::<CannedResponse>(&request.get_ref().name)
            .await?;
        Ok(Response::new(pb::GetCannedResponseResponse {
            canned_response: Some(canned_response),
        }))
    }

    async fn list_canned_responses(
        &self,
        request: Request<pb::ListCannedResponsesRequest>,
    ) -> Result<Response<pb::ListCannedResponsesResponse>, Status> {
        let r = request.get_ref();
        let (canned_responses, next_page_token) = self
            .rpcs(&request)?
            .list::<CannedResponse>(r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListCannedResponsesResponse {
            canned_responses,
            next_page_token,
        }))
    }

    async fn update_canned_response(
        &self,
        request: Request<pb::UpdateCannedResponseRequest>,
    ) -> Result<Response<pb::UpdateCannedResponseResponse>, Status> {
        let rpcs = self.rpcs(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        let canned_response = rpcs
            .update::<CannedResponse>(req.canned_response.as_ref(), req.update_mask.as_ref(), key)
            .await?;
        Ok(Response::new(pb::UpdateCannedResponseResponse {
            canned_response: Some(canned_response),
        }))
    }

    async fn create_business_calendar(
        &self,
        request: Request<pb::CreateBusinessCalendarRequest>,
    ) -> Result<Response<pb::CreateBusinessCalendarResponse>, Status> {
        let rpcs = self.rpcs(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        let business_calendar = rpcs
            .create::<Calendar>(req.business_calendar.as_ref(), key)
            .await?;
        Ok(Response::new(pb::CreateBusinessCalendarResponse {
            business_calendar: Some(business_calendar),
        }))
    }

    async fn get_business_calendar(
        &self,
        request: Request<pb::GetBusinessCalendarRequest>,
    ) -> Result<Response<pb::GetBusinessCalendarResponse>, Status> {
        let business_calendar = self
            .rpcs(&request)?
            .get::<Calendar>(&request.get_ref().name)
            .await?;
        Ok(Response::new(pb::GetBusinessCalendarResponse {
            business_calendar: Some(business_calendar),
        }))
    }

    async fn list_business_calendars(
        &self,
        request: Request<pb::ListBusinessCalendarsRequest>,
    ) -> Result<Response<pb::ListBusinessCalendarsResponse>, Status> {
        let r = request.get_ref();
        let (business_calendars, next_page_token) = self
            .rpcs(&request)?
            .list::<Calendar>(r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListBusinessCalendarsResponse {
            business_calendars,
            next_page_token,
        }))
    }

    async fn update_business_calendar(
        &self,
        request: Request<pb::UpdateBusinessCalendarRequest>,
    ) -> Result<Response<pb::UpdateBusinessCalendarResponse>, Status> {
        let rpcs = self.rpcs(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        let business_calendar = rpcs
            .update::<Calendar>(
                req.business_calendar.as_ref(),
                req.update_mask.as_ref(),
                key,
            )
            .await?;
        Ok(Response::new(pb::UpdateBusinessCalendarResponse {
            business_calendar: Some(business_calendar),
        }))
    }

    async fn add_business_time(
        &self,
        request: Request<pb::AddBusinessTimeRequest>,
    ) -> Result<Response<pb::AddBusinessTimeResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        calendars::add_business_time(&self.service, &tenant, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn measure_business_time(
        &self,
        request: Request<pb::MeasureBusinessTimeRequest>,
    ) -> Result<Response<pb::MeasureBusinessTimeResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        calendars::measure_business_time(&self.service, &tenant, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn query_interaction_metrics(
        &self,
        request: Request<pb::QueryInteractionMetricsRequest>,
    ) -> Result<Response<pb::QueryInteractionMetricsResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        super::metrics::query_interaction_metrics(&self.service, &tenant, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn create_sla_policy(
        &self,
        request: Request<pb::CreateSlaPolicyRequest>,
    ) -> Result<Response<pb::CreateSlaPolicyResponse>, Status> {
        let rpcs = self.rpcs(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        let sla_policy = rpcs
            .create::<SlaPolicy>(req.sla_policy.as_ref(), key)
            .await?;
        Ok(Response::new(pb::CreateSlaPolicyResponse {
            sla_policy: Some(sla_policy),
        }))
    }

    async fn get_sla_policy(
        &self,
        request: Request<pb::GetSlaPolicyRequest>,
    ) -> Result<Response<pb::GetSlaPolicyResponse>, Status> {
        let sla_policy = self
            .rpcs(&request)?
            .get::<SlaPolicy>(&request.get_ref().name)
            .await?;
        Ok(Response::new(pb::GetSlaPolicyResponse {
            sla_policy: Some(sla_policy),
        }))
    }

    async fn list_sla_policies(
        &self,
        request: Request<pb::ListSlaPoliciesRequest>,
    ) -> Result<Response<pb::ListSlaPoliciesResponse>, Status> {
        let r = request.get_ref();
        let (sla_policies, next_page_token) = self
            .rpcs(&request)?
            .list::<SlaPolicy>(r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListSlaPoliciesResponse {
            sla_policies,
            next_page_token,
        }))
    }

    async fn update_sla_policy(
        &self,
        request: Request<pb::UpdateSlaPolicyRequest>,
    ) -> Result<Response<pb::UpdateSlaPolicyResponse>, Status> {
        let rpcs = self.rpcs(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        let sla_policy = rpcs
            .update::<SlaPolicy>(req.sla_policy.as_ref(), req.update_mask.as_ref(), key)
            .await?;
        Ok(Response::new(pb::UpdateSlaPolicyResponse {
            sla_policy: Some(sla_policy),
        }))
    }

    async fn reorder_sla_policies(
        &self,
        request: Request<pb::ReorderSlaPoliciesRequest>,
    ) -> Result<Response<pb::ReorderSlaPoliciesResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        sla_policies::reorder(&self.service, &tenant, req, key)
            .await
            .map(Response::new)
    }

    async fn delete_business_calendar(
        &self,
        request: Request<pb::DeleteBusinessCalendarRequest>,
    ) -> Result<Response<pb::DeleteBusinessCalendarResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        calendars::delete::<Calendar, _, _, _>(&self.service, &tenant, &req.name, &req.etag, key)
            .await?;
        Ok(Response::new(pb::DeleteBusinessCalendarResponse {}))
    }

    async fn delete_sla_policy(
        &self,
        request: Request<pb::DeleteSlaPolicyRequest>,
    ) -> Result<Response<pb::DeleteSlaPolicyResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.get_ref();
        let key =
            idempotency::key_of(req, &req.request_id, |r| r.request_id.clear(), ERROR_DOMAIN)?;
        calendars::delete::<SlaPolicy, _, _, _>(&self.service, &tenant, &req.name, &req.etag, key)
            .await?;
        Ok(Response::new(pb::DeleteSlaPolicyResponse {}))
    }

    async fn render_canned_response(
        &self,
        request: Request<pb::RenderCannedResponseRequest>,
    ) -> Result<Response<pb::RenderCannedResponseResponse>, Status> {
        let ctx = RequestContext::from_request(&request)?;
        let req = request.into_inner();
        let render = command::render(&req, &ctx.principal).map_err(invalid)?;
        let r = self
            .service
            .render(&ctx.tenant, render)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RenderCannedResponseResponse {
            text: r.text,
            locale: r.locale,
            missing_variables: r.missing,
        }))
    }

    async fn assign_conversation(
        &self,
        request: Request<pb::AssignConversationRequest>,
    ) -> Result<Response<pb::AssignConversationResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let (id, etag) = command::target(&req.name, &req.etag).map_err(invalid)?;
        let (assignee, team) = command::assignment(&req).map_err(invalid)?;
        let c = self
            .service
            .assign(&tenant, id, assignee, team, etag, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::AssignConversationResponse {
            conversation: Some(self.conversation_out(&tenant, &c).await?),
        }))
    }

    async fn create_inbox(
        &self,
        request: Request<pb::CreateInboxRequest>,
    ) -> Result<Response<pb::CreateInboxResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let new = command::new_inbox(&req).map_err(invalid)?;
        let inbox = self
            .service
            .create_inbox(&tenant, new, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateInboxResponse {
            inbox: Some(inbox_to_pb(&inbox)),
        }))
    }

    async fn get_inbox(
        &self,
        request: Request<pb::GetInboxRequest>,
    ) -> Result<Response<pb::GetInboxResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let id = command::inbox_id(&request.get_ref().name, "name").map_err(invalid)?;
        let inbox = self.service.inbox(&tenant, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetInboxResponse {
            inbox: Some(inbox_to_pb(&inbox)),
        }))
    }

    async fn list_inboxes(
        &self,
        request: Request<pb::ListInboxesRequest>,
    ) -> Result<Response<pb::ListInboxesResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let after: Option<InboxId> = self.tokens.cursor(&tenant, "inboxes", &req.page_token)?;
        let (page, next) = self
            .service
            .inboxes(&tenant, after, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListInboxesResponse {
            inboxes: page.iter().map(inbox_to_pb).collect(),
            next_page_token: self.tokens.next(&tenant, "inboxes", next),
        }))
    }

    async fn update_inbox(
        &self,
        request: Request<pb::UpdateInboxRequest>,
    ) -> Result<Response<pb::UpdateInboxResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let (patch, mask, etag) = command::inbox_update(&req).map_err(invalid)?;
        let inbox = self
            .service
            .update_inbox(&tenant, patch, mask, etag, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UpdateInboxResponse {
            inbox: Some(inbox_to_pb(&inbox)),
        }))
    }

    async fn create_conversation(
        &self,
        request: Request<pb::CreateConversationRequest>,
    ) -> Result<Response<pb::CreateConversationResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let new = command::new_conversation(&req).map_err(invalid)?;
        let conversation = self
            .service
            .create_conversation(&tenant, new, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateConversationResponse {
            conversation: Some(self.conversation_out(&tenant, &conversation).await?),
        }))
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::GetConversationResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let id = command::conversation_id(&request.get_ref().name, "name").map_err(invalid)?;
        let c = self
            .service
            .conversation(&tenant, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetConversationResponse {
            conversation: Some(self.conversation_out(&tenant, &c).await?),
        }))
    }

    async fn get_conversation_by_case_number(
        &self,
        request: Request<pb::GetConversationByCaseNumberRequest>,
    ) -> Result<Response<pb::GetConversationByCaseNumberResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let n = request.get_ref().case_number;
        if n <= 0 {
            return Err(invalid(Violations::one("case_number", "must be positive")));
        }
        let c = self
            .service
            .by_case_number(&tenant, n)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetConversationByCaseNumberResponse {
            conversation: Some(self.conversation_out(&tenant, &c).await?),
        }))
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let (filter, channel, label) = command::conversation_filter(&req).map_err(invalid)?;
        // Tokens are bound to the filters they were issued for.
        let mut scope = req.clone();
        scope.page_size = 0;
        scope.page_token.clear();
        let scope = format!("conversations;{}", idempotency::fingerprint(&scope));
        let before: Option<ConversationId> =
            self.tokens.cursor(&tenant, &scope, &req.page_token)?;
        let (page, next) = self
            .service
            .conversations(&tenant, &filter, channel, label.as_deref(), before, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListConversationsResponse {
            conversations: {
                let mut out = Vec::with_capacity(page.len());
                for c in &page {
                    out.push(self.conversation_out(&tenant, c).await?);
                }
                out
            },
            next_page_token: self.tokens.next(&tenant, &scope, next),
        }))
    }

    async fn update_conversation(
        &self,
        request: Request<pb::UpdateConversationRequest>,
    ) -> Result<Response<pb::UpdateConversationResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let (id, update, etag) = command::conversation_update(&req).map_err(invalid)?;
        let c = self
            .service
            .update_conversation(&tenant, id, update, etag, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::UpdateConversationResponse {
            conversation: Some(self.conversation_out(&tenant, &c).await?),
        }))
    }

    async fn mark_conversation_pending(
        &self,
        request: Request<pb::MarkConversationPendingRequest>,
    ) -> Result<Response<pb::MarkConversationPendingResponse>, Status> {
        let conversation = self.act(&request, Ok(Action::MarkPending)).await?;
        Ok(Response::new(pb::MarkConversationPendingResponse {
            conversation,
        }))
    }

    async fn snooze_conversation(
        &self,
        request: Request<pb::SnoozeConversationRequest>,
    ) -> Result<Response<pb::SnoozeConversationResponse>, Status> {
        let conversation = self
            .act(&request, command::snooze(request.get_ref()))
            .await?;
        Ok(Response::new(pb::SnoozeConversationResponse {
            conversation,
        }))
    }

    async fn resolve_conversation(
        &self,
        request: Request<pb::ResolveConversationRequest>,
    ) -> Result<Response<pb::ResolveConversationResponse>, Status> {
        let conversation = self
            .act(&request, command::resolve(request.get_ref()))
            .await?;
        Ok(Response::new(pb::ResolveConversationResponse {
            conversation,
        }))
    }

    async fn reopen_conversation(
        &self,
        request: Request<pb::ReopenConversationRequest>,
    ) -> Result<Response<pb::ReopenConversationResponse>, Status> {
        let conversation = self.act(&request, Ok(Action::Reopen)).await?;
        Ok(Response::new(pb::ReopenConversationResponse {
            conversation,
        }))
    }

    async fn close_conversation(
        &self,
        request: Request<pb::CloseConversationRequest>,
    ) -> Result<Response<pb::CloseConversationResponse>, Status> {
        let conversation = self.act(&request, Ok(Action::Close)).await?;
        Ok(Response::new(pb::CloseConversationResponse {
            conversation,
        }))
    }

    async fn receive_message(
        &self,
        request: Request<pb::ReceiveMessageRequest>,
    ) -> Result<Response<pb::ReceiveMessageResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let inbound = command::inbound(&req).map_err(invalid)?;
        let r = self
            .service
            .receive(&tenant, inbound, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReceiveMessageResponse {
            message: Some(message_to_pb(&r.message)),
            conversation: Some(self.conversation_out(&tenant, &r.conversation).await?),
            created: r.created,
        }))
    }

    async fn receive_email(
        &self,
        request: Request<pb::ReceiveEmailRequest>,
    ) -> Result<Response<pb::ReceiveEmailResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let inbound = super::email::inbound_email(&req).map_err(invalid)?;
        let r = self
            .service
            .receive(&tenant, inbound, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReceiveEmailResponse {
            message: Some(message_to_pb(&r.message)),
            conversation: Some(self.conversation_out(&tenant, &r.conversation).await?),
            created: r.created,
        }))
    }

    async fn create_message(
        &self,
        request: Request<pb::CreateMessageRequest>,
    ) -> Result<Response<pb::CreateMessageResponse>, Status> {
        let ctx = RequestContext::from_request(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let outbound = command::outbound(&req, &ctx.principal).map_err(invalid)?;
        let message = self
            .service
            .send(&ctx.tenant, outbound, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateMessageResponse {
            message: Some(message_to_pb(&message)),
        }))
    }

    async fn report_delivery(
        &self,
        request: Request<pb::ReportDeliveryRequest>,
    ) -> Result<Response<pb::ReportDeliveryResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let key = idempotency::key_of(
            &req,
            &req.request_id,
            |r| r.request_id.clear(),
            ERROR_DOMAIN,
        )?;
        let report = command::delivery_report(&req).map_err(invalid)?;
        let message = self
            .service
            .report_delivery(&tenant, report, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReportDeliveryResponse {
            message: Some(message_to_pb(&message)),
        }))
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::GetMessageResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let (c, m) = command::message_id(&request.get_ref().name, "name").map_err(invalid)?;
        let message = self
            .service
            .message(&tenant, c, m)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetMessageResponse {
            message: Some(message_to_pb(&message)),
        }))
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let id = command::conversation_id(&req.parent, "parent").map_err(invalid)?;
        let scope = format!("messages;{id}");
        let after: Option<MessageId> = self.tokens.cursor(&tenant, &scope, &req.page_token)?;
        let (page, next) = self
            .service
            .messages(&tenant, id, after, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages: page.iter().map(message_to_pb).collect(),
            next_page_token: self.tokens.next(&tenant, &scope, next),
        }))
    }

    async fn list_customer_history(
        &self,
        request: Request<pb::ListCustomerHistoryRequest>,
    ) -> Result<Response<pb::ListCustomerHistoryResponse>, Status> {
        let tenant = RequestContext::tenant_of(&request)?;
        let req = request.into_inner();
        let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
        let customer = command::customer_id(&req.customer, "customer").map_err(invalid)?;
        let scope = history_scope(customer);
        let before: Option<MessageId> = self.tokens.cursor(&tenant, &scope, &req.page_token)?;
        let (page, next) = self
            .service
            .history(&tenant, customer, before, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListCustomerHistoryResponse {
            messages: page.iter().map(message_to_pb).collect(),
            next_page_token: self.tokens.next(&tenant, &scope, next),
        }))
    }

    // ---- Promises (issue 14) ----

    async fn create_promise(
        &self,
        request: Request<pb::CreatePromiseRequest>,
    ) -> Result<Response<pb::CreatePromiseResponse>, Status> {
        promises::create(&self.service, request).await
    }

    async fn get_promise(
        &self,
        request: Request<pb::GetPromiseRequest>,
    ) -> Result<Response<pb::GetPromiseResponse>, Status> {
        promises::get(&self.service, request).await
    }

    async fn list_promises(
        &self,
        request: Request<pb::ListPromisesRequest>,
    ) -> Result<Response<pb::ListPromisesResponse>, Status> {
        promises::list(&self.service, &self.tokens, request).await
    }

    async fn keep_promise(
        &self,
        request: Request<pb::KeepPromiseRequest>,
    ) -> Result<Response<pb::KeepPromiseResponse>, Status> {
        promises::keep(&self.service, request).await
    }

    async fn cancel_promise(
        &self,
        request: Request<pb::CancelPromiseRequest>,
    ) -> Result<Response<pb::CancelPromiseResponse>, Status> {
        promises::cancel(&self.service, request).await
    }

    async fn renegotiate_promise(
        &self,
        request: Request<pb::RenegotiatePromiseRequest>,
    ) -> Result<Response<pb::RenegotiatePromiseResponse>, Status> {
        promises::renegotiate(&self.service, request).await
    }
}

/// What a ListCustomerHistory page token is bound to besides the tenant: the
/// customer (also `seed::history_page_token`'s).
pub(crate) fn history_scope(customer: crate::domain::CustomerId) -> String {
    format!("history;{customer}")
}
