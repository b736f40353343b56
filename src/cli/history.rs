//! `strata history NAME [PATH | --mask GLOB...]`: a job's increments, the
//! versions of a path, or a search of every increment, from the history
//! model.

use serde_json::json;

use super::{Config, ExitCode, find_job, open_store, print_json, relative_arg};
use crate::history::{History, IncrementSummary, Mask, PathHistory, is_at_or_below};
use crate::report::human_bytes;

/// List increments, or versions of what `path` or `masks` select.
pub fn run(config: &Config, name: &str, path: Option<String>, masks: &[String]) -> ExitCode {
    let job = match find_job(config, name) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let store = match open_store(&job) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let history = match History::load(&store) {
        Ok(history) => history,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::Failure;
        }
    };
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
        let found = match relative_arg(&job, &arg) {
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
            print!("{}", increments_table(&summaries));
        }
        return ExitCode::Success;
    };
    if config.json {
        print_json(&json!({"job": job.name, "paths": found}));
    } else if found.is_empty() {
        eprintln!("strata: no file {what} in any increment of {}", job.name);
    } else {
        print!("{}", versions_text(&found));
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

fn increments_table(summaries: &[IncrementSummary]) -> String {
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
            s.start.clone(),
            s.new.to_string(),
            s.changed.to_string(),
            s.deleted.to_string(),
            human_bytes(s.bytes),
        ]);
    }
    table(rows, &[2, 3, 4, 5])
}

fn versions_text(found: &[PathHistory]) -> String {
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
                    v.time.clone(),
                    v.op.as_str().to_string(),
                    human_bytes(v.size),
                    v.hash.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        out.push_str(&table(rows, &[3]));
    }
    out
}
