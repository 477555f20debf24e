//! Regression tests of pushes to registries that misbehave, each against the tiny server of
//! `stalling_registry.rs` on 127.0.0.1, with timeouts of a second or so through [`RegistryOptions`]:
//!
//! - a registry that accepts the connection and then stalls, or stalls a blob `PUT`, hung the push forever (the
//!   clients had only a connect timeout);
//! - a cancel (the build's first SIGINT/SIGTERM) did not stop a stalled push, so the build never ended;
//! - an error answer's body was read whole: a 2 GiB body on a 500 reached 4.2 GB RSS.
//!
//! No assertion is on timing: a stalled connection is released after a guard of minutes, so without the fixes each
//! test fails on what it gets back (or on memory), not by hanging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../staves-cli/tests/support/stalling_registry.rs"]
mod stalling_registry;

use stalling_registry::{Mode, StallingRegistry};
use staves_core::{
    BuildError, BuildOptions, BuildRequest, CancelToken, Error, ImageSpec, ImageWriter,
    MockBuilder, MockEntry, Output, RegistryError, RegistryOptions, build_image,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

fn spec() -> ImageSpec {
    ImageSpec::parse(
        "name = 'staves-test/stall'\nversion = '1'\npackages = ['app-misc/hello']\n",
        None,
    )
    .unwrap()
}

/// Bytes no compressor shrinks (xorshift), so the layer is about as large.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A rootfs directory under `dir` with a small program and `big` bytes of noise.
fn rootfs(dir: &Path, big: usize) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/app"), "only bytes to push\n").unwrap();
    if big > 0 {
        let mut file = std::fs::File::create(root.join("bin/noise")).unwrap();
        file.write_all(&noise(big)).unwrap();
    }
    root
}

/// A one-second idle timeout; the total deadline long enough never to be what ends a test.
fn options(idle: u64) -> RegistryOptions {
    RegistryOptions::default()
        .idle_timeout(Duration::from_secs(idle))
        .timeout(Duration::from_secs(600))
}

fn destination(registry: &StallingRegistry) -> Output {
    Output::from_str(&format!("docker://{}/team/app:1", registry.address())).unwrap()
}

/// What the image writer left in `dir` besides `keep`: its temporary `.staves-*` files must be gone.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !keep.contains(&name.as_str()))
        .collect()
}

/// Peak resident memory of this process, in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_registry_that_accepts_the_connection_and_stalls_fails_the_push_instead_of_hanging() {
    let registry = StallingRegistry::start(Mode::StallEverything);
    let work = tempfile::tempdir().unwrap();
    let root = rootfs(work.path(), 0);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("image.tar");
    let err = ImageWriter::new(&spec())
        .registry(options(1))
        .write_dir(
            &root,
            &[Output::OciArchive(archive.clone()), destination(&registry)],
        )
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, Error::Registry(RegistryError::TimedOut { .. })),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "the registry {} stalled while connecting",
            registry.address()
        )),
        "{message}"
    );
    assert!(
        message.contains("no byte arrived or left for 1 s"),
        "{message}"
    );
    assert!(message.contains("--registry-idle-timeout"), "{message}");
    // A failed push commits nothing and leaves no temporary file.
    assert_eq!(leftovers(out.path(), &[]), Vec::<String>::new());
}

#[test]
fn a_registry_that_stalls_a_blob_put_fails_the_push_instead_of_hanging() {
    // The config blob goes through; the 16 MiB layer's PUT is no longer read, more than the socket buffers hold.
    let registry = StallingRegistry::start(Mode::StallBlobPut(1 << 20));
    let work = tempfile::tempdir().unwrap();
    let root = rootfs(work.path(), 16 << 20);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("image.tar");
    let err = ImageWriter::new(&spec())
        .registry(options(1))
        .write_dir(
            &root,
            &[Output::OciArchive(archive.clone()), destination(&registry)],
        )
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, Error::Registry(RegistryError::TimedOut { .. })),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "the registry {} stalled while uploading blob sha256:",
            registry.address()
        )),
        "{message}"
    );
    assert!(
        message.contains("no byte arrived or left for 1 s"),
        "{message}"
    );
    assert!(registry.wait_for("stalled PUT").contains("/v2/upload/"));
    assert_eq!(leftovers(out.path(), &[]), Vec::<String>::new());
}

#[test]
fn a_huge_error_body_is_read_only_up_to_a_cap() {
    const BODY: u64 = 512 << 20;
    let registry = StallingRegistry::start(Mode::HugeErrorBody(BODY));
    let work = tempfile::tempdir().unwrap();
    let root = rootfs(work.path(), 0);
    let out = tempfile::tempdir().unwrap();
    let before = peak_rss();
    let err = ImageWriter::new(&spec())
        .registry(options(30))
        .write_dir(
            &root,
            &[
                Output::OciDir(out.path().join("layout")),
                destination(&registry),
            ],
        )
        .unwrap_err();
    let grown = peak_rss().saturating_sub(before);
    let message = err.to_string();
    assert!(
        matches!(
            err,
            Error::Registry(RegistryError::Http { status: 500, .. })
        ),
        "{message}"
    );
    assert!(
        message.contains("longer than 64 KiB; only its start was read"),
        "{message}"
    );
    assert!(message.len() < 2048, "{} bytes: {message}", message.len());
    // The server could not send it all: the client hung up after the cap.
    let sent = registry.wait_for("error body");
    assert!(!sent.contains(&format!("wrote {BODY} of")), "{sent}");
    // Reading the body whole took twice its size; a cap keeps the peak far below even once its size.
    assert!(
        grown < BODY / 4,
        "the peak RSS grew by {grown} bytes for a {BODY}-byte error body"
    );
    assert_eq!(leftovers(out.path(), &[]), Vec::<String>::new());
}

/// `staves build` on SIGTERM during a stalled push: the first signal cancels the build, and the push must stop
/// with it, writing nothing and leaving no temporary file. The timeouts are long: only the cancel can end it.
#[test]
fn a_cancel_stops_a_stalled_push_of_a_build() {
    let registry = StallingRegistry::start(Mode::StallBlobPut(0));
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("image.tar");
    let mock = MockBuilder::from_entries(vec![MockEntry::File {
        path: "app".into(),
        mode: 0o755,
        content: b"only bytes to push\n".to_vec(),
    }]);
    let request = BuildRequest::new(vec![
        Output::OciArchive(archive.clone()),
        destination(&registry),
    ])
    .jobs(Some(1))
    .registry(options(600));
    let cancel = CancelToken::new();
    let options = BuildOptions::default().with_cancel(cancel.clone());
    let result = std::thread::scope(|scope| {
        let build = scope.spawn(|| build_image(&spec(), &mock, &request, &options));
        registry.wait_for("stalled PUT");
        cancel.cancel();
        build.join().unwrap()
    });
    match result {
        Err(Error::Build(BuildError::Interrupted)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(leftovers(out.path(), &[]), Vec::<String>::new());
}
