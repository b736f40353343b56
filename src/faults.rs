//! The fault seam: named fault points that crash tests stop a run at, and
//! injected failures (an unreadable source file, a refused hardlink), as a
//! value passed in like [`crate::progress`]'s handle.
//!
//! Every step that changes a destination passes a fault point,
//! `faults.point(site, path)`: a site name (`apply.copy`, `commit.index`…)
//! and the path it acts on (the root for steps that act on the whole job).
//! A rule names a site, optionally a path and which occurrence of that pair,
//! so a fault replays at the same step of the same file whatever the thread
//! count. The trace mode writes every point a run reaches to a file, which
//! is how the crash sweep lists the points to stop at.
//!
//! Rules come from the command line's environment (`STRATA_FAULT`, parsed
//! in `cli` only); the default handle has none, and a point then costs one
//! branch on an `Option`.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::entry::RelPath;

/// What a rule does when its point is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Abort the process, as abruptly as `kill -9` (no destructor runs).
    Abort,
    /// Make the step fail (where the site asks [`Faults::fails`]).
    Fail,
    /// Stop there until the test lets it go on: the process creates
    /// `RESUME.waiting` and waits (up to two minutes) for `RESUME` to
    /// exist, where `RESUME` is [`Faults::with_resume`]'s file. What tests
    /// of two processes at once (a reader while a writer commits) need.
    Wait,
}

#[derive(Debug, Clone)]
struct Rule {
    action: Action,
    site: String,
    path: Option<Vec<u8>>,
    /// Which occurrence of (site, path) triggers it (1 = the first).
    nth: u64,
}

#[derive(Debug, Default)]
struct Inner {
    rules: Vec<Rule>,
    seen: Mutex<HashMap<(String, Vec<u8>), u64>>,
    trace: Option<Mutex<File>>,
    resume: Option<std::path::PathBuf>,
}

/// The handle. Cloning shares it; the default has no rule.
#[derive(Debug, Clone, Default)]
pub struct Faults(Option<Arc<Inner>>);

/// A rule that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad fault rule {0:?}: expected abort|fail|wait:SITE[@PATH][#N]")]
pub struct BadRule(pub String);

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults(None)
    }

    /// Rules separated by `,`: `abort:SITE[@PATH][#N]`,
    /// `fail:SITE[@PATH][#N]` or `wait:SITE[@PATH][#N]`; and, when `trace` is given, every point
    /// reached is appended to that file as `SITE@PATH` lines.
    pub fn new(rules: &str, trace: Option<&Path>) -> Result<Faults, BadRule> {
        let mut inner = Inner::default();
        for text in rules.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            inner
                .rules
                .push(parse_rule(text).ok_or_else(|| BadRule(text.into()))?);
        }
        if let Some(path) = trace {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| BadRule(format!("{}: {e}", path.display())))?;
            inner.trace = Some(Mutex::new(file));
        }
        if inner.rules.is_empty() && inner.trace.is_none() {
            return Ok(Faults::none());
        }
        Ok(Faults(Some(Arc::new(inner))))
    }

    /// The file a `wait:` rule waits for (see [`Action::Wait`]).
    pub fn with_resume(self, resume: Option<&Path>) -> Faults {
        match resume {
            // No rule, nothing to wait at: the default stays free.
            Some(resume) if self.0.is_some() => {
                let mut inner = self.into_inner();
                inner.resume = Some(resume.to_path_buf());
                Faults(Some(Arc::new(inner)))
            }
            _ => self,
        }
    }

    /// Add rules making reads of these source paths fail.
    pub fn with_unreadable(self, paths: &[RelPath]) -> Faults {
        if paths.is_empty() {
            return self;
        }
        let mut inner = self.into_inner();
        for p in paths {
            inner.rules.push(Rule {
                action: Action::Fail,
                site: "source.read".into(),
                path: Some(p.as_bytes().to_vec()),
                nth: 0,
            });
        }
        Faults(Some(Arc::new(inner)))
    }

    /// The rules and settings to add to: this handle's own, or a copy of
    /// them when the handle is shared (the counts of points seen start
    /// again).
    fn into_inner(self) -> Inner {
        match self.0 {
            None => Inner::default(),
            Some(arc) => Arc::try_unwrap(arc).unwrap_or_else(|arc| Inner {
                rules: arc.rules.clone(),
                trace: arc
                    .trace
                    .as_ref()
                    .and_then(|t| t.lock().ok()?.try_clone().ok())
                    .map(Mutex::new),
                resume: arc.resume.clone(),
                seen: Mutex::default(),
            }),
        }
    }

    /// A point where a crash may be injected.
    #[inline]
    pub fn point(&self, site: &'static str, path: &RelPath) {
        if let Some(inner) = &self.0 {
            match inner.hit(site, path) {
                Some(Action::Abort) => std::process::abort(),
                Some(Action::Wait) => inner.wait(),
                Some(Action::Fail) | None => {}
            }
        }
    }

    /// Whether the step at (site, path) must fail (a `fail:` rule).
    /// Counts as reaching the point.
    #[inline]
    pub fn fails(&self, site: &'static str, path: &RelPath) -> bool {
        match &self.0 {
            None => false,
            Some(inner) => match inner.hit(site, path) {
                Some(Action::Abort) => std::process::abort(),
                Some(Action::Fail) => true,
                Some(Action::Wait) => {
                    inner.wait();
                    false
                }
                None => false,
            },
        }
    }
}

impl Inner {
    /// [`Action::Wait`].
    fn wait(&self) {
        let Some(resume) = &self.resume else {
            return;
        };
        let mut waiting = resume.clone().into_os_string();
        waiting.push(".waiting");
        let _ = File::create(&waiting);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !resume.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn hit(&self, site: &str, path: &RelPath) -> Option<Action> {
        if let Some(trace) = &self.trace {
            let mut line = Vec::with_capacity(site.len() + path.as_bytes().len() + 2);
            line.extend_from_slice(site.as_bytes());
            line.push(b'@');
            line.extend_from_slice(path.as_bytes());
            line.push(b'\n');
            let _ = trace.lock().unwrap().write_all(&line);
        }
        let matching: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| r.site == site && r.path.as_deref().is_none_or(|p| p == path.as_bytes()))
            .collect();
        if matching.is_empty() {
            return None;
        }
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let count = seen
                .entry((site.to_string(), path.as_bytes().to_vec()))
                .or_default();
            *count += 1;
            *count
        };
        matching
            .iter()
            .find(|r| r.nth == 0 || r.nth == n)
            .map(|r| r.action)
    }
}

fn parse_rule(text: &str) -> Option<Rule> {
    let (action, rest) = text.split_once(':')?;
    let action = match action {
        "abort" => Action::Abort,
        "fail" => Action::Fail,
        "wait" => Action::Wait,
        _ => return None,
    };
    let (rest, nth) = match rest.rsplit_once('#') {
        Some((r, n)) => (r, n.parse().ok()?),
        None => (rest, if action == Action::Fail { 0 } else { 1 }),
    };
    let (site, path) = match rest.split_once('@') {
        Some((s, p)) => (s, Some(p.as_bytes().to_vec())),
        None => (rest, None),
    };
    if site.is_empty() {
        return None;
    }
    Some(Rule {
        action,
        site: site.to_string(),
        path,
        nth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_fail_by_site_and_path() {
        assert!(Faults::new("nonsense", None).is_err());
        assert!(Faults::new("abort:", None).is_err());
        let f = Faults::new("fail:link@a/b, fail:read#2", None).unwrap();
        let a = RelPath::from_bytes(b"a/b");
        let c = RelPath::from_bytes(b"c");
        assert!(f.fails("link", &a));
        assert!(f.fails("link", &a), "without #N: every time");
        assert!(!f.fails("link", &c));
        assert!(!f.fails("read", &c), "the first occurrence");
        assert!(f.fails("read", &c), "the second");
        assert!(!f.fails("read", &c), "only the second");
        assert!(!Faults::none().fails("link", &a));
    }

    #[test]
    fn trace_lists_every_point() {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("trace");
        let f = Faults::new("", Some(&trace)).unwrap();
        f.point("commit.meta", &RelPath::root());
        f.point("apply.copy", &RelPath::from_bytes(b"x/y"));
        assert_eq!(
            std::fs::read_to_string(&trace).unwrap(),
            "commit.meta@\napply.copy@x/y\n"
        );
    }

    #[test]
    fn rules_added_to_a_shared_handle_keep_its_trace_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("trace");
        let resume = dir.path().join("go");
        let f = Faults::new("", Some(&trace))
            .unwrap()
            .with_resume(Some(&resume));
        let shared = f.clone();
        let p = RelPath::from_bytes(b"x");
        let g = f.with_unreadable(std::slice::from_ref(&p));
        assert!(g.fails("source.read", &p));
        g.point("apply.copy", &p);
        drop(shared);
        assert_eq!(
            std::fs::read_to_string(&trace).unwrap(),
            "source.read@x\napply.copy@x\n"
        );
        assert_eq!(g.0.as_ref().unwrap().resume.as_deref(), Some(&*resume));
    }

    #[test]
    fn a_wait_rule_holds_the_point_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let resume = dir.path().join("go");
        let f = Faults::new("wait:index.read", None)
            .unwrap()
            .with_resume(Some(&resume));
        let waiter = {
            let f = f.clone();
            std::thread::spawn(move || f.point("index.read", &RelPath::root()))
        };
        let waiting = dir.path().join("go.waiting");
        while !waiting.exists() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!waiter.is_finished(), "held until resumed");
        std::fs::write(&resume, "").unwrap();
        waiter.join().unwrap();
        // The first occurrence only: the next passes at once.
        f.point("index.read", &RelPath::root());
    }
}
