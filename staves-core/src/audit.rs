//! `staves audit`: re-check the packages of an SBOM written earlier against the advisories of a (newer) Portage
//! snapshot. This is how old images learn about new GLSAs.

use crate::advisory::{AdvisoryDb, AdvisoryMatch, PackageRef};
use crate::sbom::{Sbom, UnreadableComponent};
use crate::snapshot::SnapshotInfo;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where the advisories come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AdvisorySource {
    /// A Portage snapshot image (`gentoo/portage`-like) on the engine.
    PortageImage {
        /// The image reference.
        image: String,
        /// The engine address (`DOCKER_HOST` or the local socket when `None`).
        docker_host: Option<String>,
    },
    /// A directory of `glsa-*.xml` files (e.g. a checkout's `metadata/glsa`).
    Directory(PathBuf),
}

/// What an audit found.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct AuditReport {
    /// The image the SBOM describes (`name:tag`).
    pub image: String,
    /// Its manifest digest, when the SBOM records it.
    pub manifest_digest: String,
    /// Where the advisories came from (an image reference or a directory).
    pub advisory_source: String,
    /// The snapshot's image ID and timestamp, when read from an image.
    pub snapshot: SnapshotInfo,
    /// How many advisories were checked.
    pub advisories_checked: usize,
    /// How many packages were checked.
    pub packages_checked: usize,
    /// The advisories that apply.
    pub advisories: Vec<AdvisoryMatch>,
    /// The components of the SBOM that could not be checked (no `pkg:ebuild` purl, or a version that is not a
    /// Portage version), and why. An audit with any is incomplete: see [`AuditReport::exit_code`].
    pub unchecked: Vec<UnreadableComponent>,
}

/// The exit code of an audit in which advisories apply (also `build --deny-advisories`).
pub const EXIT_ADVISORIES: u8 = 6;
/// The exit code of an audit that could not check every package, unless unchecked packages are allowed.
pub const EXIT_UNCHECKED: u8 = 8;

impl AuditReport {
    /// True when no advisory applies.
    pub fn is_clean(&self) -> bool {
        self.advisories.is_empty()
    }

    /// True when every component of the SBOM was checked.
    pub fn is_complete(&self) -> bool {
        self.unchecked.is_empty()
    }

    /// How the audit ends: `0` when it is clean and complete, [`EXIT_ADVISORIES`] when an advisory applies,
    /// else [`EXIT_UNCHECKED`] when a package could not be checked and `allow_unchecked` is false. An audit fails
    /// closed: what it cannot check is never counted as safe.
    pub fn exit_code(&self, allow_unchecked: bool) -> u8 {
        if !self.is_clean() {
            EXIT_ADVISORIES
        } else if !self.is_complete() && !allow_unchecked {
            EXIT_UNCHECKED
        } else {
            0
        }
    }

    /// A human-readable summary, one line per finding.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for finding in &self.advisories {
            out.push_str(&format!("warning: {finding}\n"));
        }
        for component in &self.unchecked {
            out.push_str(&format!(
                "warning: not checked: {}: {}\n",
                component.name, component.reason
            ));
        }
        let unchecked = if self.is_complete() {
            String::new()
        } else {
            format!(
                ", {} could not be checked (see the warnings above)",
                self.unchecked.len()
            )
        };
        out.push_str(&format!(
            "{}: {} package(s) checked{unchecked} against {} advisories from {}: {}\n",
            self.image,
            self.packages_checked,
            self.advisories_checked,
            self.advisory_source,
            match (self.is_clean(), self.is_complete()) {
                (true, true) => "no advisory applies".to_owned(),
                (true, false) => "no advisory applies to the packages checked".to_owned(),
                (false, _) => format!("{} advisory finding(s)", self.advisories.len()),
            }
        ));
        out
    }
}

/// Gentoo's arch keyword for the architecture Staves runs on (the images it builds have the host's).
pub fn gentoo_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm",
        "powerpc64" => "ppc64",
        "s390x" => "s390",
        "riscv64" => "riscv",
        "loongarch64" => "loong",
        other => other,
    }
}

/// The advisories of `db` that apply to the packages of `sbom`.
pub fn check_sbom(sbom: &Sbom, db: &AdvisoryDb) -> Vec<AdvisoryMatch> {
    db.check(
        sbom.packages.iter().map(|p| PackageRef {
            cpv: &p.cpv,
            slot: p.slot.as_deref().unwrap_or("0"),
        }),
        gentoo_arch(),
    )
}

/// Read the SBOM at `path` (SPDX or CycloneDX JSON, as Staves writes them) and check it against `source`.
pub async fn audit_async(path: &Path, source: &AdvisorySource) -> crate::Result<AuditReport> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::Io {
        context: format!("reading the SBOM {}", path.display()),
        source: e,
    })?;
    let sbom = Sbom::from_json(&text, &path.display().to_string())?;
    let (snapshot, label) = match source {
        AdvisorySource::PortageImage { image, docker_host } => {
            let docker = crate::Engine::new(docker_host.clone()).connect().await?;
            (
                crate::snapshot::read_image(&docker, image).await?,
                image.clone(),
            )
        }
        AdvisorySource::Directory(dir) => (
            SnapshotInfo {
                advisories: AdvisoryDb::from_dir(dir)?,
                ..SnapshotInfo::default()
            },
            dir.display().to_string(),
        ),
    };
    let advisories = check_sbom(&sbom, &snapshot.advisories);
    Ok(AuditReport {
        image: format!("{}:{}", sbom.name, sbom.tag),
        manifest_digest: sbom.manifest_digest.clone(),
        advisory_source: label,
        advisories_checked: snapshot.advisories.advisories.len(),
        packages_checked: sbom.packages.len(),
        snapshot,
        advisories,
        unchecked: sbom.unreadable,
    })
}

/// [`audit_async`] for synchronous callers; works from any thread, including a tokio worker.
pub fn audit(path: &Path, source: &AdvisorySource) -> crate::Result<AuditReport> {
    crate::engine::block_on(audit_async(path, source))?
}
