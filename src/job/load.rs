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

use super::locate::{Position, duplicate_keys, locate_or_ancestor};
use super::model::{JobFile, example_text, expected_words, job_schema};
use super::overlap::{Place, Placed, SystemDirs, clashes};
use super::probe;
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
    let checked: Vec<(Option<Checked>, Vec<Diagnostic>, String)> = files
        .par_iter()
        .map(|file| check_file_placed(file))
        .collect();
    let mut loaded = Loaded {
        files: files.len(),
        ..Loaded::default()
    };
    // Names first, in file order: the first file with a name keeps it.
    let mut by_name: HashMap<String, PathBuf> = HashMap::new();
    let mut valid: Vec<(Checked, String)> = Vec::new();
    for (checked, diagnostics, text) in checked {
        loaded.diagnostics.extend(diagnostics);
        let Some(checked) = checked else { continue };
        let job = &checked.job;
        if let Some(first) = by_name.get(&job.name) {
            let message = format!(
                "job name {:?} is already used by {}",
                job.name,
                first.display()
            );
            loaded.diagnostics.push(diagnostic(
                &job.file,
                &text,
                "/name",
                Severity::Error,
                message,
            ));
            continue;
        }
        by_name.insert(job.name.clone(), job.file.clone());
        valid.push((checked, text));
    }
    // Then where the jobs write and read, on the paths' real identities.
    let placed: Vec<Placed<'_>> = valid
        .iter()
        .map(|(c, _)| Placed {
            name: &c.job.name,
            file: &c.job.file,
            source: &c.job.source,
            destination: &c.job.destination,
            source_place: &c.source,
            destination_place: &c.destination,
        })
        .collect();
    let clashes = clashes(&placed);
    drop(placed);
    let mut refused = vec![false; valid.len()];
    for clash in clashes {
        let (checked, text) = &valid[clash.job];
        refused[clash.job] = true;
        loaded.diagnostics.push(diagnostic(
            &checked.job.file,
            text,
            clash.pointer,
            Severity::Error,
            clash.message,
        ));
    }
    loaded.jobs = valid
        .into_iter()
        .zip(refused)
        .filter(|(_, refused)| !refused)
        .map(|((checked, _), _)| checked.job)
        .collect();
    loaded.diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.severity).cmp(&(&b.file, b.line, b.column, b.severity))
    });
    Ok(loaded)
}

/// The largest job file strata reads, in bytes. Job files are a few
/// hundred bytes; the bound keeps a runaway file (or `/dev/zero` behind a
/// symlink) from filling memory before any check runs.
pub const MAX_JOB_FILE_BYTES: usize = 1 << 20;

/// The most errors of one kind shown for one file. Each is located by
/// walking the text, so 10,000 errors in a 1 MiB file would take seconds;
/// and the first fifty say what is wrong as well as all would.
const MAX_SHOWN: usize = 50;

/// The note that stands for the errors not shown.
fn more_errors(count: usize) -> String {
    format!(
        "… and {count} more error{} like these in this file; fix the ones above first",
        if count == 1 { "" } else { "s" }
    )
}

/// The job schema, generated once.
fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(job_schema)
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::validator_for(schema()).expect("the generated schema compiles"))
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

/// The schema of the value at instance `pointer`, through properties and
/// list items; `None` where the schema says nothing. A property that
/// refers to a definition (`retention`) is returned as written, with its
/// own description and examples: see [`resolved`].
fn schema_at(pointer: &str) -> Option<&'static Value> {
    let mut node = schema();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        let inner = resolved(node);
        node = match inner.get("properties").and_then(|p| p.get(&segment)) {
            Some(next) => next,
            None => inner.get("items")?,
        };
    }
    Some(node)
}

/// The definition a `$ref` node refers to, or the node itself.
fn resolved(node: &'static Value) -> &'static Value {
    node.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| schema()["$defs"].get(name))
        .unwrap_or(node)
}

/// The property names the schema allows for the object at `pointer`.
fn known_fields(pointer: &str) -> Vec<String> {
    schema_at(pointer)
        .map(resolved)
        .and_then(|node| node.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// `retention.keep_last` for `/retention/keep_last`, `track_dirs[]` for
/// `/track_dirs/2`: the key of [`expected_words`].
fn schema_field(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        if segment.parse::<usize>().is_ok() {
            out.push_str("[]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// A value quoted for a message, shortened when long.
fn quoted(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 60 {
        text
    } else {
        format!("{}…", text.chars().take(40).collect::<String>())
    }
}

/// What a value is, in words: `the text "10"`, `the number 1.5`, `a list`.
fn described(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "an empty text".into(),
        Value::String(_) => format!("the text {}", quoted(value)),
        Value::Number(_) => format!("the number {value}"),
        Value::Bool(_) | Value::Null => value.to_string(),
        Value::Array(items) => match items.len() {
            0 => "an empty list".into(),
            1 => "a list of 1 item".into(),
            n => format!("a list of {n} items"),
        },
        Value::Object(_) => "an object".into(),
    }
}

/// What the schema `node` of `field` expects, in words.
fn expected_of(field: &str, node: &Value) -> String {
    if let Some(words) = expected_words(field) {
        return words.to_string();
    }
    if let Some(options) = node.get("enum").and_then(Value::as_array) {
        let options: Vec<String> = options.iter().map(Value::to_string).collect();
        return format!("one of {}", options.join(" or "));
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let words: Vec<String> = types
        .iter()
        .filter(|t| **t != "null")
        .map(|t| match *t {
            "integer" => {
                let min = node.get("minimum").and_then(Value::as_i64);
                let max = node.get("maximum").and_then(Value::as_i64);
                match (min, max) {
                    (Some(min), Some(max)) => format!("a whole number from {min} to {max}"),
                    (Some(min), None) => format!("a whole number ({min} or more)"),
                    _ => "a whole number".into(),
                }
            }
            "number" => "a number".into(),
            "string" => "a text in double quotes".into(),
            "boolean" => "true or false".into(),
            "array" => "a list in square brackets".into(),
            "object" => "an object in braces".into(),
            other => other.to_string(),
        })
        .collect();
    if words.is_empty() {
        "something else".into()
    } else {
        words.join(" or ")
    }
}

/// The schema's examples of the field at `pointer` (for a list item, the
/// list's first example's items), as they would be written in the file.
fn examples_of(pointer: &str) -> Vec<String> {
    let examples = |node: Option<&Value>| -> Vec<Value> {
        node.and_then(|n| n.get("examples"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let last = pointer.rsplit('/').next().unwrap_or_default();
    let found = if last.parse::<usize>().is_ok() {
        let parent = &pointer[..pointer.len() - last.len() - 1];
        examples(schema_at(parent))
            .first()
            .and_then(Value::as_array)
            .map(|items| items.iter().take(1).cloned().collect())
            .unwrap_or_default()
    } else {
        examples(schema_at(pointer))
    };
    found.iter().map(example_text).collect()
}

/// The message for a value the schema refuses: what is expected, in
/// words, an example, and what was found, instead of the schema's own
/// terms (a regular expression, a list of types).
fn expected_message(pointer: &str, instance: &Value) -> String {
    let field = field_name(pointer);
    let node = schema_at(pointer).map_or(&Value::Null, resolved);
    let mut message = format!(
        "{field}: expected {}",
        expected_of(&schema_field(pointer), node)
    );
    let examples = examples_of(pointer);
    if !examples.is_empty() {
        message.push_str(&format!(", e.g. {}", examples.join(" or ")));
    }
    message.push_str(&format!("; got {}", described(instance)));
    // A number or a boolean in quotes is the commonest slip.
    let types = node.get("type").map(Value::to_string).unwrap_or_default();
    if let Value::String(text) = instance {
        let unquoted = serde_json::from_str::<Value>(text).ok();
        let hint = match unquoted {
            Some(Value::Number(_)) if types.contains("integer") => true,
            Some(Value::Bool(_)) if types.contains("boolean") => true,
            _ => false,
        };
        if hint {
            message.push_str(&format!(" (write {text} without the quotes)"));
        }
    }
    message
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
    let mut errors = validator().iter_errors(value);
    for error in errors.by_ref().take(MAX_SHOWN) {
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
            ValidationErrorKind::Type { .. }
            | ValidationErrorKind::Pattern { .. }
            | ValidationErrorKind::Enum { .. }
            | ValidationErrorKind::Minimum { .. }
            | ValidationErrorKind::Maximum { .. }
            | ValidationErrorKind::ExclusiveMinimum { .. }
            | ValidationErrorKind::ExclusiveMaximum { .. }
            | ValidationErrorKind::MinLength { .. }
            | ValidationErrorKind::MaxLength { .. } => {
                let message = expected_message(&pointer, error.instance());
                out.push(diagnostic(file, text, &pointer, Severity::Error, message));
            }
            ValidationErrorKind::MaxItems { limit } => {
                let count = error.instance().as_array().map_or(0, Vec::len);
                let message = format!(
                    "{}: has more than {limit} items ({count}); use fewer rules (a `:rec` \
                     rule or a wildcard often replaces many)",
                    field_name(&pointer)
                );
                out.push(diagnostic(file, text, &pointer, Severity::Error, message));
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
    let more = errors.count();
    if more > 0 {
        let start = Position { line: 1, column: 1 };
        out.push(at(file, start, "", Severity::Error, more_errors(more)));
    }
    out
}

/// Check one job file. Returns the job if it has no errors, and every
/// diagnostic (warnings too).
pub fn check_file(file: &Path) -> (Option<Job>, Vec<Diagnostic>) {
    let (checked, diagnostics, _) = check_file_placed(file);
    (checked.map(|c| c.job), diagnostics)
}

/// [`check_file`], with the places of a valid job and the file's text.
fn check_file_placed(file: &Path) -> (Option<Checked>, Vec<Diagnostic>, String) {
    let start = Position { line: 1, column: 1 };
    match read_job_file(file) {
        Ok(text) => {
            let (checked, diagnostics) = check_text_placed(file, &text);
            (checked, diagnostics, text)
        }
        Err(message) => (
            None,
            vec![at(file, start, "", Severity::Error, message)],
            String::new(),
        ),
    }
}

/// A job file's text, read without hanging or filling memory: opened
/// non-blocking (a FIFO named `x.json` would block `open` forever), only a
/// regular file, at most [`MAX_JOB_FILE_BYTES`]. The error is the
/// diagnostic's message.
pub fn read_job_file(file: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let cannot = |e: std::io::Error| format!("cannot read job file: {e}");
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
        .map_err(cannot)?;
    let meta = handle.metadata().map_err(cannot)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "cannot read job file: it is {what}; a job file must be a regular file"
        ));
    }
    let too_big = || {
        format!(
            "the job file has more than {MAX_JOB_FILE_BYTES} bytes, the most a job file may \
             have"
        )
    };
    if meta.len() > MAX_JOB_FILE_BYTES as u64 {
        return Err(too_big());
    }
    let mut text = String::new();
    handle
        .take(MAX_JOB_FILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() > MAX_JOB_FILE_BYTES {
        return Err(too_big());
    }
    Ok(text)
}

/// Check the text of a job file that lives at `file` (its directory
/// resolves relative paths). The fuzz target calls this directly.
pub fn check_text(file: &Path, text: &str) -> (Option<Job>, Vec<Diagnostic>) {
    let (checked, diagnostics) = check_text_placed(file, text);
    (checked.map(|c| c.job), diagnostics)
}

/// [`check_text`], with the places of a valid job.
fn check_text_placed(file: &Path, text: &str) -> (Option<Checked>, Vec<Diagnostic>) {
    let start = Position { line: 1, column: 1 };
    if text.len() > MAX_JOB_FILE_BYTES {
        let message = format!(
            "the job file has more than {MAX_JOB_FILE_BYTES} bytes, the most a job file may have"
        );
        return (None, vec![at(file, start, "", Severity::Error, message)]);
    }
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
    // Before the schema: with a key given twice, the value holds only the
    // last one, and the checks would be about a file the user did not write.
    let duplicates: Vec<Diagnostic> = duplicate_keys(text)
        .into_iter()
        .map(|d| {
            let message = format!(
                "{} is given twice in this object (first at line {}, column {}); give each \
                 field once",
                field_name(&d.pointer),
                d.first.line,
                d.first.column
            );
            at(file, d.again, &d.pointer, Severity::Error, message)
        })
        .collect();
    if !duplicates.is_empty() {
        return (None, duplicates);
    }
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

/// A job whose own file has no error, with where its paths really are
/// (for the checks across jobs).
struct Checked {
    job: Job,
    source: Place,
    destination: Place,
}

/// Whether `name` is a valid job name: letters, digits, `.`, `_`, `-`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// What is wrong with how a `source` or `destination` is written, if
/// anything: strata takes paths as they are, so `~` and `$HOME` would
/// become directories of those names (a `$HOME` directory was created).
fn path_spelling(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Some("contains a NUL byte (\\u0000), which no path can hold".into());
    }
    let text = String::from_utf8_lossy(bytes);
    if let Some(rest) = text.strip_prefix('~') {
        let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let home = if user.is_empty() {
            "/home/NAME".to_string()
        } else {
            format!("/home/{user}")
        };
        let example = if tail.is_empty() {
            home
        } else {
            format!("{home}/{tail}")
        };
        return Some(format!(
            "strata does not expand `~`: write the whole path, e.g. {example:?}"
        ));
    }
    let variable = text.match_indices('$').find_map(|(i, _)| {
        let after = &text[i + 1..];
        let name: String = after
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then_some(name)
    })?;
    Some(format!(
        "strata does not expand environment variables (${variable}): write the path it \
         stands for"
    ))
}

/// What is wrong with an `exclude_if_present` name, if anything: it names
/// a file directly in a directory.
fn marker_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name == "." || name == ".." {
        Some("needs a file name")
    } else if name.contains('/') {
        Some("is a file name, so it cannot contain `/`")
    } else if name.contains('\0') {
        Some("contains a NUL byte (\\u0000), which no file name can hold")
    } else {
        None
    }
}

/// The system directories, resolved once per process.
fn system_dirs() -> &'static SystemDirs {
    static DIRS: OnceLock<SystemDirs> = OnceLock::new();
    DIRS.get_or_init(SystemDirs::resolve)
}

/// The checks the schema cannot express. Pushes diagnostics; returns the
/// job unless a check made it impossible to build.
fn check_spec(
    file: &Path,
    text: &str,
    spec: JobFile,
    out: &mut Vec<Diagnostic>,
) -> Option<Checked> {
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
            for e in errors.iter().take(MAX_SHOWN) {
                error(&format!("/{}/{}", e.list.field(), e.index), e.to_string());
            }
            if errors.len() > MAX_SHOWN {
                error("", more_errors(errors.len() - MAX_SHOWN));
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
    let mut spelled_right = true;
    // `s3://BUCKET/PREFIX`: an object-store destination, checked offline;
    // none of the path checks below apply to it.
    let object_text = spec
        .destination
        .to_str()
        .filter(|t| crate::store::object::url::is_url(t));
    let mut object = None;
    let mut out_warnings: Vec<(&str, String)> = Vec::new();
    if let Some(text) = object_text {
        match crate::store::object::ObjectUrl::parse(text) {
            Ok(url) => {
                object = Some(crate::store::object::ObjectDest {
                    url,
                    options: spec.s3.clone().unwrap_or_default(),
                })
            }
            Err(problem) => {
                error("/destination", format!("destination {text:?}: {problem}"));
                spelled_right = false;
            }
        }
    } else if spec.s3.is_some() {
        out_warnings.push((
            "/s3",
            "s3: these options apply to an s3://BUCKET/PREFIX destination only; this \
             destination is a path"
                .to_string(),
        ));
    }
    for (pointer, field, path) in [
        ("/source", "source", &spec.source),
        ("/destination", "destination", &spec.destination),
    ] {
        if object_text.is_some() && field == "destination" {
            continue;
        }
        if let Some(problem) = path_spelling(path) {
            error(pointer, format!("{field} {:?}: {problem}", path));
            spelled_right = false;
        }
    }
    for (index, name) in spec.exclude_if_present.iter().enumerate() {
        if let Some(problem) = marker_problem(name) {
            error(
                &format!("/exclude_if_present/{index}"),
                format!("exclude_if_present[{index}]: {name:?} {problem}"),
            );
        }
    }
    let source = resolve_path(&base, &spec.source);
    let destination = match object_text {
        Some(_) => spec.destination.clone(),
        None => resolve_path(&base, &spec.destination),
    };
    let source_place = Place::resolve(&source);
    let destination_place = Place::resolve(&destination);
    if spelled_right && object.is_none() && object_text.is_none() {
        let shown = format!(
            "{}{}",
            destination.display(),
            destination_place.spelled(&destination)
        );
        if let Some(which) = system_dirs().containing(&destination_place) {
            error(
                "/destination",
                format!(
                    "destination {shown} is {which}: backups go to a directory of their own, \
                 such as /mnt/backup/NAME or /var/backups/NAME"
                ),
            );
        } else if destination_place.is_same(&source_place) {
            error(
                "/destination",
                format!(
                    "destination {shown} is the same directory as source {}",
                    source.display()
                ),
            );
        } else if destination_place.is_within(&source_place) {
            error(
                "/destination",
                format!(
                    "destination {shown} is inside source {}: the backup would back itself up",
                    source.display()
                ),
            );
        } else if source_place.is_within(&destination_place) {
            error(
                "/destination",
                format!(
                    "source {}{} is inside destination {}",
                    source.display(),
                    source_place.spelled(&source),
                    destination.display()
                ),
            );
        }
    }
    if let Some(url) = &spec.healthcheck
        && let Err(reason) = crate::job::check_ping_url(url)
    {
        error("/healthcheck", format!("healthcheck: {reason}"));
    }

    let shadowed = shadowed_rules(lists);
    for (list, index, message) in &shadowed {
        debug_assert!(matches!(list, RuleList::IncludeDirs | RuleList::TrackDirs));
        out.push(diagnostic(
            file,
            text,
            &format!("/{}/{index}", list.field()),
            Severity::Warning,
            message.clone(),
        ));
    }
    // A rule that matches nothing in an existing source backs up nothing:
    // most often a typo. (Rules inside an excluded directory were just
    // reported as such.)
    if let Some(matcher) = &matcher
        && spelled_right
        && std::fs::metadata(&source).is_ok_and(|m| m.is_dir())
    {
        let unmatched =
            probe::unmatched_dir_rules(&source, matcher, &spec.include_dirs, &spec.track_dirs);
        for found in unmatched {
            let rule = found.rule;
            if shadowed
                .iter()
                .any(|(list, index, _)| (*list, *index) == (rule.list, rule.index))
            {
                continue;
            }
            let mut message = format!(
                "{rule}: {:?} matches no directory in source {}, so it backs up nothing",
                matcher.pattern(rule),
                source.display()
            );
            if let Some(hint) = found.hint {
                message.push_str(&format!(" ({hint})"));
            }
            out.push(diagnostic(
                file,
                text,
                &rule.pointer(),
                Severity::Warning,
                message,
            ));
        }
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
    if spelled_right && !source_place.exists() {
        out.push(diagnostic(
            file,
            text,
            "/source",
            Severity::Warning,
            format!("source {} does not exist (yet)", source.display()),
        ));
    }
    // strata never creates a destination's parents (SPEC §4): a missing
    // parent is most often a disk that is not mounted.
    for (pointer, message) in out_warnings {
        out.push(diagnostic(file, text, pointer, Severity::Warning, message));
    }
    if spelled_right && object_text.is_none() && !destination_place.parent_exists() {
        let parent = destination_place.real.parent().unwrap_or(Path::new("/"));
        out.push(diagnostic(
            file,
            text,
            "/destination",
            Severity::Warning,
            format!(
                "the parent directory {} of destination {} does not exist (only {} does): is \
                 the disk mounted? strata never creates it",
                parent.display(),
                destination.display(),
                destination_place.existing().display()
            ),
        ));
    }

    let job = Job {
        name,
        file: file.to_path_buf(),
        source,
        destination,
        object,
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
    };
    Some(Checked {
        job,
        source: source_place,
        destination: destination_place,
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
                // Long and deeply repeated patterns, the shapes that made
                // rule compilation panic or take gigabytes.
                (
                    prop_oneof![
                        Just(("a", "")),
                        Just(("?", "")),
                        Just(("*a", "")),
                        Just(("[[", "")),
                        Just(("**/", "")),
                        Just(("{a,", "}")),
                        Just(("a,", "")),
                    ],
                    1usize..100_000,
                )
                    .prop_map(|((open, close), n)| Value::String(format!(
                        "{}x{}",
                        open.repeat(n),
                        close.repeat(n)
                    ))),
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

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]
            /// A job that passes the schema, with long and deeply repeated
            /// rules in any list: errors naming the field, never a panic.
            #[test]
            fn hostile_rules_in_a_valid_job_are_errors(
                list in prop_oneof![
                    Just("include_dirs"), Just("track_dirs"), Just("exclude_dirs"),
                    Just("include_files"), Just("track_files"), Just("exclude_files"),
                ],
                unit in prop_oneof![
                    Just(("a", "")), Just(("?", "")), Just(("*a", "")), Just(("[[", "")),
                    Just(("**/", "")), Just(("{a,", "}")), Just(("[!a]", "")),
                ],
                n in 1usize..200_000,
                copies in 1usize..30,
            ) {
                let rule = format!("{}x{}", unit.0.repeat(n), unit.1.repeat(n));
                let job = serde_json::json!({
                    "source": "/nonexistent/s", "destination": "/nonexistent/d",
                    "track_dirs": ["."], list: vec![rule; copies],
                });
                let text = job.to_string();
                let (job, diagnostics) = check_text(Path::new("/nonexistent/jobs.d/j.json"), &text);
                let errors: Vec<&Diagnostic> =
                    diagnostics.iter().filter(|d| d.is_error()).collect();
                prop_assert_eq!(job.is_some(), errors.is_empty());
                for d in errors {
                    prop_assert!(d.message.len() < 400, "{}", d.message);
                }
            }
        }
    }
}
