//! `strata restore NAME --to DIR [--at TIME|INCREMENT] [PATH...]`: copy a
//! point of a job's history into a directory.

use std::path::Path;

use serde_json::json;

use super::{Config, ExitCode, find_job, open_destination, parse_point, print_json, relative_arg};
use crate::history::at::Point;
use crate::history::restore::{RestoreOptions, restore_from};
use crate::report::{human_bytes, plural};

/// Restore and report; exit 1 if anything could not be restored.
pub fn run(
    config: &Config,
    name: &str,
    to: &Path,
    at: Option<&str>,
    paths: &[String],
    force: bool,
) -> ExitCode {
    let at = match at.map(parse_point).transpose() {
        Ok(None | Some(Point::Latest)) => None,
        Ok(Some(Point::At(at))) => Some(at),
        Err(code) => return code,
    };
    let job = match find_job(config, name) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let mut rels = Vec::new();
    for p in paths {
        match relative_arg(&job, p) {
            Ok(Some(rel)) => rels.push(rel),
            // `.` (or the source itself) among the paths means everything.
            Ok(None) => {
                rels.clear();
                break;
            }
            Err(e) => {
                eprintln!("strata: {e}");
                return ExitCode::Usage;
            }
        }
    }
    let options = RestoreOptions {
        at,
        paths: rels,
        force,
        progress: match &config.progress {
            Some(multi) => {
                crate::progress::ProgressHandle::new(super::progress::Bars::new(multi.clone()))
            }
            None => crate::progress::ProgressHandle::default(),
        },
    };
    let dest = match open_destination(config, &job) {
        Ok(dest) => dest,
        Err(code) => return code,
    };
    let done = match restore_from(&dest, to, &options) {
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
                "restored {} ({}) of {} from {} into {}",
                plural(done.files, "file", "files"),
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
