//! `strata du NAME`: the space a job's destination takes, every inode
//! counted once (an object store's: every object, from one listing).

use serde_json::json;

use super::{Config, ExitCode, find_job, open_destination, print_json};
use crate::history::usage::{Share, Usage, usage, usage_remote};
use crate::report::human_bytes;
use crate::store::dest::Destination;

/// Measure one job's destination.
pub fn run(config: &Config, name: &str) -> ExitCode {
    let job = match find_job(config, name) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let dest = match open_destination(config, &job) {
        Ok(dest) => dest,
        Err(code) => return code,
    };
    let used = match &dest {
        Destination::Local(store) => usage(store),
        Destination::Object(remote) => usage_remote(remote),
    };
    let used = match used {
        Ok(u) => u,
        Err(e) => {
            eprintln!("strata: {}: {e}", job.name);
            return ExitCode::Failure;
        }
    };
    if config.json {
        let mut value = serde_json::to_value(&used).expect("usage serializes");
        value["job"] = json!(job.name);
        value["destination"] = json!(job.destination);
        print_json(&value);
    } else {
        print!("{}", text(&used, matches!(dest, Destination::Object(_))));
    }
    ExitCode::Success
}

fn text(u: &Usage, object: bool) -> String {
    let row = |name: &str, s: &Share, shared: Option<u64>| {
        vec![
            name.to_string(),
            s.files.to_string(),
            human_bytes(s.bytes),
            human_bytes(s.disk),
            shared.map(human_bytes).unwrap_or_default(),
        ]
    };
    let mut rows = vec![
        ["", "files", "size", "on disk", "shared with mirror"]
            .map(String::from)
            .to_vec(),
    ];
    rows.push(row("mirror", &u.mirror, None));
    for i in &u.increments {
        rows.push(row(&i.increment, &i.own, Some(i.shared_with_mirror)));
    }
    rows.push(row(".strata", &u.state, None));
    rows.push(row("total", &u.total, None));
    let mut out = super::history::table(rows, &[1, 2, 3, 4]);
    if object {
        out.push_str(
            "Every object is counted (and billed) for what it holds: an increment's\n\
             server-side copies are objects of their own.\n",
        );
    } else {
        out.push_str(
            "Every inode is counted once, where it is met first: an increment's share\n\
             is what it holds beyond the mirror and the increments before it.\n",
        );
    }
    out
}
