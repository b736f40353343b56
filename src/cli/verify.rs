//! `strata verify NAME... [--deep] [--repair]`: check, under each job's
//! lock, that mirror, increments and index agree (with `--repair`, put
//! damaged files back from the source; on an object store also from an
//! object that holds the same version); exit 1 if they do not.

use serde_json::json;

use super::{Config, ExitCode, lock_job, open_store, print_json};
use crate::history::verify::verify;
use crate::job::Job;
use crate::report::plural;

/// Verify one job's destination.
pub fn run(config: &Config, job: &Job, deep: bool, repair: bool) -> ExitCode {
    if job.object.is_some() {
        return run_object(config, job, deep, repair);
    }
    let store = match open_store(job) {
        Ok(store) => store,
        Err(code) => return code,
    };
    // A run in progress changes the mirror under our feet: wait for a quiet
    // moment rather than report its work as damage.
    let _lock = match lock_job(config, job, &store) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let source = match repair_source(job, repair) {
        Ok(source) => source,
        Err(code) => return code,
    };
    let verified = match verify(&store, deep || repair, source.as_ref()) {
        Ok(verified) => verified,
        Err(e) => {
            eprintln!("strata: {}: {e}", job.name);
            return ExitCode::Failure;
        }
    };
    show(config, job, deep, &verified)
}

/// The source a repair reads from (`None` without `--repair`).
fn repair_source(job: &Job, repair: bool) -> Result<Option<crate::fs::Dir>, ExitCode> {
    if !repair {
        return Ok(None);
    }
    crate::fs::Dir::open_root(&job.source)
        .map(Some)
        .map_err(|e| {
            eprintln!(
                "strata: {}: cannot repair: source {}: {e}",
                job.name,
                job.source.display()
            );
            ExitCode::Failure
        })
}

/// Verify an object-store destination, with its lease held (a run in
/// progress is not reported as damage, and a repair writes as the one
/// writer).
fn run_object(config: &Config, job: &Job, deep: bool, repair: bool) -> ExitCode {
    let source = match repair_source(job, repair) {
        Ok(source) => source,
        Err(code) => return code,
    };
    let (remote, lease) = match super::lease_job(config, job) {
        Ok(held) => held,
        Err(code) => return code,
    };
    let repair = source
        .as_ref()
        .map(|source| crate::history::verify::RemoteRepair {
            source,
            lease: &lease,
        });
    let verified = crate::history::verify::verify_remote(&remote, deep, repair.as_ref());
    lease.release();
    match verified {
        Ok(verified) => show(config, job, deep, &verified),
        Err(e) => {
            eprintln!("strata: {}: {e}", job.name);
            ExitCode::Failure
        }
    }
}

fn show(
    config: &Config,
    job: &Job,
    deep: bool,
    verified: &crate::history::verify::Verified,
) -> ExitCode {
    let ok = verified.problems.is_empty();
    if config.json {
        let mut value = serde_json::to_value(verified).expect("result serializes");
        value["job"] = json!(job.name);
        value["ok"] = json!(ok);
        print_json(&value);
    } else {
        for p in &verified.repaired {
            println!("{}: repaired", p.display());
        }
        for p in &verified.problems {
            println!("{}: {}", p.path.display(), p.message);
        }
        let deep = if deep {
            format!(", {} hashed", verified.hashed)
        } else {
            String::new()
        };
        let verdict = if ok {
            "ok".to_string()
        } else {
            plural(verified.problems.len() as u64, "problem", "problems")
        };
        println!(
            "{}: {verdict}: {}, {} in {}{deep}",
            job.name,
            plural(verified.mirror_files, "mirror file", "mirror files"),
            plural(verified.increment_files, "file", "files"),
            plural(verified.increments, "increment", "increments")
        );
    }
    if ok {
        ExitCode::Success
    } else {
        ExitCode::Failure
    }
}
