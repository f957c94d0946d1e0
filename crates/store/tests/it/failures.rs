//! Real database failures, caused on purpose, are classified by what a
//! caller can do about them (`rapport_store::classify`), and PostgreSQL
//! connections carry the configured `statement_timeout`.
use rapport_store::{Db, DbFailure, DbOptions, classify};
use sea_orm::{ConnectionTrait as _, DatabaseBackend, Statement};

/// The PostgreSQL server of the tests, if any.
fn postgres_url() -> Option<String> {
    std::env::var("RAPPORT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

fn pg(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
}

#[tokio::test]
async fn postgres_failures_are_classified_by_what_a_caller_can_do() {
    let Some(url) = postgres_url() else { return };
    let db = Db::connect(
        &url,
        &DbOptions {
            max_connections: 1,
            statement_timeout_ms: 100,
            ..DbOptions::default()
        },
    )
    .await
    .unwrap();

    // A NUL character in text: the request's fault, not the server's.
    let err = db
        .writer
        .query_one_raw(pg("SELECT $1::text", vec!["a\0b".into()]))
        .await
        .unwrap_err();
    assert_eq!(classify(&err), DbFailure::InvalidInput, "{err}");

    // A statement running past statement_timeout is cancelled by the server.
    let err = db
        .writer
        .execute_raw(pg("SELECT pg_sleep(5)", vec![]))
        .await
        .unwrap_err();
    assert_eq!(classify(&err), DbFailure::Unavailable, "{err}");

    // The connection is killed under us (a restart, a failover): the
    // statement that finds it dead is retryable, and the pool reconnects.
    let err = db
        .writer
        .execute_raw(pg("SELECT pg_terminate_backend(pg_backend_pid())", vec![]))
        .await
        .unwrap_err();
    assert_eq!(classify(&err), DbFailure::Unavailable, "{err}");
    let mut attempts = 0;
    while let Err(e) = db.writer.execute_raw(pg("SELECT 1", vec![])).await {
        assert_eq!(classify(&e), DbFailure::Unavailable, "{e}");
        attempts += 1;
        assert!(attempts < 5, "the pool never reconnected: {e}");
    }

    // A deadlock: the database aborts one of two transactions.
    let table = format!("deadlock_{}", uuid::Uuid::now_v7().simple());
    let setup = Db::connect(&url, &DbOptions::default()).await.unwrap();
    setup
        .writer
        .execute_unprepared(&format!(
            "CREATE TABLE {table} (id int primary key, v int); INSERT INTO {table} VALUES (1, 0), (2, 0)"
        ))
        .await
        .unwrap();
    let (a, b) = (
        Db::connect(&url, &DbOptions::default()).await.unwrap(),
        Db::connect(&url, &DbOptions::default()).await.unwrap(),
    );
    use sea_orm::TransactionTrait as _;
    let (ta, tb) = (
        a.writer.begin().await.unwrap(),
        b.writer.begin().await.unwrap(),
    );
    let update = |id: i32| format!("UPDATE {table} SET v = v + 1 WHERE id = {id}");
    ta.execute_unprepared(&update(1)).await.unwrap();
    tb.execute_unprepared(&update(2)).await.unwrap();
    let (second_a, second_b) = (update(2), update(1));
    let (ra, rb) = tokio::join!(
        ta.execute_unprepared(&second_a),
        tb.execute_unprepared(&second_b)
    );
    let err = ra
        .err()
        .or(rb.err())
        .expect("one of them is the deadlock victim");
    assert_eq!(classify(&err), DbFailure::Contention, "{err}");
    drop((ta, tb));
    setup
        .writer
        .execute_unprepared(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    for db in [db, setup, a, b] {
        db.close().await;
    }
}
