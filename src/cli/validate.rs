//! `strata validate [PATH...]`: print every problem, exit 1 on errors.

use std::path::PathBuf;

use super::{Config, ExitCode};
use crate::job::load_paths;

/// Run `validate`.
pub fn run(config: &Config, paths: Vec<PathBuf>) -> ExitCode {
    let paths = if paths.is_empty() {
        vec![config.jobs_dir.clone()]
    } else {
        paths
    };
    let loaded = match load_paths(&paths) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::Usage;
        }
    };
    if config.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&loaded.diagnostics).expect("diagnostics serialize")
        );
    } else {
        for d in &loaded.diagnostics {
            println!("{d}");
        }
        if config.verbosity >= 0 {
            let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
            let warnings = loaded.diagnostics.len() - errors;
            eprintln!(
                "{} job file(s): {} valid, {errors} error(s), {warnings} warning(s)",
                loaded.files,
                loaded.jobs.len()
            );
        }
    }
    if loaded.has_errors() {
        ExitCode::Failure
    } else {
        ExitCode::Success
    }
}
