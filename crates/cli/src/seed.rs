//! `rapport seed`: bulk-loads synthetic customers into the profiles database
//! (`rapport_profiles::seed`), or with `--ceiling` measures the storage's
//! single-row write ceilings that benchmark results are read against
//! (`rapport_profiles::ceiling`).
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use rapport_bench::CeilingReport;
use rapport_profiles::{
    ceiling::{self, PgbenchScript},
    seed::{self, SeedPlan},
};
use rapport_store::Db;

use crate::config::RapportConfig;

/// Arguments of `rapport seed`.
#[derive(Debug, Args)]
#[command(after_help = "\
Uses the profiles database of the configuration (profiles.database.url) and \
migrates it first. To seed the `rapport dev` database:

  RAPPORT_PROFILES__DATABASE__URL=sqlite://.rapport/profiles.db rapport seed --customers 1000

Customer i gets the email seed-{i}@example.com, the phone +1555{i:07} and the \
display name \"Seed Customer {i}\", for i in 0..N. Running again with a larger N \
continues after the highest seeded index already present; an interrupted run \
loses at most its last uncommitted batch.

  rapport seed --ceiling --duration 10s --concurrency 8")]
pub struct SeedArgs {
    /// Seeded customers wanted in total (indexes 0..N); those already present
    /// are kept.
    #[arg(long, value_name = "N", required_unless_present = "ceiling")]
    customers: Option<u64>,
    /// Tenant of the seeded customers.
    #[arg(long, default_value = seed::DEFAULT_TENANT)]
    tenant: String,
    /// Customers per transaction.
    #[arg(long, default_value_t = seed::DEFAULT_BATCH)]
    batch: usize,
    /// Measure the storage write ceilings instead of seeding: raw single-row
    /// inserts through the service's connection settings, and pgbench when
    /// the database is PostgreSQL.
    #[arg(long, conflicts_with = "customers")]
    ceiling: bool,
    /// With --ceiling: how long each measurement runs (`500ms`, `10s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// With --ceiling: concurrent writers (tasks, and pgbench clients).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Seeds the profiles database, or measures its write ceilings.
pub async fn run(config: &RapportConfig, args: SeedArgs) -> anyhow::Result<()> {
    let database = &config.profiles.database;
    let shown = rapport_store::db::redact_url(&database.url);
    let db = Db::connect(&database.url, &database.pool)
        .await
        .with_context(|| format!("connecting to {shown}"))?;
    rapport_profiles::migrate(&db).await?;
    let result = if args.ceiling {
        ceilings(&db, &database.url, &args).await
    } else {
        seed_customers(&db, &shown, &args).await
    };
    db.close().await;
    result
}

async fn seed_customers(db: &Db, shown: &str, args: &SeedArgs) -> anyhow::Result<()> {
    let plan = SeedPlan {
        tenant: args.tenant.clone(),
        customers: args.customers.unwrap_or_default(),
        batch: args.batch,
    };
    eprintln!(
        "seeding {} customers into tenant {:?} of {shown}",
        plan.customers, plan.tenant
    );
    let mut last_print = Instant::now();
    let mut last_rows = 0;
    let report = seed::seed(db, &plan, |p| {
        let since = last_print.elapsed();
        if since >= Duration::from_secs(2) {
            eprintln!(
                "  {:>10}/{} customers  {:>8.0} rows/s now  {:>8.0} customers/s overall",
                p.seeded,
                p.target,
                (p.rows - last_rows) as f64 / since.as_secs_f64(),
                p.inserted as f64 / p.elapsed.as_secs_f64(),
            );
            last_print = Instant::now();
            last_rows = p.rows;
        }
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.inserted == 0 {
        println!(
            "tenant {:?} already has {} seeded customers; nothing to do",
            report.tenant, report.seeded
        );
    } else {
        println!(
            "seeded {} customers ({} rows) in {:.1}s: {:.0} customers/s, {:.0} rows/s; \
             tenant {:?} now has {} (resumed at {})",
            report.inserted,
            report.rows,
            report.elapsed_secs,
            report.customers_per_sec,
            report.rows_per_sec,
            report.tenant,
            report.seeded,
            report.resumed_at,
        );
    }
    Ok(())
}

async fn ceilings(db: &Db, url: &str, args: &SeedArgs) -> anyhow::Result<()> {
    let mut reports = vec![ceiling::raw_insert_ceiling(db, args.duration, args.concurrency).await?];
    // Db::connect accepts exactly these two spellings for PostgreSQL.
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (url, clients) = (url.to_owned(), args.concurrency as u32);
        let seconds = args.duration.as_secs().max(1) as u32;
        let pgbench = tokio::task::spawn_blocking(move || {
            [PgbenchScript::OneRow, PgbenchScript::CreateShape]
                .into_iter()
                .map(|script| ceiling::pgbench_ceiling(&url, script, seconds, clients))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await
        .context("pgbench runner panicked")??;
        reports.extend(pgbench);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    println!(
        "{:<26} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "ceiling", "conc", "ops/s", "mean ms", "p50 ms", "p99 ms", "max ms"
    );
    for r in &reports {
        print_ceiling(r);
    }
    Ok(())
}

fn print_ceiling(r: &CeilingReport) {
    println!(
        "{:<26} {:>5} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        r.name, r.concurrency, r.ops_per_sec, r.mean_ms, r.p50_ms, r.p99_ms, r.max_ms
    );
}

/// Parses `250ms`, `10s`, `2m` or a bare number of seconds.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration such as 500ms, 10s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("unknown unit {unit:?} in {raw:?}: use ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
