//! `max_delete`: a mass deletion is refused unless forced; a small one goes through.

mod common;

use std::fs;

use common::{Env, assert_same_tree, snapshot};

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
