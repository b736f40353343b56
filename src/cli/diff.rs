//! `strata diff NAME A [B]`: the paths added, removed and changed between
//! two points of a job's tracked history, with what changed.

use serde_json::json;

use super::{Config, ExitCode, find_job, open_destination, parse_point, print_json};
use crate::entry::Kind;
use crate::history::at::Point;
use crate::history::diff::{
    Counts, Difference, Facts, Side, Status, What, diff, side_at, side_latest,
};
use crate::history::{History, HistoryError};
use crate::job::Job;
use crate::report::{human_bytes, plural};
use crate::store::Store;
use crate::store::dest::Destination;
use crate::store::index;
use crate::tz::Zone;

/// A point, found in a job's history.
pub(super) enum Found {
    /// The latest state.
    Latest,
    /// The increment at this index.
    Increment(usize),
}

/// Find `point` in `history`; prints why when it is not there (exit 1).
pub(super) fn find(history: &History, point: &Point) -> Result<Found, ExitCode> {
    match point {
        Point::Latest => Ok(Found::Latest),
        Point::At(at) => history.resolve(at).map(Found::Increment).map_err(|e| {
            eprintln!("strata: {e}");
            ExitCode::Failure
        }),
    }
}

/// The history of a destination of either kind; prints why it cannot be
/// read (exit 1).
pub(super) fn load_history_of(dest: &Destination) -> Result<History, ExitCode> {
    History::of(dest).map_err(|e: HistoryError| {
        eprintln!("strata: {e}");
        ExitCode::Failure
    })
}

/// A job's destination and its history, for the commands that read a
/// history (diff, show, mount); prints why either cannot be had.
pub(super) fn open_history(config: &Config, job: &Job) -> Result<(Destination, History), ExitCode> {
    let dest = open_destination(config, job)?;
    let history = load_history_of(&dest)?;
    Ok((dest, history))
}

/// The index of a job's store; prints why it cannot be had (exit 1).
pub(super) fn load_index(store: &Store, job: &str) -> Result<index::Index, ExitCode> {
    match index::load(store.state(), &store.index_path()) {
        Ok(Some(index)) => Ok(index),
        Ok(None) => {
            eprintln!("strata: {job}: nothing backed up yet");
            Err(ExitCode::Failure)
        }
        Err(e) => {
            eprintln!("strata: {e}");
            Err(ExitCode::Failure)
        }
    }
}

/// The committed index of a destination of either kind (an object
/// store's is fetched into its local cache when its ETag changed); prints
/// why it cannot be had (exit 1).
pub(super) fn load_index_of(dest: &Destination, job: &str) -> Result<index::Index, ExitCode> {
    match dest {
        Destination::Local(store) => load_index(store, job),
        Destination::Object(remote) => match remote.fetch_index() {
            Ok(Some(_)) => load_index(&remote.cache, job),
            Ok(None) => {
                eprintln!("strata: {job}: nothing backed up yet");
                Err(ExitCode::Failure)
            }
            Err(e) => {
                eprintln!("strata: {job}: {e}");
                Err(ExitCode::Failure)
            }
        },
    }
}

/// Diff two points of one job.
pub fn run(config: &Config, name: &str, a: &str, b: Option<&str>) -> ExitCode {
    let points = match (parse_point(a), b.map(parse_point).transpose()) {
        (Ok(a), Ok(b)) => (a, b.unwrap_or(Point::Latest)),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let job = match find_job(config, name) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let (dest, history) = match open_history(config, &job) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let mut sides: Vec<(String, Side)> = Vec::new();
    for point in [&points.0, &points.1] {
        let side = match find(&history, point) {
            Ok(Found::Latest) => match load_index_of(&dest, &job.name) {
                Ok(index) => ("latest".to_string(), side_latest(&index)),
                Err(code) => return code,
            },
            Ok(Found::Increment(k)) => (history.increments[k].name.clone(), side_at(&history, k)),
            Err(code) => return code,
        };
        sides.push(side);
    }
    let diffs = diff(&sides[0].1, &sides[1].1);
    let counts = Counts::of(&diffs);
    if config.json {
        print_json(&json!({
            "job": job.name,
            "from": sides[0].0,
            "to": sides[1].0,
            "counts": counts,
            "paths": diffs,
        }));
    } else {
        let zone = super::zone::machine_zone();
        print!("{}", text(&sides[0].0, &sides[1].0, &diffs, counts, &zone));
    }
    ExitCode::Success
}

/// One line per path, then the counts.
fn text(from: &str, to: &str, diffs: &[Difference], counts: Counts, zone: &Zone) -> String {
    let mut out = format!("{from} -> {to}\n");
    for d in diffs {
        let kind = d.after.as_ref().or(d.before.as_ref()).map(|f| f.kind);
        let slash = if kind == Some(Kind::Dir) && !d.path.is_root() {
            "/"
        } else {
            ""
        };
        let (mark, detail) = match (d.status, &d.before, &d.after) {
            (Status::Added, _, Some(after)) => ("+", facts(after)),
            (Status::Removed, Some(before), _) => ("-", facts(before)),
            (_, Some(before), Some(after)) => ("M", changed(&d.changes, before, after, zone)),
            _ => ("?", String::new()),
        };
        out.push_str(&format!("{mark} {}{slash}  {detail}\n", d.path));
    }
    if diffs.is_empty() {
        out.push_str("no differences\n");
    } else {
        out.push_str(&format!(
            "{} added, {} removed, {} changed\n",
            plural(counts.added, "path", "paths"),
            counts.removed,
            counts.changed
        ));
    }
    out
}

fn facts(f: &Facts) -> String {
    match f.kind {
        Kind::Dir => "(dir)".into(),
        Kind::Symlink => "(symlink)".into(),
        Kind::File => format!("({})", human_bytes(f.size)),
    }
}

fn changed(what: &[What], before: &Facts, after: &Facts, zone: &Zone) -> String {
    let local = |t: &str| super::history::local_time(t, zone);
    let owner = |f: &Facts| match (f.uid, f.gid) {
        (Some(u), Some(g)) => format!("{u}:{g}"),
        _ => "?".into(),
    };
    what.iter()
        .map(|w| match w {
            What::Kind => format!("kind {} -> {}", before.kind.as_str(), after.kind.as_str()),
            What::Content if before.size != after.size => format!(
                "content ({} -> {})",
                human_bytes(before.size),
                human_bytes(after.size)
            ),
            What::Content => format!("content ({}, same size)", human_bytes(after.size)),
            What::Mode => format!("mode {} -> {}", before.mode, after.mode),
            What::Owner => format!("owner {} -> {}", owner(before), owner(after)),
            What::Mtime => {
                let (b, a) = (local(&before.mtime), local(&after.mtime));
                if a == b {
                    // Within one second: the fractions tell them apart.
                    format!("mtime {} -> {}", before.mtime, after.mtime)
                } else {
                    format!("mtime {b} -> {a}")
                }
            }
            other => other.as_str().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
