//! `staves.toml`: parsing, validation and serialization.

mod atom;
mod builder;
mod diagnostic;
mod error;
mod model;
mod parse;
mod validate;
mod write;

pub use atom::{Atom, AtomError, Operator};
pub(crate) use atom::{is_repo_name, is_use_flag_name};
pub use builder::ImageSpecBuilder;
pub(crate) use diagnostic::LineIndex;
pub use diagnostic::{Diagnostic, Severity, render_diagnostics};
pub use error::SpecError;
pub use model::{ImageConfig, ImageSpec, Locale, PackageConfig, Repository};

use std::path::{Path, PathBuf};

impl ImageSpec {
    /// Parse TOML text (structure, types, syntax). Semantic rules are checked by [`ImageSpec::validate`].
    pub fn from_toml_str(text: &str) -> Result<ImageSpec, SpecError> {
        parse::parse(text, None)
    }

    /// Like [`ImageSpec::from_toml_str`]; `path` is only used in diagnostics.
    pub fn from_toml_str_at(text: &str, path: Option<&Path>) -> Result<ImageSpec, SpecError> {
        parse::parse(text, path)
    }

    /// Read and parse a file. Invalid UTF-8 is one diagnostic with its position.
    pub fn from_path(path: &Path) -> Result<ImageSpec, SpecError> {
        let bytes = read(path)?;
        let text = parse::decode(&bytes, Some(path))?;
        parse::parse(text, Some(path))
    }

    /// Parse and validate a file: `Err(SpecError::Invalid)` if any diagnostic is an error (warnings alone are fine).
    pub fn load(path: &Path) -> Result<ImageSpec, SpecError> {
        Self::from_path(path)?.checked()
    }

    /// Parse and validate text: `Err(SpecError::Invalid)` if any diagnostic is an error.
    pub fn load_str(text: &str, path: Option<&Path>) -> Result<ImageSpec, SpecError> {
        Self::from_toml_str_at(text, path)?.checked()
    }

    /// Parse as much as possible and validate: every diagnostic, parse and semantic, in file order.
    ///
    /// Unlike [`ImageSpec::from_toml_str`] this does not stop at structural problems: settings that cannot be
    /// parsed are left out of the returned spec (which is `None` only when the text is not TOML at all).
    pub fn check_str(text: &str, path: Option<&Path>) -> (Vec<Diagnostic>, Option<ImageSpec>) {
        check_text(text, path)
    }

    fn checked(self) -> Result<ImageSpec, SpecError> {
        let diagnostics = self.validate();
        if diagnostics.iter().any(Diagnostic::is_error) {
            Err(SpecError::Invalid {
                path: self.source.0.path.clone(),
                diagnostics,
            })
        } else {
            Ok(self)
        }
    }

    /// Check every rule; return all errors and warnings, in file order when the spec came from text.
    pub fn validate(&self) -> Vec<Diagnostic> {
        validate::validate(self)
    }

    /// Start building a spec programmatically.
    pub fn builder(name: impl Into<String>) -> ImageSpecBuilder {
        ImageSpecBuilder::new(name)
    }

    /// Write the spec as TOML in the original's style. Parsing the result gives an equal spec.
    pub fn to_toml_string(&self) -> String {
        write::to_toml(self)
    }

    /// The file this spec was read from, if any.
    pub fn source_path(&self) -> Option<&Path> {
        self.source.0.path.as_deref()
    }

    /// The text this spec was parsed from, if it came from text (not for specs built in code).
    ///
    /// Parsing it again with the same path gives an equal spec with the same diagnostic positions.
    pub fn source_text(&self) -> Option<&str> {
        self.source.0.from_text.then_some(&*self.source.0.text)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SpecError> {
    std::fs::read(path).map_err(|error| {
        let mut d = Diagnostic::error("", format!("cannot read {}: {error}", path.display()));
        d.path = Some(path.to_path_buf());
        SpecError::Read {
            path: path.to_path_buf(),
            error,
            diagnostics: vec![d],
        }
    })
}

fn check_text(text: &str, path: Option<&Path>) -> (Vec<Diagnostic>, Option<ImageSpec>) {
    match parse::parse_lenient(text, path) {
        Err(diagnostics) => (diagnostics, None),
        Ok((spec, mut diagnostics)) => {
            diagnostics.extend(spec.validate());
            diagnostics
                .sort_by_key(|d| (d.line.unwrap_or(usize::MAX), d.column.unwrap_or(usize::MAX)));
            (diagnostics, Some(spec))
        }
    }
}

/// The outcome of checking one spec file: every diagnostic, plus the text for rendering them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SpecReport {
    /// The file checked.
    pub path: PathBuf,
    /// The file's text (lossily decoded if it was not UTF-8).
    pub source: String,
    /// Parse diagnostics if it did not parse, else every validation diagnostic.
    pub diagnostics: Vec<Diagnostic>,
    /// The spec, when it parsed.
    pub spec: Option<ImageSpec>,
}

impl SpecReport {
    /// Read, parse and validate `path`. Only an unreadable file is an `Err`.
    pub fn check(path: &Path) -> Result<SpecReport, SpecError> {
        let bytes = read(path)?;
        let source = String::from_utf8_lossy(&bytes).into_owned();
        let (diagnostics, spec) = match parse::decode(&bytes, Some(path)) {
            Err(e) => (e.diagnostics().to_vec(), None),
            Ok(text) => check_text(text, Some(path)),
        };
        Ok(SpecReport {
            path: path.to_path_buf(),
            source,
            diagnostics,
            spec,
        })
    }

    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Every diagnostic rustc-style, then a summary line.
    pub fn render_text(&self) -> String {
        render_diagnostics(&self.diagnostics, Some(&self.source))
    }

    /// The diagnostics as a pretty JSON array of objects (`severity`, `line`, `column`, `message`, `path`, `key`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.diagnostics).unwrap_or_else(|_| "[]".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = include_str!("../../../tests/data/spec/original.toml");

    #[test]
    fn original_example_parses_and_round_trips() {
        let spec = ImageSpec::from_toml_str(ORIGINAL).unwrap();
        assert_eq!(spec.version, "latest");
        assert_eq!(spec.env["CFLAGS"], "${CFLAGS} -O3");
        assert_eq!(spec.named_envs["nocache"]["FEATURES"], "-buildpkg");
        assert_eq!(spec.package_configs.len(), 2);
        let written = spec.to_toml_string();
        println!("{written}");
        let again = ImageSpec::from_toml_str(&written).unwrap();
        assert_eq!(spec, again);
        let diags = spec.validate();
        println!("{diags:#?}");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].severity, Severity::Warning);
        assert_eq!((diags[0].line, diags[0].column), (Some(12), Some(2)));
    }
}
