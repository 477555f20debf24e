//! Builds and locks: `staves lock` ([`lock_spec`]) and what [`crate::build_image`] does with a lock. Locking runs
//! the builder, so it sits above it; the lock file itself (model, parser, pins) is [`crate::lock`].

use crate::PlanOptions;
use crate::builder::{BuildError, BuildOptions, BuildReport, Builder, OutputCheck, RootfsSink};
use crate::lock::{
    LOCK_FILE_NAME, LockChange, LockError, Lockfile, Pins, Resolution, changes, lock_path_for,
    parse_resolution, spec_hash,
};
use crate::plan::{BuildPlan, StepKind};
use crate::spec::ImageSpec;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// How a build treats `staves.lock`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LockMode {
    /// Use the lock when there is one, as Cargo does: install its versions, keep the pins that still apply after a
    /// spec change, resolve the rest, and rewrite the lock when anything changed. Without a lock, build unlocked
    /// (no lock is written: `staves lock` makes one).
    #[default]
    Update,
    /// The lock must exist and match the spec and Portage's resolution exactly; it is never written (for CI).
    Locked,
    /// As [`LockMode::Locked`], and repositories are not synced: they must already be in the builder at the locked
    /// commit.
    Frozen,
}

/// Where the lock is and how to treat it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOptions {
    /// The lock file; `staves.lock` next to the spec file when `None` (no lock for a spec that has no file).
    pub path: Option<PathBuf>,
    /// How to treat it.
    pub mode: LockMode,
}

impl LockOptions {
    /// Options with `mode` and the lock next to the spec.
    pub fn new(mode: LockMode) -> Self {
        Self { path: None, mode }
    }

    /// The same options with the lock at `path`.
    pub fn path(mut self, path: Option<PathBuf>) -> Self {
        self.path = path;
        self
    }

    fn lock_path(&self, spec: &ImageSpec) -> Option<PathBuf> {
        self.path
            .clone()
            .or_else(|| spec.source_path().map(lock_path_for))
    }
}

/// What a build did with the lock; part of the JSON report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LockReport {
    /// True when the build installed pinned versions from a lock.
    pub locked: bool,
    /// The lock file used (or looked for).
    pub path: Option<PathBuf>,
    /// True when the build rewrote the lock (the spec or the resolution changed).
    pub written: bool,
    /// Entries that changed in the lock.
    pub changes: Vec<LockChange>,
    /// Pins left out because the changed spec excludes them (`=cat/pkg-ver::repo`).
    pub dropped: Vec<String>,
    /// [`Lockfile::hash`] of the lock the build followed (as rewritten, when it was); for the SBOM's `lock_hash`.
    pub hash: Option<String>,
}

/// A build that honours a lock: made by [`LockedBuild::prepare`] before the build, checks the resolve step's
/// output during it, and writes the lock after it.
pub(crate) struct LockedBuild {
    path: PathBuf,
    mode: LockMode,
    old: Lockfile,
    pins: Pins,
    spec_hash: String,
    resolved: Arc<Mutex<Option<Lockfile>>>,
}

impl LockedBuild {
    /// Read the lock for `spec` and decide what to pin. `Ok(None)`: no lock, build unlocked.
    ///
    /// With [`LockMode::Locked`]/[`LockMode::Frozen`], a missing lock or a spec changed since locking is an error
    /// here, before any container exists. A lock whose entries contradict the spec it was made for (edited by hand)
    /// is an error in every mode.
    pub(crate) fn prepare(
        spec: &ImageSpec,
        options: &LockOptions,
    ) -> Result<Option<LockedBuild>, LockError> {
        let strict = options.mode != LockMode::Update;
        let Some(path) = options.lock_path(spec) else {
            return if strict {
                Err(LockError::NoLock {
                    path: PathBuf::from(LOCK_FILE_NAME),
                })
            } else {
                Ok(None)
            };
        };
        let old = match Lockfile::load(&path) {
            Ok(lock) => lock,
            Err(LockError::Read { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                return if strict {
                    Err(LockError::NoLock { path })
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(e),
        };
        let hash = spec_hash(spec);
        if old.spec_hash == hash {
            let contradictions = old.contradictions(spec);
            if !contradictions.is_empty() {
                return Err(old.contradiction_error(contradictions));
            }
        } else if strict {
            return Err(LockError::Stale {
                path,
                reason:
                    "the spec changed since it was locked (its packages, package tables, [env] or \
                         repositories differ)"
                        .into(),
                changes: Vec::new(),
            });
        }
        let pins = Pins::for_spec(&old, spec);
        Ok(Some(LockedBuild {
            path,
            mode: options.mode,
            old,
            pins,
            spec_hash: hash,
            resolved: Arc::default(),
        }))
    }

    /// The build plan with the pins.
    pub(crate) fn plan(
        &self,
        spec: &ImageSpec,
        options: &PlanOptions,
    ) -> Result<BuildPlan, crate::plan::PlanError> {
        BuildPlan::locked(spec, options, &self.pins, self.mode == LockMode::Frozen)
    }

    /// The check of the resolve step's output: every pinned version is in the snapshot, and in the strict modes the
    /// resolution equals the lock. Keeps the resolution for [`LockedBuild::finish`].
    pub(crate) fn output_check(&self) -> OutputCheck {
        let (old, mode, path, hash, resolved) = (
            self.old.clone(),
            self.mode,
            self.path.clone(),
            self.spec_hash.clone(),
            Arc::clone(&self.resolved),
        );
        Arc::new(move |kind: &StepKind, output: &str| {
            if kind != &StepKind::Resolve {
                return Ok(());
            }
            let resolution = read_resolution(output, &old)?;
            let mut new = resolution.into_lock(hash.clone(), None, None);
            new.builder_image.clone_from(&old.builder_image);
            new.portage_image.clone_from(&old.portage_image);
            if mode != LockMode::Update && !old.same_pins(&new) {
                return Err(LockError::Stale {
                    path: path.clone(),
                    reason: "Portage resolves the spec to other packages than the lock holds"
                        .into(),
                    changes: changes(&old, &new),
                }
                .into());
            }
            *resolved.lock().unwrap_or_else(PoisonError::into_inner) = Some(new);
            Ok(())
        })
    }

    /// The hash of the lock as read: part of the local image store's build key, so a locked and an unlocked build
    /// of the same spec never stand for each other.
    pub(crate) fn pins_hash(&self) -> String {
        self.old.hash()
    }

    /// Whether a stored image may stand for this build: only when the lock was made for this very spec (otherwise
    /// the build must resolve again and rewrite the lock).
    pub(crate) fn reusable(&self) -> bool {
        self.old.spec_hash == self.spec_hash
    }

    /// The report of a locked build served from the local image store: the lock was followed as it is.
    pub(crate) fn unchanged(self) -> LockReport {
        LockReport {
            locked: true,
            path: Some(self.path),
            written: false,
            changes: Vec::new(),
            dropped: Vec::new(),
            hash: Some(self.old.hash()),
        }
    }

    /// What decides the hash of the lock this build leaves behind, for the SBOM, which is made before the lock is
    /// written (see [`LockOutcomeHash::hash`]).
    pub(crate) fn outcome_hash(&self) -> LockOutcomeHash {
        LockOutcomeHash {
            old: self.old.clone(),
            mode: self.mode,
            resolved: Arc::clone(&self.resolved),
        }
    }

    /// After a successful build: rewrite the lock when its entries changed ([`LockMode::Update`] only).
    pub(crate) fn finish(self, report: &BuildReport) -> Result<LockReport, LockError> {
        let outcome = self.outcome_hash();
        let new = outcome.resolved()?;
        let mut out = LockReport {
            locked: true,
            path: Some(self.path.clone()),
            written: false,
            changes: changes(&self.old, &new),
            dropped: self.pins.dropped.iter().map(|p| p.atom()).collect(),
            hash: Some(self.old.hash()),
        };
        if let Some(new) = outcome.rewritten(
            report.builder_image_id.as_deref(),
            report.portage_image_id.as_deref(),
        )? {
            write_lock(&self.path, &new)?;
            out.written = true;
            out.hash = Some(new.hash());
        }
        Ok(out)
    }
}

/// The lock a build leaves behind, known once its resolve step ran: the lock as read, or (when the build rewrites
/// it) the resolution with the build's image IDs.
#[derive(Debug, Clone)]
pub(crate) struct LockOutcomeHash {
    old: Lockfile,
    mode: LockMode,
    resolved: Arc<Mutex<Option<Lockfile>>>,
}

impl LockOutcomeHash {
    fn resolved(&self) -> Result<Lockfile, LockError> {
        self.resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| LockError::Resolution {
                message: "the build finished without a resolve step".into(),
            })
    }

    /// The lock the build writes, or `None` when it keeps the old one ([`LockMode::Update`] only rewrites, and only
    /// when the pins changed).
    fn rewritten(
        &self,
        builder_image_id: Option<&str>,
        portage_image_id: Option<&str>,
    ) -> Result<Option<Lockfile>, LockError> {
        let mut new = self.resolved()?;
        if self.mode != LockMode::Update || self.old.same_pins(&new) {
            return Ok(None);
        }
        new.builder_image = builder_image_id.map(str::to_owned);
        new.portage_image = portage_image_id.map(str::to_owned);
        Ok(Some(new))
    }

    /// [`Lockfile::hash`] of the lock this build leaves behind (the value [`LockReport::hash`] will have), given the
    /// image IDs the build reports.
    pub(crate) fn hash(
        &self,
        builder_image_id: Option<&str>,
        portage_image_id: Option<&str>,
    ) -> String {
        match self.rewritten(builder_image_id, portage_image_id) {
            Ok(Some(new)) => new.hash(),
            _ => self.old.hash(),
        }
    }
}

/// Parse the resolve step's output; pinned versions the snapshot lacks are [`LockError::MissingVersions`].
fn read_resolution(output: &str, old: &Lockfile) -> Result<Resolution, LockError> {
    let resolution =
        parse_resolution(output).map_err(|message| LockError::Resolution { message })?;
    if !resolution.missing.is_empty() {
        return Err(LockError::MissingVersions {
            missing: resolution.missing,
            portage_image: None,
            locked_image: old.portage_image.clone(),
        });
    }
    Ok(resolution)
}

/// Write `lock` to `path` through a temporary file in the same directory, so a reader never sees half a lock.
pub(crate) fn write_lock(path: &Path, lock: &Lockfile) -> Result<(), LockError> {
    let fail = |error| LockError::Write {
        path: path.to_path_buf(),
        error,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(&dir).map_err(fail)?;
    std::io::Write::write_all(&mut file, lock.to_toml_string().as_bytes()).map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// What [`lock_spec`] should do besides resolving.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LockRequest {
    /// Where to write the lock; `staves.lock` next to the spec file when `None`.
    pub output: Option<PathBuf>,
    /// Parallel jobs written into `make.conf` (does not change the resolution).
    pub jobs: Option<usize>,
}

impl LockRequest {
    /// A request that writes the lock next to the spec.
    pub fn new() -> Self {
        Self::default()
    }

    /// Write the lock to `path` instead.
    pub fn output(mut self, path: Option<PathBuf>) -> Self {
        self.output = path;
        self
    }
}

/// The result of [`lock_spec`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct LockOutcome {
    /// The lock as written.
    pub lock: Lockfile,
    /// Where it was written.
    pub path: PathBuf,
    /// How it differs from the lock that was there before (every entry is added when there was none).
    pub changes: Vec<LockChange>,
    /// What the resolve run did (steps, timings, image IDs).
    pub report: BuildReport,
}

/// Resolve `spec` with Portage in `builder` without building anything, and write `staves.lock`, from sync code.
///
/// Works from any thread, as [`crate::build_image`] does. See [`lock_spec_async`].
pub fn lock_spec(
    spec: &ImageSpec,
    builder: &dyn Builder,
    request: &LockRequest,
    options: &BuildOptions,
) -> crate::Result<LockOutcome> {
    crate::engine::block_on(lock_spec_async(spec, builder, request, options))?
}

/// Resolve `spec` with Portage in `builder` without building anything, and write `staves.lock`.
///
/// The resolution starts from scratch (this is how a lock is upgraded): the builder syncs the repositories and
/// runs `emerge --pretend --verbose` for the build dependencies and for the rootfs. The same spec, builder image,
/// snapshot and repository commits always give the same lock bytes. The lock goes next to the spec's file, or to
/// [`LockRequest::output`].
pub async fn lock_spec_async(
    spec: &ImageSpec,
    builder: &dyn Builder,
    request: &LockRequest,
    options: &BuildOptions,
) -> crate::Result<LockOutcome> {
    let path = request
        .output
        .clone()
        .or_else(|| spec.source_path().map(lock_path_for))
        .ok_or_else(|| LockError::NoLock {
            path: PathBuf::from(LOCK_FILE_NAME),
        })?;
    let plan_options = PlanOptions::new(request.jobs, None);
    let plan = BuildPlan::resolve(spec, &plan_options)?;
    let resolved: Arc<Mutex<Option<Resolution>>> = Arc::default();
    let slot = Arc::clone(&resolved);
    let check: OutputCheck = Arc::new(move |kind: &StepKind, output: &str| {
        if kind == &StepKind::Resolve {
            let resolution =
                parse_resolution(output).map_err(|message| LockError::Resolution { message })?;
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(resolution);
        }
        Ok(())
    });
    let (options, queue) = options.clone().with_output_check(check).queued();
    // A resolve plan fills no rootfs: the backend never calls the sink.
    let sink = RootfsSink::new(|_| Err(BuildError::NoRootfs.into()));
    let result = builder.build(&plan, &options, sink).await;
    if let Some(queue) = queue {
        queue.finish().await;
    }
    let report = result?;
    let resolution = resolved
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or_else(|| LockError::Resolution {
            message: "the builder ran no resolve step".into(),
        })?;
    let lock = resolution.into_lock(
        spec_hash(spec),
        report.builder_image_id.clone(),
        report.portage_image_id.clone(),
    );
    // An unreadable old lock is simply replaced.
    let old = Lockfile::load(&path).unwrap_or_default();
    write_lock(&path, &lock)?;
    Ok(LockOutcome {
        changes: changes(&old, &lock),
        lock,
        path,
        report,
    })
}

/// The pins a plan holds, and the lock they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlannedPins {
    /// The lock file.
    pub path: PathBuf,
    /// What it pins for this spec.
    pub pins: Pins,
}

/// The plan a build of `spec` would run with the lock `lock` describes: [`BuildPlan::locked`] when there is a lock
/// (with the pins it holds), else [`BuildPlan::new`]. The same checks as a build: `--locked` without a lock, a
/// stale lock under `--locked`, or a hand-edited lock are errors.
pub fn plan_for(
    spec: &ImageSpec,
    options: &PlanOptions,
    lock: &LockOptions,
) -> crate::Result<(BuildPlan, Option<PlannedPins>)> {
    match LockedBuild::prepare(spec, lock)? {
        Some(locked) => {
            let plan = locked.plan(spec, options)?;
            Ok((
                plan,
                Some(PlannedPins {
                    path: locked.path,
                    pins: locked.pins,
                }),
            ))
        }
        None => Ok((BuildPlan::new(spec, options)?, None)),
    }
}

/// Put the snapshot image's name into a [`LockError::MissingVersions`] that does not have it yet.
pub(crate) fn name_portage_image(error: crate::Error, image: Option<&str>) -> crate::Error {
    match error {
        crate::Error::Lock(LockError::MissingVersions {
            missing,
            portage_image: None,
            locked_image,
        }) => LockError::MissingVersions {
            missing,
            portage_image: image.map(str::to_owned),
            locked_image,
        }
        .into(),
        other => other,
    }
}
