//! Hostile rootfs tars: each gives a clear error or a safe result, and nothing is written outside the destination.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use staves_core::{Error, ImageError, ImageSpec, ImageWriter, Output};
use std::path::Path;

fn writer() -> ImageWriter {
    ImageWriter::new(&ImageSpec::new("staves-test/hostile"))
        .created(0)
        .mtime_clamp(0)
}

/// Run `bytes` through both the stream and the seekable-file paths into a fresh `out/` directory of a sandbox,
/// and check that nothing but the outputs ever appears in the sandbox. Each result lists the written rootfs tar:
/// `path type link` per entry.
fn both(bytes: &[u8]) -> (Result<Vec<String>, Error>, Result<Vec<String>, Error>) {
    let list = |rootfs: Vec<u8>| -> Vec<String> {
        list_tar(&rootfs)
            .into_iter()
            .map(|e| format!("{} {} {}", e.0, e.1, e.7).trim_end().to_owned())
            .collect()
    };
    let (stream, file) = both_rootfs(bytes);
    (stream.map(list), file.map(list))
}

/// [`both`], returning the bytes of the written rootfs tar.
fn both_rootfs(bytes: &[u8]) -> (Result<Vec<u8>, Error>, Result<Vec<u8>, Error>) {
    let sandbox = tempfile::tempdir().unwrap();
    let input = sandbox.path().join("input.tar");
    std::fs::write(&input, bytes).unwrap();
    let run = |name: &str, f: &dyn Fn(&[Output]) -> Result<staves_core::ImageReport, Error>| {
        let out = sandbox.path().join(name);
        std::fs::create_dir(&out).unwrap();
        let rootfs = out.join("rootfs.tar");
        let outputs = [
            Output::OciArchive(out.join("img.tar")),
            Output::Rootfs(rootfs.clone()),
        ];
        let result = f(&outputs).map(|_| std::fs::read(&rootfs).unwrap());
        if result.is_err() {
            assert!(
                dir_names(&out).is_empty(),
                "a failed write left {:?}",
                dir_names(&out)
            );
        } else {
            assert_eq!(dir_names(&out), vec!["img.tar", "rootfs.tar"]);
        }
        result
    };
    let stream = run("stream", &|o| writer().write_tar(bytes, o));
    let file = run("file", &|o| writer().write_tar_file(&input, o));
    let mut names = dir_names(sandbox.path());
    names.retain(|n| n != "input.tar");
    assert_eq!(
        names,
        vec!["file", "stream"],
        "something was written outside the destinations"
    );
    assert_no_escape(sandbox.path());
    (stream, file)
}

/// Nothing named like the hostile targets appeared next to or above the sandbox.
fn assert_no_escape(sandbox: &Path) {
    let parent = sandbox.parent().unwrap();
    assert!(!parent.join("escaped").exists());
    assert!(!sandbox.join("escaped").exists());
}

fn expect_err<T: std::fmt::Debug>(result: Result<T, Error>, want: &str) -> ImageError {
    match result {
        Err(Error::Image(e)) => {
            assert!(
                e.to_string().contains(want),
                "message `{e}` does not contain `{want}`"
            );
            e
        }
        other => panic!("expected an image error containing `{want}`, got {other:?}"),
    }
}

#[test]
fn dotdot_path_is_an_error_naming_the_entry() {
    let mut t = RawTar::new();
    t.file("../../escaped", 0o644, b"x");
    let (stream, file) = both(&t.finish());
    let e = expect_err(stream, "`../../escaped`");
    assert!(matches!(e, ImageError::UnsafePath { .. }));
    expect_err(file, "`../../escaped`");
}

#[test]
fn dotdot_inside_a_path_is_an_error_too() {
    let mut t = RawTar::new();
    t.dir("a/", 0o755).file("a/../../escaped", 0o644, b"x");
    let (stream, file) = both(&t.finish());
    expect_err(stream, "`..` component");
    expect_err(file, "`..` component");
}

#[test]
fn absolute_paths_are_re_rooted() {
    let mut t = RawTar::new();
    t.dir("/etc/", 0o755).file("/etc/escaped", 0o644, b"x");
    let (stream, file) = both(&t.finish());
    assert_eq!(stream.unwrap(), vec!["etc/ 5", "etc/escaped 0"]);
    assert_eq!(file.unwrap(), vec!["etc/ 5", "etc/escaped 0"]);
}

#[test]
fn symlinks_pointing_anywhere_are_kept_as_data_and_never_followed() {
    let mut t = RawTar::new();
    t.symlink("abs", "/etc/passwd")
        .symlink("up", "../../../../escaped")
        .dir("up2/", 0o755);
    let (stream, file) = both(&t.finish());
    let want = vec!["abs 2 /etc/passwd", "up 2 ../../../../escaped", "up2/ 5"];
    assert_eq!(stream.unwrap(), want);
    assert_eq!(file.unwrap(), want);
}

#[test]
fn an_entry_below_a_symlink_is_refused() {
    // Docker would follow `evil` when it extracts the layer, so the image would not hold what the layer lists.
    let mut t = RawTar::new();
    t.symlink("evil", "/etc").file("evil/passwd", 0o644, b"x");
    let (stream, file) = both(&t.finish());
    let e = expect_err(stream, "`evil/passwd`");
    assert!(matches!(e, ImageError::UnsafePath { .. }), "{e:?}");
    assert!(
        e.to_string().contains("below `evil`, a symlink to `/etc`"),
        "{e}"
    );
    expect_err(file, "a symlink to `/etc`");
}

#[test]
fn an_entry_deep_below_a_symlink_or_below_a_file_is_refused() {
    let mut t = RawTar::new();
    t.dir("a/", 0o755)
        .symlink("a/l", "..")
        .dir("a/l/b/", 0o755)
        .file("a/l/b/c", 0o644, b"x");
    let (stream, file) = both(&t.finish());
    expect_err(stream, "`a/l/b`");
    expect_err(file, "below `a/l`, a symlink to `..`");

    let mut t = RawTar::new();
    t.file("f", 0o644, b"x").file("f/g", 0o644, b"y");
    let (stream, file) = both(&t.finish());
    expect_err(
        stream,
        "`f/g` in the rootfs: it lies below `f`, which is not a directory",
    );
    expect_err(file, "not a directory");
}

#[test]
fn a_symlink_and_a_sibling_with_a_common_prefix_are_fine() {
    let mut t = RawTar::new();
    t.symlink("lib", "usr/lib")
        .dir("lib64/", 0o755)
        .file("lib64/x", 0o644, b"x");
    let (stream, file) = both(&t.finish());
    let want = vec!["lib 2 usr/lib", "lib64/ 5", "lib64/x 0"];
    assert_eq!(stream.unwrap(), want);
    assert_eq!(file.unwrap(), want);
}

/// A PAX extended header (type `x`) with `records`, for the entry pushed next.
fn pax(t: &mut RawTar, records: &[(&str, &[u8])]) {
    let mut data = Vec::new();
    for (key, value) in records {
        let rest = 1 + key.len() + 1 + value.len() + 1;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..14].copy_from_slice(b"././@PaxHeader");
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    t.push(h, &data);
}

#[test]
fn a_path_longer_than_path_max_is_refused() {
    let long = format!("{}/f", vec!["d".repeat(200); 25].join("/"));
    assert!(long.len() > 4096);
    let mut t = RawTar::new();
    pax(&mut t, &[("path", long.as_bytes())]);
    t.file("placeholder", 0o644, b"x");
    let (stream, file) = both(&t.finish());
    let e = expect_err(stream, "PATH_MAX");
    assert!(matches!(e, ImageError::Unrepresentable { .. }), "{e:?}");
    expect_err(file, "PATH_MAX");

    // Just under the limit is fine: `/` + 4094 bytes.
    let fits = format!(
        "{}/{}",
        vec!["d".repeat(200); 20].join("/"),
        "f".repeat(4094 - 20 * 201)
    );
    assert_eq!(fits.len(), 4094);
    let mut t = RawTar::new();
    pax(&mut t, &[("path", fits.as_bytes())]);
    t.file("placeholder", 0o644, b"x");
    let (stream, _) = both(&t.finish());
    assert_eq!(stream.unwrap(), vec![format!("{fits} 0")]);
}

#[test]
fn a_name_longer_than_name_max_is_refused() {
    let mut t = RawTar::new();
    pax(&mut t, &[("path", "n".repeat(256).as_bytes())]);
    t.file("placeholder", 0o644, b"x");
    let (stream, file) = both(&t.finish());
    expect_err(stream, "a component of 256 bytes");
    expect_err(file, "NAME_MAX");
}

#[test]
fn a_name_with_a_nul_byte_is_refused() {
    let mut t = RawTar::new();
    pax(&mut t, &[("path", b"etc/pass\0wd")]);
    t.file("placeholder", 0o644, b"x");
    let (stream, file) = both(&t.finish());
    let e = expect_err(stream, "`etc/pass\\0wd`");
    assert!(e.to_string().contains("NUL byte"), "{e}");
    expect_err(file, "NUL byte");

    let mut t = RawTar::new();
    pax(&mut t, &[("linkpath", b"/etc/\0")]);
    t.symlink("l", "placeholder");
    let (stream, _) = both(&t.finish());
    expect_err(stream, "symlink target contains a NUL byte");
}

#[test]
fn a_symlink_target_longer_than_path_max_is_refused() {
    let mut t = RawTar::new();
    pax(&mut t, &[("linkpath", "t/".repeat(2100).as_bytes())]);
    t.symlink("l", "placeholder");
    let (stream, file) = both(&t.finish());
    expect_err(stream, "symlink target is 4200 bytes long");
    expect_err(file, "symlink target");
}

#[test]
fn names_are_escaped_in_messages() {
    // A terminal escape sequence, a newline and a byte that is not UTF-8 in the name of a `..` entry.
    let mut t = RawTar::new();
    t.file("../\x1b[31mred\nline", 0o644, b"x");
    let mut bytes = t.finish();
    let at = bytes.windows(4).position(|w| w == b"line").unwrap();
    bytes[at] = 0xff;
    // The header checksum covers the name: recompute it.
    let mut h = tar::Header::new_old();
    h.as_mut_bytes().copy_from_slice(&bytes[..512]);
    h.set_cksum();
    bytes[..512].copy_from_slice(h.as_bytes());
    let (stream, file) = both(&bytes);
    for result in [stream, file] {
        let e = expect_err(result, "`../\\u{1b}[31mred\\n\\xffine`");
        let text = e.to_string();
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(!text.contains("red\nl"), "{text:?}");
    }
}

#[test]
fn garbage_with_control_bytes_prints_none_of_them() {
    // A header whose numeric fields hold terminal escapes and whose checksum is right: the reader's message quotes
    // the field, and the writer's message must escape it.
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..5].copy_from_slice(b"\x1b]0;x");
    h.set_entry_type(tar::EntryType::Regular);
    h.as_mut_bytes()[124..136].copy_from_slice(b"\x1b[2J\x07\x1b[1;1H\x1b");
    h.set_cksum();
    let mut t = RawTar::new();
    t.bytes.extend_from_slice(h.as_bytes());
    let bytes = t.finish();
    let (stream, file) = both(&bytes);
    for result in [stream, file] {
        let Err(Error::Image(e)) = result else {
            panic!("{result:?}")
        };
        let text = e.to_string();
        assert!(text.contains("corrupt"), "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
    }
}

#[test]
fn dotdot_hardlink_is_an_error() {
    let mut t = RawTar::new();
    t.hardlink("h", "../../etc/passwd");
    let (stream, file) = both(&t.finish());
    let e = expect_err(stream, "bad hardlink `h` -> `../../etc/passwd`");
    assert!(matches!(e, ImageError::Hardlink { .. }));
    expect_err(file, "bad hardlink `h`");
}

#[test]
fn hardlink_to_a_missing_target_is_an_error() {
    let mut t = RawTar::new();
    t.file("a", 0o644, b"a").hardlink("h", "nowhere");
    let (stream, file) = both(&t.finish());
    expect_err(stream, "not a file that appears earlier");
    expect_err(file, "not in the archive");
}

#[test]
fn hardlink_to_a_later_entry_is_an_error_in_a_stream() {
    let mut t = RawTar::new();
    t.hardlink("a", "b").file("b", 0o644, b"b");
    let (stream, file) = both(&t.finish());
    expect_err(stream, "not a file that appears earlier");
    // A seekable file is sorted first, so the link is fine there.
    assert_eq!(file.unwrap(), vec!["a 0", "b 1 a"]);
}

#[test]
fn hardlink_to_a_directory_is_an_error() {
    let mut t = RawTar::new();
    t.dir("d/", 0o755).hardlink("h", "d");
    let (stream, file) = both(&t.finish());
    expect_err(stream, "bad hardlink");
    expect_err(file, "directory");
}

#[test]
fn absolute_hardlink_targets_are_re_rooted_like_paths() {
    let mut t = RawTar::new();
    t.file("/bin/a", 0o755, b"a").hardlink("/bin/b", "/bin/a");
    let (stream, file) = both(&t.finish());
    assert_eq!(stream.unwrap(), vec!["bin/a 0", "bin/b 1 bin/a"]);
    assert_eq!(file.unwrap(), vec!["bin/a 0", "bin/b 1 bin/a"]);
}

#[test]
fn truncated_in_the_middle_of_data() {
    let mut t = RawTar::new();
    t.file("big", 0o644, &pseudo_random(10_000, 1));
    let bytes = t.finish();
    let (stream, file) = both(&bytes[..3_000]);
    let e = expect_err(stream, "truncated");
    assert!(matches!(e, ImageError::Truncated { .. }), "{e:?}");
    expect_err(file, "truncated");
}

#[test]
fn truncated_in_the_middle_of_a_header() {
    let mut t = RawTar::new();
    t.file("a", 0o644, b"a").file("b", 0o644, b"b");
    let bytes = t.finish();
    let (stream, file) = both(&bytes[..1024 + 100]);
    expect_err(stream, "truncated");
    expect_err(file, "truncated");
}

#[test]
fn truncated_at_an_entry_boundary_without_end_marker() {
    let mut t = RawTar::new();
    t.file("a", 0o644, b"a").file("b", 0o644, b"b");
    let bytes = t.bytes.clone();
    let (stream, file) = both(&bytes);
    expect_err(stream, "end-of-archive marker");
    expect_err(file, "end-of-archive marker");
}

#[test]
fn empty_input_is_an_error() {
    let (stream, file) = both(b"");
    expect_err(stream, "truncated");
    expect_err(file, "truncated");
}

#[test]
fn garbage_is_an_error() {
    let garbage = pseudo_random(4096, 9);
    let (stream, file) = both(&garbage);
    for result in [stream, file] {
        let e = expect_err(result, "is truncated or corrupt");
        assert!(e.to_string().contains("is it a tar archive?"), "{e}");
        assert!(
            !e.to_string().chars().any(|c| c.is_control() && c != '\n'),
            "{e:?}"
        );
    }
}

#[test]
fn duplicate_entries_are_an_error() {
    let mut t = RawTar::new();
    t.file("a", 0o644, b"1").file("./a", 0o644, b"2");
    let (stream, file) = both(&t.finish());
    expect_err(stream, "has the entry `a` twice");
    expect_err(file, "twice");
}

#[test]
fn whiteouts_are_ordinary_entries() {
    let mut t = RawTar::new();
    t.dir("etc/", 0o755)
        .file("etc/.wh..wh..opq", 0o644, b"")
        .file("etc/.wh.passwd", 0o644, b"");
    let (stream, file) = both(&t.finish());
    let want = vec!["etc/ 5", "etc/.wh..wh..opq 0", "etc/.wh.passwd 0"];
    assert_eq!(stream.unwrap(), want);
    assert_eq!(file.unwrap(), want);
}

#[test]
fn root_entry_is_dropped_and_dot_slash_stripped() {
    let mut t = RawTar::new();
    t.dir("./", 0o700)
        .dir("./etc/", 0o755)
        .file("./etc/hosts", 0o644, b"h");
    let (stream, file) = both(&t.finish());
    assert_eq!(stream.unwrap(), vec!["etc/ 5", "etc/hosts 0"]);
    assert_eq!(file.unwrap(), vec!["etc/ 5", "etc/hosts 0"]);
}

#[test]
fn a_missing_rootfs_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = writer()
        .write_dir(
            &tmp.path().join("nope"),
            &[Output::Rootfs(tmp.path().join("r.tar"))],
        )
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(err.exit_code(), 5);
    assert!(dir_names(tmp.path()).is_empty());
}

/// Files with real holes on disk, and their exact content.
fn sparse_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    use std::os::unix::fs::FileExt;
    let mut files = Vec::new();
    let mut make = |name: &str, size: u64, runs: &[(u64, Vec<u8>)]| {
        let f = std::fs::File::create(dir.join(name)).unwrap();
        f.set_len(size).unwrap();
        let mut content = vec![0u8; size as usize];
        for (offset, data) in runs {
            f.write_all_at(data, *offset).unwrap();
            content[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
        }
        files.push((name.to_owned(), content));
    };
    // Data in the middle, a hole at the start and a trailing hole. (Holes are whole file system blocks, 4 KiB.)
    make(
        "a-few-runs",
        512 << 10,
        &[
            (64 << 10, vec![b'A'; 5000]),
            ((128 << 10) + 7, b"hello".to_vec()),
            ((192 << 10) + 100, b"tail".to_vec()),
        ],
    );
    // Only holes.
    make("all-hole", 128 << 10, &[]);
    // Data up to the very end.
    make(
        "data-at-end",
        256 << 10,
        &[((256 << 10) - 10, b"0123456789".to_vec())],
    );
    // More runs than an old-GNU header holds (4), so the map continues in extension blocks.
    let runs: Vec<(u64, Vec<u8>)> = (0..40u64)
        .map(|i| ((4 << 10) + i * (8 << 10), pseudo_random(100, i + 1)))
        .collect();
    make("many-runs", 40 * (8 << 10) + (8 << 10), &runs);
    files
}

/// `tar --sparse` with `args`, over the files of `dir`, sorted by name (so the stream path takes it too).
fn gnu_tar_sparse(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = dir.parent().unwrap().join("sparse.tar");
    let status = std::process::Command::new("tar")
        .args([
            "--sparse",
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
        ])
        .args(args)
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(&out)
        .arg(".")
        .status()
        .expect("GNU tar runs");
    assert!(status.success());
    std::fs::read(&out).unwrap()
}

/// The content of `name` in a written rootfs tar.
fn content_of(rootfs: &[u8], name: &str) -> Vec<u8> {
    use std::io::Read;
    let mut archive = tar::Archive::new(rootfs);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path_bytes().as_ref() == name.as_bytes() {
            assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            return data;
        }
    }
    panic!("{name} is not in the rootfs");
}

#[test]
fn sparse_files_from_gnu_tar_expand_to_their_exact_bytes_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("files");
    std::fs::create_dir(&dir).unwrap();
    let files = sparse_files(&dir);
    for args in [
        &["--format=gnu"][..],
        &["--format=posix"],
        &["--format=posix", "--sparse-version=0.0"],
        &["--format=posix", "--sparse-version=0.1"],
        &["--format=posix", "--sparse-version=1.0"],
    ] {
        let bytes = gnu_tar_sparse(&dir, args);
        // The archive really stores sparse files (else this test would prove nothing).
        let marked = if args[0] == "--format=gnu" {
            // A header of type `S` (old-GNU sparse), recognised by its `ustar  ` magic.
            bytes
                .chunks(512)
                .any(|h| h.len() == 512 && h[156] == b'S' && &h[257..265] == b"ustar  \0")
        } else {
            bytes.windows(11).any(|w| w == b"GNU.sparse.")
        };
        assert!(marked, "{args:?}: GNU tar wrote no sparse entry");
        let (stream, file) = both_rootfs(&bytes);
        for (how, result) in [("stream", stream), ("file", file)] {
            let rootfs = result.unwrap_or_else(|e| panic!("{args:?} {how}: {e}"));
            let names: Vec<String> = list_tar(&rootfs).into_iter().map(|e| e.0).collect();
            assert_eq!(
                names,
                vec!["a-few-runs", "all-hole", "data-at-end", "many-runs"],
                "{args:?} {how}: no GNUSparseFile.N/ names, every file once"
            );
            for (name, want) in &files {
                let got = content_of(&rootfs, name);
                assert_eq!(got.len(), want.len(), "{args:?} {how}: size of {name}");
                assert!(got == *want, "{args:?} {how}: content of {name} differs");
            }
        }
    }
}

#[test]
fn a_pax_sparse_map_that_lies_is_refused() {
    // Map (1.0, in the data) says 3 bytes at offset 8 but the file is only 10 bytes long: past the end.
    let mut map = b"1\n8\n3\n".to_vec();
    map.resize(512, 0);
    map.extend_from_slice(b"xyz");
    let mut t = RawTar::new();
    pax(
        &mut t,
        &[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"f"),
            ("GNU.sparse.realsize", b"10"),
        ],
    );
    t.file("GNUSparseFile.1/f", 0o644, &map);
    let (stream, file) = both_rootfs(&t.finish());
    let e = expect_err(stream, "sparse file `f`");
    assert!(matches!(e, ImageError::Truncated { .. }), "{e:?}");
    assert!(
        e.to_string().contains("past the file's size of 10 bytes"),
        "{e}"
    );
    expect_err(file, "past the file's size");

    // Map (0.1) lists 5 bytes of data but 3 are stored.
    let mut t = RawTar::new();
    pax(
        &mut t,
        &[("GNU.sparse.size", b"100"), ("GNU.sparse.map", b"0,5")],
    );
    t.file("f", 0o644, b"xyz");
    let (stream, file) = both_rootfs(&t.finish());
    expect_err(stream, "lists 5 bytes of data but the entry stores 3");
    expect_err(file, "lists 5 bytes");
}

#[test]
fn an_unknown_pax_sparse_version_is_refused() {
    let mut t = RawTar::new();
    pax(
        &mut t,
        &[
            ("GNU.sparse.major", b"2"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.realsize", b"10"),
        ],
    );
    t.file("f", 0o644, b"x");
    let (stream, file) = both_rootfs(&t.finish());
    let e = expect_err(
        stream,
        "PAX sparse file format 2.0, which Staves cannot expand",
    );
    assert!(matches!(e, ImageError::Unrepresentable { .. }), "{e:?}");
    expect_err(file, "cannot expand");
}

#[test]
fn a_sparse_file_too_big_to_expand_is_refused() {
    // 3 stored bytes claiming a 100 GiB file (a `lastlog` of a large UID looks like this).
    let size = (100u64 << 30).to_string();
    let map = format!("{},3", (100u64 << 30) - 3);
    let mut t = RawTar::new();
    pax(
        &mut t,
        &[
            ("GNU.sparse.size", size.as_bytes()),
            ("GNU.sparse.map", map.as_bytes()),
        ],
    );
    t.file("var/log/lastlog", 0o644, b"xyz");
    let (stream, file) = both_rootfs(&t.finish());
    let e = expect_err(stream, "sparse file of 107374182400 bytes (3 stored)");
    assert!(matches!(e, ImageError::Unrepresentable { .. }), "{e:?}");
    expect_err(file, "more than the 64 GiB Staves expands");
}
