//! The index: the state of every mirror file after the last commit.
//!
//! A compact binary file (`.strata/index`), written whole, atomically.
//! Binary rather than JSON because the no-change run is bounded by walk +
//! stat, and parsing 100,000 JSON records would cost as much as the walk;
//! the human-readable history lives in each increment's JSON.
//!
//! ```text
//! "STRATA-INDEX" 0x01 | last_len: u16 | last increment name | count: u64
//! per entry: path_len: u32 | path | kind: u8 | flags: u8 (1 tracked, 2 hash)
//!            | size: u64 | mtime: i64 | mtime_nsec: u32 | mode: u32 | [hash: 16]
//! xxh3-64 of everything before: u64
//! ```
//! All integers little-endian. A file that fails the checksum is corrupt, and
//! recovery rebuilds the index from the mirror.
//!
//! A run never holds the index in memory: [`IndexFile::open`] checks the
//! file in one streaming pass, then [`Cursor`]s walk its entries in order,
//! through a small window of its bytes, once for the diff and once to write
//! the new index with [`Writer`]. (Held whole, the index would cost a
//! no-change run as much memory as its scan.) [`load`] decodes it whole, for
//! the commands that look entries up.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::{IoContext, StoreError, sync_dir, write_atomic};
use crate::scan::{Entry, EntryRef, Hash, Kind, Meta};

const MAGIC: &[u8] = b"STRATA-INDEX\x01";

/// The mirror's state as of a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// Every mirror file, sorted by path.
    pub entries: Vec<Entry>,
    /// The newest increment committed with (or before) this index.
    pub last_increment: Option<String>,
}

/// Append one record to `out`.
fn encode_record(out: &mut Vec<u8>, e: EntryRef<'_>) {
    out.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
    out.extend_from_slice(e.path);
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

fn encode_header(out: &mut Vec<u8>, last_increment: Option<&str>, count: u64) {
    let last = last_increment.unwrap_or("").as_bytes();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(last.len() as u16).to_le_bytes());
    out.extend_from_slice(last);
    out.extend_from_slice(&count.to_le_bytes());
}

/// Serialize an index into the file format.
pub fn encode(index: &Index) -> Vec<u8> {
    let entries = &index.entries;
    let mut out = Vec::with_capacity(MAGIC.len() + 300 + entries.len() * 100);
    encode_header(
        &mut out,
        index.last_increment.as_deref(),
        entries.len() as u64,
    );
    for e in entries {
        encode_record(&mut out, e.view());
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Parses records out of a slice of an index file's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// The header: last increment and entry count.
type Header = (Option<String>, u64);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    /// The header, or `None` if the bytes there are not (all of) one.
    fn header(&mut self) -> Option<Header> {
        if self.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let last_len = u16::from_le_bytes(self.array()?) as usize;
        let last = std::str::from_utf8(self.take(last_len)?).ok()?;
        let last_increment = (!last.is_empty()).then(|| last.to_string());
        let count = u64::from_le_bytes(self.array()?);
        Some((last_increment, count))
    }
    /// The next record, or `None` if the bytes there are not (all of) one.
    fn record(&mut self) -> Option<EntryRef<'a>> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        let path = self.take(len)?;
        let kind = match self.array::<1>()?[0] {
            0 => Kind::File,
            1 => Kind::Symlink,
            _ => return None,
        };
        let flags = self.array::<1>()?[0];
        if flags & !3 != 0 {
            return None;
        }
        let meta = Meta {
            kind,
            size: u64::from_le_bytes(self.array()?),
            mtime: i64::from_le_bytes(self.array()?),
            mtime_nsec: u32::from_le_bytes(self.array()?),
            mode: u32::from_le_bytes(self.array()?),
        };
        let hash = if flags & 2 != 0 {
            Some(Hash(self.array()?))
        } else {
            None
        };
        Some(EntryRef {
            path,
            meta,
            tracked: flags & 1 != 0,
            hash,
        })
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
    let (last_increment, count) = r.header()?;
    let mut entries = Vec::with_capacity(count.min(body.len() as u64 / 30) as usize);
    for _ in 0..count {
        entries.push(r.record()?.to_entry());
    }
    (r.pos == body.len()).then_some(Index {
        entries,
        last_increment,
    })
}

fn corrupt(path: &Path) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        message: "not a valid strata index (checksum or format)".into(),
    }
}

/// Read the index at `path`: `Ok(None)` when there is none yet, an error
/// when it exists but is unreadable or corrupt.
pub fn load(path: &Path) -> Result<Option<Index>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    decode(&bytes).map(Some).ok_or_else(|| corrupt(path))
}

/// Write the index atomically.
pub fn save(path: &Path, index: &Index) -> Result<(), StoreError> {
    debug_assert!(index.entries.windows(2).all(|w| w[0].path < w[1].path));
    write_atomic(path, &encode(index))
}

/// The first window of a cursor; it grows for a record that does not fit.
const WINDOW: usize = 256 * 1024;

/// An index file that [`IndexFile::open`] checked (checksum and format),
/// read entry by entry with [`IndexFile::cursor`].
#[derive(Debug, Clone)]
pub struct IndexFile {
    path: PathBuf,
    count: u64,
    last_increment: Option<String>,
}

impl IndexFile {
    /// Check the index at `path` in one streaming pass: `Ok(None)` when there
    /// is none yet, an error when it exists but is unreadable or corrupt.
    pub fn open(path: &Path) -> Result<Option<IndexFile>, StoreError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(path),
        };
        let len = file.metadata().at(path)?.len();
        let body_len = len.checked_sub(8).ok_or_else(|| corrupt(path))?;
        let mut cursor = Cursor::new(file, path, Some(body_len))?;
        while cursor.current().is_some() {
            cursor.advance();
        }
        let sum = cursor.checksum.take().map(|h| h.digest().to_le_bytes());
        let trailer = cursor.trailer();
        let index = IndexFile {
            path: path.to_path_buf(),
            count: cursor.count,
            last_increment: cursor.last_increment.take(),
        };
        cursor.finish()?;
        if trailer.is_none() || trailer != sum {
            return Err(corrupt(path));
        }
        Ok(Some(index))
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The newest increment committed with (or before) this index.
    pub fn last_increment(&self) -> Option<&str> {
        self.last_increment.as_deref()
    }

    /// Walk the entries from the start.
    pub fn cursor(&self) -> Result<Cursor, StoreError> {
        let file = File::open(&self.path).at(&self.path)?;
        let cursor = Cursor::new(file, &self.path, None)?;
        if cursor.count != self.count {
            return Err(corrupt(&self.path));
        }
        Ok(cursor)
    }

    /// Write a copy at `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        let mut out = Writer::create(path, self.last_increment(), self.count)?;
        let mut cursor = self.cursor()?;
        while let Some(entry) = cursor.current() {
            out.entry(entry)?;
            cursor.advance();
        }
        cursor.finish()?;
        out.commit()
    }
}

/// Walks an index file's entries in order, through a window of its bytes:
/// [`Cursor::current`] is the entry at hand (`None` at the end), and
/// [`Cursor::advance`] moves on. A read error or a malformed record ends the
/// walk early; [`Cursor::finish`] says so, and whoever walked must then
/// discard what it made of the entries.
pub struct Cursor {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    /// Start of the current record (or of the unread rest) in `buf`.
    start: usize,
    /// Length of the current record; 0 when there is none.
    len: usize,
    /// End of the bytes read into `buf`.
    end: usize,
    /// Bytes of the file read so far.
    read: u64,
    eof: bool,
    /// Records not yet made current.
    left: u64,
    count: u64,
    last_increment: Option<String>,
    /// While checking: the hash of the body so far, and the body's length.
    checksum: Option<xxhash_rust::xxh3::Xxh3>,
    body_len: u64,
    error: Option<StoreError>,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "index::Cursor({}, {} left)",
            self.path.display(),
            self.left
        )
    }
}

impl crate::diff::IndexWalk for Cursor {
    fn current(&self) -> Option<EntryRef<'_>> {
        Cursor::current(self)
    }
    fn advance(&mut self) {
        Cursor::advance(self)
    }
}

impl Cursor {
    /// A cursor on the first entry. With `body_len`, it hashes the body as
    /// it reads (see [`IndexFile::open`]).
    fn new(file: File, path: &Path, body_len: Option<u64>) -> Result<Cursor, StoreError> {
        let mut cursor = Cursor {
            file,
            path: path.to_path_buf(),
            buf: vec![0; WINDOW],
            start: 0,
            len: 0,
            end: 0,
            read: 0,
            eof: false,
            left: 0,
            count: 0,
            last_increment: None,
            checksum: body_len.map(|_| xxhash_rust::xxh3::Xxh3::new()),
            body_len: body_len.unwrap_or(u64::MAX),
            error: None,
        };
        let header = loop {
            let mut r = Reader {
                bytes: &cursor.buf[..cursor.end],
                pos: 0,
            };
            if let Some(header) = r.header() {
                cursor.start = r.pos;
                break header;
            }
            let longest = MAGIC.len() + 2 + usize::from(u16::MAX) + 8;
            if cursor.end >= longest
                || cursor.buf[..cursor.end.min(MAGIC.len())] != MAGIC[..cursor.end.min(MAGIC.len())]
                || !cursor.fill()
            {
                return Err(cursor.error.take().unwrap_or_else(|| corrupt(path)));
            }
        };
        (cursor.last_increment, cursor.count) = header;
        cursor.left = cursor.count;
        cursor.advance();
        Ok(cursor)
    }

    /// Read more of the file into the window, keeping the bytes from
    /// `start` on. `false` at the end of the file or on an error.
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some(StoreError::Io {
                        path: self.path.clone(),
                        source: e,
                    });
                    return false;
                }
            }
        };
        if let Some(hasher) = &mut self.checksum {
            let body_left = self.body_len.saturating_sub(self.read);
            let hashed = (n as u64).min(body_left) as usize;
            hasher.update(&self.buf[self.end..self.end + hashed]);
        }
        self.read += n as u64;
        self.end += n;
        self.eof = n == 0;
        n > 0
    }

    /// The entry at hand; `None` after the last one (or an error).
    pub fn current(&self) -> Option<EntryRef<'_>> {
        if self.len == 0 {
            return None;
        }
        Reader {
            bytes: &self.buf[self.start..self.start + self.len],
            pos: 0,
        }
        .record()
    }

    /// Move to the next entry.
    pub fn advance(&mut self) {
        self.start += self.len;
        self.len = 0;
        if self.left == 0 || self.error.is_some() {
            return;
        }
        loop {
            let mut r = Reader {
                bytes: &self.buf[self.start..self.end],
                pos: 0,
            };
            if r.record().is_some() {
                self.len = r.pos;
                self.left -= 1;
                return;
            }
            // Read more only if a whole record could not have been there:
            // a malformed one must not pull the rest of the file in.
            let avail = &self.buf[self.start..self.end];
            let longest = match avail.get(..4) {
                Some(len) => 4 + u32::from_le_bytes(len.try_into().expect("4")) as usize + 46,
                None => 4,
            };
            if avail.len() >= longest || !self.fill() {
                if self.error.is_none() {
                    self.error = Some(corrupt(&self.path));
                }
                return;
            }
        }
    }

    /// The bytes after the last record, when they are exactly a checksum.
    fn trailer(&mut self) -> Option<[u8; 8]> {
        if self.left > 0 || self.error.is_some() {
            return None;
        }
        while self.end - self.start <= 8 && self.fill() {}
        let rest = &self.buf[self.start..self.end];
        (rest.len() == 8).then(|| rest.try_into().expect("8 bytes"))
    }

    /// Whether the walk went through: `Err` if a read failed or a record was
    /// malformed before the last entry.
    pub fn finish(mut self) -> Result<(), StoreError> {
        match self.error.take() {
            Some(e) => Err(e),
            None if self.left > 0 => Err(corrupt(&self.path)),
            None => Ok(()),
        }
    }
}

/// Writes an index file entry by entry, without holding it in memory:
/// to a temp file beside `path`, renamed over it by [`Writer::commit`]
/// (after an fsync, and one of the directory), as [`write_atomic`] does.
/// The entry count is part of the header, so it is given up front.
pub struct Writer {
    out: BufWriter<File>,
    hasher: xxhash_rust::xxh3::Xxh3,
    buf: Vec<u8>,
    path: PathBuf,
    tmp: PathBuf,
    left: u64,
    #[cfg(debug_assertions)]
    last: Option<Vec<u8>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "index::Writer({}, {} left)",
            self.tmp.display(),
            self.left
        )
    }
}

impl Writer {
    /// Start an index of `count` entries at `path`.
    pub fn create(
        path: &Path,
        last_increment: Option<&str>,
        count: u64,
    ) -> Result<Writer, StoreError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&tmp).at(&tmp)?;
        let mut writer = Writer {
            out: BufWriter::with_capacity(WINDOW, file),
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            buf: Vec::with_capacity(4096),
            path: path.to_path_buf(),
            tmp,
            left: count,
            #[cfg(debug_assertions)]
            last: None,
        };
        encode_header(&mut writer.buf, last_increment, count);
        writer.flush_buf()?;
        Ok(writer)
    }

    fn flush_buf(&mut self) -> Result<(), StoreError> {
        self.hasher.update(&self.buf);
        self.out.write_all(&self.buf).at(&self.tmp)?;
        self.buf.clear();
        Ok(())
    }

    /// Append an entry (entries come in path order, as many as announced).
    pub fn entry(&mut self, entry: EntryRef<'_>) -> Result<(), StoreError> {
        #[cfg(debug_assertions)]
        {
            assert!(self.last.as_deref().is_none_or(|last| last < entry.path));
            self.last = Some(entry.path.to_vec());
        }
        if self.left == 0 {
            return Err(self.miscount());
        }
        self.left -= 1;
        encode_record(&mut self.buf, entry);
        self.flush_buf()
    }

    fn miscount(&self) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            message: "internal error: the new index has another entry count than announced".into(),
        }
    }

    /// Finish the file and put it in place.
    pub fn commit(mut self) -> Result<(), StoreError> {
        if self.left != 0 {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(self.miscount());
        }
        let sum = self.hasher.digest();
        self.out.write_all(&sum.to_le_bytes()).at(&self.tmp)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .at(&self.tmp)?;
        file.sync_all().at(&self.tmp)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).at(&self.path)?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::RelPath;

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

    fn walk(file: &IndexFile) -> Vec<Entry> {
        let mut cursor = file.cursor().unwrap();
        let mut out = Vec::new();
        while let Some(e) = cursor.current() {
            out.push(e.to_entry());
            cursor.advance();
        }
        cursor.finish().unwrap();
        out
    }

    #[test]
    fn an_index_file_is_checked_then_walked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        assert!(IndexFile::open(&path).unwrap().is_none());
        save(&path, &entries()).unwrap();
        let file = IndexFile::open(&path).unwrap().unwrap();
        assert_eq!(file.len(), 2);
        assert_eq!(file.last_increment(), Some("backup_20260101_000000"));
        assert_eq!(walk(&file), entries().entries);
        // Twice: a cursor starts from the beginning.
        assert_eq!(walk(&file), entries().entries);

        let bytes = encode(&entries());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                matches!(IndexFile::open(&path), Err(StoreError::Corrupt { .. })),
                "flip at {i}"
            );
        }
        for cut in [0, 5, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(IndexFile::open(&path).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(IndexFile::open(&path).is_err());
    }

    #[test]
    fn a_cursor_reads_records_larger_than_its_window_and_many_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let mut index = Index::default();
        let long = vec![b'x'; 3 * WINDOW];
        index.entries.push(Entry {
            path: RelPath::from_bytes(&long),
            ..entries().entries[0].clone()
        });
        for i in 0..20_000 {
            index.entries.push(Entry {
                path: RelPath::from_bytes(format!("y/{i:08}").as_bytes()),
                hash: (i % 3 == 0).then(|| Hash::of(b"h")),
                ..entries().entries[1].clone()
            });
        }
        save(&path, &index).unwrap();
        let file = IndexFile::open(&path).unwrap().unwrap();
        assert_eq!(walk(&file), index.entries);
        // The file changing under a cursor ends the walk with an error.
        let mut cursor = file.cursor().unwrap();
        std::fs::write(&path, encode(&entries())).unwrap();
        let mut n = 0;
        while cursor.current().is_some() {
            cursor.advance();
            n += 1;
        }
        assert!(n < index.entries.len());
        assert!(cursor.finish().is_err());
        // A cursor on a file that is not the one checked.
        assert!(file.cursor().is_err());
    }

    #[test]
    fn the_writer_writes_what_encode_encodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let index = entries();
        let mut out = Writer::create(&path, index.last_increment.as_deref(), 2).unwrap();
        for e in &index.entries {
            out.entry(e.view()).unwrap();
        }
        out.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), encode(&index));

        let copy = dir.path().join("copy");
        IndexFile::open(&path)
            .unwrap()
            .unwrap()
            .save(&copy)
            .unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), encode(&index));
    }

    #[test]
    fn the_writer_holds_to_its_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let out = Writer::create(&path, None, 1).unwrap();
        assert!(out.commit().is_err());
        let mut out = Writer::create(&path, None, 0).unwrap();
        assert!(out.entry(entries().entries[0].view()).is_err());
        assert!(!path.exists());
    }
}
