//! `--at` and the points of `diff`, `show` and `cat`: the ways a person
//! names a point in a job's history, read into an [`At`] (or the latest
//! state).
//!
//! Takes the text, the machine's [`Zone`] and the time now (both from the
//! CLI, which reads them once); returns a [`Point`]. The forms:
//!
//! | text | means |
//! |---|---|
//! | `backup_20260304_050607` | that increment |
//! | `2026-03-04T05:06:07Z`, `2026-03-04T06:06:07+01:00` | RFC 3339: the last run that started at or before it |
//! | `2026-03-04 05:06:07 +01:00` | what `list` prints: the same, with the offset it shows |
//! | `2026-03-04 05:06:07`, `2026-03-04 05:06`, `2026-03-04` | local time: the last run that started in or before that second, minute or day |
//! | `-1`, `-2`, … | that many increments before the newest (`-0` is the newest) |
//! | `2d`, `36h`, `1w`, `1m`, `1y6m` | that long ago (units as `keep_within` reads them: `m` is months) |
//! | `latest` | the latest state (the mirror) |
//!
//! A local time that occurs twice (the hour repeated when clocks go back)
//! is read at its first occurrence, as cron reads it; write the offset to
//! name the second. A local time that never occurs (the hour skipped when
//! clocks go forward) means the moment before the jump.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeDelta, Utc};

use super::At;
use super::retention::go_back;
use crate::store::IncrementName;
use crate::tz::{Placed, Zone};

/// A point named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    /// The latest state: the mirror.
    Latest,
    /// A point in the increments.
    At(At),
}

/// Text that names no point; the message lists the forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} names no point in the history; use one of:\n  \
     an increment name     backup_20260304_050607\n  \
     a local date or time  2026-03-04, 2026-03-04 05:06, 2026-03-04 05:06:07 (as `list` prints it, an offset may follow)\n  \
     an RFC 3339 time      2026-03-04T05:06:07Z, 2026-03-04T06:06:07+01:00\n  \
     increments back       -1 (the one before the newest), -2, ...\n  \
     a time ago            2d, 36h, 1w, 1m (months), 1y6m\n  \
     the latest state      latest"
)]
pub struct BadAt(pub String);

/// Read `text` as a point, with local times in `zone` and relative times
/// counted back from `now`.
pub fn parse_point(text: &str, zone: &Zone, now: DateTime<Utc>) -> Result<Point, BadAt> {
    let t = text.trim();
    let bad = || BadAt(text.to_string());
    if t.eq_ignore_ascii_case("latest") || t.eq_ignore_ascii_case("mirror") {
        return Ok(Point::Latest);
    }
    if IncrementName::parse(t).is_some() {
        return Ok(Point::At(At::Increment(t.to_string())));
    }
    if let Some(digits) = t.strip_prefix('-')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        let back = digits.parse::<usize>().map_err(|_| bad())?;
        return Ok(Point::At(At::Back(back)));
    }
    if let Ok(exact) = DateTime::parse_from_rfc3339(t) {
        return Ok(Point::At(At::Time(exact.with_timezone(&Utc))));
    }
    if let Some(exact) = with_offset(t) {
        return Ok(Point::At(At::Time(exact.with_timezone(&Utc))));
    }
    if let Some(last) = local(t, zone) {
        return Ok(Point::At(At::Time(last)));
    }
    if t.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && let Some(then) = go_back(&now, t, zone)
    {
        return Ok(Point::At(At::Time(then)));
    }
    Err(bad())
}

/// `2026-03-04 05:06:07 +01:00` (what `list` prints) or with `T`.
fn with_offset(t: &str) -> Option<DateTime<FixedOffset>> {
    for format in [
        "%Y-%m-%d %H:%M:%S %:z",
        "%Y-%m-%d %H:%M:%S%:z",
        "%Y-%m-%dT%H:%M:%S %:z",
        "%Y-%m-%d %H:%M %:z",
    ] {
        if let Ok(parsed) = DateTime::parse_from_str(t, format) {
            return Some(parsed);
        }
    }
    None
}

/// A local date, minute or second: the last instant it names.
fn local(t: &str, zone: &Zone) -> Option<DateTime<Utc>> {
    if let Ok(day) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let start = day.and_hms_opt(0, 0, 0)?;
        return last_of(start, TimeDelta::days(1), zone);
    }
    let t = t.replacen('T', " ", 1);
    for (format, unit) in [
        ("%Y-%m-%d %H:%M:%S%.f", TimeDelta::seconds(1)),
        ("%Y-%m-%d %H:%M", TimeDelta::minutes(1)),
    ] {
        if let Ok(start) = NaiveDateTime::parse_from_str(&t, format) {
            // A fraction names a moment within its second: the second.
            let start = start.with_nanosecond_zero();
            return last_of(start, unit, zone);
        }
    }
    None
}

trait ZeroNanos {
    fn with_nanosecond_zero(self) -> Self;
}

impl ZeroNanos for NaiveDateTime {
    fn with_nanosecond_zero(self) -> NaiveDateTime {
        use chrono::Timelike;
        self.with_nanosecond(0).unwrap_or(self)
    }
}

/// The last second of the wall-clock span `[start, start + unit)`: one
/// second before the first instant the clock reads `start + unit`.
fn last_of(start: NaiveDateTime, unit: TimeDelta, zone: &Zone) -> Option<DateTime<Utc>> {
    let next = start.checked_add_signed(unit)?;
    let first = match zone.place(&next)? {
        Placed::Unique(t) => t,
        Placed::Fold { earlier, .. } => earlier,
        Placed::Gap { end } => end,
    };
    first.checked_sub_signed(TimeDelta::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn at(text: &str, zone: &Zone) -> Result<Point, BadAt> {
        parse_point(text, zone, utc("2026-03-31T12:00:00Z"))
    }

    fn time(text: &str, zone: &Zone) -> String {
        match at(text, zone).unwrap() {
            Point::At(At::Time(t)) => t.to_rfc3339(),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn every_form_reads() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        assert_eq!(at("latest", &berlin).unwrap(), Point::Latest);
        assert_eq!(
            at("backup_20260304_050607_2", &berlin).unwrap(),
            Point::At(At::Increment("backup_20260304_050607_2".into()))
        );
        assert_eq!(at("-1", &berlin).unwrap(), Point::At(At::Back(1)));
        assert_eq!(at("-0", &berlin).unwrap(), Point::At(At::Back(0)));
        assert_eq!(
            time("2026-03-04T05:06:07Z", &berlin),
            "2026-03-04T05:06:07+00:00"
        );
        // What `list` prints, offset and all.
        assert_eq!(
            time("2026-03-04 06:06:07 +01:00", &berlin),
            "2026-03-04T05:06:07+00:00"
        );
        // Local: the last second of the second, minute or day named.
        assert_eq!(
            time("2026-03-04 06:06:07", &berlin),
            "2026-03-04T05:06:07+00:00"
        );
        assert_eq!(
            time("2026-03-04T06:06", &berlin),
            "2026-03-04T05:06:59+00:00"
        );
        assert_eq!(time("2026-03-04", &berlin), "2026-03-04T22:59:59+00:00");
        // Ago, with keep_within's units and calendar.
        assert_eq!(time("2d", &berlin), "2026-03-29T12:00:00+00:00");
        assert_eq!(time("36h", &berlin), "2026-03-30T00:00:00+00:00");
        // Go's AddDate, as keep_within: March 31 less a month is "February
        // 31", which is March 3.
        assert_eq!(time("1m", &berlin), "2026-03-03T13:00:00+00:00");
    }

    #[test]
    fn daylight_saving_edges() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        // 2026-03-29 02:30 never happens: the moment before the jump.
        assert_eq!(
            time("2026-03-29 02:30:00", &berlin),
            "2026-03-29T00:59:59+00:00"
        );
        // 2026-10-25 02:30 happens twice: the first one, as cron reads it.
        assert_eq!(
            time("2026-10-25 02:30:00", &berlin),
            "2026-10-25T00:30:00+00:00"
        );
        // A 25-hour day ends at its own midnight.
        assert_eq!(time("2026-10-25", &berlin), "2026-10-25T22:59:59+00:00");
    }

    #[test]
    fn the_error_lists_the_forms() {
        let e = at("yesterday", &Zone::utc()).unwrap_err().to_string();
        for form in [
            "backup_",
            "2026-03-04 05:06",
            "RFC 3339",
            "-1",
            "2d",
            "latest",
        ] {
            assert!(e.contains(form), "{form}: {e}");
        }
        for bad in ["", "-", "-x", "2x", "2026-13-01", "d2", "--1"] {
            assert!(at(bad, &Zone::utc()).is_err(), "{bad}");
        }
    }
}
