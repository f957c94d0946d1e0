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

pub use crate::services::RapportConfig;

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

/// Loads the layered configuration.
pub fn load(file: Option<&Path>) -> anyhow::Result<RapportConfig> {
    let defaults = Figment::from(Serialized::defaults(RapportConfig::default()));
    let mut figment = defaults.clone();
    if let Some(path) = file {
        if !path.exists() {
            bail!("configuration file {} does not exist", path.display());
        }
        let toml = Toml::file(path);
        // Secrets serialize as `<redacted>` when set: a set one here came
        // from the file, which may be committed or world-readable.
        let from_file: RapportConfig = defaults
            .clone()
            .merge(Toml::file(path))
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        if let Some(key) = secret_keys(&serde_json::to_value(&from_file)?).first() {
            bail!(
                "{key} is a secret: set it with the environment variable RAPPORT_{}, not in {}",
                key.replace('.', "__").to_uppercase(),
                path.display()
            );
        }
        figment = figment.merge(toml);
    }
    // Only the configuration's own sections: other `RAPPORT_` variables
    // (`RAPPORT_CONFIG`, `RAPPORT_DATA_DIR`, test settings) are not keys.
    let sections: Vec<String> = match serde_json::to_value(RapportConfig::default())? {
        serde_json::Value::Object(map) => map.keys().map(|k| format!("{k}__")).collect(),
        _ => Vec::new(),
    };
    figment = figment.merge(
        Env::prefixed("RAPPORT_")
            .filter(move |k| {
                let k = k.as_str().to_lowercase();
                sections.iter().any(|s| k.starts_with(s.as_str()))
            })
            .split("__"),
    );
    let mut config: RapportConfig = figment
        .extract()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    crate::services::complete(&mut config);
    config.log.format()?;
    Ok(config)
}

/// The dotted keys of every secret that is set in a serialized configuration.
fn secret_keys(value: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, &key, out);
                }
            }
            serde_json::Value::String(s) if s == rapport_kit::secret::REDACTED => {
                out.push(path.to_owned());
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

/// The configuration as JSON with secrets and database passwords redacted
/// (secrets redact themselves; database and SMTP URLs of every section
/// here).
pub fn dump(config: &RapportConfig) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(config).context("serializing configuration")?;
    if let serde_json::Value::Object(sections) = &mut value {
        for section in sections.values_mut() {
            let url = &mut section["database"]["url"];
            if let Some(s) = url.as_str() {
                *url = serde_json::Value::String(rapport_store::db::redact_url(s));
            }
            // An SMTP relay's URL may carry its password too.
            if let Some(email) = section.get_mut("email") {
                let url = &mut email["smtp_url"];
                if let Some(s) = url.as_str() {
                    *url = serde_json::Value::String(rapport_store::db::redact_url(s));
                }
            }
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

    #[test]
    fn every_secret_of_every_section_is_known_without_a_list() {
        figment::Jail::expect_with(|jail| {
            for (section, key) in [
                ("gateway", "assertion_key"),
                ("profiles", "page_token_secret"),
            ] {
                let file = format!("{section}-{key}.toml");
                jail.create_file(&file, &format!("[{section}]\n{key} = \"x\"\n"))?;
                let err = load(Some(Path::new(&file))).unwrap_err().to_string();
                let var = format!("RAPPORT_{}__{}", section, key).to_uppercase();
                assert!(err.contains(&var), "{err}");
            }
            jail.set_env(
                "RAPPORT_GATEWAY__PAGE_TOKEN_SECRET",
                "gw-s3cret-gw-s3cret-gw-s3cret-gw",
            );
            jail.set_env("RAPPORT_GATEWAY__DATABASE__URL", "postgres://u:gwpw@db/g");
            let dumped =
                dump(&load(None).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            assert!(!dumped.contains("gw-s3cret"), "{dumped}");
            assert!(!dumped.contains(":gwpw@"), "{dumped}");
            Ok(())
        });
    }
}
