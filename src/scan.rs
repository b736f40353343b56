//! Parallel walk of a source tree that applies the selection rules while
//! walking. Takes the source's [`Dir`] and a [`Matcher`]; returns the
//! selected entries (files, symlinks and directories) sorted by path.
//! Knows nothing of the backup layout.
//!
//! Each directory is a task on the shared rayon pool (`rayon::scope`). A
//! task holds its directory's descriptor, reads its entries from it, asks
//! the matcher about each name, `fstatat`s only the entries it selects, and
//! spawns one task per subdirectory it enters; that task opens the
//! subdirectory by name from the parent's descriptor with `O_NOFOLLOW |
//! O_DIRECTORY`. So no path is ever resolved from the root again: a
//! directory swapped for a symlink after it was listed fails to open (it is
//! not followed), and one swapped for another directory is read as what it
//! now is, still below the source. A descriptor lives while its children
//! are being opened; tasks run depth first on each thread (rayon's local
//! queues are LIFO), so the number open stays near depth × threads.
//!
//! Directories are entries too (SPEC §2): one that a directory rule selects,
//! or that lies on the way to a selected entry. Which ones lie on the way
//! is known only at the end, so every directory entered is noted and the
//! unneeded ones dropped after the walk. Results from all tasks join one
//! list, sorted once at the end, so the outcome is the same whatever the
//! thread count. Symlinks are never followed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use rustix::fs::FileType;

use crate::entry::{Digests, Entry, ErrorKind, Kind, PathBlock, PathError, RelPath, by_path};
use crate::fs::{Dir, FileTypeOf, Stat};
use crate::select::{DirDecision, DirState, Matcher, Selection};

/// Why a scan could not start.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The source is missing, not a directory, or unreadable.
    #[error("source {}: {source}", path.display())]
    Source {
        /// The source path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The rules exclude the whole source.
    #[error("the rules exclude the whole source (exclude_dirs holds \".\")")]
    AllExcluded,
}

/// The outcome of a scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// Selected entries, sorted by path (the root first, when anything is
    /// selected).
    pub entries: Vec<Entry>,
    /// Directories that could not be read: what lies below them is unknown,
    /// so nothing there may be treated as deleted.
    pub unreadable_dirs: Vec<RelPath>,
    /// Problems met, by path.
    pub problems: Vec<PathError>,
    /// Selected sockets, FIFOs and devices, which are skipped.
    pub skipped_special: u64,
    /// Directories entered that are on another filesystem than their
    /// parent: the mount points inside the source.
    pub mounts: Vec<RelPath>,
}

impl Scan {
    /// Selected files and symlinks (directories left out).
    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.meta.kind != Kind::Dir)
    }
}

/// Options of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Read every selected file and record its content hash.
    pub checksum: bool,
    /// Do not enter directories on another filesystem than the source's.
    pub one_file_system: bool,
    /// Skip a directory holding a file with one of these names.
    pub exclude_if_present: Vec<Vec<u8>>,
    /// Skip a directory holding a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
}

/// The first bytes of a valid `CACHEDIR.TAG` (bford.info/cachedir).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

impl ScanOptions {
    /// Whether the directory carries a marker that excludes it. Markers are
    /// looked at from the directory's descriptor; `CACHEDIR.TAG` is opened
    /// without blocking (a FIFO of that name cannot hang the walk) and read
    /// only if it is a regular file.
    fn marked(&self, dir: &Dir) -> bool {
        if self
            .exclude_if_present
            .iter()
            .any(|name| dir.stat_at(name).is_ok())
        {
            return true;
        }
        if self.exclude_caches
            && let Ok(tag) = dir.open_read(b"CACHEDIR.TAG")
            && crate::fs::fstat(&tag).is_ok_and(|st| st.file_type == FileTypeOf::File)
        {
            use std::os::unix::fs::FileExt;
            let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
            return tag.read_exact_at(&mut head, 0).is_ok() && head == CACHEDIR_SIGNATURE;
        }
        false
    }
}

/// A directory entered, before it is known whether it is selected.
struct SeenDir {
    entry: Entry,
    /// A directory rule covers it.
    by_rule: bool,
}

struct Walk<'a> {
    matcher: &'a Matcher,
    options: ScanOptions,
    /// The source's device, for `one_file_system`.
    root_dev: u64,
    entries: Mutex<Vec<Entry>>,
    dirs: Mutex<Vec<SeenDir>>,
    problems: Mutex<Vec<PathError>>,
    unreadable: Mutex<Vec<RelPath>>,
    mounts: Mutex<Vec<RelPath>>,
    special: AtomicU64,
}

fn dir_entry(path: RelPath, st: &Stat, tracked: bool) -> Option<Entry> {
    Some(Entry {
        path,
        meta: st.meta()?,
        ctime: st.ctime,
        tracked,
        digests: Digests::new(None, None),
    })
}

/// Walk the source opened as `source` (its path for messages) and return
/// what `matcher` selects. Runs on the current rayon pool.
pub fn scan(
    source: &Dir,
    source_path: &std::path::Path,
    matcher: &Matcher,
    options: ScanOptions,
) -> Result<Scan, ScanError> {
    let source_error = |e| ScanError::Source {
        path: source_path.to_path_buf(),
        source: e,
    };
    let st = source.stat().map_err(source_error)?;
    // Read the root here, so that an unreadable source fails the job rather
    // than looking like an empty tree.
    let root_entries = source.entries().map_err(source_error)?;
    let state = matcher.root().ok_or(ScanError::AllExcluded)?;
    let walk = Walk {
        matcher,
        options,
        root_dev: st.dev,
        entries: Mutex::new(Vec::new()),
        dirs: Mutex::new(Vec::new()),
        problems: Mutex::new(Vec::new()),
        unreadable: Mutex::new(Vec::new()),
        mounts: Mutex::new(Vec::new()),
        special: AtomicU64::new(0),
    };
    if let Some(entry) = dir_entry(RelPath::root(), &st, state.tracked) {
        walk.dirs.lock().unwrap().push(SeenDir {
            entry,
            by_rule: state.tracked || state.included,
        });
    }
    let root = Arc::new(source.try_clone().map_err(source_error)?);
    rayon::scope(|s| {
        walk.visit(s, &root, root_entries, RelPath::root(), state, st.dev);
    });
    let Walk {
        entries,
        dirs,
        problems,
        unreadable,
        mounts,
        special,
        ..
    } = walk;
    let mut entries = entries.into_inner().unwrap();
    let dirs = dirs.into_inner().unwrap();
    let dirs = selected_dirs(&entries, dirs);
    entries.reserve_exact(dirs.len());
    entries.extend(dirs);
    entries.sort_unstable_by(by_path);
    // The list grew by doubling; the run holds it to the end (a first run:
    // one entry per file), so give back what it does not use.
    entries.shrink_to_fit();
    let mut problems = problems.into_inner().unwrap();
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    let mut unreadable_dirs = unreadable.into_inner().unwrap();
    unreadable_dirs.sort();
    let mut mounts = mounts.into_inner().unwrap();
    mounts.sort();
    Ok(Scan {
        entries,
        unreadable_dirs,
        problems,
        skipped_special: special.into_inner(),
        mounts,
    })
}

/// The directories that are selected: those a directory rule covers, and
/// those on the way to a selected entry. A directory is tracked when a
/// track rule covers it or a tracked entry lies below it.
fn selected_dirs(files: &[Entry], dirs: Vec<SeenDir>) -> Vec<Entry> {
    // path -> (needed, tracked)
    let mut marks: HashMap<RelPath, (bool, bool)> = HashMap::with_capacity(dirs.len());
    let mark_up = |marks: &mut HashMap<RelPath, (bool, bool)>, from: &RelPath, tracked: bool| {
        let mut up = from.parent();
        while let Some(dir) = up {
            let m = marks.entry(dir.clone()).or_insert((false, false));
            if m.0 && (m.1 || !tracked) {
                break;
            }
            m.0 = true;
            m.1 |= tracked;
            up = dir.parent();
        }
    };
    for f in files {
        mark_up(&mut marks, &f.path, f.tracked);
    }
    for d in dirs.iter().filter(|d| d.by_rule) {
        let m = marks.entry(d.entry.path.clone()).or_insert((false, false));
        m.0 = true;
        m.1 |= d.entry.tracked;
        let tracked = m.1;
        mark_up(&mut marks, &d.entry.path, tracked);
    }
    dirs.into_iter()
        .filter_map(|mut d| {
            let (needed, tracked) = marks.get(&d.entry.path).copied()?;
            needed.then(|| {
                d.entry.tracked = tracked;
                d.entry
            })
        })
        .collect()
}

impl<'a> Walk<'a> {
    fn problem(&self, path: &RelPath, kind: ErrorKind, message: String) {
        self.problems
            .lock()
            .unwrap()
            .push(PathError::new(path, kind, message));
    }

    fn unreadable(&self, path: RelPath, e: &io::Error) {
        self.problem(
            &path,
            ErrorKind::Read,
            format!("cannot read directory: {e}"),
        );
        self.unreadable.lock().unwrap().push(path);
    }

    /// Open the subdirectory `name` of `parent` and walk it.
    fn enter<'s>(
        &'s self,
        s: &rayon::Scope<'s>,
        parent: Arc<Dir>,
        parent_dev: u64,
        name: Vec<u8>,
        rel: RelPath,
        state: DirState,
    ) {
        let by_rule = state.tracked || state.included;
        let dir = match parent.child_dir(&name) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                // Replaced by a symlink or a file since it was listed: not
                // followed; the next run sees what it is.
                self.problem(
                    &rel,
                    ErrorKind::Changed,
                    "changed from a directory while the source was read; not followed".into(),
                );
                return;
            }
            Err(e) => {
                // Unreadable (permissions): keep it, and what the mirror
                // holds below it.
                if let Ok(st) = parent.stat_at(&name)
                    && st.file_type == FileTypeOf::Dir
                    && let Some(entry) = dir_entry(rel.clone(), &st, state.tracked)
                {
                    self.dirs.lock().unwrap().push(SeenDir {
                        entry,
                        by_rule: true,
                    });
                }
                self.unreadable(rel, &e);
                return;
            }
        };
        drop(parent);
        let st = match dir.stat() {
            Ok(st) => st,
            Err(e) => return self.unreadable(rel, &e),
        };
        if self.options.one_file_system && st.dev != self.root_dev {
            tracing::debug!("{rel}: another filesystem, not entered");
            return;
        }
        if self.options.marked(&dir) {
            tracing::debug!("{rel}: excluded by a marker file");
            return;
        }
        if st.dev != parent_dev {
            self.mounts.lock().unwrap().push(rel.clone());
        }
        let entries = match dir.entries() {
            Ok(entries) => entries,
            Err(e) => {
                if let Some(entry) = dir_entry(rel.clone(), &st, state.tracked) {
                    self.dirs.lock().unwrap().push(SeenDir {
                        entry,
                        by_rule: true,
                    });
                }
                return self.unreadable(rel, &e);
            }
        };
        if let Some(entry) = dir_entry(rel.clone(), &st, state.tracked) {
            self.dirs.lock().unwrap().push(SeenDir { entry, by_rule });
        }
        self.visit(s, &Arc::new(dir), entries, rel, state, st.dev);
    }

    fn visit<'s>(
        &'s self,
        s: &rayon::Scope<'s>,
        dir: &Arc<Dir>,
        entries: Vec<(Vec<u8>, FileType)>,
        rel_dir: RelPath,
        state: DirState,
        dev: u64,
    ) {
        // The selected files' paths go into one block (a first run holds
        // a path per file); each name is joined in `scratch` to look at it.
        let mut found = Vec::new();
        let mut paths = PathBlock::default();
        let mut scratch = rel_dir.as_bytes().to_vec();
        if !scratch.is_empty() {
            scratch.push(b'/');
        }
        let base = scratch.len();
        for (name, file_type) in entries {
            scratch.truncate(base);
            scratch.extend_from_slice(&name);
            let path = std::path::Path::new(OsStr::from_bytes(&scratch));
            let rel = || RelPath::from_bytes(&scratch);
            // d_type from getdents: no stat for directories and unselected
            // files. DT_UNKNOWN (some filesystems) needs one.
            let mut stat = None;
            let mut file_type = file_type;
            if file_type == FileType::Unknown {
                match dir.stat_at(&name) {
                    Ok(st) => {
                        file_type = match st.file_type {
                            FileTypeOf::Dir => FileType::Directory,
                            FileTypeOf::File => FileType::RegularFile,
                            FileTypeOf::Symlink => FileType::Symlink,
                            FileTypeOf::Special => FileType::Fifo,
                        };
                        stat = Some(st);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        self.problem(&rel(), ErrorKind::Read, format!("cannot stat: {e}"));
                        continue;
                    }
                }
            }
            if file_type == FileType::Directory {
                if let DirDecision::Enter(sub) = self.matcher.enter_dir(state, path) {
                    let parent = Arc::clone(dir);
                    let rel = rel();
                    s.spawn(move |s| self.enter(s, parent, dev, name, rel, sub));
                }
                continue;
            }
            let selection = self.matcher.file(state, path);
            if !selection.is_selected() {
                continue;
            }
            if !matches!(file_type, FileType::RegularFile | FileType::Symlink) {
                self.special.fetch_add(1, AtomicOrdering::Relaxed);
                continue;
            }
            let st = match stat {
                Some(st) => st,
                None => match dir.stat_at(&name) {
                    Ok(st) => st,
                    // Vanished since it was listed: not selected now; a
                    // vanished file is a deletion, which is what it is.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        self.problem(&rel(), ErrorKind::Read, format!("cannot stat: {e}"));
                        continue;
                    }
                },
            };
            let meta = match st.meta() {
                Some(meta) if meta.kind != Kind::Dir => meta,
                Some(_) => continue, // became a directory: the next run sees it
                None => {
                    self.special.fetch_add(1, AtomicOrdering::Relaxed);
                    continue;
                }
            };
            let hash = if self.options.checksum {
                match hash_in(dir, &name, meta.kind) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        self.problem(&rel(), ErrorKind::Read, format!("cannot read: {e}"));
                        None
                    }
                }
            } else {
                None
            };
            paths.push(&scratch);
            found.push(Entry {
                path: RelPath::root(),
                meta,
                ctime: st.ctime,
                tracked: selection == Selection::Tracked,
                digests: Digests::new(hash, None),
            });
        }
        // Into the one list right away: a directory's own list is freed
        // here and its memory reused by the next directory.
        if !found.is_empty() {
            for (entry, path) in found.iter_mut().zip(paths.into_paths()) {
                entry.path = path;
            }
            self.entries.lock().unwrap().append(&mut found);
        }
    }
}

pub use crate::fs::{hash_at, hash_in};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::RuleLists;
    use std::fs;
    use std::path::Path;

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
        fs::create_dir_all(dir.path().join("docs/empty")).unwrap();
        std::os::unix::fs::symlink("../a.txt", dir.path().join("docs/link")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("src/out")).unwrap();
        dir
    }

    fn paths(scan: &Scan) -> Vec<String> {
        scan.entries.iter().map(|e| e.path.to_string()).collect()
    }

    fn run(dir: &Path, matcher: &Matcher) -> Scan {
        scan(
            &Dir::open_root(dir).unwrap(),
            dir,
            matcher,
            ScanOptions::default(),
        )
        .unwrap()
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
        let scan = run(dir.path(), &matcher);
        assert_eq!(
            paths(&scan),
            [
                ".",
                "a.txt",
                "docs",
                "docs/b.md",
                "docs/deep",
                "docs/deep/c.md",
                "docs/empty",
                "docs/link",
                "src",
                "src/main.rs",
                "src/out"
            ]
        );
        let kind = |p: &str| {
            scan.entries
                .iter()
                .find(|e| e.path.to_string() == p)
                .unwrap()
                .meta
                .kind
        };
        assert_eq!(kind("src/out"), Kind::Symlink);
        assert_eq!(kind("docs/empty"), Kind::Dir);
        assert!(scan.entries.iter().all(|e| e.tracked));
    }

    #[test]
    fn directories_on_the_way_are_selected_and_tracked_by_what_they_hold() {
        let dir = tree();
        let include = vec!["src".to_string()];
        let track_files = vec!["docs/*.md:rec".to_string()];
        let matcher = Matcher::new(RuleLists {
            include_dirs: &include,
            track_files: &track_files,
            ..RuleLists::default()
        })
        .unwrap();
        let scan = run(dir.path(), &matcher);
        let got: Vec<(String, bool)> = scan
            .entries
            .iter()
            .map(|e| (e.path.to_string(), e.tracked))
            .collect();
        let want: Vec<(String, bool)> = [
            (".", true),
            ("docs", true),
            ("docs/b.md", true),
            ("docs/deep", true),
            ("docs/deep/c.md", true),
            ("src", false),
            ("src/main.rs", false),
            ("src/node_modules", false),
            ("src/node_modules/y.js", false),
            ("src/out", false),
        ]
        .iter()
        .map(|(p, t)| (p.to_string(), *t))
        .collect();
        assert_eq!(got, want, "docs/empty holds nothing selected");
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
        let a = one.install(|| run(dir.path(), &matcher));
        let b = four.install(|| run(dir.path(), &matcher));
        assert_eq!(a.entries, b.entries);
    }

    #[test]
    fn missing_source_is_an_error() {
        assert!(Dir::open_root(Path::new("/nonexistent/strata")).is_err());
    }

    #[test]
    fn a_fifo_named_cachedir_tag_does_not_hang() {
        let dir = tree();
        let fifo = std::ffi::CString::new(
            dir.path()
                .join("docs/CACHEDIR.TAG")
                .as_os_str()
                .as_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let inc = vec![".".to_string()];
        let matcher = Matcher::new(RuleLists {
            include_dirs: &inc,
            ..RuleLists::default()
        })
        .unwrap();
        let options = ScanOptions {
            exclude_caches: true,
            ..ScanOptions::default()
        };
        let root = Dir::open_root(dir.path()).unwrap();
        let scan = scan(&root, dir.path(), &matcher, options).unwrap();
        assert!(paths(&scan).contains(&"docs/b.md".to_string()));
        assert_eq!(scan.skipped_special, 1);
    }
}
