//! Command-line conventions: completions, the man page, `strata new`,
//! help texts with examples, JSON logs, the summary line, progress only on
//! a terminal, and `max_delete` with `--force`.

mod common;

use std::fs;

use common::{Env, assert_same_tree, snapshot};
use serde_json::Value;

#[test]
fn completions_for_each_shell() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = env.run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        // The script asks strata itself for the words as you type (see
        // tests/help.rs for what it offers).
        assert!(
            out.contains("COMPLETE"),
            "{shell}: not strata's script:\n{out}"
        );
        assert!(
            out.contains("strata"),
            "{shell}: not strata's script:\n{out}"
        );
    }
    let (code, _, err) = env.run(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn the_man_page_is_generated_from_the_cli() {
    let env = Env::new();
    let (code, out, err) = env.run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(".ie \\n(.g .ds Aq"), "not roff:\n{out}");
    assert!(out.contains(".TH strata 1"), "{out}");
    for needle in ["run\\-all", "\\-\\-metrics\\-file", "strata\\-new(1)"] {
        assert!(out.contains(needle), "no {needle} in the man page");
    }
    // With --dir, the pages it refers to are written too.
    let dir = env.path("man1");
    let (code, _, err) = env.run(&["man", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in [
        "strata.1",
        "strata-run-all.1",
        "strata-new.1",
        "strata-man.1",
    ] {
        let text = fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".TH strata"), "{page}:\n{text}");
    }
    assert!(!dir.join("strata-help.1").exists());

    // strata-jobs(5), the job-file format, from the schema: every field,
    // with its example, beside the command pages.
    let jobs = fs::read_to_string(dir.join("strata-jobs.5")).unwrap();
    assert!(jobs.contains(".TH strata-jobs 5"), "{jobs}");
    let (_, schema, _) = env.run(&["schema"]);
    let schema: Value = serde_json::from_str(&schema).unwrap();
    for field in schema["properties"].as_object().unwrap().keys() {
        assert!(
            jobs.contains(&format!("\\fB{field}\\fR (")),
            "no {field} in strata-jobs.5"
        );
    }
    assert!(jobs.contains("\\fIExample:\\fR \"track_dirs\": [\"Documents\", \".config\"]"));
    let (code, out, _) = env.run(&["man", "--file-format"]);
    assert_eq!((code, out), (0, jobs.clone()));
    // It renders without a warning, where groff is installed.
    if let Ok(render) = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(dir.join("strata-jobs.5"))
        .output()
    {
        assert!(
            render.status.success() && render.stderr.is_empty(),
            "{render:?}"
        );
    }
}

/// The subcommand names listed by `strata --help`.
fn subcommands(env: &Env) -> Vec<String> {
    let (_, out, _) = env.run(&["--help"]);
    out.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_subcommand_teaches_with_an_example() {
    let env = Env::new();
    let names = subcommands(&env);
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        let (code, out, _) = env.run(&[&name, "--help"]);
        assert_eq!(code, 0);
        assert!(
            out.lines()
                .any(|l| l.starts_with("Example: strata ") && l.contains(&name)),
            "`strata {name} --help` has no example using it:\n{out}"
        );
    }
}

#[test]
fn new_writes_a_job_that_validate_accepts_and_never_overwrites() {
    let env = Env::new();
    env.write("data/docs/a.txt", "alpha");
    env.write("schemas/job.schema.json", "{}");
    // A destination's parent must exist: strata never creates it.
    fs::create_dir_all(env.path("backup")).unwrap();
    let (code, out, err) = env.run(&[
        "new",
        "home",
        "--source",
        "data",
        "--destination",
        "backup/home",
        "--track",
        "docs",
        "--include",
        "music",
        "--schedule",
        "30 2 * * *",
    ]);
    assert_eq!(code, 0, "{err}");
    let file = env.jobs().join("home.json");
    assert_eq!(out, format!("wrote {}\n", file.display()));
    let written: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        written,
        serde_json::json!({
            "$schema": "../schemas/job.schema.json",
            "source": env.path("data"),
            "destination": env.path("backup/home"),
            "schedule": "30 2 * * *",
            "track_dirs": ["docs"],
            "include_dirs": ["music"],
        })
    );
    let (code, out, _) = env.run(&["validate"]);
    assert_eq!(code, 0, "{out}");
    // Nothing but the job file is left in the jobs dir.
    let names: Vec<String> = fs::read_dir(env.jobs())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["home.json"]);

    // And it runs.
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");

    // A second `new` with the same name leaves the file alone.
    let before = fs::read(&file).unwrap();
    let (code, _, err) = env.run(&["new", "home", "--source", "x", "--destination", "y"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("strata: {} exists; not overwriting it\n", file.display())
    );
    assert_eq!(fs::read(&file).unwrap(), before);
}

#[test]
fn new_refuses_what_validate_refuses() {
    let env = Env::new();
    let (code, _, err) = env.run(&[
        "new",
        "nightly",
        "--source",
        "src",
        "--destination",
        "dest",
        "--schedule",
        "0 25 * * *",
    ]);
    assert_eq!(code, 1, "{err}");
    let file = env.jobs().join("nightly.json");
    assert!(err.contains(&format!("{}:", file.display())), "{err}");
    assert!(err.contains("error: schedule: hour"), "{err}");
    assert!(!file.exists());
    assert_eq!(fs::read_dir(env.jobs()).unwrap().count(), 0);

    // A destination another job uses.
    env.simple_job("other", r#""track_dirs": ["."]"#);
    let (code, _, err) = env.run(&[
        "new",
        "dup",
        "--source",
        "src-dup",
        "--destination",
        "dest-other",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is also the destination of job \"other\""),
        "{err}"
    );

    let (code, _, err) = env.run(&["new", "bad name", "--source", "s", "--destination", "d"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn new_without_rules_tracks_the_whole_source() {
    let env = Env::new();
    let (code, _, err) = env.run(&["new", "all", "--source", "s", "--destination", "d"]);
    assert_eq!(code, 0, "{err}");
    let written: Value =
        serde_json::from_str(&fs::read_to_string(env.jobs().join("all.json")).unwrap()).unwrap();
    assert_eq!(written["track_dirs"], serde_json::json!(["."]));
    // No schemas/ around: no "$schema" that would point at nothing, and a
    // note on how to make the file, after which `new` refers to it.
    assert_eq!(written.get("$schema"), None);
    assert!(err.contains("no \"$schema\" written"), "{err}");
    let command = err
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {err}"));
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &command.replace("strata ", &format!("{} ", env!("CARGO_BIN_EXE_strata"))),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {out:?}");
    let (code, _, err) = env.run(&["new", "more", "--source", "s", "--destination", "d2"]);
    assert_eq!(code, 0, "{err}");
    let written: Value =
        serde_json::from_str(&fs::read_to_string(env.jobs().join("more.json")).unwrap()).unwrap();
    assert_eq!(written["$schema"], "../schemas/job.schema.json");
    let schema = env.path("schemas/job.schema.json");
    assert!(
        fs::read_to_string(schema)
            .unwrap()
            .contains("\"track_dirs\"")
    );
}

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

fn max_delete_setup(limit: &str) -> Env {
    let env = Env::new();
    for i in 0..10 {
        env.write(&format!("src-home/f{i}.txt"), "x");
    }
    env.simple_job(
        "home",
        &format!(r#""include_dirs": ["."], "max_delete": {limit}"#),
    );
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");
    for i in 0..3 {
        fs::remove_file(env.path(&format!("src-home/f{i}.txt"))).unwrap();
    }
    env
}

#[test]
fn max_delete_refuses_a_mass_deletion_unless_forced() {
    for limit in ["2", "\"20%\""] {
        let env = max_delete_setup(limit);
        let mirror = snapshot(&env.path("dest-home/mirror"));

        let (code, report) = env.run_json(&["run", "home", "--dry-run"]);
        assert_eq!(code, 0, "{report:#}");
        // One warning: a completed run leaves nothing that looks interrupted.
        let warnings = &report["jobs"][0]["warnings"];
        assert_eq!(warnings.as_array().map(Vec::len), Some(1), "{warnings}");
        let warning = warnings[0].as_str().unwrap();
        assert!(
            warning.starts_with("a real run would fail: the run would remove 3"),
            "{warning}"
        );

        let (code, report) = env.run_json(&["run", "home"]);
        assert_eq!(code, 1, "{limit}: {report:#}");
        let row = &report["jobs"][0];
        assert_eq!(row["status"], "failed");
        let shown = limit.trim_matches('"');
        assert_eq!(
            row["message"],
            format!(
                "the run would remove 3 of the 10 files in the mirror, more than max_delete \
                 {shown} allows (at most 2): nothing was changed; check the source, or run with \
                 --force to accept"
            )
        );
        assert_same_tree(&mirror, &snapshot(&env.path("dest-home/mirror")));

        let (code, report) = env.run_json(&["run", "home", "--force"]);
        assert_eq!(code, 0, "{report:#}");
        assert_eq!(report["jobs"][0]["stats"]["removed"], 3);
        assert_eq!(snapshot(&env.path("dest-home/mirror")).len(), 7);
    }
}

#[test]
fn max_delete_lets_a_small_deletion_through() {
    let env = max_delete_setup("\"30%\"");
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["jobs"][0]["stats"]["removed"], 3);
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
