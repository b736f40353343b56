//! The index: the state of every mirror entry after the last commit.
//!
//! A compact binary file (`.strata/index`), written whole, atomically.
//! Binary rather than JSON because the no-change run is bounded by walk +
//! stat, and parsing 100,000 JSON records would cost as much as the walk;
//! the human-readable history lives in each increment's JSON.
//!
//! ```text
//! header:  "STRATA-INDEX" version:u8 (2) | last_len:u16 | last increment | count:u64
//! record:  path_len:u32 | path | kind:u8 | flags:u8
//!          | size:u64 | mtime:i64 | mtime_nsec:u32 | mode:u32 | uid:u32 | gid:u32
//!          | ctime:i64 | ctime_nsec:u32
//!          | [hash:16 if flags&HASH] | [xattrs:16 if flags&XATTRS] | [link:u64 if flags&LINK]
//! trailer: xxh3-64 of everything before:u64
//! ```
//! All integers little-endian; kind 0 file, 1 symlink, 2 directory. A file
//! that fails the checksum is corrupt, and recovery rebuilds the index from
//! the mirror.
//!
//! Version 1 (strata before directories, owners and xattrs were kept) had
//! `kind | flags(1 tracked, 2 hash) | size | mtime | mtime_nsec | mode |
//! [hash]` records. It is still read: such an index comes back with
//! [`Index::version`] 1, and the run that meets it rebuilds the index from
//! the mirror with the old entries as hints (owners from the mirror, xattrs
//! read afresh), then writes version 2. No step by hand.
//!
//! A run never holds the index in memory: [`IndexFile::open`] checks the
//! file in one streaming pass, then [`Cursor`]s walk its entries in order
//! through a window of its bytes, once for the diff and once to write the
//! new index with [`Writer`]. [`load`] reads it whole, for the commands that
//! look entries up. Both go through the one [`Reader`].

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use super::{StoreError, TMP};
use crate::entry::{ChangeTime, Entry, EntryRef, EntryWalk, Hash, Kind, Meta, Timestamp};
use crate::fs::Dir;

/// The file's name in `.strata/`.
pub const INDEX: &[u8] = b"index";

const MAGIC: &[u8] = b"STRATA-INDEX";
const VERSION: u8 = 2;

const TRACKED: u8 = 1;
const HASH: u8 = 2;
const XATTRS: u8 = 4;
const LINK: u8 = 8;

/// Bytes of a version-2 record after its path, without the optional parts.
const FIXED_V2: usize = 1 + 1 + 8 + 8 + 4 + 4 + 4 + 4 + 8 + 4;
/// The optional parts.
const OPTIONAL_V2: usize = 16 + 16 + 8;
/// Bytes of a version-1 record after its path, without its hash.
const FIXED_V1: usize = 1 + 1 + 8 + 8 + 4 + 4;

/// The mirror's state as of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Every mirror entry, sorted by path.
    pub entries: Vec<Entry>,
    /// The newest increment committed with (or before) this index.
    pub last_increment: Option<String>,
    /// The format version it was read in (what [`save`] writes: 2).
    pub version: u8,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            entries: Vec::new(),
            last_increment: None,
            version: VERSION,
        }
    }
}

fn encode_header(out: &mut Vec<u8>, last_increment: Option<&str>, count: u64) {
    let last = last_increment.unwrap_or("").as_bytes();
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(last.len() as u16).to_le_bytes());
    out.extend_from_slice(last);
    out.extend_from_slice(&count.to_le_bytes());
}

fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::File => 0,
        Kind::Symlink => 1,
        Kind::Dir => 2,
    }
}

fn encode_record(out: &mut Vec<u8>, e: &EntryRef<'_>) {
    out.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
    out.extend_from_slice(e.path);
    out.push(kind_byte(e.meta.kind));
    let flags = (u8::from(e.tracked) * TRACKED)
        | (u8::from(e.hash.is_some()) * HASH)
        | (u8::from(e.xattrs.is_some()) * XATTRS)
        | (u8::from(e.meta.link != 0) * LINK);
    out.push(flags);
    out.extend_from_slice(&e.meta.size.to_le_bytes());
    out.extend_from_slice(&e.meta.mtime.sec.to_le_bytes());
    out.extend_from_slice(&e.meta.mtime.nsec.to_le_bytes());
    out.extend_from_slice(&u32::from(e.meta.mode).to_le_bytes());
    out.extend_from_slice(&e.meta.uid.to_le_bytes());
    out.extend_from_slice(&e.meta.gid.to_le_bytes());
    let ctime = e.ctime.to_timestamp();
    out.extend_from_slice(&ctime.sec.to_le_bytes());
    out.extend_from_slice(&ctime.nsec.to_le_bytes());
    if let Some(h) = e.hash {
        out.extend_from_slice(&h.0);
    }
    if let Some(x) = e.xattrs {
        out.extend_from_slice(&x.0);
    }
    if e.meta.link != 0 {
        out.extend_from_slice(&e.meta.link.to_le_bytes());
    }
}

/// The header: version, last increment and entry count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    version: u8,
    last_increment: Option<String>,
    count: u64,
}

/// What a parse of bytes found: a value and its length, bytes that cannot
/// be one, or too few bytes to tell (`need`: at least this many).
enum Parse<T> {
    Ok(T, usize),
    Bad,
    Need,
}

/// The one parser of the format, over a slice of the file's bytes.
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
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.array()?))
    }

    fn header(bytes: &'a [u8]) -> Parse<Header> {
        let mut r = Reader { bytes, pos: 0 };
        let Some(magic) = r.take(MAGIC.len()) else {
            return if MAGIC.starts_with(bytes) {
                Parse::Need
            } else {
                Parse::Bad
            };
        };
        if magic != MAGIC {
            return Parse::Bad;
        }
        let parsed = (|| {
            let version = r.array::<1>()?[0];
            let last_len = u16::from_le_bytes(r.array()?) as usize;
            let last = r.take(last_len)?;
            let count = r.u64()?;
            Some((version, last, count))
        })();
        match parsed {
            None => Parse::Need,
            Some((version, last, count)) => {
                if !(1..=VERSION).contains(&version) {
                    return Parse::Bad;
                }
                let Ok(last) = std::str::from_utf8(last) else {
                    return Parse::Bad;
                };
                Parse::Ok(
                    Header {
                        version,
                        last_increment: (!last.is_empty()).then(|| last.to_string()),
                        count,
                    },
                    r.pos,
                )
            }
        }
    }

    fn record(bytes: &'a [u8], version: u8) -> Parse<EntryRef<'a>> {
        let mut r = Reader { bytes, pos: 0 };
        let Some(len) = r.u32() else {
            return Parse::Need;
        };
        let len = len as usize;
        let longest = 4
            + len
            + if version == 1 {
                FIXED_V1 + 16
            } else {
                FIXED_V2 + OPTIONAL_V2
            };
        let parsed = if version == 1 {
            r.record_v1(len)
        } else {
            r.record_v2(len)
        };
        match parsed {
            Some(Some(e)) => Parse::Ok(e, r.pos),
            Some(None) => Parse::Bad,
            None if bytes.len() >= longest => Parse::Bad,
            None => Parse::Need,
        }
    }

    /// `None`: too short; `Some(None)`: malformed.
    fn record_v2(&mut self, len: usize) -> Option<Option<EntryRef<'a>>> {
        let path = self.take(len)?;
        let kind = self.array::<1>()?[0];
        let flags = self.array::<1>()?[0];
        let size = self.u64()?;
        let mtime = Timestamp {
            sec: self.i64()?,
            nsec: self.u32()?,
        };
        // A mode beyond the permission bits is not one strata wrote.
        let Ok(mode) = u16::try_from(self.u32()?) else {
            return Some(None);
        };
        let uid = self.u32()?;
        let gid = self.u32()?;
        let ctime = Timestamp {
            sec: self.i64()?,
            nsec: self.u32()?,
        };
        let hash = if flags & HASH != 0 {
            Some(Hash(self.array()?))
        } else {
            None
        };
        let xattrs = if flags & XATTRS != 0 {
            Some(Hash(self.array()?))
        } else {
            None
        };
        let link = if flags & LINK != 0 { self.u64()? } else { 0 };
        let kind = match kind {
            0 => Kind::File,
            1 => Kind::Symlink,
            2 => Kind::Dir,
            _ => return Some(None),
        };
        if flags & !(TRACKED | HASH | XATTRS | LINK) != 0
            || crate::entry::RelPath::check(path).is_err()
        {
            return Some(None);
        }
        Some(Some(EntryRef {
            path,
            meta: Meta {
                kind,
                size,
                mtime,
                mode,
                uid,
                gid,
                link,
            },
            ctime: ctime.into(),
            tracked: flags & TRACKED != 0,
            hash,
            xattrs,
        }))
    }

    fn record_v1(&mut self, len: usize) -> Option<Option<EntryRef<'a>>> {
        let path = self.take(len)?;
        let kind = self.array::<1>()?[0];
        let flags = self.array::<1>()?[0];
        let size = self.u64()?;
        let mtime = Timestamp {
            sec: self.i64()?,
            nsec: self.u32()?,
        };
        // A mode beyond the permission bits is not one strata wrote.
        let Ok(mode) = u16::try_from(self.u32()?) else {
            return Some(None);
        };
        let hash = if flags & 2 != 0 {
            Some(Hash(self.array()?))
        } else {
            None
        };
        let kind = match kind {
            0 => Kind::File,
            1 => Kind::Symlink,
            _ => return Some(None),
        };
        if flags & !3 != 0 || path.is_empty() || crate::entry::RelPath::check(path).is_err() {
            return Some(None);
        }
        Some(Some(EntryRef {
            path,
            meta: Meta {
                kind,
                size,
                mtime,
                mode,
                uid: UNKNOWN_OWNER,
                gid: UNKNOWN_OWNER,
                link: 0,
            },
            ctime: ChangeTime::UNKNOWN,
            tracked: flags & 1 != 0,
            hash,
            xattrs: None,
        }))
    }
}

/// The owner a version-1 entry has: it was not recorded.
pub const UNKNOWN_OWNER: u32 = u32::MAX;

fn corrupt(path: &std::path::Path, message: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The first window of a cursor; it grows for a record that does not fit.
const WINDOW: usize = 256 * 1024;

/// An index file that [`IndexFile::open`] checked (checksum and format),
/// read entry by entry with [`IndexFile::cursor`].
#[derive(Debug)]
pub struct IndexFile {
    file: File,
    path: std::path::PathBuf,
    header: Header,
    body_len: u64,
}

impl IndexFile {
    /// Check the index in `.strata/` (`state`; `path` names it in errors)
    /// in one streaming pass: `Ok(None)` when there is none yet, an error
    /// when it exists but is unreadable or corrupt.
    pub fn open(state: &Dir, path: &std::path::Path) -> Result<Option<IndexFile>, StoreError> {
        let file = match state.open_read(INDEX) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(path, e)),
        };
        let st = crate::fs::fstat(&file).map_err(|e| StoreError::io(path, e))?;
        if st.file_type != crate::fs::FileTypeOf::File {
            return Err(corrupt(path, "not a regular file"));
        }
        let body_len = st
            .size
            .checked_sub(8)
            .ok_or_else(|| corrupt(path, "too short to be a strata index"))?;
        // The checksum, streamed.
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; WINDOW];
        let mut pos = 0u64;
        while pos < body_len {
            let want = ((body_len - pos) as usize).min(buf.len());
            let n = file
                .read_at(&mut buf[..want], pos)
                .map_err(|e| StoreError::io(path, e))?;
            if n == 0 {
                return Err(corrupt(path, "shorter than it was"));
            }
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        let mut trailer = [0u8; 8];
        file.read_exact_at(&mut trailer, body_len)
            .map_err(|e| StoreError::io(path, e))?;
        if hasher.digest().to_le_bytes() != trailer {
            return Err(corrupt(path, "not a valid strata index (checksum)"));
        }
        let mut index = IndexFile {
            file,
            path: path.to_path_buf(),
            header: Header {
                version: VERSION,
                last_increment: None,
                count: 0,
            },
            body_len,
        };
        // The format, walked once: a checksum that matches bytes strata did
        // not write in this format is still caught.
        let header = {
            let mut cursor = index.cursor_unchecked()?;
            let header = cursor.header.clone();
            while cursor.current().is_some() {
                cursor.advance();
            }
            cursor.finish()?;
            header
        };
        index.header = header;
        Ok(Some(index))
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.header.count
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.header.count == 0
    }

    /// The format version.
    pub fn version(&self) -> u8 {
        self.header.version
    }

    /// The newest increment committed with (or before) this index.
    pub fn last_increment(&self) -> Option<&str> {
        self.header.last_increment.as_deref()
    }

    fn cursor_unchecked(&self) -> Result<Cursor<'_>, StoreError> {
        Cursor::new(&self.file, &self.path, self.body_len)
    }

    /// Walk the entries from the start.
    pub fn cursor(&self) -> Result<Cursor<'_>, StoreError> {
        let cursor = self.cursor_unchecked()?;
        if cursor.header != self.header {
            return Err(corrupt(&self.path, "changed since it was checked"));
        }
        Ok(cursor)
    }

    /// Read every entry.
    pub fn load(&self) -> Result<Index, StoreError> {
        let mut cursor = self.cursor()?;
        let mut entries = Vec::with_capacity(self.header.count.min(1 << 24) as usize);
        while let Some(e) = cursor.current() {
            entries.push(e.to_entry());
            cursor.advance();
        }
        cursor.finish()?;
        Ok(Index {
            entries,
            last_increment: self.header.last_increment.clone(),
            version: self.header.version,
        })
    }
}

/// Walks an index file's entries in order, through a window of its bytes:
/// [`Cursor::current`] is the entry at hand (`None` at the end), and
/// [`Cursor::advance`] moves on. A read error or a malformed record ends the
/// walk early; [`Cursor::finish`] says so, and whoever walked must then
/// discard what it made of the entries.
pub struct Cursor<'f> {
    file: &'f File,
    path: std::path::PathBuf,
    buf: Vec<u8>,
    /// Start of the current record (or of the unread rest) in `buf`.
    start: usize,
    /// Length of the current record; 0 when there is none.
    len: usize,
    /// End of the bytes read into `buf`.
    end: usize,
    /// Offset in the file of `buf[0]`.
    offset: u64,
    body_len: u64,
    header: Header,
    /// Records not yet made current.
    left: u64,
    error: Option<StoreError>,
}

impl std::fmt::Debug for Cursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "index::Cursor({}, {} left)",
            self.path.display(),
            self.left
        )
    }
}

impl EntryWalk for Cursor<'_> {
    fn current(&self) -> Option<EntryRef<'_>> {
        Cursor::current(self)
    }
    fn advance(&mut self) {
        Cursor::advance(self)
    }
}

impl<'f> Cursor<'f> {
    fn new(
        file: &'f File,
        path: &std::path::Path,
        body_len: u64,
    ) -> Result<Cursor<'f>, StoreError> {
        let mut cursor = Cursor {
            file,
            path: path.to_path_buf(),
            buf: vec![0; WINDOW],
            start: 0,
            len: 0,
            end: 0,
            offset: 0,
            body_len,
            header: Header {
                version: 0,
                last_increment: None,
                count: 0,
            },
            left: 0,
            error: None,
        };
        loop {
            match Reader::header(&cursor.buf[..cursor.end]) {
                Parse::Ok(header, n) => {
                    cursor.start = n;
                    cursor.left = header.count;
                    cursor.header = header;
                    break;
                }
                Parse::Bad => return Err(corrupt(path, "not a strata index (header)")),
                Parse::Need => {
                    if !cursor.fill() {
                        return Err(cursor
                            .error
                            .take()
                            .unwrap_or_else(|| corrupt(path, "truncated header")));
                    }
                }
            }
        }
        cursor.advance();
        Ok(cursor)
    }

    /// Read more of the body into the window, keeping the bytes from
    /// `start` on. `false` at the end of the body or on an error.
    fn fill(&mut self) -> bool {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.offset += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let at = self.offset + self.end as u64;
        if at >= self.body_len {
            return false;
        }
        let want = ((self.body_len - at) as usize).min(self.buf.len() - self.end);
        loop {
            match self
                .file
                .read_at(&mut self.buf[self.end..self.end + want], at)
            {
                Ok(0) => return false,
                Ok(n) => {
                    self.end += n;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some(StoreError::io(&self.path, e));
                    return false;
                }
            }
        }
    }

    /// The entry at hand; `None` after the last one (or an error).
    pub fn current(&self) -> Option<EntryRef<'_>> {
        if self.len == 0 {
            return None;
        }
        match Reader::record(
            &self.buf[self.start..self.start + self.len],
            self.header.version,
        ) {
            Parse::Ok(e, _) => Some(e),
            _ => None,
        }
    }

    /// Move to the next entry.
    pub fn advance(&mut self) {
        self.start += self.len;
        self.len = 0;
        if self.left == 0 || self.error.is_some() {
            return;
        }
        loop {
            match Reader::record(&self.buf[self.start..self.end], self.header.version) {
                Parse::Ok(_, n) => {
                    self.len = n;
                    self.left -= 1;
                    return;
                }
                Parse::Bad => {
                    self.error = Some(corrupt(&self.path, "a malformed record"));
                    return;
                }
                Parse::Need => {
                    if !self.fill() {
                        if self.error.is_none() {
                            self.error = Some(corrupt(&self.path, "truncated"));
                        }
                        return;
                    }
                }
            }
        }
    }

    /// Whether the walk so far went well (a walk may stop early): `Err` if a
    /// read failed or a record was malformed.
    pub fn check(mut self) -> Result<(), StoreError> {
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether the walk went through: `Err` if a read failed or a record was
    /// malformed, or bytes are left after the last record.
    pub fn finish(mut self) -> Result<(), StoreError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.left > 0 {
            return Err(corrupt(&self.path, "fewer entries than its header says"));
        }
        let consumed = self.offset + self.start as u64;
        if consumed != self.body_len {
            return Err(corrupt(&self.path, "bytes after the last entry"));
        }
        Ok(())
    }
}

/// Writes an index entry by entry, without holding it in memory: to an
/// anonymous file in `.strata/tmp/`, named and renamed over
/// `.strata/index` by [`Writer::commit`] after an fsync (and one of the
/// directory). The entry count is part of the header, so it is given up
/// front.
pub struct Writer<'s> {
    out: io::BufWriter<File>,
    hasher: xxhash_rust::xxh3::Xxh3,
    buf: Vec<u8>,
    state: &'s Dir,
    tmp: Dir,
    path: std::path::PathBuf,
    left: u64,
    last: Option<Vec<u8>>,
}

impl std::fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "index::Writer({}, {} left)",
            self.path.display(),
            self.left
        )
    }
}

/// The temp name the index gets in `.strata/tmp/` just before its rename.
const TMP_NAME: &[u8] = b"index.new";

impl<'s> Writer<'s> {
    /// Start an index of `count` entries in `.strata/` (`state`, named
    /// `path` in errors).
    pub fn create(
        state: &'s Dir,
        path: &std::path::Path,
        last_increment: Option<&str>,
        count: u64,
    ) -> Result<Writer<'s>, StoreError> {
        let tmp = state
            .create_dirs(TMP, 0o700)
            .map_err(|e| StoreError::io(path, e))?;
        let file = tmp.tmpfile(0o600).map_err(|e| StoreError::io(path, e))?;
        let mut writer = Writer {
            out: io::BufWriter::with_capacity(WINDOW, file),
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            buf: Vec::with_capacity(4096),
            state,
            tmp,
            path: path.to_path_buf(),
            left: count,
            last: None,
        };
        encode_header(&mut writer.buf, last_increment, count);
        writer.flush_buf()?;
        Ok(writer)
    }

    fn flush_buf(&mut self) -> Result<(), StoreError> {
        self.hasher.update(&self.buf);
        self.out
            .write_all(&self.buf)
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.buf.clear();
        Ok(())
    }

    /// Append an entry (entries come in path order, as many as announced).
    pub fn entry(&mut self, entry: &EntryRef<'_>) -> Result<(), StoreError> {
        if self.last.as_deref().is_some_and(|last| last >= entry.path) || self.left == 0 {
            return Err(self.internal("entries out of order or more than announced"));
        }
        self.last = Some(entry.path.to_vec());
        self.left -= 1;
        encode_record(&mut self.buf, entry);
        self.flush_buf()
    }

    fn internal(&self, what: &str) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            message: format!("internal error writing the index: {what}"),
        }
    }

    /// Finish the file and put it in place.
    pub fn commit(mut self) -> Result<(), StoreError> {
        if self.left != 0 {
            return Err(self.internal("fewer entries than announced"));
        }
        let sum = self.hasher.digest();
        let path = self.path.clone();
        let io = |e| StoreError::io(&path, e);
        self.out.write_all(&sum.to_le_bytes()).map_err(io)?;
        let file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        let _ = self.tmp.unlink(TMP_NAME);
        self.tmp.link_file(&file, TMP_NAME).map_err(io)?;
        if let Err(e) = self.tmp.rename(TMP_NAME, self.state, INDEX) {
            let _ = self.tmp.unlink(TMP_NAME);
            return Err(io(e));
        }
        self.state.sync().map_err(io)
    }
}

/// Write a whole index atomically.
pub fn save(state: &Dir, path: &std::path::Path, index: &Index) -> Result<(), StoreError> {
    let mut out = Writer::create(
        state,
        path,
        index.last_increment.as_deref(),
        index.entries.len() as u64,
    )?;
    for e in &index.entries {
        out.entry(&e.view())?;
    }
    out.commit()
}

/// Read the index whole: `Ok(None)` when there is none yet, an error when
/// it exists but is unreadable or corrupt.
pub fn load(state: &Dir, path: &std::path::Path) -> Result<Option<Index>, StoreError> {
    match IndexFile::open(state, path)? {
        None => Ok(None),
        Some(file) => file.load().map(Some),
    }
}

/// Whether `bytes` begin as an index file does (a whole index, any
/// version), as opposed to an object-store manifest (`crate::store::object`).
pub fn is_index(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

const DELTA_MAGIC: &[u8] = b"STRATA-DELTA";
const DELTA_VERSION: u8 = 1;
const PUT: u8 = 0;
const REMOVE: u8 = 1;

/// What a run changed in the index: each path it names (in path order,
/// once) gets its new entry or leaves; the index then has `count` entries
/// and `last_increment` as its newest increment. An object store keeps the
/// index as a base and these (see `crate::store::object`).
///
/// ```text
/// header:  "STRATA-DELTA" version:u8 (1) | last_len:u16 | last increment | count:u64 | ops:u64
/// op:      0 | record (as in an index, version 2)     the path's new entry
///        | 1 | path_len:u32 | path                     the path left
/// trailer: xxh3-64 of everything before:u64
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// The newest increment after it.
    pub last_increment: Option<String>,
    /// The index's entries after it.
    pub count: u64,
    /// The paths it changes, in path order.
    pub updates: Vec<super::commit::Update>,
}

/// Encode a delta of `updates` (in path order, each once).
pub fn encode_delta(
    updates: impl Iterator<Item = super::commit::Update>,
    last_increment: Option<&str>,
    count: u64,
) -> Vec<u8> {
    let last = last_increment.unwrap_or("").as_bytes();
    let mut body = Vec::new();
    let mut ops = 0u64;
    for u in updates {
        ops += 1;
        match &u.entry {
            Some(e) => {
                body.push(PUT);
                encode_record(&mut body, &e.view());
            }
            None => {
                body.push(REMOVE);
                let p = u.path.as_bytes();
                body.extend_from_slice(&(p.len() as u32).to_le_bytes());
                body.extend_from_slice(p);
            }
        }
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(DELTA_MAGIC);
    out.push(DELTA_VERSION);
    out.extend_from_slice(&(last.len() as u16).to_le_bytes());
    out.extend_from_slice(last);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&ops.to_le_bytes());
    out.extend_from_slice(&body);
    let sum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Decode a delta that [`encode_delta`] wrote; `path` names it in errors.
/// Bytes that are not one (a bad checksum, a malformed record, paths out
/// of order) are an error, never a panic.
pub fn decode_delta(bytes: &[u8], path: &std::path::Path) -> Result<Delta, StoreError> {
    let bad = |what: &str| corrupt(path, &format!("not a strata index delta ({what})"));
    let body_len = bytes
        .len()
        .checked_sub(8)
        .filter(|_| bytes.starts_with(DELTA_MAGIC))
        .ok_or_else(|| bad("header"))?;
    let (body, trailer) = bytes.split_at(body_len);
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != trailer {
        return Err(bad("checksum"));
    }
    let mut r = Reader {
        bytes: body,
        pos: DELTA_MAGIC.len(),
    };
    let header = (|| {
        let version = r.array::<1>()?[0];
        let last_len = u16::from_le_bytes(r.array()?) as usize;
        let last = r.take(last_len)?;
        Some((version, last, r.u64()?, r.u64()?))
    })();
    let Some((DELTA_VERSION, last, count, ops)) = header else {
        return Err(bad("header"));
    };
    let last = std::str::from_utf8(last).map_err(|_| bad("header"))?;
    let mut updates: Vec<super::commit::Update> = Vec::new();
    for _ in 0..ops {
        let tag = r.array::<1>().ok_or_else(|| bad("truncated"))?[0];
        let update = match tag {
            PUT => match Reader::record(&body[r.pos..], VERSION) {
                Parse::Ok(e, n) => {
                    r.pos += n;
                    let entry = e.to_entry();
                    super::commit::Update {
                        path: entry.path.clone(),
                        entry: Some(entry),
                    }
                }
                _ => return Err(bad("a malformed record")),
            },
            REMOVE => {
                let len = r.u32().ok_or_else(|| bad("truncated"))? as usize;
                let p = r.take(len).ok_or_else(|| bad("truncated"))?;
                let p = crate::entry::RelPath::parse(p).map_err(|_| bad("a malformed path"))?;
                super::commit::Update {
                    path: p,
                    entry: None,
                }
            }
            _ => return Err(bad("a malformed record")),
        };
        if updates
            .last()
            .is_some_and(|u| u.path.as_bytes() >= update.path.as_bytes())
        {
            return Err(bad("paths out of order"));
        }
        updates.push(update);
    }
    if r.pos != body.len() {
        return Err(bad("bytes after the last record"));
    }
    Ok(Delta {
        last_increment: (!last.is_empty()).then(|| last.to_string()),
        count,
        updates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Digests, NO_XATTRS, RelPath};

    fn entries() -> Index {
        Index {
            last_increment: Some("backup_20260101_000000".into()),
            version: VERSION,
            entries: vec![
                Entry {
                    path: RelPath::root(),
                    meta: Meta {
                        kind: Kind::Dir,
                        size: 0,
                        mtime: Timestamp { sec: 7, nsec: 1 },
                        mode: 0o2775,
                        uid: 1,
                        gid: 2,
                        link: 0,
                    },
                    ctime: Timestamp { sec: 8, nsec: 2 }.into(),
                    tracked: true,
                    digests: Digests::new(None, Some(NO_XATTRS)),
                },
                Entry {
                    path: RelPath::from_bytes(b"a/b\xff c"),
                    meta: Meta {
                        kind: Kind::File,
                        size: 12,
                        mtime: Timestamp {
                            sec: -5,
                            nsec: 999_999_999,
                        },
                        mode: 0o4755,
                        uid: 1000,
                        gid: 100,
                        link: 77,
                    },
                    ctime: Timestamp { sec: 9, nsec: 3 }.into(),
                    tracked: true,
                    digests: Digests::new(Some(Hash::of(b"x")), Some(Hash([3; 16]))),
                },
                Entry {
                    path: RelPath::from_bytes(b"z"),
                    meta: Meta {
                        kind: Kind::Symlink,
                        size: 3,
                        mtime: Timestamp {
                            sec: 1_700_000_000,
                            nsec: 0,
                        },
                        mode: 0o777,
                        uid: 0,
                        gid: 0,
                        link: 0,
                    },
                    ctime: ChangeTime::default(),
                    tracked: false,
                    digests: Digests::new(None, None),
                },
            ],
        }
    }

    fn state() -> (tempfile::TempDir, Dir, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_root(t.path()).unwrap();
        let p = t.path().join("index");
        (t, d, p)
    }

    #[test]
    fn a_delta_round_trips_and_any_damage_to_it_is_an_error() {
        use crate::store::commit::Update;
        let index = entries();
        let mut updates: Vec<Update> = index
            .entries
            .iter()
            .map(|e| Update {
                path: e.path.clone(),
                entry: Some(e.clone()),
            })
            .collect();
        updates.push(Update {
            path: RelPath::from_bytes(b"zz/gone"),
            entry: None,
        });
        let bytes = encode_delta(updates.clone().into_iter(), Some("backup_x"), 2);
        let path = std::path::Path::new("delta");
        let delta = decode_delta(&bytes, path).unwrap();
        assert_eq!(
            delta,
            Delta {
                last_increment: Some("backup_x".into()),
                count: 2,
                updates,
            }
        );
        assert!(!is_index(&bytes));
        for cut in 0..bytes.len() {
            assert!(decode_delta(&bytes[..cut], path).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode_delta(&bad, path).is_err(), "flipped byte {i}");
        }
        let empty = encode_delta(std::iter::empty(), None, 0);
        assert_eq!(decode_delta(&empty, path).unwrap().updates, vec![]);
    }

    /// A delta of `entry` alone.
    fn delta_of(entry: &Entry) -> Vec<u8> {
        let update = crate::store::commit::Update {
            path: entry.path.clone(),
            entry: Some(entry.clone()),
        };
        encode_delta(std::iter::once(update), None, 1)
    }

    /// Make a delta's checksum right again after its bytes were changed
    /// (so that what the reader refuses is the record, not the sum).
    fn reseal(bytes: &mut [u8]) {
        let body = bytes.len() - 8;
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum.to_le_bytes());
    }

    #[test]
    fn a_mode_beyond_the_permission_bits_is_a_malformed_record() {
        let mut e = entries().entries[1].clone();
        e.meta.mode = 0o7777;
        let mut bytes = delta_of(&e);
        let path = std::path::Path::new("delta");
        assert!(decode_delta(&bytes, path).is_ok());
        // The mode's four bytes, given a bit above the 12 (and the
        // checksum made right again): no strata wrote it.
        let at = bytes
            .windows(4)
            .position(|w| w == 0o7777u32.to_le_bytes())
            .expect("the mode's bytes");
        bytes[at + 2] = 1;
        reseal(&mut bytes);
        let err = decode_delta(&bytes, path).unwrap_err().to_string();
        assert!(
            err.contains("malformed record") && err.contains("delta"),
            "{err}"
        );
    }

    #[test]
    fn a_path_that_leaves_its_root_is_a_malformed_record() {
        let path = std::path::Path::new("delta");
        for bad in [&b"../cd"[..], b"/b/cd", b"ab//d", b"ab/\0d"] {
            let mut e = entries().entries[1].clone();
            e.path = RelPath::from_bytes(b"ab/cd");
            let mut bytes = delta_of(&e);
            assert!(decode_delta(&bytes, path).is_ok());
            // The path's bytes rewritten (and the checksum made right
            // again): no strata wrote it.
            let at = bytes
                .windows(5)
                .position(|w| w == b"ab/cd")
                .expect("the path's bytes");
            bytes[at..at + 5].copy_from_slice(bad);
            reseal(&mut bytes);
            let err = decode_delta(&bytes, path).unwrap_err().to_string();
            assert!(err.contains("malformed record"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn an_unknown_ctime_stays_unknown_through_the_index() {
        let mut e = entries().entries[1].clone();
        e.ctime = ChangeTime::UNKNOWN;
        let back = decode_delta(&delta_of(&e), std::path::Path::new("delta")).unwrap();
        let ctime = back.updates[0].entry.as_ref().unwrap().ctime;
        assert_eq!(ctime, ChangeTime::UNKNOWN);
        assert!(!ctime.same(ChangeTime::UNKNOWN));
    }

    #[test]
    fn save_and_load_round_trip() {
        let (_t, state, path) = state();
        assert_eq!(load(&state, &path).unwrap(), None);
        save(&state, &path, &entries()).unwrap();
        assert_eq!(load(&state, &path).unwrap(), Some(entries()));
        let file = IndexFile::open(&state, &path).unwrap().unwrap();
        assert_eq!(file.len(), 3);
        assert_eq!(file.last_increment(), Some("backup_20260101_000000"));
        // Twice: a cursor starts from the beginning.
        assert_eq!(file.load().unwrap(), entries());
        assert_eq!(file.load().unwrap(), entries());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            load(&state, &path),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn any_flipped_cut_or_added_byte_is_detected() {
        let (_t, state, path) = state();
        save(&state, &path, &entries()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert!(IndexFile::open(&state, &path).is_err(), "flip at {i}");
        }
        for cut in [0, 5, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(IndexFile::open(&state, &path).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(IndexFile::open(&state, &path).is_err());
    }

    #[test]
    fn a_version_1_index_is_read_for_the_upgrade() {
        let (_t, state, path) = state();
        // As strata 0.1 wrote it.
        let mut body = Vec::new();
        body.extend_from_slice(b"STRATA-INDEX\x01");
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.push(b'a');
        body.push(0); // file
        body.push(1 | 2); // tracked, hash
        body.extend_from_slice(&5u64.to_le_bytes());
        body.extend_from_slice(&1_600_000_000i64.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&0o644u32.to_le_bytes());
        body.extend_from_slice(&Hash::of(b"hello").0);
        let sum = xxhash_rust::xxh3::xxh3_64(&body);
        body.extend_from_slice(&sum.to_le_bytes());
        std::fs::write(&path, &body).unwrap();
        let index = load(&state, &path).unwrap().unwrap();
        assert_eq!(index.version, 1);
        let e = &index.entries[0];
        assert_eq!(e.path, RelPath::from_bytes(b"a"));
        assert_eq!({ e.meta.size }, 5);
        assert_eq!({ e.meta.uid }, UNKNOWN_OWNER);
        assert_eq!(e.xattrs(), None);
        assert_eq!(e.hash(), Some(Hash::of(b"hello")));
    }

    #[test]
    fn a_cursor_reads_records_larger_than_its_window_and_many_of_them() {
        let (_t, state, path) = state();
        let mut index = Index::default();
        let long: Vec<u8> = (0..3 * WINDOW)
            .map(|i| if i % 200 == 199 { b'/' } else { b'x' })
            .collect();
        index.entries.push(Entry {
            path: RelPath::from_bytes(&long),
            ..entries().entries[1].clone()
        });
        for i in 0..20_000 {
            let mut entry = Entry {
                path: RelPath::from_bytes(format!("y/{i:08}").as_bytes()),
                ..entries().entries[2].clone()
            };
            entry.set_hash((i % 3 == 0).then(|| Hash::of(b"h")));
            index.entries.push(entry);
        }
        save(&state, &path, &index).unwrap();
        let file = IndexFile::open(&state, &path).unwrap().unwrap();
        assert_eq!(file.load().unwrap().entries, index.entries);
    }

    #[test]
    fn the_writer_holds_to_its_count_and_order() {
        let (_t, state, path) = state();
        let out = Writer::create(&state, &path, None, 1).unwrap();
        assert!(out.commit().is_err());
        let mut out = Writer::create(&state, &path, None, 0).unwrap();
        assert!(out.entry(&entries().entries[0].view()).is_err());
        let mut out = Writer::create(&state, &path, None, 2).unwrap();
        out.entry(&entries().entries[2].view()).unwrap();
        assert!(out.entry(&entries().entries[1].view()).is_err());
        assert!(!path.exists());
    }
}
