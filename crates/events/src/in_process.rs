//! The in-process bus: the embedded default, with JetStream's guarantees
//! inside one process — a log per producing service, events deduplicated
//! by id, durable consumers that resume where they left off, explicit
//! acknowledgement, redelivery after the acknowledgement wait or a negative
//! acknowledgement (with backoff), and no more than `max_deliver` deliveries.
//!
//! It forgets everything when the process stops; that loses nothing,
//! because the outbox relay publishes from the database and only marks
//! rows published once the bus has them, and a consumer's effects are
//! deduplicated by event id in its own database.
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use crate::{Acker, ConsumerOptions, Delivery, Error, EventEnvelope};

/// Events kept per stream; older ones are dropped (as a JetStream stream
/// with a message limit would). Consumers far behind lose them, which is
/// why production runs JetStream with file storage.
const MAX_EVENTS_PER_STREAM: usize = 100_000;

/// The in-process bus. Cheap to clone; clones share the streams.
#[derive(Clone, Default)]
pub struct InProcess {
    inner: Arc<Mutex<Streams>>,
}

#[derive(Default)]
struct Streams {
    /// By producing service.
    streams: HashMap<String, Arc<Stream>>,
}

/// One service's events and the consumers reading them.
struct Stream {
    state: Mutex<StreamState>,
    /// Woken on every publish, nak and ack.
    changed: Notify,
}

struct StreamState {
    /// Sequence of the first event in `log`.
    first_seq: u64,
    log: VecDeque<(String, EventEnvelope)>,
    /// Ids of the events in `log`, for deduplication.
    ids: HashSet<String>,
    consumers: HashMap<String, Arc<Mutex<ConsumerState>>>,
}

struct ConsumerState {
    filter: Vec<String>,
    options: ConsumerOptions,
    /// The next sequence not yet delivered for the first time.
    next_seq: u64,
    /// Delivered, not acknowledged: sequence → (deliveries, when due again).
    pending: BTreeMap<u64, (u64, Instant)>,
}

impl InProcess {
    fn stream(&self, service: &str) -> Arc<Stream> {
        let mut streams = self.inner.lock().expect("bus lock");
        streams
            .streams
            .entry(service.to_owned())
            .or_insert_with(|| {
                Arc::new(Stream {
                    state: Mutex::new(StreamState {
                        first_seq: 1,
                        log: VecDeque::new(),
                        ids: HashSet::new(),
                        consumers: HashMap::new(),
                    }),
                    changed: Notify::new(),
                })
            })
            .clone()
    }

    /// Appends `events` of `service` in order, skipping ids already in the
    /// stream.
    pub fn publish(&self, service: &str, events: &[EventEnvelope]) -> Result<(), Error> {
        let stream = self.stream(service);
        {
            let mut s = stream.state.lock().expect("stream lock");
            for e in events {
                if !s.ids.insert(e.id.clone()) {
                    continue;
                }
                s.log.push_back((crate::subject(service, e), e.clone()));
                if s.log.len() > MAX_EVENTS_PER_STREAM
                    && let Some((_, dropped)) = s.log.pop_front()
                {
                    s.ids.remove(&dropped.id);
                    s.first_seq += 1;
                }
            }
        }
        stream.changed.notify_waiters();
        Ok(())
    }

    /// The durable consumer `name` of `service`'s events on `filter`.
    /// Asking again for an existing name resumes it (with the options it
    /// was created with, as JetStream's durable consumers do).
    pub fn consumer(
        &self,
        name: &str,
        service: &str,
        filter: &str,
        options: &ConsumerOptions,
    ) -> InProcessConsumer {
        let stream = self.stream(service);
        let state = {
            let mut s = stream.state.lock().expect("stream lock");
            let first_seq = s.first_seq;
            s.consumers
                .entry(name.to_owned())
                .or_insert_with(|| {
                    Arc::new(Mutex::new(ConsumerState {
                        filter: filter.split('.').map(str::to_owned).collect(),
                        options: options.clone(),
                        next_seq: first_seq,
                        pending: BTreeMap::new(),
                    }))
                })
                .clone()
        };
        InProcessConsumer { stream, state }
    }
}

/// A handle on one durable in-process consumer.
pub struct InProcessConsumer {
    stream: Arc<Stream>,
    state: Arc<Mutex<ConsumerState>>,
}

/// Acknowledges one in-process delivery.
pub(crate) struct InProcessAcker {
    stream: Arc<Stream>,
    state: Arc<Mutex<ConsumerState>>,
    seq: u64,
    deliveries: u64,
}

impl InProcessAcker {
    pub(crate) fn ack(self) {
        self.state
            .lock()
            .expect("consumer lock")
            .pending
            .remove(&self.seq);
        self.stream.changed.notify_waiters();
    }

    pub(crate) fn nak(self, delay: Option<Duration>) {
        {
            let mut c = self.state.lock().expect("consumer lock");
            let delay = delay.unwrap_or_else(|| backoff(&c.options, self.deliveries));
            if let Some(entry) = c.pending.get_mut(&self.seq) {
                entry.1 = Instant::now() + delay;
            }
        }
        self.stream.changed.notify_waiters();
    }
}

/// The redelivery delay after the `deliveries`-th delivery was refused.
fn backoff(options: &ConsumerOptions, deliveries: u64) -> Duration {
    let i = usize::try_from(deliveries.saturating_sub(1)).unwrap_or(usize::MAX);
    options
        .backoff
        .get(i)
        .or(options.backoff.last())
        .copied()
        .unwrap_or_default()
}

/// Whether a NATS subject matches a filter split into tokens (`*` one
/// token, `>` the rest).
fn matches(filter: &[String], subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for f in filter {
        match (f.as_str(), tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

impl InProcessConsumer {
    /// The next delivery, waiting for one.
    pub async fn next(&mut self) -> Result<Delivery, Error> {
        loop {
            // Register for wake-ups before looking, so a publish between
            // the look and the wait is not missed.
            let changed = self.stream.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait_until = {
                let stream = self.stream.state.lock().expect("stream lock");
                let mut c = self.state.lock().expect("consumer lock");
                let now = Instant::now();
                let max = u64::from(c.options.max_deliver.max(1));
                let ack_wait = c.options.ack_wait;
                // Events that fell off the log cannot be delivered.
                let first_seq = stream.first_seq;
                c.pending.retain(|seq, _| *seq >= first_seq);
                c.next_seq = c.next_seq.max(first_seq);
                // An event delivered `max_deliver` times is given up on once
                // its last wait is over (JetStream stops delivering it).
                c.pending.retain(|_, (n, due)| *n < max || *due > now);
                let due = c
                    .pending
                    .iter()
                    .find(|(_, (_, at))| *at <= now)
                    .map(|(seq, (n, _))| (*seq, *n));
                let chosen = match due {
                    Some((seq, n)) => Some((seq, n + 1)),
                    None => {
                        let mut found = None;
                        while c.next_seq < first_seq + stream.log.len() as u64 {
                            let seq = c.next_seq;
                            c.next_seq += 1;
                            let (subject, _) = &stream.log[(seq - first_seq) as usize];
                            if matches(&c.filter, subject) {
                                found = Some((seq, 1));
                                break;
                            }
                        }
                        found
                    }
                };
                if let Some((seq, deliveries)) = chosen {
                    c.pending.insert(seq, (deliveries, now + ack_wait));
                    let (subject, envelope) = stream.log[(seq - first_seq) as usize].clone();
                    return Ok(Delivery {
                        envelope,
                        subject,
                        attempt: deliveries,
                        acker: Acker::InProcess(InProcessAcker {
                            stream: self.stream.clone(),
                            state: self.state.clone(),
                            seq,
                            deliveries,
                        }),
                    });
                }
                c.pending.values().map(|(_, at)| *at).min()
            };
            match wait_until {
                Some(at) => {
                    tokio::select! {
                        _ = &mut changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_filters_match_like_nats() {
        let f = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert!(matches(
            &f("rapport.profiles.>"),
            "rapport.profiles.CustomerCreated"
        ));
        assert!(!matches(&f("rapport.profiles.>"), "rapport.profiles"));
        assert!(matches(
            &f("rapport.*.CustomerCreated"),
            "rapport.profiles.CustomerCreated"
        ));
        assert!(!matches(
            &f("rapport.*.CustomerCreated"),
            "rapport.profiles.CustomerErased"
        ));
        assert!(matches(
            &f("rapport.profiles.CustomerCreated"),
            "rapport.profiles.CustomerCreated"
        ));
        assert!(!matches(
            &f("rapport.profiles"),
            "rapport.profiles.CustomerCreated"
        ));
    }

    #[test]
    fn backoff_repeats_its_last_step() {
        let o = ConsumerOptions {
            backoff: vec![Duration::from_secs(1), Duration::from_secs(5)],
            ..ConsumerOptions::default()
        };
        assert_eq!(backoff(&o, 1), Duration::from_secs(1));
        assert_eq!(backoff(&o, 2), Duration::from_secs(5));
        assert_eq!(backoff(&o, 9), Duration::from_secs(5));
    }
}
