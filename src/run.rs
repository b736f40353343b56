//! One job's run, top to bottom: open the source, open the destination
//! (through its guards), lock, recover, prepare the plan (scan, diff,
//! recheck), apply it, commit. Also [`run_jobs`], which runs several jobs
//! concurrently on the shared pool and gathers one report.
//!
//! The commit protocol and its inverse, recovery, live in
//! [`crate::store::commit`] and [`crate::store::recover`]; this file only
//! calls them in order.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::Serialize;

use crate::apply::{Tally, Target, apply, fresh_records, updates};
use crate::diff::{Change, Compare, Plan, diff, resolve};
use crate::entry::{ErrorKind, Kind, Op, PathError, RelPath};
use crate::faults::Faults;
use crate::fs::{Degraded, Dir, xattr};
use crate::history::prune::prune;
use crate::history::prune_interrupted;
use crate::hooks::Around;
use crate::job::Job;
use crate::progress::{Progress, ProgressHandle};
use crate::report::{JobReport, Report, Stats, Status};
use crate::scan::{Scan, ScanOptions, scan};
use crate::store::commit::{Closing, CommitError, StartIndex, Transaction, log_run, merge_records};
use crate::store::identity::{Guard, open_for_run};
use crate::store::meta::{RunRecord, format_time};
use crate::store::recover::{Repaired, start, start_readonly};
use crate::store::{IncrementName, LockError, Store, StoreError};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Compute and return the plan; write nothing.
    pub dry_run: bool,
    /// Accept what the guards refuse: a scan that selects nothing although
    /// the mirror holds files, a missing mount point, a clock set back, more
    /// deletions than `max_delete`.
    pub force: bool,
    /// Start a new history where the destination guards refuse.
    pub init: bool,
    /// Where strata remembers each job's destination (see
    /// [`crate::store::identity`]).
    pub known: Option<PathBuf>,
    /// Fault points and injected failures (tests only).
    pub faults: Faults,
    /// Where the run reports its progress (the default shows nothing).
    pub progress: ProgressHandle,
    /// The zone of retention's calendar buckets: the machine's (default UTC).
    pub zone: crate::tz::Zone,
}

/// One change of a dry run's plan, as it is printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanRow {
    /// The path.
    pub path: String,
    /// `new`, `changed` or `deleted`.
    pub op: &'static str,
    /// `file`, `symlink` or `dir`.
    pub kind: &'static str,
    /// Tracked.
    pub tracked: bool,
    /// What the increment records.
    pub history: Option<Op>,
}

/// A job's run: its report row, and the plan for a dry run.
#[derive(Debug)]
pub struct JobRun {
    /// The report row.
    pub report: JobReport,
    /// The plan (dry runs only).
    pub plan: Option<Vec<PlanRow>>,
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
        "the scan selected no files but the mirror holds some: is the source unmounted? \
         Nothing was changed; run with --force to accept an empty source"
    )]
    EmptySource,
    /// The clock reads earlier than the newest increment.
    #[error(
        "the clock reads {now}, earlier than the newest increment {newest}: was the clock set \
         back? Nothing was changed; fix the clock, or run with --force to order this run after \
         {newest}"
    )]
    ClockBack {
        /// The run's start.
        now: String,
        /// The newest increment.
        newest: String,
    },
    /// The `before` hook failed: the backup did not run.
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    /// The plan removes more than the job's `max_delete` allows.
    #[error(transparent)]
    TooManyDeletions(#[from] crate::guard::TooManyDeletions),
    /// The commit failed.
    #[error("{0}")]
    Commit(CommitError),
    /// The object-store destination's lease could not be had, or was lost.
    #[error(transparent)]
    Lease(Box<crate::store::object::lease::LeaseError>),
}

impl From<crate::store::object::lease::LeaseError> for RunError {
    fn from(e: crate::store::object::lease::LeaseError) -> RunError {
        RunError::Lease(Box::new(e))
    }
}

/// Run several jobs concurrently on the current pool; one report.
pub fn run_jobs(jobs: &[&Job], options: &RunOptions) -> (Report, Vec<(String, Vec<PlanRow>)>) {
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

fn scan_options(job: &Job) -> ScanOptions {
    use std::os::unix::ffi::OsStrExt;
    ScanOptions {
        one_file_system: job.one_file_system,
        exclude_if_present: job
            .exclude_if_present
            .iter()
            .map(|n| std::ffi::OsStr::new(n).as_bytes().to_vec())
            .collect(),
        exclude_caches: job.exclude_caches,
        checksum: job.compare == Compare::Checksum,
    }
}

/// Run one job.
pub fn run_job(job: &Job, options: &RunOptions) -> JobRun {
    let started = Instant::now();
    let start_time = Utc::now();
    let progress = options.progress.job(&job.name);
    let mut around = Around::new(job, options.dry_run, &*progress);
    let result = match &job.object {
        Some(dest) => {
            crate::run_object::run_object(job, dest, options, start_time, &*progress, &mut around)
        }
        None => run_locked(job, options, start_time, &*progress, &mut around),
    };
    let mut run = match result {
        Ok(run) => run,
        Err((e, store)) => {
            let mut report = JobReport::failed(&job.name, e.to_string());
            report.stats.mirror = mirror_count(job);
            if let RunError::Lease(lease) = &e
                && let crate::store::object::lease::LeaseError::Held { .. } = **lease
            {
                report.message = Some(format!("{e}: skipped"));
                report.status = Status::SkippedLocked;
                progress.finish();
                return JobRun { report, plan: None };
            }
            if let RunError::Lock(LockError::Held { .. }) = &e {
                report.message = Some("another strata process is running this job".into());
                report.status = Status::SkippedLocked;
                progress.finish();
                return JobRun { report, plan: None };
            }
            if let RunError::Commit(CommitError {
                committed: Some(name),
                ..
            }) = &e
            {
                report.increment = Some(name.to_string());
                report.message = Some(format!(
                    "{e}; the increment {name} is committed (the backup is in the history), \
                     but the index could not be written: the next run repairs it"
                ));
            }
            if let Some(store) = &store
                && !options.dry_run
            {
                let _ = log(store, start_time, &report);
            }
            JobRun { report, plan: None }
        }
    };
    around.finish(&mut run.report);
    run.report.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    run
}

/// How many files the mirror holds as the last commit left it (0 when
/// there is no backup there), for the row of a job that did not run:
/// read-only, nothing is created.
fn mirror_count(job: &Job) -> u64 {
    Store::open(&job.destination)
        .ok()
        .and_then(|store| {
            crate::store::index::load(store.state(), &store.index_path())
                .ok()
                .flatten()
        })
        .map_or(0, |index| {
            index
                .entries
                .iter()
                .filter(|e| e.meta.kind != Kind::Dir)
                .count() as u64
        })
}

pub(crate) type Failure = (RunError, Option<Store>);

/// Everything between opening the source and the run log, with the lock
/// held once the destination is open.
fn run_locked(
    job: &Job,
    options: &RunOptions,
    start_time: DateTime<Utc>,
    progress: &dyn Progress,
    around: &mut Around<'_>,
) -> Result<JobRun, Failure> {
    let fail = |e: RunError| (e, None);
    let source_error = |e| {
        RunError::Scan(crate::scan::ScanError::Source {
            path: job.source.clone(),
            source: e,
        })
    };
    let mut source = Dir::open_root(&job.source);
    if options.dry_run {
        let source = source.map_err(|e| fail(source_error(e)))?;
        return dry_run(job, &source, options, progress).map_err(fail);
    }
    // A missing source with no destination yet fails before anything is
    // created there (after the `before` hook, which may mount it).
    let mut started = false;
    if source.is_err() && std::fs::symlink_metadata(&job.destination).is_err() {
        around.start().map_err(|e| fail(e.into()))?;
        started = true;
        source = Dir::open_root(&job.source);
        if let Err(e) = source {
            return Err(fail(source_error(e)));
        }
    }
    let guard = Guard {
        init: options.init,
        known: options.known.clone(),
    };
    let (store, _fresh) =
        open_for_run(&job.destination, &job.name, &guard).map_err(|e| fail(e.into()))?;
    let _lock = match store.lock() {
        Ok(lock) => lock,
        Err(e) => return Err((RunError::Lock(e), None)),
    };
    // Hooks and pings run with the lock held, so that a job's hooks never
    // overlap another run of the same job.
    if !started && let Err(e) = around.start() {
        return Err((e.into(), Some(store)));
    }
    let source = match source.or_else(|_| Dir::open_root(&job.source)) {
        Ok(source) => source,
        Err(e) => return Err((source_error(e), Some(store))),
    };
    match execute(job, &source, &store, options, start_time, progress) {
        Ok(mut report) => {
            apply_retention(job, &store, options, &mut report);
            Ok(JobRun { report, plan: None })
        }
        Err(e) => Err((e, Some(store))),
    }
}

/// The dry run: the plan against the committed state as recovery would
/// leave it, touching nothing at the destination.
fn dry_run(
    job: &Job,
    source: &Dir,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<JobRun, RunError> {
    // What a real run's destination guards would say.
    let guard = Guard {
        init: options.init,
        known: options.known.clone(),
    };
    crate::store::identity::check(&job.destination, &job.name, &guard)?;
    let (index, notes, store) = match Store::open(&job.destination) {
        Ok(store) => {
            // A lock file inside an existing .strata/ is all it writes.
            let _lock = store.lock().map_err(RunError::Lock)?;
            let (index, a) = start_readonly(&store)?;
            (index, a.notes, Some(store))
        }
        Err(StoreError::Missing { .. }) => {
            (StartIndex::Memory(Default::default()), Vec::new(), None)
        }
        Err(e) => return Err(e.into()),
    };
    let scanned = scan_source(job, source, progress)?;
    let prepared = prepare(job, source, &scanned, &index, store.as_ref(), options)?;
    Ok(dry_run_report(job, &prepared, &index, notes, options))
}

/// A dry run's row and plan, from the plan made.
pub(crate) fn dry_run_report(
    job: &Job,
    prepared: &Prepared<'_>,
    index: &StartIndex,
    notes: Vec<String>,
    options: &RunOptions,
) -> JobRun {
    let mut report = JobReport::failed(&job.name, "");
    report.message = None;
    report.status = Status::DryRun;
    report.warnings = notes
        .into_iter()
        .map(|n| format!("a real run repairs first: {n}"))
        .collect();
    report.errors = prepared.scan.problems.clone();
    report.stats = planned_stats(prepared);
    if !options.force
        && let Err(e) = check_deletions(job, prepared, index)
    {
        report.warnings.push(format!("a real run would fail: {e}"));
    }
    let rows = prepared
        .plan
        .visible()
        .map(|c| PlanRow {
            path: c.path().to_string(),
            op: c.op_word(),
            kind: c.kind().as_str(),
            tracked: c.tracked(),
            history: c.history_op(),
        })
        .collect();
    JobRun {
        report,
        plan: Some(rows),
    }
}

/// A scan and the plan made from it.
pub(crate) struct Prepared<'s> {
    pub(crate) scan: &'s Scan,
    pub(crate) plan: Plan<'s>,
    /// Mount points inside the source that are missing now: kept, named.
    pub(crate) missing_mounts: Vec<RelPath>,
}

/// The stats a plan promises (a dry run's row).
pub(crate) fn planned_stats(p: &Prepared<'_>) -> Stats {
    let mut stats = Stats {
        selected: p.scan.files().count() as u64,
        tracked: p.scan.files().filter(|e| e.tracked).count() as u64,
        dirs: (p.scan.entries.len() - p.scan.files().count()) as u64,
        skipped_special: p.scan.skipped_special,
        ..Stats::default()
    };
    for c in p.plan.visible() {
        if c.kind() == Kind::Dir {
            continue;
        }
        match c {
            Change::New(_) => stats.new += 1,
            Change::Changed { .. } => stats.changed += 1,
            Change::Deleted(_) => stats.removed += 1,
            Change::Touch(_) => {}
        }
        if c.history_op() == Some(Op::Deleted) {
            stats.deleted += 1;
        }
    }
    stats.mirror = stats.selected + p.plan.kept;
    stats
}

/// Start the progress of applying `plan` (`verb`: "applying",
/// "uploading"): files and symlinks counted, the bytes to copy expected.
pub(crate) fn begin_apply(progress: &dyn Progress, verb: &str, plan: &Plan<'_>) {
    let files = plan.changes.iter().filter(|c| c.is_file_work()).count() as u64;
    progress.begin(
        &format!(
            "{verb} {}",
            crate::report::plural(files, "change", "changes")
        ),
        Some(files),
    );
    progress.expect_bytes(plan.bytes_to_copy());
}

/// Scan the source (the walk is the run's one look at the source tree
/// before the copies).
pub(crate) fn scan_source(
    job: &Job,
    source: &Dir,
    progress: &dyn Progress,
) -> Result<Scan, RunError> {
    progress.begin("scanning", None);
    let scanned = scan(source, &job.source, &job.matcher, scan_options(job))?;
    progress.inc(scanned.files().count() as u64);
    Ok(scanned)
}

/// Diff the scan with the index: the plan (rechecks resolved: the xattrs
/// of entries whose ctime moved are read now).
pub(crate) fn prepare<'s>(
    job: &Job,
    source: &Dir,
    scanned: &'s Scan,
    index: &StartIndex,
    store: Option<&Store>,
    options: &RunOptions,
) -> Result<Prepared<'s>, RunError> {
    if scanned.files().next().is_none()
        && !options.force
        && index.walk(|w| {
            while let Some(e) = w.current() {
                if e.meta.kind != Kind::Dir {
                    return true;
                }
                w.advance();
            }
            false
        })?
    {
        return Err(RunError::EmptySource);
    }
    // A mount point seen before that is now an empty folder: its disk is
    // not mounted. Keep its part of the mirror.
    let mut missing_mounts = Vec::new();
    if !options.force {
        for m in store.map(Store::mounts).unwrap_or_default() {
            let still = scanned.mounts.contains(&m);
            let empty = !scanned.entries.iter().any(|e| e.path.is_below(&m));
            if !still && empty {
                missing_mounts.push(m);
            }
        }
    }
    let mut keep = scanned.unreadable_dirs.clone();
    keep.extend(missing_mounts.iter().cloned());
    let d = index.walk(|w| diff(&scanned.entries, w, &keep, job.compare))?;
    let digests: Vec<Option<crate::entry::Hash>> = d
        .rechecks
        .par_iter()
        .map(|r| read_xattrs(source, &r.new.path, r.new.meta.kind))
        .collect();
    let mut plan = resolve(d, &digests);
    // A missing mount point's own folder was the disk's root: its mode,
    // owner and times are part of what is kept, not a change (the empty
    // folder the unmount uncovers shows its own).
    if !missing_mounts.is_empty() {
        let before = plan.changes.len();
        plan.changes.retain(|c| {
            !(c.kind() == Kind::Dir
                && matches!(c, Change::Changed { .. } | Change::Touch(_))
                && missing_mounts.contains(c.path()))
        });
        plan.unchanged += (before - plan.changes.len()) as u64;
    }
    // Held to the end of the run, like the scan (a first run: a change per
    // file); the list grew by doubling.
    plan.changes.shrink_to_fit();
    Ok(Prepared {
        scan: scanned,
        plan,
        missing_mounts,
    })
}

/// The digest of the xattrs of the source's entry at `path` (`None` when
/// they cannot be read: that counts as a change).
fn read_xattrs(source: &Dir, path: &RelPath, kind: Kind) -> Option<crate::entry::Hash> {
    match kind {
        Kind::Symlink => Some(crate::entry::NO_XATTRS),
        Kind::Dir => {
            let d = source.open_dir(path.as_bytes()).ok()?;
            xattr::read_all(&d).ok().map(|x| x.digest())
        }
        Kind::File => {
            let (f, _) = source.open_file(path.as_bytes()).ok()?;
            xattr::read_all(&f).ok().map(|x| x.digest())
        }
    }
}

/// The report a run starts from once its plan stands: successful so far,
/// the repairs as warnings, the scan's problems and the missing mount
/// points as errors; and the mount points to remember (present and
/// missing, sorted). Shared by local and object-store runs.
pub(crate) fn opening_report(
    job: &Job,
    prepared: &Prepared<'_>,
    repairs: Vec<String>,
) -> (JobReport, Vec<RelPath>) {
    let mut report = JobReport::failed(&job.name, "");
    report.message = None;
    report.status = Status::Success;
    report.warnings = repairs;
    report.errors = prepared.scan.problems.clone();
    for m in &prepared.missing_mounts {
        report.errors.push(PathError::new(
            m,
            ErrorKind::Read,
            "was a mount point and is now an empty folder: is its disk unmounted? Its part of \
             the mirror is kept; run with --force to accept it as empty",
        ));
    }
    let mut mounts = prepared.scan.mounts.clone();
    mounts.extend(prepared.missing_mounts.iter().cloned());
    mounts.sort();
    (report, mounts)
}

/// `max_delete`: files the plan removes from the mirror, against the files
/// the mirror holds (counted only when there is a limit and a removal).
pub(crate) fn check_deletions(
    job: &Job,
    p: &Prepared<'_>,
    index: &StartIndex,
) -> Result<(), RunError> {
    let removed = p
        .plan
        .changes
        .iter()
        .filter(|c| matches!(c, Change::Deleted(e) if e.meta.kind != Kind::Dir))
        .count() as u64;
    if job.max_delete.is_none() || removed == 0 {
        return Ok(());
    }
    let files = index.walk(|w| {
        let mut n = 0u64;
        while let Some(e) = w.current() {
            n += u64::from(e.meta.kind != Kind::Dir);
            w.advance();
        }
        n
    })?;
    crate::guard::check_deletions(removed, files, job.max_delete)?;
    Ok(())
}

/// After a committed run, with the lock still held: remove the increments
/// the job's retention policy does not keep (and finish a prune that a
/// crash interrupted). A failure is a warning: the backup is committed.
fn apply_retention(job: &Job, store: &Store, options: &RunOptions, report: &mut JobReport) {
    if job.retention.is_none() && !prune_interrupted(store) {
        return;
    }
    match prune(
        store,
        job.retention.as_ref(),
        &options.zone,
        false,
        &options.faults,
    ) {
        Ok(pruned) => {
            report.pruned = pruned.removed.into_iter().map(|r| r.increment).collect();
        }
        Err(e) => report.warnings.push(format!("retention: {e}")),
    }
}

/// The real run, lock held: recover, prepare, apply, commit.
fn execute(
    job: &Job,
    source: &Dir,
    store: &Store,
    options: &RunOptions,
    start_time: DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<JobReport, RunError> {
    let faults = &options.faults;
    let mut timing = Timing::start();
    let Repaired {
        index,
        increment: carried_name,
        carried,
        repairs,
        redo_dirs,
    } = start(store, faults)?;
    timing.recover = timing.lap();
    let scanned = scan_source(job, source, progress)?;
    timing.scan = timing.lap();
    let prepared = prepare(job, source, &scanned, &index, Some(store), options)?;
    timing.diff = timing.lap();
    if !options.force {
        check_deletions(job, &prepared, &index)?;
    }
    let (mut report, mounts) = opening_report(job, &prepared, repairs);

    if prepared.plan.is_empty() && carried.is_empty() && !redo_dirs {
        report.stats = planned_stats(&prepared);
        finish(&mut report);
        store.save_mounts(&mounts)?;
        log(store, start_time, &report)?;
        timing.commit = timing.lap();
        timing.log(&job.name, 0);
        return Ok(report);
    }

    let name = increment_name(store, carried_name, start_time, options.force, &mut report)?;
    let mirror = store.create_mirror()?;
    let txn = Transaction::begin(store, &name, faults)?;
    let carried_paths: HashSet<RelPath> = carried.keys().cloned().collect();
    let degraded = Degraded::default();
    let copied = AtomicU64::new(0);
    let changes = &prepared.plan.changes;
    begin_apply(progress, "applying", &prepared.plan);
    let outcomes = apply(
        changes,
        &Target {
            source,
            mirror: &mirror,
            tmp: &txn.tmp,
            increment: &txn.increment,
            carried: &carried_paths,
            scan: &prepared.scan.entries,
            redo_dirs,
            faults,
            progress,
            degraded: &degraded,
            copied: &copied,
        },
    );
    timing.apply = timing.lap();
    report.warnings.extend(degraded.warnings());
    if !xattr::supported(&mirror) {
        keep_xattrs(store, &outcomes)?;
    }
    let tally = Tally::of(
        changes,
        planned_stats(&prepared),
        &outcomes,
        copied.into_inner(),
    );
    report.stats = tally.stats;
    report.errors.extend(tally.errors);
    for path in &tally.copied_not_linked {
        report.warnings.push(format!(
            "{path}: the filesystem refused a hardlink; the increment holds a copy"
        ));
    }
    finish(&mut report);

    progress.begin("committing", None);
    let any_records = tally.records > 0 || !carried.is_empty();
    let files = any_records.then(|| merge_records(carried, fresh_records(changes, &outcomes)));
    let count = (index.len() as i64 + tally.count_delta) as u64;
    let committed = txn
        .commit(Closing {
            job: &job.name,
            start: start_time,
            stats: report.stats,
            files,
            old: &index,
            updates: updates(changes, &outcomes),
            count,
        })
        .map_err(RunError::Commit)?;
    report.increment = committed.increment.map(|n| n.to_string());
    store.save_mounts(&mounts)?;
    log(store, start_time, &report)?;
    // The commit's time without its wait for the data.
    timing.sync = committed.sync_s;
    timing.commit = timing.lap() - committed.sync_s;
    timing.log(&job.name, changes.len());
    Ok(report)
}

/// The mirror's filesystem refuses xattrs: keep each set this run copied
/// by its digest (`Store::save_xattrs`), before the commit names it in the
/// index, so that a restore of the latest state gives every entry its
/// xattrs, included-only ones too (a tracked one's are in its record as
/// well).
fn keep_xattrs(store: &Store, outcomes: &crate::apply::Outcomes) -> Result<(), StoreError> {
    let mut kept = HashSet::new();
    for outcome in outcomes.iter() {
        if let Ok(a) = outcome
            && let Some(x) = a.xattr_data()
            && kept.insert(x.digest())
        {
            store.save_xattrs(x)?;
        }
    }
    Ok(())
}

/// The increment's name: the interrupted one, continued, or a new one that
/// sorts after every increment there is. A clock that reads earlier than
/// the newest increment fails the run (history order is run order), or,
/// with `--force`, the run is ordered after it.
fn increment_name(
    store: &Store,
    carried: Option<IncrementName>,
    start: DateTime<Utc>,
    force: bool,
    report: &mut JobReport,
) -> Result<IncrementName, RunError> {
    if let Some(name) = carried {
        return Ok(name);
    }
    let name = store.new_increment_name(start)?;
    let Some(newest) = store.increments()?.pop().filter(|newest| name <= *newest) else {
        return Ok(name);
    };
    if !force {
        return Err(RunError::ClockBack {
            now: format_time(start),
            newest: newest.to_string(),
        });
    }
    report.warnings.push(format!(
        "the clock reads {}, earlier than the newest increment {newest}: this run is ordered \
         after it",
        format_time(start)
    ));
    let mut after = newest.next_suffix();
    while store.new_increment_name(after.time())? > after {
        after = after.next_suffix();
    }
    Ok(after)
}

/// Seconds spent in each stage of a run, logged at debug level (target
/// `strata::timing`; `make bench` reads them): where the time goes.
#[derive(Debug)]
struct Timing {
    last: Instant,
    recover: f64,
    scan: f64,
    diff: f64,
    apply: f64,
    sync: f64,
    commit: f64,
}

impl Timing {
    fn start() -> Timing {
        Timing {
            last: Instant::now(),
            recover: 0.0,
            scan: 0.0,
            diff: 0.0,
            apply: 0.0,
            sync: 0.0,
            commit: 0.0,
        }
    }

    /// Seconds since the previous lap.
    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let secs = now.duration_since(self.last).as_secs_f64();
        self.last = now;
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
            // The text log prints messages alone: the numbers go in it
            // too, for `make bench` and bench/ab.sh to read.
            "stage times: recover_s={:.3} scan_s={:.3} diff_s={:.3} apply_s={:.3} sync_s={:.3} commit_s={:.3}",
            self.recover,
            self.scan,
            self.diff,
            self.apply,
            self.sync,
            self.commit
        );
    }
}

pub(crate) fn finish(report: &mut JobReport) {
    report.stats.errors = report.errors.len() as u64;
    if !report.errors.is_empty() {
        report.status = Status::Partial;
    }
}

pub(crate) fn log(
    store: &Store,
    start: DateTime<Utc>,
    report: &JobReport,
) -> Result<(), StoreError> {
    log_run(
        store,
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
