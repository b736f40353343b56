//! `strata export systemd|kubernetes|nomad [NAME…]`: the jobs' files for a
//! fleet scheduler, printed (with a `# ==> FILE <==` line before each) or
//! written into `--dir`; `--json` lists them with their contents.
//!
//! A job that the engine cannot schedule as cron would is refused with the
//! reason; then nothing is printed or written and the exit code is 1, so a
//! `--dir` never holds half an export.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::ValueEnum;
use serde::Serialize;

use super::zone::machine_zone;
use super::{Config, ExitCode, load_jobs_dir, print_json};
use crate::export::{self, Engine, Export, File, JobInput, Settings};
use crate::job::Job;
use crate::tz::Zone;

/// The schedulers, as the command line names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// A .service and a .timer per job.
    Systemd,
    /// A ConfigMap and a CronJob (batch/v1) per job, in one YAML file.
    Kubernetes,
    /// A periodic batch job (HCL) per job.
    Nomad,
}

impl From<EngineArg> for Engine {
    fn from(e: EngineArg) -> Engine {
        match e {
            EngineArg::Systemd => Engine::Systemd,
            EngineArg::Kubernetes => Engine::Kubernetes,
            EngineArg::Nomad => Engine::Nomad,
        }
    }
}

/// `strata export`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The scheduler to write for.
    #[arg(value_enum)]
    pub engine: EngineArg,
    /// Jobs to export (default: every enabled job with a schedule). A
    /// disabled job named here is exported switched off where the engine
    /// has a switch (Kubernetes `suspend`, Nomad `enabled`).
    pub names: Vec<String>,
    /// Write the files into DIR (created if missing) instead of printing
    /// them; nothing is written if any job is refused.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Read the schedules in this IANA zone instead of the machine's (the
    /// zone the daemon uses). Needed for kubernetes and nomad when the
    /// machine's zone has no IANA name; for systemd, the OnCalendar= lines
    /// then name the zone.
    #[arg(long, value_name = "ZONE")]
    pub time_zone: Option<String>,
    /// The strata executable that the systemd units and Nomad tasks run
    /// (default: this one).
    #[arg(long, value_name = "PATH")]
    pub strata_path: Option<PathBuf>,
    /// The container image that runs strata (kubernetes).
    #[arg(long, value_name = "IMAGE", default_value = concat!("strata:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// The node that holds the jobs' disks, which the pods and tasks are
    /// pinned to (kubernetes, nomad; default: this machine's host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// startingDeadlineSeconds of every CronJob (default: the job's
    /// shortest interval between two fire times).
    #[arg(long, value_name = "SECONDS")]
    pub starting_deadline: Option<u64>,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    engine: &'static str,
    /// The zone the schedules were read in.
    time_zone: String,
    /// Where the files were written (`null`: printed).
    dir: Option<&'a Path>,
    files: Vec<Written<'a>>,
    refused: &'a [export::Refusal],
    skipped: Vec<Skipped<'a>>,
}

#[derive(Debug, Serialize)]
struct Written<'a> {
    job: &'a str,
    name: &'a str,
    /// The file's path when written into `--dir`.
    path: Option<PathBuf>,
    contents: &'a str,
}

#[derive(Debug, Serialize)]
struct Skipped<'a> {
    job: &'a str,
    reason: &'static str,
}

/// Run `strata export`.
pub fn run(config: &Config, args: &ExportArgs) -> ExitCode {
    let engine = Engine::from(args.engine);
    let loaded = match load_jobs_dir(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    // Warnings (a source not mounted here) are for `validate`: the export
    // may well run on another machine than the backups.
    for d in &loaded.diagnostics {
        if d.is_error() || config.verbosity > 0 {
            eprintln!("{d}");
        }
    }
    if loaded.has_errors() {
        eprintln!(
            "strata: export: the job files have errors (above); nothing exported, since a \
             job left out would not run at all"
        );
        return ExitCode::Failure;
    }
    let (jobs, skipped) = match select(&loaded.jobs, &args.names) {
        Ok(selected) => selected,
        Err(name) => {
            eprintln!(
                "strata: no valid job named {name:?} in {}",
                config.jobs_dir.display()
            );
            return ExitCode::Usage;
        }
    };
    let (zone, zone_given) = match &args.time_zone {
        Some(name) => match Zone::named(name) {
            Ok(zone) => (zone, true),
            Err(e) => {
                eprintln!("strata: --time-zone: {e}");
                return ExitCode::Usage;
            }
        },
        None => (machine_zone(), false),
    };
    let strata = match &args.strata_path {
        Some(path) => absolute(path),
        None => match std::env::current_exe() {
            Ok(path) => path,
            Err(e) => {
                eprintln!("strata: cannot tell where this strata is ({e}): give --strata-path");
                return ExitCode::Usage;
            }
        },
    };
    let settings = Settings {
        jobs_dir: std::fs::canonicalize(&config.jobs_dir)
            .unwrap_or_else(|_| absolute(&config.jobs_dir)),
        strata,
        metrics_file: config.metrics_file.clone(),
        zone,
        zone_given,
        image: args.image.clone(),
        node: args.node.clone().or_else(host_name),
        starting_deadline: args.starting_deadline,
        now: Utc::now(),
    };
    let mut texts = Vec::with_capacity(jobs.len());
    for job in &jobs {
        match crate::job::load::read_job_file(&job.file) {
            Ok(text) => texts.push(text),
            Err(e) => {
                eprintln!("strata: {}: {e}", job.file.display());
                return ExitCode::Failure;
            }
        }
    }
    let inputs: Vec<JobInput<'_>> = jobs
        .iter()
        .zip(&texts)
        .map(|(job, text)| JobInput { job, text })
        .collect();
    let result = export::export(engine, &inputs, &settings);

    for r in &result.refused {
        eprintln!(
            "strata: export: {}: cannot export to {}: {}",
            r.job,
            engine.name(),
            r.reason
        );
    }
    if !config.json && config.verbosity >= 0 {
        for s in &skipped {
            eprintln!("strata: export: skipped {}: {}", s.job, s.reason);
        }
    }
    let refused = !result.refused.is_empty();
    let written = match (&args.dir, refused) {
        (Some(dir), false) => match write_all(dir, &result.files) {
            Ok(paths) => Some(paths),
            Err(e) => {
                eprintln!("strata: export: {e}");
                return ExitCode::Failure;
            }
        },
        _ => None,
    };
    if config.json {
        let files = if refused {
            Vec::new()
        } else {
            written_list(&result, written.as_deref())
        };
        print_json(&Report {
            engine: engine.name(),
            time_zone: settings.zone.name().to_string(),
            dir: args.dir.as_deref(),
            files,
            refused: &result.refused,
            skipped,
        });
    } else if !refused {
        match &written {
            Some(paths) => {
                if config.verbosity >= 0 {
                    for p in paths {
                        println!("{}", p.display());
                    }
                }
            }
            None => print_files(engine, &result.files),
        }
    }
    if refused {
        ExitCode::Failure
    } else {
        if result.files.is_empty() && config.verbosity >= 0 {
            eprintln!(
                "strata: export: no enabled job with a schedule in {}",
                config.jobs_dir.display()
            );
        }
        ExitCode::Success
    }
}

/// The named jobs, or every enabled job with a schedule (and the others,
/// with why they were left out). `Err` names a job that is not there.
fn select<'a>(
    jobs: &'a [Job],
    names: &[String],
) -> Result<(Vec<&'a Job>, Vec<Skipped<'a>>), String> {
    if names.is_empty() {
        let mut chosen = Vec::new();
        let mut skipped = Vec::new();
        for job in jobs {
            match (job.schedule.is_some(), job.enabled) {
                (true, true) => chosen.push(job),
                (false, _) => skipped.push(Skipped {
                    job: &job.name,
                    reason: "no schedule (it runs only when asked)",
                }),
                (true, false) => skipped.push(Skipped {
                    job: &job.name,
                    reason: "disabled (name it to export it switched off)",
                }),
            }
        }
        return Ok((chosen, skipped));
    }
    let mut chosen: Vec<&Job> = Vec::new();
    for name in names {
        let job = jobs
            .iter()
            .find(|j| &j.name == name)
            .ok_or_else(|| name.clone())?;
        if !chosen.iter().any(|j| j.name == job.name) {
            chosen.push(job);
        }
    }
    Ok((chosen, Vec::new()))
}

/// Print the files on stdout, each after a `# ==> NAME <==` line (a comment
/// in unit files, YAML and HCL alike); YAML files are also separated by
/// `---`, so that the whole output is one YAML stream for `kubectl apply -f -`.
fn print_files(engine: Engine, files: &[File]) {
    for (i, file) in files.iter().enumerate() {
        if i > 0 {
            if engine == Engine::Kubernetes {
                println!("---");
            } else {
                println!();
            }
        }
        println!("# ==> {} <==", file.name);
        print!("{}", file.contents);
    }
}

fn written_list<'a>(result: &'a Export, paths: Option<&[PathBuf]>) -> Vec<Written<'a>> {
    result
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| Written {
            job: &f.job,
            name: &f.name,
            path: paths.and_then(|p| p.get(i).cloned()),
            contents: &f.contents,
        })
        .collect()
}

/// Write every file into `dir`: first each to a hidden temp file (written
/// and synced), then each renamed into place, so a failure while writing
/// leaves no file of this export behind.
fn write_all(dir: &Path, files: &[File]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut temps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let cleanup = |temps: &[(PathBuf, PathBuf)]| {
        for (temp, _) in temps {
            let _ = std::fs::remove_file(temp);
        }
    };
    for file in files {
        let target = dir.join(&file.name);
        let temp = dir.join(format!(".{}.{}.tmp", file.name, std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .and_then(|mut f| {
                f.write_all(file.contents.as_bytes())?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            cleanup(&temps);
            return Err(format!("cannot write {}: {e}", target.display()));
        }
        temps.push((temp, target));
    }
    let mut done = Vec::new();
    for (i, (temp, target)) in temps.iter().enumerate() {
        if let Err(e) = std::fs::rename(temp, target) {
            cleanup(&temps[i..]);
            return Err(format!(
                "cannot write {}: {e}{}",
                target.display(),
                if done.is_empty() {
                    String::new()
                } else {
                    format!(" (already written: {})", list(&done))
                }
            ));
        }
        done.push(target.clone());
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(done)
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// This machine's host name, which Kubernetes nodes and Nomad clients are
/// named by default.
fn host_name() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.trim().to_string();
    (!name.is_empty() && name != "(none)").then_some(name)
}
