//! Copying a regular file's bytes between two descriptors: holes kept
//! (`SEEK_DATA`/`SEEK_HOLE`), the content hashed as it goes (holes hash as
//! the zeros they read as), and the source checked not to have changed
//! meanwhile.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;

use super::{Stat, fstat};
use crate::entry::Hash;

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source could not be read.
    #[error("cannot read: {0}")]
    Read(io::Error),
    /// The copy could not be written.
    #[error("cannot write: {0}")]
    Write(io::Error),
    /// The source changed while it was copied.
    #[error("changed while being copied; kept the previous version")]
    Changed,
}

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; 256 * 1024]);
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

fn hash_zeros(hasher: &mut xxhash_rust::xxh3::Xxh3, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// The data segments of a file of `size` bytes, as (start, end): from
/// `SEEK_DATA`/`SEEK_HOLE`, or the whole file where the filesystem cannot
/// tell.
fn segments(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => {
                return Ok(vec![(0, size)]);
            }
            Err(e) => return Err(io::Error::from_raw_os_error(e.raw_os_error())),
        };
        if start >= size {
            break;
        }
        let end = match rustix::fs::seek(file, SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(_) => size,
        };
        out.push((start, end));
        pos = end;
    }
    Ok(out)
}

/// Copy the open regular file `src` (whose `fstat` before opening the copy
/// was `before`) into the new, empty file `out`: the same bytes at the same
/// offsets, holes left as holes, `out` truncated to the source's size.
/// `progress` hears of every chunk copied. Returns the hash of the content.
/// Fails with [`CopyError::Changed`] if the source's size, mtime or ctime
/// moved during the copy, or it held another number of bytes.
pub fn copy_data(
    src: &File,
    before: &Stat,
    out: &File,
    progress: &dyn Fn(u64),
) -> Result<Hash, CopyError> {
    let size = before.size;
    // A file with as many blocks as bytes has no hole: no need to ask.
    let segments = if before.blocks * 512 >= size {
        if size == 0 {
            Vec::new()
        } else {
            vec![(0, size)]
        }
    } else {
        segments(src, size).map_err(CopyError::Read)?
    };
    let written_to = segments.last().map_or(0, |s| s.1);
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut hashed = 0u64;
    BUFFER.with(|buf| -> Result<(), CopyError> {
        let buf = &mut buf.borrow_mut()[..];
        for (start, end) in segments {
            hash_zeros(&mut hasher, start - hashed);
            let mut pos = start;
            while pos < end {
                let want = ((end - pos) as usize).min(buf.len());
                let n = match src.read_at(&mut buf[..want], pos) {
                    Ok(0) => return Err(CopyError::Changed),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CopyError::Read(e)),
                };
                hasher.update(&buf[..n]);
                out.write_all_at(&buf[..n], pos).map_err(CopyError::Write)?;
                pos += n as u64;
                progress(n as u64);
            }
            hashed = end;
        }
        Ok(())
    })?;
    hash_zeros(&mut hasher, size - hashed);
    // A trailing hole: the copy gets its length.
    if written_to < size {
        out.set_len(size).map_err(CopyError::Write)?;
    }
    // A file that grew or was rewritten meanwhile has another size, mtime
    // or ctime now.
    let after = fstat(src).map_err(CopyError::Read)?;
    if (after.size, after.mtime, after.ctime) != (before.size, before.mtime, before.ctime) {
        return Err(CopyError::Changed);
    }
    Ok(Hash(hasher.digest128().to_be_bytes()))
}

/// The content hash of an open regular file (holes read as zeros).
pub fn hash_file(file: &File) -> io::Result<Hash> {
    let st = fstat(file)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut hashed = 0u64;
    BUFFER.with(|buf| -> io::Result<()> {
        let buf = &mut buf.borrow_mut()[..];
        for (start, end) in segments(file, st.size)? {
            hash_zeros(&mut hasher, start - hashed);
            let mut pos = start;
            while pos < end {
                let want = ((end - pos) as usize).min(buf.len());
                let n = match file.read_at(&mut buf[..want], pos) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                hasher.update(&buf[..n]);
                pos += n as u64;
            }
            hashed = pos.max(start);
        }
        Ok(())
    })?;
    hash_zeros(&mut hasher, st.size.saturating_sub(hashed));
    Ok(Hash(hasher.digest128().to_be_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Dir;

    #[test]
    fn holes_stay_holes_and_hash_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let f = File::create(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"hello", 1 << 20).unwrap();
        f.write_all_at(b"end", (64 << 20) - 3).unwrap();
        drop(f);
        let logical = std::fs::read(&path).unwrap();
        let root = Dir::open_root(dir.path()).unwrap();
        let (src, st) = root.open_file(b"sparse").unwrap();
        let out = root.tmpfile(0o600).unwrap();
        let copied = std::sync::atomic::AtomicU64::new(0);
        let hash = copy_data(&src, &st, &out, &|n| {
            copied.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(hash, Hash::of(&logical));
        assert_eq!(hash_file(&out).unwrap(), hash);
        let out_st = fstat(&out).unwrap();
        assert_eq!(out_st.size, 64 << 20);
        // tmpfs and ext4 report holes; the copy holds about what the source does.
        assert!(
            out_st.blocks * 512 <= st.blocks * 512 + (1 << 20),
            "{out_st:?} vs {st:?}"
        );
        assert!(copied.into_inner() < 64 << 20);
    }

    #[test]
    fn a_file_that_grows_is_changed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"abc").unwrap();
        let root = Dir::open_root(dir.path()).unwrap();
        let (src, mut st) = root.open_file(b"f").unwrap();
        st.size = 2; // as if it was 2 bytes when looked at
        let out = root.tmpfile(0o600).unwrap();
        assert!(matches!(
            copy_data(&src, &st, &out, &|_| {}),
            Err(CopyError::Changed)
        ));
    }
}
