//! Recovery as a stage: what it does with a missing or corrupt index, and
//! that a dry run sees the state a real run would start from.

mod common;

use std::fs;

use common::Env;

fn setup() -> Env {
    let env = Env::new();
    env.write("src-r/docs/a.txt", "alpha");
    env.write("src-r/docs/b.txt", "beta");
    env.write("src-r/music/s.mp3", "la");
    env.simple_job("r", r#""track_dirs": ["docs"], "include_dirs": ["music"]"#);
    let (code, report) = env.run_json(&["run", "r"]);
    assert_eq!(code, 0, "{report:#}");
    env
}

fn warnings(report: &serde_json::Value) -> String {
    report["jobs"][0]["warnings"].to_string()
}

/// A corrupt index is rebuilt from the mirror once, and saved: the run
/// after says nothing more and walks nothing more.
#[test]
fn a_corrupt_index_is_rebuilt_and_saved() {
    let env = setup();
    fs::write(env.path("dest-r/.strata/index"), b"not an index at all").unwrap();
    let (code, report) = env.run_json(&["run", "r"]);
    assert_eq!(code, 0, "{report:#}");
    assert!(warnings(&report).contains("rebuilt"), "{report:#}");
    let stats = &report["jobs"][0]["stats"];
    assert_eq!(
        (stats["new"].as_u64(), stats["changed"].as_u64()),
        (Some(0), Some(0))
    );
    let index = fs::read(env.path("dest-r/.strata/index")).unwrap();
    assert!(
        index.starts_with(b"STRATA-INDEX"),
        "the rebuilt index was saved"
    );
    let (code, report) = env.run_json(&["run", "r"]);
    assert_eq!(code, 0);
    assert_eq!(
        report["jobs"][0]["warnings"],
        serde_json::Value::Null,
        "{report:#}"
    );
    let (code, out, err) = env.run(&["verify", "r", "--deep"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A missing index is the same.
#[test]
fn a_missing_index_is_rebuilt_and_saved() {
    let env = setup();
    fs::remove_file(env.path("dest-r/.strata/index")).unwrap();
    let (code, report) = env.run_json(&["run", "r"]);
    assert_eq!(code, 0, "{report:#}");
    assert!(env.path("dest-r/.strata/index").exists());
    let (_, report) = env.run_json(&["run", "r"]);
    assert_eq!(
        report["jobs"][0]["warnings"],
        serde_json::Value::Null,
        "{report:#}"
    );
}

/// With a corrupt index, a dry run plans from the index as recovery will
/// rebuild it: it shows what a real run then does (here: nothing), not
/// every file as new.
#[test]
fn a_dry_run_with_a_corrupt_index_shows_what_a_real_run_does() {
    let env = setup();
    fs::write(env.path("dest-r/.strata/index"), b"garbage").unwrap();
    let (code, dry) = env.run_json(&["run", "r", "--dry-run"]);
    assert_eq!(code, 0, "{dry:#}");
    let planned = dry["plans"][0]["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(planned.is_empty(), "the dry run plans {planned:?}");
    assert!(warnings(&dry).contains("rebuilt"), "{dry:#}");
    // It wrote nothing: the index is still the garbage.
    assert_eq!(
        fs::read(env.path("dest-r/.strata/index")).unwrap(),
        b"garbage"
    );
    let (code, real) = env.run_json(&["run", "r"]);
    assert_eq!(code, 0);
    assert_eq!(real["jobs"][0]["stats"]["new"], 0, "{real:#}");
    assert_eq!(real["jobs"][0]["stats"]["changed"], 0, "{real:#}");
}
