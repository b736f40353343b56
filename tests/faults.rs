//! I/O faults at the destination and in the source: a full disk, a
//! read-only destination, a file that changes while it is copied, a second
//! process on the same job. Each ends with a clear message naming the path,
//! exit 1 (or a skip), nothing lost, and the next run completes the work.
//!
//! The destination tests mount a small tmpfs, so they need root (as CI and
//! the development machines run).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Env, snapshot};
use serde_json::Value;

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs(path.to_path_buf())
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn job(env: &Env) -> (i32, Value) {
    env.run_json(&["run", "f"])
}

fn errors(report: &Value) -> String {
    format!(
        "{} {}",
        report["jobs"][0]["message"], report["jobs"][0]["errors"]
    )
}

#[test]
fn a_full_destination_loses_nothing_and_the_next_run_completes() {
    let env = Env::new();
    for i in 0..40 {
        env.write(&format!("src-f/d{}/file{i}", i % 4), &"x".repeat(32 * 1024));
    }
    env.simple_job("f", r#""track_dirs": ["."]"#);
    let disk = Tmpfs::mount(&env.path("dest-f"), "600k");
    let (code, report) = job(&env);
    assert_eq!(code, 1, "{report:#}");
    let text = errors(&report);
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains("dest-f") || text.contains("file"), "{text}");
    disk.remount("size=8m");
    let (code, report) = job(&env);
    assert_eq!(code, 0, "{report:#}");
    let src = snapshot(&env.path("src-f"));
    assert_eq!(src, snapshot(&env.path("dest-f/mirror")));
    // Every file is in the history exactly once.
    let mut recorded = Vec::new();
    for inc in env.increments("dest-f") {
        let track = snapshot(&env.path(&format!("dest-f/{inc}/track")));
        recorded.extend(track.into_keys());
    }
    recorded.sort();
    assert_eq!(recorded, src.into_keys().collect::<Vec<_>>());
    assert!(!env.path("dest-f/.strata/dirty").exists());
}

#[test]
fn a_read_only_destination_fails_clearly_and_recovers() {
    let env = Env::new();
    env.write("src-f/a", "one");
    env.simple_job("f", r#""track_dirs": ["."]"#);
    let disk = Tmpfs::mount(&env.path("dest-f"), "8m");
    assert_eq!(job(&env).0, 0);
    env.write("src-f/a", "two, longer");
    env.write("src-f/b", "new");
    disk.remount("ro");
    let (code, report) = job(&env);
    assert_eq!(code, 1, "{report:#}");
    let text = errors(&report);
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(text.contains("dest-f"), "{text}");
    assert_eq!(
        fs::read_to_string(env.path("dest-f/mirror/a")).unwrap(),
        "one"
    );
    disk.remount("rw");
    assert_eq!(job(&env).0, 0);
    assert_eq!(
        snapshot(&env.path("src-f")),
        snapshot(&env.path("dest-f/mirror"))
    );
    assert_eq!(env.increments("dest-f").len(), 2);
}

#[test]
fn a_file_growing_while_copied_keeps_the_old_version_and_is_retried() {
    let env = Env::new();
    env.write("src-f/big.bin", &"a".repeat(32 * 1024 * 1024));
    env.write("src-f/small", "s");
    env.simple_job("f", r#""track_dirs": ["."]"#);
    assert_eq!(job(&env).0, 0);
    let old = fs::read(env.path("dest-f/mirror/big.bin")).unwrap();

    // A writer appends to the file for as long as the run lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let path = env.path("src-f/big.bin");
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"more").unwrap();
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (code, report) = job(&env);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(code, 1, "{report:#}");
    let job_row = &report["jobs"][0];
    assert_eq!(job_row["status"], "partial");
    assert_eq!(job_row["errors"][0]["path"], "big.bin");
    assert!(
        job_row["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("changed while being copied"),
        "{job_row:#}"
    );
    assert_eq!(fs::read(env.path("dest-f/mirror/big.bin")).unwrap(), old);
    assert_eq!(
        fs::read_dir(env.path("dest-f/.strata/tmp"))
            .unwrap()
            .count(),
        0
    );

    let (code, _) = job(&env);
    assert_eq!(code, 0);
    assert_eq!(
        fs::read(env.path("dest-f/mirror/big.bin")).unwrap(),
        fs::read(env.path("src-f/big.bin")).unwrap()
    );
}

#[test]
fn a_second_process_on_a_running_job_is_skipped() {
    let env = Env::new();
    for i in 0..20_000 {
        env.write(&format!("src-f/d{}/f{i}", i % 50), "content");
    }
    env.simple_job("f", r#""track_dirs": ["."]"#);
    let first = env
        .std_command()
        .args(["--json", "run", "f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first run is changing the mirror once the dirty marker exists.
    let dirty = env.path("dest-f/.strata/dirty");
    let started = std::time::Instant::now();
    while !dirty.exists() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the first run never started applying"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (code, report) = job(&env);
    assert_eq!(code, 0, "a skip is not a failure: {report:#}");
    assert_eq!(report["jobs"][0]["status"], "skipped_locked");
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["jobs"][0]["stats"]["new"], 20_000);
}

#[test]
fn one_file_system_does_not_cross_mount_points() {
    let env = Env::new();
    env.write("src-f/here", "on the source filesystem");
    let _mounted = Tmpfs::mount(&env.path("src-f/mnt"), "1m");
    env.write("src-f/mnt/there", "on another filesystem");
    env.simple_job("f", r#""track_dirs": ["."], "one_file_system": true"#);
    assert_eq!(job(&env).0, 0);
    let names: Vec<String> = snapshot(&env.path("dest-f/mirror")).into_keys().collect();
    assert_eq!(names, ["here"]);
    // Without the option the mount is backed up like any directory.
    env.simple_job("f", r#""track_dirs": ["."]"#);
    assert_eq!(job(&env).0, 0);
    let names: Vec<String> = snapshot(&env.path("dest-f/mirror")).into_keys().collect();
    assert_eq!(names, ["here", "mnt/there"]);
}
