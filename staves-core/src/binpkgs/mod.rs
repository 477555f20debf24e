//! The build cache volume's binary packages from outside a build: what `staves cache` lists, prunes, clears and
//! measures ([`BinpkgCache`]), and `staves cache export` ([`export_binhost`]). Each operation runs in a short-lived
//! container of the builder image that is removed whatever happens.

mod export;
mod volume;

pub use export::{BinhostExport, export_binhost, export_binhost_async};

use crate::cache::{
    BinpkgClearReport, BinpkgListing, BinpkgPrune, BinpkgPruneReport, BinpkgUsage, CacheError,
};

/// A build cache volume (`--build-cache`), inspected and cleaned in short-lived containers of the builder image.
///
/// ```no_run
/// use staves_core::BinpkgCache;
/// let cache = BinpkgCache::new("staves-binpkgs", "gentoo/stage3:latest");
/// for package in cache.list()?.packages {
///     println!("{} {:?} {}", package.cpv, package.fingerprint, package.size);
/// }
/// # Ok::<(), staves_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinpkgCache {
    volume: String,
    builder_image: String,
    docker_host: Option<String>,
}

impl BinpkgCache {
    /// The volume `volume`, handled in containers of `builder_image` (it must be in the engine: it is not pulled).
    pub fn new(volume: impl Into<String>, builder_image: impl Into<String>) -> Self {
        Self {
            volume: volume.into(),
            builder_image: builder_image.into(),
            docker_host: None,
        }
    }

    /// The engine address (`DOCKER_HOST` or the local socket when `None`).
    pub fn docker_host(mut self, host: Option<String>) -> Self {
        self.docker_host = host;
        self
    }

    /// The volume's name.
    pub fn volume(&self) -> &str {
        &self.volume
    }

    fn run<T: serde::de::DeserializeOwned>(
        &self,
        read_only: bool,
        args: &[String],
    ) -> crate::Result<T> {
        let output = volume::run(
            self.docker_host.as_deref(),
            &self.builder_image,
            &self.volume,
            read_only,
            args,
        )?;
        let line = output
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("");
        serde_json::from_str(line).map_err(|e| {
            CacheError::Output {
                reason: e.to_string(),
                output: output.stdout.clone(),
            }
            .into()
        })
    }

    /// Every binary package instance, with its USE flags, build environment fingerprint, size and build time.
    pub fn list(&self) -> crate::Result<BinpkgListing> {
        let mut listing: BinpkgListing = self.run(true, &["list".to_owned()])?;
        listing.volume = self.volume.clone();
        Ok(listing)
    }

    /// Remove the instances `rule` does not keep (through Portage, so the volume's index stays consistent).
    pub fn prune(&self, rule: BinpkgPrune, dry_run: bool) -> crate::Result<BinpkgPruneReport> {
        let options = match rule {
            BinpkgPrune::KeepLast(n) => serde_json::json!({"keep_last": n, "dry_run": dry_run}),
            BinpkgPrune::OlderThan(t) => serde_json::json!({"older_than": t, "dry_run": dry_run}),
        };
        self.run(dry_run, &["prune".to_owned(), options.to_string()])
    }

    /// Remove every file in the volume (the volume itself stays).
    pub fn clear(&self, dry_run: bool) -> crate::Result<BinpkgClearReport> {
        let mut args = vec!["clear".to_owned()];
        if dry_run {
            args.push("--dry-run".to_owned());
        }
        self.run(dry_run, &args)
    }

    /// How much space the volume takes.
    pub fn disk_usage(&self) -> crate::Result<BinpkgUsage> {
        self.run(true, &["du".to_owned()])
    }
}
