//! The library's `docker://` output with an attached referrer (the SBOM): pushed to Debian's `docker-registry`
//! (TLS, htpasswd) with the credentials of an auth file, then read back with skopeo. The registry (2.8) has no
//! referrers API, so the referrer must be listed in the referrers tag index `sha256-<hex>`.
//!
//! With `STAVES_REQUIRE_DOCKER=1` (CI) missing tools fail the test instead of skipping it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../staves-cli/tests/support/mod.rs"]
mod support;

use staves_core::{ImageSpec, ImageWriter, Output, Referrer, RegistryOptions};
use std::process::Command;
use std::sync::Arc;
use support::Registry;

fn skopeo_raw(registry: &Registry, auth: &std::path::Path, reference: &str) -> serde_json::Value {
    let out = support::run(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--authfile"])
            .arg(auth)
            .arg("--cert-dir")
            .arg(registry.ca.dir.path().join("skopeo-certs"))
            .arg(format!("docker://{}/{reference}", registry.address())),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_sbom_referrer_is_pushed_and_listed_in_the_referrers_tag() {
    if !support::tools_present(&["docker-registry", "htpasswd", "openssl", "skopeo", "curl"]) {
        return;
    }
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    // skopeo's --cert-dir wants the CA as ca.crt.
    let certs = registry.ca.dir.path().join("skopeo-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(registry.ca.path("ca.pem"), certs.join("ca.crt")).unwrap();
    let auth = work.path().join("auth.json");
    let basic = format!("{}:{}", Registry::USER, Registry::PASSWORD);
    let encoded = {
        use std::io::Write;
        let mut child = Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(basic.as_bytes())
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{encoded}"}}}}}}"#,
            registry.address()
        ),
    )
    .unwrap();

    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), "NAME=staves-test\n").unwrap();
    let spec = ImageSpec::parse(
        "name = 'staves-test/referrer'\nversion = '3'\npackages = ['app-misc/hello']\n",
        None,
    )
    .unwrap();
    let target = format!("docker://{}/staves-e2e/referrer", registry.address());
    let writer = ImageWriter::new(&spec)
        .registry(
            RegistryOptions::default()
                .auth_file(Some(auth.clone()))
                .cert_dir(Some(certs.clone())),
        )
        .referrer(Arc::new(|subject: &str| {
            Ok(Referrer::new(
                "application/spdx+json",
                "sbom.spdx.json",
                format!(r#"{{"spdxVersion":"SPDX-2.3","name":"{subject}"}}"#).into_bytes(),
            ))
        }));
    let report = writer
        .write_dir(&root, &[target.parse::<Output>().unwrap()])
        .unwrap();
    let pushed = report.outputs[0].pushed.as_ref().unwrap();
    assert_eq!(pushed.digest, report.digest);
    assert_eq!(
        pushed.destination,
        format!("{}/staves-e2e/referrer:3", registry.address())
    );
    assert_eq!(pushed.referrers.len(), 1, "{pushed:?}");
    // The image and the referrer's config and document: 4 blobs.
    assert_eq!(pushed.uploaded_blobs, 4, "{pushed:?}");

    let referrer_digest = &pushed.referrers[0];
    let manifest = skopeo_raw(
        &registry,
        &auth,
        &format!("staves-e2e/referrer@{referrer_digest}"),
    );
    assert_eq!(
        manifest["subject"]["digest"],
        report.digest.as_str(),
        "{manifest}"
    );
    assert_eq!(
        manifest["artifactType"], "application/spdx+json",
        "{manifest}"
    );
    let tag = report.digest.replace(':', "-");
    let index = skopeo_raw(&registry, &auth, &format!("staves-e2e/referrer:{tag}"));
    let listed: Vec<&serde_json::Value> = index["manifests"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1, "{index}");
    assert_eq!(listed[0]["digest"], referrer_digest.as_str(), "{index}");
    assert_eq!(
        listed[0]["artifactType"], "application/spdx+json",
        "{index}"
    );

    // Pushed again: nothing uploaded, and the referrer is listed once.
    let again = writer
        .write_dir(&root, &[target.parse::<Output>().unwrap()])
        .unwrap();
    let pushed = again.outputs[0].pushed.as_ref().unwrap();
    assert_eq!(pushed.uploaded_bytes, 0, "{pushed:?}");
    let index = skopeo_raw(&registry, &auth, &format!("staves-e2e/referrer:{tag}"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
}
