//! One job's run, top to bottom: lock -> recover -> scan -> diff -> apply ->
//! commit. Also `run_jobs`, which runs several jobs concurrently on the
//! shared pool and gathers one report.
//!
//! The commit order is the crash-safety argument: the increment's metadata,
//! then the increment folder's final name, then the index, then the `dirty`
//! marker goes. Everything before the index write is repaired by
//! [`crate::store::recover`] if the process dies.

use std::collections::HashSet;
use std::fs;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use crate::apply::{Outcome, Target, apply};
use crate::diff::{Plan, diff};
use crate::history::prune::prune;
use crate::history::prune_interrupted;
use crate::hooks::Around;
use crate::job::{Compare, Job};
use crate::progress::{Progress, ProgressHandle};
use crate::report::{JobReport, PathError, Report, Stats, Status};
use crate::scan::{Entry, RelPath, ScanOptions, scan};
use crate::store::index::{self, Index};
use crate::store::meta::{FileRecord, IncrementMeta, RunRecord, append_run, format_time};
use crate::store::recover::{Recovered, needs_recovery, recover};
use crate::store::{IoContext, JobLock, Layout, LockError, StoreError, sync_dir, sync_filesystem};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Compute and return the plan; write nothing.
    pub dry_run: bool,
    /// Accept a scan that selects nothing although the mirror holds files.
    pub force: bool,
    /// Test seam: source paths whose reading fails as if unreadable.
    pub fail_reading: HashSet<RelPath>,
    /// Where the run reports its progress (the default shows nothing).
    pub progress: ProgressHandle,
}

/// A job's run: its report row, and the plan for a dry run.
#[derive(Debug)]
pub struct JobRun {
    /// The report row.
    pub report: JobReport,
    /// The plan (dry runs only).
    pub plan: Option<Plan>,
}

/// Why a run stopped without committing.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scan could not start (missing or unreadable source).
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    /// The destination's state could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The lock could not be opened.
    #[error(transparent)]
    Lock(LockError),
    /// The scan found nothing although the mirror holds files.
    #[error(
        "the scan selected no files but the mirror holds {0}: is the source unmounted? \
         Nothing was changed; run with --force to accept an empty source"
    )]
    EmptySource(usize),
    /// The `before` hook failed: the backup did not run.
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    /// The plan removes more than the job's `max_delete` allows.
    #[error(transparent)]
    TooManyDeletions(#[from] crate::guard::TooManyDeletions),
}

/// Run several jobs concurrently on the current pool; one report.
pub fn run_jobs(jobs: &[&Job], options: &RunOptions) -> (Report, Vec<(String, Plan)>) {
    let started = Instant::now();
    let runs: Vec<JobRun> = jobs.par_iter().map(|job| run_job(job, options)).collect();
    let mut plans = Vec::new();
    let mut rows = Vec::new();
    for (job, run) in jobs.iter().zip(runs) {
        if let Some(plan) = run.plan {
            plans.push((job.name.clone(), plan));
        }
        rows.push(run.report);
    }
    (Report::new(rows, started.elapsed()), plans)
}

/// Run one job.
pub fn run_job(job: &Job, options: &RunOptions) -> JobRun {
    let started = Instant::now();
    let start = Utc::now();
    let layout = Layout::new(&job.destination);
    let progress = options.progress.job(&job.name);
    let lock = match JobLock::try_acquire(&layout.lock(), !options.dry_run) {
        Ok(lock) => lock,
        Err(LockError::Held { .. }) => {
            let mut report =
                JobReport::failed(&job.name, "another strata process is running this job");
            report.status = Status::SkippedLocked;
            progress.finish();
            return JobRun { report, plan: None };
        }
        Err(e) => {
            let mut report = JobReport::failed(&job.name, RunError::Lock(e).to_string());
            // No lock, no before hook; but on_error, finally and the
            // failure ping still go.
            Around::new(job, options.dry_run, &*progress).finish(&mut report);
            progress.finish();
            return JobRun {
                report: report.took(started.elapsed()),
                plan: None,
            };
        }
    };
    // Hooks and pings run with the lock held, so that a job's hooks never
    // overlap another run of the same job.
    let mut around = Around::new(job, options.dry_run, &*progress);
    let result = if options.dry_run {
        plan_only(job, &layout, options, &*progress).map(|(report, plan)| (report, Some(plan)))
    } else {
        around
            .start()
            .map_err(RunError::from)
            .and_then(|()| execute(job, &layout, options, start, &*progress))
            .map(|mut report| {
                apply_retention(job, &layout, &mut report);
                (report, None)
            })
    };
    let mut run = match result {
        Ok((report, plan)) => JobRun {
            report: report.took(started.elapsed()),
            plan,
        },
        Err(e) => {
            let report = JobReport::failed(&job.name, e.to_string()).took(started.elapsed());
            if !options.dry_run {
                let _ = log_run(&layout, start, &report);
            }
            JobRun { report, plan: None }
        }
    };
    around.finish(&mut run.report);
    run.report.seconds = started.elapsed().as_secs_f64();
    drop(lock);
    progress.finish();
    run
}

/// After a committed run, with the lock still held: remove the increments
/// the job's retention policy does not keep (and finish a prune that a
/// crash interrupted). A failure is a warning: the backup is committed.
fn apply_retention(job: &Job, layout: &Layout, report: &mut JobReport) {
    if job.retention.is_none() && !prune_interrupted(layout) {
        return;
    }
    match prune(layout, job.retention.as_ref(), &chrono::Local, false) {
        Ok(pruned) => {
            report.pruned = pruned.removed.into_iter().map(|r| r.increment).collect();
        }
        Err(e) => report.warnings.push(format!("retention: {e}")),
    }
}

fn scan_options(job: &Job) -> ScanOptions {
    ScanOptions {
        checksum: job.compare == Compare::Checksum,
    }
}

/// The dry run: the plan against the stored index, touching nothing.
fn plan_only(
    job: &Job,
    layout: &Layout,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<(JobReport, Plan), RunError> {
    progress.begin("scanning", None);
    let scanned = scan(&job.source, &job.matcher, scan_options(job))?;
    let index = match index::load(&layout.index()) {
        Ok(index) => index.unwrap_or_default(),
        Err(StoreError::Corrupt { .. }) => Index::default(),
        Err(e) => return Err(e.into()),
    };
    let plan = diff(
        &scanned.entries,
        &index.entries,
        &scanned.unreadable_dirs,
        job.compare,
    );
    let mut report = JobReport::failed(&job.name, "");
    report.message = None;
    report.status = Status::DryRun;
    report.stats = plan_stats(&plan, &scanned.entries);
    report.stats.mirror = index.entries.len() as u64 + report.stats.new - report.stats.removed;
    if needs_recovery(layout) {
        report
            .warnings
            .push("an interrupted run will be repaired first by a real run".into());
    }
    if !options.force
        && let Err(e) =
            crate::guard::check_deletions(&plan, index.entries.len() as u64, job.max_delete)
    {
        report.warnings.push(format!("a real run would fail: {e}"));
    }
    Ok((report, plan))
}

fn plan_stats(plan: &Plan, scanned: &[Entry]) -> Stats {
    use crate::diff::Op;
    let mut stats = Stats {
        selected: scanned.len() as u64,
        tracked: scanned.iter().filter(|e| e.tracked).count() as u64,
        ..Stats::default()
    };
    for c in &plan.changes {
        match c.op {
            Op::New => stats.new += 1,
            Op::Changed => stats.changed += 1,
            Op::Deleted => stats.removed += 1,
        }
        if c.op == Op::Deleted && c.history_op() == Some(Op::Deleted) {
            stats.deleted += 1;
        }
    }
    stats
}

fn execute(
    job: &Job,
    layout: &Layout,
    options: &RunOptions,
    start: DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<JobReport, RunError> {
    let state = layout.state();
    fs::create_dir_all(&state).at(&state)?;
    let Recovered {
        index: old,
        increment: carried_dir,
        carried,
        repairs,
    } = recover(layout)?;

    progress.begin("scanning", None);
    let scanned = scan(&job.source, &job.matcher, scan_options(job))?;
    progress.inc(scanned.entries.len() as u64);
    if scanned.entries.is_empty() && !old.entries.is_empty() && !options.force {
        return Err(RunError::EmptySource(old.entries.len()));
    }
    let plan = diff(
        &scanned.entries,
        &old.entries,
        &scanned.unreadable_dirs,
        job.compare,
    );
    if !options.force {
        crate::guard::check_deletions(&plan, old.entries.len() as u64, job.max_delete)?;
    }

    let mut report = JobReport::failed(&job.name, "");
    report.message = None;
    report.status = Status::Success;
    report.warnings = repairs;
    report.stats.selected = scanned.entries.len() as u64;
    report.stats.tracked = scanned.entries.iter().filter(|e| e.tracked).count() as u64;
    report.stats.skipped_special = scanned.skipped_special;
    report.errors = scanned
        .problems
        .iter()
        .map(|p| PathError {
            path: p.path.to_string(),
            message: p.message.clone(),
        })
        .collect();

    if plan.is_empty() && carried.is_empty() {
        report.stats.mirror = old.entries.len() as u64;
        finish(&mut report);
        if layout.dirty().exists() {
            // Recovery rebuilt the index: make it the committed one.
            crate::fault::point();
            index::save(&layout.index(), &old)?;
            remove_dirty(layout)?;
        }
        log_run(layout, start, &report)?;
        return Ok(report);
    }

    // Apply into the increment folder (the interrupted one, if any).
    let mirror = layout.mirror();
    let tmp = layout.tmp();
    fs::create_dir_all(&mirror).at(&mirror)?;
    fs::create_dir_all(&tmp).at(&tmp)?;
    crate::fault::point();
    mark_dirty(layout)?;
    let increment_dir = match carried_dir {
        Some(dir) => dir,
        None => {
            let dir = layout.inprogress().join(layout.new_increment_name(start));
            fs::create_dir_all(&dir).at(&dir)?;
            dir
        }
    };
    let carried_paths: HashSet<RelPath> = carried.keys().cloned().collect();
    let target = Target {
        source: &job.source,
        mirror,
        tmp,
        increment: increment_dir.clone(),
        carried: &carried_paths,
        fail_reading: &options.fail_reading,
    };
    progress.begin(
        &format!("applying {} changes", plan.changes.len()),
        Some(plan.changes.len() as u64),
    );
    let outcomes = apply(&plan, &target);
    progress.inc(plan.changes.len() as u64);

    // The new index: the old one, with every applied change.
    let mut records = carried;
    let mut updates: Vec<(RelPath, Option<Entry>)> = Vec::with_capacity(plan.changes.len());
    for (change, outcome) in plan.changes.iter().zip(outcomes) {
        match outcome {
            Outcome::Applied {
                entry,
                record,
                bytes,
                copied_not_linked,
            } => {
                let stats = &mut report.stats;
                match change.op {
                    crate::diff::Op::New => stats.new += 1,
                    crate::diff::Op::Changed => stats.changed += 1,
                    crate::diff::Op::Deleted => stats.removed += 1,
                }
                stats.bytes_copied += bytes;
                if copied_not_linked {
                    stats.copied_not_linked += 1;
                    report.warnings.push(format!(
                        "{}: the filesystem refused a hardlink; the increment holds a copy",
                        change.path()
                    ));
                }
                // No record: nothing for the history, and an interrupted
                // run's record of this path, if any, stands.
                if let Some(r) = record {
                    if r.op == crate::diff::Op::Deleted {
                        stats.deleted += 1;
                    }
                    records.insert(change.path().clone(), r);
                }
                updates.push((change.path().clone(), entry));
            }
            Outcome::Failed(error) => report.errors.push(error),
        }
    }
    let new_index = merge_index(old.entries, updates);
    report.stats.mirror = new_index.len() as u64;
    finish(&mut report);

    // Commit: data durable, metadata, folder name, index, dirty marker.
    progress.inc_bytes(report.stats.bytes_copied);
    progress.begin("committing", None);
    sync_filesystem(layout.root())?;
    let mut last_increment = old.last_increment;
    let increment_name = increment_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("increment folders have UTF-8 names")
        .to_string();
    if records.is_empty() {
        fs::remove_dir_all(&increment_dir).at(&increment_dir)?;
    } else {
        let meta = IncrementMeta {
            job: job.name.clone(),
            increment: increment_name.clone(),
            start: format_time(start),
            finish: format_time(Utc::now()),
            files: records.into_values().collect::<Vec<FileRecord>>(),
            stats: report.stats,
        };
        crate::fault::point();
        meta.save(&increment_dir)?;
        crate::fault::point();
        let final_dir = layout.increment(&increment_name);
        fs::rename(&increment_dir, &final_dir).at(&final_dir)?;
        crate::fault::point();
        sync_dir(layout.root())?;
        report.increment = Some(increment_name.clone());
        last_increment = Some(increment_name);
    }
    crate::fault::point();
    index::save(
        &layout.index(),
        &Index {
            entries: new_index,
            last_increment,
        },
    )?;
    crate::fault::point();
    remove_dirty(layout)?;
    crate::fault::point();
    log_run(layout, start, &report)?;
    Ok(report)
}

fn finish(report: &mut JobReport) {
    report.stats.errors = report.errors.len() as u64;
    if !report.errors.is_empty() {
        report.status = Status::Partial;
    }
}

/// Apply `updates` (sorted by path; `None` removes) to the sorted `old`
/// entries.
fn merge_index(old: Vec<Entry>, updates: Vec<(RelPath, Option<Entry>)>) -> Vec<Entry> {
    let mut out = Vec::with_capacity(old.len() + updates.len());
    let mut updates = updates.into_iter().peekable();
    for entry in old {
        while let Some((path, _)) = updates.peek() {
            if *path >= entry.path {
                break;
            }
            if let Some((_, Some(new))) = updates.next() {
                out.push(new);
            }
        }
        match updates.peek() {
            Some((path, _)) if *path == entry.path => {
                if let Some((_, Some(new))) = updates.next() {
                    out.push(new);
                }
            }
            _ => out.push(entry),
        }
    }
    out.extend(updates.filter_map(|(_, e)| e));
    out
}

fn mark_dirty(layout: &Layout) -> Result<(), StoreError> {
    let path = layout.dirty();
    fs::write(&path, b"a run is changing the mirror\n").at(&path)?;
    sync_dir(&layout.state())
}

fn remove_dirty(layout: &Layout) -> Result<(), StoreError> {
    let path = layout.dirty();
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(&layout.state()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(&path),
    }
}

fn log_run(layout: &Layout, start: DateTime<Utc>, report: &JobReport) -> Result<(), StoreError> {
    if !layout.state().exists() {
        return Ok(());
    }
    append_run(
        &layout.runs(),
        &RunRecord {
            start: format_time(start),
            finish: format_time(Utc::now()),
            status: match report.status {
                Status::Success => "success",
                Status::Partial => "partial",
                _ => "failed",
            }
            .to_string(),
            increment: report.increment.clone(),
            stats: report.stats,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{Kind, Meta};

    fn e(path: &str, size: u64) -> Entry {
        Entry {
            path: RelPath::from_bytes(path.as_bytes()),
            meta: Meta {
                kind: Kind::File,
                size,
                mtime: 0,
                mtime_nsec: 0,
                mode: 0o644,
            },
            tracked: false,
            hash: None,
        }
    }

    #[test]
    fn merge_index_applies_updates_in_order() {
        let old = vec![e("a", 1), e("c", 1), e("e", 1)];
        let updates = vec![
            (RelPath::from_bytes(b"b"), Some(e("b", 2))),
            (RelPath::from_bytes(b"c"), None),
            (RelPath::from_bytes(b"e"), Some(e("e", 3))),
            (RelPath::from_bytes(b"f"), Some(e("f", 4))),
        ];
        let merged = merge_index(old, updates);
        let got: Vec<(String, u64)> = merged
            .iter()
            .map(|x| (x.path.to_string(), x.meta.size))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), 1),
                ("b".into(), 2),
                ("e".into(), 3),
                ("f".into(), 4)
            ]
        );
    }
}
