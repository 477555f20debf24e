//! The whole build: spec → plan → builder → image writer. The CLI and the Python module call [`build_image`];
//! async programs call [`build_image_async`].

use crate::builder::{BuildError, BuildEvent, BuildOptions, BuildReport, Builder, RootfsSink};
use crate::engine::Engine;
use crate::image::{Compression, ImageReport, ImageWriter, Output, PreparedImage};
use crate::plan::BuildPlan;
use crate::plan::PlanOptions;
use crate::spec::ImageSpec;
use serde::Serialize;
use std::time::Duration;

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
    /// The engine of the `docker` output for a backend that has none of its own (the mock). A
    /// [`DockerBuilder`](crate::DockerBuilder) always loads into the engine it builds on, and this is ignored.
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

    /// The engine of the `docker` output when the backend has none (the mock); a `DockerBuilder` uses its own.
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

/// Build `spec` with `builder` and write the image to the request's outputs, from sync code.
///
/// Works from any thread, including a Tokio runtime's worker (the build then runs on a private runtime on a
/// helper thread, and this thread waits). Cancel it from any thread with [`BuildOptions::cancel`]. See
/// [`build_image_async`] for what is written when.
pub fn build_image(
    spec: &ImageSpec,
    builder: &dyn Builder,
    request: &BuildRequest,
    options: &BuildOptions,
) -> crate::Result<BuildOutcome> {
    crate::engine::block_on(build_image_async(spec, builder, request, options))?
}

/// Build `spec` with `builder` and write the image to the request's outputs.
///
/// The spec is validated first. The image is written only after every step succeeded, straight from the
/// builder's rootfs stream, on a blocking thread. Every output is all-or-nothing: files are written under
/// temporary names next to their destinations and renamed at the end; the `docker` output is loaded untagged and
/// tagged last. A failed, cancelled or dropped build leaves no output, no tag and (once its background cleanup
/// has run, within seconds) no container or volume.
///
/// Must run inside a Tokio runtime. Dropping the future cancels the build. A cancel (through
/// [`BuildOptions::cancel`]) that arrives once the outputs are being committed is too late: the build then
/// succeeds, and says so.
pub async fn build_image_async(
    spec: &ImageSpec,
    builder: &dyn Builder,
    request: &BuildRequest,
    options: &BuildOptions,
) -> crate::Result<BuildOutcome> {
    if request.outputs.is_empty() {
        return Err(crate::image::ImageError::NoOutputs.into());
    }
    let plan = BuildPlan::new(spec, &request.plan_options())?.with_binhosts(&request.binhosts)?;
    let (options, queue) = options.queued();
    let result = run(&plan, spec, builder, request, &options).await;
    if let Some(queue) = queue {
        queue.finish().await;
    }
    result
}

async fn run(
    plan: &BuildPlan,
    spec: &ImageSpec,
    builder: &dyn Builder,
    request: &BuildRequest,
    options: &BuildOptions,
) -> crate::Result<BuildOutcome> {
    let engine = builder
        .engine()
        .cloned()
        .unwrap_or_else(|| Engine::new(request.docker_host.clone()));
    let writer = ImageWriter::new(spec)
        .compression(request.compression)
        .engine(engine)
        .registry(request.registry.clone())
        .cancel(options.cancel.clone());
    let (sender, receiver) = tokio::sync::oneshot::channel::<PreparedImage>();
    let outputs = request.outputs.clone();
    let sink = RootfsSink::new(move |rootfs| {
        let prepared = writer.prepare_tar(rootfs, &outputs)?;
        // The receiver is gone only when the build was dropped; the prepared image then deletes itself.
        let _ = sender.send(prepared);
        Ok(())
    });
    let report = builder.build(plan, options, sink).await?;
    let mut prepared = receiver.await.map_err(|_| BuildError::NoRootfs)?;

    let docker = if prepared.wants_engine() {
        Some(prepared.engine().connect().await?)
    } else {
        None
    };
    if let Some(docker) = &docker {
        // Not cancellable: a load cut short may still complete in the engine. It is undone below instead.
        prepared.load(docker).await?;
    }
    // The registry blobs too (no remote tag yet): a cancel now still leaves nothing tagged anywhere.
    if let Err(err) = prepared.upload().await {
        let _ = prepared.discard(docker.as_ref()).await;
        return Err(err);
    }
    test_pause("write", options).await;
    if options.cancel.is_cancelled() {
        prepared
            .discard(docker.as_ref())
            .await
            .map_err(|e| BuildError::LeftBehind {
                build_id: report.build_id.clone(),
                reason: e.to_string(),
                cause: Some(Box::new(BuildError::Interrupted.into())),
            })?;
        return Err(BuildError::Interrupted.into());
    }
    // The commit: from here on a cancel is too late, and the build reports what it wrote.
    let image = prepared.commit(docker.as_ref()).await?;
    Ok(BuildOutcome { image, report })
}

/// The environment variable that makes a build pause at a named point, for tests only: `STAVES_TEST_PAUSE=POINT`
/// waits up to 5 s at POINT (`setup`: between creating the snapshot and the builder container; `write`: with the
/// outputs written to temporary files and the `docker` output loaded, before the commit), ending early on cancel.
/// It emits a [`BuildEvent::Preparing`] naming the point, so a test can send a signal at exactly that moment.
pub(crate) const TEST_PAUSE_VAR: &str = "STAVES_TEST_PAUSE";

/// Pause at `point` when [`TEST_PAUSE_VAR`] names it (tests only).
pub(crate) async fn test_pause(point: &str, options: &BuildOptions) {
    if std::env::var(TEST_PAUSE_VAR).ok().as_deref() != Some(point) {
        return;
    }
    options.emit(BuildEvent::Preparing {
        message: format!("test pause at {point} ({TEST_PAUSE_VAR})"),
    });
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
        () = options.cancel.cancelled() => {}
    }
}
