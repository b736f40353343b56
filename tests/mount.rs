//! `strata mount`: every file of every increment, read through the mount,
//! is what `restore --at` of that increment gives, with its metadata, on
//! both kinds of destination (a local folder and an object store, moto on
//! loopback: `common::dest::both`); the mount is read-only and goes away on
//! SIGTERM; a damaged object reads as an error, never as other bytes.
//!
//! Runs for real where `/dev/fuse` and `fusermount3` exist; elsewhere it
//! prints why it skips.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use common::dest::{Dest, both};

/// Why this machine cannot mount, if it cannot.
fn cannot_mount() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing (no fuse kernel module here)".into());
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").exists()))
        .unwrap_or(false);
    if !found {
        return Some(
            "fusermount3 is not installed (Debian: fuse3; see scripts/test-deps.sh)".into(),
        );
    }
    None
}

fn skip(why: &str) {
    println!("skipped: {why}");
    eprintln!("skipped: {why}");
}

/// Every entry below `root`, with what a restore must give back: kind,
/// mode, owner, mtime (to the nanosecond), size, and the bytes, the
/// symlink's target or the user xattrs.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let m = entry.path().symlink_metadata().unwrap();
        let head = format!(
            "{:o} {}:{} {}.{:09}",
            m.permissions().mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.mtime(),
            m.mtime_nsec()
        );
        let what = if m.file_type().is_symlink() {
            format!("link -> {}", fs::read_link(entry.path()).unwrap().display())
        } else if m.is_dir() {
            "dir".to_string()
        } else {
            let body = fs::read(entry.path()).unwrap();
            assert_eq!(body.len() as u64, m.len(), "{rel}: size and bytes agree");
            format!(
                "file {} {} xattrs {:?}",
                m.len(),
                String::from_utf8_lossy(&body),
                user_xattrs(entry.path())
            )
        };
        out.insert(rel, format!("{what} {head}"));
    }
    out
}

fn user_xattrs(path: &Path) -> Vec<(String, String)> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffers are valid for their lengths.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(b"user."))
    {
        let cname = std::ffi::CString::new(name).unwrap();
        let mut value = vec![0u8; 4096];
        // SAFETY: as above.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len >= 0 {
            out.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(&value[..len as usize]).into_owned(),
            ));
        }
    }
    out
}

fn set_xattr(path: &Path, name: &str, value: &str) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of its length.
    unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

fn run(env: &Env) -> String {
    let (code, v) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{v:#}");
    v["jobs"][0]["increment"].as_str().unwrap().to_string()
}

/// Three runs: files, a symlink, an empty folder, a hardlink pair, an
/// xattr, a chmod, changes, a deletion; plus an include-only file.
fn history(env: &Env, dest: &Dest) -> Vec<String> {
    env.write("src-home/docs/a.txt", "alpha");
    env.write("src-home/docs/sub/b.txt", "beta");
    env.write("src-home/docs/big.bin", &"0123456789".repeat(50_000));
    env.symlink("a.txt", "src-home/docs/link");
    fs::create_dir_all(env.path("src-home/docs/empty")).unwrap();
    env.write("src-home/music/song", "la la");
    fs::hard_link(
        env.path("src-home/docs/sub/b.txt"),
        env.path("src-home/docs/b-again.txt"),
    )
    .unwrap();
    let _ = set_xattr(&env.path("src-home/docs/a.txt"), "user.note", "first");
    dest.job(
        env,
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["music"]"#,
    );
    let mut names = vec![run(env)];
    common::set_mtime(
        &env.write("src-home/docs/a.txt", "alpha, again"),
        1_600_000_500,
    );
    fs::set_permissions(
        env.path("src-home/docs/sub/b.txt"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    env.write("src-home/docs/new.txt", "new");
    names.push(run(env));
    fs::remove_file(env.path("src-home/docs/new.txt")).unwrap();
    fs::remove_file(env.path("src-home/docs/link")).unwrap();
    env.symlink("sub/b.txt", "src-home/docs/link");
    names.push(run(env));
    names
}

struct Mounted {
    child: Child,
    point: std::path::PathBuf,
}

impl Mounted {
    /// Stop the mount with SIGTERM: the exit code.
    fn stop(mut self) -> Option<i32> {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::process::Command::new("fusermount3")
                .args(["-u", "-z", "-q"])
                .arg(&self.point)
                .status();
        }
    }
}

fn is_mounted(point: &Path) -> bool {
    let point = fs::canonicalize(point).unwrap_or(point.to_path_buf());
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(point.to_str().unwrap()))
}

/// Mount, and wait (bounded) until the root shows `latest`.
fn mount(env: &Env) -> Result<Mounted, String> {
    let point = env.path("mnt");
    fs::create_dir_all(&point).unwrap();
    let child = env
        .std_command()
        .args(["mount", "home"])
        .arg(&point)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut mounted = Mounted { child, point };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mounted.point.join("latest").exists() {
        if let Some(status) = mounted.child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            mounted
                .child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return Err(format!("strata mount exited {status}: {err}"));
        }
        if Instant::now() > deadline {
            return Err("the mount did not show up within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(mounted)
}

#[test]
fn every_increment_reads_as_its_restore() {
    if let Some(why) = cannot_mount() {
        return skip(&why);
    }
    both("every_increment_reads_as_its_restore", reads_as_its_restore);
}

fn reads_as_its_restore(dest: &Dest) {
    let env = Env::new();
    let names = history(&env, dest);
    let mut mounted = match mount(&env) {
        Ok(m) => m,
        // A container without the right to mount: say so, do not fail.
        Err(e) if e.contains("Operation not permitted") || e.contains("Permission denied") => {
            return skip(&format!("this machine refuses FUSE mounts: {e}"));
        }
        Err(e) => panic!("{e}"),
    };
    let mut shown: Vec<String> = fs::read_dir(&mounted.point)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    shown.sort();
    let mut want = names.clone();
    want.push("latest".into());
    assert_eq!(shown, want);
    for (i, name) in names.iter().enumerate() {
        let to = env.path(&format!("restored-{i}"));
        let (code, out, err) = env.run(&[
            "restore",
            "home",
            "--to",
            to.to_str().unwrap(),
            "--at",
            name,
        ]);
        assert_eq!(code, 0, "{out}{err}");
        let restored = describe(&to);
        let through = describe(&mounted.point.join(name));
        assert!(restored.len() >= 6, "{restored:#?}");
        if i == 0 && !user_xattrs(&env.path("src-home/docs/a.txt")).is_empty() {
            assert!(through["docs/a.txt"].contains("user.note"), "{through:#?}");
        }
        if through != restored {
            let mut diff = String::new();
            for (k, v) in &restored {
                match through.get(k) {
                    Some(t) if t == v => {}
                    t => diff.push_str(&format!("{k}:\n  restore {v}\n  mount   {t:?}\n")),
                }
            }
            for k in through.keys().filter(|k| !restored.contains_key(*k)) {
                diff.push_str(&format!("{k}: only in the mount\n"));
            }
            panic!("{}: {name} differs:\n{diff}", dest.label());
        }
    }
    // A read in the middle of a file is those bytes (on an object store, a
    // ranged get).
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::open(mounted.point.join("latest/docs/big.bin")).unwrap();
        let mut buf = [0u8; 7];
        f.read_exact_at(&mut buf, 250_003).unwrap();
        assert_eq!(&buf, b"3456789");
        let mut end = [0u8; 4];
        f.read_exact_at(&mut end, 499_996).unwrap();
        assert_eq!(&end, b"6789");
        assert_eq!(f.read_at(&mut end, 500_000).unwrap(), 0);
    }
    // latest/ is the mirror, included-only files too.
    let to = env.path("restored-latest");
    let (code, out, err) = env.run(&["restore", "home", "--to", to.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(describe(&mounted.point.join("latest")), describe(&to));
    // One inode for the names of one source inode.
    let first = mounted.point.join(&names[0]).join("docs");
    let (a, b) = (
        first.join("sub/b.txt").metadata().unwrap(),
        first.join("b-again.txt").metadata().unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    // Read-only.
    let err = fs::write(first.join("a.txt"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert!(fs::write(first.join("fresh"), "x").is_err());
    // A damaged or missing object is an error naming its key, not other
    // bytes; the rest still reads.
    let mut stderr = mounted.child.stderr.take().unwrap();
    if let Dest::Object(b) = dest {
        b.put("jobs/home/mirror/docs/a.txt", b"short");
        b.delete("jobs/home/mirror/music/song");
        let latest = mounted.point.join("latest");
        for path in ["docs/a.txt", "music/song"] {
            let err = fs::read(latest.join(path)).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EIO), "{path}: {err}");
        }
        assert_eq!(fs::read(latest.join("docs/sub/b.txt")).unwrap(), b"beta");
    }
    // SIGTERM unmounts and exits 0.
    let point = mounted.point.clone();
    assert!(is_mounted(&point));
    assert_eq!(mounted.stop(), Some(0));
    let mut logged = String::new();
    use std::io::Read;
    stderr.read_to_string(&mut logged).unwrap();
    if let Dest::Object(_) = dest {
        for key in ["mirror/docs/a.txt", "mirror/music/song"] {
            assert!(logged.contains(key), "{key} not named: {logged}");
        }
    }
    assert!(!is_mounted(&point), "still mounted after SIGTERM");
    assert_eq!(fs::read_dir(&point).unwrap().count(), 0);
}

#[test]
fn a_mount_point_that_is_not_empty_is_refused() {
    let env = Env::new();
    env.write("src-home/docs/a.txt", "a");
    env.simple_job("home", r#""track_dirs": ["docs"]"#);
    run(&env);
    env.write("mnt/something", "x");
    let (code, _, err) = env.run(&["mount", "home", env.path("mnt").to_str().unwrap()]);
    if !Path::new("/dev/fuse").exists() {
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("/dev/fuse"), "{err}");
    } else {
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("not empty"), "{err}");
    }
}

#[test]
fn a_committed_run_whose_mirror_is_unfinished_is_warned_about_on_an_object_store() {
    if let Some(why) = cannot_mount() {
        return skip(&why);
    }
    let test = "a_committed_run_whose_mirror_is_unfinished_is_warned_about_on_an_object_store";
    let Some(b) = common::s3::bucket(test) else {
        return skip("no S3 server");
    };
    let env = Env::new();
    let names = history(&env, &Dest::Object(b.clone()));
    let mut mounted = match mount(&env) {
        Ok(m) => m,
        Err(e) if e.contains("Operation not permitted") || e.contains("Permission denied") => {
            return skip(&format!("this machine refuses FUSE mounts: {e}"));
        }
        Err(e) => panic!("{e}"),
    };
    let mut stderr = mounted.child.stderr.take().unwrap();
    assert_eq!(mounted.stop(), Some(0));
    // What a run killed after its commit, before its mirror, leaves: its
    // staging prefix, named as the index's run.
    b.put(
        &format!("jobs/home/.strata/staging/{}/plan", names[2]),
        br#"{"base":null,"puts":[],"removes":[]}"#,
    );
    let mut mounted = mount(&env).unwrap();
    let mut again = mounted.child.stderr.take().unwrap();
    assert_eq!(mounted.stop(), Some(0));
    use std::io::Read;
    let (mut before, mut after) = (String::new(), String::new());
    stderr.read_to_string(&mut before).unwrap();
    again.read_to_string(&mut after).unwrap();
    let warning = format!("the run {} committed but was interrupted", names[2]);
    assert!(!before.contains(&warning), "{before}");
    assert!(after.contains(&warning), "{after}");
}

/// A destination whose filesystem refuses xattrs (ramfs): `latest/` shows
/// every entry's xattrs from the sets the run kept by digest, an
/// included-only file's and its folder's too (they have no record).
#[test]
fn latest_shows_the_xattrs_a_ramfs_mirror_cannot_hold() {
    if let Some(why) = cannot_mount() {
        return skip(&why);
    }
    if !common::running_as_root("latest_shows_the_xattrs_a_ramfs_mirror_cannot_hold") {
        return;
    }
    let env = Env::new();
    let file = env.write("src-home/music/song", "la la");
    if !set_xattr(&file, "user.tag", "chorus") {
        return skip("the source's filesystem refuses user xattrs");
    }
    assert!(set_xattr(&env.path("src-home/music"), "user.shelf", "top"));
    let _ramfs = common::Tmpfs::ramfs(&env.path("dest-fs"));
    env.job(
        "home",
        r#"{"source": "../src-home", "destination": "../dest-fs/home", "include_dirs": ["music"]}"#,
    );
    let (code, out, err) = env.run(&["run", "home"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(user_xattrs(&env.path("dest-fs/home/mirror/music/song")).is_empty());
    let m = match mount(&env) {
        Ok(m) => m,
        Err(e) => return skip(&format!("this machine refuses FUSE mounts: {e}")),
    };
    let latest = m.point.join("latest");
    assert_eq!(
        user_xattrs(&latest.join("music/song")),
        [("user.tag".to_string(), "chorus".to_string())]
    );
    assert_eq!(
        user_xattrs(&latest.join("music")),
        [("user.shelf".to_string(), "top".to_string())]
    );
    assert_eq!(
        fs::read_to_string(latest.join("music/song")).unwrap(),
        "la la"
    );
    assert_eq!(m.stop(), Some(0));
}
