//! The crate's error type: one enum that folds in each area's error.

/// Everything that can go wrong in Staves.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Docker engine failed or could not be reached.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// Writing an image failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
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
            Error::Engine(_) => 3,
            Error::Image(_) | Error::Io { .. } => 5,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
