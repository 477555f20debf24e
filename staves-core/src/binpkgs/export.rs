//! `staves cache export`: the build cache volume's binary packages and a `Packages` index, written into a
//! directory that any web server can serve as a Portage binhost. The packages are read in a short-lived container
//! of the builder image, which is removed whatever happens, and unpacked only when every entry is safe.

use crate::binhost::{BinhostError, PKGDIR, index_packages};
use crate::engine::EngineError;
use futures_util::StreamExt;
use serde::Serialize;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// What [`export_binhost`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BinhostExport {
    /// The directory written.
    pub dir: PathBuf,
    /// The packages in its `Packages` index (`category/package-version`, with `-BUILD_ID` when there is one).
    pub packages: Vec<String>,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// The export container's script: copy the complete binary packages (never a package another build is still
/// writing) out of the read-only cache, and let Portage index the copy.
const EXPORT_SCRIPT: &str = r#"set -eu
out=/tmp/staves-binhost
rm -rf "$out"
mkdir -p "$out"
cd /var/cache/binpkgs
find . -type f \( -name '*.gpkg.tar' -o -name '*.tbz2' -o -name '*.xpak' \) | while IFS= read -r f; do
  mkdir -p "$out/${f%/*}"
  cp -p "$f" "$out/$f"
done
PKGDIR="$out" FEATURES="-compress-index" emaint binhost --fix
test -s "$out/Packages" || { echo "staves: emaint wrote no Packages index" >&2; exit 1; }
"#;

/// Export the binary packages of the build cache `volume` (with a fresh `Packages` index) into `dir`, through a
/// short-lived container of `builder_image` on the engine at `docker_host` (`None`: `DOCKER_HOST`, else the local
/// socket). Blocking; see [`export_binhost_async`].
///
/// `dir` must not exist, be empty, or hold an earlier export (a `Packages` file): it is then replaced whole, never
/// merged. The files arrive through the engine's archive API, so the engine may be remote.
pub fn export_binhost(
    volume: &str,
    dir: &Path,
    builder_image: &str,
    docker_host: Option<&str>,
) -> crate::Result<BinhostExport> {
    crate::engine::block_on(export_binhost_async(
        volume,
        dir,
        builder_image,
        docker_host,
    ))?
}

/// [`export_binhost`] for async programs.
pub async fn export_binhost_async(
    volume: &str,
    dir: &Path,
    builder_image: &str,
    docker_host: Option<&str>,
) -> crate::Result<BinhostExport> {
    check_destination(dir)?;
    let docker = crate::engine::Engine::new(docker_host.map(str::to_owned))
        .connect()
        .await?;
    match docker.inspect_volume(volume).await {
        Ok(_) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            return Err(BinhostError::NoSuchVolume {
                volume: volume.to_owned(),
            }
            .into());
        }
        Err(e) => {
            return Err(EngineError::request(format!("inspecting volume {volume}"), e).into());
        }
    }
    if docker.inspect_image(builder_image).await.is_err() {
        return Err(EngineError::ImageUnavailable {
            image: builder_image.to_owned(),
            reason: "the export does not pull images".to_owned(),
        }
        .into());
    }
    let id = format!(
        "{}-export-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let name = format!("staves-{id}");
    let container = ExportContainer {
        docker: docker.clone(),
        name: name.clone(),
    };
    let result = run_export(&docker, &name, &id, volume, dir, builder_image).await;
    container.remove().await;
    result
}

/// Removes the export container; also on drop (in the background) if the export was cut short.
struct ExportContainer {
    docker: bollard::Docker,
    name: String,
}

impl ExportContainer {
    async fn remove(mut self) {
        let options = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let _ = self
            .docker
            .remove_container(&self.name, Some(options))
            .await;
        // Removed: nothing left for drop.
        self.name.clear();
    }
}

impl Drop for ExportContainer {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let docker = self.docker.clone();
            let name = std::mem::take(&mut self.name);
            handle.spawn(async move {
                let options = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build();
                let _ = docker.remove_container(&name, Some(options)).await;
            });
        }
    }
}

async fn run_export(
    docker: &bollard::Docker,
    name: &str,
    id: &str,
    volume: &str,
    dir: &Path,
    builder_image: &str,
) -> crate::Result<BinhostExport> {
    use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
    let request = |action: String| move |e| EngineError::request(action, e);
    docker
        .create_container(
            Some(
                bollard::query_parameters::CreateContainerOptionsBuilder::default()
                    .name(name)
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(builder_image.to_owned()),
                entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
                cmd: Some(vec![EXPORT_SCRIPT.to_owned()]),
                // A build's labels, with this process as owner: `staves prune` (and the next build) reap the
                // container if this process dies before removing it.
                labels: Some(
                    crate::BuildOwner::current()
                        .labels()
                        .into_iter()
                        .chain([(crate::engine::BUILD_LABEL.to_owned(), id.to_owned())])
                        .collect(),
                ),
                host_config: Some(HostConfig {
                    mounts: Some(vec![Mount {
                        target: Some(PKGDIR.into()),
                        source: Some(volume.to_owned()),
                        typ: Some(MountType::VOLUME),
                        read_only: Some(true),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .map_err(request(format!(
            "creating the export container from {builder_image}"
        )))?;
    docker
        .start_container(name, None)
        .await
        .map_err(request("starting the export container".to_owned()))?;
    let mut exit_code = 0;
    let mut wait = docker.wait_container(name, None);
    while let Some(status) = wait.next().await {
        match status {
            Ok(s) => exit_code = s.status_code,
            // bollard reports a non-zero exit as an error carrying the code.
            Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => exit_code = code,
            Err(e) => {
                return Err(EngineError::request("waiting for the export".to_owned(), e).into());
            }
        }
    }
    if exit_code != 0 {
        let mut log = String::new();
        let mut logs = docker.logs(
            name,
            Some(
                bollard::query_parameters::LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .tail("30")
                    .build(),
            ),
        );
        while let Some(Ok(chunk)) = logs.next().await {
            log.push_str(&chunk.to_string());
        }
        return Err(BinhostError::ExportFailed {
            volume: volume.to_owned(),
            exit_code,
            log,
        }
        .into());
    }
    // The whole directory as one tar stream, unpacked on a blocking thread into a staging directory next to `dir`.
    let stream = docker.download_from_container(
        name,
        Some(
            bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
                .path("/tmp/staves-binhost/.")
                .build(),
        ),
    );
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(
        stream.map(|chunk| chunk.map_err(std::io::Error::other)),
    ));
    let dest = dir.to_path_buf();
    tokio::task::spawn_blocking(move || unpack_export(reader, &dest))
        .await
        .map_err(|e| BinhostError::Write {
            context: "unpacking the exported packages".to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(Into::into)
}

/// `dir` is new, empty, or an earlier export.
fn check_destination(dir: &Path) -> Result<(), BinhostError> {
    let refuse = |reason: &str| BinhostError::Destination {
        path: dir.display().to_string(),
        reason: reason.to_owned(),
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(refuse(&e.to_string())),
        Ok(meta) if !meta.is_dir() => Err(refuse("it exists and is not a directory")),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir).map_err(|e| refuse(&e.to_string()))?;
            if entries.next().is_none() || dir.join("Packages").is_file() {
                Ok(())
            } else {
                Err(refuse("it is not empty and holds no Packages index"))
            }
        }
    }
}

/// Unpack the export tar (untrusted: it comes from a container) into a staging directory next to `dir`, check it
/// holds a `Packages` index, then put it in place of `dir`.
fn unpack_export(reader: impl Read, dir: &Path) -> Result<BinhostExport, BinhostError> {
    let write_err = |context: String| move |source| BinhostError::Write { context, source };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(write_err(format!("creating {}", parent.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(".staves-binhost-")
        .tempdir_in(&parent)
        .map_err(write_err(format!(
            "creating a staging directory in {}",
            parent.display()
        )))?;
    let mut archive = tar::Archive::new(reader);
    let mut files = 0;
    let mut bytes = 0;
    let entries = archive
        .entries()
        .map_err(write_err("reading the exported packages".to_owned()))?;
    for entry in entries {
        let mut entry = entry.map_err(write_err("reading the exported packages".to_owned()))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut relative = PathBuf::new();
        for component in Path::new(&raw).components() {
            match component {
                Component::Normal(part) => relative.push(part),
                Component::CurDir => {}
                _ => {
                    return Err(BinhostError::UnsafeEntry {
                        entry: raw,
                        reason: "only plain relative paths are allowed".to_owned(),
                    });
                }
            }
        }
        let target = staging.path().join(&relative);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target)
                    .map_err(write_err(format!("creating {}", target.display())))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if relative.as_os_str().is_empty() {
                    continue;
                }
                if let Some(p) = target.parent() {
                    std::fs::create_dir_all(p)
                        .map_err(write_err(format!("creating {}", p.display())))?;
                }
                let mut file = std::fs::File::create(&target)
                    .map_err(write_err(format!("writing {}", target.display())))?;
                bytes += std::io::copy(&mut entry, &mut file)
                    .map_err(write_err(format!("writing {}", target.display())))?;
                files += 1;
            }
            other => {
                return Err(BinhostError::UnsafeEntry {
                    entry: raw,
                    reason: format!("entries of type {other:?} are not part of a binhost"),
                });
            }
        }
    }
    let index = std::fs::read_to_string(staging.path().join("Packages"))
        .map_err(|_| BinhostError::NoIndex)?;
    let packages = index_packages(&index);
    // Replace an earlier export whole: move it aside, move the new one in, then delete the old one.
    // A temporary directory starts as 0700; a web server needs to read it.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(write_err(format!("writing {}", dir.display())))?;
    }
    let staged = staging.keep();
    if dir.exists() {
        let old = parent.join(format!(".staves-binhost-old-{}", std::process::id()));
        std::fs::rename(dir, &old).map_err(write_err(format!("replacing {}", dir.display())))?;
        std::fs::rename(&staged, dir).map_err(write_err(format!("writing {}", dir.display())))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&staged, dir).map_err(write_err(format!("writing {}", dir.display())))?;
    }
    Ok(BinhostExport {
        dir: dir.to_path_buf(),
        packages,
        files,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_export_streams_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        // Written raw: the tar crate refuses to build such a path itself.
        header.as_old_mut().name[..10].copy_from_slice(b"../escaped");
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        let bytes = builder.into_inner().unwrap();
        let err = unpack_export(&bytes[..], &dir.path().join("out")).unwrap_err();
        assert!(matches!(err, BinhostError::UnsafeEntry { .. }), "{err}");
        assert!(!dir.path().join("escaped").exists());
        assert!(!dir.path().join("out").exists());
    }

    #[test]
    fn destinations_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        check_destination(&dir.path().join("new")).unwrap();
        check_destination(dir.path()).unwrap();
        std::fs::write(dir.path().join("other"), "x").unwrap();
        let err = check_destination(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
        std::fs::write(dir.path().join("Packages"), "x").unwrap();
        check_destination(dir.path()).unwrap();
    }
}
