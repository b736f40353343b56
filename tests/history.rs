//! `strata history`, `restore`, `prune` and `verify` on real temp trees.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{Env, assert_same_tree, inode, set_mtime, snapshot};
use serde_json::Value;

const RULES: &str = r#""track_dirs": ["docs"], "include_dirs": ["music"]"#;

/// A job `home`: tracked docs, included-only music.
fn setup() -> Env {
    let env = Env::new();
    env.write("src-home/docs/a.txt", "alpha");
    env.write("src-home/docs/sub/b.txt", "beta");
    env.write("src-home/music/song.mp3", "la la");
    env.symlink("a.txt", "src-home/docs/link");
    env.simple_job("home", RULES);
    env
}

/// Run the job; the increment it wrote.
fn run(env: &Env) -> Option<String> {
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");
    report["jobs"][0]["increment"].as_str().map(String::from)
}

/// The tracked part of the source now.
fn tracked(env: &Env) -> BTreeMap<String, String> {
    snapshot(&env.path("src-home"))
        .into_iter()
        .filter(|(path, _)| path.starts_with("docs/"))
        .collect()
}

/// Restore into a fresh directory `name`; its snapshot.
fn restore(env: &Env, name: &str, args: &[&str]) -> BTreeMap<String, String> {
    let to = env.path(name);
    let mut all = vec!["restore", "home", "--to", to.to_str().unwrap()];
    all.extend_from_slice(args);
    let (code, out, err) = env.run(&all);
    assert_eq!(code, 0, "{out}{err}");
    snapshot(&to)
}

fn with_retention(env: &Env, retention: &str) {
    env.simple_job("home", &format!(r#"{RULES}, "retention": {retention}"#));
}

/// Three runs: a.txt and b.txt appear; b.txt changes and a.txt stays; c.txt
/// appears and b.txt goes. Returns the increments and the tracked snapshot
/// after each.
fn three_runs(env: &Env) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    out.push((run(env).unwrap(), tracked(env)));
    env.write("src-home/docs/sub/b.txt", "beta, second version");
    out.push((run(env).unwrap(), tracked(env)));
    env.write("src-home/docs/c.txt", "gamma");
    fs::remove_file(env.path("src-home/docs/sub/b.txt")).unwrap();
    out.push((run(env).unwrap(), tracked(env)));
    out
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["increment"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------- restore

#[test]
fn restore_defaults_to_the_mirror_and_at_to_the_tracked_state() {
    let env = setup();
    let runs = three_runs(&env);
    let latest = restore(&env, "latest", &[]);
    assert_same_tree(&snapshot(&env.path("dest-home/mirror")), &latest);
    assert!(latest.contains_key("music/song.mp3"));
    for (i, (increment, want)) in runs.iter().enumerate() {
        let got = restore(&env, &format!("at{i}"), &["--at", increment]);
        assert_same_tree(want, &got);
    }
}

#[test]
fn restore_a_subset_a_file_or_a_directory_prefix() {
    let env = setup();
    env.write("src-home/docs/sub/deeper/d.txt", "delta");
    run(&env);
    let file = restore(&env, "one", &["docs/a.txt"]);
    assert_eq!(file.keys().collect::<Vec<_>>(), ["docs/a.txt"]);
    // The path as it is in the source names the same file.
    let source_path = env.path("src-home/docs/a.txt");
    let same = restore(&env, "same", &[source_path.to_str().unwrap()]);
    assert_eq!(same, file);
    let dir = restore(&env, "dir", &["./docs/sub/"]);
    assert_eq!(
        dir.keys().collect::<Vec<_>>(),
        ["docs/sub/b.txt", "docs/sub/deeper/d.txt"]
    );
    // A prefix is a whole path component: docs/s is not docs/sub.
    let (code, _, err) = env.run(&[
        "restore",
        "home",
        "--to",
        env.path("none").to_str().unwrap(),
        "docs/s",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("docs/s: no such file"), "{err}");
    assert!(!env.path("none").exists());
}

#[test]
fn restore_refuses_a_non_empty_directory_unless_forced() {
    let env = setup();
    run(&env);
    env.write("target/keep.txt", "mine");
    env.write("target/docs/a.txt", "old");
    let before = snapshot(&env.path("target"));
    let to = env.path("target");
    let (code, _, err) = env.run(&["restore", "home", "--to", to.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("not empty"), "{err}");
    assert_same_tree(&before, &snapshot(&to));

    let (code, out, err) = env.run(&["restore", "home", "--to", to.to_str().unwrap(), "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let after = snapshot(&to);
    assert_eq!(after["keep.txt"], before["keep.txt"]);
    assert!(after["docs/a.txt"].ends_with(" alpha"), "{after:?}");
    assert!(after.contains_key("music/song.mp3"));
}

#[test]
fn restore_into_the_destination_is_refused() {
    let env = setup();
    run(&env);
    let to = env.path("dest-home/restored");
    let (code, _, err) = env.run(&["restore", "home", "--to", to.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("inside the backup destination"), "{err}");
    assert!(!to.exists());
}

#[test]
fn restore_copies_with_mtime_mode_and_symlinks_and_never_links() {
    let env = setup();
    let a = env.path("src-home/docs/a.txt");
    fs::set_permissions(&a, fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&a, 1_500_000_123);
    let script = env.write("src-home/docs/run.sh", "#!/bin/sh\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&script, 1_400_000_000);
    let increment = run(&env).unwrap();
    for (name, args) in [
        ("latest", vec![]),
        ("past", vec!["--at", increment.as_str()]),
    ] {
        let tree = restore(&env, name, &args);
        assert_same_tree(&tracked(&env), &{
            let mut t = tree.clone();
            t.remove("music/song.mp3");
            t
        });
        let restored = env.path(&format!("{name}/docs/a.txt"));
        let meta = restored.symlink_metadata().unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.mtime(), 1_500_000_123);
        assert_eq!(meta.nlink(), 1, "{name}: a restored file is not a link");
        assert_ne!(
            inode(&restored),
            inode(&env.path("dest-home/mirror/docs/a.txt"))
        );
        let script = env
            .path(&format!("{name}/docs/run.sh"))
            .symlink_metadata()
            .unwrap();
        assert_eq!(script.mode() & 0o7777, 0o750);
        assert_eq!(script.mtime(), 1_400_000_000);
        let link = env.path(&format!("{name}/docs/link"));
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(fs::read_link(&link).unwrap().to_str(), Some("a.txt"));
    }
}

#[test]
fn restore_at_a_time_between_two_runs() {
    let env = setup();
    let first = run(&env).unwrap();
    let first_tree = tracked(&env);
    // Increment names have a resolution of one second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.write("src-home/docs/a.txt", "alpha, second");
    let second = run(&env).unwrap();
    assert_ne!(first[..22], second[..22], "runs in different seconds");
    // The first run's second, half a second later, written in UTC+02:00.
    let t = chrono::NaiveDateTime::parse_from_str(&first["backup_".len()..22], "%Y%m%d_%H%M%S")
        .unwrap()
        .and_utc()
        + chrono::Duration::milliseconds(500);
    let at = t
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339();
    assert!(at.ends_with("+02:00"), "{at}");
    assert_same_tree(&first_tree, &restore(&env, "between", &["--at", &at]));
    let (code, _, err) = env.run(&[
        "restore",
        "home",
        "--to",
        env.path("before").to_str().unwrap(),
        "--at",
        "2001-01-01T00:00:00Z",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("the first is {first}")), "{err}");
}

#[test]
fn restore_names_a_missing_increment_file() {
    let env = setup();
    let increment = run(&env).unwrap();
    let gone = env.path(&format!("dest-home/{increment}/track/docs/sub/b.txt"));
    fs::remove_file(&gone).unwrap();
    let to = env.path("out");
    let (code, _, err) = env.run(&[
        "restore",
        "home",
        "--to",
        to.to_str().unwrap(),
        "--at",
        &increment,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains(gone.to_str().unwrap()), "{err}");
    // The rest is restored.
    assert!(to.join("docs/a.txt").exists());
}

// ---------------------------------------------------------------- history

#[test]
fn history_lists_increments_versions_and_searches() {
    let env = setup();
    let runs = three_runs(&env);
    let (code, out, _) = env.run(&["history", "home"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("increment"), "{out}");
    assert!(lines[1].starts_with(&runs[0].0), "{out}");
    let cols: Vec<&str> = lines[3].split_whitespace().collect();
    // backup_X  start (local: date, time, offset)  new changed deleted
    // bytes (5 B: c.txt)
    assert_eq!(&cols[4..], ["1", "0", "1", "5", "B"], "{out}");

    let (code, json) = env.run_json(&["history", "home"]);
    assert_eq!(code, 0);
    assert_eq!(json["job"], "home");
    let incs = &json["increments"];
    assert_eq!(
        names(incs),
        runs.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
    );
    assert_eq!(incs[0]["new"], 3);
    assert_eq!(incs[1]["changed"], 1);
    assert_eq!(incs[1]["bytes"], "beta, second version".len());

    let (code, out, _) = env.run(&["history", "home", "docs/sub/b.txt"]);
    assert_eq!(code, 0);
    let ops: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(ops, ["new", "changed", "deleted"], "{out}");
    let (_, json) = env.run_json(&["history", "home", "docs/sub/b.txt"]);
    let versions = &json["paths"][0]["versions"];
    assert_eq!(json["paths"][0]["path"], "docs/sub/b.txt");
    assert_eq!(versions[1]["size"], "beta, second version".len());
    assert_eq!(versions[1]["hash"].as_str().unwrap().len(), 32);
    assert!(versions[2].get("hash").is_none());

    // A name glob at any depth; a glob with `/` on the path.
    let (_, json) = env.run_json(&["history", "home", "--mask", "*.txt"]);
    let paths: Vec<&str> = json["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["docs/a.txt", "docs/c.txt", "docs/sub/b.txt"]);
    let (code, out, _) = env.run(&["history", "home", "--mask", "docs/*.txt", "--mask", "li*"]);
    assert_eq!(code, 0);
    let listed: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(listed, ["docs/a.txt", "docs/c.txt", "docs/link"], "{out}");
    // Included-only files have no history.
    let (code, _, err) = env.run(&["history", "home", "--mask", "*.mp3"]);
    assert_eq!(code, 1);
    assert!(err.contains("no file"), "{err}");
}

// ---------------------------------------------------------------- prune

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

#[test]
fn verify_passes_on_a_healthy_backup() {
    let env = setup();
    three_runs(&env);
    let (code, json) = env.run_json(&["verify", "home", "--deep"]);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["mirror_files"], 4);
    assert_eq!(json["increments"], 3);
    assert!(json["hashed"].as_u64().unwrap() >= 4);
}

#[test]
fn verify_catches_a_tampered_mirror_file() {
    let env = setup();
    run(&env);
    let a = env.path("dest-home/mirror/docs/a.txt");
    let song = env.path("dest-home/mirror/music/song.mp3");
    fs::write(&song, "longer content").unwrap();
    set_mtime(&song, 1_600_000_000);
    set_mtime(&a, 1_600_000_001);
    env.write("dest-home/mirror/stray.txt", "?");
    let (code, out, _) = env.run(&["verify", "home"]);
    assert_eq!(code, 1, "{out}");
    for (path, what) in [
        (song, "size 14 (recorded 5)"),
        (
            a,
            "mtime 2020-09-13T12:26:41Z (recorded 2020-09-13T12:26:40Z)",
        ),
        (env.path("dest-home/mirror/stray.txt"), "not in the index"),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(path.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{} not reported:\n{out}", path.display()));
        assert!(line.contains(what), "{line}");
    }
}

#[test]
fn verify_catches_a_missing_increment_file() {
    let env = setup();
    let increment = run(&env).unwrap();
    let gone = env.path(&format!("dest-home/{increment}/track/docs/link"));
    fs::remove_file(&gone).unwrap();
    let (code, json) = env.run_json(&["verify", "home"]);
    assert_eq!(code, 1);
    assert_eq!(json["ok"], false);
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{json:#}");
    assert_eq!(problems[0]["path"], gone.to_str().unwrap());
    assert!(problems[0]["message"].as_str().unwrap().contains("missing"));
}

#[test]
fn verify_deep_catches_same_size_same_mtime_corruption() {
    let env = setup();
    run(&env);
    let a = env.path("dest-home/mirror/docs/a.txt");
    // Rewrite in place (bit rot), keeping size and mtime.
    fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"ALPHA"))
        .unwrap();
    set_mtime(&a, 1_600_000_000);
    let (code, out, _) = env.run(&["verify", "home"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = env.run(&["verify", "home", "--deep"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(a.to_str().unwrap()) && l.contains("content differs")),
        "{out}"
    );
}
