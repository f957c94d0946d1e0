//! The schema itself: migrations run down and up again, and the statements
//! that find one row by its whole key use the primary key even before the
//! database has statistics (a new deployment, or a table growing from empty
//! faster than autovacuum analyzes it). On the SQLite or PostgreSQL database
//! the environment selects.
use rapport_profiles_migration::{Migrator, MigratorTrait as _};
use rapport_store::{Db, DbOptions};
use rapport_testkit::TestDb;
use sea_orm::{ConnectionTrait as _, DatabaseBackend, Statement};

async fn migrated() -> (TestDb, Db) {
    let tdb = TestDb::fresh().await.expect("test database");
    let db = Db::connect(&tdb.url(), &DbOptions::default())
        .await
        .expect("connecting");
    rapport_profiles::migrate(&db).await.expect("migrating");
    (tdb, db)
}

async fn index_names(db: &Db) -> Vec<String> {
    let sql = match db.backend() {
        DatabaseBackend::Postgres => "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'",
        _ => "SELECT name FROM sqlite_master WHERE type = 'index'",
    };
    let mut names: Vec<String> = db
        .reader
        .query_all_raw(Statement::from_string(db.backend(), sql))
        .await
        .expect("listing indexes")
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("a name"))
        .collect();
    names.sort();
    names
}

async fn table_names(db: &Db) -> Vec<String> {
    let sql = match db.backend() {
        DatabaseBackend::Postgres => "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
        _ => "SELECT name FROM sqlite_master WHERE type = 'table'",
    };
    db.reader
        .query_all_raw(Statement::from_string(db.backend(), sql))
        .await
        .expect("listing tables")
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("a name"))
        .collect()
}

/// The trigram index of migration 3: a GIN index on PostgreSQL, an FTS5
/// table on SQLite.
async fn has_search_index(db: &Db) -> bool {
    let sql = match db.backend() {
        DatabaseBackend::Postgres => {
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'customers_search_trgm'"
        }
        _ => "SELECT count(*) FROM sqlite_master WHERE name = 'customers_search'",
    };
    let row = db
        .reader
        .query_one_raw(Statement::from_string(db.backend(), sql))
        .await
        .expect("looking for the search index")
        .expect("a count");
    row.try_get_by_index::<i64>(0).expect("a number") == 1
}

#[tokio::test]
async fn migrations_go_down_and_up_again() {
    let (_tdb, db) = migrated().await;
    let after_up = index_names(&db).await;
    assert!(after_up.contains(&"identities_by_match_key_first".to_owned()));
    assert!(!after_up.contains(&"identities_by_match_key".to_owned()));
    assert!(has_search_index(&db).await);
    assert!(after_up.contains(&"outbox_pending".to_owned()));

    assert!(
        table_names(&db)
            .await
            .contains(&"erasure_confirmations".to_owned())
    );
    assert!(after_up.contains(&"timers_kind_due".to_owned()));
    Migrator::down(&db.writer, Some(1))
        .await
        .expect("migration 7 down");
    assert!(
        !index_names(&db)
            .await
            .contains(&"timers_kind_due".to_owned()),
        "migration 7 removes the timers' index by kind"
    );
    Migrator::down(&db.writer, Some(1))
        .await
        .expect("migration 6 down");
    let tables = table_names(&db).await;
    for table in [
        "erasure_confirmations",
        "birthday_greetings",
        "timers",
        "inbox",
    ] {
        assert!(
            !tables.contains(&table.to_owned()),
            "migration 6 removes {table}"
        );
    }
    Migrator::down(&db.writer, Some(1))
        .await
        .expect("migration 5 down");
    assert!(
        !index_names(&db)
            .await
            .contains(&"outbox_pending".to_owned()),
        "migration 5 removes the outbox's pending index"
    );
    Migrator::down(&db.writer, Some(1))
        .await
        .expect("migration 4 down");
    assert!(
        has_search_index(&db).await,
        "migration 4 only sets an option of the index"
    );
    Migrator::down(&db.writer, Some(1))
        .await
        .expect("another step down");
    assert!(
        !has_search_index(&db).await,
        "migration 3 removes its index"
    );
    Migrator::down(&db.writer, Some(1))
        .await
        .expect("another step down");
    let one_down = index_names(&db).await;
    assert!(one_down.contains(&"identities_by_match_key".to_owned()));
    assert!(one_down.contains(&"idempotency_keys_subject".to_owned()));
    assert!(!one_down.contains(&"identities_by_match_key_first".to_owned()));

    Migrator::down(&db.writer, None)
        .await
        .expect("all the way down");
    Migrator::up(&db.writer, None).await.expect("up again");
    assert_eq!(index_names(&db).await, after_up, "up, down, up is up");
    db.close().await;
}

/// Identity rows of one tenant, written without any ANALYZE afterwards.
async fn load_identities(db: &Db, n: usize) {
    let backend = db.backend();
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('acme', 'email', 'user{i}@example.com', 'email:user{i}@example.com', 'c{i}')"
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO customer_identities (tenant, kind, value, match_key, customer_id) VALUES {}",
            values.join(", ")
        );
        db.writer
            .execute_raw(Statement::from_string(backend, sql))
            .await
            .expect("loading identities");
    }
}

async fn plan(db: &Db, prepare: &str, execute: &str) -> String {
    let backend = db.backend();
    let rows = match backend {
        DatabaseBackend::Postgres => {
            // One session: PREPARE is per connection.
            let txn = sea_orm::TransactionTrait::begin(&db.writer)
                .await
                .expect("begin");
            for sql in ["SET LOCAL plan_cache_mode = force_generic_plan", prepare] {
                txn.execute_raw(Statement::from_string(backend, sql))
                    .await
                    .expect("preparing");
            }
            let rows = txn
                .query_all_raw(Statement::from_string(
                    backend,
                    format!("EXPLAIN EXECUTE {execute}"),
                ))
                .await
                .expect("explaining");
            txn.rollback().await.expect("rollback");
            rows
        }
        _ => db
            .reader
            .query_all_raw(Statement::from_string(
                backend,
                format!("EXPLAIN QUERY PLAN {execute}"),
            ))
            .await
            .expect("explaining"),
    };
    rows.iter()
        .map(|r| {
            // PostgreSQL: one text column; SQLite: (id, parent, notused, detail).
            r.try_get_by_index::<String>(0)
                .or_else(|_| r.try_get_by_index::<String>(3))
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that a lookup of `table` by its whole three-column primary key
/// `cols` (with `values`) uses that key: PostgreSQL's generic plan (forced,
/// as a prepared statement gets it after five runs) must name the primary
/// key index, SQLite's plan must search on all three columns.
async fn assert_whole_key_plan(db: &Db, table: &str, cols: [&str; 3], values: [&str; 3]) {
    let text = if db.backend() == DatabaseBackend::Postgres {
        plan(
            db,
            &format!(
                "PREPARE lookup(text, text, text) AS SELECT * FROM {table} \
                 WHERE {} = $1 AND {} = $2 AND {} = $3",
                cols[0], cols[1], cols[2]
            ),
            &format!("lookup('{}', '{}', '{}')", values[0], values[1], values[2]),
        )
        .await
    } else {
        plan(
            db,
            "",
            &format!(
                "SELECT * FROM {table} WHERE {} = '{}' AND {} = '{}' AND {} = '{}'",
                cols[0], values[0], cols[1], values[1], cols[2], values[2]
            ),
        )
        .await
    };
    let expected = if db.backend() == DatabaseBackend::Postgres {
        format!("{table}_pkey")
    } else {
        format!("{}=? AND {}=? AND {}=?", cols[0], cols[1], cols[2])
    };
    assert!(
        text.contains(&expected),
        "the lookup of {table} by its whole key must use it ({expected}):\n{text}"
    );
}

#[tokio::test]
async fn whole_key_lookups_use_the_primary_key_before_statistics_exist() {
    let (_tdb, db) = migrated().await;
    load_identities(&db, 2_000).await;
    assert_whole_key_plan(
        &db,
        "customer_identities",
        ["tenant", "kind", "value"],
        ["acme", "email", "user7@example.com"],
    )
    .await;
    assert_whole_key_plan(
        &db,
        "idempotency_keys",
        ["tenant", "method", "request_id"],
        ["acme", "/m", "r1"],
    )
    .await;
    db.close().await;
}
