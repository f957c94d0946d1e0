//! Promises on the wire: names, conversions, and the six RPCs as adapters
//! of a few lines each over the promise use-cases.
use rapport_kit::{PageTokens, RequestContext, convert::ts};
use rapport_proto::conversations as pb;
use rapport_usecase::Violations;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    call::{self, Idempotent, Targeted, etag_of},
    command::{conversation_id, id_in, message_id},
    convert::{from_pb, time, to_pb},
};
use crate::domain::{
    AgentId, Clock, ConversationId, ports::Customers, promise::*, repository::Repository,
    service::Conversations,
};

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
    call::mutate(
        request,
        |r, ctx| new_promise(r, &ctx.principal),
        |ctx, new, key| async move {
            let p = service.make_promise(&ctx.tenant, new, key).await?;
            Ok(pb::CreatePromiseResponse {
                promise: Some(promise_to_pb(&p)),
            })
        },
    )
    .await
}

/// GetPromise.
pub async fn get<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    request: Request<pb::GetPromiseRequest>,
) -> Result<Response<pb::GetPromiseResponse>, Status> {
    call::read(
        request,
        |r, _| promise_id(&r.name, "name"),
        |ctx, (c, id)| async move {
            let p = service.promise(&ctx.tenant, c, id).await?;
            Ok(pb::GetPromiseResponse {
                promise: Some(promise_to_pb(&p)),
            })
        },
    )
    .await
}

/// ListPromises.
pub async fn list<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    tokens: &PageTokens,
    request: Request<pb::ListPromisesRequest>,
) -> Result<Response<pb::ListPromisesResponse>, Status> {
    call::list(
        tokens,
        request,
        |req, ctx| query(req, &ctx.principal),
        |ctx, query, after, limit| async move {
            let (page, next) = service.promises(&ctx.tenant, &query, after, limit).await?;
            Ok((page.iter().map(promise_to_pb).collect(), next))
        },
        |promises, next_page_token| pb::ListPromisesResponse {
            promises,
            next_page_token,
        },
    )
    .await
}

/// ListPromises → the query and what its page tokens are bound to.
fn query(
    req: &pb::ListPromisesRequest,
    principal: &str,
) -> Result<(PromiseQuery, String), Violations> {
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
    v.check()?;
    // The filter is part of the token: a token of another query is refused.
    let scope = format!(
        "promises;{};{};{:?};{:?};{:?};{:?};{}",
        req.parent, req.owner, req.states, due_from, due_before, principal, req.due_today
    );
    let query = PromiseQuery {
        conversation,
        owner,
        principal: principal.to_owned(),
        states,
        due_from,
        due_before,
        due_today: req.due_today,
    };
    Ok((query, scope))
}

/// KeepPromise.
pub async fn keep<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    request: Request<pb::KeepPromiseRequest>,
) -> Result<Response<pb::KeepPromiseResponse>, Status> {
    change(
        service,
        request,
        |_, _, _| Some(PromiseChange::Keep),
        |promise| pb::KeepPromiseResponse { promise },
    )
    .await
}

/// CancelPromise.
pub async fn cancel<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    request: Request<pb::CancelPromiseRequest>,
) -> Result<Response<pb::CancelPromiseResponse>, Status> {
    change(
        service,
        request,
        |_, _, _| Some(PromiseChange::Cancel),
        |promise| pb::CancelPromiseResponse { promise },
    )
    .await
}

/// RenegotiatePromise.
pub async fn renegotiate<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    request: Request<pb::RenegotiatePromiseRequest>,
) -> Result<Response<pb::RenegotiatePromiseResponse>, Status> {
    change(
        service,
        request,
        |req, ctx, v| renegotiation(req, &ctx.principal, v),
        |promise| pb::RenegotiatePromiseResponse { promise },
    )
    .await
}

/// Keep, Cancel and Renegotiate: the promise the request names, guarded by
/// its etag, changed as `action` reads from the request (its bad fields
/// reported together with the name's).
async fn change<M, Out, R, P, C>(
    service: &Conversations<R, P, C>,
    request: Request<M>,
    action: impl FnOnce(&M, &RequestContext, &mut Violations) -> Option<PromiseChange>,
    out: impl FnOnce(Option<pb::Promise>) -> Out,
) -> Result<Response<Out>, Status>
where
    M: Idempotent + Targeted,
    R: Repository,
    P: Customers,
    C: Clock,
{
    call::mutate(
        request,
        |r, ctx| {
            let (name, etag) = r.target();
            let mut v = Violations::default();
            let target = promise_id(name, "name").map_err(|e| v.0.extend(e.0)).ok();
            let action = action(r, ctx, &mut v);
            v.check()?;
            let (c, id) = target.expect("checked");
            Ok((c, id, action.expect("checked"), etag_of(etag)))
        },
        |ctx, (c, id, action, etag), key| async move {
            let p = service
                .change_promise(&ctx.tenant, c, id, action, etag, key)
                .await?;
            Ok(out(Some(promise_to_pb(&p))))
        },
    )
    .await
}

/// RenegotiatePromise → the renegotiation, its bad fields added to `v`.
fn renegotiation(
    req: &pb::RenegotiatePromiseRequest,
    principal: &str,
    v: &mut Violations,
) -> Option<PromiseChange> {
    let due_time = match &req.due_time {
        None => {
            v.add("due_time", "is required");
            None
        }
        Some(t) => v.take("due_time", time(t)),
    };
    let target = promise_id(&req.name, "name").ok();
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
    Some(PromiseChange::Renegotiate(Renegotiation {
        due_time: due_time?,
        message,
        message_text: req.message_text.clone(),
        principal: principal.to_owned(),
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
