//! Apply as a stage: parallel equals sequential, and the copy it makes when
//! the filesystem refuses a hardlink into the increment.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::{Env, snapshot_full};

fn tree(env: &Env, src: &str) {
    for d in 0..8 {
        for f in 0..12 {
            env.write(&format!("{src}/d{d}/f{f}.txt"), &format!("{d} {f}"));
            env.write(&format!("{src}/d{d}/f{f}.md"), &format!("md {d} {f}"));
        }
    }
    fs::hard_link(
        env.path(&format!("{src}/d0/f0.txt")),
        env.path(&format!("{src}/d1/linked")),
    )
    .unwrap();
    env.symlink("f1.txt", &format!("{src}/d2/link"));
    common::set_mtime(&env.path(&format!("{src}/d2/link")), 1_600_000_050);
    for d in 0..8 {
        common::set_mtime(&env.path(&format!("{src}/d{d}")), 1_600_000_000 + d);
    }
    common::set_mtime(&env.path(src), 1_600_000_100);
}

/// One thread or four: the same mirror, the same increment.
#[test]
fn parallel_equals_sequential() {
    let env = Env::new();
    tree(&env, "src-a");
    tree(&env, "src-b");
    env.simple_job("a", r#""track_dirs": ["."]"#);
    env.simple_job("b", r#""track_dirs": ["."]"#);
    assert_eq!(env.run_json(&["--threads", "1", "run", "a"]).0, 0);
    assert_eq!(env.run_json(&["--threads", "4", "run", "b"]).0, 0);
    common::assert_same_tree(
        &snapshot_full(&env.path("dest-a/mirror")),
        &snapshot_full(&env.path("dest-b/mirror")),
    );
    let records = |dest: &str| {
        let inc = env.increments(dest).pop().unwrap();
        let meta: serde_json::Value = serde_json::from_slice(
            &fs::read(env.path(&format!("{dest}/{inc}/{inc}.json"))).unwrap(),
        )
        .unwrap();
        // The hardlink group id comes from the source inode: the same
        // group in two trees has two ids.
        let mut files = meta["files"].clone();
        for f in files.as_array_mut().unwrap() {
            if f.get("link").is_some() {
                f["link"] = serde_json::json!("group");
            }
        }
        files
    };
    let (a, b) = (records("dest-a"), records("dest-b"));
    for (x, y) in a.as_array().unwrap().iter().zip(b.as_array().unwrap()) {
        assert_eq!(x, y);
    }
    assert_eq!(a, b);
}

/// Where the filesystem refuses a hardlink into the increment (injected
/// here as `fail:apply.link`), the increment gets a copy, a new inode of
/// its own given its name once complete: `a.txt` and `a.md` never share a
/// temp name, and no temp file is left for recovery to mistake for a
/// version.
#[test]
fn a_refused_hardlink_gives_the_increment_a_whole_copy() {
    let env = Env::new();
    tree(&env, "src-h");
    env.simple_job("h", r#""track_dirs": ["."]"#);
    let out = env
        .strata()
        .args(["--json", "--threads", "4", "run", "h"])
        .env("STRATA_FAULT", "fail:apply.link")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report:#}");
    let copied = report["jobs"][0]["stats"]["copied_not_linked"]
        .as_u64()
        .unwrap();
    assert!(copied >= 190, "{report:#}");
    let inc = env.increments("dest-h").pop().unwrap();
    for d in 0..8 {
        for f in 0..12 {
            for ext in ["txt", "md"] {
                let rel = format!("d{d}/f{f}.{ext}");
                let track = env.path(&format!("dest-h/{inc}/track/{rel}"));
                let mirror = env.path(&format!("dest-h/mirror/{rel}"));
                assert_eq!(
                    fs::read(&track).unwrap(),
                    fs::read(&mirror).unwrap(),
                    "{rel}: the copy holds its own content"
                );
                assert_ne!(
                    fs::metadata(&track).unwrap().ino(),
                    fs::metadata(&mirror).unwrap().ino()
                );
            }
        }
    }
    let stray: Vec<_> = walkdir::WalkDir::new(env.path("dest-h"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .map(|e| e.path().display().to_string())
        .filter(|p| !p.ends_with(".strata/tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    let (code, out, err) = env.run(&["verify", "h", "--deep"]);
    assert_eq!(code, 0, "{out}{err}");
    let to = env.path("restored");
    let (code, out, err) = env.run(&["restore", "h", "--to", to.to_str().unwrap(), "--at", &inc]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(fs::read_to_string(to.join("d3/f4.md")).unwrap(), "md 3 4");
}
