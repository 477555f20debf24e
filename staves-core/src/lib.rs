//! Staves builds minimal container images from a declarative `staves.toml` with Gentoo's Portage.

mod engine;
mod error;
mod image;
mod spec;

pub use engine::{DEFAULT_DOCKER_HOST, EngineError};
pub use error::{Error, Result};
pub use image::{
    Compression, DEFAULT_EPOCH, ImageError, ImageReport, ImageWriter, Output, WrittenOutput,
};
pub use spec::{ImageConfig, ImageSpec, Locale, PackageConfig, Repository};
