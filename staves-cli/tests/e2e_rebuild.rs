//! Rebuilds on the real engine: binary packages are reused only when they were built with the environment the spec
//! gives their package now, and a warm build with nothing to compile skips the build-dependency step.
//!
//! Needs the engine and the fixture images (`tests/fixtures/build-images.sh`); with `STAVES_REQUIRE_DOCKER=1` the
//! tests fail instead of skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use support::{BUILDER, PORTAGE, Untag, docker, docker_build, engine_ready, lock};

/// A spec file, a cache volume and an image tag of this test's own; the volume and the tag are removed on drop.
struct Case {
    dir: tempfile::TempDir,
    name: String,
    cache: String,
    tag: String,
}

impl Case {
    fn new(name: &str) -> Self {
        let id = format!("{name}-{}", std::process::id());
        Self {
            dir: tempfile::tempdir().unwrap(),
            name: name.to_owned(),
            cache: format!("staves-e2e-rebuild-{id}"),
            tag: format!("staves-e2e/rebuild-{name}:t{}", std::process::id()),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Build `spec_body` (the image name and tag are added) with `--rebuild`, so the binary package cache is what
    /// is tested, and return the JSON report.
    fn build(&self, spec_body: &str) -> Value {
        let (report, _) = self.build_with(spec_body, &["--rebuild"]);
        report
    }

    /// Build `spec_body` with `extra` flags; return the JSON report and the pid of the `staves` process (its
    /// containers are named `staves-PID-…`).
    fn build_with(&self, spec_body: &str, extra: &[&str]) -> (Value, u32) {
        let (report, pid, _) = self.build_logged(spec_body, extra);
        (report, pid)
    }

    /// [`Case::build_with`], and what the build printed on stderr.
    fn build_logged(&self, spec_body: &str, extra: &[&str]) -> (Value, u32, String) {
        let (repo, version) = self.tag.split_once(':').unwrap();
        let spec = format!("name = '{repo}'\nversion = '{version}'\n{spec_body}");
        std::fs::write(self.path("staves.toml"), spec).unwrap();
        let rootfs = self.path("rootfs.tar");
        let _ = std::fs::remove_file(&rootfs);
        // `--builder IMAGE` in `extra` replaces the fixture builder.
        let (builder, extra) = match extra.iter().position(|a| *a == "--builder") {
            Some(i) => (extra[i + 1], [&extra[..i], &extra[i + 2..]].concat()),
            None => (BUILDER, extra.to_vec()),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_staves"))
            .arg("build")
            .arg("--config")
            .arg(self.path("staves.toml"))
            .args(["--builder", builder, "--portage", PORTAGE])
            .args([
                "--build-cache",
                &self.cache,
                "--jobs",
                "2",
                "--no-ssh",
                "--no-netrc",
            ])
            .arg("--cache-dir")
            .arg(self.path("store"))
            .args(["--output", &format!("rootfs:{}", rootfs.display())])
            .args(["--format", "json"])
            .args(&extra)
            .env_remove("DOCKER_HOST")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}: staves build failed ({:?}):\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        (
            serde_json::from_slice(&out.stdout).unwrap(),
            pid,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `staves cache SUBCOMMAND ARGS --format json` on this case's volume and store; the JSON it printed.
    fn cache(&self, args: &[&str]) -> Value {
        let child = Command::new(env!("CARGO_BIN_EXE_staves"))
            .arg("cache")
            .args(args)
            .args([
                "--build-cache",
                &self.cache,
                "--builder",
                BUILDER,
                "--format",
                "json",
            ])
            .arg("--cache-dir")
            .arg(self.path("store"))
            .env_remove("DOCKER_HOST")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "staves cache {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let left = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("name=staves-{pid}-"),
            "--format",
            "{{.Names}}",
        ]);
        assert_eq!(
            String::from_utf8_lossy(&left.stdout).trim(),
            "",
            "staves cache left a container"
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A file of the last build's rootfs.
    fn rootfs_file(&self, wanted: &str) -> String {
        let file = std::fs::File::open(self.path("rootfs.tar")).unwrap();
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                == wanted
            {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
                return text;
            }
        }
        panic!("{wanted} is not in the rootfs");
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag]);
        let _ = docker(&["volume", "rm", "-f", &self.cache]);
    }
}

/// The cpvs of a report list (`built_from_source` or `installed_from_binary`).
fn cpvs(report: &Value, list: &str) -> Vec<String> {
    report["report"][list]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn step<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["report"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} step in {report}"))
}

const HELLO: &str = "app-misc/hello-1";

/// Seconds since the epoch, as `docker events` takes them.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The containers the engine created between `since` and `until` for the `staves` process `pid`.
fn containers_created(since: f64, until: f64, pid: u32) -> Vec<String> {
    let out = docker(&[
        "events",
        "--since",
        &format!("{:.3}", since - 1.0),
        "--until",
        &format!("{:.3}", until + 1.0),
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        "label=io.staves.build",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|name| name.starts_with(&format!("staves-{pid}-")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_unchanged_spec_creates_no_container_and_a_config_change_keeps_the_layer() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("noop");
    let spec = "packages = ['app-misc/hello']\ncommand = ['/usr/bin/hello']\n";
    let docker_out = ["--output", "docker"];

    let started = unix_now();
    let (first, pid) = case.build_with(spec, &docker_out);
    // The check works: the build itself shows up.
    assert!(!containers_created(started, unix_now(), pid).is_empty());
    assert!(first.get("reused").is_none(), "{first}");
    let first_rootfs = std::fs::read(case.path("rootfs.tar")).unwrap();

    let started = unix_now();
    let (again, pid) = case.build_with(spec, &docker_out);
    assert_eq!(
        containers_created(started, unix_now(), pid),
        Vec::<String>::new()
    );
    assert!(
        again["reused"]["key"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{again}"
    );
    assert_eq!(again["image"]["digest"], first["image"]["digest"]);
    assert_eq!(
        std::fs::read(case.path("rootfs.tar")).unwrap(),
        first_rootfs
    );
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &case.tag]);
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        again["image"]["config_digest"].as_str().unwrap()
    );

    // Only the image config changes: a new image from the stored layer, still without a container.
    let changed = format!("{spec}[annotations]\n'org.opencontainers.image.title' = 'changed'\n");
    let started = unix_now();
    let (config_only, pid) = case.build_with(&changed, &docker_out);
    assert_eq!(
        containers_created(started, unix_now(), pid),
        Vec::<String>::new()
    );
    assert_ne!(config_only["image"]["digest"], first["image"]["digest"]);
    assert_eq!(
        config_only["image"]["layer_digest"],
        first["image"]["layer_digest"]
    );
    let labels = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &case.tag,
    ]);
    assert!(String::from_utf8_lossy(&labels.stdout).contains("changed"));
    let run = docker(&["run", "--rm", &case.tag]);
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "Hello, world");

    // --rebuild builds.
    let started = unix_now();
    let (rebuilt, pid) = case.build_with(spec, &["--rebuild"]);
    assert!(!containers_created(started, unix_now(), pid).is_empty());
    assert!(rebuilt.get("reused").is_none());
}

fn named_env_spec(mark: &str) -> String {
    format!(
        "packages = ['app-misc/hello']\n[env.marks]\nCFLAGS = '-O2 -pipe -D{mark}'\n\
         ['app-misc/hello']\nenv = ['marks']\n"
    )
}

#[test]
fn a_named_env_change_rebuilds_only_its_package_and_flipping_back_reuses_the_first_binary() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("named");

    let cold = case.build(&named_env_spec("MARK_A"));
    assert!(
        cpvs(&cold, "built_from_source").contains(&HELLO.to_owned()),
        "{cold}"
    );
    assert_eq!(step(&cold, "build-deps")["skipped"], false, "{cold}");
    assert!(
        case.rootfs_file("usr/share/hello/build-info.txt")
            .contains("-DMARK_A")
    );

    // Same cache volume, other flags for hello only: hello is built again, nothing else is.
    let changed = case.build(&named_env_spec("MARK_B"));
    let info = case.rootfs_file("usr/share/hello/build-info.txt");
    assert!(
        info.contains("-DMARK_B") && !info.contains("MARK_A"),
        "stale binary package: {info}"
    );
    assert_eq!(cpvs(&changed, "built_from_source"), [HELLO], "{changed}");
    let binary = cpvs(&changed, "installed_from_binary");
    for other in ["dev-libs/libfoo-1", "app-shells/tinysh-1", "virtual/libc-1"] {
        assert!(
            binary.iter().any(|c| c == other),
            "{other} was not reused: {changed}"
        );
    }

    // Back to MARK_A: the first hello binary package matches again, so nothing is compiled and the
    // build-dependency step is skipped, with its reason in the report.
    let back = case.build(&named_env_spec("MARK_A"));
    assert!(
        case.rootfs_file("usr/share/hello/build-info.txt")
            .contains("-DMARK_A")
    );
    assert_eq!(
        cpvs(&back, "built_from_source"),
        Vec::<String>::new(),
        "{back}"
    );
    assert!(
        cpvs(&back, "installed_from_binary").contains(&HELLO.to_owned()),
        "{back}"
    );
    let deps = step(&back, "build-deps");
    assert_eq!(deps["skipped"], true, "{back}");
    assert!(
        deps["reason"].as_str().unwrap().contains("binary package"),
        "{back}"
    );
    assert_eq!(step(&back, "rootfs")["skipped"], false);

    // `staves cache` on this volume: both hello binary packages, with different environment fingerprints.
    let listing = case.cache(&["list", "--binpkgs"]);
    let packages = listing["binpkgs"]["packages"].as_array().unwrap();
    let hellos: Vec<&Value> = packages.iter().filter(|p| p["cpv"] == HELLO).collect();
    assert_eq!(hellos.len(), 2, "{listing}");
    assert_ne!(hellos[0]["fingerprint"], hellos[1]["fingerprint"]);
    assert!(
        hellos
            .iter()
            .all(|p| p["size"].as_u64().unwrap() > 0 && p["build_time"].is_u64())
    );
    let marks: Vec<&str> = hellos
        .iter()
        .map(|p| p["environment"]["CFLAGS"].as_str().unwrap())
        .collect();
    assert!(
        marks.contains(&"-O2 -pipe -DMARK_A") && marks.contains(&"-O2 -pipe -DMARK_B"),
        "{marks:?}"
    );
    assert_eq!(listing["binpkgs"]["builds"], 3);
    let before = packages.len();

    // The last build (MARK_A) used neither the MARK_B hello nor the build-only dependency (its build-dependency
    // step was skipped): keeping what the last build used removes exactly those two.
    let dry = case.cache(&["prune", "--keep-last", "1", "--binpkgs", "--dry-run"]);
    assert_eq!(
        dry["binpkgs"]["removed"].as_array().unwrap().len(),
        2,
        "{dry}"
    );
    assert_eq!(
        case.cache(&["list", "--binpkgs"])["binpkgs"]["packages"]
            .as_array()
            .unwrap()
            .len(),
        before
    );
    let pruned = case.cache(&["prune", "--keep-last", "1", "--binpkgs"]);
    let removed = pruned["binpkgs"]["removed"].as_array().unwrap();
    let mut gone: Vec<(&str, &str)> = removed
        .iter()
        .map(|p| {
            (
                p["cpv"].as_str().unwrap(),
                p["environment"]["CFLAGS"].as_str().unwrap_or(""),
            )
        })
        .collect();
    gone.sort();
    assert_eq!(
        gone,
        [
            (HELLO, "-O2 -pipe -DMARK_B"),
            ("dev-util/buildtool-1", "-O2 -pipe")
        ],
        "{pruned}"
    );
    let after = case.cache(&["list", "--binpkgs"]);
    assert_eq!(
        after["binpkgs"]["packages"].as_array().unwrap().len(),
        before - 2
    );
    // What is left is consistent for Portage: the MARK_A build reuses it all, from binary packages.
    let again = case.build(&named_env_spec("MARK_A"));
    assert_eq!(
        cpvs(&again, "built_from_source"),
        Vec::<String>::new(),
        "{again}"
    );

    let usage = case.cache(&["du", "--binpkgs"]);
    assert!(usage["binpkgs"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["binpkgs"]["packages"].as_u64().unwrap() as usize,
        before - 2,
        "{usage}"
    );
    let cleared = case.cache(&["clear", "--binpkgs"]);
    assert_eq!(
        cleared["binpkgs"]["packages"], usage["binpkgs"]["packages"],
        "{cleared}"
    );
    assert_eq!(
        cleared["binpkgs"]["freed_bytes"], usage["binpkgs"]["bytes"],
        "{cleared}"
    );
    assert_eq!(case.cache(&["du", "--binpkgs"])["binpkgs"]["bytes"], 0);
}

#[test]
fn a_global_env_change_rebuilds_every_package() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("global");
    let spec = |mark: &str| {
        format!("packages = ['app-misc/hello']\n[env]\nCFLAGS = '${{CFLAGS}} -D{mark}'\n")
    };
    case.build(&spec("MARK_A"));
    assert!(
        case.rootfs_file("usr/share/hello/build-info.txt")
            .contains("-DMARK_A")
    );

    let changed = case.build(&spec("MARK_B"));
    let info = case.rootfs_file("usr/share/hello/build-info.txt");
    assert!(
        info.contains("-O2 -pipe -DMARK_B") && !info.contains("MARK_A"),
        "{info}"
    );
    let built = cpvs(&changed, "built_from_source");
    for package in [
        HELLO,
        "dev-libs/libfoo-1",
        "app-shells/tinysh-1",
        "virtual/libc-1",
    ] {
        assert!(
            built.iter().any(|c| c == package),
            "{package} was reused: {changed}"
        );
    }
    assert_eq!(step(&changed, "build-deps")["skipped"], false);
}

/// sha256 of a file, hex.
fn file_sha256(path: &std::path::Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// The packages the direct merge merged, sorted.
fn merged_directly(report: &Value) -> Vec<String> {
    let mut list = cpvs(report, "merged_directly");
    list.sort();
    list
}

#[test]
fn a_warm_build_merges_phase_less_binaries_directly_into_the_same_rootfs_as_emerge() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("direct");
    let spec = "packages = ['app-misc/hello-c', 'app-misc/hello']\n";

    // Cold: everything is compiled, so the direct merge has nothing to do and says why.
    let cold = case.build(spec);
    let direct = step(&cold, "direct-merge");
    assert_eq!(direct["skipped"], true, "{cold}");
    assert!(
        direct["reason"]
            .as_str()
            .unwrap()
            .contains("built from source"),
        "{cold}"
    );
    assert_eq!(merged_directly(&cold), Vec::<String>::new());

    // Warm, every package through emerge: the reference rootfs.
    let (portage, _) = case.build_with(spec, &["--rebuild", "--portage-merge"]);
    assert!(
        portage["report"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["kind"] != "direct-merge"),
        "{portage}"
    );
    assert_eq!(merged_directly(&portage), Vec::<String>::new());
    let reference = file_sha256(&case.path("rootfs.tar"));

    // Warm, with the direct merge: the packages that define no install-time phase skip emerge's merge; glibc
    // (pkg_setup) still goes through emerge. The rootfs is the same, byte for byte, and so is the package list.
    let (warm, _) = case.build_with(spec, &["--rebuild"]);
    assert_eq!(step(&warm, "direct-merge")["skipped"], false, "{warm}");
    assert_eq!(
        merged_directly(&warm),
        [
            "app-misc/hello-1",
            "app-misc/hello-c-1",
            "app-shells/tinysh-1",
            "dev-libs/libfoo-1",
            "virtual/libc-1"
        ],
        "{warm}"
    );
    let mut binary = cpvs(&warm, "installed_from_binary");
    binary.sort();
    let mut expected = cpvs(&portage, "installed_from_binary");
    expected.sort();
    assert_eq!(binary, expected, "{warm}");
    assert!(binary.iter().any(|c| c == "sys-libs/glibc-2.36"), "{warm}");
    assert_eq!(
        warm["report"]["packages"], portage["report"]["packages"],
        "the package database differs"
    );
    assert_eq!(
        file_sha256(&case.path("rootfs.tar")),
        reference,
        "the direct merge gave another rootfs than emerge"
    );
    assert!(
        case.rootfs_file("usr/share/hello/build-info.txt")
            .contains("-O2 -pipe")
    );

    // A builder whose bashrc has a phase hook: Staves cannot know what the hook does without running it, so every
    // package goes through emerge again, with the reason in the log, and the rootfs is still the same.
    let hooked = format!("staves-e2e/hooked-builder:t{}", std::process::id());
    let _untag = Untag(hooked.clone());
    let dockerfile = format!(
        "FROM {BUILDER}\nRUN printf 'post_pkg_preinst() {{ :; }}\\n' >> /etc/portage/bashrc\n"
    );
    docker_build(&hooked, &dockerfile);
    let (hook, _) = case.build_with(spec, &["--rebuild", "--builder", &hooked]);
    assert_eq!(merged_directly(&hook), Vec::<String>::new(), "{hook}");
    assert_eq!(step(&hook, "direct-merge")["skipped"], false, "{hook}");
    assert_eq!(file_sha256(&case.path("rootfs.tar")), reference, "{hook}");

    // A hook file for one package (/etc/portage/env/CATEGORY/PF, sourced by ebuild.sh in its phases): only that
    // package goes through emerge.
    let one = format!("staves-e2e/hook-one-builder:t{}", std::process::id());
    let _untag_one = Untag(one.clone());
    docker_build(
        &one,
        &format!(
            "FROM {BUILDER}\nRUN mkdir -p /etc/portage/env/app-misc && \
             printf 'post_pkg_postinst() {{ :; }}\\n' > /etc/portage/env/app-misc/hello-c-1\n"
        ),
    );
    let (single, _) = case.build_with(spec, &["--rebuild", "--builder", &one]);
    assert_eq!(
        merged_directly(&single),
        [
            "app-misc/hello-1",
            "app-shells/tinysh-1",
            "dev-libs/libfoo-1",
            "virtual/libc-1"
        ],
        "{single}"
    );
    assert_eq!(file_sha256(&case.path("rootfs.tar")), reference, "{single}");
}

/// The blob of a build's layer in the case's local image store.
fn stored_blob(case: &Case, report: &Value) -> PathBuf {
    let digest = report["image"]["layer_digest"].as_str().unwrap();
    case.path("store/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Give a stored blob (read-only) `content`, as damage would.
fn damage_blob(blob: &std::path::Path, content: &[u8]) {
    let mut perms = std::fs::metadata(blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(blob, perms).unwrap();
    std::fs::write(blob, content).unwrap();
}

/// A valid gzip of the tar in the gzip blob `blob` with `from` replaced by `to` (of the same length), exactly as
/// long as `blob`: a tampered layer that passes every size check. It is padded with header comments, on the member
/// of the tar and on empty members after it (a decoder takes comments of at most 64 KiB).
fn tampered_gzip(blob: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    const MAX_COMMENT: usize = 65534;
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(blob)
        .read_to_end(&mut tar)
        .unwrap();
    let at = tar
        .windows(from.len())
        .position(|w| w == from)
        .expect("the text to change is in the layer");
    tar[at..at + from.len()].copy_from_slice(to);
    // A comment of n bytes adds n + 1 (its terminating NUL).
    let gzip = |data: &[u8], comment: Option<usize>| {
        let mut builder = flate2::GzBuilder::new().mtime(0);
        if let Some(len) = comment {
            builder = builder.comment(vec![b'x'; len]);
        }
        let mut encoder = builder.write(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    };
    let empty = gzip(b"", None).len();
    let mut left = blob
        .len()
        .checked_sub(gzip(&tar, None).len())
        .expect("room to pad");
    let mut padding = Vec::new();
    while left > MAX_COMMENT + 1 {
        let absorb = (empty + MAX_COMMENT + 1).min(left - 1);
        padding.extend(gzip(b"", Some(absorb - empty - 1)));
        left -= absorb;
    }
    let mut tampered = gzip(&tar, left.checked_sub(1));
    tampered.extend(padding);
    assert_eq!(tampered.len(), blob.len());
    tampered
}

/// The store warnings of a JSON build report.
fn store_warnings(report: &Value) -> Vec<String> {
    report["store_warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no store_warnings in {report}"))
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect()
}

/// Issue row 3: a stored layer replaced by another valid gzip of the same size (with a changed program) failed the
/// gzip build, and with `--compression zstd` was decompressed, recompressed and served (exit 0, "reused", the
/// tampered program ran), its record then gaining a zstd layer. Now neither compression serves it: the build says
/// so and rebuilds, and the next build is a no-op again.
#[test]
fn a_tampered_stored_layer_is_rebuilt_with_gzip_and_zstd_and_never_served() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("tampered");
    let spec = "packages = ['app-misc/hello']\ncommand = ['/usr/bin/hello']\n";
    let (first, _) = case.build_with(spec, &["--output", "docker"]);
    let blob = stored_blob(&case, &first);
    let tampered = tampered_gzip(
        &std::fs::read(&blob).unwrap(),
        b"Hello, world",
        b"HACKED world",
    );

    for compression in ["gzip", "zstd"] {
        // With gzip the stored blob is served as it is; with zstd its tar is compressed again.
        damage_blob(&blob, &tampered);
        let flags = ["--output", "docker", "--compression", compression];
        let (rebuilt, _, stderr) = case.build_logged(spec, &flags);
        assert!(rebuilt.get("reused").is_none(), "{compression}: {rebuilt}");
        assert!(
            !case.rootfs_file("usr/bin/hello").contains("HACKED"),
            "{compression}: the tampered program reached the rootfs output"
        );
        let run = docker(&["run", "--rm", &case.tag]);
        assert_eq!(
            String::from_utf8_lossy(&run.stdout).trim(),
            "Hello, world",
            "{compression}"
        );
        let warnings = store_warnings(&rebuilt);
        assert_eq!(warnings.len(), 1, "{compression}: {warnings:?}");
        let expected = format!(
            "the stored image for this spec was damaged: blob {} failed verification",
            first["image"]["layer_digest"].as_str().unwrap()
        );
        assert!(
            warnings[0].contains(&expected) && warnings[0].contains("rebuilt"),
            "{compression}: {}",
            warnings[0]
        );
        assert!(
            stderr.contains("warning: local image store") && stderr.contains(&expected),
            "{compression}: the warning is not in the log:\n{stderr}"
        );
        assert!(
            !rebuilt["report"]["steps"].as_array().unwrap().is_empty(),
            "{compression}: no build ran: {rebuilt}"
        );
    }

    // The store was repaired by the rebuild: the next build is a no-op, and says nothing about the store.
    let (again, _) = case.build_with(spec, &["--output", "docker", "--compression", "zstd"]);
    assert!(again["reused"].is_object(), "{again}");
    assert_eq!(store_warnings(&again), Vec::<String>::new());
    let run = docker(&["run", "--rm", &case.tag]);
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "Hello, world");
}

/// Issue row 8: a truncated blob was never repaired (`put_blob` kept the existing file), so every later build of the
/// spec rebuilt without a word. Now the next build says why it rebuilds and repairs the blob; the one after is a
/// no-op.
#[test]
fn a_truncated_stored_blob_is_said_rebuilt_and_repaired() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("truncated");
    let spec = "packages = ['app-misc/hello']\n";
    let (first, _) = case.build_with(spec, &[]);
    let blob = stored_blob(&case, &first);
    let good = std::fs::read(&blob).unwrap();
    damage_blob(&blob, &good[..good.len() / 2]);

    let (rebuilt, _, stderr) = case.build_logged(spec, &[]);
    assert!(rebuilt.get("reused").is_none(), "{rebuilt}");
    let warnings = store_warnings(&rebuilt);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let expected = format!(
        "the stored image for this spec was damaged: blob {} is {} bytes, its record says {}",
        first["image"]["layer_digest"].as_str().unwrap(),
        good.len() / 2,
        good.len()
    );
    assert!(warnings[0].contains(&expected), "{}", warnings[0]);
    assert!(
        stderr.contains(&expected),
        "the warning is not in the log:\n{stderr}"
    );
    // The store holds the rebuilt layer, whole.
    assert_eq!(
        format!("sha256:{}", file_sha256(&stored_blob(&case, &rebuilt))),
        rebuilt["image"]["layer_digest"].as_str().unwrap()
    );

    let (again, _) = case.build_with(spec, &[]);
    assert!(again["reused"].is_object(), "{again}");
    assert_eq!(store_warnings(&again), Vec::<String>::new());
    assert_eq!(again["image"]["digest"], rebuilt["image"]["digest"]);
}
