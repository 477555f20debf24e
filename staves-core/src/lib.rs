//! Staves builds minimal container images from a declarative `staves.toml` with Gentoo's Portage.

mod engine;
mod error;
mod spec;

pub use engine::{DEFAULT_DOCKER_HOST, EngineError};
pub use error::{Error, Result};
pub use spec::{
    Atom, AtomError, Diagnostic, ImageConfig, ImageSpec, ImageSpecBuilder, Locale, Operator,
    PackageConfig, Repository, Severity, SpecError, SpecReport, render_diagnostics,
};
