//! The run report as a person reads it: fits 80 columns, names the
//! increment, shows a failed job's mirror as it stands, counts partial as
//! partial, and says each warning once.

mod common;

use common::Env;

fn have_script() -> bool {
    std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `strata ARGS` under a terminal `columns` wide: what it showed.
fn on_a_terminal(env: &Env, columns: u16, args: &str) -> String {
    let command = format!(
        "{} --jobs-dir {} {args}",
        env!("CARGO_BIN_EXE_strata"),
        env.jobs().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .current_dir(env.root())
        .env("STRATA_STATE_DIR", env.state_dir())
        .env("COLUMNS", columns.to_string())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

#[test]
fn a_narrow_terminal_gets_one_block_per_job() {
    if !have_script() {
        eprintln!("skipped: no `script` command to make a terminal");
        return;
    }
    let env = Env::new();
    env.write("src-home/docs/a.txt", "alpha");
    env.write("src-photos/x.jpg", "jpeg");
    env.simple_job("home", r#""track_dirs": ["docs"]"#);
    env.simple_job("photos", r#""include_dirs": ["."]"#);
    let screen = on_a_terminal(&env, 80, "--no-progress run-all");
    for line in screen.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}\n{screen}",
            line.len()
        );
    }
    assert!(screen.contains("home: success\n"), "{screen}");
    assert!(
        screen.contains("  1 file selected (1 tracked), 1 in the mirror"),
        "{screen}"
    );
    assert!(screen.contains("TOTAL: 2 jobs, ok"), "{screen}");
    assert!(screen.contains("home: wrote increment backup_"), "{screen}");
    // Wide enough: the table.
    env.write("src-home/docs/a.txt", "alpha, again");
    common::set_mtime(&env.path("src-home/docs/a.txt"), 1_600_000_100);
    let wide = on_a_terminal(&env, 200, "--no-progress run-all");
    assert!(
        wide.contains("TOTAL   2 jobs, ok") || wide.contains("TOTAL  2 jobs, ok"),
        "{wide}"
    );
    assert!(
        wide.lines()
            .any(|l| l.starts_with("job ") && l.contains("selected")),
        "{wide}"
    );
}

#[test]
fn a_failed_job_shows_the_mirror_as_it_stands() {
    let env = Env::new();
    for i in 0..3 {
        env.write(&format!("src-home/f{i}"), "x");
    }
    env.simple_job("home", r#""include_dirs": ["."]"#);
    let (code, _) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    std::fs::rename(env.path("src-home"), env.path("elsewhere")).unwrap();
    let (code, v) = env.run_json(&["run", "home"]);
    assert_eq!(code, 1);
    assert_eq!(v["jobs"][0]["status"], "failed");
    assert_eq!(v["jobs"][0]["stats"]["mirror"], 3, "{v:#}");
    let (_, out, _) = env.run(&["run", "home"]);
    let row = out.lines().find(|l| l.starts_with("home ")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    // job status selected tracked mirror …: the counts it did not make are -.
    assert_eq!(&cells[..5], ["home", "failed", "-", "-", "3"], "{out}");
    assert!(out.contains("TOTAL  1 job, 1 failed"), "{out}");
}

#[test]
fn partial_is_counted_as_partial_and_each_warning_is_said_once() {
    let env = Env::new();
    env.write("src-a/ok", "fine");
    env.write("src-a/bad", "unreadable");
    env.write("src-b/ok", "fine");
    env.write("src-b/bad", "unreadable");
    env.simple_job("a", r#""track_dirs": ["."]"#);
    env.simple_job("b", r#""track_dirs": ["."]"#);
    let out = env
        .strata()
        .env("STRATA_FAULT_UNREADABLE", "bad")
        .args(["run-all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("2 jobs, 2 partial"), "{stdout}");
    assert!(!stdout.contains("failed"), "{stdout}");
    let all = format!("{stdout}{stderr}");
    for job in ["a", "b"] {
        let said = all.matches(&format!("{job}: error: bad")).count()
            + all.matches(&format!("{job}: bad:")).count();
        assert_eq!(said, 1, "the error of {job} once:\n{all}");
    }
    assert!(!stderr.contains("WARN"), "{stderr}");
}

#[test]
fn plurals_read_right() {
    let env = Env::new();
    env.write("src-home/a", "x");
    env.simple_job(
        "home",
        r#""track_dirs": ["."], "retention": {"keep_last": 1}"#,
    );
    let (_, out, _) = env.run(&["run", "home"]);
    assert!(out.contains("1 job, ok"), "{out}");
    env.write("src-home/a", "xy");
    let (_, out, _) = env.run(&["run", "home"]);
    assert!(
        out.contains("retention removed 1 increment: backup_"),
        "{out}"
    );
    let (_, out, _) = env.run(&["verify", "home"]);
    assert!(
        out.contains("1 mirror file, 1 file in 1 increment"),
        "{out}"
    );
}
