//! Progress of running jobs, as a handle passed in: the stages report to
//! it and never look at the terminal. The cli creates a display on a
//! terminal (`cli::progress`, with indicatif); everything else (`--json`,
//! pipes, the daemon, tests) gets [`NoProgress`], whose calls do nothing.
//!
//! Modelled on rustic_core's `progress.rs`: a factory ([`ProgressBars`])
//! hands out one [`Progress`] per job. A job reports phases with
//! [`Progress::begin`] and counts with [`Progress::inc`] and
//! [`Progress::inc_bytes`] (after [`Progress::expect_bytes`] announced a
//! phase's total, for a rate and the time left); [`crate::run`] reports the
//! phases (scanning, applying N changes, committing; the scan's count
//! arrives when the scan ends), and [`crate::apply`] and restore count
//! each file and the bytes of each copy as they go.

use std::fmt;
use std::sync::Arc;

/// One job's progress. Calls must be cheap: `inc` may come from pool
/// threads, once per file.
pub trait Progress: Send + Sync {
    /// A phase starts: a short label ("scanning", "applying 12 changes"),
    /// and how many items it will count, if known.
    fn begin(&self, label: &str, total: Option<u64>);
    /// `n` more items of the phase are done.
    fn inc(&self, n: u64);
    /// `n` more bytes were copied.
    fn inc_bytes(&self, n: u64);
    /// The phase that just began will copy about `total` bytes (so that a
    /// display can show a rate and the time left). Optional.
    fn expect_bytes(&self, _total: u64) {}
    /// The job is over; the display goes away (the report says the rest).
    fn finish(&self);
}

/// Hands out one [`Progress`] per job.
pub trait ProgressBars: Send + Sync {
    /// The progress of the job `name`.
    fn job(&self, name: &str) -> Box<dyn Progress>;
}

/// Shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _label: &str, _total: Option<u64>) {}
    fn inc(&self, _n: u64) {}
    fn inc_bytes(&self, _n: u64) {}
    fn finish(&self) {}
}

impl ProgressBars for NoProgress {
    fn job(&self, _name: &str) -> Box<dyn Progress> {
        Box::new(NoProgress)
    }
}

/// A shareable handle on a [`ProgressBars`], for options structs: cloning
/// shares the display; the default shows nothing.
#[derive(Clone)]
pub struct ProgressHandle(Arc<dyn ProgressBars>);

impl ProgressHandle {
    /// A handle on `bars`.
    pub fn new(bars: impl ProgressBars + 'static) -> ProgressHandle {
        ProgressHandle(Arc::new(bars))
    }

    /// The progress of the job `name`.
    pub fn job(&self, name: &str) -> Box<dyn Progress> {
        self.0.job(name)
    }
}

impl Default for ProgressHandle {
    fn default() -> Self {
        ProgressHandle::new(NoProgress)
    }
}

impl fmt::Debug for ProgressHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressHandle")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records every call.
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl Progress for Recorder {
        fn begin(&self, label: &str, total: Option<u64>) {
            let total = total.map(|t| format!(" /{t}")).unwrap_or_default();
            self.0.lock().unwrap().push(format!("begin {label}{total}"));
        }
        fn inc(&self, n: u64) {
            self.0.lock().unwrap().push(format!("inc {n}"));
        }
        fn inc_bytes(&self, n: u64) {
            self.0.lock().unwrap().push(format!("bytes {n}"));
        }
        fn finish(&self) {
            self.0.lock().unwrap().push("finish".into());
        }
    }

    impl ProgressBars for Recorder {
        fn job(&self, name: &str) -> Box<dyn Progress> {
            self.0.lock().unwrap().push(format!("job {name}"));
            Box::new(Recorder(self.0.clone()))
        }
    }

    /// What a real run reports, phase by phase: the handle passed in
    /// through the run options is the one the run talks to.
    #[test]
    fn a_run_reports_its_phases() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src/docs")).unwrap();
        std::fs::write(root.join("src/docs/a.txt"), "alpha").unwrap();
        std::fs::write(root.join("src/docs/b.txt"), "beta").unwrap();
        let file = root.join("home.json");
        std::fs::write(
            &file,
            r#"{"source": "src", "destination": "dest", "track_dirs": ["docs"]}"#,
        )
        .unwrap();
        let loaded = crate::job::load_paths(&[file]).unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let options = crate::run::RunOptions {
            progress: ProgressHandle::new(Recorder(calls.clone())),
            ..Default::default()
        };
        let run = crate::run::run_job(&loaded.jobs[0], &options);
        assert_eq!(
            run.report.status,
            crate::report::Status::Success,
            "{:?}",
            run.report
        );
        let calls = calls.lock().unwrap().clone();
        assert_eq!(
            calls[..4],
            [
                "job home",
                "begin scanning",
                "inc 2",
                "begin applying 2 changes /2",
            ]
        );
        // The copies report as they go, in the order the pool runs them.
        let mut middle = calls[4..calls.len() - 2].to_vec();
        middle.sort();
        assert_eq!(middle, ["bytes 4", "bytes 5", "inc 1", "inc 1"]);
        assert_eq!(calls[calls.len() - 2..], ["begin committing", "finish"]);
    }

    #[test]
    fn the_default_handle_shows_nothing_and_a_clone_shares_the_display() {
        let _ = ProgressHandle::default().job("x");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let handle = ProgressHandle::new(Recorder(calls.clone()));
        let p = handle.clone().job("home");
        p.begin("scanning", None);
        p.finish();
        assert_eq!(
            *calls.lock().unwrap(),
            ["job home", "begin scanning", "finish"]
        );
    }
}
