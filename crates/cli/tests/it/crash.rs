//! `kill -9` loses no committed event. A real `rapport serve profiles`
//! process publishing to NATS JetStream (CI starts one; the tests say so and
//! pass trivially without `RAPPORT_TEST_NATS_URL`) is killed with SIGKILL
//! while clients create customers, and started again, 50 times per test:
//! at each instrumented crash point of the write and relay paths (the
//! binary is built with rapport-store's `crash-points` feature for these
//! tests: see crates/store/src/crash.rs) — before a commit, after a commit
//! before the relay publishes, in the middle of a published batch, after a
//! publish before the rows are marked — and at random moments. At the end
//! every committed customer has its CustomerCreated on the bus exactly once
//! (the stream deduplicates republished ids; a consumer's inbox absorbs
//! any redelivery), no event names a customer that was not committed, and
//! every create a client saw succeed was committed.
use std::{
    collections::BTreeMap, net::SocketAddr, os::unix::process::ExitStatusExt as _, time::Duration,
};

use rapport_events::{Bus, ConsumerOptions, EventsConfig};
use rapport_proto::profiles::{
    CreateCustomerRequest, Customer, EmailAddress, profiles_service_client::ProfilesServiceClient,
};
use rapport_store::{Db, DbOptions};
use rapport_testkit::TestDb;
use sea_orm::{ConnectionTrait as _, Statement};

use crate::process::{Serving, serve_profiles};

/// Kill rounds per test; each kills the process once during a burst of
/// creates.
const ROUNDS: usize = 50;
/// Concurrent clients during a burst.
const CLIENTS: usize = 8;

/// Starts `rapport serve profiles` on 127.0.0.1:0 over `url`, publishing to
/// `nats`. With `crash`, the process kills itself at that crash point (on
/// one pass in four).
async fn serve(url: &str, nats: &str, crash: Option<&str>) -> Serving {
    let mut env = vec![
        ("RAPPORT_PROFILES__EVENTS__NATS_URL", nats),
        ("RAPPORT_PROFILES__EVENTS__STREAM_STORAGE", "memory"),
    ];
    if let Some(point) = crash {
        env.extend([
            ("RAPPORT_CRASH_POINT", point),
            ("RAPPORT_CRASH_ONE_IN", "4"),
        ]);
    }
    loop {
        match serve_profiles(url, &env).await {
            Some(serving) => return serving,
            // It died at its crash point before it served (relaying what
            // the last round left): that is a round of its own; go on.
            None if crash.is_some() => {}
            None => panic!("rapport serve profiles exited before serving"),
        }
    }
}

fn customer(n: usize) -> Customer {
    Customer {
        display_name: format!("Crash {n}"),
        emails: vec![EmailAddress {
            address: format!("crash-{n}@example.com"),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Creates customers from `CLIENTS` clients until the process dies; the
/// names of those a client saw created.
async fn burst(addr: SocketAddr, tenant: String, first: usize) -> Vec<String> {
    let Ok(channel) = rapport_testkit::connect(addr).await else {
        return Vec::new();
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut client = ProfilesServiceClient::new(channel.clone());
            let tenant = tenant.to_owned();
            tokio::spawn(async move {
                let mut created = Vec::new();
                for i in 0.. {
                    let n = first + c * 100_000 + i;
                    let req = rapport_testkit::tenant_request(
                        &tenant,
                        CreateCustomerRequest {
                            customer: Some(customer(n)),
                            request_id: format!("crash-{n}"),
                        },
                    );
                    match client.create_customer(req).await {
                        Ok(r) => created.push(r.into_inner().customer.unwrap().name),
                        Err(_) => return created,
                    }
                }
                created
            })
        })
        .collect();
    let mut created = Vec::new();
    for c in clients {
        created.extend(c.await.unwrap());
    }
    created
}

async fn committed_customers(db: &Db, tenant: &str) -> Vec<String> {
    db.reader
        .query_all_raw(Statement::from_string(
            db.reader.get_database_backend(),
            format!("SELECT id FROM customers WHERE tenant = '{tenant}'"),
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("customers/{}", r.try_get_by_index::<String>(0).unwrap()))
        .collect()
}

async fn unpublished(db: &Db, tenant: &str) -> i64 {
    db.reader
        .query_one_raw(Statement::from_string(
            db.reader.get_database_backend(),
            format!(
                "SELECT COUNT(*) FROM outbox WHERE tenant = '{tenant}' AND publish_time IS NULL"
            ),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// Where each round's kill comes from.
#[derive(Clone, Copy)]
enum Kill {
    /// The process kills itself at this crash point.
    At(&'static str),
    /// The test kills it at a random moment of the burst.
    Random,
}

/// `ROUNDS` rounds of start, burst of creates, SIGKILL; then the checks.
async fn kill_9_loses_no_committed_event(kill: Kill) {
    let Some(nats) = std::env::var("RAPPORT_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        println!("RAPPORT_TEST_NATS_URL is not set: the crash test needs NATS JetStream; skipped");
        return;
    };
    let testdb = TestDb::fresh().await.unwrap();
    // A tenant of this run only: the stream may hold earlier runs' events.
    let tenant = format!("crash-{}", uuid::Uuid::now_v7().simple());
    let mut acknowledged = Vec::new();
    for round in 0..ROUNDS {
        let point = match kill {
            Kill::At(point) => Some(point),
            Kill::Random => None,
        };
        let mut serving = serve(&testdb.url(), &nats, point).await;
        let load = tokio::spawn(burst(serving.addr, tenant.clone(), round * 1_000_000));
        match kill {
            Kill::At(point) => {
                // The burst goes on until the process dies at the point.
                let status = tokio::time::timeout(Duration::from_secs(120), serving.child.wait())
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: never reached {point}"))
                    .unwrap();
                assert_eq!(
                    status.signal(),
                    Some(9),
                    "round {round}: the process ended otherwise than killed at {point}: {status}"
                );
            }
            Kill::Random => {
                // Somewhere between the first creates and well into the
                // relay's work.
                let after = Duration::from_millis(rand::random_range(20..400));
                tokio::time::sleep(after).await;
                serving.child.kill().await.unwrap(); // SIGKILL
            }
        }
        acknowledged.extend(load.await.unwrap());
    }
    // A last start publishes whatever the kills left unpublished.
    let serving = serve(&testdb.url(), &nats, None).await;
    let db = Db::connect(&testdb.url(), &DbOptions::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while unpublished(&db, &tenant).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(serving);
    check_bus(&db, &nats, &tenant, &acknowledged).await;
}

/// Every acknowledged create was committed, and every committed customer's
/// CustomerCreated is stored on the bus once, nothing else.
async fn check_bus(db: &Db, nats: &str, tenant: &str, acknowledged: &[String]) {
    let committed = committed_customers(db, tenant).await;
    assert!(
        !committed.is_empty(),
        "no create got through in {ROUNDS} rounds"
    );
    for name in acknowledged {
        assert!(
            committed.contains(name),
            "{name} was answered but not committed"
        );
    }
    let bus = Bus::from_config(
        &EventsConfig {
            nats_url: Some(nats.to_owned()),
            ..EventsConfig::default()
        },
        &Bus::in_process(),
    )
    .await
    .unwrap();
    let mut consumer = bus
        .consumer(
            &format!("crash-check-{}", uuid::Uuid::now_v7().simple()),
            "profiles",
            "rapport.profiles.CustomerCreated",
            &ConsumerOptions::default(),
        )
        .await
        .unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    while seen.len() < committed.len() {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .unwrap_or_else(|_| {
                let missing: Vec<_> = committed
                    .iter()
                    .filter(|c| !seen.contains_key(*c))
                    .collect();
                panic!(
                    "events missing for {} committed customers, e.g. {:?}",
                    missing.len(),
                    &missing[..missing.len().min(5)]
                )
            })
            .unwrap();
        if d.envelope.tenant == tenant {
            assert!(
                ids.insert(d.envelope.id.clone()),
                "event {} stored twice",
                d.envelope.id
            );
            *seen.entry(d.envelope.subject.clone()).or_default() += 1;
        }
        d.ack().await.unwrap();
    }
    for (subject, n) in &seen {
        assert!(
            committed.contains(subject),
            "an event for {subject}, which was never committed"
        );
        assert_eq!(*n, 1, "{subject} was created once");
    }
    println!(
        "{ROUNDS} kills: {} customers committed, {} acknowledged to clients, every one on the bus once",
        committed.len(),
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_before_a_commit() {
    kill_9_loses_no_committed_event(Kill::At("write.before_commit")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_a_commit_before_its_publish() {
    kill_9_loses_no_committed_event(Kill::At("write.after_commit")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_a_batch_read_before_publishing_it() {
    kill_9_loses_no_committed_event(Kill::At("relay.before_publish")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_the_middle_of_a_published_batch() {
    kill_9_loses_no_committed_event(Kill::At("relay.mid_batch")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_a_publish_before_marking() {
    kill_9_loses_no_committed_event(Kill::At("relay.after_publish")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_moments() {
    kill_9_loses_no_committed_event(Kill::Random).await;
}
