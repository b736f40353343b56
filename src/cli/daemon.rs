//! `strata daemon`: run jobs on their schedules until SIGTERM or SIGINT.
//! A thin wrapper: the loop is [`crate::daemon`]; this maps how it stopped
//! to an exit code.

use super::{Config, ExitCode};
use crate::daemon::{self, DaemonError, DaemonOptions, Stopped};
use crate::progress::ProgressHandle;
use crate::run::RunOptions;

use super::zone::machine_zone;

/// Run the daemon until it is stopped.
pub fn run(config: &Config) -> ExitCode {
    let options = DaemonOptions {
        jobs_dir: config.jobs_dir.clone(),
        run: RunOptions {
            dry_run: false,
            force: false,
            init: false,
            known: config.known.clone(),
            faults: config.faults.clone(),
            // The daemon's output is its log: no progress display.
            progress: ProgressHandle::default(),
            zone: machine_zone(),
        },
        metrics_file: config.metrics_file.clone(),
    };
    match daemon::run(options) {
        Ok(Stopped::Clean) => ExitCode::Success,
        Ok(Stopped::Forced { running }) => {
            eprintln!(
                "strata: stopped without waiting for {}; the next run of each repairs \
                 what it left",
                running.join(", ")
            );
            ExitCode::Failure
        }
        Err(e @ DaemonError::Load(_)) => {
            eprintln!("strata: {e}");
            ExitCode::Usage
        }
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::Failure
        }
    }
}
