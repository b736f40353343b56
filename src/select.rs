//! Selection rules -> a compiled, immutable matcher. Pure: no filesystem.
//!
//! A job's `include_*`, `track_*` and `exclude_*` lists are compiled once into
//! globset matchers ([`Matcher::new`]); the scanner then asks, for each
//! directory it meets, whether to enter it ([`Matcher::enter_dir`]) and, for
//! each file, what it is ([`Matcher::file`]). Directory coverage is inherited
//! through [`DirState`], so a file is decided with a few name/path lookups and
//! no look at its ancestors.
//!
//! Precedence (SPEC §2): an excluded directory is never entered; a file rule
//! (`include_files`/`track_files`) beats `exclude_files`, which beats the
//! directory rules; a file both tracked and included is tracked.

use std::fmt;
use std::path::Path;

use globset::{Candidate, Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// The suffix that makes a rule match names at any depth.
pub const REC_SUFFIX: &str = ":rec";

/// Which of the six rule lists a rule belongs to (its job-file field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleList {
    /// `include_dirs`
    IncludeDirs,
    /// `track_dirs`
    TrackDirs,
    /// `exclude_dirs`
    ExcludeDirs,
    /// `include_files`
    IncludeFiles,
    /// `track_files`
    TrackFiles,
    /// `exclude_files`
    ExcludeFiles,
}

impl RuleList {
    /// The job-file field that holds this list.
    pub fn field(self) -> &'static str {
        match self {
            RuleList::IncludeDirs => "include_dirs",
            RuleList::TrackDirs => "track_dirs",
            RuleList::ExcludeDirs => "exclude_dirs",
            RuleList::IncludeFiles => "include_files",
            RuleList::TrackFiles => "track_files",
            RuleList::ExcludeFiles => "exclude_files",
        }
    }

    fn is_dir_list(self) -> bool {
        matches!(
            self,
            RuleList::IncludeDirs | RuleList::TrackDirs | RuleList::ExcludeDirs
        )
    }
}

/// A rule that does not compile, with where it stands in the job file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}[{index}]: {pattern:?}: {reason}", list.field())]
pub struct RuleError {
    /// The list holding the rule.
    pub list: RuleList,
    /// The rule's position in its list.
    pub index: usize,
    /// The rule as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The rule lists of one job, borrowed from the job file.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleLists<'a> {
    /// `include_dirs`
    pub include_dirs: &'a [String],
    /// `track_dirs`
    pub track_dirs: &'a [String],
    /// `exclude_dirs`
    pub exclude_dirs: &'a [String],
    /// `include_files`
    pub include_files: &'a [String],
    /// `track_files`
    pub track_files: &'a [String],
    /// `exclude_files`
    pub exclude_files: &'a [String],
}

/// What a file is, for the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Mirrored and versioned.
    Tracked,
    /// Mirrored only.
    Included,
    /// Brought in by a directory rule but removed by `exclude_files`.
    Excluded,
    /// No rule selects it.
    NotSelected,
}

impl Selection {
    /// Whether the file goes to the mirror.
    pub fn is_selected(self) -> bool {
        matches!(self, Selection::Tracked | Selection::Included)
    }
}

/// What the rules say about a directory's files, inherited downwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirState {
    /// A `track_dirs` rule covers this directory (or an ancestor).
    pub tracked: bool,
    /// An `include_dirs` rule covers this directory (or an ancestor).
    pub included: bool,
}

/// The answer for a directory met while walking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirDecision {
    /// Walk into it, with this state for its entries.
    Enter(DirState),
    /// An `exclude_dirs` rule matches: never enter.
    Excluded,
    /// No rule can select anything below it: no need to enter.
    Skip,
}

/// Directory rules of one list.
#[derive(Debug, Clone)]
struct DirRules {
    /// `"."`: the whole source.
    whole: bool,
    /// Globs on the relative path (rules without `:rec`).
    paths: GlobSet,
    /// The same rules split into one matcher per path component, to tell
    /// whether a directory may lead to a match deeper down. `None` when the
    /// rule contains `**` (it may match at any depth).
    path_parts: Vec<Option<Vec<GlobMatcher>>>,
    /// Globs on directory names at any depth (`:rec` rules).
    names: GlobSet,
}

/// File rules of one list.
#[derive(Debug, Clone)]
struct FileRules {
    /// Name globs for files directly in the source root.
    root_names: GlobSet,
    /// Name globs at any depth (`:rec` without a folder).
    rec_names: GlobSet,
    /// Globs on the relative path: `docs/*.md`, or `docs/**/*.md` for
    /// `docs/*.md:rec`.
    paths: GlobSet,
    /// Folder components of the path rules, and whether the rule is `:rec`.
    folders: Vec<(Vec<GlobMatcher>, bool)>,
}

/// A job's selection rules, compiled once, answered many times.
#[derive(Debug, Clone)]
pub struct Matcher {
    include_dirs: DirRules,
    track_dirs: DirRules,
    exclude_dirs: DirRules,
    include_files: FileRules,
    track_files: FileRules,
    exclude_files: FileRules,
    /// Some include/track rule matches names at any depth: every directory
    /// may hold a selected file.
    enter_all: bool,
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// A rule split into its pattern and whether it carries `:rec`.
fn split_rec(rule: &str) -> (&str, bool) {
    match rule.strip_suffix(REC_SUFFIX) {
        Some(pattern) => (pattern, true),
        None => (rule, false),
    }
}

/// Clean up a relative pattern: drop `./` prefixes and trailing `/`, and
/// reject what would leave the source.
fn normalize(pattern: &str) -> Result<String, String> {
    if pattern.is_empty() {
        return Err("empty pattern".into());
    }
    if pattern.starts_with('/') {
        return Err("must be relative to source, not absolute".into());
    }
    let mut parts = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("must stay inside source (no `..`)".into()),
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        Ok(".".into())
    } else {
        Ok(parts.join("/"))
    }
}

fn compile_parts(pattern: &str) -> Result<Option<Vec<GlobMatcher>>, globset::Error> {
    if pattern.split('/').any(|p| p.contains("**")) {
        return Ok(None);
    }
    pattern
        .split('/')
        .map(|p| glob(p).map(|g| g.compile_matcher()))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl DirRules {
    fn compile(list: RuleList, rules: &[String], errors: &mut Vec<RuleError>) -> DirRules {
        let mut whole = false;
        let mut paths = GlobSetBuilder::new();
        let mut path_parts = Vec::new();
        let mut names = GlobSetBuilder::new();
        for (index, rule) in rules.iter().enumerate() {
            let fail = |reason: String| RuleError {
                list,
                index,
                pattern: rule.clone(),
                reason,
            };
            let (pattern, rec) = split_rec(rule);
            if rec {
                if pattern.contains('/') {
                    errors.push(fail(
                        "a `:rec` directory rule matches directory names, so it cannot contain `/`"
                            .into(),
                    ));
                    continue;
                }
                if pattern.is_empty() || pattern == "." || pattern == ".." {
                    errors.push(fail(
                        "a `:rec` directory rule needs a directory name glob".into(),
                    ));
                    continue;
                }
                match glob(pattern) {
                    Ok(g) => {
                        names.add(g);
                    }
                    Err(e) => errors.push(fail(glob_reason(&e))),
                }
                continue;
            }
            let pattern = match normalize(pattern) {
                Ok(p) => p,
                Err(reason) => {
                    errors.push(fail(reason));
                    continue;
                }
            };
            if pattern == "." {
                whole = true;
                continue;
            }
            match (glob(&pattern), compile_parts(&pattern)) {
                (Ok(g), Ok(parts)) => {
                    paths.add(g);
                    path_parts.push(parts);
                }
                (Err(e), _) | (_, Err(e)) => errors.push(fail(glob_reason(&e))),
            }
        }
        DirRules {
            whole,
            paths: build_set(paths),
            path_parts,
            names: build_set(names),
        }
    }

    fn matches(&self, rel: &Candidate, name: &Candidate) -> bool {
        self.whole || self.paths.is_match_candidate(rel) || self.names.is_match_candidate(name)
    }

    /// Whether a path rule may match `dir` or a directory below it.
    fn may_match_below(&self, components: &[&[u8]]) -> bool {
        self.path_parts.iter().any(|parts| match parts {
            None => true,
            Some(parts) => {
                components.len() < parts.len()
                    && components
                        .iter()
                        .zip(parts)
                        .all(|(c, p)| p.is_match(bytes_path(c)))
            }
        })
    }
}

impl FileRules {
    fn compile(list: RuleList, rules: &[String], errors: &mut Vec<RuleError>) -> FileRules {
        let mut root_names = GlobSetBuilder::new();
        let mut rec_names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let mut folders = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let fail = |reason: String| RuleError {
                list,
                index,
                pattern: rule.clone(),
                reason,
            };
            let (pattern, rec) = split_rec(rule);
            let pattern = match normalize(pattern) {
                Ok(p) if p == "." => {
                    errors.push(fail("a file rule needs a file name glob".into()));
                    continue;
                }
                Ok(p) => p,
                Err(reason) => {
                    errors.push(fail(reason));
                    continue;
                }
            };
            let Some((folder, name)) = pattern.rsplit_once('/') else {
                match glob(&pattern) {
                    Ok(g) if rec => {
                        rec_names.add(g);
                    }
                    Ok(g) => {
                        root_names.add(g);
                    }
                    Err(e) => errors.push(fail(glob_reason(&e))),
                }
                continue;
            };
            let full = if rec {
                format!("{folder}/**/{name}")
            } else {
                pattern.clone()
            };
            let compiled = (
                glob(&full),
                glob(name),
                compile_parts(folder).map(|p| p.unwrap_or_default()),
            );
            match compiled {
                (Ok(g), Ok(_), Ok(parts)) => {
                    paths.add(g);
                    // A folder with `**` may match at any depth: model it as a
                    // rec rule with no fixed prefix.
                    let any_depth = folder.split('/').any(|p| p.contains("**"));
                    folders.push((parts, rec || any_depth));
                }
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    errors.push(fail(glob_reason(&e)))
                }
            }
        }
        FileRules {
            root_names: build_set(root_names),
            rec_names: build_set(rec_names),
            paths: build_set(paths),
            folders,
        }
    }

    fn matches(&self, rel: &Candidate, name: &Candidate, in_root: bool) -> bool {
        (in_root && self.root_names.is_match_candidate(name))
            || self.rec_names.is_match_candidate(name)
            || self.paths.is_match_candidate(rel)
    }

    /// Whether a folder rule may select a file in `dir` or below it.
    fn may_match_below(&self, components: &[&[u8]]) -> bool {
        self.folders.iter().any(|(parts, rec)| {
            let prefix = components.len().min(parts.len());
            let prefix_matches = components[..prefix]
                .iter()
                .zip(parts)
                .all(|(c, p)| p.is_match(bytes_path(c)));
            prefix_matches && (*rec || components.len() <= parts.len())
        })
    }
}

fn build_set(builder: GlobSetBuilder) -> GlobSet {
    builder
        .build()
        .expect("globs that compiled one by one build a set")
}

fn glob_reason(e: &globset::Error) -> String {
    format!("bad glob: {}", e.kind())
}

#[cfg(unix)]
fn bytes_path(bytes: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes()
}

impl Matcher {
    /// Compile a job's rule lists. Every rule that does not compile is
    /// reported, not just the first.
    pub fn new(rules: RuleLists<'_>) -> Result<Matcher, Vec<RuleError>> {
        let mut errors = Vec::new();
        let matcher = Matcher {
            include_dirs: DirRules::compile(RuleList::IncludeDirs, rules.include_dirs, &mut errors),
            track_dirs: DirRules::compile(RuleList::TrackDirs, rules.track_dirs, &mut errors),
            exclude_dirs: DirRules::compile(RuleList::ExcludeDirs, rules.exclude_dirs, &mut errors),
            include_files: FileRules::compile(
                RuleList::IncludeFiles,
                rules.include_files,
                &mut errors,
            ),
            track_files: FileRules::compile(RuleList::TrackFiles, rules.track_files, &mut errors),
            exclude_files: FileRules::compile(
                RuleList::ExcludeFiles,
                rules.exclude_files,
                &mut errors,
            ),
            enter_all: !rules.include_dirs.iter().all(|r| !r.ends_with(REC_SUFFIX))
                || !rules.track_dirs.iter().all(|r| !r.ends_with(REC_SUFFIX))
                || rules
                    .include_files
                    .iter()
                    .chain(rules.track_files)
                    .any(|r| r.ends_with(REC_SUFFIX) && !r.contains('/')),
        };
        if errors.is_empty() {
            Ok(matcher)
        } else {
            Err(errors)
        }
    }

    /// The state of the source root itself (`"."` rules), or `None` when
    /// `exclude_dirs` holds `"."`.
    pub fn root(&self) -> Option<DirState> {
        if self.exclude_dirs.whole {
            return None;
        }
        Some(DirState {
            tracked: self.track_dirs.whole,
            included: self.include_dirs.whole,
        })
    }

    /// Decide about a directory met while walking: `rel` is its path relative
    /// to source (with `/`), `parent` the state of the directory holding it.
    pub fn enter_dir(&self, parent: DirState, rel: &Path) -> DirDecision {
        let name = rel.file_name().map(Path::new).unwrap_or(rel);
        let rel_c = Candidate::new(rel);
        let name_c = Candidate::new(name);
        if self.exclude_dirs.matches(&rel_c, &name_c) {
            return DirDecision::Excluded;
        }
        let state = DirState {
            tracked: parent.tracked || self.track_dirs.matches(&rel_c, &name_c),
            included: parent.included || self.include_dirs.matches(&rel_c, &name_c),
        };
        if state.tracked || state.included || self.enter_all {
            return DirDecision::Enter(state);
        }
        let components: Vec<&[u8]> = path_bytes(rel).split(|&b| b == b'/').collect();
        if self.track_dirs.may_match_below(&components)
            || self.include_dirs.may_match_below(&components)
            || self.track_files.may_match_below(&components)
            || self.include_files.may_match_below(&components)
        {
            DirDecision::Enter(state)
        } else {
            DirDecision::Skip
        }
    }

    /// Decide about a file (or symlink) at `rel`, in a directory with state
    /// `dir`. Files directly in the source root have no `/` in `rel`.
    pub fn file(&self, dir: DirState, rel: &Path) -> Selection {
        let name = rel.file_name().map(Path::new).unwrap_or(rel);
        let in_root = !path_bytes(rel).contains(&b'/');
        let rel_c = Candidate::new(rel);
        let name_c = Candidate::new(name);
        let track_rule = self.track_files.matches(&rel_c, &name_c, in_root);
        let include_rule = self.include_files.matches(&rel_c, &name_c, in_root);
        if track_rule || include_rule {
            return if track_rule || dir.tracked {
                Selection::Tracked
            } else {
                Selection::Included
            };
        }
        if !(dir.tracked || dir.included) {
            return Selection::NotSelected;
        }
        if self.exclude_files.matches(&rel_c, &name_c, in_root) {
            return Selection::Excluded;
        }
        if dir.tracked {
            Selection::Tracked
        } else {
            Selection::Included
        }
    }

    /// Decide about a path by walking its ancestors from the root, as the
    /// scanner would. For tests and explanations; the scanner itself carries
    /// [`DirState`] down instead.
    pub fn decide_path(&self, rel: &str) -> Selection {
        let Some(mut state) = self.root() else {
            return Selection::NotSelected;
        };
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 1..parts.len() {
            let dir = parts[..i].join("/");
            match self.enter_dir(state, Path::new(&dir)) {
                DirDecision::Enter(s) => state = s,
                DirDecision::Excluded | DirDecision::Skip => return Selection::NotSelected,
            }
        }
        self.file(state, Path::new(rel))
    }
}

/// Warnings about rules that can never take effect: an include or track
/// directory inside an excluded one. Returns (list, index, message).
pub fn shadowed_rules(rules: RuleLists<'_>) -> Vec<(RuleList, usize, String)> {
    let mut out = Vec::new();
    let Ok(excl) = Matcher::new(RuleLists {
        exclude_dirs: rules.exclude_dirs,
        ..RuleLists::default()
    }) else {
        return out;
    };
    for (list, lists) in [
        (RuleList::IncludeDirs, rules.include_dirs),
        (RuleList::TrackDirs, rules.track_dirs),
    ] {
        for (index, rule) in lists.iter().enumerate() {
            let (pattern, rec) = split_rec(rule);
            if rec {
                continue;
            }
            let Ok(pattern) = normalize(pattern) else {
                continue;
            };
            let state = DirState::default();
            let shadowed = excl.exclude_dirs.whole
                || (pattern != "."
                    && (1..=pattern.split('/').count()).any(|n| {
                        let prefix: Vec<&str> = pattern.split('/').take(n).collect();
                        let prefix = prefix.join("/");
                        excl.enter_dir(state, Path::new(&prefix)) == DirDecision::Excluded
                    }));
            if shadowed {
                out.push((
                    list,
                    index,
                    format!(
                        "{}[{index}]: {rule:?} is inside an excluded directory and selects nothing",
                        list.field()
                    ),
                ));
            }
        }
    }
    debug_assert!(out.iter().all(|(l, _, _)| l.is_dir_list()));
    out
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Selection::Tracked => "tracked",
            Selection::Included => "included",
            Selection::Excluded => "excluded",
            Selection::NotSelected => "not selected",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Selection::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[derive(Default)]
    struct Lists {
        include_dirs: Vec<String>,
        track_dirs: Vec<String>,
        exclude_dirs: Vec<String>,
        include_files: Vec<String>,
        track_files: Vec<String>,
        exclude_files: Vec<String>,
    }

    impl Lists {
        fn matcher(&self) -> Matcher {
            Matcher::new(self.rules()).expect("rules compile")
        }
        fn rules(&self) -> RuleLists<'_> {
            RuleLists {
                include_dirs: &self.include_dirs,
                track_dirs: &self.track_dirs,
                exclude_dirs: &self.exclude_dirs,
                include_files: &self.include_files,
                track_files: &self.track_files,
                exclude_files: &self.exclude_files,
            }
        }
    }

    fn check(m: &Matcher, table: &[(&str, Selection)]) {
        let mut wrong = Vec::new();
        for (path, want) in table {
            let got = m.decide_path(path);
            if got != *want {
                wrong.push(format!("{path}: want {want}, got {got}"));
            }
        }
        assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    }

    #[test]
    fn dir_rule_without_suffix_matches_relative_path() {
        let m = Lists {
            track_dirs: v(&["Documents", "Projects/*"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                ("Documents/a.txt", Tracked),
                ("Documents/deep/er/b.txt", Tracked),
                ("Projects/p1/src/main.rs", Tracked),
                ("Projects/readme.md", NotSelected),
                ("other/Documents/a.txt", NotSelected),
                ("top.txt", NotSelected),
            ],
        );
    }

    #[test]
    fn dot_is_the_whole_source() {
        let m = Lists {
            include_dirs: v(&["."]),
            ..Lists::default()
        }
        .matcher();
        check(&m, &[("a", Included), ("x/y/z", Included)]);
    }

    #[test]
    fn rec_dir_rules_match_names_at_any_depth() {
        let m = Lists {
            track_dirs: v(&["."]),
            exclude_dirs: v(&["node_modules:rec", "cache*:rec"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                ("node_modules/x.js", NotSelected),
                ("a/b/node_modules/x.js", NotSelected),
                ("a/cache2/x", NotSelected),
                ("a/my_cache/x", Tracked),
                ("a/node_modules.txt", Tracked),
            ],
        );
    }

    #[test]
    fn excluded_dir_is_never_entered_whatever_else_matches() {
        let m = Lists {
            track_dirs: v(&[".", "build/keep"]),
            exclude_dirs: v(&["build"]),
            track_files: v(&["*.rs:rec"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                ("build/main.rs", NotSelected),
                ("build/keep/x", NotSelected),
                ("src/main.rs", Tracked),
            ],
        );
        assert_eq!(
            m.enter_dir(DirState::default(), Path::new("build")),
            DirDecision::Excluded
        );
    }

    #[test]
    fn root_file_rules_match_only_in_root() {
        let m = Lists {
            include_files: v(&[".*"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                (".bashrc", Included),
                (".profile", Included),
                ("a/.bashrc", NotSelected),
                ("bashrc", NotSelected),
            ],
        );
    }

    #[test]
    fn rec_file_rules_match_names_at_any_depth() {
        let m = Lists {
            track_files: v(&["*.md:rec"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                ("README.md", Tracked),
                ("a/b/c/notes.md", Tracked),
                ("a/b/c/notes.txt", NotSelected),
            ],
        );
    }

    #[test]
    fn folder_file_rules() {
        let m = Lists {
            include_files: v(&["docs/*.md"]),
            track_files: v(&["src/*.rs:rec"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                ("docs/a.md", Included),
                ("docs/sub/a.md", NotSelected),
                ("other/docs/a.md", NotSelected),
                ("src/main.rs", Tracked),
                ("src/a/b/lib.rs", Tracked),
                ("src/a/b/lib.c", NotSelected),
                ("lib.rs", NotSelected),
            ],
        );
    }

    #[test]
    fn star_never_crosses_a_slash() {
        let m = Lists {
            track_dirs: v(&["a/*"]),
            include_files: v(&["*.txt"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                ("a/b/f", Tracked),
                ("a/f", NotSelected),
                ("x.txt", Included),
                ("d/x.txt", NotSelected),
            ],
        );
    }

    #[test]
    fn exclude_files_removes_dir_selected_files_but_not_file_rule_ones() {
        let m = Lists {
            track_dirs: v(&["."]),
            exclude_files: v(&["*.log:rec", "*.tmp:rec"]),
            include_files: v(&["keep.log"]),
            track_files: v(&["logs/important.log"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                ("a/x.log", Excluded),
                ("x.tmp", Excluded),
                // An explicit file rule beats exclude_files; under a tracked
                // dir an include rule still tracks (versioning is never lost).
                ("keep.log", Tracked),
                ("logs/important.log", Tracked),
                ("logs/other.log", Excluded),
                ("a/x.txt", Tracked),
            ],
        );
    }

    #[test]
    fn track_beats_include() {
        let m = Lists {
            include_dirs: v(&["."]),
            track_dirs: v(&["work"]),
            track_files: v(&["*.conf:rec"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                ("work/a", Tracked),
                ("music/a.mp3", Included),
                ("music/a.conf", Tracked),
            ],
        );
    }

    #[test]
    fn hidden_files_and_dirs_are_ordinary_names() {
        let m = Lists {
            track_dirs: v(&[".config"]),
            include_files: v(&["*"]),
            exclude_dirs: v(&[".git:rec"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                (".config/nvim/init.vim", Tracked),
                (".config/.git/HEAD", NotSelected),
                (".hidden", Included),
                ("a/.hidden", NotSelected),
            ],
        );
    }

    #[test]
    fn braces_and_classes() {
        let m = Lists {
            track_files: v(&["*.{jpg,png}:rec", "file[0-9]"]),
            ..Lists::default()
        }
        .matcher();
        check(
            &m,
            &[
                ("a/b.jpg", Tracked),
                ("b.png", Tracked),
                ("b.gif", NotSelected),
                ("file3", Tracked),
                ("filex", NotSelected),
            ],
        );
    }

    #[test]
    fn walk_is_pruned_where_nothing_can_match() {
        let m = Lists {
            track_dirs: v(&["Projects/*/src"]),
            include_files: v(&["docs/*.md"]),
            ..Lists::default()
        }
        .matcher();
        let s = DirState::default();
        let enter = |p: &str| matches!(m.enter_dir(s, Path::new(p)), DirDecision::Enter(_));
        assert!(enter("Projects"));
        assert!(enter("Projects/x"));
        assert!(enter("docs"));
        assert!(!enter("docs/sub"));
        assert!(!enter("Music"));
        assert!(!enter("Projects/x/tests"));
    }

    #[test]
    fn rec_file_rule_means_every_dir_is_entered() {
        let m = Lists {
            track_files: v(&["*.rs:rec"]),
            ..Lists::default()
        }
        .matcher();
        assert!(matches!(
            m.enter_dir(DirState::default(), Path::new("x/y")),
            DirDecision::Enter(_)
        ));
    }

    #[test]
    fn bad_rules_are_reported_with_list_and_index() {
        let lists = Lists {
            track_dirs: v(&["ok", "../up", "/abs", "a/b:rec"]),
            include_files: v(&["[unclosed"]),
            ..Lists::default()
        };
        let errors = Matcher::new(lists.rules()).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "track_dirs[1]: \"../up\": must stay inside source (no `..`)",
                "track_dirs[2]: \"/abs\": must be relative to source, not absolute",
                "track_dirs[3]: \"a/b:rec\": a `:rec` directory rule matches directory names, so it cannot contain `/`",
                "include_files[0]: \"[unclosed\": bad glob: unclosed character class; missing ']'",
            ]
        );
    }

    #[test]
    fn include_inside_excluded_dir_is_a_warning() {
        let lists = Lists {
            track_dirs: v(&["build/out", "src"]),
            exclude_dirs: v(&["build"]),
            include_dirs: v(&["a/node_modules/x"]),
            ..Lists::default()
        };
        let mut lists = lists;
        lists.exclude_dirs.push("node_modules:rec".into());
        let warnings = shadowed_rules(lists.rules());
        let which: Vec<(RuleList, usize)> = warnings.iter().map(|(l, i, _)| (*l, *i)).collect();
        assert_eq!(
            which,
            [(RuleList::IncludeDirs, 0), (RuleList::TrackDirs, 0)]
        );
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn pattern() -> impl Strategy<Value = String> {
            let part = prop_oneof![
                "[a-c]{1,2}",
                Just("*".to_string()),
                Just("?".to_string()),
                Just("**".to_string()),
                Just("[ab]".to_string()),
                Just("{a,b}".to_string()),
                Just(".".to_string()),
                Just("..".to_string()),
                Just("[".to_string()),
                Just("\\".to_string()),
            ];
            (
                prop::collection::vec(part, 1..4),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(parts, rec, abs)| {
                    let mut p = parts.join("/");
                    if abs {
                        p.insert(0, '/');
                    }
                    if rec {
                        p.push_str(":rec");
                    }
                    p
                })
        }

        fn rel_path() -> impl Strategy<Value = String> {
            prop::collection::vec("[abc.]{1,3}", 1..5).prop_map(|parts| parts.join("/"))
        }

        proptest! {
            /// Any rules either compile or are reported; any path gets an
            /// answer; nothing below an excluded directory is selected.
            #[test]
            fn never_panics_and_exclusion_wins(
                include in prop::collection::vec(pattern(), 0..3),
                track in prop::collection::vec(pattern(), 0..3),
                exclude in prop::collection::vec(pattern(), 0..3),
                files in prop::collection::vec(pattern(), 0..3),
                paths in prop::collection::vec(rel_path(), 1..8),
            ) {
                let rules = RuleLists {
                    include_dirs: &include,
                    track_dirs: &track,
                    exclude_dirs: &exclude,
                    track_files: &files,
                    ..RuleLists::default()
                };
                let Ok(m) = Matcher::new(rules) else { return Ok(()) };
                let excl = Matcher::new(RuleLists { exclude_dirs: &exclude, ..RuleLists::default() })
                    .expect("a subset of valid rules is valid");
                for path in &paths {
                    let got = m.decide_path(path);
                    let parts: Vec<&str> = path.split('/').collect();
                    let excluded = excl.root().is_none() || (1..parts.len()).any(|i| {
                        excl.enter_dir(DirState::default(), Path::new(&parts[..i].join("/")))
                            == DirDecision::Excluded
                    });
                    if excluded {
                        prop_assert_eq!(got, Selection::NotSelected, "{}", path);
                    }
                }
            }
        }
    }
}
