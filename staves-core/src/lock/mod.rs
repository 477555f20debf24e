//! `staves.lock`: the exact packages a spec resolved to, so that a build next week installs the same versions.
//!
//! A [`Lockfile`] records, for one `staves.toml`:
//! - every package the rootfs gets and every build dependency the builder needs ([`LockedPackage`]: `=cat/pkg-ver`,
//!   repository, slot, the USE flags Portage chose);
//! - the hash of the spec settings that decide the resolution ([`spec_hash`]);
//! - the builder and portage snapshot image IDs and the snapshot's `metadata/timestamp.chk`;
//! - each extra repository with the commit it was synced to.
//!
//! The file is TOML, sorted and written the same way every time ([`Lockfile::to_toml_string`]), so it diffs well
//! and two `staves lock` runs against the same images give the same bytes. [`Lockfile::parse`] reports problems with
//! positions, as spec diagnostics do.
//!
//! A build pins what the lock says by masking every other version of each locked package (`package.mask` entries
//! `<cat/pkg-ver:slot` and `>cat/pkg-ver:slot`, see [`Pins`]) and then checks, with an `emerge --pretend` in the
//! builder, that Portage's resolution equals the lock.
//!
//! ```
//! use staves_core::Lockfile;
//! use staves_core::lock::LockedPackage;
//!
//! let mut lock = Lockfile::new(format!("sha256:{}", "0".repeat(64)));
//! lock.rootfs.push(LockedPackage::new("app-misc/hello", "1", "gentoo", "0", vec!["nls".into()]));
//! let text = lock.to_toml_string();
//! assert!(text.contains("atom = \"=app-misc/hello-1::gentoo\""));
//! assert_eq!(Lockfile::parse(&text, None)?, lock);
//!
//! // Problems carry positions, as spec diagnostics do.
//! let err = Lockfile::parse(&text.replace("=app-misc/hello-1", "app-misc/hello"), None).unwrap_err();
//! let d = &err.diagnostics()[0];
//! assert_eq!((d.line, d.column), (Some(9), Some(8)));
//! # Ok::<(), staves_core::LockError>(())
//! ```

mod check;
mod error;
mod parse;
mod resolve;
mod write;

pub use check::{LockChange, LockChangeKind, Pins, changes};
pub use error::LockError;
pub(crate) use resolve::{PINS_FILE, resolve_script};
pub use resolve::{PretendEntry, Resolution, parse_pretend_line, parse_resolution};

use crate::spec::{Atom, ImageSpec};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The name of the lock file, next to `staves.toml`.
pub const LOCK_FILE_NAME: &str = "staves.lock";

/// The lock file format this Staves writes and the newest it reads.
pub const LOCK_FORMAT_VERSION: i64 = 1;

/// Where the lock of the spec at `spec_path` lives: `staves.lock` in the same directory.
pub fn lock_path_for(spec_path: &Path) -> PathBuf {
    match spec_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(LOCK_FILE_NAME),
        _ => PathBuf::from(LOCK_FILE_NAME),
    }
}

/// One locked package: `=category/package-version::repository`, its slot and USE flags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LockedPackage {
    /// `category/package`, e.g. `app-misc/hello`.
    pub cp: String,
    /// The version with its revision, e.g. `1.2-r1`.
    pub version: String,
    /// The repository the ebuild comes from, e.g. `gentoo`.
    pub repository: String,
    /// The slot, with the sub-slot when it differs (`0`, `3.11`, `2/2.1`).
    pub slot: String,
    /// The USE flags Portage chose, sorted by flag name: `flag` (on), `-flag` (off), `(flag)` / `(-flag)` (forced
    /// or masked by the profile). USE_EXPAND flags are written in their long form (`python_targets_python3_12`).
    #[serde(rename = "use")]
    pub use_flags: Vec<String>,
}

impl LockedPackage {
    /// A package from its parts; the USE flags are sorted and de-duplicated.
    pub fn new(
        cp: impl Into<String>,
        version: impl Into<String>,
        repository: impl Into<String>,
        slot: impl Into<String>,
        use_flags: Vec<String>,
    ) -> Self {
        let mut package = Self {
            cp: cp.into(),
            version: version.into(),
            repository: repository.into(),
            slot: slot.into(),
            use_flags,
        };
        sort_use_flags(&mut package.use_flags);
        package
    }

    /// `category/package-version`.
    pub fn cpv(&self) -> String {
        format!("{}-{}", self.cp, self.version)
    }

    /// The pin as an atom: `=category/package-version::repository`.
    pub fn atom(&self) -> String {
        format!("={}-{}::{}", self.cp, self.version, self.repository)
    }

    /// The slot without its sub-slot.
    pub fn slot_name(&self) -> &str {
        self.slot.split('/').next().unwrap_or(&self.slot)
    }

    /// The flags that are on (`flag` or `(flag)`).
    pub fn enabled_flags(&self) -> impl Iterator<Item = &str> {
        self.use_flags.iter().filter_map(|f| {
            let f = f.trim_start_matches('(').trim_end_matches(')');
            (!f.starts_with('-')).then_some(f)
        })
    }

    /// The state of `flag` in this package: `Some(true)` on, `Some(false)` off, `None` when the package does not
    /// have it. The second value is true when the profile forces or masks it (the spec cannot change it).
    pub fn flag_state(&self, flag: &str) -> Option<(bool, bool)> {
        self.use_flags.iter().find_map(|f| {
            let fixed = f.starts_with('(');
            let bare = f.trim_start_matches('(').trim_end_matches(')');
            let (name, on) = match bare.strip_prefix('-') {
                Some(name) => (name, false),
                None => (bare, true),
            };
            (name == flag).then_some((on, fixed))
        })
    }

    /// Parse `=category/package-version::repository` into the parts of a pin (slot and USE left empty).
    pub(crate) fn from_atom(text: &str) -> Result<Self, String> {
        let atom = Atom::parse(text).map_err(|e| e.to_string())?;
        let shape = "a locked package is written `=category/package-version::repository`";
        if atom.operator() != Some(crate::spec::Operator::Equal) || atom.is_wildcard() {
            return Err(format!(
                "`{text}` is not an exact version: {shape}, e.g. `=app-misc/hello-1::gentoo`"
            ));
        }
        if atom.slot().is_some() || !atom.use_deps().is_empty() {
            return Err(format!(
                "`{text}` has a slot or USE dependency in the atom: {shape}; the slot and USE flags go in `slot` and `use`"
            ));
        }
        let (Some(version), Some(repository)) = (atom.version(), atom.repository()) else {
            return Err(format!("`{text}` names no repository: {shape}"));
        };
        Ok(Self::new(
            atom.cp(),
            version,
            repository,
            String::new(),
            Vec::new(),
        ))
    }
}

/// Sort USE flags by name (ignoring `-` and parentheses), then drop exact duplicates.
fn sort_use_flags(flags: &mut Vec<String>) {
    flags.sort_by(|a, b| {
        let key = |f: &str| -> String {
            f.trim_start_matches('(')
                .trim_start_matches('-')
                .trim_end_matches(')')
                .to_owned()
        };
        key(a).cmp(&key(b)).then_with(|| a.cmp(b))
    });
    flags.dedup();
}

/// An extra repository (`[[repositories]]` of the spec) and the commit it was synced to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LockedRepository {
    /// The repository name, as in the spec.
    pub name: String,
    /// The commit (`git rev-parse HEAD`) after the sync; `None` for repositories that are not git checkouts.
    pub commit: Option<String>,
}

/// A parsed or resolved `staves.lock`. See the [module docs](self).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Lockfile {
    /// [`spec_hash`] of the spec this lock was resolved for.
    pub spec_hash: String,
    /// The builder image ID (`sha256:…`) the resolution ran in.
    pub builder_image: Option<String>,
    /// The portage snapshot image ID (`sha256:…`).
    pub portage_image: Option<String>,
    /// The first line of the snapshot's `metadata/timestamp.chk`, when it has one.
    pub portage_timestamp: Option<String>,
    /// Extra repositories, sorted by name.
    pub repositories: Vec<LockedRepository>,
    /// Packages installed into the rootfs, sorted.
    pub rootfs: Vec<LockedPackage>,
    /// Build dependencies installed into the builder, sorted.
    pub builder: Vec<LockedPackage>,
    /// Where each entry was written, for diagnostics (empty for a lock made in code).
    #[serde(skip)]
    pub(crate) source: Arc<parse::LockSource>,
}

impl PartialEq for Lockfile {
    fn eq(&self, other: &Self) -> bool {
        self.spec_hash == other.spec_hash
            && self.builder_image == other.builder_image
            && self.portage_image == other.portage_image
            && self.portage_timestamp == other.portage_timestamp
            && self.repositories == other.repositories
            && self.rootfs == other.rootfs
            && self.builder == other.builder
    }
}

impl Eq for Lockfile {}

impl Lockfile {
    /// A lock for the spec with hash `spec_hash`, holding nothing yet.
    pub fn new(spec_hash: impl Into<String>) -> Self {
        Self {
            spec_hash: spec_hash.into(),
            ..Self::default()
        }
    }

    /// Read and parse the lock at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Lockfile, LockError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| LockError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                return Err(parse::not_utf8(&text, e.utf8_error(), Some(path)));
            }
        };
        Self::parse(&text, Some(path))
    }

    /// Parse lock text; `origin` names the file in diagnostics.
    ///
    /// Errors carry positioned diagnostics ([`LockError::render`]): TOML syntax, a format version newer than
    /// [`LOCK_FORMAT_VERSION`], an atom that is not `=category/package-version::repository`, a missing or
    /// mistyped field.
    pub fn parse(text: &str, origin: Option<&Path>) -> Result<Lockfile, LockError> {
        parse::parse(text, origin)
    }

    /// The lock as TOML: a generated-file header, then every table sorted. The same lock always gives the same
    /// bytes.
    pub fn to_toml_string(&self) -> String {
        write::to_toml(self)
    }

    /// `sha256:` and the hex digest of the lock's canonical text ([`Lockfile::to_toml_string`], the bytes `staves
    /// lock` writes): what an SBOM names as the lock a build followed.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(self.to_toml_string().as_bytes()))
        )
    }

    /// Sort every list the way the file is written; called before writing and comparing.
    pub fn normalize(&mut self) {
        self.repositories.sort();
        self.repositories.dedup();
        for list in [&mut self.rootfs, &mut self.builder] {
            for package in list.iter_mut() {
                sort_use_flags(&mut package.use_flags);
            }
            list.sort();
            list.dedup();
        }
    }

    /// The file this lock was read from, if any.
    pub fn source_path(&self) -> Option<&Path> {
        self.source.path.as_deref()
    }

    /// True when `self` and `other` lock the same packages and repository commits for the same spec (image IDs
    /// and the snapshot timestamp may differ).
    pub fn same_pins(&self, other: &Lockfile) -> bool {
        self.spec_hash == other.spec_hash
            && self.repositories == other.repositories
            && self.rootfs == other.rootfs
            && self.builder == other.builder
    }

    /// Every locked package, rootfs first, each `(section, package)`.
    pub fn packages(&self) -> impl Iterator<Item = (&'static str, &LockedPackage)> {
        self.rootfs
            .iter()
            .map(|p| ("rootfs", p))
            .chain(self.builder.iter().map(|p| ("builder", p)))
    }

    /// Check the lock against the spec it claims to be for: a diagnostic (at the lock entry) for every locked
    /// package that contradicts the spec: a version, slot or repository that the spec's atom for that package
    /// excludes, or a USE flag the spec sets the other way.
    ///
    /// Only meaningful when the spec hash matches: after a spec change, contradicting pins are simply dropped
    /// (see [`Pins::for_spec`]).
    pub fn contradictions(&self, spec: &ImageSpec) -> Vec<crate::spec::Diagnostic> {
        check::contradictions(self, spec)
    }

    /// Turn `diagnostics` about this lock into a [`LockError::Contradicts`] that renders against its text.
    pub fn contradiction_error(&self, diagnostics: Vec<crate::spec::Diagnostic>) -> LockError {
        LockError::Contradicts {
            path: self.source.path.clone(),
            diagnostics,
            text: self.source.text.clone(),
        }
    }
}

/// The hash of the spec settings that decide what Portage resolves: the packages (plus `virtual/libc`), the
/// package tables, `[env]` and the named environments, and the repositories. `sha256:` and 64 hex digits.
///
/// Settings that only shape the image (`name`, `version`, `command`, `[image]`, `annotations`, the locale,
/// `stdlib`) are left out: changing them does not make a lock stale. Package order does not matter; the order of
/// `[env]` values and package tables does (later settings override earlier ones in Portage's files).
pub fn spec_hash(spec: &ImageSpec) -> String {
    use sha2::{Digest, Sha256};
    #[derive(Serialize)]
    struct Inputs<'a> {
        packages: std::collections::BTreeSet<&'a str>,
        /// Atom, then its `use`, `keywords`, `env` and `license` lists.
        package_configs: Vec<(&'a str, [&'a [String]; 4])>,
        env: Vec<(&'a str, &'a str)>,
        named_envs: Vec<(&'a str, Vec<(&'a str, &'a str)>)>,
        repositories: Vec<(&'a str, &'a str, &'a str)>,
    }
    let mut packages: std::collections::BTreeSet<&str> =
        spec.packages.iter().map(String::as_str).collect();
    packages.insert(crate::portage::LIBC_ATOM);
    let mut repositories: Vec<(&str, &str, &str)> = spec
        .repositories
        .iter()
        .map(|r| (r.name.as_str(), r.sync_type.as_str(), r.uri.as_str()))
        .collect();
    repositories.sort();
    let inputs = Inputs {
        packages,
        package_configs: spec
            .package_configs
            .iter()
            .map(|(atom, c)| {
                let lists = [
                    c.use_flags.as_slice(),
                    c.keywords.as_slice(),
                    c.env.as_slice(),
                    c.license.as_slice(),
                ];
                (atom.as_str(), lists)
            })
            .collect(),
        env: string_pairs(&spec.env),
        named_envs: spec
            .named_envs
            .iter()
            .map(|(name, vars)| (name.as_str(), string_pairs(vars)))
            .collect(),
        repositories,
    };
    // Serializing plain strings, maps and arrays cannot fail.
    let json = serde_json::to_vec(&inputs).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&json)))
}

fn string_pairs(map: &indexmap::IndexMap<String, String>) -> Vec<(&str, &str)> {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
