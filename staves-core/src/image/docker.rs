//! The `docker` output: load an archive into the engine through its API and check the tag.

use super::ImageError;
use crate::engine::{self, EngineError};
use crate::error::Error;
use futures_util::StreamExt;
use std::path::Path;

/// Run `fut` to completion from sync code: on the current tokio runtime when there is one (the caller must be in
/// `spawn_blocking` or a plain thread), else on a local current-thread runtime.
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output, ImageError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Ok(handle.block_on(fut)),
        Err(_) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ImageError::Write {
                    context: "starting a runtime to talk to the Docker engine".to_owned(),
                    source: e,
                })?;
            Ok(rt.block_on(fut))
        }
    }
}

/// Load the docker archive at `archive` into the engine and check that `tag` now names `config_digest`.
pub(crate) async fn load(
    host: Option<&str>,
    archive: &Path,
    tag: &str,
    config_digest: &str,
) -> Result<(), Error> {
    let docker = engine::connect(host).await?;
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
                    }
                    .into());
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(ImageError::DockerLoad {
                    tag: tag.to_owned(),
                    message: error,
                }
                .into());
            }
            Err(e) => return Err(EngineError::request(format!("loading {tag}"), e).into()),
        }
    }
    let inspect = docker
        .inspect_image(tag)
        .await
        .map_err(|e| EngineError::request(format!("inspecting the loaded image {tag}"), e))?;
    if inspect.id.as_deref() != Some(config_digest) {
        return Err(ImageError::DockerLoad {
            tag: tag.to_owned(),
            message: format!(
                "after the load, {tag} names {} instead of the written image {config_digest}",
                inspect.id.unwrap_or_default()
            ),
        }
        .into());
    }
    Ok(())
}
