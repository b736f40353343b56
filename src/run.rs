//! One job's run, top to bottom: lock -> recover -> scan -> diff -> apply ->
//! commit. Also `run_jobs`, which runs several jobs concurrently on the
//! shared pool and gathers one report.
//!
//! The commit order is the crash-safety argument: the increment's metadata,
//! then the increment folder's final name, then the index, then the `dirty`
//! marker goes. Everything before the index write is repaired by
//! [`crate::store::recover`] if the process dies.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use crate::apply::{Applied, Outcome, Target, apply};
use crate::diff::{ChangeRef, IndexWalk, Op, Plan, SliceWalk, diff, diff_walk};
use crate::history::prune::prune;
use crate::history::prune_interrupted;
use crate::hooks::Around;
use crate::job::{Compare, Job};
use crate::progress::{Progress, ProgressHandle};
use crate::report::{JobReport, PathError, Report, Stats, Status};
use crate::scan::{Entry, RelPath, ScanOptions, scan};
use crate::store::index::{self, Index, IndexFile};
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
    /// The zone of retention's calendar buckets: the machine's (default UTC).
    pub zone: crate::tz::Zone,
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
                apply_retention(job, &layout, &options.zone, &mut report);
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
fn apply_retention(job: &Job, layout: &Layout, zone: &crate::tz::Zone, report: &mut JobReport) {
    if job.retention.is_none() && !prune_interrupted(layout) {
        return;
    }
    match prune(layout, job.retention.as_ref(), zone, false) {
        Ok(pruned) => {
            report.pruned = pruned.removed.into_iter().map(|r| r.increment).collect();
        }
        Err(e) => report.warnings.push(format!("retention: {e}")),
    }
}

fn scan_options(job: &Job) -> ScanOptions {
    ScanOptions {
        one_file_system: job.one_file_system,
        exclude_if_present: job.exclude_if_present.iter().map(Into::into).collect(),
        exclude_caches: job.exclude_caches,
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
        && let Err(e) = crate::guard::check_deletions(
            plan.count(Op::Deleted),
            index.entries.len() as u64,
            job.max_delete,
        )
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

/// Seconds spent in each stage of a run, logged at debug level (target
/// `strata::timing`; `make bench` reads them): where the time goes, and what
/// the `syncfs` before the commit costs.
#[derive(Debug, Default)]
struct Timing {
    started: Option<Instant>,
    recover: f64,
    scan: f64,
    diff: f64,
    apply: f64,
    sync: f64,
    commit: f64,
}

impl Timing {
    /// Seconds since the previous lap.
    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let secs = self
            .started
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        self.started = Some(now);
        secs
    }

    fn log(&self, job: &str, changes: usize) {
        tracing::debug!(
            target: "strata::timing",
            job,
            changes,
            recover_s = self.recover,
            scan_s = self.scan,
            diff_s = self.diff,
            apply_s = self.apply,
            sync_s = self.sync,
            commit_s = self.commit,
            "stage times"
        );
    }
}

/// The committed index a run starts from.
enum OldIndex {
    /// The index file, checked, read as the run goes.
    File(IndexFile),
    /// The index that recovery rebuilt.
    Memory(Index),
}

impl OldIndex {
    fn len(&self) -> u64 {
        match self {
            OldIndex::File(file) => file.len(),
            OldIndex::Memory(index) => index.entries.len() as u64,
        }
    }

    fn last_increment(&self) -> Option<&str> {
        match self {
            OldIndex::File(file) => file.last_increment(),
            OldIndex::Memory(index) => index.last_increment.as_deref(),
        }
    }

    /// Run `f` on a walk of the entries. An error when reading the file
    /// broke off: what `f` made of the walk is then void.
    fn walk<R>(&self, f: impl FnOnce(&mut dyn IndexWalk) -> R) -> Result<R, StoreError> {
        match self {
            OldIndex::File(file) => {
                let mut cursor = file.cursor()?;
                let result = f(&mut cursor);
                cursor.finish()?;
                Ok(result)
            }
            OldIndex::Memory(index) => Ok(f(&mut SliceWalk(&index.entries))),
        }
    }

    /// Make it the committed index file (after recovery rebuilt it).
    fn save(&self, path: &Path) -> Result<(), StoreError> {
        match self {
            OldIndex::File(file) => file.save(path),
            OldIndex::Memory(index) => index::save(path, index),
        }
    }
}

/// Where a run starts from: the committed index and what an interrupted
/// run left to continue.
struct Start {
    index: OldIndex,
    increment: Option<PathBuf>,
    carried: BTreeMap<RelPath, FileRecord>,
    repairs: Vec<String>,
}

/// The committed state, through recovery when a previous run was
/// interrupted (or the index is missing or unreadable). Without anything to
/// repair, the index file is only checked, not loaded.
fn start_state(layout: &Layout) -> Result<Start, StoreError> {
    // A finished run leaves `.strata/tmp/` empty, and removing it is all
    // that recovery would do with it (a directory with files stays).
    let _ = fs::remove_dir(layout.tmp());
    if !needs_recovery(layout)
        && let Ok(Some(index)) = IndexFile::open(&layout.index())
    {
        return Ok(Start {
            index: OldIndex::File(index),
            increment: None,
            carried: BTreeMap::new(),
            repairs: Vec::new(),
        });
    }
    let Recovered {
        index,
        increment,
        carried,
        repairs,
    } = recover(layout)?;
    Ok(Start {
        index: OldIndex::Memory(index),
        increment,
        carried,
        repairs,
    })
}

fn execute(
    job: &Job,
    layout: &Layout,
    options: &RunOptions,
    start: DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<JobReport, RunError> {
    let mut timing = Timing::default();
    timing.lap();
    let state = layout.state();
    fs::create_dir_all(&state).at(&state)?;
    let Start {
        index: old,
        increment: carried_dir,
        carried,
        repairs,
    } = start_state(layout)?;
    timing.recover = timing.lap();

    progress.begin("scanning", None);
    let scanned = scan(&job.source, &job.matcher, scan_options(job))?;
    timing.scan = timing.lap();
    progress.inc(scanned.entries.len() as u64);
    if scanned.entries.is_empty() && old.len() > 0 && !options.force {
        return Err(RunError::EmptySource(old.len() as usize));
    }
    let plan = old.walk(|walk| {
        diff_walk(
            &scanned.entries,
            walk,
            &scanned.unreadable_dirs,
            job.compare,
        )
    })?;
    timing.diff = timing.lap();
    if !options.force {
        let removed = plan.changes.iter().filter(|c| c.op == Op::Deleted).count();
        crate::guard::check_deletions(removed as u64, old.len(), job.max_delete)?;
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
        report.stats.mirror = old.len();
        finish(&mut report);
        if layout.dirty().exists() {
            // Recovery rebuilt the index: make it the committed one.
            crate::fault::point();
            old.save(&layout.index())?;
            remove_dirty(layout)?;
        }
        log_run(layout, start, &report)?;
        timing.commit = timing.lap();
        timing.log(&job.name, 0);
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
    let outcomes = apply(&plan.changes, &target);
    progress.inc(plan.changes.len() as u64);

    // Tally; the new index is the old one with every applied change.
    let mut mirror_count = old.len();
    let mut records = carried.len();
    for (change, outcome) in plan.changes.iter().zip(&outcomes) {
        match outcome {
            Outcome::Applied(applied) => {
                let stats = &mut report.stats;
                match change.op {
                    Op::New => stats.new += 1,
                    Op::Changed => stats.changed += 1,
                    Op::Deleted => stats.removed += 1,
                }
                stats.bytes_copied += applied.bytes(change);
                if applied.copied_not_linked {
                    stats.copied_not_linked += 1;
                    report.warnings.push(format!(
                        "{}: the filesystem refused a hardlink; the increment holds a copy",
                        change.path()
                    ));
                }
                // No record: nothing for the history, and an interrupted
                // run's record of this path, if any, stands.
                if let Some(op) = applied.recorded {
                    if op == Op::Deleted {
                        stats.deleted += 1;
                    }
                    records += 1;
                }
                mirror_count -= u64::from(change.old.is_some());
                mirror_count += u64::from(change.new.is_some());
            }
            Outcome::Failed(error) => report.errors.push(PathError::clone(error)),
        }
    }
    report.stats.mirror = mirror_count;
    finish(&mut report);

    timing.apply = timing.lap();

    // Commit: data durable, metadata, folder name, index, dirty marker.
    progress.inc_bytes(report.stats.bytes_copied);
    progress.begin("committing", None);
    sync_filesystem(layout.root())?;
    timing.sync = timing.lap();
    let mut last_increment = old.last_increment().map(str::to_string);
    let increment_name = increment_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("increment folders have UTF-8 names")
        .to_string();
    if records == 0 {
        fs::remove_dir_all(&increment_dir).at(&increment_dir)?;
    } else {
        let meta = MetaOut {
            job: &job.name,
            increment: &increment_name,
            start: format_time(start),
            finish: format_time(Utc::now()),
            files: FilesOut {
                changes: &plan.changes,
                outcomes: &outcomes,
                carried: &carried,
            },
            stats: report.stats,
        };
        crate::fault::point();
        save_meta(
            &IncrementMeta::path_in(&increment_dir, &increment_name),
            &meta,
        )?;
        crate::fault::point();
        let final_dir = layout.increment(&increment_name);
        fs::rename(&increment_dir, &final_dir).at(&final_dir)?;
        crate::fault::point();
        sync_dir(layout.root())?;
        report.increment = Some(increment_name.clone());
        last_increment = Some(increment_name);
    }
    crate::fault::point();
    save_index(
        &layout.index(),
        &old,
        &plan.changes,
        &outcomes,
        last_increment.as_deref(),
        mirror_count,
    )?;
    crate::fault::point();
    remove_dirty(layout)?;
    crate::fault::point();
    log_run(layout, start, &report)?;
    timing.commit = timing.lap();
    timing.log(&job.name, plan.changes.len());
    Ok(report)
}

/// An increment's metadata as [`IncrementMeta`] serializes it, with the
/// file records made one at a time while writing: a first run records every
/// file, and holding them all (or the text) would cost more memory than the
/// rest of the run.
#[derive(serde::Serialize)]
struct MetaOut<'a> {
    job: &'a str,
    increment: &'a str,
    start: String,
    finish: String,
    files: FilesOut<'a>,
    stats: Stats,
}

/// The records of an increment, in path order: those an interrupted run
/// left (`carried`), unless this run recorded the path anew.
struct FilesOut<'a> {
    changes: &'a [ChangeRef<'a>],
    outcomes: &'a [Outcome],
    carried: &'a BTreeMap<RelPath, FileRecord>,
}

impl serde::Serialize for FilesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use std::borrow::Cow;
        use std::cmp::Ordering;
        let mut carried = self.carried.iter().peekable();
        let mut fresh = self
            .changes
            .iter()
            .zip(self.outcomes)
            .filter_map(|(c, o)| match o {
                Outcome::Applied(
                    a @ Applied {
                        recorded: Some(_), ..
                    },
                ) => Some((c, a)),
                _ => None,
            })
            .peekable();
        let record = |(c, a): (&ChangeRef<'_>, &Applied)| {
            Cow::Owned(a.record(c).expect("a recorded change has a record"))
        };
        serializer.collect_seq(std::iter::from_fn(|| {
            let order = match (carried.peek(), fresh.peek()) {
                (Some((path, _)), Some((c, _))) => (*path).cmp(c.path()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => return None,
            };
            match order {
                Ordering::Less => carried.next().map(|(_, r)| Cow::Borrowed(r)),
                Ordering::Equal => {
                    carried.next();
                    fresh.next().map(record)
                }
                Ordering::Greater => fresh.next().map(record),
            }
        }))
    }
}

/// Write a file atomically from a writer: a temp file beside it, fsync,
/// rename, fsync of the directory (what [`crate::store::write_atomic`]
/// does with bytes in memory).
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut out = BufWriter::with_capacity(256 * 1024, File::create(&tmp).at(&tmp)?);
    write(&mut out).at(&tmp)?;
    let file = out.into_inner().map_err(|e| e.into_error()).at(&tmp)?;
    file.sync_all().at(&tmp)?;
    drop(file);
    fs::rename(&tmp, path).at(path)?;
    sync_dir(dir)
}

/// Write an increment's metadata file (pretty JSON and a newline, as
/// [`IncrementMeta::save`] writes it).
fn save_meta(path: &Path, meta: &MetaOut<'_>) -> Result<(), StoreError> {
    write_atomic_with(path, |out| {
        serde_json::to_writer_pretty(&mut *out, meta)?;
        out.write_all(b"\n")
    })
}

/// Write the new index: `old`'s entries, with each applied change's new
/// state in place of its path's entry (or none, for a removal). `count` is
/// the number of entries that makes.
fn save_index(
    path: &Path,
    old: &OldIndex,
    changes: &[ChangeRef<'_>],
    outcomes: &[Outcome],
    last_increment: Option<&str>,
    count: u64,
) -> Result<(), StoreError> {
    let mut out = index::Writer::create(path, last_increment, count)?;
    old.walk(|olds| -> Result<(), StoreError> {
        for (change, outcome) in changes.iter().zip(outcomes) {
            let path = change.path().as_bytes();
            while let Some(entry) = olds.current().filter(|e| e.path < path) {
                out.entry(entry)?;
                olds.advance();
            }
            let kept = olds.current().filter(|e| e.path == path);
            match outcome {
                Outcome::Applied(applied) => {
                    if let Some(entry) = applied.entry(change) {
                        out.entry(entry)?;
                    }
                }
                Outcome::Failed(_) => {
                    if let Some(entry) = kept {
                        out.entry(entry)?;
                    }
                }
            }
            if kept.is_some() {
                olds.advance();
            }
        }
        while let Some(entry) = olds.current() {
            out.entry(entry)?;
            olds.advance();
        }
        Ok(())
    })??;
    out.commit()
}

fn finish(report: &mut JobReport) {
    report.stats.errors = report.errors.len() as u64;
    if !report.errors.is_empty() {
        report.status = Status::Partial;
    }
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
    use crate::scan::{Hash, Kind, Meta};

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

    fn applied(recorded: Option<Op>, hash: Option<Hash>) -> Outcome {
        Outcome::Applied(Applied {
            recorded,
            hash,
            meta: None,
            copied: true,
            copied_not_linked: false,
        })
    }

    fn failed(path: &str) -> Outcome {
        Outcome::Failed(Box::new(PathError {
            path: path.into(),
            message: "no".into(),
        }))
    }

    #[test]
    fn the_new_index_is_the_old_one_with_the_applied_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        index::save(
            &path,
            &Index {
                entries: vec![e("a", 1), e("c", 1), e("d", 1), e("e", 1), e("g", 1)],
                last_increment: None,
            },
        )
        .unwrap();
        let old = OldIndex::File(IndexFile::open(&path).unwrap().unwrap());
        let scan = [e("b", 2), e("e", 3), e("f", 4), e("h", 5), e("d", 6)];
        let boxed = |x: Entry| Some(Box::new(x));
        let changes = [
            ChangeRef {
                op: Op::New,
                old: None,
                new: Some(&scan[0]),
            },
            ChangeRef {
                op: Op::Deleted,
                old: boxed(e("c", 1)),
                new: None,
            },
            ChangeRef {
                op: Op::Changed,
                old: boxed(e("d", 1)),
                new: Some(&scan[4]),
            },
            ChangeRef {
                op: Op::Changed,
                old: boxed(e("e", 1)),
                new: Some(&scan[1]),
            },
            ChangeRef {
                op: Op::New,
                old: None,
                new: Some(&scan[2]),
            },
            ChangeRef {
                op: Op::New,
                old: None,
                new: Some(&scan[3]),
            },
        ];
        let h = Some(Hash::of(b"x"));
        let outcomes = [
            applied(None, h),
            applied(None, None),
            failed("d"),
            applied(None, h),
            failed("f"),
            applied(None, h),
        ];
        save_index(&path, &old, &changes, &outcomes, Some("backup_x"), 6).unwrap();
        let new = index::load(&path).unwrap().unwrap();
        let got: Vec<(String, u64, bool)> = new
            .entries
            .iter()
            .map(|x| (x.path.to_string(), x.meta.size, x.hash.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), 1, false),
                ("b".into(), 2, true),
                ("d".into(), 1, false),
                ("e".into(), 3, true),
                ("g".into(), 1, false),
                ("h".into(), 5, true),
            ]
        );
        assert_eq!(new.last_increment.as_deref(), Some("backup_x"));
    }

    #[test]
    fn streamed_metadata_is_what_increment_meta_writes() {
        let dir = tempfile::tempdir().unwrap();
        let tracked = |p: &[u8], size| Entry {
            path: RelPath::from_bytes(p),
            tracked: true,
            ..e("", size)
        };
        let scan = [tracked(b"b\xff", 2), tracked(b"d", 4)];
        let changes = [
            ChangeRef {
                op: Op::Deleted,
                old: Some(Box::new(tracked(b"a", 1))),
                new: None,
            },
            ChangeRef {
                op: Op::New,
                old: None,
                new: Some(&scan[0]),
            },
            ChangeRef {
                op: Op::Changed,
                old: Some(Box::new(tracked(b"d", 1))),
                new: Some(&scan[1]),
            },
        ];
        let h = Some(Hash::of(b"content"));
        let outcomes = [
            applied(Some(Op::Deleted), None),
            applied(Some(Op::New), h),
            applied(Some(Op::Changed), h),
        ];
        let mut carried = BTreeMap::new();
        for (p, op) in [("0", Op::New), ("d", Op::New), ("z", Op::Deleted)] {
            carried.insert(
                RelPath::from_bytes(p.as_bytes()),
                FileRecord::new(&tracked(p.as_bytes(), 9), op),
            );
        }
        let stats = Stats {
            new: 1,
            ..Stats::default()
        };
        let streamed = dir.path().join("streamed.json");
        save_meta(
            &streamed,
            &MetaOut {
                job: "j",
                increment: "backup_20260101_000000",
                start: "s".into(),
                finish: "f".into(),
                files: FilesOut {
                    changes: &changes,
                    outcomes: &outcomes,
                    carried: &carried,
                },
                stats,
            },
        )
        .unwrap();
        let mut records = carried.clone();
        for (c, o) in changes.iter().zip(&outcomes) {
            let Outcome::Applied(a) = o else {
                unreachable!()
            };
            records.insert(c.path().clone(), a.record(c).unwrap());
        }
        // A struct literal: a field added to IncrementMeta fails to compile
        // here, and MetaOut must learn it.
        let meta = IncrementMeta {
            job: "j".into(),
            increment: "backup_20260101_000000".into(),
            start: "s".into(),
            finish: "f".into(),
            files: records.into_values().collect(),
            stats,
        };
        meta.save(dir.path()).unwrap();
        let saved = IncrementMeta::path_in(dir.path(), "backup_20260101_000000");
        assert_eq!(fs::read(&streamed).unwrap(), fs::read(&saved).unwrap());
        let paths: Vec<String> = meta.files.iter().map(|f| f.path.clone()).collect();
        assert_eq!(paths, ["0", "a", "b\u{fffd}", "d", "z"]);
        assert_eq!(meta.files[3].op, Op::Changed);
    }
}
