//! `strata restore NAME --to DIR [--at TIME|INCREMENT] [PATH...]`: copy a
//! point of a job's history into a directory.

use std::path::Path;

use serde_json::json;

use super::{Config, ExitCode, find_job, print_json, relative_arg};
use crate::history::At;
use crate::history::restore::{RestoreOptions, restore};
use crate::report::human_bytes;
use crate::store::Layout;

/// Restore and report; exit 1 if anything could not be restored.
pub fn run(
    config: &Config,
    name: &str,
    to: &Path,
    at: Option<At>,
    paths: &[String],
    force: bool,
) -> ExitCode {
    let job = match find_job(config, name) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let options = RestoreOptions {
        at,
        // `.` (or the source itself) among the paths means everything.
        paths: paths
            .iter()
            .map(|p| relative_arg(&job, p))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default(),
        force,
    };
    let done = match restore(&Layout::new(&job.destination), to, &options) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::Failure;
        }
    };
    if config.json {
        print_json(&json!({"job": job.name, "restore": done}));
    } else {
        for w in &done.warnings {
            eprintln!("strata: warning: {w}");
        }
        for e in &done.errors {
            eprintln!("strata: error: {}: {}", e.path, e.message);
        }
        if config.verbosity >= 0 {
            println!(
                "restored {} files ({}) of {} from {} into {}",
                done.files,
                human_bytes(done.bytes),
                job.name,
                done.point,
                done.to.display()
            );
        }
    }
    if done.errors.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Failure
    }
}
