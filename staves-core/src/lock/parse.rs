//! Lock text → [`Lockfile`], with a positioned diagnostic for every problem.

use super::{LOCK_FORMAT_VERSION, LockError, LockedPackage, LockedRepository, Lockfile};
use crate::spec::{Diagnostic, LineIndex};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

/// Largest lock accepted, in bytes.
const MAX_LOCK_BYTES: usize = 64 * 1024 * 1024;

/// Where a parsed lock came from, for diagnostics about its entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct LockSource {
    pub(crate) path: Option<PathBuf>,
    pub(crate) text: Option<Arc<str>>,
    /// Byte offset of each `[[rootfs]]` entry's `atom` value, in file order.
    pub(crate) rootfs: Vec<usize>,
    /// Byte offset of each `[[builder]]` entry's `atom` value, in file order.
    pub(crate) builder: Vec<usize>,
}

impl LockSource {
    /// A diagnostic at the locked package `package` of `section`, or at no position when the lock was not parsed.
    pub(crate) fn diagnostic_at(
        &self,
        lock: &Lockfile,
        section: &str,
        package: &LockedPackage,
        message: String,
    ) -> Diagnostic {
        let (list, offsets) = match section {
            "rootfs" => (&lock.rootfs, &self.rootfs),
            _ => (&lock.builder, &self.builder),
        };
        let offset = list
            .iter()
            .position(|p| p == package)
            .and_then(|i| offsets.get(i).copied());
        let key = format!("{section}.{}", package.atom());
        self.diagnostic(offset, key, message)
    }

    fn diagnostic(&self, offset: Option<usize>, key: String, message: String) -> Diagnostic {
        let mut d = Diagnostic::error(key, message);
        d.path.clone_from(&self.path);
        if let (Some(text), Some(offset)) = (self.text.as_deref(), offset) {
            let (line, column) = LineIndex::new(text).position(offset);
            d.line = Some(line);
            d.column = Some(column);
        }
        d
    }
}

#[derive(Deserialize)]
struct VersionProbe {
    version: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLock {
    #[allow(dead_code)]
    version: toml::Value,
    spec_hash: Spanned<String>,
    #[serde(default)]
    images: Option<RawImages>,
    #[serde(default)]
    repository: Vec<RawRepository>,
    #[serde(default)]
    rootfs: Vec<RawPackage>,
    #[serde(default)]
    builder: Vec<RawPackage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawImages {
    builder: Option<Spanned<String>>,
    portage: Option<Spanned<String>>,
    portage_timestamp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    name: Spanned<String>,
    commit: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    atom: Spanned<String>,
    slot: Spanned<String>,
    #[serde(default, rename = "use")]
    use_flags: Vec<Spanned<String>>,
}

struct Parser<'t> {
    text: &'t str,
    path: Option<PathBuf>,
    index: LineIndex<'t>,
    diagnostics: Vec<Diagnostic>,
}

impl Parser<'_> {
    fn error(&mut self, key: &str, offset: usize, message: impl Into<String>) {
        let mut d = Diagnostic::error(key, message);
        d.path.clone_from(&self.path);
        let (line, column) = self.index.position(offset);
        d.line = Some(line);
        d.column = Some(column);
        self.diagnostics.push(d);
    }

    fn fail(self, newer: Option<i64>) -> LockError {
        let text = Some(Arc::from(self.text));
        match newer {
            Some(version) => LockError::Newer {
                path: self.path,
                version,
                diagnostics: self.diagnostics,
                text,
            },
            None => LockError::Parse {
                path: self.path,
                diagnostics: self.diagnostics,
                text,
            },
        }
    }

    fn toml_error(mut self, error: &toml::de::Error) -> LockError {
        let offset = error.span().map_or(0, |s| s.start);
        let first = error.message().trim().lines().next().unwrap_or("").trim();
        let message = format!(
            "invalid lock file: {first}; staves.lock is written by `staves lock`: run it again rather than editing the file"
        );
        self.error("", offset, message);
        self.fail(None)
    }
}

/// The text was read but is not UTF-8: one diagnostic at the first bad byte.
pub(crate) fn not_utf8(text: &str, error: std::str::Utf8Error, path: Option<&Path>) -> LockError {
    let good = error.valid_up_to();
    let mut p = Parser {
        text,
        path: path.map(Path::to_path_buf),
        index: LineIndex::new(text),
        diagnostics: Vec::new(),
    };
    // The lossy text has the same bytes up to the first bad one.
    p.error(
        "",
        good,
        "the lock file is not valid UTF-8: run `staves lock` to write it again",
    );
    p.fail(None)
}

pub(crate) fn parse(text: &str, origin: Option<&Path>) -> Result<Lockfile, LockError> {
    let mut p = Parser {
        text,
        path: origin.map(Path::to_path_buf),
        index: LineIndex::new(text),
        diagnostics: Vec::new(),
    };
    if text.len() > MAX_LOCK_BYTES {
        p.error(
            "",
            0,
            format!(
                "the file is {} bytes, more than the {} MiB a staves.lock may have: is this the right file?",
                text.len(),
                MAX_LOCK_BYTES / 1024 / 1024
            ),
        );
        return Err(p.fail(None));
    }
    // The format version first: a newer lock may have fields this Staves does not know.
    let probe: VersionProbe = match toml::from_str(text) {
        Ok(probe) => probe,
        Err(e) => return Err(p.toml_error(&e)),
    };
    let Some(version) = probe.version else {
        p.error(
            "version",
            0,
            "the lock has no `version` field: it was not written by `staves lock`; run `staves lock` to write it",
        );
        return Err(p.fail(None));
    };
    let at = version.span().start;
    match version.get_ref() {
        toml::Value::Integer(v) if *v > LOCK_FORMAT_VERSION => {
            p.error(
                "version",
                at,
                format!(
                    "this lock has format version {v}, written by a newer Staves; this Staves {} reads format {LOCK_FORMAT_VERSION}: \
                     upgrade Staves, or run `staves lock` to write the lock again in this format",
                    env!("CARGO_PKG_VERSION")
                ),
            );
            return Err(p.fail(Some(*v)));
        }
        toml::Value::Integer(v) if *v >= 1 => {}
        other => {
            p.error(
                "version",
                at,
                format!(
                    "`version` is {other}, not a lock format version (an integer from 1): run `staves lock` to write the lock again"
                ),
            );
            return Err(p.fail(None));
        }
    }
    let raw: RawLock = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(p.toml_error(&e)),
    };

    let mut lock = Lockfile::new(raw.spec_hash.get_ref().clone());
    if !is_sha256_digest(&lock.spec_hash) {
        p.error(
            "spec-hash",
            raw.spec_hash.span().start,
            "`spec-hash` is not `sha256:` followed by 64 hex digits: run `staves lock` to write it again",
        );
    }
    if let Some(images) = raw.images {
        for (key, value, slot) in [
            ("images.builder", images.builder, &mut lock.builder_image),
            ("images.portage", images.portage, &mut lock.portage_image),
        ] {
            if let Some(value) = value {
                if !is_sha256_digest(value.get_ref()) {
                    p.error(
                        key,
                        value.span().start,
                        format!("`{key}` is not an image ID (`sha256:` followed by 64 hex digits)"),
                    );
                }
                *slot = Some(value.into_inner());
            }
        }
        lock.portage_timestamp = images.portage_timestamp;
    }
    let mut names = HashSet::new();
    for repo in raw.repository {
        let name = repo.name.get_ref();
        if !crate::spec::is_repo_name(name) {
            p.error(
                "repository.name",
                repo.name.span().start,
                format!("`{name}` is not a repository name (letters, digits, `_` and `-`)"),
            );
        } else if !names.insert(name.clone()) {
            p.error(
                "repository.name",
                repo.name.span().start,
                format!("repository `{name}` is listed twice: keep one entry"),
            );
        }
        let commit = repo.commit.map(|c| {
            if !c.get_ref().bytes().all(|b| b.is_ascii_hexdigit()) || c.get_ref().len() < 7 {
                p.error(
                    "repository.commit",
                    c.span().start,
                    format!("`{}` is not a git commit id (hex digits)", c.get_ref()),
                );
            }
            c.into_inner()
        });
        lock.repositories.push(LockedRepository {
            name: repo.name.into_inner(),
            commit,
        });
    }
    let mut source = LockSource {
        path: p.path.clone(),
        text: Some(Arc::from(text)),
        ..LockSource::default()
    };
    for (section, raw_packages) in [("rootfs", raw.rootfs), ("builder", raw.builder)] {
        let mut seen = HashSet::new();
        for raw_package in raw_packages {
            let at = raw_package.atom.span().start;
            let Some(package) = package(&mut p, section, raw_package) else {
                continue;
            };
            if !seen.insert((package.cp.clone(), package.slot_name().to_owned())) {
                p.error(
                    section,
                    at,
                    format!(
                        "`{}` is locked twice in slot {} of [[{section}]]: keep one entry",
                        package.cp,
                        package.slot_name()
                    ),
                );
            }
            let (list, offsets) = match section {
                "rootfs" => (&mut lock.rootfs, &mut source.rootfs),
                _ => (&mut lock.builder, &mut source.builder),
            };
            list.push(package);
            offsets.push(at);
        }
    }
    if !p.diagnostics.is_empty() {
        return Err(p.fail(None));
    }
    // Keep offsets aligned with the sorted lists.
    for (list, offsets) in [
        (&mut lock.rootfs, &mut source.rootfs),
        (&mut lock.builder, &mut source.builder),
    ] {
        let mut pairs: Vec<(LockedPackage, usize)> =
            list.drain(..).zip(offsets.drain(..)).collect();
        pairs.sort();
        for (package, offset) in pairs {
            list.push(package);
            offsets.push(offset);
        }
    }
    lock.repositories.sort();
    lock.source = Arc::new(source);
    Ok(lock)
}

fn package(p: &mut Parser<'_>, section: &str, raw: RawPackage) -> Option<LockedPackage> {
    let atom_text = raw.atom.get_ref();
    let mut package = match LockedPackage::from_atom(atom_text) {
        Ok(package) => package,
        Err(message) => {
            p.error(
                &format!("{section}.atom"),
                raw.atom.span().start,
                format!("{message}; run `staves lock` to write the lock again"),
            );
            return None;
        }
    };
    let slot = raw.slot.get_ref();
    if crate::spec::Atom::parse(&format!("{}:{slot}", package.cp)).is_err()
        || slot.contains(['*', '='])
        || slot.is_empty()
    {
        p.error(
            &format!("{section}.slot"),
            raw.slot.span().start,
            format!("`{slot}` is not a slot: write `SLOT` or `SLOT/SUBSLOT`, e.g. `0`"),
        );
        return None;
    }
    package.slot = raw.slot.into_inner();
    let mut flags = Vec::new();
    for flag in raw.use_flags {
        if !is_locked_flag(flag.get_ref()) {
            p.error(
                &format!("{section}.use"),
                flag.span().start,
                format!(
                    "`{}` is not a USE flag as Portage prints it: write `flag`, `-flag`, `(flag)` or `(-flag)`",
                    flag.get_ref()
                ),
            );
            return None;
        }
        flags.push(flag.into_inner());
    }
    Some(LockedPackage::new(
        package.cp,
        package.version,
        package.repository,
        package.slot,
        flags,
    ))
}

/// `flag`, `-flag`, `(flag)` or `(-flag)` with a valid flag name.
pub(crate) fn is_locked_flag(flag: &str) -> bool {
    let inner = match flag.strip_prefix('(') {
        Some(rest) => match rest.strip_suffix(')') {
            Some(inner) => inner,
            None => return false,
        },
        None => flag,
    };
    let name = inner.strip_prefix('-').unwrap_or(inner);
    crate::spec::is_use_flag_name(name)
}

fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}
