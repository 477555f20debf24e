//! `staves.toml`: parsing, validation and serialization.

mod model;

pub use model::{ImageConfig, ImageSpec, Locale, PackageConfig, Repository};
