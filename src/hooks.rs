//! What happens around a job's backup, outside of it: the job's hook
//! commands (`hooks` in the job file) and its healthcheck pings.
//!
//! [`Around`] is used by [`crate::run::run_job`] with the job's lock held:
//! [`Around::start`] pings `/start` and runs the `before` hook (an error
//! means the backup must not run); [`Around::finish`] runs `after`,
//! `on_error` and `finally` as the report's status asks, then pings success
//! or `/fail`, and writes into the report what went wrong. Neither touches
//! the backup: a hook can turn a run's status to `failed`, never undo what
//! it committed.
//!
//! [`run_shell`] runs one command with `sh -c` in its own process group,
//! its stdout and stderr merged into one pipe (so the lines keep their
//! order) and logged line by line as they come; on timeout the whole group
//! gets SIGTERM, then SIGKILL. The wait is a thread blocked in `wait()`
//! and a channel with a timeout: no SIGCHLD handler, no polling.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::job::Job;
use crate::monitor::healthcheck::{self, Signal};
use crate::progress::Progress;
use crate::report::{JobReport, Status};

/// How long a hook that ignores SIGTERM gets before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// How long to keep reading output after the hook exited: a background
/// process it started may hold the pipe open forever.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// How many of the last output lines a report quotes.
const TAIL_LINES: usize = 10;

/// How many characters of output a report quotes at most.
const TAIL_CHARS: usize = 2000;

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Before the backup.
    Before,
    /// After a backup that committed.
    After,
    /// After a failed or partial run.
    OnError,
    /// Last, always.
    Finally,
}

impl Hook {
    /// The hook's name in the job file.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Before => "before",
            Hook::After => "after",
            Hook::OnError => "on_error",
            Hook::Finally => "finally",
        }
    }
}

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// `sh` could not be started (or its output pipe created).
    #[error("{} hook could not be started in {}: {source}", hook.as_str(), dir.display())]
    Spawn {
        /// Which hook.
        hook: Hook,
        /// The directory it was to run in.
        dir: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It exited with a status other than 0, or was killed by a signal.
    #[error("{} hook failed ({}){}", hook.as_str(), describe(*status), quote(output))]
    Failed {
        /// Which hook.
        hook: Hook,
        /// How it ended.
        status: ExitStatus,
        /// The end of its output.
        output: String,
    },
    /// It ran longer than the job's `hooks.timeout` and was stopped.
    #[error("{} hook timed out after {seconds}s and was stopped{}", hook.as_str(), quote(output))]
    TimedOut {
        /// Which hook.
        hook: Hook,
        /// The timeout.
        seconds: u64,
        /// The end of its output.
        output: String,
    },
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// The end of a hook's output, on one line (escaped), for a message.
fn quote(output: &str) -> String {
    let trimmed = output.trim_end();
    if trimmed.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = trimmed.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if tail.chars().count() > TAIL_CHARS {
        let skip = tail.chars().count() - TAIL_CHARS;
        tail = format!("…{}", tail.chars().skip(skip).collect::<String>());
    }
    format!("; output: {tail:?}")
}

/// How a command ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status; `None` if it timed out and was stopped.
    pub status: Option<ExitStatus>,
    /// The end of its output (stdout and stderr, merged), lossily decoded.
    pub output: String,
}

/// Run `command` with `sh -c` in `dir`, with `env` added to the environment
/// and stdin from `/dev/null`. Each output line is logged (info) under
/// `label`. After `timeout` the command's process group gets SIGTERM, and
/// SIGKILL 5 s later.
pub fn run_shell(
    command: &str,
    dir: &Path,
    env: &[(&str, String)],
    timeout: Duration,
    label: &str,
) -> std::io::Result<Finished> {
    let (reader, writer) = std::io::pipe()?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Its own process group, so that a timeout stops what it started.
        .process_group(0);
    let spawned = cmd.spawn();
    // The command holds our copies of the pipe's write end: drop them, or
    // the reader never sees the end of the output.
    drop(cmd);
    let mut child = spawned?;
    let pid = child.id() as libc::pid_t;

    let tail = Arc::new(Mutex::new(Tail::default()));
    let (output_done, output_finished) = mpsc::channel();
    {
        let tail = tail.clone();
        let label = label.to_string();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(reader);
            let mut line = Vec::new();
            while let Ok(n) = lines.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']);
                tracing::info!(target: "strata::hooks", "{label}: {text}");
                tail.lock().expect("tail lock").push(text);
                line.clear();
            }
            let _ = output_done.send(());
        });
    }

    let (exited, exit) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited.send(child.wait());
    });
    let status = match exit.recv_timeout(timeout) {
        Ok(status) => Some(status?),
        Err(RecvTimeoutError::Timeout) => {
            signal_group(pid, libc::SIGTERM);
            if exit.recv_timeout(KILL_GRACE).is_err() {
                signal_group(pid, libc::SIGKILL);
                let _ = exit.recv();
            }
            // Whatever else of the group is left goes too.
            signal_group(pid, libc::SIGKILL);
            None
        }
        Err(RecvTimeoutError::Disconnected) => unreachable!("the waiting thread always sends"),
    };
    let _ = output_finished.recv_timeout(OUTPUT_GRACE);
    let output = tail.lock().expect("tail lock").text();
    Ok(Finished { status, output })
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals a process group; it
    // touches no memory of ours. The group is the hook's own (process_group(0)).
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// The last lines of output, bounded.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        let line: String = line.chars().take(TAIL_CHARS).collect();
        self.lines.push_back(line);
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// The hooks and pings of one run of a job.
pub struct Around<'a> {
    job: &'a Job,
    progress: &'a dyn Progress,
    /// Dry runs have no hooks and no pings.
    active: bool,
    /// Problems that did not fail the run, for the report.
    warnings: Vec<String>,
}

impl<'a> Around<'a> {
    /// The surroundings of a run of `job`, which show on `progress`; inert
    /// for a dry run.
    pub fn new(job: &'a Job, dry_run: bool, progress: &'a dyn Progress) -> Around<'a> {
        Around {
            job,
            progress,
            active: !dry_run,
            warnings: Vec::new(),
        }
    }

    /// Ping `/start`, then run the `before` hook. An error means the backup
    /// must not run.
    pub fn start(&mut self) -> Result<(), HookError> {
        if !self.active {
            return Ok(());
        }
        self.ping(Signal::Start, "");
        match self.job.hooks.as_ref().and_then(|h| h.before.as_deref()) {
            Some(command) => self.hook(Hook::Before, command, "running", None),
            None => Ok(()),
        }
    }

    /// Run `after` (if the backup committed), `on_error` (if the run failed
    /// or is partial) and `finally`; then ping success or `/fail`. A failed
    /// `after` turns the run `failed`; other problems become warnings.
    pub fn finish(mut self, report: &mut JobReport) {
        if !self.active {
            return;
        }
        if let Some(hooks) = self.job.hooks.clone() {
            if let Some(command) = &hooks.after
                && matches!(report.status, Status::Success | Status::Partial)
            {
                let status = report.status.as_str();
                if let Err(e) = self.hook(Hook::After, command, status, Some(report)) {
                    report.status = Status::Failed;
                    report.message = Some(match report.message.take() {
                        Some(m) => format!("{m}; {e}"),
                        None => e.to_string(),
                    });
                }
            }
            if let Some(command) = &hooks.on_error
                && report.status.is_failure()
            {
                let status = report.status.as_str();
                if let Err(e) = self.hook(Hook::OnError, command, status, Some(report)) {
                    self.warnings.push(e.to_string());
                }
            }
            if let Some(command) = &hooks.finally {
                let status = report.status.as_str();
                if let Err(e) = self.hook(Hook::Finally, command, status, Some(report)) {
                    self.warnings.push(e.to_string());
                }
            }
        }
        let signal = if report.status.is_failure() {
            Signal::Fail
        } else {
            Signal::Success
        };
        self.ping(signal, &ping_body(report));
        // Into the report, which the table or the log shows once.
        report.warnings.append(&mut self.warnings);
    }

    fn hook(
        &mut self,
        hook: Hook,
        command: &str,
        status: &str,
        report: Option<&JobReport>,
    ) -> Result<(), HookError> {
        let job = self.job;
        let timeout = job.hooks.as_ref().map_or(600, |h| h.timeout);
        let dir = job
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let env = [
            ("STRATA_JOB", job.name.clone()),
            ("STRATA_STATUS", status.to_string()),
            (
                "STRATA_INCREMENT",
                report.and_then(|r| r.increment.clone()).unwrap_or_default(),
            ),
            ("STRATA_SOURCE", job.source.display().to_string()),
            ("STRATA_DESTINATION", job.destination.display().to_string()),
            (
                "STRATA_MESSAGE",
                report.and_then(|r| r.message.clone()).unwrap_or_default(),
            ),
        ];
        tracing::debug!("{}: {} hook: sh -c {command:?}", job.name, hook.as_str());
        let label = format!("{}: {} hook", job.name, hook.as_str());
        self.progress
            .begin(&format!("{} hook", hook.as_str()), None);
        let finished = run_shell(command, dir, &env, Duration::from_secs(timeout), &label)
            .map_err(|source| HookError::Spawn {
                hook,
                dir: dir.to_path_buf(),
                source,
            })?;
        match finished.status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(HookError::Failed {
                hook,
                status,
                output: finished.output,
            }),
            None => Err(HookError::TimedOut {
                hook,
                seconds: timeout,
                output: finished.output,
            }),
        }
    }

    fn ping(&mut self, signal: Signal, body: &str) {
        let Some(url) = &self.job.healthcheck else {
            return;
        };
        self.progress.begin("healthcheck ping", None);
        if let Err(e) = healthcheck::ping(url, signal, body) {
            self.warnings.push(e.to_string());
        }
    }
}

/// What a success or failure ping carries: the summary line, then the
/// errors and warnings (healthchecks.io shows the body of each ping).
fn ping_body(report: &JobReport) -> String {
    let mut body = report.summary();
    for e in report.errors.iter().take(100) {
        body.push_str(&format!("\nerror: {}: {}", e.path, e.message));
    }
    for w in report.warnings.iter().take(100) {
        body.push_str(&format!("\nwarning: {w}"));
    }
    body.push('\n');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(command: &str, timeout: Duration) -> Finished {
        let env = [("STRATA_JOB", "home".to_string())];
        run_shell(command, Path::new("/"), &env, timeout, "test").unwrap()
    }

    #[test]
    fn output_is_merged_in_order_and_env_is_set() {
        let f = sh(
            "echo one; echo two >&2; echo \"job=$STRATA_JOB\"; pwd",
            Duration::from_secs(60),
        );
        assert!(f.status.unwrap().success());
        assert_eq!(f.output, "one\ntwo\njob=home\n/\n");
    }

    #[test]
    fn a_failing_command_reports_its_status() {
        let f = sh("echo bad; exit 3", Duration::from_secs(60));
        assert_eq!(f.status.unwrap().code(), Some(3));
        assert_eq!(f.output, "bad\n");
    }

    #[test]
    fn a_timeout_stops_the_whole_group() {
        // The sleep is a grandchild holding the pipe: without the group
        // kill, the output would never end.
        let f = sh(
            "echo started; sleep 300; echo never",
            Duration::from_millis(200),
        );
        assert!(f.status.is_none());
        assert_eq!(f.output, "started\n");
    }

    #[test]
    fn only_the_tail_of_long_output_is_kept() {
        let f = sh("seq 1 1000", Duration::from_secs(60));
        let lines: Vec<&str> = f.output.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last(), Some(&"1000"));
    }

    #[test]
    fn messages_quote_the_output_on_one_line() {
        let f = sh(
            "echo 'pg_dump: connection refused'; exit 2",
            Duration::from_secs(60),
        );
        let e = HookError::Failed {
            hook: Hook::Before,
            status: f.status.unwrap(),
            output: f.output,
        };
        assert_eq!(
            e.to_string(),
            "before hook failed (exit status 2); output: \"pg_dump: connection refused\""
        );
        let e = HookError::TimedOut {
            hook: Hook::After,
            seconds: 5,
            output: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "after hook timed out after 5s and was stopped"
        );
    }
}
