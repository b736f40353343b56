//! `strata list`: every job with its schedule, next run, last run and
//! destination, as a table or (`--json`) an array of objects. Problems in
//! job files go to stderr as `validate` prints them.

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::zone::machine_zone;
use super::{Config, ExitCode, load_jobs_dir};
use crate::job::Job;
use crate::store::Layout;
use crate::store::meta::{RunRecord, last_run};
use crate::tz::Zone;

/// One job, as `list --json` prints it.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    file: PathBuf,
    enabled: bool,
    /// The cron expression, if any.
    schedule: Option<String>,
    /// When the daemon runs it next: RFC 3339 with the local offset; `null`
    /// when it has no schedule, is disabled, or never fires again.
    next_run: Option<String>,
    /// The latest record of its run log, as stored.
    last_run: Option<RunRecord>,
    destination: PathBuf,
}

/// Run `list`.
pub fn run(config: &Config) -> ExitCode {
    let loaded = match load_jobs_dir(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    let zone = machine_zone();
    let now = Utc::now();
    let rows: Vec<Row> = loaded
        .jobs
        .iter()
        .map(|job| row(job, &now, &zone))
        .collect();
    if config.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
    } else {
        print!("{}", table(&rows, &zone));
    }
    if loaded.has_errors() {
        ExitCode::Failure
    } else {
        ExitCode::Success
    }
}

fn row(job: &Job, now: &DateTime<Utc>, zone: &Zone) -> Row {
    let next = job
        .schedule
        .as_ref()
        .filter(|_| job.enabled)
        .and_then(|s| s.next_after(now, zone));
    let last = match last_run(&Layout::new(&job.destination).runs()) {
        Ok(last) => last,
        Err(e) => {
            eprintln!("strata: {}: {e}", job.name);
            None
        }
    };
    Row {
        name: job.name.clone(),
        file: job.file.clone(),
        enabled: job.enabled,
        schedule: job.schedule.as_ref().map(|s| s.source().to_string()),
        next_run: next.map(|t| zone.at(&t).to_rfc3339_opts(SecondsFormat::Secs, false)),
        last_run: last,
        destination: job.destination.clone(),
    }
}

/// The text table: times in local time, with their offsets.
fn table(rows: &[Row], zone: &Zone) -> String {
    let header = [
        "job",
        "enabled",
        "schedule",
        "next run",
        "last run",
        "status",
        "destination",
    ];
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let next = match (&r.schedule, r.enabled, &r.next_run) {
            (None, _, _) => "-".to_string(),
            (Some(_), false, _) => "-".to_string(),
            (Some(_), true, None) => "never".to_string(),
            (Some(_), true, Some(t)) => local(t, zone),
        };
        let (last, status) = match &r.last_run {
            Some(run) => (local(&run.start, zone), run.status.clone()),
            None => ("never".to_string(), "-".to_string()),
        };
        cells.push(vec![
            r.name.clone(),
            if r.enabled { "yes" } else { "no" }.to_string(),
            r.schedule.clone().unwrap_or_else(|| "-".to_string()),
            next,
            last,
            status,
            r.destination.display().to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &cells {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// An RFC 3339 time in local time, as the table shows it (as stored, if
/// it does not parse).
fn local(rfc3339: &str, zone: &Zone) -> String {
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => zone.format(&t.with_timezone(&Utc)),
        Err(_) => rfc3339.to_string(),
    }
}
