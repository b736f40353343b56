//! The command line: clap arguments -> one [`Config`] -> a command -> an
//! [`ExitCode`]. The only module that prints or reads the environment.

mod daemon;
mod list;
mod run;
mod validate;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::job::job_schema_text;

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
    #[arg(long, global = true, env = "STRATA_JOBS_DIR", default_value = "jobs.d")]
    pub jobs_dir: PathBuf,
    /// Worker threads in the shared pool (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check job files or directories (default: the jobs dir); never changes a file.
    ///
    /// Prints FILE:LINE:COL: error|warning: MESSAGE for each problem; exit 1 on errors.
    /// Example: strata validate jobs.d
    Validate {
        /// Job files or directories.
        paths: Vec<PathBuf>,
    },
    /// Print the JSON Schema of a job file.
    Schema,
    /// Run every enabled job once, concurrently, and print one report.
    ///
    /// Example: strata run-all --dry-run
    RunAll {
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Accept a scan that selects no file although the mirror has some.
        #[arg(long)]
        force: bool,
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
        /// Accept a scan that selects no file although the mirror has some.
        #[arg(long)]
        force: bool,
    },
    /// Run enabled jobs on their schedules until SIGTERM or SIGINT.
    ///
    /// Job files added, changed or removed are picked up within seconds (an
    /// invalid file is logged and its job keeps its last valid definition).
    /// At start-up, a job that missed a scheduled time since its last run
    /// runs once right away. Logs one line per run on stderr.
    /// Example: strata --jobs-dir /etc/strata/jobs.d daemon
    Daemon,
    /// List the jobs: schedule, next run, last run and its status, destination.
    ///
    /// Times are local; --json prints RFC 3339 times and the last run's record.
    /// Example: strata list --json
    List,
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
    /// Test seam (`STRATA_FAULT_UNREADABLE`, `:`-separated relative paths):
    /// these source files fail to read, as an unreadable file would when
    /// the tests run as root.
    pub fail_reading: Vec<String>,
}

/// Parse arguments, run the command, return the exit code.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
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
    init_logging(log_level);
    let mut pool = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("strata-{i}"));
    if let Some(n) = args.threads {
        pool = pool.num_threads(n);
    }
    if let Err(e) = pool.build_global() {
        eprintln!("strata: cannot start the thread pool: {e}");
        return ExitCode::Usage;
    }
    let config = Config {
        jobs_dir: args.jobs_dir,
        json: args.json,
        verbosity,
        fail_reading: std::env::var("STRATA_FAULT_UNREADABLE")
            .map(|v| {
                v.split(':')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
    };
    match args.command {
        Command::Validate { paths } => validate::run(&config, paths),
        Command::Schema => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(job_schema_text().as_bytes());
            ExitCode::Success
        }
        Command::RunAll { dry_run, force } => {
            run::run(&config, run::Selection::All, dry_run, force)
        }
        Command::Run {
            names,
            dry_run,
            force,
        } => run::run(&config, run::Selection::Named(names), dry_run, force),
        Command::Daemon => daemon::run(&config),
        Command::List => list::run(&config),
    }
}

fn init_logging(verbosity: i8) {
    let default = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No colour codes in a journal or a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
