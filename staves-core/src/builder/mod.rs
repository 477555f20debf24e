//! Execution backends: run a [`BuildPlan`] somewhere and hand over the resulting rootfs.
//!
//! [`DockerBuilder`] runs the plan in a Gentoo builder container through the Docker API; [`MockBuilder`] records
//! what it was asked to do and yields a rootfs from a directory, for tests that need no engine.

mod docker;
mod events;
mod mock;

pub use docker::{BUILD_LABEL, DEFAULT_BUILDER_IMAGE, DEFAULT_PORTAGE_IMAGE, DockerBuilder};
pub use events::{BuildEvent, CancelToken, EventHandler, LogStream};
pub use mock::{MockBuilder, MockCall, MockEntry};

use crate::plan::{BuildPlan, StepKind};
use crate::portage::InstalledPackage;
use serde::Serialize;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// The default name of the volume that keeps binary packages between builds.
pub const DEFAULT_BUILD_CACHE: &str = "staves-binpkgs";

/// How a build runs, independent of the backend's own settings.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Receives progress events and log lines as they happen.
    pub events: Option<EventHandler>,
    /// Cancels the build when triggered (Ctrl-C); containers are still removed.
    pub cancel: CancelToken,
}

impl BuildOptions {
    /// Options that deliver events to `handler`.
    pub fn with_events(mut self, handler: EventHandler) -> Self {
        self.events = Some(handler);
        self
    }

    /// Options that stop the build when `cancel` is triggered.
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    pub(crate) fn emit(&self, event: BuildEvent) {
        if let Some(handler) = &self.events {
            handler(&event);
        }
    }
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("events", &self.events.as_ref().map(|_| "<handler>"))
            .field("cancel", &self.cancel)
            .finish()
    }
}

/// Consumes the rootfs tar stream while the build environment still exists.
///
/// The stream is untrusted: it comes out of a container. The image writer is the usual sink.
pub trait RootfsSink {
    /// Read the whole rootfs tar from `rootfs`.
    fn consume(&mut self, rootfs: &mut dyn Read) -> crate::Result<()>;
}

impl<F> RootfsSink for F
where
    F: FnMut(&mut dyn Read) -> crate::Result<()>,
{
    fn consume(&mut self, rootfs: &mut dyn Read) -> crate::Result<()> {
        self(rootfs)
    }
}

/// An execution backend.
pub trait Builder {
    /// Run `plan`, then pass the rootfs tar stream to `sink` and return what happened.
    ///
    /// The sink is only called when every step succeeded, so a failed build never produces an image.
    fn build(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        sink: &mut dyn RootfsSink,
    ) -> crate::Result<BuildReport>;
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
    /// Binary packages fetched from a `--binhost` into the build cache (`category/package-version`).
    pub fetched_from_binhost: Vec<String>,
    /// Every step, with its duration.
    pub steps: Vec<StepReport>,
    /// Time spent exporting the rootfs into the sink (the image writer).
    #[serde(serialize_with = "seconds")]
    pub export_duration: Duration,
    /// Total wall time, including container setup and cleanup.
    #[serde(serialize_with = "seconds")]
    pub total_duration: Duration,
    /// Every line the steps printed, in order.
    #[serde(skip_serializing)]
    pub log: Vec<String>,
}

impl BuildReport {
    /// Time spent inside `emerge` and `emaint` (the build-dependency, rootfs and sync steps).
    pub fn emerge_duration(&self) -> Duration {
        self.steps
            .iter()
            .filter(|s| {
                matches!(
                    s.kind,
                    StepKind::FetchBinaries
                        | StepKind::BuildDeps
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

    /// Fill in `binary` for each rootfs package from what emerge said.
    pub(crate) fn resolve_binary_flags(&mut self) {
        self.fetched_from_binhost =
            crate::binhost::parse_fetched_binaries(self.log.iter().map(String::as_str));
        for package in &mut self.packages {
            if self.built_from_source.iter().any(|c| c == &package.cpv) {
                package.binary = Some(false);
            } else if self.installed_from_binary.iter().any(|c| c == &package.cpv) {
                package.binary = Some(true);
            }
        }
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
    /// The build was cancelled (Ctrl-C).
    #[error("the build was interrupted; its containers were removed and no image was written")]
    Interrupted,
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
    /// The builder produced a rootfs the sink could not read.
    #[error("reading the rootfs out of the builder failed: {0}")]
    Export(String),
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
