//! The async API from inside Tokio runtimes: a real build, a build whose future is dropped mid-emerge, and the
//! blocking API called where it used to panic ("Cannot start a runtime from within a runtime").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    BUILDER_IMAGE, PORTAGE_IMAGE, TempVolume, docker_ready, staves_containers, staves_volumes,
};
use staves_core::{
    BuildEvent, BuildOptions, BuildRequest, DockerBuilder, Error, ImageSpec, MockBuilder,
    MockEntry, Output, build_image, build_image_async,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn hello_spec(name: &str) -> ImageSpec {
    ImageSpec::parse(
        &format!(
            "name = '{name}'\nversion = 't{}'\npackages = ['app-misc/hello']\ncommand = ['/usr/bin/hello']\n",
            std::process::id()
        ),
        None,
    )
    .unwrap()
}

fn docker_builder(cache: &TempVolume) -> DockerBuilder {
    DockerBuilder::new(BUILDER_IMAGE)
        .unwrap()
        .portage_image(PORTAGE_IMAGE)
        .build_cache(&cache.0)
}

fn docker(args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap()
}

/// `#[tokio::main]`-style: a multi-threaded runtime, the build spawned as a task (so its future must be `Send`),
/// the builder created and dropped on the runtime, the `docker` output loading into the builder's engine.
#[test]
fn build_image_async_builds_hello_inside_a_runtime() {
    if !docker_ready() {
        return;
    }
    let _lock = common::engine_lock();
    let cache = TempVolume::new("async-hello");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("hello.tar");
    let spec = hello_spec("staves-test/async-hello");
    let tag = format!("{}:{}", spec.name, spec.version);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let builder = docker_builder(&cache);
        let request = BuildRequest::new(vec![Output::Docker, Output::OciArchive(archive.clone())])
            .jobs(Some(2));
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = events.clone();
        let options = BuildOptions::default().with_events(Arc::new(move |e: &BuildEvent| {
            seen.lock().unwrap().push(e.clone())
        }));
        let outcome =
            tokio::spawn(
                async move { build_image_async(&spec, &builder, &request, &options).await },
            )
            .await
            .unwrap();
        let events = events.lock().unwrap();
        assert!(
            matches!(events.first(), Some(BuildEvent::Started { .. })),
            "{:?}",
            events.first()
        );
        // The build's own events end with the cleanup; the docker output is loaded after it.
        let last = events
            .iter()
            .rfind(|e| !matches!(e, BuildEvent::Loading { .. }));
        assert!(matches!(last, Some(BuildEvent::CleanedUp)), "{last:?}");
        assert!(
            matches!(events.last(), Some(BuildEvent::Loading { .. })),
            "{:?}",
            events.last()
        );
        outcome
    });
    drop(runtime);
    let outcome = outcome.unwrap();
    assert!(archive.exists());
    let inspect = docker(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        outcome.image.config_digest
    );
    let run = docker(&["run", "--rm", &tag]);
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "Hello, world");
    assert!(staves_containers().is_empty(), "{:?}", staves_containers());
    assert!(staves_volumes().is_empty(), "{:?}", staves_volumes());
    let _ = docker(&["rmi", "-f", &tag]);
}

/// Dropping the build's future mid-emerge cancels it; the containers and volumes go within seconds.
#[test]
fn dropping_the_future_mid_emerge_removes_the_containers() {
    if !docker_ready() {
        return;
    }
    let _lock = common::engine_lock();
    let cache = TempVolume::new("async-drop");
    let dir = tempfile::tempdir().unwrap();
    let spec = hello_spec("staves-test/async-drop");
    let tag = format!("{}:{}", spec.name, spec.version);
    let output = dir.path().join("never.tar");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let builder = docker_builder(&cache);
        let request = BuildRequest::new(vec![Output::Docker, Output::OciArchive(output.clone())])
            .jobs(Some(2));
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let options = BuildOptions::default().with_events(Arc::new(move |e: &BuildEvent| {
            let _ = sender.send(e.clone());
        }));
        let task =
            tokio::spawn(
                async move { build_image_async(&spec, &builder, &request, &options).await },
            );
        let mut emerging = false;
        while let Some(event) = receiver.recv().await {
            if matches!(&event, BuildEvent::Log { line, .. } if line.contains(">>> Emerging")) {
                emerging = true;
                break;
            }
        }
        assert!(emerging, "emerge never started");
        assert!(
            !staves_containers().is_empty(),
            "the builder should exist now"
        );
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        // The runtime keeps running; the cleanup runs on a thread of its own either way.
        let dropped = Instant::now();
        let deadline = dropped + Duration::from_secs(10);
        while Instant::now() < deadline
            && !(staves_containers().is_empty() && staves_volumes().is_empty())
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("cleanup after the drop: about {:?}", dropped.elapsed());
    });
    drop(runtime);
    assert!(
        staves_containers().is_empty(),
        "left after 10 s: {:?}",
        staves_containers()
    );
    assert!(
        staves_volumes().is_empty(),
        "left after 10 s: {:?}",
        staves_volumes()
    );
    assert!(!output.exists());
    assert!(!docker(&["image", "inspect", &tag]).status.success());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn mock_rootfs() -> MockBuilder {
    MockBuilder::from_entries(vec![
        MockEntry::Dir {
            path: "bin".into(),
            mode: 0o755,
        },
        MockEntry::File {
            path: "bin/sh".into(),
            mode: 0o755,
            content: b"#!fake\n".to_vec(),
        },
    ])
}

/// The blocking API on a current-thread runtime (what `#[tokio::main(flavor = "current_thread")]` and
/// `#[tokio::test]` give): it used to panic there. A `DockerBuilder` is created and dropped on the runtime too.
#[tokio::test]
async fn blocking_build_inside_a_current_thread_runtime_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("mock.tar");
    let spec = hello_spec("staves-test/blocking-mock");
    let request = BuildRequest::new(vec![Output::OciArchive(archive.clone())]).jobs(Some(1));
    let outcome = build_image(&spec, &mock_rootfs(), &request, &BuildOptions::default()).unwrap();
    assert!(outcome.image.digest.starts_with("sha256:"));
    assert!(archive.exists());

    let socket = format!("unix://{}/no-engine.sock", dir.path().display());
    let builder = DockerBuilder::new(BUILDER_IMAGE)
        .unwrap()
        .docker_host(Some(socket.clone()));
    let err = build_image(&spec, &builder, &request, &BuildOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Engine(_)), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot reach the Docker engine at {socket}: no socket at"
        )),
        "{err}"
    );
    drop(builder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_build_inside_a_multi_thread_runtime_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("mock.tar");
    let spec = hello_spec("staves-test/blocking-mock");
    let request = BuildRequest::new(vec![Output::OciArchive(archive.clone())]).jobs(Some(1));
    let outcome = build_image(&spec, &mock_rootfs(), &request, &BuildOptions::default()).unwrap();
    assert!(outcome.image.digest.starts_with("sha256:"));
    let builder = DockerBuilder::new(BUILDER_IMAGE).unwrap();
    drop(builder);
}
