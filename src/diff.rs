//! Scan x stored index -> plan. Pure: a merge of two sorted lists.
//!
//! The plan is a plain value: `--dry-run` prints it ([`Plan`], which owns
//! its entries), [`crate::apply`] executes it ([`PlanRef`], which borrows
//! the new states from the scan, so that a first run does not hold every
//! entry twice). Each change says what happens to the mirror (`op`) and,
//! from the tracked flags before and after, what the increment records
//! (`history_op`).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::job::Compare;
use crate::scan::{Entry, EntryRef, RelPath};

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

/// Whether the mirror needs a fresh copy from the source.
fn needs_copy(old: Option<EntryRef<'_>>, new: Option<EntryRef<'_>>) -> bool {
    match (old, new) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(old), Some(new)) => {
            old.meta != new.meta || (new.hash.is_some() && old.hash != new.hash)
        }
    }
}

/// What the increment records, from the tracked flags before and after.
fn history_op(was: bool, is: bool) -> Option<Op> {
    match (was, is) {
        (false, false) => None,
        (false, true) => Some(Op::New),
        (true, false) => Some(Op::Deleted),
        (true, true) => Some(Op::Changed),
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
        needs_copy(
            self.old.as_ref().map(Entry::view),
            self.new.as_ref().map(Entry::view),
        )
    }

    /// What the increment records for this path: tracked files entering,
    /// changing or leaving the tracked set. `None` for included-only files.
    pub fn history_op(&self) -> Option<Op> {
        history_op(
            self.old.as_ref().is_some_and(|e| e.tracked),
            self.new.as_ref().is_some_and(|e| e.tracked),
        )
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

/// One planned change, as a run executes it: the new state borrowed from
/// the scan, the old one (a changed or deleted path: few) owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRef<'a> {
    /// What happens to the mirror path.
    pub op: Op,
    /// The state in the index (absent for `New`).
    pub old: Option<Box<Entry>>,
    /// The state in the scan (absent for `Deleted`).
    pub new: Option<&'a Entry>,
}

impl ChangeRef<'_> {
    /// The path concerned.
    pub fn path(&self) -> &RelPath {
        match (self.new, self.old.as_deref()) {
            (Some(e), _) | (None, Some(e)) => &e.path,
            (None, None) => unreachable!("a change has an old or a new state"),
        }
    }

    /// Whether the mirror needs a fresh copy from the source.
    pub fn needs_copy(&self) -> bool {
        needs_copy(
            self.old.as_deref().map(Entry::view),
            self.new.map(Entry::view),
        )
    }

    /// What the increment records for this path (see [`Change::history_op`]).
    pub fn history_op(&self) -> Option<Op> {
        history_op(
            self.old.as_ref().is_some_and(|e| e.tracked),
            self.new.is_some_and(|e| e.tracked),
        )
    }

    /// An owned copy.
    pub fn to_change(&self) -> Change {
        Change {
            op: self.op,
            old: self.old.as_deref().cloned(),
            new: self.new.cloned(),
        }
    }
}

/// A plan whose new states are borrowed from the scan (see [`ChangeRef`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanRef<'a> {
    /// Every change, sorted by path.
    pub changes: Vec<ChangeRef<'a>>,
    /// Entries whose mirror copy is up to date.
    pub unchanged: u64,
    /// Index entries kept because their directory could not be read.
    pub kept_unreadable: u64,
}

impl PlanRef<'_> {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// An owned copy.
    pub fn to_plan(&self) -> Plan {
        Plan {
            changes: self.changes.iter().map(ChangeRef::to_change).collect(),
            unchanged: self.unchanged,
            kept_unreadable: self.kept_unreadable,
        }
    }
}

fn same(old: EntryRef<'_>, new: &Entry, compare: Compare) -> bool {
    old.meta == new.meta
        && old.tracked == new.tracked
        && match compare {
            Compare::Metadata => true,
            Compare::Checksum => old.hash.is_some() && old.hash == new.hash,
        }
}

/// Whether `path` lies below directory `dir`.
fn is_below(path: &[u8], dir: &RelPath) -> bool {
    let dir = dir.as_bytes();
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

/// The stored index, walked in path order: an index file's
/// [`Cursor`](crate::store::index::Cursor), or entries in memory
/// ([`SliceWalk`]).
pub trait IndexWalk {
    /// The entry at hand; `None` after the last.
    fn current(&self) -> Option<EntryRef<'_>>;
    /// Move to the next entry.
    fn advance(&mut self);
}

/// Entries in memory, as an [`IndexWalk`].
#[derive(Debug, Clone)]
pub struct SliceWalk<'a>(pub &'a [Entry]);

impl IndexWalk for SliceWalk<'_> {
    fn current(&self) -> Option<EntryRef<'_>> {
        self.0.first().map(Entry::view)
    }
    fn advance(&mut self) {
        self.0 = self.0.get(1..).unwrap_or_default();
    }
}

/// Compare the scan with the index. Both must be sorted by path. Index
/// entries below an unreadable directory are kept as they are.
pub fn diff(scan: &[Entry], index: &[Entry], unreadable: &[RelPath], compare: Compare) -> Plan {
    diff_walk(scan, &mut SliceWalk(index), unreadable, compare).to_plan()
}

/// [`diff`] against an index walked in order (an index file, read as it
/// goes), borrowing the new states from `scan`.
pub fn diff_walk<'s>(
    scan: &'s [Entry],
    index: &mut (impl IndexWalk + ?Sized),
    unreadable: &[RelPath],
    compare: Compare,
) -> PlanRef<'s> {
    let mut plan = PlanRef::default();
    let mut scan = scan.iter().peekable();
    let under_unreadable = |path: &[u8]| unreadable.iter().any(|d| is_below(path, d));
    loop {
        let (op, old) = match (scan.peek(), index.current()) {
            (None, None) => break,
            (Some(_), None) => (Op::New, None),
            (None, Some(old)) => (Op::Deleted, Some(old)),
            (Some(new), Some(old)) => match new.path.as_bytes().cmp(old.path) {
                Ordering::Less => (Op::New, None),
                Ordering::Greater => (Op::Deleted, Some(old)),
                Ordering::Equal if same(old, new, compare) => {
                    plan.unchanged += 1;
                    index.advance();
                    scan.next();
                    continue;
                }
                Ordering::Equal => (Op::Changed, Some(old)),
            },
        };
        if op == Op::Deleted && old.is_some_and(|old| under_unreadable(old.path)) {
            plan.kept_unreadable += 1;
            index.advance();
            continue;
        }
        let old = old.map(|old| Box::new(old.to_entry()));
        if old.is_some() {
            index.advance();
        }
        let new = if op == Op::Deleted { None } else { scan.next() };
        plan.changes.push(ChangeRef { op, old, new });
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
