//! `strata restore`: a point in a job's history -> a directory holding the
//! files that existed then.
//!
//! Takes a destination [`Layout`], a target directory and a point ([`At`],
//! or none for the latest state); copies the files on the shared pool and
//! returns what it did. The latest state is the mirror (included-only files
//! too); a past point is the tracked state the [`History`] replays, read
//! from the increments' `track/` folders. Files are always copied, never
//! linked: a restored file that shared an inode with the backup would let
//! an edit of the restored copy rewrite the backup. Mode and mtime (and
//! owner, as root) are preserved; symlinks stay symlinks.
//!
//! Restore only reads the destination, so it takes no lock.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::{At, History, HistoryError, is_at_or_below};
use crate::apply::copy_out;
use crate::report::PathError;
use crate::scan::{Kind, RelPath};
use crate::store::index;
use crate::store::{IoContext, Layout, StoreError};

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
    /// The target is not a directory.
    #[error("{} exists and is not a directory", path.display())]
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
    /// Restore into a non-empty directory, replacing files in the way.
    pub force: bool,
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
    /// Bytes copied.
    pub bytes: u64,
    /// Files that could not be restored, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<PathError>,
    /// Things worth knowing that did not stop the restore.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One file to copy: where it goes (relative), where its bytes are, what
/// it is.
struct Item {
    path: RelPath,
    from: PathBuf,
    kind: Kind,
}

/// Restore into `to`. Per-file failures (a missing increment file) are
/// listed in the result; the other files are still restored.
pub fn restore(
    layout: &Layout,
    to: &Path,
    options: &RestoreOptions,
) -> Result<Restored, RestoreError> {
    let (point, mut items) = match &options.at {
        None => (String::from("mirror"), mirror_items(layout)?),
        Some(at) => {
            let history = History::load(layout)?;
            let k = history.resolve(at)?;
            let items = history
                .state_at(Some(k))
                .into_iter()
                .map(|(path, version)| Item {
                    from: history.file_of(version),
                    kind: match version.record.kind.as_str() {
                        "symlink" => Kind::Symlink,
                        _ => Kind::File,
                    },
                    path,
                })
                .collect();
            (history.increments[k].name.clone(), items)
        }
    };
    if !options.paths.is_empty() {
        for wanted in &options.paths {
            if !items.iter().any(|i| is_at_or_below(&i.path, wanted)) {
                return Err(RestoreError::NoMatch {
                    path: wanted.to_string(),
                    point: if options.at.is_some() {
                        point.clone()
                    } else {
                        "the latest state".into()
                    },
                });
            }
        }
        items.retain(|i| options.paths.iter().any(|w| is_at_or_below(&i.path, w)));
    }
    prepare_target(layout, to, options.force)?;
    make_parents(to, &items)?;
    let results: Vec<Result<u64, PathError>> =
        items.par_iter().map(|item| copy_item(item, to)).collect();
    let mut done = Restored {
        point,
        to: to.to_path_buf(),
        ..Restored::default()
    };
    if options.at.is_none() && layout.dirty().exists() {
        done.warnings.push(
            "an interrupted run is not repaired yet: the mirror may mix that run's new \
             versions with old ones; run the job, or restore --at its last increment"
                .into(),
        );
    }
    for result in results {
        match result {
            Ok(bytes) => {
                done.files += 1;
                done.bytes += bytes;
            }
            Err(e) => done.errors.push(e),
        }
    }
    Ok(done)
}

/// The latest state: every index entry, read from `mirror/`.
fn mirror_items(layout: &Layout) -> Result<Vec<Item>, RestoreError> {
    let path = layout.index();
    let index = index::load(&path)?.ok_or(RestoreError::NothingBackedUp { path })?;
    let mirror = layout.mirror();
    Ok(index
        .entries
        .into_iter()
        .map(|e| Item {
            from: mirror.join(e.path.as_path()),
            kind: e.meta.kind,
            path: e.path,
        })
        .collect())
}

/// Check the target: absent or empty (unless forced), a directory, not in
/// the destination. Creates it.
fn prepare_target(layout: &Layout, to: &Path, force: bool) -> Result<(), RestoreError> {
    let created = match fs::metadata(to) {
        Ok(meta) if !meta.is_dir() => {
            return Err(RestoreError::NotADirectory {
                path: to.to_path_buf(),
            });
        }
        Ok(_) => {
            if !force && fs::read_dir(to).at(to)?.next().is_some() {
                return Err(RestoreError::NotEmpty {
                    path: to.to_path_buf(),
                });
            }
            false
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(to).at(to)?;
            true
        }
        Err(source) => {
            return Err(StoreError::Io {
                path: to.to_path_buf(),
                source,
            }
            .into());
        }
    };
    let destination = fs::canonicalize(layout.root()).unwrap_or(layout.root().to_path_buf());
    if fs::canonicalize(to).at(to)?.starts_with(&destination) {
        if created {
            let _ = fs::remove_dir(to);
        }
        return Err(RestoreError::InsideDestination {
            path: to.to_path_buf(),
            destination,
        });
    }
    Ok(())
}

/// Create the directories the files go into, each once, before the copies
/// fan out.
fn make_parents(to: &Path, items: &[Item]) -> Result<(), StoreError> {
    let dirs: BTreeSet<RelPath> = items.iter().filter_map(|i| i.path.parent()).collect();
    for dir in dirs {
        let path = to.join(dir.as_path());
        fs::create_dir_all(&path).at(&path)?;
    }
    Ok(())
}

/// Copy one file; the bytes copied.
fn copy_item(item: &Item, to: &Path) -> Result<u64, PathError> {
    let error = |message: String| PathError {
        path: item.path.to_string(),
        message,
    };
    match fs::symlink_metadata(&item.from) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(error(format!(
                "missing from the backup: {} does not exist",
                item.from.display()
            )));
        }
        Err(e) => return Err(error(format!("{}: {e}", item.from.display()))),
    }
    let dest = to.join(item.path.as_path());
    let (meta, _) = copy_out(&item.from, item.kind, &dest)
        .map_err(|e| error(format!("cannot copy {}: {e}", item.from.display())))?;
    Ok(match meta.kind {
        Kind::File => meta.size,
        Kind::Symlink => 0,
    })
}
