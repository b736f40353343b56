//! Extended attributes (and with them POSIX ACLs, which Linux keeps as the
//! `system.posix_acl_access` and `system.posix_acl_default` attributes),
//! read from and set on descriptors.
//!
//! Symlinks have none here: Linux refuses `user.*` attributes on them, and
//! an `O_PATH` descriptor of a symlink cannot be asked.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;

use super::Degraded;
use crate::entry::Xattrs;

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Whether an error means "this filesystem has no xattrs".
fn unsupported(e: rustix::io::Errno) -> bool {
    e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOTSUP
}

fn names(fd: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    loop {
        let len = match rustix::fs::flistxattr_query(fd) {
            Ok(len) => len,
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(errno(e)),
        };
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; len];
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            // The list grew between the two calls.
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(errno(e)),
        }
    }
}

fn value(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        let len = match rustix::fs::fgetxattr_query(fd, name.as_c_str()) {
            Ok(len) => len,
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) => return Err(errno(e)),
        };
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        let mut buf = vec![0u8; len];
        match rustix::fs::fgetxattr(fd, name.as_c_str(), &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) => return Err(errno(e)),
        }
    }
}

/// Whether the filesystem of `fd` holds xattrs at all. Listing succeeds
/// (with nothing) even where none can be set, as on ramfs; reading one
/// tells: a filesystem without them answers "not supported", one with them
/// "no such attribute".
pub fn supported(fd: impl AsFd) -> bool {
    let fd = fd.as_fd();
    let mut none = [0u8; 0];
    !matches!(
        rustix::fs::fgetxattr(fd, "user.strata.probe", &mut none),
        Err(rustix::io::Errno::NOTSUP)
    ) && rustix::fs::flistxattr_query(fd).is_ok()
}

/// Every extended attribute of the inode behind `fd` (a file or a
/// directory opened for reading), sorted by name. A filesystem without
/// xattrs has none.
pub fn read_all(fd: impl AsFd) -> io::Result<Xattrs> {
    let fd = fd.as_fd();
    let mut out = Vec::new();
    for name in names(fd)? {
        if let Some(v) = value(fd, &name)? {
            out.push((name, v));
        }
    }
    out.sort();
    Ok(Xattrs(out))
}

/// Set `want` on a new inode (which has none to remove).
pub fn set_new(fd: impl AsFd, want: &Xattrs, degraded: &Degraded) -> io::Result<()> {
    if want.is_empty() {
        return Ok(());
    }
    set_each(fd.as_fd(), want, degraded)
}

/// Make the inode's attributes exactly `want`: set each, and remove those
/// it has and `want` lacks (a directory updated in place). What the
/// filesystem or the kernel refuses is noted in `degraded`, not failed.
pub fn set_all(fd: impl AsFd, want: &Xattrs, degraded: &Degraded) -> io::Result<()> {
    let fd = fd.as_fd();
    let have = names(fd).unwrap_or_default();
    for name in have {
        if want.0.iter().any(|(n, _)| *n == name) || name.starts_with(b"security.") {
            continue;
        }
        let c = std::ffi::CString::new(name)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match rustix::fs::fremovexattr(fd, c.as_c_str()) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => {}
            Err(e) if unsupported(e) => {}
            Err(rustix::io::Errno::PERM) | Err(rustix::io::Errno::ACCESS) => {
                degraded.xattrs_denied.store(true, Ordering::Relaxed);
            }
            Err(e) => return Err(errno(e)),
        }
    }
    set_each(fd, want, degraded)
}

fn set_each(fd: BorrowedFd<'_>, want: &Xattrs, degraded: &Degraded) -> io::Result<()> {
    for (name, v) in &want.0 {
        let c = std::ffi::CString::new(name.as_slice())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match rustix::fs::fsetxattr(fd, c.as_c_str(), v, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            Err(e) if unsupported(e) => {
                degraded.xattrs_unsupported.store(true, Ordering::Relaxed);
                return Ok(());
            }
            Err(rustix::io::Errno::PERM)
            | Err(rustix::io::Errno::ACCESS)
            | Err(rustix::io::Errno::INVAL) => {
                degraded.xattrs_denied.store(true, Ordering::Relaxed);
            }
            Err(e) => return Err(errno(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_set_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let a = std::fs::File::create(dir.path().join("a")).unwrap();
        let want = Xattrs(vec![
            (b"user.one".to_vec(), b"1".to_vec()),
            (b"user.two".to_vec(), vec![0, 1, 2]),
        ]);
        let degraded = Degraded::default();
        set_all(&a, &want, &degraded).unwrap();
        if !degraded.warnings().is_empty() {
            eprintln!("skipped: this filesystem refuses user xattrs");
            return;
        }
        assert_eq!(read_all(&a).unwrap(), want);
        let fewer = Xattrs(vec![(b"user.two".to_vec(), b"2".to_vec())]);
        set_all(&a, &fewer, &degraded).unwrap();
        assert_eq!(read_all(&a).unwrap(), fewer);
    }
}
