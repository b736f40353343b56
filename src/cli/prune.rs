//! `strata prune NAME [--dry-run]`: apply the job's retention policy, under
//! the job's lock (an object store's lease), and say what is kept (by which rule) and what is removed.

use serde_json::json;

use super::history::local_time;
use super::{Config, ExitCode, lock_job, open_store, print_json};
use crate::history::prune::{PruneReport, prune};
use crate::history::prune_remote::prune_remote;
use crate::job::Job;
use crate::report::{human_bytes, plural};
use crate::store::{increment_time, parse_increment_name};
use crate::tz::Zone;

/// Prune one job.
pub fn run(config: &Config, job: &Job, dry_run: bool) -> ExitCode {
    if job.object.is_some() {
        return run_object(config, job, dry_run);
    }
    // No destination (the job never ran, or the disk is not mounted): an
    // error that says so, and nothing created.
    let store = match open_store(job) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let _lock = match lock_job(config, job, &store) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let zone = super::zone::machine_zone();
    let report = match prune(
        &store,
        job.retention.as_ref(),
        &zone,
        dry_run,
        &config.faults,
    ) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("strata: {}: {e}", job.name);
            return ExitCode::Failure;
        }
    };
    show(config, job, dry_run, &report, &zone)
}

/// Prune an object-store destination, with its lease held.
fn run_object(config: &Config, job: &Job, dry_run: bool) -> ExitCode {
    let (remote, lease) = match super::lease_job(config, job) {
        Ok(held) => held,
        Err(code) => return code,
    };
    let zone = super::zone::machine_zone();
    let check = || lease.check().map_err(|e| Box::new(e).into());
    let report = prune_remote(
        &remote,
        job.retention.as_ref(),
        &zone,
        dry_run,
        &config.faults,
        &check,
    );
    lease.release();
    match report {
        Ok(report) => show(config, job, dry_run, &report, &zone),
        Err(e) => {
            eprintln!("strata: {}: {e}", job.name);
            ExitCode::Failure
        }
    }
}

fn show(config: &Config, job: &Job, dry_run: bool, report: &PruneReport, zone: &Zone) -> ExitCode {
    if config.json {
        let status = if dry_run { "dry_run" } else { "pruned" };
        let mut value = serde_json::to_value(report).expect("report serializes");
        value["job"] = json!(job.name);
        value["status"] = json!(status);
        print_json(&value);
    } else {
        print!("{}", text(&job.name, report, zone));
    }
    ExitCode::Success
}

/// The decisions, one line per increment in time order (its time as
/// `history` and `list` show times: in the machine's zone, to the second),
/// then the totals. `--json` keeps RFC 3339 UTC.
fn text(job: &str, report: &PruneReport, zone: &Zone) -> String {
    let plan = &report.plan;
    let mut out = String::new();
    let title = if report.dry_run {
        format!("prune {job} (dry run: nothing is changed)\n")
    } else {
        format!("prune {job}\n")
    };
    out.push_str(&title);
    if !report.finished.is_empty() {
        let verb = if report.dry_run {
            "will be finished first"
        } else {
            "finished"
        };
        out.push_str(&format!(
            "  an interrupted prune {verb}: {} removed\n",
            report.finished.join(", ")
        ));
    }
    if let Some(note) = &plan.note {
        out.push_str(&format!("  {note}\n"));
    }
    let mut lines: Vec<(String, String)> = Vec::new();
    for k in &plan.kept {
        let why: Vec<String> = k.reasons.iter().map(|r| r.to_string()).collect();
        let why = if why.is_empty() {
            String::new()
        } else {
            format!("  ({})", why.join(", "))
        };
        lines.push((
            k.increment.clone(),
            format!(
                "  keep    {}  {}{why}\n",
                k.increment,
                local_time(&k.time, zone)
            ),
        ));
    }
    for r in &report.removed {
        let time = increment_time(&r.increment)
            .map(|t| zone.format(&t))
            .unwrap_or_default();
        lines.push((
            r.increment.clone(),
            format!(
                "  remove  {}  {time}  (no rule keeps it; merged into {}: {} moved, {} dropped)\n",
                r.increment, r.into, r.moved, r.dropped
            ),
        ));
    }
    lines.sort_by_key(|(name, _)| parse_increment_name(name));
    for (_, line) in lines {
        out.push_str(&line);
    }
    let (verb, frees) = if report.dry_run {
        ("would remove", "would free")
    } else {
        ("removed", "freed")
    };
    out.push_str(&format!(
        "kept {}, {verb} {}, {frees} {}\n",
        plan.kept.len(),
        plural(plan.remove.len() as u64, "increment", "increments"),
        human_bytes(report.freed.disk)
    ));
    out
}
