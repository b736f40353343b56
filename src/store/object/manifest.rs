//! The index of an object-store destination as a base and deltas: the
//! object `.strata/index` is a small manifest (JSON) naming immutable
//! segment objects below `.strata/index.d/`, one base (a whole index,
//! format v2: `crate::store::index`) and the deltas runs made since
//! ([`crate::store::index::Delta`]), each with its size and checksum.
//! Applied in order to the base, the deltas give the index.
//!
//! A run uploads only its delta, then rewrites the manifest, conditionally
//! on the ETag it replaced (the commit). When the deltas grow past a bound
//! ([`Manifest::compacts`]) the run uploads the whole index as a new base
//! instead, and once committed the segments the new manifest does not name
//! are deleted. A segment's name bears the manifest's sequence number and
//! the run that wrote it, `<seq>-<run>-base` or `<seq>-<run>-delta`: a
//! run that does not commit leaves one that no committed manifest names,
//! which recovery deletes (the run's plan names it).
//!
//! Strata before manifests kept the whole index at `.strata/index`; such
//! an object is still read ([`crate::store::index::is_index`] tells it
//! apart), and the next run writes a base and a manifest in its place (a
//! run with nothing to do uploads the index it read as the base); until
//! then no segment is named, and a run deletes any it finds (what an
//! upgrade killed half way left).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::super::StoreError;

/// Where segments live.
pub const SEGMENTS: &str = ".strata/index.d";

/// What [`Manifest::format`] holds.
pub const FORMAT: &str = "strata-index-manifest";

/// At most this many deltas: the run after writes a base.
pub const MAX_DELTAS: usize = 8;

/// Deltas may add up to a quarter of the base, and at least this many
/// bytes (a small tree's deltas are cheap to fetch; it compacts by count).
pub const DELTA_FLOOR: u64 = 16 * 1024;

/// One segment object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Its key, relative to the destination's prefix.
    pub key: String,
    /// Its length in bytes.
    pub size: u64,
    /// The xxh3-64 of its bytes, in hex.
    pub xxh3: String,
}

impl Segment {
    /// The segment of `bytes` stored at `key`.
    pub fn of(key: String, bytes: &[u8]) -> Segment {
        Segment {
            key,
            size: bytes.len() as u64,
            xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes)),
        }
    }

    /// Whether `bytes` are this segment's; else what is wrong with them.
    pub fn check(&self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() as u64 != self.size {
            return Err(format!(
                "{} bytes, the manifest says {}",
                bytes.len(),
                self.size
            ));
        }
        if Segment::of(String::new(), bytes).xxh3 != self.xxh3 {
            return Err("its checksum is not the one the manifest names".into());
        }
        Ok(())
    }
}

/// The committed index as segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// Counts the manifests written: each commit writes the next.
    pub seq: u64,
    /// Entries in the index.
    pub count: u64,
    /// The newest increment committed with (or before) it.
    pub last_increment: Option<String>,
    /// The whole index as of some run.
    pub base: Segment,
    /// The runs' changes since, oldest first.
    #[serde(default)]
    pub deltas: Vec<Segment>,
}

impl Manifest {
    /// Parse a manifest object (`shown` names it in errors).
    pub fn parse(bytes: &[u8], shown: &Path) -> Result<Manifest, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: shown.to_path_buf(),
            message,
        };
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("not a strata index or index manifest: {e}")))?;
        if m.format != FORMAT {
            return Err(corrupt(format!(
                "not a strata index manifest: {}",
                m.format
            )));
        }
        for s in std::iter::once(&m.base).chain(&m.deltas) {
            if !s.key.starts_with(&format!("{SEGMENTS}/")) || s.key.contains("..") {
                return Err(corrupt(format!(
                    "names a segment outside {SEGMENTS}: {}",
                    s.key
                )));
            }
        }
        Ok(m)
    }

    /// The manifest's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest serializes")
    }

    /// Every segment it names, base first.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        std::iter::once(&self.base).chain(&self.deltas)
    }

    /// Whether the run after this manifest, with a delta of `delta` bytes,
    /// writes a new base instead: past [`MAX_DELTAS`] deltas, or deltas
    /// adding up to more than a quarter of the base (and [`DELTA_FLOOR`]).
    /// A base costs the whole index once; deltas cost each reader that is
    /// behind a fetch per delta and the bytes of changes since undone.
    pub fn compacts(&self, delta: u64) -> bool {
        let deltas: u64 = self.deltas.iter().map(|d| d.size).sum::<u64>() + delta;
        self.deltas.len() >= MAX_DELTAS || deltas > (self.base.size / 4).max(DELTA_FLOOR)
    }
}

/// The key of the segment that run `run` writes after manifest `seq - 1`.
pub fn segment_key(seq: u64, run: &str, base: bool) -> String {
    let kind = if base { "base" } else { "delta" };
    format!("{SEGMENTS}/{seq:010}-{run}-{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(base: u64, deltas: &[u64]) -> Manifest {
        let seg = |size| Segment {
            key: format!("{SEGMENTS}/x"),
            size,
            xxh3: String::new(),
        };
        Manifest {
            format: FORMAT.into(),
            seq: 1,
            count: 0,
            last_increment: None,
            base: seg(base),
            deltas: deltas.iter().map(|&d| seg(d)).collect(),
        }
    }

    #[test]
    fn compaction_comes_past_a_quarter_of_the_base_or_too_many_deltas() {
        let big = 1_000_000;
        assert!(!manifest(big, &[]).compacts(1000));
        assert!(!manifest(big, &[100_000, 100_000]).compacts(50_000));
        assert!(manifest(big, &[100_000, 100_000]).compacts(50_001));
        assert!(manifest(big, &[1; MAX_DELTAS]).compacts(1));
        assert!(!manifest(big, &[1; MAX_DELTAS - 1]).compacts(1));
        // A small base: the floor.
        assert!(!manifest(100, &[]).compacts(DELTA_FLOOR));
        assert!(manifest(100, &[]).compacts(DELTA_FLOOR + 1));
    }

    #[test]
    fn a_manifest_round_trips_and_bad_ones_are_errors_naming_the_key() {
        let m = manifest(10, &[1, 2]);
        let shown = Path::new("s3://b/p/.strata/index");
        assert_eq!(Manifest::parse(&m.to_bytes(), shown).unwrap(), m);
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"format":"other","seq":1,"count":0,"last_increment":null,"base":{"key":".strata/index.d/a","size":1,"xxh3":""}}"#,
            br#"{"format":"strata-index-manifest","seq":1,"count":0,"last_increment":null,"base":{"key":"mirror/a","size":1,"xxh3":""}}"#,
            br#"{"format":"strata-index-manifest","seq":1,"count":0,"last_increment":null,"base":{"key":".strata/index.d/../../x","size":1,"xxh3":""}}"#,
        ] {
            let e = Manifest::parse(bad, shown).unwrap_err().to_string();
            assert!(e.contains("s3://b/p/.strata/index"), "{e}");
        }
    }

    #[test]
    fn a_segment_checks_its_size_and_checksum() {
        let s = Segment::of("k".into(), b"abc");
        assert!(s.check(b"abc").is_ok());
        assert!(s.check(b"abd").is_err());
        assert!(s.check(b"abcd").is_err());
    }
}
