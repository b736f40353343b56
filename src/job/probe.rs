//! What `validate` looks at in an existing source: whether each
//! `include_dirs` and `track_dirs` rule matches a directory there. A typo
//! (`--track Pictres`) otherwise validates clean and backs up nothing.
//!
//! The look is bounded so that validating 1,000 jobs stays fast: the walk
//! goes only as deep as the rules reach, reads at most [`MAX_DIRS`]
//! directories and [`MAX_ENTRIES`] entries, and a rule is reported only
//! when the walk saw everything that rule could match. It makes the same
//! decisions as a run ([`Matcher::enter_dir`], [`Matcher::note_dir`]), and
//! never follows a symlink, as the scan does not.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::fs::{Dir, FileTypeOf};

use crate::select::{DirDecision, Matcher, REC_SUFFIX, RuleRef};

/// The most directories one job's probe reads.
pub const MAX_DIRS: usize = 200;

/// The most directory entries one job's probe looks at.
pub const MAX_ENTRIES: usize = 20_000;

/// A directory rule that matches nothing in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    /// The rule.
    pub rule: RuleRef,
    /// A hint: a directory with a similar name, or what the named entry is
    /// if it is not a directory.
    pub hint: Option<String>,
}

/// The `include_dirs` and `track_dirs` rules (`rules[i]` for the list of
/// `RuleRef`s the matcher knows) that match no directory of `source`, as
/// far as a bounded walk can tell.
pub fn unmatched_dir_rules(
    source: &Path,
    matcher: &Matcher,
    include_dirs: &[String],
    track_dirs: &[String],
) -> Vec<Unmatched> {
    let Some(root) = matcher.root() else {
        return Vec::new();
    };
    // How deep each rule reaches: `None` for `:rec` and `**` rules.
    let depth = |rule: &str| -> Option<usize> {
        if rule.ends_with(REC_SUFFIX) || rule.contains("**") {
            return None;
        }
        Some(
            rule.split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .count(),
        )
    };
    let depths: Vec<Option<usize>> = include_dirs
        .iter()
        .chain(track_dirs)
        .map(|r| depth(r))
        .collect();
    if depths.is_empty() {
        return Vec::new();
    }
    let deepest = if depths.iter().any(Option::is_none) {
        usize::MAX
    } else {
        depths.iter().flatten().copied().max().unwrap_or(0)
    };

    let mut used = matcher.dir_rule_use();
    // Every entry seen, for hints: relative path and whether a directory.
    let mut seen: Vec<(PathBuf, &'static str)> = Vec::new();
    let Ok(source_dir) = Dir::open_root(source) else {
        return Vec::new();
    };
    // Each directory is read from its own descriptor, opened from its
    // parent's with no symlink followed (as the scan reads them).
    let mut queue = VecDeque::from([(source_dir, PathBuf::new(), root, 0usize)]);
    let (mut dirs_read, mut entries) = (0usize, 0usize);
    // The depth of the first directory the budget kept the walk from
    // reading: every directory down to that depth was seen.
    let mut cut: Option<usize> = None;
    while let Some((dir, rel, state, level)) = queue.pop_front() {
        if level >= deepest {
            continue;
        }
        if dirs_read >= MAX_DIRS || entries >= MAX_ENTRIES {
            cut = Some(level);
            break;
        }
        dirs_read += 1;
        let Ok(listing) = dir.entries() else {
            continue;
        };
        for (name, file_type) in listing {
            entries += 1;
            if entries > MAX_ENTRIES {
                cut = Some(level);
                break;
            }
            let child = rel.join(OsStr::from_bytes(&name));
            let file_type = match file_type {
                FileType::Directory => FileTypeOf::Dir,
                FileType::Symlink => FileTypeOf::Symlink,
                FileType::Unknown => dir
                    .stat_at(&name)
                    .map_or(FileTypeOf::Special, |st| st.file_type),
                _ => FileTypeOf::File,
            };
            let kind = match file_type {
                FileTypeOf::Dir => "directory",
                FileTypeOf::Symlink => "a symbolic link, which strata stores and never follows",
                _ => "a file",
            };
            seen.push((child.clone(), kind));
            if kind != "directory" {
                continue;
            }
            if let DirDecision::Enter(child_state) = matcher.enter_dir(state, &child) {
                matcher.note_dir(&mut used, &child);
                if let Ok(child_dir) = dir.child_dir(&name) {
                    queue.push_back((child_dir, child, child_state, level + 1));
                }
            }
        }
        if cut.is_some() {
            break;
        }
    }
    used.unused()
        .into_iter()
        .filter(|rule| {
            let i = match rule.list {
                crate::select::RuleList::IncludeDirs => rule.index,
                _ => include_dirs.len() + rule.index,
            };
            match (cut, depths[i]) {
                (None, _) => true,
                (Some(cut), Some(depth)) => depth <= cut,
                (Some(_), None) => false,
            }
        })
        .map(|rule| Unmatched {
            rule,
            hint: hint(matcher.pattern(rule), &seen),
        })
        .collect()
}

/// A directory whose name is close to `rule`, or what the entry `rule`
/// names is if it is not a directory.
fn hint(rule: &str, seen: &[(PathBuf, &'static str)]) -> Option<String> {
    let wanted = rule.trim_end_matches('/').trim_start_matches("./");
    if let Some((_, kind)) = seen
        .iter()
        .find(|(p, kind)| p == Path::new(wanted) && *kind != "directory")
    {
        return Some(format!("{wanted:?} is {kind}, not a directory"));
    }
    if wanted.contains(['*', '?', '[', '{']) {
        return None;
    }
    seen.iter()
        .filter(|(_, kind)| *kind == "directory")
        .filter_map(|(p, _)| p.to_str())
        .map(|p| (strsim::jaro_winkler(wanted, p), p))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, p)| format!("did you mean {p:?}?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::{RuleList, RuleLists};

    fn probe(root: &Path, include: &[&str], track: &[&str]) -> Vec<(RuleRef, Option<String>)> {
        let include: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        let track: Vec<String> = track.iter().map(|s| s.to_string()).collect();
        let matcher = Matcher::new(RuleLists {
            include_dirs: &include,
            track_dirs: &track,
            ..RuleLists::default()
        })
        .unwrap();
        unmatched_dir_rules(root, &matcher, &include, &track)
            .into_iter()
            .map(|u| (u.rule, u.hint))
            .collect()
    }

    #[test]
    fn a_misspelt_rule_is_found_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["Pictures/2024", "Projects/a/src", "x/y/cache1"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("notes"), "").unwrap();
        let track = |index| RuleRef {
            list: RuleList::TrackDirs,
            index,
        };
        assert_eq!(
            probe(
                dir.path(),
                &["cache*:rec", "nothing*:rec"],
                &["Pictres", ".", "Projects/*/src", "Projects/*/lib", "notes"]
            ),
            [
                (
                    RuleRef {
                        list: RuleList::IncludeDirs,
                        index: 1
                    },
                    None
                ),
                (track(0), Some("did you mean \"Pictures\"?".into())),
                (track(3), None),
                (
                    track(4),
                    Some("\"notes\" is a file, not a directory".into())
                ),
            ]
        );
    }

    #[test]
    fn a_walk_cut_short_reports_only_what_it_could_see() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..(MAX_DIRS + 10) {
            std::fs::create_dir_all(dir.path().join(format!("d{i:03}/x"))).unwrap();
        }
        // Depth 1 is seen whole; `:rec` rules would need the whole tree.
        let found = probe(dir.path(), &["nope:rec"], &["Nope", "d000/x/none"]);
        let rules: Vec<usize> = found.iter().map(|(r, _)| r.index).collect();
        assert_eq!(rules, [0]);
        assert_eq!(found[0].0.list, RuleList::TrackDirs);
    }
}
