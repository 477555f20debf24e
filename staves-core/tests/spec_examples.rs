//! The shipped examples, the original Staves file, round trips and the builder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use staves_core::spec::Atom;
use staves_core::{ImageConfig, ImageSpec, Locale, PackageConfig, Repository, Severity, SpecError};
use std::path::{Path, PathBuf};

/// Parse `text` whatever the rules say: a spec that breaks them comes back from the error.
fn parse_structure(text: &str) -> Result<ImageSpec, SpecError> {
    match ImageSpec::parse(text, None) {
        Err(SpecError::Invalid {
            spec: Some(spec), ..
        }) => Ok(*spec),
        other => other,
    }
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
        .join("staves.toml")
}

#[test]
fn bash_example_is_the_seed_image() {
    let spec = ImageSpec::load(example("bash")).unwrap();
    assert!(spec.validate().is_empty(), "{:#?}", spec.validate());
    assert_eq!(spec.name, "staves/bash");
    assert_eq!(spec.version, "latest");
    assert_eq!(spec.packages, ["app-shells/bash"]);
    assert_eq!(spec.command, ["/bin/bash", "-c"]);
    assert_eq!(spec.package_configs["app-shells/bash"].use_flags, ["-nls"]);
    assert_eq!(spec.locale, Locale::default());
    assert!(!spec.stdlib);
}

#[test]
fn full_example_uses_every_key_without_diagnostics() {
    let spec = ImageSpec::load(example("full")).unwrap();
    assert!(spec.validate().is_empty(), "{:#?}", spec.validate());
    assert_eq!(spec.version, "1.0");
    assert_eq!(
        spec.locale,
        Locale {
            name: "en_US".into(),
            charset: "UTF-8".into()
        }
    );
    assert!(spec.stdlib);
    assert_eq!(spec.annotations.len(), 2);
    assert_eq!(spec.env["MAKEOPTS"], "-j2");
    assert_eq!(spec.named_envs["nocache"]["FEATURES"], "-buildpkg");
    assert_eq!(spec.repositories[0].sync_type, "git");
    let lib = &spec.package_configs["=dev-utils/mylibrary-9999"];
    assert_eq!(lib.env, ["nocache"]);
    assert_eq!(lib.keywords, ["**"]);
    assert_eq!(spec.package_configs["dev-lang/python"].license, ["PSF-2"]);
    let img = &spec.image;
    assert_eq!(img.cmd, ["echo hello"]);
    assert_eq!(img.user.as_deref(), Some("1000:1000"));
    assert_eq!(img.workdir.as_deref(), Some("/data"));
    assert_eq!(img.exposed_ports, ["8080/tcp"]);
    assert_eq!(img.volumes, ["/data"]);
    assert_eq!(img.stop_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(img.env["LANG"], "en_US.UTF-8");
    // Every top-level key of the design notes appears in the file.
    let text = std::fs::read_to_string(example("full")).unwrap();
    for key in [
        "name",
        "version",
        "packages",
        "command",
        "locale",
        "stdlib",
        "[annotations]",
        "[env]",
        "[env.",
        "[[repositories]]",
        "[image]",
        "use",
        "keywords",
        "license",
        "env = [",
    ] {
        assert!(text.contains(key), "{key}");
    }
}

/// A file written for the original Staves (its README examples in one spec).
const ORIGINAL: &str = include_str!("../../tests/data/spec/original.toml");

#[test]
fn original_staves_file_means_the_same() {
    let spec = ImageSpec::parse(ORIGINAL, None).unwrap();
    let expected = ImageSpec::builder("staves/bash")
        .package("app-shells/bash")
        .command(["/bin/bash", "-c"])
        .annotation("org.opencontainers.image.title", "bash")
        .env("CFLAGS", "${CFLAGS} -O3")
        .named_env("nocache", "FEATURES", "-buildpkg")
        .package_config(
            "app-shells/bash",
            PackageConfig {
                use_flags: vec!["-nls".into()],
                ..Default::default()
            },
        )
        .package_config(
            "=dev-utils/mylibrary-9999",
            PackageConfig {
                env: vec!["nocache".into()],
                keywords: vec!["**".into()],
                ..Default::default()
            },
        )
        .repository(Repository {
            name: "my-repo".into(),
            sync_type: "git".into(),
            uri: "ssh://git@example.com/my-overlay.git".into(),
        })
        .build();
    assert_eq!(spec, expected);
    // [annotations], [env] are not package tables.
    assert_eq!(spec.package_configs.len(), 2);
    // Only the warning about the table for a package not in `packages`, kept from loading.
    assert_eq!(spec.warnings(), spec.validate());
    let diags = spec.validate();
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(diags[0].severity, Severity::Warning);
    assert_eq!((diags[0].line, diags[0].column), (Some(12), Some(2)));
    assert_eq!(diags[0].key, "'=dev-utils/mylibrary-9999'");
}

#[test]
fn written_toml_round_trips_and_keeps_the_original_style() {
    for text in [
        ORIGINAL.to_owned(),
        std::fs::read_to_string(example("full")).unwrap(),
    ] {
        let spec = ImageSpec::parse(&text, None).unwrap();
        let written = spec.to_toml_string();
        let again = ImageSpec::parse(&written, None).unwrap();
        assert_eq!(spec, again, "{written}");
        assert_eq!(written, again.to_toml_string(), "writing is stable");
    }
    let written = ImageSpec::parse(ORIGINAL, None).unwrap().to_toml_string();
    insta::assert_snapshot!(written);
}

#[test]
fn programmatic_specs_get_key_paths_but_no_positions() {
    let spec = ImageSpec::builder("Bad Name")
        .package("bash")
        .package_config(
            "app-shells/bash",
            PackageConfig {
                env: vec!["missing".into()],
                ..Default::default()
            },
        )
        .build();
    let diags = spec.validate();
    let keys: Vec<&str> = diags.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "name",
            "packages[0]",
            "'app-shells/bash'",
            "'app-shells/bash'.env[0]"
        ]
    );
    assert!(
        diags
            .iter()
            .all(|d| d.line.is_none() && d.column.is_none() && d.path.is_none())
    );
    assert!(matches!(
        ImageSpec::parse(&spec.to_toml_string(), None),
        Err(SpecError::Invalid { .. })
    ));
}

#[test]
fn parse_reports_every_error_and_keeps_the_spec_and_the_text() {
    let text = "name = 'X'\npackages = ['bash', '@world']\n";
    let err = ImageSpec::parse(text, Some(Path::new("x/staves.toml"))).unwrap_err();
    let lines: Vec<_> = err
        .diagnostics()
        .iter()
        .map(|d| (d.line, d.column))
        .collect();
    assert_eq!(
        lines,
        [(Some(1), Some(8)), (Some(2), Some(13)), (Some(2), Some(21))]
    );
    assert_eq!(err.path(), Some(Path::new("x/staves.toml")));
    // The spec as parsed comes with the error, for tools that inspect it anyway.
    assert_eq!(err.spec().unwrap().packages, ["bash", "@world"]);
    // The error renders its diagnostics against its own copy of the text.
    let rendered = err.render();
    assert!(rendered.contains(" --> x/staves.toml:2:21\n"), "{rendered}");
    assert!(
        rendered.contains("2 | packages = ['bash', '@world']\n"),
        "{rendered}"
    );
    assert!(rendered.ends_with("3 errors, 0 warnings\n"), "{rendered}");
    let core: staves_core::Error = err.into();
    assert_eq!(core.exit_code(), 1);
}

#[test]
fn a_spec_renders_its_own_warnings() {
    let text = "name = 'x/y'\npackages = ['a/b', 'a/b']\n";
    let spec = ImageSpec::parse(text, Some(Path::new("s.toml"))).unwrap();
    assert_eq!(spec.warnings().len(), 1);
    let rendered = spec.render_diagnostics(spec.warnings());
    assert!(rendered.contains(" --> s.toml:2:20\n"), "{rendered}");
    assert!(
        rendered.contains("2 | packages = ['a/b', 'a/b']"),
        "{rendered}"
    );
    // A spec built in code has no text: the location alone.
    let built = ImageSpec::builder("x/y")
        .package("a/b")
        .package("a/b")
        .build();
    let rendered = built.render_diagnostics(&built.validate());
    assert!(rendered.contains("at `packages[1]`"), "{rendered}");
    assert!(built.warnings().is_empty());
}

#[test]
fn diagnostics_serialize_to_json_with_the_documented_fields() {
    let err =
        ImageSpec::parse("name = 'x'\npackages = ['a']\n", Some(Path::new("s.toml"))).unwrap_err();
    let json = serde_json::to_value(err.diagnostics()).unwrap();
    insta::assert_json_snapshot!(json);
}

#[test]
fn atom_cp_matches_package_tables() {
    let a = Atom::parse("=dev-utils/mylibrary-9999").unwrap();
    assert_eq!(a.cp(), "dev-utils/mylibrary");
    assert_eq!(a.version(), Some("9999"));
}

// Round trip on generated valid specs.
fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}"
}
fn text() -> impl Strategy<Value = String> {
    // Arbitrary printable text, including quotes and non-ASCII, to exercise quoting.
    "[ -~éß\u{1F600}]{0,12}"
}
fn atom() -> impl Strategy<Value = String> {
    (ident(), ident(), prop::option::of(0u32..100)).prop_map(|(c, p, v)| match v {
        Some(v) => format!(">=c{c}/p{p}-{v}"),
        None => format!("c{c}/p{p}"),
    })
}

prop_compose! {
    fn arb_spec()(
        name in ident(),
        version in "[a-z0-9]{1,5}",
        packages in prop::collection::vec(atom(), 0..5),
        command in prop::collection::vec(text(), 0..3),
        annotations in prop::collection::btree_map(text(), text(), 0..3),
        stdlib in any::<bool>(),
        env in prop::collection::vec((ident(), text()), 0..3),
        named in prop::collection::vec((ident(), ident(), text()), 0..3),
        repos in prop::collection::vec((ident(), text()), 0..2),
        tables in prop::collection::vec((atom(), prop::collection::vec(ident(), 0..3)), 0..3),
        cmd in prop::collection::vec(text(), 0..2),
        user in prop::option::of(ident()),
        image_env in prop::collection::vec((ident(), text()), 0..2),
    ) -> ImageSpec {
        let mut b = ImageSpec::builder(name).version(version).packages(packages).command(command).stdlib(stdlib);
        for (k, v) in annotations { b = b.annotation(k, v); }
        for (k, v) in env { b = b.env(format!("E{k}"), v); }
        for (n, k, v) in named { b = b.named_env(format!("n{n}"), k, v); }
        for (n, uri) in repos {
            b = b.repository(Repository { name: n, sync_type: "git".into(), uri });
        }
        for (a, flags) in tables {
            b = b.package_config(a, PackageConfig { use_flags: flags.clone(), license: flags, ..Default::default() });
        }
        b = b.image(ImageConfig {
            cmd,
            user,
            env: image_env.into_iter().collect(),
            ..Default::default()
        });
        b.build()
    }
}

proptest! {
    #[test]
    fn to_toml_string_round_trips(spec in arb_spec()) {
        let written = spec.to_toml_string();
        let parsed = parse_structure(&written);
        prop_assert!(parsed.is_ok(), "{written}\n{parsed:?}");
        prop_assert_eq!(parsed.unwrap(), spec);
    }
}
