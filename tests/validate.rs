//! `strata validate` and `strata schema` on real job files.

mod common;

use common::Env;

/// Validate one job file's text; return (exit code, stdout lines).
fn validate(text: &str) -> (i32, Vec<String>) {
    let env = Env::new();
    std::fs::create_dir_all(env.path("src")).unwrap();
    env.job("job", text);
    let (code, out, _) = env.run(&["validate"]);
    let prefix = format!("{}/", env.jobs().display());
    let lines = out
        .lines()
        .map(|l| l.strip_prefix(&prefix).unwrap_or(l).to_string())
        .collect();
    (code, lines)
}

#[test]
fn valid_file_passes() {
    let (code, lines) = validate(
        r#"{"source": "../src", "destination": "../dest", "track_dirs": ["."], "schedule": "0 3 * * *"}"#,
    );
    assert_eq!((code, lines), (0, vec![]));
}

#[test]
fn json_syntax_error_has_line_and_column() {
    let (code, lines) = validate("{\n  \"source\": \"../src\",\n  \"destination\": \"../d\",\n}\n");
    assert_eq!(code, 1);
    assert_eq!(lines, ["job.json:4:1: error: invalid JSON: trailing comma"]);
}

#[test]
fn wrong_type_points_at_the_value() {
    let (code, lines) = validate(
        "{\n  \"source\": \"../src\",\n  \"destination\": \"../d\",\n  \"track_dirs\": \"docs\"\n}",
    );
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        ["job.json:4:17: error: track_dirs: \"docs\" is not of type \"array\""]
    );
}

#[test]
fn unknown_field_points_at_the_key_with_a_hint() {
    let (code, lines) = validate(
        "{\"source\": \"../src\", \"destination\": \"../d\", \"track_dirs\": [\".\"],\n \"exclude_dir\": []}",
    );
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        ["job.json:2:2: error: unknown field \"exclude_dir\", did you mean \"exclude_dirs\"?"]
    );
}

#[test]
fn unknown_field_in_retention() {
    let (_, lines) = validate(
        "{\"source\": \"../src\", \"destination\": \"../d\", \"track_dirs\": [\".\"],\n \"retention\": {\"keep_dayly\": 7}}",
    );
    assert_eq!(
        lines,
        ["job.json:2:16: error: unknown field \"keep_dayly\", did you mean \"keep_daily\"?"]
    );
}

#[test]
fn missing_field_points_at_the_object() {
    let (code, lines) = validate("\n  {\"destination\": \"../d\", \"track_dirs\": [\".\"]}");
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        ["job.json:2:3: error: missing required field \"source\""]
    );
}

#[test]
fn bad_cron_names_field_and_reason() {
    let (code, lines) = validate(
        "{\"source\": \"../src\", \"destination\": \"../d\", \"track_dirs\": [\".\"],\n \"schedule\": \"0 3 * * 8\"}",
    );
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        ["job.json:2:14: error: schedule: dow: 8 is out of range 0-7"]
    );
}

#[test]
fn bad_glob_and_rec_misuse_and_escaping_paths() {
    let (code, lines) = validate(
        "{\"source\": \"../src\", \"destination\": \"../d\",\n\"track_dirs\": [\"a/b:rec\", \"../up\", \"/abs\"],\n\"include_files\": [\"[x\"]}",
    );
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "job.json:2:16: error: track_dirs[0]: \"a/b:rec\": a `:rec` directory rule matches directory names, so it cannot contain `/`",
            "job.json:2:27: error: track_dirs[1]: \"../up\": must stay inside source (no `..`)",
            "job.json:2:36: error: track_dirs[2]: \"/abs\": must be relative to source, not absolute",
            "job.json:3:19: error: include_files[0]: \"[x\": bad glob: unclosed character class; missing ']'",
        ]
    );
}

#[test]
fn destination_inside_source_and_source_inside_destination() {
    let (code, lines) = validate(
        "{\"source\": \"../src\",\n \"destination\": \"../src/backup\", \"track_dirs\": [\".\"]}",
    );
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("job.json:2:17: error: destination ")
            && lines[0].contains("is inside source"),
        "{lines:?}"
    );
    let (code, lines) =
        validate("{\"source\": \"../src\",\n \"destination\": \"..\", \"track_dirs\": [\".\"]}");
    assert_eq!(code, 1);
    assert!(lines[0].contains("is inside destination"), "{lines:?}");
}

#[test]
fn nothing_selected_is_an_error() {
    let (code, lines) =
        validate("{\"source\": \"../src\", \"destination\": \"../d\", \"exclude_dirs\": [\"x\"]}");
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "job.json:1:1: error: nothing selected: include_dirs, track_dirs, include_files and track_files are all empty"
        ]
    );
}

#[test]
fn missing_source_is_only_a_warning() {
    let (code, lines) = validate(
        "{\"source\": \"../nowhere\", \"destination\": \"../d\", \"track_dirs\": [\".\"]}",
    );
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("job.json:1:12: warning: source "),
        "{lines:?}"
    );
}

#[test]
fn track_dir_inside_excluded_dir_is_a_warning() {
    let (code, lines) = validate(
        "{\"source\": \"../src\", \"destination\": \"../d\", \"exclude_dirs\": [\"build\"],\n \"track_dirs\": [\"build/out\"]}",
    );
    assert_eq!(code, 0);
    assert_eq!(
        lines,
        [
            "job.json:2:17: warning: track_dirs[0]: \"build/out\" is inside an excluded directory and selects nothing"
        ]
    );
}

#[test]
fn duplicate_names_and_destinations_across_files() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("src")).unwrap();
    env.job(
        "a",
        r#"{"name": "home", "source": "../src", "destination": "../d1", "track_dirs": ["."]}"#,
    );
    env.job(
        "b",
        r#"{"name": "home", "source": "../src", "destination": "../d2", "track_dirs": ["."]}"#,
    );
    env.job(
        "c",
        r#"{"source": "../src", "destination": "../d1", "track_dirs": ["."]}"#,
    );
    let (code, out, _) = env.run(&["validate"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("b.json:1:10: error: job name \"home\" is already used by"),
        "{out}"
    );
    assert!(
        lines[1].contains("c.json:1:37: error: destination "),
        "{out}"
    );
    assert!(lines[1].contains("is already used by"), "{out}");
}

#[test]
fn directory_mixing_good_and_bad_files_reports_all_and_ignores_non_jobs() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("src")).unwrap();
    env.job(
        "good",
        r#"{"source": "../src", "destination": "../d1", "track_dirs": ["."]}"#,
    );
    env.job("bad", r#"{"source": "../src""#);
    std::fs::write(env.jobs().join("notes.txt"), "not a job").unwrap();
    std::fs::write(env.jobs().join(".hidden.json"), "{").unwrap();
    std::fs::write(env.jobs().join("good.json~"), "{").unwrap();
    let (code, out, err) = env.run(&["validate"]);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("bad.json:1:19: error: invalid JSON: EOF while parsing an object"),
        "{out}"
    );
    assert!(err.contains("2 job file(s): 1 valid, 1 error(s)"), "{err}");
}

#[test]
fn json_output_parses_back() {
    let env = Env::new();
    env.job("bad", "{\"source\": 1}");
    let (code, value) = env.run_json(&["validate"]);
    assert_eq!(code, 1);
    let items = value.as_array().unwrap();
    let messages: Vec<&str> = items
        .iter()
        .map(|i| i["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.contains(&"missing required field \"destination\""),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"source: 1 is not of type \"string\""),
        "{messages:?}"
    );
    let source = items.iter().find(|i| i["pointer"] == "/source").unwrap();
    assert_eq!(
        (source["line"].as_u64(), source["column"].as_u64()),
        (Some(1), Some(12))
    );
    assert_eq!(source["severity"], "error");
}

#[test]
fn validate_takes_files_and_an_unreadable_dir_is_exit_2() {
    let env = Env::new();
    let file = env.job(
        "a",
        r#"{"source": "/x", "destination": "/y", "track_dirs": ["."]}"#,
    );
    let (code, _, _) = env.run(&["validate", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    let (code, _, err) = env.run(&["validate", "/nonexistent/jobs"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/jobs"), "{err}");
}

#[test]
fn schema_file_matches_generated_schema() {
    let env = Env::new();
    let (code, out, _) = env.run(&["schema"]);
    assert_eq!(code, 0);
    let stored = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/job.schema.json"
    ))
    .unwrap();
    assert!(
        out == stored,
        "schemas/job.schema.json is stale: run `make schema` and commit it"
    );
}

#[test]
fn example_jobs_validate() {
    let jobs = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs.d");
    let env = Env::new();
    let (code, out, err) = env.run(&["validate", jobs]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("error"), "{out}");
}
