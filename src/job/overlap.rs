//! Where a job's source and destination really are, and what must not
//! overlap: the checks of `validate` and `run` that look at the
//! filesystem (SPEC §5, issue 12 item 4).
//!
//! Two spellings of one directory must compare equal: through symlinks,
//! through `..` in a symlink's target, and through bind mounts, which no
//! path comparison can see. So a path is resolved as far as it exists
//! ([`Place::resolve`]): every existing component by its identity
//! (`st_dev`, `st_ino`), symlinks followed as the kernel would, and the
//! components that do not exist yet as names. "A is inside B" then means:
//! B's deepest existing directory is on A's chain of directories, and A's
//! names below it start with B's missing names.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Identity of a file: device and inode.
type Id = (u64, u64);

/// The most symlinks followed for one path, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// A path resolved as far as it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The real path: symlinks resolved, then the missing components.
    pub real: PathBuf,
    /// The identity of `/` and of each existing component of `real` below
    /// it: `chain[i]` is the directory `names[..i]` leads to.
    chain: Vec<Id>,
    /// The existing components of `real`, below `/`.
    names: Vec<OsString>,
    /// The components of `real` that do not exist (yet).
    missing: Vec<OsString>,
}

impl Place {
    /// Resolve an absolute path as the kernel would, as far as it exists.
    /// Never fails: what cannot be looked at counts as missing.
    pub fn resolve(path: &Path) -> Place {
        let root_id = std::fs::metadata("/").map_or((0, 0), |m| (m.dev(), m.ino()));
        let mut place = Place {
            real: PathBuf::from("/"),
            chain: vec![root_id],
            names: Vec::new(),
            missing: Vec::new(),
        };
        let mut pending: Vec<OsString> = components(path);
        pending.reverse();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                if place.names.pop().is_some() {
                    place.chain.pop();
                    place.real.pop();
                }
                continue;
            }
            let next = place.real.join(&name);
            let meta = match std::fs::symlink_metadata(&next) {
                Ok(meta) => meta,
                Err(_) => {
                    place.missing.push(name);
                    place.missing.extend(pending.into_iter().rev());
                    break;
                }
            };
            if meta.file_type().is_symlink() {
                links += 1;
                let target = match std::fs::read_link(&next) {
                    Ok(target) if links <= MAX_SYMLINKS => target,
                    // A loop: nothing more can be known.
                    _ => {
                        place.missing.push(name);
                        place.missing.extend(pending.into_iter().rev());
                        break;
                    }
                };
                if target.is_absolute() {
                    place.real = PathBuf::from("/");
                    place.chain.truncate(1);
                    place.names.clear();
                }
                pending.extend(components(&target).into_iter().rev());
                continue;
            }
            place.chain.push((meta.dev(), meta.ino()));
            place.names.push(name);
            place.real = next;
        }
        for name in &place.missing {
            place.real.push(name);
        }
        place
    }

    /// Whether the path exists.
    pub fn exists(&self) -> bool {
        self.missing.is_empty()
    }

    /// Whether the path's parent directory exists.
    pub fn parent_exists(&self) -> bool {
        self.missing.len() <= 1
    }

    /// The deepest directory of the path that exists.
    pub fn existing(&self) -> PathBuf {
        let mut path = PathBuf::from("/");
        path.extend(&self.names);
        path
    }

    /// The deepest existing directory's identity.
    fn anchor(&self) -> Id {
        *self.chain.last().expect("a chain starts at /")
    }

    /// Whether this place is `other` or lies below it.
    pub fn is_within(&self, other: &Place) -> bool {
        let anchor = other.anchor();
        (0..self.chain.len())
            .filter(|&i| self.chain[i] == anchor)
            .any(|i| self.names_below(i).starts_with(&other.missing))
    }

    /// Whether this place and `other` are the same directory.
    pub fn is_same(&self, other: &Place) -> bool {
        self.is_within(other) && other.is_within(self)
    }

    /// The names from the `i`-th directory of the chain down.
    fn names_below(&self, i: usize) -> Vec<OsString> {
        self.names[i..]
            .iter()
            .chain(&self.missing)
            .cloned()
            .collect()
    }

    /// " (which is REAL)" when `path` spells this place another way.
    pub fn spelled(&self, path: &Path) -> String {
        if self.real == path {
            String::new()
        } else {
            format!(" (which is {})", self.real.display())
        }
    }
}

fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Directories no backup may be written into, exactly: the root, the
/// system's own trees, and the parents of mount points (a destination
/// there writes to the root filesystem while the disk is not mounted).
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/include",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/libx32",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/lib",
    "/usr/local/sbin",
    "/usr/sbin",
    "/usr/share",
    "/usr/src",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/lock",
    "/var/log",
    "/var/mail",
    "/var/run",
    "/var/spool",
    "/var/tmp",
];

/// Trees where no backup may be written at any depth: kernel file
/// systems, and the system's programs, libraries and configuration.
const SYSTEM_TREES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/etc",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/libx32",
];

/// The system directories, resolved once per load (on merged-/usr systems
/// `/bin` is `/usr/bin`, and so is anything linked to it).
pub struct SystemDirs {
    exact: Vec<(&'static str, Place)>,
    trees: Vec<(&'static str, Place)>,
}

impl SystemDirs {
    /// Resolve the lists on this machine.
    pub fn resolve() -> SystemDirs {
        let resolve = |dirs: &[&'static str]| {
            dirs.iter()
                .map(|d| (*d, Place::resolve(Path::new(d))))
                .collect()
        };
        SystemDirs {
            exact: resolve(SYSTEM_DIRS),
            trees: resolve(SYSTEM_TREES),
        }
    }

    /// The system directory `place` is, or lies in, if any, by its real
    /// path.
    pub fn containing(&self, place: &Place) -> Option<System> {
        if let Some((_, dir)) = self.exact.iter().find(|(_, dir)| place.is_same(dir)) {
            return Some(System::Is(dir.real.clone()));
        }
        self.trees
            .iter()
            .find(|(_, dir)| place.is_within(dir))
            .map(|(_, dir)| System::Inside(dir.real.clone()))
    }
}

/// How a path meets a system directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum System {
    /// It is this system directory.
    Is(PathBuf),
    /// It lies inside this one.
    Inside(PathBuf),
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            System::Is(dir) => write!(f, "the system directory {}", dir.display()),
            System::Inside(dir) => write!(f, "inside the system directory {}", dir.display()),
        }
    }
}

/// One job as the cross-job checks see it.
pub struct Placed<'a> {
    /// The job's name.
    pub name: &'a str,
    /// Its job file.
    pub file: &'a Path,
    /// Its source, as written (resolved against the job file's directory).
    pub source: &'a Path,
    /// Its destination, likewise.
    pub destination: &'a Path,
    /// Where the source really is.
    pub source_place: &'a Place,
    /// Where the destination really is.
    pub destination_place: &'a Place,
}

/// A problem between two jobs, reported on one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    /// The job (index into the slice given) the error belongs to.
    pub job: usize,
    /// `/source` or `/destination`: the value concerned.
    pub pointer: &'static str,
    /// What is wrong, naming the other job and its file.
    pub message: String,
}

/// Which of a job's two paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Source,
    Destination,
}

/// Every destination shared by two jobs, destination inside another job's
/// source or destination, and source inside another job's destination,
/// naming the other job and its file. A shared destination is reported on
/// the later job in `jobs` (the first keeps it, as with names), and that
/// job then takes no part in the other checks; the others are reported on
/// the job whose value lies inside. Indexed by directory identity, so
/// 1,000 jobs cost a few look-ups per path component each, not a million
/// comparisons.
pub fn clashes(jobs: &[Placed<'_>]) -> Vec<Clash> {
    let mut out = Vec::new();
    // Shared destinations first.
    let mut owner: HashMap<Id, Vec<usize>> = HashMap::new();
    let mut shared = vec![false; jobs.len()];
    for (j, job) in jobs.iter().enumerate() {
        let place = job.destination_place;
        let bucket = owner.entry(place.anchor()).or_default();
        match bucket
            .iter()
            .find(|&&k| place.is_same(jobs[k].destination_place))
        {
            Some(&k) => {
                shared[j] = true;
                out.push(Clash {
                    job: j,
                    pointer: "/destination",
                    message: format!(
                        "destination {}{} is also the destination of {}: each job needs a \
                         destination of its own",
                        job.destination.display(),
                        place.spelled(job.destination),
                        jobs[k].named()
                    ),
                });
            }
            None => bucket.push(j),
        }
    }
    // Then containment, among the jobs left.
    let mut anchors: HashMap<Id, Vec<(usize, Role)>> = HashMap::new();
    for (k, job) in jobs.iter().enumerate().filter(|(k, _)| !shared[*k]) {
        anchors
            .entry(job.source_place.anchor())
            .or_default()
            .push((k, Role::Source));
        anchors
            .entry(job.destination_place.anchor())
            .or_default()
            .push((k, Role::Destination));
    }
    for (j, job) in jobs.iter().enumerate().filter(|(j, _)| !shared[*j]) {
        for (role, place, path) in [
            (Role::Source, job.source_place, job.source),
            (Role::Destination, job.destination_place, job.destination),
        ] {
            let mut found: Vec<(usize, Role)> = Vec::new();
            for (i, id) in place.chain.iter().enumerate() {
                for &(k, other_role) in anchors.get(id).into_iter().flatten() {
                    let other = jobs[k].place(other_role);
                    if k != j
                        && !found.contains(&(k, other_role))
                        && place.names_below(i).starts_with(&other.missing)
                    {
                        found.push((k, other_role));
                    }
                }
            }
            found.sort();
            for (k, other_role) in found {
                let named = jobs[k].named();
                let shown = format!("{}{}", path.display(), place.spelled(path));
                let message = match (role, other_role) {
                    // Two sources may overlap: two jobs backing up one tree.
                    (Role::Source, Role::Source) => continue,
                    (Role::Destination, Role::Destination) => format!(
                        "destination {shown} is inside the destination of {named}: each job \
                         needs a destination of its own, outside every other's"
                    ),
                    (Role::Destination, Role::Source) => format!(
                        "destination {shown} is inside the source of {named}, which would \
                         back this backup up"
                    ),
                    (Role::Source, Role::Destination) => format!(
                        "source {shown} is inside the destination of {named}: a backup must \
                         not back up a backup that another job changes"
                    ),
                };
                out.push(Clash {
                    job: j,
                    pointer: match role {
                        Role::Source => "/source",
                        Role::Destination => "/destination",
                    },
                    message,
                });
            }
        }
    }
    out
}

impl Placed<'_> {
    fn place(&self, role: Role) -> &Place {
        match role {
            Role::Source => self.source_place,
            Role::Destination => self.destination_place,
        }
    }

    /// `job "a" (FILE)`, for messages.
    fn named(&self) -> String {
        format!("job {:?} ({})", self.name, self.file.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn spellings_of_one_directory_resolve_alike() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink(root.join("a"), root.join("link")).unwrap();
        symlink("../a/b", root.join("a/up")).unwrap();
        let real = Place::resolve(&root.join("a/b/new/x"));
        assert!(!real.exists());
        assert_eq!(real.existing(), root.join("a/b"));
        for spelling in ["link/b/new/x", "a/up/new/x", "link/up/new/x"] {
            let place = Place::resolve(&root.join(spelling));
            assert_eq!(place.real, root.join("a/b/new/x"), "{spelling}");
            assert!(place.is_same(&real), "{spelling}");
        }
        let above = Place::resolve(&root.join("link/b/new"));
        assert!(real.is_within(&above));
        assert!(!above.is_within(&real));
        let sibling = Place::resolve(&root.join("a/b/newer"));
        assert!(!real.is_within(&sibling) && !sibling.is_within(&real));
    }

    #[test]
    fn a_symlink_loop_resolves_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        symlink(root.join("l2"), root.join("l1")).unwrap();
        symlink(root.join("l1"), root.join("l2")).unwrap();
        let place = Place::resolve(&root.join("l1/x"));
        assert!(!place.exists());
    }

    #[test]
    fn system_directories_are_found_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        symlink("/usr/bin", root.join("bin")).unwrap();
        let system = SystemDirs::resolve();
        let via_link = Place::resolve(&root.join("bin"));
        assert!(system.containing(&via_link).is_some());
        assert_eq!(
            system.containing(&Place::resolve(Path::new("/proc/x/y"))),
            Some(System::Inside("/proc".into()))
        );
        assert_eq!(
            system.containing(&Place::resolve(Path::new("/var/lib"))),
            Some(System::Is("/var/lib".into()))
        );
        assert_eq!(
            system.containing(&Place::resolve(Path::new("/var/lib/strata/backup"))),
            None
        );
        assert_eq!(system.containing(&Place::resolve(&root.join("x"))), None);
    }
}
