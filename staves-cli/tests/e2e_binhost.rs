//! A shared binary package host end to end: `staves cache export` of a warm cache, served by `python3 -m
//! http.server` in a container of the fixture stage3 image on a Docker network this test creates, and builds with
//! fresh caches that fetch from it (`--binhost http://NAME:PORT --network NET`, or `[build] binhost` in the spec),
//! including the rule that a fetched binary built with other flags than the spec gives its package is never
//! installed.
//!
//! With `STAVES_REQUIRE_DOCKER=1` (CI) missing tools or images fail the tests instead of skipping them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use support::{BUILDER, PORTAGE, docker, lock, text};

fn ready() -> bool {
    support::tools_present(&["docker"]) && support::engine_ready()
}

/// Everything the test creates in the engine, removed on drop (containers first, then the network).
#[derive(Default)]
struct Resources {
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
}

impl Drop for Resources {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        for n in &self.networks {
            let _ = docker(&["network", "rm", n]);
        }
        for v in &self.volumes {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        for i in &self.images {
            let _ = docker(&["rmi", "-f", i]);
        }
    }
}

fn staves(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_staves"));
    cmd.env("HOME", home)
        // The local image store under that home, not the one the test run shares.
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env_remove("DOCKER_HOST");
    cmd
}

fn build(home: &Path, spec: &Path, cache: &str, extra: &[&str]) -> serde_json::Value {
    let out = staves(home)
        .arg("build")
        .arg("--config")
        .arg(spec)
        .args([
            "--builder",
            BUILDER,
            "--portage",
            PORTAGE,
            "--build-cache",
            cache,
        ])
        // The binary package cache is what is tested: the local image store (under HOME) must not serve an
        // image of the same spec without a build.
        .args(["--jobs", "2", "--format", "json", "--rebuild"])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Re-index a binhost directory with Portage's own tool, as its maintainer would after removing a package.
fn reindex(dir: &Path) {
    support::run(
        Command::new("docker")
            .args(["run", "--rm", "-v"])
            .arg(format!("{}:/srv", dir.display()))
            .args([
                BUILDER,
                "sh",
                "-c",
                "PKGDIR=/srv FEATURES=-compress-index emaint binhost --fix",
            ]),
    );
}

/// `staves cache export` of the build cache `volume` into `served`; the packages of its index.
fn export(home: &Path, volume: &str, served: &Path) -> Vec<String> {
    let out = staves(home)
        .args([
            "cache",
            "export",
            "--build-cache",
            volume,
            "--builder",
            BUILDER,
            "--format",
            "json",
        ])
        .arg(served)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let export: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    strings(&export["packages"])
}

/// Serve `dir` over HTTP (`python3 -m http.server` in a container of the fixture stage3 image) on a Docker network
/// of its own; both are added to `res`. The binhost URL and the network name.
fn serve(res: &mut Resources, dir: &Path, name: &str) -> (String, String) {
    let id = std::process::id();
    let network = format!("staves-e2e-binhost-net-{name}-{id}");
    let server = format!("staves-e2e-binhost-{name}-{id}");
    support::run(Command::new("docker").args(["network", "create", &network]));
    res.networks.push(network.clone());
    res.containers.push(server.clone());
    support::run(
        Command::new("docker")
            .args(["run", "-d", "--name", &server, "--network", &network, "-v"])
            .arg(format!("{}:/srv:ro", dir.display()))
            .args([
                BUILDER,
                "python3",
                "-m",
                "http.server",
                "8080",
                "--directory",
                "/srv",
            ]),
    );
    let probe = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/Packages')";
    let mut up = false;
    for _ in 0..100 {
        if docker(&["exec", &server, "python3", "-c", probe])
            .status
            .success()
        {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        up,
        "the binhost server did not come up: {}",
        text(&docker(&["logs", &server]).stderr)
    );
    (format!("http://{server}:8080"), network)
}

#[test]
fn a_fresh_cache_builds_from_the_binhost_and_only_what_it_lacks_from_source() {
    if !ready() {
        return;
    }
    let _lock = lock();
    let id = std::process::id();
    let mut res = Resources::default();
    let work = tempfile::tempdir().unwrap();
    let tag = format!("staves-e2e/binhost-hello:t{id}");
    res.images.push(tag.clone());
    let spec = work.path().join("staves.toml");
    let (repo, version) = tag.split_once(':').unwrap();
    std::fs::write(
        &spec,
        format!("name = '{repo}'\nversion = '{version}'\npackages = ['app-misc/hello']\ncommand = ['/usr/bin/hello']\n"),
    )
    .unwrap();

    // 1. A warm cache, exported as a binhost.
    let warm = format!("staves-e2e-binhost-warm-{id}");
    res.volumes.push(warm.clone());
    let cold_oci = format!("oci:{}", work.path().join("cold-oci").display());
    let cold = build(work.path(), &spec, &warm, &["--output", &cold_oci]);
    let built: Vec<String> = strings(&cold["report"]["built_from_source"]);
    assert!(built.contains(&"app-misc/hello-1".to_owned()), "{built:?}");
    let served = work.path().join("binhost");
    let exported = export(work.path(), &warm, &served);
    assert!(
        exported.iter().any(|p| p.starts_with("app-misc/hello-1")),
        "{exported:?}"
    );
    let index = std::fs::read_to_string(served.join("Packages")).unwrap();
    assert!(index.contains("CPV: app-misc/hello-1"), "{index}");

    // 2. Served over HTTP from a container on a network of this test's own.
    let (url, network) = serve(&mut res, &served, "plain");

    // 3. A fresh cache: everything comes from the binhost, nothing is compiled, and the image runs.
    let fresh = format!("staves-e2e-binhost-fresh-{id}");
    res.volumes.push(fresh.clone());
    let report = build(
        work.path(),
        &spec,
        &fresh,
        &["--binhost", &url, "--network", &network],
    );
    let built = strings(&report["report"]["built_from_source"]);
    assert!(built.is_empty(), "built from source: {built:?}");
    let fetched = strings(&report["report"]["fetched_from_binhost"]);
    assert!(
        fetched.contains(&"app-misc/hello-1".to_owned()),
        "{fetched:?}"
    );
    assert_eq!(fetched.len(), exported.len(), "{fetched:?} vs {exported:?}");
    let run = docker(&["run", "--rm", &tag]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout).trim(), "Hello, world");
    // The same image as the one built from source.
    assert_eq!(report["image"]["digest"], cold["image"]["digest"]);

    // 4. The binhost loses one package: that one is built from source, the rest still come from the binhost.
    let hello_dir = served.join("app-misc/hello");
    std::fs::remove_dir_all(&hello_dir).unwrap();
    reindex(&served);
    let index = std::fs::read_to_string(served.join("Packages")).unwrap();
    assert!(!index.contains("CPV: app-misc/hello-1"), "{index}");
    let fresher = format!("staves-e2e-binhost-fresher-{id}");
    res.volumes.push(fresher.clone());
    let report = build(
        work.path(),
        &spec,
        &fresher,
        &["--binhost", &url, "--network", &network],
    );
    assert_eq!(
        strings(&report["report"]["built_from_source"]),
        ["app-misc/hello-1"]
    );
    let fetched = strings(&report["report"]["fetched_from_binhost"]);
    assert!(
        !fetched.contains(&"app-misc/hello-1".to_owned()),
        "{fetched:?}"
    );
    assert_eq!(fetched.len(), exported.len() - 1, "{fetched:?}");
}

/// A spec with `CFLAGS` carrying `-D{mark}` for `app-misc/hello` (which writes its CFLAGS to build-info.txt) and
/// `app-misc/hello-c` (whose `--flags` prints the CFLAGS it was compiled with), through a named env; `extra` is
/// appended.
fn marked_spec(tag: &str, mark: &str, extra: &str) -> String {
    let (repo, version) = tag.split_once(':').unwrap();
    format!(
        "name = '{repo}'\nversion = '{version}'\npackages = ['app-misc/hello', 'app-misc/hello-c']\n\
         command = ['/usr/bin/hello-c']\n\
         [env.marks]\nCFLAGS = '-O2 -pipe -D{mark}'\n\
         ['app-misc/hello']\nenv = ['marks']\n['app-misc/hello-c']\nenv = ['marks']\n{extra}"
    )
}

/// `hello-c --flags` in the image `tag`, and hello's build-info.txt in the rootfs tar `rootfs`.
fn flags_of(tag: &str, rootfs: &Path) -> (String, String) {
    let run = docker(&["run", "--rm", tag, "--flags"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let mut archive = tar::Archive::new(std::fs::File::open(rootfs).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            == "usr/share/hello/build-info.txt"
        {
            let mut info = String::new();
            std::io::Read::read_to_string(&mut entry, &mut info).unwrap();
            return (text(&run.stdout).trim().to_owned(), info);
        }
    }
    panic!("no build-info.txt in {}", rootfs.display());
}

/// The environment-fingerprint rule holds for fetched binaries: a binhost's packages built with `-DMARK_A` are
/// installed by a build whose spec gives them `-DMARK_A`, and never by one that gives two of them `-DMARK_B`: those
/// two are built from source, the rest still come from the binhost. The second build takes its binhost from the
/// spec's `[build] binhost`.
#[test]
fn fetched_binaries_built_with_other_flags_are_never_installed() {
    if !ready() {
        return;
    }
    let _lock = lock();
    let id = std::process::id();
    let mut res = Resources::default();
    let work = tempfile::tempdir().unwrap();
    let tag = format!("staves-e2e/binhost-marks:t{id}");
    res.images.push(tag.clone());
    let spec = work.path().join("staves.toml");
    let rootfs = work.path().join("rootfs.tar");
    let outputs = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--output".into(),
            "docker".into(),
            "--output".into(),
            format!("rootfs:{}", rootfs.display()),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    };
    let build_with = |volume: &str, extra: &[&str]| {
        let args = outputs(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        build(work.path(), &spec, volume, &args)
    };
    let marked = ["app-misc/hello-1", "app-misc/hello-c-1"];
    let unmarked = ["dev-libs/libfoo-1", "app-shells/tinysh-1", "virtual/libc-1"];

    // 1. A cache warmed with MARK_A, exported and served.
    std::fs::write(&spec, marked_spec(&tag, "MARK_A", "")).unwrap();
    let warm = format!("staves-e2e-binhost-marks-warm-{id}");
    res.volumes.push(warm.clone());
    let cold = build_with(&warm, &[]);
    let built = strings(&cold["report"]["built_from_source"]);
    for cpv in marked.iter().chain(&unmarked) {
        assert!(built.iter().any(|b| b == cpv), "{cpv} not built: {built:?}");
    }
    let served = work.path().join("binhost");
    let exported = export(work.path(), &warm, &served);
    for cpv in &marked {
        assert!(
            exported.iter().any(|p| p.starts_with(cpv)),
            "{cpv}: {exported:?}"
        );
    }
    let (url, network) = serve(&mut res, &served, "marks");

    // 2. Same flags, fresh cache: everything comes from the binhost (the check accepts fetched binaries whose
    // recorded environment matches), and the image has the MARK_A binaries.
    let same = format!("staves-e2e-binhost-marks-same-{id}");
    res.volumes.push(same.clone());
    let report = build_with(&same, &["--binhost", &url, "--network", &network]);
    assert_eq!(
        strings(&report["report"]["built_from_source"]),
        Vec::<String>::new(),
        "{report}"
    );
    let fetched = strings(&report["report"]["fetched_from_binhost"]);
    let binary = strings(&report["report"]["installed_from_binary"]);
    let from_binhost = strings(&report["report"]["installed_from_binhost"]);
    for cpv in marked.iter().chain(&unmarked) {
        assert!(
            fetched.iter().any(|f| f == cpv),
            "{cpv} not fetched: {fetched:?}"
        );
        assert!(
            binary.iter().any(|b| b == cpv),
            "{cpv} not from a binary: {binary:?}"
        );
        assert!(
            from_binhost.iter().any(|b| b == cpv),
            "{cpv} not reported as installed from the binhost: {report}"
        );
    }
    let (flags, info) = flags_of(&tag, &rootfs);
    assert_eq!(flags, "-O2 -pipe -DMARK_A");
    assert!(info.contains("-DMARK_A"), "{info}");

    // 3. MARK_B for hello and hello-c, fresh cache, the binhost from the spec's [build] table: the two marked
    // packages are built from source with MARK_B, everything else still comes from the binhost.
    let build_table = format!("[build]\nbinhost = ['{url}']\n");
    std::fs::write(&spec, marked_spec(&tag, "MARK_B", &build_table)).unwrap();
    let other = format!("staves-e2e-binhost-marks-other-{id}");
    res.volumes.push(other.clone());
    let report = build_with(&other, &["--network", &network]);
    let mut built = strings(&report["report"]["built_from_source"]);
    built.sort();
    assert_eq!(built, marked, "{report}");
    let binary = strings(&report["report"]["installed_from_binary"]);
    for cpv in &marked {
        assert!(
            !binary.iter().any(|b| b == cpv),
            "{cpv} was installed from a MARK_A binary: {report}"
        );
    }
    let fetched = strings(&report["report"]["fetched_from_binhost"]);
    let from_binhost = strings(&report["report"]["installed_from_binhost"]);
    // The MARK_A binaries of the marked packages are still downloaded (their record is inside the package), then
    // masked and rebuilt: fetched, but not installed from the binhost.
    for cpv in &marked {
        assert!(
            fetched.iter().any(|f| f == cpv),
            "{cpv} not fetched: {report}"
        );
        assert!(
            !from_binhost.iter().any(|f| f == cpv),
            "{cpv} was masked and built from source, yet reported as installed from the binhost: {report}"
        );
    }
    for cpv in &unmarked {
        assert!(
            fetched.iter().any(|f| f == cpv),
            "{cpv} not fetched: {report}"
        );
        assert!(
            binary.iter().any(|b| b == cpv),
            "{cpv} not reused: {report}"
        );
        assert!(
            from_binhost.iter().any(|f| f == cpv),
            "{cpv} not reported as installed from the binhost: {report}"
        );
    }
    // The numbers say the same: the marked packages were built from source instead.
    let used = &report["report"]["binhost_use"];
    assert_eq!(used["fetched"], fetched.len(), "{report}");
    assert_eq!(used["installed"], from_binhost.len(), "{report}");
    assert_eq!(used["built_from_source"], marked.len(), "{report}");
    assert_eq!(
        used["not_needed"],
        fetched.len() - from_binhost.len() - marked.len(),
        "{report}"
    );
    let fetch = report["report"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "fetch-binaries")
        .unwrap_or_else(|| panic!("no fetch step from the spec's binhost: {report}"));
    assert_eq!(fetch["skipped"], false, "{report}");
    let (flags, info) = flags_of(&tag, &rootfs);
    assert_eq!(flags, "-O2 -pipe -DMARK_B", "stale binary package");
    assert!(
        info.contains("-DMARK_B") && !info.contains("MARK_A"),
        "stale binary package: {info}"
    );
}

#[test]
fn cache_export_errors_are_clear() {
    if !ready() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = staves(work.path())
        .args([
            "cache",
            "export",
            "--build-cache",
            "staves-e2e-no-such-volume",
            "--builder",
            BUILDER,
        ])
        .arg(work.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("there is no build cache volume `staves-e2e-no-such-volume`"),
        "{}",
        text(&out.stderr)
    );
    assert!(!work.path().join("out").exists());
    // A directory with other files in it is never overwritten.
    std::fs::write(work.path().join("notes.txt"), "mine").unwrap();
    let out = staves(work.path())
        .args([
            "cache",
            "export",
            "--build-cache",
            "staves-e2e-no-such-volume",
        ])
        .arg(work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
    // A binhost URL Portage cannot use is a usage error.
    let out = staves(work.path())
        .args(["build", "--binhost", "binhost:8080"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no scheme"),
        "{}",
        text(&out.stderr)
    );
}
