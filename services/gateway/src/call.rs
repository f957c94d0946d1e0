//! The seam between the front doors (gRPC, gRPC-web, REST) and the pipeline
//! that authenticates, authorizes, limits, audits and routes a call.
use std::{future::Future, pin::Pin};

/// A boxed gateway response future.
pub type ResponseFuture = Pin<Box<dyn Future<Output = http::Response<tonic::body::Body>> + Send>>;

/// Something that answers a gRPC request (HTTP/2 framing, `application/grpc`)
/// the way the gateway does. Implemented by the pipeline; the REST
/// transcoder calls it with requests it builds from JSON.
pub trait GrpcCall: Send + Sync + 'static {
    /// Answers one gRPC request. Errors are gRPC statuses in the response,
    /// never a transport error.
    fn call(&self, request: http::Request<tonic::body::Body>) -> ResponseFuture;
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
}

impl Protocol {
    /// Name in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
            Protocol::Rest => "rest",
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
