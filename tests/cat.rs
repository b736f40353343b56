//! `strata cat NAME PATH [--at]`: one version to stdout, never a damaged one.

mod common;

use std::fs;

use common::Env;

fn setup() -> (Env, Vec<String>) {
    let env = Env::new();
    env.write("src-home/docs/a.txt", "first version");
    env.write("src-home/music/song", "la la");
    env.symlink("a.txt", "src-home/docs/link");
    env.simple_job(
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["music"]"#,
    );
    let mut names = Vec::new();
    for body in ["first version", "second, longer version"] {
        env.write("src-home/docs/a.txt", body);
        let (code, v) = env.run_json(&["run", "home"]);
        assert_eq!(code, 0, "{v:#}");
        if let Some(n) = v["jobs"][0]["increment"].as_str() {
            names.push(n.to_string());
        }
    }
    (env, names)
}

#[test]
fn cat_prints_the_version_at_a_point() {
    let (env, names) = setup();
    assert_eq!(names.len(), 2);
    for (at, want) in [
        (None, "second, longer version"),
        (Some(names[0].as_str()), "first version"),
        (Some("-1"), "first version"),
        (Some("-0"), "second, longer version"),
    ] {
        let mut args = vec!["cat", "home", "docs/a.txt"];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        let out = env.strata().args(&args).output().unwrap();
        assert!(out.status.success(), "{at:?}: {out:?}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), want, "{at:?}");
    }
    // Included-only files are in the latest state.
    let (code, out, _) = env.run(&["cat", "home", "music/song"]);
    assert_eq!((code, out.as_str()), (0, "la la"));
    let (code, _, err) = env.run(&["cat", "home", "docs/link"]);
    assert_eq!(code, 1);
    assert!(err.contains("is a symlink to a.txt"), "{err}");
    let (code, _, err) = env.run(&["cat", "home", "docs"]);
    assert_eq!(code, 1);
    assert!(err.contains("is a directory"), "{err}");
    let (code, _, err) = env.run(&["cat", "home", "docs/nope", "--at", "-1"]);
    assert_eq!(code, 1);
    assert!(err.contains("no docs/nope at"), "{err}");
}

#[test]
fn a_damaged_copy_prints_nothing_and_fails() {
    let (env, names) = setup();
    // Same size, other bytes, in the first increment's copy.
    let stored = env.path(&format!("dest-home/{}/track/docs/a.txt", names[0]));
    fs::write(&stored, "FIRST VERSION").unwrap();
    let out = env
        .strata()
        .args(["cat", "home", "docs/a.txt", "--at", &names[0]])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match the hash recorded"), "{err}");
    // A copy of another size, likewise.
    fs::write(&stored, "short").unwrap();
    let out = env
        .strata()
        .args(["cat", "home", "docs/a.txt", "--at", &names[0]])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}
