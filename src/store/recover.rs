//! Recovery: the inverse of [`super::commit`], run before anything else by
//! every run (and by nothing else that writes). Two steps, so that a dry run
//! and `verify` can show what would happen:
//!
//! - [`assess`] reads only, and returns a plain [`Assessment`]: what an
//!   interrupted run left, what will be done about it, and the index as the
//!   mirror will then be;
//! - [`repair`] does it.
//!
//! What an interrupted run can leave, and what becomes of it:
//!
//! 1. files in `.strata/tmp/`: never visible anywhere; removed.
//! 2. `.strata/dirty` (or a missing, corrupt or version-1 index): the
//!    mirror may differ from the index, so the index is rebuilt from a walk
//!    of the mirror. Each mirror entry takes the first that accounts for it:
//!    the interrupted increment's `track/` link to the same inode (a new
//!    version it recorded), a record of an increment committed after the
//!    index (the commit got past its rename), the old index entry with the
//!    same metadata; otherwise it is marked stale, so that the next run
//!    copies it afresh (and records it, when tracked). Directories keep
//!    their old entry (they are updated in place, and the next run puts
//!    every directory's metadata back).
//! 3. `inprogress/<name>/deleted/P`, a tracked file the run moved out of the
//!    mirror: moved back when the mirror's `P` is free and the folders on
//!    its way are real directories (the next run deletes it again if it is
//!    still gone); otherwise — the path holds something newer, or a folder
//!    on its way became a symlink or a file — the deletion stands and is
//!    carried. Nothing is ever moved through a symlink: every path is
//!    resolved beneath the mirror's descriptor with no symlink followed.
//! 4. `inprogress/<name>/track/P`: a version that entered the mirror; its
//!    record is carried, as is the deletion of every tracked directory of
//!    the committed state that is no longer a directory in the mirror. The
//!    next run continues that increment, so every change the interrupted
//!    run was recording lands in exactly one increment.
//!
//! When nothing is carried, repair saves the rebuilt index and removes the
//! dirty marker at once; otherwise the next run's commit does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;

use super::commit::{StartIndex, clear_dirty, save_index};
use super::index::{Index, IndexFile, UNKNOWN_OWNER};
use super::meta::{FileRecord, Record};
use super::{DIRTY, INPROGRESS, IncrementName, IoContext, Part, Store, StoreError, TMP};
use crate::entry::{
    ChangeTime, Digests, Entry, Kind, Meta, NO_XATTRS, Op, RelPath, Timestamp, Xattrs,
};
use crate::faults::Faults;
use crate::fs::{Dir, FileTypeOf, Stat, is_root, xattr};

/// Records an interrupted run made, carried into the next run's increment,
/// by path (a path may have a deletion and an addition: a file replaced by
/// a directory).
pub type Carried = BTreeMap<RelPath, Vec<FileRecord>>;

/// What recovery found and will do. Reading it changes nothing.
#[derive(Debug, Default)]
pub struct Assessment {
    /// Files in `.strata/tmp/` to remove.
    pub tmp_files: usize,
    /// Interrupted increments in `.strata/inprogress/`, oldest first; the
    /// newest is continued.
    pub folders: Vec<IncrementName>,
    /// Deletions to move back into the mirror: (folder, path).
    pub rollbacks: Vec<(IncrementName, RelPath)>,
    /// Second links of files still in the mirror, to drop: (folder, path).
    pub drop_links: Vec<(IncrementName, RelPath)>,
    /// Records carried into the next increment.
    pub carried: Carried,
    /// The index as the mirror will be, when it must be rebuilt.
    pub rebuilt: Option<Index>,
    /// Why (for the report), one line each.
    pub notes: Vec<String>,
}

impl Assessment {
    /// Whether there is anything to repair.
    pub fn is_empty(&self) -> bool {
        self.tmp_files == 0
            && self.folders.is_empty()
            && self.rebuilt.is_none()
            && self.notes.is_empty()
    }
}

/// Where a run starts from, after repair.
#[derive(Debug)]
pub struct Repaired {
    /// The index, agreeing with the mirror.
    pub index: StartIndex,
    /// The interrupted increment to continue, if any.
    pub increment: Option<IncrementName>,
    /// What it already records.
    pub carried: Carried,
    /// What recovery did, for the report (empty: nothing to repair).
    pub repairs: Vec<String>,
    /// The mirror's directories may have been touched: put back the
    /// metadata of every one.
    pub redo_dirs: bool,
}

/// Whether something may need repair (cheap: a few `stat`s).
pub fn needs_recovery(store: &Store) -> bool {
    let has_entries = |name: &[u8]| {
        store
            .state()
            .child_dir(name)
            .is_ok_and(|d| d.entries().is_ok_and(|e| !e.is_empty()))
    };
    store.state_has(DIRTY) || has_entries(TMP) || has_entries(INPROGRESS)
}

use crate::fs::walk_tree as walk;

/// The metadata given to a mirror entry that nothing accounts for: it
/// matches no real entry, so the next diff replaces it.
fn stale(kind: Kind) -> Meta {
    Meta {
        kind,
        size: u64::MAX,
        mtime: Timestamp {
            sec: i64::MIN,
            nsec: 0,
        },
        mode: 0,
        uid: u32::MAX - 1,
        gid: u32::MAX - 1,
        link: 0,
    }
}

/// Whether a mirror entry is the version an index entry or record
/// describes: kind, size, mtime, mode, and (as root, where it is known) the
/// owner. The mirror keeps owners only as root.
fn matches(want: &Meta, got: &Stat) -> bool {
    let Some(m) = got.meta() else {
        return false;
    };
    let owner = !is_root() || want.uid == UNKNOWN_OWNER || (want.uid, want.gid) == (m.uid, m.gid);
    m.kind == want.kind
        && m.size == want.size
        && { m.mtime } == { want.mtime }
        && m.mode == want.mode
        && owner
}

/// The state the last commit left: the old index, and the records of the
/// increments committed after it.
struct Committed {
    old: Index,
    newer: HashMap<RelPath, Vec<Record>>,
    last: Option<String>,
}

/// Files and directories of one class: a directory is not the same thing
/// as a file at the same path; a file and a symlink are.
fn same_class(a: Kind, b: Kind) -> bool {
    (a == Kind::Dir) == (b == Kind::Dir)
}

impl Committed {
    fn old_entry(&self, path: &RelPath) -> Option<&Entry> {
        self.old
            .entries
            .binary_search_by(|e| e.path.cmp(path))
            .ok()
            .map(|i| &self.old.entries[i])
    }

    /// The tracked kind of `path` in the committed history state.
    fn tracked_kind(&self, path: &RelPath) -> Option<Kind> {
        if let Some(records) = self.newer.get(path) {
            let mut state = self
                .old_entry(path)
                .filter(|e| e.tracked)
                .map(|e| e.meta.kind);
            for r in records {
                state = match r.op {
                    Op::Deleted => None,
                    _ => Some(r.meta.kind),
                };
            }
            return state;
        }
        self.old_entry(path)
            .filter(|e| e.tracked)
            .map(|e| e.meta.kind)
    }

    /// Whether a newer increment's last record of `path` (of `kind`'s
    /// class) is its deletion: it left the tracked set then.
    fn newer_deletion(&self, path: &RelPath, kind: Kind) -> bool {
        self.newer.get(path).is_some_and(|records| {
            records
                .iter()
                .rev()
                .find(|r| same_class(r.meta.kind, kind))
                .is_some_and(|r| r.op == Op::Deleted)
        })
    }

    /// The last addition record of a newer increment for `path`.
    fn newer_addition(&self, path: &RelPath) -> Option<&Record> {
        let records = self.newer.get(path)?;
        match records.last() {
            Some(r) if r.op != Op::Deleted => Some(r),
            _ => None,
        }
    }
}

/// A carried version in `track/`: its record and inode.
struct CarriedFile {
    record: FileRecord,
    stat: Stat,
}

/// Look at the destination and say what repair will do. Reads only.
pub fn assess(store: &Store) -> Result<Assessment, StoreError> {
    let mut out = Assessment::default();
    let tmp = store.state_dir(TMP)?;
    out.tmp_files = match &tmp {
        Some(d) => d.entries().at(&store.state_path(TMP))?.len(),
        None => 0,
    };
    let dirty = store.state_has(DIRTY);
    let index_path = store.index_path();
    let mut rebuild = dirty;
    let old = match IndexFile::open(store.state(), &index_path) {
        Ok(Some(file)) => {
            let index = file.load()?;
            if index.version < 2 {
                out.notes.push(format!(
                    "{}: written by an older strata; upgraded (owners, xattrs, directories \
                     and hardlinks are now kept)",
                    index_path.display()
                ));
                rebuild = true;
            }
            index
        }
        Ok(None) => {
            if store.mirror().at(&store.mirror_path())?.is_some() {
                out.notes.push(format!(
                    "{}: missing; rebuilt from the mirror",
                    index_path.display()
                ));
                rebuild = true;
            }
            Index::default()
        }
        Err(StoreError::Corrupt { path, message }) => {
            out.notes.push(format!(
                "{}: {message}; rebuilt from the mirror",
                path.display()
            ));
            rebuild = true;
            Index::default()
        }
        Err(e) => return Err(e),
    };

    let mut committed = Committed {
        newer: HashMap::new(),
        last: old.last_increment.clone(),
        old,
    };
    let last_name = committed.last.as_deref().and_then(IncrementName::parse);
    for name in store.increments()? {
        if last_name.as_ref().is_some_and(|last| name <= *last) {
            continue;
        }
        let inc = store.increment(&name)?;
        if let Ok(meta) = inc.load_meta() {
            for record in &meta.files {
                if let Ok(r) = record.check() {
                    committed.newer.entry(r.path.clone()).or_default().push(r);
                }
            }
            rebuild = true;
        }
        committed.last = Some(name.to_string());
    }

    // Interrupted increments.
    if let Some(inprogress) = store.state_dir(INPROGRESS)? {
        out.folders = Store::increment_names_in(&inprogress, &store.state_path(INPROGRESS))?;
    }
    if !out.folders.is_empty() {
        rebuild = true;
    }
    let mirror = store.mirror().at(&store.mirror_path())?;
    let mut carried_files: BTreeMap<RelPath, CarriedFile> = BTreeMap::new();
    // Paths that rollbacks will put back, with the stat of what goes back.
    let mut rolled: BTreeMap<RelPath, Stat> = BTreeMap::new();
    let mut made_dirs: HashSet<RelPath> = HashSet::new();
    for name in &out.folders {
        let inc = store.increment_in(INPROGRESS, name)?;
        if let Some(deleted) = inc.part(Part::Deleted).at(&inc.path)? {
            for (rel, st) in walk(&deleted).at(&inc.path)? {
                if st.file_type == FileTypeOf::Dir {
                    continue;
                }
                match free_in_mirror(mirror.as_ref(), &rel, &st) {
                    Free::Yes { missing_dirs }
                        if !rolled.contains_key(&rel) && !carried_files.contains_key(&rel) =>
                    {
                        made_dirs.extend(missing_dirs);
                        rolled.insert(rel.clone(), st);
                        out.rollbacks.push((name.clone(), rel));
                    }
                    Free::SameInode => out.drop_links.push((name.clone(), rel)),
                    _ => {
                        // The deletion stands.
                        let mut entry = stat_entry(&rel, &st);
                        entry.tracked = true;
                        out.carried.entry(rel).or_default().push(FileRecord::new(
                            &entry,
                            Op::Deleted,
                            &Xattrs::default(),
                        ));
                    }
                }
            }
        }
        if let Some(track) = inc.part(Part::Track).at(&inc.path)? {
            for (rel, st) in walk(&track).at(&inc.path)? {
                if st.file_type == FileTypeOf::Dir {
                    continue;
                }
                let (dir, fname) = track
                    .parent_of(rel.as_bytes())
                    .at(&inc.part_path(Part::Track, &rel))?;
                let shown = inc.part_path(Part::Track, &rel);
                let kind = st.kind().unwrap_or(Kind::File);
                let hash = crate::fs::hash_in(&dir, fname, kind).at(&shown)?;
                let xattrs = if kind == Kind::File {
                    let f = dir.open_read(fname).at(&shown)?;
                    xattr::read_all(&f).at(&shown)?
                } else {
                    Xattrs::default()
                };
                let mut entry = stat_entry(&rel, &st);
                entry.tracked = true;
                entry.set_hash(Some(hash));
                let op = match committed.tracked_kind(&rel) {
                    Some(k) if same_class(k, kind) => Op::Changed,
                    _ => Op::New,
                };
                // A newer folder's version of the same path wins.
                carried_files.insert(
                    rel,
                    CarriedFile {
                        record: FileRecord::new(&entry, op, &xattrs),
                        stat: st,
                    },
                );
            }
        }
    }
    for (rel, c) in &carried_files {
        let records = out.carried.entry(rel.clone()).or_default();
        records.retain(|r| r.op == Op::Deleted);
        records.push(c.record.clone());
    }

    if rebuild {
        if dirty {
            out.notes
                .push("an interrupted run was repaired: index rebuilt from the mirror".into());
        }
        let mut seen = match &mirror {
            Some(m) => walk(m).at(&store.mirror_path())?,
            None => Vec::new(),
        };
        for (rel, st) in &rolled {
            seen.push((rel.clone(), *st));
        }
        for d in &made_dirs {
            if let Some(e) = committed.old_entry(d).filter(|e| e.meta.kind == Kind::Dir) {
                let mut st = fake_dir_stat();
                st.mode = u32::from(e.meta.mode);
                seen.push((d.clone(), st));
            }
        }
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        seen.dedup_by(|a, b| a.0 == b.0);
        let mirror_dirs: HashSet<&RelPath> = seen
            .iter()
            .filter(|(_, st)| st.file_type == FileTypeOf::Dir)
            .map(|(p, _)| p)
            .collect();
        // Tracked directories of the committed state that are gone.
        if !out.folders.is_empty() {
            let mut gone: Vec<Entry> = committed
                .old
                .entries
                .iter()
                .filter(|e| e.meta.kind == Kind::Dir && e.tracked && !mirror_dirs.contains(&e.path))
                .filter(|e| committed.tracked_kind(&e.path) == Some(Kind::Dir))
                .cloned()
                .collect();
            gone.sort_by(|a, b| a.path.cmp(&b.path));
            for e in gone {
                let records = out.carried.entry(e.path.clone()).or_default();
                records.insert(0, FileRecord::new(&e, Op::Deleted, &Xattrs::default()));
            }
        }
        let entries = seen
            .iter()
            .filter(|(_, st)| st.file_type != FileTypeOf::Special)
            .map(|(rel, st)| rebuild_entry(rel, st, &committed, &carried_files, mirror.as_ref()))
            .collect();
        out.rebuilt = Some(Index {
            entries,
            last_increment: committed.last.clone(),
            version: 2,
        });
    }
    Ok(out)
}

fn fake_dir_stat() -> Stat {
    Stat {
        file_type: FileTypeOf::Dir,
        mode: 0o700,
        size: 0,
        uid: 0,
        gid: 0,
        mtime: Timestamp::default(),
        ctime: ChangeTime::UNKNOWN,
        atime: Timestamp::default(),
        dev: 0,
        ino: 0,
        nlink: 1,
        blocks: 0,
    }
}

/// An entry from a stat of a mirror or increment inode (the link key is
/// the source's, so it is not known here).
fn stat_entry(rel: &RelPath, st: &Stat) -> Entry {
    let mut meta = st.meta().unwrap_or_else(|| stale(Kind::File));
    meta.link = 0;
    Entry {
        path: rel.clone(),
        meta,
        ctime: ChangeTime::UNKNOWN,
        tracked: false,
        digests: Digests::new(None, None),
    }
}

/// The index entry for a mirror entry after an interrupted run.
fn rebuild_entry(
    rel: &RelPath,
    st: &Stat,
    committed: &Committed,
    carried: &BTreeMap<RelPath, CarriedFile>,
    mirror: Option<&Dir>,
) -> Entry {
    // What nothing accounts for and the history does not track is taken as
    // the mirror holds it: every mirror copy was complete (content, owner,
    // xattrs, mode, times) before it got its name, so its metadata is what
    // a metadata comparison needs. What the history tracks is marked stale
    // instead, so that the next run records it.
    let as_in_mirror = |kind: Kind| {
        let mut e = stat_entry(rel, st);
        e.meta.kind = kind;
        let xattrs = mirror.and_then(|m| match kind {
            Kind::Dir => m
                .open_dir(rel.as_bytes())
                .ok()
                .and_then(|d| xattr::read_all(&d).ok()),
            Kind::File => m
                .open_file(rel.as_bytes())
                .ok()
                .and_then(|(f, _)| xattr::read_all(&f).ok()),
            Kind::Symlink => Some(Xattrs::default()),
        });
        e.set_xattrs(xattrs.map(|x| x.digest()));
        e
    };
    let kind = st.kind().expect("special files are left out");
    let old = committed
        .old_entry(rel)
        .filter(|o| same_class(o.meta.kind, kind));
    let tracked_then = committed
        .tracked_kind(rel)
        .is_some_and(|k| same_class(k, kind));
    if kind == Kind::Dir {
        // A commit that got past its rename recorded the directory's new
        // metadata; else the old entry stands (the next run puts every
        // directory's metadata back).
        if let Some(r) = committed
            .newer_addition(rel)
            .filter(|r| r.meta.kind == Kind::Dir)
        {
            let mut e = r.entry();
            e.tracked = true;
            return e;
        }
        if let Some(o) = old {
            let mut e = o.clone();
            e.tracked &= !committed.newer_deletion(rel, kind);
            return e;
        }
        if !tracked_then {
            return as_in_mirror(Kind::Dir);
        }
        return Entry {
            path: rel.clone(),
            meta: stale(Kind::Dir),
            ctime: ChangeTime::UNKNOWN,
            tracked: tracked_then,
            digests: Digests::new(None, Some(NO_XATTRS)),
        };
    }
    if let Some(c) = carried.get(rel)
        && c.stat.same_inode(st)
        && let Ok(r) = c.record.check()
    {
        return r.entry();
    }
    if let Some(r) = committed.newer_addition(rel)
        && r.meta.kind == kind
        && matches(&r.meta, st)
    {
        let mut e = r.entry();
        if !r.has_owner {
            e.meta.uid = st.uid;
            e.meta.gid = st.gid;
        }
        return e;
    }
    if let Some(o) = old
        && o.meta.kind == kind
        && matches(&o.meta, st)
    {
        let mut e = o.clone();
        e.tracked &= !committed.newer_deletion(rel, kind);
        if e.meta.uid == UNKNOWN_OWNER {
            // A version-1 entry: the owner the mirror kept, no xattrs (that
            // strata kept none), and a ctime that makes the next run look.
            e.meta.uid = st.uid;
            e.meta.gid = st.gid;
            e.set_xattrs(Some(NO_XATTRS));
            e.ctime = ChangeTime::UNKNOWN;
        }
        return e;
    }
    if !tracked_then {
        return as_in_mirror(kind);
    }
    Entry {
        path: rel.clone(),
        meta: stale(kind),
        ctime: ChangeTime::UNKNOWN,
        tracked: tracked_then,
        digests: Digests::new(None, Some(NO_XATTRS)),
    }
}

/// Whether a path is free in the mirror for a deletion to move back.
enum Free {
    /// Free; these folders on its way must be made.
    Yes { missing_dirs: Vec<RelPath> },
    /// The mirror holds this very inode (a second link).
    SameInode,
    /// Something is there, or on the way (a symlink, a file).
    No,
}

fn free_in_mirror(mirror: Option<&Dir>, rel: &RelPath, kept: &Stat) -> Free {
    let Some(mirror) = mirror else {
        return Free::No;
    };
    let mut missing = Vec::new();
    let mut up = rel.parent();
    // The deepest folder on the way that exists must be a real directory.
    while let Some(dir) = up {
        match mirror.open_dir(dir.as_bytes()) {
            Ok(d) => {
                if missing.is_empty() {
                    return match d.stat_at(rel.file_name()) {
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Free::Yes {
                            missing_dirs: missing,
                        },
                        // A second link of a file still in the mirror (it
                        // was leaving the tracked set): the next run redoes
                        // it.
                        Ok(st) if st.same_inode(kept) => Free::SameInode,
                        _ => Free::No,
                    };
                }
                // A missing folder below an existing one: its name must be
                // free (not a file or symlink standing in the way).
                let first = missing.last().expect("missing holds one");
                let first: &RelPath = first;
                return match d.stat_at(first.file_name()) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Free::Yes {
                        missing_dirs: missing,
                    },
                    _ => Free::No,
                };
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(dir.clone());
                up = dir.parent();
            }
            Err(_) => return Free::No,
        }
    }
    Free::No
}

/// Carry out an assessment. Call with the job's lock held.
pub fn repair(store: &Store, a: Assessment, faults: &Faults) -> Result<Repaired, StoreError> {
    let root = RelPath::root();
    let mut repairs = a.notes.clone();
    // 1. Temp files.
    if a.tmp_files > 0 {
        faults.point("recover.tmp", &root);
        store.state().remove_all(TMP).at(&store.state_path(TMP))?;
        store.tmp()?;
    }
    let newest = a.folders.last().cloned();
    // 3. Deletions back into the mirror; second links dropped.
    if !a.rollbacks.is_empty() || !a.drop_links.is_empty() {
        let mirror = store.create_mirror()?;
        for (folder, rel) in &a.rollbacks {
            let inc = store.increment_in(INPROGRESS, folder)?;
            let shown = inc.part_path(Part::Deleted, rel);
            let deleted = inc
                .part(Part::Deleted)
                .at(&shown)?
                .ok_or_else(|| StoreError::io(&shown, io::Error::from(io::ErrorKind::NotFound)))?;
            let (from, name) = deleted.parent_of(rel.as_bytes()).at(&shown)?;
            let parent = rel.parent().unwrap_or_default();
            let to = mirror
                .create_dirs(parent.as_bytes(), 0o700)
                .at(&store.mirror_path().join(parent.as_path()))?;
            faults.point("recover.rollback", rel);
            from.rename_noreplace(name, &to, name)
                .at(&store.mirror_path().join(rel.as_path()))?;
            repairs.push(format!("{rel}: deletion rolled back into the mirror"));
        }
        for (folder, rel) in &a.drop_links {
            let inc = store.increment_in(INPROGRESS, folder)?;
            if let Some(deleted) = inc.part(Part::Deleted).at(&inc.path)?
                && let Ok((dir, name)) = deleted.parent_of(rel.as_bytes())
            {
                faults.point("recover.unlink", rel);
                let _ = dir.unlink(name);
            }
        }
        mirror.sync().at(&store.mirror_path())?;
    }
    // Older interrupted folders fold into the newest.
    if a.folders.len() > 1 {
        let newest_name = newest.as_ref().expect("a newest folder");
        let target = store.increment_in(INPROGRESS, newest_name)?;
        for folder in &a.folders[..a.folders.len() - 1] {
            let inc = store.increment_in(INPROGRESS, folder)?;
            for part in [Part::Track, Part::Deleted] {
                let Some(from) = inc.part(part).at(&inc.path)? else {
                    continue;
                };
                for (rel, st) in walk(&from).at(&inc.path)? {
                    if st.file_type == FileTypeOf::Dir {
                        continue;
                    }
                    let to = target.create_part(part).at(&target.path)?;
                    let parent = rel.parent().unwrap_or_default();
                    let to = to.create_dirs(parent.as_bytes(), 0o700).at(&target.path)?;
                    let (fdir, name) = from.parent_of(rel.as_bytes()).at(&inc.path)?;
                    let _ = fdir.rename_noreplace(name, &to, name);
                }
            }
            let inprogress = store
                .state()
                .child_dir(INPROGRESS)
                .at(&store.state_path(INPROGRESS))?;
            faults.point("recover.merge", &root);
            inprogress
                .remove_all(folder.to_string().as_bytes())
                .at(&inc.path)?;
        }
    }
    let mut increment = newest;
    if a.carried.is_empty()
        && let Some(name) = increment.take()
    {
        // Nothing to carry: the interrupted folder goes.
        let inprogress = store
            .state()
            .child_dir(INPROGRESS)
            .at(&store.state_path(INPROGRESS))?;
        faults.point("recover.discard", &root);
        inprogress
            .remove_all(name.to_string().as_bytes())
            .at(&store.state_path(INPROGRESS))?;
    }
    let redo_dirs = a.rebuilt.is_some();
    let index = match a.rebuilt {
        Some(index) => {
            if a.carried.is_empty() {
                // Make it the committed one now.
                faults.point("recover.index", &root);
                save_index(store, &index)?;
                faults.point("recover.clean", &root);
                clear_dirty(store)?;
            }
            StartIndex::Memory(index)
        }
        None => match IndexFile::open(store.state(), &store.index_path())? {
            Some(file) => StartIndex::File(file),
            None => StartIndex::Memory(Index::default()),
        },
    };
    if store.state_has(DIRTY) && increment.is_none() && a.carried.is_empty() {
        clear_dirty(store)?;
    }
    Ok(Repaired {
        index,
        increment,
        carried: a.carried,
        repairs,
        redo_dirs,
    })
}

/// The committed state without repairing (for a dry run): the index as
/// recovery would rebuild it, or the index file.
pub fn start_readonly(store: &Store) -> Result<(StartIndex, Assessment), StoreError> {
    let a = assess(store)?;
    let index = match a.rebuilt.clone() {
        Some(index) => StartIndex::Memory(index),
        None => match IndexFile::open(store.state(), &store.index_path())? {
            Some(file) => StartIndex::File(file),
            None => StartIndex::Memory(Index::default()),
        },
    };
    Ok((index, a))
}

/// The start of a run: repair if something needs it, else the index file
/// as it is. Call with the job's lock held.
pub fn start(store: &Store, faults: &Faults) -> Result<Repaired, StoreError> {
    if !needs_recovery(store) {
        match IndexFile::open(store.state(), &store.index_path()) {
            Ok(Some(file)) if file.version() >= 2 => {
                return Ok(Repaired {
                    index: StartIndex::File(file),
                    increment: None,
                    carried: Carried::new(),
                    repairs: Vec::new(),
                    redo_dirs: false,
                });
            }
            Ok(None) if store.mirror().at(&store.mirror_path())?.is_none() => {
                return Ok(Repaired {
                    index: StartIndex::Memory(Index::default()),
                    increment: None,
                    carried: Carried::new(),
                    repairs: Vec::new(),
                    redo_dirs: false,
                });
            }
            _ => {}
        }
    }
    let a = assess(store)?;
    repair(store, a, faults)
}
