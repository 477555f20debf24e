//! Staves builds minimal container images from a declarative `staves.toml` with Gentoo's Portage.

mod error;
mod spec;

pub use error::{Error, Result};
pub use spec::{ImageConfig, ImageSpec, Locale, PackageConfig, Repository};
