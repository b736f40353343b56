//! The index: the state of every mirror file after the last commit.
//!
//! A compact binary file (`.strata/index`), read whole and written whole,
//! atomically. Binary rather than JSON because the no-change run is bounded
//! by walk + stat, and parsing 100,000 JSON records would cost as much as the
//! walk; the human-readable history lives in each increment's JSON.
//!
//! ```text
//! "STRATA-INDEX" 0x01 | last_len: u16 | last increment name | count: u64
//! per entry: path_len: u32 | path | kind: u8 | flags: u8 (1 tracked, 2 hash)
//!            | size: u64 | mtime: i64 | mtime_nsec: u32 | mode: u32 | [hash: 16]
//! xxh3-64 of everything before: u64
//! ```
//! All integers little-endian. A file that fails the checksum is corrupt, and
//! recovery rebuilds the index from the mirror.

use std::path::Path;

use super::{IoContext, StoreError, write_atomic};
use crate::scan::{Entry, Hash, Kind, Meta, RelPath};

const MAGIC: &[u8] = b"STRATA-INDEX\x01";

/// The mirror's state as of a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// Every mirror file, sorted by path.
    pub entries: Vec<Entry>,
    /// The newest increment committed with (or before) this index.
    pub last_increment: Option<String>,
}

/// Serialize an index into the file format.
pub fn encode(index: &Index) -> Vec<u8> {
    let entries = &index.entries;
    let last = index.last_increment.as_deref().unwrap_or("").as_bytes();
    let mut out = Vec::with_capacity(MAGIC.len() + 10 + last.len() + entries.len() * 80);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(last.len() as u16).to_le_bytes());
    out.extend_from_slice(last);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        let path = e.path.as_bytes();
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        out.push(match e.meta.kind {
            Kind::File => 0,
            Kind::Symlink => 1,
        });
        out.push(u8::from(e.tracked) | if e.hash.is_some() { 2 } else { 0 });
        out.extend_from_slice(&e.meta.size.to_le_bytes());
        out.extend_from_slice(&e.meta.mtime.to_le_bytes());
        out.extend_from_slice(&e.meta.mtime_nsec.to_le_bytes());
        out.extend_from_slice(&e.meta.mode.to_le_bytes());
        if let Some(h) = e.hash {
            out.extend_from_slice(&h.0);
        }
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

/// Parse an index file's bytes. `None` if they are not a valid index.
pub fn decode(bytes: &[u8]) -> Option<Index> {
    let body_len = bytes.len().checked_sub(8)?;
    let (body, sum) = bytes.split_at(body_len);
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != sum {
        return None;
    }
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let last_len = u16::from_le_bytes(r.array()?) as usize;
    let last = std::str::from_utf8(r.take(last_len)?).ok()?;
    let last_increment = (!last.is_empty()).then(|| last.to_string());
    let count = u64::from_le_bytes(r.array()?);
    let mut entries = Vec::with_capacity(count.min(body.len() as u64 / 30) as usize);
    for _ in 0..count {
        let len = u32::from_le_bytes(r.array()?) as usize;
        let path = RelPath::from_bytes(r.take(len)?);
        let kind = match r.array::<1>()?[0] {
            0 => Kind::File,
            1 => Kind::Symlink,
            _ => return None,
        };
        let flags = r.array::<1>()?[0];
        let meta = Meta {
            kind,
            size: u64::from_le_bytes(r.array()?),
            mtime: i64::from_le_bytes(r.array()?),
            mtime_nsec: u32::from_le_bytes(r.array()?),
            mode: u32::from_le_bytes(r.array()?),
        };
        let hash = if flags & 2 != 0 {
            Some(Hash(r.array()?))
        } else {
            None
        };
        entries.push(Entry {
            path,
            meta,
            tracked: flags & 1 != 0,
            hash,
        });
    }
    (r.pos == body.len()).then_some(Index {
        entries,
        last_increment,
    })
}

/// Read the index at `path`: `Ok(None)` when there is none yet, an error
/// when it exists but is unreadable or corrupt.
pub fn load(path: &Path) -> Result<Option<Index>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    decode(&bytes).map(Some).ok_or_else(|| StoreError::Corrupt {
        path: path.to_path_buf(),
        message: "not a valid strata index (checksum or format)".into(),
    })
}

/// Write the index atomically.
pub fn save(path: &Path, index: &Index) -> Result<(), StoreError> {
    debug_assert!(index.entries.windows(2).all(|w| w[0].path < w[1].path));
    write_atomic(path, &encode(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Index {
        Index {
            last_increment: Some("backup_20260101_000000".into()),
            entries: vec![
                Entry {
                    path: RelPath::from_bytes(b"a/b\xff c"),
                    meta: Meta {
                        kind: Kind::File,
                        size: 12,
                        mtime: -5,
                        mtime_nsec: 999_999_999,
                        mode: 0o4755,
                    },
                    tracked: true,
                    hash: Some(Hash::of(b"x")),
                },
                Entry {
                    path: RelPath::from_bytes(b"z"),
                    meta: Meta {
                        kind: Kind::Symlink,
                        size: 3,
                        mtime: 1_700_000_000,
                        mtime_nsec: 0,
                        mode: 0o777,
                    },
                    tracked: false,
                    hash: None,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&entries());
        assert_eq!(decode(&bytes), Some(entries()));
    }

    #[test]
    fn any_flipped_or_missing_byte_is_detected() {
        let bytes = encode(&entries());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode(&bad), None, "flip at {i}");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        assert_eq!(load(&path).unwrap(), None);
        save(&path, &entries()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(entries()));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(load(&path), Err(StoreError::Corrupt { .. })));
    }
}
