//! Group commit on a real SQLite file: items of one batch commit together,
//! and an item that fails leaves nothing behind while the others commit.
use rapport_store::{
    Db, DbOptions,
    group_commit::{BoxFuture, GroupCommit},
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Statement};

/// The id of an item whose apply panics.
const PANICS: i64 = 666;

/// One work item: insert `id`, then an `id + 1000` companion row, then fail
/// if asked to (after having written, so the rollback is what removes it).
struct Item {
    id: i64,
    fail: bool,
}

fn apply<'t>(txn: &'t DatabaseTransaction, item: &'t Item) -> BoxFuture<'t, Result<(), String>> {
    Box::pin(async move {
        for id in [item.id, item.id + 1000] {
            txn.execute_raw(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "INSERT INTO t (id) VALUES (?)",
                [id.into()],
            ))
            .await
            .map_err(|e| format!("insert {id}: {e}"))?;
        }
        if item.fail {
            return Err(format!("item {} refused", item.id));
        }
        if item.id == PANICS {
            panic!("item {PANICS} panics after writing");
        }
        Ok(())
    })
}

async fn setup() -> (tempfile::TempDir, Db, GroupCommit<Item, String>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("g.db").display());
    let db = Db::connect(&url, &DbOptions::default()).await.unwrap();
    db.writer
        .execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    let group = GroupCommit::spawn(db.writer.clone(), apply, |e: &DbErr| e.to_string());
    (dir, db, group)
}

async fn ids(db: &Db) -> Vec<i64> {
    let rows = db
        .reader
        .query_all_raw(Statement::from_string(
            db.backend(),
            "SELECT id FROM t ORDER BY id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get::<i64>("", "id").unwrap())
        .collect()
}

/// On a current-thread runtime every `commit` below is queued before the
/// writer task first runs, so they land in one batch.
#[tokio::test(flavor = "current_thread")]
async fn one_failing_item_leaves_nothing_and_the_rest_of_its_batch_commits() {
    let (_dir, db, group) = setup().await;
    let items = [(1, false), (2, true), (3, false), (1, false), (4, false)];
    let outcomes = futures::future::join_all(
        items
            .iter()
            .map(|&(id, fail)| group.commit(Item { id, fail })),
    )
    .await;
    assert_eq!(outcomes[0], Ok(()));
    assert_eq!(outcomes[1], Err("item 2 refused".to_owned()));
    assert_eq!(outcomes[2], Ok(()));
    // Same key as the first item of the batch: its own unique violation.
    let dup = outcomes[3].as_ref().unwrap_err();
    assert!(dup.contains("insert 1") && dup.contains("UNIQUE"), "{dup}");
    assert_eq!(outcomes[4], Ok(()));
    // Item 2 wrote two rows before failing: both are gone.
    assert_eq!(ids(&db).await, vec![1, 3, 4, 1001, 1003, 1004]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_items_all_commit_and_are_visible_when_answered() {
    let (_dir, db, group) = setup().await;
    let tasks: Vec<_> = (0..200)
        .map(|id| {
            let (group, reader) = (group.clone(), db.reader.clone());
            tokio::spawn(async move {
                group
                    .commit(Item {
                        id,
                        fail: id % 7 == 3,
                    })
                    .await?;
                // Answered only once durable: a reader sees the row.
                let n = reader
                    .query_one_raw(Statement::from_sql_and_values(
                        reader.get_database_backend(),
                        "SELECT count(*) AS n FROM t WHERE id = ?",
                        [id.into()],
                    ))
                    .await
                    .unwrap()
                    .unwrap()
                    .try_get::<i64>("", "n")
                    .unwrap();
                assert_eq!(n, 1, "row {id} answered but not visible");
                Ok::<_, String>(())
            })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        if t.await.unwrap().is_err() {
            failed += 1;
        }
    }
    let expected: Vec<i64> = (0..200).filter(|id| id % 7 != 3).collect();
    assert_eq!(failed, 200 - expected.len());
    let stored = ids(&db).await;
    assert_eq!(stored.len(), expected.len() * 2);
    assert_eq!(&stored[..expected.len()], &expected[..]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_batch_fails_alone_and_the_writer_keeps_going() {
    let (_dir, db, group) = setup().await;
    let first = futures::future::join_all([
        group.commit(Item { id: 1, fail: false }),
        group.commit(Item {
            id: PANICS,
            fail: false,
        }),
    ])
    .await;
    // The batch with the panic committed nothing, its neighbour included.
    assert!(first.iter().all(Result::is_err), "{first:?}");
    assert!(ids(&db).await.is_empty());
    // The next batch is served.
    assert_eq!(group.commit(Item { id: 2, fail: false }).await, Ok(()));
    assert_eq!(ids(&db).await, vec![2, 1002]);
}
