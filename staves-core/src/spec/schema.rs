//! The JSON Schema of `staves.toml`, generated from the spec types with `schemars`.
//!
//! The nested tables are the public types themselves ([`Locale`], [`Repository`], [`PackageConfig`],
//! [`ImageConfig`]). The top level is [`SpecFile`], which lays the settings out as the file does: `[env]` holds both
//! `make.conf` variables and named environments, and every other table is a package table keyed by its atom (the
//! schema's `additionalProperties`). The schema is draft-07, which editors (taplo / Even Better TOML) read.

use super::model::{BuildSettings, ImageConfig, Locale, PackageConfig, Repository};
use super::validate::SYNC_TYPES;
use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// An image name as `name` is checked: an optional `host[:port]/`, then lowercase path components separated by
/// `/` (each `[a-z0-9]` runs joined by `.`, `_`, `__` or dashes).
pub(crate) const NAME_PATTERN: &str = r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?/)?[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$";

/// An image tag, as `version` is checked.
pub(crate) const TAG_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

/// A binhost URL as `[build] binhost` items are checked ([`binhost_url_problem`](crate::spec::binhost_url_problem)): `http`, `https`
/// or `ftp` with a host, or `file`, and no whitespace, control characters, quotes, backslash, `` ` ``, `$`, `#` or
/// `;`.
pub(crate) const BINHOST_PATTERN: &str = r#"^(?:(?:https?|ftp)://[^/\s\x00-\x1f\x7f-\x9f"'\\`$#;]|file://[^\s\x00-\x1f\x7f-\x9f"'\\`$#;])[^\s\x00-\x1f\x7f-\x9f"'\\`$#;]*$"#;

/// `staves.toml`: one minimal container image built with Gentoo's Portage. Every other top-level table is a
/// package table, keyed by a package atom such as `['app-shells/bash']`.
#[derive(JsonSchema)]
#[schemars(title = "staves.toml")]
#[allow(dead_code)] // Only its schema is used.
pub(crate) struct SpecFile {
    /// Image repository name, e.g. `staves/bash`.
    #[schemars(regex(pattern = NAME_PATTERN), length(max = 255))]
    name: String,
    /// Image tag.
    #[schemars(default = "latest", regex(pattern = TAG_PATTERN), length(max = 128))]
    version: String,
    /// Package atoms to install into the image, e.g. `app-shells/bash` or `>=dev-libs/openssl-3:0`.
    #[schemars(default)]
    packages: Vec<String>,
    /// The image entrypoint, e.g. `['/bin/bash', '-c']`.
    #[schemars(default)]
    command: Vec<String>,
    /// Image labels and manifest annotations.
    #[schemars(default)]
    annotations: BTreeMap<String, String>,
    /// The glibc locale generated into the image.
    #[schemars(default)]
    locale: Locale,
    /// Copy `libstdc++.so.6` into the image.
    #[schemars(default)]
    stdlib: bool,
    /// String values are appended to `make.conf` in the order written; a table `[env.NAME]` is a named environment,
    /// written to `/etc/portage/env/NAME` and used from a package table's `env`.
    #[schemars(default)]
    env: IndexMap<String, EnvEntry>,
    /// Extra ebuild repositories.
    #[schemars(default)]
    repositories: Vec<Repository>,
    /// Runtime settings of the image, as in the OCI image config.
    #[schemars(default)]
    image: ImageConfig,
    /// How the image is built: where the build may fetch binary packages from. Never changes what the image holds.
    #[schemars(default)]
    build: BuildSettings,
    /// Per-package settings: tables keyed by package atom.
    #[schemars(flatten)]
    package_tables: IndexMap<String, PackageConfig>,
}

fn latest() -> String {
    "latest".to_owned()
}

/// One `[env]` entry.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only its schema is used.
enum EnvEntry {
    /// A `make.conf` variable, e.g. `CFLAGS = '${CFLAGS} -O2'`.
    Variable(String),
    /// A named environment `[env.NAME]`: variables for the packages whose table lists NAME in `env`.
    Named(IndexMap<String, String>),
}

/// The schema of a repository's `type`: one of the sync types Portage ships.
pub(crate) struct SyncType;

impl JsonSchema for SyncType {
    fn schema_name() -> Cow<'static, str> {
        "SyncType".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "The Portage sync type (`sync-type` in repos.conf).",
            "enum": SYNC_TYPES,
        })
    }
}

/// The JSON Schema (draft-07) of `staves.toml`, pretty-printed.
pub(crate) fn json_schema() -> String {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<SpecFile>();
    // A schema is plain JSON data: serializing it cannot fail.
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_tables_are_additional_properties_and_nested_tables_are_closed() {
        let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(schema["required"], serde_json::json!(["name"]));
        assert_eq!(
            schema["additionalProperties"]["$ref"],
            "#/definitions/PackageConfig"
        );
        let package = &schema["definitions"]["PackageConfig"];
        assert_eq!(package["additionalProperties"], false);
        let keys: Vec<&str> = package["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["env", "keywords", "license", "use"]);
        for table in ["Locale", "Repository", "ImageConfig"] {
            assert_eq!(
                schema["definitions"][table]["additionalProperties"], false,
                "{table}"
            );
        }
        assert_eq!(
            schema["definitions"]["Repository"]["properties"]["type"]["allOf"][0]["$ref"],
            "#/definitions/SyncType"
        );
        assert_eq!(
            schema["definitions"]["SyncType"]["enum"],
            serde_json::json!(SYNC_TYPES)
        );
        // TOML has no null: optional strings are plain strings.
        assert_eq!(
            schema["definitions"]["ImageConfig"]["properties"]["user"]["type"],
            "string"
        );
        assert_eq!(schema["properties"]["version"]["default"], "latest");
    }

    #[test]
    fn the_patterns_agree_with_the_rules() {
        // The schema's patterns accept what the validator accepts (spot checks both ways).
        let name = regex_lite(NAME_PATTERN);
        for ok in [
            "staves/bash",
            "a",
            "localhost:5000/x/y",
            "reg.example.com/a__b/c-d",
        ] {
            assert!(super::super::validate::is_image_name(ok), "{ok}");
            assert!(name(ok), "{ok}");
        }
        for bad in ["Staves/Bash", "a b", "/x", "x/"] {
            assert!(!super::super::validate::is_image_name(bad), "{bad}");
            assert!(!name(bad), "{bad}");
        }
        let tag = regex_lite(TAG_PATTERN);
        for ok in ["1.0", "latest", "_x", &"a".repeat(128)] {
            assert!(super::super::validate::is_tag(ok) && tag(ok), "{ok}");
        }
        for bad in [".x", "-x", "a b", &"a".repeat(129)] {
            assert!(!super::super::validate::is_tag(bad) && !tag(bad), "{bad}");
        }
    }

    #[test]
    fn the_binhost_pattern_agrees_with_the_check() {
        let pattern = regex_lite(BINHOST_PATTERN);
        for ok in [
            "http://binhost:8080",
            "https://example.com/packages/",
            "ftp://mirror/x",
            "file:///srv/binpkgs",
        ] {
            assert!(crate::spec::binhost_url_problem(ok).is_none(), "{ok}");
            assert!(pattern(ok), "{ok}");
        }
        for bad in [
            "binhost:8080",
            "ssh://host/x",
            "http://",
            "http:///x",
            "http://a b",
            "http://a/$x",
            "http://a/'x",
            "http://a/#x",
            "http://a/;x",
            "http://a/\\x",
            "http://a/\u{7}",
            "file://",
        ] {
            assert!(crate::spec::binhost_url_problem(bad).is_some(), "{bad}");
            assert!(!pattern(bad), "{bad}");
        }
    }

    /// The patterns run through Python's `re` (what check-jsonschema uses), when Python is there.
    fn regex_lite(pattern: &'static str) -> impl Fn(&str) -> bool {
        move |text: &str| {
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import re, sys; sys.exit(0 if re.search(sys.argv[1], sys.argv[2]) else 1)",
                    pattern,
                    text,
                ])
                .status()
                .expect("python3 runs");
            out.success()
        }
    }
}
