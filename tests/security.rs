//! Issue 12, tried as an attacker would: an unprivileged user who owns the
//! source (or a restore target) races root's backup with symlink swaps;
//! kill -9 and a full disk meet kind changes in the mirror; increment
//! metadata names paths outside the tree. In every case no byte from
//! outside the source reaches the destination, nothing is written outside
//! the destination or the restore target, and the history stays intact.
//!
//! The attackers run as uid 65534 through `setpriv` (util-linux), so these
//! tests need root; they skip, saying why, without it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{
    Attacker, Env, Tmpfs, assert_same_tree, find_bytes, give_to_nobody, have_tool, running_as_root,
    snapshot,
};
use serde_json::Value;

/// What root keeps from everyone: the bytes must never reach a backup.
const SECRET: &str = "ROOT-ONLY 0600 SECRET 5f1c9e";
/// A name only the secret folder holds: it must never appear in a backup.
const SECRET_NAME: &str = "only-in-the-secret-folder";

/// A 0700 root folder of 0600 root files, outside every source: `shadow`,
/// `f000`…`f149` (the names of the user's own files: a copy opened through
/// a swapped folder finds one of these by the name the scan listed) and
/// [`SECRET_NAME`].
fn secret_dir(env: &Env) -> std::path::PathBuf {
    let dir = env.path("secret");
    env.write(&format!("secret/{SECRET_NAME}"), SECRET);
    for name in (0..150)
        .map(|i| format!("f{i:03}"))
        .chain(["shadow".into()])
    {
        env.write(&format!("secret/{name}"), SECRET);
        fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o600)).unwrap();
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn assert_nothing_secret(dest: &Path, context: &str) {
    let leaked = find_bytes(dest, SECRET.as_bytes());
    assert!(
        leaked.is_empty(),
        "{context}: secret bytes in {} files: {:?}…",
        leaked.len(),
        &leaked[..leaked.len().min(4)]
    );
    let walked = find_bytes(dest, SECRET_NAME.as_bytes());
    assert!(
        walked.is_empty(),
        "{context}: the scan walked the secret folder: {walked:?}"
    );
}

fn can_attack(test: &str) -> bool {
    running_as_root(test) && have_tool("setpriv")
}

#[test]
fn a_source_directory_swapped_for_a_symlink_never_leaks_outside_bytes() {
    if !can_attack("a_source_directory_swapped_for_a_symlink_never_leaks_outside_bytes") {
        return;
    }
    let env = Env::new();
    let secret = secret_dir(&env);
    env.write("src-s/d/shadow", "the user's own shadow file");
    for i in 0..150 {
        env.write(&format!("src-s/d/f{i:03}"), &format!("user file {i}"));
    }
    env.write("src-s/other/keep", "kept");
    give_to_nobody(&env, "src-s");
    if !common::nobody_can_write(&env.path("src-s")) {
        return;
    }
    env.simple_job("s", r#""track_dirs": ["."]"#);
    let stop = env.path("stop-s");
    let script = format!(
        "cd {src}; i=0; while [ ! -e \"$STOP\" ] && [ $i -lt 200000 ]; do \
         mv -T d d.real; ln -s {secret} d; mv -T d d.gone; mv -T d.real d; \
         i=$((i+1)); done; echo $i",
        src = env.path("src-s").display(),
        secret = secret.display()
    );
    let attacker = Attacker::start(env.root(), &stop, &script);
    let dest = env.path("dest-s");
    for round in 0..40 {
        let (code, out, err) = env.run(&["--json", "run", "s"]);
        assert!(
            code == 0 || code == 1,
            "round {round}: exit {code}\n{out}\n{err}"
        );
        assert_nothing_secret(&dest, &format!("round {round}"));
    }
    let rounds = attacker.stop();
    eprintln!("the attacker swapped {} times", rounds.trim());
    // The swaps ran while root backed up (a loop that never ran proves
    // nothing).
    assert!(rounds.trim().parse::<u64>().unwrap_or(0) > 0, "{rounds:?}");
    assert_nothing_secret(&dest, "after the attack");
    // The source is whole again: the next run backs up exactly the source.
    fs::remove_file(env.path("src-s/d.gone")).ok();
    let (code, report) = env.run_json(&["run", "s"]);
    assert_eq!(code, 0, "{report:#}");
    assert_same_tree(
        &snapshot(&env.path("src-s")),
        &snapshot(&dest.join("mirror")),
    );
}

/// The records of an increment: (path, op, kind).
fn records(dest: &Path, inc: &str) -> Vec<(String, String, String)> {
    let meta: Value =
        serde_json::from_slice(&fs::read(dest.join(inc).join(format!("{inc}.json"))).unwrap())
            .unwrap();
    meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["op"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `restore --at` each increment into a fresh folder: the trees, oldest
/// first.
fn restore_each(env: &Env, job: &str, dest: &str) -> Vec<BTreeMap<String, String>> {
    let mut trees = Vec::new();
    for inc in env.increments(dest) {
        let to = env.path(&format!("restored-{inc}"));
        let _ = fs::remove_dir_all(&to);
        let (code, out, err) =
            env.run(&["restore", job, "--to", to.to_str().unwrap(), "--at", &inc]);
        assert_eq!(code, 0, "restore --at {inc}: {out}{err}");
        trees.push(snapshot(&to));
        fs::remove_dir_all(&to).unwrap();
    }
    trees
}

#[test]
fn recovery_never_writes_through_a_directory_that_became_a_symlink() {
    use common::kill::{Saved, abort_at, fault_points, is_symlink, kill_when};
    let env = Env::new();
    // `a/` sorts first, so the mirror shows its change while the big
    // files are still being copied.
    env.write("src-x/a/z", "z in a directory");
    env.write("src-x/t.txt", "tracked");
    for i in 0..3 {
        env.write(&format!("src-x/zz/big{i}"), &"1".repeat(512 << 10));
    }
    env.write("outside/keep", "not to be touched");
    env.simple_job("x", r#""track_dirs": ["."]"#);
    let (code, report) = env.run_json(&["run", "x"]);
    assert_eq!(code, 0, "{report:#}");
    let first = snapshot(&env.path("src-x"));
    let dest = env.path("dest-x");
    let first_inc = env.increments("dest-x")[0].clone();
    let first_files = snapshot(&dest.join(&first_inc));
    // `a/` becomes a symlink to a folder outside the source.
    fs::remove_dir_all(env.path("src-x/a")).unwrap();
    env.symlink(env.path("outside").to_str().unwrap(), "src-x/a");
    for i in 0..3 {
        let big = env.write(&format!("src-x/zz/big{i}"), &"2".repeat(512 << 10));
        common::set_mtime(&big, 1_600_000_100);
    }
    let second = snapshot(&env.path("src-x"));
    let outside = snapshot(&env.path("outside"));
    let saved = Saved::new(&env, "dest-x");

    // After an interruption, the next run repairs: nothing in OUTSIDE, the
    // first increment as it was, the deletion of a/z recorded, every
    // increment restorable as the source was.
    let check = |context: &str| {
        let (code, report) = env.run_json(&["run", "x"]);
        assert_eq!(code, 0, "{context}: {report:#}");
        assert_same_tree(&outside, &snapshot(&env.path("outside")));
        assert!(!env.path("outside/z").exists(), "{context}: OUTSIDE/z");
        assert_same_tree(&second, &snapshot(&dest.join("mirror")));
        let incs = env.increments("dest-x");
        assert_eq!(incs.len(), 2, "{context}: {incs:?}");
        assert_same_tree(&first_files, &snapshot(&dest.join(&first_inc)));
        let recorded = records(&dest, &incs[1]);
        let has = |path: &str, op: &str, kind: &str| {
            recorded
                .iter()
                .any(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str()) == (path, op, kind))
        };
        assert!(has("a/z", "deleted", "file"), "{context}: {recorded:?}");
        assert!(
            has("a", "changed", "symlink") || has("a", "new", "symlink"),
            "{context}: {recorded:?}"
        );
        let trees = restore_each(&env, "x", "dest-x");
        assert_same_tree(&first, &trees[0]);
        assert_same_tree(&second, &trees[1]);
        let (code, out, err) = env.run(&["verify", "x", "--deep"]);
        assert_eq!(code, 0, "{context}: {out}{err}");
    };

    // Real SIGKILLs, once the mirror's a/ is the symlink.
    let mut landed = 0;
    for round in 0..6 {
        saved.put_back();
        landed += usize::from(kill_when(&env, &["run", "x"], || {
            is_symlink(&dest.join("mirror/a"))
        }));
        check(&format!("SIGKILL round {round}"));
    }
    eprintln!("{landed} of 6 kills landed while the run was under way");

    // Every fault point of the run.
    saved.put_back();
    let points = fault_points(&env, &["run", "x"]);
    check("the uninterrupted run");
    assert!(points.len() > 10, "{points:?}");
    eprintln!("{} fault points", points.len());
    for rule in &points {
        saved.put_back();
        abort_at(&env, &["run", "x"], rule);
        check(&format!("abort at {rule}"));
    }
}

#[test]
fn a_crash_during_recovery_never_writes_through_a_symlink_either() {
    use common::kill::{Saved, abort_at, fault_points};
    let env = Env::new();
    env.write("outside/keep", "not to be touched");
    env.write("src-x/a/z", "z in a folder");
    env.write("src-x/a/b/w", "w deeper");
    env.write("src-x/f", "a file first");
    env.write("src-x/t", "t1");
    env.simple_job("x", r#""track_dirs": ["."]"#);
    assert_eq!(env.run_json(&["run", "x"]).0, 0);
    let first = snapshot(&env.path("src-x"));
    // A folder becomes a symlink to OUTSIDE, a file a folder; a change
    // and an addition beside them.
    fs::remove_dir_all(env.path("src-x/a")).unwrap();
    env.symlink(env.path("outside").to_str().unwrap(), "src-x/a");
    fs::remove_file(env.path("src-x/f")).unwrap();
    env.write("src-x/f/inside", "a folder now");
    let t = env.write("src-x/t", "t2, longer");
    common::set_mtime(&t, 1_600_000_100);
    env.write("src-x/n", "new");
    let second = snapshot(&env.path("src-x"));
    let outside = snapshot(&env.path("outside"));
    let saved = Saved::new(&env, "dest-x");
    let mut double = 0;
    for first_rule in fault_points(&env, &["run", "x"]) {
        saved.put_back();
        abort_at(&env, &["run", "x"], &first_rule);
        // The recovering run is stopped in turn at each recovery step.
        let crashed = Saved::tagged(&env, "dest-x", "-crashed");
        let recovery: Vec<String> = fault_points(&env, &["run", "x"])
            .into_iter()
            .filter(|p| p.starts_with("abort:recover."))
            .collect();
        for rule in &recovery {
            crashed.put_back();
            abort_at(&env, &["run", "x"], rule);
            double += 1;
            let context = format!("abort at {first_rule}, then at {rule}");
            let (code, report) = env.run_json(&["run", "x"]);
            assert_eq!(code, 0, "{context}: {report:#}");
            let (_, report) = env.run_json(&["run", "x"]);
            assert!(
                report["jobs"][0]["increment"].is_null(),
                "{context}: {report:#}"
            );
            assert_same_tree(&outside, &snapshot(&env.path("outside")));
            assert_same_tree(&second, &snapshot(&env.path("dest-x/mirror")));
            let trees = restore_each(&env, "x", "dest-x");
            assert_eq!(trees.len(), 2, "{context}");
            assert_same_tree(&first, &trees[0]);
            assert_same_tree(&second, &trees[1]);
            let (code, out, err) = env.run(&["verify", "x", "--deep"]);
            assert_eq!(code, 0, "{context}: {out}{err}");
        }
    }
    assert!(double > 20, "only {double} crashes during recovery");
}

/// A destination on a small tmpfs that runs out of inodes at each step in
/// turn while a tracked path changes kind between a symlink to OUTSIDE and
/// a folder: nothing is ever created through `mirror/x`, and once there is
/// room the next run completes.
fn full_disk_kind_change(symlink_first: bool) {
    use common::kill::Saved;
    let env = Env::new();
    let outside = env.path("outside");
    env.write("outside/keep", "not to be touched");
    let link_to_outside = |env: &Env| env.symlink(outside.to_str().unwrap(), "src-f/x");
    if symlink_first {
        link_to_outside(&env);
    } else {
        env.write("src-f/x/y", "y in a folder");
    }
    for i in 0..5 {
        env.write(&format!("src-f/d/f{i}"), &format!("file {i}"));
    }
    env.job(
        "f",
        r#"{"source": "../src-f", "destination": "../disk/dest", "track_dirs": ["."]}"#,
    );
    let disk = Tmpfs::mount(&env.path("disk"), "size=16m,nr_inodes=4096");
    let (code, report) = env.run_json(&["run", "f"]);
    assert_eq!(code, 0, "{report:#}");
    let first = snapshot(&env.path("src-f"));
    if symlink_first {
        fs::remove_file(env.path("src-f/x")).unwrap();
        env.write("src-f/x/y", "y in a folder");
    } else {
        fs::remove_dir_all(env.path("src-f/x")).unwrap();
        link_to_outside(&env);
    }
    env.write("src-f/d/f0", "changed, longer");
    let second = snapshot(&env.path("src-f"));
    let before = snapshot(&outside);
    let saved = Saved::new(&env, "disk/dest");
    let mut refused = 0;
    for free in 0..12 {
        disk.remount("nr_inodes=4096");
        saved.put_back();
        disk.leave_inodes(free);
        let (code, out, err) = env.run(&["--json", "run", "f"]);
        let context = format!("{free} free inodes: exit {code}");
        assert!(code == 0 || code == 1, "{context}\n{out}{err}");
        refused += usize::from(code == 1 && out.contains("No space left on device"));
        assert!(
            !outside.join("y").exists(),
            "{context}: OUTSIDE/y was created"
        );
        assert_same_tree(&before, &snapshot(&outside));
        // With room again, the next run completes the work.
        disk.remount("nr_inodes=4096");
        let (code, report) = env.run_json(&["run", "f"]);
        assert_eq!(code, 0, "{context}, then: {report:#}");
        assert_same_tree(&before, &snapshot(&outside));
        assert_same_tree(&second, &snapshot(&env.path("disk/dest/mirror")));
        let trees = restore_each(&env, "f", "disk/dest");
        assert_eq!(trees.len(), 2, "{context}");
        assert_same_tree(&first, &trees[0]);
        assert_same_tree(&second, &trees[1]);
    }
    // The disk was full at some step (a sweep that never hit ENOSPC proves
    // nothing).
    assert!(refused > 0, "no run met a full disk");
}

#[test]
fn a_full_destination_never_writes_through_a_symlink_that_becomes_a_folder() {
    if running_as_root("a_full_destination_never_writes_through_a_symlink_that_becomes_a_folder") {
        full_disk_kind_change(true);
    }
}

#[test]
fn a_full_destination_never_writes_through_a_folder_that_becomes_a_symlink() {
    if running_as_root("a_full_destination_never_writes_through_a_folder_that_becomes_a_symlink") {
        full_disk_kind_change(false);
    }
}

#[test]
fn a_restore_target_owned_by_the_attacker_is_never_followed_out() {
    if !can_attack("a_restore_target_owned_by_the_attacker_is_never_followed_out") {
        return;
    }
    let env = Env::new();
    env.write("src-r/docs/report.txt", "the backed-up report");
    for i in 0..2_000 {
        env.write(&format!("src-r/docs/f{i:04}"), &format!("doc {i}"));
    }
    env.simple_job("r", r#""track_dirs": ["."]"#);
    let (code, report) = env.run_json(&["run", "r"]);
    assert_eq!(code, 0, "{report:#}");
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    // A folder the attacker may not write to, but root may.
    let elsewhere = env.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let stop = env.path("stop-r");
    let mut swapped = 0;
    for round in 0..5 {
        let to = env.path(&format!("to{round}"));
        fs::create_dir(&to).unwrap();
        give_to_nobody(&env, &format!("to{round}"));
        if !common::nobody_can_write(&to) {
            return;
        }
        // As soon as strata has made docs/, it becomes a symlink.
        let script = format!(
            "cd {to}; i=0; n=0; while [ ! -e \"$STOP\" ] && [ $i -lt 3000000 ]; do \
             if [ -d docs ] && [ ! -h docs ]; then \
             mv -T docs docs.moved$n && ln -s {elsewhere} docs; n=$((n+1)); fi; \
             i=$((i+1)); done; echo $n",
            to = to.display(),
            elsewhere = elsewhere.display()
        );
        let attacker = Attacker::start(env.root(), &stop, &script);
        let (code, out, err) = env.run(&["restore", "r", "--to", to.to_str().unwrap()]);
        let n = attacker.stop();
        swapped += n.trim().parse::<u64>().unwrap_or(0);
        assert!(
            code == 0 || code == 1,
            "round {round}: exit {code}\n{out}{err}"
        );
        let written: Vec<_> = fs::read_dir(&elsewhere).unwrap().collect();
        assert!(
            written.is_empty(),
            "round {round}: {} files written into ELSEWHERE",
            written.len()
        );
    }
    assert!(swapped > 0, "the attacker never swapped docs/");

    // --force: an existing symlink in the target is replaced, never
    // followed.
    env.write("elsewhere2/report.txt", "elsewhere's own report");
    let outside = snapshot(&env.path("elsewhere2"));
    let to = env.path("to-force");
    fs::create_dir(&to).unwrap();
    std::os::unix::fs::symlink(env.path("elsewhere2"), to.join("docs")).unwrap();
    let (code, out, err) = env.run(&["restore", "r", "--force", "--to", to.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_same_tree(&outside, &snapshot(&env.path("elsewhere2")));
    assert!(!common::kill::is_symlink(&to.join("docs")));
    assert_same_tree(&snapshot(&env.path("src-r")), &snapshot(&to));
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything in the environment, the restore target `r/to` and the
/// job's lock and run log aside.
fn everything_but_the_target(env: &Env) -> BTreeMap<String, String> {
    let mut all = snapshot(env.root());
    all.retain(|k, _| {
        !k.starts_with("r/to/") && !k.ends_with(".strata/lock") && !k.ends_with("runs.jsonl")
    });
    all
}

#[test]
fn increment_records_naming_paths_outside_the_tree_are_refused() {
    const PAYLOAD: &str = "EVIL PAYLOAD";
    let env = Env::new();
    env.write("src-m/a.txt", "a");
    env.simple_job("m", r#""track_dirs": ["."]"#);
    let (code, report) = env.run_json(&["run", "m"]);
    assert_eq!(code, 0, "{report:#}");
    env.write("src-m/b.txt", PAYLOAD);
    let (code, report) = env.run_json(&["run", "m"]);
    assert_eq!(code, 0, "{report:#}");
    // With a policy, prune has work: it would merge the first increment
    // into the second.
    env.simple_job("m", r#""track_dirs": ["."], "retention": {"keep_last": 1}"#);
    let incs = env.increments("dest-m");
    assert_eq!(incs.len(), 2);
    let inc = &incs[1];
    let meta_path = env.path(&format!("dest-m/{inc}/{inc}.json"));
    let clean_meta = fs::read(&meta_path).unwrap();
    let absolute = env.path("abs-evil");
    let absolute = absolute.to_str().unwrap();
    // (path, path_hex) of the bad record; what it would read is there,
    // with the bytes its hash names.
    env.write(&format!("dest-m/{inc}/victim/evil"), PAYLOAD);
    env.write("abs-evil", PAYLOAD);
    let cases: [(&str, Option<String>); 4] = [
        ("../victim/evil", None),
        (absolute, None),
        ("hex-absolute", Some(to_hex(absolute.as_bytes()))),
        ("hex-dotdot", Some(to_hex(b"../victim/evil"))),
    ];
    for (path, path_hex) in &cases {
        let mut meta: Value = serde_json::from_slice(&clean_meta).unwrap();
        let files = meta["files"].as_array_mut().unwrap();
        let mut bad = files
            .iter()
            .find(|f| f["path"] == "b.txt")
            .expect("b.txt is recorded")
            .clone();
        bad["path"] = Value::from(*path);
        if let Some(h) = path_hex {
            bad["path_hex"] = Value::from(h.as_str());
        }
        files.push(bad);
        fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
        let abs_inode = common::inode(Path::new(absolute));
        let before = everything_but_the_target(&env);
        let to = env.path("r/to");
        let commands: [Vec<&str>; 4] = [
            vec!["restore", "m", "--to", to.to_str().unwrap(), "--at", inc],
            vec!["history", "m"],
            vec!["verify", "m"],
            vec!["prune", "m"],
        ];
        for args in &commands {
            let (code, out, err) = env.run(args);
            let context = format!("record {path:?} {path_hex:?}, {args:?}");
            assert_ne!(code, 0, "{context}: exit 0\n{out}{err}");
            let said = format!("{out}{err}");
            assert!(
                said.contains(inc.as_str()) && said.contains("record"),
                "{context}: the error names neither the increment nor the record:\n{said}"
            );
            assert_same_tree(&before, &everything_but_the_target(&env));
            assert_eq!(common::inode(Path::new(absolute)), abs_inode, "{context}");
            assert!(!env.path("r/victim").exists(), "{context}");
            let _ = fs::remove_dir_all(&to);
        }
    }
    // The metadata put back, everything works again.
    fs::write(&meta_path, &clean_meta).unwrap();
    let (code, out, err) = env.run(&["history", "m"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The folder at the bottom of `depth` nested folders `name` below `base`
/// (made when `create`), opened walking down with openat, so that no path
/// grows past PATH_MAX. A descriptor, closed on drop.
struct Deep(i32);

impl Deep {
    fn open(base: &Path, name: &str, depth: usize, create: bool) -> Option<Deep> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        if create {
            fs::create_dir_all(base).unwrap();
        }
        let c_name = CString::new(name).unwrap();
        let c_base = CString::new(base.as_os_str().as_bytes()).unwrap();
        // SAFETY: plain POSIX calls on descriptors this function owns.
        unsafe {
            let mut fd = libc::open(c_base.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            if fd < 0 {
                return None;
            }
            for _ in 0..depth {
                if create {
                    libc::mkdirat(fd, c_name.as_ptr(), 0o755);
                }
                let next = libc::openat(
                    fd,
                    c_name.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                );
                libc::close(fd);
                if next < 0 {
                    return None;
                }
                fd = next;
            }
            Some(Deep(fd))
        }
    }

    /// Write `leaf.txt` with `body`, mtime `secs`.
    fn write(&self, body: &str, secs: i64) {
        // SAFETY: as above; the buffer outlives the call.
        unsafe {
            let f = libc::openat(
                self.0,
                c"leaf.txt".as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                0o644,
            );
            assert!(f >= 0);
            assert_eq!(
                libc::write(f, body.as_ptr().cast(), body.len()),
                body.len() as isize
            );
            let t = libc::timespec {
                tv_sec: secs,
                tv_nsec: 0,
            };
            assert_eq!(libc::futimens(f, [t, t].as_ptr()), 0);
            libc::close(f);
        }
    }

    fn read(&self) -> Option<String> {
        // SAFETY: as above.
        unsafe {
            let f = libc::openat(self.0, c"leaf.txt".as_ptr(), libc::O_RDONLY);
            if f < 0 {
                return None;
            }
            let mut buf = [0u8; 256];
            let n = libc::read(f, buf.as_mut_ptr().cast(), buf.len());
            libc::close(f);
            Some(String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned())
        }
    }

    fn remove(&self) {
        // SAFETY: as above.
        unsafe {
            assert_eq!(libc::unlinkat(self.0, c"leaf.txt".as_ptr(), 0), 0);
        }
    }
}

impl Drop for Deep {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours.
        unsafe {
            libc::close(self.0);
        }
    }
}

/// 51 levels of a 99-byte name: a path of 5,100 bytes (few folders, so
/// that each restore is quick; tests/hostile.rs has the 2,600-level one).
const DEPTH: usize = 51;

fn name() -> String {
    "n".repeat(99)
}

/// The leaf of the deep path in a restore, or None.
fn restored_leaf(env: &Env, args: &[&str], to: &str) -> Option<String> {
    let target = env.path(to);
    let mut all = vec!["restore", "p", "--to", target.to_str().unwrap()];
    all.extend_from_slice(args);
    let (code, out, err) = env.run(&all);
    assert_eq!(code, 0, "{all:?}: {out}{err}");
    let leaf = Deep::open(&target.join("deep"), &name(), DEPTH, false).and_then(|d| d.read());
    fs::remove_dir_all(&target).unwrap();
    leaf
}

#[test]
fn a_path_beyond_path_max_keeps_its_history_through_changes_deletion_and_prune() {
    let env = Env::new();
    env.write("src-p/ok.txt", "fine");
    let deep = Deep::open(&env.path("src-p/deep"), &name(), DEPTH, true).unwrap();
    deep.write("version 1", 1_600_000_000);
    env.simple_job("p", r#""track_dirs": ["."]"#);
    let run = |what: &str| {
        let (code, report) = env.run_json(&["run", "p"]);
        assert_eq!(code, 0, "{what}: {report:#}");
        assert!(
            report["jobs"][0]["errors"]
                .as_array()
                .is_none_or(|e| e.is_empty())
        );
    };
    run("first run");
    deep.write("version 2, longer", 1_600_000_100);
    run("change");
    deep.remove();
    run("deletion");
    let incs = env.increments("dest-p");
    assert_eq!(incs.len(), 3, "{incs:?}");
    let (code, out, err) = env.run(&["history", "p", "deep"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("leaf.txt"), "{out}");
    let versions = |env: &Env| {
        env.increments("dest-p")
            .iter()
            .map(|inc| restored_leaf(env, &["--at", inc], "r"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        versions(&env),
        [
            Some("version 1".to_string()),
            Some("version 2, longer".to_string()),
            None
        ]
    );
    // One path restored alone, from the history.
    assert_eq!(
        restored_leaf(&env, &["--at", &incs[1], "deep"], "r").as_deref(),
        Some("version 2, longer")
    );
    // Prune merges the first increment forward; the kept points restore as
    // before.
    env.simple_job("p", r#""track_dirs": ["."], "retention": {"keep_last": 2}"#);
    let (code, out, err) = env.run(&["prune", "p"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(env.increments("dest-p"), incs[1..]);
    assert_eq!(
        versions(&env),
        [Some("version 2, longer".to_string()), None]
    );
    let (code, out, err) = env.run(&["verify", "p", "--deep"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_folder_swapped_for_the_attackers_own_never_receives_restored_files() {
    if !can_attack("a_folder_swapped_for_the_attackers_own_never_receives_restored_files") {
        return;
    }
    let env = Env::new();
    // Files readable by anyone, kept private by their 0700 folder.
    for i in 0..2_000 {
        env.write(&format!("src-p/private/n{i:04}"), &format!("{SECRET} {i}"));
    }
    fs::set_permissions(env.path("src-p/private"), fs::Permissions::from_mode(0o700)).unwrap();
    env.simple_job("p", r#""track_dirs": ["."]"#);
    let (code, report) = env.run_json(&["run", "p"]);
    assert_eq!(code, 0, "{report:#}");
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let stop = env.path("stop-p");
    // Where the attacker notes the inodes of the folders it made.
    fs::create_dir(env.path("attacker")).unwrap();
    give_to_nobody(&env, "attacker");
    let made = env.path("attacker/made");
    let mut swapped = 0;
    for round in 0..5 {
        let to = env.path(&format!("to{round}"));
        fs::create_dir(&to).unwrap();
        give_to_nobody(&env, &format!("to{round}"));
        if !common::nobody_can_write(&to) {
            return;
        }
        // As soon as strata has made private/, it is moved aside and a
        // folder of the attacker's own, open to all, takes its name.
        let script = format!(
            "cd {to}; i=0; n=0; while [ ! -e \"$STOP\" ] && [ $i -lt 3000000 ]; do \
             if [ -d private ] && [ ! -O private ]; then \
             mv -T private moved$n && mkdir -m 777 private && \
             stat -c %i private >> {made}; n=$((n+1)); fi; \
             i=$((i+1)); done; echo $n",
            to = to.display(),
            made = made.display(),
        );
        let attacker = Attacker::start(env.root(), &stop, &script);
        let (code, out, err) = env.run(&["restore", "p", "--to", to.to_str().unwrap()]);
        let n = attacker.stop();
        swapped += n.trim().parse::<u64>().unwrap_or(0);
        assert!(
            code == 0 || code == 1,
            "round {round}: exit {code}\n{out}{err}"
        );
        // Nothing of the backup in a folder the attacker made.
        let theirs: Vec<u64> = fs::read_to_string(&made)
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        for entry in fs::read_dir(&to).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.path().symlink_metadata().unwrap();
            use std::os::unix::fs::MetadataExt;
            if meta.is_dir() && theirs.contains(&meta.ino()) {
                let inside: Vec<_> = fs::read_dir(entry.path()).unwrap().collect();
                assert!(
                    inside.is_empty(),
                    "round {round}: {} restored files in the attacker's {}",
                    inside.len(),
                    entry.path().display()
                );
            }
        }
    }
    assert!(swapped > 0, "the attacker never swapped private/");
}
