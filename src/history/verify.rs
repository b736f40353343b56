//! `strata verify`: do the mirror, the increments and the index agree?
//!
//! Takes a destination [`Layout`]; returns every [`Problem`] found, each with
//! the path on disk it concerns. Checked:
//! - every index entry has its mirror file, with the recorded kind, size,
//!   mtime and permission bits; no file in `mirror/` is missing from the
//!   index;
//! - every increment's metadata reads; every record has its file
//!   (`track/<path>` for new and changed, `deleted/<path>` for deleted) with
//!   the recorded kind, size, mtime and permission bits; no file in an
//!   increment is missing from its metadata;
//! - no interrupted run or prune is waiting to be repaired;
//! - with `deep`, the content of every mirror and `track/` file matches its
//!   recorded xxh3-128 hash (each inode is read once: `track/` files share
//!   the mirror's inodes).
//!
//! Verify only reads. The caller holds the job's lock, so that a run in
//! progress is not reported as damage.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::{History, HistoryError};
use crate::diff::Op;
use crate::scan::{Hash, Meta, RelPath, hash_entry};
use crate::store::index;
use crate::store::meta::{IncrementMeta, format_mtime};
use crate::store::{Layout, StoreError};

/// One thing that does not agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The path on disk concerned.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// What verify looked at and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verified {
    /// Index entries checked against the mirror.
    pub mirror_files: u64,
    /// Increments checked.
    pub increments: u64,
    /// Increment records checked against their files.
    pub increment_files: u64,
    /// Files whose content was hashed (`--deep`).
    pub hashed: u64,
    /// Everything that does not agree, sorted by path.
    pub problems: Vec<Problem>,
}

impl Verified {
    fn problem(&mut self, path: impl Into<PathBuf>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// A file whose content `--deep` compares with a recorded hash.
struct HashCheck {
    path: PathBuf,
    meta: Meta,
    want: Hash,
}

/// Check the destination at `layout`.
pub fn verify(layout: &Layout, deep: bool) -> Result<Verified, StoreError> {
    let mut out = Verified::default();
    let mut hash_checks = Vec::new();
    if !layout.root().exists() {
        out.problem(
            layout.root(),
            "the destination does not exist (has the job ever run?)",
        );
        return Ok(out);
    }
    let has_entries = |dir: &Path| fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    if layout.dirty().exists() || has_entries(&layout.inprogress()) || has_entries(&layout.tmp()) {
        out.problem(
            layout.state(),
            "an interrupted run left work to repair; the next run repairs it",
        );
    }
    check_mirror(layout, &mut out, &mut hash_checks)?;
    check_increments(layout, &mut out, &mut hash_checks)?;
    if deep {
        check_hashes(hash_checks, &mut out);
    }
    out.problems.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Every file and symlink below `root` (directories left out), by relative
/// path, with its `lstat`. Special files are reported.
fn walk(root: &Path, out: &mut Verified) -> HashMap<RelPath, fs::Metadata> {
    let mut found = HashMap::new();
    if !root.exists() {
        return found;
    }
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                out.problem(e.path().unwrap_or(root), format!("cannot read: {e}"));
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).expect("below root");
        match entry.metadata() {
            Ok(meta) => {
                found.insert(RelPath::from_bytes(rel.as_os_str().as_bytes()), meta);
            }
            Err(e) => out.problem(entry.path(), format!("cannot stat: {e}")),
        }
    }
    found
}

/// How `actual` differs from `want`, field by field (`None`: it does not).
fn difference(want: &Meta, actual: &fs::Metadata) -> Option<String> {
    let Some(got) = Meta::from_metadata(actual) else {
        return Some("is neither a file nor a symlink".into());
    };
    let mut diffs = Vec::new();
    if got.kind != want.kind {
        diffs.push(format!(
            "is a {}, recorded as a {}",
            got.kind.as_str(),
            want.kind.as_str()
        ));
    }
    if got.size != want.size {
        diffs.push(format!("size {} (recorded {})", got.size, want.size));
    }
    if (got.mtime, got.mtime_nsec) != (want.mtime, want.mtime_nsec) {
        diffs.push(format!(
            "mtime {} (recorded {})",
            format_mtime(got.mtime, got.mtime_nsec),
            format_mtime(want.mtime, want.mtime_nsec)
        ));
    }
    if got.mode != want.mode {
        diffs.push(format!("mode {:o} (recorded {:o})", got.mode, want.mode));
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

fn check_mirror(
    layout: &Layout,
    out: &mut Verified,
    hash_checks: &mut Vec<HashCheck>,
) -> Result<(), StoreError> {
    let mirror = layout.mirror();
    let index = match index::load(&layout.index()) {
        Ok(Some(index)) => index,
        Ok(None) => {
            if mirror.exists() {
                out.problem(layout.index(), "the index is missing");
            }
            return Ok(());
        }
        Err(StoreError::Corrupt { path, message }) => {
            out.problem(path, message);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut files = walk(&mirror, out);
    for entry in &index.entries {
        out.mirror_files += 1;
        let path = mirror.join(entry.path.as_path());
        match files.remove(&entry.path) {
            None => out.problem(path, "missing from the mirror (the index lists it)"),
            Some(actual) => match difference(&entry.meta, &actual) {
                Some(diff) => out.problem(path, format!("differs from the index: {diff}")),
                None => {
                    if let Some(want) = entry.hash {
                        hash_checks.push(HashCheck {
                            path,
                            meta: entry.meta,
                            want,
                        });
                    }
                }
            },
        }
    }
    for rel in files.into_keys() {
        out.problem(
            mirror.join(rel.as_path()),
            "in the mirror but not in the index",
        );
    }
    Ok(())
}

fn check_increments(
    layout: &Layout,
    out: &mut Verified,
    hash_checks: &mut Vec<HashCheck>,
) -> Result<(), StoreError> {
    let loaded = match History::load_all(layout) {
        Ok(loaded) => loaded,
        Err(HistoryError::Store(e)) => return Err(e),
        Err(e) => {
            out.problem(layout.root(), e.to_string());
            return Ok(());
        }
    };
    let journal = super::prune::journal_path(layout);
    if journal.exists() {
        out.problem(
            journal,
            "an interrupted prune left its journal; run `strata prune JOB` to finish it",
        );
    }
    for error in loaded.broken {
        let path = match &error {
            StoreError::Io { path, .. } | StoreError::Corrupt { path, .. } => path.clone(),
        };
        out.problem(path, format!("unreadable increment metadata: {error}"));
    }
    for inc in &loaded.history.increments {
        if inc.pending_prune {
            out.problem(
                &inc.dir,
                "an interrupted prune is merging this increment away; \
                 run `strata prune JOB` to finish it",
            );
            continue;
        }
        out.increments += 1;
        let mut files = walk(&inc.dir, out);
        let meta_file = IncrementMeta::path_in(&inc.dir, &inc.name);
        files.remove(&RelPath::from_bytes(
            meta_file.file_name().expect("a file name").as_bytes(),
        ));
        let mut seen = HashSet::new();
        for record in &inc.meta.files {
            out.increment_files += 1;
            let path = inc.file_of(record);
            let rel = RelPath::from_bytes(
                path.strip_prefix(&inc.dir)
                    .expect("below the increment")
                    .as_os_str()
                    .as_bytes(),
            );
            if !seen.insert(rel.clone()) {
                out.problem(&path, "recorded twice in the increment's metadata");
                continue;
            }
            let Some(want) = record.meta() else {
                out.problem(&path, "the metadata record does not parse (kind or mtime)");
                continue;
            };
            match files.remove(&rel) {
                None => out.problem(
                    &path,
                    format!(
                        "missing: the increment records {} {} here",
                        record.op.as_str(),
                        record.path
                    ),
                ),
                Some(actual) => match difference(&want, &actual) {
                    Some(diff) => out.problem(&path, format!("differs from the metadata: {diff}")),
                    None => {
                        let hash = record.hash.as_deref().and_then(Hash::from_hex);
                        if let (Some(want_hash), true) = (hash, record.op != Op::Deleted) {
                            hash_checks.push(HashCheck {
                                path,
                                meta: want,
                                want: want_hash,
                            });
                        }
                    }
                },
            }
        }
        for rel in files.into_keys() {
            out.problem(
                inc.dir.join(rel.as_path()),
                "in the increment but not in its metadata",
            );
        }
    }
    Ok(())
}

/// Hash every file once per inode, in parallel, and compare.
fn check_hashes(checks: Vec<HashCheck>, out: &mut Verified) {
    let mut inodes = HashSet::new();
    let unique: Vec<HashCheck> = checks
        .into_iter()
        .filter(|c| match fs::symlink_metadata(&c.path) {
            Ok(m) => inodes.insert((m.dev(), m.ino(), c.want.0)),
            Err(_) => true,
        })
        .collect();
    let results: Vec<Option<Problem>> = unique
        .par_iter()
        .map(|c| match hash_entry(&c.path, c.meta.kind) {
            Ok(got) if got == c.want => None,
            Ok(got) => Some(Problem {
                path: c.path.clone(),
                message: format!(
                    "content differs from the recorded hash {} (now {})",
                    c.want.to_hex(),
                    got.to_hex()
                ),
            }),
            Err(e) => Some(Problem {
                path: c.path.clone(),
                message: format!("cannot read: {e}"),
            }),
        })
        .collect();
    out.hashed = unique.len() as u64;
    out.problems.extend(results.into_iter().flatten());
}
