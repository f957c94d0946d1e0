//! Local time: a customer's time zone, and the instant a local time
//! happens in it (quiet hours, birthdays).
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone as _, Utc};

use super::model::Customer;

/// The time zone a customer's local times are in: their own, else `default`.
pub fn zone_of(customer: &Customer, default: chrono_tz::Tz) -> chrono_tz::Tz {
    customer
        .profile
        .time_zone
        .as_ref()
        .and_then(|z| z.as_str().parse::<chrono_tz::Tz>().ok())
        .unwrap_or(default)
}

/// The instant local time `local` happens in `zone`. A local time skipped
/// by a daylight-saving jump happens at the first instant after the jump
/// (an hour later); an ambiguous one at its first occurrence.
pub fn instant_at(zone: chrono_tz::Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(local + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}
