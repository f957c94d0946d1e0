//! The NATS JetStream bus: production's implementation of [`crate::Bus`].
//!
//! It owns the connection to NATS, one stream per producing service
//! (`RAPPORT_<SERVICE>` on `rapport.<service>.>`), publishing with
//! deduplication, and durable pull consumers. The choices, and why:
//!
//! - **Streams** use limits retention (events stay for every consumer,
//!   present and future, instead of going once one consumer acked them as a
//!   work queue would) and no size or age limit: an event is kept until an
//!   operator sets limits on the stream. An existing stream is used as it is
//!   (an operator may have tuned it); a mismatch is logged.
//! - **Deduplication**: the bus message id (`Nats-Msg-Id`) is the event id,
//!   and the stream's duplicate window is [`DUPLICATE_WINDOW`] (10 min, the
//!   server default is 2): the outbox relay republishes a whole batch when
//!   any PubAck is missing, possibly after its process crashed and was
//!   restarted (Kubernetes' crash-loop back-off reaches 5 min), and every
//!   republication within the window is stored once. Beyond it consumers
//!   still deduplicate by event id.
//! - **Publishing** sends a window of messages, then awaits their PubAcks in
//!   order: one round trip per window instead of one per event, and one
//!   connection keeps them in order. If one fails, later ones may be stored
//!   already; the relay's retry then stores only the missing one, after them,
//!   so order is guaranteed only when publishing succeeds.
//! - **Consumers** are durable pull consumers with explicit acks that start
//!   at the beginning of the stream, like the in-process bus. One pull
//!   request asks for up to [`PULL_BATCH`] messages and stays open until
//!   they came or it expires; `next()` hands them out one by one and makes
//!   the next request when one ends. Asking for one message per request
//!   cost a round trip per event, which capped a consumer below 1,000
//!   events/s and put seconds of queueing into its p99 lag (docs/benchmarks.md);
//!   a small batch bounds what waits client-side while its ack wait runs:
//!   a handler would have to take `ack_wait / PULL_BATCH` (1 s with the
//!   defaults) per event before a prefetched one is redelivered, and then the
//!   inbox absorbs the redelivery.
//! - **Backoff is applied by the client, not the server** (checked against
//!   nats-server 2.9.10, Debian 12's). JetStream's `backoff` is not what
//!   [`ConsumerOptions::backoff`] means: the server uses it as the ack wait
//!   of each successive delivery, silently replacing `ack_wait` with
//!   `backoff[0]` (30 s became 1 s with the defaults), requires
//!   `max_deliver > backoff.len()`, and redelivers a `-NAK` without a delay
//!   immediately. So the consumer gets `ack_wait` and `max_deliver` only, and
//!   [`nak`] without a delay sends `-NAK {"delay": …}` with the backoff step
//!   for that attempt (the last step repeats), exactly as the in-process bus
//!   does. The step is computed when the message is delivered and travels
//!   with it to [`nak`].
//! - **Errors**: every async-nats error becomes [`Error::Unavailable`] (retry
//!   later); nothing here panics.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    context::{PublishAckFuture, PublishErrorKind},
    message::PublishMessage,
    stream::{self, RetentionPolicy, StorageType},
};
use futures::StreamExt as _;
use prost::Message as _;

use crate::{Acker, ConsumerOptions, Delivery, Error, EventEnvelope, EventsConfig};

/// How long the stream remembers a message id to drop republications.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Publishes sent before awaiting their PubAcks. Bounded because async-nats
/// lets only 5,000 PubAcks be pending per JetStream context (one per bus
/// here) and waits for a free slot: a batch bigger than that, sent whole
/// before awaiting any PubAck, would wait forever.
const PUBLISH_WINDOW: usize = 256;

/// How long one pull request waits on the server for a message. A request
/// lost (a reconnect to another server of the cluster) is noticed by the
/// client this long (plus 5 s) later and made again. No idle heartbeats:
/// async-nats 0.51's one-shot `Batch` stalls after one until its timer fires.
const PULL_EXPIRES: Duration = Duration::from_secs(10);

/// Messages one pull request asks for (see the module doc).
const PULL_BATCH: usize = 32;

/// The connection to NATS JetStream. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct JetStream {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    storage: StorageType,
    replicas: usize,
    /// Services whose stream this process has ensured.
    ensured: Mutex<HashSet<String>>,
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(e.to_string())
}

impl JetStream {
    /// Connects to the server(s) of `config.nats_url` (comma-separated: the
    /// client tries them in turn and reconnects to any). Fails when none
    /// answers: a service configured for NATS should not start without it.
    pub async fn connect(config: &EventsConfig) -> Result<Self, Error> {
        let urls: Vec<&str> = config
            .nats_url
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(Error::Unavailable("events.nats_url is empty".to_owned()));
        }
        let storage = match config.stream_storage.as_str() {
            "file" => StorageType::File,
            "memory" => StorageType::Memory,
            other => {
                return Err(Error::Unavailable(format!(
                    "events.stream_storage must be `file` or `memory`, not {other:?}"
                )));
            }
        };
        let client = async_nats::ConnectOptions::new()
            .name("rapport")
            .connect(urls)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            inner: Arc::new(Inner {
                js: jetstream::new(client),
                storage,
                // 0 would mean 1 to the server too; say so.
                replicas: config.stream_replicas.max(1),
                ensured: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Creates the stream of `service` unless this process already did or
    /// found it.
    async fn ensure_stream(&self, service: &str) -> Result<(), Error> {
        if self.ensured().contains(service) {
            return Ok(());
        }
        let name = crate::stream_name(service);
        let subjects = crate::subjects_of(service);
        let stream = self
            .inner
            .js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                description: Some(format!("Events of the Rapport service `{service}`.")),
                subjects: vec![subjects.clone()],
                retention: RetentionPolicy::Limits,
                storage: self.inner.storage,
                num_replicas: self.inner.replicas,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        // An existing stream is not changed (see the module doc), but one
        // that cannot do its job should be visible in the logs.
        let existing = &stream.cached_info().config;
        if !existing.subjects.contains(&subjects) {
            tracing::warn!(stream = %name, subjects = ?existing.subjects, expected = %subjects,
                "event stream does not have the expected subjects");
        }
        if existing.duplicate_window < DUPLICATE_WINDOW {
            tracing::warn!(stream = %name, duplicate_window = ?existing.duplicate_window,
                expected = ?DUPLICATE_WINDOW,
                "event stream's duplicate window is shorter than expected");
        }
        self.ensured().insert(service.to_owned());
        Ok(())
    }

    fn ensured(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set stays valid whatever panicked while holding the lock.
        self.inner
            .ensured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes `events` of `service` in order and returns once the stream
    /// has stored every one (or had it already: same event id within the
    /// duplicate window).
    pub async fn publish(&self, service: &str, events: &[EventEnvelope]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        self.ensure_stream(service).await?;
        for window in events.chunks(PUBLISH_WINDOW) {
            let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(window.len());
            for env in window {
                let publish = PublishMessage::build()
                    .payload(env.encode_to_vec().into())
                    .message_id(&env.id)
                    .header("Rapport-Tenant", env.tenant.as_str())
                    .header("Rapport-Event-Type", env.r#type.as_str());
                let ack = self
                    .inner
                    .js
                    .send_publish(crate::subject(service, env), publish)
                    .await
                    .map_err(unavailable)?;
                acks.push(ack);
            }
            for (i, ack) in acks.into_iter().enumerate() {
                if i == 1 {
                    // One event of the window stored, the rest not yet.
                    rapport_store::crash::point("relay.mid_batch");
                }
                if let Err(e) = ack.await {
                    if e.kind() == PublishErrorKind::StreamNotFound {
                        // Deleted since it was ensured: create it again on
                        // the caller's retry.
                        self.ensured().remove(service);
                    }
                    return Err(unavailable(e));
                }
            }
        }
        Ok(())
    }

    /// The durable pull consumer `name` of `service`'s events on `filter`:
    /// created when missing, resumed where it left off otherwise. An
    /// existing consumer keeps the configuration it was created with.
    pub async fn consumer(
        &self,
        name: &str,
        service: &str,
        filter: &str,
        options: &ConsumerOptions,
    ) -> Result<JetStreamConsumer, Error> {
        self.ensure_stream(service).await?;
        let stream = self
            .inner
            .js
            .get_stream_no_info(crate::stream_name(service))
            .await
            .map_err(unavailable)?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                name,
                pull::Config {
                    durable_name: Some(name.to_owned()),
                    description: Some(format!("Rapport consumer `{name}` of `{filter}`.")),
                    filter_subject: filter.to_owned(),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: options.ack_wait,
                    // As the in-process bus: at least one delivery.
                    max_deliver: i64::from(options.max_deliver.max(1)),
                    // No `backoff`: applied by `nak` (see the module doc).
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                // Perhaps the stream was deleted since it was ensured:
                // ensure it again on the caller's retry.
                self.ensured().remove(service);
                unavailable(e)
            })?;
        let existing = &consumer.cached_info().config.filter_subject;
        if existing != filter {
            tracing::warn!(consumer = %name, filter = %existing, asked = %filter,
                "durable consumer exists with another filter; it keeps its own");
        }
        Ok(JetStreamConsumer {
            consumer,
            backoff: options.backoff.clone(),
            batch: None,
        })
    }
}

/// A durable JetStream pull consumer.
pub struct JetStreamConsumer {
    consumer: PullConsumer,
    backoff: Vec<Duration>,
    /// The pull request in flight. Kept across calls so that a `next()`
    /// cancelled while waiting does not lose the message the server then
    /// sends.
    batch: Option<pull::Batch>,
}

impl JetStreamConsumer {
    /// The next delivery: a new event, or one whose ack wait passed or that
    /// was negatively acknowledged. Waits for one.
    pub async fn next(&mut self) -> Result<Delivery, Error> {
        loop {
            if self.batch.is_none() {
                let batch = self
                    .consumer
                    .batch()
                    .max_messages(PULL_BATCH)
                    .expires(PULL_EXPIRES)
                    .messages()
                    .await
                    .map_err(unavailable)?;
                self.batch = Some(batch);
            }
            let next = match &mut self.batch {
                Some(batch) => batch.next().await,
                None => continue,
            };
            match next {
                Some(Ok(message)) => return self.deliver(message).await,
                Some(Err(e)) => {
                    self.batch = None;
                    return Err(unavailable(e));
                }
                // The request delivered its batch or expired: the next
                // round makes a new one.
                None => self.batch = None,
            }
        }
    }

    async fn deliver(&self, message: jetstream::Message) -> Result<Delivery, Error> {
        let (sequence, delivered) = {
            let info = message.info().map_err(unavailable)?;
            (info.stream_sequence, info.delivered)
        };
        let attempt = u64::try_from(delivered).unwrap_or(1).max(1);
        let envelope = match EventEnvelope::decode(message.payload.clone()) {
            Ok(envelope) => envelope,
            Err(e) => {
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                    .map_or_else(|| sequence.to_string(), |v| v.as_str().to_owned());
                // Redelivering it would fail the same way, up to max_deliver
                // times, each after an ack wait: stop it now.
                message
                    .double_ack_with(AckKind::Term)
                    .await
                    .map_err(unavailable)?;
                return Err(Error::Undecodable {
                    id,
                    why: e.to_string(),
                });
            }
        };
        let backoff = backoff(&self.backoff, attempt);
        Ok(Delivery {
            envelope,
            subject: message.subject.to_string(),
            attempt,
            acker: Acker::JetStream(Box::new((message, backoff))),
        })
    }
}

/// The redelivery delay after the `attempt`-th delivery was refused: the
/// backoff step for it, the last step repeating; none without a backoff.
fn backoff(steps: &[Duration], attempt: u64) -> Duration {
    let i = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    steps.get(i).or(steps.last()).copied().unwrap_or_default()
}

/// Acknowledges `m` and waits for the server to confirm it: once this
/// returns `Ok`, the event is not delivered to this consumer again.
pub(crate) async fn ack(m: &jetstream::Message) -> Result<(), Error> {
    m.double_ack().await.map_err(unavailable)
}

/// Asks the server to deliver `m` again after `delay`, or after
/// `backoff` (the consumer's step for this attempt, computed at delivery)
/// when `None` (see the module doc), and waits for it to confirm.
pub(crate) async fn nak(
    m: &jetstream::Message,
    backoff: Duration,
    delay: Option<Duration>,
) -> Result<(), Error> {
    let delay = Some(delay.unwrap_or(backoff));
    // A zero delay as a plain `-NAK`: the server queues that for redelivery
    // before new messages, while `{"delay":0}` waits for its pending timer
    // and lets the next new message go first (2.9.10).
    let delay = delay.filter(|d| !d.is_zero());
    m.double_ack_with(AckKind::Nak(delay))
        .await
        .map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_repeats_its_last_step() {
        let steps = [Duration::from_secs(1), Duration::from_secs(5)];
        assert_eq!(backoff(&steps, 1), Duration::from_secs(1));
        assert_eq!(backoff(&steps, 2), Duration::from_secs(5));
        assert_eq!(backoff(&steps, 9), Duration::from_secs(5));
        assert_eq!(backoff(&[], 1), Duration::ZERO);
    }
}
