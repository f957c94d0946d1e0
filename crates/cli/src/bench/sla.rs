//! `conversations.sla-breach`, run in this process after the RPC scenarios
//! on a database made for it: conversations served in-process on the
//! in-process bus (its clock the system's, its timer poll
//! `--sla-poll-ms`), an email inbox and a fallback policy of an 8-hour
//! first response created through its API, then:
//!
//! 1. `--sla-open` open conversations under that SLA written through its
//!    own rules and repository (`rapport_conversations::seed`), each with
//!    its live breach timer 8 hours away;
//! 2. idle: with all of them live and nothing due, this process's CPU (and
//!    on PostgreSQL the server's, and its transactions) over `--sla-idle`,
//!    extrapolated to an hour;
//! 3. breaches: `--sla-breaches` more, whose clocks started 8 hours before
//!    due times spread evenly over `--sla-window` starting after they are
//!    written. Each `SlaBreached` event is read off the bus as it is
//!    published; its lag is then − its due time (the timer worker's wait,
//!    the firing transaction, the relay).
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::ValueEnum;
use prost::{Message as _, Name as _};
use rapport_bench::procfs;
use rapport_conversations::seed;
use rapport_events::{Bus, ConsumerOptions};
use rapport_proto::conversations::SlaBreached;
use rapport_store::{Db, DbOptions};
use sea_orm::ConnectionTrait as _;

use super::{BenchArgs, DatabaseKind, Environment, Secrets, TENANT, parse_duration};

/// The policy's first-response target: far beyond any run, so a
/// conversation of step 1 never breaches during it.
const TARGET: Duration = Duration::from_secs(8 * 3600);
/// Conversations per seed commit.
const PER_COMMIT: usize = 200;
/// How long after the window's end the breaches still missing are waited
/// for.
const DRAIN: Duration = Duration::from_secs(60);

/// A service level scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Scenario {
    #[value(name = "conversations.sla-breach")]
    Breach,
}

/// The flags of `conversations.sla-breach`.
#[derive(Debug, clap::Args)]
pub(super) struct SlaArgs {
    /// Open conversations with a live SLA (a breach timer 8 hours away).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub(super) sla_open: usize,
    /// Conversations written after the idle window that breach during the
    /// breach window (beside the open ones).
    #[arg(long, default_value_t = 6_000, value_name = "N")]
    pub(super) sla_breaches: usize,
    /// The window their due times spread over evenly.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(super) sla_window: Duration,
    /// The idle window CPU is measured over.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(super) sla_idle: Duration,
    /// conversations.timer_poll_ms of the served conversations.
    #[arg(long, default_value_t = 1_000, value_name = "MS")]
    pub(super) sla_poll_ms: u64,
    /// conversations.timer_concurrency of the served conversations (1: one
    /// firing at a time, as before it existed).
    #[arg(long, default_value_t = rapport_conversations::Config::default().timer_concurrency, value_name = "N")]
    pub(super) sla_timer_concurrency: usize,
}

/// Runs the scenario; returns what it measured, to print after the tables.
pub(super) async fn run(args: &BenchArgs, env: &mut Environment) -> anyhow::Result<Vec<String>> {
    let a = &args.sla;
    if a.sla_breaches == 0 || a.sla_window.is_zero() {
        bail!("--sla-breaches and --sla-window must be above 0");
    }
    let (url, postgres) = match args.database {
        DatabaseKind::Sqlite => (
            format!(
                "sqlite://{}",
                env.dir.path().join("conversations-sla.db").display()
            ),
            None,
        ),
        DatabaseKind::Postgres => {
            env.connect_postgres(&args.postgres_url).await?;
            let url = env
                .create_postgres_database(&args.postgres_url, "sla")
                .await?;
            let name = super::database_name(&url)?;
            (url, Some(name))
        }
    };
    let secrets = Secrets::generate();
    let config = rapport_conversations::Config {
        server: rapport_kit::ServerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..rapport_kit::ServerConfig::default()
        },
        database: rapport_store::DatabaseConfig {
            url: url.clone(),
            migrate: true,
            pool: DbOptions::default(),
        },
        page_token_secret: secrets.conversations_page_token.clone().into(),
        assertion_public_keys: secrets.assertion_public_key(),
        service_key: secrets.conversations_service_key.clone().into(),
        timer_poll_ms: a.sla_poll_ms,
        timer_concurrency: a.sla_timer_concurrency,
        ..rapport_conversations::Config::default()
    };
    let bus = Bus::in_process();
    // Subscribed before anything is published.
    let mut consumer = bus
        .consumer(
            "bench.sla",
            rapport_conversations::EVENTS_NAME,
            &format!(
                "rapport.{}.{}",
                rapport_conversations::EVENTS_NAME,
                SlaBreached::NAME
            ),
            &ConsumerOptions::default(),
        )
        .await?;
    let lags: Arc<Mutex<Vec<f64>>> = Arc::default();
    let reader = {
        let lags = lags.clone();
        tokio::spawn(async move {
            while let Ok(delivery) = consumer.next().await {
                let seen = Utc::now();
                let due = delivery
                    .envelope
                    .payload
                    .as_ref()
                    .filter(|p| p.type_url == SlaBreached::type_url())
                    .and_then(|p| SlaBreached::decode(p.value.as_slice()).ok())
                    .and_then(|b| b.due_time)
                    .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32));
                if let Some(due) = due {
                    let lag = (seen - due).num_microseconds().unwrap_or(i64::MAX);
                    lags.lock().expect("not poisoned").push(lag as f64 / 1e6);
                }
                let _ = delivery.ack().await;
            }
        })
    };
    let server = rapport_conversations::build_with(
        &config,
        &bus,
        Arc::new(rapport_conversations::SystemClock),
    )
    .await?;
    let uri = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let result = measure(args, env, &uri, &url, postgres.as_deref(), &secrets, &lags).await;
    let _ = stop.send(());
    let _ = serving.await;
    reader.abort();
    result
}

async fn measure(
    args: &BenchArgs,
    env: &Environment,
    uri: &str,
    url: &str,
    postgres: Option<&str>,
    secrets: &Secrets,
    lags: &Mutex<Vec<f64>>,
) -> anyhow::Result<Vec<String>> {
    let a = &args.sla;
    let direct = secrets.direct_credentials()?;
    let channel = rapport_bench::engine::connect_one(uri, super::CALL_TIMEOUT).await?;
    let inbox = rapport_bench::workload::create_email_inbox(
        channel.clone(),
        &direct,
        "support@bench.example.com",
    )
    .await?;
    let target_secs = i64::try_from(TARGET.as_secs()).unwrap_or(i64::MAX);
    rapport_bench::workload::create_first_response_policy(channel, &direct, target_secs).await?;
    let inbox: uuid::Uuid = inbox
        .strip_prefix("inboxes/")
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("CreateInbox named its inbox {inbox:?}"))?;
    let db = Db::connect(url, &DbOptions::default()).await?;
    let target = chrono::Duration::from_std(TARGET)?;
    let mut notes = Vec::new();

    // 1. The open conversations, due in 8 hours.
    tracing::info!(
        conversations = a.sla_open,
        "writing open conversations under an SLA"
    );
    let now = Utc::now();
    let open = seed::seed_open_under_sla(
        &db,
        &seed::SlaPlan {
            tenant: TENANT.to_owned(),
            inbox,
            arrivals: vec![now; a.sla_open],
            per_commit: PER_COMMIT,
        },
    )
    .await?;
    db.refresh_statistics().await?;
    let rate = open.conversations as f64 / open.elapsed_secs.max(1e-3);
    tracing::info!(
        secs = format!("{:.1}", open.elapsed_secs),
        timers = open.timers,
        "open conversations written"
    );
    notes.push(format!(
        "conversations.sla-breach on {}: {} cores, load average {} at start, timer poll {} ms, timer concurrency {}; \
         {} open conversations with a live SLA (first response in 8 h, {} timers) written in {:.1} s \
         ({:.0}/s)",
        args.database.name(),
        std::thread::available_parallelism().map_or(1, usize::from),
        load_average(),
        a.sla_poll_ms,
        a.sla_timer_concurrency,
        open.conversations,
        open.timers,
        open.elapsed_secs,
        rate,
    ));

    // 2. Idle: everything live, nothing due.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let backends = match postgres {
        Some(name) => env
            .postgres_backends_of(&[name.to_owned()])
            .await
            .map(|w| w.pids)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let me = std::process::id();
    let ticks = |pids: &[u32]| {
        pids.iter()
            .filter_map(|p| procfs::cpu_ticks(*p))
            .sum::<u64>()
    };
    let xacts_before = match postgres {
        Some(name) => transactions(env, name).await,
        None => None,
    };
    let (cpu_before, pg_before, idle_start) = (ticks(&[me]), ticks(&backends), Instant::now());
    tokio::time::sleep(a.sla_idle).await;
    let (cpu_after, pg_after, idle) = (ticks(&[me]), ticks(&backends), idle_start.elapsed());
    let xacts_after = match postgres {
        Some(name) => transactions(env, name).await,
        None => None,
    };
    let hz = procfs::clock_ticks_per_second() as f64;
    let per_hour = |t: u64| t as f64 / hz * 3600.0 / idle.as_secs_f64();
    let mut idle_note = format!(
        "  idle {:.0} s with {} live SLA timers: rapport (the service, in this process) {:.2} CPU s per idle hour",
        idle.as_secs_f64(),
        open.timers,
        per_hour(cpu_after.saturating_sub(cpu_before)),
    );
    if postgres.is_some() {
        idle_note.push_str(&format!(
            ", its PostgreSQL backends {:.2} CPU s per idle hour",
            per_hour(pg_after.saturating_sub(pg_before))
        ));
    }
    if let (Some(b), Some(e)) = (xacts_before, xacts_after) {
        idle_note.push_str(&format!(
            ", {:.1} transactions/s (pg_stat_database, every statement of the pollers is one)",
            (e - b) as f64 / idle.as_secs_f64()
        ));
    }
    notes.push(idle_note);

    // 3. Breaches: due times spread over the window, which starts once they
    // are written (at the rate step 1 wrote, with room to spare).
    let lead = Duration::from_secs_f64(a.sla_breaches as f64 / rate * 1.5 + 5.0);
    let start = Utc::now() + chrono::Duration::from_std(lead)?;
    let window = chrono::Duration::from_std(a.sla_window)?;
    let n = i32::try_from(a.sla_breaches).unwrap_or(i32::MAX);
    let arrivals: Vec<DateTime<Utc>> = (0..n).map(|i| start + window * i / n - target).collect();
    tracing::info!(
        conversations = a.sla_breaches,
        "writing conversations that breach"
    );
    let breaching = seed::seed_open_under_sla(
        &db,
        &seed::SlaPlan {
            tenant: TENANT.to_owned(),
            inbox,
            arrivals,
            per_commit: PER_COMMIT,
        },
    )
    .await?;
    db.close().await;
    if Utc::now() >= start {
        bail!(
            "writing the breaching conversations outlasted the lead of {lead:?}: lags would be meaningless"
        );
    }
    let end = start + window;
    tracing::info!(%start, %end, "breaches due");
    let deadline = Instant::now() + lead + a.sla_window + DRAIN;
    let (cpu_before, window_start) = (ticks(&[me]), Instant::now());
    while lags.lock().expect("not poisoned").len() < a.sla_breaches && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let busy = window_start.elapsed();
    let cpu = (ticks(&[me]) - cpu_before) as f64 / hz;
    let mut lags = lags.lock().expect("not poisoned").clone();
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| {
        lags.get(((lags.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    notes.push(format!(
        "  breaches: {} of {} conversations due over {:.0} s ({:.0}/s) beside {} live, first due {}: \
         SlaBreached seen {}; lag from due time to the event on the bus p50 {:.3} s, p90 {:.3} s, \
         p99 {:.3} s, max {:.3} s; rapport {:.1} CPU s over {:.0} s",
        breaching.conversations,
        a.sla_breaches,
        a.sla_window.as_secs_f64(),
        a.sla_breaches as f64 / a.sla_window.as_secs_f64(),
        open.conversations,
        breaching.first_due.map_or_else(String::new, |d| d.to_rfc3339()),
        lags.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        lags.last().copied().unwrap_or(f64::NAN),
        cpu,
        busy.as_secs_f64(),
    ));
    if lags.len() < a.sla_breaches {
        bail!(
            "only {} of {} breaches were raised within {DRAIN:?} after the window",
            lags.len(),
            a.sla_breaches
        );
    }
    Ok(notes)
}

/// Transactions of database `name` so far (committed and rolled back).
async fn transactions(env: &Environment, name: &str) -> Option<i64> {
    let pg = env.postgres.as_ref()?;
    let row = pg
        .admin
        .reader
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            pg.admin.reader.get_database_backend(),
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .ok()??;
    row.try_get_by_index::<i64>(0).ok()
}

/// The machine's 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
