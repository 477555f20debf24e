//! Pushing images to OCI registries with the distribution API (the `docker://HOST[:PORT]/REPO:TAG` output).
//!
//! - Blobs the registry already has are not uploaded again: each is checked with a `HEAD` first, and when the
//!   same build pushes to several repositories of one registry, the later ones mount the blobs from the first
//!   (cross-repository mount) where the registry supports it.
//! - Layers stream from the layer file the image writer wrote: one `PUT` with the file as its body, no copy in
//!   memory.
//! - Credentials come from docker's and skopeo's files and credential helpers (see [`RegistryOptions::auth_file`]);
//!   token (Bearer) and Basic authentication both work.
//! - TLS trusts the system roots plus Docker's per-registry CA directory `/etc/docker/certs.d/HOST:PORT/*.crt`.
//!   Plain HTTP is used only for `localhost`, `127.0.0.0/8` and `::1` (after HTTPS failed, as docker does) and for
//!   registries named in [`RegistryOptions::insecure_registries`].
//! - An SBOM (or any document) attached to the image as an OCI 1.1 referrer is pushed too: its manifest names the
//!   image as `subject`, and where the registry has no referrers API the referrers tag (`sha256-<hex>`) index is
//!   updated, as the distribution spec says.
//! - Every request has an idle timeout (no byte sent or received for [`RegistryOptions::idle_timeout`]) and a
//!   total deadline ([`RegistryOptions::timeout`], longer for a blob upload in proportion to its size); the answer
//!   of a failed request is read up to 64 KiB only. A push is cancelled by dropping its future (the image writer
//!   does so when the build's [`CancelToken`](crate::CancelToken) fires).

mod auth;
mod http;
mod push;
mod reference;
mod transport;

pub use push::PushReport;
pub(crate) use push::{
    BlobData, BlobToPush, ImageToPush, ManifestToPush, Pusher, ReferrerToPush, Staged,
};
pub use reference::RegistryTarget;

use std::path::PathBuf;
use std::time::Duration;

/// The default of [`RegistryOptions::idle_timeout`]: 60 s, as Portage's `wget -T 60`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default of [`RegistryOptions::timeout`]: 5 minutes per request, plus the upload allowance.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings for pushing to registries; the defaults verify TLS and read credentials from the usual places.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// Verify the registry's TLS certificate (skopeo's `--tls-verify`; default `true`). `false` also lets Staves
    /// fall back to plain HTTP for any registry.
    pub tls_verify: bool,
    /// Registries (`HOST` or `HOST:PORT`) that may be reached over plain HTTP, as in the engine's
    /// `insecure-registries`. `localhost` and `127.0.0.0/8` always may.
    pub insecure_registries: Vec<String>,
    /// A directory of `*.crt` CA certificates that replaces `/etc/docker/certs.d/HOST:PORT` (skopeo's
    /// `--dest-cert-dir`).
    pub cert_dir: Option<PathBuf>,
    /// The credentials file (skopeo's `--authfile`), read instead of `REGISTRY_AUTH_FILE`. Docker's
    /// `config.json` (`DOCKER_CONFIG`, else `~/.docker`) is read after it either way.
    pub auth_file: Option<PathBuf>,
    /// A request that sends and receives no byte for this long fails (default [`DEFAULT_IDLE_TIMEOUT`]; at least
    /// 1 s). In whole seconds when (de)serialized.
    #[serde(with = "seconds")]
    pub idle_timeout: Duration,
    /// The most one request may take, from connecting until its answer is read (default [`DEFAULT_TIMEOUT`]; at
    /// least 1 s). A blob upload gets 4 s more per MiB of the blob (a floor of 256 KiB/s). In whole seconds when
    /// (de)serialized.
    #[serde(with = "seconds")]
    pub timeout: Duration,
}

/// A [`Duration`] as whole seconds.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            tls_verify: true,
            insecure_registries: Vec::new(),
            cert_dir: None,
            auth_file: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl RegistryOptions {
    /// Verify TLS certificates (`true` by default).
    pub fn tls_verify(mut self, verify: bool) -> Self {
        self.tls_verify = verify;
        self
    }

    /// Allow plain HTTP for these registries (`HOST` or `HOST:PORT`).
    pub fn insecure_registries(mut self, registries: Vec<String>) -> Self {
        self.insecure_registries = registries;
        self
    }

    /// Trust the `*.crt` files in `dir` instead of `/etc/docker/certs.d/HOST:PORT`.
    pub fn cert_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cert_dir = dir;
        self
    }

    /// Read credentials from `file` first (instead of `REGISTRY_AUTH_FILE`).
    pub fn auth_file(mut self, file: Option<PathBuf>) -> Self {
        self.auth_file = file;
        self
    }

    /// Fail a request that sends and receives nothing for `timeout` (see [`RegistryOptions::idle_timeout`]).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Fail a request that takes longer than `timeout` (see [`RegistryOptions::timeout`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Errors pushing to a registry. Each names the registry; HTTP failures carry the status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A `docker://` destination could not be parsed.
    #[error(
        "invalid registry destination `{value}`: {reason}\n  \
         help: write it as docker://HOST[:PORT]/REPOSITORY[:TAG], e.g. docker://registry.example.com/team/app:1.0"
    )]
    InvalidReference {
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry could not be reached.
    #[error("cannot reach the registry {registry}: {reason}{hint}")]
    Unreachable {
        /// `HOST[:PORT]`.
        registry: String,
        /// Why, in plain words.
        reason: String,
        /// A `\n  help: …` line, or nothing.
        hint: String,
    },
    /// The TLS handshake with the registry failed.
    #[error(
        "TLS with the registry {registry} failed: {reason}\n  \
         help: if the registry uses a private CA, put it in /etc/docker/certs.d/{registry}/ca.crt (or pass \
         --cert-dir DIR); --tls-verify=false skips the check"
    )]
    Tls {
        /// `HOST[:PORT]`.
        registry: String,
        /// The TLS library's reason.
        reason: String,
    },
    /// The registry refused the credentials (HTTP 401) or the push (HTTP 403).
    #[error(
        "the registry {registry} answered HTTP {status} while {action} ({credentials})\n  \
         help: {help}"
    )]
    Unauthorized {
        /// `HOST[:PORT]`.
        registry: String,
        /// 401 or 403.
        status: u16,
        /// What Staves was doing.
        action: String,
        /// Which credentials were used (their source, never the secret).
        credentials: String,
        /// What to do.
        help: String,
    },
    /// The registry answered with another HTTP error.
    #[error("the registry {registry} answered HTTP {status} while {action}: {message}")]
    Http {
        /// `HOST[:PORT]`.
        registry: String,
        /// The HTTP status.
        status: u16,
        /// What Staves was doing.
        action: String,
        /// The registry's message.
        message: String,
    },
    /// Any other failure of the registry client.
    #[error("pushing to the registry {registry} failed while {action}: {reason}")]
    Client {
        /// `HOST[:PORT]`.
        registry: String,
        /// What Staves was doing.
        action: String,
        /// What went wrong.
        reason: String,
    },
    /// Credentials could not be read.
    #[error("cannot read the credentials for the registry {registry}: {reason}")]
    Credentials {
        /// `HOST[:PORT]`.
        registry: String,
        /// What went wrong, naming the file or helper.
        reason: String,
    },
    /// A CA certificate file could not be used.
    #[error("cannot use the CA certificate {path} for the registry {registry}: {reason}")]
    Certificate {
        /// `HOST[:PORT]`.
        registry: String,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading what is to be pushed failed.
    #[error("reading {path} to push it failed: {source}")]
    Read {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The registry stores something other than what was pushed.
    #[error(
        "the registry {registry} holds {reference} as {found}, but Staves pushed {expected}\n  \
         help: another push to the same tag may have raced this one; push again"
    )]
    DigestMismatch {
        /// `HOST[:PORT]`.
        registry: String,
        /// The tag pushed.
        reference: String,
        /// The digest pushed.
        expected: String,
        /// The digest the registry reports.
        found: String,
    },
    /// The registry stopped answering (or sending what it was sent), or took too long.
    #[error(
        "the registry {registry} stalled while {action}: {reason}\n  \
         help: check the registry and the network to it; if it is only slow, raise --registry-idle-timeout \
         (no byte for so many seconds) or --registry-timeout (the whole request)"
    )]
    TimedOut {
        /// `HOST[:PORT]`.
        registry: String,
        /// What Staves was doing.
        action: String,
        /// Which limit was reached.
        reason: String,
    },
    /// A timeout setting cannot be used.
    #[error("invalid registry {name}: {reason}")]
    InvalidOption {
        /// The setting.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A runtime to talk to the registry could not be started.
    #[error("cannot start the async runtime that talks to the registry: {0}")]
    Runtime(std::io::Error),
}
