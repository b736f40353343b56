//! The commands' stdout and stderr, where a reader that went away ends the
//! output quietly, as `ls | head -1` does.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE, and
//! std's `println!` panics on it (exit 101). strata could reset SIGPIPE to
//! its default instead, but then the kernel kills the process at the first
//! write, which may come in the middle of work that should finish: `prune`
//! or `verify --repair` printing as they go, a run whose report is piped
//! into a reader that quit early, a hook's pipe. So the signal stays
//! ignored, and every line goes through [`print`]: after EPIPE, output is
//! dropped and the command finishes its work and exits with its own code.
//! Any other write error (a full disk behind `> report.json`) is reported
//! once on stderr and makes the exit code at least 1 ([`finish`]), since
//! CI must not mistake a truncated report for a complete one.
//!
//! `cli/mod.rs` defines `println!`, `print!` and `eprintln!` macros that
//! shadow std's for the whole `cli` module and its submodules, so every
//! command, old or new, writes through here without a call-site change.
//! (`cat` streams a file's bytes to stdout itself, and treats a closed
//! pipe and other write errors the same way.)
//!
//! The state is one static because it describes the process's one stdout:
//! once its reader is gone, it is gone for every writer.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU8, Ordering};

use super::ExitCode;

/// Nothing went wrong writing.
const OPEN: u8 = 0;
/// The reader closed the pipe: drop further output, quietly.
const CLOSED: u8 = 1;
/// Another write error: drop further output, exit code at least 1.
const FAILED: u8 = 2;

static STDOUT: AtomicU8 = AtomicU8::new(OPEN);
static STDERR: AtomicU8 = AtomicU8::new(OPEN);

/// Which stream to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output: the command's result.
    Stdout,
    /// Standard error: diagnostics.
    Stderr,
}

impl Stream {
    fn state(self) -> &'static AtomicU8 {
        match self {
            Stream::Stdout => &STDOUT,
            Stream::Stderr => &STDERR,
        }
    }
}

/// Write formatted text to `stream`; returns whether it was written. After
/// the stream failed once, nothing more is written to it.
pub fn print(stream: Stream, args: fmt::Arguments<'_>) -> bool {
    let state = stream.state();
    if state.load(Ordering::Relaxed) != OPEN {
        return false;
    }
    let written = match stream {
        // Line-buffered: an error shows at the newline, or at [`finish`].
        Stream::Stdout => io::stdout().lock().write_fmt(args),
        Stream::Stderr => io::stderr().lock().write_fmt(args),
    };
    match written {
        Ok(()) => true,
        Err(e) => {
            failed(stream, &e);
            false
        }
    }
}

/// Write raw bytes to stdout (the schema, a man page, completions).
pub fn write_stdout(bytes: &[u8]) -> bool {
    if STDOUT.load(Ordering::Relaxed) != OPEN {
        return false;
    }
    match io::stdout().lock().write_all(bytes) {
        Ok(()) => true,
        Err(e) => {
            failed(Stream::Stdout, &e);
            false
        }
    }
}

/// Record a write error on `stream`.
fn failed(stream: Stream, e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        stream.state().store(CLOSED, Ordering::Relaxed);
        return;
    }
    stream.state().store(FAILED, Ordering::Relaxed);
    if stream == Stream::Stdout {
        // stderr may work where stdout does not; if not, there is no one
        // left to tell.
        let _ = writeln!(io::stderr(), "strata: cannot write to stdout: {e}");
    }
}

/// Flush what stdout still buffers (std would flush it at exit, but
/// ignore an error), and return the exit code the output calls for.
pub fn finish() -> ExitCode {
    if STDOUT.load(Ordering::Relaxed) == OPEN
        && let Err(e) = io::stdout().lock().flush()
    {
        failed(Stream::Stdout, &e);
    }
    exit_code()
}

/// The exit code the output itself calls for: 1 if a write failed for a
/// reason other than a closed pipe, else 0.
fn exit_code() -> ExitCode {
    if STDOUT.load(Ordering::Relaxed) == FAILED {
        ExitCode::Failure
    } else {
        ExitCode::Success
    }
}

/// A [`Write`] onto stdout with the same rules, for APIs that take a writer
/// (clap's completions and man pages).
pub struct StdoutWriter;

impl Write for StdoutWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_stdout(buf);
        // Claim success either way: the caller has nothing better to do
        // with the error than stop, and the state already remembers it.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
