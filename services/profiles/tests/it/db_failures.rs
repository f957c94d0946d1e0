//! What clients see when the database fails under them: real failures, caused
//! for real (SQLite's write lock held by another connection; every PostgreSQL
//! backend of the test database terminated, as a restart or a failover does
//! to a pool), answer UNAVAILABLE (or ABORTED) with `ErrorInfo` — never
//! INTERNAL, which clients do not retry — and a retry with the same
//! `request_id` succeeds once the database is back. Readiness follows the
//! database.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use crate::harness::*;
use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
use tonic::Code;

/// A retryable failure, as a client's retry policy sees it.
fn assert_retryable(status: &tonic::Status) {
    assert!(
        matches!(status.code(), Code::Unavailable | Code::Aborted),
        "a database failure must be retryable, got {}",
        describe(status)
    );
    let reason = rapport_testkit::status::reason(status);
    assert!(reason.is_some(), "no ErrorInfo: {}", describe(status));
    let message = status.message().to_ascii_lowercase();
    assert!(
        !message.contains("select") && !message.contains("insert"),
        "SQL text reached the client: {}",
        status.message()
    );
}

/// Whether the tests run on PostgreSQL.
fn on_postgres() -> bool {
    std::env::var(rapport_testkit::POSTGRES_URL_ENV).is_ok_and(|u| !u.trim().is_empty())
}

/// The name of the test's PostgreSQL database (the path of its URL).
fn database_name(h: &Harness) -> String {
    let url = h.testdb.url();
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split('?').next().unwrap_or_default().to_owned()
}

/// A connection to the PostgreSQL server of the tests, outside the test's
/// database (its backends are the ones terminated).
async fn admin() -> sea_orm::DatabaseConnection {
    let url = std::env::var(rapport_testkit::POSTGRES_URL_ENV).expect("PostgreSQL tests only");
    sea_orm::Database::connect(url)
        .await
        .expect("connecting to the test server")
}

/// Terminates every client backend connected to `database`: what a restart
/// or a failover does to the connections of a pool. Client backends only:
/// an autovacuum worker visiting the database is a superuser's process,
/// which the test's role may not terminate.
async fn terminate_backends(admin: &sea_orm::DatabaseConnection, database: &str) {
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database}' AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend'"
        ))
        .await
        .expect("terminating backends");
}

#[tokio::test]
async fn sqlite_busy_is_unavailable_and_a_retry_succeeds() {
    if on_postgres() {
        return;
    }
    // Writers wait for SQLite's lock as long as configured (5 s), then give up.
    let h = start().await;
    // Another process (here: another connection) holds the write lock.
    let other = rapport_store::Db::connect(&h.testdb.url(), &Default::default())
        .await
        .unwrap();
    let txn = other.writer.begin().await.unwrap();
    txn.execute_unprepared("CREATE TABLE hold_the_write_lock (x INTEGER)")
        .await
        .unwrap();

    let err = expect_err(
        h.try_create_in(TENANT, customer("Busy", "busy@example.com"), "busy-1")
            .await,
    );
    assert_error(&err, Code::Unavailable, "DATABASE_UNAVAILABLE");

    txn.rollback().await.unwrap();
    other.close().await;
    let created = h
        .try_create_in(TENANT, customer("Busy", "busy@example.com"), "busy-1")
        .await
        .unwrap_or_else(|s| panic!("retry after the lock was released: {}", describe(&s)));
    assert_eq!(h.active_names_in(TENANT).await, vec![created.name]);
}

#[tokio::test]
async fn postgres_connections_killed_under_load_give_unavailable_and_retries_succeed() {
    let h = start().await;
    if h.testdb.backend_name() != "postgres" {
        return;
    }
    let database = database_name(&h);
    let admin = admin().await;
    const WORKERS: usize = 4;
    const PER_WORKER: usize = 20;
    let progress = Arc::new(tokio::sync::Notify::new());
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));

    // While the load runs, every backend of the database is killed after
    // each few successful calls.
    let killer = {
        let (progress, done) = (progress.clone(), done.clone());
        tokio::spawn(async move {
            let mut kills = 0usize;
            while !done.load(Ordering::SeqCst) {
                progress.notified().await;
                terminate_backends(&admin, &database).await;
                kills += 1;
            }
            kills
        })
    };
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let client = h.client();
        let (progress, failures) = (progress.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            for i in 0..PER_WORKER {
                let request = pb::CreateCustomerRequest {
                    customer: Some(customer(
                        &format!("Load {w}-{i}"),
                        &format!("load-{w}-{i}@example.com"),
                    )),
                    request_id: format!("load-{w}-{i}"),
                };
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match client
                        .clone()
                        .create_customer(tenant_request(TENANT, request.clone()))
                        .await
                    {
                        Ok(_) => break,
                        Err(status) => {
                            assert_retryable(&status);
                            failures.fetch_add(1, Ordering::SeqCst);
                            assert!(attempts < 50, "never succeeded: {}", describe(&status));
                        }
                    }
                }
                progress.notify_one();
            }
        }));
    }
    for w in workers {
        w.await.expect("a worker panicked");
    }
    done.store(true, Ordering::SeqCst);
    progress.notify_one();
    let kills = killer.await.unwrap();
    assert!(kills > 0);
    assert!(
        failures.load(Ordering::SeqCst) > 0,
        "killing every connection {kills} times failed no call: the test tests nothing"
    );
    // The last kill left dead connections in the pool: the first read
    // finds one (retryable), a retry gets a fresh connection.
    for attempt in 0.. {
        match h.list_in(TENANT, Default::default()).await {
            Ok(_) => break,
            Err(status) if attempt < 10 => assert_retryable(&status),
            Err(status) => panic!("reads never came back: {}", describe(&status)),
        }
    }
    // Every create committed exactly once, retries included.
    assert_eq!(h.active_names_in(TENANT).await.len(), WORKERS * PER_WORKER);
}

/// The next status a health Watch reports (it reports changes only).
async fn next(statuses: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>) -> i32 {
    statuses
        .message()
        .await
        .unwrap()
        .expect("the watch ended")
        .status
}

#[tokio::test]
async fn readiness_follows_the_database() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let h = start_with(|c| c.server.readiness_interval_ms = 20).await;
    if h.testdb.backend_name() != "postgres" {
        return;
    }
    let database = database_name(&h);
    let admin = admin().await;
    let mut health = HealthClient::new(h.channel.clone());
    let mut statuses = health
        .watch(HealthCheckRequest {
            service: rapport_profiles::SERVICE_NAME.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut statuses).await, ServingStatus::Serving as i32);

    // The database refuses every connection.
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap();
    terminate_backends(&admin, &database).await;
    assert_eq!(next(&mut statuses).await, ServingStatus::NotServing as i32);
    // Liveness (the overall status) is untouched: a restart would not help.
    let overall = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(overall, ServingStatus::Serving as i32);
    let err = expect_err(h.try_get_in(TENANT, &unknown_customer()).await);
    assert_retryable(&err);

    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS true"
        ))
        .await
        .unwrap();
    assert_eq!(next(&mut statuses).await, ServingStatus::Serving as i32);
    h.create(customer("Back", "back@example.com")).await;
}
