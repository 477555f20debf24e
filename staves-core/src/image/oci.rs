//! OCI documents (config, manifest, index) and the on-disk outputs (layout directory and archives).

use super::dest::{DirState, DirTarget, FileTarget, dir_state, parent_dir};
use super::entry::{self, Entry, Kind};
use super::layer::LayerInfo;
use super::{Compression, ImageError, ImageWriter};
use crate::timestamp::rfc3339;
use oci_spec::image::{
    ANNOTATION_REF_NAME, ConfigBuilder, Descriptor, DescriptorBuilder, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndex, ImageIndexBuilder, ImageManifestBuilder, MediaType,
    RootFsBuilder, Sha256Digest,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
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

/// Give an output the usual permissions (temporary files start as 0600).
pub(crate) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A file output written but not yet visible: a temporary file next to the file it replaces, or (for a FIFO or
/// device, which is written through) in the staging directory. Dropped before [`PendingFile::commit`], it leaves
/// nothing behind.
pub(crate) struct PendingFile {
    temp: tempfile::NamedTempFile,
    target: FileTarget,
    /// The output path as given, for messages.
    shown: PathBuf,
}

impl PendingFile {
    /// An empty temporary file (mode 0644) for the output `shown`, which resolved to `target`; named
    /// `prefix…`, in the target's directory or, for a stream, in `staging`.
    pub(crate) fn create(
        shown: &Path,
        target: FileTarget,
        staging: &Path,
        prefix: &str,
    ) -> Result<Self, ImageError> {
        let dir = target.temp_dir().unwrap_or(staging);
        let temp = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(dir)
            .map_err(|e| ImageError::Write {
                context: format!(
                    "creating a temporary file in {} for {}",
                    dir.display(),
                    shown.display()
                ),
                source: e,
            })?;
        set_mode(temp.path(), 0o644).map_err(|e| ImageError::Write {
            context: format!("writing {}", shown.display()),
            source: e,
        })?;
        Ok(Self {
            temp,
            target,
            shown: shown.to_owned(),
        })
    }

    /// The temporary file, to write to.
    pub(crate) fn file_mut(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// The temporary file's path.
    pub(crate) fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// The output path as given.
    pub(crate) fn shown(&self) -> &Path {
        &self.shown
    }

    /// Make the output visible: rename the temporary file into place, or write its bytes into the FIFO or device.
    pub(crate) fn commit(self) -> Result<(), ImageError> {
        match &self.target {
            FileTarget::Replace(dest) => {
                let dest = dest.clone();
                self.temp.persist(&dest).map_err(|e| ImageError::Write {
                    context: format!("moving the output into {}", dest.display()),
                    source: e.error,
                })?;
            }
            FileTarget::Stream(dest) => {
                let ctx = |e: io::Error| ImageError::Write {
                    context: format!("writing into {}", self.shown.display()),
                    source: e,
                };
                // Blocks until a FIFO has a reader, as `cp` does. O_TRUNC is ignored by FIFOs and devices, and
                // empties a regular file reached through /proc (an output redirected to a file).
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(dest)
                    .map_err(ctx)?;
                let mut src = self.temp.reopen().map_err(ctx)?;
                io::copy(&mut src, &mut out).map_err(ctx)?;
                out.flush().map_err(ctx)?;
            }
        }
        Ok(())
    }
}

/// Write an archive of `members` for the output `shown` (resolved to `target`) and return it, not yet committed,
/// with its size.
pub(crate) fn archive_to_pending(
    shown: &Path,
    target: FileTarget,
    staging: &Path,
    prefix: &str,
    members: &[(String, Member<'_>)],
) -> Result<(PendingFile, u64), ImageError> {
    let ctx = |e: io::Error| ImageError::Write {
        context: format!("writing {}", shown.display()),
        source: e,
    };
    let mut pending = PendingFile::create(shown, target, staging, prefix)?;
    write_archive(pending.file_mut(), members).map_err(ctx)?;
    let size = pending.file_mut().metadata().map_err(ctx)?.len();
    Ok((pending, size))
}

/// An `oci:` output written but not yet visible: the whole layout in a temporary directory next to its
/// destination. The commit renames it into place when the destination does not exist, and otherwise adds the
/// image to the empty directory or OCI layout there (see [`PendingLayout::commit`]).
pub(crate) struct PendingLayout {
    staged: tempfile::TempDir,
    /// The destination directory (a symlink's target when the output is a symlink).
    dest: PathBuf,
    /// The output path as given, for messages.
    shown: PathBuf,
    prefix: String,
}

impl PendingLayout {
    /// Write the layout of one image into a temporary directory named `prefix…` next to `target`; returns it and
    /// the layout's total size.
    pub(crate) fn create(
        shown: &Path,
        target: DirTarget,
        prefix: &str,
        docs: &Documents,
        layer: &LayerInfo,
        layer_path: &Path,
    ) -> Result<(Self, u64), ImageError> {
        let ctx = |e: io::Error| ImageError::Write {
            context: format!("writing the OCI layout {}", shown.display()),
            source: e,
        };
        let dest = target.0;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent_dir(&dest))
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
        Ok((
            Self {
                staged: dir,
                dest,
                shown: shown.to_owned(),
                prefix: prefix.to_owned(),
            },
            size,
        ))
    }

    /// The output path as given.
    pub(crate) fn shown(&self) -> &Path {
        &self.shown
    }

    /// Make the layout visible. A destination that does not exist gets the staged layout renamed into place. An
    /// empty directory or an OCI layout gets the image added: the new blobs are moved in (existing ones are
    /// content-addressed and kept), `oci-layout` is written when missing, and last `index.json` is replaced
    /// atomically by the old index with this image's entries added (an entry with the same
    /// `org.opencontainers.image.ref.name` is replaced; every other entry, blob and file is kept). A failure before
    /// the new index is in place removes what this added.
    pub(crate) fn commit(self) -> Result<(), ImageError> {
        let ctx = |e: io::Error| ImageError::Write {
            context: format!("moving the OCI layout into {}", self.shown.display()),
            source: e,
        };
        match std::fs::symlink_metadata(&self.dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let kept = self.staged.keep();
                std::fs::rename(&kept, &self.dest).map_err(|e| {
                    let _ = std::fs::remove_dir_all(&kept);
                    ctx(e)
                })
            }
            Err(e) => Err(ctx(e)),
            Ok(_) => {
                let state = dir_state(&self.shown, &self.dest)?;
                let mut made = Vec::new();
                match self.merge(state, &mut made) {
                    Ok(()) => Ok(()),
                    Err(err) => {
                        // Undo in reverse: files first, then the directories they were in.
                        let mut left = Vec::new();
                        for path in made.iter().rev() {
                            let removed = match std::fs::symlink_metadata(path) {
                                Ok(md) if md.is_dir() => std::fs::remove_dir(path),
                                Ok(_) => std::fs::remove_file(path),
                                Err(e) => Err(e),
                            };
                            if let Err(e) = removed {
                                if e.kind() != io::ErrorKind::NotFound {
                                    left.push(format!("{} ({e})", path.display()));
                                }
                            }
                        }
                        if left.is_empty() {
                            Err(err)
                        } else {
                            Err(ImageError::LeftBehind {
                                cause: Box::new(err.into()),
                                left,
                            })
                        }
                    }
                }
            }
        }
    }

    /// Add the staged image to the existing directory; every file and directory made goes to `made`.
    fn merge(&self, state: DirState, made: &mut Vec<PathBuf>) -> Result<(), ImageError> {
        let ctx = |what: &str, path: &Path| {
            let context = format!(
                "adding the image to the OCI layout {}: {what} {}",
                self.shown.display(),
                path.display()
            );
            move |e: io::Error| ImageError::Write { context, source: e }
        };
        let existing = match state {
            DirState::Empty => None,
            DirState::Layout => Some(
                ImageIndex::from_file(self.dest.join("index.json"))
                    .map_err(doc_err("existing index.json"))?,
            ),
        };
        let blobs = self.dest.join("blobs");
        let sha256 = blobs.join("sha256");
        for dir in [&blobs, &sha256] {
            if std::fs::symlink_metadata(dir).is_err() {
                std::fs::create_dir(dir).map_err(ctx("creating", dir))?;
                made.push(dir.clone());
                set_mode(dir, 0o755).map_err(ctx("creating", dir))?;
            }
        }
        let staged_blobs = self.staged.path().join("blobs").join("sha256");
        let items = std::fs::read_dir(&staged_blobs).map_err(ctx("reading", &staged_blobs))?;
        for item in items {
            let item = item.map_err(ctx("reading", &staged_blobs))?;
            let to = sha256.join(item.file_name());
            // Blobs are named by their digest: one that is there already has these bytes.
            if std::fs::symlink_metadata(&to).is_ok() {
                continue;
            }
            if std::fs::rename(item.path(), &to).is_err() {
                // Another file system (the layout is a mount point): copy, then rename within it.
                let mut temp = tempfile::Builder::new()
                    .prefix(&self.prefix)
                    .tempfile_in(&sha256)
                    .map_err(ctx("writing", &to))?;
                let mut from = File::open(item.path()).map_err(ctx("reading", &item.path()))?;
                io::copy(&mut from, temp.as_file_mut()).map_err(ctx("writing", &to))?;
                set_mode(temp.path(), 0o644).map_err(ctx("writing", &to))?;
                temp.persist(&to)
                    .map_err(|e| ctx("writing", &to)(e.error))?;
            }
            made.push(to);
        }
        let layout = self.dest.join("oci-layout");
        if std::fs::symlink_metadata(&layout).is_err() {
            self.write_atomic(&layout, OCI_LAYOUT)
                .map_err(ctx("writing", &layout))?;
            made.push(layout);
        }
        let staged_index = self.staged.path().join("index.json");
        let index = match existing {
            None => std::fs::read(&staged_index).map_err(ctx("reading", &staged_index))?,
            Some(existing) => merge_index(
                existing,
                &ImageIndex::from_file(&staged_index).map_err(doc_err("index"))?,
                |d| subject_in_layout(&self.dest, d),
            )?,
        };
        let index_path = self.dest.join("index.json");
        self.write_atomic(&index_path, &index)
            .map_err(ctx("writing", &index_path))
    }

    /// Write `bytes` to a temporary file next to `path` and rename it into place.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut temp = tempfile::Builder::new()
            .prefix(&self.prefix)
            .tempfile_in(parent_dir(path))?;
        temp.write_all(bytes)?;
        set_mode(temp.path(), 0o644)?;
        temp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The `ref.name` annotation of an index entry (the image's tag in the layout).
fn ref_name(d: &Descriptor) -> Option<&String> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
}

/// `existing` with the entries of `ours` added: an entry with one of their ref names, or without a ref name and
/// with one of their digests (the same referrer), is replaced, and so is a referrer (an entry with an
/// `artifactType`) whose subject, as `subject_of` reads it, was only named by a replaced entry; every other entry is
/// kept, in its order.
fn merge_index(
    existing: ImageIndex,
    ours: &ImageIndex,
    subject_of: impl Fn(&Descriptor) -> Option<String>,
) -> Result<Vec<u8>, ImageError> {
    let refs: Vec<&String> = ours.manifests().iter().filter_map(ref_name).collect();
    let digests: Vec<&oci_spec::image::Digest> =
        ours.manifests().iter().map(Descriptor::digest).collect();
    let (mut manifests, replaced): (Vec<Descriptor>, Vec<Descriptor>) = existing
        .manifests()
        .iter()
        .cloned()
        .partition(|d| match ref_name(d) {
            Some(name) => !refs.contains(&name),
            None => !digests.contains(&d.digest()),
        });
    manifests.extend(ours.manifests().iter().cloned());
    let named: Vec<String> = manifests.iter().map(|d| d.digest().to_string()).collect();
    let orphaned: Vec<String> = replaced
        .iter()
        .map(|d| d.digest().to_string())
        .filter(|d| !named.contains(d))
        .collect();
    if !orphaned.is_empty() {
        manifests.retain(|d| {
            d.artifact_type().is_none() || subject_of(d).is_none_or(|s| !orphaned.contains(&s))
        });
    }
    let mut index = existing;
    index.set_manifests(manifests);
    to_json(&index, "index")
}

/// The subject digest of the referrer manifest `d` in the layout at `dir`, when it can be read.
fn subject_in_layout(dir: &Path, d: &Descriptor) -> Option<String> {
    let digest = d.digest().to_string();
    let hex = digest.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || d.size() > 1 << 20 {
        return None;
    }
    let bytes = std::fs::read(dir.join("blobs").join("sha256").join(hex)).ok()?;
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    manifest["subject"]["digest"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(hex: char, name: Option<&str>, artifact: bool) -> Descriptor {
        let digest: String = std::iter::repeat_n(hex, 64).collect();
        let mut d = descriptor(MediaType::ImageManifest, &digest, 1, "test").unwrap();
        if let Some(name) = name {
            d.set_annotations(Some(HashMap::from([(
                ANNOTATION_REF_NAME.to_owned(),
                name.to_owned(),
            )])));
        }
        if artifact {
            d.set_artifact_type(Some(MediaType::Other("application/spdx+json".into())));
        }
        d
    }

    fn index(entries: Vec<Descriptor>) -> ImageIndex {
        ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(entries)
            .build()
            .unwrap()
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        let index: ImageIndex = serde_json::from_slice(bytes).unwrap();
        index
            .manifests()
            .iter()
            .map(|d| {
                let hex = &d.digest().to_string()[7..8];
                match ref_name(d) {
                    Some(name) => format!("{hex}:{name}"),
                    None => hex.to_owned(),
                }
            })
            .collect()
    }

    #[test]
    fn merging_an_index_replaces_the_same_tag_and_its_referrer_and_keeps_the_rest() {
        // a (1.0) with its referrer r, b (2.0); then c (1.0) with its referrer s.
        let existing = index(vec![
            entry('a', Some("1.0"), false),
            entry('1', None, true),
            entry('b', Some("2.0"), false),
        ]);
        let ours = index(vec![entry('c', Some("1.0"), false), entry('2', None, true)]);
        let subject = |d: &Descriptor| match &d.digest().to_string()[7..8] {
            "1" => Some(format!("sha256:{}", "a".repeat(64))),
            _ => None,
        };
        let merged = merge_index(existing.clone(), &ours, subject).unwrap();
        assert_eq!(names(&merged), ["b:2.0", "c:1.0", "2"]);

        // a still named by another tag: its referrer stays.
        let mut shared = existing;
        let mut entries = shared.manifests().clone();
        entries.push(entry('a', Some("latest"), false));
        shared.set_manifests(entries);
        let merged = merge_index(shared, &ours, subject).unwrap();
        assert_eq!(names(&merged), ["1", "b:2.0", "a:latest", "c:1.0", "2"]);

        // The same image again: one entry each, not two.
        let again = index(vec![entry('c', Some("1.0"), false), entry('2', None, true)]);
        let merged = merge_index(again.clone(), &again, |_| None).unwrap();
        assert_eq!(names(&merged), ["c:1.0", "2"]);
    }

    #[test]
    fn canonical_sorts_nested_keys() {
        let v = serde_json::json!({"b": {"z": 1, "a": 2}, "a": [{"y": 1, "x": 2}]});
        let text = serde_json::to_string(&canonical(v)).unwrap();
        assert_eq!(text, r#"{"a":[{"x":2,"y":1}],"b":{"a":2,"z":1}}"#);
    }
}
