//! The profiles service's integration tests, one binary: every test binary
//! links sea-orm and sqlx, so one per crate keeps CI's disk and link time
//! down. A new area of tests is a new module here, not a new file under
//! `tests/`. `harness` starts the real service (its `Config` is built in
//! `harness::profiles_config` only); the modules below use it.
mod harness;

mod birthdays;
mod contact_policy;
mod create_get;
mod db_failures;
mod envelope;
mod erasure_receipts;
mod errors_tenancy;
mod events;
mod export_erase;
mod list_search_lookup;
mod merge_consent_lifecycle;
mod resolve;
mod schema;
mod seed;
mod server_surface;
mod trace;
mod update;
