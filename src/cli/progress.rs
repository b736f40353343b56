//! The terminal's progress display (indicatif): one line per running job,
//! a spinner while it scans or commits, a bar while it applies changes,
//! with what it has counted so far. Each line disappears when its job ends,
//! so that the output that follows (the report) is the same as without a
//! terminal. Log lines are written through [`LogWriter`], which lifts the
//! bars off the screen for each line so they do not tear.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::progress::{Progress, ProgressBars};
use crate::report::{human_bytes, plural};

/// The display: hands out one line per job.
#[derive(Debug, Clone)]
pub struct Bars {
    multi: MultiProgress,
}

impl Bars {
    /// A display drawn by `multi` (on stderr).
    pub fn new(multi: MultiProgress) -> Bars {
        Bars { multi }
    }
}

impl ProgressBars for Bars {
    fn job(&self, name: &str) -> Box<dyn Progress> {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(spinner_style());
        bar.set_prefix(name.to_string());
        bar.set_message("starting");
        bar.enable_steady_tick(Duration::from_millis(120));
        Box::new(JobBar {
            bar,
            counts: Mutex::new(Counts::default()),
        })
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.green} {prefix:.bold} {wide_msg} {elapsed:.dim}")
        .expect("a valid template")
}

/// Files counted against their total.
fn files_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner:.green} {prefix:.bold} {msg} {wide_bar:.cyan/blue} {pos}/{len} {elapsed:.dim}",
    )
    .expect("a valid template")
    .progress_chars("=> ")
}

/// Bytes counted against their total, with the rate and the time left;
/// the message says how many files.
fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner:.green} {prefix:.bold} {msg} {wide_bar:.cyan/blue} {bytes}/{total_bytes} \
         {binary_bytes_per_sec} ETA {eta}",
    )
    .expect("a valid template")
    .progress_chars("=> ")
}

/// How many times a copy phase is drawn at least, whatever its speed.
const STEPS: u64 = 20;

#[derive(Debug, Default)]
struct Counts {
    label: String,
    /// Files counted in a phase without a total (the scan).
    scanned: u64,
    /// Files done of the phase's total, when the bar counts bytes.
    files: u64,
    files_total: Option<u64>,
    /// Bytes copied in the job so far.
    bytes: u64,
    counting_scan: bool,
    /// The bar's position is bytes (a total of bytes is known).
    by_bytes: bool,
    /// Bytes of the phase so far, and where the next step of the total
    /// (a twentieth) is.
    phase_bytes: u64,
    next_step: u64,
    step: u64,
}

impl Counts {
    fn message(&self) -> String {
        let mut m = self.label.clone();
        let mut facts = Vec::new();
        if self.scanned > 0 {
            facts.push(format!("{} scanned", plural(self.scanned, "file", "files")));
        }
        if self.by_bytes {
            if let Some(total) = self.files_total {
                facts.push(format!("{}/{total} files", self.files));
            }
        } else if self.bytes > 0 {
            facts.push(format!("{} copied", human_bytes(self.bytes)));
        }
        if !facts.is_empty() {
            m.push_str(&format!(" ({})", facts.join(", ")));
        }
        m
    }
}

struct JobBar {
    bar: ProgressBar,
    counts: Mutex<Counts>,
}

impl Progress for JobBar {
    fn begin(&self, label: &str, total: Option<u64>) {
        let mut counts = self.counts.lock().expect("progress lock");
        counts.label = label.to_string();
        counts.counting_scan = total.is_none();
        counts.by_bytes = false;
        counts.files = 0;
        counts.files_total = total;
        match total {
            Some(n) => {
                self.bar.set_style(files_style());
                self.bar.set_length(n);
                self.bar.set_position(0);
            }
            None => self.bar.set_style(spinner_style()),
        }
        self.bar.set_message(counts.message());
    }

    fn expect_bytes(&self, total: u64) {
        let mut counts = self.counts.lock().expect("progress lock");
        if total == 0 || counts.files_total.is_none() {
            return;
        }
        counts.by_bytes = true;
        counts.phase_bytes = 0;
        counts.step = (total / STEPS).max(1);
        counts.next_step = counts.step;
        self.bar.set_style(bytes_style());
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.reset_eta();
        self.bar.set_message(counts.message());
    }

    fn inc(&self, n: u64) {
        let mut counts = self.counts.lock().expect("progress lock");
        if counts.counting_scan {
            counts.scanned += n;
            self.bar.set_message(counts.message());
        } else if counts.by_bytes {
            counts.files += n;
            self.bar.set_message(counts.message());
        } else {
            self.bar.inc(n);
        }
    }

    fn inc_bytes(&self, n: u64) {
        let mut counts = self.counts.lock().expect("progress lock");
        counts.bytes += n;
        if counts.by_bytes {
            self.bar.inc(n);
            counts.phase_bytes += n;
            // The timer redraws 20 times a second; a copy faster than that
            // still shows each twentieth of its bytes go by.
            if counts.phase_bytes >= counts.next_step {
                counts.next_step =
                    counts.phase_bytes - counts.phase_bytes % counts.step + counts.step;
                self.bar.force_draw();
            }
        } else {
            self.bar.set_message(counts.message());
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Where log lines go: stderr, around the progress display if there is
/// one. One [`LogLine`] per event, written when it is dropped.
#[derive(Debug, Clone, Default)]
pub struct LogWriter {
    /// The display to lift off the screen for each line.
    pub multi: Option<MultiProgress>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            multi: self.multi.clone(),
            buf: Vec::new(),
        }
    }
}

/// One log event's text, written to stderr in one piece.
#[derive(Debug)]
pub struct LogLine {
    multi: Option<MultiProgress>,
    buf: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.buf);
        };
        match &self.multi {
            Some(multi) => multi.suspend(write),
            None => write(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_carries_the_counts() {
        let mut c = Counts {
            label: "applying 3 changes".into(),
            ..Counts::default()
        };
        assert_eq!(c.message(), "applying 3 changes");
        c.scanned = 120;
        c.bytes = 2048;
        assert_eq!(
            c.message(),
            "applying 3 changes (120 files scanned, 2.0 KiB copied)"
        );
        c.scanned = 1;
        c.by_bytes = true;
        c.files = 1;
        c.files_total = Some(3);
        assert_eq!(
            c.message(),
            "applying 3 changes (1 file scanned, 1/3 files)"
        );
    }

    #[test]
    fn the_bar_counts_files_then_bytes() {
        let bar = ProgressBar::hidden();
        let p = JobBar {
            bar: bar.clone(),
            counts: Mutex::new(Counts::default()),
        };
        p.begin("scanning", None);
        p.inc(10);
        assert_eq!(bar.message(), "scanning (10 files scanned)");

        p.begin("applying 2 changes", Some(2));
        assert_eq!((bar.position(), bar.length()), (0, Some(2)));
        p.inc(1);
        assert_eq!(bar.position(), 1, "without bytes the bar counts files");

        p.expect_bytes(100);
        assert_eq!((bar.position(), bar.length()), (0, Some(100)));
        p.inc(1);
        p.inc_bytes(60);
        assert_eq!(bar.position(), 60, "with bytes the bar counts bytes");
        assert_eq!(
            bar.message(),
            "applying 2 changes (10 files scanned, 1/2 files)"
        );

        p.begin("committing", None);
        assert_eq!(bar.message(), "committing (10 files scanned, 60 B copied)");
        p.finish();
        assert!(bar.is_finished());
    }
}
