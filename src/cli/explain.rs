//! `strata explain NAME PATH...`: for each path, whether the job tracks,
//! includes, excludes or does not select it, and the rule that decided
//! (list, index, pattern, and where it stands in the job file), as
//! rsync's `--debug=FILTER` shows. The answer comes from the job's
//! compiled matcher ([`Matcher::explain_path`]), the same decisions a run
//! takes, through every ancestor directory of the path.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::{Config, ExitCode, find_job, print_json};
use crate::job::Job;
use crate::job::load::read_job_file;
use crate::job::locate::locate_or_ancestor;
use crate::select::{Explanation, Matcher, RuleRef, Selection};

/// One rule, as `--json` shows it.
#[derive(Debug, Serialize)]
struct RuleJson {
    field: &'static str,
    index: usize,
    pattern: String,
    file: PathBuf,
    line: usize,
    column: usize,
}

/// One path's answer, as `--json` shows it.
#[derive(Debug, Serialize)]
struct PathJson {
    path: String,
    relative: String,
    kind: &'static str,
    exists: bool,
    selection: String,
    rule: Option<RuleJson>,
    via: Option<RuleJson>,
    stopped_at: Option<String>,
    reason: String,
}

/// Explain how the job `name` treats each of `paths`.
pub fn run(config: &Config, name: &str, paths: &[String]) -> ExitCode {
    let job = match find_job(config, name) {
        Ok(job) => job,
        Err(code) => return code,
    };
    let text = read_job_file(&job.file).unwrap_or_default();
    let mut code = ExitCode::Success;
    let mut answers = Vec::new();
    // The source, opened once for all the paths (none is there when it
    // cannot be opened).
    let source = crate::fs::Dir::open_root(&job.source).ok();
    for arg in paths {
        let Some(rel) = relative(&job, arg) else {
            eprintln!(
                "strata: {arg}: not inside the source {} of job {}",
                job.source.display(),
                job.name
            );
            code = ExitCode::Usage;
            continue;
        };
        let on_disk = source.as_ref().and_then(|source| kind_in(source, &rel));
        let is_dir =
            arg.ends_with('/') || rel.is_empty() || on_disk == Some(crate::fs::FileTypeOf::Dir);
        let why = job.matcher.explain_path(&rel, is_dir);
        let rule = |r: RuleRef| rule_json(&job, &text, r);
        let answer = PathJson {
            path: arg.clone(),
            relative: if rel.is_empty() {
                ".".into()
            } else {
                rel.clone()
            },
            kind: if is_dir { "directory" } else { "file" },
            exists: on_disk.is_some(),
            selection: why.selection.to_string(),
            reason: reason(&job.matcher, &why, &rel, is_dir, &rule),
            rule: why.rule.map(rule),
            via: why.via.map(rule),
            stopped_at: why.stopped_at.clone(),
        };
        if !config.json {
            let missing = if answer.exists {
                ""
            } else {
                " (not in the source now)"
            };
            let shown = if is_dir && !arg.ends_with('/') {
                format!("{arg}/")
            } else {
                arg.clone()
            };
            println!("{shown}{missing}: {}: {}", answer.selection, answer.reason);
        }
        answers.push(answer);
    }
    if config.json {
        print_json(&answers);
    } else if config.verbosity >= 0
        && (job.one_file_system || job.exclude_caches || !job.exclude_if_present.is_empty())
    {
        eprintln!(
            "strata: note: {} also skips directories on disk (one_file_system, \
             exclude_caches, exclude_if_present), which explain does not look at",
            job.name
        );
    }
    code
}

/// A path argument relative to the job's source, `/`-separated, without
/// `.` components (empty for the source itself); `None` when it lies
/// outside. A relative argument is relative to the source, an absolute
/// one must lie under it (as written, or through the source's real path).
/// What `rel` is in the job's source (`None`: nothing there), looked up
/// beneath the source's descriptor with no symlink followed on the way, as
/// a run sees it.
fn kind_in(source: &crate::fs::Dir, rel: &str) -> Option<crate::fs::FileTypeOf> {
    if rel.is_empty() {
        return Some(crate::fs::FileTypeOf::Dir);
    }
    let (dir, name) = source.parent_of(rel.as_bytes()).ok()?;
    dir.stat_at(name).ok().map(|st| st.file_type)
}

fn relative(job: &Job, arg: &str) -> Option<String> {
    let path = Path::new(arg);
    let below = if path.is_absolute() {
        let clean = crate::job::resolve_path(Path::new("/"), path);
        let real = std::fs::canonicalize(&job.source).ok();
        let rest = clean
            .strip_prefix(&job.source)
            .ok()
            .or_else(|| real.as_deref().and_then(|r| clean.strip_prefix(r).ok()))?;
        rest.to_path_buf()
    } else {
        path.to_path_buf()
    };
    let mut parts: Vec<String> = Vec::new();
    for part in below.components() {
        match part {
            Component::Normal(name) => parts.push(name.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// A rule with its position in the job file.
fn rule_json(job: &Job, text: &str, rule: RuleRef) -> RuleJson {
    let pos = locate_or_ancestor(text, &rule.pointer(), false);
    RuleJson {
        field: rule.list.field(),
        index: rule.index,
        pattern: job.matcher.pattern(rule).to_string(),
        file: job.file.clone(),
        line: pos.line,
        column: pos.column,
    }
}

/// Why, in words, naming each rule with its place in the job file.
fn reason(
    matcher: &Matcher,
    why: &Explanation,
    rel: &str,
    is_dir: bool,
    rule: &dyn Fn(RuleRef) -> RuleJson,
) -> String {
    let named = |r: RuleRef| {
        let at = rule(r);
        format!(
            "{r} {:?} ({}:{}:{})",
            matcher.pattern(r),
            at.file.display(),
            at.line,
            at.column
        )
    };
    let this = if is_dir {
        "this directory"
    } else {
        "this file"
    };
    let itself = why.stopped_at.as_deref() == Some(if rel.is_empty() { "." } else { rel });
    match (why.selection, why.rule, why.via, &why.stopped_at) {
        (Selection::Excluded, Some(r), _, Some(_)) if itself => {
            format!(
                "{} excludes {this}: nothing below it is backed up",
                named(r)
            )
        }
        (Selection::Excluded, Some(r), _, Some(dir)) => format!(
            "{} excludes the directory {dir:?}, and nothing below an excluded directory is \
             backed up, whatever else matches",
            named(r)
        ),
        (Selection::NotSelected, _, _, Some(_)) if itself => {
            format!("no rule can select anything in {this}, so a run does not enter it")
        }
        (Selection::NotSelected, _, _, Some(dir)) => format!(
            "no rule can select anything below the directory {dir:?}, so a run does not enter it"
        ),
        (Selection::NotSelected, _, _, None) if is_dir => {
            "no directory rule covers this directory (file rules may still select files in it)"
                .into()
        }
        (Selection::NotSelected, ..) => "no rule selects this file".into(),
        (Selection::Excluded, Some(r), Some(via), None) => {
            format!("{} takes it out of what {} selects", named(r), named(via))
        }
        (Selection::Tracked, Some(r), Some(via), None) => format!(
            "{} selects it, and {} covers its directory, so it is versioned too",
            named(r),
            named(via)
        ),
        (_, Some(r), _, _) if r.list.field().ends_with("_dirs") => {
            if is_dir {
                format!(
                    "{} covers it: its files are backed up unless a file rule says otherwise",
                    named(r)
                )
            } else {
                format!("{} covers its directory", named(r))
            }
        }
        (_, Some(r), _, _) => format!("{} matches it", named(r)),
        (_, None, _, _) => "no rule decided".into(),
    }
}
