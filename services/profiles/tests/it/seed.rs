//! The bulk loader (`rapport_profiles::seed`): seeded customers are what the
//! API made (listed, looked up, searched, with their creation history),
//! seeding resumes without duplicates, and the raw insert ceiling runs.

use std::time::Duration;

use crate::harness::*;
use pb::{ListCustomersRequest, SearchCustomersRequest};
use rapport_profiles::{
    ceiling,
    seed::{self, SeedPlan},
};
use sea_orm::ConnectionTrait as _;

const BENCH: &str = seed::DEFAULT_TENANT;

fn plan(customers: u64) -> SeedPlan {
    SeedPlan {
        tenant: BENCH.to_owned(),
        customers,
        batch: 100,
    }
}

async fn search_in(h: &Harness, tenant: &str, query: &str) -> Vec<pb::Customer> {
    let request = SearchCustomersRequest {
        query: query.to_owned(),
        page_size: 50,
        ..Default::default()
    };
    h.client()
        .search_customers(tenant_request(tenant, request))
        .await
        .unwrap_or_else(|s| panic!("search {query:?}: {}", describe(&s)))
        .into_inner()
        .customers
}

#[tokio::test]
async fn seeded_customers_are_served_by_the_api_and_seeding_resumes() {
    let h = start().await;

    let mut batches = Vec::new();
    let report = seed::seed(&h.db, &plan(250), |p| batches.push(p.seeded))
        .await
        .expect("seeding 250");
    assert_eq!(batches, vec![100, 200, 250]);
    assert_eq!(
        (report.resumed_at, report.inserted, report.seeded),
        (0, 250, 250)
    );
    // customers + lifecycle rows, two identities, 1–3 tags each.
    assert!(report.rows >= 250 * 5, "{report:?}");
    assert_eq!(seed::seeded_count(&h.db, BENCH).await.unwrap(), 250);

    let listed = h.list_all_in(BENCH, ListCustomersRequest::default()).await;
    assert_eq!(listed.len(), 250);
    assert!(
        h.active_names_in(TENANT).await.is_empty(),
        "other tenants untouched"
    );

    let c17 = h
        .lookup_in(BENCH, by_email("seed-17@example.com"))
        .await
        .unwrap_or_else(|s| panic!("lookup: {}", describe(&s)));
    assert_eq!(c17.display_name, "Seed Customer 17");
    assert_eq!(c17.phones[0].number, "+15550000017");
    assert!(c17.emails[0].primary);
    assert!(!c17.tags.is_empty() && c17.attributes.len() == 2);
    let by_phone_17 = h.lookup_in(BENCH, by_phone("+15550000017")).await.unwrap();
    assert_eq!(by_phone_17.name, c17.name);
    // GetCustomer reads the same document back.
    let got = h.try_get_in(BENCH, &c17.name).await.unwrap();
    assert_eq!(got, c17);

    let exact = search_in(&h, BENCH, "seed-42@example.com").await;
    assert_eq!(exact[0].display_name, "Seed Customer 42");
    let text = search_in(&h, BENCH, "Seed Customer 123").await;
    assert_eq!(text.len(), 1, "only 123 contains that text among 0..250");
    assert_eq!(text[0].display_name, "Seed Customer 123");

    // The creation entry of the lifecycle history is there, as after CreateCustomer.
    let history = h
        .client()
        .list_lifecycle_events(tenant_request(
            BENCH,
            pb::ListLifecycleEventsRequest {
                parent: c17.name.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .lifecycle_events;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].reason, "created");

    // Seeded customers hold their identities like any other.
    let taken = h
        .try_create_in(BENCH, customer("Impostor", "SEED-3@example.com"), "")
        .await;
    assert_error(
        &expect_err(taken),
        tonic::Code::AlreadyExists,
        "IDENTITY_ALREADY_EXISTS",
    );

    // A bulk import is not a domain event stream: nothing in the outbox.
    assert!(h.outbox_rows(BENCH).await.is_empty());

    let resumed = seed::seed(&h.db, &plan(300), |_| {})
        .await
        .expect("resuming to 300");
    assert_eq!(
        (resumed.resumed_at, resumed.inserted, resumed.seeded),
        (250, 50, 300)
    );
    let again = seed::seed(&h.db, &plan(300), |_| {}).await.unwrap();
    assert_eq!((again.inserted, again.seeded), (0, 300));

    let listed = h.list_all_in(BENCH, ListCustomersRequest::default()).await;
    assert_eq!(listed.len(), 300);
    let mut names: Vec<&str> = listed.iter().map(|c| c.display_name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 300, "no duplicates");
    let last = h
        .lookup_in(BENCH, by_email("seed-299@example.com"))
        .await
        .unwrap();
    assert_eq!(last.display_name, "Seed Customer 299");
}

#[tokio::test]
async fn seeding_refuses_an_identity_taken_outside_the_seed() {
    let h = start().await;
    seed::seed(&h.db, &plan(3), |_| {}).await.unwrap();
    let mut squatter = customer("Squatter", "squatter@example.com");
    squatter.phones = vec![phone(&seed::seed_phone(4))];
    h.create_in(BENCH, squatter).await;
    let err = seed::seed(&h.db, &plan(10), |_| {})
        .await
        .expect_err("customer 4's phone is taken");
    assert!(format!("{err:#}").contains("already taken"), "{err:#}");
    // The failed batch rolled back whole: the next run starts at 3 again.
    assert_eq!(seed::seeded_count(&h.db, BENCH).await.unwrap(), 3);
    assert_eq!(h.active_names_in(BENCH).await.len(), 4);
}

#[tokio::test]
async fn raw_insert_ceiling_measures_and_cleans_up() {
    let h = start().await;
    let report = ceiling::raw_insert_ceiling(&h.db, Duration::from_millis(200), 2)
        .await
        .expect("raw insert ceiling");
    assert!(
        report.ops_per_sec > 0.0 && report.operations > 0,
        "{report:?}"
    );
    assert!(report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms);
    assert!(report.name.ends_with(".raw_insert"), "{report:?}");
    // Its rows are gone and were never visible to a tenant.
    assert!(h.active_names_in(BENCH).await.is_empty());
}

/// pgbench runs only against PostgreSQL: skipped on SQLite. Both scripts
/// run, report under their own names, and leave no scratch table behind.
#[tokio::test]
async fn pgbench_ceilings_run_on_postgres() {
    let h = start().await;
    if h.testdb.backend_name() != "postgres" {
        return;
    }
    for (script, name) in [
        (ceiling::PgbenchScript::OneRow, "postgres.pgbench_insert"),
        (
            ceiling::PgbenchScript::CreateShape,
            "postgres.pgbench_create_shape",
        ),
    ] {
        let url = h.testdb.url();
        let report =
            tokio::task::spawn_blocking(move || ceiling::pgbench_ceiling(&url, script, 1, 2))
                .await
                .unwrap()
                .expect("pgbench ceiling");
        assert_eq!(report.name, name);
        assert!(
            report.ops_per_sec > 0.0 && report.operations > 0,
            "{report:?}"
        );
        assert!(report.p50_ms <= report.p99_ms, "{report:?}");
    }
    let left =
        h.db.reader
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT count(*) AS n FROM pg_tables WHERE tablename LIKE 'bench_ceiling_%'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
    assert_eq!(left, 0, "scratch tables left behind");
}

#[tokio::test]
async fn search_is_the_same_for_rare_and_common_needles() {
    // 2,500 customers: "seed customer" is in every one (more candidates than
    // the trigram index hands out, so the search walks the tenant), while
    // "customer 2417" is in one (fetched through the index on SQLite).
    let h = start().await;
    seed::seed(&h.db, &plan(2_500), |_| {})
        .await
        .expect("seeding 2,500");

    let rare = search_in(&h, BENCH, "Customer 2417").await;
    assert_eq!(
        rare.iter()
            .map(|c| c.display_name.as_str())
            .collect::<Vec<_>>(),
        vec!["Seed Customer 2417"]
    );

    let common = search_in(&h, BENCH, "seed customer").await;
    assert_eq!(common.len(), 50, "a full first page");
    let mut ids: Vec<&str> = common.iter().map(|c| c.name.as_str()).collect();
    let sorted = {
        let mut s = ids.clone();
        s.sort_unstable();
        s
    };
    assert_eq!(ids, sorted, "pages come in id order on either path");
    ids.dedup();
    assert_eq!(ids.len(), 50);

    // A needle with LIKE's wildcards in it is matched literally.
    assert!(search_in(&h, BENCH, "customer_24").await.is_empty());
    assert!(search_in(&h, BENCH, "100%").await.is_empty());
}
