//! Execution backends: run a [`BuildPlan`] somewhere and hand over the resulting rootfs.
//!
//! [`DockerBuilder`] runs the plan in a Gentoo builder container through the Docker API; [`MockBuilder`] records
//! what it was asked to do and yields a rootfs from a directory, for tests that need no engine.

mod docker;
mod events;
mod mock;
mod owner;

pub use docker::{BUILD_LABEL, DEFAULT_BUILDER_IMAGE, DEFAULT_PORTAGE_IMAGE, DockerBuilder};
pub use events::{BuildEvent, CancelToken, EventHandler, LogStream};
pub(crate) use events::{EventQueue, test_pause};
pub use mock::{MockBuilder, MockCall, MockEntry};
pub use owner::{
    BuildOwner, BuildResources, Ownership, PruneOptions, PruneReport, Reaped, list_builds,
    list_builds_async, prune, prune_async, remove_builds, remove_builds_async, remove_leftovers,
    remove_leftovers_async,
};

use crate::engine::Engine;
use crate::plan::{BuildPlan, StepKind};
use crate::portage::InstalledPackage;
use serde::Serialize;
use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

/// The default name of the volume that keeps binary packages between builds.
pub const DEFAULT_BUILD_CACHE: &str = "staves-binpkgs";

/// How a build runs, independent of the backend's own settings.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Receives progress events and log lines, in order, on a delivery thread of its own (see [`EventHandler`]).
    pub events: Option<EventHandler>,
    /// Cancels the build when triggered (Ctrl-C, a signal, another thread); containers are still removed.
    pub cancel: CancelToken,
    /// Set once `events` is the queueing handler of a running [`EventQueue`].
    queued: bool,
    /// Reads the captured output of each step that captures it ([`StepKind::captures_output`]) as soon as the
    /// step has finished; an error stops the build there (the lock check after the resolve step).
    pub(crate) output_check: Option<OutputCheck>,
}

/// See [`BuildOptions::output_check`].
pub(crate) type OutputCheck =
    std::sync::Arc<dyn Fn(&StepKind, &str) -> crate::Result<()> + Send + Sync>;

impl BuildOptions {
    /// Options that deliver events to `handler`.
    pub fn with_events(mut self, handler: EventHandler) -> Self {
        self.events = Some(handler);
        self.queued = false;
        self
    }

    /// Options that stop the build when `cancel` is triggered.
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// These options with `check` reading every captured step output.
    pub(crate) fn with_output_check(mut self, check: OutputCheck) -> Self {
        self.output_check = Some(check);
        self
    }

    /// Hand a captured step output to the check, if there is one.
    pub(crate) fn check_output(&self, kind: &StepKind, output: &str) -> crate::Result<()> {
        match &self.output_check {
            Some(check) => check(kind, output),
            None => Ok(()),
        }
    }

    pub(crate) fn emit(&self, event: BuildEvent) {
        if let Some(handler) = &self.events {
            handler(&event);
        }
    }

    /// These options with events going through a delivery thread (unless they already do), and the queue to
    /// [`finish`](EventQueue::finish) at the end of the build.
    pub(crate) fn queued(&self) -> (Self, Option<EventQueue>) {
        match &self.events {
            Some(handler) if !self.queued => {
                let (queue, handler) = EventQueue::start(handler.clone());
                let options = Self {
                    events: Some(handler),
                    cancel: self.cancel.clone(),
                    queued: true,
                    output_check: self.output_check.clone(),
                };
                (options, Some(queue))
            }
            _ => (self.clone(), None),
        }
    }
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("events", &self.events.as_ref().map(|_| "<handler>"))
            .field("cancel", &self.cancel)
            .field(
                "output_check",
                &self.output_check.as_ref().map(|_| "<check>"),
            )
            .finish()
    }
}

/// Consumes the rootfs tar stream while the build environment still exists.
///
/// The stream is untrusted: it comes out of a container. The image writer is the usual sink. The sink is
/// synchronous (it reads a [`std::io::Read`]); backends run it on a blocking thread (`spawn_blocking`) fed from
/// the engine's download stream, so it must be `Send + 'static`.
pub struct RootfsSink {
    consume: SinkFn,
}

type SinkFn = Box<dyn FnOnce(&mut dyn Read, &BuildReport) -> crate::Result<()> + Send>;

impl RootfsSink {
    /// A sink that reads the whole rootfs tar with `consume`.
    pub fn new(consume: impl FnOnce(&mut dyn Read) -> crate::Result<()> + Send + 'static) -> Self {
        Self {
            consume: Box::new(move |rootfs, _| consume(rootfs)),
        }
    }

    /// A sink that also receives what the builder learnt before the export: the report so far, with the
    /// packages, the files Staves added, the image IDs and the snapshot's timestamp and advisories (the steps'
    /// durations are there too; `export_duration` and `total_duration` are not yet). The image writer uses it to
    /// attach the SBOM, which must exist before the image's manifest is written.
    pub fn with_report(
        consume: impl FnOnce(&mut dyn Read, &BuildReport) -> crate::Result<()> + Send + 'static,
    ) -> Self {
        Self {
            consume: Box::new(consume),
        }
    }

    /// Read the whole rootfs tar from `rootfs` (on the calling thread); `report` is the builder's report so far.
    pub fn consume(self, rootfs: &mut dyn Read, report: &BuildReport) -> crate::Result<()> {
        (self.consume)(rootfs, report)
    }

    /// Run the sink on a blocking thread of the current runtime, reading from `rootfs`.
    pub(crate) async fn consume_blocking(
        self,
        mut rootfs: impl Read + Send + 'static,
        report: BuildReport,
    ) -> crate::Result<()> {
        tokio::task::spawn_blocking(move || self.consume(&mut rootfs, &report))
            .await
            .unwrap_or_else(|e| {
                Err(BuildError::WriterStopped {
                    reason: e.to_string(),
                }
                .into())
            })
    }
}

impl std::fmt::Debug for RootfsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootfsSink")
    }
}

/// The future of [`Builder::key_context`].
pub type KeyContextFuture<'a> =
    Pin<Box<dyn Future<Output = crate::Result<Option<crate::store::KeyContext>>> + Send + 'a>>;

/// The future a [`Builder`] returns: `Send`, so it can be spawned on a multi-threaded runtime.
pub type BuildFuture<'a> = Pin<Box<dyn Future<Output = crate::Result<BuildReport>> + Send + 'a>>;

/// An execution backend.
///
/// [`Builder::build`] is async. It must be polled inside a Tokio runtime (it spawns blocking work and cleanup
/// there); [`crate::build_image`] and [`Builder::build_blocking`] run it from sync code on any thread.
pub trait Builder: Send + Sync {
    /// Run `plan`, then pass the rootfs tar stream to `sink` and return what happened.
    ///
    /// The sink is only called when every step succeeded, so a failed build never produces an image, and only for
    /// plans that fill a rootfs ([`BuildPlan::produces_rootfs`]). Dropping the future cancels the build; what it
    /// created is then removed in the background.
    fn build<'a>(
        &'a self,
        plan: &'a BuildPlan,
        options: &'a BuildOptions,
        sink: RootfsSink,
    ) -> BuildFuture<'a>;

    /// The engine this backend builds on, which the `docker` output then loads into. `None` for backends that
    /// use no engine (the mock).
    fn engine(&self) -> Option<&Engine> {
        None
    }

    /// [`Builder::build`] from sync code, on any thread (also inside a runtime: it then runs on a helper thread).
    fn build_blocking(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        sink: RootfsSink,
    ) -> crate::Result<BuildReport> {
        crate::engine::block_on(self.build(plan, options, sink))?
    }

    /// The portage snapshot image this backend builds with, for messages (`None` for backends without one).
    fn portage_image(&self) -> Option<&str> {
        None
    }

    /// The builder image this backend builds in (`None` for backends without one). A backend that names both
    /// images reads the package database and the snapshot, and its builds get an SBOM.
    fn builder_image(&self) -> Option<&str> {
        None
    }

    /// What, besides the spec, decides the rootfs this backend builds (its images' IDs, its locale), for the
    /// local image store's build key. `None` (the default) when the backend cannot say, or an image is missing:
    /// the build then always runs.
    fn key_context(&self) -> KeyContextFuture<'_> {
        Box::pin(async { Ok(None) })
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The step's kind.
    #[serde(flatten)]
    pub kind: StepKind,
    /// The step's label.
    pub label: String,
    /// Wall time spent in the step.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// The command's exit code.
    pub exit_code: i64,
    /// The step decided there was nothing to do (e.g. no build dependencies when nothing is compiled).
    pub skipped: bool,
    /// Why the step was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a build did: steps, packages, logs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BuildReport {
    /// The packages installed in the rootfs, with USE flags, repository and binary/source.
    pub packages: Vec<InstalledPackage>,
    /// Packages emerge built from source, in either emerge step (`category/package-version`).
    pub built_from_source: Vec<String>,
    /// Packages emerge installed from binary packages, in either emerge step.
    pub installed_from_binary: Vec<String>,
    /// Of those, the ones Staves merged into the rootfs directly, without Portage's per-package merge (binary
    /// packages that define no phase run at install time; see [`crate::PlanOptions::direct_merge`]).
    pub merged_directly: Vec<String>,
    /// Binary packages fetched from a `--binhost` into the build cache (`category/package-version`): downloads,
    /// whether or not they were then used (see [`installed_from_binhost`](Self::installed_from_binhost)).
    pub fetched_from_binhost: Vec<String>,
    /// The fetched packages emerge then installed from a binary package and never built from source in this
    /// build. A fetched binary package that the environment check masked (built with other flags than the spec
    /// gives its package now), or that Portage would not take (other USE flags), is built from source instead and
    /// is not listed; nor is one this build did not need. Matched by version: a build cache that already held a
    /// usable binary package of the same version may have supplied it instead of the download.
    pub installed_from_binhost: Vec<String>,
    /// What became of the fetched binary packages, in numbers; `None` when nothing was fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binhost_use: Option<BinhostUse>,
    /// Every step, with its duration.
    pub steps: Vec<StepReport>,
    /// Time spent exporting the rootfs into the sink (the image writer).
    #[serde(serialize_with = "seconds")]
    pub export_duration: Duration,
    /// Total wall time, including container setup and cleanup.
    #[serde(serialize_with = "seconds")]
    pub total_duration: Duration,
    /// The build's id: the value of [`BUILD_LABEL`] on everything it created (empty for the mock).
    pub build_id: String,
    /// What the build removed of earlier builds whose process is gone, before it started.
    pub reaped: Reaped,
    /// The ID (`sha256:…`) of the builder image, when the backend uses one.
    pub builder_image_id: Option<String>,
    /// The ID of the portage snapshot image, when the backend uses one.
    pub portage_image_id: Option<String>,
    /// Files Staves added to the rootfs outside any package (locale archive, libgcc, libstdc++).
    pub added_files: Vec<crate::portage::AddedFile>,
    /// The snapshot's `metadata/timestamp.chk`, when the backend read it.
    pub portage_timestamp: Option<String>,
    /// The snapshot's GLSAs (`metadata/glsa`), when the backend read them.
    #[serde(skip)]
    pub snapshot_advisories: crate::advisory::AdvisoryDb,
    /// Why the snapshot's GLSAs could not be read, when they could not: the build then checked no advisory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advisories_unreadable: Option<String>,
    /// The last [`BuildReport::LOG_LIMIT`] lines the steps printed, in order. The whole log streams to the
    /// event handler ([`BuildEvent::Log`]).
    #[serde(skip_serializing)]
    pub log: Vec<String>,
}

impl BuildReport {
    /// How many of the last log lines [`BuildReport::log`] keeps.
    pub const LOG_LIMIT: usize = 2000;

    /// Time spent inside `emerge` and `emaint` (the build-dependency, rootfs and sync steps).
    pub fn emerge_duration(&self) -> Duration {
        self.steps
            .iter()
            .filter(|s| {
                matches!(
                    s.kind,
                    StepKind::CheckBinaries
                        | StepKind::FetchBinaries
                        | StepKind::BuildDeps
                        | StepKind::DirectMerge
                        | StepKind::Rootfs
                        | StepKind::Sync { .. }
                )
            })
            .map(|s| s.duration)
            .sum()
    }

    /// Total wall time minus the time inside emerge: what Staves itself costs.
    pub fn overhead(&self) -> Duration {
        self.total_duration.saturating_sub(self.emerge_duration())
    }

    /// Record emerge's progress line: which package it merged, and whether from a binary package.
    pub(crate) fn record_emerge(&mut self, cpv: &str, binary: bool) {
        let list = if binary {
            &mut self.installed_from_binary
        } else {
            &mut self.built_from_source
        };
        if !list.iter().any(|c| c == cpv) {
            list.push(cpv.to_owned());
        }
    }

    /// Which of the fetched binary packages were installed: [`BuildReport::installed_from_binhost`] from
    /// [`BuildReport::fetched_from_binhost`] and what emerge said.
    /// Also sets [`BuildReport::binhost_use`].
    pub(crate) fn resolve_binhost_use(&mut self) {
        self.installed_from_binhost = self
            .fetched_from_binhost
            .iter()
            .filter(|cpv| {
                self.installed_from_binary.contains(cpv) && !self.built_from_source.contains(cpv)
            })
            .cloned()
            .collect();
        self.binhost_use = BinhostUse::of(self);
    }

    /// Fill in `binary` for each rootfs package from what emerge said.
    pub(crate) fn resolve_binary_flags(&mut self) {
        for package in &mut self.packages {
            if self.built_from_source.iter().any(|c| c == &package.cpv) {
                package.binary = Some(false);
            } else if self.installed_from_binary.iter().any(|c| c == &package.cpv) {
                package.binary = Some(true);
            }
        }
    }
}

/// What became of the binary packages a build fetched from a `--binhost`: [`BuildReport::binhost_use`]. Its
/// `Display` is the one-line summary the CLI prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BinhostUse {
    /// Binary packages downloaded ([`BuildReport::fetched_from_binhost`]).
    pub fetched: usize,
    /// Of those, installed from the binary package ([`BuildReport::installed_from_binhost`]).
    pub installed: usize,
    /// Of those, built from source instead: the environment check masked the binary package (other flags than
    /// the spec gives its package now), or Portage would not take it (other USE flags).
    pub built_from_source: usize,
    /// Of those, not needed by this build.
    pub not_needed: usize,
}

impl BinhostUse {
    /// The numbers for `report`, from its package lists; `None` when it fetched nothing.
    fn of(report: &BuildReport) -> Option<Self> {
        let fetched = &report.fetched_from_binhost;
        if fetched.is_empty() {
            return None;
        }
        let installed = report.installed_from_binhost.len();
        let built_from_source = fetched
            .iter()
            .filter(|cpv| {
                report.built_from_source.contains(cpv)
                    && !report.installed_from_binhost.contains(cpv)
            })
            .count();
        Some(Self {
            fetched: fetched.len(),
            installed,
            built_from_source,
            not_needed: fetched.len().saturating_sub(installed + built_from_source),
        })
    }
}

impl std::fmt::Display for BinhostUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fetched {} binary packages from the binhost; installed {} of them",
            self.fetched, self.installed
        )?;
        if self.built_from_source > 0 {
            write!(
                f,
                "; {} built from source instead (Portage or the environment check did not take the fetched \
                 binary package)",
                self.built_from_source
            )?;
        }
        if self.not_needed > 0 {
            write!(f, "; {} not needed by this build", self.not_needed)?;
        }
        Ok(())
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Errors while running a build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A step exited non-zero.
    #[error("step {index} of {total} failed: {label} (exit code {exit_code})\n{}", tail_text(.tail))]
    StepFailed {
        /// 1-based step number.
        index: usize,
        /// Number of steps.
        total: usize,
        /// The step's label.
        label: String,
        /// The exit code.
        exit_code: i64,
        /// The last lines of the step's output.
        tail: Vec<String>,
    },
    /// The build was cancelled (a signal, a [`CancelToken`]); everything it created was removed.
    #[error(
        "the build was interrupted; its containers and volumes were removed and no image was written"
    )]
    Interrupted,
    /// Removing the build's containers or volumes failed: they are left behind.
    #[error(
        "{}removing the build's containers and volumes failed: {reason}\n  \
         help: `staves prune` removes them (they carry the label {label}={build_id})",
        cause.as_ref().map(|c| format!("{c}\nthen ")).unwrap_or_default(),
        label = BUILD_LABEL
    )]
    LeftBehind {
        /// The build's id.
        build_id: String,
        /// Why the removal failed.
        reason: String,
        /// What ended the build before the cleanup, if it failed.
        cause: Option<Box<crate::Error>>,
    },
    /// The builder image lacks a command every Gentoo stage3 has.
    #[error(
        "{image} is not a Gentoo stage3 (no {missing} found); pass --builder with a stage3 image"
    )]
    NotAStage3 {
        /// The builder image.
        image: String,
        /// The command that is missing (`emerge`, `portageq`, `sleep`, `sh`).
        missing: String,
    },
    /// A step run in the background could not be awaited.
    #[error("step {index} ({label}) ran in the background and did not finish: {reason}")]
    BackgroundStep {
        /// 1-based step number.
        index: usize,
        /// The step's label.
        label: String,
        /// What happened to it.
        reason: String,
    },
    /// The builder finished but never handed a rootfs to the sink.
    #[error("the builder finished without producing a rootfs")]
    NoRootfs,
    /// The thread writing the image stopped without a result (it panicked).
    #[error("the image writer stopped unexpectedly: {reason}")]
    WriterStopped {
        /// What happened.
        reason: String,
    },
    /// A local file (e.g. `~/.ssh`) could not be used.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The mock backend was told to fail.
    #[error("mock build failed at {label}")]
    MockFailure {
        /// The step's label.
        label: String,
    },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return "  (the step printed nothing)".to_owned();
    }
    let mut s = format!("last {} line(s) of its output:\n", tail.len());
    for line in tail {
        s.push_str("  | ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// Where the build's home-directory credentials come from.
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpvs(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn only_fetched_packages_installed_from_a_binary_and_never_built_count_as_installed_from_the_binhost()
     {
        let mut report = BuildReport {
            fetched_from_binhost: cpvs(&["a/masked-1", "a/used-1", "a/unneeded-1", "a/dep-1"]),
            // a/masked-1 was masked and built from source; a/dep-1 too, in the build-dependency step, and the
            // rootfs step then took the binary package that build made.
            built_from_source: cpvs(&["a/masked-1", "a/dep-1", "a/local-1"]),
            installed_from_binary: cpvs(&["a/used-1", "a/dep-1", "a/cached-1"]),
            ..BuildReport::default()
        };
        report.resolve_binhost_use();
        assert_eq!(report.installed_from_binhost, ["a/used-1"]);
        // Downloads stay downloads.
        assert_eq!(report.fetched_from_binhost.len(), 4);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json["installed_from_binhost"],
            serde_json::json!(["a/used-1"])
        );
        assert_eq!(json["fetched_from_binhost"].as_array().unwrap().len(), 4);
        assert_eq!(
            json["binhost_use"],
            serde_json::json!({"fetched": 4, "installed": 1, "built_from_source": 2, "not_needed": 1})
        );
    }

    #[test]
    fn the_binhost_summary_tells_downloads_from_installs() {
        let mut report = BuildReport::default();
        report.resolve_binhost_use();
        assert_eq!(report.binhost_use, None);
        assert!(
            serde_json::to_value(&report)
                .unwrap()
                .get("binhost_use")
                .is_none()
        );
        report.fetched_from_binhost = cpvs(&["a/b-1", "a/c-1"]);
        report.installed_from_binary = cpvs(&["a/b-1", "a/c-1"]);
        report.resolve_binhost_use();
        assert_eq!(
            report.binhost_use.unwrap().to_string(),
            "fetched 2 binary packages from the binhost; installed 2 of them"
        );
        report.fetched_from_binhost = cpvs(&["a/b-1", "a/c-1", "a/d-1", "a/e-1"]);
        report.installed_from_binary = cpvs(&["a/b-1"]);
        report.built_from_source = cpvs(&["a/c-1", "a/d-1", "x/y-1"]);
        report.resolve_binhost_use();
        assert_eq!(
            report.binhost_use.unwrap().to_string(),
            "fetched 4 binary packages from the binhost; installed 1 of them; 2 built from source instead (Portage \
             or the environment check did not take the fetched binary package); 1 not needed by this build"
        );
    }
}
