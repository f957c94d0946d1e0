//! The per-customer mark row (migration m20261202_000007): written first by
//! an erasure and by every change storing a customer's message, so that
//! the two are ordered by its row lock on PostgreSQL (SQLite's one writer
//! orders them anyway). Without it, a message whose customer was resolved
//! before an erasure and committed after it would keep its text: the
//! erasure's UPDATE never sees a row inserted by a transaction still open.
use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Alias, Expr, OnConflict, Query},
};

const TABLE: &str = "conv_customers";

/// Marks `customer` of `tenant` erased (or leaves it marked), taking the
/// row's lock until the transaction ends.
pub async fn mark_erased<C: ConnectionTrait>(
    conn: &C,
    tenant: &str,
    customer: &str,
) -> Result<(), DbErr> {
    upsert(conn, tenant, customer, true).await.map(|_| ())
}

/// Whether `customer` of `tenant` was erased, taking the row's lock (and
/// creating the row) so that an erasure starting now waits for this
/// transaction.
pub async fn is_erased<C: ConnectionTrait>(
    conn: &C,
    tenant: &str,
    customer: &str,
) -> Result<bool, DbErr> {
    upsert(conn, tenant, customer, false).await
}

/// `INSERT … ON CONFLICT DO UPDATE … RETURNING erased`: the update (to
/// `erased` itself, or to true when erasing) is what locks an existing
/// row; a no-op DO NOTHING would not.
async fn upsert<C: ConnectionTrait>(
    conn: &C,
    tenant: &str,
    customer: &str,
    erase: bool,
) -> Result<bool, DbErr> {
    let erased = Alias::new("erased");
    let set = if erase {
        Expr::value(true)
    } else {
        Expr::col((Alias::new(TABLE), erased.clone()))
    };
    let statement = Query::insert()
        .into_table(Alias::new(TABLE))
        .columns([Alias::new("tenant"), Alias::new("customer"), erased.clone()])
        .values([tenant.into(), customer.into(), erase.into()])
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .on_conflict(
            OnConflict::columns([Alias::new("tenant"), Alias::new("customer")])
                .value(erased.clone(), set)
                .to_owned(),
        )
        .returning_col(erased.clone())
        .to_owned();
    let row = conn
        .query_one(&statement)
        .await?
        .ok_or_else(|| DbErr::Custom(format!("{TABLE} upsert returned no row")))?;
    row.try_get::<bool>("", "erased")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rapport_conversations_migration::Migrator;
    use rapport_store::DatabaseConfig;
    use sea_orm::TransactionTrait as _;

    use super::*;

    #[tokio::test]
    async fn an_erasure_waits_for_a_message_being_stored_and_a_later_one_sees_it() {
        let testdb = rapport_testkit::TestDb::fresh().await.unwrap();
        let db = rapport_store::config::open::<Migrator>(&DatabaseConfig {
            migrate: true,
            ..rapport_testkit::database_config(&testdb)
        })
        .await
        .unwrap();
        // Unknown, then known: not erased either time.
        assert!(!is_erased(&db.writer, "acme", "c1").await.unwrap());
        let storing = db.writer.begin().await.unwrap();
        assert!(!is_erased(&storing, "acme", "c1").await.unwrap());

        // While a message of c1 is being stored, its erasure waits…
        let writer = db.writer.clone();
        let erasing = tokio::spawn(async move {
            let txn = writer.begin().await.unwrap();
            mark_erased(&txn, "acme", "c1").await.unwrap();
            txn.commit().await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !erasing.is_finished(),
            "the erasure must wait for the message's transaction ({})",
            testdb.backend_name()
        );
        // …and goes on once it committed (then reading what it stored).
        storing.commit().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), erasing)
            .await
            .expect("the erasure goes on after the commit")
            .unwrap();

        // A message stored after the erasure sees it; erasing is idempotent;
        // another tenant's customer of the same id is not erased.
        assert!(is_erased(&db.writer, "acme", "c1").await.unwrap());
        mark_erased(&db.writer, "acme", "c1").await.unwrap();
        assert!(is_erased(&db.writer, "acme", "c1").await.unwrap());
        assert!(!is_erased(&db.writer, "globex", "c1").await.unwrap());
    }
}
