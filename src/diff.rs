//! Scan x stored index -> [`Plan`]. Pure: a merge of two sorted lists.
//!
//! The plan is a plain value: `--dry-run` prints it, [`crate::apply`]
//! executes it. Each change says what happens to the mirror (`op`) and, from
//! the tracked flags before and after, what the increment records
//! ([`Change::history_op`]).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::job::Compare;
use crate::scan::{Entry, RelPath};

/// What a run does to one mirror path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Not in the mirror yet.
    New,
    /// In the mirror with other metadata or content, or another tracked flag.
    Changed,
    /// In the mirror, gone from the selection.
    Deleted,
}

impl Op {
    /// `new`, `changed` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::New => "new",
            Op::Changed => "changed",
            Op::Deleted => "deleted",
        }
    }
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happens to the mirror path.
    pub op: Op,
    /// The state in the index (absent for `New`).
    pub old: Option<Entry>,
    /// The state in the scan (absent for `Deleted`).
    pub new: Option<Entry>,
}

impl Change {
    /// The path concerned.
    pub fn path(&self) -> &RelPath {
        match (&self.new, &self.old) {
            (Some(e), _) | (None, Some(e)) => &e.path,
            (None, None) => unreachable!("a change has an old or a new state"),
        }
    }

    /// Whether the mirror needs a fresh copy from the source.
    pub fn needs_copy(&self) -> bool {
        match (&self.old, &self.new) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(old), Some(new)) => {
                old.meta != new.meta || (new.hash.is_some() && old.hash != new.hash)
            }
        }
    }

    /// What the increment records for this path: tracked files entering,
    /// changing or leaving the tracked set. `None` for included-only files.
    pub fn history_op(&self) -> Option<Op> {
        let was = self.old.as_ref().is_some_and(|e| e.tracked);
        let is = self.new.as_ref().is_some_and(|e| e.tracked);
        match (was, is) {
            (false, false) => None,
            (false, true) => Some(Op::New),
            (true, false) => Some(Op::Deleted),
            (true, true) => Some(Op::Changed),
        }
    }
}

/// What a run will do, computed before anything is touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every change, sorted by path.
    pub changes: Vec<Change>,
    /// Entries whose mirror copy is up to date.
    pub unchanged: u64,
    /// Index entries kept because their directory could not be read.
    pub kept_unreadable: u64,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Count of changes with the given mirror op.
    pub fn count(&self, op: Op) -> u64 {
        self.changes.iter().filter(|c| c.op == op).count() as u64
    }
}

fn same(old: &Entry, new: &Entry, compare: Compare) -> bool {
    old.meta == new.meta
        && old.tracked == new.tracked
        && match compare {
            Compare::Metadata => true,
            Compare::Checksum => old.hash.is_some() && old.hash == new.hash,
        }
}

/// Compare the scan with the index. Both must be sorted by path. Index
/// entries below an unreadable directory are kept as they are.
pub fn diff(scan: &[Entry], index: &[Entry], unreadable: &[RelPath], compare: Compare) -> Plan {
    let mut plan = Plan::default();
    let (mut i, mut j) = (0, 0);
    let under_unreadable = |path: &RelPath| unreadable.iter().any(|d| path.is_below(d));
    while i < scan.len() || j < index.len() {
        let order = match (scan.get(i), index.get(j)) {
            (Some(s), Some(x)) => s.path.cmp(&x.path),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                plan.changes.push(Change {
                    op: Op::New,
                    old: None,
                    new: Some(scan[i].clone()),
                });
                i += 1;
            }
            Ordering::Greater => {
                if under_unreadable(&index[j].path) {
                    plan.kept_unreadable += 1;
                } else {
                    plan.changes.push(Change {
                        op: Op::Deleted,
                        old: Some(index[j].clone()),
                        new: None,
                    });
                }
                j += 1;
            }
            Ordering::Equal => {
                if same(&index[j], &scan[i], compare) {
                    plan.unchanged += 1;
                } else {
                    plan.changes.push(Change {
                        op: Op::Changed,
                        old: Some(index[j].clone()),
                        new: Some(scan[i].clone()),
                    });
                }
                i += 1;
                j += 1;
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{Hash, Kind, Meta};

    fn e(path: &str, size: u64, tracked: bool) -> Entry {
        Entry {
            path: RelPath::from_bytes(path.as_bytes()),
            meta: Meta {
                kind: Kind::File,
                size,
                mtime: 1_700_000_000,
                mtime_nsec: 5,
                mode: 0o644,
            },
            tracked,
            hash: None,
        }
    }

    fn ops(plan: &Plan) -> Vec<(String, Op, Option<Op>)> {
        plan.changes
            .iter()
            .map(|c| (c.path().to_string(), c.op, c.history_op()))
            .collect()
    }

    #[test]
    fn set_operations() {
        let index = [
            e("a", 1, true),
            e("b", 1, true),
            e("c", 1, false),
            e("d", 1, true),
        ];
        let scan = [
            e("a", 1, true),
            e("b", 2, true),
            e("c", 2, false),
            e("e", 1, true),
        ];
        let plan = diff(&scan, &index, &[], Compare::Metadata);
        assert_eq!(
            ops(&plan),
            [
                ("b".into(), Op::Changed, Some(Op::Changed)),
                ("c".into(), Op::Changed, None),
                ("d".into(), Op::Deleted, Some(Op::Deleted)),
                ("e".into(), Op::New, Some(Op::New)),
            ]
        );
        assert_eq!(plan.unchanged, 1);
    }

    #[test]
    fn tracked_flag_changes_enter_and_leave_history_without_a_copy() {
        let index = [e("a", 1, false), e("b", 1, true)];
        let scan = [e("a", 1, true), e("b", 1, false)];
        let plan = diff(&scan, &index, &[], Compare::Metadata);
        assert_eq!(
            ops(&plan),
            [
                ("a".into(), Op::Changed, Some(Op::New)),
                ("b".into(), Op::Changed, Some(Op::Deleted)),
            ]
        );
        assert!(plan.changes.iter().all(|c| !c.needs_copy()));
    }

    #[test]
    fn permission_only_change_is_a_change() {
        let index = [e("a", 1, true)];
        let mut changed = e("a", 1, true);
        changed.meta.mode = 0o600;
        let plan = diff(&[changed], &index, &[], Compare::Metadata);
        assert_eq!(plan.count(Op::Changed), 1);
        assert!(plan.changes[0].needs_copy());
    }

    #[test]
    fn unreadable_dir_keeps_its_entries() {
        let index = [e("locked/a", 1, true), e("locked2", 1, true)];
        let unreadable = [RelPath::from_bytes(b"locked")];
        let plan = diff(&[], &index, &unreadable, Compare::Metadata);
        assert_eq!(
            ops(&plan),
            [("locked2".into(), Op::Deleted, Some(Op::Deleted))]
        );
        assert_eq!(plan.kept_unreadable, 1);
    }

    #[test]
    fn checksum_compare_sees_same_metadata_other_content() {
        let mut old = e("a", 1, true);
        old.hash = Some(Hash::of(b"x"));
        let mut new = e("a", 1, true);
        new.hash = Some(Hash::of(b"y"));
        assert!(diff(&[new.clone()], &[old.clone()], &[], Compare::Metadata).is_empty());
        let plan = diff(&[new], &[old], &[], Compare::Checksum);
        assert_eq!(plan.count(Op::Changed), 1);
        assert!(plan.changes[0].needs_copy());
    }
}
