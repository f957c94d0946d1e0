//! rapport-conversations: every conversation with every customer, on every
//! channel, in one history per customer — inboxes, conversations with
//! per-tenant case numbers, immutable messages, inbound threading. `domain/`
//! holds the rules and never sees tonic, prost or sea_orm; `api/` adapts
//! gRPC to it; `storage/` persists it; `profiles` is its one outbound call.
#![forbid(unsafe_code)]

mod api;
mod connector;
mod delivery;
mod domain;
mod email;
mod profiles;
pub mod seed;
mod sla_alerts;
mod storage;

pub use connector::ConnectorConfig;
pub use email::EmailConfig;

use std::{future::Future, net::SocketAddr, sync::Arc};

use rapport_events::{
    Bus, EventsConfig,
    relay::Wake,
    service::{Basics, Foundation},
};
use rapport_kit::{GrpcServer, Peer, PeerConfig, Secret, ServerConfig, server::App};
use rapport_proto::conversations::conversations_service_server::ConversationsServiceServer;
use rapport_store::{DatabaseConfig, Db};
pub use rapport_usecase::{Clock, ManualClock, SystemClock};
use serde::{Deserialize, Serialize};

/// ErrorInfo domain of this service.
pub const ERROR_DOMAIN: &str = "conversations.rapport.dev";

/// Fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "rapport.conversations.v1.ConversationsService";

/// The name of this service on the event bus: its events are published on
/// `rapport.conversations.<EventType>`, in the stream `RAPPORT_CONVERSATIONS`.
pub const EVENTS_NAME: &str = "conversations";

/// Conversations holds customer data (messages, their text and
/// attachments): every erasure waits for its confirmation.
pub const HOLDS_CUSTOMER_DATA: bool = true;

/// Configuration of the conversations service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listener and limits.
    pub server: ServerConfig,
    /// Database.
    pub database: DatabaseConfig,
    /// Secret that signs page tokens; every replica must share it. At least
    /// 32 characters. Secret: only from the environment.
    pub page_token_secret: Secret,
    /// The public keys (base64url Ed25519, comma-separated) whose assertions
    /// this service accepts: the gateway's.
    pub assertion_public_keys: String,
    /// The event bus and the outbox's retention.
    pub events: EventsConfig,
    /// This service's own Ed25519 private key (base64url seed): it signs the
    /// assertions of its calls to other services (profiles'
    /// `ResolveCustomer`), which trust its public key. Secret: only from the
    /// environment.
    pub service_key: Secret,
    /// The profiles service (sender resolution).
    pub profiles: PeerConfig,
    /// Outbound email (SMTP submission).
    pub email: EmailConfig,
    /// IANA zone of "today" for agents without a business calendar (the
    /// "due today" promise list).
    pub default_time_zone: String,
    /// Channel connectors (outbound messages of other channels).
    pub connectors: ConnectorConfig,
    /// Seconds added to the system clock (`rapport dev` demos of service
    /// levels: `RAPPORT_CONVERSATIONS__CLOCK_OFFSET_SECONDS=86400` runs the
    /// service a day ahead, so due SLA timers fire). 0 in production.
    pub clock_offset_seconds: i64,
    /// How often, in milliseconds, due timers (deliveries, SLA warnings
    /// and breaches) are looked for.
    pub timer_poll_ms: u64,
    /// Most firings of SLA alerts and of automation (promises, check-ins)
    /// in flight at once, per worker (at least 1). On PostgreSQL each holds
    /// a connection of `database.pool` while it commits: keep it below
    /// `max_connections`, which requests share. A conversation's timers
    /// always fire one after the other.
    pub timer_concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 50053)),
                ..ServerConfig::default()
            },
            database: DatabaseConfig::sqlite_file("conversations"),
            page_token_secret: Secret::default(),
            assertion_public_keys: String::new(),
            events: EventsConfig::default(),
            service_key: Secret::default(),
            profiles: PeerConfig {
                endpoint: "http://127.0.0.1:50051".to_owned(),
                ..PeerConfig::default()
            },
            email: EmailConfig::default(),
            default_time_zone: "UTC".to_owned(),
            connectors: ConnectorConfig::default(),
            clock_offset_seconds: 0,
            timer_poll_ms: 1_000,
            timer_concurrency: 4,
        }
    }
}

/// The system clock moved by a fixed offset (`clock_offset_seconds`).
#[derive(Debug, Clone, Copy)]
struct OffsetClock(chrono::Duration);

impl Clock for OffsetClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        SystemClock.now() + self.0
    }
}

/// A built, bound, not yet serving conversations service.
pub struct ConversationsServer {
    server: GrpcServer,
    db: Db,
    app: App,
    bus: Bus,
    wake: Wake,
    outbox_retention: std::time::Duration,
    deliveries: delivery::Deliverer,
    sla_alerts: rapport_events::timers::TimerHandler,
    clock: Arc<dyn Clock>,
    timer_poll: std::time::Duration,
    timer_firing: rapport_events::timers::Firing,
}

impl std::fmt::Debug for ConversationsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationsServer")
            .field("addr", &self.server.local_addr())
            .finish_non_exhaustive()
    }
}

/// The consumers this service runs, with their handlers (for `rapport
/// events dead-letters`): the erasure of a customer's data, and the merge
/// of two customers.
pub fn event_handlers() -> Vec<(&'static str, rapport_events::consume::Handler)> {
    vec![
        (ERASURE_CONSUMER, erasure_handler()),
        (MERGE_CONSUMER, merge_handler()),
        (CONSENT_CONSUMER, consent_handler()),
    ]
}

/// The consumer of profiles' consent changes: when consent is withdrawn,
/// the customer's deliveries waiting for quiet hours to end are made due
/// now, and the delivery worker — which asks the contact policy again for
/// every proactive message it hands over — cancels those it now refuses.
pub const CONSENT_CONSUMER: &str = "conversations.consent";

fn consent_subscription() -> rapport_events::consume::Subscription {
    rapport_events::consume::Subscription {
        consumer: CONSENT_CONSUMER.to_owned(),
        service: "profiles".to_owned(),
        filter: "rapport.profiles.ConsentChanged".to_owned(),
        options: rapport_events::ConsumerOptions::default(),
    }
}

fn consent_handler() -> rapport_events::consume::Handler {
    use prost::{Message as _, Name as _};
    use rapport_events::consume::HandlerError;
    use rapport_proto::profiles::{ConsentChanged, ConsentStatus};
    std::sync::Arc::new(|txn, envelope| {
        Box::pin(async move {
            let changed = envelope
                .payload
                .as_ref()
                .filter(|p| p.type_url == ConsentChanged::type_url())
                .and_then(|p| ConsentChanged::decode(p.value.as_slice()).ok())
                .ok_or_else(|| {
                    HandlerError::Reject(format!("not a ConsentChanged: {}", envelope.r#type))
                })?;
            if changed.status == ConsentStatus::Granted as i32 {
                // Nothing waiting can be refused for it.
                return Ok(());
            }
            let customer = changed
                .customer
                .strip_prefix("customers/")
                .and_then(|id| uuid::Uuid::parse_str(id).ok())
                .map(domain::CustomerId)
                .ok_or_else(|| HandlerError::Reject(format!("customer {:?}", changed.customer)))?;
            let tenant = domain::Tenant::parse(&envelope.tenant)
                .map_err(|why| HandlerError::Reject(format!("the event's tenant {why}")))?;
            // An unknown channel: every waiting delivery is asked about.
            let channel = api::convert::channel_from_pb(changed.channel)
                .ok()
                .flatten();
            storage::delivery::recheck_waiting(txn, &tenant, customer, channel, chrono::Utc::now())
                .await
                .map(drop)
                .map_err(|e| HandlerError::Retry(e.to_string()))
        })
    })
}

/// The consumer of profiles' merges: the merged-away customer's
/// conversations and messages are re-pointed to the survivor.
pub const MERGE_CONSUMER: &str = "conversations.merges";

fn merge_subscription() -> rapport_events::consume::Subscription {
    rapport_events::consume::Subscription {
        consumer: MERGE_CONSUMER.to_owned(),
        service: "profiles".to_owned(),
        filter: "rapport.profiles.CustomersMerged".to_owned(),
        options: rapport_events::ConsumerOptions::default(),
    }
}

fn merge_handler() -> rapport_events::consume::Handler {
    use prost::{Message as _, Name as _};
    use rapport_events::consume::HandlerError;
    use rapport_proto::profiles::CustomersMerged;
    std::sync::Arc::new(|txn, envelope| {
        Box::pin(async move {
            let merged = envelope
                .payload
                .as_ref()
                .filter(|p| p.type_url == CustomersMerged::type_url())
                .and_then(|p| CustomersMerged::decode(p.value.as_slice()).ok())
                .ok_or_else(|| {
                    HandlerError::Reject(format!("not a CustomersMerged: {}", envelope.r#type))
                })?;
            let id = |name: &str| {
                name.strip_prefix("customers/")
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| HandlerError::Reject(format!("customer {name:?}")))
            };
            let (from, to) = (id(&merged.merged)?, id(&merged.survivor)?);
            storage::merge::repoint(txn, &envelope.tenant, &from, &to).await
        })
    })
}

/// The consumer of profiles' erasures (`rapport_events::erasure`).
pub const ERASURE_CONSUMER: &str = "conversations.erasure";

fn erasure_handler() -> rapport_events::consume::Handler {
    rapport_events::erasure::handler(
        EVENTS_NAME,
        std::sync::Arc::new(|txn, tenant, customer| {
            Box::pin(storage::erasure::erase(txn, tenant, customer))
        }),
    )
}

/// The conversations schema's migrations (`rapport migrate conversations`).
pub type Migrator = rapport_conversations_migration::Migrator;

/// Runs the conversations migrations on `db`.
pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    rapport_store::config::migrate::<Migrator>(db).await
}

/// Connects to the database, migrates if configured, and binds the
/// listener. Events go to `bus`. Time is the system's, moved by
/// `clock_offset_seconds`.
pub async fn build(config: &Config, bus: &Bus) -> anyhow::Result<ConversationsServer> {
    let offset = chrono::Duration::try_seconds(config.clock_offset_seconds)
        .filter(|d| d.num_days().abs() <= 3650)
        .ok_or_else(|| {
            anyhow::anyhow!("conversations.clock_offset_seconds: at most ten years either way")
        })?;
    if offset.is_zero() {
        build_with(config, bus, Arc::new(SystemClock)).await
    } else {
        tracing::warn!(
            offset_seconds = config.clock_offset_seconds,
            "conversations runs on a shifted clock"
        );
        build_with(config, bus, Arc::new(OffsetClock(offset))).await
    }
}

/// [`build`] telling time by `clock`: the service and its timer workers
/// (tests drive service levels with a `ManualClock`).
pub async fn build_with(
    config: &Config,
    bus: &Bus,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<ConversationsServer> {
    let default_zone = domain::calendar::parse_zone(config.default_time_zone.trim())
        .map_err(|why| anyhow::anyhow!("conversations.default_time_zone: {why}"))?;
    let peer = Peer::new(&config.profiles, &config.service_key, EVENTS_NAME)
        .map_err(|why| anyhow::anyhow!("conversations.service_key / profiles: {why}"))?;
    let Foundation {
        server,
        db,
        guard,
        tokens,
        wake,
    } = rapport_events::service::open::<Migrator>(Basics {
        name: EVENTS_NAME,
        error_domain: ERROR_DOMAIN,
        server: &config.server,
        database: &config.database,
        page_token_secret: &config.page_token_secret,
        assertion_public_keys: &config.assertion_public_keys,
    })
    .await?;
    storage::metrics::ensure_rollups(&db)
        .await
        .map_err(|e| anyhow::anyhow!("rebuilding the KPI rollups: {e}"))?;
    let mailer = email::Mailer::new(&config.email)?;
    let deliveries = delivery::Deliverer::new(
        db.clone(),
        clock.clone(),
        mailer,
        connector::Connectors::new(&config.connectors),
        profiles::Profiles::new(peer.clone()),
        api::events::encode,
        wake.clone(),
    );
    let repo = storage::SqlRepository::new(db.clone(), api::events::encode, wake.clone());
    let service =
        domain::service::Conversations::new(repo, profiles::Profiles::new(peer), clock.clone())
            .with_default_zone(default_zone);
    let handler = api::handler::Handler::new(service, tokens);
    let grpc = ConversationsServiceServer::new(handler)
        .max_decoding_message_size(config.server.max_message_bytes)
        .max_encoding_message_size(config.server.max_message_bytes * 4);
    let app = App {
        routes: tonic::service::Routes::new(tonic::service::interceptor::InterceptedService::new(
            grpc, guard,
        )),
        service_names: vec![SERVICE_NAME],
        file_descriptor_sets: vec![rapport_proto::FILE_DESCRIPTOR_SET],
        accept_http1: false,
    };
    Ok(ConversationsServer {
        server,
        db,
        app,
        bus: bus.clone(),
        wake,
        outbox_retention: rapport_events::service::outbox_retention(&config.events),
        deliveries,
        sla_alerts: sla_alerts::timer_handler(clock.clone(), api::events::encode),
        clock,
        timer_poll: std::time::Duration::from_millis(config.timer_poll_ms.max(1)),
        timer_firing: firing(config.timer_concurrency),
    })
}

impl ConversationsServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Where `/metrics` is served, when `server.metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.metrics_addr()
    }

    /// The service's database (tests inspect the outbox through it).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Serves until `shutdown` resolves — delivering outbound messages as
    /// their timers come due, erasing customers' data as profiles erases
    /// them — then drains and closes the database.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let erasure = rapport_events::consume::spawn(
            self.db.clone(),
            self.bus.clone(),
            rapport_events::erasure::subscription(EVENTS_NAME),
            erasure_handler(),
        );
        let merges = rapport_events::consume::spawn(
            self.db.clone(),
            self.bus.clone(),
            merge_subscription(),
            merge_handler(),
        );
        let consent = rapport_events::consume::spawn(
            self.db.clone(),
            self.bus.clone(),
            consent_subscription(),
            consent_handler(),
        );
        // Due deliveries are looked for every `timer_poll` (and at once
        // again after a pass that fired any), on the service's clock.
        let deliveries = self.deliveries.spawn(self.timer_poll);
        // Promises break at their due time and remind their owners, pending
        // conversations are checked in with and auto-resolved; SLA warnings
        // and breaches are raised: all on the service's clock and poll, their
        // events published at once.
        let automation = rapport_events::timers::spawn_waking(
            self.db.clone(),
            self.clock.clone(),
            AUTOMATION_KINDS.iter().map(|k| (*k).to_owned()).collect(),
            automation_handler(),
            self.timer_poll,
            self.timer_firing,
            Some(self.wake.clone()),
        );
        let sla_alerts = rapport_events::timers::spawn_waking(
            self.db.clone(),
            self.clock.clone(),
            vec![storage::sla::SLA_ALERT.to_owned()],
            self.sla_alerts,
            self.timer_poll,
            self.timer_firing,
            Some(self.wake.clone()),
        );
        rapport_events::service::serve_with_outbox(
            (self.server, self.db, self.wake),
            self.app,
            self.bus,
            EVENTS_NAME,
            self.outbox_retention,
            vec![erasure, merges, consent, deliveries, automation, sla_alerts],
            shutdown,
        )
        .await
    }
}

/// The timer kinds of automation: promises' due times and reminders,
/// pending conversations' check-ins and auto-resolves.
const AUTOMATION_KINDS: &[&str] = &[
    storage::promises::PROMISE_DUE,
    storage::promises::PROMISE_REMINDER,
    storage::check_ins::PENDING,
];

/// The handler of [`AUTOMATION_KINDS`], by kind.
fn automation_handler() -> rapport_events::timers::TimerHandler {
    let promises = storage::promises::timer_handler(api::events::encode);
    let pending = storage::check_ins::timer_handler(api::events::encode);
    Arc::new(move |txn, fired| {
        if fired.timer.kind == storage::check_ins::PENDING {
            pending(txn, fired)
        } else {
            promises(txn, fired)
        }
    })
}

/// How the SLA and automation workers fire: up to `concurrency`
/// transactions at once, each firing its share of a pass's timers and
/// committing once (their handlers act through the transaction alone), one
/// lane per conversation (every one of their timers' payloads starts with
/// its conversation's id), so a worker never fires two timers of one
/// conversation at once — they read it and may write it back under its
/// version (an escalation, an auto-resolve).
fn firing(concurrency: usize) -> rapport_events::timers::Firing {
    rapport_events::timers::Firing::batched(concurrency, rapport_events::timers::payload_head_lane)
}

/// Fires the automation timers (promises' due times and reminders, pending
/// check-ins and auto-resolves) due by `clock` on `db`, as the running
/// service does every second: a second worker, for tests and operators;
/// the number fired.
pub async fn fire_automation_timers(db: &Db, clock: &dyn Clock) -> anyhow::Result<usize> {
    Ok(rapport_events::timers::fire_due_with(
        db,
        clock,
        AUTOMATION_KINDS,
        &automation_handler(),
        firing(Config::default().timer_concurrency),
    )
    .await?)
}
