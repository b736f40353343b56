//! `strata explain NAME PATH...` on real job files and trees: the verdict
//! and the rule that decided, located in the job file, from the matcher a
//! run uses.

mod common;

use common::Env;
use serde_json::Value;

const JOB: &str = r#"{
  "source": "../home",
  "destination": "../backup/home",
  "track_dirs": ["Documents", "Projects/*"],
  "include_dirs": ["Music"],
  "exclude_dirs": ["node_modules:rec", "build"],
  "include_files": [".*"],
  "exclude_files": ["*.log:rec"]
}"#;

fn setup() -> Env {
    let env = Env::new();
    for file in [
        "home/Documents/report.odt",
        "home/Music/a.mp3",
        "home/Music/debug.log",
        "home/.bashrc",
        "home/Projects/p/node_modules/x/index.js",
        "home/Projects/p/src/main.rs",
        "home/Videos/v.mkv",
    ] {
        env.write(file, "x");
    }
    // strata never creates a destination's parent.
    std::fs::create_dir_all(env.path("backup")).unwrap();
    env.job("home", JOB);
    env
}

#[test]
fn each_path_gets_its_verdict_and_the_rule_that_decided() {
    let env = setup();
    let (code, out, err) = env.run(&[
        "explain",
        "home",
        "Documents/report.odt",
        "Music/debug.log",
        ".bashrc",
        "Projects/p/node_modules/x/index.js",
        "Videos/v.mkv",
        "Projects",
        "build/",
    ]);
    assert_eq!(code, 0, "{err}");
    let file = env.jobs().join("home.json");
    let at = |line: usize, column: usize| format!("{}:{line}:{column}", file.display());
    let want = [
        format!(
            "Documents/report.odt: tracked: track_dirs[0] \"Documents\" ({}) covers its directory",
            at(4, 18)
        ),
        format!(
            "Music/debug.log: excluded: exclude_files[0] \"*.log:rec\" ({}) takes it out of what \
             include_dirs[0] \"Music\" ({}) selects",
            at(8, 21),
            at(5, 20)
        ),
        format!(
            ".bashrc: included: include_files[0] \".*\" ({}) matches it",
            at(7, 21)
        ),
        format!(
            "Projects/p/node_modules/x/index.js: excluded: exclude_dirs[0] \"node_modules:rec\" \
             ({}) excludes the directory \"Projects/p/node_modules\", and nothing below an \
             excluded directory is backed up, whatever else matches",
            at(6, 20)
        ),
        "Videos/v.mkv: not selected: no rule can select anything below the directory \
         \"Videos\", so a run does not enter it"
            .to_string(),
        "Projects/: not selected: no directory rule covers this directory (file rules may \
         still select files in it)"
            .to_string(),
        format!(
            "build/ (not in the source now): excluded: exclude_dirs[1] \"build\" ({}) excludes \
             this directory: nothing below it is backed up",
            at(6, 40)
        ),
    ];
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want);
}

/// The verdict is the run's: what explain calls tracked or included is
/// exactly what a run puts in the mirror.
#[test]
fn explain_agrees_with_what_a_run_backs_up() {
    let env = setup();
    let (code, _) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    let all = [
        "Documents/report.odt",
        "Music/a.mp3",
        "Music/debug.log",
        ".bashrc",
        "Projects/p/node_modules/x/index.js",
        "Projects/p/src/main.rs",
        "Videos/v.mkv",
    ];
    let mut args = vec!["explain", "home"];
    args.extend(all);
    let (code, value) = env.run_json(&args);
    assert_eq!(code, 0);
    for answer in value.as_array().unwrap() {
        let path = answer["relative"].as_str().unwrap();
        let selected = matches!(answer["selection"].as_str(), Some("tracked" | "included"));
        assert_eq!(
            env.path(&format!("backup/home/mirror/{path}")).exists(),
            selected,
            "{answer:#}"
        );
    }
}

#[test]
fn json_names_the_rule_and_absolute_paths_must_be_under_the_source() {
    let env = setup();
    let absolute = env.path("home/Projects/p/src/main.rs");
    let (code, value) = env.run_json(&["explain", "home", absolute.to_str().unwrap()]);
    assert_eq!(code, 0);
    let answer = &value[0];
    assert_eq!(answer["relative"], "Projects/p/src/main.rs");
    assert_eq!(answer["kind"], "file");
    assert_eq!(answer["exists"], true);
    assert_eq!(answer["selection"], "tracked");
    assert_eq!(
        answer["rule"],
        serde_json::json!({
            "field": "track_dirs", "index": 1, "pattern": "Projects/*",
            "file": env.jobs().join("home.json"), "line": 4, "column": 31,
        })
    );
    assert_eq!(answer["via"], Value::Null);

    let (code, out, err) = env.run(&["explain", "home", "/etc/passwd", "../up", "Music/a.mp3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/etc/passwd: not inside the source"), "{err}");
    assert!(err.contains("../up: not inside the source"), "{err}");
    assert!(out.starts_with("Music/a.mp3: included: "), "{out}");

    let (code, _, err) = env.run(&["explain", "nosuch", "x"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_path_through_a_symlink_is_what_a_run_sees_there_not_what_it_points_to() {
    let env = setup();
    // Documents/elsewhere -> a folder outside the source: a run stores the
    // link and never reads below it, so nothing below it is on disk for
    // strata.
    env.write("outside/secret/notes.txt", "x");
    env.symlink("../../outside", "home/Documents/elsewhere");
    let (code, value) =
        env.run_json(&["explain", "home", "Documents/elsewhere/secret", "Documents"]);
    assert_eq!(code, 0, "{value:#}");
    assert_eq!(value[0]["exists"], false, "followed the symlink: {value:#}");
    assert_eq!(value[0]["kind"], "file", "taken for a folder: {value:#}");
    assert_eq!(value[1]["exists"], true, "{value:#}");
    assert_eq!(value[1]["kind"], "directory", "{value:#}");
}
