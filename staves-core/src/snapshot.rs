//! What a Portage snapshot image holds besides ebuilds: its security advisories (`metadata/glsa/`) and its
//! timestamp (`metadata/timestamp.chk`). Read through the engine's archive API from a container that is created
//! but never started, and removed (with its anonymous volume) on every exit path.

use crate::advisory::{AdvisoryDb, AdvisoryError};
use crate::engine::EngineError;
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;

/// Where a Portage snapshot keeps the tree.
pub const PORTAGE_TREE: &str = "/var/db/repos/gentoo";

/// The advisories and timestamp of a Portage snapshot.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The image ID of the snapshot image (`sha256:…`), when read from an image.
    pub image_id: Option<String>,
    /// `metadata/timestamp.chk`, trimmed, when present.
    pub timestamp: Option<String>,
    /// The GLSAs of `metadata/glsa/` (empty when the snapshot ships none).
    #[serde(skip)]
    pub advisories: AdvisoryDb,
}

/// Errors reading a snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An advisory could not be read.
    #[error(transparent)]
    Advisory(#[from] AdvisoryError),
    /// The snapshot image does not exist locally.
    #[error(
        "the portage snapshot image {image} does not exist on the engine\n  \
         help: build or load it first, or pass another one with the portage image option"
    )]
    MissingImage {
        /// The image reference.
        image: String,
    },
}

/// Read the advisories and timestamp from the tree at `tree` inside `container` (created or running).
pub(crate) async fn read_from_container(
    docker: &Docker,
    container: &str,
    tree: &str,
) -> Result<SnapshotInfo, SnapshotError> {
    let glsa = download(docker, container, &format!("{tree}/metadata/glsa")).await?;
    let advisories = match glsa {
        Some(bytes) => AdvisoryDb::from_tar(bytes.as_slice())?,
        None => AdvisoryDb::default(),
    };
    let timestamp =
        match download(docker, container, &format!("{tree}/metadata/timestamp.chk")).await? {
            Some(bytes) => first_file_text(&bytes),
            None => None,
        };
    Ok(SnapshotInfo {
        image_id: None,
        timestamp,
        advisories,
    })
}

/// Read a snapshot image: create a container from it (never started), read, remove it and its volume.
pub async fn read_image(docker: &Docker, image: &str) -> Result<SnapshotInfo, SnapshotError> {
    let inspect = match docker.inspect_image(image).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            return Err(SnapshotError::MissingImage {
                image: image.to_owned(),
            });
        }
        Err(e) => {
            return Err(EngineError::request(format!("inspecting image {image}"), e).into());
        }
    };
    let name = format!(
        "staves-snapshot-{}-{:08x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    );
    let labels = HashMap::from([(crate::engine::BUILD_LABEL.to_owned(), name.clone())]);
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            ContainerCreateBody {
                image: Some(image.to_owned()),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await;
    let result = match created {
        Ok(_) => read_from_container(docker, &name, PORTAGE_TREE).await,
        Err(e) => Err(EngineError::request(format!("creating a container from {image}"), e).into()),
    };
    // By name: a create that failed on our side may still have been completed by the engine.
    let remove = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let removed = docker.remove_container(&name, Some(remove)).await;
    let mut info = result?;
    if let Err(e) = removed {
        if !matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        ) {
            return Err(EngineError::request(format!("removing container {name}"), e).into());
        }
    }
    info.image_id = inspect.id;
    Ok(info)
}

/// Download `path` from a container as a tar; `None` when it does not exist.
async fn download(
    docker: &Docker,
    container: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, EngineError> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = docker.download_from_container(container, Some(options));
    let mut bytes = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                // GLSAs are text; Gentoo's whole glsa directory is a few tens of MiB. Refuse anything absurd.
                if bytes.len() + chunk.len() > 256 << 20 {
                    return Err(EngineError::request(
                        format!("reading {path}"),
                        bollard::errors::Error::DockerStreamError {
                            error: "larger than 256 MiB: not a Portage snapshot's metadata".into(),
                        },
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(EngineError::request(format!("reading {path}"), e)),
        }
    }
    Ok(Some(bytes))
}

/// The trimmed text of the first regular file in a tar, when it is small UTF-8.
fn first_file_text(tar_bytes: &[u8]) -> Option<String> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut entry = archive
        .entries()
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.header().entry_type() == tar::EntryType::Regular)?;
    let mut text = String::new();
    entry.by_ref().take(4096).read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_file_of_a_tar() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(33);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(
                &mut header,
                "timestamp.chk",
                &b"Mon, 30 Nov 2026 00:00:00 +0000\n\n"[..],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let bytes = builder.into_inner().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            first_file_text(&bytes).as_deref(),
            Some("Mon, 30 Nov 2026 00:00:00 +0000")
        );
        assert_eq!(first_file_text(b"garbage"), None);
    }
}
