//! The crash harness: a run is aborted at every fault point it reaches (the
//! points listed by a traced run, `STRATA_FAULT_TRACE`, then each one hit
//! with `STRATA_FAULT=abort:SITE@PATH#N`, an abort as abrupt as SIGKILL),
//! and at random moments with a real SIGKILL; the next run must repair
//! everything without a manual step. After recovery and one more run: the
//! mirror equals the selection, the earlier increments are untouched, the
//! interrupted run's changes are recorded in exactly one increment (the
//! same as an uninterrupted run records), and no temp or in-progress file
//! remains. The changes interrupted include directories that become
//! symlinks (to a folder outside the source) and files, a file that
//! becomes a directory, and a directory's mode alone.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Env, assert_same_tree, set_mtime, snapshot};
use serde_json::Value;

const FILES_PER_DIR: usize = 18;

/// A deterministic source: tracked files under t/, included-only under i/.
fn build_source(env: &Env) {
    for top in ["t", "i"] {
        for d in 0..6 {
            for f in 0..FILES_PER_DIR {
                let rel = format!("src-c/{top}/d{d}/sub{}/f{f}.txt", f % 3);
                env.write(&rel, &format!("{top} {d} {f} original"));
            }
        }
    }
    env.symlink("d0/sub0/f0.txt", "src-c/t/link");
    env.write("src-c/t/becomes-dir", "a file first");
    env.write("src-c/t/to-symlink/z", "z in a directory");
    env.write("src-c/t/to-file/z", "z in a directory");
    env.write("src-c/unselected.txt", "not selected");
    env.write("outside/keep", "not to be touched");
}

/// Change, add and delete a share of both trees; replace a file by a
/// directory; remove a whole directory.
fn mutate_source(env: &Env) {
    let mut n = 0;
    for top in ["t", "i"] {
        for d in 0..6 {
            for f in 0..FILES_PER_DIR {
                let rel = format!("src-c/{top}/d{d}/sub{}/f{f}.txt", f % 3);
                match (d + f) % 6 {
                    0 => {
                        env.write(&rel, &format!("{top} {d} {f} changed, longer"));
                        set_mtime(&env.path(&rel), 1_600_000_900);
                    }
                    1 => fs::remove_file(env.path(&rel)).unwrap(),
                    2 => {
                        n += 1;
                        env.write(&format!("src-c/{top}/d{d}/new{n}.txt"), "added");
                    }
                    _ => {}
                }
            }
        }
    }
    fs::remove_file(env.path("src-c/t/becomes-dir")).unwrap();
    env.write("src-c/t/becomes-dir/inside", "now a directory");
    fs::remove_dir_all(env.path("src-c/t/d5/sub2")).unwrap();
    // A directory becomes a symlink to a folder outside the source, and
    // another a file: what the interrupted run was moving into deleted/
    // must never be moved back through the symlink.
    fs::remove_dir_all(env.path("src-c/t/to-symlink")).unwrap();
    env.symlink(env.path("outside").to_str().unwrap(), "src-c/t/to-symlink");
    fs::remove_dir_all(env.path("src-c/t/to-file")).unwrap();
    env.write("src-c/t/to-file", "now a file");
    // A directory's mode alone, an xattr alone, a new hardlink.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(env.path("src-c/t/d1"), fs::Permissions::from_mode(0o750)).unwrap();
    let tagged = env.path("src-c/t/d3/sub0/f3.txt");
    if tagged.exists() {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(tagged.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C strings and a value buffer with its length.
        unsafe { libc::setxattr(c.as_ptr(), c"user.tag".as_ptr(), b"x".as_ptr().cast(), 1, 0) };
    }
    let linked = env.path("src-c/t/d4/sub1/f4.txt");
    if linked.exists() {
        fs::hard_link(&linked, env.path("src-c/t/d4/also-f4.txt")).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    if to.exists() {
        fs::remove_dir_all(to).unwrap();
    }
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn run(env: &Env, fault: Option<&str>) -> Option<i32> {
    let mut cmd = env.strata();
    cmd.args(["--json", "run", "c"]);
    if let Some(rule) = fault {
        cmd.env("STRATA_FAULT", rule);
    }
    cmd.output().unwrap().status.code()
}

/// The fault points a run from the state in `dest` passes, in order, as
/// `abort:` rules (each (site, path) pair counted, so that a point passed
/// twice is told apart).
fn fault_points(env: &Env) -> Vec<String> {
    let trace = env.path("trace");
    let _ = fs::remove_file(&trace);
    let out = env
        .strata()
        .args(["--json", "run", "c"])
        .env("STRATA_FAULT_TRACE", &trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = fs::read_to_string(&trace).unwrap();
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    text.lines()
        .map(|l| {
            let n = seen.entry(l).or_default();
            *n += 1;
            format!("abort:{l}#{n}")
        })
        .collect()
}

fn report(env: &Env) -> Value {
    let (code, value) = env.run_json(&["run", "c"]);
    assert_eq!(code, 0, "{value:#}");
    value
}

/// The increments of a destination: name -> snapshot of the folder.
fn increments(dest: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dest).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("backup_") {
            let mut snap = snapshot(&dest.join(&name));
            // The metadata's times and the run's stats vary; its files are
            // compared separately.
            snap.retain(|k, _| !k.ends_with(".json"));
            out.insert(name, snap);
        }
    }
    out
}

fn recorded_files(dest: &Path, name: &str) -> Vec<(String, String, u64)> {
    let meta: Value =
        serde_json::from_slice(&fs::read(dest.join(name).join(format!("{name}.json"))).unwrap())
            .unwrap();
    meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["op"].as_str().unwrap().to_string(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn assert_clean_state(dest: &Path) {
    let tmp = dest.join(".strata/tmp");
    assert!(
        !tmp.exists() || fs::read_dir(&tmp).unwrap().count() == 0,
        "temp files left"
    );
    assert!(
        !dest.join(".strata/tmp").exists()
            || fs::read_dir(dest.join(".strata/tmp")).unwrap().count() == 0,
        "temp files left"
    );
    let inprogress = dest.join(".strata/inprogress");
    assert!(
        !inprogress.exists() || fs::read_dir(&inprogress).unwrap().count() == 0,
        "in-progress increment left"
    );
    assert!(!dest.join(".strata/dirty").exists(), "dirty marker left");
}

struct Expected {
    mirror: BTreeMap<String, String>,
    /// Increments before the interrupted run.
    before: BTreeMap<String, BTreeMap<String, String>>,
    /// The new increment's content (without metadata) and records.
    increment: BTreeMap<String, String>,
    records: Vec<(String, String, u64)>,
}

/// Run the crash loop from the destination state in `base`, comparing every
/// recovered outcome with an uninterrupted run. `stride` > 1 samples the
/// fault points. Returns how many fault points were tried.
fn crash_loop(env: &Env, base: &Path, stride: usize) -> usize {
    let dest = env.path("dest-c");
    // What strata remembers of the destination goes with it.
    let state_base = env.path("state-base");
    if env.state_dir().exists() {
        copy_tree(&env.state_dir(), &state_base);
    } else {
        fs::create_dir_all(&state_base).unwrap();
    }
    let restore_state = || copy_tree(&state_base, &env.state_dir());
    // The reference: an uninterrupted run from the same state, which also
    // lists the fault points.
    copy_tree(base, &dest);
    restore_state();
    let before = increments(&dest);
    let points = fault_points(env);
    let after = increments(&dest);
    let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(new.len(), 1, "the reference run writes one increment");
    let expected = Expected {
        mirror: snapshot(&dest.join("mirror")),
        increment: after[new[0]].clone(),
        records: recorded_files(&dest, new[0]),
        before,
    };
    assert!(expected.records.len() > 30, "a meaningful change set");
    let outside = snapshot(&env.path("outside"));

    let mut tried = 0;
    for rule in points.iter().step_by(stride) {
        copy_tree(base, &dest);
        restore_state();
        match run(env, Some(rule)) {
            None => {}
            Some(code) => panic!("{rule}: exit code {code}, expected an abort"),
        }
        tried += 1;
        let value = report(env);
        let context = format!("after a crash at {rule}");
        assert_eq!(
            value["jobs"][0]["status"], "success",
            "{context}: {:?} {:?}",
            value["jobs"][0]["message"], value["jobs"][0]["errors"]
        );
        assert_same_tree(&expected.mirror, &snapshot(&dest.join("mirror")));
        assert_same_tree(&outside, &snapshot(&env.path("outside")));
        let now = increments(&dest);
        for (name, snap) in &expected.before {
            assert_eq!(now.get(name), Some(snap), "{context}: {name} was changed");
        }
        let new: Vec<&String> = now
            .keys()
            .filter(|k| !expected.before.contains_key(*k))
            .collect();
        assert_eq!(new.len(), 1, "{context}: increments {:?}", now.keys());
        assert_same_tree(&expected.increment, &now[new[0]]);
        assert_eq!(recorded_files(&dest, new[0]), expected.records, "{context}");
        assert_clean_state(&dest);
        // Index and mirror agree: one more run has nothing to do.
        let plan = env.run(&["run", "c", "--dry-run"]).1;
        let value = report(env);
        let stats = &value["jobs"][0]["stats"];
        assert_eq!(
            (
                stats["new"].as_u64(),
                stats["changed"].as_u64(),
                stats["removed"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{context}: {plan}"
        );
        assert!(
            value["jobs"][0]["increment"].is_null(),
            "{context}: {value:#}"
        );
    }
    tried
}

#[test]
fn every_fault_point_of_an_incremental_run_is_repaired() {
    let env = Env::new();
    build_source(&env);
    env.simple_job("c", r#""track_dirs": ["t"], "include_dirs": ["i"]"#);
    report(&env);
    let base = env.path("base");
    copy_tree(&env.path("dest-c"), &base);
    mutate_source(&env);
    let tried = crash_loop(&env, &base, 1);
    assert!(tried >= 200, "only {tried} fault points");
    let verify = env.run(&["verify", "c", "--deep"]);
    assert_eq!(verify.0, 0, "{verify:?}");
}

#[test]
fn fault_points_of_a_first_run_are_repaired() {
    let env = Env::new();
    build_source(&env);
    env.simple_job("c", r#""track_dirs": ["t"], "include_dirs": ["i"]"#);
    let base = env.path("base");
    fs::create_dir(&base).unwrap();
    let tried = crash_loop(&env, &base, 7);
    assert!(tried >= 30, "only {tried} fault points");
}

#[test]
fn random_sigkills_are_repaired() {
    let env = Env::new();
    build_source(&env);
    // Bigger files, so that a run lasts long enough to be killed in.
    for d in 0..6 {
        env.write(&format!("src-c/t/big/f{d}"), &"y".repeat(2 << 20));
    }
    env.simple_job("c", r#""track_dirs": ["t"], "include_dirs": ["i"]"#);
    report(&env);
    let base = env.path("base");
    copy_tree(&env.path("dest-c"), &base);
    mutate_source(&env);
    for d in 0..6 {
        env.write(&format!("src-c/t/big/f{d}"), &"z".repeat(2 << 20));
    }
    let dest = env.path("dest-c");
    copy_tree(&base, &dest);
    let started = std::time::Instant::now();
    report(&env);
    let mut took = started.elapsed().as_micros() as u64;
    let want_mirror = snapshot(&dest.join("mirror"));
    let base_count = fs::read_dir(&base)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("backup_")
        })
        .count();
    let mut seed: u64 = 0x5eed;
    let mut mid_run = 0;
    for round in 0..12 {
        copy_tree(&base, &dest);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Somewhere within what an uninterrupted run takes.
        let delay = std::time::Duration::from_micros((seed >> 33) % took.max(1));
        let mut child = env
            .std_command()
            .args(["run", "c"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL, by PID
        let status = child.wait().unwrap();
        // Did the kill land while the run was changing the destination?
        let interrupted = status.code().is_none() && dest.join(".strata/dirty").exists();
        mid_run += usize::from(interrupted);
        // The run finished before the kill: the one timed run was slower
        // than runs are now (a busy machine), so aim earlier.
        if status.success() {
            took = took * 3 / 4;
        }
        let value = report(&env);
        assert_eq!(value["jobs"][0]["status"], "success", "round {round}");
        assert_same_tree(&want_mirror, &snapshot(&dest.join("mirror")));
        assert_clean_state(&dest);
        let increments = env.increments("dest-c");
        assert_eq!(
            increments.len(),
            base_count + 1,
            "round {round}: {increments:?}"
        );
    }
    assert!(
        mid_run >= 3,
        "only {mid_run} of 12 kills landed while a run was changing the destination"
    );
}
