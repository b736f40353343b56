//! `strata mount`: a job's history as a read-only filesystem (FUSE).
//!
//! Takes an opened [`Destination`] of either kind, its [`History`] and
//! index; returns a [`HistoryFs`] that `fuser` serves. The root holds `latest/` (the
//! mirror, as the index describes it) and one folder per increment, each
//! the **whole** tracked tree as that run left it: the replay of the
//! increments up to it ([`History::state_at`]), each entry with the mode,
//! owner, mtime and xattrs its record holds. A file's bytes are read from
//! where the backup keeps that version (`backup_K/track/<path>`, or the
//! mirror for `latest/`), never copied: on a local destination through
//! the store's descriptors; on an object store by ranged gets of that
//! version's object, each open file keeping the last range it fetched
//! (at most [`WINDOW`] bytes, or the read asked for, up to 4 MiB), so
//! memory is bounded per open file. There a symlink is an object holding
//! its target, and `latest/`'s xattrs are the `.strata/xattrs/<digest>`
//! object the index names (each digest fetched once). A stored copy that
//! is missing, of another size, or unreadable is EIO, logged with its key
//! or path, never a panic. Names of one hardlink group share one inode.
//!
//! A folder's tree is built the first time it is looked at and kept: what
//! is shown is the history as it was when the mount started (restic's
//! mount takes the same view of its snapshots). Nothing here writes, to
//! the store or to the object store.
//!
//! Inode numbers: 1 is the root; tree `t` (0 `latest`, then the
//! increments oldest first) numbers its nodes from `(t + 1) << 32`, its
//! root first, so that a folder's inode is known before its tree is built.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyXattr, Request,
};

use std::sync::Arc;

use crate::entry::{Hash, Kind, Meta, NO_XATTRS, RelPath, Timestamp, Xattrs};
use crate::fs::Dir;
use crate::history::History;
use crate::store::dest::Destination;
use crate::store::index::{Index, UNKNOWN_OWNER};
use crate::store::object::Remote;
use crate::store::object::client::Fetched;
use crate::store::{Part, Store};

/// How long the kernel may cache what it was told: nothing shown ever
/// changes while mounted.
const TTL: Duration = Duration::from_secs(3600);

/// The name of the mirror's folder.
pub const LATEST: &str = "latest";

/// How much of an object a read fetches at least (the rest of the file
/// when less is left): the kernel reads 128 KiB at a time, and one ranged
/// get per read would make a sequential read a request per 128 KiB.
pub const WINDOW: u64 = 1 << 20;

/// The most a read returns at once (what the kernel asks is less).
const MAX_READ: u32 = 4 << 20;

/// A node's extended attributes.
#[derive(Debug, Clone)]
enum Attrs {
    /// As recorded (an increment's record, a folder made implicitly).
    Known(Xattrs),
    /// Those of the stored inode (a local mirror's).
    Inode,
    /// The object-store index's digest: `.strata/xattrs/<digest>`.
    Digest(Hash),
}

/// Where a file's bytes are.
#[derive(Debug, Clone)]
enum Backing {
    /// A directory: nothing to read.
    None,
    /// `mirror/<path>`.
    Mirror,
    /// `<increment>/<part>/<path>` (index into the history).
    Increment(usize, Part),
}

#[derive(Debug, Clone)]
struct Node {
    name: Vec<u8>,
    parent: u32,
    /// Sorted by name (directories only).
    children: Vec<u32>,
    path: RelPath,
    meta: Meta,
    hash: Option<Hash>,
    xattrs: Attrs,
    backing: Backing,
    /// The node whose inode this name shares (a hardlink group).
    same_as: Option<u32>,
    nlink: u32,
}

/// What a tree is built from: a path, its metadata, content hash,
/// xattrs and where its bytes are.
type Source = (RelPath, Meta, Option<Hash>, Attrs, Backing);

#[derive(Debug, Default)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// A tree of `entries` (sorted by path, the root among them or not).
    fn build(entries: Vec<Source>, dir: Meta) -> Tree {
        let root = Node {
            name: Vec::new(),
            parent: 0,
            children: Vec::new(),
            path: RelPath::root(),
            meta: dir,
            hash: None,
            xattrs: Attrs::Known(Xattrs::default()),
            backing: Backing::None,
            same_as: None,
            nlink: 2,
        };
        let mut tree = Tree { nodes: vec![root] };
        let mut dirs: HashMap<RelPath, u32> = HashMap::from([(RelPath::root(), 0)]);
        let mut groups: HashMap<u64, u32> = HashMap::new();
        for (path, meta, hash, xattrs, backing) in entries {
            if path.is_root() {
                let root = &mut tree.nodes[0];
                if meta.kind == Kind::Dir {
                    root.meta = meta;
                    root.xattrs = xattrs;
                }
                continue;
            }
            let parent = tree.dir_for(&path, &mut dirs, dir);
            let id = tree.nodes.len() as u32;
            let mut node = Node {
                name: path.file_name().to_vec(),
                parent,
                children: Vec::new(),
                path: path.clone(),
                meta,
                hash,
                xattrs,
                backing,
                same_as: None,
                nlink: if meta.kind == Kind::Dir { 2 } else { 1 },
            };
            if meta.kind == Kind::File && meta.link != 0 {
                match groups.get(&{ meta.link }) {
                    Some(&first) => {
                        node.same_as = Some(first);
                        tree.nodes[first as usize].nlink += 1;
                    }
                    None => {
                        groups.insert(meta.link, id);
                    }
                }
            }
            if meta.kind == Kind::Dir {
                // Recorded after a child made it implicitly: take its metadata.
                if let Some(&existing) = dirs.get(&path) {
                    let n = &mut tree.nodes[existing as usize];
                    n.meta = meta;
                    n.xattrs = node.xattrs;
                    continue;
                }
                dirs.insert(path, id);
            }
            tree.nodes.push(node);
            tree.nodes[parent as usize].children.push(id);
        }
        // Sorted children, for lookups by name.
        let names: Vec<Vec<u8>> = tree.nodes.iter().map(|n| n.name.clone()).collect();
        for n in &mut tree.nodes {
            n.children
                .sort_by(|a, b| names[*a as usize].cmp(&names[*b as usize]));
            n.children
                .dedup_by(|a, b| names[*a as usize] == names[*b as usize]);
        }
        tree
    }

    /// The node of `path`'s parent, made (with `dir`'s metadata) when no
    /// record names it.
    fn dir_for(&mut self, path: &RelPath, dirs: &mut HashMap<RelPath, u32>, dir: Meta) -> u32 {
        let parent = path.parent().unwrap_or_default();
        if let Some(&id) = dirs.get(&parent) {
            return id;
        }
        let up = self.dir_for(&parent, dirs, dir);
        let id = self.nodes.len() as u32;
        self.nodes.push(Node {
            name: parent.file_name().to_vec(),
            parent: up,
            children: Vec::new(),
            path: parent.clone(),
            meta: dir,
            hash: None,
            xattrs: Attrs::Known(Xattrs::default()),
            backing: Backing::None,
            same_as: None,
            nlink: 2,
        });
        self.nodes[up as usize].children.push(id);
        dirs.insert(parent, id);
        id
    }

    fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let children = &self.nodes.get(dir as usize)?.children;
        children
            .binary_search_by(|c| self.nodes[*c as usize].name.as_slice().cmp(name))
            .ok()
            .map(|i| children[i])
    }
}

/// Where the stored bytes are read from.
enum Backend {
    /// A local destination, through its descriptors.
    Local {
        store: Store,
        mirror: Option<Dir>,
        /// Opened increment folders' parts, by (increment, part).
        parts: Mutex<HashMap<(usize, Part), Option<Dir>>>,
    },
    /// An object store, by ranged gets.
    Object {
        remote: Remote,
        /// The xattrs of the digests looked at so far.
        xattrs: Mutex<HashMap<Hash, Xattrs>>,
    },
}

/// An open file.
enum Opened {
    /// A local stored copy.
    Local(File),
    /// An object of the recorded size.
    Object(RemoteFile),
}

/// An object opened for reading: its key, its size and the last range
/// fetched.
struct RemoteFile {
    key: object_store::path::Path,
    size: u64,
    /// (offset, bytes) of the last ranged get: at most what one read asks
    /// or [`WINDOW`], whichever is more.
    last: Mutex<Option<(u64, Vec<u8>)>>,
}

/// The filesystem: the destination, the history, and the trees built so
/// far.
pub struct HistoryFs {
    backend: Backend,
    history: History,
    index: Option<Index>,
    trees: Vec<OnceLock<Tree>>,
    files: Mutex<HashMap<u64, Arc<Opened>>>,
    next_handle: AtomicU64,
    /// The root folder's metadata: the mounter's, read-only.
    root: Meta,
}

fn ino_of(tree: usize, node: u32) -> u64 {
    ((tree as u64 + 1) << 32) + u64::from(node)
}

fn split(ino: u64) -> Option<(usize, u32)> {
    let tree = (ino >> 32).checked_sub(1)?;
    Some((tree as usize, (ino & 0xffff_ffff) as u32))
}

fn system_time(t: Timestamp) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(t.sec.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
            + Duration::from_nanos(u64::from(t.nsec))
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Dir => FileType::Directory,
    }
}

fn attr(ino: u64, meta: &Meta, nlink: u32) -> FileAttr {
    let t = system_time(meta.mtime);
    FileAttr {
        ino: INodeNo(ino),
        size: meta.size,
        blocks: meta.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: file_type(meta.kind),
        perm: meta.mode & 0o7777,
        nlink,
        uid: if meta.uid == UNKNOWN_OWNER {
            0
        } else {
            meta.uid
        },
        gid: if meta.gid == UNKNOWN_OWNER {
            0
        } else {
            meta.gid
        },
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl HistoryFs {
    /// Serve `history` of `dest`, with `index` (the mirror's entries) as
    /// `latest/` when there is one.
    pub fn new(
        dest: Destination,
        history: History,
        index: Option<Index>,
    ) -> std::io::Result<HistoryFs> {
        let backend = match dest {
            Destination::Local(store) => Backend::Local {
                mirror: store.mirror()?,
                store,
                parts: Mutex::new(HashMap::new()),
            },
            Destination::Object(remote) => Backend::Object {
                remote,
                xattrs: Mutex::new(HashMap::new()),
            },
        };
        let newest = history
            .increments
            .last()
            .map(|i| Timestamp {
                sec: i.time.timestamp(),
                nsec: 0,
            })
            .unwrap_or_default();
        let root = Meta {
            kind: Kind::Dir,
            size: 0,
            mtime: newest,
            mode: 0o555,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            link: 0,
        };
        let trees = (0..=history.increments.len())
            .map(|_| OnceLock::new())
            .collect();
        Ok(HistoryFs {
            backend,
            history,
            index,
            trees,
            files: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            root,
        })
    }

    /// The names in the root: `latest` (when backed up) and the
    /// increments.
    fn top(&self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        if self.index.is_some() {
            out.push((0, LATEST.to_string()));
        }
        for (i, inc) in self.history.increments.iter().enumerate() {
            out.push((i + 1, inc.name.clone()));
        }
        out
    }

    /// Tree `t`, built on first use.
    fn tree(&self, t: usize) -> Option<&Tree> {
        let cell = self.trees.get(t)?;
        Some(cell.get_or_init(|| self.build(t)))
    }

    fn build(&self, t: usize) -> Tree {
        let implicit = Meta {
            mode: 0o755,
            ..self.root
        };
        if t == 0 {
            let refuses_xattrs = matches!(&self.backend,
                Backend::Local { mirror: Some(m), .. } if !crate::fs::xattr::supported(m));
            let entries = self
                .index
                .iter()
                .flat_map(|i| &i.entries)
                .map(|e| {
                    let backing = if e.meta.kind == Kind::Dir {
                        Backing::None
                    } else {
                        Backing::Mirror
                    };
                    let xattrs = match (&self.backend, e.xattrs()) {
                        // A mirror that cannot hold xattrs: the sets the
                        // runs kept by digest (`Store::save_xattrs`).
                        (Backend::Local { .. }, Some(d)) if refuses_xattrs => Attrs::Digest(d),
                        (Backend::Local { .. }, _) => Attrs::Inode,
                        (Backend::Object { .. }, Some(d)) => Attrs::Digest(d),
                        (Backend::Object { .. }, None) => Attrs::Known(Xattrs::default()),
                    };
                    (e.path.clone(), e.meta, e.hash(), xattrs, backing)
                })
                .collect();
            return Tree::build(entries, implicit);
        }
        let k = t - 1;
        let mut entries = Vec::new();
        for (path, version) in self.history.state_at(Some(k)) {
            let Ok(r) = version.record.check() else {
                continue;
            };
            let (_, part, _) = self.history.file_of(version);
            let backing = if r.meta.kind == Kind::Dir {
                Backing::None
            } else {
                Backing::Increment(version.increment, part)
            };
            entries.push((path, r.meta, r.hash, Attrs::Known(r.xattrs), backing));
        }
        let time = self.history.increments[k].time;
        Tree::build(
            entries,
            Meta {
                mtime: Timestamp {
                    sec: time.timestamp(),
                    nsec: 0,
                },
                ..implicit
            },
        )
    }

    /// The node behind `ino`, following a hardlink to its group's first.
    fn node(&self, ino: u64) -> Option<(usize, u32, &Node)> {
        let (t, id) = split(ino)?;
        let tree = self.tree(t)?;
        let mut n = tree.nodes.get(id as usize)?;
        let mut id = id;
        if let Some(first) = n.same_as {
            id = first;
            n = &tree.nodes[first as usize];
        }
        Some((t, id, n))
    }

    fn attr_of(&self, ino: u64) -> Option<FileAttr> {
        if ino == 1 {
            return Some(attr(1, &self.root, 2 + self.top().len() as u32));
        }
        let (t, id, n) = self.node(ino)?;
        Some(attr(ino_of(t, id), &n.meta, n.nlink))
    }

    /// The folder that holds a node's stored bytes (a local destination).
    fn stored_dir(&self, n: &Node) -> Result<Dir, Errno> {
        let Backend::Local {
            store,
            mirror,
            parts,
        } = &self.backend
        else {
            return Err(Errno::EIO);
        };
        match n.backing {
            Backing::None => Err(Errno::EISDIR),
            Backing::Mirror => mirror
                .as_ref()
                .ok_or(Errno::EIO)?
                .try_clone()
                .map_err(|_| Errno::EIO),
            Backing::Increment(i, part) => {
                let mut parts = parts.lock().map_err(|_| Errno::EIO)?;
                let slot = parts.entry((i, part)).or_insert_with(|| {
                    let inc = self.history.increments.get(i)?;
                    inc.open(store).ok()?.part(part).ok()?
                });
                slot.as_ref()
                    .ok_or(Errno::EIO)?
                    .try_clone()
                    .map_err(|_| Errno::EIO)
            }
        }
    }

    /// The object that holds a node's stored bytes (an object store).
    fn stored_key(&self, remote: &Remote, n: &Node) -> Result<object_store::path::Path, Errno> {
        match n.backing {
            Backing::None => Err(Errno::EISDIR),
            Backing::Mirror => Ok(remote.mirror_key(&n.path)),
            Backing::Increment(i, part) => {
                let inc = self.history.increments.get(i).ok_or(Errno::EIO)?;
                Ok(remote.part_key(&inc.name, part, &n.path))
            }
        }
    }

    fn xattrs_of(&self, n: &Node) -> Result<Xattrs, Errno> {
        match (&n.xattrs, &self.backend) {
            (Attrs::Known(x), _) => Ok(x.clone()),
            (Attrs::Digest(d), Backend::Object { remote, xattrs }) => {
                if *d == NO_XATTRS {
                    return Ok(Xattrs::default());
                }
                if let Some(x) = xattrs.lock().map_err(|_| Errno::EIO)?.get(d) {
                    return Ok(x.clone());
                }
                match remote.load_xattrs(*d) {
                    Ok(x) => {
                        if let Ok(mut seen) = xattrs.lock() {
                            seen.insert(*d, x.clone());
                        }
                        Ok(x)
                    }
                    Err(e) => {
                        tracing::error!("mount: the extended attributes of {}: {e}", n.path);
                        Err(Errno::EIO)
                    }
                }
            }
            (Attrs::Digest(d), Backend::Local { store, .. }) => {
                if *d == NO_XATTRS {
                    return Ok(Xattrs::default());
                }
                match store.load_xattrs(*d) {
                    Ok(x) => Ok(x.unwrap_or_default()),
                    Err(e) => {
                        tracing::error!("mount: the extended attributes of {}: {e}", n.path);
                        Err(Errno::EIO)
                    }
                }
            }
            (Attrs::Inode, Backend::Object { .. }) => Ok(Xattrs::default()),
            (Attrs::Inode, Backend::Local { mirror, .. }) => {
                // The mirror's entry: its own xattrs.
                let Ok(dir) = self.stored_dir(n).or_else(|_| {
                    mirror
                        .as_ref()
                        .ok_or(Errno::EIO)
                        .and_then(|m| m.try_clone().map_err(|_| Errno::EIO))
                }) else {
                    return Ok(Xattrs::default());
                };
                let read = match n.meta.kind {
                    Kind::Dir => dir
                        .open_dir(n.path.as_bytes())
                        .and_then(crate::fs::xattr::read_all),
                    Kind::File => dir
                        .open_file(n.path.as_bytes())
                        .and_then(|(f, _)| crate::fs::xattr::read_all(&f)),
                    Kind::Symlink => Ok(Xattrs::default()),
                };
                Ok(read.unwrap_or_default())
            }
        }
    }

    /// A symlink's stored target.
    fn target_of(&self, n: &Node) -> Result<Vec<u8>, Errno> {
        match &self.backend {
            Backend::Local { .. } => self.stored_dir(n).and_then(|d| {
                let (parent, leaf) = d.parent_of(n.path.as_bytes()).map_err(|_| Errno::EIO)?;
                parent.read_link(leaf).map_err(|_| Errno::EIO)
            }),
            Backend::Object { remote, .. } => {
                let key = self.stored_key(remote, n)?;
                match remote.bucket.get(&key, None) {
                    Ok(Fetched::Got { bytes, .. }) => Ok(bytes),
                    Ok(_) => {
                        tracing::error!(
                            "mount: {}/{}: missing (the symlink {})",
                            remote.url(),
                            remote.bucket.shown(&key),
                            n.path
                        );
                        Err(Errno::EIO)
                    }
                    Err(e) => {
                        tracing::error!("mount: {e}");
                        Err(Errno::EIO)
                    }
                }
            }
        }
    }

    /// Open a node's stored copy, checking it has the recorded size.
    fn open_stored(&self, n: &Node) -> Result<Opened, Errno> {
        match &self.backend {
            Backend::Local { .. } => self.stored_dir(n).and_then(|d| {
                let (file, st) = d.open_file(n.path.as_bytes()).map_err(|_| Errno::EIO)?;
                // A stored copy of another size is not the version recorded.
                if st.size != n.meta.size {
                    return Err(Errno::EIO);
                }
                Ok(Opened::Local(file))
            }),
            Backend::Object { remote, .. } => {
                let key = self.stored_key(remote, n)?;
                let shown = || format!("{}/{}", remote.url(), remote.bucket.shown(&key));
                match remote.bucket.size(&key) {
                    Ok(Some(size)) if size == n.meta.size => Ok(Opened::Object(RemoteFile {
                        key,
                        size,
                        last: Mutex::new(None),
                    })),
                    Ok(Some(size)) => {
                        tracing::error!(
                            "mount: {}: size {size}, but {} was recorded with size {}: \
                             not the version recorded",
                            shown(),
                            n.path,
                            { n.meta.size }
                        );
                        Err(Errno::EIO)
                    }
                    Ok(None) => {
                        tracing::error!("mount: {}: missing (the file {})", shown(), n.path);
                        Err(Errno::EIO)
                    }
                    Err(e) => {
                        tracing::error!("mount: {e}");
                        Err(Errno::EIO)
                    }
                }
            }
        }
    }

    /// Up to `size` bytes of an open file at `offset`.
    fn read_opened(&self, file: &Opened, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let size = size.min(MAX_READ) as usize;
        match file {
            Opened::Local(file) => {
                let mut buf = vec![0u8; size];
                let mut got = 0;
                while got < buf.len() {
                    match file.read_at(&mut buf[got..], offset + got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return Err(Errno::EIO),
                    }
                }
                buf.truncate(got);
                Ok(buf)
            }
            Opened::Object(file) => {
                let Backend::Object { remote, .. } = &self.backend else {
                    return Err(Errno::EIO);
                };
                let (end, upto) = span(offset, size as u64, file.size);
                if offset >= end {
                    return Ok(Vec::new());
                }
                let mut last = file.last.lock().map_err(|_| Errno::EIO)?;
                if let Some(bytes) = last
                    .as_ref()
                    .and_then(|(at, bytes)| cached(*at, bytes, offset, end))
                {
                    return Ok(bytes.to_vec());
                }
                let shown = || format!("{}/{}", remote.url(), remote.bucket.shown(&file.key));
                let bytes = match remote.bucket.get_range(&file.key, offset..upto) {
                    Ok(Some(b)) if b.len() as u64 == upto - offset => b,
                    Ok(Some(b)) => {
                        tracing::error!(
                            "mount: {}: {} bytes at {offset}, {} asked for: it changed or is damaged",
                            shown(),
                            b.len(),
                            upto - offset
                        );
                        return Err(Errno::EIO);
                    }
                    Ok(None) => {
                        tracing::error!("mount: {}: missing", shown());
                        return Err(Errno::EIO);
                    }
                    Err(e) => {
                        tracing::error!("mount: {e}");
                        return Err(Errno::EIO);
                    }
                };
                let out = bytes[..(end - offset) as usize].to_vec();
                *last = Some((offset, bytes));
                Ok(out)
            }
        }
    }
}

impl Filesystem for HistoryFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.as_bytes();
        let found = if parent.0 == 1 {
            self.top()
                .into_iter()
                .find(|(_, n)| n.as_bytes() == name)
                .and_then(|(t, _)| self.attr_of(ino_of(t, 0)))
        } else {
            self.node(parent.0).and_then(|(t, id, _)| {
                let child = self.tree(t)?.child(id, name)?;
                self.attr_of(ino_of(t, child))
            })
        };
        match found {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let Some((_, _, n)) = self.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if n.meta.kind != Kind::Symlink {
            return reply.error(Errno::EINVAL);
        }
        match self.target_of(n) {
            // A target that is not the one recorded is damage, not data.
            Ok(t) if n.hash.is_some_and(|h| Hash::of(&t) != h) => reply.error(Errno::EIO),
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return reply.error(Errno::EROFS);
        }
        let Some((_, _, n)) = self.node(ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if n.meta.kind != Kind::File {
            return reply.error(Errno::EINVAL);
        }
        match self.open_stored(n) {
            Ok(file) => {
                let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut files) = self.files.lock() {
                    files.insert(fh, Arc::new(file));
                    reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
                } else {
                    reply.error(Errno::EIO);
                }
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // The table is held only to find the file: a slow fetch of one
        // file does not hold up the others.
        let file = match self.files.lock() {
            Ok(files) => files.get(&fh.0).cloned(),
            Err(_) => return reply.error(Errno::EIO),
        };
        let Some(file) = file else {
            return reply.error(Errno::EBADF);
        };
        match self.read_opened(&file, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever written: nothing to flush.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Ok(mut files) = self.files.lock() {
            files.remove(&fh.0);
        }
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut entries: Vec<(u64, FileType, Vec<u8>)> = Vec::new();
        if ino.0 == 1 {
            entries.push((1, FileType::Directory, b".".to_vec()));
            entries.push((1, FileType::Directory, b"..".to_vec()));
            for (t, name) in self.top() {
                entries.push((ino_of(t, 0), FileType::Directory, name.into_bytes()));
            }
        } else {
            let Some((t, id, n)) = self.node(ino.0) else {
                return reply.error(Errno::ENOENT);
            };
            if n.meta.kind != Kind::Dir {
                return reply.error(Errno::ENOTDIR);
            }
            let Some(tree) = self.tree(t) else {
                return reply.error(Errno::ENOENT);
            };
            let up = if id == 0 { 1 } else { ino_of(t, n.parent) };
            entries.push((ino_of(t, id), FileType::Directory, b".".to_vec()));
            entries.push((up, FileType::Directory, b"..".to_vec()));
            for &c in &n.children {
                let child = &tree.nodes[c as usize];
                let shown = child.same_as.unwrap_or(c);
                entries.push((
                    ino_of(t, shown),
                    file_type(child.meta.kind),
                    child.name.clone(),
                ));
            }
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some((_, _, n)) = self.node(ino.0) else {
            return reply.error(Errno::ENODATA);
        };
        let xattrs = match self.xattrs_of(n) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let Some((_, value)) = xattrs
            .0
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
        else {
            return reply.error(Errno::ENODATA);
        };
        xattr_reply(value, size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names: Vec<u8> = match self.node(ino.0).map(|(_, _, n)| self.xattrs_of(n)) {
            Some(Ok(x)) => {
                x.0.iter()
                    .flat_map(|(k, _)| k.iter().copied().chain([0]))
                    .collect()
            }
            Some(Err(e)) => return reply.error(e),
            None => Vec::new(),
        };
        xattr_reply(&names, size, reply);
    }
}

/// A read of `size` bytes at `offset` of an object of `len` bytes: it
/// returns `offset..end`, and fetches `offset..upto` when the last range
/// does not hold it (at least [`WINDOW`], never past the end).
fn span(offset: u64, size: u64, len: u64) -> (u64, u64) {
    let end = offset.saturating_add(size).min(len);
    let upto = offset.saturating_add(size.max(WINDOW)).min(len);
    (end, upto)
}

/// Bytes `offset..end` from a range fetched at `at`, if it holds them all.
fn cached(at: u64, bytes: &[u8], offset: u64, end: u64) -> Option<&[u8]> {
    let from = usize::try_from(offset.checked_sub(at)?).ok()?;
    let to = usize::try_from(end.checked_sub(at)?).ok()?;
    bytes.get(from..to)
}

fn xattr_reply(value: &[u8], size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: Kind, link: u64) -> Meta {
        Meta {
            kind,
            size: 1,
            mtime: Timestamp::default(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            link,
        }
    }

    #[test]
    fn a_tree_has_every_folder_on_the_way_and_one_inode_per_group() {
        let p = |s: &str| RelPath::from_bytes(s.as_bytes());
        let entries = vec![
            (
                p("a/b/x"),
                meta(Kind::File, 7),
                None,
                Attrs::Inode,
                Backing::Mirror,
            ),
            (
                p("a/b/y"),
                meta(Kind::File, 7),
                None,
                Attrs::Inode,
                Backing::Mirror,
            ),
            (
                p("a/b"),
                meta(Kind::Dir, 0),
                None,
                Attrs::Inode,
                Backing::None,
            ),
            (
                p("z"),
                meta(Kind::Symlink, 0),
                None,
                Attrs::Inode,
                Backing::Mirror,
            ),
        ];
        let tree = Tree::build(entries, meta(Kind::Dir, 0));
        let a = tree.child(0, b"a").unwrap();
        let b = tree.child(a, b"b").unwrap();
        let x = tree.child(b, b"x").unwrap();
        let y = tree.child(b, b"y").unwrap();
        assert_eq!(tree.nodes[y as usize].same_as, Some(x));
        assert_eq!(tree.nodes[x as usize].nlink, 2);
        assert!(tree.child(0, b"z").is_some());
        assert!(tree.child(0, b"nope").is_none());
        assert_eq!(tree.nodes[0].children.len(), 2);
        assert_eq!(split(ino_of(3, 5)), Some((3, 5)));
        assert_eq!(split(1), None);
    }

    #[test]
    fn a_read_fetches_a_window_and_the_next_reads_come_from_it() {
        let k = 128 * 1024;
        // A window at least, never past the end; what is returned, less.
        assert_eq!(span(0, k, 10 * WINDOW), (k, WINDOW));
        assert_eq!(span(0, 4 * WINDOW, 10 * WINDOW), (4 * WINDOW, 4 * WINDOW));
        assert_eq!(
            span(10 * WINDOW - 5, k, 10 * WINDOW),
            (10 * WINDOW, 10 * WINDOW)
        );
        assert_eq!(span(20, k, 10), (10, 10));
        assert_eq!(span(u64::MAX - 1, k, u64::MAX), (u64::MAX, u64::MAX));
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(cached(100, &bytes, 100, 104), Some(&bytes[..4]));
        assert_eq!(cached(100, &bytes, 350, 356), Some(&bytes[250..]));
        // Before the range, or running past it: fetch again.
        assert_eq!(cached(100, &bytes, 99, 104), None);
        assert_eq!(cached(100, &bytes, 350, 357), None);
    }
}
