//! rapport-kit: what every Rapport gRPC service shares at its edge — server
//! bootstrap and drain, AIP-193 errors, tenant context, page tokens,
//! idempotency keys from requests, protobuf time conversions and the
//! redacting `Secret` of configurations. The transport side of each service;
//! it holds no domain logic and touches no database.
#![forbid(unsafe_code)]

pub mod assertion;
pub mod context;
pub mod convert;
pub mod deadline;
pub mod error;
pub mod idempotency;
pub mod metrics;
pub mod page;
pub mod peer;
pub mod secret;
pub mod server;
pub mod webhook;

pub use assertion::{AssertionSigner, AssertionVerifier};
pub use context::{RequestContext, Tenant, TenantGuard};
pub use error::{ErrorBuilder, FieldViolations};
pub use page::PageTokens;
pub use peer::{Peer, PeerConfig};
pub use secret::Secret;
pub use server::{GrpcServer, Readiness, ServerConfig};
