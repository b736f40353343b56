//! `strata daemon` as a real process on temp trees: runs on schedule, hot
//! reload of added, changed, broken and removed job files, catch-up at
//! start-up, and a clean exit on SIGTERM.
//!
//! Jobs fire every second (`* * * * * *`). Every wait polls for the effect
//! with a generous deadline instead of sleeping a fixed time, and a guard
//! kills the daemon if a test fails.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Env, set_mtime};

const DEADLINE: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(100);
const EVERY_SECOND: &str = r#""schedule": "* * * * * *""#;

/// A running daemon; killed when dropped, so a failing test leaves no
/// process behind.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Start `strata daemon` on the env's jobs dir; its stderr (the log)
    /// goes to a file, so a chatty daemon never blocks on a full pipe.
    fn start(env: &Env) -> Daemon {
        let log = env.path("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .current_dir(env.root())
            .env_remove("STRATA_JOBS_DIR")
            .env_remove("STRATA_FAULT_UNREADABLE")
            .env_remove("RUST_LOG")
            .env("STRATA_STATE_DIR", env.state_dir())
            .arg("--jobs-dir")
            .arg(env.jobs())
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start strata daemon");
        Daemon {
            child: Some(child),
            log,
        }
    }

    /// Start `strata daemon` with `TZ=tz` and the clock starting at
    /// `start` (Unix seconds) by faketime; `None` (with the reason printed)
    /// when faketime is not installed.
    fn start_at(env: &Env, tz: &str, start: i64) -> Option<Daemon> {
        // libfaketime preloaded into strata itself (not the wrapper, which
        // forks): the child killed on drop is the daemon.
        let lib = common::libfaketime()?;
        let log = env.path("daemon.log");
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .current_dir(env.root())
            .env("TZ", tz)
            .env("LD_PRELOAD", lib)
            .env("FAKETIME", format!("@{start}"))
            .env("FAKETIME_FMT", "%s")
            .env_remove("STRATA_JOBS_DIR")
            .env_remove("STRATA_FAULT_UNREADABLE")
            .env_remove("RUST_LOG")
            .arg("--jobs-dir")
            .arg(env.jobs())
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start strata daemon under faketime");
        Some(Daemon {
            child: Some(child),
            log,
        })
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("daemon running")
    }

    fn is_alive(&mut self) -> bool {
        self.child().try_wait().unwrap().is_none()
    }

    fn signal(&mut self, signal: libc::c_int) {
        let pid = self.child().id() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
    }

    /// Wait for the daemon to exit.
    fn exit_status(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the daemon did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(STEP);
        }
    }

    /// Poll until `done` holds; fail with the daemon's log after the deadline.
    fn wait_for(&mut self, what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            if let Some(status) = self.child().try_wait().unwrap() {
                panic!(
                    "the daemon exited ({status}) while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(STEP);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How many runs a destination's run log records.
fn runs(dest: &Path) -> usize {
    fs::read_to_string(dest.join(".strata/runs.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

#[test]
fn runs_a_due_job_and_exits_0_on_sigterm() {
    let env = Env::new();
    env.write("src-a/notes.txt", "first");
    env.simple_job("a", &format!(r#""track_dirs": ["."], {EVERY_SECOND}"#));
    let mut daemon = Daemon::start(&env);
    let mirrored = env.path("dest-a/mirror/notes.txt");
    daemon.wait_for("the first run", || {
        read(&mirrored).as_deref() == Some("first")
    });
    // The summary line follows the commit: wait for it too.
    let log_path = daemon.log.clone();
    daemon.wait_for("the run's summary line", || {
        fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("a: success: 1 new")
    });

    daemon.signal(libc::SIGTERM);
    let status = daemon.exit_status();
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    // Nothing was left half done.
    assert!(!env.path("dest-a/.strata/dirty").exists());
}

#[test]
fn source_changes_reach_the_mirror_on_a_later_tick() {
    let env = Env::new();
    let source = env.write("src-a/notes.txt", "first");
    env.simple_job("a", &format!(r#""track_dirs": ["."], {EVERY_SECOND}"#));
    let mut daemon = Daemon::start(&env);
    let mirrored = env.path("dest-a/mirror/notes.txt");
    daemon.wait_for("the first run", || read(&mirrored).is_some());

    fs::write(&source, "second version").unwrap();
    set_mtime(&source, 1_600_000_100);
    daemon.wait_for("the change in the mirror", || {
        read(&mirrored).as_deref() == Some("second version")
    });
    // The tracked change went into an increment of its own.
    daemon.wait_for("a second increment", || env.increments("dest-a").len() == 2);
}

#[test]
fn picks_up_added_jobs_and_survives_broken_ones() {
    let env = Env::new();
    env.write("src-a/a.txt", "a");
    env.write("src-b/b.txt", "b");
    env.simple_job("a", &format!(r#""include_dirs": ["."], {EVERY_SECOND}"#));
    let mut daemon = Daemon::start(&env);
    let dest_a = env.path("dest-a");
    daemon.wait_for("job a's first run", || runs(&dest_a) >= 1);

    // A broken job file: reported with its position, and the daemon and
    // job a carry on.
    env.job("broken", r#"{"source": "../src-a", "#);
    daemon.wait_for("the diagnostic in the log", || {
        daemon_log_has(&env, "broken.json:1:")
    });
    let before = runs(&dest_a);
    daemon.wait_for("job a to keep running", || runs(&dest_a) >= before + 2);

    // A job file dropped in later runs without a restart.
    env.simple_job("b", &format!(r#""include_dirs": ["."], {EVERY_SECOND}"#));
    let mirrored = env.path("dest-b/mirror/b.txt");
    daemon.wait_for("job b's first run", || read(&mirrored).is_some());
    assert!(daemon.is_alive());
}

fn daemon_log_has(env: &Env, text: &str) -> bool {
    read(&env.path("daemon.log")).is_some_and(|log| log.contains(text))
}

#[test]
fn an_invalid_edit_keeps_the_last_definition_and_a_removed_file_stops_its_job() {
    let env = Env::new();
    env.write("src-a/a.txt", "a");
    env.write("src-b/b.txt", "b");
    env.simple_job("a", &format!(r#""include_dirs": ["."], {EVERY_SECOND}"#));
    let job_b = env.simple_job("b", &format!(r#""include_dirs": ["."], {EVERY_SECOND}"#));
    let mut daemon = Daemon::start(&env);
    let (dest_a, dest_b) = (env.path("dest-a"), env.path("dest-b"));
    daemon.wait_for("both jobs' first runs", || {
        runs(&dest_a) >= 1 && runs(&dest_b) >= 1
    });

    // b's file breaks: b keeps running on its last valid definition.
    fs::write(&job_b, r#"{"source": "../src-b", "destination": 7}"#).unwrap();
    daemon.wait_for("the diagnostic", || {
        daemon_log_has(&env, "keeps its last valid")
    });
    let before = runs(&dest_b);
    daemon.wait_for("job b to keep running", || runs(&dest_b) >= before + 2);

    // b's file goes: b stops (a run already under way may still finish),
    // while a carries on.
    fs::remove_file(&job_b).unwrap();
    daemon.wait_for("the removal", || daemon_log_has(&env, "job b removed"));
    let b_at_removal = runs(&dest_b);
    let a_at_removal = runs(&dest_a);
    daemon.wait_for("job a's next runs", || runs(&dest_a) >= a_at_removal + 2);
    assert!(
        runs(&dest_b) <= b_at_removal + 1,
        "b ran after its file was removed; log:\n{}",
        daemon.log()
    );
}

#[test]
fn catches_up_at_start_up_only_jobs_that_missed_a_scheduled_time() {
    let env = Env::new();
    let record = |start: &str| {
        format!(r#"{{"start":"{start}","finish":"{start}","status":"success","stats":{{}}}}"#)
            + "\n"
    };
    for (name, last_run) in [
        ("missed", Some("2000-01-01T00:00:00Z".to_string())),
        ("recent", Some(chrono::Utc::now().to_rfc3339())),
        ("never", None),
    ] {
        env.write(&format!("src-{name}/f.txt"), name);
        env.simple_job(name, r#""include_dirs": ["."], "schedule": "@yearly""#);
        if let Some(start) = last_run {
            env.write(&format!("dest-{name}/.strata/runs.jsonl"), &record(&start));
        }
    }
    let mut daemon = Daemon::start(&env);
    let mirrored = env.path("dest-missed/mirror/f.txt");
    daemon.wait_for("the catch-up run", || read(&mirrored).is_some());
    // Catch-up is decided at start-up, before the daemon reports that it
    // is watching: by then, only "missed" was started.
    daemon.wait_for("start-up", || daemon_log_has(&env, "watching"));
    let log = daemon.log();
    let caught_up: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("running it now"))
        .collect();
    assert_eq!(caught_up.len(), 1, "log:\n{log}");
    assert!(caught_up[0].contains("missed: "), "log:\n{log}");
}

#[test]
fn an_unreadable_jobs_dir_at_start_up_is_exit_2() {
    let env = Env::new();
    fs::remove_dir(env.jobs()).unwrap();
    let mut daemon = Daemon::start(&env);
    let status = daemon.exit_status();
    assert_eq!(status.code(), Some(2), "log:\n{}", daemon.log());
    assert!(daemon.log().contains("jobs.d"), "log:\n{}", daemon.log());
}

/// Unix seconds of an RFC 3339 time.
fn epoch(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp()
}

#[test]
fn catch_up_and_the_next_run_follow_cron_across_dst_in_the_machines_zone() {
    // (TZ, schedule, last run, daemon starts at, caught up?, next run as
    // the log shows it). The zone is the machine's: TZ, read by the daemon.
    let cases = [
        // The repeated 02:30 fired in the first pass: in the second pass a
        // fixed-time job has missed nothing...
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2026-10-25T00:30:05Z",
            "2026-10-25T01:40:00Z",
            false,
            "2026-10-26 02:30:00 +01:00",
        ),
        // ... and a wildcard job has missed the second 02:30.
        (
            "Europe/Berlin",
            "30 * * * *",
            "2026-10-25T00:30:05Z",
            "2026-10-25T01:40:00Z",
            true,
            "2026-10-25 03:30:00 +01:00",
        ),
        // The missing 02:30 fired at 03:00 CEST: down over it, caught up.
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2026-03-28T01:30:05Z",
            "2026-03-29T01:10:00Z",
            true,
            "2026-03-30 02:30:00 +02:00",
        ),
        // A wildcard job in the missing hour fired nothing to miss.
        (
            "Europe/Berlin",
            "* 2 * * *",
            "2026-03-29T00:59:00Z",
            "2026-03-29T01:10:00Z",
            false,
            "2026-03-30 02:00:00 +02:00",
        ),
        // Lord Howe's half-hour jump: 02:15 fired at 02:30 +11:00.
        (
            "Australia/Lord_Howe",
            "15 2 * * *",
            "2026-10-02T15:45:05Z",
            "2026-10-03T15:40:00Z",
            true,
            "2026-10-05 02:15:00 +11:00",
        ),
        (
            "America/New_York",
            "30 1 * * *",
            "2026-11-01T05:30:05Z",
            "2026-11-01T06:45:00Z",
            false,
            "2026-11-02 01:30:00 -05:00",
        ),
    ];
    for (tz, expr, last_run, start, caught_up, next) in cases {
        let env = Env::new();
        env.write("src-job/f.txt", "f");
        env.simple_job(
            "job",
            &format!(r#""include_dirs": ["."], "schedule": "{expr}""#),
        );
        let record = format!(
            r#"{{"start":"{last_run}","finish":"{last_run}","status":"success","stats":{{}}}}"#
        );
        env.write("dest-job/.strata/runs.jsonl", &(record + "\n"));
        let Some(mut daemon) = Daemon::start_at(&env, tz, epoch(start)) else {
            return;
        };
        daemon.wait_for("start-up", || daemon_log_has(&env, "watching"));
        let log = daemon.log();
        let what = format!("TZ={tz} {expr:?}, last run {last_run}, at {start}; log:\n{log}");
        assert_eq!(log.contains("running it now"), caught_up, "{what}");
        assert!(log.contains(&format!("next: job at {next}")), "{what}");
    }
}

#[test]
fn the_daemon_logs_what_retention_removed() {
    let env = Env::new();
    let source = env.write("src-a/notes.txt", "first");
    env.simple_job(
        "a",
        &format!(r#""track_dirs": ["."], "retention": {{"keep_last": 1}}, {EVERY_SECOND}"#),
    );
    let mut daemon = Daemon::start(&env);
    daemon.wait_for("the first run", || env.increments("dest-a").len() == 1);
    let first = env.increments("dest-a").remove(0);
    fs::write(&source, "second version").unwrap();
    set_mtime(&source, 1_600_000_100);
    let log_path = daemon.log.clone();
    let line = format!("a: retention removed 1 increment: {first}");
    daemon.wait_for("the retention line", || {
        fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains(&line)
    });
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.exit_status().code(), Some(0), "{}", daemon.log());
}
