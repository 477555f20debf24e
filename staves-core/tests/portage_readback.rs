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
