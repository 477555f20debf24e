//! `staves.toml`: parsing, validation and serialization.

mod model;
mod stub;

pub use model::{ImageConfig, ImageSpec, Locale, PackageConfig, Repository};
pub use stub::{Diagnostic, Severity};
