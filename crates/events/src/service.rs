//! What every service's composition does around its own wiring, written
//! once: [`open`] (check the secrets, trust the assertion keys, open and
//! migrate the database, bind the listener with its readiness and its
//! metrics — the pool and the outbox lag) and [`serve_with_outbox`] (serve
//! with the outbox relay and the idempotency purger, then drain, publish
//! the last events and close the database). Here because it joins the
//! transport (`rapport-kit`), the database (`rapport-store`) and the outbox
//! relay.
use std::{future::Future, time::Duration};

use anyhow::Context as _;
use rapport_kit::{
    AssertionVerifier, GrpcServer, PageTokens, Secret, ServerConfig, TenantGuard, server::App,
};
use rapport_store::{DatabaseConfig, Db};
use sea_orm_migration::MigratorTrait;

use crate::{
    Bus, EventsConfig,
    relay::{Relay, Wake},
};

/// The configuration every service has, as [`open`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct Basics<'a> {
    /// The service's name on the bus and in metrics (`profiles`).
    pub name: &'static str,
    /// Its `ErrorInfo` domain (page token errors).
    pub error_domain: &'static str,
    /// Listener and limits.
    pub server: &'a ServerConfig,
    /// Database.
    pub database: &'a DatabaseConfig,
    /// Signs page tokens; at least 32 characters.
    pub page_token_secret: &'a Secret,
    /// Public keys whose assertions it trusts (the gateway's, and those of
    /// services that call it directly).
    pub assertion_public_keys: &'a str,
}

/// A service's database, bound listener, tenant guard and page tokens.
#[derive(Debug)]
pub struct Foundation {
    /// Bound, with readiness and metrics.
    pub server: GrpcServer,
    /// Opened and migrated (when configured).
    pub db: Db,
    /// Verifies assertions for the method called.
    pub guard: TenantGuard,
    /// Signs page tokens.
    pub tokens: PageTokens,
    /// Wakes the outbox relay after a commit with events.
    pub wake: Wake,
}

/// Opens what every service stands on (see the module).
pub async fn open<M: MigratorTrait>(b: Basics<'_>) -> anyhow::Result<Foundation> {
    if b.page_token_secret.len() < 32 {
        anyhow::bail!("page_token_secret must be at least 32 characters");
    }
    let keys = AssertionVerifier::from_base64_list(b.assertion_public_keys).context(
        "assertion_public_keys must list the gateway's Ed25519 public keys (base64url, comma-separated)",
    )?;
    let db = rapport_store::open::<M>(b.database).await?;
    let mut server = GrpcServer::bind(b.server.clone())
        .await
        .with_context(|| format!("binding {}", b.server.listen))?
        .with_readiness(rapport_store::readiness(&db));
    rapport_store::metrics::register(server.metrics().registry(), &db);
    crate::relay::register_lag(server.metrics(), db.clone(), b.name);
    Ok(Foundation {
        server,
        db,
        guard: TenantGuard::new(keys),
        tokens: PageTokens::new(b.page_token_secret.expose().as_bytes(), b.error_domain),
        wake: Wake::default(),
    })
}

/// How long published outbox rows are kept.
pub fn outbox_retention(events: &EventsConfig) -> Duration {
    Duration::from_secs(events.outbox_retention_hours.saturating_mul(3600))
}

/// Serves `app` until `shutdown` resolves, with the outbox relay of `name`,
/// the idempotency purger and the service's own `workers` (its consumers,
/// its timers); then drains, stops the workers, publishes the last calls'
/// events and closes the database.
pub async fn serve_with_outbox(
    foundation: (GrpcServer, Db, Wake),
    app: App,
    bus: Bus,
    name: &'static str,
    retention: Duration,
    workers: Vec<tokio::task::JoinHandle<()>>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (server, db, wake) = foundation;
    let purge = rapport_store::idempotency::spawn_purger(db.clone());
    let relay = Relay::spawn(db.clone(), bus, name, wake, retention);
    let result = server.serve(app, shutdown).await;
    purge.abort();
    // A consumer or timer stopped mid-transaction rolls back; its event or
    // timer comes again at the next start.
    for worker in workers {
        worker.abort();
    }
    // After the drain: the last calls' events go out now.
    relay.stop().await;
    db.close().await;
    result.with_context(|| format!("serving {name}"))
}
