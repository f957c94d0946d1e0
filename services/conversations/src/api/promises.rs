//! Promises on the wire: names, conversions, and the six RPCs as adapters
//! of a few lines each over the promise use-cases.
use rapport_kit::{PageTokens, RequestContext, convert::ts, idempotency, page};
use rapport_proto::conversations as pb;
use rapport_usecase::Violations;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    command::{conversation_id, id_in, message_id},
    convert::{from_pb, time, to_pb},
    error::to_status,
};
use crate::{
    ERROR_DOMAIN,
    domain::{
        AgentId, Clock, ConversationId, Error, ports::Customers, promise::*,
        repository::Repository, service::Conversations,
    },
};

const LIST_DEFAULT: u32 = 50;
const LIST_MAX: u32 = 500;

fn invalid(v: Violations) -> Status {
    to_status(Error::Invalid(v))
}

/// `conversations/{c}/promises/{p}`.
fn promise_id(name: &str, field: &str) -> Result<(ConversationId, PromiseId), Violations> {
    let parsed = name.strip_prefix("conversations/").and_then(|rest| {
        let (c, p) = rest.split_once("/promises/")?;
        Some((
            ConversationId(Uuid::parse_str(c).ok()?),
            PromiseId(Uuid::parse_str(p).ok()?),
        ))
    });
    parsed.ok_or_else(|| {
        Violations::one(
            field,
            "must be a resource name `conversations/{id}/promises/{id}`",
        )
    })
}

fn etag_of(etag: &str) -> Option<String> {
    Some(etag.to_owned()).filter(|e| !e.is_empty())
}

/// A promise on the wire.
pub fn promise_to_pb(p: &Promise) -> pb::Promise {
    pb::Promise {
        name: p.name(),
        kind: to_pb!(pb::PromiseKind, "PROMISE_KIND", p.kind),
        owner: format!("agents/{}", p.owner),
        due_time: Some(ts(p.due_time)),
        original_due_time: Some(ts(p.original_due_time)),
        customer_visible: p.customer_visible,
        description: p.description.clone(),
        state: to_pb!(pb::PromiseState, "PROMISE_STATE", p.state),
        keep_time: p.keep_time.map(ts),
        kept_on_time: p.kept_on_time,
        break_time: p.break_time.map(ts),
        cancel_time: p.cancel_time.map(ts),
        renegotiation_count: p.renegotiation_count,
        reminder_lead_time: (p.reminder_lead_secs > 0).then_some(prost_types::Duration {
            seconds: p.reminder_lead_secs,
            nanos: 0,
        }),
        reminder_time: p.reminder_time.map(ts),
        etag: p.etag(),
        create_time: Some(ts(p.create_time)),
        update_time: Some(ts(p.update_time)),
    }
}

/// The kind of a protobuf promise kind.
pub fn kind_to_pb(k: PromiseKind) -> i32 {
    to_pb!(pb::PromiseKind, "PROMISE_KIND", k)
}

fn new_promise(req: &pb::CreatePromiseRequest, principal: &str) -> Result<NewPromise, Violations> {
    let mut v = Violations::default();
    let conversation = v.take(
        "parent",
        conversation_id(&req.parent, "parent")
            .map_err(|_| "must be a resource name `conversations/{id}`"),
    );
    let Some(p) = &req.promise else {
        v.add("promise", "is required");
        return Err(v);
    };
    let kind = match from_pb!(pb::PromiseKind, PromiseKind, "PROMISE_KIND", p.kind) {
        Ok(Some(k)) => Some(k),
        Ok(None) => {
            v.add("promise.kind", "is required");
            None
        }
        Err(why) => {
            v.add("promise.kind", why);
            None
        }
    };
    let owner = if p.owner.is_empty() {
        None
    } else {
        v.take("promise.owner", id_in(&p.owner, "agents"))
            .map(AgentId)
    };
    let due_time = match &p.due_time {
        None => {
            v.add("promise.due_time", "is required");
            None
        }
        Some(t) => v.take("promise.due_time", time(t)),
    };
    let reminder_lead_secs = v
        .take(
            "promise.reminder_lead_time",
            super::convert::duration_secs(p.reminder_lead_time.as_ref()),
        )
        .unwrap_or(0);
    v.check()?;
    Ok(NewPromise {
        conversation: conversation.expect("checked"),
        kind: kind.expect("checked"),
        owner,
        principal: principal.to_owned(),
        due_time: due_time.expect("checked"),
        customer_visible: p.customer_visible,
        description: p.description.clone(),
        reminder_lead_secs,
    })
}

/// CreatePromise.
pub async fn create<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    request: Request<pb::CreatePromiseRequest>,
) -> Result<Response<pb::CreatePromiseResponse>, Status> {
    let ctx = RequestContext::from_request(&request)?;
    let req = request.into_inner();
    let key = idempotency::key_of(
        &req,
        &req.request_id,
        |r| r.request_id.clear(),
        ERROR_DOMAIN,
    )?;
    let new = new_promise(&req, &ctx.principal).map_err(invalid)?;
    let p = service
        .make_promise(&ctx.tenant, new, key)
        .await
        .map_err(to_status)?;
    Ok(Response::new(pb::CreatePromiseResponse {
        promise: Some(promise_to_pb(&p)),
    }))
}

/// GetPromise.
pub async fn get<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    request: Request<pb::GetPromiseRequest>,
) -> Result<Response<pb::GetPromiseResponse>, Status> {
    let tenant = RequestContext::tenant_of(&request)?;
    let (c, id) = promise_id(&request.get_ref().name, "name").map_err(invalid)?;
    let p = service.promise(&tenant, c, id).await.map_err(to_status)?;
    Ok(Response::new(pb::GetPromiseResponse {
        promise: Some(promise_to_pb(&p)),
    }))
}

/// ListPromises.
pub async fn list<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    tokens: &PageTokens,
    request: Request<pb::ListPromisesRequest>,
) -> Result<Response<pb::ListPromisesResponse>, Status> {
    let ctx = RequestContext::from_request(&request)?;
    let req = request.into_inner();
    let limit = page::page_size(req.page_size, LIST_DEFAULT, LIST_MAX, ERROR_DOMAIN)?;
    let mut v = Violations::default();
    let conversation = if req.parent == "conversations/-" {
        None
    } else {
        v.take(
            "parent",
            conversation_id(&req.parent, "parent")
                .map_err(|_| "must be `conversations/{id}` or `conversations/-`"),
        )
    };
    let owner = match req.owner.as_str() {
        "" => Owner::Any,
        "me" => Owner::Me,
        name => v
            .take("owner", id_in(name, "agents"))
            .map_or(Owner::Any, |id| Owner::Agent(AgentId(id))),
    };
    let states = req
        .states
        .iter()
        .enumerate()
        .filter_map(
            |(i, s)| match from_pb!(pb::PromiseState, PromiseState, "PROMISE_STATE", *s) {
                Ok(Some(s)) => Some(s),
                Ok(None) => {
                    v.add(format!("states[{i}]"), "must not be UNSPECIFIED");
                    None
                }
                Err(why) => {
                    v.add(format!("states[{i}]"), why);
                    None
                }
            },
        )
        .collect();
    let due_from = req
        .due_after
        .as_ref()
        .and_then(|t| v.take("due_after", time(t)));
    let due_before = req
        .due_before
        .as_ref()
        .and_then(|t| v.take("due_before", time(t)));
    if req.due_today && req.owner.is_empty() {
        v.add(
            "owner",
            "is required with `due_today` (`me` for the caller)",
        );
    }
    v.check().map_err(invalid)?;
    let query = PromiseQuery {
        conversation,
        owner,
        principal: ctx.principal.clone(),
        states,
        due_from,
        due_before,
        due_today: req.due_today,
    };
    // The filter is part of the token: a token of another query is refused.
    let scope = format!(
        "promises;{};{};{:?};{:?};{:?};{:?};{}",
        req.parent, req.owner, req.states, due_from, due_before, ctx.principal, req.due_today
    );
    let after: Option<PromiseCursor> = tokens.cursor(&ctx.tenant, &scope, &req.page_token)?;
    let (page, next) = service
        .promises(&ctx.tenant, &query, after, limit)
        .await
        .map_err(to_status)?;
    Ok(Response::new(pb::ListPromisesResponse {
        promises: page.iter().map(promise_to_pb).collect(),
        next_page_token: tokens.next(&ctx.tenant, &scope, next),
    }))
}

/// KeepPromise.
pub async fn keep<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    request: Request<pb::KeepPromiseRequest>,
) -> Result<Response<pb::KeepPromiseResponse>, Status> {
    let tenant = RequestContext::tenant_of(&request)?;
    let req = request.into_inner();
    let key = idempotency::key_of(
        &req,
        &req.request_id,
        |r| r.request_id.clear(),
        ERROR_DOMAIN,
    )?;
    let (c, id) = promise_id(&req.name, "name").map_err(invalid)?;
    let p = service
        .keep_promise(&tenant, c, id, etag_of(&req.etag), key)
        .await
        .map_err(to_status)?;
    Ok(Response::new(pb::KeepPromiseResponse {
        promise: Some(promise_to_pb(&p)),
    }))
}

/// CancelPromise.
pub async fn cancel<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    request: Request<pb::CancelPromiseRequest>,
) -> Result<Response<pb::CancelPromiseResponse>, Status> {
    let tenant = RequestContext::tenant_of(&request)?;
    let req = request.into_inner();
    let key = idempotency::key_of(
        &req,
        &req.request_id,
        |r| r.request_id.clear(),
        ERROR_DOMAIN,
    )?;
    let (c, id) = promise_id(&req.name, "name").map_err(invalid)?;
    let p = service
        .cancel_promise(&tenant, c, id, etag_of(&req.etag), key)
        .await
        .map_err(to_status)?;
    Ok(Response::new(pb::CancelPromiseResponse {
        promise: Some(promise_to_pb(&p)),
    }))
}

/// RenegotiatePromise.
pub async fn renegotiate<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    request: Request<pb::RenegotiatePromiseRequest>,
) -> Result<Response<pb::RenegotiatePromiseResponse>, Status> {
    let ctx = RequestContext::from_request(&request)?;
    let req = request.into_inner();
    let key = idempotency::key_of(
        &req,
        &req.request_id,
        |r| r.request_id.clear(),
        ERROR_DOMAIN,
    )?;
    let mut v = Violations::default();
    let target = v.take(
        "name",
        promise_id(&req.name, "name").map_err(|_| "must be `conversations/{id}/promises/{id}`"),
    );
    let due_time = match &req.due_time {
        None => {
            v.add("due_time", "is required");
            None
        }
        Some(t) => v.take("due_time", time(t)),
    };
    let message = if req.message.is_empty() {
        None
    } else {
        match (message_id(&req.message, "message"), target) {
            (Ok((mc, m)), Some((c, _))) if mc == c => Some(m),
            (Ok(_), Some(_)) => {
                v.add("message", "must be a message of the promise's conversation");
                None
            }
            (Ok(_), None) => None,
            (Err(e), _) => {
                v.0.extend(e.0);
                None
            }
        }
    };
    v.check().map_err(invalid)?;
    let (c, id) = target.expect("checked");
    let r = Renegotiation {
        due_time: due_time.expect("checked"),
        message,
        message_text: req.message_text.clone(),
        principal: ctx.principal.clone(),
    };
    let p = service
        .renegotiate_promise(&ctx.tenant, c, id, r, etag_of(&req.etag), key)
        .await
        .map_err(to_status)?;
    Ok(Response::new(pb::RenegotiatePromiseResponse {
        promise: Some(promise_to_pb(&p)),
    }))
}

/// The protobuf event of a promise event.
pub fn encode_event(e: &PromiseEvent) -> prost_types::Any {
    let p = e.promise();
    let promise = p.name();
    let conversation = format!("conversations/{}", p.conversation);
    let owner = format!("agents/{}", p.owner);
    let kind = kind_to_pb(p.kind);
    match e {
        PromiseEvent::Made(_) => any(&pb::PromiseMade {
            promise,
            conversation,
            owner,
            kind,
            due_time: Some(ts(p.due_time)),
            customer_visible: p.customer_visible,
        }),
        PromiseEvent::Kept(_) => any(&pb::PromiseKept {
            promise,
            conversation,
            owner,
            kind,
            due_time: Some(ts(p.due_time)),
            keep_time: p.keep_time.map(ts),
            on_time: p.kept_on_time,
        }),
        PromiseEvent::Broken(_) => any(&pb::PromiseBroken {
            promise,
            conversation,
            owner,
            kind,
            due_time: Some(ts(p.due_time)),
        }),
        PromiseEvent::Renegotiated {
            previous_due_time,
            message,
            ..
        } => any(&pb::PromiseRenegotiated {
            promise,
            conversation: conversation.clone(),
            owner,
            original_due_time: Some(ts(p.original_due_time)),
            previous_due_time: Some(ts(*previous_due_time)),
            due_time: Some(ts(p.due_time)),
            message: message
                .map(|m| format!("{conversation}/messages/{m}"))
                .unwrap_or_default(),
        }),
        PromiseEvent::Cancelled(_) => any(&pb::PromiseCancelled {
            promise,
            conversation,
            owner,
        }),
        PromiseEvent::ReminderDue(_) => any(&pb::PromiseReminderDue {
            promise,
            conversation,
            owner,
            due_time: Some(ts(p.due_time)),
        }),
    }
}

fn any<M: prost::Name>(message: &M) -> prost_types::Any {
    prost_types::Any::from_msg(message).expect("encoding to a Vec cannot fail")
}
