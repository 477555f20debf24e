//! Helpers shared by the engine tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// The fixture images `tests/fixtures/build-images.sh` makes.
pub const BUILDER_IMAGE: &str = "staves-test/stage3:latest";
/// The fixture portage snapshot image.
pub const PORTAGE_IMAGE: &str = "staves-test/portage:latest";

/// Whether the engine tests can run. With `STAVES_REQUIRE_DOCKER=1` a missing engine or fixture fails the test.
pub fn docker_ready() -> bool {
    let required = std::env::var("STAVES_REQUIRE_DOCKER").as_deref() == Ok("1");
    let engine = Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let fixtures = engine
        && [BUILDER_IMAGE, PORTAGE_IMAGE].iter().all(|image| {
            Command::new("docker")
                .args(["image", "inspect", image])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
    if !fixtures {
        assert!(
            !required,
            "STAVES_REQUIRE_DOCKER=1 but the engine (docker info: {engine}) or the fixture images are missing; \
             run tests/fixtures/build-images.sh"
        );
        eprintln!(
            "skipping: no Docker engine or fixture images (run tests/fixtures/build-images.sh)"
        );
    }
    fixtures
}

/// Serializes the engine tests of one test binary, so each can check that it left no container behind.
pub fn engine_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Containers carrying the Staves build label that this process created (their names start with its pid).
pub fn staves_containers() -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=io.staves.build",
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    let prefix = format!("staves-{}-", std::process::id());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// A cache volume name unique to this test run, removed on drop.
pub struct TempVolume(pub String);

impl TempVolume {
    pub fn new(tag: &str) -> Self {
        Self(format!("staves-test-{tag}-{}", std::process::id()))
    }
}

impl Drop for TempVolume {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}
