//! `rapport bench`: the benchmark harness. It starts each server as a child
//! process of this binary (so its CPU time and memory are its own in
//! `/proc`), on a database made for the run, issues itself an API key, seeds
//! the customers the reads draw from, runs the scenarios with the load engine
//! of `rapport-bench`, and prints the table (and the compare view, and JSON).
//!
//! The hidden `serve-*` subcommands are those children: each serves from the
//! configuration it is given, prints `listening ADDR` on stdout once bound,
//! and drains on SIGTERM or when its stdin closes (so a harness that dies
//! takes its servers with it).
//!
//! The event platform's scenarios (`nats.publish_consume`, `events.*`) run
//! in this process after the RPC scenarios: see [`events`].
mod events;
mod sla;

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use clap::{Args, Subcommand, ValueEnum};
use rapport_bench::{
    BenchReport, LoadConfig, RunInfo, RunStats, ScenarioReport, Target, Watched,
    engine::run_isolated,
    report::Ceiling,
    workload::{
        self, Conversations, ConversationsCall, Credentials, CustomerSet, Echo, Profiles,
        ProfilesCall,
    },
};
use rapport_profiles::ceiling::{self, PgbenchScript};
use rapport_store::{Db, DbOptions};
use sea_orm::ConnectionTrait as _;

use crate::{config::RapportConfig, services::Service};

/// The tenant every bench call acts for (also `rapport seed`'s default).
const TENANT: &str = rapport_profiles::seed::DEFAULT_TENANT;
/// Deadline of every bench call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take from spawn to `listening` (migrations included).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Calls in flight while seeding or sampling the customer set.
const SETUP_PARALLEL: usize = 16;
/// Senders conversations knows before `conversations.receive-known`.
const KNOWN_SENDERS: usize = 100;
/// Messages of the short history `conversations.history` is read against.
const SMALL_HISTORY: u64 = 100;
/// Messages per page of the history scenarios.
const HISTORY_PAGE: u64 = 50;

/// Arguments of `rapport bench`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Scenarios (each runnable alone with --scenario, repeatable; default every RPC scenario, in this
order; the event scenarios run only when named):
  echo                       bare tonic echo server, payload = the encoded realistic customer (the RPC ceiling)
  echo-via-gateway           the same through the gateway (API key, scope bench.echo)
  profiles.get[-via-gateway]     GetCustomer of a customer drawn from the seeded set
  profiles.lookup[-via-gateway]  LookupCustomer by the email of a drawn customer
  profiles.search[-via-gateway]  SearchCustomers for the email of a drawn customer (page size 10)
  profiles.create[-via-gateway]  CreateCustomer of a new realistic customer (with request_id)
  conversations.receive-new[-via-gateway]    ReceiveMessage (an email) from a new sender each call: profiles'
                             ResolveCustomer creates the customer, a new conversation with a case number
  conversations.receive-known[-via-gateway]  ReceiveMessage from one of 100 senders who wrote before: threaded
                             into their open conversation
  conversations.history-small  ListCustomerHistory, a page of 50 from a random point of a 100-message history
  conversations.history      the same in a history of --history-messages (default 1,000,000), read against
                             conversations.history-small
  conversations.metrics      QueryInteractionMetrics of a month grouped by agent, over the metric facts of
                             --metrics-conversations (default 1,000,000) conversations spread over a year
  conversations.metrics-year the same for the whole year (every conversation), not grouped
  nats.publish_consume       the event bus ceiling, raw async-nats on JetStream (needs --nats-url): --events
                             messages of an envelope's size published with pipelined PubAcks to a fresh stream
                             while a pull consumer acks them (events/s); then one message per tick at each
                             --event-rates rate (publish → consumed latency)
  events.relay_throughput    the outbox relay (relay_once in a loop) draining --events committed
                             CustomerCreated rows to the bus, in-process and on JetStream (events/s)
  events.lag                 open loop at each --event-rates rate: one outbox row committed per tick, woken
                             relay, a consumer applying each event through its inbox with an INSERT as effect;
                             latency is commit → effect committed, in-process and on JetStream
  conversations.sla-breach   conversations in this process: --sla-open (100,000) open conversations with a
                             live SLA written through its rules (nothing due), CPU over --sla-idle; then
                             --sla-breaches more due over --sla-window, lag from each due time to its
                             SlaBreached on the bus (p50/p90/p99/max); runs last, only when named

Servers run as child processes of this binary on a database made for the run (a SQLite file
in a temporary directory, or a fresh PostgreSQL database dropped afterwards). Direct profiles
calls carry a tenant assertion signed with the run's random key (tenant `bench`).

The conversations scenarios run only when named. They start conversations beside profiles, calling
profiles with a service key of the run that profiles trusts, and an email inbox (no
auto-acknowledgement) created before them. The histories are written through conversations' own
storage code (rapport_conversations::seed: a resolved conversation per 250 messages), not the
API; each call reads the page before a message drawn from those spread over the history (one in
each conversation, 50 in; in the short one, each of the newest 50), through a page token the
harness seals with the run's secret. The receive scenarios are read against the
storage write ceilings and against profiles.create of the same run (name it too):

  rapport bench --scenario profiles.create --scenario conversations.receive-new \
    --scenario conversations.receive-known --scenario conversations.history-small \
    --scenario conversations.history --compare

Before the first write scenario (create, receive) the storage write ceilings are measured on the same database
(raw single-row inserts with the service's pool and pragmas; pgbench too on PostgreSQL), unless
--no-ceilings; --compare reads profiles.create and the receive scenarios against them, the other
scenarios against echo.

With --seeded N the profiles database of the configuration (profiles.database.url) is used
as it is; it must hold N customers written by `rapport seed` (tenant `bench`):

  RAPPORT_PROFILES__DATABASE__URL=sqlite:///tmp/p.db rapport seed --customers 1000000
  RAPPORT_PROFILES__DATABASE__URL=sqlite:///tmp/p.db rapport bench --seeded 1000000 --pin

Latency is of successful calls; CPU µs/req is (utime + stime) of a server process over the
measured window from /proc, divided by the successful calls of the window.

The event scenarios run after the RPC ones, in this process (role `rapport`, which is also the
client), on fresh databases of --database (an outbox, and for events.lag a consumer's inbox in a
second one). With --nats-url (and without --no-ceilings) they are read against the JetStream
ceiling measured before them: events.relay_throughput against nats.publish_consume, events.lag at
each rate against nats.publish_consume@<rate>. Their latency columns: events.relay_throughput,
from a relay pass reading an event to marking it published; events.lag, from the commit to the
consumer's effect committed. After the tables, events.lag prints where its consumer spent each
event (next, apply, ack). The NATS server's CPU shows as `nats` when it runs as this user. JetStream runs use the stream
RAPPORT_PROFILES of the --nats-url server as a scratch stream, made afresh for every measurement
and deleted at the end: give the bench a NATS server of its own (it refuses to touch a
RAPPORT_PROFILES stream it did not make):

  nats-server -js -a 127.0.0.1 -p 4333 -sd /tmp/bench-nats &
  rapport bench --scenario events.relay_throughput --scenario events.lag --nats-url nats://127.0.0.1:4333"
)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<ServeCommand>,
    /// A scenario to run; repeat for several. Default: every RPC scenario
    /// (the event scenarios need a NATS server and run only when named).
    #[arg(long = "scenario", value_enum, value_name = "NAME")]
    scenarios: Vec<Selected>,
    /// Measured window per scenario (`500ms`, `10s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured load before each window.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Concurrent calls (closed loop), or most calls in flight (open loop).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections of the load generator.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls per second: an open loop at this rate, latency counted from each
    /// call's due time. Unset: a closed loop to saturation.
    #[arg(long)]
    rate: Option<f64>,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Storage of the run's databases (with --seeded: that of the
    /// configured profiles database).
    #[arg(long, value_enum, default_value = "sqlite", conflicts_with = "seeded")]
    database: DatabaseKind,
    /// PostgreSQL server and a database to connect to for creating and
    /// dropping the run's databases (the role needs CREATEDB).
    #[arg(
        long,
        env = "RAPPORT_BENCH_POSTGRES_URL",
        default_value = "postgres://rapport:rapport@127.0.0.1:5432/rapport",
        hide_default_value = true
    )]
    postgres_url: String,
    /// Customers the harness creates through the API before the scenarios
    /// (emails bench-{i}@example.com); with --seeded, how many of the seeded
    /// customers the reads draw from.
    #[arg(long, default_value_t = 1000)]
    customers: u64,
    /// Messages of the history `conversations.history` reads.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    history_messages: u64,
    /// Conversations whose metric facts `conversations.metrics` reads.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    metrics_conversations: u64,
    /// Use the configured profiles database, which `rapport seed` filled with
    /// N customers, instead of a fresh one.
    #[arg(long, value_name = "N")]
    seeded: Option<u64>,
    /// Pin the servers to CPU 1 (1..n-1 on bigger machines) and this load
    /// generator to CPU 0, with taskset.
    #[arg(long)]
    pin: bool,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also print each scenario as a ratio to its ceiling.
    #[arg(long)]
    compare: bool,
    /// Skip the storage write ceilings measured before create scenarios, and
    /// the JetStream ceilings measured before the event scenarios.
    #[arg(long)]
    no_ceilings: bool,
    /// Writers (pgbench clients) of the storage write ceilings. Default:
    /// --concurrency.
    #[arg(long)]
    ceiling_concurrency: Option<usize>,
    /// Log filter of the server processes (their logs go to files in the
    /// run's directory; the tail is shown when they wrote anything).
    #[arg(long, default_value = "warn")]
    server_log: String,
    /// The event scenarios' own settings (boxed: they would make `rapport`'s
    /// command enum lopsided).
    #[command(flatten)]
    event: Box<events::EventArgs>,
    /// `conversations.sla-breach`'s own settings.
    #[command(flatten)]
    sla: Box<sla::SlaArgs>,
}

/// The server processes the harness starts (not for people to call).
#[derive(Debug, Subcommand)]
enum ServeCommand {
    /// Serve the echo ceiling server.
    #[command(name = "serve-echo", hide = true)]
    Echo {
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Also stop when stdin reaches end of file.
        #[arg(long)]
        stop_on_stdin_eof: bool,
    },
    /// Serve the profiles service from configuration.
    #[command(name = "serve-profiles", hide = true)]
    Profiles {
        /// Also stop when stdin reaches end of file.
        #[arg(long)]
        stop_on_stdin_eof: bool,
    },
    /// Serve the conversations service from configuration.
    #[command(name = "serve-conversations", hide = true)]
    Conversations {
        /// Also stop when stdin reaches end of file.
        #[arg(long)]
        stop_on_stdin_eof: bool,
    },
    /// Serve the gateway from configuration.
    #[command(name = "serve-gateway", hide = true)]
    Gateway {
        /// Also stop when stdin reaches end of file.
        #[arg(long)]
        stop_on_stdin_eof: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatabaseKind {
    /// A SQLite file in the run's temporary directory.
    Sqlite,
    /// A fresh PostgreSQL database, dropped afterwards.
    Postgres,
}

impl DatabaseKind {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    #[value(name = "echo")]
    Echo,
    #[value(name = "echo-via-gateway")]
    EchoViaGateway,
    #[value(name = "profiles.get")]
    Get,
    #[value(name = "profiles.get-via-gateway")]
    GetViaGateway,
    #[value(name = "profiles.lookup")]
    Lookup,
    #[value(name = "profiles.lookup-via-gateway")]
    LookupViaGateway,
    #[value(name = "profiles.search")]
    Search,
    #[value(name = "profiles.search-via-gateway")]
    SearchViaGateway,
    #[value(name = "profiles.create")]
    Create,
    #[value(name = "profiles.create-via-gateway")]
    CreateViaGateway,
    #[value(name = "conversations.receive-new")]
    ReceiveNew,
    #[value(name = "conversations.receive-new-via-gateway")]
    ReceiveNewViaGateway,
    #[value(name = "conversations.receive-known")]
    ReceiveKnown,
    #[value(name = "conversations.receive-known-via-gateway")]
    ReceiveKnownViaGateway,
    #[value(name = "conversations.history-small")]
    HistorySmall,
    #[value(name = "conversations.history")]
    History,
    #[value(name = "conversations.metrics")]
    Metrics,
    #[value(name = "conversations.metrics-year")]
    MetricsYear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Echo,
    Get,
    Lookup,
    Search,
    Create,
    ReceiveNew,
    ReceiveKnown,
    HistorySmall,
    History,
    Metrics,
    MetricsYear,
}

impl Rpc {
    /// Whether the RPC is conversations' (which calls profiles).
    fn conversations(self) -> bool {
        matches!(
            self,
            Self::ReceiveNew
                | Self::ReceiveKnown
                | Self::HistorySmall
                | Self::History
                | Self::Metrics
                | Self::MetricsYear
        )
    }

    /// Whether it writes: the storage ceilings are measured before the
    /// first such scenario.
    fn writes(self) -> bool {
        matches!(self, Self::Create | Self::ReceiveNew | Self::ReceiveKnown)
    }
}

impl Scenario {
    /// Every scenario, in the order they run: reads before creates, so the
    /// reads see the seeded set only.
    const ALL: [Scenario; 18] = [
        Self::Echo,
        Self::EchoViaGateway,
        Self::Get,
        Self::GetViaGateway,
        Self::Lookup,
        Self::LookupViaGateway,
        Self::Search,
        Self::SearchViaGateway,
        Self::Create,
        Self::CreateViaGateway,
        Self::ReceiveNew,
        Self::ReceiveNewViaGateway,
        Self::ReceiveKnown,
        Self::ReceiveKnownViaGateway,
        Self::HistorySmall,
        Self::History,
        Self::Metrics,
        Self::MetricsYear,
    ];

    fn name(self) -> String {
        self.to_possible_value()
            .expect("no scenario is skipped")
            .get_name()
            .to_owned()
    }

    fn via_gateway(self) -> bool {
        matches!(
            self,
            Self::EchoViaGateway
                | Self::GetViaGateway
                | Self::LookupViaGateway
                | Self::SearchViaGateway
                | Self::CreateViaGateway
                | Self::ReceiveNewViaGateway
                | Self::ReceiveKnownViaGateway
        )
    }

    /// Whether a plain `rapport bench` runs it: the conversations scenarios
    /// start two more servers and write a long history, so they run only
    /// when named.
    fn by_default(self) -> bool {
        !self.rpc().conversations()
    }

    fn rpc(self) -> Rpc {
        match self {
            Self::Echo | Self::EchoViaGateway => Rpc::Echo,
            Self::Get | Self::GetViaGateway => Rpc::Get,
            Self::Lookup | Self::LookupViaGateway => Rpc::Lookup,
            Self::Search | Self::SearchViaGateway => Rpc::Search,
            Self::Create | Self::CreateViaGateway => Rpc::Create,
            Self::ReceiveNew | Self::ReceiveNewViaGateway => Rpc::ReceiveNew,
            Self::ReceiveKnown | Self::ReceiveKnownViaGateway => Rpc::ReceiveKnown,
            Self::HistorySmall => Rpc::HistorySmall,
            Self::History => Rpc::History,
            Self::Metrics => Rpc::Metrics,
            Self::MetricsYear => Rpc::MetricsYear,
        }
    }

    /// The scenario of the same path a receive is also read against: a
    /// new sender's message creates a customer as profiles.create does.
    fn baseline(self) -> Option<Scenario> {
        matches!(self.rpc(), Rpc::ReceiveNew | Rpc::ReceiveKnown).then(|| {
            *Self::ALL
                .iter()
                .find(|s| s.rpc() == Rpc::Create && s.via_gateway() == self.via_gateway())
                .expect("profiles.create runs on every path")
        })
    }

    /// The direct scenario a gateway scenario is the variant of.
    fn direct(self) -> Option<Scenario> {
        self.via_gateway().then(|| {
            *Self::ALL
                .iter()
                .find(|s| s.rpc() == self.rpc() && !s.via_gateway())
                .expect("every RPC has a direct scenario")
        })
    }
}

/// A scenario named on the command line: an RPC scenario (servers, the load
/// engine) or an event platform scenario (in this process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selected {
    Rpc(Scenario),
    Events(events::Scenario),
    /// A service level scenario (in this process, after the others).
    Sla(sla::Scenario),
}

impl Selected {
    /// Every scenario, in the order they run: the RPC scenarios, then the
    /// event scenarios.
    const ALL: [Selected; 22] = [
        Self::Rpc(Scenario::Echo),
        Self::Rpc(Scenario::EchoViaGateway),
        Self::Rpc(Scenario::Get),
        Self::Rpc(Scenario::GetViaGateway),
        Self::Rpc(Scenario::Lookup),
        Self::Rpc(Scenario::LookupViaGateway),
        Self::Rpc(Scenario::Search),
        Self::Rpc(Scenario::SearchViaGateway),
        Self::Rpc(Scenario::Create),
        Self::Rpc(Scenario::CreateViaGateway),
        Self::Rpc(Scenario::ReceiveNew),
        Self::Rpc(Scenario::ReceiveNewViaGateway),
        Self::Rpc(Scenario::ReceiveKnown),
        Self::Rpc(Scenario::ReceiveKnownViaGateway),
        Self::Rpc(Scenario::HistorySmall),
        Self::Rpc(Scenario::History),
        Self::Rpc(Scenario::Metrics),
        Self::Rpc(Scenario::MetricsYear),
        Self::Events(events::Scenario::PublishConsume),
        Self::Events(events::Scenario::RelayThroughput),
        Self::Events(events::Scenario::Lag),
        Self::Sla(sla::Scenario::Breach),
    ];
}

impl ValueEnum for Selected {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            Self::Rpc(s) => s.to_possible_value(),
            Self::Events(s) => s.to_possible_value(),
            Self::Sla(s) => s.to_possible_value(),
        }
    }
}

/// Runs the benchmark, or one of its server processes.
pub async fn run(config: &RapportConfig, mut args: BenchArgs) -> anyhow::Result<()> {
    if let Some(command) = args.command.take() {
        return serve(config, command).await;
    }
    let selected: Vec<Selected> = Selected::ALL
        .into_iter()
        .filter(|s| match s {
            // The event scenarios take minutes and want a NATS server of
            // their own: a plain `rapport bench` measures the RPCs only.
            Selected::Rpc(s) if args.scenarios.is_empty() => s.by_default(),
            _ => args.scenarios.contains(s),
        })
        .collect();
    let scenarios: Vec<Scenario> = selected
        .iter()
        .filter_map(|s| match s {
            Selected::Rpc(s) => Some(*s),
            Selected::Events(_) | Selected::Sla(_) => None,
        })
        .collect();
    let event_scenarios: Vec<events::Scenario> = selected
        .iter()
        .filter_map(|s| match s {
            Selected::Events(s) => Some(*s),
            Selected::Rpc(_) | Selected::Sla(_) => None,
        })
        .collect();
    let sla_scenario = selected.iter().any(|s| matches!(s, Selected::Sla(_)));
    let event_scenarios = events::check(&args, event_scenarios)?;
    // Counted before pinning, which narrows what this process may use.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinning = Pinning::apply(args.pin, cpus)?;
    let mut env = Environment {
        dir: tempfile::Builder::new()
            .prefix("rapport-bench-")
            .tempdir()
            .context("creating the run's temporary directory")?,
        servers: Vec::new(),
        postgres: None,
    };
    // Ctrl-C ends the run, but still stops the servers and drops the databases.
    let all = async {
        let mut report = bench(config, &args, &scenarios, &pinning, &mut env).await?;
        let mut notes = Vec::new();
        if !event_scenarios.is_empty() {
            // The servers are done: nothing of theirs runs beside the events.
            env.stop_servers().await;
            notes = events::run(&args, &event_scenarios, &mut env, &mut report).await?;
        }
        if sla_scenario {
            env.stop_servers().await;
            report.run.database = args.database.name().to_owned();
            notes.extend(sla::run(&args, &mut env).await?);
        }
        anyhow::Ok((report, notes))
    };
    let result = tokio::select! {
        result = all => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    env.teardown().await;
    let (report, notes) = result?;

    println!();
    print!("{}", report.render_header());
    println!();
    print!("{}", report.render_table());
    if args.compare {
        println!();
        print!("{}", report.render_compare());
    }
    if !notes.is_empty() {
        println!();
        for note in &notes {
            println!("{note}");
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nJSON report written to {}", path.display());
    }
    Ok(())
}

/// Which servers the selected scenarios need.
#[derive(Debug, Clone, Copy)]
struct Needs {
    echo: bool,
    profiles: bool,
    conversations: bool,
    gateway: bool,
}

impl Needs {
    fn of(scenarios: &[Scenario]) -> Self {
        Self {
            echo: scenarios.iter().any(|s| s.rpc() == Rpc::Echo),
            profiles: scenarios.iter().any(|s| s.rpc() != Rpc::Echo),
            conversations: scenarios.iter().any(|s| s.rpc().conversations()),
            gateway: scenarios.iter().any(|s| s.via_gateway()),
        }
    }
}

/// What the run set up and must take down.
struct Environment {
    /// SQLite files, the gateway's configuration file, server logs.
    dir: tempfile::TempDir,
    servers: Vec<Server>,
    postgres: Option<Postgres>,
}

/// The PostgreSQL side of a run.
struct Postgres {
    /// Connection for creating and dropping databases and for finding the
    /// server processes of the run's databases.
    admin: Db,
    /// Databases created for the run, dropped at the end.
    created: Vec<String>,
    /// Databases whose server processes are watched (created or seeded).
    watched: Vec<String>,
}

/// The run's database URLs.
struct Databases {
    kind: DatabaseKind,
    profiles: Option<String>,
    conversations: Option<String>,
    gateway: Option<String>,
}

/// The run's random secrets, handed to the servers by environment.
struct Secrets {
    assertion_key: String,
    profiles_page_token: String,
    conversations_page_token: String,
    gateway_page_token: String,
    /// Conversations' own key, for its calls to profiles.
    conversations_service_key: String,
}

impl Secrets {
    fn generate() -> Self {
        let secret = || B64.encode(rand::random::<[u8; 32]>());
        Self {
            assertion_key: secret(),
            profiles_page_token: secret(),
            conversations_page_token: secret(),
            gateway_page_token: secret(),
            conversations_service_key: secret(),
        }
    }

    /// A tenant assertion as the gateway would sign it, for calling the
    /// services directly; valid for a week, so it never expires
    /// within a run.
    fn direct_credentials(&self) -> anyhow::Result<Credentials> {
        let key = rapport_kit::AssertionSigner::from_base64(&self.assertion_key)
            .context("32 random bytes are an Ed25519 seed")?;
        Credentials::assertions(|path| {
            key.sign(&rapport_kit::assertion::Claims {
                tenant: TENANT.to_owned(),
                principal: "bench/harness".to_owned(),
                scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
                expires: chrono::Utc::now().timestamp() + 7 * 24 * 3600,
                audience: rapport_kit::assertion::Claims::audience_of(path)
                    .unwrap_or_default()
                    .to_owned(),
                method: path.to_owned(),
            })
        })
    }

    /// The public key of the run's assertion key, for the services.
    fn assertion_public_key(&self) -> String {
        public_key_of(&self.assertion_key)
    }
}

/// The public half of an Ed25519 seed (32 random bytes always are one).
fn public_key_of(seed: &str) -> String {
    rapport_kit::AssertionSigner::from_base64(seed)
        .map(|k| k.public_key())
        .unwrap_or_default()
}

/// The scopes of every scenario: the run's assertions and API key.
const SCOPES: [&str; 6] = [
    "profiles.read",
    "profiles.write",
    "conversations.read",
    "conversations.ingest",
    // The inbox the harness creates.
    "conversations.admin",
    "bench.echo",
];

/// What the conversations scenarios use, made before them.
struct ConversationsSetup {
    /// `inboxes/{id}`: an email inbox.
    inbox: String,
    /// Emails of the senders conversations knows.
    known: Arc<Vec<String>>,
    /// The seeded histories: (customer, page tokens) of the small one and
    /// of the long one, when their scenario runs.
    small: Option<(String, Arc<Vec<String>>)>,
    long: Option<(String, Arc<Vec<String>>)>,
    /// The start of the seeded year of metric facts, when a metrics
    /// scenario runs.
    metrics_year: Option<chrono::DateTime<chrono::Utc>>,
}

/// A started server: where to call it and its index in
/// [`Environment::servers`].
#[derive(Debug, Clone)]
struct Started {
    uri: String,
    index: usize,
}

/// The servers of the run.
struct Servers {
    echo: Option<Started>,
    profiles: Option<Started>,
    conversations: Option<Started>,
    /// The gateway and the run's API key.
    gateway: Option<(Started, Credentials)>,
}

async fn bench(
    config: &RapportConfig,
    args: &BenchArgs,
    scenarios: &[Scenario],
    pinning: &Pinning,
    env: &mut Environment,
) -> anyhow::Result<BenchReport> {
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let needs = Needs::of(scenarios);
    let databases = env.databases(config, args, needs).await?;
    let secrets = Secrets::generate();
    let direct = secrets.direct_credentials()?;
    let servers = env
        .start_servers(args, pinning, needs, &databases, &secrets)
        .await?;

    // The customers the reads draw from.
    let (set, customers, customers_source) = match &servers.profiles {
        None => (CustomerSet::default(), 0, "none"),
        Some(profiles) => {
            let channel = rapport_bench::engine::connect_one(&profiles.uri, CALL_TIMEOUT).await?;
            match args.seeded {
                None => {
                    tracing::info!(
                        customers = args.customers,
                        "creating customers through the API"
                    );
                    let set = workload::create_customers(
                        channel,
                        &direct,
                        0..args.customers,
                        SETUP_PARALLEL,
                    )
                    .await?;
                    // As after any bulk load (and as pgbench -i does): measure
                    // steady-state plans, not a table the planner knows nothing of.
                    if let Some(url) = &databases.profiles {
                        let db = Db::connect(url, &DbOptions::default()).await?;
                        db.refresh_statistics().await?;
                        db.close().await;
                    }
                    (set, args.customers, "created through the API")
                }
                Some(n) => {
                    let set = sample_seeded(channel, &direct, n, args.customers).await?;
                    (set, n, "written by rapport seed")
                }
            }
        }
    };
    if set.is_empty()
        && scenarios
            .iter()
            .any(|s| matches!(s.rpc(), Rpc::Get | Rpc::Lookup | Rpc::Search))
    {
        bail!("the customer set is empty: nothing for the read scenarios to draw from");
    }
    let set = Arc::new(set);
    let conversations = match &servers.conversations {
        Some(started) => Some(
            prepare_conversations(started, &direct, args, scenarios, &databases, &secrets).await?,
        ),
        None => None,
    };

    let run_tag: u16 = rand::random_range(0..10_000);
    let mut ceilings: Option<Vec<Ceiling>> = None;
    let mut rows = Vec::new();
    for (n, scenario) in scenarios.iter().enumerate() {
        // Ceilings right before the first write scenario, on the same database.
        if scenario.rpc().writes() && ceilings.is_none() && !args.no_ceilings {
            let url = databases
                .profiles
                .as_deref()
                .expect("profiles has a database");
            ceilings = Some(measure_ceilings(url, databases.kind, args).await);
        }
        let conversations = || conversations.as_ref().expect("set up for its scenarios");
        let history = |h: &Option<(String, Arc<Vec<String>>)>| {
            let (customer, page_tokens) = h.clone().expect("seeded for its scenario");
            Call::Conversations(ConversationsCall::History {
                customer,
                page_tokens,
                page_size: HISTORY_PAGE as i32,
            })
        };
        let call = match scenario.rpc() {
            Rpc::Echo => Call::Echo,
            Rpc::Get => Call::Profiles(ProfilesCall::Get(set.clone())),
            Rpc::Lookup => Call::Profiles(ProfilesCall::Lookup(set.clone())),
            Rpc::Search => Call::Profiles(ProfilesCall::Search(set.clone())),
            Rpc::Create => Call::Profiles(ProfilesCall::Create {
                run: run_tag,
                stream: n as u8,
            }),
            Rpc::ReceiveNew => Call::Conversations(ConversationsCall::ReceiveNew {
                inbox: conversations().inbox.clone(),
                run: run_tag,
                stream: n as u8,
            }),
            Rpc::ReceiveKnown => Call::Conversations(ConversationsCall::ReceiveKnown {
                inbox: conversations().inbox.clone(),
                senders: conversations().known.clone(),
                run: run_tag,
                stream: n as u8,
            }),
            Rpc::HistorySmall => history(&conversations().small),
            Rpc::History => history(&conversations().long),
            Rpc::Metrics | Rpc::MetricsYear => {
                Call::Conversations(ConversationsCall::Metrics(metrics_request(
                    scenario.rpc(),
                    conversations()
                        .metrics_year
                        .expect("seeded for its scenario"),
                )))
            }
        };
        let ceiling = match scenario.rpc() {
            Rpc::Echo if !scenario.via_gateway() => None,
            rpc if rpc.writes() => Some(create_ceiling(
                databases.kind,
                ceilings.as_deref().unwrap_or_default(),
            )),
            Rpc::History => Some(Scenario::HistorySmall.name()),
            _ => Some("echo".to_owned()),
        };
        let stats = run_scenario(*scenario, call, args, env, &servers, &direct).await?;
        rows.push(ScenarioReport {
            scenario: scenario.name(),
            path: if scenario.via_gateway() {
                "via-gateway"
            } else {
                "direct"
            }
            .to_owned(),
            ceiling,
            direct: scenario.direct().map(Scenario::name),
            baseline: scenario.baseline().map(Scenario::name),
            stats,
        });
    }

    Ok(BenchReport {
        run: RunInfo {
            rapport_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_unix,
            database: if needs.profiles || needs.gateway {
                databases.kind.name()
            } else {
                "no database"
            }
            .to_owned(),
            customers,
            customers_source: customers_source.to_owned(),
            sample: set.len(),
            warmup_secs: args.warmup.as_secs_f64(),
            duration_secs: args.duration.as_secs_f64(),
            concurrency: args.concurrency,
            connections: args.connections,
            rate: args.rate,
            client_threads: args.client_threads,
            payload_bytes: workload::customer_encoded_len(),
            pinning: pinning.label.clone(),
            cpus: pinning.cpus,
            clock_ticks_per_second: rapport_bench::procfs::clock_ticks_per_second(),
        },
        scenarios: rows,
        ceilings: ceilings.unwrap_or_default(),
    })
}

/// What a scenario calls.
enum Call {
    Echo,
    Profiles(ProfilesCall),
    Conversations(ConversationsCall),
}

/// Runs one scenario.
async fn run_scenario(
    scenario: Scenario,
    call: Call,
    args: &BenchArgs,
    env: &Environment,
    servers: &Servers,
    direct: &Credentials,
) -> anyhow::Result<RunStats> {
    let name = scenario.name();
    let rpc = scenario.rpc();
    let service = match rpc {
        Rpc::Echo => &servers.echo,
        rpc if rpc.conversations() => &servers.conversations,
        _ => &servers.profiles,
    }
    .as_ref()
    .expect("the scenario's server was started");
    // The servers on the call's path, each with its own CPU and memory.
    let mut watched = Vec::new();
    let (uri, credentials) = match (&servers.gateway, scenario.via_gateway()) {
        (Some((gateway, key)), true) => {
            watched.push(env.servers[gateway.index].watched());
            (gateway.uri.clone(), key.clone())
        }
        _ if scenario.rpc() == Rpc::Echo => (service.uri.clone(), Credentials::None),
        _ => (service.uri.clone(), direct.clone()),
    };
    watched.push(env.servers[service.index].watched());
    // Conversations resolves every sender with profiles.
    if rpc.conversations()
        && let Some(profiles) = &servers.profiles
    {
        watched.push(env.servers[profiles.index].watched());
    }
    if scenario.rpc() != Rpc::Echo
        && let Some(postgres) = env.postgres_backends().await
    {
        watched.push(postgres);
    }

    tracing::info!(scenario = %name, "running");
    let load = LoadConfig {
        duration: args.duration,
        warmup: args.warmup,
        concurrency: args.concurrency,
        connections: args.connections,
        rate: args.rate,
        call_timeout: CALL_TIMEOUT,
    };
    let (threads, target) = (args.client_threads, Target { uri });
    let stats = match call {
        Call::Echo => {
            let echo = Echo::new(workload::customer_encoded_len(), credentials);
            run_isolated(threads, target, echo, load, watched).await
        }
        Call::Profiles(call) => {
            let profiles = Profiles { call, credentials };
            run_isolated(threads, target, profiles, load, watched).await
        }
        Call::Conversations(call) => {
            let conversations = Conversations { call, credentials };
            run_isolated(threads, target, conversations, load, watched).await
        }
    }
    .with_context(|| format!("scenario {name}"))?;
    tracing::info!(
        scenario = %name,
        req_per_sec = format!("{:.0}", stats.requests_per_sec),
        p99_us = format!("{:.0}", stats.latency_us.p99),
        errors = stats.errors.values().sum::<u64>(),
        "done"
    );
    if let Some(other) = stats.other_cpu_percent.filter(|o| *o > 10.0) {
        tracing::warn!(
            scenario = %name,
            other_cpu_percent = format!("{other:.0}"),
            "processes outside the run used CPU during its window (PostgreSQL's background \
             writers count here too): the numbers may be disturbed"
        );
    }
    Ok(stats)
}

impl Environment {
    /// The run's databases: fresh ones (a SQLite file in the run's directory,
    /// or new PostgreSQL databases), or with --seeded the configured profiles
    /// database as it is.
    async fn databases(
        &mut self,
        config: &RapportConfig,
        args: &BenchArgs,
        needs: Needs,
    ) -> anyhow::Result<Databases> {
        let seeded = args.seeded.map(|_| config.profiles.database.url.clone());
        let kind = match &seeded {
            Some(url) if url.starts_with("sqlite:") => DatabaseKind::Sqlite,
            Some(_) => DatabaseKind::Postgres,
            None => args.database,
        };
        if kind == DatabaseKind::Postgres && (needs.profiles || needs.gateway) {
            self.connect_postgres(&args.postgres_url).await?;
        }
        let profiles = match (needs.profiles, seeded, kind) {
            (false, _, _) => None,
            (true, Some(url), _) => {
                check_seeded(&url, config, args.seeded.unwrap_or_default()).await?;
                if let Some(pg) = &mut self.postgres {
                    pg.watched.push(database_name(&url)?);
                }
                Some(url)
            }
            (true, None, kind) => Some(self.fresh_database(kind, args, "profiles").await?),
        };
        let mut fresh = async |needed: bool, what: &str| match needed {
            true => self.fresh_database(kind, args, what).await.map(Some),
            false => Ok(None),
        };
        let conversations = fresh(needs.conversations, "conversations").await?;
        let gateway = fresh(needs.gateway, "gateway").await?;
        Ok(Databases {
            kind,
            profiles,
            conversations,
            gateway,
        })
    }

    /// A new database of the run for `what`: a SQLite file in the run's
    /// directory, or a PostgreSQL database dropped at the end.
    async fn fresh_database(
        &mut self,
        kind: DatabaseKind,
        args: &BenchArgs,
        what: &str,
    ) -> anyhow::Result<String> {
        match kind {
            DatabaseKind::Sqlite => Ok(format!(
                "sqlite://{}",
                self.dir.path().join(format!("{what}.db")).display()
            )),
            DatabaseKind::Postgres => {
                self.create_postgres_database(&args.postgres_url, what)
                    .await
            }
        }
    }

    /// Connects to the PostgreSQL server of `admin_url` for creating and
    /// dropping the run's databases, unless connected already.
    async fn connect_postgres(&mut self, admin_url: &str) -> anyhow::Result<()> {
        if self.postgres.is_some() {
            return Ok(());
        }
        let options = DbOptions {
            max_connections: 1,
            acquire_timeout_ms: 5_000,
            ..DbOptions::default()
        };
        let admin = Db::connect(admin_url, &options).await.with_context(|| {
            format!(
                "connecting to --postgres-url {}",
                rapport_store::db::redact_url(admin_url)
            )
        })?;
        self.postgres = Some(Postgres {
            admin,
            created: Vec::new(),
            watched: Vec::new(),
        });
        Ok(())
    }

    /// Drops a database [`Self::create_postgres_database`] made, now rather
    /// than at the end of the run.
    async fn drop_postgres_database(&mut self, name: &str) {
        let Some(pg) = self.postgres.as_mut() else {
            return;
        };
        let dropped = pg
            .admin
            .writer
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
        match dropped {
            Ok(_) => {
                pg.created.retain(|d| d != name);
                pg.watched.retain(|d| d != name);
            }
            // Left in `created`: the teardown tries again.
            Err(e) => {
                tracing::warn!(database = %name, error = %e, "could not drop the bench database")
            }
        }
    }

    /// Creates `rapport_bench_<random>_<what>` next to the admin database and
    /// returns its URL.
    async fn create_postgres_database(
        &mut self,
        admin_url: &str,
        what: &str,
    ) -> anyhow::Result<String> {
        let pg = self
            .postgres
            .as_mut()
            .expect("connected for a PostgreSQL run");
        let name = format!("rapport_bench_{:016x}_{what}", rand::random::<u64>());
        pg.admin
            .writer
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        pg.created.push(name.clone());
        pg.watched.push(name.clone());
        with_database(admin_url, &name)
    }

    /// Starts the servers the scenarios need, each as a child process
    /// printing its address: echo, profiles, then the gateway in front of
    /// them (with an API key issued into its database first).
    async fn start_servers(
        &mut self,
        args: &BenchArgs,
        pinning: &Pinning,
        needs: Needs,
        databases: &Databases,
        secrets: &Secrets,
    ) -> anyhow::Result<Servers> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let dir = self.dir.path().to_owned();
        // The servers' own log filter: RUST_LOG wins over their configuration.
        let vars = |pairs: &[(&str, &str)]| {
            let mut vars = vec![("RUST_LOG".to_owned(), args.server_log.clone())];
            vars.extend(
                pairs
                    .iter()
                    .map(|(k, v)| (format!("RAPPORT_{k}"), (*v).to_owned())),
            );
            vars
        };
        let mut servers = Servers {
            echo: None,
            profiles: None,
            conversations: None,
            gateway: None,
        };
        if needs.echo {
            let args = ["bench", "serve-echo", "--stop-on-stdin-eof"];
            let server = Server::spawn("echo", &exe, &args, &vars(&[]), pinning, &dir).await?;
            servers.echo = Some(self.adopt(server));
        }
        let public_key = secrets.assertion_public_key();
        if let Some(url) = &databases.profiles {
            // Conversations' own key beside the run's (the gateway's).
            let trusted = match &databases.conversations {
                Some(_) => format!(
                    "{public_key},{}",
                    public_key_of(&secrets.conversations_service_key)
                ),
                None => public_key.clone(),
            };
            let vars = vars(&[
                ("PROFILES__SERVER__LISTEN", "127.0.0.1:0"),
                ("PROFILES__SERVER__DRAIN_GRACE_MS", "2000"),
                ("PROFILES__DATABASE__URL", url),
                ("PROFILES__DATABASE__MIGRATE", "true"),
                ("PROFILES__PAGE_TOKEN_SECRET", &secrets.profiles_page_token),
                ("PROFILES__ASSERTION_PUBLIC_KEYS", &trusted),
            ]);
            let args = ["bench", "serve-profiles", "--stop-on-stdin-eof"];
            let server = Server::spawn("profiles", &exe, &args, &vars, pinning, &dir).await?;
            servers.profiles = Some(self.adopt(server));
        }
        if let (Some(url), Some(profiles)) = (&databases.conversations, &servers.profiles) {
            let vars = vars(&[
                ("CONVERSATIONS__SERVER__LISTEN", "127.0.0.1:0"),
                ("CONVERSATIONS__SERVER__DRAIN_GRACE_MS", "2000"),
                ("CONVERSATIONS__DATABASE__URL", url),
                ("CONVERSATIONS__DATABASE__MIGRATE", "true"),
                (
                    "CONVERSATIONS__PAGE_TOKEN_SECRET",
                    &secrets.conversations_page_token,
                ),
                ("CONVERSATIONS__ASSERTION_PUBLIC_KEYS", &public_key),
                (
                    "CONVERSATIONS__SERVICE_KEY",
                    &secrets.conversations_service_key,
                ),
                ("CONVERSATIONS__PROFILES__ENDPOINT", &profiles.uri),
            ]);
            let args = ["bench", "serve-conversations", "--stop-on-stdin-eof"];
            let server = Server::spawn("conversations", &exe, &args, &vars, pinning, &dir).await?;
            servers.conversations = Some(self.adopt(server));
        }
        if let Some(url) = &databases.gateway {
            let key = issue_api_key(url).await?;
            // Backends go in a file: their keys (gRPC service names) hold
            // dots, which environment variable names cannot.
            let mut backends = String::new();
            for (service, server) in [
                (rapport_profiles::SERVICE_NAME, &servers.profiles),
                (rapport_conversations::SERVICE_NAME, &servers.conversations),
                ("rapport.bench.v1.EchoService", &servers.echo),
            ] {
                if let Some(started) = server {
                    backends.push_str(&format!(
                        "[gateway.backends.\"{service}\"]\nendpoints = [\"{}\"]\n\n",
                        started.uri
                    ));
                }
            }
            let file = dir.join("gateway.toml");
            std::fs::write(&file, backends).context("writing the gateway configuration")?;
            let file = file.to_string_lossy().into_owned();
            let vars = vars(&[
                ("GATEWAY__SERVER__LISTEN", "127.0.0.1:0"),
                ("GATEWAY__SERVER__DRAIN_GRACE_MS", "2000"),
                ("GATEWAY__DATABASE__URL", url),
                ("GATEWAY__DATABASE__MIGRATE", "true"),
                ("GATEWAY__PAGE_TOKEN_SECRET", &secrets.gateway_page_token),
                ("GATEWAY__ASSERTION_KEY", &secrets.assertion_key),
                // One tenant is the whole load: its bucket and its share of
                // the slots must not be what the bench measures.
                ("GATEWAY__TENANT_LIMITS__PER_SECOND", "1000000000"),
                ("GATEWAY__TENANT_LIMITS__CONCURRENCY_SHARE", "1"),
            ]);
            let args = [
                "--config",
                &file,
                "bench",
                "serve-gateway",
                "--stop-on-stdin-eof",
            ];
            let server = Server::spawn("gateway", &exe, &args, &vars, pinning, &dir).await?;
            servers.gateway = Some((self.adopt(server), Credentials::api_key(&key)?));
        }
        Ok(servers)
    }

    fn adopt(&mut self, server: Server) -> Started {
        let started = Started {
            uri: format!("http://{}", server.addr),
            index: self.servers.len(),
        };
        self.servers.push(server);
        started
    }

    /// The PostgreSQL server processes serving the run's databases (one per
    /// connection), when the run is on PostgreSQL.
    async fn postgres_backends(&self) -> Option<Watched> {
        self.postgres_backends_of(&self.postgres.as_ref()?.watched)
            .await
    }

    /// The PostgreSQL server processes serving `databases` (one per
    /// connection), when the run is on PostgreSQL.
    async fn postgres_backends_of(&self, databases: &[String]) -> Option<Watched> {
        let pg = self.postgres.as_ref()?;
        if databases.is_empty() {
            return None;
        }
        let list = databases
            .iter()
            .map(|d| format!("'{}'", d.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = pg
            .admin
            .reader
            .query_all_raw(sea_orm::Statement::from_string(
                pg.admin.reader.get_database_backend(),
                format!("SELECT pid FROM pg_stat_activity WHERE datname IN ({list})"),
            ))
            .await
            .ok()?;
        let pids: Vec<u32> = rows
            .iter()
            .filter_map(|r| r.try_get_by_index::<i32>(0).ok())
            .filter_map(|p| u32::try_from(p).ok())
            .collect();
        (!pids.is_empty()).then(|| Watched {
            role: "postgres".to_owned(),
            pids,
        })
    }

    /// Stops the servers (in reverse order of start: the gateway first).
    async fn stop_servers(&mut self) {
        for server in self.servers.drain(..).rev() {
            server.stop().await;
        }
    }

    async fn teardown(mut self) {
        self.stop_servers().await;
        if let Some(pg) = self.postgres.take() {
            for database in &pg.created {
                // FORCE: a pool connection may linger a moment after its
                // server exited.
                let dropped = pg
                    .admin
                    .writer
                    .execute_unprepared(&format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    ))
                    .await;
                if let Err(e) = dropped {
                    tracing::warn!(%database, error = %e, "could not drop the bench database");
                }
            }
            pg.admin.close().await;
        }
    }
}

/// The ceiling `profiles.create` is read against: the storage's single-row
/// insert rate when it was measured (pgbench on PostgreSQL), else echo.
fn create_ceiling(database: DatabaseKind, ceilings: &[Ceiling]) -> String {
    let preferred = match database {
        DatabaseKind::Sqlite => "sqlite.raw_insert",
        DatabaseKind::Postgres => "postgres.pgbench_insert",
    };
    if ceilings.iter().any(|c| c.name == preferred) {
        preferred.to_owned()
    } else {
        "echo".to_owned()
    }
}

/// The storage write ceilings on the profiles database: raw single-row
/// inserts through the service's own connection settings, and pgbench on
/// PostgreSQL. A ceiling that fails is reported and skipped.
async fn measure_ceilings(url: &str, database: DatabaseKind, args: &BenchArgs) -> Vec<Ceiling> {
    let concurrency = args.ceiling_concurrency.unwrap_or(args.concurrency).max(1);
    let mut ceilings = Vec::new();
    tracing::info!(concurrency, "measuring the storage write ceilings");
    let raw = async {
        let db = Db::connect(url, &DbOptions::default()).await?;
        let report = ceiling::raw_insert_ceiling(&db, args.duration, concurrency).await;
        db.close().await;
        report
    }
    .await;
    match raw {
        Ok(r) => ceilings.push(r.to_ceiling(
            "single-row INSERT into customers, one per transaction, service's pool and pragmas",
        )),
        Err(e) => tracing::warn!(error = format!("{e:#}"), "raw insert ceiling failed"),
    }
    if database == DatabaseKind::Postgres {
        let url = url.to_owned();
        let secs = args.duration.as_secs().max(1) as u32;
        let clients = concurrency as u32;
        let scripts = [
            (PgbenchScript::OneRow, "pgbench, one-row INSERT script"),
            (
                PgbenchScript::CreateShape,
                "pgbench, a create's statements into plain tables, prepared",
            ),
        ];
        for (script, how) in scripts {
            let url = url.clone();
            let pgbench = tokio::task::spawn_blocking(move || {
                ceiling::pgbench_ceiling(&url, script, secs, clients)
            })
            .await
            .context("pgbench task")
            .and_then(|r| r);
            match pgbench {
                Ok(r) => ceilings.push(r.to_ceiling(how)),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "pgbench ceiling failed"),
            }
        }
    }
    ceilings
}

/// The inbox, the known senders and the histories of the conversations
/// scenarios: the inbox and the senders through the API, the histories
/// through conversations' own storage code (the API would take far longer
/// than the scenarios).
async fn prepare_conversations(
    started: &Started,
    direct: &Credentials,
    args: &BenchArgs,
    scenarios: &[Scenario],
    databases: &Databases,
    secrets: &Secrets,
) -> anyhow::Result<ConversationsSetup> {
    let runs = |rpc: Rpc| scenarios.iter().any(|s| s.rpc() == rpc);
    let channel = rapport_bench::engine::connect_one(&started.uri, CALL_TIMEOUT).await?;
    let inbox =
        workload::create_email_inbox(channel.clone(), direct, "support@bench.example.com").await?;
    let known: Vec<String> = match runs(Rpc::ReceiveKnown) {
        true => (0..KNOWN_SENDERS)
            .map(|k| format!("known-{k}@example.com"))
            .collect(),
        false => Vec::new(),
    };
    let known = Arc::new(known);
    if !known.is_empty() {
        tracing::info!(senders = known.len(), "introducing the known senders");
        workload::introduce_senders(channel, direct, &inbox, known.clone(), SETUP_PARALLEL).await?;
    }
    let url = databases
        .conversations
        .as_deref()
        .expect("conversations has a database");
    let inbox_id: uuid::Uuid = inbox
        .strip_prefix("inboxes/")
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("CreateInbox named its inbox {inbox:?}"))?;
    let secret = &secrets.conversations_page_token;
    let small = match runs(Rpc::HistorySmall) {
        true => Some(seed_history(url, secret, inbox_id, SMALL_HISTORY).await?),
        false => None,
    };
    let long = match runs(Rpc::History) {
        true => Some(seed_history(url, secret, inbox_id, args.history_messages).await?),
        false => None,
    };
    let metrics_year = match runs(Rpc::Metrics) || runs(Rpc::MetricsYear) {
        true => Some(seed_metrics(url, inbox_id, args.metrics_conversations).await?),
        false => None,
    };
    Ok(ConversationsSetup {
        inbox,
        known,
        small,
        long,
        metrics_year,
    })
}

/// The year the metric facts cover: 2025, so "now" is never inside it.
fn metrics_year_start() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_735_689_600, 0).expect("2025-01-01")
}

/// Writes the metric facts of `conversations` conversations over a year
/// on `inbox` (`rapport_conversations::seed`); the year's start.
async fn seed_metrics(
    url: &str,
    inbox: uuid::Uuid,
    conversations: u64,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    use rapport_conversations::seed;
    let plan = seed::MetricsPlan {
        tenant: TENANT.to_owned(),
        inbox,
        conversations,
        agents: 200,
        start: metrics_year_start(),
    };
    tracing::info!(conversations, "writing a year of metric facts");
    let db = Db::connect(url, &DbOptions::default()).await?;
    let seeded = seed::seed_metric_facts(&db, &plan).await;
    db.close().await;
    let seeded = seeded?;
    tracing::info!(
        conversations,
        facts = seeded.facts,
        secs = format!("{:.1}", seeded.elapsed_secs),
        "metric facts written"
    );
    Ok(plan.start)
}

/// The query of a metrics scenario: July of the seeded year by agent, or
/// the whole year.
fn metrics_request(
    rpc: Rpc,
    year: chrono::DateTime<chrono::Utc>,
) -> rapport_proto::conversations::QueryInteractionMetricsRequest {
    use rapport_proto::conversations::{MetricsGroupBy, MetricsPeriod};
    let (period, group_by) = match rpc {
        Rpc::MetricsYear => (MetricsPeriod::Year, MetricsGroupBy::None),
        _ => (MetricsPeriod::Month, MetricsGroupBy::Agent),
    };
    rapport_proto::conversations::QueryInteractionMetricsRequest {
        period: period as i32,
        time: Some(prost_types::Timestamp {
            seconds: year.timestamp() + 195 * 86_400,
            nanos: 0,
        }),
        // Not UTC: the period's edges fall inside UTC days, so the query
        // reads facts besides rollups, as most tenants' reports do.
        time_zone: "Europe/Berlin".to_owned(),
        group_by: group_by as i32,
        ..Default::default()
    }
}

/// Writes a history of `messages` of a new customer on `inbox`
/// (`rapport_conversations::seed`) and returns the customer and the page
/// tokens of pages spread over it, sealed with the run's `secret`.
async fn seed_history(
    url: &str,
    secret: &str,
    inbox: uuid::Uuid,
    messages: u64,
) -> anyhow::Result<(String, Arc<Vec<String>>)> {
    use rapport_conversations::seed;
    let customer = uuid::Uuid::now_v7();
    let plan = seed::HistoryPlan {
        tenant: TENANT.to_owned(),
        inbox,
        customer,
        messages,
        // Short transactions: each message of one takes the mark row again.
        per_conversation: 250,
        cursors: 4000,
        page: HISTORY_PAGE,
    };
    tracing::info!(messages, "writing a customer's history");
    let db = Db::connect(url, &DbOptions::default()).await?;
    let seeded = seed::seed_history(&db, &plan).await;
    // As after any bulk load: steady-state plans.
    let refreshed = match &seeded {
        Ok(_) => db.refresh_statistics().await,
        Err(_) => Ok(()),
    };
    db.close().await;
    let seeded = seeded?;
    refreshed?;
    tracing::info!(
        messages,
        conversations = seeded.conversations,
        secs = format!("{:.1}", seeded.elapsed_secs),
        "history written"
    );
    let tokens = seeded
        .cursors
        .iter()
        .map(|c| seed::history_page_token(secret, TENANT, customer, *c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        !tokens.is_empty(),
        "a history of {messages} messages has no full page of {HISTORY_PAGE} to read"
    );
    Ok((format!("customers/{customer}"), Arc::new(tokens)))
}

/// Checks that the profiles database at `url` holds at least `n` customers
/// written by `rapport seed` (tenant `bench`).
async fn check_seeded(url: &str, config: &RapportConfig, n: u64) -> anyhow::Result<()> {
    let shown = rapport_store::db::redact_url(url);
    let db = Db::connect(url, &config.profiles.database.pool)
        .await
        .with_context(|| format!("connecting to {shown}"))?;
    let present = rapport_profiles::seed::seeded_count(&db, TENANT).await;
    db.close().await;
    let present = present?;
    if present < n {
        bail!(
            "--seeded {n}: the profiles database ({shown}) holds {present} seeded customers of \
             tenant {TENANT}; run `rapport seed --customers {n}` against it first"
        );
    }
    Ok(())
}

/// Finds the ids of `sample` random customers of the `n` that `rapport seed`
/// wrote, by looking up their emails.
async fn sample_seeded(
    channel: rapport_bench::Channel,
    credentials: &Credentials,
    n: u64,
    sample: u64,
) -> anyhow::Result<CustomerSet> {
    tracing::info!(sample, of = n, "sampling seeded customers");
    let emails = (0..sample.min(n))
        .map(|_| rapport_profiles::seed::seed_email(rand::random_range(0..n)))
        .collect();
    workload::lookup_customers(channel, credentials, emails, SETUP_PARALLEL).await
}

/// Issues the run's API key straight into the gateway's database, before the
/// gateway starts: tenant `bench`, the scopes of every scenario, and a rate
/// limit far above what one machine can send, so the limiter never caps the
/// bench (its check still runs on every call).
async fn issue_api_key(gateway_url: &str) -> anyhow::Result<String> {
    let config = rapport_gateway::Config {
        database: rapport_store::DatabaseConfig {
            url: gateway_url.to_owned(),
            migrate: true,
            pool: DbOptions::default(),
        },
        ..rapport_gateway::Config::default()
    };
    let store = rapport_gateway::open_store(&config).await?;
    let issued = rapport_gateway::auth::api_keys::ApiKeys::new(store.clone())
        .issue(
            rapport_gateway::auth::api_keys::NewKey {
                display_name: "rapport bench".to_owned(),
                tenant: TENANT.to_owned(),
                scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
                expire_time: None,
                rate_limit: 1_000_000_000,
            },
            chrono::Utc::now(),
            None,
        )
        .await?;
    store.db().clone().close().await;
    Ok(issued.secret)
}

/// `url` with its database (path) replaced by `database`, keeping the query.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    rapport_store::with_database(url, database).context("--postgres-url is not a URL")
}

/// The database (path) of a PostgreSQL URL.
fn database_name(url: &str) -> anyhow::Result<String> {
    let rest = &url[url.find("://").context("the database URL is not a URL")? + 3..];
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    let name = path.split('?').next().unwrap_or_default();
    anyhow::ensure!(!name.is_empty(), "the database URL names no database");
    Ok(name.to_owned())
}

/// How the processes are pinned to CPUs.
struct Pinning {
    /// CPUs of the machine (counted before pinning narrowed this process).
    cpus: usize,
    /// `taskset -c` list for the servers; `None` when not pinned.
    servers: Option<String>,
    label: String,
}

impl Pinning {
    /// With `pin`, pins this process (every thread: the load generator) to
    /// the first CPU it may use and reserves the others for the servers.
    fn apply(pin: bool, n: usize) -> anyhow::Result<Self> {
        if !pin {
            return Ok(Self {
                cpus: n,
                servers: None,
                label: "not pinned (the OS schedules every process on any CPU)".to_owned(),
            });
        }
        // The CPUs this process may use (a container's cpuset may not start
        // at 0), from /proc/self/status.
        let allowed = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(cpu_list)
            })
            .unwrap_or_else(|| (0..n).collect());
        let [client, servers @ ..] = allowed.as_slice() else {
            bail!("--pin: no CPU is allowed to this process");
        };
        if servers.is_empty() {
            bail!("--pin needs at least 2 CPUs; this process may use 1");
        }
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &client.to_string()])
            .arg(std::process::id().to_string())
            .stdout(Stdio::null())
            .status()
            .context("--pin needs taskset (util-linux)")?;
        if !status.success() {
            bail!("taskset could not pin the load generator ({status})");
        }
        let servers = servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Ok(Self {
            cpus: n,
            label: format!(
                "pinned with taskset: load generator on CPU {client}, servers on CPU {servers} \
                 (PostgreSQL's own processes are not pinned)"
            ),
            servers: Some(servers),
        })
    }
}

/// CPUs of a list such as `0-3,8,10-11`.
fn cpu_list(list: &str) -> Vec<usize> {
    list.trim()
        .split(',')
        .filter_map(|part| match part.split_once('-') {
            Some((a, b)) => Some((a.trim().parse().ok()?..=b.trim().parse().ok()?).collect()),
            None => Some(vec![part.trim().parse().ok()?]),
        })
        .flatten()
        .collect()
}

/// A server child process; killed if dropped before [`Server::stop`].
struct Server {
    role: &'static str,
    child: std::process::Child,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Spawns `exe args` (under `taskset` when pinning), with `vars` set,
    /// stderr to `<dir>/<role>.log`, and waits for its `listening ADDR`.
    async fn spawn(
        role: &'static str,
        exe: &Path,
        args: &[&str],
        vars: &[(String, String)],
        pinning: &Pinning,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{role}.log"));
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = match &pinning.servers {
            Some(cpus) => {
                // taskset execs the server: same pid.
                let mut c = std::process::Command::new("taskset");
                c.args(["-c", cpus]).arg(exe);
                c
            }
            None => std::process::Command::new(exe),
        };
        command
            .args(args)
            // Only what the harness sets: not a configuration file of the caller's.
            .env_remove("RAPPORT_CONFIG")
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting the {role} server"))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("stdout is piped")?;
        // A plain thread reads stdout: the first `listening` line is the
        // answer; the rest is drained so the server never blocks on a full pipe.
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let mut server = Self {
            role,
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let announced = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(addr)) => addr
                .parse::<SocketAddr>()
                .with_context(|| format!("the {role} server announced {addr:?}")),
            Ok(Err(_)) => Err(anyhow::anyhow!("the {role} server exited before listening")),
            Err(_) => Err(anyhow::anyhow!(
                "the {role} server is not listening after {START_TIMEOUT:?}"
            )),
        };
        // On error, dropping `server` kills the child.
        server.addr =
            announced.map_err(|e| e.context(format!("{role} log:\n{}", tail(&server.log, 30))))?;
        tracing::info!(role, addr = %server.addr, pid, "server listening");
        Ok(server)
    }

    fn watched(&self) -> Watched {
        Watched {
            role: self.role.to_owned(),
            pids: vec![self.pid],
        }
    }

    /// SIGTERM and stdin closed: the server drains and exits; killed if it
    /// has not within 15 s. Shows its log when it wrote anything.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        tracing::warn!(role = self.role, %status, "server exited badly");
                    }
                    break;
                }
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    tracing::warn!(role = self.role, "server did not stop; killing it");
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        let log = tail(&self.log, 20);
        if !log.trim().is_empty() {
            eprintln!("--- {} server log (last lines) ---\n{log}", self.role);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Stopped servers have exited and this is a no-op; on an error path
        // it makes sure no server outlives the harness.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs one of the harness's server processes.
async fn serve(config: &RapportConfig, command: ServeCommand) -> anyhow::Result<()> {
    match command {
        ServeCommand::Echo {
            listen,
            stop_on_stdin_eof,
        } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            announce(listener.local_addr()?)?;
            rapport_bench::echo::serve(listener, stop_signal(stop_on_stdin_eof))
                .await
                .context("serving echo")
        }
        ServeCommand::Profiles { stop_on_stdin_eof } => {
            let stop = stop_signal(stop_on_stdin_eof);
            crate::services::serve_until(config, Service::profiles, stop, announce).await
        }
        ServeCommand::Conversations { stop_on_stdin_eof } => {
            let stop = stop_signal(stop_on_stdin_eof);
            crate::services::serve_until(config, Service::conversations, stop, announce).await
        }
        ServeCommand::Gateway { stop_on_stdin_eof } => {
            let stop = stop_signal(stop_on_stdin_eof);
            crate::services::serve_until(config, Service::gateway, stop, announce).await
        }
    }
}

/// Tells the harness the bound address: its one line on stdout.
fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {addr}")?;
    out.flush()?;
    Ok(())
}

/// SIGTERM or SIGINT; with `stdin_eof`, also the end of stdin.
async fn stop_signal(stdin_eof: bool) {
    if !stdin_eof {
        return rapport_kit::server::shutdown_signal().await;
    }
    // A plain thread: Tokio's stdin would hold the runtime open at exit.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    tokio::select! {
        () = rapport_kit::server::shutdown_signal() => {}
        _ = rx => {}
    }
}

/// `500ms`, `10s`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms, 10s or 2m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{s:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3h").is_err());
    }

    #[test]
    fn scenarios_parse_by_name_and_run_in_canonical_order() {
        let cli = Cli::parse_from([
            "bench",
            "--scenario",
            "profiles.create",
            "--scenario",
            "echo",
            "--scenario",
            "profiles.get-via-gateway",
        ]);
        assert_eq!(
            cli.bench.scenarios,
            vec![
                Selected::Rpc(Scenario::Create),
                Selected::Rpc(Scenario::Echo),
                Selected::Rpc(Scenario::GetViaGateway)
            ]
        );
        assert_eq!(Scenario::GetViaGateway.name(), "profiles.get-via-gateway");
        assert_eq!(Scenario::GetViaGateway.direct(), Some(Scenario::Get));
        assert_eq!(Scenario::Get.direct(), None);
        assert!(
            Scenario::ALL
                .iter()
                .all(|s| s.via_gateway() == s.direct().is_some())
        );
    }

    #[test]
    fn event_scenarios_parse_and_run_after_the_rpc_ones() {
        let cli = Cli::parse_from([
            "bench",
            "--scenario",
            "events.lag",
            "--scenario",
            "nats.publish_consume",
            "--scenario",
            "echo",
            "--event-rates",
            "50,2000",
            "--nats-url",
            "nats://127.0.0.1:4333",
        ]);
        assert_eq!(
            cli.bench.scenarios,
            vec![
                Selected::Events(events::Scenario::Lag),
                Selected::Events(events::Scenario::PublishConsume),
                Selected::Rpc(Scenario::Echo),
            ]
        );
        assert_eq!(
            Selected::ALL
                .iter()
                .filter_map(|s| match s {
                    Selected::Rpc(s) => Some(*s),
                    Selected::Events(_) | Selected::Sla(_) => None,
                })
                .collect::<Vec<_>>(),
            Scenario::ALL,
            "every RPC scenario, in its order, before the event scenarios"
        );
        let last_rpc = Selected::ALL
            .iter()
            .rposition(|s| matches!(s, Selected::Rpc(_)));
        let first_events = Selected::ALL
            .iter()
            .position(|s| matches!(s, Selected::Events(_)));
        assert!(last_rpc < first_events);
        assert!(
            matches!(Selected::ALL.last(), Some(Selected::Sla(_))),
            "the service level scenario runs last"
        );
        assert!(events::check(&cli.bench, vec![events::Scenario::PublishConsume]).is_ok());
    }

    #[test]
    fn the_event_ceiling_needs_nats_only_when_asked_for() {
        // Whatever RAPPORT_BENCH_NATS_URL says where the test runs.
        let without_nats = |args: &[&str]| {
            let mut cli = Cli::parse_from(args);
            cli.bench.event.nats_url = None;
            cli
        };
        let named = without_nats(&["bench", "--scenario", "nats.publish_consume"]);
        assert!(events::check(&named.bench, vec![events::Scenario::PublishConsume]).is_err());
        // By default (every scenario), without NATS it is left out.
        let all = without_nats(&["bench"]);
        let kept = events::check(
            &all.bench,
            vec![
                events::Scenario::PublishConsume,
                events::Scenario::RelayThroughput,
                events::Scenario::Lag,
            ],
        )
        .unwrap();
        assert_eq!(
            kept,
            vec![events::Scenario::RelayThroughput, events::Scenario::Lag]
        );
        let bad = Cli::parse_from(["bench", "--event-rates", "100,0"]);
        assert!(events::check(&bad.bench, vec![events::Scenario::Lag]).is_err());
    }

    #[test]
    fn serve_subcommands_parse() {
        let cli = Cli::parse_from(["bench", "serve-echo", "--stop-on-stdin-eof"]);
        assert!(matches!(
            cli.bench.command,
            Some(ServeCommand::Echo {
                stop_on_stdin_eof: true,
                ..
            })
        ));
        let cli = Cli::parse_from(["bench", "serve-conversations", "--stop-on-stdin-eof"]);
        assert!(matches!(
            cli.bench.command,
            Some(ServeCommand::Conversations {
                stop_on_stdin_eof: true
            })
        ));
    }

    #[test]
    fn conversations_scenarios_run_when_named_after_profiles_create() {
        let cli = Cli::parse_from([
            "bench",
            "--scenario",
            "conversations.history",
            "--scenario",
            "conversations.receive-known-via-gateway",
            "--history-messages",
            "5000",
        ]);
        assert_eq!(cli.bench.history_messages, 5000);
        assert_eq!(
            cli.bench.scenarios,
            vec![
                Selected::Rpc(Scenario::History),
                Selected::Rpc(Scenario::ReceiveKnownViaGateway)
            ]
        );
        assert_eq!(Cli::parse_from(["bench"]).bench.history_messages, 1_000_000);
        // Not by default: two more servers and a million-message history.
        let default: Vec<Scenario> = Scenario::ALL
            .into_iter()
            .filter(|s| s.by_default())
            .collect();
        assert!(default.iter().all(|s| !s.rpc().conversations()));
        assert_eq!(default.len(), 10);
        let needs = Needs::of(&[Scenario::ReceiveNewViaGateway]);
        assert!(needs.profiles && needs.conversations && needs.gateway && !needs.echo);
        let needs = Needs::of(&[Scenario::Create]);
        assert!(!needs.conversations);
        // Receives are writes, read against profiles.create of their path.
        assert_eq!(
            Scenario::ReceiveNewViaGateway.baseline(),
            Some(Scenario::CreateViaGateway)
        );
        assert_eq!(Scenario::ReceiveKnown.baseline(), Some(Scenario::Create));
        assert_eq!(Scenario::History.baseline(), None);
        assert_eq!(
            Scenario::ReceiveKnownViaGateway.direct(),
            Some(Scenario::ReceiveKnown)
        );
        assert!(Rpc::ReceiveNew.writes() && Rpc::ReceiveKnown.writes());
        assert!(!Rpc::History.writes() && !Rpc::HistorySmall.writes());
        let create = Scenario::ALL.iter().position(|s| *s == Scenario::Create);
        let receive = Scenario::ALL
            .iter()
            .position(|s| *s == Scenario::ReceiveNew);
        assert!(create < receive);
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(cpu_list("0-1"), vec![0, 1]);
        assert_eq!(cpu_list("\t2-3,8,10-11\n"), vec![2, 3, 8, 10, 11]);
        assert_eq!(cpu_list("5"), vec![5]);
    }

    #[test]
    fn postgres_database_urls_keep_credentials_and_options() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/rapport?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
    }
}
