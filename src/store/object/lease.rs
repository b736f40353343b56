//! Locking without a kernel: a lease object, `.strata/lease`.
//!
//! A run creates it with `If-None-Match: *` (only one creation can win),
//! renews it from a thread of its own while the run lasts (each renewal a
//! put `If-Match` the ETag it last wrote, so a renewal never overwrites
//! another writer's lease), and deletes it at the end. A lease that is
//! there is taken over (again `If-Match` its ETag) only when it has
//! expired, or when it names a process of this same boot of this same host
//! that is gone (a run killed with -9 on this machine: no reason to wait).
//! Never an unlock command to run by hand.
//!
//! A writer that lost its lease (a renewal refused, or none got through
//! before it would expire) stops before its commit: [`Lease::check`] says
//! so, and the index write is conditional on the ETag the run started from
//! anyway, so two writers can never both commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::client::{Bucket, Conflict, Fetched, ObjectError, Write};

/// The lease's key below the prefix.
pub const LEASE: &str = ".strata/lease";

/// How long a lease lasts unless renewed (`STRATA_LEASE_SECONDS` sets it,
/// for tests): renewed every third of it.
pub fn default_ttl() -> Duration {
    let secs = std::env::var("STRATA_LEASE_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(120);
    Duration::from_secs(secs)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Body {
    owner: String,
    host: String,
    boot: String,
    pid: u32,
    /// Unix seconds.
    expires: u64,
}

/// Why the lease could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another writer holds it.
    #[error("another strata process holds the lease ({owner}, until {until})")]
    Held {
        /// Who.
        owner: String,
        /// Until when (RFC 3339).
        until: String,
    },
    /// The store could not be reached or refused.
    #[error(transparent)]
    Store(#[from] ObjectError),
    /// It was lost while the run went on.
    #[error(
        "the lease on the destination was lost (taken over, or not renewed in time): nothing was committed"
    )]
    Lost,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    // Signal 0: no signal sent, only whether the process exists.
    match rustix::process::Pid::from_raw(pid as i32) {
        Some(p) => match rustix::process::test_kill_process(p) {
            Ok(()) => true,
            Err(e) => e != rustix::io::Errno::SRCH,
        },
        None => false,
    }
}

impl Body {
    fn mine(ttl: Duration) -> Body {
        let pid = std::process::id();
        let host = host();
        Body {
            owner: format!("{host} pid {pid}"),
            host,
            boot: boot_id(),
            pid,
            expires: now() + ttl.as_secs(),
        }
    }

    fn dead_or_expired(&self) -> bool {
        if self.expires <= now() {
            return true;
        }
        let boot = boot_id();
        self.host == host() && !boot.is_empty() && self.boot == boot && !pid_alive(self.pid)
    }
}

/// A lease held; renewed until dropped, then deleted.
#[derive(Debug)]
pub struct Lease {
    state: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
    /// A lease of a process that was gone, or expired, was taken over.
    pub took_over: Option<String>,
}

#[derive(Debug)]
struct Shared {
    bucket: Arc<Bucket>,
    etag: Mutex<Option<String>>,
    lost: AtomicBool,
    /// Unix seconds until which the last write holds it.
    expires: Mutex<u64>,
    ttl: Duration,
}

fn encode(body: &Body) -> Vec<u8> {
    serde_json::to_vec(body).expect("a lease serializes")
}

impl Lease {
    /// Take the lease, or say who holds it.
    pub fn acquire(bucket: &Arc<Bucket>, ttl: Duration) -> Result<Lease, LeaseError> {
        let key = bucket.key(LEASE);
        let mut took_over = None;
        for _ in 0..4 {
            let body = Body::mine(ttl);
            if let Ok(etag) = bucket.put(&key, encode(&body), Write::Create)? {
                return Ok(Lease::start(bucket, etag, body.expires, ttl, took_over));
            }
            let (bytes, etag) = match bucket.get(&key, None)? {
                Fetched::Got { bytes, etag, .. } => (bytes, etag),
                Fetched::Missing | Fetched::NotModified => continue,
            };
            let theirs: Option<Body> = serde_json::from_slice(&bytes).ok();
            // A lease strata cannot read is treated as expired only when
            // it is old: it may be a newer strata's.
            let free = match &theirs {
                Some(b) => b.dead_or_expired(),
                None => false,
            };
            if !free {
                let (owner, until) = match theirs {
                    Some(b) => (b.owner, b.expires),
                    None => ("an unreadable lease".into(), 0),
                };
                return Err(LeaseError::Held {
                    owner,
                    until: chrono::DateTime::from_timestamp(until as i64, 0)
                        .map(crate::store::meta::format_time)
                        .unwrap_or_default(),
                });
            }
            let Some(etag) = etag else { continue };
            let body = Body::mine(ttl);
            if let Ok(new) = bucket.put(&key, encode(&body), Write::Replace(etag))? {
                took_over = theirs.map(|b| b.owner);
                return Ok(Lease::start(bucket, new, body.expires, ttl, took_over));
            }
        }
        Err(LeaseError::Held {
            owner: "another writer (the lease changed hands while strata looked)".into(),
            until: String::new(),
        })
    }

    fn start(
        bucket: &Arc<Bucket>,
        etag: Option<String>,
        expires: u64,
        ttl: Duration,
        took_over: Option<String>,
    ) -> Lease {
        let state = Arc::new(Shared {
            bucket: bucket.clone(),
            etag: Mutex::new(etag),
            lost: AtomicBool::new(false),
            expires: Mutex::new(expires),
            ttl,
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = state.clone();
        // A thread of its own, outside the pool: it only sleeps and renews.
        let renewer = std::thread::Builder::new()
            .name("strata-lease".into())
            .spawn(move || {
                let every = (shared.ttl / 3).max(Duration::from_millis(500));
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    shared.renew();
                    if shared.lost.load(Ordering::SeqCst) {
                        return;
                    }
                }
            })
            .ok();
        Lease {
            state,
            stop: Some(stop),
            renewer,
            took_over,
        }
    }

    /// Whether the lease is still held, with time to spare for a commit
    /// (a third of its life).
    pub fn check(&self) -> Result<(), LeaseError> {
        let s = &self.state;
        let expires = *s.expires.lock().expect("not poisoned");
        if s.lost.load(Ordering::SeqCst) || now() + s.ttl.as_secs() / 3 >= expires {
            // One renewal now, in case the timer is late.
            s.renew();
        }
        let expires = *s.expires.lock().expect("not poisoned");
        if s.lost.load(Ordering::SeqCst) || now() >= expires {
            return Err(LeaseError::Lost);
        }
        Ok(())
    }

    /// Release: stop renewing and delete the lease (unless it was lost).
    pub fn release(mut self) {
        self.stop_renewing();
        if !self.state.lost.load(Ordering::SeqCst) {
            let _ = self.state.bucket.delete(&self.state.bucket.key(LEASE));
        }
    }

    fn stop_renewing(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.stop_renewing();
            if !self.state.lost.load(Ordering::SeqCst) {
                let _ = self.state.bucket.delete(&self.state.bucket.key(LEASE));
            }
        }
    }
}

impl Shared {
    fn renew(&self) {
        let Some(etag) = self.etag.lock().expect("not poisoned").clone() else {
            return;
        };
        let body = Body::mine(self.ttl);
        match self
            .bucket
            .put(&self.bucket.key(LEASE), encode(&body), Write::Replace(etag))
        {
            Ok(Ok(new)) => {
                *self.etag.lock().expect("not poisoned") = new;
                *self.expires.lock().expect("not poisoned") = body.expires;
            }
            Ok(Err(Conflict)) => self.lost.store(true, Ordering::SeqCst),
            // Not reached this time: the lease still holds until it
            // expires; `check` says when that is too close.
            Err(_) => {}
        }
    }
}
