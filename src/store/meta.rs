//! Increment metadata (`backup_X/backup_X.json`) and the run log
//! (`.strata/runs.jsonl`).
//!
//! The metadata makes an increment self-contained: it names the job, the
//! run's start and finish, and every file the run recorded with its op,
//! kind, size, mode, mtime and content hash.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::{IoContext, StoreError, write_atomic};
use crate::diff::Op;
use crate::report::Stats;
use crate::scan::{Entry, Hash, Kind, Meta, RelPath};

/// One file recorded in an increment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to source (lossy text when the name is not UTF-8).
    pub path: String,
    /// The exact path bytes in hex, present only when `path` is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// `new`, `changed` or `deleted`.
    pub op: Op,
    /// `file` or `symlink`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, RFC 3339 UTC, full precision.
    pub mtime: String,
    /// xxh3-128 of the content (a symlink: of its target), for new and
    /// changed files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl FileRecord {
    /// The record of `entry` with `op`.
    pub fn new(entry: &Entry, op: Op) -> FileRecord {
        let path = entry.path.as_bytes();
        let (text, hex) = match std::str::from_utf8(path) {
            Ok(text) => (text.to_string(), None),
            Err(_) => (
                entry.path.to_string_lossy(),
                Some(path.iter().map(|b| format!("{b:02x}")).collect()),
            ),
        };
        FileRecord {
            path: text,
            path_hex: hex,
            op,
            kind: entry.meta.kind.as_str().to_string(),
            size: entry.meta.size,
            mode: entry.meta.mode,
            mtime: format_mtime(entry.meta.mtime, entry.meta.mtime_nsec),
            hash: match op {
                Op::Deleted => None,
                _ => entry.hash.map(Hash::to_hex),
            },
        }
    }

    /// The exact relative path.
    pub fn rel_path(&self) -> RelPath {
        match &self.path_hex {
            Some(hex) => {
                let bytes: Option<Vec<u8>> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect();
                RelPath::from_bytes(&bytes.unwrap_or_else(|| self.path.as_bytes().to_vec()))
            }
            None => RelPath::from_bytes(self.path.as_bytes()),
        }
    }

    /// The recorded metadata, if the record is well-formed.
    pub fn meta(&self) -> Option<Meta> {
        let kind = match self.kind.as_str() {
            "file" => Kind::File,
            "symlink" => Kind::Symlink,
            _ => return None,
        };
        let mtime = DateTime::parse_from_rfc3339(&self.mtime).ok()?;
        Some(Meta {
            kind,
            size: self.size,
            mtime: mtime.timestamp(),
            mtime_nsec: mtime.timestamp_subsec_nanos(),
            mode: self.mode,
        })
    }
}

/// An mtime as RFC 3339 UTC with as many fraction digits as it needs.
pub fn format_mtime(secs: i64, nsec: u32) -> String {
    DateTime::from_timestamp(secs, nsec)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A time as RFC 3339 UTC.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The metadata of one increment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncrementMeta {
    /// The job's name.
    pub job: String,
    /// The increment's folder name.
    pub increment: String,
    /// When the run started (RFC 3339).
    pub start: String,
    /// When the run finished (RFC 3339).
    pub finish: String,
    /// Every recorded file, sorted by path.
    pub files: Vec<FileRecord>,
    /// The run's statistics.
    pub stats: Stats,
}

impl IncrementMeta {
    /// The metadata file's path inside an increment folder.
    pub fn path_in(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.json"))
    }

    /// Read an increment's metadata.
    pub fn load(dir: &Path, name: &str) -> Result<IncrementMeta, StoreError> {
        let path = Self::path_in(dir, name);
        let bytes = std::fs::read(&path).at(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// Write it atomically into the increment folder `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let mut text = serde_json::to_vec_pretty(self).expect("metadata serializes");
        text.push(b'\n');
        write_atomic(&Self::path_in(dir, &self.increment), &text)
    }
}

/// One line of the run log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When the run started.
    pub start: String,
    /// When it finished.
    pub finish: String,
    /// Its status (`success`, `partial`, `failed`).
    pub status: String,
    /// The increment it wrote, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increment: Option<String>,
    /// Its statistics.
    pub stats: Stats,
}

/// Append a record to the run log.
pub fn append_run(path: &Path, record: &RunRecord) -> Result<(), StoreError> {
    let mut line = serde_json::to_vec(record).expect("run record serializes");
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .at(path)?;
    file.write_all(&line).at(path)
}

/// Read the run log; lines that do not parse (a torn last line after a
/// crash) are skipped.
pub fn read_runs(path: &Path) -> Result<Vec<RunRecord>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at(path),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// The latest record of the run log, or `None` if there is none.
///
/// The log grows by a line per run and is never trimmed, while the daemon
/// and `strata list` only want its last line: this reads the file from the
/// end, a window at a time, instead of parsing all of it as [`read_runs`]
/// does. Like [`read_runs`], it skips lines that do not parse.
pub fn last_run(path: &Path) -> Result<Option<RunRecord>, StoreError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    let len = file.metadata().at(path)?.len();
    let mut window: u64 = 16 * 1024;
    loop {
        let from = len.saturating_sub(window);
        file.seek(SeekFrom::Start(from)).at(path)?;
        let mut tail = Vec::new();
        (&mut file)
            .take(len - from)
            .read_to_end(&mut tail)
            .at(path)?;
        // Unless the window starts the file, its first line may be cut.
        let lines: Vec<&[u8]> = tail.split(|b| *b == b'\n').collect();
        let whole = &lines[usize::from(from > 0)..];
        let latest = whole
            .iter()
            .rev()
            .find_map(|line| serde_json::from_slice::<RunRecord>(line).ok());
        if latest.is_some() || from == 0 {
            return Ok(latest);
        }
        window = window.saturating_mul(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtime_keeps_full_precision() {
        assert_eq!(format_mtime(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_mtime(1_700_000_000, 123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            format_mtime(1_700_000_000, 500_000_000),
            "2023-11-14T22:13:20.500Z"
        );
    }

    #[test]
    fn record_round_trips_meta_and_non_utf8_paths() {
        let entry = Entry {
            path: RelPath::from_bytes(b"dir/caf\xe9"),
            meta: Meta {
                kind: Kind::File,
                size: 3,
                mtime: 1_700_000_000,
                mtime_nsec: 42,
                mode: 0o640,
            },
            tracked: true,
            hash: Some(Hash::of(b"abc")),
        };
        let record = FileRecord::new(&entry, Op::New);
        assert_eq!(record.path_hex.as_deref(), Some("6469722f636166e9"));
        assert_eq!(record.rel_path(), entry.path);
        assert_eq!(record.meta(), Some(entry.meta));
        assert_eq!(record.hash, Some(Hash::of(b"abc").to_hex()));
    }

    #[test]
    fn last_run_reads_the_latest_whole_record_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        assert_eq!(last_run(&path).unwrap(), None);
        let record = |i: usize| RunRecord {
            start: format!("2024-01-01T00:00:{:02}Z", i % 60),
            finish: "2024-01-01T00:01:00Z".into(),
            status: if i.is_multiple_of(2) {
                "success"
            } else {
                "failed"
            }
            .into(),
            increment: None,
            stats: Stats {
                new: i as u64,
                ..Stats::default()
            },
        };
        // Far more than one read window, then a line torn by a crash.
        for i in 0..2000 {
            append_run(&path, &record(i)).unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"start\": \"2024-")
            .unwrap();
        assert_eq!(last_run(&path).unwrap(), Some(record(1999)));
        assert_eq!(read_runs(&path).unwrap().last(), Some(&record(1999)));

        // A log with nothing readable in it.
        std::fs::write(&path, b"garbage\n").unwrap();
        assert_eq!(last_run(&path).unwrap(), None);
    }
}
