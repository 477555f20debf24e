//! The malformed and hostile spec corpus in `tests/data/spec/malformed/`: each file's diagnostic, with its
//! message and position, plus generated hostile inputs (megabytes, deep nesting).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use staves_core::{Diagnostic, ImageSpec, Severity, SpecError};
use std::path::{Path, PathBuf};

use Severity::{Error as E, Warning as W};

/// (file stem, severity, line, column, a fragment of the message).
const CASES: &[(&str, Severity, usize, usize, &str)] = &[
    (
        "image-bad-user",
        E,
        4,
        8,
        "user `my user` must be non-empty with no whitespace",
    ),
    (
        "image-relative-volume",
        E,
        4,
        21,
        "volume `cache` must be an absolute path",
    ),
    (
        "image-env-bad-name",
        E,
        4,
        1,
        "`MY VAR` is not a valid variable name in `[image.env]`",
    ),
    (
        "atom-bad-repository",
        E,
        2,
        13,
        "has an invalid repository `::-gentoo`",
    ),
    ("atom-bad-slot", E, 2, 13, "has an invalid slot `:`"),
    (
        "atom-bad-use-dep",
        E,
        2,
        13,
        "has an invalid USE dependency",
    ),
    (
        "atom-blocker",
        E,
        2,
        13,
        "is a blocker; blockers cannot be installed",
    ),
    (
        "atom-hard-blocker",
        E,
        2,
        13,
        "`!!app-shells/bash` is a blocker",
    ),
    (
        "atom-newline-in-key",
        E,
        3,
        2,
        "invalid package table key: `app-shells/bash\\n[env]`",
    ),
    (
        "atom-no-category",
        E,
        2,
        13,
        "`bash` has no category: write `category/package`",
    ),
    (
        "atom-operator-without-version",
        E,
        2,
        13,
        "uses the operator `>=` but has no version",
    ),
    (
        "atom-set",
        E,
        2,
        13,
        "`@world` is a package set; sets are not supported",
    ),
    (
        "atom-version-without-operator",
        E,
        2,
        13,
        "has a version but no operator: write `=app-shells/bash-5.2`",
    ),
    (
        "atom-wildcard-without-equals",
        E,
        2,
        13,
        "a trailing `*` is only allowed with the `=` operator",
    ),
    (
        "deep-nesting",
        E,
        2,
        44,
        "nested more than 32 levels deep here",
    ),
    ("duplicate-key", E, 2, 1, "invalid TOML: duplicate key"),
    ("duplicate-table", E, 5, 2, "invalid TOML: duplicate key"),
    (
        "env-backtick",
        E,
        4,
        10,
        "contains a backtick; command substitution is not allowed",
    ),
    (
        "env-bad-name",
        E,
        4,
        1,
        "`1CFLAGS` is not a valid variable name",
    ),
    (
        "env-bad-name-dash",
        E,
        4,
        1,
        "`MY-VAR` is not a valid variable name",
    ),
    (
        "env-bad-reference",
        E,
        4,
        10,
        "references `${1}`, which is not a variable name",
    ),
    (
        "env-command-substitution",
        E,
        4,
        10,
        "contains `$(`; command substitution is not allowed",
    ),
    (
        "env-control-char",
        E,
        4,
        10,
        "contains the control character \\0",
    ),
    (
        "env-double-quote",
        E,
        4,
        10,
        "contains `\"`; remove the double quote",
    ),
    (
        "env-newline",
        E,
        4,
        10,
        "contains a newline; put the value on one line",
    ),
    ("env-trailing-backslash", E, 4, 10, "ends with a backslash"),
    (
        "env-unclosed-reference",
        E,
        4,
        10,
        "has `${` without a closing `}`",
    ),
    ("image-bad-port", E, 4, 28, "`99999` is not a valid port"),
    ("image-bad-stop-signal", E, 4, 15, "`TERM` is not a signal"),
    (
        "image-name-missing",
        E,
        1,
        1,
        "the image has no name: add `name = 'owner/image'`",
    ),
    (
        "image-name-space",
        E,
        1,
        8,
        "`staves/my bash` is not a valid image name",
    ),
    (
        "image-name-uppercase",
        E,
        1,
        8,
        "`Staves/Bash` is not a valid image name: use lowercase",
    ),
    (
        "image-relative-workdir",
        E,
        4,
        11,
        "workdir `data` must be an absolute path",
    ),
    (
        "invalid-utf8",
        E,
        2,
        26,
        "the file is not valid UTF-8 (byte 0xFF): save it as UTF-8",
    ),
    ("keyword-invalid", E, 4, 13, "`~` is not a valid keyword"),
    (
        "keyword-whitespace",
        E,
        4,
        13,
        "`~amd64 ~x86` is not a valid keyword",
    ),
    (
        "license-invalid",
        E,
        4,
        12,
        "`GPL 3` is not a valid license name",
    ),
    (
        "locale-slash",
        E,
        3,
        19,
        "locale name `../en_US` must be non-empty with no whitespace",
    ),
    ("locale-whitespace", E, 5, 11, "locale charset `UTF 8`"),
    (
        "named-env-command-substitution",
        E,
        4,
        12,
        "`FEATURES` in `[env.nocache]` contains `$(`",
    ),
    (
        "named-env-leading-dot",
        E,
        3,
        6,
        "`.hidden` is not a valid environment name",
    ),
    (
        "named-env-missing",
        E,
        6,
        8,
        "environment `nocahce` is not defined: did you mean `nocache`?",
    ),
    (
        "named-env-slash",
        E,
        3,
        6,
        "`../escape` is not a valid environment name",
    ),
    (
        "package-table-without-category",
        E,
        3,
        2,
        "unknown key `bash`: known keys are name, version",
    ),
    (
        "path-traversal-key",
        E,
        3,
        2,
        "`../../etc/x` has an invalid category `..`",
    ),
    (
        "path-traversal-package",
        E,
        2,
        13,
        "`../../etc/passwd` has an invalid category `..`",
    ),
    (
        "repo-bad-name",
        E,
        4,
        8,
        "`-r` is not a valid repository name",
    ),
    (
        "repo-bad-type",
        E,
        5,
        8,
        "unknown sync type `gti`: did you mean `git`?",
    ),
    (
        "repo-duplicate-name",
        E,
        8,
        8,
        "repository `r` is defined twice (first at 4:8)",
    ),
    (
        "repo-unknown-key",
        E,
        6,
        1,
        "unknown key `url` in `[[repositories]]`: did you mean `uri`?",
    ),
    (
        "repo-uri-empty",
        E,
        6,
        7,
        "the repository has no `uri` or an empty one",
    ),
    (
        "repo-uri-missing",
        E,
        3,
        1,
        "the repository has no `uri` or an empty one",
    ),
    (
        "repo-uri-newline",
        E,
        6,
        7,
        "contains a newline: a uri has no whitespace",
    ),
    (
        "repo-uri-quote",
        E,
        6,
        7,
        "contains `\"`: a uri has no whitespace",
    ),
    (
        "repo-uri-space",
        E,
        6,
        7,
        "contains a space: a uri has no whitespace",
    ),
    (
        "syntax-bare-value",
        E,
        1,
        8,
        "invalid TOML: string values must be quoted",
    ),
    (
        "syntax-unterminated-string",
        E,
        1,
        20,
        "invalid TOML: invalid literal string",
    ),
    (
        "type-array-item",
        E,
        2,
        32,
        "`packages` must be an array of strings, but item 2 is an integer",
    ),
    (
        "type-env-number",
        E,
        4,
        12,
        "`env.MAKEOPTS` must be a string (a make.conf variable) or a table",
    ),
    (
        "type-packages-string",
        E,
        2,
        12,
        "`packages` must be an array of strings, but it is a string",
    ),
    (
        "type-stdlib-string",
        E,
        3,
        10,
        "`stdlib` must be a boolean, but it is a string",
    ),
    (
        "type-use-string",
        E,
        4,
        7,
        "`'app-shells/bash'.use` must be an array of strings",
    ),
    (
        "unknown-image-key",
        E,
        4,
        1,
        "unknown key `workdirr` in `[image]`: did you mean `workdir`?",
    ),
    (
        "unknown-package-key",
        E,
        4,
        1,
        "unknown key `usee` in package table 'app-shells/bash': did you mean `use`?",
    ),
    (
        "unknown-top-level-key",
        E,
        1,
        1,
        "unknown key `nmae` at the top level: did you mean `name`?",
    ),
    (
        "unknown-top-level-table",
        E,
        3,
        2,
        "unknown key `imgae` at the top level: did you mean `image`?",
    ),
    (
        "use-flag-invalid",
        E,
        4,
        16,
        "`+-readline` is not a valid USE flag",
    ),
    (
        "version-invalid",
        E,
        3,
        11,
        "`1.0 beta` is not a valid image tag",
    ),
    (
        "warn-package-twice",
        W,
        2,
        32,
        "package `app-shells/bash` is listed twice in `packages` (first at 2:13)",
    ),
    (
        "build-binhost-no-scheme",
        E,
        5,
        36,
        "`binhost:8080` is not a usable binhost URL: it has no scheme",
    ),
    (
        "build-binhost-dollar",
        E,
        5,
        12,
        "`https://binhost/$ARCH` is not a usable binhost URL: it contains a quote, backslash, `$`",
    ),
    (
        "type-build-binhost-string",
        E,
        5,
        11,
        "`build.binhost` must be an array of strings, but it is a string",
    ),
    (
        "unknown-build-key",
        E,
        5,
        1,
        "unknown key `binhosts` in `[build]`: did you mean `binhost`?",
    ),
    (
        "warn-build-binhost-twice",
        W,
        5,
        48,
        "binhost `http://a:8080` is listed twice in `binhost` (first at 5:12)",
    ),
    (
        "warn-table-not-installed",
        W,
        3,
        2,
        "configures `sys-libs/ncurses`, which `packages` does not install",
    ),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/spec/malformed")
}

#[test]
fn corpus_has_at_least_40_cases_and_each_file_has_an_expectation() {
    let mut stems: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    stems.sort();
    let mut expected: Vec<String> = CASES.iter().map(|c| c.0.to_owned()).collect();
    expected.sort();
    assert_eq!(stems, expected);
    assert!(CASES.len() >= 40);
}

#[test]
fn each_case_gives_its_diagnostic_at_its_position() {
    let mut failures = Vec::new();
    for &(stem, severity, line, column, fragment) in CASES {
        let path = corpus_dir().join(format!("{stem}.toml"));
        let loaded = ImageSpec::load(&path);
        let diagnostics: Vec<Diagnostic> = match &loaded {
            Ok(spec) => spec.warnings().to_vec(),
            Err(err) => err.diagnostics().to_vec(),
        };
        let hit = diagnostics.iter().any(|d| {
            d.severity == severity
                && d.line == Some(line)
                && d.column == Some(column)
                && d.message.contains(fragment)
                && d.path.as_deref() == Some(path.as_path())
        });
        if !hit {
            failures.push(format!(
                "{stem}: expected {severity} at {line}:{column} containing {fragment:?}, got {:#?}",
                diagnostics
            ));
        }
        // Every diagnostic has a position and a single-line message.
        for d in &diagnostics {
            assert!(d.line.is_some() && d.column.is_some(), "{stem}: {d:?}");
            assert!(!d.message.contains('\n'), "{stem}: {d:?}");
        }
        // Error cases fail to load; warning-only cases load, with the warnings kept.
        match severity {
            Severity::Error => assert!(loaded.is_err(), "{stem} loaded"),
            Severity::Warning => {
                let spec = loaded.unwrap();
                assert!(!spec.warnings().is_empty(), "{stem}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn structural_problems_are_parse_errors_with_one_diagnostic_each() {
    for stem in [
        "duplicate-key",
        "duplicate-table",
        "syntax-bare-value",
        "syntax-unterminated-string",
        "type-packages-string",
        "type-stdlib-string",
        "deep-nesting",
        "invalid-utf8",
    ] {
        let err = ImageSpec::load(corpus_dir().join(format!("{stem}.toml"))).unwrap_err();
        assert!(matches!(err, SpecError::Parse { .. }), "{stem}: {err:?}");
        let errors = err.diagnostics().iter().filter(|d| d.is_error()).count();
        assert_eq!(errors, 1, "{stem}: {err:?}");
    }
}

#[test]
fn rendering_of_the_corpus() {
    let mut out = String::new();
    for &(stem, ..) in CASES {
        let path = corpus_dir().join(format!("{stem}.toml"));
        // Loaded from text named like the file, so the rendering does not depend on where the corpus is.
        let name = PathBuf::from(format!("{stem}.toml"));
        let rendered = match std::fs::read_to_string(&path) {
            Ok(text) => match ImageSpec::parse(&text, Some(&name)) {
                Ok(spec) => spec.render_diagnostics(spec.warnings()),
                Err(err) => err.render(),
            },
            // Not UTF-8: only loading reads it; give the diagnostic the short name.
            Err(_) => {
                let err = ImageSpec::load(&path).unwrap_err();
                err.render()
                    .replace(&path.display().to_string(), &name.display().to_string())
            }
        };
        out.push_str(&format!("=== {stem}\n{rendered}\n"));
    }
    insta::assert_snapshot!(out);
}

fn valid_spec_of_size(packages: usize) -> String {
    let mut s = String::from("name = 'staves/huge'\npackages = [\n");
    for i in 0..packages {
        s.push_str(&format!("  'cat-{}/pkg{i}',\n", i % 50));
    }
    s.push_str("]\n");
    for i in 0..packages {
        s.push_str(&format!(
            "['cat-{}/pkg{i}']\nuse = ['-nls', 'foo']\n",
            i % 50
        ));
    }
    s
}

#[test]
fn megabytes_of_valid_input_parse() {
    let text = valid_spec_of_size(60_000);
    assert!(text.len() > 3_000_000, "{}", text.len());
    let spec = ImageSpec::parse(&text, None).unwrap();
    assert_eq!(spec.packages.len(), 60_000);
    assert_eq!(spec.package_configs.len(), 60_000);
}

#[test]
fn megabytes_on_one_line_give_a_positioned_diagnostic() {
    // 200,000 invalid atoms on a single line: every one is reported with its column, and it stays fast
    // enough to finish (column lookups are not quadratic).
    let mut text = String::from("name = 'staves/x'\npackages = [");
    for _ in 0..200_000 {
        text.push_str("'é', ");
    }
    text.push_str("]\n");
    let err = ImageSpec::parse(&text, None).unwrap_err();
    let diags = err.diagnostics();
    assert_eq!(diags.len(), 200_000);
    assert_eq!((diags[1].line, diags[1].column), (Some(2), Some(18)));
}

#[test]
fn input_over_the_size_limit_is_one_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staves.toml");
    let mut text = String::from("name = 'staves/x'\n");
    text.push_str(
        &"# padding padding padding padding padding padding padding padding\n".repeat(600_000),
    );
    std::fs::write(&path, &text).unwrap();
    let err = ImageSpec::load(&path).unwrap_err();
    assert_eq!(err.diagnostics().len(), 1);
    assert!(
        err.diagnostics()[0]
            .message
            .contains("MiB a staves.toml may have"),
        "{err}"
    );
}

/// Run `f` on a thread with a small stack, so unbounded recursion would crash the test.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn very_deep_nesting_does_not_overflow_the_stack() {
    on_small_stack(|| {
        let depth = 100_000;
        for (open, close) in [("[", "]"), ("{a=", "}")] {
            let text = format!(
                "name = 'x/y'\npackages = {}{}\n",
                open.repeat(depth),
                close.repeat(depth)
            );
            let err = ImageSpec::parse(&text, None).unwrap_err();
            assert_eq!(err.diagnostics().len(), 1, "{err}");
            assert_eq!(err.diagnostics()[0].line, Some(2));
        }
        let dotted = format!("{} = 1\n", vec!["a"; 100_000].join("."));
        assert!(ImageSpec::parse(&dotted, None).is_err());
        let headers = format!("[{}]\n", vec!["a"; 100_000].join("."));
        assert!(ImageSpec::parse(&headers, None).is_err());
    });
}

/// The one diagnostic of a spec over the size limit.
fn assert_too_big(err: &SpecError) {
    assert!(matches!(err, SpecError::Parse { .. }), "{err:?}");
    assert_eq!(err.diagnostics().len(), 1, "{err}");
    assert!(
        err.diagnostics()[0]
            .message
            .contains("more than the 32 MiB a staves.toml may have"),
        "{err}"
    );
}

#[test]
fn a_device_behind_a_symlink_is_cut_off_at_the_size_limit() {
    // /dev/zero never ends: reading stops after the limit instead of filling memory.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staves.toml");
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    assert_too_big(&ImageSpec::load(&path).unwrap_err());
}

#[test]
fn a_fifo_is_read_like_a_file_and_cut_off_at_the_size_limit() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staves.toml");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    // A small spec through the pipe loads (as `--config <(generate)` would).
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut fifo = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            fifo.write_all(b"name = 'x/y'\npackages = ['a/b']\n")
                .unwrap();
        })
    };
    let spec = ImageSpec::load(&path).unwrap();
    writer.join().unwrap();
    assert_eq!(spec.packages, ["a/b"]);
    // An endless writer is cut off; its writes fail once the reader has closed the pipe.
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let mut fifo = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            let chunk =
                b"# comment comment comment comment comment comment comment comment\n".repeat(1000);
            let mut written = 0usize;
            while fifo.write_all(&chunk).is_ok() {
                written += chunk.len();
            }
            written
        })
    };
    assert_too_big(&ImageSpec::load(&path).unwrap_err());
    let written = writer.join().unwrap();
    assert!(written > 32 << 20, "{written}");
}

#[test]
fn a_proc_file_is_read_whole_although_its_size_is_0() {
    // /proc files report size 0; their content is still read (and here is not TOML).
    let path = std::path::Path::new("/proc/self/status");
    assert_eq!(std::fs::metadata(path).unwrap().len(), 0);
    let err = ImageSpec::load(path).unwrap_err();
    assert!(matches!(err, SpecError::Parse { .. }), "{err:?}");
    assert!(err.render().contains("Name:"), "{}", err.render());
}
