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
//!
//! The decisions are written once, generic over a `Probe`: the walk
//! instantiates them with one that only asks *whether* some rule matches,
//! and [`Matcher::explain_path`] with one that also says *which* rule, so an
//! explanation can never disagree with what a run does.
//!
//! Rules are bounded before anything is compiled ([`MAX_RULE_BYTES`],
//! [`MAX_RULES_BYTES`]), and every compile step returns its error instead of
//! panicking: a hostile rule is a [`RuleError`], never a crash or gigabytes
//! of regex.

use std::fmt;
use std::path::Path;

use globset::{Candidate, Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The suffix that makes a rule match names at any depth.
pub const REC_SUFFIX: &str = ":rec";

/// The longest rule, in bytes: a path can be no longer (`PATH_MAX`).
pub const MAX_RULE_BYTES: usize = 4096;

/// All the rules of one job together, in bytes (each rule counting one
/// more). Compiling grows with this, and globset's regex sets build a
/// large automaton for wildcard-heavy rules: 64 KiB of the worst of them
/// compile in well under a second and a hundred MB, while a few hundred
/// KiB already exceed the automaton's limit and 40 MB took 20 GB.
pub const MAX_RULES_BYTES: usize = 64 * 1024;

/// Which of the six rule lists a rule belongs to (its job-file field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// One rule of a job: its list and its position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    /// The list holding the rule.
    pub list: RuleList,
    /// The rule's position in its list, from 0.
    pub index: usize,
}

impl RuleRef {
    /// The JSON pointer of the rule in its job file: `/track_dirs/2`.
    pub fn pointer(self) -> String {
        format!("/{}/{}", self.list.field(), self.index)
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list.field(), self.index)
    }
}

/// A rule that does not compile, with where it stands in the job file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}[{index}]: {}: {reason}", list.field(), shown(pattern))]
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

/// A rule quoted for a message, shortened when long.
fn shown(pattern: &str) -> String {
    const KEEP: usize = 40;
    if pattern.chars().count() <= 60 {
        format!("{pattern:?}")
    } else {
        let head: String = pattern.chars().take(KEEP).collect();
        format!("{:?}…", head)
    }
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

impl<'a> RuleLists<'a> {
    /// The six lists with their names, in job-file order.
    fn all(&self) -> [(RuleList, &'a [String]); 6] {
        [
            (RuleList::IncludeDirs, self.include_dirs),
            (RuleList::TrackDirs, self.track_dirs),
            (RuleList::ExcludeDirs, self.exclude_dirs),
            (RuleList::IncludeFiles, self.include_files),
            (RuleList::TrackFiles, self.track_files),
            (RuleList::ExcludeFiles, self.exclude_files),
        ]
    }
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

/// Why a path is or is not selected: what [`Matcher::explain_path`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The verdict. A path below an excluded directory is
    /// [`Selection::Excluded`] here (the walk never sees it at all).
    pub selection: Selection,
    /// The rule that decided; `None` when no rule selects the path.
    pub rule: Option<RuleRef>,
    /// The directory rule the decision combines with: the `track_dirs`
    /// rule that makes a file an `include_files` rule selects tracked, or
    /// the directory rule whose files an `exclude_files` rule takes out.
    pub via: Option<RuleRef>,
    /// The ancestor directory (relative to source, `.` for the source
    /// itself) where the walk stopped: excluded, or skipped because no
    /// rule can select anything below it. `None` when the path itself was
    /// decided.
    pub stopped_at: Option<String>,
}

/// Directory rules of one list.
#[derive(Debug, Clone)]
struct DirRules {
    /// The first `"."` rule (the whole source), if any.
    whole: Option<usize>,
    /// Globs on the relative path (rules without `:rec`).
    paths: GlobSet,
    /// The rule index of each glob in `paths`.
    path_rules: Vec<usize>,
    /// The same rules split into one matcher per path component, to tell
    /// whether a directory may lead to a match deeper down. `None` when the
    /// rule contains `**` (it may match at any depth).
    path_parts: Vec<Option<Vec<One>>>,
    /// Globs on directory names at any depth (`:rec` rules).
    names: GlobSet,
    /// The rule index of each glob in `names`.
    name_rules: Vec<usize>,
}

/// File rules of one list.
#[derive(Debug, Clone)]
struct FileRules {
    /// Name globs for files directly in the source root.
    root_names: GlobSet,
    /// The rule index of each glob in `root_names`.
    root_rules: Vec<usize>,
    /// Name globs at any depth (`:rec` without a folder).
    rec_names: GlobSet,
    /// The rule index of each glob in `rec_names`.
    rec_rules: Vec<usize>,
    /// Globs on the relative path: `docs/*.md`, or `docs/**/*.md` for
    /// `docs/*.md:rec`.
    paths: GlobSet,
    /// The rule index of each glob in `paths`.
    path_rules: Vec<usize>,
    /// Folder components of the path rules, and whether the rule is `:rec`.
    folders: Vec<(Vec<One>, bool)>,
}

/// One glob, compiled without the panic of `Glob::compile_matcher` (which
/// `expect`s that the regex builds): a set of one returns the error.
#[derive(Debug, Clone)]
struct One(GlobSet);

impl One {
    fn new(glob: Glob) -> Result<One, globset::Error> {
        let mut set = GlobSetBuilder::new();
        set.add(glob);
        set.build().map(One)
    }

    fn is_match(&self, path: &Path) -> bool {
        self.0.is_match(path)
    }
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
    /// The rules as written, by list, for explanations.
    patterns: [Vec<String>; 6],
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// Check a rule before compiling it, and split it into its pattern and
/// whether it carries `:rec`.
fn parse_rule(rule: &str) -> Result<(&str, bool), String> {
    if rule.len() > MAX_RULE_BYTES {
        return Err(format!(
            "is {} bytes long; a rule may have at most {MAX_RULE_BYTES}",
            rule.len()
        ));
    }
    if rule.contains('\0') {
        return Err("contains a NUL byte (\\u0000), which no file name can hold".into());
    }
    let (pattern, rec) = match rule.strip_suffix(REC_SUFFIX) {
        Some(pattern) => (pattern, true),
        None => (rule, false),
    };
    if let Some(suffix) = suffix_of(pattern) {
        return Err(if rec && suffix == REC_SUFFIX {
            "has the suffix `:rec` twice".to_string()
        } else if rec {
            format!("has two suffixes, `{suffix}` and `:rec`; the only suffix is `:rec`")
        } else {
            format!(
                "unknown suffix `{suffix}`: the only suffix is `:rec`, in lowercase \
                 (to match a name that ends in `{suffix}`, escape the colon: \
                 `\\\\:{}` in the JSON file)",
                &suffix[1..]
            )
        });
    }
    Ok((pattern, rec))
}

/// A `:letters` ending of the last path component that is not escaped
/// (`\:`): what a mistyped suffix looks like (`:recu`, `:REC`, `:recursive`).
fn suffix_of(pattern: &str) -> Option<&str> {
    let colon = pattern.rfind(':')?;
    let letters = &pattern[colon + 1..];
    if letters.is_empty() || !letters.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let backslashes = pattern[..colon]
        .bytes()
        .rev()
        .take_while(|&b| b == b'\\')
        .count();
    (backslashes % 2 == 0).then_some(&pattern[colon..])
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

fn compile_parts(pattern: &str) -> Result<Option<Vec<One>>, globset::Error> {
    if pattern.split('/').any(|p| p.contains("**")) {
        return Ok(None);
    }
    pattern
        .split('/')
        .map(|p| glob(p).and_then(One::new))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Globs being collected into one set, with the rule each came from.
struct SetBuilder {
    set: GlobSetBuilder,
    rules: Vec<usize>,
}

impl SetBuilder {
    fn new() -> SetBuilder {
        SetBuilder {
            set: GlobSetBuilder::new(),
            rules: Vec::new(),
        }
    }

    fn add(&mut self, glob: Glob, index: usize) {
        self.set.add(glob);
        self.rules.push(index);
    }

    /// The set, or an error naming the first of its rules: globs that
    /// compile one by one can still exceed the set's automaton limit
    /// together.
    fn build(
        self,
        list: RuleList,
        rules: &[String],
        errors: &mut Vec<RuleError>,
    ) -> (GlobSet, Vec<usize>) {
        match self.set.build() {
            Ok(set) => (set, self.rules),
            Err(e) => {
                let index = self.rules.first().copied().unwrap_or_default();
                errors.push(RuleError {
                    list,
                    index,
                    pattern: rules.get(index).cloned().unwrap_or_default(),
                    reason: format!(
                        "together with the other rules of {}, too complex to compile ({}): \
                         use fewer wildcards or fewer rules",
                        list.field(),
                        e.kind()
                    ),
                });
                (GlobSet::empty(), Vec::new())
            }
        }
    }
}

impl DirRules {
    fn compile(list: RuleList, rules: &[String], errors: &mut Vec<RuleError>) -> DirRules {
        let mut whole = None;
        let mut paths = SetBuilder::new();
        let mut path_parts = Vec::new();
        let mut names = SetBuilder::new();
        for (index, rule) in rules.iter().enumerate() {
            let fail = |reason: String| RuleError {
                list,
                index,
                pattern: rule.clone(),
                reason,
            };
            let (pattern, rec) = match parse_rule(rule) {
                Ok(parsed) => parsed,
                Err(reason) => {
                    errors.push(fail(reason));
                    continue;
                }
            };
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
                    Ok(g) => names.add(g, index),
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
                whole.get_or_insert(index);
                continue;
            }
            match (glob(&pattern), compile_parts(&pattern)) {
                (Ok(g), Ok(parts)) => {
                    paths.add(g, index);
                    path_parts.push(parts);
                }
                (Err(e), _) | (_, Err(e)) => errors.push(fail(glob_reason(&e))),
            }
        }
        let (paths, path_rules) = paths.build(list, rules, errors);
        let (names, name_rules) = names.build(list, rules, errors);
        DirRules {
            whole,
            paths,
            path_rules,
            path_parts,
            names,
            name_rules,
        }
    }

    /// The rule of this list matching a directory, as `P` reports it.
    fn hit<P: Probe>(&self, list: RuleList, rel: &Candidate, name: &Candidate) -> Option<P::Hit> {
        let whole = self.whole.map(|index| P::rule(RuleRef { list, index }));
        P::or(whole, || {
            P::or(P::in_set(&self.paths, &self.path_rules, list, rel), || {
                P::in_set(&self.names, &self.name_rules, list, name)
            })
        })
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
        let mut root_names = SetBuilder::new();
        let mut rec_names = SetBuilder::new();
        let mut paths = SetBuilder::new();
        let mut folders = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            let fail = |reason: String| RuleError {
                list,
                index,
                pattern: rule.clone(),
                reason,
            };
            let (pattern, rec) = match parse_rule(rule) {
                Ok(parsed) => parsed,
                Err(reason) => {
                    errors.push(fail(reason));
                    continue;
                }
            };
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
                    Ok(g) if rec => rec_names.add(g, index),
                    Ok(g) => root_names.add(g, index),
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
                    paths.add(g, index);
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
        let (root_names, root_rules) = root_names.build(list, rules, errors);
        let (rec_names, rec_rules) = rec_names.build(list, rules, errors);
        let (paths, path_rules) = paths.build(list, rules, errors);
        FileRules {
            root_names,
            root_rules,
            rec_names,
            rec_rules,
            paths,
            path_rules,
            folders,
        }
    }

    /// The rule of this list matching a file, as `P` reports it.
    fn hit<P: Probe>(
        &self,
        list: RuleList,
        rel: &Candidate,
        name: &Candidate,
        in_root: bool,
    ) -> Option<P::Hit> {
        let root = if in_root {
            P::in_set(&self.root_names, &self.root_rules, list, name)
        } else {
            None
        };
        P::or(root, || {
            P::or(
                P::in_set(&self.rec_names, &self.rec_rules, list, name),
                || P::in_set(&self.paths, &self.path_rules, list, rel),
            )
        })
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

/// How a decision looks at the rules: [`Decide`] only asks whether some
/// rule matches (the walk), [`Why`] also which one (explanations). The
/// decisions themselves ([`Matcher::decide_dir`], [`Matcher::decide_file`])
/// are written once for both.
trait Probe {
    /// What a match carries: nothing, or the rule.
    type Hit: Copy;
    /// A match of this rule.
    fn rule(rule: RuleRef) -> Self::Hit;
    /// The match of a set's globs against `candidate`, if any.
    fn in_set(
        set: &GlobSet,
        rules: &[usize],
        list: RuleList,
        candidate: &Candidate,
    ) -> Option<Self::Hit>;
    /// Combine two lookups: any match, or the first rule of both.
    fn or(a: Option<Self::Hit>, b: impl FnOnce() -> Option<Self::Hit>) -> Option<Self::Hit>;
}

/// Whether a rule matches; stops at the first lookup that says yes.
struct Decide;

impl Probe for Decide {
    type Hit = ();

    fn rule(_: RuleRef) {}

    fn in_set(set: &GlobSet, _: &[usize], _: RuleList, candidate: &Candidate) -> Option<()> {
        set.is_match_candidate(candidate).then_some(())
    }

    fn or(a: Option<()>, b: impl FnOnce() -> Option<()>) -> Option<()> {
        a.or_else(b)
    }
}

/// Which rule matches: the first of its list in job-file order.
struct Why;

impl Probe for Why {
    type Hit = RuleRef;

    fn rule(rule: RuleRef) -> RuleRef {
        rule
    }

    fn in_set(
        set: &GlobSet,
        rules: &[usize],
        list: RuleList,
        candidate: &Candidate,
    ) -> Option<RuleRef> {
        set.matches_candidate(candidate)
            .into_iter()
            .map(|i| rules[i])
            .min()
            .map(|index| RuleRef { list, index })
    }

    fn or(a: Option<RuleRef>, b: impl FnOnce() -> Option<RuleRef>) -> Option<RuleRef> {
        match (a, b()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What the rules say about a directory's files, with what a probe says
/// about each flag: for [`Decide`] it is [`DirState`].
#[derive(Debug, Clone, Copy)]
struct Cover<H> {
    tracked: Option<H>,
    included: Option<H>,
}

impl From<DirState> for Cover<()> {
    fn from(state: DirState) -> Self {
        Cover {
            tracked: state.tracked.then_some(()),
            included: state.included.then_some(()),
        }
    }
}

impl<H> From<Cover<H>> for DirState {
    fn from(cover: Cover<H>) -> Self {
        DirState {
            tracked: cover.tracked.is_some(),
            included: cover.included.is_some(),
        }
    }
}

/// A directory decision with what a probe says about it.
enum Dir<H> {
    Enter(Cover<H>),
    Excluded(H),
    Skip,
}

/// A file decision: the verdict, the rule that decided, and the directory
/// rule it combines with (see [`Explanation::via`]).
struct Verdict<H> {
    selection: Selection,
    rule: Option<H>,
    via: Option<H>,
}

impl Matcher {
    /// Compile a job's rule lists. Every rule that does not compile is
    /// reported, not just the first.
    pub fn new(rules: RuleLists<'_>) -> Result<Matcher, Vec<RuleError>> {
        // The budget first: past it nothing is compiled at all, and only
        // what each rule shows without compiling is reported with it.
        let mut total = 0usize;
        let mut over = None;
        for (list, patterns) in rules.all() {
            for (index, pattern) in patterns.iter().enumerate() {
                if pattern.len() > MAX_RULE_BYTES {
                    continue; // reported on its own, never compiled
                }
                total += pattern.len() + 1;
                if total > MAX_RULES_BYTES && over.is_none() {
                    over = Some(RuleError {
                        list,
                        index,
                        pattern: pattern.clone(),
                        reason: format!(
                            "the rules of this job add up to more than {MAX_RULES_BYTES} \
                             bytes from here on; use fewer or shorter rules (a `:rec` rule \
                             or a wildcard often replaces many)"
                        ),
                    });
                }
            }
        }
        if let Some(over) = over {
            let mut errors = vec![over];
            for (list, patterns) in rules.all() {
                for (index, pattern) in patterns.iter().enumerate() {
                    if let Err(reason) = parse_rule(pattern) {
                        errors.push(RuleError {
                            list,
                            index,
                            pattern: pattern.clone(),
                            reason,
                        });
                    }
                }
            }
            errors.sort_by_key(|e| (e.list, e.index));
            return Err(errors);
        }
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
            patterns: rules.all().map(|(_, patterns)| patterns.to_vec()),
        };
        if errors.is_empty() {
            Ok(matcher)
        } else {
            errors.sort_by_key(|e| (e.list, e.index));
            Err(errors)
        }
    }

    /// The rule as the job file writes it.
    pub fn pattern(&self, rule: RuleRef) -> &str {
        &self.patterns[rule.list as usize][rule.index]
    }

    /// The state of the source root itself (`"."` rules), or `None` when
    /// `exclude_dirs` holds `"."`.
    pub fn root(&self) -> Option<DirState> {
        match self.decide_root::<Decide>() {
            Dir::Enter(cover) => Some(cover.into()),
            Dir::Excluded(()) | Dir::Skip => None,
        }
    }

    /// Decide about a directory met while walking: `rel` is its path relative
    /// to source (with `/`), `parent` the state of the directory holding it.
    pub fn enter_dir(&self, parent: DirState, rel: &Path) -> DirDecision {
        match self.decide_dir::<Decide>(parent.into(), rel) {
            Dir::Enter(cover) => DirDecision::Enter(cover.into()),
            Dir::Excluded(()) => DirDecision::Excluded,
            Dir::Skip => DirDecision::Skip,
        }
    }

    /// Decide about a file (or symlink) at `rel`, in a directory with state
    /// `dir`. Files directly in the source root have no `/` in `rel`.
    pub fn file(&self, dir: DirState, rel: &Path) -> Selection {
        self.decide_file::<Decide>(dir.into(), rel).selection
    }

    fn decide_root<P: Probe>(&self) -> Dir<P::Hit> {
        let rule = |list, whole: Option<usize>| whole.map(|index| P::rule(RuleRef { list, index }));
        if let Some(hit) = rule(RuleList::ExcludeDirs, self.exclude_dirs.whole) {
            return Dir::Excluded(hit);
        }
        Dir::Enter(Cover {
            tracked: rule(RuleList::TrackDirs, self.track_dirs.whole),
            included: rule(RuleList::IncludeDirs, self.include_dirs.whole),
        })
    }

    fn decide_dir<P: Probe>(&self, parent: Cover<P::Hit>, rel: &Path) -> Dir<P::Hit> {
        let name = rel.file_name().map(Path::new).unwrap_or(rel);
        let rel_c = Candidate::new(rel);
        let name_c = Candidate::new(name);
        if let Some(hit) = self
            .exclude_dirs
            .hit::<P>(RuleList::ExcludeDirs, &rel_c, &name_c)
        {
            return Dir::Excluded(hit);
        }
        // An ancestor's rule, when there is one, is the one that covers.
        let cover = Cover {
            tracked: parent.tracked.or_else(|| {
                self.track_dirs
                    .hit::<P>(RuleList::TrackDirs, &rel_c, &name_c)
            }),
            included: parent.included.or_else(|| {
                self.include_dirs
                    .hit::<P>(RuleList::IncludeDirs, &rel_c, &name_c)
            }),
        };
        if cover.tracked.is_some() || cover.included.is_some() || self.enter_all {
            return Dir::Enter(cover);
        }
        let components: Vec<&[u8]> = path_bytes(rel).split(|&b| b == b'/').collect();
        if self.track_dirs.may_match_below(&components)
            || self.include_dirs.may_match_below(&components)
            || self.track_files.may_match_below(&components)
            || self.include_files.may_match_below(&components)
        {
            Dir::Enter(cover)
        } else {
            Dir::Skip
        }
    }

    fn decide_file<P: Probe>(&self, dir: Cover<P::Hit>, rel: &Path) -> Verdict<P::Hit> {
        let name = rel.file_name().map(Path::new).unwrap_or(rel);
        let in_root = !path_bytes(rel).contains(&b'/');
        let rel_c = Candidate::new(rel);
        let name_c = Candidate::new(name);
        let verdict = |selection, rule, via| Verdict {
            selection,
            rule,
            via,
        };
        // A file rule beats exclude_files and the directory rules; under a
        // tracked directory an include rule still tracks.
        if let Some(hit) = self
            .track_files
            .hit::<P>(RuleList::TrackFiles, &rel_c, &name_c, in_root)
        {
            return verdict(Selection::Tracked, Some(hit), None);
        }
        if let Some(hit) =
            self.include_files
                .hit::<P>(RuleList::IncludeFiles, &rel_c, &name_c, in_root)
        {
            return match dir.tracked {
                Some(by) => verdict(Selection::Tracked, Some(hit), Some(by)),
                None => verdict(Selection::Included, Some(hit), None),
            };
        }
        let Some(by) = dir.tracked.or(dir.included) else {
            return verdict(Selection::NotSelected, None, None);
        };
        if let Some(hit) =
            self.exclude_files
                .hit::<P>(RuleList::ExcludeFiles, &rel_c, &name_c, in_root)
        {
            return verdict(Selection::Excluded, Some(hit), Some(by));
        }
        match dir.tracked {
            Some(by) => verdict(Selection::Tracked, Some(by), None),
            None => verdict(Selection::Included, Some(by), None),
        }
    }

    /// Decide about a path by walking its ancestors from the root, as the
    /// scanner would. For tests; the scanner itself carries [`DirState`]
    /// down instead.
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

    /// Why the path `rel` (relative to source, `/`-separated; `.` or empty
    /// for the source itself) is or is not selected, and the rule that
    /// decided: the same decisions as [`Matcher::enter_dir`] and
    /// [`Matcher::file`], taken from the root down through every ancestor,
    /// so an excluded ancestor decides. For a directory (`is_dir`), the
    /// verdict is what its files get unless a file rule says otherwise.
    pub fn explain_path(&self, rel: &str, is_dir: bool) -> Explanation {
        let stopped = |selection, rule, dir: &str| Explanation {
            selection,
            rule,
            via: None,
            stopped_at: Some(dir.to_string()),
        };
        let mut cover = match self.decide_root::<Why>() {
            Dir::Enter(cover) => cover,
            Dir::Excluded(rule) => return stopped(Selection::Excluded, Some(rule), "."),
            Dir::Skip => return stopped(Selection::NotSelected, None, "."),
        };
        let parts: Vec<&str> = rel
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        // The directories to enter: the ancestors, and a directory itself.
        let dirs = if is_dir {
            parts.len()
        } else {
            parts.len().saturating_sub(1)
        };
        for i in 1..=dirs {
            let dir = parts[..i].join("/");
            cover = match self.decide_dir::<Why>(cover, Path::new(&dir)) {
                Dir::Enter(cover) => cover,
                Dir::Excluded(rule) => return stopped(Selection::Excluded, Some(rule), &dir),
                Dir::Skip => return stopped(Selection::NotSelected, None, &dir),
            };
        }
        if is_dir || parts.is_empty() {
            let (selection, rule) = match (cover.tracked, cover.included) {
                (Some(rule), _) => (Selection::Tracked, Some(rule)),
                (None, Some(rule)) => (Selection::Included, Some(rule)),
                (None, None) => (Selection::NotSelected, None),
            };
            return Explanation {
                selection,
                rule,
                via: None,
                stopped_at: None,
            };
        }
        let verdict = self.decide_file::<Why>(cover, Path::new(&parts.join("/")));
        Explanation {
            selection: verdict.selection,
            rule: verdict.rule,
            via: verdict.via,
            stopped_at: None,
        }
    }

    /// A record of which `include_dirs` and `track_dirs` rules matched a
    /// directory, to feed with [`Matcher::note_dir`].
    pub fn dir_rule_use(&self) -> DirRuleUse {
        let used = |rules: &DirRules, n: usize| {
            let mut used = vec![false; n];
            // `.` matches the source itself, which a walk always has.
            if let Some(i) = rules.whole {
                used[i] = true;
            }
            used
        };
        DirRuleUse {
            include: used(&self.include_dirs, self.patterns[0].len()),
            track: used(&self.track_dirs, self.patterns[1].len()),
        }
    }

    /// Record the `include_dirs` and `track_dirs` rules that match the
    /// directory `rel` (relative to source).
    pub fn note_dir(&self, used: &mut DirRuleUse, rel: &Path) {
        let name = rel.file_name().map(Path::new).unwrap_or(rel);
        let rel_c = Candidate::new(rel);
        let name_c = Candidate::new(name);
        for (rules, used) in [
            (&self.include_dirs, &mut used.include),
            (&self.track_dirs, &mut used.track),
        ] {
            for i in rules.paths.matches_candidate(&rel_c) {
                used[rules.path_rules[i]] = true;
            }
            for i in rules.names.matches_candidate(&name_c) {
                used[rules.name_rules[i]] = true;
            }
        }
    }

    /// The `include_dirs` and `track_dirs` rules that match none of `dirs`
    /// (relative to source): given the directories a scan selected, the
    /// rules that brought nothing in, most likely misspelt (`Pictres`).
    /// `"."` always matches.
    pub fn unmatched_dir_rules<'a>(
        &self,
        dirs: impl IntoIterator<Item = &'a Path>,
    ) -> Vec<RuleRef> {
        let mut used = self.dir_rule_use();
        for dir in dirs {
            self.note_dir(&mut used, dir);
        }
        used.unused()
    }
}

/// Which `include_dirs` and `track_dirs` rules matched some directory
/// ([`Matcher::dir_rule_use`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRuleUse {
    include: Vec<bool>,
    track: Vec<bool>,
}

impl DirRuleUse {
    /// The rules that matched nothing so far, in job-file order.
    pub fn unused(&self) -> Vec<RuleRef> {
        let unused = |list, used: &[bool]| {
            used.iter()
                .enumerate()
                .filter(|(_, u)| !**u)
                .map(move |(index, _)| RuleRef { list, index })
                .collect::<Vec<_>>()
        };
        let mut out = unused(RuleList::IncludeDirs, &self.include);
        out.extend(unused(RuleList::TrackDirs, &self.track));
        out
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
            let Ok((pattern, rec)) = parse_rule(rule) else {
                continue;
            };
            if rec {
                continue;
            }
            let Ok(pattern) = normalize(pattern) else {
                continue;
            };
            let state = DirState::default();
            let shadowed = excl.exclude_dirs.whole.is_some()
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

    fn rule(list: RuleList, index: usize) -> Option<RuleRef> {
        Some(RuleRef { list, index })
    }

    #[test]
    fn mistyped_suffixes_are_errors_that_name_the_real_one() {
        let lists = Lists {
            exclude_dirs: v(&["node_modules:recu", "x:REC", "ok:rec", "a\\:b", "t:rec:rec"]),
            exclude_files: v(&["*.log:recursive", "*.tmp:Rec:rec", "12:30", "a:b/c"]),
            ..Lists::default()
        };
        let errors = Matcher::new(lists.rules()).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "exclude_dirs[0]: \"node_modules:recu\": unknown suffix `:recu`: the only suffix \
                 is `:rec`, in lowercase (to match a name that ends in `:recu`, escape the \
                 colon: `\\\\:recu` in the JSON file)",
                "exclude_dirs[1]: \"x:REC\": unknown suffix `:REC`: the only suffix is `:rec`, \
                 in lowercase (to match a name that ends in `:REC`, escape the colon: \
                 `\\\\:REC` in the JSON file)",
                "exclude_dirs[4]: \"t:rec:rec\": has the suffix `:rec` twice",
                "exclude_files[0]: \"*.log:recursive\": unknown suffix `:recursive`: the only \
                 suffix is `:rec`, in lowercase (to match a name that ends in `:recursive`, \
                 escape the colon: `\\\\:recursive` in the JSON file)",
                "exclude_files[1]: \"*.tmp:Rec:rec\": has two suffixes, `:Rec` and `:rec`; the \
                 only suffix is `:rec`",
            ]
        );
        // An escaped colon is a name with a colon in it.
        let m = Lists {
            track_dirs: v(&["."]),
            exclude_dirs: v(&["a\\:b"]),
            ..Lists::default()
        }
        .matcher();
        check(&m, &[("a:b/x", NotSelected), ("ab/x", Tracked)]);
    }

    #[test]
    fn nul_bytes_and_oversized_rules_are_errors() {
        let long = "a".repeat(MAX_RULE_BYTES + 1);
        let lists = Lists {
            track_dirs: v(&["a\0b", &long, &"b".repeat(MAX_RULE_BYTES)]),
            ..Lists::default()
        };
        let errors = Matcher::new(lists.rules()).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "track_dirs[0]: \"a\\0b\": contains a NUL byte (\\u0000), which no file name can hold"
                    .to_string(),
                format!(
                    "track_dirs[1]: \"{}\"…: is 4097 bytes long; a rule may have at most 4096",
                    "a".repeat(40)
                ),
            ]
        );
    }

    #[test]
    fn the_rules_of_a_job_have_a_byte_budget() {
        // 17 rules of 4 KiB pass one by one but not together.
        let rules: Vec<String> = (0..17).map(|i| format!("{i:?<4000}")).collect();
        let lists = Lists {
            track_dirs: rules[..16].to_vec(),
            exclude_files: rules[16..].to_vec(),
            ..Lists::default()
        };
        let errors = Matcher::new(lists.rules()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            (errors[0].list, errors[0].index),
            (RuleList::ExcludeFiles, 0)
        );
        assert!(errors[0].reason.contains("add up to more than 65536 bytes"));
        let fits = Lists {
            track_dirs: rules[..16].to_vec(),
            ..Lists::default()
        };
        assert!(Matcher::new(fits.rules()).is_ok());
    }

    /// Hostile patterns of every shape are errors or matchers, never a
    /// panic: long, deeply nested, many alternatives, many rules.
    #[test]
    fn hostile_patterns_never_panic() {
        let nested = |depth: usize| format!("{}a{}", "{a,".repeat(depth), "}".repeat(depth));
        let alternatives = |n: usize| {
            let alts: Vec<String> = (0..n).map(|i| format!("a{i}")).collect();
            format!("{{{}}}", alts.join(","))
        };
        let patterns = [
            "a".repeat(500_000),
            "?".repeat(MAX_RULE_BYTES),
            "*a".repeat(MAX_RULE_BYTES / 2),
            "[[".repeat(MAX_RULE_BYTES / 2),
            "[".repeat(MAX_RULE_BYTES),
            "**/".repeat(MAX_RULE_BYTES / 3),
            "[!a]".repeat(MAX_RULE_BYTES / 4),
            nested(10),
            nested(1000),
            alternatives(500),
            alternatives(100_000),
            format!("{}:rec", "*".repeat(MAX_RULE_BYTES - 4)),
        ];
        for pattern in &patterns {
            for list in 0..6 {
                let mut lists: [Vec<String>; 6] = Default::default();
                lists[list].push(pattern.clone());
                lists[1].push(".".into());
                let rules = RuleLists {
                    include_dirs: &lists[0],
                    track_dirs: &lists[1],
                    exclude_dirs: &lists[2],
                    include_files: &lists[3],
                    track_files: &lists[4],
                    exclude_files: &lists[5],
                };
                if let Ok(m) = Matcher::new(rules) {
                    m.decide_path("a/b/c");
                    m.explain_path("a/b/c", false);
                }
            }
        }
        // Many small rules: the budget stops them before compiling.
        let many: Vec<String> = (0..100_000).map(|i| format!("d{i}?")).collect();
        let rules = RuleLists {
            exclude_dirs: &many,
            ..RuleLists::default()
        };
        assert!(Matcher::new(rules).is_err());
        // Many wildcard rules within the budget compile into one set.
        let many: Vec<String> = (0..6000).map(|i| format!("{i}?*[!a]")).collect();
        let rules = RuleLists {
            exclude_dirs: &many,
            track_dirs: &many[..1],
            ..RuleLists::default()
        };
        assert!(Matcher::new(rules).is_ok());
    }

    /// An explanation as a tuple: selection, rule, via, stopped at.
    type Answer = (Selection, Option<RuleRef>, Option<RuleRef>, Option<String>);

    fn explain(m: &Matcher, path: &str) -> Answer {
        let is_dir = path.ends_with('/');
        let e = m.explain_path(path.trim_end_matches('/'), is_dir);
        (e.selection, e.rule, e.via, e.stopped_at)
    }

    #[test]
    fn explanations_name_the_rule_that_decided() {
        use RuleList::*;
        let m = Lists {
            include_dirs: v(&["Music"]),
            track_dirs: v(&["Projects/*", "Documents", "."]),
            exclude_dirs: v(&["node_modules:rec", "build"]),
            include_files: v(&[".*", "Music/keep.log"]),
            track_files: v(&["*.conf:rec"]),
            exclude_files: v(&["*.log:rec"]),
        }
        .matcher();
        let table: Vec<(&str, Answer)> = vec![
            // The outermost tracking rule decides, then the first of a list.
            ("Documents/a.txt", (Tracked, rule(TrackDirs, 2), None, None)),
            ("Projects/p/a.rs", (Tracked, rule(TrackDirs, 2), None, None)),
            ("Music/a.mp3", (Tracked, rule(TrackDirs, 2), None, None)),
            // An excluded ancestor decides, whatever matches below it.
            (
                "build/x.conf",
                (Excluded, rule(ExcludeDirs, 1), None, Some("build".into())),
            ),
            (
                "a/node_modules/b/c.js",
                (
                    Excluded,
                    rule(ExcludeDirs, 0),
                    None,
                    Some("a/node_modules".into()),
                ),
            ),
            (
                "build/",
                (Excluded, rule(ExcludeDirs, 1), None, Some("build".into())),
            ),
            // File rules.
            ("x/y.conf", (Tracked, rule(TrackFiles, 0), None, None)),
            (
                ".bashrc",
                (Tracked, rule(IncludeFiles, 0), rule(TrackDirs, 2), None),
            ),
            (
                "a/b.log",
                (Excluded, rule(ExcludeFiles, 0), rule(TrackDirs, 2), None),
            ),
            (
                "Music/keep.log",
                (Tracked, rule(IncludeFiles, 1), rule(TrackDirs, 2), None),
            ),
            ("Documents/", (Tracked, rule(TrackDirs, 2), None, None)),
            ("", (Tracked, rule(TrackDirs, 2), None, None)),
        ];
        let mut wrong = Vec::new();
        for (path, want) in table {
            let got = explain(&m, path);
            if got != want {
                wrong.push(format!("{path}: want {want:?}, got {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    }

    #[test]
    fn explanations_of_what_is_not_selected() {
        use RuleList::*;
        let m = Lists {
            include_dirs: v(&["Music"]),
            track_dirs: v(&["Projects/*/src"]),
            include_files: v(&["docs/*.md"]),
            ..Lists::default()
        }
        .matcher();
        let table: Vec<(&str, Answer)> = vec![
            ("Music/a", (Included, rule(IncludeDirs, 0), None, None)),
            (
                "Projects/x/src/m.rs",
                (Tracked, rule(TrackDirs, 0), None, None),
            ),
            // Entered on the way to a match, but not selected itself.
            ("Projects/x/readme", (NotSelected, None, None, None)),
            ("Projects/", (NotSelected, None, None, None)),
            // Nothing below can match: the walk never goes there.
            ("Other/a", (NotSelected, None, None, Some("Other".into()))),
            (
                "Projects/x/tests/t.rs",
                (NotSelected, None, None, Some("Projects/x/tests".into())),
            ),
            ("top.txt", (NotSelected, None, None, None)),
            ("docs/a.md", (Included, rule(IncludeFiles, 0), None, None)),
        ];
        let mut wrong = Vec::new();
        for (path, want) in table {
            let got = explain(&m, path);
            if got != want {
                wrong.push(format!("{path}: want {want:?}, got {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
        let excluded_root = Lists {
            track_dirs: v(&["a"]),
            exclude_dirs: v(&["x", "."]),
            ..Lists::default()
        }
        .matcher();
        assert_eq!(
            explain(&excluded_root, "a/b"),
            (Excluded, rule(ExcludeDirs, 1), None, Some(".".into()))
        );
    }

    #[test]
    fn unmatched_dir_rules_are_the_ones_no_directory_matches() {
        use RuleList::*;
        let m = Lists {
            include_dirs: v(&["Music", "cache*:rec"]),
            track_dirs: v(&["Pictres", ".", "Projects/*"]),
            ..Lists::default()
        }
        .matcher();
        let dirs = ["Music", "Pictures", "Projects", "Projects/a", "x/cache2"].map(Path::new);
        assert_eq!(
            m.unmatched_dir_rules(dirs),
            [RuleRef {
                list: TrackDirs,
                index: 0
            }]
        );
        let dirs = ["Music", "Pictures", "Projects"].map(Path::new);
        assert_eq!(
            m.unmatched_dir_rules(dirs),
            [
                RuleRef {
                    list: IncludeDirs,
                    index: 1
                },
                RuleRef {
                    list: TrackDirs,
                    index: 0
                },
                RuleRef {
                    list: TrackDirs,
                    index: 2
                },
            ]
        );
        assert_eq!(
            m.pattern(RuleRef {
                list: TrackDirs,
                index: 0
            }),
            "Pictres"
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
                    // The explanation is the decision, with its reasons
                    // (for paths a walk can meet: no `.` or `..`).
                    if parts.iter().any(|p| *p == "." || *p == "..") {
                        continue;
                    }
                    let why = m.explain_path(path, false);
                    prop_assert_eq!(why.selection.is_selected(), got.is_selected(), "{}", path);
                    if why.stopped_at.is_none() {
                        prop_assert_eq!(why.selection, got, "{}", path);
                    }
                    prop_assert_eq!(
                        why.rule.is_some(),
                        why.selection != Selection::NotSelected,
                        "{}",
                        path
                    );
                }
            }
        }

        /// Long and deeply repeated patterns, the shapes that make regex
        /// compilation blow up: `{a,{a,…}}`, `[[[[`, `**/**/…`, thousands
        /// of alternatives, in any list. Each is an error or a matcher.
        fn hostile() -> impl Strategy<Value = String> {
            let unit = prop_oneof![
                Just(("a", "")),
                Just(("?", "")),
                Just(("*a", "")),
                Just(("[[", "")),
                Just(("[!a]", "")),
                Just(("**/", "")),
                Just(("{a,", "}")),
                Just(("{a,b},", "")),
                Just(("[\u{80}-\u{10FFFF}]", "")),
            ];
            (unit, 1usize..200_000, any::<bool>()).prop_map(|((open, close), n, rec)| {
                let mut p = open.repeat(n);
                p.push('x');
                p.push_str(&close.repeat(n));
                if rec {
                    p.push_str(":rec");
                }
                p
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            #[test]
            fn hostile_patterns_are_errors_or_matchers(
                pattern in hostile(),
                list in 0usize..6,
                copies in 1usize..40,
                path in rel_path(),
            ) {
                let mut lists: [Vec<String>; 6] = Default::default();
                lists[list] = vec![pattern; copies];
                let rules = RuleLists {
                    include_dirs: &lists[0],
                    track_dirs: &lists[1],
                    exclude_dirs: &lists[2],
                    include_files: &lists[3],
                    track_files: &lists[4],
                    exclude_files: &lists[5],
                };
                if let Ok(m) = Matcher::new(rules) {
                    m.decide_path(&path);
                    m.explain_path(&path, false);
                }
            }
        }
    }
}
