//! The whole pipeline (spec → plan → mock build → image) without an engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use staves_core::{
    BuildError, BuildEvent, BuildOptions, BuildRequest, CancelToken, Error, ImageSpec,
    InstalledPackage, MockBuilder, MockCall, MockEntry, Output, StepKind, build_image,
};
use std::sync::{Arc, Mutex};

fn spec() -> ImageSpec {
    ImageSpec::parse(
        "name = 'staves-test/mock'\npackages = ['app-misc/hello']\ncommand = ['/usr/bin/hello']\n\
         ['app-misc/hello']\nuse = ['-nls']\n",
        None,
    )
    .unwrap()
}

fn rootfs() -> Vec<MockEntry> {
    vec![
        MockEntry::Dir {
            path: "bin".into(),
            mode: 0o755,
        },
        MockEntry::File {
            path: "bin/sh".into(),
            mode: 0o755,
            content: b"#!fake\n".to_vec(),
        },
        MockEntry::Dir {
            path: "usr".into(),
            mode: 0o755,
        },
        MockEntry::Dir {
            path: "usr/bin".into(),
            mode: 0o755,
        },
        MockEntry::File {
            path: "usr/bin/hello".into(),
            mode: 0o755,
            content: b"#!/bin/sh\necho hi\n".to_vec(),
        },
        MockEntry::Symlink {
            path: "usr/bin/hi".into(),
            target: "hello".into(),
        },
    ]
}

fn package(cpv: &str, binary: bool) -> InstalledPackage {
    InstalledPackage {
        cpv: cpv.into(),
        use_flags: vec![],
        repository: "gentoo".into(),
        binary: Some(binary),
        ..InstalledPackage::default()
    }
}

#[test]
fn mock_build_writes_an_image_and_records_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let mock = MockBuilder::from_entries(rootfs());
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let options = BuildOptions::default().with_events(Arc::new(move |e: &BuildEvent| {
        seen.lock().unwrap().push(e.clone())
    }));
    let request = BuildRequest::new(vec![Output::OciArchive(archive.clone())]).jobs(Some(2));
    let outcome = build_image(&spec(), &mock, &request, &options).unwrap();

    assert!(outcome.image.digest.starts_with("sha256:"));
    assert!(archive.exists());
    let calls = mock.calls();
    let MockCall::Build { plan } = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(plan.rootfs_atoms, ["app-misc/hello", "virtual/libc"]);
    assert_eq!(
        plan.files_by_path()["/etc/portage/package.use/staves"],
        "app-misc/hello -nls\n"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, MockCall::Step { .. }))
            .count(),
        plan.steps.len()
    );
    assert_eq!(calls.last(), Some(&MockCall::Export));
    assert_eq!(outcome.report.steps.len(), plan.steps.len());
    let events = events.lock().unwrap();
    assert!(matches!(
        events.first(),
        Some(BuildEvent::StepStarted { index: 1, .. })
    ));
    assert!(events.iter().any(|e| matches!(e, BuildEvent::Exporting)));

    // The same rootfs gives the same image.
    let again = build_image(
        &spec(),
        &MockBuilder::from_entries(rootfs()),
        &request,
        &BuildOptions::default(),
    )
    .unwrap();
    assert_eq!(again.image.digest, outcome.image.digest);
}

#[test]
fn mock_reports_binary_and_source_packages() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBuilder::from_entries(rootfs()).packages(vec![
        package("app-misc/hello-1", false),
        package("dev-libs/libfoo-1", true),
    ]);
    let request = BuildRequest::new(vec![Output::Rootfs(dir.path().join("rootfs.tar"))]);
    let outcome = build_image(&spec(), &mock, &request, &BuildOptions::default()).unwrap();
    assert_eq!(outcome.report.built_from_source, ["app-misc/hello-1"]);
    assert_eq!(outcome.report.installed_from_binary, ["dev-libs/libfoo-1"]);
}

#[test]
fn a_failed_step_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let mock = MockBuilder::from_entries(rootfs()).fail_at(StepKind::Rootfs);
    let request = BuildRequest::new(vec![Output::OciArchive(archive.clone())]);
    let err = build_image(&spec(), &mock, &request, &BuildOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::Build(BuildError::StepFailed { .. })),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 4);
    assert!(!mock.calls().contains(&MockCall::Export));
    assert!(!archive.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temporary files were left behind"
    );
}

#[test]
fn a_cancelled_build_is_interrupted() {
    let cancel = CancelToken::new();
    cancel.cancel();
    let dir = tempfile::tempdir().unwrap();
    let request = BuildRequest::new(vec![Output::Rootfs(dir.path().join("r.tar"))]);
    let options = BuildOptions::default().with_cancel(cancel);
    let err = build_image(
        &spec(),
        &MockBuilder::from_entries(rootfs()),
        &request,
        &options,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Build(BuildError::Interrupted)),
        "{err:?}"
    );
}

#[test]
fn invalid_spec_and_empty_outputs_fail_before_building() {
    let mock = MockBuilder::from_entries(rootfs());
    let err = build_image(
        &spec(),
        &mock,
        &BuildRequest::new(vec![]),
        &BuildOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no output destinations"), "{err}");
    let mut bad = spec();
    bad.packages.push("not-an-atom".into());
    let dir = tempfile::tempdir().unwrap();
    let request = BuildRequest::new(vec![Output::Rootfs(dir.path().join("r.tar"))]);
    let err = build_image(&bad, &mock, &request, &BuildOptions::default()).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(
        mock.calls().is_empty(),
        "the builder ran for an invalid spec"
    );
}

#[test]
fn the_mock_makes_no_sbom_and_an_sbom_request_fails_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let mock = MockBuilder::from_entries(rootfs());
    let outcome = build_image(
        &spec(),
        &mock,
        &BuildRequest::new(vec![Output::OciDir(layout.clone())]),
        &BuildOptions::default(),
    )
    .unwrap();
    assert!(outcome.sbom.is_none() && outcome.size.is_none() && outcome.advisories.is_empty());
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(!index.contains("artifactType"), "{index}");

    let mock = MockBuilder::from_entries(rootfs());
    let sbom = dir.path().join("sbom.json");
    let err = build_image(
        &spec(),
        &mock,
        &BuildRequest::new(vec![Output::OciDir(dir.path().join("other"))])
            .sbom(Some(sbom.clone()), staves_core::sbom::SbomFormat::SpdxJson),
        &BuildOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Sbom(staves_core::sbom::SbomError::Unavailable { .. })
        ),
        "{err}"
    );
    assert!(mock.calls().is_empty(), "the mock ran: {:?}", mock.calls());
    assert!(!sbom.exists() && !dir.path().join("other").exists());
}
