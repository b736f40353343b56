//! Load job files and check them: JSON syntax, the generated schema, then
//! what a schema cannot say (cron, globs, paths, overlaps, duplicates).
//!
//! Takes files and directories; returns the valid [`Job`]s and every
//! [`Diagnostic`], each located at the value it concerns.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use rayon::prelude::*;
use serde_json::Value;

use super::locate::{Position, locate_or_ancestor};
use super::model::{JobFile, job_schema};
use super::{Diagnostic, Job, Severity, resolve_path};
use crate::schedule::Schedule;
use crate::select::{Matcher, RuleList, RuleLists, shadowed_rules};

/// The outcome of loading job files.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Jobs without errors, in file name order.
    pub jobs: Vec<Job>,
    /// Every problem found, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// How many job files were read.
    pub files: usize,
}

impl Loaded {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Errors that stop loading altogether (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The jobs directory (or a named path) cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The path that could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether a directory entry is a job file: `*.json`, not hidden, not a
/// temp or editor file.
pub fn is_job_file_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".json") && name.len() > ".json".len()
}

/// The job files a list of paths names: files as given, directories
/// expanded to their job files (not recursive) in name order.
pub fn job_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        let unreadable = |source| LoadError::Unreadable {
            path: path.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(path).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            if is_job_file_name(&entry.file_name())
                && entry.file_type().map(|t| !t.is_dir()).unwrap_or(false)
            {
                found.push(entry.path());
            }
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Load and check the job files that `paths` names (see [`job_files`]).
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    let files = job_files(paths)?;
    let checked: Vec<(Option<Job>, Vec<Diagnostic>)> =
        files.par_iter().map(|file| check_file(file)).collect();
    let mut loaded = Loaded {
        files: files.len(),
        ..Loaded::default()
    };
    let mut by_name: HashMap<String, PathBuf> = HashMap::new();
    let mut by_destination: HashMap<PathBuf, PathBuf> = HashMap::new();
    for (job, mut diagnostics) in checked {
        if let Some(job) = job {
            let mut duplicate = Vec::new();
            if let Some(first) = by_name.get(&job.name) {
                duplicate.push((
                    "/name",
                    format!(
                        "job name {:?} is already used by {}",
                        job.name,
                        first.display()
                    ),
                ));
            }
            if let Some(first) = by_destination.get(&job.destination) {
                duplicate.push((
                    "/destination",
                    format!(
                        "destination {} is already used by {}",
                        job.destination.display(),
                        first.display()
                    ),
                ));
            }
            if duplicate.is_empty() {
                by_name.insert(job.name.clone(), job.file.clone());
                by_destination.insert(job.destination.clone(), job.file.clone());
                loaded.jobs.push(job);
            } else {
                let text = std::fs::read_to_string(&job.file).unwrap_or_default();
                for (pointer, message) in duplicate {
                    diagnostics.push(diagnostic(
                        &job.file,
                        &text,
                        pointer,
                        Severity::Error,
                        message,
                    ));
                }
            }
        }
        loaded.diagnostics.extend(diagnostics);
    }
    loaded.diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.severity).cmp(&(&b.file, b.line, b.column, b.severity))
    });
    Ok(loaded)
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(&job_schema()).expect("the generated schema compiles")
    })
}

fn diagnostic(
    file: &Path,
    text: &str,
    pointer: &str,
    severity: Severity,
    message: String,
) -> Diagnostic {
    at(
        file,
        locate_or_ancestor(text, pointer, false),
        pointer,
        severity,
        message,
    )
}

fn at(
    file: &Path,
    pos: Position,
    pointer: &str,
    severity: Severity,
    message: String,
) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line: pos.line,
        column: pos.column,
        severity,
        message,
        pointer: pointer.to_string(),
    }
}

/// `/retention/keep_last` -> `retention.keep_last`, `/track_dirs/2` ->
/// `track_dirs[2]`.
fn field_name(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// The property names the schema allows for the object at `pointer`.
fn known_fields(pointer: &str) -> Vec<String> {
    let schema = job_schema();
    let mut node = &schema;
    let resolve = |node: &'_ Value| -> Option<String> {
        node.get("$ref")?
            .as_str()?
            .strip_prefix("#/$defs/")
            .map(str::to_string)
    };
    for segment in pointer.split('/').skip(1) {
        let Some(next) = node.get("properties").and_then(|p| p.get(segment)) else {
            return Vec::new();
        };
        node = next;
        if let Some(name) = resolve(node) {
            node = &schema["$defs"][name.as_str()];
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn did_you_mean(unknown: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(unknown, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The schema's verdict on one file, as diagnostics.
fn schema_diagnostics(file: &Path, text: &str, value: &Value) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for error in validator().iter_errors(value) {
        let pointer = error.instance_path().as_str().to_string();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known = known_fields(&pointer);
                for name in unexpected {
                    let key_pointer = format!("{pointer}/{}", escape_pointer(name));
                    let mut message = format!("unknown field {name:?}");
                    if let Some(hint) = did_you_mean(name, &known) {
                        message.push_str(&format!(", did you mean {hint:?}?"));
                    }
                    out.push(at(
                        file,
                        locate_or_ancestor(text, &key_pointer, true),
                        &key_pointer,
                        Severity::Error,
                        message,
                    ));
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let within = match field_name(&pointer) {
                    f if f.is_empty() => String::new(),
                    f => format!(" in {f}"),
                };
                out.push(diagnostic(
                    file,
                    text,
                    &pointer,
                    Severity::Error,
                    format!("missing required field {name:?}{within}"),
                ));
            }
            _ => {
                let field = field_name(&pointer);
                // The validator's message quotes the value: keep a long one
                // short.
                let mut shown = error.to_string();
                let instance = error.instance().to_string();
                if instance.chars().count() > 60 {
                    let short: String = instance.chars().take(40).collect();
                    shown = shown.replacen(&instance, &format!("{short}…"), 1);
                }
                let message = if field.is_empty() {
                    shown
                } else {
                    format!("{field}: {shown}")
                };
                out.push(diagnostic(file, text, &pointer, Severity::Error, message));
            }
        }
    }
    out
}

/// Check one job file. Returns the job if it has no errors, and every
/// diagnostic (warnings too).
pub fn check_file(file: &Path) -> (Option<Job>, Vec<Diagnostic>) {
    let start = Position { line: 1, column: 1 };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            let message = format!("cannot read job file: {e}");
            return (None, vec![at(file, start, "", Severity::Error, message)]);
        }
    };
    check_text(file, &text)
}

/// Check the text of a job file that lives at `file` (its directory
/// resolves relative paths). The fuzz target calls this directly.
pub fn check_text(file: &Path, text: &str) -> (Option<Job>, Vec<Diagnostic>) {
    let start = Position { line: 1, column: 1 };
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            let pos = Position {
                line: e.line().max(1),
                column: e.column().max(1),
            };
            let d = at(
                file,
                pos,
                "",
                Severity::Error,
                format!("invalid JSON: {message}"),
            );
            return (None, vec![d]);
        }
    };
    let mut out = schema_diagnostics(file, text, &value);
    if !out.is_empty() {
        return (None, out);
    }
    let spec: JobFile = match serde_json::from_value(value) {
        Ok(spec) => spec,
        Err(e) => {
            // The schema accepted it, so this is a gap between schema and
            // serde: still report it rather than panic.
            out.push(at(file, start, "", Severity::Error, e.to_string()));
            return (None, out);
        }
    };
    let job = check_spec(file, text, spec, &mut out);
    let job = if out.iter().any(Diagnostic::is_error) {
        None
    } else {
        job
    };
    (job, out)
}

/// Whether `name` is a valid job name: letters, digits, `.`, `_`, `-`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Directories no backup may be written into.
const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr",
];

/// Canonical form when the path exists (resolves symlinks), else lexical.
fn canonical_or_lexical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The checks the schema cannot express. Pushes diagnostics; returns the
/// job unless a check made it impossible to build.
fn check_spec(file: &Path, text: &str, spec: JobFile, out: &mut Vec<Diagnostic>) -> Option<Job> {
    let mut error = |pointer: &str, message: String| {
        out.push(diagnostic(file, text, pointer, Severity::Error, message));
    };
    let name = match &spec.name {
        Some(name) => name.clone(),
        None => {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !is_valid_name(&stem) {
                error(
                    "",
                    format!(
                        "the job name {stem:?} taken from the file name is not valid \
                         (letters, digits, `.`, `_`, `-`): set \"name\""
                    ),
                );
            }
            stem
        }
    };

    let schedule = match spec.schedule.as_deref().map(Schedule::parse) {
        Some(Err(e)) => {
            error("/schedule", format!("schedule: {e}"));
            None
        }
        Some(Ok(schedule)) => Some(schedule),
        None => None,
    };

    let lists = RuleLists {
        include_dirs: &spec.include_dirs,
        track_dirs: &spec.track_dirs,
        exclude_dirs: &spec.exclude_dirs,
        include_files: &spec.include_files,
        track_files: &spec.track_files,
        exclude_files: &spec.exclude_files,
    };
    let matcher = match Matcher::new(lists) {
        Ok(m) => Some(m),
        Err(errors) => {
            for e in errors {
                error(&format!("/{}/{}", e.list.field(), e.index), e.to_string());
            }
            None
        }
    };
    if spec.include_dirs.is_empty()
        && spec.track_dirs.is_empty()
        && spec.include_files.is_empty()
        && spec.track_files.is_empty()
    {
        error(
            "",
            "nothing selected: include_dirs, track_dirs, include_files and track_files \
             are all empty"
                .into(),
        );
    }

    let base = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
        .unwrap_or_default();
    let source = resolve_path(&base, &spec.source);
    let destination = resolve_path(&base, &spec.destination);
    let (real_source, real_destination) = (
        canonical_or_lexical(&source),
        canonical_or_lexical(&destination),
    );
    if SYSTEM_DIRS.iter().any(|d| real_destination == Path::new(d))
        || ["/proc", "/sys", "/dev"]
            .iter()
            .any(|d| real_destination.starts_with(d))
    {
        error(
            "/destination",
            format!(
                "destination {} is a system directory",
                destination.display()
            ),
        );
    } else if real_destination == real_source {
        error(
            "/destination",
            "destination is the same directory as source".into(),
        );
    } else if real_destination.starts_with(&real_source) {
        error(
            "/destination",
            format!(
                "destination {} is inside source {}: the backup would back itself up",
                destination.display(),
                source.display()
            ),
        );
    } else if real_source.starts_with(&real_destination) {
        error(
            "/destination",
            format!(
                "source {} is inside destination {}",
                source.display(),
                destination.display()
            ),
        );
    }

    if let Some(url) = &spec.healthcheck
        && let Err(reason) = crate::monitor::healthcheck::check_url(url)
    {
        error("/healthcheck", format!("healthcheck: {reason}"));
    }

    for (list, index, message) in shadowed_rules(lists) {
        debug_assert!(matches!(list, RuleList::IncludeDirs | RuleList::TrackDirs));
        out.push(diagnostic(
            file,
            text,
            &format!("/{}/{index}", list.field()),
            Severity::Warning,
            message,
        ));
    }
    if let Some(s) = schedule.as_ref().filter(|s| !s.can_fire()) {
        let message = format!("schedule: {s} never fires: no calendar date matches it");
        out.push(diagnostic(
            file,
            text,
            "/schedule",
            Severity::Warning,
            message,
        ));
    }
    if !source.exists() {
        out.push(diagnostic(
            file,
            text,
            "/source",
            Severity::Warning,
            format!("source {} does not exist (yet)", source.display()),
        ));
    }

    Some(Job {
        name,
        file: file.to_path_buf(),
        source,
        destination,
        schedule,
        enabled: spec.enabled,
        matcher: matcher?,
        compare: spec.compare,
        retention: spec.retention,
        hooks: spec.hooks,
        healthcheck: spec.healthcheck,
        max_delete: spec.max_delete,
        one_file_system: spec.one_file_system,
        exclude_if_present: spec.exclude_if_present,
        exclude_caches: spec.exclude_caches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_file_names() {
        for (name, want) in [
            ("a.json", true),
            ("home-backup.json", true),
            (".hidden.json", false),
            ("a.json~", false),
            ("a.json.tmp", false),
            ("a.json.swp", false),
            (".a.json.swp", false),
            ("a.txt", false),
            (".json", false),
        ] {
            assert_eq!(is_job_file_name(OsStr::new(name)), want, "{name}");
        }
    }

    #[test]
    fn field_names_read_like_paths() {
        assert_eq!(field_name(""), "");
        assert_eq!(field_name("/track_dirs/2"), "track_dirs[2]");
        assert_eq!(field_name("/retention/keep_last"), "retention.keep_last");
    }

    #[test]
    fn known_fields_follow_refs() {
        assert!(known_fields("").contains(&"track_dirs".to_string()));
        assert!(known_fields("/retention").contains(&"keep_daily".to_string()));
    }

    #[test]
    fn hints_for_near_misses_only() {
        let known = known_fields("");
        assert_eq!(
            did_you_mean("trak_dirs", &known).as_deref(),
            Some("track_dirs")
        );
        assert_eq!(did_you_mean("sourc", &known).as_deref(), Some("source"));
        assert_eq!(did_you_mean("zzzzzz", &known), None);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                "[ -~]{0,12}".prop_map(Value::String),
                prop_oneof![
                    Just("0 3 * * *"),
                    Just("*/5 * * * 8"),
                    Just("."),
                    Just("..:rec"),
                    Just("[x"),
                    Just("/abs"),
                    Just("a/b:rec"),
                    Just("30d"),
                    Just("metadata"),
                ]
                .prop_map(|s| Value::String(s.to_string())),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec(
                        (
                            prop_oneof![
                                Just("source"),
                                Just("destination"),
                                Just("track_dirs"),
                                Just("include_files"),
                                Just("exclude_dirs"),
                                Just("schedule"),
                                Just("retention"),
                                Just("keep_within"),
                                Just("compare"),
                                Just("name"),
                                Just("enabled"),
                                Just("trak_dirs"),
                            ],
                            inner,
                        ),
                        0..6,
                    )
                    .prop_map(|kv| {
                        Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                    }),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            /// Any JSON, and any text, gets diagnostics, never a panic; a
            /// file without errors yields a job.
            #[test]
            fn check_file_never_panics(value in json_value(), noise in "[ -~\n]{0,40}") {
                let dir = tempfile::tempdir().unwrap();
                for (name, text) in [("a.json", value.to_string()), ("b.json", noise)] {
                    let path = dir.path().join(name);
                    std::fs::write(&path, &text).unwrap();
                    let (job, diagnostics) = check_file(&path);
                    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
                    prop_assert_eq!(job.is_some(), !has_errors, "{}", text);
                    for d in &diagnostics {
                        prop_assert!(d.line >= 1 && d.column >= 1);
                        prop_assert!(d.line <= text.lines().count().max(1) + 1, "{} for {}", d, text);
                    }
                }
            }
        }
    }
}
