//! `staves build` end to end: the real Docker engine, real Portage, the fixture images.
//!
//! These need the engine and the fixture images from `tests/fixtures/build-images.sh`. With
//! `STAVES_REQUIRE_DOCKER=1` (set by `tests/run.sh` in CI) they fail instead of skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::{BUILDER, PORTAGE, docker, engine_ready, lock, stderr, stdout};

/// A scratch directory with a spec, a cache volume and an image tag of its own; all removed on drop.
struct Case {
    dir: tempfile::TempDir,
    cache: String,
    tag: String,
    pids: Mutex<Vec<u32>>,
}

impl Case {
    fn new(name: &str, spec_body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let id = format!("{name}-{}", std::process::id());
        let tag = format!("staves-e2e/{name}:t{}", std::process::id());
        let (repo, version) = tag.split_once(':').unwrap();
        let spec = format!("name = '{repo}'\nversion = '{version}'\n{spec_body}");
        std::fs::write(dir.path().join("staves.toml"), spec).unwrap();
        Self {
            dir,
            cache: format!("staves-e2e-cache-{id}"),
            tag,
            pids: Mutex::new(Vec::new()),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_staves"));
        cmd.arg("build")
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
            ])
            .args(extra)
            .env("HOME", self.dir.path())
            // The local image store under that home, not the one the test run shares.
            .env("XDG_CACHE_HOME", self.dir.path().join(".cache"))
            .env_remove("DOCKER_HOST");
        cmd
    }

    /// Run `staves build`; the child's pid is kept, to find the containers it named.
    fn build(&self, extra: &[&str]) -> Output {
        let child = self
            .command(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.pids.lock().unwrap().push(child.id());
        child.wait_with_output().unwrap()
    }

    /// Containers that this case's `staves build` runs left behind (Staves names them `staves-PID-…`).
    fn leftover_containers(&self) -> Vec<String> {
        let pids = self.pids.lock().unwrap().clone();
        leftover_containers()
            .into_iter()
            .filter(|n| pids.iter().any(|p| n.starts_with(&format!("staves-{p}-"))))
            .collect()
    }

    /// Paths in the rootfs tar written by `--image-path`.
    fn rootfs_entries(&self) -> Vec<String> {
        let file = std::fs::File::open(self.path("rootfs.tar")).unwrap();
        let mut archive = tar::Archive::new(file);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .to_owned()
            })
            .collect()
    }

    fn rootfs_file(&self, wanted: &str) -> Option<String> {
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
                let mut s = String::new();
                std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
                return Some(s);
            }
        }
        None
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

/// Every container carrying the Staves build label.
fn leftover_containers() -> Vec<String> {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=io.staves.build",
        "--format",
        "{{.Names}}",
    ]);
    stdout(&out).lines().map(str::to_owned).collect()
}

fn anonymous_volume_count() -> usize {
    let out = docker(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    stdout(&out).lines().filter(|v| v.len() == 64).count()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "staves build failed ({:?}):\n{}\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

#[test]
fn hello_image_runs_and_holds_only_runtime_deps() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let volumes_before = anonymous_volume_count();
    let case = Case::new(
        "hello",
        "packages = ['app-misc/hello']\ncommand = ['/usr/bin/hello']\n\
         [annotations]\n'org.opencontainers.image.title' = 'hello'\n",
    );
    let rootfs = case.path("rootfs.tar");
    let out = case.build(&["--image-path", rootfs.to_str().unwrap(), "--format", "json"]);
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["image"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{report}"
    );

    let run = docker(&["run", "--rm", &case.tag]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(stdout(&run).trim(), "Hello, world");

    let entries = case.rootfs_entries();
    for wanted in [
        "usr/bin/hello",
        "bin/sh",
        "usr/share/libfoo/libfoo.txt",
        "usr/share/hello/build-info.txt",
    ] {
        assert!(
            entries.iter().any(|e| e == wanted),
            "{wanted} missing from {entries:?}"
        );
    }
    assert!(
        !entries.iter().any(|e| e.contains("buildtool")),
        "a build-only dependency reached the image"
    );
    assert!(
        !entries.iter().any(|e| e.starts_with("var/db/pkg")),
        "{entries:?}"
    );
    assert!(
        !entries.iter().any(|e| e.starts_with("var/cache")),
        "{entries:?}"
    );

    let labels = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &case.tag,
    ]);
    assert!(
        stdout(&labels).contains("org.opencontainers.image.title"),
        "{}",
        stdout(&labels)
    );
    assert!(
        case.leftover_containers().is_empty(),
        "{:?}",
        case.leftover_containers()
    );
    assert_eq!(
        anonymous_volume_count(),
        volumes_before,
        "the snapshot's anonymous volume leaked"
    );
}

#[test]
fn spec_features_reach_the_image() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new(
        "features",
        "packages = ['app-misc/hello', 'app-misc/unstable']\ncommand = ['/usr/bin/hello']\n\
         [env.fast]\nCFLAGS = '-O3 -pipe -DSTAVES_NAMED_ENV'\n\
         ['app-misc/hello']\nuse = ['-nls']\nenv = ['fast']\n\
         ['app-misc/unstable']\nkeywords = ['~amd64']\n",
    );
    let rootfs = case.path("rootfs.tar");
    let archive = format!("oci-archive:{}", case.path("image.tar").display());
    let out = case.build(&[
        "--image-path",
        rootfs.to_str().unwrap(),
        "--output",
        &archive,
    ]);
    assert_ok(&out);
    let entries = case.rootfs_entries();
    assert!(
        !entries.iter().any(|e| e.starts_with("usr/share/locale")),
        "use=-nls kept the locale file"
    );
    assert!(
        entries.iter().any(|e| e == "usr/bin/unstable"),
        "keywords did not install unstable"
    );
    let info = case.rootfs_file("usr/share/hello/build-info.txt").unwrap();
    assert!(
        info.contains("-DSTAVES_NAMED_ENV"),
        "the named env did not reach the build: {info}"
    );
}

#[test]
fn unstable_package_fails_without_keywords() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("nokeywords", "packages = ['app-misc/unstable']\n");
    let out = case.build(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("app-misc/unstable"),
        "{}",
        stderr(&out)
    );
    assert!(!case.image_exists());
    assert!(case.leftover_containers().is_empty());
}

#[test]
fn custom_git_repository_supplies_a_package() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new(
        "extra",
        "packages = ['app-misc/extra']\n\
         [[repositories]]\nname = 'staves-extra'\ntype = 'git'\nuri = 'file:///srv/git/staves-extra.git'\n",
    );
    let rootfs = case.path("rootfs.tar");
    let out = case.build(&["--image-path", rootfs.to_str().unwrap()]);
    assert_ok(&out);
    assert!(case.rootfs_entries().iter().any(|e| e == "usr/bin/extra"));
}

#[test]
fn warm_rebuild_builds_nothing_from_source() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new(
        "warm",
        "packages = ['app-misc/hello']\ncommand = ['/usr/bin/hello']\n",
    );
    let cold = case.build(&["--format", "json"]);
    assert_ok(&cold);
    let cold: serde_json::Value = serde_json::from_slice(&cold.stdout).unwrap();
    assert!(
        !cold["report"]["built_from_source"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{cold}"
    );
    // --rebuild: the local image store would otherwise serve the unchanged spec without a build.
    let warm = case.build(&["--format", "json", "--rebuild"]);
    assert_ok(&warm);
    let warm: serde_json::Value = serde_json::from_slice(&warm.stdout).unwrap();
    assert_eq!(
        warm["report"]["built_from_source"],
        serde_json::json!([]),
        "{warm}"
    );
    assert!(
        !warm["report"]["installed_from_binary"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        cold["image"]["digest"], warm["image"]["digest"],
        "the same inputs gave another image"
    );
}

#[test]
fn missing_package_fails_cleanly() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("missing", "packages = ['app-misc/no-such-package']\n");
    let out = case.build(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no-such-package"),
        "the emerge error is not shown: {err}"
    );
    assert!(!case.image_exists(), "a failed build tagged an image");
    assert!(
        case.leftover_containers().is_empty(),
        "{:?}",
        case.leftover_containers()
    );
}

#[test]
fn broken_package_fails_in_the_rootfs_step_and_tags_nothing() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("broken", "packages = ['app-misc/broken']\n");
    let rootfs = case.path("rootfs.tar");
    let out = case.build(&["--image-path", rootfs.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("rootfs"), "{err}");
    assert!(
        !case.image_exists(),
        "an image was tagged from a partial rootfs"
    );
    assert!(!rootfs.exists(), "a partial rootfs tar was written");
    assert!(
        case.leftover_containers().is_empty(),
        "{:?}",
        case.leftover_containers()
    );
}

#[test]
fn unreachable_engine_is_a_clear_error() {
    let case = Case::new("nohost", "packages = ['app-misc/hello']\n");
    let out = case
        .command(&[])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"),
        "{err}"
    );
    assert!(err.contains("DOCKER_HOST"), "{err}");
}

#[test]
fn sigint_during_emerge_leaves_no_container() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("sigint", "packages = ['app-misc/hello']\n");
    let mut child = case
        .command(&[])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    case.pids.lock().unwrap().push(child.id());
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut interrupted = false;
    let started = Instant::now();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if !interrupted && line.contains(">>> Emerging") {
            assert!(
                !case.leftover_containers().is_empty(),
                "the builder should be running now"
            );
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            interrupted = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no emerge progress seen: {seen:?}"
        );
    }
    let status = child.wait().unwrap();
    assert!(interrupted, "emerge never started: {seen:?}");
    assert_eq!(status.code(), Some(4), "{seen:?}");
    assert!(seen.iter().any(|l| l.contains("interrupted")), "{seen:?}");
    assert!(
        case.leftover_containers().is_empty(),
        "{:?}",
        case.leftover_containers()
    );
    assert!(!case.image_exists());
}

#[test]
fn credentials_are_mounted_but_never_reach_the_rootfs() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("creds", "packages = ['app-misc/hello']\n");
    std::fs::create_dir(case.path(".ssh")).unwrap();
    std::fs::write(case.path(".ssh/id_ed25519"), "not a real key\n").unwrap();
    std::fs::write(
        case.path(".netrc"),
        "machine example.com login u password p\n",
    )
    .unwrap();
    let rootfs = case.path("rootfs.tar");
    let out = case.build(&[
        "--ssh",
        "--netrc",
        "--image-path",
        rootfs.to_str().unwrap(),
        "-v",
    ]);
    assert_ok(&out);
    let entries = case.rootfs_entries();
    assert!(
        !entries
            .iter()
            .any(|e| e.contains(".ssh") || e.contains(".netrc")),
        "{entries:?}"
    );
    assert!(
        !entries.iter().any(|e| e.starts_with("root/")),
        "{entries:?}"
    );
    // With --no-ssh and a HOME without credentials, the build still works (the original failed to create its
    // container when ~/.ssh was missing).
    let bare = Case::new("nocreds", "packages = ['app-misc/hello']\n");
    let bare_rootfs = bare.path("rootfs.tar");
    assert_ok(&bare.build(&["--output", &format!("rootfs:{}", bare_rootfs.display())]));
    assert!(case.leftover_containers().is_empty());
}

#[test]
fn a_missing_builder_image_that_cannot_be_pulled_names_the_image() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("noimage", "packages = ['app-misc/hello']\n");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_staves"));
    let out = cmd
        .arg("build")
        .arg("--config")
        .arg(case.path("staves.toml"))
        .args([
            "--builder",
            "staves-test/no-such-builder:latest",
            "--portage",
            PORTAGE,
            "--no-ssh",
            "--no-netrc",
        ])
        .args(["--build-cache", &case.cache])
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("staves-test/no-such-builder:latest"), "{err}");
    assert!(
        err.contains("docker load"),
        "the error should say how to provide the image: {err}"
    );
    assert!(!case.image_exists());
}
