//! The whole build: spec → plan → builder → image writer. The CLI and the Python module call [`build_image`].

use crate::builder::{BuildOptions, BuildReport, Builder};
use crate::image::{Compression, ImageReport, ImageWriter, Output};
use crate::plan::BuildPlan;
use crate::plan::PlanOptions;
use crate::spec::ImageSpec;
use crate::store::{BuildKey, ImageStore, StoredBuild, StoredLayer};
use serde::Serialize;
use std::io::Read;
use std::time::Instant;

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
    /// The local image store: an unchanged spec is served from it without a container, and every build's layer
    /// is kept in it. `None`: no store.
    pub store: Option<ImageStore>,
    /// Build even when the store has an image with this build's key.
    pub rebuild: bool,
    /// Reuse a stored image of a spec with `[[repositories]]` too (whose remotes may have changed: without this,
    /// such a spec always builds, and syncs them).
    pub offline: bool,
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
            store: None,
            rebuild: false,
            offline: false,
        }
    }

    /// Use `store` as the local image store (`None`: no store).
    pub fn store(mut self, store: Option<ImageStore>) -> Self {
        self.store = store;
        self
    }

    /// Build even when the store has an image with this build's key.
    pub fn rebuild(mut self, rebuild: bool) -> Self {
        self.rebuild = rebuild;
        self
    }

    /// Reuse stored images of specs with `[[repositories]]` without syncing them.
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
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
    /// The build: packages, steps, timings. When the image came from the store, only `packages` and
    /// `total_duration` are filled in: no step ran.
    pub report: BuildReport,
    /// Set when the image came from the local image store and no build ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused: Option<ReusedImage>,
    /// The build key (`sha256:…`), when the request had a store and the builder could name its images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_key: Option<String>,
}

/// An image served from the local image store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReusedImage {
    /// The build key that matched.
    pub key: String,
    /// When the stored rootfs was built (unix seconds).
    pub built: u64,
    /// Why the store was used: the spec's rootfs inputs are unchanged.
    pub reason: String,
}

/// Whether a stored image may stand for a build of `spec` (see [`crate::store`]).
fn reuse_allowed(spec: &ImageSpec, request: &BuildRequest) -> bool {
    !request.rebuild && (spec.repositories.is_empty() || request.offline)
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
    let started = Instant::now();
    let plan = BuildPlan::new(spec, &request.plan_options())?;
    let store = request.store.as_ref();
    let key = match store {
        Some(_) => builder
            .key_context()?
            .map(|context| BuildKey::new(spec, &context)),
        None => None,
    };
    let writer = ImageWriter::new(spec)
        .compression(request.compression)
        .docker_host(request.docker_host.clone())
        .keep_layers_in(key.as_ref().and(store.cloned()));
    if let (Some(store), Some(key)) = (store, &key) {
        if reuse_allowed(spec, request) {
            if let Some(stored) = store.lookup(key) {
                return serve_stored(store, key, &stored, &writer, request, started);
            }
        }
    }
    let mut image = None;
    let report = builder.build(&plan, options, &mut |rootfs: &mut dyn Read| {
        image = Some(writer.write_tar(rootfs, &request.outputs)?);
        Ok(())
    })?;
    let image = image.ok_or_else(|| {
        crate::builder::BuildError::Export("the builder never produced a rootfs".into())
    })?;
    if let (Some(store), Some(key)) = (store, &key) {
        remember(store, key, spec, &image, request.compression, &report);
    }
    Ok(BuildOutcome {
        image,
        report,
        reused: None,
        build_key: key.map(|k| k.digest),
    })
}

/// Write the request's outputs from the stored rootfs of `key`: no builder, no container.
fn serve_stored(
    store: &ImageStore,
    key: &BuildKey,
    stored: &StoredBuild,
    writer: &ImageWriter,
    request: &BuildRequest,
    started: Instant,
) -> crate::Result<BuildOutcome> {
    let layer = stored
        .layer(request.compression)
        .or_else(|| stored.layers.first())
        .ok_or_else(|| {
            crate::builder::BuildError::Export("the stored build has no layer".into())
        })?;
    let image = writer.write_stored(store, layer, &request.outputs)?;
    let mut used = stored.clone();
    if layer.compression != request.compression {
        // The layer was compressed again for this request; keep that one too.
        if let Some(again) = stored_layer(store, &image, request.compression) {
            used.layers.retain(|l| l.compression != again.compression);
            used.layers.push(again);
        }
    }
    store.touch(&used);
    let report = BuildReport {
        packages: stored.packages.clone(),
        total_duration: started.elapsed(),
        ..BuildReport::default()
    };
    Ok(BuildOutcome {
        image,
        report,
        reused: Some(ReusedImage {
            key: key.digest.clone(),
            built: stored.created,
            reason: "the spec's rootfs inputs and the builder and Portage images are unchanged"
                .to_owned(),
        }),
        build_key: Some(key.digest.clone()),
    })
}

/// The layer `image` was written with, when the writer kept it in `store`.
fn stored_layer(
    store: &ImageStore,
    image: &ImageReport,
    compression: Compression,
) -> Option<StoredLayer> {
    let blob = store.blob_path(&image.layer_digest)?;
    blob.exists().then(|| StoredLayer {
        digest: image.layer_digest.clone(),
        diff_id: image.diff_id.clone(),
        size: image.layer_size,
        uncompressed_size: image.uncompressed_size,
        compression,
    })
}

/// Record a finished build in the store (best effort: the image is written whatever happens here).
fn remember(
    store: &ImageStore,
    key: &BuildKey,
    spec: &ImageSpec,
    image: &ImageReport,
    compression: Compression,
    report: &BuildReport,
) {
    if let Some(layer) = stored_layer(store, image, compression) {
        let record = crate::store::record_for(store, key, spec, layer, report.packages.clone());
        let _ = store.put_record(&record);
    }
}
