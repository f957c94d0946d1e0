//! PostgreSQL's own write ceiling: `pgbench` running a fixed script against
//! scratch tables, without our driver or pool in the way.
//!
//! This module knows pgbench, psql and where Debian installs them, and
//! nothing of any service's schema: the caller hands in the script (see
//! [`pgbench_ceiling`]), written against plain scratch tables this module
//! creates and drops. Blocking throughout: call it from `spawn_blocking` in
//! async code. Needs `pgbench` and `psql` (postgresql-client) on `PATH` or
//! under `/usr/lib/postgresql/*/bin`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::ceiling::CeilingReport;

/// How pgbench sends the script's statements (`-M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryMode {
    /// The simple query protocol: each statement sent as text.
    Simple,
    /// The extended protocol with statements prepared once per client, as
    /// sqlx sends ours. pgbench then takes every `:name` in the script for a
    /// variable: keep colons out of literals.
    Prepared,
}

impl QueryMode {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Prepared => "prepared",
        }
    }
}

/// One pgbench ceiling to measure.
#[derive(Debug, Clone, Copy)]
pub struct PgbenchRun<'a> {
    /// The report's name, e.g. `postgres.pgbench_insert`.
    pub name: &'a str,
    /// The scratch tables the script writes, by short name: each is created
    /// as `{prefix}_{table} (id text PRIMARY KEY DEFAULT
    /// gen_random_uuid()::text, payload text NOT NULL)` before the run and
    /// dropped after it, whatever happened.
    pub tables: &'a [&'a str],
    /// How the statements are sent.
    pub mode: QueryMode,
    /// Length of the run, seconds (at least 1).
    pub seconds: u32,
    /// pgbench clients, one thread each (at least 1).
    pub clients: u32,
}

/// `run` against the PostgreSQL at `url`. `script` is given the scratch
/// tables' prefix (`bench_ceiling_<random>`, tables `{prefix}_{table}`) and
/// returns the pgbench script: one transaction per execution.
///
/// Throughput is pgbench's `tps` (which excludes connection set-up), the
/// mean its `latency average`; percentiles come from its per-transaction log.
pub fn pgbench_ceiling(
    url: &str,
    run: &PgbenchRun<'_>,
    script: impl FnOnce(&str) -> String,
) -> anyhow::Result<CeilingReport> {
    if run.seconds == 0 || run.clients == 0 {
        bail!("pgbench needs at least one second and one client");
    }
    let pgbench = pg_program("pgbench")?;
    let psql_bin = pg_program("psql")?;
    let suffix = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let prefix = format!("bench_ceiling_{suffix}");
    let dir = std::env::temp_dir().join(format!("rapport-pgbench-{suffix}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let create: String = run
        .tables
        .iter()
        .map(|t| {
            format!(
                "CREATE TABLE {prefix}_{t} (id text PRIMARY KEY DEFAULT gen_random_uuid()::text, \
                 payload text NOT NULL);"
            )
        })
        .collect();
    psql(&psql_bin, url, &create).context("creating the pgbench scratch tables")?;
    let result = run_pgbench(&pgbench, url, &dir, &script(&prefix), run);
    let drop: String = run
        .tables
        .iter()
        .map(|t| format!("DROP TABLE IF EXISTS {prefix}_{t};"))
        .collect();
    let dropped = psql(&psql_bin, url, &drop);
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    dropped.context("dropping the pgbench scratch tables")?;
    Ok(report)
}

/// `text` as an SQL string literal (quotes doubled). Without prepared
/// statements pgbench leaves `:name` alone unless a variable of that name
/// exists, so colons pass through; see [`QueryMode::Prepared`].
pub fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A PostgreSQL client program: on `PATH`, else where Debian installs it.
fn pg_program(name: &str) -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if let Some(p) = on_path {
        return Ok(p);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .with_context(|| format!("{name} not found on PATH nor under /usr/lib/postgresql"))
}

fn psql(psql: &Path, url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn run_pgbench(
    pgbench: &Path,
    url: &str,
    dir: &Path,
    script: &str,
    run: &PgbenchRun<'_>,
) -> anyhow::Result<CeilingReport> {
    let file = dir.join("script.sql");
    std::fs::write(&file, script).context("writing the pgbench script")?;
    let log_prefix = dir.join("txn");
    let clients = run.clients.to_string();
    let out = Command::new(pgbench)
        .arg("-n")
        .args(["-M", run.mode.as_arg()])
        .arg("-f")
        .arg(&file)
        .args(["-T", &run.seconds.to_string()])
        .args(["-c", &clients, "-j", &clients])
        .arg("-l")
        .arg("--log-prefix")
        .arg(&log_prefix)
        .arg(url)
        .output()
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let summary = parse_pgbench(&stdout)?;
    let mut latencies = Vec::with_capacity(summary.transactions as usize);
    for entry in std::fs::read_dir(dir).context("reading pgbench logs")? {
        let path = entry?.path();
        let is_log = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("txn."));
        if is_log {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            latencies.extend(parse_pgbench_log(&text));
        }
    }
    let mut report = CeilingReport::from_latencies(
        run.name.to_owned(),
        run.clients as usize,
        f64::from(run.seconds),
        latencies,
    );
    // pgbench's own figures: its tps excludes connection set-up.
    report.ops_per_sec = summary.tps;
    report.mean_ms = summary.latency_avg_ms;
    report.operations = summary.transactions;
    Ok(report)
}

/// The figures of a pgbench summary.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PgbenchSummary {
    transactions: u64,
    latency_avg_ms: f64,
    tps: f64,
}

fn parse_pgbench(stdout: &str) -> anyhow::Result<PgbenchSummary> {
    let mut transactions = None;
    let mut latency = None;
    let mut tps = None;
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("number of transactions actually processed:") {
            transactions = v.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(v) = line.strip_prefix("latency average =") {
            latency = v.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(v) = line.strip_prefix("tps =") {
            tps = v.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    match (transactions, latency, tps) {
        (Some(transactions), Some(latency_avg_ms), Some(tps)) => Ok(PgbenchSummary {
            transactions,
            latency_avg_ms,
            tps,
        }),
        _ => bail!("unexpected pgbench output:\n{stdout}"),
    }
}

/// Latencies (µs) of a pgbench per-transaction log: `client_id
/// transaction_no time script_no time_epoch time_us ...`, `time` in µs.
fn parse_pgbench_log(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_output_and_logs() {
        let out = "transaction type: s.sql\nnumber of transactions actually processed: 10041\n\
                   number of failed transactions: 0 (0.000%)\nlatency average = 0.396 ms\n\
                   initial connection time = 13.432 ms\n\
                   tps = 5053.018702 (without initial connection time)\n";
        assert_eq!(
            parse_pgbench(out).unwrap(),
            PgbenchSummary {
                transactions: 10041,
                latency_avg_ms: 0.396,
                tps: 5053.018702
            }
        );
        assert!(parse_pgbench("pgbench: error").is_err());
        let log = "0 1 2089 0 1795344133 638905\n1 2 313 0 1795344133 639227\n";
        assert_eq!(parse_pgbench_log(log).collect::<Vec<_>>(), vec![2089, 313]);
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(sql_literal(r#"{"a":"it's"}"#), r#"'{"a":"it''s"}'"#);
    }

    #[test]
    fn refuses_an_empty_run() {
        let run = PgbenchRun {
            name: "x",
            tables: &["rows"],
            mode: QueryMode::Simple,
            seconds: 0,
            clients: 1,
        };
        let err = pgbench_ceiling("postgres://unused", &run, |_| String::new()).unwrap_err();
        assert!(err.to_string().contains("at least one second"), "{err}");
    }
}
