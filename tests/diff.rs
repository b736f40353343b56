//! `strata diff`: between any two increments (and the latest state) it
//! reports what `diff -r` of the two restores reports, and the metadata
//! differences `diff -r` cannot see.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Env, set_mtime};
use serde_json::Value;

/// A job `home` that tracks its whole source.
fn setup() -> Env {
    let env = Env::new();
    env.write("src-home/a.txt", "alpha");
    env.write("src-home/docs/b.txt", "beta");
    env.write("src-home/docs/deep/c.txt", "gamma");
    env.write("src-home/gone/x.txt", "x");
    env.write("src-home/kind", "a file, then a link");
    env.write("src-home/dirfile", "a file, then a folder");
    env.symlink("a.txt", "src-home/link");
    env.simple_job("home", r#""track_dirs": ["."]"#);
    env
}

fn run(env: &Env) -> String {
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");
    report["jobs"][0]["increment"]
        .as_str()
        .expect("an increment")
        .to_string()
}

/// Four runs with every kind of change between them.
fn history(env: &Env) -> Vec<String> {
    let mut names = vec![run(env)];
    // Content, a new file, a removed folder, a symlink retargeted.
    env.write("src-home/docs/b.txt", "beta, longer now");
    env.write("src-home/docs/new.txt", "new");
    fs::remove_dir_all(env.path("src-home/gone")).unwrap();
    fs::remove_file(env.path("src-home/link")).unwrap();
    env.symlink("docs/b.txt", "src-home/link");
    names.push(run(env));
    // Kinds: a file becomes a link, a file becomes a folder; the same
    // bytes at the same size, other content; a chmod alone.
    fs::remove_file(env.path("src-home/kind")).unwrap();
    env.symlink("a.txt", "src-home/kind");
    fs::remove_file(env.path("src-home/dirfile")).unwrap();
    env.write("src-home/dirfile/inside.txt", "inside");
    // Same size, other bytes: a new mtime tells the run (compare: metadata).
    set_mtime(
        &env.write("src-home/docs/deep/c.txt", "GAMMA"),
        1_600_000_100,
    );
    fs::set_permissions(
        env.path("src-home/a.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    names.push(run(env));
    // A touch alone, and a deletion.
    set_mtime(&env.path("src-home/docs/new.txt"), 1_700_000_000);
    fs::remove_file(env.path("src-home/docs/b.txt")).unwrap();
    names.push(run(env));
    names
}

fn restore(env: &Env, at: Option<&str>, into: &str) -> std::path::PathBuf {
    let to = env.path(into);
    let mut args = vec!["restore", "home", "--to", to.to_str().unwrap()];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    let (code, out, err) = env.run(&args);
    assert_eq!(code, 0, "{out}{err}");
    to
}

/// What `diff -r` says differs: (what, path) pairs, `what` being
/// `added`, `removed` or `changed`.
fn diff_r(a: &Path, b: &Path) -> BTreeSet<(String, String)> {
    let out = std::process::Command::new("diff")
        .arg("-rq")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()
        .expect("diff runs");
    assert!(out.status.code().unwrap_or(2) < 2, "diff failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let a = format!("{}/", a.display());
    let b = format!("{}/", b.display());
    let rel = |p: &str, root: &str| p.strip_prefix(root).unwrap_or("").to_string();
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Only in ") {
            let (dir, name) = rest.split_once(": ").unwrap();
            let dir = format!("{dir}/");
            let (what, root) = if dir.starts_with(&a) {
                ("removed", &a)
            } else {
                ("added", &b)
            };
            let parent = rel(&dir, root);
            found.insert((what.into(), format!("{parent}{name}")));
        } else if let Some(rest) = line
            .strip_prefix("Files ")
            .or_else(|| line.strip_prefix("Symbolic links "))
            .or_else(|| line.strip_prefix("File "))
        {
            let path = rest.split([' ']).next().unwrap();
            found.insert(("changed".into(), rel(path, &a)));
        } else {
            panic!("unexpected diff output: {line}");
        }
    }
    found
}

/// What `strata diff` says, as `diff -r` would see it: content and kind
/// changes, and added or removed paths whose parent is not itself added,
/// removed or of another kind.
fn strata_as_diff_r(v: &Value) -> BTreeSet<(String, String)> {
    let paths = v["paths"].as_array().unwrap();
    let covered: BTreeSet<String> = paths
        .iter()
        .filter(|p| {
            p["status"] != "changed" || p["changes"].as_array().unwrap().iter().any(|c| c == "kind")
        })
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    let mut out = BTreeSet::new();
    for p in paths {
        let path = p["path"].as_str().unwrap().to_string();
        let parent = Path::new(&path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if covered.contains(&parent) {
            continue;
        }
        let changes: Vec<&str> = p["changes"]
            .as_array()
            .map(|c| c.iter().map(|x| x.as_str().unwrap()).collect())
            .unwrap_or_default();
        let status = p["status"].as_str().unwrap();
        if status == "changed" && !changes.iter().any(|c| *c == "content" || *c == "kind") {
            continue;
        }
        out.insert((status.to_string(), path));
    }
    out
}

#[test]
fn diff_of_two_increments_is_what_diff_r_of_their_restores_says() {
    let env = setup();
    let names = history(&env);
    let mut points: Vec<Option<String>> = names.iter().cloned().map(Some).collect();
    points.push(None);
    let dirs: Vec<std::path::PathBuf> = points
        .iter()
        .enumerate()
        .map(|(i, p)| restore(&env, p.as_deref(), &format!("r{i}")))
        .collect();
    let mut compared = 0;
    for i in 0..points.len() {
        for j in 0..points.len() {
            if i == j {
                continue;
            }
            let a = points[i].as_deref().unwrap_or("latest");
            let b = points[j].as_deref().unwrap_or("latest");
            let (code, v) = env.run_json(&["diff", "home", a, b]);
            assert_eq!(code, 0, "{v:#}");
            assert_eq!(v["from"], a);
            assert_eq!(v["to"], b);
            let want = diff_r(&dirs[i], &dirs[j]);
            assert_eq!(
                strata_as_diff_r(&v),
                want,
                "strata diff home {a} {b}: {v:#}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 20);
}

#[test]
fn metadata_changes_are_named_and_b_defaults_to_latest() {
    let env = setup();
    let names = history(&env);
    let (_, v12) = env.run_json(&["diff", "home", &names[1], &names[2]]);
    let v = v12.clone();
    let find = |v: &Value, path: &str| -> Value {
        v["paths"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no {path} in {v:#}"))
    };
    let a = find(&v, "a.txt");
    assert_eq!(a["changes"], serde_json::json!(["mode"]));
    assert_eq!(a["before"]["mode"], "0644");
    assert_eq!(a["after"]["mode"], "0600");
    let c = find(&v, "docs/deep/c.txt");
    assert_eq!(c["changes"][0], "content");
    assert_eq!(find(&v, "kind")["changes"][0], "kind");
    let (_, v) = env.run_json(&["diff", "home", &names[2], &names[3]]);
    assert_eq!(
        find(&v, "docs/new.txt")["changes"],
        serde_json::json!(["mtime"])
    );
    // B left out is the latest state; -1 is the increment before the newest.
    let (_, latest) = env.run_json(&["diff", "home", "-1"]);
    assert_eq!(latest["from"], names[2].as_str());
    assert_eq!(latest["to"], "latest");
    assert_eq!(latest["paths"], v["paths"]);
    // The text names what changed, and counts.
    let (code, out, _) = env.run(&["diff", "home", &names[1], &names[2]]);
    assert_eq!(code, 0);
    assert!(out.contains("M a.txt  mode 0644 -> 0600"), "{out}");
    assert!(out.contains("M kind  kind file -> symlink"), "{out}");
    assert!(out.contains("+ dirfile/inside.txt"), "{out}");
    let counts = &v12["counts"];
    assert_eq!(counts["removed"], 0, "dirfile changed kind: {v12:#}");
    assert!(
        out.ends_with(&format!(
            "{} paths added, 0 removed, {} changed\n",
            counts["added"], counts["changed"]
        )) || out.ends_with(&format!(
            "1 path added, 0 removed, {} changed\n",
            counts["changed"]
        )),
        "{out}"
    );
    // Nothing between a point and itself.
    let (code, out, _) = env.run(&["diff", "home", "-0", &names[3]]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().nth(1), Some("no differences"), "{out}");
}

#[test]
fn a_point_that_is_not_there_is_an_error_that_says_why() {
    let env = setup();
    let names = history(&env);
    let (code, _, err) = env.run(&["diff", "home", "-9"]);
    assert_eq!(code, 1);
    assert!(err.contains("past the oldest of the 4 increments"), "{err}");
    let (code, _, err) = env.run(&["diff", "home", "backup_20000101_000000"]);
    assert_eq!(code, 1);
    assert!(err.contains("no increment named"), "{err}");
    let (code, _, err) = env.run(&["diff", "home", "last tuesday"]);
    assert_eq!(code, 2);
    assert!(err.contains("-1 (the one before the newest)"), "{err}");
    assert_eq!(names.len(), 4);
}
