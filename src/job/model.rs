//! The job file format: these types *are* the format and the JSON Schema.
//!
//! Every field carries a doc comment, which schemars turns into the schema's
//! `description`; `deny_unknown_fields` turns into `additionalProperties:
//! false`. `strata schema` prints what [`job_schema`] returns.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One job file, as written by the user (paths not yet resolved).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "strata job")]
pub struct JobFile {
    /// The JSON Schema this file follows; lets editors complete and check it.
    /// Ignored by strata.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,

    /// Job name; default: the file stem. Letters, digits, `.`, `_`, `-`;
    /// unique across the jobs directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"), example = &"home")]
    pub name: Option<String>,

    /// The tree to back up. A relative path is resolved against the directory
    /// that holds the job file. Written as it is: strata expands neither `~`
    /// nor `$VARIABLES`.
    #[schemars(example = "/home/me")]
    pub source: PathBuf,

    /// Where `mirror/`, the increments `backup_YYYYMMDD_HHMMSS/` and the job's
    /// state `.strata/` live: a path, or an object store as
    /// `s3://BUCKET/PREFIX` (the same layout as keys; see `s3`). Relative
    /// paths as for `source`. Must not overlap
    /// `source`, any other job's source or destination, or a system
    /// directory. Its parent directory should exist: strata never creates it.
    #[schemars(example = "/mnt/backup/home", example = "s3://my-bucket/backups/home")]
    pub destination: PathBuf,

    /// How to reach the object store of an `s3://BUCKET/PREFIX`
    /// destination: endpoint, region, path-style requests, and the names of
    /// the environment variables that hold the credentials (never the
    /// credentials themselves). Absent: the `AWS_*` environment and
    /// `~/.aws/credentials`, as the AWS tools read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "crate::store::object::ObjectOptions", example = serde_json::json!({"endpoint": "http://127.0.0.1:9000", "access_key_id_env": "BACKUP_S3_KEY_ID", "secret_access_key_env": "BACKUP_S3_SECRET"}))]
    pub s3: Option<crate::store::object::ObjectOptions>,

    /// When the daemon runs the job, in local time: a crontab(5) line
    /// (`min hour dom mon dow`, day of week 0-7 with 0 and 7 Sunday), 6 or 7
    /// fields with seconds first and year last, or `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`. Absent: the job runs only when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = "30 2 * * *")]
    pub schedule: Option<String>,

    /// A disabled job is validated, but `run-all` and the daemon skip it;
    /// `strata run NAME` still runs it.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    #[schemars(example = false)]
    pub enabled: bool,

    /// Directories whose files are mirrored (no history). A glob on the path
    /// relative to source (`Documents`, `Projects/*`, `.` for all), or with
    /// the suffix `:rec` a glob on directory names at any depth. A rule
    /// covers every file below the directories it matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000), example = ["Music", "Projects/*"])]
    pub include_dirs: Vec<String>,

    /// Directories whose files are mirrored and versioned in the increments.
    /// Same syntax as `include_dirs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000), example = ["Documents", ".config"])]
    pub track_dirs: Vec<String>,

    /// Directories never entered: nothing below them is selected, whatever
    /// other rule matches. Same syntax as `include_dirs` (`node_modules:rec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000), example = ["node_modules:rec", ".cache"])]
    pub exclude_dirs: Vec<String>,

    /// Files that are mirrored (no history). A name glob for files directly
    /// in source (`.*`), with `:rec` at any depth (`*.pdf:rec`), or
    /// `folder/glob` for files directly in that folder (`docs/*.md`, with
    /// `:rec` at any depth below it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000), example = [".*"])]
    pub include_files: Vec<String>,

    /// Files that are mirrored and versioned. Same syntax as `include_files`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000), example = ["*.md:rec", "docs/*.odt"])]
    pub track_files: Vec<String>,

    /// Files taken out of what directory rules selected. A file that an
    /// `include_files` or `track_files` rule matches is kept. Same syntax as
    /// `include_files` (`*.log:rec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000), example = ["*.log:rec"])]
    pub exclude_files: Vec<String>,

    /// Which increments `strata prune` keeps. Buckets are in local time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Retention", example = serde_json::json!({"keep_daily": 7, "keep_weekly": 4}))]
    pub retention: Option<Retention>,

    /// How a changed entry is recognised: `metadata` (kind, size, mtime,
    /// permission bits, owner, group, hardlink group, and the extended
    /// attributes of entries whose ctime moved) or `checksum` (also the
    /// content hash; reads every file).
    #[serde(default, skip_serializing_if = "is_default")]
    #[schemars(schema_with = "compare_schema")]
    pub compare: Compare,

    /// Shell commands run around each run of the job (never around a dry
    /// run), each with `sh -c` in the directory of the job file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Hooks", example = serde_json::json!({"before": "mountpoint -q /mnt/backup"}))]
    pub hooks: Option<Hooks>,

    /// A healthchecks.io-style ping URL: strata requests `URL/start` when a
    /// run starts, `URL` when it succeeds and `URL/fail` when it fails or
    /// ends partial (10 s timeout; a failed ping is a warning, never a failed
    /// backup). `http://` or `https://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^https?://[^\s/?#]+"),
        length(max = 2000),
        example = "https://hc-ping.com/your-uuid"
    )]
    pub healthcheck: Option<String>,

    /// Refuse a run that would remove more than this from the mirror: a
    /// count of files (`100`) or a percentage of the files in the mirror
    /// (`"10%"`). The run is reported `failed` and changes nothing;
    /// `--force` accepts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "max_delete_schema", example = 100, example = "10%")]
    pub max_delete: Option<MaxDelete>,

    /// Stay on the source's filesystem: a directory that is a mount point of
    /// another filesystem is not entered (like `rsync -x`, `borg
    /// --one-file-system`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(example = true)]
    pub one_file_system: bool,

    /// Skip every directory below source that holds a file with one of these
    /// names, e.g. `[".nobackup"]` (like borg's `--exclude-if-present`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), example = [".nobackup"])]
    pub exclude_if_present: Vec<String>,

    /// Skip every directory below source that holds a valid `CACHEDIR.TAG`
    /// (the Cache Directory Tagging Specification, as `tar
    /// --exclude-caches-all` and borg's `--exclude-caches`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(example = true)]
    pub exclude_caches: bool,
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `compare` as a plain `enum`, so that a wrong value gets the message
/// "is not one of" the allowed values rather than a `oneOf` failure.
fn compare_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["metadata", "checksum"],
        "default": "metadata",
        "examples": ["checksum"],
        "description": "How a changed entry is recognised: `metadata` (kind, size, mtime, \
            permission bits, owner, group, hardlink group, and the extended attributes of \
            entries whose ctime moved) or `checksum` (also the content hash; reads every file)."
    })
}

/// `max_delete` as one schema for both forms (`minimum` applies to numbers
/// only, `pattern` to strings only), so that a wrong value gets a plain
/// message rather than a `oneOf` failure. The description comes from the
/// field's doc comment.
fn max_delete_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["integer", "string"],
        "minimum": 0,
        "pattern": MAX_DELETE_PERCENT
    })
}

pub use crate::guard::{MAX_DELETE_PERCENT, MaxDelete};

/// Commands run around a job's run, borgmatic style. Each runs with `sh -c`
/// in the directory of the job file, its output going to the log, with
/// `STRATA_JOB`, `STRATA_STATUS`, `STRATA_INCREMENT`, `STRATA_SOURCE`,
/// `STRATA_DESTINATION` and `STRATA_MESSAGE` in its environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Runs first, with the job's lock held. If it fails (exit status not 0)
    /// or times out, the backup does not run and the run is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), example = "mountpoint -q /mnt/backup")]
    pub before: Option<String>,
    /// Runs after a backup that committed (`success` or `partial`). If it
    /// fails, the run is reported `failed`; the backup stays as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), example = &"sync")]
    pub after: Option<String>,
    /// Runs when the run failed or ended partial (after `after`). A failure
    /// of it is a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), example = "mail -s 'backup failed' root < /dev/null")]
    pub on_error: Option<String>,
    /// Runs last, whatever happened. A failure of it is a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), example = "umount /mnt/backup")]
    pub finally: Option<String>,
    /// Seconds each hook may run; then it is stopped (SIGTERM, then SIGKILL
    /// to its whole process group) and counts as failed. Default 600.
    #[serde(default = "default_hook_timeout")]
    #[schemars(range(min = 1, max = 604800), example = 600)]
    pub timeout: u64,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            before: None,
            after: None,
            on_error: None,
            finally: None,
            timeout: default_hook_timeout(),
        }
    }
}

fn default_hook_timeout() -> u64 {
    600
}

pub use crate::diff::Compare;
pub use crate::history::retention::Retention;

/// What a field holds, in words, where the schema's own terms (a regular
/// expression, a list of types) would not tell a person: validation
/// messages say this, with the field's example from the schema. `field`
/// is the dotted path (`retention.keep_within`), a list's items its field
/// with `[]` (`track_dirs[]`). Other fields are described from their
/// schema type.
pub fn expected_words(field: &str) -> Option<&'static str> {
    Some(match field {
        "name" => "a name of letters, digits, `.`, `_` and `-`",
        "source" | "destination" => "a path in double quotes",
        "schedule" => "a crontab line or @daily, @hourly, … in double quotes",
        "healthcheck" => "an http:// or https:// URL in double quotes",
        "max_delete" => {
            "a count of files (a whole number, 0 or more) or a percentage from 0% to 100% \
             in double quotes"
        }
        "retention.keep_within" => {
            "numbers with units in double quotes, largest first: y (years), m (months), \
             w (weeks), d (days), h (hours)"
        }
        "hooks.before" | "hooks.after" | "hooks.on_error" | "hooks.finally" => {
            "a shell command in double quotes, not empty"
        }
        "hooks.timeout" => "a number of seconds from 1 to 604800",
        "include_dirs" | "track_dirs" | "exclude_dirs" => {
            "a list of directory globs in double quotes"
        }
        "include_dirs[]" | "track_dirs[]" | "exclude_dirs[]" => "a directory glob in double quotes",
        "include_files" | "track_files" | "exclude_files" => {
            "a list of file globs in double quotes"
        }
        "include_files[]" | "track_files[]" | "exclude_files[]" => "a file glob in double quotes",
        "exclude_if_present" => "a list of file names in double quotes",
        "exclude_if_present[]" => "a file name in double quotes",
        _ => return None,
    })
}

/// A value as a person writes it in a job file: JSON with a space after
/// each comma and colon.
pub fn example_text(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(example_text).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(members) => {
            let members: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), example_text(v)))
                .collect();
            format!("{{{}}}", members.join(", "))
        }
        other => other.to_string(),
    }
}

/// The JSON Schema of a job file, generated from [`JobFile`].
pub fn job_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(JobFile);
    serde_json::to_value(&schema).expect("a generated schema is valid JSON")
}

/// The schema as `strata schema` prints it and `schemas/job.schema.json`
/// stores it: pretty JSON with a final newline.
pub fn job_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&job_schema()).expect("schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_job_gets_defaults() {
        let job: JobFile =
            serde_json::from_str(r#"{"source": "src", "destination": "dst", "track_dirs": ["."]}"#)
                .unwrap();
        assert!(job.enabled);
        assert_eq!(job.compare, Compare::Metadata);
        assert_eq!(job.track_dirs, vec!["."]);
        assert!(job.include_files.is_empty());
    }

    #[test]
    fn unknown_field_is_rejected_by_serde_too() {
        let err =
            serde_json::from_str::<JobFile>(r#"{"source": "a", "destination": "b", "trak": 1}"#)
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `trak`"), "{err}");
    }

    #[test]
    fn schema_describes_every_field() {
        let schema = job_schema();
        let props = schema["properties"].as_object().unwrap();
        for (name, prop) in props {
            assert!(
                prop.get("description").is_some(),
                "field {name} has no description in the schema"
            );
        }
        assert_eq!(schema["additionalProperties"], serde_json::json!(false));
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["source", "destination"]);
    }
}
