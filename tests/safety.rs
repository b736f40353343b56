//! Issue 14, items 1–9: the guards that keep a backup from writing to a
//! missing disk, from handing back wrong data, from getting stuck after a
//! crash, and from hanging on a FIFO. Each test drives the real binary on
//! real temp trees: a moved or unmounted destination, a tmpfs unmounted
//! inside the source, a small tmpfs that fills up (ENOSPC), `faketime` for
//! a clock set back, kill -9 by PID and the fault points, FIFOs.
//!
//! Tests that mount need root, the clock test needs faketime
//! (scripts/test-deps.sh installs it); without them they skip, saying why.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::kill::{Saved, abort_at, fault_points, is_file, kill_when};
use common::{
    Env, Tmpfs, assert_same_tree, inode, output_within, running_as_root, set_mtime, snapshot,
};
use serde_json::Value;

fn message(report: &Value) -> String {
    format!(
        "{} {}",
        report["jobs"][0]["message"], report["jobs"][0]["errors"]
    )
}

/// Every entry below `root` (symlinks not followed), relative.
fn names_below(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

// ---------------------------------------------------------------- item 1

#[test]
fn a_missing_destination_is_never_recreated() {
    let env = Env::new();
    env.write("src-a/f.txt", "data");
    env.simple_job("a", r#""track_dirs": ["."]"#);
    let (code, report) = env.run_json(&["run", "a"]);
    assert_eq!(code, 0, "{report:#}");
    let dest = env.path("dest-a");

    // The disk is not mounted: its folder is gone.
    fs::rename(&dest, env.path("dest-a.off")).unwrap();
    let (code, report) = env.run_json(&["run", "a"]);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        message(&report).contains("is the disk mounted"),
        "{report:#}"
    );
    assert!(!dest.exists(), "the destination was created again");
    // `history` says so too, instead of "no increments yet".
    let (code, out, err) = env.run(&["history", "a"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        !format!("{out}{err}").contains("no increments"),
        "{out}{err}"
    );
    assert!(!dest.exists());

    // An empty mount point where the destination was.
    fs::create_dir(&dest).unwrap();
    let (code, report) = env.run_json(&["run", "a"]);
    assert_eq!(code, 1, "{report:#}");
    assert!(message(&report).contains("mounted"), "{report:#}");
    assert!(names_below(&dest).is_empty(), "{:?}", names_below(&dest));

    // --init starts a new history on purpose.
    let (code, report) = env.run_json(&["run", "a", "--init"]);
    assert_eq!(code, 0, "{report:#}");
    assert_same_tree(
        &snapshot(&env.path("src-a")),
        &snapshot(&dest.join("mirror")),
    );
    assert_eq!(env.increments("dest-a").len(), 1);
    let (code, report) = env.run_json(&["run", "a"]);
    assert_eq!(code, 0, "{report:#}");

    // A destination below a folder that does not exist (a disk's mount
    // point without its backups/ folder): never created, --init or not.
    env.job(
        "u",
        r#"{"source": "../src-a", "destination": "../mnt/usbdisk/backups/t", "track_dirs": ["."]}"#,
    );
    for init in [false, true] {
        let mut args = vec!["run", "u"];
        if init {
            args.push("--init");
        }
        let (code, report) = env.run_json(&args);
        assert_eq!(code, 1, "{report:#}");
        assert!(message(&report).contains("mounted"), "{report:#}");
        assert!(!env.path("mnt").exists(), "parents were created");
    }
}

#[test]
fn a_dry_run_says_when_a_real_run_would_refuse_the_destination() {
    let env = Env::new();
    env.write("src-a/f.txt", "data");
    env.simple_job("a", r#""track_dirs": ["."]"#);
    assert_eq!(env.run_json(&["run", "a"]).0, 0);
    fs::rename(env.path("dest-a"), env.path("dest-a.off")).unwrap();
    env.job(
        "u",
        r#"{"source": "../src-a", "destination": "../mnt/usbdisk/backups/t", "track_dirs": ["."]}"#,
    );
    env.write("dest-f/mirror/keep.txt", "someone else's");
    env.job(
        "f",
        r#"{"source": "../src-a", "destination": "../dest-f", "track_dirs": ["."]}"#,
    );
    for job in ["a", "u", "f"] {
        let (_, report) = env.run_json(&["run", job, "--dry-run"]);
        let said = format!("{} {}", message(&report), report["jobs"][0]["warnings"]);
        assert!(
            said.contains("a real run would fail") || report["jobs"][0]["status"] == "failed",
            "{job}: {report:#}"
        );
    }
    assert!(!env.path("dest-a").exists() && !env.path("mnt").exists());
}

// ---------------------------------------------------------------- item 2

#[test]
fn an_unmounted_disk_inside_the_source_keeps_its_part_of_the_mirror() {
    if !running_as_root("an_unmounted_disk_inside_the_source_keeps_its_part_of_the_mirror") {
        return;
    }
    let env = Env::new();
    env.write("src-m/t/tracked.txt", "tracked");
    // An included-only disk, and a tracked one deeper down.
    let disk = Tmpfs::mount(&env.path("src-m/disk"), "size=4m");
    env.write("src-m/disk/a.txt", "on the disk");
    env.write("src-m/disk/sub/b.txt", "deeper on the disk");
    let photos = Tmpfs::mount(&env.path("src-m/t/photos/2024"), "size=4m");
    env.write("src-m/t/photos/2024/p.jpg", "a tracked photo");
    env.simple_job("m", r#""track_dirs": ["t"], "include_dirs": ["disk"]"#);
    let (code, report) = env.run_json(&["run", "m"]);
    assert_eq!(code, 0, "{report:#}");
    let mirror = env.path("dest-m/mirror");
    let with_disk = snapshot(&mirror);
    assert!(with_disk.contains_key("disk/sub/b.txt"), "{with_disk:?}");
    assert!(
        with_disk.contains_key("t/photos/2024/p.jpg"),
        "{with_disk:?}"
    );
    let mode = |rel: &str| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(mirror.join(rel)).unwrap().permissions().mode() & 0o7777
    };
    let disk_root_mode = mode("t/photos/2024");

    disk.unmount();
    photos.unmount();
    for _ in 0..2 {
        let (code, report) = env.run_json(&["run", "m"]);
        assert_eq!(code, 1, "{report:#}");
        let job = &report["jobs"][0];
        assert_eq!(job["status"], "partial", "{report:#}");
        for point in ["disk", "t/photos/2024"] {
            let named =
                job["errors"].as_array().unwrap().iter().any(|e| {
                    e["path"] == point && e["message"].as_str().unwrap().contains("mount")
                });
            assert!(named, "the mount point {point} is not named: {report:#}");
        }
        assert_same_tree(&with_disk, &snapshot(&mirror));
        // Nothing recorded: not the files' deletion, nor the mode and
        // times of the folder the unmount uncovered (the disk's root
        // folder's are kept with the rest).
        assert_eq!(env.increments("dest-m").len(), 1, "{report:#}");
        assert_eq!(mode("t/photos/2024"), disk_root_mode);
    }
    // --force accepts them as empty: the tracked photo's deletion is
    // recorded, its last version kept in the increment.
    let (code, report) = env.run_json(&["run", "m", "--force"]);
    assert_eq!(code, 0, "{report:#}");
    assert!(!mirror.join("disk/a.txt").exists());
    assert_same_tree(&snapshot(&env.path("src-m")), &snapshot(&mirror));
    let inc = env.increments("dest-m").pop().unwrap();
    assert_eq!(
        fs::read_to_string(env.path(&format!("dest-m/{inc}/deleted/t/photos/2024/p.jpg"))).unwrap(),
        "a tracked photo"
    );
}

// ---------------------------------------------------------------- item 3

#[test]
fn a_foreign_mirror_folder_is_refused_and_left_alone() {
    let env = Env::new();
    env.write("src-f/mine.txt", "strata's to back up");
    env.write("dest-f/mirror/keep.txt", "someone else's");
    env.write("dest-f/mirror/sub/deeper.txt", "someone else's too");
    env.simple_job("f", r#""track_dirs": ["."]"#);
    let before = snapshot(&env.path("dest-f"));
    for init in [false, true] {
        let mut args = vec!["run", "f"];
        if init {
            args.push("--init");
        }
        let (code, report) = env.run_json(&args);
        assert_eq!(code, 1, "{report:#}");
        assert!(message(&report).contains("mirror/"), "{report:#}");
        assert_same_tree(&before, &snapshot(&env.path("dest-f")));
        assert!(!env.path("dest-f/.strata").exists());
        assert_eq!(env.increments("dest-f"), Vec::<String>::new());
    }
}

// ---------------------------------------------------------------- item 4

/// `strata ARGS` with the clock starting at `when` (libfaketime preloaded
/// into strata itself: the `faketime` wrapper keeps a semaphore per PID in
/// /dev/shm, and one a killed wrapper left makes a later wrapper with the
/// same PID fail with "sem_open: File exists").
fn at_time(env: &Env, when: &str, args: &[&str]) -> (i32, String, String) {
    let lib = common::libfaketime().expect("checked by the caller");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .env("LD_PRELOAD", lib)
        .env("FAKETIME", format!("@{when}"))
        .env_remove("FAKETIME_FMT")
        .current_dir(env.root())
        .env_remove("STRATA_JOBS_DIR")
        .env_remove("STRATA_FAULT")
        .env_remove("STRATA_FAULT_TRACE")
        .env("STRATA_STATE_DIR", env.state_dir())
        .arg("--jobs-dir")
        .arg(env.jobs())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `f.txt` as a restore gives it back (`--at` given or the latest state).
fn restored(env: &Env, job: &str, at: Option<&str>) -> String {
    let to = env.path("restored");
    let _ = fs::remove_dir_all(&to);
    let mut args = vec!["restore", job, "--to", to.to_str().unwrap()];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    let (code, out, err) = env.run(&args);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    let body = fs::read_to_string(to.join("f.txt")).unwrap();
    fs::remove_dir_all(&to).unwrap();
    body
}

#[test]
fn a_clock_set_back_never_reorders_the_history() {
    if common::libfaketime().is_none() {
        return;
    }
    let env = Env::new();
    let write = |body: &str, secs: i64| {
        let p = env.write("src-c/f.txt", body);
        set_mtime(&p, secs);
    };
    env.simple_job("c", r#""track_dirs": ["."]"#);
    write("v1", 1_600_000_000);
    assert_eq!(env.run_json(&["run", "c"]).0, 0);
    write("v2 longer", 1_600_000_100);
    assert_eq!(env.run_json(&["run", "c"]).0, 0);
    let newest = env.increments("dest-c").pop().unwrap();

    // The clock is set back to 2020.
    write("v3 longer still", 1_600_000_200);
    let (code, out, err) = at_time(&env, "2020-01-01 00:00:00", &["run", "c"]);
    assert_eq!(code, 1, "{out}{err}");
    let said = format!("{out}{err}");
    assert!(
        said.contains("2020-01-01"),
        "the run's time is not named: {said}"
    );
    assert!(
        said.contains(&newest),
        "the newest increment is not named: {said}"
    );
    assert_eq!(env.increments("dest-c").len(), 2, "the refused run wrote");
    assert_eq!(
        fs::read_to_string(env.path("dest-c/mirror/f.txt")).unwrap(),
        "v2 longer"
    );

    // --force orders it after the newest.
    let (code, out, err) = at_time(&env, "2020-01-01 00:00:00", &["run", "c", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let incs = env.increments("dest-c");
    assert_eq!(incs.len(), 3, "{incs:?}");
    let last = incs.last().unwrap();
    assert_eq!(&incs[1], &newest, "{incs:?}");
    assert_eq!(
        fs::read_to_string(env.path(&format!("dest-c/{last}/track/f.txt"))).unwrap(),
        "v3 longer still"
    );
    let now = chrono::Utc::now().to_rfc3339();
    assert_eq!(restored(&env, "c", Some(&now)), "v3 longer still");
    assert_eq!(restored(&env, "c", Some(last)), "v3 longer still");
    assert_eq!(restored(&env, "c", None), "v3 longer still");
    let (code, out, err) = env.run(&["verify", "c", "--deep"]);
    assert_eq!(code, 0, "{out}{err}");

    // Prune, by either clock, never drops the only copy of what the latest
    // state holds.
    env.simple_job(
        "c",
        r#""track_dirs": ["."], "retention": {"keep_within": "1d"}"#,
    );
    let (code, out, err) = at_time(&env, "2020-01-01 00:00:00", &["prune", "c"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = env.run(&["prune", "c"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(env.increments("dest-c").contains(last));
    assert_eq!(restored(&env, "c", Some(&now)), "v3 longer still");
    let (code, out, err) = env.run(&["verify", "c", "--deep"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// What the pre-rewrite strata wrote under a clock set back: the run that
/// brought v3 named `backup_20200101_000000`, sorting first.
#[test]
fn a_misordered_history_never_loses_the_version_the_mirror_holds() {
    let env = Env::new();
    env.simple_job("c", r#""track_dirs": ["."]"#);
    for (body, secs) in [("v1", 1_600_000_000), ("v2 longer", 1_600_000_100)] {
        set_mtime(&env.write("src-c/f.txt", body), secs);
        assert_eq!(env.run_json(&["run", "c"]).0, 0);
    }
    set_mtime(&env.write("src-c/f.txt", "v3 longer still"), 1_600_000_200);
    assert_eq!(env.run_json(&["run", "c"]).0, 0);
    let newest = env.increments("dest-c").pop().unwrap();
    let old = "backup_20200101_000000";
    let dest = env.path("dest-c");
    fs::rename(dest.join(&newest), dest.join(old)).unwrap();
    let meta = fs::read_to_string(dest.join(old).join(format!("{newest}.json"))).unwrap();
    fs::remove_file(dest.join(old).join(format!("{newest}.json"))).unwrap();
    fs::write(
        dest.join(old).join(format!("{old}.json")),
        meta.replace(&newest, old),
    )
    .unwrap();
    // The history's latest state (v2) is not the mirror's (v3): verify
    // says so.
    let (code, out, err) = env.run(&["verify", "c"]);
    assert_eq!(code, 1, "{out}{err}");
    // Prune keeps an increment copy of v3, which the mirror holds.
    env.simple_job(
        "c",
        r#""track_dirs": ["."], "retention": {"keep_within": "1d"}"#,
    );
    let (code, out, err) = env.run(&["prune", "c"]);
    assert_eq!(code, 0, "{out}{err}");
    let held = env.increments("dest-c").iter().any(|inc| {
        fs::read_to_string(dest.join(inc).join("track/f.txt")).is_ok_and(|b| b == "v3 longer still")
    });
    assert!(
        held,
        "no increment holds v3 any more: {:?}",
        env.increments("dest-c")
    );
}

// ---------------------------------------------------------------- item 5

/// `restore --at` each increment: the trees, oldest first.
fn restore_each(env: &Env, job: &str, dest: &str) -> Vec<BTreeMap<String, String>> {
    let mut trees = Vec::new();
    for inc in env.increments(dest) {
        let to = env.path(&format!("restored-{inc}"));
        let _ = fs::remove_dir_all(&to);
        let args = ["restore", job, "--to", to.to_str().unwrap(), "--at", &inc];
        let (code, out, err) = env.run(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        trees.push(snapshot(&to));
        fs::remove_dir_all(&to).unwrap();
    }
    trees
}

#[test]
fn a_folder_that_became_a_file_never_leaves_recovery_stuck() {
    let env = Env::new();
    // `a/` sorts first: the mirror shows its change while the big files
    // are still being copied.
    env.write("src-k/a/z", "z in a folder");
    env.write("src-k/a/sub/w", "w deeper");
    for i in 0..3 {
        env.write(&format!("src-k/zz/big{i}"), &"1".repeat(512 << 10));
    }
    env.simple_job("k", r#""track_dirs": ["."]"#);
    assert_eq!(env.run_json(&["run", "k"]).0, 0);
    let first = snapshot(&env.path("src-k"));
    fs::remove_dir_all(env.path("src-k/a")).unwrap();
    env.write("src-k/a", "a is a file now");
    for i in 0..3 {
        let big = env.write(&format!("src-k/zz/big{i}"), &"2".repeat(512 << 10));
        set_mtime(&big, 1_600_000_100);
    }
    let second = snapshot(&env.path("src-k"));
    let dest = env.path("dest-k");
    let saved = Saved::new(&env, "dest-k");
    let check = |context: &str| {
        // Every later run succeeds.
        for n in 0..2 {
            let (code, report) = env.run_json(&["run", "k"]);
            assert_eq!(code, 0, "{context}, run {n}: {}", message(&report));
        }
        assert_same_tree(&second, &snapshot(&dest.join("mirror")));
        let trees = restore_each(&env, "k", "dest-k");
        assert_eq!(trees.len(), 2, "{context}");
        assert_same_tree(&first, &trees[0]);
        assert_same_tree(&second, &trees[1]);
        let (code, out, err) = env.run(&["verify", "k"]);
        assert_eq!(code, 0, "{context}: {out}{err}");
    };
    let mut landed = 0;
    for round in 0..6 {
        saved.put_back();
        landed += usize::from(kill_when(&env, &["run", "k"], || {
            is_file(&dest.join("mirror/a"))
        }));
        check(&format!("SIGKILL round {round}"));
    }
    eprintln!("{landed} of 6 kills landed while the run was under way");
    saved.put_back();
    let points = fault_points(&env, &["run", "k"]);
    check("the uninterrupted run");
    assert!(points.len() > 10, "{points:?}");
    for rule in &points {
        saved.put_back();
        abort_at(&env, &["run", "k"], rule);
        check(&format!("abort at {rule}"));
    }
}

// ---------------------------------------------------------------- item 6

/// The names at the top of each committed increment that strata does not
/// write there (a temp file left inside committed state).
fn debris_in_increments(env: &Env, dest: &str) -> Vec<String> {
    let mut debris = Vec::new();
    for inc in env.increments(dest) {
        let dir = env.path(dest).join(&inc);
        for name in names_below(&dir) {
            let top = name.split('/').next().unwrap();
            let known = top == "track" || top == "deleted" || top == format!("{inc}.json");
            let hidden = name.split('/').any(|c| c.starts_with('.'));
            if !known || hidden {
                debris.push(format!("{inc}/{name}"));
            }
        }
    }
    debris
}

/// Nothing in the job's temp folder, no prune journal or folder left.
fn assert_no_state_debris(dest: &Path, context: &str) {
    let tmp = dest.join(".strata/tmp");
    let left = if tmp.exists() {
        names_below(&tmp)
    } else {
        Vec::new()
    };
    assert!(left.is_empty(), "{context}: temp files left: {left:?}");
    let pruning = dest.join(".strata/pruning");
    let left = if pruning.exists() {
        names_below(&pruning)
    } else {
        Vec::new()
    };
    assert!(left.is_empty(), "{context}: prune debris left: {left:?}");
}

/// A tracked tree whose increments carry big metadata (long names, no
/// data), on a tmpfs at `disk/`; its second run changes every file.
fn big_metadata_job(env: &Env) -> Tmpfs {
    let long = "m".repeat(140);
    for i in 0..300 {
        env.write(&format!("src-t/d{}/{long}-{i:03}", i % 3), "");
    }
    env.job(
        "t",
        r#"{"source": "../src-t", "destination": "../disk/dest", "track_dirs": ["."]}"#,
    );
    Tmpfs::mount(&env.path("disk"), "size=64m")
}

fn touch_all(env: &Env, secs: i64) {
    for entry in walkdir::WalkDir::new(env.path("src-t")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            set_mtime(entry.path(), secs);
        }
    }
}

#[test]
fn a_full_disk_or_a_kill_while_the_metadata_is_written_leaves_no_temp_in_history() {
    if !running_as_root(
        "a_full_disk_or_a_kill_while_the_metadata_is_written_leaves_no_temp_in_history",
    ) {
        return;
    }
    let env = Env::new();
    let disk = big_metadata_job(&env);
    assert_eq!(env.run_json(&["run", "t"]).0, 0);
    touch_all(&env, 1_600_000_100);
    let saved = Saved::new(&env, "disk/dest");
    // How big the second run's metadata is.
    assert_eq!(env.run_json(&["run", "t"]).0, 0);
    let inc = env.increments("disk/dest").pop().unwrap();
    let meta_size = fs::metadata(env.path(&format!("disk/dest/{inc}/{inc}.json")))
        .unwrap()
        .len();
    assert!(meta_size > 64 << 10, "{meta_size}");
    let after = |context: &str| {
        let (code, report) = env.run_json(&["run", "t"]);
        assert_eq!(code, 0, "{context}, then: {}", message(&report));
        let debris = debris_in_increments(&env, "disk/dest");
        assert!(debris.is_empty(), "{context}: {debris:?}");
        assert_no_state_debris(&env.path("disk/dest"), context);
        let (code, out, err) = env.run(&["verify", "t", "--deep"]);
        assert_eq!(code, 0, "{context}: {out}{err}");
        assert_eq!(env.increments("disk/dest").len(), 2, "{context}");
    };
    // ENOSPC at each size from nothing free to the metadata's size.
    let mut full = 0;
    let step = (meta_size / 10).max(4096);
    for free in (0..meta_size + 2 * step).step_by(step as usize) {
        disk.remount("size=64m");
        saved.put_back();
        disk.leave_bytes(free);
        let (code, report) = env.run_json(&["run", "t"]);
        full += usize::from(code == 1 && message(&report).contains("No space left"));
        disk.remount("size=64m");
        after(&format!("{free} bytes free: exit {code}"));
    }
    assert!(full > 0, "no run met a full disk");
    // kill -9 at every point of the commit.
    disk.remount("size=64m");
    saved.put_back();
    let points = fault_points(&env, &["run", "t"]);
    let commit: Vec<&String> = points.iter().filter(|p| p.contains("commit.")).collect();
    assert!(commit.len() >= 4, "{points:?}");
    for rule in commit {
        saved.put_back();
        abort_at(&env, &["run", "t"], rule);
        after(&format!("abort at {rule}"));
    }
}

#[test]
fn an_interrupted_prune_leaves_no_stray_temp() {
    if !running_as_root("an_interrupted_prune_leaves_no_stray_temp") {
        return;
    }
    let env = Env::new();
    let disk = big_metadata_job(&env);
    for secs in [1_600_000_000, 1_600_000_100, 1_600_000_200] {
        touch_all(&env, secs);
        assert_eq!(env.run_json(&["run", "t"]).0, 0);
    }
    env.job(
        "t",
        r#"{"source": "../src-t", "destination": "../disk/dest", "track_dirs": ["."],
            "retention": {"keep_last": 1}}"#,
    );
    let newest = env.increments("disk/dest").pop().unwrap();
    let want = snapshot(&env.path("src-t"));
    let saved = Saved::new(&env, "disk/dest");
    let after = |context: &str| {
        let (code, out, err) = env.run(&["prune", "t"]);
        assert_eq!(code, 0, "{context}, then: {out}{err}");
        assert_eq!(
            env.increments("disk/dest"),
            std::slice::from_ref(&newest),
            "{context}"
        );
        let debris = debris_in_increments(&env, "disk/dest");
        assert!(debris.is_empty(), "{context}: {debris:?}");
        assert_no_state_debris(&env.path("disk/dest"), context);
        let (code, out, err) = env.run(&["verify", "t", "--deep"]);
        assert_eq!(code, 0, "{context}: {out}{err}");
        assert_same_tree(&want, &restore_each(&env, "t", "disk/dest")[0]);
    };
    // ENOSPC at each size, from nothing free to the merged metadata's.
    let meta_size = fs::metadata(env.path(&format!("disk/dest/{newest}/{newest}.json")))
        .unwrap()
        .len();
    let mut full = 0;
    let step = (meta_size / 6).max(4096);
    for free in (0..2 * meta_size).step_by(step as usize) {
        disk.remount("size=64m");
        saved.put_back();
        disk.leave_bytes(free);
        let (code, out, err) = env.run(&["prune", "t"]);
        full += usize::from(code != 0 && format!("{out}{err}").contains("No space left"));
        disk.remount("size=64m");
        after(&format!("{free} bytes free: exit {code}"));
    }
    assert!(full > 0, "no prune met a full disk");
    // kill -9 at every step of the merge.
    disk.remount("size=64m");
    saved.put_back();
    let points = fault_points(&env, &["prune", "t"]);
    assert!(points.len() >= 4, "{points:?}");
    for rule in &points {
        saved.put_back();
        abort_at(&env, &["prune", "t"], rule);
        after(&format!("abort at {rule}"));
    }
}

#[test]
fn a_killed_restore_leaves_no_temp_and_force_completes_it() {
    let env = Env::new();
    for i in 0..200 {
        env.write(
            &format!("src-r/docs/f{i:03}"),
            &format!("{i:03}").repeat(20_000),
        );
    }
    env.simple_job("r", r#""track_dirs": ["."]"#);
    assert_eq!(env.run_json(&["run", "r"]).0, 0);
    let want = snapshot(&env.path("src-r"));
    let mut landed = 0;
    for round in 0..3 {
        let to = env.path(&format!("to{round}"));
        let docs = to.join("docs");
        landed += usize::from(kill_when(
            &env,
            &["restore", "r", "--to", to.to_str().unwrap()],
            || fs::read_dir(&docs).is_ok_and(|d| d.count() >= 20),
        ));
        // Only names the backup holds: no temp file.
        let stray: Vec<String> = names_below(&to)
            .into_iter()
            .filter(|n| n != "docs" && !want.contains_key(n))
            .collect();
        assert!(stray.is_empty(), "round {round}: {stray:?}");
        let (code, out, err) = env.run(&["restore", "r", "--force", "--to", to.to_str().unwrap()]);
        assert_eq!(code, 0, "round {round}: {out}{err}");
        assert_same_tree(&want, &snapshot(&to));
    }
    eprintln!("{landed} of 3 kills landed while the restore was under way");
}

// ---------------------------------------------------------------- item 7

#[test]
fn a_full_disk_while_the_index_is_written_is_reported_as_committed() {
    if !running_as_root("a_full_disk_while_the_index_is_written_is_reported_as_committed") {
        return;
    }
    let env = Env::new();
    // A big index (many included-only files with long names), a small
    // increment (one tracked change).
    let long = "i".repeat(150);
    for i in 0..600 {
        env.write(&format!("src-x/inc/{long}-{i:03}"), "");
    }
    env.write("src-x/t/tracked.txt", "v1");
    env.job(
        "x",
        r#"{"source": "../src-x", "destination": "../disk/dest",
            "track_dirs": ["t"], "include_dirs": ["inc"]}"#,
    );
    let disk = Tmpfs::mount(&env.path("disk"), "size=64m");
    assert_eq!(env.run_json(&["run", "x"]).0, 0);
    let index_size = fs::metadata(env.path("disk/dest/.strata/index"))
        .unwrap()
        .len();
    let p = env.write("src-x/t/tracked.txt", "v2, longer");
    set_mtime(&p, 1_600_000_100);
    let want = snapshot(&env.path("src-x"));
    let saved = Saved::new(&env, "disk/dest");
    let mut committed = 0;
    let step = (index_size / 8).max(4096);
    for free in (0..index_size + 2 * step).step_by(step as usize) {
        disk.remount("size=64m");
        saved.put_back();
        disk.leave_bytes(free);
        let (code, report) = env.run_json(&["run", "x"]);
        let context = format!("{free} bytes free: exit {code}: {}", message(&report));
        let incs = env.increments("disk/dest");
        if code != 0 && incs.len() == 2 {
            // Committed although the run failed: the report says so, and
            // names the increment.
            committed += 1;
            let job = &report["jobs"][0];
            assert_eq!(
                job["increment"].as_str(),
                Some(incs[1].as_str()),
                "{context}"
            );
            let text = message(&report);
            assert!(
                text.contains("committed") && text.contains(&incs[1]),
                "{context}"
            );
            assert!(text.contains("next run"), "{context}");
        }
        // With room, the next run repairs: the change in exactly one
        // increment, mirror and index agree.
        disk.remount("size=64m");
        let (code, report) = env.run_json(&["run", "x"]);
        assert_eq!(code, 0, "{context}, then: {}", message(&report));
        assert_eq!(env.increments("disk/dest").len(), 2, "{context}");
        assert_same_tree(&want, &snapshot(&env.path("disk/dest/mirror")));
        let (code, out, err) = env.run(&["verify", "x"]);
        assert_eq!(code, 0, "{context}: {out}{err}");
        let (_, report) = env.run_json(&["run", "x"]);
        assert_eq!(report["jobs"][0]["stats"]["new"], 0, "{context}");
        assert_eq!(report["jobs"][0]["stats"]["changed"], 0, "{context}");
    }
    assert!(committed > 0, "no run failed writing the index");
}

// ---------------------------------------------------------------- item 8

/// Overwrite the bytes of `path` in place (same length, same inode) and
/// put its mtime back: damage that size+mtime cannot see.
fn corrupt(path: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).unwrap();
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(3)).unwrap();
    f.write_all(b"ROT").unwrap();
    drop(f);
    filetime::set_file_mtime(
        path,
        filetime::FileTime::from_unix_time(meta.mtime(), meta.mtime_nsec() as u32),
    )
    .unwrap();
}

#[test]
fn corruption_is_found_never_handed_back_and_repaired_from_the_source() {
    let env = Env::new();
    let doc = "the real return-2022.pdf bytes ".repeat(100);
    env.write("src-v/return-2022.pdf", &doc);
    env.write("src-v/notes.txt", "notes v1");
    env.simple_job("v", r#""track_dirs": ["."]"#);
    assert_eq!(env.run_json(&["run", "v"]).0, 0);
    let p = env.write("src-v/notes.txt", "notes v2, longer");
    set_mtime(&p, 1_600_000_100);
    assert_eq!(env.run_json(&["run", "v"]).0, 0);
    let incs = env.increments("dest-v");
    let (first, second) = (&incs[0], &incs[1]);
    let dest = env.path("dest-v");
    // The mirror's pdf (an inode the first increment shares), and the only
    // copy of notes v1, which the source no longer holds.
    let pdf = dest.join("mirror/return-2022.pdf");
    let pdf_in_history = dest.join(format!("{first}/track/return-2022.pdf"));
    assert_eq!(inode(&pdf), inode(&pdf_in_history));
    let old_inode = inode(&pdf);
    corrupt(&pdf);
    corrupt(&dest.join(format!("{first}/track/notes.txt")));

    // Nothing changed as size and mtime see it: a run copies nothing.
    let (code, report) = env.run_json(&["run", "v"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["jobs"][0]["stats"]["changed"], 0);

    let (code, out, err) = env.run(&["verify", "v", "--deep"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("return-2022.pdf"), "{out}");
    assert!(out.contains("notes.txt"), "{out}");

    // restore fails naming the file, and never hands the bad bytes back.
    let handed_back =
        |to: &Path| fs::read(to.join("return-2022.pdf")).is_ok_and(|b| b != doc.as_bytes());
    for at in [None, Some(first.as_str())] {
        let to = env.path("r-damaged");
        let mut args = vec!["restore", "v", "--to", to.to_str().unwrap()];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        let (code, out, err) = env.run(&args);
        assert_ne!(code, 0, "{args:?}: {out}{err}");
        assert!(err.contains("return-2022.pdf"), "{args:?}: {err}");
        assert!(
            !handed_back(&to),
            "{args:?}: the corrupt bytes were restored"
        );
        let _ = fs::remove_dir_all(&to);
    }

    // --repair: the pdf from the source (a new inode, the increment's name
    // relinked); notes v1 it cannot repair, and says so.
    let (code, out, err) = env.run(&["verify", "v", "--repair"]);
    assert_eq!(code, 1, "notes v1 is still damaged: {out}{err}");
    let said = format!("{out}{err}");
    let line_of = |name: &str| {
        said.lines()
            .filter(|l| l.contains(name))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(line_of("return-2022.pdf").contains("repaired"), "{said}");
    assert!(line_of("notes.txt").contains("could not"), "{said}");
    assert_eq!(fs::read_to_string(&pdf).unwrap(), doc);
    assert_ne!(inode(&pdf), old_inode, "repaired in place");
    assert_eq!(inode(&pdf), inode(&pdf_in_history), "track/ not relinked");
    assert_eq!(fs::read_to_string(&pdf_in_history).unwrap(), doc);

    // The latest state and the second increment restore right; the first
    // still fails, naming only what could not be repaired.
    for at in [None, Some(second.as_str())] {
        let to = env.path("r-ok");
        let mut args = vec!["restore", "v", "--to", to.to_str().unwrap()];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        let (code, out, err) = env.run(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert_same_tree(&snapshot(&env.path("src-v")), &snapshot(&to));
        fs::remove_dir_all(&to).unwrap();
    }
    let to = env.path("r-first");
    let (code, _, err) = env.run(&["restore", "v", "--to", to.to_str().unwrap(), "--at", first]);
    assert_ne!(code, 0);
    assert!(
        err.contains("notes.txt") && !err.contains("return-2022.pdf"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(to.join("return-2022.pdf")).unwrap(), doc);
}

// ---------------------------------------------------------------- item 9

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// `run-all` with a hang guard: a run that hangs fails the test (and is
/// killed by PID) instead of hanging the suite.
fn run_all_within(env: &Env, secs: u64) -> (i32, Value) {
    let out = output_within(env.std_command().args(["--json", "run-all"]), secs)
        .unwrap_or_else(|| panic!("run-all hung for {secs} s (killed)"));
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

#[test]
fn a_fifo_named_cachedir_tag_never_hangs_a_run() {
    let env = Env::new();
    env.write("src-q/keep.txt", "kept");
    env.write("src-q/cache/data", "in a folder with a FIFO for a tag");
    mkfifo(&env.path("src-q/cache/CACHEDIR.TAG"));
    env.job(
        "q",
        r#"{"source": "../src-q", "destination": "../dest-q", "include_dirs": ["."],
            "exclude_caches": true}"#,
    );
    let (code, report) = run_all_within(&env, 30);
    assert!(code == 0 || code == 1, "{report:#}");
    assert_eq!(
        fs::read_to_string(env.path("dest-q/mirror/keep.txt")).unwrap(),
        "kept"
    );
    // Not locked by a hung run: the next one runs.
    let (_, report) = run_all_within(&env, 30);
    assert_ne!(report["jobs"][0]["status"], "skipped_locked", "{report:#}");
}

#[test]
fn a_file_swapped_for_a_fifo_during_a_run_never_hangs_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let env = Env::new();
    let src = env.path("src-w");
    let n = 60;
    for i in 0..n {
        env.write(&format!("src-w/f{i:02}"), &format!("file {i}"));
        mkfifo(&src.join(format!("f{i:02}.fifo")));
    }
    env.simple_job("w", r#""include_dirs": ["."]"#);
    // A second job on the same source reads every file in its scan (to
    // compare content).
    env.job(
        "w2",
        r#"{"source": "../src-w", "destination": "../dest-w2", "include_dirs": ["."],
            "compare": "checksum"}"#,
    );
    // Each file in turn becomes a FIFO and back (renames: every name is
    // always something), so that a run lists a file and opens a FIFO.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let src = src.clone();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) && swaps < 5_000_000 {
                let i = swaps as usize % n;
                let f = src.join(format!("f{i:02}"));
                let real = src.join(format!("f{i:02}.real"));
                let fifo = src.join(format!("f{i:02}.fifo"));
                fs::rename(&f, &real).unwrap();
                fs::rename(&fifo, &f).unwrap();
                std::thread::yield_now();
                fs::rename(&f, &fifo).unwrap();
                fs::rename(&real, &f).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let guard = Stop(stop);
    for round in 0..20 {
        let (code, report) = run_all_within(&env, 30);
        assert!(code == 0 || code == 1, "round {round}: {report:#}");
    }
    drop(guard);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0);
    // Quiet again, the run backs up every file.
    let (code, report) = run_all_within(&env, 30);
    assert_eq!(code, 0, "{report:#}");
    for dest in ["dest-w", "dest-w2"] {
        for i in 0..n {
            assert_eq!(
                fs::read_to_string(env.path(&format!("{dest}/mirror/f{i:02}"))).unwrap(),
                format!("file {i}")
            );
        }
    }
}
