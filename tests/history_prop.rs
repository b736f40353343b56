//! Property: after any sequence of runs over a changing tree, restoring at
//! each increment gives exactly the tracked tree of that moment, restoring
//! the latest state gives the whole selection, and after a prune with any
//! policy every kept increment still restores exactly. `verify --deep`
//! passes before and after.
//!
//! The runs are real `strata run` invocations on a temp tree, on both kinds
//! of destination: a local folder (cases default to 12; set PROPTEST_CASES
//! for more) and an object store, moto on loopback (a separate property
//! with fewer cases, 6 by default, STRATA_OBJECT_PROPTEST_CASES for more: a
//! case there takes some four times as long as on a local folder; without
//! moto it skips, saying why). On the object store the increments are
//! renamed by copying their objects, and the mirror is checked through
//! `restore` and `verify --deep` rather than by walking it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::dest::Dest;
use common::{Env, assert_same_tree, set_mtime, snapshot_full as snapshot};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The paths a tree may hold: `t/` is tracked, `i/` included only. `t/x`
/// and `t/x/y` (and `i/x`, `i/x/z`) cannot both exist: writing one replaces
/// the other, a file replaced by a directory and back.
const POOL: [&str; 12] = [
    "t/a", "t/b", "t/d/c", "t/d/e", "t/x", "t/x/y", "t/l", "i/f", "i/g", "i/h/k", "i/x", "i/x/z",
];
const MODES: [u32; 4] = [0o644, 0o600, 0o755, 0o640];
/// Directories whose own metadata a step may change.
const DIRS: [&str; 5] = ["t", "t/d", "t/x", "i", "i/h"];
const DIR_MODES: [u32; 3] = [0o755, 0o700, 0o2775];

#[derive(Debug, Clone)]
enum Change {
    /// Write a file (or a symlink) with new content and a new mtime.
    Write { path: usize, symlink: bool },
    /// Remove a file, or the directory in its place.
    Delete { path: usize },
    /// Change permission bits only.
    Chmod { path: usize, mode: usize },
    /// Change a directory's permission bits only.
    DirMode { dir: usize, mode: usize },
    /// Set a user xattr on a file or directory (metadata only).
    Xattr { path: usize, value: u8 },
    /// Make `to` another name of the file `from` (a hardlink group).
    Link { from: usize, to: usize },
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (0..POOL.len(), prop::bool::weighted(0.15))
            .prop_map(|(path, symlink)| Change::Write { path, symlink }),
        2 => (0..POOL.len()).prop_map(|path| Change::Delete { path }),
        1 => (0..POOL.len(), 0..MODES.len()).prop_map(|(path, mode)| Change::Chmod { path, mode }),
        1 => (0..DIRS.len(), 0..DIR_MODES.len()).prop_map(|(dir, mode)| Change::DirMode { dir, mode }),
        1 => (0..POOL.len(), 0u8..3).prop_map(|(path, value)| Change::Xattr { path, value }),
        1 => (0..POOL.len(), 0..POOL.len()).prop_map(|(from, to)| Change::Link { from, to }),
    ]
}

/// A retention policy as JSON. Sparse, so that most cases remove
/// something; `keep_daily` 100 keeps the newest of every day, so with
/// [`gaps`] the kept set is a random subset.
fn retention() -> impl Strategy<Value = Value> {
    (
        prop::option::weighted(0.3, 0u32..3),
        prop::option::weighted(0.7, prop::sample::select(vec![1u32, 2, 3, 5, 100, 100])),
        prop::option::weighted(0.3, 1u32..4),
        prop::option::weighted(0.3, 1u32..4),
        prop::option::weighted(0.2, prop::sample::select(vec!["1d", "3d", "2w"])),
    )
        .prop_map(|(last, daily, weekly, monthly, within)| {
            let mut r = serde_json::Map::new();
            for (key, value) in [
                ("keep_last", last),
                ("keep_daily", daily),
                ("keep_weekly", weekly),
                ("keep_monthly", monthly),
            ] {
                if let Some(n) = value {
                    r.insert(key.into(), json!(n));
                }
            }
            if let Some(w) = within {
                r.insert("keep_within".into(), json!(w));
            }
            Value::Object(r)
        })
}

/// Minutes between consecutive increments once their times are spread:
/// one minute (the same day: the daily rule keeps only the later) or one
/// day to a year (a new day, week, month).
fn gaps() -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(
        prop_oneof![
            Just(1i64),
            prop::sample::select(vec![1i64, 3, 10, 40, 400]).prop_map(|days| days * 1440),
        ],
        8,
    )
}

struct Tree<'a> {
    env: &'a Env,
    tick: i64,
}

impl Tree<'_> {
    fn abs(&self, rel: &str) -> std::path::PathBuf {
        self.env.path(&format!("src-p/{rel}"))
    }

    fn remove_any(path: &Path) {
        match path.symlink_metadata() {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
            Ok(_) => fs::remove_file(path).unwrap(),
            Err(_) => {}
        }
    }

    fn apply(&mut self, change: &Change) {
        self.tick += 1;
        match *change {
            Change::Write { path, symlink } => {
                let rel = POOL[path];
                // A file in the way of a directory goes, and the reverse.
                let mut prefix = String::new();
                for part in rel.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
                    prefix.push_str(part);
                    let p = self.abs(&prefix);
                    if p.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                        fs::remove_file(&p).unwrap();
                    }
                    prefix.push('/');
                }
                let p = self.abs(rel);
                Self::remove_any(&p);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                if symlink {
                    std::os::unix::fs::symlink(format!("target-{}", self.tick), &p).unwrap();
                } else {
                    fs::write(&p, format!("{rel} version {}", self.tick)).unwrap();
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
                }
                // A distinct mtime for every write, so every change is seen.
                set_mtime(&p, 1_600_000_000 + self.tick * 7);
            }
            Change::Delete { path } => Self::remove_any(&self.abs(POOL[path])),
            Change::Chmod { path, mode } => {
                let p = self.abs(POOL[path]);
                if p.symlink_metadata().is_ok_and(|m| m.is_file()) {
                    fs::set_permissions(&p, fs::Permissions::from_mode(MODES[mode])).unwrap();
                }
            }
            Change::DirMode { dir, mode } => {
                let p = self.abs(DIRS[dir]);
                if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    fs::set_permissions(&p, fs::Permissions::from_mode(DIR_MODES[mode])).unwrap();
                }
            }
            Change::Xattr { path, value } => {
                let p = self.abs(POOL[path]);
                if p.symlink_metadata()
                    .is_ok_and(|m| m.is_file() || m.is_dir())
                {
                    use std::os::unix::ffi::OsStrExt;
                    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
                    let v = [b'v', b'0' + value];
                    // SAFETY: valid C strings and a value buffer with its length.
                    let rc = unsafe {
                        libc::setxattr(c.as_ptr(), c"user.p".as_ptr(), v.as_ptr().cast(), 2, 0)
                    };
                    let _ = rc; // a filesystem without user xattrs: no change
                }
            }
            Change::Link { from, to } => {
                let (f, t) = (self.abs(POOL[from]), self.abs(POOL[to]));
                let file = f.symlink_metadata().is_ok_and(|m| m.is_file());
                let free = t.symlink_metadata().is_err() && t.parent().is_some_and(|p| p.is_dir());
                if file && free && from != to {
                    fs::hard_link(&f, &t).unwrap();
                }
            }
        }
    }
}

fn tracked(env: &Env) -> BTreeMap<String, String> {
    common::snapshot_full_where(&env.path("src-p"), |p| p == "t" || p.starts_with("t/"))
}

fn restore(env: &Env, to: &str, at: Option<&str>) -> BTreeMap<String, String> {
    let target = env.path(to);
    let mut args = vec!["restore", "p", "--to", target.to_str().unwrap()];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    let (code, out, err) = env.run(&args);
    assert_eq!(code, 0, "restore {at:?}: {out}{err}");
    let tree = snapshot(&target);
    fs::remove_dir_all(&target).unwrap();
    tree
}

fn verify(env: &Env) {
    let (code, out, err) = env.run(&["verify", "p", "--deep"]);
    assert_eq!(code, 0, "verify: {out}{err}");
}

fn check(dest: &Dest, runs: Vec<Vec<Change>>, policy: Value, gaps: Vec<i64>) {
    let env = Env::new();
    fs::create_dir_all(env.path("src-p")).unwrap();
    let rules = r#""track_dirs": ["t"], "include_dirs": ["i"]"#;
    dest.job(&env, "p", rules);
    let mut tree = Tree { env: &env, tick: 0 };
    let mut snapshots: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for changes in &runs {
        for c in changes {
            tree.apply(c);
        }
        // --force: a step may well delete every file.
        let (code, report) = env.run_json(&["run", "--force", "p"]);
        assert_eq!(code, 0, "{report:#}");
        let now = tracked(&env);
        match report["jobs"][0]["increment"].as_str() {
            Some(inc) => snapshots.push((inc.to_string(), now)),
            // No increment: the tracked files did not change.
            None => assert_same_tree(
                snapshots.last().map(|s| &s.1).unwrap_or(&BTreeMap::new()),
                &now,
            ),
        }
    }
    assert_eq!(
        dest.increments(&env, "p"),
        snapshots.iter().map(|s| s.0.clone()).collect::<Vec<_>>()
    );
    let whole = snapshot(&env.path("src-p"));
    if let Dest::Local = dest {
        assert_same_tree(&whole, &snapshot(&env.path("dest-p/mirror")));
    }

    // Every increment restores its moment; no --at restores everything.
    for (inc, want) in &snapshots {
        assert_same_tree(want, &restore(&env, "out", Some(inc)));
    }
    assert_same_tree(&whole, &restore(&env, "out", None));
    verify(&env);

    // All runs happened within a few seconds: spread them over months so
    // that the calendar rules pick interesting subsets.
    // Days start at noon UTC, so a run of one-minute gaps stays in its day.
    let mut t = chrono::DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
        .unwrap()
        .to_utc();
    for (i, (inc, _)) in snapshots.iter_mut().enumerate() {
        t += chrono::Duration::minutes(gaps[i]);
        *inc = dest.rename_increment(&env, "p", inc, t);
    }

    dest.job(&env, "p", &format!(r#"{rules}, "retention": {policy}"#));
    // Calendar buckets are in local time: make it UTC.
    let out = env
        .strata()
        .env("TZ", "UTC")
        .args(["--json", "prune", "p"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pruned: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept: Vec<String> = pruned["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["increment"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dest.increments(&env, "p"), kept, "{pruned:#}");
    if let Some((newest, _)) = snapshots.last() {
        assert_eq!(kept.last(), Some(newest), "the newest is always kept");
    }
    for (inc, want) in snapshots.iter().filter(|(inc, _)| kept.contains(inc)) {
        assert_same_tree(want, &restore(&env, "out", Some(inc)));
    }
    assert_same_tree(&whole, &restore(&env, "out", None));
    verify(&env);
    let pending = fs::read_dir(env.path("dest-p/.strata/pruning")).map_or(0, |d| d.count());
    assert_eq!(pending, 0, "nothing is left half-pruned");
    assert!(!dest.journal(&env, "p"), "nothing is left half-pruned");
    assert_eq!(dest.orphans(&env, "p"), Vec::<String>::new());
    // Pruning again removes nothing.
    let (code, again) = env.run_json(&["prune", "p"]);
    assert_eq!(code, 0);
    assert_eq!(again["remove"], json!([]), "{again:#}");
}

fn config() -> ProptestConfig {
    config_with("PROPTEST_CASES", 12)
}

/// Fewer cases on the object store: a case is some 20 runs, restores and
/// verifies, each a few dozen requests to moto.
fn object_config() -> ProptestConfig {
    config_with("STRATA_OBJECT_PROPTEST_CASES", 6)
}

fn config_with(var: &str, default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        max_shrink_iters: 200,
        // Integration tests have no lib.rs beside them: name the file.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/history_prop.proptest-regressions",
            ),
        )),
        ..ProptestConfig::default()
    }
}

/// The runs of a case: a first one that writes a few paths, then 2 to 7
/// of a few changes each.
fn runs() -> impl Strategy<Value = Vec<Vec<Change>>> {
    let first = prop::collection::vec(
        (0..POOL.len(), prop::bool::weighted(0.15))
            .prop_map(|(path, symlink)| Change::Write { path, symlink }),
        2..8,
    );
    let later = prop::collection::vec(prop::collection::vec(change(), 1..5), 2..8);
    (first, later).prop_map(|(first, later)| std::iter::once(first).chain(later).collect())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_increment_restores_its_moment_before_and_after_prune(
        runs in runs(),
        policy in retention(),
        gaps in gaps(),
    ) {
        check(&Dest::Local, runs, policy, gaps);
    }
}

proptest! {
    #![proptest_config(object_config())]

    /// The same property on an object store (a fresh bucket per case).
    #[test]
    fn every_increment_restores_its_moment_before_and_after_prune_on_an_object_store(
        runs in runs(),
        policy in retention(),
        gaps in gaps(),
    ) {
        let test = "every_increment_restores_its_moment_before_and_after_prune_on_an_object_store";
        let Some(bucket) = common::s3::bucket(test) else {
            return Ok(());
        };
        check(&Dest::Object(bucket), runs, policy, gaps);
    }
}
