//! `staves build --sbom`, the size report, the advisory check and `staves inspect`, end to end: the real Docker
//! engine, real Portage, the fixture images, and the reference validators from PyPI (`spdx-tools`'s `pyspdxtools`
//! and `cyclonedx-python-lib`'s JSON validator, in the virtualenv that `tests/run.sh` makes and names in
//! `STAVES_SBOM_VALIDATORS`).
//!
//! With `STAVES_REQUIRE_DOCKER=1` (CI) a missing engine, fixture image or validator fails the tests instead of
//! skipping them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{BUILDER, PORTAGE, docker, engine_ready, lock, required, text};

/// The virtualenv with `pyspdxtools` and `cyclonedx-python-lib`, when there is one.
fn validators() -> Option<PathBuf> {
    let venv = std::env::var_os("STAVES_SBOM_VALIDATORS").map(PathBuf::from);
    let ok = venv
        .as_ref()
        .is_some_and(|v| v.join("bin/pyspdxtools").is_file() && v.join("bin/python").is_file());
    assert!(
        ok || !required(),
        "STAVES_REQUIRE_DOCKER=1 but STAVES_SBOM_VALIDATORS does not name a virtualenv with spdx-tools and \
         cyclonedx-python-lib (tests/run.sh makes it in target/sbom-venv)"
    );
    if !ok {
        eprintln!("skipping: no SBOM validators (set STAVES_SBOM_VALIDATORS, see tests/run.sh)");
    }
    ok.then(|| venv.unwrap())
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The hello example under a tag of its own, a cache volume and a local store of its own; removed on drop.
struct Case {
    dir: tempfile::TempDir,
    cache: String,
    tag: String,
}

impl Case {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tag = format!("staves-e2e/{name}:t{}", std::process::id());
        let (repo, version) = tag.split_once(':').unwrap();
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/staves.toml"),
        )
        .unwrap();
        let body: String = example
            .lines()
            .filter(|l| !l.starts_with("name ="))
            .map(|l| format!("{l}\n"))
            .collect();
        let spec = format!("name = '{repo}'\nversion = '{version}'\n{body}");
        std::fs::write(dir.path().join("staves.toml"), spec).unwrap();
        Self {
            dir,
            cache: format!("staves-e2e-cache-{name}-{}", std::process::id()),
            tag,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn staves(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_staves"));
        cmd.env("HOME", self.dir.path())
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env_remove("DOCKER_HOST")
            .env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    fn build(&self, extra: &[&str]) -> Output {
        self.staves()
            .arg("build")
            .arg("--config")
            .arg(self.path("staves.toml"))
            .args([
                "--builder",
                BUILDER,
                "--portage",
                PORTAGE,
                "--build-cache",
                &self.cache,
                "--jobs",
                "2",
                "--no-ssh",
                "--no-netrc",
            ])
            .args(extra)
            .output()
            .unwrap()
    }

    fn inspect(&self, target: &str, extra: &[&str]) -> Output {
        self.staves()
            .args(["inspect", target])
            .args(extra)
            .output()
            .unwrap()
    }

    fn image_exists(&self) -> bool {
        docker(&["image", "inspect", &self.tag]).status.success()
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag]);
        let _ = docker(&["volume", "rm", "-f", &self.cache]);
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn validate_spdx(venv: &Path, file: &Path) {
    let out = Command::new(venv.join("bin/pyspdxtools"))
        .arg("-i")
        .arg(file)
        .output()
        .unwrap();
    assert_ok(&out, &format!("pyspdxtools -i {}", file.display()));
    // pyspdxtools reports validation problems on stdout/stderr and still exits 0 in some versions: be strict.
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr)).to_lowercase();
    assert!(
        !all.contains("validation error") && !all.contains("invalid"),
        "pyspdxtools found problems in {}:\n{all}",
        file.display()
    );
}

fn validate_cyclonedx(venv: &Path, file: &Path) {
    let script = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
with open(sys.argv[1]) as f:
    data = f.read()
errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(data)
if errors:
    print("invalid:", errors, file=sys.stderr)
    sys.exit(1)
print("valid")
"#;
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap();
    assert_ok(
        &out,
        &format!("the CycloneDX 1.5 validator on {}", file.display()),
    );
    assert_eq!(text(&out.stdout).trim(), "valid");
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The SPDX package named `name` (`category/package`).
fn spdx_package<'a>(doc: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
}

fn purls(package: &serde_json::Value) -> Vec<String> {
    package["externalRefs"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter(|r| r["referenceType"] == "purl")
                .map(|r| r["referenceLocator"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The referrer of the image in the OCI layout `dir`: (its subject's digest, the SPDX document's bytes).
fn referrer(dir: &Path) -> (String, Vec<u8>) {
    let index = json(&dir.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == "application/spdx+json")
        .unwrap_or_else(|| panic!("no SPDX referrer in {index}"));
    let blob = |digest: &str| {
        std::fs::read(
            dir.join("blobs/sha256")
                .join(digest.strip_prefix("sha256:").unwrap()),
        )
        .unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(entry["digest"].as_str().unwrap())).unwrap();
    assert_eq!(manifest["artifactType"], "application/spdx+json");
    let document = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    (
        manifest["subject"]["digest"].as_str().unwrap().to_owned(),
        document,
    )
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[test]
fn hello_sbom_in_both_formats_the_referrer_the_size_report_and_inspect() {
    if !engine_ready() {
        return;
    }
    let Some(venv) = validators() else {
        return;
    };
    let _lock = lock();
    let case = Case::new("sbom");
    let (layout, spdx) = (case.path("layout"), case.path("hello.spdx.json"));
    let oci = format!("oci:{}", p(&layout));

    // 1. SPDX, JSON report, an OCI layout and the engine.
    let out = case.build(&[
        "-o",
        &oci,
        "-o",
        "docker",
        "--sbom",
        p(&spdx),
        "--format",
        "json",
    ]);
    assert_ok(&out, "staves build --sbom");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: GLSA 202611-01") && stderr.contains("dev-libs/libfoo-1"),
        "no advisory warning:\n{stderr}"
    );
    assert!(!stderr.contains("202611-02"), "{stderr}");
    assert!(!stderr.contains("202611-03"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let advisories = report["advisories"].as_array().unwrap();
    assert_eq!(advisories.len(), 1, "{report}");
    assert_eq!(advisories[0]["id"], "202611-01");
    assert_eq!(advisories[0]["cpv"], "dev-libs/libfoo-1");
    // The size report: every package, largest first, and what Staves added.
    let size = &report["size"];
    let sizes: Vec<u64> = size["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes.len(), 6, "{size}");
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{size}");
    assert_eq!(size["packages"][0]["cpv"], "sys-libs/glibc-2.36");
    let added: Vec<&str> = size["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reason"].as_str().unwrap())
        .collect();
    assert!(added.contains(&"locale archive"), "{size}");
    assert_eq!(
        size["total"].as_u64().unwrap(),
        size["packages_total"].as_u64().unwrap() + size["added_total"].as_u64().unwrap()
    );
    assert_eq!(report["sbom_file"], p(&spdx));
    let digest = report["image"]["digest"].as_str().unwrap().to_owned();

    // The document: valid SPDX 2.3, the runtime packages only, with purls, licenses and USE.
    validate_spdx(&venv, &spdx);
    let doc = json(&spdx);
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    for cp in [
        "app-misc/hello-c",
        "app-misc/hello",
        "dev-libs/libfoo",
        "app-shells/tinysh",
        "virtual/libc",
        "sys-libs/glibc",
    ] {
        assert!(
            spdx_package(&doc, cp).is_some(),
            "{cp} missing from the SBOM"
        );
    }
    assert!(spdx_package(&doc, "dev-util/buildtool").is_none());
    let libfoo = spdx_package(&doc, "dev-libs/libfoo").unwrap();
    assert_eq!(purls(libfoo), ["pkg:ebuild/dev-libs/libfoo@1"]);
    assert_eq!(libfoo["licenseDeclared"], "MIT");
    let hello = spdx_package(&doc, "app-misc/hello").unwrap();
    assert!(
        hello["comment"].as_str().unwrap().contains("use: nls"),
        "{hello}"
    );
    let glibc = spdx_package(&doc, "sys-libs/glibc").unwrap();
    assert_eq!(purls(glibc), ["pkg:ebuild/sys-libs/glibc@2.36"]);
    let license = glibc["licenseDeclared"].as_str().unwrap();
    assert!(
        license.starts_with("LGPL-2.1-or-later AND BSD-3-Clause")
            && license.contains("LicenseRef-inner-net"),
        "{license}"
    );
    // The image is the described root, by its manifest digest.
    let image = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-Image")
        .unwrap();
    assert!(
        purls(image)[0].contains(&digest.replace(':', "%3A")),
        "{image}"
    );

    // The referrer in the layout: skopeo reads the image manifest whose digest the referrer names as subject,
    // and the referrer holds the same document.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("{oci}:{}", case.tag.split_once(':').unwrap().1))
        .output()
        .unwrap();
    assert_ok(&raw, "skopeo inspect --raw");
    let (subject, document) = referrer(&layout);
    assert_eq!(sha256(&raw.stdout), digest);
    assert_eq!(subject, digest);
    assert_eq!(document, std::fs::read(&spdx).unwrap());
    // The config has the label with the SBOM's digest.
    let label = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"io.staves.sbom.digest\"}}",
        &case.tag,
    ]);
    assert!(text(&label.stdout).trim().starts_with("sha256:"));

    // 2. `staves inspect`, from the referrer and from the engine image (label + local store).
    for target in [oci.as_str(), case.tag.as_str()] {
        let out = case.inspect(target, &[]);
        assert_ok(&out, &format!("staves inspect {target}"));
        let shown = text(&out.stdout);
        assert!(shown.contains(&digest), "{shown}");
        assert!(shown.contains("6 packages by installed size"), "{shown}");
        assert!(shown.contains("sys-libs/glibc-2.36"), "{shown}");
        assert!(
            shown.contains("added by Staves: /usr/lib/locale/locale-archive"),
            "{shown}"
        );
        let out = case.inspect(target, &["--format", "json"]);
        assert_ok(&out, &format!("staves inspect --format json {target}"));
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(value["size"], *size, "{target}");
    }
    let missing = case.inspect(&format!("oci:{}", p(&case.path("nothing"))), &[]);
    assert!(!missing.status.success());

    // 3. CycloneDX from a second, full build of the same spec: the SBOM bytes are the same (the referrer).
    let (layout2, cdx) = (case.path("layout2"), case.path("hello.cdx.json"));
    let out = case.build(&[
        "-o",
        &format!("oci:{}", p(&layout2)),
        "--sbom",
        p(&cdx),
        "--sbom-format",
        "cyclonedx-json",
        "--rebuild",
    ]);
    assert_ok(&out, "staves build --sbom-format cyclonedx-json");
    validate_cyclonedx(&venv, &cdx);
    let bom = json(&cdx);
    assert_eq!(bom["specVersion"], "1.5");
    let components = bom["components"].as_array().unwrap();
    let libfoo = components
        .iter()
        .find(|c| c["purl"] == "pkg:ebuild/dev-libs/libfoo@1")
        .unwrap_or_else(|| panic!("no libfoo in {bom}"));
    assert_eq!(libfoo["licenses"][0]["expression"], "MIT");
    assert!(
        components
            .iter()
            .all(|c| !c["name"].as_str().unwrap_or("").contains("buildtool"))
    );
    assert_eq!(
        referrer(&layout2).1,
        std::fs::read(&spdx).unwrap(),
        "the SBOM differs between two builds of the same spec"
    );
    // The text report ends with the size report (top 10) and the warning.
    let stderr = text(&out.stderr);
    assert!(stderr.contains("6 packages by installed size"), "{stderr}");
    assert!(stderr.contains("warning: GLSA 202611-01"), "{stderr}");

    // 4. An unchanged spec served from the local image store: the same SBOM, without a builder.
    let again = case.path("again.spdx.json");
    let out = case.build(&["-o", "docker", "--sbom", p(&again)]);
    assert_ok(&out, "staves build (no-op)");
    assert!(
        text(&out.stderr).contains("unchanged"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("warning: GLSA 202611-01"));
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&spdx).unwrap(),
        "the SBOM of the stored image differs from the build's"
    );
}

#[test]
fn deny_advisories_exits_6_and_writes_nothing() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("deny");
    let (layout, archive, sbom) = (
        case.path("layout"),
        case.path("image.tar"),
        case.path("sbom.json"),
    );
    let out = case.build(&[
        "-o",
        &format!("oci:{}", p(&layout)),
        "-o",
        &format!("oci-archive:{}", p(&archive)),
        "-o",
        "docker",
        "--sbom",
        p(&sbom),
        "--deny-advisories",
    ]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("GLSA 202611-01") && stderr.contains("dev-libs/libfoo-1"),
        "{stderr}"
    );
    assert!(!case.image_exists(), "--deny-advisories tagged the image");
    for path in [&layout, &archive, &sbom] {
        assert!(!path.exists(), "{} was written", path.display());
    }
    let leftovers: Vec<_> = std::fs::read_dir(case.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staves-") || n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
