//! Plan -> mirror + increment, on the shared pool.
//!
//! Takes a plan's changes ([`ChangeRef`]) and the paths they act on
//! ([`Target`]); returns one [`Outcome`] per change, in plan order. Two phases: removals first (so a
//! file replaced by a directory, or the reverse, has its path free), then
//! copies in parallel.
//!
//! The one rule that matters: a mirror file is never written, `chmod`ed or
//! `utime`d in place, because an increment may share its inode. A new
//! version is written to `.strata/tmp/`, given its mode and mtime there, and
//! renamed over the mirror path; a path the mirror does not have yet gets an
//! anonymous (`O_TMPFILE`) file in its directory, linked in when complete.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::diff::{ChangeRef, Op};
use crate::report::PathError;
use crate::scan::{EntryRef, Hash, Kind, Meta, RelPath};
use crate::store::meta::FileRecord;

/// Where a plan is applied.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The source tree.
    pub source: &'a Path,
    /// `mirror/`.
    pub mirror: PathBuf,
    /// The folder for temp files, on the mirror's filesystem.
    pub tmp: PathBuf,
    /// The increment being written (holds `track/` and `deleted/`).
    pub increment: PathBuf,
    /// Paths that already have an entry in the increment (carried over from
    /// an interrupted run): replace it rather than fail on it.
    pub carried: &'a HashSet<RelPath>,
    /// Test seam: source paths whose reading fails as if unreadable.
    pub fail_reading: &'a HashSet<RelPath>,
}

/// What happened to one change.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Done.
    Applied(Applied),
    /// Not done; the mirror keeps its previous version of the path.
    Failed(Box<PathError>),
}

/// A change carried out. Together with its [`ChangeRef`] it gives the
/// mirror's new state for the path and the increment's record; it holds
/// only what the change does not, as a first run has one per file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// What the increment recorded for the path (`None`: nothing, for an
    /// included-only file, or when a removed file was already gone).
    pub recorded: Option<Op>,
    /// Content hash of the mirror's new version: of the copy, or the old
    /// version's when nothing was copied.
    pub hash: Option<Hash>,
    /// The metadata of the copy when it is not the scan's (the file changed
    /// between the scan and the copy, and not during it).
    pub meta: Option<Box<Meta>>,
    /// The source was copied into the mirror.
    pub copied: bool,
    /// The increment got a copy because the filesystem refused a link.
    pub copied_not_linked: bool,
}

impl Applied {
    /// The mirror's new state for `change`'s path (`None`: removed).
    pub fn entry<'a>(&self, change: &ChangeRef<'a>) -> Option<EntryRef<'a>> {
        let mut entry = change.new?.view();
        if let Some(meta) = &self.meta {
            entry.meta = **meta;
        }
        entry.hash = self.hash;
        Some(entry)
    }

    /// What the increment records for `change`'s path.
    pub fn record(&self, change: &ChangeRef<'_>) -> Option<FileRecord> {
        match self.recorded? {
            Op::Deleted => Some(FileRecord::new(change.old.as_deref()?, Op::Deleted)),
            op => Some(FileRecord::new(&self.entry(change)?.to_entry(), op)),
        }
    }

    /// Bytes copied from the source.
    pub fn bytes(&self, change: &ChangeRef<'_>) -> u64 {
        match self.entry(change) {
            Some(e) if self.copied && e.meta.kind == Kind::File => e.meta.size,
            _ => 0,
        }
    }
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("cannot read: {0}")]
    Read(io::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("changed while being copied; kept the previous version")]
    Changed,
    #[error("vanished before it could be copied")]
    Vanished,
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Execute a plan's changes. Returns one outcome per change, in order.
pub fn apply(changes: &[ChangeRef<'_>], target: &Target<'_>) -> Vec<Outcome> {
    let removals: Vec<&ChangeRef<'_>> = changes.iter().filter(|c| c.op == Op::Deleted).collect();

    // Phase 1: removals, then the directories they leave empty.
    let removed: Vec<Outcome> = removals.par_iter().map(|c| remove(c, target)).collect();
    remove_empty_dirs(&target.mirror, removals.iter().map(|c| c.path()));

    // Phase 2: new and changed files. Directories are made when a file
    // first needs one (see `in_parent`), on the pool.
    let copied: Vec<Option<Outcome>> = changes
        .par_iter()
        .map(|c| (c.op != Op::Deleted).then(|| update(c, target)))
        .collect();
    let mut removed = removed.into_iter();
    copied
        .into_iter()
        .map(|o| o.unwrap_or_else(|| removed.next().expect("one outcome per removal")))
        .collect()
}

/// Run `op`, which creates `path`; when it fails because `path`'s directory
/// does not exist yet, make the directory (and those above it) and run it
/// again. Directories come into being as the files that need them do, in
/// parallel, and a run that changes files in existing directories makes no
/// directory calls at all.
///
/// Always once more after `NotFound`: the error may also mean that `op`'s
/// source is missing, and a directory seen to exist now may not have existed
/// when `op` ran (another thread just made it).
fn in_parent<T>(path: &Path, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match op() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(parent) = path.parent() else {
                return Err(e);
            };
            fs::create_dir_all(parent)?;
            op()
        }
        result => result,
    }
}

/// Remove directories below `base` that the removal of `paths` left empty,
/// deepest first. A directory that is not empty stays.
fn remove_empty_dirs<'a>(base: &Path, paths: impl Iterator<Item = &'a RelPath>) {
    let mut dirs = BTreeSet::new();
    for path in paths {
        let mut d = path.parent();
        while let Some(p) = d {
            d = p.parent();
            if !dirs.insert(p) {
                break;
            }
        }
    }
    let mut dirs: Vec<RelPath> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.as_bytes().iter().filter(|&&b| b == b'/').count()));
    for dir in dirs {
        let _ = fs::remove_dir(base.join(dir.as_path()));
    }
}

fn failed(path: &RelPath, message: impl Into<String>) -> Outcome {
    Outcome::Failed(Box::new(PathError {
        path: path.to_string(),
        message: message.into(),
    }))
}

/// Remove a path from the mirror: a tracked file moves into `deleted/`
/// (its last version), an included-only one is unlinked.
fn remove(change: &ChangeRef<'_>, target: &Target<'_>) -> Outcome {
    let old = change.old.as_deref().expect("a deletion has an old state");
    let mirror = target.mirror.join(old.path.as_path());
    let mut recorded = None;
    if old.tracked {
        let dest = target.increment.join("deleted").join(old.path.as_path());
        if target.carried.contains(&old.path) {
            clear_increment_entry(target, &old.path);
        }
        crate::fault::point();
        match in_parent(&dest, || fs::rename(&mirror, &dest)) {
            Ok(()) => recorded = Some(Op::Deleted),
            // Already gone from the mirror: nothing to keep, nothing lost
            // (its version is in the increment that brought it).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return failed(
                    &old.path,
                    format!(
                        "cannot move {} to {}: {e}",
                        mirror.display(),
                        dest.display()
                    ),
                );
            }
        }
    } else if let Err(e) = {
        crate::fault::point();
        fs::remove_file(&mirror)
    } && e.kind() != io::ErrorKind::NotFound
    {
        return failed(
            &old.path,
            format!("cannot remove {}: {e}", mirror.display()),
        );
    }
    Outcome::Applied(Applied {
        recorded,
        hash: None,
        meta: None,
        copied: false,
        copied_not_linked: false,
    })
}

/// Bring a new or changed path into the mirror, and into the increment when
/// it is tracked.
fn update(change: &ChangeRef<'_>, target: &Target<'_>) -> Outcome {
    let new = change.new.expect("an update has a new state");
    let path = &new.path;
    let mirror = target.mirror.join(path.as_path());
    let history = change.history_op();
    // Replace what an interrupted run recorded for this path only when this
    // run records something else for it.
    if history.is_some() && target.carried.contains(path) {
        clear_increment_entry(target, path);
    }
    let mut copied_not_linked = false;
    // Leaving the tracked set: the current mirror version is the last one;
    // keep it in deleted/ before anything replaces it.
    if history == Some(Op::Deleted) {
        let old = change
            .old
            .as_ref()
            .expect("leaving the tracked set needs an old state");
        let dest = target.increment.join("deleted").join(path.as_path());
        match link_or_copy(&mirror, &dest, old.meta.kind) {
            Ok(copied) => copied_not_linked |= copied,
            Err(e) => return failed(path, format!("cannot keep last version: {e}")),
        }
    }
    let mut applied = Applied {
        recorded: history,
        hash: change.old.as_ref().and_then(|o| o.hash),
        meta: None,
        copied: false,
        copied_not_linked: false,
    };
    let mut kind = new.meta.kind;
    if change.needs_copy() {
        let source = target.source.join(path.as_path());
        let result = if target.fail_reading.contains(path) {
            Err(CopyError::Read(io::Error::from_raw_os_error(libc::EACCES)))
        } else {
            match (change.op, new.meta.kind) {
                (Op::New, Kind::File) => copy_in_new(&source, &target.tmp, &mirror),
                _ => copy_in(&source, new.meta.kind, &target.tmp, &mirror),
            }
        };
        match result {
            Ok((meta, hash)) => {
                applied.hash = Some(hash);
                applied.copied = true;
                if meta != new.meta {
                    applied.meta = Some(Box::new(meta));
                }
                kind = meta.kind;
            }
            Err(e) => {
                if history == Some(Op::Deleted) {
                    let _ = fs::remove_file(target.increment.join("deleted").join(path.as_path()));
                }
                return failed(path, e.to_string());
            }
        }
    }
    if let Some(Op::New | Op::Changed) = history {
        let dest = target.increment.join("track").join(path.as_path());
        match link_or_copy(&mirror, &dest, kind) {
            Ok(copied) => copied_not_linked |= copied,
            Err(e) => {
                return failed(path, format!("cannot record in increment: {e}"));
            }
        }
    }
    applied.copied_not_linked = copied_not_linked;
    Outcome::Applied(applied)
}

/// Remove what an interrupted run left in the increment for `path`.
fn clear_increment_entry(target: &Target<'_>, path: &RelPath) {
    for part in ["track", "deleted"] {
        let _ = fs::remove_file(target.increment.join(part).join(path.as_path()));
    }
}

/// Hardlink `from` at `to`; when the filesystem refuses (EMLINK, EXDEV,
/// EPERM on filesystems without links), copy instead. Returns whether it
/// copied.
fn link_or_copy(from: &Path, to: &Path, kind: Kind) -> io::Result<bool> {
    crate::fault::point();
    match in_parent(to, || fs::hard_link(from, to)) {
        Ok(()) => Ok(false),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EMLINK | libc::EXDEV | libc::EPERM | libc::EOPNOTSUPP)
            ) =>
        {
            let tmp = to.with_extension("strata-tmp");
            copy_in(from, kind, to.parent().unwrap_or(Path::new(".")), &tmp)
                .map_err(|e| io::Error::other(e.to_string()))?;
            fs::rename(&tmp, to)?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn tmp_path(dir: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{}-{n}.tmp", std::process::id()))
}

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

/// Copy `source` (a file or a symlink, never followed) to a temp file in
/// `tmp_dir`, give it the source's mode, owner (as root) and mtime, check
/// that the source did not change meanwhile, and rename it to `dest`.
/// Returns the metadata and hash of what was copied.
fn copy_in(
    source: &Path,
    kind: Kind,
    tmp_dir: &Path,
    dest: &Path,
) -> Result<(Meta, Hash), CopyError> {
    let tmp = tmp_path(tmp_dir);
    let result = match kind {
        Kind::File => copy_file(source, &tmp),
        Kind::Symlink => copy_symlink(source, &tmp),
    };
    match result {
        Ok(done) => {
            crate::fault::point();
            if let Err(e) = in_parent(dest, || fs::rename(&tmp, dest)) {
                let _ = fs::remove_file(&tmp);
                return Err(write_err(dest)(e));
            }
            Ok(done)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn read_error(e: io::Error) -> CopyError {
    match e.kind() {
        io::ErrorKind::NotFound => CopyError::Vanished,
        _ if e.raw_os_error() == Some(libc::ELOOP) => CopyError::Changed,
        _ => CopyError::Read(e),
    }
}

fn copy_file(source: &Path, tmp: &Path) -> Result<(Meta, Hash), CopyError> {
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
    };
    copy_file_with(source, create, tmp).map(|(_, meta, hash)| (meta, hash))
}

/// Copy the regular file `source` into the file that `create` makes (a new,
/// unshared inode), check that the source did not change meanwhile, and give
/// the copy the source's mode, owner (as root) and mtime. `what` names the
/// copy in errors. Returns the copy, still open, with the metadata and hash
/// of what was copied.
fn copy_file_with(
    source: &Path,
    create: impl FnOnce() -> io::Result<File>,
    what: &Path,
) -> Result<(File, Meta, Hash), CopyError> {
    let mut src = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(source)
        .map_err(read_error)?;
    let before = src.metadata().map_err(CopyError::Read)?;
    let meta = Meta::from_metadata(&before).ok_or(CopyError::Changed)?;
    if meta.kind != Kind::File {
        return Err(CopyError::Changed);
    }
    let mut out = create().map_err(write_err(what))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut total = 0u64;
    BUFFER.with(|buf| -> Result<(), CopyError> {
        let buf = &mut buf.borrow_mut()[..];
        loop {
            let n = match src.read(buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(write_err(what))?;
            if total == 0 {
                // Mid-copy: the copy exists, half written.
                crate::fault::point();
            }
            total += n as u64;
        }
    })?;
    let after = src.metadata().map_err(CopyError::Read)?;
    if Meta::from_metadata(&after) != Some(meta) || total != meta.size {
        return Err(CopyError::Changed);
    }
    finish_file(&out, &before, what)?;
    Ok((out, meta, Hash(hasher.digest128().to_be_bytes())))
}

/// Copy the regular file `source` to `dest`, a mirror path the index says
/// is free, without a temp name: the copy is an anonymous `O_TMPFILE` inode
/// in `dest`'s directory, linked in once complete (mode and mtime set).
/// Nothing half-written is ever visible, there is no rename (a cross-directory
/// rename serializes on a per-filesystem lock), and the inode is allocated
/// near its directory rather than near `.strata/tmp/`. When the filesystem
/// has no `O_TMPFILE`, or `dest` exists after all, it takes the
/// [`copy_in`] way (a named temp file renamed over `dest`).
fn copy_in_new(source: &Path, tmp_dir: &Path, dest: &Path) -> Result<(Meta, Hash), CopyError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let create = || {
        in_parent(dest, || {
            OpenOptions::new()
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_TMPFILE)
                .open(dir)
        })
    };
    let (out, meta, hash) = match copy_file_with(source, create, dest) {
        Ok(done) => done,
        Err(CopyError::Write { source: e, .. })
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            return copy_in(source, Kind::File, tmp_dir, dest);
        }
        Err(e) => return Err(e),
    };
    crate::fault::point();
    match link_fd(&out, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Not in the index but in the mirror (left by an interrupted
            // run): replace it the usual way.
            let tmp = tmp_path(tmp_dir);
            link_fd(&out, &tmp).map_err(write_err(&tmp))?;
            if let Err(e) = fs::rename(&tmp, dest) {
                let _ = fs::remove_file(&tmp);
                return Err(write_err(dest)(e));
            }
        }
        Err(e) => return Err(write_err(dest)(e)),
    }
    Ok((meta, hash))
}

/// Give the open, unlinked (`O_TMPFILE`) `file` the name `to`.
fn link_fd(file: &File, to: &Path) -> io::Result<()> {
    let to = std::ffi::CString::new(to.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fd = file.as_raw_fd();
    // SAFETY: fd is an open file we own; both paths are valid C strings
    // that outlive the calls.
    let rc = unsafe {
        libc::linkat(
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOENT) {
        return Err(err);
    }
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link does not.
    let proc = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
    // SAFETY: as above.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mode, owner and mtime on the new (unshared) temp file, through its fd.
fn finish_file(out: &File, source: &fs::Metadata, tmp: &Path) -> Result<(), CopyError> {
    let fd = out.as_raw_fd();
    let mode = source.mode() & 0o7777;
    // SAFETY: fd is an open file we own; the calls take plain integers and a
    // pointer to a two-element timespec array that lives for the call.
    unsafe {
        if is_root() && libc::fchown(fd, source.uid(), source.gid()) != 0 {
            return Err(write_err(tmp)(io::Error::last_os_error()));
        }
        if libc::fchmod(fd, mode) != 0 {
            return Err(write_err(tmp)(io::Error::last_os_error()));
        }
        let times = [
            libc::timespec {
                tv_sec: source.atime(),
                tv_nsec: source.atime_nsec(),
            },
            libc::timespec {
                tv_sec: source.mtime(),
                tv_nsec: source.mtime_nsec(),
            },
        ];
        if libc::futimens(fd, times.as_ptr()) != 0 {
            return Err(write_err(tmp)(io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn copy_symlink(source: &Path, tmp: &Path) -> Result<(Meta, Hash), CopyError> {
    let before = fs::symlink_metadata(source).map_err(read_error)?;
    let meta = Meta::from_metadata(&before).ok_or(CopyError::Changed)?;
    if meta.kind != Kind::Symlink {
        return Err(CopyError::Changed);
    }
    let link = fs::read_link(source).map_err(read_error)?;
    std::os::unix::fs::symlink(&link, tmp).map_err(write_err(tmp))?;
    let after = fs::symlink_metadata(source).map_err(read_error)?;
    if Meta::from_metadata(&after) != Some(meta) {
        return Err(CopyError::Changed);
    }
    set_symlink_times(tmp, &before).map_err(write_err(tmp))?;
    if is_root() {
        std::os::unix::fs::lchown(tmp, Some(before.uid()), Some(before.gid()))
            .map_err(write_err(tmp))?;
    }
    Ok((meta, Hash::of(link.as_os_str().as_bytes())))
}

/// Set a symlink's own times (not its target's).
pub fn set_symlink_times(path: &Path, source: &fs::Metadata) -> io::Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let times = [
        libc::timespec {
            tv_sec: source.atime(),
            tv_nsec: source.atime_nsec(),
        },
        libc::timespec {
            tv_sec: source.mtime(),
            tv_nsec: source.mtime_nsec(),
        },
    ];
    // SAFETY: a valid C string and a two-element timespec array that outlive
    // the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Copy a file or symlink from `from` to a new path `to` (which must not
/// exist), preserving mode and mtime, without linking. Used by restore.
pub fn copy_out(from: &Path, kind: Kind, to: &Path) -> io::Result<(Meta, Hash)> {
    let dir = to.parent().unwrap_or(Path::new("."));
    copy_in(from, kind, dir, to).map_err(|e| io::Error::other(e.to_string()))
}
