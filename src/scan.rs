//! Parallel walk of a source tree that applies the selection rules while
//! walking. Takes a source path and a [`Matcher`]; returns the selected
//! entries sorted by path. Knows nothing of the backup layout.
//!
//! Each directory is a task on the shared rayon pool (`rayon::scope`): a task
//! reads its directory, asks the matcher about each name, `lstat`s only the
//! entries it selects, and spawns one task per subdirectory it enters. Each
//! directory's results join one list, sorted once at the end, so the outcome
//! is the same whatever the thread count. Symlinks are never followed.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use crate::select::{DirDecision, DirState, Matcher, Selection};

/// A path relative to the source root, `/`-separated, as raw bytes (file
/// names need not be UTF-8). Ordered bytewise, which is the order of the
/// scan, the index and the plan.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(Box<[u8]>);

impl RelPath {
    /// From raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> RelPath {
        RelPath(bytes.into())
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// As a relative [`Path`].
    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.0))
    }
    /// Lossy text, for messages and metadata.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
    /// Whether this path lies below directory `dir` (not equal to it).
    pub fn is_below(&self, dir: &RelPath) -> bool {
        self.0.len() > dir.0.len() && self.0.starts_with(&dir.0) && self.0[dir.0.len()] == b'/'
    }
    /// The parent directory, `None` for a path directly in the root.
    pub fn parent(&self) -> Option<RelPath> {
        let i = self.0.iter().rposition(|&b| b == b'/')?;
        Some(RelPath::from_bytes(&self.0[..i]))
    }
    fn join(&self, name: &[u8]) -> RelPath {
        if self.0.is_empty() {
            return RelPath::from_bytes(name);
        }
        let mut v = Vec::with_capacity(self.0.len() + 1 + name.len());
        v.extend_from_slice(&self.0);
        v.push(b'/');
        v.extend_from_slice(name);
        RelPath(v.into_boxed_slice())
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string_lossy())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// What a backed-up entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A symbolic link, stored as a link.
    Symlink,
}

impl Kind {
    /// `file` or `symlink`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Symlink => "symlink",
        }
    }
}

/// A 128-bit content hash (xxh3-128).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hash(pub [u8; 16]);

impl Hash {
    /// Lowercase hex.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
    /// Parse lowercase or uppercase hex.
    pub fn from_hex(text: &str) -> Option<Hash> {
        if text.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Hash(out))
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

/// The metadata that decides whether a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// File or symlink.
    pub kind: Kind,
    /// Size in bytes (a symlink: its target's length).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

impl Meta {
    /// From `lstat` metadata; `None` for anything but a file or symlink.
    pub fn from_metadata(m: &Metadata) -> Option<Meta> {
        let ft = m.file_type();
        let kind = if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            return None;
        };
        Some(Meta {
            kind,
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec() as u32,
            mode: m.mode() & 0o7777,
        })
    }
}

/// One selected file or symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to source.
    pub path: RelPath,
    /// Its metadata.
    pub meta: Meta,
    /// Versioned (a track rule) or mirrored only.
    pub tracked: bool,
    /// Content hash, when known (after a copy, or with `compare: checksum`).
    pub hash: Option<Hash>,
}

impl Entry {
    /// Borrow it as an [`EntryRef`].
    pub fn view(&self) -> EntryRef<'_> {
        EntryRef {
            path: self.path.as_bytes(),
            meta: self.meta,
            tracked: self.tracked,
            hash: self.hash,
        }
    }
}

/// An [`Entry`] whose path is borrowed (from an index file's bytes, or
/// from an [`Entry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Path relative to source, as raw bytes.
    pub path: &'a [u8],
    /// Its metadata.
    pub meta: Meta,
    /// Versioned (a track rule) or mirrored only.
    pub tracked: bool,
    /// Content hash, when known.
    pub hash: Option<Hash>,
}

impl EntryRef<'_> {
    /// An owned copy.
    pub fn to_entry(&self) -> Entry {
        Entry {
            path: RelPath::from_bytes(self.path),
            meta: self.meta,
            tracked: self.tracked,
            hash: self.hash,
        }
    }
}

/// Order entries by path.
pub fn by_path(a: &Entry, b: &Entry) -> Ordering {
    a.path.cmp(&b.path)
}

/// A problem met while walking, with the path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ScanProblem {
    /// Path relative to source.
    pub path: RelPath,
    /// What went wrong.
    pub message: String,
}

/// Why a scan could not start.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The source is missing, not a directory, or unreadable.
    #[error("source {}: {source}", path.display())]
    Source {
        /// The source path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The rules exclude the whole source.
    #[error("the rules exclude the whole source (exclude_dirs holds \".\")")]
    AllExcluded,
}

/// The outcome of a scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// Selected entries, sorted by path.
    pub entries: Vec<Entry>,
    /// Directories that could not be read: what lies below them is unknown,
    /// so nothing there may be treated as deleted.
    pub unreadable_dirs: Vec<RelPath>,
    /// Problems met, by path.
    pub problems: Vec<ScanProblem>,
    /// Selected sockets, FIFOs and devices, which are skipped.
    pub skipped_special: u64,
}

/// Options of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Read every selected file and record its content hash.
    pub checksum: bool,
    /// Do not enter directories on another filesystem than the source's.
    pub one_file_system: bool,
    /// Skip a directory holding a file with one of these names.
    pub exclude_if_present: Vec<std::ffi::OsString>,
    /// Skip a directory holding a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
}

/// The first bytes of a valid `CACHEDIR.TAG` (bford.info/cachedir).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

impl ScanOptions {
    /// Whether the directory at `abs` carries a marker that excludes it.
    fn marked(&self, abs: &Path) -> bool {
        if self
            .exclude_if_present
            .iter()
            .any(|name| fs::symlink_metadata(abs.join(name)).is_ok())
        {
            return true;
        }
        if self.exclude_caches {
            use std::io::Read;
            use std::os::unix::fs::OpenOptionsExt;
            let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
            let tag = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(abs.join("CACHEDIR.TAG"));
            if let Ok(mut tag) = tag
                && tag.read_exact(&mut head).is_ok()
                && head == CACHEDIR_SIGNATURE
            {
                return true;
            }
        }
        false
    }
}

struct Walk<'a> {
    source: &'a Path,
    matcher: &'a Matcher,
    options: ScanOptions,
    /// The source's device, for `one_file_system`.
    root_dev: u64,
    entries: Mutex<Vec<Entry>>,
    problems: Mutex<Vec<ScanProblem>>,
    unreadable: Mutex<Vec<RelPath>>,
    special: AtomicU64,
}

/// Walk `source` and return what `matcher` selects. Runs on the current
/// rayon pool.
pub fn scan(source: &Path, matcher: &Matcher, options: ScanOptions) -> Result<Scan, ScanError> {
    let source_error = |e| ScanError::Source {
        path: source.to_path_buf(),
        source: e,
    };
    let meta = fs::metadata(source).map_err(source_error)?;
    if !meta.is_dir() {
        return Err(source_error(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    // Read the root here, so that an unreadable source fails the job rather
    // than looking like an empty tree.
    let root_entries = fs::read_dir(source).map_err(source_error)?;
    let state = matcher.root().ok_or(ScanError::AllExcluded)?;
    let walk = Walk {
        source,
        matcher,
        options,
        root_dev: meta.dev(),
        entries: Mutex::new(Vec::new()),
        problems: Mutex::new(Vec::new()),
        unreadable: Mutex::new(Vec::new()),
        special: AtomicU64::new(0),
    };
    rayon::scope(|s| {
        walk.visit(s, root_entries, RelPath::from_bytes(b""), state);
    });
    let mut entries = walk.entries.into_inner().unwrap();
    entries.sort_unstable_by(by_path);
    let mut problems = walk.problems.into_inner().unwrap();
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    let mut unreadable_dirs = walk.unreadable.into_inner().unwrap();
    unreadable_dirs.sort();
    Ok(Scan {
        entries,
        unreadable_dirs,
        problems,
        skipped_special: walk.special.into_inner(),
    })
}

impl<'a> Walk<'a> {
    fn problem(&self, path: RelPath, message: String) {
        self.problems
            .lock()
            .unwrap()
            .push(ScanProblem { path, message });
    }

    fn enter<'s>(&'s self, s: &rayon::Scope<'s>, rel: RelPath, state: DirState) {
        let abs = self.source.join(rel.as_path());
        if self.options.marked(&abs) {
            tracing::debug!("{rel}: excluded by a marker file");
            return;
        }
        match fs::read_dir(&abs) {
            Ok(entries) => self.visit(s, entries, rel, state),
            Err(e) => {
                self.problem(rel.clone(), format!("cannot read directory: {e}"));
                self.unreadable.lock().unwrap().push(rel);
            }
        }
    }

    fn visit<'s>(
        &'s self,
        s: &rayon::Scope<'s>,
        entries: fs::ReadDir,
        dir: RelPath,
        state: DirState,
    ) {
        let mut found = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.problem(dir.clone(), format!("cannot read directory: {e}"));
                    self.unreadable.lock().unwrap().push(dir.clone());
                    continue;
                }
            };
            let rel = dir.join(entry.file_name().as_bytes());
            // d_type from readdir: no stat for directories and unselected files.
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) => {
                    self.problem(rel, format!("cannot stat: {e}"));
                    continue;
                }
            };
            if file_type.is_dir() {
                if self.options.one_file_system
                    && entry.metadata().is_ok_and(|m| m.dev() != self.root_dev)
                {
                    tracing::debug!("{rel}: another filesystem, not entered");
                    continue;
                }
                if let DirDecision::Enter(sub) = self.matcher.enter_dir(state, rel.as_path()) {
                    s.spawn(move |s| self.enter(s, rel, sub));
                }
                continue;
            }
            let selection = self.matcher.file(state, rel.as_path());
            if !selection.is_selected() {
                continue;
            }
            if file_type.is_socket()
                || file_type.is_fifo()
                || file_type.is_block_device()
                || file_type.is_char_device()
            {
                self.special.fetch_add(1, AtomicOrdering::Relaxed);
                continue;
            }
            let metadata = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    // Vanished since readdir, or unreadable: not selected now;
                    // a vanished file is a deletion, which is what it is.
                    if e.kind() != std::io::ErrorKind::NotFound {
                        self.problem(rel, format!("cannot stat: {e}"));
                    }
                    continue;
                }
            };
            let Some(meta) = Meta::from_metadata(&metadata) else {
                continue;
            };
            let hash = if self.options.checksum {
                match hash_entry(&self.source.join(rel.as_path()), meta.kind) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        self.problem(rel.clone(), format!("cannot read: {e}"));
                        None
                    }
                }
            } else {
                None
            };
            found.push(Entry {
                path: rel,
                meta,
                tracked: selection == Selection::Tracked,
                hash,
            });
        }
        // Into the one list right away: a directory's own list is freed
        // here and its memory reused by the next directory, rather than
        // every directory's list living (with its spare capacity) until the
        // end of the walk.
        if !found.is_empty() {
            self.entries.lock().unwrap().append(&mut found);
        }
    }
}

/// The content hash of a file (or a symlink's target text), read without
/// following symlinks.
pub fn hash_entry(path: &Path, kind: Kind) -> std::io::Result<Hash> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if kind == Kind::Symlink {
        return Ok(Hash::of(fs::read_link(path)?.as_os_str().as_bytes()));
    }
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Hash(hasher.digest128().to_be_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::RuleLists;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, body) in [
            ("a.txt", "a"),
            ("docs/b.md", "bb"),
            ("docs/deep/c.md", "ccc"),
            ("node_modules/x.js", "x"),
            ("src/node_modules/y.js", "y"),
            ("src/main.rs", "fn main() {}"),
        ] {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        }
        std::os::unix::fs::symlink("../a.txt", dir.path().join("docs/link")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("src/out")).unwrap();
        dir
    }

    fn paths(scan: &Scan) -> Vec<String> {
        scan.entries.iter().map(|e| e.path.to_string()).collect()
    }

    #[test]
    fn selects_while_walking_and_sorts() {
        let dir = tree();
        let track = vec![".".to_string()];
        let exclude = vec!["node_modules:rec".to_string()];
        let matcher = Matcher::new(RuleLists {
            track_dirs: &track,
            exclude_dirs: &exclude,
            ..RuleLists::default()
        })
        .unwrap();
        let scan = scan(dir.path(), &matcher, ScanOptions::default()).unwrap();
        assert_eq!(
            paths(&scan),
            [
                "a.txt",
                "docs/b.md",
                "docs/deep/c.md",
                "docs/link",
                "src/main.rs",
                "src/out"
            ]
        );
        let link = scan
            .entries
            .iter()
            .find(|e| e.path.to_string() == "src/out");
        assert_eq!(link.unwrap().meta.kind, Kind::Symlink);
        assert!(scan.entries.iter().all(|e| e.tracked));
    }

    #[test]
    fn parallel_equals_sequential() {
        let dir = tree();
        let inc = vec![".".to_string()];
        let matcher = Matcher::new(RuleLists {
            include_dirs: &inc,
            ..RuleLists::default()
        })
        .unwrap();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let a = one.install(|| scan(dir.path(), &matcher, ScanOptions::default()).unwrap());
        let b = four.install(|| scan(dir.path(), &matcher, ScanOptions::default()).unwrap());
        assert_eq!(a.entries, b.entries);
    }

    #[test]
    fn missing_source_is_an_error() {
        let inc = vec![".".to_string()];
        let matcher = Matcher::new(RuleLists {
            include_dirs: &inc,
            ..RuleLists::default()
        })
        .unwrap();
        let err = scan(
            Path::new("/nonexistent/strata"),
            &matcher,
            ScanOptions::default(),
        );
        assert!(matches!(err, Err(ScanError::Source { .. })));
    }

    #[test]
    fn hex_round_trip() {
        let h = Hash::of(b"hello");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
    }

    #[test]
    fn rel_path_relations() {
        let a = RelPath::from_bytes(b"a/b");
        assert!(RelPath::from_bytes(b"a/b/c").is_below(&a));
        assert!(!RelPath::from_bytes(b"a/bc").is_below(&a));
        assert!(!a.is_below(&a));
        assert_eq!(a.parent(), Some(RelPath::from_bytes(b"a")));
        assert_eq!(RelPath::from_bytes(b"x").parent(), None);
    }
}
