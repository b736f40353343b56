//! Schedules on the machine's own zone (SPEC §1.1): `strata list` run with
//! `TZ` set and the clock fixed by faketime, so the zone comes from where
//! the daemon and `list` read it (the `TZ` variable, as a name, `:name` or a
//! path), not from a zone the test names in code. And `strata validate` on
//! schedules cron accepts or rejects.
//!
//! The expected instants are cron(8)'s (cronie's DST rule, SPEC §1.1):
//! a job whose minute or hour field starts with `*` follows the wall clock
//! (nothing in a gap, both passes of a repeated hour); any other job fires
//! a missing time once when the gap ends and a repeated time once, at its
//! first occurrence.
//!
//! The clock: libfaketime preloaded with `FAKETIME=EPOCH` and
//! `FAKETIME_FMT=%s` freezes the clock at that instant whatever the zone (a
//! wall-clock time would be ambiguous in a repeated hour). Tests skip, saying why, when faketime is missing
//! (`scripts/test-deps.sh` installs it).

mod common;

use std::process::Command;

use chrono::DateTime;
use common::Env;

/// libfaketime, if installed (preloaded into strata itself, not through
/// the `faketime` wrapper, which keeps a semaphore per PID in /dev/shm: one
/// a killed wrapper left makes a later wrapper with the same PID fail with
/// "sem_open: File exists").
fn faketime() -> Option<std::path::PathBuf> {
    common::libfaketime()
}

/// Unix seconds of an RFC 3339 time.
fn epoch(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("bad test time {rfc3339}: {e}"))
        .timestamp()
}

/// `strata ARGS` with `TZ=tz` and the clock frozen at `now`.
fn strata_at(env: &Env, tz: &str, now: &str, args: &[&str]) -> (i32, String, String) {
    let bin = env!("CARGO_BIN_EXE_strata");
    let out = Command::new(bin)
        .current_dir(env.root())
        .env("TZ", tz)
        .env("LD_PRELOAD", faketime().expect("checked by the caller"))
        // An absolute time without `@`: the clock stands still there.
        .env("FAKETIME", epoch(now).to_string())
        .env("FAKETIME_FMT", "%s")
        .env_remove("STRATA_JOBS_DIR")
        .env_remove("RUST_LOG")
        .arg("--jobs-dir")
        .arg(env.jobs())
        .args(args)
        .output()
        .expect("run strata under libfaketime");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--json list` at `now` under `tz`: each job's `next_run`.
fn next_runs(env: &Env, tz: &str, now: &str) -> Vec<(String, Option<String>)> {
    let (code, out, err) = strata_at(env, tz, now, &["--json", "list"]);
    assert_eq!(code, 0, "list failed: {err}");
    let value: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{err}"));
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap().to_string(),
                j["next_run"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// An env with one job of schedule `expr`.
fn one_job(expr: &str) -> Env {
    let env = Env::new();
    std::fs::create_dir_all(env.path("src-job")).unwrap();
    env.simple_job(
        "job",
        &format!(r#""track_dirs": ["."], "schedule": "{expr}""#),
    );
    env
}

/// The fire times `list` reports for `expr` under `tz`, one after another:
/// the next run at `now`, then the next run at that instant, and so on.
fn chain(tz: &str, expr: &str, now: &str, n: usize) -> Vec<String> {
    let env = one_job(expr);
    let mut out = Vec::new();
    let mut at = now.to_string();
    for _ in 0..n {
        let runs = next_runs(&env, tz, &at);
        let next = runs[0]
            .1
            .clone()
            .unwrap_or_else(|| panic!("{expr}: no next run at {at}"));
        out.push(next.clone());
        at = next;
    }
    out
}

/// Each case: zone, schedule, now, the next fire times cron gives.
fn check(cases: &[(&str, &str, &str, &[&str])]) {
    let mut failures = Vec::new();
    for (tz, expr, now, want) in cases {
        let got = chain(tz, expr, now, want.len());
        if got != *want {
            failures.push(format!(
                "TZ={tz} {expr:?} from {now}:\n  got  {got:?}\n  want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn berlin_fixed_time_jobs() {
    if faketime().is_none() {
        return;
    }
    // 2026-03-29 01:00Z: 02:00 CET -> 03:00 CEST. 2026-10-25 01:00Z: 03:00
    // CEST -> 02:00 CET, 02:00-02:59 twice.
    check(&[
        // A repeated time: once, in the first pass (issue 16, 1).
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2026-10-24T12:00:00+02:00",
            &["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        ),
        // Lists, ranges with steps and full hour ranges are fixed-time jobs
        // (issue 16, 5): the second pass does not fire them.
        (
            "Europe/Berlin",
            "0,30 2 * * *",
            "2026-10-24T12:00:00+02:00",
            &[
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:00:00+01:00",
            ],
        ),
        (
            "Europe/Berlin",
            "0-59/30 2 * * *",
            "2026-10-24T12:00:00+02:00",
            &[
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:00:00+01:00",
            ],
        ),
        (
            "Europe/Berlin",
            "0 0-23 * * *",
            "2026-10-25T01:30:00+02:00",
            &["2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00"],
        ),
        // A missing time fires once when the gap ends, printed with the new
        // offset (issue 16, 4).
        (
            "Europe/Berlin",
            "0 2 * * *",
            "2026-03-28T12:00:00+01:00",
            &["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"],
        ),
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2026-03-28T12:00:00+01:00",
            &["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        ),
        // 02:00 is missing and 03:00 is real: they are one instant, one run.
        (
            "Europe/Berlin",
            "0 0-23 * * *",
            "2026-03-29T01:30:00+01:00",
            &["2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"],
        ),
        (
            "Europe/Berlin",
            "@daily",
            "2026-10-24T12:00:00+02:00",
            &["2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"],
        ),
    ]);
}

#[test]
fn berlin_wildcard_jobs() {
    if faketime().is_none() {
        return;
    }
    check(&[
        // Both passes of the repeated hour fire (issue 16, 2).
        (
            "Europe/Berlin",
            "*/7 * * * *",
            "2026-10-25T02:59:30+02:00",
            &["2026-10-25T02:00:00+01:00", "2026-10-25T02:07:00+01:00"],
        ),
        (
            "Europe/Berlin",
            "@hourly",
            "2026-10-25T02:59:30+02:00",
            &["2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"],
        ),
        (
            "Europe/Berlin",
            "30 * * * *",
            "2026-10-25T02:59:30+02:00",
            &["2026-10-25T02:30:00+01:00", "2026-10-25T03:30:00+01:00"],
        ),
        // `*/2` in the hour field makes it a wildcard job (issue 16, 5).
        (
            "Europe/Berlin",
            "30 */2 * * *",
            "2026-10-25T01:00:00+02:00",
            &[
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T04:30:00+01:00",
            ],
        ),
        // Nothing fires in a gap (issue 16, 3).
        (
            "Europe/Berlin",
            "* 2 * * *",
            "2026-03-28T12:00:00+01:00",
            &["2026-03-30T02:00:00+02:00", "2026-03-30T02:01:00+02:00"],
        ),
        (
            "Europe/Berlin",
            "*/15 2 * * *",
            "2026-03-28T12:00:00+01:00",
            &["2026-03-30T02:00:00+02:00"],
        ),
        (
            "Europe/Berlin",
            "30 */2 * * *",
            "2026-03-29T00:00:00+01:00",
            &["2026-03-29T00:30:00+01:00", "2026-03-29T04:30:00+02:00"],
        ),
        (
            "Europe/Berlin",
            "@hourly",
            "2026-03-29T01:30:00+01:00",
            &["2026-03-29T03:00:00+02:00"],
        ),
    ]);
}

#[test]
fn new_york() {
    if faketime().is_none() {
        return;
    }
    // 2026-03-08 07:00Z: 02:00 EST -> 03:00 EDT. 2026-11-01 06:00Z: 02:00
    // EDT -> 01:00 EST, 01:00-01:59 twice.
    check(&[
        (
            "America/New_York",
            "30 1 * * *",
            "2026-10-31T12:00:00-04:00",
            &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        ),
        (
            "America/New_York",
            "*/5 * * * *",
            "2026-11-01T01:10:00-04:00",
            &["2026-11-01T01:15:00-04:00", "2026-11-01T01:20:00-04:00"],
        ),
        (
            "America/New_York",
            "*/5 * * * *",
            "2026-11-01T01:55:00-04:00",
            &["2026-11-01T01:00:00-05:00", "2026-11-01T01:05:00-05:00"],
        ),
        (
            "America/New_York",
            "30 2 * * *",
            "2026-03-07T12:00:00-05:00",
            &["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
        (
            "America/New_York",
            "*/5 * * * *",
            "2026-03-08T01:55:00-05:00",
            &["2026-03-08T03:00:00-04:00"],
        ),
    ]);
}

#[test]
fn lord_howe_moves_its_clocks_by_half_an_hour() {
    if faketime().is_none() {
        return;
    }
    // 2026-04-04 15:00Z: 02:00 +11 -> 01:30 +10:30, 01:30-01:59 twice.
    // 2026-10-03 15:30Z: 02:00 +10:30 -> 02:30 +11.
    check(&[
        (
            "Australia/Lord_Howe",
            "15 2 * * *",
            "2026-10-03T12:00:00+10:30",
            &["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
        ),
        (
            "Australia/Lord_Howe",
            "*/10 * * * *",
            "2026-10-04T01:55:00+10:30",
            &["2026-10-04T02:30:00+11:00", "2026-10-04T02:40:00+11:00"],
        ),
        (
            "Australia/Lord_Howe",
            "* 2 * * *",
            "2026-10-04T01:59:00+10:30",
            &["2026-10-04T02:30:00+11:00"],
        ),
        (
            "Australia/Lord_Howe",
            "45 1 * * *",
            "2026-04-04T12:00:00+11:00",
            &["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
        ),
        (
            "Australia/Lord_Howe",
            "*/10 * * * *",
            "2026-04-05T01:55:00+11:00",
            &["2026-04-05T01:30:00+10:30", "2026-04-05T01:40:00+10:30"],
        ),
        (
            "Australia/Lord_Howe",
            "@hourly",
            "2026-04-05T01:30:00+11:00",
            &["2026-04-05T02:00:00+10:30"],
        ),
    ]);
}

#[test]
fn tz_as_a_colon_name_or_a_path() {
    if faketime().is_none() {
        return;
    }
    let mut zones = vec![":Europe/Berlin".to_string()];
    let path = "/usr/share/zoneinfo/Europe/Berlin";
    if std::path::Path::new(path).exists() {
        zones.push(path.to_string());
        zones.push(format!(":{path}"));
    } else {
        eprintln!("skipping the path form: {path} does not exist");
    }
    for tz in &zones {
        assert_eq!(
            chain(tz, "30 2 * * *", "2026-10-24T12:00:00+02:00", 2),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
            "TZ={tz}"
        );
    }
}

#[test]
fn the_table_shows_local_time_with_its_offset() {
    if faketime().is_none() {
        return;
    }
    let env = one_job("30 2 * * *");
    let (code, out, err) = strata_at(
        &env,
        "Europe/Berlin",
        "2026-10-24T12:00:00+02:00",
        &["list"],
    );
    assert_eq!(code, 0, "{err}");
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(row.contains("2026-10-25 02:30:00 +02:00"), "{out}");
}

#[test]
fn wrapping_ranges_run_across_the_end_of_the_field() {
    if faketime().is_none() {
        return;
    }
    check(&[
        // 2026-03-06 is a Friday.
        (
            "UTC",
            "0 10 * * SAT-SUN",
            "2026-03-06T12:00:00Z",
            &[
                "2026-03-07T10:00:00+00:00",
                "2026-03-08T10:00:00+00:00",
                "2026-03-14T10:00:00+00:00",
            ],
        ),
        (
            "UTC",
            "0 10 * * FRI-MON",
            "2026-03-05T12:00:00Z",
            &[
                "2026-03-06T10:00:00+00:00",
                "2026-03-07T10:00:00+00:00",
                "2026-03-08T10:00:00+00:00",
                "2026-03-09T10:00:00+00:00",
                "2026-03-13T10:00:00+00:00",
            ],
        ),
        (
            "UTC",
            "0 22-2 * * *",
            "2026-03-06T12:00:00Z",
            &[
                "2026-03-06T22:00:00+00:00",
                "2026-03-06T23:00:00+00:00",
                "2026-03-07T00:00:00+00:00",
                "2026-03-07T01:00:00+00:00",
                "2026-03-07T02:00:00+00:00",
                "2026-03-07T22:00:00+00:00",
            ],
        ),
    ]);
}

// ---------------------------------------------------------------- validate

/// `strata validate` of one job with schedule `expr`: exit code and the
/// lines it prints, with the jobs dir stripped.
fn validate(expr: &str) -> (i32, Vec<String>) {
    let env = one_job(expr);
    let (code, out, _) = env.run(&["validate"]);
    let prefix = format!("{}/", env.jobs().display());
    let lines = out
        .lines()
        .map(|l| l.strip_prefix(&prefix).unwrap_or(l).to_string())
        .collect();
    (code, lines)
}

#[test]
fn validate_names_every_bad_field() {
    let (code, lines) = validate("61 2 * * 8");
    assert_eq!(code, 1);
    let text = lines.join("\n");
    assert!(text.contains("minute: 61 is out of range 0-59"), "{text}");
    assert!(text.contains("dow: 8 is out of range 0-7"), "{text}");
}

#[test]
fn validate_rejects_a_step_without_a_range() {
    let (code, lines) = validate("10/20 * * * *");
    assert_eq!(code, 1, "{lines:?}");
    let text = lines.join("\n");
    assert!(text.contains("error: schedule: minute:"), "{text}");
    assert!(text.contains("10/20"), "{text}");
}

#[test]
fn validate_accepts_wrapping_ranges() {
    for expr in [
        "0 10 * * SAT-SUN",
        "0 10 * * FRI-MON",
        "0 22-2 * * *",
        "0 0 28-3 * *",
    ] {
        assert_eq!(validate(expr), (0, vec![]), "{expr}");
    }
}

#[test]
fn validate_warns_on_a_schedule_that_never_fires() {
    let (code, lines) = validate("0 2 31 2 *");
    assert_eq!(code, 0, "a warning is not an error: {lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("warning: schedule:"), "{lines:?}");
    assert!(lines[0].contains("never"), "{lines:?}");
    // A leap day is rare, not impossible.
    assert_eq!(validate("0 2 29 2 *"), (0, vec![]));
}
