//! Test environment: a temp directory with a jobs dir, helpers to build
//! source trees (contents, modes, mtimes, symlinks) and to run the real
//! `strata` binary on them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        fs::create_dir_all(env.jobs()).unwrap();
        env
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn jobs(&self) -> PathBuf {
        self.path("jobs.d")
    }

    /// Write a file (creating parents) with a fixed mtime.
    pub fn write(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
        set_mtime(&p, 1_600_000_000);
        p
    }

    pub fn symlink(&self, target: &str, rel: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    /// Write a job file into the jobs dir.
    pub fn job(&self, name: &str, json: &str) -> PathBuf {
        let p = self.jobs().join(format!("{name}.json"));
        fs::write(&p, json).unwrap();
        p
    }

    /// A job backing up `src` to `dest` (relative to the jobs dir's parent).
    pub fn simple_job(&self, name: &str, rules: &str) -> PathBuf {
        self.job(
            name,
            &format!(r#"{{"source": "../src-{name}", "destination": "../dest-{name}", {rules}}}"#),
        )
    }

    pub fn strata(&self) -> Command {
        let mut cmd = Command::cargo_bin("strata").unwrap();
        cmd.current_dir(self.root())
            .env_remove("STRATA_JOBS_DIR")
            .env_remove("STRATA_FAULT_UNREADABLE")
            .env_remove("STRATA_FAULT")
            .env_remove("STRATA_FAULT_TRACE")
            .env_remove("RUST_LOG")
            .env("STRATA_STATE_DIR", self.state_dir())
            .arg("--jobs-dir")
            .arg(self.jobs());
        cmd
    }

    /// Where strata remembers destinations in this environment.
    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// A plain `std::process::Command` for the binary, for tests that
    /// spawn and kill it.
    pub fn std_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.current_dir(self.root())
            .env_remove("STRATA_JOBS_DIR")
            .env_remove("STRATA_FAULT_UNREADABLE")
            .env_remove("STRATA_FAULT")
            .env_remove("STRATA_FAULT_TRACE")
            .env("STRATA_STATE_DIR", self.state_dir())
            .arg("--jobs-dir")
            .arg(self.jobs());
        cmd
    }

    /// Run strata with args; return (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.strata().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run with `--json` and parse stdout.
    pub fn run_json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (code, out, err) = self.run(&all);
        let value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{out}\nstderr:\n{err}"));
        (code, value)
    }

    /// The increment folders of a destination, oldest first.
    pub fn increments(&self, dest: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(dest))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("backup_"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

pub fn set_mtime(path: &Path, secs: i64) {
    filetime::set_symlink_file_times(
        path,
        filetime::FileTime::from_unix_time(secs, 0),
        filetime::FileTime::from_unix_time(secs, 0),
    )
    .unwrap();
}

/// What a tree holds: relative path -> description of the entry
/// (`file <mode> <content>` or `link -> target`). Directories are left out.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = entry.path().symlink_metadata().unwrap();
        if meta.file_type().is_symlink() {
            let target = fs::read_link(entry.path()).unwrap();
            out.insert(rel, format!("link -> {}", target.display()));
        } else if meta.is_file() {
            let body = fs::read(entry.path()).unwrap();
            out.insert(
                rel,
                format!(
                    "file {:o} {} {}",
                    meta.permissions().mode() & 0o7777,
                    meta.mtime(),
                    String::from_utf8_lossy(&body)
                ),
            );
        }
    }
    out
}

/// Assert two snapshots are equal, showing a line diff when not.
pub fn assert_same_tree(want: &BTreeMap<String, String>, got: &BTreeMap<String, String>) {
    if want == got {
        return;
    }
    let mut diff = String::new();
    for (k, v) in want {
        match got.get(k) {
            None => diff.push_str(&format!("- {k}: {v}\n")),
            Some(g) if g != v => diff.push_str(&format!("~ {k}: want {v}, got {g}\n")),
            _ => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            diff.push_str(&format!("+ {k}: {v}\n"));
        }
    }
    // Long contents are cut: the paths and the start say enough.
    let diff: String = diff
        .lines()
        .map(|l| {
            let cut: String = l.chars().take(300).collect();
            format!("{cut}\n")
        })
        .collect();
    panic!("trees differ:\n{diff}");
}

/// The inode of a path (not following symlinks).
pub fn inode(path: &Path) -> u64 {
    path.symlink_metadata().unwrap().ino()
}

/// Like [`snapshot`], with everything else a backup must keep:
/// directories (`dir <mode> <mtime>`), each entry's user xattrs, and
/// hardlink groups (a file sharing its inode with an earlier path of the
/// tree says `= FIRST-PATH` instead of its content).
pub fn snapshot_full(root: &Path) -> BTreeMap<String, String> {
    snapshot_full_where(root, |_| true)
}

/// [`snapshot_full`] of the entries `keep` accepts (hardlink groups among
/// them only).
pub fn snapshot_full_where(root: &Path, keep: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut entries: Vec<walkdir::DirEntry> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    for entry in entries {
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if !keep(&rel) {
            continue;
        }
        let meta = entry.path().symlink_metadata().unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let desc = if meta.file_type().is_symlink() {
            let target = fs::read_link(entry.path()).unwrap();
            format!("link -> {} {}", target.display(), meta.mtime())
        } else if meta.is_dir() {
            format!("dir {mode:o} {}{}", meta.mtime(), user_xattrs(entry.path()))
        } else {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = inodes.get(&key) {
                format!("= {first}")
            } else {
                inodes.insert(key, rel.clone());
                let body = fs::read(entry.path()).unwrap();
                format!(
                    "file {mode:o} {} {}{}",
                    meta.mtime(),
                    String::from_utf8_lossy(&body),
                    user_xattrs(entry.path())
                )
            }
        };
        out.insert(rel, desc);
    }
    out
}

/// ` [name=value ...]` for the user xattrs of `path` (empty when none).
fn user_xattrs(path: &Path) -> String {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: valid C string and buffer with its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return String::new();
    }
    let mut parts = Vec::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| n.starts_with(b"user."))
    {
        let cn = CString::new(name).unwrap();
        let mut value = vec![0u8; 4096];
        // SAFETY: as above.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cn.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if m >= 0 {
            parts.push(format!(
                "{}={}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(&value[..m as usize])
            ));
        }
    }
    parts.sort();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join(" "))
    }
}
