//! Programmatic construction of an [`ImageSpec`].

use super::model::{ImageConfig, ImageSpec, Locale, PackageConfig, Repository};

/// Builds an [`ImageSpec`] step by step; start with [`ImageSpec::builder`].
///
/// ```
/// use staves_core::{ImageSpec, PackageConfig};
/// let spec = ImageSpec::builder("staves/bash")
///     .package("app-shells/bash")
///     .command(["/bin/bash", "-c"])
///     .package_config("app-shells/bash", PackageConfig { use_flags: vec!["-nls".into()], ..Default::default() })
///     .build();
/// assert!(spec.validate().is_empty());
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ImageSpecBuilder {
    spec: ImageSpec,
}

impl ImageSpecBuilder {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self {
            spec: ImageSpec::new(name),
        }
    }

    /// Set the image tag.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.spec.version = version.into();
        self
    }

    /// Add one package atom.
    pub fn package(mut self, atom: impl Into<String>) -> Self {
        self.spec.packages.push(atom.into());
        self
    }

    /// Add several package atoms.
    pub fn packages<I, S>(mut self, atoms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.packages.extend(atoms.into_iter().map(Into::into));
        self
    }

    /// Set the entrypoint.
    pub fn command<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec.command = command.into_iter().map(Into::into).collect();
        self
    }

    /// Add an annotation (label).
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.annotations.insert(key.into(), value.into());
        self
    }

    /// Set the locale.
    pub fn locale(mut self, locale: Locale) -> Self {
        self.spec.locale = locale;
        self
    }

    /// Copy `libstdc++` into the image.
    pub fn stdlib(mut self, stdlib: bool) -> Self {
        self.spec.stdlib = stdlib;
        self
    }

    /// Set a `make.conf` variable (`[env]`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.spec.env.insert(key.into(), value.into());
        self
    }

    /// Set a variable of the named environment `name` (`[env.NAME]`), creating it if needed.
    pub fn named_env(
        mut self,
        name: impl Into<String>,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.spec
            .named_envs
            .entry(name.into())
            .or_default()
            .insert(key.into(), value.into());
        self
    }

    /// Add an ebuild repository.
    pub fn repository(mut self, repository: Repository) -> Self {
        self.spec.repositories.push(repository);
        self
    }

    /// Set the settings of one package atom (replacing earlier ones for the same atom).
    pub fn package_config(mut self, atom: impl Into<String>, config: PackageConfig) -> Self {
        self.spec.package_configs.insert(atom.into(), config);
        self
    }

    /// Set the runtime settings of the image.
    pub fn image(mut self, image: ImageConfig) -> Self {
        self.spec.image = image;
        self
    }

    /// Add a binary package host (`[build] binhost`) to fetch binary packages from before building.
    pub fn binhost(mut self, url: impl Into<String>) -> Self {
        self.spec.build.binhost.push(url.into());
        self
    }

    /// Finish. The spec is not validated; call [`ImageSpec::validate`].
    pub fn build(self) -> ImageSpec {
        self.spec
    }
}
