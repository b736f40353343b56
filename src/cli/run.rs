//! `strata run-all` and `strata run NAME...`: run jobs on the shared pool,
//! print one consolidated report (or the plans of a dry run).

use std::collections::HashSet;

use super::progress::Bars;
use super::{Config, ExitCode, load_jobs_dir};
use crate::job::Job;
use crate::monitor::metrics;
use crate::progress::ProgressHandle;
use crate::report::{JobReport, Report};
use crate::run::{PlanRow, RunOptions, run_jobs};

/// Which jobs to run.
pub enum Selection {
    /// Every enabled job.
    All,
    /// These, by name (enabled or not).
    Named(Vec<String>),
}

/// Run jobs and report.
pub fn run(config: &Config, which: Selection, dry_run: bool, force: bool, init: bool) -> ExitCode {
    let loaded = match load_jobs_dir(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    // A broken job file is a failed row; the other jobs still run.
    let mut broken: Vec<JobReport> = Vec::new();
    let mut seen = HashSet::new();
    for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
        if seen.insert(d.file.clone()) {
            broken.push(JobReport::failed(
                d.file.display().to_string(),
                format!("invalid job file: {d}"),
            ));
        }
    }
    let jobs: Vec<&Job> = match &which {
        Selection::All => loaded.jobs.iter().filter(|j| j.enabled).collect(),
        Selection::Named(names) => {
            let mut picked = Vec::new();
            for name in names {
                match loaded.jobs.iter().find(|j| &j.name == name) {
                    Some(job) => picked.push(job),
                    None => {
                        let known: Vec<&str> =
                            loaded.jobs.iter().map(|j| j.name.as_str()).collect();
                        eprintln!("{}", super::jobs::unknown(config, name, &known));
                        return ExitCode::Usage;
                    }
                }
            }
            // Only the named jobs matter: other broken files are not rows.
            broken.clear();
            picked
        }
    };
    let options = RunOptions {
        dry_run,
        force,
        init,
        known: config.known.clone(),
        faults: config.faults.clone(),
        progress: match &config.progress {
            Some(multi) => ProgressHandle::new(Bars::new(multi.clone())),
            None => ProgressHandle::default(),
        },
        zone: super::zone::machine_zone(),
    };
    let (report, plans) = run_jobs(&jobs, &options);
    let mut rows = broken;
    rows.extend(report.jobs);
    let report = Report::new(rows, std::time::Duration::from_secs_f64(report.seconds));
    // The report printed as text says everything the log would, once; -v
    // asks for the log lines too, and JSON logs are for machines.
    let said_by_the_table =
        !config.json && config.verbosity <= 0 && config.log_format == super::LogFormat::Text;
    if !said_by_the_table {
        for row in &report.jobs {
            row.log_summary();
        }
    }
    if let Some(path) = &config.metrics_file
        && !dry_run
    {
        let defined: Vec<&str> = loaded.jobs.iter().map(|j| j.name.as_str()).collect();
        if let Err(e) = metrics::update(path, &report.jobs, &defined, chrono::Utc::now()) {
            tracing::warn!("{e}");
        }
    }
    print(config, &report, &plans);
    if report.has_failures() {
        ExitCode::Failure
    } else {
        ExitCode::Success
    }
}

fn print(config: &Config, report: &Report, plans: &[(String, Vec<PlanRow>)]) {
    if config.json {
        let plans: Vec<serde_json::Value> = plans
            .iter()
            .map(|(job, plan)| serde_json::json!({"job": job, "changes": plan}))
            .collect();
        let mut value = serde_json::to_value(report).expect("report serializes");
        if !plans.is_empty() {
            value["plans"] = serde_json::Value::Array(plans);
        }
        println!("{}", serde_json::to_string_pretty(&value).expect("json"));
        return;
    }
    for (job, plan) in plans {
        println!("plan for {job}:");
        for c in plan {
            let history = match c.history {
                Some(op) => format!("  [history: {}]", op.as_str()),
                None => String::new(),
            };
            let dir = if c.kind == "dir" { "/" } else { "" };
            println!("  {:<8} {}{dir}{history}", c.op, c.path);
        }
        if plan.is_empty() {
            println!("  (nothing to do)");
        }
    }
    if config.verbosity >= 0 || report.has_failures() {
        print!("{}", report.render(terminal_width()));
    }
}

/// The width of the terminal stdout is, if it is one (`COLUMNS` when the
/// terminal does not say); `None` off a terminal, where the table is
/// printed whole for scripts and logs.
fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    match rustix::termios::tcgetwinsize(&stdout) {
        Ok(size) if size.ws_col > 0 => Some(usize::from(size.ws_col)),
        _ => std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .filter(|&c| c > 0),
    }
}
