//! The whole build: spec → plan → builder → image writer. The CLI and the Python module call [`build_image`].

use crate::builder::{BuildOptions, BuildReport, Builder};
use crate::image::{Compression, ImageReport, ImageWriter, Output};
use crate::plan::BuildPlan;
use crate::plan::PlanOptions;
use crate::spec::ImageSpec;
use serde::Serialize;
use std::io::Read;

/// What to produce from a build, besides the spec itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildRequest {
    /// Where to write the image (at least one).
    pub outputs: Vec<Output>,
    /// Parallel jobs for emerge and make; the number of CPUs when `None`.
    pub jobs: Option<usize>,
    /// emerge's `--load-average` limit; none when `None` (see [`PlanOptions::load_average`]).
    pub load_average: Option<f64>,
    /// Layer compression.
    pub compression: Compression,
    /// The engine that the `docker` output loads into (`DOCKER_HOST` or the local socket when `None`).
    pub docker_host: Option<String>,
    /// TLS and credential settings for `docker://` outputs.
    pub registry: crate::registry::RegistryOptions,
    /// Binary package hosts to fetch from before building (see [`BuildPlan::with_binhosts`]).
    pub binhosts: Vec<String>,
}

impl BuildRequest {
    /// A request writing to `outputs`, with gzip layers and one job per CPU.
    pub fn new(outputs: Vec<Output>) -> Self {
        Self {
            outputs,
            jobs: None,
            load_average: None,
            compression: Compression::Gzip,
            docker_host: None,
            registry: crate::registry::RegistryOptions::default(),
            binhosts: Vec::new(),
        }
    }

    /// Parallel jobs (`None`: one per CPU).
    pub fn jobs(mut self, jobs: Option<usize>) -> Self {
        self.jobs = jobs;
        self
    }

    /// emerge's `--load-average` limit (`None`: no limit).
    pub fn load_average(mut self, load: Option<f64>) -> Self {
        self.load_average = load;
        self
    }

    /// Layer compression.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// The engine for the `docker` output.
    pub fn docker_host(mut self, host: Option<String>) -> Self {
        self.docker_host = host;
        self
    }

    /// TLS and credential settings for `docker://` outputs.
    pub fn registry(mut self, options: crate::registry::RegistryOptions) -> Self {
        self.registry = options;
        self
    }

    /// Fetch binary packages from these binhosts (in order) before building; what they lack is built from source.
    pub fn binhosts(mut self, urls: Vec<String>) -> Self {
        self.binhosts = urls;
        self
    }

    fn plan_options(&self) -> PlanOptions {
        PlanOptions::new(self.jobs, self.load_average)
    }
}

/// The result of a successful build: what the builder did, and the image it became.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BuildOutcome {
    /// The image: digests, size, destinations.
    pub image: ImageReport,
    /// The build: packages, steps, timings.
    pub report: BuildReport,
}

/// Build `spec` with `builder` and write the image to the request's outputs.
///
/// The spec is validated first. The image is written only after every step succeeded, straight from the builder's
/// rootfs stream; a failed or interrupted build writes and tags nothing.
pub fn build_image(
    spec: &ImageSpec,
    builder: &dyn Builder,
    request: &BuildRequest,
    options: &BuildOptions,
) -> crate::Result<BuildOutcome> {
    if request.outputs.is_empty() {
        return Err(crate::image::ImageError::NoOutputs.into());
    }
    let plan = BuildPlan::new(spec, &request.plan_options())?.with_binhosts(&request.binhosts)?;
    let writer = ImageWriter::new(spec)
        .compression(request.compression)
        .docker_host(request.docker_host.clone())
        .registry(request.registry.clone());
    let mut image = None;
    let report = builder.build(&plan, options, &mut |rootfs: &mut dyn Read| {
        image = Some(writer.write_tar(rootfs, &request.outputs)?);
        Ok(())
    })?;
    let image = image.ok_or_else(|| {
        crate::builder::BuildError::Export("the builder never produced a rootfs".into())
    })?;
    Ok(BuildOutcome { image, report })
}
