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
