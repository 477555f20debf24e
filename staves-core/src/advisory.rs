//! Gentoo Linux Security Advisories (GLSA): parsing the XML that Portage snapshots ship in `metadata/glsa/`, and
//! matching its version ranges against installed packages with the PMS version order.
//!
//! The format is GLSA's DTD, as Portage's own reader (`portage/glsa.py`) takes it: each
//! `<affected><package name="cat/pkg" arch="*">` holds `<vulnerable range="…">` and `<unaffected range="…">` entries
//! with an optional `slot`. A package is affected when its arch applies, it matches a vulnerable range, and it
//! matches no unaffected range.

use crate::spec::{Version, split_cpv};
use serde::Serialize;
use std::path::Path;

/// Errors reading advisories.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdvisoryError {
    /// A GLSA file is not well-formed XML or not a GLSA.
    #[error("{origin}: not a valid GLSA: {reason}")]
    Invalid {
        /// The file (or archive member) that was read.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--deny-advisories`: advisories apply to the packages of the image, so nothing was written.
    #[error(
        "{} security advisor{} appl{} to the image, and advisories are denied: nothing was tagged, written or \
         pushed\n{}  help: update the affected packages (a newer portage snapshot), or build without \
         --deny-advisories",
        .advisories.len(),
        if .advisories.len() == 1 { "y" } else { "ies" },
        if .advisories.len() == 1 { "ies" } else { "y" },
        .advisories.iter().map(|a| format!("  {a}\n")).collect::<String>()
    )]
    Denied {
        /// The advisories that apply.
        advisories: Vec<AdvisoryMatch>,
    },
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A version range type of the GLSA DTD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RangeKind {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=` (a trailing `*` matches by prefix, as in PMS `=V*`)
    Eq,
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// Same version, revision `<`.
    Rlt,
    /// Same version, revision `<=`.
    Rle,
    /// Same version, revision `>=`.
    Rge,
    /// Same version, revision `>`.
    Rgt,
}

impl RangeKind {
    fn parse(s: &str) -> Option<RangeKind> {
        Some(match s {
            "lt" => RangeKind::Lt,
            "le" => RangeKind::Le,
            "eq" => RangeKind::Eq,
            "ge" => RangeKind::Ge,
            "gt" => RangeKind::Gt,
            "rlt" => RangeKind::Rlt,
            "rle" => RangeKind::Rle,
            "rge" => RangeKind::Rge,
            "rgt" => RangeKind::Rgt,
            _ => return None,
        })
    }

    /// The operator as Portage writes it for this range (`<`, `>=~`, …).
    pub fn operator(self) -> &'static str {
        match self {
            RangeKind::Lt => "<",
            RangeKind::Le => "<=",
            RangeKind::Eq => "=",
            RangeKind::Ge => ">=",
            RangeKind::Gt => ">",
            RangeKind::Rlt => "<~",
            RangeKind::Rle => "<=~",
            RangeKind::Rge => ">=~",
            RangeKind::Rgt => ">~",
        }
    }
}

/// One `<vulnerable>` or `<unaffected>` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionRange {
    /// The range type.
    pub range: RangeKind,
    /// The version, as written (may end in `*` for `eq`).
    pub version: String,
    /// The slot the range is limited to; `None` for any slot (`*` or absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
}

impl VersionRange {
    /// True when a package of `version` in `slot` lies in this range.
    pub fn contains(&self, version: &Version, slot: &str) -> bool {
        if let Some(want) = &self.slot {
            let have = slot.split('/').next().unwrap_or(slot);
            if want != have {
                return false;
            }
        }
        if self.range == RangeKind::Eq {
            if let Some(prefix) = self.version.strip_suffix('*') {
                return version.matches_wildcard(prefix);
            }
        }
        let Ok(bound) = Version::parse(&self.version) else {
            return false;
        };
        use std::cmp::Ordering::*;
        let ord = match self.range {
            RangeKind::Rlt | RangeKind::Rle | RangeKind::Rge | RangeKind::Rgt => {
                if !version.same_base(&bound) {
                    return false;
                }
                version.cmp_revision(&bound)
            }
            _ => version.cmp(&bound),
        };
        match self.range {
            RangeKind::Lt | RangeKind::Rlt => ord == Less,
            RangeKind::Le | RangeKind::Rle => ord != Greater,
            RangeKind::Eq => ord == Equal,
            RangeKind::Ge | RangeKind::Rge => ord != Less,
            RangeKind::Gt | RangeKind::Rgt => ord == Greater,
        }
    }
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.range.operator(), self.version)?;
        if let Some(slot) = &self.slot {
            write!(f, ":{slot}")?;
        }
        Ok(())
    }
}

/// One `<package>` of an advisory's `<affected>` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AffectedPackage {
    /// `category/package`.
    pub name: String,
    /// The architectures the entry applies to; `["*"]` for all.
    pub arch: Vec<String>,
    /// Versions that are vulnerable.
    pub vulnerable: Vec<VersionRange>,
    /// Versions that are not (the fix).
    pub unaffected: Vec<VersionRange>,
}

impl AffectedPackage {
    /// True when a package of `version` in `slot`, on `arch`, is affected by this entry.
    pub fn affects(&self, version: &Version, slot: &str, arch: &str) -> bool {
        let arch_applies = self.arch.iter().any(|a| a == "*" || a == arch);
        arch_applies
            && self.vulnerable.iter().any(|r| r.contains(version, slot))
            && !self.unaffected.iter().any(|r| r.contains(version, slot))
    }
}

/// A parsed GLSA.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Advisory {
    /// The id, e.g. `202401-01` (the document says `GLSA 202401-01`).
    pub id: String,
    /// The title.
    pub title: String,
    /// The one-line synopsis.
    pub synopsis: String,
    /// The severity from `<impact type="…">` (`low`, `normal`, `high`).
    pub severity: String,
    /// Gentoo bug numbers.
    pub bugs: Vec<String>,
    /// Reference URIs and CVE ids.
    pub references: Vec<String>,
    /// The affected packages.
    pub packages: Vec<AffectedPackage>,
}

impl Advisory {
    /// Parse one GLSA XML document; `origin` names it in errors.
    pub fn parse(xml: &str, origin: &str) -> Result<Advisory, AdvisoryError> {
        let invalid = |reason: String| AdvisoryError::Invalid {
            origin: origin.to_owned(),
            reason,
        };
        let options = roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(xml, options)
            .map_err(|e| invalid(e.to_string()))?;
        let root = doc.root_element();
        if root.tag_name().name() != "glsa" {
            return Err(invalid(format!(
                "the root element is <{}>, not <glsa>",
                root.tag_name().name()
            )));
        }
        let id = root
            .attribute("id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| invalid("<glsa> has no id attribute".into()))?
            .to_owned();
        let child = |name: &str| root.children().find(|n| n.has_tag_name(name));
        let text = |name: &str| {
            child(name)
                .map(|n| normalize_space(&collect_text(n)))
                .unwrap_or_default()
        };
        let affected = child("affected").ok_or_else(|| invalid("no <affected> section".into()))?;
        let mut packages = Vec::new();
        for p in affected.children().filter(|n| n.has_tag_name("package")) {
            let name = p
                .attribute("name")
                .ok_or_else(|| invalid("a <package> has no name".into()))?;
            if !crate::spec::Atom::parse(name).is_ok_and(|a| a.to_string() == name) {
                return Err(invalid(format!(
                    "invalid package name {name:?}: write category/package"
                )));
            }
            let ranges = |tag: &str| -> Result<Vec<VersionRange>, AdvisoryError> {
                p.children()
                    .filter(|n| n.has_tag_name(tag))
                    .map(|n| {
                        let range = n.attribute("range").unwrap_or_default();
                        let range = RangeKind::parse(range).ok_or_else(|| {
                            invalid(format!("invalid range {range:?} for {name}"))
                        })?;
                        let version = normalize_space(&collect_text(n));
                        let plain = version.strip_suffix('*').unwrap_or(&version);
                        if Version::parse(plain).is_err() {
                            return Err(invalid(format!("invalid version {version:?} for {name}")));
                        }
                        let slot = n
                            .attribute("slot")
                            .map(str::trim)
                            .filter(|s| !s.is_empty() && *s != "*")
                            .map(str::to_owned);
                        Ok(VersionRange {
                            range,
                            version,
                            slot,
                        })
                    })
                    .collect()
            };
            packages.push(AffectedPackage {
                name: name.to_owned(),
                arch: p
                    .attribute("arch")
                    .unwrap_or("*")
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                vulnerable: ranges("vulnerable")?,
                unaffected: ranges("unaffected")?,
            });
        }
        let mut references = Vec::new();
        if let Some(refs) = child("references") {
            for uri in refs.descendants().filter(|n| n.has_tag_name("uri")) {
                let link = uri.attribute("link").map(str::to_owned);
                let label = normalize_space(&collect_text(uri));
                references.push(link.unwrap_or(label));
            }
        }
        Ok(Advisory {
            id,
            title: text("title"),
            synopsis: text("synopsis"),
            severity: child("impact")
                .and_then(|n| n.attribute("type"))
                .unwrap_or("unknown")
                .to_owned(),
            bugs: root
                .children()
                .filter(|n| n.has_tag_name("bug"))
                .map(|n| normalize_space(&collect_text(n)))
                .collect(),
            references,
            packages,
        })
    }
}

fn collect_text(node: roxmltree::Node<'_, '_>) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

fn normalize_space(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The advisories of a Portage snapshot: every `glsa-*.xml` under its `metadata/glsa/`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AdvisoryDb {
    /// The advisories, sorted by id.
    pub advisories: Vec<Advisory>,
}

impl AdvisoryDb {
    /// Parse GLSA documents given as `(file name, XML text)`; names not matching `glsa-*.xml` are skipped.
    pub fn from_documents<'a>(
        documents: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<AdvisoryDb, AdvisoryError> {
        let mut advisories = Vec::new();
        for (name, xml) in documents {
            let file = name.rsplit('/').next().unwrap_or(name);
            if !(file.starts_with("glsa-") && file.ends_with(".xml")) {
                continue;
            }
            advisories.push(Advisory::parse(xml, name)?);
        }
        advisories.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(AdvisoryDb { advisories })
    }

    /// Read every `glsa-*.xml` in a directory (e.g. `/var/db/repos/gentoo/metadata/glsa`).
    pub fn from_dir(dir: &Path) -> Result<AdvisoryDb, AdvisoryError> {
        let io = |source| AdvisoryError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut documents = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("glsa-") && name.ends_with(".xml") {
                let path = entry.path();
                let text = std::fs::read_to_string(&path).map_err(|source| AdvisoryError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                documents.push((path.display().to_string(), text));
            }
        }
        Self::from_documents(documents.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    }

    /// Read the `glsa-*.xml` members of a tar stream (as the engine's archive API returns a directory).
    pub fn from_tar(reader: impl std::io::Read) -> Result<AdvisoryDb, AdvisoryError> {
        let io = |source| AdvisoryError::Io {
            path: "the GLSA archive".into(),
            source,
        };
        let mut archive = tar::Archive::new(reader);
        let mut documents = Vec::new();
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let file = name.rsplit('/').next().unwrap_or(&name);
            if !(file.starts_with("glsa-") && file.ends_with(".xml")) {
                continue;
            }
            // A GLSA is a few kilobytes; refuse members that could not be one.
            if entry.header().size().map_err(io)? > 4 << 20 {
                return Err(AdvisoryError::Invalid {
                    origin: name,
                    reason: "larger than 4 MiB".into(),
                });
            }
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).map_err(io)?;
            documents.push((name, text));
        }
        Self::from_documents(documents.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    }

    /// The advisories that affect `packages` on `arch` (Gentoo's arch keyword, e.g. `amd64`).
    pub fn check<'p>(
        &self,
        packages: impl IntoIterator<Item = PackageRef<'p>> + Clone,
        arch: &str,
    ) -> Vec<AdvisoryMatch> {
        let mut found = Vec::new();
        for advisory in &self.advisories {
            for affected in &advisory.packages {
                for package in packages.clone() {
                    let Some((cp, version)) = split_cpv(package.cpv) else {
                        continue;
                    };
                    if cp != affected.name || !affected.affects(&version, package.slot, arch) {
                        continue;
                    }
                    found.push(AdvisoryMatch {
                        id: advisory.id.clone(),
                        title: advisory.title.clone(),
                        synopsis: advisory.synopsis.clone(),
                        severity: advisory.severity.clone(),
                        cpv: package.cpv.to_owned(),
                        slot: package.slot.to_owned(),
                        unaffected: affected.unaffected.iter().map(|r| r.to_string()).collect(),
                        vulnerable: affected.vulnerable.iter().map(|r| r.to_string()).collect(),
                        references: advisory.references.clone(),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.cpv.cmp(&b.cpv)));
        found.dedup_by(|a, b| a.id == b.id && a.cpv == b.cpv);
        found
    }
}

/// An installed package to check: `category/package-version` and its slot.
#[derive(Debug, Clone, Copy)]
pub struct PackageRef<'a> {
    /// `category/package-version[-rN]`.
    pub cpv: &'a str,
    /// The slot (`0`, `3.11/3.11`, …).
    pub slot: &'a str,
}

/// An advisory that applies to an installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct AdvisoryMatch {
    /// The GLSA id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its synopsis.
    pub synopsis: String,
    /// Its severity (`low`, `normal`, `high`).
    pub severity: String,
    /// The affected package as installed.
    pub cpv: String,
    /// Its slot.
    pub slot: String,
    /// The vulnerable ranges, e.g. `<1.2`.
    pub vulnerable: Vec<String>,
    /// The unaffected ranges (the fix), e.g. `>=1.2`.
    pub unaffected: Vec<String>,
    /// Reference URIs and CVE ids.
    pub references: Vec<String>,
}

impl std::fmt::Display for AdvisoryMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GLSA {} ({}): {} is affected: {}",
            self.id, self.severity, self.cpv, self.title
        )?;
        if !self.unaffected.is_empty() {
            write!(f, "; fixed in {}", self.unaffected.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glsa(id: &str, package: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE glsa SYSTEM "http://www.gentoo.org/dtd/glsa.dtd">
<glsa id="{id}">
  <title>libfoo: Multiple vulnerabilities</title>
  <synopsis>Several bugs in libfoo.</synopsis>
  <product type="ebuild">libfoo</product>
  <announced>2026-01-01</announced>
  <revised count="1">2026-01-01</revised>
  <bug>123456</bug>
  <access>remote</access>
  <affected>{package}</affected>
  <background><p>x</p></background>
  <description><p>x</p></description>
  <impact type="high"><p>x</p></impact>
  <workaround><p>x</p></workaround>
  <resolution><p>x</p></resolution>
  <references><uri link="https://nvd.nist.gov/vuln/detail/CVE-2026-0001">CVE-2026-0001</uri></references>
</glsa>"#
        )
    }

    fn range(kind: &str, version: &str) -> VersionRange {
        VersionRange {
            range: RangeKind::parse(kind).unwrap_or_else(|| panic!("{kind}")),
            version: version.into(),
            slot: None,
        }
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_range_type() {
        let cases = [
            ("lt", "1.2", "1.1", true),
            ("lt", "1.2", "1.2", false),
            ("le", "1.2", "1.2", true),
            ("le", "1.2", "1.2-r1", false),
            ("eq", "1.2", "1.2-r0", true),
            ("eq", "1.2", "1.2-r1", false),
            ("eq", "1.2*", "1.2.5", true),
            ("eq", "1.2*", "1.3", false),
            ("ge", "1.2", "1.2", true),
            ("ge", "1.2", "1.1.9", false),
            ("gt", "1.2", "1.2_p1", true),
            ("gt", "1.2", "1.2_rc1", false),
            ("rlt", "1.2-r2", "1.2-r1", true),
            ("rlt", "1.2-r2", "1.1-r1", false),
            ("rle", "1.2-r2", "1.2-r2", true),
            ("rle", "1.2-r2", "1.2-r3", false),
            ("rge", "1.2-r2", "1.2-r3", true),
            ("rge", "1.2-r2", "1.3", false),
            ("rgt", "1.2-r2", "1.2-r3", true),
            ("rgt", "1.2-r2", "1.2-r2", false),
        ];
        for (kind, bound, installed, expected) in cases {
            assert_eq!(
                range(kind, bound).contains(&v(installed), "0"),
                expected,
                "{installed} in {kind} {bound}"
            );
        }
    }

    #[test]
    fn slot_limits_a_range() {
        let mut r = range("lt", "2");
        r.slot = Some("1".into());
        assert!(r.contains(&v("1.5"), "1"));
        assert!(r.contains(&v("1.5"), "1/1.5"));
        assert!(!r.contains(&v("1.5"), "0"));
    }

    #[test]
    fn parses_and_matches() {
        let xml = glsa(
            "202601-01",
            r#"<package name="dev-libs/libfoo" auto="yes" arch="*">
                 <unaffected range="ge">2</unaffected>
                 <vulnerable range="lt">2</vulnerable>
               </package>"#,
        );
        let db = AdvisoryDb::from_documents([("glsa-202601-01.xml", xml.as_str())])
            .unwrap_or_else(|e| panic!("{e}"));
        let a = &db.advisories[0];
        assert_eq!(a.id, "202601-01");
        assert_eq!(a.severity, "high");
        assert_eq!(a.bugs, ["123456"]);
        assert_eq!(
            a.references,
            ["https://nvd.nist.gov/vuln/detail/CVE-2026-0001"]
        );
        let hits = db.check(
            [
                PackageRef {
                    cpv: "dev-libs/libfoo-1",
                    slot: "0",
                },
                PackageRef {
                    cpv: "app-misc/hello-1",
                    slot: "0",
                },
            ],
            "amd64",
        );
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].cpv, "dev-libs/libfoo-1");
        assert_eq!(hits[0].unaffected, [">=2"]);
        let none = db.check(
            [PackageRef {
                cpv: "dev-libs/libfoo-2",
                slot: "0",
            }],
            "amd64",
        );
        assert!(none.is_empty());
    }

    #[test]
    fn arch_list_applies() {
        let xml = glsa(
            "202601-02",
            r#"<package name="dev-libs/libfoo" auto="yes" arch="x86 arm">
                 <vulnerable range="lt">2</vulnerable>
               </package>"#,
        );
        let db = AdvisoryDb::from_documents([("glsa-202601-02.xml", xml.as_str())])
            .unwrap_or_else(|e| panic!("{e}"));
        let pkg = [PackageRef {
            cpv: "dev-libs/libfoo-1",
            slot: "0",
        }];
        assert!(db.check(pkg, "amd64").is_empty());
        assert_eq!(db.check(pkg, "arm").len(), 1);
    }

    #[test]
    fn fixture_advisories_apply_as_designed() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/repo/metadata/glsa");
        let db = AdvisoryDb::from_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(db.advisories.len(), 3);
        let installed = [
            PackageRef {
                cpv: "dev-libs/libfoo-1",
                slot: "0",
            },
            PackageRef {
                cpv: "app-misc/hello-1",
                slot: "0",
            },
        ];
        let hits = db.check(installed, "amd64");
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        // 202611-02's range excludes libfoo-1; 202611-03 is for hello's slot 2.
        assert_eq!(ids, ["202611-01"]);
        let slot2 = db.check(
            [PackageRef {
                cpv: "app-misc/hello-2.1",
                slot: "2",
            }],
            "amd64",
        );
        assert_eq!(slot2.len(), 1);
        assert_eq!(slot2[0].id, "202611-03");
    }

    #[test]
    fn hostile_documents_are_errors() {
        for (xml, needle) in [
            ("not xml", "not a valid GLSA"),
            ("<foo/>", "<foo>"),
            ("<glsa/>", "no id"),
            (r#"<glsa id="1"/>"#, "no <affected>"),
            (
                r#"<glsa id="1"><affected><package name="libfoo"/></affected></glsa>"#,
                "invalid package name",
            ),
            (
                r#"<glsa id="1"><affected><package name="a/b"><vulnerable range="lol">1</vulnerable></package></affected></glsa>"#,
                "invalid range",
            ),
            (
                r#"<glsa id="1"><affected><package name="a/b"><vulnerable range="lt">x.y</vulnerable></package></affected></glsa>"#,
                "invalid version",
            ),
            (
                r#"<!DOCTYPE glsa [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;"><!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">]><glsa id="&h;"/>"#,
                "not a valid GLSA",
            ),
        ] {
            let err = Advisory::parse(xml, "glsa-x.xml")
                .err()
                .unwrap_or_else(|| panic!("{xml} should fail"));
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
