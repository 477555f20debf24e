//! Regression tests named after the bugs they pin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use staves_core::ImageSpec;

/// The original Staves treated every top-level table as a package table and crashed on `[annotations]`,
/// `[locale]`, `[env]` (and now `[image]`).
#[test]
fn annotations_locale_env_image_tables_are_not_package_tables() {
    let text = "name = 'staves/x'\npackages = ['app-shells/bash']\n\
                [annotations]\na = 'b'\n[locale]\nname = 'en_US'\n[env]\nA = 'b'\n[env.n]\nB = 'c'\n\
                [image]\nuser = 'nobody'\n['app-shells/bash']\nuse = ['-nls']\n";
    let spec = ImageSpec::parse(text, None).unwrap();
    assert_eq!(
        spec.package_configs.keys().collect::<Vec<_>>(),
        ["app-shells/bash"]
    );
    assert_eq!(spec.locale.name, "en_US");
    assert_eq!(spec.locale.charset, "UTF-8");
    assert_eq!(spec.image.user.as_deref(), Some("nobody"));
    assert!(spec.validate().is_empty());
}

/// The original parsed named envs but never checked them: a reference to a missing one is an error here.
#[test]
fn reference_to_a_missing_named_env_is_an_error() {
    let text =
        "name = 'staves/x'\npackages = ['app-shells/bash']\n['app-shells/bash']\nenv = ['nope']\n";
    let err = ImageSpec::parse(text, None).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!((d.line, d.column), (Some(4), Some(8)));
    assert!(
        d.message.contains("environment `nope` is not defined"),
        "{}",
        d.message
    );
}

/// `staves build --version 'bad tag!'` said the spec was invalid and to run `staves validate`, which then found
/// nothing (the file was fine; the override was not). The plan's refusal now lists each error with its position.
#[test]
fn a_plan_refused_for_an_invalid_spec_says_why() {
    let mut spec = ImageSpec::parse(
        "name = 'staves/x'\nversion = '1.0'\npackages = ['app-shells/bash']\n",
        Some(std::path::Path::new("staves.toml")),
    )
    .unwrap();
    spec.version = "bad tag!".to_owned();
    let err =
        staves_core::BuildPlan::new(&spec, &staves_core::PlanOptions::with_jobs(1)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("invalid staves.toml: 1 error(s)\n"),
        "{text}"
    );
    assert!(
        text.contains("staves.toml:2:11: `bad tag!` is not a valid image tag"),
        "{text}"
    );
    assert!(!text.contains("staves validate"), "{text}");
    let staves_core::PlanError::InvalidSpec { diagnostics } = err else {
        panic!("{err:?}")
    };
    assert_eq!(diagnostics.len(), 1);
}

/// `[env.'#fast']` and `[env.'fast x']` passed validation and the build succeeded, but Portage read `#` as the start of
/// a comment and the space as two names, so the package was built without the env's CFLAGS. Such names are refused
/// at their position; a plan for a spec changed through the API after parsing is refused too.
#[test]
fn named_env_names_portage_cannot_read_back_are_refused() {
    for (key, shown) in [("'#fast'", "#fast"), ("'fast x'", "fast x")] {
        let text = format!(
            "name = 'staves/x'\npackages = ['app-shells/bash']\n[env.{key}]\nCFLAGS = '-O3'\n\
             ['app-shells/bash']\nenv = [{key}]\n"
        );
        let err = ImageSpec::parse(&text, Some(std::path::Path::new("staves.toml"))).unwrap_err();
        let d = &err.diagnostics()[0];
        assert_eq!((d.line, d.column), (Some(3), Some(6)), "{}", err.render());
        assert!(
            d.message
                .starts_with(&format!("`{shown}` is not a valid environment name: ")),
            "{}",
            d.message
        );
    }
    let mut spec =
        ImageSpec::parse("name = 'staves/x'\npackages = ['app-shells/bash']\n", None).unwrap();
    spec.named_envs.insert(
        "fast x".into(),
        [("CFLAGS".to_owned(), "-O3".to_owned())].into(),
    );
    let err =
        staves_core::BuildPlan::new(&spec, &staves_core::PlanOptions::with_jobs(1)).unwrap_err();
    assert!(
        err.to_string()
            .contains("`fast x` is not a valid environment name"),
        "{err}"
    );
}

/// Values with a newline in `[image]` are refused (`user = "root\n"` would end up in the image config as is).
#[test]
fn image_values_with_newlines_are_refused() {
    for (line, key) in [
        ("user = \"root\\n\"", "image.user"),
        ("workdir = \"/data\\n\"", "image.workdir"),
        ("volumes = [\"/data\\n\"]", "image.volumes[0]"),
        ("stop_signal = \"SIGTERM\\n\"", "image.stop_signal"),
        ("env = { A = \"b\\nc\" }", "image.env.A"),
        ("exposed_ports = [\"80\\n\"]", "image.exposed_ports[0]"),
    ] {
        let text = format!("name = 'staves/x'\npackages = ['app-shells/bash']\n[image]\n{line}\n");
        let err = ImageSpec::parse(&text, None).unwrap_err();
        assert!(
            err.diagnostics().iter().any(|d| d.key == key),
            "{line}: {}",
            err.render()
        );
    }
}

/// Two outputs on one path (`docker-archive:X` and `oci-archive:X`, `--sbom X` next to an output `X`, a file and a
/// layout directory on one path) were all built, written and reported as written: the last one won (the image
/// archive became the SBOM JSON). They are now a usage error (exit code 2) before anything is built or written.
#[test]
fn two_outputs_on_one_path_are_refused_before_anything_is_built() {
    use staves_core::sbom::SbomFormat;
    use staves_core::{BuildOptions, BuildRequest, MockBuilder, MockEntry, Output, build_image};
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x");
    let spec =
        ImageSpec::parse("name = 'staves/x'\npackages = ['app-misc/hello']\n", None).unwrap();
    let mock = MockBuilder::from_entries(vec![MockEntry::File {
        path: "hello".into(),
        mode: 0o644,
        content: b"hi\n".to_vec(),
    }]);
    for (outputs, sbom) in [
        (
            vec![
                Output::DockerArchive(x.clone()),
                Output::OciArchive(x.clone()),
            ],
            None,
        ),
        (vec![Output::OciArchive(x.clone())], Some(x.clone())),
        (
            vec![Output::OciDir(x.clone()), Output::Rootfs(x.clone())],
            None,
        ),
        (
            vec![
                Output::Rootfs(x.clone()),
                Output::Rootfs(dir.path().join("y/../x")),
            ],
            None,
        ),
    ] {
        let request = BuildRequest::new(outputs.clone()).sbom(sbom, SbomFormat::SpdxJson);
        let result = build_image(&spec, &mock, &request, &BuildOptions::default());
        let err = result
            .err()
            .unwrap_or_else(|| panic!("{outputs:?} were all written"));
        assert!(err.to_string().contains("collide"), "{outputs:?}: {err}");
        assert_eq!(err.exit_code(), 2, "{err}");
    }
    assert!(mock.calls().is_empty(), "built: {:?}", mock.calls());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
