//! strata: a declarative backup job runner.
//!
//! The modules are the stages of the pipeline, in the order data flows:
//! job files ([`job`]) -> selection rules ([`select`]) -> scan -> diff (the
//! plan) -> apply -> store -> report. [`cli`] is the only place that prints
//! or decides exit codes.
#![deny(missing_docs)]

pub mod cli;
pub mod job;
pub mod schedule;
pub mod select;
