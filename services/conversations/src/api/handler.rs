//! The tonic handler: each RPC names how it reads its request
//! ([`super::command`]) and which use-case it calls; the shape they share
//! (caller, idempotency key, validation, errors, response) is
//! [`super::call`]'s. No rules live here, and every error becomes a status
//! through [`super::error::to_status`].
use std::sync::Arc;

use prost_types::FieldMask;
use rapport_kit::{PageTokens, RequestContext, idempotency};
use rapport_proto::conversations::{
    self as pb, conversations_service_server::ConversationsService,
};
use tonic::{Request, Response, Status};

use super::{
    calendars,
    call::{self, Idempotent, Paged, Targeted, etag_of},
    command,
    convert::*,
    managed::{self, Wire},
    promises, sla_policies,
};
use crate::domain::{
    Agent, CannedResponse, Clock, Team, Tenant, Violations, calendars::Calendar, ports::Customers,
    repository::Repository, rules::Action, service::Conversations, sla::SlaPolicy,
};

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

    /// The managed-resource RPCs for `tenant`.
    fn rpcs(&self, tenant: Tenant) -> managed::Rpcs<'_, R, P, C> {
        managed::Rpcs {
            service: &self.service,
            tenant,
        }
    }

    /// Create of a managed resource: `value` is it in the request, `out`
    /// the response of it created.
    async fn create<T: Wire, M: Idempotent, Out>(
        &self,
        request: Request<M>,
        value: impl FnOnce(&M) -> Option<T::Pb>,
        out: impl FnOnce(Option<T::Pb>) -> Out,
    ) -> Result<Response<Out>, Status> {
        call::mutate(
            request,
            |r, _| Ok(value(r)),
            |ctx, value, key| async move {
                let rpcs = self.rpcs(ctx.tenant);
                Ok(out(Some(rpcs.create::<T>(value.as_ref(), key).await?)))
            },
        )
        .await
    }

    /// Get of a managed resource by the request's `name`.
    async fn get<T: Wire, M, Out>(
        &self,
        request: Request<M>,
        name: impl FnOnce(&M) -> &str,
        out: impl FnOnce(Option<T::Pb>) -> Out,
    ) -> Result<Response<Out>, Status> {
        call::read(
            request,
            |r, _| Ok(name(r).to_owned()),
            |ctx, name| async move { Ok(out(Some(self.rpcs(ctx.tenant).get::<T>(&name).await?))) },
        )
        .await
    }

    /// List of a managed resource.
    async fn list<T: Wire, M: Paged, Out>(
        &self,
        request: Request<M>,
        out: impl FnOnce(Vec<T::Pb>, String) -> Out,
    ) -> Result<Response<Out>, Status> {
        call::list(
            &self.tokens,
            request,
            |_, _| Ok(((), T::COLLECTION.to_owned())),
            |ctx, (), after, limit| async move {
                let (page, next) = self
                    .service
                    .managed_list::<T>(&ctx.tenant, after, limit)
                    .await?;
                Ok((page.iter().map(Wire::to_pb).collect(), next))
            },
            out,
        )
        .await
    }

    /// Update of a managed resource: `value` is it and its update mask in
    /// the request.
    async fn update<T: Wire, M: Idempotent, Out>(
        &self,
        request: Request<M>,
        value: impl FnOnce(&M) -> (Option<T::Pb>, Option<FieldMask>),
        out: impl FnOnce(Option<T::Pb>) -> Out,
    ) -> Result<Response<Out>, Status> {
        call::mutate(
            request,
            |r, _| Ok(value(r)),
            |ctx, (value, mask), key| async move {
                let rpcs = self.rpcs(ctx.tenant);
                let updated = rpcs.update::<T>(value.as_ref(), mask.as_ref(), key);
                Ok(out(Some(updated.await?)))
            },
        )
        .await
    }

    /// Delete of a business calendar or an SLA policy.
    async fn delete<T: Wire, M: Idempotent + Targeted, Out: Default>(
        &self,
        request: Request<M>,
    ) -> Result<Response<Out>, Status> {
        call::mutate(
            request,
            |r, _| {
                let (name, etag) = r.target();
                let id = command::id_in(name, T::COLLECTION)
                    .map_err(|why| Violations::one("name", why))?;
                Ok((id, etag_of(etag)))
            },
            |ctx, (id, etag), key| async move {
                self.service
                    .delete_managed::<T>(&ctx.tenant, id, etag, key)
                    .await?;
                Ok(Out::default())
            },
        )
        .await
    }

    /// A state change of one conversation through the transition function.
    async fn act<M: Idempotent + Targeted, Out>(
        &self,
        request: Request<M>,
        action: impl FnOnce(&M) -> Result<Action, Violations>,
        out: impl FnOnce(Option<pb::Conversation>) -> Out,
    ) -> Result<Response<Out>, Status> {
        call::mutate(
            request,
            |r, _| {
                let (name, etag) = r.target();
                let (id, etag) = command::target(name, etag)?;
                Ok((id, etag, action(r)?))
            },
            |ctx, (id, etag, action), key| async move {
                let c = self.service.act(&ctx.tenant, id, action, etag, key).await?;
                Ok(out(Some(self.conversation_out(&ctx.tenant, &c).await?)))
            },
        )
        .await
    }

    /// `c` as the API shows it: with where its SLA stands now.
    async fn conversation_out(
        &self,
        tenant: &Tenant,
        c: &crate::domain::Conversation,
    ) -> Result<pb::Conversation, Status> {
        let evaluations = self.service.sla_status(tenant, c).await?;
        Ok(pb::Conversation {
            sla: conversation_sla_to_pb(c, &evaluations),
            ..conversation_to_pb(c)
        })
    }

    /// A message received (ReceiveMessage, ReceiveEmail): the message, its
    /// conversation and whether it was new.
    async fn received(
        &self,
        tenant: &Tenant,
        inbound: crate::domain::service::Inbound,
        key: Option<rapport_usecase::Idempotency>,
    ) -> Result<(Option<pb::Message>, Option<pb::Conversation>, bool), Status> {
        let r = self.service.receive(tenant, inbound, key).await?;
        Ok((
            Some(message_to_pb(&r.message)),
            Some(self.conversation_out(tenant, &r.conversation).await?),
            r.created,
        ))
    }
}

#[tonic::async_trait]
impl<R: Repository, P: Customers, C: Clock> ConversationsService for Handler<R, P, C> {
    async fn create_team(
        &self,
        request: Request<pb::CreateTeamRequest>,
    ) -> Result<Response<pb::CreateTeamResponse>, Status> {
        self.create::<Team, _, _>(
            request,
            |r| r.team.clone(),
            |team| pb::CreateTeamResponse { team },
        )
        .await
    }

    async fn get_team(
        &self,
        request: Request<pb::GetTeamRequest>,
    ) -> Result<Response<pb::GetTeamResponse>, Status> {
        self.get::<Team, _, _>(request, |r| &r.name, |team| pb::GetTeamResponse { team })
            .await
    }

    async fn list_teams(
        &self,
        request: Request<pb::ListTeamsRequest>,
    ) -> Result<Response<pb::ListTeamsResponse>, Status> {
        self.list::<Team, _, _>(request, |teams, next_page_token| pb::ListTeamsResponse {
            teams,
            next_page_token,
        })
        .await
    }

    async fn update_team(
        &self,
        request: Request<pb::UpdateTeamRequest>,
    ) -> Result<Response<pb::UpdateTeamResponse>, Status> {
        self.update::<Team, _, _>(
            request,
            |r| (r.team.clone(), r.update_mask.clone()),
            |team| pb::UpdateTeamResponse { team },
        )
        .await
    }

    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        self.create::<Agent, _, _>(
            request,
            |r| r.agent.clone(),
            |agent| pb::CreateAgentResponse { agent },
        )
        .await
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        self.get::<Agent, _, _>(request, |r| &r.name, |agent| pb::GetAgentResponse { agent })
            .await
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        self.list::<Agent, _, _>(request, |agents, next_page_token| pb::ListAgentsResponse {
            agents,
            next_page_token,
        })
        .await
    }

    async fn update_agent(
        &self,
        request: Request<pb::UpdateAgentRequest>,
    ) -> Result<Response<pb::UpdateAgentResponse>, Status> {
        self.update::<Agent, _, _>(
            request,
            |r| (r.agent.clone(), r.update_mask.clone()),
            |agent| pb::UpdateAgentResponse { agent },
        )
        .await
    }

    async fn create_canned_response(
        &self,
        request: Request<pb::CreateCannedResponseRequest>,
    ) -> Result<Response<pb::CreateCannedResponseResponse>, Status> {
        self.create::<CannedResponse, _, _>(
            request,
            |r| r.canned_response.clone(),
            |canned_response| pb::CreateCannedResponseResponse { canned_response },
        )
        .await
    }

    async fn get_canned_response(
        &self,
        request: Request<pb::GetCannedResponseRequest>,
    ) -> Result<Response<pb::GetCannedResponseResponse>, Status> {
        self.get::<CannedResponse, _, _>(
            request,
            |r| &r.name,
            |canned_response| pb::GetCannedResponseResponse { canned_response },
        )
        .await
    }

    async fn list_canned_responses(
        &self,
        request: Request<pb::ListCannedResponsesRequest>,
    ) -> Result<Response<pb::ListCannedResponsesResponse>, Status> {
        self.list::<CannedResponse, _, _>(request, |canned_responses, next_page_token| {
            pb::ListCannedResponsesResponse {
                canned_responses,
                next_page_token,
            }
        })
        .await
    }

    async fn update_canned_response(
        &self,
        request: Request<pb::UpdateCannedResponseRequest>,
    ) -> Result<Response<pb::UpdateCannedResponseResponse>, Status> {
        self.update::<CannedResponse, _, _>(
            request,
            |r| (r.canned_response.clone(), r.update_mask.clone()),
            |canned_response| pb::UpdateCannedResponseResponse { canned_response },
        )
        .await
    }

    async fn create_business_calendar(
        &self,
        request: Request<pb::CreateBusinessCalendarRequest>,
    ) -> Result<Response<pb::CreateBusinessCalendarResponse>, Status> {
        self.create::<Calendar, _, _>(
            request,
            |r| r.business_calendar.clone(),
            |business_calendar| pb::CreateBusinessCalendarResponse { business_calendar },
        )
        .await
    }

    async fn get_business_calendar(
        &self,
        request: Request<pb::GetBusinessCalendarRequest>,
    ) -> Result<Response<pb::GetBusinessCalendarResponse>, Status> {
        self.get::<Calendar, _, _>(
            request,
            |r| &r.name,
            |business_calendar| pb::GetBusinessCalendarResponse { business_calendar },
        )
        .await
    }

    async fn list_business_calendars(
        &self,
        request: Request<pb::ListBusinessCalendarsRequest>,
    ) -> Result<Response<pb::ListBusinessCalendarsResponse>, Status> {
        self.list::<Calendar, _, _>(request, |business_calendars, next_page_token| {
            pb::ListBusinessCalendarsResponse {
                business_calendars,
                next_page_token,
            }
        })
        .await
    }

    async fn update_business_calendar(
        &self,
        request: Request<pb::UpdateBusinessCalendarRequest>,
    ) -> Result<Response<pb::UpdateBusinessCalendarResponse>, Status> {
        self.update::<Calendar, _, _>(
            request,
            |r| (r.business_calendar.clone(), r.update_mask.clone()),
            |business_calendar| pb::UpdateBusinessCalendarResponse { business_calendar },
        )
        .await
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
        self.create::<SlaPolicy, _, _>(
            request,
            |r| r.sla_policy.clone(),
            |sla_policy| pb::CreateSlaPolicyResponse { sla_policy },
        )
        .await
    }

    async fn get_sla_policy(
        &self,
        request: Request<pb::GetSlaPolicyRequest>,
    ) -> Result<Response<pb::GetSlaPolicyResponse>, Status> {
        self.get::<SlaPolicy, _, _>(
            request,
            |r| &r.name,
            |sla_policy| pb::GetSlaPolicyResponse { sla_policy },
        )
        .await
    }

    async fn list_sla_policies(
        &self,
        request: Request<pb::ListSlaPoliciesRequest>,
    ) -> Result<Response<pb::ListSlaPoliciesResponse>, Status> {
        self.list::<SlaPolicy, _, _>(request, |sla_policies, next_page_token| {
            pb::ListSlaPoliciesResponse {
                sla_policies,
                next_page_token,
            }
        })
        .await
    }

    async fn update_sla_policy(
        &self,
        request: Request<pb::UpdateSlaPolicyRequest>,
    ) -> Result<Response<pb::UpdateSlaPolicyResponse>, Status> {
        self.update::<SlaPolicy, _, _>(
            request,
            |r| (r.sla_policy.clone(), r.update_mask.clone()),
            |sla_policy| pb::UpdateSlaPolicyResponse { sla_policy },
        )
        .await
    }

    async fn reorder_sla_policies(
        &self,
        request: Request<pb::ReorderSlaPoliciesRequest>,
    ) -> Result<Response<pb::ReorderSlaPoliciesResponse>, Status> {
        call::mutate(
            request,
            |r, _| sla_policies::order(r),
            |ctx, order, key| async move {
                let policies = self
                    .service
                    .reorder_sla_policies(&ctx.tenant, order, key)
                    .await?;
                Ok(pb::ReorderSlaPoliciesResponse {
                    sla_policies: policies.iter().map(Wire::to_pb).collect(),
                })
            },
        )
        .await
    }

    async fn delete_business_calendar(
        &self,
        request: Request<pb::DeleteBusinessCalendarRequest>,
    ) -> Result<Response<pb::DeleteBusinessCalendarResponse>, Status> {
        self.delete::<Calendar, _, _>(request).await
    }

    async fn delete_sla_policy(
        &self,
        request: Request<pb::DeleteSlaPolicyRequest>,
    ) -> Result<Response<pb::DeleteSlaPolicyResponse>, Status> {
        self.delete::<SlaPolicy, _, _>(request).await
    }

    async fn render_canned_response(
        &self,
        request: Request<pb::RenderCannedResponseRequest>,
    ) -> Result<Response<pb::RenderCannedResponseResponse>, Status> {
        call::read(
            request,
            |r, ctx| command::render(r, &ctx.principal),
            |ctx, render| async move {
                let r = self.service.render(&ctx.tenant, render).await?;
                Ok(pb::RenderCannedResponseResponse {
                    text: r.text,
                    locale: r.locale,
                    missing_variables: r.missing,
                })
            },
        )
        .await
    }

    async fn assign_conversation(
        &self,
        request: Request<pb::AssignConversationRequest>,
    ) -> Result<Response<pb::AssignConversationResponse>, Status> {
        call::mutate(
            request,
            |r, _| Ok((command::target(&r.name, &r.etag)?, command::assignment(r)?)),
            |ctx, ((id, etag), (assignee, team)), key| async move {
                let c = self
                    .service
                    .assign(&ctx.tenant, id, assignee, team, etag, key)
                    .await?;
                Ok(pb::AssignConversationResponse {
                    conversation: Some(self.conversation_out(&ctx.tenant, &c).await?),
                })
            },
        )
        .await
    }

    async fn create_inbox(
        &self,
        request: Request<pb::CreateInboxRequest>,
    ) -> Result<Response<pb::CreateInboxResponse>, Status> {
        call::mutate(
            request,
            |r, _| command::new_inbox(r),
            |ctx, new, key| async move {
                let inbox = self.service.create_inbox(&ctx.tenant, new, key).await?;
                Ok(pb::CreateInboxResponse {
                    inbox: Some(inbox_to_pb(&inbox)),
                })
            },
        )
        .await
    }

    async fn get_inbox(
        &self,
        request: Request<pb::GetInboxRequest>,
    ) -> Result<Response<pb::GetInboxResponse>, Status> {
        call::read(
            request,
            |r, _| command::inbox_id(&r.name, "name"),
            |ctx, id| async move {
                let inbox = self.service.inbox(&ctx.tenant, id).await?;
                Ok(pb::GetInboxResponse {
                    inbox: Some(inbox_to_pb(&inbox)),
                })
            },
        )
        .await
    }

    async fn list_inboxes(
        &self,
        request: Request<pb::ListInboxesRequest>,
    ) -> Result<Response<pb::ListInboxesResponse>, Status> {
        call::list(
            &self.tokens,
            request,
            |_, _| Ok(((), "inboxes".to_owned())),
            |ctx, (), after, limit| async move {
                let (page, next) = self.service.inboxes(&ctx.tenant, after, limit).await?;
                Ok((page.iter().map(inbox_to_pb).collect(), next))
            },
            |inboxes, next_page_token| pb::ListInboxesResponse {
                inboxes,
                next_page_token,
            },
        )
        .await
    }

    async fn update_inbox(
        &self,
        request: Request<pb::UpdateInboxRequest>,
    ) -> Result<Response<pb::UpdateInboxResponse>, Status> {
        call::mutate(
            request,
            |r, _| command::inbox_update(r),
            |ctx, (patch, mask, etag), key| async move {
                let inbox = self
                    .service
                    .update_inbox(&ctx.tenant, patch, mask, etag, key)
                    .await?;
                Ok(pb::UpdateInboxResponse {
                    inbox: Some(inbox_to_pb(&inbox)),
                })
            },
        )
        .await
    }

    async fn create_conversation(
        &self,
        request: Request<pb::CreateConversationRequest>,
    ) -> Result<Response<pb::CreateConversationResponse>, Status> {
        call::mutate(
            request,
            |r, _| command::new_conversation(r),
            |ctx, new, key| async move {
                let c = self
                    .service
                    .create_conversation(&ctx.tenant, new, key)
                    .await?;
                Ok(pb::CreateConversationResponse {
                    conversation: Some(self.conversation_out(&ctx.tenant, &c).await?),
                })
            },
        )
        .await
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::GetConversationResponse>, Status> {
        call::read(
            request,
            |r, _| command::conversation_id(&r.name, "name"),
            |ctx, id| async move {
                let c = self.service.conversation(&ctx.tenant, id).await?;
                Ok(pb::GetConversationResponse {
                    conversation: Some(self.conversation_out(&ctx.tenant, &c).await?),
                })
            },
        )
        .await
    }

    async fn get_conversation_by_case_number(
        &self,
        request: Request<pb::GetConversationByCaseNumberRequest>,
    ) -> Result<Response<pb::GetConversationByCaseNumberResponse>, Status> {
        call::read(
            request,
            |r, _| match r.case_number {
                n if n > 0 => Ok(n),
                _ => Err(Violations::one("case_number", "must be positive")),
            },
            |ctx, n| async move {
                let c = self.service.by_case_number(&ctx.tenant, n).await?;
                Ok(pb::GetConversationByCaseNumberResponse {
                    conversation: Some(self.conversation_out(&ctx.tenant, &c).await?),
                })
            },
        )
        .await
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        call::list(
            &self.tokens,
            request,
            |r, _| {
                let filter = command::conversation_filter(r)?;
                // Tokens are bound to the filters they were issued for.
                let mut scope = r.clone();
                scope.page_size = 0;
                scope.page_token.clear();
                Ok((
                    filter,
                    format!("conversations;{}", idempotency::fingerprint(&scope)),
                ))
            },
            |ctx, (filter, channel, label), before, limit| async move {
                let (page, next) = self
                    .service
                    .conversations(
                        &ctx.tenant,
                        &filter,
                        channel,
                        label.as_deref(),
                        before,
                        limit,
                    )
                    .await?;
                let mut out = Vec::with_capacity(page.len());
                for c in &page {
                    out.push(self.conversation_out(&ctx.tenant, c).await?);
                }
                Ok((out, next))
            },
            |conversations, next_page_token| pb::ListConversationsResponse {
                conversations,
                next_page_token,
            },
        )
        .await
    }

    async fn update_conversation(
        &self,
        request: Request<pb::UpdateConversationRequest>,
    ) -> Result<Response<pb::UpdateConversationResponse>, Status> {
        call::mutate(
            request,
            |r, _| command::conversation_update(r),
            |ctx, (id, update, etag), key| async move {
                let c = self
                    .service
                    .update_conversation(&ctx.tenant, id, update, etag, key)
                    .await?;
                Ok(pb::UpdateConversationResponse {
                    conversation: Some(self.conversation_out(&ctx.tenant, &c).await?),
                })
            },
        )
        .await
    }

    async fn mark_conversation_pending(
        &self,
        request: Request<pb::MarkConversationPendingRequest>,
    ) -> Result<Response<pb::MarkConversationPendingResponse>, Status> {
        self.act(
            request,
            |_| Ok(Action::MarkPending),
            |conversation| pb::MarkConversationPendingResponse { conversation },
        )
        .await
    }

    async fn snooze_conversation(
        &self,
        request: Request<pb::SnoozeConversationRequest>,
    ) -> Result<Response<pb::SnoozeConversationResponse>, Status> {
        self.act(request, command::snooze, |conversation| {
            pb::SnoozeConversationResponse { conversation }
        })
        .await
    }

    async fn resolve_conversation(
        &self,
        request: Request<pb::ResolveConversationRequest>,
    ) -> Result<Response<pb::ResolveConversationResponse>, Status> {
        self.act(request, command::resolve, |conversation| {
            pb::ResolveConversationResponse { conversation }
        })
        .await
    }

    async fn reopen_conversation(
        &self,
        request: Request<pb::ReopenConversationRequest>,
    ) -> Result<Response<pb::ReopenConversationResponse>, Status> {
        self.act(
            request,
            |_| Ok(Action::Reopen),
            |conversation| pb::ReopenConversationResponse { conversation },
        )
        .await
    }

    async fn close_conversation(
        &self,
        request: Request<pb::CloseConversationRequest>,
    ) -> Result<Response<pb::CloseConversationResponse>, Status> {
        self.act(
            request,
            |_| Ok(Action::Close),
            |conversation| pb::CloseConversationResponse { conversation },
        )
        .await
    }

    async fn receive_message(
        &self,
        request: Request<pb::ReceiveMessageRequest>,
    ) -> Result<Response<pb::ReceiveMessageResponse>, Status> {
        call::mutate(
            request,
            |r, _| command::inbound(r),
            |ctx, inbound, key| async move {
                let (message, conversation, created) =
                    self.received(&ctx.tenant, inbound, key).await?;
                Ok(pb::ReceiveMessageResponse {
                    message,
                    conversation,
                    created,
                })
            },
        )
        .await
    }

    async fn receive_email(
        &self,
        request: Request<pb::ReceiveEmailRequest>,
    ) -> Result<Response<pb::ReceiveEmailResponse>, Status> {
        call::mutate(
            request,
            |r, _| super::email::inbound_email(r),
            |ctx, inbound, key| async move {
                let (message, conversation, created) =
                    self.received(&ctx.tenant, inbound, key).await?;
                Ok(pb::ReceiveEmailResponse {
                    message,
                    conversation,
                    created,
                })
            },
        )
        .await
    }

    async fn create_message(
        &self,
        request: Request<pb::CreateMessageRequest>,
    ) -> Result<Response<pb::CreateMessageResponse>, Status> {
        call::mutate(
            request,
            |r, ctx| command::outbound(r, &ctx.principal),
            |ctx, outbound, key| async move {
                let message = self.service.send(&ctx.tenant, outbound, key).await?;
                Ok(pb::CreateMessageResponse {
                    message: Some(message_to_pb(&message)),
                })
            },
        )
        .await
    }

    async fn report_delivery(
        &self,
        request: Request<pb::ReportDeliveryRequest>,
    ) -> Result<Response<pb::ReportDeliveryResponse>, Status> {
        call::mutate(
            request,
            |r, _| command::delivery_report(r),
            |ctx, report, key| async move {
                let message = self
                    .service
                    .report_delivery(&ctx.tenant, report, key)
                    .await?;
                Ok(pb::ReportDeliveryResponse {
                    message: Some(message_to_pb(&message)),
                })
            },
        )
        .await
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::GetMessageResponse>, Status> {
        call::read(
            request,
            |r, _| command::message_id(&r.name, "name"),
            |ctx, (c, m)| async move {
                let message = self.service.message(&ctx.tenant, c, m).await?;
                Ok(pb::GetMessageResponse {
                    message: Some(message_to_pb(&message)),
                })
            },
        )
        .await
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        call::list(
            &self.tokens,
            request,
            |r, _| {
                let id = command::conversation_id(&r.parent, "parent")?;
                Ok((id, format!("messages;{id}")))
            },
            |ctx, id, after, limit| async move {
                let (page, next) = self.service.messages(&ctx.tenant, id, after, limit).await?;
                Ok((page.iter().map(message_to_pb).collect(), next))
            },
            |messages, next_page_token| pb::ListMessagesResponse {
                messages,
                next_page_token,
            },
        )
        .await
    }

    async fn list_customer_history(
        &self,
        request: Request<pb::ListCustomerHistoryRequest>,
    ) -> Result<Response<pb::ListCustomerHistoryResponse>, Status> {
        call::list(
            &self.tokens,
            request,
            |r, _| {
                let customer = command::customer_id(&r.customer, "customer")?;
                Ok((customer, history_scope(customer)))
            },
            |ctx, customer, before, limit| async move {
                let (page, next) = self
                    .service
                    .history(&ctx.tenant, customer, before, limit)
                    .await?;
                Ok((page.iter().map(message_to_pb).collect(), next))
            },
            |messages, next_page_token| pb::ListCustomerHistoryResponse {
                messages,
                next_page_token,
            },
        )
        .await
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
