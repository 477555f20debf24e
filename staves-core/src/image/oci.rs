//! OCI documents (config, manifest, index) and the on-disk outputs (layout directory and archives).

use super::entry::{self, Entry, Kind};
use super::layer::LayerInfo;
use super::{Compression, ImageError, ImageWriter};
use crate::timestamp::rfc3339;
use oci_spec::image::{
    ConfigBuilder, Descriptor, DescriptorBuilder, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, RootFsBuilder, Sha256Digest,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

/// A JSON document and its digest.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Self {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        Self { bytes, digest }
    }
    pub(crate) fn hex(&self) -> &str {
        hex_of(&self.digest)
    }
}

pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The documents of one image.
#[derive(Debug, Clone)]
pub(crate) struct Documents {
    pub config: Blob,
    pub manifest: Blob,
    pub index: Blob,
    /// Docker's `manifest.json` for the OCI archive (paths under `blobs/sha256/`).
    pub docker_manifest_oci: Vec<u8>,
    /// Docker's `manifest.json` for the docker archive (classic paths).
    pub docker_manifest_classic: Vec<u8>,
    /// The same without `RepoTags`: what the `docker` output loads, so that nothing is tagged before the commit.
    pub docker_manifest_untagged: Vec<u8>,
    /// The referrer attached to the image (OCI outputs only), with its blobs.
    pub referrer: Option<ReferrerBlobs>,
}

/// The blobs of an OCI 1.1 referrer: its manifest, its empty config and its one document.
#[derive(Debug, Clone)]
pub(crate) struct ReferrerBlobs {
    pub artifact_type: String,
    pub manifest: Blob,
    pub config: Blob,
    pub document: Blob,
}

impl ReferrerBlobs {
    fn blobs(&self) -> [&Blob; 3] {
        [&self.manifest, &self.config, &self.document]
    }
}

/// The OCI 1.1 empty descriptor's content (`application/vnd.oci.empty.v1+json`).
const EMPTY_JSON: &[u8] = b"{}";

/// Build the referrer manifest that attaches `referrer` to the image manifest `subject`.
fn referrer_blobs(
    referrer: super::Referrer,
    subject: &Blob,
    created: &str,
) -> Result<ReferrerBlobs, ImageError> {
    let document = Blob::new(referrer.bytes);
    let config = Blob::new(EMPTY_JSON.to_vec());
    let artifact = MediaType::Other(referrer.artifact_type.clone());
    let title = referrer.title;
    let mut config_desc = descriptor(
        MediaType::EmptyJSON,
        &config.digest,
        EMPTY_JSON.len() as u64,
        "referrer",
    )?;
    config_desc.set_data(Some("e30=".to_owned()));
    let mut layer = descriptor(
        artifact.clone(),
        &document.digest,
        document.bytes.len() as u64,
        "referrer",
    )?;
    layer.set_annotations(Some(HashMap::from([(
        "org.opencontainers.image.title".to_owned(),
        title,
    )])));
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(artifact)
        .config(config_desc)
        .layers(vec![layer])
        .subject(descriptor(
            MediaType::ImageManifest,
            &subject.digest,
            subject.bytes.len() as u64,
            "referrer",
        )?)
        .annotations(HashMap::from([(
            "org.opencontainers.image.created".to_owned(),
            created.to_owned(),
        )]))
        .build()
        .map_err(doc_err("referrer manifest"))?;
    Ok(ReferrerBlobs {
        artifact_type: referrer.artifact_type,
        manifest: Blob::new(to_json(&manifest, "referrer manifest")?),
        config,
        document,
    })
}

/// Sort every object's keys recursively, so the bytes never depend on hash-map order.
fn canonical(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(canonical).collect())
        }
        other => other,
    }
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<Vec<u8>, ImageError> {
    let value = serde_json::to_value(value).map_err(|e| ImageError::Document {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    serde_json::to_vec(&canonical(value)).map_err(|e| ImageError::Document {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn doc_err(what: &str) -> impl Fn(oci_spec::OciSpecError) -> ImageError + '_ {
    move |e| ImageError::Document {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

fn digest(d: &str, what: &str) -> Result<oci_spec::image::Digest, ImageError> {
    Sha256Digest::from_str(hex_of(d))
        .map(Into::into)
        .map_err(doc_err(what))
}

fn descriptor(
    media: MediaType,
    digest_str: &str,
    size: u64,
    what: &str,
) -> Result<Descriptor, ImageError> {
    DescriptorBuilder::default()
        .media_type(media)
        .digest(digest(digest_str, what)?)
        .size(size)
        .build()
        .map_err(doc_err(what))
}

/// Build config, manifest and index for `layer`.
pub(crate) fn documents(w: &ImageWriter, layer: &LayerInfo) -> Result<Documents, ImageError> {
    let created = rfc3339(w.created);
    let mut config = ConfigBuilder::default();
    if !w.entrypoint.is_empty() {
        config = config.entrypoint(w.entrypoint.clone());
    }
    if !w.cmd.is_empty() {
        config = config.cmd(w.cmd.clone());
    }
    if let Some(user) = &w.user {
        config = config.user(user.clone());
    }
    if let Some(dir) = &w.workdir {
        config = config.working_dir(dir.clone());
    }
    if !w.env.is_empty() {
        config = config.env(w.env.clone());
    }
    if !w.exposed_ports.is_empty() {
        config = config.exposed_ports(w.exposed_ports.clone());
    }
    if !w.volumes.is_empty() {
        config = config.volumes(w.volumes.clone());
    }
    if let Some(signal) = &w.stop_signal {
        config = config.stop_signal(signal.clone());
    }
    if !w.labels.is_empty() {
        config = config.labels(
            w.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    let config = config.build().map_err(doc_err("image config"))?;
    let image_config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(w.arch.as_str())
        .os(w.os.as_str())
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![layer.diff_id.clone()])
                .build()
                .map_err(doc_err("image config"))?,
        )
        .history(vec![
            HistoryBuilder::default()
                .created(created)
                .created_by("staves assemble")
                .build()
                .map_err(doc_err("image config"))?,
        ])
        .build()
        .map_err(doc_err("image config"))?;
    let config = Blob::new(to_json(&image_config, "image config")?);

    let layer_media = match w.compression {
        Compression::Gzip => MediaType::ImageLayerGzip,
        Compression::Zstd => MediaType::ImageLayerZstd,
    };
    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &config.digest,
            config.bytes.len() as u64,
            "manifest",
        )?)
        .layers(vec![descriptor(
            layer_media,
            &layer.digest,
            layer.size,
            "manifest",
        )?]);
    if !w.labels.is_empty() {
        manifest = manifest.annotations(
            w.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    let manifest = manifest.build().map_err(doc_err("manifest"))?;
    let manifest = Blob::new(to_json(&manifest, "manifest")?);

    let mut entry = descriptor(
        MediaType::ImageManifest,
        &manifest.digest,
        manifest.bytes.len() as u64,
        "index",
    )?;
    entry.set_annotations(Some(HashMap::from([(
        "org.opencontainers.image.ref.name".to_owned(),
        w.version.clone(),
    )])));
    let referrer = match w.referrer_source() {
        Some(source) => Some(referrer_blobs(
            source(&manifest.digest)?,
            &manifest,
            &rfc3339(w.created),
        )?),
        None => None,
    };
    let mut entries = vec![entry];
    if let Some(r) = &referrer {
        let mut entry = descriptor(
            MediaType::ImageManifest,
            &r.manifest.digest,
            r.manifest.bytes.len() as u64,
            "index",
        )?;
        entry.set_artifact_type(Some(MediaType::Other(r.artifact_type.clone())));
        entries.push(entry);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()
        .map_err(doc_err("index"))?;
    let index = Blob::new(to_json(&index, "index")?);

    let tag = w.tag();
    let docker_manifest_oci = to_json(
        &serde_json::json!([{
            "Config": format!("blobs/sha256/{}", config.hex()),
            "RepoTags": [tag],
            "Layers": [format!("blobs/sha256/{}", hex_of(&layer.digest))],
        }]),
        "manifest.json",
    )?;
    let docker_manifest_classic = to_json(
        &serde_json::json!([{
            "Config": format!("{}.json", config.hex()),
            "RepoTags": [tag],
            "Layers": [format!("{}/layer.tar", hex_of(&layer.diff_id))],
        }]),
        "manifest.json",
    )?;
    let docker_manifest_untagged = to_json(
        &serde_json::json!([{
            "Config": format!("{}.json", config.hex()),
            "RepoTags": null,
            "Layers": [format!("{}/layer.tar", hex_of(&layer.diff_id))],
        }]),
        "manifest.json",
    )?;
    Ok(Documents {
        config,
        manifest,
        index,
        docker_manifest_oci,
        docker_manifest_classic,
        referrer,
        docker_manifest_untagged,
    })
}

pub(crate) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Content of one archive member.
pub(crate) enum Member<'a> {
    Dir,
    Bytes(&'a [u8]),
    File(&'a Path, u64),
}

/// Write a deterministic tar of `members` (which must be in canonical order) to `out`.
///
/// File members are copied file-to-file (`copy_file_range` where the kernel offers it), everything else is
/// buffered.
pub(crate) fn write_archive(out: &mut File, members: &[(String, Member<'_>)]) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    for (name, member) in members {
        let mut e = Entry::new(name.as_bytes().to_vec(), Kind::File);
        match member {
            Member::Dir => {
                e.kind = Kind::Dir;
                e.mode = 0o755;
                entry::write_header(&mut buf, &e)?;
            }
            Member::Bytes(bytes) => {
                e.mode = 0o644;
                e.size = bytes.len() as u64;
                entry::write_header(&mut buf, &e)?;
                entry::write_data(&mut buf, &mut &bytes[..], e.size)?;
            }
            Member::File(path, size) => {
                e.mode = 0o644;
                e.size = *size;
                entry::write_header(&mut buf, &e)?;
                out.write_all(&buf)?;
                buf.clear();
                let mut src = File::open(path)?.take(*size);
                let copied = io::copy(&mut src, out)?;
                if copied != *size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} is shorter than expected", path.display()),
                    ));
                }
                let pad = ((entry::BLOCK - size % entry::BLOCK) % entry::BLOCK) as usize;
                buf.extend(std::iter::repeat_n(0u8, pad));
            }
        }
    }
    entry::write_trailer(&mut buf)?;
    out.write_all(&buf)?;
    out.flush()
}

/// The members of the OCI archive (OCI layout plus Docker's `manifest.json`), in canonical order.
pub(crate) fn oci_members<'a>(
    docs: &'a Documents,
    layer: &LayerInfo,
    layer_path: &'a Path,
) -> Vec<(String, Member<'a>)> {
    let mut blobs: Vec<(String, Member<'a>)> = vec![
        (
            format!("blobs/sha256/{}", docs.config.hex()),
            Member::Bytes(&docs.config.bytes),
        ),
        (
            format!("blobs/sha256/{}", docs.manifest.hex()),
            Member::Bytes(&docs.manifest.bytes),
        ),
        (
            format!("blobs/sha256/{}", hex_of(&layer.digest)),
            Member::File(layer_path, layer.size),
        ),
    ];
    if let Some(r) = &docs.referrer {
        for blob in r.blobs() {
            blobs.push((
                format!("blobs/sha256/{}", blob.hex()),
                Member::Bytes(&blob.bytes),
            ));
        }
    }
    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    blobs.dedup_by(|a, b| a.0 == b.0);
    let mut members = vec![
        ("blobs".to_owned(), Member::Dir),
        ("blobs/sha256".to_owned(), Member::Dir),
    ];
    members.extend(blobs);
    members.push(("index.json".to_owned(), Member::Bytes(&docs.index.bytes)));
    members.push((
        "manifest.json".to_owned(),
        Member::Bytes(&docs.docker_manifest_oci),
    ));
    members.push(("oci-layout".to_owned(), Member::Bytes(OCI_LAYOUT)));
    members
}

/// The members of the docker archive (`docker save` layout), in canonical order.
///
/// The layer file is `<diff_id>/layer.tar`; it holds `layer_path`, which is either the compressed blob or (for
/// engines that cannot decompress zstd) the uncompressed layer of `layer_size` bytes. An untagged archive names no
/// `RepoTags`: loading it tags nothing.
pub(crate) fn docker_members<'a>(
    docs: &'a Documents,
    layer: &LayerInfo,
    layer_path: &'a Path,
    layer_size: u64,
    tagged: bool,
) -> Vec<(String, Member<'a>)> {
    let mut members = vec![
        (
            format!("{}.json", docs.config.hex()),
            Member::Bytes(&docs.config.bytes),
        ),
        (hex_of(&layer.diff_id).to_owned(), Member::Dir),
        (
            format!("{}/layer.tar", hex_of(&layer.diff_id)),
            Member::File(layer_path, layer_size),
        ),
    ];
    members.sort_by(|a, b| entry::cmp_paths(a.0.as_bytes(), b.0.as_bytes()));
    let manifest = if tagged {
        &docs.docker_manifest_classic
    } else {
        &docs.docker_manifest_untagged
    };
    members.push(("manifest.json".to_owned(), Member::Bytes(manifest)));
    members
}

/// Write an archive to a temporary file next to `dest` and return it (not yet persisted) with its size.
pub(crate) fn archive_to_temp(
    dest: &Path,
    members: &[(String, Member<'_>)],
) -> Result<(tempfile::NamedTempFile, u64), ImageError> {
    let ctx = |e: io::Error| ImageError::Write {
        context: format!("writing {}", dest.display()),
        source: e,
    };
    let mut temp = temp_file_next_to(dest)?;
    write_archive(temp.as_file_mut(), members).map_err(ctx)?;
    let size = temp.as_file().metadata().map_err(ctx)?.len();
    set_mode(temp.path(), 0o644).map_err(ctx)?;
    Ok((temp, size))
}

/// Give an output the usual permissions (temporary files start as 0600).
pub(crate) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A temporary file in `dest`'s directory, so that persisting it is an atomic rename.
pub(crate) fn temp_file_next_to(dest: &Path) -> Result<tempfile::NamedTempFile, ImageError> {
    let dir = parent_dir(dest);
    tempfile::Builder::new()
        .prefix(".staves-")
        .tempfile_in(dir)
        .map_err(|e| ImageError::Write {
            context: format!(
                "creating a temporary file in {} for {}",
                dir.display(),
                dest.display()
            ),
            source: e,
        })
}

/// The directory an output path lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write an OCI layout into a temporary directory next to `dest`; returns it (not yet moved) and its total size.
pub(crate) fn layout_to_temp(
    dest: &Path,
    docs: &Documents,
    layer: &LayerInfo,
    layer_path: &Path,
) -> Result<(tempfile::TempDir, u64), ImageError> {
    let ctx = |e: io::Error| ImageError::Write {
        context: format!("writing the OCI layout {}", dest.display()),
        source: e,
    };
    let dir = tempfile::Builder::new()
        .prefix(".staves-")
        .tempdir_in(parent_dir(dest))
        .map_err(ctx)?;
    set_mode(dir.path(), 0o755).map_err(ctx)?;
    let blobs = dir.path().join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(ctx)?;
    let layer_dest = blobs.join(hex_of(&layer.digest));
    if std::fs::hard_link(layer_path, &layer_dest).is_err() {
        std::fs::copy(layer_path, &layer_dest).map_err(ctx)?;
    }
    set_mode(&layer_dest, 0o644).map_err(ctx)?;
    std::fs::write(blobs.join(docs.config.hex()), &docs.config.bytes).map_err(ctx)?;
    std::fs::write(blobs.join(docs.manifest.hex()), &docs.manifest.bytes).map_err(ctx)?;
    let mut referrer_size = 0;
    if let Some(r) = &docs.referrer {
        for blob in r.blobs() {
            std::fs::write(blobs.join(blob.hex()), &blob.bytes).map_err(ctx)?;
            referrer_size += blob.bytes.len() as u64;
        }
    }
    std::fs::write(dir.path().join("index.json"), &docs.index.bytes).map_err(ctx)?;
    std::fs::write(dir.path().join("oci-layout"), OCI_LAYOUT).map_err(ctx)?;
    let size = referrer_size
        + layer.size
        + (docs.config.bytes.len()
            + docs.manifest.bytes.len()
            + docs.index.bytes.len()
            + OCI_LAYOUT.len()) as u64;
    Ok((dir, size))
}

/// Move a finished layout directory into place. An existing OCI layout at `dest` is replaced; any other existing,
/// non-empty directory or file is left alone and is an error.
pub(crate) fn persist_layout(temp: tempfile::TempDir, dest: &Path) -> Result<(), ImageError> {
    let ctx = |e: io::Error| ImageError::Write {
        context: format!("moving the OCI layout into {}", dest.display()),
        source: e,
    };
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ctx(e)),
        Ok(md) => {
            let empty = md.is_dir() && std::fs::read_dir(dest).map_err(ctx)?.next().is_none();
            let layout = md.is_dir() && dest.join("oci-layout").is_file();
            if empty {
                std::fs::remove_dir(dest).map_err(ctx)?;
            } else if layout {
                let old = tempfile::Builder::new()
                    .prefix(".staves-old-")
                    .tempdir_in(parent_dir(dest))
                    .map_err(ctx)?;
                let old_path = old.path().join("layout");
                std::fs::rename(dest, &old_path).map_err(ctx)?;
                let kept = temp.keep();
                if let Err(e) = std::fs::rename(&kept, dest) {
                    // Put the previous layout back; the new one is discarded.
                    let _ = std::fs::rename(&old_path, dest);
                    let _ = std::fs::remove_dir_all(&kept);
                    return Err(ctx(e));
                }
                drop(old);
                return Ok(());
            } else {
                return Err(ImageError::OutputExists {
                    path: dest.display().to_string(),
                });
            }
        }
    }
    let kept = temp.keep();
    std::fs::rename(&kept, dest).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        ctx(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_nested_keys() {
        let v = serde_json::json!({"b": {"z": 1, "a": 2}, "a": [{"y": 1, "x": 2}]});
        let text = serde_json::to_string(&canonical(v)).unwrap();
        assert_eq!(text, r#"{"a":[{"x":2,"y":1}],"b":{"a":2,"z":1}}"#);
    }
}
