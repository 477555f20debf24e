//! What is in an image: SPDX 2.3 and CycloneDX 1.5 documents made from Portage's package database (the VDB that
//! the builder reads before cleanup strips it), a per-package size report, and reading an SPDX document back.
//!
//! The documents are reproducible: the creation time is `SOURCE_DATE_EPOCH` (or the fixed epoch), identifiers are
//! derived from the image's manifest digest, and packages are sorted.

mod attached;
mod license;

pub use attached::{
    from_oci_archive, from_oci_layout, load as load_stored, save as save_stored, store_dir,
};
pub use license::{LicenseError, SpdxLicense, license_ref, spdx_license_id, to_spdx};

use crate::portage::InstalledPackage;
use crate::timestamp::{parse_rfc3339, rfc3339};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// The media type of an SPDX JSON document (the artifact type of the OCI referrer).
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// The media type of a CycloneDX JSON document.
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

/// The image label that holds [`Sbom::content_digest`]: the digest of the SBOM's SPDX document without the image's
/// own digest (a label inside the config cannot hold the digest of a document that names the config). `staves
/// inspect` finds the full document by image ID in the local store ([`store_dir`]) and checks it against the label.
pub const SBOM_LABEL: &str = "io.staves.sbom.digest";

/// The file name of the SPDX document in the OCI referrer.
pub const SPDX_TITLE: &str = "sbom.spdx.json";

/// Errors making or reading an SBOM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SbomError {
    /// The CycloneDX library refused the document.
    #[error("writing the CycloneDX document failed: {0}")]
    CycloneDx(String),
    /// An SBOM was asked for, but the build cannot make one.
    #[error("no SBOM can be made: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// Writing the SBOM file failed.
    #[error(
        "writing the SBOM to {path}: {source}\n  help: check that the directory exists and is writable"
    )]
    Write {
        /// The destination.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The image carries no SBOM that Staves can find.
    #[error("{image}: {reason}")]
    NotFound {
        /// The image or archive.
        image: String,
        /// Where Staves looked and what it found.
        reason: String,
    },
    /// A document given to read is not an SPDX JSON document Staves understands.
    #[error("{origin} is not an SPDX 2.3 JSON document: {reason}")]
    Unreadable {
        /// Where the document came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// An SBOM format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SbomFormat {
    /// SPDX 2.3, JSON.
    #[default]
    SpdxJson,
    /// CycloneDX 1.5, JSON.
    CyclonedxJson,
}

impl SbomFormat {
    /// The name used on the command line (`spdx-json`, `cyclonedx-json`).
    pub fn as_str(self) -> &'static str {
        match self {
            SbomFormat::SpdxJson => "spdx-json",
            SbomFormat::CyclonedxJson => "cyclonedx-json",
        }
    }

    /// The document's media type.
    pub fn media_type(self) -> &'static str {
        match self {
            SbomFormat::SpdxJson => SPDX_MEDIA_TYPE,
            SbomFormat::CyclonedxJson => CYCLONEDX_MEDIA_TYPE,
        }
    }
}

impl std::str::FromStr for SbomFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spdx-json" | "spdx" => Ok(SbomFormat::SpdxJson),
            "cyclonedx-json" | "cyclonedx" => Ok(SbomFormat::CyclonedxJson),
            other => Err(format!(
                "unknown SBOM format {other:?}: use spdx-json or cyclonedx-json"
            )),
        }
    }
}

pub use crate::portage::AddedFile;

/// What an SBOM describes: the image, how it was built, and its packages.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Sbom {
    /// The image repository (`name` in the spec).
    pub name: String,
    /// The tag.
    pub tag: String,
    /// The image manifest's digest (`sha256:…`).
    pub manifest_digest: String,
    /// The builder image reference.
    pub builder_image: String,
    /// The builder image's ID, when known.
    pub builder_image_id: Option<String>,
    /// The portage snapshot image reference.
    pub portage_image: String,
    /// The portage snapshot image's ID, when known.
    pub portage_image_id: Option<String>,
    /// The snapshot's `metadata/timestamp.chk`, when present.
    pub portage_timestamp: Option<String>,
    /// The Staves version that wrote it.
    pub staves_version: String,
    /// Creation time, seconds since the epoch (`SOURCE_DATE_EPOCH` or the fixed epoch).
    pub created: i64,
    /// The hash of the `staves.lock` the build used, if any.
    pub lock_hash: Option<String>,
    /// The packages installed in the image, sorted by cpv.
    pub packages: Vec<InstalledPackage>,
    /// Files Staves added outside any package.
    pub added_files: Vec<AddedFile>,
    /// Components of a document read back that name no Gentoo package (no `pkg:ebuild` purl): nothing can be
    /// checked about them. Always empty in an SBOM Staves made itself.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<UnreadableComponent>,
}

/// A component of an SBOM read back that names no Gentoo package Staves can read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct UnreadableComponent {
    /// The component's name (and version, when the document gives one).
    pub name: String,
    /// Why it names no package, e.g. that it has no purl.
    pub reason: String,
}

impl UnreadableComponent {
    /// The component `name` (with `version`, if any) that names no package, for `reason`.
    fn new(name: &str, version: Option<&str>, reason: String) -> Self {
        let name = match version.filter(|v| !v.is_empty()) {
            Some(v) => format!("{name} {v}"),
            None => name.to_owned(),
        };
        Self { name, reason }
    }
}

impl Sbom {
    /// This SBOM, describing the image whose manifest digest is `digest`.
    pub fn with_manifest_digest(&self, digest: &str) -> Sbom {
        Sbom {
            manifest_digest: digest.to_owned(),
            ..self.clone()
        }
    }

    /// `sha256:…` of the SPDX document of this SBOM with an empty manifest digest: what [`SBOM_LABEL`] holds. It
    /// depends only on what the image contains and how it was built, not on the image's own digest.
    pub fn content_digest(&self) -> String {
        let text = self.with_manifest_digest("").to_spdx_json();
        format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
    }

    /// Render in `format`.
    pub fn render(&self, format: SbomFormat) -> Result<String, SbomError> {
        match format {
            SbomFormat::SpdxJson => Ok(self.to_spdx_json()),
            SbomFormat::CyclonedxJson => self.to_cyclonedx_json(),
        }
    }

    /// The creation time as RFC 3339 (`1970-01-01T00:00:00Z`).
    pub fn created_rfc3339(&self) -> String {
        rfc3339(self.created)
    }

    /// A UUID derived from the manifest digest and `salt`, so that the same image always gets the same ids.
    fn derived_uuid(&self, salt: &str) -> String {
        let hash = Sha256::digest(format!("{salt}\0{}", self.manifest_digest).as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&hash[..16]);
        b[6] = (b[6] & 0x0f) | 0x50; // version 5 layout (name-based, SHA)
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        let h = hex::encode(b);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    fn image_reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    /// The purl of the image (`pkg:oci/NAME@sha256%3A…?repository_url=…&tag=…`).
    pub fn image_purl(&self) -> String {
        let (repo, last) = match self.name.rsplit_once('/') {
            Some((repo, last)) => (Some(repo), last),
            None => (None, self.name.as_str()),
        };
        let mut purl = format!(
            "pkg:oci/{}@{}",
            purl_encode(last),
            purl_encode(&self.manifest_digest)
        );
        let mut qualifiers = Vec::new();
        if let Some(repo) = repo {
            qualifiers.push(format!("repository_url={}", purl_encode(repo)));
        }
        qualifiers.push(format!("tag={}", purl_encode(&self.tag)));
        purl.push('?');
        purl.push_str(&qualifiers.join("&"));
        purl
    }

    /// The size report: packages by installed size, the total, and what Staves added.
    pub fn size_report(&self) -> SizeReport {
        let mut packages: Vec<PackageSize> = self
            .packages
            .iter()
            .map(|p| PackageSize {
                cpv: p.cpv.clone(),
                size: p.size.unwrap_or(0),
                files: p.files.unwrap_or(0),
            })
            .collect();
        packages.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.cpv.cmp(&b.cpv)));
        let packages_total = packages.iter().map(|p| p.size).sum::<u64>();
        let added_total = self.added_files.iter().map(|f| f.size).sum::<u64>();
        SizeReport {
            packages,
            added: self.added_files.clone(),
            packages_total,
            added_total,
            total: packages_total + added_total,
        }
    }
}

/// Installed size of one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageSize {
    /// `category/package-version`.
    pub cpv: String,
    /// Installed size in bytes (Portage's `SIZE`).
    pub size: u64,
    /// Number of files it installed (from `CONTENTS`).
    pub files: u64,
}

/// Packages sorted by installed size, largest first, plus what Staves added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeReport {
    /// Every package, largest first.
    pub packages: Vec<PackageSize>,
    /// Files Staves added (locale archive, libgcc, libstdc++).
    pub added: Vec<AddedFile>,
    /// Sum of the packages' sizes.
    pub packages_total: u64,
    /// Sum of the added files' sizes.
    pub added_total: u64,
    /// Everything.
    pub total: u64,
}

impl SizeReport {
    /// A human-readable table of the `top` largest packages, the total, and the additions.
    pub fn render_text(&self, top: usize) -> String {
        let mut out = String::new();
        let shown = self.packages.len().min(top);
        if self.packages.len() > shown {
            out.push_str(&format!(
                "largest {shown} of {} packages:\n",
                self.packages.len()
            ));
        } else {
            out.push_str(&format!("{} packages by installed size:\n", shown));
        }
        for p in &self.packages[..shown] {
            out.push_str(&format!(
                "  {:>10}  {:>6} files  {}\n",
                human_size(p.size),
                p.files,
                p.cpv
            ));
        }
        for f in &self.added {
            out.push_str(&format!(
                "  {:>10}  added by Staves: /{} ({})\n",
                human_size(f.size),
                f.path,
                f.reason
            ));
        }
        out.push_str(&format!(
            "  {:>10}  total ({} in packages, {} added by Staves)\n",
            human_size(self.total),
            human_size(self.packages_total),
            human_size(self.added_total)
        ));
        out
    }
}

/// `1.2 MiB`-style sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Percent-encode what purl components may not hold literally.
fn purl_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The purl of a Gentoo package: `pkg:ebuild/CATEGORY/PACKAGE@VERSION`, with `?repository=` unless `gentoo`.
pub fn package_purl(package: &InstalledPackage) -> String {
    let (cp, version) = split_cpv_text(&package.cpv);
    let (category, name) = cp.split_once('/').unwrap_or(("", cp));
    let mut purl = format!(
        "pkg:ebuild/{}/{}@{}",
        purl_encode(category),
        purl_encode(name),
        purl_encode(version)
    );
    if !package.repository.is_empty() && package.repository != "gentoo" {
        purl.push_str(&format!("?repository={}", purl_encode(&package.repository)));
    }
    purl
}

/// `("cat/pkg", "1.0-r1")` from a cpv; the whole text and `""` when it does not split.
fn split_cpv_text(cpv: &str) -> (&str, &str) {
    match crate::spec::split_cpv(cpv) {
        Some((cp, _)) => (cp, &cpv[cp.len() + 1..]),
        None => (cpv, ""),
    }
}

/// A valid SPDX element id made of `prefix` and `text` (`[A-Za-z0-9.-]` only).
fn spdx_id(prefix: &str, text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{prefix}-{clean}")
}

/// The first `http(s)://` URL of a Gentoo HOMEPAGE (which may list several).
fn first_url(homepage: Option<&str>) -> Option<&str> {
    homepage?
        .split_whitespace()
        .find(|u| u.starts_with("https://") || u.starts_with("http://"))
}

/// The machine-read details Staves keeps in each SPDX package's comment, one `key: value` per line.
fn package_details(p: &InstalledPackage) -> String {
    let mut lines = vec![
        format!("slot: {}", p.slot.as_deref().unwrap_or("0")),
        format!("repository: {}", p.repository),
        format!("use: {}", p.use_flags.join(" ")),
    ];
    if let Some(size) = p.size {
        lines.push(format!("installed-size: {size}"));
    }
    if let Some(files) = p.files {
        lines.push(format!("files: {files}"));
    }
    if let Some(license) = &p.license {
        lines.push(format!("gentoo-license: {license}"));
    }
    lines.join("\n")
}

fn parse_details(comment: &str) -> impl Iterator<Item = (&str, &str)> {
    comment
        .lines()
        .filter_map(|l| l.split_once(": ").or_else(|| l.split_once(':')))
        .map(|(k, v)| (k.trim(), v.trim()))
}

// --- SPDX 2.3 ------------------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxDocument {
    spdx_version: String,
    data_license: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    document_namespace: String,
    creation_info: SpdxCreationInfo,
    #[serde(default)]
    packages: Vec<SpdxPackage>,
    #[serde(default)]
    relationships: Vec<SpdxRelationship>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    has_extracted_licensing_infos: Vec<SpdxExtractedLicense>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxCreationInfo {
    created: String,
    creators: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    download_location: String,
    #[serde(default)]
    files_analyzed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    homepage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    primary_package_purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<SpdxChecksum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    license_concluded: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    license_declared: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    copyright_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    supplier: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<SpdxExternalRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxChecksum {
    algorithm: String,
    checksum_value: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxExternalRef {
    reference_category: String,
    reference_type: String,
    reference_locator: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxRelationship {
    spdx_element_id: String,
    relationship_type: String,
    related_spdx_element: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxExtractedLicense {
    license_id: String,
    extracted_text: String,
    name: String,
}

const NOASSERTION: &str = "NOASSERTION";
const IMAGE_ID: &str = "SPDXRef-Image";
const BUILDER_ID: &str = "SPDXRef-Builder";
const SNAPSHOT_ID: &str = "SPDXRef-PortageSnapshot";

impl Sbom {
    /// The SPDX 2.3 JSON document.
    pub fn to_spdx_json(&self) -> String {
        let created = self.created_rfc3339();
        let mut extracted = BTreeSet::new();
        let mut packages = Vec::new();
        let mut relationships = vec![SpdxRelationship {
            spdx_element_id: "SPDXRef-DOCUMENT".into(),
            relationship_type: "DESCRIBES".into(),
            related_spdx_element: IMAGE_ID.into(),
        }];

        let mut image_comment = vec![format!("staves-version: {}", self.staves_version)];
        if let Some(lock) = &self.lock_hash {
            image_comment.push(format!("lock: {lock}"));
        }
        for f in &self.added_files {
            image_comment.push(format!("added-file: /{} {} {}", f.path, f.size, f.reason));
        }
        packages.push(SpdxPackage {
            spdx_id: IMAGE_ID.into(),
            name: self.name.clone(),
            version_info: Some(self.tag.clone()),
            download_location: NOASSERTION.into(),
            files_analyzed: false,
            homepage: None,
            description: Some(format!(
                "Container image {} built by Staves",
                self.image_reference()
            )),
            primary_package_purpose: Some("CONTAINER".into()),
            checksums: self
                .manifest_digest
                .strip_prefix("sha256:")
                .map(|hex| SpdxChecksum {
                    algorithm: "SHA256".into(),
                    checksum_value: hex.to_owned(),
                })
                .into_iter()
                .collect(),
            license_concluded: Some(NOASSERTION.into()),
            license_declared: Some(NOASSERTION.into()),
            copyright_text: Some(NOASSERTION.into()),
            supplier: Some(NOASSERTION.into()),
            external_refs: vec![SpdxExternalRef {
                reference_category: "PACKAGE-MANAGER".into(),
                reference_type: "purl".into(),
                reference_locator: self.image_purl(),
            }],
            comment: Some(image_comment.join("\n")),
        });
        for (id, reference, image_id, purpose, relation) in [
            (
                BUILDER_ID,
                &self.builder_image,
                &self.builder_image_id,
                "the builder image (a Gentoo stage3) that ran emerge",
                "BUILD_TOOL_OF",
            ),
            (
                SNAPSHOT_ID,
                &self.portage_image,
                &self.portage_image_id,
                "the Portage tree snapshot the packages were resolved from",
                "BUILD_DEPENDENCY_OF",
            ),
        ] {
            let mut comment = vec![purpose.to_owned()];
            if let Some(image_id) = image_id {
                comment.push(format!("image-id: {image_id}"));
            }
            if id == SNAPSHOT_ID {
                if let Some(ts) = &self.portage_timestamp {
                    comment.push(format!("timestamp: {ts}"));
                }
            }
            packages.push(SpdxPackage {
                spdx_id: id.into(),
                name: reference.clone(),
                version_info: image_id.clone(),
                download_location: NOASSERTION.into(),
                files_analyzed: false,
                homepage: None,
                description: None,
                primary_package_purpose: Some("CONTAINER".into()),
                checksums: image_id
                    .as_deref()
                    .and_then(|d| d.strip_prefix("sha256:"))
                    .map(|hex| SpdxChecksum {
                        algorithm: "SHA256".into(),
                        checksum_value: hex.to_owned(),
                    })
                    .into_iter()
                    .collect(),
                license_concluded: Some(NOASSERTION.into()),
                license_declared: Some(NOASSERTION.into()),
                copyright_text: Some(NOASSERTION.into()),
                supplier: None,
                external_refs: Vec::new(),
                comment: Some(comment.join("\n")),
            });
            relationships.push(SpdxRelationship {
                spdx_element_id: id.into(),
                relationship_type: relation.into(),
                related_spdx_element: IMAGE_ID.into(),
            });
        }
        for p in &self.packages {
            let id = spdx_id("Package", &p.cpv);
            let (cp, version) = split_cpv_text(&p.cpv);
            let license = p.license.as_deref().map(|text| to_spdx(text, &p.use_flags));
            let declared = match license {
                Some(Ok(l)) => {
                    extracted.extend(l.references);
                    l.expression
                }
                // A LICENSE Staves cannot parse is kept verbatim in the comment, not guessed at.
                Some(Err(_)) | None => NOASSERTION.into(),
            };
            packages.push(SpdxPackage {
                spdx_id: id.clone(),
                name: cp.to_owned(),
                version_info: Some(version.to_owned()),
                download_location: NOASSERTION.into(),
                files_analyzed: false,
                homepage: first_url(p.homepage.as_deref()).map(str::to_owned),
                description: p.description.clone().filter(|d| !d.is_empty()),
                primary_package_purpose: None,
                checksums: Vec::new(),
                license_concluded: Some(NOASSERTION.into()),
                license_declared: Some(declared),
                copyright_text: Some(NOASSERTION.into()),
                supplier: None,
                external_refs: vec![SpdxExternalRef {
                    reference_category: "PACKAGE-MANAGER".into(),
                    reference_type: "purl".into(),
                    reference_locator: package_purl(p),
                }],
                comment: Some(package_details(p)),
            });
            relationships.push(SpdxRelationship {
                spdx_element_id: IMAGE_ID.into(),
                relationship_type: "CONTAINS".into(),
                related_spdx_element: id,
            });
        }
        let mut creation_comment = vec![format!("Built by Staves from {}", self.name)];
        if let Some(id) = &self.builder_image_id {
            creation_comment.push(format!("builder {} ({id})", self.builder_image));
        }
        if let Some(id) = &self.portage_image_id {
            creation_comment.push(format!("portage snapshot {} ({id})", self.portage_image));
        }
        if let Some(ts) = &self.portage_timestamp {
            creation_comment.push(format!("portage snapshot timestamp {ts}"));
        }
        let document = SpdxDocument {
            spdx_version: "SPDX-2.3".into(),
            data_license: "CC0-1.0".into(),
            spdx_id: "SPDXRef-DOCUMENT".into(),
            name: self.image_reference(),
            document_namespace: format!(
                "https://spdx.org/spdxdocs/staves/{}/{}",
                purl_encode(&self.name),
                self.derived_uuid("spdx")
            ),
            creation_info: SpdxCreationInfo {
                created,
                creators: vec![format!("Tool: staves-{}", self.staves_version)],
                comment: Some(creation_comment.join("; ")),
            },
            packages,
            relationships,
            has_extracted_licensing_infos: extracted
                .into_iter()
                .map(|(id, gentoo)| SpdxExtractedLicense {
                    license_id: id,
                    extracted_text: format!(
                        "The Gentoo license named {gentoo}; its text is licenses/{gentoo} in the package's \
                         ebuild repository."
                    ),
                    name: gentoo,
                })
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&document)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    }

    /// Read back an SPDX JSON document that Staves wrote (image, build inputs, packages with their details).
    ///
    /// Documents from other tools are read as far as they go: packages with an `ebuild` purl are taken, with
    /// slot `0` when no slot is recorded.
    pub fn from_spdx_json(text: &str, origin: &str) -> Result<Sbom, SbomError> {
        let unreadable = |reason: String| SbomError::Unreadable {
            origin: origin.to_owned(),
            reason,
        };
        let doc: SpdxDocument =
            serde_json::from_str(text).map_err(|e| unreadable(e.to_string()))?;
        if !doc.spdx_version.starts_with("SPDX-2.") {
            return Err(unreadable(format!("spdxVersion is {}", doc.spdx_version)));
        }
        let created = parse_rfc3339(&doc.creation_info.created).unwrap_or(0);
        let staves_version = doc
            .creation_info
            .creators
            .iter()
            .find_map(|c| c.strip_prefix("Tool: staves-"))
            .unwrap_or("")
            .to_owned();
        let mut sbom = Sbom {
            name: String::new(),
            tag: String::new(),
            manifest_digest: String::new(),
            builder_image: String::new(),
            builder_image_id: None,
            portage_image: String::new(),
            portage_image_id: None,
            portage_timestamp: None,
            staves_version,
            created,
            lock_hash: None,
            packages: Vec::new(),
            added_files: Vec::new(),
            unreadable: Vec::new(),
        };
        for p in doc.packages {
            let comment = p.comment.as_deref().unwrap_or("");
            match p.spdx_id.as_str() {
                IMAGE_ID => {
                    sbom.name = p.name;
                    sbom.tag = p.version_info.unwrap_or_default();
                    sbom.manifest_digest = p
                        .checksums
                        .iter()
                        .find(|c| c.algorithm == "SHA256")
                        .map(|c| format!("sha256:{}", c.checksum_value))
                        .unwrap_or_default();
                    for (key, value) in parse_details(comment) {
                        match key {
                            "lock" => sbom.lock_hash = Some(value.to_owned()),
                            "added-file" => {
                                let mut parts = value.splitn(3, ' ');
                                if let (Some(path), Some(size), reason) =
                                    (parts.next(), parts.next(), parts.next())
                                {
                                    sbom.added_files.push(AddedFile {
                                        path: path.trim_start_matches('/').to_owned(),
                                        size: size.parse().unwrap_or(0),
                                        reason: reason.unwrap_or("").to_owned(),
                                    });
                                }
                            }
                            _ => {}
                        }
                    }
                }
                BUILDER_ID | SNAPSHOT_ID => {
                    let builder = p.spdx_id == BUILDER_ID;
                    let id = p.version_info.clone();
                    if builder {
                        sbom.builder_image = p.name;
                        sbom.builder_image_id = id;
                    } else {
                        sbom.portage_image = p.name;
                        sbom.portage_image_id = id;
                        sbom.portage_timestamp = parse_details(comment)
                            .find(|(k, _)| *k == "timestamp")
                            .map(|(_, v)| v.to_owned());
                    }
                }
                _ => {
                    let purl = p
                        .external_refs
                        .iter()
                        .find(|r| r.reference_type == "purl")
                        .map(|r| r.reference_locator.as_str());
                    let mut package = match package_from_purl(purl) {
                        Ok(package) => package,
                        Err(reason) => {
                            sbom.unreadable.push(UnreadableComponent::new(
                                &p.name,
                                p.version_info.as_deref(),
                                reason,
                            ));
                            continue;
                        }
                    };
                    package.homepage = p.homepage.clone();
                    package.description = p.description.clone();
                    for (key, value) in parse_details(comment) {
                        match key {
                            "slot" => package.slot = Some(value.to_owned()),
                            "use" => {
                                package.use_flags =
                                    value.split_whitespace().map(str::to_owned).collect()
                            }
                            "installed-size" => package.size = value.parse().ok(),
                            "files" => package.files = value.parse().ok(),
                            "gentoo-license" => package.license = Some(value.to_owned()),
                            _ => {}
                        }
                    }
                    sbom.packages.push(package);
                }
            }
        }
        sbom.packages.sort_by(|a, b| a.cpv.cmp(&b.cpv));
        Ok(sbom)
    }
}

impl Sbom {
    /// Read back a JSON SBOM in either format Staves writes (SPDX 2.3 or CycloneDX 1.5), chosen by its content.
    pub fn from_json(text: &str, origin: &str) -> Result<Sbom, SbomError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SbomError::Unreadable {
                origin: origin.to_owned(),
                reason: e.to_string(),
            })?;
        if value.get("bomFormat").and_then(|v| v.as_str()) == Some("CycloneDX") {
            Self::from_cyclonedx_value(&value, origin)
        } else {
            Self::from_spdx_json(text, origin)
        }
    }

    /// Read the packages (`pkg:ebuild` purls with their `gentoo:*` / `staves:*` properties) of a CycloneDX document.
    fn from_cyclonedx_value(value: &serde_json::Value, origin: &str) -> Result<Sbom, SbomError> {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let components = value
            .get("components")
            .and_then(|c| c.as_array())
            .ok_or_else(|| SbomError::Unreadable {
                origin: origin.to_owned(),
                reason: "it has no components".into(),
            })?;
        let props = |c: &serde_json::Value| -> Vec<(String, String)> {
            c.get("properties")
                .and_then(|p| p.as_array())
                .map(|ps| {
                    ps.iter()
                        .map(|p| (text(&p["name"]), text(&p["value"])))
                        .collect()
                })
                .unwrap_or_default()
        };
        let image = &value["metadata"]["component"];
        let image_props = props(image);
        let prop = |name: &str| {
            image_props
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut sbom = Sbom {
            name: text(&image["name"]),
            tag: text(&image["version"]),
            manifest_digest: image["hashes"][0]["content"]
                .as_str()
                .map(|h| format!("sha256:{h}"))
                .unwrap_or_default(),
            builder_image: prop("staves:builder-image").unwrap_or_default(),
            builder_image_id: prop("staves:builder-image-id"),
            portage_image: prop("staves:portage-image").unwrap_or_default(),
            portage_image_id: prop("staves:portage-image-id"),
            portage_timestamp: prop("staves:portage-timestamp"),
            staves_version: text(&value["metadata"]["tools"][0]["version"]),
            created: value["metadata"]["timestamp"]
                .as_str()
                .and_then(parse_rfc3339)
                .unwrap_or(0),
            lock_hash: prop("staves:lock"),
            packages: Vec::new(),
            added_files: Vec::new(),
            unreadable: Vec::new(),
        };
        for c in components {
            let mut package = match package_from_purl(c["purl"].as_str()) {
                Ok(package) => package,
                Err(reason) => {
                    sbom.unreadable.push(UnreadableComponent::new(
                        c["name"].as_str().unwrap_or("(unnamed component)"),
                        c["version"].as_str(),
                        reason,
                    ));
                    continue;
                }
            };
            package.description = c["description"].as_str().map(str::to_owned);
            for (key, value) in props(c) {
                match key.as_str() {
                    "gentoo:slot" => package.slot = Some(value),
                    "gentoo:use" => {
                        package.use_flags = value.split_whitespace().map(str::to_owned).collect()
                    }
                    "gentoo:license" => package.license = Some(value),
                    "staves:installed-size" => package.size = value.parse().ok(),
                    "staves:files" => package.files = value.parse().ok(),
                    _ => {}
                }
            }
            sbom.packages.push(package);
        }
        sbom.packages.sort_by(|a, b| a.cpv.cmp(&b.cpv));
        Ok(sbom)
    }
}

/// A package from a `pkg:ebuild/CATEGORY/PACKAGE@VERSION[?repository=R]` purl with a Portage version; for a
/// missing purl, another kind of purl or one whose package or version Portage would not read, why not.
fn package_from_purl(purl: Option<&str>) -> Result<InstalledPackage, String> {
    let Some(purl) = purl.filter(|p| !p.is_empty()) else {
        return Err("it has no purl (package URL), so it names no Gentoo package".to_owned());
    };
    let not_ebuild =
        || format!("its purl `{purl}` is not a `pkg:ebuild/CATEGORY/PACKAGE@VERSION` package URL");
    let rest = purl.strip_prefix("pkg:ebuild/").ok_or_else(not_ebuild)?;
    let (path, qualifiers) = rest.split_once('?').unwrap_or((rest, ""));
    let (cp, version) = path.split_once('@').ok_or_else(not_ebuild)?;
    let (cp, version) = (percent_decode(cp), percent_decode(version));
    if version.is_empty() {
        return Err(format!("its purl `{purl}` has an empty version"));
    }
    let cpv = format!("{cp}-{version}");
    match crate::spec::split_cpv(&cpv) {
        Some((parsed, _)) if parsed == cp => {}
        _ if crate::spec::Version::parse(&version).is_err() => {
            return Err(format!(
                "its version `{version}` (purl `{purl}`) is not a Portage version"
            ));
        }
        _ => {
            return Err(format!(
                "`{cp}` (purl `{purl}`) is not a Portage CATEGORY/PACKAGE name"
            ));
        }
    }
    Ok(InstalledPackage {
        cpv,
        use_flags: Vec::new(),
        repository: qualifiers
            .split('&')
            .find_map(|q| q.strip_prefix("repository="))
            .map(percent_decode)
            .unwrap_or_else(|| "gentoo".to_owned()),
        binary: None,
        slot: None,
        license: None,
        homepage: None,
        description: None,
        size: None,
        files: None,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// --- CycloneDX 1.5 -------------------------------------------------------------------------------------------------

impl Sbom {
    /// The CycloneDX 1.5 JSON document, written and validated by the `cyclonedx-bom` crate.
    pub fn to_cyclonedx_json(&self) -> Result<String, SbomError> {
        use cyclonedx_bom::external_models::normalized_string::NormalizedString;
        use cyclonedx_bom::external_models::spdx::SpdxExpression;
        use cyclonedx_bom::external_models::uri::Purl;
        use cyclonedx_bom::models::bom::{Bom, SpecVersion, UrnUuid};
        use cyclonedx_bom::models::component::{Classification, Component, Components};
        use cyclonedx_bom::models::dependency::{Dependencies, Dependency};
        use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
        use cyclonedx_bom::models::license::{LicenseChoice, Licenses};
        use cyclonedx_bom::models::metadata::Metadata;
        use cyclonedx_bom::models::property::{Properties, Property};
        use cyclonedx_bom::models::tool::{Tool, Tools};
        use cyclonedx_bom::validation::Validate;

        let err = |e: String| SbomError::CycloneDx(e);
        let image_ref = "image".to_owned();
        let mut image = Component::new(
            Classification::Container,
            &self.name,
            &self.tag,
            Some(image_ref.clone()),
        );
        image.purl = self.image_purl().parse::<Purl>().ok();
        if let Some(hex) = self.manifest_digest.strip_prefix("sha256:") {
            image.hashes = Some(Hashes(vec![Hash {
                alg: HashAlgorithm::SHA_256,
                content: HashValue(hex.to_owned()),
            }]));
        }
        let mut image_props = vec![
            Property::new("staves:builder-image", &self.builder_image),
            Property::new("staves:portage-image", &self.portage_image),
        ];
        if let Some(id) = &self.builder_image_id {
            image_props.push(Property::new("staves:builder-image-id", id));
        }
        if let Some(id) = &self.portage_image_id {
            image_props.push(Property::new("staves:portage-image-id", id));
        }
        if let Some(ts) = &self.portage_timestamp {
            image_props.push(Property::new("staves:portage-timestamp", ts));
        }
        if let Some(lock) = &self.lock_hash {
            image_props.push(Property::new("staves:lock", lock));
        }
        for f in &self.added_files {
            image_props.push(Property::new(
                "staves:added-file",
                &format!("/{} {} {}", f.path, f.size, f.reason),
            ));
        }
        image.properties = Some(Properties(image_props));

        let mut components = Vec::new();
        let mut refs = Vec::new();
        for p in &self.packages {
            let (cp, version) = split_cpv_text(&p.cpv);
            let bom_ref = package_purl(p);
            let mut c = Component::new(Classification::Library, cp, version, Some(bom_ref.clone()));
            c.purl = bom_ref.parse().ok();
            c.description = p
                .description
                .as_deref()
                .filter(|d| !d.is_empty())
                .map(NormalizedString::new);
            if let Some(Ok(license)) = p.license.as_deref().map(|text| to_spdx(text, &p.use_flags))
            {
                if license.expression != NOASSERTION {
                    c.licenses = Some(Licenses(vec![LicenseChoice::Expression(
                        SpdxExpression::new(&license.expression),
                    )]));
                }
            }
            let mut props = vec![
                Property::new("gentoo:slot", p.slot.as_deref().unwrap_or("0")),
                Property::new("gentoo:repository", &p.repository),
                Property::new("gentoo:use", &p.use_flags.join(" ")),
            ];
            if let Some(license) = &p.license {
                props.push(Property::new("gentoo:license", license));
            }
            if let Some(size) = p.size {
                props.push(Property::new("staves:installed-size", &size.to_string()));
            }
            if let Some(files) = p.files {
                props.push(Property::new("staves:files", &files.to_string()));
            }
            c.properties = Some(Properties(props));
            refs.push(bom_ref);
            components.push(c);
        }
        let metadata = Metadata {
            timestamp: self.created_rfc3339().try_into().ok(),
            tools: Some(Tools::List(vec![Tool {
                vendor: None,
                name: Some(NormalizedString::new("staves")),
                version: Some(NormalizedString::new(&self.staves_version)),
                hashes: None,
                external_references: None,
            }])),
            authors: None,
            component: Some(image),
            manufacture: None,
            supplier: None,
            licenses: None,
            properties: None,
            lifecycles: None,
        };
        let bom = Bom {
            version: 1,
            serial_number: Some(
                UrnUuid::new(format!("urn:uuid:{}", self.derived_uuid("cyclonedx")))
                    .map_err(|e| err(format!("{e:?}")))?,
            ),
            metadata: Some(metadata),
            components: Some(Components(components)),
            dependencies: Some(Dependencies(vec![Dependency {
                dependency_ref: image_ref,
                dependencies: refs,
            }])),
            spec_version: SpecVersion::V1_5,
            ..Bom::default()
        };
        let validation = bom.validate_version(SpecVersion::V1_5);
        if validation.has_errors() {
            return Err(err(format!("{validation:?}")));
        }
        let mut out = Vec::new();
        bom.output_as_json_v1_5(&mut out)
            .map_err(|e| err(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&out).map_err(|e| err(e.to_string()))?;
        let mut text = serde_json::to_string_pretty(&value).map_err(|e| err(e.to_string()))?;
        text.push('\n');
        Ok(text)
    }
}

#[cfg(test)]
mod tests;
