//! Snapshots of the rendered Portage files, steps and scripts for the examples and the original's README examples.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use staves_core::{BuildPlan, ImageSpec, PlanOptions};
use std::path::Path;

fn plan_for(relative: &str) -> BuildPlan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    let spec = ImageSpec::load(&path).unwrap();
    BuildPlan::new(&spec, &PlanOptions::with_jobs(4)).unwrap()
}

#[test]
fn bash_example() {
    let plan = plan_for("examples/bash/staves.toml");
    insta::assert_snapshot!("bash_text", plan.render_text());
    insta::assert_snapshot!("bash_script", plan.render_script());
}

#[test]
fn full_example() {
    let plan = plan_for("examples/full/staves.toml");
    insta::assert_snapshot!("full_text", plan.render_text());
    insta::assert_json_snapshot!("full_json", plan);
}

#[test]
fn hello_example() {
    insta::assert_snapshot!(
        "hello_script",
        plan_for("examples/hello/staves.toml").render_script()
    );
}

/// `[env] CFLAGS="${CFLAGS} -O3"`, `[env.nocache] FEATURES="-buildpkg"` applied to `=dev-utils/mylibrary-9999`,
/// and a git repository `my-repo`, as in the original's README.
#[test]
fn original_readme_examples() {
    let plan = plan_for("tests/data/plan/original-readme.toml");
    let files = plan.files_by_path();
    assert!(files["/etc/portage/make.conf"].contains("CFLAGS=\"${CFLAGS} -O3\"\n"));
    assert_eq!(
        files["/etc/portage/env/nocache"],
        "FEATURES=\"-buildpkg\"\n"
    );
    assert_eq!(
        files["/etc/portage/package.env/staves"],
        "=dev-utils/mylibrary-9999 nocache\n"
    );
    assert!(
        files["/etc/portage/repos.conf/my-repo.conf"]
            .contains("sync-uri = ssh://git@example.com/my-overlay.git\n")
    );
    insta::assert_snapshot!("original_readme_text", plan.render_text());
}

/// `[build] binhost`: a `binrepos.conf` with both URLs in order, and a fetch step right before the binary package
/// check. A spec without `[build]` plans as before (the other snapshots).
#[test]
fn build_binhost_spec() {
    let plan = plan_for("tests/data/plan/binhost.toml");
    assert_eq!(
        plan.binhosts,
        ["http://binhost:8080/", "https://binpkgs.example.com/amd64/"]
    );
    let files = plan.files_by_path();
    let conf = &files["/etc/portage/binrepos.conf/staves.conf"];
    let first = conf.find("sync-uri = http://binhost:8080/\n").unwrap();
    let second = conf
        .find("sync-uri = https://binpkgs.example.com/amd64/\n")
        .unwrap();
    assert!(first < second, "{conf}");
    insta::assert_snapshot!("binhost_text", plan.render_text());
}
