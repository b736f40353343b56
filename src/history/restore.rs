//! `strata restore`: a point in a job's history -> a directory holding what
//! existed then, as it was.
//!
//! Takes a [`Store`], a target directory and a point ([`At`], or none for
//! the latest state); copies on the shared pool and returns what it did.
//! The latest state is the mirror (included-only files too); a past point
//! is the tracked state the [`History`] replays, read from the increments'
//! `track/` folders. Files are always copied, never linked (a restored file
//! that shared an inode with the backup would let an edit of the restored
//! copy rewrite the backup), with holes kept; each copy's content is
//! checked against the hash recorded for it, and a mismatch is an error
//! naming the file, never a silent success. Owner (as root), xattrs, mode
//! and times are set on each new inode before it gets its name; directories
//! get theirs last, deepest first; the names of one source inode become one
//! inode again.
//!
//! The target is written through descriptors only: it is opened without
//! following a symlink, every directory below it is made and opened
//! beneath it, and nothing below it is ever followed (an existing symlink
//! in the way, with `--force`, is replaced). A user who owns the target can
//! swap a folder strata just made for a symlink; the next open beneath the
//! target then fails, and nothing is written outside it. Nothing is ever
//! written under a temp name, so a killed restore leaves no debris.
//!
//! Restore only reads the destination, so it takes no lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::{At, History, HistoryError};
use crate::entry::{ErrorKind, Hash, Kind, LinkKey, Meta, NO_XATTRS, PathError, RelPath, Xattrs};
use crate::fs::copy::{CopyError, copy_data};
use crate::fs::{Degraded, Dir, DirRef, FileTypeOf, Finish, finish, fstat, is_root, xattr};
use crate::store::index::{self, UNKNOWN_OWNER};
use crate::store::object::client::{DownloadError, Fetched};
use crate::store::object::{self, Remote};
use crate::store::{DIRTY, IncrementDir, Part, Store, StoreError};

/// Why a restore did not start.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The history could not be read, or the point not found.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The index or the target could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job was never backed up.
    #[error("{}: nothing backed up yet (no index)", path.display())]
    NothingBackedUp {
        /// The index file.
        path: PathBuf,
    },
    /// The target holds files and `--force` was not given.
    #[error("{} is not empty; restore into an empty or new directory, or pass --force", path.display())]
    NotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// The target is not a directory (or is a symlink, which is not
    /// followed).
    #[error("{} exists and is not a directory (a symlink is not followed)", path.display())]
    NotADirectory {
        /// The target.
        path: PathBuf,
    },
    /// The target lies inside the backup destination.
    #[error("{} is inside the backup destination {}: restore elsewhere", path.display(), destination.display())]
    InsideDestination {
        /// The target.
        path: PathBuf,
        /// The destination.
        destination: PathBuf,
    },
    /// A PATH argument matches no file at that point.
    #[error("{path}: no such file or directory at {point}")]
    NoMatch {
        /// The argument.
        path: String,
        /// The point (increment name or "the latest state").
        point: String,
    },
}

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The point; `None`: the latest state (the mirror).
    pub at: Option<At>,
    /// Restore only these files or directories (relative to source).
    pub paths: Vec<RelPath>,
    /// Restore into a non-empty directory, replacing what is in the way.
    pub force: bool,
    /// Where the copies report their progress (the default shows nothing).
    pub progress: crate::progress::ProgressHandle,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Restored {
    /// The increment restored, or `mirror` for the latest state.
    pub point: String,
    /// The target directory.
    pub to: PathBuf,
    /// Files (and symlinks) restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// What could not be restored, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<PathError>,
    /// Things worth knowing that did not stop the restore.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Where an item's bytes are.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `mirror/<path>`.
    Mirror,
    /// `<increment>/<part>/<path>` (index into the opened increments).
    Increment(usize, Part),
}

/// One entry to restore.
#[derive(Debug, Clone)]
struct Item {
    path: RelPath,
    meta: Meta,
    has_owner: bool,
    hash: Option<Hash>,
    /// The xattrs to set; `None`: those of the stored inode.
    xattrs: Option<Xattrs>,
    from: Source,
}

/// Restore into `to`. Per-file failures (a missing or damaged backup file)
/// are listed in the result; the other files are still restored.
pub fn restore(
    store: &Store,
    to: &Path,
    options: &RestoreOptions,
) -> Result<Restored, RestoreError> {
    let mut increments: Vec<IncrementDir> = Vec::new();
    let (point, items) = match &options.at {
        None => (String::from("mirror"), mirror_items(store)?),
        Some(at) => {
            let history = History::load(store)?;
            let k = history.resolve(at)?;
            let mut opened: HashMap<usize, usize> = HashMap::new();
            let mut items = Vec::new();
            for (path, version) in history.state_at(Some(k)) {
                let (inc, part, _) = history.file_of(version);
                let slot = match opened.get(&version.increment) {
                    Some(&s) => s,
                    None => {
                        increments.push(inc.open(store)?);
                        opened.insert(version.increment, increments.len() - 1);
                        increments.len() - 1
                    }
                };
                items.push(version_item(path, version, Source::Increment(slot, part)));
            }
            (history.increments[k].name.clone(), items)
        }
    };
    let items = select(items, options, &point)?;
    let target = open_target(Some(store), to, options.force)?;
    let mirror = match options.at {
        None => store
            .mirror()
            .map_err(|e| StoreError::io(&store.mirror_path(), e))?,
        Some(_) => None,
    };
    let mut warnings = Vec::new();
    if options.at.is_none() && store.state_has(DIRTY) {
        warnings.push(
            "an interrupted run is not repaired yet: the mirror may mix that run's new \
             versions with old ones; run the job, or restore --at its last increment"
                .into(),
        );
    }
    let backing = Local {
        store,
        mirror,
        increments,
    };
    Ok(restore_items(
        &backing, &target, point, to, items, options, warnings,
    ))
}

/// Restore from a destination of either kind.
pub fn restore_from(
    dest: &crate::store::dest::Destination,
    to: &Path,
    options: &RestoreOptions,
) -> Result<Restored, RestoreError> {
    match dest {
        crate::store::dest::Destination::Local(store) => restore(store, to, options),
        crate::store::dest::Destination::Object(remote) => restore_remote(remote, to, options),
    }
}

/// Restore from an object-store destination into `to`: the same items
/// (the index for the latest state, the history's replay for a past
/// point), their bytes streamed from the objects.
pub fn restore_remote(
    remote: &Remote,
    to: &Path,
    options: &RestoreOptions,
) -> Result<Restored, RestoreError> {
    let mut increments: Vec<String> = Vec::new();
    let committed = remote.fetch_index()?;
    let (point, items) = match &options.at {
        None => {
            let path = PathBuf::from(format!("{}/{}", remote.url(), object::INDEX_KEY));
            let index = match &committed {
                Some(r) => r.index.walk(|w| {
                    let mut out = Vec::new();
                    while let Some(e) = w.current() {
                        out.push(e.to_entry());
                        w.advance();
                    }
                    out
                })?,
                None => return Err(RestoreError::NothingBackedUp { path }),
            };
            // The extended attributes the index names by digest, each
            // fetched once.
            let mut xattrs: HashMap<Hash, Xattrs> = HashMap::new();
            let mut items = Vec::with_capacity(index.len());
            for e in index {
                let digest = e.xattrs().unwrap_or(crate::entry::NO_XATTRS);
                let x = match xattrs.entry(digest) {
                    std::collections::hash_map::Entry::Occupied(o) => o.get().clone(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(remote.load_xattrs(digest)?).clone()
                    }
                };
                items.push(Item {
                    has_owner: e.meta.uid != UNKNOWN_OWNER,
                    xattrs: Some(x),
                    hash: e.hash(),
                    path: e.path,
                    meta: e.meta,
                    from: Source::Mirror,
                });
            }
            (String::from("mirror"), items)
        }
        Some(at) => {
            let history = History::load_remote(remote)?;
            let k = history.resolve(at)?;
            let mut opened: HashMap<usize, usize> = HashMap::new();
            let mut items = Vec::new();
            for (path, version) in history.state_at(Some(k)) {
                let (inc, part, _) = history.file_of(version);
                let slot = *opened.entry(version.increment).or_insert_with(|| {
                    increments.push(inc.name.clone());
                    increments.len() - 1
                });
                items.push(version_item(path, version, Source::Increment(slot, part)));
            }
            (history.increments[k].name.clone(), items)
        }
    };
    let items = select(items, options, &point)?;
    let target = open_target(None, to, options.force)?;
    let mut warnings = Vec::new();
    let pending = committed.as_ref().and_then(|r| r.run.clone());
    if options.at.is_none()
        && let Some(run) = pending
        && remote.staged()?.contains(&run)
    {
        warnings.push(format!(
            "the run {run} committed but was interrupted before its mirror was complete: \
             some files may come back in their previous version; run the job, or restore \
             --at its last increment"
        ));
    }
    let backing = Objects {
        remote,
        increments,
        tmp: target
            .try_clone()
            .map_err(|e| RestoreError::Store(StoreError::io(to, e)))?,
    };
    Ok(restore_items(
        &backing, &target, point, to, items, options, warnings,
    ))
}

/// The item of a version in the history's replay.
fn version_item(path: RelPath, version: super::Version<'_>, from: Source) -> Item {
    let r = version
        .record
        .check()
        .expect("the history checked its records");
    Item {
        path,
        meta: r.meta,
        has_owner: r.has_owner,
        hash: r.hash,
        xattrs: Some(r.xattrs),
        from,
    }
}

/// Keep the items the PATH arguments select (all without any), and the
/// folders on their way.
fn select(
    mut items: Vec<Item>,
    options: &RestoreOptions,
    point: &str,
) -> Result<Vec<Item>, RestoreError> {
    if options.paths.is_empty() {
        return Ok(items);
    }
    for wanted in &options.paths {
        if !items.iter().any(|i| i.path.is_at_or_below(wanted)) {
            return Err(RestoreError::NoMatch {
                path: wanted.to_string(),
                point: if options.at.is_some() {
                    point.to_string()
                } else {
                    "the latest state".into()
                },
            });
        }
    }
    // The wanted entries, and the folders on their way (the root left
    // out: its metadata is the whole tree's).
    let mut keep: HashSet<RelPath> = HashSet::new();
    for i in &items {
        if options.paths.iter().any(|w| i.path.is_at_or_below(w)) {
            let mut up = i.path.parent();
            while let Some(p) = up.filter(|p| !p.is_root()) {
                up = p.parent();
                if !keep.insert(p) {
                    break;
                }
            }
            keep.insert(i.path.clone());
        }
    }
    items.retain(|i| keep.contains(&i.path) && !i.path.is_root());
    Ok(items)
}

/// Restore `items` into `target` (opened at `to`), reading their bytes
/// through `backing`.
fn restore_items(
    backing: &dyn Backing,
    target: &Dir,
    point: String,
    to: &Path,
    items: Vec<Item>,
    options: &RestoreOptions,
    warnings: Vec<String>,
) -> Restored {
    let whole = options.paths.is_empty();
    let progress = options.progress.job(&point);
    let ctx = Ctx {
        progress: &*progress,
        target,
        backing,
        force: options.force,
        degraded: Degraded::default(),
        made: Default::default(),
    };
    let mut done = Restored {
        point,
        to: to.to_path_buf(),
        ..Restored::default()
    };
    done.warnings = warnings;
    // Directories first, parents before children. A folder on the way to
    // an entry that has no record of its own (a history written before
    // directories were recorded) is made all the same, mode 0755.
    let (dirs, files): (Vec<Item>, Vec<Item>) =
        items.into_iter().partition(|i| i.meta.kind == Kind::Dir);
    let recorded: HashSet<&RelPath> = dirs.iter().map(|d| &d.path).collect();
    let mut implied: std::collections::BTreeSet<RelPath> = Default::default();
    for i in files.iter().chain(&dirs) {
        let mut up = i.path.parent();
        while let Some(p) = up.filter(|p| !p.is_root()) {
            up = p.parent();
            if recorded.contains(&p) || !implied.insert(p) {
                break;
            }
        }
    }
    let mut to_make: Vec<&RelPath> = dirs
        .iter()
        .map(|d| &d.path)
        .chain(implied.iter())
        .filter(|p| !p.is_root())
        .collect();
    to_make.sort();
    let mut failed_dirs: Vec<RelPath> = Vec::new();
    for path in to_make {
        if failed_dirs.iter().any(|f| path.is_below(f)) {
            continue;
        }
        if let Err(e) = ctx.make_dir(path) {
            done.errors.push(e);
            failed_dirs.push(path.clone());
        }
    }
    for path in implied.iter().rev() {
        if let Ok(d) = ctx.target.open_dir(path.as_bytes())
            && ctx.check_made(path, &d).is_ok()
        {
            let _ = rustix::fs::fchmod(&d, rustix::fs::Mode::from_raw_mode(0o755));
        }
    }
    // Files; the names of a hardlink group after the first.
    let mut groups: BTreeMap<LinkKey, Vec<usize>> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        if f.meta.kind == Kind::File && f.meta.link != 0 {
            groups.entry(f.meta.link).or_default().push(i);
        }
    }
    let follower: HashMap<usize, usize> = groups
        .values()
        .flat_map(|members| members[1..].iter().map(|&m| (m, members[0])))
        .collect();
    let firsts: Vec<usize> = (0..files.len())
        .filter(|i| !follower.contains_key(i))
        .collect();
    ctx.progress.begin("restoring", Some(files.len() as u64));
    ctx.progress
        .expect_bytes(files.iter().map(|f| f.meta.size).sum());
    let results: Vec<(usize, Result<u64, PathError>)> = firsts
        .par_iter()
        .map(|&i| {
            let copied = ctx.copy_item(&files[i]);
            ctx.progress.inc(1);
            (i, copied)
        })
        .collect();
    let mut ok: HashSet<usize> = HashSet::new();
    for (i, r) in results {
        match r {
            Ok(bytes) => {
                ok.insert(i);
                done.files += 1;
                done.bytes += bytes;
            }
            Err(e) => done.errors.push(e),
        }
    }
    for (&f, &lead) in &follower {
        let r = if ok.contains(&lead) {
            ctx.link_item(&files[f], &files[lead].path)
        } else {
            ctx.copy_item(&files[f]).map(|_| ())
        };
        match r {
            Ok(()) => done.files += 1,
            Err(e) => done.errors.push(e),
        }
    }
    // Directory metadata, deepest first.
    let mut by_depth: Vec<&Item> = dirs.iter().collect();
    by_depth.sort_by_key(|d| std::cmp::Reverse(d.path.depth()));
    for d in by_depth {
        if failed_dirs.iter().any(|f| d.path.is_at_or_below(f)) {
            continue;
        }
        if d.path.is_root() && !whole {
            continue;
        }
        match ctx.finish_dir(d) {
            Ok(()) => done.dirs += 1,
            Err(e) => done.errors.push(e),
        }
    }
    ctx.progress.finish();
    done.warnings.extend(ctx.degraded.warnings());
    done.errors.sort_by(|a, b| a.path.cmp(&b.path));
    done
}

/// The latest state: every index entry, read from `mirror/`. The xattrs
/// are the mirror inode's; where the destination's filesystem cannot hold
/// them, a tracked entry's come from its latest record (the one whose
/// digest the index holds), any other's from the set the run that copied
/// it kept by digest (`Store::save_xattrs`).
fn mirror_items(store: &Store) -> Result<Vec<Item>, RestoreError> {
    let path = store.index_path();
    let index = index::load(store.state(), &path)?.ok_or(RestoreError::NothingBackedUp { path })?;
    let lost_xattrs = index
        .entries
        .iter()
        .any(|e| e.xattrs().is_some_and(|x| x != NO_XATTRS))
        && matches!(store.mirror(), Ok(Some(m)) if !xattr::supported(&m));
    let recorded: HashMap<RelPath, Xattrs> = if lost_xattrs {
        let history = History::load(store)?;
        let last = history.increments.len().checked_sub(1);
        history
            .state_at(last)
            .into_iter()
            .filter_map(|(path, version)| {
                let r = version.record.check().ok()?;
                (!r.xattrs.is_empty()).then_some((path, r.xattrs))
            })
            .collect()
    } else {
        HashMap::new()
    };
    // The rest (included-only entries, whose xattrs no record holds) from
    // the sets the runs kept by digest.
    let mut kept: HashMap<Hash, Option<Xattrs>> = HashMap::new();
    let mut from_kept = |e: &crate::entry::Entry| -> Result<Option<Xattrs>, RestoreError> {
        let Some(digest) = e.xattrs().filter(|&x| lost_xattrs && x != NO_XATTRS) else {
            return Ok(None);
        };
        if let Some(x) = kept.get(&digest) {
            return Ok(x.clone());
        }
        let x = store.load_xattrs(digest)?;
        kept.insert(digest, x.clone());
        Ok(x)
    };
    let mut items = Vec::with_capacity(index.entries.len());
    for e in index.entries {
        let xattrs = match recorded
            .get(&e.path)
            .filter(|x| e.xattrs() == Some(x.digest()))
        {
            Some(x) => Some(x.clone()),
            None => from_kept(&e)?,
        };
        items.push(Item {
            has_owner: e.meta.uid != UNKNOWN_OWNER,
            xattrs,
            hash: e.hash(),
            path: e.path,
            meta: e.meta,
            from: Source::Mirror,
        });
    }
    Ok(items)
}

/// Open the target: absent (made, mode 0700 until its metadata is set) or
/// an empty directory (unless forced), never a symlink, not in the
/// destination.
fn open_target(store: Option<&Store>, to: &Path, force: bool) -> Result<Dir, RestoreError> {
    let io_err = |e| RestoreError::Store(StoreError::io(to, e));
    let name = to.file_name().ok_or_else(|| RestoreError::NotADirectory {
        path: to.to_path_buf(),
    })?;
    let parent_path = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent_path)
        .map_err(|e| RestoreError::Store(StoreError::io(&parent_path, e)))?;
    let parent = Dir::open_root(&parent_path)
        .map_err(|e| RestoreError::Store(StoreError::io(&parent_path, e)))?;
    use std::os::unix::ffi::OsStrExt;
    let name = name.as_bytes();
    let created = match parent.mkdir(name, 0o700) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io_err(e)),
    };
    let target = match parent.child_dir(name) {
        Ok(d) => d,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            return Err(RestoreError::NotADirectory {
                path: to.to_path_buf(),
            });
        }
        Err(e) => return Err(io_err(e)),
    };
    // Inside the destination? Walk up by descriptors, comparing inodes (an
    // object store's destination is no folder here).
    let Some(store) = store else {
        if !created && !force && !target.entries().map_err(io_err)?.is_empty() {
            return Err(RestoreError::NotEmpty {
                path: to.to_path_buf(),
            });
        }
        return Ok(target);
    };
    let dest = store.root().stat().map_err(io_err)?;
    let mut up = target.try_clone().map_err(io_err)?;
    for _ in 0..4096 {
        let st = up.stat().map_err(io_err)?;
        if st.same_inode(&dest) {
            if created {
                let _ = parent.rmdir(name);
            }
            return Err(RestoreError::InsideDestination {
                path: to.to_path_buf(),
                destination: store.path().to_path_buf(),
            });
        }
        let next = match rustix::fs::openat(
            &up,
            c"..",
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => Dir::from_fd(fd),
            Err(_) => break,
        };
        if next.stat().map_err(io_err)?.same_inode(&st) {
            break; // the root
        }
        up = next;
    }
    if !created && !force && !target.entries().map_err(io_err)?.is_empty() {
        return Err(RestoreError::NotEmpty {
            path: to.to_path_buf(),
        });
    }
    Ok(target)
}

/// Where a restore reads the bytes it copies back: the seam between the
/// restore (targets, metadata, hardlinks, checks) and a destination kind.
trait Backing: Sync {
    /// The stored file of `item`, opened for reading, and where it is.
    fn open_file(&self, item: &Item) -> Result<(std::fs::File, PathBuf), PathError>;
    /// The stored target of the symlink `item`, and where it is.
    fn read_link(&self, item: &Item) -> Result<(Vec<u8>, PathBuf), PathError>;
    /// The extended attributes of the latest state's directory `path`
    /// (for items that carry none of their own).
    fn dir_xattrs(&self, path: &RelPath) -> Xattrs;
}

fn missing(item: &Item, e: io::Error, shown: &Path) -> PathError {
    let kind = if e.kind() == io::ErrorKind::NotFound {
        ErrorKind::Corrupt
    } else {
        ErrorKind::Read
    };
    err(
        &item.path,
        kind,
        format!("missing from the backup: {}: {e}", shown.display()),
    )
}

/// A local destination: the mirror and the increments' folders.
struct Local<'a> {
    store: &'a Store,
    mirror: Option<Dir>,
    increments: Vec<IncrementDir>,
}

impl Local<'_> {
    /// The folder holding the stored bytes of `item`, and where that is.
    fn stored(&self, item: &Item) -> Result<(Dir, PathBuf), PathError> {
        match item.from {
            Source::Mirror => {
                let shown = self.store.mirror_path().join(item.path.as_path());
                let mirror = self.mirror.as_ref().ok_or_else(|| {
                    missing(item, io::Error::from(io::ErrorKind::NotFound), &shown)
                })?;
                Ok((
                    mirror.try_clone().map_err(|e| missing(item, e, &shown))?,
                    shown,
                ))
            }
            Source::Increment(slot, part) => {
                let inc = &self.increments[slot];
                let shown = inc.part_path(part, &item.path);
                match inc.part(part) {
                    Ok(Some(d)) => Ok((d, shown)),
                    Ok(None) => Err(missing(
                        item,
                        io::Error::from(io::ErrorKind::NotFound),
                        &shown,
                    )),
                    Err(e) => Err(missing(item, e, &shown)),
                }
            }
        }
    }

    fn in_stored<T>(
        &self,
        item: &Item,
        f: impl FnOnce(&DirRef<'_>, &[u8]) -> io::Result<T>,
    ) -> Result<(T, PathBuf), PathError> {
        let (stored, shown) = self.stored(item)?;
        let corrupt = |e: io::Error| {
            err(
                &item.path,
                ErrorKind::Corrupt,
                format!("missing from the backup: {}: {e}", shown.display()),
            )
        };
        let (sdir, sname) = stored.parent_of(item.path.as_bytes()).map_err(corrupt)?;
        let value = f(&sdir, sname).map_err(corrupt)?;
        Ok((value, shown))
    }
}

impl Backing for Local<'_> {
    fn open_file(&self, item: &Item) -> Result<(std::fs::File, PathBuf), PathError> {
        self.in_stored(item, |d, n| d.open_read(n))
    }

    fn read_link(&self, item: &Item) -> Result<(Vec<u8>, PathBuf), PathError> {
        self.in_stored(item, |d, n| d.read_link(n))
    }

    fn dir_xattrs(&self, path: &RelPath) -> Xattrs {
        // The latest state: the mirror folder's own.
        self.mirror
            .as_ref()
            .and_then(|m| m.open_dir(path.as_bytes()).ok())
            .and_then(|d| xattr::read_all(&d).ok())
            .unwrap_or_default()
    }
}

/// An object-store destination: each file streamed from its object into
/// an unnamed file in the target (holes kept), which the restore then
/// copies and checks as it does a local one.
struct Objects<'a> {
    remote: &'a Remote,
    increments: Vec<String>,
    tmp: Dir,
}

impl Objects<'_> {
    fn key(&self, item: &Item) -> object_store::path::Path {
        match item.from {
            Source::Mirror => self.remote.mirror_key(&item.path),
            Source::Increment(slot, part) => {
                self.remote
                    .part_key(&self.increments[slot], part, &item.path)
            }
        }
    }

    fn shown(&self, key: &object_store::path::Path) -> PathBuf {
        PathBuf::from(format!(
            "{}/{}",
            self.remote.url(),
            self.remote.bucket.shown(key)
        ))
    }
}

impl Backing for Objects<'_> {
    fn open_file(&self, item: &Item) -> Result<(std::fs::File, PathBuf), PathError> {
        let key = self.key(item);
        let shown = self.shown(&key);
        let file = self.tmp.tmpfile(0o600).map_err(|e| {
            err(
                &item.path,
                ErrorKind::Write,
                format!("cannot create the file: {e}"),
            )
        })?;
        match self.remote.bucket.download(&key, &file, &|_| {}) {
            Ok(_) => Ok((file, shown)),
            Err(DownloadError::Missing) => Err(missing(
                item,
                io::Error::from(io::ErrorKind::NotFound),
                &shown,
            )),
            Err(DownloadError::Store(e)) => Err(err(&item.path, ErrorKind::Read, e.to_string())),
        }
    }

    fn read_link(&self, item: &Item) -> Result<(Vec<u8>, PathBuf), PathError> {
        let key = self.key(item);
        let shown = self.shown(&key);
        match self.remote.bucket.get(&key, None) {
            Ok(Fetched::Got { bytes, .. }) => Ok((bytes, shown)),
            Ok(_) => Err(missing(
                item,
                io::Error::from(io::ErrorKind::NotFound),
                &shown,
            )),
            Err(e) => Err(err(&item.path, ErrorKind::Read, e.to_string())),
        }
    }

    fn dir_xattrs(&self, _: &RelPath) -> Xattrs {
        // Every item from an object store carries its own.
        Xattrs::default()
    }
}

struct Ctx<'a> {
    target: &'a Dir,
    backing: &'a dyn Backing,
    force: bool,
    degraded: Degraded,
    /// The (device, inode) of each folder this restore made or found in
    /// the target, by path: what a folder opened there later must be.
    made: std::sync::RwLock<HashMap<RelPath, (u64, u64)>>,
    progress: &'a dyn crate::progress::Progress,
}

fn err(path: &RelPath, kind: ErrorKind, message: impl Into<String>) -> PathError {
    PathError::new(path, kind, message)
}

impl Ctx<'_> {
    /// Fail unless `dir`, opened at `path` in the target, is the folder
    /// this restore made or found there. A user who owns the target can
    /// swap a folder strata made (0700, so what goes in stays private) for
    /// one of their own between two opens; the restored files must never
    /// land in it.
    ///
    /// Every folder below the target's root that holds something restored
    /// is made (or found) first; one that is not known here could not be
    /// made, or was replaced before it could be told apart, and is not
    /// written into either.
    fn check_made(&self, path: &RelPath, dir: &Dir) -> io::Result<()> {
        if path.is_root() {
            // The target itself, opened once (see `open_target`).
            return Ok(());
        }
        let want = self.made.read().expect("not poisoned").get(path).copied();
        let Some(want) = want else {
            return Err(io::Error::other(
                "the folder could not be made as this restore's own",
            ));
        };
        let st = dir.stat()?;
        if (st.dev, st.ino) != want {
            return Err(io::Error::other(
                "it was replaced by another folder during the restore",
            ));
        }
        Ok(())
    }

    /// The folder holding `path` in the target (checked, see
    /// [`Ctx::check_made`]) and `path`'s name in it.
    fn target_parent<'p>(&self, path: &'p RelPath) -> io::Result<(DirRef<'_>, &'p [u8])> {
        let (dir, name) = self.target.parent_of(path.as_bytes())?;
        if let Some(parent) = path.parent().filter(|p| !p.is_root()) {
            self.check_made(&parent, &dir)?;
        }
        Ok((dir, name))
    }

    /// Make the directory `path` in the target (0700 until its metadata
    /// is set); with `--force`, what stands in its way (never followed)
    /// goes. Remembers which inode it is.
    fn make_dir(&self, path: &RelPath) -> Result<(), PathError> {
        let (parent, name) = self.target_parent(path).map_err(|e| {
            err(
                path,
                ErrorKind::Write,
                format!("cannot open its folder in the target: {e}"),
            )
        })?;
        let made = match parent.mkdir(name, 0o700) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match parent.stat_at(name) {
                Ok(st) if st.file_type == FileTypeOf::Dir => false,
                _ if self.force => parent
                    .remove_all(name)
                    .and_then(|()| parent.mkdir(name, 0o700))
                    .map(|()| true)
                    .map_err(|e| {
                        err(
                            path,
                            ErrorKind::Write,
                            format!("cannot replace what is in the way: {e}"),
                        )
                    })?,
                _ => {
                    return Err(err(
                        path,
                        ErrorKind::Write,
                        "something else is in the way in the target",
                    ));
                }
            },
            Err(e) => {
                return Err(err(
                    path,
                    ErrorKind::Write,
                    format!("cannot make the folder: {e}"),
                ));
            }
        };
        // The folder just made is ours: another owner means it was
        // swapped between the mkdir and this open.
        let st = parent
            .child_dir(name)
            .and_then(|d| d.stat())
            .and_then(|st| {
                if made && st.uid != rustix::process::geteuid().as_raw() {
                    Err(io::Error::other(
                        "it was replaced by another user's folder during the restore",
                    ))
                } else {
                    Ok(st)
                }
            })
            .map_err(|e| {
                err(
                    path,
                    ErrorKind::Write,
                    format!("cannot open the folder made: {e}"),
                )
            })?;
        self.made
            .write()
            .expect("not poisoned")
            .insert(path.clone(), (st.dev, st.ino));
        Ok(())
    }

    /// Give `name` in `dir` to a new inode, replacing (with `--force`)
    /// what is there.
    fn place(&self, dir: &Dir, name: &[u8], link: impl Fn() -> io::Result<()>) -> io::Result<()> {
        match link() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.force => {
                dir.remove_all(name)?;
                link()
            }
            r => r,
        }
    }

    /// Copy one file or symlink into the target; the bytes copied.
    fn copy_item(&self, item: &Item) -> Result<u64, PathError> {
        let path = &item.path;
        let (tdir, tname) = self.target_parent(path).map_err(|e| {
            err(
                path,
                ErrorKind::Write,
                format!("cannot open its folder in the target: {e}"),
            )
        })?;
        let owner = (is_root() && item.has_owner).then_some((item.meta.uid, item.meta.gid));
        match item.meta.kind {
            Kind::Symlink => {
                let (link, shown) = self.backing.read_link(item)?;
                if let Some(want) = item.hash
                    && Hash::of(&link) != want
                {
                    return Err(err(
                        path,
                        ErrorKind::Corrupt,
                        format!(
                            "{}: the link's target does not match the recorded hash",
                            shown.display()
                        ),
                    ));
                }
                self.place(&tdir, tname, || tdir.symlink(&link, tname))
                    .map_err(|e| {
                        err(path, ErrorKind::Write, format!("cannot make the link: {e}"))
                    })?;
                tdir.set_link_meta(tname, owner, item.meta.mtime, item.meta.mtime)
                    .map_err(|e| {
                        err(
                            path,
                            ErrorKind::Write,
                            format!("cannot set the link's metadata: {e}"),
                        )
                    })?;
                Ok(0)
            }
            Kind::File => {
                let (src, shown) = self.backing.open_file(item)?;
                let st = fstat(&src).map_err(|e| err(path, ErrorKind::Read, e.to_string()))?;
                if st.file_type != FileTypeOf::File {
                    return Err(err(
                        path,
                        ErrorKind::Corrupt,
                        format!("{} is not a file", shown.display()),
                    ));
                }
                let out = tdir.tmpfile(0o600).map_err(|e| {
                    err(
                        path,
                        ErrorKind::Write,
                        format!("cannot create the file: {e}"),
                    )
                })?;
                let hash = copy_data(&src, &st, &out, &|n| self.progress.inc_bytes(n)).map_err(
                    |e| match e {
                        CopyError::Write(e) => {
                            err(path, ErrorKind::Write, format!("cannot write: {e}"))
                        }
                        e => err(path, ErrorKind::Read, format!("{}: {e}", shown.display())),
                    },
                )?;
                if let Some(want) = item.hash
                    && hash != want
                {
                    return Err(err(
                        path,
                        ErrorKind::Corrupt,
                        format!(
                            "{}: its content does not match the hash recorded for it ({}, now {}): \
                             not restored; `strata verify --deep` finds such damage",
                            shown.display(),
                            want.to_hex(),
                            hash.to_hex()
                        ),
                    ));
                }
                let stored_xattrs;
                let xattrs = match &item.xattrs {
                    Some(x) => x,
                    None => {
                        stored_xattrs = xattr::read_all(&src).unwrap_or_default();
                        &stored_xattrs
                    }
                };
                let (uid, gid) = match owner {
                    Some(o) => o,
                    None => {
                        if item.has_owner
                            && (item.meta.uid, item.meta.gid)
                                != (
                                    rustix::process::geteuid().as_raw(),
                                    rustix::process::getegid().as_raw(),
                                )
                        {
                            // Not root: reported once by `finish`.
                        }
                        (item.meta.uid, item.meta.gid)
                    }
                };
                finish(
                    &out,
                    &Finish {
                        mode: u32::from(item.meta.mode),
                        uid,
                        gid,
                        mtime: item.meta.mtime,
                        atime: item.meta.mtime,
                        xattrs,
                        fresh: true,
                    },
                    &self.degraded,
                )
                .map_err(|e| {
                    err(
                        path,
                        ErrorKind::Write,
                        format!("cannot set its metadata: {e}"),
                    )
                })?;
                self.place(&tdir, tname, || tdir.link_file(&out, tname))
                    .map_err(|e| {
                        err(
                            path,
                            ErrorKind::Write,
                            format!("cannot put it in the target: {e}"),
                        )
                    })?;
                Ok(st.size)
            }
            Kind::Dir => unreachable!("directories are made apart"),
        }
    }

    /// Another name of a restored hardlink group.
    fn link_item(&self, item: &Item, first: &RelPath) -> Result<(), PathError> {
        let path = &item.path;
        let (fdir, fname) = self.target_parent(first).map_err(|e| {
            err(
                path,
                ErrorKind::Write,
                format!("cannot open {first} in the target: {e}"),
            )
        })?;
        let (tdir, tname) = self.target_parent(path).map_err(|e| {
            err(
                path,
                ErrorKind::Write,
                format!("cannot open its folder in the target: {e}"),
            )
        })?;
        self.place(&tdir, tname, || fdir.link(fname, &tdir, tname))
            .map_err(|e| {
                err(
                    path,
                    ErrorKind::Write,
                    format!("cannot link it to {first}: {e}"),
                )
            })
    }

    /// A directory's metadata, once what it holds is in place.
    fn finish_dir(&self, item: &Item) -> Result<(), PathError> {
        let path = &item.path;
        let dir = self
            .target
            .open_dir(path.as_bytes())
            .and_then(|d| self.check_made(path, &d).map(|()| d))
            .map_err(|e| {
                err(
                    path,
                    ErrorKind::Write,
                    format!("cannot open the folder in the target: {e}"),
                )
            })?;
        let stored_xattrs;
        let xattrs = match &item.xattrs {
            Some(x) => x,
            None => {
                stored_xattrs = self.backing.dir_xattrs(path);
                &stored_xattrs
            }
        };
        let owner_known = item.has_owner;
        finish(
            &dir,
            &Finish {
                mode: u32::from(item.meta.mode),
                uid: if owner_known { item.meta.uid } else { 0 },
                gid: if owner_known { item.meta.gid } else { 0 },
                mtime: item.meta.mtime,
                atime: item.meta.mtime,
                xattrs,
                fresh: false,
            },
            &self.degraded,
        )
        .map_err(|e| {
            err(
                path,
                ErrorKind::Write,
                format!("cannot set the folder's metadata: {e}"),
            )
        })
    }
}
