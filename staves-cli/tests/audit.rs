//! `staves audit` against the test repository's GLSA fixtures (a directory, no engine needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn glsa_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/repo/metadata/glsa")
}

/// A minimal SPDX 2.3 document in the shape `staves build` writes: the image and one package per cpv.
fn sbom(packages: &[(&str, &str, &str)]) -> String {
    let mut list = vec![serde_json::json!({
        "SPDXID": "SPDXRef-Image", "name": "staves-test/audit", "versionInfo": "v1",
        "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
    })];
    for (cp, version, slot) in packages {
        list.push(serde_json::json!({
            "SPDXID": format!("SPDXRef-Package-{}", cp.replace('/', "-")),
            "name": cp, "versionInfo": version, "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": format!("pkg:ebuild/{cp}@{version}")}],
            "comment": format!("slot: {slot}\nrepository: gentoo\nuse: "),
        }));
    }
    serde_json::json!({
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": "staves-test/audit:v1", "documentNamespace": "https://spdx.org/spdxdocs/staves/test",
        "creationInfo": {"created": "1970-01-01T00:00:00Z", "creators": ["Tool: staves-0.1.0"]},
        "packages": list,
    })
    .to_string()
}

fn audit(document: &str, format: &str) -> std::process::Output {
    audit_with(document, format, &[])
}

fn audit_with(document: &str, format: &str, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sbom.spdx.json");
    std::fs::write(&path, document).unwrap();
    Command::new(env!("CARGO_BIN_EXE_staves"))
        .args(["audit", "--sbom"])
        .arg(&path)
        .arg("--glsa-dir")
        .arg(glsa_dir())
        .args(["--format", format])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn an_affected_package_exits_6_and_names_the_advisory() {
    let out = audit(
        &sbom(&[("dev-libs/libfoo", "1", "0"), ("app-misc/hello", "1", "0")]),
        "text",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{stdout}");
    assert!(stdout.contains("GLSA 202611-01"), "{stdout}");
    assert!(stdout.contains("dev-libs/libfoo-1"), "{stdout}");
    // 202611-02's range excludes libfoo-1 and 202611-03 is for hello's slot 2.
    assert!(!stdout.contains("202611-02"), "{stdout}");
    assert!(!stdout.contains("202611-03"), "{stdout}");
}

#[test]
fn a_fixed_version_is_clean_and_json_lists_nothing() {
    let out = audit(&sbom(&[("dev-libs/libfoo", "2", "0")]), "json");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["advisories"], serde_json::json!([]));
    assert_eq!(report["advisories_checked"], 3);
    assert_eq!(report["packages_checked"], 1);
}

#[test]
fn another_slot_matches_its_own_advisory() {
    let out = audit(&sbom(&[("app-misc/hello", "2.1", "2")]), "json");
    assert_eq!(out.status.code(), Some(6));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["advisories"][0]["id"], "202611-03");
}

#[test]
fn a_broken_sbom_is_a_clear_error() {
    let out = audit("not json", "text");
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not an SPDX 2.3 JSON document"),
        "{stderr}"
    );
}

/// `staves audit` counted a package whose version is `notaversion` or empty as checked and exited 0 ("no advisory
/// applies"), and skipped a package without a purl without a word. It fails closed now: each is a warning, the JSON
/// report lists it under `unchecked`, and the exit code is 8 unless `--allow-unchecked`.
#[test]
fn packages_audit_cannot_check_are_warnings_and_exit_8() {
    let mut doc: serde_json::Value = serde_json::from_str(&sbom(&[
        ("dev-libs/libfoo", "notaversion", "0"),
        ("app-misc/hello", "", "0"),
        ("dev-libs/libfoo", "2", "0"),
    ]))
    .unwrap();
    doc["packages"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "SPDXID": "SPDXRef-Package-nopurl", "name": "sys-libs/nopurl", "versionInfo": "1",
            "downloadLocation": "NOASSERTION", "filesAnalyzed": false,
        }));
    let doc = doc.to_string();

    let out = audit(&doc, "text");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(8), "{stdout}");
    for needle in [
        "warning: not checked: dev-libs/libfoo notaversion: its version `notaversion`",
        "is not a Portage version",
        "warning: not checked: app-misc/hello: its purl `pkg:ebuild/app-misc/hello@` has an empty version",
        "warning: not checked: sys-libs/nopurl 1: it has no purl",
        "1 package(s) checked, 3 could not be checked",
        "no advisory applies to the packages checked",
    ] {
        assert!(stdout.contains(needle), "{needle:?} in\n{stdout}");
    }

    let out = audit(&doc, "json");
    assert_eq!(out.status.code(), Some(8));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["packages_checked"], 1);
    let unchecked = report["unchecked"].as_array().unwrap();
    assert_eq!(unchecked.len(), 3, "{report}");
    assert!(
        unchecked
            .iter()
            .all(|u| !u["reason"].as_str().unwrap().is_empty())
    );

    let out = audit_with(&doc, "text", &["--allow-unchecked"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("warning: not checked:"));

    // Advisories still win over unchecked packages.
    let mut with_finding: serde_json::Value = serde_json::from_str(&doc).unwrap();
    with_finding["packages"][3]["externalRefs"][0]["referenceLocator"] =
        serde_json::json!("pkg:ebuild/dev-libs/libfoo@1");
    let out = audit(&with_finding.to_string(), "json");
    assert_eq!(out.status.code(), Some(6));
}

/// A clean audit of well-formed packages lists no unchecked ones (and exits 0 without `--allow-unchecked`).
#[test]
fn a_complete_audit_has_no_unchecked_packages() {
    let out = audit(&sbom(&[("dev-libs/libfoo", "2", "0")]), "json");
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unchecked"], serde_json::json!([]));
}
