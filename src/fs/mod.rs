//! The one I/O layer: every path below a root is opened beneath that root's
//! directory descriptor, never re-resolved by name.
//!
//! A backup runner runs as root over trees that users own. A path string
//! joined onto a root and opened later can meet a symlink swapped in
//! between (`O_NOFOLLOW` guards only the last component). So every tree
//! strata touches — the source, the destination, a restore target — is a
//! [`Dir`]: an open directory descriptor. A relative path below it is
//! resolved in the kernel with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` (Linux ≥ 5.6), or, where that call is missing or
//! filtered, component by component with `openat(O_NOFOLLOW |
//! O_DIRECTORY)`. Either way a symlink anywhere on the way is an error
//! (`ELOOP`), never followed, and a `..` (or `.`, or empty) component is
//! refused (`EXDEV`), so nothing climbs out. The last component is then
//! acted on by name *in its parent's descriptor* (`renameat`, `linkat`,
//! `unlinkat`, `mkdirat`, `symlinkat`, `fstatat` with
//! `AT_SYMLINK_NOFOLLOW`), which never follows it either. Metadata comes
//! from descriptors (`fstat`, `fgetxattr`), and is set on them (`fchown`,
//! `fchmod`, `futimens`, `fsetxattr`) before a new inode gets its name.
//!
//! The syscalls come from `rustix`: safe, typed wrappers of exactly these
//! calls (`openat2` with its resolve flags, `getdents64`, the `*at` family,
//! `O_TMPFILE`, xattrs on descriptors, `SEEK_DATA`), where `std` has none
//! and raw `libc` would need `unsafe` at every call.
//!
//! Paths longer than `PATH_MAX` work: a long relative path is resolved in
//! pieces, each below the limit.

pub mod copy;
pub mod xattr;

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};

use crate::entry::{ChangeTime, Kind, Meta, Timestamp, link_key};

/// The longest relative path handed to one `openat2` call; a longer one is
/// resolved in pieces (PATH_MAX is 4096 with the NUL).
const CHUNK: usize = 3072;

/// Whether `openat2` works here (0 unknown, 1 yes, 2 no).
static OPENAT2: AtomicU8 = AtomicU8::new(0);

/// Test seam: take the component-by-component way even where `openat2`
/// works, so that both ways are tested on one machine.
pub fn force_component_walk(on: bool) {
    OPENAT2.store(if on { 2 } else { 0 }, Ordering::Relaxed);
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// `openat` for reading with `O_NOATIME`, so that what strata reads keeps
/// its access time (a mail reader that compares a mailbox's atime with its
/// mtime still sees new mail after a backup, as with rsync's
/// `--open-noatime`), and no read dirties an inode of the source. The
/// kernel allows the flag to the file's owner and to root; for a file of
/// another owner (`EPERM`) the open is made again without it.
fn open_noatime(dir: BorrowedFd<'_>, name: &std::ffi::CStr, flags: OFlags) -> io::Result<OwnedFd> {
    match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => {
            rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(errno)
        }
        other => other.map_err(errno),
    }
}

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Whether the process runs as root (and so keeps owners). Asked once.
pub fn is_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| rustix::process::geteuid().is_root())
}

/// The owner and group a new inode of this process gets. Asked once.
fn own_ids() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    })
}

/// What `fstat`/`fstatat` said about an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The file type.
    pub file_type: FileTypeOf,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Inode change time.
    pub ctime: ChangeTime,
    /// Access time.
    pub atime: Timestamp,
    /// Device.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Number of names.
    pub nlink: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
}

/// The kinds of inode strata tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTypeOf {
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A directory.
    Dir,
    /// A socket, FIFO or device: skipped.
    Special,
}

impl Stat {
    fn of(st: &rustix::fs::Stat) -> Stat {
        let file_type = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => FileTypeOf::File,
            FileType::Symlink => FileTypeOf::Symlink,
            FileType::Directory => FileTypeOf::Dir,
            _ => FileTypeOf::Special,
        };
        let ts = |sec: i64, nsec: i64| Timestamp {
            sec,
            nsec: nsec.clamp(0, 999_999_999) as u32,
        };
        Stat {
            file_type,
            mode: st.st_mode & 0o7777,
            size: st.st_size as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: ts(st.st_mtime, st.st_mtime_nsec as i64),
            ctime: ts(st.st_ctime, st.st_ctime_nsec as i64).into(),
            atime: ts(st.st_atime, st.st_atime_nsec as i64),
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            blocks: st.st_blocks as u64,
        }
    }

    /// The entry kind, `None` for special files.
    pub fn kind(&self) -> Option<Kind> {
        match self.file_type {
            FileTypeOf::File => Some(Kind::File),
            FileTypeOf::Symlink => Some(Kind::Symlink),
            FileTypeOf::Dir => Some(Kind::Dir),
            FileTypeOf::Special => None,
        }
    }

    /// The metadata a backup compares, `None` for special files.
    pub fn meta(&self) -> Option<Meta> {
        let kind = self.kind()?;
        Some(Meta {
            kind,
            size: if kind == Kind::Dir { 0 } else { self.size },
            mtime: self.mtime,
            // The permission bits, setuid, setgid and sticky: 12 bits.
            mode: (self.mode & 0o7777) as u16,
            uid: self.uid,
            gid: self.gid,
            link: link_key(self.dev, self.ino, self.nlink, kind),
        })
    }

    /// Same inode.
    pub fn same_inode(&self, other: &Stat) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

/// `fstat` of any descriptor.
pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    rustix::fs::fstat(fd).map(|s| Stat::of(&s)).map_err(errno)
}

/// An open directory: the handle every operation below it goes through.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A directory borrowed (the handle itself, for a path directly in it) or
/// opened for the call (its parent, for a deeper path).
#[derive(Debug)]
pub enum DirRef<'a> {
    /// The handle itself.
    Borrowed(&'a Dir),
    /// A directory opened beneath it.
    Owned(Dir),
}

impl std::ops::Deref for DirRef<'_> {
    type Target = Dir;
    fn deref(&self) -> &Dir {
        match self {
            DirRef::Borrowed(d) => d,
            DirRef::Owned(d) => d,
        }
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl Dir {
    /// Open a root directory by its path: the one place a path is resolved
    /// by name. A root is configuration (a job's source or destination, a
    /// restore target), so symlinks on the way to it are followed, as the
    /// administrator wrote it.
    pub fn open_root(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(Dir { fd })
    }

    /// Wrap an open directory descriptor.
    pub fn from_fd(fd: OwnedFd) -> Dir {
        Dir { fd }
    }

    /// Another handle on the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
        })
    }

    /// The directory's own metadata.
    pub fn stat(&self) -> io::Result<Stat> {
        fstat(&self.fd)
    }

    /// Open the directory at `rel` beneath this one, following no symlink
    /// on the way (an error, `ELOOP` or `ENOTDIR`, when there is one).
    pub fn open_dir(&self, rel: &[u8]) -> io::Result<Dir> {
        if rel.is_empty() {
            return self.try_clone();
        }
        let mut base: DirRef<'_> = DirRef::Borrowed(self);
        let mut rest = rel;
        while !rest.is_empty() {
            let (piece, tail) = split_chunk(rest);
            let fd = open_beneath(base.as_fd(), piece, DIR_FLAGS)?;
            base = DirRef::Owned(Dir { fd });
            rest = tail;
        }
        match base {
            DirRef::Owned(d) => Ok(d),
            DirRef::Borrowed(d) => d.try_clone(),
        }
    }

    /// The parent directory of `rel` (opened beneath this one, or this one
    /// itself) and `rel`'s last component. `rel` must not be empty.
    pub fn parent_of<'p>(&self, rel: &'p [u8]) -> io::Result<(DirRef<'_>, &'p [u8])> {
        match rel.iter().rposition(|&b| b == b'/') {
            None => Ok((DirRef::Borrowed(self), rel)),
            Some(i) => Ok((DirRef::Owned(self.open_dir(&rel[..i])?), &rel[i + 1..])),
        }
    }

    /// Open the directory `name` directly in this one, never following a
    /// symlink.
    pub fn child_dir(&self, name: &[u8]) -> io::Result<Dir> {
        let fd = rustix::fs::openat(&self.fd, cstr(name)?.as_c_str(), DIR_FLAGS, Mode::empty())
            .map_err(errno)?;
        Ok(Dir { fd })
    }

    /// `fstatat(name, AT_SYMLINK_NOFOLLOW)`.
    pub fn stat_at(&self, name: &[u8]) -> io::Result<Stat> {
        rustix::fs::statat(&self.fd, cstr(name)?.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map(|s| Stat::of(&s))
            .map_err(errno)
    }

    /// Open `name` for reading, never following a symlink and never
    /// blocking on a FIFO swapped in; the caller checks with `fstat` that
    /// it is what it expects.
    pub fn open_read(&self, name: &[u8]) -> io::Result<File> {
        let fd = open_noatime(
            self.fd.as_fd(),
            cstr(name)?.as_c_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        )?;
        Ok(File::from(fd))
    }

    /// Open the regular file at `rel` beneath this directory for reading
    /// (no symlink anywhere on the way, nor at the end); fails with an
    /// `Other` error ("not a regular file") if it is something else.
    pub fn open_file(&self, rel: &[u8]) -> io::Result<(File, Stat)> {
        let (dir, name) = self.parent_of(rel)?;
        let file = dir.open_read(name)?;
        let st = fstat(&file)?;
        if st.file_type != FileTypeOf::File {
            return Err(io::Error::other("not a regular file"));
        }
        Ok((file, st))
    }

    /// The target of the symlink `name`.
    pub fn read_link(&self, name: &[u8]) -> io::Result<Vec<u8>> {
        rustix::fs::readlinkat(&self.fd, cstr(name)?.as_c_str(), Vec::new())
            .map(|s| s.into_bytes())
            .map_err(errno)
    }

    /// The names in this directory with their `d_type` (`.` and `..` left
    /// out), in the order the filesystem gives them.
    pub fn entries(&self) -> io::Result<Vec<(Vec<u8>, FileType)>> {
        // getdents reads from the descriptor's offset: a fresh descriptor
        // of the same directory, so that reading twice (or from two
        // threads) is safe.
        let fd = open_noatime(self.fd.as_fd(), c".", DIR_FLAGS)?;
        let mut buf = Vec::with_capacity(32 * 1024);
        let mut iter = rustix::fs::RawDir::new(&fd, buf.spare_capacity_mut());
        let mut out = Vec::new();
        while let Some(entry) = iter.next() {
            let entry = entry.map_err(errno)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push((name.to_vec(), entry.file_type()));
        }
        Ok(out)
    }

    /// `mkdirat(name, mode)`.
    pub fn mkdir(&self, name: &[u8], mode: u32) -> io::Result<()> {
        rustix::fs::mkdirat(&self.fd, cstr(name)?.as_c_str(), Mode::from_raw_mode(mode))
            .map_err(errno)
    }

    /// Open the directory at `rel`, creating what is missing on the way
    /// (with `mode`), never following a symlink: a component that exists
    /// and is not a directory is an error.
    pub fn create_dirs(&self, rel: &[u8], mode: u32) -> io::Result<Dir> {
        match self.open_dir(rel) {
            Ok(d) => return Ok(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut dir = self.try_clone()?;
        for name in rel.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            match dir.mkdir(name, mode) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            dir = dir.child_dir(name)?;
        }
        Ok(dir)
    }

    /// A new anonymous file (`O_TMPFILE`) in this directory, mode `mode`:
    /// it has no name until [`Dir::link_file`] gives it one.
    pub fn tmpfile(&self, mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            c".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Give the anonymous `file` the name `name` here (fails if it exists).
    pub fn link_file(&self, file: &File, name: &[u8]) -> io::Result<()> {
        let name = cstr(name)?;
        match rustix::fs::linkat(file, c"", &self.fd, name.as_c_str(), AtFlags::EMPTY_PATH) {
            Ok(()) => Ok(()),
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc link
            // does not.
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::PERM) => {
                use std::os::fd::AsRawFd;
                let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
                rustix::fs::linkat(
                    rustix::fs::CWD,
                    proc.as_str(),
                    &self.fd,
                    name.as_c_str(),
                    AtFlags::SYMLINK_FOLLOW,
                )
                .map_err(errno)
            }
            Err(e) => Err(errno(e)),
        }
    }

    /// Hardlink `name` (never following it) as `to_name` in `to`.
    pub fn link(&self, name: &[u8], to: &Dir, to_name: &[u8]) -> io::Result<()> {
        rustix::fs::linkat(
            &self.fd,
            cstr(name)?.as_c_str(),
            &to.fd,
            cstr(to_name)?.as_c_str(),
            AtFlags::empty(),
        )
        .map_err(errno)
    }

    /// Rename `name` to `to_name` in `to`, replacing what is there (a file,
    /// or an empty directory for a directory).
    pub fn rename(&self, name: &[u8], to: &Dir, to_name: &[u8]) -> io::Result<()> {
        rustix::fs::renameat(
            &self.fd,
            cstr(name)?.as_c_str(),
            &to.fd,
            cstr(to_name)?.as_c_str(),
        )
        .map_err(errno)
    }

    /// Rename `name` to `to_name` in `to`, failing if it exists.
    pub fn rename_noreplace(&self, name: &[u8], to: &Dir, to_name: &[u8]) -> io::Result<()> {
        rustix::fs::renameat_with(
            &self.fd,
            cstr(name)?.as_c_str(),
            &to.fd,
            cstr(to_name)?.as_c_str(),
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(errno)
    }

    /// Remove the non-directory `name`.
    pub fn unlink(&self, name: &[u8]) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, cstr(name)?.as_c_str(), AtFlags::empty()).map_err(errno)
    }

    /// Remove the empty directory `name`.
    pub fn rmdir(&self, name: &[u8]) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, cstr(name)?.as_c_str(), AtFlags::REMOVEDIR).map_err(errno)
    }

    /// Remove `name`, whatever it is, and everything below it, never
    /// following a symlink. Missing is fine.
    pub fn remove_all(&self, name: &[u8]) -> io::Result<()> {
        match self.stat_at(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(st) if st.file_type == FileTypeOf::Dir => {
                let dir = self.child_dir(name)?;
                for (child, _) in dir.entries()? {
                    dir.remove_all(&child)?;
                }
                drop(dir);
                match self.rmdir(name) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    r => r,
                }
            }
            Ok(_) => match self.unlink(name) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
        }
    }

    /// Make the symlink `name` pointing at `target`.
    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        rustix::fs::symlinkat(cstr(target)?.as_c_str(), &self.fd, cstr(name)?.as_c_str())
            .map_err(errno)
    }

    /// Set the owner (when given) and times of the symlink `name` itself.
    pub fn set_link_meta(
        &self,
        name: &[u8],
        owner: Option<(u32, u32)>,
        mtime: Timestamp,
        atime: Timestamp,
    ) -> io::Result<()> {
        let name = cstr(name)?;
        if let Some((uid, gid)) = owner {
            let (uid, gid) = (
                rustix::process::Uid::from_raw(uid),
                rustix::process::Gid::from_raw(gid),
            );
            rustix::fs::chownat(
                &self.fd,
                name.as_c_str(),
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
        }
        rustix::fs::utimensat(
            &self.fd,
            name.as_c_str(),
            &timestamps(mtime, atime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno)
    }

    /// fsync the directory (renames and links in it become durable).
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(errno)
    }

    /// Flush the whole filesystem that holds this directory (`syncfs`).
    pub fn sync_filesystem(&self) -> io::Result<()> {
        rustix::fs::syncfs(&self.fd).map_err(errno)
    }

    /// Write `bytes` to `name` atomically: an anonymous file in `tmp`,
    /// fsync, a name in `tmp` (`tmp_name`), renamed over `name` here, fsync
    /// of this directory. `tmp` must be on this filesystem and be a folder
    /// that recovery empties.
    pub fn write_atomic(
        &self,
        name: &[u8],
        tmp: &Dir,
        tmp_name: &[u8],
        write: impl FnOnce(&mut dyn io::Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let file = tmp.tmpfile(0o600)?;
        {
            let mut out = io::BufWriter::with_capacity(256 * 1024, &file);
            write(&mut out)?;
            io::Write::flush(&mut out)?;
        }
        file.sync_all()?;
        let _ = tmp.unlink(tmp_name);
        tmp.link_file(&file, tmp_name)?;
        if let Err(e) = tmp.rename(tmp_name, self, name) {
            let _ = tmp.unlink(tmp_name);
            return Err(e);
        }
        self.sync()
    }

    /// Read the whole file `name` (in this directory), if it exists.
    pub fn read(&self, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let file = match self.open_read(name) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if fstat(&file)?.file_type != FileTypeOf::File {
            return Err(io::Error::other("not a regular file"));
        }
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut &file, &mut bytes)?;
        Ok(Some(bytes))
    }
}

/// Every entry below `root` (directories too, and `root` itself as the
/// empty path), with its `lstat`, sorted by path. Never follows a symlink;
/// each directory is read from its own descriptor.
pub fn walk_tree(root: &Dir) -> io::Result<Vec<(crate::entry::RelPath, Stat)>> {
    use crate::entry::RelPath;
    fn visit(dir: &Dir, rel: &RelPath, out: &mut Vec<(RelPath, Stat)>) -> io::Result<()> {
        for (name, _) in dir.entries()? {
            let path = rel.join(&name);
            let st = match dir.stat_at(&name) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push((path.clone(), st));
            if st.file_type == FileTypeOf::Dir {
                let child = dir.child_dir(&name)?;
                visit(&child, &path, out)?;
            }
        }
        Ok(())
    }
    let mut out = vec![(RelPath::root(), root.stat()?)];
    visit(root, &RelPath::root(), &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The content hash of the file or symlink `name` in `dir` (a symlink: of
/// its target's text), never following it.
pub fn hash_in(dir: &Dir, name: &[u8], kind: Kind) -> io::Result<crate::entry::Hash> {
    match kind {
        Kind::Symlink => Ok(crate::entry::Hash::of(&dir.read_link(name)?)),
        Kind::File => {
            let file = dir.open_read(name)?;
            if fstat(&file)?.file_type != FileTypeOf::File {
                return Err(io::Error::other("not a regular file"));
            }
            copy::hash_file(&file)
        }
        Kind::Dir => Err(io::Error::other("a directory has no content hash")),
    }
}

/// The content hash of the entry at `rel` below `root`.
pub fn hash_at(
    root: &Dir,
    rel: &crate::entry::RelPath,
    kind: Kind,
) -> io::Result<crate::entry::Hash> {
    let (dir, name) = root.parent_of(rel.as_bytes())?;
    hash_in(&dir, name, kind)
}

/// Split a relative path into a first piece of at most [`CHUNK`] bytes
/// (cut at a `/`) and the rest.
fn split_chunk(rel: &[u8]) -> (&[u8], &[u8]) {
    if rel.len() <= CHUNK {
        return (rel, &[]);
    }
    match rel[..CHUNK].iter().rposition(|&b| b == b'/') {
        Some(i) if i > 0 => (&rel[..i], &rel[i + 1..]),
        // One component longer than a chunk: NAME_MAX makes that
        // impossible on Linux, and the kernel says so.
        _ => (rel, &[]),
    }
}

/// Open `rel` beneath `base` with no symlink on the way or at the end.
fn open_beneath(base: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    // `..` never, even where it would stay beneath: a path below a root
    // names what is below it, nothing else.
    if rel
        .split(|&b| b == b'/')
        .any(|p| p.is_empty() || p == b"." || p == b"..")
    {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    let path = OsStr::from_bytes(rel);
    if OPENAT2.load(Ordering::Relaxed) != 2 {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(base, path, flags, Mode::empty(), resolve) {
            Ok(fd) => {
                OPENAT2.store(1, Ordering::Relaxed);
                return Ok(fd);
            }
            // Not there, or filtered by a seccomp policy: the old way.
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM)
                if OPENAT2.load(Ordering::Relaxed) == 0 =>
            {
                OPENAT2.store(2, Ordering::Relaxed);
            }
            Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(errno(e)),
        }
    }
    open_components(base, rel, flags)
}

/// The portable way: one `openat(O_NOFOLLOW)` per component, each from the
/// one before, refusing `..` and `.` so that nothing climbs out.
fn open_components(base: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    let mut current: Option<OwnedFd> = None;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || *part == b"." || *part == b".." {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        let last = i + 1 == parts.len();
        let f = if last {
            flags | OFlags::NOFOLLOW
        } else {
            DIR_FLAGS
        };
        let dirfd = match &current {
            Some(fd) => fd.as_fd(),
            None => base,
        };
        let fd =
            rustix::fs::openat(dirfd, cstr(part)?.as_c_str(), f, Mode::empty()).map_err(errno)?;
        current = Some(fd);
    }
    current.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

fn timestamps(mtime: Timestamp, atime: Timestamp) -> Timestamps {
    let ts = |t: Timestamp| Timespec {
        tv_sec: t.sec,
        tv_nsec: t.nsec as _,
    };
    Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    }
}

/// What an operation on one inode could not keep, reported once per run
/// (not per file) and never failing the job: owners as a non-root user,
/// xattrs a filesystem refuses.
#[derive(Debug, Default)]
pub struct Degraded {
    owner: AtomicBool,
    xattrs_unsupported: AtomicBool,
    xattrs_denied: AtomicBool,
}

impl Degraded {
    /// The one-line warnings, in a fixed order.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.owner.load(Ordering::Relaxed) {
            out.push(
                "owners and groups were not kept: strata is not running as root (they are \
                 recorded, and a restore as root sets them)"
                    .into(),
            );
        }
        if self.xattrs_unsupported.load(Ordering::Relaxed) {
            out.push(
                "the destination's filesystem does not support extended attributes: they \
                 are recorded in the increments but not set on the copies"
                    .into(),
            );
        }
        if self.xattrs_denied.load(Ordering::Relaxed) {
            out.push(
                "some extended attributes could not be set (not permitted): they are \
                 recorded in the increments but not on the copies"
                    .into(),
            );
        }
        out
    }
}

/// The metadata to give a new inode.
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    /// Mode bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time.
    pub atime: Timestamp,
    /// Extended attributes to set.
    pub xattrs: &'a crate::entry::Xattrs,
    /// The inode is new (made by this process, with no xattrs yet): no
    /// owner to change where it is already ours, no xattrs to remove.
    pub fresh: bool,
}

/// Give the inode behind `fd` (a new file, or a directory strata owns) its
/// owner (as root), xattrs, mode and times, in the order that keeps each:
/// `chown` clears setuid bits and capabilities, so it goes first; `chmod`
/// after the ACL xattrs, which it must agree with.
pub fn finish(fd: impl AsFd, f: &Finish<'_>, degraded: &Degraded) -> io::Result<()> {
    let fd = fd.as_fd();
    let ours = own_ids() == (f.uid, f.gid);
    if is_root() {
        if !(f.fresh && ours) {
            let (uid, gid) = (
                rustix::process::Uid::from_raw(f.uid),
                rustix::process::Gid::from_raw(f.gid),
            );
            rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(errno)?;
        }
    } else if !ours {
        degraded.owner.store(true, Ordering::Relaxed);
    }
    if f.fresh {
        xattr::set_new(fd, f.xattrs, degraded)?;
    } else {
        xattr::set_all(fd, f.xattrs, degraded)?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(f.mode)).map_err(errno)?;
    rustix::fs::futimens(fd, &timestamps(f.mtime, f.atime)).map_err(errno)
}

/// Raise the soft limit of open descriptors to the hard limit: the walk
/// holds a descriptor per directory level in progress on each thread.
pub fn raise_fd_limit() {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(max) = limit.maximum
        && limit.current.is_some_and(|c| c < max)
    {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret"), b"s").unwrap();
        std::os::unix::fs::symlink("../outside", dir.path().join("a/link")).unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("a/b/flink")).unwrap();
        dir
    }

    fn both_ways(test: impl Fn()) {
        force_component_walk(false);
        test();
        force_component_walk(true);
        test();
        force_component_walk(false);
    }

    #[test]
    fn no_symlink_is_followed_on_the_way() {
        let t = tree();
        both_ways(|| {
            let root = Dir::open_root(t.path()).unwrap();
            assert!(root.open_dir(b"a/b").is_ok());
            assert!(root.open_file(b"a/b/f").is_ok());
            let err = root.open_dir(b"a/link").unwrap_err();
            assert!(
                matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
                "{err}"
            );
            assert!(root.open_file(b"a/link/secret").is_err());
            assert!(root.open_file(b"a/b/flink").is_err(), "nor at the end");
            assert!(root.open_dir(b"a/../outside").is_err(), "no climbing out");
            assert!(root.open_dir(b"a/b/f").is_err(), "a file is no directory");
            assert!(root.create_dirs(b"a/link/new", 0o700).is_err());
            assert!(!t.path().join("outside/new").exists());
        });
    }

    #[test]
    fn paths_longer_than_path_max() {
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path()).unwrap();
        let name = vec![b'd'; 200];
        let mut rel = Vec::new();
        for _ in 0..25 {
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
        }
        assert!(rel.len() > 5000);
        both_ways(|| {
            let deep = root.create_dirs(&rel, 0o700).unwrap();
            let f = deep.tmpfile(0o600).unwrap();
            let _ = deep.unlink(b"file");
            deep.link_file(&f, b"file").unwrap();
            let mut file = rel.clone();
            file.extend_from_slice(b"/file");
            assert!(root.open_file(&file).is_ok());
            assert!(root.open_dir(&rel).is_ok());
        });
    }

    #[test]
    fn atomic_writes_and_removal() {
        let t = tree();
        let root = Dir::open_root(t.path()).unwrap();
        let tmp = root.create_dirs(b"tmp", 0o700).unwrap();
        root.write_atomic(b"state", &tmp, b"state.tmp", |w| w.write_all(b"v1"))
            .unwrap();
        root.write_atomic(b"state", &tmp, b"state.tmp", |w| w.write_all(b"v2"))
            .unwrap();
        assert_eq!(root.read(b"state").unwrap().unwrap(), b"v2");
        assert!(tmp.entries().unwrap().is_empty());
        // remove_all does not follow the symlink into outside/.
        root.remove_all(b"a").unwrap();
        assert!(!t.path().join("a").exists());
        assert!(t.path().join("outside/secret").exists());
    }
}
