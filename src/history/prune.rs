//! `strata prune`: apply a job's retention policy to its increments.
//!
//! Takes a [`History`] and the job's [`Retention`]; [`plan`] decides which
//! increments stay (and which rule keeps each) without touching anything,
//! [`execute`] removes the others. The dry run is the plan, printed.
//!
//! Removing an increment **merges it forward** into the next remaining one,
//! so that the tracked state at every remaining increment is unchanged (the
//! state is the replay of the ops, see [`crate::history`]). With `p` the
//! increment before the removed `r` and `q` the one after:
//! - `q`'s own records stay, relabelled `new` or `changed` by whether the
//!   path existed at `p`; a deletion in `q` of a path that did not exist at
//!   `p` (it came and went between them) is dropped, its file evicted;
//! - a version `r` brought that `q` does not touch is still live at `q`: its
//!   `track/` file is moved (renamed) into `q/track/` and recorded there;
//! - a path `r` deleted that `q` does not touch and that existed at `p` is
//!   recorded as deleted in `q`, its last version moved into `q/deleted/`,
//!   so that replay still removes it;
//! - everything else `r` held (versions replaced or deleted by `q`) was only
//!   visible at `r`, and goes with it.
//!
//! Increments are removed newest first, so every merge goes straight into an
//! increment that stays or is removed later, and earlier states are never
//! touched.
//!
//! Crash safety, per removed increment: (1) rename `backup_X/` to
//! `.strata/pruning/backup_X/`, so it is no longer a visible increment;
//! (2) move the next increment's evicted files into it, and its live files
//! into the next increment; (3) `syncfs`, then
//! rewrite the next increment's metadata atomically; (4) delete the pruning
//! folder. A crash leaves at most one folder in `.strata/pruning/`; the next
//! prune (or the next run) finishes it first. The merge is idempotent: after
//! step 3 the next increment's metadata already records the moved paths, so
//! replanning moves nothing; before step 3 a move whose source is gone and
//! whose destination exists was done already. Until then restore and history
//! refuse, naming the folder, rather than give a wrong answer.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::PathBuf;

use chrono::TimeZone;
use serde::Serialize;

use super::retention::{self, BadDuration, Reason};
use super::{History, HistoryError};
use crate::diff::Op;
use crate::job::Retention;
use crate::scan::RelPath;
use crate::store::meta::{FileRecord, format_time};
use crate::store::{IoContext, Layout, StoreError, sync_dir, sync_filesystem};

/// Why a prune stopped.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The history could not be read.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// A file could not be moved, or metadata written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The policy does not parse.
    #[error(transparent)]
    Policy(#[from] BadDuration),
    /// An increment's metadata cannot be read: merging around it could lose
    /// versions, so nothing is removed.
    #[error("{0}; nothing was pruned (fix or move the increment away first)")]
    Unreadable(StoreError),
    /// An increment in `.strata/pruning/` has no later increment to merge
    /// into (someone removed the newest increment by hand).
    #[error(
        "{}: no later increment to merge it into; move it back next to the \
         other increments to keep it",
        path.display()
    )]
    NothingAfter {
        /// The folder.
        path: PathBuf,
    },
}

/// An increment the policy keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// Its name.
    pub increment: String,
    /// Its start (RFC 3339 UTC, from the name).
    pub time: String,
    /// The rules that keep it.
    pub reasons: Vec<Reason>,
}

/// What [`plan`] decided; touches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    /// Why nothing is removed, when the policy says nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Increments an interrupted prune left half-merged, to finish first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finish: Vec<String>,
    /// The increments that stay, oldest first.
    pub kept: Vec<Kept>,
    /// The increments to remove, oldest first.
    pub remove: Vec<String>,
}

/// One removed increment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// Its name.
    pub increment: String,
    /// The increment it was merged into.
    pub into: String,
    /// Versions (and last versions of deletions) moved into `into`.
    pub moved: u64,
    /// Versions that were visible only at this increment and went with it.
    pub dropped: u64,
}

/// What a prune did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The decisions.
    #[serde(flatten)]
    pub plan: PrunePlan,
    /// Each removal, in the order done (newest first).
    pub removed: Vec<Removed>,
}

/// Decide which increments stay. `tz` is the zone of the calendar buckets
/// (the command passes `chrono::Local`).
pub fn plan<Tz: TimeZone>(
    history: &History,
    policy: Option<&Retention>,
    tz: &Tz,
) -> Result<PrunePlan, BadDuration> {
    let mut out = PrunePlan {
        finish: history
            .increments
            .iter()
            .filter(|i| i.pending_prune)
            .map(|i| i.name.clone())
            .collect(),
        ..PrunePlan::default()
    };
    let visible: Vec<&super::Increment> = history
        .increments
        .iter()
        .filter(|i| !i.pending_prune)
        .collect();
    let reasons = match policy {
        None => {
            out.note = Some("the job has no retention block: nothing is removed".into());
            None
        }
        Some(p) if !retention::has_rules(p) => {
            out.note = Some("the retention block has no rule: nothing is removed".into());
            None
        }
        Some(p) => {
            let times: Vec<_> = visible.iter().map(|i| i.time).collect();
            Some(retention::select(p, &retention::local_times(&times, tz))?)
        }
    };
    for (k, inc) in visible.iter().enumerate() {
        let why = reasons.as_ref().map(|r| r[k].clone());
        match why {
            Some(why) if why.is_empty() => out.remove.push(inc.name.clone()),
            why => out.kept.push(Kept {
                increment: inc.name.clone(),
                time: format_time(inc.time),
                reasons: why.unwrap_or_default(),
            }),
        }
    }
    Ok(out)
}

/// Carry out `plan` on `history` (read from `layout`), newest removal
/// first. With `dry_run`, only the in-memory history changes, so the report
/// still says what each merge would move. Call with the job's lock held.
pub fn execute(
    layout: &Layout,
    mut history: History,
    plan: PrunePlan,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let mut report = PruneReport {
        dry_run,
        plan,
        removed: Vec::new(),
    };
    let order: Vec<String> = report
        .plan
        .finish
        .iter()
        .rev()
        .chain(report.plan.remove.iter().rev())
        .cloned()
        .collect();
    for name in order {
        let r = history
            .find(&name)
            .expect("the plan names increments of this history");
        let merge = plan_merge(&history, r).ok_or_else(|| PruneError::NothingAfter {
            path: history.increments[r].dir.clone(),
        })?;
        if !dry_run {
            apply_merge(layout, &history, r, &merge)?;
        }
        report.removed.push(Removed {
            increment: name,
            into: history.increments[r + 1].name.clone(),
            moved: merge.moves.len() as u64,
            dropped: merge.dropped,
        });
        history.increments[r + 1].meta.files = merge.files;
        history.increments.remove(r);
    }
    Ok(report)
}

/// Read the history at `layout`, plan with `policy` and execute: the whole
/// `strata prune`. Refuses when an increment is unreadable. Call with the
/// job's lock held.
pub fn prune<Tz: TimeZone>(
    layout: &Layout,
    policy: Option<&Retention>,
    tz: &Tz,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let loaded = History::load_all(layout)?;
    if let Some(e) = loaded.broken.into_iter().next() {
        return Err(PruneError::Unreadable(e));
    }
    let decided = plan(&loaded.history, policy, tz)?;
    execute(layout, loaded.history, decided, dry_run)
}

/// Removing one increment: what moves where, and the next increment's new
/// record list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// (from, to): paths relative to the removed and the next increment's
    /// folders (`track/x` -> `track/x`, `deleted/x` -> `deleted/x`).
    pub moves: Vec<(PathBuf, PathBuf)>,
    /// Paths relative to the next increment's folder (`deleted/x`) whose
    /// records the merge drops: moved into the removed folder's `evicted/`,
    /// so they go with it.
    pub evict: Vec<PathBuf>,
    /// The next increment's records after the merge, sorted by path.
    pub files: Vec<FileRecord>,
    /// Records of the removed increment that are not carried forward.
    pub dropped: u64,
}

/// Plan removing increment `r` by merging it into `r + 1` (`None` if `r`
/// is the newest). Pure.
pub fn plan_merge(history: &History, r: usize) -> Option<Merge> {
    let removed = history.increments.get(r)?;
    let next = history.increments.get(r + 1)?;
    let before: HashSet<RelPath> = history.state_at(r.checked_sub(1)).into_keys().collect();
    let relabel = |mut record: FileRecord, path: &RelPath| {
        if record.op != Op::Deleted {
            record.op = if before.contains(path) {
                Op::Changed
            } else {
                Op::New
            };
        }
        record
    };
    let mut files: BTreeMap<RelPath, FileRecord> = BTreeMap::new();
    let mut evict = Vec::new();
    let mut dropped = 0;
    let mut touched: HashSet<RelPath> = HashSet::new();
    for record in &next.meta.files {
        let path = record.rel_path();
        touched.insert(path.clone());
        if record.op == Op::Deleted && !before.contains(&path) {
            // Replay of this deletion removes nothing any more.
            evict.push(PathBuf::from("deleted").join(path.as_path()));
            dropped += 1;
            continue;
        }
        files.insert(path.clone(), relabel(record.clone(), &path));
    }
    let mut moves = Vec::new();
    for record in &removed.meta.files {
        let path = record.rel_path();
        let carried =
            !touched.contains(&path) && (record.op != Op::Deleted || before.contains(&path));
        if !carried {
            dropped += 1;
            continue;
        }
        let part = if record.op == Op::Deleted {
            "deleted"
        } else {
            "track"
        };
        let rel = PathBuf::from(part).join(path.as_path());
        moves.push((rel.clone(), rel));
        files.insert(path.clone(), relabel(record.clone(), &path));
    }
    Some(Merge {
        moves,
        evict,
        files: files.into_values().collect(),
        dropped,
    })
}

/// Do one merge on disk, in the crash-safe order described at the top.
fn apply_merge(
    layout: &Layout,
    history: &History,
    r: usize,
    merge: &Merge,
) -> Result<(), StoreError> {
    let removed = &history.increments[r];
    let next = &history.increments[r + 1];
    // 1. Out of the visible sequence.
    let from_dir = if removed.pending_prune {
        removed.dir.clone()
    } else {
        let pruning = layout.pruning();
        fs::create_dir_all(&pruning).at(&pruning)?;
        let to = pruning.join(&removed.name);
        fs::rename(&removed.dir, &to).at(&to)?;
        sync_dir(&pruning)?;
        sync_dir(layout.root())?;
        to
    };
    // 2. Evicted files out of the next increment first, with the folders
    //    they leave empty: a deletion of `x/y` evicted there can leave a
    //    folder `deleted/x/` where the deletion of the file `x` moves in.
    for rel in &merge.evict {
        let (from, to) = (next.dir.join(rel), from_dir.join("evicted").join(rel));
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&from),
        }
        let mut dir = from.parent();
        while let Some(d) = dir.filter(|d| *d != next.dir) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    //    Then the live versions into it.
    for (from, to) in &merge.moves {
        let (from, to) = (from_dir.join(from), next.dir.join(to));
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        match fs::rename(&from, &to) {
            Ok(()) => {}
            // Moved by an earlier, interrupted prune.
            Err(e) if e.kind() == io::ErrorKind::NotFound && to.symlink_metadata().is_ok() => {}
            Err(e) => return Err(e).at(&from),
        }
    }
    // 3. The moves are durable before the metadata that names them.
    sync_filesystem(layout.root())?;
    let mut meta = next.meta.clone();
    meta.files = merge.files.clone();
    meta.save(&next.dir)?;
    // 4. What is left was visible only at the removed increment.
    fs::remove_dir_all(&from_dir).at(&from_dir)?;
    sync_dir(&layout.pruning())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{describe, increment, record};
    use super::*;
    use crate::history::Increment;
    use proptest::prelude::*;

    fn s(x: &str) -> String {
        x.to_string()
    }

    /// The state at each increment, by name, as (path, size) pairs: the
    /// size tags the version (where its bytes are is checked separately).
    fn states(h: &History) -> BTreeMap<String, Vec<(String, u64)>> {
        (0..h.increments.len())
            .map(|k| {
                let state = describe(h, &h.state_at(Some(k)));
                let state = state.into_iter().map(|(p, _, size)| (p, size)).collect();
                (h.increments[k].name.clone(), state)
            })
            .collect()
    }

    /// Remove `names` in memory, newest first, as execute does.
    fn remove(mut h: History, names: &[&str]) -> History {
        let mut order: Vec<usize> = names.iter().map(|n| h.find(n).unwrap()).collect();
        order.sort();
        for r in order.into_iter().rev() {
            let merge = plan_merge(&h, r).unwrap();
            h.increments[r + 1].meta.files = merge.files;
            h.increments.remove(r);
        }
        h
    }

    fn ops(inc: &Increment) -> Vec<(String, Op, u64)> {
        inc.meta
            .files
            .iter()
            .map(|r| (r.path.clone(), r.op, r.size))
            .collect()
    }

    #[test]
    fn merge_forward_carries_live_versions_and_deletions() {
        let h = History::new(vec![
            increment("20260101_000000", vec![record("keep", Op::New, 1)]),
            increment(
                "20260102_000000",
                vec![
                    record("a", Op::New, 2),        // live at the next: moves
                    record("b", Op::New, 3),        // replaced by the next: dropped
                    record("keep", Op::Deleted, 1), // deletion carried
                    record("c", Op::New, 4),        // deleted by the next: dropped
                ],
            ),
            increment(
                "20260103_000000",
                vec![record("b", Op::Changed, 5), record("c", Op::Deleted, 4)],
            ),
        ]);
        let before = states(&h);
        let merge = plan_merge(&h, 1).unwrap();
        assert_eq!(
            merge.moves,
            [
                (PathBuf::from("track/a"), PathBuf::from("track/a")),
                (PathBuf::from("deleted/keep"), PathBuf::from("deleted/keep")),
            ]
        );
        // c came and went between the kept points: its deletion goes too.
        assert_eq!(merge.evict, [PathBuf::from("deleted/c")]);
        assert_eq!(merge.dropped, 3);
        let after = remove(h, &["backup_20260102_000000"]);
        assert_eq!(
            ops(&after.increments[1]),
            [
                (s("a"), Op::New, 2),
                (s("b"), Op::New, 5),
                (s("keep"), Op::Deleted, 1),
            ]
        );
        for (name, state) in states(&after) {
            assert_eq!(before[&name], state, "{name}");
        }
    }

    #[test]
    fn a_deletion_of_a_path_the_previous_point_lacks_is_dropped() {
        let h = History::new(vec![
            increment("20260101_000000", vec![record("x", Op::New, 1)]),
            increment("20260102_000000", vec![record("y", Op::New, 2)]),
            increment("20260103_000000", vec![record("y", Op::Deleted, 2)]),
            increment("20260104_000000", vec![record("x", Op::Changed, 3)]),
        ]);
        let before = states(&h);
        let after = remove(h, &["backup_20260102_000000", "backup_20260103_000000"]);
        assert_eq!(after.increments.len(), 2);
        // y lived only between the kept points: nothing of it remains.
        assert_eq!(ops(&after.increments[1]), [(s("x"), Op::Changed, 3)]);
        for (name, state) in states(&after) {
            assert_eq!(before[&name], state, "{name}");
        }
    }

    #[test]
    fn plan_keeps_everything_without_a_policy() {
        let h = History::new(vec![
            increment("20260101_000000", vec![record("x", Op::New, 1)]),
            increment("20260102_000000", vec![record("x", Op::Changed, 2)]),
        ]);
        let p = plan(&h, None, &chrono::Utc).unwrap();
        assert!(p.remove.is_empty());
        assert_eq!(p.kept.len(), 2);
        assert!(p.note.unwrap().contains("no retention block"));
        let empty = plan(&h, Some(&Retention::default()), &chrono::Utc).unwrap();
        assert!(empty.remove.is_empty());
        let last = Retention {
            keep_last: Some(1),
            ..Default::default()
        };
        let p = plan(&h, Some(&last), &chrono::Utc).unwrap();
        assert_eq!(p.remove, ["backup_20260101_000000"]);
        assert_eq!(p.kept[0].reasons, [Reason::Newest, Reason::Last]);
    }

    /// Write increments to disk at `root`: each record's file holds
    /// `content`, its size is the content's length.
    /// An increment's stamp and its (path, op, content) records.
    type OnDisk<'a> = (&'a str, &'a [(&'a str, Op, &'a str)]);

    fn on_disk(root: &std::path::Path, incs: &[OnDisk<'_>]) -> Layout {
        let layout = Layout::new(root);
        for (stamp, files) in incs {
            let mut records = Vec::new();
            for (path, op, content) in files.iter() {
                let r = record(path, *op, content.len() as u64);
                let inc = increment(stamp, vec![]);
                let file = layout
                    .increment(&inc.name)
                    .join(inc.file_of(&r).strip_prefix(&inc.dir).unwrap());
                fs::create_dir_all(file.parent().unwrap()).unwrap();
                fs::write(&file, content).unwrap();
                records.push(r);
            }
            let mut inc = increment(stamp, records);
            inc.dir = layout.increment(&inc.name);
            inc.meta.save(&inc.dir).unwrap();
        }
        layout
    }

    /// The state at each increment as path -> content, read from disk.
    fn trees(layout: &Layout) -> BTreeMap<String, BTreeMap<String, String>> {
        let h = History::load(layout).unwrap();
        (0..h.increments.len())
            .map(|k| {
                let tree = h
                    .state_at(Some(k))
                    .into_iter()
                    .map(|(p, v)| (p.to_string(), fs::read_to_string(h.file_of(v)).unwrap()))
                    .collect();
                (h.increments[k].name.clone(), tree)
            })
            .collect()
    }

    /// Every file below `dir`, relative, with its content.
    fn files_below(dir: &std::path::Path) -> BTreeMap<String, String> {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                (
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect()
    }

    fn remove_on_disk(layout: &Layout, names: &[&str]) -> PruneReport {
        let history = History::load_all(layout).unwrap().history;
        let mut p = plan(&history, None, &chrono::Utc).unwrap();
        p.kept.retain(|k| !names.contains(&k.increment.as_str()));
        p.remove = names.iter().map(|n| n.to_string()).collect();
        execute(layout, history, p, false).unwrap()
    }

    #[test]
    fn a_file_replaced_by_a_directory_merges_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let layout = on_disk(
            dir.path(),
            &[
                ("20260101_000000", &[("x", Op::New, "x1")]),
                (
                    "20260102_000000",
                    &[("x", Op::Deleted, "x1"), ("x/y", Op::New, "y")],
                ),
                (
                    "20260103_000000",
                    &[("x/y", Op::Deleted, "y"), ("z", Op::New, "z")],
                ),
            ],
        );
        let before = trees(&layout);
        let report = remove_on_disk(&layout, &["backup_20260102_000000"]);
        assert_eq!(report.removed[0].moved, 1);
        let after = trees(&layout);
        assert_eq!(after.len(), 2);
        for (name, tree) in &after {
            assert_eq!(&before[name], tree, "{name}");
        }
        // The deletion of x moved in where the evicted deletion of x/y was.
        let kept = layout.increment("backup_20260103_000000");
        assert_eq!(
            files_below(&kept)
                .into_iter()
                .filter(|(p, _)| !p.ends_with(".json"))
                .collect::<Vec<_>>(),
            [(s("deleted/x"), s("x1")), (s("track/z"), s("z"))]
        );
        assert!(fs::read_dir(layout.pruning()).unwrap().next().is_none());
    }

    #[test]
    fn a_crash_before_the_pruning_folder_is_deleted_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let layout = on_disk(
            dir.path(),
            &[
                (
                    "20260101_000000",
                    &[("a", Op::New, "a1"), ("b", Op::New, "b1")],
                ),
                (
                    "20260102_000000",
                    &[
                        ("a", Op::Changed, "a2"),
                        ("b", Op::Deleted, "b1"),
                        ("c", Op::New, "c2"),
                    ],
                ),
                ("20260103_000000", &[("c", Op::Changed, "c3")]),
            ],
        );
        let before = trees(&layout);
        let removed = layout.increment("backup_20260102_000000");
        let copy = dir.path().join("copy");
        fs::create_dir(&copy).unwrap();
        for (rel, content) in files_below(&removed) {
            fs::create_dir_all(copy.join(&rel).parent().unwrap()).unwrap();
            fs::write(copy.join(&rel), content).unwrap();
        }
        remove_on_disk(&layout, &["backup_20260102_000000"]);
        let done = files_below(&layout.increment("backup_20260103_000000"));
        // Put back what step 4 deletes: the folder without the moved files.
        let pending = layout.pruning().join("backup_20260102_000000");
        fs::rename(&copy, &pending).unwrap();
        fs::remove_file(pending.join("track/a")).unwrap();
        fs::remove_file(pending.join("deleted/b")).unwrap();
        assert!(matches!(
            History::load(&layout),
            Err(HistoryError::PendingPrune { .. })
        ));
        let report = prune(&layout, None, &chrono::Utc, false).unwrap();
        assert_eq!(report.plan.finish, ["backup_20260102_000000"]);
        assert_eq!(
            files_below(&layout.increment("backup_20260103_000000")),
            done
        );
        assert!(!pending.exists());
        let after = trees(&layout);
        for (name, tree) in &after {
            assert_eq!(&before[name], tree, "{name}");
        }
    }

    /// A random history: each increment changes, adds or deletes a few of
    /// six paths, consistently with the state before it.
    fn histories() -> impl Strategy<Value = (History, Vec<bool>)> {
        (2usize..9)
            .prop_flat_map(|n| {
                (
                    proptest::collection::vec(proptest::collection::vec(0u8..6, 1..5), n),
                    proptest::collection::vec(any::<bool>(), n),
                )
            })
            .prop_map(|(steps, keep)| {
                let mut present: HashSet<u8> = HashSet::new();
                let mut size = 0;
                let mut incs = Vec::new();
                for (k, touched) in steps.into_iter().enumerate() {
                    // One op per path and run, decided by the state before.
                    let touched: std::collections::BTreeSet<u8> = touched.into_iter().collect();
                    let mut files = Vec::new();
                    for p in touched {
                        size += 1;
                        let op = match (present.contains(&p), size % 3) {
                            (false, _) => Op::New,
                            (true, 0) => Op::Deleted,
                            (true, _) => Op::Changed,
                        };
                        if op == Op::Deleted {
                            present.remove(&p);
                        } else {
                            present.insert(p);
                        }
                        files.push(record(&format!("p{p}"), op, size));
                    }
                    incs.push(increment(&format!("20260101_0000{k:02}"), files));
                }
                (History::new(incs), keep)
            })
    }

    proptest! {
        #[test]
        fn every_kept_point_replays_the_same(case in histories()) {
            let (h, keep) = case;
            let before = states(&h);
            let last = h.increments.len() - 1;
            let removed: Vec<String> = h
                .increments
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != last && !keep[*k])
                .map(|(_, i)| i.name.clone())
                .collect();
            // Where each version's bytes are: (increment, track|deleted/path).
            let mut files: HashSet<(String, PathBuf)> = HashSet::new();
            for inc in &h.increments {
                for r in &inc.meta.files {
                    let part = if r.op == Op::Deleted { "deleted" } else { "track" };
                    files.insert((inc.name.clone(), PathBuf::from(part).join(&r.path)));
                }
            }
            let mut h = h;
            let mut order: Vec<usize> = removed.iter().map(|n| h.find(n).unwrap()).collect();
            order.sort();
            for r in order.into_iter().rev() {
                let merge = plan_merge(&h, r).unwrap();
                let (from, into) = (h.increments[r].name.clone(), h.increments[r + 1].name.clone());
                for (a, b) in &merge.moves {
                    prop_assert!(files.remove(&(from.clone(), a.clone())), "{} {:?}", from, a);
                    files.insert((into.clone(), b.clone()));
                }
                for e in &merge.evict {
                    prop_assert!(files.remove(&(into.clone(), e.clone())), "{} {:?}", into, e);
                }
                files.retain(|(name, _)| *name != from);
                h.increments[r + 1].meta.files = merge.files;
                h.increments.remove(r);
            }
            for (name, state) in states(&h) {
                prop_assert_eq!(&before[&name], &state, "{}", name);
            }
            // Every recorded file is where the record says, and no file is
            // left unrecorded.
            let mut recorded = HashSet::new();
            for inc in &h.increments {
                for r in &inc.meta.files {
                    let part = if r.op == Op::Deleted { "deleted" } else { "track" };
                    recorded.insert((inc.name.clone(), PathBuf::from(part).join(&r.path)));
                }
            }
            prop_assert_eq!(files, recorded);
        }
    }
}
