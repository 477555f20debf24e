//! The Docker backend: a portage snapshot container, a builder container, exec'd steps, a streamed rootfs.

use super::{
    BuildError, BuildEvent, BuildOptions, BuildReport, Builder, LogStream, RootfsSink, StepReport,
    home_dir,
};
use crate::engine::{EngineError, connect};
use crate::plan::{BuildPlan, ROOTFS_DIR, STAGING_DIR, Step, StepKind};
use crate::portage::{EmergeEvent, parse_emerge_line, parse_package_list};
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The default portage snapshot image, as in the original Staves.
pub const DEFAULT_PORTAGE_IMAGE: &str = "gentoo/portage:latest";
/// The default builder image: a Gentoo stage3.
pub const DEFAULT_BUILDER_IMAGE: &str = "gentoo/stage3:latest";
/// The label every container Staves creates carries, with the build's id as value.
pub const BUILD_LABEL: &str = "io.staves.build";

/// How many trailing lines of a failed step's output the error shows.
const TAIL_LINES: usize = 30;

/// Runs plans in a Gentoo builder container on a Docker engine.
///
/// ```no_run
/// use staves_core::DockerBuilder;
/// let builder = DockerBuilder::new("gentoo/stage3:latest")?
///     .portage_image("gentoo/portage:latest")
///     .build_cache("staves-binpkgs");
/// # Ok::<(), staves_core::Error>(())
/// ```
#[derive(Debug)]
pub struct DockerBuilder {
    builder_image: String,
    portage_image: String,
    build_cache: String,
    ssh: bool,
    netrc: bool,
    locale: String,
    docker_host: Option<String>,
    network: Option<String>,
    handle_ctrl_c: bool,
    runtime: tokio::runtime::Runtime,
}

impl DockerBuilder {
    /// A backend that builds in `builder_image` (a Gentoo stage3 or compatible image).
    pub fn new(builder_image: impl Into<String>) -> crate::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("staves-docker")
            .enable_all()
            .build()
            .map_err(|source| crate::Error::Io {
                context: "starting the async runtime".into(),
                source,
            })?;
        Ok(Self {
            builder_image: builder_image.into(),
            portage_image: DEFAULT_PORTAGE_IMAGE.to_owned(),
            build_cache: super::DEFAULT_BUILD_CACHE.to_owned(),
            ssh: false,
            netrc: false,
            locale: "C.UTF-8".to_owned(),
            docker_host: None,
            network: None,
            handle_ctrl_c: false,
            runtime,
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

    /// The engine address (`unix://…`, `tcp://…`); `DOCKER_HOST` or the local socket when `None`.
    pub fn docker_host(mut self, host: Option<String>) -> Self {
        self.docker_host = host;
        self
    }

    /// Attach the builder container to this Docker network (instead of the default bridge), so that a binhost,
    /// registry mirror or git server on that network is reachable by its container name.
    pub fn network(mut self, network: Option<String>) -> Self {
        self.network = network.filter(|n| !n.is_empty());
        self
    }

    /// Cancel the build on Ctrl-C (SIGINT), removing its containers. For command-line programs; a Python host
    /// handles signals itself and cancels through [`BuildOptions::cancel`].
    pub fn cancel_on_ctrl_c(mut self, enabled: bool) -> Self {
        self.handle_ctrl_c = enabled;
        self
    }

    /// The Docker network the builder joins, if one was given.
    pub fn network_name(&self) -> Option<&str> {
        self.network.as_deref()
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
        self.docker_host.as_deref()
    }

    /// Run `future` on this backend's runtime, stopping early with [`BuildError::Interrupted`] on cancel.
    fn run<T>(
        &self,
        options: &BuildOptions,
        future: impl std::future::Future<Output = crate::Result<T>>,
    ) -> crate::Result<T> {
        let cancel = options.cancel.clone();
        self.runtime.block_on(async move {
            tokio::select! {
                result = future => result,
                () = cancel.cancelled() => Err(BuildError::Interrupted.into()),
            }
        })
    }
}

impl Builder for DockerBuilder {
    fn build(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        sink: &mut dyn RootfsSink,
    ) -> crate::Result<BuildReport> {
        let started = Instant::now();
        let ctrl_c = self.handle_ctrl_c.then(|| {
            let cancel = options.cancel.clone();
            self.runtime.spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    cancel.cancel();
                }
            })
        });
        let mut report = BuildReport::default();
        let result = match self.run(options, async {
            Ok(connect(self.docker_host.as_deref()).await?)
        }) {
            Ok(docker) => {
                let mut session = Session::new(docker);
                let result = self.build_in(&mut session, plan, options, sink, &mut report);
                // Cleanup runs whatever happened, and is not cancellable.
                let cleanup = self.runtime.block_on(session.cleanup());
                result.and(cleanup.map_err(crate::Error::from))
            }
            Err(err) => Err(err),
        };
        if let Some(task) = ctrl_c {
            task.abort();
        }
        report.total_duration = started.elapsed();
        result.map(|()| report)
    }
}

impl DockerBuilder {
    fn build_in(
        &self,
        session: &mut Session,
        plan: &BuildPlan,
        options: &BuildOptions,
        sink: &mut dyn RootfsSink,
        report: &mut BuildReport,
    ) -> crate::Result<()> {
        self.run(options, async {
            for image in [&self.builder_image, &self.portage_image] {
                ensure_image(&session.docker, image, options).await?;
            }
            Ok(())
        })?;
        let mounts = self.credential_binds(options)?;
        self.run(options, session.create_containers(self, mounts, options))?;

        let total = plan.steps.len();
        let mut package_list = String::new();
        let mut background = Background::default();
        let log = SharedLog::default();
        for (i, step) in plan.steps.iter().enumerate() {
            let run = StepRun {
                index: i + 1,
                total,
                step: step.clone(),
                capture: step.kind == StepKind::PackageList,
                log: log.clone(),
            };
            if step.wait_background {
                self.join_background(&mut background, options, report)?;
            }
            options.emit(BuildEvent::StepStarted {
                index: run.index,
                total,
                label: step.label.clone(),
            });
            if step.kind == StepKind::WriteFiles {
                self.run(options, session.upload_files(plan))?;
            }
            let id = session.builder_id()?.to_owned();
            if step.background {
                let (docker, task_run, task_options) =
                    (session.docker.clone(), run.clone(), options.clone());
                let handle = self
                    .runtime
                    .spawn(async move { exec_step(&docker, &id, &task_run, &task_options).await });
                background.running.push((run, handle));
                continue;
            }
            let output = self.run(options, exec_step(&session.docker, &id, &run, options))?;
            let captured = output.finish(&run, options, report)?;
            if step.kind == StepKind::PackageList {
                package_list = captured;
            }
        }
        self.join_background(&mut background, options, report)?;
        report.log = std::mem::take(
            &mut *log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        report.packages = parse_package_list(&package_list);
        report.resolve_binary_flags();

        options.emit(BuildEvent::Exporting);
        let export_started = Instant::now();
        session.export_rootfs(&self.runtime, options, sink)?;
        report.export_duration = export_started.elapsed();
        Ok(())
    }

    /// Wait for the running background steps, in the order they started, and fold them into the report.
    fn join_background(
        &self,
        background: &mut Background,
        options: &BuildOptions,
        report: &mut BuildReport,
    ) -> crate::Result<()> {
        for (run, handle) in std::mem::take(&mut background.running) {
            let output = self.run(options, async {
                handle.await.map_err(|e| {
                    BuildError::Export(format!("background step {} did not finish: {e}", run.index))
                })?
            })?;
            output.finish(&run, options, report)?;
        }
        Ok(())
    }

    /// Read-only binds for `~/.ssh` and `~/.netrc`, when enabled and present.
    fn credential_binds(&self, options: &BuildOptions) -> crate::Result<Vec<String>> {
        let mut binds = Vec::new();
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

/// Check that `image` exists locally; pull it when it does not.
async fn ensure_image(docker: &Docker, image: &str, options: &BuildOptions) -> crate::Result<()> {
    match docker.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => return Err(EngineError::request(format!("inspecting image {image}"), e).into()),
    }
    options.emit(BuildEvent::Preparing {
        message: format!("pulling {image}"),
    });
    let pull = CreateImageOptionsBuilder::default()
        .from_image(image)
        .build();
    let mut stream = docker.create_image(Some(pull), None, None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail {
                    let reason = detail
                        .message
                        .unwrap_or_else(|| "the engine reported an error".into());
                    return Err(EngineError::ImageUnavailable {
                        image: image.to_owned(),
                        reason,
                    }
                    .into());
                }
                if let Some(status) = info.status {
                    options.emit(BuildEvent::Preparing {
                        message: format!("{image}: {status}"),
                    });
                }
            }
            Err(e) => {
                return Err(EngineError::ImageUnavailable {
                    image: image.to_owned(),
                    reason: e.to_string(),
                }
                .into());
            }
        }
    }
    docker
        .inspect_image(image)
        .await
        .map_err(|e| EngineError::ImageUnavailable {
            image: image.to_owned(),
            reason: format!("the pull finished but the image is still missing: {e}"),
        })?;
    Ok(())
}

/// One step being run, with its position.
#[derive(Clone)]
struct StepRun {
    index: usize,
    total: usize,
    step: Step,
    capture: bool,
    /// Every line of every step, in the order the lines arrived (background steps interleave).
    log: SharedLog,
}

/// The build's log, shared with background steps.
type SharedLog = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// What a finished step produced; merged into the report by the caller.
struct StepOutput {
    exit_code: i64,
    duration: std::time::Duration,
    tail: Vec<String>,
    captured: String,
    emerged: Vec<(String, bool)>,
}

impl StepOutput {
    /// Fold the step into the report, or fail with the tail of its output when it exited non-zero.
    fn finish(
        self,
        run: &StepRun,
        options: &BuildOptions,
        report: &mut BuildReport,
    ) -> crate::Result<String> {
        for (cpv, binary) in &self.emerged {
            report.record_emerge(cpv, *binary);
        }
        if self.exit_code != 0 {
            return Err(BuildError::StepFailed {
                index: run.index,
                total: run.total,
                label: run.step.label.clone(),
                exit_code: self.exit_code,
                tail: self.tail,
            }
            .into());
        }
        report.steps.push(StepReport {
            kind: run.step.kind.clone(),
            label: run.step.label.clone(),
            duration: self.duration,
            exit_code: self.exit_code,
        });
        options.emit(BuildEvent::StepFinished {
            index: run.index,
            seconds: self.duration.as_secs_f64(),
        });
        Ok(self.captured)
    }
}

/// Background steps still running; aborted if the build stops before they are awaited.
#[derive(Default)]
struct Background {
    running: Vec<(StepRun, tokio::task::JoinHandle<crate::Result<StepOutput>>)>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for (_, handle) in &self.running {
            handle.abort();
        }
    }
}

/// The containers of one build, removed by [`Session::cleanup`].
struct Session {
    docker: Docker,
    id: String,
    builder: Option<String>,
    /// The container removal started as soon as the rootfs download completed, while the image is still written.
    early_removal: EarlyRemoval,
}

/// A removal task started from the rootfs reader once the engine has sent the whole rootfs.
type EarlyRemoval = Arc<Mutex<Option<tokio::task::JoinHandle<Result<(), EngineError>>>>>;

static BUILD_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Session {
    fn new(docker: Docker) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let id = format!(
            "{}-{}-{:08x}",
            std::process::id(),
            BUILD_COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        Self {
            docker,
            id,
            builder: None,
            early_removal: EarlyRemoval::default(),
        }
    }

    /// The containers to remove, in order: the builder first (it uses the snapshot's volume), then the snapshot.
    fn removal_order(&self) -> [(String, bool); 2] {
        [
            (self.container_name("builder"), false),
            (self.container_name("portage"), true),
        ]
    }

    /// The name of this build's `builder` or `portage` (snapshot) container.
    fn container_name(&self, role: &str) -> String {
        format!("staves-{}-{role}", self.id)
    }

    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(super::docker::BUILD_LABEL.to_owned(), self.id.clone())])
    }

    async fn create_containers(
        &mut self,
        config: &DockerBuilder,
        binds: Vec<String>,
        options: &BuildOptions,
    ) -> crate::Result<()> {
        options.emit(BuildEvent::Preparing {
            message: "creating the portage snapshot container".into(),
        });
        let name = self.container_name("portage");
        let snapshot = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                ContainerCreateBody {
                    image: Some(config.portage_image.clone()),
                    labels: Some(self.labels()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                EngineError::request(
                    format!("creating container {name} from {}", config.portage_image),
                    e,
                )
            })?;

        options.emit(BuildEvent::Preparing {
            message: "creating the builder container".into(),
        });
        let name = self.container_name("builder");
        let host_config = HostConfig {
            volumes_from: Some(vec![format!("{}:ro", snapshot.id)]),
            mounts: Some(vec![Mount {
                target: Some("/var/cache/binpkgs".into()),
                source: Some(config.build_cache.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]),
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: config.network.clone(),
            ..Default::default()
        };
        let builder = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                ContainerCreateBody {
                    image: Some(config.builder_image.clone()),
                    entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
                    cmd: Some(vec![]),
                    env: Some(vec![format!("LANG={}", config.locale)]),
                    labels: Some(self.labels()),
                    host_config: Some(host_config),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                EngineError::request(
                    format!("creating container {name} from {}", config.builder_image),
                    e,
                )
            })?;
        self.builder = Some(builder.id.clone());
        self.docker
            .start_container(&builder.id, None)
            .await
            .map_err(|e| EngineError::request(format!("starting container {name}"), e))?;
        Ok(())
    }

    fn builder_id(&self) -> crate::Result<&str> {
        self.builder.as_deref().ok_or_else(|| {
            BuildError::Export("the builder container was not created".into()).into()
        })
    }

    /// Upload the plan's files into the staging directory: file entries only, root-owned, mode 0644.
    ///
    /// The archive is extracted at `/` with full paths, so the engine creates the missing parent directories and
    /// no existing directory's mode or owner is touched.
    async fn upload_files(&self, plan: &BuildPlan) -> crate::Result<()> {
        let id = self.builder_id()?;
        let staging = STAGING_DIR.trim_start_matches('/');
        let mut tar = tar::Builder::new(Vec::new());
        for file in &plan.files {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(file.content.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            let path = format!("{staging}/{}", file.path);
            tar.append_data(&mut header, &path, file.content.as_bytes())
                .map_err(|source| BuildError::Io {
                    context: format!("packing {path}"),
                    source,
                })?;
        }
        let body = tar.into_inner().map_err(|source| BuildError::Io {
            context: "packing the Portage files".into(),
            source,
        })?;
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        self.docker
            .upload_to_container(id, Some(options), bollard::body_full(Bytes::from(body)))
            .await
            .map_err(|e| EngineError::request("uploading the Portage files into the builder", e))?;
        Ok(())
    }

    /// Stream `/tmp/rootfs/.` out of the builder into `sink`, with no temporary copy.
    fn export_rootfs(
        &self,
        runtime: &tokio::runtime::Runtime,
        options: &BuildOptions,
        sink: &mut dyn RootfsSink,
    ) -> crate::Result<()> {
        let id = self.builder_id()?.to_owned();
        let docker = self.docker.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(8);
        let forward = runtime.spawn(async move {
            let download = DownloadFromContainerOptionsBuilder::default()
                .path(&format!("{ROOTFS_DIR}/."))
                .build();
            let mut stream = docker.download_from_container(&id, Some(download));
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if tx.send(item.map_err(|e| e.to_string())).await.is_err() || failed {
                    break;
                }
            }
        });
        // Once the engine has sent the whole rootfs the containers are of no further use: remove them while the
        // image writer finishes (compression, `docker load`) instead of after it. `cleanup` waits for this.
        let (docker, containers, slot) = (
            self.docker.clone(),
            self.removal_order(),
            self.early_removal.clone(),
        );
        let handle = runtime.handle().clone();
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
            cancel: options.cancel.clone(),
            on_complete: Some(Box::new(move || {
                let task =
                    handle.spawn(async move { remove_containers(&docker, &containers).await });
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
            })),
        };
        let result = sink.consume(&mut reader);
        drop(reader);
        forward.abort();
        if options.cancel.is_cancelled() {
            return Err(BuildError::Interrupted.into());
        }
        result
    }

    /// Remove the builder, then the snapshot with its anonymous volume. The cache volume is kept.
    async fn cleanup(&mut self) -> Result<(), EngineError> {
        self.builder = None;
        let early = self
            .early_removal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = early {
            // Removed already, unless that removal failed or did not finish: then try again below.
            if let Ok(Ok(())) = task.await {
                return Ok(());
            }
        }
        remove_containers(&self.docker, &self.removal_order()).await
    }
}

/// Remove `containers` in order, with their anonymous volumes where asked; a missing container (404) is fine.
///
/// By name, not by recorded id: a create request cut short by Ctrl-C may have made a container whose id never
/// reached us. Every container is tried; the first error is returned.
async fn remove_containers(
    docker: &Docker,
    containers: &[(String, bool)],
) -> Result<(), EngineError> {
    let mut first_error = None;
    for (name, volumes) in containers {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(*volumes)
            .build();
        if let Err(e) = docker.remove_container(name, Some(options)).await {
            let not_found = matches!(
                e,
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                }
            );
            if !not_found && first_error.is_none() {
                first_error = Some(EngineError::request(
                    format!("removing container {name}"),
                    e,
                ));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Run one plan step, streaming its output as events as it arrives.
async fn exec_step(
    docker: &Docker,
    id: &str,
    run: &StepRun,
    options: &BuildOptions,
) -> crate::Result<StepOutput> {
    let started = Instant::now();
    let env: Vec<String> = run
        .step
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let label = &run.step.label;
    let exec = docker
        .create_exec(
            id,
            CreateExecOptions {
                cmd: Some(run.step.argv.clone()),
                env: Some(env),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| EngineError::request(format!("creating the exec for step {label}"), e))?;
    let mut lines = LineSplitter::new(run, options);
    if let StartExecResults::Attached { mut output, .. } =
        docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| EngineError::request(format!("starting step {label}"), e))?
    {
        while let Some(item) = output.next().await {
            use bollard::container::LogOutput;
            match item
                .map_err(|e| EngineError::request(format!("reading the output of {label}"), e))?
            {
                LogOutput::StdErr { message } => lines.feed(LogStream::Stderr, &message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    lines.feed(LogStream::Stdout, &message)
                }
                LogOutput::StdIn { .. } => {}
            }
        }
    }
    let inspect = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(|e| EngineError::request(format!("reading the exit code of {label}"), e))?;
    Ok(lines.finish(inspect.exit_code.unwrap_or(-1), started.elapsed()))
}

/// Splits a step's output into lines, emitting events and keeping the tail.
struct LineSplitter<'a> {
    run: &'a StepRun,
    options: &'a BuildOptions,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
    captured: String,
    emerged: Vec<(String, bool)>,
}

impl<'a> LineSplitter<'a> {
    fn new(run: &'a StepRun, options: &'a BuildOptions) -> Self {
        Self {
            run,
            options,
            partial: [Vec::new(), Vec::new()],
            tail: VecDeque::new(),
            captured: String::new(),
            emerged: Vec::new(),
        }
    }

    fn feed(&mut self, stream: LogStream, bytes: &[u8]) {
        let slot = stream as usize;
        self.partial[slot].extend_from_slice(bytes);
        while let Some(pos) = self.partial[slot].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[slot].drain(..=pos).collect();
            self.line(stream, &line[..line.len() - 1]);
        }
    }

    fn line(&mut self, stream: LogStream, bytes: &[u8]) {
        let line = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .to_owned();
        if self.run.capture && stream == LogStream::Stdout {
            self.captured.push_str(&line);
            self.captured.push('\n');
        }
        if let Some(EmergeEvent::Emerging {
            index,
            total,
            cpv,
            binary,
            ..
        }) = parse_emerge_line(&line)
        {
            self.emerged.push((cpv.clone(), binary));
            self.options.emit(BuildEvent::Package {
                step: self.run.index,
                index,
                total,
                cpv,
                binary,
            });
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        if let Ok(mut log) = self.run.log.lock() {
            log.push(line.clone());
        }
        self.options.emit(BuildEvent::Log {
            step: self.run.index,
            stream,
            line,
        });
    }

    fn finish(mut self, exit_code: i64, duration: std::time::Duration) -> StepOutput {
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.line(stream, &rest);
            }
        }
        StepOutput {
            exit_code,
            duration,
            tail: self.tail.into_iter().collect(),
            captured: self.captured,
            emerged: self.emerged,
        }
    }
}

/// A blocking reader over the chunks a download task sends.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
    cancel: super::CancelToken,
    /// Called once, when the download has ended without an error.
    on_complete: Option<Box<dyn FnOnce() + Send>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.cancel.is_cancelled() {
                return Err(std::io::Error::other("the build was interrupted"));
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(message)) => {
                    self.on_complete = None;
                    return Err(std::io::Error::other(format!(
                        "downloading {ROOTFS_DIR} from the builder: {message}"
                    )));
                }
                None => {
                    if let Some(complete) = self.on_complete.take() {
                        complete();
                    }
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
