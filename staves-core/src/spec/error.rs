//! The error type of the `spec` area.

use super::diagnostic::Diagnostic;
use std::path::PathBuf;

/// A `staves.toml` could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read {}: {error}\n  help: check the path, or pass another one with --config", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
        /// One diagnostic describing the failure (no line/column).
        diagnostics: Vec<Diagnostic>,
    },
    /// The text is not valid TOML, or its structure/types do not match a spec.
    #[error("{}", summary("cannot parse", path.as_ref(), diagnostics))]
    Parse {
        /// Where the text came from.
        path: Option<PathBuf>,
        /// Every structural problem found, with positions.
        diagnostics: Vec<Diagnostic>,
    },
    /// The spec parsed but breaks validation rules.
    #[error("{}", summary("invalid", path.as_ref(), diagnostics))]
    Invalid {
        /// Where the text came from.
        path: Option<PathBuf>,
        /// Every diagnostic, errors and warnings.
        diagnostics: Vec<Diagnostic>,
    },
}

fn summary(what: &str, path: Option<&PathBuf>, diagnostics: &[Diagnostic]) -> String {
    let file = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "spec".to_owned());
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
    let mut out = format!("{what} {file}: {} error(s)", errors.len());
    for d in errors {
        match (d.line, d.column) {
            (Some(l), Some(c)) => out.push_str(&format!("\n  {file}:{l}:{c}: {}", d.message)),
            _ if !d.key.is_empty() => {
                out.push_str(&format!("\n  {file} (at `{}`): {}", d.key, d.message))
            }
            _ => out.push_str(&format!("\n  {file}: {}", d.message)),
        }
    }
    out
}

impl SpecError {
    /// Every diagnostic this error carries (for `Read`, one diagnostic without a position).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SpecError::Read { diagnostics, .. }
            | SpecError::Parse { diagnostics, .. }
            | SpecError::Invalid { diagnostics, .. } => diagnostics,
        }
    }

    /// The file the spec came from, if known.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            SpecError::Read { path, .. } => Some(path),
            SpecError::Parse { path, .. } | SpecError::Invalid { path, .. } => path.as_deref(),
        }
    }
}
