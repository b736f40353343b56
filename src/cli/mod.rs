//! The command line: clap arguments -> one [`Config`] -> a command -> an
//! [`ExitCode`]. The only module that prints or reads the environment.

// Every line the commands print goes through `out`, where a closed pipe
// ends the output quietly instead of panicking (see its docs). These
// shadow std's macros in this module and, being defined before the `mod`
// items below, in every command module too.
macro_rules! println {
    () => {
        $crate::cli::out::print($crate::cli::out::Stream::Stdout, format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::print(
            $crate::cli::out::Stream::Stdout,
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::cli::out::print($crate::cli::out::Stream::Stdout, format_args!($($arg)*))
    };
}
macro_rules! eprintln {
    () => {
        $crate::cli::out::print($crate::cli::out::Stream::Stderr, format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::print(
            $crate::cli::out::Stream::Stderr,
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}

mod cat;
mod complete;
mod daemon;
mod diff;
mod du;
mod explain;
mod export;
mod history;
mod jobs;
mod list;
mod mount;
mod new;
pub mod out;
pub mod progress;
mod prune;
mod restore;
mod run;
mod show;
mod validate;
mod verify;
mod zone;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use indicatif::MultiProgress;

use crate::entry::RelPath;
use crate::faults::Faults;
use crate::history::at::Point;
use crate::job::{Job, job_schema_text, load_paths};
use crate::store::{JobLock, LockError, Store, StoreError};

/// The help section of the options every command takes before or after
/// its name.
const GLOBAL: &str = "Global options";

/// The commands each global option is shown for (the others accept it and
/// ignore it): `--metrics-file` means something to a run, not to `schema`.
const APPLIES: &[(&str, &[&str])] = &[
    ("metrics_file", &["run", "run-all", "daemon"]),
    ("no_progress", &["run", "run-all", "restore"]),
    (
        "threads",
        &["run", "run-all", "daemon", "restore", "verify"],
    ),
    (
        "json",
        &[
            "validate", "run", "run-all", "list", "history", "restore", "prune", "verify", "diff",
            "show", "du", "new", "explain",
        ],
    ),
];

/// Commands that read no job and write no log: no global option applies.
const STANDALONE: &[&str] = &["schema", "completions", "man"];

/// The command line's definition, each global option shown in the help of
/// the commands it applies to, in its own section.
pub fn command() -> clap::Command {
    command_with(Args::command())
}

/// [`command`] from `cli` (the man pages start without the `help`
/// command, which building would add).
fn command_with(mut cli: clap::Command) -> clap::Command {
    // Built first: that is when the global options are copied into each
    // command, where they can then be hidden.
    cli.build();
    cli.mut_subcommands(|sub| {
        let name = sub.get_name().to_string();
        sub.mut_args(|arg| {
            let id = arg.get_id().as_str();
            if !arg.is_global_set() || id == "help" || id == "version" {
                return arg;
            }
            let shown = if STANDALONE.contains(&name.as_str()) {
                false
            } else {
                APPLIES
                    .iter()
                    .find(|(a, _)| *a == id)
                    .is_none_or(|(_, cmds)| cmds.contains(&name.as_str()))
            };
            arg.hide(!shown)
        })
    })
}

/// The process exit code, derived from what happened (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    /// Everything succeeded.
    Success = 0,
    /// A job failed or ended partial, or validation found errors.
    Failure = 1,
    /// Usage error, or the jobs directory cannot be read.
    Usage = 2,
}

impl ExitCode {
    /// The worse of two outcomes.
    pub fn merge(self, other: ExitCode) -> ExitCode {
        self.max(other)
    }
}

/// strata: declarative backup jobs with a browsable mirror and per-run
/// increments.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Args {
    /// The directory of job files.
    #[arg(long, global = true, help_heading = GLOBAL, env = "STRATA_JOBS_DIR", default_value = "jobs.d")]
    pub jobs_dir: PathBuf,
    /// Worker threads in the shared pool (default: all cores).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub threads: Option<usize>,
    /// Machine-readable output on stdout.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, help_heading = GLOBAL, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output.
    #[arg(short, long, global = true, help_heading = GLOBAL, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// After every run (run, run-all, daemon), write each job's last run to
    /// this Prometheus textfile (for node_exporter's textfile collector).
    #[arg(long, global = true, help_heading = GLOBAL, env = "STRATA_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Never show progress (shown only when stderr is a terminal).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub no_progress: bool,
    /// Log lines on stderr as text, or as JSON objects (one per line) for
    /// log shippers.
    #[arg(long, global = true, help_heading = GLOBAL, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check job files or directories (default: the jobs dir); never changes a file.
    ///
    /// Prints FILE:LINE:COL: error|warning: MESSAGE for each problem; exit 1 on errors.
    ///
    /// Example: strata validate jobs.d
    Validate {
        /// Job files or directories.
        paths: Vec<PathBuf>,
    },
    /// Say for each path whether the job tracks, includes, excludes or does
    /// not select it, and which rule decided.
    ///
    /// PATHs are relative to the job's source, or absolute under it; one that
    /// ends in `/` (or is a directory in the source) is explained as a
    /// directory. The rule is named with its list, position, pattern and
    /// FILE:LINE:COL in the job file; an excluded ancestor directory decides
    /// for everything below it. The answer comes from the same compiled rules
    /// a run uses; the paths need not exist.
    ///
    /// Example: strata explain home Documents/report.odt node_modules/x.js .bashrc
    Explain {
        /// The job.
        name: String,
        /// Paths relative to the source (or absolute under it).
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Print the JSON Schema of a job file.
    ///
    /// Editors use it to complete and check job files (their "$schema").
    ///
    /// Example: strata schema > schemas/job.schema.json
    Schema,
    /// Run every enabled job once, concurrently, and print one report.
    ///
    /// Example: strata run-all --dry-run
    RunAll {
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Accept what the guards refuse: a scan that selects no file
        /// although the mirror has some, a missing mount point inside the
        /// source, a clock set back, more deletions than max_delete.
        #[arg(long)]
        force: bool,
        /// Start a new history where the destination guards refuse (a
        /// destination that is missing although the job backed up there,
        /// or a folder with files but no strata state).
        #[arg(long)]
        init: bool,
    },
    /// Run the named jobs (disabled ones too).
    ///
    /// Example: strata run home photos
    Run {
        /// Job names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Accept what the guards refuse: a scan that selects no file
        /// although the mirror has some, a missing mount point inside the
        /// source, a clock set back, more deletions than max_delete.
        #[arg(long)]
        force: bool,
        /// Start a new history where the destination guards refuse (a
        /// destination that is missing although the job backed up there,
        /// or a folder with files but no strata state).
        #[arg(long)]
        init: bool,
    },
    /// Run enabled jobs on their schedules until SIGTERM or SIGINT.
    ///
    /// Job files added, changed or removed are picked up within seconds (an
    /// invalid file is logged and its job keeps its last valid definition).
    /// At start-up, a job that missed a scheduled time since its last run
    /// runs once right away. Logs one line per run on stderr.
    ///
    /// Example: strata --jobs-dir /etc/strata/jobs.d daemon
    Daemon,
    /// List the jobs: schedule, next run, last run and its status, destination.
    ///
    /// Times are local; --json prints RFC 3339 times and the last run's record.
    ///
    /// Example: strata list --json
    List,
    /// List a job's increments, every version of a path, or search them.
    ///
    /// Without PATH: one line per increment (start, new, changed, deleted,
    /// bytes). With PATH (a file or a directory, relative to source): every
    /// recorded version below it. With --mask: every recorded file matching a
    /// glob; a glob without `/` matches file names, one with `/` the path.
    ///
    /// Example: strata history home docs/report.odt
    ///
    /// Example: strata history home --mask '*.odt' --mask 'docs/*.md'
    History {
        /// The jobs, then optionally a file or directory relative to their
        /// source: list its versions (write ./NAME for a path named like a
        /// job).
        #[arg(value_name = "NAME... [PATH]", required_unless_present = "all")]
        args: Vec<String>,
        /// Every job in the jobs dir.
        #[arg(long)]
        all: bool,
        /// Search every increment for files matching this glob (repeatable).
        #[arg(long, value_name = "GLOB")]
        mask: Vec<String>,
    },
    /// Copy the files of a point in a job's history into a directory.
    ///
    /// Default point: the latest state (the mirror, included-only files too).
    /// --at a time restores the tracked files as the last run at or before it
    /// left them; --at an increment name, as that run left them. PATHs
    /// restore only those files or directories. Files are copied, never
    /// linked, with mtime and permissions; DIR must be empty or absent.
    ///
    /// Example: strata restore home --to /tmp/old --at 2026-03-01T12:00:00+01:00 docs
    Restore {
        /// The job.
        name: String,
        /// The directory to restore into (created; must be empty).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// A point in the history: an increment name, a local time as `list`
        /// prints it (2026-03-01 12:00), an RFC 3339 time, -1 (the increment
        /// before the newest), 2d (two days ago); see `strata help diff`.
        #[arg(long, value_name = "POINT", allow_hyphen_values = true)]
        at: Option<String>,
        /// Restore into a non-empty DIR, replacing files in the way.
        #[arg(long)]
        force: bool,
        /// Files or directories to restore, relative to source (default: all).
        paths: Vec<String>,
    },
    /// Remove the increments the job's retention policy does not keep.
    ///
    /// Each removed increment is merged into the next one, so that every
    /// kept point restores exactly as before. Prints what is kept and why.
    ///
    /// Example: strata prune home --dry-run
    ///
    /// Example: strata prune --all
    Prune {
        /// The jobs.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Every job in the jobs dir.
        #[arg(long)]
        all: bool,
        /// Print the decisions; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check that mirror, increments and index agree; exit 1 if not.
    ///
    /// Every index entry has its mirror file with the recorded size, mtime,
    /// mode and kind; every increment record has its file; no stray files.
    ///
    /// Example: strata verify home --deep
    ///
    /// Example: strata verify home photos
    Verify {
        /// The jobs.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Every job in the jobs dir.
        #[arg(long)]
        all: bool,
        /// Also re-read every file and compare it with its recorded hash
        /// (and every entry's xattrs with their digest).
        #[arg(long)]
        deep: bool,
        /// Put damaged files back from the source where it still holds the
        /// recorded version (on an object store, also by server-side copy
        /// of an object holding it; missing objects too) (implies --deep);
        /// says what it could not repair.
        #[arg(long)]
        repair: bool,
    },
    /// What differs between two points of a job's tracked history.
    ///
    /// Lists the paths added (+), removed (-) and changed (M) from A to B,
    /// with what changed: kind, content, mode, owner, xattrs, mtime,
    /// hardlinks. B defaults to the latest state (the mirror's tracked files).
    ///
    /// A point is an increment name (backup_20260301_110000); a local date or
    /// time as `list` prints it (2026-03-01, 2026-03-01 12:00, 2026-03-01
    /// 12:00:00 +01:00: the last run in or before it); an RFC 3339 time; -N,
    /// N increments before the newest (-1 the one before it, -0 the newest);
    /// a time ago (2d, 36h, 1w, 1m for a month); or `latest`.
    ///
    /// Example: strata diff home -1
    ///
    /// Example: strata diff home backup_20260301_110000 '2026-03-08 12:00'
    #[command(allow_negative_numbers = true)]
    Diff {
        /// The job.
        name: String,
        /// The first point.
        #[arg(allow_hyphen_values = true)]
        a: String,
        /// The second point (default: latest).
        #[arg(allow_hyphen_values = true)]
        b: Option<String>,
    },
    /// The records of one increment: op, kind, size, mode and path of each.
    ///
    /// INCREMENT is an increment name or any point `diff` takes (-0 is the
    /// newest increment).
    ///
    /// Example: strata show home backup_20260301_110000
    #[command(allow_negative_numbers = true)]
    Show {
        /// The job.
        name: String,
        /// The increment.
        #[arg(allow_hyphen_values = true)]
        increment: String,
    },
    /// Space a job's destination takes: the mirror, each increment, the
    /// state folder, and the total, every inode counted once.
    ///
    /// An increment's share is what it holds beyond the mirror and the
    /// increments before it (its files that are the mirror's current
    /// versions are counted under the mirror, and shown as shared).
    ///
    /// Example: strata du home
    Du {
        /// The job.
        name: String,
    },
    /// Print one version of a file to stdout, checked against its hash.
    ///
    /// Default point: the latest state (the mirror). Nothing is printed when
    /// the stored copy does not match the hash recorded for it (exit 1).
    ///
    /// Example: strata cat home docs/report.txt --at -1 > report-before.txt
    Cat {
        /// The job.
        name: String,
        /// The file, relative to source.
        path: String,
        /// The point (see `strata help diff`).
        #[arg(long, value_name = "POINT", allow_hyphen_values = true)]
        at: Option<String>,
    },
    /// Browse every increment as a read-only filesystem (FUSE).
    ///
    /// MOUNTPOINT/latest is the mirror; MOUNTPOINT/backup_… is the whole
    /// tracked tree as that run left it, with the mode, owner, mtime and
    /// xattrs recorded for each entry. Files are read from where the backup
    /// keeps them (on an object store, by ranged gets), never copied. What
    /// is shown is the history when the mount started. Runs until SIGTERM
    /// or Ctrl-C (or `fusermount3 -u MOUNTPOINT`), then unmounts. Needs /dev/fuse and fusermount3 (Debian:
    /// fuse3).
    ///
    /// Example: strata mount home /mnt/home-history
    Mount {
        /// The job.
        name: String,
        /// An empty directory to mount on.
        mountpoint: PathBuf,
    },
    /// Print a shell completion script that completes job and increment
    /// names too (it asks strata as you type).
    ///
    /// Example: strata completions bash > /etc/bash_completion.d/strata
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from these help texts.
    ///
    /// With --dir, write strata.1, one page per command (strata-run.1, …),
    /// which strata.1 refers to, and strata-jobs.5, the job-file format,
    /// generated from the job schema. With --file-format, print
    /// strata-jobs(5).
    ///
    /// Example: strata man --dir /usr/local/share/man/man1
    Man {
        /// Write every page into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print strata-jobs(5), the job-file format, instead of strata(1).
        #[arg(long, conflicts_with = "dir")]
        file_format: bool,
    },
    /// Write a new job file NAME.json into the jobs dir, checked as validate
    /// checks it; never overwrites.
    ///
    /// Relative paths are taken from the current directory and written
    /// absolute. Without --track or --include, the whole source is tracked.
    ///
    /// Example: strata new home --source ~/ --destination /mnt/backup/home --track Documents --schedule "30 2 * * *"
    New {
        /// The job's name (letters, digits, `.`, `_`, `-`): also the file name.
        name: String,
        /// The tree to back up.
        #[arg(long)]
        source: PathBuf,
        /// Where the mirror and the increments go.
        #[arg(long)]
        destination: PathBuf,
        /// A directory glob whose files are mirrored and versioned (repeatable).
        #[arg(long, value_name = "DIR")]
        track: Vec<String>,
        /// A directory glob whose files are mirrored only (repeatable).
        #[arg(long, value_name = "DIR")]
        include: Vec<String>,
        /// When the daemon runs it: a crontab line, in local time.
        #[arg(long, value_name = "CRON")]
        schedule: Option<String>,
    },
    /// Write the jobs' schedules for a fleet scheduler: systemd timers,
    /// Kubernetes CronJobs or Nomad periodic jobs.
    ///
    /// Each schedule is rewritten in the engine's syntax to fire exactly
    /// when cron would; a job the engine would fire at other times (a DST
    /// change, a field it lacks, crontab's day-of-month-or-week rule where
    /// it cannot be split) is refused with the reason, exit 1, and nothing
    /// is written. See docs/fleet.md.
    ///
    /// Example: strata export systemd --dir /etc/systemd/system
    ///
    /// Example: strata export kubernetes home | kubectl apply -f -
    Export(export::ExportArgs),
}

/// Settings resolved once from arguments and environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The jobs directory.
    pub jobs_dir: PathBuf,
    /// JSON output.
    pub json: bool,
    /// -1 quiet, 0 normal, 1+ verbose.
    pub verbosity: i8,
    /// The Prometheus textfile to update after runs.
    pub metrics_file: Option<PathBuf>,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// The progress display, when progress is shown (a terminal, not
    /// `--json`, `-q` or `--no-progress`, and a command that has progress).
    pub progress: Option<MultiProgress>,
    /// The fault seam (tests only): `STRATA_FAULT` rules (see
    /// [`crate::faults`]), `STRATA_FAULT_TRACE` (a file that lists every
    /// fault point reached), `STRATA_FAULT_UNREADABLE` (`:`-separated
    /// source paths that fail to read, as an unreadable file would when the
    /// tests run as root) and `STRATA_FAULT_RESUME` (the file a `wait:`
    /// rule waits for).
    pub faults: Faults,
    /// Where strata remembers each job's destination: `STRATA_STATE_DIR`,
    /// else `/var/lib/strata` as root, else `$XDG_STATE_HOME/strata` or
    /// `~/.local/state/strata`.
    pub known: Option<PathBuf>,
}

/// Where strata keeps what it remembers outside the destinations.
fn state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STRATA_STATE_DIR").filter(|d| !d.is_empty()) {
        return Some(std::path::absolute(PathBuf::from(&dir)).unwrap_or_else(|_| dir.into()));
    }
    if crate::fs::is_root() {
        return Some(PathBuf::from("/var/lib/strata"));
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("strata"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/strata"))
}

/// The fault seam from the environment; a bad rule is a usage error.
fn faults_from_env() -> Result<Faults, String> {
    let rules = std::env::var("STRATA_FAULT").unwrap_or_default();
    let trace = std::env::var_os("STRATA_FAULT_TRACE").map(PathBuf::from);
    let faults = Faults::new(&rules, trace.as_deref()).map_err(|e| e.to_string())?;
    let unreadable: Vec<RelPath> = std::env::var("STRATA_FAULT_UNREADABLE")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(|p| RelPath::parse(p.as_bytes()).map_err(|e| format!("STRATA_FAULT_UNREADABLE: {e}")))
        .collect::<Result<_, _>>()?;
    let resume = std::env::var_os("STRATA_FAULT_RESUME").map(PathBuf::from);
    Ok(faults
        .with_unreadable(&unreadable)
        .with_resume(resume.as_deref()))
}

/// Parse arguments, run the command, return the exit code.
pub fn main() -> ExitCode {
    complete::answer_if_asked();
    let parsed = command()
        .try_get_matches()
        .and_then(|m| Args::from_arg_matches(&m));
    let args = match parsed {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Success
            };
        }
    };
    let verbosity = args.verbose as i8 - args.quiet as i8;
    // The daemon's log is its output: one line per run at the default level.
    let log_level = match args.command {
        Command::Daemon => verbosity.saturating_add(1),
        _ => verbosity,
    };
    let progress = (shows_progress(&args.command)
        && !args.no_progress
        && !args.json
        && verbosity >= 0
        && std::io::stderr().is_terminal())
    .then(MultiProgress::new);
    init_logging(log_level, args.log_format, progress.clone());
    let mut pool = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("strata-{i}"));
    if let Some(n) = args.threads {
        pool = pool.num_threads(n);
    }
    crate::fs::raise_fd_limit();
    if let Err(e) = pool.build_global() {
        eprintln!("strata: cannot start the thread pool: {e}");
        return ExitCode::Usage;
    }
    let config = Config {
        jobs_dir: args.jobs_dir,
        json: args.json,
        verbosity,
        // Absolute, so that the daemon's file does not depend on its cwd.
        metrics_file: args
            .metrics_file
            .map(|p| std::path::absolute(&p).unwrap_or(p)),
        progress,
        log_format: args.log_format,
        faults: match faults_from_env() {
            Ok(f) => f,
            Err(e) => {
                eprintln!("strata: {e}");
                return ExitCode::Usage;
            }
        },
        known: state_dir(),
    };
    let code = match args.command {
        Command::Validate { paths } => validate::run(&config, paths),
        Command::Explain { name, paths } => explain::run(&config, &name, &paths),
        Command::Schema => {
            out::write_stdout(job_schema_text().as_bytes());
            ExitCode::Success
        }
        Command::RunAll {
            dry_run,
            force,
            init,
        } => run::run(&config, run::Selection::All, dry_run, force, init),
        Command::Run {
            names,
            dry_run,
            force,
            init,
        } => run::run(&config, run::Selection::Named(names), dry_run, force, init),
        Command::Daemon => daemon::run(&config),
        Command::List => list::run(&config),
        Command::History { args, all, mask } => history::run(&config, &args, all, &mask),
        Command::Restore {
            name,
            to,
            at,
            force,
            paths,
        } => restore::run(&config, &name, &to, at.as_deref(), &paths, force),
        Command::Prune {
            names,
            all,
            dry_run,
        } => match jobs::pick(&config, &names, all) {
            Ok(picked) => jobs::each(&config, &picked, |job| prune::run(&config, job, dry_run)),
            Err(code) => code,
        },
        Command::Verify {
            names,
            all,
            deep,
            repair,
        } => match jobs::pick(&config, &names, all) {
            Ok(picked) => jobs::each(&config, &picked, |job| {
                verify::run(&config, job, deep, repair)
            }),
            Err(code) => code,
        },
        Command::Diff { name, a, b } => diff::run(&config, &name, &a, b.as_deref()),
        Command::Show { name, increment } => show::run(&config, &name, &increment),
        Command::Du { name } => du::run(&config, &name),
        Command::Cat { name, path, at } => cat::run(&config, &name, &path, at.as_deref()),
        Command::Mount { name, mountpoint } => mount::run(&config, &name, &mountpoint),
        Command::Completions { shell } => match complete::script(shell, &mut out::StdoutWriter) {
            Ok(()) => ExitCode::Success,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::Success,
            Err(e) => {
                eprintln!("strata: cannot write the completion script: {e}");
                ExitCode::Failure
            }
        },
        Command::Man { dir, file_format } => {
            // As clap_mangen's generate_to does: no `help` command page.
            let cli = command_with(Args::command().disable_help_subcommand(true));
            let jobs_page = crate::job::man::jobs_page();
            let written = match &dir {
                Some(dir) => std::fs::create_dir_all(dir)
                    .and_then(|()| clap_mangen::generate_to(cli, dir))
                    .and_then(|()| std::fs::write(dir.join("strata-jobs.5"), &jobs_page)),
                None if file_format => {
                    out::write_stdout(jobs_page.as_bytes());
                    Ok(())
                }
                None => clap_mangen::Man::new(cli).render(&mut out::StdoutWriter),
            };
            match written {
                Ok(()) => ExitCode::Success,
                Err(e) => {
                    let into = dir.map(|d| format!(" into {}", d.display()));
                    eprintln!(
                        "strata: cannot write the manual page{}: {e}",
                        into.unwrap_or_default()
                    );
                    ExitCode::Failure
                }
            }
        }
        Command::New {
            name,
            source,
            destination,
            track,
            include,
            schedule,
        } => new::run(
            &config,
            new::NewJob {
                name,
                source,
                destination,
                track,
                include,
                schedule,
            },
        ),
        Command::Export(args) => export::run(&config, &args),
    };
    code.merge(out::finish())
}

/// Find one job by name in the jobs directory. When it cannot be had,
/// prints why and returns the exit code.
fn find_job(config: &Config, name: &str) -> Result<Job, ExitCode> {
    jobs::pick(config, &[name.to_string()], false).map(|mut picked| picked.remove(0))
}

/// Load the jobs directory; when it cannot be read, say so (exit 2).
fn load_jobs_dir(config: &Config) -> Result<crate::job::Loaded, ExitCode> {
    load_paths(std::slice::from_ref(&config.jobs_dir)).map_err(|e| {
        eprintln!("strata: {e}");
        ExitCode::Usage
    })
}

/// Open a job's local destination folder; when it cannot be had, prints
/// why and returns the exit code (1). Every command sends an object-store
/// job to its own path first ([`open_destination`], or a `run_object`):
/// one that reaches here is refused, not opened as a folder.
fn open_store(job: &Job) -> Result<Store, ExitCode> {
    if job.object.is_some() {
        eprintln!(
            "strata: {}: {} is an object-store destination, not a folder",
            job.name,
            job.destination.display()
        );
        return Err(ExitCode::Failure);
    }
    Store::open(&job.destination).map_err(|e| {
        eprintln!("strata: {}: {e}", job.name);
        ExitCode::Failure
    })
}

/// Open a job's destination of either kind for a command that reads it
/// through the history model; when it cannot be had, prints why (exit 1).
fn open_destination(
    config: &Config,
    job: &Job,
) -> Result<crate::store::dest::Destination, ExitCode> {
    match &job.object {
        None => open_store(job).map(crate::store::dest::Destination::Local),
        Some(dest) => {
            crate::run_object::open_remote(job, dest, config.known.as_deref(), &config.faults)
                .map(crate::store::dest::Destination::Object)
                .map_err(|e| {
                    eprintln!("strata: {}: {e}", job.name);
                    ExitCode::Failure
                })
        }
    }
}

/// Take a job's lock for a command that must not run beside a backup
/// (prune, verify). `Err` carries the exit code: 0 when another process
/// holds it (printed as `skipped (locked)`), 1 when it cannot be opened.
fn lock_job(config: &Config, job: &Job, store: &Store) -> Result<JobLock, ExitCode> {
    match store.lock() {
        Ok(lock) => Ok(lock),
        Err(LockError::Held { .. }) => Err(skipped_locked(
            config,
            job,
            "another strata process is working on this job",
        )),
        Err(e) => {
            eprintln!("strata: {e}");
            Err(ExitCode::Failure)
        }
    }
}

/// Open an object-store job's destination and take its lease, for a
/// command that must not run beside a backup (prune, verify): the lock
/// [`lock_job`] takes on a local destination. `Err` carries the exit code,
/// as there.
fn lease_job(
    config: &Config,
    job: &Job,
) -> Result<
    (
        crate::store::object::Remote,
        crate::store::object::lease::Lease,
    ),
    ExitCode,
> {
    use crate::store::object::lease::{Lease, LeaseError, default_ttl};
    let remote = match open_destination(config, job)? {
        crate::store::dest::Destination::Object(remote) => remote,
        crate::store::dest::Destination::Local(_) => {
            unreachable!("an object-store job opens an object store")
        }
    };
    match Lease::acquire(&remote.bucket, default_ttl()) {
        Ok(lease) => Ok((remote, lease)),
        Err(LeaseError::Held { owner, .. }) => Err(skipped_locked(
            config,
            job,
            &format!("{owner} holds the destination's lease"),
        )),
        Err(e) => {
            eprintln!("strata: {}: {e}", job.name);
            Err(ExitCode::Failure)
        }
    }
}

/// Say that `job` was skipped because another process holds it (`why`):
/// not a failure.
fn skipped_locked(config: &Config, job: &Job, why: &str) -> ExitCode {
    if config.json {
        print_json(&serde_json::json!({"job": job.name, "status": "skipped_locked"}));
    } else {
        println!("{}: skipped (locked): {why}", job.name);
    }
    ExitCode::Success
}

/// A path argument as a path relative to the job's source: `./a/b/`,
/// `a/b` and `SOURCE/a/b` all name `a/b`. `None` for the whole source.
fn relative_arg(job: &Job, arg: &str) -> Result<Option<RelPath>, String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new(arg);
    let path = path.strip_prefix(&job.source).unwrap_or(path);
    let parts: Vec<&[u8]> = path
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| c.as_os_str().as_bytes())
        .collect();
    if parts.is_empty() {
        return Ok(None);
    }
    RelPath::parse(&parts.join(&b'/'))
        .map(Some)
        .map_err(|e| format!("{arg}: not a path below the source: {e}"))
}

/// A point named on the command line, local times in the machine's zone;
/// when it names none, prints the forms there are (exit 2).
fn parse_point(text: &str) -> Result<Point, ExitCode> {
    let zone = zone::machine_zone();
    crate::history::at::parse_point(text, &zone, chrono::Utc::now()).map_err(|e| {
        eprintln!("strata: {e}");
        ExitCode::Usage
    })
}

/// A store error as the commands print it.
#[allow(dead_code)]
fn store_error(job: &Job, e: &StoreError) -> String {
    format!("{}: {e}", job.name)
}

/// Print a value as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) {
    let value = serde_json::to_value(value).expect("output serializes");
    if jobs::collect(&value) {
        return;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&value).expect("output serializes")
    );
}

/// The commands that show progress on a terminal.
fn shows_progress(command: &Command) -> bool {
    matches!(
        command,
        Command::RunAll { .. } | Command::Run { .. } | Command::Restore { .. }
    )
}

fn init_logging(verbosity: i8, format: LogFormat, progress: Option<MultiProgress>) {
    let default = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let writer = progress::LogWriter { multi: progress };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        // Text lines are the messages alone: each names its job and path,
        // and the fields (the counts of a summary line) are for JSON.
        LogFormat::Text => builder
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(
                |w, field, value| match field.name() {
                    "message" => write!(w, "{value:?}"),
                    _ => Ok(()),
                },
            ))
            // No colour codes in a journal or a log file.
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_an_example_in_its_long_help() {
        for sub in Args::command().get_subcommands() {
            let help = sub
                .get_long_about()
                .or(sub.get_about())
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.lines().any(|l| l.starts_with("Example: strata ")),
                "`strata {}` has no \"Example: strata …\" line in its help:\n{help}",
                sub.get_name()
            );
        }
    }
}
