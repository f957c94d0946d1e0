//! `rapport events dead-letters`: an operator lists what a service's
//! consumers parked and replays an event once its cause is fixed; an event
//! that still fails stays parked, and a service without consumers says so.
use std::process::Output;

use prost::Message as _;
use rapport_events::{EventEnvelope, consume};
use rapport_proto::profiles::CustomerCreated;
use rapport_store::{Db, DbOptions};
use rapport_testkit::TestDb;

fn rapport(url: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
        .args(args)
        .env("RAPPORT_WEBHOOKS__DATABASE__URL", url)
        .env("RAPPORT_LOG__FORMAT", "json")
        .output()
        .expect("running rapport")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn envelope(event_type: &str, payload: prost_types::Any) -> EventEnvelope {
    EventEnvelope {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: event_type.into(),
        tenant: "acme".into(),
        subject: "customers/0192".into(),
        payload: Some(payload),
        ..Default::default()
    }
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_once_fixed() {
    let testdb = TestDb::fresh().await.unwrap();
    let url = testdb.url();
    let migrated = rapport(&url, &["migrate", "webhooks"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let good = envelope(
        "rapport.profiles.v1.CustomerCreated",
        prost_types::Any {
            type_url: "type.googleapis.com/rapport.profiles.v1.CustomerCreated".into(),
            value: CustomerCreated {
                customer: "customers/0192".into(),
                lifecycle_stage: 1,
            }
            .encode_to_vec(),
        },
    );
    let db = Db::connect(&url, &DbOptions::default()).await.unwrap();
    consume::park(
        &db,
        "webhooks",
        &good.id,
        Some(&good),
        "the handler was broken",
        10,
    )
    .await
    .unwrap();
    // A message that was not an event at all is parked under its bus id,
    // without an envelope: nothing can replay it.
    let bad = "RAPPORT_PROFILES:42".to_owned();
    consume::park(&db, "webhooks", &bad, None, "undecodable", 1)
        .await
        .unwrap();

    let listed = rapport(&url, &["events", "dead-letters", "list", "webhooks"]);
    assert!(listed.status.success());
    for id in [&good.id, &bad] {
        assert!(stdout(&listed).contains(id.as_str()), "{}", stdout(&listed));
    }
    assert!(stdout(&listed).contains("(undecodable)"));

    let replayed = rapport(
        &url,
        &[
            "events",
            "dead-letters",
            "replay",
            "webhooks",
            "webhooks",
            &good.id,
        ],
    );
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert!(stdout(&replayed).contains("applied"));
    // Still broken: it stays, and the command says it failed.
    let again = rapport(
        &url,
        &[
            "events",
            "dead-letters",
            "replay",
            "webhooks",
            "webhooks",
            &bad,
        ],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("stays parked"));

    let left = consume::dead_letters_page(&db, Some("webhooks"), 10)
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(),
        [bad.as_str()]
    );

    let none = rapport(&url, &["events", "dead-letters", "list", "gateway"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("consumes no events"));
}
