//! The webhooks service's integration tests, one binary (every test binary
//! links sea-orm and sqlx). `harness` starts the real service (its `Config`
//! is built in `harness::webhooks_config` only) and real HTTP receivers;
//! the modules below use it. Every test runs on SQLite, and on PostgreSQL
//! when `RAPPORT_TEST_POSTGRES_URL` is set.
mod harness;

mod dead_letters;
mod delivery;
mod retries;
mod subscriptions;
mod validation;
