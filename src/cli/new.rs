//! `strata new NAME --source S --destination D ...`: write a job file into
//! the jobs dir, checked by the same validator as `strata validate`
//! before it appears there, and never over an existing file.
//!
//! The file is written into a hidden folder of the jobs dir first (the
//! loader and the daemon ignore it), validated together with the other job
//! files (so that a duplicate name or destination is caught), then linked
//! to its final name: `link(2)` fails if the name exists, so a file that
//! appeared meanwhile is not overwritten either, and the daemon never sees
//! a half-written file.
//!
//! `$schema` is written only when it resolves: when a
//! `schemas/job.schema.json` is found in the jobs dir or above it (the
//! repository's layout, or one made with `strata schema`). A reference to
//! a file that does not exist would only make editors complain; without
//! one, a note says how to make the file.

use std::path::{Path, PathBuf};

use super::{Config, ExitCode};
use crate::job::load::is_valid_name;
use crate::job::{JobFile, load_paths};

/// What `strata new` was asked to write.
#[derive(Debug)]
pub struct NewJob {
    /// Job name and file stem.
    pub name: String,
    /// The tree to back up.
    pub source: PathBuf,
    /// Where the backup goes.
    pub destination: PathBuf,
    /// `track_dirs`.
    pub track: Vec<String>,
    /// `include_dirs`.
    pub include: Vec<String>,
    /// `schedule`.
    pub schedule: Option<String>,
}

/// The schema file, relative to the jobs dir.
const SCHEMA: &str = "schemas/job.schema.json";

/// Write the job file.
pub fn run(config: &Config, new: NewJob) -> ExitCode {
    match write(config, new) {
        Ok(code) => code,
        Err((code, message)) => {
            eprintln!("strata: {message}");
            code
        }
    }
}

fn write(config: &Config, new: NewJob) -> Result<ExitCode, (ExitCode, String)> {
    let usage = |m: String| (ExitCode::Usage, m);
    let failure = |m: String| (ExitCode::Failure, m);
    if !is_valid_name(&new.name) {
        return Err(usage(format!(
            "{:?} is not a valid job name (letters, digits, `.`, `_`, `-`)",
            new.name
        )));
    }
    let jobs_dir = std::path::absolute(&config.jobs_dir)
        .map_err(|e| usage(format!("{}: {e}", config.jobs_dir.display())))?;
    let file = jobs_dir.join(format!("{}.json", new.name));
    if file.symlink_metadata().is_ok() {
        return Err(failure(format!(
            "{} exists; not overwriting it",
            file.display()
        )));
    }
    std::fs::create_dir_all(&jobs_dir)
        .map_err(|e| usage(format!("cannot create {}: {e}", jobs_dir.display())))?;

    let schema = schema_reference(&jobs_dir);
    let text = job_text(&new, schema.as_deref()).map_err(usage)?;

    let staging = jobs_dir.join(format!(".strata-new-{}", std::process::id()));
    let staged = staging.join(file.file_name().expect("a file name"));
    let result = (|| {
        std::fs::create_dir_all(&staging)
            .and_then(|()| std::fs::write(&staged, &text))
            .map_err(|e| failure(format!("cannot write {}: {e}", staged.display())))?;
        check(&jobs_dir, &staged, &file)?;
        publish(&staged, &file, &text)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result?;
    if config.verbosity >= 0 {
        println!("wrote {}", file.display());
        if schema.is_none() {
            let dir = jobs_dir.parent().unwrap_or(&jobs_dir).join("schemas");
            eprintln!(
                "strata: note: no \"$schema\" written, since there is no {SCHEMA} in {} or \
                 above; for completion and checks in editors, write it with `mkdir -p {} && \
                 strata schema > {}/job.schema.json`, and strata new refers to it from then on",
                jobs_dir.display(),
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::Success)
}

/// The job file's text: pretty JSON, `$schema` first (when there is
/// one), paths absolute.
fn job_text(new: &NewJob, schema: Option<&str>) -> Result<String, String> {
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    let track = if new.track.is_empty() && new.include.is_empty() {
        vec![".".to_string()]
    } else {
        new.track.clone()
    };
    let value = serde_json::json!({
        "source": absolute(&new.source)?,
        "destination": absolute(&new.destination)?,
        "track_dirs": track,
        "include_dirs": new.include,
    });
    let mut spec: JobFile = serde_json::from_value(value).map_err(|e| e.to_string())?;
    spec.schema = schema.map(str::to_string);
    spec.schedule = new.schedule.clone();
    let mut text = serde_json::to_string_pretty(&spec).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

/// `$schema` for a job file in `jobs_dir`: the relative path to
/// `schemas/job.schema.json` in the jobs dir or the nearest directory
/// above it that has one (the repository layout: `../schemas/…` from
/// `jobs.d/`); `None` when there is none.
fn schema_reference(jobs_dir: &Path) -> Option<String> {
    jobs_dir
        .ancestors()
        .enumerate()
        .find(|(_, dir)| dir.join(SCHEMA).is_file())
        .map(|(up, _)| format!("{}{SCHEMA}", "../".repeat(up)))
}

/// Validate the staged file among the jobs dir's files; print its
/// diagnostics under its final name.
fn check(jobs_dir: &Path, staged: &Path, file: &Path) -> Result<(), (ExitCode, String)> {
    let loaded = load_paths(&[jobs_dir.to_path_buf(), staged.to_path_buf()])
        .map_err(|e| (ExitCode::Usage, e.to_string()))?;
    let mine: Vec<_> = loaded
        .diagnostics
        .into_iter()
        .filter(|d| d.file == staged)
        .map(|mut d| {
            d.file = file.to_path_buf();
            d
        })
        .collect();
    for d in &mine {
        eprintln!("{d}");
    }
    if mine.iter().any(|d| d.is_error()) {
        return Err((
            ExitCode::Failure,
            format!("{} not written: fix the errors above", file.display()),
        ));
    }
    Ok(())
}

/// Give the staged file its final name, unless that name exists.
fn publish(staged: &Path, file: &Path, text: &str) -> Result<(), (ExitCode, String)> {
    let exists = || {
        (
            ExitCode::Failure,
            format!("{} exists; not overwriting it", file.display()),
        )
    };
    match std::fs::hard_link(staged, file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
        // No hardlinks here: create it, still refusing an existing name.
        Err(_) => {
            use std::io::Write;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(file)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => exists(),
                    _ => (
                        ExitCode::Failure,
                        format!("cannot write {}: {e}", file.display()),
                    ),
                })?;
            out.write_all(text.as_bytes()).map_err(|e| {
                (
                    ExitCode::Failure,
                    format!("cannot write {}: {e}", file.display()),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_found_above_the_jobs_dir() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("etc/jobs.d");
        std::fs::create_dir_all(&jobs).unwrap();
        assert_eq!(schema_reference(&jobs), None);
        std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
        std::fs::write(dir.path().join(SCHEMA), "{}").unwrap();
        assert_eq!(
            schema_reference(&jobs).as_deref(),
            Some("../../schemas/job.schema.json")
        );
    }

    #[test]
    fn the_text_has_schema_first_and_absolute_paths() {
        let new = NewJob {
            name: "home".into(),
            source: "/home/me".into(),
            destination: "/mnt/backup/home".into(),
            track: vec![],
            include: vec![],
            schedule: Some("@daily".into()),
        };
        let text = job_text(&new, Some("../schemas/job.schema.json")).unwrap();
        assert_eq!(
            text,
            r#"{
  "$schema": "../schemas/job.schema.json",
  "source": "/home/me",
  "destination": "/mnt/backup/home",
  "schedule": "@daily",
  "track_dirs": [
    "."
  ]
}
"#
        );
    }
}
