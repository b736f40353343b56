//! `strata prune`: apply a job's retention policy to its increments.
//!
//! Takes a [`History`] and the job's [`Retention`]; [`plan`] decides which
//! increments stay (and which rule keeps each) without touching anything,
//! [`plan_merges`] works out what moves where, [`execute`] does it. The dry
//! run is the plan, printed.
//!
//! Removing increments **merges them forward**: each run of consecutive
//! removed increments goes into the next kept one, `q`, so that the tracked
//! state at every kept increment is unchanged (the state is the replay of
//! the ops, see [`crate::history`]). The removed increments are folded into
//! `q` newest first; folding `r` (with `p` the increment before it):
//! - `q`'s record of a path `r` also records stays, relabelled `new` or
//!   `changed` by whether the path existed at `p`; a deletion of a path that
//!   did not exist at `p` (it came and went between them) is dropped, its
//!   file evicted; `r`'s record of that path was only visible at `r`;
//! - a version `r` brought that `q` does not touch is still live at `q`: its
//!   `track/` file is moved (renamed, never copied) into `q/track/` and
//!   recorded there;
//! - a path `r` deleted that `q` does not touch and that existed at `p` is
//!   recorded as deleted in `q`, its last version moved into `q/deleted/`,
//!   so that replay still removes it; a deletion of a path absent at `p` is
//!   dropped.
//!
//! Only the paths `r` records need a look: for any other path, the state at
//! `p` and at `r` agree. So a merge costs the records of the removed
//! increments, and `q`'s metadata is written once, whatever the number of
//! increments folded into it.
//!
//! Crash safety, per merge: (1) the whole merge (moves, evictions, `q`'s new
//! metadata) is written atomically to the journal `.strata/pruning/merge.json`;
//! (2) each removed `backup_X/` is renamed to `.strata/pruning/backup_X/`, out
//! of the visible sequence; (3) evicted files leave `q`, then the live files
//! move in; (4) `syncfs`, then `q`'s metadata is rewritten atomically;
//! (5) the pruning folders are deleted, and the journal last. A crash
//! anywhere leaves the journal, and the next prune (or the next run) replays
//! it before anything else; every step of the replay skips what is already
//! done. Until then restore and history refuse, naming the journal, rather
//! than give a wrong answer.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::retention::{self, BadDuration, Reason};
use super::{History, HistoryError, Presence};
use crate::diff::Op;
use crate::job::Retention;
use crate::scan::RelPath;
use crate::store::meta::{FileRecord, IncrementMeta, format_time};
use crate::store::{IoContext, Layout, StoreError, sync_dir, sync_filesystem, write_atomic};
use crate::tz::Zone;

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
    /// `.strata/pruning/` holds increments but no journal says what to do
    /// with them (strata never leaves that; someone moved things by hand).
    #[error(
        "{}: an increment in the pruning folder without a journal; move it \
         back next to the other increments to keep it",
        path.display()
    )]
    Stray {
        /// The folder.
        path: PathBuf,
    },
}

/// The journal of the merge in progress.
pub fn journal_path(layout: &Layout) -> PathBuf {
    layout.pruning().join("merge.json")
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
    /// Its versions (and last versions of deletions) moved into `into`.
    pub moved: u64,
    /// Its records that were visible only until the next kept increment.
    pub dropped: u64,
}

/// What a prune did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Increments an interrupted prune was removing, finished first (a dry
    /// run only names them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<String>,
    /// The decisions.
    #[serde(flatten)]
    pub plan: PrunePlan,
    /// Each removal, oldest first.
    pub removed: Vec<Removed>,
}

/// Decide which increments stay. `zone` is the zone of the calendar buckets
/// and of `keep_within`'s calendar arithmetic (the command passes the
/// machine's).
pub fn plan(
    history: &History,
    policy: Option<&Retention>,
    zone: &Zone,
) -> Result<PrunePlan, BadDuration> {
    let mut out = PrunePlan::default();
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
            Some(retention::select(p, &times, zone)?)
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

/// Read the history at `layout`, finish an interrupted prune, plan with
/// `policy` and execute: the whole `strata prune`. Refuses when an
/// increment is unreadable. Call with the job's lock held.
pub fn prune(
    layout: &Layout,
    policy: Option<&Retention>,
    zone: &Zone,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let finished = match read_journal(layout)? {
        Some(merge) => {
            if !dry_run {
                finish_merge(layout, &merge)?;
            }
            merge.removed
        }
        None => Vec::new(),
    };
    let loaded = History::load_all(layout)?;
    if let Some(e) = loaded.broken.into_iter().next() {
        return Err(PruneError::Unreadable(e));
    }
    if !dry_run && let Some(stray) = loaded.history.increments.iter().find(|i| i.pending_prune) {
        return Err(PruneError::Stray {
            path: stray.dir.clone(),
        });
    }
    let decided = plan(&loaded.history, policy, zone)?;
    let mut report = execute(layout, &loaded.history, decided, dry_run)?;
    report.finished = finished;
    Ok(report)
}

/// Carry out `plan` on `history` (read from `layout`). With `dry_run`, only
/// work out what each merge would move. Call with the job's lock held.
pub fn execute(
    layout: &Layout,
    history: &History,
    plan: PrunePlan,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let merges = plan_merges(history, &plan.remove);
    let mut removed = Vec::new();
    for merge in merges.iter().rev() {
        if !dry_run {
            apply_merge(layout, merge)?;
        }
    }
    for merge in &merges {
        for name in &merge.removed {
            let moved = merge.moves.iter().filter(|m| m.from == *name).count() as u64;
            let records = history
                .find(name)
                .map_or(0, |i| history.increments[i].meta.files.len() as u64);
            removed.push(Removed {
                increment: name.clone(),
                into: merge.into.clone(),
                moved,
                dropped: records - moved,
            });
        }
    }
    Ok(PruneReport {
        dry_run,
        finished: Vec::new(),
        plan,
        removed,
    })
}

/// A file that moves from a removed increment into the kept one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The removed increment it comes from.
    pub from: String,
    /// Its record (the op says `track/` or `deleted/`; the same path on
    /// both sides).
    pub record: FileRecord,
}

/// Removing a run of consecutive increments into the next kept one; also
/// the journal's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Merge {
    /// The kept increment they merge into.
    pub into: String,
    /// The removed increments, oldest first.
    pub removed: Vec<String>,
    /// Files that move into `into`.
    pub moves: Vec<Move>,
    /// `into`'s own deletions whose records the merge drops; their files
    /// are evicted into the pruning folder and go with it.
    pub evict: Vec<FileRecord>,
    /// `into`'s metadata after the merge.
    pub meta: IncrementMeta,
}

/// Where a record's file lives inside its increment folder:
/// `track/<path>` or `deleted/<path>`.
fn part_of(record: &FileRecord) -> PathBuf {
    let part = if record.op == Op::Deleted {
        "deleted"
    } else {
        "track"
    };
    Path::new(part).join(record.rel_path().as_path())
}

/// Plan removing the increments named `remove`: one [`Merge`] per run of
/// consecutive removed increments, oldest first. A run with no increment
/// after it (the newest, which [`plan`] never removes) is left alone. Pure.
pub fn plan_merges(history: &History, remove: &[String]) -> Vec<Merge> {
    let remove: HashSet<&str> = remove.iter().map(String::as_str).collect();
    let presence = history.presence();
    let mut merges = Vec::new();
    let mut run = Vec::new();
    for (i, inc) in history.increments.iter().enumerate() {
        if remove.contains(inc.name.as_str()) {
            run.push(i);
        } else if !run.is_empty() {
            merges.push(merge_run(history, &run, i, &presence));
            run.clear();
        }
    }
    merges
}

/// Where a record of the kept increment's new list comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Its own record: the file is already in place.
    Own,
    /// Carried from this removed increment (index in the history).
    Removed(usize),
}

/// Fold the removed increments `run` into increment `q`, newest first.
fn merge_run(history: &History, run: &[usize], q: usize, presence: &Presence) -> Merge {
    let kept = &history.increments[q];
    let mut files: BTreeMap<RelPath, (FileRecord, Origin)> = kept
        .meta
        .files
        .iter()
        .map(|r| (r.rel_path(), (r.clone(), Origin::Own)))
        .collect();
    let mut evict = Vec::new();
    for &r in run.iter().rev() {
        let existed = |path: &RelPath| presence.exists_at(path, r.checked_sub(1));
        for record in &history.increments[r].meta.files {
            let path = record.rel_path();
            if let Some((later, origin)) = files.get_mut(&path) {
                // A later record wins; only its label may change.
                if later.op != Op::Deleted {
                    later.op = if existed(&path) { Op::Changed } else { Op::New };
                } else if !existed(&path) {
                    if *origin == Origin::Own {
                        evict.push(later.clone());
                    }
                    files.remove(&path);
                }
                continue;
            }
            let mut carried = record.clone();
            match record.op {
                Op::Deleted if !existed(&path) => continue,
                Op::Deleted => {}
                Op::New | Op::Changed => {
                    carried.op = if existed(&path) { Op::Changed } else { Op::New };
                }
            }
            files.insert(path, (carried, Origin::Removed(r)));
        }
    }
    let mut moves = Vec::new();
    let mut records = Vec::with_capacity(files.len());
    for (record, origin) in files.into_values() {
        if let Origin::Removed(r) = origin {
            moves.push(Move {
                from: history.increments[r].name.clone(),
                record: record.clone(),
            });
        }
        records.push(record);
    }
    let mut meta = kept.meta.clone();
    meta.files = records;
    Merge {
        into: kept.name.clone(),
        removed: run
            .iter()
            .map(|&r| history.increments[r].name.clone())
            .collect(),
        moves,
        evict,
        meta,
    }
}

/// Do one merge on disk: the journal first, then the steps it describes.
fn apply_merge(layout: &Layout, merge: &Merge) -> Result<(), StoreError> {
    let pruning = layout.pruning();
    fs::create_dir_all(&pruning).at(&pruning)?;
    let mut text = serde_json::to_vec(merge).expect("a merge serializes");
    text.push(b'\n');
    write_atomic(&journal_path(layout), &text)?;
    finish_merge(layout, merge)
}

/// The journal of an interrupted merge, if there is one.
fn read_journal(layout: &Layout) -> Result<Option<Merge>, StoreError> {
    let path = journal_path(layout);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at(&path),
    }
}

/// Rename `from` to `to`, creating `to`'s folder.
fn move_file(from: &Path, to: &Path) -> Result<(), StoreError> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).at(parent)?;
    }
    fs::rename(from, to).at(from)
}

/// Steps 2 to 5 of a journaled merge; each skips what is already done, so
/// a replay after a crash finishes it.
fn finish_merge(layout: &Layout, merge: &Merge) -> Result<(), StoreError> {
    let mut unlimited = u64::MAX;
    finish_merge_until(layout, merge, &mut unlimited)
}

/// [`finish_merge`], stopping as if the process died once `budget` file
/// system steps are spent (tests crash it at every step).
fn finish_merge_until(layout: &Layout, merge: &Merge, budget: &mut u64) -> Result<(), StoreError> {
    let mut crashed = || {
        let out = *budget == 0;
        *budget = budget.saturating_sub(1);
        out
    };
    let pruning = layout.pruning();
    let into = layout.increment(&merge.into);
    // 2. Out of the visible sequence.
    for name in &merge.removed {
        let visible = layout.increment(name);
        if visible.exists() {
            if crashed() {
                return Ok(());
            }
            fs::rename(&visible, pruning.join(name)).at(&visible)?;
        }
    }
    sync_dir(layout.root())?;
    sync_dir(&pruning)?;
    // 3. Evicted files out of the kept increment first, with the folders
    //    they leave empty: the deletion of `x/y` evicted from there can
    //    leave a folder `deleted/x/` where the deletion of a file `x` moves
    //    in. A path that a move already filled (its source is gone) holds
    //    the moved file, not the evicted one.
    let source = |m: &Move| pruning.join(&m.from).join(part_of(&m.record));
    let filled: HashSet<PathBuf> = merge
        .moves
        .iter()
        .filter(|m| source(m).symlink_metadata().is_err())
        .map(|m| part_of(&m.record))
        .collect();
    for record in &merge.evict {
        let part = part_of(record);
        let from = into.join(&part);
        if filled.contains(&part) || from.symlink_metadata().is_err() {
            continue;
        }
        if crashed() {
            return Ok(());
        }
        move_file(&from, &pruning.join("evicted").join(&part))?;
        let mut dir = from.parent();
        while let Some(d) = dir.filter(|d| *d != into) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    //    Then the live versions in.
    for m in &merge.moves {
        let (from, to) = (source(m), into.join(part_of(&m.record)));
        if from.symlink_metadata().is_err() {
            if to.symlink_metadata().is_err() {
                return Err(io::Error::from(io::ErrorKind::NotFound)).at(&from);
            }
            continue;
        }
        if crashed() {
            return Ok(());
        }
        move_file(&from, &to)?;
    }
    // 4. The moves are durable before the metadata that names them.
    sync_filesystem(layout.root())?;
    if crashed() {
        return Ok(());
    }
    merge.meta.save(&into)?;
    // 5. What is left was visible only at the removed increments.
    for name in &merge.removed {
        let dir = pruning.join(name);
        if dir.exists() {
            if crashed() {
                return Ok(());
            }
            fs::remove_dir_all(&dir).at(&dir)?;
        }
    }
    let evicted = pruning.join("evicted");
    if evicted.exists() {
        fs::remove_dir_all(&evicted).at(&evicted)?;
    }
    sync_dir(&pruning)?;
    if crashed() {
        return Ok(());
    }
    let journal = journal_path(layout);
    fs::remove_file(&journal).at(&journal)?;
    sync_dir(&pruning)
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

    /// Apply `merges` to the history in memory.
    fn apply(mut h: History, merges: &[Merge]) -> History {
        for m in merges {
            let q = h.find(&m.into).unwrap();
            h.increments[q].meta = m.meta.clone();
            h.increments.retain(|i| !m.removed.contains(&i.name));
        }
        h
    }

    fn remove(h: History, names: &[&str]) -> (History, Vec<Merge>) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let merges = plan_merges(&h, &names);
        (apply(h, &merges), merges)
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
                    record("c", Op::New, 4),        // deleted by the next: dropped
                    record("keep", Op::Deleted, 1), // deletion carried
                ],
            ),
            increment(
                "20260103_000000",
                vec![record("b", Op::Changed, 5), record("c", Op::Deleted, 4)],
            ),
        ]);
        let before = states(&h);
        let (after, merges) = remove(h, &["backup_20260102_000000"]);
        let m = &merges[0];
        let moved: Vec<(String, Op)> = m
            .moves
            .iter()
            .map(|m| (m.record.path.clone(), m.record.op))
            .collect();
        assert_eq!(moved, [(s("a"), Op::New), (s("keep"), Op::Deleted)]);
        // c came and went between the kept points: its deletion goes too.
        assert_eq!(m.evict.len(), 1);
        assert_eq!(m.evict[0].path, "c");
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
    fn a_run_of_removed_increments_merges_in_one_step() {
        let h = History::new(vec![
            increment("20260101_000000", vec![record("x", Op::New, 1)]),
            increment("20260102_000000", vec![record("y", Op::New, 2)]),
            increment("20260103_000000", vec![record("y", Op::Deleted, 2)]),
            increment("20260104_000000", vec![record("x", Op::Changed, 3)]),
        ]);
        let before = states(&h);
        let (after, merges) = remove(h, &["backup_20260102_000000", "backup_20260103_000000"]);
        assert_eq!(merges.len(), 1);
        assert_eq!(
            merges[0].removed,
            ["backup_20260102_000000", "backup_20260103_000000"]
        );
        assert_eq!(after.increments.len(), 2);
        // y lived only between the kept points: nothing of it remains.
        assert_eq!(ops(&after.increments[1]), [(s("x"), Op::Changed, 3)]);
        assert!(merges[0].moves.is_empty());
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
        let p = plan(&h, None, &Zone::utc()).unwrap();
        assert!(p.remove.is_empty());
        assert_eq!(p.kept.len(), 2);
        assert!(p.note.unwrap().contains("no retention block"));
        let empty = plan(&h, Some(&Retention::default()), &Zone::utc()).unwrap();
        assert!(empty.remove.is_empty());
        let last = Retention {
            keep_last: Some(1),
            ..Default::default()
        };
        let p = plan(&h, Some(&last), &Zone::utc()).unwrap();
        assert_eq!(p.remove, ["backup_20260101_000000"]);
        assert_eq!(p.kept[0].reasons, [Reason::Newest, Reason::Last]);
    }

    /// An increment's stamp and its (path, op, content) records.
    type OnDisk<'a> = (&'a str, &'a [(&'a str, Op, &'a str)]);

    /// Write increments to disk at `root`: each record's file holds
    /// `content`, its size is the content's length.
    fn on_disk(root: &Path, incs: &[OnDisk<'_>]) -> Layout {
        let layout = Layout::new(root);
        fs::create_dir_all(layout.state()).unwrap();
        for (stamp, files) in incs {
            let mut inc = increment(stamp, vec![]);
            inc.dir = layout.increment(&inc.name);
            for (path, op, content) in files.iter() {
                let r = record(path, *op, content.len() as u64);
                let file = inc.file_of(&r);
                fs::create_dir_all(file.parent().unwrap()).unwrap();
                fs::write(&file, content).unwrap();
                inc.meta.files.push(r);
            }
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
    fn files_below(dir: &Path) -> BTreeMap<String, String> {
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
        let history = History::load(layout).unwrap();
        let mut p = plan(&history, None, &Zone::utc()).unwrap();
        p.kept.retain(|k| !names.contains(&k.increment.as_str()));
        p.remove = names.iter().map(|n| n.to_string()).collect();
        execute(layout, &history, p, false).unwrap()
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
        let files: Vec<(String, String)> = files_below(&kept)
            .into_iter()
            .filter(|(p, _)| !p.ends_with(".json"))
            .collect();
        assert_eq!(files, [(s("deleted/x"), s("x1")), (s("track/z"), s("z"))]);
        assert!(fs::read_dir(layout.pruning()).unwrap().next().is_none());
    }

    /// Moves, an eviction whose path a move fills, a folder replacing a
    /// file, and two runs of removed increments.
    const CRASHY: &[OnDisk<'static>] = &[
        (
            "20260101_000000",
            &[
                ("a", Op::New, "a1"),
                ("p", Op::New, "p1"),
                ("x", Op::New, "x1"),
            ],
        ),
        (
            "20260102_000000",
            &[
                ("p", Op::Deleted, "p1"),
                ("x", Op::Deleted, "x1"),
                ("x/y", Op::New, "y"),
            ],
        ),
        (
            "20260103_000000",
            &[("p", Op::New, "p3"), ("b", Op::New, "b3")],
        ),
        (
            "20260104_000000",
            &[
                ("p", Op::Deleted, "p3"),
                ("x/y", Op::Deleted, "y"),
                ("c", Op::New, "c4"),
            ],
        ),
        (
            "20260105_000000",
            &[("a", Op::Changed, "a5"), ("c", Op::Changed, "c5")],
        ),
        ("20260106_000000", &[("d", Op::New, "d6")]),
    ];
    const CRASHY_REMOVE: &[&str] = &[
        "backup_20260102_000000",
        "backup_20260103_000000",
        "backup_20260105_000000",
    ];

    #[test]
    fn a_crash_at_any_step_is_finished_by_the_next_prune() {
        // Without a crash, for reference.
        let clean = tempfile::tempdir().unwrap();
        let layout = on_disk(clean.path(), CRASHY);
        let before = trees(&layout);
        remove_on_disk(&layout, CRASHY_REMOVE);
        let want = trees(&layout);
        for (name, tree) in &want {
            assert_eq!(&before[name], tree, "{name}");
        }
        let want_files = files_below(clean.path());

        for which in 0..2 {
            for budget in 0.. {
                let dir = tempfile::tempdir().unwrap();
                let layout = on_disk(dir.path(), CRASHY);
                let history = History::load(&layout).unwrap();
                let names: Vec<String> = CRASHY_REMOVE.iter().map(|n| n.to_string()).collect();
                // Die after `budget` steps of one of the two merges.
                let merges = plan_merges(&history, &names);
                assert_eq!(merges.len(), 2);
                let merge = &merges[which];
                fs::create_dir_all(layout.pruning()).unwrap();
                write_atomic(&journal_path(&layout), &serde_json::to_vec(merge).unwrap()).unwrap();
                let mut left = budget;
                finish_merge_until(&layout, merge, &mut left).unwrap();
                let completed = !journal_path(&layout).exists();
                assert_eq!(History::load(&layout).is_ok(), completed);
                // The next prune replays the journal; then the rest goes.
                let report = prune(&layout, None, &Zone::utc(), false).unwrap();
                assert_eq!(
                    report.finished.len(),
                    if completed { 0 } else { merge.removed.len() }
                );
                let rest: Vec<&str> = CRASHY_REMOVE
                    .iter()
                    .copied()
                    .filter(|n| layout.increment(n).exists())
                    .collect();
                remove_on_disk(&layout, &rest);
                let at = format!("merge {which}, crash after {budget} steps");
                assert_eq!(trees(&layout), want, "{at}");
                assert_eq!(files_below(dir.path()), want_files, "{at}");
                if completed {
                    assert!(budget > 4, "the merge has steps to crash in");
                    break;
                }
            }
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
            // The path index answers as the replay does.
            let presence = h.presence();
            for k in 0..h.increments.len() {
                let state = h.state_at(Some(k));
                for p in 0..6u8 {
                    let path = RelPath::from_bytes(format!("p{p}").as_bytes());
                    prop_assert_eq!(presence.exists_at(&path, Some(k)), state.contains_key(&path));
                }
            }
            // Where each version's bytes are: (increment, track|deleted/path).
            let mut files: HashSet<(String, PathBuf)> = HashSet::new();
            for inc in &h.increments {
                for r in &inc.meta.files {
                    files.insert((inc.name.clone(), part_of(r)));
                }
            }
            let merges = plan_merges(&h, &removed);
            for m in &merges {
                for e in &m.evict {
                    prop_assert!(files.remove(&(m.into.clone(), part_of(e))), "{} {:?}", m.into, e);
                }
                for mv in &m.moves {
                    prop_assert!(files.remove(&(mv.from.clone(), part_of(&mv.record))));
                    files.insert((m.into.clone(), part_of(&mv.record)));
                }
                files.retain(|(name, _)| !m.removed.contains(name));
            }
            let h = apply(h, &merges);
            prop_assert_eq!(h.increments.len(), before.len() - removed.len());
            for (name, state) in states(&h) {
                prop_assert_eq!(&before[&name], &state, "{}", name);
            }
            // Every recorded file is where the record says, and no file is
            // left unrecorded.
            let mut recorded = HashSet::new();
            for inc in &h.increments {
                for r in &inc.meta.files {
                    recorded.insert((inc.name.clone(), part_of(r)));
                }
            }
            prop_assert_eq!(files, recorded);
        }
    }
}
