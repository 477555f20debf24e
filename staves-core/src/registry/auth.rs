//! Registry credentials, read from where docker, podman and skopeo keep them.
//!
//! The files are searched in order, and the first one that knows the registry wins:
//! 1. the file given explicitly (`--authfile`), else `REGISTRY_AUTH_FILE` when it is set (containers-auth.json);
//! 2. Docker's `config.json` in `DOCKER_CONFIG`, else `~/.docker/config.json`.
//!
//! In each file, `credHelpers[registry]` names a credential helper for that registry, else `credsStore` names one
//! for every registry; a helper is the program `docker-credential-NAME`, asked with `get` and the server address
//! on stdin (the `docker-credential-helpers` protocol). When no helper knows the registry, `auths[registry]`
//! holds `auth` (base64 of `user:password`), or `username`/`password`, or an `identitytoken` (an OAuth2 refresh
//! token, exchanged for an access token at the registry's token service).

use super::RegistryError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// No credentials: anonymous access.
    Anonymous,
    /// A user name and password (HTTP Basic, or the token service's Basic login).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged for an access token.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Credentials and where they came from (for messages; never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// The credentials.
    pub credential: Credential,
    /// Where they came from, e.g. `auths in /root/.docker/config.json`; `None` when anonymous.
    pub source: Option<String>,
}

/// Where to look for credentials.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// The auth files to read, in order.
    pub files: Vec<PathBuf>,
    /// `PATH` for finding `docker-credential-*` helpers (`None`: the process's).
    pub helper_path: Option<std::ffi::OsString>,
}

impl Sources {
    /// The default files: `explicit` (else `REGISTRY_AUTH_FILE`), then Docker's `config.json`.
    pub(crate) fn from_env(explicit: Option<&Path>) -> Self {
        let mut files = Vec::new();
        match explicit {
            Some(path) => files.push(path.to_path_buf()),
            None => {
                if let Some(path) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty())
                {
                    files.push(PathBuf::from(path));
                }
            }
        }
        let docker_dir = std::env::var_os("DOCKER_CONFIG")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")));
        if let Some(dir) = docker_dir {
            files.push(dir.join("config.json"));
        }
        Self {
            files,
            helper_path: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Docker Hub goes by several names; they share credentials.
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// The registry address a key of `auths` / `credHelpers` names: scheme and path dropped
/// (`https://index.docker.io/v1/` → `index.docker.io`).
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn same_registry(key: &str, registry: &str) -> bool {
    let key = normalize_key(key);
    key == registry || (DOCKER_HUB.contains(&key) && DOCKER_HUB.contains(&registry))
}

/// The server address a credential helper is asked for (Docker Hub's is its legacy v1 URL, as docker does).
fn helper_server(registry: &str) -> String {
    if DOCKER_HUB.contains(&registry) {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

/// Look up the credentials for `registry` (`HOST[:PORT]`).
pub(crate) fn lookup(registry: &str, sources: &Sources) -> Result<Found, RegistryError> {
    for path in &sources.files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(RegistryError::Credentials {
                    registry: registry.to_owned(),
                    reason: format!("cannot read {}: {e}", path.display()),
                });
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let file: AuthFile =
            serde_json::from_str(&text).map_err(|e| RegistryError::Credentials {
                registry: registry.to_owned(),
                reason: format!("{} is not a valid auth file: {e}", path.display()),
            })?;
        let helper = file
            .cred_helpers
            .iter()
            .find(|(key, _)| same_registry(key, registry))
            .map(|(_, helper)| (helper.as_str(), "credHelpers"))
            .or_else(|| {
                file.creds_store
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .map(|s| (s, "credsStore"))
            });
        if let Some((helper, key)) = helper {
            let origin = format!("{key} of {}", path.display());
            if let Some(credential) = ask_helper(helper, registry, &origin, sources)? {
                return Ok(Found {
                    credential,
                    source: Some(format!("credential helper docker-credential-{helper}")),
                });
            }
        }
        if let Some((key, entry)) = file
            .auths
            .iter()
            .find(|(key, _)| same_registry(key, registry))
        {
            let credential = decode_entry(entry).map_err(|reason| RegistryError::Credentials {
                registry: registry.to_owned(),
                reason: format!("auths[\"{key}\"] in {}: {reason}", path.display()),
            })?;
            if credential != Credential::Anonymous {
                return Ok(Found {
                    credential,
                    source: Some(format!("auths in {}", path.display())),
                });
            }
        }
    }
    Ok(Found {
        credential: Credential::Anonymous,
        source: None,
    })
}

fn decode_entry(entry: &AuthEntry) -> Result<Credential, String> {
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Credential::IdentityToken(token.to_owned()));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("`auth` is not base64: {e}"))?;
        let text = String::from_utf8(bytes).map_err(|_| "`auth` is not UTF-8 text".to_owned())?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| "`auth` does not decode to user:password".to_owned())?;
        return Ok(Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) if !username.is_empty() => Ok(Credential::Basic {
            username: username.clone(),
            password: password.clone(),
        }),
        _ => Ok(Credential::Anonymous),
    }
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Run `docker-credential-NAME get`; `None` when the helper has no credentials for the registry.
fn ask_helper(
    name: &str,
    registry: &str,
    origin: &str,
    sources: &Sources,
) -> Result<Option<Credential>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let fail = |reason: String| RegistryError::Credentials {
        registry: registry.to_owned(),
        reason: format!("{program} (named by {origin}) {reason}"),
    };
    if name.is_empty() || name.contains('/') {
        return Err(fail("is not a valid helper name".to_owned()));
    }
    let mut command = Command::new(&program);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = &sources.helper_path {
        command.env("PATH", path);
    }
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            fail("is not on PATH: install it, or remove the entry from the file".to_owned())
        } else {
            fail(format!("could not be started: {e}"))
        }
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its exit status below.
        let _ = stdin.write_all(helper_server(registry).as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("failed: {e}")))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stdout).trim().to_owned()
            + String::from_utf8_lossy(&output.stderr).trim();
        if message.to_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!(
            "exited with {}: {}",
            output.status,
            message.chars().take(300).collect::<String>()
        )));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).map_err(|e| {
        fail(format!(
            "printed something that is not its JSON answer: {e}"
        ))
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if answer.username == "<token>" {
        Credential::IdentityToken(answer.secret)
    } else {
        Credential::Basic {
            username: answer.username,
            password: answer.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sources(files: Vec<PathBuf>, helper_dir: Option<&Path>) -> Sources {
        Sources {
            files,
            // The helper scripts need cat and printf too.
            helper_path: helper_dir.map(|d| format!("{}:/usr/bin:/bin", d.display()).into()),
        }
    }

    #[test]
    fn auths_entries_decode_as_docker_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        // base64("alice:pa:ss") — a password may hold a colon.
        std::fs::write(
            &file,
            r#"{"auths": {
                "https://127.0.0.1:5000/v1/": {"auth": "YWxpY2U6cGE6c3M="},
                "token.example:443": {"identitytoken": "refresh-me"},
                "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
                "empty.example": {}
            }}"#,
        )
        .unwrap();
        let s = sources(vec![dir.path().join("missing.json"), file.clone()], None);
        let found = lookup("127.0.0.1:5000", &s).unwrap();
        assert_eq!(
            found.credential,
            Credential::Basic {
                username: "alice".into(),
                password: "pa:ss".into()
            }
        );
        assert_eq!(
            found.source.unwrap(),
            format!("auths in {}", file.display())
        );
        assert_eq!(
            lookup("token.example:443", &s).unwrap().credential,
            Credential::IdentityToken("refresh-me".into())
        );
        assert!(matches!(
            lookup("docker.io", &s).unwrap().credential,
            Credential::Basic { .. }
        ));
        assert_eq!(
            lookup("empty.example", &s).unwrap().credential,
            Credential::Anonymous
        );
        assert_eq!(
            lookup("other:1", &s).unwrap().credential,
            Credential::Anonymous
        );
        // The Debug form never shows a secret.
        let shown = format!("{:?}", lookup("127.0.0.1:5000", &s).unwrap());
        assert!(!shown.contains("pa:ss"), "{shown}");
    }

    #[test]
    fn broken_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(&file, "{not json").unwrap();
        let err = lookup("r:1", &sources(vec![file.clone()], None)).unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        std::fs::write(&file, r#"{"auths": {"r:1": {"auth": "%%%"}}}"#).unwrap();
        let err = lookup("r:1", &sources(vec![file], None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not base64"), "{err}");
    }

    fn helper(dir: &Path, name: &str, script: &str) {
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn credential_helpers_speak_the_docker_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // The helper echoes the server it was asked about into the user name, so the test sees what it got.
        helper(
            &bin,
            "test",
            r#"[ "$1" = get ] || exit 2
server=$(cat)
case "$server" in
  nothere*) echo "credentials not found in native keychain"; exit 1 ;;
  token*) printf '{"ServerURL":"%s","Username":"<token>","Secret":"tok"}' "$server" ;;
  *) printf '{"ServerURL":"%s","Username":"u-%s","Secret":"s"}' "$server" "$server" ;;
esac"#,
        );
        helper(&bin, "broken", "echo oops >&2; exit 3");
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            r#"{"credHelpers": {"r.example:5000": "test", "bad.example": "broken", "gone.example": "nosuch"},
                "credsStore": "test",
                "auths": {"nothere.example": {"auth": "dTpw"}}}"#,
        )
        .unwrap();
        let s = sources(vec![file], Some(&bin));
        assert_eq!(
            lookup("r.example:5000", &s).unwrap(),
            Found {
                credential: Credential::Basic {
                    username: "u-r.example:5000".into(),
                    password: "s".into()
                },
                source: Some("credential helper docker-credential-test".into()),
            }
        );
        // credsStore answers for registries without their own helper, and Docker Hub is asked by its v1 URL.
        assert_eq!(
            lookup("docker.io", &s).unwrap().credential,
            Credential::Basic {
                username: "u-https://index.docker.io/v1/".into(),
                password: "s".into()
            }
        );
        assert_eq!(
            lookup("token.example", &s).unwrap().credential,
            Credential::IdentityToken("tok".into())
        );
        // Not in the store: the file's own auths entry is used.
        assert_eq!(
            lookup("nothere.example", &s).unwrap().credential,
            Credential::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let err = lookup("bad.example", &s).unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-broken") && err.contains("oops"),
            "{err}"
        );
        let err = lookup("gone.example", &s).unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-nosuch") && err.contains("is not on PATH"),
            "{err}"
        );
    }
}
