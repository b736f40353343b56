//! The retention policy: increment times + a [`Retention`] + the zone ->
//! which increments to keep, and which rule kept each. Pure: the zone comes
//! in as a value (the machine's, from the CLI), so tests pick theirs.
//!
//! The rules mean what restic 0.14's `forget` makes them mean
//! (`internal/restic/snapshot_policy.go`), so that for the same times and
//! policy strata keeps exactly the increments restic keeps. Walking the
//! increments newest first:
//! - `keep_last N` keeps the N newest;
//! - `keep_hourly/daily/weekly/monthly/yearly N` keeps the newest increment
//!   of each of the last N hours (days, ISO weeks, months, years) that have
//!   one, read on the zone's wall clock: an increment is kept when its
//!   bucket differs from the bucket of the last increment this rule kept,
//!   until the rule has kept N;
//! - `keep_within D` keeps every increment strictly after a cutoff counted
//!   back from the newest increment (not from now): the years, months and
//!   days (a week is seven days) go back on the wall clock with Go's
//!   `AddDate`, whose overflowing days roll into the next month (2025-05-31
//!   minus one month is "2025-04-31", which is 2025-05-01), and the hours
//!   go back in real time, so `8h` is eight hours across a DST change too.
//!   A duration of zero is no rule, as in restic.
//!
//! The newest increment is always kept.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};

use crate::tz::Zone;

/// A retention policy, with the meaning restic and borg give these keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep the newest N increments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = 10)]
    pub keep_last: Option<u32>,
    /// Keep the newest increment of each of the last N hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = 24)]
    pub keep_hourly: Option<u32>,
    /// Keep the newest increment of each of the last N days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = 7)]
    pub keep_daily: Option<u32>,
    /// Keep the newest increment of each of the last N ISO weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = 4)]
    pub keep_weekly: Option<u32>,
    /// Keep the newest increment of each of the last N months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = 12)]
    pub keep_monthly: Option<u32>,
    /// Keep the newest increment of each of the last N years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = 5)]
    pub keep_yearly: Option<u32>,
    /// Keep every increment younger than this duration, counted back from
    /// the newest increment as restic's `--keep-within` does: numbers with
    /// units `y` years, `m` months, `w` weeks, `d` days (on the calendar),
    /// `h` hours (real time), largest first (`30d`, `2w`, `36h`, `1y6m`).
    /// A duration of zero (`0d`) is no rule, as in restic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+y)?([0-9]+m)?([0-9]+w)?([0-9]+d)?([0-9]+h)?$"),
        length(min = 1),
        example = "30d"
    )]
    pub keep_within: Option<String>,
}

/// Which rule kept an increment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The newest increment is never removed.
    Newest,
    /// Among the `keep_last` newest.
    Last,
    /// The newest of its hour (the bucket, e.g. `2026-03-04 05h`).
    Hourly(String),
    /// The newest of its day (`2026-03-04`).
    Daily(String),
    /// The newest of its ISO week (`2026-W10`).
    Weekly(String),
    /// The newest of its month (`2026-03`).
    Monthly(String),
    /// The newest of its year (`2026`).
    Yearly(String),
    /// Younger than `keep_within` (the duration).
    Within(String),
    /// It holds the only copy of a version the mirror holds (a history
    /// whose order an older strata got wrong under a clock set back).
    HoldsMirror(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Newest => f.write_str("newest"),
            Reason::Last => f.write_str("keep_last"),
            Reason::Hourly(b) => write!(f, "keep_hourly {b}"),
            Reason::Daily(b) => write!(f, "keep_daily {b}"),
            Reason::Weekly(b) => write!(f, "keep_weekly {b}"),
            Reason::Monthly(b) => write!(f, "keep_monthly {b}"),
            Reason::Yearly(b) => write!(f, "keep_yearly {b}"),
            Reason::Within(d) => write!(f, "keep_within {d}"),
            Reason::HoldsMirror(p) => write!(f, "holds the mirror's version of {p}"),
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A `keep_within` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "retention.keep_within {0:?}: expected numbers with units y, m, w, d, h, \
     each at most once and in that order (30d, 2w, 36h, 1y6m)"
)]
pub struct BadDuration(pub String);

/// Whether the policy has any rule that keeps something. A policy without
/// one keeps everything (prune refuses to read it as "keep only the newest");
/// a `keep_within` of zero is no rule, as in restic. A `keep_within` that
/// does not parse counts as a rule, so that [`select`] reports it.
pub fn has_rules(policy: &Retention) -> bool {
    [
        policy.keep_last,
        policy.keep_hourly,
        policy.keep_daily,
        policy.keep_weekly,
        policy.keep_monthly,
        policy.keep_yearly,
    ]
    .iter()
    .any(|n| n.unwrap_or(0) > 0)
        || policy
            .keep_within
            .as_deref()
            .is_some_and(|w| parse_within(w).is_none_or(|d| !d.is_zero()))
}

/// A `keep_within` duration, as restic's `Duration` holds it (plus weeks,
/// which restic does not accept: strata reads `Nw` as `7N` days).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Within {
    years: u32,
    months: u32,
    weeks: u32,
    days: u32,
    hours: u32,
}

impl Within {
    fn is_zero(&self) -> bool {
        *self == Within::default()
    }
}

/// Parses `1y6m`, `30d`, `2w3d`, `36h`: numbers with units `y`, `m`, `w`,
/// `d`, `h`. restic reads the same (without `w`) in any order and lets a
/// repeated unit override the earlier one; strata asks for each unit once,
/// largest first, so that no duration reads two ways.
fn parse_within(text: &str) -> Option<Within> {
    const UNITS: [char; 5] = ['y', 'm', 'w', 'd', 'h'];
    let mut within = Within::default();
    let mut rest = text;
    let mut next_unit = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u32 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        let at = UNITS.iter().position(|&u| u == unit)?;
        if at < next_unit {
            return None;
        }
        next_unit = at + 1;
        match unit {
            'y' => within.years = n,
            'm' => within.months = n,
            'w' => within.weeks = n,
            'd' => within.days = n,
            _ => within.hours = n,
        }
        rest = &rest[digits + unit.len_utf8()..];
    }
    Some(within)
}

/// `now` minus a duration written as `keep_within` writes it (`2d`, `36h`,
/// `1w`, `1m`, `1y6m`), with the same calendar arithmetic in `zone`:
/// what `--at 2d` means. `None` when the text is not such a duration or
/// the time falls before the calendar's start.
pub fn go_back(now: &DateTime<Utc>, text: &str, zone: &Zone) -> Option<DateTime<Utc>> {
    cutoff(now, parse_within(text)?, zone)
}

/// restic's cutoff: `newest.AddDate(-years, -months, -days).Add(-hours)`
/// with Go's `time` semantics in `zone`. `None` when it falls before the
/// calendar's start, which keeps everything.
fn cutoff(newest: &DateTime<Utc>, within: Within, zone: &Zone) -> Option<DateTime<Utc>> {
    let local = zone.local(newest);
    // AddDate: the month moves first (overflowing into the year), then the
    // day is counted from the first of that month, so a day past the
    // month's end rolls over into the next.
    let months = i64::from(local.year()) * 12 + i64::from(local.month0())
        - 12 * i64::from(within.years)
        - i64::from(within.months);
    let year = i32::try_from(months.div_euclid(12)).ok()?;
    let month = u32::try_from(months.rem_euclid(12)).ok()? + 1;
    let days = i64::from(local.day()) - 1 - 7 * i64::from(within.weeks) - i64::from(within.days);
    let date =
        NaiveDate::from_ymd_opt(year, month, 1)?.checked_add_signed(TimeDelta::try_days(days)?)?;
    let wall = date.and_time(local.time()).and_utc();
    // Go's `time.Date` places a wall-clock time with the offset in effect at
    // that time read as UTC, corrected once if that lands in another period.
    // In a gap or a repeated hour this picks what Go picks.
    let guess = zone.offset_seconds(&wall);
    let offset = zone.offset_seconds(&wall.checked_sub_signed(TimeDelta::seconds(guess))?);
    let placed = wall.checked_sub_signed(TimeDelta::seconds(offset))?;
    placed.checked_sub_signed(TimeDelta::hours(within.hours.into()))
}

/// A calendar rule: how many buckets it keeps, the bucket of a time, and
/// the reason it gives.
struct BucketRule {
    count: Option<u32>,
    bucket: fn(&chrono::NaiveDateTime) -> String,
    reason: fn(String) -> Reason,
}

/// Decide, for increments started at `times` (oldest first, as the history
/// orders them), which to keep and why, with calendar buckets on `zone`'s
/// wall clock. An empty reason list means the increment is removed.
pub fn select(
    policy: &Retention,
    times: &[DateTime<Utc>],
    zone: &Zone,
) -> Result<Vec<Vec<Reason>>, BadDuration> {
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); times.len()];
    let within = match policy.keep_within.as_deref() {
        Some(text) => match parse_within(text) {
            Some(d) if d.is_zero() => None,
            Some(d) => Some((text, d)),
            None => return Err(BadDuration(text.to_string())),
        },
        None => None,
    };
    let Some(newest) = times.last() else {
        return Ok(reasons);
    };
    let within = within.map(|(text, d)| (text, cutoff(newest, d, zone)));
    let bucket_rules = [
        BucketRule {
            count: policy.keep_hourly,
            bucket: |t| format!("{} {:02}h", t.date(), t.hour()),
            reason: Reason::Hourly,
        },
        BucketRule {
            count: policy.keep_daily,
            bucket: |t| t.date().to_string(),
            reason: Reason::Daily,
        },
        BucketRule {
            count: policy.keep_weekly,
            bucket: |t| {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            },
            reason: Reason::Weekly,
        },
        BucketRule {
            count: policy.keep_monthly,
            bucket: |t| format!("{}-{:02}", t.year(), t.month()),
            reason: Reason::Monthly,
        },
        BucketRule {
            count: policy.keep_yearly,
            bucket: |t| t.year().to_string(),
            reason: Reason::Yearly,
        },
    ];
    let mut left: Vec<u32> = bucket_rules.iter().map(|r| r.count.unwrap_or(0)).collect();
    let mut last_bucket: Vec<Option<String>> = vec![None; bucket_rules.len()];
    let keep_last = policy.keep_last.unwrap_or(0) as usize;

    for (rank, i) in (0..times.len()).rev().enumerate() {
        let t = &times[i];
        let wall = zone.local(t);
        let why = &mut reasons[i];
        if rank == 0 {
            why.push(Reason::Newest);
        }
        if rank < keep_last {
            why.push(Reason::Last);
        }
        for (r, rule) in bucket_rules.iter().enumerate() {
            if left[r] == 0 {
                continue;
            }
            let bucket = (rule.bucket)(&wall);
            if last_bucket[r].as_ref() != Some(&bucket) {
                left[r] -= 1;
                last_bucket[r] = Some(bucket.clone());
                why.push((rule.reason)(bucket));
            }
        }
        if let Some((text, cut)) = &within {
            // Strictly after the cutoff (Go's `After`); a cutoff before the
            // calendar's start keeps everything.
            if cut.is_none_or(|c| *t > c) {
                why.push(Reason::Within(text.to_string()));
            }
        }
    }
    Ok(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tz::Placed;
    use chrono::NaiveDateTime;

    fn zone(name: &str) -> Zone {
        Zone::named(name).unwrap()
    }

    /// An RFC 3339 time, or a wall-clock time `YYYY-MM-DD HH:MM[:SS]` in
    /// `zone` (its first occurrence if it occurs twice).
    fn at(zone: &Zone, s: &str) -> DateTime<Utc> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return t.with_timezone(&Utc);
        }
        let wall = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
            .unwrap_or_else(|e| panic!("bad test time {s}: {e}"));
        match zone.place(&wall) {
            Some(Placed::Unique(t)) => t,
            Some(Placed::Fold { earlier, .. }) => earlier,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn times(zone: &Zone, texts: &[&str]) -> Vec<DateTime<Utc>> {
        texts.iter().map(|s| at(zone, s)).collect()
    }

    /// Kept times (as text), each with its reasons.
    type Keeps = Vec<(String, Vec<String>)>;

    /// The times kept (as UTC wall-clock text) with their reasons.
    fn kept(policy: &Retention, texts: &[&str]) -> Keeps {
        let utc = Zone::utc();
        let times = times(&utc, texts);
        select(policy, &times, &utc)
            .unwrap()
            .into_iter()
            .zip(&times)
            .filter(|(r, _)| !r.is_empty())
            .map(|(r, t)| {
                (
                    t.format("%Y-%m-%d %H:%M").to_string(),
                    r.iter().map(|x| x.to_string()).collect(),
                )
            })
            .collect()
    }

    /// Which of `texts` (read in `zone`) `keep_within` keeps.
    fn within(zone: &Zone, duration: &str, texts: &[&str]) -> Vec<String> {
        let policy = Retention {
            keep_within: Some(duration.into()),
            ..Default::default()
        };
        let times = times(zone, texts);
        select(&policy, &times, zone)
            .unwrap()
            .into_iter()
            .zip(texts)
            .filter(|(r, _)| r.contains(&Reason::Within(duration.into())))
            .map(|(_, t)| t.to_string())
            .collect()
    }

    fn k(time: &str, reasons: &[&str]) -> (String, Vec<String>) {
        (
            time.to_string(),
            reasons.iter().map(|r| r.to_string()).collect(),
        )
    }

    const DAYS: [&str; 7] = [
        "2026-03-01 09:00",
        "2026-03-01 18:00",
        "2026-03-02 09:00",
        "2026-03-03 09:00",
        "2026-03-03 12:00",
        "2026-03-03 12:30",
        "2026-03-04 08:00",
    ];

    #[test]
    fn table_of_policies() {
        let cases: Vec<(Retention, Keeps)> = vec![
            // keep_last: the N newest.
            (
                Retention {
                    keep_last: Some(2),
                    ..Default::default()
                },
                vec![
                    k("2026-03-03 12:30", &["keep_last"]),
                    k("2026-03-04 08:00", &["newest", "keep_last"]),
                ],
            ),
            // keep_daily: the newest of each of the last N days that have one.
            (
                Retention {
                    keep_daily: Some(3),
                    ..Default::default()
                },
                vec![
                    k("2026-03-02 09:00", &["keep_daily 2026-03-02"]),
                    k("2026-03-03 12:30", &["keep_daily 2026-03-03"]),
                    k("2026-03-04 08:00", &["newest", "keep_daily 2026-03-04"]),
                ],
            ),
            // keep_hourly counts hours that have an increment, not clock hours.
            (
                Retention {
                    keep_hourly: Some(3),
                    ..Default::default()
                },
                vec![
                    k("2026-03-03 09:00", &["keep_hourly 2026-03-03 09h"]),
                    k("2026-03-03 12:30", &["keep_hourly 2026-03-03 12h"]),
                    k(
                        "2026-03-04 08:00",
                        &["newest", "keep_hourly 2026-03-04 08h"],
                    ),
                ],
            ),
            // Rules add up; an increment may be kept by several.
            (
                Retention {
                    keep_last: Some(1),
                    keep_daily: Some(2),
                    keep_monthly: Some(1),
                    ..Default::default()
                },
                vec![
                    k("2026-03-03 12:30", &["keep_daily 2026-03-03"]),
                    k(
                        "2026-03-04 08:00",
                        &[
                            "newest",
                            "keep_last",
                            "keep_daily 2026-03-04",
                            "keep_monthly 2026-03",
                        ],
                    ),
                ],
            ),
            // keep_within counts back from the newest increment, strictly.
            (
                Retention {
                    keep_within: Some("1d".into()),
                    ..Default::default()
                },
                vec![
                    k("2026-03-03 09:00", &["keep_within 1d"]),
                    k("2026-03-03 12:00", &["keep_within 1d"]),
                    k("2026-03-03 12:30", &["keep_within 1d"]),
                    k("2026-03-04 08:00", &["newest", "keep_within 1d"]),
                ],
            ),
            (
                Retention {
                    keep_within: Some("20h".into()),
                    ..Default::default()
                },
                vec![
                    k("2026-03-03 12:30", &["keep_within 20h"]),
                    k("2026-03-04 08:00", &["newest", "keep_within 20h"]),
                ],
            ),
        ];
        for (policy, want) in cases {
            assert_eq!(kept(&policy, &DAYS), want, "{policy:?}");
        }
    }

    #[test]
    fn weeks_are_iso_weeks_and_months_calendar_months() {
        // 2026-01-04 is a Sunday (ISO week 2026-W01); 01-05 a Monday (W02).
        // 2025-12-29 (Monday) belongs to ISO week 2026-W01.
        let times = [
            "2025-12-28 10:00",
            "2025-12-29 10:00",
            "2026-01-04 10:00",
            "2026-01-05 10:00",
        ];
        let weekly = Retention {
            keep_weekly: Some(5),
            ..Default::default()
        };
        assert_eq!(
            kept(&weekly, &times),
            [
                k("2025-12-28 10:00", &["keep_weekly 2025-W52"]),
                k("2026-01-04 10:00", &["keep_weekly 2026-W01"]),
                k("2026-01-05 10:00", &["newest", "keep_weekly 2026-W02"]),
            ]
        );
        let monthly_yearly = Retention {
            keep_monthly: Some(1),
            keep_yearly: Some(2),
            ..Default::default()
        };
        assert_eq!(
            kept(&monthly_yearly, &times),
            [
                k("2025-12-29 10:00", &["keep_yearly 2025"]),
                k(
                    "2026-01-05 10:00",
                    &["newest", "keep_monthly 2026-01", "keep_yearly 2026"]
                ),
            ]
        );
        // One month back from March 31st is "February 31st", which Go's
        // AddDate rolls over to March 3rd.
        let within = Retention {
            keep_within: Some("1m".into()),
            ..Default::default()
        };
        assert_eq!(
            kept(
                &within,
                &[
                    "2026-02-28 10:01",
                    "2026-03-03 10:00",
                    "2026-03-03 10:01",
                    "2026-03-31 10:00"
                ]
            ),
            [
                k("2026-03-03 10:01", &["keep_within 1m"]),
                k("2026-03-31 10:00", &["newest", "keep_within 1m"]),
            ]
        );
    }

    #[test]
    fn buckets_follow_the_time_zone() {
        // 23:30 UTC on March 3rd is March 4th in Berlin: with keep_daily 1
        // in Berlin both runs share a day, in UTC they do not.
        let times = [
            at(&Zone::utc(), "2026-03-03T23:30:00Z"),
            at(&Zone::utc(), "2026-03-04T06:00:00Z"),
        ];
        let policy = Retention {
            keep_daily: Some(2),
            ..Default::default()
        };
        let in_utc = select(&policy, &times, &Zone::utc()).unwrap();
        assert!(in_utc.iter().all(|r| !r.is_empty()));
        let in_berlin = select(&policy, &times, &zone("Europe/Berlin")).unwrap();
        assert!(in_berlin[0].is_empty());
        assert_eq!(in_berlin[1][1], Reason::Daily("2026-03-04".into()));
    }

    #[test]
    fn newest_is_always_kept_and_ties_keep_the_later() {
        let policy = Retention {
            keep_daily: Some(1),
            ..Default::default()
        };
        // Same second (a `_1` suffix): the later in the sequence is newest.
        let utc = Zone::utc();
        let same = at(&utc, "2026-03-04 08:00");
        let r = select(&policy, &[same, same], &utc).unwrap();
        assert!(r[0].is_empty());
        assert_eq!(r[1][0], Reason::Newest);
        assert!(select(&Retention::default(), &[], &utc).unwrap().is_empty());
        let only = select(&Retention::default(), &[same], &utc).unwrap();
        assert_eq!(only, [vec![Reason::Newest]]);
    }

    #[test]
    fn durations() {
        let d = |years, months, weeks, days, hours| Within {
            years,
            months,
            weeks,
            days,
            hours,
        };
        assert_eq!(parse_within("12h"), Some(d(0, 0, 0, 0, 12)));
        assert_eq!(parse_within("2w"), Some(d(0, 0, 2, 0, 0)));
        assert_eq!(parse_within("1y"), Some(d(1, 0, 0, 0, 0)));
        assert_eq!(parse_within("1y6m"), Some(d(1, 6, 0, 0, 0)));
        assert_eq!(parse_within("1y5m2w7d2h"), Some(d(1, 5, 2, 7, 2)));
        assert_eq!(parse_within("0d"), Some(Within::default()));
        for bad in [
            "",
            "d",
            "3",
            "3x",
            "-1d",
            "1.5d",
            "6m1y",
            "1d2d",
            "1d ",
            " 1d",
            "1y6",
            "y1",
            "1D",
            "99999999999d",
            "1\u{0663}d",
        ] {
            assert_eq!(parse_within(bad), None, "{bad:?}");
        }
        assert!(!has_rules(&Retention::default()));
        assert!(!has_rules(&Retention {
            keep_last: Some(0),
            ..Default::default()
        }));
        assert!(has_rules(&Retention {
            keep_within: Some("1d".into()),
            ..Default::default()
        }));
        // A bad duration is a rule, so that select names it.
        let bad = Retention {
            keep_within: Some("6m1y".into()),
            ..Default::default()
        };
        assert!(has_rules(&bad));
        assert_eq!(
            select(&bad, &[], &Zone::utc()),
            Err(BadDuration("6m1y".into()))
        );
    }

    #[test]
    fn a_zero_duration_is_no_rule() {
        // issue 16: "0d" removed all but the newest; restic keeps all.
        for zero in ["0d", "0h", "0y0m", "0w"] {
            let policy = Retention {
                keep_within: Some(zero.into()),
                ..Default::default()
            };
            assert!(!has_rules(&policy), "{zero}");
        }
        // Beside another rule it changes nothing.
        let policy = Retention {
            keep_last: Some(1),
            keep_within: Some("0d".into()),
            ..Default::default()
        };
        assert_eq!(
            kept(&policy, &DAYS),
            [k("2026-03-04 08:00", &["newest", "keep_last"])]
        );
    }

    #[test]
    fn months_and_years_go_back_with_go_adddate() {
        let utc = Zone::utc();
        // issue 16: newest 2025-05-31, 1m. Go: "2025-04-31" = 2025-05-01,
        // strictly after it; chrono's month arithmetic gave 04-30 and kept
        // the first two as well.
        let times = [
            "2025-04-30 12:00",
            "2025-05-01 09:00",
            "2025-05-01 10:00",
            "2025-05-01 10:01",
            "2025-05-31 10:00",
        ];
        assert_eq!(
            within(&utc, "1m", &times),
            ["2025-05-01 10:01", "2025-05-31 10:00"]
        );
        // 6m from August 31st: "February 31st" is March 3rd.
        assert_eq!(
            within(
                &utc,
                "6m",
                &[
                    "2025-02-28 12:00",
                    "2025-03-03 09:59",
                    "2025-03-03 10:01",
                    "2025-08-31 10:00"
                ]
            ),
            ["2025-03-03 10:01", "2025-08-31 10:00"]
        );
        // A year back from a leap day is March 1st.
        assert_eq!(
            within(
                &utc,
                "1y",
                &[
                    "2023-02-28 12:00",
                    "2023-03-01 09:00",
                    "2023-03-01 11:00",
                    "2024-02-29 10:00"
                ]
            ),
            ["2023-03-01 11:00", "2024-02-29 10:00"]
        );
        // Combined units and weeks: 1m2w from 2025-03-20 is 2025-02-06.
        assert_eq!(
            within(
                &utc,
                "1m2w",
                &["2025-02-06 10:00", "2025-02-06 10:01", "2025-03-20 10:00"]
            ),
            ["2025-02-06 10:01", "2025-03-20 10:00"]
        );
    }

    #[test]
    fn days_go_back_on_the_wall_clock_and_hours_in_real_time() {
        let berlin = zone("Europe/Berlin");
        // 2026-03-29 has 23 hours in Berlin. A day back from 12:00 CEST is
        // 12:00 CET, 23 real hours earlier.
        assert_eq!(
            within(
                &berlin,
                "1d",
                &["2026-03-28 11:30", "2026-03-28 12:30", "2026-03-29 12:00"]
            ),
            ["2026-03-28 12:30", "2026-03-29 12:00"]
        );
        // issue 16: 8h back from 06:00 CEST is 21:00 CET the day before
        // (real time), not 22:00 (wall clock).
        assert_eq!(
            within(
                &berlin,
                "8h",
                &["2026-03-28 20:59", "2026-03-28 21:30", "2026-03-29 06:00"]
            ),
            ["2026-03-28 21:30", "2026-03-29 06:00"]
        );
        // And 8h back from 06:00 CET on 2026-10-25 is 23:00 CEST.
        assert_eq!(
            within(
                &berlin,
                "8h",
                &["2026-10-24 22:30", "2026-10-24 23:01", "2026-10-25 06:00"]
            ),
            ["2026-10-24 23:01", "2026-10-25 06:00"]
        );
    }

    #[test]
    fn a_cutoff_in_a_gap_or_a_fold_is_placed_as_go_places_it() {
        let berlin = zone("Europe/Berlin");
        // A day before 2026-03-30 02:30 CEST is 02:30 on the 29th, in the
        // gap: Go reads it with the offset before the jump, 01:30Z (03:30
        // CEST).
        assert_eq!(
            within(
                &berlin,
                "1d",
                &[
                    "2026-03-29T01:29:00Z",
                    "2026-03-29T01:31:00Z",
                    "2026-03-30 02:30"
                ]
            ),
            ["2026-03-29T01:31:00Z", "2026-03-30 02:30"]
        );
        // A day before 2026-10-26 02:30 CET is 02:30 on the 25th, which
        // occurs twice: east of UTC, Go takes the later one (01:30Z).
        assert_eq!(
            within(
                &berlin,
                "1d",
                &[
                    "2026-10-25T00:45:00Z",
                    "2026-10-25T01:29:00Z",
                    "2026-10-25T01:31:00Z",
                    "2026-10-26 02:30"
                ]
            ),
            ["2026-10-25T01:31:00Z", "2026-10-26 02:30"]
        );
        // West of UTC it takes the earlier one: 01:30 EDT, 05:30Z.
        let new_york = zone("America/New_York");
        assert_eq!(
            within(
                &new_york,
                "1d",
                &[
                    "2026-11-01T05:29:00Z",
                    "2026-11-01T05:31:00Z",
                    "2026-11-02 01:30"
                ]
            ),
            ["2026-11-01T05:31:00Z", "2026-11-02 01:30"]
        );
    }

    #[test]
    fn a_cutoff_before_the_calendar_keeps_everything() {
        let utc = Zone::utc();
        let texts = ["1970-01-01 00:00", "2025-05-31 10:00"];
        for huge in [
            "4294967295y",
            "4294967295m",
            "4294967295w",
            "4294967295d",
            "4294967295h",
        ] {
            assert_eq!(within(&utc, huge, &texts), texts, "{huge}");
        }
    }
}
