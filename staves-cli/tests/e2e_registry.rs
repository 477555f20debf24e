//! `--output docker://…` end to end: Debian's `docker-registry` on 127.0.0.1 with TLS (a CA made here with
//! openssl, trusted through /etc/docker/certs.d) and htpasswd Basic auth; `docker login`, `skopeo inspect` and
//! `docker pull` + `docker run` check what Staves pushed. The same registry with token authentication (a Bearer
//! realm served by tests/support/token_server.py, which issues RS256 JWTs the registry verifies) checks the
//! token flow.
//!
//! With `STAVES_REQUIRE_DOCKER=1` (CI) missing tools or images fail the tests instead of skipping them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{BUILDER, PORTAGE, Registry, RegistryAuth, RemoveVolume, Untag, text};

const TOOLS: &[&str] = &[
    "docker",
    "docker-registry",
    "htpasswd",
    "openssl",
    "skopeo",
    "curl",
    "python3",
];

fn ready(need_images: bool) -> bool {
    support::tools_present(TOOLS) && (!need_images || support::engine_ready())
}

fn staves(docker_config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_staves"));
    cmd.env("DOCKER_CONFIG", docker_config)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_HOST")
        .env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// A spec and a tiny rootfs (a static busybox) for `staves assemble`.
fn assemble_case(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/app"), "not a program, only bytes to push\n").unwrap();
    let spec = dir.join("staves.toml");
    std::fs::write(
        &spec,
        "name = 'staves-e2e/pushed'\nversion = '7'\npackages = ['app-misc/hello']\n",
    )
    .unwrap();
    (root, spec)
}

fn assemble(docker_config: &Path, dir: &Path, outputs: &[String], extra: &[&str]) -> Output {
    let (root, spec) = assemble_case(dir);
    let mut cmd = staves(docker_config);
    cmd.arg("assemble")
        .arg("--rootfs")
        .arg(root)
        .arg("--config")
        .arg(spec);
    for output in outputs {
        cmd.args(["--output", output]);
    }
    cmd.args(extra).output().unwrap()
}

/// A real build pushed to a TLS registry with Basic auth: pulled back and run by the engine, inspected with
/// skopeo; a second push of the same image uploads nothing; a failed build pushes nothing.
#[test]
fn build_pushes_to_a_tls_registry_and_the_engine_runs_it() {
    if !ready(true) {
        return;
    }
    let registry = Registry::start();
    let login = registry.login();
    let work = tempfile::tempdir().unwrap();
    let cache = format!("staves-e2e-registry-cache-{}", std::process::id());
    let _volume = RemoveVolume(cache.clone());
    let spec = work.path().join("staves.toml");
    std::fs::write(
        &spec,
        "name = 'staves-e2e/registry-hello'\nversion = '1'\npackages = ['app-misc/hello']\n\
         command = ['/usr/bin/hello']\n",
    )
    .unwrap();
    let destination = format!("docker://{}/staves-e2e/hello:1", registry.address());
    let rootfs = work.path().join("rootfs.tar");
    let build = |spec: &Path, extra: &[&str]| {
        staves(login.path())
            .arg("build")
            .arg("--config")
            .arg(spec)
            .args([
                "--builder",
                BUILDER,
                "--portage",
                PORTAGE,
                "--build-cache",
                &cache,
            ])
            .args(["--jobs", "2", "--format", "json"])
            .args(extra)
            .env("HOME", work.path())
            // The local image store under that home, not the one the test run shares.
            .env("XDG_CACHE_HOME", work.path().join(".cache"))
            .output()
            .unwrap()
    };
    let out = build(
        &spec,
        &[
            "--output",
            &destination,
            "--image-path",
            rootfs.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = report["image"]["digest"].as_str().unwrap().to_owned();
    let pushed = &report["image"]["outputs"][0]["pushed"];
    assert_eq!(pushed["digest"], digest.as_str(), "{report}");
    assert_eq!(
        pushed["destination"],
        format!("{}/staves-e2e/hello:1", registry.address())
    );
    assert!(pushed["uploaded_bytes"].as_u64().unwrap() > 0, "{pushed}");
    // The image's config and layer, and its SBOM referrer's document and empty config.
    assert_eq!(pushed["uploaded_blobs"], 4, "{pushed}");
    assert_eq!(
        pushed["referrers"].as_array().map(Vec::len),
        Some(1),
        "{pushed}"
    );
    assert_eq!(pushed["plain_http"], false, "{pushed}");

    // skopeo sees the same digest; the engine pulls it (trusting the CA through certs.d) and runs it.
    let inspected = registry
        .inspect(login.path(), "staves-e2e/hello:1")
        .expect("skopeo inspect of the pushed image");
    assert_eq!(inspected["Digest"], digest.as_str(), "{inspected}");
    let reference = format!("{}/staves-e2e/hello:1", registry.address());
    let _pulled = Untag(reference.clone());
    let pull = Command::new("docker")
        .env("DOCKER_CONFIG", login.path())
        .args(["pull", &reference])
        .output()
        .unwrap();
    assert!(pull.status.success(), "{}", text(&pull.stderr));
    assert!(
        text(&pull.stdout).contains(&digest),
        "{}",
        text(&pull.stdout)
    );
    let run = Command::new("docker")
        .args(["run", "--rm", &reference])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout).trim(), "Hello, world");

    // The same image again (the unchanged spec, served from the local image store with the same SBOM: the same
    // bytes): nothing is uploaded.
    let again = build(&spec, &["--output", &destination]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(again["reused"].is_object(), "{again}");
    let again = &again["image"];
    assert_eq!(again["digest"], digest.as_str(), "{again}");
    let pushed = &again["outputs"][0]["pushed"];
    assert_eq!(pushed["uploaded_bytes"], 0, "{pushed}");
    assert_eq!(pushed["skipped_blobs"], 4, "{pushed}");
    assert_eq!(
        pushed["skipped_bytes"].as_u64().unwrap(),
        report["image"]["outputs"][0]["pushed"]["uploaded_bytes"]
            .as_u64()
            .unwrap()
    );

    // A build that fails pushes nothing.
    let broken = work.path().join("broken.toml");
    std::fs::write(
        &broken,
        "name = 'staves-e2e/registry-broken'\npackages = ['app-misc/broken']\n",
    )
    .unwrap();
    let failed_destination = format!("docker://{}/staves-e2e/broken:1", registry.address());
    let out = build(&broken, &["--output", &failed_destination]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(registry.catalog(), ["staves-e2e/hello"]);
}

/// Push failures name the registry and the HTTP status, suggest `docker login` on 401, and push nothing.
#[test]
fn push_failures_are_clear_and_push_nothing() {
    if !ready(false) {
        return;
    }
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let no_config = work.path().join("no-docker-config");
    let destination = format!("docker://{}/staves-e2e/denied:1", registry.address());

    // No credentials at all.
    let out = assemble(
        &no_config,
        work.path(),
        std::slice::from_ref(&destination),
        &[],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "the registry {} answered HTTP 401",
            registry.address()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("docker login {}", registry.address())),
        "{err}"
    );

    // Wrong password, from REGISTRY_AUTH_FILE (containers-auth.json, as podman and skopeo write it).
    let auth_file = work.path().join("auth.json");
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
            registry.address(),
            base64_of(&format!("{}:wrong", Registry::USER))
        ),
    )
    .unwrap();
    let (root, spec) = assemble_case(work.path());
    let oci_dir = work.path().join("oci-out");
    let out = staves(&no_config)
        .env("REGISTRY_AUTH_FILE", &auth_file)
        .arg("assemble")
        .arg("--rootfs")
        .arg(&root)
        .arg("--config")
        .arg(&spec)
        .args(["--output", &format!("oci:{}", oci_dir.display())])
        .args(["--output", &destination])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains(&auth_file.display().to_string()), "{err}");
    assert!(err.contains("docker login"), "{err}");
    assert!(
        !oci_dir.exists(),
        "a local output was committed although the push failed"
    );

    // A registry nobody listens on.
    let closed = support::free_port();
    let out = assemble(
        &no_config,
        work.path(),
        &[format!("docker://127.0.0.1:{closed}/staves-e2e/nowhere:1")],
        &[],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot reach the registry 127.0.0.1:{closed}: connection refused"
        )),
        "{err}"
    );

    // A CA that did not sign the registry's certificate.
    let other_ca = support::TestCa::new();
    let ca_dir = work.path().join("other-ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::copy(other_ca.path("ca.pem"), ca_dir.join("ca.crt")).unwrap();
    let out = assemble(
        &no_config,
        work.path(),
        std::slice::from_ref(&destination),
        &["--cert-dir", ca_dir.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "TLS with the registry {} failed",
            registry.address()
        )),
        "{err}"
    );

    // Then the right password, in a --authfile: accepted, and only that one push is in the registry.
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths": {{"https://{}": {{"auth": "{}"}}}}}}"#,
            registry.address(),
            base64_of(&format!("{}:{}", Registry::USER, Registry::PASSWORD))
        ),
    )
    .unwrap();
    let ok_destination = format!("docker://{}/staves-e2e/allowed", registry.address());
    let out = assemble(
        &no_config,
        work.path(),
        &[ok_destination],
        &["--authfile", auth_file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    // No tag given: the spec's version is the tag.
    assert!(
        err.contains(&format!(
            "pushed {}/staves-e2e/allowed:7",
            registry.address()
        )),
        "{err}"
    );
    assert_eq!(registry.catalog(), ["staves-e2e/allowed"]);

    // Two repositories of one registry in one run: the first finds the blobs missing in its repository and uploads
    // them, the second mounts them from the first.
    let first = format!("docker://{}/staves-e2e/one:1", registry.address());
    let second = format!("docker://{}/staves-e2e/two:1", registry.address());
    let out = assemble(
        &no_config,
        work.path(),
        &[first, second],
        &[
            "--authfile",
            auth_file.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (one, two) = (
        &report["outputs"][0]["pushed"],
        &report["outputs"][1]["pushed"],
    );
    assert_eq!(one["uploaded_blobs"], 2, "{one}");
    assert_eq!(two["mounted_blobs"], 2, "{two}");
    assert_eq!(two["uploaded_bytes"], 0, "{two}");
    assert_eq!(one["digest"], two["digest"]);
}

fn base64_of(text: &str) -> String {
    let out = support::run(
        Command::new("sh")
            .arg("-c")
            .arg("printf %s \"$1\" | base64 -w0")
            .arg("sh")
            .arg(text),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `DOCKER_CONFIG` directory in `dir` whose config.json `auths` hold `user:password` for `registry`.
fn docker_config_with_password(dir: &Path, registry: &Registry, password: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
            registry.address(),
            base64_of(&format!("{}:{password}", Registry::USER))
        ),
    )
    .unwrap();
    dir.to_owned()
}

/// Token authentication (a Bearer realm): a real build pushed with the credentials in docker's config.json
/// `auths`, which Staves trades for a JWT at the token service; skopeo (doing the same token dance) reads back the
/// digest Staves reported; the same image again uploads nothing.
#[test]
fn build_pushes_to_a_token_auth_registry() {
    if !ready(true) {
        return;
    }
    let registry = Registry::start_with(RegistryAuth::Token);
    let work = tempfile::tempdir().unwrap();
    let config =
        docker_config_with_password(&work.path().join("docker"), &registry, Registry::PASSWORD);
    let cache = format!("staves-e2e-registry-token-cache-{}", std::process::id());
    let _volume = RemoveVolume(cache.clone());
    let spec = work.path().join("staves.toml");
    std::fs::write(
        &spec,
        "name = 'staves-e2e/token-hello'\nversion = '1'\npackages = ['app-misc/hello']\n\
         command = ['/usr/bin/hello']\n",
    )
    .unwrap();
    // A store of this test's own: the first build runs, the second comes from this store (the same image).
    let store = work.path().join("image-store");
    let destination = format!("docker://{}/staves-e2e/token-hello:1", registry.address());
    let build = |config: &Path| {
        staves(config)
            .arg("build")
            .arg("--config")
            .arg(&spec)
            .args([
                "--builder",
                BUILDER,
                "--portage",
                PORTAGE,
                "--build-cache",
                &cache,
            ])
            .arg("--cache-dir")
            .arg(&store)
            .args(["--jobs", "2", "--format", "json", "--output", &destination])
            .env("HOME", work.path())
            .output()
            .unwrap()
    };

    let out = build(&config);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        registry.logs()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report.get("reused").is_none(),
        "the first build must run: {report}"
    );
    let digest = report["image"]["digest"].as_str().unwrap().to_owned();
    let pushed = &report["image"]["outputs"][0]["pushed"];
    assert_eq!(pushed["digest"], digest.as_str(), "{report}");
    assert_eq!(
        pushed["destination"],
        format!("{}/staves-e2e/token-hello:1", registry.address())
    );
    // The image's config and layer, and its SBOM referrer's document and empty config.
    assert_eq!(pushed["uploaded_blobs"], 4, "{pushed}");
    let uploaded = pushed["uploaded_bytes"].as_u64().unwrap();
    assert!(uploaded > 0, "{pushed}");
    // The registry accepts nothing but tokens: the push went through the token service, which granted the push.
    let token_log = std::fs::read_to_string(&registry.token.as_ref().unwrap().log).unwrap();
    assert!(
        token_log.contains(&format!(
            r#"token for {}: [{{"type": "repository", "name": "staves-e2e/token-hello", "actions": ["pull", "push"]}}]"#,
            Registry::USER
        )),
        "{token_log}"
    );

    let inspected = registry
        .inspect(&config, "staves-e2e/token-hello:1")
        .expect("skopeo inspect of the pushed image");
    assert_eq!(inspected["Digest"], digest.as_str(), "{inspected}");
    assert_eq!(registry.catalog(), ["staves-e2e/token-hello"]);

    // The same image again (from the store), with what `docker login` keeps for a token registry: an identity token
    // (the token service's refresh token), which Staves exchanges for an access token. Every blob is there: nothing
    // is uploaded.
    let login = registry.login();
    let saved = std::fs::read_to_string(login.path().join("config.json")).unwrap();
    assert!(saved.contains("identitytoken"), "{saved}");
    let out = build(login.path());
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        registry.logs()
    );
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        again.get("reused").is_some(),
        "the second build must come from the store: {again}"
    );
    let pushed = &again["image"]["outputs"][0]["pushed"];
    assert_eq!(pushed["digest"], digest.as_str(), "{again}");
    assert_eq!(pushed["uploaded_bytes"], 0, "{pushed}");
    assert_eq!(pushed["uploaded_blobs"], 0, "{pushed}");
    assert_eq!(pushed["skipped_blobs"], 4, "{pushed}");
    assert_eq!(
        pushed["skipped_bytes"].as_u64().unwrap(),
        uploaded,
        "{pushed}"
    );
    let token_log = std::fs::read_to_string(&registry.token.as_ref().unwrap().log).unwrap();
    assert!(
        token_log.contains(r#""POST /token HTTP/1.1" 200"#),
        "no identity token was exchanged: {token_log}"
    );
}

/// Token authentication refuses what it should: a wrong password (the token service answers 401) and no
/// credentials at all (an anonymous token that grants nothing) both end in the registry's 401, a message that names
/// the registry and suggests `docker login`, and nothing pushed; the right password for a repository the account may
/// not push to gets a 401 too, which the message tells apart from a login problem.
#[test]
fn token_auth_push_failures_are_clear_and_push_nothing() {
    if !ready(false) {
        return;
    }
    let registry = Registry::start_with(RegistryAuth::Token);
    let work = tempfile::tempdir().unwrap();
    let destination = format!("docker://{}/staves-e2e/token-denied:1", registry.address());

    let wrong = docker_config_with_password(&work.path().join("wrong"), &registry, "wrong-pass");
    let out = assemble(&wrong, work.path(), std::slice::from_ref(&destination), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "the registry {} answered HTTP 401",
            registry.address()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("docker login {}", registry.address())),
        "{err}"
    );
    assert!(
        err.contains(&wrong.join("config.json").display().to_string()),
        "{err}"
    );
    assert!(!err.contains("accepts these credentials"), "{err}");
    let token_log = std::fs::read_to_string(&registry.token.as_ref().unwrap().log).unwrap();
    assert!(
        token_log.contains("GET /token: wrong credentials"),
        "{token_log}"
    );

    // The right password, but a repository the token service grants nothing on: the registry's 401 is not a
    // login problem, and the message says so.
    let right =
        docker_config_with_password(&work.path().join("right"), &registry, Registry::PASSWORD);
    let outside = format!("docker://{}/outside/app:1", registry.address());
    let out = assemble(&right, work.path(), std::slice::from_ref(&outside), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "the registry {} answered HTTP 401",
            registry.address()
        )),
        "{err}"
    );
    assert!(
        err.contains("the registry's token service accepts these credentials")
            && err.contains("may not be allowed to push to `outside/app`"),
        "{err}"
    );

    let nobody = work.path().join("no-docker-config");
    let out = assemble(
        &nobody,
        work.path(),
        std::slice::from_ref(&destination),
        &[],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "the registry {} answered HTTP 401",
            registry.address()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("docker login {}", registry.address())),
        "{err}"
    );
    assert!(registry.catalog().is_empty(), "{:?}", registry.catalog());
}

/// Token authentication and cross-repository mounts: a mount needs a token for both repositories (`pull` on the
/// source, `push` on the target), with an `auths` password (the token service's GET) and with the identity token
/// `docker login` saved (its POST); the second repository gets every blob mounted, none uploaded.
#[test]
fn token_auth_mounts_blobs_across_repositories() {
    if !ready(false) {
        return;
    }
    let registry = Registry::start_with(RegistryAuth::Token);
    let work = tempfile::tempdir().unwrap();
    let password =
        docker_config_with_password(&work.path().join("docker"), &registry, Registry::PASSWORD);
    let login = registry.login();
    let destination = |repo: &str| format!("docker://{}/staves-e2e/{repo}:1", registry.address());
    let mut digests = Vec::new();
    for (config, first, second) in [
        (password.as_path(), "one", "two"),
        (login.path(), "three", "four"),
    ] {
        let out = assemble(
            config,
            work.path(),
            &[destination(first), destination(second)],
            &["--format", "json"],
        );
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out.stderr),
            registry.logs()
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (one, two) = (
            &report["outputs"][0]["pushed"],
            &report["outputs"][1]["pushed"],
        );
        // The first repository of a run lacks the blobs (a registry keeps blobs per repository): uploaded.
        assert_eq!(one["uploaded_blobs"], 2, "{one}");
        assert_eq!(two["mounted_blobs"], 2, "{two}\n{}", registry.logs());
        assert_eq!(two["uploaded_bytes"], 0, "{two}");
        assert_eq!(one["digest"], two["digest"]);
        digests.push(two["digest"].as_str().unwrap().to_owned());
        let token_log = std::fs::read_to_string(&registry.token.as_ref().unwrap().log).unwrap();
        assert!(
            token_log.contains(&format!(
                r#"{{"type": "repository", "name": "staves-e2e/{first}", "actions": ["pull"]}}"#
            )),
            "no token granted pull on the mount's source: {token_log}"
        );
    }
    let saved = std::fs::read_to_string(login.path().join("config.json")).unwrap();
    assert!(saved.contains("identitytoken"), "{saved}");
    let inspected = registry
        .inspect(&password, "staves-e2e/four:1")
        .expect("skopeo inspect of the mounted image");
    assert_eq!(inspected["Digest"], digests[1].as_str(), "{inspected}");
    assert_eq!(
        registry.catalog(),
        [
            "staves-e2e/four",
            "staves-e2e/one",
            "staves-e2e/three",
            "staves-e2e/two"
        ]
    );
}
