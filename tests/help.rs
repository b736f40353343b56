//! Each command's help shows the global options that apply to it, in a
//! section of their own.

mod common;

use common::Env;

fn help(args: &[&str]) -> String {
    let env = Env::new();
    let (code, out, err) = env.run(args);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn global_options_are_shown_where_they_apply() {
    let schema = help(&["schema", "--help"]);
    for hidden in ["--metrics-file", "--jobs-dir", "--json", "--threads"] {
        assert!(!schema.contains(hidden), "{hidden} under schema:\n{schema}");
    }
    let run = help(&["run", "--help"]);
    let global = run
        .split("Global options:")
        .nth(1)
        .expect("a section of their own");
    for shown in [
        "--metrics-file",
        "--jobs-dir",
        "--threads",
        "--no-progress",
        "--json",
    ] {
        assert!(
            global.contains(shown),
            "{shown} not under run's global options:\n{run}"
        );
    }
    let diff = help(&["diff", "--help"]);
    assert!(
        diff.contains("Global options:") && diff.contains("--jobs-dir"),
        "{diff}"
    );
    for hidden in ["--metrics-file", "--no-progress", "--threads"] {
        assert!(!diff.contains(hidden), "{hidden} under diff:\n{diff}");
    }
    let top = help(&["--help"]);
    assert!(
        top.contains("Global options:") && top.contains("--metrics-file"),
        "{top}"
    );
    // Accepted wherever they are written, as before.
    let env = Env::new();
    let (code, _, err) = env.run(&["list", "--jobs-dir", env.jobs().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}

/// What the completion engine offers for the last word of `line`, as the
/// fish script asks for it.
fn complete(env: &Env, line: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .current_dir(env.root())
        .env("COMPLETE", "fish")
        .env("STRATA_STATE_DIR", env.state_dir())
        .env_remove("STRATA_JOBS_DIR")
        .arg("--")
        .arg("strata")
        .arg("--jobs-dir")
        .arg(env.jobs())
        .args(line)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        // Options are offered too; the values are what is tested.
        .filter(|w| !w.starts_with('-'))
        .collect()
}

#[test]
fn completion_knows_job_and_increment_names() {
    let env = Env::new();
    env.write("src-home/a.txt", "a");
    env.write("src-photos/p.jpg", "p");
    env.simple_job("home", r#""track_dirs": ["."]"#);
    env.simple_job("photos", r#""track_dirs": ["."]"#);
    let (code, v) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    let first = v["jobs"][0]["increment"].as_str().unwrap().to_string();
    env.write("src-home/a.txt", "ab");
    let (_, v) = env.run_json(&["run", "home"]);
    let second = v["jobs"][0]["increment"].as_str().unwrap().to_string();
    assert_eq!(complete(&env, &["run", ""]), ["home", "photos"]);
    assert_eq!(complete(&env, &["verify", "ph"]), ["photos"]);
    assert_eq!(
        complete(&env, &["diff", "home", ""]),
        [second.clone(), first.clone(), "latest".into()]
    );
    assert_eq!(
        complete(&env, &["restore", "home", "--at", ""])[..2],
        [second, first]
    );
    // The script a shell sources asks strata itself.
    let (code, script, _) = env.run(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(
        script.contains("COMPLETE=\"bash\"") || script.contains("COMPLETE=bash"),
        "{script}"
    );
}

#[test]
fn completion_offers_commands_and_options() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .env("COMPLETE", "fish")
        .args(["--", "strata", "run", "--metr"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--metrics-file"),
        "{out:?}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .env("COMPLETE", "fish")
        .args(["--", "strata", "run-"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("run-all"),
        "{out:?}"
    );
}
