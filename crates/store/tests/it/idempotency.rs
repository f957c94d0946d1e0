//! The database side of the write protocol, on SQLite and (when
//! `RAPPORT_TEST_POSTGRES_URL` names a server) PostgreSQL: a key is claimed
//! once per tenant, a retry reads the stored result, a reused key with
//! another request is told apart, erasure forgets a subject's results, and
//! the purger's query removes only expired keys.
use rapport_store::{Db, DbOptions, idempotency};
use rapport_usecase::{Claim, Idempotency, Prior, Tenant};
use sea_orm_migration::SchemaManager;

async fn databases() -> Vec<(Db, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("i.db").display());
    let mut out = vec![(
        Db::connect(&url, &DbOptions::default()).await.unwrap(),
        Some(dir),
    )];
    if let Some(url) = std::env::var("RAPPORT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        out.push((
            Db::connect(&url, &DbOptions::default()).await.unwrap(),
            None,
        ));
    }
    for (db, dir) in &out {
        let create = || async {
            rapport_store::schema::create_idempotency_keys(&SchemaManager::new(&db.writer))
                .await
                .unwrap();
        };
        match dir {
            Some(_) => create().await,
            // One shared PostgreSQL database: concurrent CREATE TABLE IF
            // NOT EXISTS race in its catalog, so create it once.
            None => {
                POSTGRES_SCHEMA.get_or_init(create).await;
            }
        }
    }
    out
}

static POSTGRES_SCHEMA: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// A tenant of this test run only: PostgreSQL's database is shared.
fn fresh_tenant() -> Tenant {
    Tenant::parse(&format!("t-{}", uuid::Uuid::now_v7().simple())).unwrap()
}

fn claim(request_id: &str, fingerprint: &str, subject: &str, result: &str) -> Claim {
    Claim {
        key: Idempotency {
            method: "/test.v1.Things/Create",
            request_id: request_id.into(),
            fingerprint: fingerprint.into(),
        },
        subject: subject.into(),
        result: result.into(),
    }
}

#[tokio::test]
async fn a_key_is_claimed_once_per_tenant_and_answers_its_result() {
    for (db, _dir) in databases().await {
        let (tenant, other) = (fresh_tenant(), fresh_tenant());
        let first = claim("r1", "fp", "s1", "{\"n\":1}");
        assert!(
            idempotency::claim(&db.writer, &tenant, &first, 10)
                .await
                .unwrap()
        );
        // The twin's claim is refused; another tenant's same id is its own.
        let twin = claim("r1", "fp", "s1", "{\"n\":2}");
        assert!(
            !idempotency::claim(&db.writer, &tenant, &twin, 11)
                .await
                .unwrap()
        );
        assert!(
            idempotency::claim(&db.writer, &other, &twin, 11)
                .await
                .unwrap()
        );

        let find = |fp: &str| {
            let key = Idempotency {
                fingerprint: fp.into(),
                ..first.key.clone()
            };
            let (db, tenant) = (db.clone(), tenant.clone());
            async move { idempotency::find(&db.reader, &tenant, &key).await.unwrap() }
        };
        assert_eq!(find("fp").await, Some(Prior::Replay("{\"n\":1}".into())));
        assert_eq!(find("another").await, Some(Prior::Mismatch));
        let unknown = Idempotency {
            request_id: "r2".into(),
            ..first.key.clone()
        };
        assert_eq!(
            idempotency::find(&db.reader, &tenant, &unknown)
                .await
                .unwrap(),
            None
        );
    }
}

#[tokio::test]
async fn erasure_leaves_tombstones_of_a_subjects_results_but_its_own() {
    for (db, _dir) in databases().await {
        let tenant = fresh_tenant();
        for (id, subject) in [("a", "s1"), ("b", "s1"), ("c", "s2")] {
            idempotency::claim(&db.writer, &tenant, &claim(id, "fp", subject, "{}"), 10)
                .await
                .unwrap();
        }
        let own = claim("b", "fp", "s1", "{}").key;
        let forgotten = idempotency::forget_subject(&db.writer, &tenant, "s1", Some(&own))
            .await
            .unwrap();
        assert_eq!(forgotten, 1);
        let left = |id: &str| {
            let key = Idempotency {
                request_id: id.into(),
                ..own.clone()
            };
            let (db, tenant) = (db.clone(), tenant.clone());
            async move { idempotency::find(&db.reader, &tenant, &key).await.unwrap() }
        };
        // The key stays used (a retry must not run again), its result is gone.
        assert_eq!(
            left("a").await,
            Some(Prior::Erased {
                subject: "s1".into()
            }),
            "the subject's other result is a tombstone"
        );
        assert_eq!(
            left("b").await,
            Some(Prior::Replay("{}".into())),
            "the erasing request keeps its receipt"
        );
        assert_eq!(
            left("c").await,
            Some(Prior::Replay("{}".into())),
            "another subject is untouched"
        );
        use sea_orm::EntityTrait as _;
        let rows = idempotency::Entity::find().all(&db.reader).await.unwrap();
        let tombstone = rows
            .iter()
            .find(|r| r.tenant == tenant.as_str() && r.request_id == "a")
            .unwrap();
        assert_eq!(
            tombstone.fingerprint, "",
            "the request's fingerprint is forgotten too"
        );
    }
}

#[tokio::test]
async fn the_purge_removes_only_expired_keys() {
    for (db, _dir) in databases().await {
        let tenant = fresh_tenant();
        // Times far in the past, so a shared PostgreSQL database loses
        // nothing of anyone else's.
        idempotency::claim(&db.writer, &tenant, &claim("old", "fp", "s", "{}"), 1_000)
            .await
            .unwrap();
        idempotency::claim(&db.writer, &tenant, &claim("new", "fp", "s", "{}"), 3_000)
            .await
            .unwrap();
        let purged = idempotency::purge_before(&db.writer, 2_000).await.unwrap();
        assert!(purged >= 1);
        let key = |id: &str| Idempotency {
            method: "/test.v1.Things/Create",
            request_id: id.into(),
            fingerprint: "fp".into(),
        };
        assert_eq!(
            idempotency::find(&db.reader, &tenant, &key("old"))
                .await
                .unwrap(),
            None
        );
        assert!(
            idempotency::find(&db.reader, &tenant, &key("new"))
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn the_purge_deletes_in_bounded_batches() {
    for (db, _dir) in databases().await {
        let tenant = fresh_tenant();
        for i in 0..5 {
            idempotency::claim(
                &db.writer,
                &tenant,
                &claim(&format!("old{i}"), "fp", "s", "{}"),
                5,
            )
            .await
            .unwrap();
        }
        // One statement deletes at most its limit (a concurrent test's purge
        // on a shared PostgreSQL may take some of these rows first).
        assert!(idempotency::purge_batch(&db.writer, 6, 2).await.unwrap() <= 2);
        idempotency::purge_before(&db.writer, 6).await.unwrap();
        let key = |id: String| Idempotency {
            method: "/test.v1.Things/Create",
            request_id: id,
            fingerprint: "fp".into(),
        };
        for i in 0..5 {
            let left = idempotency::find(&db.reader, &tenant, &key(format!("old{i}")))
                .await
                .unwrap();
            assert_eq!(left, None, "old{i} survived the purge");
        }
    }
}
