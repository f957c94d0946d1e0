//! A rolling restart under load: two profiles replicas on one database
//! behind the gateway are restarted one after the other (each drains, then
//! a new process takes its address) while clients create and read
//! customers, retrying UNAVAILABLE as gRPC clients with retries on do. A
//! deploy must cost retries, never a lost call, another error code, or a
//! retried create applied twice.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use rapport_e2e::*;
use rapport_gateway::backends::BackendConfig;
use rapport_testkit::{Running, TestDb};
use tonic::Code;

/// Clients calling at once.
const CLIENTS: usize = 6;
/// Attempts of one call before the client gives up (a lost call).
const ATTEMPTS: usize = 100;

/// One profiles replica over `db`, listening on `addr` (a free port the
/// first time, the same address on restart, as a pod's replacement takes
/// the Service's place).
async fn replica(db: &TestDb, addr: SocketAddr) -> (Running, SocketAddr, rapport_store::Db) {
    let mut config = profiles_config(db);
    config.server.listen = addr;
    let profiles = rapport_profiles::build(&config, &rapport_events::Bus::in_process())
        .await
        .expect("building a profiles replica");
    let bound = profiles.local_addr();
    let handle = profiles.db().clone();
    (Running::start(move |s| profiles.serve(s)), bound, handle)
}

/// The customers stored in `db`.
async fn stored_customers(db: &rapport_store::Db) -> i64 {
    use sea_orm::ConnectionTrait as _;
    let backend = db.reader.get_database_backend();
    let row = db
        .reader
        .query_one_raw(sea_orm::Statement::from_string(
            backend,
            "SELECT COUNT(*) AS n FROM customers",
        ))
        .await
        .expect("counting customers")
        .expect("a count");
    row.try_get::<i64>("", "n").expect("a number")
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// Customers created, by request id.
    created: Mutex<BTreeMap<String, String>>,
    /// Calls answered (after retries).
    done: AtomicUsize,
    /// Attempts answered UNAVAILABLE and retried.
    retried: AtomicUsize,
    /// Calls that failed otherwise, or ran out of attempts.
    failures: Mutex<Vec<String>>,
}

/// `call` until it answers, retrying UNAVAILABLE with a short backoff;
/// anything else is a failure.
async fn with_retries<T, F, Fut>(tally: &Tally, what: &str, mut call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    for _ in 0..ATTEMPTS {
        match call().await {
            Ok(v) => {
                tally.done.fetch_add(1, Ordering::Relaxed);
                return Some(v);
            }
            Err(s) if s.code() == Code::Unavailable => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
                // A client's backoff between attempts.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => {
                tally.failures.lock().unwrap().push(format!(
                    "{what}: {:?} {}",
                    s.code(),
                    s.message()
                ));
                return None;
            }
        }
    }
    tally.failures.lock().unwrap().push(format!(
        "{what}: still UNAVAILABLE after {ATTEMPTS} attempts"
    ));
    None
}

/// One client: creates a customer (with a request id, so a retry is the
/// same create) and reads it back, until told to stop.
async fn client(
    channel: tonic::transport::Channel,
    key: String,
    n: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let request_id = format!("rolling-{n}-{i}");
        let email = format!("c{n}-{i}@example.com");
        let created = with_retries(&tally, "CreateCustomer", || {
            let mut profiles = Profiles::new(channel.clone());
            let request = with_key(
                &key,
                pb::CreateCustomerRequest {
                    customer: Some(customer("Ada", &email)),
                    request_id: request_id.clone(),
                },
            );
            async move { profiles.create_customer(request).await }
        })
        .await;
        let Some(created) = created else { continue };
        let name = created.into_inner().customer.unwrap().name;
        tally
            .created
            .lock()
            .unwrap()
            .insert(request_id, name.clone());
        with_retries(&tally, "GetCustomer", || {
            let mut profiles = Profiles::new(channel.clone());
            let request = with_key(&key, pb::GetCustomerRequest { name: name.clone() });
            async move { profiles.get_customer(request).await }
        })
        .await;
    }
}

/// Waits until the clients have had `more` calls answered.
async fn calls(tally: &Tally, more: usize) {
    let target = tally.done.load(Ordering::Relaxed) + more;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tally.done.load(Ordering::Relaxed) < target {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the clients made no progress: {:?}",
            tally.failures.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_costs_retries_never_a_call() {
    let profiles_db = TestDb::fresh().await.expect("profiles database");
    let gateway_db = TestDb::fresh().await.expect("gateway database");
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let (first, a, _) = replica(&profiles_db, any).await;
    let (second, b, _) = replica(&profiles_db, any).await;

    let mut config = gateway_config(&gateway_db, a);
    config.backends.insert(
        "rapport.profiles.v1.ProfilesService".to_owned(),
        BackendConfig {
            endpoints: vec![format!("http://{a}"), format!("http://{b}")],
            connections: 2,
        },
    );
    let gateway = rapport_gateway::build(&config)
        .await
        .expect("building the gateway");
    let gateway_addr = gateway.local_addr();
    let keys = gateway.keys().clone();
    let gateway_running = Running::start(move |s| gateway.serve(s));
    let key = issue(&keys, "acme", &["profiles.read", "profiles.write"], None, 0).await;
    let channel = rapport_testkit::connect(gateway_addr)
        .await
        .expect("connecting to the gateway");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(client(
                channel.clone(),
                key.clone(),
                n,
                stop.clone(),
                tally.clone(),
            ))
        })
        .collect();
    calls(&tally, 100).await;

    // Replica one drains and is replaced at its address, under load…
    first.shutdown().await.expect("replica one drains");
    calls(&tally, 20).await;
    let (first, _, _) = replica(&profiles_db, a).await;
    calls(&tally, 100).await;
    // …then replica two.
    second.shutdown().await.expect("replica two drains");
    calls(&tally, 20).await;
    let (second, _, db) = replica(&profiles_db, b).await;
    calls(&tally, 100).await;

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("a client task");
    }
    let failures = tally.failures.lock().unwrap().clone();
    eprintln!(
        "rolling restart on {}: {} calls, {} retried",
        profiles_db.backend_name(),
        tally.done.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "a rolling restart must cost retries only ({} retried): {failures:#?}",
        tally.retried.load(Ordering::Relaxed)
    );
    // Every create applied once: as many customers as request ids, each
    // request id answered with one customer.
    let created = tally.created.lock().unwrap().clone();
    let names: std::collections::BTreeSet<&String> = created.values().collect();
    assert_eq!(names.len(), created.len(), "two request ids, one customer");
    assert_eq!(
        stored_customers(&db).await,
        created.len() as i64,
        "a retried create applied twice"
    );
    drop((first, second, gateway_running));
}
