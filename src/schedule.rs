//! Cron schedules: a cron expression in, fire times out.
//!
//! [`Schedule::parse`] takes a schedule as a job file writes it: five fields
//! as crontab(5) reads them, six or seven with seconds first and a year last,
//! or an `@` shortcut. It checks every field and names the field and the
//! reason when one is wrong, which is what `strata validate` prints.
//! [`Schedule::next_after`] and [`Schedule::last_fire_between`] turn a schedule
//! into instants in whatever [`chrono::TimeZone`] the caller passes (the
//! daemon passes `Local`, the tests pass chrono-tz zones). Nothing here reads
//! the clock or the filesystem.
//!
//! Fields are parsed and searched here rather than handed to the `cron`
//! crate, because its conventions differ from crontab's where users notice:
//!
//! - it numbers days of week 1–7 from Sunday and rejects `0`; crontab reads
//!   `1` as Monday and both `0` and `7` as Sunday;
//! - it fires only on days that match both day of month and day of week;
//!   crontab fires when *either* matches once both are restricted
//!   (`0 0 13 * 5` is every 13th and every Friday);
//! - it skips a local time that falls into a DST gap (a daily 02:30 job would
//!   not run that day at all), and searching forward in local time it cannot
//!   see the second pass of a repeated hour.
//!
//! The search works in local wall-clock time and jumps field by field (year,
//! month, day, hour, minute, second), so a yearly schedule costs a handful of
//! steps. Each matching wall-clock time is then placed on the zone's timeline:
//!
//! - a time inside a spring-forward gap fires once, at the first instant after
//!   the gap;
//! - a time that occurs twice at fall-back fires once, at its first occurrence;
//! - except that a schedule that repeats within the hour (the second or minute
//!   field has more than one value, or the hour field covers all 24 hours)
//!   keeps its rhythm in real time instead: it fires in both passes of a
//!   repeated hour and skips the times a gap removes, so `*/5 * * * *` fires
//!   every five real minutes and `30 * * * *` every real hour through both
//!   changes. This is what Vixie cron does for its "wildcard" jobs.

use std::cmp::{max, min};
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeDelta, TimeZone, Timelike,
};

/// How far the search looks before deciding that a schedule never fires. The
/// Gregorian calendar repeats every 400 years, so a combination of month, day
/// of month and day of week that occurs at all occurs within that span.
const SEARCH_YEARS: i32 = 400;

/// The shortcuts crontab(5) knows, with the five fields each one stands for.
/// (`@reboot` is not a time and has no meaning for a backup schedule.)
const SHORTCUTS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const MONTH_NAMES: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field of a cron expression, named as error messages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// Seconds, 0–59 (6- and 7-field forms; 0 in the 5-field form).
    Second,
    /// Minutes, 0–59.
    Minute,
    /// Hours, 0–23.
    Hour,
    /// Day of month, 1–31.
    DayOfMonth,
    /// Month, 1–12 or `JAN`–`DEC`.
    Month,
    /// Day of week, 0–7 (0 and 7 are Sunday) or `SUN`–`SAT`.
    DayOfWeek,
    /// Year, 1970–2100 (7-field form; any year otherwise).
    Year,
}

impl Field {
    /// The name used in messages: `second`, `minute`, `hour`, `dom`, `month`,
    /// `dow` or `year`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "dom",
            Field::Month => "month",
            Field::DayOfWeek => "dow",
            Field::Year => "year",
        }
    }

    /// The smallest and largest number the field accepts.
    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
            Field::Year => (1970, 2100),
        }
    }

    /// The names the field accepts and the number of the first one.
    fn names(self) -> Option<(&'static [&'static str], u32)> {
        match self {
            Field::Month => Some((MONTH_NAMES, 1)),
            Field::DayOfWeek => Some((DAY_NAMES, 0)),
            _ => None,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a schedule was rejected. Every variant about a field carries the
/// [`Field`], and `Display` starts with its name: `dow: 8 is out of range 0-7`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// The expression does not have 5, 6 or 7 whitespace-separated fields.
    #[error("expected 5, 6 or 7 fields, found {found}")]
    FieldCount {
        /// How many fields the expression has.
        found: usize,
    },
    /// An expression starting with `@` that is not a known shortcut.
    #[error("{shortcut} is not a known shortcut")]
    UnknownShortcut {
        /// The expression as written.
        shortcut: String,
    },
    /// A number outside the field's range.
    #[error("{field}: {value} is out of range {min}-{max}")]
    OutOfRange {
        /// The field holding the number.
        field: Field,
        /// The number as written.
        value: String,
        /// The smallest number the field accepts.
        min: u32,
        /// The largest number the field accepts.
        max: u32,
    },
    /// A word in the month or day-of-week field that is not a month or day name.
    #[error("{field}: unknown name \"{name}\"")]
    UnknownName {
        /// The field holding the word.
        field: Field,
        /// The word as written.
        name: String,
    },
    /// A step of zero (`*/0`).
    #[error("{field}: step 0 is not allowed")]
    ZeroStep {
        /// The field holding the step.
        field: Field,
    },
    /// A step larger than the field's largest value (`*/60` for minutes).
    #[error("{field}: step {step} is out of range 1-{max}")]
    StepOutOfRange {
        /// The field holding the step.
        field: Field,
        /// The step as written.
        step: String,
        /// The largest step the field accepts.
        max: u32,
    },
    /// A range whose start is after its end (`17-9`).
    #[error("{field}: range {range} runs backwards")]
    BackwardRange {
        /// The field holding the range.
        field: Field,
        /// The range as written.
        range: String,
    },
    /// An empty element in a list (`1,,2` or a trailing comma).
    #[error("{field}: empty item in \"{list}\"")]
    EmptyItem {
        /// The field holding the list.
        field: Field,
        /// The whole field as written.
        list: String,
    },
    /// Anything else that is not a number, name, `*`, range, step or list.
    #[error("{field}: \"{item}\" is not a number, range or step")]
    Invalid {
        /// The field holding the item.
        field: Field,
        /// The list item as written.
        item: String,
    },
}

/// The values a field accepts, sorted, without duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Set(Vec<u32>);

impl Set {
    fn contains(&self, value: u32) -> bool {
        self.0.binary_search(&value).is_ok()
    }

    /// The smallest value at or above `value`.
    fn first_from(&self, value: u32) -> Option<u32> {
        let i = self.0.partition_point(|&v| v < value);
        self.0.get(i).copied()
    }

    /// The largest value at or below `value`.
    fn last_upto(&self, value: u32) -> Option<u32> {
        let i = self.0.partition_point(|&v| v <= value);
        i.checked_sub(1).map(|i| self.0[i])
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// How day of month and day of week combine (crontab(5)): if either field
/// starts with `*` a day must match both, so the other one alone restricts;
/// if both are restricted, a day matching either one fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DayRule {
    Both,
    Either,
}

/// A parsed cron schedule: the set of wall-clock times it fires at.
///
/// Build one with [`Schedule::parse`] or [`str::parse`]; ask it for fire
/// times with [`Schedule::next_after`] and [`Schedule::last_fire_between`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    seconds: Set,
    minutes: Set,
    hours: Set,
    days_of_month: Set,
    months: Set,
    /// 0–6 from Sunday; a `7` in the expression is stored as `0`.
    days_of_week: Set,
    /// `None` when the expression has no year field or it is `*`.
    years: Option<Set>,
    days: DayRule,
}

impl Schedule {
    /// Parses a schedule: `min hour dom mon dow` (crontab(5)),
    /// `sec min hour dom mon dow [year]`, or one of `@hourly`, `@daily`,
    /// `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`.
    ///
    /// Fields take `*`, numbers, `a-b`, lists `a,b`, steps `*/n`, `a-b/n` and
    /// `a/n` (from `a` to the field's end), and month and day names
    /// (`JAN`–`DEC`, `SUN`–`SAT`, any case). In the 6- and 7-field forms,
    /// day of month and day of week also accept `?`, meaning `*` (the `cron`
    /// crate's convention); crontab's 5-field form does not.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let source = expr.trim();
        let text = if source.starts_with('@') {
            SHORTCUTS
                .iter()
                .find(|(name, _)| *name == source)
                .map(|(_, fields)| *fields)
                .ok_or_else(|| ScheduleError::UnknownShortcut {
                    shortcut: source.to_string(),
                })?
        } else {
            source
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (second, rest, year) = match fields.len() {
            5 => ("0", &fields[..], None),
            6 => (fields[0], &fields[1..], None),
            7 => (fields[0], &fields[1..6], Some(fields[6])),
            found => return Err(ScheduleError::FieldCount { found }),
        };
        // `?` is the 6/7-field (Quartz and `cron` crate) spelling of `*`.
        let question_mark = fields.len() > 5;
        let (seconds, _) = parse_field(Field::Second, second, false)?;
        let (minutes, _) = parse_field(Field::Minute, rest[0], false)?;
        let (hours, _) = parse_field(Field::Hour, rest[1], false)?;
        let (days_of_month, dom_star) = parse_field(Field::DayOfMonth, rest[2], question_mark)?;
        let (months, _) = parse_field(Field::Month, rest[3], false)?;
        let (days_of_week, dow_star) = parse_field(Field::DayOfWeek, rest[4], question_mark)?;
        let years = match year {
            Some(year) => match parse_field(Field::Year, year, false)? {
                (_, true) if year == "*" => None,
                (set, _) => Some(set),
            },
            None => None,
        };
        Ok(Schedule {
            source: source.to_string(),
            seconds,
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            years,
            days: if dom_star || dow_star {
                DayRule::Both
            } else {
                DayRule::Either
            },
        })
    }

    /// The expression this schedule was parsed from, without surrounding
    /// whitespace.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first fire time strictly after `after`, in the same zone.
    ///
    /// `None` if the schedule never fires again (`0 0 31 2 *`, or a year
    /// field entirely in the past). The search is bounded, so that answer
    /// comes as quickly as any other.
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = after.timezone();
        let local = after.naive_local().with_nanosecond(0)?;
        let last_year = local.year().saturating_add(SEARCH_YEARS);
        let repeats = self.repeats_within_hour();

        // In the first pass of a repeated hour, a repeating schedule also fires
        // in the second pass, at wall-clock times the forward search below has
        // already left behind.
        let second_pass = match tz.from_local_datetime(&local) {
            LocalResult::Ambiguous(first, second) if repeats && *after < second => {
                let shift = transition_within(&tz, &first, &second)?;
                self.next_local(shift.naive_local(), last_year)
                    .and_then(|n| match tz.from_local_datetime(&n) {
                        LocalResult::Ambiguous(_, second) => Some(second),
                        _ => None,
                    })
            }
            _ => None,
        };

        let mut from = local.checked_add_signed(TimeDelta::seconds(1))?;
        while let Some(n) = self.next_local(from, last_year) {
            let found = match tz.from_local_datetime(&n) {
                LocalResult::Single(t) => Some(t).filter(|t| t > after),
                LocalResult::Ambiguous(first, second) => {
                    if first > *after {
                        Some(first)
                    } else {
                        Some(second).filter(|t| repeats && t > after)
                    }
                }
                LocalResult::None => {
                    let end = gap_end(&tz, n)?;
                    if !repeats {
                        Some(end).filter(|t| t > after)
                    } else {
                        // Nothing in the gap fires: carry on from its end.
                        from = end.naive_local();
                        continue;
                    }
                }
            };
            if let Some(t) = found {
                return Some(match second_pass {
                    Some(s) => min(s, t),
                    None => t,
                });
            }
            from = n.checked_add_signed(TimeDelta::seconds(1))?;
        }
        second_pass
    }

    /// The latest fire time at or before `at` and strictly after `since`, or
    /// `None` if there is none.
    ///
    /// This answers the daemon's catch-up question, "did a scheduled time pass
    /// while it was down?", with `since` the last run. It searches backward
    /// from `at`, field by field, rather than stepping through every fire
    /// time since `since`: an every-second schedule and a year's gap cost no
    /// more than a daily one.
    pub fn last_fire_between<Tz: TimeZone>(
        &self,
        since: &DateTime<Tz>,
        at: &DateTime<Tz>,
    ) -> Option<DateTime<Tz>> {
        if at <= since {
            return None;
        }
        let tz = at.timezone();
        let local = at.naive_local().with_nanosecond(0)?;
        // A fire time after `since` reads a wall-clock time at most a DST
        // shift earlier than `since`'s, so a year before it is far enough.
        let first_year = (since.naive_local().year() - 1).max(local.year() - SEARCH_YEARS);
        let repeats = self.repeats_within_hour();

        // In the second pass of a repeated hour, wall-clock times later than
        // `at`'s have already fired in the first pass.
        let first_pass = match tz.from_local_datetime(&local) {
            LocalResult::Ambiguous(first, second) if *at >= second => {
                let shift = transition_within(&tz, &first, &second)?;
                let last_of_first_pass = (shift - TimeDelta::seconds(1)).naive_local();
                self.prev_local(last_of_first_pass, first_year)
                    .filter(|n| *n > local)
                    .and_then(|n| match tz.from_local_datetime(&n) {
                        LocalResult::Ambiguous(first, _) => Some(first),
                        _ => None,
                    })
            }
            _ => None,
        };

        let mut upto = local;
        let mut found = None;
        while let Some(n) = self.prev_local(upto, first_year) {
            found = match tz.from_local_datetime(&n) {
                LocalResult::Single(t) => Some(t).filter(|t| t <= at),
                LocalResult::Ambiguous(first, second) => {
                    if repeats && second <= *at {
                        Some(second)
                    } else {
                        Some(first).filter(|t| t <= at)
                    }
                }
                LocalResult::None => {
                    let end = gap_end(&tz, n)?;
                    if !repeats {
                        Some(end).filter(|t| t <= at)
                    } else {
                        // Nothing in the gap fires: carry on from before it.
                        upto = (end - TimeDelta::seconds(1)).naive_local();
                        continue;
                    }
                }
            };
            if found.is_some() {
                break;
            }
            upto = n.checked_sub_signed(TimeDelta::seconds(1))?;
        }
        let latest = match (found, first_pass) {
            (Some(a), Some(b)) => Some(max(a, b)),
            (a, b) => a.or(b),
        };
        latest.filter(|t| t > since)
    }

    /// Whether the schedule fires more than once an hour or every hour: such
    /// schedules keep their rhythm in real time across DST changes rather than
    /// firing once per wall-clock time.
    fn repeats_within_hour(&self) -> bool {
        self.seconds.len() > 1 || self.minutes.len() > 1 || self.hours.len() == 24
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days_of_month.contains(date.day());
        let dow = self
            .days_of_week
            .contains(date.weekday().num_days_from_sunday());
        match self.days {
            DayRule::Both => dom && dow,
            DayRule::Either => dom || dow,
        }
    }

    /// The earliest wall-clock time at or after `from` that matches every
    /// field, looking no further than the end of `last_year`.
    fn next_local(&self, from: NaiveDateTime, last_year: i32) -> Option<NaiveDateTime> {
        let mut c = Cursor::at(from);
        loop {
            let (year, month) = (c.date.year(), c.date.month());
            if year > last_year {
                return None;
            }
            if let Some(years) = &self.years {
                let wanted = years.first_from(u32::try_from(year).unwrap_or(0))?;
                if wanted != year as u32 {
                    c = Cursor::start_of(NaiveDate::from_ymd_opt(wanted as i32, 1, 1)?);
                    continue;
                }
            }
            match self.months.first_from(month) {
                Some(m) if m == month => {}
                Some(m) => {
                    c = Cursor::start_of(NaiveDate::from_ymd_opt(year, m, 1)?);
                    continue;
                }
                None => {
                    c = Cursor::start_of(NaiveDate::from_ymd_opt(year + 1, 1, 1)?);
                    continue;
                }
            }
            if !self.day_matches(c.date) {
                c = Cursor::start_of(self.next_day_to_try(c.date)?);
                continue;
            }
            let Some(hour) = self.hours.first_from(c.hour) else {
                c = Cursor::start_of(c.date.succ_opt()?);
                continue;
            };
            if hour != c.hour {
                (c.hour, c.minute, c.second) = (hour, 0, 0);
            }
            let Some(minute) = self.minutes.first_from(c.minute) else {
                c = c.next_hour()?;
                continue;
            };
            if minute != c.minute {
                (c.minute, c.second) = (minute, 0);
            }
            let Some(second) = self.seconds.first_from(c.second) else {
                c = c.next_minute()?;
                continue;
            };
            c.second = second;
            return c.naive();
        }
    }

    /// The latest wall-clock time at or before `from` that matches every
    /// field, looking no further back than the start of `first_year`.
    fn prev_local(&self, from: NaiveDateTime, first_year: i32) -> Option<NaiveDateTime> {
        let mut c = Cursor::at(from);
        loop {
            let (year, month) = (c.date.year(), c.date.month());
            if year < first_year {
                return None;
            }
            if let Some(years) = &self.years {
                let wanted = years.last_upto(u32::try_from(year).ok()?)?;
                if wanted != year as u32 {
                    c = Cursor::end_of(NaiveDate::from_ymd_opt(wanted as i32, 12, 31)?);
                    continue;
                }
            }
            match self.months.last_upto(month) {
                Some(m) if m == month => {}
                Some(m) => {
                    c = Cursor::end_of(last_of_month(NaiveDate::from_ymd_opt(year, m, 1)?)?);
                    continue;
                }
                None => {
                    c = Cursor::end_of(NaiveDate::from_ymd_opt(year - 1, 12, 31)?);
                    continue;
                }
            }
            if !self.day_matches(c.date) {
                c = Cursor::end_of(self.prev_day_to_try(c.date)?);
                continue;
            }
            let Some(hour) = self.hours.last_upto(c.hour) else {
                c = Cursor::end_of(c.date.pred_opt()?);
                continue;
            };
            if hour != c.hour {
                (c.hour, c.minute, c.second) = (hour, 59, 59);
            }
            let Some(minute) = self.minutes.last_upto(c.minute) else {
                c = c.prev_hour()?;
                continue;
            };
            if minute != c.minute {
                (c.minute, c.second) = (minute, 59);
            }
            let Some(second) = self.seconds.last_upto(c.second) else {
                c = c.prev_minute()?;
                continue;
            };
            c.second = second;
            return c.naive();
        }
    }

    /// The next day that could match after `date`, which does not. When a
    /// day must match both fields, days outside the day-of-month set are
    /// jumped over at once, so `0 0 31 2 *` costs a few steps a year.
    fn next_day_to_try(&self, date: NaiveDate) -> Option<NaiveDate> {
        if self.days == DayRule::Both && !self.days_of_month.contains(date.day()) {
            return match self.days_of_month.first_from(date.day() + 1) {
                Some(day) => date.with_day(day).or_else(|| first_of_next_month(date)),
                None => first_of_next_month(date),
            };
        }
        date.succ_opt()
    }

    /// The previous day that could match before `date`, which does not.
    fn prev_day_to_try(&self, date: NaiveDate) -> Option<NaiveDate> {
        if self.days == DayRule::Both && !self.days_of_month.contains(date.day()) {
            return match self.days_of_month.last_upto(date.day() - 1) {
                Some(day) => date.with_day(day),
                None => date.with_day(1)?.pred_opt(),
            };
        }
        date.pred_opt()
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(expr: &str) -> Result<Schedule, ScheduleError> {
        Schedule::parse(expr)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Parses one field into the set of values it accepts, and whether it starts
/// with `*` (or is `?`), which is what crontab(5) calls unrestricted.
fn parse_field(
    field: Field,
    text: &str,
    question_mark: bool,
) -> Result<(Set, bool), ScheduleError> {
    let (min, max) = field.bounds();
    if question_mark && text == "?" {
        return Ok((Set(full_range(field)), true));
    }
    let mut values = Vec::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err(ScheduleError::EmptyItem {
                field,
                list: text.to_string(),
            });
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(field, step, item)?)),
            None => (item, None),
        };
        let (start, end) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (parse_value(field, a, item)?, parse_value(field, b, item)?);
            if a > b {
                return Err(ScheduleError::BackwardRange {
                    field,
                    range: range.to_string(),
                });
            }
            (a, b)
        } else {
            let a = parse_value(field, range, item)?;
            // `a/n` runs from `a` to the end of the field.
            (a, if step.is_some() { max } else { a })
        };
        values.extend((start..=end).step_by(step.unwrap_or(1) as usize));
    }
    if field == Field::DayOfWeek {
        // 7 is Sunday too.
        for v in &mut values {
            *v %= 7;
        }
    }
    values.sort_unstable();
    values.dedup();
    Ok((Set(values), text.starts_with('*')))
}

/// Every value of the field (days of week as 0–6).
fn full_range(field: Field) -> Vec<u32> {
    let (min, max) = field.bounds();
    let max = if field == Field::DayOfWeek { 6 } else { max };
    (min..=max).collect()
}

/// A number or name in `item`, checked against the field's range.
fn parse_value(field: Field, text: &str, item: &str) -> Result<u32, ScheduleError> {
    let (min, max) = field.bounds();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(ScheduleError::OutOfRange {
                field,
                value: text.to_string(),
                min,
                max,
            }),
        };
    }
    if let Some((names, first)) = field.names()
        && !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_alphabetic())
    {
        return names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text))
            .map(|i| first + i as u32)
            .ok_or_else(|| ScheduleError::UnknownName {
                field,
                name: text.to_string(),
            });
    }
    Err(ScheduleError::Invalid {
        field,
        item: item.to_string(),
    })
}

/// The `n` of `/n` in `item`.
fn parse_step(field: Field, text: &str, item: &str) -> Result<u32, ScheduleError> {
    let (_, max) = field.bounds();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScheduleError::Invalid {
            field,
            item: item.to_string(),
        });
    }
    match text.parse::<u32>() {
        Ok(0) => Err(ScheduleError::ZeroStep { field }),
        Ok(step) if step <= max => Ok(step),
        _ => Err(ScheduleError::StepOutOfRange {
            field,
            step: text.to_string(),
            max,
        }),
    }
}

/// A wall-clock position that the search moves field by field.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    date: NaiveDate,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Cursor {
    fn at(t: NaiveDateTime) -> Cursor {
        Cursor {
            date: t.date(),
            hour: t.hour(),
            minute: t.minute(),
            second: t.second(),
        }
    }

    fn start_of(date: NaiveDate) -> Cursor {
        Cursor {
            date,
            hour: 0,
            minute: 0,
            second: 0,
        }
    }

    fn end_of(date: NaiveDate) -> Cursor {
        Cursor {
            date,
            hour: 23,
            minute: 59,
            second: 59,
        }
    }

    fn naive(self) -> Option<NaiveDateTime> {
        let time = NaiveTime::from_hms_opt(self.hour, self.minute, self.second)?;
        Some(self.date.and_time(time))
    }

    fn next_hour(self) -> Option<Cursor> {
        if self.hour == 23 {
            return Some(Cursor::start_of(self.date.succ_opt()?));
        }
        Some(Cursor {
            hour: self.hour + 1,
            minute: 0,
            second: 0,
            ..self
        })
    }

    fn next_minute(self) -> Option<Cursor> {
        if self.minute == 59 {
            return self.next_hour();
        }
        Some(Cursor {
            minute: self.minute + 1,
            second: 0,
            ..self
        })
    }

    fn prev_hour(self) -> Option<Cursor> {
        if self.hour == 0 {
            return Some(Cursor::end_of(self.date.pred_opt()?));
        }
        Some(Cursor {
            hour: self.hour - 1,
            minute: 59,
            second: 59,
            ..self
        })
    }

    fn prev_minute(self) -> Option<Cursor> {
        if self.minute == 0 {
            return self.prev_hour();
        }
        Some(Cursor {
            minute: self.minute - 1,
            second: 59,
            ..self
        })
    }
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    date.with_day(1)?.checked_add_months(Months::new(1))
}

fn last_of_month(date: NaiveDate) -> Option<NaiveDate> {
    first_of_next_month(date)?.pred_opt()
}

/// The instant `timestamp` (Unix seconds) in `tz`.
fn instant<Tz: TimeZone>(tz: &Tz, timestamp: i64) -> Option<DateTime<Tz>> {
    let utc = DateTime::from_timestamp(timestamp, 0)?;
    Some(tz.from_utc_datetime(&utc.naive_utc()))
}

/// The smallest timestamp in `(lo, hi]` for which `holds` is true, given that
/// it is false at `lo`, true at `hi`, and changes once in between. chrono's
/// `TimeZone` does not expose its transitions, so they are found by bisection:
/// about twenty offset lookups.
fn first_where(mut lo: i64, mut hi: i64, holds: impl Fn(i64) -> bool) -> i64 {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// The first instant after the spring-forward gap that swallows the
/// wall-clock time `missing`: the moment the clocks jump.
fn gap_end<Tz: TimeZone>(tz: &Tz, missing: NaiveDateTime) -> Option<DateTime<Tz>> {
    // UTC offsets stay within ±26 hours, so these instants read a wall-clock
    // time before and after `missing`.
    let window = TimeDelta::hours(26);
    let lo = missing.checked_sub_signed(window)?.and_utc().timestamp();
    let hi = missing.checked_add_signed(window)?.and_utc().timestamp();
    let end = first_where(lo, hi, |ts| {
        instant(tz, ts).is_none_or(|t| t.naive_local() > missing)
    });
    instant(tz, end)
}

/// The moment the clocks go back, given the two instants of one wall-clock
/// time in the repeated hour. The second pass of that hour starts here.
fn transition_within<Tz: TimeZone>(
    tz: &Tz,
    first: &DateTime<Tz>,
    second: &DateTime<Tz>,
) -> Option<DateTime<Tz>> {
    let before = first.offset().fix();
    let shift = first_where(first.timestamp(), second.timestamp(), |ts| {
        instant(tz, ts).is_none_or(|t| t.offset().fix() != before)
    });
    instant(tz, shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc, Weekday};
    use chrono_tz::America::New_York;
    use chrono_tz::Australia::Lord_Howe;
    use chrono_tz::Europe::Berlin;

    /// `text` ("2026-03-29 01:30[:00]") as a wall-clock time in `tz`; the
    /// first occurrence if it occurs twice.
    fn local<Tz: TimeZone>(tz: Tz, text: &str) -> DateTime<Tz> {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
            .unwrap_or_else(|e| panic!("bad test time {text:?}: {e}"));
        tz.from_local_datetime(&naive).earliest().unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        local(Utc, text)
    }

    fn schedule(expr: &str) -> Schedule {
        Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"))
    }

    fn show<Tz: TimeZone>(t: &DateTime<Tz>) -> String
    where
        Tz::Offset: fmt::Display,
    {
        t.format("%Y-%m-%d %H:%M:%S%:z").to_string()
    }

    /// The first `n` fire times after `after`, shown with their offsets.
    fn fires<Tz: TimeZone>(expr: &str, after: DateTime<Tz>, n: usize) -> Vec<String>
    where
        Tz::Offset: fmt::Display,
    {
        let s = schedule(expr);
        let mut out = Vec::new();
        let mut t = after;
        for _ in 0..n {
            t = s
                .next_after(&t)
                .unwrap_or_else(|| panic!("{expr}: ran out"));
            out.push(show(&t));
        }
        out
    }

    fn error(expr: &str) -> String {
        match Schedule::parse(expr) {
            Ok(_) => panic!("{expr:?} parsed"),
            Err(e) => e.to_string(),
        }
    }

    /// Checks `last_fire_between` against `next_after` for every fire in
    /// `(from, to]`: each fire is the latest one up to itself, and nothing
    /// fires between two consecutive fires.
    fn check_backward_agrees<Tz: TimeZone>(s: &Schedule, from: DateTime<Tz>, to: DateTime<Tz>) {
        let mut prev = from;
        while let Some(next) = s.next_after(&prev).filter(|t| *t <= to) {
            assert_eq!(s.last_fire_between(&prev, &next).as_ref(), Some(&next));
            let just_before = next.clone() - TimeDelta::seconds(1);
            assert_eq!(s.last_fire_between(&prev, &just_before), None);
            prev = next;
        }
    }

    // ---- five-field crontab(5) forms ----

    #[test]
    fn one_is_monday() {
        // 2026-03-01 is a Sunday.
        let got = fires("30 4 * * 1", utc("2026-03-01 12:00"), 3);
        assert_eq!(
            got,
            [
                "2026-03-02 04:30:00+00:00",
                "2026-03-09 04:30:00+00:00",
                "2026-03-16 04:30:00+00:00"
            ]
        );
        let next = schedule("30 4 * * 1")
            .next_after(&utc("2026-03-01 12:00"))
            .unwrap();
        assert_eq!(next.weekday(), Weekday::Mon);
    }

    #[test]
    fn zero_and_seven_are_sunday() {
        let from = utc("2026-03-02 00:00");
        let zero = fires("0 3 * * 0", from, 3);
        assert_eq!(zero, fires("0 3 * * 7", from, 3));
        assert_eq!(zero, fires("0 3 * * SUN", from, 3));
        assert_eq!(zero[0], "2026-03-08 03:00:00+00:00");
        let t = schedule("0 3 * * 7").next_after(&from).unwrap();
        assert_eq!(t.weekday(), Weekday::Sun);
        // 0-7 is every day, once.
        assert_eq!(schedule("0 3 * * 0-7").days_of_week, Set((0..7).collect()));
    }

    #[test]
    fn weekday_names_and_ranges() {
        // From Friday evening: skips the weekend.
        let got = fires("0 9 * * MON-FRI", utc("2026-03-06 18:00"), 6);
        assert_eq!(
            got,
            [
                "2026-03-09 09:00:00+00:00",
                "2026-03-10 09:00:00+00:00",
                "2026-03-11 09:00:00+00:00",
                "2026-03-12 09:00:00+00:00",
                "2026-03-13 09:00:00+00:00",
                "2026-03-16 09:00:00+00:00"
            ]
        );
        let from = utc("2026-03-06 18:00");
        assert_eq!(got, fires("0 9 * * mon-fri", from, 6));
        assert_eq!(got, fires("0 9 * * 1-5", from, 6));
        assert_eq!(
            fires("0 9 * * sat,Sun", from, 2)[1],
            "2026-03-08 09:00:00+00:00"
        );
    }

    #[test]
    fn steps_ranges_and_lists() {
        assert_eq!(
            fires("*/15 * * * *", utc("2026-03-01 10:05"), 4),
            [
                "2026-03-01 10:15:00+00:00",
                "2026-03-01 10:30:00+00:00",
                "2026-03-01 10:45:00+00:00",
                "2026-03-01 11:00:00+00:00"
            ]
        );
        assert_eq!(
            fires("0 9-17/2 * * *", utc("2026-03-01 00:00"), 6),
            [
                "2026-03-01 09:00:00+00:00",
                "2026-03-01 11:00:00+00:00",
                "2026-03-01 13:00:00+00:00",
                "2026-03-01 15:00:00+00:00",
                "2026-03-01 17:00:00+00:00",
                "2026-03-02 09:00:00+00:00"
            ]
        );
        assert_eq!(
            fires("0 0 1,15 * *", utc("2026-03-02 00:00"), 3),
            [
                "2026-03-15 00:00:00+00:00",
                "2026-04-01 00:00:00+00:00",
                "2026-04-15 00:00:00+00:00"
            ]
        );
        // `a/n` runs to the end of the field.
        assert_eq!(schedule("10/20 * * * *").minutes, Set(vec![10, 30, 50]));
        assert_eq!(
            schedule("1-10/3,58 * * * *").minutes,
            Set(vec![1, 4, 7, 10, 58])
        );
    }

    #[test]
    fn month_names() {
        assert_eq!(
            fires("0 0 1 JAN,jul *", utc("2026-03-01 00:00"), 3),
            [
                "2026-07-01 00:00:00+00:00",
                "2027-01-01 00:00:00+00:00",
                "2027-07-01 00:00:00+00:00"
            ]
        );
        assert_eq!(schedule("0 0 1 Jan-Mar *").months, Set(vec![1, 2, 3]));
        assert_eq!(schedule("0 0 1 feb-4 *").months, Set(vec![2, 3, 4]));
    }

    // ---- six- and seven-field forms ----

    #[test]
    fn seconds_first_year_last() {
        assert_eq!(
            fires("30 0 12 * * *", utc("2026-03-01 12:00"), 2),
            ["2026-03-01 12:00:30+00:00", "2026-03-02 12:00:30+00:00"]
        );
        assert_eq!(
            fires("*/20 * * * * *", utc("2026-03-01 12:00:05"), 3),
            [
                "2026-03-01 12:00:20+00:00",
                "2026-03-01 12:00:40+00:00",
                "2026-03-01 12:01:00+00:00"
            ]
        );
        // Day of week means the same in every form.
        assert_eq!(
            fires("0 30 4 * * 1", utc("2026-03-01 12:00"), 1),
            ["2026-03-02 04:30:00+00:00"]
        );
        assert_eq!(
            fires("0 0 3 * * 0 *", utc("2026-03-02 00:00"), 1),
            ["2026-03-08 03:00:00+00:00"]
        );
        assert_eq!(
            fires("0 0 0 1 1 * 2027-2028", utc("2026-03-01 00:00"), 2),
            ["2027-01-01 00:00:00+00:00", "2028-01-01 00:00:00+00:00"]
        );
        let s = schedule("0 0 0 1 1 * 2027-2028");
        assert_eq!(s.next_after(&utc("2028-01-01 00:00")), None);
        // `?` is `*` in the long forms.
        assert_eq!(
            fires("0 0 12 ? * MON", utc("2026-03-01 00:00"), 1),
            ["2026-03-02 12:00:00+00:00"]
        );
    }

    #[test]
    fn shortcuts() {
        let same = |shortcut: &str, fields: &str| {
            let s = schedule(shortcut);
            assert_eq!(s.source(), shortcut);
            let expanded = Schedule {
                source: shortcut.to_string(),
                ..schedule(fields)
            };
            assert_eq!(s, expanded, "{shortcut}");
        };
        same("@hourly", "0 * * * *");
        same("@daily", "0 0 * * *");
        same("@midnight", "0 0 * * *");
        same("@weekly", "0 0 * * 0");
        same("@monthly", "0 0 1 * *");
        same("@yearly", "0 0 1 1 *");
        same("@annually", "0 0 1 1 *");

        let from = utc("2026-03-04 10:20");
        assert_eq!(fires("@hourly", from, 1), ["2026-03-04 11:00:00+00:00"]);
        assert_eq!(fires("@daily", from, 1), ["2026-03-05 00:00:00+00:00"]);
        assert_eq!(fires("@midnight", from, 1), ["2026-03-05 00:00:00+00:00"]);
        assert_eq!(fires("@weekly", from, 1), ["2026-03-08 00:00:00+00:00"]);
        assert_eq!(fires("@monthly", from, 1), ["2026-04-01 00:00:00+00:00"]);
        assert_eq!(fires("@yearly", from, 1), ["2027-01-01 00:00:00+00:00"]);
        assert_eq!(fires("@annually", from, 1), ["2027-01-01 00:00:00+00:00"]);
    }

    // ---- day of month and day of week ----

    #[test]
    fn restricted_dom_and_dow_fire_on_either() {
        // Every 13th and every Friday.
        assert_eq!(
            fires("0 0 13 * 5", utc("2026-04-01 00:00"), 8),
            [
                "2026-04-03 00:00:00+00:00",
                "2026-04-10 00:00:00+00:00",
                "2026-04-13 00:00:00+00:00",
                "2026-04-17 00:00:00+00:00",
                "2026-04-24 00:00:00+00:00",
                "2026-05-01 00:00:00+00:00",
                "2026-05-08 00:00:00+00:00",
                "2026-05-13 00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn only_one_day_field_restricted() {
        // The 13th only, whatever the weekday.
        assert_eq!(
            fires("0 0 13 * *", utc("2026-04-01 00:00"), 2),
            ["2026-04-13 00:00:00+00:00", "2026-05-13 00:00:00+00:00"]
        );
        // Fridays only.
        assert_eq!(
            fires("0 0 * * 5", utc("2026-04-01 00:00"), 2),
            ["2026-04-03 00:00:00+00:00", "2026-04-10 00:00:00+00:00"]
        );
        // crontab(5) counts a field that starts with `*` as unrestricted, so
        // `*/2` with a weekday means odd days that are also Mondays.
        assert_eq!(
            fires("0 0 */2 * 1", utc("2026-04-01 00:00"), 3),
            [
                "2026-04-13 00:00:00+00:00",
                "2026-04-27 00:00:00+00:00",
                "2026-05-11 00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn impossible_dates_never_fire() {
        let from = utc("2026-03-01 00:00");
        for expr in ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"] {
            let s = schedule(expr);
            assert_eq!(s.next_after(&from), None, "{expr}");
            assert_eq!(s.last_fire_between(&utc("1970-01-01 00:00"), &from), None);
        }
        // A year that has passed.
        let past = schedule("0 0 0 1 1 * 2020");
        assert_eq!(past.next_after(&from), None);
        assert_eq!(
            past.last_fire_between(&utc("2020-01-01 00:00"), &from),
            None
        );
        // A leap day is possible, just rare.
        assert_eq!(fires("0 0 29 2 *", from, 2)[1], "2032-02-29 00:00:00+00:00");
    }

    #[test]
    fn works_in_any_time_zone_type() {
        let plus_five = FixedOffset::east_opt(5 * 3600).unwrap();
        assert_eq!(
            fires("30 4 * * 1", local(plus_five, "2026-03-01 12:00"), 1),
            ["2026-03-02 04:30:00+05:00"]
        );
        assert_eq!(
            fires("30 4 * * 1", local(Berlin, "2026-03-01 12:00"), 1),
            ["2026-03-02 04:30:00+01:00"]
        );
        // Sub-second `after`: a time earlier in the same second does not count.
        let after = utc("2026-03-01 10:00") + TimeDelta::milliseconds(500);
        assert_eq!(
            fires("0 * * * * *", after, 1),
            ["2026-03-01 10:01:00+00:00"]
        );
    }

    // ---- validation ----

    #[test]
    fn errors_name_the_field_and_reason() {
        let cases = [
            ("0 0 * * 8", "dow: 8 is out of range 0-7"),
            ("60 * * * *", "minute: 60 is out of range 0-59"),
            ("0 24 * * *", "hour: 24 is out of range 0-23"),
            ("0 0 0 * *", "dom: 0 is out of range 1-31"),
            ("0 0 32 * *", "dom: 32 is out of range 1-31"),
            ("0 0 * 13 *", "month: 13 is out of range 1-12"),
            ("60 0 0 * * *", "second: 60 is out of range 0-59"),
            ("0 0 0 * * * 1969", "year: 1969 is out of range 1970-2100"),
            (
                "0 0 * * 99999999999",
                "dow: 99999999999 is out of range 0-7",
            ),
            ("* * * *", "expected 5, 6 or 7 fields, found 4"),
            ("", "expected 5, 6 or 7 fields, found 0"),
            ("* * * * * * * *", "expected 5, 6 or 7 fields, found 8"),
            ("0 0 1 FOO *", "month: unknown name \"FOO\""),
            ("0 0 * * SUNDAY", "dow: unknown name \"SUNDAY\""),
            ("0 */0 * * *", "hour: step 0 is not allowed"),
            ("*/60 * * * *", "minute: step 60 is out of range 1-59"),
            ("@fortnightly", "@fortnightly is not a known shortcut"),
            ("@reboot", "@reboot is not a known shortcut"),
            ("0 17-9 * * *", "hour: range 17-9 runs backwards"),
            ("0 0 * * FRI-MON", "dow: range FRI-MON runs backwards"),
            ("1,,2 * * * *", "minute: empty item in \"1,,2\""),
            ("5, * * * *", "minute: empty item in \"5,\""),
            (
                "1- * * * *",
                "minute: \"1-\" is not a number, range or step",
            ),
            (
                "0 abc * * *",
                "hour: \"abc\" is not a number, range or step",
            ),
            (
                "*/2/3 * * * *",
                "minute: \"*/2/3\" is not a number, range or step",
            ),
            ("0 0 ? * *", "dom: \"?\" is not a number, range or step"),
            ("0 0 L * *", "dom: \"L\" is not a number, range or step"),
        ];
        for (expr, message) in cases {
            assert_eq!(error(expr), message, "{expr:?}");
        }
        // The variants carry the field for callers that want it.
        assert_eq!(
            Schedule::parse("0 0 * * 8"),
            Err(ScheduleError::OutOfRange {
                field: Field::DayOfWeek,
                value: "8".into(),
                min: 0,
                max: 7
            })
        );
        assert_eq!(
            "0 0 * * 8".parse::<Schedule>(),
            Schedule::parse("0 0 * * 8")
        );
    }

    #[test]
    fn source_is_kept() {
        let s: Schedule = "  30 4 * * 1 ".parse().unwrap();
        assert_eq!(s.source(), "30 4 * * 1");
        assert_eq!(s.to_string(), "30 4 * * 1");
    }

    // ---- DST ----

    #[test]
    fn berlin_spring_forward() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let from = local(Berlin, "2026-03-28 12:00");
        // A fixed time in the gap fires once, when the gap ends (01:00 UTC).
        let got = fires("30 2 * * *", from, 2);
        assert_eq!(
            got,
            ["2026-03-29 03:00:00+02:00", "2026-03-30 02:30:00+02:00"]
        );
        let t = schedule("30 2 * * *").next_after(&from).unwrap();
        assert_eq!(t.with_timezone(&Utc), utc("2026-03-29 01:00"));
        // Two fixed times that land on the same instant fire once.
        assert_eq!(
            fires("0 2,3 * * *", from, 2),
            ["2026-03-29 03:00:00+02:00", "2026-03-30 02:00:00+02:00"]
        );
        // Repeating schedules keep their rhythm.
        assert_eq!(
            fires("*/5 * * * *", local(Berlin, "2026-03-29 01:50"), 3),
            [
                "2026-03-29 01:55:00+01:00",
                "2026-03-29 03:00:00+02:00",
                "2026-03-29 03:05:00+02:00"
            ]
        );
        assert_eq!(
            fires("30 * * * *", local(Berlin, "2026-03-29 01:00"), 2),
            ["2026-03-29 01:30:00+01:00", "2026-03-29 03:30:00+02:00"]
        );
    }

    #[test]
    fn berlin_fall_back() {
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:00-02:59 twice.
        let from = local(Berlin, "2026-10-24 12:00");
        // A fixed time fires once, in the first pass.
        assert_eq!(
            fires("30 2 * * *", from, 2),
            ["2026-10-25 02:30:00+02:00", "2026-10-26 02:30:00+01:00"]
        );
        // ... also when asked from inside the first pass, after it fired.
        let in_first_pass = local(Berlin, "2026-10-25 02:45");
        assert_eq!(
            fires("30 2 * * *", in_first_pass, 1),
            ["2026-10-26 02:30:00+01:00"]
        );
        assert_eq!(
            fires("30 * * * *", local(Berlin, "2026-10-25 01:00"), 4),
            [
                "2026-10-25 01:30:00+02:00",
                "2026-10-25 02:30:00+02:00",
                "2026-10-25 02:30:00+01:00",
                "2026-10-25 03:30:00+01:00"
            ]
        );
        assert_eq!(
            fires("*/5 * * * *", local(Berlin, "2026-10-25 02:50"), 4),
            [
                "2026-10-25 02:55:00+02:00",
                "2026-10-25 02:00:00+01:00",
                "2026-10-25 02:05:00+01:00",
                "2026-10-25 02:10:00+01:00"
            ]
        );
        // A repeating schedule with a fixed hour fires in both passes too.
        assert_eq!(
            fires("0,30 2 * * *", from, 5),
            [
                "2026-10-25 02:00:00+02:00",
                "2026-10-25 02:30:00+02:00",
                "2026-10-25 02:00:00+01:00",
                "2026-10-25 02:30:00+01:00",
                "2026-10-26 02:00:00+01:00"
            ]
        );
    }

    #[test]
    fn new_york_spring_forward() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        let from = local(New_York, "2026-03-07 12:00");
        assert_eq!(
            fires("30 2 * * *", from, 2),
            ["2026-03-08 03:00:00-04:00", "2026-03-09 02:30:00-04:00"]
        );
        assert_eq!(
            fires("*/5 * * * *", local(New_York, "2026-03-08 01:50"), 3),
            [
                "2026-03-08 01:55:00-05:00",
                "2026-03-08 03:00:00-04:00",
                "2026-03-08 03:05:00-04:00"
            ]
        );
        assert_eq!(
            fires("30 * * * *", local(New_York, "2026-03-08 01:00"), 2),
            ["2026-03-08 01:30:00-05:00", "2026-03-08 03:30:00-04:00"]
        );
    }

    #[test]
    fn new_york_fall_back() {
        // 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:00-01:59 twice.
        let from = local(New_York, "2026-10-31 12:00");
        assert_eq!(
            fires("30 1 * * *", from, 2),
            ["2026-11-01 01:30:00-04:00", "2026-11-02 01:30:00-05:00"]
        );
        assert_eq!(
            fires("30 * * * *", local(New_York, "2026-11-01 00:00"), 4),
            [
                "2026-11-01 00:30:00-04:00",
                "2026-11-01 01:30:00-04:00",
                "2026-11-01 01:30:00-05:00",
                "2026-11-01 02:30:00-05:00"
            ]
        );
        assert_eq!(
            fires("*/5 * * * *", local(New_York, "2026-11-01 01:50"), 3),
            [
                "2026-11-01 01:55:00-04:00",
                "2026-11-01 01:00:00-05:00",
                "2026-11-01 01:05:00-05:00"
            ]
        );
    }

    #[test]
    fn repeating_schedules_keep_real_time_rhythm_all_day() {
        let days = [
            (
                local(Berlin, "2026-03-28 22:00"),
                local(Berlin, "2026-03-30 02:00"),
            ),
            (
                local(Berlin, "2026-10-24 22:00"),
                local(Berlin, "2026-10-26 02:00"),
            ),
        ];
        for (from, to) in days {
            for (expr, every) in [
                ("*/5 * * * *", 5),
                ("30 * * * *", 60),
                ("0 */10 * * * *", 10),
            ] {
                let s = schedule(expr);
                let mut t = s.next_after(&from).unwrap();
                while t < to {
                    let next = s.next_after(&t).unwrap();
                    assert_eq!(next - t, TimeDelta::minutes(every), "{expr} at {t}");
                    t = next;
                }
            }
        }
        // New York, and Lord Howe Island, whose clocks move by half an hour.
        let other_days = [
            (
                local(New_York, "2026-03-07 22:00"),
                local(New_York, "2026-03-09 02:00"),
            ),
            (
                local(New_York, "2026-10-31 22:00"),
                local(New_York, "2026-11-02 02:00"),
            ),
            (
                local(Lord_Howe, "2026-04-04 22:00"),
                local(Lord_Howe, "2026-04-06 02:00"),
            ),
            (
                local(Lord_Howe, "2026-10-03 22:00"),
                local(Lord_Howe, "2026-10-05 02:00"),
            ),
        ];
        for (from, to) in other_days {
            let s = schedule("*/5 * * * *");
            let mut t = s.next_after(&from).unwrap();
            while t < to {
                let next = s.next_after(&t).unwrap();
                assert_eq!(next - t, TimeDelta::minutes(5), "at {t}");
                t = next;
            }
        }
    }

    // ---- catch-up ----

    #[test]
    fn last_fire_between_finds_the_missed_slot() {
        let s = schedule("0 3 * * *");
        let since = utc("2026-03-01 02:00");
        let at = utc("2026-03-01 10:00");
        assert_eq!(
            s.last_fire_between(&since, &at),
            Some(utc("2026-03-01 03:00"))
        );
        // Several missed: the latest one.
        let at = utc("2026-03-05 10:00");
        assert_eq!(
            s.last_fire_between(&since, &at),
            Some(utc("2026-03-05 03:00"))
        );
        // None missed.
        let since = utc("2026-03-01 04:00");
        assert_eq!(s.last_fire_between(&since, &utc("2026-03-01 10:00")), None);
        // `at` is included, `since` is not.
        let slot = utc("2026-03-02 03:00");
        assert_eq!(s.last_fire_between(&since, &slot), Some(slot));
        assert_eq!(s.last_fire_between(&slot, &utc("2026-03-02 10:00")), None);
        assert_eq!(s.last_fire_between(&slot, &slot), None);
    }

    #[test]
    fn last_fire_between_does_not_walk_the_gap() {
        // A year of every-second fires: answered from the `at` end.
        let s = schedule("* * * * * *");
        let at = utc("2027-03-01 10:00") + TimeDelta::milliseconds(700);
        let got = s.last_fire_between(&utc("2026-03-01 10:00"), &at);
        assert_eq!(got, Some(utc("2027-03-01 10:00")));
        let yearly = schedule("0 0 1 1 *");
        let got = yearly.last_fire_between(&utc("1970-01-01 00:00"), &utc("2026-03-01 00:00"));
        assert_eq!(got, Some(utc("2026-01-01 00:00")));
    }

    #[test]
    fn last_fire_between_across_dst() {
        let day_before = local(Berlin, "2026-10-24 12:00");
        // In the second pass of the repeated hour, the fixed 02:30 already
        // fired in the first pass.
        let second_pass = local(Berlin, "2026-10-25 03:10") - TimeDelta::hours(1);
        assert_eq!(show(&second_pass), "2026-10-25 02:10:00+01:00");
        let got = schedule("30 2 * * *").last_fire_between(&day_before, &second_pass);
        assert_eq!(
            got.map(|t| show(&t)).as_deref(),
            Some("2026-10-25 02:30:00+02:00")
        );
        // Same for an hourly one: :50 of the first pass is the latest.
        let got = schedule("50 * * * *").last_fire_between(&day_before, &second_pass);
        assert_eq!(
            got.map(|t| show(&t)).as_deref(),
            Some("2026-10-25 02:50:00+02:00")
        );
        let got = schedule("*/5 * * * *").last_fire_between(&day_before, &second_pass);
        assert_eq!(
            got.map(|t| show(&t)).as_deref(),
            Some("2026-10-25 02:10:00+01:00")
        );
        // Spring forward: the 02:30 that did not exist fired at 03:00.
        let got = schedule("30 2 * * *").last_fire_between(
            &local(Berlin, "2026-03-28 12:00"),
            &local(Berlin, "2026-03-29 03:10"),
        );
        assert_eq!(
            got.map(|t| show(&t)).as_deref(),
            Some("2026-03-29 03:00:00+02:00")
        );

        // And it agrees with `next_after` fire by fire through all four changes.
        let windows = [
            (
                local(Berlin, "2026-03-28 20:00"),
                local(Berlin, "2026-03-29 06:00"),
            ),
            (
                local(Berlin, "2026-10-24 20:00"),
                local(Berlin, "2026-10-25 06:00"),
            ),
            (
                local(New_York, "2026-03-07 20:00"),
                local(New_York, "2026-03-08 06:00"),
            ),
            (
                local(New_York, "2026-10-31 20:00"),
                local(New_York, "2026-11-01 06:00"),
            ),
        ];
        let exprs = [
            "30 2 * * *",
            "30 1 * * *",
            "0 2,3 * * *",
            "*/5 * * * *",
            "30 * * * *",
            "0,30 1,2 * * *",
            "*/20 * * * * *",
        ];
        for (from, to) in windows {
            for expr in exprs {
                check_backward_agrees(&schedule(expr), from, to);
            }
        }
    }
}
