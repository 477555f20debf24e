//! An SBOM attached as an OCI 1.1 referrer: present in `oci:` and `oci-archive:` outputs, pointing at the image
//! manifest, found again by `staves_core::sbom`, and the image itself still read by skopeo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sha2::{Digest, Sha256};
use staves_core::{ImageSpec, ImageWriter, Output, Referrer};
use std::process::Command;
use std::sync::Arc;

fn spec() -> ImageSpec {
    ImageSpec::parse(
        "name = 'staves-test/referrer'\nversion = 'v1'\npackages = ['app-misc/hello']\n",
        None,
    )
    .unwrap()
}

fn write(dir: &std::path::Path) -> staves_core::ImageReport {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/hello"), b"#!/bin/sh\necho hi\n").unwrap();
    ImageWriter::new(&spec())
        .referrer(Arc::new(|digest: &str| {
            Ok(Referrer::new(
                "application/spdx+json",
                "sbom.spdx.json",
                format!("{{\"describes\": \"{digest}\"}}").into_bytes(),
            ))
        }))
        .write_dir(
            &root,
            &[
                Output::OciDir(dir.join("layout")),
                Output::OciArchive(dir.join("image.tar")),
            ],
        )
        .unwrap()
}

#[test]
fn the_layout_holds_a_referrer_whose_subject_is_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let report = write(tmp.path());
    let layout = tmp.path().join("layout");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    assert_eq!(manifests[0]["digest"], report.digest.as_str());
    assert_eq!(manifests[1]["artifactType"], "application/spdx+json");
    let blob = |digest: &str| {
        let bytes = std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            digest,
            "blob digest"
        );
        bytes
    };
    let referrer: serde_json::Value =
        serde_json::from_slice(&blob(manifests[1]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(referrer["artifactType"], "application/spdx+json");
    assert_eq!(referrer["subject"]["digest"], report.digest.as_str());
    assert_eq!(
        referrer["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(blob(referrer["config"]["digest"].as_str().unwrap()), b"{}");
    let document = blob(referrer["layers"][0]["digest"].as_str().unwrap());
    assert_eq!(
        String::from_utf8(document).unwrap(),
        format!("{{\"describes\": \"{}\"}}", report.digest)
    );

    let expected = format!("{{\"describes\": \"{}\"}}", report.digest);
    assert_eq!(
        staves_core::sbom::from_oci_layout(&layout)
            .unwrap()
            .as_deref(),
        Some(expected.as_str())
    );
    assert_eq!(
        staves_core::sbom::from_oci_archive(&tmp.path().join("image.tar"))
            .unwrap()
            .as_deref(),
        Some(expected.as_str())
    );
}

#[test]
fn skopeo_reads_the_image_next_to_its_referrer() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        assert!(
            std::env::var("STAVES_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "skopeo is required (tests/install-deps.sh installs it)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let report = write(tmp.path());
    for reference in [
        format!("oci:{}:v1", tmp.path().join("layout").display()),
        format!("oci-archive:{}:v1", tmp.path().join("image.tar").display()),
    ] {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", &reference])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout))),
            report.digest,
            "{reference}"
        );
    }
}
