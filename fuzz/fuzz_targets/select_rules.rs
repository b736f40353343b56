//! Fuzz the selection rules: lines of the input are rules (the first byte
//! of a line picks the list) and paths; compiling never panics, deciding
//! never panics, and nothing below an excluded directory is selected; an
//! explanation agrees with the decision. Repeat directives (`expand.rs`)
//! build the long and deeply repeated rules that once made globset panic.
#![no_main]

mod expand;

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use strata::select::{DirDecision, DirState, Matcher, RuleLists, Selection};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = expand::expand(text);
    let mut lists: [Vec<String>; 6] = Default::default();
    let mut paths = Vec::new();
    for line in text.lines() {
        let mut chars = line.chars();
        match chars.next() {
            Some(c @ '0'..='5') => lists[c as usize - '0' as usize].push(chars.as_str().to_string()),
            Some(_) => paths.push(line.to_string()),
            None => {}
        }
    }
    let rules = RuleLists {
        include_dirs: &lists[0],
        track_dirs: &lists[1],
        exclude_dirs: &lists[2],
        include_files: &lists[3],
        track_files: &lists[4],
        exclude_files: &lists[5],
    };
    let Ok(matcher) = Matcher::new(rules) else {
        return;
    };
    let excluded = Matcher::new(RuleLists {
        exclude_dirs: &lists[2],
        ..RuleLists::default()
    })
    .expect("a subset of valid rules is valid");
    for path in paths {
        if path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            continue;
        }
        let got = matcher.decide_path(&path);
        let parts: Vec<&str> = path.split('/').collect();
        let below_excluded = excluded.root().is_none()
            || (1..parts.len()).any(|i| {
                excluded.enter_dir(DirState::default(), Path::new(&parts[..i].join("/")))
                    == DirDecision::Excluded
            });
        if below_excluded {
            assert_eq!(got, Selection::NotSelected, "{path}");
        }
        let why = matcher.explain_path(&path, false);
        assert_eq!(why.selection.is_selected(), got.is_selected(), "{path}");
        if why.stopped_at.is_none() {
            assert_eq!(why.selection, got, "{path}");
        }
    }
});
