//! rapport-events: how Rapport's services tell each other what happened.
//!
//! A service commits a change and its events together (the outbox of
//! `rapport-store`); the [`relay`] publishes committed outbox rows to the
//! [`Bus`], in commit order, at least once; consumers read them through a
//! durable [`Consumer`] and acknowledge each. One bus, two implementations
//! with the same guarantees (one conformance suite, `tests/it`): in-process
//! for the embedded default (`rapport dev` needs nothing external) and NATS
//! JetStream in production, chosen by configuration ([`EventsConfig`]).
//! [`consume`] applies each event once per consumer (an inbox in the
//! handler's transaction, dead letters); [`timers`] fires work due at a
//! time, once.
//!
//! Subjects are `rapport.<service>.<EventType>` (`rapport.profiles.CustomerCreated`)
//! in one stream per producing service (`RAPPORT_PROFILES`); the tenant is in
//! the envelope and a header, never in the stream layout. The bus message id
//! is the event id, so a republished event is stored once.
#![forbid(unsafe_code)]

pub mod admin;
pub mod consume;
pub mod erasure;
pub mod in_process;
pub mod jetstream;
pub mod relay;
pub mod schema;
pub mod service;
pub mod timers;

use std::time::Duration;

pub use rapport_proto::types::EventEnvelope;
use serde::{Deserialize, Serialize};

/// Why the bus could not do what was asked. The text is for logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bus cannot be reached or refused the operation; retry later.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// A message on the bus is not an event envelope.
    #[error("undecodable event {id}: {why}")]
    Undecodable {
        /// The bus message id, when it has one.
        id: String,
        /// What failed.
        why: String,
    },
    /// The consumer or bus was shut down.
    #[error("the event bus was closed")]
    Closed,
}

/// The `events` section of every service's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// NATS server URL(s), comma-separated (`nats://nats:4222`). Unset: the
    /// in-process bus (the embedded default; events reach only consumers
    /// in the same process).
    pub nats_url: Option<String>,
    /// Replicas of each JetStream stream (3 in production, 1 on one server).
    pub stream_replicas: usize,
    /// `file` (durable, production) or `memory` (tests).
    pub stream_storage: String,
    /// How long published outbox rows are kept before the relay deletes
    /// them, in hours.
    pub outbox_retention_hours: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            stream_replicas: 1,
            stream_storage: "file".to_owned(),
            outbox_retention_hours: 24,
        }
    }
}

/// How a durable consumer is redelivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// An event not acknowledged within this time is delivered again.
    pub ack_wait: Duration,
    /// Deliveries of one event before the bus gives up on it.
    pub max_deliver: u32,
    /// Delays before each redelivery after a negative acknowledgement
    /// without a delay of its own; the last repeats.
    pub backoff: Vec<Duration>,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
        }
    }
}

/// The subject an event of `service` is published on:
/// `rapport.<service>.<EventType>`, the type's last name segment.
pub fn subject(service: &str, envelope: &EventEnvelope) -> String {
    let event_type = envelope
        .r#type
        .rsplit_once('.')
        .map_or(envelope.r#type.as_str(), |(_, name)| name);
    format!("rapport.{service}.{event_type}")
}

/// Every subject of `service`: what its stream holds.
pub fn subjects_of(service: &str) -> String {
    format!("rapport.{service}.>")
}

/// The stream of `service`'s events: `RAPPORT_<SERVICE>`.
pub fn stream_name(service: &str) -> String {
    format!(
        "RAPPORT_{}",
        service.to_uppercase().replace(['-', '.'], "_")
    )
}

/// The event bus of a process.
#[derive(Clone)]
pub enum Bus {
    /// In this process only: the embedded default.
    InProcess(in_process::InProcess),
    /// NATS JetStream.
    JetStream(jetstream::JetStream),
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bus::InProcess(_) => f.write_str("Bus::InProcess"),
            Bus::JetStream(_) => f.write_str("Bus::JetStream"),
        }
    }
}

impl Bus {
    /// A new in-process bus (share one per process: `rapport dev` hands the
    /// same bus to every service).
    pub fn in_process() -> Self {
        Bus::InProcess(in_process::InProcess::default())
    }

    /// The bus `config` names: JetStream when `nats_url` is set, else
    /// `fallback` (the process's in-process bus).
    pub async fn from_config(config: &EventsConfig, fallback: &Bus) -> Result<Bus, Error> {
        match &config.nats_url {
            Some(url) if !url.trim().is_empty() => {
                Ok(Bus::JetStream(jetstream::JetStream::connect(config).await?))
            }
            _ => Ok(fallback.clone()),
        }
    }

    /// Publishes `events` of `service`, in order; returns once the bus has
    /// stored every one (a JetStream PubAck). An event id published again
    /// is stored once.
    pub async fn publish(&self, service: &str, events: &[EventEnvelope]) -> Result<(), Error> {
        match self {
            Bus::InProcess(bus) => bus.publish(service, events),
            Bus::JetStream(bus) => bus.publish(service, events).await,
        }
    }

    /// The durable consumer `name` of `service`'s events on `filter`
    /// (a subject, `*` and `>` wildcards allowed), created when missing and
    /// resuming where it left off otherwise.
    pub async fn consumer(
        &self,
        name: &str,
        service: &str,
        filter: &str,
        options: &ConsumerOptions,
    ) -> Result<Consumer, Error> {
        match self {
            Bus::InProcess(bus) => Ok(Consumer::InProcess(
                bus.consumer(name, service, filter, options),
            )),
            Bus::JetStream(bus) => Ok(Consumer::JetStream(Box::new(
                bus.consumer(name, service, filter, options).await?,
            ))),
        }
    }
}

/// A durable consumer: the next event for it, until acknowledged.
pub enum Consumer {
    /// In-process.
    InProcess(in_process::InProcessConsumer),
    /// JetStream.
    JetStream(Box<jetstream::JetStreamConsumer>),
}

impl Consumer {
    /// The next delivery: a new event, or one whose acknowledgement wait
    /// passed or that was negatively acknowledged.
    pub async fn next(&mut self) -> Result<Delivery, Error> {
        match self {
            Consumer::InProcess(c) => c.next().await,
            Consumer::JetStream(c) => c.next().await,
        }
    }
}

/// One delivery of one event.
pub struct Delivery {
    /// The event.
    pub envelope: EventEnvelope,
    /// The subject it was published on.
    pub subject: String,
    /// 1 for the first delivery, more for redeliveries.
    pub attempt: u64,
    acker: Acker,
}

enum Acker {
    InProcess(in_process::InProcessAcker),
    /// The message and the backoff step of this attempt.
    JetStream(Box<(async_nats::jetstream::Message, Duration)>),
}

impl Delivery {
    /// Done with it: never delivered again.
    pub async fn ack(self) -> Result<(), Error> {
        match self.acker {
            Acker::InProcess(a) => {
                a.ack();
                Ok(())
            }
            Acker::JetStream(m) => jetstream::ack(&m.0).await,
        }
    }

    /// Not now: deliver it again after `delay` (or the consumer's backoff
    /// for this attempt), until `max_deliver` deliveries.
    pub async fn nak(self, delay: Option<Duration>) -> Result<(), Error> {
        match self.acker {
            Acker::InProcess(a) => {
                a.nak(delay);
                Ok(())
            }
            Acker::JetStream(m) => jetstream::nak(&m.0, m.1, delay).await,
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.envelope.id)
            .field("subject", &self.subject)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}
