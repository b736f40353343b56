//! strata: a declarative backup job runner.
//!
//! The modules are the stages of the pipeline, in the order data flows:
//! job files ([`job`]) -> selection rules ([`select`]) -> [`scan`] ->
//! [`diff`] (the plan) -> [`apply`] -> [`store`] (layout, index, commit,
//! recovery) -> [`report`]. They all speak the vocabulary of [`entry`] and
//! touch files only through [`fs`], which opens every path beneath a root's
//! descriptor. [`run`] chains the stages for one job; [`daemon`] runs jobs
//! on their cron schedules ([`schedule`]); [`history`] reads the increments
//! back (history, restore, prune, verify, diff, du) and [`mount`] serves
//! them as a read-only filesystem; [`cli`] is the only place that prints or
//! decides exit codes. Around a run: [`guard`] checks the plan before it is
//! applied, [`hooks`] runs the job's commands and healthcheck pings around
//! it, [`monitor`] sends the pings and writes the metrics file; [`export`]
//! writes the job files out as systemd timers, Kubernetes CronJobs and
//! Nomad periodic jobs; [`progress`] and [`faults`] are the seams passed
//! in; [`tz`] is the machine's time zone, which schedules and retention
//! read.
#![deny(missing_docs)]

pub mod apply;
pub mod cli;
pub mod daemon;
pub mod diff;
pub mod entry;
pub mod export;
pub mod faults;
pub mod fs;
pub mod guard;
pub mod history;
pub mod hooks;
pub mod job;
pub mod monitor;
pub mod mount;
pub mod progress;
pub mod report;
pub mod run;
pub mod run_object;
pub mod scan;
pub mod schedule;
pub mod select;
pub mod store;
pub mod tz;
