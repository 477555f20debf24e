//! The Docker backend against the real engine and real Portage (fixture images).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    BUILDER_IMAGE, PORTAGE_IMAGE, TempVolume, docker_ready, staves_containers, staves_volumes,
};
use staves_core::{
    BuildEvent, BuildOptions, BuildPlan, Builder, DockerBuilder, Error, ImageSpec, PlanOptions,
    RootfsSink,
};
use std::io::Read;
use std::sync::{Arc, Mutex};

fn builder(cache: &TempVolume) -> DockerBuilder {
    DockerBuilder::new(BUILDER_IMAGE)
        .unwrap()
        .portage_image(PORTAGE_IMAGE)
        .build_cache(&cache.0)
}

/// Read the rootfs tar and list its entries (path, uid, gid).
fn list_entries(rootfs: &mut dyn Read) -> staves_core::Result<Vec<(String, u64, u64)>> {
    let mut archive = tar::Archive::new(rootfs);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        out.push((
            path,
            entry.header().uid().unwrap(),
            entry.header().gid().unwrap(),
        ));
    }
    Ok(out)
}

#[test]
fn builds_hello_rootfs_and_leaves_no_container() {
    if !docker_ready() {
        return;
    }
    let _lock = common::engine_lock();
    let cache = TempVolume::new("builder-hello");
    let mut spec = ImageSpec::new("staves-test/hello");
    spec.packages = vec!["app-misc/hello".into()];
    let plan = BuildPlan::new(&spec, &PlanOptions::with_jobs(2)).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    let options = BuildOptions::default().with_events(Arc::new(move |e: &BuildEvent| {
        sink_events.lock().unwrap().push(e.clone());
    }));
    let seen = Arc::new(Mutex::new((Vec::new(), false)));
    let sink_seen = seen.clone();
    let sink = RootfsSink::new(move |r: &mut dyn Read| {
        let entries = list_entries(r)?;
        std::io::copy(r, &mut std::io::sink()).unwrap();
        // The whole rootfs has arrived: the containers go while the sink (the image writer) is still busy.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut removed = false;
        while std::time::Instant::now() < deadline && !removed {
            removed = staves_containers().is_empty() && staves_volumes().is_empty();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        *sink_seen.lock().unwrap() = (entries, removed);
        Ok(())
    });
    let report = builder(&cache)
        .build_blocking(&plan, &options, sink)
        .unwrap();
    let (entries, removed_while_writing) = seen.lock().unwrap().clone();
    assert!(
        removed_while_writing,
        "the containers were not removed once the rootfs was read"
    );
    let names: Vec<&str> = entries.iter().map(|(p, _, _)| p.as_str()).collect();
    assert!(
        names.iter().any(|p| p.ends_with("usr/bin/hello")),
        "{names:?}"
    );
    assert!(names.iter().any(|p| p.ends_with("bin/sh")), "{names:?}");
    assert!(!names.iter().any(|p| p.contains("buildtool")), "{names:?}");
    assert!(!names.iter().any(|p| p.contains("var/db/pkg")), "{names:?}");
    assert!(!names.iter().any(|p| p.contains("var/cache")), "{names:?}");
    let cpvs: Vec<&str> = report.packages.iter().map(|p| p.cpv.as_str()).collect();
    assert!(cpvs.contains(&"app-misc/hello-1"), "{cpvs:?}");
    assert!(cpvs.contains(&"dev-libs/libfoo-1"), "{cpvs:?}");
    assert!(
        report.packages.iter().all(|p| p.binary.is_some()),
        "{:?}",
        report.packages
    );
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, BuildEvent::Package { .. }))
    );
    assert!(staves_containers().is_empty(), "{:?}", staves_containers());
    assert!(staves_volumes().is_empty(), "{:?}", staves_volumes());
    // The report's log keeps the end of the output, and the whole log went to the handler.
    let logged = events
        .iter()
        .filter(|e| matches!(e, BuildEvent::Log { .. }))
        .count();
    assert_eq!(
        report.log.len(),
        logged.min(staves_core::BuildReport::LOG_LIMIT)
    );
    assert!(!report.build_id.is_empty());
    eprintln!("report: {}", serde_json::to_string_pretty(&report).unwrap());
}

#[test]
fn a_missing_package_fails_the_rootfs_step_and_leaves_no_container() {
    if !docker_ready() {
        return;
    }
    let _lock = common::engine_lock();
    let cache = TempVolume::new("builder-missing");
    let mut spec = ImageSpec::new("staves-test/missing");
    spec.packages = vec!["app-misc/does-not-exist".into()];
    let plan = BuildPlan::new(&spec, &PlanOptions::with_jobs(2)).unwrap();
    let called = Arc::new(Mutex::new(false));
    let sink_called = called.clone();
    let sink = RootfsSink::new(move |_: &mut dyn Read| {
        *sink_called.lock().unwrap() = true;
        Ok(())
    });
    let err = builder(&cache)
        .build_blocking(&plan, &BuildOptions::default(), sink)
        .unwrap_err();
    assert!(
        !*called.lock().unwrap(),
        "the sink must not be called for a failed build"
    );
    let Error::Build(staves_core::BuildError::StepFailed { label, tail, .. }) = &err else {
        panic!("{err:?}")
    };
    assert!(label.contains("build dependencies"), "{label}");
    assert!(tail.join("\n").contains("does-not-exist"), "{err}");
    assert!(staves_containers().is_empty(), "{:?}", staves_containers());
}

/// The standalone script (`staves plan --format script`) run by hand in the builder image gives the same rootfs.
#[test]
fn standalone_script_builds_the_rootfs_by_hand() {
    if !docker_ready() {
        return;
    }
    let _lock = common::engine_lock();
    let mut spec = ImageSpec::new("staves-test/script");
    spec.packages = vec!["app-misc/hello".into()];
    spec.package_configs.insert(
        "app-misc/hello".into(),
        staves_core::PackageConfig {
            use_flags: vec!["-nls".into()],
            ..Default::default()
        },
    );
    let script = BuildPlan::new(&spec, &PlanOptions::with_jobs(2))
        .unwrap()
        .render_script();
    let id = std::process::id();
    let snap = format!("staves-script-snap-{id}");
    let run = |args: &[&str]| {
        std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        run(&["create", "--name", &snap, PORTAGE_IMAGE])
            .status
            .success()
    );
    let out = common::run_with_stdin(
        std::process::Command::new("docker")
            .args(["run", "--rm", "-i", "--volumes-from", &format!("{snap}:ro"), BUILDER_IMAGE, "sh", "-c"])
            .arg("sh -s && test -x /tmp/rootfs/usr/bin/hello && ! test -e /tmp/rootfs/usr/share/locale \
              && test -s /tmp/rootfs/usr/lib/locale/locale-archive && ! test -e /tmp/rootfs/var/db/pkg \
              && echo STAVES-SCRIPT-OK"),
        script.as_bytes(),
    );
    let _ = run(&["rm", "-v", "-f", &snap]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("STAVES-SCRIPT-OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A background step that fails (an unknown locale) fails the build at the step that waits for it.
#[test]
fn a_failing_background_step_fails_the_build() {
    if !docker_ready() {
        return;
    }
    let _lock = common::engine_lock();
    let cache = TempVolume::new("builder-locale");
    let mut spec = ImageSpec::new("staves-test/badlocale");
    spec.packages = vec!["app-misc/hello".into()];
    spec.locale = staves_core::Locale {
        name: "xx_NOWHERE".into(),
        charset: "UTF-8".into(),
    };
    let plan = BuildPlan::new(&spec, &PlanOptions::with_jobs(2)).unwrap();
    let sink = RootfsSink::new(|_: &mut dyn Read| -> staves_core::Result<()> {
        panic!("the sink must not be called")
    });
    let err = builder(&cache)
        .build_blocking(&plan, &BuildOptions::default(), sink)
        .unwrap_err();
    let Error::Build(staves_core::BuildError::StepFailed { label, tail, .. }) = &err else {
        panic!("{err:?}")
    };
    assert!(label.starts_with("Generate locale xx_NOWHERE"), "{label}");
    assert!(tail.join("\n").contains("locale"), "{err}");
    assert!(staves_containers().is_empty(), "{:?}", staves_containers());
}

/// A builder image without emerge, `sh` or `sleep` (the entrypoint) fails before any step and names what it
/// lacks. The engine's init starts even without `sleep` and exits a moment later: whether the check meets it
/// running or stopped, the answer is the same.
#[test]
fn a_builder_image_that_is_not_a_stage3_is_named_before_any_step() {
    if !docker_ready() {
        return;
    }
    let _lock = common::engine_lock();
    let cache = TempVolume::new("builder-notstage3");
    let build = |what: &str, run: &str| -> String {
        let image = format!("staves-test/no-{what}:t{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {BUILDER_IMAGE}\nRUN {run}\n"),
        )
        .unwrap();
        let built = std::process::Command::new("docker")
            .args(["build", "-q", "-t", &image])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        image
    };
    /// Removes the images on every exit, the failed assertions included.
    struct Images([String; 3]);
    impl Drop for Images {
        fn drop(&mut self) {
            for image in &self.0 {
                let _ = std::process::Command::new("docker")
                    .args(["rmi", "-f", image])
                    .output();
            }
        }
    }
    let images = Images([
        build("emerge", "rm -f \"$(command -v emerge)\""),
        // `sh` itself is gone, `sleep` is there: the init keeps running.
        build("sh", "rm -f /bin/sh /usr/bin/sh"),
        // `sh` is there, `sleep` is gone: the init exits, maybe before the check, maybe after.
        build("sleep", "rm -f \"$(command -v sleep)\""),
    ]);
    let images = &images.0;
    let mut spec = ImageSpec::new("staves-test/notstage3");
    spec.packages = vec!["app-misc/hello".into()];
    let plan = BuildPlan::new(&spec, &PlanOptions::with_jobs(2)).unwrap();
    let cases = [
        (images[0].as_str(), "emerge"),
        (images[1].as_str(), "sh"),
        (images[2].as_str(), "sleep"),
        // Neither `sh` nor `sleep`: the snapshot image.
        (PORTAGE_IMAGE, "sleep"),
    ];
    for (builder_image, missing) in cases {
        let steps = Arc::new(Mutex::new(0));
        let counted = steps.clone();
        let options = BuildOptions::default().with_events(Arc::new(move |e: &BuildEvent| {
            if matches!(e, BuildEvent::StepStarted { .. }) {
                *counted.lock().unwrap() += 1;
            }
        }));
        let err = DockerBuilder::new(builder_image)
            .unwrap()
            .portage_image(PORTAGE_IMAGE)
            .build_cache(&cache.0)
            .build_blocking(&plan, &options, RootfsSink::new(|_: &mut dyn Read| Ok(())))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{builder_image} is not a Gentoo stage3 (no {missing} found); pass --builder with a stage3 image"
            )
        );
        assert_eq!(*steps.lock().unwrap(), 0, "a step ran");
        assert!(staves_containers().is_empty(), "{:?}", staves_containers());
        assert!(staves_volumes().is_empty(), "{:?}", staves_volumes());
    }
}
