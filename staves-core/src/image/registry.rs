//! The `docker://` outputs: the written image handed to the registry pusher.

use super::layer::LayerInfo;
use super::oci::Documents;
use crate::registry::{
    BlobData, BlobToPush, ImageToPush, ManifestToPush, PushReport, Pusher, RegistryError,
    RegistryOptions, RegistryTarget,
};
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
        referrers: Vec::new(),
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
