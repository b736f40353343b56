//! One job's run on an object-store destination (`s3://BUCKET/PREFIX`),
//! top to bottom: connect, take the lease, fetch the index (from the local
//! cache when its ETag did not change), repair what an interrupted run
//! left, scan and diff exactly as a local run does, upload, commit.
//!
//! The scan, the diff, the plan, the outcomes and their tally, the records
//! and the index updates are the local run's own ([`crate::run`],
//! [`crate::apply`]); only where bytes go differs: [`apply`] here uploads
//! into the run's staging prefix and makes the increment's objects by
//! server-side copy, and [`commit`] writes the plan, the metadata and the
//! index (the commit point, conditional on the ETag the run started from),
//! then moves the staged bytes into `mirror/`. The protocol and its
//! recovery are described in [`crate::store::object`].
//!
//! Fault points: `object.upload`, `object.track`, `object.deleted`,
//! `object.plan`, `object.meta`, `object.segment`, `object.index`,
//! `object.remove`, `object.mirror`, `object.retire`, `object.cleanup`,
//! `object.recover`, and a prune's
//! (see [`crate::history::prune_remote`]) (each at the path
//! concerned, or the root), so the crash sweep stops a run at every step.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use crate::apply::{Applied, Outcome, Outcomes, Tally, fresh_records, updates};
use crate::diff::Change;
use crate::entry::{ErrorKind, Kind, NO_XATTRS, Op, PathError, RelPath, Xattrs};
use crate::fs::{Dir, FileTypeOf, fstat, xattr};
use crate::history::prune_remote;
use crate::hooks::Around;
use crate::job::Job;
use crate::progress::Progress;
use crate::report::JobReport;
use crate::run::{
    Failure, JobRun, RunError, RunOptions, begin_apply, check_deletions, dry_run_report, finish,
    log, opening_report, planned_stats, prepare, scan_source,
};
use crate::store::commit::{StartIndex, merge_records, write_index};
use crate::store::index::encode_delta;
use crate::store::meta::{IncrementMeta, META_VERSION, format_time};
use crate::store::object::client::{UploadError, Write};
use crate::store::object::lease::{Lease, default_ttl};
use crate::store::object::{self, Manifest, ObjectDest, Plan, Remote, RemoteIndex, Segment};
use crate::store::{IncrementName, Part, StoreError};

/// Where the job's local cache is: in strata's state directory, else (no
/// state directory) a folder of this process in the temp directory.
fn cache_dir(job: &Job, dest: &ObjectDest, options: &RunOptions) -> PathBuf {
    match &options.known {
        Some(state) => object::cache_path(state, &job.name, &dest.url),
        None => std::env::temp_dir().join(format!(
            "strata-{}-{}",
            std::process::id(),
            object::cache_path(std::path::Path::new(""), &job.name, &dest.url)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )),
    }
}

/// Connect to the destination (no request yet).
pub fn open_remote(
    job: &Job,
    dest: &ObjectDest,
    known: Option<&std::path::Path>,
    faults: &crate::faults::Faults,
) -> Result<Remote, StoreError> {
    let options = RunOptions {
        known: known.map(PathBuf::from),
        ..RunOptions::default()
    };
    Remote::open(dest, &cache_dir(job, dest, &options), faults.clone())
}

/// Run `job` on its object-store destination.
pub fn run_object(
    job: &Job,
    dest: &ObjectDest,
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
    let remote = Remote::open(dest, &cache_dir(job, dest, options), options.faults.clone())
        .map_err(|e| fail(e.into()))?;
    if options.dry_run {
        let source = Dir::open_root(&job.source).map_err(|e| fail(source_error(e)))?;
        return dry_run(job, &source, &remote, options, progress).map_err(fail);
    }
    // A missing source fails before anything is written to the store
    // (after the `before` hook, which may mount it).
    let mut started = false;
    let mut source = Dir::open_root(&job.source);
    if source.is_err() {
        around.start().map_err(|e| fail(e.into()))?;
        started = true;
        source = Dir::open_root(&job.source);
    }
    let source = source.map_err(|e| fail(source_error(e)))?;
    let lease = Lease::acquire(&remote.bucket, default_ttl()).map_err(|e| fail(e.into()))?;
    let cache = || crate::store::Store::open(remote.cache.path()).ok();
    if !started && let Err(e) = around.start() {
        lease.release();
        return Err((e.into(), cache()));
    }
    let result = execute(job, &source, &remote, &lease, options, start_time, progress);
    match result {
        Ok(mut report) => {
            apply_retention(job, &remote, &lease, options, &mut report);
            lease.release();
            Ok(JobRun { report, plan: None })
        }
        Err(e) => {
            lease.release();
            Err((e, cache()))
        }
    }
}

/// After a committed run, lease still held: remove the increments the
/// job's retention policy does not keep, as a local run does. A failure is
/// a warning: the backup is committed.
fn apply_retention(
    job: &Job,
    remote: &Remote,
    lease: &Lease,
    options: &RunOptions,
    report: &mut JobReport,
) {
    if job.retention.is_none() {
        return;
    }
    let check = || lease.check().map_err(|e| Box::new(e).into());
    match prune_remote::prune_remote(
        remote,
        job.retention.as_ref(),
        &options.zone,
        false,
        &options.faults,
        &check,
    ) {
        Ok(pruned) => {
            report.pruned = pruned.removed.into_iter().map(|r| r.increment).collect();
        }
        Err(e) => report.warnings.push(format!("retention: {e}")),
    }
}

/// The committed index, or an error when the destination lost the history
/// this machine remembers (a wrong bucket, an emptied prefix), unless
/// `init`.
fn committed(remote: &Remote, init: bool) -> Result<Option<RemoteIndex>, RunError> {
    let index = remote.fetch_index()?;
    if index.is_none() && remote.remembers_history() && !init {
        return Err(RunError::Store(StoreError::Missing {
            path: PathBuf::from(remote.url()),
            message: format!(
                "{}: holds no strata index, but this job has backed up there before: is it the \
                 right bucket and prefix (and endpoint)? Nothing was changed; run with --init to \
                 start a new history there",
                remote.url()
            ),
        }));
    }
    Ok(index)
}

fn dry_run(
    job: &Job,
    source: &Dir,
    remote: &Remote,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<JobRun, RunError> {
    let remote_index = committed(remote, options.init)?;
    let notes: Vec<String> = remote
        .staged()?
        .into_iter()
        .map(|r| format!("the interrupted run {r} is finished or rolled back"))
        .collect();
    let index = remote_index.map_or(StartIndex::Memory(Default::default()), |r| r.index);
    let scanned = scan_source(job, source, progress)?;
    let prepared = prepare(job, source, &scanned, &index, Some(&remote.cache), options)?;
    Ok(dry_run_report(job, &prepared, &index, notes, options))
}

/// The run, lease held.
fn execute(
    job: &Job,
    source: &Dir,
    remote: &Remote,
    lease: &Lease,
    options: &RunOptions,
    start_time: DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<JobReport, RunError> {
    let faults = &options.faults;
    let remote_index = committed(remote, options.init)?;
    let (index, base, committed_run, manifest) = match remote_index {
        Some(r) => (r.index, r.etag, r.run, r.manifest),
        None => (StartIndex::Memory(Default::default()), None, None, None),
    };
    let mut repairs = remote.recover(committed_run.as_deref(), manifest.as_ref(), faults)?;
    // An interrupted prune is finished before anything else.
    if let Some(merge) = prune_remote::read_journal(remote)? {
        lease.check()?;
        prune_remote::finish_merge(remote, &merge, faults)?;
        repairs.push(format!(
            "finished an interrupted prune: {} merged into {}",
            merge.removed.join(", "),
            merge.into
        ));
    }
    // An index in one object, as strata wrote it before manifests, names
    // no segment: any there are what an upgrade killed half way left.
    if manifest.is_none() && base.is_some() {
        remote.retire_segments(None, faults)?;
    }
    if let Some(owner) = &lease.took_over {
        repairs.insert(
            0,
            format!("took over the lease of {owner}, which had expired or is gone"),
        );
    }
    let scanned = scan_source(job, source, progress)?;
    let prepared = prepare(job, source, &scanned, &index, Some(&remote.cache), options)?;
    if !options.force {
        check_deletions(job, &prepared, &index)?;
    }
    let (mut report, mounts) = opening_report(job, &prepared, repairs);

    if prepared.plan.is_empty() {
        if let (None, Some(etag), StartIndex::File(file)) = (&manifest, &base, &index)
            && file.version() == 2
        {
            upgrade_index(remote, lease, faults, etag, committed_run.as_deref(), file)?;
        }
        report.stats = planned_stats(&prepared);
        finish(&mut report);
        remote.cache.save_mounts(&mounts)?;
        log(&remote.cache, start_time, &report)?;
        trace(job, remote, 0);
        return Ok(report);
    }

    let name = increment_name(
        index.last_increment(),
        start_time,
        options.force,
        &mut report,
    )?;
    let run = name.to_string();
    let changes = &prepared.plan.changes;
    begin_apply(progress, "uploading", &prepared.plan);
    // The run is staged before it writes anything: an empty plan, so that
    // a run killed before its first upload (after server-side copies into
    // its increment) is still one recovery finds and rolls back.
    remote.write_plan(
        &run,
        &Plan {
            base: base.clone(),
            ..Plan::default()
        },
    )?;
    let ctx = Ctx {
        remote,
        source,
        run: &run,
        faults,
        progress,
        copied: AtomicU64::new(0),
    };
    let outcomes = {
        let slots = std::sync::Mutex::new(Outcomes::new(changes.len()));
        (0..changes.len()).into_par_iter().for_each(|i| {
            let outcome = ctx.apply(changes.get(i));
            slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set(i, outcome);
        });
        slots
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let tally = Tally::of(
        changes,
        planned_stats(&prepared),
        &outcomes,
        ctx.copied.into_inner(),
    );
    report.stats = tally.stats;
    report.errors.extend(tally.errors);
    finish(&mut report);

    progress.begin("committing", None);
    // The new index, whole, in the cache folder `next`, and as what this
    // run changed: a delta, or (the first run, past the bound on deltas,
    // or an index in one object as strata wrote it before manifests) a new
    // base.
    let any_records = tally.records > 0;
    let increment = any_records.then(|| run.clone());
    let last = increment
        .as_deref()
        .or(index.last_increment())
        .map(String::from);
    let count = (index.len() as i64 + tally.count_delta) as u64;
    let next = object::open_cache(&remote.cache.path().join("next"))?;
    write_index(
        &next,
        &index,
        updates(changes, &outcomes),
        last.as_deref(),
        count,
    )?;
    // (No delta is encoded where there is no base to add it to.)
    let delta = manifest
        .as_ref()
        .map(|_| encode_delta(updates(changes, &outcomes), last.as_deref(), count));
    let seq = manifest.as_ref().map_or(1, |m| m.seq + 1);
    let (segment_bytes, compacted) = match (&manifest, delta) {
        (Some(m), Some(delta)) if !m.compacts(delta.len() as u64) => (delta, false),
        _ => (read_cached_index(&next)?, true),
    };
    let segment = Segment::of(
        object::manifest::segment_key(seq, &run, compacted),
        &segment_bytes,
    );
    let next_manifest = Manifest {
        format: object::manifest::FORMAT.into(),
        seq,
        count,
        last_increment: last,
        deltas: match (&manifest, compacted) {
            (Some(m), false) => m.deltas.iter().cloned().chain([segment.clone()]).collect(),
            _ => Vec::new(),
        },
        base: match (&manifest, compacted) {
            (Some(m), false) => m.base.clone(),
            _ => segment.clone(),
        },
    };
    let mut plan = Plan {
        base: base.clone(),
        segment: Some(segment.key.clone()),
        compacted,
        ..Plan::default()
    };
    for (change, outcome) in changes.iter().zip(outcomes.iter()) {
        if outcome.is_err() {
            continue;
        }
        let path = change.path();
        let key = |k: object_store::path::Path| remote.bucket.shown(&k);
        match change {
            Change::Deleted(old) if old.meta.kind != Kind::Dir => {
                plan.removes.push(key(remote.mirror_key(path)))
            }
            Change::New(_) | Change::Changed { .. }
                if change.kind() != Kind::Dir && change.needs_source() =>
            {
                plan.puts.push((
                    key(remote.staged_key(&run, path)),
                    key(remote.mirror_key(path)),
                ))
            }
            _ => {}
        }
    }
    // A path that leaves and comes back (a file that became a symlink) is
    // put, not removed: removals go first, but the put wins.
    let put: std::collections::HashSet<&str> =
        plan.puts.iter().map(|(_, to)| to.as_str()).collect();
    let removes: Vec<String> = plan
        .removes
        .iter()
        .filter(|k| !put.contains(k.as_str()))
        .cloned()
        .collect();
    plan.removes = removes;
    faults.point("object.plan", &RelPath::root());
    remote.write_plan(&run, &plan)?;

    if any_records {
        let records = merge_records(Default::default(), fresh_records(changes, &outcomes));
        let meta = IncrementMeta {
            version: META_VERSION,
            job: job.name.clone(),
            increment: run.clone(),
            start: format_time(start_time),
            finish: format_time(Utc::now()),
            files: records.collect(),
            stats: report.stats,
        };
        faults.point("object.meta", &RelPath::root());
        let body = serde_json::to_vec_pretty(&meta).expect("metadata serializes");
        let _ = remote
            .bucket
            .put(&remote.meta_key(&run), body, Write::Overwrite)
            .map_err(StoreError::from)?;
    }
    // The segment, then the manifest naming it: the commit.
    faults.point("object.segment", &RelPath::root());
    let _ = remote
        .bucket
        .put(
            &remote.bucket.key(&segment.key),
            segment_bytes,
            Write::Overwrite,
        )
        .map_err(StoreError::from)?;
    lease.check()?;
    faults.point("object.index", &RelPath::root());
    let mode = match &base {
        Some(etag) => Write::Replace(etag.clone()),
        None => Write::Create,
    };
    let key = remote.bucket.key(object::INDEX_KEY);
    let written = remote
        .bucket
        .put_with(&key, next_manifest.to_bytes(), mode, Some(&run))
        .map_err(StoreError::from)?;
    let etag = match written {
        Ok(etag) => etag,
        Err(object::client::Conflict) => {
            // Another writer committed since this run read the index: this
            // run's staged work is rolled back (by it now, or by the next
            // run's recovery), never adopted; the segments the other
            // writer's manifest names are kept.
            let theirs = remote.bucket.get(&key, None).ok().and_then(|f| match f {
                object::client::Fetched::Got { bytes, .. } => {
                    Manifest::parse(&bytes, std::path::Path::new("")).ok()
                }
                _ => None,
            });
            if let Some(theirs) = theirs {
                let _ = remote.recover(None, Some(&theirs), faults);
            }
            return Err(RunError::Store(StoreError::Corrupt {
                path: PathBuf::from(format!("{}/{}", remote.url(), object::INDEX_KEY)),
                message: "the index changed while this run went on (another writer): nothing \
                          was committed"
                    .into(),
            }));
        }
    };
    // Committed.
    report.increment = increment;
    remote.adopt_index(&next, etag, Some(run.clone()), next_manifest)?;
    remote.finish_plan(&run, &plan, faults)?;
    remote.cache.save_mounts(&mounts)?;
    log(&remote.cache, start_time, &report)?;
    trace(job, remote, changes.len());
    Ok(report)
}

/// The whole index file of a cache folder, read beneath its state folder's
/// descriptor (a vanished file is an error naming it).
fn read_cached_index(cache: &crate::store::Store) -> Result<Vec<u8>, StoreError> {
    cache
        .state()
        .read(crate::store::index::INDEX)
        .and_then(|b| b.ok_or_else(|| std::io::ErrorKind::NotFound.into()))
        .map_err(|e| StoreError::io(&cache.index_path(), e))
}

/// A run with nothing to do that met an index in one object (as strata
/// wrote it before manifests): the cached copy (its bytes as fetched) goes
/// up as the base of a manifest, written conditionally on the ETag it
/// replaces and tagged with the run that committed the index, so that
/// recovery reads the destination as before.
fn upgrade_index(
    remote: &Remote,
    lease: &Lease,
    faults: &crate::faults::Faults,
    etag: &str,
    run: Option<&str>,
    file: &crate::store::index::IndexFile,
) -> Result<(), RunError> {
    let bytes = read_cached_index(&remote.cache)?;
    let seq = 1;
    let segment = Segment::of(
        object::manifest::segment_key(seq, run.unwrap_or("upgrade"), true),
        &bytes,
    );
    let manifest = Manifest {
        format: object::manifest::FORMAT.into(),
        seq,
        count: file.len(),
        last_increment: file.last_increment().map(String::from),
        base: segment.clone(),
        deltas: Vec::new(),
    };
    faults.point("object.segment", &RelPath::root());
    let segment_key = remote.bucket.key(&segment.key);
    let _ = remote
        .bucket
        .put(&segment_key, bytes, Write::Overwrite)
        .map_err(StoreError::from)?;
    lease.check()?;
    faults.point("object.index", &RelPath::root());
    let key = remote.bucket.key(object::INDEX_KEY);
    match remote
        .bucket
        .put_with(
            &key,
            manifest.to_bytes(),
            Write::Replace(etag.to_string()),
            run,
        )
        .map_err(StoreError::from)?
    {
        Ok(etag) => Ok(remote.note_committed(etag, run.map(String::from), manifest)?),
        Err(object::client::Conflict) => {
            // Another writer committed: this run's segment goes, unless
            // the manifest now there names it (the same upgrade, made
            // elsewhere).
            let named = match remote.bucket.get(&key, None) {
                Ok(object::client::Fetched::Got { bytes, .. }) => {
                    Manifest::parse(&bytes, std::path::Path::new(""))
                        .is_ok_and(|m| m.segments().any(|s| s.key == segment.key))
                }
                _ => true,
            };
            if !named {
                let _ = remote.bucket.delete(&segment_key);
            }
            Err(RunError::Store(StoreError::Corrupt {
                path: remote.shown(object::INDEX_KEY),
                message: "the index changed while this run went on (another writer): nothing \
                          was committed"
                    .into(),
            }))
        }
    }
}

/// Requests and bytes of the run, logged at debug level (target
/// `strata::timing`, as the stage times are: `make bench` reads them).
fn trace(job: &Job, remote: &Remote, changes: usize) {
    tracing::debug!(
        target: "strata::timing",
        job = job.name.as_str(),
        changes,
        requests = remote.bucket.requests(),
        uploaded = remote.bucket.uploaded(),
        "object store: {} requests, {} bytes uploaded",
        remote.bucket.requests(),
        remote.bucket.uploaded()
    );
}

/// A new increment's name, after the newest committed one (the index names
/// it: no listing needed). A clock that reads earlier fails the run, or
/// with `--force` the run is ordered after it.
fn increment_name(
    last: Option<&str>,
    start: DateTime<Utc>,
    force: bool,
    report: &mut JobReport,
) -> Result<IncrementName, RunError> {
    let name = IncrementName::at(start, 0);
    let Some(newest) = last.and_then(IncrementName::parse) else {
        return Ok(name);
    };
    if name > newest {
        return Ok(name);
    }
    if newest.same_second(&name) {
        return Ok(newest.next_suffix());
    }
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
    Ok(newest.next_suffix())
}

struct Ctx<'a> {
    remote: &'a Remote,
    source: &'a Dir,
    run: &'a str,
    faults: &'a crate::faults::Faults,
    progress: &'a dyn Progress,
    /// Bytes read from the source by the changes done (a failed change
    /// counts none).
    copied: AtomicU64,
}

fn failed(path: &RelPath, kind: ErrorKind, message: impl Into<String>) -> Outcome {
    Outcome::Failed(Box::new(PathError::new(path, kind, message)))
}

fn store_failed(path: &RelPath, e: impl std::fmt::Display) -> Outcome {
    failed(path, ErrorKind::Write, e.to_string())
}

/// What a read of the source found.
struct Read {
    hash: crate::entry::Hash,
    xattrs: Xattrs,
    meta: crate::entry::Meta,
    ctime: crate::entry::ChangeTime,
    bytes: u64,
}

impl Ctx<'_> {
    fn apply(&self, change: Change<'_>) -> Outcome {
        let outcome = self.apply_inner(change);
        if change.is_file_work() {
            self.progress.inc(1);
        }
        outcome
    }

    fn apply_inner(&self, change: Change<'_>) -> Outcome {
        let path = change.path();
        let history = change.history_op();
        let remote = self.remote;
        let mut applied = Applied::new(
            history,
            change.old().and_then(|o| o.hash()),
            change.old().and_then(|o| o.xattrs()),
        );
        if let Change::Touch(states) = change {
            applied.recorded = None;
            applied.hash = states.new.hash().or(states.old.hash());
            return Outcome::Applied(applied);
        }
        // The last version of a tracked path that leaves the tracked set
        // (deleted, or now included only): a server-side copy into
        // deleted/ before anything replaces it (the mirror changes only
        // after the commit).
        if history == Some(Op::Deleted) && change.old().is_some_and(|o| o.meta.kind != Kind::Dir) {
            self.faults.point("object.deleted", path);
            if let Err(e) = remote.bucket.copy(
                &remote.mirror_key(path),
                &remote.part_key(self.run, Part::Deleted, path),
            ) {
                return store_failed(path, format!("cannot keep its last version: {e}"));
            }
        }
        let Some(new) = change.new_entry() else {
            return Outcome::Applied(applied);
        };
        // Counted once the change is done, as a failed change counts none.
        let mut bytes = 0;
        if change.needs_source() {
            match self.read_up(new) {
                Ok(read) => {
                    applied.hash = (new.meta.kind != Kind::Dir).then_some(read.hash);
                    applied.set_xattrs(Some(read.xattrs.digest()));
                    if !read.xattrs.is_empty() {
                        applied.set_xattr_data(read.xattrs);
                    }
                    if read.meta != new.meta || read.ctime != new.ctime {
                        applied.set_meta((read.meta, read.ctime));
                    }
                    bytes = read.bytes;
                }
                Err(outcome) => {
                    if history == Some(Op::Deleted) {
                        let _ =
                            remote
                                .bucket
                                .delete(&remote.part_key(self.run, Part::Deleted, path));
                    }
                    return outcome;
                }
            }
        }
        if let Some(Op::New | Op::Changed) = history
            && new.meta.kind != Kind::Dir
        {
            let from = if change.needs_source() {
                remote.staged_key(self.run, path)
            } else {
                // Entering the tracked set unchanged: the mirror's version.
                remote.mirror_key(path)
            };
            self.faults.point("object.track", path);
            if let Err(e) = remote
                .bucket
                .copy(&from, &remote.part_key(self.run, Part::Track, path))
            {
                return store_failed(path, format!("cannot record it in the increment: {e}"));
            }
        }
        if let Some(Op::New | Op::Changed) = history
            && applied.xattr_data().is_none()
            && let Some(digest) = applied.xattrs().filter(|x| *x != NO_XATTRS)
        {
            // A version recorded without a read: its xattrs from the store.
            match remote.load_xattrs(digest) {
                Ok(x) => applied.set_xattr_data(x),
                Err(e) => return store_failed(path, e),
            }
        }
        self.copied.fetch_add(bytes, Ordering::Relaxed);
        Outcome::Applied(applied)
    }

    /// Read the source's entry and upload what the store keeps of it: a
    /// file's bytes or a symlink's target into staging, the xattrs by
    /// digest.
    fn read_up(&self, new: &crate::entry::Entry) -> Result<Read, Outcome> {
        let path = &new.path;
        let remote = self.remote;
        let read_error = |e: std::io::Error| {
            let (kind, message) = crate::apply::read_error(e);
            failed(path, kind, message)
        };
        if self.faults.fails("source.read", path) {
            return Err(read_error(std::io::Error::from_raw_os_error(libc::EACCES)));
        }
        let changed = || {
            failed(
                path,
                ErrorKind::Changed,
                "changed while being copied; kept the previous version",
            )
        };
        let read = match new.meta.kind {
            Kind::File => {
                let (file, before) = self.source.open_file(path.as_bytes()).map_err(read_error)?;
                if before.file_type != FileTypeOf::File {
                    return Err(failed(
                        path,
                        ErrorKind::Changed,
                        "is no longer a regular file; kept the previous version",
                    ));
                }
                let xattrs = xattr::read_all(&file).map_err(read_error)?;
                self.faults.point("object.upload", path);
                let key = remote.staged_key(self.run, path);
                let hash = match remote
                    .bucket
                    .upload_file(&key, &file, before.size, &|n| self.progress.inc_bytes(n))
                {
                    Ok(Some(h)) => h,
                    Ok(None) => return Err(changed()),
                    Err(UploadError::Read(e)) => return Err(read_error(e)),
                    Err(UploadError::Store(e)) => return Err(store_failed(path, e)),
                };
                let after = fstat(&file).map_err(read_error)?;
                if (after.size, after.mtime, after.ctime)
                    != (before.size, before.mtime, before.ctime)
                {
                    let _ = remote.bucket.delete(&key);
                    return Err(changed());
                }
                Read {
                    hash,
                    xattrs,
                    meta: before.meta().expect("a regular file"),
                    ctime: before.ctime,
                    bytes: before.size,
                }
            }
            Kind::Symlink => {
                let (dir, name) = self.source.parent_of(path.as_bytes()).map_err(read_error)?;
                let before = dir.stat_at(name).map_err(read_error)?;
                if before.file_type != FileTypeOf::Symlink {
                    return Err(failed(
                        path,
                        ErrorKind::Changed,
                        "is no longer a symlink; kept the previous version",
                    ));
                }
                let link = dir.read_link(name).map_err(read_error)?;
                let after = dir.stat_at(name).map_err(read_error)?;
                if (after.meta(), after.ctime) != (before.meta(), before.ctime)
                    || link.len() as u64 != before.size
                {
                    return Err(changed());
                }
                self.faults.point("object.upload", path);
                let hash = crate::entry::Hash::of(&link);
                let key = remote.staged_key(self.run, path);
                if let Err(e) = remote.bucket.put(&key, link, Write::Overwrite) {
                    return Err(store_failed(path, e));
                }
                Read {
                    hash,
                    xattrs: Xattrs::default(),
                    meta: before.meta().expect("a symlink"),
                    ctime: before.ctime,
                    bytes: 0,
                }
            }
            Kind::Dir => {
                let dir = self.source.open_dir(path.as_bytes()).map_err(read_error)?;
                let st = dir.stat().map_err(read_error)?;
                let xattrs = xattr::read_all(&dir).map_err(read_error)?;
                if st.meta() != Some(new.meta) {
                    return Err(failed(
                        path,
                        ErrorKind::Changed,
                        "changed while the backup ran; the next run takes its metadata",
                    ));
                }
                Read {
                    hash: NO_XATTRS,
                    xattrs,
                    meta: new.meta,
                    ctime: st.ctime,
                    bytes: 0,
                }
            }
        };
        if !read.xattrs.is_empty()
            && let Err(e) = remote.save_xattrs(&read.xattrs)
        {
            return Err(store_failed(path, e));
        }
        Ok(read)
    }
}
