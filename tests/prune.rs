//! `strata prune` and retention: the policy, merge-forward, dry runs, locks, an interrupted prune.

mod common;

use std::fs;

use common::fixtures::*;
use common::{assert_same_tree, inode, snapshot};

#[test]
fn prune_keeps_by_policy_and_merges_forward() {
    let env = setup();
    let runs = three_runs(&env);
    with_retention(&env, r#"{"keep_last": 2}"#);
    let (code, json) = env.run_json(&["prune", "home"]);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["status"], "pruned");
    assert_eq!(json["remove"], serde_json::json!([runs[0].0]));
    assert_eq!(names(&json["kept"]), [runs[1].0.clone(), runs[2].0.clone()]);
    assert_eq!(json["kept"][0]["reasons"], serde_json::json!(["keep_last"]));
    assert_eq!(
        json["kept"][1]["reasons"],
        serde_json::json!(["newest", "keep_last"])
    );
    assert_eq!(json["removed"][0]["into"], runs[1].0.as_str());
    assert_eq!(
        env.increments("dest-home"),
        [runs[1].0.clone(), runs[2].0.clone()]
    );

    // a.txt came in the removed increment and never changed: the kept
    // increment now holds that very file (moved, not copied).
    let kept = &runs[1].0;
    let moved = env.path(&format!("dest-home/{kept}/track/docs/a.txt"));
    assert_eq!(
        inode(&moved),
        inode(&env.path("dest-home/mirror/docs/a.txt"))
    );
    for (increment, want) in &runs[1..] {
        assert_same_tree(want, &restore(&env, increment, &["--at", increment]));
    }
    let (_, history) = env.run_json(&["history", "home", "docs/a.txt"]);
    assert_eq!(
        history["paths"][0]["versions"][0]["increment"],
        kept.as_str()
    );
    assert_eq!(history["paths"][0]["versions"][0]["op"], "new");
    let (code, out, _) = env.run(&["verify", "home", "--deep"]);
    assert_eq!(code, 0, "{out}");

    // Text output names the rule that keeps each increment.
    with_retention(&env, r#"{"keep_last": 1}"#);
    let (code, out, _) = env.run(&["prune", "home", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("keep    {}", runs[2].0)), "{out}");
    assert!(out.contains("(newest, keep_last)"), "{out}");
    assert!(out.contains(&format!("remove  {}", runs[1].0)), "{out}");
    assert!(out.contains("would remove 1"), "{out}");

    // Times as `history` and `list` show them: in the machine's zone, to
    // the second (JSON keeps RFC 3339 UTC).
    let (_, json) = env.run_json(&["prune", "home", "--dry-run"]);
    let out = env
        .strata()
        .env("TZ", "Etc/GMT-3")
        .args(["prune", "home", "--dry-run"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let local = |rfc3339: &str| {
        let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
        let plus3 = chrono::FixedOffset::east_opt(3 * 3600).unwrap();
        t.with_timezone(&plus3)
            .format("%Y-%m-%d %H:%M:%S +03:00")
            .to_string()
    };
    let kept = json["kept"][0]["time"].as_str().unwrap();
    assert!(
        out.contains(&format!("keep    {}  {}", runs[2].0, local(kept))),
        "{out}"
    );
    // A removed increment's time is its name's (UTC).
    let name = &runs[1].0;
    let n = &name["backup_".len()..];
    let utc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &n[0..4],
        &n[4..6],
        &n[6..8],
        &n[9..11],
        &n[11..13],
        &n[13..15]
    );
    assert!(
        out.contains(&format!("remove  {name}  {}", local(&utc))),
        "{out}"
    );
    assert!(!out.contains('Z'), "no UTC times in the text: {out}");
}

#[test]
fn prune_dry_run_and_no_policy_change_nothing() {
    let env = setup();
    three_runs(&env);
    let whole = || snapshot(&env.path("dest-home"));
    let before = whole();
    let (code, out, _) = env.run(&["prune", "home"]);
    assert_eq!(code, 0);
    assert!(out.contains("no retention block"), "{out}");
    assert_same_tree(&before, &whole());

    with_retention(&env, r#"{"keep_last": 1}"#);
    let (code, json) = env.run_json(&["prune", "home", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(json["status"], "dry_run");
    assert_eq!(json["remove"].as_array().unwrap().len(), 2);
    assert_eq!(json["removed"].as_array().unwrap().len(), 2);
    assert_same_tree(&before, &whole());
    assert!(!env.path("dest-home/.strata/pruning").exists());
}

#[test]
fn prune_of_a_locked_job_is_skipped() {
    use std::os::fd::AsRawFd;
    let env = setup();
    three_runs(&env);
    with_retention(&env, r#"{"keep_last": 1}"#);
    let lock = fs::File::open(env.path("dest-home/.strata/lock")).unwrap();
    // SAFETY: flock on an fd this test owns.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let (code, out, _) = env.run(&["prune", "home"]);
    assert_eq!(code, 0);
    assert!(out.contains("locked"), "{out}");
    assert_eq!(env.increments("dest-home").len(), 3);
}

#[test]
fn a_run_applies_the_retention_policy() {
    let env = setup();
    with_retention(&env, r#"{"keep_last": 2}"#);
    let runs = three_runs(&env);
    assert_eq!(
        env.increments("dest-home"),
        [runs[1].0.clone(), runs[2].0.clone()]
    );
    env.write("src-home/docs/d.txt", "delta");
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    assert_eq!(report["jobs"][0]["pruned"], serde_json::json!([runs[1].0]));
    assert_same_tree(&runs[2].1, &restore(&env, "r", &["--at", &runs[2].0]));
}

#[test]
fn an_interrupted_prune_is_finished_by_the_next_one() {
    use strata::history::History;
    use strata::history::prune::{journal_path, plan_merges};
    use strata::store::Store;
    let env = setup();
    let runs = three_runs(&env);
    let (first, second) = (&runs[0].0, &runs[1].0);
    // A prune of the first increment dies in step 3: journal written, the
    // increment out of sight, one of its files moved into the next.
    let store = Store::open(&env.path("dest-home")).unwrap();
    let merges = plan_merges(&History::load(&store).unwrap(), std::slice::from_ref(first));
    let pruning = env.path("dest-home/.strata/pruning");
    fs::create_dir_all(&pruning).unwrap();
    fs::write(
        journal_path(&store),
        serde_json::to_vec(&merges[0]).unwrap(),
    )
    .unwrap();
    fs::rename(env.path(&format!("dest-home/{first}")), pruning.join(first)).unwrap();
    fs::rename(
        pruning.join(format!("{first}/track/docs/a.txt")),
        env.path(&format!("dest-home/{second}/track/docs/a.txt")),
    )
    .unwrap();

    let (code, _, err) = env.run(&["history", "home"]);
    assert_eq!(code, 1);
    assert!(err.contains("interrupted prune"), "{err}");
    let (code, out, _) = env.run(&["verify", "home"]);
    assert_eq!(code, 1);
    assert!(out.contains("merge.json"), "{out}");

    // No retention block: prune still finishes what was started.
    let (code, json) = env.run_json(&["prune", "home"]);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["finished"], serde_json::json!([first]));
    assert!(fs::read_dir(&pruning).unwrap().next().is_none());
    for (increment, want) in &runs[1..] {
        assert_same_tree(want, &restore(&env, increment, &["--at", increment]));
    }
    let (code, out, _) = env.run(&["verify", "home", "--deep"]);
    assert_eq!(code, 0, "{out}");
}

// ---------------------------------------------------------------- verify
