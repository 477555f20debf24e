//! The error type of the `lock` area.

use super::check::LockChange;
use crate::spec::Diagnostic;
use std::path::PathBuf;
use std::sync::Arc;

/// A `staves.lock` could not be read, parsed, honoured or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The lock is not valid TOML, or an entry has the wrong shape (an atom that is not
    /// `=category/package-version::repository`, a missing field).
    #[error("{}", summary("cannot parse", path.as_deref(), diagnostics))]
    Parse {
        /// Where the text came from.
        path: Option<PathBuf>,
        /// Every problem found, with positions.
        diagnostics: Vec<Diagnostic>,
        /// The text the diagnostics point into.
        text: Option<Arc<str>>,
    },
    /// The lock was written by a newer Staves, in a format this one does not know.
    #[error("{}", summary("cannot read", path.as_deref(), diagnostics))]
    Newer {
        /// Where the text came from.
        path: Option<PathBuf>,
        /// The format version the file declares.
        version: i64,
        /// One diagnostic at the `version` field.
        diagnostics: Vec<Diagnostic>,
        /// The text the diagnostics point into.
        text: Option<Arc<str>>,
    },
    /// Entries of the lock contradict the spec it claims to be for (the lock was edited by hand).
    #[error("{}", summary("inconsistent", path.as_deref(), diagnostics))]
    Contradicts {
        /// The lock file.
        path: Option<PathBuf>,
        /// One diagnostic per contradicting entry, at the entry.
        diagnostics: Vec<Diagnostic>,
        /// The text the diagnostics point into.
        text: Option<Arc<str>>,
    },
    /// `--locked` (or `--frozen`) was given but there is no lock next to the spec.
    #[error(
        "--locked: there is no lock file {}: run `staves lock` and commit the file, or build without --locked",
        path.display()
    )]
    NoLock {
        /// Where the lock was expected.
        path: PathBuf,
    },
    /// `--locked` (or `--frozen`) was given but the lock no longer matches the spec or the resolution.
    #[error(
        "--locked: the lock {} is out of date: {reason}{}\n  help: run `staves lock` (or build without --locked) and commit the new lock",
        path.display(),
        change_lines(changes)
    )]
    Stale {
        /// The lock file.
        path: PathBuf,
        /// What is out of date.
        reason: String,
        /// The entries that would change, when a resolution was made.
        changes: Vec<LockChange>,
    },
    /// Locked versions that the portage snapshot (or a repository) no longer has. Nothing was built or tagged.
    #[error(
        "the lock pins {} version(s) that the portage snapshot{} does not have:{}\n  help: run `staves lock` to resolve against this snapshot, or build with an older --portage image{}",
        missing.len(),
        portage_image.as_deref().map(|i| format!(" {i}")).unwrap_or_default(),
        missing.iter().map(|m| format!("\n  - {m}")).collect::<String>(),
        locked_image.as_deref().map(|i| format!(" (the lock was made with {i})")).unwrap_or_default()
    )]
    MissingVersions {
        /// Each missing pin, `=category/package-version::repository`.
        missing: Vec<String>,
        /// The snapshot image the build used, when known.
        portage_image: Option<String>,
        /// The snapshot image ID the lock was made with.
        locked_image: Option<String>,
    },
    /// The resolution step's output could not be read.
    #[error("reading Portage's resolution failed: {message}")]
    Resolution {
        /// What was wrong.
        message: String,
    },
    /// `--frozen` forbids syncing, but the spec has repositories that the builder does not hold at the locked
    /// commit.
    #[error(
        "--frozen: repository {name} {problem}; --frozen does not sync repositories: build without --frozen (with --locked) to sync it"
    )]
    Frozen {
        /// The repository.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The lock file could not be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
}

/// A headline, then one line per error diagnostic with its position.
fn summary(what: &str, path: Option<&std::path::Path>, diagnostics: &[Diagnostic]) -> String {
    let file = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| super::LOCK_FILE_NAME.to_owned());
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
    let mut out = format!("{what} {file}: {} error(s)", errors.len());
    for d in errors {
        match (d.line, d.column) {
            (Some(l), Some(c)) => out.push_str(&format!("\n  {file}:{l}:{c}: {}", d.message)),
            _ => out.push_str(&format!("\n  {file}: {}", d.message)),
        }
    }
    out
}

fn change_lines(changes: &[LockChange]) -> String {
    changes.iter().map(|c| format!("\n  {c}")).collect()
}

impl LockError {
    /// The process exit code the `staves` CLI uses: `1` for a lock that is invalid, out of date or missing (like an
    /// invalid spec), `4` when the snapshot cannot give the locked versions (the build cannot proceed), `5` for
    /// I/O.
    pub fn exit_code(&self) -> u8 {
        match self {
            LockError::Read { .. } | LockError::Write { .. } => 5,
            LockError::MissingVersions { .. }
            | LockError::Resolution { .. }
            | LockError::Frozen { .. } => 4,
            _ => 1,
        }
    }

    /// Every positioned diagnostic this error carries (none for errors that are not about the file's text).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            LockError::Parse { diagnostics, .. }
            | LockError::Newer { diagnostics, .. }
            | LockError::Contradicts { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }

    /// The error rustc-style: each diagnostic with `path:line:col`, the line and a caret, then a summary line; for
    /// errors without diagnostics, `error: ` and the message.
    pub fn render(&self) -> String {
        let text = match self {
            LockError::Parse { text, .. }
            | LockError::Newer { text, .. }
            | LockError::Contradicts { text, .. } => text.as_deref(),
            _ => None,
        };
        let diagnostics = self.diagnostics();
        if diagnostics.is_empty() {
            return format!("error: {self}\n");
        }
        let mut out = String::new();
        for d in diagnostics {
            out.push_str(&d.render(text));
            out.push('\n');
        }
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        out.push_str(&format!(
            "{errors} error{}\n",
            if errors == 1 { "" } else { "s" }
        ));
        out
    }
}
