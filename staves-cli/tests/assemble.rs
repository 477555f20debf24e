//! `staves assemble` end to end: a rootfs directory and a spec become an OCI archive; the digest is the library's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use staves_core::{ImageSpec, ImageWriter, Output};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn staves() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_staves"));
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd
}

fn rootfs(root: &std::path::Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/app"), b"#!/bin/sh\necho app\n").unwrap();
    std::fs::set_permissions(root.join("bin/app"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(root.join("bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

const SPEC: &str = r#"
name = "staves-test/cli"
version = "2.0"
command = ["/bin/app"]
annotations = { "org.opencontainers.image.title" = "cli" }
packages = ["app-misc/hello"]

[image]
cmd = ["--verbose"]
env = { A = "1" }
"#;

#[test]
fn assemble_writes_an_oci_archive_with_the_library_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    rootfs(&root);
    let config = tmp.path().join("staves.toml");
    std::fs::write(&config, SPEC).unwrap();
    let archive = tmp.path().join("img.tar");
    let out = staves()
        .args(["assemble", "--rootfs"])
        .arg(&root)
        .arg("--config")
        .arg(&config)
        .arg("--output")
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();

    let mut spec = ImageSpec::new("staves-test/cli");
    spec.version = "2.0".to_owned();
    spec.command = vec!["/bin/app".to_owned()];
    spec.annotations.insert(
        "org.opencontainers.image.title".to_owned(),
        "cli".to_owned(),
    );
    spec.image.cmd = vec!["--verbose".to_owned()];
    spec.image.env.insert("A".to_owned(), "1".to_owned());
    let expected = ImageWriter::new(&spec)
        .created(0)
        .mtime_clamp(0)
        .write_dir(&root, &[Output::OciArchive(tmp.path().join("lib.tar"))])
        .unwrap();
    assert_eq!(printed.trim(), expected.digest);
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(tmp.path().join("lib.tar")).unwrap()
    );
}

#[test]
fn assemble_json_lists_every_destination_and_reads_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    rootfs(&root);
    let config = tmp.path().join("staves.toml");
    std::fs::write(&config, SPEC).unwrap();
    let tar = Command::new("tar")
        .args(["--sort=name", "-C"])
        .arg(&root)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let layout = tmp.path().join("layout");
    let rootfs_tar = tmp.path().join("rootfs.tar");
    let mut child = staves()
        .args([
            "assemble",
            "--rootfs",
            "-",
            "--compression",
            "zstd",
            "--format",
            "json",
            "--config",
        ])
        .arg(&config)
        .arg("--output")
        .arg(format!("oci:{}", layout.display()))
        .arg("--output")
        .arg(format!("rootfs:{}", rootfs_tar.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(json["layer_size"].as_u64().unwrap() > 0);
    assert_eq!(
        json["outputs"][0]["output"],
        format!("oci:{}", layout.display())
    );
    assert_eq!(
        json["outputs"][1]["output"],
        format!("rootfs:{}", rootfs_tar.display())
    );
    assert_eq!(
        json["outputs"][1]["size"].as_u64().unwrap(),
        std::fs::metadata(&rootfs_tar).unwrap().len()
    );
    assert!(layout.join("index.json").exists());
}

#[test]
fn bad_output_is_a_usage_error() {
    let out = staves()
        .args(["assemble", "--rootfs", ".", "--output", "tarball:x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown output type `tarball`"), "{stderr}");
}

#[test]
fn hostile_rootfs_exits_5_with_the_entry_named() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("staves.toml");
    std::fs::write(&config, SPEC).unwrap();
    // A tar with a `../` entry, built by hand (GNU tar strips `..`).
    let mut header = tar::Header::new_ustar();
    header.as_ustar_mut().unwrap().name[..9].copy_from_slice(b"../escape");
    header.set_size(0);
    header.set_mode(0o644);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 1024]);
    let input = tmp.path().join("in.tar");
    std::fs::write(&input, bytes).unwrap();
    let out = staves()
        .args(["assemble", "--rootfs"])
        .arg(&input)
        .arg("--config")
        .arg(&config)
        .arg("--output")
        .arg(format!(
            "oci-archive:{}",
            tmp.path().join("o.tar").display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`../escape`"));
    assert!(!tmp.path().join("o.tar").exists());
}
