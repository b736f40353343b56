//! `strata show NAME INCREMENT`: one increment's records.

use serde_json::json;

use super::diff::{Found, find, open_history};
use super::{Config, ExitCode, find_job, parse_point, print_json};
use crate::history::Increment;
use crate::report::{human_bytes, plural};
use crate::tz::Zone;

/// Show one increment of one job.
pub fn run(config: &Config, name: &str, increment: &str) -> ExitCode {
    let point = match parse_point(increment) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let job = match find_job(config, name) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let (_, history) = match open_history(config, &job) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let inc = match find(&history, &point) {
        Ok(Found::Increment(k)) => &history.increments[k],
        Ok(Found::Latest) => {
            eprintln!(
                "strata: `latest` is the mirror, not an increment; `strata history {}` \
                 lists the increments (-0 is the newest)",
                job.name
            );
            return ExitCode::Usage;
        }
        Err(code) => return code,
    };
    if config.json {
        print_json(&json!({
            "job": job.name,
            "increment": inc.name,
            "start": inc.meta.start,
            "finish": inc.meta.finish,
            "files": inc.meta.files,
        }));
    } else {
        print!("{}", text(inc, &super::zone::machine_zone()));
    }
    ExitCode::Success
}

fn text(inc: &Increment, zone: &Zone) -> String {
    let local = |t: &str| super::history::local_time(t, zone);
    let summary = crate::history::History::new(vec![inc.clone()]).summaries()[0].clone();
    let mut out = format!(
        "{}  started {}, finished {}\n{} new, {} changed, {} deleted, {}; {} in new and changed files\n",
        inc.name,
        local(&inc.meta.start),
        local(&inc.meta.finish),
        summary.new,
        summary.changed,
        summary.deleted,
        plural(summary.dirs, "directory", "directories"),
        human_bytes(summary.bytes),
    );
    let mut rows = vec![
        ["op", "kind", "size", "mode", "path"]
            .map(String::from)
            .to_vec(),
    ];
    for (path, r) in inc.records() {
        let slash = if r.kind == "dir" && !path.is_root() {
            "/"
        } else {
            ""
        };
        rows.push(vec![
            r.op.as_str().to_string(),
            r.kind.clone(),
            if r.kind == "dir" {
                "-".into()
            } else {
                human_bytes(r.size)
            },
            format!("{:04o}", r.mode),
            format!("{path}{slash}"),
        ]);
    }
    out.push_str(&super::history::table(rows, &[2]));
    out
}
