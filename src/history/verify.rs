//! `strata verify`: do the mirror, the increments and the index agree?
//!
//! Takes a [`Store`]; returns every [`Problem`] found, each with the path
//! on disk it concerns. Checked:
//! - every index entry has its mirror entry, with the recorded kind, size,
//!   mtime, permission bits and (as root) owner — directories too, by
//!   kind, mode and owner (their size and mtime are not compared); the
//!   names of one hardlink group are one mirror inode; nothing in `mirror/`
//!   is missing from the index;
//! - every increment's metadata reads and every record is valid; every
//!   file record has its file (`track/<path>` for new and changed,
//!   `deleted/<path>` for deleted) with the recorded metadata; no file in an
//!   increment is missing from its metadata;
//! - no interrupted run or prune is waiting to be repaired;
//! - when nothing else is wrong, the tracked files of the index are the
//!   versions the history's latest state holds (increments out of order, or
//!   edited metadata, would make them differ);
//! - with `deep`, the content of every mirror and `track/` file matches its
//!   recorded xxh3-128 hash (each inode is read once: `track/` files share
//!   the mirror's inodes), and every mirror entry's xattrs their digest.
//!
//! With `repair` (and the job's source), a mirror or increment file whose
//! content no longer matches is put back from the source where the source
//! still holds the recorded version: a new inode, with every name that
//! shared the damaged one relinked to it. What cannot be repaired is said.
//!
//! An object store ([`verify_remote`]) is checked the same way, key by
//! key; its repair puts back missing, resized or damaged objects by
//! server-side copy of an object verified to hold the same version, or
//! from the source, and rewrites missing xattrs objects.
//!
//! Verify only reads (but for `repair`). The caller holds the job's lock
//! (an object store's lease), so that a run in progress is not reported as
//! damage.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use super::{History, HistoryError};
use crate::entry::{Hash, Kind, Meta, NO_XATTRS, Op, RelPath};
use crate::fs::copy::hash_file;
use crate::fs::{Dir, FileTypeOf, Stat, is_root, walk_tree, xattr};
use crate::store::index::{self, UNKNOWN_OWNER};
use crate::store::meta::format_mtime;
use crate::store::object::lease::Lease;
use crate::store::object::{self, Remote};
use crate::store::{DIRTY, INPROGRESS, Part, Store, StoreError, TMP};

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
    /// Index entries (files and symlinks) checked against the mirror.
    pub mirror_files: u64,
    /// Directories checked against the mirror.
    pub mirror_dirs: u64,
    /// Increments checked.
    pub increments: u64,
    /// Increment records checked against their files.
    pub increment_files: u64,
    /// Files whose content was hashed (`--deep`).
    pub hashed: u64,
    /// Everything that does not agree, sorted by path.
    pub problems: Vec<Problem>,
    /// Files put back from the source (`--repair`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repaired: Vec<PathBuf>,
}

impl Verified {
    fn problem(&mut self, path: impl Into<PathBuf>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Say why the problem of `path` could not be repaired, on its line.
    fn unrepaired(&mut self, path: PathBuf, why: &str) {
        match self.problems.iter_mut().find(|p| p.path == path) {
            Some(p) => p.message = format!("{}; could not be repaired: {why}", p.message),
            None => self.problem(path, format!("could not be repaired: {why}")),
        }
    }
}

/// Where a file whose content `--deep` checks lives.
#[derive(Debug, Clone)]
enum Place {
    Mirror,
    Increment(String, Part),
}

/// A file whose content `--deep` compares with a recorded hash.
#[derive(Debug, Clone)]
struct HashCheck {
    place: Place,
    rel: RelPath,
    shown: PathBuf,
    want: Hash,
    dev_ino: (u64, u64),
}

/// How `actual` differs from `want`, field by field (`None`: it does not).
fn difference(want: &Meta, actual: &Stat) -> Option<String> {
    let Some(got) = actual.meta() else {
        return Some("is neither a file, a symlink nor a directory".into());
    };
    let mut diffs = Vec::new();
    if got.kind != want.kind {
        diffs.push(format!(
            "is a {}, recorded as a {}",
            got.kind.as_str(),
            want.kind.as_str()
        ));
        return Some(diffs.join(", "));
    }
    if got.kind != Kind::Dir && got.size != want.size {
        diffs.push(format!("size {} (recorded {})", { got.size }, {
            want.size
        }));
    }
    if { got.mtime } != { want.mtime } && got.kind != Kind::Dir {
        diffs.push(format!(
            "mtime {} (recorded {})",
            format_mtime(got.mtime),
            format_mtime(want.mtime)
        ));
    }
    if got.mode != want.mode && got.kind != Kind::Symlink {
        diffs.push(format!("mode {:o} (recorded {:o})", { got.mode }, {
            want.mode
        }));
    }
    if is_root() && want.uid != UNKNOWN_OWNER && (got.uid, got.gid) != (want.uid, want.gid) {
        diffs.push(format!(
            "owner {}:{} (recorded {}:{})",
            { got.uid },
            { got.gid },
            { want.uid },
            { want.gid }
        ));
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// Check an object-store destination: the index's manifest and every
/// segment it names (present, of the size and checksum it names, of its
/// format), no segment it does not name, every index entry (file or
/// symlink) has its `mirror/` object of the recorded size, nothing in
/// `mirror/` is missing from the index, every increment's metadata reads
/// and each of its file records has its object (`track/` or `deleted/`),
/// no object of an increment is missing from its metadata, no interrupted
/// run waits to be repaired, and every xattr digest the index names has
/// its object. With `deep`, every mirror and `track/` object is streamed
/// and its content compared with the recorded hash. Only reads, but for
/// `repair` (which implies `deep`).
///
/// With `repair`, an object that is missing, of another size or of other
/// content is put back: by a server-side copy of another object that
/// verify found holds the same recorded hash (a `track/` copy of the
/// mirror's version, or the reverse), else by an upload from the source
/// where the source still holds the recorded version (its hash checked
/// before and while it goes up). A missing xattrs object is rewritten from
/// an increment record holding the same set, else from the source. What
/// cannot be repaired stays a problem, saying why.
pub fn verify_remote(
    remote: &Remote,
    deep: bool,
    repair: Option<&RemoteRepair<'_>>,
) -> Result<Verified, StoreError> {
    let deep = deep || repair.is_some();
    let mut v = Verified::default();
    let url = remote.url();
    let shown = |key: &str| PathBuf::from(format!("{url}/{key}"));
    // The index as stored (manifest and segments), then as this machine
    // reads it (its cache brought up to date).
    let stored = remote.check_index()?;
    let damaged = !stored.is_empty();
    for (path, problem) in stored {
        v.problem(path, problem);
    }
    let fetched = match remote.fetch_index() {
        Ok(f) => f,
        Err(StoreError::Corrupt { path, message }) if damaged => {
            v.problem(path, message);
            return Ok(v);
        }
        Err(e) => return Err(e),
    };
    let index = match fetched {
        Some(r) => {
            for run in remote.staged()? {
                v.problem(
                    shown(&format!("{}/{run}", object::STAGING)),
                    "an interrupted run waits to be repaired (the next run does it)",
                );
            }
            r.index.walk(|w| {
                let mut out = Vec::new();
                while let Some(e) = w.current() {
                    out.push(e.to_entry());
                    w.advance();
                }
                out
            })?
        }
        None => {
            v.problem(shown(object::INDEX_KEY), "no index: nothing backed up yet");
            return Ok(v);
        }
    };
    let bucket = &remote.bucket;
    let listed: HashMap<String, u64> = bucket
        .list(&bucket.key(object::MIRROR_TOP))?
        .into_iter()
        .map(|m| (bucket.shown(&m.location), m.size))
        .collect();
    let mut checks: Vec<Wanted> = Vec::new();
    // Missing or of another size: repairable where a hash is recorded.
    let mut broken: Vec<Wanted> = Vec::new();
    let mut expected: HashSet<String> = HashSet::new();
    let mut digests: HashMap<Hash, (RelPath, Kind)> = HashMap::new();
    for e in &index {
        if let Some(d) = e.xattrs().filter(|d| *d != NO_XATTRS) {
            digests
                .entry(d)
                .or_insert_with(|| (e.path.clone(), e.meta.kind));
        }
        if e.meta.kind == Kind::Dir {
            v.mirror_dirs += 1;
            continue;
        }
        v.mirror_files += 1;
        let key = bucket.shown(&remote.mirror_key(&e.path));
        expected.insert(key.clone());
        let wanted = e.hash().map(|hash| Wanted {
            key: key.clone(),
            rel: e.path.clone(),
            kind: e.meta.kind,
            size: e.meta.size,
            hash,
        });
        match unlike(listed.get(&key), e.meta.size, "missing from the mirror") {
            Some(problem) => {
                v.problem(shown(&key), problem);
                broken.extend(wanted);
            }
            None => checks.extend(wanted),
        }
    }
    for key in listed.keys().filter(|k| !expected.contains(*k)) {
        v.problem(shown(key), "in the mirror but not in the index");
    }
    let mut lost_xattrs: Vec<(Hash, RelPath, Kind)> = Vec::new();
    for (d, (rel, kind)) in digests {
        if let Err(e) = remote.load_xattrs(d) {
            v.problem(
                shown(&format!("{}/{}", object::XATTRS, d.to_hex())),
                e.to_string(),
            );
            lost_xattrs.push((d, rel, kind));
        }
    }
    let history = match History::load_remote(remote) {
        Ok(h) => h,
        Err(HistoryError::Store(e)) => return Err(e),
        Err(e) => {
            v.problem(PathBuf::from(&url), e.to_string());
            History::default()
        }
    };
    for inc in &history.increments {
        v.increments += 1;
        let in_store: HashMap<String, u64> = bucket
            .list(&bucket.key(&inc.name))?
            .into_iter()
            .map(|m| (bucket.shown(&m.location), m.size))
            .collect();
        let mut recorded: HashSet<String> = HashSet::new();
        recorded.insert(bucket.shown(&remote.meta_key(&inc.name)));
        for (path, record) in inc.records() {
            let Ok(r) = record.check() else { continue };
            if r.meta.kind == Kind::Dir {
                continue;
            }
            v.increment_files += 1;
            let part = Part::for_op(record.op);
            let key = bucket.shown(&remote.part_key(&inc.name, part, path));
            recorded.insert(key.clone());
            let wanted = r.hash.map(|hash| Wanted {
                key: key.clone(),
                rel: path.clone(),
                kind: r.meta.kind,
                size: r.meta.size,
                hash,
            });
            match unlike(
                in_store.get(&key),
                r.meta.size,
                "missing from its increment",
            ) {
                Some(problem) => {
                    v.problem(shown(&key), problem);
                    broken.extend(wanted);
                }
                None if record.op != Op::Deleted => checks.extend(wanted),
                None => {}
            }
        }
        for key in in_store.keys().filter(|k| !recorded.contains(*k)) {
            v.problem(shown(key), "in the increment but not in its metadata");
        }
    }
    // Objects whose content is the recorded version, by hash: what a
    // repair copies from.
    let mut good: HashMap<Hash, String> = HashMap::new();
    if deep {
        let found: Vec<Result<(), Problem>> = checks
            .par_iter()
            .map(|w| {
                let k = bucket.key(&w.key);
                match bucket.hash_object(&k) {
                    Ok(got) if got == w.hash => Ok(()),
                    Ok(got) => Err(Problem {
                        path: shown(&w.key),
                        message: format!(
                            "content does not match the recorded hash ({}, now {})",
                            w.hash.to_hex(),
                            got.to_hex()
                        ),
                    }),
                    Err(e) => Err(Problem {
                        path: shown(&w.key),
                        message: e.to_string(),
                    }),
                }
            })
            .collect();
        v.hashed = checks.len() as u64;
        for (w, result) in checks.into_iter().zip(found) {
            match result {
                Ok(()) => {
                    good.entry(w.hash).or_insert(w.key);
                }
                Err(p) => {
                    v.problems.push(p);
                    broken.push(w);
                }
            }
        }
    }
    if let Some(repair) = repair {
        repair_objects(remote, repair, &good, broken, &mut v);
        let records = history
            .increments
            .iter()
            .flat_map(|inc| inc.records())
            .filter_map(|(_, r)| r.check().ok());
        repair_xattrs(remote, repair, records, lost_xattrs, &mut v);
    }
    v.problems.sort_by(|a, b| a.path.cmp(&b.path));
    v.repaired.sort();
    Ok(v)
}

/// What `verify --repair` of an object store needs: the job's source,
/// and the lease (checked before each write, so that a verify that lost
/// it writes nothing more).
pub struct RemoteRepair<'a> {
    /// The job's source.
    pub source: &'a Dir,
    /// The destination's lease, held.
    pub lease: &'a Lease,
}

/// An object whose content verify knows: the version of `rel` recorded
/// What is wrong with a listed object against the size recorded for it
/// (`None`: present, of that size; its bytes are for the hash check).
fn unlike(listed: Option<&u64>, recorded: u64, missing: &str) -> Option<String> {
    match listed {
        None => Some(missing.to_string()),
        Some(&size) if size != recorded => Some(format!("size {size} (recorded {recorded})")),
        Some(_) => None,
    }
}

/// with `kind`, `size` and `hash`.
#[derive(Debug, Clone)]
struct Wanted {
    /// The key, as [`object::Bucket::shown`] spells it.
    key: String,
    rel: RelPath,
    kind: Kind,
    size: u64,
    hash: Hash,
}

/// Put back each broken object: a server-side copy of a good object of
/// the same hash, else an upload of the source's file or symlink when it
/// still holds the recorded version.
fn repair_objects(
    remote: &Remote,
    repair: &RemoteRepair<'_>,
    good: &HashMap<Hash, String>,
    broken: Vec<Wanted>,
    v: &mut Verified,
) {
    let bucket = &remote.bucket;
    let url = remote.url();
    for w in broken {
        let shown = PathBuf::from(format!("{url}/{}", w.key));
        let to = bucket.key(&w.key);
        let fixed = (|| -> Result<(), String> {
            repair.lease.check().map_err(|e| e.to_string())?;
            if let Some(from) = good.get(&w.hash).filter(|k| **k != w.key) {
                return bucket
                    .copy(&bucket.key(from), &to)
                    .map_err(|e| e.to_string());
            }
            let source = repair.source;
            match w.kind {
                Kind::Symlink => {
                    let (dir, leaf) = source
                        .parent_of(w.rel.as_bytes())
                        .map_err(|e| format!("the source does not hold it: {e}"))?;
                    let target = dir
                        .read_link(leaf)
                        .map_err(|e| format!("the source does not hold it: {e}"))?;
                    if Hash::of(&target) != w.hash {
                        return Err("the source holds another version now".into());
                    }
                    bucket
                        .put(&to, target, object::client::Write::Overwrite)
                        .map_err(|e| e.to_string())?
                        .map_err(|_| "the server refused the write as a conflict".to_string())?;
                    Ok(())
                }
                Kind::File => {
                    let (file, st) = source
                        .open_file(w.rel.as_bytes())
                        .map_err(|e| format!("the source does not hold it: {e}"))?;
                    if st.size != w.size || hash_file(&file).map_err(|e| e.to_string())? != w.hash {
                        return Err("the source holds another version now".into());
                    }
                    match bucket.upload_file(&to, &file, w.size, &|_| {}) {
                        Ok(Some(h)) if h == w.hash => Ok(()),
                        Ok(_) => Err("the source changed while it was uploaded".into()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Kind::Dir => Err("a directory has no object".into()),
            }
        })();
        match fixed {
            Ok(()) => {
                v.problems.retain(|p| p.path != shown);
                v.repaired.push(shown);
            }
            Err(why) => v.unrepaired(shown, &why),
        }
    }
}

/// Rewrite each missing xattrs object from an increment record that holds
/// the same set, else from the source's entry when its set has the digest.
fn repair_xattrs(
    remote: &Remote,
    repair: &RemoteRepair<'_>,
    records: impl Iterator<Item = crate::store::meta::Record>,
    lost: Vec<(Hash, RelPath, Kind)>,
    v: &mut Verified,
) {
    if lost.is_empty() {
        return;
    }
    let mut known: HashMap<Hash, crate::entry::Xattrs> = HashMap::new();
    for r in records {
        let d = r.xattrs.digest();
        if lost.iter().any(|(l, _, _)| *l == d) {
            known.entry(d).or_insert(r.xattrs);
        }
    }
    let url = remote.url();
    for (d, rel, kind) in lost {
        let shown = PathBuf::from(format!("{url}/{}/{}", object::XATTRS, d.to_hex()));
        let fixed = (|| -> Result<(), String> {
            repair.lease.check().map_err(|e| e.to_string())?;
            let x = match known.remove(&d) {
                Some(x) => x,
                None => {
                    let read = match kind {
                        Kind::Dir => repair
                            .source
                            .open_dir(rel.as_bytes())
                            .and_then(|d| xattr::read_all(&d)),
                        _ => repair
                            .source
                            .open_file(rel.as_bytes())
                            .and_then(|(f, _)| xattr::read_all(&f)),
                    };
                    let x = read.map_err(|e| format!("the source does not hold {rel}: {e}"))?;
                    if x.digest() != d {
                        return Err(format!(
                            "no increment records them and the source's {rel} has others now"
                        ));
                    }
                    x
                }
            };
            remote
                .save_xattrs(&x)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })();
        match fixed {
            Ok(()) => {
                v.problems.retain(|p| p.path != shown);
                v.repaired.push(shown);
            }
            Err(why) => v.unrepaired(shown, &why),
        }
    }
}

/// Check the destination of `store`; with `repair`, put damaged files back
/// from `source` where it still holds their recorded version.
pub fn verify(store: &Store, deep: bool, repair: Option<&Dir>) -> Result<Verified, StoreError> {
    let mut out = Verified::default();
    let has_entries = |name: &[u8]| {
        store
            .state_dir(name)
            .ok()
            .flatten()
            .is_some_and(|d| d.entries().is_ok_and(|e| !e.is_empty()))
    };
    if store.state_has(DIRTY) || has_entries(INPROGRESS) || has_entries(TMP) {
        out.problem(
            store.state_path(b""),
            "an interrupted run left work to repair; the next run repairs it",
        );
    }
    let mut checks = Vec::new();
    let mirror = store
        .mirror()
        .map_err(|e| StoreError::io(&store.mirror_path(), e))?;
    let index = check_mirror(store, mirror.as_ref(), deep, &mut out, &mut checks)?;
    let history = check_increments(store, &mut out, &mut checks)?;
    if let (Some(index), Some(history)) = (&index, &history)
        && out.problems.is_empty()
    {
        check_latest_state(store, index, history, &mut out);
    }
    if deep {
        let damaged = check_hashes(store, mirror.as_ref(), checks, &mut out);
        if let Some(source) = repair {
            repair_files(store, mirror.as_ref(), source, damaged, &mut out);
        }
    }
    out.problems.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The tracked files the index holds against the history's latest state:
/// the same versions. They differ when increments are out of order (an
/// older strata under a clock set back) or metadata was edited.
fn check_latest_state(
    store: &Store,
    index: &crate::store::index::Index,
    history: &History,
    out: &mut Verified,
) {
    let visible: Vec<usize> = (0..history.increments.len())
        .filter(|&i| !history.increments[i].pending_prune)
        .collect();
    let Some(&last) = visible.last() else {
        return;
    };
    let mut state = super::State::new();
    for &i in &visible {
        history.replay(&mut state, i);
    }
    let _ = last;
    let mirror = store.mirror_path();
    for e in index
        .entries
        .iter()
        .filter(|e| e.tracked && e.meta.kind != Kind::Dir)
    {
        let shown = mirror.join(e.path.as_path());
        match state.get(&e.path).and_then(|v| v.record.check().ok()) {
            None => out.problem(
                shown,
                "tracked in the mirror, but the history's latest state does not hold it",
            ),
            Some(r) => {
                let same = r.meta.kind == e.meta.kind
                    && r.meta.size == e.meta.size
                    && { r.meta.mtime } == { e.meta.mtime }
                    && r.meta.mode == e.meta.mode;
                if !same {
                    out.problem(
                        shown,
                        format!(
                            "the history's latest version (size {}, mtime {}) is not the \
                             mirror's (size {}, mtime {}): are the increments out of order?",
                            { r.meta.size },
                            format_mtime(r.meta.mtime),
                            { e.meta.size },
                            format_mtime(e.meta.mtime)
                        ),
                    );
                }
            }
        }
    }
    let tracked: HashSet<&RelPath> = index
        .entries
        .iter()
        .filter(|e| e.tracked)
        .map(|e| &e.path)
        .collect();
    for (path, v) in &state {
        if v.record.kind != "dir" && !tracked.contains(path) {
            out.problem(
                mirror.join(path.as_path()),
                "in the history's latest state, but not tracked in the mirror",
            );
        }
    }
}

/// What is wrong with the xattr set the runs kept under `want` for a
/// mirror whose filesystem refuses xattrs (`None`: it is there and is what
/// its digest names).
fn kept_set_problem(store: &Store, want: Hash) -> Option<String> {
    match store.load_xattrs(want) {
        Ok(Some(_)) => None,
        Ok(None) => Some(format!(
            "its extended attributes are kept nowhere: the mirror's filesystem refuses them \
             and {} is missing",
            store.xattrs_path(want).display()
        )),
        Err(e) => Some(format!("its extended attributes: {e}")),
    }
}

fn check_mirror(
    store: &Store,
    mirror: Option<&Dir>,
    deep: bool,
    out: &mut Verified,
    checks: &mut Vec<HashCheck>,
) -> Result<Option<crate::store::index::Index>, StoreError> {
    let index = match index::load(store.state(), &store.index_path()) {
        Ok(Some(index)) => index,
        Ok(None) => {
            if mirror.is_some() {
                out.problem(store.index_path(), "the index is missing");
            }
            return Ok(None);
        }
        Err(StoreError::Corrupt { path, message }) => {
            out.problem(path, message);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let Some(mirror) = mirror else {
        if !index.entries.is_empty() {
            out.problem(
                store.mirror_path(),
                "the mirror is missing (the index lists entries)",
            );
        }
        return Ok(Some(index));
    };
    let mut found: HashMap<RelPath, Stat> = match walk_tree(mirror) {
        Ok(all) => all.into_iter().collect(),
        Err(e) => {
            out.problem(store.mirror_path(), format!("cannot read: {e}"));
            return Ok(Some(index));
        }
    };
    let mut groups: HashMap<u64, (u64, u64, RelPath)> = HashMap::new();
    // A mirror whose filesystem refuses xattrs holds them in the sets the
    // runs kept by digest: each checked once.
    let kept_only = deep && !xattr::supported(mirror);
    let mut kept: HashMap<Hash, Option<String>> = HashMap::new();
    for entry in &index.entries {
        if entry.meta.kind == Kind::Dir {
            out.mirror_dirs += 1;
        } else {
            out.mirror_files += 1;
        }
        let shown = store.mirror_path().join(entry.path.as_path());
        let Some(actual) = found.remove(&entry.path) else {
            out.problem(shown, "missing from the mirror (the index lists it)");
            continue;
        };
        if let Some(diff) = difference(&entry.meta, &actual) {
            out.problem(shown, format!("differs from the index: {diff}"));
            continue;
        }
        if entry.meta.link != 0 {
            match groups.get(&{ entry.meta.link }) {
                Some((dev, ino, first)) if (*dev, *ino) != (actual.dev, actual.ino) => {
                    out.problem(
                        &shown,
                        format!(
                            "is a hardlink of {first} in the source but another inode in the mirror"
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    groups.insert(
                        entry.meta.link,
                        (actual.dev, actual.ino, entry.path.clone()),
                    );
                }
            }
        }
        if deep
            && entry.meta.kind != Kind::Symlink
            && let Some(want) = entry.xattrs()
        {
            let got = if entry.meta.kind == Kind::Dir {
                mirror
                    .open_dir(entry.path.as_bytes())
                    .and_then(|d| xattr::read_all(&d))
            } else {
                mirror
                    .open_file(entry.path.as_bytes())
                    .and_then(|(f, _)| xattr::read_all(&f))
            };
            if let Ok(x) = got
                && x.digest() != want
            {
                let problem = if x.is_empty() && kept_only {
                    let kept = kept
                        .entry(want)
                        .or_insert_with(|| kept_set_problem(store, want));
                    kept.clone()
                } else {
                    Some("its extended attributes differ from the index".to_string())
                };
                if let Some(problem) = problem {
                    out.problem(&shown, problem);
                }
            }
        }
        if let Some(want) = entry.hash()
            && entry.meta.kind != Kind::Dir
        {
            checks.push(HashCheck {
                place: Place::Mirror,
                rel: entry.path.clone(),
                shown,
                want,
                dev_ino: (actual.dev, actual.ino),
            });
        }
    }
    let mut extra: Vec<RelPath> = found.into_keys().collect();
    extra.sort();
    for rel in extra {
        out.problem(
            store.mirror_path().join(rel.as_path()),
            "in the mirror but not in the index",
        );
    }
    Ok(Some(index))
}

/// Every increment against its folder: the metadata reads, each file
/// record has its file in `track/` or `deleted/` with the recorded
/// metadata, and no file is there that the metadata does not record. An
/// interrupted prune is reported. Returns the history when it reads.
fn check_increments(
    store: &Store,
    out: &mut Verified,
    checks: &mut Vec<HashCheck>,
) -> Result<Option<History>, StoreError> {
    let loaded = match History::load_all(store) {
        Ok(loaded) => loaded,
        Err(HistoryError::Store(e)) => return Err(e),
        Err(e) => {
            out.problem(store.path(), e.to_string());
            return Ok(None);
        }
    };
    if let Some(d) = store.state_dir(crate::store::PRUNING)?
        && d.stat_at(super::prune::JOURNAL).is_ok()
    {
        out.problem(
            super::prune::journal_path(store),
            "an interrupted prune left its journal; run `strata prune JOB` to finish it",
        );
    }
    for error in loaded.broken {
        out.problem(store.path(), format!("unreadable increment: {error}"));
    }
    for inc in &loaded.history.increments {
        if inc.pending_prune {
            out.problem(
                store.state_path(crate::store::PRUNING).join(&inc.name),
                "an interrupted prune is merging this increment away; \
                 run `strata prune JOB` to finish it",
            );
            continue;
        }
        out.increments += 1;
        let dir = match inc.open(store) {
            Ok(d) => d,
            Err(e) => {
                out.problem(store.path().join(&inc.name), e.to_string());
                continue;
            }
        };
        let mut files: HashMap<(u8, RelPath), Stat> = HashMap::new();
        for (n, part) in [(0u8, Part::Track), (1, Part::Deleted)] {
            match dir.part(part) {
                Ok(Some(d)) => match walk_tree(&d) {
                    Ok(all) => {
                        for (rel, st) in all {
                            if st.file_type != FileTypeOf::Dir {
                                files.insert((n, rel), st);
                            }
                        }
                    }
                    Err(e) => out.problem(
                        dir.path.join(String::from_utf8_lossy(part.name()).as_ref()),
                        format!("cannot read: {e}"),
                    ),
                },
                Ok(None) => {}
                Err(e) => out.problem(&dir.path, format!("cannot read: {e}")),
            }
        }
        let mut seen = HashSet::new();
        for (i, (path, record)) in inc.records().enumerate() {
            let r = record.check().expect("checked when loaded");
            if r.meta.kind == Kind::Dir {
                continue;
            }
            out.increment_files += 1;
            let part = Part::for_op(record.op);
            let n = u8::from(part == Part::Deleted);
            let shown = dir.part_path(part, path);
            if !seen.insert((n, path.clone())) {
                out.problem(&shown, "recorded twice in the increment's metadata");
                continue;
            }
            let _ = i;
            match files.remove(&(n, path.clone())) {
                None => out.problem(
                    &shown,
                    format!(
                        "missing: the increment records {} {} here",
                        record.op.as_str(),
                        record.path
                    ),
                ),
                Some(actual) => {
                    let mut want = r.meta;
                    if !r.has_owner {
                        want.uid = UNKNOWN_OWNER;
                    }
                    match difference(&want, &actual) {
                        Some(diff) => {
                            out.problem(&shown, format!("differs from the metadata: {diff}"))
                        }
                        None => {
                            if let (Some(h), true) = (r.hash, record.op != Op::Deleted) {
                                checks.push(HashCheck {
                                    place: Place::Increment(inc.name.clone(), part),
                                    rel: path.clone(),
                                    shown,
                                    want: h,
                                    dev_ino: (actual.dev, actual.ino),
                                });
                            }
                        }
                    }
                }
            }
        }
        let mut extra: Vec<(u8, RelPath)> = files.into_keys().collect();
        extra.sort();
        for (n, rel) in extra {
            let part = if n == 0 { Part::Track } else { Part::Deleted };
            out.problem(
                dir.part_path(part, &rel),
                "in the increment but not in its metadata",
            );
        }
    }
    Ok(Some(loaded.history))
}

fn open_check(store: &Store, mirror: Option<&Dir>, c: &HashCheck) -> io::Result<(Dir, Vec<u8>)> {
    let base = match &c.place {
        Place::Mirror => mirror
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?
            .try_clone()?,
        Place::Increment(name, part) => {
            let key = crate::store::IncrementName::parse(name)
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
            let inc = store
                .increment(&key)
                .map_err(|e| io::Error::other(e.to_string()))?;
            inc.part(*part)?
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?
        }
    };
    let (dir, name) = base.parent_of(c.rel.as_bytes())?;
    Ok((dir.try_clone()?, name.to_vec()))
}

/// Hash every inode once, in parallel, and compare. Returns the damaged.
fn check_hashes(
    store: &Store,
    mirror: Option<&Dir>,
    checks: Vec<HashCheck>,
    out: &mut Verified,
) -> Vec<HashCheck> {
    let mut inodes = HashSet::new();
    let unique: Vec<&HashCheck> = checks
        .iter()
        .filter(|c| inodes.insert((c.dev_ino, c.want.0)))
        .collect();
    let results: Vec<Option<(Problem, HashCheck)>> = unique
        .par_iter()
        .map(|c| {
            let got = open_check(store, mirror, c).and_then(|(dir, name)| {
                let st = dir.stat_at(&name)?;
                if st.file_type == FileTypeOf::Symlink {
                    Ok(Hash::of(&dir.read_link(&name)?))
                } else {
                    hash_file(&dir.open_read(&name)?)
                }
            });
            match got {
                Ok(h) if h == c.want => None,
                Ok(h) => Some((
                    Problem {
                        path: c.shown.clone(),
                        message: format!(
                            "content differs from the recorded hash {} (now {}); \
                             `strata verify --repair` puts it back where the source still holds it",
                            c.want.to_hex(),
                            h.to_hex()
                        ),
                    },
                    (*c).clone(),
                )),
                Err(e) => Some((
                    Problem {
                        path: c.shown.clone(),
                        message: format!("cannot read: {e}"),
                    },
                    (*c).clone(),
                )),
            }
        })
        .collect();
    out.hashed = unique.len() as u64;
    let mut damaged = Vec::new();
    for (p, c) in results.into_iter().flatten() {
        out.problems.push(p);
        damaged.push(c);
    }
    // Every name of a damaged inode is damaged.
    let bad: HashSet<(u64, u64)> = damaged.iter().map(|c| c.dev_ino).collect();
    for c in checks {
        if bad.contains(&c.dev_ino) && !damaged.iter().any(|d| d.shown == c.shown) {
            damaged.push(c);
        }
    }
    damaged
}

/// Put damaged files back from the source where it holds the recorded
/// version: one new inode per damaged one, every name relinked to it.
fn repair_files(
    store: &Store,
    mirror: Option<&Dir>,
    source: &Dir,
    damaged: Vec<HashCheck>,
    out: &mut Verified,
) {
    let Ok(tmp) = store.tmp() else {
        return;
    };
    let mut by_inode: HashMap<(u64, u64), Vec<HashCheck>> = HashMap::new();
    for c in damaged {
        by_inode.entry(c.dev_ino).or_default().push(c);
    }
    let mut counter = 0u64;
    for (_, names) in by_inode {
        let first = &names[0];
        let fixed = (|| -> Result<(), String> {
            let (src, st) = source
                .open_file(first.rel.as_bytes())
                .map_err(|e| format!("the source does not hold it: {e}"))?;
            let (dir, name) = open_check(store, mirror, first).map_err(|e| e.to_string())?;
            let damaged_st = dir.stat_at(&name).map_err(|e| e.to_string())?;
            let copy = dir.tmpfile(0o600).map_err(|e| e.to_string())?;
            let h =
                crate::fs::copy::copy_data(&src, &st, &copy, &|_| {}).map_err(|e| e.to_string())?;
            if h != first.want {
                return Err("the source holds another version now".into());
            }
            let x = xattr::read_all(&src).unwrap_or_default();
            crate::fs::finish(
                &copy,
                &crate::fs::Finish {
                    mode: damaged_st.mode,
                    uid: damaged_st.uid,
                    gid: damaged_st.gid,
                    mtime: damaged_st.mtime,
                    atime: damaged_st.atime,
                    xattrs: &x,
                    fresh: true,
                },
                &crate::fs::Degraded::default(),
            )
            .map_err(|e| e.to_string())?;
            for c in &names {
                let (d, n) = open_check(store, mirror, c).map_err(|e| e.to_string())?;
                counter += 1;
                let t = format!("repair-{}-{counter}.tmp", std::process::id());
                tmp.link_file(&copy, t.as_bytes())
                    .map_err(|e| e.to_string())?;
                tmp.rename(t.as_bytes(), &d, &n)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })();
        match fixed {
            Ok(()) => {
                for c in names {
                    out.problems.retain(|p| p.path != c.shown);
                    out.repaired.push(c.shown);
                }
            }
            Err(why) => {
                for c in names {
                    out.problem(c.shown, format!("could not be repaired: {why}"));
                }
            }
        }
    }
    out.repaired.sort();
}
