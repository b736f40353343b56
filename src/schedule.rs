//! Cron schedules: a cron expression in, fire times out.
//!
//! [`Schedule::parse`] takes a schedule as a job file writes it: five fields
//! as crontab(5) reads them, six or seven with seconds first and a year last,
//! or an `@` shortcut. It checks every field and names each bad field and the
//! reason, which is what `strata validate` prints. [`Schedule::next_after`]
//! and [`Schedule::last_fire_between`] turn a schedule into instants on a
//! [`Zone`]'s timeline (the daemon and `list` pass the machine's zone, tests
//! pass named ones). Nothing here reads the clock, the environment or the
//! filesystem.
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
//! steps. Around a DST change, cron(8)'s rule decides what fires (SPEC §1.1;
//! cronie's `cron.c` calls the two kinds "wildcard" and "fixed" jobs):
//!
//! - a **wildcard** job, whose minute or hour field starts with `*`
//!   (`*/5 * * * *`, `* 2 * * *`, `@hourly`), follows the wall clock as it
//!   reads: it fires at every instant whose wall-clock time matches, so
//!   nothing fires in a spring-forward gap and both passes of a repeated
//!   hour fire. The search runs through the zone's periods of constant
//!   offset, in each of which wall-clock time and real time move together;
//! - every other job is **fixed-time** (`30 2 * * *`, `0,30 2 * * *`,
//!   `0 0-23 * * *`): each matching wall-clock time fires once, at its only
//!   occurrence, at its first occurrence if it occurs twice (the earlier
//!   offset), or, if a gap swallowed it, at the first instant after the gap.
//!   That placing keeps wall-clock order, so the search can step through
//!   wall-clock matches and place each one.

use std::fmt;
use std::str::FromStr;

use chrono::Timelike;
use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};

use crate::tz::{Placed, Zone};

/// How far the search looks before deciding that a schedule never fires. The
/// Gregorian calendar repeats every 400 years, so a combination of month, day
/// of month and day of week that occurs at all occurs within that span.
const SEARCH_YEARS: i32 = 400;

/// The shortcuts crontab(5) knows, with the five fields each one stands for.
/// (`@reboot` is not a time and has no meaning for a backup schedule.) As in
/// cronie, `@hourly` is a wildcard job (its hour is `*`) and the others are
/// fixed-time jobs.
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

    /// The values a range that wraps runs through, in order: a range
    /// `a-b` with `a > b` runs from `a` to the last and on from the first
    /// to `b`. Days of week cycle through 0–6 (7 is 0). Years do not wrap.
    fn cycle(self) -> Option<(u32, u32)> {
        match self {
            Field::DayOfWeek => Some((0, 6)),
            Field::Year => None,
            _ => Some(self.bounds()),
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
/// An expression with several bad fields is [`ScheduleError::Fields`].
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
    /// A step after a single number (`10/20`): cron needs a range or `*`
    /// before the `/`.
    #[error("{field}: \"{item}\" has a step without a range (write {suggestion})")]
    StepWithoutRange {
        /// The field holding the item.
        field: Field,
        /// The list item as written.
        item: String,
        /// What was probably meant (`10-59/20`).
        suggestion: String,
    },
    /// A year range whose start is after its end (`2030-2027`). Other
    /// fields' ranges wrap (`SAT-SUN`, `22-2`).
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
    /// More than one field is wrong: each problem, in field order. `Display`
    /// joins them with `; `.
    #[error("{}", join(.0))]
    Fields(Vec<ScheduleError>),
}

impl ScheduleError {
    /// Each problem on its own: the ones of [`ScheduleError::Fields`], or
    /// this one.
    pub fn problems(&self) -> &[ScheduleError] {
        match self {
            ScheduleError::Fields(all) => all,
            one => std::slice::from_ref(one),
        }
    }
}

fn join(errors: &[ScheduleError]) -> String {
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.join("; ")
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
}

/// How day of month and day of week combine (crontab(5)): if either field
/// starts with `*` a day must match both, so the other one alone restricts;
/// if both are restricted, a day matching either one fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DayRule {
    Both,
    Either,
}

/// A schedule's fields as sets of values (see [`Schedule::fields`]): each
/// slice sorted, without duplicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields<'a> {
    /// Seconds, 0–59 (`[0]` in the 5-field form).
    pub seconds: &'a [u32],
    /// Minutes, 0–59.
    pub minutes: &'a [u32],
    /// Hours, 0–23.
    pub hours: &'a [u32],
    /// Days of month, 1–31.
    pub days_of_month: &'a [u32],
    /// Months, 1–12.
    pub months: &'a [u32],
    /// Days of week, 0–6 from Sunday.
    pub days_of_week: &'a [u32],
    /// Years, when the expression restricts them.
    pub years: Option<&'a [u32]>,
    /// crontab(5)'s rule: both day fields are restricted (neither starts
    /// with `*`), so a day matching **either** fires. Otherwise a day must
    /// match both sets (one of which then holds every day).
    pub either_day: bool,
}

/// A parsed cron schedule: the set of wall-clock times it fires at, and
/// which of cron's two DST rules it follows.
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
    /// The minute or the hour field starts with `*` (cron(8)'s wildcard
    /// job): it follows the wall clock across DST changes.
    wildcard: bool,
}

impl Schedule {
    /// Parses a schedule: `min hour dom mon dow` (crontab(5)),
    /// `sec min hour dom mon dow [year]`, or one of `@hourly`, `@daily`,
    /// `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`.
    ///
    /// Fields take `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and
    /// `a-b/n`, and month and day names (`JAN`–`DEC`, `SUN`–`SAT`, any
    /// case). A range whose start is after its end wraps around the end of
    /// the field (`SAT-SUN`, `FRI-MON`, `22-2` in hours), except in the year
    /// field. As in cron, a step needs a range or `*` before it (`10/20` is
    /// an error). In the 6- and 7-field forms, day of month and day of week
    /// also accept `?`, meaning `*` (the `cron` crate's convention);
    /// crontab's 5-field form does not.
    ///
    /// Every field is checked: the error names each bad one.
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
        let mut errors = Vec::new();
        let mut field = |field: Field, text: &str, question_mark: bool| {
            parse_field(field, text, question_mark)
                .map_err(|e| errors.push(e))
                .ok()
        };
        let seconds = field(Field::Second, second, false);
        let minutes = field(Field::Minute, rest[0], false);
        let hours = field(Field::Hour, rest[1], false);
        let days_of_month = field(Field::DayOfMonth, rest[2], question_mark);
        let months = field(Field::Month, rest[3], false);
        let days_of_week = field(Field::DayOfWeek, rest[4], question_mark);
        let years = year.map(|year| (year, field(Field::Year, year, false)));
        let (
            Some((seconds, _)),
            Some((minutes, _)),
            Some((hours, _)),
            Some((days_of_month, dom_star)),
            Some((months, _)),
            Some((days_of_week, dow_star)),
        ) = (seconds, minutes, hours, days_of_month, months, days_of_week)
        else {
            return Err(one_or_all(errors));
        };
        let years = match years {
            None => None,
            Some((_, None)) => return Err(one_or_all(errors)),
            Some(("*", Some(_))) => None,
            Some((_, Some((set, _)))) => Some(set),
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
            wildcard: rest[0].starts_with('*') || rest[1].starts_with('*'),
        })
    }

    /// The expression this schedule was parsed from, without surrounding
    /// whitespace.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether this is a wildcard job in cron(8)'s sense (its minute or hour
    /// field starts with `*`, as in `@hourly`), which follows the wall clock
    /// across DST changes; otherwise it is a fixed-time job.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The parsed fields as sets of values, for code that writes the
    /// schedule in another scheduler's syntax (`strata export`).
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            seconds: &self.seconds.0,
            minutes: &self.minutes.0,
            hours: &self.hours.0,
            days_of_month: &self.days_of_month.0,
            months: &self.months.0,
            days_of_week: &self.days_of_week.0,
            years: self.years.as_ref().map(|y| y.0.as_slice()),
            either_day: self.days == DayRule::Either,
        }
    }

    /// The first wall-clock time at or after `from` and before `until` that
    /// matches every field, with no zone involved: where a DST change
    /// would move or repeat it is for the caller to ask.
    pub fn first_match_between(
        &self,
        from: NaiveDateTime,
        until: NaiveDateTime,
    ) -> Option<NaiveDateTime> {
        self.next_local(from, until.year())
            .filter(|found| *found < until)
    }

    /// Whether any date the fields allow exists (`0 2 31 2 *` never fires;
    /// `0 2 29 2 *` fires in leap years). Years before now count: this is a
    /// property of the expression, not of the clock.
    pub fn can_fire(&self) -> bool {
        let (first, last) = match &self.years {
            Some(Set(years)) => match (years.first(), years.last()) {
                (Some(&first), Some(&last)) => (first as i32, last as i32),
                _ => return false,
            },
            None => (2000, 2000 + SEARCH_YEARS),
        };
        NaiveDate::from_ymd_opt(first, 1, 1)
            .and_then(|d| self.next_local(d.and_time(NaiveTime::MIN), last))
            .is_some()
    }

    /// The first fire time strictly after `after`, on `zone`'s timeline.
    ///
    /// `None` if the schedule never fires again (`0 0 31 2 *`, or a year
    /// field entirely in the past). The search is bounded, so that answer
    /// comes as quickly as any other.
    pub fn next_after(&self, after: &DateTime<Utc>, zone: &Zone) -> Option<DateTime<Utc>> {
        // Fire times are whole seconds: one at or before `after`'s second
        // is not after it.
        let after = whole_second(after)?;
        let local = zone.local(&after);
        let last_year = local.year().saturating_add(SEARCH_YEARS);
        let from = local.checked_add_signed(TimeDelta::seconds(1))?;
        if self.wildcard {
            self.next_on_wall_clock(after, from, last_year, zone)
        } else {
            self.next_fixed(after, from, last_year, zone)
        }
    }

    /// The latest fire time at or before `at` and strictly after `since`, or
    /// `None` if there is none.
    ///
    /// This answers the daemon's catch-up question, "did a scheduled time pass
    /// while it was down?", with `since` the last run. It searches backward
    /// from `at`, field by field, rather than stepping through every fire
    /// time since `since`: an every-second schedule and a year's gap cost no
    /// more than a daily one.
    pub fn last_fire_between(
        &self,
        since: &DateTime<Utc>,
        at: &DateTime<Utc>,
        zone: &Zone,
    ) -> Option<DateTime<Utc>> {
        if at <= since {
            return None;
        }
        let at = whole_second(at)?;
        let local = zone.local(&at);
        // A fire time after `since` reads a wall-clock time at most a DST
        // shift earlier than `since`'s, so a year before it is far enough.
        let first_year = (zone.local(since).year() - 1).max(local.year() - SEARCH_YEARS);
        let found = if self.wildcard {
            self.last_on_wall_clock(since, at, local, first_year, zone)
        } else {
            self.last_fixed(at, local, first_year, zone)
        };
        found.filter(|t| t > since)
    }

    /// A wildcard job's next fire: the first instant after `after` whose
    /// wall-clock time matches. Within one period of constant offset,
    /// wall-clock time is real time shifted, so the first wall-clock match
    /// from `from` is the answer if it falls before the period ends;
    /// otherwise the search goes on from the start of the next period.
    fn next_on_wall_clock(
        &self,
        after: DateTime<Utc>,
        mut from: NaiveDateTime,
        last_year: i32,
        zone: &Zone,
    ) -> Option<DateTime<Utc>> {
        let mut start = after;
        loop {
            let offset = TimeDelta::seconds(zone.offset_seconds(&start));
            let end = zone.next_transition(&start);
            match self.next_local(from, last_year) {
                Some(n) => {
                    let t = n.checked_sub_signed(offset)?.and_utc();
                    if end.is_none_or(|end| t < end) {
                        return Some(t);
                    }
                }
                // Nothing matches from `from` on; only clocks going back
                // right ahead can show earlier wall-clock times again.
                None => {
                    if end.is_none_or(|end| zone.local(&end) >= from) {
                        return None;
                    }
                }
            }
            let next = end?;
            start = next;
            from = zone.local(&next);
        }
    }

    /// A wildcard job's latest fire at or before `at`: the same search as
    /// [`Schedule::next_on_wall_clock`], backward through the periods.
    fn last_on_wall_clock(
        &self,
        since: &DateTime<Utc>,
        at: DateTime<Utc>,
        mut upto: NaiveDateTime,
        first_year: i32,
        zone: &Zone,
    ) -> Option<DateTime<Utc>> {
        let mut end = at;
        loop {
            let offset = TimeDelta::seconds(zone.offset_seconds(&end));
            let begin = zone.last_transition(&end);
            let before_begin = begin.and_then(|b| b.checked_sub_signed(TimeDelta::seconds(1)));
            match self.prev_local(upto, first_year) {
                Some(n) => {
                    let t = n.checked_sub_signed(offset)?.and_utc();
                    if begin.is_none_or(|begin| t >= begin) {
                        return Some(t);
                    }
                }
                // Nothing matches up to `upto`; only clocks that went
                // forward just before showed later wall-clock times.
                None => {
                    if before_begin.is_none_or(|b| zone.local(&b) <= upto) {
                        return None;
                    }
                }
            }
            let previous = before_begin?;
            if previous < *since {
                return None;
            }
            end = previous;
            upto = zone.local(&previous);
        }
    }

    /// A fixed-time job's next fire: the first wall-clock match from `from`
    /// whose placing (see the module header) is after `after`.
    fn next_fixed(
        &self,
        after: DateTime<Utc>,
        mut from: NaiveDateTime,
        last_year: i32,
        zone: &Zone,
    ) -> Option<DateTime<Utc>> {
        loop {
            let n = self.next_local(from, last_year)?;
            let step = n.checked_add_signed(TimeDelta::seconds(1))?;
            let (t, resume) = match zone.place(&n)? {
                Placed::Unique(t) => (t, step),
                Placed::Gap { end } => (end, step),
                // In the second pass the first pass has fired already: go on
                // from the first wall-clock time after the repeated ones.
                Placed::Fold { earlier, shift, .. } => {
                    let first_pass_end = shift.checked_sub_signed(TimeDelta::seconds(1))?;
                    let after_fold = zone
                        .local(&first_pass_end)
                        .checked_add_signed(TimeDelta::seconds(1))?;
                    (earlier, step.max(after_fold))
                }
            };
            if t > after {
                return Some(t);
            }
            from = resume;
        }
    }

    /// A fixed-time job's latest fire at or before `at` (wall-clock time
    /// `local`).
    fn last_fixed(
        &self,
        at: DateTime<Utc>,
        local: NaiveDateTime,
        first_year: i32,
        zone: &Zone,
    ) -> Option<DateTime<Utc>> {
        // In the second pass of a repeated hour, the wall-clock times after
        // `local` up to the end of the first pass have fired already.
        let mut upto = match zone.place(&local) {
            Some(Placed::Fold { shift, .. }) if at >= shift => {
                zone.local(&shift.checked_sub_signed(TimeDelta::seconds(1))?)
            }
            _ => local,
        };
        loop {
            let n = self.prev_local(upto, first_year)?;
            let t = match zone.place(&n)? {
                Placed::Unique(t) => t,
                Placed::Gap { end } => end,
                Placed::Fold { earlier, .. } => earlier,
            };
            if t <= at {
                return Some(t);
            }
            upto = n.checked_sub_signed(TimeDelta::seconds(1))?;
        }
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

/// `t` without its fraction of a second.
fn whole_second(t: &DateTime<Utc>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.timestamp(), 0)
}

fn one_or_all(mut errors: Vec<ScheduleError>) -> ScheduleError {
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        ScheduleError::Fields(errors)
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
        let step = step.unwrap_or(1) as usize;
        if range == "*" {
            values.extend((min..=max).step_by(step));
        } else if let Some((a, b)) = range.split_once('-') {
            let (mut a, b) = (parse_value(field, a, item)?, parse_value(field, b, item)?);
            if field == Field::DayOfWeek && a == 7 {
                // `7-2` is Sunday to Tuesday.
                a = 0;
            }
            if a <= b {
                values.extend((a..=b).step_by(step));
            } else {
                let Some((first, last)) = field.cycle() else {
                    return Err(ScheduleError::BackwardRange {
                        field,
                        range: range.to_string(),
                    });
                };
                // A wrapping range: on to the end of the cycle, then from
                // its start; the step counts along the whole run.
                values.extend((a..=last).chain(first..=b).step_by(step));
            }
        } else {
            let a = parse_value(field, range, item)?;
            if let Some((_, step_text)) = item.split_once('/') {
                return Err(ScheduleError::StepWithoutRange {
                    field,
                    item: item.to_string(),
                    suggestion: format!("{range}-{max}/{step_text}"),
                });
            }
            values.push(a);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;
    use std::cmp::Ordering;
    use std::ops::{Add, Sub};

    const BERLIN: &str = "Europe/Berlin";
    const NEW_YORK: &str = "America/New_York";
    const LORD_HOWE: &str = "Australia/Lord_Howe";

    /// An instant and the zone the test reads it in.
    #[derive(Clone, Copy, Debug)]
    struct At {
        t: DateTime<Utc>,
        zone: &'static Zone,
    }

    impl fmt::Display for At {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&show(self))
        }
    }

    impl PartialEq for At {
        fn eq(&self, other: &At) -> bool {
            self.t == other.t
        }
    }

    impl PartialOrd for At {
        fn partial_cmp(&self, other: &At) -> Option<Ordering> {
            self.t.partial_cmp(&other.t)
        }
    }

    impl Add<TimeDelta> for At {
        type Output = At;
        fn add(self, d: TimeDelta) -> At {
            At {
                t: self.t + d,
                zone: self.zone,
            }
        }
    }

    impl Sub<TimeDelta> for At {
        type Output = At;
        fn sub(self, d: TimeDelta) -> At {
            At {
                t: self.t - d,
                zone: self.zone,
            }
        }
    }

    impl Sub<At> for At {
        type Output = TimeDelta;
        fn sub(self, other: At) -> TimeDelta {
            self.t - other.t
        }
    }

    /// The schedule's answers for instants read in a zone.
    trait Ask {
        fn next(&self, after: &At) -> Option<At>;
        fn last(&self, since: &At, at: &At) -> Option<At>;
    }

    impl Ask for Schedule {
        fn next(&self, after: &At) -> Option<At> {
            self.next_after(&after.t, after.zone).map(|t| At {
                t,
                zone: after.zone,
            })
        }

        fn last(&self, since: &At, at: &At) -> Option<At> {
            self.last_fire_between(&since.t, &at.t, at.zone)
                .map(|t| At { t, zone: at.zone })
        }
    }

    /// The zone `name`, for the life of the test binary (so that `At` is
    /// `Copy`; a zone from the database is a shared handle, this leaks
    /// little).
    fn zone(name: &str) -> &'static Zone {
        Box::leak(Box::new(
            Zone::named(name).unwrap_or_else(|e| panic!("{e}")),
        ))
    }

    /// `text` ("2026-03-29 01:30[:00]") as a wall-clock time in the zone
    /// `name`; the first occurrence if it occurs twice.
    fn local(name: &str, text: &str) -> At {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
            .unwrap_or_else(|e| panic!("bad test time {text:?}: {e}"));
        let zone = zone(name);
        let t = match zone.place(&naive) {
            Some(Placed::Unique(t)) => t,
            Some(Placed::Fold { earlier, .. }) => earlier,
            other => panic!("{text} in {name}: {other:?}"),
        };
        At { t, zone }
    }

    fn utc(text: &str) -> At {
        local("UTC", text)
    }

    fn schedule(expr: &str) -> Schedule {
        Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"))
    }

    fn show(at: &At) -> String {
        at.zone.at(&at.t).format("%Y-%m-%d %H:%M:%S%:z").to_string()
    }

    /// The first `n` fire times after `after`, shown with their offsets.
    fn fires(expr: &str, after: At, n: usize) -> Vec<String> {
        let s = schedule(expr);
        let mut out = Vec::new();
        let mut t = after;
        for _ in 0..n {
            t = s.next(&t).unwrap_or_else(|| panic!("{expr}: ran out"));
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
    fn check_backward_agrees(s: &Schedule, from: At, to: At) {
        let mut prev = from;
        while let Some(next) = s.next(&prev).filter(|t| *t <= to) {
            assert_eq!(s.last(&prev, &next).as_ref(), Some(&next));
            let just_before = next - TimeDelta::seconds(1);
            assert_eq!(s.last(&prev, &just_before), None);
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
            .next(&utc("2026-03-01 12:00"))
            .unwrap();
        assert_eq!(next.zone.local(&next.t).weekday(), Weekday::Mon);
    }

    #[test]
    fn zero_and_seven_are_sunday() {
        let from = utc("2026-03-02 00:00");
        let zero = fires("0 3 * * 0", from, 3);
        assert_eq!(zero, fires("0 3 * * 7", from, 3));
        assert_eq!(zero, fires("0 3 * * SUN", from, 3));
        assert_eq!(zero[0], "2026-03-08 03:00:00+00:00");
        let t = schedule("0 3 * * 7").next(&from).unwrap();
        assert_eq!(t.zone.local(&t.t).weekday(), Weekday::Sun);
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
        // A step needs a range: `10-59/20`, not `10/20` (cron rejects it).
        assert_eq!(schedule("10-59/20 * * * *").minutes, Set(vec![10, 30, 50]));
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
        assert_eq!(s.next(&utc("2028-01-01 00:00")), None);
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
            assert_eq!(s.next(&from), None, "{expr}");
            assert_eq!(s.last(&utc("1970-01-01 00:00"), &from), None);
        }
        // A year that has passed.
        let past = schedule("0 0 0 1 1 * 2020");
        assert_eq!(past.next(&from), None);
        assert_eq!(past.last(&utc("2020-01-01 00:00"), &from), None);
        // A leap day is possible, just rare.
        assert_eq!(fires("0 0 29 2 *", from, 2)[1], "2032-02-29 00:00:00+00:00");
    }

    #[test]
    fn works_in_any_zone() {
        // Etc/GMT-5 is five hours east of UTC, all year.
        assert_eq!(
            fires("30 4 * * 1", local("Etc/GMT-5", "2026-03-01 12:00"), 1),
            ["2026-03-02 04:30:00+05:00"]
        );
        assert_eq!(
            fires("30 4 * * 1", local(BERLIN, "2026-03-01 12:00"), 1),
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
            (
                "0 0 0 1 1 * 2030-2027",
                "year: range 2030-2027 runs backwards",
            ),
            (
                "10/20 * * * *",
                "minute: \"10/20\" has a step without a range (write 10-59/20)",
            ),
            (
                "0 3/2 * * *",
                "hour: \"3/2\" has a step without a range (write 3-23/2)",
            ),
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
        let from = local(BERLIN, "2026-03-28 12:00");
        // A fixed time in the gap fires once, when the gap ends (01:00 UTC).
        let got = fires("30 2 * * *", from, 2);
        assert_eq!(
            got,
            ["2026-03-29 03:00:00+02:00", "2026-03-30 02:30:00+02:00"]
        );
        let t = schedule("30 2 * * *").next(&from).unwrap();
        assert_eq!(t, utc("2026-03-29 01:00"));
        // Two fixed times that land on the same instant fire once.
        assert_eq!(
            fires("0 2,3 * * *", from, 2),
            ["2026-03-29 03:00:00+02:00", "2026-03-30 02:00:00+02:00"]
        );
        // Repeating schedules keep their rhythm.
        assert_eq!(
            fires("*/5 * * * *", local(BERLIN, "2026-03-29 01:50"), 3),
            [
                "2026-03-29 01:55:00+01:00",
                "2026-03-29 03:00:00+02:00",
                "2026-03-29 03:05:00+02:00"
            ]
        );
        assert_eq!(
            fires("30 * * * *", local(BERLIN, "2026-03-29 01:00"), 2),
            ["2026-03-29 01:30:00+01:00", "2026-03-29 03:30:00+02:00"]
        );
    }

    #[test]
    fn berlin_fall_back() {
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:00-02:59 twice.
        let from = local(BERLIN, "2026-10-24 12:00");
        // A fixed time fires once, in the first pass.
        assert_eq!(
            fires("30 2 * * *", from, 2),
            ["2026-10-25 02:30:00+02:00", "2026-10-26 02:30:00+01:00"]
        );
        // ... also when asked from inside the first pass, after it fired.
        let in_first_pass = local(BERLIN, "2026-10-25 02:45");
        assert_eq!(
            fires("30 2 * * *", in_first_pass, 1),
            ["2026-10-26 02:30:00+01:00"]
        );
        assert_eq!(
            fires("30 * * * *", local(BERLIN, "2026-10-25 01:00"), 4),
            [
                "2026-10-25 01:30:00+02:00",
                "2026-10-25 02:30:00+02:00",
                "2026-10-25 02:30:00+01:00",
                "2026-10-25 03:30:00+01:00"
            ]
        );
        assert_eq!(
            fires("*/5 * * * *", local(BERLIN, "2026-10-25 02:50"), 4),
            [
                "2026-10-25 02:55:00+02:00",
                "2026-10-25 02:00:00+01:00",
                "2026-10-25 02:05:00+01:00",
                "2026-10-25 02:10:00+01:00"
            ]
        );
        // A list in the minute field is still a fixed-time job (cron(8)
        // looks at whether the field starts with `*`): first pass only.
        for expr in ["0,30 2 * * *", "0-59/30 2 * * *"] {
            assert_eq!(
                fires(expr, from, 4),
                [
                    "2026-10-25 02:00:00+02:00",
                    "2026-10-25 02:30:00+02:00",
                    "2026-10-26 02:00:00+01:00",
                    "2026-10-26 02:30:00+01:00"
                ],
                "{expr}"
            );
        }
        // `*/2` in the hour makes a wildcard job: both passes.
        assert_eq!(
            fires("30 */2 * * *", local(BERLIN, "2026-10-25 01:00"), 3),
            [
                "2026-10-25 02:30:00+02:00",
                "2026-10-25 02:30:00+01:00",
                "2026-10-25 04:30:00+01:00"
            ]
        );
        // Every hour listed is fixed: 02:00 once, and 03:00 CET follows.
        assert_eq!(
            fires("0 0-23 * * *", local(BERLIN, "2026-10-25 01:30"), 2),
            ["2026-10-25 02:00:00+02:00", "2026-10-25 03:00:00+01:00"]
        );
    }

    #[test]
    fn new_york_spring_forward() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        let from = local(NEW_YORK, "2026-03-07 12:00");
        assert_eq!(
            fires("30 2 * * *", from, 2),
            ["2026-03-08 03:00:00-04:00", "2026-03-09 02:30:00-04:00"]
        );
        assert_eq!(
            fires("*/5 * * * *", local(NEW_YORK, "2026-03-08 01:50"), 3),
            [
                "2026-03-08 01:55:00-05:00",
                "2026-03-08 03:00:00-04:00",
                "2026-03-08 03:05:00-04:00"
            ]
        );
        assert_eq!(
            fires("30 * * * *", local(NEW_YORK, "2026-03-08 01:00"), 2),
            ["2026-03-08 01:30:00-05:00", "2026-03-08 03:30:00-04:00"]
        );
    }

    #[test]
    fn new_york_fall_back() {
        // 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:00-01:59 twice.
        let from = local(NEW_YORK, "2026-10-31 12:00");
        assert_eq!(
            fires("30 1 * * *", from, 2),
            ["2026-11-01 01:30:00-04:00", "2026-11-02 01:30:00-05:00"]
        );
        assert_eq!(
            fires("30 * * * *", local(NEW_YORK, "2026-11-01 00:00"), 4),
            [
                "2026-11-01 00:30:00-04:00",
                "2026-11-01 01:30:00-04:00",
                "2026-11-01 01:30:00-05:00",
                "2026-11-01 02:30:00-05:00"
            ]
        );
        assert_eq!(
            fires("*/5 * * * *", local(NEW_YORK, "2026-11-01 01:50"), 3),
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
                local(BERLIN, "2026-03-28 22:00"),
                local(BERLIN, "2026-03-30 02:00"),
            ),
            (
                local(BERLIN, "2026-10-24 22:00"),
                local(BERLIN, "2026-10-26 02:00"),
            ),
        ];
        for (from, to) in days {
            for (expr, every) in [
                ("*/5 * * * *", 5),
                ("30 * * * *", 60),
                ("0 */10 * * * *", 10),
            ] {
                let s = schedule(expr);
                let mut t = s.next(&from).unwrap();
                while t < to {
                    let next = s.next(&t).unwrap();
                    assert_eq!(next - t, TimeDelta::minutes(every), "{expr} at {t}");
                    t = next;
                }
            }
        }
        // New York, and Lord Howe Island, whose clocks move by half an hour.
        let other_days = [
            (
                local(NEW_YORK, "2026-03-07 22:00"),
                local(NEW_YORK, "2026-03-09 02:00"),
            ),
            (
                local(NEW_YORK, "2026-10-31 22:00"),
                local(NEW_YORK, "2026-11-02 02:00"),
            ),
            (
                local(LORD_HOWE, "2026-04-04 22:00"),
                local(LORD_HOWE, "2026-04-06 02:00"),
            ),
            (
                local(LORD_HOWE, "2026-10-03 22:00"),
                local(LORD_HOWE, "2026-10-05 02:00"),
            ),
        ];
        for (from, to) in other_days {
            let s = schedule("*/5 * * * *");
            let mut t = s.next(&from).unwrap();
            while t < to {
                let next = s.next(&t).unwrap();
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
        assert_eq!(s.last(&since, &at), Some(utc("2026-03-01 03:00")));
        // Several missed: the latest one.
        let at = utc("2026-03-05 10:00");
        assert_eq!(s.last(&since, &at), Some(utc("2026-03-05 03:00")));
        // None missed.
        let since = utc("2026-03-01 04:00");
        assert_eq!(s.last(&since, &utc("2026-03-01 10:00")), None);
        // `at` is included, `since` is not.
        let slot = utc("2026-03-02 03:00");
        assert_eq!(s.last(&since, &slot), Some(slot));
        assert_eq!(s.last(&slot, &utc("2026-03-02 10:00")), None);
        assert_eq!(s.last(&slot, &slot), None);
    }

    #[test]
    fn last_fire_between_does_not_walk_the_gap() {
        // A year of every-second fires: answered from the `at` end.
        let s = schedule("* * * * * *");
        let at = utc("2027-03-01 10:00") + TimeDelta::milliseconds(700);
        let got = s.last(&utc("2026-03-01 10:00"), &at);
        assert_eq!(got, Some(utc("2027-03-01 10:00")));
        let yearly = schedule("0 0 1 1 *");
        let got = yearly.last(&utc("1970-01-01 00:00"), &utc("2026-03-01 00:00"));
        assert_eq!(got, Some(utc("2026-01-01 00:00")));
    }

    #[test]
    fn last_fire_between_across_dst() {
        let day_before = local(BERLIN, "2026-10-24 12:00");
        // In the second pass of the repeated hour, the fixed 02:30 already
        // fired in the first pass.
        let second_pass = local(BERLIN, "2026-10-25 03:10") - TimeDelta::hours(1);
        assert_eq!(show(&second_pass), "2026-10-25 02:10:00+01:00");
        let got = schedule("30 2 * * *").last(&day_before, &second_pass);
        assert_eq!(
            got.map(|t| show(&t)).as_deref(),
            Some("2026-10-25 02:30:00+02:00")
        );
        // Same for an hourly one: :50 of the first pass is the latest.
        let got = schedule("50 * * * *").last(&day_before, &second_pass);
        assert_eq!(
            got.map(|t| show(&t)).as_deref(),
            Some("2026-10-25 02:50:00+02:00")
        );
        let got = schedule("*/5 * * * *").last(&day_before, &second_pass);
        assert_eq!(
            got.map(|t| show(&t)).as_deref(),
            Some("2026-10-25 02:10:00+01:00")
        );
        // Spring forward: the 02:30 that did not exist fired at 03:00.
        let got = schedule("30 2 * * *").last(
            &local(BERLIN, "2026-03-28 12:00"),
            &local(BERLIN, "2026-03-29 03:10"),
        );
        assert_eq!(
            got.map(|t| show(&t)).as_deref(),
            Some("2026-03-29 03:00:00+02:00")
        );

        // And it agrees with `next_after` fire by fire through all four changes.
        let windows = [
            (
                local(BERLIN, "2026-03-28 20:00"),
                local(BERLIN, "2026-03-29 06:00"),
            ),
            (
                local(BERLIN, "2026-10-24 20:00"),
                local(BERLIN, "2026-10-25 06:00"),
            ),
            (
                local(NEW_YORK, "2026-03-07 20:00"),
                local(NEW_YORK, "2026-03-08 06:00"),
            ),
            (
                local(NEW_YORK, "2026-10-31 20:00"),
                local(NEW_YORK, "2026-11-01 06:00"),
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

    // ---- cron(8)'s two kinds of job, wrapping ranges, validation ----

    #[test]
    fn wildcard_jobs_are_the_ones_whose_minute_or_hour_starts_with_a_star() {
        for (expr, wildcard) in [
            ("*/5 * * * *", true),
            ("* 2 * * *", true),
            ("30 * * * *", true),
            ("30 */2 * * *", true),
            ("@hourly", true),
            ("*/20 * * * * *", true),
            ("30 2 * * *", false),
            ("0,30 2 * * *", false),
            ("0-59/30 2 * * *", false),
            ("0 0-23 * * *", false),
            ("@daily", false),
            ("@weekly", false),
            ("@monthly", false),
            ("@yearly", false),
            // Seconds do not count: minute and hour are fixed.
            ("* 30 2 * * *", false),
        ] {
            assert_eq!(schedule(expr).is_wildcard(), wildcard, "{expr}");
        }
    }

    #[test]
    fn ranges_wrap_around_the_end_of_the_field() {
        let dow = |expr: &str| schedule(expr).days_of_week;
        assert_eq!(dow("0 10 * * SAT-SUN"), Set(vec![0, 6]));
        assert_eq!(dow("0 10 * * 6-0"), Set(vec![0, 6]));
        assert_eq!(dow("0 10 * * FRI-MON"), Set(vec![0, 1, 5, 6]));
        assert_eq!(dow("0 10 * * 5-1/2"), Set(vec![0, 5]));
        // 7 is Sunday at either end.
        assert_eq!(dow("0 10 * * 7-2"), Set(vec![0, 1, 2]));
        assert_eq!(dow("0 10 * * 5-7"), Set(vec![0, 5, 6]));
        assert_eq!(schedule("0 22-2 * * *").hours, Set(vec![0, 1, 2, 22, 23]));
        assert_eq!(schedule("0 22-2/2 * * *").hours, Set(vec![0, 2, 22]));
        assert_eq!(schedule("50-10/10 * * * *").minutes, Set(vec![0, 10, 50]));
        assert_eq!(
            schedule("0 0 30-2 * *").days_of_month,
            Set(vec![1, 2, 30, 31])
        );
        assert_eq!(schedule("0 0 1 NOV-FEB *").months, Set(vec![1, 2, 11, 12]));
        assert_eq!(
            fires("0 23-1 * * *", utc("2026-03-06 12:00"), 4),
            [
                "2026-03-06 23:00:00+00:00",
                "2026-03-07 00:00:00+00:00",
                "2026-03-07 01:00:00+00:00",
                "2026-03-07 23:00:00+00:00"
            ]
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        assert_eq!(
            error("61 2 * * 8"),
            "minute: 61 is out of range 0-59; dow: 8 is out of range 0-7"
        );
        let all = Schedule::parse("61 24 0 13 8").unwrap_err();
        let fields: Vec<String> = all
            .problems()
            .iter()
            .map(|e| e.to_string().split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(fields, ["minute", "hour", "dom", "month", "dow"]);
        assert_eq!(
            error("60 0 0 * * * 1969"),
            "second: 60 is out of range 0-59; year: 1969 is out of range 1970-2100"
        );
        // One bad field is the plain error.
        assert!(matches!(
            Schedule::parse("0 0 * * 8"),
            Err(ScheduleError::OutOfRange { .. })
        ));
        assert_eq!(
            Schedule::parse("0 0 * * 8").unwrap_err().problems().len(),
            1
        );
    }

    #[test]
    fn schedules_that_can_never_fire() {
        for expr in [
            "0 2 31 2 *",
            "0 2 30 2 *",
            "0 0 31 4,6,9,11 *",
            "0 0 0 29 2 * 2025",
        ] {
            assert!(!schedule(expr).can_fire(), "{expr}");
        }
        for expr in [
            "0 2 29 2 *",
            "0 2 31 2 1",
            "* * * * *",
            "0 0 0 29 2 * 2025-2028",
            "0 0 0 1 1 * 2020",
        ] {
            assert!(schedule(expr).can_fire(), "{expr}");
        }
    }

    #[test]
    fn lord_howe_fixed_and_wildcard() {
        // 2026-10-04: 02:00 +10:30 jumps to 02:30 +11:00.
        assert_eq!(
            fires("15 2 * * *", local(LORD_HOWE, "2026-10-03 12:00"), 2),
            ["2026-10-04 02:30:00+11:00", "2026-10-05 02:15:00+11:00"]
        );
        assert_eq!(
            fires("* 2 * * *", local(LORD_HOWE, "2026-10-04 01:59"), 2),
            ["2026-10-04 02:30:00+11:00", "2026-10-04 02:31:00+11:00"]
        );
        // 2026-04-05: 02:00 +11:00 goes back to 01:30 +10:30.
        assert_eq!(
            fires("45 1 * * *", local(LORD_HOWE, "2026-04-04 12:00"), 2),
            ["2026-04-05 01:45:00+11:00", "2026-04-06 01:45:00+10:30"]
        );
        assert_eq!(
            fires("@hourly", local(LORD_HOWE, "2026-04-05 01:30"), 2),
            ["2026-04-05 02:00:00+10:30", "2026-04-05 03:00:00+10:30"]
        );
        assert_eq!(
            fires("*/20 * * * *", local(LORD_HOWE, "2026-04-05 01:50"), 3),
            [
                "2026-04-05 01:40:00+10:30",
                "2026-04-05 02:00:00+10:30",
                "2026-04-05 02:20:00+10:30"
            ]
        );
    }

    #[test]
    fn a_fixed_job_asked_from_the_second_pass_waits_for_the_next_day() {
        // 02:10 CET, the second pass: 02:30 fired at 02:30 CEST already.
        let second_pass = local(BERLIN, "2026-10-25 03:10") - TimeDelta::hours(1);
        assert_eq!(show(&second_pass), "2026-10-25 02:10:00+01:00");
        assert_eq!(
            fires("30 2 * * *", second_pass, 1),
            ["2026-10-26 02:30:00+01:00"]
        );
        // A time after the repeated hour still fires that day.
        assert_eq!(
            fires("30 3 * * *", second_pass, 1),
            ["2026-10-25 03:30:00+01:00"]
        );
        // Every second of 02:30 is one fixed job: each fires once.
        assert_eq!(
            fires("*/20 30 2 * * *", second_pass, 1),
            ["2026-10-26 02:30:00+01:00"]
        );
        // In a gap every second of the missing minute is one instant.
        assert_eq!(
            fires("*/20 30 2 * * *", local(BERLIN, "2026-03-29 01:59"), 2),
            ["2026-03-29 03:00:00+02:00", "2026-03-30 02:30:00+02:00"]
        );
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let zone = zone(BERLIN);
        for expr in ["* * * * *", "30 2 * * *", "0 0 29 2 *", "0 0 0 1 1 * 2100"] {
            let s = schedule(expr);
            for t in [
                DateTime::<Utc>::MIN_UTC,
                DateTime::<Utc>::MAX_UTC,
                DateTime::UNIX_EPOCH,
            ] {
                let _ = s.next_after(&t, zone);
                let _ = s.last_fire_between(&DateTime::<Utc>::MIN_UTC, &t, zone);
            }
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// No expression makes parsing or searching panic, in a zone
            /// with DST changes, from any instant over six centuries.
            #[test]
            fn no_expression_panics(
                expr in prop_oneof![
                    1 => "(@[a-z]{0,9}|[0-9*/,?A-Za-z -]{0,40})",
                    4 => prop::collection::vec(
                        prop_oneof![
                            12 => "(\\*|\\*/[1-9]|[1-7]|[1-7]-[1-7](/[1-9])?)(,[1-7])?",
                            1 => "(\\?|[0-9]{1,3}|[a-z]{3}|[A-Z]{3}(-[A-Z]{3})?)",
                        ],
                        5..=7,
                    )
                    .prop_map(|fields| fields.join(" ")),
                ],
                seconds in -5_000_000_000i64..20_000_000_000,
                back in 0i64..100_000_000,
            ) {
                let zone = zone(BERLIN);
                match Schedule::parse(&expr) {
                    Err(e) => {
                        prop_assert!(!e.to_string().is_empty());
                        prop_assert!(!e.problems().is_empty());
                    }
                    Ok(s) => {
                        let at = DateTime::from_timestamp(seconds, 0).unwrap();
                        let since = DateTime::from_timestamp(seconds - back, 0).unwrap();
                        if let Some(next) = s.next_after(&at, zone) {
                            prop_assert!(next > at);
                        }
                        if let Some(last) = s.last_fire_between(&since, &at, zone) {
                            prop_assert!(last > since && last <= at);
                        }
                        let _ = s.can_fire();
                    }
                }
            }
        }
    }
}
