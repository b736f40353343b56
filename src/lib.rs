//! strata: a declarative backup job runner.
//!
//! The modules are the stages of the pipeline, in the order data flows:
//! job files -> selection -> scan -> diff (the plan) -> apply -> store -> report.
#![deny(missing_docs)]

pub mod schedule;
