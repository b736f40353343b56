//! Fuzz job-file checking: any bytes must give diagnostics, never a panic,
//! and a job exactly when there is no error. Repeat directives
//! (`expand.rs`) reach the huge and deeply nested rules and files that
//! once crashed the loader.
#![no_main]

mod expand;

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = expand::expand(text);
    let (job, diagnostics) =
        strata::job::load::check_text(Path::new("/fuzz/jobs.d/f.json"), &text);
    let errors = diagnostics.iter().any(|d| d.is_error());
    assert_eq!(job.is_some(), !errors);
    for d in &diagnostics {
        assert!(d.line >= 1 && d.column >= 1);
    }
});
