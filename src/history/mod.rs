//! The history model: a job's increments, read from their metadata, and the
//! one answer to "which version of which path existed at increment K".
//!
//! Takes an opened destination ([`Store`]); returns a [`History`] (the
//! increments oldest first, each with its metadata). The tracked state at
//! increment K is the replay of the ops of increments 1..=K: `new` and
//! `changed` set the path's version to (K, record), `deleted` removes the
//! path; directories are entries like files. A version's bytes live at
//! `backup_K/track/<path>`. [`restore`], [`prune`], [`verify`], [`diff`],
//! `strata history`, `show`, `cat` and `mount` all ask this module, so they
//! cannot disagree.

pub mod at;
pub mod diff;
pub mod prune;
pub mod prune_remote;
pub mod restore;
pub mod retention;
pub mod usage;
pub mod verify;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::entry::{Op, RelPath};
use crate::store::dest::Destination;
use crate::store::meta::{BadRecord, FileRecord, IncrementMeta};
use crate::store::object::Remote;
use crate::store::{IncrementDir, IncrementName, PRUNING, Part, Store, StoreError};

/// Why the history could not be read or a point in it not found.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A state file or increment could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `--at` named an increment that does not exist.
    #[error("no increment named {name}{}", hint(known))]
    UnknownIncrement {
        /// The name asked for.
        name: String,
        /// The increments there are.
        known: Vec<String>,
    },
    /// `--at` named a time before the first increment.
    #[error("no increment started at or before {at}{}", match first {
        Some(first) => format!(" (the first is {first})"),
        None => " (there is no increment yet)".to_string(),
    })]
    NothingBefore {
        /// The time asked for.
        at: String,
        /// The oldest increment.
        first: Option<String>,
    },
    /// `--at -N` went back further than there are increments.
    #[error("{}", match count {
        0 => "there is no increment yet".to_string(),
        1 => format!("-{back} goes back past the only increment (-0 is the newest)"),
        n => format!("-{back} goes back past the oldest of the {n} increments (-{} is the oldest)", n - 1),
    })]
    TooFarBack {
        /// How many increments back.
        back: usize,
        /// How many there are.
        count: usize,
    },
    /// A record in an increment's metadata is not what strata writes (a
    /// path outside the source, a kind it does not know, …): nothing is
    /// read from or written for it.
    #[error("{increment}: record {index} ({path:?}): {reason}")]
    BadRecord {
        /// The increment.
        increment: String,
        /// The record's position in its `files` list.
        index: usize,
        /// The record's path, as written.
        path: String,
        /// What is wrong.
        reason: BadRecord,
    },
    /// An interrupted prune must be finished before the history reads true.
    #[error(
        "{}: an interrupted prune left this; run `strata prune JOB` (or the \
         next run) to finish it",
        path.display()
    )]
    PendingPrune {
        /// The journal, or an increment folder inside `.strata/pruning/`.
        path: PathBuf,
    },
}

fn hint(known: &[String]) -> String {
    match (known.first(), known.last()) {
        (Some(first), Some(last)) if first != last => {
            format!(" (there are {} from {first} to {last})", known.len())
        }
        (Some(only), _) => format!(" (the only one is {only})"),
        _ => " (there is no increment yet)".to_string(),
    }
}

/// Where an increment's folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Beside the mirror: part of the history.
    Committed,
    /// In `.strata/pruning/`: a prune is merging it away.
    Pruning,
}

/// One increment: its name, where it is, and its metadata (records
/// checked: every path stays below the source).
#[derive(Debug, Clone)]
pub struct Increment {
    /// The folder name, `backup_YYYYMMDD_HHMMSS[_N]`.
    pub name: String,
    /// The name, parsed (it orders the history).
    pub key: IncrementName,
    /// Where the folder is.
    pub place: Place,
    /// The run's start, UTC, from the name (second resolution).
    pub time: DateTime<Utc>,
    /// Its metadata.
    pub meta: IncrementMeta,
    /// The path of each record of `meta.files`, checked.
    pub paths: Vec<RelPath>,
    /// A prune took it out of the visible sequence and has not finished.
    pub pending_prune: bool,
}

impl Increment {
    /// An increment from its metadata; every record is checked.
    pub fn new(
        key: IncrementName,
        place: Place,
        meta: IncrementMeta,
    ) -> Result<Increment, HistoryError> {
        let name = key.to_string();
        let mut paths = Vec::with_capacity(meta.files.len());
        for (index, record) in meta.files.iter().enumerate() {
            match record.check() {
                Ok(r) => paths.push(r.path),
                Err(reason) => {
                    return Err(HistoryError::BadRecord {
                        increment: name,
                        index,
                        path: record.path.clone(),
                        reason,
                    });
                }
            }
        }
        Ok(Increment {
            name,
            time: key.time(),
            key,
            pending_prune: place == Place::Pruning,
            place,
            meta,
            paths,
        })
    }

    /// Read the increment `key` in its place.
    pub fn load(
        store: &Store,
        key: &IncrementName,
        place: Place,
    ) -> Result<Increment, HistoryError> {
        let dir = match place {
            Place::Committed => store.increment(key)?,
            Place::Pruning => store.increment_in(PRUNING, key)?,
        };
        let meta = dir.load_meta()?;
        Increment::new(key.clone(), place, meta)
    }

    /// Open the folder.
    pub fn open(&self, store: &Store) -> Result<IncrementDir, StoreError> {
        match self.place {
            Place::Committed => store.increment(&self.key),
            Place::Pruning => store.increment_in(PRUNING, &self.key),
        }
    }

    /// Where the bytes of the version record `i` holds are: `track/<path>`
    /// for new and changed, `deleted/<path>` (the last version) for deleted.
    pub fn file_of(&self, i: usize) -> (Part, &RelPath) {
        (Part::for_op(self.meta.files[i].op), &self.paths[i])
    }

    /// The records with their paths.
    pub fn records(&self) -> impl Iterator<Item = (&RelPath, &FileRecord)> {
        self.paths.iter().zip(&self.meta.files)
    }
}

/// A version of a path: the increment (index into [`History::increments`])
/// that brought it, and its record there.
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    /// Index of the increment in the history.
    pub increment: usize,
    /// Index of the record in that increment's `files`.
    pub index: usize,
    /// The record (op `new` or `changed`).
    pub record: &'a FileRecord,
}

/// The tracked entries (files, symlinks, directories) that existed at one
/// point: path -> version.
pub type State<'a> = BTreeMap<RelPath, Version<'a>>;

/// A point in the history, as `--at` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// The last run that started at or before this time.
    Time(DateTime<Utc>),
    /// An increment by name.
    Increment(String),
    /// This many increments before the newest (0: the newest).
    Back(usize),
}

impl FromStr for At {
    type Err = String;
    fn from_str(s: &str) -> Result<At, String> {
        if IncrementName::parse(s).is_some() {
            return Ok(At::Increment(s.to_string()));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| At::Time(t.with_timezone(&Utc)))
            .map_err(|_| {
                format!(
                    "{s:?} is neither an RFC 3339 time (2026-03-04T05:06:07Z, \
                     2026-03-04T06:06:07+01:00) nor an increment name (backup_20260304_050607)"
                )
            })
    }
}

/// A job's increments, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The increments, ordered by time then suffix number.
    pub increments: Vec<Increment>,
}

/// What [`History::load_all`] found, problems included.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every readable increment, the ones a prune is merging away included.
    pub history: History,
    /// Increments whose metadata cannot be read, or holds a bad record.
    pub broken: Vec<HistoryError>,
}

impl History {
    /// A history of these increments (sorted here).
    pub fn new(mut increments: Vec<Increment>) -> History {
        increments.sort_by(|a, b| a.key.cmp(&b.key));
        History { increments }
    }

    /// Read the history of `store`. Fails on an unreadable increment, a
    /// record that is not valid, and an unfinished prune, since any of them
    /// would make the answers wrong.
    pub fn load(store: &Store) -> Result<History, HistoryError> {
        let Loaded { history, broken } = History::load_all(store)?;
        if let Some(error) = broken.into_iter().next() {
            return Err(error);
        }
        let journal = prune::journal_path(store);
        if store
            .state()
            .open_dir(b"pruning")
            .is_ok_and(|d| d.stat_at(prune::JOURNAL).is_ok())
        {
            return Err(HistoryError::PendingPrune { path: journal });
        }
        if let Some(pending) = history.increments.iter().find(|i| i.pending_prune) {
            return Err(HistoryError::PendingPrune {
                path: store.state_path(PRUNING).join(&pending.name),
            });
        }
        Ok(history)
    }

    /// Read every increment, the visible ones and those an interrupted prune
    /// left in `.strata/pruning/`; report the unreadable ones rather than
    /// fail (verify lists them, prune refuses).
    pub fn load_all(store: &Store) -> Result<Loaded, HistoryError> {
        let mut loaded = Loaded::default();
        let mut increments = Vec::new();
        for name in store.increments()? {
            match Increment::load(store, &name, Place::Committed) {
                Ok(inc) => increments.push(inc),
                Err(e) => loaded.broken.push(e),
            }
        }
        for name in pending_prunes(store)? {
            match Increment::load(store, &name, Place::Pruning) {
                Ok(inc) => increments.push(inc),
                Err(e) => loaded.broken.push(e),
            }
        }
        loaded.history = History::new(increments);
        Ok(loaded)
    }

    /// Read the history of a destination of either kind.
    pub fn of(dest: &Destination) -> Result<History, HistoryError> {
        match dest {
            Destination::Local(store) => History::load(store),
            Destination::Object(remote) => History::load_remote(remote),
        }
    }

    /// Read the history of an object-store destination: every increment
    /// whose metadata object is there, except that of a staged run the
    /// committed index does not bear (its metadata was written, its index
    /// not: it never committed, and the next run rolls it back).
    /// Fails, naming the journal, while an interrupted prune is unfinished.
    pub fn load_remote(remote: &Remote) -> Result<History, HistoryError> {
        if prune_remote::read_journal(remote)?.is_some() {
            return Err(HistoryError::PendingPrune {
                path: prune_remote::journal_shown(remote),
            });
        }
        History::load_remote_all(remote)
    }

    /// [`History::load_remote`] without the check for an interrupted
    /// prune (the prune that finishes it reads this).
    pub fn load_remote_all(remote: &Remote) -> Result<History, HistoryError> {
        use rayon::prelude::*;
        let committed = remote.fetch_index()?.and_then(|r| r.run);
        let staged = remote.staged()?;
        let names: Vec<IncrementName> = remote
            .increment_names()?
            .into_iter()
            .filter(|n| {
                let text = n.to_string();
                !staged.contains(&text) || committed.as_deref() == Some(text.as_str())
            })
            .collect();
        let metas: Vec<Result<Option<IncrementMeta>, StoreError>> =
            names.par_iter().map(|n| remote.load_meta(n)).collect();
        let mut increments = Vec::new();
        for (name, meta) in names.into_iter().zip(metas) {
            if let Some(meta) = meta? {
                increments.push(Increment::new(name, Place::Committed, meta)?);
            }
        }
        Ok(History::new(increments))
    }

    /// The index of the increment named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.increments.iter().position(|i| i.name == name)
    }

    /// The increment a point names.
    pub fn resolve(&self, at: &At) -> Result<usize, HistoryError> {
        let names = || self.increments.iter().map(|i| i.name.clone()).collect();
        match at {
            At::Increment(name) => self
                .find(name)
                .ok_or_else(|| HistoryError::UnknownIncrement {
                    name: name.clone(),
                    known: names(),
                }),
            At::Back(back) => {
                self.increments
                    .len()
                    .checked_sub(back + 1)
                    .ok_or(HistoryError::TooFarBack {
                        back: *back,
                        count: self.increments.len(),
                    })
            }
            At::Time(t) => self.increments.iter().rposition(|i| i.time <= *t).ok_or(
                HistoryError::NothingBefore {
                    at: crate::store::meta::format_time(*t),
                    first: self.increments.first().map(|i| i.name.clone()),
                },
            ),
        }
    }

    /// The tracked state at increment `k` (`None`: before the first).
    pub fn state_at(&self, k: Option<usize>) -> State<'_> {
        let mut state = State::new();
        if let Some(k) = k {
            for i in 0..=k {
                self.replay(&mut state, i);
            }
        }
        state
    }

    /// Apply the ops of increment `i` to `state`, in record order (a
    /// deletion before the addition that replaces it at the same path).
    pub fn replay<'a>(&'a self, state: &mut State<'a>, i: usize) {
        let inc = &self.increments[i];
        for (index, (path, record)) in inc.records().enumerate() {
            match record.op {
                Op::New | Op::Changed => {
                    state.insert(
                        path.clone(),
                        Version {
                            increment: i,
                            index,
                            record,
                        },
                    );
                }
                Op::Deleted => {
                    state.remove(path);
                }
            }
        }
    }

    /// The same replay indexed by path, to ask "did this path exist at
    /// increment K" for many K without replaying 1..=K each time.
    pub fn presence(&self) -> Presence {
        let mut by_path: HashMap<(RelPath, bool), Vec<(usize, bool)>> = HashMap::new();
        for (i, inc) in self.increments.iter().enumerate() {
            for (path, record) in inc.records() {
                let ops = by_path
                    .entry((path.clone(), record.kind == "dir"))
                    .or_default();
                let exists = record.op != Op::Deleted;
                match ops.last_mut() {
                    // Two records in one increment: the last one says.
                    Some(last) if last.0 == i => last.1 = exists,
                    _ => ops.push((i, exists)),
                }
            }
        }
        Presence { by_path }
    }

    /// Where the bytes of a version are: its increment, part and path.
    pub fn file_of(&self, version: Version<'_>) -> (&Increment, Part, &RelPath) {
        let inc = &self.increments[version.increment];
        let (part, path) = inc.file_of(version.index);
        (inc, part, path)
    }

    /// One summary line per increment, oldest first.
    pub fn summaries(&self) -> Vec<IncrementSummary> {
        self.increments.iter().map(IncrementSummary::of).collect()
    }

    /// Every recorded version of every path that `select` accepts, grouped
    /// by path (sorted), each path's versions oldest first.
    pub fn versions(&self, select: impl Fn(&RelPath) -> bool) -> Vec<PathHistory> {
        let mut by_path: BTreeMap<RelPath, Vec<VersionRow>> = BTreeMap::new();
        for inc in &self.increments {
            for (path, record) in inc.records() {
                if select(path) {
                    by_path
                        .entry(path.clone())
                        .or_default()
                        .push(VersionRow::of(inc, record));
                }
            }
        }
        by_path
            .into_iter()
            .map(|(path, versions)| PathHistory {
                path: path.to_string(),
                versions,
            })
            .collect()
    }
}

/// For each path, the increments that record it (ascending) and whether
/// it exists after each: [`History::state_at`]'s replay, indexed by path.
#[derive(Debug, Clone, Default)]
pub struct Presence {
    /// (path, is a directory) -> (increment, exists after it).
    by_path: HashMap<(RelPath, bool), Vec<(usize, bool)>>,
}

impl Presence {
    /// Whether `path` is in the tracked state at increment `k` (`None`:
    /// before the first), as of the history the index was built from.
    pub fn exists_at(&self, path: &RelPath, k: Option<usize>) -> bool {
        self.exists_at_as(path, false, k) || self.exists_at_as(path, true, k)
    }

    /// Whether `path` is in the tracked state at increment `k` as a
    /// directory (`dir`) or as a file or symlink.
    pub fn exists_at_as(&self, path: &RelPath, dir: bool, k: Option<usize>) -> bool {
        let (Some(k), Some(ops)) = (k, self.by_path.get(&(path.clone(), dir))) else {
            return false;
        };
        let after = ops.partition_point(|(i, _)| *i <= k);
        after > 0 && ops[after - 1].1
    }
}

/// Whether a prune was interrupted and must be finished (by `strata
/// prune` or the next run) before the history reads true.
pub fn prune_interrupted(store: &Store) -> bool {
    store
        .state()
        .open_dir(PRUNING)
        .is_ok_and(|d| d.entries().is_ok_and(|e| !e.is_empty()))
}

/// Names of the increments an interrupted prune left in `.strata/pruning/`.
pub fn pending_prunes(store: &Store) -> Result<Vec<IncrementName>, StoreError> {
    match store.state_dir(PRUNING)? {
        Some(dir) => Store::increment_names_in(&dir, &store.state_path(PRUNING)),
        None => Ok(Vec::new()),
    }
}

/// One increment, as `strata history NAME` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncrementSummary {
    /// The folder name.
    pub increment: String,
    /// When the run started (RFC 3339).
    pub start: String,
    /// Tracked files that appeared.
    pub new: u64,
    /// Tracked files with a new version.
    pub changed: u64,
    /// Tracked files that left.
    pub deleted: u64,
    /// Bytes of the new and changed versions it holds.
    pub bytes: u64,
    /// Directories whose metadata it records.
    pub dirs: u64,
}

impl IncrementSummary {
    fn of(inc: &Increment) -> IncrementSummary {
        let mut s = IncrementSummary {
            increment: inc.name.clone(),
            start: inc.meta.start.clone(),
            new: 0,
            changed: 0,
            deleted: 0,
            bytes: 0,
            dirs: 0,
        };
        for r in &inc.meta.files {
            if r.kind == "dir" {
                s.dirs += 1;
                continue;
            }
            match r.op {
                Op::New => s.new += 1,
                Op::Changed => s.changed += 1,
                Op::Deleted => s.deleted += 1,
            }
            if r.op != Op::Deleted {
                s.bytes += r.size;
            }
        }
        s
    }
}

/// One recorded version of a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRow {
    /// The increment that recorded it.
    pub increment: String,
    /// When that run started (RFC 3339).
    pub time: String,
    /// `new`, `changed` or `deleted` (the version that left).
    pub op: Op,
    /// `file`, `symlink` or `dir`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// The file's mtime (RFC 3339).
    pub mtime: String,
    /// xxh3-128 of the content (new and changed only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl VersionRow {
    fn of(inc: &Increment, r: &FileRecord) -> VersionRow {
        VersionRow {
            increment: inc.name.clone(),
            time: inc.meta.start.clone(),
            op: r.op,
            kind: r.kind.clone(),
            size: r.size,
            mode: r.mode,
            mtime: r.mtime.clone(),
            hash: r.hash.clone(),
        }
    }
}

/// Every version of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathHistory {
    /// The path, relative to source.
    pub path: String,
    /// Its versions, oldest first.
    pub versions: Vec<VersionRow>,
}

/// `--mask` globs: a glob without `/` matches file names, a glob with `/`
/// the path relative to source; `*` never crosses `/`.
#[derive(Debug, Clone)]
pub struct Mask {
    names: globset::GlobSet,
    paths: globset::GlobSet,
}

impl Mask {
    /// Compile the globs.
    pub fn new(globs: &[String]) -> Result<Mask, globset::Error> {
        let mut names = globset::GlobSetBuilder::new();
        let mut paths = globset::GlobSetBuilder::new();
        for glob in globs {
            let compiled = globset::GlobBuilder::new(glob)
                .literal_separator(true)
                .backslash_escape(true)
                .build()?;
            if glob.contains('/') {
                paths.add(compiled);
            } else {
                names.add(compiled);
            }
        }
        Ok(Mask {
            names: names.build()?,
            paths: paths.build()?,
        })
    }

    /// Whether `path` matches one of the globs.
    pub fn is_match(&self, path: &RelPath) -> bool {
        let path = path.as_path();
        self.paths.is_match(path) || path.file_name().is_some_and(|n| self.names.is_match(n))
    }
}

/// Whether `path` is `prefix` or lies below it.
pub fn is_at_or_below(path: &RelPath, prefix: &RelPath) -> bool {
    path.is_at_or_below(prefix)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::entry::Stats;

    /// A record as a run would write it; `size` doubles as the content tag.
    pub fn record(path: &str, op: Op, size: u64) -> FileRecord {
        FileRecord {
            path: path.to_string(),
            path_hex: None,
            op,
            kind: "file".into(),
            size,
            mode: 0o644,
            mtime: "2026-01-01T00:00:00Z".into(),
            hash: (op != Op::Deleted).then(|| format!("{size:032x}")),
            uid: Some(0),
            gid: Some(0),
            xattrs: Default::default(),
            link: None,
        }
    }

    /// An in-memory increment named after `stamp` (`YYYYMMDD_HHMMSS[_N]`).
    pub fn increment(stamp: &str, files: Vec<FileRecord>) -> Increment {
        let name = format!("backup_{stamp}");
        Increment::new(
            IncrementName::parse(&name).unwrap(),
            Place::Committed,
            IncrementMeta {
                version: 2,
                job: "job".into(),
                increment: name.clone(),
                start: "2026-01-01T00:00:00Z".into(),
                finish: "2026-01-01T00:00:00Z".into(),
                files,
                stats: Stats::default(),
            },
        )
        .unwrap()
    }

    /// A state as (path, increment name, size) triples.
    pub fn describe(history: &History, state: &State<'_>) -> Vec<(String, String, u64)> {
        state
            .iter()
            .map(|(p, v)| {
                (
                    p.to_string(),
                    history.increments[v.increment].name.clone(),
                    v.record.size,
                )
            })
            .collect()
    }

    fn sample() -> History {
        History::new(vec![
            increment(
                "20260102_000000",
                vec![record("a", Op::Changed, 2), record("b", Op::Deleted, 1)],
            ),
            increment(
                "20260101_000000",
                vec![record("a", Op::New, 1), record("b", Op::New, 1)],
            ),
            increment(
                "20260102_000000_1",
                vec![record("b", Op::New, 3), record("d/c", Op::New, 4)],
            ),
        ])
    }

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn state_is_the_replay_of_ops() {
        let h = sample();
        let names: Vec<&str> = h.increments.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "backup_20260101_000000",
                "backup_20260102_000000",
                "backup_20260102_000000_1"
            ]
        );
        assert!(h.state_at(None).is_empty());
        assert_eq!(
            describe(&h, &h.state_at(Some(0))),
            [
                (s("a"), s("backup_20260101_000000"), 1),
                (s("b"), s("backup_20260101_000000"), 1)
            ]
        );
        assert_eq!(
            describe(&h, &h.state_at(Some(1))),
            [(s("a"), s("backup_20260102_000000"), 2)]
        );
        assert_eq!(
            describe(&h, &h.state_at(Some(2))),
            [
                (s("a"), s("backup_20260102_000000"), 2),
                (s("b"), s("backup_20260102_000000_1"), 3),
                (s("d/c"), s("backup_20260102_000000_1"), 4)
            ]
        );
        let v = h.state_at(Some(2))[&RelPath::from_bytes(b"d/c")];
        let (inc, part, path) = h.file_of(v);
        assert_eq!(
            (inc.name.as_str(), part, path.to_string().as_str()),
            ("backup_20260102_000000_1", Part::Track, "d/c")
        );
    }

    #[test]
    fn at_resolves_times_and_names() {
        let h = sample();
        let at = |s: &str| h.resolve(&s.parse::<At>().unwrap());
        assert_eq!(at("backup_20260102_000000").unwrap(), 1);
        assert_eq!(at("2026-01-01T12:00:00Z").unwrap(), 0);
        // Two runs in the same second: the later one.
        assert_eq!(at("2026-01-02T00:00:00Z").unwrap(), 2);
        assert_eq!(at("2026-01-02T01:00:00+01:00").unwrap(), 2);
        assert_eq!(at("2026-01-02T00:59:59+01:00").unwrap(), 0);
        let err = at("2025-12-31T00:00:00Z").unwrap_err().to_string();
        assert!(err.contains("the first is backup_20260101_000000"), "{err}");
        let err = at("backup_20200101_000000").unwrap_err().to_string();
        assert!(err.contains("there are 3 from"), "{err}");
        assert!("yesterday".parse::<At>().is_err());
    }

    #[test]
    fn versions_and_summaries() {
        let h = sample();
        let b = h.versions(|p| p.as_bytes() == b"b");
        assert_eq!(b.len(), 1);
        let ops: Vec<(String, Op)> = b[0]
            .versions
            .iter()
            .map(|v| (v.increment.clone(), v.op))
            .collect();
        assert_eq!(
            ops,
            [
                (s("backup_20260101_000000"), Op::New),
                (s("backup_20260102_000000"), Op::Deleted),
                (s("backup_20260102_000000_1"), Op::New)
            ]
        );
        let d = h.versions(|p| is_at_or_below(p, &RelPath::from_bytes(b"d")));
        assert_eq!(d[0].path, "d/c");
        let sums = h.summaries();
        assert_eq!(
            (sums[1].new, sums[1].changed, sums[1].deleted, sums[1].bytes),
            (0, 1, 1, 2)
        );
    }

    #[test]
    fn mask_matches_names_or_paths() {
        let mask = Mask::new(&[s("*.txt"), s("docs/*.md")]).unwrap();
        for (path, want) in [
            ("a.txt", true),
            ("deep/down/b.txt", true),
            ("docs/x.md", true),
            ("docs/sub/x.md", false),
            ("x.md", false),
            ("txt", false),
        ] {
            assert_eq!(
                mask.is_match(&RelPath::from_bytes(path.as_bytes())),
                want,
                "{path}"
            );
        }
    }
}
