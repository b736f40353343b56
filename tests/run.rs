//! `strata run` / `run-all` on real temp trees: mirror, increments, index,
//! the report, and the safety rules.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{Env, assert_same_tree, inode, set_mtime, snapshot};
use serde_json::Value;

/// A source with tracked documents, an included-only music folder, an
/// excluded cache and a log that exclude_files removes.
fn setup() -> Env {
    let env = Env::new();
    env.write("src-home/docs/a.txt", "alpha");
    env.write("src-home/docs/sub/b.txt", "beta");
    env.write("src-home/docs/debug.log", "noise");
    env.write("src-home/music/song.mp3", "la la");
    env.write("src-home/cache/big.bin", "cached");
    env.write("src-home/top.txt", "top");
    env.write("src-home/.profile", "export X");
    env.symlink("a.txt", "src-home/docs/link");
    env.simple_job(
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["music"], "exclude_dirs": ["cache"],
           "include_files": [".*"], "exclude_files": ["*.log:rec"]"#,
    );
    env
}

fn run_ok(env: &Env, args: &[&str]) -> Value {
    let (code, report) = env.run_json(args);
    assert_eq!(code, 0, "report: {report:#}");
    report
}

fn meta(env: &Env, dest: &str, increment: &str) -> Value {
    let path = env.path(&format!("{dest}/{increment}/{increment}.json"));
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// The records of an increment as (path, op); a directory's path ends in
/// `/` (the source directory itself is `./`).
fn ops(meta: &Value) -> Vec<(String, String)> {
    meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap();
            let path = match (f["kind"].as_str(), path) {
                (Some("dir"), "") => "./".to_string(),
                (Some("dir"), p) => format!("{p}/"),
                (_, p) => p.to_string(),
            };
            (path, f["op"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn first_run_mirrors_the_selection_and_tracks_history() {
    let env = setup();
    let report = run_ok(&env, &["run-all"]);
    let job = &report["jobs"][0];
    assert_eq!(job["status"], "success");
    assert_eq!(job["stats"]["selected"], 5);
    assert_eq!(job["stats"]["tracked"], 3);
    assert_eq!(job["stats"]["new"], 5);

    let mirror = snapshot(&env.path("dest-home/mirror"));
    let names: Vec<&str> = mirror.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            ".profile",
            "docs/a.txt",
            "docs/link",
            "docs/sub/b.txt",
            "music/song.mp3"
        ]
    );
    assert_eq!(mirror["docs/link"], "link -> a.txt");
    assert!(mirror["docs/a.txt"].starts_with("file 644 1600000000 alpha"));

    let incs = env.increments("dest-home");
    assert_eq!(incs.len(), 1);
    let inc = &incs[0];
    let m = meta(&env, "dest-home", inc);
    assert_eq!(m["job"], "home");
    assert_eq!(
        ops(&m),
        [
            ("./".into(), "new".into()),
            ("docs/".into(), "new".into()),
            ("docs/a.txt".into(), "new".into()),
            ("docs/link".into(), "new".into()),
            ("docs/sub/".into(), "new".into()),
            ("docs/sub/b.txt".into(), "new".into()),
        ]
    );
    let a = &m["files"][2];
    assert_eq!(a["kind"], "file");
    assert_eq!(a["size"], 5);
    assert_eq!(a["mode"], 0o644);
    assert_eq!(a["mtime"], "2020-09-13T12:26:40Z");
    assert_eq!(a["hash"].as_str().unwrap().len(), 32);
    // track/ shares the mirror's inodes: unchanged data costs nothing.
    for f in ["docs/a.txt", "docs/sub/b.txt", "docs/link"] {
        assert_eq!(
            inode(&env.path(&format!("dest-home/{inc}/track/{f}"))),
            inode(&env.path(&format!("dest-home/mirror/{f}"))),
            "{f}"
        );
    }
    // Included-only files never enter an increment.
    assert!(!env.path(&format!("dest-home/{inc}/track/music")).exists());
    assert!(
        !env.path(&format!("dest-home/{inc}/track/.profile"))
            .exists()
    );
}

#[test]
fn a_run_without_changes_writes_no_increment_but_is_logged() {
    let env = setup();
    run_ok(&env, &["run-all"]);
    let report = run_ok(&env, &["run", "home"]);
    let stats = &report["jobs"][0]["stats"];
    assert_eq!(
        (stats["new"].as_u64(), stats["changed"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(stats["mirror"], 5);
    assert_eq!(env.increments("dest-home").len(), 1);
    let log = fs::read_to_string(env.path("dest-home/.strata/runs.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2);
    assert!(
        log.lines().all(|l| l.contains("\"status\":\"success\"")),
        "{log}"
    );
}

#[test]
fn changes_additions_and_deletions_land_in_one_increment_and_history_is_never_rewritten() {
    let env = setup();
    run_ok(&env, &["run-all"]);
    let first = env.increments("dest-home")[0].clone();
    let old_mirror_inode = inode(&env.path("dest-home/mirror/docs/a.txt"));

    env.write("src-home/docs/a.txt", "alpha v2, longer");
    set_mtime(&env.path("src-home/docs/a.txt"), 1_600_000_100);
    fs::remove_file(env.path("src-home/docs/sub/b.txt")).unwrap();
    env.write("src-home/docs/c.txt", "gamma");
    env.write("src-home/music/song.mp3", "remixed!");
    set_mtime(&env.path("src-home/music/song.mp3"), 1_600_000_100);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let report = run_ok(&env, &["run-all"]);
    let stats = &report["jobs"][0]["stats"];
    assert_eq!(stats["new"], 1);
    assert_eq!(stats["changed"], 2);
    assert_eq!(stats["deleted"], 1);
    assert_eq!(stats["removed"], 1);
    assert_eq!(stats["mirror"], 5);

    let incs = env.increments("dest-home");
    assert_eq!(incs.len(), 2);
    let second = &incs[1];
    assert_eq!(
        ops(&meta(&env, "dest-home", second)),
        [
            ("docs/".into(), "changed".into()),
            ("docs/a.txt".into(), "changed".into()),
            ("docs/c.txt".into(), "new".into()),
            ("docs/sub/".into(), "changed".into()),
            ("docs/sub/b.txt".into(), "deleted".into()),
        ]
    );
    let read = |p: &str| fs::read_to_string(env.path(p)).unwrap();
    assert_eq!(
        read(&format!("dest-home/{second}/track/docs/a.txt")),
        "alpha v2, longer"
    );
    assert_eq!(
        read(&format!("dest-home/{second}/track/docs/c.txt")),
        "gamma"
    );
    assert_eq!(
        read(&format!("dest-home/{second}/deleted/docs/sub/b.txt")),
        "beta"
    );
    // The first increment still holds the old version: the mirror file was
    // replaced by rename, not rewritten in place (backup.py's bug).
    assert_eq!(
        read(&format!("dest-home/{first}/track/docs/a.txt")),
        "alpha"
    );
    assert_eq!(
        inode(&env.path(&format!("dest-home/{first}/track/docs/a.txt"))),
        old_mirror_inode
    );
    assert_ne!(
        inode(&env.path("dest-home/mirror/docs/a.txt")),
        old_mirror_inode
    );
    assert_eq!(read("dest-home/mirror/music/song.mp3"), "remixed!");
    assert!(
        !env.path(&format!("dest-home/{second}/track/music"))
            .exists()
    );
    // The emptied directory stays: a directory rule covers it (SPEC §2:
    // empty directories are kept like files).
    assert!(env.path("dest-home/mirror/docs/sub").is_dir());
    assert!(
        fs::read_dir(env.path("dest-home/mirror/docs/sub"))
            .unwrap()
            .next()
            .is_none()
    );
    // No temp files or in-progress folders remain.
    assert_eq!(
        fs::read_dir(env.path("dest-home/.strata/tmp"))
            .unwrap()
            .count(),
        0
    );
    assert!(!env.path("dest-home/.strata/dirty").exists());
}

#[test]
fn a_permission_only_change_gets_a_new_inode() {
    let env = setup();
    run_ok(&env, &["run-all"]);
    let first = env.increments("dest-home")[0].clone();
    let src = env.path("src-home/docs/a.txt");
    fs::set_permissions(&src, fs::Permissions::from_mode(0o600)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let report = run_ok(&env, &["run-all"]);
    assert_eq!(report["jobs"][0]["stats"]["changed"], 1);
    let mode = |p: &str| {
        fs::symlink_metadata(env.path(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("dest-home/mirror/docs/a.txt"), 0o600);
    assert_eq!(mode(&format!("dest-home/{first}/track/docs/a.txt")), 0o644);
}

#[test]
fn excluded_dirs_and_files_stay_out() {
    let env = setup();
    run_ok(&env, &["run-all"]);
    let mirror = snapshot(&env.path("dest-home/mirror"));
    assert!(mirror.keys().all(|k| !k.starts_with("cache")), "{mirror:?}");
    assert!(!mirror.contains_key("docs/debug.log"));
    assert!(!mirror.contains_key("top.txt"));
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let env = setup();
    let (code, out, _) = env.run(&["run-all", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("new      docs/a.txt  [history: new]"), "{out}");
    assert!(out.contains("new      music/song.mp3\n"), "{out}");
    assert!(!env.path("dest-home").exists());

    run_ok(&env, &["run-all"]);
    env.write("src-home/docs/a.txt", "changed");
    let before = snapshot(&env.path("dest-home"));
    let (code, value) = env.run_json(&["run-all", "--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(value["jobs"][0]["status"], "dry_run");
    assert_eq!(value["plans"][0]["changes"][0]["path"], "docs/a.txt");
    assert_eq!(value["plans"][0]["changes"][0]["op"], "changed");
    assert_same_tree(&before, &snapshot(&env.path("dest-home")));
}

#[test]
fn jobs_run_concurrently_and_the_report_adds_up() {
    let env = setup();
    env.write("src-work/a", "1");
    env.write("src-work/b/c", "2");
    env.simple_job("work", r#""include_dirs": ["."]"#);
    let report = run_ok(&env, &["--threads", "4", "run-all"]);
    let jobs = report["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["job"], "home");
    assert_eq!(jobs[1]["job"], "work");
    assert_eq!(jobs[1]["stats"]["new"], 2);
    assert_eq!(report["totals"]["new"], 7);
    assert!(
        env.increments("dest-work").is_empty(),
        "included-only: no increment"
    );
    let (code, out, err) = env.run(&["run-all"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("TOTAL"), "{out}");
}

#[test]
fn a_broken_job_file_does_not_stop_the_others() {
    let env = setup();
    env.job("broken", "{\"source\": ");
    let (code, report) = env.run_json(&["run-all"]);
    assert_eq!(code, 1);
    let jobs = report["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let broken = jobs
        .iter()
        .find(|j| j["job"].as_str().unwrap().ends_with("broken.json"));
    assert_eq!(broken.unwrap()["status"], "failed");
    let home = jobs.iter().find(|j| j["job"] == "home").unwrap();
    assert_eq!(home["status"], "success");
    assert!(env.path("dest-home/mirror/docs/a.txt").exists());
}

#[test]
fn disabled_jobs_are_skipped_by_run_all_but_run_by_name() {
    let env = Env::new();
    env.write("src-off/a", "1");
    env.simple_job("off", r#""include_dirs": ["."], "enabled": false"#);
    let report = run_ok(&env, &["run-all"]);
    assert_eq!(report["jobs"].as_array().unwrap().len(), 0);
    let report = run_ok(&env, &["run", "off"]);
    assert_eq!(report["jobs"][0]["stats"]["new"], 1);
    let (code, _, err) = env.run(&["run", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_missing_source_fails_and_leaves_the_backup_whole() {
    let env = setup();
    run_ok(&env, &["run-all"]);
    let before = snapshot(&env.path("dest-home"));
    fs::rename(env.path("src-home"), env.path("elsewhere")).unwrap();
    let (code, report) = env.run_json(&["run-all"]);
    assert_eq!(code, 1);
    assert_eq!(report["jobs"][0]["status"], "failed");
    let message = report["jobs"][0]["message"].as_str().unwrap();
    assert!(message.contains("src-home"), "{message}");
    let mut after = snapshot(&env.path("dest-home"));
    after.remove(".strata/runs.jsonl");
    let mut before = before;
    before.remove(".strata/runs.jsonl");
    assert_same_tree(&before, &after);
}

#[test]
fn an_empty_source_never_empties_the_mirror_unless_forced() {
    let env = setup();
    run_ok(&env, &["run-all"]);
    let mirror = snapshot(&env.path("dest-home/mirror"));
    fs::remove_dir_all(env.path("src-home")).unwrap();
    fs::create_dir(env.path("src-home")).unwrap();
    let (code, report) = env.run_json(&["run-all"]);
    assert_eq!(code, 1);
    let message = report["jobs"][0]["message"].as_str().unwrap();
    assert!(message.contains("--force"), "{message}");
    assert_same_tree(&mirror, &snapshot(&env.path("dest-home/mirror")));

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let report = run_ok(&env, &["run", "home", "--force"]);
    assert_eq!(report["jobs"][0]["stats"]["deleted"], 3);
    assert!(snapshot(&env.path("dest-home/mirror")).is_empty());
    let last = env.increments("dest-home").pop().unwrap();
    assert_eq!(
        fs::read_to_string(env.path(&format!("dest-home/{last}/deleted/docs/a.txt"))).unwrap(),
        "alpha"
    );
}

#[test]
fn an_unreadable_file_keeps_its_old_version_and_is_retried() {
    let env = setup();
    run_ok(&env, &["run-all"]);
    env.write("src-home/docs/a.txt", "new content");
    set_mtime(&env.path("src-home/docs/a.txt"), 1_600_000_500);
    env.write("src-home/docs/d.txt", "delta");
    let out = env
        .strata()
        .env("STRATA_FAULT_UNREADABLE", "docs/a.txt")
        .args(["--json", "run-all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = &report["jobs"][0];
    assert_eq!(job["status"], "partial");
    assert_eq!(job["errors"][0]["path"], "docs/a.txt");
    assert!(
        job["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cannot read")
    );
    assert_eq!(
        fs::read_to_string(env.path("dest-home/mirror/docs/a.txt")).unwrap(),
        "alpha"
    );
    assert_eq!(
        fs::read_to_string(env.path("dest-home/mirror/docs/d.txt")).unwrap(),
        "delta"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let report = run_ok(&env, &["run-all"]);
    assert_eq!(report["jobs"][0]["stats"]["changed"], 1);
    assert_eq!(
        fs::read_to_string(env.path("dest-home/mirror/docs/a.txt")).unwrap(),
        "new content"
    );
}

#[test]
fn a_locked_job_is_skipped_not_failed() {
    use std::os::fd::AsRawFd;
    let env = setup();
    run_ok(&env, &["run-all"]);
    let lock = fs::File::open(env.path("dest-home/.strata/lock")).unwrap();
    // SAFETY: flock on an fd this test owns.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    env.write("src-home/docs/new.txt", "x");
    let report = run_ok(&env, &["run-all"]);
    assert_eq!(report["jobs"][0]["status"], "skipped_locked");
    assert!(!env.path("dest-home/mirror/docs/new.txt").exists());
    drop(lock);
    let report = run_ok(&env, &["run-all"]);
    assert_eq!(report["jobs"][0]["stats"]["new"], 1);
}

#[test]
fn symlinks_are_stored_never_followed() {
    let env = Env::new();
    env.write("outside/secret.txt", "secret");
    env.write("src-l/a.txt", "a");
    env.symlink(env.path("outside").to_str().unwrap(), "src-l/out");
    env.symlink("missing", "src-l/dangling");
    env.simple_job("l", r#""track_dirs": ["."]"#);
    run_ok(&env, &["run-all"]);
    let mirror = snapshot(&env.path("dest-l/mirror"));
    assert_eq!(mirror.len(), 3, "{mirror:?}");
    assert_eq!(mirror["dangling"], "link -> missing");
    assert!(mirror["out"].starts_with("link -> /"));
}

#[test]
fn a_file_replaced_by_a_directory_and_back() {
    let env = Env::new();
    env.write("src-k/thing", "a file");
    env.simple_job("k", r#""track_dirs": ["."]"#);
    run_ok(&env, &["run-all"]);
    fs::remove_file(env.path("src-k/thing")).unwrap();
    env.write("src-k/thing/inner", "now a dir");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run_ok(&env, &["run-all"]);
    let inc = env.increments("dest-k").pop().unwrap();
    assert_eq!(
        ops(&meta(&env, "dest-k", &inc)),
        [
            ("./".into(), "changed".into()),
            ("thing".into(), "deleted".into()),
            ("thing/".into(), "new".into()),
            ("thing/inner".into(), "new".into())
        ]
    );
    fs::remove_dir_all(env.path("src-k/thing")).unwrap();
    env.write("src-k/thing", "a file again");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run_ok(&env, &["run-all"]);
    assert_eq!(
        fs::read_to_string(env.path("dest-k/mirror/thing")).unwrap(),
        "a file again"
    );
}

#[test]
fn becoming_tracked_enters_history_and_leaving_it_keeps_the_last_version() {
    let env = Env::new();
    env.write("src-t/a/x", "x1");
    env.simple_job("t", r#""include_dirs": ["."]"#);
    run_ok(&env, &["run-all"]);
    assert!(env.increments("dest-t").is_empty());
    env.simple_job("t", r#""include_dirs": ["."], "track_dirs": ["a"]"#);
    run_ok(&env, &["run-all"]);
    let inc = env.increments("dest-t").pop().unwrap();
    assert_eq!(
        ops(&meta(&env, "dest-t", &inc)),
        [
            ("./".into(), "new".into()),
            ("a/".into(), "new".into()),
            ("a/x".into(), "new".into())
        ]
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.simple_job("t", r#""include_dirs": ["."]"#);
    run_ok(&env, &["run-all"]);
    let inc = env.increments("dest-t").pop().unwrap();
    assert_eq!(
        ops(&meta(&env, "dest-t", &inc)),
        [
            ("./".into(), "deleted".into()),
            ("a/".into(), "deleted".into()),
            ("a/x".into(), "deleted".into())
        ]
    );
    assert_eq!(
        fs::read_to_string(env.path(&format!("dest-t/{inc}/deleted/a/x"))).unwrap(),
        "x1"
    );
    assert!(env.path("dest-t/mirror/a/x").exists());
}

#[test]
fn marker_files_and_cache_tags_exclude_their_directories() {
    let env = Env::new();
    env.write("src-m/keep/a", "a");
    env.write("src-m/skip/.nobackup", "");
    env.write("src-m/skip/b", "b");
    env.write("src-m/deep/er/.nobackup", "");
    env.write("src-m/deep/er/c", "c");
    env.write("src-m/deep/d", "d");
    env.write(
        "src-m/cache/CACHEDIR.TAG",
        "Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    env.write("src-m/cache/blob", "cached");
    env.write("src-m/fake-cache/CACHEDIR.TAG", "not a real tag");
    env.write("src-m/fake-cache/data", "kept");
    env.simple_job(
        "m",
        r#""track_dirs": ["."], "exclude_if_present": [".nobackup"], "exclude_caches": true"#,
    );
    run_ok(&env, &["run-all"]);
    let names: Vec<String> = snapshot(&env.path("dest-m/mirror")).into_keys().collect();
    assert_eq!(
        names,
        [
            "deep/d",
            "fake-cache/CACHEDIR.TAG",
            "fake-cache/data",
            "keep/a"
        ]
    );
}

/// atime of `path` (not following a symlink), in seconds.
fn atime(path: &std::path::Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).unwrap().atime()
}

#[test]
fn a_run_leaves_the_source_access_times_as_they_were() {
    let env = setup();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Read two days ago, written three days ago: under relatime (the
    // default) the next read moves the atime, so a mail reader that
    // compares them would lose its "new mail".
    let age = |path: &std::path::Path| {
        filetime::set_symlink_file_times(
            path,
            filetime::FileTime::from_unix_time(now - 2 * 86400, 0),
            filetime::FileTime::from_unix_time(now - 3 * 86400, 0),
        )
        .unwrap()
    };
    let control = env.write("control.txt", "read by the test");
    age(&control);
    fs::read(&control).unwrap();
    if atime(&control) == now - 2 * 86400 {
        eprintln!("skipping: this filesystem does not update atimes on read (noatime)");
        return;
    }
    let source = env.path("src-home");
    let mut paths = vec![source.clone()];
    for dir in ["docs", "docs/sub", "music"] {
        paths.push(source.join(dir));
    }
    for file in [
        "docs/a.txt",
        "docs/sub/b.txt",
        "music/song.mp3",
        "top.txt",
        ".profile",
    ] {
        paths.push(source.join(file));
    }
    for path in &paths {
        age(path);
    }
    run_ok(&env, &["run", "home"]);
    assert_eq!(
        fs::read(env.path("dest-home/mirror/docs/sub/b.txt")).unwrap(),
        b"beta"
    );
    for path in &paths {
        assert_eq!(
            atime(path),
            now - 2 * 86400,
            "{} was read with its atime moved",
            path.display()
        );
    }
    // A change is read again, still without moving its atime.
    fs::write(source.join("docs/a.txt"), "alpha 2").unwrap();
    age(&source.join("docs/a.txt"));
    run_ok(&env, &["run", "home"]);
    assert_eq!(
        fs::read(env.path("dest-home/mirror/docs/a.txt")).unwrap(),
        b"alpha 2"
    );
    assert_eq!(atime(&source.join("docs/a.txt")), now - 2 * 86400);
    assert_eq!(atime(&source.join("docs")), now - 2 * 86400);
}
