//! BuildEnv and BuildPlan: rendered files, steps, generated scripts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use proptest::prelude::*;
use staves_core::{
    BuildEnv, BuildPlan, ImageSpec, PackageConfig, PlanOptions, Repository, StepKind,
};
use std::process::Command;

fn opts() -> PlanOptions {
    PlanOptions::with_jobs(3)
}

/// A spec with every feature: env values, named envs, package tables, repositories, locale, stdlib.
fn rich_spec() -> ImageSpec {
    let mut spec = ImageSpec::new("staves/rich");
    spec.packages = vec!["app-shells/bash".into(), "=dev-utils/mylibrary-9999".into()];
    spec.stdlib = true;
    spec.env.insert("CFLAGS".into(), "${CFLAGS} -O3".into());
    spec.env.insert(
        "WEIRD".into(),
        r"it's a \path with 'quotes' and $HOME".into(),
    );
    spec.named_envs.insert(
        "nocache".into(),
        [("FEATURES".to_owned(), "-buildpkg".to_owned())]
            .into_iter()
            .collect(),
    );
    let bash = PackageConfig {
        use_flags: vec!["-nls".into(), "readline".into()],
        keywords: vec!["~amd64".into()],
        license: vec!["GPL-3".into()],
        ..Default::default()
    };
    spec.package_configs.insert("app-shells/bash".into(), bash);
    let lib = PackageConfig {
        env: vec!["nocache".into()],
        keywords: vec!["**".into()],
        ..Default::default()
    };
    spec.package_configs
        .insert("=dev-utils/mylibrary-9999".into(), lib);
    spec.repositories.push(Repository {
        name: "my-repo".into(),
        sync_type: "git".into(),
        uri: "ssh://git@example.com/my-overlay%20x.git".into(),
    });
    spec
}

#[test]
fn renders_every_portage_file_with_fixed_names() {
    let env = BuildEnv::render(&rich_spec(), &opts());
    let paths: Vec<&str> = env.files().iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "etc/portage/make.conf",
            "etc/portage/env/nocache",
            "etc/portage/package.use/staves",
            "etc/portage/package.accept_keywords/staves",
            "etc/portage/package.env/staves",
            "etc/portage/package.license/staves",
            "etc/portage/repos.conf/my-repo.conf",
        ]
    );
    let make_conf = &env.file("etc/portage/make.conf").unwrap().content;
    assert!(make_conf.contains("MAKEOPTS=\"-j3 -l3\"\n"), "{make_conf}");
    assert!(make_conf.contains("--binpkg-respect-use=y"));
    assert!(make_conf.contains("CFLAGS=\"${CFLAGS} -O3\"\n"));
    assert!(make_conf.contains(r#"WEIRD="it's a \\path with 'quotes' and $HOME""#));
    assert_eq!(
        env.file("etc/portage/env/nocache").unwrap().content,
        "FEATURES=\"-buildpkg\"\n"
    );
    assert_eq!(
        env.file("etc/portage/package.accept_keywords/staves")
            .unwrap()
            .content,
        "app-shells/bash ~amd64\n=dev-utils/mylibrary-9999 **\n"
    );
    assert_eq!(
        env.file("etc/portage/package.env/staves").unwrap().content,
        "=dev-utils/mylibrary-9999 nocache\n"
    );
    assert_eq!(
        env.file("etc/portage/repos.conf/my-repo.conf")
            .unwrap()
            .content,
        "[my-repo]\nlocation = /var/db/repos/my-repo\nsync-type = git\nsync-uri = ssh://git@example.com/my-overlay%%20x.git\n"
    );
}

#[test]
fn empty_package_tables_write_no_files() {
    let mut spec = ImageSpec::new("x");
    spec.packages = vec!["app-misc/hello".into()];
    spec.package_configs
        .insert("app-misc/hello".into(), PackageConfig::default());
    let env = BuildEnv::render(&spec, &opts());
    assert_eq!(env.files().len(), 1, "{:?}", env.files());
}

#[test]
fn plan_has_the_steps_in_order() {
    let plan = BuildPlan::new(&rich_spec(), &opts()).unwrap();
    let kinds: Vec<&StepKind> = plan.steps.iter().map(|s| &s.kind).collect();
    assert_eq!(
        kinds,
        [
            &StepKind::WriteFiles,
            &StepKind::Sync {
                repository: "my-repo".into()
            },
            &StepKind::CheckBinaries,
            &StepKind::BuildDeps,
            &StepKind::LocaleGenerate,
            &StepKind::DirectMerge,
            &StepKind::Rootfs,
            &StepKind::LocaleInstall,
            &StepKind::VerifyBinaries,
            &StepKind::Libraries,
            &StepKind::PackageList,
            &StepKind::Cleanup,
        ]
    );
    let deps = &plan.steps[3].argv;
    assert_eq!(
        deps,
        &[
            "emerge",
            "--verbose",
            "--onlydeps",
            "--usepkg",
            "--with-bdeps=y",
            "--emptytree",
            "--jobs",
            "3",
            "app-shells/bash",
            "=dev-utils/mylibrary-9999"
        ]
    );
    // The rootfs emerge, behind a wrapper that adds `--noreplace --deep` after a direct merge.
    let wrapped = &plan.steps[6].argv;
    assert_eq!(wrapped[..2], ["/bin/sh", "-c"]);
    assert!(wrapped[2].contains("--noreplace --deep"), "{}", wrapped[2]);
    assert_eq!(wrapped[3], "sh");
    let rootfs = &wrapped[4..];
    assert_eq!(
        &rootfs[..6],
        &[
            "emerge",
            "--verbose",
            "--root=/tmp/rootfs",
            "--root-deps=rdeps",
            "--oneshot",
            "--usepkg"
        ]
    );
    assert_eq!(rootfs.last().unwrap(), "virtual/libc");
    assert_eq!(
        plan.steps[6].env.get("NOCOLOR").map(String::as_str),
        Some("true")
    );
    // Merges into the rootfs never wait for builds (they cannot affect them); merges into the builder do.
    assert_eq!(
        plan.steps[6].env.get("FEATURES").map(String::as_str),
        Some("-merge-wait")
    );
    assert_eq!(plan.steps[3].env.get("FEATURES"), None);
    // The direct merge runs the helper's merge mode on the check's resolution.
    let direct = plan.steps[5].shell_script().unwrap();
    assert!(
        direct.contains("merge /tmp/rootfs /var/tmp/staves/rootfs-pretend.txt"),
        "{direct}"
    );
    // Build dependencies are skipped when the check finds that the rootfs comes from binary packages only.
    let skip = plan.steps[3].skip_if.as_ref().unwrap();
    assert_eq!(skip.path, "/var/tmp/staves/rootfs-from-binaries");
    assert!(plan.steps.iter().filter(|s| s.skip_if.is_some()).count() == 1);
    let exec = plan.steps[3].exec_argv();
    assert_eq!(exec[..2], ["/bin/sh", "-c"]);
    assert_eq!(
        exec[3..],
        ["sh".to_owned()]
            .iter()
            .chain(deps)
            .cloned()
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(plan.steps[6].exec_argv(), plan.steps[6].argv);
    let libs = plan.steps[9].shell_script().unwrap();
    assert!(plan.steps[4].background && !plan.steps[4].wait_background);
    assert!(plan.steps[7].wait_background && !plan.steps[7].background);
    assert!(plan.steps[8].background && !plan.steps[8].wait_background);
    assert!(plan.steps[11].wait_background && !plan.steps[11].background);
    assert!(
        plan.steps
            .iter()
            .filter(|s| s.background || s.wait_background)
            .count()
            == 4
    );
    assert!(libs.contains("libgcc_s.so.1") && libs.contains("libstdc++.so.6"));
}

#[test]
fn load_average_reaches_both_emerge_calls_and_makeopts() {
    let spec = rich_spec();
    let plain = BuildPlan::new(&spec, &opts()).unwrap();
    for step in [&plain.steps[3], &plain.steps[6]] {
        assert!(!step.argv.iter().any(|a| a == "--load-average"), "{step:?}");
    }
    let make_conf = |plan: &BuildPlan| {
        plan.files
            .iter()
            .find(|f| f.path == "etc/portage/make.conf")
            .unwrap()
            .content
            .clone()
    };
    assert!(make_conf(&plain).contains("MAKEOPTS=\"-j3 -l3\"\n"));

    for (load, text) in [(2.5, "2.5"), (4.0, "4")] {
        let plan = BuildPlan::new(&spec, &opts().load_average(Some(load))).unwrap();
        for step in [&plan.steps[3], &plan.steps[6]] {
            let at = step
                .argv
                .iter()
                .position(|a| a == "--load-average")
                .unwrap();
            assert_eq!(
                step.argv[at - 2..at + 2],
                ["--jobs", "3", "--load-average", text]
            );
        }
        assert!(make_conf(&plan).contains(&format!("MAKEOPTS=\"-j3 -l{text}\"\n")));
    }
    assert_eq!(
        PlanOptions::new(Some(3), Some(2.0)),
        PlanOptions::with_jobs(3).load_average(Some(2.0))
    );
}

#[test]
fn an_unusable_load_average_gives_no_plan() {
    for load in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = BuildPlan::new(&rich_spec(), &opts().load_average(Some(load))).unwrap_err();
        assert!(
            matches!(err, staves_core::PlanError::InvalidLoadAverage { .. }),
            "{load}: {err:?}"
        );
        assert!(err.to_string().contains("above 0"), "{err}");
    }
}

#[test]
fn virtual_libc_is_not_added_twice() {
    let mut spec = ImageSpec::new("x");
    spec.packages = vec!["virtual/libc".into(), "app-misc/hello".into()];
    let plan = BuildPlan::new(&spec, &opts()).unwrap();
    assert_eq!(plan.rootfs_atoms, ["virtual/libc", "app-misc/hello"]);
    let rootfs = plan
        .steps
        .iter()
        .find(|s| s.kind == StepKind::Rootfs)
        .unwrap();
    assert_eq!(
        rootfs.argv.iter().filter(|a| *a == "virtual/libc").count(),
        1
    );
}

#[test]
fn a_spec_without_packages_gives_no_plan() {
    let err = BuildPlan::new(&ImageSpec::new("x"), &opts()).unwrap_err();
    assert!(err.to_string().contains("no packages"), "{err}");
}

/// `sh -n` accepts the script and every shell step.
fn assert_sh_parses(script: &str) {
    let out = common::run_with_stdin(Command::new("sh").arg("-n"), script.as_bytes());
    assert!(
        out.status.success(),
        "sh -n failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generated_scripts_pass_sh_n() {
    let plan = BuildPlan::new(&rich_spec(), &opts()).unwrap();
    assert_sh_parses(&plan.render_script());
    for step in &plan.steps {
        if let Some(script) = step.shell_script() {
            assert_sh_parses(script);
        }
        if step.skip_if.is_some() {
            assert_sh_parses(&step.exec_argv()[2]);
        }
    }
}

/// Run the standalone script's staging and install part in a scratch root to see what it writes, by rewriting the
/// absolute paths into a temporary directory. This exercises the real heredocs, `cp` and the make.conf block logic.
#[test]
fn install_step_replaces_its_make_conf_block_and_keeps_builder_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let plan = BuildPlan::new(&rich_spec(), &opts()).unwrap();
    let script = plan.render_script();
    // Keep only the staging part and the install step (before the first sync step).
    let cut = script.find("\n# 2. ").unwrap();
    let script = script[..cut]
        .replace("/var/tmp/staves", &format!("{root}/var/tmp/staves"))
        .replace("/etc/portage", &format!("{root}/etc/portage"));
    std::fs::create_dir_all(format!("{root}/etc/portage")).unwrap();
    std::fs::write(
        format!("{root}/etc/portage/make.conf"),
        "CHOST=\"x86_64-pc-linux-gnu\"\n",
    )
    .unwrap();
    std::fs::write(
        format!("{root}/etc/portage/package.use"),
        "sys-libs/glibc -multiarch\n",
    )
    .unwrap();
    for _ in 0..2 {
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let make_conf = std::fs::read_to_string(format!("{root}/etc/portage/make.conf")).unwrap();
    assert!(
        make_conf.starts_with("CHOST=\"x86_64-pc-linux-gnu\"\n"),
        "{make_conf}"
    );
    assert_eq!(
        make_conf.matches("# BEGIN staves").count(),
        1,
        "{make_conf}"
    );
    assert_eq!(make_conf.matches("MAKEOPTS=").count(), 1, "{make_conf}");
    let kept =
        std::fs::read_to_string(format!("{root}/etc/portage/package.use/00-builder")).unwrap();
    assert_eq!(kept, "sys-libs/glibc -multiarch\n");
    let ours = std::fs::read_to_string(format!("{root}/etc/portage/package.use/staves")).unwrap();
    assert_eq!(ours, "app-shells/bash -nls readline\n");
    let env = std::fs::read_to_string(format!("{root}/etc/portage/env/nocache")).unwrap();
    assert_eq!(env, "FEATURES=\"-buildpkg\"\n");
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        // Mostly values validation accepts (printable ASCII and some Unicode) ...
        4 => "[ -~\u{e9}\u{4e2d}]{0,24}",
        // ... and some hostile ones: newlines, quotes, backticks, command substitution, trailing backslash.
        1 => "[ -~\n\r\t]{0,12}(\n|\"|`|\\$\\(|\\\\)[ -~\n]{0,12}",
    ]
}

fn uri_strategy() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[A-Za-z0-9:/._~%@+=-]{1,30}", 1 => "[ -~\n]{1,30}"]
}

proptest! {
    /// A spec that validates renders only the lines it asked for: no value can start an assignment or a section.
    /// A spec that does not validate gives no plan at all.
    #[test]
    fn rendered_files_hold_only_requested_lines(
        vars in proptest::collection::vec(("[A-Z_][A-Z0-9_]{0,8}", value_strategy()), 0..6),
        named in proptest::collection::vec(("[a-z][a-z0-9_-]{0,6}", "[A-Z]{1,6}", value_strategy()), 0..3),
        uri in uri_strategy(),
    ) {
        let mut spec = ImageSpec::new("x");
        spec.packages = vec!["app-misc/hello".into()];
        for (k, v) in &vars { spec.env.insert(k.clone(), v.clone()); }
        for (n, k, v) in &named { spec.named_envs.entry(n.clone()).or_default().insert(k.clone(), v.clone()); }
        spec.repositories.push(Repository { name: "r".into(), sync_type: "git".into(), uri: uri.clone() });
        let valid = !spec.validate().iter().any(|d| d.severity == staves_core::Severity::Error);
        let plan = BuildPlan::new(&spec, &opts());
        prop_assert_eq!(valid, plan.is_ok());
        let Ok(plan) = plan else { return Ok(()) };
        let env = BuildEnv::render(&spec, &opts());
        let make_conf = &env.file("etc/portage/make.conf").unwrap().content;
        let lines: Vec<&str> = make_conf.lines().collect();
        prop_assert_eq!(lines.len(), 6 + spec.env.len());
        for ((key, _), line) in spec.env.iter().zip(&lines[5..]) {
            prop_assert!(line.starts_with(&format!("{key}=\"")), "{}", line);
            prop_assert!(line.ends_with('"'));
        }
        for (name, vars) in &spec.named_envs {
            let content = &env.file(&format!("etc/portage/env/{name}")).unwrap().content;
            prop_assert_eq!(content.lines().count(), vars.len());
        }
        let repo = &env.file("etc/portage/repos.conf/r.conf").unwrap().content;
        prop_assert_eq!(repo.lines().count(), 4);
        prop_assert!(repo.lines().skip(1).all(|l| !l.starts_with('[')));
        let script = plan.render_script();
        prop_assert!(script.lines().filter(|l| l.starts_with("STAVES_EOF")).count() == plan.files.len());
    }
}
