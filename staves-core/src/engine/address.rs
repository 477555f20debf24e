//! Where the Docker engine is and how to talk to it, following the docker CLI exactly:
//!
//! - the address is `--docker-host`, else `DOCKER_HOST`, else `unix:///var/run/docker.sock`;
//! - `unix:///PATH` is a local socket; `tcp://HOST[:PORT]` (also `http://`) is a remote engine, port 2375, or 2376
//!   with TLS;
//! - `DOCKER_TLS_VERIFY` set to anything non-empty turns on TLS with verification both ways: the engine's
//!   certificate must be signed by `ca.pem` (or a system root), and Staves presents `cert.pem` / `key.pem`; the
//!   three files are in `DOCKER_CERT_PATH`, else `~/.docker`;
//! - `ssh://` is not supported (the docker CLI runs `docker system dial-stdio` over ssh; use an SSH tunnel to the
//!   socket, or TLS).
//!
//! Everything a build does goes through this one connection (uploads, exec, the rootfs download, the `docker`
//! output), so a remote engine needs no shared filesystem.

use super::EngineError;
use bollard::Docker;
use std::path::{Path, PathBuf};

/// The engine's request timeout, in seconds (bollard's default).
const TIMEOUT_SECS: u64 = 120;

/// The TLS files of `DOCKER_CERT_PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// `ca.pem`: the CA that signed the engine's certificate.
    pub ca: PathBuf,
    /// `cert.pem`: the client certificate.
    pub cert: PathBuf,
    /// `key.pem`: the client key.
    pub key: PathBuf,
}

/// A parsed engine address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EngineAddress {
    /// A local unix socket.
    Unix(PathBuf),
    /// A TCP endpoint, with TLS when the files are given.
    Tcp {
        /// `HOST:PORT`.
        authority: String,
        /// Client certificate, key and CA for TLS.
        tls: Option<TlsFiles>,
    },
}

/// The TLS environment: `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH` and `HOME`.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsEnv {
    /// `DOCKER_TLS_VERIFY` is set and not empty.
    pub verify: bool,
    /// The directory of ca.pem, cert.pem, key.pem.
    pub cert_path: Option<PathBuf>,
}

impl TlsEnv {
    /// Read the environment as the docker CLI does.
    pub(crate) fn from_env() -> Self {
        let verify = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
        let cert_path = std::env::var_os("DOCKER_CERT_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        Self { verify, cert_path }
    }
}

/// Parse `address` (with the TLS settings of `env`); the error says what is wrong and what works.
pub(crate) fn parse(address: &str, env: &TlsEnv) -> Result<EngineAddress, String> {
    let (scheme, rest) = address.split_once("://").ok_or_else(|| {
        "it has no scheme: write unix:///PATH or tcp://HOST:PORT (as DOCKER_HOST takes it)"
            .to_owned()
    })?;
    match scheme {
        "unix" => {
            if rest.is_empty() || !rest.starts_with('/') {
                return Err("a unix address needs an absolute socket path: unix:///var/run/docker.sock"
                    .to_owned());
            }
            if env.verify {
                return Err(
                    "DOCKER_TLS_VERIFY is set, but TLS needs a tcp:// address, not a unix socket".to_owned(),
                );
            }
            Ok(EngineAddress::Unix(PathBuf::from(rest)))
        }
        "tcp" | "http" | "https" => {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') || authority.contains('@') {
                return Err("a tcp address is tcp://HOST[:PORT], without a path or user".to_owned());
            }
            let tls = env.verify || scheme == "https";
            let authority = match split_port(authority) {
                Some((_, port)) => {
                    if port.parse::<u16>().map_or(true, |p| p == 0) {
                        return Err(format!("`{port}` is not a port number"));
                    }
                    authority.to_owned()
                }
                // The docker CLI's defaults: 2376 with TLS, 2375 without.
                None => format!("{authority}:{}", if tls { 2376 } else { 2375 }),
            };
            let tls = if tls {
                let dir = env.cert_path.clone().ok_or_else(|| {
                    "TLS is on, but neither DOCKER_CERT_PATH nor HOME is set to find ca.pem, cert.pem and key.pem"
                        .to_owned()
                })?;
                Some(TlsFiles {
                    ca: dir.join("ca.pem"),
                    cert: dir.join("cert.pem"),
                    key: dir.join("key.pem"),
                })
            } else {
                None
            };
            Ok(EngineAddress::Tcp { authority, tls })
        }
        "ssh" => Err(
            "ssh:// engines are not supported: the docker CLI runs `docker system dial-stdio` over ssh, which \
             Staves does not; forward the socket with `ssh -NL /tmp/docker.sock:/var/run/docker.sock HOST` and \
             use unix:///tmp/docker.sock, or expose the engine over TLS (tcp:// with DOCKER_TLS_VERIFY=1)"
                .to_owned(),
        ),
        "npipe" | "fd" => Err(format!(
            "{scheme}:// engines are not supported: use unix:///PATH or tcp://HOST:PORT"
        )),
        other => Err(format!(
            "unknown scheme `{other}://`: use unix:///PATH or tcp://HOST:PORT"
        )),
    }
}

/// `(host, port)` of `HOST:PORT` or `[V6]:PORT`; `None` without a port.
fn split_port(authority: &str) -> Option<(&str, &str)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return after.strip_prefix(':').map(|port| (host, port));
    }
    authority.rsplit_once(':')
}

/// Check that the TLS files exist and parse, so that a mistake is named before any connection is tried.
fn check_tls_files(files: &TlsFiles) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| {
            format!(
                "DOCKER_TLS_VERIFY is set, but the {what} {} cannot be read ({e}); DOCKER_CERT_PATH must hold \
                 ca.pem, cert.pem and key.pem",
                path.display(),
                e = e.kind()
            )
        })
    };
    for (path, what) in [
        (&files.ca, "CA certificate"),
        (&files.cert, "client certificate"),
    ] {
        let data = read(path, what)?;
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&data).collect();
        match certs {
            Ok(certs) if !certs.is_empty() => {}
            _ => {
                return Err(format!(
                    "the {what} {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
    }
    let data = read(&files.key, "client key")?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|_| {
        format!(
            "the client key {} holds no PEM private key",
            files.key.display()
        )
    })?;
    Ok(())
}

/// A client for the engine at `address` (not yet connected: the first request connects). The outer error is an
/// address or TLS file that cannot be used; the inner one the client's own (e.g. no socket at the path), which the
/// caller reports as an unreachable engine.
pub(crate) fn client(address: &str) -> Result<Result<Docker, bollard::errors::Error>, EngineError> {
    let invalid = |reason: String| EngineError::InvalidAddress {
        host: address.to_owned(),
        reason,
    };
    let parsed = parse(address, &TlsEnv::from_env()).map_err(invalid)?;
    let version = bollard::API_DEFAULT_VERSION;
    let result = match &parsed {
        EngineAddress::Unix(path) => {
            Docker::connect_with_unix(&format!("unix://{}", path.display()), TIMEOUT_SECS, version)
        }
        EngineAddress::Tcp {
            authority,
            tls: None,
        } => Docker::connect_with_http(&format!("tcp://{authority}"), TIMEOUT_SECS, version),
        EngineAddress::Tcp {
            authority,
            tls: Some(files),
        } => tls_client(authority, files).map_err(invalid)?,
    };
    Ok(result)
}

/// A client for a TLS engine: the engine's certificate must be signed by `ca.pem`, and Staves presents
/// `cert.pem` / `key.pem`.
///
/// Session resumption is off: every request opens a connection (as bollard's own TLS client does), and a TLS
/// server that verifies client certificates without a session-id context (OpenSSL's default, e.g. `socat
/// OPENSSL-LISTEN:…,verify=1`) refuses resumed sessions.
fn tls_client(
    authority: &str,
    files: &TlsFiles,
) -> Result<Result<Docker, bollard::errors::Error>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    check_tls_files(files)?;
    let certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
        CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect())
            .map_err(|e| format!("reading {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs(&files.ca)?);
    if added == 0 {
        return Err(format!(
            "{} holds no CA certificate rustls can use",
            files.ca.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("reading {}: {e}", files.key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(&files.cert)?, key)
        .map_err(|e| {
            format!(
                "{} and {} do not make a client identity: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.resumption = rustls::client::Resumption::disabled();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let mut builder =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    builder.pool_max_idle_per_host(0);
    let client = std::sync::Arc::new(builder.build(https));
    Ok(Docker::connect_with_custom_transport(
        move |request: bollard::BollardRequest| {
            let client = std::sync::Arc::clone(&client);
            async move {
                client
                    .request(request)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some(format!("https://{authority}")),
        TIMEOUT_SECS,
        bollard::API_DEFAULT_VERSION,
    ))
}

/// The TLS failure in a client error's chain, in words (`invalid peer certificate: UnknownIssuer`, `received
/// fatal alert: UnknownCA`), if the error is one.
pub(crate) fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls_words(tls));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // hyper nests io::Errors; their payloads are not in the source() chain.
            let mut inner = io.get_ref();
            while let Some(payload) = inner {
                if let Some(tls) = payload.downcast_ref::<rustls::Error>() {
                    return Some(tls_words(tls));
                }
                inner = payload
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref());
            }
        }
        cause = e.source();
    }
    None
}

fn tls_words(err: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    match err {
        rustls::Error::AlertReceived(A::UnknownCA | A::BadCertificate | A::CertificateUnknown) => {
            format!(
                "the engine rejected Staves' client certificate ({err}); DOCKER_CERT_PATH must hold a cert.pem \
                 and key.pem signed by the CA the engine trusts"
            )
        }
        rustls::Error::AlertReceived(A::CertificateRequired | A::HandshakeFailure) => format!(
            "the engine wants a client certificate Staves could not present ({err}); check cert.pem and key.pem \
             in DOCKER_CERT_PATH"
        ),
        rustls::Error::InvalidCertificate(_) => format!(
            "the engine's certificate is not trusted ({err}); DOCKER_CERT_PATH/ca.pem must be the CA that \
             signed it"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(verify: bool) -> TlsEnv {
        TlsEnv {
            verify,
            cert_path: Some(PathBuf::from("/certs")),
        }
    }

    #[test]
    fn addresses_parse_as_the_docker_cli_reads_them() {
        assert_eq!(
            parse("unix:///var/run/docker.sock", &env(false)),
            Ok(EngineAddress::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            parse("tcp://10.0.0.2:2375", &env(false)),
            Ok(EngineAddress::Tcp {
                authority: "10.0.0.2:2375".into(),
                tls: None
            })
        );
        assert_eq!(
            parse("tcp://engine.example", &env(false)),
            Ok(EngineAddress::Tcp {
                authority: "engine.example:2375".into(),
                tls: None
            })
        );
        let tls = Some(TlsFiles {
            ca: "/certs/ca.pem".into(),
            cert: "/certs/cert.pem".into(),
            key: "/certs/key.pem".into(),
        });
        assert_eq!(
            parse("tcp://engine.example/", &env(true)),
            Ok(EngineAddress::Tcp {
                authority: "engine.example:2376".into(),
                tls: tls.clone()
            })
        );
        assert_eq!(
            parse("tcp://[::1]:2376", &env(true)),
            Ok(EngineAddress::Tcp {
                authority: "[::1]:2376".into(),
                tls
            })
        );
    }

    #[test]
    fn unsupported_addresses_say_what_works() {
        for (address, expect) in [
            ("ssh://user@host", "ssh:// engines are not supported"),
            ("npipe:////./pipe/docker_engine", "not supported"),
            ("/var/run/docker.sock", "no scheme"),
            ("ftp://x", "unknown scheme `ftp://`"),
            ("unix://relative.sock", "absolute socket path"),
            ("tcp://host:0", "not a port number"),
            ("tcp://host:2375/path", "without a path"),
        ] {
            let err = parse(address, &env(false)).unwrap_err();
            assert!(err.contains(expect), "{address}: {err}");
        }
        let err = parse("unix:///s", &env(true)).unwrap_err();
        assert!(err.contains("DOCKER_TLS_VERIFY"), "{err}");
    }

    #[test]
    fn missing_or_broken_tls_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let err = check_tls_files(&files).unwrap_err();
        assert!(
            err.contains("ca.pem") && err.contains("cannot be read"),
            "{err}"
        );
        std::fs::write(&files.ca, "garbage").unwrap();
        let err = check_tls_files(&files).unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }
}
