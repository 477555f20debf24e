//! The data model of `staves.toml`.

use super::diagnostic::SourceMap;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A parsed `staves.toml`: everything Staves needs to know to build one image.
///
/// Field meanings follow the original Staves exactly; new settings live in [`ImageConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImageSpec {
    /// Image repository name, e.g. `staves/bash`.
    pub name: String,
    /// Image tag; `latest` when the spec does not say.
    pub version: String,
    /// Package atoms to install into the image, as written.
    pub packages: Vec<String>,
    /// The image entrypoint.
    pub command: Vec<String>,
    /// Image labels (and manifest annotations).
    pub annotations: BTreeMap<String, String>,
    /// The glibc locale generated into the image.
    pub locale: Locale,
    /// Copy `libstdc++.so.6` into the image.
    pub stdlib: bool,
    /// `[env]` string values, appended to `make.conf` in the order written.
    pub env: IndexMap<String, String>,
    /// `[env.NAME]` tables: named environments written to `/etc/portage/env/NAME`.
    pub named_envs: IndexMap<String, IndexMap<String, String>>,
    /// Extra ebuild repositories (`[[repositories]]`).
    pub repositories: Vec<Repository>,
    /// Per-package settings, keyed by package atom, in the order written.
    pub package_configs: IndexMap<String, PackageConfig>,
    /// Runtime settings of the image (`[image]`).
    pub image: ImageConfig,
    /// How the image is built (`[build]`): settings that change where the build gets things from, never what the
    /// image holds.
    #[serde(default, skip_serializing_if = "BuildSettings::is_empty")]
    pub build: BuildSettings,
    /// Where each setting was written (empty for programmatic specs); never affects equality.
    #[serde(skip)]
    pub(crate) source: SourceHandle,
}

/// A shared [`SourceMap`] that compares equal to every other, so `==` on specs means "same content".
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceHandle(pub(crate) Arc<SourceMap>);

impl PartialEq for SourceHandle {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SourceHandle {}

impl ImageSpec {
    /// A spec for image `name` with every other setting at its default (`version = "latest"`, no packages).
    ///
    /// Fields are public, so a spec can be adjusted after construction.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: "latest".to_owned(),
            packages: Vec::new(),
            command: Vec::new(),
            annotations: BTreeMap::new(),
            locale: Locale::default(),
            stdlib: false,
            env: IndexMap::new(),
            named_envs: IndexMap::new(),
            repositories: Vec::new(),
            package_configs: IndexMap::new(),
            image: ImageConfig::default(),
            build: BuildSettings::default(),
            source: SourceHandle::default(),
        }
    }
}

/// The locale generated into an image (`locale = { name, charset }`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(default, deny_unknown_fields)]
pub struct Locale {
    /// Locale name, e.g. `C` or `en_US`.
    pub name: String,
    /// Character set, e.g. `UTF-8`.
    pub charset: String,
}

impl Default for Locale {
    fn default() -> Self {
        Self {
            name: "C".to_owned(),
            charset: "UTF-8".to_owned(),
        }
    }
}

/// An extra ebuild repository (`[[repositories]]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Repository {
    /// Repository name, as in `profiles/repo_name`.
    pub name: String,
    /// Portage sync type, e.g. `git`.
    #[serde(rename = "type")]
    #[schemars(with = "super::schema::SyncType")]
    pub sync_type: String,
    /// Sync URI.
    pub uri: String,
}

/// Settings for one package atom (a top-level table keyed by the atom).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PackageConfig {
    /// USE flags for `package.use`.
    #[serde(rename = "use", default, skip_serializing_if = "Vec::is_empty")]
    pub use_flags: Vec<String>,
    /// Keywords for `package.accept_keywords`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Names of `[env.NAME]` tables for `package.env`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Licenses for `package.license`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub license: Vec<String>,
}

/// Runtime settings of the image (`[image]`), as in the OCI image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ImageConfig {
    /// Default arguments to the entrypoint (`Cmd`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// User (`name`, `uid`, `uid:gid`, …) the process runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub user: Option<String>,
    /// Working directory of the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub workdir: Option<String>,
    /// Environment of the process, in the order written.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// Exposed ports, e.g. `8080/tcp`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    /// Volumes, as absolute paths.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Signal that stops the container, e.g. `SIGTERM`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub stop_signal: Option<String>,
}

/// How the image is built (`[build]`). Nothing here changes what the image holds, so it is not part of the build
/// key or the lock's spec hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct BuildSettings {
    /// Binary package hosts (Portage binhosts: a `Packages` index and the binary packages, over `http`, `https`,
    /// `ftp` or `file`) to fetch binary packages from before building, first one preferred. A build's `--binhost`
    /// URLs come before these. Only binary packages built with the environment the spec gives their package are
    /// installed; everything else is built from source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = super::schema::BINHOST_PATTERN)))]
    #[schemars(extend("examples" = [["http://binhost:8080/"]]))]
    pub binhost: Vec<String>,
}

impl BuildSettings {
    /// True when nothing is set (the spec has no `[build]` table, or an empty one).
    pub fn is_empty(&self) -> bool {
        self.binhost.is_empty()
    }
}
