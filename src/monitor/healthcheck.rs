//! Healthcheck pings, with the healthchecks.io convention: `URL/start` when
//! a run starts, `URL` when it succeeds, `URL/fail` when it fails. Each is
//! a POST whose body (the run's summary) the service shows beside the ping.
//!
//! A ping never fails a backup: [`ping`] returns an error for the caller to
//! report as a warning, after at most [`TIMEOUT`]. HTTP is `ureq`, a small
//! blocking client (strata has no async runtime), with rustls for
//! `https://` URLs (the usual hosted service is https-only) and its proxy
//! settings from the environment (`HTTPS_PROXY`, `NO_PROXY`, …).

use std::sync::OnceLock;
use std::time::Duration;

/// The most a ping may take, connecting and sending included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What a ping says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A run started.
    Start,
    /// It succeeded.
    Success,
    /// It failed or ended partial.
    Fail,
}

/// A ping that did not get through.
#[derive(Debug, thiserror::Error)]
#[error("healthcheck ping {url} failed: {source}")]
pub struct PingError {
    /// The URL pinged.
    pub url: String,
    /// Why.
    #[source]
    pub source: ureq::Error,
}

/// The URL to request for `signal`: `/start` or `/fail` appended to the
/// path of `base` (before its query string, if any).
pub fn ping_url(base: &str, signal: Signal) -> String {
    let suffix = match signal {
        Signal::Start => "/start",
        Signal::Success => "",
        Signal::Fail => "/fail",
    };
    let (path, query) = match base.find(['?', '#']) {
        Some(i) => base.split_at(i),
        None => (base, ""),
    };
    format!("{}{suffix}{query}", path.trim_end_matches('/'))
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .http_status_as_error(true)
            .build()
            .into()
    })
}

/// Send one ping with `body`.
pub fn ping(base: &str, signal: Signal, body: &str) -> Result<(), PingError> {
    let url = ping_url(base, signal);
    tracing::debug!("healthcheck ping {url}");
    match agent().post(&url).send(body) {
        Ok(_) => Ok(()),
        Err(source) => Err(PingError { url, source }),
    }
}

pub use crate::job::check_ping_url as check_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_go_before_the_query() {
        let base = "https://hc-ping.com/abc";
        assert_eq!(
            ping_url(base, Signal::Start),
            "https://hc-ping.com/abc/start"
        );
        assert_eq!(ping_url(base, Signal::Success), "https://hc-ping.com/abc");
        assert_eq!(ping_url(base, Signal::Fail), "https://hc-ping.com/abc/fail");
        assert_eq!(
            ping_url("http://h/x/?create=1", Signal::Fail),
            "http://h/x/fail?create=1"
        );
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://hc-ping.com/abc").is_ok());
        assert!(check_url("http://127.0.0.1:8000/ping/x").is_ok());
        assert!(check_url("ftp://example.org/x").is_err());
        assert!(check_url("hc-ping.com/abc").is_err());
        assert!(check_url("http:// bad").is_err());
    }

    #[test]
    fn an_unreachable_server_is_an_error_not_a_hang() {
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = ping(&format!("http://127.0.0.1:{port}/x"), Signal::Start, "").unwrap_err();
        assert!(err.to_string().contains("/x/start"), "{err}");
    }
}
