//! What every bus guarantees, checked on each implementation: order,
//! deduplication by event id, explicit acknowledgement, redelivery (after a
//! negative acknowledgement or the acknowledgement wait), a delivery limit,
//! durable consumers that resume, and subject filters.
use std::time::Duration;

use rapport_events::{ConsumerOptions, Delivery, subjects_of};

use crate::{buses, event, fresh_service};

/// The longest a delivery that should come may take; a bound, not a wait.
const SOON: Duration = Duration::from_secs(10);

fn options(ack_wait: Duration, max_deliver: u32) -> ConsumerOptions {
    ConsumerOptions {
        ack_wait,
        max_deliver,
        backoff: Vec::new(),
    }
}

async fn next(c: &mut rapport_events::Consumer, bus: &str) -> Delivery {
    tokio::time::timeout(SOON, c.next())
        .await
        .unwrap_or_else(|_| panic!("{bus}: nothing delivered within {SOON:?}"))
        .unwrap_or_else(|e| panic!("{bus}: {e}"))
}

/// Nothing more is delivered within `within` (a bounded look, used only
/// where the guarantee is that nothing comes).
async fn nothing_within(c: &mut rapport_events::Consumer, within: Duration, bus: &str) {
    if let Ok(d) = tokio::time::timeout(within, c.next()).await {
        panic!("{bus}: unexpected delivery {:?}", d.map(|d| d.envelope.id));
    }
}

#[tokio::test]
async fn events_arrive_in_order_once_per_id() {
    for (name, bus) in buses().await {
        let service = fresh_service();
        let events: Vec<_> = (0..5)
            .map(|i| event("Changed", &format!("things/{i}")))
            .collect();
        bus.publish(&service, &events).await.unwrap();
        // The relay's retry after a crash publishes the same ids again.
        bus.publish(&service, &events[2..]).await.unwrap();
        let mut c = bus
            .consumer(
                "reader",
                &service,
                &subjects_of(&service),
                &options(Duration::from_secs(30), 5),
            )
            .await
            .unwrap();
        for expected in &events {
            let d = next(&mut c, name).await;
            assert_eq!(d.envelope.id, expected.id, "{name}: order");
            assert_eq!(d.subject, format!("rapport.{service}.Changed"), "{name}");
            assert_eq!(d.attempt, 1, "{name}");
            d.ack().await.unwrap();
        }
        nothing_within(&mut c, Duration::from_millis(500), name).await;
    }
}

#[tokio::test]
async fn a_negative_acknowledgement_delivers_again() {
    for (name, bus) in buses().await {
        let service = fresh_service();
        let e = event("Changed", "things/1");
        bus.publish(&service, std::slice::from_ref(&e))
            .await
            .unwrap();
        let mut c = bus
            .consumer(
                "reader",
                &service,
                &subjects_of(&service),
                &options(Duration::from_secs(30), 5),
            )
            .await
            .unwrap();
        let first = next(&mut c, name).await;
        first.nak(Some(Duration::from_millis(50))).await.unwrap();
        let again = next(&mut c, name).await;
        assert_eq!(
            (again.envelope.id.as_str(), again.attempt),
            (e.id.as_str(), 2),
            "{name}"
        );
        again.ack().await.unwrap();
        nothing_within(&mut c, Duration::from_millis(500), name).await;
    }
}

#[tokio::test]
async fn an_unacknowledged_event_comes_back_after_the_wait_until_the_limit() {
    for (name, bus) in buses().await {
        let service = fresh_service();
        let e = event("Changed", "things/1");
        bus.publish(&service, std::slice::from_ref(&e))
            .await
            .unwrap();
        let mut c = bus
            .consumer(
                "reader",
                &service,
                &subjects_of(&service),
                &options(Duration::from_secs(1), 2),
            )
            .await
            .unwrap();
        let first = next(&mut c, name).await;
        assert_eq!(first.attempt, 1, "{name}");
        drop(first); // neither ack nor nak: the consumer crashed
        let second = next(&mut c, name).await;
        assert_eq!(
            (second.envelope.id.as_str(), second.attempt),
            (e.id.as_str(), 2),
            "{name}"
        );
        drop(second);
        // max_deliver = 2: no third delivery.
        nothing_within(&mut c, Duration::from_secs(3), name).await;
    }
}

#[tokio::test]
async fn a_durable_consumer_resumes_after_what_it_acknowledged() {
    for (name, bus) in buses().await {
        let service = fresh_service();
        let events: Vec<_> = (0..4)
            .map(|i| event("Changed", &format!("things/{i}")))
            .collect();
        bus.publish(&service, &events[..2]).await.unwrap();
        let opts = options(Duration::from_secs(30), 5);
        {
            let mut c = bus
                .consumer("reader", &service, &subjects_of(&service), &opts)
                .await
                .unwrap();
            for _ in 0..2 {
                next(&mut c, name).await.ack().await.unwrap();
            }
        }
        bus.publish(&service, &events[2..]).await.unwrap();
        let mut again = bus
            .consumer("reader", &service, &subjects_of(&service), &opts)
            .await
            .unwrap();
        for expected in &events[2..] {
            let d = next(&mut again, name).await;
            assert_eq!(d.envelope.id, expected.id, "{name}: resumed in order");
            d.ack().await.unwrap();
        }
        // Another consumer starts from the beginning.
        let mut other = bus
            .consumer("auditor", &service, &subjects_of(&service), &opts)
            .await
            .unwrap();
        assert_eq!(
            next(&mut other, name).await.envelope.id,
            events[0].id,
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_filter_selects_event_types() {
    for (name, bus) in buses().await {
        let service = fresh_service();
        let events = vec![
            event("Created", "things/1"),
            event("Erased", "things/1"),
            event("Created", "things/2"),
        ];
        bus.publish(&service, &events).await.unwrap();
        let mut c = bus
            .consumer(
                "creations",
                &service,
                &format!("rapport.{service}.Created"),
                &options(Duration::from_secs(30), 5),
            )
            .await
            .unwrap();
        for expected in [&events[0], &events[2]] {
            let d = next(&mut c, name).await;
            assert_eq!(d.envelope.id, expected.id, "{name}");
            d.ack().await.unwrap();
        }
        nothing_within(&mut c, Duration::from_millis(500), name).await;
    }
}
