//! `strata history NAME [PATH | --mask GLOB...]`: a job's increments, the
//! versions of a path, or a search of every increment, from the history
//! model.

use serde_json::json;

use super::{Config, ExitCode, open_destination, print_json, relative_arg};
use crate::history::{History, IncrementSummary, Mask, PathHistory, is_at_or_below};
use crate::job::Job;
use crate::report::human_bytes;
use crate::tz::Zone;

/// Split `args` into jobs and an optional PATH, and list for each job.
pub fn run(config: &Config, args: &[String], all: bool, masks: &[String]) -> ExitCode {
    let loaded = match super::load_jobs_dir(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let is_job = |a: &String| loaded.jobs.iter().any(|j| &j.name == a);
    let (names, rest): (Vec<String>, Vec<String>) = if all {
        (Vec::new(), args.to_vec())
    } else {
        let n = args.iter().take_while(|a| is_job(a)).count();
        (args[..n].to_vec(), args[n..].to_vec())
    };
    if !all && names.is_empty() {
        let known: Vec<&str> = loaded.jobs.iter().map(|j| j.name.as_str()).collect();
        eprintln!("{}", super::jobs::unknown(config, &args[0], &known));
        return ExitCode::Usage;
    }
    if rest.len() > 1 {
        eprintln!(
            "strata: history takes one PATH after the job names; {} are not jobs \
             (write ./NAME for a path named like a job)",
            rest.join(", ")
        );
        return ExitCode::Usage;
    }
    if !rest.is_empty() && !masks.is_empty() {
        eprintln!("strata: history takes a PATH or --mask, not both");
        return ExitCode::Usage;
    }
    let jobs = match super::jobs::pick(config, &names, all) {
        Ok(jobs) => jobs,
        Err(code) => return code,
    };
    let path = rest.into_iter().next();
    super::jobs::each(config, &jobs, |job| one(config, job, path.clone(), masks))
}

/// List increments, or versions of what `path` or `masks` select.
fn one(config: &Config, job: &Job, path: Option<String>, masks: &[String]) -> ExitCode {
    let dest = match open_destination(config, job) {
        Ok(dest) => dest,
        Err(code) => return code,
    };
    let history = match History::of(&dest) {
        Ok(history) => history,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::Failure;
        }
    };
    let mut found_arg = None;
    let (found, what) = if !masks.is_empty() {
        let mask = match Mask::new(masks) {
            Ok(mask) => mask,
            Err(e) => {
                eprintln!("strata: --mask: {e}");
                return ExitCode::Usage;
            }
        };
        (
            history.versions(|p| mask.is_match(p)),
            format!("matching {}", masks.join(", ")),
        )
    } else if let Some(arg) = path {
        found_arg = relative_arg(job, &arg).ok().flatten();
        let found = match relative_arg(job, &arg) {
            Ok(Some(rel)) => history.versions(|p| is_at_or_below(p, &rel)),
            Ok(None) => history.versions(|_| true),
            Err(e) => {
                eprintln!("strata: {e}");
                return ExitCode::Usage;
            }
        };
        (found, arg)
    } else {
        let summaries = history.summaries();
        if config.json {
            print_json(&json!({"job": job.name, "increments": summaries}));
        } else {
            print!(
                "{}",
                increments_table(&summaries, &super::zone::machine_zone())
            );
        }
        return ExitCode::Success;
    };
    if config.json {
        print_json(&json!({"job": job.name, "paths": found}));
    } else if found.is_empty() {
        eprintln!(
            "strata: no file {what} in any increment of {}{}",
            job.name,
            dest.local()
                .map_or(String::new(), |store| mirrored_only(store, &found_arg))
        );
    } else {
        print!("{}", versions_text(&found, &super::zone::machine_zone()));
    }
    if found.is_empty() {
        ExitCode::Failure
    } else {
        ExitCode::Success
    }
}

/// Rows as aligned columns; the columns in `right` are right-aligned.
pub(super) fn table(rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if right.contains(&c) {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// An RFC 3339 time as `list` shows times: local, to the second, with
/// the offset.
pub(super) fn local_time(rfc3339: &str, zone: &Zone) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| zone.format(&t.with_timezone(&chrono::Utc)))
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// Why a path has no versions, when the mirror holds it: an include rule
/// mirrors it without versions.
fn mirrored_only(store: &crate::store::Store, path: &Option<crate::entry::RelPath>) -> String {
    let Some(path) = path else {
        return String::new();
    };
    let Ok(Some(index)) = crate::store::index::load(store.state(), &store.index_path()) else {
        return String::new();
    };
    let below = index
        .entries
        .iter()
        .filter(|e| e.path.is_at_or_below(path) && e.meta.kind != crate::entry::Kind::Dir);
    if below.clone().next().is_some() && below.clone().all(|e| !e.tracked) {
        format!(
            "; the mirror holds {path}, but an include rule selects it, which mirrors \
             without keeping versions (a track rule keeps them)"
        )
    } else {
        String::new()
    }
}

fn increments_table(summaries: &[IncrementSummary], zone: &Zone) -> String {
    if summaries.is_empty() {
        return "no increments yet\n".into();
    }
    let mut rows = vec![
        ["increment", "start", "new", "changed", "deleted", "bytes"]
            .map(String::from)
            .to_vec(),
    ];
    for s in summaries {
        rows.push(vec![
            s.increment.clone(),
            local_time(&s.start, zone),
            s.new.to_string(),
            s.changed.to_string(),
            s.deleted.to_string(),
            human_bytes(s.bytes),
        ]);
    }
    table(rows, &[2, 3, 4, 5])
}

fn versions_text(found: &[PathHistory], zone: &Zone) -> String {
    let mut out = String::new();
    for path in found {
        out.push_str(&path.path);
        out.push('\n');
        let rows = path
            .versions
            .iter()
            .map(|v| {
                vec![
                    format!("  {}", v.increment),
                    local_time(&v.time, zone),
                    v.op.as_str().to_string(),
                    v.kind.clone(),
                    human_bytes(v.size),
                    format!("{:04o}", v.mode),
                    // The start of the hash tells versions apart; --json has it all.
                    v.hash
                        .as_deref()
                        .map(|h| h.chars().take(12).collect())
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        out.push_str(&table(rows, &[4]));
    }
    out
}
