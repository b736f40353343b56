//! Hostile names, trees and job files: each is backed up correctly or
//! skipped with a named reason; nothing escapes the destination or follows a
//! link out of the source; no job file makes strata panic.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::{Env, snapshot};
use serde_json::Value;

fn run_report(env: &Env) -> (i32, Value) {
    env.run_json(&["run-all"])
}

#[test]
fn odd_names_are_backed_up_exactly() {
    let env = Env::new();
    let src = env.path("src-n");
    fs::create_dir_all(&src).unwrap();
    let names: Vec<&[u8]> = vec![
        b"non-utf8-\xff\xfe.txt",
        b"new\nline.txt",
        b"back\\slash.txt",
        b"-leading-dash",
        b"tab\tname",
        b"sp ace \xc3\xa9.txt",
        b"*star?[x]{a,b}",
    ];
    for (i, name) in names.iter().enumerate() {
        let p = src.join(OsStr::from_bytes(name));
        fs::write(&p, format!("content {i}")).unwrap();
    }
    fs::create_dir(src.join(OsStr::from_bytes(b"dir\xff"))).unwrap();
    fs::write(src.join(OsStr::from_bytes(b"dir\xff/inner")), "inner").unwrap();
    env.simple_job("n", r#""track_dirs": ["."]"#);
    let (code, report) = run_report(&env);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["jobs"][0]["stats"]["new"], 8);
    assert_eq!(snapshot(&src), snapshot(&env.path("dest-n/mirror")));
    let inc = env.increments("dest-n").pop().unwrap();
    assert_eq!(
        snapshot(&src),
        snapshot(&env.path(&format!("dest-n/{inc}/track")))
    );
    // Non-UTF-8 paths are recorded exactly, in hex.
    let meta: Value =
        serde_json::from_slice(&fs::read(env.path(&format!("dest-n/{inc}/{inc}.json"))).unwrap())
            .unwrap();
    let hexes: Vec<&str> = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["path_hex"].as_str())
        .collect();
    // (The directory `dir\xff`, recorded too, is one of them.)
    assert_eq!(hexes.len(), 3, "{hexes:?}");
    // A second run sees nothing to do.
    let (_, report) = run_report(&env);
    assert_eq!(report["jobs"][0]["stats"]["changed"], 0);
}

#[test]
fn links_loops_and_hardlinks_inside_the_source() {
    let env = Env::new();
    env.write("outside/secret", "do not copy");
    env.write("src-l/file", "data");
    fs::hard_link(env.path("src-l/file"), env.path("src-l/hardlink")).unwrap();
    env.symlink("loop2", "src-l/loop1");
    env.symlink("loop1", "src-l/loop2");
    env.symlink("..", "src-l/up");
    env.symlink(env.path("outside").to_str().unwrap(), "src-l/out");
    env.symlink("../outside/secret", "src-l/dir/rel-out");
    env.simple_job("l", r#""track_dirs": ["."]"#);
    let (code, report) = run_report(&env);
    assert_eq!(code, 0, "{report:#}");
    let mirror = snapshot(&env.path("dest-l/mirror"));
    assert_eq!(mirror["loop1"], "link -> loop2");
    assert_eq!(mirror["up"], "link -> ..");
    assert_eq!(mirror["dir/rel-out"], "link -> ../outside/secret");
    assert!(mirror["hardlink"].ends_with("data"));
    // Nothing from outside the source was copied.
    assert!(
        mirror.values().all(|v| !v.contains("do not copy")),
        "{mirror:?}"
    );
    assert_eq!(mirror.len(), 7, "{mirror:?}");
}

/// Make `depth` nested directories named `name` below `base`, with a file at
/// the bottom, walking down with openat so that no path grows past PATH_MAX.
fn deep_tree(base: &Path, name: &str, depth: usize) {
    use std::ffi::CString;
    fs::create_dir_all(base).unwrap();
    let c_name = CString::new(name).unwrap();
    let c_base = CString::new(base.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain POSIX calls on descriptors this function owns and closes.
    unsafe {
        let mut fd = libc::open(c_base.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
        assert!(fd >= 0);
        for _ in 0..depth {
            assert_eq!(libc::mkdirat(fd, c_name.as_ptr(), 0o755), 0);
            let next = libc::openat(fd, c_name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(next >= 0);
            libc::close(fd);
            fd = next;
        }
        let leaf = CString::new("leaf.txt").unwrap();
        let f = libc::openat(fd, leaf.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
        assert!(f >= 0);
        assert_eq!(libc::write(f, b"leaf".as_ptr().cast(), 4), 4);
        libc::close(f);
        libc::close(fd);
    }
}

/// The content of the leaf file at the bottom of a [`deep_tree`], read
/// walking down with openat.
fn read_deep(base: &Path, name: &str, depth: usize) -> Option<String> {
    use std::ffi::CString;
    let c_name = CString::new(name).unwrap();
    let c_base = CString::new(base.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain POSIX calls on descriptors this function owns and closes.
    unsafe {
        let mut fd = libc::open(c_base.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
        if fd < 0 {
            return None;
        }
        for _ in 0..depth {
            let next = libc::openat(fd, c_name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            libc::close(fd);
            if next < 0 {
                return None;
            }
            fd = next;
        }
        let leaf = CString::new("leaf.txt").unwrap();
        let f = libc::openat(fd, leaf.as_ptr(), libc::O_RDONLY);
        libc::close(fd);
        if f < 0 {
            return None;
        }
        let mut buf = [0u8; 64];
        let n = libc::read(f, buf.as_mut_ptr().cast(), buf.len());
        libc::close(f);
        Some(String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned())
    }
}

#[test]
fn paths_longer_than_path_max_are_backed_up_and_restored_exactly() {
    let env = Env::new();
    env.write("src-p/ok.txt", "fine");
    // 2,600 levels of `d/`: a 5,200-byte path; 20 names of 250 bytes.
    deep_tree(&env.path("src-p/deep"), "d", 2_600);
    deep_tree(&env.path("src-p/long"), &"n".repeat(250), 20);
    env.simple_job("p", r#""track_dirs": ["."]"#);
    let (code, report) = run_report(&env);
    assert_eq!(code, 0, "{report:#}");
    let job = &report["jobs"][0];
    assert_eq!(job["stats"]["selected"], 3, "{report:#}");
    assert_eq!(
        read_deep(&env.path("dest-p/mirror/deep"), "d", 2_600).as_deref(),
        Some("leaf")
    );
    assert_eq!(
        read_deep(&env.path("dest-p/mirror/long"), &"n".repeat(250), 20).as_deref(),
        Some("leaf")
    );
    let (code, out, err) = env.run(&["verify", "p", "--deep"]);
    assert_eq!(code, 0, "{out}{err}");
    // Restored exactly, from the increment and from the mirror.
    let inc = env.increments("dest-p").pop().unwrap();
    for (to, at) in [("r1", Some(inc.as_str())), ("r2", None)] {
        let target = env.path(to);
        let mut args = vec!["restore", "p", "--to", target.to_str().unwrap()];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        let (code, out, err) = env.run(&args);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(
            read_deep(&target.join("deep"), "d", 2_600).as_deref(),
            Some("leaf")
        );
        assert_eq!(
            read_deep(&target.join("long"), &"n".repeat(250), 20).as_deref(),
            Some("leaf")
        );
    }
    // Nothing to do on the next run.
    let (_, report) = run_report(&env);
    assert_eq!(report["jobs"][0]["stats"]["changed"], 0);
    assert_eq!(report["jobs"][0]["stats"]["new"], 0);
}

#[test]
fn a_directory_with_200000_entries() {
    let env = Env::new();
    let dir = env.path("src-h/big");
    fs::create_dir_all(&dir).unwrap();
    for i in 0..200_000 {
        fs::File::create(dir.join(format!("f{i:06}"))).unwrap();
    }
    env.simple_job("h", r#""include_dirs": ["."]"#);
    let (code, report) = run_report(&env);
    assert_eq!(code, 0, "{:#}", report["jobs"][0]["message"]);
    assert_eq!(report["jobs"][0]["stats"]["mirror"], 200_000);
    assert_eq!(
        fs::read_dir(env.path("dest-h/mirror/big")).unwrap().count(),
        200_000
    );
}

#[test]
fn hostile_job_files_are_errors_and_nothing_runs() {
    let env = Env::new();
    env.write("src/a", "a");
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    env.job("nested", &nested);
    let huge: Vec<String> = (0..20_000).map(|i| format!("d{i}")).collect();
    env.job(
        "huge",
        &serde_json::json!({"source": "../src", "destination": "../d-huge", "track_dirs": huge})
            .to_string(),
    );
    env.job(
        "types",
        r#"{"source": ["x"], "destination": {"a": 1}, "track_dirs": [1], "enabled": "yes",
            "retention": [], "compare": "fast", "schedule": 5, "name": "bad name"}"#,
    );
    env.job(
        "updir",
        r#"{"source": "../src", "destination": "../d-up", "track_dirs": ["../.."]}"#,
    );
    env.job(
        "root",
        r#"{"source": "../src", "destination": "/", "track_dirs": ["."]}"#,
    );
    env.job(
        "system",
        r#"{"source": "../src", "destination": "/proc/strata", "track_dirs": ["."]}"#,
    );
    env.job(
        "parent",
        r#"{"source": "../src", "destination": "..", "track_dirs": ["."]}"#,
    );
    env.job("empty", "");
    env.job("null", "null");
    let (code, out, _) = env.run(&["validate"]);
    assert_eq!(code, 1);
    for file in [
        "nested", "huge", "types", "updir", "root", "system", "parent", "empty", "null",
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("{file}.json:")) && l.contains(": error: ")),
            "no error for {file}.json:\n{out}"
        );
    }
    assert!(out.contains("has more than 10000 items"), "{out}");
    assert!(
        out.lines().all(|l| l.len() < 400),
        "an error line is too long:\n{out}"
    );
    let (code, report) = env.run_json(&["run-all"]);
    assert_eq!(code, 1);
    let rows = report["jobs"].as_array().unwrap();
    assert_eq!(rows.len(), 9);
    assert!(rows.iter().all(|r| r["status"] == "failed"));
    for dest in ["d-huge", "d-up"] {
        assert!(!env.path(dest).exists(), "{dest} was created");
    }
}

/// Issue 14 item 10: a 500,000-character rule made validate and run-all
/// exit 101 (globset's "regex compilation shouldn't fail"), and the valid
/// jobs did not run; a 50 MB rule took 8 GB of memory.
#[test]
fn huge_rules_and_files_are_errors_and_the_other_jobs_run() {
    let env = Env::new();
    env.write("src-ok/a.txt", "a");
    env.write("src/b.txt", "b");
    env.simple_job("ok", r#""track_dirs": ["."]"#);
    let long = "a".repeat(500_000);
    env.job(
        "long",
        &serde_json::json!({"source": "../src", "destination": "../d-long", "track_dirs": [long]})
            .to_string(),
    );
    let nested = format!("{}x{}", "{a,".repeat(1000), "}".repeat(1000));
    let alternatives: Vec<String> = (0..100_000).map(|i| format!("a{i}")).collect();
    let alternatives = format!("{{{}}}", alternatives.join(","));
    let many: Vec<String> = (0..9000).map(|i| format!("{i}?*[!a]")).collect();
    env.job(
        "shapes",
        &serde_json::json!({"source": "../src", "destination": "../d-shapes",
            "track_dirs": [".", nested, "**/".repeat(1300), "[[".repeat(2000)],
            "exclude_files": [alternatives]})
        .to_string(),
    );
    env.job(
        "many",
        &serde_json::json!({"source": "../src", "destination": "../d-many",
            "track_dirs": ["."], "exclude_dirs": many})
        .to_string(),
    );
    let fifty_mb = "b".repeat(50 << 20);
    env.job(
        "fifty",
        &format!(
            r#"{{"source": "../src", "destination": "../d-fifty", "track_dirs": ["{fifty_mb}"]}}"#
        ),
    );
    drop(fifty_mb);
    let (code, out, err) = env.run(&["validate"]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let line = |file: &str| {
        out.lines()
            .find(|l| l.contains(&format!("{file}.json:")))
            .unwrap_or_else(|| panic!("no line for {file}:\n{out}"))
            .to_string()
    };
    assert!(
        line("long").contains(&format!(
            "long.json:1:60: error: track_dirs[0]: \"{}\"…: is 500000 bytes long; a rule may \
             have at most 4096",
            "a".repeat(40)
        )),
        "{out}"
    );
    assert!(
        line("fifty").ends_with(
            "fifty.json:1:1: error: the job file has more than 1048576 bytes, the most a job \
             file may have"
        ),
        "{out}"
    );
    let shapes: Vec<&str> = out.lines().filter(|l| l.contains("shapes.json:")).collect();
    assert!(
        shapes.iter().any(
            |l| l.contains("track_dirs[1]") && l.contains("alternate groups nested too deeply")
        ),
        "{shapes:?}"
    );
    assert!(
        shapes
            .iter()
            .any(|l| l.contains("exclude_files[0]") && l.contains("bytes long")),
        "{shapes:?}"
    );
    assert!(
        line("many").contains(
            "error: exclude_dirs[6058]: \"6058?*[!a]\": the rules of this job add up to more \
             than 65536 bytes from here on"
        ),
        "{out}"
    );
    assert!(
        out.lines().all(|l| l.len() < 400),
        "a line is too long:\n{out}"
    );

    // run-all runs the valid job and reports the others as failed rows.
    let (code, report) = env.run_json(&["run-all"]);
    assert_eq!(code, 1, "{report:#}");
    let rows = report["jobs"].as_array().unwrap();
    let status = |name: &str| {
        rows.iter()
            .find(|r| r["job"].as_str().unwrap().contains(name))
            .map(|r| r["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("ok").as_deref(), Some("success"), "{report:#}");
    for name in ["long", "shapes", "many", "fifty"] {
        assert_eq!(
            status(name).as_deref(),
            Some("failed"),
            "{name}: {report:#}"
        );
    }
    assert!(env.path("dest-ok/mirror/a.txt").exists());
}

/// A job file that is a FIFO blocked `open` forever, and one linked to
/// /dev/zero would be read without end: both are errors, at once.
#[test]
fn a_fifo_or_device_as_a_job_file_is_an_error_not_a_hang() {
    let env = Env::new();
    env.write("src-ok/a.txt", "a");
    env.simple_job("ok", r#""track_dirs": ["."]"#);
    let fifo = std::ffi::CString::new(env.jobs().join("fifo.json").as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo on a path this test owns.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("/dev/zero", env.jobs().join("zero.json")).unwrap();
    let mut child = env
        .std_command()
        .arg("validate")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A watchdog, not a timing assertion: a hang fails here instead of
    // stalling the suite.
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        for _ in 0..600 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            // SAFETY: signal 0 only checks that the process exists.
            if unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
                return false;
            }
        }
        // SAFETY: kill the child this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        true
    });
    let status = child.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        !watchdog.join().unwrap(),
        "validate hung on a FIFO job file"
    );
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("fifo.json:1:1: error: cannot read job file: it is a FIFO; a job file must be a regular file"),
        "{out}"
    );
    assert!(
        out.contains("zero.json:1:1: error: cannot read job file: it is a device; a job file must be a regular file"),
        "{out}"
    );
}

/// Issue 14 item 10: a running daemon died when a job file with a huge
/// rule appeared. The loader is shared, so the daemon now reports the
/// file and keeps the other jobs running.
#[test]
fn a_daemon_reports_a_hostile_job_file_and_keeps_running() {
    use std::time::{Duration, Instant};
    let env = Env::new();
    env.write("src-a/a.txt", "a");
    env.simple_job("a", r#""include_dirs": ["."], "schedule": "* * * * * *""#);
    let log = env.path("daemon.log");
    /// Kills the daemon if the test fails before it stops it.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut daemon = Kill(
        env.std_command()
            .arg("daemon")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id() as libc::pid_t;
    let runs = || {
        fs::read_to_string(env.path("dest-a/.strata/runs.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // Polls with a generous deadline, as tests/daemon.rs does.
    let mut wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            if let Some(status) = daemon.0.try_wait().unwrap() {
                panic!(
                    "the daemon exited ({status}) waiting for {what}:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("job a's first run", &|| runs() >= 1);
    env.job(
        "long",
        &serde_json::json!({"source": "../src-a", "destination": "../d-long",
            "track_dirs": ["a".repeat(500_000)]})
        .to_string(),
    );
    let logged = || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("long.json:1:62: error: track_dirs[0]")
    };
    wait_for("the diagnostic in the log", &logged);
    let before = runs();
    wait_for("job a to keep running", &|| runs() >= before + 2);
    // SAFETY: SIGTERM to the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = daemon.0.wait().unwrap();
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}
