//! rapport-events' integration tests, one binary: the bus conformance suite
//! (every case on the in-process bus, and on NATS JetStream when
//! `RAPPORT_TEST_NATS_URL` names a server — CI starts one), and the outbox
//! relay, consumers and durable timers on SQLite and PostgreSQL.
mod conformance;
mod consume;
mod relay;
mod timers;

use rapport_events::{Bus, EventEnvelope, EventsConfig};

/// The buses under test: in-process always, JetStream when configured.
pub async fn buses() -> Vec<(&'static str, Bus)> {
    let mut out = vec![("in-process", Bus::in_process())];
    if let Some(url) = std::env::var("RAPPORT_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        let config = EventsConfig {
            nats_url: Some(url),
            stream_storage: "memory".into(),
            ..EventsConfig::default()
        };
        let bus = Bus::from_config(&config, &Bus::in_process())
            .await
            .expect("connecting to RAPPORT_TEST_NATS_URL");
        out.push(("jetstream", bus));
    }
    out
}

/// A producing service of this test only, so tests sharing a NATS server
/// do not see each other's streams.
pub fn fresh_service() -> String {
    format!("t{}", uuid::Uuid::now_v7().simple())
}

/// An event of `tenant` about `subject`, of `event_type`.
pub fn event(event_type: &str, subject: &str) -> EventEnvelope {
    EventEnvelope {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: format!("rapport.test.v1.{event_type}"),
        tenant: "acme".into(),
        subject: subject.into(),
        ..Default::default()
    }
}
