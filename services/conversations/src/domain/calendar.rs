//! Business calendars: when a team works, and business-time arithmetic on
//! it. Pure: no I/O, no clock; every function takes the instants it needs.
//!
//! Semantics (PRODUCT.md §3.1 invariant 6, peers.md §(b)–(c)):
//! - Hours are wall-clock intervals per weekday in the calendar's IANA zone,
//!   several a day, `[start, end)` with `end` up to 24:00. An interval never
//!   crosses midnight: it is two intervals, one ending at 24:00 and one
//!   starting at 00:00 the next day, and adjacent intervals are one stretch
//!   of working time.
//! - A holiday replaces its date's weekly hours: no hours (closed all day)
//!   or reduced hours (a partial day, say 09:00–12:00 on 24 December).
//! - Daylight-saving days keep their wall-clock hours: 09:00–17:00 is 09:00
//!   to 17:00 local on the day the clocks change. A wall time that does not
//!   exist (in the spring-forward gap) means the end of the gap; a wall time
//!   that exists twice (fall-back) means its first occurrence. Both ends of
//!   every interval resolve the same way, so adjacent intervals stay adjacent
//!   and a day's intervals partition real time without overlap.
//! - `add` starts an arrival off hours at the next opening, so `add(t, 0)`
//!   is the next opening (or `t` itself during hours), and a target that
//!   runs out exactly at a closing time ends at that closing time.
//! - Targets are seconds with no upper cap (Zammad #418 capped at 99 h).
//!   Whole regular weeks are skipped arithmetically; only weeks with a
//!   holiday or an offset change are walked day by day.
//!
//! Business time is counted in whole seconds per working interval.
use std::collections::BTreeMap;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, Offset, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::Violations;

/// Seconds in a (wall-clock) day: the largest interval end, 24:00.
pub const DAY_SECONDS: u32 = 86_400;
/// Most weekly intervals in a calendar.
pub const MAX_WEEKLY_INTERVALS: usize = 7 * 24;
/// Most holidays in a calendar.
pub const MAX_HOLIDAYS: usize = 2_000;
/// Most intervals on one holiday.
pub const MAX_HOLIDAY_INTERVALS: usize = 24;
/// Results and holidays stay within years 1..=9999, as RFC 3339 and
/// `google.protobuf.Timestamp` require.
pub const MAX_YEAR: i32 = 9999;

/// A working interval of one day in wall-clock seconds since midnight,
/// `[start, end)`, with `start < end <= 24:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenInterval {
    start: u32,
    end: u32,
}

impl OpenInterval {
    /// Checks the bounds; the message names the rule broken.
    pub fn new(start: u32, end: u32) -> Result<Self, String> {
        if start >= DAY_SECONDS {
            return Err("start_time must be before 24:00".into());
        }
        if end > DAY_SECONDS {
            return Err("end_time must be at most 24:00".into());
        }
        if end <= start {
            return Err(
                "end_time must be after start_time; an interval that crosses midnight \
                 is two intervals: one ending at 24:00 and one starting at 00:00 the next day"
                    .into(),
            );
        }
        Ok(Self { start, end })
    }

    fn wall_seconds(&self) -> u64 {
        u64::from(self.end - self.start)
    }
}

/// One weekly interval as it is given: a weekday and its wall-clock bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklyHours {
    /// The weekday.
    pub day: Weekday,
    /// Seconds since midnight, 0..86 400.
    pub start_seconds: u32,
    /// Seconds since midnight, up to 86 400 (24:00).
    pub end_seconds: u32,
}

/// A holiday as it is given: closed all day, or open only during `open`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolidaySpec {
    /// The local date.
    pub date: NaiveDate,
    /// A name for people ("Christmas Eve").
    pub display_name: String,
    /// The hours open that day as (start, end) seconds; empty = closed.
    pub open: Vec<(u32, u32)>,
}

/// A calendar as it is given, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CalendarSpec {
    /// IANA time zone name ("Europe/Berlin").
    pub time_zone: String,
    /// Open every second of every day; then no hours and no holidays.
    pub always_open: bool,
    /// Weekly working intervals.
    pub weekly_hours: Vec<WeeklyHours>,
    /// Holidays, at most one per date.
    pub holidays: Vec<HolidaySpec>,
}

/// A checked calendar that business time is computed on.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessCalendar {
    zone: Tz,
    hours: Hours,
}

#[derive(Debug, Clone, PartialEq)]
enum Hours {
    AlwaysOpen,
    Weekly {
        /// Sorted, non-overlapping intervals per weekday, Monday first.
        week: [Vec<OpenInterval>; 7],
        /// Wall seconds open in a week without holidays (> 0).
        week_seconds: u64,
        /// Hours open on each holiday (empty = closed).
        holidays: BTreeMap<NaiveDate, Vec<OpenInterval>>,
    },
}

/// The result would lie beyond year 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange;

/// Parses an IANA zone name.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    if name.trim().is_empty() {
        return Err("is required: an IANA time zone such as Europe/Berlin".into());
    }
    name.parse::<Tz>()
        .map_err(|_| format!("{name:?} is not an IANA time zone (such as Europe/Berlin)"))
}

/// Parses a wall-clock time, `HH:MM` or `HH:MM:SS`, `24:00` the latest,
/// into seconds since midnight.
pub fn parse_wall_time(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time of day as HH:MM or HH:MM:SS (00:00 to 24:00)");
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let n: Vec<u32> = parts.iter().map(|p| p.parse().unwrap_or(99)).collect();
    let (h, m, sec) = (n[0], n[1], n.get(2).copied().unwrap_or(0));
    if m > 59 || sec > 59 || h > 24 || (h == 24 && (m, sec) != (0, 0)) {
        return Err(bad());
    }
    Ok(h * 3600 + m * 60 + sec)
}

/// Formats seconds since midnight as `HH:MM`, or `HH:MM:SS` when the
/// seconds are not zero.
pub fn format_wall_time(seconds: u32) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if s == 0 {
        format!("{h:02}:{m:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Checks a list of intervals of one day, reporting each bad one under
/// `field(i)`; returns them sorted.
fn check_day(
    items: &[(usize, u32, u32)],
    field: &dyn Fn(usize) -> String,
    day: &str,
    v: &mut Violations,
) -> Vec<OpenInterval> {
    let mut ok: Vec<(usize, OpenInterval)> = items
        .iter()
        .filter_map(|&(i, s, e)| v.take(&field(i), OpenInterval::new(s, e)).map(|iv| (i, iv)))
        .collect();
    ok.sort_by_key(|(_, iv)| *iv);
    for pair in ok.windows(2) {
        let ((i, a), (j, b)) = (pair[0], pair[1]);
        if b.start < a.end {
            v.add(
                field(j),
                format!(
                    "overlaps {} on {day}; intervals of a day must not overlap",
                    field(i)
                ),
            );
        }
    }
    ok.into_iter().map(|(_, iv)| iv).collect()
}

impl BusinessCalendar {
    /// Checks a spec, reporting every bad field (`time_zone`,
    /// `weekly_hours[i]`, `holidays[i].date`, `holidays[i].open_hours[j]`).
    pub fn new(spec: &CalendarSpec) -> Result<Self, Violations> {
        let mut v = Violations::default();
        let zone = v.take("time_zone", parse_zone(&spec.time_zone));
        if spec.always_open {
            if !spec.weekly_hours.is_empty() {
                v.add("weekly_hours", "must be empty when always_open is set");
            }
            if !spec.holidays.is_empty() {
                v.add("holidays", "must be empty when always_open is set");
            }
            v.check()?;
            let zone = zone.expect("checked");
            return Ok(Self {
                zone,
                hours: Hours::AlwaysOpen,
            });
        }
        if spec.weekly_hours.is_empty() {
            v.add(
                "weekly_hours",
                "needs at least one interval unless always_open is set",
            );
        }
        if spec.weekly_hours.len() > MAX_WEEKLY_INTERVALS {
            v.add(
                "weekly_hours",
                format!("at most {MAX_WEEKLY_INTERVALS} intervals"),
            );
        }
        let week: [Vec<OpenInterval>; 7] = std::array::from_fn(|d| {
            let items: Vec<(usize, u32, u32)> = spec
                .weekly_hours
                .iter()
                .enumerate()
                .filter(|(_, w)| w.day.num_days_from_monday() as usize == d)
                .map(|(i, w)| (i, w.start_seconds, w.end_seconds))
                .collect();
            let day = Weekday::try_from(d as u8).expect("0..7").to_string();
            check_day(&items, &|i| format!("weekly_hours[{i}]"), &day, &mut v)
        });
        if spec.holidays.len() > MAX_HOLIDAYS {
            v.add("holidays", format!("at most {MAX_HOLIDAYS} holidays"));
        }
        let mut holidays = BTreeMap::new();
        let mut first_index: BTreeMap<NaiveDate, usize> = BTreeMap::new();
        for (h, holiday) in spec.holidays.iter().enumerate() {
            if holiday.date.year() < 1 || holiday.date.year() > MAX_YEAR {
                v.add(format!("holidays[{h}].date"), "must be in years 1 to 9999");
            }
            if let Some(first) = first_index.insert(holiday.date, h) {
                v.add(
                    format!("holidays[{h}].date"),
                    format!("{} is already holidays[{first}]", holiday.date),
                );
            }
            if holiday.display_name.chars().count() > 200 {
                v.add(
                    format!("holidays[{h}].display_name"),
                    "at most 200 characters",
                );
            }
            if holiday.open.len() > MAX_HOLIDAY_INTERVALS {
                v.add(
                    format!("holidays[{h}].open_hours"),
                    format!("at most {MAX_HOLIDAY_INTERVALS} intervals"),
                );
            }
            let items: Vec<(usize, u32, u32)> = holiday
                .open
                .iter()
                .enumerate()
                .map(|(i, &(s, e))| (i, s, e))
                .collect();
            let day = holiday.date.to_string();
            let open = check_day(
                &items,
                &|i| format!("holidays[{h}].open_hours[{i}]"),
                &day,
                &mut v,
            );
            holidays.insert(holiday.date, open);
        }
        v.check()?;
        let week_seconds = week.iter().flatten().map(OpenInterval::wall_seconds).sum();
        Ok(Self {
            zone: zone.expect("checked"),
            hours: Hours::Weekly {
                week,
                week_seconds,
                holidays,
            },
        })
    }

    /// The calendar's zone.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Whether `t` lies in working time.
    #[allow(
        dead_code,
        reason = "used by SLA warnings and the auto-acknowledgement, the next steps of issue 14"
    )]
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        match &self.hours {
            Hours::AlwaysOpen => true,
            Hours::Weekly { .. } => {
                let day = self.local_date(t);
                [day.pred_opt(), Some(day)].into_iter().flatten().any(|d| {
                    self.day_intervals(d)
                        .iter()
                        .any(|iv| self.resolve(d, iv.start) <= t && t < self.resolve(d, iv.end))
                })
            }
        }
    }

    /// The first instant at or after `t` in working time: `t` itself during
    /// hours.
    pub fn next_opening(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, OutOfRange> {
        self.add(t, 0)
    }

    /// `start` plus `seconds` of business time. An arrival off hours starts
    /// at the next opening; a target that runs out at a closing time ends
    /// there.
    pub fn add(&self, start: DateTime<Utc>, seconds: u64) -> Result<DateTime<Utc>, OutOfRange> {
        self.add_inner(start, seconds, true)
    }

    fn add_inner(
        &self,
        start: DateTime<Utc>,
        seconds: u64,
        skip_weeks: bool,
    ) -> Result<DateTime<Utc>, OutOfRange> {
        let Hours::Weekly { week_seconds, .. } = &self.hours else {
            let secs = i64::try_from(seconds).map_err(|_| OutOfRange)?;
            return Duration::try_seconds(secs)
                .and_then(|d| start.checked_add_signed(d))
                .filter(|t| t.year() <= MAX_YEAR)
                .ok_or(OutOfRange);
        };
        // No day holds more than 25 hours: a target beyond that many days
        // left before year 10000 is out of range without walking there.
        let days_left = i64::from(MAX_YEAR + 1 - start.year()) * 366;
        if seconds / 90_000 > days_left.max(0) as u64 {
            return Err(OutOfRange);
        }
        let mut remaining = seconds;
        // The day before too: on a zone that falls back across midnight an
        // instant of the new day can precede the end of the old one.
        let mut day = self.local_date(start).pred_opt().ok_or(OutOfRange)?;
        loop {
            if day.year() > MAX_YEAR {
                return Err(OutOfRange);
            }
            if skip_weeks
                && remaining > *week_seconds
                && self.resolve(day, 0) >= start
                && let Some(next) = self.regular_week(day)
            {
                remaining -= week_seconds;
                day = next;
                continue;
            }
            for iv in self.day_intervals(day) {
                let open = self.resolve(day, iv.start).max(start);
                let close = self.resolve(day, iv.end);
                if close <= open {
                    continue;
                }
                let available = (close - open).num_seconds() as u64;
                if remaining <= available {
                    return Ok(open + Duration::seconds(remaining as i64));
                }
                remaining -= available;
            }
            day = day.succ_opt().ok_or(OutOfRange)?;
        }
    }

    /// Business seconds in `[from, to)`; 0 when `to <= from`.
    pub fn measure(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
        self.measure_inner(from, to, true)
    }

    fn measure_inner(&self, from: DateTime<Utc>, to: DateTime<Utc>, skip_weeks: bool) -> u64 {
        if to <= from {
            return 0;
        }
        let Hours::Weekly { week_seconds, .. } = &self.hours else {
            return (to - from).num_seconds() as u64;
        };
        let mut total = 0;
        let Some(mut day) = self.local_date(from).pred_opt() else {
            return 0;
        };
        let last = self.local_date(to);
        while day <= last {
            if skip_weeks
                && self.resolve(day, 0) >= from
                && let Some(next) = self.regular_week(day)
                && self.resolve(next, 0) <= to
            {
                total += week_seconds;
                day = next;
                continue;
            }
            for iv in self.day_intervals(day) {
                let open = self.resolve(day, iv.start).max(from);
                let close = self.resolve(day, iv.end).min(to);
                if close > open {
                    total += (close - open).num_seconds() as u64;
                }
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
        total
    }

    /// When the seven days from `day` hold no holiday and the zone's offset
    /// is the same at both ends, every interval has its wall-clock length and
    /// the week holds exactly `week_seconds`: the date a week later. This
    /// assumes no zone changes its offset and back within one week, which
    /// tzdb has never recorded; the tests compare against the day-by-day walk.
    fn regular_week(&self, day: NaiveDate) -> Option<NaiveDate> {
        let Hours::Weekly { holidays, .. } = &self.hours else {
            return None;
        };
        let next = day.checked_add_days(chrono::Days::new(7))?;
        if holidays.range(day..next).next().is_some() {
            return None;
        }
        (self.offset(self.resolve(day, 0)) == self.offset(self.resolve(next, 0))).then_some(next)
    }

    fn day_intervals(&self, day: NaiveDate) -> &[OpenInterval] {
        match &self.hours {
            Hours::AlwaysOpen => &[],
            Hours::Weekly { week, holidays, .. } => holidays
                .get(&day)
                .unwrap_or(&week[day.weekday().num_days_from_monday() as usize]),
        }
    }

    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.zone).date_naive()
    }

    fn offset(&self, t: DateTime<Utc>) -> i32 {
        self.zone
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    }

    /// The instant of wall time `seconds` after midnight of `day` (86 400 is
    /// the next midnight): the first occurrence of a repeated wall time, the
    /// end of the gap for a skipped one.
    fn resolve(&self, day: NaiveDate, seconds: u32) -> DateTime<Utc> {
        let wall = day.and_time(NaiveTime::MIN) + Duration::seconds(i64::from(seconds));
        match self.zone.from_local_datetime(&wall) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
            LocalResult::None => {
                // In a gap: the first instant whose wall time is at or after
                // `wall`. Offsets lie within ±18 h, and wall time only moves
                // forward around a gap, so a binary search over seconds finds it.
                let target = wall.and_utc().timestamp();
                let wall_at = |u: i64| {
                    let t = DateTime::from_timestamp(u, 0).expect("in range");
                    u + i64::from(self.offset(t))
                };
                let (mut lo, mut hi) = (target - 18 * 3600, target + 18 * 3600);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if wall_at(mid) >= target {
                        hi = mid;
                    } else {
                        lo = mid;
                    }
                }
                DateTime::from_timestamp(hi, 0).expect("in range")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Weekday::*;

    const H: u32 = 3600;

    fn weekly(days: &[Weekday], intervals: &[(u32, u32)]) -> Vec<WeeklyHours> {
        days.iter()
            .flat_map(|&day| {
                intervals.iter().map(move |&(s, e)| WeeklyHours {
                    day,
                    start_seconds: s,
                    end_seconds: e,
                })
            })
            .collect()
    }

    fn cal(zone: &str, hours: Vec<WeeklyHours>, holidays: Vec<HolidaySpec>) -> BusinessCalendar {
        BusinessCalendar::new(&CalendarSpec {
            time_zone: zone.into(),
            always_open: false,
            weekly_hours: hours,
            holidays,
        })
        .unwrap()
    }

    fn office(zone: &str) -> BusinessCalendar {
        cal(
            zone,
            weekly(&[Mon, Tue, Wed, Thu, Fri], &[(9 * H, 17 * H)]),
            vec![],
        )
    }

    /// The instant of a local wall time (first occurrence).
    fn at(c: &BusinessCalendar, s: &str) -> DateTime<Utc> {
        let wall = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        c.zone()
            .from_local_datetime(&wall)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn local(c: &BusinessCalendar, t: DateTime<Utc>) -> String {
        t.with_timezone(&c.zone())
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    }

    fn holiday(date: &str, open: &[(u32, u32)]) -> HolidaySpec {
        HolidaySpec {
            date: date.parse().unwrap(),
            display_name: "holiday".into(),
            open: open.to_vec(),
        }
    }

    #[test]
    fn inside_hours_adds_within_the_day_and_carries_over_to_the_next() {
        let c = office("Europe/Berlin");
        // 2026-06-01 is a Monday.
        let mon10 = at(&c, "2026-06-01 10:00");
        assert_eq!(
            local(&c, c.add(mon10, 3600).unwrap()),
            "2026-06-01 11:00:00 CEST"
        );
        assert_eq!(
            local(&c, c.add(mon10, 7 * 3600).unwrap()),
            "2026-06-01 17:00:00 CEST"
        );
        assert_eq!(
            local(&c, c.add(mon10, 8 * 3600).unwrap()),
            "2026-06-02 10:00:00 CEST"
        );
        // Friday afternoon to Monday morning skips the weekend.
        let fri16 = at(&c, "2026-06-05 16:00");
        assert_eq!(
            local(&c, c.add(fri16, 2 * 3600).unwrap()),
            "2026-06-08 10:00:00 CEST"
        );
        assert_eq!(c.measure(fri16, at(&c, "2026-06-08 10:00")), 2 * 3600);
    }

    #[test]
    fn an_arrival_off_hours_starts_at_the_next_opening() {
        let c = office("America/New_York");
        let sat = at(&c, "2026-06-06 12:00");
        assert_eq!(
            local(&c, c.next_opening(sat).unwrap()),
            "2026-06-08 09:00:00 EDT"
        );
        assert_eq!(local(&c, c.add(sat, 0).unwrap()), "2026-06-08 09:00:00 EDT");
        assert_eq!(
            local(&c, c.add(sat, 60).unwrap()),
            "2026-06-08 09:01:00 EDT"
        );
        let early = at(&c, "2026-06-09 07:30");
        assert_eq!(
            local(&c, c.add(early, 1800).unwrap()),
            "2026-06-09 09:30:00 EDT"
        );
        let late = at(&c, "2026-06-09 17:00");
        assert_eq!(
            local(&c, c.next_opening(late).unwrap()),
            "2026-06-10 09:00:00 EDT"
        );
        let inside = at(&c, "2026-06-09 12:34");
        assert_eq!(c.next_opening(inside).unwrap(), inside);
        assert!(c.is_open(inside) && !c.is_open(sat) && !c.is_open(late) && !c.is_open(early));
        assert_eq!(c.measure(sat, at(&c, "2026-06-08 09:00")), 0);
        assert_eq!(c.measure(inside, sat), 0, "to before from");
    }

    #[test]
    fn several_intervals_a_day_skip_the_lunch_break() {
        let c = cal(
            "Europe/Paris",
            weekly(
                &[Mon, Tue, Wed, Thu, Fri],
                &[(14 * H, 18 * H), (9 * H, 12 * H)],
            ),
            vec![],
        );
        let mon11 = at(&c, "2026-06-01 11:00");
        assert_eq!(
            local(&c, c.add(mon11, 3600).unwrap()),
            "2026-06-01 12:00:00 CEST"
        );
        assert_eq!(
            local(&c, c.add(mon11, 3601).unwrap()),
            "2026-06-01 14:00:01 CEST"
        );
        assert_eq!(c.measure(mon11, at(&c, "2026-06-02 10:00")), 6 * 3600);
        assert!(!c.is_open(at(&c, "2026-06-01 13:00")));
    }

    #[test]
    fn europe_spring_forward_keeps_wall_clock_hours() {
        // Berlin: 2026-03-29 (Sunday) 02:00 CET → 03:00 CEST.
        let every_day = [Mon, Tue, Wed, Thu, Fri, Sat, Sun];
        let c = cal(
            "Europe/Berlin",
            weekly(&every_day, &[(9 * H, 17 * H)]),
            vec![],
        );
        let sat1630 = at(&c, "2026-03-28 16:30");
        assert_eq!(
            local(&c, c.add(sat1630, 3600).unwrap()),
            "2026-03-29 09:30:00 CEST"
        );
        // A week of 8-hour days across the change is 56 hours.
        let mon = at(&c, "2026-03-23 00:00");
        assert_eq!(c.measure(mon, at(&c, "2026-03-30 00:00")), 56 * 3600);
        // A night shift across the gap: 01:00–04:00 wall is two real hours.
        let night = cal("Europe/Berlin", weekly(&[Sun], &[(H, 4 * H)]), vec![]);
        let sun = at(&night, "2026-03-29 00:00");
        assert_eq!(night.measure(sun, sun + Duration::days(1)), 2 * 3600);
        assert_eq!(
            local(&night, night.add(sun, 3600).unwrap()),
            "2026-03-29 03:00:00 CEST"
        );
        // An interval starting inside the gap starts at its end.
        let gap = cal(
            "Europe/Berlin",
            weekly(&[Sun], &[(2 * H + 1800, 5 * H)]),
            vec![],
        );
        assert_eq!(
            local(&gap, gap.next_opening(sun).unwrap()),
            "2026-03-29 03:00:00 CEST"
        );
        assert_eq!(gap.measure(sun, sun + Duration::days(1)), 2 * 3600);
        // All day on that Sunday is 23 hours.
        let all = cal("Europe/Berlin", weekly(&[Sun], &[(0, 24 * H)]), vec![]);
        assert_eq!(all.measure(sun, sun + Duration::days(2)), 23 * 3600);
    }

    #[test]
    fn europe_fall_back_keeps_wall_clock_hours() {
        // Berlin: 2026-10-25 (Sunday) 03:00 CEST → 02:00 CET.
        let all = cal("Europe/Berlin", weekly(&[Sun], &[(0, 24 * H)]), vec![]);
        let sun = at(&all, "2026-10-25 00:00");
        assert_eq!(all.measure(sun, sun + Duration::days(2)), 25 * 3600);
        // 02:00–03:00 wall: from the first 02:00 (CEST) to 03:00 CET.
        let c = cal("Europe/Berlin", weekly(&[Sun], &[(2 * H, 3 * H)]), vec![]);
        assert_eq!(c.measure(sun, sun + Duration::days(1)), 2 * 3600);
        assert_eq!(
            local(&c, c.add(sun, 0).unwrap()),
            "2026-10-25 02:00:00 CEST"
        );
        assert_eq!(
            local(&c, c.add(sun, 2 * 3600).unwrap()),
            "2026-10-25 03:00:00 CET"
        );
        // Adjacent intervals split at a repeated wall time neither overlap
        // nor leave a hole.
        let split = cal(
            "Europe/Berlin",
            weekly(&[Sun], &[(0, 2 * H + 1800), (2 * H + 1800, 6 * H)]),
            vec![],
        );
        assert_eq!(split.measure(sun, sun + Duration::days(1)), 7 * 3600);
        let office_days = [Mon, Tue, Wed, Thu, Fri, Sat, Sun];
        let o = cal(
            "Europe/Berlin",
            weekly(&office_days, &[(9 * H, 17 * H)]),
            vec![],
        );
        let sat1630 = at(&o, "2026-10-24 16:30");
        assert_eq!(
            local(&o, o.add(sat1630, 3600).unwrap()),
            "2026-10-25 09:30:00 CET"
        );
    }

    #[test]
    fn america_dst_days_keep_wall_clock_hours() {
        // New York: 2026-03-08 02:00 EST → 03:00 EDT; 2026-11-01 02:00 EDT → 01:00 EST.
        let all = cal("America/New_York", weekly(&[Sun], &[(0, 24 * H)]), vec![]);
        let spring = at(&all, "2026-03-08 00:00");
        assert_eq!(all.measure(spring, spring + Duration::days(2)), 23 * 3600);
        let fall = at(&all, "2026-11-01 00:00");
        assert_eq!(all.measure(fall, fall + Duration::days(2)), 25 * 3600);
        let c = cal(
            "America/New_York",
            weekly(&[Sat, Sun, Mon], &[(9 * H, 17 * H)]),
            vec![],
        );
        let sat = at(&c, "2026-10-31 16:00");
        assert_eq!(
            local(&c, c.add(sat, 2 * 3600).unwrap()),
            "2026-11-01 10:00:00 EST"
        );
        assert_eq!(
            local(&c, c.add(sat, 10 * 3600).unwrap()),
            "2026-11-02 10:00:00 EST"
        );
        let sat = at(&c, "2026-03-07 16:00");
        assert_eq!(
            local(&c, c.add(sat, 2 * 3600).unwrap()),
            "2026-03-08 10:00:00 EDT"
        );
    }

    #[test]
    fn holidays_close_whole_or_part_days() {
        let c = cal(
            "Europe/Berlin",
            weekly(&[Mon, Tue, Wed, Thu, Fri], &[(9 * H, 17 * H)]),
            vec![
                holiday("2026-12-24", &[(9 * H, 12 * H)]),
                holiday("2026-12-25", &[]),
            ],
        );
        // Wednesday 23 Dec 16:00 + 2 h: 1 h on Wednesday, 1 h on the short Thursday.
        let wed = at(&c, "2026-12-23 16:00");
        assert_eq!(
            local(&c, c.add(wed, 2 * 3600).unwrap()),
            "2026-12-24 10:00:00 CET"
        );
        // + 5 h: Thursday closes at 12, Friday is closed, Monday 28 at 10.
        assert_eq!(
            local(&c, c.add(wed, 5 * 3600).unwrap()),
            "2026-12-28 10:00:00 CET"
        );
        assert!(!c.is_open(at(&c, "2026-12-24 13:00")));
        assert!(!c.is_open(at(&c, "2026-12-25 10:00")));
        assert_eq!(c.measure(wed, at(&c, "2026-12-29 00:00")), 12 * 3600);
        // A holiday on a weekend day can open it.
        let sat = cal(
            "Europe/Berlin",
            weekly(&[Mon], &[(9 * H, 17 * H)]),
            vec![holiday("2026-12-26", &[(10 * H, 11 * H)])],
        );
        let fri = at(&sat, "2026-12-25 10:00");
        assert_eq!(
            local(&sat, sat.next_opening(fri).unwrap()),
            "2026-12-26 10:00:00 CET"
        );
    }

    #[test]
    fn always_open_counts_every_second_across_dst() {
        let c = BusinessCalendar::new(&CalendarSpec {
            time_zone: "Europe/Berlin".into(),
            always_open: true,
            ..Default::default()
        })
        .unwrap();
        let t = at(&c, "2026-03-28 12:00");
        assert_eq!(c.add(t, 86_400).unwrap(), t + Duration::days(1));
        assert_eq!(c.measure(t, t + Duration::days(400)), 400 * 86_400);
        assert!(c.is_open(t));
        assert_eq!(c.add(t, u64::MAX), Err(OutOfRange));
    }

    #[test]
    fn adjacent_intervals_across_midnight_are_one_stretch() {
        let c = cal(
            "Europe/London",
            vec![
                WeeklyHours {
                    day: Mon,
                    start_seconds: 22 * H,
                    end_seconds: 24 * H,
                },
                WeeklyHours {
                    day: Tue,
                    start_seconds: 0,
                    end_seconds: 2 * H,
                },
            ],
            vec![],
        );
        let mon22 = at(&c, "2026-06-01 22:00");
        assert_eq!(
            local(&c, c.add(mon22, 3 * 3600).unwrap()),
            "2026-06-02 01:00:00 BST"
        );
        assert_eq!(
            local(&c, c.add(mon22, 4 * 3600).unwrap()),
            "2026-06-02 02:00:00 BST"
        );
        assert_eq!(
            local(&c, c.add(mon22, 4 * 3600 + 1).unwrap()),
            "2026-06-08 22:00:01 BST"
        );
        assert!(c.is_open(at(&c, "2026-06-02 00:00")));
    }

    #[test]
    fn wall_times_parse_and_format() {
        assert_eq!(parse_wall_time("09:30"), Ok(9 * H + 1800));
        assert_eq!(parse_wall_time("24:00"), Ok(DAY_SECONDS));
        assert_eq!(parse_wall_time("23:59:59"), Ok(DAY_SECONDS - 1));
        for bad in [
            "24:01",
            "9:30",
            "09:60",
            "",
            "09",
            "ab:cd",
            "09:30:00:00",
            "-1:00",
        ] {
            assert!(parse_wall_time(bad).is_err(), "{bad}");
        }
        assert_eq!(format_wall_time(9 * H + 1800), "09:30");
        assert_eq!(format_wall_time(DAY_SECONDS), "24:00");
        assert_eq!(format_wall_time(61), "00:01:01");
    }

    #[test]
    fn bad_calendars_name_every_bad_field() {
        let err = BusinessCalendar::new(&CalendarSpec {
            time_zone: "Mars/Olympus".into(),
            always_open: false,
            weekly_hours: vec![
                WeeklyHours {
                    day: Mon,
                    start_seconds: 9 * H,
                    end_seconds: 17 * H,
                },
                WeeklyHours {
                    day: Mon,
                    start_seconds: 16 * H,
                    end_seconds: 18 * H,
                },
                WeeklyHours {
                    day: Tue,
                    start_seconds: 22 * H,
                    end_seconds: 2 * H,
                },
                WeeklyHours {
                    day: Wed,
                    start_seconds: 9 * H,
                    end_seconds: 25 * H,
                },
                // Touching is fine.
                WeeklyHours {
                    day: Thu,
                    start_seconds: 9 * H,
                    end_seconds: 12 * H,
                },
                WeeklyHours {
                    day: Thu,
                    start_seconds: 12 * H,
                    end_seconds: 13 * H,
                },
            ],
            holidays: vec![
                holiday("2026-12-25", &[]),
                holiday("2026-12-25", &[(10 * H, 9 * H)]),
            ],
        })
        .unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "time_zone",
                "weekly_hours[1]",
                "weekly_hours[2]",
                "weekly_hours[3]",
                "holidays[1].date",
                "holidays[1].open_hours[0]"
            ],
            "{err:?}"
        );
        assert!(err.0[2].1.contains("crosses midnight"));
        assert!(err.0[1].1.contains("overlaps weekly_hours[0] on Mon"));

        let none = BusinessCalendar::new(&CalendarSpec {
            time_zone: "UTC".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(none.0[0].0, "weekly_hours");
        let both = BusinessCalendar::new(&CalendarSpec {
            time_zone: "".into(),
            always_open: true,
            weekly_hours: weekly(&[Mon], &[(0, H)]),
            holidays: vec![holiday("2026-01-01", &[])],
        })
        .unwrap_err();
        let fields: Vec<&str> = both.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["time_zone", "weekly_hours", "holidays"]);
    }

    /// A small deterministic generator, so the property checks need no
    /// extra crate and fail the same way every run.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound
        }
    }

    fn property_calendars() -> Vec<BusinessCalendar> {
        let weekdays = [Mon, Tue, Wed, Thu, Fri];
        let holidays = || {
            vec![
                holiday("2026-03-30", &[]),
                holiday("2026-11-02", &[(10 * H, 12 * H)]),
                holiday("2026-12-24", &[(9 * H, 12 * H)]),
                holiday("2026-12-25", &[]),
                holiday("2027-01-01", &[]),
            ]
        };
        vec![
            cal(
                "Europe/Berlin",
                weekly(&weekdays, &[(9 * H, 12 * H), (13 * H, 17 * H)]),
                holidays(),
            ),
            cal(
                "America/New_York",
                weekly(&[Sun, Mon, Sat], &[(0, 3 * H), (H * 3, 24 * H)]),
                holidays(),
            ),
            cal(
                "Australia/Sydney",
                weekly(&weekdays, &[(8 * H, 18 * H)]),
                holidays(),
            ),
            cal(
                "Asia/Kolkata",
                weekly(&[Mon, Wed], &[(9 * H + 1800, 10 * H)]),
                vec![],
            ),
            cal(
                "America/Sao_Paulo",
                weekly(&[Sun, Sat], &[(0, 24 * H)]),
                holidays(),
            ),
            cal(
                "Europe/London",
                weekly(&[Sun], &[(H, 2 * H + 1800)]),
                holidays(),
            ),
        ]
    }

    #[test]
    fn add_then_measure_gives_the_target_back_monotonic_and_in_working_time() {
        let mut rng = Lcg(14);
        let base = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        for c in property_calendars() {
            for _ in 0..300 {
                let start = base + Duration::seconds(rng.next(400 * 86_400) as i64);
                let d = match rng.next(3) {
                    0 => rng.next(4 * 3600),
                    1 => rng.next(200 * 3600),
                    _ => rng.next(3000 * 3600),
                };
                let end = c.add(start, d).unwrap();
                assert_eq!(
                    c.measure(start, end),
                    d,
                    "{start} + {d} = {end} in {}",
                    c.zone()
                );
                assert!(end >= start);
                if d == 0 {
                    assert!(c.is_open(end));
                } else {
                    assert_eq!(
                        c.measure(end - Duration::seconds(1), end),
                        1,
                        "working time"
                    );
                }
                let more = d + 1 + rng.next(10 * 3600);
                assert!(c.add(start, more).unwrap() > end, "monotonic in d");
            }
        }
    }

    #[test]
    fn skipping_weeks_agrees_with_walking_days_over_years() {
        let mut rng = Lcg(7);
        let base = DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
            .unwrap()
            .to_utc();
        for c in property_calendars() {
            for _ in 0..40 {
                let start = base + Duration::seconds(rng.next(800 * 86_400) as i64);
                let d = rng.next(3 * 365 * 24 * 3600);
                let fast = c.add(start, d).unwrap();
                assert_eq!(
                    fast,
                    c.add_inner(start, d, false).unwrap(),
                    "{} {start} {d}",
                    c.zone()
                );
                let to = start + Duration::seconds(rng.next(3 * 365 * 86_400) as i64);
                assert_eq!(c.measure(start, to), c.measure_inner(start, to, false));
            }
        }
    }

    #[test]
    fn targets_of_months_and_years_are_exact_and_bounded() {
        let c = office("Europe/Berlin");
        let mon = at(&c, "2026-01-05 09:00");
        // 100 weeks of 40 hours from a Monday opening end on a Friday closing.
        let end = c.add(mon, 100 * 40 * 3600).unwrap();
        assert_eq!(local(&c, end), "2027-12-03 17:00:00 CET");
        // No cap on the target, but results stay within year 9999.
        assert!(c.add(mon, 2_000 * 52 * 40 * 3600).is_ok());
        assert_eq!(c.add(mon, u64::MAX), Err(OutOfRange));
    }
}
