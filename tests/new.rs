//! `strata new`: a job file that validate accepts, never overwritten.

mod common;

use std::fs;

use common::Env;
use serde_json::Value;

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
