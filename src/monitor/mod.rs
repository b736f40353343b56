//! Monitoring a job from outside strata: a Prometheus textfile with each
//! job's last run ([`metrics`]) and healthcheck pings on start, success and
//! failure ([`healthcheck`]). Both report problems to their caller, which
//! logs them: monitoring never fails a backup.

pub mod healthcheck;
pub mod metrics;
