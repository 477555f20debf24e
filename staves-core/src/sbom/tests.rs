use super::*;

fn package(cpv: &str, license: &str, size: u64) -> InstalledPackage {
    InstalledPackage {
        cpv: cpv.into(),
        use_flags: vec!["nls".into()],
        repository: "gentoo".into(),
        binary: Some(false),
        slot: Some("0".into()),
        license: Some(license.into()),
        homepage: Some("https://example.org/ https://mirror.example.org/".into()),
        description: Some(format!("{cpv} for tests")),
        size: Some(size),
        files: Some(3),
    }
}

fn sample() -> Sbom {
    let mut extra = package("app-misc/extra-1", "MIT", 10);
    extra.repository = "staves-extra".into();
    Sbom {
        name: "staves-test/hello".into(),
        tag: "latest".into(),
        manifest_digest: format!("sha256:{}", "ab".repeat(32)),
        builder_image: "staves-test/stage3:latest".into(),
        builder_image_id: Some(format!("sha256:{}", "cd".repeat(32))),
        portage_image: "staves-test/portage:latest".into(),
        portage_image_id: Some(format!("sha256:{}", "ef".repeat(32))),
        portage_timestamp: Some("Mon, 30 Nov 2026 00:00:01 +0000".into()),
        staves_version: "0.1.0".into(),
        created: 0,
        lock_hash: None,
        packages: vec![
            extra,
            package("app-misc/hello-1", "GPL-2 || ( MIT BSD )", 2048),
            package("dev-libs/libfoo-1", "Staves-Test-EULA", 4096),
        ],
        unreadable: Vec::new(),
        added_files: vec![AddedFile {
            path: "usr/lib/locale/locale-archive".into(),
            size: 3_000_000,
            reason: "locale archive".into(),
        }],
    }
}

#[test]
fn purls_follow_the_ebuild_type() {
    let s = sample();
    assert_eq!(package_purl(&s.packages[1]), "pkg:ebuild/app-misc/hello@1");
    assert_eq!(
        package_purl(&s.packages[0]),
        "pkg:ebuild/app-misc/extra@1?repository=staves-extra"
    );
    let mut plus = package("x11-libs/gtk+-2.24.33-r3", "LGPL-2", 1);
    plus.repository = String::new();
    assert_eq!(package_purl(&plus), "pkg:ebuild/x11-libs/gtk%2B@2.24.33-r3");
    assert_eq!(
        s.image_purl(),
        format!(
            "pkg:oci/hello@sha256%3A{}?repository_url=staves-test&tag=latest",
            "ab".repeat(32)
        )
    );
}

#[test]
fn spdx_document_has_everything_the_issue_names() {
    let text = sample().to_spdx_json();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    let packages = doc["packages"]
        .as_array()
        .unwrap_or_else(|| panic!("packages"));
    let hello = packages
        .iter()
        .find(|p| p["name"] == "app-misc/hello")
        .unwrap_or_else(|| panic!("hello"));
    assert_eq!(hello["versionInfo"], "1");
    assert_eq!(
        hello["licenseDeclared"],
        "GPL-2.0-only AND (MIT OR BSD-3-Clause)"
    );
    assert_eq!(hello["homepage"], "https://example.org/");
    assert_eq!(
        hello["externalRefs"][0]["referenceLocator"],
        "pkg:ebuild/app-misc/hello@1"
    );
    let comment = hello["comment"].as_str().unwrap_or_default();
    assert!(comment.contains("use: nls"), "{comment}");
    assert!(comment.contains("installed-size: 2048"), "{comment}");
    let libfoo = packages
        .iter()
        .find(|p| p["name"] == "dev-libs/libfoo")
        .unwrap_or_else(|| panic!("libfoo"));
    assert_eq!(libfoo["licenseDeclared"], "LicenseRef-Staves-Test-EULA");
    assert_eq!(
        doc["hasExtractedLicensingInfos"][0]["licenseId"],
        "LicenseRef-Staves-Test-EULA"
    );
    let image = &packages[0];
    assert_eq!(image["SPDXID"], "SPDXRef-Image");
    assert_eq!(image["checksums"][0]["checksumValue"], "ab".repeat(32));
    let builder = packages
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-Builder")
        .unwrap_or_else(|| panic!("builder"));
    assert_eq!(
        builder["versionInfo"],
        format!("sha256:{}", "cd".repeat(32))
    );
    let relationships = doc["relationships"].as_array().map_or(0, Vec::len);
    // DESCRIBES + builder + snapshot + one CONTAINS per package.
    assert_eq!(relationships, 3 + 3);
}

#[test]
fn documents_are_reproducible() {
    assert_eq!(sample().to_spdx_json(), sample().to_spdx_json());
    let a = sample()
        .to_cyclonedx_json()
        .unwrap_or_else(|e| panic!("{e}"));
    let b = sample()
        .to_cyclonedx_json()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a, b);
    let mut other = sample();
    other.manifest_digest = format!("sha256:{}", "00".repeat(32));
    assert_ne!(other.to_spdx_json(), sample().to_spdx_json());
}

#[test]
fn cyclonedx_document_carries_components_and_properties() {
    let text = sample()
        .to_cyclonedx_json()
        .unwrap_or_else(|e| panic!("{e}"));
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(doc["bomFormat"], "CycloneDX");
    assert_eq!(doc["specVersion"], "1.5");
    assert!(
        doc["serialNumber"]
            .as_str()
            .is_some_and(|s| s.starts_with("urn:uuid:"))
    );
    assert_eq!(doc["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
    assert_eq!(doc["metadata"]["component"]["type"], "container");
    let comps = doc["components"]
        .as_array()
        .unwrap_or_else(|| panic!("components"));
    assert_eq!(comps.len(), 3);
    let hello = comps
        .iter()
        .find(|c| c["name"] == "app-misc/hello")
        .unwrap_or_else(|| panic!("hello"));
    assert_eq!(hello["purl"], "pkg:ebuild/app-misc/hello@1");
    assert_eq!(
        hello["licenses"][0]["expression"],
        "GPL-2.0-only AND (MIT OR BSD-3-Clause)"
    );
    assert!(hello["properties"].as_array().is_some_and(|p| {
        p.iter()
            .any(|p| p["name"] == "gentoo:use" && p["value"] == "nls")
    }));
}

#[test]
fn spdx_reads_back() {
    let original = sample();
    let back =
        Sbom::from_spdx_json(&original.to_spdx_json(), "test").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.name, original.name);
    assert_eq!(back.tag, original.tag);
    assert_eq!(back.manifest_digest, original.manifest_digest);
    assert_eq!(back.portage_image_id, original.portage_image_id);
    assert_eq!(back.portage_timestamp, original.portage_timestamp);
    assert_eq!(back.added_files, original.added_files);
    let mut want = original.packages.clone();
    want.sort_by(|a, b| a.cpv.cmp(&b.cpv));
    for (got, want) in back.packages.iter().zip(&want) {
        assert_eq!(got.cpv, want.cpv);
        assert_eq!(got.slot, want.slot);
        assert_eq!(got.repository, want.repository);
        assert_eq!(got.use_flags, want.use_flags);
        assert_eq!(got.size, want.size);
        assert_eq!(got.license, want.license);
    }
    assert_eq!(back.size_report(), original.size_report());
    assert!(Sbom::from_spdx_json("{}", "x").is_err());
    assert!(Sbom::from_spdx_json("garbage", "x").is_err());
}

#[test]
fn size_report_sorts_and_sums() {
    let report = sample().size_report();
    let order: Vec<&str> = report.packages.iter().map(|p| p.cpv.as_str()).collect();
    assert_eq!(
        order,
        ["dev-libs/libfoo-1", "app-misc/hello-1", "app-misc/extra-1"]
    );
    assert_eq!(report.packages_total, 4096 + 2048 + 10);
    assert_eq!(report.total, report.packages_total + 3_000_000);
    let text = report.render_text(2);
    assert!(text.contains("largest 2 of 3 packages"), "{text}");
    assert!(!text.contains("extra-1"), "{text}");
    assert!(text.contains("locale-archive"), "{text}");
    assert_eq!(human_size(1536), "1.5 KiB");
    assert_eq!(human_size(12), "12 B");
}

#[test]
fn cyclonedx_reads_back() {
    let original = sample();
    let text = original
        .to_cyclonedx_json()
        .unwrap_or_else(|e| panic!("{e}"));
    let back = Sbom::from_json(&text, "test").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.name, original.name);
    assert_eq!(back.manifest_digest, original.manifest_digest);
    assert_eq!(back.portage_timestamp, original.portage_timestamp);
    let cpvs: Vec<&str> = back.packages.iter().map(|p| p.cpv.as_str()).collect();
    assert_eq!(
        cpvs,
        ["app-misc/extra-1", "app-misc/hello-1", "dev-libs/libfoo-1"]
    );
    assert_eq!(back.packages[0].repository, "staves-extra");
    assert_eq!(back.packages[1].slot.as_deref(), Some("0"));
    assert_eq!(back.packages[2].size, Some(4096));
    let spdx = Sbom::from_json(&original.to_spdx_json(), "test").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spdx.packages.len(), 3);
}

#[test]
fn the_label_digest_does_not_depend_on_the_image_digest() {
    let original = sample();
    let other = original.with_manifest_digest(&format!("sha256:{}", "f".repeat(64)));
    assert_ne!(other.to_spdx_json(), original.to_spdx_json());
    assert_eq!(other.content_digest(), original.content_digest());
    assert!(original.content_digest().starts_with("sha256:"));
    // But it does depend on what is in the image.
    let mut fewer = original.clone();
    fewer.packages.pop();
    assert_ne!(fewer.content_digest(), original.content_digest());
}

/// Components that name no readable Gentoo package are kept as `unreadable`, with the reason, in both formats;
/// nothing Staves writes itself has any.
#[test]
fn components_without_a_readable_package_are_listed_as_unreadable() {
    let text = sample()
        .to_cyclonedx_json()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        Sbom::from_json(&text, "t")
            .unwrap_or_else(|e| panic!("{e}"))
            .unreadable
            .is_empty()
    );
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let comps = doc["components"]
        .as_array_mut()
        .unwrap_or_else(|| panic!("components"));
    comps.push(
        serde_json::json!({"type": "library", "name": "left-pad", "version": "1.3.0",
                                  "purl": "pkg:npm/left-pad@1.3.0"}),
    );
    comps.push(
        serde_json::json!({"type": "library", "name": "app-misc/odd", "version": "x",
                                  "purl": "pkg:ebuild/app-misc/odd@notaversion"}),
    );
    comps.push(serde_json::json!({"type": "library", "name": "no-purl"}));
    let back = Sbom::from_json(&doc.to_string(), "t").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.packages.len(), sample().packages.len());
    let reasons: Vec<(&str, &str)> = back
        .unreadable
        .iter()
        .map(|u| (u.name.as_str(), u.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "left-pad 1.3.0",
                "its purl `pkg:npm/left-pad@1.3.0` is not a `pkg:ebuild/CATEGORY/PACKAGE@VERSION` package URL"
            ),
            (
                "app-misc/odd x",
                "its version `notaversion` (purl `pkg:ebuild/app-misc/odd@notaversion`) is not a Portage version"
            ),
            (
                "no-purl",
                "it has no purl (package URL), so it names no Gentoo package"
            ),
        ]
    );
}
