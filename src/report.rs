//! Statistics and the consolidated report: one row per job and a totals row,
//! rendered as a table or serialized as JSON. Stats add up (`AddAssign`), so
//! the totals row is the sum of the job rows.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::entry::Stats;

/// How a job's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything was backed up.
    Success,
    /// The run committed, but some files could not be backed up.
    Partial,
    /// The run changed nothing (source missing, empty scan, …) or broke
    /// off; or it committed, but its `after` hook failed or its index could
    /// not be written (the message says so).
    Failed,
    /// Another process holds the job's lock; nothing was done.
    SkippedLocked,
    /// A dry run: the plan was computed, nothing was written.
    DryRun,
}

impl Status {
    /// The label used in the table and the run log.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Partial => "partial",
            Status::Failed => "failed",
            Status::SkippedLocked => "skipped (locked)",
            Status::DryRun => "dry run",
        }
    }

    /// Whether this status makes the process exit 1.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Partial | Status::Failed)
    }
}

pub use crate::entry::PathError;

/// One job's row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobReport {
    /// The job's name (or the job file, for a file that did not load).
    pub job: String,
    /// How it ended.
    pub status: Status,
    /// Its counters.
    pub stats: Stats,
    /// Wall time, seconds.
    pub seconds: f64,
    /// The increment written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub increment: Option<String>,
    /// Why the job failed, for a failed job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Per-path errors (the job is partial).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<PathError>,
    /// Things worth knowing that did not fail the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Increments the job's retention policy removed after the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<String>,
}

impl JobReport {
    /// A row for a job that did not get to run.
    pub fn failed(job: impl Into<String>, message: impl Into<String>) -> JobReport {
        JobReport {
            job: job.into(),
            status: Status::Failed,
            stats: Stats::default(),
            seconds: 0.0,
            increment: None,
            message: Some(message.into()),
            errors: Vec::new(),
            warnings: Vec::new(),
            pruned: Vec::new(),
        }
    }

    /// Whether the job got to scan (a failed or skipped job counted
    /// nothing but the mirror as it stands).
    pub fn ran(&self) -> bool {
        !matches!(self.status, Status::Failed | Status::SkippedLocked)
    }

    /// Set the duration.
    pub fn took(mut self, d: Duration) -> JobReport {
        self.seconds = d.as_secs_f64();
        self
    }

    /// The one-line summary of the run, as the log and the healthcheck
    /// ping show it.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let mut line = format!(
            "{}: {}: {} new, {} changed, {} deleted, {} removed, {} copied in {:.2}s",
            self.job,
            self.status.as_str(),
            s.new,
            s.changed,
            s.deleted,
            s.removed,
            human_bytes(s.bytes_copied),
            self.seconds
        );
        if let Some(increment) = &self.increment {
            line.push_str(&format!(", increment {increment}"));
        }
        if s.errors > 0 {
            line.push_str(&format!(", {} file error(s)", s.errors));
        }
        if let Some(message) = &self.message {
            line.push_str(&format!(": {message}"));
        }
        line
    }

    /// Log the run: the summary line (info, or a warning for a failed or
    /// partial run, with the counts as fields for JSON logs), then each
    /// file error and each warning with its path.
    pub fn log_summary(&self) {
        let s = &self.stats;
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    job = %self.job,
                    status = self.status.as_str(),
                    selected = s.selected,
                    new = s.new,
                    changed = s.changed,
                    deleted = s.deleted,
                    removed = s.removed,
                    bytes_copied = s.bytes_copied,
                    errors = s.errors,
                    seconds = self.seconds,
                    increment = self.increment.as_deref().unwrap_or(""),
                    "{}",
                    self.summary()
                )
            };
        }
        if self.status.is_failure() {
            line!(warn);
        } else {
            line!(info);
        }
        for e in &self.errors {
            tracing::warn!(job = %self.job, path = %e.path, "{}: {}: {}", self.job, e.path, e.message);
        }
        for w in &self.warnings {
            tracing::warn!(job = %self.job, "{}: warning: {w}", self.job);
        }
        if !self.pruned.is_empty() {
            tracing::info!(
                job = %self.job,
                pruned = self.pruned.len(),
                "{}: retention removed {}: {}",
                self.job,
                plural(self.pruned.len() as u64, "increment", "increments"),
                self.pruned.join(", ")
            );
        }
    }
}

/// The report of a `run` or `run-all`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// One row per job, in job file order.
    pub jobs: Vec<JobReport>,
    /// The sum of the rows.
    pub totals: Stats,
    /// Wall time of the whole command, seconds.
    pub seconds: f64,
}

impl Report {
    /// A report over rows; totals are summed here.
    pub fn new(jobs: Vec<JobReport>, took: Duration) -> Report {
        let mut totals = Stats::default();
        for job in &jobs {
            totals += job.stats;
        }
        Report {
            jobs,
            totals,
            seconds: took.as_secs_f64(),
        }
    }

    /// Whether any job failed or ended partial.
    pub fn has_failures(&self) -> bool {
        self.jobs.iter().any(|j| j.status.is_failure())
    }

    /// The report as a table (wide), then each job's notes.
    pub fn to_table(&self) -> String {
        self.render(None)
    }

    /// The report for a terminal `width` columns wide: the table when it
    /// fits (or when the width is unknown), else one block per job; then
    /// each job's message, errors, warnings, increment and retention, once.
    pub fn render(&self, width: Option<usize>) -> String {
        let table = self.wide_table();
        let fits = width.is_none_or(|w| table.lines().all(|l| l.chars().count() <= w));
        let mut out = if fits { table } else { self.blocks() };
        out.push_str(&self.notes());
        out
    }

    /// How the jobs ended, for the totals row: `2 jobs, 1 failed, 1
    /// partial`, or `1 job, ok`.
    pub fn status_summary(&self) -> String {
        let count = |status: Status| self.jobs.iter().filter(|j| j.status == status).count();
        let mut parts = vec![plural(self.jobs.len() as u64, "job", "jobs")];
        for (status, word) in [
            (Status::Failed, "failed"),
            (Status::Partial, "partial"),
            (Status::SkippedLocked, "skipped (locked)"),
            (Status::DryRun, "dry run"),
        ] {
            let n = count(status);
            if n > 0 {
                parts.push(format!("{n} {word}"));
            }
        }
        if parts.len() == 1 {
            parts.push("ok".into());
        }
        parts.join(", ")
    }

    fn wide_table(&self) -> String {
        let header = [
            "job", "status", "selected", "tracked", "mirror", "new", "changed", "deleted",
            "removed", "copied", "time", "errors",
        ];
        // A job that did not run shows what it did not count as `-`, and
        // the mirror as it stands.
        let row = |name: &str, status: &str, s: &Stats, secs: f64, ran: bool| -> Vec<String> {
            let n = |v: u64| if ran { v.to_string() } else { "-".into() };
            vec![
                name.to_string(),
                status.to_string(),
                n(s.selected),
                n(s.tracked),
                s.mirror.to_string(),
                n(s.new),
                n(s.changed),
                n(s.deleted),
                n(s.removed),
                if ran {
                    human_bytes(s.bytes_copied)
                } else {
                    "-".into()
                },
                format!("{secs:.2}s"),
                s.errors.to_string(),
            ]
        };
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for j in &self.jobs {
            rows.push(row(&j.job, j.status.as_str(), &j.stats, j.seconds, j.ran()));
        }
        rows.push(row(
            "TOTAL",
            &self.status_summary(),
            &self.totals,
            self.seconds,
            true,
        ));
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (i, r) in rows.iter().enumerate() {
            if i == rows.len() - 1 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "{}", rule.join("  "));
            }
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, w))| {
                    if c < 2 {
                        format!("{cell:<w$}")
                    } else {
                        format!("{cell:>w$}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        out
    }

    /// One block per job, then the totals: for a narrow terminal.
    fn blocks(&self) -> String {
        let mut out = String::new();
        let counts = |s: &Stats| {
            format!(
                "  {} new, {} changed, {} deleted, {} removed from the mirror\n",
                s.new, s.changed, s.deleted, s.removed
            )
        };
        for j in &self.jobs {
            let s = &j.stats;
            let _ = writeln!(out, "{}: {}", j.job, j.status.as_str());
            if j.ran() {
                let _ = writeln!(
                    out,
                    "  {} selected ({} tracked), {} in the mirror",
                    plural(s.selected, "file", "files"),
                    s.tracked,
                    s.mirror
                );
                out.push_str(&counts(s));
                let _ = writeln!(
                    out,
                    "  {} copied in {:.2}s, {}",
                    human_bytes(s.bytes_copied),
                    j.seconds,
                    plural(s.errors, "error", "errors")
                );
            } else {
                let _ = writeln!(
                    out,
                    "  {} in the mirror, as it stands",
                    plural(s.mirror, "file", "files")
                );
            }
        }
        let t = &self.totals;
        let _ = writeln!(out, "TOTAL: {}", self.status_summary());
        out.push_str(&counts(t));
        let _ = writeln!(
            out,
            "  {} copied in {:.2}s, {}",
            human_bytes(t.bytes_copied),
            self.seconds,
            plural(t.errors, "error", "errors")
        );
        out
    }

    /// Each job's message, errors, warnings, increment and retention.
    fn notes(&self) -> String {
        let mut out = String::new();
        for j in &self.jobs {
            if let Some(m) = &j.message {
                let _ = writeln!(out, "{}: {m}", j.job);
            }
            for e in &j.errors {
                let _ = writeln!(out, "{}: error: {}: {}", j.job, e.path, e.message);
            }
            for w in &j.warnings {
                let _ = writeln!(out, "{}: warning: {w}", j.job);
            }
            if let Some(increment) = &j.increment {
                let _ = writeln!(out, "{}: wrote increment {increment}", j.job);
            }
            if !j.pruned.is_empty() {
                let _ = writeln!(
                    out,
                    "{}: retention removed {}: {}",
                    j.job,
                    plural(j.pruned.len() as u64, "increment", "increments"),
                    j.pruned.join(", ")
                );
            }
        }
        out
    }
}

/// A count and its noun: `1 file`, `2 files`, `0 files`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Bytes in B, KiB, MiB, GiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_the_sum_of_rows() {
        let mut a = JobReport::failed("a", "x");
        a.stats.new = 2;
        a.stats.bytes_copied = 10;
        let mut b = JobReport::failed("b", "y");
        b.stats.new = 3;
        b.status = Status::Success;
        let report = Report::new(vec![a, b], Duration::from_secs(1));
        assert_eq!(report.totals.new, 5);
        assert_eq!(report.totals.bytes_copied, 10);
        assert!(report.has_failures());
        let table = report.to_table();
        assert!(table.contains("TOTAL"), "{table}");
        assert!(table.contains("a: x"), "{table}");
    }

    #[test]
    fn summary_is_one_line_with_the_counts() {
        let mut report = JobReport::failed("home", "x");
        report.message = None;
        report.status = Status::Success;
        report.stats.new = 3;
        report.stats.changed = 1;
        report.stats.bytes_copied = 2048;
        report.seconds = 0.5;
        report.increment = Some("backup_20240503_090000".into());
        let line = report.summary();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with("home: success: 3 new, 1 changed, 0 deleted, 0 removed"),
            "{line}"
        );
        assert!(
            line.ends_with("in 0.50s, increment backup_20240503_090000"),
            "{line}"
        );
    }

    #[test]
    fn the_totals_say_how_each_job_ended_and_narrow_means_blocks() {
        let row = |name: &str, status: Status| {
            let mut r = JobReport::failed(name, "x");
            r.message = None;
            r.status = status;
            r.stats.mirror = 2163;
            r
        };
        let two_partial = Report::new(
            vec![row("a", Status::Partial), row("b", Status::Partial)],
            Duration::from_secs(1),
        );
        assert_eq!(two_partial.status_summary(), "2 jobs, 2 partial");
        let mixed = Report::new(
            vec![row("a", Status::Success), row("b", Status::Failed)],
            Duration::from_secs(1),
        );
        assert_eq!(mixed.status_summary(), "2 jobs, 1 failed");
        let one = Report::new(vec![row("a", Status::Success)], Duration::ZERO);
        assert_eq!(one.status_summary(), "1 job, ok");
        let wide = mixed.render(None);
        assert!(wide.lines().any(|l| l.len() > 80), "{wide}");
        let narrow = mixed.render(Some(80));
        assert!(narrow.lines().all(|l| l.len() <= 80), "{narrow}");
        assert!(
            narrow.contains("b: failed\n  2163 files in the mirror, as it stands"),
            "{narrow}"
        );
        assert!(narrow.contains("TOTAL: 2 jobs, 1 failed"), "{narrow}");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
