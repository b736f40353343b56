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
//! of the visible sequence; (3) evicted files leave `q` (for
//! `.strata/pruning/evicted/`), then the live files move in; (4) `syncfs`,
//! then `q`'s metadata is rewritten atomically; (5) the pruning folders are
//! deleted, and the journal last. A crash anywhere leaves the journal, and
//! the next prune (or the next run) replays it before anything else; every
//! step of the replay skips what is already done. Until then everything
//! that reads the increments (`history`, `diff`, `show`, `mount`, and
//! `restore` or `cat` at a past point) refuses, naming the journal, rather
//! than give a wrong answer; the latest state (the mirror) does not depend
//! on it and still restores.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::retention::{self, BadDuration, Reason};
use super::{History, HistoryError, Presence};
use crate::entry::{Op, RelPath};
use crate::faults::Faults;
use crate::fs::Dir;
use crate::job::Retention;
use crate::store::meta::{FileRecord, IncrementMeta, format_time};
use crate::store::{IncrementName, IoContext, PRUNING, Part, Store, StoreError};
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
    /// The destination's lease was lost (an object-store prune stops).
    #[error(transparent)]
    Lease(#[from] Box<crate::store::object::lease::LeaseError>),
    /// The policy does not parse.
    #[error(transparent)]
    Policy(#[from] BadDuration),
    /// An increment's metadata cannot be read: merging around it could lose
    /// versions, so nothing is removed.
    #[error("{0}; nothing was pruned (fix or move the increment away first)")]
    Unreadable(HistoryError),
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

/// The journal's name in `.strata/pruning/`.
pub const JOURNAL: &[u8] = b"merge.json";

/// The journal of the merge in progress, for messages.
pub fn journal_path(store: &Store) -> PathBuf {
    store.state_path(PRUNING).join("merge.json")
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
    /// What the removals free (or, for a dry run, would free), every inode
    /// counted once: the files no kept increment or the mirror still holds.
    pub freed: super::usage::Share,
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
    store: &Store,
    policy: Option<&Retention>,
    zone: &Zone,
    dry_run: bool,
    faults: &Faults,
) -> Result<PruneReport, PruneError> {
    let finished = match read_journal(store)? {
        Some(merge) => {
            if !dry_run {
                finish_merge(store, &merge, faults)?;
            }
            merge.removed
        }
        None => Vec::new(),
    };
    let loaded = History::load_all(store)?;
    if let Some(e) = loaded.broken.into_iter().next() {
        return Err(PruneError::Unreadable(e));
    }
    if !dry_run && let Some(stray) = loaded.history.increments.iter().find(|i| i.pending_prune) {
        return Err(PruneError::Stray {
            path: store.state_path(PRUNING).join(&stray.name),
        });
    }
    let mut decided = plan(&loaded.history, policy, zone)?;
    keep_the_mirrors_versions(store, &loaded.history, &mut decided);
    let mut report = execute(store, &loaded.history, decided, dry_run, faults)?;
    report.finished = finished;
    Ok(report)
}

/// Never remove the only copy of a version the mirror holds: an increment
/// whose merge would drop a `track/` file that is the mirror's inode at its
/// path stays (that happens only in a history whose order is wrong, which
/// an older strata could write under a clock set back).
fn keep_the_mirrors_versions(store: &Store, history: &History, decided: &mut PrunePlan) {
    let Ok(Some(mirror)) = store.mirror() else {
        return;
    };
    loop {
        let merges = plan_merges(history, &decided.remove);
        let mut keep: Option<(String, String)> = None;
        'merges: for m in &merges {
            for name in &m.removed {
                let Some(k) = history.find(name) else {
                    continue;
                };
                let inc = &history.increments[k];
                let Ok(dir) = inc.open(store) else { continue };
                let Ok(Some(track)) = dir.part(Part::Track) else {
                    continue;
                };
                for (path, record) in inc.records() {
                    if record.op == Op::Deleted || record.kind == "dir" {
                        continue;
                    }
                    let moved = m.moves.iter().any(|mv| {
                        mv.from == *name && mv.record.rel_path().is_ok_and(|p| p == *path)
                    });
                    if moved {
                        continue;
                    }
                    let stat = |d: &Dir| {
                        d.parent_of(path.as_bytes())
                            .and_then(|(p, n)| p.stat_at(n))
                            .ok()
                    };
                    if let (Some(a), Some(b)) = (stat(&track), stat(&mirror))
                        && a.same_inode(&b)
                    {
                        keep = Some((name.clone(), path.to_string()));
                        break 'merges;
                    }
                }
            }
        }
        let Some((name, path)) = keep else {
            return;
        };
        decided.remove.retain(|n| *n != name);
        let time = history
            .find(&name)
            .map(|k| format_time(history.increments[k].time))
            .unwrap_or_default();
        decided.kept.push(Kept {
            increment: name,
            time,
            reasons: vec![Reason::HoldsMirror(path)],
        });
        decided
            .kept
            .sort_by_key(|k| IncrementName::parse(&k.increment));
    }
}

/// Carry out `plan` on `history` (read from `layout`). With `dry_run`, only
/// work out what each merge would move. Call with the job's lock held.
pub fn execute(
    store: &Store,
    history: &History,
    plan: PrunePlan,
    dry_run: bool,
    faults: &Faults,
) -> Result<PruneReport, PruneError> {
    let merges = plan_merges(history, &plan.remove);
    let freed = super::usage::freed_by(store, &merges)?;
    for merge in merges.iter().rev() {
        if !dry_run {
            apply_merge(store, merge, faults)?;
        }
    }
    let removed = removed_by(history, &merges);
    Ok(PruneReport {
        dry_run,
        finished: Vec::new(),
        plan,
        removed,
        freed,
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
/// `track/<path>` or `deleted/<path>`; `None` for a directory (its record
/// is all there is of it).
pub(crate) fn part_of(record: &FileRecord) -> Option<(Part, RelPath)> {
    if record.kind == "dir" {
        return None;
    }
    Some((Part::for_op(record.op), record.rel_path().ok()?))
}

/// The key a record is merged under: its path, and whether it is a
/// directory (a file replaced by a directory has two records at one path).
fn key_of(record: &FileRecord) -> (RelPath, bool) {
    (record.rel_path().unwrap_or_default(), record.kind == "dir")
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
    let mut files: BTreeMap<(RelPath, bool), (FileRecord, Origin)> = kept
        .meta
        .files
        .iter()
        .map(|r| (key_of(r), (r.clone(), Origin::Own)))
        .collect();
    let mut evict = Vec::new();
    for &r in run.iter().rev() {
        let existed =
            |key: &(RelPath, bool)| presence.exists_at_as(&key.0, key.1, r.checked_sub(1));
        for record in &history.increments[r].meta.files {
            let path = key_of(record);
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
    // A deletion before the addition that replaces it at the same path.
    records.sort_by(|a, b| {
        key_of(a)
            .0
            .cmp(&key_of(b).0)
            .then((a.op != Op::Deleted).cmp(&(b.op != Op::Deleted)))
    });
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
fn apply_merge(store: &Store, merge: &Merge, faults: &Faults) -> Result<(), StoreError> {
    let pruning = store
        .state()
        .create_dirs(PRUNING, 0o700)
        .at(&store.state_path(PRUNING))?;
    let tmp = store.tmp()?;
    step(faults, "prune.journal", &RelPath::root())?;
    pruning
        .write_atomic(JOURNAL, &tmp, b"merge.json.new", |w| {
            serde_json::to_writer(&mut *w, merge)?;
            w.write_all(b"\n")
        })
        .at(&journal_path(store))?;
    finish_merge(store, merge, faults)
}

/// The journal of an interrupted merge, if there is one.
fn read_journal(store: &Store) -> Result<Option<Merge>, StoreError> {
    let path = journal_path(store);
    let Some(pruning) = store.state_dir(PRUNING)? else {
        return Ok(None);
    };
    match pruning.read(JOURNAL).at(&path)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            }),
        None => Ok(None),
    }
}

/// A step of a merge: a fault point, where a test can stop the merge as if
/// the process died there.
fn step(faults: &Faults, site: &'static str, path: &RelPath) -> Result<(), StoreError> {
    if faults.fails(site, path) {
        return Err(StoreError::io(
            std::path::Path::new(site),
            io::Error::other("stopped by an injected fault"),
        ));
    }
    Ok(())
}

/// The file of `rel` in `part` of the increment folder `inc`: its folder
/// (made when `create`) and name. `None` when the folder is not there.
fn file_in(
    inc: &Dir,
    part: Part,
    rel: &RelPath,
    create: bool,
) -> io::Result<Option<(Dir, Vec<u8>)>> {
    let base = if create {
        inc.create_dirs(part.name(), 0o700)?
    } else {
        match inc.child_dir(part.name()) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    };
    let parent = rel.parent().unwrap_or_default();
    let dir = if create {
        base.create_dirs(parent.as_bytes(), 0o700)?
    } else {
        match base.open_dir(parent.as_bytes()) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    };
    Ok(Some((dir, rel.file_name().to_vec())))
}

fn exists(inc: &Dir, part: Part, rel: &RelPath) -> bool {
    matches!(file_in(inc, part, rel, false), Ok(Some((d, n))) if d.stat_at(&n).is_ok())
}

/// Remove the folders below `part` of `inc` on the way to `rel` that are
/// empty now, deepest first.
fn prune_empty(inc: &Dir, part: Part, rel: &RelPath) {
    let Ok(base) = inc.child_dir(part.name()) else {
        return;
    };
    let mut up = rel.parent();
    while let Some(dir) = up.filter(|d| !d.is_root()) {
        let Ok((parent, name)) = base.parent_of(dir.as_bytes()) else {
            return;
        };
        if parent.rmdir(name).is_err() {
            return;
        }
        up = dir.parent();
    }
}

/// Steps 2 to 5 of a journaled merge; each skips what is already done, so
/// a replay after a crash finishes it.
fn finish_merge(store: &Store, merge: &Merge, faults: &Faults) -> Result<(), StoreError> {
    let root = RelPath::root();
    let pruning_path = store.state_path(PRUNING);
    let pruning = store
        .state()
        .create_dirs(PRUNING, 0o700)
        .at(&pruning_path)?;
    let key = |name: &str| {
        IncrementName::parse(name).ok_or_else(|| StoreError::Corrupt {
            path: journal_path(store),
            message: format!("{name:?} is not an increment name"),
        })
    };
    let into_key = key(&merge.into)?;
    let into = store.increment(&into_key)?;
    // 2. Out of the visible sequence.
    for name in &merge.removed {
        if store.root().stat_at(name.as_bytes()).is_ok() {
            step(faults, "prune.hide", &root)?;
            store
                .root()
                .rename_noreplace(name.as_bytes(), &pruning, name.as_bytes())
                .at(&store.path().join(name))?;
        }
    }
    store.root().sync().at(store.path())?;
    pruning.sync().at(&pruning_path)?;
    // 3. Evicted files out of the kept increment first, with the folders
    //    they leave empty: the deletion of `x/y` evicted from there can
    //    leave a folder `deleted/x/` where the deletion of a file `x` moves
    //    in. A path that a move already filled (its source is gone) holds
    //    the moved file, not the evicted one.
    // A removed folder that is gone was dropped in step 5: its moves are
    // done.
    let removed_dir = |name: &str| -> Result<Option<Dir>, StoreError> {
        match pruning.child_dir(name.as_bytes()) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&pruning_path.join(name), e)),
        }
    };
    let mut filled: HashSet<(u8, RelPath)> = HashSet::new();
    for m in &merge.moves {
        if let Some((part, rel)) = part_of(&m.record)
            && !removed_dir(&m.from)?.is_some_and(|from| exists(&from, part, &rel))
        {
            filled.insert((part as u8, rel));
        }
    }
    let evicted_path = pruning_path.join("evicted");
    for record in &merge.evict {
        let Some((part, rel)) = part_of(record) else {
            continue;
        };
        if filled.contains(&(part as u8, rel.clone())) || !exists(&into.dir, part, &rel) {
            continue;
        }
        step(faults, "prune.evict", &rel)?;
        let evicted = pruning.create_dirs(b"evicted", 0o700).at(&evicted_path)?;
        let (from_dir, name) = file_in(&into.dir, part, &rel, false)
            .at(&into.path)?
            .expect("it exists");
        let (to_dir, _) = file_in(&evicted, part, &rel, true)
            .at(&evicted_path)?
            .expect("made");
        from_dir
            .rename(&name, &to_dir, &name)
            .at(&into.part_path(part, &rel))?;
        prune_empty(&into.dir, part, &rel);
    }
    //    Then the live versions in.
    for m in &merge.moves {
        let Some((part, rel)) = part_of(&m.record) else {
            continue;
        };
        let Some(from) = removed_dir(&m.from)?.filter(|from| exists(from, part, &rel)) else {
            if !exists(&into.dir, part, &rel) {
                return Err(StoreError::io(
                    &pruning_path
                        .join(&m.from)
                        .join(String::from_utf8_lossy(part.name()).as_ref())
                        .join(rel.as_path()),
                    io::Error::from(io::ErrorKind::NotFound),
                ));
            }
            continue;
        };
        step(faults, "prune.move", &rel)?;
        let (fdir, name) = file_in(&from, part, &rel, false)
            .at(&pruning_path)?
            .expect("it exists");
        let (tdir, _) = file_in(&into.dir, part, &rel, true)
            .at(&into.path)?
            .expect("made");
        fdir.rename(&name, &tdir, &name)
            .at(&into.part_path(part, &rel))?;
    }
    // 4. The moves are durable before the metadata that names them.
    store.sync_filesystem()?;
    step(faults, "prune.meta", &root)?;
    let tmp = store.tmp()?;
    let meta_name = IncrementMeta::file_name(&merge.into);
    into.dir
        .write_atomic(meta_name.as_bytes(), &tmp, b"meta.new", |w| {
            serde_json::to_writer_pretty(&mut *w, &merge.meta)?;
            w.write_all(b"\n")
        })
        .at(&into.meta_path())?;
    // 5. What is left was visible only at the removed increments.
    for name in &merge.removed {
        if pruning.stat_at(name.as_bytes()).is_ok() {
            step(faults, "prune.drop", &root)?;
            pruning
                .remove_all(name.as_bytes())
                .at(&pruning_path.join(name))?;
        }
    }
    pruning.remove_all(b"evicted").at(&evicted_path)?;
    pruning.sync().at(&pruning_path)?;
    step(faults, "prune.done", &root)?;
    pruning.unlink(JOURNAL).at(&journal_path(store))?;
    pruning.sync().at(&pruning_path)
}

/// What each merge removes, for the report: per removed increment, where
/// its live files went and how many records it dropped. Shared with the
/// object-store prune, which carries out the same merges.
pub(crate) fn removed_by(history: &History, merges: &[Merge]) -> Vec<Removed> {
    let mut removed = Vec::new();
    for merge in merges {
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
    removed
}

#[cfg(test)]
mod tests {
    use super::super::tests::{describe, increment, record};
    use super::*;
    use crate::history::Increment;
    use proptest::prelude::*;
    use std::fs;
    use std::path::Path;

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
            let inc = &h.increments[q];
            h.increments[q] = Increment::new(inc.key.clone(), inc.place, m.meta.clone()).unwrap();
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
    fn on_disk(root: &Path, incs: &[OnDisk<'_>]) -> Store {
        fs::create_dir_all(root.join(".strata")).unwrap();
        for (stamp, files) in incs {
            let mut inc = increment(stamp, vec![]);
            let dir = root.join(&inc.name);
            fs::create_dir_all(&dir).unwrap();
            for (path, op, content) in files.iter() {
                let r = record(path, *op, content.len() as u64);
                let (part, rel) = part_of(&r).unwrap();
                let file = dir
                    .join(String::from_utf8_lossy(part.name()).as_ref())
                    .join(rel.as_path());
                fs::create_dir_all(file.parent().unwrap()).unwrap();
                fs::write(&file, content).unwrap();
                inc.meta.files.push(r);
            }
            let text = serde_json::to_vec_pretty(&inc.meta).unwrap();
            fs::write(dir.join(format!("{}.json", inc.name)), text).unwrap();
        }
        Store::open(root).unwrap()
    }

    /// The state at each increment as path -> content, read from disk.
    fn trees(store: &Store) -> BTreeMap<String, BTreeMap<String, String>> {
        let h = History::load(store).unwrap();
        (0..h.increments.len())
            .map(|k| {
                let tree = h
                    .state_at(Some(k))
                    .into_iter()
                    .map(|(p, v)| {
                        let (inc, part, rel) = h.file_of(v);
                        let dir = inc.open(store).unwrap().part(part).unwrap().unwrap();
                        let (mut f, _) = dir.open_file(rel.as_bytes()).unwrap();
                        let mut text = String::new();
                        std::io::Read::read_to_string(&mut f, &mut text).unwrap();
                        (p.to_string(), text)
                    })
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

    fn remove_on_disk(
        store: &Store,
        names: &[&str],
        faults: &Faults,
    ) -> Result<PruneReport, PruneError> {
        let history = History::load(store).unwrap();
        let mut p = plan(&history, None, &Zone::utc()).unwrap();
        p.kept.retain(|k| !names.contains(&k.increment.as_str()));
        p.remove = names.iter().map(|n| n.to_string()).collect();
        execute(store, &history, p, false, faults)
    }

    #[test]
    fn a_file_replaced_by_a_directory_merges_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = on_disk(
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
        let before = trees(&store);
        let report = remove_on_disk(&store, &["backup_20260102_000000"], &Faults::none()).unwrap();
        assert_eq!(report.removed[0].moved, 1);
        let after = trees(&store);
        assert_eq!(after.len(), 2);
        for (name, tree) in &after {
            assert_eq!(&before[name], tree, "{name}");
        }
        // The deletion of x moved in where the evicted deletion of x/y was.
        let kept = dir.path().join("backup_20260103_000000");
        let files: Vec<(String, String)> = files_below(&kept)
            .into_iter()
            .filter(|(p, _)| !p.ends_with(".json"))
            .collect();
        assert_eq!(files, [(s("deleted/x"), s("x1")), (s("track/z"), s("z"))]);
        assert!(
            fs::read_dir(dir.path().join(".strata/pruning"))
                .unwrap()
                .next()
                .is_none()
        );
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
        // Without a crash, for reference; the steps a merge passes.
        let clean = tempfile::tempdir().unwrap();
        let store = on_disk(clean.path(), CRASHY);
        let before = trees(&store);
        let trace = clean.path().join("trace");
        remove_on_disk(
            &store,
            CRASHY_REMOVE,
            &Faults::new("", Some(&trace)).unwrap(),
        )
        .unwrap();
        fs::remove_file(&trace).ok();
        let trace_text = {
            let again = tempfile::tempdir().unwrap();
            let store = on_disk(again.path(), CRASHY);
            let t = again.path().join("trace");
            remove_on_disk(&store, CRASHY_REMOVE, &Faults::new("", Some(&t)).unwrap()).unwrap();
            fs::read_to_string(&t).unwrap()
        };
        let want = trees(&store);
        for (name, tree) in &want {
            assert_eq!(&before[name], tree, "{name}");
        }
        let mut want_files = files_below(clean.path());
        want_files.retain(|p, _| !p.starts_with(".strata/tmp"));
        let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
        let points: Vec<String> = trace_text
            .lines()
            .map(|l| {
                let n = seen.entry(l).or_default();
                *n += 1;
                format!("fail:{l}#{n}")
            })
            .collect();
        assert!(
            points.len() > 8,
            "the merges have steps to crash in: {points:?}"
        );
        for rule in &points {
            let dir = tempfile::tempdir().unwrap();
            let store = on_disk(dir.path(), CRASHY);
            let stopped = remove_on_disk(&store, CRASHY_REMOVE, &Faults::new(rule, None).unwrap());
            assert!(stopped.is_err(), "{rule}: the fault stops the prune");
            // The next prune replays the journal; then the rest goes.
            let report = prune(&store, None, &Zone::utc(), false, &Faults::none()).unwrap();
            let _ = report.finished;
            let rest: Vec<&str> = CRASHY_REMOVE
                .iter()
                .copied()
                .filter(|n| dir.path().join(n).exists())
                .collect();
            remove_on_disk(&store, &rest, &Faults::none()).unwrap();
            assert_eq!(trees(&store), want, "{rule}");
            let mut got = files_below(dir.path());
            got.retain(|p, _| !p.starts_with(".strata/tmp"));
            assert_eq!(got, want_files, "{rule}");
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
            let mut files: HashSet<(String, Option<(Part, RelPath)>)> = HashSet::new();
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
