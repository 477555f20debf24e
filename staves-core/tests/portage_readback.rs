//! Real Portage reads back exactly the values the spec holds.
//!
//! Runs Portage's own `getconfig` (make.conf, env files) and its `ConfigParser` (repos.conf) from the pip-installed
//! `portage==3.0.83` that `tests/run.sh` puts in a virtualenv and names in `STAVES_PORTAGE_PYTHON`. Without it the
//! test is skipped, unless `STAVES_REQUIRE_PORTAGE=1`, in which case it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use staves_core::{BuildEnv, ImageSpec, PlanOptions, Repository};
use std::process::Command;

const READER: &str = r#"
import json, os, sys
os.environ.setdefault("PORTAGE_OVERRIDE_EPREFIX", "/")
from portage.util import getconfig
from portage.util.configparser import SafeConfigParser, read_configs
root = sys.argv[1]
out = {}
out["make.conf"] = getconfig(os.path.join(root, "etc/portage/make.conf"), expand=False)
out["make.conf.expanded"] = getconfig(os.path.join(root, "etc/portage/make.conf"), expand={"CFLAGS": "-O2"})
out["env"] = getconfig(os.path.join(root, "etc/portage/env/tricky"), expand=False)
p = SafeConfigParser()
read_configs(p, [os.path.join(root, "etc/portage/repos.conf/my-repo.conf")])
out["repo"] = dict(p.items("my-repo"))
print(json.dumps(out))
"#;

fn portage_python() -> Option<String> {
    match std::env::var("STAVES_PORTAGE_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            assert!(
                std::env::var("STAVES_REQUIRE_PORTAGE").as_deref() != Ok("1"),
                "STAVES_REQUIRE_PORTAGE=1 but STAVES_PORTAGE_PYTHON is not set; run tests/run.sh"
            );
            eprintln!("skipping: STAVES_PORTAGE_PYTHON is not set (tests/run.sh sets it)");
            None
        }
    }
}

#[test]
fn portage_reads_back_every_value() {
    let Some(python) = portage_python() else {
        return;
    };
    let tricky = [
        ("PLAIN", "-march=native -O2 -pipe"),
        ("SINGLE", "it's 'quoted'"),
        ("BACKSLASH", r"C:\path\to \n thing"),
        ("DOUBLE_BACKSLASH", r"a\\b \\\ c"),
        ("HASH", "a # not a comment"),
        ("SEMI", "a; b && c | d > e"),
        ("UNICODE", "caf\u{e9} \u{4e2d}"),
        ("EMPTY", ""),
        ("SPACES", "  leading and trailing  "),
        ("EQUALS", "A=B C=D"),
    ];
    let mut spec = ImageSpec::new("x");
    spec.packages = vec!["app-misc/hello".into()];
    for (k, v) in tricky {
        spec.env.insert(k.into(), v.into());
    }
    spec.env.insert("CFLAGS".into(), "${CFLAGS} -O3".into());
    spec.named_envs.insert(
        "tricky".into(),
        tricky
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    spec.repositories.push(Repository {
        name: "my-repo".into(),
        sync_type: "git".into(),
        uri: "https://example.com/a%20b;c#d?e=f&g".into(),
    });

    let dir = tempfile::tempdir().unwrap();
    for file in BuildEnv::render(&spec, &PlanOptions::with_jobs(2)).files() {
        let path = dir.path().join(&file.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &file.content).unwrap();
    }
    let out = Command::new(&python)
        .arg("-c")
        .arg(READER)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    for (k, v) in tricky {
        assert_eq!(got["make.conf"][k], v, "make.conf {k}");
        assert_eq!(got["env"][k], v, "env/tricky {k}");
    }
    assert_eq!(got["make.conf"]["CFLAGS"], "${CFLAGS} -O3");
    assert_eq!(got["make.conf.expanded"]["CFLAGS"], "-O2 -O3");
    assert_eq!(
        got["make.conf.expanded"]["PLAIN"],
        "-march=native -O2 -pipe"
    );
    assert_eq!(got["make.conf"]["MAKEOPTS"], "-j2 -l2");
    assert!(
        got["make.conf"]["FEATURES"]
            .as_str()
            .unwrap()
            .contains("binpkg-multi-instance")
    );
    assert_eq!(
        got["repo"]["sync-uri"],
        "https://example.com/a%20b;c#d?e=f&g"
    );
    assert_eq!(got["repo"]["location"], "/var/db/repos/my-repo");
    assert_eq!(got["repo"]["sync-type"], "git");
}

/// Every named-env name `validate` accepts is read back by Portage's own `package.env` reader (`grabdict_package`,
/// as `config` calls it) as the one name the spec gives, and each name it refuses would not be: `[env.'#fast']`
/// and `[env.'fast x']` once passed validation and built the package without the env's CFLAGS.
#[test]
fn portage_reads_back_every_named_env_the_spec_accepts() {
    let Some(python) = portage_python() else {
        return;
    };
    const PACKAGE_ENV_READER: &str = r#"
import json, os, sys
os.environ.setdefault("PORTAGE_OVERRIDE_EPREFIX", "/")
from portage.util import grabdict_package
d = grabdict_package(sys.argv[1], recursive=1, allow_wildcard=True, allow_repo=True, verify_eapi=False,
                     allow_build_id=True)
print(json.dumps({str(k): v for k, v in d.items()}))
"#;
    let accepted = [
        "nocache",
        "O3-native+lto",
        "a#b",
        "caf\u{e9}",
        "x.y",
        "_under",
    ];
    let refused = [
        "#fast",
        "fast x",
        "tab\tname",
        "nbsp\u{a0}name",
        "",
        "a/b",
        ".hidden",
    ];
    let read_back = |names: &[&str]| -> Vec<String> {
        let mut spec = ImageSpec::new("x");
        spec.packages = vec!["app-misc/hello".into()];
        let mut config = staves_core::PackageConfig::default();
        for name in names {
            spec.named_envs.insert(
                (*name).to_owned(),
                [("CFLAGS".to_owned(), "-O3".to_owned())].into(),
            );
            config.env.push((*name).to_owned());
        }
        spec.package_configs.insert("app-misc/hello".into(), config);
        let dir = tempfile::tempdir().unwrap();
        let env = BuildEnv::render(&spec, &PlanOptions::with_jobs(1));
        let file = env
            .file("etc/portage/package.env/staves")
            .expect("package.env");
        let path = dir.path().join("package.env");
        std::fs::write(&path, &file.content).unwrap();
        let out = Command::new(&python)
            .arg("-c")
            .arg(PACKAGE_ENV_READER)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: std::collections::BTreeMap<String, Vec<String>> =
            serde_json::from_slice(&out.stdout).unwrap();
        got.get("app-misc/hello").cloned().unwrap_or_default()
    };
    for name in accepted {
        let text = format!(
            "name = 'x'\npackages = ['app-misc/hello']\n[env.{}]\nCFLAGS = '-O3'\n['app-misc/hello']\nenv = [{}]\n",
            toml_key(name),
            toml_key(name)
        );
        ImageSpec::parse(&text, None).unwrap_or_else(|e| panic!("{name:?}: {}", e.render()));
        assert_eq!(
            read_back(&[name]),
            [name],
            "Portage reads {name:?} back as itself"
        );
    }
    for name in refused {
        let text = format!(
            "name = 'x'\npackages = ['app-misc/hello']\n[env.{}]\nCFLAGS = '-O3'\n['app-misc/hello']\nenv = [{}]\n",
            toml_key(name),
            toml_key(name)
        );
        let err = ImageSpec::parse(&text, None).expect_err(name);
        assert!(
            err.diagnostics()
                .iter()
                .any(|d| d.message.contains("is not a valid environment name")),
            "{name:?}: {}",
            err.render()
        );
        if !name.is_empty() && !name.contains('/') && !name.starts_with('.') {
            assert_ne!(
                read_back(&[name]),
                [name],
                "Portage would not read {name:?} back"
            );
        }
    }
}

/// A TOML basic string holding `s`, usable as a key or a value.
fn toml_key(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}
