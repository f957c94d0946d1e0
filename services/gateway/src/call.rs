//! The seam between the front doors (gRPC, gRPC-web, REST) and the pipeline
//! that authenticates, authorizes, limits, audits and routes a call.
use std::{future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{auth::Principal, catalog::MethodInfo};

/// A boxed gateway response future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = http::Response<tonic::body::Body>> + Send>>;

/// Something that answers a gRPC request (HTTP/2 framing, `application/grpc`)
/// the way the gateway does. Implemented by the pipeline; the REST
/// transcoder calls it with requests it builds from JSON.
pub trait GrpcCall: Send + Sync + 'static {
    /// Answers one gRPC request. Errors are gRPC statuses in the response,
    /// never a transport error.
    fn call(&self, request: http::Request<tonic::body::Body>) -> ResponseFuture;

    /// Authenticates and authorizes a call of `method` from its head
    /// (headers, and the connection's address) alone, before its body is read: an unauthenticated caller must not
    /// make the gateway read, buffer or parse anything. `Some` goes into the
    /// request's extensions, so [`GrpcCall::call`] does not check again.
    fn authorize<'a>(
        &'a self,
        _method: &'a MethodInfo,
        _request: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Option<Authorized>, tonic::Status>> {
        Box::pin(async { Ok(None) })
    }

    /// Counts a REST request that matched no route: answered 404
    /// (`NOT_FOUND`), or 405 (`UNIMPLEMENTED`) for a path served with
    /// other HTTP methods.
    fn unmatched(&self, code: &'static str, elapsed: std::time::Duration) {
        let _ = (code, elapsed);
    }

    /// Reads a request body whole, within `limit` bytes and the gateway's
    /// budget for buffered bodies (`charge` budget bytes per body byte);
    /// the permit holds the budget until dropped.
    fn read_body(
        &self,
        body: axum::body::Body,
        limit: usize,
        charge: u32,
    ) -> BoxFuture<'_, Result<(Bytes, OwnedSemaphorePermit), BodyError>> {
        let _ = charge;
        Box::pin(async move {
            let unbounded = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
            let far = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
            read_body(body, limit, far, &unbounded, 1).await
        })
    }
}

/// How a call entered the gateway; recorded in the audit log. Front doors put
/// it into the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Native gRPC over HTTP/2.
    Grpc,
    /// gRPC-web (browsers), translated to gRPC on the way in.
    GrpcWeb,
    /// REST/JSON, transcoded to gRPC.
    Rest,
    /// Connect unary calls, translated to gRPC.
    Connect,
}

impl Protocol {
    /// Name in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
            Protocol::Rest => "rest",
            Protocol::Connect => "connect",
        }
    }
}

/// What the REST transcoder knows about the call it made, for the audit log
/// (the gRPC path cannot see inside message bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// Resource name from the request (`name`, `parent`, `customer.name`).
    pub resource: String,
    /// The request's `request_id`.
    pub request_id: String,
}

/// A principal the REST door authorized (and rate-limited) before reading
/// the body; the pipeline takes it instead of checking again. Only code in this
/// process can put it in a request's extensions.
#[derive(Debug, Clone)]
pub struct Authorized(pub(crate) Principal);

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the size limit.
    TooLarge,
    /// Not there before the body-read timeout or the deadline.
    TooSlow,
    /// The gateway-wide budget for buffered bodies is in use.
    OverBudget,
    /// The body ended abnormally.
    Aborted,
}

/// Reads `body` whole, reserving `charge` budget bytes per body byte before
/// keeping each chunk.
pub(crate) async fn read_body<B>(
    mut body: B,
    limit: usize,
    deadline: tokio::time::Instant,
    budget: &Arc<Semaphore>,
    charge: u32,
) -> Result<(Bytes, OwnedSemaphorePermit), BodyError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    use bytes::BufMut as _;
    let mut reserved = budget
        .clone()
        .try_acquire_many_owned(0)
        .map_err(|_| BodyError::OverBudget)?;
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    let mut len = 0usize;
    let read = async {
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            let Ok(frame) = frame else {
                return Err(BodyError::Aborted);
            };
            // Trailers of a unary request carry nothing the call needs.
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            len += chunk.len();
            if len > limit {
                return Err(BodyError::TooLarge);
            }
            let cost = u32::try_from(chunk.len())
                .ok()
                .and_then(|n| n.checked_mul(charge))
                .ok_or(BodyError::TooLarge)?;
            let more = budget
                .clone()
                .try_acquire_many_owned(cost)
                .map_err(|_| BodyError::OverBudget)?;
            reserved.merge(more);
            // One chunk (the usual case) is kept as it came, not copied.
            match (&mut first, &mut joined) {
                (None, None) => first = Some(chunk),
                (Some(_), None) => {
                    let head = first.take().expect("matched Some");
                    let mut buf = bytes::BytesMut::with_capacity(head.len() + chunk.len());
                    buf.put_slice(&head);
                    buf.put_slice(&chunk);
                    joined = Some(buf);
                }
                (_, Some(buf)) => buf.put_slice(&chunk),
            }
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline, read).await {
        Err(_) => Err(BodyError::TooSlow),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => {
            let bytes = match (first, joined) {
                (_, Some(buf)) => buf.freeze(),
                (Some(one), None) => one,
                (None, None) => Bytes::new(),
            };
            Ok((bytes, reserved))
        }
    }
}
