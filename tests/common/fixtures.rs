//! The `home` job the history, restore, prune and verify tests share:
//! tracked `docs/`, included-only `music/`.

use std::collections::BTreeMap;
use std::fs;

use serde_json::Value;

use super::{Env, snapshot};

pub const RULES: &str = r#""track_dirs": ["docs"], "include_dirs": ["music"]"#;

/// A job `home`: tracked docs, included-only music.
pub fn setup() -> Env {
    let env = Env::new();
    env.write("src-home/docs/a.txt", "alpha");
    env.write("src-home/docs/sub/b.txt", "beta");
    env.write("src-home/music/song.mp3", "la la");
    env.symlink("a.txt", "src-home/docs/link");
    env.simple_job("home", RULES);
    env
}

/// Run the job; the increment it wrote.
pub fn run(env: &Env) -> Option<String> {
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");
    report["jobs"][0]["increment"].as_str().map(String::from)
}

/// The tracked part of the source now.
pub fn tracked(env: &Env) -> BTreeMap<String, String> {
    snapshot(&env.path("src-home"))
        .into_iter()
        .filter(|(path, _)| path.starts_with("docs/"))
        .collect()
}

/// Restore into a fresh directory `name`; its snapshot.
pub fn restore(env: &Env, name: &str, args: &[&str]) -> BTreeMap<String, String> {
    let to = env.path(name);
    let mut all = vec!["restore", "home", "--to", to.to_str().unwrap()];
    all.extend_from_slice(args);
    let (code, out, err) = env.run(&all);
    assert_eq!(code, 0, "{out}{err}");
    snapshot(&to)
}

pub fn with_retention(env: &Env, retention: &str) {
    env.simple_job("home", &format!(r#"{RULES}, "retention": {retention}"#));
}

/// Three runs: a.txt and b.txt appear; b.txt changes and a.txt stays; c.txt
/// appears and b.txt goes. Returns the increments and the tracked snapshot
/// after each.
pub fn three_runs(env: &Env) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    out.push((run(env).unwrap(), tracked(env)));
    env.write("src-home/docs/sub/b.txt", "beta, second version");
    out.push((run(env).unwrap(), tracked(env)));
    env.write("src-home/docs/c.txt", "gamma");
    fs::remove_file(env.path("src-home/docs/sub/b.txt")).unwrap();
    out.push((run(env).unwrap(), tracked(env)));
    out
}

pub fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["increment"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------- restore
