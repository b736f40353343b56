//! `strata du` against `du` itself, and the bytes `prune` frees.

mod common;

use std::os::unix::fs::MetadataExt;

use common::Env;

fn setup() -> Env {
    let env = Env::new();
    env.write("src-home/docs/a.txt", &"a".repeat(20_000));
    env.write("src-home/docs/b.txt", &"b".repeat(30_000));
    env.write("src-home/music/song", &"s".repeat(5_000));
    env.simple_job(
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["music"], "retention": {"keep_last": 1}"#,
    );
    env
}

fn run(env: &Env) -> String {
    // Without retention for the runs themselves: `prune` is what is tested.
    let (code, v) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{v:#}");
    v["jobs"][0]["increment"].as_str().unwrap().to_string()
}

/// `du -s` of each argument in turn, inodes counted once across them.
fn du(env: &Env, flag: &str, args: &[&str]) -> Vec<u64> {
    let out = std::process::Command::new("du")
        .current_dir(env.path("dest-home"))
        .arg("-s")
        .arg(flag)
        .args(args)
        .output()
        .expect("du runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn du_counts_each_inode_once_as_du_does() {
    let env = setup();
    // The retention policy would prune between runs: no policy for now.
    env.simple_job(
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["music"]"#,
    );
    let first = run(&env);
    env.write("src-home/docs/a.txt", &"A".repeat(40_000));
    let second = run(&env);
    let (code, v) = env.run_json(&["du", "home"]);
    assert_eq!(code, 0, "{v:#}");
    let args = ["mirror", first.as_str(), second.as_str(), ".strata"];
    let disk = du(&env, "-B1", &args);
    let bytes = du(&env, "-b", &args);
    let ours = |key: &str| -> Vec<u64> {
        let mut out = vec![v["mirror"][key].as_u64().unwrap()];
        for i in v["increments"].as_array().unwrap() {
            out.push(i[key].as_u64().unwrap());
        }
        out.push(v["state"][key].as_u64().unwrap());
        out
    };
    assert_eq!(ours("disk"), disk, "{v:#}");
    assert_eq!(ours("bytes"), bytes, "{v:#}");
    assert_eq!(
        v["total"]["disk"].as_u64().unwrap(),
        disk.iter().sum::<u64>()
    );
    // The second increment's a.txt is the mirror's: shared, not its own.
    let second_row = &v["increments"][1];
    assert_eq!(second_row["increment"], second.as_str());
    assert!(
        second_row["shared_with_mirror"].as_u64().unwrap() >= 40_000,
        "{v:#}"
    );
    // The first increment holds the old a.txt; its b.txt is still the mirror's.
    assert!(
        v["increments"][0]["disk"].as_u64().unwrap() >= 20_000,
        "{v:#}"
    );
    assert!(
        v["increments"][0]["shared_with_mirror"].as_u64().unwrap() >= 30_000,
        "{v:#}"
    );
    let (code, out, _) = env.run(&["du", "home"]);
    assert_eq!(code, 0);
    for name in ["mirror", &first, &second, ".strata", "total"] {
        assert!(out.lines().any(|l| l.starts_with(name)), "{name}: {out}");
    }
    assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
}

#[test]
fn prune_says_what_it_frees_and_the_dry_run_what_it_would() {
    let env = setup();
    env.simple_job(
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["music"]"#,
    );
    let first = run(&env);
    // a.txt changes (the first version is dropped by the merge), b.txt
    // stays (its version moves into the second increment).
    env.write("src-home/docs/a.txt", &"A".repeat(40_000));
    let second = run(&env);
    env.simple_job(
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["music"], "retention": {"keep_last": 1}"#,
    );
    let b = env.path(&format!("dest-home/{first}/track/docs/b.txt"));
    let moving = b.metadata().unwrap().blocks() * 512;
    let whole = du(&env, "-B1", &[first.as_str()])[0];
    let want = whole - moving;
    let (code, dry) = env.run_json(&["prune", "home", "--dry-run"]);
    assert_eq!(code, 0, "{dry:#}");
    assert_eq!(dry["freed"]["disk"].as_u64().unwrap(), want, "{dry:#}");
    let (code, out, _) = env.run(&["prune", "home", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("would remove 1 increment, would free "),
        "{out}"
    );
    let (code, done) = env.run_json(&["prune", "home"]);
    assert_eq!(code, 0, "{done:#}");
    assert_eq!(done["freed"], dry["freed"]);
    assert_eq!(env.increments("dest-home"), [second]);
}
