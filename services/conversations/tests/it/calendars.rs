//! Business calendars through real gRPC: create, get, list and update with
//! etags and request ids, every bad field reported, and the two read RPCs
//! doing business-time arithmetic on the stored calendar.
use chrono::{DateTime, Utc};
use tonic::Code;

use crate::harness::*;

fn interval(day: pb::DayOfWeek, start: &str, end: &str) -> pb::WeeklyInterval {
    pb::WeeklyInterval {
        day: day as i32,
        start_time: start.into(),
        end_time: end.into(),
    }
}

/// Berlin, weekdays 09:00–12:00 and 13:00–17:00; short Christmas Eve,
/// closed on Christmas Day.
fn berlin(display_name: &str) -> pb::BusinessCalendar {
    use pb::DayOfWeek::*;
    let mut weekly_hours = Vec::new();
    for day in [Monday, Tuesday, Wednesday, Thursday, Friday] {
        weekly_hours.push(interval(day, "13:00", "17:00"));
        weekly_hours.push(interval(day, "09:00", "12:00"));
    }
    pb::BusinessCalendar {
        display_name: display_name.into(),
        time_zone: "Europe/Berlin".into(),
        weekly_hours,
        holidays: vec![
            pb::Holiday {
                date: "2026-12-24".into(),
                display_name: "Christmas Eve".into(),
                open_hours: vec![pb::OpenHours {
                    start_time: "09:00".into(),
                    end_time: "12:00".into(),
                }],
            },
            pb::Holiday {
                date: "2026-12-25".into(),
                display_name: "Christmas Day".into(),
                open_hours: vec![],
            },
        ],
        ..Default::default()
    }
}

async fn try_create(
    h: &Harness,
    tenant: &str,
    calendar: pb::BusinessCalendar,
    request_id: &str,
) -> Result<pb::BusinessCalendar, tonic::Status> {
    h.client()
        .create_business_calendar(tenant_request(
            tenant,
            pb::CreateBusinessCalendarRequest {
                business_calendar: Some(calendar),
                request_id: request_id.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().business_calendar.unwrap())
}

fn at(rfc3339: &str) -> Option<prost_types::Timestamp> {
    let t: DateTime<Utc> = DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc();
    Some(rapport_kit::convert::ts(t))
}

fn secs(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

async fn add(
    h: &Harness,
    tenant: &str,
    name: &str,
    start: &str,
    seconds: i64,
) -> Result<String, tonic::Status> {
    let end = h
        .client()
        .add_business_time(tenant_request(
            tenant,
            pb::AddBusinessTimeRequest {
                name: name.into(),
                start_time: at(start),
                duration: secs(seconds),
            },
        ))
        .await?
        .into_inner()
        .end_time
        .unwrap();
    Ok(rapport_kit::convert::from_ts(&end).unwrap().to_rfc3339())
}

async fn measure(h: &Harness, name: &str, start: &str, end: &str) -> Result<i64, tonic::Status> {
    Ok(h.client()
        .measure_business_time(tenant_request(
            TENANT,
            pb::MeasureBusinessTimeRequest {
                name: name.into(),
                start_time: at(start),
                end_time: at(end),
            },
        ))
        .await?
        .into_inner()
        .duration
        .unwrap()
        .seconds)
}

#[tokio::test]
async fn calendars_are_created_once_per_request_id_read_listed_and_updated_with_etags() {
    let h = start().await;
    let created = try_create(&h, TENANT, berlin("Support Berlin"), "req-1")
        .await
        .unwrap_or_else(|s| panic!("CreateBusinessCalendar: {}", describe(&s)));
    assert!(created.name.starts_with("businessCalendars/"));
    assert_eq!(created.etag, "\"1\"");
    assert_eq!(created.weekly_hours[0].start_time, "13:00");
    assert_eq!(created.holidays[0].open_hours[0].end_time, "12:00");
    // A retry with the same request id answers the first result.
    let again = try_create(&h, TENANT, berlin("Support Berlin"), "req-1")
        .await
        .unwrap();
    assert_eq!(again, created);
    // Another request with the same display name clashes.
    let taken = expect_err(try_create(&h, TENANT, berlin("support berlin"), "req-2").await);
    assert_error(
        &taken,
        Code::AlreadyExists,
        "BUSINESS_CALENDAR_ALREADY_EXISTS",
    );
    // Another tenant may use the name and cannot see the first calendar.
    try_create(&h, OTHER_TENANT, berlin("Support Berlin"), "req-1")
        .await
        .unwrap();
    let hidden = expect_err(
        h.client()
            .get_business_calendar(tenant_request(
                OTHER_TENANT,
                pb::GetBusinessCalendarRequest {
                    name: created.name.clone(),
                },
            ))
            .await,
    );
    assert_error(&hidden, Code::NotFound, "BUSINESS_CALENDAR_NOT_FOUND");

    let got = h
        .client()
        .get_business_calendar(tenant_request(
            TENANT,
            pb::GetBusinessCalendarRequest {
                name: created.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .business_calendar
        .unwrap();
    assert_eq!(got, created);
    let listed = h
        .client()
        .list_business_calendars(tenant_request(
            TENANT,
            pb::ListBusinessCalendarsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.business_calendars, vec![created.clone()]);

    let update = |calendar: pb::BusinessCalendar, paths: &[&str], request_id: &str| {
        let mut client = h.client();
        let request = pb::UpdateBusinessCalendarRequest {
            business_calendar: Some(calendar),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            request_id: request_id.into(),
        };
        async move {
            client
                .update_business_calendar(tenant_request(TENANT, request))
                .await
                .map(|r| r.into_inner().business_calendar.unwrap())
        }
    };
    let mut change = created.clone();
    change.time_zone = "America/New_York".into();
    let moved = update(change.clone(), &["time_zone"], "req-3")
        .await
        .unwrap();
    assert_eq!(
        (moved.time_zone.as_str(), moved.etag.as_str()),
        ("America/New_York", "\"2\"")
    );
    // The retry changes nothing more; a stale etag is refused.
    assert_eq!(
        update(change.clone(), &["time_zone"], "req-3")
            .await
            .unwrap(),
        moved
    );
    let stale = expect_err(update(change, &["display_name"], "req-4").await);
    assert_error(&stale, Code::Aborted, "ETAG_MISMATCH");
    // An update is checked like a create.
    let mut bad = moved.clone();
    bad.always_open = true;
    let both = expect_err(update(bad, &["always_open"], "").await);
    assert_violation(&both, "business_calendar.weekly_hours");
    assert_violation(&both, "business_calendar.holidays");
    let mut open = moved.clone();
    open.always_open = true;
    open.weekly_hours.clear();
    open.holidays.clear();
    let open = update(open, &["always_open", "weekly_hours", "holidays"], "")
        .await
        .unwrap_or_else(|s| panic!("{}", describe(&s)));
    assert!(open.always_open && open.weekly_hours.is_empty());
    assert_eq!(
        add(&h, TENANT, &open.name, "2026-12-25T10:00:00Z", 3600)
            .await
            .unwrap(),
        "2026-12-25T11:00:00+00:00"
    );
}

#[tokio::test]
async fn bad_calendars_report_every_bad_field() {
    use pb::DayOfWeek::*;
    let h = start().await;
    let calendar = pb::BusinessCalendar {
        display_name: " ".into(),
        time_zone: "Europe/Atlantis".into(),
        weekly_hours: vec![
            interval(Monday, "09:00", "17:00"),
            interval(Monday, "16:00", "18:00"),
            interval(Tuesday, "22:00", "02:00"),
            interval(Wednesday, "9:00", "25:00"),
            interval(Unspecified, "09:00", "10:00"),
        ],
        holidays: vec![pb::Holiday {
            date: "24.12.2026".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let status = expect_err(try_create(&h, TENANT, calendar, "").await);
    for field in [
        "business_calendar.display_name",
        "business_calendar.time_zone",
        "business_calendar.weekly_hours[1]",
        "business_calendar.weekly_hours[2]",
        "business_calendar.weekly_hours[3].start_time",
        "business_calendar.weekly_hours[3].end_time",
        "business_calendar.weekly_hours[4].day",
        "business_calendar.holidays[0].date",
    ] {
        assert_violation(&status, field);
    }
    let none = expect_err(
        try_create(
            &h,
            TENANT,
            pb::BusinessCalendar {
                display_name: "Nothing".into(),
                time_zone: "UTC".into(),
                ..Default::default()
            },
            "",
        )
        .await,
    );
    assert_violation(&none, "business_calendar.weekly_hours");
}

#[tokio::test]
async fn business_time_is_added_and_measured_on_the_stored_calendar() {
    let h = start().await;
    let c = try_create(&h, TENANT, berlin("Berlin"), "").await.unwrap();
    // Friday 2026-06-05 16:30 CEST (14:30Z) + 1 h: Monday 09:30 CEST.
    assert_eq!(
        add(&h, TENANT, &c.name, "2026-06-05T14:30:00Z", 3600)
            .await
            .unwrap(),
        "2026-06-08T07:30:00+00:00"
    );
    // Arrival on Saturday, zero: the next opening.
    assert_eq!(
        add(&h, TENANT, &c.name, "2026-06-06T10:00:00Z", 0)
            .await
            .unwrap(),
        "2026-06-08T07:00:00+00:00"
    );
    // Over Christmas: Wednesday 23 Dec 16:00 CET + 5 h ends Monday 28 at 10:00.
    assert_eq!(
        add(&h, TENANT, &c.name, "2026-12-23T15:00:00Z", 5 * 3600)
            .await
            .unwrap(),
        "2026-12-28T09:00:00+00:00"
    );
    // Across the October change the hours stay 09:00–17:00 local.
    assert_eq!(
        add(&h, TENANT, &c.name, "2026-10-23T14:00:00Z", 2 * 3600)
            .await
            .unwrap(),
        "2026-10-26T09:00:00+00:00"
    );
    // A target of a year of working weeks, and measuring it back.
    let year = 52 * 35 * 3600;
    let end = add(&h, TENANT, &c.name, "2026-01-05T08:00:00Z", year)
        .await
        .unwrap();
    assert_eq!(
        measure(&h, &c.name, "2026-01-05T08:00:00Z", &end)
            .await
            .unwrap(),
        year
    );
    assert_eq!(
        measure(&h, &c.name, "2026-06-05T14:30:00Z", "2026-06-08T07:30:00Z")
            .await
            .unwrap(),
        3600
    );

    let bad = expect_err(add(&h, TENANT, &c.name, "2026-06-05T14:30:00Z", -1).await);
    assert_violation(&bad, "duration");
    let reversed =
        expect_err(measure(&h, &c.name, "2026-06-08T07:30:00Z", "2026-06-05T14:30:00Z").await);
    assert_violation(&reversed, "end_time");
    let unnamed = expect_err(add(&h, TENANT, "inboxes/x", "2026-06-05T14:30:00Z", 1).await);
    assert_violation(&unnamed, "name");
    let elsewhere = expect_err(add(&h, OTHER_TENANT, &c.name, "2026-06-05T14:30:00Z", 1).await);
    assert_error(&elsewhere, Code::NotFound, "BUSINESS_CALENDAR_NOT_FOUND");
}
