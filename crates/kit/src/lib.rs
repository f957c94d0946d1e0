//! rapport-kit: what every Rapport gRPC service shares at its edge — server
//! bootstrap and drain, AIP-193 errors, tenant context, page tokens and
//! idempotency keys. It holds no domain logic and touches no database.
#![forbid(unsafe_code)]

pub mod assertion;
pub mod context;
pub mod deadline;
pub mod error;
pub mod idempotency;
pub mod page;
pub mod server;

pub use assertion::AssertionKey;
pub use context::{RequestContext, TenantGuard, TenantId};
pub use error::{ErrorBuilder, FieldViolations};
pub use page::PageTokens;
pub use server::{GrpcServer, ServerConfig};
