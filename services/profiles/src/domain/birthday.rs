//! Birthdays: when a customer's next one begins, in their own time zone.
//!
//! A birthday is celebrated from local midnight of the day, in the
//! customer's time zone (else the tenant's); February 29 falls on February
//! 28 in other years. Each customer has at most one birthday timer, the
//! next occurrence; the use-cases that change what it depends on (birthday,
//! time zone, state) say how it changes, through [`timer`].
use chrono::{DateTime, Datelike as _, NaiveDate, Utc};

use super::model::{Birthday, BirthdayTimer, Customer, CustomerState};
use super::zone::{instant_at, zone_of};

/// The day of `birthday` in `year`: February 29 is February 28 when `year`
/// is not a leap year.
pub fn day_in(birthday: &Birthday, year: i32) -> Option<NaiveDate> {
    let (month, day) = (u32::from(birthday.month), u32::from(birthday.day));
    NaiveDate::from_ymd_opt(year, month, day).or_else(|| {
        (month == 2 && day == 29)
            .then(|| NaiveDate::from_ymd_opt(year, 2, 28))
            .flatten()
    })
}

/// When the birthday of `year` begins: local midnight in `zone`.
pub fn begins(birthday: &Birthday, zone: chrono_tz::Tz, year: i32) -> Option<DateTime<Utc>> {
    instant_at(zone, day_in(birthday, year)?.and_hms_opt(0, 0, 0)?)
}

/// The next birthday at `now`: its year and when it begins. Today's counts
/// while it lasts (its start may be in the past: a timer scheduled late in
/// the day fires at once; the greeting is still once per year).
pub fn next(
    birthday: &Birthday,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Option<(i32, DateTime<Utc>)> {
    let today = now.with_timezone(&zone).date_naive();
    (today.year()..=today.year() + 1).find_map(|year| {
        let day = day_in(birthday, year)?;
        (day >= today).then_some((year, begins(birthday, zone, year)?))
    })
}

/// How a change from `before` (none for a new customer) to `after` changes
/// the customer's birthday timer; `None` when it does not. Only an active
/// customer with a birthday has one: erased and merged customers never
/// reach their birthday.
pub fn timer(
    before: Option<&Customer>,
    after: &Customer,
    default_zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Option<BirthdayTimer> {
    let wanted = |c: &Customer| {
        (c.state == CustomerState::Active)
            .then_some(c.profile.birthday.as_ref())
            .flatten()
            .map(|b| (b.month, b.day, zone_of(c, default_zone)))
    };
    let (was, is) = (before.and_then(wanted), wanted(after));
    if was == is {
        return None;
    }
    match (is, after.profile.birthday.as_ref()) {
        (Some((_, _, zone)), Some(birthday)) => {
            let (year, due) = next(birthday, zone, now)?;
            Some(BirthdayTimer::Schedule {
                customer: after.id,
                year,
                due,
            })
        }
        _ => Some(BirthdayTimer::Cancel { customer: after.id }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{model::Profile, values::TimeZone};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn on(month: u8, day: u8) -> Birthday {
        Birthday {
            month,
            day,
            year: None,
        }
    }

    fn customer(birthday: Option<Birthday>, zone: Option<&str>) -> Customer {
        Customer::new_active(
            Profile {
                birthday,
                time_zone: zone.map(|z| TimeZone::parse(z).unwrap()),
                ..Profile::default()
            },
            at("2026-01-01T00:00:00Z"),
        )
    }

    #[test]
    fn begins_at_local_midnight_in_the_zone() {
        let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
        let la: chrono_tz::Tz = "America/Los_Angeles".parse().unwrap();
        assert_eq!(
            begins(&on(3, 14), tokyo, 2027),
            Some(at("2027-03-13T15:00:00Z"))
        );
        // Daylight-saving time began on March 14, 2027 in Los Angeles, at
        // 2:00: midnight is still PST.
        assert_eq!(
            begins(&on(3, 14), la, 2027),
            Some(at("2027-03-14T08:00:00Z"))
        );
        assert_eq!(
            begins(&on(7, 4), la, 2027),
            Some(at("2027-07-04T07:00:00Z"))
        );
    }

    #[test]
    fn a_midnight_skipped_by_daylight_saving_begins_an_hour_later() {
        // Santiago springs forward at midnight: 2026-09-06 00:00 does not exist.
        let santiago: chrono_tz::Tz = "America/Santiago".parse().unwrap();
        let begins = begins(&on(9, 6), santiago, 2026).unwrap();
        assert_eq!(begins, at("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn february_29_is_february_28_in_other_years() {
        assert_eq!(
            day_in(&on(2, 29), 2027),
            NaiveDate::from_ymd_opt(2027, 2, 28)
        );
        assert_eq!(
            day_in(&on(2, 29), 2028),
            NaiveDate::from_ymd_opt(2028, 2, 29)
        );
        assert_eq!(
            next(&on(2, 29), chrono_tz::UTC, at("2027-02-28T12:00:00Z")),
            Some((2027, at("2027-02-28T00:00:00Z")))
        );
        assert_eq!(
            next(&on(2, 29), chrono_tz::UTC, at("2027-03-01T00:00:00Z")),
            Some((2028, at("2028-02-29T00:00:00Z")))
        );
    }

    #[test]
    fn the_next_birthday_is_today_while_it_lasts_in_the_customers_zone() {
        let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
        // 16:00 UTC on March 14 is already March 15 in Tokyo: this year's
        // birthday there is over.
        assert_eq!(
            next(&on(3, 14), tokyo, at("2027-03-14T16:00:00Z")),
            Some((2028, at("2028-03-13T15:00:00Z")))
        );
        assert_eq!(
            next(&on(3, 14), chrono_tz::UTC, at("2027-03-14T16:00:00Z")),
            Some((2027, at("2027-03-14T00:00:00Z")))
        );
        assert_eq!(
            next(&on(1, 1), chrono_tz::UTC, at("2027-12-31T23:00:00Z")),
            Some((2028, at("2028-01-01T00:00:00Z")))
        );
    }

    #[test]
    fn the_timer_follows_birthday_zone_and_state() {
        let now = at("2027-06-01T00:00:00Z");
        let utc = chrono_tz::UTC;
        let none = customer(None, None);
        let born = customer(Some(on(7, 1)), None);
        assert_eq!(timer(None, &none, utc, now), None);
        assert_eq!(
            timer(None, &born, utc, now),
            Some(BirthdayTimer::Schedule {
                customer: born.id,
                year: 2027,
                due: at("2027-07-01T00:00:00Z")
            })
        );
        // Unrelated changes leave it alone.
        assert_eq!(timer(Some(&born), &born, utc, now), None);
        // A new time zone moves it.
        let moved = Customer {
            profile: Profile {
                time_zone: Some(TimeZone::parse("Europe/Paris").unwrap()),
                ..born.profile.clone()
            },
            ..born.clone()
        };
        assert_eq!(
            timer(Some(&born), &moved, utc, now),
            Some(BirthdayTimer::Schedule {
                customer: born.id,
                year: 2027,
                due: at("2027-06-30T22:00:00Z")
            })
        );
        // Removing the birthday, erasing or merging cancels it.
        let removed = Customer {
            profile: Profile::default(),
            ..born.clone()
        };
        assert_eq!(
            timer(Some(&born), &removed, utc, now),
            Some(BirthdayTimer::Cancel { customer: born.id })
        );
        for state in [CustomerState::Erased, CustomerState::Merged] {
            let gone = Customer {
                state,
                ..born.clone()
            };
            assert_eq!(
                timer(Some(&born), &gone, utc, now),
                Some(BirthdayTimer::Cancel { customer: born.id })
            );
        }
    }
}
