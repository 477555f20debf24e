//! A remote engine over TLS, as the docker CLI reaches one: `DOCKER_HOST=tcp://…`, `DOCKER_TLS_VERIFY=1`,
//! `DOCKER_CERT_PATH` with ca.pem, cert.pem and key.pem. The endpoint is `socat` on 127.0.0.1 terminating TLS (with
//! client-certificate verification) in front of the local Docker socket, so Staves reaches the engine only
//! through the TLS connection.
//!
//! With `STAVES_REQUIRE_DOCKER=1` (CI) missing tools or images fail the tests instead of skipping them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use support::{BUILDER, PORTAGE, TlsEngine, text};

fn ready() -> bool {
    support::tools_present(&["docker", "socat", "openssl"]) && support::engine_ready()
}

/// Removes the image and the cache volume a test made.
struct Cleanup {
    tag: String,
    volume: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.tag])
            .output();
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
    }
}

#[test]
fn hello_builds_on_a_tls_engine_and_a_wrong_client_certificate_is_a_tls_error() {
    if !ready() {
        return;
    }
    let engine = TlsEngine::start();
    let work = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let cleanup = Cleanup {
        tag: format!("staves-e2e/remote-hello:t{id}"),
        volume: format!("staves-e2e-remote-cache-{id}"),
    };
    let spec = work.path().join("staves.toml");
    let (repo, version) = cleanup.tag.split_once(':').unwrap();
    std::fs::write(
        &spec,
        format!(
            "name = '{repo}'\nversion = '{version}'\npackages = ['app-misc/hello']\ncommand = ['/usr/bin/hello']\n"
        ),
    )
    .unwrap();
    let build = |cert_path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_staves"))
            .arg("build")
            .arg("--config")
            .arg(&spec)
            .args(["--builder", BUILDER, "--portage", PORTAGE])
            .args([
                "--build-cache",
                &cleanup.volume,
                "--jobs",
                "2",
                "--format",
                "json",
            ])
            .env("DOCKER_HOST", engine.host())
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", cert_path)
            .env("HOME", work.path())
            // The local image store under that home, not the one the test run shares.
            .env("XDG_CACHE_HOME", work.path().join(".cache"))
            .output()
            .unwrap()
    };

    // A client certificate from another CA: the endpoint refuses it, and the message says so.
    let stranger = support::TestCa::new();
    let (cert, key) = stranger.issue("stranger", false);
    let wrong = work.path().join("wrong-certs");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::copy(engine.cert_path.join("ca.pem"), wrong.join("ca.pem")).unwrap();
    std::fs::copy(cert, wrong.join("cert.pem")).unwrap();
    std::fs::copy(key, wrong.join("key.pem")).unwrap();
    let out = build(&wrong);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "TLS with the Docker engine at {} failed",
            engine.host()
        )),
        "{err}"
    );
    assert!(err.contains("rejected Staves' client certificate"), "{err}");

    // The right certificates: the whole build runs through the TLS endpoint. A ~/.ssh of this machine is not
    // bind-mounted: the engine would read the path on its own host.
    std::fs::create_dir_all(work.path().join(".ssh")).unwrap();
    let out = build(&engine.cert_path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is remote: not mounting ~/.ssh or ~/.netrc"),
        "{}",
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["image"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{report}"
    );
    let run = Command::new("docker")
        .args(["run", "--rm", &cleanup.tag])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout).trim(), "Hello, world");
}

#[test]
fn unsupported_engine_addresses_are_named() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("staves.toml"),
        "name = 'x'\npackages = ['app-misc/hello']\n",
    )
    .unwrap();
    for (host, expect) in [
        (
            "ssh://builder@example.invalid",
            "ssh:// engines are not supported",
        ),
        (
            "tcp://127.0.0.1:1",
            "cannot reach the Docker engine at tcp://127.0.0.1:1",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_staves"))
            .args(["build", "--config"])
            .arg(work.path().join("staves.toml"))
            .args(["--docker-host", host])
            .env_remove("DOCKER_TLS_VERIFY")
            .env("HOME", work.path())
            // The local image store under that home, not the one the test run shares.
            .env("XDG_CACHE_HOME", work.path().join(".cache"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{host}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(expect),
            "{host}: {}",
            text(&out.stderr)
        );
    }
    // TLS on, but DOCKER_CERT_PATH has no certificates.
    let out = Command::new(env!("CARGO_BIN_EXE_staves"))
        .args(["build", "--config"])
        .arg(work.path().join("staves.toml"))
        .env("DOCKER_HOST", "tcp://127.0.0.1:1")
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", work.path())
        .env("HOME", work.path())
        // The local image store under that home, not the one the test run shares.
        .env("XDG_CACHE_HOME", work.path().join(".cache"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("ca.pem") && err.contains("cannot be read"),
        "{err}"
    );
}
