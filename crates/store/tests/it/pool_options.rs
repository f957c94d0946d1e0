//! Pool settings a service relies on for its speed: sqlx pings a connection
//! before every use unless told otherwise, one more round trip per query.
use rapport_store::{Db, DbOptions};
use sea_orm::ConnectionTrait as _;

#[tokio::test]
async fn sqlite_connections_are_not_pinged_before_each_use() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let db = Db::connect(&url, &DbOptions::default()).await.unwrap();
    for (role, conn) in [("writer", &db.writer), ("reader", &db.reader)] {
        let options = conn.get_sqlite_connection_pool().options();
        assert!(
            !options.get_test_before_acquire(),
            "the SQLite {role} pings before each use"
        );
    }
}

/// Runs when RAPPORT_TEST_POSTGRES_URL names a server (CI's second pass).
#[tokio::test]
async fn postgres_connections_are_pinged_only_after_being_idle() {
    let Some(url) = std::env::var("RAPPORT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        return;
    };
    let db = Db::connect(&url, &DbOptions::default()).await.unwrap();
    let pool = db.writer.get_postgres_connection_pool();
    // The per-use ping is off; the idle check is sea-orm's before-acquire
    // hook, which still answers queries.
    assert!(!pool.options().get_test_before_acquire());
    for _ in 0..3 {
        db.writer
            .execute_unprepared("SELECT 1")
            .await
            .expect("a query through a connection that was not pinged");
    }
}
