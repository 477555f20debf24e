//! Staves builds minimal container images from a declarative `staves.toml` with Gentoo's Portage.
//!
//! ```
//! use staves_core::{ImageSpec, Severity};
//!
//! let text = "name = 'staves/bash'\npackages = ['app-shells/bash']\n['app-shells/bash']\nuse = ['-nls']\n";
//! let spec = ImageSpec::load_str(text, None)?;
//! assert_eq!(spec.package_configs["app-shells/bash"].use_flags, ["-nls"]);
//!
//! // Every diagnostic carries a position and says what to do.
//! let (diagnostics, _) = ImageSpec::check_str("name = 'x'\npackages = ['bash']\n", None);
//! assert_eq!(diagnostics[0].severity, Severity::Error);
//! assert_eq!((diagnostics[0].line, diagnostics[0].column), (Some(2), Some(13)));
//! # Ok::<(), staves_core::SpecError>(())
//! ```

mod engine;
mod error;
mod spec;

pub use engine::{DEFAULT_DOCKER_HOST, EngineError};
pub use error::{Error, Result};
pub use spec::{
    Atom, AtomError, Diagnostic, ImageConfig, ImageSpec, ImageSpecBuilder, Locale, Operator,
    PackageConfig, Repository, Severity, SpecError, SpecReport, render_diagnostics,
};
