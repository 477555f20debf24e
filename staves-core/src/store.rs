//! The local image store: rootfs layers of earlier builds, by digest, and the build keys that name them.
//!
//! A build's *key* is the SHA-256 of everything that decides its rootfs: the spec's packages, USE, keywords,
//! licenses, environments, repositories, locale and `stdlib` (in canonical form: the parsed spec, so formatting and
//! comments do not count), the builder and Portage image IDs, the builder's `LANG`, the mtime clamp
//! (`SOURCE_DATE_EPOCH`), the platform, and the Staves version. What only shapes the image config (`name`,
//! `version`, `command`, `annotations`, `[image]`) is left out: the config and manifest are written anew from the
//! spec every time, so a config-only change reuses the stored layer.
//!
//! Layout under the store directory (`$XDG_CACHE_HOME/staves`, else `~/.cache/staves`, or `--cache-dir`):
//!
//! ```text
//! blobs/sha256/<hex>     compressed layers, each stored once (read-only files)
//! builds/<hex>.json      one record per build key: the layer(s), the packages, when it was built and last used
//! tmp/                   staging for atomic writes
//! ```
//!
//! Every file is written under a temporary name and renamed into place, so a reader never sees half a record or
//! half a blob. Nothing is served unverified: a record whose blob is missing or has another size than it names
//! cannot be used ([`ImageStore::find`] says why), and a served blob is checked against its digest and its tar
//! against its `diff_id` as it is read (a mismatch is [`StoreError::Damaged`]). [`ImageStore::forget`] drops what
//! was found damaged, and [`ImageStore::put_blob`] replaces a damaged blob with the good one of the next build.

use crate::platform::Compression;
use crate::portage::InstalledPackage;
use crate::spec::ImageSpec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The version of the store's record format; records of another version are ignored.
pub const STORE_FORMAT: u32 = 1;

/// Errors of the local image store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No store directory was given and neither `XDG_CACHE_HOME` nor `HOME` is set.
    #[error(
        "no directory for the local image store: neither XDG_CACHE_HOME nor HOME is set\n  \
         help: pass --cache-dir DIR"
    )]
    NoDirectory,
    /// The store's path, or a directory above it, exists and is not a directory.
    #[error(
        "the local image store cannot be at {store}: {blocking} exists and is not a directory\n  \
         help: give the store a directory (a missing one is created on the first build), or move {blocking} away"
    )]
    NotADirectory {
        /// Where the store was asked to be.
        store: PathBuf,
        /// What is in the way: the store's path itself or the nearest of its ancestors that exists.
        blocking: PathBuf,
    },
    /// Reading or writing the store failed.
    #[error("local image store {path}: {context}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A stored blob does not have the digest it is stored under.
    #[error(
        "local image store: {path} does not have the digest it is stored under ({expected})\n  \
         help: remove it (`staves cache clear --store`) and build again"
    )]
    Corrupt {
        /// The blob.
        path: PathBuf,
        /// The digest it should have.
        expected: String,
    },
    /// A stored layer failed verification as it was read: its blob is missing, or does not have the digest or size
    /// it is stored under, or its tar does not have the `diff_id` or size its record names. Nothing was written
    /// from it.
    #[error(
        "local image store: the stored layer {digest} ({path}) failed verification: {reason}\n  \
         help: build the image again (a build replaces the damaged layer), or empty the store with \
         `staves cache clear --store`"
    )]
    Damaged {
        /// The layer's digest (`sha256:…`).
        digest: String,
        /// The blob.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },
    /// A prune option is out of range.
    #[error("{0}")]
    InvalidOption(String),
}

fn io_err(path: &Path, context: &str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    let context = context.to_owned();
    move |source| StoreError::Io {
        path,
        context,
        source,
    }
}

/// What decides a build's rootfs, besides the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyContext {
    /// The builder image's ID (`sha256:…`, from the engine).
    pub builder_image: String,
    /// The Portage snapshot image's ID.
    pub portage_image: String,
    /// `LANG` inside the builder.
    pub builder_locale: String,
    /// The mtime clamp of the layer (`SOURCE_DATE_EPOCH`).
    pub mtime_clamp: i64,
    /// `os/arch` of the image.
    pub platform: String,
    /// The hash of the `staves.lock` the build follows, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
}

impl KeyContext {
    /// The context of a build with these images and builder locale, on this platform, with the writer's mtime
    /// clamp.
    pub fn new(
        builder_image: impl Into<String>,
        portage_image: impl Into<String>,
        builder_locale: impl Into<String>,
    ) -> Self {
        Self {
            builder_image: builder_image.into(),
            portage_image: portage_image.into(),
            builder_locale: builder_locale.into(),
            mtime_clamp: crate::platform::source_date_epoch(),
            platform: format!("{}/{}", std::env::consts::OS, crate::platform::host_arch()),
            lock: None,
        }
    }

    /// The same context for a build that follows the lock with this hash (`None`: no lock).
    pub fn lock(mut self, lock_hash: Option<String>) -> Self {
        self.lock = lock_hash;
        self
    }
}

/// The parts of a spec that decide the rootfs, in the order they are written (order matters: later `make.conf`
/// lines and `package.*` lines win).
#[derive(Serialize)]
struct RootfsSpec<'a> {
    packages: &'a [String],
    locale: &'a crate::spec::Locale,
    stdlib: bool,
    env: Vec<(&'a String, &'a String)>,
    named_envs: Vec<(&'a String, Vec<(&'a String, &'a String)>)>,
    repositories: &'a [crate::spec::Repository],
    package_configs: Vec<(&'a String, &'a crate::spec::PackageConfig)>,
}

#[derive(Serialize)]
struct KeyInputs<'a> {
    format: u32,
    staves: &'static str,
    spec: RootfsSpec<'a>,
    context: &'a KeyContext,
}

/// The key of a build: the SHA-256 of its inputs in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildKey {
    /// `sha256:<hex>` of [`BuildKey::inputs`].
    pub digest: String,
    /// The canonical JSON the digest is taken over.
    pub inputs: String,
}

impl BuildKey {
    /// The key of building `spec` in `context`.
    pub fn new(spec: &ImageSpec, context: &KeyContext) -> Self {
        let inputs = KeyInputs {
            format: STORE_FORMAT,
            staves: env!("CARGO_PKG_VERSION"),
            spec: RootfsSpec {
                packages: &spec.packages,
                locale: &spec.locale,
                stdlib: spec.stdlib,
                env: pairs(&spec.env),
                named_envs: spec
                    .named_envs
                    .iter()
                    .map(|(name, vars)| (name, pairs(vars)))
                    .collect(),
                repositories: &spec.repositories,
                package_configs: spec.package_configs.iter().collect(),
            },
            context,
        };
        // Serializing plain data (strings, lists, bools, numbers) cannot fail.
        let inputs = serde_json::to_string(&inputs).unwrap_or_default();
        let digest = format!("sha256:{}", hex(&Sha256::digest(inputs.as_bytes())));
        Self { digest, inputs }
    }

    fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

fn pairs(map: &indexmap::IndexMap<String, String>) -> Vec<(&String, &String)> {
    map.iter().collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A layer kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredLayer {
    /// `sha256:…` of the compressed blob: its name in the store.
    pub digest: String,
    /// `sha256:…` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the compressed blob.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// How the blob is compressed.
    pub compression: Compression,
}

/// What the store knows about one build key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredBuild {
    /// [`STORE_FORMAT`].
    pub format: u32,
    /// The build key (`sha256:…`).
    pub key: String,
    /// The rootfs layer, once per compression it was written with.
    pub layers: Vec<StoredLayer>,
    /// The packages in the rootfs, as the build reported them.
    pub packages: Vec<InstalledPackage>,
    /// The image name of the spec that was built (informational).
    pub name: String,
    /// When the build ran (unix seconds).
    pub created: u64,
    /// When the record was last used, by a build or a no-op (unix seconds).
    pub last_used: u64,
    /// The canonical inputs of the key, for `staves cache list`.
    pub inputs: serde_json::Value,
    /// Files Staves added to the rootfs outside any package (for the SBOM of a no-op build).
    #[serde(default)]
    pub added_files: Vec<crate::sbom::AddedFile>,
    /// The builder image's ID the rootfs was built with.
    #[serde(default)]
    pub builder_image_id: Option<String>,
    /// The portage snapshot image's ID.
    #[serde(default)]
    pub portage_image_id: Option<String>,
    /// The snapshot's `metadata/timestamp.chk`.
    #[serde(default)]
    pub portage_timestamp: Option<String>,
    /// The snapshot's advisories that applied to the packages.
    #[serde(default)]
    pub advisories: Vec<crate::advisory::AdvisoryMatch>,
    /// Why the snapshot's advisories could not be read, when they could not.
    #[serde(default)]
    pub advisories_unreadable: Option<String>,
}

impl StoredBuild {
    /// The stored layer compressed with `compression`, if there is one.
    pub fn layer(&self, compression: Compression) -> Option<&StoredLayer> {
        self.layers.iter().find(|l| l.compression == compression)
    }
}

/// What the store has for a build key: see [`ImageStore::find`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreLookup {
    /// No record of the key.
    Absent,
    /// A record of this format whose blobs are all present, with the sizes it names.
    Found(Box<StoredBuild>),
    /// A record that cannot be used.
    Unusable(UnusableRecord),
}

/// Why a stored build cannot be used, and what to drop from the store ([`ImageStore::forget`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnusableRecord {
    /// What is wrong, in words (e.g. `blob sha256:… is 10 bytes, its record says 20`).
    pub reason: String,
    /// Whether a blob is damaged (missing, or not what its record names), rather than the record itself.
    pub damaged_blob: bool,
    /// The digests of the layers that cannot be served (empty when the record itself is unusable).
    pub layers: Vec<String>,
}

/// How much space the store takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreUsage {
    /// The store directory.
    pub path: PathBuf,
    /// Build records.
    pub builds: usize,
    /// Blobs.
    pub blobs: usize,
    /// Bytes of every file in the store.
    pub bytes: u64,
}

/// What [`ImageStore::prune`] or [`ImageStore::clear`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StorePruneReport {
    /// Keys of the removed build records.
    pub removed_builds: Vec<String>,
    /// Digests of the removed blobs.
    pub removed_blobs: Vec<String>,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Build records kept.
    pub kept_builds: usize,
    /// Nothing was removed: this is what would have been.
    pub dry_run: bool,
}

/// Which build records [`ImageStore::prune`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorePrune {
    /// The `n` most recently used records.
    KeepLast(usize),
    /// Records used at or after this time (unix seconds).
    UsedSince(u64),
}

/// The content-addressed local image store. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStore {
    root: PathBuf,
}

/// The nearest of `path` and its ancestors that exists, when it is not a directory (symbolic links followed).
/// `None` when it is a directory, when none exists, or when it cannot be inspected (a later write then says why).
fn first_existing_non_directory(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find_map(|p| match std::fs::metadata(p) {
            Ok(meta) => Some((!meta.is_dir()).then(|| p.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            // ENOTDIR: a component above is a file; the loop reaches it.
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => None,
            Err(_) => Some(None),
        })
        .flatten()
}

/// Seconds since the epoch, now.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ImageStore {
    /// The store at `dir` (created on first write).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { root: dir.into() }
    }

    /// The store at `dir`, or at the default location when `None`.
    ///
    /// Refused when the path, or the nearest of its ancestors that exists, is not a directory (a store there could
    /// never be written). A directory that cannot be written is accepted: it still serves what it holds, and
    /// [`ImageStore::check_writable`] tells whether new builds can be kept.
    pub fn open(dir: Option<&Path>) -> Result<Self, StoreError> {
        let root = match dir {
            Some(dir) => dir.to_path_buf(),
            None => Self::default_dir().ok_or(StoreError::NoDirectory)?,
        };
        if let Some(blocking) = first_existing_non_directory(&root) {
            return Err(StoreError::NotADirectory {
                store: root,
                blocking,
            });
        }
        Ok(Self::at(root))
    }

    /// Whether new builds can be kept here: the store's directory exists or can be created, and takes a new file.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let dir = self.tmp_dir()?;
        tempfile::NamedTempFile::new_in(&dir)
            .map(drop)
            .map_err(io_err(&dir, "creating a file"))
    }

    /// `$XDG_CACHE_HOME/staves`, else `~/.cache/staves`.
    pub fn default_dir() -> Option<PathBuf> {
        let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
        std::env::var_os("XDG_CACHE_HOME")
            .and_then(non_empty)
            .or_else(|| {
                std::env::var_os("HOME")
                    .and_then(non_empty)
                    .map(|h| h.join(".cache"))
            })
            .map(|base| base.join("staves"))
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn record_path(&self, key: &str) -> PathBuf {
        self.root
            .join("builds")
            .join(format!("{}.json", key.trim_start_matches("sha256:")))
    }

    /// Where the blob with `digest` is (or would be) stored; `None` for a malformed digest.
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.root.join("blobs").join("sha256").join(hex))
    }

    fn tmp_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.root.join("tmp");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir, "creating the directory"))?;
        Ok(dir)
    }

    /// The record of `key`, when it exists, is readable, is of this format and its blobs are all present.
    ///
    /// A record that cannot be used is treated as absent here; [`ImageStore::find`] says why.
    pub fn lookup(&self, key: &BuildKey) -> Option<StoredBuild> {
        match self.find(key) {
            StoreLookup::Found(build) => Some(*build),
            StoreLookup::Absent | StoreLookup::Unusable(_) => None,
        }
    }

    /// What the store has for `key`: nothing, a record that can be served (readable, of this format, naming the
    /// key, with every blob present at the size it names), or a record that cannot, and why.
    ///
    /// Only sizes are checked here; the content of a blob is checked as it is served (see
    /// [`ImageWriter::write_stored`](crate::ImageWriter::write_stored)).
    pub fn find(&self, key: &BuildKey) -> StoreLookup {
        let path = self.record_path(key.hex());
        let unusable = |reason: String| {
            StoreLookup::Unusable(UnusableRecord {
                reason,
                damaged_blob: false,
                layers: Vec::new(),
            })
        };
        let build = match self.parse_record(&path) {
            Ok(Some(build)) => build,
            Ok(None) => return StoreLookup::Absent,
            Err(reason) => return unusable(reason),
        };
        if build.key != key.digest {
            return unusable(format!(
                "the record {} names another build key ({})",
                path.display(),
                build.key
            ));
        }
        if build.layers.is_empty() {
            return unusable(format!("the record {} names no layer", path.display()));
        }
        let mut problems = Vec::new();
        let mut layers = Vec::new();
        for layer in &build.layers {
            let problem = match self.blob_path(&layer.digest) {
                None => Some(format!(
                    "the record names a layer that is not a sha256 digest ({})",
                    layer.digest
                )),
                Some(blob) => match std::fs::metadata(&blob) {
                    Ok(meta) if meta.len() == layer.size => None,
                    Ok(meta) => Some(format!(
                        "blob {} is {} bytes, its record says {}",
                        layer.digest,
                        meta.len(),
                        layer.size
                    )),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Some(format!("blob {} is missing", layer.digest))
                    }
                    Err(e) => Some(format!("blob {} cannot be read: {e}", layer.digest)),
                },
            };
            if let Some(problem) = problem {
                problems.push(problem);
                layers.push(layer.digest.clone());
            }
        }
        if problems.is_empty() {
            return StoreLookup::Found(Box::new(build));
        }
        StoreLookup::Unusable(UnusableRecord {
            reason: problems.join("; "),
            damaged_blob: true,
            layers,
        })
    }

    fn read_record(&self, path: &Path) -> Option<StoredBuild> {
        self.parse_record(path).ok().flatten()
    }

    /// The record at `path`: `None` when there is none, an error (the reason) when it cannot be used.
    fn parse_record(&self, path: &Path) -> Result<Option<StoredBuild>, String> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("the record {} cannot be read: {e}", path.display())),
        };
        let build: StoredBuild = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the record {} is not a build record: {e}", path.display()))?;
        if build.format != STORE_FORMAT {
            return Err(format!(
                "the record {} is of store format {}, this Staves reads format {STORE_FORMAT}",
                path.display(),
                build.format
            ));
        }
        Ok(Some(build))
    }

    /// Drop what cannot be used for `key`: the layers with these digests leave its record, and their blobs are
    /// removed when they do not have their digest (a blob that does is kept: another record may name it). The
    /// record goes when no layer is left, and when it cannot be read or names another key (`layers` empty).
    ///
    /// The next build of the key then writes a new record and good blobs.
    pub fn forget(&self, key: &BuildKey, layers: &[String]) -> Result<(), StoreError> {
        for digest in layers {
            let Some(blob) = self.blob_path(digest) else {
                continue;
            };
            if !blob_matches(&blob, digest, None) {
                remove_store_file(&blob)?;
            }
        }
        let path = self.record_path(key.hex());
        match self.parse_record(&path) {
            Ok(None) => Ok(()),
            Ok(Some(mut build)) if build.key == key.digest && !layers.is_empty() => {
                build.layers.retain(|l| !layers.contains(&l.digest));
                if build.layers.is_empty() {
                    remove_store_file(&path)
                } else {
                    self.put_record(&build)
                }
            }
            Ok(Some(_)) | Err(_) => remove_store_file(&path),
        }
    }

    /// Store the blob at `source` under `digest`. The source is hashed while it is copied, and a mismatch is an
    /// error. A blob already stored under `digest` is kept when it has the source's size and the digest, and
    /// replaced otherwise (a damaged blob is repaired by the next build that writes it). Returns the blob's path.
    pub fn put_blob(&self, source: &Path, digest: &str) -> Result<PathBuf, StoreError> {
        let dest = self
            .blob_path(digest)
            .ok_or_else(|| StoreError::InvalidOption(format!("not a sha256 digest: {digest}")))?;
        let size = std::fs::metadata(source)
            .map_err(io_err(source, "reading"))?
            .len();
        if blob_matches(&dest, digest, Some(size)) {
            return Ok(dest);
        }
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io_err(&parent, "creating the directory"))?;
        let tmp = tempfile::NamedTempFile::new_in(self.tmp_dir()?)
            .map_err(io_err(&self.root, "creating a temporary file"))?;
        let mut input = std::fs::File::open(source).map_err(io_err(source, "opening"))?;
        let mut hasher = Sha256::new();
        let mut writer = std::io::BufWriter::new(tmp.as_file());
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = std::io::Read::read(&mut input, &mut buf).map_err(io_err(source, "reading"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            writer
                .write_all(&buf[..n])
                .map_err(io_err(tmp.path(), "writing"))?;
        }
        writer.flush().map_err(io_err(tmp.path(), "writing"))?;
        drop(writer);
        if format!("sha256:{}", hex(&hasher.finalize())) != digest {
            return Err(StoreError::Corrupt {
                path: source.to_path_buf(),
                expected: digest.to_owned(),
            });
        }
        set_read_only(tmp.path()).map_err(io_err(tmp.path(), "setting the mode"))?;
        // A rename replaces a damaged blob at once (a reader that has it open keeps the old file); where a rename
        // cannot replace a read-only file, the old one is removed first.
        let tmp = match tmp.persist(&dest) {
            Ok(_) => return Ok(dest),
            Err(e) if dest.exists() => {
                remove_store_file(&dest)?;
                e.file
            }
            Err(e) => return Err(io_err(&dest, "moving the blob into place")(e.error)),
        };
        tmp.persist(&dest)
            .map_err(|e| io_err(&dest, "moving the blob into place")(e.error))?;
        Ok(dest)
    }

    /// Write `build`'s record (replacing an earlier one of the same key).
    pub fn put_record(&self, build: &StoredBuild) -> Result<(), StoreError> {
        let path = self.record_path(&build.key);
        let parent = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io_err(&parent, "creating the directory"))?;
        let text = serde_json::to_vec_pretty(build).unwrap_or_default();
        let mut tmp = tempfile::NamedTempFile::new_in(self.tmp_dir()?)
            .map_err(io_err(&self.root, "creating a temporary file"))?;
        tmp.write_all(&text)
            .map_err(io_err(tmp.path(), "writing"))?;
        tmp.persist(&path)
            .map_err(|e| io_err(&path, "moving the record into place")(e.error))?;
        Ok(())
    }

    /// Record that `build` was used now (best effort: a store on a read-only disk still serves images).
    pub fn touch(&self, build: &StoredBuild) {
        let mut used = build.clone();
        used.last_used = now();
        let _ = self.put_record(&used);
    }

    /// Every readable build record, most recently used first.
    pub fn list(&self) -> Result<Vec<StoredBuild>, StoreError> {
        let dir = self.root.join("builds");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, "listing")(e)),
        };
        let mut builds: Vec<StoredBuild> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| self.read_record(&e.path()))
            .collect();
        builds.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.key.cmp(&b.key)));
        Ok(builds)
    }

    /// How much space the store takes.
    pub fn disk_usage(&self) -> Result<StoreUsage, StoreError> {
        let mut usage = StoreUsage {
            path: self.root.clone(),
            builds: self.list()?.len(),
            ..StoreUsage::default()
        };
        for dir in ["blobs/sha256", "builds", "tmp"] {
            let dir = self.root.join(dir);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                if let Ok(meta) = entry.metadata() {
                    usage.bytes += meta.len();
                    if dir.ends_with("blobs/sha256") {
                        usage.blobs += 1;
                    }
                }
            }
        }
        Ok(usage)
    }

    /// Remove the build records `rule` does not keep, then every blob no kept record names.
    pub fn prune(&self, rule: StorePrune, dry_run: bool) -> Result<StorePruneReport, StoreError> {
        let builds = self.list()?;
        let keep = |i: usize, b: &StoredBuild| match rule {
            StorePrune::KeepLast(n) => i < n,
            StorePrune::UsedSince(t) => b.last_used >= t,
        };
        let (kept, removed): (Vec<_>, Vec<_>) = builds
            .into_iter()
            .enumerate()
            .partition(|(i, b)| keep(*i, b));
        self.remove(
            removed.into_iter().map(|(_, b)| b).collect(),
            kept.into_iter().map(|(_, b)| b).collect(),
            dry_run,
        )
    }

    /// Remove every record and blob.
    pub fn clear(&self, dry_run: bool) -> Result<StorePruneReport, StoreError> {
        let builds = self.list()?;
        let mut report = self.remove(builds, Vec::new(), dry_run)?;
        if !dry_run {
            let tmp = self.root.join("tmp");
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp, "removing"))?;
            }
        }
        report.kept_builds = 0;
        Ok(report)
    }

    fn remove(
        &self,
        removed: Vec<StoredBuild>,
        kept: Vec<StoredBuild>,
        dry_run: bool,
    ) -> Result<StorePruneReport, StoreError> {
        let mut report = StorePruneReport {
            kept_builds: kept.len(),
            dry_run,
            ..StorePruneReport::default()
        };
        let live: std::collections::BTreeSet<&str> = kept
            .iter()
            .flat_map(|b| b.layers.iter().map(|l| l.digest.as_str()))
            .collect();
        for build in &removed {
            let path = self.record_path(&build.key);
            if !dry_run {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path, "removing")(e)),
                }
            }
            report.removed_builds.push(build.key.clone());
        }
        let blobs = self.root.join("blobs").join("sha256");
        if let Ok(entries) = std::fs::read_dir(&blobs) {
            for entry in entries.filter_map(Result::ok) {
                let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
                if live.contains(digest.as_str()) {
                    continue;
                }
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if !dry_run {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io_err(&entry.path(), "removing")(e)),
                    }
                }
                report.freed_bytes += size;
                report.removed_blobs.push(digest);
            }
        }
        Ok(report)
    }
}

/// A new record for a build of `key` that wrote `layer`: merged with the existing record of the key (another
/// compression of the same rootfs) when there is one.
pub(crate) fn record_for(
    store: &ImageStore,
    key: &BuildKey,
    spec: &ImageSpec,
    layer: StoredLayer,
    packages: Vec<InstalledPackage>,
) -> StoredBuild {
    let now = now();
    let mut build = store.lookup(key).unwrap_or_else(|| StoredBuild {
        format: STORE_FORMAT,
        key: key.digest.clone(),
        layers: Vec::new(),
        packages: Vec::new(),
        name: spec.name.clone(),
        created: now,
        last_used: now,
        inputs: serde_json::from_str(&key.inputs).unwrap_or(serde_json::Value::Null),
        added_files: Vec::new(),
        builder_image_id: None,
        portage_image_id: None,
        portage_timestamp: None,
        advisories: Vec::new(),
        advisories_unreadable: None,
    });
    build.layers.retain(|l| l.compression != layer.compression);
    build.layers.push(layer);
    if !packages.is_empty() {
        build.packages = packages;
    }
    build.last_used = now;
    build
}

/// Whether the file at `path` has the content `digest` names (and `size` bytes, when given): read whole and hashed
/// when the size fits. A file that cannot be read does not match.
fn blob_matches(path: &Path, digest: &str, size: Option<u64>) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if size.is_some_and(|size| size != meta.len()) || !meta.is_file() {
        return false;
    }
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    format!("sha256:{}", hex(&hasher.finalize())) == digest
}

/// Remove a file of the store (read-only ones too); one that is already gone is fine.
fn remove_store_file(path: &Path) -> Result<(), StoreError> {
    let removed = match std::fs::remove_file(path) {
        Err(e) if cfg!(windows) && e.kind() == std::io::ErrorKind::PermissionDenied => {
            // Windows refuses to remove a read-only file; Unix only asks for the directory's permission.
            let mut perms = std::fs::metadata(path)
                .map_err(io_err(path, "removing"))?
                .permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(path, perms).and_then(|()| std::fs::remove_file(path))
        }
        other => other,
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, "removing")(e)),
    }
}

#[cfg(unix)]
fn set_read_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
}

#[cfg(not(unix))]
fn set_read_only(path: &Path) -> std::io::Result<()> {
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(path, perms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ImageSpec {
        ImageSpec::parse(text, None).unwrap()
    }

    fn context() -> KeyContext {
        KeyContext {
            builder_image: "sha256:b".into(),
            portage_image: "sha256:p".into(),
            builder_locale: "C.UTF-8".into(),
            mtime_clamp: 0,
            platform: "linux/amd64".into(),
            lock: None,
        }
    }

    #[test]
    fn a_lock_changes_the_key() {
        let spec = spec(BASE);
        let plain = BuildKey::new(&spec, &context());
        let locked = BuildKey::new(&spec, &context().lock(Some("sha256:l1".into())));
        let relocked = BuildKey::new(&spec, &context().lock(Some("sha256:l2".into())));
        assert_ne!(plain.digest, locked.digest);
        assert_ne!(locked.digest, relocked.digest);
        assert_eq!(
            plain.digest,
            BuildKey::new(&spec, &context().lock(None)).digest
        );
    }

    const BASE: &str = "name = 'x/y'\npackages = ['app-misc/hello']\n";

    #[test]
    fn config_only_settings_do_not_change_the_key_and_rootfs_settings_do() {
        let key = |text: &str| BuildKey::new(&spec(text), &context()).digest;
        let base = key(BASE);
        // Formatting, comments and what only goes into the image config leave the key alone.
        for same in [
            "# a comment\nname = \"x/y\"\n\npackages = [ \"app-misc/hello\" ]\n",
            "name = 'other/name'\nversion = '2'\npackages = ['app-misc/hello']\ncommand = ['/bin/sh']\n\
             [annotations]\na = 'b'\n[image]\nuser = '1000'\n",
        ] {
            assert_eq!(key(same), base, "{same}");
        }
        for other in [
            "name = 'x/y'\npackages = ['app-misc/hello', 'app-misc/other']\n",
            "name = 'x/y'\npackages = ['app-misc/hello']\nstdlib = true\n",
            "name = 'x/y'\npackages = ['app-misc/hello']\n[env]\nCFLAGS = '-O3'\n",
            "name = 'x/y'\npackages = ['app-misc/hello']\n['app-misc/hello']\nuse = ['-nls']\n",
            "name = 'x/y'\npackages = ['app-misc/hello']\nlocale = { name = 'en_US', charset = 'UTF-8' }\n",
        ] {
            assert_ne!(key(other), base, "{other}");
        }
        // The order of [env] assignments matters (later ones see earlier ones).
        let ab = "name = 'x/y'\npackages = ['a/b']\n[env]\nA = '1'\nB = '${A}'\n";
        let ba = "name = 'x/y'\npackages = ['a/b']\n[env]\nB = '${A}'\nA = '1'\n";
        assert_ne!(key(ab), key(ba));
        let mut other_builder = context();
        other_builder.builder_image = "sha256:c".into();
        assert_ne!(BuildKey::new(&spec(BASE), &other_builder).digest, base);
        let mut clamp = context();
        clamp.mtime_clamp = 5;
        assert_ne!(BuildKey::new(&spec(BASE), &clamp).digest, base);
    }

    fn layer(store: &ImageStore, content: &[u8]) -> StoredLayer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer");
        std::fs::write(&path, content).unwrap();
        let digest = format!("sha256:{}", hex(&Sha256::digest(content)));
        store.put_blob(&path, &digest).unwrap();
        StoredLayer {
            digest,
            diff_id: "sha256:00".into(),
            size: content.len() as u64,
            uncompressed_size: 0,
            compression: Compression::Gzip,
        }
    }

    #[test]
    fn records_round_trip_and_a_missing_blob_means_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::at(dir.path());
        let key = BuildKey::new(&spec(BASE), &context());
        assert!(store.lookup(&key).is_none());
        let l = layer(&store, b"layer bytes");
        let build = record_for(&store, &key, &spec(BASE), l.clone(), Vec::new());
        store.put_record(&build).unwrap();
        assert_eq!(store.lookup(&key).unwrap().layers, std::slice::from_ref(&l));
        // Stored once, read-only.
        let blob = store.blob_path(&l.digest).unwrap();
        assert!(std::fs::metadata(&blob).unwrap().permissions().readonly());
        store
            .put_blob(&blob, &l.digest)
            .expect("storing an existing blob again is fine");
        let mut perms = std::fs::metadata(&blob).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&blob, perms).unwrap();
        std::fs::remove_file(&blob).unwrap();
        assert!(store.lookup(&key).is_none());
    }

    #[test]
    fn open_refuses_a_file_and_a_path_under_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        std::fs::write(&file, b"not a store").unwrap();
        for (asked, blocking) in [
            (file.clone(), file.clone()),
            (file.join("deeper/staves"), file.clone()),
        ] {
            match ImageStore::open(Some(&asked)) {
                Err(StoreError::NotADirectory { store, blocking: b }) => {
                    assert_eq!((store, b), (asked.clone(), blocking.clone()));
                }
                other => panic!("{asked:?}: {other:?}"),
            }
        }
        let message = ImageStore::open(Some(&file)).unwrap_err().to_string();
        assert!(
            message.contains(&format!("{} exists and is not a directory", file.display())),
            "{message}"
        );
        assert!(message.contains("help: "), "{message}");
        // The file is left alone.
        assert_eq!(std::fs::read(&file).unwrap(), b"not a store");
    }

    #[test]
    fn open_accepts_a_directory_and_a_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ImageStore::open(Some(dir.path())).unwrap().path(),
            dir.path()
        );
        let missing = dir.path().join("a/b/staves");
        let store = ImageStore::open(Some(&missing)).unwrap();
        assert!(!missing.exists(), "opening creates nothing");
        store.check_writable().unwrap();
        assert!(missing.join("tmp").is_dir());
        // The probe leaves no file behind.
        assert_eq!(std::fs::read_dir(missing.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_store_that_cannot_be_written_says_where() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the store keeps its staging directory: no write can succeed, even as root.
        std::fs::write(dir.path().join("tmp"), b"").unwrap();
        let store = ImageStore::open(Some(dir.path())).unwrap();
        match store.check_writable() {
            Err(StoreError::Io { path, .. }) => assert_eq!(path, dir.path().join("tmp")),
            other => panic!("{other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_read_only_directory_is_opened_but_not_writable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        std::fs::create_dir(&store_dir).unwrap();
        std::fs::set_permissions(&store_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let store = ImageStore::open(Some(&store_dir)).unwrap();
        let probe = std::fs::File::create(store_dir.join("probe"));
        if probe.is_ok() {
            // Root (CAP_DAC_OVERRIDE) writes anyway: nothing to check here.
            std::fs::set_permissions(&store_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            return;
        }
        assert!(matches!(store.check_writable(), Err(StoreError::Io { .. })));
        std::fs::set_permissions(&store_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::at(dir.path());
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let wrong = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            store.put_blob(&file, &wrong),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(!store.blob_path(&wrong).unwrap().exists());
        assert!(store.blob_path("sha256:../../etc").is_none());
    }

    /// Make a stored blob writable and give it `content`, as damage would.
    fn damage(path: &Path, content: &[u8]) {
        let mut perms = std::fs::metadata(path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(path, perms).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Issue row 8: `put_blob` kept whatever file was already stored under the digest, so a truncated blob was
    /// never repaired and every later build of the spec rebuilt without a word.
    #[test]
    fn put_blob_replaces_a_damaged_blob_and_keeps_a_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::at(dir.path().join("store"));
        let content = b"the layer's bytes".repeat(100);
        let source = dir.path().join("layer");
        std::fs::write(&source, &content).unwrap();
        let digest = format!("sha256:{}", hex(&Sha256::digest(&content)));
        let blob = store.put_blob(&source, &digest).unwrap();
        let same_size = vec![b'x'; content.len()];
        for damaged in [&content[..content.len() / 2], &same_size[..], b""] {
            damage(&blob, damaged);
            assert_eq!(store.put_blob(&source, &digest).unwrap(), blob);
            assert_eq!(std::fs::read(&blob).unwrap(), content);
            assert!(std::fs::metadata(&blob).unwrap().permissions().readonly());
        }
        // A good blob is left as it is (the same file).
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let inode = std::fs::metadata(&blob).unwrap().ino();
            store.put_blob(&source, &digest).unwrap();
            assert_eq!(std::fs::metadata(&blob).unwrap().ino(), inode);
        }
        // Nothing is left behind in the staging directory.
        assert_eq!(
            std::fs::read_dir(store.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn find_says_why_a_record_cannot_be_used_and_forget_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::at(dir.path());
        let key = BuildKey::new(&spec(BASE), &context());
        assert_eq!(store.find(&key), StoreLookup::Absent);
        let gzip = layer(&store, b"gzip layer bytes");
        let mut zstd = layer(&store, b"zstd layer");
        zstd.compression = Compression::Zstd;
        let mut build = record_for(&store, &key, &spec(BASE), gzip.clone(), Vec::new());
        build.layers.push(zstd.clone());
        store.put_record(&build).unwrap();
        assert!(matches!(store.find(&key), StoreLookup::Found(_)));

        // A truncated blob: the record cannot be used, and says which blob and why.
        let zstd_blob = store.blob_path(&zstd.digest).unwrap();
        damage(&zstd_blob, b"zstd");
        let StoreLookup::Unusable(unusable) = store.find(&key) else {
            panic!("{:?}", store.find(&key));
        };
        assert!(unusable.damaged_blob);
        assert_eq!(unusable.layers, std::slice::from_ref(&zstd.digest));
        assert!(
            unusable.reason.contains(&format!(
                "blob {} is 4 bytes, its record says 10",
                zstd.digest
            )),
            "{}",
            unusable.reason
        );
        assert!(store.lookup(&key).is_none());
        // Forgetting it removes the damaged blob and that layer only; the rest is served again.
        store.forget(&key, &unusable.layers).unwrap();
        assert!(!zstd_blob.exists());
        let StoreLookup::Found(left) = store.find(&key) else {
            panic!("{:?}", store.find(&key));
        };
        assert_eq!(left.layers, std::slice::from_ref(&gzip));

        // A missing blob.
        let gzip_blob = store.blob_path(&gzip.digest).unwrap();
        damage(&gzip_blob, b"gzip layer bytes");
        std::fs::remove_file(&gzip_blob).unwrap();
        let StoreLookup::Unusable(unusable) = store.find(&key) else {
            panic!("{:?}", store.find(&key));
        };
        assert!(
            unusable.reason.contains("is missing"),
            "{}",
            unusable.reason
        );
        store.forget(&key, &unusable.layers).unwrap();
        assert_eq!(store.find(&key), StoreLookup::Absent, "no layer is left");

        // A record that is not one: said, and dropped.
        store.put_record(&build).unwrap();
        let record = store.record_path(key.hex());
        std::fs::write(&record, b"{ not json").unwrap();
        let StoreLookup::Unusable(unusable) = store.find(&key) else {
            panic!("{:?}", store.find(&key));
        };
        assert!(!unusable.damaged_blob && unusable.layers.is_empty());
        assert!(
            unusable.reason.contains("is not a build record"),
            "{}",
            unusable.reason
        );
        store.forget(&key, &unusable.layers).unwrap();
        assert!(!record.exists());
    }

    #[test]
    fn forget_keeps_a_blob_that_has_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::at(dir.path());
        let key = BuildKey::new(&spec(BASE), &context());
        let l = layer(&store, b"an intact blob");
        store
            .put_record(&record_for(
                &store,
                &key,
                &spec(BASE),
                l.clone(),
                Vec::new(),
            ))
            .unwrap();
        // The record was wrong about it (say, its diff_id): the layer leaves the record, the blob stays.
        store.forget(&key, std::slice::from_ref(&l.digest)).unwrap();
        assert!(store.blob_path(&l.digest).unwrap().exists());
        assert_eq!(store.find(&key), StoreLookup::Absent);
    }

    #[test]
    fn prune_keeps_the_most_recently_used_and_their_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::at(dir.path());
        let mut keys = Vec::new();
        for (i, body) in ["a/one", "a/two", "a/three"].iter().enumerate() {
            let s = spec(&format!("name = 'x/y'\npackages = ['{body}']\n"));
            let key = BuildKey::new(&s, &context());
            let mut build = record_for(&store, &key, &s, layer(&store, body.as_bytes()), vec![]);
            build.last_used = 100 + i as u64;
            store.put_record(&build).unwrap();
            keys.push(key);
        }
        let usage = store.disk_usage().unwrap();
        assert_eq!((usage.builds, usage.blobs), (3, 3));
        let dry = store.prune(StorePrune::KeepLast(1), true).unwrap();
        assert_eq!(dry.removed_builds.len(), 2);
        assert_eq!(store.list().unwrap().len(), 3, "a dry run removes nothing");
        let report = store.prune(StorePrune::KeepLast(1), false).unwrap();
        assert_eq!(report.kept_builds, 1);
        assert_eq!(report.removed_blobs.len(), 2);
        assert!(store.lookup(&keys[2]).is_some());
        assert!(store.lookup(&keys[0]).is_none());
        let report = store.prune(StorePrune::UsedSince(103), false).unwrap();
        assert_eq!(report.removed_builds, [keys[2].digest.clone()]);
        let cleared = store.clear(false).unwrap();
        assert!(cleared.removed_builds.is_empty());
        assert_eq!(store.disk_usage().unwrap().bytes, 0);
    }
}
