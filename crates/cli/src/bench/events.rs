//! The event platform's scenarios of `rapport bench`, run in this process
//! after the RPC scenarios, each on databases made for it:
//!
//! - `nats.publish_consume`, the ceiling: raw async-nats on JetStream, no
//!   code of ours. Messages of an envelope's size with the relay's headers go
//!   to a fresh file-backed stream with their PubAcks pipelined, while a pull
//!   consumer acknowledges them (events/s, a [`Ceiling`]); then one message
//!   per tick at each `--event-rates` rate, latency from publish to consumed
//!   (a scenario row, `nats.publish_consume@<rate>`).
//! - `events.relay_throughput`: an outbox prefilled with `--events` committed
//!   `CustomerCreated` rows, drained to the bus by `relay_once` in a loop
//!   (events/s).
//! - `events.lag`: an open loop committing one outbox row per tick (a real
//!   INSERT in a transaction) and waking a running [`Relay`]; a consumer
//!   applies each event through its inbox (`consume::apply`, an INSERT as
//!   its effect). Latency is from the commit to the effect's commit.
//!
//! Both `events.*` run on the in-process bus, and on JetStream when
//! `--nats-url` is given, and are read against the ceiling: throughput
//! against the first, lag against the open loop at the same rate.
//!
//! JetStream runs publish to the stream of profiles' events,
//! `RAPPORT_PROFILES` (the relay's stream and subjects follow the event
//! type), which the bench makes afresh for every measurement with a
//! description that marks it as its own, and deletes at the end; a
//! `RAPPORT_PROFILES` it did not make is refused, never touched.
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    context::{GetStreamErrorKind, PublishAckFuture},
    message::PublishMessage,
    stream::{self, RetentionPolicy, StorageType},
};
use clap::ValueEnum;
use futures::StreamExt as _;
use prost::{Message as _, Name as _};
use rapport_bench::{
    BenchReport, Meter, RunStats, ScenarioReport, Watched, engine::LoadMode, report::Ceiling,
};
use rapport_events::{
    Bus, ConsumerOptions, EventEnvelope, EventsConfig,
    consume::{self, Handler, HandlerError, Subscription},
    relay::{self, Relay, Wake},
    subjects_of,
};
use rapport_proto::profiles as pb;
use rapport_store::{Db, DbOptions, outbox};
use sea_orm::{ConnectionTrait as _, EntityTrait as _, TransactionTrait as _, sea_query::Query};
use sea_orm_migration::SchemaManager;
use tokio::sync::Semaphore;

use super::{BenchArgs, DatabaseKind, Environment, TENANT};

/// The producing service: its event types (`rapport.profiles.v1.…`) pick
/// the relay's rows, stream (`RAPPORT_PROFILES`) and subjects.
const SERVICE: &str = "profiles";
/// The durable consumer of `events.lag`.
const CONSUMER: &str = "bench";
/// Marks the streams the bench made (the first words of their description).
const SCRATCH: &str = "rapport bench scratch stream";
/// Events relayed, or messages sent, before a throughput measurement.
const WARMUP_EVENTS: usize = 1_000;
/// PubAcks the ceiling has in flight at most (async-nats allows 5,000 per
/// JetStream context).
const PUBLISH_WINDOW: usize = 1_024;
/// Rows per INSERT while prefilling an outbox.
const PREFILL_CHUNK: usize = 500;
/// How long after its window an open loop waits for the window's events.
const DRAIN: Duration = Duration::from_secs(30);
/// How long published outbox rows are kept: longer than any run.
const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The consumer's effect table.
const EFFECTS: &str = "bench_effects";

/// An event platform scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Scenario {
    #[value(name = "nats.publish_consume")]
    PublishConsume,
    #[value(name = "events.relay_throughput")]
    RelayThroughput,
    #[value(name = "events.lag")]
    Lag,
}

/// The flags of the event scenarios.
#[derive(Debug, clap::Args)]
pub(super) struct EventArgs {
    /// NATS server with JetStream for the event scenarios' JetStream half
    /// and their ceiling (`nats://host:port`); unset: in-process bus only.
    #[arg(long, env = "RAPPORT_BENCH_NATS_URL", value_name = "URL")]
    pub(super) nats_url: Option<String>,
    /// Events events.relay_throughput drains from a prefilled outbox, and
    /// messages the nats.publish_consume ceiling sends.
    #[arg(long, default_value_t = 50_000, value_name = "N")]
    pub(super) events: usize,
    /// Rates of events.lag (and of the ceiling's open loop), events per
    /// second, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,1000",
        value_name = "RATES"
    )]
    pub(super) event_rates: Vec<f64>,
}

/// Where the relay publishes and the consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BusKind {
    InProcess,
    JetStream,
}

impl BusKind {
    fn name(self) -> &'static str {
        match self {
            Self::InProcess => "in-process",
            Self::JetStream => "jetstream",
        }
    }
}

/// The event scenarios to run, or why they cannot: checked before anything
/// starts. Without a NATS server the ceiling is left out of a run of every
/// scenario, and refused when named.
pub(super) fn check(args: &BenchArgs, scenarios: Vec<Scenario>) -> anyhow::Result<Vec<Scenario>> {
    let e = &args.event;
    let mut scenarios = scenarios;
    if e.nats_url.is_none() && scenarios.contains(&Scenario::PublishConsume) {
        if !args.scenarios.is_empty() {
            bail!(
                "nats.publish_consume needs a NATS server with JetStream: --nats-url nats://HOST:PORT"
            );
        }
        scenarios.retain(|s| *s != Scenario::PublishConsume);
    }
    let open_loop =
        scenarios.contains(&Scenario::Lag) || scenarios.contains(&Scenario::PublishConsume);
    if open_loop {
        if e.event_rates.is_empty() {
            bail!("--event-rates needs at least one rate, e.g. 100,1000");
        }
        if let Some(r) = e.event_rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
            bail!("--event-rates: {r} is not a positive number of events per second");
        }
    }
    if e.events == 0 && !scenarios.is_empty() {
        bail!("--events must be at least 1");
    }
    Ok(scenarios)
}

/// Runs the event scenarios and adds their rows (and the ceiling) to
/// `report`; returns what else they noticed, to print after the tables.
pub(super) async fn run(
    args: &BenchArgs,
    scenarios: &[Scenario],
    env: &mut Environment,
    report: &mut BenchReport,
) -> anyhow::Result<Vec<String>> {
    report.run.database = args.database.name().to_owned();
    if args.database == DatabaseKind::Postgres {
        env.connect_postgres(&args.postgres_url).await?;
    }
    let nats = match &args.event.nats_url {
        Some(url) => Some(Nats::connect(url).await?),
        None => {
            tracing::info!("no --nats-url: the event scenarios run on the in-process bus only");
            None
        }
    };
    let sample = Sample::new();
    let mut notes = Vec::new();
    notes.push(format!(
        "events: envelope {} B (CustomerCreated, traced request), {} on {}{}",
        sample.payload.len(),
        args.database.name(),
        nats.as_ref().map_or_else(
            || "the in-process bus".to_owned(),
            |n| format!("in-process and JetStream ({})", n.url)
        ),
        nats.as_ref()
            .map_or(String::new(), |n| if n.pids.is_empty() {
                "; the NATS server's process is not readable (another user): no nats CPU column"
                    .to_owned()
            } else {
                String::new()
            }),
    ));
    let result = measure(
        args,
        scenarios,
        env,
        report,
        nats.as_ref(),
        &sample,
        &mut notes,
    )
    .await;
    if let Some(nats) = &nats {
        nats.delete_stream(&rapport_events::stream_name(SERVICE))
            .await;
    }
    result.map(|()| notes)
}

async fn measure(
    args: &BenchArgs,
    scenarios: &[Scenario],
    env: &mut Environment,
    report: &mut BenchReport,
    nats: Option<&Nats>,
    sample: &Sample,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    // A ceiling is measured when named, or when a scenario is read against
    // it (unless --no-ceilings); only on JetStream.
    let named = scenarios.contains(&Scenario::PublishConsume);
    let wanted = |by: Scenario| named || (scenarios.contains(&by) && !args.no_ceilings);
    let flood_ceiling = nats.is_some() && wanted(Scenario::RelayThroughput);
    let open_ceiling = nats.is_some() && wanted(Scenario::Lag);
    let buses: Vec<BusKind> = std::iter::once(BusKind::InProcess)
        .chain(nats.map(|_| BusKind::JetStream))
        .collect();
    let mut rows = Vec::new();

    if flood_ceiling && let Some(nats) = nats {
        tracing::info!(
            messages = args.event.events,
            "measuring nats.publish_consume"
        );
        // Warm-up: connections, the server's file store, the client's buffers.
        flood(nats, WARMUP_EVENTS, sample).await?;
        let (rate, note) = flood(nats, args.event.events, sample).await?;
        tracing::info!(
            events_per_sec = format!("{rate:.0}"),
            "nats.publish_consume"
        );
        report.ceilings.push(Ceiling {
            name: "nats.publish_consume".to_owned(),
            ops_per_sec: rate,
            p99_us: None,
            note,
        });
    }
    let flood_ceiling = flood_ceiling.then(|| "nats.publish_consume".to_owned());

    if scenarios.contains(&Scenario::RelayThroughput) {
        for bus in &buses {
            let name = format!("events.relay_throughput/{}", bus.name());
            tracing::info!(scenario = %name, events = args.event.events, "running");
            let stats = relay_throughput(args, env, nats, *bus)
                .await
                .with_context(|| format!("scenario {name}"))?;
            done(&name, &stats);
            rows.push(row(name, *bus, flood_ceiling.clone(), stats));
        }
    }

    if scenarios.contains(&Scenario::Lag) || scenarios.contains(&Scenario::PublishConsume) {
        for rate in &args.event.event_rates {
            let ceiling_name = format!("nats.publish_consume@{rate}");
            if open_ceiling && let Some(nats) = nats {
                tracing::info!(scenario = %ceiling_name, "running");
                let stats = publish_consume_open(args, nats, *rate, sample)
                    .await
                    .with_context(|| format!("scenario {ceiling_name}"))?;
                done(&ceiling_name, &stats);
                let mut r = row(ceiling_name.clone(), BusKind::JetStream, None, stats);
                r.path = "raw".to_owned();
                rows.push(r);
            }
            if !scenarios.contains(&Scenario::Lag) {
                continue;
            }
            for bus in &buses {
                let name = format!("events.lag/{}@{rate}", bus.name());
                tracing::info!(scenario = %name, "running");
                let stats = lag(args, env, nats, *bus, *rate, &name, notes)
                    .await
                    .with_context(|| format!("scenario {name}"))?;
                done(&name, &stats);
                rows.push(row(
                    name,
                    *bus,
                    open_ceiling.then(|| ceiling_name.clone()),
                    stats,
                ));
            }
        }
    }
    report.scenarios.extend(rows);
    Ok(())
}

fn row(scenario: String, bus: BusKind, ceiling: Option<String>, stats: RunStats) -> ScenarioReport {
    ScenarioReport {
        scenario,
        path: bus.name().to_owned(),
        ceiling,
        direct: None,
        baseline: None,
        stats,
    }
}

fn done(name: &str, stats: &RunStats) {
    tracing::info!(
        scenario = %name,
        events_per_sec = format!("{:.0}", stats.requests_per_sec),
        p50_us = format!("{:.0}", stats.latency_us.p50),
        p99_us = format!("{:.0}", stats.latency_us.p99),
        errors = stats.errors.values().sum::<u64>(),
        "done"
    );
}

/// What every event of the scenarios looks like: a profiles
/// `CustomerCreated` of a traced request, enveloped as profiles does.
#[derive(Clone)]
struct Sample {
    /// One encoded envelope: the ceiling's payload.
    payload: Vec<u8>,
    event_type: String,
}

impl Sample {
    fn new() -> Self {
        let e = customer_created(chrono::Utc::now());
        Self {
            payload: e.encode_to_vec(),
            event_type: e.r#type,
        }
    }

    /// The message the ceiling publishes: the envelope's bytes with the
    /// relay's headers (the message id, tenant and type).
    fn message(&self, id: &str) -> PublishMessage {
        PublishMessage::build()
            .payload(self.payload.clone().into())
            .message_id(id)
            .header("Rapport-Tenant", TENANT)
            .header("Rapport-Event-Type", self.event_type.as_str())
    }
}

/// A new customer's `CustomerCreated` (version 1), as profiles envelopes it
/// for a request with a sampled trace.
fn customer_created(occur_time: chrono::DateTime<chrono::Utc>) -> EventEnvelope {
    let customer = format!("customers/{}", uuid::Uuid::now_v7());
    let trace = (
        format!(
            "00-{:032x}-{:016x}-01",
            rand::random::<u128>(),
            rand::random::<u64>()
        ),
        String::new(),
    );
    let created = [Created { customer }];
    outbox::envelopes(
        encode,
        |_| Some(1),
        TENANT,
        occur_time,
        &trace,
        None,
        &created,
    )
    .expect("one event of version 1 is always sequenced")
    .remove(0)
}

/// The one domain event of the scenarios: a customer was created.
struct Created {
    customer: String,
}

fn encode(event: &Created) -> (String, prost_types::Any) {
    let customer = &event.customer;
    let event = pb::CustomerCreated {
        customer: customer.clone(),
        lifecycle_stage: pb::LifecycleStage::Awareness as i32,
    };
    (
        customer.clone(),
        prost_types::Any {
            type_url: pb::CustomerCreated::type_url(),
            value: event.encode_to_vec(),
        },
    )
}

/// The NATS server of `--nats-url`: a client of its own for the ceiling and
/// the scratch streams, and its process, when readable.
struct Nats {
    url: String,
    js: jetstream::Context,
    pids: Vec<u32>,
}

impl Nats {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("rapport bench")
            .connect(url)
            .await
            .with_context(|| format!("connecting to --nats-url {url}"))?;
        let port = url
            .split(',')
            .next()
            .unwrap_or(url)
            .trim()
            .rsplit_once(':')
            .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
            .unwrap_or(4222);
        Ok(Self {
            url: url.to_owned(),
            js: jetstream::new(client),
            pids: rapport_bench::procfs::tcp_listener_pids(port),
        })
    }

    fn watched(&self) -> Option<Watched> {
        (!self.pids.is_empty()).then(|| Watched {
            role: "nats".to_owned(),
            pids: self.pids.clone(),
        })
    }

    /// Makes `name` a fresh, empty stream on `subjects`, configured as the
    /// bus makes its streams (file storage, one replica, limits retention,
    /// the bus's duplicate window). An existing stream is deleted first if
    /// the bench made it, else refused.
    async fn fresh_stream(&self, name: &str, subjects: &str) -> anyhow::Result<stream::Stream> {
        match self.js.get_stream(name).await {
            Ok(mut existing) => {
                let description = existing
                    .info()
                    .await
                    .map(|i| i.config.description.clone().unwrap_or_default())
                    .unwrap_or_default();
                if !description.starts_with(SCRATCH) {
                    bail!(
                        "the NATS server at --nats-url has a stream {name} the bench did not make \
                         (a service's events?); give the bench a NATS server of its own"
                    );
                }
                self.js
                    .delete_stream(name)
                    .await
                    .with_context(|| format!("deleting the scratch stream {name}"))?;
            }
            Err(e)
                if matches!(e.kind(), GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "looking up stream {name} (is JetStream enabled: nats-server -js?)"
                )));
            }
        }
        self.js
            .create_stream(stream::Config {
                name: name.to_owned(),
                description: Some(format!("{SCRATCH}, deleted when the run ends")),
                subjects: vec![subjects.to_owned()],
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                num_replicas: 1,
                duplicate_window: rapport_events::jetstream::DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating the scratch stream {name}"))
    }

    /// Deletes a stream the bench made; a failure is only logged.
    async fn delete_stream(&self, name: &str) {
        if let Ok(mut s) = self.js.get_stream(name).await {
            let ours = s.info().await.is_ok_and(|i| {
                i.config
                    .description
                    .as_deref()
                    .is_some_and(|d| d.starts_with(SCRATCH))
            });
            if ours && let Err(e) = self.js.delete_stream(name).await {
                tracing::warn!(stream = %name, error = %e, "could not delete the scratch stream");
            }
        }
    }

    /// A fresh `RAPPORT_PROFILES` and a bus on it.
    async fn profiles_bus(&self) -> anyhow::Result<Bus> {
        self.fresh_stream(&rapport_events::stream_name(SERVICE), &subjects_of(SERVICE))
            .await?;
        let config = EventsConfig {
            nats_url: Some(self.url.clone()),
            ..EventsConfig::default()
        };
        Ok(Bus::from_config(&config, &Bus::in_process()).await?)
    }

    /// A fresh stream of the ceiling's own, its subject, and a pull consumer
    /// on it that acknowledges each message explicitly.
    async fn ceiling_stream(&self) -> anyhow::Result<(String, String, PullConsumer)> {
        let tag = format!("{:08x}", rand::random::<u32>());
        let name = format!("RAPPORT_BENCH_{}", tag.to_uppercase());
        let stream = self
            .fresh_stream(&name, &format!("rapport_bench.{tag}.>"))
            .await?;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .context("creating the ceiling's consumer")?;
        Ok((
            name,
            format!("rapport_bench.{tag}.CustomerCreated"),
            consumer,
        ))
    }
}

/// The flood ceiling: `n` messages published with up to
/// [`PUBLISH_WINDOW`] PubAcks in flight to a fresh stream, while a pull
/// consumer acknowledges them. Events/s from the first publish to the last
/// message consumed, and how it was measured.
async fn flood(nats: &Nats, n: usize, sample: &Sample) -> anyhow::Result<(f64, String)> {
    let (stream, subject, consumer) = nats.ceiling_stream().await?;
    let result = flood_on(nats, &subject, consumer, n, sample).await;
    nats.delete_stream(&stream).await;
    result
}

async fn flood_on(
    nats: &Nats,
    subject: &str,
    consumer: PullConsumer,
    n: usize,
    sample: &Sample,
) -> anyhow::Result<(f64, String)> {
    let mut messages = consumer
        .messages()
        .await
        .context("starting the ceiling's consumer")?;
    let mut watched = vec![this_process()];
    watched.extend(nats.watched());
    let mut meter = Meter::new(watched);
    let mut consumed = tokio::spawn(async move {
        for _ in 0..n {
            let m = messages
                .next()
                .await
                .context("the ceiling's consumer stopped")?
                .map_err(|e| anyhow::anyhow!("consuming: {e}"))?;
            m.ack().await.map_err(|e| anyhow::anyhow!("acking: {e}"))?;
        }
        anyhow::Ok(Instant::now())
    });
    meter.start();
    let start = Instant::now();
    let published = async {
        let mut acks: VecDeque<PublishAckFuture> = VecDeque::with_capacity(PUBLISH_WINDOW);
        for _ in 0..n {
            if acks.len() == PUBLISH_WINDOW
                && let Some(ack) = acks.pop_front()
            {
                ack.await.context("PubAck")?;
            }
            let id = uuid::Uuid::now_v7().to_string();
            let ack = nats
                .js
                .send_publish(subject.to_owned(), sample.message(&id))
                .await
                .context("publishing")?;
            acks.push_back(ack);
        }
        while let Some(ack) = acks.pop_front() {
            ack.await.context("PubAck")?;
        }
        anyhow::Ok(start.elapsed())
    }
    .await;
    let published = match published {
        Ok(p) => p,
        Err(e) => {
            consumed.abort();
            return Err(e);
        }
    };
    let last = match tokio::time::timeout(DRAIN, &mut consumed).await {
        Ok(last) => last.context("the ceiling's consumer")??,
        Err(_) => {
            consumed.abort();
            bail!("the ceiling's consumer did not get every message");
        }
    };
    meter.stop();
    meter.completed(n as u64, n as u64);
    let elapsed = last.saturating_duration_since(start).as_secs_f64();
    let rate = n as f64 / elapsed;
    let stats = meter.finish(LoadMode::Closed, PUBLISH_WINDOW);
    let cpu: Vec<String> = stats
        .servers
        .iter()
        .filter_map(|u| Some(format!("{} {:.1}", u.role, u.cpu_us_per_request?)))
        .collect();
    let note = format!(
        "raw async-nats: {n} messages of {} B with the relay's headers to a fresh file-backed \
         stream, {PUBLISH_WINDOW} PubAcks in flight, one pull consumer acking each, at once; \
         publishing alone {:.0}/s; CPU µs/message: {}",
        sample.payload.len(),
        n as f64 / published.as_secs_f64(),
        if cpu.is_empty() {
            "n/a".to_owned()
        } else {
            cpu.join(", ")
        },
    );
    Ok((rate, note))
}

/// The open-loop ceiling: one message published per tick at `rate`, a pull
/// consumer acknowledging each; latency from publish to consumed.
async fn publish_consume_open(
    args: &BenchArgs,
    nats: &Nats,
    rate: f64,
    sample: &Sample,
) -> anyhow::Result<RunStats> {
    let (stream, subject, consumer) = nats.ceiling_stream().await?;
    let mut messages = consumer
        .messages()
        .await
        .context("starting the ceiling's consumer")?;
    let tracker = Arc::new(Tracker::default());
    let consuming = tokio::spawn({
        let tracker = tracker.clone();
        async move {
            while let Some(m) = messages.next().await {
                let now = Instant::now();
                let Ok(m) = m else { continue };
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                    .map(|v| v.as_str().to_owned());
                if let Some(id) = id {
                    tracker.done(&id, now);
                }
                if let Err(e) = m.ack().await {
                    tracing::warn!(error = %e, "acking a ceiling message failed");
                }
            }
        }
    });
    // PubAcks are awaited in order on a task of their own: the publisher
    // never waits for one.
    let (acks_tx, mut acks_rx) =
        tokio::sync::mpsc::unbounded_channel::<(String, PublishAckFuture)>();
    let acking = tokio::spawn({
        let tracker = tracker.clone();
        async move {
            while let Some((id, ack)) = acks_rx.recv().await {
                if let Err(e) = ack.await {
                    tracker.failed(&id, "PUBACK_FAILED", e.to_string());
                }
            }
        }
    });
    let window = Window::after(args.warmup, args.duration);
    let publishing = tokio::spawn({
        let tracker = tracker.clone();
        let js = nats.js.clone();
        let sample = sample.clone();
        async move {
            let schedule = window.schedule(rate);
            for k in 0.. {
                let due = schedule.due(k);
                if due >= window.end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let id = uuid::Uuid::now_v7().to_string();
                tracker.begin(&id, window.holds(due));
                let message = sample.message(&id);
                tracker.sent(&id, Instant::now());
                match js.send_publish(subject.clone(), message).await {
                    Ok(ack) => {
                        let _ = acks_tx.send((id, ack));
                    }
                    Err(e) => tracker.failed(&id, "PUBLISH_FAILED", e.to_string()),
                }
            }
        }
    });
    let mut watched = vec![this_process()];
    watched.extend(nats.watched());
    let stats = window
        .measure(watched, &tracker, rate, 1, "NOT_CONSUMED")
        .await;
    let _ = publishing.await;
    consuming.abort();
    let _ = acking.await;
    nats.delete_stream(&stream).await;
    Ok(stats)
}

/// `events.relay_throughput` on one bus: a fresh outbox prefilled with
/// committed rows, drained by `relay_once` in a loop.
async fn relay_throughput(
    args: &BenchArgs,
    env: &mut Environment,
    nats: Option<&Nats>,
    kind: BusKind,
) -> anyhow::Result<RunStats> {
    let database = Fresh::make(env, args, "outbox").await?;
    let result = async {
        let db = Db::connect(&database.url, &DbOptions::default()).await?;
        rapport_store::schema::create_outbox(&SchemaManager::new(&db.writer)).await?;
        let bus = make_bus(kind, nats).await?;
        // Warm-up: connections, prepared statements, the stream.
        prefill(&db, WARMUP_EVENTS).await?;
        drain(&db, &bus, None).await?;
        prefill(&db, args.event.events).await?;
        // As after any bulk load: steady-state plans.
        db.refresh_statistics().await?;
        let mut watched = vec![this_process()];
        watched.extend(
            nats.filter(|_| kind == BusKind::JetStream)
                .and_then(Nats::watched),
        );
        watched.extend(env.postgres_backends_of(database.postgres.as_slice()).await);
        let mut meter = Meter::new(watched);
        meter.start();
        let relayed = drain(&db, &bus, Some(&mut meter)).await?;
        meter.stop();
        meter.completed(relayed as u64, relayed as u64);
        db.close().await;
        if relayed != args.event.events {
            bail!("relayed {relayed} events of {}", args.event.events);
        }
        anyhow::Ok(meter.finish(LoadMode::Closed, 1))
    }
    .await;
    database.drop(env).await;
    result
}

/// Runs `relay_once` until the outbox is drained; each event's latency is
/// its pass's (from reading the batch to marking it published).
async fn drain(db: &Db, bus: &Bus, mut meter: Option<&mut Meter>) -> anyhow::Result<usize> {
    let mut relayed = 0;
    loop {
        let pass = Instant::now();
        let n = relay::relay_once(db, bus, SERVICE).await?;
        if n == 0 {
            return Ok(relayed);
        }
        relayed += n;
        if let Some(meter) = meter.as_deref_mut() {
            meter.ok(pass.elapsed(), n as u64);
        }
    }
}

/// Commits `n` new `CustomerCreated` rows to the outbox, [`PREFILL_CHUNK`]
/// rows per INSERT and transaction.
async fn prefill(db: &Db, n: usize) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(PREFILL_CHUNK) {
        let rows = chunk.iter().map(|_| {
            let e = customer_created(now);
            outbox::ActiveModel {
                id: sea_orm::ActiveValue::Set(e.id.clone()),
                tenant: sea_orm::ActiveValue::Set(e.tenant.clone()),
                event_type: sea_orm::ActiveValue::Set(e.r#type.clone()),
                subject: sea_orm::ActiveValue::Set(e.subject.clone()),
                envelope: sea_orm::ActiveValue::Set(e.encode_to_vec()),
                occur_time: sea_orm::ActiveValue::Set(now.timestamp_micros()),
                publish_time: sea_orm::ActiveValue::Set(None),
            }
        });
        let txn = db.writer.begin().await?;
        outbox::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
    }
    Ok(())
}

/// `events.lag` on one bus at `rate`: commits in an open loop, a woken
/// relay, a consumer applying each event through its inbox.
async fn lag(
    args: &BenchArgs,
    env: &mut Environment,
    nats: Option<&Nats>,
    kind: BusKind,
    rate: f64,
    name: &str,
    notes: &mut Vec<String>,
) -> anyhow::Result<RunStats> {
    let producer = Fresh::make(env, args, "outbox").await?;
    let consumer = match Fresh::make(env, args, "inbox").await {
        Ok(c) => c,
        Err(e) => {
            producer.drop(env).await;
            return Err(e);
        }
    };
    let databases: Vec<String> = producer
        .postgres
        .iter()
        .chain(&consumer.postgres)
        .cloned()
        .collect();
    let watched_pg = async {
        // After the warm-up: the pools have opened their connections.
        env.postgres_backends_of(&databases).await
    };
    let result = run_lag(
        args, &producer, &consumer, nats, kind, rate, watched_pg, name, notes,
    )
    .await;
    producer.drop(env).await;
    consumer.drop(env).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_lag(
    args: &BenchArgs,
    producer: &Fresh,
    consumer: &Fresh,
    nats: Option<&Nats>,
    kind: BusKind,
    rate: f64,
    watched_pg: impl std::future::Future<Output = Option<Watched>>,
    name: &str,
    notes: &mut Vec<String>,
) -> anyhow::Result<RunStats> {
    let pdb = Db::connect(&producer.url, &DbOptions::default()).await?;
    rapport_store::schema::create_outbox(&SchemaManager::new(&pdb.writer)).await?;
    let cdb = Db::connect(&consumer.url, &DbOptions::default()).await?;
    rapport_events::schema::create_consumer_tables(&SchemaManager::new(&cdb.writer)).await?;
    cdb.writer
        .execute_unprepared(&format!(
            "CREATE TABLE {EFFECTS} (event_id VARCHAR(64) PRIMARY KEY, \
             subject VARCHAR(256) NOT NULL, apply_time BIGINT NOT NULL)"
        ))
        .await?;
    let bus = make_bus(kind, nats).await?;
    let wake = Wake::default();
    let relay = Relay::spawn(pdb.clone(), bus.clone(), SERVICE, wake.clone(), RETENTION);
    let mut subscription = bus
        .consumer(
            CONSUMER,
            SERVICE,
            &subjects_of(SERVICE),
            &ConsumerOptions::default(),
        )
        .await?;
    let tracker = Arc::new(Tracker::default());

    // The consumer: as `consume::spawn` does, what is waiting in batches
    // of up to `APPLY_BATCH`, one transaction each; an effect counts from
    // when its batch is committed and acknowledged.
    let times = Arc::new(ConsumerTimes::default());
    let consuming = tokio::spawn({
        let tracker = tracker.clone();
        let times = times.clone();
        let cdb = cdb.clone();
        let handler = effect_handler();
        let sub = Subscription {
            consumer: CONSUMER.into(),
            service: SERVICE.into(),
            filter: subjects_of(SERVICE),
            options: ConsumerOptions::default(),
        };
        async move {
            loop {
                let asked = Instant::now();
                let (batch, failed) =
                    consume::next_batch(&mut subscription, consume::APPLY_BATCH).await;
                let delivered = Instant::now();
                let ids: Vec<String> = batch.iter().map(|d| d.envelope.id.clone()).collect();
                if !batch.is_empty() {
                    match consume::process_batch(&cdb, &sub, batch, &handler).await {
                        Ok(()) => {
                            let done = Instant::now();
                            for id in &ids {
                                tracker.done(id, done);
                            }
                            times.add(ids.len(), asked, delivered, done);
                        }
                        Err(e) => {
                            for id in &ids {
                                tracker.failed(id, "APPLY_FAILED", e.to_string());
                            }
                        }
                    }
                }
                match failed {
                    None => {}
                    Some(rapport_events::Error::Closed) => return,
                    Some(e) => {
                        tracing::warn!(error = %e, "bench consumer: next failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    });

    // The producer: one commit due per tick, each on a task of its own (an
    // open loop does not wait for the last commit), at most --concurrency
    // in flight.
    let window = Window::after(args.warmup, args.duration);
    let in_flight = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let producing = tokio::spawn({
        let tracker = tracker.clone();
        let pdb = pdb.clone();
        let wake = wake.clone();
        async move {
            let schedule = window.schedule(rate);
            let mut commits = tokio::task::JoinSet::new();
            for k in 0.. {
                let due = schedule.due(k);
                if due >= window.end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let envelope = customer_created(chrono::Utc::now());
                tracker.begin(&envelope.id, window.holds(due));
                let (tracker, pdb, wake) = (tracker.clone(), pdb.clone(), wake.clone());
                commits.spawn(async move {
                    let committed = async {
                        let txn = pdb.writer.begin().await?;
                        txn.execute(&outbox::append_insert(&envelope)).await?;
                        txn.commit().await
                    }
                    .await;
                    match committed {
                        Ok(()) => {
                            tracker.sent(&envelope.id, Instant::now());
                            wake.wake();
                        }
                        Err(e) => tracker.failed(&envelope.id, "COMMIT_FAILED", e.to_string()),
                    }
                    drop(permit);
                });
                // Reap finished commits as we go.
                while commits.try_join_next().is_some() {}
            }
            while commits.join_next().await.is_some() {}
        }
    });

    tokio::time::sleep_until(window.start.into()).await;
    let mut watched = vec![this_process()];
    watched.extend(
        nats.filter(|_| kind == BusKind::JetStream)
            .and_then(Nats::watched),
    );
    watched.extend(watched_pg.await);
    let stats = window
        .measure(watched, &tracker, rate, args.concurrency, "NOT_APPLIED")
        .await;
    notes.push(times.describe(name));
    let _ = producing.await;
    consuming.abort();
    let _ = consuming.await;
    relay.stop().await;
    pdb.close().await;
    cdb.close().await;
    Ok(stats)
}

/// Where the consumer of `events.lag` spends its time, summed over every
/// event it applied (warm-up included).
#[derive(Default)]
struct ConsumerTimes {
    events: AtomicU64,
    batches: AtomicU64,
    /// In `consume::next_batch`: waiting for the first event of a batch, or
    /// fetching it.
    next_ns: AtomicU64,
    /// In `consume::process_batch`: the batch's transaction (an inbox row
    /// and an effect per event) and its acknowledgements (JetStream: until
    /// the server confirms).
    process_ns: AtomicU64,
}

impl ConsumerTimes {
    fn add(&self, events: usize, asked: Instant, delivered: Instant, done: Instant) {
        let ns = |a: Instant, b: Instant| {
            u64::try_from(b.saturating_duration_since(a).as_nanos()).unwrap_or(u64::MAX)
        };
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.next_ns
            .fetch_add(ns(asked, delivered), Ordering::Relaxed);
        self.process_ns
            .fetch_add(ns(delivered, done), Ordering::Relaxed);
    }

    /// `name: the consumer's µs per event (mean): next …, process …`. When
    /// the consumer is behind, `next` never waits and the sum is what one
    /// event costs it.
    fn describe(&self, name: &str) -> String {
        let n = self.events.load(Ordering::Relaxed).max(1) as f64;
        let batches = self.batches.load(Ordering::Relaxed).max(1) as f64;
        let us = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / n / 1000.0;
        format!(
            "{name}: the consumer's µs per event (mean of {n:.0}, {:.1} per batch): next {:.0} \
             (waiting for one included), process (apply and ack) {:.0}",
            n / batches,
            us(&self.next_ns),
            us(&self.process_ns),
        )
    }
}

/// The consumer's effect: one row per event, in the inbox's transaction.
fn effect_handler() -> Handler {
    Arc::new(move |txn, envelope| {
        Box::pin(async move {
            let insert = Query::insert()
                .into_table(EFFECTS)
                .columns(["event_id", "subject", "apply_time"])
                .values_panic([
                    envelope.id.clone().into(),
                    envelope.subject.clone().into(),
                    chrono::Utc::now().timestamp_micros().into(),
                ])
                .to_owned();
            txn.execute(&insert)
                .await
                .map(|_| ())
                .map_err(|e| HandlerError::Retry(e.to_string()))
        })
    })
}

/// The bus of one measurement: a new in-process bus, or JetStream on a
/// fresh `RAPPORT_PROFILES`.
async fn make_bus(kind: BusKind, nats: Option<&Nats>) -> anyhow::Result<Bus> {
    match (kind, nats) {
        (BusKind::InProcess, _) => Ok(Bus::in_process()),
        (BusKind::JetStream, Some(nats)) => nats.profiles_bus().await,
        (BusKind::JetStream, None) => bail!("JetStream needs --nats-url"),
    }
}

/// This process: the relay, the consumer and the producer.
fn this_process() -> Watched {
    Watched {
        role: "rapport".to_owned(),
        pids: vec![std::process::id()],
    }
}

/// A database made for one measurement.
struct Fresh {
    url: String,
    /// Its name on PostgreSQL, dropped after the measurement.
    postgres: Option<String>,
}

impl Fresh {
    async fn make(env: &mut Environment, args: &BenchArgs, what: &str) -> anyhow::Result<Self> {
        match args.database {
            DatabaseKind::Sqlite => Ok(Self {
                url: format!(
                    "sqlite://{}",
                    env.dir
                        .path()
                        .join(format!("events-{what}-{:08x}.db", rand::random::<u32>()))
                        .display()
                ),
                postgres: None,
            }),
            DatabaseKind::Postgres => {
                let url = env
                    .create_postgres_database(&args.postgres_url, what)
                    .await?;
                let name = super::database_name(&url)?;
                Ok(Self {
                    url,
                    postgres: Some(name),
                })
            }
        }
    }

    async fn drop(self, env: &mut Environment) {
        if let Some(name) = &self.postgres {
            env.drop_postgres_database(name).await;
        }
    }
}

/// An open loop's schedule: a warm-up from `origin`, then the measured
/// window from `start` to `end`.
#[derive(Debug, Clone, Copy)]
struct Window {
    origin: Instant,
    start: Instant,
    end: Instant,
}

impl Window {
    /// Starting now with `warmup`, then `duration` measured.
    fn after(warmup: Duration, duration: Duration) -> Self {
        let origin = Instant::now();
        Self {
            origin,
            start: origin + warmup,
            end: origin + warmup + duration,
        }
    }

    /// Event `k` is due `k / rate` seconds after the origin.
    fn schedule(&self, rate: f64) -> rapport_bench::engine::Schedule {
        rapport_bench::engine::Schedule {
            start: self.origin,
            rate,
        }
    }

    fn holds(&self, t: Instant) -> bool {
        self.start <= t && t < self.end
    }

    /// Meters the window (call before it starts), then waits up to
    /// [`DRAIN`] for its events to finish and reads `tracker`: latency of
    /// each event due in the window from sent to done, those never done
    /// counted as `missing`, throughput from events done inside it.
    async fn measure(
        &self,
        watched: Vec<Watched>,
        tracker: &Tracker,
        rate: f64,
        concurrency: usize,
        missing: &'static str,
    ) -> RunStats {
        let mut meter = Meter::new(watched);
        tokio::time::sleep_until(self.start.into()).await;
        meter.start();
        tokio::time::sleep_until(self.end.into()).await;
        meter.stop();
        let deadline = Instant::now() + DRAIN;
        while tracker.unfinished() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracker.read(&mut meter, *self, missing);
        meter.finish(LoadMode::Open { rate }, concurrency)
    }
}

/// What became of each event of an open loop, by event (or message) id.
#[derive(Default)]
struct Tracker {
    events: Mutex<HashMap<String, Track>>,
}

#[derive(Default)]
struct Track {
    /// Due inside the measured window.
    in_window: bool,
    /// Committed (events) or published (the ceiling).
    sent: Option<Instant>,
    /// Its effect committed (events) or consumed (the ceiling).
    done: Option<Instant>,
    failed: Option<(&'static str, String)>,
}

impl Tracker {
    fn with(&self, id: &str, f: impl FnOnce(&mut Track)) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        f(events.entry(id.to_owned()).or_default());
    }

    fn begin(&self, id: &str, in_window: bool) {
        self.with(id, |t| t.in_window = in_window);
    }

    fn sent(&self, id: &str, at: Instant) {
        self.with(id, |t| t.sent = Some(at));
    }

    fn done(&self, id: &str, at: Instant) {
        // The first time counts (a redelivery is not a new effect).
        self.with(id, |t| {
            t.done.get_or_insert(at);
        });
    }

    fn failed(&self, id: &str, code: &'static str, why: String) {
        self.with(id, |t| {
            t.failed.get_or_insert((code, why));
        });
    }

    /// Events of the window neither done nor failed.
    fn unfinished(&self) -> usize {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events
            .values()
            .filter(|t| t.in_window && t.done.is_none() && t.failed.is_none())
            .count()
    }

    fn read(&self, meter: &mut Meter, window: Window, missing: &'static str) {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let completed = events
            .values()
            .filter(|t| t.done.is_some_and(|d| window.holds(d)))
            .count() as u64;
        meter.completed(completed, completed);
        for t in events.values().filter(|t| t.in_window) {
            match (t.sent, t.done, &t.failed) {
                (Some(sent), Some(done), _) => meter.ok(done.saturating_duration_since(sent), 1),
                (_, _, Some((code, why))) => meter.failed(code, why),
                _ => meter.failed(
                    missing,
                    &format!("not done {} s after the window", DRAIN.as_secs()),
                ),
            }
        }
    }
}
