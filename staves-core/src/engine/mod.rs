//! The Docker engine: one owner of its address, shared by the Docker builder and the `docker` output, plus the
//! blocking bridge that lets sync callers run the async core from any thread.

mod address;

/// The label every container and volume of a build carries, with the build's id as value.
pub const BUILD_LABEL: &str = "io.staves.build";
/// The label naming what a resource is for: `builder`, `portage` (the snapshot container), `portage-volume`,
/// `cache` or `export`.
pub(crate) const ROLE_LABEL: &str = "io.staves.role";

use bollard::Docker;
use std::future::Future;

/// Errors talking to the Docker engine.
///
/// Messages are written for people: the engine's own error is reduced to its cause (`connection refused`, `no
/// such file or directory`, the engine's answer), never the HTTP client's wording. The raw client error is still
/// available through [`EngineError::client_error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine could not be reached at all.
    #[error(
        "cannot reach the Docker engine at {host}: {reason}\n  \
         help: start the Docker daemon, or point DOCKER_HOST (or --docker-host) at a running engine"
    )]
    Connect {
        /// The address that was tried.
        host: String,
        /// Why, in plain words (`connection refused`, `no such file or directory`, …).
        reason: String,
        /// The client's error.
        client: Box<bollard::errors::Error>,
    },
    /// A request to the engine failed.
    #[error("the Docker engine failed while {action}: {reason}")]
    Request {
        /// What Staves was doing.
        action: String,
        /// Why, in plain words (the engine's answer, or the connection failure).
        reason: String,
        /// The client's error.
        client: Box<bollard::errors::Error>,
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
    /// A runtime to talk to the engine could not be started.
    #[error("cannot start the async runtime that talks to the Docker engine: {0}")]
    Runtime(std::io::Error),
}

impl EngineError {
    /// Wrap a client error with what was being done.
    pub(crate) fn request(action: impl Into<String>, source: bollard::errors::Error) -> Self {
        EngineError::Request {
            action: action.into(),
            reason: describe(&source),
            client: Box::new(source),
        }
    }

    /// The Docker client's own error, when there is one.
    pub fn client_error(&self) -> Option<&bollard::errors::Error> {
        match self {
            EngineError::Connect { client, .. } | EngineError::Request { client, .. } => {
                Some(client)
            }
            _ => None,
        }
    }
}

/// Whether `err` is the engine answering 404 (no such container, volume or image).
pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether `err` is the engine answering 409 for a removal already under way.
pub(crate) fn is_removal_in_progress(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError { status_code: 409, message }
            if message.contains("already in progress")
    )
}

/// A client error in plain words: the engine's answer, or the I/O cause of a failed connection.
pub(crate) fn describe(err: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match err {
        E::DockerResponseServerError {
            status_code,
            message,
        } => return format!("the engine answered {status_code}: {}", message.trim()),
        E::SocketNotFoundError(path) => return format!("no socket at {path}"),
        E::RequestTimeoutError => return "the engine did not answer in time".to_owned(),
        E::DockerStreamError { error } => return error.clone(),
        _ => {}
    }
    // Walk the cause chain down to the I/O error, if any: hyper wraps it in "client error (Connect)".
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut io = None;
    let mut last = err.to_string();
    while let Some(e) = cause {
        if let Some(found) = e.downcast_ref::<std::io::Error>() {
            io = Some(found);
        }
        last = e.to_string();
        cause = e.source();
    }
    match io {
        Some(io) => io_reason(io),
        None => last,
    }
}

fn io_reason(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::NotFound => "no such file or directory".to_owned(),
        K::ConnectionRefused => "connection refused".to_owned(),
        K::PermissionDenied => {
            "permission denied (is your user allowed to use the Docker socket?)".to_owned()
        }
        K::TimedOut => "the connection timed out".to_owned(),
        K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof => {
            "the engine closed the connection".to_owned()
        }
        _ => {
            // "Connection refused (os error 111)" reads fine once the os error number is dropped.
            let text = io.to_string();
            match text.split_once(" (os error") {
                Some((head, _)) => head.to_lowercase(),
                None => text,
            }
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

/// Where the Docker engine is: the one place its address lives.
///
/// [`DockerBuilder`](crate::DockerBuilder) owns one, and the `docker` output of a build loads into that same
/// engine. An `Engine` holds no connection: each build connects afresh, on whatever runtime runs it, so an
/// `Engine` (and a builder holding one) can be created, moved and dropped anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Engine {
    host: Option<String>,
}

impl Engine {
    /// The engine at `host` (`unix://…`, `tcp://…`, `http://…`); `None` means `DOCKER_HOST`, else
    /// [`DEFAULT_DOCKER_HOST`], looked up when connecting.
    pub fn new(host: Option<String>) -> Self {
        Self {
            host: host.filter(|h| !h.is_empty()),
        }
    }

    /// The address given to [`Engine::new`], if any.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The address a connection goes to now: the given one, else `DOCKER_HOST`, else the local socket.
    pub fn address(&self) -> String {
        engine_address(self.host.as_deref())
    }

    /// Connect and negotiate the API version (the engine here speaks 1.41).
    pub(crate) async fn connect(&self) -> Result<Docker, EngineError> {
        let address = self.address();
        let connect_err = |source: bollard::errors::Error| match address::tls_failure(&source) {
            Some(reason) => EngineError::Tls {
                host: address.clone(),
                reason,
            },
            None => EngineError::Connect {
                host: address.clone(),
                reason: describe(&source),
                client: Box::new(source),
            },
        };
        let docker = address::client(&address)?.map_err(connect_err)?;
        let docker = docker.negotiate_version().await.map_err(connect_err)?;
        docker.ping().await.map_err(connect_err)?;
        Ok(docker)
    }
}

/// Run `future` to completion from sync code, on any thread.
///
/// Outside a Tokio runtime it runs on a private current-thread runtime on this thread. Inside one (a runtime
/// worker, or code under `#[tokio::main]`), where blocking the thread on a runtime would panic, it runs on a
/// private runtime on a scoped helper thread, and this thread waits for it. Never panics because of the caller's
/// context.
pub(crate) fn block_on<F>(future: F) -> Result<F::Output, EngineError>
where
    F: Future + Send,
    F::Output: Send,
{
    fn run<F: Future>(future: F) -> Result<F::Output, EngineError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("staves")
            .build()
            .map_err(EngineError::Runtime)?;
        Ok(runtime.block_on(future))
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return run(future);
    }
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("staves-blocking".into())
            .spawn_scoped(scope, move || run(future))
        {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => Err(EngineError::Runtime(e)),
        }
    })
}

/// The ID of `image` in the engine (`sha256:…`), or `None` when the engine does not have it.
pub(crate) async fn image_id(
    docker: &bollard::Docker,
    image: &str,
) -> Result<Option<String>, EngineError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(inspect.id),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(EngineError::request(format!("inspecting image {image}"), e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn connection_errors_read_as_their_cause() {
        let err = block_on(Engine::new(Some("unix:///nonexistent/docker.sock".into())).connect())
            .unwrap()
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "cannot reach the Docker engine at unix:///nonexistent/docker.sock: no socket at"
            ),
            "{text}"
        );
        assert!(!text.contains("hyper"), "{text}");

        // A socket path that exists but nobody listens on: connection refused, in those words.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let host = format!("unix://{}", path.display());
        let err = block_on(Engine::new(Some(host.clone())).connect())
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string().lines().next().unwrap(),
            format!("cannot reach the Docker engine at {host}: connection refused")
        );
    }

    #[test]
    fn block_on_works_inside_a_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let value = runtime.block_on(async { block_on(async { 7 }).unwrap() });
        assert_eq!(value, 7);
    }
}
