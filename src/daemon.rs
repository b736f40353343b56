//! The daemon: runs jobs on their cron schedules until it is stopped
//! (SPEC §5 `daemon`, §1.1 catch-up).
//!
//! [`run`] takes the jobs directory and the run options and returns how it
//! stopped. It is built from two pure parts and one loop:
//!
//! - [`Scheduler`] knows, for each scheduled job, when it is next due and
//!   whether it is running, and answers "what is due now?" — start it, or
//!   skip this time because its previous run is still going. It reads no
//!   clock: the loop passes `now`. Schedules are read on the wall clock of
//!   the zone it is made with, the machine's (`RunOptions::zone`, resolved
//!   by the CLI), so DST changes follow cron(8)'s rule (see
//!   [`crate::schedule`]).
//! - [`catch_up_due`] decides whether a job missed a scheduled time since its
//!   last recorded run (the last line of its `.strata/runs.jsonl`, whoever
//!   ran it), and so runs once right away. It is asked when the daemon
//!   learns a job's schedule (at start-up, or when its file is added or its
//!   schedule changes) and after the wall clock jumped (a suspend, or the
//!   time was set).
//! - The loop owns the clock, the filesystem and the threads. It waits on one
//!   channel, fed by a signal thread (SIGTERM, SIGINT) and by each job's run
//!   thread when the run finishes, with a timeout at the next due time or the
//!   next poll of the jobs directory, whichever comes first.
//!
//! Each run gets its own `std::thread`, which calls [`run_job`]; `run_job`
//! fans out on the one global rayon pool. Running it *on* a pool thread would
//! have a pool thread block on work the same pool must do.
//!
//! Job files are reloaded by polling, once a second, the names, sizes,
//! mtimes and inodes of the files in the jobs directory: a few `stat` calls,
//! which see every way a file changes (edited in place, renamed over, on NFS
//! or a bind mount that inotify does not report) without another crate, and
//! the same wake-up lets the loop notice a wall-clock jump, which a sleep on
//! the monotonic clock does not see. The cost is up to a second's delay.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};

use crate::job::load::{LoadError, job_files};
use crate::job::{Job, load_paths};
use crate::report::JobReport;
use crate::run::{RunOptions, run_job};
use crate::schedule::Schedule;
use crate::store::Layout;
use crate::store::meta::last_run;
use crate::tz::Zone;

/// How often the jobs directory is checked for added, changed or removed
/// job files (and the wall clock for jumps).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A difference between wall-clock and monotonic time elapsed over one
/// loop iteration beyond this is a clock jump (a suspend, or the time was
/// set), not drift.
const JUMP_TOLERANCE: TimeDelta = TimeDelta::seconds(5);

/// What the daemon needs to know.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The jobs directory (or a single job file).
    pub jobs_dir: PathBuf,
    /// How each run runs.
    pub run: RunOptions,
    /// The Prometheus textfile to update after each run, if any.
    pub metrics_file: Option<PathBuf>,
}

/// How the daemon stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// A signal asked it to stop; every running job finished.
    Clean,
    /// A second signal came while jobs were still running: it returns
    /// without waiting for them. The next run of each repairs what it left.
    Forced {
        /// The jobs that were still running.
        running: Vec<String>,
    },
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The jobs directory cannot be read at start-up.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The signal handlers cannot be installed.
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Whether a job should run right away because a scheduled time passed
/// since its last run: once, however many scheduled times passed.
///
/// `last_run` is the start of the latest recorded run, or `None` if the job
/// never ran; a job that never ran waits for its first scheduled time. A
/// last run in the future (the clock was set back) missed nothing. The
/// schedule is read on `zone`'s wall clock.
pub fn catch_up_due(
    schedule: &Schedule,
    last_run: Option<&DateTime<Utc>>,
    now: &DateTime<Utc>,
    zone: &Zone,
) -> bool {
    match last_run {
        Some(last) => schedule.last_fire_between(last, now, zone).is_some(),
        None => false,
    }
}

/// How far the wall clock jumped over an interval that took `monotonic`
/// (which stops during a suspend and is never set) and `wall` by the wall
/// clock, if that is more than drift: `Some(positive)` after a suspend or
/// the time set forward, `Some(negative)` after the time was set back.
pub fn clock_jump(monotonic: Duration, wall: TimeDelta) -> Option<TimeDelta> {
    let monotonic = TimeDelta::from_std(monotonic).unwrap_or(TimeDelta::MAX);
    let jump = wall - monotonic;
    (jump.abs() > JUMP_TOLERANCE).then_some(jump)
}

/// What the scheduler decided about a job that came due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick<K> {
    /// Start it (it is now marked running).
    Start(K),
    /// It came due at `due` while its previous run is still going: that
    /// time is skipped.
    Skip {
        /// The job.
        key: K,
        /// The scheduled time that is skipped.
        due: DateTime<Utc>,
    },
}

#[derive(Debug, Clone)]
struct Slot {
    schedule: Schedule,
    next: Option<DateTime<Utc>>,
}

/// When each scheduled job is next due, and which jobs are running.
///
/// Pure: every method that needs the time takes `now`, and the schedules
/// are read on the wall clock of the zone it was made with (the machine's,
/// for the daemon). Keys are whatever identifies a job (the daemon uses the
/// job file's path, so a job keeps its identity while its file is edited).
#[derive(Debug, Clone)]
pub struct Scheduler<K: Ord + Clone> {
    zone: Zone,
    slots: BTreeMap<K, Slot>,
    running: BTreeSet<K>,
}

impl<K: Ord + Clone> Scheduler<K> {
    /// An empty scheduler whose schedules are read in `zone`.
    pub fn new(zone: Zone) -> Self {
        Scheduler {
            zone,
            slots: BTreeMap::new(),
            running: BTreeSet::new(),
        }
    }

    /// The zone the schedules are read in.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Schedule `key` from `now` on. Returns `true` if it was not scheduled
    /// or had another schedule (and is rescheduled); `false`, keeping its
    /// next due time, if the schedule is the same.
    pub fn set(&mut self, key: K, schedule: &Schedule, now: &DateTime<Utc>) -> bool {
        if self
            .slots
            .get(&key)
            .is_some_and(|s| s.schedule == *schedule)
        {
            return false;
        }
        let next = schedule.next_after(now, &self.zone);
        self.slots.insert(
            key,
            Slot {
                schedule: schedule.clone(),
                next,
            },
        );
        true
    }

    /// Stop scheduling `key`. A run in progress stays marked running until
    /// [`Scheduler::finished`].
    pub fn remove(&mut self, key: &K) {
        self.slots.remove(key);
    }

    /// The scheduled keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.slots.keys()
    }

    /// When `key` is next due, if it is scheduled and fires again.
    pub fn next_of(&self, key: &K) -> Option<&DateTime<Utc>> {
        self.slots.get(key).and_then(|s| s.next.as_ref())
    }

    /// The job due first, and when. A running job counts: at its due time
    /// the loop must wake to skip it.
    pub fn next_due(&self) -> Option<(&K, &DateTime<Utc>)> {
        self.slots
            .iter()
            .filter_map(|(k, s)| s.next.as_ref().map(|t| (k, t)))
            .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
    }

    /// Every job due at `now`: start it, or skip it if it is still running.
    /// Either way its next due time moves past `now`, so a time missed by a
    /// late wake-up is run once, not once per slot.
    pub fn due(&mut self, now: &DateTime<Utc>) -> Vec<Tick<K>> {
        let mut ticks = Vec::new();
        for (key, slot) in &mut self.slots {
            let Some(due) = slot.next.filter(|t| t <= now) else {
                continue;
            };
            slot.next = slot.schedule.next_after(now, &self.zone);
            if self.running.insert(key.clone()) {
                ticks.push(Tick::Start(key.clone()));
            } else {
                ticks.push(Tick::Skip {
                    key: key.clone(),
                    due,
                });
            }
        }
        ticks
    }

    /// Mark `key` running outside its schedule (a catch-up run). Returns
    /// `false` if it is already running.
    pub fn start(&mut self, key: &K) -> bool {
        self.running.insert(key.clone())
    }

    /// Whether `key` is running.
    pub fn is_running(&self, key: &K) -> bool {
        self.running.contains(key)
    }

    /// How many jobs are running.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// `key`'s run ended.
    pub fn finished(&mut self, key: &K) {
        self.running.remove(key);
    }

    /// Recompute every next due time from `now` (after a clock jump, the
    /// times computed before it are too far off, in either direction).
    pub fn reschedule(&mut self, now: &DateTime<Utc>) {
        for slot in self.slots.values_mut() {
            slot.next = slot.schedule.next_after(now, &self.zone);
        }
    }
}

/// What wakes the loop.
enum Event {
    /// SIGTERM or SIGINT.
    Signal(i32),
    /// A run ended.
    Finished {
        /// The job file.
        key: PathBuf,
        /// Its report row.
        report: Box<JobReport>,
    },
}

/// What identifies a version of a job file: size, mtime (s, ns), inode.
type Stamp = (u64, i64, i64, u64);

/// The job files of the jobs directory, each with its [`Stamp`].
fn listing(jobs_dir: &Path) -> Result<BTreeMap<PathBuf, Stamp>, LoadError> {
    let mut out = BTreeMap::new();
    for file in job_files(&[jobs_dir.to_path_buf()])? {
        // A file removed since the listing is simply absent.
        if let Ok(m) = std::fs::metadata(&file) {
            out.insert(file, (m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
        }
    }
    Ok(out)
}

/// The start of the job's latest recorded run, from its run log.
fn last_run_start(job: &Job) -> Option<DateTime<Utc>> {
    let path = Layout::new(&job.destination).runs();
    match last_run(&path) {
        Ok(record) => record
            .and_then(|r| DateTime::parse_from_rfc3339(&r.start).ok())
            .map(|t| t.with_timezone(&Utc)),
        Err(e) => {
            warn!("{}: cannot read the run log: {e}", job.name);
            None
        }
    }
}

/// The loop's state.
struct Daemon {
    jobs_dir: PathBuf,
    metrics_file: Option<PathBuf>,
    options: Arc<RunOptions>,
    /// The last valid definition of each job, by job file.
    jobs: BTreeMap<PathBuf, Arc<Job>>,
    /// The job files as of the last successful load.
    listing: BTreeMap<PathBuf, Stamp>,
    /// The last poll could not read the jobs directory (logged once).
    dir_unreadable: bool,
    /// The start-up load is done (later loads log what changed).
    loaded_once: bool,
    scheduler: Scheduler<PathBuf>,
    threads: HashMap<PathBuf, (String, JoinHandle<()>)>,
    events: Sender<Event>,
}

/// Run jobs on their schedules until SIGTERM or SIGINT.
///
/// Fails only at start-up: when the jobs directory cannot be read, or the
/// signal handlers cannot be installed. After that, problems (an invalid job
/// file, an unreadable jobs directory, a failed run) are logged and the
/// daemon carries on.
pub fn run(options: DaemonOptions) -> Result<Stopped, DaemonError> {
    let (events, inbox) = mpsc::channel();
    // Signals first, so that a SIGTERM during start-up stops cleanly.
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(DaemonError::Signals)?;
    let signal_handle = signals.handle();
    let to_loop = events.clone();
    std::thread::Builder::new()
        .name("strata-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if to_loop.send(Event::Signal(signal)).is_err() {
                    break;
                }
            }
        })
        .map_err(DaemonError::Signals)?;

    let mut daemon = Daemon {
        jobs_dir: options.jobs_dir,
        metrics_file: options.metrics_file,
        scheduler: Scheduler::new(options.run.zone.clone()),
        options: Arc::new(options.run),
        jobs: BTreeMap::new(),
        listing: BTreeMap::new(),
        dir_unreadable: false,
        loaded_once: false,
        threads: HashMap::new(),
        events,
    };
    let now = Utc::now();
    let files = listing(&daemon.jobs_dir)?;
    daemon.reload(files, &now)?;
    info!(
        "watching {}: {} job(s), {} scheduled{}",
        daemon.jobs_dir.display(),
        daemon.jobs.len(),
        daemon.scheduler.keys().count(),
        daemon.next_due_text()
    );
    let stopped = daemon.serve(&inbox);
    signal_handle.close();
    Ok(stopped)
}

impl Daemon {
    /// Wait, run what is due, reload, until stopped.
    fn serve(&mut self, inbox: &Receiver<Event>) -> Stopped {
        let mut stopping = false;
        let mut last = (Instant::now(), Utc::now());
        let mut next_poll = Instant::now() + POLL_INTERVAL;
        loop {
            let (mono, wall) = (Instant::now(), Utc::now());
            let now = wall;
            if !stopping {
                if let Some(jump) = clock_jump(mono - last.0, wall - last.1) {
                    self.clock_jumped(jump, &now);
                }
                if mono >= next_poll {
                    self.poll(&now);
                    next_poll = mono + POLL_INTERVAL;
                }
                for tick in self.scheduler.due(&now) {
                    match tick {
                        Tick::Start(key) => self.spawn(key),
                        Tick::Skip { key, due } => info!(
                            "{}: still running at its scheduled time {}: that run is skipped",
                            self.name_of(&key),
                            self.scheduler.zone().format(&due)
                        ),
                    }
                }
            } else if self.scheduler.running() == 0 {
                info!("stopped");
                return Stopped::Clean;
            }
            last = (mono, wall);

            let event = if stopping {
                inbox.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                let until_poll = next_poll.saturating_duration_since(Instant::now());
                let until_due = self
                    .scheduler
                    .next_due()
                    .map(|(_, t)| (*t - Utc::now()).to_std().unwrap_or(Duration::ZERO));
                inbox.recv_timeout(until_due.map_or(until_poll, |d| d.min(until_poll)))
            };
            match event {
                // The caller says what is left behind.
                Ok(Event::Signal(_)) if stopping => {
                    let mut running: Vec<String> =
                        self.threads.values().map(|(n, _)| n.clone()).collect();
                    running.sort();
                    return Stopped::Forced { running };
                }
                Ok(Event::Signal(signal)) => {
                    stopping = true;
                    let running: Vec<&str> =
                        self.threads.values().map(|(n, _)| n.as_str()).collect();
                    if !running.is_empty() {
                        info!(
                            "{}: starting no new run; waiting for {} to finish \
                             (signal again to stop now)",
                            signal_name(signal),
                            running.join(", ")
                        );
                    } else {
                        info!("{}: stopping", signal_name(signal));
                    }
                }
                Ok(Event::Finished { key, report }) => self.finished(key, report),
                Err(RecvTimeoutError::Timeout) => {}
                // The loop holds a sender, so the channel never closes.
                Err(RecvTimeoutError::Disconnected) => unreachable!("the loop holds a sender"),
            }
        }
    }

    /// Check the jobs directory; reload if a job file was added, changed or
    /// removed.
    fn poll(&mut self, now: &DateTime<Utc>) {
        let files = match listing(&self.jobs_dir) {
            Ok(files) => files,
            Err(e) => {
                if !self.dir_unreadable {
                    error!("{e}; keeping the jobs loaded so far and retrying");
                    self.dir_unreadable = true;
                }
                return;
            }
        };
        if std::mem::take(&mut self.dir_unreadable) {
            info!("{} is readable again", self.jobs_dir.display());
        } else if files == self.listing {
            return;
        }
        if let Err(e) = self.reload(files, now) {
            error!("{e}; keeping the jobs loaded so far and retrying");
            self.dir_unreadable = true;
        }
    }

    /// Load every job file and update the job table and the schedule.
    fn reload(
        &mut self,
        files: BTreeMap<PathBuf, Stamp>,
        now: &DateTime<Utc>,
    ) -> Result<(), LoadError> {
        let loaded = load_paths(std::slice::from_ref(&self.jobs_dir))?;
        for d in &loaded.diagnostics {
            if d.is_error() {
                error!("{d}");
            } else {
                warn!("{d}");
            }
        }
        let mut fresh: BTreeMap<PathBuf, Job> = loaded
            .jobs
            .into_iter()
            .map(|job| (job.file.clone(), job))
            .collect();
        let present: BTreeSet<PathBuf> = files.keys().chain(fresh.keys()).cloned().collect();
        let mut table: BTreeMap<PathBuf, Arc<Job>> = BTreeMap::new();
        let mut stale = Vec::new();
        for file in present {
            match fresh.remove(&file) {
                Some(job) => {
                    let what = if !self.jobs.contains_key(&file) {
                        Some("added")
                    } else if self.listing.get(&file) != files.get(&file) {
                        Some("reloaded")
                    } else {
                        None
                    };
                    if let Some(what) = what.filter(|_| self.loaded_once) {
                        info!("{}: job {} {what}", file.display(), job.name);
                    }
                    table.insert(file, Arc::new(job));
                }
                None => {
                    if let Some(old) = self.jobs.get(&file) {
                        stale.push((file, old.clone()));
                    }
                }
            }
        }
        // An invalid file keeps its job's last valid definition, unless a
        // valid job now has that name or destination.
        for (file, old) in stale {
            let taken = table
                .values()
                .any(|j| j.name == old.name || j.destination == old.destination);
            if taken {
                warn!(
                    "{}: invalid; job {} is dropped, since another job file now uses its \
                     name or destination",
                    file.display(),
                    old.name
                );
            } else {
                warn!(
                    "{}: invalid; job {} keeps its last valid definition until the file is fixed",
                    file.display(),
                    old.name
                );
                table.insert(file, old);
            }
        }
        for (file, old) in &self.jobs {
            if !table.contains_key(file) {
                info!("{}: job {} removed", file.display(), old.name);
            }
        }

        let unscheduled: Vec<PathBuf> = self
            .scheduler
            .keys()
            .filter(|k| !table.get(*k).is_some_and(|j| is_scheduled(j)))
            .cloned()
            .collect();
        for key in unscheduled {
            self.scheduler.remove(&key);
        }
        self.jobs = table;
        self.listing = files;
        self.loaded_once = true;
        let jobs: Vec<(PathBuf, Arc<Job>)> = self
            .jobs
            .iter()
            .map(|(k, j)| (k.clone(), j.clone()))
            .collect();
        for (key, job) in jobs {
            let Some(schedule) = job.schedule.as_ref().filter(|_| job.enabled) else {
                continue;
            };
            if self.scheduler.set(key.clone(), schedule, now) {
                self.catch_up(&key, &job, schedule, now);
            }
        }
        Ok(())
    }

    /// Run `job` now if it missed a scheduled time since its last run.
    fn catch_up(&mut self, key: &PathBuf, job: &Job, schedule: &Schedule, now: &DateTime<Utc>) {
        if self.scheduler.is_running(key) {
            return;
        }
        let last = last_run_start(job);
        let zone = self.scheduler.zone();
        if catch_up_due(schedule, last.as_ref(), now, zone) {
            info!(
                "{}: a scheduled time passed since its last run ({}): running it now",
                job.name,
                last.as_ref().map(|t| zone.format(t)).unwrap_or_default()
            );
            self.scheduler.start(key);
            self.spawn(key.clone());
        }
    }

    /// After a wall-clock jump: recompute the schedule and catch up.
    fn clock_jumped(&mut self, jump: TimeDelta, now: &DateTime<Utc>) {
        info!(
            "the clock jumped by {}s (a suspend, or the time was set): rescheduling",
            jump.num_seconds()
        );
        self.scheduler.reschedule(now);
        let jobs: Vec<(PathBuf, Arc<Job>)> = self
            .scheduler
            .keys()
            .filter_map(|k| self.jobs.get(k).map(|j| (k.clone(), j.clone())))
            .collect();
        for (key, job) in jobs {
            if let Some(schedule) = &job.schedule {
                self.catch_up(&key, &job, schedule, now);
            }
        }
    }

    /// Start a run of a job the scheduler has marked running, on its own
    /// thread.
    fn spawn(&mut self, key: PathBuf) {
        let Some(job) = self.jobs.get(&key).cloned() else {
            self.scheduler.finished(&key);
            return;
        };
        let options = self.options.clone();
        let events = self.events.clone();
        let thread_key = key.clone();
        let name = job.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("run-{}", job.name))
            .spawn(move || {
                // A panic in a run must not leave the job marked running
                // forever: it becomes a failed row.
                let report =
                    std::panic::catch_unwind(AssertUnwindSafe(|| run_job(&job, &options).report))
                        .unwrap_or_else(|_| JobReport::failed(&job.name, "the run panicked"));
                let _ = events.send(Event::Finished {
                    key: thread_key,
                    report: Box::new(report),
                });
            });
        match spawned {
            Ok(handle) => {
                tracing::debug!("{name}: run started");
                self.threads.insert(key, (name, handle));
            }
            Err(e) => {
                error!("{name}: cannot start a thread for the run: {e}");
                self.scheduler.finished(&key);
            }
        }
    }

    /// A run ended: log it, and let the job run again.
    fn finished(&mut self, key: PathBuf, report: Box<JobReport>) {
        self.scheduler.finished(&key);
        if let Some((_, handle)) = self.threads.remove(&key) {
            let _ = handle.join();
        }
        report.log_summary();
        self.write_metrics(&report);
        if let Some(next) = self.scheduler.next_of(&key) {
            tracing::debug!(
                "{}: next run {}",
                report.job,
                self.scheduler.zone().format(next)
            );
        }
    }

    /// Update the metrics file, if any, with a finished run.
    fn write_metrics(&self, report: &JobReport) {
        let Some(path) = &self.metrics_file else {
            return;
        };
        let defined: Vec<&str> = self.jobs.values().map(|j| j.name.as_str()).collect();
        let reports = std::slice::from_ref(report);
        if let Err(e) = crate::monitor::metrics::update(path, reports, &defined, Utc::now()) {
            warn!("{e}");
        }
    }

    fn name_of(&self, key: &PathBuf) -> String {
        self.jobs
            .get(key)
            .map(|j| j.name.clone())
            .unwrap_or_else(|| key.display().to_string())
    }

    fn next_due_text(&self) -> String {
        match self.scheduler.next_due() {
            Some((key, at)) => format!(
                "; next: {} at {}",
                self.name_of(key),
                self.scheduler.zone().format(at)
            ),
            None => String::new(),
        }
    }
}

fn is_scheduled(job: &Job) -> bool {
    job.enabled && job.schedule.is_some()
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn zone(name: &str) -> Zone {
        Zone::named(name).unwrap()
    }

    fn cron(s: &str) -> Schedule {
        Schedule::parse(s).unwrap()
    }

    #[test]
    fn a_missed_daily_slot_runs_once() {
        let daily = cron("0 2 * * *");
        // Last run two days ago, down since: two slots missed, one decision.
        let last = at("2024-05-01T02:00:05Z");
        let now = at("2024-05-03T09:00:00Z");
        assert!(catch_up_due(&daily, Some(&last), &now, &Zone::utc()));
    }

    #[test]
    fn no_missed_slot_no_run() {
        let daily = cron("0 2 * * *");
        let last = at("2024-05-03T02:00:05Z");
        assert!(!catch_up_due(
            &daily,
            Some(&last),
            &at("2024-05-03T09:00:00Z"),
            &Zone::utc()
        ));
        // Just before the next slot, and exactly at the slot the last run
        // started at.
        assert!(!catch_up_due(
            &daily,
            Some(&last),
            &at("2024-05-04T01:59:59Z"),
            &Zone::utc()
        ));
        assert!(!catch_up_due(
            &daily,
            Some(&at("2024-05-03T02:00:00Z")),
            &at("2024-05-03T02:00:00Z"),
            &Zone::utc()
        ));
        // The slot itself has passed once "now" reaches it.
        assert!(catch_up_due(
            &daily,
            Some(&last),
            &at("2024-05-04T02:00:00Z"),
            &Zone::utc()
        ));
    }

    #[test]
    fn a_job_that_never_ran_waits_for_its_first_slot() {
        let daily = cron("0 2 * * *");
        assert!(!catch_up_due(
            &daily,
            None,
            &at("2024-05-03T09:00:00Z"),
            &Zone::utc()
        ));
    }

    #[test]
    fn a_last_run_in_the_future_missed_nothing() {
        // The clock was set back after the last run.
        let hourly = cron("@hourly");
        let last = at("2024-05-03T12:30:00Z");
        assert!(!catch_up_due(
            &hourly,
            Some(&last),
            &at("2024-05-03T10:00:00Z"),
            &Zone::utc()
        ));
    }

    #[test]
    fn catch_up_reads_the_schedule_in_the_given_zone() {
        // 02:00 in New York is 06:00 UTC (EDT): a run at 05:00 UTC has not
        // yet had its day's slot at 05:30 UTC, but has at 06:30 UTC.
        let ny = zone("America/New_York");
        let daily = cron("0 2 * * *");
        let last = at("2024-05-03T05:00:00Z");
        assert!(!catch_up_due(
            &daily,
            Some(&last),
            &at("2024-05-03T05:30:00Z"),
            &ny
        ));
        assert!(catch_up_due(
            &daily,
            Some(&last),
            &at("2024-05-03T06:30:00Z"),
            &ny
        ));
    }

    #[test]
    fn a_suspend_or_a_set_clock_is_a_jump_drift_is_not() {
        let second = Duration::from_secs(1);
        assert_eq!(clock_jump(second, TimeDelta::milliseconds(1003)), None);
        // Suspended for an hour during a one-second wait.
        assert_eq!(
            clock_jump(second, TimeDelta::seconds(3601)),
            Some(TimeDelta::seconds(3600))
        );
        // The time was set back ten minutes.
        assert_eq!(
            clock_jump(second, TimeDelta::seconds(-599)),
            Some(TimeDelta::seconds(-600))
        );
    }

    #[test]
    fn next_due_is_the_earliest_among_jobs() {
        let now = at("2024-05-03T09:10:00Z");
        let mut s: Scheduler<&str> = Scheduler::new(Zone::utc());
        assert_eq!(s.next_due(), None);
        assert!(s.set("daily", &cron("0 2 * * *"), &now));
        assert!(s.set("quarter", &cron("*/15 * * * *"), &now));
        assert!(s.set("hourly", &cron("@hourly"), &now));
        assert!(s.set("never", &cron("0 0 30 2 *"), &now));
        assert_eq!(
            s.next_due(),
            Some((&"quarter", &at("2024-05-03T09:15:00Z")))
        );
        assert_eq!(s.next_of(&"never"), None);
        // Nothing is due before then; at 09:15 only "quarter" starts.
        assert!(s.due(&at("2024-05-03T09:14:59Z")).is_empty());
        assert_eq!(
            s.due(&at("2024-05-03T09:15:00Z")),
            vec![Tick::Start("quarter")]
        );
        assert_eq!(
            s.next_due(),
            Some((&"quarter", &at("2024-05-03T09:30:00Z")))
        );
        // Removing a job takes it out of the running for next.
        s.remove(&"quarter");
        assert_eq!(s.next_due(), Some((&"hourly", &at("2024-05-03T10:00:00Z"))));
    }

    #[test]
    fn the_same_schedule_keeps_its_due_time_and_a_new_one_is_recomputed() {
        let mut s: Scheduler<&str> = Scheduler::new(Zone::utc());
        assert!(s.set("job", &cron("0 2 * * *"), &at("2024-05-03T01:00:00Z")));
        assert!(!s.set("job", &cron("0 2 * * *"), &at("2024-05-03T01:30:00Z")));
        assert_eq!(s.next_of(&"job"), Some(&at("2024-05-03T02:00:00Z")));
        assert!(s.set("job", &cron("0 3 * * *"), &at("2024-05-03T01:30:00Z")));
        assert_eq!(s.next_of(&"job"), Some(&at("2024-05-03T03:00:00Z")));
    }

    #[test]
    fn a_job_still_running_when_due_again_is_skipped_not_doubled() {
        let mut s: Scheduler<&str> = Scheduler::new(Zone::utc());
        let every_minute = cron("* * * * *");
        s.set("job", &every_minute, &at("2024-05-03T09:00:30Z"));
        assert_eq!(s.due(&at("2024-05-03T09:01:00Z")), vec![Tick::Start("job")]);
        assert!(s.is_running(&"job"));
        // Due again while running: skipped, and the schedule moves on.
        assert_eq!(
            s.due(&at("2024-05-03T09:02:00Z")),
            vec![Tick::Skip {
                key: "job",
                due: at("2024-05-03T09:02:00Z")
            }]
        );
        assert_eq!(s.next_of(&"job"), Some(&at("2024-05-03T09:03:00Z")));
        // A catch-up start is refused while it runs, too.
        assert!(!s.start(&"job"));
        s.finished(&"job");
        assert_eq!(s.running(), 0);
        assert_eq!(s.due(&at("2024-05-03T09:03:00Z")), vec![Tick::Start("job")]);
    }

    #[test]
    fn a_late_wake_up_runs_once_not_once_per_missed_slot() {
        let mut s: Scheduler<&str> = Scheduler::new(Zone::utc());
        s.set("job", &cron("* * * * *"), &at("2024-05-03T09:00:30Z"));
        let late = at("2024-05-03T09:10:30Z");
        assert_eq!(s.due(&late), vec![Tick::Start("job")]);
        assert!(s.due(&late).is_empty());
        assert_eq!(s.next_of(&"job"), Some(&at("2024-05-03T09:11:00Z")));
    }

    #[test]
    fn a_running_job_removed_and_readded_is_still_running() {
        let mut s: Scheduler<&str> = Scheduler::new(Zone::utc());
        s.set("job", &cron("* * * * *"), &at("2024-05-03T09:00:30Z"));
        assert_eq!(s.due(&at("2024-05-03T09:01:00Z")), vec![Tick::Start("job")]);
        s.remove(&"job");
        s.set("job", &cron("* * * * *"), &at("2024-05-03T09:01:30Z"));
        assert!(matches!(
            s.due(&at("2024-05-03T09:02:00Z")).as_slice(),
            [Tick::Skip { .. }]
        ));
    }

    #[test]
    fn reschedule_after_a_clock_jump_back() {
        let mut s: Scheduler<&str> = Scheduler::new(Zone::utc());
        s.set("job", &cron("@hourly"), &at("2024-05-03T09:30:00Z"));
        assert_eq!(s.next_of(&"job"), Some(&at("2024-05-03T10:00:00Z")));
        s.reschedule(&at("2024-05-03T07:30:00Z"));
        assert_eq!(s.next_of(&"job"), Some(&at("2024-05-03T08:00:00Z")));
    }

    /// What the daemon's loop starts between `from` and `to`: it wakes at
    /// least every poll interval (a second) and asks the scheduler what is
    /// due, exactly as `Daemon::serve` does; each run ends at once.
    fn starts(zone: &Zone, expr: &str, from: &str, to: &str) -> Vec<String> {
        let (from, to) = (at(from), at(to));
        let mut s: Scheduler<&str> = Scheduler::new(zone.clone());
        s.set("job", &cron(expr), &from);
        let mut started = Vec::new();
        let mut now = from;
        while now <= to {
            for tick in s.due(&now) {
                assert_eq!(tick, Tick::Start("job"));
                started.push(zone.at(&now).to_rfc3339());
                s.finished(&"job");
            }
            now += TimeDelta::seconds(1);
        }
        started
    }

    #[test]
    fn fire_decisions_around_both_changes_of_each_zone() {
        let berlin = zone("Europe/Berlin");
        let ny = zone("America/New_York");
        let lord_howe = zone("Australia/Lord_Howe");
        let cases: [(&Zone, &str, &str, &str, &[&str]); 12] = [
            // Berlin, spring: 02:00 CET -> 03:00 CEST at 01:00Z.
            (
                &berlin,
                "30 2 * * *",
                "2026-03-28T23:00:00Z",
                "2026-03-29T03:00:00Z",
                &["2026-03-29T03:00:00+02:00"],
            ),
            (
                &berlin,
                "*/30 * * * *",
                "2026-03-29T00:10:00Z",
                "2026-03-29T01:40:00Z",
                &[
                    "2026-03-29T01:30:00+01:00",
                    "2026-03-29T03:00:00+02:00",
                    "2026-03-29T03:30:00+02:00",
                ],
            ),
            // Berlin, autumn: 03:00 CEST -> 02:00 CET at 01:00Z.
            (
                &berlin,
                "30 2 * * *",
                "2026-10-24T23:00:00Z",
                "2026-10-25T03:00:00Z",
                &["2026-10-25T02:30:00+02:00"],
            ),
            (
                &berlin,
                "*/30 * * * *",
                "2026-10-25T00:10:00Z",
                "2026-10-25T01:40:00Z",
                &[
                    "2026-10-25T02:30:00+02:00",
                    "2026-10-25T02:00:00+01:00",
                    "2026-10-25T02:30:00+01:00",
                ],
            ),
            // New York, spring: 02:00 EST -> 03:00 EDT at 07:00Z.
            (
                &ny,
                "30 2 * * *",
                "2026-03-08T05:00:00Z",
                "2026-03-08T09:00:00Z",
                &["2026-03-08T03:00:00-04:00"],
            ),
            (
                &ny,
                "0 * * * *",
                "2026-03-08T05:30:00Z",
                "2026-03-08T08:30:00Z",
                &[
                    "2026-03-08T01:00:00-05:00",
                    "2026-03-08T03:00:00-04:00",
                    "2026-03-08T04:00:00-04:00",
                ],
            ),
            // New York, autumn: 02:00 EDT -> 01:00 EST at 06:00Z.
            (
                &ny,
                "30 1 * * *",
                "2026-11-01T04:00:00Z",
                "2026-11-01T08:00:00Z",
                &["2026-11-01T01:30:00-04:00"],
            ),
            (
                &ny,
                "@hourly",
                "2026-11-01T04:30:00Z",
                "2026-11-01T07:30:00Z",
                &[
                    "2026-11-01T01:00:00-04:00",
                    "2026-11-01T01:00:00-05:00",
                    "2026-11-01T02:00:00-05:00",
                ],
            ),
            // Lord Howe, spring: 02:00 +10:30 -> 02:30 +11 at 15:30Z.
            (
                &lord_howe,
                "15 2 * * *",
                "2026-10-03T14:00:00Z",
                "2026-10-03T17:00:00Z",
                &["2026-10-04T02:30:00+11:00"],
            ),
            (
                &lord_howe,
                "*/20 * * * *",
                "2026-10-03T15:00:00Z",
                "2026-10-03T15:55:00Z",
                &["2026-10-04T01:40:00+10:30", "2026-10-04T02:40:00+11:00"],
            ),
            // Lord Howe, autumn: 02:00 +11 -> 01:30 +10:30 at 15:00Z.
            (
                &lord_howe,
                "45 1 * * *",
                "2026-04-04T13:00:00Z",
                "2026-04-04T17:00:00Z",
                &["2026-04-05T01:45:00+11:00"],
            ),
            (
                &lord_howe,
                "*/20 * * * *",
                "2026-04-04T14:30:00Z",
                "2026-04-04T15:25:00Z",
                &["2026-04-05T01:40:00+11:00", "2026-04-05T01:40:00+10:30"],
            ),
        ];
        for (zone, expr, from, to, want) in cases {
            assert_eq!(
                starts(zone, expr, from, to),
                want,
                "{zone} {expr} {from}..{to}"
            );
        }
    }

    #[test]
    fn catch_up_across_dst_changes() {
        let berlin = zone("Europe/Berlin");
        let daily = cron("30 2 * * *");
        // Ran at 02:30 CEST in the first pass; down until 02:40 CET in the
        // second pass: nothing was missed (cron fires a repeated time once).
        let first_pass = at("2026-10-25T00:30:05Z");
        assert!(!catch_up_due(
            &daily,
            Some(&first_pass),
            &at("2026-10-25T01:40:00Z"),
            &berlin
        ));
        // Ran the day before; the 02:30 that did not exist on 2026-03-29
        // fired at 03:00 CEST: down over it, it is caught up.
        let day_before = at("2026-03-28T01:30:05Z");
        assert!(!catch_up_due(
            &daily,
            Some(&day_before),
            &at("2026-03-29T00:59:59Z"),
            &berlin
        ));
        assert!(catch_up_due(
            &daily,
            Some(&day_before),
            &at("2026-03-29T01:00:00Z"),
            &berlin
        ));
        // A wildcard job did miss the second pass.
        let hourly = cron("30 * * * *");
        assert!(catch_up_due(
            &hourly,
            Some(&first_pass),
            &at("2026-10-25T01:40:00Z"),
            &berlin
        ));
    }
}
