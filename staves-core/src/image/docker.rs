//! The `docker` output: load an untagged archive into the engine through its API, then tag it as the commit.
//!
//! Loading first and tagging last keeps the output all-or-nothing: until the tag is set, the engine holds only an
//! untagged image, which is removed again when the build stops before its commit (unless the engine had that
//! very image already).

use super::ImageError;
use crate::engine::{EngineError, is_not_found};
use bollard::Docker;
use futures_util::StreamExt;
use std::path::Path;

/// An image that was loaded but not tagged.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The image ID (`sha256:…` of the config).
    pub id: String,
    /// The engine had this image before the load: never remove it.
    pub existed_before: bool,
}

/// Whether the engine has the image `config_digest`.
pub(crate) async fn exists(docker: &Docker, config_digest: &str) -> Result<bool, ImageError> {
    match docker.inspect_image(config_digest).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(EngineError::request(format!("looking up image {config_digest}"), e).into()),
    }
}

/// Load the untagged docker archive at `archive` and check that the engine now has `config_digest` (which it had
/// before when `existed_before`, see [`exists`]).
pub(crate) async fn load_untagged(
    docker: &Docker,
    archive: &Path,
    tag: &str,
    config_digest: &str,
    existed_before: bool,
) -> Result<Loaded, ImageError> {
    let file = tokio::fs::File::open(archive)
        .await
        .map_err(|e| ImageError::Write {
            context: format!("opening {} to load it", archive.display()),
            source: e,
        })?;
    let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 16);
    let options = bollard::query_parameters::ImportImageOptionsBuilder::new()
        .quiet(true)
        .build();
    let mut stream = docker.import_image_stream(options, body, None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(message) = info.error_detail.and_then(|d| d.message) {
                    return Err(ImageError::DockerLoad {
                        tag: tag.to_owned(),
                        message,
                    });
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(ImageError::DockerLoad {
                    tag: tag.to_owned(),
                    message: error,
                });
            }
            Err(e) => return Err(EngineError::request(format!("loading {tag}"), e).into()),
        }
    }
    let inspect = docker.inspect_image(config_digest).await.map_err(|e| {
        if is_not_found(&e) {
            ImageError::DockerLoad {
                tag: tag.to_owned(),
                message: format!("after the load, the engine has no image {config_digest}"),
            }
        } else {
            EngineError::request(format!("inspecting the loaded image {tag}"), e).into()
        }
    })?;
    Ok(Loaded {
        id: inspect.id.unwrap_or_else(|| config_digest.to_owned()),
        existed_before,
    })
}

/// Tag the loaded image `name:version` and check the tag names it.
pub(crate) async fn tag(docker: &Docker, loaded: &Loaded, tag: &str) -> Result<(), ImageError> {
    // The tag is after the last `:` that follows the last `/` (a registry host may carry a port).
    let slash = tag.rfind('/').map_or(0, |i| i + 1);
    let (repo, version) = match tag[slash..].rfind(':') {
        Some(i) => (&tag[..slash + i], &tag[slash + i + 1..]),
        None => (tag, "latest"),
    };
    let options = bollard::query_parameters::TagImageOptionsBuilder::new()
        .repo(repo)
        .tag(version)
        .build();
    docker
        .tag_image(&loaded.id, Some(options))
        .await
        .map_err(|e| EngineError::request(format!("tagging the loaded image as {tag}"), e))?;
    let inspect = docker
        .inspect_image(tag)
        .await
        .map_err(|e| EngineError::request(format!("inspecting the tagged image {tag}"), e))?;
    if inspect.id.as_deref() != Some(loaded.id.as_str()) {
        return Err(ImageError::DockerLoad {
            tag: tag.to_owned(),
            message: format!(
                "after tagging, {tag} names {} instead of the written image {}",
                inspect.id.unwrap_or_default(),
                loaded.id
            ),
        });
    }
    Ok(())
}

/// Undo a load that will not be committed: remove the image unless the engine had it before.
pub(crate) async fn discard(docker: &Docker, loaded: &Loaded) -> Result<(), EngineError> {
    if loaded.existed_before {
        return Ok(());
    }
    let options = bollard::query_parameters::RemoveImageOptionsBuilder::new()
        .force(false)
        .noprune(false)
        .build();
    match docker.remove_image(&loaded.id, Some(options), None).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(EngineError::request(
            format!("removing the untagged image {}", loaded.id),
            e,
        )),
    }
}
