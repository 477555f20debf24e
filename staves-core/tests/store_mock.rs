//! The local image store with the mock builder (no engine): an unchanged spec is a no-op, a config-only change
//! reuses the stored layer, `rebuild` forces a build, a spec with `[[repositories]]` only reuses with `offline`, and
//! a damaged store is said, rebuilt and repaired, never served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use staves_core::store::{ImageStore, KeyContext};
use staves_core::{
    BuildEvent, BuildOptions, BuildOutcome, BuildRequest, Compression, ImageSpec, InstalledPackage,
    MockBuilder, MockCall, MockEntry, Output, build_image,
};
use std::path::Path;

const SPEC: &str =
    "name = 'staves-test/store'\npackages = ['app-misc/hello']\ncommand = ['/usr/bin/hello']\n";

fn spec(text: &str) -> ImageSpec {
    ImageSpec::parse(text, None).unwrap()
}

fn mock() -> MockBuilder {
    MockBuilder::from_entries(vec![
        MockEntry::Dir {
            path: "usr".into(),
            mode: 0o755,
        },
        MockEntry::File {
            path: "usr/hello".into(),
            mode: 0o755,
            content: b"#!/bin/sh\necho hi\n".to_vec(),
        },
    ])
    .packages(vec![InstalledPackage {
        cpv: "app-misc/hello-1".into(),
        use_flags: vec![],
        repository: "gentoo".into(),
        binary: Some(false),
        ..InstalledPackage::default()
    }])
    .with_key_context(KeyContext::new(
        "sha256:builder",
        "sha256:portage",
        "C.UTF-8",
    ))
}

/// Build `spec` into an OCI archive and a rootfs tar in `out`, with the store at `store`.
fn build(
    spec: &ImageSpec,
    builder: &MockBuilder,
    store: &Path,
    out: &Path,
    adjust: impl FnOnce(BuildRequest) -> BuildRequest,
) -> BuildOutcome {
    let request = adjust(
        BuildRequest::new(vec![
            Output::OciArchive(out.join("image.tar")),
            Output::Rootfs(out.join("rootfs.tar")),
        ])
        .store(Some(ImageStore::at(store))),
    );
    build_image(spec, builder, &request, &BuildOptions::default()).unwrap()
}

fn ran(builder: &MockBuilder) -> bool {
    builder
        .calls()
        .iter()
        .any(|c| matches!(c, MockCall::Build { .. }))
}

#[test]
fn an_unchanged_spec_is_served_from_the_store_without_a_build() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("store"), dir.path());
    let first_builder = mock();
    let first = build(&spec(SPEC), &first_builder, &store, out, |r| r);
    assert!(ran(&first_builder) && first.reused.is_none());
    let first_rootfs = std::fs::read(out.join("rootfs.tar")).unwrap();

    // The same spec, written differently: no build, the same image, every output written again.
    std::fs::remove_file(out.join("rootfs.tar")).unwrap();
    let reformatted = "# the same spec\ncommand = [\"/usr/bin/hello\"]\npackages = [\"app-misc/hello\"]\n\
                       name = \"staves-test/store\"\n";
    let second_builder = mock();
    let second = build(&spec(reformatted), &second_builder, &store, out, |r| r);
    assert!(!ran(&second_builder), "{:?}", second_builder.calls());
    let reused = second.reused.as_ref().unwrap();
    assert_eq!(Some(&reused.key), first.build_key.as_ref());
    assert_eq!(second.image.digest, first.image.digest);
    assert_eq!(std::fs::read(out.join("rootfs.tar")).unwrap(), first_rootfs);
    // The report says what is in the image and claims no build.
    assert_eq!(second.report.packages, first.report.packages);
    assert!(second.report.steps.is_empty() && second.report.built_from_source.is_empty());

    // --rebuild builds anyway.
    let forced = mock();
    let again = build(&spec(SPEC), &forced, &store, out, |r| r.rebuild(true));
    assert!(ran(&forced) && again.reused.is_none());
    assert_eq!(again.image.digest, first.image.digest);
}

#[test]
fn a_config_only_change_reuses_the_stored_layer_with_a_new_config() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("store"), dir.path());
    let first = build(&spec(SPEC), &mock(), &store, out, |r| r);
    let changed = format!(
        "{SPEC}version = '2'\n[annotations]\n'org.opencontainers.image.title' = 'x'\n[image]\nuser = '1000'\n"
    );
    let builder = mock();
    let second = build(&spec(&changed), &builder, &store, out, |r| r);
    assert!(!ran(&builder));
    assert!(second.reused.is_some());
    assert_ne!(second.image.digest, first.image.digest);
    assert_ne!(second.image.config_digest, first.image.config_digest);
    assert_eq!(second.image.layer_digest, first.image.layer_digest);
    assert_eq!(second.image.diff_id, first.image.diff_id);

    // Another compression: no build either; the stored tar is compressed again (same diff_id) and kept.
    let builder = mock();
    let zstd = build(&spec(SPEC), &builder, &store, out, |r| {
        r.compression(Compression::Zstd)
    });
    assert!(!ran(&builder));
    assert_eq!(zstd.image.diff_id, first.image.diff_id);
    assert_ne!(zstd.image.layer_digest, first.image.layer_digest);
    let stored = ImageStore::at(&store).list().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].layers.len(), 2, "{stored:?}");

    // A change to the rootfs inputs builds.
    let builder = mock();
    let other = build(
        &spec(&format!("{SPEC}['app-misc/hello']\nuse = ['-nls']\n")),
        &builder,
        &store,
        out,
        |r| r,
    );
    assert!(ran(&builder) && other.reused.is_none());
    assert_ne!(other.build_key, first.build_key);
}

#[test]
fn a_spec_with_repositories_always_builds_unless_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("store"), dir.path());
    let text = format!(
        "{SPEC}[[repositories]]\nname = 'extra'\ntype = 'git'\nuri = 'https://example.com/extra.git'\n"
    );
    build(&spec(&text), &mock(), &store, out, |r| r);
    // The remote may have changed: the repository is synced and the image built again.
    let builder = mock();
    let second = build(&spec(&text), &builder, &store, out, |r| r);
    assert!(ran(&builder) && second.reused.is_none());
    // With offline the repositories are taken as unchanged.
    let builder = mock();
    let offline = build(&spec(&text), &builder, &store, out, |r| r.offline(true));
    assert!(!ran(&builder) && offline.reused.is_some());
    assert_eq!(offline.image.digest, second.image.digest);
}

#[test]
fn without_a_store_or_a_key_context_every_build_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let no_context = || {
        MockBuilder::from_entries(vec![MockEntry::Dir {
            path: "usr".into(),
            mode: 0o755,
        }])
    };
    for _ in 0..2 {
        let builder = no_context();
        let outcome = build(&spec(SPEC), &builder, &dir.path().join("store"), out, |r| r);
        assert!(ran(&builder) && outcome.build_key.is_none());
    }
    for _ in 0..2 {
        let builder = mock();
        let request = BuildRequest::new(vec![Output::Rootfs(out.join("r.tar"))]);
        let outcome =
            build_image(&spec(SPEC), &builder, &request, &BuildOptions::default()).unwrap();
        assert!(ran(&builder) && outcome.reused.is_none());
    }
}

/// Make the stored blob of `digest` writable and give it `content`, as damage would.
fn damage(store: &ImageStore, digest: &str, content: &[u8]) {
    let blob = store.blob_path(digest).unwrap();
    let mut perms = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).unwrap();
    std::fs::write(&blob, content).unwrap();
}

/// A valid gzip of the tar in the gzip blob `blob` with `from` replaced by `to` (of the same length), exactly as
/// long as `blob` (padded with a header comment): what a tampered store would hold.
fn tampered_gzip(blob: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(blob)
        .read_to_end(&mut tar)
        .unwrap();
    let at = tar
        .windows(from.len())
        .position(|w| w == from)
        .expect("the text to change is in the layer");
    tar[at..at + from.len()].copy_from_slice(to);
    let gzip = |comment: Option<usize>| {
        let mut builder = flate2::GzBuilder::new().mtime(0);
        if let Some(len) = comment {
            builder = builder.comment(vec![b'x'; len]);
        }
        let mut encoder = builder.write(Vec::new(), flate2::Compression::best());
        encoder.write_all(&tar).unwrap();
        encoder.finish().unwrap()
    };
    let bare = gzip(None);
    // A comment of n bytes adds n + 1 (its terminating NUL).
    let padding = blob.len().checked_sub(bare.len() + 1).expect("room to pad");
    let same_size = gzip(Some(padding));
    assert_eq!(same_size.len(), blob.len());
    same_size
}

/// Issue row 3: a stored layer changed into another valid gzip of the same size was refused with gzip (the build
/// failed) but decompressed, recompressed and served with zstd, and the record gained the tampered zstd layer.
/// Now neither compression serves it: the build runs, says so, and stores good blobs that the next build serves.
#[test]
fn a_tampered_stored_layer_is_rebuilt_and_never_served_with_either_compression() {
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, out) = (dir.path().join("store"), dir.path());
    let store = ImageStore::at(&store_dir);
    let first_builder = mock();
    let first = build(&spec(SPEC), &first_builder, &store_dir, out, |r| r);
    assert!(ran(&first_builder));
    let good_rootfs = std::fs::read(out.join("rootfs.tar")).unwrap();
    let blob = std::fs::read(store.blob_path(&first.image.layer_digest).unwrap()).unwrap();
    let tampered = tampered_gzip(&blob, b"echo hi", b"echo HA");

    for compression in [Compression::Gzip, Compression::Zstd] {
        damage(&store, &first.image.layer_digest, &tampered);
        let (events, options) = recording();
        let builder = mock();
        let request = BuildRequest::new(vec![
            Output::OciArchive(out.join("image.tar")),
            Output::Rootfs(out.join("rootfs.tar")),
        ])
        .store(Some(store.clone()))
        .compression(compression);
        let outcome = build_image(&spec(SPEC), &builder, &request, &options).unwrap();
        assert!(
            ran(&builder),
            "{compression}: the tampered layer was served"
        );
        assert!(outcome.reused.is_none(), "{compression}");
        assert_eq!(
            std::fs::read(out.join("rootfs.tar")).unwrap(),
            good_rootfs,
            "{compression}"
        );
        let said = warnings(&events);
        assert_eq!(said.len(), 1, "{compression}: {said:?}");
        assert!(
            said[0].contains("the stored image for this spec was damaged")
                && said[0].contains(&format!(
                    "blob {} failed verification",
                    first.image.layer_digest
                ))
                && said[0].contains("rebuilt"),
            "{}",
            said[0]
        );
        assert_eq!(outcome.store_warnings, said, "{compression}");

        // The store was repaired: the next build is a no-op, verified, and says nothing.
        let (events, options) = recording();
        let builder = mock();
        let again = build_image(&spec(SPEC), &builder, &request, &options).unwrap();
        assert!(!ran(&builder) && again.reused.is_some(), "{compression}");
        assert_eq!(again.image.digest, outcome.image.digest);
        assert_eq!(warnings(&events), Vec::<String>::new());
        assert!(again.store_warnings.is_empty());
    }
}

/// Issue row 8: a truncated blob was never repaired (`put_blob` kept the existing file), so every later build of
/// the spec rebuilt without a word. Now the first build says why it rebuilds and repairs the blob; the next is a
/// no-op.
#[test]
fn a_truncated_stored_blob_is_said_rebuilt_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, out) = (dir.path().join("store"), dir.path());
    let store = ImageStore::at(&store_dir);
    let first = build(&spec(SPEC), &mock(), &store_dir, out, |r| r);
    let blob = store.blob_path(&first.image.layer_digest).unwrap();
    let good = std::fs::read(&blob).unwrap();
    damage(&store, &first.image.layer_digest, &good[..good.len() / 2]);

    let request =
        BuildRequest::new(vec![Output::Rootfs(out.join("rootfs.tar"))]).store(Some(store.clone()));
    let (events, options) = recording();
    let builder = mock();
    let rebuilt = build_image(&spec(SPEC), &builder, &request, &options).unwrap();
    assert!(ran(&builder) && rebuilt.reused.is_none());
    let said = warnings(&events);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("the stored image for this spec was damaged")
            && said[0].contains(&format!(
                "blob {} is {} bytes, its record says {}",
                first.image.layer_digest,
                good.len() / 2,
                good.len()
            ))
            && said[0].contains("rebuilt"),
        "{}",
        said[0]
    );
    assert_eq!(rebuilt.store_warnings, said);
    assert_eq!(std::fs::read(&blob).unwrap(), good, "the blob was repaired");

    let (events, options) = recording();
    let builder = mock();
    let again = build_image(&spec(SPEC), &builder, &request, &options).unwrap();
    assert!(!ran(&builder) && again.reused.is_some());
    assert_eq!(warnings(&events), Vec::<String>::new());
}

/// A stored layer that is not even a gzip any more (zeros): rebuilt, never an image.
#[test]
fn a_damaged_stored_layer_is_rebuilt_and_never_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, out) = (dir.path().join("store"), dir.path());
    let first = build(&spec(SPEC), &mock(), &store_dir, out, |r| r);
    let store = ImageStore::at(&store_dir);
    let size = std::fs::metadata(store.blob_path(&first.image.layer_digest).unwrap())
        .unwrap()
        .len() as usize;
    damage(&store, &first.image.layer_digest, &vec![0u8; size]);
    std::fs::remove_file(out.join("image.tar")).unwrap();
    let request =
        BuildRequest::new(vec![Output::OciArchive(out.join("image.tar"))]).store(Some(store));
    let builder = mock();
    let outcome = build_image(&spec(SPEC), &builder, &request, &BuildOptions::default()).unwrap();
    assert!(ran(&builder) && outcome.reused.is_none());
    assert_eq!(outcome.image.digest, first.image.digest);
    assert_eq!(
        outcome.store_warnings.len(),
        1,
        "{:?}",
        outcome.store_warnings
    );
}

/// Build options that record every event, and the record.
fn recording() -> (
    std::sync::Arc<std::sync::Mutex<Vec<BuildEvent>>>,
    BuildOptions,
) {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let options =
        BuildOptions::default().with_events(std::sync::Arc::new(move |e: &BuildEvent| {
            sink.lock().unwrap().push(e.clone());
        }));
    (events, options)
}

/// The warnings a build emitted.
fn warnings(events: &std::sync::Mutex<Vec<BuildEvent>>) -> Vec<String> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Warning { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_store_that_cannot_be_written_is_a_warning_and_the_build_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("store"), dir.path());
    std::fs::create_dir(&store).unwrap();
    // A file where the store stages its writes: nothing can be kept there (even as root, unlike a mode 0555).
    std::fs::write(store.join("tmp"), b"").unwrap();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let options =
        BuildOptions::default().with_events(std::sync::Arc::new(move |e: &BuildEvent| {
            sink.lock().unwrap().push(e.clone());
        }));
    let request = BuildRequest::new(vec![Output::Rootfs(out.join("rootfs.tar"))])
        .store(Some(ImageStore::open(Some(&store)).unwrap()));
    let builder = mock();
    let outcome = build_image(&spec(SPEC), &builder, &request, &options).unwrap();
    assert!(ran(&builder) && out.join("rootfs.tar").is_file());
    let said = warnings(&events);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains(&store.join("tmp").display().to_string())
            && said[0].contains("will not be kept in the local image store"),
        "{}",
        said[0]
    );
    assert!(ImageStore::at(&store).list().unwrap().is_empty());
    assert!(outcome.reused.is_none());

    // A writable store: no warning.
    std::fs::remove_file(store.join("tmp")).unwrap();
    events.lock().unwrap().clear();
    build_image(&spec(SPEC), &mock(), &request, &options).unwrap();
    assert_eq!(warnings(&events), Vec::<String>::new());
    assert_eq!(ImageStore::at(&store).list().unwrap().len(), 1);
}
