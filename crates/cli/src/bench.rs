//! `rapport bench` (being built).
use clap::Args;

use crate::config::RapportConfig;

/// Arguments of `rapport bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Runs the benchmark.
pub async fn run(_config: &RapportConfig, _args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("rapport bench is not built yet")
}
