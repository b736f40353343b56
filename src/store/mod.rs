//! The on-disk layout at a job's destination (SPEC §3), and the small atomic
//! operations the commit protocol is built from.
//!
//! ```text
//! mirror/                          latest state of every selected file
//! backup_YYYYMMDD_HHMMSS/          one committed increment
//! .strata/lock                     flock'ed while a process works on the job
//! .strata/index                    the mirror's state after the last commit
//! .strata/dirty                    present while the mirror may differ from the index
//! .strata/inprogress/<name>/       the increment being written (track/, deleted/)
//! .strata/tmp/                     new mirror files before their rename
//! .strata/runs.jsonl               one line per finished run
//! .strata/pruning/<name>/          an increment `strata prune` is merging away
//! ```

pub mod index;
pub mod lock;
pub mod meta;
pub mod recover;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub use lock::{JobLock, LockError};

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
}

/// Attach a path to an I/O error.
pub trait IoContext<T> {
    /// Turn an `io::Result` into a [`StoreError`] naming `path`.
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The prefix of every increment folder.
pub const INCREMENT_PREFIX: &str = "backup_";

/// Paths of one job's destination.
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
    /// `mirror/`.
    pub fn mirror(&self) -> PathBuf {
        self.root.join("mirror")
    }
    /// `.strata/`.
    pub fn state(&self) -> PathBuf {
        self.root.join(".strata")
    }
    /// `.strata/lock`.
    pub fn lock(&self) -> PathBuf {
        self.state().join("lock")
    }
    /// `.strata/index`.
    pub fn index(&self) -> PathBuf {
        self.state().join("index")
    }
    /// `.strata/dirty`.
    pub fn dirty(&self) -> PathBuf {
        self.state().join("dirty")
    }
    /// `.strata/inprogress/`.
    pub fn inprogress(&self) -> PathBuf {
        self.state().join("inprogress")
    }
    /// `.strata/tmp/`.
    pub fn tmp(&self) -> PathBuf {
        self.state().join("tmp")
    }
    /// `.strata/runs.jsonl`.
    pub fn runs(&self) -> PathBuf {
        self.state().join("runs.jsonl")
    }
    /// `.strata/pruning/`: increments that a prune took out of the visible
    /// sequence and is merging into the next one (see `history::prune`).
    pub fn pruning(&self) -> PathBuf {
        self.state().join("pruning")
    }
    /// A committed increment folder.
    pub fn increment(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Names of the committed increments, oldest first.
    pub fn increments(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).at(&self.root),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.at(&self.root)?;
            if let Some(name) = entry.file_name().to_str()
                && parse_increment_name(name).is_some()
                && entry.file_type().at(&entry.path())?.is_dir()
            {
                names.push(name.to_string());
            }
        }
        names.sort_by_key(|n| parse_increment_name(n));
        Ok(names)
    }

    /// A fresh increment name for a run that started at `start`: the UTC
    /// time, with `_1`, `_2`… when that second is taken. The suffix follows
    /// the highest one of that second among the committed, in-progress and
    /// pruning increments, so a name that prune freed is never reused and
    /// names keep sorting in run order.
    pub fn new_increment_name(&self, start: DateTime<Utc>) -> String {
        let stamp = start.format("%Y%m%d_%H%M%S").to_string();
        let base = format!("{INCREMENT_PREFIX}{stamp}");
        let mut last: Option<u64> = None;
        for dir in [self.root.clone(), self.inprogress(), self.pruning()] {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if let Some((s, n)) = entry.file_name().to_str().and_then(parse_increment_name)
                    && s == stamp
                {
                    last = last.max(Some(n));
                }
            }
        }
        match last {
            None => base,
            Some(n) => format!("{base}_{}", n + 1),
        }
    }
}

/// The sort key of an increment name: (`YYYYMMDD_HHMMSS`, suffix number), or
/// `None` if `name` is not an increment name.
pub fn parse_increment_name(name: &str) -> Option<(String, u64)> {
    let rest = name.strip_prefix(INCREMENT_PREFIX)?;
    let (stamp, suffix) = match rest.get(15..) {
        Some("") => (rest, 0),
        Some(s) => (&rest[..15], s.strip_prefix('_')?.parse::<u64>().ok()?),
        None => return None,
    };
    let ok = stamp.len() == 15
        && stamp.as_bytes()[8] == b'_'
        && stamp
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit());
    ok.then(|| (stamp.to_string(), suffix))
}

/// The start time encoded in an increment name.
pub fn increment_time(name: &str) -> Option<DateTime<Utc>> {
    let (stamp, _) = parse_increment_name(name)?;
    chrono::NaiveDateTime::parse_from_str(&stamp, "%Y%m%d_%H%M%S")
        .ok()
        .map(|t| t.and_utc())
}

/// Write `bytes` to `path` atomically: a temp file beside it, fsync,
/// rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut file = File::create(&tmp).at(&tmp)?;
    file.write_all(bytes).at(&tmp)?;
    file.sync_all().at(&tmp)?;
    drop(file);
    fs::rename(&tmp, path).at(path)?;
    sync_dir(dir)
}

/// fsync a directory, so that renames inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Flush the whole filesystem holding `path` (one `syncfs`): all the mirror
/// files written by a run become durable before the run commits.
pub fn sync_filesystem(path: &Path) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    let dir = File::open(path).at(path)?;
    // SAFETY: syncfs takes a valid open file descriptor and nothing else.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).at(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_names_order_by_time_then_suffix_number() {
        let mut names = vec![
            "backup_20260101_000000_10",
            "backup_20260101_000000_2",
            "backup_20251231_235959",
            "backup_20260101_000000",
        ];
        names.sort_by_key(|n| parse_increment_name(n));
        assert_eq!(
            names,
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
            "mirror",
        ] {
            assert_eq!(parse_increment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn name_collisions_get_suffixes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let t = chrono::DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = layout.new_increment_name(t);
        assert_eq!(first, "backup_20260304_050607");
        fs::create_dir(layout.increment(&first)).unwrap();
        let second = layout.new_increment_name(t);
        assert_eq!(second, "backup_20260304_050607_1");
        fs::create_dir_all(layout.inprogress().join(&second)).unwrap();
        assert_eq!(layout.new_increment_name(t), "backup_20260304_050607_2");
        // A prune removed the first two: the next name still sorts last.
        fs::create_dir(layout.increment("backup_20260304_050607_2")).unwrap();
        fs::remove_dir(layout.increment(&first)).unwrap();
        fs::remove_dir(layout.inprogress().join(&second)).unwrap();
        assert_eq!(layout.new_increment_name(t), "backup_20260304_050607_3");
        assert_eq!(increment_time(&second), Some(t));
    }
}
