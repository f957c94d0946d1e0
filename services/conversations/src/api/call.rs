//! The shape every RPC shares, written once: the caller's context from the
//! request, the idempotency key of its `request_id` (mutations), the
//! command or query read from the request (INVALID_ARGUMENT with every bad
//! field at once), then the use-case and the response. A handler names only
//! what differs: how it reads its request and which use-case it calls.
use std::future::Future;

use rapport_kit::{PageTokens, RequestContext, idempotency, page};
use rapport_proto::conversations as pb;
use rapport_usecase::{Idempotency, Violations};
use tonic::{Request, Response, Status};

use super::error::to_status;
use crate::{ERROR_DOMAIN, domain::Error};

/// A request that carries an idempotency key (`request_id`).
pub trait Idempotent: prost::Message + prost::Name + Clone {
    /// Its `request_id`.
    fn request_id(&self) -> &str;
    /// Clears its `request_id` (the fingerprint is of the rest).
    fn clear_request_id(&mut self);
}

/// A request that changes one resource named in it, guarded by its etag.
pub trait Targeted {
    /// `(name, etag)`.
    fn target(&self) -> (&str, &str);
}

macro_rules! idempotent {
    ($($t:ident),+ $(,)?) => {$(
        impl Idempotent for pb::$t {
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn clear_request_id(&mut self) {
                self.request_id.clear();
            }
        }
    )+};
}

macro_rules! targeted {
    ($($t:ident),+ $(,)?) => {$(
        impl Targeted for pb::$t {
            fn target(&self) -> (&str, &str) {
                (&self.name, &self.etag)
            }
        }
    )+};
}

idempotent!(
    CreateTeamRequest,
    UpdateTeamRequest,
    CreateAgentRequest,
    UpdateAgentRequest,
    CreateCannedResponseRequest,
    UpdateCannedResponseRequest,
    CreateBusinessCalendarRequest,
    UpdateBusinessCalendarRequest,
    DeleteBusinessCalendarRequest,
    CreateSlaPolicyRequest,
    UpdateSlaPolicyRequest,
    ReorderSlaPoliciesRequest,
    DeleteSlaPolicyRequest,
    CreateInboxRequest,
    UpdateInboxRequest,
    CreateConversationRequest,
    UpdateConversationRequest,
    AssignConversationRequest,
    MarkConversationPendingRequest,
    SnoozeConversationRequest,
    ResolveConversationRequest,
    ReopenConversationRequest,
    CloseConversationRequest,
    ReceiveMessageRequest,
    ReceiveEmailRequest,
    CreateMessageRequest,
    ReportDeliveryRequest,
    CreatePromiseRequest,
    KeepPromiseRequest,
    CancelPromiseRequest,
    RenegotiatePromiseRequest,
);

targeted!(
    DeleteBusinessCalendarRequest,
    DeleteSlaPolicyRequest,
    MarkConversationPendingRequest,
    SnoozeConversationRequest,
    ResolveConversationRequest,
    ReopenConversationRequest,
    CloseConversationRequest,
    KeepPromiseRequest,
    CancelPromiseRequest,
    RenegotiatePromiseRequest,
);

/// Invalid input, as the one error mapping words it.
pub fn invalid(v: Violations) -> Status {
    to_status(Error::Invalid(v))
}

/// An etag as the use-cases take it: `None` when the request sent none.
pub fn etag_of(etag: &str) -> Option<String> {
    Some(etag.to_owned()).filter(|e| !e.is_empty())
}

/// An idempotent mutation: the caller, the key of the request's
/// `request_id`, the command `command` reads from the request, then `run`
/// (the use-case and the response message).
pub async fn mutate<M, Cmd, Out, Fut>(
    request: Request<M>,
    command: impl FnOnce(&M, &RequestContext) -> Result<Cmd, Violations>,
    run: impl FnOnce(RequestContext, Cmd, Option<Idempotency>) -> Fut,
) -> Result<Response<Out>, Status>
where
    M: Idempotent,
    Fut: Future<Output = Result<Out, Status>>,
{
    let ctx = RequestContext::from_request(&request)?;
    let req = request.into_inner();
    let key = idempotency::key_of(&req, req.request_id(), M::clear_request_id, ERROR_DOMAIN)?;
    let cmd = command(&req, &ctx).map_err(invalid)?;
    run(ctx, cmd, key).await.map(Response::new)
}

/// A read: the caller, the query `query` reads from the request, then `run`
/// (the use-case and the response message).
pub async fn read<M, Q, Out, Fut>(
    request: Request<M>,
    query: impl FnOnce(&M, &RequestContext) -> Result<Q, Violations>,
    run: impl FnOnce(RequestContext, Q) -> Fut,
) -> Result<Response<Out>, Status>
where
    Fut: Future<Output = Result<Out, Status>>,
{
    let ctx = RequestContext::from_request(&request)?;
    let q = query(request.get_ref(), &ctx).map_err(invalid)?;
    run(ctx, q).await.map(Response::new)
}

/// A list request: its page size and page token.
pub trait Paged {
    /// `(page_size, page_token)`.
    fn page(&self) -> (i32, &str);
}

macro_rules! paged {
    ($($t:ident),+ $(,)?) => {$(
        impl Paged for pb::$t {
            fn page(&self) -> (i32, &str) {
                (self.page_size, &self.page_token)
            }
        }
    )+};
}

paged!(
    ListTeamsRequest,
    ListAgentsRequest,
    ListCannedResponsesRequest,
    ListBusinessCalendarsRequest,
    ListSlaPoliciesRequest,
    ListInboxesRequest,
    ListConversationsRequest,
    ListMessagesRequest,
    ListCustomerHistoryRequest,
    ListPromisesRequest,
);

const LIST_DEFAULT: u32 = 50;
const LIST_MAX: u32 = 500;

/// A list: the caller, the page size, the query `query` reads from the
/// request with what its page tokens are bound to besides the tenant (the
/// scope: a token of another list or filter is refused), the cursor of the
/// page token, then `run` (the use-case: a page on the wire and the next
/// cursor); `out` is the response of a page and its next page token.
pub async fn list<M, Q, C, T, Out, Fut>(
    tokens: &PageTokens,
    request: Request<M>,
    query: impl FnOnce(&M, &RequestContext) -> Result<(Q, String), Violations>,
    run: impl FnOnce(RequestContext, Q, Option<C>, u32) -> Fut,
    out: impl FnOnce(Vec<T>, String) -> Out,
) -> Result<Response<Out>, Status>
where
    M: Paged,
    C: serde::Serialize + serde::de::DeserializeOwned,
    Fut: Future<Output = Result<(Vec<T>, Option<C>), Status>>,
{
    let ctx = RequestContext::from_request(&request)?;
    let req = request.get_ref();
    let (page_size, page_token) = req.page();
    let limit = page::page_size(page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
    let (q, scope) = query(req, &ctx).map_err(invalid)?;
    let after = tokens.cursor(&ctx.tenant, &scope, page_token)?;
    let tenant = ctx.tenant.clone();
    let (items, next) = run(ctx, q, after, limit).await?;
    Ok(Response::new(out(
        items,
        tokens.next(&tenant, &scope, next),
    )))
}
