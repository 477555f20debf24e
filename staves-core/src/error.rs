//! The crate's error type: one enum that folds in each area's error.

/// Everything that can go wrong in Staves.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Docker engine failed or could not be reached.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// A spec could not be turned into a build plan.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// A build failed or was interrupted.
    #[error(transparent)]
    Build(#[from] crate::builder::BuildError),
    /// A `staves.toml` could not be read, parsed or validated.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// A `staves.lock` could not be read or honoured.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// Writing an image failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The local image store could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An operation on a build cache volume failed.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// A binary package host could not be used or exported.
    #[error(transparent)]
    Binhost(#[from] crate::binhost::BinhostError),
    /// Pushing to a registry failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// An SBOM could not be written or read.
    #[error(transparent)]
    Sbom(#[from] crate::sbom::SbomError),
    /// Security advisories could not be read.
    #[error(transparent)]
    Advisory(#[from] crate::advisory::AdvisoryError),
    /// A Portage snapshot could not be read.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// An I/O error outside any more specific area.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code the `staves` CLI uses for this error (see its docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spec(_) => 1,
            Error::Engine(_) => 3,
            Error::Plan(_) => 1,
            Error::Build(_) => 4,
            Error::Lock(e) => e.exit_code(),
            Error::Image(crate::image::ImageError::LeftBehind { cause, .. }) => cause.exit_code(),
            Error::Snapshot(crate::snapshot::SnapshotError::Engine(_)) => 3,
            Error::Advisory(crate::advisory::AdvisoryError::Denied { .. }) => 6,
            // Two outputs on one path: the command line asked for something that cannot be done.
            Error::Image(crate::image::ImageError::OutputConflict { .. }) => 2,
            Error::Image(_)
            | Error::Registry(_)
            | Error::Binhost(_)
            | Error::Io { .. }
            | Error::Store(_)
            | Error::Cache(_)
            | Error::Sbom(_)
            | Error::Advisory(_)
            | Error::Snapshot(_) => 5,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
