//! Naming jobs on the command line: one, several, or `--all`; a name that
//! is not a job gets a "did you mean"; and a command run over several jobs
//! prints one JSON document for all of them.

use std::cell::RefCell;

use super::{Config, ExitCode, load_jobs_dir};
use crate::job::Job;

/// The job names closest to `name`, best first (at most three): a typo
/// (`hom`, `hmoe`), a prefix, another case.
pub(super) fn suggest<'a>(name: &str, known: &[&'a str]) -> Vec<&'a str> {
    let lower = name.to_lowercase();
    let mut scored: Vec<(usize, &str)> = known
        .iter()
        .filter_map(|&k| {
            let d = strsim::damerau_levenshtein(&lower, &k.to_lowercase());
            let close = d <= (k.chars().count() / 3).max(1)
                || (lower.len() >= 2 && k.to_lowercase().starts_with(&lower));
            close.then_some((d, k))
        })
        .collect();
    scored.sort();
    scored.into_iter().map(|(_, k)| k).take(3).collect()
}

/// The message for a name that is no job.
pub(super) fn unknown(config: &Config, name: &str, known: &[&str]) -> String {
    let mut m = format!(
        "strata: no valid job named {name:?} in {}",
        config.jobs_dir.display()
    );
    match suggest(name, known).as_slice() {
        [] if known.is_empty() => m.push_str(" (it holds no valid job)"),
        [] => m.push_str(&format!(" (the jobs are {})", known.join(", "))),
        [one] => m.push_str(&format!("; did you mean {one}?")),
        many => m.push_str(&format!("; did you mean one of {}?", many.join(", "))),
    }
    m
}

/// The jobs `names` name, or every valid job with `all`, in the order
/// given (job file order for `all`). Prints why when one is not there.
pub(super) fn pick(config: &Config, names: &[String], all: bool) -> Result<Vec<Job>, ExitCode> {
    let loaded = load_jobs_dir(config)?;
    if all {
        for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
            eprintln!("{d}");
        }
        if loaded.jobs.is_empty() {
            eprintln!("strata: no valid job in {}", config.jobs_dir.display());
            return Err(ExitCode::Usage);
        }
        return Ok(loaded.jobs);
    }
    let known: Vec<&str> = loaded.jobs.iter().map(|j| j.name.as_str()).collect();
    let mut picked = Vec::new();
    for name in names {
        match loaded.jobs.iter().find(|j| &j.name == name) {
            Some(job) => picked.push(job.clone()),
            None => {
                for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
                    eprintln!("{d}");
                }
                eprintln!("{}", unknown(config, name, &known));
                return Err(ExitCode::Usage);
            }
        }
    }
    Ok(picked)
}

thread_local! {
    /// Set while a command runs over several jobs with `--json`: what
    /// each job would have printed, to be printed as one document.
    static COLLECTED: RefCell<Option<Vec<serde_json::Value>>> = const { RefCell::new(None) };
}

/// Keep `value` for the document of several jobs, if one is being made;
/// `false` when it should be printed now.
pub(super) fn collect(value: &serde_json::Value) -> bool {
    COLLECTED.with(|c| match c.borrow_mut().as_mut() {
        Some(values) => {
            values.push(value.clone());
            true
        }
        None => false,
    })
}

/// Run `one` for each job: the worst exit code. With `--json` and more
/// than one job, what they print becomes `{"jobs": [...]}`; with text,
/// each job's output follows a `== NAME ==` line.
pub(super) fn each(
    config: &Config,
    jobs: &[Job],
    mut one: impl FnMut(&Job) -> ExitCode,
) -> ExitCode {
    if jobs.len() == 1 {
        return one(&jobs[0]);
    }
    if config.json {
        COLLECTED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    }
    let mut code = ExitCode::Success;
    for (i, job) in jobs.iter().enumerate() {
        if !config.json {
            if i > 0 {
                println!();
            }
            println!("== {} ==", job.name);
        }
        code = code.merge(one(job));
    }
    if config.json {
        let values = COLLECTED
            .with(|c| c.borrow_mut().take())
            .unwrap_or_default();
        super::print_json(&serde_json::json!({ "jobs": values }));
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested() {
        let known = ["home", "photos", "home-media", "music"];
        assert_eq!(suggest("hom", &known), ["home", "home-media"]);
        assert_eq!(suggest("hmoe", &known), ["home"]);
        assert_eq!(suggest("Photos", &known), ["photos"]);
        assert_eq!(suggest("musik", &known), ["music"]);
        assert!(suggest("zzz", &known).is_empty());
    }
}
