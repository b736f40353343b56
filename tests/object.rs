//! The same assertions on both kinds of destination: a local folder and an
//! object store (`s3://`, a real S3 server on loopback: moto, see
//! `common/s3.rs`). [`both`] runs a test body once per kind; where the
//! server cannot be had, the object-store half skips, saying why.
//!
//! Run on both: a first run, changes and a no-change run, then `history`,
//! `restore` of the latest state, of each past increment and of a path
//! (fidelity: modes, mtimes, symlinks, directories, xattrs, hardlinks),
//! `verify`; the rsync fidelity oracle; the crash sweep (a run aborted at
//! every fault point it reaches, the next one repairing); bad inputs;
//! `prune` (every kept point restores as before, the same plan on both,
//! nothing orphaned) and its crash sweep (a prune aborted at each of its
//! fault points, finished by the next prune or run); `diff`, `show`, `du`
//! and `cat`.
//! Object store only: O(1) requests on a no-change run, bytes uploaded on
//! a small change and on a 1% change of a few thousand files (the changed
//! bytes and a little per changed entry, not the index again), the index
//! as a manifest of a base and deltas (a cache behind the store fetching
//! only the deltas it lacks, compaction, a reader that read the manifest
//! just before a compaction committed, an index in one object as older
//! strata wrote it read and upgraded, verify naming a damaged segment, a
//! compacting run killed at each point), the lease, an unreachable store,
//! a vanished index.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::dest::{Dest, both, segments};
use common::s3::{self, Bucket};
use common::{Env, assert_same_tree, set_mtime, snapshot_full};
use serde_json::Value;

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a value buffer with its length.
    unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

/// A source with what fidelity asks for: files of several modes, a
/// symlink, nested and empty folders with their own modes and mtimes, an
/// xattr, a hardlink pair.
fn build_source(env: &Env, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let s = |rel: &str| format!("src-{name}/{rel}");
    env.write(&s("docs/a.txt"), "alpha");
    env.write(&s("docs/deep/b.txt"), "bravo, a little longer");
    env.write(&s("run.sh"), "#!/bin/sh\necho hi\n");
    fs::set_permissions(env.path(&s("run.sh")), fs::Permissions::from_mode(0o750)).unwrap();
    env.write(&s("keep/big.bin"), &"x".repeat(70_000));
    env.symlink("docs/a.txt", &s("link"));
    fs::create_dir_all(env.path(&s("empty"))).unwrap();
    fs::set_permissions(env.path(&s("empty")), fs::Permissions::from_mode(0o700)).unwrap();
    fs::hard_link(env.path(&s("docs/a.txt")), env.path(&s("docs/a-again.txt"))).unwrap();
    set_xattr(&env.path(&s("docs/deep/b.txt")), "user.tag", b"blue");
    set_xattr(&env.path(&s("docs")), "user.folder", b"yes");
    for d in ["docs/deep", "docs", "empty", "keep", ""] {
        set_mtime(&env.path(&s(d)), 1_600_000_500);
    }
    set_mtime(&env.path(&s("link")), 1_600_000_100);
}

fn mutate_source(env: &Env, name: &str) {
    let s = |rel: &str| format!("src-{name}/{rel}");
    env.write(&s("docs/a.txt"), "alpha, changed"); // breaks nothing: a new inode
    fs::remove_file(env.path(&s("docs/a-again.txt"))).unwrap();
    fs::remove_file(env.path(&s("run.sh"))).unwrap();
    env.write(&s("new/c.txt"), "charlie");
    fs::remove_file(env.path(&s("link"))).unwrap();
    env.symlink("new/c.txt", &s("link"));
    set_mtime(&env.path(&s("link")), 1_600_000_200);
    set_xattr(&env.path(&s("keep/big.bin")), "user.tag", b"green");
    for d in ["docs", "new", ""] {
        set_mtime(&env.path(&s(d)), 1_600_000_700);
    }
}

fn job(env: &Env, dest: &Dest, name: &str, extra: &str) {
    env.job(
        name,
        &format!(
            r#"{{"source": "../src-{name}", {}, "track_dirs": ["."]{extra}}}"#,
            dest.fragment(name)
        ),
    );
}

fn run_ok(env: &Env, name: &str) -> Value {
    let (code, v) = env.run_json(&["run", name]);
    assert_eq!(code, 0, "run {name}: {v:#}");
    let row = v["jobs"][0].clone();
    assert!(
        row["status"] == "success",
        "run {name} did not succeed: {row:#}"
    );
    row
}

fn restore(env: &Env, name: &str, to: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["restore", name, "--to", to];
    args.extend_from_slice(extra);
    let (code, out, err) = env.run(&args);
    (code, format!("{out}{err}"))
}

#[test]
fn runs_history_and_restores_agree_on_both_kinds() {
    both("runs_history_and_restores_agree_on_both_kinds", |dest| {
        let env = Env::new();
        let name = "h";
        build_source(&env, name);
        job(&env, dest, name, "");
        let first = run_ok(&env, name);
        assert_eq!(first["stats"]["new"], 6, "{}: {first:#}", dest.label());
        common::copy_tree(&env.path("src-h"), &env.path("at-first"));
        mutate_source(&env, name);
        let second = run_ok(&env, name);
        assert_eq!(
            second["stats"]["changed"],
            3,
            "{}: {second:#}",
            dest.label()
        );
        let quiet = run_ok(&env, name);
        assert_eq!(
            (
                quiet["stats"]["new"].clone(),
                quiet["stats"]["changed"].clone()
            ),
            (Value::from(0), Value::from(0)),
            "{}: a no-change run changes nothing: {quiet:#}",
            dest.label()
        );
        let incs = dest.increments(&env, name);
        assert_eq!(incs.len(), 2, "{}: {incs:?}", dest.label());
        assert!(
            dest.leftovers(&env, name).is_empty(),
            "{:?}",
            dest.leftovers(&env, name)
        );

        // history lists both, and the versions of a path.
        let (code, v) = env.run_json(&["history", name]);
        assert_eq!(code, 0);
        let listed: Vec<&str> = v["increments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["increment"].as_str().unwrap())
            .collect();
        assert_eq!(listed, incs);
        let (code, v) = env.run_json(&["history", name, "docs/a.txt"]);
        assert_eq!(code, 0, "{v:#}");
        assert_eq!(
            v["paths"][0]["versions"].as_array().unwrap().len(),
            2,
            "{v:#}"
        );

        // The latest state, every past one, and a path.
        let (code, out) = restore(&env, name, "r-latest", &[]);
        assert_eq!(code, 0, "{}: {out}", dest.label());
        assert_same_tree(
            &snapshot_full(&env.path("src-h")),
            &snapshot_full(&env.path("r-latest")),
        );
        let (code, out) = restore(&env, name, "r-first", &["--at", &incs[0]]);
        assert_eq!(code, 0, "{}: {out}", dest.label());
        assert_same_tree(
            &snapshot_full(&env.path("at-first")),
            &snapshot_full(&env.path("r-first")),
        );
        let (code, out) = restore(&env, name, "r-path", &["--at", &incs[0], "docs/deep"]);
        assert_eq!(code, 0, "{}: {out}", dest.label());
        let want: BTreeMap<String, String> = snapshot_full(&env.path("at-first"))
            .into_iter()
            .filter(|(k, _)| k.starts_with("docs/deep"))
            .collect();
        let got: BTreeMap<String, String> = snapshot_full(&env.path("r-path"))
            .into_iter()
            .filter(|(k, _)| k != "docs")
            .collect();
        assert_same_tree(&want, &got);
        for args in [vec!["verify", name], vec!["verify", "--deep", name]] {
            let (code, out, err) = env.run(&args);
            assert_eq!(code, 0, "{}: {args:?}: {out}{err}", dest.label());
        }
        let (code, out) = restore(&env, name, "r-none", &["no/such"]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("no such file or directory"), "{out}");
    });
}

#[test]
fn restores_pass_the_rsync_fidelity_oracle_on_both_kinds() {
    if !common::have_tool("rsync") {
        return;
    }
    both(
        "restores_pass_the_rsync_fidelity_oracle_on_both_kinds",
        |dest| {
            let env = Env::new();
            let name = "f";
            build_source(&env, name);
            job(&env, dest, name, "");
            run_ok(&env, name);
            let (code, out) = restore(&env, name, "restored", &[]);
            assert_eq!(code, 0, "{out}");
            let o = std::process::Command::new("rsync")
                .args(["-naHAXSc", "--itemize-changes", "--delete"])
                .arg(format!("{}/", env.path("src-f").display()))
                .arg(format!("{}/", env.path("restored").display()))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success() && text.trim().is_empty(),
                "{}: rsync sees differences:\n{text}",
                dest.label()
            );
        },
    );
}

#[test]
fn bad_destinations_fail_validation_with_the_reason() {
    let env = Env::new();
    fs::create_dir_all(env.path("src-v")).unwrap();
    env.job(
        "v",
        r#"{"source": "../src-v", "destination": "s3://Not_A_Bucket/x", "track_dirs": ["."]}"#,
    );
    env.job(
        "w",
        r#"{"source": "../src-v", "destination": "gs://b/x", "track_dirs": ["."]}"#,
    );
    env.job(
        "x",
        r#"{"source": "../src-v", "destination": "s3://bkt/p", "s3": {"secret_access_key": "oops"}, "track_dirs": ["."]}"#,
    );
    let (code, out, err) = env.run(&["validate"]);
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("v.json") && all.contains("lowercase letters"),
        "{all}"
    );
    assert!(
        all.contains("w.json") && all.contains("gs:// is not supported"),
        "{all}"
    );
    assert!(
        all.contains("x.json") && all.contains("secret_access_key"),
        "{all}"
    );
    // A good one validates offline (no server is asked).
    let ok = Env::new();
    fs::create_dir_all(ok.path("src-o")).unwrap();
    ok.job(
        "o",
        r#"{"source": "../src-o", "destination": "s3://my-bucket/home", "s3": {"endpoint": "http://127.0.0.1:9", "access_key_id_env": "K", "secret_access_key_env": "S"}, "track_dirs": ["."]}"#,
    );
    let (code, out, err) = ok.run(&["validate"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_store_that_cannot_be_reached_fails_the_run_clearly() {
    let env = Env::new();
    env.write("src-u/a.txt", "a");
    // Nothing listens on this port (it was just free).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.job(
        "u",
        &format!(
            r#"{{"source": "../src-u", "destination": "s3://bkt/u", "s3": {{"endpoint": "http://127.0.0.1:{port}"}}, "track_dirs": ["."]}}"#
        ),
    );
    let (code, v) = env.run_json(&["run", "u"]);
    assert_eq!(code, 1, "{v:#}");
    let row = &v["jobs"][0];
    assert_eq!(row["status"], "failed", "{row:#}");
    let message = row["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("127.0.0.1:{port}")) && message.contains("s3://bkt/u"),
        "the endpoint and destination are named: {message}"
    );
    // Without credentials: failed, saying so, and no request made.
    let (code, out, err) = {
        let out = env
            .strata()
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("HOME", env.path("nohome"))
            .env("AWS_SHARED_CREDENTIALS_FILE", env.path("nohome/creds"))
            .args(["run", "u"])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, 1);
    assert!(
        format!("{out}{err}").contains("no credentials"),
        "{out}{err}"
    );
}

/// `requests=N uploaded=M` from a run's `strata::timing` log.
fn counters(stderr: &str) -> (u64, u64) {
    // "object store: N requests, M bytes uploaded"
    let line = stderr
        .lines()
        .rfind(|l| l.contains("object store: "))
        .unwrap_or_else(|| panic!("no object-store counts in the log:\n{stderr}"));
    let numbers: Vec<u64> = line
        .split("object store: ")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

fn logged_run(env: &Env, name: &str) -> (u64, u64) {
    let out = env
        .strata()
        .env("RUST_LOG", "strata::timing=debug")
        .env("NO_COLOR", "1")
        .args(["run", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    counters(&String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_no_change_run_costs_a_few_requests_and_a_change_uploads_its_bytes() {
    let Some(bucket) = s3::bucket("a_no_change_run_costs_a_few_requests") else {
        return;
    };
    let dest = Dest::Object(bucket);
    let mut quiet = Vec::new();
    for files in [20usize, 400] {
        let env = Env::new();
        let name = format!("n{files}");
        for i in 0..files {
            env.write(
                &format!("src-{name}/d{}/f{i}.txt", i % 7),
                &format!("file {i} body"),
            );
        }
        job(&env, &dest, &name, "");
        let (_, first_up) = logged_run(&env, &name);
        assert!(first_up > 0);
        let (requests, uploaded) = logged_run(&env, &name);
        assert!(
            uploaded < 1024,
            "a no-change run uploads nothing but its lease: {uploaded} bytes"
        );
        quiet.push(requests);
        // One file of 4 KiB changes: its bytes go up, and what the commit
        // writes (plan, metadata, index), nothing of the other files.
        env.write(&format!("src-{name}/d0/f0.txt"), &"z".repeat(4096));
        let (_, uploaded) = logged_run(&env, &name);
        assert!(uploaded >= 4096, "{uploaded}");
        let index_size = bucket_index_size(&dest, &name);
        assert!(
            uploaded <= 4096 + index_size + 8192,
            "uploaded {uploaded} bytes for a 4096-byte change (index {index_size})"
        );
    }
    assert_eq!(
        quiet[0], quiet[1],
        "no-change requests do not grow with the tree: {quiet:?}"
    );
    assert!(
        quiet[0] <= 6,
        "a no-change run makes a handful of requests: {quiet:?}"
    );
}

/// A tree of a few thousand small files, 1% of them changed: the run
/// uploads the changed bytes and a small overhead per changed entry (its
/// index delta record, its metadata record, its plan step), not the whole
/// index again.
#[test]
fn a_one_percent_change_uploads_its_bytes_not_the_index() {
    let Some(bucket) = s3::bucket("a_one_percent_change_uploads") else {
        return;
    };
    let dest = Dest::Object(bucket.clone());
    let env = Env::new();
    let name = "p";
    let files = 3000usize;
    for i in 0..files {
        env.write(
            &format!("src-{name}/d{:02}/file-{i:05}.txt", i % 30),
            &format!("file {i} body"),
        );
    }
    job(&env, &dest, name, "");
    let (_, first_up) = logged_run(&env, name);
    let (quiet, quiet_up) = logged_run(&env, name);
    assert!(
        quiet <= 6,
        "a no-change run makes a handful of requests: {quiet}"
    );
    assert!(quiet_up < 1024, "{quiet_up}");
    let changed = files / 100;
    let body = "y".repeat(200);
    for i in (0..files).step_by(files / changed) {
        env.write(&format!("src-{name}/d{:02}/file-{i:05}.txt", i % 30), &body);
    }
    let changed_bytes = (changed * body.len()) as u64;
    let (requests, uploaded) = logged_run(&env, name);
    eprintln!(
        "{files} files: first run uploaded {first_up} bytes; no change: {quiet} requests, \
         {quiet_up} bytes; 1% change ({changed} files, {changed_bytes} bytes): {requests} \
         requests, {uploaded} bytes uploaded"
    );
    assert!(uploaded >= changed_bytes, "{uploaded}");
    let bound = changed_bytes + changed as u64 * 1024 + 8192;
    assert!(
        uploaded <= bound,
        "uploaded {uploaded} bytes for {changed_bytes} changed bytes in {changed} files (at \
         most {bound}): proportional to the tree, not to the change"
    );
    let (code, out) = restore(&env, name, "r", &[]);
    assert_eq!(code, 0, "{out}");
    assert_same_tree(
        &common::snapshot(&env.path(&format!("src-{name}"))),
        &common::snapshot(&env.path("r")),
    );
}

/// The job's local cache folder (one object-store job per env here).
fn cache_folder(env: &Env) -> std::path::PathBuf {
    let objects = env.state_dir().join("objects");
    let mut dirs: Vec<_> = fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

fn manifest(b: &Bucket, name: &str) -> Value {
    let bytes = b.get(&format!("jobs/{name}/.strata/index")).unwrap();
    serde_json::from_slice(&bytes).expect("the index is a manifest")
}

fn restores_the_source(env: &Env, name: &str) {
    let _ = fs::remove_dir_all(env.path("r"));
    let (code, out) = restore(env, name, "r", &[]);
    assert_eq!(code, 0, "{out}");
    assert_same_tree(
        &common::snapshot(&env.path(&format!("src-{name}"))),
        &common::snapshot(&env.path("r")),
    );
}

/// `n` files `fN.txt` holding `N`, for [`backed_up`].
fn numbered(n: usize) -> impl Iterator<Item = (String, String)> {
    (0..n).map(|i| (format!("f{i}.txt"), format!("{i}")))
}

/// A fresh bucket and environment holding job `name` (its files below
/// `src-NAME/`) backed up once; `None` where there is no S3 server.
fn backed_up(
    test: &str,
    name: &str,
    files: impl IntoIterator<Item = (String, String)>,
) -> Option<(Bucket, Dest, Env)> {
    let bucket = s3::bucket(test)?;
    let dest = Dest::Object(bucket.clone());
    let env = Env::new();
    for (path, body) in files {
        env.write(&format!("src-{name}/{path}"), &body);
    }
    job(&env, &dest, name, "");
    run_ok(&env, name);
    Some((bucket, dest, env))
}

#[test]
fn a_cache_behind_the_store_fetches_only_the_deltas_it_lacks() {
    let name = "k";
    let Some((bucket, dest, env)) = backed_up(
        "a_cache_behind_the_store",
        name,
        (0..200).map(|i| (format!("d{}/f{i}.txt", i % 5), format!("{i}"))),
    ) else {
        return;
    };
    let (quiet, _) = logged_run(&env, name);
    // The cache as of the first run, then two runs that write deltas.
    let behind = env.path("cache-behind");
    common::copy_tree(&cache_folder(&env), &behind);
    env.write(&format!("src-{name}/d0/f0.txt"), "changed");
    run_ok(&env, name);
    env.write(&format!("src-{name}/d9/new.txt"), "new");
    fs::remove_file(env.path(&format!("src-{name}/d1/f1.txt"))).unwrap();
    run_ok(&env, name);
    let m = manifest(&bucket, name);
    assert_eq!(m["deltas"].as_array().unwrap().len(), 2, "{m:#}");
    let current = fs::read(cache_folder(&env).join(".strata/index")).unwrap();

    // Rolled back: the manifest and the two deltas, not the base.
    let folder = cache_folder(&env);
    common::copy_tree(&behind, &folder);
    let (requests, _) = logged_run(&env, name);
    assert_eq!(requests, quiet + 2, "the manifest's body and two deltas");
    assert_eq!(
        fs::read(folder.join(".strata/index")).unwrap(),
        current,
        "caught up exactly"
    );
    let (requests, _) = logged_run(&env, name);
    assert_eq!(requests, quiet, "then current again");

    // No cache at all: the base and both deltas.
    fs::remove_dir_all(&folder).unwrap();
    let (requests, _) = logged_run(&env, name);
    assert_eq!(requests, quiet + 3, "the base and two deltas");
    assert_eq!(fs::read(folder.join(".strata/index")).unwrap(), current);
    restores_the_source(&env, name);
    assert!(dest.leftovers(&env, name).is_empty());
}

#[test]
fn deltas_are_compacted_into_a_new_base_and_the_old_segments_go() {
    let name = "m";
    let Some((bucket, dest, env)) = backed_up("deltas_are_compacted", name, numbered(20)) else {
        return;
    };
    let first = manifest(&bucket, name);
    assert_eq!(first["deltas"], Value::from(Vec::<Value>::new()));
    // Small changes: a delta each, up to the bound on their number.
    let mut n = 0;
    loop {
        n += 1;
        env.write(&format!("src-{name}/f{}.txt", n % 20), &format!("v{n}"));
        run_ok(&env, name);
        let m = manifest(&bucket, name);
        let deltas = m["deltas"].as_array().unwrap().len();
        let left = dest.leftovers(&env, name);
        assert!(left.is_empty(), "run {n}: {left:?}");
        if deltas == 0 {
            assert!(n > 2, "compacted after {n} runs");
            assert_ne!(m["base"], first["base"], "a new base");
            break;
        }
        assert_eq!(deltas, n, "{m:#}");
        assert_eq!(m["base"], first["base"]);
        assert!(n < 50, "never compacted");
    }
    let prefix = format!("jobs/{name}/");
    let segments: Vec<String> = bucket
        .keys(&format!("{prefix}.strata/index.d/"))
        .into_iter()
        .map(|k| k[prefix.len()..].to_string())
        .collect();
    assert_eq!(segments, segments_of(&bucket, name), "only the new base");
    restores_the_source(&env, name);

    // A large change (past a quarter of the base, and the floor) compacts
    // at once.
    for i in 0..80 {
        env.write(&format!("src-{name}/g{i}-{}.txt", "x".repeat(220)), "g");
    }
    run_ok(&env, name);
    let m = manifest(&bucket, name);
    assert_eq!(m["deltas"], Value::from(Vec::<Value>::new()), "{m:#}");
    assert_eq!(bucket.keys(&format!("{prefix}.strata/index.d/")).len(), 1);
    env.write(&format!("src-{name}/f1.txt"), "again");
    run_ok(&env, name);
    let m = manifest(&bucket, name);
    assert_eq!(m["deltas"].as_array().unwrap().len(), 1, "{m:#}");
    let big = bucket.keys(&format!("{prefix}.strata/index.d/"));
    assert_eq!(big.len(), 2, "{big:?}");
    assert!(dest.leftovers(&env, name).is_empty());
    restores_the_source(&env, name);
    let (code, out, err) = env.run(&["verify", name]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A reader beside a writer: a `restore` or `history` that read the
/// index's manifest just before a compacting run committed (which deletes
/// the segments that manifest named) reads the index again rather than
/// failing, and works on the state that stands. (`verify` holds the lease:
/// no writer runs beside it.)
#[test]
fn a_reader_that_read_the_manifest_before_a_compaction_reads_the_new_index() {
    for command in ["restore", "history"] {
        let name = "s";
        let Some((bucket, _dest, env)) = backed_up(
            &format!("a_reader_beside_a_compaction_{command}"),
            name,
            numbered(20),
        ) else {
            return;
        };
        // A delta, so that the reader has more than the base to fetch.
        env.write(&format!("src-{name}/f1.txt"), "v1");
        run_ok(&env, name);
        let before = manifest(&bucket, name);
        assert_eq!(before["deltas"].as_array().unwrap().len(), 1, "{before:#}");
        // The reader: a state of its own (no cache), held after the
        // manifest.
        let resume = env.path("resume");
        let waiting = env.path("resume.waiting");
        let to = env.path("r");
        let mut args = vec![command, name];
        if command == "restore" {
            args.extend(["--to", to.to_str().unwrap()]);
        }
        let reader = env
            .std_command()
            .env("STRATA_STATE_DIR", env.path("reader-state"))
            .env("STRATA_FAULT", "wait:object.index.read")
            .env("STRATA_FAULT_RESUME", &resume)
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !waiting.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{command}: the reader never read the manifest"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // The writer: a change past a quarter of the base compacts, and
        // the base and delta the reader's manifest names go.
        for i in 0..80 {
            env.write(&format!("src-{name}/g{i}-{}.txt", "x".repeat(220)), "g");
        }
        run_ok(&env, name);
        let after = manifest(&bucket, name);
        assert_eq!(
            after["deltas"],
            Value::from(Vec::<Value>::new()),
            "{after:#}"
        );
        let old = before["base"]["key"].as_str().unwrap();
        assert!(
            bucket.get(&format!("jobs/{name}/{old}")).is_none(),
            "the old base is gone"
        );
        fs::write(&resume, "").unwrap();
        let out = reader.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{command}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if command == "restore" {
            assert_same_tree(
                &common::snapshot(&env.path(&format!("src-{name}"))),
                &common::snapshot(&to),
            );
        }
    }
}

fn segments_of(b: &Bucket, name: &str) -> Vec<String> {
    let mut s = segments(b, name);
    s.sort();
    s
}

#[test]
fn an_index_in_one_object_as_older_strata_wrote_it_is_read_and_upgraded_by_the_next_run() {
    let name = "u";
    let Some((bucket, dest, env)) = backed_up("an_index_in_one_object", name, numbered(30)) else {
        return;
    };
    let count = manifest(&bucket, name)["count"].as_u64().unwrap();
    // The destination as strata before manifests left it: the whole
    // index (format v2, as the cache holds it) at `.strata/index`, no
    // segments; and this machine's cache gone.
    let whole = fs::read(cache_folder(&env).join(".strata/index")).unwrap();
    assert!(whole.starts_with(b"STRATA-INDEX"));
    for k in bucket.keys(&format!("jobs/{name}/.strata/index.d/")) {
        bucket.delete(&k);
    }
    bucket.put(&format!("jobs/{name}/.strata/index"), &whole);
    fs::remove_dir_all(cache_folder(&env)).unwrap();

    // A no-change run reads it and upgrades it in place: the same entries
    // as a base, under a manifest. Killed half way (the base up, the
    // manifest not), the next run sweeps what it left and upgrades.
    for point in ["abort:object.segment#1", "abort:object.index#1"] {
        let out = env
            .strata()
            .env("STRATA_FAULT", point)
            .args(["run", name])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point} did not stop the run");
        let index = bucket.get(&format!("jobs/{name}/.strata/index")).unwrap();
        assert!(
            index.starts_with(b"STRATA-INDEX"),
            "{point}: not yet upgraded"
        );
    }
    assert_eq!(
        bucket.keys(&format!("jobs/{name}/.strata/index.d/")).len(),
        1,
        "the base the killed upgrade left"
    );
    let row = run_ok(&env, name);
    assert_eq!(row["stats"]["new"], 0, "{row:#}");
    assert!(row["increment"].is_null(), "{row:#}");
    let m = manifest(&bucket, name);
    assert_eq!(m["deltas"], Value::from(Vec::<Value>::new()), "{m:#}");
    assert_eq!(m["count"], count, "{m:#}");
    let base = bucket
        .get(&format!(
            "jobs/{name}/{}",
            m["base"]["key"].as_str().unwrap()
        ))
        .unwrap();
    assert_eq!(base, whole, "the base is the index it replaced");
    assert!(dest.leftovers(&env, name).is_empty());
    let (quiet, uploaded) = logged_run(&env, name);
    assert!(
        quiet <= 6 && uploaded < 1024,
        "{quiet} requests, {uploaded} bytes"
    );
    restores_the_source(&env, name);
    let (code, out, err) = env.run(&["verify", name]);
    assert_eq!(code, 0, "{out}{err}");
    // And the next change is a delta on it.
    env.write(&format!("src-{name}/f3.txt"), "changed");
    env.write(&format!("src-{name}/new.txt"), "new");
    run_ok(&env, name);
    let m = manifest(&bucket, name);
    assert_eq!(m["deltas"].as_array().unwrap().len(), 1, "{m:#}");
    assert_eq!(m["count"], count + 1, "{m:#}");
    assert!(dest.leftovers(&env, name).is_empty());
    restores_the_source(&env, name);
}

#[test]
fn verify_names_a_missing_or_damaged_index_segment() {
    let name = "v";
    let Some((bucket, _, env)) = backed_up(
        "verify_names_a_missing",
        name,
        [("a.txt".to_string(), "a".to_string())],
    ) else {
        return;
    };
    env.write(&format!("src-{name}/b.txt"), "b");
    run_ok(&env, name);
    let m = manifest(&bucket, name);
    let base = m["base"]["key"].as_str().unwrap().to_string();
    let delta = m["deltas"][0]["key"].as_str().unwrap().to_string();
    let (code, out, err) = env.run(&["verify", name]);
    assert_eq!(code, 0, "{out}{err}");

    let delta_key = format!("jobs/{name}/{delta}");
    let good = bucket.get(&delta_key).unwrap();
    let mut bad = good.clone();
    bad[20] ^= 1;
    bucket.put(&delta_key, &bad);
    let (code, out, err) = env.run(&["verify", name]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&delta) && out.contains("checksum"),
        "{out}{err}"
    );

    bucket.put(&delta_key, &good);
    bucket.delete(&format!("jobs/{name}/{base}"));
    // A cache behind the store cannot catch up: the error names the key.
    fs::remove_dir_all(cache_folder(&env)).unwrap();
    let (code, out, err) = env.run(&["verify", name]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&base) && out.contains("missing"), "{out}{err}");
    let (code, v) = env.run_json(&["run", name]);
    assert_eq!(code, 1, "{v:#}");
    assert!(v.to_string().contains(&base), "{v:#}");
}

#[test]
fn a_compacting_run_killed_at_any_point_is_repaired_and_leaves_no_segment() {
    let Some(bucket) = s3::bucket("a_compacting_run_killed") else {
        return;
    };
    let dest = Dest::Object(bucket.clone());
    // Up to the bound on deltas: the next run compacts.
    let prepare = |env: &Env| {
        crash_source(env, "c");
        job(env, &dest, "c", "");
        for k in bucket.keys("jobs/c/") {
            bucket.delete(&k);
        }
        run_ok(env, "c");
        for n in 0.. {
            let m = manifest(&bucket, "c");
            if m["deltas"].as_array().unwrap().len() == MAX_DELTAS {
                break;
            }
            // Each version of another size: same size and mtime is a
            // change of metadata only (the quick check).
            env.write(
                "src-c/t/f0.txt",
                &format!("tracked 0, {}", "v".repeat(n + 1)),
            );
            run_ok(env, "c");
        }
    };
    let probe = Env::new();
    prepare(&probe);
    crash_mutate(&probe, "c");
    let points: Vec<String> = fault_points(&probe, "c")
        .into_iter()
        .filter(|p| p.starts_with("abort:object."))
        // What the sweep of every point checks already: the uploads.
        .filter(|p| !p.starts_with("abort:object.upload") && !p.starts_with("abort:object.track"))
        .collect();
    assert_eq!(
        manifest(&bucket, "c")["deltas"],
        Value::from(Vec::<Value>::new())
    );
    assert!(
        points.iter().any(|p| p.starts_with("abort:object.retire")),
        "{points:?}"
    );
    for point in &points {
        let env = Env::new();
        prepare(&env);
        let before = dest.increments(&env, "c");
        crash_mutate(&env, "c");
        let out = env
            .strata()
            .env("STRATA_FAULT", point)
            .args(["--threads", "1", "run", "c"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point} did not stop the run");
        run_ok(&env, "c");
        assert_eq!(
            dest.increments(&env, "c").len(),
            before.len() + 1,
            "{point}"
        );
        let left = dest.leftovers(&env, "c");
        assert!(left.is_empty(), "{point}: left over: {left:?}");
        restores_the_source(&env, "c");
        // The next run compacts (or did): nothing but the base and its deltas.
        let named = segments_of(&bucket, "c");
        let stored: Vec<String> = bucket
            .keys("jobs/c/.strata/index.d/")
            .into_iter()
            .map(|k| k["jobs/c/".len()..].to_string())
            .collect();
        assert_eq!(stored, named, "{point}");
    }
}

/// [`strata`'s bound on the deltas of an index](MAX_DELTAS).
const MAX_DELTAS: usize = 8;

fn bucket_index_size(dest: &Dest, name: &str) -> u64 {
    match dest {
        Dest::Object(b) => b
            .get(&format!("jobs/{name}/.strata/index"))
            .map_or(0, |i| i.len() as u64),
        Dest::Local => 0,
    }
}

#[test]
fn the_lease_keeps_a_second_writer_out_until_it_expires() {
    let Some(bucket) = s3::bucket("the_lease_keeps_a_second_writer_out") else {
        return;
    };
    let dest = Dest::Object(bucket.clone());
    let env = Env::new();
    env.write("src-l/a.txt", "a");
    job(&env, &dest, "l", "");
    // Another host's writer, its lease valid for an hour.
    let until = chrono_now() + 3600;
    bucket.put(
        "jobs/l/.strata/lease",
        format!(r#"{{"owner":"elsewhere pid 7","host":"elsewhere","boot":"x","pid":7,"expires":{until}}}"#)
            .as_bytes(),
    );
    let (code, v) = env.run_json(&["run", "l"]);
    assert_eq!(code, 0, "a skip is not a failure: {v:#}");
    assert_eq!(v["jobs"][0]["status"], "skipped_locked", "{v:#}");
    assert!(
        bucket.get("jobs/l/.strata/index").is_none(),
        "nothing was written"
    );
    // Expired: taken over, and said so.
    let past = chrono_now() - 10;
    bucket.put(
        "jobs/l/.strata/lease",
        format!(r#"{{"owner":"elsewhere pid 7","host":"elsewhere","boot":"x","pid":7,"expires":{past}}}"#)
            .as_bytes(),
    );
    let row = run_ok(&env, "l");
    let warnings = row["warnings"].to_string();
    assert!(
        warnings.contains("took over the lease of elsewhere pid 7"),
        "{row:#}"
    );
    assert!(
        bucket.get("jobs/l/.strata/lease").is_none(),
        "released at the end"
    );
    // Held again: prune and verify, which must not run beside a writer,
    // skip as a run does, naming the holder, and change nothing.
    let lease = format!(
        r#"{{"owner":"elsewhere pid 8","host":"elsewhere","boot":"x","pid":8,"expires":{until}}}"#
    );
    bucket.put("jobs/l/.strata/lease", lease.as_bytes());
    for command in [&["prune", "l"][..], &["verify", "l", "--deep"]] {
        let (code, out, err) = env.run(command);
        assert_eq!(code, 0, "{command:?}: a skip is not a failure: {out}{err}");
        assert!(
            out.contains("l: skipped (locked): elsewhere pid 8 holds the destination's lease"),
            "{command:?}: {out}{err}"
        );
        let (code, v) = env.run_json(command);
        assert_eq!(code, 0, "{command:?}: {v:#}");
        assert_eq!(v["status"], "skipped_locked", "{command:?}: {v:#}");
    }
    assert_eq!(
        bucket.get("jobs/l/.strata/lease").as_deref(),
        Some(lease.as_bytes()),
        "the holder's lease is left alone"
    );
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_vanished_history_is_refused_until_init() {
    let Some(bucket) = s3::bucket("a_vanished_history_is_refused") else {
        return;
    };
    let dest = Dest::Object(bucket.clone());
    let env = Env::new();
    env.write("src-g/a.txt", "a");
    job(&env, &dest, "g", "");
    run_ok(&env, "g");
    for k in bucket.keys("jobs/g/") {
        bucket.delete(&k);
    }
    let (code, v) = env.run_json(&["run", "g"]);
    assert_eq!(code, 1, "{v:#}");
    let message = v["jobs"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("--init") && message.contains("right bucket"),
        "{message}"
    );
    assert!(
        bucket.keys("jobs/g/").is_empty(),
        "nothing was written: {:?}",
        bucket.keys("jobs/g/")
    );
    let (code, v) = env.run_json(&["run", "--init", "g"]);
    assert_eq!(code, 0, "{v:#}");
}

// The crash sweep, on both kinds: the points a run passes (a traced run
// lists them), then a run aborted at each (as abruptly as kill -9), then
// a run without a fault, which must repair: the latest state restores to
// the source, the interrupted run's changes are in exactly one increment,
// and nothing is left over.

fn fault_points(env: &Env, name: &str) -> Vec<String> {
    let trace = env.path("trace");
    let _ = fs::remove_file(&trace);
    let out = env
        .strata()
        .env("STRATA_FAULT_TRACE", &trace)
        .args(["--threads", "1", "run", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&trace).unwrap_or_default();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut points = Vec::new();
    for line in text.lines() {
        let n = seen.entry(line.to_string()).or_default();
        *n += 1;
        points.push(format!("abort:{line}#{n}"));
    }
    points
}

fn crash_source(env: &Env, name: &str) {
    for i in 0..4 {
        env.write(&format!("src-{name}/t/f{i}.txt"), &format!("tracked {i}"));
    }
    env.symlink("t/f0.txt", &format!("src-{name}/link"));
    env.write(&format!("src-{name}/gone.txt"), "to be deleted");
}

fn crash_mutate(env: &Env, name: &str) {
    env.write(&format!("src-{name}/t/f1.txt"), "tracked 1, changed");
    env.write(&format!("src-{name}/t/new.txt"), "new");
    fs::remove_file(env.path(&format!("src-{name}/gone.txt"))).unwrap();
}

#[test]
fn the_crash_sweep_repairs_every_point_on_both_kinds() {
    both(
        "the_crash_sweep_repairs_every_point_on_both_kinds",
        |dest| {
            // The points of the changing run, found once on a scratch copy.
            let probe = Env::new();
            crash_source(&probe, "c");
            job(&probe, dest, "c", "");
            run_ok(&probe, "c");
            crash_mutate(&probe, "c");
            let points = fault_points(&probe, "c");
            let relevant: Vec<&String> = points
                .iter()
                .filter(|p| match dest {
                    Dest::Local => !p.starts_with("abort:object."),
                    Dest::Object(_) => p.starts_with("abort:object."),
                })
                .collect();
            assert!(relevant.len() >= 5, "{}: points {points:?}", dest.label());
            eprintln!("{}: {} fault points", dest.label(), relevant.len());
            for point in relevant {
                // A fresh job each time (its own prefix or folder).
                let env = Env::new();
                let name = "c";
                crash_source(&env, name);
                job(&env, dest, name, "");
                // The object store's prefix is per job name: clean it first.
                if let Dest::Object(b) = dest {
                    for k in b.keys("jobs/c/") {
                        b.delete(&k);
                    }
                }
                run_ok(&env, name);
                let before = dest.increments(&env, name);
                crash_mutate(&env, name);
                let out = env
                    .strata()
                    .env("STRATA_FAULT", point)
                    .args(["--threads", "1", "run", name])
                    .output()
                    .unwrap();
                assert!(
                    !out.status.success(),
                    "{}: {point} did not stop the run",
                    dest.label()
                );
                let row = run_ok(&env, name);
                let after = dest.increments(&env, name);
                assert_eq!(
                    after.len(),
                    before.len() + 1,
                    "{}: {point}: the interrupted run's changes are in exactly one increment: \
                 {before:?} -> {after:?}; {row:#}",
                    dest.label()
                );
                assert_eq!(
                    &after[..before.len()],
                    &before[..],
                    "earlier increments untouched"
                );
                let left = dest.leftovers(&env, name);
                assert!(
                    left.is_empty(),
                    "{}: {point}: left over: {left:?}",
                    dest.label()
                );
                let _ = fs::remove_dir_all(env.path("r"));
                let (code, out) = restore(&env, name, "r", &[]);
                assert_eq!(code, 0, "{}: {point}: {out}", dest.label());
                assert_same_tree(
                    &common::snapshot(&env.path("src-c")),
                    &common::snapshot(&env.path("r")),
                );
                // The newest increment holds exactly the changes.
                let (_, v) = env.run_json(&["history", name]);
                let newest = v["increments"].as_array().unwrap().last().unwrap().clone();
                assert_eq!(
                    (
                        newest["new"].clone(),
                        newest["changed"].clone(),
                        newest["deleted"].clone()
                    ),
                    (Value::from(1), Value::from(1), Value::from(1)),
                    "{}: {point}: {newest:#}",
                    dest.label()
                );
            }
        },
    );
}

#[test]
fn verify_deep_finds_damaged_content_on_both_kinds() {
    both("verify_deep_finds_damaged_content_on_both_kinds", |dest| {
        let env = Env::new();
        env.write("src-d/a.txt", "original");
        env.write("src-d/b.txt", "untouched");
        job(&env, dest, "d", "");
        run_ok(&env, "d");
        // Same size, other bytes: only the content hash can tell.
        match dest {
            Dest::Local => {
                use std::os::unix::fs::FileExt;
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(env.path("dest-d/mirror/a.txt"))
                    .unwrap();
                f.write_all_at(b"ORIGINAL", 0).unwrap();
                set_mtime(&env.path("dest-d/mirror/a.txt"), 1_600_000_000);
            }
            Dest::Object(b) => b.put("jobs/d/mirror/a.txt", b"ORIGINAL"),
        }
        let (code, out, err) = env.run(&["verify", "d"]);
        assert_eq!(
            code,
            0,
            "{}: a shallow verify sees sizes only: {out}{err}",
            dest.label()
        );
        let (code, out, err) = env.run(&["verify", "--deep", "d"]);
        assert_eq!(code, 1, "{}: {out}{err}", dest.label());
        assert!(
            out.contains("mirror/a.txt") && out.contains("hash") && !out.contains("b.txt"),
            "{}: {out}",
            dest.label()
        );
    });
}

// prune on both kinds: five runs, then `keep_last: 2` merges the three
// oldest forward into the fourth.

/// The job `name` with (or without) a retention block.
fn prune_job(env: &Env, dest: &Dest, name: &str, keep: Option<u32>) {
    let extra = keep.map_or(String::new(), |n| {
        format!(r#", "retention": {{"keep_last": {n}}}"#)
    });
    job(env, dest, name, &extra);
}

/// Five runs with moves, drops, a deletion carried forward and one
/// evicted (a file that came and went between the kept points); the
/// source after each run is kept in `at-K` (K from 1).
fn prune_history(env: &Env, dest: &Dest, name: &str) {
    let s = |rel: &str| format!("src-{name}/{rel}");
    let steps: [&dyn Fn(); 5] = [
        &|| {
            env.write(&s("a.txt"), "a1");
            env.write(&s("b.txt"), "b1");
            env.write(&s("g.txt"), "g1");
            env.symlink("a.txt", &s("link"));
            fs::create_dir_all(env.path(&s("d"))).unwrap();
        },
        &|| {
            env.write(&s("a.txt"), "a2, longer");
            env.write(&s("c.txt"), "c2");
            fs::remove_file(env.path(&s("g.txt"))).unwrap();
        },
        &|| {
            env.write(&s("b.txt"), "b3, longer");
            fs::remove_file(env.path(&s("c.txt"))).unwrap();
            env.write(&s("d/e.txt"), "e3");
        },
        &|| {
            env.write(&s("a.txt"), "a4, longer still");
            fs::remove_file(env.path(&s("link"))).unwrap();
            env.symlink("b.txt", &s("link"));
        },
        &|| {
            env.write(&s("h.txt"), "h5");
        },
    ];
    prune_job(env, dest, name, None);
    for (k, step) in steps.iter().enumerate() {
        step();
        run_ok(env, name);
        common::copy_tree(&env.path(&s("")), &env.path(&format!("at-{}", k + 1)));
    }
    assert_eq!(dest.increments(env, name).len(), 5, "{}", dest.label());
}

/// `restore --at` every increment, each into `into-K`: tree by increment.
fn restore_all(env: &Env, name: &str, into: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let (code, v) = env.run_json(&["history", name]);
    assert_eq!(code, 0, "{v:#}");
    let mut out = BTreeMap::new();
    for inc in v["increments"].as_array().unwrap() {
        let inc = inc["increment"].as_str().unwrap().to_string();
        let to = format!("{into}-{inc}");
        let (code, text) = restore(env, name, &to, &["--at", &inc]);
        assert_eq!(code, 0, "restore --at {inc}: {text}");
        out.insert(inc, snapshot_full(&env.path(&to)));
        fs::remove_dir_all(env.path(&to)).unwrap();
    }
    out
}

/// The plan's shape, increments named by position: what must be the same
/// on both kinds for the same history.
fn plan_shape(v: &Value, names: &[String]) -> Value {
    let at = |n: &Value| names.iter().position(|x| x == n.as_str().unwrap());
    serde_json::json!({
        "kept": v["kept"].as_array().unwrap().iter()
            .map(|k| serde_json::json!([at(&k["increment"]), k["reasons"]]))
            .collect::<Vec<_>>(),
        "remove": v["remove"].as_array().unwrap().iter().map(at).collect::<Vec<_>>(),
        "removed": v["removed"].as_array().unwrap().iter()
            .map(|r| serde_json::json!([at(&r["increment"]), at(&r["into"]), r["moved"], r["dropped"]]))
            .collect::<Vec<_>>(),
    })
}

#[test]
fn prune_merges_forward_and_every_kept_point_restores_the_same_on_both_kinds() {
    let shapes = std::sync::Mutex::new(Vec::new());
    both(
        "prune_merges_forward_and_every_kept_point_restores_the_same_on_both_kinds",
        |dest| {
            let env = Env::new();
            let name = "p";
            prune_history(&env, dest, name);
            let names = dest.increments(&env, name);
            let before = restore_all(&env, name, "pre");
            // The restores of the past are the sources of the past.
            for (k, inc) in names.iter().enumerate() {
                assert_same_tree(
                    &snapshot_full(&env.path(&format!("at-{}", k + 1))),
                    &before[inc],
                );
            }
            prune_job(&env, dest, name, Some(2));
            let (code, dry) = env.run_json(&["prune", "--dry-run", name]);
            assert_eq!(code, 0, "{}: {dry:#}", dest.label());
            assert_eq!(
                dest.increments(&env, name),
                names,
                "a dry run changes nothing"
            );
            let (code, done) = env.run_json(&["prune", name]);
            assert_eq!(code, 0, "{}: {done:#}", dest.label());
            let shape = plan_shape(&done, &names);
            assert_eq!(plan_shape(&dry, &names), shape, "the dry run is the plan");
            assert_eq!(shape["remove"], serde_json::json!([0, 1, 2]), "{shape:#}");
            assert!(done["freed"]["bytes"].as_u64().unwrap() > 0, "{done:#}");
            let after = dest.increments(&env, name);
            assert_eq!(after, names[3..], "{}", dest.label());
            let restored = restore_all(&env, name, "post");
            for inc in &after {
                assert_same_tree(&before[inc], &restored[inc]);
            }
            let (code, text) = restore(&env, name, "latest", &[]);
            assert_eq!(code, 0, "{text}");
            assert_same_tree(
                &snapshot_full(&env.path("src-p")),
                &snapshot_full(&env.path("latest")),
            );
            let orphans = dest.orphans(&env, name);
            assert!(orphans.is_empty(), "{}: {orphans:?}", dest.label());
            let left = dest.leftovers(&env, name);
            assert!(left.is_empty(), "{}: {left:?}", dest.label());
            let (code, out, err) = env.run(&["verify", "--deep", name]);
            assert_eq!(code, 0, "{}: {out}{err}", dest.label());
            shapes.lock().unwrap().push(shape);
        },
    );
    let shapes = shapes.into_inner().unwrap();
    for s in &shapes[1..] {
        assert_eq!(
            &shapes[0], s,
            "the same plan for the same history on both kinds"
        );
    }
}

#[test]
fn a_prune_killed_at_any_step_is_finished_by_the_next_prune_or_run_on_both_kinds() {
    both(
        "a_prune_killed_at_any_step_is_finished_by_the_next_prune_or_run_on_both_kinds",
        |dest| {
            let name = "k";
            let clean_bucket = |dest: &Dest| {
                if let Dest::Object(b) = dest {
                    for k in b.keys(&format!("jobs/{name}/")) {
                        b.delete(&k);
                    }
                }
            };
            // The points a prune passes, from a traced one.
            let probe = Env::new();
            clean_bucket(dest);
            prune_history(&probe, dest, name);
            prune_job(&probe, dest, name, Some(2));
            let trace = probe.path("trace");
            let out = probe
                .strata()
                .env("STRATA_FAULT_TRACE", &trace)
                .args(["--threads", "1", "prune", name])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut seen: BTreeMap<String, u32> = BTreeMap::new();
            let points: Vec<String> = fs::read_to_string(&trace)
                .unwrap_or_default()
                .lines()
                .filter(|l| match dest {
                    Dest::Local => l.starts_with("prune."),
                    Dest::Object(_) => l.starts_with("object.prune."),
                })
                .map(|l| {
                    let n = seen.entry(l.to_string()).or_default();
                    *n += 1;
                    format!("abort:{l}#{n}")
                })
                .collect();
            assert!(points.len() >= 6, "{}: {points:?}", dest.label());
            eprintln!("{}: {} prune fault points", dest.label(), points.len());
            for (i, point) in points.iter().enumerate() {
                let env = Env::new();
                clean_bucket(dest);
                prune_history(&env, dest, name);
                let names = dest.increments(&env, name);
                prune_job(&env, dest, name, Some(2));
                let out = env
                    .strata()
                    .env("STRATA_FAULT", point)
                    .args(["--threads", "1", "prune", name])
                    .output()
                    .unwrap();
                assert!(
                    !out.status.success(),
                    "{}: {point} did not stop the prune",
                    dest.label()
                );
                // A half-pruned history is refused, naming the journal.
                if dest.journal(&env, name) {
                    for args in [
                        vec!["history", name],
                        vec!["restore", name, "--to", "x", "--at", &names[4]],
                    ] {
                        let (code, out, err) = env.run(&args);
                        assert_eq!(code, 1, "{}: {point}: {args:?}: {out}{err}", dest.label());
                        assert!(
                            err.contains("merge.json") && err.contains("interrupted prune"),
                            "{}: {point}: {err}",
                            dest.label()
                        );
                    }
                }
                // Every other point is repaired by a run instead of a prune.
                if i % 2 == 0 {
                    let (code, v) = env.run_json(&["prune", name]);
                    assert_eq!(code, 0, "{}: {point}: {v:#}", dest.label());
                } else {
                    run_ok(&env, name);
                }
                let after = dest.increments(&env, name);
                assert_eq!(after, names[3..], "{}: {point}", dest.label());
                for (k, inc) in [(4, &names[3]), (5, &names[4])] {
                    let to = format!("r-{k}");
                    let (code, text) = restore(&env, name, &to, &["--at", inc]);
                    assert_eq!(code, 0, "{}: {point}: {text}", dest.label());
                    assert_same_tree(
                        &snapshot_full(&env.path(&format!("at-{k}"))),
                        &snapshot_full(&env.path(&to)),
                    );
                }
                let orphans = dest.orphans(&env, name);
                assert!(orphans.is_empty(), "{}: {point}: {orphans:?}", dest.label());
                let left = dest.leftovers(&env, name);
                assert!(left.is_empty(), "{}: {point}: {left:?}", dest.label());
            }
        },
    );
}

/// (path, status) of each difference `strata diff --json` lists.
fn diff_rows(env: &Env, name: &str, a: &str, b: Option<&str>) -> Vec<(String, String)> {
    let mut args = vec!["diff", name, a];
    args.extend(b);
    let (code, v) = env.run_json(&args);
    assert_eq!(code, 0, "diff {a} {b:?}: {v:#}");
    v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn cat(env: &Env, name: &str, path: &str, at: Option<&str>) -> (i32, String, String) {
    let mut args = vec!["cat", name, path];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    env.run(&args)
}

#[test]
fn diff_show_du_and_cat_read_both_kinds_alike() {
    let seen = std::sync::Mutex::new(Vec::new());
    both("diff_show_du_and_cat_read_both_kinds_alike", |dest| {
        let env = Env::new();
        let name = "q";
        prune_history(&env, dest, name);
        let incs = dest.increments(&env, name);
        let label = dest.label();

        // diff: between two increments, and the newest against the latest.
        let rows = diff_rows(&env, name, &incs[0], Some(&incs[1]));
        for want in [
            ("a.txt", "changed"),
            ("c.txt", "added"),
            ("g.txt", "removed"),
        ] {
            assert!(
                rows.contains(&(want.0.to_string(), want.1.to_string())),
                "{label}: {want:?} in {rows:?}"
            );
        }
        assert!(
            !rows.iter().any(|(p, _)| p == "b.txt"),
            "{label}: b.txt did not change: {rows:?}"
        );
        assert_eq!(diff_rows(&env, name, &incs[4], None), [], "{label}");

        // show: one increment's records.
        let (code, v) = env.run_json(&["show", name, &incs[2]]);
        assert_eq!(code, 0, "{label}: {v:#}");
        let records: Vec<(String, String, String, u64)> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] != "dir")
            .map(|r| {
                (
                    r["path"].as_str().unwrap().to_string(),
                    r["op"].as_str().unwrap().to_string(),
                    r["kind"].as_str().unwrap().to_string(),
                    r["size"].as_u64().unwrap(),
                )
            })
            .collect();
        let s = |x: &str| x.to_string();
        assert_eq!(
            records,
            [
                (s("b.txt"), s("changed"), s("file"), 10),
                (s("c.txt"), s("deleted"), s("file"), 2),
                (s("d/e.txt"), s("new"), s("file"), 2),
            ],
            "{label}"
        );

        // du: the mirror holds the five files and symlinks of the source,
        // every increment is listed, and the parts add up.
        let (code, v) = env.run_json(&["du", name]);
        assert_eq!(code, 0, "{label}: {v:#}");
        assert_eq!(v["mirror"]["files"], 5, "{label}: {v:#}");
        let listed: Vec<&str> = v["increments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["increment"].as_str().unwrap())
            .collect();
        assert_eq!(listed, incs, "{label}");
        let sum = v["mirror"]["bytes"].as_u64().unwrap()
            + v["state"]["bytes"].as_u64().unwrap()
            + v["increments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["bytes"].as_u64().unwrap())
                .sum::<u64>();
        assert_eq!(v["total"]["bytes"].as_u64().unwrap(), sum, "{label}: {v:#}");
        if let Dest::Object(_) = dest {
            // Every object once: the files' bytes and the symlink's target.
            let want = ["a4, longer still", "b3, longer", "e3", "h5", "b.txt"]
                .iter()
                .map(|t| t.len() as u64)
                .sum::<u64>();
            assert_eq!(v["mirror"]["bytes"], want, "{v:#}");
        }

        // cat: the latest and a past version, a symlink refused.
        let (code, out, err) = cat(&env, name, "a.txt", None);
        assert_eq!(
            (code, out.as_str()),
            (0, "a4, longer still"),
            "{label}: {err}"
        );
        let (code, out, err) = cat(&env, name, "a.txt", Some(&incs[0]));
        assert_eq!((code, out.as_str()), (0, "a1"), "{label}: {err}");
        let (code, out, err) = cat(&env, name, "d/e.txt", Some(&incs[2]));
        assert_eq!((code, out.as_str()), (0, "e3"), "{label}: {err}");
        let (code, _, err) = cat(&env, name, "c.txt", Some(&incs[2]));
        assert_eq!(code, 1, "{label}: c.txt was deleted there: {err}");
        assert!(err.contains("no c.txt at"), "{label}: {err}");
        let (code, _, err) = cat(&env, name, "link", None);
        assert_eq!(code, 1, "{label}");
        assert!(err.contains("symlink to b.txt"), "{label}: {err}");
        // A damaged copy (same size, other bytes; a new file put in its
        // place) prints nothing.
        match dest {
            Dest::Local => {
                let mirror = env.path("dest-q/mirror");
                fs::write(mirror.join(".b.new"), "B3, LONGER").unwrap();
                fs::rename(mirror.join(".b.new"), mirror.join("b.txt")).unwrap();
            }
            Dest::Object(b) => b.put("jobs/q/mirror/b.txt", b"B3, LONGER"),
        }
        let (code, out, err) = cat(&env, name, "b.txt", None);
        assert_eq!((code, out.as_str()), (1, ""), "{label}: {err}");
        assert!(
            err.contains("mirror/b.txt") && err.contains("does not match the hash"),
            "{label}: {err}"
        );
        seen.lock().unwrap().push((rows, records));
    });
    let seen = seen.into_inner().unwrap();
    for s in &seen[1..] {
        assert_eq!(&seen[0], s, "diff and show read both kinds alike");
    }
}

#[test]
fn names_beyond_ascii_and_with_percent_signs_round_trip_on_both_kinds() {
    both(
        "names_beyond_ascii_and_with_percent_signs_round_trip_on_both_kinds",
        |dest| {
            let env = Env::new();
            let name = "n";
            let names = [
                "über.txt",
                "日本/データ.md",
                "100%.txt",
                "%C3%BC.txt",
                "a#b [1] ~x.txt",
                "spaced out.txt",
            ];
            for (i, n) in names.iter().enumerate() {
                env.write(&format!("src-n/{n}"), &format!("version one of {i}"));
            }
            job(&env, dest, name, "");
            run_ok(&env, name);
            common::copy_tree(&env.path("src-n"), &env.path("at-first"));
            for (i, n) in names.iter().enumerate() {
                env.write(
                    &format!("src-n/{n}"),
                    &format!("version two of {i}, longer"),
                );
            }
            run_ok(&env, name);
            let incs = dest.increments(&env, name);
            let (code, out) = restore(&env, name, "r-latest", &[]);
            assert_eq!(code, 0, "{}: {out}", dest.label());
            assert_same_tree(
                &snapshot_full(&env.path("src-n")),
                &snapshot_full(&env.path("r-latest")),
            );
            let (code, out) = restore(&env, name, "r-first", &["--at", &incs[0]]);
            assert_eq!(code, 0, "{}: {out}", dest.label());
            assert_same_tree(
                &snapshot_full(&env.path("at-first")),
                &snapshot_full(&env.path("r-first")),
            );
            let (code, out, err) = env.run(&["verify", "--deep", name]);
            assert_eq!(code, 0, "{}: {out}{err}", dest.label());
            if let Dest::Object(b) = dest {
                // Browsable: a plain name is its own key; `%` alone is
                // encoded, so "100%.txt" and "%C3%BC.txt" stay apart from
                // names spelled like their encodings.
                let keys = b.keys("jobs/n/mirror/");
                for want in [
                    "jobs/n/mirror/über.txt",
                    "jobs/n/mirror/日本/データ.md",
                    "jobs/n/mirror/100%25.txt",
                    "jobs/n/mirror/%25C3%25BC.txt",
                    "jobs/n/mirror/spaced out.txt",
                ] {
                    assert!(keys.iter().any(|k| k == want), "{want} in {keys:?}");
                }
                assert_eq!(keys.len(), names.len(), "{keys:?}");
            }
        },
    );
}

/// Every object of job `name` whose key ends with `tail`.
fn keys_ending(b: &Bucket, name: &str, tail: &str) -> Vec<String> {
    b.keys(&format!("jobs/{name}/"))
        .into_iter()
        .filter(|k| k.ends_with(tail))
        .collect()
}

#[test]
fn verify_repair_puts_back_damaged_objects_and_reports_what_it_cannot() {
    let test = "verify_repair_puts_back_damaged_objects_and_reports_what_it_cannot";
    let Some(b) = s3::bucket(test) else {
        return eprintln!("{test}: skipped (no S3 server)");
    };
    let dest = Dest::Object(b.clone());
    let env = Env::new();
    let name = "r";
    build_source(&env, name);
    job(&env, &dest, name, "");
    run_ok(&env, name);
    common::copy_tree(&env.path("src-r"), &env.path("at-first"));
    mutate_source(&env, name);
    run_ok(&env, name);
    common::copy_tree(&env.path("src-r"), &env.path("at-second"));
    let incs = dest.increments(&env, name);
    assert_eq!(incs.len(), 2, "{incs:?}");
    let (code, out, err) = env.run(&["verify", "--deep", name]);
    assert_eq!(code, 0, "{out}{err}");

    let root = format!("jobs/{name}");
    // Other bytes of the same size, and a source that moved on: only the
    // first increment's copy holds the mirror's version.
    b.put(
        &format!("{root}/mirror/docs/deep/b.txt"),
        b"BRAVO, A LITTLE LONGER",
    );
    env.write("src-r/docs/deep/b.txt", "bravo, rewritten since");
    // Resized: the second increment's copy holds the mirror's version.
    b.put(&format!("{root}/mirror/docs/a.txt"), b"tiny");
    // The first version of a.txt: its hardlink's object holds it too.
    b.put(&format!("{root}/{}/track/docs/a.txt", incs[0]), b"ALPHA");
    // Missing everywhere but in the source: a file and a symlink (the
    // link's version of the second run: the first's is a target the
    // source no longer holds).
    for k in keys_ending(&b, name, "new/c.txt") {
        b.delete(&k);
    }
    for k in [
        format!("{root}/mirror/link"),
        format!("{root}/{}/track/link", incs[1]),
    ] {
        b.delete(&k);
    }
    // Every xattrs object: the records or the source hold the sets.
    let xattrs = b.keys(&format!("{root}/.strata/xattrs/"));
    for k in &xattrs {
        b.delete(k);
    }
    // Every copy of big.bin damaged, and the source holds another
    // version: this one cannot be repaired.
    let big = keys_ending(&b, name, "keep/big.bin");
    assert!(!big.is_empty());
    for k in &big {
        b.put(k, "y".repeat(70_000).as_bytes());
    }
    env.write("src-r/keep/big.bin", &"z".repeat(70_000));

    let (code, out, err) = env.run(&["verify", "--repair", name]);
    assert_eq!(code, 1, "big.bin cannot be repaired: {out}{err}");
    for k in &big {
        let line = out
            .lines()
            .find(|l| l.contains(&k[root.len() + 1..]) && !l.contains(": repaired"))
            .unwrap_or_else(|| panic!("{k} not reported: {out}"));
        assert!(line.contains("could not be repaired"), "{line}");
    }
    for key in [
        "mirror/docs/deep/b.txt".to_string(),
        "mirror/docs/a.txt".into(),
        format!("{}/track/docs/a.txt", incs[0]),
        "mirror/new/c.txt".into(),
        "mirror/link".into(),
    ] {
        assert!(
            out.lines()
                .any(|l| l.ends_with(&format!("/{key}: repaired"))),
            "{key} not repaired: {out}"
        );
    }
    for k in &xattrs {
        assert!(
            out.contains(&format!("{}: repaired", &k[root.len() + 1..])),
            "{k}: {out}"
        );
    }
    assert_eq!(b.get(&format!("{root}/mirror/link")).unwrap(), b"new/c.txt");

    // The source holds big.bin's version again: now all is repaired.
    fs::write(env.path("src-r/keep/big.bin"), "x".repeat(70_000)).unwrap();
    let (code, out, err) = env.run(&["verify", "--repair", name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("mirror/keep/big.bin: repaired"), "{out}");
    let (code, out, err) = env.run(&["verify", "--deep", name]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out) = restore(&env, name, "r-latest", &[]);
    assert_eq!(code, 0, "{out}");
    assert_same_tree(
        &snapshot_full(&env.path("at-second")),
        &snapshot_full(&env.path("r-latest")),
    );
    let (code, out) = restore(&env, name, "r-first", &["--at", &incs[0]]);
    assert_eq!(code, 0, "{out}");
    assert_same_tree(
        &snapshot_full(&env.path("at-first")),
        &snapshot_full(&env.path("r-first")),
    );
    // Repair wrote as the one writer, and let go.
    assert!(dest.leftovers(&env, name).is_empty());
}
