//! The Docker backend: a portage snapshot container, a builder container, exec'd steps, a streamed rootfs.
//!
//! - `settings`: [`DockerBuilder`] and what it is configured with;
//! - `session`: the containers and volumes of one build, their labels, and their removal on every exit path;
//! - `exec`: one step run with exec, its output split into lines and events;
//! - `rootfs`: the rootfs download streamed into the blocking sink.

mod exec;
mod rootfs;
mod session;
mod settings;

pub use session::BUILD_LABEL;
pub(crate) use session::ROLE_LABEL;
pub use settings::{DEFAULT_BUILDER_IMAGE, DEFAULT_PORTAGE_IMAGE, DockerBuilder};

use super::owner::reap_gone;
use super::{BuildError, BuildEvent, BuildFuture, BuildOptions, BuildReport, Builder, RootfsSink};
use crate::engine::{Engine, EngineError};
use crate::plan::{BuildPlan, StepKind};
use crate::portage::parse_package_list;
use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use exec::{SharedLog, StepOutput, StepRun, check_stage3, exec_step};
use futures_util::StreamExt;
use session::Session;
use std::future::Future;
use std::time::Instant;

impl Builder for DockerBuilder {
    fn build<'a>(
        &'a self,
        plan: &'a BuildPlan,
        options: &'a BuildOptions,
        sink: RootfsSink,
    ) -> BuildFuture<'a> {
        Box::pin(self.build_async(plan, options, sink))
    }

    fn engine(&self) -> Option<&Engine> {
        Some(&self.engine)
    }

    fn portage_image(&self) -> Option<&str> {
        Some(&self.portage_image)
    }

    fn builder_image(&self) -> Option<&str> {
        Some(&self.builder_image)
    }

    fn key_context(&self) -> super::KeyContextFuture<'_> {
        Box::pin(async move {
            let docker = self.engine.connect().await?;
            let mut ids = Vec::new();
            for image in [&self.builder_image, &self.portage_image] {
                match crate::engine::image_id(&docker, image).await? {
                    Some(id) => ids.push(id),
                    None => return Ok(None),
                }
            }
            Ok(Some(crate::store::KeyContext::new(
                ids[0].clone(),
                ids[1].clone(),
                self.locale.clone(),
            )))
        })
    }
}

/// Await `future`, or stop with [`BuildError::Interrupted`] as soon as `options.cancel` is triggered (dropping
/// the future: whatever it created is found by the cleanup).
async fn cancellable<T>(
    options: &BuildOptions,
    future: impl Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    tokio::select! {
        result = future => result,
        () = options.cancel.cancelled() => Err(BuildError::Interrupted.into()),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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

impl DockerBuilder {
    async fn build_async(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        sink: RootfsSink,
    ) -> crate::Result<BuildReport> {
        let started = Instant::now();
        let (options, queue) = options.queued();
        let _ctrl_c = self.handle_ctrl_c.then(|| {
            let cancel = options.cancel.clone();
            AbortOnDrop(tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    cancel.cancel();
                }
            }))
        });
        let mut report = BuildReport::default();
        let result = self.build_in(plan, &options, sink, &mut report).await;
        report.total_duration = started.elapsed();
        if let Some(queue) = queue {
            queue.finish().await;
        }
        result.map(|()| report)
    }

    /// Connect, reap what dead builds left, then run the build in a session that is always cleaned up.
    async fn build_in(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        sink: RootfsSink,
        report: &mut BuildReport,
    ) -> crate::Result<()> {
        let docker = cancellable(options, async { Ok(self.engine.connect().await?) }).await?;
        match cancellable(options, async { Ok(reap_gone(&docker).await?) }).await {
            Ok(reaped) => {
                if !reaped.is_empty() {
                    options.emit(BuildEvent::Reaped {
                        containers: reaped.containers.clone(),
                        volumes: reaped.volumes.clone(),
                    });
                }
                report.reaped = reaped;
            }
            Err(crate::Error::Engine(e)) => options.emit(BuildEvent::Preparing {
                message: format!("could not look for what earlier builds left behind: {e}"),
            }),
            Err(e) => return Err(e),
        }

        let mut session = Session::new(docker, self.engine.clone());
        report.build_id = session.id.clone();
        options.emit(BuildEvent::Started {
            build_id: session.id.clone(),
        });
        let result = self
            .run_session(&mut session, plan, options, sink, report)
            .await;
        // Cleanup runs whatever happened, and is not cancellable.
        match (session.cleanup().await, result) {
            (Ok(()), result) => {
                options.emit(BuildEvent::CleanedUp);
                result
            }
            (Err(e), result) => Err(BuildError::LeftBehind {
                build_id: session.id.clone(),
                reason: e.to_string(),
                cause: result.err().map(Box::new),
            }
            .into()),
        }
    }

    async fn run_session(
        &self,
        session: &mut Session,
        plan: &BuildPlan,
        options: &BuildOptions,
        sink: RootfsSink,
        report: &mut BuildReport,
    ) -> crate::Result<()> {
        (report.builder_image_id, report.portage_image_id) = cancellable(options, async {
            let builder = ensure_image(&session.docker, &self.builder_image, options).await?;
            let portage = ensure_image(&session.docker, &self.portage_image, options).await?;
            Ok((builder, portage))
        })
        .await?;
        let binds = self.credential_binds(options)?;
        cancellable(options, session.create(self, binds, options)).await?;
        let container = session.container_name("builder");
        cancellable(
            options,
            check_stage3(&session.docker, &container, &self.builder_image),
        )
        .await?;

        let total = plan.steps.len();
        let mut package_list = String::new();
        let mut background = Background::default();
        let log = SharedLog::default();
        for (i, step) in plan.steps.iter().enumerate() {
            let run = StepRun {
                index: i + 1,
                total,
                step: step.clone(),
                capture: step.kind.captures_output(),
                log: log.clone(),
            };
            if step.wait_background {
                join_background(&mut background, options, report).await?;
            }
            options.emit(BuildEvent::StepStarted {
                index: run.index,
                total,
                label: step.label.clone(),
            });
            if step.kind == StepKind::WriteFiles {
                cancellable(options, upload_files(&session.docker, &container, plan)).await?;
            }
            if step.background {
                let (docker, id, task_run, task_options) = (
                    session.docker.clone(),
                    container.clone(),
                    run.clone(),
                    options.clone(),
                );
                let handle =
                    tokio::spawn(
                        async move { exec_step(&docker, &id, &task_run, &task_options).await },
                    );
                background.running.push((run, handle));
                continue;
            }
            let output = cancellable(
                options,
                exec_step(&session.docker, &container, &run, options),
            )
            .await?;
            let captured = output.finish(&run, options, report)?;
            if step.kind.captures_output() {
                // The lock check reads the resolution here, before anything is built.
                options.check_output(&step.kind, &captured)?;
            }
            if step.kind == StepKind::PackageList {
                package_list = captured;
            }
        }
        join_background(&mut background, options, report).await?;
        report.log = log.take();
        report.packages = parse_package_list(&package_list);
        report.added_files = crate::portage::parse_added_files(&package_list);
        report.resolve_binary_flags();
        report.resolve_binhost_use();
        if plan.produces_rootfs() {
            // The snapshot's GLSAs and timestamp, as the builder sees the tree (after any sync), for the SBOM and
            // the advisory check.
            let snapshot = cancellable(options, async {
                Ok(crate::snapshot::read_from_container(
                    &session.docker,
                    &container,
                    crate::snapshot::PORTAGE_TREE,
                )
                .await)
            })
            .await?;
            match snapshot {
                Ok(snapshot) => {
                    report.portage_timestamp = snapshot.timestamp;
                    report.snapshot_advisories = snapshot.advisories;
                }
                // An engine failure is the build's; an advisory Staves cannot read is not, unless advisories are
                // denied (the pipeline then refuses, since it cannot tell whether one applies).
                Err(crate::snapshot::SnapshotError::Advisory(e)) => {
                    report.advisories_unreadable = Some(e.to_string());
                }
                Err(e) => return Err(e.into()),
            }
        }

        if !plan.produces_rootfs() {
            return Ok(());
        }
        options.emit(BuildEvent::Exporting);
        let export_started = Instant::now();
        rootfs::export_rootfs(session, &options.cancel, sink, report.clone()).await?;
        report.export_duration = export_started.elapsed();
        Ok(())
    }
}

/// Wait for the running background steps, in the order they started, and fold them into the report.
async fn join_background(
    background: &mut Background,
    options: &BuildOptions,
    report: &mut BuildReport,
) -> crate::Result<()> {
    for (run, handle) in std::mem::take(&mut background.running) {
        let abort = handle.abort_handle();
        let output = cancellable(options, async {
            handle.await.map_err(|e| {
                crate::Error::from(BuildError::BackgroundStep {
                    index: run.index,
                    label: run.step.label.clone(),
                    reason: e.to_string(),
                })
            })?
        })
        .await;
        if output.is_err() {
            abort.abort();
        }
        output?.finish(&run, options, report)?;
    }
    Ok(())
}

/// Upload the plan's files into the staging directory: file entries only, root-owned, mode 0644.
///
/// The archive is extracted at `/` with full paths, so the engine creates the missing parent directories and no
/// existing directory's mode or owner is touched.
async fn upload_files(docker: &Docker, container: &str, plan: &BuildPlan) -> crate::Result<()> {
    let staging = crate::plan::STAGING_DIR.trim_start_matches('/');
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
    let options = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
        .path("/")
        .build();
    docker
        .upload_to_container(
            container,
            Some(options),
            bollard::body_full(bytes::Bytes::from(body)),
        )
        .await
        .map_err(|e| EngineError::request("uploading the Portage files into the builder", e))?;
    Ok(())
}

/// Check that `image` exists locally; pull it when it does not. Returns the image ID, when the engine gives one.
async fn ensure_image(
    docker: &Docker,
    image: &str,
    options: &BuildOptions,
) -> crate::Result<Option<String>> {
    match docker.inspect_image(image).await {
        Ok(found) => return Ok(found.id),
        Err(e) if crate::engine::is_not_found(&e) => {}
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
                    reason: crate::engine::describe(&e),
                }
                .into());
            }
        }
    }
    let found = docker
        .inspect_image(image)
        .await
        .map_err(|e| EngineError::ImageUnavailable {
            image: image.to_owned(),
            reason: format!(
                "the pull finished but the image is still missing: {}",
                crate::engine::describe(&e)
            ),
        })?;
    Ok(found.id)
}
