//! `rapport seed` (being built).
use clap::Args;

use crate::config::RapportConfig;

/// Arguments of `rapport seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {}

/// Seeds the profiles database.
pub async fn run(_config: &RapportConfig, _args: SeedArgs) -> anyhow::Result<()> {
    anyhow::bail!("rapport seed is not built yet")
}
