//! Interrupting a run: at every fault point it passes (the points a traced
//! run lists, `STRATA_FAULT_TRACE`, each then hit with
//! `STRATA_FAULT=abort:SITE@PATH#N`, as abrupt as SIGKILL), and with a real
//! SIGKILL by PID once the mirror shows that the run is under way. Each
//! interruption starts from the same saved destination; the caller's check
//! then runs what comes next and asserts.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Env, copy_tree};

/// A destination (and what strata remembers of it) saved, to start each
/// interruption from.
pub struct Saved {
    dest: PathBuf,
    base: PathBuf,
    state_base: PathBuf,
    state: PathBuf,
}

impl Saved {
    /// Save `dest` (relative to the environment) as it is now.
    pub fn new(env: &Env, dest: &str) -> Saved {
        Saved::tagged(env, dest, "")
    }

    /// The same, kept apart from other saves of `dest` by `tag`.
    pub fn tagged(env: &Env, dest: &str, tag: &str) -> Saved {
        let key = format!("{}{tag}", dest.replace('/', "-"));
        let saved = Saved {
            dest: env.path(dest),
            base: env.path(&format!("saved-{key}")),
            state_base: env.path(&format!("saved-state-{key}")),
            state: env.state_dir(),
        };
        copy_tree(&saved.dest, &saved.base);
        if saved.state.exists() {
            copy_tree(&saved.state, &saved.state_base);
        } else {
            fs::create_dir_all(&saved.state_base).unwrap();
        }
        saved
    }

    /// Put the destination back as it was saved.
    pub fn put_back(&self) {
        // A destination that is a mount point stays one: empty it instead.
        if self.dest.exists() {
            for entry in fs::read_dir(&self.dest).unwrap() {
                let path = entry.unwrap().path();
                if path.symlink_metadata().unwrap().is_dir() {
                    fs::remove_dir_all(&path).unwrap();
                } else {
                    fs::remove_file(&path).unwrap();
                }
            }
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", self.base.display()))
                .arg(&self.dest)
                .status()
                .unwrap();
            assert!(status.success());
        } else {
            copy_tree(&self.base, &self.dest);
        }
        copy_tree(&self.state_base, &self.state);
    }
}

/// The fault points that `args` passes from the current state, as `abort:`
/// rules (each (site, path) pair counted, so that a point passed twice is
/// told apart). The traced run is a real, complete one.
pub fn fault_points(env: &Env, args: &[&str]) -> Vec<String> {
    let trace = env.path("fault-trace");
    let _ = fs::remove_file(&trace);
    let out = env
        .strata()
        .args(args)
        .env("STRATA_FAULT_TRACE", &trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the traced run: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&trace).unwrap_or_default();
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    text.lines()
        .map(|l| {
            let n = seen.entry(l).or_default();
            *n += 1;
            format!("abort:{l}#{n}")
        })
        .collect()
}

/// Abort `args` at `rule`; panics unless the process died by a signal.
pub fn abort_at(env: &Env, args: &[&str], rule: &str) {
    let out = env
        .strata()
        .args(args)
        .env("STRATA_FAULT", rule)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_none(),
        "{rule}: exit {:?}, expected an abort: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start `args`, wait until `under_way()` says the run is changing the
/// destination (or the run ends), and SIGKILL it by PID. Whether the kill
/// landed before the run finished.
pub fn kill_when(env: &Env, args: &[&str], under_way: impl Fn() -> bool) -> bool {
    let mut child = env
        .std_command()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A hang guard, not a timing assertion.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if under_way() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run neither ended nor got under way"
        );
        std::thread::yield_now();
    }
    let _ = child.kill(); // SIGKILL, by PID
    child.wait().unwrap().code().is_none()
}

/// Whether `path` is, as lstat sees it, a symlink / a regular file.
pub fn is_symlink(path: &Path) -> bool {
    path.symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
}

/// Whether `path` is a regular file (lstat).
pub fn is_file(path: &Path) -> bool {
    path.symlink_metadata()
        .is_ok_and(|m| m.file_type().is_file())
}
