//! The connection to a registry: TLS roots, HTTPS or plain HTTP, credentials and tokens, bounded requests, and
//! errors in plain words.

use super::auth::{self, Credential};
use super::http::{Body, BodyError, Clock, DOCUMENT_CAP, ERROR_BODY_CAP, Limits, Stalled};
use super::{RegistryError, RegistryOptions, RegistryTarget};
use reqwest::header::HeaderValue;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Docker's per-registry CA directory: `DOCKER_CERTS_D/HOST:PORT/*.crt`.
pub(crate) const DOCKER_CERTS_D: &str = "/etc/docker/certs.d";

/// How long to wait for a connection (TCP and TLS; not for a transfer). A shorter idle timeout ends the wait sooner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a token lives when its answer does not say (the token authentication spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A token is asked for again this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// A registry connection: the HTTP client with the registry's TLS settings, the credentials and how to describe
/// them, and the tokens issued so far.
pub(crate) struct Connection {
    /// `HOST[:PORT]`, as the destination names it.
    pub registry: String,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// Where the credentials came from, for messages.
    pub credentials: String,
    /// `HOST[:PORT]` the API is reached at (Docker Hub's is `index.docker.io`).
    endpoint: String,
    /// The HTTP client with the registry's TLS settings.
    http: reqwest::Client,
    /// The registry's Bearer challenge, when it uses token authentication.
    bearer: Option<BearerChallenge>,
    /// What to present to the registry, or to its token service.
    credential: Credential,
    /// The deadlines of every request.
    limits: Limits,
    /// Tokens by the scopes they grant, with when to ask again.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
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
) -> Result<Vec<reqwest::Certificate>, RegistryError> {
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
        let bundle = reqwest::Certificate::from_pem_bundle(&data)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| cert_err("it holds no PEM certificate".to_owned()))?;
        certs.extend(bundle);
    }
    Ok(certs)
}

/// The HTTP client for `registry`: its TLS settings, a connect timeout, no overall timeout (each request has its
/// own [`Clock`]).
fn http_client(
    registry: &str,
    options: &RegistryOptions,
    certs: Vec<reqwest::Certificate>,
) -> Result<reqwest::Client, RegistryError> {
    reqwest::Client::builder()
        .tls_certs_merge(certs)
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

/// The deadlines of `options`, refused when zero.
fn limits(options: &RegistryOptions) -> Result<Limits, RegistryError> {
    for (name, value) in [
        ("idle timeout", options.idle_timeout),
        ("timeout", options.timeout),
    ] {
        if value < Duration::from_secs(1) {
            return Err(RegistryError::InvalidOption {
                name: name.to_owned(),
                reason: format!(
                    "{} ms is too short: give at least 1 second",
                    value.as_millis()
                ),
            });
        }
    }
    Ok(Limits {
        idle: options.idle_timeout,
        total: options.timeout,
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
    let limits = limits(options)?;
    let registry = target.registry().to_owned();
    let endpoint = target.endpoint();
    let certs = certificates(&registry, options)?;
    let http = http_client(&registry, options, certs)?;

    let probe = |scheme: &'static str| {
        let request = http.get(format!("{scheme}://{endpoint}/v2/"));
        async move {
            let clock = Clock::start(limits.idle, limits.total);
            match clock.bound(request.send()).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) => Err(Failure::Http(e)),
                Err(stalled) => Err(Failure::Stalled(stalled)),
            }
        }
    };
    let (scheme, probe) = match probe("https").await {
        Ok(response) => ("https", response),
        Err(https_err) if plain_http_allowed(target, options) => match probe("http").await {
            // Only a registry's answer counts: a TLS server answers plain HTTP with 400.
            Ok(response) if matches!(response.status().as_u16(), 200 | 401) => ("http", response),
            // Both failed: the HTTPS error says more (a TLS problem, or the connection itself).
            _ => return Err(https_err.into_error(&registry, options)),
        },
        Err(e) => return Err(e.into_error(&registry, options)),
    };
    let challenge = probe
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    drop(probe);
    let bearer = challenge.as_deref().and_then(parse_bearer_challenge);

    let found = auth::lookup(&registry, sources)?;
    let credentials = found
        .source
        .clone()
        .unwrap_or_else(|| "no credentials found for it".to_owned());
    if let (Credential::IdentityToken(_), None) = (&found.credential, &bearer) {
        return Err(RegistryError::Credentials {
            registry: registry.clone(),
            reason: format!(
                "{credentials} holds an identity token, but the registry does not use token \
                 authentication (its /v2/ answer has no Bearer challenge)"
            ),
        });
    }
    let connection = Connection {
        registry,
        scheme,
        credentials,
        endpoint,
        http,
        bearer,
        credential: found.credential,
        limits,
        tokens: Mutex::new(HashMap::new()),
    };
    if let Credential::IdentityToken(_) = connection.credential {
        // Exchanged now, so refused credentials are said before anything is sent.
        connection
            .token_for(&[connection.push_scope(target.repository())])
            .await?;
    }
    Ok(connection)
}

/// Why a probe failed.
enum Failure {
    Http(reqwest::Error),
    Stalled(Stalled),
}

impl Failure {
    fn into_error(self, registry: &str, options: &RegistryOptions) -> RegistryError {
        match self {
            Failure::Http(e) => connection_error(registry, &e, options),
            Failure::Stalled(stalled) => RegistryError::TimedOut {
                registry: registry.to_owned(),
                action: "connecting (GET /v2/)".to_owned(),
                reason: stalled.to_string(),
            },
        }
    }
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

/// What a token service answers.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token: Option<String>,
    /// Seconds.
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A request to the registry (or to where it sends an upload).
pub(crate) struct Request<'a> {
    /// The method.
    pub method: reqwest::Method,
    /// Where.
    pub url: reqwest::Url,
    /// The token scopes it needs (with token authentication).
    pub scopes: &'a [String],
    /// Headers besides `Authorization`.
    pub headers: &'a [(reqwest::header::HeaderName, HeaderValue)],
    /// The body.
    pub body: RequestBody<'a>,
}

/// A request body.
pub(crate) enum RequestBody<'a> {
    /// No body.
    Empty,
    /// A small document.
    Bytes(&'a bytes::Bytes),
    /// A file streamed from disk, of this many bytes.
    File(&'a Path, u64),
}

impl Connection {
    /// The scope that lets Staves push to `repository` (and read it back).
    pub(crate) fn push_scope(&self, repository: &str) -> String {
        format!("repository:{repository}:pull,push")
    }

    /// `scheme://endpoint/v2/PATH`.
    pub(crate) fn url(&self, path: &str) -> Result<reqwest::Url, RegistryError> {
        let text = format!("{}://{}/v2/{path}", self.scheme, self.endpoint);
        reqwest::Url::parse(&text).map_err(|e| RegistryError::Client {
            registry: self.registry.clone(),
            action: format!("making the URL {text}"),
            reason: e.to_string(),
        })
    }

    /// Whether `url` is the registry itself (credentials go there only, not to a storage backend an upload
    /// location may point at).
    fn is_registry(&self, url: &reqwest::Url) -> bool {
        let Ok(base) = reqwest::Url::parse(&format!("{}://{}/", self.scheme, self.endpoint)) else {
            return false;
        };
        url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
    }

    /// The clock of a request without a big body.
    pub(crate) fn clock(&self) -> Clock {
        Clock::start(self.limits.idle, self.limits.total)
    }

    /// The clock of a request that uploads `size` bytes: more time in proportion to the size.
    pub(crate) fn upload_clock(&self, size: u64) -> Clock {
        Clock::start(self.limits.idle, self.limits.total_for_upload(size))
    }

    /// The `Authorization` header for requests needing `scopes`: a token with token authentication, else Basic
    /// credentials, else none.
    async fn authorization(&self, scopes: &[String]) -> Result<Option<HeaderValue>, RegistryError> {
        let value = match (&self.bearer, &self.credential) {
            (Some(_), _) => match self.token_for(scopes).await? {
                Some(token) => format!("Bearer {token}"),
                None => return Ok(None),
            },
            (None, Credential::Basic { username, password }) => {
                use base64::Engine as _;
                let pair = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                format!("Basic {pair}")
            }
            (None, _) => return Ok(None),
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| RegistryError::Credentials {
            registry: self.registry.clone(),
            reason: format!(
                "{} holds characters an HTTP header cannot carry",
                self.credentials
            ),
        })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }

    /// Send `request`, authorized for its scopes when it goes to the registry, and wait for the head of the answer
    /// within `clock`.
    pub(crate) async fn send(
        &self,
        request: Request<'_>,
        clock: &Clock,
        action: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let Request {
            method,
            url,
            scopes,
            headers,
            body,
        } = request;
        let authorization = if self.is_registry(&url) {
            self.authorization(scopes).await?
        } else {
            None
        };
        // A POST or PUT without a body says so (some registries refuse one without `Content-Length`); a GET or
        // HEAD carries none.
        let says_length = matches!(method, reqwest::Method::POST | reqwest::Method::PUT);
        let mut request = self.http.request(method, url);
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        for (name, value) in headers {
            request = request.header(name, value.clone());
        }
        request = match body {
            RequestBody::Empty if says_length => request.header(reqwest::header::CONTENT_LENGTH, 0),
            RequestBody::Empty => request,
            RequestBody::Bytes(bytes) => request.body(super::http::bytes_body(bytes.clone())),
            RequestBody::File(path, size) => {
                let file =
                    tokio::fs::File::open(path)
                        .await
                        .map_err(|source| RegistryError::Read {
                            path: path.display().to_string(),
                            source,
                        })?;
                request
                    .header(reqwest::header::CONTENT_LENGTH, size)
                    .body(super::http::file_body(file, clock.progress()))
            }
        };
        match clock.bound(request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(self.request_error(action, &e)),
            Err(stalled) => Err(self.stalled(action, stalled)),
        }
    }

    /// The error for an answer that is not the one expected: the status, and the registry's message from the
    /// first [`ERROR_BODY_CAP`] bytes of the body.
    pub(crate) async fn answer_error(
        &self,
        response: reqwest::Response,
        clock: &Clock,
        action: &str,
    ) -> RegistryError {
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return unauthorized(&self.registry, status, action, &self.credentials);
        }
        let message = match clock.read(response, ERROR_BODY_CAP).await {
            Ok(body) => body.error_message(),
            Err(BodyError::Stalled(stalled)) => format!("(its body stopped: {stalled})"),
            Err(BodyError::Http(e)) => format!("(its body could not be read: {})", describe(&e)),
        };
        RegistryError::Http {
            registry: self.registry.clone(),
            status,
            action: action.to_owned(),
            message,
        }
    }

    /// Read an error answer's body (up to [`ERROR_BODY_CAP`]): for telling "not found" answers apart.
    pub(crate) async fn error_body(&self, response: reqwest::Response, clock: &Clock) -> Body {
        clock.read(response, ERROR_BODY_CAP).await.unwrap_or(Body {
            bytes: bytes::Bytes::new(),
            cut: false,
        })
    }

    /// Read a document answer (a manifest, an index, a token) of at most [`DOCUMENT_CAP`] bytes.
    pub(crate) async fn document(
        &self,
        response: reqwest::Response,
        clock: &Clock,
        action: &str,
    ) -> Result<bytes::Bytes, RegistryError> {
        match clock.read(response, DOCUMENT_CAP).await {
            Ok(Body { bytes, cut: false }) => Ok(bytes),
            Ok(Body { cut: true, .. }) => Err(RegistryError::Client {
                registry: self.registry.clone(),
                action: action.to_owned(),
                reason: format!(
                    "the answer is larger than {} MiB, more than any document Staves reads",
                    DOCUMENT_CAP >> 20
                ),
            }),
            Err(BodyError::Stalled(stalled)) => Err(self.stalled(action, stalled)),
            Err(BodyError::Http(e)) => Err(self.request_error(action, &e)),
        }
    }

    /// The error for a request that stalled.
    pub(crate) fn stalled(&self, action: &str, stalled: Stalled) -> RegistryError {
        RegistryError::TimedOut {
            registry: self.registry.clone(),
            action: action.to_owned(),
            reason: stalled.to_string(),
        }
    }

    /// The error for a request that failed without an answer: TLS, the connection, or the client.
    pub(crate) fn request_error(&self, action: &str, e: &reqwest::Error) -> RegistryError {
        let registry = self.registry.clone();
        if e.is_connect() {
            return match find_tls_error(e) {
                Some(reason) => RegistryError::Tls { registry, reason },
                None => RegistryError::Unreachable {
                    registry,
                    reason: describe(e),
                    hint: String::new(),
                },
            };
        }
        RegistryError::Client {
            registry,
            action: action.to_owned(),
            reason: describe(e),
        }
    }

    /// An access token for several `scopes` at once (`repository:NAME:ACTIONS`) from the registry's token service,
    /// with the connection's credentials; `None` when the registry does not use token authentication. Tokens are
    /// kept until shortly before they expire.
    pub(crate) async fn token_for(
        &self,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let Some(challenge) = &self.bearer else {
            return Ok(None);
        };
        let scope = scopes.join(" ");
        if let Some((token, renew)) = self.cached_token(&scope) {
            if Instant::now() < renew {
                return Ok(Some(token));
            }
        }
        let (request, action) = match &self.credential {
            Credential::IdentityToken(refresh) => {
                // OAuth2 refresh token (docker's `identitytoken`), as docker does: `POST realm` with
                // `grant_type=refresh_token`.
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", "staves"),
                    ("scope", scope.as_str()),
                ];
                if let Some(service) = &challenge.service {
                    form.push(("service", service));
                }
                (
                    self.http.post(&challenge.realm).form(&form),
                    format!("exchanging the identity token at {}", challenge.realm),
                )
            }
            credential => {
                let action = format!("asking the token service {} for `{scope}`", challenge.realm);
                let mut query: Vec<(&str, &str)> =
                    scopes.iter().map(|s| ("scope", s.as_str())).collect();
                if let Some(service) = &challenge.service {
                    query.push(("service", service));
                }
                let url =
                    reqwest::Url::parse_with_params(&challenge.realm, &query).map_err(|e| {
                        RegistryError::Client {
                            registry: self.registry.clone(),
                            action: action.clone(),
                            reason: format!("the realm `{}`: {e}", challenge.realm),
                        }
                    })?;
                let mut request = self.http.get(url);
                if let Credential::Basic { username, password } = credential {
                    request = request.basic_auth(username, Some(password));
                }
                (request, action)
            }
        };
        let clock = self.clock();
        let response = match clock.bound(request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                return Err(RegistryError::Client {
                    registry: self.registry.clone(),
                    action,
                    reason: describe(&e),
                });
            }
            Err(stalled) => return Err(self.stalled(&action, stalled)),
        };
        let status = response.status().as_u16();
        // A token service refuses a refresh token with 400 (invalid_grant), credentials with 401.
        let refused = match &self.credential {
            Credential::IdentityToken(_) => matches!(status, 400 | 401 | 403),
            _ => matches!(status, 401 | 403),
        };
        if refused {
            return Err(unauthorized(
                &self.registry,
                status,
                &action,
                &self.credentials,
            ));
        }
        if !response.status().is_success() {
            return Err(self.answer_error(response, &clock, &action).await);
        }
        let body = self.document(response, &clock, &action).await?;
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Client {
                registry: self.registry.clone(),
                action: action.clone(),
                reason: format!("the token service's answer is not a token: {e}"),
            })?;
        let token = answer
            .access_token
            .or(answer.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Client {
                registry: self.registry.clone(),
                action,
                reason: "the token service answered without a token".to_owned(),
            })?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        let renew = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(scope, (token.clone(), renew));
        }
        Ok(Some(token))
    }

    fn cached_token(&self, scope: &str) -> Option<(String, Instant)> {
        self.tokens.lock().ok()?.get(scope).cloned()
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
        let accepted = !matches!(self.credential, Credential::Anonymous)
            && self.bearer.is_some()
            && matches!(
                self.token_for(&[self.push_scope(repository)]).await,
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
        let scope = connection.push_scope("team/app");
        assert_eq!(
            connection
                .cached_token(&scope)
                .map(|(token, _)| token)
                .as_deref(),
            Some("fresh-access")
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
