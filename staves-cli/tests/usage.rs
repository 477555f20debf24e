//! Usage errors and spec errors of the CLI, which need no engine: exit codes and messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn staves(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_staves"))
        .args(args)
        .current_dir(dir)
        // Nothing here may reach an engine: an unreachable one would turn a usage error into exit 3.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SPEC: &str = "name = 'staves/x'\npackages = ['app-misc/hello']\n";

fn with_spec() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("staves.toml"), SPEC).unwrap();
    dir
}

#[test]
fn a_bad_version_override_is_a_usage_error() {
    let dir = with_spec();
    let out = staves(dir.path(), &["build", "--version", "bad tag!"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("'--version <TAG>'"), "{err}");
    assert!(err.contains("`bad tag!` is not a valid image tag"), "{err}");
}

#[test]
fn a_bad_image_reference_is_a_usage_error() {
    let dir = with_spec();
    for flag in ["--builder", "--portage"] {
        let out = staves(dir.path(), &["build", flag, "Bad Ref!"]);
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("`Bad Ref!` is not a valid image reference"),
            "{err}"
        );
    }
}

#[test]
fn a_missing_spec_names_the_flag_once_and_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["validate", "plan", "build"] {
        let out = staves(dir.path(), &[command, "--config", "nope.toml"]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            "error: cannot read nope.toml: No such file or directory (os error 2)\n  \
             help: check the path, or pass another one with --config\n",
            "{command}"
        );
    }
}

#[test]
fn an_invalid_spec_lists_its_errors_in_plan_and_build() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("staves.toml"),
        "name = 'X'\npackages = ['bash']\n",
    )
    .unwrap();
    for command in ["plan", "build"] {
        let out = staves(dir.path(), &[command]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("error: invalid staves.toml: 2 error(s)\n"),
            "{err}"
        );
        assert!(
            err.contains("\n  staves.toml:1:8: `X` is not a valid image name"),
            "{err}"
        );
        assert!(err.contains("\n  staves.toml:2:13: "), "{err}");
    }
}

/// Regression: `--cache-dir FILE` used to build with no local image store and no word about it.
#[test]
fn a_cache_dir_that_is_a_file_fails_before_the_engine_is_reached() {
    let dir = with_spec();
    std::fs::write(dir.path().join("cache"), b"").unwrap();
    for cache_dir in ["cache", "cache/staves"] {
        let out = staves(dir.path(), &["build", "--cache-dir", cache_dir]);
        // 2, not 3: the unreachable engine was never asked.
        assert_eq!(out.status.code(), Some(2), "{cache_dir}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!(
                "error: --cache-dir: the local image store cannot be at {cache_dir}: cache exists and is not a \
                 directory\n  help: "
            )),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(dir.path().join("cache")).unwrap(), b"");
}

/// The default store is only a cache: one that cannot be used is a warning, and the build goes on (here to the
/// unreachable engine, exit 3).
#[test]
fn a_default_store_that_is_a_file_is_a_warning() {
    let dir = with_spec();
    let xdg = dir.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::fs::write(xdg.join("staves"), b"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_staves"))
        .args(["build", "--log-format", "json"])
        .current_dir(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("XDG_CACHE_HOME", &xdg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let first: serde_json::Value =
        serde_json::from_str(stderr(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "warning", "{first}");
    let message = first["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "{} exists and is not a directory",
            xdg.join("staves").display()
        )) && message.ends_with("building without the local image store"),
        "{message}"
    );
}

/// `--sbom X` on the path of an output `X` (or two outputs on one path) built the image and wrote both files: the
/// last one won, and the image archive became the SBOM JSON. It is now a usage error, said before any engine is
/// reached or anything is written.
#[test]
fn the_sbom_or_two_outputs_on_one_path_are_a_usage_error_before_the_build() {
    let dir = with_spec();
    for args in [
        &[
            "build",
            "--sbom",
            "img.tar",
            "--output",
            "oci-archive:img.tar",
        ][..],
        &[
            "build",
            "--output",
            "docker-archive:img.tar",
            "--output",
            "oci-archive:./img.tar",
        ],
        &[
            "build",
            "--output",
            "rootfs:img.tar",
            "--image-path",
            "img.tar",
        ],
    ] {
        let out = staves(dir.path(), args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("collide"), "{err}");
        assert!(!dir.path().join("img.tar").exists());
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["staves.toml"]);
}
