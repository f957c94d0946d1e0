//! Configuration of the `rapport` binary: defaults → optional TOML file →
//! `RAPPORT_…` environment variables. A bad value stops the process at boot
//! with the key's path in the message.
use std::path::Path;

use anyhow::{Context as _, bail};
use figment::{
    Figment,
    providers::{Env, Format as _, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// Everything the binary can be configured with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RapportConfig {
    /// Logging.
    pub log: LogConfig,
    /// The profiles service.
    pub profiles: rapport_profiles::Config,
    /// The gateway.
    pub gateway: rapport_gateway::Config,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` (development) or `json` (production log collectors).
    pub format: String,
    /// Filter in `RUST_LOG` syntax; `RUST_LOG` itself wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "pretty".to_owned(),
            filter: "info".to_owned(),
        }
    }
}

impl LogConfig {
    /// The parsed format.
    pub fn format(&self) -> anyhow::Result<rapport_telemetry::LogFormat> {
        self.format
            .parse()
            .map_err(|e: String| anyhow::anyhow!("log.format: {e}"))
    }

    /// `RUST_LOG` when set, else the configured filter.
    pub fn effective_filter(&self) -> String {
        std::env::var("RUST_LOG").unwrap_or_else(|_| self.filter.clone())
    }
}

/// Keys that hold secrets: read only from the environment, redacted in dumps.
const SECRET_KEYS: &[&str] = &[
    "profiles.page_token_secret",
    "profiles.assertion_key",
    "gateway.page_token_secret",
    "gateway.assertion_key",
];

/// Top-level sections that `RAPPORT_…` variables may set. Other `RAPPORT_`
/// variables (`RAPPORT_CONFIG`, `RAPPORT_DATA_DIR`, test settings) are not
/// configuration keys.
const SECTIONS: &[&str] = &["log__", "profiles__", "gateway__"];

/// Loads the layered configuration.
pub fn load(file: Option<&Path>) -> anyhow::Result<RapportConfig> {
    let mut figment = Figment::from(Serialized::defaults(RapportConfig::default()));
    if let Some(path) = file {
        if !path.exists() {
            bail!("configuration file {} does not exist", path.display());
        }
        let toml = Figment::from(Toml::file(path));
        for key in SECRET_KEYS {
            if toml.find_value(key).is_ok() {
                bail!(
                    "{key} is a secret: set it with the environment variable RAPPORT_{}, not in {}",
                    key.replace('.', "__").to_uppercase(),
                    path.display()
                );
            }
        }
        figment = figment.merge(toml);
    }
    figment = figment.merge(
        Env::prefixed("RAPPORT_")
            .filter(|k| {
                SECTIONS
                    .iter()
                    .any(|s| k.as_str().to_lowercase().starts_with(s))
            })
            .split("__"),
    );
    let config: RapportConfig = figment
        .extract()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    config.log.format()?;
    Ok(config)
}

/// The configuration as JSON with secrets and database passwords redacted.
pub fn dump(config: &RapportConfig) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(config).context("serializing configuration")?;
    for key in SECRET_KEYS {
        let mut node = &mut value;
        for part in key.split('.') {
            node = &mut node[part];
        }
        if node.as_str().is_some_and(|s| !s.is_empty()) {
            *node = serde_json::Value::String("<redacted>".to_owned());
        }
    }
    for service in ["profiles", "gateway"] {
        let url = &mut value[service]["database"]["url"];
        if let Some(s) = url.as_str() {
            *url = serde_json::Value::String(rapport_store::db::redact_url(s));
        }
    }
    Ok(serde_json::to_string_pretty(&value)?)
}

#[cfg(test)]
// figment::Jail's closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_and_environment_layer_over_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "rapport.toml",
                "[profiles.database]\nurl = \"sqlite://from-file.db\"\n[log]\nformat = \"json\"\n",
            )?;
            jail.set_env("RAPPORT_PROFILES__SERVER__DEFAULT_TIMEOUT_MS", "1234");
            jail.set_env("RAPPORT_TEST_POSTGRES_URL", "postgres://ignored");
            let c = load(Some(Path::new("rapport.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.profiles.database.url, "sqlite://from-file.db");
            assert_eq!(c.profiles.server.default_timeout_ms, 1234);
            assert_eq!(c.log.format, "json");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("RAPPORT_PROFILES__SERVER__DEFAULT_TIMEOUT_MS", "soon");
            let err = load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("default_timeout_ms"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn secrets_come_only_from_the_environment_and_are_redacted() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[profiles]\npage_token_secret = \"x\"\n")?;
            let err = load(Some(Path::new("bad.toml"))).unwrap_err().to_string();
            assert!(err.contains("RAPPORT_PROFILES__PAGE_TOKEN_SECRET"), "{err}");
            jail.set_env(
                "RAPPORT_PROFILES__PAGE_TOKEN_SECRET",
                "s3cret-s3cret-s3cret-s3cret-s3cret",
            );
            jail.set_env(
                "RAPPORT_PROFILES__DATABASE__URL",
                "postgres://u:pw@db/rapport",
            );
            let dumped =
                dump(&load(None).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            assert!(!dumped.contains("s3cret"), "{dumped}");
            assert!(!dumped.contains(":pw@"), "{dumped}");
            Ok(())
        });
    }
}
