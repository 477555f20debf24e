//! The ordered steps a builder runs to turn a spec into a rootfs, as data.
//!
//! A [`BuildPlan`] is what every backend executes: the Docker backend uploads [`BuildPlan::files`] into
//! [`STAGING_DIR`] and runs each [`Step`] with exec; [`BuildPlan::render_script`] turns the same plan into one POSIX
//! `sh` script that a user can run by hand in any Gentoo container.

mod binhost;
mod lock;
mod options;
mod render;
mod scripts;

pub(crate) use options::format_load;
pub use options::{PlanOptions, check_load_average};
pub use render::command_line;

use crate::portage::{BuildEnv, PortageFile};
use crate::spec::{Diagnostic, ImageSpec, Severity};
use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::portage::ROOTFS_DIR;

/// Where the backend uploads [`BuildPlan::files`] before the [`StepKind::WriteFiles`] step installs them.
pub const STAGING_DIR: &str = "/var/tmp/staves/files";

pub use crate::portage::LIBC_ATOM;

/// What a step does; backends use it to treat some steps' output specially.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
#[non_exhaustive]
pub enum StepKind {
    /// Install the staged Portage configuration files into `/etc/portage`.
    WriteFiles,
    /// `emaint sync` one custom repository.
    Sync {
        /// The repository name.
        repository: String,
    },
    /// Mask the binary packages built with another environment than the spec gives them, and ask Portage whether
    /// the rootfs comes from binary packages only (see [`crate::cache`]).
    CheckBinaries,
    /// Fetch binary packages from the `--binhost` URLs into the build cache (`emerge --fetchonly --getbinpkg`).
    FetchBinaries,
    /// Build-time dependencies into the builder; skipped when the rootfs comes from binary packages only.
    BuildDeps,
    /// Merge the binary packages of the rootfs that need no ebuild phase directly, without Portage's per-package
    /// merge (see [`PlanOptions::direct_merge`]); skipped when some package is built from source.
    DirectMerge,
    /// Runtime dependencies into the rootfs.
    Rootfs,
    /// Detect the libc and, for glibc, generate the locale in the builder. It only touches the builder's own
    /// locale files, so it runs in the background while the rootfs step runs.
    LocaleGenerate,
    /// Copy the generated locale archive into the rootfs (glibc only).
    LocaleInstall,
    /// Check that every package merged from a binary package still has the spec's build environment, and record
    /// which binary packages the build used. Runs in the background.
    VerifyBinaries,
    /// Copy `libgcc_s.so.1` (and `libstdc++.so.6`) into the rootfs.
    Libraries,
    /// Print the rootfs package database, one line per package (read back into
    /// [`BuildReport::packages`](crate::BuildReport::packages)).
    PackageList,
    /// Resolve the spec with `emerge --pretend` (build dependencies and rootfs) without building anything, and
    /// check that the snapshot still has every pinned version (see [`crate::lock`]). Its output is captured and
    /// read back with [`crate::lock::parse_resolution`].
    Resolve,
    /// Remove `/var/db/pkg` and `/var/cache` from the rootfs.
    Cleanup,
}

/// One command of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What the step does.
    #[serde(flatten)]
    pub kind: StepKind,
    /// A short human label, e.g. `Install runtime dependencies into the rootfs`.
    pub label: String,
    /// Program and arguments, executed without a shell (shell steps are `/bin/sh -c SCRIPT`).
    pub argv: Vec<String>,
    /// Extra environment variables for the command.
    pub env: BTreeMap<String, String>,
    /// Start this step and go on with the next ones without waiting for it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
    /// Wait for every background step started before this one (and fail if one failed) before running it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub wait_background: bool,
    /// Do nothing when this file exists in the builder when the step starts (an earlier step decides).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_if: Option<StepSkip>,
}

/// When a step is skipped: an earlier step of the same build created `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepSkip {
    /// The file whose existence skips the step.
    pub path: String,
    /// Why, as the report gives it.
    pub reason: String,
}

impl StepKind {
    /// True for steps whose standard output a backend captures and hands back (the package list, the
    /// resolution).
    pub fn captures_output(&self) -> bool {
        matches!(self, StepKind::PackageList | StepKind::Resolve)
    }
}

impl Step {
    /// The command a backend executes: [`Step::argv`], wrapped in a `/bin/sh -c` test when the step can be
    /// skipped. A skipped step prints [`crate::cache::SKIPPED_MARKER`] and its reason, and exits 0.
    pub fn exec_argv(&self) -> Vec<String> {
        let Some(skip) = &self.skip_if else {
            return self.argv.clone();
        };
        let mut argv = sh(format!(
            "if [ -e {path} ]; then echo {message}; exit 0; fi\nexec \"$@\"",
            path = crate::portage::shell_quote(&skip.path),
            message = crate::portage::shell_quote(&format!(
                "{}{}",
                crate::cache::SKIPPED_MARKER,
                skip.reason
            )),
        ));
        argv.push("sh".to_owned());
        argv.extend(self.argv.iter().cloned());
        argv
    }

    /// The script when this step is `/bin/sh -c SCRIPT`.
    pub fn shell_script(&self) -> Option<&str> {
        match self.argv.as_slice() {
            [sh, c, script] if sh == "/bin/sh" && c == "-c" => Some(script),
            _ => None,
        }
    }
}

/// The script that installs `files` into `/etc/portage` (the write-files step).
pub(crate) fn install_files_script(files: &[PortageFile]) -> String {
    scripts::install_files(files)
}

/// Errors turning a spec into a plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The spec has validation errors; the message lists each with its position.
    #[error("{}", crate::spec::summary(
        "invalid",
        diagnostics.first().and_then(|d| d.path.as_deref()),
        diagnostics
    ))]
    InvalidSpec {
        /// The error diagnostics.
        diagnostics: Vec<Diagnostic>,
    },
    /// The spec lists no packages.
    #[error("the spec lists no packages: add at least one atom to `packages`")]
    NoPackages,
    /// The load-average limit is not a number above 0.
    #[error(
        "invalid load average {value}: give a number above 0, such as 2 or 3.5, or leave it unset for no limit"
    )]
    InvalidLoadAverage {
        /// The value given.
        value: f64,
    },
    /// A timeout is shorter than a second.
    #[error("invalid {name}: {millis} ms is too short; give at least 1 second")]
    InvalidTimeout {
        /// Which timeout.
        name: String,
        /// The value given, in milliseconds.
        millis: u128,
    },
}

/// Everything a builder needs to produce a rootfs: the Portage files and the ordered steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    /// Portage configuration files, paths relative to `/`.
    pub files: Vec<PortageFile>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The atoms installed into the rootfs (the spec's packages plus `virtual/libc`).
    pub rootfs_atoms: Vec<String>,
    /// The binary package hosts the build fetches from, first one preferred: a build's own URLs
    /// ([`BuildPlan::with_binhosts`]), then the spec's `[build] binhost`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub binhosts: Vec<String>,
    /// The timeouts of the binhost downloads (from [`PlanOptions`]), for when the binhosts change.
    #[serde(skip)]
    pub(crate) fetch_timeouts: FetchTimeouts,
}

/// How long a binhost download may stall, and take in all (see [`crate::binhost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FetchTimeouts {
    /// No byte for this long fails the download.
    pub idle: std::time::Duration,
    /// The most one download may take.
    pub total: std::time::Duration,
}

impl FetchTimeouts {
    fn of(options: &PlanOptions) -> Self {
        Self {
            idle: options.binhost_idle_timeout,
            total: options.binhost_timeout,
        }
    }
}

impl BuildPlan {
    /// Validate `spec`, render its Portage configuration and lay out the steps.
    pub fn new(spec: &ImageSpec, options: &PlanOptions) -> Result<Self, PlanError> {
        Self::assemble(spec, options, None)
    }

    /// Like [`BuildPlan::new`], holding every version that `pins` lists: the pins are written as a `package.mask`
    /// file, locked repository commits are checked out after the sync (with `frozen`, repositories are not synced
    /// but must already be in the builder at the locked commit), and a [`StepKind::Resolve`] step before the build
    /// dependencies resolves everything once more, so the build can be checked against the lock before anything
    /// is built.
    pub fn locked(
        spec: &ImageSpec,
        options: &PlanOptions,
        pins: &crate::lock::Pins,
        frozen: bool,
    ) -> Result<Self, PlanError> {
        let lock = lock::LockPlan {
            pins: pins.clone(),
            frozen,
            resolve_only: false,
        };
        Self::assemble(spec, options, Some(&lock))
    }

    /// The plan of `staves lock`: write the configuration, sync the repositories, and resolve the spec with
    /// `emerge --pretend` ([`StepKind::Resolve`]). Nothing is built and there is no rootfs to export.
    pub fn resolve(spec: &ImageSpec, options: &PlanOptions) -> Result<Self, PlanError> {
        let lock = lock::LockPlan {
            pins: crate::lock::Pins::default(),
            frozen: false,
            resolve_only: true,
        };
        Self::assemble(spec, options, Some(&lock))
    }

    /// True when the plan fills the rootfs (it has a [`StepKind::Rootfs`] step); a backend exports the rootfs only
    /// then. A [`BuildPlan::resolve`] plan does not.
    pub fn produces_rootfs(&self) -> bool {
        self.steps.iter().any(|s| s.kind == StepKind::Rootfs)
    }

    fn assemble(
        spec: &ImageSpec,
        options: &PlanOptions,
        lock: Option<&lock::LockPlan>,
    ) -> Result<Self, PlanError> {
        let errors: Vec<Diagnostic> = spec
            .validate()
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        if !errors.is_empty() {
            return Err(PlanError::InvalidSpec {
                diagnostics: errors,
            });
        }
        if spec.packages.is_empty() {
            return Err(PlanError::NoPackages);
        }
        options.check()?;
        let env = BuildEnv::render(spec, options);
        let mut rootfs_atoms = spec.packages.clone();
        if !rootfs_atoms.iter().any(|a| a == LIBC_ATOM) {
            rootfs_atoms.push(LIBC_ATOM.to_owned());
        }
        let mut parallel = vec!["--jobs".to_owned(), options.jobs.to_string()];
        if let Some(load) = options.load_average {
            parallel.extend(["--load-average".to_owned(), format_load(load)]);
        }
        let emerge_env = BTreeMap::from([("NOCOLOR".to_owned(), "true".to_owned())]);
        let mut files = env.files().to_vec();
        files.extend(crate::cache::plan_files());
        if let Some(lock) = lock {
            files.extend(lock.files());
        }

        let mut steps = vec![Step::new(
            StepKind::WriteFiles,
            "Write the Portage configuration",
            sh(scripts::install_files(&files)),
            BTreeMap::new(),
        )];
        for repo in &spec.repositories {
            if let Some(lock) = lock {
                steps.push(lock.sync_step(repo, emerge_env.clone()));
                continue;
            }
            steps.push(Step::new(
                StepKind::Sync {
                    repository: repo.name.clone(),
                },
                format!("Sync repository {}", repo.name),
                strings(&["emaint", "sync", "--repo", &repo.name]),
                emerge_env.clone(),
            ));
        }
        if let Some(lock) = lock {
            steps.push(lock.resolve_step(spec, &rootfs_atoms, emerge_env.clone()));
            if lock.resolve_only {
                // Nothing is built, so there is nothing to fetch: `[build] binhost` does not apply.
                return Ok(Self {
                    files,
                    steps,
                    rootfs_atoms,
                    binhosts: Vec::new(),
                    fetch_timeouts: FetchTimeouts::of(options),
                });
            }
        }
        let mut build_deps = strings(&[
            "emerge",
            "--verbose",
            "--onlydeps",
            "--usepkg",
            "--with-bdeps=y",
            "--emptytree",
        ]);
        build_deps.extend(parallel.iter().cloned());
        build_deps.extend(spec.packages.iter().cloned());
        steps.push(Step::new(
            StepKind::CheckBinaries,
            "Check the binary packages against the build environment",
            sh(crate::cache::check_script(spec, &rootfs_atoms)),
            emerge_env.clone(),
        ));
        steps.push(
            Step::new(
                StepKind::BuildDeps,
                "Install build dependencies into the builder",
                build_deps,
                emerge_env.clone(),
            )
            .skip_if(
                crate::cache::ROOTFS_FROM_BINARIES,
                crate::cache::BUILD_DEPS_SKIP_REASON,
            ),
        );
        // locale-gen only writes the builder's own locale files, so it overlaps the rootfs step; the archive is
        // copied into the rootfs once both are done.
        let locale = format!("{} {}", spec.locale.name, spec.locale.charset);
        let mut generate = Step::new(
            StepKind::LocaleGenerate,
            format!("Generate locale {locale}"),
            sh(scripts::locale_generate(&spec.locale)),
            BTreeMap::new(),
        );
        generate.background = true;
        steps.push(generate);
        let mut rootfs = strings(&[
            "emerge",
            "--verbose",
            &format!("--root={ROOTFS_DIR}"),
            "--root-deps=rdeps",
            "--oneshot",
            "--usepkg",
        ]);
        rootfs.extend(parallel);
        rootfs.extend(rootfs_atoms.iter().cloned());
        if options.direct_merge {
            steps.push(Step::new(
                StepKind::DirectMerge,
                "Merge binary packages that need no ebuild phase into the rootfs",
                sh(crate::cache::direct_merge_script()),
                emerge_env.clone(),
            ));
            rootfs = crate::cache::rootfs_argv(rootfs);
        }
        // Portage's default `merge-wait` holds every merge until no build is running, so that a build never sees a
        // half-merged package. Here the merges go to the rootfs while builds read the builder (SYSROOT is `/`), so
        // there is nothing to protect: without it, binary packages land in the rootfs while sources still build.
        // FEATURES from the environment stacks on make.conf's, so only this flag changes.
        let mut rootfs_env = emerge_env;
        rootfs_env.insert("FEATURES".to_owned(), "-merge-wait".to_owned());
        steps.push(Step::new(
            StepKind::Rootfs,
            "Install runtime dependencies into the rootfs",
            rootfs,
            rootfs_env,
        ));
        let mut install = Step::new(
            StepKind::LocaleInstall,
            format!("Copy locale {locale} into the rootfs"),
            sh(scripts::locale_install()),
            BTreeMap::new(),
        );
        install.wait_background = true;
        steps.push(install);
        let mut verify = Step::new(
            StepKind::VerifyBinaries,
            "Verify the binary packages this build used",
            sh(crate::cache::verify_script()),
            BTreeMap::new(),
        );
        verify.background = true;
        steps.push(verify);
        let mut libraries = vec!["libgcc_s.so.1"];
        if spec.stdlib {
            libraries.push("libstdc++.so.6");
        }
        steps.push(Step::new(
            StepKind::Libraries,
            format!("Copy {} into the rootfs", libraries.join(" and ")),
            sh(scripts::libraries(&libraries)),
            BTreeMap::new(),
        ));
        steps.push(Step::new(
            StepKind::PackageList,
            "List the packages in the rootfs",
            sh(crate::portage::package_list_script()),
            BTreeMap::new(),
        ));
        let mut cleanup = Step::new(
            StepKind::Cleanup,
            "Remove the package database and caches from the rootfs",
            strings(&[
                "rm",
                "-rf",
                &format!("{ROOTFS_DIR}/var/db/pkg"),
                &format!("{ROOTFS_DIR}/var/cache"),
            ]),
            BTreeMap::new(),
        );
        // The verification reads the rootfs package database.
        cleanup.wait_background = true;
        steps.push(cleanup);
        let mut plan = Self {
            files,
            steps,
            rootfs_atoms,
            binhosts: Vec::new(),
            fetch_timeouts: FetchTimeouts::of(options),
        };
        // The spec's URLs were checked with the spec.
        plan.set_binhosts(crate::binhost::merge_binhost_urls(&[], &spec.build.binhost));
        Ok(plan)
    }

    /// The Portage files as a map from absolute path to content.
    pub fn files_by_path(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .map(|f| (format!("/{}", f.path), f.content.clone()))
            .collect()
    }
}

impl Step {
    /// A foreground step.
    fn new(
        kind: StepKind,
        label: impl Into<String>,
        argv: Vec<String>,
        env: BTreeMap<String, String>,
    ) -> Self {
        Self {
            kind,
            label: label.into(),
            argv,
            env,
            background: false,
            wait_background: false,
            skip_if: None,
        }
    }

    /// The same step, skipped when `path` exists in the builder.
    fn skip_if(mut self, path: &str, reason: &str) -> Self {
        self.skip_if = Some(StepSkip {
            path: path.to_owned(),
            reason: reason.to_owned(),
        });
        self
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn sh(script: String) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script]
}
