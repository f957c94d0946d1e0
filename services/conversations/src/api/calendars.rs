//! Business calendars on the wire: the resource's conversion ([`Wire`]) and
//! the two read RPCs that do business-time arithmetic on a stored calendar.
use chrono::{DateTime, NaiveDate, Utc, Weekday};
use rapport_kit::convert::{from_ts, ts};
use rapport_proto::conversations as pb;
use rapport_usecase::Violations;
use tonic::Status;
use uuid::Uuid;

use super::{call::invalid, command::id_in, error::to_status, managed::Wire};
use crate::domain::{
    Clock, Error, Tenant,
    calendar::{
        CalendarSpec, HolidaySpec, OutOfRange, WeeklyHours, format_wall_time, parse_wall_time,
    },
    calendars::{Calendar, CalendarId},
    managed::Managed,
    ports::Customers,
    repository::Repository,
    service::Conversations,
};

const EPOCH: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

fn day_to_pb(day: Weekday) -> i32 {
    (day.num_days_from_monday() + 1) as i32
}

fn day_from_pb(raw: i32) -> Result<Weekday, String> {
    match raw {
        1..=7 => Ok(Weekday::try_from((raw - 1) as u8).expect("0..7")),
        0 => Err("is required".into()),
        _ => Err(format!("{raw} is not a DAY_OF_WEEK")),
    }
}

impl Wire for Calendar {
    type Pb = pb::BusinessCalendar;
    const COLLECTION: &'static str = "businessCalendars";
    fn to_pb(&self) -> pb::BusinessCalendar {
        let s = &self.spec;
        pb::BusinessCalendar {
            name: self.name(),
            display_name: self.display_name.clone(),
            time_zone: s.time_zone.clone(),
            always_open: s.always_open,
            weekly_hours: s
                .weekly_hours
                .iter()
                .map(|w| pb::WeeklyInterval {
                    day: day_to_pb(w.day),
                    start_time: format_wall_time(w.start_seconds),
                    end_time: format_wall_time(w.end_seconds),
                })
                .collect(),
            holidays: s
                .holidays
                .iter()
                .map(|h| pb::Holiday {
                    date: h.date.format("%Y-%m-%d").to_string(),
                    display_name: h.display_name.clone(),
                    open_hours: h
                        .open
                        .iter()
                        .map(|&(start, end)| pb::OpenHours {
                            start_time: format_wall_time(start),
                            end_time: format_wall_time(end),
                        })
                        .collect(),
                })
                .collect(),
            etag: self.etag(),
            create_time: Some(ts(self.create_time)),
            update_time: Some(ts(self.update_time)),
        }
    }
    fn name_etag(pb: &pb::BusinessCalendar) -> (&str, &str) {
        (&pb.name, &pb.etag)
    }
    /// A value that does not parse is reported at its own path; what stands
    /// in for it keeps the other fields' paths (a date that cannot be one
    /// of another holiday, an empty interval at the same index).
    fn from_pb(pb: &pb::BusinessCalendar, _: bool, v: &mut Violations) -> Self {
        let time = |v: &mut Violations, field: String, s: &str| {
            v.take(&field, parse_wall_time(s)).unwrap_or(0)
        };
        let weekly_hours = pb
            .weekly_hours
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let at = format!("business_calendar.weekly_hours[{i}]");
                WeeklyHours {
                    day: v
                        .take(&format!("{at}.day"), day_from_pb(w.day))
                        .unwrap_or(Weekday::Mon),
                    start_seconds: time(v, format!("{at}.start_time"), &w.start_time),
                    end_seconds: time(v, format!("{at}.end_time"), &w.end_time),
                }
            })
            .collect();
        let holidays = pb
            .holidays
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let at = format!("business_calendar.holidays[{i}]");
                let date = v
                    .take(
                        &format!("{at}.date"),
                        NaiveDate::parse_from_str(&h.date, "%Y-%m-%d")
                            .map_err(|_| format!("{:?} is not a date as YYYY-MM-DD", h.date)),
                    )
                    .unwrap_or(NaiveDate::MIN + chrono::Days::new(i as u64));
                let open = h
                    .open_hours
                    .iter()
                    .enumerate()
                    .map(|(j, o)| {
                        let at = format!("{at}.open_hours[{j}]");
                        (
                            time(v, format!("{at}.start_time"), &o.start_time),
                            time(v, format!("{at}.end_time"), &o.end_time),
                        )
                    })
                    .collect();
                HolidaySpec {
                    date,
                    display_name: h.display_name.clone(),
                    open,
                }
            })
            .collect();
        Calendar {
            id: CalendarId(Uuid::nil()),
            display_name: pb.display_name.clone(),
            spec: CalendarSpec {
                time_zone: pb.time_zone.clone(),
                always_open: pb.always_open,
                weekly_hours,
                holidays,
            },
            create_time: EPOCH,
            update_time: EPOCH,
            version: 0,
        }
    }
    fn apply(&mut self, from: &Self, path: &str) -> bool {
        match path {
            "display_name" => self.display_name.clone_from(&from.display_name),
            "time_zone" => self.spec.time_zone.clone_from(&from.spec.time_zone),
            "always_open" => self.spec.always_open = from.spec.always_open,
            "weekly_hours" => self.spec.weekly_hours.clone_from(&from.spec.weekly_hours),
            "holidays" => self.spec.holidays.clone_from(&from.spec.holidays),
            _ => return false,
        }
        true
    }
}

fn instant(
    v: &mut Violations,
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    match t {
        None => {
            v.add(field, "is required");
            None
        }
        Some(t) => v.take(field, from_ts(t).ok_or("is not a valid timestamp")),
    }
}

fn out_of_range(_: OutOfRange) -> Status {
    invalid(Violations::one(
        "duration",
        "reaches beyond year 9999 on this calendar",
    ))
}

async fn calendar<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    tenant: &Tenant,
    id: Uuid,
) -> Result<crate::domain::calendar::BusinessCalendar, Status> {
    let calendar: Calendar = service.managed(tenant, id).await.map_err(to_status)?;
    calendar
        .business()
        .map_err(|v| to_status(Error::Internal(format!("stored calendar invalid: {v:?}"))))
}

/// AddBusinessTime.
pub async fn add_business_time<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    tenant: &Tenant,
    req: &pb::AddBusinessTimeRequest,
) -> Result<pb::AddBusinessTimeResponse, Status> {
    let mut v = Violations::default();
    let id = v.take("name", id_in(&req.name, Calendar::COLLECTION));
    let start = instant(&mut v, "start_time", req.start_time.as_ref());
    let seconds = match &req.duration {
        None => {
            v.add("duration", "is required");
            None
        }
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            v.add("duration", "must not be negative");
            None
        }
        Some(d) if d.nanos != 0 => {
            v.add("duration", "is whole seconds");
            None
        }
        Some(d) => Some(d.seconds as u64),
    };
    v.check().map_err(invalid)?;
    let (id, start, seconds) = (
        id.expect("checked"),
        start.expect("checked"),
        seconds.expect("checked"),
    );
    let end = calendar(service, tenant, id)
        .await?
        .add(start, seconds)
        .map_err(out_of_range)?;
    Ok(pb::AddBusinessTimeResponse {
        end_time: Some(ts(end)),
    })
}

/// MeasureBusinessTime.
pub async fn measure_business_time<R: Repository, P: Customers, C: Clock>(
    service: &Conversations<R, P, C>,
    tenant: &Tenant,
    req: &pb::MeasureBusinessTimeRequest,
) -> Result<pb::MeasureBusinessTimeResponse, Status> {
    let mut v = Violations::default();
    let id = v.take("name", id_in(&req.name, Calendar::COLLECTION));
    let start = instant(&mut v, "start_time", req.start_time.as_ref());
    let end = instant(&mut v, "end_time", req.end_time.as_ref());
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        v.add("end_time", "must not be before start_time");
    }
    v.check().map_err(invalid)?;
    let (id, start, end) = (
        id.expect("checked"),
        start.expect("checked"),
        end.expect("checked"),
    );
    let seconds = calendar(service, tenant, id).await?.measure(start, end);
    Ok(pb::MeasureBusinessTimeResponse {
        duration: Some(prost_types::Duration {
            seconds: seconds as i64,
            nanos: 0,
        }),
    })
}
