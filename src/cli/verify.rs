//! `strata verify NAME [--deep]`: check that mirror, increments and index
//! agree; exit 1 if they do not.

use serde_json::json;

use super::{Config, ExitCode, find_job, lock_job, print_json};
use crate::history::verify::verify;
use crate::store::Layout;

/// Verify one job's destination.
pub fn run(config: &Config, name: &str, deep: bool) -> ExitCode {
    let job = match find_job(config, name) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let layout = Layout::new(&job.destination);
    // A run in progress changes the mirror under our feet: wait for a quiet
    // moment rather than report its work as damage.
    let _lock = match lock_job(config, &job) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let verified = match verify(&layout, deep) {
        Ok(verified) => verified,
        Err(e) => {
            eprintln!("strata: {}: {e}", job.name);
            return ExitCode::Failure;
        }
    };
    let ok = verified.problems.is_empty();
    if config.json {
        let mut value = serde_json::to_value(&verified).expect("result serializes");
        value["job"] = json!(job.name);
        value["ok"] = json!(ok);
        print_json(&value);
    } else {
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
            format!("{} problems", verified.problems.len())
        };
        println!(
            "{}: {verdict}: {} mirror files, {} files in {} increments{deep}",
            job.name, verified.mirror_files, verified.increment_files, verified.increments
        );
    }
    if ok {
        ExitCode::Success
    } else {
        ExitCode::Failure
    }
}
