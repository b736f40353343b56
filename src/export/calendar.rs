//! What every engine's translation needs from a schedule: its days in one
//! normal form, its value sets cut into runs a scheduler's syntax can
//! write, and where the zone's DST changes meet its fire times.
//!
//! Nothing here reads the clock or the environment: the zone and "now"
//! come in as values.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};

use crate::schedule::{Fields, Schedule};
use crate::tz::{Placed, Zone};

/// How far ahead the DST changes are looked at: the Gregorian calendar
/// repeats every 400 years, and so do rules like "the last Sunday of
/// March", so a schedule that meets a change at all meets one in that span.
const HORIZON_YEARS: i32 = 400;

/// More changes than a real zone has in [`HORIZON_YEARS`] (two a year):
/// a bound on the work, not a limit anyone meets.
const MAX_CHANGES: usize = 2_000;

/// Which days a schedule fires on, with crontab(5)'s day rule applied and
/// fields that hold every value recognised as unrestricted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Days<'a> {
    /// Every day.
    Every,
    /// The days of month listed, whatever their day of week.
    Month(&'a [u32]),
    /// The days of week listed (0–6 from Sunday), whatever their date.
    Week(&'a [u32]),
    /// A day in both lists (`0 0 */2 * 5`: odd dates that are Fridays):
    /// crontab(5) ands the fields when one of them starts with `*`.
    Both {
        /// Days of month.
        dom: &'a [u32],
        /// Days of week.
        dow: &'a [u32],
    },
    /// A day in either list (`0 0 13 * 5`: every 13th and every Friday):
    /// crontab(5) ors the fields when both are restricted.
    Either {
        /// Days of month.
        dom: &'a [u32],
        /// Days of week.
        dow: &'a [u32],
    },
}

impl<'a> Days<'a> {
    /// The days of `fields`.
    pub fn of(fields: &Fields<'a>) -> Days<'a> {
        let dom = fields.days_of_month;
        let dow = fields.days_of_week;
        let dom_all = dom.len() == 31;
        let dow_all = dow.len() == 7;
        if fields.either_day {
            // `1-31 * 5` is every day, whatever the Friday says.
            return if dom_all || dow_all {
                Days::Every
            } else {
                Days::Either { dom, dow }
            };
        }
        match (dom_all, dow_all) {
            (true, true) => Days::Every,
            (false, true) => Days::Month(dom),
            (true, false) => Days::Week(dow),
            (false, false) => Days::Both { dom, dow },
        }
    }
}

/// Values `first`, `first + step`, … up to `last`: one piece of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The first value.
    pub first: u32,
    /// The last value.
    pub last: u32,
    /// The distance between values (1 for a plain range or one value).
    pub step: u32,
}

/// `values` (sorted, no duplicates) cut into runs: three or more values an
/// equal step apart make one run, anything else stands alone. The runs
/// hold exactly the values, so any syntax that writes them back is exact.
pub fn runs(values: &[u32]) -> Vec<Run> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let first = values[i];
        if i + 2 < values.len() {
            let step = values[i + 1] - first;
            let mut j = i + 1;
            while j + 1 < values.len() && values[j + 1] - values[j] == step {
                j += 1;
            }
            if j - i >= 2 {
                out.push(Run {
                    first,
                    last: values[j],
                    step,
                });
                i = j + 1;
                continue;
            }
        }
        out.push(Run {
            first,
            last: first,
            step: 1,
        });
        i += 1;
    }
    out
}

/// Whether `values` is every value from `min` to `max`.
pub fn is_all(values: &[u32], min: u32, max: u32) -> bool {
    values.len() == (max - min + 1) as usize
}

/// `values` in crontab syntax: `*`, `*/n` (when `star_steps` and the run
/// starts at the field's first value and reaches its end), or a list of
/// `a`, `a-b`, `a-b/n`.
pub fn cron_list(values: &[u32], min: u32, max: u32, star_steps: bool) -> String {
    if is_all(values, min, max) {
        return "*".to_string();
    }
    if star_steps
        && let [first, second, ..] = values
        && *first == min
        && values
            .iter()
            .copied()
            .eq((min..=max).step_by((second - first) as usize))
    {
        return format!("*/{}", second - first);
    }
    runs(values)
        .iter()
        .map(|r| match (r.first == r.last, r.step) {
            (true, _) => r.first.to_string(),
            (false, 1) => format!("{}-{}", r.first, r.last),
            (false, step) => format!("{}-{}/{step}", r.first, r.last),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What a DST change does to the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Clocks jump forward: the wall-clock times in the window never occur.
    Gap,
    /// Clocks go back: the wall-clock times in the window occur twice.
    Fold,
}

/// One DST change (any change of offset) as the wall clock sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Forward or back.
    pub change: Change,
    /// The instant of the change.
    pub at: DateTime<Utc>,
    /// The first wall-clock time that is skipped (gap) or repeated (fold).
    pub from: NaiveDateTime,
    /// The first wall-clock time after them.
    pub to: NaiveDateTime,
}

impl Window {
    /// Whether the change starts and ends on a whole hour (`02:00`–`03:00`);
    /// Lord Howe Island's half-hour change does not.
    pub fn on_whole_hours(&self) -> bool {
        let whole = |t: &NaiveDateTime| t.minute() == 0 && t.second() == 0;
        whole(&self.from) && whole(&self.to)
    }

    /// Whether midnight is in the window or at one of its ends (a zone that
    /// changes its clocks at 00:00, such as America/Santiago or Asia/Beirut).
    pub fn at_midnight(&self) -> bool {
        self.from.time() == NaiveTime::MIN
            || self.to.time() == NaiveTime::MIN
            || self.from.date() != self.to.date()
    }

    /// How the change reads, for a refusal: `on 2026-03-29 the clocks jump
    /// from 02:00 to 03:00`.
    pub fn describe(&self) -> String {
        let (a, b) = match self.change {
            Change::Gap => (self.from, self.to),
            Change::Fold => (self.to, self.from),
        };
        let verb = match self.change {
            Change::Gap => "jump forward",
            Change::Fold => "go back",
        };
        format!(
            "on {} the clocks {verb} from {} to {}",
            a.format("%Y-%m-%d"),
            clock(&a),
            clock(&b)
        )
    }
}

/// `02:00`, or `02:00:30` when the seconds matter.
pub fn clock(t: &NaiveDateTime) -> String {
    if t.second() == 0 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}

/// A fire time (as the wall clock reads it) inside a DST window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The change.
    pub window: Window,
    /// The first wall-clock time of the schedule inside it.
    pub wall: NaiveDateTime,
}

/// Where a schedule meets the zone's DST changes from now on: the first
/// meeting of each kind, or `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meetings {
    /// A fire time in a gap, where the end of the gap (when cron(8) runs
    /// it) is not a fire time of its own.
    pub gap: Option<Hit>,
    /// A fire time in a fold.
    pub fold: Option<Hit>,
    /// A fire time in a change that is not on whole hours.
    pub part_hour: Option<Hit>,
    /// A change at midnight on a day the schedule fires.
    pub midnight: Option<(Window, NaiveDate)>,
}

/// Where `schedule` meets `zone`'s DST changes in the [`HORIZON_YEARS`]
/// after `now`.
pub fn meetings(schedule: &Schedule, zone: &Zone, now: &DateTime<Utc>) -> Meetings {
    let mut found = Meetings::default();
    let last_year = zone.local(now).year().saturating_add(HORIZON_YEARS);
    let mut t = *now;
    for _ in 0..MAX_CHANGES {
        let Some(at) = zone.next_transition(&t) else {
            break;
        };
        t = at;
        let Some(window) = window(zone, &at) else {
            continue;
        };
        if window.from.year() > last_year {
            break;
        }
        if let Some(wall) = schedule.first_match_between(window.from, window.to) {
            let hit = Hit { window, wall };
            match window.change {
                // cron(8) runs what a gap swallowed when it ends; where the
                // schedule fires then anyway (`0 0-23 * * *` at 03:00),
                // that is one fire time, which every engine has too.
                Change::Gap => {
                    if !fires_at(schedule, window.to) {
                        found.gap.get_or_insert(hit);
                    }
                }
                Change::Fold => {
                    found.fold.get_or_insert(hit);
                }
            }
            if !window.on_whole_hours() {
                found.part_hour.get_or_insert(hit);
            }
        }
        if found.midnight.is_none() && window.at_midnight() {
            let mut day = window.from.date();
            while day <= window.to.date() {
                if fires_on(schedule, day) {
                    found.midnight = Some((window, day));
                    break;
                }
                let Some(next) = day.succ_opt() else { break };
                day = next;
            }
        }
        if found.gap.is_some()
            && found.fold.is_some()
            && found.part_hour.is_some()
            && found.midnight.is_some()
        {
            break;
        }
    }
    found
}

/// The wall-clock window of the change at `at`, or `None` when the offset
/// stays the same (a change of name or rules only).
fn window(zone: &Zone, at: &DateTime<Utc>) -> Option<Window> {
    let before = zone.offset_seconds(&at.checked_sub_signed(TimeDelta::seconds(1))?);
    let after = zone.offset_seconds(at);
    let wall = |offset: i64| {
        at.naive_utc()
            .checked_add_signed(TimeDelta::seconds(offset))
    };
    let (wall_before, wall_after) = (wall(before)?, wall(after)?);
    Some(match after.cmp(&before) {
        std::cmp::Ordering::Equal => return None,
        std::cmp::Ordering::Greater => Window {
            change: Change::Gap,
            at: *at,
            from: wall_before,
            to: wall_after,
        },
        std::cmp::Ordering::Less => Window {
            change: Change::Fold,
            at: *at,
            from: wall_after,
            to: wall_before,
        },
    })
}

/// Whether the schedule matches the wall-clock time `t`.
fn fires_at(schedule: &Schedule, t: NaiveDateTime) -> bool {
    t.checked_add_signed(TimeDelta::seconds(1))
        .is_some_and(|end| schedule.first_match_between(t, end).is_some())
}

/// Whether the schedule fires at any wall-clock time of `day`.
fn fires_on(schedule: &Schedule, day: NaiveDate) -> bool {
    let start = day.and_time(NaiveTime::MIN);
    match day.succ_opt() {
        Some(next) => schedule
            .first_match_between(start, next.and_time(NaiveTime::MIN))
            .is_some(),
        None => false,
    }
}

/// The smallest distance between two consecutive fire times among the
/// first `count` after `now`, if it fires twice.
pub fn shortest_interval(
    schedule: &Schedule,
    zone: &Zone,
    now: &DateTime<Utc>,
    count: usize,
) -> Option<TimeDelta> {
    let mut previous = schedule.next_after(now, zone)?;
    let mut shortest: Option<TimeDelta> = None;
    for _ in 1..count {
        let Some(next) = schedule.next_after(&previous, zone) else {
            break;
        };
        let gap = next - previous;
        shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
        previous = next;
    }
    shortest
}

/// The first year whose last fire time is followed by none in the next
/// `years` calendar years (robfig/cron gives up searching after five), if
/// one comes within [`HORIZON_YEARS`].
pub fn silent_stretch(
    schedule: &Schedule,
    zone: &Zone,
    now: &DateTime<Utc>,
    years: i32,
) -> Option<i32> {
    let first = zone.local(now).year();
    let mut fire = schedule.next_after(now, zone)?;
    loop {
        let year = zone.local(&fire).year();
        if year > first.saturating_add(HORIZON_YEARS) {
            return None;
        }
        // The first fire time of a later year follows the last one of this
        // year: one search a year, however often the schedule fires.
        let new_year =
            NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?.and_time(NaiveTime::MIN);
        let new_year = match zone.place(&new_year)? {
            Placed::Unique(t) | Placed::Gap { end: t } | Placed::Fold { earlier: t, .. } => t,
        };
        let from = new_year
            .checked_sub_signed(TimeDelta::seconds(1))?
            .max(fire);
        let next = schedule.next_after(&from, zone)?;
        if zone.local(&next).year() - year > years {
            return Some(year);
        }
        fire = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn runs_hold_exactly_the_values() {
        let cases: &[&[u32]] = &[
            &[],
            &[5],
            &[5, 6],
            &[1, 2, 3],
            &[0, 15, 30, 45],
            &[9, 11, 13, 15, 17],
            &[1, 2, 3, 10, 20, 30, 31],
            &[0, 1, 5, 6, 7, 8, 22, 23],
        ];
        for values in cases {
            let back: Vec<u32> = runs(values)
                .iter()
                .flat_map(|r| (r.first..=r.last).step_by(r.step as usize))
                .collect();
            assert_eq!(&back, values);
        }
        assert_eq!(cron_list(&[0, 15, 30, 45], 0, 59, true), "*/15");
        assert_eq!(cron_list(&[0, 15, 30, 45], 0, 59, false), "0-45/15");
        assert_eq!(cron_list(&[9, 11, 13, 15, 17], 0, 23, true), "9-17/2");
        assert_eq!(
            cron_list(&[1, 2, 3, 10, 20, 30, 31], 1, 31, false),
            "1-3,10-30/10,31"
        );
        assert_eq!(cron_list(&(0..24).collect::<Vec<_>>(), 0, 23, true), "*");
    }

    #[test]
    fn days_follow_crontab() {
        let days = |expr: &str| {
            let s = Schedule::parse(expr).unwrap();
            format!("{:?}", Days::of(&s.fields()))
        };
        assert_eq!(days("0 0 * * *"), "Every");
        assert_eq!(days("0 0 13 * *"), "Month([13])");
        assert_eq!(days("0 0 * * 5"), "Week([5])");
        assert_eq!(days("0 0 13 * 5"), "Either { dom: [13], dow: [5] }");
        assert_eq!(days("0 0 */2 * 5").split(' ').next(), Some("Both"));
        assert_eq!(days("0 0 1-31 * 5"), "Every");
        assert_eq!(days("0 0 13 * 0-7"), "Every");
        assert_eq!(days("0 0 * * 0-6"), "Every");
    }

    #[test]
    fn dst_meetings_in_berlin() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let now = utc("2026-01-01T00:00:00Z");
        let meet = |expr: &str| meetings(&Schedule::parse(expr).unwrap(), &berlin, &now);
        let daily = meet("30 2 * * *");
        let gap = daily.gap.unwrap();
        assert_eq!(gap.wall.to_string(), "2026-03-29 02:30:00");
        assert_eq!(
            gap.window.describe(),
            "on 2026-03-29 the clocks jump forward from 02:00 to 03:00"
        );
        assert_eq!(daily.fold.unwrap().wall.to_string(), "2026-10-25 02:30:00");
        assert_eq!(
            daily.fold.unwrap().window.describe(),
            "on 2026-10-25 the clocks go back from 03:00 to 02:00"
        );
        assert!(daily.part_hour.is_none() && daily.midnight.is_none());
        let monday = meet("30 2 * * 1");
        assert!(monday.gap.is_none() && monday.fold.is_none());
        // The 29th of March is the last Sunday of March in some years.
        let date = meet("30 2 29 3 *");
        assert_eq!(date.gap.unwrap().wall.to_string(), "2026-03-29 02:30:00");
        assert!(meet("0 12 * * *").gap.is_none());
        let utc_zone = meetings(&Schedule::parse("30 2 * * *").unwrap(), &Zone::utc(), &now);
        assert_eq!(utc_zone, Meetings::default());
    }

    #[test]
    fn odd_changes() {
        let now = utc("2026-01-01T00:00:00Z");
        let lord_howe = Zone::named("Australia/Lord_Howe").unwrap();
        let m = meetings(&Schedule::parse("*/15 * * * *").unwrap(), &lord_howe, &now);
        assert!(m.part_hour.is_some());
        let santiago = Zone::named("America/Santiago").unwrap();
        let m = meetings(&Schedule::parse("0 12 * * *").unwrap(), &santiago, &now);
        assert!(m.midnight.is_some() && m.gap.is_none());
    }

    #[test]
    fn intervals() {
        let now = utc("2026-01-01T00:00:00Z");
        let z = Zone::utc();
        let s = |e: &str| Schedule::parse(e).unwrap();
        assert_eq!(
            shortest_interval(&s("*/15 9-18 * * 1-5"), &z, &now, 100),
            Some(TimeDelta::minutes(15))
        );
        assert_eq!(
            shortest_interval(&s("0 0 13 * 5"), &z, &now, 100),
            Some(TimeDelta::days(1))
        );
        assert_eq!(silent_stretch(&s("0 0 * * *"), &z, &now, 5), None);
        // 2096 is a leap year, 2100 is not: eight years without a 29 February.
        assert_eq!(silent_stretch(&s("0 0 29 2 *"), &z, &now, 5), Some(2096));
    }
}
