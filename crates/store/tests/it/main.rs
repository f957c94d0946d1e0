//! rapport-store's integration tests, one binary (every test binary links
//! sea-orm and sqlx; one per crate keeps CI's disk and link time down). Add a
//! module here instead of a new file under `tests/`.
mod failures;
mod group_commit;
mod idempotency;
mod pool_options;
