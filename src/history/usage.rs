//! `strata du`: what a job's destination holds on disk — the mirror, each
//! increment, the state folder — with every inode counted once; and what a
//! prune frees.
//!
//! The increments' `track/` files are hardlinks of mirror inodes (and of
//! each other's, until a newer version replaces them), so a plain sum of
//! file sizes would count a version once per name. As `du` does, each inode
//! is counted where it is met first, walking the mirror, then the
//! increments oldest first, then `.strata/`: an increment's number is what
//! it holds beyond the mirror and the increments before it, and the numbers
//! add up to what the destination takes. `du -B1 -c mirror backup_* .strata`
//! prints the same.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::prune::Merge;
use crate::entry::RelPath;
use crate::fs::{Dir, FileTypeOf, Stat, walk_tree};
use crate::store::meta::IncrementMeta;
use crate::store::object::Remote;
use crate::store::{IncrementName, Part, Store, StoreError};

/// What one part of the destination takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Share {
    /// Files and symlinks in it (every name).
    pub files: u64,
    /// Apparent size of the inodes first met here (as `du -b`).
    pub bytes: u64,
    /// Space allocated to them (as `du -B1`): holes take none.
    pub disk: u64,
}

impl std::ops::AddAssign for Share {
    fn add_assign(&mut self, o: Share) {
        self.files += o.files;
        self.bytes += o.bytes;
        self.disk += o.disk;
    }
}

/// One increment's share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncrementUsage {
    /// Its name.
    pub increment: String,
    /// What it holds beyond the mirror and the increments before it.
    #[serde(flatten)]
    pub own: Share,
    /// Space of its files that are the mirror's current versions too
    /// (counted under the mirror).
    pub shared_with_mirror: u64,
}

/// The whole destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// `mirror/`.
    pub mirror: Share,
    /// Each increment, oldest first.
    pub increments: Vec<IncrementUsage>,
    /// `.strata/` (index, run log, an interrupted prune's folders).
    pub state: Share,
    /// Everything: the sum of the above.
    pub total: Share,
}

/// Where an inode was met first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    Mirror,
    Elsewhere,
}

#[derive(Default)]
struct Counter {
    seen: HashMap<(u64, u64), First>,
}

impl Counter {
    /// Count the tree below `dir` (itself included), returning its share
    /// and the space of its files first met in the mirror.
    fn count(&mut self, dir: &Dir, here: First) -> std::io::Result<(Share, u64)> {
        let mut share = Share::default();
        let mut shared = 0;
        for (_, st) in walk_tree(dir)? {
            if st.file_type != FileTypeOf::Dir {
                share.files += 1;
            }
            match self.seen.get(&(st.dev, st.ino)) {
                Some(First::Mirror) if here != First::Mirror => shared += st.blocks * 512,
                Some(_) => {}
                None => {
                    self.seen.insert((st.dev, st.ino), here);
                    share.bytes += st.size;
                    share.disk += st.blocks * 512;
                }
            }
        }
        Ok((share, shared))
    }
}

/// Measure the destination of `store`.
pub fn usage(store: &Store) -> Result<Usage, StoreError> {
    let mut counter = Counter::default();
    let mut out = Usage::default();
    if let Some(mirror) = store
        .mirror()
        .map_err(|e| StoreError::io(&store.mirror_path(), e))?
    {
        out.mirror = counter
            .count(&mirror, First::Mirror)
            .map_err(|e| StoreError::io(&store.mirror_path(), e))?
            .0;
    }
    for name in store.increments()? {
        let inc = store.increment(&name)?;
        let (own, shared) = counter
            .count(&inc.dir, First::Elsewhere)
            .map_err(|e| StoreError::io(&inc.path, e))?;
        out.increments.push(IncrementUsage {
            increment: name.to_string(),
            own,
            shared_with_mirror: shared,
        });
    }
    out.state = counter
        .count(store.state(), First::Elsewhere)
        .map_err(|e| StoreError::io(&store.state_path(b""), e))?
        .0;
    out.total = out.mirror;
    for i in &out.increments {
        out.total += i.own;
    }
    out.total += out.state;
    Ok(out)
}

/// Measure an object-store destination, from one listing of its prefix:
/// `mirror/`, each committed increment (a folder with its metadata
/// object), and the rest (`.strata/`, and what an interrupted run left,
/// which the next run deletes) as the state. Every object is billed for
/// what it holds, server-side copies too: `disk` is `bytes`, and nothing
/// is shared with the mirror.
pub fn usage_remote(remote: &Remote) -> Result<Usage, StoreError> {
    let objects = remote.bucket.list(&remote.bucket.key(""))?;
    let keys: Vec<(String, u64)> = objects
        .iter()
        .map(|o| (remote.bucket.shown(&o.location), o.size))
        .collect();
    let committed: HashSet<&str> = keys
        .iter()
        .filter_map(|(k, _)| {
            let (top, rest) = k.split_once('/')?;
            (IncrementName::parse(top).is_some() && rest == IncrementMeta::file_name(top))
                .then_some(top)
        })
        .collect();
    let mut out = Usage::default();
    let mut increments: BTreeMap<IncrementName, Share> = BTreeMap::new();
    for (key, size) in &keys {
        let one = Share {
            files: 1,
            bytes: *size,
            disk: *size,
        };
        let top = key.split_once('/').map_or(key.as_str(), |(t, _)| t);
        if top == crate::store::object::MIRROR_TOP {
            out.mirror += one;
        } else if committed.contains(top)
            && let Some(name) = IncrementName::parse(top)
        {
            *increments.entry(name).or_default() += one;
        } else {
            out.state += one;
        }
    }
    out.increments = increments
        .into_iter()
        .map(|(name, own)| IncrementUsage {
            increment: name.to_string(),
            own,
            shared_with_mirror: 0,
        })
        .collect();
    out.total = out.mirror;
    for i in &out.increments {
        out.total += i.own;
    }
    out.total += out.state;
    Ok(out)
}

/// What carrying out `merges` frees: the inodes whose every name goes
/// (the removed increments' folders, less the files that move on, and
/// the files evicted from the increments they merge into). Reads only;
/// call it before the prune, for the prune and its dry run alike.
pub fn freed_by(store: &Store, merges: &[Merge]) -> Result<Share, StoreError> {
    // Names going, per inode; directories all go.
    let mut going: HashMap<(u64, u64), (Stat, u64)> = HashMap::new();
    let mut freed = Share::default();
    let mut note = |st: Stat, freed: &mut Share| {
        if st.file_type == FileTypeOf::Dir {
            freed.bytes += st.size;
            freed.disk += st.blocks * 512;
            return;
        }
        freed.files += 1;
        going.entry((st.dev, st.ino)).or_insert((st, 0)).1 += 1;
    };
    for merge in merges {
        for name in &merge.removed {
            let Some(key) = IncrementName::parse(name) else {
                continue;
            };
            let Ok(inc) = store.increment(&key) else {
                continue;
            };
            let staying: HashSet<RelPath> = merge
                .moves
                .iter()
                .filter(|m| m.from == *name && m.record.kind != "dir")
                .filter_map(|m| {
                    let rel = m.record.rel_path().ok()?;
                    Some(in_part(Part::for_op(m.record.op), &rel))
                })
                .collect();
            for (rel, st) in walk_tree(&inc.dir).map_err(|e| StoreError::io(&inc.path, e))? {
                if !staying.contains(&rel) {
                    note(st, &mut freed);
                }
            }
        }
        if let Some(key) = IncrementName::parse(&merge.into)
            && let Ok(into) = store.increment(&key)
        {
            for record in merge.evict.iter().filter(|r| r.kind != "dir") {
                let Ok(rel) = record.rel_path() else {
                    continue;
                };
                let inner = in_part(Part::for_op(record.op), &rel);
                if let Ok((parent, leaf)) = into.dir.parent_of(inner.as_bytes())
                    && let Ok(st) = parent.stat_at(leaf)
                {
                    note(st, &mut freed);
                }
            }
        }
    }
    for (st, names) in going.into_values() {
        if names >= st.nlink {
            freed.bytes += st.size;
            freed.disk += st.blocks * 512;
        }
    }
    Ok(freed)
}

/// `track/<rel>` or `deleted/<rel>`, inside an increment's folder.
fn in_part(part: Part, rel: &RelPath) -> RelPath {
    let mut bytes = part.name().to_vec();
    if !rel.is_root() {
        bytes.push(b'/');
        bytes.extend_from_slice(rel.as_bytes());
    }
    RelPath::from_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_hardlinked_inode_counts_once_where_it_is_met_first() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join(".strata")).unwrap();
        fs::create_dir_all(d.join("mirror")).unwrap();
        fs::create_dir_all(d.join("backup_20260101_000000/track")).unwrap();
        fs::create_dir_all(d.join("backup_20260102_000000/track")).unwrap();
        fs::write(d.join("mirror/a"), vec![1u8; 10_000]).unwrap();
        fs::hard_link(d.join("mirror/a"), d.join("backup_20260102_000000/track/a")).unwrap();
        fs::write(d.join("backup_20260101_000000/track/a"), vec![2u8; 5000]).unwrap();
        let store = Store::open(d).unwrap();
        let u = usage(&store).unwrap();
        assert_eq!(u.mirror.files, 1);
        assert!(u.mirror.bytes >= 10_000);
        let old = &u.increments[0];
        let new = &u.increments[1];
        assert_eq!(old.own.files, 1);
        assert!(old.own.bytes >= 5000 && old.shared_with_mirror == 0);
        // The newer increment's file is the mirror's: shared, not its own.
        assert_eq!(new.own.files, 1);
        assert!(new.own.bytes < 10_000, "{new:?}");
        assert!(new.shared_with_mirror >= 10_000, "{new:?}");
        let sum = u.mirror.disk + old.own.disk + new.own.disk + u.state.disk;
        assert_eq!(u.total.disk, sum);
        assert_eq!(
            in_part(Part::Track, &RelPath::from_bytes(b"x/y")).to_string(),
            "track/x/y"
        );
    }
}
