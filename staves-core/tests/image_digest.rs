//! The image writer is reproducible: same content and settings, same bytes — whatever the input form.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use staves_core::{Compression, Error, ImageError, ImageSpec, ImageWriter, Output};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

fn spec() -> ImageSpec {
    let mut spec = ImageSpec::new("staves-test/digest");
    spec.version = "1.0".to_owned();
    spec.command = vec!["/bin/tool".to_owned()];
    spec.annotations.insert(
        "org.opencontainers.image.title".to_owned(),
        "digest test".to_owned(),
    );
    spec.annotations
        .insert("a.label".to_owned(), "x".to_owned());
    spec.image.cmd = vec!["--help".to_owned()];
    spec.image
        .env
        .insert("PATH".to_owned(), "/bin:/usr/bin".to_owned());
    spec.image
        .env
        .insert("LANG".to_owned(), "C.UTF-8".to_owned());
    spec.image.exposed_ports = vec!["8080/tcp".to_owned()];
    spec.image.volumes = vec!["/data".to_owned()];
    spec.image.user = Some("1000:1000".to_owned());
    spec.image.workdir = Some("/tmp".to_owned());
    spec.image.stop_signal = Some("SIGINT".to_owned());
    spec
}

/// A writer that does not depend on the environment (SOURCE_DATE_EPOCH, host platform).
fn writer() -> ImageWriter {
    ImageWriter::new(&spec())
        .created(0)
        .mtime_clamp(0)
        .platform("linux", "amd64")
}

/// The fixture as a tar in reverse canonical order, with other mtimes and owner names, and the hardlink pair the
/// other way round (`bin/tool` links to `bin/tool-link`).
fn scrambled_tar(root: &Path) -> Vec<u8> {
    let mut paths: Vec<_> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .collect();
    paths.sort();
    paths.reverse();
    let mut builder = tar::Builder::new(Vec::new());
    for (i, path) in paths.iter().enumerate() {
        let rel = path.strip_prefix(root).unwrap();
        let md = std::fs::symlink_metadata(path).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(u64::from(md.uid()));
        h.set_gid(u64::from(md.gid()));
        h.set_mtime(1_600_000_000 + i as u64);
        h.set_username("builder").unwrap();
        h.set_groupname("wheel").unwrap();
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        if rel == Path::new("bin/tool") {
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            builder.append_link(&mut h, rel, "bin/tool-link").unwrap();
        } else if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            builder.append_data(&mut h, rel, std::io::empty()).unwrap();
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            builder
                .append_link(&mut h, rel, std::fs::read_link(path).unwrap())
                .unwrap();
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
            h.set_size(0);
            builder.append_data(&mut h, rel, std::io::empty()).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            builder
                .append_data(&mut h, rel, std::fs::File::open(path).unwrap())
                .unwrap();
        }
    }
    builder.into_inner().unwrap()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn same_directory_twice_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fixture_dir(&root);
    let a = tmp.path().join("a.tar");
    let b = tmp.path().join("b.tar");
    let ra = writer()
        .write_dir(&root, &[Output::OciArchive(a.clone())])
        .unwrap();
    // Touch every file: mtimes must not matter.
    let status = Command::new("touch")
        .args(["-d", "2001-02-03"])
        .arg(root.join("a.c"))
        .status()
        .unwrap();
    assert!(status.success());
    let rb = writer()
        .write_dir(&root, &[Output::OciArchive(b.clone())])
        .unwrap();
    assert_eq!(ra.digest, rb.digest);
    assert_eq!(ra.layer_digest, rb.layer_digest);
    assert_eq!(read(&a), read(&b));
}

#[test]
fn directory_tar_file_and_sorted_stream_give_the_same_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fixture_dir(&root);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let from_dir = writer()
        .write_dir(&root, &[Output::Rootfs(out.join("dir.tar"))])
        .unwrap();

    let scrambled = tmp.path().join("scrambled.tar");
    std::fs::write(&scrambled, scrambled_tar(&root)).unwrap();
    let from_file = writer()
        .write_tar_file(&scrambled, &[Output::Rootfs(out.join("file.tar"))])
        .unwrap();

    // GNU tar's sorted output, as a non-seekable stream (with `./` prefixes, owner names and real mtimes).
    let mut child = Command::new("tar")
        .args(["--sort=name", "-C"])
        .arg(&root)
        .args(["-cf", "-", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let from_stream = writer()
        .write_tar(stdout, &[Output::Rootfs(out.join("stream.tar"))])
        .unwrap();
    assert!(child.wait().unwrap().success());

    let layer = read(&out.join("dir.tar"));
    assert_eq!(
        layer,
        read(&out.join("file.tar")),
        "tar file layer differs from directory layer"
    );
    assert_eq!(
        layer,
        read(&out.join("stream.tar")),
        "stream layer differs from directory layer"
    );
    assert_eq!(from_dir.diff_id, from_file.diff_id);
    assert_eq!(from_dir.digest, from_file.digest);
    assert_eq!(from_dir.digest, from_stream.digest);
}

#[test]
fn layer_entries_are_normalized_and_keep_what_matters() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fixture_dir(&root);
    let rootfs = tmp.path().join("rootfs.tar");
    writer()
        .write_dir(&root, &[Output::Rootfs(rootfs.clone())])
        .unwrap();
    let entries = list_tar(&read(&rootfs));
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    let long = long_name();
    let long_dir = format!("{}/", &long[..long.len() - "/file".len()]);
    let expected = vec![
        "a/",
        "a/x",
        "a-b",
        "a.c",
        "bin/",
        "bin/abs",
        "bin/sym",
        "bin/tool",
        "bin/tool-link",
        "deep/",
        &long_dir,
        &long,
        "empty",
        "etc/",
        "etc/.wh.gone",
        "fifo",
        "tmp/",
        "usr/",
        "usr/bin/",
        "usr/bin/su",
        "var/",
        "var/empty/",
    ];
    assert_eq!(names, expected);
    let get = |name: &str| entries.iter().find(|e| e.0 == name).unwrap().clone();
    assert!(
        entries.iter().all(|e| e.5 == 0),
        "every mtime is clamped to 0"
    );
    assert_eq!(get("usr/bin/su").2, 0o4755);
    assert_eq!(get("tmp/").2, 0o1777);
    assert_eq!(get("a/").2, 0o750);
    assert_eq!(get("a-b").2, 0o600);
    assert_eq!(get("bin/sym").7, "tool");
    assert_eq!(
        get("bin/abs").7,
        "/bin/tool",
        "absolute symlinks are kept as they are"
    );
    let link = get("bin/tool-link");
    assert_eq!((link.1, link.7.as_str(), link.2), ('1', "bin/tool", 0o755));
    assert_eq!(get("bin/tool").6, 3 << 20);
    assert_eq!(get("fifo").1, '6');
    // No owner names anywhere.
    let bytes = read(&rootfs);
    let mut archive = tar::Archive::new(&bytes[..]);
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().username_bytes(), Some(&b""[..]));
        assert_eq!(e.header().groupname_bytes(), Some(&b""[..]));
    }
}

#[test]
fn owner_names_and_mtimes_do_not_change_the_digest_but_ids_and_modes_do() {
    let base = |mtime: u64, uid: u64, mode: u32| {
        let mut t = RawTar::new();
        t.dir("etc/", 0o755)
            .file_owned("etc/conf", mode, uid, 0, mtime, b"conf\n");
        t.finish()
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |bytes: Vec<u8>, name: &str| {
        writer()
            .write_tar(&bytes[..], &[Output::Rootfs(tmp.path().join(name))])
            .unwrap()
            .digest
    };
    let a = run(base(1, 0, 0o644), "a");
    assert_eq!(a, run(base(1_999_999_999, 0, 0o644), "b"));
    assert_ne!(a, run(base(1, 1000, 0o644), "c"), "uid is content");
    assert_ne!(a, run(base(1, 0, 0o640), "d"), "mode is content");
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let mut t = RawTar::new();
    t.file_owned("new", 0o644, 0, 0, 2_000, b"n")
        .file_owned("old", 0o644, 0, 0, 500, b"o");
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("r.tar");
    writer()
        .mtime_clamp(1_000)
        .write_tar(&t.finish()[..], &[Output::Rootfs(rootfs.clone())])
        .unwrap();
    let entries = list_tar(&read(&rootfs));
    assert_eq!(entries[0].0, "new");
    assert_eq!(entries[0].5, 1_000);
    assert_eq!(entries[1].5, 500);
}

#[test]
fn gzip_and_zstd_share_the_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fixture_dir(&root);
    let g = writer()
        .write_dir(&root, &[Output::OciDir(tmp.path().join("g"))])
        .unwrap();
    let z = writer()
        .compression(Compression::Zstd)
        .write_dir(&root, &[Output::OciDir(tmp.path().join("z"))])
        .unwrap();
    assert_eq!(g.diff_id, z.diff_id);
    assert_eq!(
        g.config_digest, z.config_digest,
        "the image ID does not depend on the compression"
    );
    assert_ne!(g.layer_digest, z.layer_digest);
    assert_ne!(g.digest, z.digest);
    let blob = read(
        &tmp.path()
            .join("z/blobs/sha256")
            .join(z.layer_digest.trim_start_matches("sha256:")),
    );
    assert_eq!(&blob[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    let blob = read(
        &tmp.path()
            .join("g/blobs/sha256")
            .join(g.layer_digest.trim_start_matches("sha256:")),
    );
    let mut layer = Vec::new();
    flate2::read::MultiGzDecoder::new(&blob[..])
        .read_to_end(&mut layer)
        .unwrap();
    assert_eq!(g.diff_id, format!("sha256:{}", sha256_hex(&layer)));
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn config_manifest_and_index_carry_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = RawTar::new();
    t.file("hello", 0o755, b"hi");
    let dir = tmp.path().join("layout");
    let report = writer()
        .write_tar(&t.finish()[..], &[Output::OciDir(dir.clone())])
        .unwrap();
    let blob = |d: &str| -> serde_json::Value {
        let bytes = read(
            &dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        );
        assert_eq!(
            format!("sha256:{}", sha256_hex(&bytes)),
            d,
            "blob name is its digest"
        );
        serde_json::from_slice(&bytes).unwrap()
    };
    let index: serde_json::Value = serde_json::from_slice(&read(&dir.join("index.json"))).unwrap();
    assert_eq!(index["manifests"][0]["digest"], report.digest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1.0"
    );
    let manifest = blob(&report.digest);
    assert_eq!(manifest["config"]["digest"], report.config_digest.as_str());
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(manifest["layers"][0]["size"], report.layer_size);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "digest test"
    );
    let config = blob(&report.config_digest);
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    assert_eq!(config["rootfs"]["diff_ids"][0], report.diff_id.as_str());
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/tool"]));
    assert_eq!(c["Cmd"], serde_json::json!(["--help"]));
    assert_eq!(
        c["Env"],
        serde_json::json!(["PATH=/bin:/usr/bin", "LANG=C.UTF-8"]),
        "env keeps the spec's order"
    );
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/tmp");
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Labels"]["a.label"], "x");
    assert_eq!(
        read(&dir.join("oci-layout")),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
}

/// One pinned digest: a small rootfs given as a tar (explicit uid/gid/mode), fixed settings. If this changes, the
/// image bytes changed for everyone: only update it on purpose.
#[test]
fn golden_digest() {
    let mut t = RawTar::new();
    t.dir("bin/", 0o755)
        .file_owned(
            "bin/app",
            0o755,
            0,
            0,
            1_700_000_000,
            &pseudo_random(200_000, 42),
        )
        .symlink("bin/sh", "/bin/app")
        .dir("etc/", 0o755)
        .file_owned(
            "etc/passwd",
            0o644,
            0,
            0,
            1,
            b"root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        )
        .file_owned(
            "home/app/.profile",
            0o600,
            1000,
            1000,
            5,
            &b"export A=1\n".repeat(300),
        )
        .hardlink("bin/app2", "bin/app");
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = ImageSpec::new("staves/golden");
    spec.command = vec!["/bin/app".to_owned()];
    spec.annotations.insert(
        "org.opencontainers.image.source".to_owned(),
        "golden".to_owned(),
    );
    let archive = tmp.path().join("golden.tar");
    std::fs::write(&archive, t.finish()).unwrap();
    let report = ImageWriter::new(&spec)
        .created(0)
        .mtime_clamp(0)
        .platform("linux", "amd64")
        .write_tar_file(&archive, &[Output::OciArchive(tmp.path().join("out.tar"))])
        .unwrap();
    // The uncompressed layer depends only on Staves' tar encoding.
    assert_eq!(
        report.diff_id,
        "sha256:229678f3329f4d857b40a6cf139b08948bfcbb2e41318f844d91b182d894c1f4"
    );
    // The image digest also pins the gzip bytes (zlib-rs level 6, 1 MiB members), fixed by Cargo.lock.
    assert_eq!(
        report.digest,
        "sha256:ed7ee629006353af99e93dccefc037835c9c898d8934189546369ba2cfa199d0"
    );
}

#[test]
fn out_of_order_stream_fails_and_leaves_nothing_behind() {
    let mut t = RawTar::new();
    t.file("b", 0o644, b"b").file("a", 0o644, b"a");
    let bytes = t.finish();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let outputs = [
        Output::OciArchive(out.join("img.tar")),
        Output::Rootfs(out.join("r.tar")),
        Output::OciDir(out.join("layout")),
    ];
    let err = writer().write_tar(&bytes[..], &outputs).unwrap_err();
    assert!(
        matches!(err, Error::Image(ImageError::OutOfOrder { .. })),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("`a` comes after `b`"), "{text}");
    assert!(
        dir_names(&out).is_empty(),
        "left behind: {:?}",
        dir_names(&out)
    );
    // The same bytes as a seekable file are fine.
    let file = tmp.path().join("in.tar");
    std::fs::write(&file, &bytes).unwrap();
    writer().write_tar_file(&file, &outputs).unwrap();
    assert_eq!(dir_names(&out), vec!["img.tar", "layout", "r.tar"]);
    let names: Vec<String> = list_tar(&read(&out.join("r.tar")))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[test]
fn an_existing_oci_layout_gets_the_image_added_but_other_directories_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = RawTar::new();
    t.file("x", 0o644, b"x");
    let bytes = t.finish();
    let layout = tmp.path().join("layout");
    writer()
        .write_tar(&bytes[..], &[Output::OciDir(layout.clone())])
        .unwrap();
    writer()
        .write_tar(&bytes[..], &[Output::OciDir(layout.clone())])
        .unwrap();
    assert_eq!(
        dir_names(&layout),
        vec!["blobs", "index.json", "oci-layout"]
    );
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep"), b"mine").unwrap();
    let err = writer()
        .write_tar(&bytes[..], &[Output::OciDir(other.clone())])
        .unwrap_err();
    assert!(err.to_string().contains("is not an OCI layout"), "{err}");
    assert_eq!(read(&other.join("keep")), b"mine");
    assert_eq!(
        dir_names(tmp.path()),
        vec!["layout", "other"],
        "no temporary files left"
    );
}

#[test]
fn xattrs_from_pax_headers_are_kept_but_selinux_labels_are_not() {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([
            (
                "SCHILY.xattr.security.capability",
                &b"\x01\x00\x00\x02\x00\x20\x00\x00"[..],
            ),
            (
                "SCHILY.xattr.security.selinux",
                &b"system_u:object_r:bin_t:s0"[..],
            ),
            ("SCHILY.xattr.user.note", &b"kept"[..]),
        ])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(4);
    builder
        .append_data(&mut h, "bin/ping", &b"ping"[..])
        .unwrap();
    let bytes = builder.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("r.tar");
    writer()
        .write_tar(&bytes[..], &[Output::Rootfs(rootfs.clone())])
        .unwrap();
    let out = read(&rootfs);
    let mut archive = tar::Archive::new(&out[..]);
    let mut entries = archive.entries().unwrap();
    let mut e = entries.next().unwrap().unwrap();
    assert_eq!(e.path_bytes().as_ref(), b"bin/ping");
    let pax: Vec<(String, Vec<u8>)> = e
        .pax_extensions()
        .unwrap()
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.key().unwrap().to_owned(), r.value_bytes().to_vec())
        })
        .collect();
    assert_eq!(
        pax,
        vec![
            (
                "SCHILY.xattr.security.capability".to_owned(),
                b"\x01\x00\x00\x02\x00\x20\x00\x00".to_vec()
            ),
            ("SCHILY.xattr.user.note".to_owned(), b"kept".to_vec()),
        ]
    );
}

#[test]
fn directory_xattrs_match_pax_xattrs_from_a_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    write_file(&root.join("tool"), b"tool", 0o755);
    // Needs a filesystem with user xattrs (ext4, xfs, btrfs, overlayfs, tmpfs ≥ 6.6).
    xattr::set(root.join("tool"), "user.staves.test", b"value")
        .expect("set a user xattr in the temp dir");
    let from_dir = tmp.path().join("dir.tar");
    writer()
        .write_dir(&root, &[Output::Rootfs(from_dir.clone())])
        .unwrap();

    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([("SCHILY.xattr.user.staves.test", &b"value"[..])])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_uid(u64::from(std::fs::metadata(&root).unwrap().uid()));
    h.set_gid(u64::from(std::fs::metadata(&root).unwrap().gid()));
    h.set_mtime(0);
    h.set_size(4);
    builder.append_data(&mut h, "tool", &b"tool"[..]).unwrap();
    let from_tar = tmp.path().join("tar.tar");
    writer()
        .write_tar(
            &builder.into_inner().unwrap()[..],
            &[Output::Rootfs(from_tar.clone())],
        )
        .unwrap();
    assert_eq!(read(&from_dir), read(&from_tar));
    assert!(
        read(&from_dir)
            .windows(22)
            .any(|w| w == b"SCHILY.xattr.user.stav")
    );
}

/// A stream that notes whether its reader reached its end, and how much was read.
struct Tracked<R> {
    inner: R,
    read: u64,
    ended: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.ended |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

#[test]
fn a_stream_is_read_to_its_end_but_not_beyond_a_bounded_padding() {
    let mut t = RawTar::new();
    t.file_owned("a", 0o644, 0, 0, 0, b"a");
    let mut bytes = t.finish();
    // The engine pads its archives to a full record after the end-of-archive marker.
    bytes.resize(bytes.len().next_multiple_of(10_240) + 10_240, 0);
    let tmp = tempfile::tempdir().unwrap();
    let mut stream = Tracked {
        inner: &bytes[..],
        read: 0,
        ended: false,
    };
    writer()
        .write_tar(&mut stream, &[Output::Rootfs(tmp.path().join("a.tar"))])
        .unwrap();
    assert!(stream.ended, "a streaming source must see its end");
    assert_eq!(stream.read, bytes.len() as u64);

    // An endless source after a complete archive: the writer stops after a bounded amount and still succeeds.
    let archive = t.finish();
    let mut endless = Tracked {
        inner: archive.as_slice().chain(std::io::repeat(0)),
        read: 0,
        ended: false,
    };
    writer()
        .write_tar(&mut endless, &[Output::Rootfs(tmp.path().join("b.tar"))])
        .unwrap();
    assert!(!endless.ended);
    assert!(endless.read <= 4 << 20, "{}", endless.read);
}
