//! Scan x stored index -> plan. Pure: a merge of two sorted lists.
//!
//! The plan is a plain value: `--dry-run` prints it (it serializes), a real
//! run applies it ([`crate::apply`]). Its changes borrow the new states from
//! the scan, so that a first run does not hold every entry twice; the old
//! states (a changed or deleted path: few) are owned. Each change says what
//! happens to the mirror and, from the tracked flags before and after, what
//! the increment records ([`Change::history_op`]).
//!
//! An entry whose `lstat` metadata matches the index but whose ctime moved
//! may have new extended attributes: the diff lists it as a [`Recheck`], and
//! [`resolve`] turns each recheck into a change or a [`Change::Touch`] once
//! the caller has read the attributes (the only metadata a no-change run
//! does not read, SPEC §3).

use std::cmp::Ordering;

use serde::{Serialize, Serializer};

use crate::entry::{Entry, EntryRef, EntryWalk, Hash, Kind, RelPath, is_below};

/// How the diff decides that an entry changed.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// Kind, size, mtime, permission bits, owner, group and hardlink group;
    /// extended attributes where the ctime moved since the index.
    #[default]
    Metadata,
    /// The metadata, and the content hash of every file (slow: reads all).
    Checksum,
}

pub use crate::entry::Op;

/// One planned change of the mirror, as [`Changes`] hands it out: a view
/// (references into the scan and into the plan), so it is `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// The path is not in the mirror yet.
    New(&'a Entry),
    /// The path is in the mirror and stays of the same kind (a file or
    /// symlink, or a directory).
    Changed {
        /// The state in the index and the state in the scan.
        states: &'a States<'a>,
        /// The mirror needs the source's data or metadata (a copy, or a
        /// directory's metadata set); `false` when only the tracked flag
        /// changed.
        copy: bool,
    },
    /// The path leaves the mirror.
    Deleted(&'a Entry),
    /// Nothing changes but the ctime the index keeps (the xattrs were read
    /// and are the same; the index's hash and xattrs stand).
    Touch(&'a States<'a>),
}

/// A change that is not a new entry of the scan (few), as [`Changes`]
/// holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned<'s> {
    /// See [`Change::New`] (a scan entry beyond what a slot can index).
    New(&'s Entry),
    /// See [`Change::Changed`].
    Changed {
        /// The state in the index and the state in the scan.
        states: States<'s>,
        /// See [`Change::Changed`].
        copy: bool,
    },
    /// See [`Change::Deleted`].
    Deleted(Entry),
    /// See [`Change::Touch`].
    Touch(States<'s>),
}

impl<'s> Owned<'s> {
    fn view(&self) -> Change<'_> {
        match self {
            Owned::New(e) => Change::New(e),
            Owned::Changed { states, copy } => Change::Changed {
                states,
                copy: *copy,
            },
            Owned::Deleted(e) => Change::Deleted(e),
            Owned::Touch(states) => Change::Touch(states),
        }
    }
}

/// A plan's changes in order, as runs: a run is consecutive changes that
/// are consecutive new entries of the scan (named by where they start in
/// it), or consecutive [`Owned`] changes (the few that carry an old state).
/// A first run's plan (every selected entry new) is one run, whatever the
/// number of files; a run of changes costs 8 bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes<'s> {
    scan: &'s [Entry],
    runs: Vec<Run>,
    len: usize,
    owned: Vec<Owned<'s>>,
}

/// Changes `at..` (up to the next run) are `scan[from..]`, or with
/// [`Run::OWNED`] set in `from`, the owned changes from `from & !OWNED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    at: u32,
    from: u32,
}

impl Run {
    const OWNED: u32 = 1 << 31;

    fn owned(self) -> bool {
        self.from & Run::OWNED != 0
    }

    fn start(self) -> usize {
        (self.from & !Run::OWNED) as usize
    }
}

impl<'s> Changes<'s> {
    /// No changes yet, of new entries taken from `scan`.
    pub fn new(scan: &'s [Entry]) -> Changes<'s> {
        Changes {
            scan,
            runs: Vec::new(),
            len: 0,
            owned: Vec::new(),
        }
    }

    /// Add the new entry `scan[i]`.
    pub fn push_new(&mut self, i: usize) {
        if i < Run::OWNED as usize {
            self.push_ref(false, i);
        } else {
            self.push(Owned::New(&self.scan[i]));
        }
    }

    /// Add a change of another kind.
    pub fn push(&mut self, change: Owned<'s>) {
        self.owned.push(change);
        self.push_ref(true, self.owned.len() - 1);
    }

    /// Add change number `len`: `scan[i]`, or (`owned`) `self.owned[i]`.
    fn push_ref(&mut self, owned: bool, i: usize) {
        // A plan of 2^31 changes would need a scan or an index of hundreds
        // of GiB first.
        let at = u32::try_from(self.len).expect("fewer than 2^31 changes");
        let from = u32::try_from(i)
            .ok()
            .filter(|&i| i < Run::OWNED)
            .expect("fewer than 2^31 changed or deleted paths");
        let continues = self
            .runs
            .last()
            .is_some_and(|r| r.owned() == owned && r.start() + (self.len - r.at as usize) == i);
        if !continues {
            let flag = if owned { Run::OWNED } else { 0 };
            self.runs.push(Run {
                at,
                from: from | flag,
            });
        }
        self.len += 1;
    }

    /// How many changes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Change `i`.
    pub fn get(&self, i: usize) -> Change<'_> {
        assert!(i < self.len, "change {i} of {}", self.len);
        let k = self.runs.partition_point(|r| r.at as usize <= i) - 1;
        let r = self.runs[k];
        self.view(r.owned(), r.start() + (i - r.at as usize))
    }

    fn view(&self, owned: bool, j: usize) -> Change<'_> {
        if owned {
            self.owned[j].view()
        } else {
            Change::New(&self.scan[j])
        }
    }

    /// The changes in order.
    pub fn iter(&self) -> impl Iterator<Item = Change<'_>> + '_ {
        refs(&self.runs, self.len).map(|(owned, j)| self.view(owned, j))
    }

    /// Keep the changes `keep` says yes to (the runs are rebuilt as the
    /// kept changes are pushed again: nothing is collected on the way).
    pub fn retain(&mut self, mut keep: impl FnMut(Change<'_>) -> bool) {
        let runs = std::mem::take(&mut self.runs);
        let len = std::mem::take(&mut self.len);
        for (owned, j) in refs(&runs, len) {
            if keep(self.view(owned, j)) {
                self.push_ref(owned, j);
            }
        }
    }

    /// Give back what the lists grew by doubling.
    pub fn shrink_to_fit(&mut self) {
        self.runs.shrink_to_fit();
        self.owned.shrink_to_fit();
    }
}

/// Where each of the `len` changes that `runs` hold is, in order: (owned,
/// index in the scan or in the owned changes).
fn refs(runs: &[Run], len: usize) -> impl Iterator<Item = (bool, usize)> + '_ {
    runs.iter().enumerate().flat_map(move |(k, r)| {
        let end = runs.get(k + 1).map_or(len, |n| n.at as usize);
        (0..end - r.at as usize).map(move |o| (r.owned(), r.start() + o))
    })
}

impl Serialize for Changes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// A path's state in the index and in the scan, for a change that has
/// both (or a [`Recheck`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct States<'s> {
    /// The state in the index.
    pub old: Entry,
    /// The state in the scan.
    pub new: &'s Entry,
}

impl<'a> Change<'a> {
    /// The path concerned.
    pub fn path(self) -> &'a RelPath {
        match self {
            Change::New(e) | Change::Deleted(e) => &e.path,
            Change::Changed { states, .. } | Change::Touch(states) => &states.new.path,
        }
    }

    /// The state in the index, if the path is there.
    pub fn old(self) -> Option<&'a Entry> {
        match self {
            Change::Changed { states, .. } | Change::Touch(states) => Some(&states.old),
            Change::Deleted(old) => Some(old),
            Change::New(_) => None,
        }
    }

    /// The state in the scan, unless the path leaves.
    pub fn new_entry(self) -> Option<&'a Entry> {
        match self {
            Change::New(e) => Some(e),
            Change::Changed { states, .. } | Change::Touch(states) => Some(states.new),
            Change::Deleted(_) => None,
        }
    }

    /// The kind of entry concerned (the new one, or the one that leaves).
    pub fn kind(self) -> Kind {
        match self.new_entry() {
            Some(e) => e.meta.kind,
            None => self.old().expect("a deletion has an old state").meta.kind,
        }
    }

    /// A file or symlink that the apply brings in, changes or removes (a
    /// touch changes only the index; directories are made by the way):
    /// what progress counts.
    pub fn is_file_work(self) -> bool {
        self.kind() != Kind::Dir && !matches!(self, Change::Touch(_))
    }

    /// Whether the mirror needs the source (a copy, or directory metadata).
    pub fn needs_source(self) -> bool {
        match self {
            Change::New(_) => true,
            Change::Changed { copy, .. } => copy,
            Change::Deleted(_) | Change::Touch(_) => false,
        }
    }

    /// The mirror op's word, as `--dry-run` prints it.
    pub fn op_word(self) -> &'static str {
        match self {
            Change::New(_) => "new",
            Change::Changed { .. } => "changed",
            Change::Deleted(_) => "deleted",
            Change::Touch(_) => "touch",
        }
    }

    /// What the increment records for this path: tracked entries entering,
    /// changing or leaving the tracked set. `None` for included-only
    /// entries and for touches.
    pub fn history_op(self) -> Option<Op> {
        let (was, is) = match self {
            Change::New(e) => (false, e.tracked),
            Change::Changed { states, .. } => (states.old.tracked, states.new.tracked),
            Change::Deleted(e) => (e.tracked, false),
            Change::Touch(_) => return None,
        };
        match (was, is) {
            (false, false) => None,
            (false, true) => Some(Op::New),
            (true, false) => Some(Op::Deleted),
            (true, true) => Some(Op::Changed),
        }
    }

    /// Whether the entry concerned is tracked (after the change, or before
    /// it for a deletion).
    pub fn tracked(self) -> bool {
        match self.new_entry() {
            Some(e) => e.tracked,
            None => self.old().is_some_and(|e| e.tracked),
        }
    }
}

impl Serialize for Change<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Row<'a> {
            path: &'a RelPath,
            op: &'static str,
            kind: &'static str,
            tracked: bool,
            history: Option<Op>,
        }
        Row {
            path: self.path(),
            op: self.op_word(),
            kind: self.kind().as_str(),
            tracked: self.tracked(),
            history: self.history_op(),
        }
        .serialize(s)
    }
}

/// What a run will do, computed before anything is touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan<'s> {
    /// Every change, sorted by path (for one path, a deletion before the
    /// new entry that replaces it).
    pub changes: Changes<'s>,
    /// Entries whose mirror copy is up to date.
    pub unchanged: u64,
    /// Index entries kept because their directory could not be read (or a
    /// mount point inside the source is missing).
    pub kept: u64,
}

impl Plan<'_> {
    /// Nothing to do (touches included: they rewrite the index).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Changes that remove a path from the mirror.
    pub fn removals(&self) -> u64 {
        self.changes
            .iter()
            .filter(|c| matches!(c, Change::Deleted(_)))
            .count() as u64
    }

    /// The bytes of file content the apply copies from the source.
    pub fn bytes_to_copy(&self) -> u64 {
        self.changes
            .iter()
            .filter(|c| c.kind() == Kind::File && c.needs_source())
            .filter_map(|c| c.new_entry())
            .map(|e| e.meta.size)
            .sum()
    }

    /// Changes other than touches (what a dry run lists).
    pub fn visible(&self) -> impl Iterator<Item = Change<'_>> {
        self.changes
            .iter()
            .filter(|c| !matches!(c, Change::Touch(_)))
    }
}

/// An entry whose metadata matches the index but whose ctime moved (or
/// whose xattrs the index does not know): its xattrs must be read and
/// compared before it is known whether it changed.
pub type Recheck<'s> = States<'s>;

/// A diff before its rechecks are resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff<'s> {
    /// The plan without the rechecks.
    pub plan: Plan<'s>,
    /// Entries to look at again, sorted by path.
    pub rechecks: Vec<Recheck<'s>>,
}

/// What [`same`] says of an index entry and a scanned one.
enum Sameness {
    Same,
    Recheck,
    Different,
}

fn same(old: &EntryRef<'_>, new: &Entry, compare: Compare) -> Sameness {
    if old.meta != new.meta || old.tracked != new.tracked {
        return Sameness::Different;
    }
    if compare == Compare::Checksum
        && new.meta.kind != Kind::Dir
        && (old.hash.is_none() || old.hash != new.hash())
    {
        return Sameness::Different;
    }
    if !old.ctime.same(new.ctime) || old.xattrs.is_none() {
        return Sameness::Recheck;
    }
    Sameness::Same
}

/// Whether the old entry's data must be copied afresh for the new one.
fn needs_copy(old: &EntryRef<'_>, new: &Entry) -> bool {
    old.meta != new.meta || (new.hash().is_some() && old.hash != new.hash())
}

/// Compare the scan with the index walked in order (an index file read as
/// it goes, or entries in memory), borrowing the new states from `scan`.
/// Both are sorted by path. Index entries below a directory of `keep` (an
/// unreadable directory, a missing mount point) are kept as they are.
pub fn diff<'s>(
    scan: &'s [Entry],
    index: &mut (impl EntryWalk + ?Sized),
    keep: &[RelPath],
    compare: Compare,
) -> Diff<'s> {
    let mut out = Diff {
        plan: Plan {
            changes: Changes::new(scan),
            ..Plan::default()
        },
        rechecks: Vec::new(),
    };
    let plan = &mut out.plan;
    let mut scan = scan.iter().enumerate().peekable();
    let kept_below = |path: &[u8]| keep.iter().any(|d| is_below(path, d.as_bytes()));
    loop {
        let order = match (scan.peek(), index.current()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((_, new)), Some(old)) => new.path.as_bytes().cmp(old.path),
        };
        match order {
            Ordering::Less => {
                plan.changes.push_new(scan.next().expect("peeked").0);
            }
            Ordering::Greater => {
                let old = index.current().expect("an index entry");
                if kept_below(old.path) {
                    plan.kept += 1;
                } else {
                    plan.changes.push(Owned::Deleted(old.to_entry()));
                }
                index.advance();
            }
            Ordering::Equal => {
                let (i, new) = scan.next().expect("peeked");
                let old = index.current().expect("an index entry");
                let dir_then = old.meta.kind == Kind::Dir;
                let dir_now = new.meta.kind == Kind::Dir;
                if dir_then != dir_now {
                    // A file replaced by a directory, or the reverse: the
                    // old one leaves, the new one is new.
                    plan.changes.push(Owned::Deleted(old.to_entry()));
                    plan.changes.push_new(i);
                } else {
                    match same(&old, new, compare) {
                        Sameness::Same => plan.unchanged += 1,
                        Sameness::Recheck => out.rechecks.push(States {
                            old: old.to_entry(),
                            new,
                        }),
                        Sameness::Different => plan.changes.push(Owned::Changed {
                            copy: needs_copy(&old, new),
                            states: States {
                                old: old.to_entry(),
                                new,
                            },
                        }),
                    }
                }
                index.advance();
            }
        }
    }
    out
}

/// Finish a diff: each recheck whose xattrs (`digests[i]`, read by the
/// caller; `None` when they could not be read, which counts as a change)
/// match the index becomes a touch, the others a change that copies.
pub fn resolve<'s>(diff: Diff<'s>, digests: &[Option<Hash>]) -> Plan<'s> {
    let Diff { mut plan, rechecks } = diff;
    if rechecks.is_empty() {
        return plan;
    }
    // Merge two path-sorted lists (a recheck's path is never in the plan);
    // the rechecks become touches or changes.
    let Changes {
        scan,
        runs,
        len,
        owned,
    } = std::mem::take(&mut plan.changes);
    let mut owned: Vec<Option<Owned<'s>>> = owned.into_iter().map(Some).collect();
    let mut changes = Changes::new(scan);
    fn path<'x>(scan: &'x [Entry], owned: &'x [Option<Owned<'_>>], at: (bool, usize)) -> &'x [u8] {
        match at {
            (true, j) => owned[j]
                .as_ref()
                .expect("not taken yet")
                .view()
                .path()
                .as_bytes(),
            (false, j) => scan[j].path.as_bytes(),
        }
    }
    let mut a = refs(&runs, len).peekable();
    let mut b = rechecks.into_iter().zip(digests).peekable();
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(&x), Some((y, _))) => path(scan, &owned, x) <= y.new.path.as_bytes(),
        };
        if take_a {
            match a.next().expect("peeked") {
                (false, j) => changes.push_new(j),
                (true, j) => changes.push(owned[j].take().expect("taken once")),
            }
        } else {
            let (r, digest) = b.next().expect("peeked");
            changes.push(match digest {
                Some(d) if r.old.xattrs() == Some(*d) => {
                    plan.unchanged += 1;
                    Owned::Touch(r)
                }
                _ => Owned::Changed {
                    states: r,
                    copy: true,
                },
            });
        }
    }
    plan.changes = changes;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{ChangeTime, Digests, Meta, NO_XATTRS, SliceWalk, Timestamp};

    fn e(path: &str, size: u64, tracked: bool) -> Entry {
        Entry {
            path: RelPath::from_bytes(path.as_bytes()),
            meta: Meta {
                kind: Kind::File,
                size,
                mtime: Timestamp {
                    sec: 1_700_000_000,
                    nsec: 5,
                },
                mode: 0o644,
                uid: 0,
                gid: 0,
                link: 0,
            },
            ctime: ChangeTime::default(),
            tracked,
            digests: Digests::new(None, Some(NO_XATTRS)),
        }
    }

    fn plan<'s>(scan: &'s [Entry], index: &[Entry], keep: &[RelPath]) -> Plan<'s> {
        let d = diff(scan, &mut SliceWalk(index), keep, Compare::Metadata);
        assert!(d.rechecks.is_empty());
        d.plan
    }

    fn ops(plan: &Plan<'_>) -> Vec<(String, &'static str, Option<Op>)> {
        plan.changes
            .iter()
            .map(|c| (c.path().to_string(), c.op_word(), c.history_op()))
            .collect()
    }

    #[test]
    fn changes_are_runs_read_the_same_by_index_and_in_order() {
        let scan: Vec<Entry> = (0..6).map(|i| e(&format!("f{i}"), 1, true)).collect();
        let mut c = Changes::new(&scan);
        for i in 0..6 {
            c.push_new(i);
        }
        // A first run: one run, however many entries.
        assert_eq!(c.runs.len(), 1);
        let mut c = Changes::new(&scan);
        c.push_new(0);
        c.push_new(1);
        c.push(Owned::Deleted(e("f1x", 1, true)));
        c.push(Owned::Deleted(e("f1y", 1, true)));
        c.push_new(3);
        c.push_new(5);
        assert_eq!(c.runs.len(), 4);
        let want = ["f0", "f1", "f1x", "f1y", "f3", "f5"];
        let in_order: Vec<String> = c.iter().map(|c| c.path().to_string()).collect();
        let by_index: Vec<String> = (0..c.len()).map(|i| c.get(i).path().to_string()).collect();
        assert_eq!(in_order, want);
        assert_eq!(by_index, want);
        assert!(matches!(c.get(3), Change::Deleted(_)));
        c.retain(|c| !matches!(c, Change::Deleted(_)) && c.path().as_bytes() != b"f3");
        let kept: Vec<String> = (0..c.len()).map(|i| c.get(i).path().to_string()).collect();
        assert_eq!(kept, ["f0", "f1", "f5"]);
        assert_eq!(c.runs.len(), 2);
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
        let p = plan(&scan, &index, &[]);
        assert_eq!(
            ops(&p),
            [
                ("b".into(), "changed", Some(Op::Changed)),
                ("c".into(), "changed", None),
                ("d".into(), "deleted", Some(Op::Deleted)),
                ("e".into(), "new", Some(Op::New)),
            ]
        );
        assert_eq!(p.unchanged, 1);
    }

    #[test]
    fn tracked_flag_changes_enter_and_leave_history_without_a_copy() {
        let index = [e("a", 1, false), e("b", 1, true)];
        let scan = [e("a", 1, true), e("b", 1, false)];
        let p = plan(&scan, &index, &[]);
        assert_eq!(
            ops(&p),
            [
                ("a".into(), "changed", Some(Op::New)),
                ("b".into(), "changed", Some(Op::Deleted)),
            ]
        );
        assert!(p.changes.iter().all(|c| !c.needs_source()));
    }

    #[test]
    fn metadata_only_changes_are_changes() {
        let index = [e("a", 1, true), e("b", 1, true), e("c", 1, true)];
        let mut scan = [e("a", 1, true), e("b", 1, true), e("c", 1, true)];
        scan[0].meta.mode = 0o600;
        scan[1].meta.uid = 1000;
        scan[2].meta.link = 42;
        let p = plan(&scan, &index, &[]);
        assert_eq!(p.changes.len(), 3);
        assert!(p.changes.iter().all(|c| c.needs_source()));
    }

    #[test]
    fn a_file_replaced_by_a_directory_is_deleted_then_new() {
        let index = [e("x", 1, true)];
        let mut dir = e("x", 0, true);
        dir.meta.kind = Kind::Dir;
        let scan = [dir, e("x/y", 1, true)];
        assert_eq!(
            ops(&plan(&scan, &index, &[])),
            [
                ("x".into(), "deleted", Some(Op::Deleted)),
                ("x".into(), "new", Some(Op::New)),
                ("x/y".into(), "new", Some(Op::New)),
            ]
        );
    }

    #[test]
    fn kept_directories_keep_their_entries() {
        let index = [e("locked/a", 1, true), e("locked2", 1, true)];
        let keep = [RelPath::from_bytes(b"locked")];
        let p = plan(&[], &index, &keep);
        assert_eq!(ops(&p), [("locked2".into(), "deleted", Some(Op::Deleted))]);
        assert_eq!(p.kept, 1);
    }

    #[test]
    fn an_unknown_ctime_is_always_rechecked() {
        // Far off (a clock beyond 2262): the same unknown ctime in the
        // index and the scan is no proof that nothing moved.
        let far: ChangeTime = Timestamp {
            sec: i64::MAX / 2,
            nsec: 0,
        }
        .into();
        let mut index = [e("a", 1, true)];
        let mut scan = [e("a", 1, true)];
        index[0].ctime = far;
        scan[0].ctime = far;
        let d = diff(&scan, &mut SliceWalk(&index), &[], Compare::Metadata);
        assert_eq!(d.rechecks.len(), 1);
    }

    #[test]
    fn a_moved_ctime_is_rechecked_and_resolved_by_the_xattrs() {
        let index = [e("a", 1, true), e("b", 1, true), e("c", 2, true)];
        let mut scan = [e("a", 1, true), e("b", 1, true), e("c", 3, true)];
        scan[0].ctime = Timestamp { sec: 5, nsec: 0 }.into();
        scan[1].ctime = Timestamp { sec: 5, nsec: 0 }.into();
        let d = diff(&scan, &mut SliceWalk(&index), &[], Compare::Metadata);
        assert_eq!(d.rechecks.len(), 2);
        let other = Hash([7; 16]);
        let p = resolve(d, &[Some(NO_XATTRS), Some(other)]);
        assert_eq!(
            ops(&p),
            [
                ("a".into(), "touch", None),
                ("b".into(), "changed", Some(Op::Changed)),
                ("c".into(), "changed", Some(Op::Changed)),
            ]
        );
        assert!(p.changes.get(1).needs_source());
        assert_eq!(p.visible().count(), 2);
    }

    #[test]
    fn checksum_compare_sees_same_metadata_other_content() {
        let mut old = e("a", 1, true);
        old.set_hash(Some(Hash::of(b"x")));
        let mut new = e("a", 1, true);
        new.set_hash(Some(Hash::of(b"y")));
        let index = [old];
        let scan = [new];
        let d = diff(&scan, &mut SliceWalk(&index), &[], Compare::Metadata);
        assert!(d.plan.is_empty() && d.rechecks.is_empty());
        let d = diff(&scan, &mut SliceWalk(&index), &[], Compare::Checksum);
        assert_eq!(d.plan.changes.len(), 1);
        assert!(d.plan.changes.get(0).needs_source());
    }
}
