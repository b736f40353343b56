//! Test environment: a temp directory with a jobs dir, helpers to build
//! source trees (contents, modes, mtimes, symlinks) and to run the real
//! `strata` binary on them.
#![allow(dead_code)]

pub mod dest;
pub mod fixtures;

pub mod kill;
pub mod s3;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The credentials and region the tests' S3 server (moto, which accepts
/// any) is reached with.
pub const S3_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "strata-test"),
    ("AWS_SECRET_ACCESS_KEY", "strata-test-secret"),
    ("AWS_REGION", "us-east-1"),
];

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
            .env_remove("STRATA_FAULT_RESUME")
            .env_remove("RUST_LOG")
            .env("STRATA_STATE_DIR", self.state_dir())
            .envs(S3_ENV.iter().copied())
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env_remove("AWS_PROFILE")
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
            .env_remove("STRATA_FAULT_RESUME")
            .env("STRATA_STATE_DIR", self.state_dir())
            .envs(S3_ENV.iter().copied())
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env_remove("AWS_PROFILE")
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

/// Whether the tests run as root (mounting, chown, setpriv need it);
/// prints why the caller skips when not.
pub fn running_as_root(test: &str) -> bool {
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        eprintln!("skipping {test}: needs root (CI and `make test` run as root)");
    }
    root
}

/// Whether `tool` is on PATH; prints why the caller skips when not.
pub fn have_tool(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping: {tool} is not installed (scripts/test-deps.sh installs it)");
    }
    found
}

/// libfaketime itself, for a process the test will kill: the `faketime`
/// wrapper forks, so killing the wrapper leaves the program running and
/// the wrapper's semaphore behind in /dev/shm (a later wrapper that gets
/// the same PID then fails with "sem_open: File exists"). `None`, with the
/// reason printed, when it is not installed.
#[allow(dead_code)]
pub fn libfaketime() -> Option<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/usr/lib/faketime"),
        PathBuf::from("/usr/local/lib/faketime"),
    ];
    if let Ok(lib) = fs::read_dir("/usr/lib") {
        // Debian's multiarch folders: /usr/lib/x86_64-linux-gnu/faketime.
        dirs.extend(lib.flatten().map(|e| e.path().join("faketime")));
    }
    let found = dirs
        .into_iter()
        .map(|d| d.join("libfaketime.so.1"))
        .find(|lib| lib.is_file());
    if found.is_none() {
        eprintln!(
            "skipping: libfaketime is not installed (scripts/test-deps.sh installs faketime)"
        );
    }
    found
}

/// A tmpfs (or ramfs) mounted for a test's lifetime (lazily unmounted on
/// drop).
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mount a tmpfs with `options` (`size=1m,nr_inodes=200`) at `path`.
    pub fn mount(path: &Path, options: &str) -> Tmpfs {
        Tmpfs::of_type("tmpfs", &["-o", options], path)
    }

    /// Mount a ramfs at `path`: a filesystem that refuses every xattr.
    #[allow(dead_code)] // not every test binary mounts one
    pub fn ramfs(path: &Path) -> Tmpfs {
        Tmpfs::of_type("ramfs", &[], path)
    }

    fn of_type(kind: &str, options: &[&str], path: &Path) -> Tmpfs {
        fs::create_dir_all(path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", kind])
            .args(options)
            .arg(kind)
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a {kind} at {}", path.display());
        Tmpfs(path.to_path_buf())
    }

    /// Change its options (`size=…`, `nr_inodes=…`, `ro`).
    pub fn remount(&self, options: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}");
    }

    /// (inodes used, bytes used) as statvfs counts them.
    pub fn used(&self) -> (u64, u64) {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: statvfs fills the struct it is given; the path is a C string.
        let st = unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(path.as_ptr(), &mut st), 0);
            st
        };
        (
            st.f_files - st.f_ffree,
            (st.f_blocks - st.f_bfree) * st.f_frsize,
        )
    }

    /// Leave only `free` bytes free (tmpfs counts whole pages; `size=0`
    /// would mean no limit, so at least one page).
    pub fn leave_bytes(&self, free: u64) {
        let (_, used) = self.used();
        self.remount(&format!("size={}", (used + free).max(4096)));
    }

    /// Leave only `free` inodes free (`nr_inodes=0` would mean no limit).
    pub fn leave_inodes(&self, free: u64) {
        let (used, _) = self.used();
        self.remount(&format!("nr_inodes={}", (used + free).max(1)));
    }

    /// Unmount now (not lazily): the folder below shows again.
    pub fn unmount(self) {
        let status = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "umount {}", self.0.display());
        std::mem::forget(self);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The unprivileged user attacker loops run as (`nobody`).
pub const NOBODY: u32 = 65534;

/// Give a tree to [`NOBODY`], and open the path to it, so that an
/// unprivileged attacker can rename things inside it.
pub fn give_to_nobody(env: &Env, rel: &str) {
    fs::set_permissions(env.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let status = std::process::Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(env.path(rel))
        .status()
        .unwrap();
    assert!(status.success());
}

/// Whether [`NOBODY`] can write in `path` (every folder above it must let
/// it through: a private TMPDIR does not); prints why the caller skips
/// when not.
pub fn nobody_can_write(path: &Path) -> bool {
    let ok = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "test",
            "-w",
        ])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "skipping: uid {NOBODY} cannot reach {} (is TMPDIR private?)",
            path.display()
        );
    }
    ok
}

/// A shell loop run as [`NOBODY`] (through `setpriv`) in the background:
/// the attacker of a root backup. The script sees `$STOP`, a file whose
/// existence tells it to end, and must bound itself too. Dropping the
/// guard stops it (the stop file, then SIGKILL by PID).
pub struct Attacker {
    child: Option<std::process::Child>,
    stop: PathBuf,
}

impl Attacker {
    /// Start `script` (sh) in `dir`; `stop` is the stop file's path, in a
    /// folder the attacker can read.
    pub fn start(dir: &Path, stop: &Path, script: &str) -> Attacker {
        let _ = fs::remove_file(stop);
        let child = std::process::Command::new("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "sh",
                "-c",
                script,
            ])
            .current_dir(dir)
            .env("STOP", stop)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("setpriv runs");
        Attacker {
            child: Some(child),
            stop: stop.to_path_buf(),
        }
    }

    /// Stop the loop; what it printed (scripts print their count).
    pub fn stop(mut self) -> String {
        self.halt()
    }

    fn halt(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        let _ = fs::write(&self.stop, b"");
        // The loop checks the stop file on each round; a round is short.
        for _ in 0..2_000 {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Run a command with a hang guard: `None` when it had not finished after
/// `secs` seconds (it is then killed by PID).
pub fn output_within(cmd: &mut std::process::Command, secs: u64) -> Option<std::process::Output> {
    use std::io::Read;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    status.map(|status| std::process::Output {
        status,
        stdout,
        stderr,
    })
}

/// Copy a tree with `cp -a` (replacing `to`).
pub fn copy_tree(from: &Path, to: &Path) {
    if to.symlink_metadata().is_ok() {
        fs::remove_dir_all(to).unwrap();
    }
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// Every regular file below `root` (symlinks not followed) whose bytes
/// contain `needle`, and every entry whose name contains it.
pub fn find_bytes(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let name = entry.file_name().as_encoded_bytes();
        let in_name = name.windows(needle.len()).any(|w| w == needle);
        let in_body = entry.file_type().is_file()
            && fs::read(entry.path())
                .is_ok_and(|body| body.windows(needle.len()).any(|w| w == needle));
        if in_name || in_body {
            hits.push(entry.path().to_path_buf());
        }
    }
    hits
}
