//! `staves validate`, run as a built binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn staves(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_staves"))
        .arg("validate")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

const BAD: &str = "name = 'Staves/Bash'\npackages = ['app-shells/bash', 'app-shells/bash', '!sys-libs/glibc']\n[env]\nCFLAGS = '$(id)'\n";

#[test]
fn valid_spec_in_the_current_directory_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bash/staves.toml"),
        dir.path().join("staves.toml"),
    )
    .unwrap();
    let out = staves(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "0 errors, 0 warnings\n");
    let out = staves(dir.path(), &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out).trim(), "[]");
}

#[test]
fn errors_exit_1_with_rustc_style_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), BAD).unwrap();
    let out = staves(dir.path(), &["--config", "bad.toml"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn json_format_lists_every_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), BAD).unwrap();
    let out = staves(dir.path(), &["--config", "bad.toml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 4);
    for item in items {
        for field in ["severity", "line", "column", "message", "path", "key"] {
            assert!(item.get(field).is_some(), "{field} missing in {item}");
        }
    }
    insta::assert_json_snapshot!(json);
}

#[test]
fn warnings_alone_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("staves.toml"),
        "name = 'staves/x'\npackages = ['app-shells/bash']\n['sys-libs/ncurses']\nuse = ['-cxx']\n",
    )
    .unwrap();
    let out = staves(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with("warning: package table `sys-libs/ncurses`"),
        "{text}"
    );
    assert!(text.contains(" --> staves.toml:3:2\n"), "{text}");
    assert!(text.ends_with("0 errors, 1 warning\n"), "{text}");
}

#[test]
fn missing_file_exits_1_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let out = staves(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot read staves.toml"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        staves(dir.path(), &["--format", "xml"]).status.code(),
        Some(2)
    );
    assert_eq!(staves(dir.path(), &["--bogus"]).status.code(), Some(2));
    assert_eq!(staves(dir.path(), &["--config"]).status.code(), Some(2));
}
