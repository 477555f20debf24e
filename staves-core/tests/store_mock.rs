//! The local image store with the mock builder (no engine): an unchanged spec is a no-op, a config-only change
//! reuses the stored layer, `rebuild` forces a build, and a spec with `[[repositories]]` only reuses with `offline`.
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

#[test]
fn a_damaged_stored_layer_is_an_error_and_never_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, out) = (dir.path().join("store"), dir.path());
    let first = build(&spec(SPEC), &mock(), &store_dir, out, |r| r);
    let store = ImageStore::at(&store_dir);
    let blob = store.blob_path(&first.image.layer_digest).unwrap();
    let size = std::fs::metadata(&blob).unwrap().len() as usize;
    let mut perms = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).unwrap();
    std::fs::write(&blob, vec![0u8; size]).unwrap();
    std::fs::remove_file(out.join("image.tar")).unwrap();
    let request =
        BuildRequest::new(vec![Output::OciArchive(out.join("image.tar"))]).store(Some(store));
    let err = build_image(&spec(SPEC), &mock(), &request, &BuildOptions::default()).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(!out.join("image.tar").exists());
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
