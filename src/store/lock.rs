//! The per-job lock: kernel `flock` on `.strata/lock`, so that it is released
//! when the process dies and never goes stale. Opened from the state
//! folder's descriptor, never following a symlink.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::fs::Dir;

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{} is held by another strata process", path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file cannot be opened.
    #[error("cannot open lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct JobLock {
    _fd: OwnedFd,
}

impl JobLock {
    /// Take the lock in `.strata/` (`state`; `path` names the lock file in
    /// errors) without waiting, creating the lock file.
    pub fn try_acquire(state: &Dir, path: &Path) -> Result<JobLock, LockError> {
        let io_error = |e: rustix::io::Errno| LockError::Io {
            path: path.to_path_buf(),
            source: io::Error::from_raw_os_error(e.raw_os_error()),
        };
        let fd = rustix::fs::openat(
            state,
            c"lock",
            rustix::fs::OFlags::RDWR
                | rustix::fs::OFlags::CREATE
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .map_err(io_error)?;
        match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(JobLock { _fd: fd }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(LockError::Held {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(io_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let state = Dir::open_root(dir.path()).unwrap();
        let path = dir.path().join("lock");
        let first = JobLock::try_acquire(&state, &path).unwrap();
        assert!(matches!(
            JobLock::try_acquire(&state, &path),
            Err(LockError::Held { .. })
        ));
        drop(first);
        assert!(JobLock::try_acquire(&state, &path).is_ok());
    }
}
