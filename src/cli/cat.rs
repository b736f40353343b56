//! `strata cat NAME PATH [--at POINT]`: one version of one file, to
//! stdout, checked against the hash recorded for it.
//!
//! The stored copy is read twice through one descriptor: first to check
//! its hash, printing nothing if it does not match; then to print it,
//! hashing again, so that a copy changed in between (strata never writes
//! a stored inode in place; something else did) ends in an error, not in
//! a silent success. An object store's copy is streamed into an unnamed
//! file first, then read the same way.

use std::io::Write;
use std::os::unix::fs::FileExt;

use super::diff::{Found, find, load_history_of, load_index_of};
use super::{Config, ExitCode, find_job, open_destination, parse_point, relative_arg};
use crate::entry::{Hash, Kind, RelPath};
use crate::fs::copy::hash_file;
use crate::history::at::Point;
use crate::job::Job;
use crate::store::dest::Destination;
use crate::store::object::Remote;
use crate::store::object::client::{DownloadError, Fetched};

/// Where the stored copy is.
enum Stored {
    /// In this folder of a local destination, at the path's own path.
    Dir(crate::fs::Dir),
    /// This object of an object store.
    Object(object_store::path::Path),
}

/// What is known of the version to print.
struct Wanted {
    kind: Kind,
    size: u64,
    hash: Option<Hash>,
    /// The stored copy, and its path or URL, for messages.
    stored: Stored,
    shown: std::path::PathBuf,
}

/// Print one file's version.
pub fn run(config: &Config, name: &str, path: &str, at: Option<&str>) -> ExitCode {
    let point = match at.map(parse_point).transpose() {
        Ok(p) => p.unwrap_or(Point::Latest),
        Err(code) => return code,
    };
    let job = match find_job(config, name) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let rel = match relative_arg(&job, path) {
        Ok(Some(rel)) => rel,
        Ok(None) => {
            eprintln!("strata: {path}: the source itself is a directory; name a file in it");
            return ExitCode::Usage;
        }
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::Usage;
        }
    };
    let dest = match open_destination(config, &job) {
        Ok(dest) => dest,
        Err(code) => return code,
    };
    let wanted = match locate(&job, &dest, &point, &rel) {
        Ok(w) => w,
        Err(code) => return code,
    };
    match wanted.kind {
        Kind::Dir => {
            eprintln!(
                "strata: {rel} is a directory; `strata restore {} --to DIR {rel}` copies it",
                job.name
            );
            return ExitCode::Failure;
        }
        Kind::Symlink => {
            let target = match (&wanted.stored, &dest) {
                (Stored::Dir(dir), _) => dir
                    .parent_of(rel.as_bytes())
                    .and_then(|(d, leaf)| d.read_link(leaf))
                    .ok(),
                (Stored::Object(key), Destination::Object(remote)) => {
                    match remote.bucket.get(key, None) {
                        Ok(Fetched::Got { bytes, .. }) => Some(bytes),
                        _ => None,
                    }
                }
                (Stored::Object(_), Destination::Local(_)) => None,
            }
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_else(|| "?".into());
            eprintln!("strata: {rel} is a symlink to {target}; nothing to print");
            return ExitCode::Failure;
        }
        Kind::File => {}
    }
    let (file, size) = match open_stored(&dest, &wanted, &rel) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "strata: {rel}: missing from the backup: {}: {e}",
                wanted.shown.display()
            );
            return ExitCode::Failure;
        }
    };
    let damaged = |what: String| {
        eprintln!(
            "strata: {rel}: {}: {what}; nothing printed as if it were good \
             (`strata verify --deep {}` finds such damage)",
            wanted.shown.display(),
            job.name
        );
        ExitCode::Failure
    };
    if size != wanted.size {
        return damaged(format!(
            "its size is {}, the record says {}",
            size, wanted.size
        ));
    }
    match (wanted.hash, hash_file(&file)) {
        (_, Err(e)) => {
            eprintln!("strata: {rel}: cannot read {}: {e}", wanted.shown.display());
            return ExitCode::Failure;
        }
        (Some(want), Ok(got)) if got != want => {
            return damaged(format!(
                "its content does not match the hash recorded for it ({}, now {})",
                want.to_hex(),
                got.to_hex()
            ));
        }
        (None, Ok(_)) => {
            eprintln!(
                "strata: warning: {rel}: no hash is recorded for this version; printed unchecked"
            );
        }
        (Some(_), Ok(_)) => {}
    }
    // Print, hashing again.
    let mut out = std::io::stdout().lock();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    loop {
        let n = match file.read_at(&mut buf, pos) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("strata: {rel}: cannot read {}: {e}", wanted.shown.display());
                return ExitCode::Failure;
            }
        };
        hasher.update(&buf[..n]);
        if let Err(e) = out.write_all(&buf[..n]) {
            // The reader went away (`| head`): what it read was good.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return ExitCode::Success;
            }
            eprintln!("strata: cannot write to stdout: {e}");
            return ExitCode::Failure;
        }
        pos += n as u64;
    }
    if let Err(e) = out.flush()
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("strata: cannot write to stdout: {e}");
        return ExitCode::Failure;
    }
    let printed = Hash(hasher.digest128().to_be_bytes());
    if wanted.hash.is_some_and(|want| want != printed) || pos != wanted.size {
        return damaged(
            "it changed while it was printed: what was printed is not the version".into(),
        );
    }
    ExitCode::Success
}

/// The stored copy of a file, open, and its size: a local one as it is,
/// an object streamed into an unnamed file in the temp directory (the
/// checks below then read it as they read a local one).
fn open_stored(
    dest: &Destination,
    wanted: &Wanted,
    rel: &RelPath,
) -> std::io::Result<(std::fs::File, u64)> {
    match (&wanted.stored, dest) {
        (Stored::Dir(dir), _) => dir.open_file(rel.as_bytes()).map(|(f, st)| (f, st.size)),
        (Stored::Object(key), Destination::Object(remote)) => {
            let file = crate::fs::Dir::open_root(&std::env::temp_dir())?.tmpfile(0o600)?;
            match remote.bucket.download(key, &file, &|_| {}) {
                Ok(_) => {}
                Err(DownloadError::Missing) => {
                    return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
                }
                Err(DownloadError::Store(e)) => return Err(std::io::Error::other(e.to_string())),
            }
            let size = file.metadata()?.len();
            Ok((file, size))
        }
        (Stored::Object(_), Destination::Local(_)) => {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }
}

/// Where the version of `rel` at `point` is, and what it should be.
fn locate(job: &Job, dest: &Destination, point: &Point, rel: &RelPath) -> Result<Wanted, ExitCode> {
    let not_there = |at: &str| {
        eprintln!("strata: {}: no {rel} at {at}", job.name);
        ExitCode::Failure
    };
    match point {
        Point::Latest => {
            let index = load_index_of(dest, &job.name)?;
            let Ok(i) = index.entries.binary_search_by(|e| e.path.cmp(rel)) else {
                return Err(not_there("the latest state"));
            };
            let e = &index.entries[i];
            let (stored, shown) = match dest {
                Destination::Local(store) => match store.mirror() {
                    Ok(Some(d)) => (Stored::Dir(d), store.mirror_path().join(rel.as_path())),
                    _ => {
                        eprintln!("strata: {}: no mirror", job.name);
                        return Err(ExitCode::Failure);
                    }
                },
                Destination::Object(remote) => {
                    let key = remote.mirror_key(rel);
                    let shown = object_shown(remote, &key);
                    (Stored::Object(key), shown)
                }
            };
            Ok(Wanted {
                kind: e.meta.kind,
                size: e.meta.size,
                hash: e.hash(),
                stored,
                shown,
            })
        }
        Point::At(_) => {
            let history = load_history_of(dest)?;
            let Found::Increment(k) = find(&history, point)? else {
                unreachable!("a point in the increments");
            };
            let state = history.state_at(Some(k));
            let Some(version) = state.get(rel) else {
                return Err(not_there(&history.increments[k].name));
            };
            let record = version.record.check().map_err(|e| {
                eprintln!("strata: {rel}: {e}");
                ExitCode::Failure
            })?;
            let (inc, part, _) = history.file_of(*version);
            let store = match dest {
                Destination::Local(store) => store,
                Destination::Object(remote) => {
                    let key = remote.part_key(&inc.name, part, rel);
                    return Ok(Wanted {
                        kind: record.meta.kind,
                        size: record.meta.size,
                        hash: record.hash,
                        shown: object_shown(remote, &key),
                        stored: Stored::Object(key),
                    });
                }
            };
            let opened = inc.open(store).and_then(|d| {
                let shown = d.part_path(part, rel);
                d.part(part)
                    .map_err(|e| crate::store::StoreError::io(&shown, e))
                    .map(|p| (p, shown))
            });
            let (dir, shown) = match opened {
                Ok((Some(dir), shown)) => (dir, shown),
                Ok((None, shown)) => {
                    eprintln!(
                        "strata: {rel}: missing from the backup: {}",
                        shown.display()
                    );
                    return Err(ExitCode::Failure);
                }
                Err(e) => {
                    eprintln!("strata: {e}");
                    return Err(ExitCode::Failure);
                }
            };
            Ok(Wanted {
                kind: record.meta.kind,
                size: record.meta.size,
                hash: record.hash,
                stored: Stored::Dir(dir),
                shown,
            })
        }
    }
}

fn object_shown(remote: &Remote, key: &object_store::path::Path) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}/{}", remote.url(), remote.bucket.shown(key)))
}
