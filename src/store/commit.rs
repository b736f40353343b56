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
use super::{DIRTY, INPROGRESS, IncrementDir, IncrementName, IoContext, Store, StoreError};
use crate::entry::{Entry, EntryWalk, RelPath, SliceWalk};
use crate::faults::Faults;
use crate::fs::Dir;
use crate::report::Stats;

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
#[derive(Debug, Clone)]
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
        store.sync_filesystem().map_err(before)?;
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
        Ok(Committed { increment })
    }
}

/// Append a run to the run log.
pub fn log_run(store: &Store, record: &RunRecord) -> Result<(), StoreError> {
    append_run(store.state(), &store.state_path(super::meta::RUNS), record)
}

/// The path of the dirty marker, for messages.
pub fn dirty_marker(store: &Store) -> std::path::PathBuf {
    dirty_path(store)
}
