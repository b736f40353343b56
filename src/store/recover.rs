//! Repair after an interrupted run, before anything else happens.
//!
//! The commit protocol (see the README) is: create `.strata/dirty`; build
//! the increment in `.strata/inprogress/<name>/` while the mirror changes
//! (new versions via `.strata/tmp/` + rename); `syncfs`; write the
//! increment's metadata; rename the folder to `backup_<name>/`; write the
//! index; remove `dirty`. A crash can stop it anywhere, so recovery:
//!
//! 1. empties `.strata/tmp/` (half-written copies, never visible in the
//!    mirror);
//! 2. moves the files an interrupted run had moved into `deleted/` back into
//!    the mirror (the next run deletes them again if they are still gone);
//!    a deletion whose mirror path already holds something newer (a
//!    directory that replaced the file) stands, and is carried;
//! 3. when `dirty` is present (or the index is missing or corrupt), rebuilds
//!    the index from a walk of the mirror, so that index and mirror agree;
//! 4. keeps the interrupted increment's `track/` entries as *carried*: the
//!    next run writes its changes into that same folder, so every change the
//!    interrupted run had recorded lands in exactly one increment.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::index::{self, Index};
use super::meta::{FileRecord, IncrementMeta};
use super::{IoContext, Layout, StoreError, parse_increment_name};
use crate::diff::Op;
use crate::scan::{Entry, Hash, Meta, RelPath, hash_entry};

/// The state a run starts from, after recovery.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The index, agreeing with the mirror.
    pub index: Index,
    /// An interrupted run's increment folder, to be continued.
    pub increment: Option<PathBuf>,
    /// What that folder already records, by path.
    pub carried: BTreeMap<RelPath, FileRecord>,
    /// What recovery did, for the report (empty: nothing to repair).
    pub repairs: Vec<String>,
}

/// Whether an interrupted run left something to repair.
pub fn needs_recovery(layout: &Layout) -> bool {
    layout.dirty().exists()
        // A run leaves `tmp/` behind empty: only a file in it is left over.
        || fs::read_dir(layout.tmp()).is_ok_and(|mut d| d.next().is_some())
        || fs::read_dir(layout.inprogress()).is_ok_and(|mut d| d.next().is_some())
}

/// Every file (and symlink) below `root`, as relative paths with their
/// `lstat`, sorted by path. A missing `root` is empty.
fn walk_files(root: &Path) -> Result<Vec<(RelPath, fs::Metadata)>, StoreError> {
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.map_err(|e| StoreError::Io {
            path: e.path().unwrap_or(root).to_path_buf(),
            source: e.into(),
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("walkdir stays below its root");
        let meta = entry.metadata().map_err(|e| StoreError::Io {
            path: entry.path().to_path_buf(),
            source: e.into(),
        })?;
        out.push((RelPath::from_bytes(rel.as_os_str().as_bytes()), meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Remove the empty directories below (and including) `dir`.
fn prune_empty_dirs(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                prune_empty_dirs(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The metadata given to a mirror file that no record accounts for: it
/// matches no real file, so the next diff replaces the file.
const STALE: Meta = Meta {
    kind: crate::scan::Kind::File,
    size: u64::MAX,
    mtime: i64::MIN,
    mtime_nsec: 0,
    mode: 0,
};

/// Repair the destination after an interrupted run. Call with the job's
/// lock held.
pub fn recover(layout: &Layout) -> Result<Recovered, StoreError> {
    let mut repairs = Vec::new();

    // 1. Temp files never became visible anywhere: drop them.
    let tmp = layout.tmp();
    if tmp.exists() {
        fs::remove_dir_all(&tmp).at(&tmp)?;
    }

    let (old, mut dirty) = match index::load(&layout.index()) {
        Ok(Some(index)) => (index, layout.dirty().exists()),
        Ok(None) => (Index::default(), layout.mirror().exists()),
        Err(StoreError::Corrupt { path, message }) => {
            repairs.push(format!(
                "{}: {message}; rebuilt from the mirror",
                path.display()
            ));
            (Index::default(), true)
        }
        Err(e) => return Err(e),
    };

    // 2. Interrupted increments: roll deletions back, gather track/ into the
    //    newest folder.
    let mut folders: Vec<String> = match fs::read_dir(layout.inprogress()) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
            .filter(|n| parse_increment_name(n).is_some())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).at(&layout.inprogress()),
    };
    folders.sort_by_key(|n| parse_increment_name(n));
    let mirror = layout.mirror();
    let newest = folders.last().map(|n| layout.inprogress().join(n));
    for name in &folders {
        dirty = true;
        let dir = layout.inprogress().join(name);
        let deleted = dir.join("deleted");
        let newest_deleted = newest
            .as_ref()
            .expect("there is a newest folder")
            .join("deleted");
        for (rel, kept) in walk_files(&deleted)? {
            let from = deleted.join(rel.as_path());
            let to = mirror.join(rel.as_path());
            match fs::symlink_metadata(&to) {
                Err(_) => {
                    // The path is free: put the file back; the next run
                    // deletes it again if it is still gone.
                    if let Some(parent) = to.parent() {
                        fs::create_dir_all(parent).at(parent)?;
                    }
                    crate::fault::point();
                    fs::rename(&from, &to).at(&to)?;
                    repairs.push(format!("{rel}: deletion rolled back into the mirror"));
                }
                Ok(m) if (m.dev(), m.ino()) == (kept.dev(), kept.ino()) => {
                    // A second link of a file still in the mirror (it was
                    // leaving the tracked set): the next run redoes it.
                    crate::fault::point();
                    fs::remove_file(&from).at(&from)?;
                }
                Ok(_) if deleted != newest_deleted => {
                    // The path holds something newer (a directory, a new
                    // version): this deletion stands; carry it.
                    let dest = newest_deleted.join(rel.as_path());
                    if fs::symlink_metadata(&dest).is_err() {
                        if let Some(parent) = dest.parent() {
                            fs::create_dir_all(parent).at(parent)?;
                        }
                        fs::rename(&from, &dest).at(&dest)?;
                    }
                }
                Ok(_) => {}
            }
        }
        prune_empty_dirs(&deleted);
        let _ = fs::remove_file(IncrementMeta::path_in(&dir, name));
        if Some(&dir) != newest.as_ref() {
            let target = newest
                .as_ref()
                .expect("there is a newest folder")
                .join("track");
            for (rel, _) in walk_files(&dir.join("track"))? {
                let to = target.join(rel.as_path());
                if fs::symlink_metadata(&to).is_err() {
                    if let Some(parent) = to.parent() {
                        fs::create_dir_all(parent).at(parent)?;
                    }
                    fs::rename(dir.join("track").join(rel.as_path()), &to).at(&to)?;
                }
            }
            fs::remove_dir_all(&dir).at(&dir)?;
        }
    }
    let deletions_in_progress = match &newest {
        Some(dir) => walk_files(&dir.join("deleted"))?,
        None => Vec::new(),
    };
    let tracked_in_progress = match &newest {
        Some(dir) => walk_files(&dir.join("track"))?,
        None => Vec::new(),
    };

    // 3. Rebuild the index from the mirror.
    let index = if dirty {
        repairs.push("an interrupted run was repaired: index rebuilt from the mirror".into());
        rebuild(layout, &old, &tracked_in_progress)?
    } else {
        old.clone()
    };

    // 4. Carry what the interrupted increment recorded.
    let was_tracked: HashMap<&RelPath, bool> =
        old.entries.iter().map(|e| (&e.path, e.tracked)).collect();
    let mut carried = BTreeMap::new();
    if let Some(dir) = &newest {
        for (rel, meta) in &tracked_in_progress {
            let path = dir.join("track").join(rel.as_path());
            let Some(m) = Meta::from_metadata(meta) else {
                continue;
            };
            let entry = Entry {
                path: rel.clone(),
                meta: m,
                tracked: true,
                hash: Some(hash_entry(&path, m.kind).at(&path)?),
            };
            let op = if was_tracked.get(rel).copied().unwrap_or(false) {
                Op::Changed
            } else {
                Op::New
            };
            carried.insert(rel.clone(), FileRecord::new(&entry, op));
        }
        for (rel, metadata) in &deletions_in_progress {
            let Some(m) = Meta::from_metadata(metadata) else {
                continue;
            };
            let entry = Entry {
                path: rel.clone(),
                meta: m,
                tracked: true,
                hash: None,
            };
            carried.insert(rel.clone(), FileRecord::new(&entry, Op::Deleted));
        }
        if carried.is_empty() {
            prune_empty_dirs(dir);
        }
    }
    let increment = newest.filter(|d| d.exists());
    Ok(Recovered {
        index,
        increment,
        carried,
        repairs,
    })
}

/// The index as the mirror actually is. Paths of the old index keep its
/// tracked flag (and its hash when the metadata still matches); others learn
/// them from increments committed after the old index, or from the
/// interrupted increment.
fn rebuild(
    layout: &Layout,
    old: &Index,
    tracked_in_progress: &[(RelPath, fs::Metadata)],
) -> Result<Index, StoreError> {
    let old_by_path: HashMap<&RelPath, &Entry> = old.entries.iter().map(|e| (&e.path, e)).collect();
    let in_progress: HashMap<&RelPath, (u64, u64)> = tracked_in_progress
        .iter()
        .map(|(p, m)| (p, (m.dev(), m.ino())))
        .collect();
    // Records of increments committed after the old index was written.
    let mut committed: HashMap<RelPath, FileRecord> = HashMap::new();
    let mut last_increment = old.last_increment.clone();
    for name in layout.increments()? {
        let newer = match &old.last_increment {
            Some(last) => parse_increment_name(&name) > parse_increment_name(last),
            None => true,
        };
        if !newer {
            continue;
        }
        if let Ok(meta) = IncrementMeta::load(&layout.increment(&name), &name) {
            for record in meta.files {
                committed.insert(record.rel_path(), record);
            }
        }
        last_increment = Some(name);
    }
    let mut entries = Vec::new();
    for (rel, metadata) in walk_files(&layout.mirror())? {
        let Some(meta) = Meta::from_metadata(&metadata) else {
            continue;
        };
        let mut entry = Entry {
            path: rel.clone(),
            meta,
            tracked: false,
            hash: None,
        };
        // The committed tracked flag stands whatever the content: it says
        // whether the history already holds the path.
        let old = old_by_path.get(&rel);
        let mut accounted = false;
        if let Some(old) = old {
            entry.tracked = old.tracked;
            if old.meta == meta {
                entry.hash = old.hash;
                accounted = true;
            }
        }
        if let Some(record) = committed.get(&rel) {
            match record.op {
                Op::Deleted => entry.tracked = false,
                _ if record.meta() == Some(meta) => {
                    entry.tracked = true;
                    entry.hash = record.hash.as_deref().and_then(Hash::from_hex);
                    accounted = true;
                }
                _ => {}
            }
        }
        if in_progress.get(&rel) == Some(&(metadata.dev(), metadata.ino())) {
            entry.tracked = true;
            accounted = true;
        }
        if !accounted {
            // The interrupted run put this version in the mirror but
            // recorded it nowhere: make the next diff see it as changed, so
            // that it is copied afresh (and recorded, when tracked).
            entry.meta = STALE;
        }
        entries.push(entry);
    }
    Ok(Index {
        entries,
        last_increment,
    })
}
