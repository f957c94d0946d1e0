//! Idempotency keys (`request_id`): validation and request fingerprints.
//!
//! A service stores `(tenant, method, request_id) → (fingerprint, result)` in
//! the same transaction as the change (see `rapport-store`). A retry with the
//! same key and fingerprint gets the stored result; the same key with another
//! fingerprint is `REQUEST_ID_REUSED`.
use prost::Message;
use rapport_usecase::Idempotency;
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use crate::{FieldViolations, error::ErrorBuilder};

/// Longest accepted `request_id`.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Validates a `request_id`: empty means "not idempotent"; otherwise 1 to 128
/// printable ASCII characters (a UUID fits).
pub fn request_id(raw: &str, domain: &'static str) -> Result<Option<String>, Status> {
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > MAX_REQUEST_ID_LEN || !raw.chars().all(|c| c.is_ascii_graphic()) {
        return Err(crate::error::invalid_argument(
            domain,
            FieldViolations::single(
                "request_id",
                "must be 1 to 128 printable ASCII characters without spaces",
            ),
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// SHA-256 of the request's protobuf encoding. Call it on the request with its
/// `request_id` cleared. Maps must be generated as BTreeMap so that the
/// encoding, and therefore the fingerprint, is deterministic.
pub fn fingerprint<M: Message>(request: &M) -> String {
    let digest = Sha256::digest(request.encode_to_vec());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The idempotency key of a request: its validated `request_id` under the
/// RPC's full method name, and the fingerprint of the request without it
/// (`clear` empties the request id of a copy). `None` without a request id.
pub fn key<M: Message + Clone>(
    method: &'static str,
    request: &M,
    request_id: &str,
    clear: impl FnOnce(&mut M),
    domain: &'static str,
) -> Result<Option<Idempotency>, Status> {
    let Some(request_id) = self::request_id(request_id, domain)? else {
        return Ok(None);
    };
    let mut canonical = request.clone();
    clear(&mut canonical);
    Ok(Some(Idempotency {
        method,
        request_id,
        fingerprint: fingerprint(&canonical),
    }))
}

/// [`key`] under the RPC that takes `request` — its method path read from
/// the contract (request messages are unique per RPC), so that a service
/// names no method by hand and cannot name the wrong one. A request type no
/// RPC of the contracts takes is a wiring bug: INTERNAL.
pub fn key_of<M: Message + prost::Name + Clone>(
    request: &M,
    request_id: &str,
    clear: impl FnOnce(&mut M),
    domain: &'static str,
) -> Result<Option<Idempotency>, Status> {
    let name = M::full_name();
    let Some(method) = rapport_proto::methods::by_request(&name) else {
        tracing::error!(request = %name, "no RPC of the contracts takes this request");
        return Err(ErrorBuilder::new(Code::Internal, domain, "INTERNAL")
            .message("internal error")
            .build());
    };
    key(method.path, request, request_id, clear, domain)
}

/// The error for a `request_id` reused with a different request.
pub fn reused(domain: &'static str) -> Status {
    ErrorBuilder::new(Code::InvalidArgument, domain, "REQUEST_ID_REUSED")
        .message("this request_id was already used for a different request")
        .violations(FieldViolations::single(
            "request_id",
            "already used for a different request; use a new request_id",
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_validated() {
        assert_eq!(request_id("", "d").unwrap(), None);
        assert_eq!(request_id("a-1", "d").unwrap().as_deref(), Some("a-1"));
        assert!(request_id("has space", "d").is_err());
        assert!(request_id(&"x".repeat(129), "d").is_err());
    }

    #[test]
    fn fingerprint_depends_on_content() {
        let a = prost_types::Duration {
            seconds: 1,
            nanos: 0,
        };
        let b = prost_types::Duration {
            seconds: 2,
            nanos: 0,
        };
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
