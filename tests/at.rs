//! `--at`: every form names the run a person means, in the machine's zone.

mod common;

use common::Env;

/// A zone three hours east of UTC all year (a POSIX rule, as TZ allows).
const TZ: &str = "XST-3";

fn setup() -> (Env, String) {
    let env = Env::new();
    env.write("src-home/docs/a.txt", "first");
    env.simple_job("home", r#""track_dirs": ["docs"]"#);
    let (code, v) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{v:#}");
    let name = v["jobs"][0]["increment"].as_str().unwrap().to_string();
    (env, name)
}

/// Restore at `at` into a fresh folder: (exit code, the point restored or
/// the error).
fn restore_at(env: &Env, at: &str) -> (i32, String) {
    let to = env.path(&format!("r-{}", at.replace([' ', ':', '+', '/'], "_")));
    let out = env
        .strata()
        .env("TZ", TZ)
        .args([
            "--json",
            "restore",
            "home",
            "--to",
            to.to_str().unwrap(),
            "--at",
            at,
        ])
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    if code == 0 {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (0, v["restore"]["point"].as_str().unwrap().to_string())
    } else {
        (code, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn local_times_as_list_prints_them_and_relative_forms() {
    let (env, first) = setup();
    let utc =
        chrono::NaiveDateTime::parse_from_str(&first["backup_".len()..], "%Y%m%d_%H%M%S").unwrap();
    let local = utc + chrono::Duration::hours(3);
    for at in [
        local.format("%Y-%m-%d %H:%M:%S").to_string(),
        local.format("%Y-%m-%dT%H:%M:%S").to_string(),
        local.format("%Y-%m-%d %H:%M").to_string(),
        local.format("%Y-%m-%d").to_string(),
        // What `list` and `history` print: local, with the offset.
        local.format("%Y-%m-%d %H:%M:%S +03:00").to_string(),
        utc.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        first.clone(),
        "-0".to_string(),
    ] {
        assert_eq!(restore_at(&env, &at), (0, first.clone()), "--at {at}");
    }
    // The minute before the run's minute names no run.
    let before = (local - chrono::Duration::minutes(1))
        .format("%Y-%m-%d %H:%M")
        .to_string();
    let (code, err) = restore_at(&env, &before);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("the first is {first}")), "{err}");
    let (code, err) = restore_at(&env, "1d");
    assert_eq!(code, 1, "{err}");
    let (code, err) = restore_at(&env, "-1");
    assert_eq!(code, 1);
    assert!(err.contains("past the only increment"), "{err}");
    // A second run: -1 is the first again.
    env.write("src-home/docs/a.txt", "second");
    let (code, v) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(restore_at(&env, "-1"), (0, first.clone()));
    // A form that names nothing: a usage error listing the forms.
    let (code, err) = restore_at(&env, "last week");
    assert_eq!(code, 2);
    for form in [
        "backup_",
        "2026-03-04 05:06",
        "RFC 3339",
        "-1",
        "2d",
        "latest",
    ] {
        assert!(err.contains(form), "{form}: {err}");
    }
}

#[test]
fn history_shows_local_seconds_like_list() {
    let (env, first) = setup();
    let utc =
        chrono::NaiveDateTime::parse_from_str(&first["backup_".len()..], "%Y%m%d_%H%M%S").unwrap();
    let shown = (utc + chrono::Duration::hours(3))
        .format("%Y-%m-%d %H:%M:%S +03:00")
        .to_string();
    let out = env
        .strata()
        .env("TZ", TZ)
        .args(["history", "home"])
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains(&shown), "{shown} in {out}");
    let out = env
        .strata()
        .env("TZ", TZ)
        .args(["history", "home", "docs/a.txt"])
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains(&shown), "{shown} in {out}");
    assert!(out.contains("new  file  5 B  0644"), "{out}");
}

#[test]
fn an_include_only_file_says_why_it_has_no_versions() {
    let env = Env::new();
    env.write("src-home/Pictures/x.jpg", "jpeg");
    env.write("src-home/docs/a.txt", "a");
    env.simple_job(
        "home",
        r#""track_dirs": ["docs"], "include_dirs": ["Pictures"]"#,
    );
    let (code, _) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    let (code, _, err) = env.run(&["history", "home", "Pictures/x.jpg"]);
    assert_eq!(code, 1);
    assert!(err.contains("an include rule selects it"), "{err}");
}
