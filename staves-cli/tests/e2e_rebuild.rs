//! Rebuilds on the real engine: binary packages are reused only when they were built with the environment the spec
//! gives their package now, and a warm build with nothing to compile skips the build-dependency step.
//!
//! Needs the engine and the fixture images (`tests/fixtures/build-images.sh`); with `STAVES_REQUIRE_DOCKER=1` the
//! tests fail instead of skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, PoisonError};

const BUILDER: &str = "staves-test/stage3:latest";
const PORTAGE: &str = "staves-test/portage:latest";

fn engine_ready() -> bool {
    let required = std::env::var("STAVES_REQUIRE_DOCKER").as_deref() == Ok("1");
    let ok = [BUILDER, PORTAGE]
        .iter()
        .all(|image| docker(&["image", "inspect", image]).status.success());
    assert!(
        ok || !required,
        "STAVES_REQUIRE_DOCKER=1 but the engine or the fixture images are missing"
    );
    if !ok {
        eprintln!("skipping: no engine or fixture images (run tests/fixtures/build-images.sh)");
    }
    ok
}

/// One engine test at a time in this binary: they are heavy, and the machine is shared.
fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running the docker CLI")
}

/// A spec file, a cache volume and an image tag of this test's own; the volume and the tag are removed on drop.
struct Case {
    dir: tempfile::TempDir,
    name: String,
    cache: String,
    tag: String,
}

impl Case {
    fn new(name: &str) -> Self {
        let id = format!("{name}-{}", std::process::id());
        Self {
            dir: tempfile::tempdir().unwrap(),
            name: name.to_owned(),
            cache: format!("staves-e2e-rebuild-{id}"),
            tag: format!("staves-e2e/rebuild-{name}:t{}", std::process::id()),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Build `spec_body` (the image name and tag are added) and return the JSON report.
    fn build(&self, spec_body: &str) -> Value {
        let (repo, version) = self.tag.split_once(':').unwrap();
        let spec = format!("name = '{repo}'\nversion = '{version}'\n{spec_body}");
        std::fs::write(self.path("staves.toml"), spec).unwrap();
        let rootfs = self.path("rootfs.tar");
        let _ = std::fs::remove_file(&rootfs);
        let out = Command::new(env!("CARGO_BIN_EXE_staves"))
            .arg("build")
            .arg("--config")
            .arg(self.path("staves.toml"))
            .args(["--builder", BUILDER, "--portage", PORTAGE])
            .args([
                "--build-cache",
                &self.cache,
                "--jobs",
                "2",
                "--no-ssh",
                "--no-netrc",
            ])
            .args(["--output", &format!("rootfs:{}", rootfs.display())])
            .args(["--format", "json"])
            .env_remove("DOCKER_HOST")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: staves build failed ({:?}):\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A file of the last build's rootfs.
    fn rootfs_file(&self, wanted: &str) -> String {
        let file = std::fs::File::open(self.path("rootfs.tar")).unwrap();
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                == wanted
            {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
                return text;
            }
        }
        panic!("{wanted} is not in the rootfs");
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag]);
        let _ = docker(&["volume", "rm", "-f", &self.cache]);
    }
}

/// The cpvs of a report list (`built_from_source` or `installed_from_binary`).
fn cpvs(report: &Value, list: &str) -> Vec<String> {
    report["report"][list]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn step<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["report"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} step in {report}"))
}

const HELLO: &str = "app-misc/hello-1";

fn named_env_spec(mark: &str) -> String {
    format!(
        "packages = ['app-misc/hello']\n[env.marks]\nCFLAGS = '-O2 -pipe -D{mark}'\n\
         ['app-misc/hello']\nenv = ['marks']\n"
    )
}

#[test]
fn a_named_env_change_rebuilds_only_its_package_and_flipping_back_reuses_the_first_binary() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("named");

    let cold = case.build(&named_env_spec("MARK_A"));
    assert!(
        cpvs(&cold, "built_from_source").contains(&HELLO.to_owned()),
        "{cold}"
    );
    assert_eq!(step(&cold, "build-deps")["skipped"], false, "{cold}");
    assert!(
        case.rootfs_file("usr/share/hello/build-info.txt")
            .contains("-DMARK_A")
    );

    // Same cache volume, other flags for hello only: hello is built again, nothing else is.
    let changed = case.build(&named_env_spec("MARK_B"));
    let info = case.rootfs_file("usr/share/hello/build-info.txt");
    assert!(
        info.contains("-DMARK_B") && !info.contains("MARK_A"),
        "stale binary package: {info}"
    );
    assert_eq!(cpvs(&changed, "built_from_source"), [HELLO], "{changed}");
    let binary = cpvs(&changed, "installed_from_binary");
    for other in ["dev-libs/libfoo-1", "app-shells/tinysh-1", "virtual/libc-1"] {
        assert!(
            binary.iter().any(|c| c == other),
            "{other} was not reused: {changed}"
        );
    }

    // Back to MARK_A: the first hello binary package matches again, so nothing is compiled and the
    // build-dependency step is skipped, with its reason in the report.
    let back = case.build(&named_env_spec("MARK_A"));
    assert!(
        case.rootfs_file("usr/share/hello/build-info.txt")
            .contains("-DMARK_A")
    );
    assert_eq!(
        cpvs(&back, "built_from_source"),
        Vec::<String>::new(),
        "{back}"
    );
    assert!(
        cpvs(&back, "installed_from_binary").contains(&HELLO.to_owned()),
        "{back}"
    );
    let deps = step(&back, "build-deps");
    assert_eq!(deps["skipped"], true, "{back}");
    assert!(
        deps["reason"].as_str().unwrap().contains("binary package"),
        "{back}"
    );
    assert_eq!(step(&back, "rootfs")["skipped"], false);
}

#[test]
fn a_global_env_change_rebuilds_every_package() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("global");
    let spec = |mark: &str| {
        format!("packages = ['app-misc/hello']\n[env]\nCFLAGS = '${{CFLAGS}} -D{mark}'\n")
    };
    case.build(&spec("MARK_A"));
    assert!(
        case.rootfs_file("usr/share/hello/build-info.txt")
            .contains("-DMARK_A")
    );

    let changed = case.build(&spec("MARK_B"));
    let info = case.rootfs_file("usr/share/hello/build-info.txt");
    assert!(
        info.contains("-O2 -pipe -DMARK_B") && !info.contains("MARK_A"),
        "{info}"
    );
    let built = cpvs(&changed, "built_from_source");
    for package in [
        HELLO,
        "dev-libs/libfoo-1",
        "app-shells/tinysh-1",
        "virtual/libc-1",
    ] {
        assert!(
            built.iter().any(|c| c == package),
            "{package} was reused: {changed}"
        );
    }
    assert_eq!(step(&changed, "build-deps")["skipped"], false);
}
