//! The connection to a registry: TLS roots, HTTPS or plain HTTP, credentials, and errors in plain words.

use super::auth::{self, Credential};
use super::{RegistryError, RegistryOptions, RegistryTarget};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Docker's per-registry CA directory: `DOCKER_CERTS_D/HOST:PORT/*.crt`.
pub(crate) const DOCKER_CERTS_D: &str = "/etc/docker/certs.d";

/// How long to wait for a TCP connection (not for a transfer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A registry connection: the client, its credentials, and how to describe them.
pub(crate) struct Connection {
    /// The distribution API client.
    pub client: oci_client::Client,
    /// What the client authenticates with.
    pub auth: RegistryAuth,
    /// `HOST[:PORT]`.
    pub registry: String,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// Where the credentials came from, for messages.
    pub credentials: String,
    /// The HTTP client with the registry's TLS settings (the probe's), for requests oci-client cannot make.
    http: reqwest::Client,
    /// The registry's Bearer challenge, when it uses token authentication.
    bearer: Option<BearerChallenge>,
    /// What to present to the token service.
    token_credential: Credential,
}

/// rustls needs a process-wide crypto provider; Staves uses ring (as bollard's `ssl` feature does).
pub(crate) fn install_crypto_provider() {
    // Fails only when one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether `host` is `localhost` or a loopback address (`127.0.0.0/8`, `::1`).
pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether plain HTTP may be tried for `target`.
fn plain_http_allowed(target: &RegistryTarget, options: &RegistryOptions) -> bool {
    !options.tls_verify
        || is_loopback(target.host())
        || options
            .insecure_registries
            .iter()
            .any(|r| r == target.registry() || r == target.host())
}

/// The CA certificates to trust for `registry`: every `*.crt` in `options.cert_dir`, else in
/// `/etc/docker/certs.d/HOST:PORT` (a missing directory means none).
pub(crate) fn certificates(
    registry: &str,
    options: &RegistryOptions,
) -> Result<Vec<Certificate>, RegistryError> {
    let dir = options
        .cert_dir
        .clone()
        .unwrap_or_else(|| Path::new(DOCKER_CERTS_D).join(registry));
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && options.cert_dir.is_none() => {
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(RegistryError::Certificate {
                registry: registry.to_owned(),
                path: dir.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "crt"))
        .collect();
    paths.sort();
    let mut certs = Vec::new();
    for path in paths {
        let cert_err = |reason: String| RegistryError::Certificate {
            registry: registry.to_owned(),
            path: path.display().to_string(),
            reason,
        };
        let data = std::fs::read(&path).map_err(|e| cert_err(e.to_string()))?;
        reqwest::Certificate::from_pem_bundle(&data)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| cert_err("it holds no PEM certificate".to_owned()))?;
        certs.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    Ok(certs)
}

/// An HTTP client with the registry's TLS settings, for the probe and the token exchange.
fn http_client(
    registry: &str,
    options: &RegistryOptions,
    certs: &[Certificate],
) -> Result<reqwest::Client, RegistryError> {
    let mut roots = Vec::new();
    for cert in certs {
        roots.extend(
            reqwest::Certificate::from_pem_bundle(&cert.data).map_err(|e| {
                RegistryError::Client {
                    registry: registry.to_owned(),
                    action: "loading the CA certificates".to_owned(),
                    reason: e.to_string(),
                }
            })?,
        );
    }
    reqwest::Client::builder()
        .tls_certs_merge(roots)
        .tls_danger_accept_invalid_certs(!options.tls_verify)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("staves/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RegistryError::Client {
            registry: registry.to_owned(),
            action: "setting up the HTTP client".to_owned(),
            reason: describe(&e),
        })
}

/// Connect to the registry of `target`: find out whether it speaks HTTPS (or, where allowed, plain HTTP), read the
/// credentials, and exchange an identity token for an access token.
pub(crate) async fn connect(
    target: &RegistryTarget,
    options: &RegistryOptions,
    sources: &auth::Sources,
) -> Result<Connection, RegistryError> {
    install_crypto_provider();
    let registry = target.registry().to_owned();
    let certs = certificates(&registry, options)?;
    let http = http_client(&registry, options, &certs)?;

    let https_probe = http.get(format!("https://{registry}/v2/")).send().await;
    let (scheme, probe) = match https_probe {
        Ok(response) => ("https", response),
        Err(https_err) if plain_http_allowed(target, options) => {
            match http.get(format!("http://{registry}/v2/")).send().await {
                // Only a registry's answer counts: a TLS server answers plain HTTP with 400.
                Ok(response) if matches!(response.status().as_u16(), 200 | 401) => {
                    ("http", response)
                }
                // Both failed: the HTTPS error says more (a TLS problem, or the connection itself).
                _ => return Err(connection_error(&registry, &https_err, options)),
            }
        }
        Err(e) => return Err(connection_error(&registry, &e, options)),
    };
    let challenge = probe
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let bearer = challenge.as_deref().and_then(parse_bearer_challenge);

    let found = auth::lookup(&registry, sources)?;
    let credentials = found
        .source
        .clone()
        .unwrap_or_else(|| "no credentials found for it".to_owned());
    let auth = match &found.credential {
        Credential::Anonymous => RegistryAuth::Anonymous,
        Credential::Basic { username, password } => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
        Credential::IdentityToken(token) => {
            let challenge = bearer.as_ref().ok_or_else(|| RegistryError::Credentials {
                registry: registry.clone(),
                reason: format!(
                    "{credentials} holds an identity token, but the registry does not use token \
                     authentication (its /v2/ answer has no Bearer challenge)"
                ),
            })?;
            let scope = format!("repository:{}:pull,push", target.repository());
            let token =
                exchange_identity_token(&http, &registry, challenge, token, &scope, &credentials)
                    .await?;
            RegistryAuth::Bearer(token)
        }
    };

    let config = ClientConfig {
        protocol: if scheme == "https" {
            ClientProtocol::Https
        } else {
            ClientProtocol::Http
        },
        accept_invalid_certificates: !options.tls_verify,
        extra_root_certificates: certs,
        // One PUT per blob, its body streamed from the file: no chunk is ever held in memory.
        use_monolithic_push: true,
        connect_timeout: Some(CONNECT_TIMEOUT),
        user_agent: concat!("staves/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    let client = oci_client::Client::try_from(config).map_err(|e| RegistryError::Client {
        registry: registry.clone(),
        action: "setting up the registry client".to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Connection {
        client,
        auth,
        registry,
        scheme,
        credentials,
        http,
        bearer,
        token_credential: found.credential,
    })
}

/// A Bearer challenge: `Bearer realm="…",service="…",scope="…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let rest = header.trim();
    let (scheme, params) = rest.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut chars = params.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            value
        } else {
            chars.by_ref().take_while(|c| *c != ',').collect()
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
    }
    Some(BearerChallenge {
        realm: realm?,
        service,
    })
}

/// Exchange an OAuth2 refresh token (docker's `identitytoken`) for an access token for `scope` (scopes separated by
/// spaces) at the registry's token service, as docker does: `POST realm` with `grant_type=refresh_token`.
async fn exchange_identity_token(
    http: &reqwest::Client,
    registry: &str,
    challenge: &BearerChallenge,
    refresh_token: &str,
    scope: &str,
    credentials: &str,
) -> Result<String, RegistryError> {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", "staves"),
        ("scope", scope),
    ];
    if let Some(service) = &challenge.service {
        form.push(("service", service));
    }
    let action = format!("exchanging the identity token at {}", challenge.realm);
    let response = http
        .post(&challenge.realm)
        .form(&form)
        .send()
        .await
        .map_err(|e| RegistryError::Client {
            registry: registry.to_owned(),
            action: action.clone(),
            reason: describe(&e),
        })?;
    let status = response.status().as_u16();
    if status == 401 || status == 400 || status == 403 {
        return Err(unauthorized(registry, status, &action, credentials));
    }
    if !response.status().is_success() {
        return Err(RegistryError::Http {
            registry: registry.to_owned(),
            status,
            action,
            message: response.text().await.unwrap_or_default(),
        });
    }
    token_from_answer(registry, response, action).await
}

/// The token in a token service's JSON answer (`access_token`, or `token`).
async fn token_from_answer(
    registry: &str,
    response: reqwest::Response,
    action: String,
) -> Result<String, RegistryError> {
    #[derive(serde::Deserialize)]
    struct TokenAnswer {
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        token: Option<String>,
    }
    let answer: TokenAnswer = response.json().await.map_err(|e| RegistryError::Client {
        registry: registry.to_owned(),
        action: action.clone(),
        reason: format!(
            "the token service's answer is not a token: {}",
            describe(&e)
        ),
    })?;
    answer
        .access_token
        .or(answer.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RegistryError::Client {
            registry: registry.to_owned(),
            action,
            reason: "the token service answered without a token".to_owned(),
        })
}

/// The 401/403 error, with what to do.
pub(crate) fn unauthorized(
    registry: &str,
    status: u16,
    action: &str,
    credentials: &str,
) -> RegistryError {
    let help = if status == 403 {
        format!(
            "the registry knows these credentials but does not let them push here; check the account's \
             permissions, or log in as another user with `docker login {registry}`"
        )
    } else {
        format!(
            "log in with `docker login {registry}` (Staves reads docker's config.json and credential helpers, \
             and REGISTRY_AUTH_FILE)"
        )
    };
    RegistryError::Unauthorized {
        registry: registry.to_owned(),
        status,
        action: action.to_owned(),
        credentials: format!("credentials: {credentials}"),
        help,
    }
}

/// The error for a failed connection: TLS, refused, unresolvable, timed out.
fn connection_error(
    registry: &str,
    err: &reqwest::Error,
    options: &RegistryOptions,
) -> RegistryError {
    if let Some(tls) = find_tls_error(err) {
        return RegistryError::Tls {
            registry: registry.to_owned(),
            reason: tls,
        };
    }
    let hint = if options.tls_verify {
        String::new()
    } else {
        "\n  help: plain HTTP was tried too".to_owned()
    };
    RegistryError::Unreachable {
        registry: registry.to_owned(),
        reason: describe(err),
        hint,
    }
}

/// The rustls error in `err`'s chain, if any (io::Error hides its payload from `source()`).
fn find_tls_error(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // hyper nests io::Errors; their payloads are not in the source() chain.
            let mut inner = io.get_ref();
            while let Some(payload) = inner {
                if let Some(tls) = payload.downcast_ref::<rustls::Error>() {
                    return Some(tls.to_string());
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

/// The innermost io::Error under `io` (hyper wraps one in another).
fn innermost(io: &std::io::Error) -> &std::io::Error {
    let mut current = io;
    while let Some(inner) = current
        .get_ref()
        .and_then(|i| i.downcast_ref::<std::io::Error>())
    {
        current = inner;
    }
    current
}

/// An HTTP client error in plain words: the I/O cause of a failed connection, or the deepest message.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    if let Some(tls) = find_tls_error(err) {
        return format!("TLS failed: {tls}");
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut last = err.to_string();
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let io = innermost(io);
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::ConnectionRefused => "connection refused".to_owned(),
                K::TimedOut => "the connection timed out".to_owned(),
                K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof => {
                    "the registry closed the connection".to_owned()
                }
                _ => {
                    let text = io.to_string();
                    match text.split_once(" (os error") {
                        Some((head, _)) => head.to_lowercase(),
                        None => text,
                    }
                }
            };
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            if r.is_timeout() {
                return "the registry did not answer in time".to_owned();
            }
        }
        last = e.to_string();
        cause = e.source();
    }
    last
}

impl Connection {
    /// An access token for several `scopes` at once (`repository:NAME:ACTIONS`) from the registry's token service,
    /// with the connection's credentials; `None` when the registry does not use token authentication. oci-client
    /// asks for the scope of one repository only, and a cross-repository mount needs `pull` on the source too.
    pub(crate) async fn token_for(
        &self,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let Some(challenge) = &self.bearer else {
            return Ok(None);
        };
        let scope = scopes.join(" ");
        let (username, password) = match &self.token_credential {
            Credential::IdentityToken(refresh) => {
                return exchange_identity_token(
                    &self.http,
                    &self.registry,
                    challenge,
                    refresh,
                    &scope,
                    &self.credentials,
                )
                .await
                .map(Some);
            }
            Credential::Basic { username, password } => (Some(username), Some(password)),
            Credential::Anonymous => (None, None),
        };
        let action = format!("asking the token service {} for `{scope}`", challenge.realm);
        let client_err = |reason: String| RegistryError::Client {
            registry: self.registry.clone(),
            action: action.clone(),
            reason,
        };
        let mut query: Vec<(&str, &str)> = scopes.iter().map(|s| ("scope", s.as_str())).collect();
        if let Some(service) = &challenge.service {
            query.push(("service", service));
        }
        let url = reqwest::Url::parse_with_params(&challenge.realm, &query)
            .map_err(|e| client_err(format!("the realm `{}`: {e}", challenge.realm)))?;
        let mut request = self.http.get(url);
        if let Some(username) = username {
            request = request.basic_auth(username, password);
        }
        let response = request.send().await.map_err(|e| client_err(describe(&e)))?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(unauthorized(
                &self.registry,
                status,
                &action,
                &self.credentials,
            ));
        }
        if !response.status().is_success() {
            return Err(RegistryError::Http {
                registry: self.registry.clone(),
                status,
                action,
                message: response.text().await.unwrap_or_default(),
            });
        }
        token_from_answer(&self.registry, response, action)
            .await
            .map(Some)
    }

    /// A 401 from a token-authentication registry, said more precisely when the token service accepts the
    /// connection's credentials: then `docker login` is not the answer; the account may not push to `repository`.
    /// Other errors, and 401s with no credentials or refused ones, are returned as they are.
    pub(crate) async fn explain_unauthorized(
        &self,
        err: RegistryError,
        repository: &str,
    ) -> RegistryError {
        let RegistryError::Unauthorized {
            registry,
            status: 401,
            action,
            credentials,
            help,
        } = err
        else {
            return err;
        };
        let accepted = !matches!(self.token_credential, Credential::Anonymous)
            && matches!(
                self.token_for(&[format!("repository:{repository}:pull,push")])
                    .await,
                Ok(Some(_))
            );
        let help = if accepted {
            format!(
                "the registry's token service accepts these credentials, but the registry refused the token it \
                 issued: the account may not be allowed to push to `{repository}`; check its permissions, or log \
                 in as another user with `docker login {registry}`"
            )
        } else {
            help
        };
        RegistryError::Unauthorized {
            registry,
            status: 401,
            action,
            credentials,
            help,
        }
    }

    /// Mount blob `digest` from repository `source` into `target` with `token` (which must grant `pull` on
    /// `source` and `push` on `target`). `false` when the registry did not mount it: then it opened an upload
    /// instead (which is cancelled) or refused.
    pub(crate) async fn mount_with_token(
        &self,
        token: &str,
        target: &oci_client::Reference,
        source: &str,
        digest: &str,
    ) -> bool {
        let base = format!(
            "{}://{}/v2/{}/blobs/uploads/",
            self.scheme,
            target.resolve_registry(),
            target.repository()
        );
        let Ok(url) =
            reqwest::Url::parse_with_params(&base, &[("mount", digest), ("from", source)])
        else {
            return false;
        };
        let Ok(response) = self.http.post(url).bearer_auth(token).send().await else {
            return false;
        };
        if response.status() == reqwest::StatusCode::CREATED {
            return true;
        }
        if response.status() == reqwest::StatusCode::ACCEPTED {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| response.url().join(l).ok());
            if let Some(location) = location {
                // Best effort: an abandoned upload is removed by the registry's own upload purging anyway.
                let _ = self.http.delete(location).bearer_auth(token).send().await;
            }
        }
        false
    }

    /// Turn a client error into a [`RegistryError`] that names the registry, the action and the HTTP status.
    pub(crate) fn error(&self, action: &str, err: OciDistributionError) -> RegistryError {
        let registry = self.registry.clone();
        let status_error = |status: u16, message: String| match status {
            401 | 403 => unauthorized(&registry, status, action, &self.credentials),
            _ => RegistryError::Http {
                registry: registry.clone(),
                status,
                action: action.to_owned(),
                message: message.trim().chars().take(500).collect(),
            },
        };
        match err {
            OciDistributionError::ServerError { code, message, .. } => status_error(code, message),
            OciDistributionError::UnauthorizedError { .. } => status_error(401, String::new()),
            OciDistributionError::AuthenticationFailure(message) => {
                // The token service refused the credentials.
                let _ = message;
                status_error(401, String::new())
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let unauthorized = envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::Unauthorized
                            | oci_client::errors::OciErrorCode::Denied
                    )
                });
                let message = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                if unauthorized {
                    status_error(401, message)
                } else {
                    RegistryError::Client {
                        registry,
                        action: action.to_owned(),
                        reason: message,
                    }
                }
            }
            OciDistributionError::RequestError(e) => match e.status() {
                Some(status) => status_error(status.as_u16(), e.to_string()),
                None if e.is_connect() => match find_tls_error(&e) {
                    Some(reason) => RegistryError::Tls { registry, reason },
                    None => RegistryError::Unreachable {
                        registry,
                        reason: describe(&e),
                        hint: String::new(),
                    },
                },
                None => RegistryError::Client {
                    registry,
                    action: action.to_owned(),
                    reason: describe(&e),
                },
            },
            other => RegistryError::Client {
                registry,
                action: action.to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn loopback_hosts_may_use_plain_http() {
        for host in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "LOCALHOST"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "registry.example.com",
            "128.0.0.1",
            "localhost.example",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
        let target: RegistryTarget = "reg.example:5000/app".parse().unwrap();
        let options = RegistryOptions::default();
        assert!(!plain_http_allowed(&target, &options));
        for name in ["reg.example:5000", "reg.example"] {
            let options = RegistryOptions::default().insecure_registries(vec![name.into()]);
            assert!(plain_http_allowed(&target, &options), "{name}");
        }
        assert!(plain_http_allowed(
            &target,
            &RegistryOptions::default().tls_verify(false)
        ));
    }

    #[test]
    fn bearer_challenges_parse() {
        assert_eq!(
            parse_bearer_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#
            ),
            Some(BearerChallenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(
            parse_bearer_challenge(r#"Bearer realm="https://a/t\"x""#)
                .unwrap()
                .realm,
            "https://a/t\"x"
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="x""#), None);
        assert_eq!(parse_bearer_challenge("Bearer service=x"), None);
    }

    /// A tiny token-auth registry on 127.0.0.1 (plain HTTP): `/v2/` answers 401 with a Bearer challenge, and
    /// `/token` gives an access token for the right refresh token only.
    fn token_server() -> (u16, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen, bodies) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let mut reader = BufReader::new(stream);
                // The HTTPS probe comes first: a TLS hello is not a request line; drop the connection.
                let Ok(buffer) = reader.fill_buf() else {
                    continue;
                };
                if !buffer.first().is_some_and(u8::is_ascii_alphabetic) {
                    continue;
                }
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).into_owned();
                let response = if head.starts_with("GET /v2/ ") {
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",\
                         service=\"test-registry\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                } else if head.starts_with("POST /token ")
                    && body.contains("refresh_token=good-refresh")
                {
                    let json = r#"{"access_token":"fresh-access"}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{json}",
                        json.len()
                    )
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_owned()
                };
                let _ = seen.send(body);
                let _ = reader.get_mut().write_all(response.as_bytes());
            }
        });
        (port, bodies)
    }

    #[tokio::test]
    async fn identity_tokens_are_exchanged_at_the_token_service() {
        let (port, bodies) = token_server();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        let write = |token: &str| {
            std::fs::write(
                &file,
                format!(r#"{{"auths": {{"127.0.0.1:{port}": {{"identitytoken": "{token}"}}}}}}"#),
            )
            .unwrap();
        };
        let target: RegistryTarget = format!("127.0.0.1:{port}/team/app:1").parse().unwrap();
        let sources = auth::Sources {
            files: vec![file.clone()],
            helper_path: None,
        };
        write("good-refresh");
        let connection = connect(&target, &RegistryOptions::default(), &sources)
            .await
            .unwrap();
        assert_eq!(connection.scheme, "http");
        assert!(
            matches!(&connection.auth, RegistryAuth::Bearer(t) if t == "fresh-access"),
            "{:?}",
            connection.auth
        );
        let sent: Vec<String> = bodies.try_iter().collect();
        let exchange = sent
            .iter()
            .find(|b| b.contains("grant_type=refresh_token"))
            .unwrap();
        assert!(exchange.contains("service=test-registry"), "{exchange}");
        assert!(
            exchange.contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush"),
            "{exchange}"
        );

        write("revoked");
        let err = connect(&target, &RegistryOptions::default(), &sources)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(&format!("the registry 127.0.0.1:{port} answered HTTP 401")),
            "{err}"
        );
        assert!(err.contains("docker login"), "{err}");
    }

    #[test]
    fn certificate_directories_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let options = RegistryOptions::default().cert_dir(Some(dir.path().to_path_buf()));
        assert!(certificates("r:1", &options).unwrap().is_empty());
        std::fs::write(dir.path().join("ca.crt"), "not a certificate").unwrap();
        let err = certificates("r:1", &options).unwrap_err().to_string();
        assert!(err.contains("ca.crt") && err.contains("no PEM"), "{err}");
        // A missing explicit directory is an error; a missing certs.d entry is not.
        let missing = RegistryOptions::default().cert_dir(Some(dir.path().join("nope")));
        assert!(certificates("r:1", &missing).is_err());
        assert!(
            certificates("no-such-registry.invalid:1", &RegistryOptions::default())
                .unwrap()
                .is_empty()
        );
    }
}
