//! Fidelity (SPEC §3): what comes back is what went in. For a home-like
//! source holding private, setgid and sticky directories, empty nested
//! directories, directory mtimes, files owned by other users, user xattrs,
//! access and default ACLs, hardlink groups across folders, a setuid file,
//! symlinks with their own mtimes, a non-UTF-8 name and a 1 GiB sparse
//! file, `rsync -naHAXSc --itemize-changes --delete SNAPSHOT/ X/` prints
//! nothing, for X = the mirror after each run and X = `restore --at` of
//! each run, where SNAPSHOT is an `rsync -aHAXS` copy of the source taken at
//! that run — across a second run that changes only metadata.
//!
//! rsync is the independent oracle (installed by `scripts/test-deps.sh`);
//! the test skips, saying why, where rsync, setfacl or xattrs are missing,
//! or where it does not run as root (owners).

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{Env, set_mtime};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `dir`'s filesystem takes user xattrs and ACLs.
fn xattrs_and_acls_work(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    fs::write(&probe, "").unwrap();
    let ok = Command::new("setfattr")
        .args(["-n", "user.probe", "-v", "1"])
        .arg(&probe)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("setfacl")
            .args(["-m", "u:65534:r"])
            .arg(&probe)
            .status()
            .is_ok_and(|s| s.success());
    let _ = fs::remove_file(&probe);
    ok
}

/// What rsync says differs between `want` and `got` (empty: equal in
/// everything a backup must keep).
fn rsync_diff(want: &Path, got: &Path) -> String {
    let out = Command::new("rsync")
        .args(["-naHAXSc", "--itemize-changes", "--delete"])
        .arg(format!("{}/", want.display()))
        .arg(format!("{}/", got.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rsync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An `rsync -aHAXS` copy of `from` at `to`: the snapshot of that moment.
fn snapshot_copy(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let out = Command::new("rsync")
        .args(["-aHAXS"])
        .arg(format!("{}/", from.display()))
        .arg(format!("{}/", to.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rsync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_dir_mtime(path: &Path, secs: i64) {
    set_mtime(path, secs);
}

/// The home-like source.
fn build(src: &Path) {
    let w = |rel: &str, body: &str| {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
        set_mtime(&p, 1_600_000_000);
        p
    };
    w("Private/diary.txt", "dear diary");
    fs::set_permissions(src.join("Private"), fs::Permissions::from_mode(0o700)).unwrap();
    w("team/plan.txt", "the plan");
    fs::set_permissions(src.join("team"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::create_dir_all(src.join("drop")).unwrap();
    fs::set_permissions(src.join("drop"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir_all(src.join("Maildir/new")).unwrap();
    fs::create_dir_all(src.join("Maildir/cur")).unwrap();
    fs::create_dir_all(src.join("app/state/empty")).unwrap();
    let other = w("shared/theirs.txt", "someone else's");
    std::os::unix::fs::chown(&other, Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(src.join("shared"), Some(65534), Some(65534)).unwrap();
    let tagged = w("docs/tagged.txt", "with xattrs");
    sh(&format!(
        "setfattr -n user.comment -v 'hello world' '{}'",
        tagged.display()
    ));
    sh(&format!(
        "setfattr -n user.binary -v 0x00ff10 '{}'",
        tagged.display()
    ));
    sh(&format!(
        "setfattr -n user.dir-tag -v yes '{}'",
        src.join("docs").display()
    ));
    let acl = w("docs/acl.txt", "with an ACL");
    sh(&format!(
        "setfacl -m u:65534:rw,g:100:r '{}'",
        acl.display()
    ));
    sh(&format!(
        "setfacl -d -m u:65534:rwx '{}'",
        src.join("team").display()
    ));
    let h1 = w("a/h1", "one inode, two names");
    fs::create_dir_all(src.join("b")).unwrap();
    fs::hard_link(&h1, src.join("b/h2")).unwrap();
    let g = w("a/g1", "one inode, three names");
    fs::hard_link(&g, src.join("b/g2")).unwrap();
    fs::hard_link(&g, src.join("g3")).unwrap();
    let suid = w("bin/tool", "#!/bin/sh\necho hi\n");
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("../docs/acl.txt", src.join("a/link")).unwrap();
    set_mtime(&src.join("a/link"), 1_500_000_000);
    std::os::unix::fs::symlink("/nowhere", src.join("dangling")).unwrap();
    set_mtime(&src.join("dangling"), 1_400_000_000);
    fs::write(src.join(OsStr::from_bytes(b"caf\xe9.txt")), "latin-1 name").unwrap();
    // A 1 GiB file holding 8 KiB of data.
    let sparse = fs::File::create(src.join("vm.img")).unwrap();
    sparse.set_len(1 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(&[7u8; 4096], 0).unwrap();
    sparse.write_all_at(&[9u8; 4096], 512 << 20).unwrap();
    drop(sparse);
    // Directory mtimes last (writing inside a directory moves its mtime).
    for (dir, secs) in [
        ("Private", 1_600_000_100),
        ("team", 1_600_000_200),
        ("drop", 1_600_000_300),
        ("Maildir/new", 1_600_000_400),
        ("Maildir", 1_600_000_500),
        ("app/state/empty", 1_600_000_600),
        ("docs", 1_600_000_700),
        ("a", 1_600_000_800),
    ] {
        set_dir_mtime(&src.join(dir), secs);
    }
}

/// Only metadata changes, and one region of the sparse file rewritten.
fn change_metadata(src: &Path) {
    fs::set_permissions(src.join("Private"), fs::Permissions::from_mode(0o750)).unwrap();
    sh(&format!(
        "setfattr -n user.added -v new '{}'",
        src.join("docs/acl.txt").display()
    ));
    sh(&format!(
        "setfattr -x user.comment '{}'",
        src.join("docs/tagged.txt").display()
    ));
    sh(&format!(
        "setfacl -m u:1000:r '{}'",
        src.join("team/plan.txt").display()
    ));
    // The group {a/h1, b/h2} breaks: b/h2 becomes a file of its own.
    let body = fs::read(src.join("b/h2")).unwrap();
    fs::remove_file(src.join("b/h2")).unwrap();
    fs::write(src.join("b/h2"), body).unwrap();
    set_mtime(&src.join("b/h2"), 1_600_000_000);
    fs::create_dir_all(src.join("app/new-empty")).unwrap();
    fs::remove_dir(src.join("Maildir/cur")).unwrap();
    use std::os::unix::fs::FileExt;
    let sparse = fs::OpenOptions::new()
        .write(true)
        .open(src.join("vm.img"))
        .unwrap();
    sparse.write_all_at(&[3u8; 4096], 256 << 20).unwrap();
    drop(sparse);
    set_dir_mtime(&src.join("Maildir"), 1_600_001_000);
    set_dir_mtime(&src.join("app"), 1_600_001_100);
    set_dir_mtime(&src.join("b"), 1_600_001_200);
}

fn restore(env: &Env, to: &str, at: &str) -> std::path::PathBuf {
    let target = env.path(to);
    let (code, out, err) = env.run(&["restore", "f", "--to", target.to_str().unwrap(), "--at", at]);
    assert_eq!(code, 0, "restore --at {at}: {out}{err}");
    target
}

fn du(path: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn what_comes_back_is_what_went_in() {
    if !is_root() {
        eprintln!("skipped: fidelity of owners needs root");
        return;
    }
    for tool in ["rsync", "setfacl", "setfattr"] {
        if !have(tool) {
            eprintln!("skipped: {tool} is not installed (scripts/test-deps.sh installs it)");
            return;
        }
    }
    let env = Env::new();
    if !xattrs_and_acls_work(env.root()) {
        eprintln!("skipped: this filesystem refuses user xattrs or ACLs");
        return;
    }
    let src = env.path("src-f");
    fs::create_dir_all(&src).unwrap();
    build(&src);
    env.simple_job("f", r#""track_dirs": ["."]"#);

    // Run 1.
    let snap1 = env.path("snap1");
    snapshot_copy(&src, &snap1);
    let (code, report) = env.run_json(&["run", "f"]);
    assert_eq!(code, 0, "{report:#}");
    let mirror = env.path("dest-f/mirror");
    assert_eq!(rsync_diff(&snap1, &mirror), "", "mirror after run 1");
    let inc1 = env.increments("dest-f").pop().unwrap();
    let r1 = restore(&env, "r1", &inc1);
    assert_eq!(rsync_diff(&snap1, &r1), "", "restore of run 1");
    // The mirror's private folder is as private as the source's.
    assert_eq!(
        fs::metadata(mirror.join("Private")).unwrap().mode() & 0o7777,
        0o700
    );
    // One inode for one source inode.
    assert_eq!(
        fs::metadata(mirror.join("a/g1")).unwrap().ino(),
        fs::metadata(mirror.join("g3")).unwrap().ino()
    );
    // Sparse: the destination holds about what the source does.
    let (source_du, dest_du) = (du(&src), du(&env.path("dest-f")));
    assert!(
        dest_du < source_du + (4 << 20),
        "destination {dest_du} B for a source of {source_du} B"
    );
    assert!(du(&r1) < source_du + (4 << 20), "restore {}", du(&r1));
    let (code, out, err) = env.run(&["verify", "f", "--deep"]);
    assert_eq!(code, 0, "{out}{err}");

    // Run 2: metadata only, and one region of the sparse file.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    change_metadata(&src);
    let snap2 = env.path("snap2");
    snapshot_copy(&src, &snap2);
    let (code, report) = env.run_json(&["run", "f"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(rsync_diff(&snap2, &mirror), "", "mirror after run 2");
    let inc2 = env.increments("dest-f").pop().unwrap();
    assert_ne!(inc1, inc2, "metadata changes are changes: an increment");
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(env.path(&format!("dest-f/{inc2}/{inc2}.json"))).unwrap())
            .unwrap();
    let recorded: Vec<String> = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["op"].as_str().unwrap(),
                f["path"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "changed Private",
        "changed docs/acl.txt",
        "changed docs/tagged.txt",
        "changed team/plan.txt",
        "changed b/h2",
        "new app/new-empty",
        "deleted Maildir/cur",
        "changed vm.img",
    ] {
        assert!(recorded.iter().any(|r| r == want), "{want} in {recorded:?}");
    }
    let r2 = restore(&env, "r2", &inc2);
    assert_eq!(rsync_diff(&snap2, &r2), "", "restore of run 2");
    // A past run restores with the metadata it had then.
    let r1b = restore(&env, "r1b", &inc1);
    assert_eq!(rsync_diff(&snap1, &r1b), "", "restore of run 1 after run 2");
    // Two versions of the sparse file cost about two versions of its data.
    let dest_du = du(&env.path("dest-f"));
    assert!(
        dest_du < 2 * source_du + (4 << 20),
        "destination {dest_du} B for two versions of a {source_du} B source"
    );
    let (code, out, err) = env.run(&["verify", "f", "--deep"]);
    assert_eq!(code, 0, "{out}{err}");
    // And a third run has nothing to do.
    let (_, report) = env.run_json(&["run", "f"]);
    assert!(report["jobs"][0]["increment"].is_null(), "{report:#}");
}

#[test]
fn verify_deep_checks_directories_owners_xattrs_and_hardlinks() {
    if !is_root() || !have("setfattr") {
        eprintln!("skipped: needs root and setfattr");
        return;
    }
    let env = Env::new();
    if !xattrs_and_acls_work(env.root()) {
        eprintln!("skipped: this filesystem refuses user xattrs or ACLs");
        return;
    }
    let src = env.path("src-v");
    env.write("src-v/dir/x.txt", "x");
    env.write("src-v/owned.txt", "o");
    env.write("src-v/tagged.txt", "t");
    sh(&format!(
        "setfattr -n user.k -v v '{}'",
        src.join("tagged.txt").display()
    ));
    env.write("src-v/h1", "linked");
    fs::hard_link(src.join("h1"), src.join("h2")).unwrap();
    env.simple_job("v", r#""track_dirs": ["."]"#);
    let (code, report) = env.run_json(&["run", "v"]);
    assert_eq!(code, 0, "{report:#}");
    let (code, out, err) = env.run(&["verify", "v", "--deep"]);
    assert_eq!(code, 0, "{out}{err}");

    let mirror = env.path("dest-v/mirror");
    fs::set_permissions(mirror.join("dir"), fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(mirror.join("owned.txt"), Some(4242), None).unwrap();
    sh(&format!(
        "setfattr -x user.k '{}'",
        mirror.join("tagged.txt").display()
    ));
    let body = fs::read(mirror.join("h2")).unwrap();
    let meta = fs::metadata(mirror.join("h2")).unwrap();
    fs::remove_file(mirror.join("h2")).unwrap();
    fs::write(mirror.join("h2"), body).unwrap();
    fs::set_permissions(mirror.join("h2"), meta.permissions()).unwrap();
    set_mtime(&mirror.join("h2"), meta.mtime());
    let (code, out, _) = env.run(&["verify", "v", "--deep"]);
    assert_eq!(code, 1, "{out}");
    for (path, what) in [
        ("dir", "mode 777 (recorded 755)"),
        ("owned.txt", "owner 4242:0"),
        ("tagged.txt", "extended attributes"),
        ("h2", "hardlink"),
    ] {
        let p = mirror.join(path);
        let line = out
            .lines()
            .find(|l| l.starts_with(p.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{path} not reported:\n{out}"));
        assert!(line.contains(what), "{line}");
    }
}

/// Not root: owners cannot be set. The run still succeeds, says so once
/// (not once per file), records the owners, and a restore as root later
/// gives the files back to them.
#[test]
fn as_another_user_owners_are_reported_once_and_recorded() {
    use common::{NOBODY, nobody_can_write};
    if !common::running_as_root("as_another_user_owners_are_reported_once_and_recorded")
        || !have("setpriv")
    {
        return;
    }
    let env = Env::new();
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    for k in 0..5 {
        env.write(&format!("src-home/docs/f{k}"), &format!("file {k}"));
    }
    sh(&format!(
        "chown -R 1234:4321 {0}/docs && chmod -R a+rX {0} && mkdir -m 0755 {1} {2} && chown {NOBODY}:{NOBODY} {1} {2}",
        env.path("src-home").display(),
        env.path("dest-home").display(),
        env.path("state").display(),
    ));
    if !nobody_can_write(&env.path("dest-home")) {
        return;
    }
    env.simple_job("home", r#""track_dirs": ["docs"]"#);
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            env!("CARGO_BIN_EXE_strata"),
            "--json",
            "--jobs-dir",
        ])
        .arg(env.jobs())
        .args(["run", "home"])
        .env("STRATA_STATE_DIR", env.path("state"))
        .current_dir(env.root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["jobs"][0]["status"], "success", "{report:#}");
    assert_eq!(
        stderr.matches("owners and groups were not kept").count(),
        1,
        "once per run, not per file:\n{stderr}"
    );
    let copy = fs::metadata(env.path("dest-home/mirror/docs/f3")).unwrap();
    assert_eq!((copy.uid(), copy.gid()), (NOBODY, NOBODY));
    assert_eq!(
        fs::read_to_string(env.path("dest-home/mirror/docs/f3")).unwrap(),
        "file 3"
    );
    // The owners are in the record; a restore as root sets them.
    let (code, history) = env.run_json(&["history", "home"]);
    assert_eq!(code, 0, "{history:#}");
    let at = history["increments"][0]["increment"]
        .as_str()
        .unwrap()
        .to_string();
    let restored = env.path("restored");
    let (code, out, err) = env.run(&[
        "restore",
        "home",
        "--at",
        &at,
        "--to",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for k in 0..5 {
        let m = fs::metadata(restored.join(format!("docs/f{k}"))).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 4321), "docs/f{k}");
    }
}

/// A destination whose filesystem refuses xattrs (ramfs): the run succeeds
/// and says so once, `verify --deep` does not call the copies damaged, and
/// a restore gives the files their xattrs: tracked ones from the
/// increment's records, included-only ones (no record) from the sets the
/// run kept by digest in `.strata/xattrs/`.
#[test]
fn a_destination_without_xattrs_is_reported_once_and_restores_them() {
    if !common::running_as_root("a_destination_without_xattrs_is_reported_once_and_restores_them")
        || !have("setfattr")
    {
        return;
    }
    let env = Env::new();
    for k in 0..4 {
        let f = env.write(&format!("src-home/docs/f{k}"), &format!("file {k}"));
        if !xattrs_and_acls_work(f.parent().unwrap()) {
            return;
        }
        sh(&format!("setfattr -n user.note -v note{k} {}", f.display()));
        let g = env.write(&format!("src-home/notes/g{k}"), &format!("note {k}"));
        sh(&format!("setfattr -n user.tag -v tag{k} {}", g.display()));
    }
    sh(&format!(
        "setfattr -n user.shelf -v top {}",
        env.path("src-home/notes").display()
    ));
    let _ramfs = common::Tmpfs::ramfs(&env.path("dest-fs"));
    env.job(
        "home",
        r#"{"source": "../src-home", "destination": "../dest-fs/home", "track_dirs": ["docs"],
            "include_dirs": ["notes"]}"#,
    );
    let (code, out, err) = env.run(&["run", "home"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        format!("{out}{err}")
            .matches("does not support extended attributes")
            .count(),
        1,
        "once per run:\n{out}\n{err}"
    );
    let (code, out, err) = env.run(&["verify", "home", "--deep"]);
    assert_eq!(
        code, 0,
        "a copy without the xattrs its filesystem refuses is not damage:\n{out}{err}"
    );
    let to = env.path("restored");
    let (code, out, err) = env.run(&[
        "restore",
        "home",
        "--at",
        "-0",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for k in 0..4 {
        let got = Command::new("getfattr")
            .args(["--only-values", "-n", "user.note"])
            .arg(to.join(format!("docs/f{k}")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&got.stdout), format!("note{k}"));
    }
    // The latest state, included-only files and their folder too.
    let latest = env.path("latest");
    let (code, out, err) = env.run(&["restore", "home", "--to", latest.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let value = |path: &Path, name: &str| {
        let got = Command::new("getfattr")
            .args(["--only-values", "-n", name])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&got.stdout).into_owned()
    };
    for k in 0..4 {
        assert_eq!(
            value(&latest.join(format!("docs/f{k}")), "user.note"),
            format!("note{k}")
        );
        assert_eq!(
            value(&latest.join(format!("notes/g{k}")), "user.tag"),
            format!("tag{k}")
        );
    }
    assert_eq!(value(&latest.join("notes"), "user.shelf"), "top");

    // A kept set that is not what its name says is an error naming it,
    // never other xattrs.
    let kept = env.path("dest-fs/home/.strata/xattrs");
    // The folder's set (`user.shelf`, in hex): no record holds it.
    let one = fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            fs::read_to_string(p)
                .unwrap()
                .contains("757365722e7368656c66")
        })
        .expect("notes/'s set is kept");
    fs::write(&one, b"[[\"757365722e746167\", \"b3RoZXI=\"]]").unwrap();
    let again = env.path("latest-again");
    let (code, out, err) = env.run(&["restore", "home", "--to", again.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}{err}");
    let name = one.file_name().unwrap().to_str().unwrap();
    assert!(format!("{out}{err}").contains(name), "{out}{err}");
    // `verify --deep` checks the kept sets: a damaged one, and one gone.
    let (code, out, err) = env.run(&["verify", "home", "--deep"]);
    assert_ne!(code, 0, "a damaged kept set:\n{out}{err}");
    assert!(format!("{out}{err}").contains(name), "{out}{err}");
    fs::remove_file(&one).unwrap();
    let (code, out, err) = env.run(&["verify", "home", "--deep"]);
    assert_ne!(code, 0, "a missing kept set:\n{out}{err}");
    let said = format!("{out}{err}");
    assert!(
        said.contains("kept nowhere") && said.contains(name) && said.contains("notes"),
        "{said}"
    );
}
