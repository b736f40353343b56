//! Increment metadata (`backup_X/backup_X.json`) and the run log
//! (`.strata/runs.jsonl`).
//!
//! The metadata makes an increment self-contained: it names the job, the
//! run's start and finish, and every entry the run recorded with its op,
//! kind, size, mode, owner, mtime, content hash, extended attributes and
//! hardlink group — what a restore needs to give the entry back as it was
//! (SPEC §3, fidelity). Increments written before owners and xattrs were
//! recorded (version 1) still read: their records lack those fields.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::entry::Stats;
use crate::entry::{
    BadPath, ChangeTime, Digests, Entry, Hash, Kind, Meta, NO_XATTRS, Op, RelPath, Timestamp,
    Xattrs, hex, unhex,
};

/// The metadata format version strata writes.
pub const META_VERSION: u32 = 2;

/// One entry recorded in an increment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to source (lossy text when the name is not UTF-8; the
    /// empty string for the source directory itself).
    pub path: String,
    /// The exact path bytes in hex, present only when `path` is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// `new`, `changed` or `deleted`.
    pub op: Op,
    /// `file`, `symlink` or `dir`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, setuid, setgid and sticky.
    pub mode: u32,
    /// Modification time, RFC 3339 UTC, full precision.
    pub mtime: String,
    /// xxh3-128 of the content (a symlink: of its target), for new and
    /// changed files and symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Owner (absent in version-1 increments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group (absent in version-1 increments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Extended attributes (POSIX ACLs among them): name -> base64 value.
    /// A name that is not UTF-8 is written `hex:` and its bytes in hex.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// The hardlink group (hex), shared by the names of one source inode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// A record that does not hold what strata writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRecord {
    /// Its path is not a relative path below the source.
    #[error("path {0}")]
    Path(#[from] BadPath),
    /// Its kind is not file, symlink or dir.
    #[error("kind {0:?} is not file, symlink or dir")]
    Kind(String),
    /// Its mtime is not RFC 3339.
    #[error("mtime {0:?} is not an RFC 3339 time")]
    Mtime(String),
    /// Its hash is not 32 hex digits.
    #[error("hash {0:?} is not 32 hex digits")]
    Hash(String),
    /// An xattr name or value is not encoded as strata encodes them.
    #[error("xattr {0:?} is not encoded as strata writes it")]
    Xattr(String),
    /// Its link group is not hex.
    #[error("link {0:?} is not a hex group id")]
    Link(String),
}

/// A record, checked and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The path.
    pub path: RelPath,
    /// The op.
    pub op: Op,
    /// The metadata (owner 0 when a version-1 record lacks it; see
    /// [`Record::has_owner`]).
    pub meta: Meta,
    /// Whether the record names an owner.
    pub has_owner: bool,
    /// The content hash.
    pub hash: Option<Hash>,
    /// The extended attributes.
    pub xattrs: Xattrs,
}

fn xattr_name(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(text) if !text.starts_with("hex:") => text.to_string(),
        _ => format!("hex:{}", hex(name)),
    }
}

impl FileRecord {
    /// The record of `entry` (with its xattrs, read when it was copied) and
    /// `op`.
    pub fn new(entry: &Entry, op: Op, xattrs: &Xattrs) -> FileRecord {
        let (path, path_hex) = entry.path.to_text();
        let b64 = base64::engine::general_purpose::STANDARD;
        FileRecord {
            path,
            path_hex,
            op,
            kind: entry.meta.kind.as_str().to_string(),
            size: entry.meta.size,
            mode: u32::from(entry.meta.mode),
            mtime: entry.meta.mtime.to_rfc3339(),
            hash: match (op, entry.meta.kind) {
                (Op::Deleted, _) | (_, Kind::Dir) => None,
                _ => entry.hash().map(Hash::to_hex),
            },
            uid: Some(entry.meta.uid),
            gid: Some(entry.meta.gid),
            xattrs: xattrs
                .0
                .iter()
                .map(|(n, v)| (xattr_name(n), b64.encode(v)))
                .collect(),
            link: (entry.meta.link != 0).then(|| format!("{:016x}", { entry.meta.link })),
        }
    }

    /// Check and decode: every field as strata writes it, and a path that
    /// stays below the source (never absolute, never `..`).
    pub fn check(&self) -> Result<Record, BadRecord> {
        let path = RelPath::from_text(&self.path, self.path_hex.as_deref())?;
        let kind = Kind::parse(&self.kind).ok_or_else(|| BadRecord::Kind(self.kind.clone()))?;
        let mtime = Timestamp::parse_rfc3339(&self.mtime)
            .ok_or_else(|| BadRecord::Mtime(self.mtime.clone()))?;
        let hash = match &self.hash {
            None => None,
            Some(h) => Some(Hash::from_hex(h).ok_or_else(|| BadRecord::Hash(h.clone()))?),
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut xattrs = Vec::with_capacity(self.xattrs.len());
        for (name, value) in &self.xattrs {
            let n = match name.strip_prefix("hex:") {
                Some(h) => unhex(h).ok_or_else(|| BadRecord::Xattr(name.clone()))?,
                None => name.as_bytes().to_vec(),
            };
            if n.is_empty() || n.contains(&0) {
                return Err(BadRecord::Xattr(name.clone()));
            }
            let v = b64
                .decode(value)
                .map_err(|_| BadRecord::Xattr(name.clone()))?;
            xattrs.push((n, v));
        }
        xattrs.sort();
        let link = match &self.link {
            None => 0,
            Some(l) => u64::from_str_radix(l, 16).map_err(|_| BadRecord::Link(l.clone()))?,
        };
        Ok(Record {
            path,
            op: self.op,
            meta: Meta {
                kind,
                size: if kind == Kind::Dir { 0 } else { self.size },
                mtime,
                mode: (self.mode & 0o7777) as u16,
                uid: self.uid.unwrap_or(0),
                gid: self.gid.unwrap_or(0),
                link,
            },
            has_owner: self.uid.is_some() && self.gid.is_some(),
            hash,
            xattrs: Xattrs(xattrs),
        })
    }

    /// The exact relative path, if it is valid.
    pub fn rel_path(&self) -> Result<RelPath, BadPath> {
        RelPath::from_text(&self.path, self.path_hex.as_deref())
    }
}

impl Record {
    /// The index entry this record describes (tracked), for recovery.
    pub fn entry(&self) -> Entry {
        Entry {
            path: self.path.clone(),
            meta: self.meta,
            ctime: ChangeTime::UNKNOWN,
            tracked: true,
            digests: Digests::new(
                self.hash,
                Some(if self.xattrs.is_empty() {
                    NO_XATTRS
                } else {
                    self.xattrs.digest()
                }),
            ),
        }
    }
}

/// An mtime as RFC 3339 UTC with as many fraction digits as it needs.
pub fn format_mtime(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// A time as RFC 3339 UTC.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The metadata of one increment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncrementMeta {
    /// The format version (absent: 1).
    #[serde(default = "version_one")]
    pub version: u32,
    /// The job's name.
    pub job: String,
    /// The increment's folder name.
    pub increment: String,
    /// When the run started (RFC 3339).
    pub start: String,
    /// When the run finished (RFC 3339).
    pub finish: String,
    /// Every recorded entry, sorted by path (a deletion before the new
    /// entry that replaces it at the same path).
    pub files: Vec<FileRecord>,
    /// The run's statistics.
    pub stats: Stats,
}

fn version_one() -> u32 {
    1
}

impl IncrementMeta {
    /// The metadata file's name inside an increment folder.
    pub fn file_name(name: &str) -> String {
        format!("{name}.json")
    }

    /// Parse an increment's metadata from its bytes (`path` names it).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<IncrementMeta, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
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

/// The run log's name in `.strata/`.
pub const RUNS: &[u8] = b"runs.jsonl";

/// Append a record to the run log in `.strata/` (`state`).
pub fn append_run(
    state: &crate::fs::Dir,
    path: &Path,
    record: &RunRecord,
) -> Result<(), StoreError> {
    use std::io::Write;
    let mut line = serde_json::to_vec(record).expect("run record serializes");
    line.push(b'\n');
    let fd = rustix::fs::openat(
        state,
        c"runs.jsonl",
        rustix::fs::OFlags::WRONLY
            | rustix::fs::OFlags::APPEND
            | rustix::fs::OFlags::CREATE
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(|e| StoreError::io(path, std::io::Error::from_raw_os_error(e.raw_os_error())))?;
    std::fs::File::from(fd)
        .write_all(&line)
        .map_err(|e| StoreError::io(path, e))
}

/// Read the run log; lines that do not parse (a torn last line after a
/// crash) are skipped.
pub fn read_runs(path: &Path) -> Result<Vec<RunRecord>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(path, e)),
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
    use std::io::{Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let mut window: u64 = 16 * 1024;
    loop {
        let from = len.saturating_sub(window);
        file.seek(SeekFrom::Start(from))
            .map_err(|e| StoreError::io(path, e))?;
        let mut tail = Vec::new();
        (&mut file)
            .take(len - from)
            .read_to_end(&mut tail)
            .map_err(|e| StoreError::io(path, e))?;
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

    fn entry() -> Entry {
        Entry {
            path: RelPath::from_bytes(b"dir/caf\xe9"),
            meta: Meta {
                kind: Kind::File,
                size: 3,
                mtime: Timestamp {
                    sec: 1_700_000_000,
                    nsec: 42,
                },
                mode: 0o4640,
                uid: 1000,
                gid: 100,
                link: 0xabc,
            },
            ctime: ChangeTime::default(),
            tracked: true,
            digests: Digests::new(Some(Hash::of(b"abc")), None),
        }
    }

    #[test]
    fn a_record_round_trips_everything_a_restore_needs() {
        let xattrs = Xattrs(vec![
            (
                b"system.posix_acl_access".to_vec(),
                vec![2, 0, 0, 0, 1, 0, 6, 0],
            ),
            (b"user.comment".to_vec(), b"hello".to_vec()),
        ]);
        let record = FileRecord::new(&entry(), Op::New, &xattrs);
        assert_eq!(record.path_hex.as_deref(), Some("6469722f636166e9"));
        let text = serde_json::to_string(&record).unwrap();
        let back: FileRecord = serde_json::from_str(&text).unwrap();
        let r = back.check().unwrap();
        assert_eq!(r.path, entry().path);
        assert_eq!(r.meta, entry().meta);
        assert!(r.has_owner);
        assert_eq!(r.hash, entry().hash());
        assert_eq!(r.xattrs, xattrs);
    }

    #[test]
    fn records_that_escape_or_lie_are_refused() {
        let mut r = FileRecord::new(&entry(), Op::New, &Xattrs::default());
        for (path, hex_path) in [
            ("../victim/evil", None),
            ("/etc/passwd", None),
            ("a//b", None),
            ("x", Some("2f6574632f706173737764")), // "/etc/passwd"
            ("x", Some("2e2e")),                   // ".."
        ] {
            r.path = path.into();
            r.path_hex = hex_path.map(str::to_string);
            assert!(
                matches!(r.check(), Err(BadRecord::Path(_))),
                "{path} {hex_path:?}"
            );
        }
        let mut r = FileRecord::new(&entry(), Op::New, &Xattrs::default());
        r.kind = "fifo".into();
        assert!(r.check().is_err());
    }

    #[test]
    fn a_version_1_record_reads() {
        let v1 = r#"{"path":"a","op":"new","kind":"file","size":1,"mode":420,
            "mtime":"2026-01-01T00:00:00Z","hash":"00000000000000000000000000000001"}"#;
        let record: FileRecord = serde_json::from_str(v1).unwrap();
        let r = record.check().unwrap();
        assert!(!r.has_owner);
        assert!(r.xattrs.is_empty());
    }

    #[test]
    fn last_run_reads_the_latest_whole_record_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::fs::Dir::open_root(dir.path()).unwrap();
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
        for i in 0..2000 {
            append_run(&state, &path, &record(i)).unwrap();
        }
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"start\": \"2024-")
            .unwrap();
        assert_eq!(last_run(&path).unwrap(), Some(record(1999)));
        assert_eq!(read_runs(&path).unwrap().last(), Some(&record(1999)));
        std::fs::write(&path, b"garbage\n").unwrap();
        assert_eq!(last_run(&path).unwrap(), None);
    }
}
