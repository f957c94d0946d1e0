//! `rapport keys`: API key administration straight against the gateway's
//! database, for operators (and for bootstrapping before any admin key
//! exists). The admin API does the same over the network.
use chrono::Utc;
use clap::Subcommand;
use rapport_gateway::auth::api_keys::{ApiKeys, NewKey, valid_scope};

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown once).
    Create {
        /// Tenant the key acts for.
        #[arg(long)]
        tenant: String,
        /// Comma-separated scopes, e.g. `profiles.read,profiles.write`.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Human-readable name.
        #[arg(long)]
        name: String,
        /// Lifetime in days; unset means no expiry.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Requests per second; 0 for the gateway default.
        #[arg(long, default_value_t = 0)]
        rate_limit: u32,
    },
    /// List keys (never their secrets).
    List {
        /// Only keys of this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key id (the part after `rk_`, before the second `_`).
        key_id: String,
    },
}

/// Runs a key command.
pub async fn run(config: &rapport_gateway::Config, command: KeysCommand) -> anyhow::Result<()> {
    let store = rapport_gateway::open_store(config).await?;
    match command {
        KeysCommand::Create {
            tenant,
            scopes,
            name,
            expires_in_days,
            rate_limit,
        } => {
            rapport_kit::Tenant::parse(&tenant).map_err(|why| anyhow::anyhow!("--tenant {why}"))?;
            if scopes.is_empty() || !scopes.iter().all(|s| valid_scope(s)) {
                anyhow::bail!("--scopes: give one or more lower-case scopes such as profiles.read");
            }
            let now = Utc::now();
            let keys = ApiKeys::new(store);
            let issued = keys
                .issue(
                    NewKey {
                        display_name: name,
                        tenant,
                        scopes,
                        expire_time: expires_in_days
                            .map(|d| now + chrono::Duration::days(i64::from(d))),
                        rate_limit,
                    },
                    now,
                    None,
                )
                .await?;
            println!("key id:  {}", issued.record.key_id);
            println!("secret:  {}", issued.secret);
            println!("(the secret is shown only now; store it in a secret manager)");
        }
        KeysCommand::List { tenant } => {
            let rows = store.keys(tenant.as_deref(), None, 1000).await?;
            println!(
                "{:<18} {:<20} {:<12} {:<8} scopes",
                "key id", "name", "tenant", "revoked"
            );
            for k in rows {
                println!(
                    "{:<18} {:<20} {:<12} {:<8} {}",
                    k.key_id,
                    k.display_name,
                    k.tenant,
                    k.revoked,
                    k.scopes.join(",")
                );
            }
        }
        KeysCommand::Revoke { key_id } => {
            if !store.revoke(&key_id).await? {
                anyhow::bail!("no key {key_id}");
            }
            println!("revoked {key_id}");
        }
    }
    Ok(())
}
