//! The Prometheus textfile (`--metrics-file`): per job, the time, status,
//! duration and counters of its last run, for node_exporter's textfile
//! collector or anything else that reads the text exposition format.
//!
//! The file covers every job, while one `strata run` runs some of them: an
//! update reads the previous file, replaces the values of the jobs that ran
//! and keeps the others (as they were written: the file is its own state,
//! so a job's values never change unless the job runs). Jobs that are no
//! longer defined are dropped. Skipped (locked) and dry runs change nothing.
//! The read-modify-write holds an `flock` on a hidden lock file beside the
//! metrics file, so that the daemon and a `strata run` by hand do not lose
//! each other's update, and the new file replaces the old one atomically.
//!
//! The format is written and read here, not by a Prometheus client crate:
//! those keep live registries for a scrape endpoint, and none reads a file
//! back; a textfile of gauges is a few lines of text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::report::{JobReport, Status};
use crate::store::StoreError;

/// The gauges, in the order the file lists them: name, help.
pub const METRICS: &[(&str, &str)] = &[
    (
        LAST_RUN,
        "Unix time at which the job's last run (success, partial or failed) ended.",
    ),
    (
        LAST_SUCCESS,
        "Unix time at which the job's last successful run ended (0: none recorded).",
    ),
    (
        LAST_STATUS,
        "Status of the job's last run: 0 success, 1 partial, 2 failed.",
    ),
    (
        "strata_last_duration_seconds",
        "Wall time of the job's last run, hooks included.",
    ),
    (
        "strata_files_selected",
        "Files the rules selected in the source in the last run.",
    ),
    (
        "strata_files_tracked",
        "Of the selected files, how many are tracked (versioned).",
    ),
    (
        "strata_files_new",
        "Files new to the mirror in the last run.",
    ),
    (
        "strata_files_changed",
        "Files whose mirror copy the last run replaced.",
    ),
    (
        "strata_files_deleted",
        "Tracked files the last run moved to the increment's deleted/.",
    ),
    (
        "strata_files_removed",
        "Files the last run removed from the mirror (tracked and included-only).",
    ),
    (
        "strata_file_errors",
        "Files the last run could not back up.",
    ),
    (
        "strata_bytes_copied",
        "Bytes the last run copied from source to mirror.",
    ),
    (
        "strata_mirror_files",
        "Files in the mirror after the last run.",
    ),
];

const LAST_RUN: &str = "strata_last_run_timestamp_seconds";
const LAST_SUCCESS: &str = "strata_last_success_timestamp_seconds";
const LAST_STATUS: &str = "strata_last_status";

/// Metric name -> value, for one job.
pub type JobValues = BTreeMap<&'static str, f64>;

/// Job name -> its values.
pub type Values = BTreeMap<String, JobValues>;

/// Why the metrics file was not written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Reading the old file or taking the lock failed.
    #[error("cannot update the metrics file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the new file failed.
    #[error("cannot write the metrics file: {0}")]
    Write(#[from] StoreError),
}

/// The values a run gives its job, or `None` for a run that does not count
/// (skipped because locked, or a dry run). `ended` is when it ended; a
/// run that is not a success keeps the previous last-success time, which
/// [`merge`] takes care of.
pub fn values_of(report: &JobReport, ended: DateTime<Utc>) -> Option<JobValues> {
    let status = match report.status {
        Status::Success => 0.0,
        Status::Partial => 1.0,
        Status::Failed => 2.0,
        Status::SkippedLocked | Status::DryRun => return None,
    };
    let at = ended.timestamp_millis() as f64 / 1000.0;
    let s = &report.stats;
    let mut v = JobValues::new();
    v.insert(LAST_RUN, at);
    if report.status == Status::Success {
        v.insert(LAST_SUCCESS, at);
    }
    v.insert(LAST_STATUS, status);
    v.insert("strata_last_duration_seconds", report.seconds);
    v.insert("strata_files_selected", s.selected as f64);
    v.insert("strata_files_tracked", s.tracked as f64);
    v.insert("strata_files_new", s.new as f64);
    v.insert("strata_files_changed", s.changed as f64);
    v.insert("strata_files_deleted", s.deleted as f64);
    v.insert("strata_files_removed", s.removed as f64);
    v.insert("strata_file_errors", s.errors as f64);
    v.insert("strata_bytes_copied", s.bytes_copied as f64);
    v.insert("strata_mirror_files", s.mirror as f64);
    Some(v)
}

/// A run's values over the job's previous ones: all replaced, except the
/// last success time, which only a success moves (and which is 0 for a job
/// that never succeeded, so that an alert on its age fires).
pub fn merge(previous: Option<&JobValues>, new: JobValues) -> JobValues {
    let mut out = new;
    if !out.contains_key(LAST_SUCCESS) {
        let before = previous.and_then(|p| p.get(LAST_SUCCESS)).copied();
        out.insert(LAST_SUCCESS, before.unwrap_or(0.0));
    }
    out
}

/// Read a metrics file as [`render`] writes it. Lines it does not know
/// (other metrics, comments) are skipped.
pub fn parse(text: &str) -> Values {
    let mut values = Values::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = line.split_once("{job=\"") else {
            continue;
        };
        let Some(&(name, _)) = METRICS.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let Some((job, value)) = unescape_label(rest) else {
            continue;
        };
        let Some(value) = value
            .strip_prefix("} ")
            .and_then(|v| v.trim().parse::<f64>().ok())
        else {
            continue;
        };
        values.entry(job).or_default().insert(name, value);
    }
    values
}

/// A label value up to its closing quote, unescaped, and what follows.
fn unescape_label(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text exposition format: HELP and TYPE lines, then one sample per
/// job, for each metric.
pub fn render(values: &Values) -> String {
    let mut out = String::new();
    for (name, help) in METRICS {
        let samples: Vec<(&String, f64)> = values
            .iter()
            .filter_map(|(job, v)| v.get(name).map(|x| (job, *x)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (job, value) in samples {
            let _ = writeln!(out, "{name}{{job=\"{}\"}} {value}", escape_label(job));
        }
    }
    out
}

/// Update the metrics file at `path` with the runs in `reports`, keeping
/// the values of the other jobs in `defined` and dropping jobs that are
/// not defined any more.
pub fn update(
    path: &Path,
    reports: &[JobReport],
    defined: &[&str],
    ended: DateTime<Utc>,
) -> Result<(), MetricsError> {
    let io = |source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let _lock = lock_beside(path).map_err(io)?;
    let mut values = match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Values::new(),
        Err(e) => return Err(io(e)),
    };
    values.retain(|job, _| defined.contains(&job.as_str()));
    for report in reports {
        if !defined.contains(&report.job.as_str()) {
            continue;
        }
        if let Some(new) = values_of(report, ended) {
            let merged = merge(values.get(&report.job), new);
            values.insert(report.job.clone(), merged);
        }
    }
    write_atomic(path, render(&values).as_bytes()).map_err(io)
}

/// Write the textfile atomically: a temp file beside it (node_exporter
/// skips names that do not end in `.prom`), fsync, rename.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let io = |e| e;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Take an exclusive `flock` on `.NAME.lock` beside `path`, waiting for it;
/// released when the file is dropped. (Not on the metrics file itself: it
/// is replaced by a rename, so a lock on it would guard a file that is
/// about to go.)
fn lock_beside(path: &Path) -> std::io::Result<File> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let lock = path.with_file_name(format!(".{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock)?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(job: &str, status: Status, new: u64) -> JobReport {
        let mut r = JobReport::failed(job, "x");
        r.status = status;
        r.stats.new = new;
        r.stats.mirror = 10;
        r.seconds = 1.5;
        r
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn render_then_parse_is_the_identity() {
        let mut values = Values::new();
        values.insert(
            "home".into(),
            values_of(&report("home", Status::Success, 3), at(1_700_000_000)).unwrap(),
        );
        values.insert(
            "we\"ird\\job".into(),
            merge(
                None,
                values_of(&report("x", Status::Failed, 0), at(1_700_000_100)).unwrap(),
            ),
        );
        let text = render(&values);
        assert_eq!(parse(&text), values);
        assert!(text.contains(
            "# HELP strata_last_status Status of the job's last run: 0 success, 1 partial, 2 failed.\n\
             # TYPE strata_last_status gauge\n\
             strata_last_status{job=\"home\"} 0\n\
             strata_last_status{job=\"we\\\"ird\\\\job\"} 2\n"
        ), "{text}");
        assert!(
            text.contains("strata_last_duration_seconds{job=\"home\"} 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("strata_files_new{job=\"home\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn only_a_success_moves_the_last_success_time() {
        let ok = values_of(&report("a", Status::Success, 1), at(100)).unwrap();
        let failed = values_of(&report("a", Status::Failed, 0), at(200)).unwrap();
        let merged = merge(Some(&ok), failed.clone());
        assert_eq!(merged[LAST_SUCCESS], 100.0);
        assert_eq!(merged[LAST_RUN], 200.0);
        assert_eq!(merged[LAST_STATUS], 2.0);
        assert_eq!(merge(None, failed)[LAST_SUCCESS], 0.0);
        let partial = values_of(&report("a", Status::Partial, 0), at(300)).unwrap();
        assert_eq!(merge(Some(&ok), partial)[LAST_STATUS], 1.0);
    }

    #[test]
    fn skipped_and_dry_runs_do_not_count() {
        assert!(values_of(&report("a", Status::SkippedLocked, 0), at(1)).is_none());
        assert!(values_of(&report("a", Status::DryRun, 0), at(1)).is_none());
    }

    #[test]
    fn update_keeps_other_jobs_and_drops_undefined_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.prom");
        let runs = [
            report("a", Status::Success, 1),
            report("b", Status::Success, 2),
            report("gone", Status::Success, 3),
        ];
        update(&path, &runs, &["a", "b", "gone"], at(100)).unwrap();
        update(
            &path,
            &[report("a", Status::Failed, 0)],
            &["a", "b"],
            at(200),
        )
        .unwrap();
        let values = parse(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(values.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(values["a"][LAST_STATUS], 2.0);
        assert_eq!(values["a"][LAST_SUCCESS], 100.0);
        assert_eq!(values["b"]["strata_files_new"], 2.0);
        assert_eq!(values["b"][LAST_RUN], 100.0);
        // Only the metrics file and its lock: no temp file left behind.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".strata.prom.lock", "strata.prom"]);
    }

    #[test]
    fn foreign_lines_are_ignored() {
        let values = parse(
            "# a comment\nnode_load1 3\nstrata_files_new{job=\"a\"} 4\nstrata_files_new{job=\"b\"} x\n",
        );
        assert_eq!(values.len(), 1);
        assert_eq!(values["a"]["strata_files_new"], 4.0);
    }
}
