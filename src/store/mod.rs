//! The on-disk layout at a job's destination (SPEC §3), opened as
//! descriptors ([`Store`]), and the names in it.
//!
//! ```text
//! mirror/                          latest state of every selected entry
//! backup_YYYYMMDD_HHMMSS[_N]/      one committed increment (IncrementDir)
//!     track/<path>                 new or changed tracked files of that run
//!     deleted/<path>               last versions of tracked files it deleted
//!     backup_….json                its metadata
//! .strata/id                       the destination's identity (see `identity`)
//! .strata/lock                     flock'ed while a process works on the job
//! .strata/index                    the mirror's state after the last commit
//! .strata/dirty                    present while a run may be changing the mirror
//! .strata/inprogress/<name>/       the increment being written (track/, deleted/)
//! .strata/tmp/                     temp files; empty outside a run
//! .strata/runs.jsonl               one line per finished run
//! .strata/pruning/                 a prune's journal (merge.json), the increments
//!                                  it merges away, the files it evicts (evicted/)
//! .strata/mounts                   the mount points seen inside the source
//! ```
//!
//! The commit protocol that moves between these states, and the recovery
//! that is its inverse, are in [`commit`] and [`recover`]; this module only
//! names and opens things. Folder names (`track`, `deleted`, `mirror`, …)
//! are defined here, as the constants the other modules use.

pub mod commit;
pub mod dest;
pub mod identity;
pub mod index;
pub mod lock;
pub mod meta;
pub mod object;
pub mod recover;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::entry::Op;
use crate::fs::{Dir, FileTypeOf};
pub use lock::{JobLock, LockError};
use meta::IncrementMeta;

/// `mirror/`.
pub const MIRROR: &[u8] = b"mirror";
/// `.strata/`.
pub const STATE: &[u8] = b".strata";
/// `.strata/tmp/`: every temp file strata makes lives here, so that
/// recovery can empty it without knowing names.
pub const TMP: &[u8] = b"tmp";
/// `.strata/inprogress/`.
pub const INPROGRESS: &[u8] = b"inprogress";
/// `.strata/dirty`.
pub const DIRTY: &[u8] = b"dirty";
/// `.strata/pruning/`.
pub const PRUNING: &[u8] = b"pruning";
/// `.strata/mounts`: the mount points seen inside the source.
pub const MOUNTS: &[u8] = b"mounts";
/// `.strata/xattrs/<digest>`: extended attributes the mirror's filesystem
/// refuses, kept by digest (see [`Store::save_xattrs`]).
pub const XATTRS: &[u8] = b"xattrs";
/// The prefix of every increment folder.
pub const INCREMENT_PREFIX: &str = "backup_";

/// Errors of the store, each with the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation on a path failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A state file holds something strata did not write.
    #[error("{}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An object-store request failed (the destination, endpoint, request
    /// and key named).
    #[error(transparent)]
    Object(Box<object::ObjectError>),
    /// The destination is not there, or not a strata destination.
    #[error("{message}")]
    Missing {
        /// The destination.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
}

impl StoreError {
    /// An I/O error about `path`.
    pub fn io(path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the error is "no space left on device".
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }
}

/// Attach a path to an I/O error.
pub trait IoContext<T> {
    /// Turn an `io::Result` into a [`StoreError`] naming `path`.
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::io(path, source))
    }
}

fn os(bytes: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

/// An increment's name, `backup_YYYYMMDD_HHMMSS` and a suffix for runs in
/// the same second (`_1`, `_2`…). Orders by time, then by suffix as a
/// number (`_2` before `_10`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncrementName {
    stamp: String,
    suffix: u64,
}

impl IncrementName {
    /// Parse a folder name; `None` if it is not an increment's.
    pub fn parse(name: &str) -> Option<IncrementName> {
        let rest = name.strip_prefix(INCREMENT_PREFIX)?;
        let (stamp, suffix) = match rest.get(15..) {
            Some("") => (rest, 0),
            Some(s) => {
                let digits = s.strip_prefix('_')?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (&rest[..15], digits.parse::<u64>().ok().filter(|&n| n > 0)?)
            }
            None => return None,
        };
        let ok = stamp.len() == 15
            && stamp.as_bytes()[8] == b'_'
            && stamp
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 8 || b.is_ascii_digit());
        let name = IncrementName {
            stamp: stamp.to_string(),
            suffix,
        };
        (ok && name.time_checked().is_some()).then_some(name)
    }

    /// The name of a run that started at `start` with this suffix.
    pub fn at(start: DateTime<Utc>, suffix: u64) -> IncrementName {
        IncrementName {
            stamp: start.format("%Y%m%d_%H%M%S").to_string(),
            suffix,
        }
    }

    /// The same second, the next suffix.
    pub fn next_suffix(&self) -> IncrementName {
        IncrementName {
            stamp: self.stamp.clone(),
            suffix: self.suffix + 1,
        }
    }

    fn time_checked(&self) -> Option<DateTime<Utc>> {
        chrono::NaiveDateTime::parse_from_str(&self.stamp, "%Y%m%d_%H%M%S")
            .ok()
            .map(|t| t.and_utc())
    }

    /// The run's start, UTC, second resolution.
    pub fn time(&self) -> DateTime<Utc> {
        self.time_checked().unwrap_or_default()
    }

    /// Whether this name is of the same second as `other`.
    pub fn same_second(&self, other: &IncrementName) -> bool {
        self.stamp == other.stamp
    }
}

impl fmt::Display for IncrementName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{INCREMENT_PREFIX}{}", self.stamp)?;
        if self.suffix > 0 {
            write!(f, "_{}", self.suffix)?;
        }
        Ok(())
    }
}

/// The sort key of an increment name (compatibility helper).
pub fn parse_increment_name(name: &str) -> Option<IncrementName> {
    IncrementName::parse(name)
}

/// The start time encoded in an increment name.
pub fn increment_time(name: &str) -> Option<DateTime<Utc>> {
    IncrementName::parse(name).map(|n| n.time())
}

/// The two halves of an increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// `track/`: new and changed versions.
    Track,
    /// `deleted/`: the last versions of deleted paths.
    Deleted,
}

impl Part {
    /// The folder's name.
    pub fn name(self) -> &'static [u8] {
        match self {
            Part::Track => b"track",
            Part::Deleted => b"deleted",
        }
    }

    /// Where a record with `op` keeps its bytes.
    pub fn for_op(op: Op) -> Part {
        match op {
            Op::Deleted => Part::Deleted,
            Op::New | Op::Changed => Part::Track,
        }
    }
}

/// One increment folder, opened.
#[derive(Debug)]
pub struct IncrementDir {
    /// Its name.
    pub name: IncrementName,
    /// The folder.
    pub dir: Dir,
    /// Where it is, for messages.
    pub path: PathBuf,
}

impl IncrementDir {
    /// The metadata file's name.
    pub fn meta_name(&self) -> String {
        IncrementMeta::file_name(&self.name.to_string())
    }

    /// The metadata file's path, for messages.
    pub fn meta_path(&self) -> PathBuf {
        self.path.join(self.meta_name())
    }

    /// Open `track/` or `deleted/`, if it exists.
    pub fn part(&self, part: Part) -> io::Result<Option<Dir>> {
        match self.dir.child_dir(part.name()) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open `track/` or `deleted/`, creating it.
    pub fn create_part(&self, part: Part) -> io::Result<Dir> {
        self.dir.create_dirs(part.name(), 0o700)
    }

    /// The path of a part's entry, for messages.
    pub fn part_path(&self, part: Part, rel: &crate::entry::RelPath) -> PathBuf {
        self.path.join(os(part.name())).join(rel.as_path())
    }

    /// Read the metadata.
    pub fn load_meta(&self) -> Result<IncrementMeta, StoreError> {
        let path = self.meta_path();
        match self.dir.read(self.meta_name().as_bytes()).at(&path)? {
            Some(bytes) => IncrementMeta::parse(&bytes, &path),
            None => Err(StoreError::io(
                &path,
                io::Error::from(io::ErrorKind::NotFound),
            )),
        }
    }
}

/// A job's destination, opened: the descriptors every other module works
/// beneath.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    root: Dir,
    state: Dir,
}

impl Store {
    /// Open an existing strata destination (for history, restore, verify,
    /// prune). A missing destination, or one without strata state, is an
    /// error that asks whether the disk is mounted.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let missing = |what: &str| StoreError::Missing {
            path: path.to_path_buf(),
            message: format!(
                "{}: {what}: has the job run yet, and is the disk mounted?",
                path.display()
            ),
        };
        let root = match Dir::open_root(path) {
            Ok(root) => root,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(missing("the destination does not exist"));
            }
            Err(e) => return Err(StoreError::io(path, e)),
        };
        let state = match root.child_dir(STATE) {
            Ok(state) => state,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(missing("no strata backup here (no .strata/)"));
            }
            Err(e) => return Err(StoreError::io(&path.join(".strata"), e)),
        };
        Ok(Store {
            path: path.to_path_buf(),
            root,
            state,
        })
    }

    /// A store from descriptors already open (used by `identity`).
    fn from_parts(path: &Path, root: Dir, state: Dir) -> Store {
        Store {
            path: path.to_path_buf(),
            root,
            state,
        }
    }

    /// The destination's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The destination.
    pub fn root(&self) -> &Dir {
        &self.root
    }

    /// `.strata/`.
    pub fn state(&self) -> &Dir {
        &self.state
    }

    /// The path of a file in `.strata/`, for messages.
    pub fn state_path(&self, name: &[u8]) -> PathBuf {
        self.path.join(".strata").join(os(name))
    }

    /// The path of `mirror/`, for messages.
    pub fn mirror_path(&self) -> PathBuf {
        self.path.join(os(MIRROR))
    }

    /// The path of the index, for messages.
    pub fn index_path(&self) -> PathBuf {
        self.state_path(index::INDEX)
    }

    /// Open `mirror/`, if it exists.
    pub fn mirror(&self) -> io::Result<Option<Dir>> {
        match self.root.child_dir(MIRROR) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open `mirror/`, creating it (private until a run gives it the
    /// source's mode).
    pub fn create_mirror(&self) -> Result<Dir, StoreError> {
        self.root.create_dirs(MIRROR, 0o700).at(&self.mirror_path())
    }

    /// Open `.strata/tmp/`, creating it.
    pub fn tmp(&self) -> Result<Dir, StoreError> {
        self.state.create_dirs(TMP, 0o700).at(&self.state_path(TMP))
    }

    /// Open a folder of `.strata/` if it exists.
    pub fn state_dir(&self, name: &[u8]) -> Result<Option<Dir>, StoreError> {
        match self.state.child_dir(name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&self.state_path(name), e)),
        }
    }

    /// Whether `.strata/NAME` exists (a file or folder).
    pub fn state_has(&self, name: &[u8]) -> bool {
        self.state.stat_at(name).is_ok()
    }

    /// Names of the increment-named folders in `dir`, sorted.
    pub fn increment_names_in(dir: &Dir, path: &Path) -> Result<Vec<IncrementName>, StoreError> {
        let mut names = Vec::new();
        for (name, ft) in dir.entries().at(path)? {
            let Some(name) = std::str::from_utf8(&name)
                .ok()
                .and_then(IncrementName::parse)
            else {
                continue;
            };
            let is_dir = match ft {
                rustix::fs::FileType::Directory => true,
                rustix::fs::FileType::Unknown => dir
                    .stat_at(name.to_string().as_bytes())
                    .is_ok_and(|s| s.file_type == FileTypeOf::Dir),
                _ => false,
            };
            if is_dir {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Names of the committed increments, oldest first.
    pub fn increments(&self) -> Result<Vec<IncrementName>, StoreError> {
        Store::increment_names_in(&self.root, &self.path)
    }

    /// Open a committed increment.
    pub fn increment(&self, name: &IncrementName) -> Result<IncrementDir, StoreError> {
        let text = name.to_string();
        let path = self.path.join(&text);
        let dir = self.root.child_dir(text.as_bytes()).at(&path)?;
        Ok(IncrementDir {
            name: name.clone(),
            dir,
            path,
        })
    }

    /// Open an increment in a folder of `.strata/` (`inprogress/`,
    /// `pruning/`).
    pub fn increment_in(
        &self,
        folder: &[u8],
        name: &IncrementName,
    ) -> Result<IncrementDir, StoreError> {
        let text = name.to_string();
        let path = self.state_path(folder).join(&text);
        let dir = self
            .state
            .open_dir(&[folder, b"/", text.as_bytes()].concat())
            .at(&path)?;
        Ok(IncrementDir {
            name: name.clone(),
            dir,
            path,
        })
    }

    /// A fresh increment name for a run that started at `start`: the UTC
    /// time, with `_1`, `_2`… when that second is taken. The suffix follows
    /// the highest one of that second among the committed, in-progress and
    /// pruning increments, so a name that prune freed is never reused and
    /// names keep sorting in run order.
    pub fn new_increment_name(&self, start: DateTime<Utc>) -> Result<IncrementName, StoreError> {
        let base = IncrementName::at(start, 0);
        let mut last: Option<IncrementName> = None;
        let mut consider = |names: Vec<IncrementName>| {
            for n in names.into_iter().filter(|n| n.same_second(&base)) {
                if last.as_ref().is_none_or(|l| n > *l) {
                    last = Some(n);
                }
            }
        };
        consider(self.increments()?);
        for folder in [INPROGRESS, PRUNING] {
            if let Some(d) = self.state_dir(folder)? {
                consider(Store::increment_names_in(&d, &self.state_path(folder))?);
            }
        }
        Ok(match last {
            None => base,
            Some(n) => n.next_suffix(),
        })
    }

    /// The mount points a run saw inside the source, remembered in
    /// `.strata/mounts`, so that an unmounted one is noticed.
    pub fn mounts(&self) -> Vec<crate::entry::RelPath> {
        let Ok(Some(bytes)) = self.state.read(MOUNTS) else {
            return Vec::new();
        };
        serde_json::from_slice::<Vec<(String, Option<String>)>>(&bytes)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(t, h)| crate::entry::RelPath::from_text(&t, h.as_deref()).ok())
            .collect()
    }

    /// Remember these mount points (written only when they changed).
    pub fn save_mounts(&self, mounts: &[crate::entry::RelPath]) -> Result<(), StoreError> {
        if self.mounts() == mounts {
            return Ok(());
        }
        let text: Vec<(String, Option<String>)> =
            mounts.iter().map(crate::entry::RelPath::to_text).collect();
        let tmp = self.tmp()?;
        self.state
            .write_atomic(MOUNTS, &tmp, b"mounts.new", |w| {
                serde_json::to_writer(&mut *w, &text)?;
                Ok(())
            })
            .at(&self.state_path(MOUNTS))
    }

    /// Keep a set of extended attributes in `.strata/xattrs/<digest>`
    /// (once: a set already there is the same). For a mirror on a
    /// filesystem that refuses xattrs: the index keeps each entry's digest,
    /// and a restore of the latest state finds the set here (an
    /// included-only entry has no increment record to hold it).
    pub fn save_xattrs(&self, xattrs: &crate::entry::Xattrs) -> Result<(), StoreError> {
        let digest = xattrs.digest();
        if digest == crate::entry::NO_XATTRS {
            return Ok(());
        }
        let name = digest.to_hex();
        let shown = self.xattrs_path(digest);
        let dir = self
            .state
            .create_dirs(XATTRS, 0o700)
            .at(&self.state_path(XATTRS))?;
        if dir.stat_at(name.as_bytes()).is_ok() {
            return Ok(());
        }
        let tmp = self.tmp()?;
        dir.write_atomic(
            name.as_bytes(),
            &tmp,
            format!("xattrs-{name}.new").as_bytes(),
            |w| w.write_all(&xattrs.encode()),
        )
        .at(&shown)
    }

    /// Where [`Store::save_xattrs`] keeps the set of `digest`.
    pub fn xattrs_path(&self, digest: crate::entry::Hash) -> PathBuf {
        self.state_path(XATTRS).join(digest.to_hex())
    }

    /// The set [`Store::save_xattrs`] kept under `digest` (`None`: none
    /// kept).
    pub fn load_xattrs(
        &self,
        digest: crate::entry::Hash,
    ) -> Result<Option<crate::entry::Xattrs>, StoreError> {
        let name = digest.to_hex();
        let shown = self.xattrs_path(digest);
        let Some(dir) = self.state_dir(XATTRS)? else {
            return Ok(None);
        };
        let Some(bytes) = dir.read(name.as_bytes()).at(&shown)? else {
            return Ok(None);
        };
        match crate::entry::Xattrs::decode(&bytes) {
            Some(x) if x.digest() == digest => Ok(Some(x)),
            _ => Err(StoreError::Corrupt {
                path: shown,
                message: "not the extended attributes of its digest".into(),
            }),
        }
    }

    /// Take the job's lock without waiting.
    pub fn lock(&self) -> Result<JobLock, LockError> {
        JobLock::try_acquire(&self.state, &self.state_path(b"lock"))
    }

    /// Flush the destination's filesystem.
    pub fn sync_filesystem(&self) -> Result<(), StoreError> {
        self.root.sync_filesystem().at(&self.path)
    }
}

/// Paths of a destination's state files, for the commands that only read
/// the run log (`list`, the daemon's catch-up). Everything that writes goes
/// through [`Store`].
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout at `destination`.
    pub fn new(destination: &Path) -> Layout {
        Layout {
            root: destination.to_path_buf(),
        }
    }
    /// The destination itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `.strata/runs.jsonl`.
    pub fn runs(&self) -> PathBuf {
        self.root.join(".strata").join(os(meta::RUNS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_names_order_by_time_then_suffix_number() {
        let mut names: Vec<IncrementName> = [
            "backup_20260101_000000_10",
            "backup_20260101_000000_2",
            "backup_20251231_235959",
            "backup_20260101_000000",
        ]
        .iter()
        .map(|n| IncrementName::parse(n).unwrap())
        .collect();
        names.sort();
        let text: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            text,
            [
                "backup_20251231_235959",
                "backup_20260101_000000",
                "backup_20260101_000000_2",
                "backup_20260101_000000_10",
            ]
        );
        for bad in [
            "backup_2026",
            "backup_20260101-000000",
            "backup_20260101_000000_x",
            "backup_20260101_000000_",
            "backup_20260101_000000_0",
            "backup_20261301_000000",
            "mirror",
        ] {
            assert_eq!(IncrementName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn name_collisions_get_suffixes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".strata")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = chrono::DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = store.new_increment_name(t).unwrap();
        assert_eq!(first.to_string(), "backup_20260304_050607");
        std::fs::create_dir(dir.path().join(first.to_string())).unwrap();
        let second = store.new_increment_name(t).unwrap();
        assert_eq!(second.to_string(), "backup_20260304_050607_1");
        std::fs::create_dir_all(
            dir.path()
                .join(".strata/inprogress")
                .join(second.to_string()),
        )
        .unwrap();
        assert_eq!(
            store.new_increment_name(t).unwrap().to_string(),
            "backup_20260304_050607_2"
        );
        assert_eq!(second.time(), t);
    }
}
