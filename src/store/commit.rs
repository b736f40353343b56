//! The commit protocol: a run's changes to a destination as one
//! transaction, whose inverse is [`super::recover`]. Documented here once;
//! the README and the other modules point here.
//!
//! ```text
//! begin     write .strata/dirty (atomically), make .strata/inprogress/<name>/
//!           (or continue the one an interrupted run left: its records are
//!           "carried")
//! stage     apply changes the mirror and fills <name>/track/, <name>/deleted/;
//!           every temp file is in .strata/tmp/; new inodes are complete
//!           (content, owner, xattrs, mode, times) before they get a name
//! commit    1. syncfs                     the staged data is durable
//!           2. <name>/<name>.json         the metadata (temp in tmp/, renamed in)
//!           3. rename <name>/ to the destination: the increment exists
//!              (a run that recorded nothing removes the folder instead)
//!           4. .strata/index              the new index (temp in tmp/, renamed)
//!           5. remove .strata/dirty
//!           6. append to .strata/runs.jsonl
//! ```
//!
//! Each step is atomic, so a crash leaves one of a few states, and
//! recovery, run first by the next run, tells them apart: `dirty` present
//! means the mirror may differ from the index (rebuilt from a walk of the
//! mirror); an increment newer than the index's last one means step 3 was
//! passed (its records are committed); a folder in `inprogress/` means step
//! 3 was not (its `track/` and `deleted/` entries are carried into the next
//! run's increment, so every change is recorded in exactly one increment);
//! whatever is in `tmp/` was never visible and goes.

use std::io;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::index::{Index, IndexFile, Writer};
use super::meta::{FileRecord, IncrementMeta, META_VERSION, RunRecord, append_run, format_time};
use super::recover::Carried;
use super::{DIRTY, INPROGRESS, IncrementDir, IncrementName, IoContext, Store, StoreError};
use crate::entry::Stats;
use crate::entry::{Entry, EntryWalk, Op, RelPath, SliceWalk};
use crate::faults::Faults;
use crate::fs::Dir;

/// The committed index a run starts from.
#[derive(Debug)]
pub enum StartIndex {
    /// The index file, checked, read as the run goes.
    File(IndexFile),
    /// An index in memory (rebuilt by recovery, or none yet).
    Memory(Index),
}

impl StartIndex {
    /// Number of entries.
    pub fn len(&self) -> u64 {
        match self {
            StartIndex::File(f) => f.len(),
            StartIndex::Memory(i) => i.entries.len() as u64,
        }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest increment committed with (or before) this index.
    pub fn last_increment(&self) -> Option<&str> {
        match self {
            StartIndex::File(f) => f.last_increment(),
            StartIndex::Memory(i) => i.last_increment.as_deref(),
        }
    }

    /// Run `f` on a walk of the entries. An error when reading the file
    /// broke off: what `f` made of the walk is then void.
    pub fn walk<R>(&self, f: impl FnOnce(&mut dyn EntryWalk) -> R) -> Result<R, StoreError> {
        match self {
            StartIndex::File(file) => {
                // The file was checked whole when opened; a walk may stop
                // early, and only a failure on the way voids it.
                let mut cursor = file.cursor()?;
                let result = f(&mut cursor);
                cursor.check()?;
                Ok(result)
            }
            StartIndex::Memory(index) => Ok(f(&mut SliceWalk(&index.entries))),
        }
    }
}

/// One path's new state in the index: its entry, or `None` when it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The path.
    pub path: RelPath,
    /// Its new entry.
    pub entry: Option<Entry>,
}

/// Write the new index: `old`'s entries, each path that `updates` names
/// (sorted by path, each once) replaced by its new entry or dropped.
/// `count` is the number of entries that makes.
pub fn write_index(
    store: &Store,
    old: &StartIndex,
    updates: impl Iterator<Item = Update>,
    last_increment: Option<&str>,
    count: u64,
) -> Result<(), StoreError> {
    let path = store.index_path();
    let mut out = Writer::create(store.state(), &path, last_increment, count)?;
    old.walk(|olds| -> Result<(), StoreError> {
        for update in updates {
            let p = update.path.as_bytes();
            while let Some(entry) = olds.current().filter(|e| e.path < p) {
                out.entry(&entry)?;
                olds.advance();
            }
            if olds.current().is_some_and(|e| e.path == p) {
                olds.advance();
            }
            if let Some(entry) = &update.entry {
                out.entry(&entry.view())?;
            }
        }
        while let Some(entry) = olds.current() {
            out.entry(&entry)?;
            olds.advance();
        }
        Ok(())
    })??;
    out.commit()
}

/// Save a whole index (after recovery rebuilt it).
pub fn save_index(store: &Store, index: &Index) -> Result<(), StoreError> {
    let mut out = Writer::create(
        store.state(),
        &store.index_path(),
        index.last_increment.as_deref(),
        index.entries.len() as u64,
    )?;
    for e in &index.entries {
        out.entry(&e.view())?;
    }
    out.commit()
}

/// An increment's metadata as [`IncrementMeta`] serializes it, with the
/// records made one at a time while writing: a first run records every
/// file, and holding them all (or the text) would cost more memory than the
/// rest of the run.
#[derive(Serialize)]
struct MetaOut<'a, F: Serialize> {
    version: u32,
    job: &'a str,
    increment: String,
    start: String,
    finish: String,
    files: F,
    stats: Stats,
}

/// Records in path order, serialized as a sequence as they are made.
pub struct RecordStream<I>(std::cell::RefCell<Option<I>>);

impl<I: Iterator<Item = FileRecord>> RecordStream<I> {
    /// Stream these records.
    pub fn new(records: I) -> RecordStream<I> {
        RecordStream(std::cell::RefCell::new(Some(records)))
    }
}

impl<I: Iterator<Item = FileRecord>> Serialize for RecordStream<I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let records = self.0.borrow_mut().take().expect("serialized once");
        s.collect_seq(records)
    }
}

/// What a commit leaves behind.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// The increment that now exists, if the run recorded anything.
    pub increment: Option<IncrementName>,
    /// Seconds the commit waited for the staged data to be durable (the
    /// bench's `sync_s`).
    pub sync_s: f64,
}

/// A commit that did not go through.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct CommitError {
    /// The increment, when the failure came after it was committed (the
    /// backup is in the history; the next run repairs the index).
    pub committed: Option<IncrementName>,
    /// What failed.
    pub source: StoreError,
}

/// What a commit writes.
#[derive(Debug)]
pub struct Closing<'a, I, U> {
    /// The job's name.
    pub job: &'a str,
    /// When the run started.
    pub start: DateTime<Utc>,
    /// The run's statistics.
    pub stats: Stats,
    /// The increment's records in path order (`None`: no increment).
    pub files: Option<I>,
    /// The index the run started from.
    pub old: &'a StartIndex,
    /// The index's changed paths, in path order, made as they are written.
    pub updates: U,
    /// The number of entries the new index holds.
    pub count: u64,
}

/// A run's changes, in progress: begun, staged into, then committed.
#[derive(Debug)]
pub struct Transaction<'s> {
    store: &'s Store,
    /// The increment being written (in `.strata/inprogress/`).
    pub increment: IncrementDir,
    /// `.strata/tmp/`.
    pub tmp: Dir,
    faults: Faults,
}

fn dirty_path(store: &Store) -> std::path::PathBuf {
    store.state_path(DIRTY)
}

/// Write `.strata/dirty`: from here on the mirror may differ from the index.
pub fn mark_dirty(store: &Store, tmp: &Dir) -> Result<(), StoreError> {
    store
        .state()
        .write_atomic(DIRTY, tmp, b"dirty.new", |w| {
            w.write_all(b"a run is changing the mirror\n")
        })
        .at(&dirty_path(store))
}

/// Remove `.strata/dirty`: the index describes the mirror again.
pub fn clear_dirty(store: &Store) -> Result<(), StoreError> {
    match store.state().unlink(DIRTY) {
        Ok(()) => store.state().sync().at(&store.state_path(b"")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(&dirty_path(store), e)),
    }
}

impl<'s> Transaction<'s> {
    /// Begin: the dirty marker, then the increment folder `name` in
    /// `.strata/inprogress/` (an interrupted run's, continued, or a new one).
    pub fn begin(
        store: &'s Store,
        name: &IncrementName,
        faults: &Faults,
    ) -> Result<Transaction<'s>, StoreError> {
        let tmp = store.tmp()?;
        faults.point("commit.begin", &RelPath::root());
        mark_dirty(store, &tmp)?;
        let text = name.to_string();
        let rel = [INPROGRESS, b"/", text.as_bytes()].concat();
        let path = store.state_path(INPROGRESS).join(&text);
        let dir = store.state().create_dirs(&rel, 0o700).at(&path)?;
        Ok(Transaction {
            store,
            increment: IncrementDir {
                name: name.clone(),
                dir,
                path,
            },
            tmp,
            faults: faults.clone(),
        })
    }

    /// Commit: data durable, metadata, folder name, index, dirty marker.
    pub fn commit<I: Iterator<Item = FileRecord>, U: Iterator<Item = Update>>(
        self,
        closing: Closing<'_, I, U>,
    ) -> Result<Committed, CommitError> {
        let Closing {
            job,
            start,
            stats,
            files,
            old,
            updates,
            count,
        } = closing;
        let root = RelPath::root();
        let store = self.store;
        let before = |source| CommitError {
            committed: None,
            source,
        };
        self.faults.point("commit.sync", &root);
        let synced = std::time::Instant::now();
        store.sync_filesystem().map_err(before)?;
        let sync_s = synced.elapsed().as_secs_f64();
        let name = self.increment.name.clone();
        let text = name.to_string();
        let mut last = old.last_increment().map(str::to_string);
        let increment = match files {
            None => {
                self.faults.point("commit.discard", &root);
                let inprogress = store
                    .state()
                    .child_dir(INPROGRESS)
                    .at(&store.state_path(INPROGRESS))
                    .map_err(before)?;
                inprogress
                    .remove_all(text.as_bytes())
                    .at(&self.increment.path)
                    .map_err(before)?;
                None
            }
            Some(files) => {
                let meta = MetaOut {
                    version: META_VERSION,
                    job,
                    increment: text.clone(),
                    start: format_time(start),
                    finish: format_time(Utc::now()),
                    files: RecordStream::new(files),
                    stats,
                };
                self.faults.point("commit.meta", &root);
                let meta_name = IncrementMeta::file_name(&text);
                self.increment
                    .dir
                    .write_atomic(meta_name.as_bytes(), &self.tmp, b"meta.new", |w| {
                        serde_json::to_writer_pretty(&mut *w, &meta)?;
                        w.write_all(b"\n")
                    })
                    .at(&self.increment.meta_path())
                    .map_err(before)?;
                self.faults.point("commit.rename", &root);
                let inprogress = store
                    .state()
                    .child_dir(INPROGRESS)
                    .at(&store.state_path(INPROGRESS))
                    .map_err(before)?;
                inprogress
                    .rename_noreplace(text.as_bytes(), store.root(), text.as_bytes())
                    .at(&store.path().join(&text))
                    .map_err(before)?;
                store.root().sync().at(store.path()).map_err(before)?;
                last = Some(text.clone());
                Some(name)
            }
        };
        let after = |source| CommitError {
            committed: increment.clone(),
            source,
        };
        self.faults.point("commit.index", &root);
        write_index(store, old, updates, last.as_deref(), count).map_err(after)?;
        self.faults.point("commit.clean", &root);
        clear_dirty(store).map_err(after)?;
        Ok(Committed { increment, sync_s })
    }
}

/// The increment's records: this run's, and those an interrupted run left
/// (carried) for paths this run does not record, merged in path order as
/// they are written. Where this run records a carried path anew, its op is
/// relabelled against the committed history (which the carried record
/// tells): a path the history did not have is `new`, and its deletion is no
/// deletion at all.
pub fn merge_records(
    carried: Carried,
    fresh: impl Iterator<Item = FileRecord>,
) -> impl Iterator<Item = FileRecord> {
    let mut carried = carried.into_iter().peekable();
    let mut fresh = fresh.peekable();
    let mut out: std::collections::VecDeque<FileRecord> = Default::default();
    std::iter::from_fn(move || {
        loop {
            if let Some(r) = out.pop_front() {
                return Some(r);
            }
            let fresh_path = fresh
                .peek()
                .map(|r| r.rel_path().expect("strata's own records are valid"));
            let order = match (carried.peek(), &fresh_path) {
                (None, None) => return None,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((c, _)), Some(f)) => c.cmp(f),
            };
            let path = match order {
                std::cmp::Ordering::Less => {
                    let (_, mut records) = carried.next().expect("peeked");
                    records.sort_by_key(|r| r.op != Op::Deleted);
                    out.extend(records);
                    continue;
                }
                _ => fresh_path.expect("a fresh record"),
            };
            let mut records = Vec::new();
            while fresh
                .peek()
                .is_some_and(|r| r.rel_path().is_ok_and(|p| p == path))
            {
                records.push(fresh.next().expect("peeked"));
            }
            if order == std::cmp::Ordering::Equal {
                let (_, old) = carried.next().expect("peeked");
                records = relabel(old, records);
            }
            records.sort_by_key(|r| r.op != Op::Deleted);
            out.extend(records);
        }
    })
}

/// This run's records of a path an interrupted run had recorded (`old`),
/// relabelled against the committed history that `old` tells of.
fn relabel(old: Vec<FileRecord>, fresh: Vec<FileRecord>) -> Vec<FileRecord> {
    let existed = |kind: &str| {
        let is_dir = kind == "dir";
        old.iter()
            .any(|r| (r.kind == "dir") == is_dir && matches!(r.op, Op::Changed | Op::Deleted))
    };
    let mut records: Vec<FileRecord> = fresh
        .into_iter()
        .filter_map(|mut r| {
            let existed = existed(&r.kind);
            match r.op {
                Op::Deleted if !existed => None,
                Op::Deleted => Some(r),
                _ => {
                    r.op = if existed { Op::Changed } else { Op::New };
                    Some(r)
                }
            }
        })
        .collect();
    // Carried deletions of the other class stand beside them.
    let classes: Vec<bool> = records.iter().map(|r| r.kind == "dir").collect();
    for r in old {
        if r.op == Op::Deleted && !classes.contains(&(r.kind == "dir")) {
            records.insert(0, r);
        }
    }
    records
}

/// Append a run to the run log.
pub fn log_run(store: &Store, record: &RunRecord) -> Result<(), StoreError> {
    append_run(store.state(), &store.state_path(super::meta::RUNS), record)
}

/// The path of the dirty marker, for messages.
pub fn dirty_marker(store: &Store) -> std::path::PathBuf {
    dirty_path(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Digests, Entry, Kind, Xattrs};
    use crate::store::meta::FileRecord;

    fn rec(path: &str, op: Op, kind: Kind) -> FileRecord {
        let e = Entry {
            path: RelPath::parse(path.as_bytes()).unwrap(),
            meta: crate::entry::Meta {
                kind,
                size: 1,
                mtime: Default::default(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                link: 0,
            },
            ctime: Default::default(),
            tracked: true,
            digests: Digests::new(None, None),
        };
        FileRecord::new(&e, op, &Xattrs::default())
    }

    fn ops(records: &[FileRecord]) -> Vec<(String, Op, String)> {
        records
            .iter()
            .map(|r| (r.path.clone(), r.op, r.kind.clone()))
            .collect()
    }

    #[test]
    fn carried_records_merge_with_the_runs_own() {
        let mut carried = Carried::new();
        carried.insert(
            RelPath::from_bytes(b"a"),
            vec![rec("a", Op::New, Kind::File)],
        );
        carried.insert(
            RelPath::from_bytes(b"b"),
            vec![rec("b", Op::Changed, Kind::File)],
        );
        carried.insert(
            RelPath::from_bytes(b"c"),
            vec![rec("c", Op::New, Kind::File)],
        );
        carried.insert(
            RelPath::from_bytes(b"x"),
            vec![rec("x", Op::Deleted, Kind::File)],
        );
        let fresh = vec![
            rec("a", Op::Changed, Kind::File), // still new to the history
            rec("c", Op::Deleted, Kind::File), // came and went
            rec("d", Op::New, Kind::File),
            rec("x", Op::New, Kind::Dir), // a file replaced by a directory
        ];
        let merged: Vec<FileRecord> = merge_records(carried, fresh.into_iter()).collect();
        let s = |x: &str| x.to_string();
        assert_eq!(
            ops(&merged),
            [
                (s("a"), Op::New, s("file")),
                (s("b"), Op::Changed, s("file")),
                (s("d"), Op::New, s("file")),
                (s("x"), Op::Deleted, s("file")),
                (s("x"), Op::New, s("dir")),
            ]
        );
    }
}
