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
/// and check that nothing but the outputs ever appears in the sandbox.
fn both(bytes: &[u8]) -> (Result<Vec<String>, Error>, Result<Vec<String>, Error>) {
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
        let result = f(&outputs).map(|_| {
            list_tar(&std::fs::read(&rootfs).unwrap())
                .into_iter()
                .map(|e| format!("{} {} {}", e.0, e.1, e.7).trim_end().to_owned())
                .collect()
        });
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

fn expect_err(result: Result<Vec<String>, Error>, want: &str) -> ImageError {
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
fn a_file_under_a_symlinked_directory_is_only_data() {
    // An extractor that follows `etc` would write outside; the writer never extracts, so this is just two entries.
    let mut t = RawTar::new();
    t.symlink("etc", "/tmp").file("etc/escaped", 0o644, b"x");
    let (stream, _) = both(&t.finish());
    assert_eq!(stream.unwrap(), vec!["etc 2 /tmp", "etc/escaped 0"]);
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
    assert!(matches!(stream, Err(Error::Image(_))), "{stream:?}");
    assert!(matches!(file, Err(Error::Image(_))), "{file:?}");
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
