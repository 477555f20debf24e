//! A recording test double: no engine, a rootfs from a directory or from generated entries.

use super::{
    BuildError, BuildEvent, BuildFuture, BuildOptions, BuildReport, Builder, LogStream, RootfsSink,
    StepReport,
};
use crate::plan::{BuildPlan, StepKind};
use crate::portage::InstalledPackage;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a [`MockBuilder`] was asked to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MockCall {
    /// `build` was called with this plan.
    Build {
        /// The plan it was given.
        plan: BuildPlan,
    },
    /// A step "ran" (1-based index and its argv).
    Step {
        /// 1-based step number.
        index: usize,
        /// The step's argv.
        argv: Vec<String>,
    },
    /// The rootfs was handed to the sink.
    Export,
}

/// One generated rootfs entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MockEntry {
    /// A directory.
    Dir {
        /// Path relative to the rootfs.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Path relative to the rootfs.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Content.
        content: Vec<u8>,
    },
    /// A symbolic link.
    Symlink {
        /// Path relative to the rootfs.
        path: String,
        /// Link target, stored as is.
        target: String,
    },
}

#[derive(Debug, Clone)]
enum Source {
    Dir(PathBuf),
    Entries(Vec<MockEntry>),
}

/// A backend for tests: records calls, emits the events a real build would, yields a prepared rootfs.
#[derive(Debug, Clone)]
pub struct MockBuilder {
    source: Source,
    packages: Vec<InstalledPackage>,
    fail_at: Option<StepKind>,
    outputs: Vec<(StepKind, String)>,
    calls: Arc<Mutex<Vec<MockCall>>>,
    key_context: Option<crate::store::KeyContext>,
}

impl MockBuilder {
    /// A mock whose rootfs is the content of directory `dir`.
    pub fn from_dir(dir: impl Into<PathBuf>) -> Self {
        Self::with_source(Source::Dir(dir.into()))
    }

    /// A mock whose rootfs is made of `entries`.
    pub fn from_entries(entries: Vec<MockEntry>) -> Self {
        Self::with_source(Source::Entries(entries))
    }

    fn with_source(source: Source) -> Self {
        Self {
            source,
            packages: Vec::new(),
            fail_at: None,
            outputs: Vec::new(),
            calls: Arc::new(Mutex::new(Vec::new())),
            key_context: None,
        }
    }

    /// Report these packages as installed.
    pub fn packages(mut self, packages: Vec<InstalledPackage>) -> Self {
        self.packages = packages;
        self
    }

    /// Report `context` as [`Builder::key_context`], so builds with a local image store can be tested without an
    /// engine.
    pub fn with_key_context(mut self, context: crate::store::KeyContext) -> Self {
        self.key_context = Some(context);
        self
    }

    /// Fail with a step error when the first step of this kind runs.
    pub fn fail_at(mut self, kind: StepKind) -> Self {
        self.fail_at = Some(kind);
        self
    }

    /// Print `output` as the standard output of every step of this `kind` (e.g. an `emerge --pretend`
    /// resolution for [`StepKind::Resolve`]).
    pub fn step_output(mut self, kind: StepKind, output: impl Into<String>) -> Self {
        self.outputs.push((kind, output.into()));
        self
    }

    /// Every call recorded so far, in order.
    pub fn calls(&self) -> Vec<MockCall> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, call: MockCall) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
    }

    fn rootfs_tar(&self) -> crate::Result<Vec<u8>> {
        let io = |context: &str| {
            let context = context.to_owned();
            move |source| BuildError::Io { context, source }
        };
        let mut tar = tar::Builder::new(Vec::new());
        tar.follow_symlinks(false);
        match &self.source {
            Source::Dir(dir) => {
                // Depth-first, each directory's children sorted by name: the canonical order a real engine's
                // archive download has, and the only order the image writer accepts from a stream.
                let context = format!("reading mock rootfs {}", dir.display());
                let walker = walkdir::WalkDir::new(dir)
                    .follow_links(false)
                    .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
                for item in walker {
                    let item = item.map_err(|e| BuildError::Io {
                        context: context.clone(),
                        source: e.into(),
                    })?;
                    let relative = item.path().strip_prefix(dir).unwrap_or(item.path());
                    let name = Path::new(".").join(relative);
                    tar.append_path_with_name(item.path(), &name)
                        .map_err(io(&context))?;
                }
            }
            Source::Entries(entries) => {
                for entry in entries {
                    let mut header = tar::Header::new_gnu();
                    header.set_mtime(0);
                    header.set_uid(0);
                    header.set_gid(0);
                    match entry {
                        MockEntry::Dir { path, mode } => {
                            header.set_entry_type(tar::EntryType::Directory);
                            header.set_mode(*mode);
                            header.set_size(0);
                            tar.append_data(&mut header, path, std::io::empty())
                                .map_err(io(path))?;
                        }
                        MockEntry::File {
                            path,
                            mode,
                            content,
                        } => {
                            header.set_entry_type(tar::EntryType::Regular);
                            header.set_mode(*mode);
                            header.set_size(content.len() as u64);
                            tar.append_data(&mut header, path, content.as_slice())
                                .map_err(io(path))?;
                        }
                        MockEntry::Symlink { path, target } => {
                            header.set_entry_type(tar::EntryType::Symlink);
                            header.set_mode(0o777);
                            header.set_size(0);
                            tar.append_link(&mut header, path, target)
                                .map_err(io(path))?;
                        }
                    }
                }
            }
        }
        tar.into_inner().map_err(|source| {
            BuildError::Io {
                context: "finishing the mock rootfs".into(),
                source,
            }
            .into()
        })
    }
}

impl Builder for MockBuilder {
    fn key_context(&self) -> super::KeyContextFuture<'_> {
        let context = self.key_context.clone();
        Box::pin(async move { Ok(context) })
    }

    fn build<'a>(
        &'a self,
        plan: &'a BuildPlan,
        options: &'a BuildOptions,
        sink: RootfsSink,
    ) -> BuildFuture<'a> {
        Box::pin(self.build_async(plan, options, sink))
    }
}

impl MockBuilder {
    async fn build_async(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        sink: RootfsSink,
    ) -> crate::Result<BuildReport> {
        let started = Instant::now();
        self.record(MockCall::Build { plan: plan.clone() });
        let mut report = BuildReport::default();
        let total = plan.steps.len();
        for (i, step) in plan.steps.iter().enumerate() {
            let index = i + 1;
            if options.cancel.is_cancelled() {
                return Err(BuildError::Interrupted.into());
            }
            options.emit(BuildEvent::StepStarted {
                index,
                total,
                label: step.label.clone(),
            });
            self.record(MockCall::Step {
                index,
                argv: step.argv.clone(),
            });
            let line = format!("mock: {}", step.label);
            if report.log.len() == BuildReport::LOG_LIMIT {
                report.log.remove(0);
            }
            report.log.push(line.clone());
            options.emit(BuildEvent::Log {
                step: index,
                stream: LogStream::Stdout,
                line,
            });
            if self.fail_at.as_ref() == Some(&step.kind) {
                return Err(BuildError::StepFailed {
                    index,
                    total,
                    label: step.label.clone(),
                    exit_code: 1,
                    tail: vec![format!("mock failure in {}", step.label)],
                }
                .into());
            }
            if step.kind.captures_output() {
                let output = self
                    .outputs
                    .iter()
                    .filter(|(kind, _)| kind == &step.kind)
                    .map(|(_, output)| output.as_str())
                    .collect::<String>();
                options.check_output(&step.kind, &output)?;
            }
            if step.kind == StepKind::Rootfs {
                let n = self.packages.len();
                for (k, package) in self.packages.iter().enumerate() {
                    let binary = package.binary.unwrap_or(false);
                    report.record_emerge(&package.cpv, binary);
                    options.emit(BuildEvent::Package {
                        step: index,
                        index: k + 1,
                        total: n,
                        cpv: package.cpv.clone(),
                        binary,
                    });
                }
            }
            report.steps.push(StepReport {
                kind: step.kind.clone(),
                label: step.label.clone(),
                duration: Duration::ZERO,
                exit_code: 0,
                skipped: false,
                reason: None,
            });
            options.emit(BuildEvent::StepFinished {
                index,
                seconds: 0.0,
            });
        }
        report.packages = self.packages.clone();
        if !plan.produces_rootfs() {
            report.total_duration = started.elapsed();
            return Ok(report);
        }
        let tar = self.rootfs_tar()?;
        options.emit(BuildEvent::Exporting);
        self.record(MockCall::Export);
        let export_started = Instant::now();
        sink.consume_blocking(std::io::Cursor::new(tar), report.clone())
            .await?;
        if options.cancel.is_cancelled() {
            return Err(BuildError::Interrupted.into());
        }
        report.export_duration = export_started.elapsed();
        report.total_duration = started.elapsed();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn directory_rootfs_is_streamed_depth_first_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["var/empty", "usr/bin", "etc", "a"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("usr/bin/hello"), b"hi").unwrap();
        std::fs::write(dir.path().join("usr/zz"), b"z").unwrap();
        std::os::unix::fs::symlink("usr/bin", dir.path().join("bin")).unwrap();
        let tar = MockBuilder::from_dir(dir.path()).rootfs_tar().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "./",
                "a",
                "bin",
                "etc",
                "usr",
                "usr/bin",
                "usr/bin/hello",
                "usr/zz",
                "var",
                "var/empty"
            ]
        );
    }
}
