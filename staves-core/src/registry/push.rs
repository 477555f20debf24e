//! The push itself: blobs (HEAD check, mount, streamed upload), then the manifest, then the referrers. Every
//! request is bounded by the connection's deadlines ([`super::http`]).

use super::auth::Sources;
use super::transport::{self, Connection, Request, RequestBody};
use super::{RegistryError, RegistryOptions, RegistryTarget};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// What a manifest `GET`/`HEAD` accepts: every manifest and index type.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

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
        let mount_from = self
            .mount_sources
            .get(target.registry())
            .filter(|repo| repo.as_str() != target.repository())
            .cloned();
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
                target.repository(),
                mount_from.as_deref(),
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
        let repository = target.repository();
        push_manifest(
            &connection,
            repository,
            &tag,
            &image.manifest,
            "pushing the manifest",
        )
        .await?;
        let found = manifest_digest(&connection, repository, &tag).await?;
        if found != image.manifest.digest {
            return Err(RegistryError::DigestMismatch {
                registry: connection.registry.clone(),
                reference: report.destination.clone(),
                expected: image.manifest.digest.clone(),
                found,
            });
        }
        for referrer in &image.referrers {
            push_manifest(
                &connection,
                repository,
                &referrer.manifest.digest,
                &referrer.manifest,
                "pushing the referrer (SBOM) manifest",
            )
            .await?;
            list_referrer(&connection, repository, &image.manifest, referrer).await?;
            report.referrers.push(referrer.manifest.digest.clone());
        }
        Ok(report)
    }
}

/// Push one blob unless the registry has it: HEAD, then mount, then a streamed upload.
async fn push_blob(
    connection: &Connection,
    repository: &str,
    mount_from: Option<&str>,
    blob: &BlobToPush,
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    let short = short_digest(&blob.digest);
    if blob_exists(connection, repository, &blob.digest, short).await? {
        report.skipped_bytes += blob.size;
        report.skipped_blobs += 1;
        return Ok(());
    }
    if let Some(source) = mount_from {
        if mount(connection, repository, source, &blob.digest).await? {
            report.mounted_bytes += blob.size;
            report.mounted_blobs += 1;
            return Ok(());
        }
    }
    let action = format!("uploading blob {short} ({} bytes)", blob.size);
    let scopes = [connection.push_scope(repository)];
    // The upload session: a POST answered 202 with the location to PUT the blob to.
    let clock = connection.clock();
    let url = connection.url(&format!("{repository}/blobs/uploads/"))?;
    let response = connection
        .send(
            Request {
                method: Method::POST,
                url,
                scopes: &scopes,
                headers: &[],
                body: RequestBody::Empty,
            },
            &clock,
            &action,
        )
        .await?;
    if response.status() != StatusCode::ACCEPTED {
        return Err(connection.answer_error(response, &clock, &action).await);
    }
    let mut location = location(connection, &response, &action)?;
    drop(response);
    location
        .query_pairs_mut()
        .append_pair("digest", &blob.digest);
    let body = match &blob.data {
        BlobData::Bytes(bytes) => RequestBody::Bytes(bytes),
        BlobData::File(path) => RequestBody::File(path, blob.size),
    };
    let clock = connection.upload_clock(blob.size);
    let octets = HeaderValue::from_static("application/octet-stream");
    let response = connection
        .send(
            Request {
                method: Method::PUT,
                url: location,
                scopes: &scopes,
                headers: &[(CONTENT_TYPE, octets)],
                body,
            },
            &clock,
            &action,
        )
        .await?;
    if !response.status().is_success() {
        return Err(connection.answer_error(response, &clock, &action).await);
    }
    report.uploaded_bytes += blob.size;
    report.uploaded_blobs += 1;
    Ok(())
}

/// Whether the repository has blob `digest` (`HEAD`: 200 yes, 404 no).
async fn blob_exists(
    connection: &Connection,
    repository: &str,
    digest: &str,
    short: &str,
) -> Result<bool, RegistryError> {
    let action = format!("checking for blob {short}");
    let clock = connection.clock();
    let url = connection.url(&format!("{repository}/blobs/{digest}"))?;
    let response = connection
        .send(
            Request {
                method: Method::HEAD,
                url,
                scopes: &[connection.push_scope(repository)],
                headers: &[],
                body: RequestBody::Empty,
            },
            &clock,
            &action,
        )
        .await?;
    match response.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(connection.answer_error(response, &clock, &action).await),
    }
}

/// Mount blob `digest` from repository `source` into `repository`; `false` when the registry did not (a registry
/// that cannot mount answers 202 and opens an upload instead, which is cancelled): upload then.
///
/// With token authentication the mount needs a token for both repositories (`pull` on the source, `push` on the
/// target). Only a stalled registry is an error: any other failure leaves the blob to be uploaded, and the upload
/// says what is wrong.
async fn mount(
    connection: &Connection,
    repository: &str,
    source: &str,
    digest: &str,
) -> Result<bool, RegistryError> {
    let action = format!("mounting blob {} from {source}", short_digest(digest));
    let scopes = [
        connection.push_scope(repository),
        format!("repository:{source}:pull"),
    ];
    let mut url = connection.url(&format!("{repository}/blobs/uploads/"))?;
    url.query_pairs_mut()
        .append_pair("mount", digest)
        .append_pair("from", source);
    let clock = connection.clock();
    let response = match connection
        .send(
            Request {
                method: Method::POST,
                url,
                scopes: &scopes,
                headers: &[],
                body: RequestBody::Empty,
            },
            &clock,
            &action,
        )
        .await
    {
        Ok(response) => response,
        Err(err @ RegistryError::TimedOut { .. }) => return Err(err),
        Err(_) => return Ok(false),
    };
    match response.status() {
        StatusCode::CREATED => Ok(true),
        StatusCode::ACCEPTED => {
            if let Ok(upload) = location(connection, &response, &action) {
                drop(response);
                // Best effort: an abandoned upload is removed by the registry's own upload purging anyway.
                let clock = connection.clock();
                let _ = connection
                    .send(
                        Request {
                            method: Method::DELETE,
                            url: upload,
                            scopes: &scopes,
                            headers: &[],
                            body: RequestBody::Empty,
                        },
                        &clock,
                        &action,
                    )
                    .await;
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// The `Location` of an answer, resolved against the request's URL.
fn location(
    connection: &Connection,
    response: &reqwest::Response,
    action: &str,
) -> Result<reqwest::Url, RegistryError> {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| response.url().join(l).ok())
        .ok_or_else(|| RegistryError::Client {
            registry: connection.registry.clone(),
            action: action.to_owned(),
            reason: format!(
                "the registry answered HTTP {} without a usable Location header",
                response.status().as_u16()
            ),
        })
}

/// Push `manifest` under `reference` (a tag or a digest).
async fn push_manifest(
    connection: &Connection,
    repository: &str,
    reference: &str,
    manifest: &ManifestToPush,
    action: &str,
) -> Result<(), RegistryError> {
    let content_type =
        HeaderValue::from_str(&manifest.media_type).map_err(|e| RegistryError::Client {
            registry: connection.registry.clone(),
            action: action.to_owned(),
            reason: format!("media type `{}`: {e}", manifest.media_type),
        })?;
    let bytes = bytes::Bytes::from(manifest.bytes.clone());
    let clock = connection.clock();
    let url = connection.url(&format!("{repository}/manifests/{reference}"))?;
    let response = connection
        .send(
            Request {
                method: Method::PUT,
                url,
                scopes: &[connection.push_scope(repository)],
                headers: &[(CONTENT_TYPE, content_type)],
                body: RequestBody::Bytes(&bytes),
            },
            &clock,
            action,
        )
        .await?;
    if !response.status().is_success() {
        return Err(connection.answer_error(response, &clock, action).await);
    }
    Ok(())
}

/// The digest the registry holds under `tag`: its `Docker-Content-Digest` header, else the digest of the manifest
/// it serves.
async fn manifest_digest(
    connection: &Connection,
    repository: &str,
    tag: &str,
) -> Result<String, RegistryError> {
    let action = "checking the pushed manifest";
    let accept = [(ACCEPT, HeaderValue::from_static(MANIFEST_TYPES))];
    let scopes = [connection.push_scope(repository)];
    let url = connection.url(&format!("{repository}/manifests/{tag}"))?;
    let digest_header = HeaderName::from_static("docker-content-digest");
    for method in [Method::HEAD, Method::GET] {
        let clock = connection.clock();
        let response = connection
            .send(
                Request {
                    method: method.clone(),
                    url: url.clone(),
                    scopes: &scopes,
                    headers: &accept,
                    body: RequestBody::Empty,
                },
                &clock,
                action,
            )
            .await?;
        if !response.status().is_success() {
            return Err(connection.answer_error(response, &clock, action).await);
        }
        if let Some(digest) = response
            .headers()
            .get(&digest_header)
            .and_then(|v| v.to_str().ok())
        {
            return Ok(digest.trim().to_owned());
        }
        if method == Method::GET {
            let body = connection.document(response, &clock, action).await?;
            use sha2::Digest as _;
            return Ok(format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(&body))
            ));
        }
    }
    Err(RegistryError::Client {
        registry: connection.registry.clone(),
        action: action.to_owned(),
        reason: "the registry names no digest for the manifest".to_owned(),
    })
}

/// Make the registry list `referrer` among the image's referrers: through its referrers API when it has one
/// (it then indexes the `subject` itself), else by adding it to the referrers tag `sha256-<hex>` index.
async fn list_referrer(
    connection: &Connection,
    repository: &str,
    subject: &ManifestToPush,
    referrer: &ReferrerToPush,
) -> Result<(), RegistryError> {
    let action = "listing the SBOM among the image's referrers";
    let listed = |index: &serde_json::Value| {
        index
            .get("manifests")
            .and_then(|m| m.as_array())
            .is_some_and(|m| {
                m.iter().any(|d| {
                    d.get("digest").and_then(|d| d.as_str()) == Some(&referrer.manifest.digest)
                })
            })
    };
    // The referrers API; a registry without it answers 404.
    let api = connection.url(&format!("{repository}/referrers/{}", subject.digest))?;
    if let Some(index) = fetch_index(connection, repository, api, action).await? {
        if listed(&index) {
            return Ok(());
        }
    }
    let tag = subject.digest.replace(':', "-");
    let tag_url = connection.url(&format!("{repository}/manifests/{tag}"))?;
    let existing = fetch_index(connection, repository, tag_url, action)
        .await?
        .filter(|v| v.get("manifests").is_some_and(|m| m.is_array()));
    if existing.as_ref().is_some_and(listed) {
        return Ok(());
    }
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
        repository,
        &tag,
        &ManifestToPush {
            digest: String::new(),
            media_type: OCI_INDEX.to_owned(),
            bytes,
        },
        action,
    )
    .await
}

/// `GET` an image index at `url`: `None` when the registry has none there (404, or an error code that says the
/// manifest or repository is unknown) or what it serves is not JSON.
async fn fetch_index(
    connection: &Connection,
    repository: &str,
    url: reqwest::Url,
    action: &str,
) -> Result<Option<serde_json::Value>, RegistryError> {
    let clock = connection.clock();
    let response = connection
        .send(
            Request {
                method: Method::GET,
                url,
                scopes: &[connection.push_scope(repository)],
                headers: &[(ACCEPT, HeaderValue::from_static(OCI_INDEX))],
                body: RequestBody::Empty,
            },
            &clock,
            action,
        )
        .await?;
    let status = response.status();
    if status.is_success() {
        let body = connection.document(response, &clock, action).await?;
        return Ok(serde_json::from_slice(&body).ok());
    }
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status.is_client_error()
        && status != StatusCode::UNAUTHORIZED
        && status != StatusCode::FORBIDDEN
    {
        let body = connection.error_body(response, &clock).await;
        let text = String::from_utf8_lossy(&body.bytes);
        if ["MANIFEST_UNKNOWN", "NAME_UNKNOWN", "NOT_FOUND"]
            .iter()
            .any(|code| text.contains(code))
        {
            return Ok(None);
        }
        return Err(RegistryError::Http {
            registry: connection.registry.clone(),
            status: status.as_u16(),
            action: action.to_owned(),
            message: body.error_message(),
        });
    }
    Err(connection.answer_error(response, &clock, action).await)
}

fn short_digest(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}
