//! Plan -> mirror + increment, on the shared pool.
//!
//! Takes a plan's changes and where they apply ([`Target`]: the source, the
//! mirror, the increment being written, all as descriptors); returns an
//! [`Outcome`] per change, by change index ([`Outcomes`]). Four phases:
//!
//! 1. removals: a tracked file moves into the increment's `deleted/` (its
//!    last version), an included-only one is unlinked; then the directories
//!    that leave, deepest first;
//! 2. new directories, parents first, created private (0700);
//! 3. new and changed files and symlinks, in parallel: the source opened
//!    beneath its root (no symlink on the way), copied into an anonymous
//!    inode in the mirror directory (holes kept), given its owner, xattrs,
//!    mode and times *before* it gets a name, then linked in (a new path) or
//!    renamed over the old version (a changed one), and hardlinked into
//!    `track/` when tracked. The names of one source inode (a hardlink
//!    group) become one mirror inode: the first is copied, the others linked
//!    to it;
//! 4. directory metadata, deepest first, once what they hold is in place:
//!    new and changed directories get the source's owner, xattrs, mode and
//!    times; directories whose content the run touched get their mtime back.
//!
//! The one rule that matters: a mirror file is never written, `chmod`ed,
//! `chown`ed or `setxattr`ed in place, because an increment may share its
//! inode. Every new version is a new inode. (Directories are never shared
//! with an increment, so they are updated in place.)

use std::collections::{HashMap, HashSet};
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::diff::{Change, Changes};
use crate::entry::Stats;
use crate::entry::{
    ChangeTime, Digests, Entry, ErrorKind, Hash, Kind, LinkKey, Meta, NO_XATTRS, Op, PathError,
    RelPath, Xattrs,
};
use crate::faults::Faults;
use crate::fs::copy::{CopyError, copy_data};
use crate::fs::{Degraded, Dir, FileTypeOf, Finish, finish, fstat, is_root, xattr};
use crate::progress::Progress;
use crate::store::commit::Update;
use crate::store::meta::FileRecord;
use crate::store::{IncrementDir, Part};

/// Where a plan is applied.
pub struct Target<'a> {
    /// The source tree.
    pub source: &'a Dir,
    /// `mirror/`.
    pub mirror: &'a Dir,
    /// `.strata/tmp/`, on the mirror's filesystem.
    pub tmp: &'a Dir,
    /// The increment being written.
    pub increment: &'a IncrementDir,
    /// Paths that already have an entry in the increment (carried over from
    /// an interrupted run): replaced where this run records something else.
    pub carried: &'a HashSet<RelPath>,
    /// The whole scan: the directories whose mtime the run must put back,
    /// and the unchanged names of a hardlink group.
    pub scan: &'a [Entry],
    /// Put back the metadata of every directory, not only of those the run
    /// touches (after a repair, when an interrupted run may have touched
    /// any).
    pub redo_dirs: bool,
    /// Fault points and injected failures.
    pub faults: &'a Faults,
    /// Where progress goes (files and bytes as they are copied).
    pub progress: &'a dyn Progress,
    /// What could not be kept, reported once per run.
    pub degraded: &'a Degraded,
    /// Bytes copied from the source by the changes done (a failed change
    /// counts none).
    pub copied: &'a AtomicU64,
}

/// What happened to one change, as the work on it returns it; the run
/// keeps it in [`Outcomes`].
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Done.
    Applied(Applied),
    /// Not done; the mirror keeps its previous version of the path.
    Failed(Box<PathError>),
}

/// A change carried out. Together with its [`Change`] it gives the mirror's
/// new state for the path and the increment's record; it holds only what
/// the change does not: what nearly every file has (a hash, no xattrs)
/// inline, the rest in one box that most outcomes do not have. The bytes
/// copied are counted once per run ([`Target::copied`]), not per outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// What the increment recorded (`None`: nothing, for an included-only
    /// entry, or a removed file that was already gone).
    pub recorded: Option<Op>,
    /// The increment got a copy because the filesystem refused a link.
    pub copied_not_linked: bool,
    /// Content hash of the mirror's new version: of the copy, or the old
    /// version's when nothing was copied.
    pub hash: Option<Hash>,
    /// Where [`Applied::xattrs`] is.
    xattrs: XattrsDigest,
    /// The fields that few outcomes have.
    rare: Option<Box<Rare>>,
}

/// How an [`Applied`] holds its xattrs digest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum XattrsDigest {
    /// Not known.
    #[default]
    Unknown,
    /// [`NO_XATTRS`]: nearly every file's.
    Empty,
    /// Another digest, in [`Rare::xattrs`].
    Rare,
}

/// What few [`Applied`]s have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rare {
    /// The xattrs digest, when it is not [`NO_XATTRS`].
    xattrs: Option<Hash>,
    /// The xattrs themselves, for the increment's record (none: empty).
    xattr_data: Option<Xattrs>,
    /// The metadata and ctime of what was copied when they are not the
    /// scan's (the entry changed between the scan and the copy, and not
    /// during it).
    meta: Option<(Meta, ChangeTime)>,
}

impl Applied {
    /// An outcome that records `recorded` and leaves the mirror's version
    /// with `hash` and the xattrs digest `xattrs`.
    pub fn new(recorded: Option<Op>, hash: Option<Hash>, xattrs: Option<Hash>) -> Applied {
        let mut applied = Applied {
            recorded,
            hash,
            ..Applied::default()
        };
        applied.set_xattrs(xattrs);
        applied
    }

    /// Borrow it as an [`AppliedRef`].
    pub fn view(&self) -> AppliedRef<'_> {
        AppliedRef {
            recorded: self.recorded,
            copied_not_linked: self.copied_not_linked,
            hash: self.hash,
            xattrs: self.xattrs,
            rare: self.rare.as_deref(),
        }
    }

    /// Digest of the xattrs the mirror's version has.
    pub fn xattrs(&self) -> Option<Hash> {
        self.view().xattrs()
    }

    /// Set [`Applied::xattrs`].
    pub fn set_xattrs(&mut self, digest: Option<Hash>) {
        self.xattrs = match digest {
            None => XattrsDigest::Unknown,
            Some(NO_XATTRS) => XattrsDigest::Empty,
            Some(_) => XattrsDigest::Rare,
        };
        if self.xattrs == XattrsDigest::Rare {
            self.rare_mut().xattrs = digest;
        } else if let Some(rare) = &mut self.rare {
            rare.xattrs = None;
        }
    }

    /// The xattrs themselves, for the increment's record (none: empty).
    pub fn xattr_data(&self) -> Option<&Xattrs> {
        self.rare.as_ref()?.xattr_data.as_ref()
    }

    /// Set [`Applied::xattr_data`].
    pub fn set_xattr_data(&mut self, xattrs: Xattrs) {
        self.rare_mut().xattr_data = Some(xattrs);
    }

    /// The metadata and ctime of what was copied when they are not the
    /// scan's (the entry changed between the scan and the copy, and not
    /// during it).
    pub fn meta(&self) -> Option<(Meta, ChangeTime)> {
        self.view().meta()
    }

    /// Set [`Applied::meta`].
    pub fn set_meta(&mut self, meta: (Meta, ChangeTime)) {
        self.rare_mut().meta = Some(meta);
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }
}

/// An [`Applied`] as [`Outcomes`] keeps it: its rare fields borrowed.
#[derive(Debug, Clone, Copy)]
pub struct AppliedRef<'a> {
    /// See [`Applied::recorded`].
    pub recorded: Option<Op>,
    /// See [`Applied::copied_not_linked`].
    pub copied_not_linked: bool,
    /// See [`Applied::hash`].
    pub hash: Option<Hash>,
    xattrs: XattrsDigest,
    rare: Option<&'a Rare>,
}

impl<'a> AppliedRef<'a> {
    /// Digest of the xattrs the mirror's version has.
    pub fn xattrs(&self) -> Option<Hash> {
        match self.xattrs {
            XattrsDigest::Unknown => None,
            XattrsDigest::Empty => Some(NO_XATTRS),
            XattrsDigest::Rare => self.rare.and_then(|r| r.xattrs),
        }
    }

    /// The xattrs themselves, for the increment's record (none: empty).
    pub fn xattr_data(&self) -> Option<&'a Xattrs> {
        self.rare?.xattr_data.as_ref()
    }

    /// See [`Applied::meta`].
    pub fn meta(&self) -> Option<(Meta, ChangeTime)> {
        self.rare?.meta
    }

    /// The mirror's new state for `change`'s path (`None`: removed).
    pub fn entry(&self, change: Change<'_>) -> Option<Entry> {
        let mut entry = change.new_entry()?.clone();
        if let Some((meta, ctime)) = self.meta() {
            entry.meta = meta;
            entry.ctime = ctime;
        }
        entry.digests = Digests::new(self.hash, self.xattrs());
        Some(entry)
    }

    /// What the increment records for `change`'s path.
    pub fn record(&self, change: Change<'_>) -> Option<FileRecord> {
        let op = self.recorded?;
        let none = Xattrs::default();
        match op {
            Op::Deleted => {
                // The version that leaves: the old state (for a path leaving
                // the tracked set, the one that was tracked).
                let old = change.old()?;
                Some(FileRecord::new(old, Op::Deleted, &none))
            }
            op => {
                let entry = self.entry(change)?;
                Some(FileRecord::new(
                    &entry,
                    op,
                    self.xattr_data().unwrap_or(&none),
                ))
            }
        }
    }
}

/// The outcomes of a plan's changes, by change index, as columns: a first
/// run has one per file, and nearly every one is "done, this hash, no
/// xattrs". So each change has 17 bytes ([`Slot`]: the hash and a byte of
/// flags, not a 32-byte [`Outcome`]), and what few have besides (a
/// failure, xattrs, metadata that moved) sits in a map by change index.
#[derive(Debug, Default)]
pub struct Outcomes {
    slots: Vec<Slot>,
    rest: HashMap<u32, Rest>,
}

/// One change's outcome in [`Outcomes`]: the hash, when [`Slot::HASH`]
/// says there is one, and the flags.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    hash: [u8; 16],
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 17);

/// What an outcome of [`Outcomes`] has besides its [`Slot`].
#[derive(Debug)]
enum Rest {
    Failed(Box<PathError>),
    Rare(Box<Rare>),
}

impl Slot {
    /// Bits 0-1: the op recorded (0: none).
    const RECORDED: u8 = 0b11;
    /// [`Applied::copied_not_linked`].
    const COPIED: u8 = 1 << 2;
    /// [`Slot::hash`] holds the hash.
    const HASH: u8 = 1 << 3;
    /// Bits 4-5: the [`XattrsDigest`].
    const XATTRS: u8 = 0b11 << 4;
    /// Bits 6-7: the state (0: not done yet).
    const STATE: u8 = 0b11 << 6;
    const APPLIED: u8 = 1 << 6;
    /// Applied, with a [`Rest::Rare`].
    const APPLIED_RARE: u8 = 2 << 6;
    /// Failed, with its [`Rest::Failed`].
    const FAILED: u8 = 3 << 6;

    fn state(self) -> u8 {
        self.flags & Slot::STATE
    }

    fn of(a: &Applied) -> Slot {
        let recorded = match a.recorded {
            None => 0,
            Some(Op::New) => 1,
            Some(Op::Changed) => 2,
            Some(Op::Deleted) => 3,
        };
        let xattrs = match a.xattrs {
            XattrsDigest::Unknown => 0,
            XattrsDigest::Empty => 1,
            XattrsDigest::Rare => 2,
        };
        let state = if a.rare.is_some() {
            Slot::APPLIED_RARE
        } else {
            Slot::APPLIED
        };
        let mut flags = recorded | xattrs << 4 | state;
        if a.copied_not_linked {
            flags |= Slot::COPIED;
        }
        if a.hash.is_some() {
            flags |= Slot::HASH;
        }
        Slot {
            hash: a.hash.map_or([0; 16], |h| h.0),
            flags,
        }
    }

    fn view(self, rare: Option<&Rare>) -> AppliedRef<'_> {
        AppliedRef {
            recorded: match self.flags & Slot::RECORDED {
                0 => None,
                1 => Some(Op::New),
                2 => Some(Op::Changed),
                _ => Some(Op::Deleted),
            },
            copied_not_linked: self.flags & Slot::COPIED != 0,
            hash: (self.flags & Slot::HASH != 0).then_some(Hash(self.hash)),
            xattrs: match (self.flags & Slot::XATTRS) >> 4 {
                0 => XattrsDigest::Unknown,
                1 => XattrsDigest::Empty,
                _ => XattrsDigest::Rare,
            },
            rare,
        }
    }
}

impl Outcomes {
    /// Room for `n` changes, none done.
    pub fn new(n: usize) -> Outcomes {
        Outcomes {
            slots: vec![Slot::default(); n],
            rest: HashMap::new(),
        }
    }

    /// How many changes there are room for.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is room for none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether change `i` has its outcome.
    pub fn is_done(&self, i: usize) -> bool {
        self.slots[i].state() != 0
    }

    /// Give change `i` its outcome (replacing one it had).
    pub fn set(&mut self, i: usize, outcome: Outcome) {
        let key = i as u32;
        match outcome {
            Outcome::Applied(mut a) => {
                self.slots[i] = Slot::of(&a);
                match a.rare.take() {
                    Some(rare) => self.rest.insert(key, Rest::Rare(rare)),
                    None => self.rest.remove(&key),
                };
            }
            Outcome::Failed(e) => {
                self.slots[i] = Slot {
                    hash: [0; 16],
                    flags: Slot::FAILED,
                };
                self.rest.insert(key, Rest::Failed(e));
            }
        }
    }

    /// Take change `i`'s outcome out (to change it and set it again);
    /// `None` when it has none.
    pub fn take(&mut self, i: usize) -> Option<Outcome> {
        let slot = std::mem::take(&mut self.slots[i]);
        let rest = self.rest.remove(&(i as u32));
        match (slot.state(), rest) {
            (0, _) => None,
            (_, Some(Rest::Failed(e))) => Some(Outcome::Failed(e)),
            (_, rest) => {
                let v = slot.view(None);
                Some(Outcome::Applied(Applied {
                    recorded: v.recorded,
                    copied_not_linked: v.copied_not_linked,
                    hash: v.hash,
                    xattrs: v.xattrs,
                    rare: match rest {
                        Some(Rest::Rare(rare)) => Some(rare),
                        _ => None,
                    },
                }))
            }
        }
    }

    /// Change `i`'s outcome: what was applied, or why it was not. A change
    /// without one (which [`apply`] never leaves) reads as applied with
    /// nothing to record.
    pub fn get(&self, i: usize) -> Result<AppliedRef<'_>, &PathError> {
        let slot = self.slots[i];
        debug_assert!(slot.state() != 0, "change {i} has no outcome");
        let rest = match slot.state() {
            Slot::APPLIED_RARE | Slot::FAILED => self.rest.get(&(i as u32)),
            _ => None,
        };
        match rest {
            Some(Rest::Failed(e)) => Err(e),
            Some(Rest::Rare(rare)) => Ok(slot.view(Some(rare))),
            None => Ok(slot.view(None)),
        }
    }

    /// Every change's outcome, in order (see [`Outcomes::get`]).
    pub fn iter(&self) -> impl Iterator<Item = Result<AppliedRef<'_>, &PathError>> {
        (0..self.slots.len()).map(|i| self.get(i))
    }
}

fn failed(path: &RelPath, kind: ErrorKind, message: impl Into<String>) -> Outcome {
    Outcome::Failed(Box::new(PathError::new(path, kind, message)))
}

fn write_err(path: &RelPath, what: &str, e: io::Error) -> Outcome {
    failed(path, ErrorKind::Write, format!("{what}: {e}"))
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh name in `.strata/tmp/`, which recovery empties.
fn tmp_name() -> Vec<u8> {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}.tmp", std::process::id()).into_bytes()
}

/// The most changes one task takes from one folder: a folder of many
/// thousand files still spreads over the pool.
const BATCH: usize = 64;

/// An error seen once and reported for each change it stops.
fn again(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(n) => io::Error::from_raw_os_error(n),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// The folders a batch of changes in one directory works in, each opened
/// once for the batch (not once per file): the source's, the mirror's,
/// and, when needed, the increment's `track/` and `deleted/` ones.
struct Folder<'t> {
    target: &'t Target<'t>,
    parent: RelPath,
    source: std::cell::OnceCell<io::Result<Dir>>,
    mirror: std::cell::OnceCell<io::Result<Dir>>,
    track: std::cell::OnceCell<io::Result<Dir>>,
    deleted: std::cell::OnceCell<io::Result<Dir>>,
}

impl<'t> Folder<'t> {
    fn new(target: &'t Target<'t>, parent: RelPath) -> Folder<'t> {
        Folder {
            target,
            parent,
            source: Default::default(),
            mirror: Default::default(),
            track: Default::default(),
            deleted: Default::default(),
        }
    }

    fn source(&self) -> io::Result<&Dir> {
        self.source
            .get_or_init(|| self.target.source.open_dir(self.parent.as_bytes()))
            .as_ref()
            .map_err(again)
    }

    fn mirror(&self) -> io::Result<&Dir> {
        self.mirror
            .get_or_init(|| self.target.mirror.open_dir(self.parent.as_bytes()))
            .as_ref()
            .map_err(again)
    }

    /// The folder in `track/` or `deleted/`, made when first needed.
    fn part(&self, part: Part) -> io::Result<&Dir> {
        let cell = match part {
            Part::Track => &self.track,
            Part::Deleted => &self.deleted,
        };
        cell.get_or_init(|| part_parent(self.target, part, &self.parent))
            .as_ref()
            .map_err(again)
    }
}

/// The parent folder of a change's path, as bytes.
fn parent_bytes<'a>(change: Change<'a>) -> &'a [u8] {
    let p = change.path().as_bytes();
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => &p[..i],
        None => &[],
    }
}

/// `indexes` (into `changes`) sorted by folder, and the ranges of it that
/// are the batches: at most [`BATCH`] changes of one folder each. Indexes
/// are `u32`, as a first run has one per file (a plan of 4 billion
/// changes would need a scan of hundreds of GiB first).
fn batches(changes: &Changes<'_>, mut indexes: Vec<u32>) -> (Vec<u32>, Vec<Range<usize>>) {
    // Unstable (the index breaks ties, so the order is the same): a stable
    // sort takes a scratch buffer as large as the list.
    indexes.sort_unstable_by(|&a, &b| {
        parent_bytes(changes.get(a as usize))
            .cmp(parent_bytes(changes.get(b as usize)))
            .then(a.cmp(&b))
    });
    let mut out: Vec<Range<usize>> = Vec::new();
    for (k, &i) in indexes.iter().enumerate() {
        match out.last_mut() {
            Some(b)
                if b.len() < BATCH
                    && parent_bytes(changes.get(indexes[b.start] as usize))
                        == parent_bytes(changes.get(i as usize)) =>
            {
                b.end = k + 1
            }
            _ => out.push(k..k + 1),
        }
    }
    (indexes, out)
}

/// Run `each` over `indexes` in batches of one folder, on the pool, and put
/// each outcome in its slot as a batch finishes (so that no second list of
/// all the outcomes is ever held).
fn in_batches(
    changes: &Changes<'_>,
    indexes: Vec<u32>,
    target: &Target<'_>,
    slots: &std::sync::Mutex<&mut Outcomes>,
    each: impl Fn(usize, &Folder<'_>) -> Outcome + Sync,
) {
    let (indexes, ranges) = batches(changes, indexes);
    ranges.par_iter().for_each(|range| {
        let batch = &indexes[range.clone()];
        let parent = changes
            .get(batch[0] as usize)
            .path()
            .parent()
            .unwrap_or_default();
        let folder = Folder::new(target, parent);
        let done: Vec<(usize, Outcome)> = batch
            .iter()
            .map(|&i| (i as usize, each(i as usize, &folder)))
            .collect();
        let mut slots = slots.lock().unwrap();
        for (i, o) in done {
            slots.set(i, o);
        }
    });
}

/// Execute a plan's changes. Returns one outcome per change, in order.
pub fn apply(changes: &Changes<'_>, target: &Target<'_>) -> Outcomes {
    let mut outcomes = Outcomes::new(changes.len());

    // Phase 1: removals, files in parallel, then directories deepest first.
    let removals: Vec<u32> = (0..changes.len() as u32)
        .filter(|&i| matches!(changes.get(i as usize), Change::Deleted(_)))
        .collect();
    let (dir_removals, file_removals): (Vec<u32>, Vec<u32>) = removals
        .into_iter()
        .partition(|&i| changes.get(i as usize).kind() == Kind::Dir);
    {
        let slots = std::sync::Mutex::new(&mut outcomes);
        in_batches(changes, file_removals, target, &slots, |i, folder| {
            remove_file(changes.get(i), folder)
        });
    }
    let mut dirs = dir_removals;
    dirs.sort_by_key(|&i| std::cmp::Reverse(changes.get(i as usize).path().depth()));
    for i in dirs.into_iter().map(|i| i as usize) {
        outcomes.set(i, remove_dir(changes.get(i), target));
    }

    // Phase 2: new directories, parents first (plan order is path order).
    for (i, change) in changes.iter().enumerate() {
        if let Change::New(e) = change
            && e.meta.kind == Kind::Dir
        {
            outcomes.set(i, make_dir(change, target));
        }
    }

    // Phase 3: files and symlinks; the names of a hardlink group after the
    // one that carries its data.
    let groups = Groups::of(changes, target.scan);
    let (followers, firsts): (Vec<u32>, Vec<u32>) = (0..changes.len() as u32)
        .filter(|&i| {
            let i = i as usize;
            !outcomes.is_done(i) && changes.get(i).is_file_work()
        })
        .partition(|&i| groups.follows(i as usize).is_some());
    {
        let slots = std::sync::Mutex::new(&mut outcomes);
        in_batches(changes, firsts, target, &slots, |i, folder| {
            update(changes.get(i), None, folder)
        });
    }
    let leaders: HashMap<usize, Leader<'_>> = groups
        .lead
        .iter()
        .filter_map(|&i| {
            let a = outcomes.get(i).ok()?;
            Some((
                i,
                Leader {
                    path: changes.get(i).path(),
                    hash: a.hash,
                    xattrs: a.xattrs(),
                    meta: a.meta(),
                },
            ))
        })
        .collect();
    {
        let slots = std::sync::Mutex::new(&mut outcomes);
        in_batches(changes, followers, target, &slots, |i, folder| {
            let anchor = groups.follows(i).expect("a follower");
            match anchor {
                Anchor::Unchanged(entry) => update(
                    changes.get(i),
                    Some(Leader {
                        path: &entry.path,
                        hash: entry.hash(),
                        xattrs: entry.xattrs(),
                        meta: None,
                    }),
                    folder,
                ),
                Anchor::Change(j) => match leaders.get(&j) {
                    Some(&leader) => update(changes.get(i), Some(leader), folder),
                    None => failed(
                        changes.get(i).path(),
                        ErrorKind::Read,
                        format!(
                            "not backed up: {}, a hardlink of the same file, could not be",
                            changes.get(j).path()
                        ),
                    ),
                },
            }
        });
    }

    // Dirs changed only in their tracked flag, and touches: nothing to do
    // in the mirror (a directory changed in metadata is done in phase 4).
    for (i, change) in changes.iter().enumerate() {
        if !outcomes.is_done(i) {
            let outcome = match change {
                Change::Touch(s) => Outcome::Applied(Applied::new(
                    None,
                    s.new.hash().or(s.old.hash()),
                    s.old.xattrs(),
                )),
                _ => Outcome::Applied(Applied::new(
                    change.history_op(),
                    change.old().and_then(|o| o.hash()),
                    change.old().and_then(|o| o.xattrs()),
                )),
            };
            outcomes.set(i, outcome);
        }
    }

    // Phase 4: directory metadata, deepest first.
    finish_dirs(changes, &mut outcomes, target);
    outcomes
}

/// What the outcomes add up to: the stats, the errors, how many records
/// the increment gets and how the index's size changes. The records and
/// the index's new entries themselves are made one at a time while they are
/// written ([`fresh_records`], [`updates`]): a first run has one per file.
pub struct Tally {
    /// The run's counters.
    pub stats: Stats,
    /// What could not be done, by path.
    pub errors: Vec<PathError>,
    /// Paths whose increment entry is a copy (a link was refused).
    pub copied_not_linked: Vec<RelPath>,
    /// Records this run makes.
    pub records: usize,
    /// Entries the new index has more (or fewer) than the old one.
    pub count_delta: i64,
}

/// The ranges of `changes` that concern one path (one change, or a
/// deletion and the new entry that replaces it).
fn path_groups<'a>(changes: &'a Changes<'_>) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= changes.len() {
            return None;
        }
        let mut j = i + 1;
        while j < changes.len() && changes.get(j).path() == changes.get(i).path() {
            j += 1;
        }
        let range = i..j;
        i = j;
        Some(range)
    })
}

/// The index's new entry for each path the run changed (or `None` where it
/// left), in path order: the last applied change of the path says.
pub fn updates<'a>(
    changes: &'a Changes<'_>,
    outcomes: &'a Outcomes,
) -> impl Iterator<Item = Update> + 'a {
    path_groups(changes).filter_map(move |range| {
        let last = range
            .clone()
            .rev()
            .find_map(|k| Some(outcomes.get(k).ok()?.entry(changes.get(k))))?;
        Some(Update {
            path: changes.get(range.start).path().clone(),
            entry: last,
        })
    })
}

/// This run's records, in path order.
pub fn fresh_records<'a>(
    changes: &'a Changes<'_>,
    outcomes: &'a Outcomes,
) -> impl Iterator<Item = FileRecord> + 'a {
    changes
        .iter()
        .zip(outcomes.iter())
        .filter_map(|(change, outcome)| outcome.ok()?.record(change))
}

impl Tally {
    /// Add up `outcomes` of `changes`, on top of the scan's counts in
    /// `scanned` (its new, changed, removed and deleted are recounted here),
    /// with the `bytes_copied` the apply counted.
    pub fn of(
        changes: &Changes<'_>,
        scanned: Stats,
        outcomes: &Outcomes,
        bytes_copied: u64,
    ) -> Tally {
        let mut stats = scanned;
        stats.bytes_copied += bytes_copied;
        stats.new = 0;
        stats.changed = 0;
        stats.removed = 0;
        stats.deleted = 0;
        let mut tally = Tally {
            stats,
            errors: Vec::new(),
            copied_not_linked: Vec::new(),
            records: 0,
            count_delta: 0,
        };
        let mut mirror_files = tally.stats.mirror as i64;
        for range in path_groups(changes) {
            let mut last = None;
            let mut had = false;
            for k in range {
                let (change, outcome) = (changes.get(k), outcomes.get(k));
                had |= change.old().is_some();
                let is_file = change.kind() != Kind::Dir;
                match outcome {
                    Ok(a) => {
                        let s = &mut tally.stats;
                        if is_file {
                            match change {
                                Change::New(_) => s.new += 1,
                                Change::Changed { .. } => s.changed += 1,
                                Change::Deleted(_) => s.removed += 1,
                                Change::Touch(_) => {}
                            }
                            if a.recorded == Some(Op::Deleted) {
                                s.deleted += 1;
                            }
                        }
                        if a.copied_not_linked {
                            s.copied_not_linked += 1;
                            tally.copied_not_linked.push(change.path().clone());
                        }
                        tally.records += usize::from(a.recorded.is_some());
                        last = Some(change.new_entry().is_some());
                    }
                    Err(e) => {
                        tally.errors.push(e.clone());
                        if is_file {
                            match change {
                                Change::New(_) => mirror_files -= 1,
                                Change::Deleted(_) => mirror_files += 1,
                                _ => {}
                            }
                        }
                    }
                }
            }
            if let Some(present) = last {
                tally.count_delta += i64::from(present) - i64::from(had);
            }
        }
        tally.stats.mirror = mirror_files.max(0) as u64;
        tally
    }
}

/// Where a hardlink group's data comes from.
#[derive(Debug, Clone, Copy)]
enum Anchor<'a> {
    /// A name of the group the run does not change: its mirror inode is
    /// the group's.
    Unchanged(&'a Entry),
    /// The first changed name of the group (index in the plan).
    Change(usize),
}

/// The hardlink groups among the changes that copy a file.
struct Groups<'a> {
    /// change index -> its anchor, for the names that link to another.
    follow: HashMap<usize, Anchor<'a>>,
    /// change indexes whose copy other names link to.
    lead: HashSet<usize>,
}

impl<'a> Groups<'a> {
    fn of(changes: &Changes<'_>, scan: &'a [Entry]) -> Groups<'a> {
        let mut follow = HashMap::new();
        let mut lead = HashSet::new();
        let mut by_key: HashMap<LinkKey, Vec<usize>> = HashMap::new();
        for (i, c) in changes.iter().enumerate() {
            if c.needs_source()
                && let Some(e) = c.new_entry()
                && e.meta.kind == Kind::File
                && e.meta.link != 0
            {
                by_key.entry(e.meta.link).or_default().push(i);
            }
        }
        if by_key.is_empty() {
            return Groups { follow, lead };
        }
        let changing: HashSet<&RelPath> = by_key
            .values()
            .flatten()
            .map(|&i| changes.get(i).path())
            .collect();
        let mut unchanged: HashMap<LinkKey, &'a Entry> = HashMap::new();
        for e in scan {
            if e.meta.link != 0
                && by_key.contains_key(&{ e.meta.link })
                && !changing.contains(&e.path)
            {
                unchanged.entry(e.meta.link).or_insert(e);
            }
        }
        for (key, members) in by_key {
            match unchanged.get(&key) {
                Some(entry) => {
                    for i in members {
                        follow.insert(i, Anchor::Unchanged(entry));
                    }
                }
                None => {
                    let first = members[0];
                    if members.len() > 1 {
                        lead.insert(first);
                    }
                    for &i in &members[1..] {
                        follow.insert(i, Anchor::Change(first));
                    }
                }
            }
        }
        Groups { follow, lead }
    }

    fn follows(&self, i: usize) -> Option<Anchor<'a>> {
        self.follow.get(&i).copied()
    }
}

/// The mirror inode a hardlink group's other names link to.
#[derive(Clone, Copy)]
struct Leader<'p> {
    path: &'p RelPath,
    hash: Option<Hash>,
    xattrs: Option<Hash>,
    meta: Option<(Meta, ChangeTime)>,
}

/// Remove what an interrupted run left in the increment for `path` (files
/// only: a folder in `deleted/` may hold other paths' last versions).
fn clear_increment_entry(target: &Target<'_>, path: &RelPath) {
    for part in [Part::Track, Part::Deleted] {
        if let Ok(Some(dir)) = target.increment.part(part)
            && let Ok((parent, name)) = dir.parent_of(path.as_bytes())
            && parent
                .stat_at(name)
                .is_ok_and(|s| s.file_type != FileTypeOf::Dir)
        {
            let _ = parent.unlink(name);
        }
    }
}

/// The folder `parent` in a part of the increment, created.
fn part_parent(target: &Target<'_>, part: Part, parent: &RelPath) -> io::Result<Dir> {
    let dir = target.increment.create_part(part)?;
    if parent.is_root() {
        Ok(dir)
    } else {
        dir.create_dirs(parent.as_bytes(), 0o700)
    }
}

/// Remove a file or symlink from the mirror: a tracked one moves into
/// `deleted/` (its last version), an included-only one is unlinked.
fn remove_file(change: Change<'_>, folder: &Folder<'_>) -> Outcome {
    let target = folder.target;
    target.progress.inc(1);
    let old = change.old().expect("a deletion has an old state");
    let path = &old.path;
    let name = path.file_name();
    let dir = match folder.mirror() {
        Ok(found) => found,
        // Already gone with its folder: nothing to keep, nothing lost (its
        // version is in the increment that brought it).
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Outcome::Applied(Applied::default());
        }
        Err(e) => return write_err(path, "cannot open its mirror folder", e),
    };
    if old.tracked {
        if target.carried.contains(path) {
            clear_increment_entry(target, path);
        }
        let dest = match folder.part(Part::Deleted) {
            Ok(d) => d,
            Err(e) => return write_err(path, "cannot make its folder in deleted/", e),
        };
        target.faults.point("apply.delete", path);
        match dir.rename_noreplace(name, dest, path.file_name()) {
            Ok(()) => Outcome::Applied(Applied {
                recorded: Some(Op::Deleted),
                ..Applied::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Outcome::Applied(Applied::default()),
            Err(e) => write_err(path, "cannot move it into the increment's deleted/", e),
        }
    } else {
        target.faults.point("apply.unlink", path);
        match dir.unlink(name) {
            Ok(()) => Outcome::Applied(Applied::default()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Outcome::Applied(Applied::default()),
            Err(e) => write_err(path, "cannot remove it from the mirror", e),
        }
    }
}

/// Remove a directory from the mirror (what it held left first).
fn remove_dir(change: Change<'_>, target: &Target<'_>) -> Outcome {
    let old = change.old().expect("a deletion has an old state");
    let path = &old.path;
    let recorded = old.tracked.then_some(Op::Deleted);
    if path.is_root() {
        return Outcome::Applied(Applied {
            recorded,
            ..Applied::default()
        });
    }
    let (dir, name) = match target.mirror.parent_of(path.as_bytes()) {
        Ok(found) => found,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Outcome::Applied(Applied {
                recorded,
                ..Applied::default()
            });
        }
        Err(e) => return write_err(path, "cannot open its mirror folder", e),
    };
    target.faults.point("apply.rmdir", path);
    match dir.rmdir(name) {
        Ok(()) => Outcome::Applied(Applied {
            recorded,
            ..Applied::default()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Outcome::Applied(Applied {
            recorded,
            ..Applied::default()
        }),
        Err(e) => write_err(path, "cannot remove the folder from the mirror", e),
    }
}

/// Make a new mirror directory, private until phase 4 gives it its mode.
fn make_dir(change: Change<'_>, target: &Target<'_>) -> Outcome {
    let path = change.path();
    if path.is_root() {
        return Outcome::Applied(Applied {
            recorded: change.history_op(),
            ..Applied::default()
        });
    }
    let (dir, name) = match target.mirror.parent_of(path.as_bytes()) {
        Ok(found) => found,
        Err(e) => return write_err(path, "cannot open its parent in the mirror", e),
    };
    target.faults.point("apply.mkdir", path);
    match dir.mkdir(name, 0o700) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !dir
                .stat_at(name)
                .is_ok_and(|s| s.file_type == FileTypeOf::Dir)
            {
                return write_err(path, "cannot make the folder in the mirror", e);
            }
        }
        Err(e) => return write_err(path, "cannot make the folder in the mirror", e),
    }
    // The metadata comes in phase 4.
    Outcome::Applied(Applied {
        recorded: change.history_op(),
        ..Applied::default()
    })
}

/// Link `name` in `dir` into a part of the increment at `path`; when the
/// filesystem refuses (EMLINK, EXDEV, …; or an injected `apply.link`
/// failure), copy it there instead, as a new anonymous inode given its
/// name once complete (never a shared temp name). Returns whether it
/// copied.
fn link_into(
    folder: &Folder<'_>,
    part: Part,
    dir: &Dir,
    name: &[u8],
    path: &RelPath,
) -> io::Result<bool> {
    let target = folder.target;
    let to = folder.part(part)?;
    let to_name = path.file_name();
    target.faults.point("apply.link", path);
    let refused = if target.faults.fails("apply.link", path) {
        true
    } else {
        match dir.link(name, to, to_name) {
            Ok(()) => return Ok(false),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMLINK | libc::EXDEV | libc::EPERM | libc::EOPNOTSUPP)
                ) =>
            {
                true
            }
            Err(e) => return Err(e),
        }
    };
    debug_assert!(refused);
    let st = dir.stat_at(name)?;
    match st.file_type {
        FileTypeOf::Symlink => {
            let link = dir.read_link(name)?;
            to.symlink(&link, to_name)?;
            to.set_link_meta(
                to_name,
                is_root().then_some((st.uid, st.gid)),
                st.mtime,
                st.atime,
            )?;
        }
        FileTypeOf::File => {
            let src = dir.open_read(name)?;
            let out = to.tmpfile(0o600)?;
            copy_data(&src, &st, &out, &|_| {}).map_err(|e| io::Error::other(e.to_string()))?;
            let xattrs = xattr::read_all(&src)?;
            finish(
                &out,
                &Finish {
                    mode: st.mode,
                    uid: st.uid,
                    gid: st.gid,
                    mtime: st.mtime,
                    atime: st.atime,
                    xattrs: &xattrs,
                    fresh: true,
                },
                target.degraded,
            )?;
            to.link_file(&out, to_name)?;
        }
        _ => return Err(io::Error::other("neither a file nor a symlink")),
    }
    Ok(true)
}

/// What a copy from the source brought.
struct Copied {
    meta: Meta,
    ctime: ChangeTime,
    hash: Hash,
    xattrs: Xattrs,
    bytes: u64,
}

pub(crate) fn read_error(e: io::Error) -> (ErrorKind, String) {
    match e.raw_os_error() {
        Some(libc::ENOENT) => (
            ErrorKind::Vanished,
            "vanished before it could be copied".into(),
        ),
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => (
            ErrorKind::Changed,
            "changed since the scan (a folder on its way, or the file, is now a symlink or \
             a file); not followed, kept the previous version"
                .into(),
        ),
        _ => (ErrorKind::Read, format!("cannot read: {e}")),
    }
}

/// Put a new inode at `name` in `dir`: link it in when the name is free
/// (`new`), else rename it over what is there, through a temp name in
/// `.strata/tmp/`.
fn place(
    target: &Target<'_>,
    dir: &Dir,
    name: &[u8],
    new: bool,
    link: impl Fn(&Dir, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    if new {
        match link(dir, name) {
            Ok(()) => return Ok(()),
            // Not in the index but in the mirror (left by an interrupted
            // run): replace it the usual way.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let tmp = tmp_name();
    link(target.tmp, &tmp)?;
    if let Err(e) = target.tmp.rename(&tmp, dir, name) {
        let _ = target.tmp.unlink(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Copy the source's `path` (a file or symlink) into the mirror.
fn copy_in(change: Change<'_>, folder: &Folder<'_>) -> Result<Copied, (ErrorKind, String)> {
    let target = folder.target;
    let new = change.new_entry().expect("a copy has a new state");
    let path = &new.path;
    let is_new = matches!(change, Change::New(_));
    if target.faults.fails("source.read", path) {
        return Err(read_error(io::Error::from_raw_os_error(libc::EACCES)));
    }
    let sdir = folder.source().map_err(read_error)?;
    let sname = path.file_name();
    let mdir = folder.mirror().map_err(|e| {
        (
            ErrorKind::Write,
            format!("cannot open its mirror folder: {e}"),
        )
    })?;
    let mname = path.file_name();
    let write = |what: &str, e: io::Error| (ErrorKind::Write, format!("{what}: {e}"));
    match new.meta.kind {
        Kind::File => {
            let src = sdir.open_read(sname).map_err(read_error)?;
            let before = fstat(&src).map_err(read_error)?;
            if before.file_type != FileTypeOf::File {
                return Err((
                    ErrorKind::Changed,
                    "is no longer a regular file; kept the previous version".into(),
                ));
            }
            let xattrs = xattr::read_all(&src).map_err(read_error)?;
            let out = mdir
                .tmpfile(0o600)
                .map_err(|e| write("cannot create the copy", e))?;
            target.faults.point("apply.copy", path);
            let progress = |n| target.progress.inc_bytes(n);
            let hash = copy_data(&src, &before, &out, &progress).map_err(|e| match e {
                CopyError::Read(e) => read_error(e),
                CopyError::Write(e) => write("cannot write the copy", e),
                CopyError::Changed => (ErrorKind::Changed, CopyError::Changed.to_string()),
            })?;
            finish(
                &out,
                &Finish {
                    mode: before.mode,
                    uid: before.uid,
                    gid: before.gid,
                    mtime: before.mtime,
                    atime: before.atime,
                    xattrs: &xattrs,
                    fresh: true,
                },
                target.degraded,
            )
            .map_err(|e| write("cannot set its metadata", e))?;
            target.faults.point("apply.place", path);
            place(target, mdir, mname, is_new, |d, n| d.link_file(&out, n))
                .map_err(|e| write("cannot put the copy in the mirror", e))?;
            Ok(Copied {
                meta: before.meta().expect("a regular file"),
                ctime: before.ctime,
                hash,
                xattrs,
                bytes: before.size,
            })
        }
        Kind::Symlink => {
            let before = sdir.stat_at(sname).map_err(read_error)?;
            if before.file_type != FileTypeOf::Symlink {
                return Err((
                    ErrorKind::Changed,
                    "is no longer a symlink; kept the previous version".into(),
                ));
            }
            let link = sdir.read_link(sname).map_err(read_error)?;
            let after = sdir.stat_at(sname).map_err(read_error)?;
            // (Reading a link sets its atime: compare what the backup keeps.)
            if (after.meta(), after.ctime) != (before.meta(), before.ctime)
                || link.len() as u64 != before.size
            {
                return Err((ErrorKind::Changed, CopyError::Changed.to_string()));
            }
            let tmp = tmp_name();
            target
                .tmp
                .symlink(&link, &tmp)
                .map_err(|e| write("cannot create the link", e))?;
            let owner = is_root().then_some((before.uid, before.gid));
            if !is_root()
                && (before.uid, before.gid)
                    != (
                        rustix::process::geteuid().as_raw(),
                        rustix::process::getegid().as_raw(),
                    )
            {
                let _ = &target.degraded;
            }
            if let Err(e) = target
                .tmp
                .set_link_meta(&tmp, owner, before.mtime, before.atime)
            {
                let _ = target.tmp.unlink(&tmp);
                return Err(write("cannot set the link's metadata", e));
            }
            target.faults.point("apply.place", path);
            if let Err(e) = target.tmp.rename(&tmp, mdir, mname) {
                let _ = target.tmp.unlink(&tmp);
                return Err(write("cannot put the link in the mirror", e));
            }
            Ok(Copied {
                meta: before.meta().expect("a symlink"),
                ctime: before.ctime,
                hash: Hash::of(&link),
                xattrs: Xattrs::default(),
                bytes: 0,
            })
        }
        Kind::Dir => unreachable!("directories are made in phase 2"),
    }
}

/// Bring a new or changed file or symlink into the mirror, and into the
/// increment when it is tracked. With `leader`, the path is another name of
/// a hardlink group whose inode is already in the mirror: link it.
fn update(change: Change<'_>, leader: Option<Leader<'_>>, folder: &Folder<'_>) -> Outcome {
    let target = folder.target;
    let new = change.new_entry().expect("an update has a new state");
    let path = &new.path;
    let history = change.history_op();
    if history.is_some() && target.carried.contains(path) {
        clear_increment_entry(target, path);
    }
    let outcome = update_inner(change, leader, folder);
    target.progress.inc(1);
    outcome
}

fn update_inner(change: Change<'_>, leader: Option<Leader<'_>>, folder: &Folder<'_>) -> Outcome {
    let target = folder.target;
    let new = change.new_entry().expect("an update has a new state");
    let path = &new.path;
    let history = change.history_op();
    let mname = path.file_name();
    let mdir = match folder.mirror() {
        Ok(found) => found,
        Err(e) => return write_err(path, "cannot open its mirror folder", e),
    };
    let mut applied = Applied::new(
        history,
        change.old().and_then(|o| o.hash()),
        change.old().and_then(|o| o.xattrs()),
    );
    // Counted once the change is done, as a failed change counts none.
    let mut bytes = 0;
    // Leaving the tracked set: the current mirror version is the last one;
    // keep it in deleted/ before anything replaces it.
    let mut kept_last = false;
    if history == Some(Op::Deleted) {
        match link_into(folder, Part::Deleted, mdir, mname, path) {
            Ok(copied) => {
                applied.copied_not_linked |= copied;
                kept_last = true;
            }
            Err(e) => return write_err(path, "cannot keep its last version", e),
        }
    }
    let undo = |target: &Target<'_>| {
        if kept_last {
            clear_increment_entry(target, path);
        }
    };
    if change.needs_source() {
        match leader {
            Some(leader) => {
                let linked = match target.mirror.parent_of(leader.path.as_bytes()) {
                    Ok((ldir, lname)) => {
                        target.faults.point("apply.place", path);
                        place(
                            target,
                            mdir,
                            mname,
                            matches!(change, Change::New(_)),
                            |d, n| ldir.link(lname, d, n),
                        )
                    }
                    Err(e) => Err(e),
                };
                match linked {
                    Ok(()) => {
                        applied.hash = leader.hash;
                        applied.set_xattrs(leader.xattrs);
                        if let Some(meta) = leader.meta {
                            applied.set_meta(meta);
                        }
                    }
                    Err(e) => {
                        undo(target);
                        return write_err(
                            path,
                            "cannot link it to the rest of its hardlink group",
                            e,
                        );
                    }
                }
            }
            None => match copy_in(change, folder) {
                Ok(copied) => {
                    applied.hash = Some(copied.hash);
                    applied.set_xattrs(Some(copied.xattrs.digest()));
                    if !copied.xattrs.is_empty() {
                        applied.set_xattr_data(copied.xattrs);
                    }
                    if copied.meta != new.meta || copied.ctime != new.ctime {
                        applied.set_meta((copied.meta, copied.ctime));
                    }
                    bytes = copied.bytes;
                }
                Err((kind, message)) => {
                    undo(target);
                    return failed(path, kind, message);
                }
            },
        }
    }
    if let Some(Op::New | Op::Changed) = history {
        if applied.xattr_data().is_none()
            && applied.xattrs().is_some_and(|x| x != NO_XATTRS)
            && let Ok(file) = mdir.open_read(mname)
            && let Ok(x) = xattr::read_all(&file)
        {
            // A version recorded without a copy (entering the tracked set,
            // or a hardlink of a copied file): its xattrs from the mirror.
            applied.set_xattr_data(x);
        }
        match link_into(folder, Part::Track, mdir, mname, path) {
            Ok(copied) => applied.copied_not_linked |= copied,
            Err(e) => return write_err(path, "cannot record it in the increment", e),
        }
    }
    target.copied.fetch_add(bytes, Ordering::Relaxed);
    Outcome::Applied(applied)
}

/// A directory finished: its change (if it is one) and what it got.
type DirDone = (Option<usize>, Result<Option<Xattrs>, PathError>);

/// Phase 4: the metadata of the directories, deepest first.
fn finish_dirs(changes: &Changes<'_>, outcomes: &mut Outcomes, target: &Target<'_>) {
    // The folders are named by paths borrowed from the plan and the scan:
    // a first run has a change per file, and a copy of each one's parent
    // would be an allocation per file.
    let scan_dir = |path: &[u8]| -> Option<&Entry> {
        let i = target
            .scan
            .binary_search_by(|e| e.path.as_bytes().cmp(path))
            .ok()?;
        // A path may be in the scan once; it is a directory or not.
        Some(&target.scan[i]).filter(|e| e.meta.kind == Kind::Dir)
    };
    // Directories to give the source's metadata: index -> change.
    let mut full: HashMap<&[u8], usize> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        if c.kind() == Kind::Dir && c.needs_source() && outcomes.get(i).is_ok() {
            full.insert(c.path().as_bytes(), i);
        }
    }
    // Directories whose content changed: their mtime goes back.
    let mut touched: HashSet<&[u8]> = HashSet::new();
    for c in changes.iter() {
        if !matches!(c, Change::Touch(_)) && !c.path().is_root() {
            touched.insert(parent_bytes(c));
        }
    }
    if target.redo_dirs {
        for e in target.scan.iter().filter(|e| e.meta.kind == Kind::Dir) {
            touched.insert(e.path.as_bytes());
        }
    }
    let mut all: Vec<&[u8]> = full.keys().copied().chain(touched).collect();
    all.sort_unstable();
    all.dedup();
    let mut by_depth: Vec<Vec<&[u8]>> = Vec::new();
    for p in all {
        let d = if p.is_empty() {
            0
        } else {
            1 + p.iter().filter(|&&b| b == b'/').count()
        };
        if by_depth.len() <= d {
            by_depth.resize(d + 1, Vec::new());
        }
        by_depth[d].push(p);
    }
    for level in by_depth.into_iter().rev() {
        let done: Vec<DirDone> = level
            .par_iter()
            .filter_map(|p| {
                let change = full.get(p).copied();
                let entry = match change {
                    Some(i) => changes.get(i).new_entry(),
                    None => scan_dir(p),
                }?;
                Some((change, finish_dir(entry, change.is_some(), target)))
            })
            .collect();
        for (change, result) in done {
            let Some(i) = change else {
                if let Err(e) = result {
                    tracing::debug!("{e}");
                }
                continue;
            };
            match result {
                Ok(xattrs) => {
                    if let Some(Outcome::Applied(mut a)) = outcomes.take(i) {
                        let x = xattrs.unwrap_or_default();
                        a.set_xattrs(Some(x.digest()));
                        if !x.is_empty() {
                            a.set_xattr_data(x);
                        }
                        outcomes.set(i, Outcome::Applied(a));
                    }
                }
                Err(e) => outcomes.set(i, Outcome::Failed(Box::new(e))),
            }
        }
    }
}

/// Give one mirror directory its metadata: the source's (with `full`, its
/// xattrs read afresh), or the scanned mode, owner and times again.
fn finish_dir(entry: &Entry, full: bool, target: &Target<'_>) -> Result<Option<Xattrs>, PathError> {
    let path = &entry.path;
    let mdir = target.mirror.open_dir(path.as_bytes()).map_err(|e| {
        PathError::new(
            path,
            ErrorKind::Write,
            format!("cannot open the mirror folder: {e}"),
        )
    })?;
    let xattrs = if full {
        let sdir = target.source.open_dir(path.as_bytes()).map_err(|e| {
            let (kind, message) = read_error(e);
            PathError::new(path, kind, message)
        })?;
        let st = sdir
            .stat()
            .map_err(|e| PathError::new(path, ErrorKind::Read, format!("cannot stat: {e}")))?;
        let x = xattr::read_all(&sdir).map_err(|e| {
            PathError::new(
                path,
                ErrorKind::Read,
                format!("cannot read its xattrs: {e}"),
            )
        })?;
        if st.meta() != Some(entry.meta) {
            return Err(PathError::new(
                path,
                ErrorKind::Changed,
                "changed while the backup ran; the next run takes its metadata",
            ));
        }
        Some(x)
    } else {
        None
    };
    target.faults.point("apply.dir", path);
    let meta = &entry.meta;
    let result = match &xattrs {
        Some(x) => finish(
            &mdir,
            &Finish {
                mode: u32::from(meta.mode),
                uid: meta.uid,
                gid: meta.gid,
                mtime: meta.mtime,
                atime: meta.mtime,
                xattrs: x,
                fresh: false,
            },
            target.degraded,
        ),
        None => finish_times(&mdir, meta, target.redo_dirs),
    };
    result.map_err(|e| {
        PathError::new(
            path,
            ErrorKind::Write,
            format!("cannot set the folder's metadata: {e}"),
        )
    })?;
    Ok(xattrs)
}

/// Put a directory's mtime back (and, after a repair, its mode and owner).
fn finish_times(dir: &Dir, meta: &Meta, all: bool) -> io::Result<()> {
    if all {
        if is_root() {
            let (uid, gid) = (
                rustix::process::Uid::from_raw(meta.uid),
                rustix::process::Gid::from_raw(meta.gid),
            );
            rustix::fs::fchown(dir, Some(uid), Some(gid))
                .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))?;
        }
        rustix::fs::fchmod(dir, rustix::fs::Mode::from_raw_mode(u32::from(meta.mode)))
            .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))?;
    }
    let ts = rustix::fs::Timespec {
        tv_sec: meta.mtime.sec,
        tv_nsec: meta.mtime.nsec as _,
    };
    rustix::fs::futimens(
        dir,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
    )
    .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_keep_what_each_change_got() {
        let mut outcomes = Outcomes::new(5);
        assert!(!outcomes.is_done(0));
        let plain = Applied::new(Some(Op::New), Some(Hash([9; 16])), Some(NO_XATTRS));
        let mut rare = Applied::new(Some(Op::Changed), None, Some(Hash([3; 16])));
        rare.copied_not_linked = true;
        rare.set_xattr_data(Xattrs(vec![(b"user.a".to_vec(), b"1".to_vec())]));
        let deleted = Applied {
            recorded: Some(Op::Deleted),
            ..Applied::default()
        };
        let error = PathError::new(&RelPath::from_bytes(b"x"), ErrorKind::Read, "no");
        outcomes.set(0, Outcome::Applied(plain.clone()));
        outcomes.set(1, Outcome::Applied(rare.clone()));
        outcomes.set(2, Outcome::Applied(deleted.clone()));
        outcomes.set(3, Outcome::Failed(Box::new(error.clone())));
        outcomes.set(4, Outcome::Applied(Applied::default()));
        let same = |got: AppliedRef<'_>, want: &Applied| {
            let want = want.view();
            assert_eq!(
                (got.recorded, got.copied_not_linked, got.hash, got.xattrs()),
                (
                    want.recorded,
                    want.copied_not_linked,
                    want.hash,
                    want.xattrs()
                )
            );
            assert_eq!(got.xattr_data(), want.xattr_data());
            assert_eq!(got.meta(), want.meta());
        };
        same(outcomes.get(0).unwrap(), &plain);
        same(outcomes.get(1).unwrap(), &rare);
        same(outcomes.get(2).unwrap(), &deleted);
        assert_eq!(outcomes.get(3).unwrap_err(), &error);
        same(outcomes.get(4).unwrap(), &Applied::default());
        // Taken out, changed and set again; a failure replaces a success.
        let Some(Outcome::Applied(mut a)) = outcomes.take(1) else {
            panic!("applied");
        };
        assert_eq!(a, rare);
        assert!(!outcomes.is_done(1));
        a.set_xattrs(Some(NO_XATTRS));
        outcomes.set(1, Outcome::Applied(a));
        assert_eq!(outcomes.get(1).unwrap().xattrs(), Some(NO_XATTRS));
        outcomes.set(0, Outcome::Failed(Box::new(error.clone())));
        assert!(outcomes.get(0).is_err());
        outcomes.set(3, Outcome::Applied(plain.clone()));
        same(outcomes.get(3).unwrap(), &plain);
        assert_eq!(outcomes.iter().filter(Result::is_err).count(), 1);
    }
}
