//! `staves plan`: text, JSON and script output, and errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn plan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_staves"))
        .arg("plan")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn text_plan_of_the_bash_example() {
    let config = repo("examples/bash/staves.toml");
    let out = plan(&["--config", config.to_str().unwrap(), "--jobs", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
}

#[test]
fn json_plan_has_files_and_steps() {
    let config = repo("examples/full/staves.toml");
    let out = plan(&[
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
        "--jobs",
        "2",
    ]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files: Vec<&str> = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(files.contains(&"etc/portage/env/nocache"), "{files:?}");
    let kinds: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"write-files"));
    assert!(kinds.contains(&"sync"));
    assert_eq!(kinds.last(), Some(&"cleanup"));
}

#[test]
fn script_plan_is_valid_sh() {
    let config = repo("examples/full/staves.toml");
    let out = plan(&["--config", config.to_str().unwrap(), "--format", "script"]);
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("plan.sh");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("sh").arg("-n").arg(&script).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn invalid_spec_exits_1_with_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("staves.toml");
    std::fs::write(
        &config,
        "name = 'x'\npackages = ['app-misc/hello']\n[env]\nCFLAGS = 'a$(reboot)'\n",
    )
    .unwrap();
    let out = plan(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("staves.toml:4:"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing is planned for an invalid spec"
    );
}

#[test]
fn missing_config_and_bad_flags() {
    let out = plan(&["--config", "/nonexistent/staves.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/staves.toml"));
    let out = plan(&["--format", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn load_average_is_optional_and_checked() {
    let config = repo("examples/hello/staves.toml");
    let config = config.to_str().unwrap();
    let out = plan(&["--config", config, "--jobs", "2", "--load-average", "3.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.matches("--jobs 2 --load-average 3.5 ").count(),
        2,
        "{text}"
    );
    assert!(text.contains("MAKEOPTS=\"-j2 -l3.5\""), "{text}");

    for bad in ["0", "-2", "nan", "two"] {
        let flag = format!("--load-average={bad}");
        let out = plan(&["--config", config, &flag]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("load average"), "{bad}: {stderr}");
    }
}

#[test]
fn plan_shows_the_pins_of_a_lock_next_to_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("staves.toml");
    std::fs::write(
        &spec,
        "name = 'x/y'\npackages = ['app-misc/versioned']\n[[repositories]]\nname = 'extra'\ntype = 'git'\nuri = '/r.git'\n",
    )
    .unwrap();
    let config = spec.to_str().unwrap();
    // Without a lock: no pins, no resolve step.
    let out = plan(&["--config", config, "--jobs", "1"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("Pinned by") && !text.contains("staves-lock"),
        "{text}"
    );

    // A lock for another spec (its hash differs): the pins still apply and are shown; the repository is held at
    // its commit.
    let lock = format!(
        "version = 1\nspec-hash = 'sha256:{}'\n\n[[repository]]\nname = 'extra'\ncommit = '0123456789abcdef'\n\n\
         [[rootfs]]\natom = '=app-misc/versioned-1::gentoo'\nslot = '0'\n",
        "0".repeat(64)
    );
    std::fs::write(dir.path().join("staves.lock"), lock).unwrap();
    let out = plan(&["--config", config, "--jobs", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Pinned by "), "{text}");
    assert!(
        text.contains("1 package(s), 1 repository commit(s)"),
        "{text}"
    );
    assert!(
        text.contains("--- /etc/portage/package.mask/staves-lock\n"),
        "{text}"
    );
    assert!(
        text.contains("<app-misc/versioned-1:0\n>app-misc/versioned-1:0\n"),
        "{text}"
    );
    assert!(
        text.contains("check out the locked commit 0123456789ab"),
        "{text}"
    );
    assert!(text.contains("Resolve the packages with Portage and check them against staves.lock"));

    // A broken lock: a positioned error, exit 1.
    std::fs::write(
        dir.path().join("staves.lock"),
        "version = 1\nspec-hash = 3\n",
    )
    .unwrap();
    let out = plan(&["--config", config]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("staves.lock:2:"), "{stderr}");
}

/// `[build] binhost` shows in the plan: the binrepos.conf Staves writes, and the fetch step.
#[test]
fn plan_shows_the_binhosts_of_the_spec() {
    let config = repo("tests/data/plan/binhost.toml");
    let out = plan(&["--config", config.to_str().unwrap(), "--jobs", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("--- /etc/portage/binrepos.conf/staves.conf\n"),
        "{text}"
    );
    assert!(text.contains("sync-uri = http://binhost:8080/\n"), "{text}");
    assert!(
        text.contains("Fetch binary packages from 2 binhosts"),
        "{text}"
    );
    let out = plan(&[
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
        "--jobs",
        "2",
    ]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["binhosts"],
        serde_json::json!(["http://binhost:8080/", "https://binpkgs.example.com/amd64/"])
    );
    let kinds: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    let fetch = kinds.iter().position(|k| *k == "fetch-binaries").unwrap();
    assert_eq!(kinds[fetch + 1], "check-binaries", "{kinds:?}");
    // A spec without [build] has no binhosts in its JSON plan.
    let config = repo("examples/hello/staves.toml");
    let out = plan(&["--config", config.to_str().unwrap(), "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json.get("binhosts").is_none());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("fetch-binaries"));
}
