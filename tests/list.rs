//! `strata list`: jobs, schedules, next and last runs, as text and JSON.

mod common;

use common::Env;

fn setup() -> Env {
    let env = Env::new();
    env.write("src-home/a.txt", "a");
    env.write("src-photos/p.jpg", "p");
    env.simple_job("home", r#""track_dirs": ["."], "schedule": "30 4 * * 1""#);
    env.simple_job("photos", r#""include_dirs": ["."], "enabled": false"#);
    env
}

#[test]
fn lists_jobs_with_schedule_next_and_last_run() {
    let env = setup();
    let (code, out, err) = env.run(&["list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "job",
            "enabled",
            "schedule",
            "next run",
            "last run",
            "status",
            "destination"
        ]
    );
    // Before any run: home waits for Monday 04:30, photos has no schedule.
    assert!(lines[1].starts_with("home "), "{out}");
    assert!(lines[1].contains(" yes "), "{out}");
    assert!(lines[1].contains("30 4 * * 1"), "{out}");
    assert!(lines[1].contains("04:30:00"), "{out}");
    assert!(lines[1].contains(" never "), "{out}");
    assert!(lines[1].ends_with("dest-home"), "{out}");
    assert!(lines[2].starts_with("photos "), "{out}");
    assert!(lines[2].contains(" no "), "{out}");

    // After a run by hand, list shows it as the last run.
    let (code, _, err) = env.run(&["run", "home"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = env.run(&["list"]);
    let home = out.lines().nth(1).unwrap();
    assert!(home.contains(" success "), "{out}");
    assert!(!home.contains(" never "), "{out}");
}

#[test]
fn json_has_rfc3339_times_and_the_last_run_record() {
    let env = setup();
    let (code, _, err) = env.run(&["run", "home"]);
    assert_eq!(code, 0, "{err}");
    let (code, value) = env.run_json(&["list"]);
    assert_eq!(code, 0);
    let jobs = value.as_array().expect("an array of jobs");
    assert_eq!(jobs.len(), 2);

    let home = &jobs[0];
    assert_eq!(home["name"], "home");
    assert_eq!(home["enabled"], true);
    assert_eq!(home["schedule"], "30 4 * * 1");
    let next = chrono::DateTime::parse_from_rfc3339(home["next_run"].as_str().unwrap())
        .expect("next_run is RFC 3339");
    assert!(next > chrono::Utc::now());
    let last = &home["last_run"];
    assert_eq!(last["status"], "success");
    assert_eq!(last["stats"]["new"], 1);
    let start = chrono::DateTime::parse_from_rfc3339(last["start"].as_str().unwrap())
        .expect("start is RFC 3339");
    assert!(start <= next);
    assert!(last["increment"].as_str().unwrap().starts_with("backup_"));
    assert!(home["destination"].as_str().unwrap().ends_with("dest-home"));

    let photos = &jobs[1];
    assert_eq!(photos["name"], "photos");
    assert_eq!(photos["enabled"], false);
    assert_eq!(photos["schedule"], serde_json::Value::Null);
    assert_eq!(photos["next_run"], serde_json::Value::Null);
    assert_eq!(photos["last_run"], serde_json::Value::Null);
}

#[test]
fn invalid_job_files_go_to_stderr_and_the_valid_ones_are_listed() {
    let env = setup();
    env.job(
        "broken",
        r#"{"source": "../src", "destination": "../d", "schedule": "0 0 * * 8"}"#,
    );
    let (code, out, err) = env.run(&["list"]);
    assert_eq!(code, 1);
    assert!(err.contains("broken.json:1:"), "{err}");
    assert!(err.contains("dow: 8 is out of range 0-7"), "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(!out.contains("broken"), "{out}");
}

#[test]
fn an_unreadable_jobs_dir_is_exit_2() {
    let env = Env::new();
    std::fs::remove_dir(env.jobs()).unwrap();
    let (code, _, err) = env.run(&["list"]);
    assert_eq!(code, 2, "{err}");
}
