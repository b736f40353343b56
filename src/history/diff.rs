//! `strata diff`: what differs between two points of a job's tracked
//! history: paths added, removed, and changed with what changed (kind,
//! content, mode, owner, xattrs, mtime, hardlinks).
//!
//! Takes two [`Side`]s — the tracked state at an increment, replayed by
//! [`History::state_at`], or the tracked entries of the index (the latest
//! state) — and returns the [`Difference`]s in path order. Pure: it reads
//! the records and the index, never the stored files, since every version
//! carries its content hash.

use serde::Serialize;

use super::History;
use crate::entry::{Hash, Kind, Meta, NO_XATTRS, RelPath};
use crate::store::index::{Index, UNKNOWN_OWNER};

/// What one point holds of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its metadata.
    pub meta: Meta,
    /// Whether the owner is known (old records and indexes lack it).
    pub has_owner: bool,
    /// Its content hash (a symlink: of its target), when known.
    pub hash: Option<Hash>,
    /// The digest of its xattrs, when known.
    pub xattrs: Option<Hash>,
    /// The version (increment, record) it is, for a point in the history:
    /// two points holding the same version hold the same thing.
    pub version: Option<(usize, usize)>,
}

/// The tracked entries of one point, sorted by path.
pub type Side = Vec<(RelPath, Item)>;

/// The tracked state at increment `k`.
pub fn side_at(history: &History, k: usize) -> Side {
    history
        .state_at(Some(k))
        .into_iter()
        .filter_map(|(path, v)| {
            let r = v.record.check().ok()?;
            Some((
                path,
                Item {
                    meta: r.meta,
                    has_owner: r.has_owner,
                    hash: r.hash,
                    xattrs: Some(if r.xattrs.is_empty() {
                        NO_XATTRS
                    } else {
                        r.xattrs.digest()
                    }),
                    version: Some((v.increment, v.index)),
                },
            ))
        })
        .collect()
}

/// The latest state's tracked entries (the mirror's versioned part).
pub fn side_latest(index: &Index) -> Side {
    index
        .entries
        .iter()
        .filter(|e| e.tracked)
        .map(|e| {
            (
                e.path.clone(),
                Item {
                    meta: e.meta,
                    has_owner: e.meta.uid != UNKNOWN_OWNER,
                    hash: e.hash(),
                    xattrs: e.xattrs(),
                    version: None,
                },
            )
        })
        .collect()
}

/// Added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// In the second point only.
    Added,
    /// In the first point only.
    Removed,
    /// In both, not the same.
    Changed,
}

/// What changed about a path held by both points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum What {
    /// File, symlink or directory: another kind.
    Kind,
    /// The bytes (a symlink: its target).
    Content,
    /// Permission bits, setuid, setgid, sticky.
    Mode,
    /// Owner or group.
    Owner,
    /// Extended attributes (ACLs among them).
    Xattrs,
    /// Modification time.
    Mtime,
    /// Which names share its inode.
    Hardlinks,
}

impl What {
    /// The word the text and the JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            What::Kind => "kind",
            What::Content => "content",
            What::Mode => "mode",
            What::Owner => "owner",
            What::Xattrs => "xattrs",
            What::Mtime => "mtime",
            What::Hardlinks => "hardlinks",
        }
    }
}

/// What a side says of a path, as `diff --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// `file`, `symlink` or `dir`.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, in octal (`0644`).
    pub mode: String,
    /// Owner, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Modification time (RFC 3339 UTC).
    pub mtime: String,
    /// Content hash, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl Facts {
    fn of(item: &Item) -> Facts {
        Facts {
            kind: item.meta.kind,
            size: item.meta.size,
            mode: format!("{:04o}", { item.meta.mode }),
            uid: item.has_owner.then_some(item.meta.uid),
            gid: item.has_owner.then_some(item.meta.gid),
            mtime: item.meta.mtime.to_rfc3339(),
            hash: item.hash.map(Hash::to_hex),
        }
    }
}

/// One path that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The path, relative to source (`.` for the source itself).
    pub path: RelPath,
    /// Added, removed or changed.
    pub status: Status,
    /// For a changed path, what changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<What>,
    /// The first point's entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Facts>,
    /// The second point's entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Facts>,
}

/// What changed from `a` to `b`, for one path both hold; empty when the
/// same.
pub fn changes(a: &Item, b: &Item) -> Vec<What> {
    if a.version.is_some() && a.version == b.version {
        return Vec::new();
    }
    let mut out = Vec::new();
    let (x, y) = (&a.meta, &b.meta);
    if x.kind != y.kind {
        out.push(What::Kind);
    } else if x.kind != Kind::Dir {
        let content = match (a.hash, b.hash) {
            (Some(h), Some(k)) => h != k,
            _ => x.size != y.size,
        };
        if content {
            out.push(What::Content);
        }
    }
    if x.mode != y.mode && x.kind == y.kind {
        out.push(What::Mode);
    }
    if a.has_owner && b.has_owner && (x.uid, x.gid) != (y.uid, y.gid) {
        out.push(What::Owner);
    }
    if let (Some(p), Some(q)) = (a.xattrs, b.xattrs)
        && p != q
    {
        out.push(What::Xattrs);
    }
    if { x.mtime } != { y.mtime } && x.kind == y.kind {
        out.push(What::Mtime);
    }
    if x.kind == Kind::File && y.kind == Kind::File && (x.link == 0) != (y.link == 0) {
        out.push(What::Hardlinks);
    }
    out
}

/// Every path that differs between `a` and `b`, in path order.
pub fn diff(a: &Side, b: &Side) -> Vec<Difference> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some((p, _)), Some((q, _))) => p.cmp(q),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let (path, item) = &a[i];
                out.push(Difference {
                    path: path.clone(),
                    status: Status::Removed,
                    changes: Vec::new(),
                    before: Some(Facts::of(item)),
                    after: None,
                });
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let (path, item) = &b[j];
                out.push(Difference {
                    path: path.clone(),
                    status: Status::Added,
                    changes: Vec::new(),
                    before: None,
                    after: Some(Facts::of(item)),
                });
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let ((path, x), (_, y)) = (&a[i], &b[j]);
                let what = changes(x, y);
                if !what.is_empty() {
                    out.push(Difference {
                        path: path.clone(),
                        status: Status::Changed,
                        changes: what,
                        before: Some(Facts::of(x)),
                        after: Some(Facts::of(y)),
                    });
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// How many of each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Paths added.
    pub added: u64,
    /// Paths removed.
    pub removed: u64,
    /// Paths changed.
    pub changed: u64,
}

impl Counts {
    /// Count `diffs`.
    pub fn of(diffs: &[Difference]) -> Counts {
        let mut c = Counts::default();
        for d in diffs {
            match d.status {
                Status::Added => c.added += 1,
                Status::Removed => c.removed += 1,
                Status::Changed => c.changed += 1,
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Op, Timestamp};
    use crate::history::tests::{increment, record};

    fn item(size: u64, mode: u16, hash: u8) -> Item {
        Item {
            meta: Meta {
                kind: Kind::File,
                size,
                mtime: Timestamp::default(),
                mode,
                uid: 0,
                gid: 0,
                link: 0,
            },
            has_owner: true,
            hash: Some(Hash([hash; 16])),
            xattrs: Some(NO_XATTRS),
            version: None,
        }
    }

    #[test]
    fn what_changed_is_named() {
        let a = item(3, 0o644, 1);
        assert!(changes(&a, &a).is_empty());
        assert_eq!(changes(&a, &item(3, 0o600, 1)), [What::Mode]);
        assert_eq!(changes(&a, &item(3, 0o644, 2)), [What::Content]);
        let mut owned = a.clone();
        owned.meta.uid = 1000;
        owned.xattrs = Some(Hash([9; 16]));
        owned.meta.mtime.sec = 5;
        assert_eq!(
            changes(&a, &owned),
            [What::Owner, What::Xattrs, What::Mtime]
        );
        let mut link = a.clone();
        link.meta.kind = Kind::Symlink;
        link.meta.mode = 0o777;
        assert_eq!(changes(&a, &link), [What::Kind]);
    }

    #[test]
    fn two_increments_differ_by_what_their_replays_hold() {
        let h = History::new(vec![
            increment(
                "20260101_000000",
                vec![record("a", Op::New, 1), record("b", Op::New, 1)],
            ),
            increment(
                "20260102_000000",
                vec![
                    record("a", Op::Changed, 2),
                    record("b", Op::Deleted, 1),
                    record("c", Op::New, 3),
                ],
            ),
        ]);
        let d = diff(&side_at(&h, 0), &side_at(&h, 1));
        let got: Vec<(String, Status, Vec<What>)> = d
            .iter()
            .map(|d| (d.path.to_string(), d.status, d.changes.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), Status::Changed, vec![What::Content]),
                ("b".into(), Status::Removed, vec![]),
                ("c".into(), Status::Added, vec![]),
            ]
        );
        assert!(diff(&side_at(&h, 1), &side_at(&h, 1)).is_empty());
        let c = Counts::of(&d);
        assert_eq!((c.added, c.removed, c.changed), (1, 1, 1));
    }
}
