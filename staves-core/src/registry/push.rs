//! The push itself: blobs (HEAD check, mount, streamed upload), then the manifest, then the referrers.

use super::auth::Sources;
use super::transport::{self, Connection};
use super::{RegistryError, RegistryOptions, RegistryTarget};
use futures_util::TryStreamExt;
use oci_client::errors::OciDistributionError;
use reqwest::header::HeaderValue;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Where a blob's bytes are.
#[derive(Debug, Clone)]
pub(crate) enum BlobData {
    /// A file, streamed as the request body.
    File(PathBuf),
    /// Bytes in memory (small documents).
    Bytes(bytes::Bytes),
}

/// One blob to push.
#[derive(Debug, Clone)]
pub(crate) struct BlobToPush {
    /// `sha256:…`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its content.
    pub data: BlobData,
}

/// A manifest (or index) to push.
#[derive(Debug, Clone)]
pub(crate) struct ManifestToPush {
    /// `sha256:…` of `bytes`.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The exact bytes (their digest is the image digest).
    pub bytes: Vec<u8>,
}

/// A referrer of the image: an artifact manifest whose `subject` is the image manifest, with its blobs.
#[derive(Debug, Clone)]
pub(crate) struct ReferrerToPush {
    /// Its `artifactType`.
    pub artifact_type: String,
    /// Its manifest.
    pub manifest: ManifestToPush,
    /// Its blobs (config and layers).
    pub blobs: Vec<BlobToPush>,
}

/// An image to push: its blobs (config and layers), its manifest, and its referrers.
#[derive(Debug, Clone)]
pub(crate) struct ImageToPush {
    /// Config and layer blobs.
    pub blobs: Vec<BlobToPush>,
    /// The image manifest.
    pub manifest: ManifestToPush,
    /// Documents attached to the image (an SBOM).
    pub referrers: Vec<ReferrerToPush>,
}

/// What one push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PushReport {
    /// `HOST[:PORT]/REPO:TAG`.
    pub destination: String,
    /// The image digest the registry stores under the tag (checked after the push).
    pub digest: String,
    /// Bytes of blobs uploaded.
    pub uploaded_bytes: u64,
    /// Bytes of blobs the registry already had in this repository (not uploaded).
    pub skipped_bytes: u64,
    /// Bytes of blobs mounted from another repository of the registry (not uploaded).
    pub mounted_bytes: u64,
    /// Number of blobs uploaded.
    pub uploaded_blobs: usize,
    /// Number of blobs already there.
    pub skipped_blobs: usize,
    /// Number of blobs mounted.
    pub mounted_blobs: usize,
    /// Digests of the referrer manifests pushed with the image (the SBOM).
    pub referrers: Vec<String>,
    /// Whether plain HTTP was used (a loopback or `--insecure-registry` registry without TLS).
    pub plain_http: bool,
}

/// An image whose blobs are in the registry, waiting for its manifest.
pub(crate) struct Staged {
    connection: Connection,
    target: RegistryTarget,
    tag: String,
    report: PushReport,
}

/// Pushes one image to one or more registries: blobs first ([`Pusher::upload`]), manifests last
/// ([`Pusher::publish`]), so that nothing is tagged remotely before every blob has arrived.
pub(crate) struct Pusher {
    options: RegistryOptions,
    sources: Sources,
    /// The first repository each registry received the blobs in: later pushes mount from it.
    mount_sources: HashMap<String, String>,
}

impl Pusher {
    /// A pusher with `options`, reading credentials from the files they and the environment name.
    pub(crate) fn new(options: &RegistryOptions) -> Self {
        Self {
            sources: Sources::from_env(options.auth_file.as_deref()),
            options: options.clone(),
            mount_sources: HashMap::new(),
        }
    }

    /// Upload every blob of `image` that the registry lacks to `target` (tag `tag` when the target has none).
    pub(crate) async fn upload(
        &mut self,
        target: &RegistryTarget,
        default_tag: &str,
        image: &ImageToPush,
    ) -> Result<Staged, RegistryError> {
        let connection = transport::connect(target, &self.options, &self.sources).await?;
        let tag = target.tag().unwrap_or(default_tag).to_owned();
        let reference = target.reference(&tag);
        connection
            .client
            .store_auth_if_needed(reference.resolve_registry(), &connection.auth)
            .await;
        let mount_from = self
            .mount_sources
            .get(target.registry())
            .filter(|repo| repo.as_str() != target.repository())
            .map(|repo| target_in(target, repo));
        let mut report = PushReport {
            destination: target.with_default_tag(&tag),
            digest: image.manifest.digest.clone(),
            uploaded_bytes: 0,
            skipped_bytes: 0,
            mounted_bytes: 0,
            uploaded_blobs: 0,
            skipped_blobs: 0,
            mounted_blobs: 0,
            referrers: Vec::new(),
            plain_http: connection.scheme == "http",
        };
        let blobs = image
            .blobs
            .iter()
            .chain(image.referrers.iter().flat_map(|r| r.blobs.iter()));
        let mut seen = std::collections::HashSet::new();
        for blob in blobs {
            if !seen.insert(blob.digest.as_str()) {
                continue;
            }
            if let Err(err) = push_blob(
                &connection,
                &reference,
                mount_from.as_ref(),
                blob,
                &mut report,
            )
            .await
            {
                return Err(connection
                    .explain_unauthorized(err, target.repository())
                    .await);
            }
        }
        self.mount_sources
            .entry(target.registry().to_owned())
            .or_insert_with(|| target.repository().to_owned());
        Ok(Staged {
            connection,
            target: target.clone(),
            tag,
            report,
        })
    }

    /// Push the manifest of a staged image under its tag, check the digest the registry reports, then push the
    /// referrers.
    pub(crate) async fn publish(
        &self,
        staged: Staged,
        image: &ImageToPush,
    ) -> Result<PushReport, RegistryError> {
        let Staged {
            connection,
            target,
            tag,
            mut report,
        } = staged;
        let reference = target.reference(&tag);
        push_manifest(
            &connection,
            &reference,
            &image.manifest,
            "pushing the manifest",
        )
        .await?;
        let found = connection
            .client
            .fetch_manifest_digest(&reference, &connection.auth)
            .await
            .map_err(|e| connection.error("checking the pushed manifest", e))?;
        if found != image.manifest.digest {
            return Err(RegistryError::DigestMismatch {
                registry: connection.registry.clone(),
                reference: report.destination.clone(),
                expected: image.manifest.digest.clone(),
                found,
            });
        }
        for referrer in &image.referrers {
            let by_digest = target.reference_by_digest(&referrer.manifest.digest);
            push_manifest(
                &connection,
                &by_digest,
                &referrer.manifest,
                "pushing the referrer (SBOM) manifest",
            )
            .await?;
            list_referrer(&connection, &target, &image.manifest, referrer).await?;
            report.referrers.push(referrer.manifest.digest.clone());
        }
        Ok(report)
    }
}

/// `target`'s registry with another repository.
fn target_in(target: &RegistryTarget, repository: &str) -> oci_client::Reference {
    oci_client::Reference::with_tag(
        target.registry().to_owned(),
        repository.to_owned(),
        "latest".to_owned(),
    )
}

/// Push one blob unless the registry has it: HEAD, then mount, then a streamed upload.
async fn push_blob(
    connection: &Connection,
    reference: &oci_client::Reference,
    mount_from: Option<&oci_client::Reference>,
    blob: &BlobToPush,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    let short = short_digest(&blob.digest);
    let exists = connection
        .client
        .blob_exists(reference, &blob.digest)
        .await
        .map_err(|e| connection.error(&format!("checking for blob {short}"), e))?;
    if exists {
        report.skipped_bytes += blob.size;
        report.skipped_blobs += 1;
        return Ok(());
    }
    if let Some(source) = mount_from {
        if mount(connection, reference, source, &blob.digest).await {
            report.mounted_bytes += blob.size;
            report.mounted_blobs += 1;
            return Ok(());
        }
    }
    let action = format!("uploading blob {short} ({} bytes)", blob.size);
    match &blob.data {
        BlobData::Bytes(bytes) => {
            connection
                .client
                .push_blob(reference, bytes.clone(), &blob.digest)
                .await
                .map_err(|e| connection.error(&action, e))?;
        }
        BlobData::File(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|source| RegistryError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 18)
                .map_err(OciDistributionError::IoError);
            connection
                .client
                .push_blob_stream(reference, stream, &blob.digest, Some(blob.size))
                .await
                .map_err(|e| connection.error(&action, e))?;
        }
    }
    report.uploaded_bytes += blob.size;
    report.uploaded_blobs += 1;
    Ok(())
}

/// Mount blob `digest` from `source` into `reference`'s repository; `false` when the registry did not (a registry
/// that cannot mount answers 202 and opens an upload instead): upload then.
///
/// With token authentication the mount needs a token for both repositories (`pull` on the source, `push` on the
/// target), which oci-client does not ask for: the registry would refuse it and every blob would be uploaded again.
async fn mount(
    connection: &Connection,
    reference: &oci_client::Reference,
    source: &oci_client::Reference,
    digest: &str,
) -> bool {
    let scopes = [
        format!("repository:{}:pull,push", reference.repository()),
        format!("repository:{}:pull", source.repository()),
    ];
    match connection.token_for(&scopes).await {
        Ok(Some(token)) => {
            connection
                .mount_with_token(&token, reference, source.repository(), digest)
                .await
        }
        Ok(None) => connection
            .client
            .mount_blob(reference, source, digest)
            .await
            .is_ok(),
        // The mount only saves an upload; the upload reports what is wrong with the credentials.
        Err(_) => false,
    }
}

async fn push_manifest(
    connection: &Connection,
    reference: &oci_client::Reference,
    manifest: &ManifestToPush,
    action: &str,
) -> Result<(), RegistryError> {
    let content_type =
        HeaderValue::from_str(&manifest.media_type).map_err(|e| RegistryError::Client {
            registry: connection.registry.clone(),
            action: action.to_owned(),
            reason: format!("media type `{}`: {e}", manifest.media_type),
        })?;
    connection
        .client
        .push_manifest_raw(reference, manifest.bytes.clone(), content_type)
        .await
        .map_err(|e| connection.error(action, e))?;
    Ok(())
}

/// Make the registry list `referrer` among the image's referrers: through its referrers API when it has one
/// (it then indexes the `subject` itself), else by adding it to the referrers tag `sha256-<hex>` index.
async fn list_referrer(
    connection: &Connection,
    target: &RegistryTarget,
    subject: &ManifestToPush,
    referrer: &ReferrerToPush,
) -> Result<(), RegistryError> {
    let action = "listing the SBOM among the image's referrers";
    let subject_ref = target.reference_by_digest(&subject.digest);
    let listed = |index: &oci_client::manifest::OciImageIndex| {
        index
            .manifests
            .iter()
            .any(|m| m.digest == referrer.manifest.digest)
    };
    let index = connection
        .client
        .pull_referrers(&subject_ref, None)
        .await
        .map_err(|e| connection.error(action, e))?;
    if listed(&index) {
        return Ok(());
    }
    let tag = subject.digest.replace(':', "-");
    let tag_ref = target.reference(&tag);
    let existing = match connection
        .client
        .pull_manifest_raw(&tag_ref, &connection.auth, &[OCI_INDEX])
        .await
    {
        Ok((bytes, _)) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .filter(|v| v.get("manifests").is_some_and(|m| m.is_array())),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(connection.error(action, e)),
    };
    let mut index = existing.unwrap_or_else(
        || serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
    );
    let annotations = serde_json::from_slice::<serde_json::Value>(&referrer.manifest.bytes)
        .ok()
        .and_then(|m| m.get("annotations").cloned());
    let mut descriptor = serde_json::json!({
        "mediaType": OCI_MANIFEST,
        "digest": referrer.manifest.digest,
        "size": referrer.manifest.bytes.len(),
        "artifactType": referrer.artifact_type,
    });
    if let Some(annotations) = annotations {
        descriptor["annotations"] = annotations;
    }
    if let Some(manifests) = index.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        manifests.push(descriptor);
    }
    let bytes = serde_json::to_vec(&index).map_err(|e| RegistryError::Client {
        registry: connection.registry.clone(),
        action: action.to_owned(),
        reason: e.to_string(),
    })?;
    push_manifest(
        connection,
        &tag_ref,
        &ManifestToPush {
            digest: String::new(),
            media_type: OCI_INDEX.to_owned(),
            bytes,
        },
        action,
    )
    .await
}

fn is_not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
                    | oci_client::errors::OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

fn short_digest(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}
