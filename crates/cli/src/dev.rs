//! `rapport dev`: every service in one process, on SQLite files under a data
//! directory, migrating automatically. Nothing external is needed.
use std::{io::Write as _, path::Path};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};

use crate::config::RapportConfig;

/// Points the configuration at the data directory and fills in dev secrets,
/// unless the environment or a file already set them.
pub fn prepare(config: &mut RapportConfig, data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let defaults = rapport_profiles::Config::default();
    if config.profiles.database.url == defaults.database.url {
        config.profiles.database.url =
            format!("sqlite://{}", data_dir.join("profiles.db").display());
    }
    config.profiles.database.migrate = true;
    if config.profiles.page_token_secret.is_empty() {
        config.profiles.page_token_secret = dev_secret(data_dir, "page_token_secret")?;
    }
    if config.profiles.assertion_key.is_empty() {
        config.profiles.assertion_key = dev_secret(data_dir, "assertion_key")?;
    }
    // The gateway signs what the services verify: one shared key.
    if config.gateway.assertion_key.is_empty() {
        config.gateway.assertion_key = config.profiles.assertion_key.clone();
    }
    if config.gateway.page_token_secret.is_empty() {
        config.gateway.page_token_secret = dev_secret(data_dir, "gateway_page_token_secret")?;
    }
    let gateway_defaults = rapport_gateway::Config::default();
    if config.gateway.database.url == gateway_defaults.database.url {
        config.gateway.database.url = format!("sqlite://{}", data_dir.join("gateway.db").display());
    }
    config.gateway.database.migrate = true;
    Ok(())
}

/// The dev admin key: created on first start, kept in the data directory so
/// every later start can print it again.
async fn bootstrap_key(gateway: &rapport_gateway::Gateway, data_dir: &Path) -> anyhow::Result<String> {
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
        .await?
        .context("a key without request id is always created")?;
    std::fs::create_dir_all(path.parent().expect("joined path has a parent"))?;
    open_private(&path)?.write_all(issued.secret.as_bytes())?;
    Ok(issued.secret)
}

/// A random secret kept in the data directory, so that page tokens stay
/// valid across restarts of `rapport dev`.
fn dev_secret(data_dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = data_dir.join("secrets").join(name);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= 32 {
            return Ok(existing);
        }
    }
    std::fs::create_dir_all(path.parent().expect("joined path has a parent"))?;
    let secret = B64.encode(rand::random::<[u8; 32]>());
    let mut file = open_private(&path)?;
    file.write_all(secret.as_bytes())?;
    Ok(secret)
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

/// Runs every service until SIGINT/SIGTERM.
pub async fn run(config: RapportConfig, data_dir: &Path) -> anyhow::Result<()> {
    let profiles = rapport_profiles::build(&config.profiles).await?;
    let addr = profiles.local_addr();
    tracing::info!(%addr, service = rapport_profiles::SERVICE_NAME, "serving");

    println!();
    println!(
        "Rapport dev is running (data in {}). Ctrl-C stops it.",
        data_dir.display()
    );
    println!("  profiles  {addr}  {}", rapport_profiles::SERVICE_NAME);
    println!();
    println!("Every call needs the metadata `x-rapport-tenant: <tenant>`. Try:");
    println!(
        "  grpcurl -plaintext -H 'x-rapport-tenant: demo' -d '{{\"customer\":{{\"display_name\":\"Ada Lovelace\",\"emails\":[{{\"address\":\"ada@example.com\"}}]}},\"request_id\":\"first-try\"}}' {addr} rapport.profiles.v1.ProfilesService/CreateCustomer"
    );
    println!(
        "  grpcurl -plaintext -H 'x-rapport-tenant: demo' -d '{{\"email\":\"ada@example.com\"}}' {addr} rapport.profiles.v1.ProfilesService/LookupCustomer"
    );
    println!("  python3 docs/examples/reflection_client.py {addr} demo");
    println!();

    profiles.serve(rapport_kit::server::shutdown_signal()).await
}
