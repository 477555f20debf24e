//! The `docker://` outputs: the written image handed to the registry pusher.

use super::layer::LayerInfo;
use super::oci::Documents;
use crate::builder::{BuildError, CancelToken};
use crate::registry::{
    BlobData, BlobToPush, ImageToPush, ManifestToPush, PushReport, Pusher, ReferrerToPush,
    RegistryError, RegistryOptions, RegistryTarget,
};
use std::future::Future;
use std::path::Path;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The image as the pusher sees it: the config and manifest from `docs`, the layer streamed from `layer_path`.
pub(crate) fn image_to_push(docs: &Documents, layer: &LayerInfo, layer_path: &Path) -> ImageToPush {
    ImageToPush {
        blobs: vec![
            BlobToPush {
                digest: docs.config.digest.clone(),
                size: docs.config.bytes.len() as u64,
                data: BlobData::Bytes(docs.config.bytes.clone().into()),
            },
            BlobToPush {
                digest: layer.digest.clone(),
                size: layer.size,
                data: BlobData::File(layer_path.to_path_buf()),
            },
        ],
        manifest: ManifestToPush {
            digest: docs.manifest.digest.clone(),
            media_type: OCI_MANIFEST.to_owned(),
            bytes: docs.manifest.bytes.clone(),
        },
        referrers: docs
            .referrer
            .iter()
            .map(|r| ReferrerToPush {
                artifact_type: r.artifact_type.clone(),
                manifest: ManifestToPush {
                    digest: r.manifest.digest.clone(),
                    media_type: OCI_MANIFEST.to_owned(),
                    bytes: r.manifest.bytes.clone(),
                },
                blobs: [&r.config, &r.document]
                    .into_iter()
                    .map(|b| BlobToPush {
                        digest: b.digest.clone(),
                        size: b.bytes.len() as u64,
                        data: BlobData::Bytes(b.bytes.clone().into()),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The `docker://` outputs of an image, waiting for the commit: what to push where, and (after
/// [`PendingPush::upload`]) the blobs already in the registries. A `cancel` token that fires stops the push where
/// it is (its requests are dropped), with [`BuildError::Interrupted`].
pub(crate) struct PendingPush {
    image: ImageToPush,
    targets: Vec<RegistryTarget>,
    default_tag: String,
    options: RegistryOptions,
    cancel: Option<CancelToken>,
    staged: Option<StagedPushes>,
}

impl PendingPush {
    /// The pushes of `image` to `targets` (tag `default_tag` where a target names none).
    pub(crate) fn new(
        image: ImageToPush,
        targets: Vec<RegistryTarget>,
        default_tag: String,
        options: RegistryOptions,
        cancel: Option<CancelToken>,
    ) -> Self {
        Self {
            image,
            targets,
            default_tag,
            options,
            cancel,
            staged: None,
        }
    }

    /// Upload every blob the registries lack (once). Nothing is tagged remotely yet.
    pub(crate) async fn upload(&mut self) -> Result<(), crate::Error> {
        if self.staged.is_none() {
            let upload = upload_all(&self.image, &self.targets, &self.default_tag, &self.options);
            self.staged = Some(cancellable(self.cancel.as_ref(), upload).await?);
        }
        Ok(())
    }

    /// Push the manifests (the remote tags), uploading first if that has not happened; one report per target.
    pub(crate) async fn publish(mut self) -> Result<Vec<PushReport>, crate::Error> {
        self.upload().await?;
        match self.staged.take() {
            Some(staged) => cancellable(self.cancel.as_ref(), staged.publish(&self.image)).await,
            None => Ok(Vec::new()),
        }
    }
}

/// Run `push` until it ends or `cancel` fires; then it is dropped (its requests with it) and the result is
/// [`BuildError::Interrupted`].
async fn cancellable<T>(
    cancel: Option<&CancelToken>,
    push: impl Future<Output = Result<T, RegistryError>>,
) -> Result<T, crate::Error> {
    let Some(cancel) = cancel else {
        return Ok(push.await?);
    };
    tokio::select! {
        result = push => Ok(result?),
        () = cancel.cancelled() => Err(BuildError::Interrupted.into()),
    }
}

/// Pushes in progress: every blob is in its registry, no manifest is pushed yet.
pub(crate) struct StagedPushes {
    pusher: Pusher,
    staged: Vec<crate::registry::Staged>,
}

/// Upload the blobs of `image` to every target. Nothing is tagged in any registry yet.
pub(crate) async fn upload_all(
    image: &ImageToPush,
    targets: &[RegistryTarget],
    default_tag: &str,
    options: &RegistryOptions,
) -> Result<StagedPushes, RegistryError> {
    let mut pusher = Pusher::new(options);
    let mut staged = Vec::new();
    for target in targets {
        staged.push(pusher.upload(target, default_tag, image).await?);
    }
    Ok(StagedPushes { pusher, staged })
}

impl StagedPushes {
    /// Push every manifest (the remote tags), in the order the targets were given.
    pub(crate) async fn publish(
        self,
        image: &ImageToPush,
    ) -> Result<Vec<PushReport>, RegistryError> {
        let mut reports = Vec::new();
        for staged in self.staged {
            reports.push(self.pusher.publish(staged, image).await?);
        }
        Ok(reports)
    }
}
