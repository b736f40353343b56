//! The vocabulary every stage speaks: relative paths, kinds, metadata,
//! hashes, extended attributes, entries, and per-path errors.
//!
//! The walk produces [`Entry`] values, the index stores them, the plan
//! compares them, apply and restore carry them out and the history records
//! them. None of those stages defines a type another one needs: they all
//! come from here.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fmt;
use std::ops::AddAssign;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use triomphe::ThinArc;

/// A path relative to a root (the source, the mirror, an increment's
/// `track/`, a restore target), `/`-separated, as raw bytes (file names need
/// not be UTF-8). Ordered bytewise, which is the order of the scan, the
/// index and the plan; a directory sorts before everything below it.
///
/// A `RelPath` is always *beneath* its root: no component is empty, `.` or
/// `..`, none holds a NUL, and it does not start with `/`. The empty path is
/// the root itself. [`RelPath::parse`] checks this for bytes from outside
/// (metadata files, the command line); the walk builds paths from
/// directory entries, which cannot break it.
///
/// Its bytes lie in a reference-counted block: a block of their own, or one
/// that the walk shares among a directory's paths ([`PathBlock`]), so that
/// a first run, which holds a path per file, makes one allocation a
/// directory rather than one a file. A parent shares its child's block.
#[derive(Clone, Default)]
pub struct RelPath {
    /// `None` for the root.
    block: Option<ThinArc<(), u8>>,
    /// Where the path lies in `block`: `len` bytes from `start`, or the
    /// whole block when `len` is [`WHOLE`].
    start: u32,
    len: u32,
}

/// [`RelPath::len`] of a path that is its whole block.
const WHOLE: u32 = u32::MAX;

/// Why bytes are not a [`RelPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    /// Starts with `/`.
    #[error("{0:?} is absolute")]
    Absolute(String),
    /// An empty component (`a//b`, a trailing `/`).
    #[error("{0:?} has an empty component")]
    Empty(String),
    /// A `.` or `..` component.
    #[error("{0:?} has a `.` or `..` component")]
    Dots(String),
    /// A NUL byte.
    #[error("{0:?} holds a NUL byte")]
    Nul(String),
}

impl RelPath {
    /// The root itself (the empty path).
    pub fn root() -> RelPath {
        RelPath::default()
    }

    /// Check and take bytes from outside: see the type's documentation.
    pub fn parse(bytes: &[u8]) -> Result<RelPath, BadPath> {
        RelPath::check(bytes)?;
        Ok(RelPath::own(bytes))
    }

    /// What [`RelPath::parse`] checks, without taking the bytes (the index
    /// reader checks every record's path it reads, and keeps few).
    pub fn check(bytes: &[u8]) -> Result<(), BadPath> {
        // One pass (it runs for every record of every index read): each
        // component is looked at when its `/` or the end is reached.
        fn bad_part(part: &[u8]) -> bool {
            matches!(part, [] | [b'.'] | [b'.', b'.'])
        }
        let text = || String::from_utf8_lossy(bytes).into_owned();
        if bytes.is_empty() {
            return Ok(());
        }
        if bytes[0] == b'/' {
            return Err(BadPath::Absolute(text()));
        }
        let mut start = 0;
        let mut bad = false;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'/' {
                bad |= bad_part(&bytes[start..i]);
                start = i + 1;
            } else if b == 0 {
                return Err(BadPath::Nul(text()));
            }
        }
        if bad || bad_part(&bytes[start..]) {
            // The first bad component says which kind.
            let part = bytes.split(|&b| b == b'/').find(|p| bad_part(p));
            return Err(match part {
                Some([]) => BadPath::Empty(text()),
                _ => BadPath::Dots(text()),
            });
        }
        Ok(())
    }

    /// From bytes known to be a valid relative path (built by the walk, or
    /// read back from the index strata wrote). Checked in debug builds.
    pub fn from_bytes(bytes: &[u8]) -> RelPath {
        debug_assert!(
            RelPath::check(bytes).is_ok(),
            "not a relative path: {:?}",
            String::from_utf8_lossy(bytes)
        );
        RelPath::own(bytes)
    }

    /// `bytes` in a block of their own.
    fn own(bytes: &[u8]) -> RelPath {
        if bytes.is_empty() {
            return RelPath::root();
        }
        RelPath {
            block: Some(ThinArc::from_header_and_slice((), bytes)),
            start: 0,
            len: WHOLE,
        }
    }

    /// The first `len` bytes of this path, in its block.
    fn prefix(&self, len: usize) -> RelPath {
        match &self.block {
            _ if len == 0 => RelPath::root(),
            Some(block) if len < WHOLE as usize => RelPath {
                block: Some(block.clone()),
                start: self.start,
                len: len as u32,
            },
            _ => RelPath::own(&self.as_bytes()[..len]),
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.block {
            None => &[],
            Some(block) if self.len == WHOLE => &block.slice,
            Some(block) => &block.slice[self.start as usize..][..self.len as usize],
        }
    }

    /// As a relative [`Path`] (`.` for the root, so that it can be joined
    /// and opened).
    pub fn as_path(&self) -> &Path {
        if self.is_root() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(self.as_bytes()))
        }
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.block.is_none()
    }

    /// Lossy text, for messages and metadata.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }

    /// Whether this path lies below directory `dir` (not equal to it). Every
    /// path but the root lies below the root.
    pub fn is_below(&self, dir: &RelPath) -> bool {
        is_below(self.as_bytes(), dir.as_bytes())
    }

    /// Whether this path is `dir` or lies below it.
    pub fn is_at_or_below(&self, dir: &RelPath) -> bool {
        self == dir || self.is_below(dir)
    }

    /// The parent directory: the root for a path directly in the root,
    /// `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.is_root() {
            return None;
        }
        let i = self
            .as_bytes()
            .iter()
            .rposition(|&b| b == b'/')
            .unwrap_or(0);
        Some(self.prefix(i))
    }

    /// The last component (empty for the root).
    pub fn file_name(&self) -> &[u8] {
        let bytes = self.as_bytes();
        match bytes.iter().rposition(|&b| b == b'/') {
            Some(i) => &bytes[i + 1..],
            None => bytes,
        }
    }

    /// The components, first to last (none for the root).
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.as_bytes()
            .split(|&b| b == b'/')
            .filter(|part| !part.is_empty())
    }

    /// Number of components (0 for the root).
    pub fn depth(&self) -> usize {
        if self.is_root() {
            0
        } else {
            1 + self.as_bytes().iter().filter(|&&b| b == b'/').count()
        }
    }

    /// This path with one more component. `name` must be a single valid
    /// component (a directory entry's name).
    pub fn join(&self, name: &[u8]) -> RelPath {
        debug_assert!(!name.is_empty() && !name.contains(&b'/') && name != b"." && name != b"..");
        if self.is_root() {
            return RelPath::own(name);
        }
        let bytes = self.as_bytes();
        let mut v = Vec::with_capacity(bytes.len() + 1 + name.len());
        v.extend_from_slice(bytes);
        v.push(b'/');
        v.extend_from_slice(name);
        RelPath::own(&v)
    }

    /// The path as a record stores it: text, and the exact bytes in hex when
    /// the text is not them (a non-UTF-8 name).
    pub fn to_text(&self) -> (String, Option<String>) {
        match std::str::from_utf8(self.as_bytes()) {
            Ok(text) => (text.to_string(), None),
            Err(_) => (self.to_string_lossy(), Some(hex(self.as_bytes()))),
        }
    }

    /// Read back what [`RelPath::to_text`] wrote, checking it.
    pub fn from_text(text: &str, hex_bytes: Option<&str>) -> Result<RelPath, BadPath> {
        match hex_bytes {
            Some(h) => {
                let bytes = unhex(h).ok_or_else(|| BadPath::Nul(format!("bad hex {h:?}")))?;
                RelPath::parse(&bytes)
            }
            None => RelPath::parse(text.as_bytes()),
        }
    }
}

/// Whether `path` lies below directory `dir` (not equal to it).
pub fn is_below(path: &[u8], dir: &[u8]) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

// By the bytes, as the type's documentation says: where they lie is not
// part of the path.
impl PartialEq for RelPath {
    fn eq(&self, other: &RelPath) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for RelPath {}

impl PartialOrd for RelPath {
    fn partial_cmp(&self, other: &RelPath) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RelPath {
    fn cmp(&self, other: &RelPath) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for RelPath {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

/// Paths gathered into one shared block: what the walk makes of a
/// directory's selected entries. [`PathBlock::push`] each path (valid, as
/// for [`RelPath::from_bytes`]), then [`PathBlock::into_paths`] gives them
/// back, in order, as [`RelPath`]s that share the block's allocation.
#[derive(Debug, Default)]
pub struct PathBlock {
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
    /// Paths of blocks already full (a block holds less than 4 GiB).
    sealed: Vec<RelPath>,
}

impl PathBlock {
    /// Add `path`.
    pub fn push(&mut self, path: &[u8]) {
        debug_assert!(
            !path.is_empty() && RelPath::check(path).is_ok(),
            "not a relative path: {:?}",
            String::from_utf8_lossy(path)
        );
        if self.bytes.len() + path.len() >= WHOLE as usize {
            self.seal();
        }
        if path.len() >= WHOLE as usize {
            self.sealed.push(RelPath::own(path));
            return;
        }
        self.spans
            .push((self.bytes.len() as u32, path.len() as u32));
        self.bytes.extend_from_slice(path);
    }

    /// The paths pushed so far, in order.
    pub fn into_paths(mut self) -> impl Iterator<Item = RelPath> {
        self.seal();
        self.sealed.into_iter()
    }

    fn seal(&mut self) {
        if self.spans.is_empty() {
            return;
        }
        let block = ThinArc::from_header_and_slice((), &self.bytes);
        self.sealed
            .extend(self.spans.drain(..).map(|(start, len)| RelPath {
                block: Some(block.clone()),
                start,
                len,
            }));
        self.bytes.clear();
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str(".")
        } else {
            f.write_str(&String::from_utf8_lossy(self.as_bytes()))
        }
    }
}

impl Serialize for RelPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Bytes from hex (either case); `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a backed-up entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file.
    File,
    /// A symbolic link, stored as a link.
    Symlink,
    /// A directory: its own mode, owner, mtime and xattrs.
    Dir,
}

impl Kind {
    /// `file`, `symlink` or `dir`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::Dir => "dir",
        }
    }

    /// From [`Kind::as_str`]'s words.
    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "file" => Some(Kind::File),
            "symlink" => Some(Kind::Symlink),
            "dir" => Some(Kind::Dir),
            _ => None,
        }
    }
}

/// A 128-bit hash (xxh3-128): of content, of a symlink's target, or of a
/// set of extended attributes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 16]);

impl Hash {
    /// Lowercase hex.
    pub fn to_hex(self) -> String {
        hex(&self.0)
    }
    /// Parse lowercase or uppercase hex.
    pub fn from_hex(text: &str) -> Option<Hash> {
        if text.len() != 32 {
            return None;
        }
        Some(Hash(unhex(text)?.try_into().ok()?))
    }
    /// The hash of a byte slice.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(xxhash_rust::xxh3::xxh3_128(bytes).to_be_bytes())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A point in time as the kernel keeps it: seconds since the epoch and
/// nanoseconds. Packed to 12 bytes: every entry holds two, and a first run
/// holds an entry per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(C, packed(4))]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds, 0..1e9.
    pub nsec: u32,
}

impl Timestamp {
    /// RFC 3339 UTC with as many fraction digits as it needs.
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp(self.sec, self.nsec)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }

    /// Parse RFC 3339.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
        Some(Timestamp {
            sec: t.timestamp(),
            nsec: t.timestamp_subsec_nanos(),
        })
    }
}

/// An inode change time as the walk compares it with the index's (SPEC
/// §3: when it moved, the metadata beyond `lstat` is read again): the
/// nanoseconds since the epoch, 8 bytes where a [`Timestamp`] takes 12
/// (every entry holds one). Only compared, never shown. A ctime outside
/// the years 1678-2262 (a clock far off), and one not known (an entry that
/// recovery rebuilt from the mirror, or read from an index written before
/// ctimes were kept), is [`ChangeTime::UNKNOWN`], which
/// [`ChangeTime::same`] never counts as unmoved, so the walk reads the
/// xattrs again. (A copy's check that its source held still compares with
/// `==` beside size and mtime: two unknown ctimes are equal there.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeTime(i64);

impl ChangeTime {
    /// A change time that is not known exactly.
    pub const UNKNOWN: ChangeTime = ChangeTime(i64::MIN);

    /// Whether the inode is known not to have changed between `self` and
    /// `later`.
    pub fn same(self, later: ChangeTime) -> bool {
        self == later && self != ChangeTime::UNKNOWN
    }

    /// As seconds and nanoseconds (the index's form).
    pub fn to_timestamp(self) -> Timestamp {
        Timestamp {
            sec: self.0.div_euclid(1_000_000_000),
            nsec: self.0.rem_euclid(1_000_000_000) as u32,
        }
    }
}

impl From<Timestamp> for ChangeTime {
    fn from(t: Timestamp) -> ChangeTime {
        i64::try_from(i128::from(t.sec) * 1_000_000_000 + i128::from(t.nsec))
            .ok()
            .filter(|&n| n != i64::MIN && t.nsec < 1_000_000_000)
            .map_or(ChangeTime::UNKNOWN, ChangeTime)
    }
}

/// A hardlink group key: entries of one source inode (`st_nlink` > 1)
/// share it; 0 for an entry that is its inode's only name (and for
/// directories and symlinks). Derived from the source's device and inode
/// numbers, so that the same inode gives the same key in every run.
pub type LinkKey = u64;

/// The key of a source inode with `nlink` names.
pub fn link_key(dev: u64, ino: u64, nlink: u64, kind: Kind) -> LinkKey {
    if kind != Kind::File || nlink < 2 {
        return 0;
    }
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&dev.to_le_bytes());
    bytes[8..].copy_from_slice(&ino.to_le_bytes());
    // Never 0: 0 means "no group".
    xxhash_rust::xxh3::xxh3_64(&bytes).max(1)
}

/// The metadata that decides whether an entry changed (SPEC §3): kind,
/// size, mtime, permission bits, owner and group, and the hardlink group.
/// Extended attributes are compared separately (see [`Entry::xattrs`]),
/// since reading them costs more than an `lstat`. Packed (39 bytes, not
/// 48): an [`Entry`] holds one, and a first run an entry per file; read
/// its fields by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed)]
pub struct Meta {
    /// File, symlink or directory.
    pub kind: Kind,
    /// Size in bytes (a symlink: its target's length; a directory: 0).
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Permission bits, setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// The hardlink group (0: none).
    pub link: LinkKey,
}

/// The digest of "no extended attributes".
pub const NO_XATTRS: Hash = Hash([0; 16]);

/// One selected file, symlink or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to source.
    pub path: RelPath,
    /// Its metadata.
    pub meta: Meta,
    /// The source's inode change time: when it moved since the index, the
    /// entry's extended attributes are read and compared.
    pub ctime: ChangeTime,
    /// Versioned (a track rule) or mirrored only.
    pub tracked: bool,
    /// [`Entry::hash`] and [`Entry::xattrs`].
    pub digests: Digests,
}

// The scan holds one per selected entry: keep it small.
const _: () = assert!(std::mem::size_of::<Entry>() <= 72);

/// An entry's content hash and xattrs digest, when known; boxed, as a
/// scan knows neither for nearly every entry and a first run holds an
/// entry per file (72 bytes, not 96). Neither known: no box.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests(Option<Box<(Option<Hash>, Option<Hash>)>>);

impl Digests {
    /// A content `hash` and an xattrs digest `xattrs`.
    pub fn new(hash: Option<Hash>, xattrs: Option<Hash>) -> Digests {
        Digests((hash.is_some() || xattrs.is_some()).then(|| Box::new((hash, xattrs))))
    }
}

impl Entry {
    /// Content hash, when known (after a copy, or with `compare: checksum`).
    pub fn hash(&self) -> Option<Hash> {
        self.digests.0.as_ref()?.0
    }

    /// Digest of the extended attributes ([`NO_XATTRS`] for none), when
    /// known: always in the index; in a scan, only where they were read.
    pub fn xattrs(&self) -> Option<Hash> {
        self.digests.0.as_ref()?.1
    }

    /// Set [`Entry::hash`].
    pub fn set_hash(&mut self, hash: Option<Hash>) {
        self.digests = Digests::new(hash, self.xattrs());
    }

    /// Set [`Entry::xattrs`].
    pub fn set_xattrs(&mut self, xattrs: Option<Hash>) {
        self.digests = Digests::new(self.hash(), xattrs);
    }

    /// Borrow it as an [`EntryRef`].
    pub fn view(&self) -> EntryRef<'_> {
        EntryRef {
            path: self.path.as_bytes(),
            meta: self.meta,
            ctime: self.ctime,
            tracked: self.tracked,
            hash: self.hash(),
            xattrs: self.xattrs(),
        }
    }
}

/// An [`Entry`] whose path is borrowed (from an index file's bytes, or
/// from an [`Entry`]): what a cursor over the index hands out without an
/// allocation per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Path relative to source, as raw bytes.
    pub path: &'a [u8],
    /// Its metadata.
    pub meta: Meta,
    /// The source's ctime when it was last backed up.
    pub ctime: ChangeTime,
    /// Versioned (a track rule) or mirrored only.
    pub tracked: bool,
    /// Content hash, when known.
    pub hash: Option<Hash>,
    /// Digest of the extended attributes, when known.
    pub xattrs: Option<Hash>,
}

impl EntryRef<'_> {
    /// An owned copy.
    pub fn to_entry(&self) -> Entry {
        Entry {
            path: RelPath::from_bytes(self.path),
            meta: self.meta,
            ctime: self.ctime,
            tracked: self.tracked,
            digests: Digests::new(self.hash, self.xattrs),
        }
    }
}

/// Order entries by path.
pub fn by_path(a: &Entry, b: &Entry) -> Ordering {
    a.path.cmp(&b.path)
}

/// The stored index, walked in path order: an index file read as it goes,
/// or entries in memory ([`SliceWalk`]). A lending walk rather than an
/// iterator, so that a cursor can hand out entries borrowed from its
/// window.
pub trait EntryWalk {
    /// The entry at hand; `None` after the last.
    fn current(&self) -> Option<EntryRef<'_>>;
    /// Move to the next entry.
    fn advance(&mut self);
}

/// Entries in memory, as an [`EntryWalk`].
#[derive(Debug, Clone)]
pub struct SliceWalk<'a>(pub &'a [Entry]);

impl EntryWalk for SliceWalk<'_> {
    fn current(&self) -> Option<EntryRef<'_>> {
        self.0.first().map(Entry::view)
    }
    fn advance(&mut self) {
        self.0 = self.0.get(1..).unwrap_or_default();
    }
}

/// Extended attributes of one inode (POSIX ACLs among them, as
/// `system.posix_acl_access` and `system.posix_acl_default`), sorted by
/// name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xattrs(pub Vec<(Vec<u8>, Vec<u8>)>);

impl Xattrs {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The digest the index keeps: [`NO_XATTRS`] for none.
    pub fn digest(&self) -> Hash {
        if self.0.is_empty() {
            return NO_XATTRS;
        }
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (name, value) in &self.0 {
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name);
            h.update(&(value.len() as u64).to_le_bytes());
            h.update(value);
        }
        let digest = Hash(h.digest128().to_be_bytes());
        if digest == NO_XATTRS {
            Hash([1; 16])
        } else {
            digest
        }
    }

    /// As kept by digest (`.strata/xattrs/<digest>` of a destination whose
    /// filesystem refuses xattrs, and of an object store): JSON pairs of the
    /// name in hex and the value in base64.
    pub fn encode(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let pairs: Vec<(String, String)> = self
            .0
            .iter()
            .map(|(n, v)| (hex(n), b64.encode(v)))
            .collect();
        serde_json::to_vec(&pairs).expect("pairs of strings serialize")
    }

    /// What [`Xattrs::encode`] wrote; `None`: not that.
    pub fn decode(bytes: &[u8]) -> Option<Xattrs> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let pairs: Vec<(String, String)> = serde_json::from_slice(bytes).ok()?;
        let mut out = Vec::with_capacity(pairs.len());
        for (n, v) in pairs {
            out.push((unhex(&n)?, b64.decode(v).ok()?));
        }
        out.sort();
        Some(Xattrs(out))
    }
}

/// What the increment records for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A tracked path appeared.
    New,
    /// A tracked path has a new version.
    Changed,
    /// A tracked path left.
    Deleted,
}

impl Op {
    /// `new`, `changed` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::New => "new",
            Op::Changed => "changed",
            Op::Deleted => "deleted",
        }
    }
}

/// Counters of one run (or of all runs, summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Files the rules selected in the source.
    pub selected: u64,
    /// Of them, tracked (versioned).
    pub tracked: u64,
    /// Files in the mirror after the run.
    pub mirror: u64,
    /// Files new to the mirror.
    pub new: u64,
    /// Files whose mirror copy was replaced (or whose tracking changed).
    pub changed: u64,
    /// Tracked files that left the selection (moved to `deleted/`).
    pub deleted: u64,
    /// Files removed from the mirror (deleted tracked and included-only).
    pub removed: u64,
    /// Bytes copied from source to mirror.
    pub bytes_copied: u64,
    /// Files that could not be backed up (the job is `partial`).
    pub errors: u64,
    /// Sockets, FIFOs and devices that were skipped.
    pub skipped_special: u64,
    /// Hardlinks that the filesystem refused and that were copied instead.
    pub copied_not_linked: u64,
    /// Directories selected (each kept with its own metadata).
    pub dirs: u64,
}

impl AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.selected += o.selected;
        self.tracked += o.tracked;
        self.mirror += o.mirror;
        self.new += o.new;
        self.changed += o.changed;
        self.deleted += o.deleted;
        self.removed += o.removed;
        self.bytes_copied += o.bytes_copied;
        self.errors += o.errors;
        self.skipped_special += o.skipped_special;
        self.copied_not_linked += o.copied_not_linked;
        self.dirs += o.dirs;
    }
}

/// What went wrong with one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The source could not be read (permissions, I/O error).
    Read,
    /// The destination could not be written (full, read-only, …).
    Write,
    /// It vanished between the scan and the copy.
    Vanished,
    /// It changed while being copied (or is no longer what the scan saw).
    Changed,
    /// Stored data does not match what was recorded for it.
    Corrupt,
    /// A record in the history is not valid (path, kind, fields).
    BadRecord,
}

impl ErrorKind {
    /// The word `--json` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Read => "read",
            ErrorKind::Write => "write",
            ErrorKind::Vanished => "vanished",
            ErrorKind::Changed => "changed",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::BadRecord => "bad_record",
        }
    }
}

/// A problem with one path, as a report lists it (the job ends `partial`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PathError {
    /// The path, relative to its root (source, or the destination's
    /// folder the message names).
    pub path: String,
    /// What kind of problem.
    pub kind: ErrorKind,
    /// What went wrong, with the cause.
    pub message: String,
}

impl PathError {
    /// An error of `kind` with `message` about `path`.
    pub fn new(path: &RelPath, kind: ErrorKind, message: impl Into<String>) -> PathError {
        PathError {
            path: path.to_string(),
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_paths_beneath_their_root() {
        for good in ["", "a", "a/b", ".bashrc", "a/..b", "a/b.", "caf\u{e9}"] {
            assert!(RelPath::parse(good.as_bytes()).is_ok(), "{good}");
            assert!(RelPath::check(good.as_bytes()).is_ok(), "{good}");
        }
        for bad in ["/a", "a//b", "a/", "..", "a/../b", "./a", "a/.", "a\0b"] {
            assert!(RelPath::parse(bad.as_bytes()).is_err(), "{bad:?}");
            assert!(RelPath::check(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_path_says_what_is_wrong_with_it() {
        let kind = |p: &str| match RelPath::check(p.as_bytes()) {
            Ok(()) => "ok",
            Err(BadPath::Absolute(_)) => "absolute",
            Err(BadPath::Nul(_)) => "nul",
            Err(BadPath::Empty(_)) => "empty",
            Err(BadPath::Dots(_)) => "dots",
        };
        for (path, want) in [
            ("/a", "absolute"),
            ("/a\0", "absolute"),
            ("a\0b", "nul"),
            ("a/../b\0", "nul"),
            ("a//b", "empty"),
            ("a/", "empty"),
            ("a//../b", "empty"),
            ("a/../b", "dots"),
            ("..", "dots"),
            ("a/.", "dots"),
            ("./a//b", "dots"),
            ("a/.b/..c/...", "ok"),
        ] {
            assert_eq!(kind(path), want, "{path:?}");
        }
    }

    #[test]
    fn relations() {
        let a = RelPath::from_bytes(b"a/b");
        assert!(RelPath::from_bytes(b"a/b/c").is_below(&a));
        assert!(!RelPath::from_bytes(b"a/bc").is_below(&a));
        assert!(!a.is_below(&a));
        assert!(a.is_below(&RelPath::root()));
        assert!(!RelPath::root().is_below(&RelPath::root()));
        assert_eq!(a.parent(), Some(RelPath::from_bytes(b"a")));
        assert_eq!(RelPath::from_bytes(b"x").parent(), Some(RelPath::root()));
        assert_eq!(RelPath::root().parent(), None);
        assert_eq!(a.file_name(), b"b");
        assert_eq!(a.depth(), 2);
        assert_eq!(RelPath::root().depth(), 0);
        assert_eq!(
            RelPath::root().join(b"x").join(b"y"),
            RelPath::from_bytes(b"x/y")
        );
        // A directory sorts before what it holds, whatever sorts between.
        let mut v = [
            RelPath::from_bytes(b"a/x"),
            RelPath::from_bytes(b"a-b"),
            RelPath::from_bytes(b"a"),
            RelPath::root(),
        ];
        v.sort();
        assert_eq!(v[0], RelPath::root());
        assert_eq!(v[1], RelPath::from_bytes(b"a"));
    }

    #[test]
    fn text_round_trip() {
        let p = RelPath::from_bytes(b"dir/caf\xe9");
        let (text, hex) = p.to_text();
        assert_eq!(hex.as_deref(), Some("6469722f636166e9"));
        assert_eq!(RelPath::from_text(&text, hex.as_deref()).unwrap(), p);
        assert!(
            RelPath::from_text("x", Some("2e2e2f78")).is_err(),
            "../x in hex"
        );
    }

    #[test]
    fn hashes_and_keys() {
        let h = Hash::of(b"hello");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
        assert_eq!(Xattrs::default().digest(), NO_XATTRS);
        let x = Xattrs(vec![(b"user.a".to_vec(), b"1".to_vec())]);
        assert_ne!(x.digest(), NO_XATTRS);
        assert_eq!(link_key(1, 2, 1, Kind::File), 0);
        assert_ne!(link_key(1, 2, 2, Kind::File), 0);
        assert_eq!(link_key(1, 2, 2, Kind::Dir), 0);
    }

    #[test]
    fn timestamps_keep_full_precision() {
        let t = Timestamp {
            sec: 1_700_000_000,
            nsec: 123_456_789,
        };
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        assert_eq!(Timestamp::default().to_rfc3339(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn paths_in_a_shared_block_are_their_bytes() {
        let mut block = PathBlock::default();
        for p in ["d/b", "d/a", "d/caf\u{e9}"] {
            block.push(p.as_bytes());
        }
        let paths: Vec<RelPath> = block.into_paths().collect();
        let own: Vec<RelPath> = ["d/b", "d/a", "d/caf\u{e9}"]
            .iter()
            .map(|p| RelPath::from_bytes(p.as_bytes()))
            .collect();
        // Equal, ordered and hashed by their bytes, wherever those lie.
        assert_eq!(paths, own);
        let hash = |p: &RelPath| {
            use std::hash::{BuildHasher, RandomState};
            static STATE: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
            STATE.get_or_init(RandomState::new).hash_one(p)
        };
        for (a, b) in paths.iter().zip(&own) {
            assert_eq!(a.as_bytes(), b.as_bytes());
            assert_eq!(hash(a), hash(b));
            assert_eq!(a.parent(), Some(RelPath::from_bytes(b"d")));
            assert_eq!(a.file_name(), b.file_name());
        }
        assert!(paths[1] < paths[0]);
        // A parent is a prefix of its child's block: still its own bytes.
        let deep = RelPath::from_bytes(b"x/y/z");
        let up = deep.parent().unwrap();
        assert_eq!(up.as_bytes(), b"x/y");
        assert_eq!(up.parent().unwrap().as_bytes(), b"x");
        assert_eq!(up.join(b"w").as_bytes(), b"x/y/w");
        assert!(PathBlock::default().into_paths().next().is_none());
    }

    #[test]
    fn change_times_compare_exactly_or_not_at_all() {
        let t = |sec, nsec| ChangeTime::from(Timestamp { sec, nsec });
        assert!(t(1_700_000_000, 5).same(t(1_700_000_000, 5)));
        assert!(!t(1_700_000_000, 5).same(t(1_700_000_000, 6)));
        assert!(!t(1_700_000_000, 5).same(t(1_700_000_001, 5)));
        for (sec, nsec) in [(1_700_000_000, 123_456_789), (-5, 1), (0, 0)] {
            assert_eq!(t(sec, nsec).to_timestamp(), Timestamp { sec, nsec });
        }
        // Beyond what 64 bits of nanoseconds hold: never "unchanged".
        let far = t(i64::MAX / 2, 0);
        assert_eq!(far, ChangeTime::UNKNOWN);
        assert!(!far.same(t(i64::MAX / 2, 0)));
        assert_eq!(t(1, 2_000_000_000), ChangeTime::UNKNOWN);
        // What the index reads back of an unknown one is unknown again.
        assert_eq!(ChangeTime::from(far.to_timestamp()), ChangeTime::UNKNOWN);
    }
}
