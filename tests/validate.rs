//! `strata validate` and `strata schema` on real job files.

mod common;

use std::fs;

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
        [
            "job.json:4:17: error: track_dirs: expected a list of directory globs in double \
             quotes, e.g. [\"Documents\", \".config\"]; got the text \"docs\""
        ]
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
    assert!(
        lines[1].contains("is also the destination of job \"home\" (")
            && lines[1].contains("a.json)"),
        "{out}"
    );
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
        messages.contains(
            &"source: expected a path in double quotes, e.g. \"/home/me\"; got the number 1"
        ),
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

/// Issue 14 item 13: no schema internals (regular expressions, type
/// lists); what is expected in words, with an example.
#[test]
fn messages_say_what_is_expected_in_words_with_an_example() {
    let (code, lines) = validate(
        "{\"source\": \"../src\", \"destination\": \"../d\", \"track_dirs\": [\".\"],\n\
         \"healthcheck\": \"hc-ping.com/abc\",\n\
         \"max_delete\": \"150%\",\n\
         \"retention\": {\"keep_last\": \"10\"}}",
    );
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "job.json:2:16: error: healthcheck: expected an http:// or https:// URL in double \
             quotes, e.g. \"https://hc-ping.com/your-uuid\"; got the text \"hc-ping.com/abc\"",
            "job.json:3:15: error: max_delete: expected a count of files (a whole number, 0 or \
             more) or a percentage from 0% to 100% in double quotes, e.g. 100 or \"10%\"; got \
             the text \"150%\"",
            "job.json:4:28: error: retention.keep_last: expected a whole number (0 or more), \
             e.g. 10; got the text \"10\" (write 10 without the quotes)",
        ]
    );
    for line in &lines {
        assert!(!line.contains('^') && !line.contains("of types"), "{line}");
    }
}

#[test]
fn every_kind_of_wrong_value_is_explained() {
    let (code, lines) = validate(
        "{\"source\": \"../src\", \"destination\": \"../d\", \"track_dirs\": [1],\n\
         \"enabled\": \"yes\", \"compare\": \"fast\", \"name\": \"a b\",\n\
         \"hooks\": {\"before\": \"\", \"timeout\": 0}, \"retention\": {\"keep_within\": \"3 days\"}}",
    );
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "job.json:1:60: error: track_dirs[0]: expected a directory glob in double quotes, \
             e.g. \"Documents\"; got the number 1",
            "job.json:2:12: error: enabled: expected true or false, e.g. false; got the text \
             \"yes\"",
            "job.json:2:30: error: compare: expected one of \"metadata\" or \"checksum\", e.g. \
             \"checksum\"; got the text \"fast\"",
            "job.json:2:46: error: name: expected a name of letters, digits, `.`, `_` and `-`, \
             e.g. \"home\"; got the text \"a b\"",
            "job.json:3:21: error: hooks.before: expected a shell command in double quotes, not \
             empty, e.g. \"mountpoint -q /mnt/backup\"; got an empty text",
            "job.json:3:36: error: hooks.timeout: expected a number of seconds from 1 to 604800, \
             e.g. 600; got the number 0",
            "job.json:3:69: error: retention.keep_within: expected numbers with units in double \
             quotes, largest first: y (years), m (months), w (weeks), d (days), h (hours), e.g. \
             \"30d\"; got the text \"3 days\"",
        ]
    );
}

/// Issue 14 item 12: the last `"source"` silently won, and /etc was backed
/// up.
#[test]
fn a_key_given_twice_is_an_error_at_the_second() {
    let env = Env::new();
    env.write("src/a.txt", "a");
    env.job(
        "job",
        "{\"source\": \"../src\", \"destination\": \"../d\", \"track_dirs\": [\".\"],\n \
         \"retention\": {\"keep_last\": 1, \"keep_last\": 2},\n \"source\": \"/etc\"}",
    );
    let (code, out, _) = env.run(&["validate"]);
    assert_eq!(code, 1);
    let prefix = format!("{}/", env.jobs().display());
    let lines: Vec<&str> = out
        .lines()
        .map(|l| l.strip_prefix(&prefix).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "job.json:2:32: error: retention.keep_last is given twice in this object (first at \
             line 2, column 16); give each field once",
            "job.json:3:2: error: source is given twice in this object (first at line 1, column \
             2); give each field once",
        ]
    );
    let (code, _) = env.run_json(&["run-all"]);
    assert_eq!(code, 1);
    assert!(!env.path("d").exists());
}

/// Issue 14 item 12: `~/Documents` only got "does not exist (yet)", and
/// `$HOME/backup` created a directory named `$HOME`.
#[test]
fn tilde_variables_and_nul_bytes_in_paths_are_errors_with_a_hint() {
    let (code, lines) = validate(
        "{\"source\": \"~/Documents\",\n \"destination\": \"$HOME/backup\", \"track_dirs\": [\".\"]}",
    );
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "job.json:1:12: error: source \"~/Documents\": strata does not expand `~`: write the \
             whole path, e.g. \"/home/NAME/Documents\"",
            "job.json:2:17: error: destination \"$HOME/backup\": strata does not expand \
             environment variables ($HOME): write the path it stands for",
        ]
    );
    let (code, lines) = validate(
        "{\"source\": \"../src\", \"destination\": \"../b/${DISK}/x\\u0000\", \"track_dirs\": [\".\"],\n \
         \"exclude_if_present\": [\"a/.nobackup\"]}",
    );
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "job.json:1:37: error: destination \"../b/${DISK}/x\\0\": contains a NUL byte \
             (\\u0000), which no path can hold",
            "job.json:2:25: error: exclude_if_present[0]: \"a/.nobackup\" is a file name, so it \
             cannot contain `/`",
        ]
    );
    // Nothing named `$HOME` appears.
    let env = Env::new();
    env.write("src/a.txt", "a");
    env.job(
        "job",
        r#"{"source": "../src", "destination": "$HOME/backup", "track_dirs": ["."]}"#,
    );
    let (code, _) = env.run_json(&["run-all"]);
    assert_eq!(code, 1);
    assert!(!env.jobs().join("$HOME").exists());
}

/// Issue 14 item 12: `"node_modules:recu"`, `"*.log:recursive"`, `"x:REC"`
/// were taken as literal names.
#[test]
fn mistyped_suffixes_are_errors_naming_the_suffix_that_exists() {
    let (code, lines) = validate(
        "{\"source\": \"../src\", \"destination\": \"../d\", \"track_dirs\": [\".\"],\n\
         \"exclude_dirs\": [\"node_modules:recu\", \"x:REC\"],\n\
         \"exclude_files\": [\"*.log:recursive\"]}",
    );
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "job.json:2:18: error: exclude_dirs[0]: \"node_modules:recu\": unknown suffix \
             `:recu`: the only suffix is `:rec`, in lowercase (to match a name that ends in \
             `:recu`, escape the colon: `\\\\:recu` in the JSON file)",
            "job.json:2:39: error: exclude_dirs[1]: \"x:REC\": unknown suffix `:REC`: the only \
             suffix is `:rec`, in lowercase (to match a name that ends in `:REC`, escape the \
             colon: `\\\\:REC` in the JSON file)",
            "job.json:3:19: error: exclude_files[0]: \"*.log:recursive\": unknown suffix \
             `:recursive`: the only suffix is `:rec`, in lowercase (to match a name that ends \
             in `:recursive`, escape the colon: `\\\\:recursive` in the JSON file)",
        ]
    );
}

/// Validate the env's jobs dir; (exit code, lines without the jobs dir's
/// prefix).
fn validate_env(env: &Env) -> (i32, Vec<String>) {
    let (code, out, _) = env.run(&["validate"]);
    let prefix = format!("{}/", env.jobs().display());
    let root = env.root().canonicalize().unwrap();
    let lines = out
        .lines()
        .map(|l| {
            l.strip_prefix(&prefix)
                .unwrap_or(l)
                .replace(&format!("{}/", env.jobs().display()), "JOBS/")
                .replace(&format!("{}/", root.display()), "ROOT/")
                .replace(&format!("{}/", env.root().display()), "ROOT/")
        })
        .collect();
    (code, lines)
}

/// Issue 12 item 4 (item 6 of its findings): overlaps seen through the
/// paths' real identities, each error naming the other job and its file.
#[test]
fn a_destination_shared_through_a_symlink_is_refused() {
    let env = Env::new();
    for dir in ["src-a", "src-b", "backup"] {
        fs::create_dir_all(env.path(dir)).unwrap();
    }
    env.symlink("backup", "alias");
    env.job(
        "a",
        r#"{"source": "../src-a", "destination": "../backup/a", "track_dirs": ["."]}"#,
    );
    env.job(
        "b",
        r#"{"source": "../src-b", "destination": "../alias/a", "track_dirs": ["."]}"#,
    );
    let (code, lines) = validate_env(&env);
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "b.json:1:39: error: destination ROOT/alias/a (which is ROOT/backup/a) is also the \
             destination of job \"a\" (JOBS/a.json): each job needs a destination of its own"
        ]
    );
    // `run` goes through the same loader: b does not run, a does.
    let (code, _, err) = env.run(&["run", "b"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is also the destination of job \"a\""),
        "{err}"
    );
    assert!(!env.path("backup/a").exists());
    let (code, _) = env.run_json(&["run", "a"]);
    assert_eq!(code, 0);
}

#[test]
fn a_destination_inside_another_jobs_destination_or_source_is_refused() {
    let env = Env::new();
    for dir in ["data/sub", "other", "backup"] {
        fs::create_dir_all(env.path(dir)).unwrap();
    }
    env.write("data/a.txt", "a");
    env.job(
        "a",
        r#"{"source": "../data", "destination": "../backup/a", "track_dirs": ["."]}"#,
    );
    env.job(
        "b",
        r#"{"source": "../other", "destination": "../backup/a/mirror/b", "track_dirs": ["."]}"#,
    );
    env.job(
        "c",
        r#"{"source": "../other", "destination": "../data/sub/c", "track_dirs": ["."]}"#,
    );
    env.job(
        "d",
        r#"{"source": "../backup/a/mirror", "destination": "../backup/d", "track_dirs": ["."]}"#,
    );
    // a's destination exists, so b's parent question is about a's mirror.
    let (code, _) = env.run_json(&["run", "a"]);
    assert_eq!(code, 0);
    let (code, lines) = validate_env(&env);
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "b.json:1:39: error: destination ROOT/backup/a/mirror/b is inside the destination \
             of job \"a\" (JOBS/a.json): each job needs a destination of its own, outside every \
             other's",
            // d is refused below, but its source does hold b's destination.
            "b.json:1:39: error: destination ROOT/backup/a/mirror/b is inside the source of job \
             \"d\" (JOBS/d.json), which would back this backup up",
            "c.json:1:39: error: destination ROOT/data/sub/c is inside the source of job \"a\" \
             (JOBS/a.json), which would back this backup up",
            "d.json:1:12: error: source ROOT/backup/a/mirror is inside the destination of job \
             \"a\" (JOBS/a.json): a backup must not back up a backup that another job changes",
        ]
    );
}

#[test]
fn system_directories_are_refused_as_destinations_also_through_a_symlink() {
    let env = Env::new();
    fs::create_dir_all(env.path("src")).unwrap();
    env.symlink("/usr/bin", "programs");
    env.symlink("/", "top");
    for (name, destination) in [
        ("a", "/usr/bin"),
        ("b", "/root"),
        ("c", "/etc/strata"),
        ("d", "/var/lib"),
        ("e", "../programs"),
        ("f", "../top/var/log"),
        ("g", "/"),
    ] {
        env.job(
            name,
            &format!(
                r#"{{"source": "../src", "destination": "{destination}", "track_dirs": ["."]}}"#
            ),
        );
    }
    let (code, lines) = validate_env(&env);
    assert_eq!(code, 1);
    let why = "backups go to a directory of their own, such as /mnt/backup/NAME or \
               /var/backups/NAME";
    let errors: Vec<&String> = lines.iter().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(
        errors,
        [
            &format!(
                "a.json:1:37: error: destination /usr/bin is the system directory /usr/bin: {why}"
            ),
            &format!("b.json:1:37: error: destination /root is the system directory /root: {why}"),
            &format!(
                "c.json:1:37: error: destination /etc/strata is inside the system directory \
                 /etc: {why}"
            ),
            &format!(
                "d.json:1:37: error: destination /var/lib is the system directory /var/lib: {why}"
            ),
            &format!(
                "e.json:1:37: error: destination ROOT/programs (which is /usr/bin) is the system \
                 directory /usr/bin: {why}"
            ),
            &format!(
                "f.json:1:37: error: destination ROOT/top/var/log (which is /var/log) is the \
                 system directory /var/log: {why}"
            ),
            &format!("g.json:1:37: error: destination / is the system directory /: {why}"),
        ]
    );
}

/// A bind mount is the one spelling no path comparison sees: st_dev and
/// st_ino do. Needs root to mount; skipped otherwise.
#[test]
fn a_bind_mount_spelling_of_a_destination_is_the_same_destination() {
    let env = Env::new();
    for dir in ["src-a", "src-b", "disk/a", "view"] {
        fs::create_dir_all(env.path(dir)).unwrap();
    }
    let mounted = std::process::Command::new("mount")
        .args(["--bind"])
        .arg(env.path("disk"))
        .arg(env.path("view"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: cannot bind-mount (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(env.path("view"));
    env.job(
        "a",
        r#"{"source": "../src-a", "destination": "../disk/a", "track_dirs": ["."]}"#,
    );
    env.job(
        "b",
        r#"{"source": "../src-b", "destination": "../view/a", "track_dirs": ["."]}"#,
    );
    env.job(
        "c",
        r#"{"source": "../view/a/mirror", "destination": "../disk/c", "track_dirs": ["."]}"#,
    );
    let (code, lines) = validate_env(&env);
    assert_eq!(code, 1);
    let errors: Vec<&String> = lines.iter().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(
        errors,
        [
            "b.json:1:39: error: destination ROOT/view/a is also the destination of job \"a\" \
             (JOBS/a.json): each job needs a destination of its own",
            "c.json:1:12: error: source ROOT/view/a/mirror is inside the destination of job \
             \"a\" (JOBS/a.json): a backup must not back up a backup that another job changes",
        ]
    );
}

/// Issue 14 item 1, validate's part: a destination whose parent is missing
/// is most often an unmounted disk.
#[test]
fn a_destination_whose_parent_is_missing_is_a_warning() {
    let (code, lines) = validate(
        "{\"source\": \"../src\", \"destination\": \"../usbdisk/backups/t\", \"track_dirs\": [\".\"]}",
    );
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("job.json:1:37: warning: the parent directory ")
            && lines[0].contains("usbdisk/backups of destination ")
            && lines[0].ends_with("does): is the disk mounted? strata never creates it"),
        "{lines:?}"
    );
    // A destination to be created in an existing directory is fine.
    let (_, lines) =
        validate("{\"source\": \"../src\", \"destination\": \"../new\", \"track_dirs\": [\".\"]}");
    assert_eq!(lines, Vec::<String>::new());
}

/// Issue 14 item 12: `strata new pics --track Pictres` validated with no
/// warning, and its runs "succeeded" backing up nothing.
#[test]
fn a_directory_rule_that_matches_nothing_is_a_warning() {
    let env = Env::new();
    env.write("src/Pictures/cat.jpg", "meow");
    env.write("src/Projects/a/src/main.rs", "fn main() {}");
    env.write("src/notes.txt", "n");
    let (code, _, err) = env.run(&[
        "new",
        "pics",
        "--source",
        "src",
        "--destination",
        "dest",
        "--track",
        "Pictres",
    ]);
    assert_eq!(code, 0, "{err}");
    let want = format!(
        "pics.json:5:5: warning: track_dirs[0]: \"Pictres\" matches no directory in source \
         {}, so it backs up nothing (did you mean \"Pictures\"?)",
        env.path("src").display()
    );
    assert!(err.contains(&want), "{err}");
    let (code, lines) = validate_env(&env);
    assert_eq!(code, 0);
    assert_eq!(
        lines,
        [want.replace(&format!("{}/", env.root().display()), "ROOT/")]
    );

    // Globs, `:rec` rules and rules that name a file are looked at too;
    // rules that match are not reported.
    env.job(
        "more",
        r#"{"source": "../src", "destination": "../d2",
            "include_dirs": ["Projects/*/src", "Projects/*/lib", "cache:rec", "Pictures"],
            "track_dirs": ["notes.txt", "."]}"#,
    );
    let (code, lines) = validate_env(&env);
    assert_eq!(code, 0);
    let more: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("more.json"))
        .collect();
    let src = "ROOT/src";
    assert_eq!(
        more,
        [
            &format!(
                "more.json:2:48: warning: include_dirs[1]: \"Projects/*/lib\" matches no \
                 directory in source {src}, so it backs up nothing"
            ),
            &format!(
                "more.json:2:66: warning: include_dirs[2]: \"cache:rec\" matches no directory \
                 in source {src}, so it backs up nothing"
            ),
            &format!(
                "more.json:3:28: warning: track_dirs[0]: \"notes.txt\" matches no directory in \
                 source {src}, so it backs up nothing (\"notes.txt\" is a file, not a \
                 directory)"
            ),
        ]
    );
}
