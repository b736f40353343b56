//! Naming jobs: several names and --all for verify, prune and history;
//! "did you mean" for a name that is not a job.

mod common;

use common::Env;

fn two_jobs() -> Env {
    let env = Env::new();
    env.write("src-home/a.txt", "a");
    env.write("src-photos/p.jpg", "p");
    env.simple_job("home", r#""track_dirs": ["."]"#);
    env.simple_job("photos", r#""track_dirs": ["."]"#);
    let (code, v) = env.run_json(&["run-all"]);
    assert_eq!(code, 0, "{v:#}");
    env
}

#[test]
fn verify_prune_and_history_take_several_names_or_all() {
    let env = two_jobs();
    for args in [
        vec!["verify", "home", "photos"],
        vec!["verify", "--all"],
        vec!["prune", "home", "photos", "--dry-run"],
        vec!["prune", "--all", "--dry-run"],
        vec!["history", "home", "photos"],
        vec!["history", "--all"],
    ] {
        let (code, out, err) = env.run(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(
            out.contains("== home ==") && out.contains("== photos =="),
            "{args:?}: {out}"
        );
        let (code, v) = env.run_json(&args);
        assert_eq!(code, 0, "{args:?}");
        let jobs: Vec<&str> = v["jobs"]
            .as_array()
            .unwrap_or_else(|| panic!("{args:?}: {v:#}"))
            .iter()
            .map(|j| j["job"].as_str().unwrap())
            .collect();
        assert_eq!(jobs, ["home", "photos"], "{args:?}");
    }
    // One name: the output as before.
    let (_, v) = env.run_json(&["verify", "home"]);
    assert_eq!(v["job"], "home");
    // history NAME... PATH: the names, then a path in each.
    let (code, out, _) = env.run(&["history", "home", "photos", "a.txt"]);
    assert_eq!(code, 1, "photos has no a.txt: {out}");
    assert!(out.contains("== home ==\na.txt"), "{out}");
    let (code, _, err) = env.run(&["history", "home", "x", "y"]);
    assert_eq!(code, 2);
    assert!(err.contains("x, y are not jobs"), "{err}");
}

#[test]
fn a_name_that_is_not_a_job_gets_a_suggestion() {
    let env = two_jobs();
    for args in [
        vec!["run", "hom"],
        vec!["verify", "home", "fotos"],
        vec!["restore", "hmoe", "--to", "x"],
        vec!["history", "Photos"],
        vec!["diff", "hom", "-1"],
    ] {
        let (code, _, err) = env.run(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains("did you mean"), "{args:?}: {err}");
    }
    let (_, _, err) = env.run(&["run", "hom"]);
    assert!(err.contains("did you mean home?"), "{err}");
    let (_, _, err) = env.run(&["run", "zzzzzz"]);
    assert!(err.contains("the jobs are home, photos"), "{err}");
}
