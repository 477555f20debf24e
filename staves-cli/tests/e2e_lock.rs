//! `staves lock` and building from a lock, end to end: the real engine, real Portage, three portage snapshots.
//!
//! `tests/fixtures/build-images.sh` builds the snapshots: `staves-test/portage:latest` has `app-misc/versioned-1`,
//! `:versioned-both` has versions 1 and 2, `:versioned-new` only 2. With `STAVES_REQUIRE_DOCKER=1` (set by
//! `tests/run.sh` in CI) a missing engine or image fails instead of skipping. `STAVES_TEST_BUILDER` and
//! `STAVES_TEST_PORTAGE` name other builder/base snapshot images (for fixtures built under other tags).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{docker, text};

const BOTH: &str = "staves-test/portage:versioned-both";
const NEW: &str = "staves-test/portage:versioned-new";

fn builder() -> String {
    std::env::var("STAVES_TEST_BUILDER").unwrap_or_else(|_| "staves-test/stage3:latest".into())
}

fn old() -> String {
    std::env::var("STAVES_TEST_PORTAGE").unwrap_or_else(|_| "staves-test/portage:latest".into())
}

fn engine_ready() -> bool {
    support::images_present(&[builder(), old(), BOTH.into(), NEW.into()])
}

/// A spec directory with a cache volume and an image tag of its own; both removed on drop.
struct Case {
    dir: tempfile::TempDir,
    cache: String,
    repo: String,
    tag: String,
    pids: Vec<u32>,
}

impl Case {
    fn new() -> Self {
        let id = std::process::id();
        let case = Self {
            dir: tempfile::tempdir().unwrap(),
            cache: format!("staves-e2e-lock-cache-{id}"),
            repo: "staves-e2e/lock".into(),
            tag: format!("t{id}"),
            pids: Vec::new(),
        };
        case.set_packages("'app-misc/versioned'");
        case
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn set_packages(&self, packages: &str) {
        let spec = format!(
            "name = '{}'\nversion = '{}'\npackages = [{packages}]\n",
            self.repo, self.tag
        );
        std::fs::write(self.path("staves.toml"), spec).unwrap();
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(self.path("staves.lock")).unwrap()
    }

    /// Run `staves SUBCOMMAND` with the spec, builder and cache of this case and the snapshot `portage`.
    fn run(&mut self, subcommand: &str, portage: &str, extra: &[&str]) -> Output {
        let child = Command::new(env!("CARGO_BIN_EXE_staves"))
            .arg(subcommand)
            .arg("--config")
            .arg(self.path("staves.toml"))
            .args(["--builder", &builder(), "--portage", portage])
            .args(["--build-cache", &self.cache, "--no-ssh", "--no-netrc", "-q"])
            .args(extra)
            .env_remove("DOCKER_HOST")
            // A local image store of this case's own.
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        self.pids.push(child.id());
        child.wait_with_output().unwrap()
    }

    /// `staves build` into a rootfs tar named `name`; returns the version file the image got.
    fn build_version(&mut self, portage: &str, extra: &[&str], name: &str) -> String {
        let out = self.path(name);
        let output = format!("rootfs:{}", out.display());
        let mut args = vec!["-o", output.as_str()];
        args.extend_from_slice(extra);
        let result = self.run("build", portage, &args);
        assert!(
            result.status.success(),
            "build failed:\n{}",
            text(&result.stderr)
        );
        file_in_tar(&out, "usr/share/versioned/version")
            .expect("the image has no /usr/share/versioned/version")
            .trim()
            .to_owned()
    }

    fn image_exists(&self) -> bool {
        docker(&["image", "inspect", &format!("{}:{}", self.repo, self.tag)])
            .status
            .success()
    }

    /// Containers that this case's runs left behind (Staves names them `staves-PID-…`).
    fn leftovers(&self) -> Vec<String> {
        let names = docker(&["ps", "-a", "--format", "{{.Names}}"]);
        text(&names.stdout)
            .lines()
            .filter(|n| {
                self.pids
                    .iter()
                    .any(|p| n.starts_with(&format!("staves-{p}-")))
            })
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = docker(&["image", "rm", &format!("{}:{}", self.repo, self.tag)]);
        let _ = docker(&["volume", "rm", &self.cache]);
    }
}

fn file_in_tar(tar: &Path, wanted: &str) -> Option<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(tar).ok()?);
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.display().to_string();
        if path.trim_start_matches("./") == wanted {
            let mut content = String::new();
            std::io::Read::read_to_string(&mut entry, &mut content).ok()?;
            return Some(content);
        }
    }
    None
}

/// The whole workflow on three snapshots: lock against the old one, build against newer ones, extend the lock
/// with a new package, and re-lock to upgrade.
#[test]
fn pins_hold_across_snapshots_until_relocked() {
    if !engine_ready() {
        return;
    }
    let mut case = Case::new();
    let old = old();

    // Lock against the old snapshot (only versioned-1); the bytes are the same on a second run.
    let locked = case.run("lock", &old, &[]);
    assert!(locked.status.success(), "{}", text(&locked.stderr));
    let first = case.lock_text();
    assert!(
        first.contains("atom = \"=app-misc/versioned-1::gentoo\""),
        "{first}"
    );
    assert!(first.starts_with("# This file is generated by `staves lock`"));
    let again = case.run("lock", &old, &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        case.lock_text(),
        first,
        "two `staves lock` runs gave different bytes"
    );

    // Build against a snapshot that also has versioned-2: the pin holds (and --locked accepts the lock).
    assert_eq!(case.build_version(BOTH, &["--locked"], "both.tar"), "1");
    assert_eq!(case.lock_text(), first, "a locked build rewrote the lock");

    // Build against a snapshot that lacks versioned-1: a clear error naming it; nothing tagged.
    let failed = case.run("build", NEW, &[]);
    let stderr = text(&failed.stderr);
    assert_eq!(failed.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("=app-misc/versioned-1::gentoo"), "{stderr}");
    assert!(
        stderr.contains("staves lock") && stderr.contains(NEW),
        "{stderr}"
    );
    assert!(
        !case.image_exists(),
        "a build that failed its lock check tagged an image"
    );
    assert_eq!(case.lock_text(), first);

    // Add a package: --locked refuses the stale lock; a plain build keeps the pin and extends the lock.
    case.set_packages("'app-misc/versioned', 'app-shells/tinysh'");
    let refused = case.run("build", BOTH, &["--locked"]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("out of date"), "{stderr}");
    let out = case.path("extended.tar");
    let sbom = case.path("extended.spdx.json");
    let json = case.run(
        "build",
        BOTH,
        &[
            "-o",
            &format!("rootfs:{}", out.display()),
            "--format",
            "json",
            "--sbom",
            &sbom.display().to_string(),
        ],
    );
    assert!(json.status.success(), "{}", text(&json.stderr));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["lock"]["locked"], true);
    assert_eq!(report["lock"]["written"], true);
    let added: Vec<&str> = report["lock"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "added" && c["section"] == "rootfs")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["app-shells/tinysh"]);
    // The SBOM names the lock as the build rewrote it, not the one it read.
    let hash = report["lock"]["hash"].as_str().unwrap();
    let spdx = std::fs::read_to_string(&sbom).unwrap();
    assert!(
        spdx.contains(&format!("lock: {hash}")),
        "{hash} not in {spdx}"
    );
    assert_eq!(
        file_in_tar(&out, "usr/share/versioned/version")
            .unwrap()
            .trim(),
        "1"
    );
    let extended = case.lock_text();
    assert!(extended.contains("atom = \"=app-misc/versioned-1::gentoo\""));
    assert!(extended.contains("atom = \"=app-shells/tinysh-1::gentoo\""));

    // Re-lock against the newer snapshot: the lock moves to versioned-2, and so does the image.
    let relocked = case.run("lock", BOTH, &[]);
    assert!(relocked.status.success(), "{}", text(&relocked.stderr));
    assert!(
        text(&relocked.stdout).contains(
            "~ rootfs app-misc/versioned: =app-misc/versioned-1::gentoo -> =app-misc/versioned-2::gentoo"
        ),
        "{}",
        text(&relocked.stdout)
    );
    assert_eq!(case.build_version(BOTH, &["--locked"], "new.tar"), "2");

    assert_eq!(case.leftovers(), Vec::<String>::new());
}
