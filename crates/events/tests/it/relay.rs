//! The outbox relay on a real database (SQLite, or PostgreSQL when
//! `RAPPORT_TEST_POSTGRES_URL` is set) to the in-process bus: committed rows
//! go out once, oldest first, are marked published, a wake-up sends them
//! promptly, several relays at once keep the order, and published rows are
//! purged after their retention.
use std::time::Duration;

use rapport_events::{
    Bus, ConsumerOptions, EventEnvelope,
    relay::{self, Relay, Wake},
    subjects_of,
};
use rapport_store::{Db, DbOptions, outbox};
use rapport_testkit::TestDb;
use sea_orm::{ConnectionTrait as _, EntityTrait as _};
use sea_orm_migration::SchemaManager;

use crate::event;

const SOON: Duration = Duration::from_secs(10);

async fn outbox_db() -> (TestDb, Db) {
    let testdb = TestDb::fresh().await.unwrap();
    let db = Db::connect(&testdb.url(), &DbOptions::default())
        .await
        .unwrap();
    rapport_store::schema::create_outbox(&SchemaManager::new(&db.writer))
        .await
        .unwrap();
    (testdb, db)
}

/// Commits `events` to the outbox, as a service's change would.
async fn commit(db: &Db, events: &[EventEnvelope]) {
    for e in events {
        db.writer.execute(&outbox::append_insert(e)).await.unwrap();
    }
}

async fn received(bus: &Bus, service: &str, n: usize) -> Vec<String> {
    let mut c = bus
        .consumer(
            "check",
            service,
            &subjects_of(service),
            &ConsumerOptions::default(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..n {
        let d = tokio::time::timeout(SOON, c.next())
            .await
            .expect("delivered")
            .unwrap();
        ids.push(d.envelope.id.clone());
        d.ack().await.unwrap();
    }
    if let Ok(extra) = tokio::time::timeout(Duration::from_millis(300), c.next()).await {
        panic!("published twice: {:?}", extra.map(|d| d.envelope.id));
    }
    ids
}

#[tokio::test]
async fn committed_rows_are_published_once_in_order_and_marked() {
    let (_t, db) = outbox_db().await;
    let bus = Bus::in_process();
    let events: Vec<_> = (0..300)
        .map(|i| event("Changed", &format!("things/{}", i % 7)))
        .collect();
    commit(&db, &events).await;
    let mut published = 0;
    loop {
        let n = relay::relay_once(&db, &bus, "test").await.unwrap();
        if n == 0 {
            break;
        }
        published += n;
    }
    assert_eq!(published, events.len());
    let ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(received(&bus, "test", events.len()).await, ids);
    let unpublished = outbox::Entity::find()
        .all(&db.reader)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.publish_time.is_none())
        .count();
    assert_eq!(unpublished, 0);
    assert_eq!(relay::lag(&db, "test").await.unwrap(), Duration::ZERO);
}

#[tokio::test]
async fn a_wake_publishes_promptly() {
    let (_t, db) = outbox_db().await;
    let bus = Bus::in_process();
    let wake = Wake::default();
    let relay = Relay::spawn(
        db.clone(),
        bus.clone(),
        "test",
        wake.clone(),
        Duration::from_secs(3600),
    );
    let events: Vec<_> = (0..3)
        .map(|i| event("Changed", &format!("things/{i}")))
        .collect();
    commit(&db, &events).await;
    wake.wake();
    let ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(received(&bus, "test", 3).await, ids);
    relay.stop().await;
}

#[tokio::test]
async fn relays_running_at_once_publish_each_event_once_in_order() {
    let (_t, db) = outbox_db().await;
    let bus = Bus::in_process();
    let events: Vec<_> = (0..600)
        .map(|i| event("Changed", &format!("things/{}", i % 3)))
        .collect();
    commit(&db, &events).await;
    // Three replicas' relays race for the same rows.
    let relays: Vec<_> = (0..3)
        .map(|_| {
            let (db, bus) = (db.clone(), bus.clone());
            tokio::spawn(async move {
                let mut idle = 0;
                while idle < 3 {
                    match relay::relay_once(&db, &bus, "test").await.unwrap() {
                        0 => {
                            idle += 1;
                            tokio::task::yield_now().await;
                        }
                        _ => idle = 0,
                    }
                }
            })
        })
        .collect();
    for r in relays {
        r.await.unwrap();
    }
    // Whatever the interleaving, every event once, in order.
    while relay::relay_once(&db, &bus, "test").await.unwrap() > 0 {}
    let ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(received(&bus, "test", events.len()).await, ids);
}

#[tokio::test]
async fn published_rows_are_purged_after_their_retention_and_others_kept() {
    let (_t, db) = outbox_db().await;
    let bus = Bus::in_process();
    commit(&db, &[event("Changed", "things/1")]).await;
    relay::relay_once(&db, &bus, "test").await.unwrap();
    let pending = event("Changed", "things/2");
    commit(&db, std::slice::from_ref(&pending)).await;
    assert_eq!(
        relay::purge(&db, Duration::from_secs(3600)).await.unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(relay::purge(&db, Duration::ZERO).await.unwrap(), 1);
    let left = outbox::Entity::find().all(&db.reader).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, pending.id);
}

#[tokio::test]
async fn a_relay_publishes_only_its_own_services_events() {
    // Services that share a database share the outbox table.
    let (_t, db) = outbox_db().await;
    let bus = Bus::in_process();
    let mine = event("Changed", "things/1");
    let mut theirs = event("Changed", "things/2");
    theirs.r#type = "rapport.other.v1.Changed".into();
    commit(&db, &[mine.clone(), theirs.clone()]).await;
    assert_eq!(relay::relay_once(&db, &bus, "test").await.unwrap(), 1);
    assert_eq!(relay::relay_once(&db, &bus, "test").await.unwrap(), 0);
    assert_eq!(received(&bus, "test", 1).await, vec![mine.id.clone()]);
    // The other service's relay publishes its own.
    assert_eq!(relay::relay_once(&db, &bus, "other").await.unwrap(), 1);
}
