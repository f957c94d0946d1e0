//! Consumers apply each event once, whatever the bus does: redeliveries
//! (after a failure, or when an acknowledgement was lost) are absorbed by
//! the inbox in the same transaction as the effect; poison events and
//! events still failing after `max_deliver` are parked as dead letters
//! while the rest keep flowing, and replay once fixed. On SQLite and
//! PostgreSQL, on the in-process bus and JetStream.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use rapport_events::{
    Bus, ConsumerOptions, EventEnvelope,
    consume::{self, Applied, ConsumeError, Handler, HandlerError, Subscription},
    subjects_of,
};
use rapport_store::{Db, DbOptions};
use rapport_testkit::TestDb;
use sea_orm::{ConnectionTrait as _, DatabaseTransaction, Statement};
use sea_orm_migration::SchemaManager;

use crate::{buses, event, fresh_service};

const SOON: Duration = Duration::from_secs(10);

async fn consumer_db() -> (TestDb, Db) {
    let testdb = TestDb::fresh().await.unwrap();
    let db = Db::connect(&testdb.url(), &DbOptions::default())
        .await
        .unwrap();
    rapport_events::schema::create_consumer_tables(&SchemaManager::new(&db.writer))
        .await
        .unwrap();
    db.writer
        .execute_unprepared("CREATE TABLE effects (event_id VARCHAR(64) NOT NULL)")
        .await
        .unwrap();
    (testdb, db)
}

/// Effects recorded for `id` (not unique on purpose: a double apply shows).
async fn effects(db: &Db, id: &str) -> i64 {
    let row = db
        .reader
        .query_one_raw(Statement::from_string(
            db.reader.get_database_backend(),
            format!("SELECT COUNT(*) FROM effects WHERE event_id = '{id}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn record(txn: &DatabaseTransaction, id: &str) {
    txn.execute_unprepared(&format!("INSERT INTO effects (event_id) VALUES ('{id}')"))
        .await
        .unwrap();
}

fn handler<F>(f: F) -> Handler
where
    F: for<'t> Fn(
            &'t DatabaseTransaction,
            &'t EventEnvelope,
        ) -> futures::future::BoxFuture<'t, Result<(), HandlerError>>
        + Send
        + Sync
        + 'static,
{
    Arc::new(f)
}

/// Records the effect, failing transiently for an event's first `fails`
/// attempts and rejecting events whose subject is `things/poison`.
fn flaky(fails: u32) -> Handler {
    let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    handler(move |txn, env| {
        let attempts = attempts.clone();
        Box::pin(async move {
            // The effect is written first: a failure must roll it back.
            record(txn, &env.id).await;
            if env.subject == "things/poison" {
                return Err(HandlerError::Reject("poison".into()));
            }
            let mut attempts = attempts.lock().unwrap();
            let n = attempts.entry(env.id.clone()).or_default();
            *n += 1;
            if *n <= fails {
                return Err(HandlerError::Retry(format!("attempt {n} fails")));
            }
            Ok(())
        })
    })
}

fn subscription(service: &str, max_deliver: u32) -> Subscription {
    Subscription {
        consumer: "effects".into(),
        service: service.into(),
        filter: subjects_of(service),
        options: ConsumerOptions {
            ack_wait: Duration::from_secs(30),
            max_deliver,
            backoff: vec![Duration::from_millis(20)],
        },
    }
}

/// Delivers and processes events until `done` says so.
async fn drive(
    db: &Db,
    bus: &Bus,
    sub: &Subscription,
    handler: &Handler,
    mut done: impl FnMut() -> bool,
) {
    let mut consumer = bus
        .consumer(&sub.consumer, &sub.service, &sub.filter, &sub.options)
        .await
        .unwrap();
    while !done() {
        let d = tokio::time::timeout(SOON, consumer.next())
            .await
            .expect("a delivery")
            .unwrap();
        consume::process(db, sub, d, handler).await.unwrap();
    }
}

#[tokio::test]
async fn each_event_applies_once_however_often_it_is_delivered() {
    for (name, bus) in buses().await {
        let (_t, db) = consumer_db().await;
        for k in 1..=5u32 {
            let service = fresh_service();
            let e = event("Changed", "things/1");
            bus.publish(&service, std::slice::from_ref(&e))
                .await
                .unwrap();
            let sub = subscription(&service, 10);
            let h = flaky(k - 1);
            let mut processed = 0;
            drive(&db, &bus, &sub, &h, || {
                processed += 1;
                processed > k
            })
            .await;
            assert_eq!(effects(&db, &e.id).await, 1, "{name}: k = {k}");
            // The acknowledgement was lost: the bus delivers it once more.
            assert_eq!(
                consume::apply(&db, "effects", &e, &h).await.unwrap(),
                Applied::Before,
                "{name}"
            );
            assert_eq!(
                effects(&db, &e.id).await,
                1,
                "{name}: k = {k}, after a lost ack"
            );
        }
    }
}

#[tokio::test]
async fn a_failed_handler_leaves_no_effect_and_no_inbox_entry() {
    let (_t, db) = consumer_db().await;
    let e = event("Changed", "things/1");
    let h = flaky(1);
    let err = consume::apply(&db, "effects", &e, &h).await.unwrap_err();
    assert!(matches!(err, ConsumeError::Handler(HandlerError::Retry(_))));
    assert_eq!(effects(&db, &e.id).await, 0);
    // Not in the inbox either: the next delivery applies it.
    assert_eq!(
        consume::apply(&db, "effects", &e, &h).await.unwrap(),
        Applied::Now
    );
    assert_eq!(effects(&db, &e.id).await, 1);
}

#[tokio::test]
async fn poison_events_are_parked_while_the_others_keep_flowing() {
    for (name, bus) in buses().await {
        let (_t, db) = consumer_db().await;
        let service = fresh_service();
        let events: Vec<EventEnvelope> = (0..20)
            .map(|i| {
                let subject = if i % 2 == 0 {
                    "things/poison".to_owned()
                } else {
                    format!("things/{i}")
                };
                event("Changed", &subject)
            })
            .collect();
        bus.publish(&service, &events).await.unwrap();
        let sub = subscription(&service, 3);
        let h = flaky(0);
        let mut n = 0;
        drive(&db, &bus, &sub, &h, || {
            n += 1;
            n > events.len()
        })
        .await;
        for (i, e) in events.iter().enumerate() {
            let expected = if i % 2 == 0 { 0 } else { 1 };
            assert_eq!(effects(&db, &e.id).await, expected, "{name}: event {i}");
        }
        let parked = consume::dead_letters_page(&db, Some("effects"), 100)
            .await
            .unwrap();
        assert_eq!(parked.len(), 10, "{name}");
        assert!(
            parked
                .iter()
                .all(|p| p.error == "poison" && p.tenant == "acme"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_event_failing_past_max_deliver_is_parked_and_not_delivered_again() {
    for (name, bus) in buses().await {
        let (_t, db) = consumer_db().await;
        let service = fresh_service();
        let e = event("Changed", "things/1");
        bus.publish(&service, std::slice::from_ref(&e))
            .await
            .unwrap();
        let sub = subscription(&service, 3);
        let h = flaky(u32::MAX);
        let mut n = 0;
        drive(&db, &bus, &sub, &h, || {
            n += 1;
            n > 3
        })
        .await;
        let parked = consume::dead_letters_page(&db, Some("effects"), 10)
            .await
            .unwrap();
        assert_eq!(parked.len(), 1, "{name}");
        assert_eq!(
            (parked[0].event_id.as_str(), parked[0].attempts),
            (e.id.as_str(), 3),
            "{name}"
        );
        let mut consumer = bus
            .consumer(&sub.consumer, &sub.service, &sub.filter, &sub.options)
            .await
            .unwrap();
        if let Ok(d) = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await {
            panic!(
                "{name}: delivered after it was parked: {:?}",
                d.map(|d| d.attempt)
            );
        }
    }
}

#[tokio::test]
async fn a_parked_event_replays_once_the_cause_is_fixed() {
    let (_t, db) = consumer_db().await;
    let e = event("Changed", "things/poison");
    consume::park(&db, "effects", &e.id, Some(&e), "poison", 1)
        .await
        .unwrap();
    // Still poison: it stays, with the new error.
    let err = consume::replay(&db, "effects", &e.id, &flaky(0))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ConsumeError::Handler(HandlerError::Reject(_))
    ));
    assert_eq!(
        consume::dead_letters_page(&db, None, 10).await.unwrap()[0].attempts,
        2
    );
    // Fixed: applied once, and gone from the dead letters.
    let fixed = handler(|txn, env| {
        Box::pin(async move {
            record(txn, &env.id).await;
            Ok(())
        })
    });
    assert_eq!(
        consume::replay(&db, "effects", &e.id, &fixed)
            .await
            .unwrap(),
        Some(Applied::Now)
    );
    assert_eq!(effects(&db, &e.id).await, 1);
    assert!(
        consume::dead_letters_page(&db, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        consume::replay(&db, "effects", &e.id, &fixed)
            .await
            .unwrap(),
        None
    );
}

/// The running consumer (`consume::spawn`) applies what is waiting in
/// batches, one transaction each with a savepoint per event: a rejected or
/// retried event rolls back only its own effect, the others of its batch
/// commit once, and each event ends applied once or parked.
#[tokio::test]
async fn a_running_consumer_applies_batches_where_one_failure_spoils_nothing_else() {
    for (name, bus) in buses().await {
        let (_t, db) = consumer_db().await;
        let service = fresh_service();
        // 100 waiting events (more than one batch): every third is poison,
        // and every event fails on its first delivery.
        let events: Vec<EventEnvelope> = (0..100)
            .map(|i| {
                let subject = if i % 3 == 0 {
                    "things/poison".to_owned()
                } else {
                    format!("things/{i}")
                };
                event("Changed", &subject)
            })
            .collect();
        bus.publish(&service, &events).await.unwrap();
        let sub = subscription(&service, 3);
        let running = consume::spawn(db.clone(), bus.clone(), sub, flaky(1));
        let deadline = tokio::time::Instant::now() + SOON * 3;
        loop {
            let parked = consume::dead_letters_page(&db, Some("effects"), 1000)
                .await
                .unwrap()
                .len();
            let mut applied = 0;
            for e in events.iter().filter(|e| e.subject != "things/poison") {
                applied += effects(&db, &e.id).await;
            }
            if parked == 34 && applied == 66 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {parked} parked and {applied} applied of 34 and 66"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        running.abort();
        for (i, e) in events.iter().enumerate() {
            let expected = if i % 3 == 0 { 0 } else { 1 };
            assert_eq!(effects(&db, &e.id).await, expected, "{name}: event {i}");
        }
    }
}

/// A batch records its inbox rows in one statement: events applied before
/// (an acknowledgement lost) and a second copy of one event in the same
/// batch run no handler again, the others run once.
#[tokio::test]
async fn a_batch_skips_what_was_applied_before_and_copies_within_it() {
    for (name, bus) in buses().await {
        let (_t, db) = consumer_db().await;
        let service = fresh_service();
        let events: Vec<EventEnvelope> = (0..10)
            .map(|i| event("Changed", &format!("things/{i}")))
            .collect();
        // Applied before the consumer starts, as if its ack was lost.
        for e in &events[..4] {
            consume::apply(&db, "effects", e, &flaky(0)).await.unwrap();
        }
        let mut published = events.clone();
        // A copy of an event in the same batch (the in-process bus does not
        // deduplicate; JetStream does, within its window).
        published.push(events[7].clone());
        bus.publish(&service, &published).await.unwrap();
        let running = consume::spawn(db.clone(), bus.clone(), subscription(&service, 3), flaky(0));
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let mut applied = 0;
            for e in &events {
                applied += effects(&db, &e.id).await;
            }
            if applied >= 10 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {applied} of 10 applied"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        running.abort();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(effects(&db, &e.id).await, 1, "{name}: event {i}");
        }
    }
}
