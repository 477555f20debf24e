//! Comparing a lock with its spec and with a new resolution: the pins that still apply, the entries that changed,
//! and entries that contradict the spec.

use super::resolve::PIN_COMMENT;
use super::{LockedPackage, LockedRepository, Lockfile, spec_hash};
use crate::spec::{Atom, Diagnostic, ImageSpec, Operator, Version};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The pins a build applies: locked packages (every other version of each is masked) and repository commits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Pins {
    /// Pinned packages, rootfs and builder together, sorted, one per package and slot.
    pub packages: Vec<LockedPackage>,
    /// Repository commits to check out after the sync.
    pub repositories: Vec<LockedRepository>,
    /// Locked packages left out because the spec (changed since locking) now excludes them.
    pub dropped: Vec<LockedPackage>,
}

impl Pins {
    /// The pins of `lock` that still apply to `spec`.
    ///
    /// When the spec is the one the lock was made for (same [`spec_hash`]), that is every pin. After a change, a
    /// pin is dropped when a spec atom for that package excludes its version, slot or repository (the spec now asks
    /// for something else); every other pin is kept, and USE changes re-resolve only the flags. Packages that are
    /// new to the resolution are free.
    pub fn for_spec(lock: &Lockfile, spec: &ImageSpec) -> Pins {
        let same_spec = lock.spec_hash == spec_hash(spec);
        let atoms = spec_atoms(spec);
        let mut by_slot: BTreeMap<(String, String), LockedPackage> = BTreeMap::new();
        let mut dropped = Vec::new();
        // Rootfs entries first: when builder and rootfs disagree on a slot's version, the image's version wins.
        for (_, package) in lock.packages() {
            if !same_spec && atoms.iter().any(|atom| excludes(atom, package)) {
                dropped.push(package.clone());
                continue;
            }
            by_slot
                .entry((package.cp.clone(), package.slot_name().to_owned()))
                .or_insert_with(|| package.clone());
        }
        dropped.sort();
        dropped.dedup();
        Pins {
            packages: by_slot.into_values().collect(),
            repositories: lock
                .repositories
                .iter()
                .filter(|r| spec.repositories.iter().any(|s| s.name == r.name))
                .cloned()
                .collect(),
            dropped,
        }
    }

    /// True when nothing is pinned.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty() && self.repositories.is_empty()
    }

    /// The `package.mask` file that holds the pins: for each package, every version below and above the locked
    /// one in its slot is masked (`<cat/pkg-ver:slot` and `>cat/pkg-ver:slot`). A comment before each pair names the
    /// pin, for the resolve step's check that the snapshot still has it.
    pub fn render_package_mask(&self) -> String {
        let mut out = String::from(
            "# Written by Staves from staves.lock: every version but the locked one is masked.\n",
        );
        for p in &self.packages {
            let slot = p.slot_name();
            out.push_str(&format!(
                "{PIN_COMMENT} {cp} {version} {repo}\n<{cp}-{version}:{slot}\n>{cp}-{version}:{slot}\n",
                cp = p.cp,
                version = p.version,
                repo = p.repository,
            ));
        }
        out
    }
}

/// Every atom the spec names: its packages and its package tables.
fn spec_atoms(spec: &ImageSpec) -> Vec<Atom> {
    spec.packages
        .iter()
        .chain(spec.package_configs.keys())
        .filter_map(|a| Atom::parse(a).ok())
        .collect()
}

/// True when `atom` is about `package`'s package and excludes its version, slot or repository.
fn excludes(atom: &Atom, package: &LockedPackage) -> bool {
    atom.cp() == package.cp && !matches(atom, package)
}

/// True when `package` satisfies `atom` (same package assumed): version, slot and repository.
fn matches(atom: &Atom, package: &LockedPackage) -> bool {
    if let Some(repo) = atom.repository() {
        if repo != package.repository {
            return false;
        }
    }
    if let Some(slot) = atom.slot() {
        let slot = slot.trim_end_matches('=');
        if !slot.is_empty() && slot != "*" {
            let wanted_slot = slot.split('/').next().unwrap_or(slot);
            if wanted_slot != package.slot_name() {
                return false;
            }
            if slot.contains('/') && slot != package.slot {
                return false;
            }
        }
    }
    match (atom.operator(), atom.version()) {
        (Some(op), Some(version)) => {
            version_matches(op, atom.is_wildcard(), version, &package.version)
        }
        _ => true,
    }
}

/// Does `have` satisfy `op version` (`*` when `wildcard`)? Versions that do not parse never match.
fn version_matches(op: Operator, wildcard: bool, version: &str, have: &str) -> bool {
    let (Ok(want), Ok(have)) = (Version::parse(version), Version::parse(have)) else {
        return false;
    };
    match op {
        Operator::Equal if wildcard => have.matches_wildcard(version),
        Operator::Equal => have == want,
        Operator::Approximate => have.same_base(&want),
        Operator::Less => have < want,
        Operator::LessOrEqual => have <= want,
        Operator::Greater => have > want,
        Operator::GreaterOrEqual => have >= want,
    }
}

/// How a lock entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LockChangeKind {
    /// A new entry.
    Added,
    /// An entry that is gone.
    Removed,
    /// An entry whose version, repository, USE flags or commit changed.
    Changed,
}

/// One entry that differs between two locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LockChange {
    /// `rootfs`, `builder` or `repository`.
    pub section: String,
    /// What changed: `category/package` (with `:slot` when not `0`), or the repository name.
    pub name: String,
    /// Added, removed or changed.
    pub kind: LockChangeKind,
    /// The entry before (`=cat/pkg-ver::repo` with its USE flags, or the commit).
    pub old: Option<String>,
    /// The entry after.
    pub new: Option<String>,
}

impl fmt::Display for LockChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let none = "";
        match self.kind {
            LockChangeKind::Added => write!(
                f,
                "+ {} {}",
                self.section,
                self.new.as_deref().unwrap_or(none)
            ),
            LockChangeKind::Removed => write!(
                f,
                "- {} {}",
                self.section,
                self.old.as_deref().unwrap_or(none)
            ),
            LockChangeKind::Changed => write!(
                f,
                "~ {} {}: {} -> {}",
                self.section,
                self.name,
                self.old.as_deref().unwrap_or(none),
                self.new.as_deref().unwrap_or(none)
            ),
        }
    }
}

fn describe(package: &LockedPackage) -> String {
    if package.use_flags.is_empty() {
        package.atom()
    } else {
        format!("{} [{}]", package.atom(), package.use_flags.join(" "))
    }
}

/// Every entry that differs between `old` and `new`: packages by section, package and slot; repositories by name.
/// Sorted by section, then name. Image IDs and the snapshot timestamp are not entries.
pub fn changes(old: &Lockfile, new: &Lockfile) -> Vec<LockChange> {
    let mut out = Vec::new();
    for (section, before, after) in [
        ("rootfs", &old.rootfs, &new.rootfs),
        ("builder", &old.builder, &new.builder),
    ] {
        let key = |p: &LockedPackage| {
            if p.slot_name() == "0" {
                p.cp.clone()
            } else {
                format!("{}:{}", p.cp, p.slot_name())
            }
        };
        let before: BTreeMap<String, &LockedPackage> = before.iter().map(|p| (key(p), p)).collect();
        let after: BTreeMap<String, &LockedPackage> = after.iter().map(|p| (key(p), p)).collect();
        let names: std::collections::BTreeSet<&String> =
            before.keys().chain(after.keys()).collect();
        for name in names {
            let (old, new) = (before.get(name), after.get(name));
            let kind = match (old, new) {
                (None, Some(_)) => LockChangeKind::Added,
                (Some(_), None) => LockChangeKind::Removed,
                (Some(a), Some(b)) if a != b => LockChangeKind::Changed,
                _ => continue,
            };
            out.push(LockChange {
                section: section.to_owned(),
                name: name.clone(),
                kind,
                old: old.map(|p| describe(p)),
                new: new.map(|p| describe(p)),
            });
        }
    }
    let before: BTreeMap<&str, &LockedRepository> = old
        .repositories
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    let after: BTreeMap<&str, &LockedRepository> = new
        .repositories
        .iter()
        .map(|r| (r.name.as_str(), r))
        .collect();
    let names: std::collections::BTreeSet<&str> =
        before.keys().chain(after.keys()).copied().collect();
    for name in names {
        let (old, new) = (before.get(name), after.get(name));
        let kind = match (old, new) {
            (None, Some(_)) => LockChangeKind::Added,
            (Some(_), None) => LockChangeKind::Removed,
            (Some(a), Some(b)) if a != b => LockChangeKind::Changed,
            _ => continue,
        };
        let commit = |r: &&LockedRepository| {
            format!(
                "{} {}",
                r.name,
                r.commit.as_deref().unwrap_or("(no commit)")
            )
        };
        out.push(LockChange {
            section: "repository".to_owned(),
            name: name.to_owned(),
            kind,
            old: old.map(commit),
            new: new.map(commit),
        });
    }
    out
}

/// See [`Lockfile::contradictions`].
pub(super) fn contradictions(lock: &Lockfile, spec: &ImageSpec) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let source = &lock.source;
    // Every package the spec installs must be locked in the rootfs, at a version its atom accepts.
    for text in spec
        .packages
        .iter()
        .chain(std::iter::once(&crate::portage::LIBC_ATOM.to_owned()))
    {
        let Ok(atom) = Atom::parse(text) else {
            continue;
        };
        let locked: Vec<&LockedPackage> =
            lock.rootfs.iter().filter(|p| p.cp == atom.cp()).collect();
        if locked.is_empty() {
            let mut d = Diagnostic::error(
                "rootfs",
                format!(
                    "the spec installs `{text}` but the lock has no [[rootfs]] entry for {}: \
                     the lock was edited or is incomplete; run `staves lock` to resolve again",
                    atom.cp()
                ),
            );
            d.path.clone_from(&source.path);
            if source.text.is_some() {
                (d.line, d.column) = (Some(1), Some(1));
            }
            out.push(d);
            continue;
        }
        if !locked.iter().any(|p| matches(&atom, p)) {
            for package in locked {
                out.push(source.diagnostic_at(
                    lock,
                    "rootfs",
                    package,
                    format!(
                        "`{}` does not satisfy the spec's `{text}`: the lock was edited by hand; \
                         run `staves lock` to resolve again",
                        package.atom()
                    ),
                ));
            }
        }
    }
    // USE flags the spec sets must be set that way in every locked package its table applies to.
    for (text, config) in &spec.package_configs {
        let Ok(atom) = Atom::parse(text) else {
            continue;
        };
        for (section, package) in lock.packages() {
            if package.cp != atom.cp() || !matches(&atom, package) {
                continue;
            }
            for flag in &config.use_flags {
                let (name, want) = match flag.strip_prefix('-') {
                    Some(name) => (name, false),
                    None => (flag.as_str(), true),
                };
                if let Some((on, false)) = package.flag_state(name) {
                    if on != want {
                        out.push(source.diagnostic_at(
                            lock,
                            section,
                            package,
                            format!(
                                "`{}` is locked with USE flag `{}{name}`, but the spec's table ['{text}'] sets `{flag}`: \
                                 the lock was edited by hand; run `staves lock` to resolve again",
                                package.atom(),
                                if on { "" } else { "-" },
                            ),
                        ));
                    }
                }
            }
        }
    }
    out.sort_by_key(|d| (d.line, d.column));
    out.dedup();
    out
}
