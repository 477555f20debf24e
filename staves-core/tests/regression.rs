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
