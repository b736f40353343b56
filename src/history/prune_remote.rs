//! `strata prune` on an object-store destination: the same policy
//! ([`prune::plan`]) and the same merges ([`prune::plan_merges`]) as a
//! local prune, so the plan for a history is the same whatever holds it;
//! only the steps differ. What a folder does with renames the store does
//! with server-side copies and deletes.
//!
//! Per merge, with the lease held: (1) the whole merge is written to the
//! journal object `.strata/pruning/merge.json` (the local journal's
//! content); (2) the kept increment's evicted objects are deleted (those
//! that a move does not fill again); (3) each live version is copied by the
//! server from the removed increment's `track/` or `deleted/` into the kept
//! one's; (4) the kept increment's metadata object is rewritten (the merge
//! is done); (5) each removed increment goes, its metadata object first;
//! (6) the journal is deleted. Every step can run again: a copy whose
//! source is gone (step 5 ran) must find its target there; deleting what
//! is gone is no error. A prune killed at any step leaves the journal, and
//! the next prune or run replays it before anything else; until then
//! `history`, `restore --at` and the other readers of the increments
//! refuse, naming the journal (the latest state, the mirror and the
//! index, does not depend on it).
//!
//! Fault points: `object.prune.journal`, `object.prune.evict`,
//! `object.prune.move`, `object.prune.meta`, `object.prune.drop`,
//! `object.prune.done`.

use std::collections::HashSet;
use std::path::PathBuf;

use super::prune::{self, Merge, PruneError, PrunePlan, PruneReport, part_of};
use super::usage::Share;
use super::{History, HistoryError};
use crate::entry::RelPath;
use crate::faults::Faults;
use crate::job::Retention;
use crate::store::meta::IncrementMeta;
use crate::store::object::client::{Fetched, Write};
use crate::store::object::{self, Remote};
use crate::store::{IncrementName, StoreError};
use crate::tz::Zone;

/// The journal's key, for messages: `s3://BUCKET/PREFIX/.strata/pruning/merge.json`.
pub fn journal_shown(remote: &Remote) -> PathBuf {
    PathBuf::from(format!("{}/{}", remote.url(), object::PRUNE_JOURNAL))
}

/// The journal of an interrupted merge, if there is one.
pub fn read_journal(remote: &Remote) -> Result<Option<Merge>, StoreError> {
    let key = remote.bucket.key(object::PRUNE_JOURNAL);
    match remote.bucket.get(&key, None)? {
        Fetched::Got { bytes, .. } => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    path: journal_shown(remote),
                    message: e.to_string(),
                })
        }
        _ => Ok(None),
    }
}

/// The whole `strata prune` of an object-store destination: finish an
/// interrupted prune, read the history, plan with `policy`, execute (or,
/// with `dry_run`, only say what would be done). Call with the lease held;
/// `check` is asked before each merge's journal and metadata are written
/// (a prune that lost its lease stops).
pub fn prune_remote(
    remote: &Remote,
    policy: Option<&Retention>,
    zone: &Zone,
    dry_run: bool,
    faults: &Faults,
    check: &dyn Fn() -> Result<(), PruneError>,
) -> Result<PruneReport, PruneError> {
    let journal = read_journal(remote)?;
    let finished = match &journal {
        Some(merge) => {
            if !dry_run {
                check()?;
                finish_merge(remote, merge, faults)?;
            }
            merge.removed.clone()
        }
        None => Vec::new(),
    };
    let mut history = History::load_remote_all(remote).map_err(|e| match e {
        HistoryError::Store(e) => PruneError::Store(e),
        e => PruneError::Unreadable(e),
    })?;
    if dry_run && let Some(merge) = &journal {
        // The history as the replay leaves it.
        history
            .increments
            .retain(|i| !merge.removed.contains(&i.name));
        if let Some(q) = history.find(&merge.into) {
            let inc = &history.increments[q];
            history.increments[q] =
                super::Increment::new(inc.key.clone(), inc.place, merge.meta.clone())
                    .map_err(PruneError::Unreadable)?;
        }
    }
    // No `keep_the_mirrors_versions` here: a mirror object is a copy of
    // its own, so no merge can drop the only copy of the mirror's version.
    let decided = prune::plan(&history, policy, zone)?;
    let mut report = execute(remote, &history, decided, dry_run, faults, check)?;
    report.finished = finished;
    Ok(report)
}

/// Carry out `plan` on `history` (read from `remote`).
fn execute(
    remote: &Remote,
    history: &History,
    plan: PrunePlan,
    dry_run: bool,
    faults: &Faults,
    check: &dyn Fn() -> Result<(), PruneError>,
) -> Result<PruneReport, PruneError> {
    let merges = prune::plan_merges(history, &plan.remove);
    let freed = freed_by(remote, &merges)?;
    if !dry_run {
        for merge in merges.iter().rev() {
            check()?;
            faults.point("object.prune.journal", &RelPath::root());
            let body = serde_json::to_vec(merge).expect("a merge serializes");
            let _ = remote
                .bucket
                .put(
                    &remote.bucket.key(object::PRUNE_JOURNAL),
                    body,
                    Write::Overwrite,
                )
                .map_err(StoreError::from)?;
            finish_merge(remote, merge, faults)?;
        }
    }
    let removed = prune::removed_by(history, &merges);
    Ok(PruneReport {
        dry_run,
        finished: Vec::new(),
        plan,
        removed,
        freed,
    })
}

/// What the merges free: the removed increments' objects that do not move
/// on, and the objects evicted from the increments they merge into (an
/// object store bills what it holds: `disk` is `bytes`).
fn freed_by(remote: &Remote, merges: &[Merge]) -> Result<Share, StoreError> {
    let mut freed = Share::default();
    for merge in merges {
        for name in &merge.removed {
            let staying: HashSet<String> = merge
                .moves
                .iter()
                .filter(|m| m.from == *name)
                .filter_map(|m| {
                    let (part, rel) = part_of(&m.record)?;
                    Some(remote.bucket.shown(&remote.part_key(name, part, &rel)))
                })
                .collect();
            for o in remote.bucket.list(&remote.bucket.key(name))? {
                if !staying.contains(&remote.bucket.shown(&o.location)) {
                    freed.files += 1;
                    freed.bytes += o.size;
                }
            }
        }
        for record in &merge.evict {
            if part_of(record).is_some() {
                freed.files += 1;
                freed.bytes += record.size;
            }
        }
    }
    freed.disk = freed.bytes;
    Ok(freed)
}

/// Steps 2 to 6 of a journaled merge; each skips or repeats harmlessly
/// what is already done, so a replay after a crash finishes it.
pub fn finish_merge(remote: &Remote, merge: &Merge, faults: &Faults) -> Result<(), StoreError> {
    use rayon::prelude::*;
    let bad_name = |name: &str| StoreError::Corrupt {
        path: journal_shown(remote),
        message: format!("{name:?} is not an increment name"),
    };
    for name in std::iter::once(&merge.into).chain(&merge.removed) {
        IncrementName::parse(name).ok_or_else(|| bad_name(name))?;
    }
    let into = merge.into.as_str();
    // 2. Evictions, but not where a move puts its version: the copy
    //    replaces it (deleting it after a replayed copy would lose it).
    let filled: HashSet<String> = merge
        .moves
        .iter()
        .filter_map(|m| part_of(&m.record))
        .map(|(part, rel)| remote.bucket.shown(&remote.part_key(into, part, &rel)))
        .collect();
    merge.evict.par_iter().try_for_each(|record| {
        let Some((part, rel)) = part_of(record) else {
            return Ok(());
        };
        let key = remote.part_key(into, part, &rel);
        if filled.contains(&remote.bucket.shown(&key)) {
            return Ok(());
        }
        faults.point("object.prune.evict", &rel);
        remote.bucket.delete(&key).map_err(StoreError::from)
    })?;
    // 3. The live versions in, by server-side copy.
    merge.moves.par_iter().try_for_each(|m| {
        let Some((part, rel)) = part_of(&m.record) else {
            return Ok(());
        };
        faults.point("object.prune.move", &rel);
        let from = remote.part_key(&m.from, part, &rel);
        let to = remote.part_key(into, part, &rel);
        match remote.bucket.copy(&from, &to) {
            Ok(()) => Ok(()),
            // Its increment was dropped (step 5) before a crash: the copy
            // was made then.
            Err(e) => match (remote.bucket.exists(&from)?, remote.bucket.exists(&to)?) {
                (false, true) => Ok(()),
                _ => Err(StoreError::from(e)),
            },
        }
    })?;
    // 4. The merge is done once the kept increment's metadata says so.
    faults.point("object.prune.meta", &RelPath::root());
    let meta: &IncrementMeta = &merge.meta;
    let body = serde_json::to_vec_pretty(meta).expect("metadata serializes");
    let _ = remote
        .bucket
        .put(&remote.meta_key(into), body, Write::Overwrite)?;
    // 5. What is left of the removed increments was visible only at them.
    for name in &merge.removed {
        faults.point("object.prune.drop", &RelPath::root());
        remote.drop_increment(name)?;
    }
    // 6. Finished.
    faults.point("object.prune.done", &RelPath::root());
    remote
        .bucket
        .delete(&remote.bucket.key(object::PRUNE_JOURNAL))?;
    Ok(())
}
