//! The whole build: spec → plan → builder → image writer. The CLI and the Python module call [`build_image`];
//! async programs call [`build_image_async`].

use crate::advisory::AdvisoryMatch;
use crate::builder::{
    BuildError, BuildEvent, BuildOptions, BuildReport, Builder, RootfsSink, test_pause,
};
use crate::engine::Engine;
use crate::image::{Compression, ImageReport, ImageWriter, Output, PreparedImage};
use crate::lock::lock_path_for;
use crate::locking::{LockOptions, LockReport, LockedBuild};
use crate::plan::BuildPlan;
use crate::plan::PlanOptions;
use crate::sbom::{Sbom, SbomError, SbomFormat, SizeReport};
use crate::spec::ImageSpec;
use crate::store::{BuildKey, ImageStore, StoreError, StoreLookup, StoredBuild, StoredLayer};
use serde::Serialize;
use std::path::PathBuf;
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
    /// The engine of the `docker` output for a backend that has none of its own (the mock). A
    /// [`DockerBuilder`](crate::DockerBuilder) always loads into the engine it builds on, and this is ignored.
    pub docker_host: Option<String>,
    /// The local image store: an unchanged spec is served from it without a container, and every build's layer
    /// is kept in it. `None`: no store.
    pub store: Option<ImageStore>,
    /// Build even when the store has an image with this build's key.
    pub rebuild: bool,
    /// Reuse a stored image of a spec with `[[repositories]]` too (whose remotes may have changed: without this,
    /// such a spec always builds, and syncs them).
    pub offline: bool,
    /// Where `staves.lock` is and how to treat it (by default: next to the spec, used when present).
    pub lock: LockOptions,
    /// TLS and credential settings for `docker://` outputs.
    pub registry: crate::registry::RegistryOptions,
    /// Binary package hosts to fetch from before building (see [`BuildPlan::with_binhosts`]).
    pub binhosts: Vec<String>,
    /// A binhost download that receives no byte for this long fails (see [`PlanOptions::binhost_idle_timeout`]).
    pub binhost_idle_timeout: std::time::Duration,
    /// A binhost download that takes longer than this fails (see [`PlanOptions::binhost_timeout`]).
    pub binhost_timeout: std::time::Duration,
    /// Also write the SBOM to this file (all-or-nothing, like the image outputs).
    pub sbom: Option<PathBuf>,
    /// The format of [`BuildRequest::sbom`].
    pub sbom_format: SbomFormat,
    /// Where to keep the SPDX SBOM of images loaded into the engine, by image ID (`None`: nowhere). Defaults to
    /// [`crate::sbom::store_dir`].
    pub sbom_store: Option<PathBuf>,
    /// Fail, before anything is tagged, written or pushed, when a security advisory of the snapshot applies.
    pub deny_advisories: bool,
    /// Merge phase-less binary packages into the rootfs directly (see [`PlanOptions::direct_merge`]); on by
    /// default. Off: every package goes through emerge's own merge.
    pub direct_merge: bool,
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
            lock: LockOptions::default(),
            registry: crate::registry::RegistryOptions::default(),
            binhosts: Vec::new(),
            binhost_idle_timeout: crate::binhost::DEFAULT_FETCH_IDLE_TIMEOUT,
            binhost_timeout: crate::binhost::DEFAULT_FETCH_TIMEOUT,
            sbom: None,
            sbom_format: SbomFormat::SpdxJson,
            sbom_store: crate::sbom::store_dir(),
            deny_advisories: false,
            direct_merge: true,
        }
    }

    /// Write the SBOM to `path` in `format` too.
    pub fn sbom(mut self, path: Option<PathBuf>, format: SbomFormat) -> Self {
        self.sbom = path;
        self.sbom_format = format;
        self
    }

    /// Keep the SPDX SBOM of `docker` outputs in `dir` (`None`: nowhere).
    pub fn sbom_store(mut self, dir: Option<PathBuf>) -> Self {
        self.sbom_store = dir;
        self
    }

    /// Fail before writing anything when a security advisory applies.
    pub fn deny_advisories(mut self, deny: bool) -> Self {
        self.deny_advisories = deny;
        self
    }

    /// How to treat `staves.lock`.
    pub fn lock(mut self, lock: LockOptions) -> Self {
        self.lock = lock;
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

    /// Merge phase-less binary packages into the rootfs directly (`true`, the default), or every package through
    /// emerge (`false`); see [`PlanOptions::direct_merge`].
    pub fn direct_merge(mut self, on: bool) -> Self {
        self.direct_merge = on;
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

    /// Fail a binhost download after `idle` without a byte, or after `total` in all.
    pub fn binhost_timeouts(
        mut self,
        idle: std::time::Duration,
        total: std::time::Duration,
    ) -> Self {
        self.binhost_idle_timeout = idle;
        self.binhost_timeout = total;
        self
    }

    /// Check the outputs before anything is built: at least one; no two of them (nor an output and the SBOM file)
    /// on one path ([`crate::ImageError::OutputConflict`], a usage error); each a destination Staves can write.
    pub fn check(&self) -> crate::Result<()> {
        if self.outputs.is_empty() {
            return Err(crate::image::ImageError::NoOutputs.into());
        }
        crate::image::check_outputs(&self.outputs, self.sbom.as_deref())?;
        Ok(())
    }

    fn plan_options(&self) -> PlanOptions {
        PlanOptions::new(self.jobs, self.load_average)
            .direct_merge(self.direct_merge)
            .binhost_timeouts(self.binhost_idle_timeout, self.binhost_timeout)
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
    /// Whether the build was locked, and what changed in the lock.
    pub lock: LockReport,
    /// Set when the image came from the local image store and no build ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused: Option<ReusedImage>,
    /// The build key (`sha256:…`), when the request had a store and the builder could name its images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_key: Option<String>,
    /// The SBOM of the image (naming its manifest digest), when the backend reads the package database (the
    /// Docker backend does; the mock does not). Not in the JSON report: render it with [`Sbom::render`].
    #[serde(skip)]
    pub sbom: Option<Sbom>,
    /// The packages by installed size, the total and what Staves added (from the SBOM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<SizeReport>,
    /// The security advisories of the snapshot that apply to the installed packages.
    pub advisories: Vec<AdvisoryMatch>,
    /// Where the SBOM was written (`--sbom`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbom_file: Option<PathBuf>,
    /// What this build could not do with the local image store, and why: a stored image that could not be used
    /// (damaged, and then rebuilt), a store that cannot be written, a layer that could not be kept. Each was also
    /// sent as a [`BuildEvent::Warning`] when it happened.
    pub store_warnings: Vec<String>,
}

/// What the SBOM of a build records besides what the builder learnt: the image's name and tag, the images it was
/// built with, the lock, and the creation time.
#[derive(Debug, Clone)]
struct SbomBase {
    name: String,
    tag: String,
    builder_image: String,
    portage_image: String,
    lock_hash: Option<String>,
    /// For a build that may rewrite the lock: what decides the lock's final hash, known once the resolve step ran.
    lock_outcome: Option<crate::locking::LockOutcomeHash>,
    created: i64,
}

/// What the SBOM needs from a build (or from the stored record of one).
struct SbomFacts<'a> {
    packages: &'a [crate::portage::InstalledPackage],
    added_files: &'a [crate::sbom::AddedFile],
    builder_image_id: Option<&'a str>,
    portage_image_id: Option<&'a str>,
    portage_timestamp: Option<&'a str>,
}

impl SbomBase {
    /// The base for `spec` built with `builder`; `None` when the backend names no images (the mock): it reads
    /// no package database, and there is nothing to describe.
    fn new(spec: &ImageSpec, builder: &dyn Builder, locked: Option<&LockedBuild>) -> Option<Self> {
        Some(Self {
            name: spec.name.clone(),
            tag: spec.version.clone(),
            builder_image: builder.builder_image()?.to_owned(),
            portage_image: builder.portage_image()?.to_owned(),
            lock_hash: locked.map(LockedBuild::pins_hash),
            lock_outcome: locked.map(LockedBuild::outcome_hash),
            created: crate::platform::source_date_epoch(),
        })
    }

    /// The SBOM of an image not yet written (its manifest digest empty).
    fn sbom(&self, facts: &SbomFacts<'_>) -> Sbom {
        let mut packages = facts.packages.to_vec();
        packages.sort_by(|a, b| a.cpv.cmp(&b.cpv));
        // Whether a package came from a binary package differs between two builds of the same rootfs; the SBOM
        // describes the image only.
        for p in &mut packages {
            p.binary = None;
        }
        Sbom {
            name: self.name.clone(),
            tag: self.tag.clone(),
            manifest_digest: String::new(),
            builder_image: self.builder_image.clone(),
            builder_image_id: facts.builder_image_id.map(str::to_owned),
            portage_image: self.portage_image.clone(),
            portage_image_id: facts.portage_image_id.map(str::to_owned),
            portage_timestamp: facts.portage_timestamp.map(str::to_owned),
            staves_version: env!("CARGO_PKG_VERSION").to_owned(),
            created: self.created,
            lock_hash: self.lock_hash.clone(),
            packages,
            added_files: facts.added_files.to_vec(),
            unreadable: Vec::new(),
        }
    }
}

/// The SBOM of a build and the advisories that apply, before the image is written.
struct BuildSbom {
    sbom: Sbom,
    advisories: Vec<AdvisoryMatch>,
}

impl BuildSbom {
    /// Refuse when advisories apply and the request denies them; else `writer` with the SBOM's label and referrer.
    fn attach(&self, writer: ImageWriter, deny: bool) -> crate::Result<ImageWriter> {
        if deny && !self.advisories.is_empty() {
            return Err(crate::advisory::AdvisoryError::Denied {
                advisories: self.advisories.clone(),
            }
            .into());
        }
        let sbom = self.sbom.clone();
        Ok(writer
            .label(crate::sbom::SBOM_LABEL, self.sbom.content_digest())
            .referrer(std::sync::Arc::new(move |digest: &str| {
                Ok(crate::image::Referrer::new(
                    crate::sbom::SPDX_MEDIA_TYPE,
                    crate::sbom::SPDX_TITLE,
                    sbom.with_manifest_digest(digest)
                        .to_spdx_json()
                        .into_bytes(),
                ))
            })))
    }
}

/// Render the `--sbom` file of `prepared` and write it with its outputs: to a temporary file now, made visible by
/// the commit (all-or-nothing with the image). Returns where it will be.
fn prepare_sbom_file(
    request: &BuildRequest,
    sbom: Option<&Sbom>,
    prepared: &mut PreparedImage,
) -> crate::Result<Option<PathBuf>> {
    let (Some(path), Some(sbom)) = (&request.sbom, sbom) else {
        return Ok(None);
    };
    let text = sbom
        .with_manifest_digest(&prepared.digest())
        .render(request.sbom_format)?;
    prepared.add_file(
        path,
        text.as_bytes(),
        format!("the SBOM file {}", path.display()),
    )?;
    Ok(Some(path.clone()))
}

/// After the commit (which wrote the `--sbom` file, `sbom_file`): keep the SPDX document of a `docker` output in
/// the local SBOM store (best effort: the store is a cache).
fn finish_sbom(
    request: &BuildRequest,
    image: &ImageReport,
    sbom_file: Option<PathBuf>,
    sbom: Option<&Sbom>,
) -> crate::Result<(Option<Sbom>, Option<PathBuf>)> {
    let sbom = sbom.map(|s| s.with_manifest_digest(&image.digest));
    if let (Some(sbom), Some(dir)) = (&sbom, &request.sbom_store) {
        if request.outputs.contains(&Output::Docker) {
            let _ = crate::sbom::save_stored(dir, &image.config_digest, &sbom.to_spdx_json());
        }
    }
    Ok((sbom, sbom_file))
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
/// [`BuildOptions::cancel`]) stops a registry push where it is, the blob uploads before the commit (nothing is
/// tagged then) as the manifests during it; otherwise one that arrives once the outputs are being committed is too
/// late: the build then succeeds, and says so.
pub async fn build_image_async(
    spec: &ImageSpec,
    builder: &dyn Builder,
    request: &BuildRequest,
    options: &BuildOptions,
) -> crate::Result<BuildOutcome> {
    // Two outputs on one path, or one Staves cannot write, are refused before anything is built.
    request.check()?;
    // The lock is read (and a missing or stale one refused under --locked) before any container exists.
    let locked = LockedBuild::prepare(spec, &request.lock)?;
    let (plan, options) = match &locked {
        Some(locked) => (
            locked.plan(spec, &request.plan_options())?,
            options.clone().with_output_check(locked.output_check()),
        ),
        None => (
            BuildPlan::new(spec, &request.plan_options())?,
            options.clone(),
        ),
    };
    let plan = plan.with_binhosts(&request.binhosts)?;
    let (options, queue) = options.queued();
    let result = run(&plan, spec, builder, request, &options, locked).await;
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
    locked: Option<LockedBuild>,
) -> crate::Result<BuildOutcome> {
    let started = Instant::now();
    let engine = builder
        .engine()
        .cloned()
        .unwrap_or_else(|| Engine::new(request.docker_host.clone()));
    let sbom_base = SbomBase::new(spec, builder, locked.as_ref());
    if request.sbom.is_some() && sbom_base.is_none() {
        return Err(SbomError::Unavailable {
            reason:
                "this build backend does not read the package database (use the Docker backend)"
                    .into(),
        }
        .into());
    }
    let store = request.store.as_ref();
    let key = match store {
        Some(_) => builder.key_context().await?.map(|context| {
            BuildKey::new(
                spec,
                &context.lock(locked.as_ref().map(LockedBuild::pins_hash)),
            )
        }),
        None => None,
    };
    let mut store_warnings = Vec::new();
    // A store that cannot be written still serves what it holds; the build goes on, and says it will not be kept.
    let keep = match store
        .filter(|_| key.is_some())
        .map(ImageStore::check_writable)
    {
        Some(Err(err)) => {
            store_warning(
                options,
                &mut store_warnings,
                format!(
                    "{err}\n  the build goes on, but its image will not be kept in the local image store, so \
                     a rebuild of this spec will not be served from it\n  \
                     help: make the store's directory writable, or use another one"
                ),
            );
            false
        }
        _ => true,
    };
    let writer = ImageWriter::new(spec)
        .compression(request.compression)
        .engine(engine)
        .registry(request.registry.clone())
        .cancel(options.cancel.clone())
        .keep_layers_in(key.as_ref().and(store.cloned()).filter(|_| keep))
        .journal_in(
            store
                .map(|s| s.path().to_owned())
                .or_else(ImageStore::default_dir),
        );
    if let (Some(store), Some(key)) = (store, &key) {
        if reuse_allowed(spec, request) && locked.as_ref().is_none_or(LockedBuild::reusable) {
            let served = serve_verified(
                store,
                key,
                writer.clone(),
                request,
                options,
                started,
                sbom_base.as_ref(),
                &mut store_warnings,
            )
            .await?;
            if let Some(mut outcome) = served {
                outcome.lock = match locked {
                    Some(locked) => locked.unchanged(),
                    None => unlocked_report(spec, request),
                };
                outcome.store_warnings = store_warnings;
                return Ok(outcome);
            }
        }
    }
    let (sender, receiver) = tokio::sync::oneshot::channel::<(PreparedImage, Option<BuildSbom>)>();
    let outputs = request.outputs.clone();
    let sink_writer = writer.clone();
    let deny = request.deny_advisories;
    let sink = RootfsSink::with_report(move |rootfs, report| {
        // The SBOM and the advisory check come from what the builder learnt, before the image is written: the
        // referrer and the label are part of it, and a denied advisory must stop the build before any output.
        let build_sbom = sbom_base.map(|mut base| {
            // The SBOM names the lock as this build leaves it: rewritten when the spec or the resolution changed.
            if let Some(outcome) = &base.lock_outcome {
                base.lock_hash = Some(outcome.hash(
                    report.builder_image_id.as_deref(),
                    report.portage_image_id.as_deref(),
                ));
            }
            let sbom = base.sbom(&SbomFacts {
                packages: &report.packages,
                added_files: &report.added_files,
                builder_image_id: report.builder_image_id.as_deref(),
                portage_image_id: report.portage_image_id.as_deref(),
                portage_timestamp: report.portage_timestamp.as_deref(),
            });
            let advisories = crate::audit::check_sbom(&sbom, &report.snapshot_advisories);
            BuildSbom { sbom, advisories }
        });
        if let (true, Some(reason)) = (deny, &report.advisories_unreadable) {
            return Err(crate::advisory::AdvisoryError::Invalid {
                origin: "the portage snapshot's metadata/glsa (advisories are denied, and could not be checked)"
                    .into(),
                reason: reason.clone(),
            }
            .into());
        }
        let writer = match &build_sbom {
            Some(b) => b.attach(sink_writer, deny)?,
            None => sink_writer,
        };
        let prepared = writer.prepare_tar(rootfs, &outputs)?;
        // The receiver is gone only when the build was dropped; the prepared image then deletes itself.
        let _ = sender.send((prepared, build_sbom));
        Ok(())
    });
    let report = builder
        .build(plan, options, sink)
        .await
        .map_err(|e| crate::locking::name_portage_image(e, builder.portage_image()))?;
    let (mut prepared, build_sbom) = receiver.await.map_err(|_| BuildError::NoRootfs)?;
    let pending = prepare_sbom_file(request, build_sbom.as_ref().map(|b| &b.sbom), &mut prepared)?;
    let image = commit(prepared, options, &report.build_id).await?;
    let (sbom, sbom_file) = finish_sbom(
        request,
        &image,
        pending,
        build_sbom.as_ref().map(|b| &b.sbom),
    )?;
    let advisories = build_sbom.map(|b| b.advisories).unwrap_or_default();
    // The lock is rewritten only once the image is committed, so it always describes a build that worked.
    let lock = match locked {
        Some(locked) => locked.finish(&report)?,
        None => unlocked_report(spec, request),
    };
    if let (Some(store), Some(key), true) = (store, &key, keep) {
        if let Err(reason) = remember(
            store,
            key,
            spec,
            &image,
            request.compression,
            &report,
            &advisories,
        ) {
            store_warning(
                options,
                &mut store_warnings,
                format!(
                    "local image store {}: {reason}; the image was written, but a rebuild of this spec will not \
                     be served from the store",
                    store.path().display()
                ),
            );
        }
    }
    Ok(BuildOutcome {
        image,
        report,
        lock,
        reused: None,
        build_key: key.map(|k| k.digest),
        size: sbom.as_ref().map(Sbom::size_report),
        sbom,
        advisories,
        sbom_file,
        store_warnings,
    })
}

/// The lock report of a build without a lock: where the lock would be.
fn unlocked_report(spec: &ImageSpec, request: &BuildRequest) -> LockReport {
    LockReport {
        path: request
            .lock
            .path
            .clone()
            .or_else(|| spec.source_path().map(lock_path_for)),
        ..LockReport::default()
    }
}

/// Load the `docker` output (when asked for) and make every output visible, unless the build was cancelled first.
async fn commit(
    mut prepared: PreparedImage,
    options: &BuildOptions,
    build_id: &str,
) -> crate::Result<ImageReport> {
    prepared.set_build_id(build_id);
    let docker = if prepared.wants_engine() {
        Some(prepared.engine().connect().await?)
    } else {
        None
    };
    if let Some(docker) = &docker {
        options.emit(BuildEvent::Loading {
            image_id: prepared.image_id(),
        });
        // Not cancellable: a load cut short may still complete in the engine. It is undone below instead.
        prepared.load(docker).await?;
    }
    // The registry blobs too (no remote tag yet): a cancel now still leaves nothing tagged anywhere, and ends the
    // upload where it is.
    if let Err(err) = prepared.upload().await {
        return Err(prepared.abandon(docker.as_ref(), err).await);
    }
    test_pause("write", options).await;
    if options.cancel.is_cancelled() {
        prepared
            .discard(docker.as_ref())
            .await
            .map_err(|e| BuildError::LeftBehind {
                build_id: build_id.to_owned(),
                reason: e.to_string(),
                cause: Some(Box::new(BuildError::Interrupted.into())),
            })?;
        return Err(BuildError::Interrupted.into());
    }
    // The commit: from here on a cancel is too late, and the build reports what it wrote.
    prepared.commit(docker.as_ref()).await
}

/// Say `message` as a warning about the local image store, and keep it for the build's report.
fn store_warning(options: &BuildOptions, warnings: &mut Vec<String>, message: String) {
    options.emit(BuildEvent::Warning {
        message: message.clone(),
    });
    warnings.push(message);
}

/// Write the request's outputs from the store's record of `key`, verified as it is read: `None` when the store has
/// no record, or one that cannot be used. What cannot be used is said (a warning, kept in `warnings`) and dropped
/// from the store, before anything was committed; the caller then builds, and the build stores good blobs again.
#[allow(clippy::too_many_arguments)]
async fn serve_verified(
    store: &ImageStore,
    key: &BuildKey,
    writer: ImageWriter,
    request: &BuildRequest,
    options: &BuildOptions,
    started: Instant,
    sbom_base: Option<&SbomBase>,
    warnings: &mut Vec<String>,
) -> crate::Result<Option<BuildOutcome>> {
    // Drop what cannot be used, and say so: "the stored image for this spec {what}: {reason}; …".
    let unusable = |warnings: &mut Vec<String>, what: &str, reason: &str, layers: &[String]| {
        let dropped = match store.forget(key, layers) {
            Ok(()) => "it was dropped from the store".to_owned(),
            Err(err) => format!("it could not be dropped from the store ({err})"),
        };
        store_warning(
            options,
            warnings,
            format!(
                "local image store {}: the stored image for this spec {what}: {reason}; {dropped}, and the image is \
                 rebuilt",
                store.path().display()
            ),
        );
    };
    let stored = match store.find(key) {
        StoreLookup::Found(stored) => *stored,
        StoreLookup::Unusable(record) => {
            let what = if record.damaged_blob {
                "was damaged"
            } else {
                "cannot be used"
            };
            unusable(warnings, what, &record.reason, &record.layers);
            return Ok(None);
        }
        // `StoreLookup` is non-exhaustive: anything else is nothing to serve.
        _ => return Ok(None),
    };
    // A record written before builds made SBOMs lacks what the SBOM needs: build again instead (the new record
    // replaces it).
    if sbom_base.is_some() && stored.builder_image_id.is_none() {
        store_warning(
            options,
            warnings,
            format!(
                "local image store {}: the stored image for this spec was recorded without what its SBOM needs \
                 (by an earlier Staves); the image is rebuilt",
                store.path().display()
            ),
        );
        return Ok(None);
    }
    match serve_stored(
        store, key, &stored, writer, request, options, started, sbom_base,
    )
    .await
    {
        Ok(outcome) => Ok(Some(outcome)),
        Err(crate::Error::Store(StoreError::Damaged { digest, reason, .. })) => {
            unusable(
                warnings,
                "was damaged",
                &format!("blob {digest} failed verification ({reason})"),
                std::slice::from_ref(&digest),
            );
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// Write the request's outputs from the stored rootfs of `key`: no builder, no container. The SBOM is made from
/// the stored record, so it is the one the build made (the key covers the spec and the builder and portage images).
#[allow(clippy::too_many_arguments)]
async fn serve_stored(
    store: &ImageStore,
    key: &BuildKey,
    stored: &StoredBuild,
    writer: ImageWriter,
    request: &BuildRequest,
    options: &BuildOptions,
    started: Instant,
    sbom_base: Option<&SbomBase>,
) -> crate::Result<BuildOutcome> {
    let build_sbom = sbom_base.map(|base| BuildSbom {
        sbom: base.sbom(&SbomFacts {
            packages: &stored.packages,
            added_files: &stored.added_files,
            builder_image_id: stored.builder_image_id.as_deref(),
            portage_image_id: stored.portage_image_id.as_deref(),
            portage_timestamp: stored.portage_timestamp.as_deref(),
        }),
        advisories: stored.advisories.clone(),
    });
    if let (true, Some(reason)) = (request.deny_advisories, &stored.advisories_unreadable) {
        return Err(crate::advisory::AdvisoryError::Invalid {
            origin: "the portage snapshot's metadata/glsa (advisories are denied, and could not be checked)"
                .into(),
            reason: reason.clone(),
        }
        .into());
    }
    let writer = match &build_sbom {
        Some(b) => b.attach(writer, request.deny_advisories)?,
        None => writer,
    };
    let layer = stored
        .layer(request.compression)
        .or_else(|| stored.layers.first())
        .cloned()
        .ok_or(BuildError::NoRootfs)?;
    let (blocking_store, blocking_layer, outputs) =
        (store.clone(), layer.clone(), request.outputs.clone());
    let mut prepared = tokio::task::spawn_blocking(move || {
        writer.prepare_stored(&blocking_store, &blocking_layer, &outputs)
    })
    .await
    .map_err(|e| BuildError::WriterStopped {
        reason: e.to_string(),
    })??;
    let pending = prepare_sbom_file(request, build_sbom.as_ref().map(|b| &b.sbom), &mut prepared)?;
    let image = commit(prepared, options, "").await?;
    let (sbom, sbom_file) = finish_sbom(
        request,
        &image,
        pending,
        build_sbom.as_ref().map(|b| &b.sbom),
    )?;
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
        added_files: stored.added_files.clone(),
        builder_image_id: stored.builder_image_id.clone(),
        portage_image_id: stored.portage_image_id.clone(),
        portage_timestamp: stored.portage_timestamp.clone(),
        advisories_unreadable: stored.advisories_unreadable.clone(),
        total_duration: started.elapsed(),
        ..BuildReport::default()
    };
    Ok(BuildOutcome {
        image,
        report,
        lock: LockReport::default(),
        reused: Some(ReusedImage {
            key: key.digest.clone(),
            built: stored.created,
            reason: "the spec's rootfs inputs and the builder and Portage images are unchanged"
                .to_owned(),
        }),
        build_key: Some(key.digest.clone()),
        size: sbom.as_ref().map(Sbom::size_report),
        sbom,
        advisories: build_sbom.map(|b| b.advisories).unwrap_or_default(),
        sbom_file,
        store_warnings: Vec::new(),
    })
}

/// The layer `image` was written with, when the writer kept it in `store` (a blob of another size is not it: the
/// writer verified what it stored, and could not replace that one).
fn stored_layer(
    store: &ImageStore,
    image: &ImageReport,
    compression: Compression,
) -> Option<StoredLayer> {
    let blob = store.blob_path(&image.layer_digest)?;
    let kept = std::fs::metadata(blob).is_ok_and(|m| m.is_file() && m.len() == image.layer_size);
    kept.then(|| StoredLayer {
        digest: image.layer_digest.clone(),
        diff_id: image.diff_id.clone(),
        size: image.layer_size,
        uncompressed_size: image.uncompressed_size,
        compression,
    })
}

/// Record a finished build in the store. The image is written whatever happens here: a failure is only said (as
/// the reason, for a warning).
fn remember(
    store: &ImageStore,
    key: &BuildKey,
    spec: &ImageSpec,
    image: &ImageReport,
    compression: Compression,
    report: &BuildReport,
    advisories: &[AdvisoryMatch],
) -> Result<(), String> {
    // The writer copies the layer into the store as it writes it; a failed copy leaves no blob.
    let layer = stored_layer(store, image, compression)
        .ok_or_else(|| format!("the layer {} could not be stored", image.layer_digest))?;
    let mut record = crate::store::record_for(store, key, spec, layer, report.packages.clone());
    record.added_files = report.added_files.clone();
    record.builder_image_id = report.builder_image_id.clone();
    record.portage_image_id = report.portage_image_id.clone();
    record.portage_timestamp = report.portage_timestamp.clone();
    record.advisories = advisories.to_vec();
    record.advisories_unreadable = report.advisories_unreadable.clone();
    store.put_record(&record).map_err(|e| e.to_string())
}
