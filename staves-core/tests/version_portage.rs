//! The PMS version order in `staves_core::spec::Version` agrees with real Portage's `vercmp`.
//!
//! Runs Portage's own `portage.versions.vercmp` from the pip-installed `portage==3.0.83` that `tests/run.sh` puts
//! in a virtualenv and names in `STAVES_PORTAGE_PYTHON`. Without it the test is skipped, unless
//! `STAVES_REQUIRE_PORTAGE=1`, in which case it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use staves_core::spec::Version;
use std::cmp::Ordering;
use std::io::Write;
use std::process::{Command, Stdio};

const VERCMP: &str = r#"
import os, sys
os.environ.setdefault("PORTAGE_OVERRIDE_EPREFIX", "/")
from portage.versions import vercmp
for line in sys.stdin:
    a, b = line.split()
    r = vercmp(a, b)
    print(0 if r == 0 else (1 if r > 0 else -1))
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

/// Versions built from every PMS part: numbers with leading and trailing zeros, letters, suffix chains, revisions.
fn corpus() -> Vec<String> {
    let numbers = [
        "0", "1", "1.0", "1.00", "1.01", "1.1", "1.001", "1.010", "1.2.3", "10", "2.0.0.0",
    ];
    let letters = ["", "a", "z"];
    let suffixes = [
        "",
        "_alpha",
        "_beta2",
        "_pre",
        "_pre1",
        "_rc1",
        "_p",
        "_p0",
        "_p1",
        "_rc1_p2",
        "_p1_alpha",
    ];
    let revisions = ["", "-r0", "-r1", "-r10"];
    let mut out = Vec::new();
    for (i, n) in numbers.iter().enumerate() {
        for (j, l) in letters.iter().enumerate() {
            for (k, s) in suffixes.iter().enumerate() {
                // A deterministic subset of the revisions keeps the pair count reasonable.
                let r = revisions[(i + j + k) % revisions.len()];
                out.push(format!("{n}{l}{s}{r}"));
            }
        }
    }
    out
}

#[test]
fn version_order_matches_portage_vercmp() {
    let Some(python) = portage_python() else {
        return;
    };
    let versions = corpus();
    let mut pairs = Vec::new();
    for (i, a) in versions.iter().enumerate() {
        for b in versions.iter().skip(i % 7).step_by(7) {
            pairs.push((a.clone(), b.clone()));
        }
    }
    let mut child = Command::new(&python)
        .args(["-c", VERCMP])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run Portage's python");
    let mut input = String::new();
    for (a, b) in &pairs {
        input.push_str(&format!("{a} {b}\n"));
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<i32> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(answers.len(), pairs.len());
    let mut disagreements = Vec::new();
    for ((a, b), want) in pairs.iter().zip(&answers) {
        let got = match Version::parse(a).unwrap().cmp(&Version::parse(b).unwrap()) {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        };
        if got != *want {
            disagreements.push(format!("{a} vs {b}: staves {got}, portage {want}"));
        }
    }
    assert!(pairs.len() > 500, "only {} pairs", pairs.len());
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
