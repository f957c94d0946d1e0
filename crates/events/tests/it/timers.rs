//! Durable timers on SQLite and PostgreSQL, driven by a manual clock: a
//! timer fires at its due time and not before, once, whatever the number of
//! workers; reschedule and cancel by key; it survives a restart; a handler
//! that fails transiently fires again after a backoff.
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rapport_events::{
    consume::HandlerError,
    timers::{self, Fired, Timer, TimerHandler},
};
use rapport_store::{Db, DbOptions};
use rapport_testkit::TestDb;
use rapport_usecase::ManualClock;
use sea_orm::{ConnectionTrait as _, DatabaseTransaction, Statement};
use sea_orm_migration::SchemaManager;

async fn timers_db() -> (TestDb, Db) {
    let testdb = TestDb::fresh().await.unwrap();
    let db = open(&testdb).await;
    let schema = SchemaManager::new(&db.writer);
    rapport_events::schema::create_timers(&schema)
        .await
        .unwrap();
    rapport_events::schema::index_timers_by_kind(&schema)
        .await
        .unwrap();
    db.writer
        .execute_unprepared(
            "CREATE TABLE fired (key VARCHAR(256) NOT NULL, payload VARCHAR(64) NOT NULL)",
        )
        .await
        .unwrap();
    (testdb, db)
}

async fn open(testdb: &TestDb) -> Db {
    Db::connect(&testdb.url(), &DbOptions::default())
        .await
        .unwrap()
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn timer(key: &str, due: DateTime<Utc>, payload: &str) -> Timer {
    Timer {
        tenant: "acme".into(),
        key: key.into(),
        kind: "test".into(),
        due,
        payload: payload.as_bytes().to_vec(),
    }
}

/// Records each firing (key and payload) in the firing's transaction;
/// fails transiently while `fail_first` attempts are not over.
fn recorder(fail_first: u64) -> TimerHandler {
    Arc::new(move |txn: &DatabaseTransaction, fired: &Fired| {
        Box::pin(async move {
            record(txn, fired).await.unwrap();
            if fired.attempt <= fail_first {
                return Err(HandlerError::Retry("not yet".into()));
            }
            Ok(())
        })
    })
}

/// Records `fired` (key and payload) in its transaction; the payload.
async fn record(txn: &DatabaseTransaction, fired: &Fired) -> Result<String, sea_orm::DbErr> {
    let payload = String::from_utf8_lossy(&fired.timer.payload).into_owned();
    txn.execute_unprepared(&format!(
        "INSERT INTO fired (key, payload) VALUES ('{}', '{payload}')",
        fired.timer.key
    ))
    .await?;
    Ok(payload)
}

async fn fired(db: &Db) -> Vec<(String, String)> {
    db.reader
        .query_all_raw(Statement::from_string(
            db.reader.get_database_backend(),
            "SELECT key, payload FROM fired ORDER BY key",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_timer_fires_at_its_due_time_not_before_and_once() {
    let (_t, db) = timers_db().await;
    let clock = ManualClock::at(start());
    let h = recorder(0);
    timers::schedule(
        &db.writer,
        &timer("t1", start() + Duration::minutes(5), "p"),
    )
    .await
    .unwrap();
    clock.advance(Duration::minutes(4));
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        0
    );
    assert!(fired(&db).await.is_empty());
    clock.advance(Duration::minutes(1));
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        1
    );
    clock.advance(Duration::hours(1));
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        0
    );
    assert_eq!(fired(&db).await, [("t1".into(), "p".into())]);
    assert_eq!(timers::get(&db.reader, "acme", "t1").await.unwrap(), None);
}

#[tokio::test]
async fn reschedule_and_cancel_by_key() {
    let (_t, db) = timers_db().await;
    let clock = ManualClock::at(start());
    let h = recorder(0);
    timers::schedule(
        &db.writer,
        &timer("moved", start() + Duration::minutes(1), "old"),
    )
    .await
    .unwrap();
    timers::schedule(
        &db.writer,
        &timer("moved", start() + Duration::minutes(10), "new"),
    )
    .await
    .unwrap();
    timers::schedule(
        &db.writer,
        &timer("dropped", start() + Duration::minutes(1), "x"),
    )
    .await
    .unwrap();
    assert!(timers::cancel(&db.writer, "acme", "dropped").await.unwrap());
    assert!(!timers::cancel(&db.writer, "acme", "dropped").await.unwrap());
    clock.advance(Duration::minutes(5));
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        0
    );
    clock.advance(Duration::minutes(5));
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        1
    );
    assert_eq!(fired(&db).await, [("moved".into(), "new".into())]);
}

#[tokio::test]
async fn timers_survive_a_restart() {
    let (testdb, db) = timers_db().await;
    timers::schedule(&db.writer, &timer("kept", start(), "p"))
        .await
        .unwrap();
    db.close().await;
    let reopened = open(&testdb).await;
    let clock = ManualClock::at(start());
    assert_eq!(
        timers::fire_due(&reopened, &clock, &["test"], &recorder(0))
            .await
            .unwrap(),
        1
    );
    assert_eq!(fired(&reopened).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_fire_each_timer_once() {
    let (_t, db) = timers_db().await;
    for i in 0..60 {
        timers::schedule(&db.writer, &timer(&format!("k{i:02}"), start(), "p"))
            .await
            .unwrap();
    }
    let clock = ManualClock::at(start());
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (db, clock, h) = (db.clone(), clock.clone(), recorder(0));
            tokio::spawn(async move {
                let mut total = 0;
                loop {
                    let n = timers::fire_due(&db, &clock, &["test"], &h).await.unwrap();
                    if n == 0 && timers::fire_due(&db, &clock, &["test"], &h).await.unwrap() == 0 {
                        return total;
                    }
                    total += n;
                }
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert_eq!(total, 60);
    let keys: Vec<String> = fired(&db).await.into_iter().map(|(k, _)| k).collect();
    let expected: Vec<String> = (0..60).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, expected, "each timer fired exactly once");
}

/// Wraps `inner`, counting each firing that starts while another of its
/// lane is in flight in this worker.
fn lane_watch(inner: TimerHandler, overlaps: Arc<std::sync::atomic::AtomicUsize>) -> TimerHandler {
    let in_flight: Arc<std::sync::Mutex<std::collections::HashSet<Vec<u8>>>> = Arc::default();
    Arc::new(move |txn: &DatabaseTransaction, fired: &Fired| {
        let lane = timers::payload_head_lane(&fired.timer).to_vec();
        if !in_flight.lock().unwrap().insert(lane.clone()) {
            overlaps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let (in_flight, applied) = (in_flight.clone(), inner(txn, fired));
        Box::pin(async move {
            let out = applied.await;
            // Gives the worker's other firings a turn while this one is
            // still in flight.
            tokio::task::yield_now().await;
            in_flight.lock().unwrap().remove(&lane);
            out
        })
    })
}

/// Two workers at once, each firing several timers at a time, over 200 due
/// timers in 3 lanes: every timer fires exactly once, and a worker never
/// has two timers of one lane in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_fire_each_timer_once_and_a_lane_in_turn() {
    two_workers_over_three_lanes(timers::Firing::concurrent(4, timers::payload_head_lane)).await;
}

/// The same with batched firing: each transaction fires its share of a
/// pass and commits once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_workers_fire_each_timer_once_and_a_lane_in_turn() {
    two_workers_over_three_lanes(timers::Firing::batched(4, timers::payload_head_lane)).await;
}

async fn two_workers_over_three_lanes(firing: timers::Firing) {
    let (_t, db) = timers_db().await;
    let keys: Vec<String> = (0..200).map(|i| format!("k{i:03}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let due = start() - Duration::seconds(i64::try_from(i).unwrap());
        timers::schedule(&db.writer, &timer(key, due, &format!("lane{} {i}", i % 3)))
            .await
            .unwrap();
    }
    let clock = ManualClock::at(start());
    let overlaps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (db, clock) = (db.clone(), clock.clone());
            let h = lane_watch(recorder(0), overlaps.clone());
            tokio::spawn(async move {
                let mut total = 0;
                loop {
                    let pass = || timers::fire_due_with(&db, &clock, &["test"], &h, firing);
                    let n = pass().await.unwrap();
                    if n == 0 && pass().await.unwrap() == 0 {
                        return total;
                    }
                    total += n;
                }
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert_eq!(total, 200);
    let fired_keys: Vec<String> = fired(&db).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(fired_keys, keys, "each timer fired exactly once");
    assert_eq!(
        overlaps.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "two timers of one lane in flight in one worker"
    );
}

/// In a batch, a handler's failure undoes its own timer only: the timer
/// that failed transiently keeps its schedule and fires after its backoff,
/// the rejected one is dropped without effect, the others fire once.
#[tokio::test]
async fn in_a_batch_a_failure_rolls_back_its_own_timer_only() {
    let (_t, db) = timers_db().await;
    let clock = ManualClock::at(start());
    let h: TimerHandler = Arc::new(|txn: &DatabaseTransaction, fired: &Fired| {
        Box::pin(async move {
            let payload = record(txn, fired)
                .await
                .map_err(|e| HandlerError::Retry(e.to_string()))?;
            match payload.as_str() {
                "flaky" if fired.attempt == 1 => Err(HandlerError::Retry("not yet".into())),
                "broken" => Err(HandlerError::Reject("never".into())),
                _ => Ok(()),
            }
        })
    });
    for (i, payload) in ["ok", "flaky", "ok", "broken", "ok"].iter().enumerate() {
        let due = start() - Duration::seconds(10 - i64::try_from(i).unwrap());
        timers::schedule(&db.writer, &timer(&format!("k{i}"), due, payload))
            .await
            .unwrap();
    }
    let batched = timers::Firing::batched(1, timers::payload_head_lane);
    let pass = || timers::fire_due_with(&db, &clock, &["test"], &h, batched);
    assert_eq!(pass().await.unwrap(), 3);
    let fired_keys = || async {
        fired(&db)
            .await
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    assert_eq!(fired_keys().await, ["k0", "k2", "k4"]);
    assert!(
        timers::get(&db.reader, "acme", "k1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        timers::get(&db.reader, "acme", "k3")
            .await
            .unwrap()
            .is_none()
    );
    // Not before its backoff, then once.
    assert_eq!(pass().await.unwrap(), 0);
    clock.advance(Duration::seconds(2));
    assert_eq!(pass().await.unwrap(), 1);
    assert_eq!(fired_keys().await, ["k0", "k1", "k2", "k4"]);
}

#[tokio::test]
async fn a_transient_failure_fires_again_after_a_backoff() {
    let (_t, db) = timers_db().await;
    let clock = ManualClock::at(start());
    let h = recorder(1);
    timers::schedule(&db.writer, &timer("flaky", start(), "p"))
        .await
        .unwrap();
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        0
    );
    // The failed attempt's effect was rolled back, and the timer is kept.
    assert!(fired(&db).await.is_empty());
    assert!(
        timers::get(&db.reader, "acme", "flaky")
            .await
            .unwrap()
            .is_some()
    );
    // Not before the backoff (1 s after the first failure)…
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        0
    );
    clock.advance(Duration::seconds(2));
    // …then once.
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        1
    );
    assert_eq!(fired(&db).await.len(), 1);
}

/// A firing that outlives its lease (a slow handler) lets another worker
/// claim the timer; the second firing waits for the first and finds the
/// timer gone: one effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_firing_that_outlives_its_lease_still_has_one_effect() {
    let (_t, db) = timers_db().await;
    timers::schedule(&db.writer, &timer("slow", start(), "p"))
        .await
        .unwrap();
    let clock = ManualClock::at(start());
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let gates = Arc::new(std::sync::Mutex::new(Some((entered_tx, release_rx))));
    let slow: TimerHandler = Arc::new(move |txn: &DatabaseTransaction, fired: &Fired| {
        let gates = gates.clone();
        Box::pin(async move {
            txn.execute_unprepared(&format!(
                "INSERT INTO fired (key, payload) VALUES ('{}', 'slow')",
                fired.timer.key
            ))
            .await
            .unwrap();
            let gate = gates.lock().unwrap().take();
            if let Some((entered, release)) = gate {
                entered.send(()).unwrap();
                release.await.unwrap();
            }
            Ok(())
        })
    });
    let first = {
        let (db, clock, slow) = (db.clone(), clock.clone(), slow.clone());
        tokio::spawn(async move {
            timers::fire_due(&db, &clock, &["test"], &slow)
                .await
                .unwrap()
        })
    };
    entered_rx.await.unwrap();
    // The lease (30 s) runs out while the first firing is still running.
    clock.advance(Duration::minutes(1));
    let second = {
        let (db, clock) = (db.clone(), clock.clone());
        tokio::spawn(async move {
            timers::fire_due(&db, &clock, &["test"], &recorder(0))
                .await
                .unwrap()
        })
    };
    release_tx.send(()).unwrap();
    assert_eq!(first.await.unwrap() + second.await.unwrap(), 1);
    assert_eq!(fired(&db).await, [("slow".into(), "slow".into())]);
}

/// A timer fired (or cancelled) and scheduled again under the same key is a
/// new schedule: a stale firing of the old one cannot claim it early.
#[tokio::test]
async fn a_key_scheduled_again_is_a_new_schedule_not_due_before_its_time() {
    let (_t, db) = timers_db().await;
    let clock = ManualClock::at(start());
    let h = recorder(0);
    timers::schedule(&db.writer, &timer("again", start(), "first"))
        .await
        .unwrap();
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        1
    );
    timers::schedule(
        &db.writer,
        &timer("again", start() + Duration::hours(1), "second"),
    )
    .await
    .unwrap();
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        0
    );
    clock.advance(Duration::hours(1));
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &h).await.unwrap(),
        1
    );
    assert_eq!(
        fired(&db).await,
        [
            ("again".into(), "first".into()),
            ("again".into(), "second".into())
        ]
    );
}

/// Services sharing a database share the timers table: a worker fires only
/// the kinds it names.
#[tokio::test]
async fn a_worker_fires_only_its_kinds() {
    let (_t, db) = timers_db().await;
    let clock = ManualClock::at(start());
    let mut other = timer("other", start(), "p");
    other.kind = "someone-else".into();
    timers::schedule(&db.writer, &other).await.unwrap();
    timers::schedule(&db.writer, &timer("mine", start(), "p"))
        .await
        .unwrap();
    assert_eq!(
        timers::fire_due(&db, &clock, &["test"], &recorder(0))
            .await
            .unwrap(),
        1
    );
    assert_eq!(fired(&db).await, [("mine".into(), "p".into())]);
    assert!(
        timers::get(&db.reader, "acme", "other")
            .await
            .unwrap()
            .is_some()
    );
}

/// The next due time a worker sleeps until: the earliest of its kinds
/// after now, never one due already, never another kind's.
#[tokio::test]
async fn next_due_is_the_earliest_later_timer_of_the_kinds() {
    let (_t, db) = timers_db().await;
    let clock = ManualClock::at(start());
    assert_eq!(
        timers::next_due(&db, &clock, &["test"]).await.unwrap(),
        None
    );
    let mut other = timer("other", start() + Duration::minutes(1), "p");
    other.kind = "someone-else".into();
    for t in [
        timer("past", start() - Duration::minutes(1), "p"),
        timer("now", start(), "p"),
        timer("later", start() + Duration::minutes(5), "p"),
        timer("soon", start() + Duration::minutes(2), "p"),
        other,
    ] {
        timers::schedule(&db.writer, &t).await.unwrap();
    }
    let at = |d: DateTime<Utc>| Some(d.timestamp_micros());
    assert_eq!(
        timers::next_due(&db, &clock, &["test"]).await.unwrap(),
        at(start() + Duration::minutes(2))
    );
    assert_eq!(
        timers::next_due(&db, &clock, &["test", "someone-else"])
            .await
            .unwrap(),
        at(start() + Duration::minutes(1))
    );
    clock.advance(Duration::minutes(3));
    assert_eq!(
        timers::next_due(&db, &clock, &["test"]).await.unwrap(),
        at(start() + Duration::minutes(5))
    );
}

/// A running worker fires a timer at its due time, not at its next poll:
/// with an hour's poll, the timer due in a moment still fires (the test
/// would wait an hour otherwise).
#[tokio::test]
async fn a_worker_wakes_at_the_due_time_not_the_poll() {
    let (_t, db) = timers_db().await;
    let clock: Arc<dyn rapport_usecase::Clock> = Arc::new(rapport_usecase::SystemClock);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handler: TimerHandler = Arc::new(move |_txn: &DatabaseTransaction, fired: &Fired| {
        let _ = tx.send(fired.timer.key.clone());
        Box::pin(async { Ok(()) })
    });
    // Scheduled before the worker starts: its first pass finds nothing due
    // and sleeps, until the due time rather than for the poll.
    let due = clock.now() + Duration::milliseconds(300);
    timers::schedule(&db.writer, &timer("soon", due, "p"))
        .await
        .unwrap();
    let worker = timers::spawn(
        db.clone(),
        clock.clone(),
        vec!["test".into()],
        handler,
        std::time::Duration::from_secs(3600),
    );
    let key = tokio::time::timeout(std::time::Duration::from_secs(120), rx.recv())
        .await
        .expect("fired before the poll")
        .unwrap();
    worker.abort();
    assert_eq!(key, "soon");
    assert!(clock.now() >= due);
}
