//! What strata writes on stdout and stderr: one summary line per job, JSON logs, progress only on a terminal, a closed or failing stdout.

mod common;

use std::fs;

use common::Env;
use serde_json::Value;

#[test]
fn runs_log_one_summary_line_per_job() {
    let env = Env::new();
    env.write("src-home/a.txt", "alpha");
    env.simple_job("home", r#""track_dirs": ["."]"#);
    let (code, _, err) = env.run(&["-v", "run", "home"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("home: success:"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("home: success: 1 new, 0 changed, 0 deleted, 0 removed, 5 B copied"),
        "{err}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_the_counts_as_fields() {
    let env = Env::new();
    env.write("src-home/a.txt", "alpha");
    env.simple_job("home", r#""track_dirs": ["."]"#);
    let (code, _, err) = env.run(&["--log-format", "json", "-v", "run-all"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = events
        .iter()
        .find(|e| e["job"] == "home" && e["status"] == "success")
        .unwrap_or_else(|| panic!("no summary event in {events:#?}"));
    assert_eq!(summary["level"], "INFO");
    assert_eq!(summary["new"], 1);
    assert_eq!(summary["bytes_copied"], 5);
    assert!(
        summary["message"]
            .as_str()
            .unwrap()
            .starts_with("home: success:")
    );
}

#[test]
fn progress_is_not_drawn_when_stderr_is_not_a_terminal() {
    let env = Env::new();
    env.write("src-home/a.txt", "alpha");
    env.simple_job("home", r#""track_dirs": ["."]"#);
    let (code, out, err) = env.run(&["run-all"]);
    assert_eq!(code, 0);
    assert_eq!(err, "");
    assert!(!out.contains('\x1b'), "{out:?}");
}

/// Under a pseudo-terminal (`script` from util-linux), the progress line is
/// drawn on stderr and cleared, and the report follows as usual.
#[test]
fn progress_is_drawn_on_a_terminal_and_cleared() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` command to make a terminal");
        return;
    }
    let env = Env::new();
    env.write("src-home/a.txt", "alpha");
    // The before hook keeps the job running while the spinner ticks.
    env.simple_job(
        "home",
        r#""track_dirs": ["."], "hooks": {"before": "sleep 0.5"}"#,
    );
    let command = format!(
        "{} --jobs-dir {} run-all",
        env!("CARGO_BIN_EXE_strata"),
        env.jobs().display()
    );
    let run = |extra: &str| {
        let out = std::process::Command::new("script")
            .args(["-qec", &format!("{command} {extra}"), "/dev/null"])
            .current_dir(env.root())
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let screen = run("");
    assert!(screen.contains("before hook"), "{screen:?}");
    assert!(
        screen.contains("\x1b[2K"),
        "the line is never cleared: {screen:?}"
    );
    assert!(screen.contains("TOTAL  1 job, ok"), "{screen:?}");
    let quiet = run("--no-progress");
    assert!(!quiet.contains("before hook"), "{quiet:?}");
    assert!(quiet.contains("TOTAL  1 job, ok"), "{quiet:?}");
}

/// Run strata with stdout on a pipe whose read end is already closed (the
/// reader went away, as `head -1` does after one line): every write fails
/// with EPIPE. Returns (exit code, stderr).
fn run_into_closed_pipe(env: &Env, args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = env
        .std_command()
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    let env = Env::new();
    for i in 0..3 {
        env.write(&format!("src-home/f{i}.txt"), "x");
    }
    env.simple_job(
        "home",
        r#""track_dirs": ["."], "retention": {"keep_last": 1}"#,
    );
    let (code, _) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    for args in [
        &["run-all", "--dry-run"][..],
        &["history", "home"],
        &["--json", "history", "home"],
        &["history", "home", "f0.txt"],
        &["prune", "home", "--dry-run"],
        &["--json", "prune", "home"],
        &["list"],
        &["validate"],
        &["--json", "validate"],
        &["schema"],
        &["man"],
        &["completions", "bash"],
        &["verify", "home"],
    ] {
        let (code, err) = run_into_closed_pipe(&env, args);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "strata {args:?}: {err}"
        );
        assert_eq!(code, 0, "strata {args:?}: {err}");
    }
    // The work is still done: the real run ran although nobody read its
    // report.
    env.write("src-home/f3.txt", "x");
    let (code, err) = run_into_closed_pipe(&env, &["run-all"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(env.path("dest-home/mirror/f3.txt").exists());
}

/// A full disk behind stdout is not a closed pipe: it is said, and the
/// exit code says it too, so that CI never takes a truncated report for
/// a whole one.
#[test]
fn a_failing_stdout_is_an_error() {
    let full = std::path::Path::new("/dev/full");
    if !full.exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let env = Env::new();
    let out = env
        .std_command()
        .arg("schema")
        .stdout(fs::File::create(full).unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write to stdout"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
