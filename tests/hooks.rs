//! Job hooks (`before`, `after`, `on_error`, `finally`) around real runs:
//! order, environment, what a failing or timed-out hook does to the run,
//! and that a hook never touches the backup.

mod common;

use std::fs;
use std::os::fd::AsRawFd;

use common::{Env, assert_same_tree, snapshot};
use serde_json::Value;

/// A job `home` tracking `docs`, whose hooks append a line to `hooks.log`
/// in the env root (hooks run in the jobs dir).
fn setup(hooks: &str) -> Env {
    let env = Env::new();
    env.write("src-home/docs/a.txt", "alpha");
    env.write("src-home/docs/b.txt", "beta");
    env.simple_job(
        "home",
        &format!(r#""track_dirs": ["docs"], "hooks": {hooks}"#),
    );
    env
}

/// A hook command that records its name and environment.
fn record(name: &str) -> String {
    format!(
        "echo {name} $STRATA_JOB $STRATA_STATUS inc=$STRATA_INCREMENT \
         src=$(basename $STRATA_SOURCE) dest=$(basename $STRATA_DESTINATION) \
         msg=\\\"$STRATA_MESSAGE\\\" >> ../hooks.log"
    )
}

fn all_hooks(before: &str, after: &str) -> String {
    format!(
        r#"{{"before": "{before}", "after": "{after}", "on_error": "{}", "finally": "{}"}}"#,
        record("on_error"),
        record("finally")
    )
}

fn hook_log(env: &Env) -> Vec<String> {
    fs::read_to_string(env.path("hooks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn row(report: &Value) -> &Value {
    &report["jobs"][0]
}

#[test]
fn hooks_run_in_order_with_the_run_in_their_environment() {
    let env = setup(&all_hooks(&record("before"), &record("after")));
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");
    let increment = env.increments("dest-home").pop().unwrap();
    assert_eq!(
        hook_log(&env),
        [
            "before home running inc= src=src-home dest=dest-home msg=".to_string(),
            format!("after home success inc={increment} src=src-home dest=dest-home msg="),
            format!("finally home success inc={increment} src=src-home dest=dest-home msg="),
        ]
    );
    assert_eq!(row(&report)["status"], "success");
}

#[test]
fn a_failing_before_hook_fails_the_run_and_changes_nothing() {
    let env = setup(&all_hooks(
        "echo cannot reach the database; exit 3",
        &record("after"),
    ));
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(row(&report)["status"], "failed");
    assert_eq!(
        row(&report)["message"],
        "before hook failed (exit status 3); output: \"cannot reach the database\""
    );
    assert!(!env.path("dest-home/mirror").exists());
    assert!(env.increments("dest-home").is_empty());
    // No `after`; on_error and finally see the failure.
    let msg = "msg=before hook failed (exit status 3); output: \"cannot reach the database\"";
    assert_eq!(
        hook_log(&env),
        [
            format!("on_error home failed inc= src=src-home dest=dest-home {msg}"),
            format!("finally home failed inc= src=src-home dest=dest-home {msg}"),
        ]
    );
    // The failed run is in the run log, so `strata list` shows it.
    let runs = fs::read_to_string(env.path("dest-home/.strata/runs.jsonl")).unwrap();
    assert!(runs.contains("\"status\":\"failed\""), "{runs}");
}

#[test]
fn a_before_hook_that_times_out_is_stopped_and_fails_the_run() {
    let env = setup(r#"{"before": "echo waiting; sleep 600", "timeout": 1}"#);
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        row(&report)["message"],
        "before hook timed out after 1s and was stopped; output: \"waiting\""
    );
    assert!(!env.path("dest-home/mirror").exists());
}

#[test]
fn a_failing_after_hook_fails_the_run_but_keeps_the_backup() {
    let env = setup(&all_hooks(&record("before"), "exit 5"));
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(row(&report)["status"], "failed");
    assert_eq!(row(&report)["message"], "after hook failed (exit status 5)");
    // The backup committed and stays.
    assert_same_tree(
        &snapshot(&env.path("src-home")),
        &snapshot(&env.path("dest-home/mirror")),
    );
    let increment = env.increments("dest-home").pop().unwrap();
    assert_eq!(row(&report)["increment"], increment.as_str());
    let log = hook_log(&env);
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log[1].starts_with(&format!("on_error home failed inc={increment}")));
    assert!(log[2].starts_with("finally home failed"));
}

#[test]
fn on_error_runs_for_a_partial_run() {
    let env = setup(&all_hooks(&record("before"), &record("after")));
    let out = env
        .strata()
        .env("STRATA_FAULT_UNREADABLE", "docs/a.txt")
        .args(["--json", "run", "home"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let log = hook_log(&env);
    let statuses: Vec<String> = log
        .iter()
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        statuses,
        [
            "before home running",
            "after home partial",
            "on_error home partial",
            "finally home partial"
        ]
    );
}

#[test]
fn failing_on_error_and_finally_hooks_are_warnings() {
    let env = setup(r#"{"finally": "echo unmount failed >&2; exit 1"}"#);
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(row(&report)["status"], "success");
    assert_eq!(
        row(&report)["warnings"],
        serde_json::json!(["finally hook failed (exit status 1); output: \"unmount failed\""])
    );
}

#[test]
fn hook_output_goes_to_the_log() {
    let env = setup(r#"{"before": "echo dumping database; echo done >&2"}"#);
    let (code, _, stderr) = env.run(&["-v", "run", "home"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("home: before hook: dumping database"),
        "{stderr}"
    );
    assert!(stderr.contains("home: before hook: done"), "{stderr}");
}

#[test]
fn a_dry_run_runs_no_hook() {
    let env = setup(&all_hooks(&record("before"), &record("after")));
    let (code, report) = env.run_json(&["run", "home", "--dry-run"]);
    assert_eq!(code, 0, "{report:#}");
    assert!(hook_log(&env).is_empty());
}

#[test]
fn a_locked_job_runs_no_hook() {
    let env = setup(&all_hooks(&record("before"), &record("after")));
    let (code, _) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    let before = hook_log(&env);
    // Hold the job's lock as another strata process would.
    let lock = fs::File::open(env.path("dest-home/.strata/lock")).unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(row(&report)["status"], "skipped_locked");
    assert_eq!(hook_log(&env), before);
}

#[test]
fn hooks_are_validated() {
    let env = Env::new();
    env.write("src-x/a", "a");
    env.simple_job(
        "x",
        r#""track_dirs": ["."], "hooks": {"befor": "true", "timeout": 0}"#,
    );
    let (code, out, _) = env.run(&["validate"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: unknown field \"befor\", did you mean \"before\"?"),
        "{out}"
    );
    assert!(
        out.contains(
            "error: hooks.timeout: expected a number of seconds from 1 to 604800, e.g. 600; \
             got the number 0"
        ),
        "{out}"
    );
}
