//! A test seam for crash testing: `STRATA_FAULT_AFTER=N` makes the process
//! abort (as if killed with SIGKILL: no destructor, no cleanup) at the N-th
//! fault point it reaches. Fault points sit between the filesystem steps
//! that change a destination, so a crash harness can stop a run at every
//! step and check that the next run repairs it.
//!
//! Unset (always, outside tests), a fault point is one relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
static COUNT: AtomicU64 = AtomicU64::new(0);

fn limit() -> Option<u64> {
    *LIMIT.get_or_init(|| {
        std::env::var("STRATA_FAULT_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// A point where a crash may be injected.
#[inline]
pub fn point() {
    if let Some(limit) = limit()
        && COUNT.fetch_add(1, Ordering::SeqCst) + 1 >= limit
    {
        std::process::abort();
    }
}
