//! The Docker backend's settings: images, cache volume, credentials, locale, engine.

use super::super::{BuildError, BuildEvent, BuildOptions, home_dir};
use crate::engine::Engine;

/// The default portage snapshot image, as in the original Staves.
pub const DEFAULT_PORTAGE_IMAGE: &str = "gentoo/portage:latest";
/// The default builder image: a Gentoo stage3.
pub const DEFAULT_BUILDER_IMAGE: &str = "gentoo/stage3:latest";

/// Runs plans in a Gentoo builder container on a Docker engine.
///
/// It holds settings only, no connection and no runtime: it can be created, shared and dropped on any thread,
/// inside or outside a Tokio runtime. Each build connects to [`DockerBuilder::engine_ref`]'s engine, and the
/// `docker` output of [`build_image`](crate::build_image) loads into that same engine.
///
/// ```no_run
/// use staves_core::DockerBuilder;
/// let builder = DockerBuilder::new("gentoo/stage3:latest")?
///     .portage_image("gentoo/portage:latest")
///     .build_cache("staves-binpkgs");
/// # Ok::<(), staves_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DockerBuilder {
    pub(super) builder_image: String,
    pub(super) portage_image: String,
    pub(super) build_cache: String,
    pub(super) ssh: bool,
    pub(super) netrc: bool,
    pub(super) locale: String,
    pub(super) engine: Engine,
    pub(super) network: Option<String>,
    pub(super) handle_ctrl_c: bool,
}

impl DockerBuilder {
    /// A backend that builds in `builder_image` (a Gentoo stage3 or compatible image).
    ///
    /// It does not fail today (nothing is checked or connected until a build starts); the `Result` is kept so
    /// that existing callers keep compiling.
    pub fn new(builder_image: impl Into<String>) -> crate::Result<Self> {
        Ok(Self {
            builder_image: builder_image.into(),
            portage_image: DEFAULT_PORTAGE_IMAGE.to_owned(),
            build_cache: super::super::DEFAULT_BUILD_CACHE.to_owned(),
            ssh: false,
            netrc: false,
            locale: "C.UTF-8".to_owned(),
            engine: Engine::default(),
            network: None,
            handle_ctrl_c: false,
        })
    }

    /// The image holding the Portage tree as a volume at `/var/db/repos/gentoo` (like `gentoo/portage`).
    pub fn portage_image(mut self, image: impl Into<String>) -> Self {
        self.portage_image = image.into();
        self
    }

    /// The named volume that keeps binary packages between builds (created when missing, never removed).
    pub fn build_cache(mut self, volume: impl Into<String>) -> Self {
        self.build_cache = volume.into();
        self
    }

    /// Mount `~/.ssh` read-only at `/root/.ssh` when it exists (for private git repositories).
    pub fn ssh(mut self, enabled: bool) -> Self {
        self.ssh = enabled;
        self
    }

    /// Mount `~/.netrc` read-only at `/root/.netrc` when it exists.
    pub fn netrc(mut self, enabled: bool) -> Self {
        self.netrc = enabled;
        self
    }

    /// `LANG` inside the builder.
    pub fn locale(mut self, locale: impl Into<String>) -> Self {
        self.locale = locale.into();
        self
    }

    /// The engine address (`unix://…`, `tcp://…`); `DOCKER_HOST` or the local socket when `None`. Builds run
    /// there, and the `docker` output loads there.
    pub fn docker_host(mut self, host: Option<String>) -> Self {
        self.engine = Engine::new(host);
        self
    }

    /// The engine to build on (and to load the `docker` output into).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// Attach the builder container to this Docker network (instead of the default bridge), so that a binhost,
    /// registry mirror or git server on that network is reachable by its container name.
    pub fn network(mut self, network: Option<String>) -> Self {
        self.network = network.filter(|n| !n.is_empty());
        self
    }

    /// The Docker network the builder joins, if one was given.
    pub fn network_name(&self) -> Option<&str> {
        self.network.as_deref()
    }

    /// Cancel the build on Ctrl-C (SIGINT), removing its containers. For simple command-line programs; the
    /// `staves` command and the Python module handle signals themselves and cancel through
    /// [`BuildOptions::cancel`].
    pub fn cancel_on_ctrl_c(mut self, enabled: bool) -> Self {
        self.handle_ctrl_c = enabled;
        self
    }

    /// The builder image.
    pub fn builder_image_name(&self) -> &str {
        &self.builder_image
    }

    /// The portage snapshot image.
    pub fn portage_image_name(&self) -> &str {
        &self.portage_image
    }

    /// The engine address given with [`DockerBuilder::docker_host`], if any.
    pub fn docker_host_address(&self) -> Option<&str> {
        self.engine.host()
    }

    /// The engine this backend builds on.
    pub fn engine_ref(&self) -> &Engine {
        &self.engine
    }

    /// Read-only binds for `~/.ssh` and `~/.netrc`, when enabled and present.
    ///
    /// A bind mount names a path on the engine's host, so with a remote engine (`tcp://`) nothing is bound: the
    /// paths would be the engine host's, not this machine's (and the engine would create them empty).
    pub(super) fn credential_binds(&self, options: &BuildOptions) -> crate::Result<Vec<String>> {
        let mut binds = Vec::new();
        let address = self.engine.address();
        if !address.starts_with("unix://") {
            if self.ssh || self.netrc {
                options.emit(BuildEvent::Preparing {
                    message: format!(
                        "the engine at {address} is remote: not mounting ~/.ssh or ~/.netrc (a bind mount would \
                         name a path on the engine's host)"
                    ),
                });
            }
            return Ok(binds);
        }
        let wanted = [
            (self.ssh, ".ssh", "/root/.ssh"),
            (self.netrc, ".netrc", "/root/.netrc"),
        ];
        for (enabled, name, target) in wanted {
            if !enabled {
                continue;
            }
            let Some(home) = home_dir() else {
                options.emit(BuildEvent::Preparing {
                    message: format!("HOME is not set: not mounting ~/{name}"),
                });
                continue;
            };
            let source = home.join(name);
            match std::fs::symlink_metadata(&source) {
                Ok(_) => binds.push(format!("{}:{target}:ro", source.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    options.emit(BuildEvent::Preparing {
                        message: format!("{} does not exist: not mounting it", source.display()),
                    });
                }
                Err(source_err) => {
                    return Err(BuildError::Io {
                        context: format!(
                            "checking {} for --{}",
                            source.display(),
                            name.trim_start_matches('.')
                        ),
                        source: source_err,
                    }
                    .into());
                }
            }
        }
        Ok(binds)
    }
}
