//! `staves cache` on a binary package volume: each operation runs `binpkg_env.py` in a short-lived container of the
//! builder image (no network, the volume at `/var/cache/binpkgs`), which is removed whatever happens.

use crate::cache::CacheError;
use crate::engine::{Engine, EngineError};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::HashMap;

/// Where the volume is mounted in the cache container (Portage's default `PKGDIR`).
const PKGDIR: &str = "/var/cache/binpkgs";

/// The script's output: what it printed on stdout.
pub(super) struct ScriptOutput {
    pub(super) stdout: String,
}

/// Run `binpkg_env.py ARGS` against `volume` in a container of `builder_image`; its stdout on success.
pub(super) fn run(
    docker_host: Option<&str>,
    builder_image: &str,
    volume: &str,
    read_only: bool,
    args: &[String],
) -> crate::Result<ScriptOutput> {
    crate::engine::block_on(async {
        let docker = Engine::new(docker_host.map(str::to_owned))
            .connect()
            .await?;
        check_volume(&docker, volume).await?;
        if let Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) = docker.inspect_image(builder_image).await
        {
            return Err(EngineError::ImageUnavailable {
                image: builder_image.to_owned(),
                reason: "it is not in the engine (`staves cache` does not pull images)".into(),
            }
            .into());
        }
        let name = container_name();
        let result = run_in(&docker, &name, builder_image, volume, read_only, args).await;
        // Removed on every path, by name (a create cut short may have made a container whose id never arrived).
        let removed = docker
            .remove_container(
                &name,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await;
        match (result, removed) {
            (Err(err), _) => Err(err),
            (Ok(_), Err(e)) if !is_not_found(&e) => {
                Err(EngineError::request(format!("removing container {name}"), e).into())
            }
            (Ok(output), _) => Ok(output),
        }
    })?
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

async fn check_volume(docker: &Docker, volume: &str) -> crate::Result<()> {
    match docker.inspect_volume(volume).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Err(CacheError::NoVolume {
            volume: volume.to_owned(),
        }
        .into()),
        Err(e) => Err(EngineError::request(format!("inspecting volume {volume}"), e).into()),
    }
}

/// The labels of every Staves container: the build label (this container's own id), the role, and the owner, so
/// that `staves prune` finds it if this process dies before removing it.
fn labels(name: &str) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (
            crate::engine::BUILD_LABEL.to_owned(),
            name.trim_start_matches("staves-").to_owned(),
        ),
        (crate::engine::ROLE_LABEL.to_owned(), "cache".to_owned()),
    ]);
    labels.extend(crate::BuildOwner::current().labels());
    labels
}

fn container_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("staves-{}-cache-{nanos:08x}", std::process::id())
}

async fn run_in(
    docker: &Docker,
    name: &str,
    builder_image: &str,
    volume: &str,
    read_only: bool,
    args: &[String],
) -> crate::Result<ScriptOutput> {
    let mut argv = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        crate::cache::cache_container_script(),
        "sh".to_owned(),
    ];
    argv.extend(args.iter().cloned());
    let host_config = HostConfig {
        mounts: Some(vec![Mount {
            target: Some(PKGDIR.into()),
            source: Some(volume.to_owned()),
            typ: Some(MountType::VOLUME),
            read_only: Some(read_only),
            ..Default::default()
        }]),
        network_mode: Some("none".into()),
        ..Default::default()
    };
    let action = |what: &str| format!("{what} the cache container {name} ({builder_image})");
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            ContainerCreateBody {
                image: Some(builder_image.to_owned()),
                entrypoint: Some(argv),
                cmd: Some(vec![]),
                env: Some(vec![
                    format!("STAVES_BINPKG_ENV_PY={}", crate::cache::CHECK_SCRIPT),
                    "NOCOLOR=true".to_owned(),
                ]),
                labels: Some(labels(name)),
                host_config: Some(host_config),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| EngineError::request(action("creating"), e))?;
    docker
        .start_container(name, None)
        .await
        .map_err(|e| EngineError::request(action("starting"), e))?;
    let mut exit_code = 0;
    let mut wait = docker.wait_container(name, None);
    while let Some(item) = wait.next().await {
        match item {
            Ok(response) => exit_code = response.status_code,
            Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => exit_code = code,
            Err(e) => return Err(EngineError::request(action("waiting for"), e).into()),
        }
    }
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut logs = docker.logs(
        name,
        Some(
            LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .build(),
        ),
    );
    while let Some(item) = logs.next().await {
        match item.map_err(|e| EngineError::request(action("reading the output of"), e))? {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                stdout.extend_from_slice(&message)
            }
            LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
            LogOutput::StdIn { .. } => {}
        }
    }
    if exit_code != 0 {
        return Err(CacheError::Failed {
            volume: volume.to_owned(),
            exit_code,
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
        }
        .into());
    }
    Ok(ScriptOutput {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
    })
}
