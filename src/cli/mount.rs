//! `strata mount NAME MOUNTPOINT`: serve the job's history read-only over
//! FUSE until SIGTERM, SIGINT, SIGHUP or an unmount from outside, then
//! unmount (lazily, exit 1, if a program still uses the mount). The
//! destination may be a local folder or an object store (`s3://`), whose
//! history and index are read as `diff` and `cat` read them.

use std::path::Path;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::diff::{load_index_of, open_history};
use super::{Config, ExitCode, find_job};
use crate::mount::HistoryFs;
use crate::store::dest::Destination;
use crate::store::index;

/// Mount one job's history.
pub fn run(config: &Config, name: &str, mountpoint: &Path) -> ExitCode {
    let job = match find_job(config, name) {
        Ok(job) => job,
        Err(code) => return code,
    };
    if !Path::new("/dev/fuse").exists() {
        eprintln!("strata: mount needs /dev/fuse (the fuse kernel module), which is missing here");
        return ExitCode::Failure;
    }
    match std::fs::read_dir(mountpoint).map(|mut d| d.next().is_none()) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!(
                "strata: {} is not empty; mount on an empty directory",
                mountpoint.display()
            );
            return ExitCode::Usage;
        }
        Err(e) => {
            eprintln!("strata: {}: {e}", mountpoint.display());
            return ExitCode::Usage;
        }
    }
    let (dest, history) = match open_history(config, &job) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    // No index yet: no `latest/`.
    let index = match &dest {
        Destination::Local(store) => match index::load(store.state(), &store.index_path()) {
            Ok(index) => index,
            Err(e) => {
                eprintln!("strata: {}: {e}", job.name);
                return ExitCode::Failure;
            }
        },
        Destination::Object(remote) => match remote.fetch_index() {
            Ok(None) => None,
            Ok(Some(committed)) => {
                // As restore says: the mirror lags the index until the
                // interrupted run is finished.
                if let Some(run) = &committed.run
                    && remote.staged().is_ok_and(|s| s.contains(run))
                {
                    eprintln!(
                        "strata: warning: {}: the run {run} committed but was interrupted before \
                         its mirror was complete: some files of latest/ may read as I/O errors; \
                         run the job, or read its increment's folder",
                        job.name
                    );
                }
                match load_index_of(&dest, &job.name) {
                    Ok(index) => Some(index),
                    Err(code) => return code,
                }
            }
            Err(e) => {
                eprintln!("strata: {}: {e}", job.name);
                return ExitCode::Failure;
            }
        },
    };
    let increments = history.increments.len();
    // Signals first, so that one during the mount is not lost.
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("strata: cannot handle signals: {e}");
            return ExitCode::Failure;
        }
    };
    let fs = match HistoryFs::new(dest, history, index) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("strata: {}: {e}", job.name);
            return ExitCode::Failure;
        }
    };
    let mut options = fuser::Config::default();
    options.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName(format!("strata:{}", job.name)),
        fuser::MountOption::Subtype("strata".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    let session = match fuser::spawn_mount(fs, mountpoint, &options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "strata: cannot mount on {}: {e} (is fusermount3 installed? Debian: fuse3)",
                mountpoint.display()
            );
            return ExitCode::Failure;
        }
    };
    if config.verbosity >= 0 {
        eprintln!(
            "strata: {} mounted on {} (latest/ and {}); Ctrl-C or SIGTERM unmounts",
            job.name,
            mountpoint.display(),
            crate::report::plural(increments as u64, "increment", "increments")
        );
    }
    loop {
        if signals.pending().next().is_some() {
            break;
        }
        if session.guard.is_finished() {
            // Unmounted from outside (`fusermount3 -u`).
            return match session.join() {
                Ok(()) => ExitCode::Success,
                Err(e) => {
                    eprintln!("strata: {}: {e}", mountpoint.display());
                    ExitCode::Failure
                }
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match session.umount_and_join() {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            // Busy (a shell sits in it): detach now, gone when left.
            let lazy = std::process::Command::new("fusermount3")
                .args(["-u", "-z", "-q", "--"])
                .arg(mountpoint)
                .status();
            eprintln!(
                "strata: {} was busy ({e}); {}",
                mountpoint.display(),
                if lazy.is_ok_and(|s| s.success()) {
                    "detached: it goes when the last program leaves it"
                } else {
                    "unmount it with `fusermount3 -u` once nothing uses it"
                }
            );
            ExitCode::Failure
        }
    }
}
