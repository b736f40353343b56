//! Snapshots (insta) of every `--json` output a script would read, on one
//! small history: `run`, `list`, `history` (of the job and of a path),
//! `show`, `diff`, `verify`, `prune --dry-run`, `du`, `explain`,
//! `validate`, `restore`. A field renamed, dropped or retyped shows as a
//! snapshot diff. What differs between runs is redacted: the times a run
//! started and finished (the source's own mtimes are fixed and kept), the
//! seconds it took, increment names (numbered by age), the temp directory,
//! the test's own uid and gid, and the byte counts of `du`, which depend on
//! the filesystem. Update with `cargo insta review` (or
//! `INSTA_UPDATE=always cargo test --test json`) after a deliberate change.

mod common;

use std::fs;

use common::{Env, set_mtime};
use serde_json::Value;

const MTIME: i64 = 1_600_000_000;

/// A job `home` with tracked `docs/` and included-only `music/`, run twice:
/// b.txt changes, a.txt goes, c.txt comes, sub/ turns 0700. (The run
/// prunes by the job's retention, so the job has none until `prune`.)
fn history() -> (Env, Vec<String>) {
    let env = Env::new();
    env.write("src-home/docs/a.txt", "alpha");
    env.write("src-home/docs/sub/b.txt", "beta");
    env.write("src-home/music/song.mp3", "la la");
    env.symlink("a.txt", "src-home/docs/link");
    env.simple_job(
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["music"]"#,
    );
    fix_dir_mtimes(&env);
    let (code, _) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    env.write("src-home/docs/sub/b.txt", "beta, second version");
    env.write("src-home/docs/c.txt", "gamma");
    fs::remove_file(env.path("src-home/docs/a.txt")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        env.path("src-home/docs/sub"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    fix_dir_mtimes(&env);
    let (code, _) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    let increments = env.increments("dest-home");
    assert_eq!(increments.len(), 2);
    (env, increments)
}

/// Directories get the same fixed mtime as the files `Env::write` makes,
/// so that the records' mtimes do not depend on when the test ran.
fn fix_dir_mtimes(env: &Env) {
    for d in [
        "src-home",
        "src-home/docs",
        "src-home/docs/sub",
        "src-home/music",
    ] {
        set_mtime(&env.path(d), MTIME);
    }
}

/// Run with `--json`; the exit code and the output, redacted.
fn json(env: &Env, increments: &[String], args: &[&str]) -> (i32, Value) {
    let (code, mut value) = env.run_json(args);
    let tmp = env.root().to_str().unwrap().to_string();
    redact(&mut value, None, &tmp, increments);
    (code, value)
}

fn redact(value: &mut Value, key: Option<&str>, tmp: &str, increments: &[String]) {
    let me = [
        ("uid", u64::from(unsafe { libc::getuid() })),
        ("gid", u64::from(unsafe { libc::getgid() })),
    ];
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                redact(v, Some(k), tmp, increments);
            }
        }
        Value::Array(items) => {
            for v in items {
                redact(v, key, tmp, increments);
            }
        }
        Value::String(s) => {
            if matches!(key, Some("start" | "finish" | "time")) {
                *s = "[time]".into();
                return;
            }
            // Longest first: two runs in one second are `backup_…` and
            // `backup_…_1`.
            let mut names: Vec<(usize, &String)> = increments.iter().enumerate().collect();
            names.sort_by_key(|(_, name)| std::cmp::Reverse(name.len()));
            for (k, name) in names {
                *s = s.replace(name.as_str(), &format!("[increment {}]", k + 1));
            }
            *s = s.replace(tmp, "[tmp]");
        }
        Value::Number(n) => {
            if key == Some("seconds") {
                *value = "[seconds]".into();
            } else if matches!(key, Some("bytes" | "disk" | "shared_with_mirror"))
                && n.as_u64().is_some_and(|n| n > 4096)
            {
                // du's sizes: directories' own sizes and blocks vary by
                // filesystem. The files' bytes of a run (a few) are kept.
                *value = "[fs bytes]".into();
            } else if let Some((k, _)) = me
                .iter()
                .find(|(k, id)| key == Some(*k) && n.as_u64() == Some(*id))
            {
                *value = format!("[my {k}]").into();
            }
        }
        _ => {}
    }
}

#[test]
fn run_report() {
    let env = Env::new();
    env.write("src-home/docs/a.txt", "alpha");
    env.write("src-home/music/song.mp3", "la la");
    env.simple_job(
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["music"]"#,
    );
    let (code, value) = env.run_json(&["run-all"]);
    assert_eq!(code, 0);
    let increments = env.increments("dest-home");
    let mut value = value;
    redact(&mut value, None, env.root().to_str().unwrap(), &increments);
    insta::assert_json_snapshot!(value);
}

#[test]
fn list() {
    let (env, increments) = history();
    let (code, value) = json(&env, &increments, &["list"]);
    assert_eq!(code, 0);
    insta::assert_json_snapshot!(value);
}

#[test]
fn history_of_the_job_and_of_a_path() {
    let (env, increments) = history();
    let (code, job) = json(&env, &increments, &["history", "home"]);
    assert_eq!(code, 0);
    insta::assert_json_snapshot!("history_job", job);
    let (code, path) = json(&env, &increments, &["history", "home", "docs/sub/b.txt"]);
    assert_eq!(code, 0);
    insta::assert_json_snapshot!("history_path", path);
}

#[test]
fn show_and_diff() {
    let (env, increments) = history();
    let (code, show) = json(&env, &increments, &["show", "home", &increments[1]]);
    assert_eq!(code, 0);
    insta::assert_json_snapshot!("show", show);
    let (code, diff) = json(
        &env,
        &increments,
        &["diff", "home", &increments[0], &increments[1]],
    );
    assert_eq!(code, 0);
    insta::assert_json_snapshot!("diff", diff);
}

#[test]
fn verify_prune_du() {
    let (env, increments) = history();
    let (code, verify) = json(&env, &increments, &["verify", "home", "--deep"]);
    assert_eq!(code, 0);
    insta::assert_json_snapshot!("verify", verify);
    env.simple_job(
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["music"], "retention": {"keep_last": 1}"#,
    );
    let (code, prune) = json(&env, &increments, &["prune", "home", "--dry-run"]);
    assert_eq!(code, 0);
    insta::assert_json_snapshot!("prune", prune);
    let (code, du) = json(&env, &increments, &["du", "home"]);
    assert_eq!(code, 0);
    insta::assert_json_snapshot!("du", du);
}

#[test]
fn restore_and_explain() {
    let (env, increments) = history();
    let to = env.path("restored");
    let (code, restore) = json(
        &env,
        &increments,
        &[
            "restore",
            "home",
            "--at",
            &increments[0],
            "--to",
            to.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    insta::assert_json_snapshot!("restore", restore);
    let (code, explain) = json(
        &env,
        &increments,
        &[
            "explain",
            "home",
            "docs/c.txt",
            "music/song.mp3",
            "elsewhere",
        ],
    );
    assert_eq!(code, 0);
    insta::assert_json_snapshot!("explain", explain);
}

#[test]
fn validate_errors() {
    let env = Env::new();
    env.job("types", r#"{"source": 3, "destination": "/backup/x"}"#);
    env.job(
        "typo",
        r#"{"source": "/home", "destination": "/backup/home", "retention": {"keep_lats": 2}}"#,
    );
    env.job(
        "rules",
        r#"{"source": "/home", "destination": "/home/backup",
  "track_dirs": ["a/../b"], "schedule": "61 * * * *"}"#,
    );
    let (code, value) = json(&env, &[], &["validate"]);
    assert_ne!(code, 0);
    insta::assert_json_snapshot!(value);
}
