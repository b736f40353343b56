//! `strata export`: exported schedules fire when strata's own schedule
//! module says the job fires (systemd checked by `systemd-analyze
//! calendar`), the YAML and HCL parse and hold the fields, and a job the
//! engine would fire otherwise is refused with nothing written.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use common::Env;
use serde_json::Value;
use strata::schedule::Schedule;
use strata::tz::Zone;

/// The SPEC §1.1 cases and the DST edges, as (job name, schedule).
const CASES: &[(&str, &str)] = &[
    ("monday", "30 4 * * 1"),
    ("13th-or-friday", "0 0 13 * 5"),
    ("every-10", "*/10 * * * *"),
    ("range-step", "0 9-17/2 * * *"),
    ("month-names", "0 0 1 JAN,Jul *"),
    ("sat-sun", "0 12 * * SAT-SUN"),
    ("fri-mon", "0 12 * * FRI-MON"),
    ("hours-wrap", "0 22-2 * * *"),
    ("sunday-0-7", "15 3 * * 0,7"),
    ("daily", "@daily"),
    ("hourly", "@hourly"),
    ("weekly", "@weekly"),
    ("monthly", "@monthly"),
    ("yearly", "@yearly"),
    ("fixed-0230", "30 2 * * *"),
    ("fixed-list", "0,30 2 * * *"),
    ("fixed-every-hour", "0 0-23 * * *"),
    ("wildcard-hour-2", "* 2 * * *"),
    ("march-29", "30 2 29 3 *"),
    ("october-0230", "30 2 * 10 *"),
    ("march-wildcard", "*/15 2 * 3 *"),
    ("odd-fridays", "0 0 */2 * 5"),
    ("dom-1-31", "0 0 1-31 * 5"),
    ("seconds-wildcard", "30 */7 2 * * *"),
    ("seconds-fixed", "*/20 15 4 * * *"),
    ("years", "*/20 0 0 1 1 * 2040-2042"),
];

/// What systemd refuses in Europe/Berlin, and the words of the reason.
const SYSTEMD_BERLIN_REFUSED: &[(&str, &str)] = &[
    ("hours-wrap", "fixed-time job"),
    ("fixed-0230", "fixed-time job"),
    ("fixed-list", "fixed-time job"),
    ("march-29", "fixed-time job"),
    ("example-home", "fixed-time job"),
    ("every-10", "wildcard job"),
    ("hourly", "wildcard job"),
    ("wildcard-hour-2", "wildcard job"),
    ("seconds-wildcard", "wildcard job"),
];

/// Every case plus the example jobs of the repository's `jobs.d/`.
fn cases() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = CASES
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs.d");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in files {
        let job: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        if let Some(schedule) = job["schedule"].as_str() {
            let stem = file.file_stem().unwrap().to_string_lossy();
            all.push((format!("example-{stem}"), schedule.to_string()));
        }
    }
    assert!(all.iter().any(|(n, _)| n == "example-home"));
    all
}

fn setup() -> Env {
    let env = Env::new();
    env.write("src/a.txt", "a");
    for (name, schedule) in cases() {
        env.job(
            &name,
            &serde_json::json!({
                "source": "../src",
                "destination": format!("../dest-{name}"),
                "track_dirs": ["."],
                "schedule": schedule,
            })
            .to_string(),
        );
    }
    env
}

/// `strata export ENGINE NAME --json` with the machine's zone `tz`.
fn export(env: &Env, tz: &str, engine: &str, args: &[&str]) -> (i32, Value, String) {
    let out = env
        .std_command()
        .env("TZ", tz)
        .args(["--json", "export", engine])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// The `OnCalendar=` values of the exported timer of `name`, or the reason
/// it was refused.
fn on_calendar(env: &Env, tz: &str, name: &str, extra: &[&str]) -> Result<Vec<String>, String> {
    let mut args = vec![name];
    args.extend_from_slice(extra);
    let (code, json, stderr) = export(env, tz, "systemd", &args);
    if code != 0 {
        assert_eq!(code, 1, "{stderr}");
        assert_eq!(json["files"], serde_json::json!([]), "{json}");
        let refused = json["refused"].as_array().unwrap();
        assert_eq!(refused.len(), 1, "{json}");
        assert_eq!(refused[0]["job"], name);
        assert!(
            stderr.contains(&format!("{name}: cannot export to systemd: ")),
            "{stderr}"
        );
        return Err(refused[0]["reason"].as_str().unwrap().to_string());
    }
    let files = json["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            format!("strata-{name}.service"),
            format!("strata-{name}.timer")
        ],
        "{json}"
    );
    let timer = files[1]["contents"].as_str().unwrap();
    assert!(timer.contains("\nPersistent=true\n"), "{timer}");
    assert!(
        timer.contains(&format!("\nUnit=strata-{name}.service\n")),
        "{timer}"
    );
    let service = files[0]["contents"].as_str().unwrap();
    assert!(service.contains("\nType=oneshot\n"), "{service}");
    assert!(
        service.contains(&format!(" run {name}\n")) && service.contains("--jobs-dir /"),
        "{service}"
    );
    Ok(timer
        .lines()
        .filter_map(|l| l.strip_prefix("OnCalendar="))
        .map(str::to_string)
        .collect())
}

/// Whether `systemd-analyze calendar --base-time` can be used; prints why not.
fn systemd_analyze() -> bool {
    let ok = Command::new("systemd-analyze")
        .args([
            "calendar",
            "--iterations=1",
            "--base-time=2026-01-01 00:00:00 UTC",
            "*-*-* 00:00:00",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "skipping: systemd-analyze with `calendar --base-time` is not installed \
             (Debian's systemd package has it; scripts/test-deps.sh installs it)"
        );
    }
    ok
}

/// The next `n` elapses of `spec` after `base`, as systemd computes them
/// with `TZ=tz`.
fn systemd_times(spec: &str, tz: &str, base: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let out = Command::new("systemd-analyze")
        .env("TZ", tz)
        .args([
            "calendar".to_string(),
            format!("--iterations={n}"),
            format!("--base-time={} UTC", base.format("%Y-%m-%d %H:%M:%S")),
            spec.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{spec}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each elapse is a line "Next elapse: Mon 2026-03-30 02:30:00 CEST" or
    // "Iter. #2: …", followed by "(in UTC): Mon 2026-03-30 00:30:00 UTC"
    // unless the first one is in UTC already.
    let mut times: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(utc) = line.strip_prefix("(in UTC): ") {
            if let Some(last) = times.last_mut() {
                *last = utc.to_string();
            }
        } else if line.starts_with("Next elapse: ") || line.starts_with("Iter. #") {
            if line.ends_with(": never") {
                break;
            }
            times.push(line.split_once(": ").unwrap().1.to_string());
        }
    }
    times
        .iter()
        .map(|t| {
            let t = t.split_once(' ').unwrap().1;
            NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S UTC")
                .unwrap_or_else(|e| panic!("{t}: {e}\n{text}"))
                .and_utc()
        })
        .collect()
}

/// The first `n` fire times of all the timer's lines together.
fn timer_times(lines: &[String], tz: &str, base: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut all: Vec<DateTime<Utc>> = lines
        .iter()
        .flat_map(|l| systemd_times(l, tz, base, n))
        .collect();
    all.sort();
    all.dedup();
    all.truncate(n);
    all
}

/// strata's fire times after `base` (what `list` and the daemon use): the
/// first `n`, with `n` enough to cover a week past `base` (at least 3).
fn strata_times(schedule: &str, zone: &Zone, base: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let schedule = Schedule::parse(schedule).unwrap();
    let week_end = base + TimeDelta::days(8);
    let mut times = Vec::new();
    let mut t = base;
    while let Some(next) = schedule.next_after(&t, zone) {
        if (next > week_end && times.len() >= 3) || times.len() >= 2500 {
            break;
        }
        times.push(next);
        t = next;
    }
    times
}

fn zone(tz: &str) -> Zone {
    if tz == "UTC" {
        Zone::utc()
    } else {
        Zone::named(tz).unwrap()
    }
}

/// Three days before each of the zone's first two changes of 2026 (a week
/// that spans the change), or two fixed instants in a zone without any.
fn bases(zone: &Zone) -> Vec<DateTime<Utc>> {
    let mut t: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut out = Vec::new();
    for _ in 0..2 {
        match zone.next_transition(&t) {
            Some(change) => {
                out.push(change - TimeDelta::days(3));
                t = change;
            }
            None => {
                return vec![
                    "2026-03-26T00:00:00Z".parse().unwrap(),
                    "2026-10-22T00:00:00Z".parse().unwrap(),
                ];
            }
        }
    }
    out
}

fn show(times: &[DateTime<Utc>], zone: &Zone) -> String {
    times
        .iter()
        .map(|t| zone.format(t))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first place where two lists of fire times part.
fn first_difference(a: &[DateTime<Utc>], b: &[DateTime<Utc>], zone: &Zone) -> Option<String> {
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))?;
    let at = |l: &[DateTime<Utc>]| l.get(i).map(|t| zone.format(t)).unwrap_or("-".into());
    Some(format!("#{i}: strata {} / systemd {}", at(a), at(b)))
}

/// Every translated schedule fires at strata's times, under `TZ=tz` with
/// the machine's zone; returns the refused jobs with their reasons.
fn check_systemd_zone(env: &Env, tz: &str) -> BTreeMap<String, String> {
    let z = zone(tz);
    let mut refused = BTreeMap::new();
    for (name, schedule) in cases() {
        let lines = match on_calendar(env, tz, &name, &[]) {
            Ok(lines) => lines,
            Err(reason) => {
                refused.insert(name, reason);
                continue;
            }
        };
        assert!(!lines.is_empty(), "{name}");
        for base in bases(&z) {
            let want = strata_times(&schedule, &z, base);
            let got = timer_times(&lines, tz, base, want.len());
            assert!(
                want == got,
                "{name} `{schedule}` as {lines:?} under TZ={tz} from {base}: {}\n\
                 strata:\n{}\nsystemd:\n{}",
                first_difference(&want, &got, &z).unwrap_or_default(),
                show(&want, &z),
                show(&got, &z)
            );
        }
    }
    refused
}

#[test]
fn systemd_timers_fire_at_strata_times_in_utc() {
    if !systemd_analyze() {
        return;
    }
    let env = setup();
    let refused = check_systemd_zone(&env, "UTC");
    assert!(refused.is_empty(), "{refused:#?}");
    // The dom-or-dow rule: two lines, one per day field.
    assert_eq!(
        on_calendar(&env, "UTC", "13th-or-friday", &[]).unwrap(),
        ["*-*-13 00:00:00", "Fri *-*-* 00:00:00"]
    );
    assert_eq!(
        on_calendar(&env, "UTC", "example-home", &[]).unwrap(),
        ["*-*-* 02:30:00"]
    );
}

#[test]
fn systemd_timers_in_berlin_fire_at_strata_times_or_are_refused_where_systemd_differs() {
    if !systemd_analyze() {
        return;
    }
    let env = setup();
    let refused = check_systemd_zone(&env, "Europe/Berlin");
    let expected: BTreeMap<&str, &str> = SYSTEMD_BERLIN_REFUSED.iter().copied().collect();
    assert_eq!(
        refused.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>(),
        "{refused:#?}"
    );
    let berlin = zone("Europe/Berlin");
    let schedules: BTreeMap<String, String> = cases().into_iter().collect();
    for (name, reason) in &refused {
        assert!(reason.contains(expected[name.as_str()]), "{name}: {reason}");
        assert!(reason.contains("Europe/Berlin"), "{name}: {reason}");
        assert!(reason.contains("the clocks"), "{name}: {reason}");
        // The refusal is needed: the schedule written for a zone without
        // DST (what a translation that ignored DST would write) fires in
        // Berlin's DST weeks at other times than cron(8) would.
        let lines = on_calendar(&env, "UTC", name, &[]).unwrap();
        let schedule = &schedules[name];
        let differs = bases(&berlin).into_iter().any(|base| {
            let want = strata_times(schedule, &berlin, base);
            let got = timer_times(&lines, "Europe/Berlin", base, want.len());
            want != got
        });
        assert!(
            differs,
            "{name} `{schedule}` was refused but systemd agrees"
        );
    }
}

#[test]
fn systemd_timers_in_zones_with_odd_changes() {
    // Lord Howe Island changes by half an hour, Santiago at midnight:
    // whatever is not refused fires at strata's times there too.
    if !systemd_analyze() {
        return;
    }
    let env = setup();
    for tz in [
        "Australia/Lord_Howe",
        "America/Santiago",
        "America/New_York",
    ] {
        check_systemd_zone(&env, tz);
    }
}

#[test]
fn systemd_with_a_named_zone_writes_it_into_each_line() {
    if !systemd_analyze() {
        return;
    }
    let env = setup();
    let lines = on_calendar(
        &env,
        "UTC",
        "13th-or-friday",
        &["--time-zone", "Europe/Berlin"],
    )
    .unwrap();
    assert_eq!(
        lines,
        [
            "*-*-13 00:00:00 Europe/Berlin",
            "Fri *-*-* 00:00:00 Europe/Berlin"
        ]
    );
    // Read on a UTC machine, the lines fire at Berlin's midnights.
    let berlin = zone("Europe/Berlin");
    for base in bases(&berlin) {
        let want = strata_times("0 0 13 * 5", &berlin, base);
        assert_eq!(timer_times(&lines, "UTC", base, want.len()), want);
    }
    // The DST check follows the named zone, not the machine's.
    let reason =
        on_calendar(&env, "UTC", "fixed-0230", &["--time-zone", "Europe/Berlin"]).unwrap_err();
    assert!(reason.contains("Europe/Berlin"), "{reason}");
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !verify {
        eprintln!("skipping: systemd-analyze verify is not installed");
        return;
    }
    let env = Env::new();
    // A jobs directory whose path needs quoting in a unit file.
    let jobs = env.path("my jobs 100%");
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::write(
        jobs.join("home.json"),
        r#"{"source": "../src dir", "destination": "../dest 50%", "track_dirs": ["."], "schedule": "0 0 13 * 5"}"#,
    )
    .unwrap();
    let out_dir = env.path("units");
    let strata = std::path::PathBuf::from(env!("CARGO_BIN_EXE_strata"));
    let out = Command::new(&strata)
        .current_dir(env.root())
        .env("TZ", "UTC")
        .env("STRATA_STATE_DIR", env.state_dir())
        .arg("--jobs-dir")
        .arg(&jobs)
        .args(["export", "systemd", "--dir"])
        .arg(&out_dir)
        .arg("--strata-path")
        .arg(&strata)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let service = out_dir.join("strata-home.service");
    let timer = out_dir.join("strata-home.timer");
    let text = std::fs::read_to_string(&service).unwrap();
    assert!(
        text.contains(&format!(
            "ExecStart={} --jobs-dir \"{}\" run home\n",
            strata.display(),
            jobs.display().to_string().replace('%', "%%")
        )),
        "{text}"
    );
    let verified = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&service)
        .arg(&timer)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stderr).to_string()
        + &String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && said.trim().is_empty(),
        "{said}\n{text}"
    );
}

/// The Kubernetes schedules: robfig/cron's fields for what it can say.
#[test]
fn kubernetes_schedules_and_refusals() {
    let env = setup();
    let schedule = |tz: &str, name: &str| -> Result<String, String> {
        let (code, json, stderr) = export(&env, tz, "kubernetes", &[name]);
        if code != 0 {
            assert_eq!(code, 1, "{stderr}");
            return Err(json["refused"][0]["reason"].as_str().unwrap().to_string());
        }
        let docs = yaml_docs(json["files"][0]["contents"].as_str().unwrap());
        Ok(docs[1]["spec"]["schedule"].as_str().unwrap().to_string())
    };
    let utc: BTreeMap<String, Result<String, String>> = cases()
        .into_iter()
        .map(|(name, _)| {
            let s = schedule("UTC", &name);
            (name, s)
        })
        .collect();
    let ok = |name: &str| utc[name].clone().unwrap_or_else(|e| panic!("{name}: {e}"));
    let err = |name: &str| utc[name].clone().unwrap_err();
    assert_eq!(ok("monday"), "30 4 * * 1");
    assert_eq!(ok("13th-or-friday"), "0 0 13 * 5");
    assert_eq!(ok("every-10"), "*/10 * * * *");
    assert_eq!(ok("range-step"), "0 9-17/2 * * *");
    assert_eq!(ok("month-names"), "0 0 1 1,7 *");
    assert_eq!(ok("sat-sun"), "0 12 * * 0,6");
    assert_eq!(ok("fri-mon"), "0 12 * * 0,1,5,6");
    assert_eq!(ok("hours-wrap"), "0 0-2,22,23 * * *");
    assert_eq!(ok("sunday-0-7"), "15 3 * * 0");
    assert_eq!(ok("daily"), "0 0 * * *");
    assert_eq!(ok("hourly"), "0 * * * *");
    assert_eq!(ok("dom-1-31"), "0 0 * * *");
    assert_eq!(ok("example-projects"), "*/15 9-18 * * 1-5");
    assert!(err("odd-fridays").contains("ors two restricted day fields"));
    assert!(err("seconds-fixed").contains("seconds"));
    assert!(err("years").contains("seconds"));

    // In Berlin, fixed-time jobs that meet a DST change are refused;
    // wildcard jobs follow the wall clock there as robfig/cron does.
    for name in [
        "fixed-0230",
        "fixed-list",
        "hours-wrap",
        "march-29",
        "october-0230",
    ] {
        let reason = schedule("Europe/Berlin", name).unwrap_err();
        assert!(reason.contains("fixed-time job"), "{name}: {reason}");
        assert!(reason.contains("robfig/cron"), "{name}: {reason}");
    }
    for name in [
        "every-10",
        "hourly",
        "wildcard-hour-2",
        "march-wildcard",
        "monday",
    ] {
        assert!(schedule("Europe/Berlin", name).is_ok(), "{name}");
    }
}

fn yaml_docs(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{e}\n{text}")))
        .collect()
}

#[test]
fn kubernetes_yaml_parses_and_holds_the_fields() {
    let env = Env::new();
    env.write("src/a.txt", "a");
    env.job(
        "home",
        r#"{"$schema": "../schemas/job.schema.json", "source": "../src", "destination": "../backup/home", "track_dirs": ["."], "schedule": "30 4 * * *", "retention": {"keep_last": 3}}"#,
    );
    env.job(
        "Projects_src",
        r#"{"source": "../src", "destination": "../backup/projects", "include_dirs": ["."], "schedule": "*/15 9-18 * * MON-FRI", "enabled": false}"#,
    );
    let root = std::fs::canonicalize(env.root()).unwrap();
    let out = env
        .std_command()
        .env("TZ", "Europe/Berlin")
        .args([
            "--metrics-file",
            "/var/lib/node_exporter/textfile/strata.prom",
        ])
        .args(["export", "kubernetes", "home", "Projects_src"])
        .args([
            "--node",
            "Backup-Node",
            "--image",
            "registry.example/strata:1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One YAML stream: ConfigMap, CronJob, ConfigMap, CronJob.
    let docs = yaml_docs(&stdout);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "CronJob", "ConfigMap", "CronJob"],
        "{stdout}"
    );
    assert!(stdout.contains("# ==> strata-home.yaml <=="), "{stdout}");

    let (config_map, cron_job) = (&docs[0], &docs[1]);
    assert_eq!(config_map["apiVersion"], "v1");
    assert_eq!(config_map["metadata"]["name"], "strata-home");
    let job_file: Value =
        serde_json::from_str(config_map["data"]["home.json"].as_str().unwrap()).unwrap();
    assert_eq!(job_file["name"], "home");
    assert_eq!(job_file["source"], root.join("src").to_str().unwrap());
    assert_eq!(
        job_file["destination"],
        root.join("backup/home").to_str().unwrap()
    );
    assert_eq!(job_file["retention"]["keep_last"], 3);
    assert!(job_file.get("$schema").is_none(), "{job_file}");
    // The job file in the ConfigMap is one strata reads as the same job.
    let check = env.path("check.d");
    std::fs::create_dir_all(&check).unwrap();
    std::fs::write(check.join("home.json"), job_file.to_string()).unwrap();
    let (code, out, err) = env.run(&["validate", check.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");

    assert_eq!(cron_job["apiVersion"], "batch/v1");
    let spec = &cron_job["spec"];
    assert_eq!(spec["schedule"], "30 4 * * *");
    assert_eq!(spec["timeZone"], "Europe/Berlin");
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    // The shortest interval between two runs: 23 hours, across the night
    // the clocks jump forward.
    assert_eq!(spec["startingDeadlineSeconds"], 23 * 3600);
    assert_eq!(spec["suspend"], false);
    let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(spec["jobTemplate"]["spec"]["backoffLimit"], 0);
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/hostname"], "backup-node");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/strata:1");
    assert_eq!(
        container["command"],
        serde_json::json!([
            "strata",
            "--jobs-dir",
            "/etc/strata/jobs.d",
            "--metrics-file",
            "/var/lib/node_exporter/textfile/strata-home.prom",
            "run",
            "home"
        ])
    );
    assert!(container.get("resources").is_none());
    let mounts: BTreeMap<&str, &Value> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m))
        .collect();
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(mounts["jobs"]["mountPath"], "/etc/strata/jobs.d");
    assert_eq!(volumes["jobs"]["configMap"]["name"], "strata-home");
    assert_eq!(mounts["source"]["readOnly"], true);
    assert_eq!(
        mounts["source"]["mountPath"],
        root.join("src").to_str().unwrap()
    );
    assert_eq!(
        volumes["source"]["hostPath"]["path"],
        root.join("src").to_str().unwrap()
    );
    // The destination's parent: strata creates the destination itself.
    assert_eq!(
        volumes["destination"]["hostPath"]["path"],
        root.join("backup").to_str().unwrap()
    );
    assert!(mounts["destination"].get("readOnly").is_none());
    assert_eq!(volumes["state"]["hostPath"]["path"], "/var/lib/strata");
    // Each pod its own metrics file, in the directory node_exporter reads.
    assert_eq!(
        volumes["metrics"]["hostPath"]["path"],
        "/var/lib/node_exporter/textfile"
    );

    // The second job: a Kubernetes name, suspended as it is disabled.
    assert_eq!(docs[3]["metadata"]["name"], "strata-projects-src");
    assert_eq!(docs[3]["spec"]["schedule"], "*/15 9-18 * * 1-5");
    assert_eq!(docs[3]["spec"]["suspend"], true);
    assert_eq!(docs[3]["spec"]["startingDeadlineSeconds"], 900);
    assert!(docs[2]["data"]["Projects_src.json"].is_string());
}

#[test]
fn kubernetes_needs_an_iana_zone() {
    let env = Env::new();
    env.simple_job("home", r#""track_dirs": ["."], "schedule": "0 12 * * *""#);
    let out = env
        .std_command()
        .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
        .args(["export", "kubernetes"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("home: cannot export to kubernetes") && err.contains("--time-zone"),
        "{err}"
    );
    let out = env
        .std_command()
        .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
        .args(["export", "kubernetes", "--time-zone", "Europe/Paris"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("timeZone: \"Europe/Paris\""));
}

#[test]
fn nomad_hcl_parses_and_holds_the_fields() {
    let env = Env::new();
    env.job(
        "home",
        r#"{"source": "../src", "destination": "../backup/home", "track_dirs": ["."], "schedule": "30 2 * * *"}"#,
    );
    env.job(
        "ticks",
        r#"{"source": "../src", "destination": "../backup/ticks", "track_dirs": ["."], "schedule": "*/20 15 4 * * * 2040-2042", "enabled": false}"#,
    );
    let metrics = env.path("textfile/strata.prom");
    let out = env
        .std_command()
        .env("TZ", "UTC")
        .arg("--metrics-file")
        .arg(&metrics)
        .args([
            "--json", "export", "nomad", "home", "ticks", "--node", "host1",
        ])
        .args(["--strata-path", "/usr/local/bin/strata"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = json["files"].as_array().unwrap();
    assert_eq!(files[0]["name"], "strata-home.nomad.hcl");
    let jobs_dir = std::fs::canonicalize(env.jobs()).unwrap();
    let parse = |i: usize| -> Value {
        let text = files[i]["contents"].as_str().unwrap();
        hcl::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    let home = &parse(0)["job"]["strata-home"];
    assert_eq!(home["type"], "batch");
    let periodic = &home["periodic"];
    assert_eq!(periodic["crons"], serde_json::json!(["30 2 * * *"]));
    assert_eq!(periodic["prohibit_overlap"], true);
    assert_eq!(periodic["time_zone"], "UTC");
    assert_eq!(periodic["enabled"], true);
    assert_eq!(home["constraint"]["value"], "host1");
    assert_eq!(home["constraint"]["attribute"], "${node.unique.name}");
    let task = &home["group"]["strata"]["task"]["strata"];
    assert_eq!(task["driver"], "raw_exec");
    assert_eq!(task["config"]["command"], "/usr/local/bin/strata");
    assert_eq!(
        task["config"]["args"],
        serde_json::json!([
            "--jobs-dir",
            jobs_dir.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
            "run",
            "home"
        ])
    );
    assert_eq!(home["group"]["strata"]["restart"]["attempts"], 0);
    // Seconds and years: cronexpr's seven fields; a disabled job is off.
    let ticks = &parse(1)["job"]["strata-ticks"];
    assert_eq!(
        ticks["periodic"]["crons"],
        serde_json::json!(["*/20 15 4 * * * 2040-2042"])
    );
    assert_eq!(ticks["periodic"]["enabled"], false);
}

#[test]
fn refusals_name_the_job_and_write_nothing() {
    let env = Env::new();
    env.simple_job("good", r#""track_dirs": ["."], "schedule": "0 12 * * *""#);
    env.simple_job("home", r#""track_dirs": ["."], "schedule": "30 2 * * *""#);
    env.simple_job("manual", r#""track_dirs": ["."]"#);
    let dir = env.path("units");
    let run = |tz: &str, args: &[&str]| {
        let out = env
            .std_command()
            .env("TZ", tz)
            .args(["export", "systemd", "--dir"])
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // home meets Berlin's spring-forward gap: refused, and good's units are
    // not written either.
    let (code, stdout, stderr) = run("Europe/Berlin", &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(
            "strata: export: home: cannot export to systemd: `30 2 * * *` is a fixed-time job"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("skipped manual: no schedule"), "{stderr}");
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none());

    // A job named without a schedule is refused; an unknown name is a
    // usage error.
    let (code, _, stderr) = run("UTC", &["manual"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("manual: cannot export to systemd: it has no schedule"),
        "{stderr}"
    );
    let (code, _, stderr) = run("UTC", &["nosuch"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none());

    // In UTC everything goes, and a later refusal leaves those files alone.
    let (code, stdout, stderr) = run("UTC", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "strata-good.service",
            "strata-good.timer",
            "strata-home.service",
            "strata-home.timer"
        ]
    );
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let before = std::fs::read_to_string(dir.join("strata-home.timer")).unwrap();
    env.simple_job("good", r#""track_dirs": ["."], "schedule": "0 12 * * 1""#);
    let (code, _, _) = run("Europe/Berlin", &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        std::fs::read_to_string(dir.join("strata-home.timer")).unwrap(),
        before
    );
    assert!(
        std::fs::read_to_string(dir.join("strata-good.timer"))
            .unwrap()
            .contains("OnCalendar=*-*-* 12:00:00\n")
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
}

#[test]
fn a_broken_job_file_stops_the_export() {
    let env = Env::new();
    env.simple_job("good", r#""track_dirs": ["."], "schedule": "0 12 * * *""#);
    env.simple_job("bad", r#""track_dirs": ["."], "schedule": "0 12 * * 8""#);
    let (code, out, err) = env.run(&["export", "systemd"]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("dow: 8 is out of range 0-7"), "{err}");
}

#[test]
fn stdout_separates_the_files() {
    let env = Env::new();
    env.simple_job("a", r#""track_dirs": ["."], "schedule": "0 12 * * *""#);
    env.simple_job("b", r#""track_dirs": ["."], "schedule": "0 13 * * *""#);
    let (code, out, err) = env.run(&["export", "systemd"]);
    assert_eq!(code, 0, "{err}");
    let heads: Vec<&str> = out.lines().filter(|l| l.starts_with("# ==> ")).collect();
    assert_eq!(
        heads,
        [
            "# ==> strata-a.service <==",
            "# ==> strata-a.timer <==",
            "# ==> strata-b.service <==",
            "# ==> strata-b.timer <=="
        ]
    );
}

#[test]
fn an_object_store_destination_is_neither_mounted_nor_waited_for_as_a_path() {
    let env = Env::new();
    env.write("src/a.txt", "a");
    env.job(
        "cloud",
        r#"{"source": "../src", "destination": "s3://bkt/home", "s3": {"endpoint": "http://127.0.0.1:9000"}, "track_dirs": ["."], "schedule": "0 3 * * *"}"#,
    );
    let run = |engine: &str, tz: &str| {
        let (code, json, stderr) = export(&env, tz, engine, &["cloud"]);
        assert_eq!(code, 0, "{stderr}");
        let files = json["files"].as_array().expect("the files written");
        files
            .iter()
            .map(|f| f["contents"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let source = std::fs::canonicalize(env.path("src")).unwrap();
    let units = run("systemd", "UTC");
    let requires: Vec<&str> = units
        .lines()
        .filter(|l| l.starts_with("RequiresMountsFor="))
        .collect();
    assert_eq!(
        requires,
        [format!("RequiresMountsFor={}", source.display())],
        "{units}"
    );
    assert!(
        units.lines().any(|l| l == "Wants=network-online.target"),
        "{units}"
    );
    let yaml = run("kubernetes", "Europe/Berlin");
    let docs = yaml_docs(&yaml);
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").expect(&yaml);
    let volumes = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect(&yaml);
    let paths: Vec<&str> = volumes
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    assert!(paths.contains(&source.to_str().unwrap()), "{yaml}");
    assert!(
        !paths.iter().any(|p| p.contains("s3:") || p.contains("bkt")),
        "{yaml}"
    );
    // The job file the pod reads keeps the URL.
    assert!(yaml.contains("s3://bkt/home"), "{yaml}");
}
