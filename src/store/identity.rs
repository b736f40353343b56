//! Destination guards: a missing disk is never mistaken for a first run
//! (SPEC §4).
//!
//! Each destination strata starts a history in gets an identity, a random
//! id in `.strata/id`; and strata remembers, *outside* the destination (in
//! its state directory: `STRATA_STATE_DIR`, else `/var/lib/strata` as root,
//! else `$XDG_STATE_HOME/strata`; the CLI resolves it), which ids each
//! job's destination has held.
//! Opening a destination for a run then tells apart:
//!
//! - a first run (nothing remembered, no destination): the destination is
//!   created, mode 0700 — its parent never (an unmounted disk's mount point
//!   has no `backups/` folder below it);
//! - a destination that is gone, or an empty folder where a history was (a
//!   disk not mounted): refused, asking whether the disk is mounted;
//!   `--init` starts a new history there on purpose;
//! - a folder with content but no strata state, or with a `mirror/` that
//!   strata did not write: refused (`--init` accepts the former, never the
//!   latter: strata would delete those files);
//! - a destination holding another history than the one remembered:
//!   refused (`--init` adopts it);
//! - a destination of an older strata (state but no id): given an id.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{IoContext, MIRROR, STATE, Store, StoreError};
use crate::fs::Dir;

/// How a run may open its destination.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Start a new history where the guards would refuse (`--init`).
    pub init: bool,
    /// Where strata remembers destinations (`None`: nowhere, the guards
    /// that need memory do not apply).
    pub known: Option<PathBuf>,
}

const ID: &[u8] = b"id";

/// What strata remembers about one job's destination.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Remembered {
    job: String,
    destination: PathBuf,
    /// Every id this destination has held (disks that take turns).
    ids: Vec<String>,
}

fn record_path(known: &Path, job: &str, destination: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let key = xxhash_rust::xxh3::xxh3_64(destination.as_os_str().as_bytes());
    known
        .join("destinations")
        .join(format!("{job}-{key:016x}.json"))
}

fn read_record(known: &Path, job: &str, destination: &Path) -> Option<Remembered> {
    let bytes = std::fs::read(record_path(known, job, destination)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_record(known: &Path, record: &Remembered) -> io::Result<()> {
    let path = record_path(known, &record.job, &record.destination);
    let dir = path.parent().expect("a record has a folder");
    std::fs::create_dir_all(dir)?;
    // A name of its own: jobs of one run-all write their records at once.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, serde_json::to_vec_pretty(record).expect("serializes"))?;
    std::fs::rename(&tmp, &path)
}

fn new_id(destination: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(&now.as_nanos().to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(destination.as_os_str().as_bytes());
    let local = 0u8;
    h.update(&(&local as *const u8 as usize).to_le_bytes());
    if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
        h.update(&bytes);
    }
    crate::entry::hex(&h.digest128().to_be_bytes())
}

fn refuse(destination: &Path, message: String) -> StoreError {
    StoreError::Missing {
        path: destination.to_path_buf(),
        message,
    }
}

/// What each refusal tells the user to do when the history is meant to
/// start anew.
const INIT_HINT: &str = "run with --init to start a new history there on purpose";

/// The destination is missing where the job has backed up before.
fn gone(destination: &Path, job: &str) -> StoreError {
    let shown = destination.display();
    refuse(
        destination,
        format!(
            "{shown} does not exist, but job {job} has backed up there before: is the disk \
             mounted? Nothing was written; {INIT_HINT}"
        ),
    )
}

/// The destination is an empty folder where the job has backed up before.
fn emptied(destination: &Path, job: &str) -> StoreError {
    let shown = destination.display();
    refuse(
        destination,
        format!(
            "{shown} is empty, but job {job} has backed up there before: is the disk \
             mounted? Nothing was written; {INIT_HINT}"
        ),
    )
}

/// A `mirror/` without strata's state: never touched.
fn foreign_mirror(destination: &Path) -> StoreError {
    let shown = destination.display();
    refuse(
        destination,
        format!(
            "{shown} holds a mirror/ folder but no strata state (.strata/): strata did not \
             write it, or its state was lost. Refusing to touch it (a run would delete what \
             strata does not know); move it away or point the job elsewhere"
        ),
    )
}

/// Files, but no strata backup.
fn not_empty(destination: &Path) -> StoreError {
    let shown = destination.display();
    refuse(
        destination,
        format!("{shown} holds files but no strata backup: refusing to write into it; {INIT_HINT}"),
    )
}

/// Whether a run of `job` may use `destination`, the guards asked without
/// writing anything (what a dry run says, and what [`open_for_run`] asks
/// first): `Err` is the refusal a real run would give.
pub fn check(destination: &Path, job: &str, guard: &Guard) -> Result<(), StoreError> {
    let shown = destination.display();
    let remembered = guard
        .known
        .as_deref()
        .and_then(|k| read_record(k, job, destination));
    let was_here = remembered.as_ref().is_some_and(|r| !r.ids.is_empty());
    if let Some(parent) = destination.parent().filter(|p| !p.as_os_str().is_empty())
        && let Err(e) = std::fs::metadata(parent)
    {
        return Err(refuse(
            destination,
            if e.kind() == io::ErrorKind::NotFound {
                format!(
                    "{shown}: its parent folder {} does not exist: is the disk mounted? \
                     strata never creates a destination's parent folders",
                    parent.display()
                )
            } else {
                format!("{}: {e}", parent.display())
            },
        ));
    }
    // One look at the destination, through its descriptor: what it holds,
    // and the history's id beneath it with no symlink followed.
    let root = match Dir::open_root(destination) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if was_here && !guard.init {
                return Err(gone(destination, job));
            }
            return Ok(());
        }
        Err(e) => return Err(StoreError::io(destination, e)),
        Ok(root) => root,
    };
    let entries = root.entries().map_err(|e| StoreError::io(destination, e))?;
    let has = |name: &[u8]| entries.iter().any(|(n, _)| n == name);
    if !has(STATE) {
        if has(MIRROR) {
            return Err(foreign_mirror(destination));
        }
        if !entries.is_empty() && !guard.init {
            return Err(not_empty(destination));
        }
        if entries.is_empty() && was_here && !guard.init {
            return Err(emptied(destination, job));
        }
        return Ok(());
    }
    // A `.strata` that is a symlink names no history here.
    let id = root
        .child_dir(STATE)
        .and_then(|state| state.read(ID))
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string());
    if let Some(r) = &remembered
        && !r.ids.is_empty()
        && !guard.init
        && id.as_ref().is_none_or(|id| !r.ids.contains(id))
    {
        return Err(refuse(
            destination,
            format!(
                "{shown} holds another strata history ({}) than the one job {job} backed \
                 up to (id {}): is this the right disk? Nothing was written; run with --init \
                 to use this one too",
                match &id {
                    Some(id) => format!("id {id}"),
                    None => "one without an id".into(),
                },
                r.ids.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Open `destination` for a run of `job`, creating it where the guards
/// allow, refusing where they do not (see the module documentation).
/// Returns the store and whether this opened a new history.
pub fn open_for_run(
    destination: &Path,
    job: &str,
    guard: &Guard,
) -> Result<(Store, bool), StoreError> {
    check(destination, job, guard)?;
    let shown = destination.display();
    let remembered = guard
        .known
        .as_deref()
        .and_then(|k| read_record(k, job, destination));
    let was_here = remembered.as_ref().is_some_and(|r| !r.ids.is_empty());
    let mut fresh = false;
    let root = match Dir::open_root(destination) {
        Ok(root) => root,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if was_here && !guard.init {
                return Err(gone(destination, job));
            }
            match std::fs::DirBuilder::new().mode(0o700).create(destination) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io(destination, e)),
            }
            fresh = true;
            Dir::open_root(destination).at(destination)?
        }
        Err(e) => return Err(StoreError::io(destination, e)),
    };
    let state = match root.child_dir(STATE) {
        Ok(state) => state,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let entries = root.entries().at(destination)?;
            if entries.iter().any(|(n, _)| n == MIRROR) {
                return Err(foreign_mirror(destination));
            }
            if !entries.is_empty() && !guard.init {
                return Err(not_empty(destination));
            }
            if entries.is_empty() && was_here && !fresh && !guard.init {
                return Err(emptied(destination, job));
            }
            match root.mkdir(STATE, 0o700) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io(&destination.join(".strata"), e)),
            }
            fresh = true;
            root.child_dir(STATE).at(&destination.join(".strata"))?
        }
        Err(e) => return Err(StoreError::io(&destination.join(".strata"), e)),
    };
    let store = Store::from_parts(destination, root, state);
    let id_path = store.state_path(ID);
    let id = match store.state().read(ID).at(&id_path)? {
        Some(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        None => {
            let id = new_id(destination);
            let tmp = store.tmp()?;
            store
                .state()
                .write_atomic(ID, &tmp, b"id.new", |w| writeln!(w, "{id}"))
                .at(&id_path)?;
            id
        }
    };
    if let Some(r) = &remembered
        && !r.ids.is_empty()
        && !r.ids.contains(&id)
        && !guard.init
    {
        return Err(refuse(
            destination,
            format!(
                "{shown} holds another strata history (id {id}) than the one job {job} backed \
                 up to (id {}): is this the right disk? Nothing was written; run with --init \
                 to use this one too",
                r.ids.join(", ")
            ),
        ));
    }
    if let Some(known) = &guard.known {
        let mut record = remembered.unwrap_or_else(|| Remembered {
            job: job.to_string(),
            destination: destination.to_path_buf(),
            ids: Vec::new(),
        });
        if !record.ids.contains(&id) {
            record.ids.push(id);
            if let Err(e) = write_record(known, &record) {
                tracing::warn!(
                    "cannot remember the destination of job {job} in {}: {e}",
                    known.display()
                );
            }
        }
    }
    Ok((store, fresh))
}

use std::os::unix::fs::DirBuilderExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(t: &Path, init: bool) -> Guard {
        Guard {
            init,
            known: Some(t.join("known")),
        }
    }

    #[test]
    fn a_missing_destination_is_created_once_then_refused() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("dest");
        let (_, fresh) = open_for_run(&dest, "j", &guard(t.path(), false)).unwrap();
        assert!(fresh);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let (_, fresh) = open_for_run(&dest, "j", &guard(t.path(), false)).unwrap();
        assert!(!fresh);
        std::fs::rename(&dest, t.path().join("moved")).unwrap();
        let err = open_for_run(&dest, "j", &guard(t.path(), false)).unwrap_err();
        assert!(err.to_string().contains("is the disk mounted"), "{err}");
        assert!(!dest.exists());
        // An empty folder where the history was: a mount point.
        std::fs::create_dir(&dest).unwrap();
        let err = open_for_run(&dest, "j", &guard(t.path(), false)).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        assert!(open_for_run(&dest, "j", &guard(t.path(), true)).is_ok());
        // The moved history is another one now.
        std::fs::remove_dir_all(&dest).unwrap();
        std::fs::rename(t.path().join("moved"), &dest).unwrap();
        assert!(
            open_for_run(&dest, "j", &guard(t.path(), false)).is_ok(),
            "both ids known"
        );
    }

    #[test]
    fn parents_are_never_created_and_foreign_content_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("mnt/usbdisk/backups/t");
        let err = open_for_run(&dest, "j", &guard(t.path(), true)).unwrap_err();
        assert!(err.to_string().contains("parent folder"), "{err}");
        assert!(!t.path().join("mnt").exists());

        let dest = t.path().join("foreign");
        std::fs::create_dir_all(dest.join("mirror")).unwrap();
        std::fs::write(dest.join("mirror/keep.txt"), b"x").unwrap();
        for init in [false, true] {
            let err = open_for_run(&dest, "j", &guard(t.path(), init)).unwrap_err();
            assert!(err.to_string().contains("mirror/"), "{err}");
        }
        let dest = t.path().join("busy");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(dest.join("notes.txt"), b"x").unwrap();
        assert!(open_for_run(&dest, "j", &guard(t.path(), false)).is_err());
        assert!(open_for_run(&dest, "j", &guard(t.path(), true)).is_ok());
    }
}
