//! Calls from one Rapport service to another (conversations resolving a
//! sender with profiles), with no gateway in between.
//!
//! The callee trusts tenant context only from an Ed25519 assertion made for
//! it and the method called ([`crate::assertion`]). A calling service signs
//! that assertion itself, per call, with its **own** key: the callee lists
//! the caller's public key beside the gateway's in its
//! `assertion_public_keys`, so trust is granted per calling service and
//! withdrawn by removing one key. The assertion is bound to the callee
//! service and method like the gateway's, lives [`ASSERTION_TTL_SECS`],
//! carries the tenant of the call being served, the principal
//! `service:<caller>` and, as its only scope, the scope the callee's
//! contract declares for the method (a service asks for nothing more than
//! the one call it makes). The current trace travels along (W3C
//! `traceparent`), so the callee's span is a child of the caller's.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::{Request, transport::Channel};

use crate::{
    Secret, Tenant,
    assertion::{ASSERTION_HEADER, AssertionSigner, Claims},
};

/// How long a service's assertion is valid: one call, with clock skew.
pub const ASSERTION_TTL_SECS: i64 = 30;

/// The principal prefix of a service calling another.
pub const SERVICE_PRINCIPAL_PREFIX: &str = "service:";

/// Where another service listens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeerConfig {
    /// Its gRPC endpoint, `http://host:port` (the service's own port, not
    /// the gateway's).
    pub endpoint: String,
    /// Deadline of each call, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            timeout_ms: 5_000,
        }
    }
}

/// A connection to another service, and the calling service's key.
#[derive(Clone)]
pub struct Peer {
    channel: Channel,
    signer: AssertionSigner,
    principal: String,
    timeout: Duration,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// A lazily connected peer: `caller` is the calling service's name
    /// (`conversations`), `key` its Ed25519 seed (base64url).
    pub fn new(config: &PeerConfig, key: &Secret, caller: &str) -> Result<Self, String> {
        let signer = AssertionSigner::from_base64(key.expose())
            .ok_or("the service key must be the base64url seed of an Ed25519 key")?;
        let endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| format!("endpoint {:?}: {e}", config.endpoint))?
            .connect_timeout(Duration::from_millis(config.timeout_ms.max(1)));
        Ok(Self {
            channel: endpoint.connect_lazy(),
            signer,
            principal: format!("{SERVICE_PRINCIPAL_PREFIX}{caller}"),
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
        })
    }

    /// The channel, for the callee's generated client.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The public key the callee must trust (base64url).
    pub fn public_key(&self) -> String {
        self.signer.public_key()
    }

    /// `message` as a call of `path` (`/rapport.profiles.v1.ProfilesService/
    /// ResolveCustomer`) on behalf of `tenant`: asserted for that method,
    /// with the current trace and the call's deadline.
    pub fn request<T>(&self, tenant: &Tenant, path: &'static str, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let claims = self.claims(tenant, path, chrono::Utc::now().timestamp());
        if let Ok(value) = self.signer.sign(&claims).parse() {
            request.metadata_mut().insert(ASSERTION_HEADER, value);
        }
        let mut headers = http::HeaderMap::new();
        rapport_telemetry::propagation::inject_current(&mut headers);
        for (name, value) in &headers {
            if let (Ok(key), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes()),
                tonic::metadata::MetadataValue::try_from(value.as_bytes()),
            ) {
                request.metadata_mut().insert(key, value);
            }
        }
        request.set_timeout(self.timeout);
        request
    }

    fn claims(&self, tenant: &Tenant, path: &'static str, now: i64) -> Claims {
        let scope = rapport_proto::methods::by_path(path)
            .map(|m| m.scope)
            .unwrap_or_default();
        Claims {
            tenant: tenant.as_str().to_owned(),
            principal: self.principal.clone(),
            scopes: vec![scope.to_owned()],
            expires: now + ASSERTION_TTL_SECS,
            audience: Claims::audience_of(path).unwrap_or_default().to_owned(),
            method: path.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AssertionVerifier, TenantGuard};

    const RESOLVE: &str = "/rapport.profiles.v1.ProfilesService/ResolveCustomer";

    #[tokio::test]
    async fn a_peer_call_passes_the_callees_guard_for_that_method_only() {
        let key = Secret::new(AssertionSigner::generate_seed());
        let peer = Peer::new(
            &PeerConfig {
                endpoint: "http://127.0.0.1:9".into(),
                ..PeerConfig::default()
            },
            &key,
            "conversations",
        )
        .unwrap();
        let guard =
            TenantGuard::new(AssertionVerifier::from_base64_list(&peer.public_key()).unwrap());
        let tenant = Tenant::parse("acme").unwrap();
        let request = peer.request(&tenant, RESOLVE, ());
        let ctx = guard.verify(request.metadata(), RESOLVE).unwrap();
        assert_eq!(ctx.tenant, tenant);
        assert_eq!(ctx.principal, "service:conversations");
        assert_eq!(ctx.scopes, vec!["profiles.write".to_owned()]);
        // Bound to the method: not usable for another one.
        let erase = "/rapport.profiles.v1.ProfilesService/EraseCustomer";
        assert!(guard.verify(request.metadata(), erase).is_err());
        // A callee that does not list the caller's key refuses it.
        let other = AssertionSigner::from_base64(&AssertionSigner::generate_seed()).unwrap();
        let stranger =
            TenantGuard::new(AssertionVerifier::from_base64_list(&other.public_key()).unwrap());
        assert!(stranger.verify(request.metadata(), RESOLVE).is_err());
    }
}
