//! The error type of the `spec` area.

use super::diagnostic::{Diagnostic, render_all};
use super::model::ImageSpec;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A `staves.toml` could not be read, parsed or validated.
///
/// Every variant carries its diagnostics, and [`SpecError::render`] prints them rustc-style against the text they
/// point into, which the error keeps: there is no need to pass the source again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
        /// One diagnostic describing the failure (no line/column).
        diagnostics: Vec<Diagnostic>,
    },
    /// The text is not valid TOML, or its structure/types do not match a spec.
    #[error("{}", summary("cannot parse", path.as_deref(), diagnostics))]
    Parse {
        /// Where the text came from.
        path: Option<PathBuf>,
        /// Every problem found, with positions: the structural ones, and the rules broken by the settings that did
        /// parse.
        diagnostics: Vec<Diagnostic>,
        /// The text the diagnostics point into (`None` when it was never read).
        text: Option<Arc<str>>,
        /// What could be parsed, with the unusable settings left out (`None` when the text is not TOML at all).
        spec: Option<Box<ImageSpec>>,
    },
    /// The spec parsed but breaks validation rules.
    #[error("{}", summary("invalid", path.as_deref(), diagnostics))]
    Invalid {
        /// Where the text came from.
        path: Option<PathBuf>,
        /// Every diagnostic, errors and warnings.
        diagnostics: Vec<Diagnostic>,
        /// The text the diagnostics point into.
        text: Option<Arc<str>>,
        /// The spec as parsed.
        spec: Option<Box<ImageSpec>>,
    },
    /// A value given outside a spec file (a command-line override, an image reference) breaks the rule the same
    /// setting follows in a spec.
    #[error("{message}")]
    InvalidValue {
        /// What the value is, e.g. `image tag`.
        what: String,
        /// The value given.
        value: String,
        /// What is wrong with it and what to do.
        message: String,
    },
}

/// The one-paragraph form of a list of diagnostics: a headline, then one line per error with its position.
pub(crate) fn summary(what: &str, path: Option<&Path>, diagnostics: &[Diagnostic]) -> String {
    let file = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "spec".to_owned());
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
    let mut out = format!("{what} {file}: {} error(s)", errors.len());
    for d in errors {
        let file = d
            .path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| file.clone());
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
    /// Every diagnostic this error carries (for `Read`, one diagnostic without a position; for `InvalidValue`,
    /// none).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SpecError::Read { diagnostics, .. }
            | SpecError::Parse { diagnostics, .. }
            | SpecError::Invalid { diagnostics, .. } => diagnostics,
            SpecError::InvalidValue { .. } => &[],
        }
    }

    /// The file the spec came from, if known.
    pub fn path(&self) -> Option<&Path> {
        match self {
            SpecError::Read { path, .. } => Some(path),
            SpecError::Parse { path, .. } | SpecError::Invalid { path, .. } => path.as_deref(),
            SpecError::InvalidValue { .. } => None,
        }
    }

    /// What could be parsed: for `Invalid` the whole spec, for `Parse` the spec with the settings that did not
    /// parse left out (when the text was TOML at all).
    pub fn spec(&self) -> Option<&ImageSpec> {
        match self {
            SpecError::Parse { spec, .. } | SpecError::Invalid { spec, .. } => spec.as_deref(),
            _ => None,
        }
    }

    /// Take the spec out of the error (see [`SpecError::spec`]).
    pub fn into_spec(self) -> Option<ImageSpec> {
        match self {
            SpecError::Parse { spec, .. } | SpecError::Invalid { spec, .. } => spec.map(|s| *s),
            _ => None,
        }
    }

    /// Every diagnostic rustc-style (`error: …`, ` --> path:line:col`, the line and a caret), then a summary line.
    ///
    /// Linear in the number of diagnostics: the text's line index is built once.
    pub fn render(&self) -> String {
        let text = match self {
            SpecError::Parse { text, .. } | SpecError::Invalid { text, .. } => text.as_deref(),
            _ => None,
        };
        match self {
            SpecError::InvalidValue { message, .. } => format!("error: {message}\n"),
            _ => render_all(self.diagnostics(), text),
        }
    }
}
