//! `staves assemble` end to end: a rootfs directory and a spec become an OCI archive; the digest is the library's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

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

/// Run GNU tar with `args` in `dir`.
fn gnu_tar(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("tar")
        .current_dir(dir)
        .args(args)
        .status()
        .expect("GNU tar runs");
    assert!(status.success(), "tar {args:?}");
}

/// `staves assemble --rootfs ROOTFS --output rootfs:OUT` with the test spec; ROOTFS `-` reads `stdin`.
fn assemble_rootfs(tmp: &std::path::Path, rootfs: &str, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let config = tmp.join("staves.toml");
    std::fs::write(&config, SPEC).unwrap();
    let mut child = staves()
        .args(["assemble", "--rootfs", rootfs, "--config"])
        .arg(&config)
        .arg("--output")
        .arg(format!("rootfs:{}", tmp.join("out.tar").display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The command may stop reading early (a refused entry); a broken pipe is fine then.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn no_control_bytes(stderr: &[u8]) {
    let text = String::from_utf8(stderr.to_vec()).expect("stderr is UTF-8");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control bytes on stderr: {text:?}"
    );
}

#[test]
fn assemble_expands_a_pax_sparse_file_from_gnu_tar_to_its_exact_bytes() {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("root");
    std::fs::create_dir(&dir).unwrap();
    let file = std::fs::File::create(dir.join("disk.img")).unwrap();
    file.set_len(1 << 20).unwrap();
    file.write_all_at(b"boot", 0).unwrap();
    file.write_all_at(b"middle", 300 << 10).unwrap();
    let mut want = vec![0u8; 1 << 20];
    want[..4].copy_from_slice(b"boot");
    want[300 << 10..(300 << 10) + 6].copy_from_slice(b"middle");
    gnu_tar(
        tmp.path(),
        &[
            "--sparse",
            "--format=posix",
            "-C",
            "root",
            "-cf",
            "in.tar",
            "disk.img",
        ],
    );
    let input = std::fs::read(tmp.path().join("in.tar")).unwrap();
    assert!(
        input.windows(16).any(|w| w == b"GNU.sparse.major"),
        "not a PAX 1.0 sparse archive"
    );
    for (rootfs, stdin) in [
        (
            tmp.path().join("in.tar").to_str().unwrap().to_owned(),
            &[][..],
        ),
        ("-".to_owned(), &input[..]),
    ] {
        let out = assemble_rootfs(tmp.path(), &rootfs, stdin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written = std::fs::read(tmp.path().join("out.tar")).unwrap();
        let mut archive = tar::Archive::new(&written[..]);
        let mut entries: Vec<(String, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (String::from_utf8_lossy(&e.path_bytes()).into_owned(), data)
            })
            .collect();
        assert_eq!(entries.len(), 1, "{rootfs}");
        let (name, data) = entries.remove(0);
        assert_eq!(name, "disk.img", "{rootfs}");
        assert!(data == want, "{rootfs}: the expanded content differs");
    }
}

#[test]
fn assemble_refuses_an_entry_below_a_symlink_made_by_gnu_tar() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("x")).unwrap();
    std::fs::write(tmp.path().join("x/passwd"), b"root::0:0::/:/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("/etc", tmp.path().join("evil")).unwrap();
    // `x/passwd` is stored as `evil/passwd`, after the symlink `evil -> /etc`.
    gnu_tar(
        tmp.path(),
        &[
            "--transform",
            "s,^x,evil,",
            "-cf",
            "in.tar",
            "evil",
            "x/passwd",
        ],
    );
    let out = assemble_rootfs(tmp.path(), tmp.path().join("in.tar").to_str().unwrap(), b"");
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "unsafe entry `evil/passwd` in the rootfs: it lies below `evil`, a symlink to `/etc`"
        ),
        "{stderr}"
    );
    assert!(!tmp.path().join("out.tar").exists());
}

#[test]
fn assemble_refuses_a_path_longer_than_path_max_made_by_gnu_tar() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    let long = format!("{}/f", vec!["d".repeat(250); 20].join("/"));
    let transform = format!("s,^f$,{long},");
    gnu_tar(
        tmp.path(),
        &[
            "--format=posix",
            "--transform",
            &transform,
            "-cf",
            "in.tar",
            "f",
        ],
    );
    let out = assemble_rootfs(
        tmp.path(),
        "-",
        &std::fs::read(tmp.path().join("in.tar")).unwrap(),
    );
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("which an image layer cannot carry: its path is 5022 bytes long"),
        "{stderr}"
    );
    assert!(stderr.contains("… (5021 bytes in all)"), "{stderr}");
    assert!(stderr.len() < 1000, "{stderr}");
    assert!(stderr.contains("PATH_MAX"), "{stderr}");
    assert!(!tmp.path().join("out.tar").exists());
}

#[test]
fn assemble_of_garbage_is_a_clean_error_with_no_raw_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    // Terminal escapes and bell characters where the tar header fields are.
    let garbage: Vec<u8> = b"\x1b[2J\x1b]0;pwned\x07\x1b[31m"
        .iter()
        .copied()
        .cycle()
        .take(4096)
        .collect();
    let out = assemble_rootfs(tmp.path(), "-", &garbage);
    assert_eq!(out.status.code(), Some(5));
    no_control_bytes(&out.stderr);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is truncated or corrupt"), "{stderr}");
    assert!(stderr.contains("is it a tar archive?"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn assemble_escapes_a_hostile_entry_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut header = tar::Header::new_ustar();
    let name = b"../\x1b[31mred\x07";
    header.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
    header.set_size(0);
    header.set_mode(0o644);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 1024]);
    let out = assemble_rootfs(tmp.path(), "-", &bytes);
    assert_eq!(out.status.code(), Some(5));
    no_control_bytes(&out.stderr);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r"`../\u{1b}[31mred\u{7}`"), "{stderr}");
}

/// `staves assemble --rootfs ROOT --config SPEC` with `args` after it.
fn assemble(
    root: &std::path::Path,
    config: &std::path::Path,
    args: &[String],
) -> std::process::Output {
    staves()
        .args(["assemble", "--rootfs"])
        .arg(root)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `oci:DIR` onto an existing OCI layout replaced the whole directory: the images and every other file in it were
/// deleted. The image is now added to the layout: its other image and the user's file stay, an image with the
/// same tag is replaced, and skopeo reads every image by its tag.
#[test]
fn oci_dir_onto_an_existing_layout_keeps_its_other_images_and_files() {
    if !support::tools_present(&["skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    rootfs(&root);
    let spec = |version: &str, command: &str| {
        let path = tmp.path().join(format!("{version}-{}.toml", command.len()));
        std::fs::write(
            &path,
            format!(
                "name = 'staves-test/layout'\nversion = '{version}'\ncommand = ['{command}']\n\
                 packages = ['app-misc/hello']\n"
            ),
        )
        .unwrap();
        path
    };
    let layout = tmp.path().join("layout");
    let output = vec!["--output".to_owned(), format!("oci:{}", layout.display())];
    let write = |config: &std::path::Path| {
        let out = assemble(&root, config, &output);
        assert!(out.status.success(), "{}", support::stderr(&out));
        support::stdout(&out).trim().to_owned()
    };
    let first = write(&spec("1.0", "/bin/app"));
    std::fs::write(layout.join("NOTES"), b"mine").unwrap();
    let second = write(&spec("2.0", "/bin/app --two"));
    assert_ne!(first, second);

    let inspect = |reference: &str| {
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:{reference}", layout.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {reference}: {}",
            support::stderr(&out)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["Digest"].as_str().unwrap().to_owned()
    };
    assert_eq!(inspect("1.0"), first);
    assert_eq!(inspect("2.0"), second);
    assert_eq!(std::fs::read(layout.join("NOTES")).unwrap(), b"mine");

    // The same tag again, another image: that entry is replaced, the other kept.
    let third = write(&spec("1.0", "/bin/app --three"));
    assert_eq!(inspect("1.0"), third);
    assert_eq!(inspect("2.0"), second);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    // Every blob stays, the replaced image's too: Staves removes nothing it did not make.
    for digest in [&first, &second, &third] {
        let hex = digest.strip_prefix("sha256:").unwrap();
        assert!(layout.join("blobs/sha256").join(hex).is_file(), "{digest}");
    }
    assert_eq!(
        file_names(&layout),
        ["NOTES", "blobs", "index.json", "oci-layout"]
    );
    assert_eq!(
        file_names(tmp.path()),
        ["1.0-16.toml", "1.0-8.toml", "2.0-14.toml", "layout", "root"],
        "no temporary files left"
    );
}

/// `oci:LINK` where LINK is a symlink to an empty directory was refused, saying the path "exists and is not an OCI
/// layout or an empty directory". The link is now followed: the directory becomes the layout, the link stays.
#[test]
fn oci_dir_onto_a_symlink_to_an_empty_directory_fills_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    rootfs(&root);
    let config = tmp.path().join("staves.toml");
    std::fs::write(&config, SPEC).unwrap();
    std::fs::create_dir(tmp.path().join("real")).unwrap();
    std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
    let out = assemble(
        &root,
        &config,
        &[
            "--output".to_owned(),
            format!("oci:{}", tmp.path().join("link").display()),
        ],
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
    assert!(
        std::fs::symlink_metadata(tmp.path().join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        file_names(&tmp.path().join("real")),
        ["blobs", "index.json", "oci-layout"]
    );
}

/// An output path that is a symlink was replaced by a regular file through rename (the link was lost and its
/// target kept its old bytes). The link is now followed, as `cp` does: its target gets the image.
#[test]
fn an_output_through_a_symlink_writes_its_target_and_keeps_the_link() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    rootfs(&root);
    let config = tmp.path().join("staves.toml");
    std::fs::write(&config, SPEC).unwrap();
    let kept = tmp.path().join("kept");
    std::fs::create_dir(&kept).unwrap();
    std::fs::write(kept.join("image.tar"), b"old").unwrap();
    std::os::unix::fs::symlink(kept.join("image.tar"), tmp.path().join("link.tar")).unwrap();
    let out = assemble(
        &root,
        &config,
        &[
            "--output".to_owned(),
            format!("oci-archive:{}", tmp.path().join("link.tar").display()),
            "--output".to_owned(),
            format!("oci-archive:{}", tmp.path().join("direct.tar").display()),
        ],
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
    let link = std::fs::symlink_metadata(tmp.path().join("link.tar")).unwrap();
    assert!(link.file_type().is_symlink(), "the link was replaced");
    assert_eq!(
        std::fs::read(kept.join("image.tar")).unwrap(),
        std::fs::read(tmp.path().join("direct.tar")).unwrap()
    );
    assert_eq!(file_names(&kept), ["image.tar"], "no temporary files left");
    assert_eq!(
        file_names(tmp.path()),
        ["direct.tar", "kept", "link.tar", "root", "staves.toml"]
    );
}

/// An output path that is a FIFO was replaced by a regular file through rename: a reader waiting on the FIFO got
/// nothing. A FIFO is now written through and stays a FIFO.
#[test]
fn an_output_to_a_fifo_is_written_through_and_stays_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    if !support::tools_present(&["mkfifo"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    rootfs(&root);
    let config = tmp.path().join("staves.toml");
    std::fs::write(&config, SPEC).unwrap();
    let fifo = tmp.path().join("pipe");
    support::run(Command::new("mkfifo").arg(&fifo));
    let got = tmp.path().join("got.tar");
    let mut reader = Command::new("cat")
        .arg(&fifo)
        .stdout(std::fs::File::create(&got).unwrap())
        .spawn()
        .unwrap();
    let out = assemble(
        &root,
        &config,
        &[
            "--output".to_owned(),
            format!("oci-archive:{}", fifo.display()),
            "--output".to_owned(),
            format!("oci-archive:{}", tmp.path().join("direct.tar").display()),
        ],
    );
    let still_fifo = std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo();
    if !still_fifo || !out.status.success() {
        // The reader would wait for ever on a FIFO nobody writes.
        let _ = reader.kill();
        let _ = reader.wait();
    }
    assert!(out.status.success(), "{}", support::stderr(&out));
    assert!(still_fifo, "the FIFO was replaced");
    assert!(reader.wait().unwrap().success());
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read(tmp.path().join("direct.tar")).unwrap()
    );
    assert_eq!(
        file_names(tmp.path()),
        ["direct.tar", "got.tar", "pipe", "root", "staves.toml"],
        "no temporary files left"
    );
}

/// Two outputs on one path were all written and all reported: the one written last won. They are now a usage
/// error, said before anything is read or written: two archives on one file, a file and a layout directory on one
/// path, a file inside a layout directory output, and one file under two names (a symlink).
#[test]
fn two_outputs_on_one_path_are_a_usage_error_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    rootfs(&root);
    let config = tmp.path().join("staves.toml");
    std::fs::write(&config, SPEC).unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("mine.tar"), b"mine").unwrap();
    std::os::unix::fs::symlink("mine.tar", out_dir.join("alias.tar")).unwrap();
    let x = out_dir.join("x").display().to_string();
    let mine = out_dir.join("mine.tar").display().to_string();
    let alias = out_dir.join("alias.tar").display().to_string();
    for outputs in [
        vec![format!("docker-archive:{x}"), format!("oci-archive:{x}")],
        vec![format!("oci:{x}"), format!("rootfs:{x}")],
        vec![format!("oci:{x}"), format!("rootfs:{x}/rootfs.tar")],
        vec![format!("rootfs:{mine}"), format!("oci-archive:{alias}")],
    ] {
        let args: Vec<String> = outputs
            .iter()
            .flat_map(|o| ["--output".to_owned(), o.clone()])
            .collect();
        let out = assemble(&root, &config, &args);
        let stderr = support::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{outputs:?}: {stderr}");
        assert!(stderr.contains("collide"), "{stderr}");
        assert!(stderr.contains(&outputs[0]), "{stderr}");
        assert_eq!(
            file_names(&out_dir),
            ["alias.tar", "mine.tar"],
            "{outputs:?} wrote something"
        );
        assert_eq!(std::fs::read(out_dir.join("mine.tar")).unwrap(), b"mine");
    }
}
