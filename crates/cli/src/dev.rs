//! `rapport dev`: every service in one process, on SQLite files under a data
//! directory, migrating automatically. Nothing external is needed.
use std::{io::Write as _, path::Path};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};

use rapport_kit::Secret;
use rapport_store::DatabaseConfig;

use crate::config::RapportConfig;

/// Points the configuration at the data directory and fills in dev secrets,
/// unless the environment or a file already set them.
pub fn prepare(config: &mut RapportConfig, data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    // The gateway signs assertions with its private key; the services verify
    // with the public key. Both are kept in the data directory.
    if config.gateway.assertion_key.is_empty() {
        config.gateway.assertion_key = dev_signing_key(data_dir, "assertion_private_key")?;
    }
    let public_key =
        rapport_kit::AssertionSigner::from_base64(config.gateway.assertion_key.expose())
            .context("gateway.assertion_key must be the base64url seed of an Ed25519 key")?
            .public_key();
    write_dev_file(data_dir, "assertion_public_key", &public_key)?;
    embedded(
        "gateway",
        &mut config.gateway.database,
        &mut config.gateway.page_token_secret,
        data_dir,
    )?;
    // No load balancer in front of one process: Ctrl-C drains at once.
    config.gateway.server.shutdown_delay_ms = 0;
    crate::services::prepare_dev(config, data_dir, &public_key)?;
    if config.gateway.metrics_listen.is_none() {
        config.gateway.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    Ok(())
}

/// One service's embedded defaults: its SQLite file `<name>.db` under the
/// data directory (unless a database is configured), migrated at start, and a
/// page-token secret kept in the data directory.
pub fn embedded(
    name: &str,
    database: &mut DatabaseConfig,
    page_token_secret: &mut Secret,
    data_dir: &Path,
) -> anyhow::Result<()> {
    if *database == DatabaseConfig::sqlite_file(name) {
        database.url = format!("sqlite://{}", data_dir.join(format!("{name}.db")).display());
    }
    database.migrate = true;
    if page_token_secret.is_empty() {
        *page_token_secret = dev_secret(data_dir, &format!("{name}_page_token_secret"))?;
    }
    Ok(())
}

/// An assertion signing key (an Ed25519 seed: the gateway's, or a service's
/// own for its calls to other services), created on first start and kept
/// private in the data directory as `secrets/<name>`.
pub fn dev_signing_key(data_dir: &Path, name: &str) -> anyhow::Result<Secret> {
    let path = data_dir.join("secrets").join(name);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && rapport_kit::AssertionSigner::from_base64(existing.trim()).is_some()
    {
        return Ok(Secret::new(existing.trim().to_owned()));
    }
    std::fs::create_dir_all(path.parent().expect("joined path has a parent"))?;
    let seed = rapport_kit::AssertionSigner::generate_seed();
    open_private(&path)?.write_all(seed.as_bytes())?;
    Ok(Secret::new(seed))
}

/// Writes a non-secret value beside the secrets (the assertion public key,
/// for a service started on its own against this dev gateway).
fn write_dev_file(data_dir: &Path, name: &str, value: &str) -> anyhow::Result<()> {
    let path = data_dir.join("secrets").join(name);
    std::fs::create_dir_all(path.parent().expect("joined path has a parent"))?;
    std::fs::write(&path, value).with_context(|| format!("writing {}", path.display()))
}

/// The dev admin key: created on first start, kept in the data directory so
/// every later start can print it again.
async fn bootstrap_key(
    gateway: &rapport_gateway::Gateway,
    data_dir: &Path,
) -> anyhow::Result<String> {
    let path = data_dir.join("secrets").join("bootstrap_api_key");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && rapport_gateway::auth::api_keys::key_id(existing.trim()).is_some()
    {
        return Ok(existing.trim().to_owned());
    }
    let issued = gateway
        .keys()
        .issue(
            rapport_gateway::auth::api_keys::NewKey {
                display_name: "rapport dev bootstrap".to_owned(),
                tenant: "demo".to_owned(),
                scopes: vec!["admin".to_owned(), "platform".to_owned()],
                expire_time: None,
                rate_limit: 0,
            },
            chrono::Utc::now(),
            None,
        )
        .await?;
    std::fs::create_dir_all(path.parent().expect("joined path has a parent"))?;
    open_private(&path)?.write_all(issued.secret.as_bytes())?;
    Ok(issued.secret)
}

/// A random secret kept in the data directory, so that page tokens stay
/// valid across restarts of `rapport dev`.
fn dev_secret(data_dir: &Path, name: &str) -> anyhow::Result<Secret> {
    let path = data_dir.join("secrets").join(name);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= 32 {
            return Ok(Secret::new(existing));
        }
    }
    std::fs::create_dir_all(path.parent().expect("joined path has a parent"))?;
    let secret = B64.encode(rand::random::<[u8; 32]>());
    let mut file = open_private(&path)?;
    file.write_all(secret.as_bytes())?;
    Ok(Secret::new(secret))
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

/// Runs every service and the gateway until SIGINT/SIGTERM.
pub async fn run(mut config: RapportConfig, data_dir: &Path) -> anyhow::Result<()> {
    // One in-process bus for every service of the process: `rapport dev`
    // needs nothing external.
    let bus = rapport_events::Bus::in_process();
    let services = crate::services::start_dev(&mut config, &bus).await?;
    for s in &services {
        tracing::info!(addr = %s.addr, service = s.grpc_name, "serving");
    }
    let gateway = rapport_gateway::build(&config.gateway).await?;
    let addr = gateway.local_addr();
    tracing::info!(%addr, "gateway serving");
    let key = bootstrap_key(&gateway, data_dir).await?;

    println!();
    println!(
        "Rapport dev is running (data in {}). Ctrl-C stops it.",
        data_dir.display()
    );
    println!(
        "  gateway   {addr}  gRPC, gRPC-web and REST/JSON; OpenAPI at http://{addr}/openapi.json"
    );
    for s in &services {
        println!(
            "  {:<9} {}  {} (internal: call it through the gateway)",
            s.name, s.addr, s.grpc_name
        );
    }
    if let Some(metrics) = gateway.metrics_addr() {
        println!("  metrics   http://{metrics}/metrics  (Prometheus, RED per route)");
    }
    println!();
    println!("Bootstrap admin API key (tenant `demo`, scopes admin and platform):");
    println!("  KEY={key}");
    println!();
    println!("Try:");
    println!(
        "  grpcurl -plaintext -H \"authorization: Bearer $KEY\" -d '{{\"customer\":{{\"display_name\":\"Ada Lovelace\",\"emails\":[{{\"address\":\"ada@example.com\"}}]}},\"request_id\":\"first-try\"}}' {addr} rapport.profiles.v1.ProfilesService/CreateCustomer"
    );
    println!(
        "  curl -s -H \"authorization: Bearer $KEY\" 'http://{addr}/v1/customers:lookup?email=ada@example.com'"
    );
    println!("  python3 docs/examples/reflection_client.py {addr} \"$KEY\"");
    println!();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut tasks: Vec<(&str, tokio::task::JoinHandle<anyhow::Result<()>>)> = services
        .into_iter()
        .map(|s| {
            let task = tokio::spawn((s.serve)(Box::pin(wait(stop_rx.clone()))));
            (s.name, task)
        })
        .collect();
    tasks.push(("gateway", tokio::spawn(gateway.serve(wait(stop_rx)))));
    rapport_kit::server::shutdown_signal().await;
    let _ = stop_tx.send(true);
    for (name, task) in tasks {
        task.await.with_context(|| format!("{name} task"))??;
    }
    Ok(())
}
