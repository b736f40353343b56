//! `strata verify`: a healthy backup, tampered and missing files, corruption `--deep` finds.

mod common;

use std::fs;

use common::fixtures::*;
use common::set_mtime;

#[test]
fn verify_passes_on_a_healthy_backup() {
    let env = setup();
    three_runs(&env);
    let (code, json) = env.run_json(&["verify", "home", "--deep"]);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["mirror_files"], 4);
    assert_eq!(json["increments"], 3);
    assert!(json["hashed"].as_u64().unwrap() >= 4);
}

#[test]
fn verify_catches_a_tampered_mirror_file() {
    let env = setup();
    run(&env);
    let a = env.path("dest-home/mirror/docs/a.txt");
    let song = env.path("dest-home/mirror/music/song.mp3");
    fs::write(&song, "longer content").unwrap();
    set_mtime(&song, 1_600_000_000);
    set_mtime(&a, 1_600_000_001);
    env.write("dest-home/mirror/stray.txt", "?");
    let (code, out, _) = env.run(&["verify", "home"]);
    assert_eq!(code, 1, "{out}");
    for (path, what) in [
        (song, "size 14 (recorded 5)"),
        (
            a,
            "mtime 2020-09-13T12:26:41Z (recorded 2020-09-13T12:26:40Z)",
        ),
        (env.path("dest-home/mirror/stray.txt"), "not in the index"),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(path.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{} not reported:\n{out}", path.display()));
        assert!(line.contains(what), "{line}");
    }
}

#[test]
fn verify_catches_a_missing_increment_file() {
    let env = setup();
    let increment = run(&env).unwrap();
    let gone = env.path(&format!("dest-home/{increment}/track/docs/link"));
    fs::remove_file(&gone).unwrap();
    let (code, json) = env.run_json(&["verify", "home"]);
    assert_eq!(code, 1);
    assert_eq!(json["ok"], false);
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{json:#}");
    assert_eq!(problems[0]["path"], gone.to_str().unwrap());
    assert!(problems[0]["message"].as_str().unwrap().contains("missing"));
}

#[test]
fn verify_deep_catches_same_size_same_mtime_corruption() {
    let env = setup();
    run(&env);
    let a = env.path("dest-home/mirror/docs/a.txt");
    // Rewrite in place (bit rot), keeping size and mtime.
    fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"ALPHA"))
        .unwrap();
    set_mtime(&a, 1_600_000_000);
    let (code, out, _) = env.run(&["verify", "home"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = env.run(&["verify", "home", "--deep"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(a.to_str().unwrap()) && l.contains("content differs")),
        "{out}"
    );
}
