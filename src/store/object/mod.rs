//! Object-store destinations, `s3://BUCKET/PREFIX`: the layout of SPEC §3
//! as keys, so the mirror stays browsable with any S3 client.
//!
//! ```text
//! mirror/<path>                       latest content of every file and symlink
//! backup_X/track/<path>               server-side copies of the new versions
//! backup_X/deleted/<path>             server-side copies of the last versions
//! backup_X/backup_X.json              the increment's metadata (IncrementMeta)
//! .strata/index                       the index manifest (`manifest`): the commit
//! .strata/index.d/<seq>-<run>-base    the whole index as of a run, format v2 (`index`)
//! .strata/index.d/<seq>-<run>-delta   what a later run changed (`index::Delta`)
//! .strata/lease                       the writer's lease (`lease`)
//! .strata/pruning/merge.json          the journal of a prune in progress
//! .strata/xattrs/<digest>             extended attributes, content-addressed
//! .strata/staging/<run>/data/<path>   the bytes a run uploaded, not yet in mirror/
//! .strata/staging/<run>/plan          what the run does to mirror/ once committed
//! ```
//!
//! What objects cannot hold lives where a restore finds it: mode, owner,
//! mtimes, the hardlink group and directories in the index and the
//! increments' records; a symlink is an object holding its target (its
//! record's hash is the target's); extended attributes in an object named
//! by the digest the index keeps.
//!
//! A run (see `crate::run_object`) uploads into its staging prefix, makes
//! the increment's `track/` and `deleted/` objects by server-side copy,
//! writes the plan, then the increment's metadata (the increment exists),
//! then its index segment (a delta, or a whole new base: see
//! [`manifest`]), then the manifest naming it, conditionally on the ETag
//! it replaced and tagged with the run's name: the commit. Only then does
//! it copy the staged bytes to `mirror/` and delete what left, the
//! segments a new base replaced, and then its staging prefix. Recovery
//! ([`Remote::recover`]) finishes a staged run whose name the index bears
//! and deletes one whose name it does not (its segment too, which its plan
//! names): a run killed at any point leaves nothing the next run does not
//! repair.
//!
//! The index is cached in the job's local state directory, merged, with
//! the manifest and ETag it reflects; the manifest is fetched again only
//! when the ETag changed (a conditional get), and then only the segments
//! the cache lacks: a run with nothing to do makes a handful of requests
//! whatever the tree's size. An index in one object, as strata wrote it
//! before manifests, is still read.

pub mod client;
pub mod config;
pub mod lease;
pub mod manifest;
pub mod url;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use client::{Bucket, ObjectError};
pub use config::ObjectOptions;
pub use manifest::{Manifest, Segment};
pub use url::ObjectUrl;

use super::commit::{StartIndex, write_index};
use super::index::{INDEX, IndexFile, decode_delta, is_index};
use super::meta::IncrementMeta;
use super::{IncrementName, Part, Store, StoreError};
use crate::entry::{Hash, NO_XATTRS, RelPath, Xattrs};
use crate::faults::Faults;
use client::{Fetched, Write};

/// The index's key: its manifest (or, as strata wrote it before
/// manifests, the whole index).
pub const INDEX_KEY: &str = ".strata/index";
/// The journal of a prune in progress (see `crate::history::prune_remote`).
pub const PRUNE_JOURNAL: &str = ".strata/pruning/merge.json";
/// Where runs stage their uploads.
pub const STAGING: &str = ".strata/staging";
/// Where extended attributes are kept, by digest.
pub const XATTRS: &str = ".strata/xattrs";
/// The mirror's top.
pub const MIRROR_TOP: &str = "mirror";

/// An object-store destination as a job names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDest {
    /// Bucket and prefix.
    pub url: ObjectUrl,
    /// How to reach it.
    pub options: ObjectOptions,
}

impl From<ObjectError> for StoreError {
    fn from(e: ObjectError) -> StoreError {
        StoreError::Object(Box::new(e))
    }
}

/// What the local cache remembers of the index.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Cached {
    etag: Option<String>,
    run: Option<String>,
    /// The manifest the cached index is the merge of (`None`: the whole
    /// index object of an older strata, or nothing known).
    #[serde(default)]
    manifest: Option<Manifest>,
}

const CACHED: &[u8] = b"index.etag";

/// The committed index of an object-store destination.
#[derive(Debug)]
pub struct RemoteIndex {
    /// The entries (from the local cache, checked).
    pub index: StartIndex,
    /// The ETag of the index object (`None`: there is none yet).
    pub etag: Option<String>,
    /// The run that wrote it.
    pub run: Option<String>,
    /// Its manifest (`None`: the whole index in one object, as strata
    /// wrote it before manifests).
    pub manifest: Option<Manifest>,
}

/// The post-commit steps of a staged run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    /// The index ETag the run started from.
    pub base: Option<String>,
    /// Keys (relative to the prefix) copied from staging into `mirror/`:
    /// (from, to).
    pub puts: Vec<(String, String)>,
    /// Mirror keys that leave.
    pub removes: Vec<String>,
    /// The index segment the run uploads (a key relative to the prefix):
    /// deleted if the run does not commit.
    #[serde(default)]
    pub segment: Option<String>,
    /// Whether that segment is a new base: once the run committed, every
    /// other segment goes.
    #[serde(default)]
    pub compacted: bool,
}

/// An object-store destination, opened: the bucket and the job's local
/// cache (a folder in strata's state directory laid out like a
/// destination's `.strata/`, which holds the cached index and the run log).
#[derive(Debug)]
pub struct Remote {
    /// The bucket.
    pub bucket: Arc<Bucket>,
    /// The local cache.
    pub cache: Store,
    /// The fault seam: where a reader may be held between reading the
    /// index's manifest and its segments.
    faults: Faults,
}

/// The cache folder of `job`'s destination `url` below `state` (strata's
/// state directory).
pub fn cache_path(state: &Path, job: &str, url: &ObjectUrl) -> PathBuf {
    let key = xxhash_rust::xxh3::xxh3_64(url.to_string().as_bytes());
    state.join("objects").join(format!("{job}-{key:016x}"))
}

/// Open (making it) the cache folder at `path`.
pub fn open_cache(path: &Path) -> Result<Store, StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    let state = path.join(".strata");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&state)
        .map_err(|e| StoreError::io(&state, e))?;
    Store::open(path)
}

impl Remote {
    /// Connect to `dest`, with its cache at `cache`.
    pub fn open(dest: &ObjectDest, cache: &Path, faults: Faults) -> Result<Remote, StoreError> {
        let bucket = Arc::new(Bucket::open(&dest.url, &dest.options)?);
        Ok(Remote {
            bucket,
            cache: open_cache(cache)?,
            faults,
        })
    }

    /// The destination's URL, for messages.
    pub fn url(&self) -> String {
        self.bucket.url().to_string()
    }

    fn read_cached(&self) -> Cached {
        self.cache
            .state()
            .read(CACHED)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn write_cached(&self, cached: &Cached) -> Result<(), StoreError> {
        let tmp = self.cache.tmp()?;
        self.cache
            .state()
            .write_atomic(CACHED, &tmp, b"index.etag.new", |w| {
                serde_json::to_writer(&mut *w, cached)?;
                Ok(())
            })
            .map_err(|e| StoreError::io(&self.cache.state_path(CACHED), e))
    }

    /// Whether the local cache remembers a committed index (a history that
    /// was there).
    pub fn remembers_history(&self) -> bool {
        self.read_cached().etag.is_some()
    }

    /// The committed index: one conditional request when the cache holds
    /// the current one; when it does not, the manifest and the segments
    /// the cache lacks (only the new deltas when it holds an earlier state
    /// of the same base). `None`: no index yet.
    ///
    /// A writer that compacts deletes the segments the manifest it replaced
    /// named: a reader that read that manifest just before finds one of
    /// them gone. When fetching the segments fails and the manifest is no
    /// longer the one read, the index is fetched again (a few times), so
    /// that a reader beside a writer never fails for it; a segment missing
    /// from the manifest that stands is what it says.
    pub fn fetch_index(&self) -> Result<Option<RemoteIndex>, StoreError> {
        const ATTEMPTS: usize = 4;
        let key = self.bucket.key(INDEX_KEY);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let cached = self.read_cached();
            let have = self.cache.state_has(INDEX);
            let etag = cached.etag.as_deref().filter(|_| have);
            let (bytes, etag, run) = match self.bucket.get(&key, etag)? {
                Fetched::Missing => return Ok(None),
                Fetched::NotModified => return self.open_cached(cached).map(Some),
                Fetched::Got { bytes, etag, run } => (bytes, etag, run),
            };
            let manifest = if is_index(&bytes) {
                // As strata wrote it before manifests: the whole index.
                self.forget_cached()?;
                self.write_cache_index(&bytes)?;
                None
            } else {
                let manifest = Manifest::parse(&bytes, &self.shown(INDEX_KEY))?;
                self.faults.point("object.index.read", &RelPath::root());
                if let Err(e) = self.catch_up(&cached, have, &manifest) {
                    let moved = || {
                        etag.as_deref().is_some_and(|read| {
                            !matches!(self.bucket.get(&key, Some(read)), Ok(Fetched::NotModified))
                        })
                    };
                    if attempt < ATTEMPTS && moved() {
                        tracing::debug!("the index changed while it was read ({e}); again");
                        continue;
                    }
                    return Err(e);
                }
                Some(manifest)
            };
            let cached = Cached {
                etag,
                run,
                manifest,
            };
            self.write_cached(&cached)?;
            return self.open_cached(cached).map(Some);
        }
    }

    /// `key` (relative to the prefix) as messages name it.
    pub fn shown(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("{}/{key}", self.url()))
    }

    /// Bring the cached index to `manifest`: the deltas it lacks when it
    /// holds the same base and an earlier list of its deltas, else the
    /// base and every delta.
    fn catch_up(&self, cached: &Cached, have: bool, manifest: &Manifest) -> Result<(), StoreError> {
        let from = match &cached.manifest {
            Some(c)
                if have && c.base == manifest.base && manifest.deltas.starts_with(&c.deltas) =>
            {
                c.deltas.len()
            }
            _ => {
                let bytes = self.fetch_base(&manifest.base)?;
                self.forget_cached()?;
                self.write_cache_index(&bytes)?;
                0
            }
        };
        // The cache is forgotten before it changes: a crash in between
        // leaves one that is fetched again, never a stale one trusted.
        self.forget_cached()?;
        for segment in &manifest.deltas[from..] {
            let bytes = self.fetch_segment(segment)?;
            let shown = self.shown(&segment.key);
            let delta = decode_delta(&bytes, &shown)?;
            let old = self.open_cached(Cached::default())?.index;
            write_index(
                &self.cache,
                &old,
                delta.updates.into_iter(),
                delta.last_increment.as_deref(),
                delta.count,
            )
            .map_err(|e| match e {
                StoreError::Corrupt { message, .. } => StoreError::Corrupt {
                    path: shown.clone(),
                    message: format!("does not apply to the index before it: {message}"),
                },
                e => e,
            })?;
        }
        let merged = self.open_cached(Cached::default())?.index;
        if merged.len() != manifest.count
            || merged.last_increment() != manifest.last_increment.as_deref()
        {
            return Err(StoreError::Corrupt {
                path: self.shown(INDEX_KEY),
                message: format!(
                    "its segments make an index of {} entries up to {}, the manifest says {} up \
                     to {}",
                    merged.len(),
                    merged.last_increment().unwrap_or("no increment"),
                    manifest.count,
                    manifest.last_increment.as_deref().unwrap_or("no increment"),
                ),
            });
        }
        Ok(())
    }

    /// The base segment's bytes: [`Remote::fetch_segment`], and an index.
    fn fetch_base(&self, base: &Segment) -> Result<Vec<u8>, StoreError> {
        let bytes = self.fetch_segment(base)?;
        if !is_index(&bytes) {
            return Err(StoreError::Corrupt {
                path: self.shown(&base.key),
                message: "not a strata index (the base of the index)".into(),
            });
        }
        Ok(bytes)
    }

    /// A segment's bytes, checked against the size and checksum the
    /// manifest gives.
    pub fn fetch_segment(&self, segment: &Segment) -> Result<Vec<u8>, StoreError> {
        let key = self.bucket.key(&segment.key);
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.shown(&segment.key),
            message,
        };
        match self.bucket.get(&key, None)? {
            Fetched::Got { bytes, .. } => {
                segment
                    .check(&bytes)
                    .map_err(|m| corrupt(format!("a segment of the index: {m}")))?;
                Ok(bytes)
            }
            _ => Err(corrupt(
                "missing: a segment of the index that its manifest names".into(),
            )),
        }
    }

    /// Check the committed index as stored, not as cached: the manifest
    /// and each segment it names (present, of its size and checksum, of
    /// its format), and no segment it does not name. Problems, each with
    /// the key concerned; only reads.
    pub fn check_index(&self) -> Result<Vec<(PathBuf, String)>, StoreError> {
        let mut problems = Vec::new();
        let bytes = match self.bucket.get(&self.bucket.key(INDEX_KEY), None)? {
            Fetched::Got { bytes, .. } => bytes,
            _ => return Ok(problems),
        };
        let mut named = std::collections::HashSet::new();
        if !is_index(&bytes) {
            let manifest = match Manifest::parse(&bytes, &self.shown(INDEX_KEY)) {
                Ok(m) => m,
                Err(e) => {
                    problems.push((self.shown(INDEX_KEY), e.to_string()));
                    return Ok(problems);
                }
            };
            for segment in manifest.segments() {
                named.insert(segment.key.clone());
                let checked = if segment == &manifest.base {
                    self.fetch_base(segment).map(|_| ())
                } else {
                    self.fetch_segment(segment)
                        .and_then(|bytes| decode_delta(&bytes, &self.shown(&segment.key)))
                        .map(|_| ())
                };
                if let Err(e) = checked {
                    let message = match e {
                        StoreError::Corrupt { message, .. } => message,
                        e => e.to_string(),
                    };
                    problems.push((self.shown(&segment.key), message));
                }
            }
        }
        for m in self.bucket.list(&self.bucket.key(manifest::SEGMENTS))? {
            let key = self.bucket.shown(&m.location);
            if !named.contains(&key) {
                problems.push((
                    self.shown(&key),
                    "a segment the index manifest does not name (the next run deletes it)".into(),
                ));
            }
        }
        Ok(problems)
    }

    fn open_cached(&self, cached: Cached) -> Result<RemoteIndex, StoreError> {
        let path = self.cache.index_path();
        let shown = self.shown(INDEX_KEY);
        let file = IndexFile::open(self.cache.state(), &path)
            .map_err(|e| match e {
                StoreError::Corrupt { message, .. } => StoreError::Corrupt {
                    path: shown.clone(),
                    message,
                },
                e => e,
            })?
            .ok_or_else(|| StoreError::Corrupt {
                path: shown,
                message: "the cached copy vanished".into(),
            })?;
        Ok(RemoteIndex {
            index: StartIndex::File(file),
            etag: cached.etag,
            run: cached.run,
            manifest: cached.manifest,
        })
    }

    /// Forget what the cache holds (its ETag first, before the index
    /// changes: a crash in between leaves a cache fetched again).
    fn forget_cached(&self) -> Result<(), StoreError> {
        self.write_cached(&Cached::default())
    }

    fn write_cache_index(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.cache.tmp()?;
        self.cache
            .state()
            .write_atomic(INDEX, &tmp, b"index.fetched", |w| w.write_all(bytes))
            .map_err(|e| StoreError::io(&self.cache.index_path(), e))
    }

    /// Note that the cached index was committed anew as `manifest` (its
    /// entries unchanged: an index in one object upgraded to a base).
    pub fn note_committed(
        &self,
        etag: Option<String>,
        run: Option<String>,
        manifest: Manifest,
    ) -> Result<(), StoreError> {
        self.write_cached(&Cached {
            etag,
            run,
            manifest: Some(manifest),
        })
    }

    /// Make the index a run just committed (written whole in the cache
    /// folder `next`) the cached one, with the manifest and ETag it was
    /// committed as.
    pub fn adopt_index(
        &self,
        next: &Store,
        etag: Option<String>,
        run: Option<String>,
        manifest: Manifest,
    ) -> Result<(), StoreError> {
        self.forget_cached()?;
        let io = |e| StoreError::io(&self.cache.index_path(), e);
        next.state()
            .rename(INDEX, self.cache.state(), INDEX)
            .map_err(io)?;
        // Durable before the cache says what it holds.
        self.cache.state().sync().map_err(io)?;
        self.write_cached(&Cached {
            etag,
            run,
            manifest: Some(manifest),
        })
    }

    /// The key of `path` in the mirror.
    pub fn mirror_key(&self, path: &RelPath) -> object_store::path::Path {
        self.bucket.path_key(MIRROR_TOP, path)
    }

    /// The key of `path` in an increment's part.
    pub fn part_key(
        &self,
        increment: &str,
        part: Part,
        path: &RelPath,
    ) -> object_store::path::Path {
        let part = std::str::from_utf8(part.name()).expect("ASCII");
        self.bucket.path_key(&format!("{increment}/{part}"), path)
    }

    /// The key of a staged upload of `path`.
    pub fn staged_key(&self, run: &str, path: &RelPath) -> object_store::path::Path {
        self.bucket.path_key(&format!("{STAGING}/{run}/data"), path)
    }

    /// The metadata key of an increment.
    pub fn meta_key(&self, increment: &str) -> object_store::path::Path {
        self.bucket.key(&format!(
            "{increment}/{}",
            IncrementMeta::file_name(increment)
        ))
    }

    /// Save a set of extended attributes under its digest (once).
    pub fn save_xattrs(&self, xattrs: &Xattrs) -> Result<Hash, StoreError> {
        let digest = xattrs.digest();
        if digest == NO_XATTRS {
            return Ok(digest);
        }
        let body = xattrs.encode();
        let key = self.bucket.key(&format!("{XATTRS}/{}", digest.to_hex()));
        // Content-addressed: one already there is the same.
        let _ = self.bucket.put(&key, body, Write::Create)?;
        Ok(digest)
    }

    /// The extended attributes of a digest.
    pub fn load_xattrs(&self, digest: Hash) -> Result<Xattrs, StoreError> {
        if digest == NO_XATTRS {
            return Ok(Xattrs::default());
        }
        let key = self.bucket.key(&format!("{XATTRS}/{}", digest.to_hex()));
        let shown = || PathBuf::from(format!("{}/{}", self.url(), self.bucket.shown(&key)));
        let bytes = match self.bucket.get(&key, None)? {
            Fetched::Got { bytes, .. } => bytes,
            _ => {
                return Err(StoreError::Corrupt {
                    path: shown(),
                    message: "missing: the extended attributes of an entry".into(),
                });
            }
        };
        Xattrs::decode(&bytes).ok_or_else(|| StoreError::Corrupt {
            path: shown(),
            message: "not extended attributes as strata writes them".into(),
        })
    }

    /// The committed increments' names, oldest first (a folder without its
    /// metadata object is no increment: a run that has not committed).
    pub fn increment_names(&self) -> Result<Vec<IncrementName>, StoreError> {
        let mut names: Vec<IncrementName> = self
            .bucket
            .list_dirs(&self.bucket.key(""))?
            .iter()
            .filter_map(|n| IncrementName::parse(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// An increment's metadata (`None`: no metadata object, so no
    /// increment).
    pub fn load_meta(&self, name: &IncrementName) -> Result<Option<IncrementMeta>, StoreError> {
        let text = name.to_string();
        let key = self.meta_key(&text);
        match self.bucket.get(&key, None)? {
            Fetched::Got { bytes, .. } => {
                let shown = PathBuf::from(format!("{}/{}", self.url(), self.bucket.shown(&key)));
                IncrementMeta::parse(&bytes, &shown).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The staged runs (names of `.strata/staging/<run>/`).
    pub fn staged(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.bucket.list_dirs(&self.bucket.key(STAGING))?)
    }

    fn plan_key(&self, run: &str) -> object_store::path::Path {
        self.bucket.key(&format!("{STAGING}/{run}/plan"))
    }

    /// Write a staged run's plan.
    pub fn write_plan(&self, run: &str, plan: &Plan) -> Result<(), StoreError> {
        let body = serde_json::to_vec(plan).expect("a plan serializes");
        let _ = self
            .bucket
            .put(&self.plan_key(run), body, Write::Overwrite)?;
        Ok(())
    }

    /// Carry out a committed run's plan (each step may already be done):
    /// removals first, then the staged bytes into the mirror, then the
    /// staging prefix goes.
    pub fn finish_plan(&self, run: &str, plan: &Plan, faults: &Faults) -> Result<(), StoreError> {
        use rayon::prelude::*;
        plan.removes.par_iter().try_for_each(|k| {
            faults.point("object.remove", &RelPath::from_bytes(k.as_bytes()));
            self.bucket.delete(&self.bucket.key(k))
        })?;
        plan.puts.par_iter().try_for_each(|(from, to)| {
            faults.point("object.mirror", &RelPath::from_bytes(to.as_bytes()));
            let from = self.bucket.key(from);
            let to = self.bucket.key(to);
            match self.bucket.copy(&from, &to) {
                Ok(()) => Ok(()),
                // Done before a crash, and its staged copy already gone.
                Err(e) if self.bucket.list(&from).is_ok_and(|l| l.is_empty()) => {
                    let _ = e;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })?;
        if plan.compacted {
            self.retire_segments(plan.segment.as_deref(), faults)?;
        }
        self.drop_staging(run, faults)
    }

    /// After a new base committed: delete every segment but it (`None`:
    /// every segment, where the committed index is one object and names
    /// none).
    pub fn retire_segments(&self, keep: Option<&str>, faults: &Faults) -> Result<(), StoreError> {
        let keys = self.bucket.list(&self.bucket.key(manifest::SEGMENTS))?;
        let old: Vec<&object_store::path::Path> = keys
            .iter()
            .map(|m| &m.location)
            .filter(|k| keep != Some(self.bucket.shown(k).as_str()))
            .collect();
        if !old.is_empty() {
            faults.point("object.retire", &RelPath::root());
        }
        delete_all(&self.bucket, old.into_iter())
    }

    /// Delete a staged run's prefix.
    pub fn drop_staging(&self, run: &str, faults: &Faults) -> Result<(), StoreError> {
        faults.point("object.cleanup", &RelPath::root());
        let keys = self
            .bucket
            .list(&self.bucket.key(&format!("{STAGING}/{run}")))?;
        delete_all(&self.bucket, keys.iter().map(|m| &m.location))
    }

    /// Delete everything below an increment's prefix, its metadata first
    /// (so that it stops being an increment before its parts go).
    pub fn drop_increment(&self, name: &str) -> Result<(), StoreError> {
        self.bucket.delete(&self.meta_key(name))?;
        let keys = self.bucket.list(&self.bucket.key(name))?;
        delete_all(&self.bucket, keys.iter().map(|m| &m.location))
    }

    /// Repair what interrupted runs left: a staged run whose name the
    /// committed index bears is finished; any other is rolled back (its
    /// increment, if it wrote one, the index segment it uploaded unless
    /// the committed manifest names it, and its staged bytes deleted).
    /// Returns what was done, for the report.
    pub fn recover(
        &self,
        committed_run: Option<&str>,
        committed: Option<&Manifest>,
        faults: &Faults,
    ) -> Result<Vec<String>, StoreError> {
        let mut notes = Vec::new();
        for run in self.staged()? {
            faults.point("object.recover", &RelPath::from_bytes(run.as_bytes()));
            let plan = match self.bucket.get(&self.plan_key(&run), None)? {
                Fetched::Got { bytes, .. } => serde_json::from_slice::<Plan>(&bytes).ok(),
                _ => None,
            };
            match plan {
                Some(plan) if committed_run == Some(run.as_str()) => {
                    self.finish_plan(&run, &plan, faults)?;
                    notes.push(format!(
                        "finished the mirror of the interrupted run {run}, which had committed"
                    ));
                }
                _ => {
                    if IncrementName::parse(&run).is_some() {
                        self.drop_increment(&run)?;
                    }
                    let segment = plan.as_ref().and_then(|p| p.segment.as_deref());
                    let named =
                        |k: &str| committed.is_some_and(|m| m.segments().any(|s| s.key == k));
                    if let Some(k) = segment.filter(|k| !named(k)) {
                        self.bucket.delete(&self.bucket.key(k))?;
                    }
                    self.drop_staging(&run, faults)?;
                    notes.push(format!(
                        "rolled back the interrupted run {run}, which had not committed: the \
                         next run records its changes"
                    ));
                }
            }
        }
        Ok(notes)
    }
}

fn delete_all<'a>(
    bucket: &Bucket,
    keys: impl Iterator<Item = &'a object_store::path::Path>,
) -> Result<(), StoreError> {
    use rayon::prelude::*;
    let keys: Vec<&object_store::path::Path> = keys.collect();
    keys.par_iter().try_for_each(|k| bucket.delete(k))?;
    Ok(())
}
