//! The retention policy: increment times + a [`Retention`] -> which
//! increments to keep, and which rule kept each. Pure: the times come in
//! already converted to local time, so tests pick their time zone.
//!
//! The rules mean what restic and borg make them mean. Walking the
//! increments newest first:
//! - `keep_last N` keeps the N newest;
//! - `keep_hourly/daily/weekly/monthly/yearly N` keeps the newest increment
//!   of each of the last N hours (days, ISO weeks, months, years) that have
//!   one: an increment is kept when its bucket differs from the bucket of the
//!   last increment this rule kept, until the rule has kept N;
//! - `keep_within D` keeps every increment strictly younger than D, counted
//!   back from the newest increment (not from now), in calendar terms for
//!   days, weeks, months and years.
//!
//! The newest increment is always kept.

use std::fmt;

use chrono::{Datelike, Days, Duration, Months, NaiveDateTime, TimeZone, Timelike, Utc};
use serde::{Serialize, Serializer};

use crate::job::Retention;

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
#[error("retention.keep_within {0:?}: expected a number and a unit h, d, w, m or y (30d)")]
pub struct BadDuration(pub String);

/// Whether the policy has any rule that keeps something. A policy without
/// one keeps everything (prune refuses to read it as "keep only the newest").
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
        || policy.keep_within.is_some()
}

/// UTC times as local wall-clock times in `tz`.
pub fn local_times<Tz: TimeZone>(times: &[chrono::DateTime<Utc>], tz: &Tz) -> Vec<NaiveDateTime> {
    times
        .iter()
        .map(|t| t.with_timezone(tz).naive_local())
        .collect()
}

/// A `keep_within` duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Within {
    Hours(u32),
    Days(u32),
    Months(u32),
}

fn parse_within(text: &str) -> Result<Within, BadDuration> {
    let bad = || BadDuration(text.to_string());
    let unit = text.chars().last().ok_or_else(bad)?;
    let n: u32 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let scaled = |k: u32| n.checked_mul(k).ok_or_else(bad);
    Ok(match unit {
        'h' => Within::Hours(n),
        'd' => Within::Days(n),
        'w' => Within::Days(scaled(7)?),
        'm' => Within::Months(n),
        'y' => Within::Months(scaled(12)?),
        _ => return Err(bad()),
    })
}

fn cutoff(newest: NaiveDateTime, within: Within) -> Option<NaiveDateTime> {
    match within {
        Within::Hours(n) => newest.checked_sub_signed(Duration::hours(n.into())),
        Within::Days(n) => newest.checked_sub_days(Days::new(n.into())),
        Within::Months(n) => newest.checked_sub_months(Months::new(n)),
    }
}

/// A calendar rule: how many buckets it keeps, the bucket of a time, and
/// the reason it gives.
struct BucketRule {
    count: Option<u32>,
    bucket: fn(&NaiveDateTime) -> String,
    reason: fn(String) -> Reason,
}

/// Decide, for increments at local times `times` (oldest first, as the
/// history orders them), which to keep and why. An empty reason list means
/// the increment is removed.
pub fn select(
    policy: &Retention,
    times: &[NaiveDateTime],
) -> Result<Vec<Vec<Reason>>, BadDuration> {
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); times.len()];
    let Some(&newest) = times.last() else {
        return Ok(reasons);
    };
    let within = policy
        .keep_within
        .as_deref()
        .map(|w| parse_within(w).map(|d| (w, cutoff(newest, d))))
        .transpose()?;
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
            let bucket = (rule.bucket)(t);
            if last_bucket[r].as_ref() != Some(&bucket) {
                left[r] -= 1;
                last_bucket[r] = Some(bucket.clone());
                why.push((rule.reason)(bucket));
            }
        }
        if let Some((text, cut)) = &within {
            // A cutoff before the calendar's start keeps everything.
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
    use chrono::NaiveDate;

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    /// Kept times (as text), each with its reasons.
    type Keeps = Vec<(String, Vec<String>)>;

    /// The times kept (as text) with their reasons.
    fn kept(policy: &Retention, times: &[&str]) -> Keeps {
        let times: Vec<NaiveDateTime> = times.iter().map(|s| t(s)).collect();
        select(policy, &times)
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
        // One month back from March 31st is February's last day.
        let within = Retention {
            keep_within: Some("1m".into()),
            ..Default::default()
        };
        assert_eq!(
            kept(
                &within,
                &["2026-02-28 10:00", "2026-02-28 10:01", "2026-03-31 10:00"]
            ),
            [
                k("2026-02-28 10:01", &["keep_within 1m"]),
                k("2026-03-31 10:00", &["newest", "keep_within 1m"]),
            ]
        );
    }

    #[test]
    fn buckets_follow_the_time_zone() {
        // 23:30 UTC on March 3rd is March 4th in Berlin: with keep_daily 1
        // in Berlin both runs share a day, in UTC they do not.
        let utc = [
            NaiveDate::from_ymd_opt(2026, 3, 3)
                .unwrap()
                .and_hms_opt(23, 30, 0)
                .unwrap()
                .and_utc(),
            NaiveDate::from_ymd_opt(2026, 3, 4)
                .unwrap()
                .and_hms_opt(6, 0, 0)
                .unwrap()
                .and_utc(),
        ];
        let policy = Retention {
            keep_daily: Some(2),
            ..Default::default()
        };
        let in_utc = select(&policy, &local_times(&utc, &Utc)).unwrap();
        assert!(in_utc.iter().all(|r| !r.is_empty()));
        let berlin = local_times(&utc, &chrono_tz::Europe::Berlin);
        let in_berlin = select(&policy, &berlin).unwrap();
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
        let r = select(&policy, &[t("2026-03-04 08:00"), t("2026-03-04 08:00")]).unwrap();
        assert!(r[0].is_empty());
        assert_eq!(r[1][0], Reason::Newest);
        assert!(select(&Retention::default(), &[]).unwrap().is_empty());
        let only = select(&Retention::default(), &[t("2026-03-04 08:00")]).unwrap();
        assert_eq!(only, [vec![Reason::Newest]]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_within("12h"), Ok(Within::Hours(12)));
        assert_eq!(parse_within("2w"), Ok(Within::Days(14)));
        assert_eq!(parse_within("1y"), Ok(Within::Months(12)));
        for bad in ["", "d", "3", "3x", "-1d", "1.5d"] {
            assert!(parse_within(bad).is_err(), "{bad}");
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
    }
}
