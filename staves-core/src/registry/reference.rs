//! `docker://HOST[:PORT]/REPO[:TAG]`: where a pushed image goes, named as skopeo names it.

use super::RegistryError;
use oci_client::Reference;
use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A registry repository (and optionally a tag) that an image is pushed to: the part of
/// `docker://HOST[:PORT]/REPO[:TAG]` after `docker://`.
///
/// The name is normalized as Docker normalizes it: a first component without a `.` or `:` that is not `localhost`
/// is a path on Docker Hub (`docker://alpine` is `docker.io/library/alpine`). Without a tag, the image's own tag
/// (the spec's `version`) is used. A digest cannot be pushed to (the registry computes it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryTarget {
    registry: String,
    repository: String,
    tag: Option<String>,
}

impl RegistryTarget {
    /// The registry's address, `HOST[:PORT]` (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `team/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag given, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The host part of the registry address, without the port (brackets kept for IPv6).
    pub fn host(&self) -> &str {
        host_of(&self.registry)
    }

    /// `HOST[:PORT]/REPO:TAG` with `default_tag` when no tag was given.
    pub fn with_default_tag(&self, default_tag: &str) -> String {
        format!(
            "{}/{}:{}",
            self.registry,
            self.repository,
            self.tag.as_deref().unwrap_or(default_tag)
        )
    }

    /// The `HOST[:PORT]` the registry's API is at: the registry itself, except Docker Hub's (`docker.io`), whose
    /// API is at `index.docker.io`.
    pub(crate) fn endpoint(&self) -> String {
        Reference::with_tag(
            self.registry.clone(),
            self.repository.clone(),
            "latest".to_owned(),
        )
        .resolve_registry()
        .to_owned()
    }
}

/// `HOST` of `HOST[:PORT]` (an IPv6 address keeps its brackets).
pub(crate) fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return match registry.find(']') {
            Some(end) => &registry[..=end],
            None => registry,
        };
    }
    registry.split(':').next().unwrap_or(registry)
}

impl FromStr for RegistryTarget {
    type Err = RegistryError;

    /// Parse `HOST[:PORT]/REPO[:TAG]` (without the `docker://` prefix).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| RegistryError::InvalidReference {
            value: format!("docker://{text}"),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(invalid("the image name after `docker://` is empty"));
        }
        if text.contains('@') {
            return Err(invalid(
                "a push goes to a tag, not a digest (the registry computes the digest); remove the `@…` part",
            ));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace or a control character"));
        }
        let first = text.split('/').next().unwrap_or(text);
        let has_registry =
            text.contains('/') && (first.contains(['.', ':']) || first == "localhost");
        let path = if has_registry {
            &text[first.len() + 1..]
        } else {
            text
        };
        let repository = path.rsplit_once(':').map_or(path, |(repo, _)| repo);
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("the repository name must be lowercase"));
        }
        // The tag is after the last `:` of the last path component (a `:` before a `/` is a port).
        let last_slash = text.rfind('/').map_or(0, |i| i + 1);
        let tag = text[last_slash..]
            .rfind(':')
            .map(|i| text[last_slash + i + 1..].to_owned());
        if let Some(tag) = &tag {
            let valid = tag.len() <= 128
                && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !valid {
                return Err(invalid(&format!(
                    "`{tag}` is not a valid tag (up to 128 letters, digits, `_`, `.` and `-`, not starting with \
                     `.` or `-`)"
                )));
            }
        }
        let reference: Reference = text
            .parse()
            .map_err(|e: oci_client::ParseError| invalid(&e.to_string()))?;
        let port = match reference.registry().rsplit_once(':') {
            Some((_, port)) if !reference.registry().ends_with(']') => Some(port),
            _ => None,
        };
        if let Some(port) = port {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(invalid(&format!("`{port}` is not a port number")));
            }
        }
        Ok(Self {
            registry: reference.registry().to_owned(),
            repository: reference.repository().to_owned(),
            tag,
        })
    }
}

impl fmt::Display for RegistryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

impl Serialize for RegistryTarget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_normalize_as_docker_does() {
        let t: RegistryTarget = "127.0.0.1:5000/team/app:1.0".parse().unwrap();
        assert_eq!(
            (t.registry(), t.repository(), t.tag(), t.host()),
            ("127.0.0.1:5000", "team/app", Some("1.0"), "127.0.0.1")
        );
        assert_eq!(t.to_string(), "127.0.0.1:5000/team/app:1.0");
        let t: RegistryTarget = "localhost/app".parse().unwrap();
        assert_eq!((t.registry(), t.tag()), ("localhost", None));
        assert_eq!(t.with_default_tag("2"), "localhost/app:2");
        let t: RegistryTarget = "alpine".parse().unwrap();
        assert_eq!(
            (t.registry(), t.repository()),
            ("docker.io", "library/alpine")
        );
        let t: RegistryTarget = "registry.example.com:443/a/b/c:x_y.z-1".parse().unwrap();
        assert_eq!(t.tag(), Some("x_y.z-1"));
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        for (text, expect) in [
            ("", "empty"),
            ("host:5000/app@sha256:abc", "not a digest"),
            ("host:5000/App:1", "lowercase"),
            ("host:5000/app:bad tag", "whitespace"),
            ("host:99999/app:1", "not a port number"),
            ("host:5000/app:-x", "not a valid tag"),
            ("host:5000/app:", "not a valid tag"),
        ] {
            let err = text.parse::<RegistryTarget>().unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
            assert!(err.contains(&format!("docker://{text}")), "{err}");
        }
    }
}
