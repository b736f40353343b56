//! `strata export`: job files in, the files a fleet scheduler runs out —
//! systemd `.service` + `.timer` units, Kubernetes `CronJob`s with their
//! `ConfigMap`s, Nomad periodic batch jobs.
//!
//! Each engine reads cron expressions its own way, so a schedule is not
//! copied but rewritten from the parsed [`Schedule`]'s value sets, in the
//! engine's syntax, and checked against what the engine's scheduler does
//! differently from crontab(5) and cron(8) (the day-of-month-or-week rule,
//! fields it lacks, what happens around a DST change; [`calendar`] finds
//! those meetings). A job whose schedule the engine would read another way
//! is refused with the reason, never written with a schedule that means
//! something else (SPEC §1.1 is what a schedule means).
//!
//! This module only builds text: [`export`] touches no file and reads no
//! clock; the CLI hands in the job files' text, the zone and "now", and
//! writes or prints the result.

pub mod calendar;
mod kubernetes;
mod nomad;
mod systemd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::job::Job;
use crate::schedule::Schedule;
use crate::tz::Zone;

/// The schedulers strata exports to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// systemd timers: a `.service` and a `.timer` per job.
    Systemd,
    /// Kubernetes: a `ConfigMap` and a `CronJob` (batch/v1) per job.
    Kubernetes,
    /// Nomad: a periodic batch job (HCL) per job.
    Nomad,
}

impl Engine {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Systemd => "systemd",
            Engine::Kubernetes => "kubernetes",
            Engine::Nomad => "nomad",
        }
    }
}

/// Everything an export needs besides the jobs, resolved once by the CLI.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The jobs directory, absolute (what the systemd and Nomad tasks pass
    /// to `--jobs-dir`).
    pub jobs_dir: PathBuf,
    /// The strata executable on the host (systemd's `ExecStart`, Nomad's
    /// `command`), absolute.
    pub strata: PathBuf,
    /// `--metrics-file`, absolute, passed on to every run.
    pub metrics_file: Option<PathBuf>,
    /// The zone the schedules are read in: the machine's, or the one given.
    pub zone: Zone,
    /// The zone was given (`--time-zone`) rather than the machine's: the
    /// systemd calendar specs then name it, instead of local time.
    pub zone_given: bool,
    /// The container image (Kubernetes).
    pub image: String,
    /// The node whose disks the jobs read and write (Kubernetes
    /// `nodeSelector`, Nomad `constraint`), if known.
    pub node: Option<String>,
    /// `startingDeadlineSeconds` for every CronJob; `None`: each job's
    /// shortest interval between fire times.
    pub starting_deadline: Option<u64>,
    /// Now: DST changes and fire times are looked at from here on.
    pub now: DateTime<Utc>,
}

/// A job with the text of its job file.
#[derive(Debug, Clone, Copy)]
pub struct JobInput<'a> {
    /// The loaded job.
    pub job: &'a Job,
    /// Its job file, as read.
    pub text: &'a str,
}

/// One file an export writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct File {
    /// The job it is for.
    pub job: String,
    /// Its file name (`strata-home.timer`).
    pub name: String,
    /// Its contents.
    pub contents: String,
}

/// A job that cannot be exported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The job.
    pub job: String,
    /// What the engine cannot express, or would read differently.
    pub reason: String,
}

/// What an export of several jobs produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Export {
    /// The files, in job order.
    pub files: Vec<File>,
    /// The jobs that were refused.
    pub refused: Vec<Refusal>,
}

/// Export `jobs` for `engine`. Every job either gives its files or is
/// refused with a reason; the caller writes nothing when any is refused.
pub fn export(engine: Engine, jobs: &[JobInput<'_>], settings: &Settings) -> Export {
    let mut out = Export::default();
    for input in jobs {
        let job = input.job;
        match files_for(engine, input, settings) {
            Ok(files) => out.files.extend(files),
            Err(reason) => out.refused.push(Refusal {
                job: job.name.clone(),
                reason,
            }),
        }
    }
    // Two job names that one engine spells alike (Kubernetes lowercases)
    // would write one file twice.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut clashes = Vec::new();
    for file in &out.files {
        match seen.get(file.name.as_str()) {
            Some(other) if *other != file.job => clashes.push(Refusal {
                job: file.job.clone(),
                reason: format!(
                    "its {} file {} would be the same as job {other}'s",
                    engine.name(),
                    file.name
                ),
            }),
            _ => {
                seen.insert(&file.name, &file.job);
            }
        }
    }
    out.refused.extend(clashes);
    out
}

fn files_for(
    engine: Engine,
    input: &JobInput<'_>,
    settings: &Settings,
) -> Result<Vec<File>, String> {
    let job = input.job;
    let Some(schedule) = &job.schedule else {
        return Err("it has no schedule (it runs only when asked)".to_string());
    };
    if schedule.next_after(&settings.now, &settings.zone).is_none() {
        return Err(format!(
            "its schedule `{}` never fires again in {}",
            schedule.source(),
            settings.zone
        ));
    }
    match engine {
        Engine::Systemd => systemd::files(job, schedule, settings),
        Engine::Kubernetes => kubernetes::files(input, schedule, settings),
        Engine::Nomad => nomad::files(job, schedule, settings),
    }
}

/// Why a Go scheduler (robfig/cron in Kubernetes, cronexpr in Nomad) would
/// fire the job at other times than cron(8) around the zone's DST changes,
/// if it would. Both search in real time, an hour or a minute at a time:
/// a wall-clock time in a gap never comes up, and one in a fold comes up
/// twice. cron(8) does the same for a *wildcard* job (`*/15 * * * *`), so
/// those agree; a *fixed-time* job (`30 2 * * *`) fires in cron(8) once,
/// after the gap or at the first pass of the fold. Changes by part of an
/// hour and changes at midnight are refused for every job: their
/// searches step around those by hand, and strata cannot test them.
fn go_dst_conflict(schedule: &Schedule, settings: &Settings, engine: &str) -> Option<String> {
    let meet = calendar::meetings(schedule, &settings.zone, &settings.now);
    let zone = &settings.zone;
    let expr = schedule.source();
    if !schedule.is_wildcard() {
        if let Some(hit) = meet.gap {
            return Some(format!(
                "`{expr}` is a fixed-time job and {} does not exist in {zone} ({}): \
                 cron(8) runs it once at {}, when the gap ends, but {engine} skips it",
                hit.wall.format("%Y-%m-%d %H:%M:%S"),
                hit.window.describe(),
                calendar::clock(&hit.window.to),
            ));
        }
        if let Some(hit) = meet.fold {
            return Some(format!(
                "`{expr}` is a fixed-time job and {} occurs twice in {zone} ({}): \
                 cron(8) runs it once, at the first, but {engine} runs it at both",
                hit.wall.format("%Y-%m-%d %H:%M:%S"),
                hit.window.describe(),
            ));
        }
    }
    if let Some(hit) = meet.part_hour {
        return Some(format!(
            "`{expr}` fires at {} in {zone}, inside a DST change by part of an hour ({}), \
             where {engine}'s search is not known to agree with cron(8)",
            hit.wall.format("%Y-%m-%d %H:%M:%S"),
            hit.window.describe(),
        ));
    }
    if let Some((window, day)) = meet.midnight {
        return Some(format!(
            "`{expr}` fires on {day}, when {zone} changes its clocks at midnight ({}); \
             {engine}'s day search steps around a missing or doubled midnight by hand \
             and is not known to agree with cron(8) there",
            window.describe(),
        ));
    }
    None
}

/// The zone's IANA name, which Kubernetes and Nomad take.
fn iana_zone(settings: &Settings) -> Result<&str, String> {
    settings.zone.iana_name().ok_or_else(|| {
        "the machine's time zone has no IANA name (TZ is a POSIX rule, or \
         /etc/localtime is not a link into the zoneinfo database): give --time-zone NAME"
            .to_string()
    })
}

/// A path as UTF-8 text without control characters, which every format
/// here can quote; `what` names it in the refusal.
fn path_text<'a>(path: &'a Path, what: &str) -> Result<&'a str, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("its {what} {} is not UTF-8", path.display()))?;
    if text.chars().any(char::is_control) {
        return Err(format!(
            "its {what} {} holds a control character",
            path.display()
        ));
    }
    Ok(text)
}

/// The arguments every exported task passes to strata before the command:
/// the jobs directory and the metrics file.
fn global_args(jobs_dir: &str, metrics_file: Option<&Path>) -> Result<Vec<String>, String> {
    let mut args = vec!["--jobs-dir".to_string(), jobs_dir.to_string()];
    if let Some(metrics) = metrics_file {
        args.push("--metrics-file".to_string());
        args.push(path_text(metrics, "metrics file")?.to_string());
    }
    Ok(args)
}

/// The first line of every file: where it came from, so that it is
/// regenerated rather than edited.
fn generated_by(engine: Engine, job: &Job, settings: &Settings) -> String {
    let file = match job.file.file_name() {
        Some(name) => settings.jobs_dir.join(name),
        None => job.file.clone(),
    };
    format!(
        "Generated by `strata export {}` from {}; regenerate it rather than edit it.",
        engine.name(),
        file.display()
    )
}
