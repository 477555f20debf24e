//! The containers and volumes of one build: creating them with labels, and removing them on every exit path.
//!
//! A build makes, in order: one named volume per volume the portage image declares (populated from the image when
//! the snapshot container is created), the snapshot container that holds them (never started), and the builder
//! container (`sleep infinity` under the engine's init, so removing it stops everything running inside). Each
//! carries [`BUILD_LABEL`], [`ROLE_LABEL`] and the owner labels ([`BuildOwner`]).
//!
//! Creating is not atomic from the client's side: a request cut short (a cancel, a dropped future) may still be
//! completed by the engine. Every create therefore runs as a task of its own that finishes whatever happens to the
//! build, and the cleanup waits for those tasks, then removes by name and by label, not by the ids it received.

use super::super::owner::{BuildOwner, remove_container, remove_volume};
use super::super::{BuildEvent, BuildOptions};
use super::DockerBuilder;
use crate::builder::test_pause;
use crate::engine::{Engine, EngineError, block_on};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinHandle;

pub use crate::engine::BUILD_LABEL;
pub(crate) use crate::engine::ROLE_LABEL;

static BUILD_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A removal task started from the rootfs stream once the engine has sent the whole rootfs.
pub(super) type EarlyRemoval = Arc<Mutex<Option<JoinHandle<Result<(), EngineError>>>>>;

/// The resources of one build. Removed by [`Session::cleanup`]; dropped without it (the build's future was
/// dropped), it removes them from a thread of its own.
pub(super) struct Session {
    pub(super) docker: Docker,
    engine: Engine,
    pub(super) id: String,
    owner: BuildOwner,
    /// Names of the snapshot volumes this build creates (recorded before the create request).
    volumes: Vec<String>,
    /// Create and start requests still running as tasks of their own.
    pending: Vec<JoinHandle<()>>,
    /// The container removal started as soon as the rootfs download completed, while the image is still written.
    pub(super) early_removal: EarlyRemoval,
    /// Cleared once [`Session::cleanup`] ran.
    armed: bool,
}

impl Session {
    pub(super) fn new(docker: Docker, engine: Engine) -> Self {
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
            engine,
            id,
            owner: BuildOwner::current(),
            volumes: Vec::new(),
            pending: Vec::new(),
            early_removal: EarlyRemoval::default(),
            armed: true,
        }
    }

    /// The name of this build's `builder` or `portage` (snapshot) container.
    pub(super) fn container_name(&self, role: &str) -> String {
        format!("staves-{}-{role}", self.id)
    }

    /// The containers to remove, in order: the builder first (it uses the snapshot's volumes), then the snapshot.
    pub(super) fn container_names(&self) -> Vec<String> {
        vec![
            self.container_name("builder"),
            self.container_name("portage"),
        ]
    }

    /// The snapshot volumes this build creates.
    pub(super) fn volumes_to_remove(&self) -> Vec<String> {
        self.volumes.clone()
    }

    fn labels(&self, role: &str) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = self.owner.labels().into_iter().collect();
        labels.insert(BUILD_LABEL.to_owned(), self.id.clone());
        labels.insert(ROLE_LABEL.to_owned(), role.to_owned());
        labels
    }

    /// Run `request` as a task of its own, so that it completes even if the build stops waiting for it; the
    /// cleanup waits for it before removing anything. `None` when the task died (its runtime shut down).
    async fn detached<T: Send + 'static>(
        &mut self,
        request: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.pending.push(tokio::spawn(async move {
            let _ = sender.send(request.await);
        }));
        receiver.await.ok()
    }

    /// Create the snapshot volumes and container and the builder container, and start the builder.
    pub(super) async fn create(
        &mut self,
        config: &DockerBuilder,
        binds: Vec<String>,
        options: &BuildOptions,
    ) -> crate::Result<()> {
        let died = |what: &str| {
            EngineError::Runtime(std::io::Error::other(format!(
                "{what}: the task was stopped"
            )))
        };

        // The volumes the portage image declares (gentoo/portage: /var/db/repos/gentoo) become named volumes with
        // this build's labels, so that they can be found and removed like the containers.
        let image = self
            .docker
            .inspect_image(&config.portage_image)
            .await
            .map_err(|e| {
                EngineError::request(format!("inspecting image {}", config.portage_image), e)
            })?;
        let mut paths: Vec<String> = image
            .config
            .and_then(|c| c.volumes)
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        paths.sort();
        let mut mounts = Vec::new();
        for (n, path) in paths.iter().enumerate() {
            let name = match n {
                0 => self.container_name("portage"),
                _ => format!("{}-{n}", self.container_name("portage")),
            };
            self.volumes.push(name.clone());
            let (docker, request) = (
                self.docker.clone(),
                VolumeCreateRequest {
                    name: Some(name.clone()),
                    labels: Some(self.labels("portage-volume")),
                    ..Default::default()
                },
            );
            self.detached(async move { docker.create_volume(request).await })
                .await
                .ok_or_else(|| died("creating a volume"))?
                .map_err(|e| EngineError::request(format!("creating volume {name}"), e))?;
            mounts.push(Mount {
                target: Some(path.clone()),
                source: Some(name),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }

        options.emit(BuildEvent::Preparing {
            message: "creating the portage snapshot container".into(),
        });
        let name = self.container_name("portage");
        let body = ContainerCreateBody {
            image: Some(config.portage_image.clone()),
            labels: Some(self.labels("portage")),
            host_config: Some(HostConfig {
                mounts: (!mounts.is_empty()).then_some(mounts),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (docker, create_name) = (self.docker.clone(), name.clone());
        self.detached(async move {
            let options = CreateContainerOptionsBuilder::default()
                .name(&create_name)
                .build();
            docker.create_container(Some(options), body).await
        })
        .await
        .ok_or_else(|| died("creating the snapshot container"))?
        .map_err(|e| {
            EngineError::request(
                format!("creating container {name} from {}", config.portage_image),
                e,
            )
        })?;

        test_pause("setup", options).await;

        options.emit(BuildEvent::Preparing {
            message: "creating the builder container".into(),
        });
        let snapshot = name;
        let name = self.container_name("builder");
        let host_config = HostConfig {
            volumes_from: Some(vec![format!("{snapshot}:ro")]),
            mounts: Some(vec![Mount {
                target: Some("/var/cache/binpkgs".into()),
                source: Some(config.build_cache.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]),
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: config.network.clone(),
            // The engine's init as PID 1: it forwards signals and reaps, so stopping or removing the container
            // ends whatever runs in it (emerge included) instead of leaving orphans.
            init: Some(true),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(config.builder_image.clone()),
            entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
            cmd: Some(vec![]),
            env: Some(vec![format!("LANG={}", config.locale)]),
            labels: Some(self.labels("builder")),
            stop_signal: Some("SIGTERM".into()),
            stop_timeout: Some(1),
            host_config: Some(host_config),
            ..Default::default()
        };
        let (docker, create_name) = (self.docker.clone(), name.clone());
        self.detached(async move {
            let options = CreateContainerOptionsBuilder::default()
                .name(&create_name)
                .build();
            docker.create_container(Some(options), body).await
        })
        .await
        .ok_or_else(|| died("creating the builder container"))?
        .map_err(|e| {
            EngineError::request(
                format!("creating container {name} from {}", config.builder_image),
                e,
            )
        })?;
        let (docker, start_name) = (self.docker.clone(), name.clone());
        let started = self
            .detached(async move { docker.start_container(&start_name, None).await })
            .await
            .ok_or_else(|| died("starting the builder container"))?;
        if let Err(e) = started {
            let text = e.to_string();
            if text.contains("executable file not found") && text.contains("sleep") {
                return Err(super::super::BuildError::NotAStage3 {
                    image: config.builder_image.clone(),
                    missing: "sleep".into(),
                }
                .into());
            }
            return Err(EngineError::request(format!("starting container {name}"), e).into());
        }
        Ok(())
    }

    /// Remove the builder, then the snapshot, then the volumes; the cache volume is kept. Waits for creates still
    /// running, so that nothing they make is missed.
    pub(super) async fn cleanup(&mut self) -> Result<(), EngineError> {
        // Stays armed until the end: dropped half way, the drop guard removes by name and label again.
        let pending = std::mem::take(&mut self.pending);
        let mut interrupted_create = false;
        for task in pending {
            interrupted_create |= task.await.is_err();
        }
        let early = self
            .early_removal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = early {
            // Removed already, unless that removal failed or did not finish: then the removal below retries.
            let _ = task.await;
        }
        let names = self.container_names();
        let result = remove_all(&self.docker, &self.id, &names, &self.volumes).await;
        if interrupted_create {
            // A create request that died with its task may still be completed by the engine: look again.
            tokio::time::sleep(SETTLE).await;
            let again = remove_all(&self.docker, &self.id, &names, &self.volumes).await;
            self.armed = false;
            return again;
        }
        self.armed = false;
        result
    }
}

/// How long to wait before looking again for a container whose create request was cut short.
const SETTLE: Duration = Duration::from_secs(1);

impl Drop for Session {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // The build's future was dropped. Clean up from a thread of its own with a fresh connection: it works
        // whatever state the caller's runtime is in (even shutting down), and takes a second or two.
        let pending = std::mem::take(&mut self.pending);
        let early = self
            .early_removal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let (engine, id, names, volumes) = (
            self.engine.clone(),
            self.id.clone(),
            self.container_names(),
            self.volumes.clone(),
        );
        let _ = std::thread::Builder::new()
            .name("staves-cleanup".into())
            .spawn(move || {
                let _ = block_on(async move {
                    let mut interrupted_create = false;
                    for task in pending {
                        interrupted_create |= task.await.is_err();
                    }
                    if let Some(task) = early {
                        let _ = task.await;
                    }
                    let Ok(docker) = engine.connect().await else {
                        return;
                    };
                    let _ = remove_all(&docker, &id, &names, &volumes).await;
                    if interrupted_create {
                        tokio::time::sleep(SETTLE).await;
                        let _ = remove_all(&docker, &id, &names, &volumes).await;
                    }
                });
            });
    }
}

/// Remove a build's containers (by name, then anything else with its label) and then its volumes (likewise).
/// Every removal is tried; the first error is returned.
pub(super) async fn remove_all(
    docker: &Docker,
    id: &str,
    containers: &[String],
    volumes: &[String],
) -> Result<(), EngineError> {
    let mut first_error = None;
    let mut note = |result: Result<bool, EngineError>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    for name in containers {
        note(remove_container(docker, name).await);
    }
    let filter = HashMap::from([("label", vec![format!("{BUILD_LABEL}={id}")])]);
    match docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await
    {
        Ok(found) => {
            for container in found {
                if let Some(cid) = container.id {
                    note(remove_container(docker, &cid).await);
                }
            }
        }
        Err(e) => note(Err(EngineError::request(
            format!("listing the containers of build {id}"),
            e,
        ))),
    }
    for name in volumes {
        note(remove_volume(docker, name).await);
    }
    match docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filter)
                .build(),
        ))
        .await
    {
        Ok(found) => {
            for volume in found.volumes.unwrap_or_default() {
                note(remove_volume(docker, &volume.name).await);
            }
        }
        Err(e) => note(Err(EngineError::request(
            format!("listing the volumes of build {id}"),
            e,
        ))),
    }
    first_error.map_or(Ok(()), Err)
}
