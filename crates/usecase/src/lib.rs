//! rapport-usecase: what every Rapport use-case is built of — the tenant,
//! field violations, id newtypes, the clock, keyset page cutting, and the
//! idempotent write protocol (`request_id` → claim, replay, retry, settle).
//!
//! Domain-side only: it must never import tonic, prost or sea_orm, so that
//! each service's `domain/` can depend on it and stay pure. The database side
//! of the same protocol is in `rapport-store`, the transport side in
//! `rapport-kit`.
#![forbid(unsafe_code)]

pub mod clock;
pub mod ids;
pub mod page;
pub mod tenant;
pub mod violations;
pub mod webhook;
pub mod write;

pub use clock::{Clock, ManualClock, SystemClock};
pub use page::page_of;
pub use tenant::Tenant;
pub use violations::Violations;
pub use write::{
    Claim, CommitError, Idempotency, Outcome, Prior, Priors, ProtocolError, ServiceError, Write,
};

/// Re-exports the macros' expansions need, so a service using them does not
/// have to depend on serde or uuid under these exact names.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use uuid::Uuid;
}
