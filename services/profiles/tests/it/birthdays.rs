//! Birthdays on durable timers, on a driven clock: `BirthdayReached` at
//! local midnight in the customer's time zone (else the tenant's), once per
//! customer per year, February 29 on February 28 in other years, never for
//! erased or merged customers, across a restart.
use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use rapport_testkit::TestDb;
use rapport_usecase::ManualClock;

use crate::harness::*;

/// How long a test waits for the timer worker (it polls every few ms).
const PATIENCE: Duration = Duration::from_secs(20);

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn start_at(testdb: TestDb, clock: &ManualClock) -> Harness {
    start_on(
        testdb,
        |c| c.timer_poll_ms = 5,
        Arc::new(clock.clone()) as Arc<dyn rapport_usecase::Clock>,
    )
    .await
}

fn born(name: &str, email: &str, month: i32, day: i32, zone: &str) -> pb::Customer {
    pb::Customer {
        time_zone: zone.to_owned(),
        birthday: Some(pb::Birthday {
            month,
            day,
            year: if month == 2 && day == 29 { 2000 } else { 1990 },
        }),
        ..customer(name, email)
    }
}

/// The birthdays raised for `customer`: (year, when).
async fn greetings(h: &Harness, customer: &str) -> Vec<(i32, DateTime<Utc>)> {
    rapport_testkit::store::outbox_events(&h.db, TENANT, customer)
        .await
        .iter()
        .filter(|e| e.r#type == "rapport.profiles.v1.BirthdayReached")
        .map(|e| {
            let event: pb::BirthdayReached = payload(e);
            assert_eq!(event.customer, customer);
            let when = e.occur_time.as_ref().expect("occur_time");
            let when = DateTime::from_timestamp(when.seconds, when.nanos as u32).unwrap();
            (event.year, when)
        })
        .collect()
}

/// Waits until `customer` has had `n` birthdays raised, and returns them.
async fn wait_for(h: &Harness, customer: &str, n: usize) -> Vec<(i32, DateTime<Utc>)> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let seen = greetings(h, customer).await;
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{customer} had {n} birthdays within the test's patience"))
}

#[tokio::test]
async fn birthdays_begin_at_local_midnight_once_each_across_a_restart() {
    let clock = ManualClock::at(at("2027-03-01T00:00:00Z"));
    let testdb = TestDb::fresh().await.unwrap();
    let h = start_at(testdb, &clock).await;
    let tokyo = h
        .create(born("Aiko", "aiko@example.com", 3, 14, "Asia/Tokyo"))
        .await;
    let la = h
        .create(born("Lee", "lee@example.com", 3, 14, "America/Los_Angeles"))
        .await;
    // No time zone of their own: the tenant's (UTC here).
    let utc = h.create(born("Uma", "uma@example.com", 3, 14, "")).await;
    let erased = h.create(born("Eve", "eve@example.com", 3, 14, "")).await;
    h.erase(&erased.name, "").await.expect("erase");
    let survivor = h.create(born("Sam", "sam@example.com", 3, 14, "")).await;
    let merged = h.create(born("Max", "max@example.com", 3, 14, "")).await;
    h.client()
        .merge_customers(tenant_request(
            TENANT,
            pb::MergeCustomersRequest {
                survivor: survivor.name.clone(),
                merged: merged.name.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .expect("merge");

    // Midnight in Tokyo is 15:00 UTC the day before: only Aiko's begins.
    clock.advance(at("2027-03-13T15:00:00Z") - clock_now(&clock));
    assert_eq!(
        wait_for(&h, &tokyo.name, 1).await,
        [(2027, at("2027-03-13T15:00:00Z"))]
    );
    for c in [&la, &utc, &survivor] {
        assert_eq!(greetings(&h, &c.name).await, [], "{} too early", c.name);
    }

    // Midnight UTC: Uma's and the survivor's.
    clock.advance(at("2027-03-14T00:00:00Z") - clock_now(&clock));
    let midnight = [(2027, at("2027-03-14T00:00:00Z"))];
    assert_eq!(wait_for(&h, &utc.name, 1).await, midnight);
    assert_eq!(wait_for(&h, &survivor.name, 1).await, midnight);

    // A restart in between: the timers are in the database.
    let testdb = h.stop().await;
    let h = start_at(testdb, &clock).await;
    // Midnight in Los Angeles (PST: daylight-saving time begins at 2:00).
    clock.advance(at("2027-03-14T08:00:00Z") - clock_now(&clock));
    assert_eq!(
        wait_for(&h, &la.name, 1).await,
        [(2027, at("2027-03-14T08:00:00Z"))]
    );

    // A year on, each again, once: next year's timer was set when this
    // year's fired.
    clock.advance(at("2028-03-14T08:00:00Z") - clock_now(&clock));
    assert_eq!(
        wait_for(&h, &la.name, 2).await,
        [
            (2027, at("2027-03-14T08:00:00Z")),
            (2028, at("2028-03-14T07:00:00Z"))
        ],
        "in 2028 Los Angeles is on PDT by March 14"
    );
    assert_eq!(wait_for(&h, &tokyo.name, 2).await.len(), 2);
    assert_eq!(wait_for(&h, &utc.name, 2).await.len(), 2);
    assert_eq!(wait_for(&h, &survivor.name, 2).await.len(), 2);
    // Never for the erased or the merged customer.
    assert_eq!(greetings(&h, &erased.name).await, []);
    assert_eq!(greetings(&h, &merged.name).await, []);
}

#[tokio::test]
async fn february_29_is_celebrated_on_february_28_in_other_years() {
    let clock = ManualClock::at(at("2027-02-01T00:00:00Z"));
    let h = start_at(TestDb::fresh().await.unwrap(), &clock).await;
    let leap = h.create(born("Leo", "leo@example.com", 2, 29, "")).await;
    clock.advance(at("2027-02-28T00:00:00Z") - clock_now(&clock));
    assert_eq!(
        wait_for(&h, &leap.name, 1).await,
        [(2027, at("2027-02-28T00:00:00Z"))]
    );
    // 2028 is a leap year: the 29th, not the 28th.
    clock.advance(at("2028-02-29T00:00:00Z") - clock_now(&clock));
    assert_eq!(
        wait_for(&h, &leap.name, 2).await,
        [
            (2027, at("2027-02-28T00:00:00Z")),
            (2028, at("2028-02-29T00:00:00Z"))
        ]
    );
}

#[tokio::test]
async fn a_birthday_moved_after_its_day_is_not_celebrated_twice_that_year() {
    let clock = ManualClock::at(at("2027-03-01T00:00:00Z"));
    let h = start_at(TestDb::fresh().await.unwrap(), &clock).await;
    let c = h.create(born("Ida", "ida@example.com", 3, 14, "")).await;
    clock.advance(at("2027-03-14T00:00:00Z") - clock_now(&clock));
    wait_for(&h, &c.name, 1).await;
    // Corrected to a later day of the same year.
    let mut moved = h.get(&c.name).await;
    moved.birthday = Some(pb::Birthday {
        month: 3,
        day: 20,
        year: 1990,
    });
    h.update(moved, &["birthday"]).await.expect("update");
    clock.advance(at("2027-03-20T00:00:00Z") - clock_now(&clock));
    // Its timer fires on the 20th, finds 2027 greeted, and waits for 2028.
    let key = format!("birthday:{}", c.name.trim_start_matches("customers/"));
    tokio::time::timeout(PATIENCE, async {
        loop {
            let timer = rapport_events::timers::get(&h.db.reader, TENANT, &key)
                .await
                .unwrap();
            if timer.is_some_and(|t| t.due == at("2028-03-20T00:00:00Z")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the birthday timer moved on to 2028");
    assert_eq!(
        greetings(&h, &c.name).await,
        [(2027, at("2027-03-14T00:00:00Z"))]
    );
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    rapport_usecase::Clock::now(clock)
}
