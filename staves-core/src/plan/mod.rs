//! The ordered steps a builder runs to turn a spec into a rootfs, as data.
//!
//! A [`BuildPlan`] is what every backend executes: the Docker backend uploads [`BuildPlan::files`] into
//! [`STAGING_DIR`] and runs each [`Step`] with exec; [`BuildPlan::render_script`] turns the same plan into one POSIX
//! `sh` script that a user can run by hand in any Gentoo container.

mod render;
pub use render::command_line;
mod scripts;

use crate::portage::{BuildEnv, PlanOptions, PortageFile};
use crate::spec::{Diagnostic, ImageSpec, Severity};
use serde::Serialize;
use std::collections::BTreeMap;

/// Where the rootfs is assembled inside the builder.
pub const ROOTFS_DIR: &str = "/tmp/rootfs";

/// Where the backend uploads [`BuildPlan::files`] before the [`StepKind::WriteFiles`] step installs them.
pub const STAGING_DIR: &str = "/var/tmp/staves/files";

/// The package every rootfs gets, as in the original Staves.
pub const LIBC_ATOM: &str = "virtual/libc";

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
    /// Build-time dependencies into the builder.
    BuildDeps,
    /// Runtime dependencies into the rootfs.
    Rootfs,
    /// Detect the libc and, for glibc, generate the locale into the rootfs.
    Locale,
    /// Copy `libgcc_s.so.1` (and `libstdc++.so.6`) into the rootfs.
    Libraries,
    /// Print the rootfs package database (see [`crate::parse_package_list`]).
    PackageList,
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
}

impl Step {
    /// The script when this step is `/bin/sh -c SCRIPT`.
    pub fn shell_script(&self) -> Option<&str> {
        match self.argv.as_slice() {
            [sh, c, script] if sh == "/bin/sh" && c == "-c" => Some(script),
            _ => None,
        }
    }
}

/// Errors turning a spec into a plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The spec has validation errors.
    #[error("the spec is invalid ({} error(s)); run `staves validate` for details", .diagnostics.len())]
    InvalidSpec {
        /// The error diagnostics.
        diagnostics: Vec<Diagnostic>,
    },
    /// The spec lists no packages.
    #[error("the spec lists no packages: add at least one atom to `packages`")]
    NoPackages,
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
}

impl BuildPlan {
    /// Validate `spec`, render its Portage configuration and lay out the steps.
    pub fn new(spec: &ImageSpec, options: &PlanOptions) -> Result<Self, PlanError> {
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
        let env = BuildEnv::render(spec, options);
        let mut rootfs_atoms = spec.packages.clone();
        if !rootfs_atoms.iter().any(|a| a == LIBC_ATOM) {
            rootfs_atoms.push(LIBC_ATOM.to_owned());
        }
        let jobs = options.jobs.to_string();
        let parallel = ["--jobs", jobs.as_str(), "--load-average", jobs.as_str()];
        let emerge_env = BTreeMap::from([("NOCOLOR".to_owned(), "true".to_owned())]);

        let mut steps = vec![Step {
            kind: StepKind::WriteFiles,
            label: "Write the Portage configuration".to_owned(),
            argv: sh(scripts::install_files(env.files())),
            env: BTreeMap::new(),
        }];
        for repo in &spec.repositories {
            steps.push(Step {
                kind: StepKind::Sync {
                    repository: repo.name.clone(),
                },
                label: format!("Sync repository {}", repo.name),
                argv: strings(&["emaint", "sync", "--repo", &repo.name]),
                env: emerge_env.clone(),
            });
        }
        let mut build_deps = strings(&[
            "emerge",
            "--verbose",
            "--onlydeps",
            "--usepkg",
            "--with-bdeps=y",
            "--emptytree",
        ]);
        build_deps.extend(strings(&parallel));
        build_deps.extend(spec.packages.iter().cloned());
        steps.push(Step {
            kind: StepKind::BuildDeps,
            label: "Install build dependencies into the builder".to_owned(),
            argv: build_deps,
            env: emerge_env.clone(),
        });
        let mut rootfs = strings(&[
            "emerge",
            "--verbose",
            &format!("--root={ROOTFS_DIR}"),
            "--root-deps=rdeps",
            "--oneshot",
            "--usepkg",
        ]);
        rootfs.extend(strings(&parallel));
        rootfs.extend(rootfs_atoms.iter().cloned());
        steps.push(Step {
            kind: StepKind::Rootfs,
            label: "Install runtime dependencies into the rootfs".to_owned(),
            argv: rootfs,
            env: emerge_env,
        });
        steps.push(Step {
            kind: StepKind::Locale,
            label: format!(
                "Generate locale {} {}",
                spec.locale.name, spec.locale.charset
            ),
            argv: sh(scripts::locale(&spec.locale)),
            env: BTreeMap::new(),
        });
        let mut libraries = vec!["libgcc_s.so.1"];
        if spec.stdlib {
            libraries.push("libstdc++.so.6");
        }
        steps.push(Step {
            kind: StepKind::Libraries,
            label: format!("Copy {} into the rootfs", libraries.join(" and ")),
            argv: sh(scripts::libraries(&libraries)),
            env: BTreeMap::new(),
        });
        steps.push(Step {
            kind: StepKind::PackageList,
            label: "List the packages in the rootfs".to_owned(),
            argv: sh(scripts::package_list()),
            env: BTreeMap::new(),
        });
        steps.push(Step {
            kind: StepKind::Cleanup,
            label: "Remove the package database and caches from the rootfs".to_owned(),
            argv: strings(&[
                "rm",
                "-rf",
                &format!("{ROOTFS_DIR}/var/db/pkg"),
                &format!("{ROOTFS_DIR}/var/cache"),
            ]),
            env: BTreeMap::new(),
        });
        Ok(Self {
            files: env.files().to_vec(),
            steps,
            rootfs_atoms,
        })
    }

    /// The Portage files as a map from absolute path to content.
    pub fn files_by_path(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .map(|f| (format!("/{}", f.path), f.content.clone()))
            .collect()
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn sh(script: String) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script]
}
