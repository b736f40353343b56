//! `strata show NAME INCREMENT`: one increment's records.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::Env;

#[test]
fn show_lists_each_record_with_op_kind_size_and_mode() {
    let env = Env::new();
    env.write("src-home/docs/a.txt", "alpha");
    env.write("src-home/docs/b.txt", "beta");
    env.simple_job("home", r#""track_dirs": ["docs"]"#);
    let (code, _) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    fs::set_permissions(
        env.path("src-home/docs/a.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::remove_file(env.path("src-home/docs/b.txt")).unwrap();
    let (code, v) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    let second = v["jobs"][0]["increment"].as_str().unwrap().to_string();
    let (code, v) = env.run_json(&["show", "home", &second]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["increment"], second.as_str());
    let files: Vec<(String, String, String, u64)> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().into(),
                f["op"].as_str().unwrap().into(),
                f["kind"].as_str().unwrap().into(),
                f["mode"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        files.contains(&("docs/a.txt".into(), "changed".into(), "file".into(), 0o600)),
        "{files:?}"
    );
    assert!(
        files.contains(&("docs/b.txt".into(), "deleted".into(), "file".into(), 0o644)),
        "{files:?}"
    );
    // The text: a header, then op, kind, size, mode, path; -0 is the newest.
    let (code, out, _) = env.run(&["show", "home", "-0"]);
    assert_eq!(code, 0);
    assert!(out.starts_with(&second), "{out}");
    assert!(out.contains("1 changed, 1 deleted"), "{out}");
    let line = out.lines().find(|l| l.ends_with("docs/a.txt")).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words,
        ["changed", "file", "5", "B", "0600", "docs/a.txt"],
        "{out}"
    );
    // `latest` is no increment.
    let (code, _, err) = env.run(&["show", "home", "latest"]);
    assert_eq!(code, 2);
    assert!(err.contains("not an increment"), "{err}");
}
