//! What a lock adds to a [`BuildPlan`](crate::BuildPlan): the pins file, repository syncs held at the locked
//! commit, and the resolve step.

use super::{Step, StepKind};
use crate::lock::{PINS_FILE, Pins, resolve_script};
use crate::portage::{PortageFile, WriteMode, repository_location, shell_quote};
use crate::spec::{ImageSpec, Repository};
use std::collections::BTreeMap;

/// How a plan honours a lock (see [`crate::BuildPlan::locked`] and [`crate::BuildPlan::resolve`]).
#[derive(Debug, Clone)]
pub(crate) struct LockPlan {
    /// The pins to hold.
    pub(crate) pins: Pins,
    /// Do not sync repositories: use them as the builder has them.
    pub(crate) frozen: bool,
    /// Stop after the resolve step (`staves lock`).
    pub(crate) resolve_only: bool,
}

impl LockPlan {
    /// The pins as a `package.mask` file, when anything is pinned.
    pub(crate) fn files(&self) -> Vec<PortageFile> {
        if self.pins.packages.is_empty() {
            return Vec::new();
        }
        vec![PortageFile {
            path: PINS_FILE.to_owned(),
            content: self.pins.render_package_mask(),
            mode: WriteMode::Replace,
        }]
    }

    fn locked_commit(&self, name: &str) -> Option<&str> {
        self.pins
            .repositories
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.commit.as_deref())
    }

    /// The step that makes repository `repo` available: `emaint sync`, then a checkout of the locked commit when
    /// there is one; with `frozen`, only a check that the builder already has it (at the locked commit).
    pub(crate) fn sync_step(&self, repo: &Repository, env: BTreeMap<String, String>) -> Step {
        let name = &repo.name;
        let location = shell_quote(&repository_location(name));
        let quoted = shell_quote(name);
        let commit = self.locked_commit(name);
        let check_commit = |want: &str, what: &str| {
            format!(
                r#"have=$(git -C {location} rev-parse HEAD 2>/dev/null || true)
if [ "$have" != {want} ]; then
  echo "staves: repository "{quoted}" is at commit ${{have:-(none)}}, but staves.lock locks "{want}"; {what}" >&2
  exit 1
fi
"#,
                want = shell_quote(want),
            )
        };
        let (label, argv) = match (self.frozen, commit) {
            (true, _) => {
                let mut script = format!(
                    r#"set -eu
if [ ! -d {location} ]; then
  echo "staves: --frozen: repository "{quoted}" is not in the builder at "{location}" and --frozen does not sync it; build with --locked instead of --frozen" >&2
  exit 1
fi
"#
                );
                if let Some(want) = commit {
                    script.push_str(&check_commit(
                        want,
                        "--frozen does not sync it: build with --locked instead of --frozen",
                    ));
                }
                (
                    format!("Use repository {name} as the builder has it (--frozen: no sync)"),
                    sh(script),
                )
            }
            (false, Some(want)) => {
                let short = &want[..want.len().min(12)];
                let script = format!(
                    r#"set -eu
emaint sync --repo {quoted}
have=$(git -C {location} rev-parse HEAD 2>/dev/null || true)
if [ "$have" != {want} ]; then
  git -C {location} fetch --quiet --depth 1 origin {want} 2>/dev/null || git -C {location} fetch --quiet --unshallow origin 2>/dev/null || true
  git -C {location} -c advice.detachedHead=false checkout --quiet --detach {want} 2>/dev/null || true
fi
{check}echo "staves: repository "{quoted}" is at the locked commit "{want}
"#,
                    want = shell_quote(want),
                    check = check_commit(
                        want,
                        "that commit cannot be fetched from its sync-uri any more: run 'staves lock' to lock the current one"
                    ),
                );
                (
                    format!("Sync repository {name} and check out the locked commit {short}"),
                    sh(script),
                )
            }
            (false, None) => (
                format!("Sync repository {name}"),
                ["emaint", "sync", "--repo", name]
                    .iter()
                    .map(|w| (*w).to_owned())
                    .collect(),
            ),
        };
        Step {
            kind: StepKind::Sync {
                repository: name.clone(),
            },
            label,
            argv,
            env,
            background: false,
            wait_background: false,
            skip_if: None,
        }
    }

    /// The resolve step (see [`StepKind::Resolve`]).
    pub(crate) fn resolve_step(
        &self,
        spec: &ImageSpec,
        rootfs_atoms: &[String],
        env: BTreeMap<String, String>,
    ) -> Step {
        let repositories: Vec<String> = spec.repositories.iter().map(|r| r.name.clone()).collect();
        let label = if self.resolve_only {
            "Resolve the packages with Portage (emerge --pretend)"
        } else {
            "Resolve the packages with Portage and check them against staves.lock"
        };
        Step {
            kind: StepKind::Resolve,
            label: label.to_owned(),
            argv: sh(resolve_script(&spec.packages, rootfs_atoms, &repositories)),
            env,
            background: false,
            wait_background: false,
            skip_if: None,
        }
    }
}

fn sh(script: String) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), script]
}
