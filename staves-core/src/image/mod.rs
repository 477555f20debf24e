//! The image writer: a rootfs (directory or tar stream) becomes a reproducible OCI / Docker image.
//!
//! One pass reads the rootfs entries in canonical order, normalizes them, writes the layer tar, compresses it in
//! fixed-size blocks on every core (independent gzip members or zstd frames, so the bytes never depend on the
//! thread count) and computes both sha256 digests (the uncompressed `diff_id` and the compressed blob digest). The
//! layer is never held in memory.
//!
//! # Reproducibility
//! The same rootfs content and settings always give the same bytes:
//! - entries are written in canonical order: depth-first, each directory's children sorted by name bytes;
//! - mtimes are clamped to `SOURCE_DATE_EPOCH` when it is set, otherwise to [`DEFAULT_EPOCH`](crate::DEFAULT_EPOCH) (0), which sets every
//!   mtime to 1970-01-01; the config's `created` time defaults to the same value;
//! - uname/gname are dropped; numeric uid/gid, mode (including setuid/setgid/sticky), xattrs (`SCHILY.xattr.*`),
//!   hardlinks, symlinks (never followed), device nodes, fifos and long names (PAX) are kept;
//!   `security.selinux` labels are dropped (they describe the host, not the image);
//! - compression levels and block size are fixed (gzip level 6, zstd level 1, 1 MiB blocks), whatever the number
//!   of threads;
//! - JSON documents are written with sorted keys.
//!
//! # Untrusted input
//! The rootfs tar comes from a container. Leading `/` and `./` are stripped (an absolute path is re-rooted at the
//! rootfs), a `..` component is an error naming the entry, symlink targets are kept as data and never followed, a
//! hardlink must point to a file that appears earlier (streams) or anywhere (seekable files) in the archive, and a
//! truncated archive is an error. Nothing is extracted: the writer only ever writes its output destinations, each
//! first to a temporary file next to it that is renamed into place only when everything succeeded.
//!
//! # Destinations
//! Outputs never destroy what Staves did not make (see `dest`): a symlink is followed and its target written, a
//! FIFO or character device is written through, an `oci:` directory that holds a layout gets the image added to
//! it, and two outputs on one path are refused before anything is read. Every temporary name is
//! `.staves-<id>-…`, and the write's journal entry (see `crate::journal`) names them, and the untagged image the
//! `docker` output loads, until the write is committed or undone.

mod dest;
mod docker;
mod entry;
mod layer;
mod oci;
pub(crate) use dest::check_outputs;
mod registry;
mod source;
mod stored;

use crate::builder::{BuildError, CancelToken};
use crate::engine::{Engine, EngineError, block_on};
use crate::error::Error;
use crate::registry::{PushReport, RegistryOptions, RegistryTarget};
use crate::spec::ImageSpec;
use layer::{LayerBuilder, LayerSink};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub(crate) use crate::platform::{host_arch, source_date_epoch};

/// Errors of the image writer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// An `--output` destination could not be parsed.
    #[error(
        "invalid output `{value}`: {reason}\n  \
         help: use one of docker, oci:DIR, oci-archive:FILE, docker-archive:FILE, rootfs:FILE, \
         docker://HOST[:PORT]/REPO[:TAG]"
    )]
    InvalidOutput {
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No output destinations were given.
    #[error(
        "no output destinations were given\n  help: pass at least one output, e.g. oci-archive:image.tar"
    )]
    NoOutputs,
    /// The rootfs path is not usable.
    #[error("cannot use {path} as a rootfs: {reason}")]
    NotARootfs {
        /// The path given.
        path: String,
        /// Why not.
        reason: String,
    },
    /// An entry path could escape the rootfs.
    #[error(
        "unsafe entry `{entry}` in the rootfs: {reason}\n  help: the rootfs tar must only name paths inside it"
    )]
    UnsafePath {
        /// The entry path as written in the archive.
        entry: String,
        /// Why it is unsafe.
        reason: String,
    },
    /// An entry that an image layer cannot carry faithfully (a path too long for Linux, a NUL in a name, a sparse
    /// file in a format Staves cannot expand).
    #[error(
        "the rootfs {source_name} has the entry `{entry}`, which an image layer cannot carry: {reason}"
    )]
    Unrepresentable {
        /// Where the rootfs comes from.
        source_name: String,
        /// The entry path, escaped.
        entry: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A hardlink points somewhere it must not.
    #[error("bad hardlink `{entry}` -> `{target}` in {source_name}: {reason}")]
    Hardlink {
        /// Where the rootfs comes from.
        source_name: String,
        /// The hardlink entry.
        entry: String,
        /// Its target as written.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// A streamed rootfs tar is not in canonical order.
    #[error(
        "the rootfs stream {source_name} is not in canonical order: `{entry}` comes after `{previous}`\n  \
         help: a stream must list entries depth-first with each directory's children sorted by name \
         (as Docker's archive API and `tar --sort=name` do); pass a seekable tar file or a directory instead"
    )]
    OutOfOrder {
        /// Where the rootfs comes from.
        source_name: String,
        /// The entry before.
        previous: String,
        /// The entry that is out of order.
        entry: String,
    },
    /// The same path appears twice.
    #[error(
        "the rootfs {source_name} has the entry `{entry}` twice\n  help: write the rootfs tar without duplicates"
    )]
    Duplicate {
        /// Where the rootfs comes from.
        source_name: String,
        /// The duplicated path.
        entry: String,
    },
    /// The rootfs tar is truncated or corrupt.
    #[error("the rootfs tar {source_name} is truncated or corrupt: {detail}")]
    Truncated {
        /// Where the rootfs comes from.
        source_name: String,
        /// What was found.
        detail: String,
    },
    /// An entry of a kind that cannot go into an image layer.
    #[error("the rootfs {source_name} has the entry `{entry}` of unsupported type {kind}")]
    UnsupportedEntry {
        /// Where the rootfs comes from.
        source_name: String,
        /// The entry.
        entry: String,
        /// Its tar type.
        kind: String,
    },
    /// Reading the rootfs failed.
    #[error("reading the rootfs {source_name} failed while {context}: {source}")]
    Read {
        /// Where the rootfs comes from.
        source_name: String,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing an output failed.
    #[error("{context}: {source}")]
    Write {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An output directory exists and is not an OCI layout.
    #[error(
        "output {path} exists and is not an OCI layout or an empty directory\n  \
         help: remove it or pick another destination"
    )]
    OutputExists {
        /// The destination.
        path: String,
    },
    /// An output path is something Staves does not write (a directory where a file goes, a dangling symlink, a
    /// block device, a socket, a file in a directory that does not exist).
    #[error("cannot write the output {path}: {reason}")]
    Destination {
        /// The output path as given.
        path: String,
        /// Why not, and what to do.
        reason: String,
    },
    /// Two outputs (or an output and the SBOM file) would write the same path: a usage error, found before
    /// anything is built.
    #[error("{first} and {second} collide: {reason}\n  help: give each output a path of its own")]
    OutputConflict {
        /// The first output.
        first: String,
        /// The second output.
        second: String,
        /// Where they collide.
        reason: String,
    },
    /// A write failed (or was given up after `cause`), and undoing it left something behind: an untagged image
    /// that could not be removed from the engine, temporary files or blobs that could not be deleted.
    #[error(
        "{cause}\n  note: undoing the write left behind: {}",
        left.join(", ")
    )]
    LeftBehind {
        /// What made the write fail or be given up.
        cause: Box<Error>,
        /// What could not be removed, one item each (with how to remove it).
        left: Vec<String>,
    },
    /// An OCI document could not be built.
    #[error("building the {what} failed: {reason}")]
    Document {
        /// Which document.
        what: String,
        /// Why.
        reason: String,
    },
    /// The engine refused the image.
    #[error("the Docker engine did not load {tag}: {message}")]
    DockerLoad {
        /// The tag.
        tag: String,
        /// The engine's message.
        message: String,
    },
    /// The `docker` output could not talk to the engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Committing the outputs failed part way: some destinations were written, the others not.
    #[error("{reason}\n  note: these outputs were written before the failure: {}", written.join(", "))]
    PartlyWritten {
        /// The outputs that exist.
        written: Vec<String>,
        /// What failed.
        reason: String,
    },
}

/// Where an image is written; named as skopeo and podman name transports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Load into the Docker engine and tag `name:version` (through the API, never the CLI).
    Docker,
    /// `oci:DIR`: an OCI image layout directory.
    OciDir(PathBuf),
    /// `oci-archive:FILE`: the OCI layout as a tar, which also carries Docker's `manifest.json`.
    OciArchive(PathBuf),
    /// `docker-archive:FILE`: the `docker save` format.
    DockerArchive(PathBuf),
    /// `rootfs:FILE`: the plain, uncompressed, normalized rootfs tar (the layer itself).
    Rootfs(PathBuf),
    /// `docker://HOST[:PORT]/REPO[:TAG]`: push to a registry with the OCI distribution API, once every other
    /// output is written (the tag defaults to the image's own).
    Registry(RegistryTarget),
}

impl FromStr for Output {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "docker" {
            return Ok(Output::Docker);
        }
        if let Some(reference) = s.strip_prefix("docker://") {
            return reference.parse().map(Output::Registry).map_err(
                |e: crate::registry::RegistryError| ImageError::InvalidOutput {
                    value: s.to_owned(),
                    reason: match e {
                        crate::registry::RegistryError::InvalidReference { reason, .. } => reason,
                        other => other.to_string(),
                    },
                },
            );
        }
        let invalid = |reason: &str| ImageError::InvalidOutput {
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, path) = s
            .split_once(':')
            .ok_or_else(|| invalid("it has no `TYPE:` prefix"))?;
        if path.is_empty() {
            return Err(invalid("the path after the `:` is empty"));
        }
        let path = PathBuf::from(path);
        match kind {
            "oci" => Ok(Output::OciDir(path)),
            "oci-archive" => Ok(Output::OciArchive(path)),
            "docker-archive" => Ok(Output::DockerArchive(path)),
            "rootfs" => Ok(Output::Rootfs(path)),
            _ => Err(invalid(&format!("unknown output type `{kind}`"))),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Docker => f.write_str("docker"),
            Output::OciDir(p) => write!(f, "oci:{}", p.display()),
            Output::OciArchive(p) => write!(f, "oci-archive:{}", p.display()),
            Output::DockerArchive(p) => write!(f, "docker-archive:{}", p.display()),
            Output::Rootfs(p) => write!(f, "rootfs:{}", p.display()),
            Output::Registry(t) => write!(f, "docker://{t}"),
        }
    }
}

impl Serialize for Output {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

pub use crate::platform::Compression;

/// One destination that was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WrittenOutput {
    /// The destination.
    pub output: Output,
    /// Bytes written there (for `docker`: the size of the archive streamed to the engine; for `docker://`: the
    /// bytes uploaded).
    pub size: u64,
    /// For a `docker://` output: what the push did (digest, bytes uploaded and skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<PushReport>,
}

/// What [`ImageWriter`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImageReport {
    /// The image digest: `sha256:…` of the OCI manifest.
    pub digest: String,
    /// `sha256:…` of the image config (Docker's image ID).
    pub config_digest: String,
    /// `sha256:…` of the compressed layer blob.
    pub layer_digest: String,
    /// `sha256:…` of the uncompressed layer tar.
    pub diff_id: String,
    /// Size of the compressed layer.
    pub layer_size: u64,
    /// Size of the uncompressed layer tar.
    pub uncompressed_size: u64,
    /// The image reference `name:version`.
    pub tag: String,
    /// Every destination written, in the order given.
    pub outputs: Vec<WrittenOutput>,
}

/// A document attached to an image as an OCI 1.1 referrer (an artifact manifest whose `subject` is the image).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Referrer {
    /// The artifact type and the media type of its one blob, e.g. `application/spdx+json`.
    pub artifact_type: String,
    /// The blob's file name (`org.opencontainers.image.title`), e.g. `sbom.spdx.json`.
    pub title: String,
    /// The document.
    pub bytes: Vec<u8>,
}

impl Referrer {
    /// A referrer holding `bytes` of `artifact_type`, named `title`.
    pub fn new(artifact_type: impl Into<String>, title: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self {
            artifact_type: artifact_type.into(),
            title: title.into(),
            bytes,
        }
    }
}

/// Makes the referrer for an image once its manifest digest is known (e.g. an SBOM that names the image).
pub type ReferrerSource =
    std::sync::Arc<dyn Fn(&str) -> Result<Referrer, ImageError> + Send + Sync>;

/// Turns a rootfs into an image; built from an [`ImageSpec`] and adjusted with builder methods.
///
/// `write_*` are blocking and work from any thread (inside a Tokio runtime the `docker` output's API calls run on
/// a helper thread). Every output is first written to a temporary name next to its destination and renamed into
/// place only when all of them are ready; the `docker` output is loaded untagged and tagged last. A failure
/// leaves no output and no tag behind.
#[derive(Debug, Clone)]
pub struct ImageWriter {
    name: String,
    version: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    user: Option<String>,
    workdir: Option<String>,
    env: Vec<String>,
    exposed_ports: Vec<String>,
    volumes: Vec<String>,
    stop_signal: Option<String>,
    labels: BTreeMap<String, String>,
    compression: Compression,
    created: i64,
    mtime_clamp: i64,
    os: String,
    arch: String,
    engine: Engine,
    cancel: Option<CancelToken>,
    block_size: usize,
    store: Option<crate::store::ImageStore>,
    registry: RegistryOptions,
    referrer: Option<ReferrerSourceField>,
    /// The local image store directory whose journal records each write (see [`ImageWriter::journal_in`]).
    journal: Option<PathBuf>,
}

/// [`ReferrerSource`] with a `Debug` that says only whether there is one.
#[derive(Clone)]
struct ReferrerSourceField(ReferrerSource);

impl std::fmt::Debug for ReferrerSourceField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<referrer source>")
    }
}

/// Where [`ImageWriter::prepare`] gets the layer from.
enum LayerSource<'a, F> {
    /// Rootfs entries fed into a new layer.
    Feed(F),
    /// A compressed layer kept by an earlier build (the blob, and what is known about it).
    Stored(&'a Path, &'a crate::store::StoredLayer),
}

impl ImageWriter {
    /// A writer for `spec`: tag `name:version`, entrypoint from `command`, labels and manifest annotations from
    /// `annotations`, runtime settings from `[image]`; gzip; `created` and the mtime clamp from
    /// `SOURCE_DATE_EPOCH` (else [`DEFAULT_EPOCH`]); the host's OS and architecture.
    pub fn new(spec: &ImageSpec) -> Self {
        let epoch = source_date_epoch();
        let image = &spec.image;
        Self {
            name: spec.name.clone(),
            version: spec.version.clone(),
            entrypoint: spec.command.clone(),
            cmd: image.cmd.clone(),
            user: image.user.clone(),
            workdir: image.workdir.clone(),
            env: image.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            exposed_ports: image.exposed_ports.clone(),
            volumes: image.volumes.clone(),
            stop_signal: image.stop_signal.clone(),
            labels: spec.annotations.clone(),
            compression: Compression::Gzip,
            created: epoch,
            mtime_clamp: epoch,
            os: std::env::consts::OS.to_owned(),
            arch: host_arch().to_owned(),
            engine: Engine::default(),
            cancel: None,
            block_size: layer::COMPRESSION_BLOCK,
            store: None,
            registry: RegistryOptions::default(),
            referrer: None,
            journal: crate::store::ImageStore::default_dir(),
        }
    }

    /// Record each write in the journal of the local image store at `store_dir` (by default the default store's,
    /// [`ImageStore::default_dir`](crate::store::ImageStore::default_dir); `None`: nowhere): the directories of its
    /// temporary files and the untagged image it loads, written down before they exist and removed once the write
    /// is committed or undone, so that `staves prune` finds what a process killed mid-write left behind. A
    /// journal that cannot be written never fails the image.
    pub fn journal_in(mut self, store_dir: Option<PathBuf>) -> Self {
        self.journal = store_dir;
        self
    }

    /// Attach a document to the `oci:` and `oci-archive:` outputs as an OCI 1.1 referrer of the image: `source` is
    /// called with the image manifest's digest once it is known, before anything is written.
    pub fn referrer(mut self, source: ReferrerSource) -> Self {
        self.referrer = Some(ReferrerSourceField(source));
        self
    }

    /// Add the label `key=value` to the image config (and the manifest's annotations, like the spec's).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub(crate) fn referrer_source(&self) -> Option<&ReferrerSource> {
        self.referrer.as_ref().map(|r| &r.0)
    }

    /// Use `c` for the layer.
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// The config's `created` time, in unix seconds.
    pub fn created(mut self, unix_seconds: i64) -> Self {
        self.created = unix_seconds;
        self
    }

    /// Clamp every entry's mtime to at most `unix_seconds` (negative values count as 0).
    pub fn mtime_clamp(mut self, unix_seconds: i64) -> Self {
        self.mtime_clamp = unix_seconds;
        self
    }

    /// The image's OS and architecture in OCI naming, e.g. `("linux", "arm64")`.
    pub fn platform(mut self, os: &str, arch: &str) -> Self {
        self.os = os.to_owned();
        self.arch = arch.to_owned();
        self
    }

    /// The engine address for the `docker` output (`None`: `DOCKER_HOST`, else the local socket).
    pub fn docker_host(mut self, host: Option<String>) -> Self {
        self.engine = Engine::new(host);
        self
    }

    /// TLS and credential settings for the `docker://` outputs.
    pub fn registry(mut self, options: RegistryOptions) -> Self {
        self.registry = options;
        self
    }

    /// The engine the `docker` output loads into.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// Stop (and write nothing) when `cancel` is triggered before the outputs are committed; a push to a
    /// registry stops too, while its blobs are uploaded (nothing is tagged then) and while its manifests are.
    /// A stopped write fails with [`BuildError::Interrupted`], after removing its temporary files and the untagged
    /// image it loaded.
    pub fn cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = Some(cancel);
        self
    }

    fn check_cancel(&self) -> Result<(), Error> {
        match &self.cancel {
            Some(c) if c.is_cancelled() => Err(BuildError::Interrupted.into()),
            _ => Ok(()),
        }
    }

    /// The image reference `name:version`.
    pub fn tag(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }

    /// Write the image of the rootfs directory `dir` to every output.
    pub fn write_dir(&self, dir: &Path, outputs: &[Output]) -> Result<ImageReport, Error> {
        self.prepare(
            dir.display().to_string(),
            outputs,
            LayerSource::Feed(|layer: &mut LayerBuilder| source::feed_dir(dir, layer)),
        )?
        .finish_blocking()
    }

    /// Write the image of a rootfs at `path`: a directory ([`ImageWriter::write_dir`]) or a tar file
    /// ([`ImageWriter::write_tar_file`]).
    pub fn write_path(&self, path: &Path, outputs: &[Output]) -> Result<ImageReport, Error> {
        if path.is_dir() {
            self.write_dir(path, outputs)
        } else {
            self.write_tar_file(path, outputs)
        }
    }

    /// Write the image of a rootfs tar read from a stream (e.g. the engine's archive download of
    /// `/tmp/rootfs/.`).
    ///
    /// The stream is read once and never buffered whole, so its entries must arrive in canonical order
    /// (depth-first, each directory's children sorted by name — what Docker's archive API and
    /// `tar --sort=name` produce); an out-of-order entry fails with [`ImageError::OutOfOrder`] and leaves no output
    /// behind. Use [`ImageWriter::write_tar_file`] for a tar file in any order.
    pub fn write_tar<R: Read>(&self, tar: R, outputs: &[Output]) -> Result<ImageReport, Error> {
        self.prepare_tar(tar, outputs)?.finish_blocking()
    }

    /// Write every output of a streamed rootfs tar to temporary files; nothing is visible until
    /// [`PreparedImage::commit`].
    pub(crate) fn prepare_tar<R: Read>(
        &self,
        mut tar: R,
        outputs: &[Output],
    ) -> Result<PreparedImage, Error> {
        self.prepare(
            "(tar stream)".to_owned(),
            outputs,
            LayerSource::Feed(|layer: &mut LayerBuilder| {
                source::feed_tar_stream(&mut tar, "(tar stream)", layer)
            }),
        )
    }

    /// Write the image of a rootfs tar file, whose entries may be in any order: the headers are read first and
    /// sorted, then the data is copied by offset.
    pub fn write_tar_file(&self, path: &Path, outputs: &[Output]) -> Result<ImageReport, Error> {
        self.prepare(
            path.display().to_string(),
            outputs,
            LayerSource::Feed(|layer: &mut LayerBuilder| source::feed_tar_file(path, layer)),
        )?
        .finish_blocking()
    }

    /// Write the image of the rootfs that an earlier build left in `store` as `layer`, with no rootfs to read.
    ///
    /// The stored blob is used as it is when it has this writer's compression; otherwise its tar is read back and
    /// compressed again (and kept in the store too, when [`ImageWriter::keep_layers_in`] names it). Either way the
    /// blob and its tar are checked against the layer's digests as they are read: a layer that does not match
    /// fails with [`StoreError::Damaged`](crate::store::StoreError::Damaged) and writes nothing.
    pub fn write_stored(
        &self,
        store: &crate::store::ImageStore,
        layer: &crate::store::StoredLayer,
        outputs: &[Output],
    ) -> Result<ImageReport, Error> {
        self.prepare_stored(store, layer, outputs)?
            .finish_blocking()
    }

    /// [`ImageWriter::write_stored`] up to the commit: every output written to temporary files.
    ///
    /// The blob is checked against the layer's digest and size, and its tar against the `diff_id` and uncompressed
    /// size, as it is read (copied or compressed again). A mismatch fails with
    /// [`StoreError::Damaged`](crate::store::StoreError::Damaged) before anything is prepared, let alone
    /// committed, and before a recompressed layer is kept in the store.
    pub(crate) fn prepare_stored(
        &self,
        store: &crate::store::ImageStore,
        layer: &crate::store::StoredLayer,
        outputs: &[Output],
    ) -> Result<PreparedImage, Error> {
        let blob =
            store
                .blob_path(&layer.digest)
                .ok_or_else(|| crate::store::StoreError::Damaged {
                    digest: layer.digest.clone(),
                    path: store.path().to_path_buf(),
                    reason: "its record names no sha256 digest".to_owned(),
                })?;
        let source_name = format!("(stored layer {})", layer.digest);
        if layer.compression == self.compression {
            return self.prepare(
                source_name,
                outputs,
                LayerSource::<fn(&mut LayerBuilder) -> Result<(), ImageError>>::Stored(
                    &blob, layer,
                ),
            );
        }
        // Compressed again: the tar is read (and checked) once, into the new layer.
        self.prepare(
            source_name.clone(),
            outputs,
            LayerSource::Feed(|builder: &mut LayerBuilder| {
                let mut tar = stored::VerifiedTar::open(&blob, layer, std::io::sink())?;
                let fed = source::feed_tar_stream(&mut tar, &source_name, builder);
                tar.finish(fed).map(drop)
            }),
        )
    }

    /// Keep a copy of every layer this writer produces in `store` (best effort: a store that cannot be written
    /// never fails the image).
    pub fn keep_layers_in(mut self, store: Option<crate::store::ImageStore>) -> Self {
        self.store = store;
        self
    }

    fn prepare<E: Into<Error>, F: FnOnce(&mut LayerBuilder) -> Result<(), E>>(
        &self,
        source_name: String,
        outputs: &[Output],
        source: LayerSource<'_, F>,
    ) -> Result<PreparedImage, Error> {
        if outputs.is_empty() {
            return Err(ImageError::NoOutputs.into());
        }
        // Every destination is checked before anything is read or written.
        dest::check_conflicts(outputs, None)?;
        let targets = outputs
            .iter()
            .map(|o| match o {
                Output::OciDir(p) => dest::resolve_dir(p).map(Target::Dir),
                Output::OciArchive(p) | Output::DockerArchive(p) | Output::Rootfs(p) => {
                    dest::resolve_file(p).map(Target::File)
                }
                Output::Docker | Output::Registry(_) => Ok(Target::Engine),
            })
            .collect::<Result<Vec<Target>, ImageError>>()?;
        let write_err =
            |context: String| move |e: std::io::Error| ImageError::Write { context, source: e };
        // Stage next to the first output written by rename, so hardlinking the layer into an OCI layout works.
        let staging_parent = targets
            .iter()
            .find_map(|t| match t {
                Target::File(f) => f.temp_dir().map(Path::to_path_buf),
                Target::Dir(d) => Some(dest::parent_dir(&d.0).to_path_buf()),
                Target::Engine => None,
            })
            .unwrap_or_else(std::env::temp_dir);
        // The journal names every directory a temporary file goes in before the first one exists.
        let mut temp_dirs = vec![staging_parent.clone()];
        for target in &targets {
            match target {
                Target::File(f) => temp_dirs.extend(f.temp_dir().map(Path::to_path_buf)),
                Target::Dir(d) => {
                    temp_dirs.push(dest::parent_dir(&d.0).to_path_buf());
                    temp_dirs.push(d.0.clone());
                    temp_dirs.push(d.0.join("blobs").join("sha256"));
                }
                Target::Engine => {}
            }
        }
        let owner = crate::builder::BuildOwner::current()
            .labels()
            .into_iter()
            .collect();
        let journal = match &self.journal {
            Some(dir) => crate::journal::Journal::in_store(dir).begin(owner, temp_dirs),
            None => crate::journal::JournalRecord::unrecorded(owner),
        };
        let prefix = journal.temp_prefix();
        let staging = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&staging_parent)
            .map_err(write_err(format!(
                "creating a staging directory in {}",
                staging_parent.display()
            )))?;
        let layer_path = staging.path().join("layer");
        let layer_file =
            File::create(&layer_path).map_err(write_err("creating the layer file".to_owned()))?;

        // The first rootfs output is written as the layer is made (the uncompressed tar).
        let mut rootfs_pending = outputs
            .iter()
            .zip(&targets)
            .find_map(|(o, t)| match (o, t) {
                (Output::Rootfs(p), Target::File(f)) => Some((p, f)),
                _ => None,
            })
            .map(|(p, f)| oci::PendingFile::create(p, f.clone(), staging.path(), &prefix))
            .transpose()?;
        let first_rootfs = rootfs_pending.as_ref().map(|p| p.temp_path().to_path_buf());
        // The engine here (Docker 20.10) cannot decompress zstd layers; it is given the uncompressed layer instead
        // (the image ID is the same: the config only names the diff_id).
        let docker_uncompressed =
            self.compression == Compression::Zstd && outputs.contains(&Output::Docker);
        let uncompressed_path = match &first_rootfs {
            Some(t) => Some(t.clone()),
            None if docker_uncompressed => Some(staging.path().join("layer.tar")),
            None => None,
        };
        let tee = match &uncompressed_path {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(p)
                    .map_err(write_err("opening the uncompressed layer file".to_owned()))?,
            ),
            None => None,
        };

        let layer = match source {
            LayerSource::Feed(feed) => {
                let sink = LayerSink::new(layer_file, tee, self.compression, self.block_size);
                let mut builder = LayerBuilder::new(sink, self.mtime_clamp, source_name);
                feed(&mut builder).map_err(Into::into)?;
                self.check_cancel()?;
                let (layer, _) = builder.finish()?;
                if let Some(store) = &self.store {
                    let _ = store.put_blob(&layer_path, &layer.digest);
                }
                layer
            }
            LayerSource::Stored(blob, stored) => {
                stored::copy_layer(blob, stored, layer_file, tee)?;
                layer::LayerInfo {
                    diff_id: stored.diff_id.clone(),
                    digest: stored.digest.clone(),
                    size: stored.size,
                    uncompressed_size: stored.uncompressed_size,
                }
            }
        };
        self.check_cancel()?;
        let docs = oci::documents(self, &layer)?;

        let mut prepared = Vec::new();
        let mut docker_archive = None;
        let mut sizes = Vec::new();
        for (output, target) in outputs.iter().zip(targets) {
            self.check_cancel()?;
            let (item, size) = match (output, target) {
                (Output::OciArchive(p), Target::File(f)) => {
                    let members = oci::oci_members(&docs, &layer, &layer_path);
                    let (t, size) =
                        oci::archive_to_pending(p, f, staging.path(), &prefix, &members)?;
                    (Prepared::File(t), size)
                }
                (Output::DockerArchive(p), Target::File(f)) => {
                    let members = oci::docker_members(&docs, &layer, &layer_path, layer.size, true);
                    let (t, size) =
                        oci::archive_to_pending(p, f, staging.path(), &prefix, &members)?;
                    (Prepared::File(t), size)
                }
                (Output::OciDir(p), Target::Dir(d)) => {
                    let (t, size) =
                        oci::PendingLayout::create(p, d, &prefix, &docs, &layer, &layer_path)?;
                    (Prepared::Dir(t), size)
                }
                (Output::Rootfs(p), Target::File(f)) => match rootfs_pending.take() {
                    Some(t) => (Prepared::File(t), layer.uncompressed_size),
                    None => {
                        // A second rootfs output: copy the first one.
                        let mut t = oci::PendingFile::create(p, f, staging.path(), &prefix)?;
                        if let Some(src) = &first_rootfs {
                            let mut from = File::open(src)
                                .map_err(write_err(format!("writing {}", p.display())))?;
                            std::io::copy(&mut from, t.file_mut())
                                .map_err(write_err(format!("writing {}", p.display())))?;
                        }
                        (Prepared::File(t), layer.uncompressed_size)
                    }
                },
                (Output::Docker, _) => {
                    let path = staging.path().join("docker-archive.tar");
                    let mut file = File::create(&path)
                        .map_err(write_err("writing the archive to load".to_owned()))?;
                    let members = match (&uncompressed_path, docker_uncompressed) {
                        (Some(raw), true) => {
                            oci::docker_members(&docs, &layer, raw, layer.uncompressed_size, false)
                        }
                        _ => oci::docker_members(&docs, &layer, &layer_path, layer.size, false),
                    };
                    oci::write_archive(&mut file, &members)
                        .map_err(write_err("writing the archive to load".to_owned()))?;
                    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                    docker_archive = Some(path);
                    sizes.push(size);
                    continue;
                }
                // Pushed when the image is committed; the size is then what was uploaded.
                (Output::Registry(_), _) => {
                    sizes.push(0);
                    continue;
                }
                (output, _) => {
                    return Err(ImageError::Document {
                        what: output.to_string(),
                        reason: "the destination resolved to another kind of output".to_owned(),
                    }
                    .into());
                }
            };
            prepared.push(item);
            sizes.push(size);
        }
        self.check_cancel()?;
        let tag = self.tag();
        let targets: Vec<RegistryTarget> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Registry(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        // The layer is streamed from the staging directory, which lives as long as the prepared image.
        let push = (!targets.is_empty()).then(|| {
            registry::PendingPush::new(
                registry::image_to_push(&docs, &layer, &layer_path),
                targets,
                self.version.clone(),
                self.registry.clone(),
                self.cancel.clone(),
            )
        });
        Ok(PreparedImage {
            items: prepared,
            docker_archive,
            loaded: None,
            engine: self.engine.clone(),
            push,
            _staging: staging,
            journal: Some(journal),
            report: ImageReport {
                digest: docs.manifest.digest.clone(),
                config_digest: docs.config.digest.clone(),
                layer_digest: layer.digest.clone(),
                diff_id: layer.diff_id.clone(),
                layer_size: layer.size,
                uncompressed_size: layer.uncompressed_size,
                tag,
                outputs: outputs
                    .iter()
                    .cloned()
                    .zip(sizes)
                    .map(|(output, size)| WrittenOutput {
                        output,
                        size,
                        pushed: None,
                    })
                    .collect(),
            },
        })
    }
}

/// Where one output goes, resolved before anything is written.
enum Target {
    /// `docker` or `docker://`: no path.
    Engine,
    File(dest::FileTarget),
    Dir(dest::DirTarget),
}

/// An output written to a temporary name next to its destination (or, for a FIFO or device, in the staging
/// directory).
enum Prepared {
    File(oci::PendingFile),
    Dir(oci::PendingLayout),
    /// A file written with the image that is not one of its outputs (the SBOM file), and how to name it.
    Extra(oci::PendingFile, String),
}

impl Prepared {
    /// Make it visible; returns how to name it in a report.
    fn commit(self) -> Result<String, ImageError> {
        match self {
            Prepared::File(t) => {
                let shown = t.shown().display().to_string();
                t.commit()?;
                Ok(shown)
            }
            Prepared::Dir(t) => {
                let shown = t.shown().display().to_string();
                t.commit()?;
                Ok(shown)
            }
            Prepared::Extra(t, name) => {
                t.commit()?;
                Ok(name)
            }
        }
    }
}

/// An image whose outputs are written but not yet visible: temporary files next to each destination, and for the
/// `docker` output an archive to load. Dropped before [`PreparedImage::commit`], it leaves nothing behind: the
/// temporary files are deleted, and an image it loaded is removed again (in the background). Its journal entry
/// names all of that until then, for `staves prune` (see [`crate::journal`]).
pub(crate) struct PreparedImage {
    items: Vec<Prepared>,
    docker_archive: Option<PathBuf>,
    loaded: Option<docker::Loaded>,
    engine: Engine,
    report: ImageReport,
    /// The `docker://` outputs, pushed by [`PreparedImage::upload`] (blobs) and [`PreparedImage::commit`] (tags).
    push: Option<registry::PendingPush>,
    /// Holds the layer and the archive to load; deleted on drop.
    _staging: tempfile::TempDir,
    /// The journal entry; dropped (removed) after the temporary files, or handed to the background discard.
    journal: Option<crate::journal::JournalRecord>,
}

impl PreparedImage {
    /// The image manifest's digest.
    pub(crate) fn digest(&self) -> String {
        self.report.digest.clone()
    }

    /// The image ID (the config's digest), which the `docker` output's image has in the engine.
    pub(crate) fn image_id(&self) -> String {
        self.report.config_digest.clone()
    }

    /// Whether the `docker` output is among the outputs.
    pub(crate) fn wants_engine(&self) -> bool {
        self.docker_archive.is_some()
    }

    /// The engine the `docker` output loads into.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The write belongs to build `build_id` (said in its journal entry).
    pub(crate) fn set_build_id(&mut self, build_id: &str) {
        if let Some(journal) = &mut self.journal {
            journal.set_build_id(build_id);
        }
    }

    /// Also write `bytes` to the file `path` at the commit (the SBOM file), named `name` in reports. The path
    /// follows the outputs' rules (see [`dest`]); it is written now to a temporary file.
    pub(crate) fn add_file(
        &mut self,
        path: &Path,
        bytes: &[u8],
        name: String,
    ) -> Result<(), ImageError> {
        let target = dest::resolve_file(path)?;
        if let (Some(journal), Some(dir)) = (&mut self.journal, target.temp_dir()) {
            journal.add_dirs([dir.to_path_buf()]);
        }
        let prefix = self
            .journal
            .as_ref()
            .map_or_else(|| ".staves-".to_owned(), |j| j.temp_prefix());
        let mut pending = oci::PendingFile::create(path, target, self._staging.path(), &prefix)?;
        std::io::Write::write_all(pending.file_mut(), bytes).map_err(|e| ImageError::Write {
            context: format!("writing {}", path.display()),
            source: e,
        })?;
        self.items.push(Prepared::Extra(pending, name));
        Ok(())
    }

    /// Load the `docker` output into the engine, untagged (nothing is tagged until [`PreparedImage::commit`]). The
    /// journal names the image before the load; a load that fails removes what it may have left.
    pub(crate) async fn load(&mut self, docker: &bollard::Docker) -> Result<(), Error> {
        if let (Some(archive), None) = (&self.docker_archive, &self.loaded) {
            let id = self.report.config_digest.clone();
            let existed_before = docker::exists(docker, &id).await?;
            if let Some(journal) = &mut self.journal {
                journal.set_image(&id, existed_before);
            }
            match docker::load_untagged(docker, archive, &self.report.tag, &id, existed_before)
                .await
            {
                Ok(loaded) => self.loaded = Some(loaded),
                Err(err) => {
                    // The engine may have loaded the image before it failed.
                    let partial = docker::Loaded { id, existed_before };
                    self.loaded = Some(partial);
                    return Err(self.undo(Some(docker), err.into()).await);
                }
            }
        }
        Ok(())
    }

    /// Upload the blobs of the `docker://` outputs that their registries lack; no remote tag is pushed before
    /// [`PreparedImage::commit`]. A no-op without such outputs, or when done already.
    pub(crate) async fn upload(&mut self) -> Result<(), Error> {
        if let Some(push) = &mut self.push {
            push.upload().await?;
        }
        Ok(())
    }

    /// Make every file output visible, in order; the names made visible go to `written`. The first failure stops
    /// it, and the outputs not yet committed are deleted.
    fn commit_files(&mut self, written: &mut Vec<String>) -> Result<(), Error> {
        for item in std::mem::take(&mut self.items) {
            written.push(item.commit()?);
        }
        Ok(())
    }

    /// Undo what is not committed after `err`: delete the temporary files and remove the image this loaded
    /// (unless the engine had it before). What cannot be removed is said in the error, and stays in the journal
    /// for `staves prune`.
    async fn undo(&mut self, docker: Option<&bollard::Docker>, err: Error) -> Error {
        self.items.clear();
        let mut left = Vec::new();
        if let Some(loaded) = self.loaded.take() {
            let removed = match docker {
                Some(docker) => docker::discard(docker, &loaded)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("no connection to the engine".to_owned()),
            };
            match (removed, &mut self.journal) {
                (Ok(()), Some(journal)) => journal.clear_image(),
                (Ok(()), None) => {}
                (Err(e), _) => left.push(format!(
                    "the untagged image {} ({e}; `staves prune` removes it once this process has exited)",
                    loaded.id
                )),
            }
        }
        if left.is_empty() {
            return err;
        }
        if let Some(journal) = &mut self.journal {
            journal.keep();
        }
        ImageError::LeftBehind {
            cause: Box::new(err),
            left,
        }
        .into()
    }

    /// Make every output visible: upload the registry blobs (unless [`upload`](PreparedImage::upload)ed), rename
    /// the files into place, tag the loaded image, and last push the manifests of the `docker://` outputs. The
    /// `docker` output must have been [`load`](PreparedImage::load)ed. A failure undoes what is not yet visible
    /// (temporary files, the untagged image) and names the outputs that are.
    pub(crate) async fn commit(
        mut self,
        docker: Option<&bollard::Docker>,
    ) -> Result<ImageReport, Error> {
        if let Err(err) = self.upload().await {
            return Err(self.undo(docker, err).await);
        }
        let mut written = Vec::new();
        let result = self.commit_files(&mut written);
        let result = match (result, self.loaded.clone(), docker) {
            (Err(err), _, _) => Err(err),
            (Ok(()), Some(loaded), Some(docker)) => {
                match docker::tag(docker, &loaded, &self.report.tag).await {
                    Ok(()) => {
                        self.loaded = None;
                        if let Some(journal) = &mut self.journal {
                            journal.clear_image();
                        }
                        Ok(())
                    }
                    Err(err) => Err(err.into()),
                }
            }
            (Ok(()), None, _) if self.docker_archive.is_none() => Ok(()),
            (Ok(()), _, _) => Err(ImageError::DockerLoad {
                tag: self.report.tag.clone(),
                message: "the image was committed without being loaded first".to_owned(),
            }
            .into()),
        };
        if result.is_ok() && self.docker_archive.is_some() {
            written.push(format!("docker ({})", self.report.tag));
        }
        let result = match (result, self.push.take()) {
            (Ok(()), Some(push)) => match push.publish().await {
                Ok(reports) => {
                    let mut reports = reports.into_iter();
                    for output in &mut self.report.outputs {
                        if let Output::Registry(_) = output.output {
                            output.pushed = reports.next();
                            output.size = output.pushed.as_ref().map_or(0, |p| p.uploaded_bytes);
                        }
                    }
                    Ok(())
                }
                Err(err) => Err(err),
            },
            (result, _) => result,
        };
        match result {
            Ok(()) => Ok(self.report.clone()),
            Err(err) => {
                let err = self.undo(docker, err).await;
                if written.is_empty() {
                    Err(err)
                } else if matches!(err, Error::Build(BuildError::Interrupted)) {
                    Err(ImageError::PartlyWritten {
                        written,
                        reason:
                            "the build was interrupted while the manifests were pushed: a registry \
                                 destination may lack its tag"
                                .to_owned(),
                    }
                    .into())
                } else {
                    Err(ImageError::PartlyWritten {
                        written,
                        reason: err.to_string(),
                    }
                    .into())
                }
            }
        }
    }

    /// Give up: delete the temporary files and remove the image this loaded (unless the engine had it before).
    pub(crate) async fn discard(
        mut self,
        docker: Option<&bollard::Docker>,
    ) -> Result<(), EngineError> {
        self.items.clear();
        match (self.loaded.take(), docker) {
            (Some(loaded), Some(docker)) => {
                let removed = docker::discard(docker, &loaded).await;
                if let Some(journal) = &mut self.journal {
                    match removed {
                        Ok(()) => journal.clear_image(),
                        Err(_) => journal.keep(),
                    }
                }
                removed
            }
            (Some(loaded), None) => {
                self.loaded = Some(loaded);
                Ok(())
            }
            (None, _) => Ok(()),
        }
    }

    /// Give up after `cause`: [`discard`](PreparedImage::discard), and return `cause`, or, when the loaded image
    /// could not be removed, an error that says so too.
    pub(crate) async fn abandon(mut self, docker: Option<&bollard::Docker>, cause: Error) -> Error {
        self.undo(docker, cause).await
    }

    /// Load and commit from sync code, on any thread.
    fn finish_blocking(mut self) -> Result<ImageReport, Error> {
        if !self.wants_engine() && self.push.is_none() {
            let mut written = Vec::new();
            return match self.commit_files(&mut written) {
                Ok(()) => Ok(self.report.clone()),
                Err(err) if written.is_empty() => Err(err),
                Err(err) => Err(ImageError::PartlyWritten {
                    written,
                    reason: err.to_string(),
                }
                .into()),
            };
        }
        block_on(async move {
            let docker = match self.wants_engine() {
                true => Some(self.engine.connect().await?),
                false => None,
            };
            if let Some(docker) = &docker {
                self.load(docker).await?;
            }
            self.commit(docker.as_ref()).await
        })?
    }
}

impl Drop for PreparedImage {
    fn drop(&mut self) {
        // Dropped between load and commit (the build's future was dropped): remove the untagged image in the
        // background, on a thread of its own so it works whatever runtime (if any) is shutting down. The journal
        // entry goes with it, and is removed only once the image is: a process that exits first leaves it for
        // `staves prune`.
        if let Some(loaded) = self.loaded.take() {
            let engine = self.engine.clone();
            let mut journal = self.journal.take();
            let _ = std::thread::Builder::new()
                .name("staves-discard".into())
                .spawn(move || {
                    let _ = block_on(async move {
                        let removed = match engine.connect().await {
                            Ok(docker) => docker::discard(&docker, &loaded).await.is_ok(),
                            Err(_) => false,
                        };
                        if let Some(journal) = &mut journal {
                            match removed {
                                true => journal.clear_image(),
                                false => journal.keep(),
                            }
                        }
                    });
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse_and_display_round_trip() {
        for text in [
            "docker",
            "oci:out/dir",
            "oci-archive:a.tar",
            "docker-archive:/x/d.tar",
            "rootfs:r.tar",
            "docker://127.0.0.1:5000/team/app:1.0",
            "docker://registry.example.com/app",
        ] {
            let output: Output = text.parse().unwrap();
            assert_eq!(output.to_string(), text);
        }
        assert_eq!(
            "oci:x".parse::<Output>().unwrap(),
            Output::OciDir("x".into())
        );
    }

    #[test]
    fn bad_outputs_say_what_is_wrong() {
        let err = "tarball:x".parse::<Output>().unwrap_err().to_string();
        assert!(err.contains("unknown output type `tarball`"), "{err}");
        let err = "oci:".parse::<Output>().unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = "docker://".parse::<Output>().unwrap_err().to_string();
        assert!(err.contains("invalid output `docker://`"), "{err}");
        let err = "docker://r:1/a@sha256:00"
            .parse::<Output>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a digest"), "{err}");
        let err = "dockerr".parse::<Output>().unwrap_err().to_string();
        assert!(err.contains("TYPE:"), "{err}");
    }

    #[test]
    fn compression_parses() {
        assert_eq!("gzip".parse::<Compression>().unwrap(), Compression::Gzip);
        assert_eq!("zstd".parse::<Compression>().unwrap(), Compression::Zstd);
        assert!("xz".parse::<Compression>().is_err());
    }
}
