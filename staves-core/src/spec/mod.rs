//! `staves.toml`: parsing, validation and serialization.
//!
//! A spec is loaded one way: [`ImageSpec::load`] for a file, [`ImageSpec::parse`] for text. Both parse, validate
//! and either give a spec with no errors (its warnings in [`ImageSpec::warnings`]) or a [`SpecError`] carrying
//! every diagnostic, which [`SpecError::render`] prints rustc-style.
//!
//! The helpers here check single values the way a spec's settings are checked: package [`Atom`]s,
//! [`check_tag`] for an image tag and [`check_image_reference`] for an image reference given on a command line.

mod atom;
mod builder;
mod diagnostic;
mod error;
mod model;
mod parse;
mod schema;
mod validate;
mod version;
mod write;

pub use atom::{Atom, AtomError, Operator};
pub(crate) use atom::{is_repo_name, is_use_flag_name};
pub use builder::ImageSpecBuilder;
pub(crate) use diagnostic::LineIndex;
pub use diagnostic::{Diagnostic, Severity};
pub use error::SpecError;
pub(crate) use error::summary;
pub use model::{BuildSettings, ImageConfig, ImageSpec, Locale, PackageConfig, Repository};
pub use validate::{binhost_url_problem, check_image_reference, check_tag};
pub use version::{Version, VersionError, split_cpv};

use diagnostic::render_all;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Largest spec accepted, in bytes.
pub const MAX_SPEC_BYTES: u64 = parse::MAX_SPEC_BYTES as u64;

impl ImageSpec {
    /// Read, parse and validate the file at `path`.
    ///
    /// Any kind of path works (a FIFO such as `<(generate)` too); at most [`MAX_SPEC_BYTES`] + 1 bytes are ever
    /// read, so a device or an endless pipe fails with one diagnostic instead of filling memory. Invalid UTF-8 is
    /// one diagnostic with its position. Otherwise as [`ImageSpec::parse`].
    pub fn load(path: impl AsRef<Path>) -> Result<ImageSpec, SpecError> {
        let path = path.as_ref();
        let bytes = read(path)?;
        match parse::decode(&bytes, Some(path)) {
            Ok(text) => Self::parse(text, Some(path)),
            Err(diagnostic) => Err(SpecError::Parse {
                path: Some(path.to_path_buf()),
                diagnostics: vec![*diagnostic],
                text: Some(Arc::from(String::from_utf8_lossy(&bytes))),
                spec: None,
            }),
        }
    }

    /// Parse and validate TOML text; `origin` names the file in diagnostics.
    ///
    /// `Ok` when no diagnostic is an error: the spec's warnings are in [`ImageSpec::warnings`]. Otherwise
    /// [`SpecError::Parse`] (the text is not TOML, or settings have the wrong structure or type) or
    /// [`SpecError::Invalid`] (settings break the rules), each with every diagnostic in file order: parsing goes on
    /// past a setting it cannot use, and the rules are checked on everything else.
    pub fn parse(text: &str, origin: Option<&Path>) -> Result<ImageSpec, SpecError> {
        let path = origin.map(Path::to_path_buf);
        let (spec, mut diagnostics, structural) = match parse::parse_lenient(text, origin) {
            Err(diagnostics) => {
                return Err(SpecError::Parse {
                    path,
                    diagnostics,
                    text: Some(Arc::from(text)),
                    spec: None,
                });
            }
            Ok((spec, diagnostics)) => {
                let structural = !diagnostics.is_empty();
                (spec, diagnostics, structural)
            }
        };
        diagnostics.extend(spec.validate());
        diagnostics.sort_by_key(|d| (d.line.unwrap_or(usize::MAX), d.column.unwrap_or(usize::MAX)));
        let text = Some(Arc::clone(&spec.source.0.text));
        if structural {
            return Err(SpecError::Parse {
                path,
                diagnostics,
                text,
                spec: Some(Box::new(spec)),
            });
        }
        if diagnostics.iter().any(Diagnostic::is_error) {
            return Err(SpecError::Invalid {
                path,
                diagnostics,
                text,
                spec: Some(Box::new(spec)),
            });
        }
        let mut spec = spec;
        Arc::make_mut(&mut spec.source.0).warnings = diagnostics;
        Ok(spec)
    }

    /// The warnings found when the spec was loaded (empty for a spec built in code).
    ///
    /// They describe the spec as loaded; after changing its fields, call [`ImageSpec::validate`] again.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.source.0.warnings
    }

    /// Render `diagnostics` of this spec rustc-style against the text it was loaded from (for a spec built in
    /// code, without source lines), then a summary line. Linear in the number of diagnostics.
    ///
    /// ```
    /// # use staves_core::ImageSpec;
    /// let spec = ImageSpec::parse("name = 'x/y'\npackages = ['a/b', 'a/b']\n", None)?;
    /// let text = spec.render_diagnostics(spec.warnings());
    /// assert!(text.starts_with("warning: package `a/b` is listed twice"));
    /// assert!(text.ends_with("0 errors, 1 warning\n"));
    /// # Ok::<(), staves_core::SpecError>(())
    /// ```
    pub fn render_diagnostics(&self, diagnostics: &[Diagnostic]) -> String {
        let text = &self.source.0.text;
        render_all(diagnostics, (!text.is_empty()).then_some(&**text))
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

    /// The JSON Schema (draft-07) of `staves.toml`, pretty-printed: for editors (taplo / Even Better TOML) and
    /// validators. It checks structure, types and the simple value rules (name, tag, sync types, unknown keys in
    /// nested tables); [`ImageSpec::load`] checks everything.
    pub fn json_schema() -> String {
        schema::json_schema()
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

/// Read at most [`MAX_SPEC_BYTES`] + 1 bytes of `path`: more is one diagnostic, whatever kind of file it is.
fn read(path: &Path) -> Result<Vec<u8>, SpecError> {
    let fail = |error: std::io::Error| {
        let mut d = Diagnostic::error("", format!("cannot read {}: {error}", path.display()));
        d.path = Some(path.to_path_buf());
        SpecError::Read {
            path: path.to_path_buf(),
            error,
            diagnostics: vec![d],
        }
    };
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        let mut d = Diagnostic::error(
            "",
            format!(
                "the file is more than the {} MiB a staves.toml may have: is this the right file?",
                MAX_SPEC_BYTES / 1024 / 1024
            ),
        );
        d.path = Some(path.to_path_buf());
        return Err(SpecError::Parse {
            path: Some(path.to_path_buf()),
            diagnostics: vec![d],
            text: None,
            spec: None,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = include_str!("../../../tests/data/spec/original.toml");

    #[test]
    fn build_table_parses_round_trips_and_is_optional() {
        let text = "name = 'x/y'\npackages = ['a/b']\n\n[build]\nbinhost = ['http://binhost:8080/', 'file:///srv/binpkgs']\n";
        let spec = ImageSpec::parse(text, None).unwrap();
        assert_eq!(
            spec.build.binhost,
            ["http://binhost:8080/", "file:///srv/binpkgs"]
        );
        assert!(spec.warnings().is_empty());
        let written = spec.to_toml_string();
        assert!(
            written.ends_with(
                "\n[build]\nbinhost = ['http://binhost:8080/', 'file:///srv/binpkgs']\n"
            ),
            "{written}"
        );
        assert_eq!(ImageSpec::parse(&written, None).unwrap(), spec);
        let built = ImageSpec::builder("x/y")
            .package("a/b")
            .binhost("http://binhost:8080/")
            .binhost("file:///srv/binpkgs")
            .build();
        assert_eq!(built, spec);
        // Without [build] (or with an empty one) nothing is written and nothing is set.
        let plain = ImageSpec::parse("name = 'x/y'\npackages = ['a/b']\n", None).unwrap();
        assert!(plain.build.is_empty());
        assert!(!plain.to_toml_string().contains("[build]"));
        let empty = ImageSpec::parse("name = 'x/y'\npackages = ['a/b']\n[build]\n", None).unwrap();
        assert_eq!(empty, plain);
        // `[build]` is a settings table, not a package table named `build`.
        let err = ImageSpec::parse(
            "name = 'x/y'\npackages = ['a/b']\n[build]\nuse = ['x']\n",
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown key `use` in `[build]`"),
            "{err}"
        );
        // The build key and the lock's spec hash do not depend on where binaries are fetched from.
        assert_eq!(
            crate::lock::spec_hash(&spec),
            crate::lock::spec_hash(&plain)
        );
        let context = crate::store::KeyContext::new("sha256:b", "sha256:p", "C.UTF-8");
        assert_eq!(
            crate::store::BuildKey::new(&spec, &context),
            crate::store::BuildKey::new(&plain, &context)
        );
    }

    #[test]
    fn original_example_parses_and_round_trips() {
        let spec = ImageSpec::parse(ORIGINAL, None).unwrap();
        assert_eq!(spec.version, "latest");
        assert_eq!(spec.env["CFLAGS"], "${CFLAGS} -O3");
        assert_eq!(spec.named_envs["nocache"]["FEATURES"], "-buildpkg");
        assert_eq!(spec.package_configs.len(), 2);
        let written = spec.to_toml_string();
        println!("{written}");
        let again = ImageSpec::parse(&written, None).unwrap();
        assert_eq!(spec, again);
        let diags = spec.validate();
        println!("{diags:#?}");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].severity, Severity::Warning);
        assert_eq!((diags[0].line, diags[0].column), (Some(12), Some(2)));
        assert_eq!(spec.warnings(), diags);
    }
}
