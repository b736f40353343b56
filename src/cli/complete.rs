//! Shell completion that knows the jobs and their increments: `strata
//! completions SHELL` prints a script that asks `strata` itself (with
//! `COMPLETE=SHELL` set) for the candidates as you type, so job names come
//! from the jobs dir and increment names from the job's destination.
//!
//! clap_complete's dynamic engine does the shell side; this module adds the
//! candidates. The jobs dir is the one the command line being completed
//! names (`--jobs-dir`), else `STRATA_JOBS_DIR`, else `jobs.d`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

use crate::store::Store;

/// The environment variable the completion scripts set.
pub const VAR: &str = "COMPLETE";

/// Arguments that name jobs, and those that name points in a history.
const JOB_ARGS: &[&str] = &["name", "names", "args"];
const POINT_ARGS: &[&str] = &["a", "b", "increment", "at"];

/// The command line's definition with the candidates attached.
pub fn command() -> clap::Command {
    super::command().mut_subcommands(|sub| {
        sub.mut_args(|arg| {
            let id = arg.get_id().as_str();
            if JOB_ARGS.contains(&id) {
                arg.add(ArgValueCandidates::new(job_names))
            } else if POINT_ARGS.contains(&id) {
                arg.add(ArgValueCandidates::new(points))
            } else {
                arg
            }
        })
    })
}

/// Answer a completion request, if this run is one (and exit).
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(command)
        .var(VAR)
        .complete();
}

/// The script that hooks `shell` up to [`answer_if_asked`].
pub fn script(shell: clap_complete::Shell, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
    let shell: &dyn EnvCompleter = match shell {
        clap_complete::Shell::Bash => &Bash,
        clap_complete::Shell::Elvish => &Elvish,
        clap_complete::Shell::Fish => &Fish,
        clap_complete::Shell::PowerShell => &Powershell,
        _ => &Zsh,
    };
    shell.write_registration(VAR, "strata", "strata", "strata", out)
}

/// The words of the command line being completed (after `--`).
fn words() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => args,
    }
}

/// The jobs dir the command line names.
fn jobs_dir(words: &[OsString]) -> PathBuf {
    for (i, w) in words.iter().enumerate() {
        let w = w.to_string_lossy();
        if let Some(dir) = w.strip_prefix("--jobs-dir=") {
            return PathBuf::from(dir);
        }
        if w == "--jobs-dir"
            && let Some(dir) = words.get(i + 1)
        {
            return PathBuf::from(dir);
        }
    }
    std::env::var_os("STRATA_JOBS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("jobs.d"))
}

fn jobs(words: &[OsString]) -> Vec<crate::job::Job> {
    crate::job::load_paths(&[jobs_dir(words)])
        .map(|loaded| loaded.jobs)
        .unwrap_or_default()
}

fn job_names() -> Vec<CompletionCandidate> {
    jobs(&words())
        .into_iter()
        .map(|j| {
            CompletionCandidate::new(&j.name).help(Some(j.source.display().to_string().into()))
        })
        .collect()
}

/// The increments of the job the command line names (its first word
/// after the command that is a job), newest first, and `latest`.
fn points() -> Vec<CompletionCandidate> {
    let words = words();
    let jobs = jobs(&words);
    let job = words
        .iter()
        .find_map(|w| jobs.iter().find(|j| *w == OsString::from(&j.name)));
    let mut out = Vec::new();
    if let Some(job) = job
        && let Ok(store) = Store::open(&job.destination)
        && let Ok(names) = store.increments()
    {
        for (back, name) in names.iter().rev().enumerate() {
            out.push(
                CompletionCandidate::new(name.to_string()).help(Some(format!("-{back}").into())),
            );
        }
    }
    out.push(CompletionCandidate::new("latest").help(Some("the mirror".into())));
    out
}
