//! Job files: the format ([`model`]), loading a jobs directory and checking
//! every file ([`load`]), where sources and destinations really are and
//! what must not overlap ([`overlap`]), whether directory rules match
//! anything in the source ([`probe`]), mapping problems to
//! `FILE:LINE:COL` ([`locate`]), and the format's manual page ([`man`]).
//!
//! Loading returns every job that is valid *and* every problem found, so that
//! one broken file never stops the others.

pub mod load;
pub mod locate;
pub mod man;
pub mod model;
pub mod overlap;
pub mod probe;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use load::{Loaded, load_paths};
pub use model::{Compare, Hooks, JobFile, MaxDelete, Retention, job_schema, job_schema_text};

use crate::schedule::Schedule;
use crate::select::Matcher;

/// A job ready to run: paths resolved, rules compiled, schedule parsed.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job's name (the `name` field or the file stem).
    pub name: String,
    /// The job file it came from.
    pub file: PathBuf,
    /// Absolute path of the tree to back up.
    pub source: PathBuf,
    /// Absolute path of the backup destination; for an object-store
    /// destination, its URL as written (`s3://BUCKET/PREFIX`).
    pub destination: PathBuf,
    /// The object-store destination, when `destination` is an `s3://` URL.
    pub object: Option<crate::store::object::ObjectDest>,
    /// When the daemon runs it; `None`: only when asked.
    pub schedule: Option<Schedule>,
    /// `run-all` and the daemon skip a disabled job.
    pub enabled: bool,
    /// The compiled selection rules.
    pub matcher: Matcher,
    /// How changes are recognised.
    pub compare: Compare,
    /// The retention policy, if any.
    pub retention: Option<Retention>,
    /// Commands run around each run.
    pub hooks: Option<Hooks>,
    /// The healthcheck ping URL.
    pub healthcheck: Option<String>,
    /// How many files a run may remove from the mirror.
    pub max_delete: Option<MaxDelete>,
    /// Do not cross mount points.
    pub one_file_system: bool,
    /// Marker file names that exclude the directory holding them.
    pub exclude_if_present: Vec<String>,
    /// Exclude directories tagged with `CACHEDIR.TAG`.
    pub exclude_caches: bool,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The job cannot run.
    Error,
    /// Worth a look; the job still runs.
    Warning,
}

/// One problem found in a job file, located in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The job file.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// JSON pointer to the value concerned (empty: the whole file).
    pub pointer: String,
}

impl Diagnostic {
    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Whether `url` can be pinged: an `http` or `https` URL with a host and
/// no whitespace. Checked without an HTTP library, so that validating job
/// files pulls none in.
pub fn check_ping_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| "the URL must start with http:// or https://".to_string())?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the URL holds a space or a control character".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// Resolve `path` against `base` and drop `.` and `..` components
/// lexically (the path may not exist yet).
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    use std::path::Component;
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_path_is_lexical() {
        let base = Path::new("/etc/strata/jobs.d");
        assert_eq!(
            resolve_path(base, Path::new("../data/./x")),
            PathBuf::from("/etc/strata/data/x")
        );
        assert_eq!(resolve_path(base, Path::new("/abs")), PathBuf::from("/abs"));
    }
}
