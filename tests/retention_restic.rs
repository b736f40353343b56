//! `strata prune --dry-run --json` keeps exactly what restic's own
//! `forget --dry-run --json` keeps (SPEC §5 prune), for the same snapshot
//! times and policy, in UTC and in Europe/Berlin across both DST changes.
//!
//! restic is the oracle, not a model: each set of times becomes real
//! snapshots in a real repository (`restic backup --time`), one host per
//! set, and one `restic forget` per policy applies it to every set (restic
//! groups by host, each group counting back from its own newest snapshot).
//! The same times become the increments of one strata destination per set.
//! Both run with the same `TZ`.
//!
//! `restic backup --time` reads the time in the local zone, which for a
//! wall-clock time that occurs twice picks one of the two. So each snapshot
//! is made with `TZ` set to the fixed zone of its offset (`Etc/GMT-2` is
//! +02:00): restic stores the exact instant with that offset, and reading
//! it back under `TZ=Europe/Berlin` it is a Berlin time again, because the
//! offset is Berlin's at that instant.
//!
//! Skips, saying why, when restic is not installed (`scripts/test-deps.sh`
//! installs it). restic derives a key on every command, so this takes
//! about a minute.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, NaiveDateTime, Utc};
use common::Env;
use strata::tz::{Placed, Zone};

/// The snapshot times of each set: wall-clock times in the zone under test
/// (their first occurrence), or RFC 3339 instants where a wall-clock time
/// would be ambiguous.
const SETS: &[(&str, &[&str])] = &[
    // Month ends and leap days: Go's AddDate rolls "April 31st" into May.
    (
        "month-ends",
        &[
            "2024-02-29 12:00",
            "2024-03-02 09:00",
            "2024-03-02 11:00",
            "2024-11-30 12:00",
            "2024-12-01 09:00",
            "2024-12-01 11:00",
            "2025-04-30 12:00",
            "2025-05-01 09:00",
            "2025-05-01 10:00",
            "2025-05-01 11:00",
            "2025-05-17 11:00",
            "2025-05-30 11:00",
            "2025-05-31 10:00",
        ],
    ),
    // Berlin springs forward on 2025-03-30 at 01:00Z. A day back from the
    // newest is 02:30 on the 30th, which does not exist there.
    (
        "spring",
        &[
            "2025-03-29 02:30",
            "2025-03-29 12:00",
            "2025-03-29 20:00",
            "2025-03-29 21:30",
            "2025-03-30 01:30",
            "2025-03-30 03:15",
            "2025-03-30 03:45",
            "2025-03-30 06:00",
            "2025-03-30 20:00",
            "2025-03-31 02:30",
        ],
    ),
    // Hours back across the spring change: real time, not wall clock.
    (
        "spring-hours",
        &[
            "2025-03-29 20:59",
            "2025-03-29 21:30",
            "2025-03-29 22:30",
            "2025-03-30 01:30",
            "2025-03-30 03:30",
            "2025-03-30 05:00",
            "2025-03-30 06:00",
        ],
    ),
    // Berlin falls back on 2025-10-26 at 01:00Z; 02:00-02:59 twice. A day
    // back from the newest is 02:30 on the 26th, which occurs twice.
    (
        "autumn",
        &[
            "2025-10-25 12:00",
            "2025-10-26T00:15:00Z",
            "2025-10-26T00:45:00Z",
            "2025-10-26T01:15:00Z",
            "2025-10-26T01:29:00Z",
            "2025-10-26T01:31:00Z",
            "2025-10-26 05:00",
            "2025-10-27 01:00",
            "2025-10-27 02:30",
        ],
    ),
    (
        "autumn-hours",
        &[
            "2025-10-25 22:30",
            "2025-10-25 23:01",
            "2025-10-26T00:30:00Z",
            "2025-10-26T01:30:00Z",
            "2025-10-26 05:00",
            "2025-10-26 06:00",
        ],
    ),
];

/// Each policy: strata's retention block, and restic's flags for it.
const POLICIES: &[(&str, &[&str])] = &[
    (r#"{"keep_within": "1d"}"#, &["--keep-within", "1d"]),
    (r#"{"keep_within": "2d"}"#, &["--keep-within", "2d"]),
    (r#"{"keep_within": "30h"}"#, &["--keep-within", "30h"]),
    (r#"{"keep_within": "8h"}"#, &["--keep-within", "8h"]),
    (r#"{"keep_within": "3h"}"#, &["--keep-within", "3h"]),
    (r#"{"keep_within": "1m"}"#, &["--keep-within", "1m"]),
    (r#"{"keep_within": "6m"}"#, &["--keep-within", "6m"]),
    (r#"{"keep_within": "1y"}"#, &["--keep-within", "1y"]),
    (r#"{"keep_within": "1y3m"}"#, &["--keep-within", "1y3m"]),
    (r#"{"keep_within": "1d12h"}"#, &["--keep-within", "1d12h"]),
    // restic has no `w`: strata's 2w is restic's 14d.
    (r#"{"keep_within": "2w"}"#, &["--keep-within", "14d"]),
    // Zero is no policy: restic keeps everything (and prints no JSON).
    (r#"{"keep_within": "0d"}"#, &["--keep-within", "0d"]),
    (
        r#"{"keep_last": 2, "keep_within": "1d"}"#,
        &["--keep-last", "2", "--keep-within", "1d"],
    ),
    (r#"{"keep_daily": 3}"#, &["--keep-daily", "3"]),
    (r#"{"keep_hourly": 5}"#, &["--keep-hourly", "5"]),
    (
        r#"{"keep_weekly": 2, "keep_monthly": 2, "keep_yearly": 1}"#,
        &[
            "--keep-weekly",
            "2",
            "--keep-monthly",
            "2",
            "--keep-yearly",
            "1",
        ],
    ),
    (
        r#"{"keep_daily": 2, "keep_within": "8h"}"#,
        &["--keep-daily", "2", "--keep-within", "8h"],
    ),
];

fn restic_installed() -> bool {
    let found = Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping: restic is not installed (scripts/test-deps.sh installs it)");
    }
    found
}

/// `restic ARGS` on `repo` with `TZ=tz`; stdout.
fn restic(env: &Env, tz: &str, args: &[&str]) -> String {
    let out = Command::new("restic")
        .env("RESTIC_PASSWORD", "strata-test")
        .env("RESTIC_REPOSITORY", env.path("repo"))
        .env("RESTIC_CACHE_DIR", env.path("restic-cache"))
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .env("TZ", tz)
        .args(args)
        .output()
        .expect("run restic");
    assert!(
        out.status.success(),
        "restic {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The instant of a set entry in `zone`.
fn instant(zone: &Zone, text: &str) -> DateTime<Utc> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return t.with_timezone(&Utc);
    }
    let wall = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
    match zone.place(&wall) {
        Some(Placed::Unique(t)) => t,
        Some(Placed::Fold { earlier, .. }) => earlier,
        other => panic!("{text} in {zone}: {other:?}"),
    }
}

/// A fixed zone of `seconds` east of UTC, in whole hours (`Etc/GMT-2` is
/// +02:00: the sign is POSIX's).
fn fixed_zone(seconds: i64) -> String {
    assert_eq!(seconds % 3600, 0, "whole hours");
    match seconds / 3600 {
        0 => "UTC".to_string(),
        h if h > 0 => format!("Etc/GMT-{h}"),
        h => format!("Etc/GMT+{}", -h),
    }
}

/// A strata destination holding one increment (no files) per instant.
fn fabricate(dest: &Path, job: &str, times: &[DateTime<Utc>]) {
    fs::create_dir_all(dest.join(".strata")).unwrap();
    for t in times {
        let name = t.format("backup_%Y%m%d_%H%M%S").to_string();
        let dir = dest.join(&name);
        fs::create_dir_all(&dir).unwrap();
        let meta = serde_json::json!({
            "job": job,
            "increment": name,
            "start": t.to_rfc3339(),
            "finish": t.to_rfc3339(),
            "files": [],
            "stats": {},
        });
        fs::write(dir.join(format!("{name}.json")), meta.to_string()).unwrap();
    }
}

/// The instants restic keeps, per host, for `policy`.
fn restic_keeps(env: &Env, tz: &str, policy: &[&str]) -> Vec<(String, BTreeSet<DateTime<Utc>>)> {
    let mut args = vec!["forget", "--dry-run", "--json"];
    args.extend_from_slice(policy);
    let out = restic(env, tz, &args);
    if out.trim().is_empty() {
        // An empty policy: restic prints nothing and removes nothing.
        return Vec::new();
    }
    let groups: serde_json::Value = serde_json::from_str(&out).expect("forget JSON");
    groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let times = g["keep"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    DateTime::parse_from_rfc3339(s["time"].as_str().unwrap())
                        .unwrap()
                        .with_timezone(&Utc)
                })
                .collect();
            (g["host"].as_str().unwrap().to_string(), times)
        })
        .collect()
}

/// The instants strata keeps in job `set` for `retention`.
fn strata_keeps(env: &Env, tz: &str, set: &str, retention: &str) -> BTreeSet<DateTime<Utc>> {
    env.job(
        set,
        &format!(
            r#"{{"source": "../src", "destination": "../dest-{set}", "track_dirs": ["."], "retention": {retention}}}"#
        ),
    );
    let out = env
        .strata()
        .env("TZ", tz)
        .args(["--json", "prune", set, "--dry-run"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "strata prune {set}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            DateTime::parse_from_rfc3339(k["time"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc)
        })
        .collect()
}

fn strata_keeps_what_restic_keeps(tz: &str) {
    if !restic_installed() {
        return;
    }
    let env = Env::new();
    let zone = Zone::named(tz).unwrap();
    fs::create_dir_all(env.path("src")).unwrap();
    fs::create_dir_all(env.path("data")).unwrap();
    fs::write(env.path("data/file"), "data").unwrap();
    restic(&env, tz, &["init", "--quiet"]);

    let mut all: Vec<(&str, Vec<DateTime<Utc>>)> = Vec::new();
    for (set, texts) in SETS {
        let times: Vec<DateTime<Utc>> = texts.iter().map(|t| instant(&zone, t)).collect();
        for t in &times {
            let offset = zone.offset_seconds(t);
            let wall = zone.at(t).format("%Y-%m-%d %H:%M:%S").to_string();
            let data = env.path("data");
            let data = data.to_str().unwrap();
            let fixed = fixed_zone(offset);
            restic(
                &env,
                &fixed,
                &["backup", "--quiet", "--host", set, "--time", &wall, data],
            );
        }
        fabricate(&env.path(&format!("dest-{set}")), set, &times);
        all.push((set, times));
    }

    let mut failures = Vec::new();
    for (retention, flags) in POLICIES {
        let by_host = restic_keeps(&env, tz, flags);
        for (set, times) in &all {
            let want: BTreeSet<DateTime<Utc>> = if by_host.is_empty() {
                times.iter().copied().collect()
            } else {
                by_host
                    .iter()
                    .find(|(host, _)| host == set)
                    .map(|(_, kept)| kept.clone())
                    .unwrap_or_else(|| panic!("restic has no group for {set}"))
            };
            let got = strata_keeps(&env, tz, set, retention);
            if got != want {
                let show = |s: &BTreeSet<DateTime<Utc>>| -> Vec<String> {
                    s.iter().map(|t| zone.at(t).to_rfc3339()).collect()
                };
                failures.push(format!(
                    "TZ={tz} {set} {retention}:\n  strata {:?}\n  restic {:?}",
                    show(&got),
                    show(&want)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn in_utc() {
    strata_keeps_what_restic_keeps("UTC");
}

#[test]
fn in_berlin_across_dst() {
    strata_keeps_what_restic_keeps("Europe/Berlin");
}
