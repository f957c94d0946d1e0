//! `kill -9` loses no committed event. A real `rapport serve profiles`
//! process publishing to NATS JetStream (CI starts one; the test says so and
//! passes trivially without `RAPPORT_TEST_NATS_URL`) is killed with SIGKILL
//! at random moments while clients create customers — before a commit,
//! between a commit and its publish, between a publish and its marking,
//! in the middle of a relay batch — and started again, many times. At the
//! end every committed customer has its CustomerCreated on the bus exactly
//! once (the stream deduplicates republished ids), no event names a
//! customer that was not committed, and every create a client saw succeed
//! was committed.
use std::{collections::BTreeMap, net::SocketAddr, process::Stdio, time::Duration};

use rapport_events::{Bus, ConsumerOptions, EventsConfig};
use rapport_proto::profiles::{
    CreateCustomerRequest, Customer, EmailAddress, profiles_service_client::ProfilesServiceClient,
};
use rapport_store::{Db, DbOptions};
use rapport_testkit::{TEST_SECRET, TestDb};
use sea_orm::{ConnectionTrait as _, Statement};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

/// Kill rounds; each kills the process once at a random moment of a burst
/// of creates.
const ROUNDS: usize = 50;
/// Concurrent clients during a burst.
const CLIENTS: usize = 8;

struct Serving {
    child: Child,
    addr: SocketAddr,
}

/// Starts `rapport serve profiles` on 127.0.0.1:0 over `url`, publishing to
/// `nats`, and waits for the address it logs.
async fn serve(url: &str, nats: &str) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(["serve", "profiles"])
        .env("RAPPORT_LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("RAPPORT_PROFILES__SERVER__LISTEN", "127.0.0.1:0")
        .env("RAPPORT_PROFILES__DATABASE__URL", url)
        .env("RAPPORT_PROFILES__PAGE_TOKEN_SECRET", TEST_SECRET)
        .env(
            "RAPPORT_PROFILES__ASSERTION_PUBLIC_KEYS",
            rapport_testkit::test_assertion_public_key(),
        )
        .env("RAPPORT_PROFILES__EVENTS__NATS_URL", nats)
        .env("RAPPORT_PROFILES__EVENTS__STREAM_STORAGE", "memory")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting rapport serve profiles");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if log["message"] == "serving"
                && let Some(addr) = log["addr"].as_str()
            {
                return addr.parse::<SocketAddr>().unwrap();
            }
        }
        panic!("rapport serve profiles exited before serving");
    })
    .await
    .expect("rapport serve profiles logs its address");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Serving { child, addr }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_committed_event() {
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
        let mut serving = serve(&testdb.url(), &nats).await;
        let load = tokio::spawn(burst(serving.addr, tenant.clone(), round * 1_000_000));
        // Somewhere between the first creates and well into the relay's
        // work: every phase of a write gets its share of kills.
        let after = Duration::from_millis(rand::random_range(20..400));
        tokio::time::sleep(after).await;
        serving.child.kill().await.unwrap(); // SIGKILL
        acknowledged.extend(load.await.unwrap());
    }
    // A last start publishes whatever the kills left unpublished.
    let serving = serve(&testdb.url(), &nats).await;
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

    let committed = committed_customers(&db, &tenant).await;
    assert!(
        !committed.is_empty(),
        "no create got through in {ROUNDS} rounds"
    );
    for name in &acknowledged {
        assert!(
            committed.contains(name),
            "{name} was answered but not committed"
        );
    }
    let bus = Bus::from_config(
        &EventsConfig {
            nats_url: Some(nats),
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
                    "events missing for {} committed customers: {missing:?}",
                    missing.len()
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
