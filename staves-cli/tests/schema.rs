//! `staves schema`: the JSON Schema of `staves.toml`, checked with a JSON Schema validator from PyPI
//! (`check-jsonschema`, installed by `tests/run.sh`) against the example specs and the test corpus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema_file(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_staves"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("staves.schema.json");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// `check-jsonschema`: `STAVES_CHECK_JSONSCHEMA` (set by `tests/run.sh`, then it must work), else the venv that
/// `tests/run.sh` makes under `target/`. `None` (the test is skipped) only when neither is there.
fn check_jsonschema() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STAVES_CHECK_JSONSCHEMA") {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "STAVES_CHECK_JSONSCHEMA={} does not exist; run tests/run.sh",
            path.display()
        );
        return Some(path);
    }
    let venv = workspace().join("target/schema-venv/bin/check-jsonschema");
    if venv.exists() {
        return Some(venv);
    }
    eprintln!("skipping: check-jsonschema is not installed (tests/run.sh installs it)");
    None
}

/// Run check-jsonschema on `files`; the names of the files it rejects (schema errors or TOML parse errors).
fn rejected(tool: &Path, schema: &Path, files: &[PathBuf]) -> Vec<String> {
    let out = Command::new(tool)
        .args(["--output-format", "json", "--schemafile"])
        .arg(schema)
        .args(files)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check-jsonschema printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut names: Vec<String> = ["errors", "parse_errors"]
        .iter()
        .flat_map(|key| report[key].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let file = PathBuf::from(e["filename"].as_str().unwrap());
            file.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        out.status.success(),
        names.is_empty(),
        "exit status and report disagree: {report}"
    );
    names
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_schema_is_draft_07_json_with_package_tables_as_additional_properties() {
    let dir = tempfile::tempdir().unwrap();
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(schema_file(dir.path())).unwrap()).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["title"], "staves.toml");
    assert_eq!(
        schema["additionalProperties"]["$ref"],
        "#/definitions/PackageConfig"
    );
    for key in [
        "name",
        "version",
        "packages",
        "command",
        "annotations",
        "locale",
        "stdlib",
        "env",
        "repositories",
        "image",
        "build",
    ] {
        assert!(schema["properties"][key].is_object(), "{key}");
    }
}

#[test]
fn every_example_and_valid_test_spec_passes_check_jsonschema() {
    let Some(tool) = check_jsonschema() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let schema = schema_file(dir.path());
    let root = workspace();
    let mut valid: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path().join("staves.toml"))
        .filter(|p| p.exists())
        .collect();
    valid.extend(toml_files(&root.join("tests/data/spec")));
    valid.extend(toml_files(&root.join("tests/data/plan")));
    // The corpus cases that only warn are valid specs too.
    valid.extend(
        toml_files(&root.join("tests/data/spec/malformed"))
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("warn-")
            }),
    );
    assert!(valid.len() >= 7, "{valid:?}");
    for file in &valid {
        staves_core::ImageSpec::load(file)
            .unwrap_or_else(|e| panic!("{} is not a valid spec: {e}", file.display()));
    }
    assert_eq!(rejected(&tool, &schema, &valid), Vec::<String>::new());
}

#[test]
fn the_schema_rejects_invalid_specs_and_never_a_spec_staves_accepts() {
    let Some(tool) = check_jsonschema() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let schema = schema_file(dir.path());
    // The whole malformed corpus (but the file that is not UTF-8, which the validator cannot read at all).
    let mut files: Vec<PathBuf> = toml_files(&workspace().join("tests/data/spec/malformed"))
        .into_iter()
        .filter(|p| !p.ends_with("invalid-utf8.toml"))
        .collect();
    let typo = dir.path().join("typo-in-image.toml");
    std::fs::write(
        &typo,
        "name = 'x/y'\npackages = ['app-misc/hello']\n[image]\nusr = 'nobody'\n",
    )
    .unwrap();
    files.push(typo.clone());
    let rejected = rejected(&tool, &schema, &files);
    // Never stricter than Staves: whatever the schema rejects, loading rejects too.
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if rejected.contains(&name) {
            assert!(
                staves_core::ImageSpec::load(file).is_err(),
                "the schema rejects {name}, which Staves accepts"
            );
        }
    }
    // And it catches what a schema can: types, unknown keys, names, tags and sync types.
    for name in [
        "typo-in-image.toml",
        "image-name-missing.toml",
        "image-name-uppercase.toml",
        "version-invalid.toml",
        "repo-bad-type.toml",
        "repo-unknown-key.toml",
        "repo-uri-missing.toml",
        "type-packages-string.toml",
        "type-stdlib-string.toml",
        "type-use-string.toml",
        "type-env-number.toml",
        "unknown-image-key.toml",
        "unknown-package-key.toml",
        "build-binhost-no-scheme.toml",
        "build-binhost-dollar.toml",
        "type-build-binhost-string.toml",
        "unknown-build-key.toml",
    ] {
        assert!(
            rejected.contains(&name.to_owned()),
            "the schema accepts {name}; it rejects {rejected:?}"
        );
    }
}
