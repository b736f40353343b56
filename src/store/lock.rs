//! The per-job lock: kernel `flock` on `.strata/lock`, so that it is released
//! when the process dies and never goes stale.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

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
    _file: File,
}

impl JobLock {
    /// Take the lock at `path` without waiting, creating the file (and its
    /// directory) when `create` is set. With `create` unset and no lock file,
    /// returns `Ok(None)`: there is nothing to protect yet (a dry run).
    pub fn try_acquire(path: &Path, create: bool) -> Result<Option<JobLock>, LockError> {
        let io_error = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if create {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io_error)?;
            }
        } else if !path.parent().is_some_and(Path::exists) {
            return Ok(None);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error)?;
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Err(LockError::Held {
                    path: path.to_path_buf(),
                })
            } else {
                Err(io_error(err))
            };
        }
        Ok(Some(JobLock { _file: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".strata/lock");
        let first = JobLock::try_acquire(&path, true).unwrap();
        assert!(first.is_some());
        assert!(matches!(
            JobLock::try_acquire(&path, true),
            Err(LockError::Held { .. })
        ));
        drop(first);
        assert!(JobLock::try_acquire(&path, true).unwrap().is_some());
    }

    #[test]
    fn dry_run_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dest/.strata/lock");
        assert!(JobLock::try_acquire(&path, false).unwrap().is_none());
        assert!(!dir.path().join("dest").exists());
    }
}
