//! Bulk loading of synthetic customers for benchmarks (`rapport seed`,
//! `rapport bench --seeded`): the public face of the storage layer's loader.
//!
//! Customer `i` (for `i` in `0..N`) gets the email [`seed_email`], the phone
//! [`seed_phone`] and the display name [`seed_display_name`]; its rows are
//! those `CreateCustomer` writes (no outbox event, no idempotency key), so
//! the API cannot tell it from one a client made. [`seed`] resumes after the
//! highest seeded index present ([`seeded_count`]).
//!
//! It bypasses the domain service on purpose and must not be used to write
//! anything a client sent.
pub use crate::storage::bulk::{
    DEFAULT_BATCH, DEFAULT_TENANT, SeedPlan, SeedProgress, SeedReport, seed, seed_display_name,
    seed_email, seed_phone, seed_profile, seeded_count,
};
