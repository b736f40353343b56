//! strata: a declarative backup job runner.
//!
//! The modules are the stages of the pipeline, in the order data flows:
//! job files ([`job`]) -> selection rules ([`select`]) -> [`scan`] ->
//! [`diff`] (the plan) -> [`apply`] -> [`store`] (layout, index, commit,
//! recovery) -> [`report`]. [`run`] chains them for one job; [`daemon`]
//! runs jobs on their schedules; [`history`] reads the increments back
//! (history, restore, prune, verify); [`cli`] is the only place that prints
//! or decides exit codes. Around a run: [`guard`] checks the plan before it
//! is applied, [`hooks`] runs the job's commands and pings, [`monitor`]
//! writes metrics, [`progress`] is the handle a run reports progress to;
//! [`tz`] is the machine's time zone, which schedules and retention read.
#![deny(missing_docs)]

pub mod apply;
pub mod cli;
pub mod daemon;
pub mod diff;
pub mod fault;
pub mod guard;
pub mod history;
pub mod hooks;
pub mod job;
pub mod monitor;
pub mod progress;
pub mod report;
pub mod run;
pub mod scan;
pub mod schedule;
pub mod select;
pub mod store;
pub mod tz;
