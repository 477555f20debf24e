//! Connecting to the Docker engine, shared by the image writer (`docker` output) and the Docker builder.

use bollard::Docker;

/// Errors talking to the Docker engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine could not be reached at all.
    #[error(
        "cannot reach the Docker engine at {host}: {source}\n  \
         help: start the Docker daemon, or point DOCKER_HOST (or --docker-host) at a running engine"
    )]
    Connect {
        /// The address that was tried.
        host: String,
        /// The underlying error.
        #[source]
        source: bollard::errors::Error,
    },
    /// A request to the engine failed.
    #[error("Docker engine request failed while {action}: {source}")]
    Request {
        /// What Staves was doing.
        action: String,
        /// The underlying error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine address cannot be used (`DOCKER_HOST`, `--docker-host`, or the TLS files).
    #[error(
        "cannot use the Docker engine address {host}: {reason}\n  \
         help: DOCKER_HOST (or --docker-host) takes unix:///PATH or tcp://HOST:PORT; with DOCKER_TLS_VERIFY=1, \
         DOCKER_CERT_PATH holds ca.pem, cert.pem and key.pem"
    )]
    InvalidAddress {
        /// The address given.
        host: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS handshake with a remote engine failed.
    #[error("TLS with the Docker engine at {host} failed: {reason}")]
    Tls {
        /// The address.
        host: String,
        /// What went wrong, in words.
        reason: String,
    },
    /// An image is missing locally and could not be pulled.
    #[error(
        "image {image} is not available locally and could not be pulled: {reason}\n  \
         help: pull it with `docker pull {image}` on a machine with registry access, \
         or load it with `docker load`, then run again"
    )]
    ImageUnavailable {
        /// The image reference.
        image: String,
        /// Why the pull failed.
        reason: String,
    },
}

impl EngineError {
    /// Wrap a bollard error with what was being done.
    pub(crate) fn request(action: impl Into<String>, source: bollard::errors::Error) -> Self {
        EngineError::Request {
            action: action.into(),
            source,
        }
    }
}

/// The default engine address when neither `--docker-host` nor `DOCKER_HOST` is set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The engine address Staves uses: `host` when given, else `DOCKER_HOST`, else the local socket.
pub(crate) fn engine_address(host: Option<&str>) -> String {
    host.map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned())
}

/// Connect to the engine and negotiate the API version (the engine here speaks 1.41).
///
/// `host` overrides `DOCKER_HOST`; both accept `unix://`, `tcp://` and `http://` addresses.
pub(crate) async fn connect(host: Option<&str>) -> Result<Docker, EngineError> {
    let address = engine_address(host);
    let connect_err =
        |source: bollard::errors::Error| match crate::engine_address::tls_failure(&source) {
            Some(reason) => EngineError::Tls {
                host: address.clone(),
                reason,
            },
            None => EngineError::Connect {
                host: address.clone(),
                source,
            },
        };
    let docker = crate::engine_address::client(&address)?.map_err(connect_err)?;
    let docker = docker.negotiate_version().await.map_err(connect_err)?;
    docker.ping().await.map_err(connect_err)?;
    Ok(docker)
}
