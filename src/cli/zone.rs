//! The machine's time zone, read once per command at the edge and handed
//! to the stages as a value (`list`, the daemon, prune and the runs'
//! retention all read schedules and calendar buckets in it).

use crate::tz::Zone;

/// The machine's zone: `TZ`, else `/etc/localtime`. When neither can be
/// read, UTC, with a warning on stderr (what the C library and cron do).
pub(super) fn machine_zone() -> Zone {
    Zone::system().unwrap_or_else(|e| {
        eprintln!("strata: warning: {e}; using UTC");
        Zone::utc()
    })
}
