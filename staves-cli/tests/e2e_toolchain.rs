//! `staves build` of compiled packages, end to end: the fixture builder compiles C and C++ with its gcc, the image
//! gets the builder's glibc through `virtual/libc`, and the programs run in the image.
//!
//! What this proves about Staves:
//! - every shared object the image's binaries need is present, checked with the image's own loader as `ldd` runs
//!   it (`LD_TRACE_LOADED_OBJECTS=1 /lib64/ld-linux-x86-64.so.2 FILE`);
//! - the loader finds libraries in `/lib64` and `/usr/lib64` through the image's `/etc/ld.so.cache` (the fixture's
//!   loader is Debian's, whose built-in search path has neither directory);
//! - `stdlib = true` makes a C++ program run; without it the loader reports the missing `libstdc++.so.6`;
//! - CFLAGS from a named env reach the compiler; the locale archive is usable by `setlocale`.
//!
//! The images come from `tests/fixtures/build-images.sh`; `STAVES_TEST_BUILDER` and `STAVES_TEST_PORTAGE` name
//! others (default `staves-test/stage3:latest` and `staves-test/portage:latest`). With `STAVES_REQUIRE_DOCKER=1`
//! (set by `tests/run.sh` in CI) a missing engine or image fails the test instead of skipping it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::{docker, text};

/// The CFLAGS mark the spec sets through the named env `mark`; `hello-c --flags` must print it.
const MARK: &str = "-DSTAVES_E2E_CFLAGS_MARK";

/// The image's loader, at the path the compiled programs ask for (their `PT_INTERP`).
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

fn builder_image() -> String {
    std::env::var("STAVES_TEST_BUILDER").unwrap_or_else(|_| "staves-test/stage3:latest".to_owned())
}

fn portage_image() -> String {
    std::env::var("STAVES_TEST_PORTAGE").unwrap_or_else(|_| "staves-test/portage:latest".to_owned())
}

fn engine_ready() -> bool {
    support::images_present(&[builder_image(), portage_image()])
}

/// The spec of both builds: only `stdlib` differs.
fn spec(name: &str, stdlib: bool) -> String {
    format!(
        "name = 'staves-e2e/{name}'\nversion = 't{pid}'\n\
         packages = ['app-misc/hello-c', 'app-misc/hello-cxx', 'app-shells/tinysh']\n\
         command = ['/usr/bin/hello-c']\nstdlib = {stdlib}\n\
         [env.mark]\nCFLAGS = '-O2 -pipe {MARK}'\n\
         ['app-misc/hello-c']\nenv = ['mark']\n",
        pid = std::process::id()
    )
}

/// Scratch directory, cache volume and image tags of this test; all removed on drop.
struct Scratch {
    dir: tempfile::TempDir,
    cache: String,
    tags: Vec<String>,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            cache: format!("staves-e2e-toolchain-cache-{}", std::process::id()),
            tags: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Build `spec` (image name `staves-e2e/NAME`) into the engine, with its rootfs tar next to it.
    fn build(&mut self, name: &str, stdlib: bool) -> (String, serde_json::Value) {
        let config = self.path(&format!("{name}.toml"));
        std::fs::write(&config, spec(name, stdlib)).unwrap();
        let tag = format!("staves-e2e/{name}:t{}", std::process::id());
        self.tags.push(tag.clone());
        let child = Command::new(env!("CARGO_BIN_EXE_staves"))
            .arg("build")
            .arg("--config")
            .arg(&config)
            .args(["--builder", &builder_image(), "--portage", &portage_image()])
            .args([
                "--build-cache",
                &self.cache,
                "--jobs",
                "2",
                "--no-ssh",
                "--no-netrc",
            ])
            .arg("--image-path")
            .arg(self.path(&format!("{name}.tar")))
            // A local image store of this test's own: it must build, and leave the user's store alone.
            .arg("--cache-dir")
            .arg(self.path("store"))
            .args(["--format", "json"])
            .env_remove("DOCKER_HOST")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        // Staves names its containers `staves-PID-…`; none may outlive the build.
        let left = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("name=staves-{pid}-"),
            "--format",
            "{{.Names}}",
        ]);
        assert_eq!(
            text(&left.stdout).trim(),
            "",
            "the build of {name} left containers behind"
        );
        assert!(
            out.status.success(),
            "staves build of {name} failed ({:?}):\n{}\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        (tag, serde_json::from_slice(&out.stdout).unwrap())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for tag in &self.tags {
            let _ = docker(&["rmi", "-f", tag]);
        }
        let _ = docker(&["volume", "rm", "-f", &self.cache]);
    }
}

/// `docker run --rm [--entrypoint E] [-e ENV] IMAGE ARGS…`.
fn run(image: &str, entrypoint: Option<&str>, env: &[&str], args: &[&str]) -> Output {
    let mut argv = vec!["run", "--rm", "--network", "none"];
    if let Some(e) = entrypoint {
        argv.extend(["--entrypoint", e]);
    }
    for e in env {
        argv.extend(["-e", e]);
    }
    argv.push(image);
    argv.extend(args);
    docker(&argv)
}

/// Whether an ELF file needs shared objects: a 64-bit little-endian ELF with a `DT_NEEDED` entry in its dynamic
/// segment. Static binaries (busybox), static-pie ones (ldconfig) and the loader itself need none.
fn needs_shared_objects(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    // ELFCLASS64, ELFDATA2LSB: what this x86-64 fixture builds.
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let ph = phoff as usize + i * usize::from(phentsize);
        // PT_DYNAMIC = 2; p_offset at +8, p_filesz at +32; entries are (d_tag, d_val) pairs, DT_NEEDED = 1.
        let is_dynamic = elf.get(ph..ph + 4) == Some(&2u32.to_le_bytes()[..]);
        let (Some(offset), Some(size)) = (u64_at(ph + 8), u64_at(ph + 32)) else {
            return false;
        };
        is_dynamic
            && (0..size as usize / 16)
                .map(|k| u64_at(offset as usize + 16 * k))
                .take_while(|tag| matches!(tag, Some(t) if *t != 0))
                .any(|tag| tag == Some(1))
    })
}

/// The regular files of a rootfs tar that need shared objects, as absolute paths.
fn dynamic_elf_files(rootfs: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(rootfs).unwrap());
    let mut found = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if needs_shared_objects(&data) {
            found.push(format!("/{}", path.trim_start_matches("./")));
        }
    }
    found.sort();
    found
}

/// Run the image's loader on every file the way `ldd` does (`LD_TRACE_LOADED_OBJECTS=1 LOADER FILE`: it lists each
/// needed object with where it was found, or `=> not found`). The output has a `== FILE` line before each file's
/// list, and `FAILED FILE` when the loader exits non-zero.
fn loader_lists(image: &str, files: &[String]) -> String {
    let script = format!(
        "for f in \"$@\"; do echo \"== $f\"; LD_TRACE_LOADED_OBJECTS=1 {LOADER} \"$f\" 2>&1 || echo \"FAILED $f\"; done"
    );
    let mut args = vec!["-c", script.as_str(), "sh"];
    args.extend(files.iter().map(String::as_str));
    let out = run(image, Some("/bin/sh"), &[], &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// The `--list` output of one file: its lines between `== FILE` and the next `==`.
fn list_of<'a>(lists: &'a str, file: &str) -> Vec<&'a str> {
    lists
        .lines()
        .skip_while(|l| *l != format!("== {file}"))
        .skip(1)
        .take_while(|l| !l.starts_with("== "))
        .collect()
}

fn assert_resolves(lists: &str, file: &str, soname: &str, path: &str) {
    let list = list_of(lists, file);
    let wanted = format!("{soname} => {path} ");
    assert!(
        list.iter().any(|l| l.trim_start().starts_with(&wanted)),
        "{file}: the loader did not find {soname} at {path}:\n{}",
        list.join("\n")
    );
}

#[test]
fn needs_shared_objects_reads_dt_needed() {
    // A hand-made ELF64 LE header with one PT_DYNAMIC segment holding DT_NEEDED, then DT_NULL.
    let mut elf = vec![0u8; 0x100];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf[64..68].copy_from_slice(&2u32.to_le_bytes()); // p_type = PT_DYNAMIC
    elf[72..80].copy_from_slice(&0xc0u64.to_le_bytes()); // p_offset
    elf[96..104].copy_from_slice(&32u64.to_le_bytes()); // p_filesz
    elf[0xc0..0xc8].copy_from_slice(&1u64.to_le_bytes()); // DT_NEEDED
    assert!(needs_shared_objects(&elf));
    elf[0xc0..0xc8].copy_from_slice(&5u64.to_le_bytes()); // DT_STRTAB only
    assert!(!needs_shared_objects(&elf));
    assert!(!needs_shared_objects(b"#!/bin/sh\necho hi\n"));
}

/// The e2e test: both programs run with `stdlib = true`; without it `hello-cxx` fails for the missing
/// `libstdc++.so.6`. The second build reuses the first one's binary packages, so it costs little.
#[test]
fn compiled_programs_run_with_stdlib_and_cxx_fails_without() {
    if !engine_ready() {
        return;
    }
    let mut scratch = Scratch::new();

    // --- stdlib = true --------------------------------------------------------------------------------------
    let (image, report) = scratch.build("toolchain-stdlib", true);
    let cpvs: Vec<&str> = report["report"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["cpv"].as_str().unwrap())
        .collect();
    for cpv in [
        "app-misc/hello-c-1",
        "app-misc/hello-cxx-1",
        "dev-libs/libfoo-1",
        "sys-libs/glibc-2.36",
    ] {
        assert!(cpvs.contains(&cpv), "{cpv} is not in the image: {cpvs:?}");
    }
    let built = report["report"]["built_from_source"].to_string();
    assert!(built.contains("app-misc/hello-c-1"), "{built}");

    let hello = run(&image, None, &[], &[]);
    assert!(hello.status.success(), "{}", text(&hello.stderr));
    let out = text(&hello.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"Hello from C"), "{out}");
    assert!(lines.contains(&"libfoo says: staves"), "{out}");
    assert!(
        lines.contains(&"locale: C accepted (codeset ANSI_X3.4-1968)"),
        "{out}"
    );

    // The locale archive Staves copied holds C.UTF-8 (the spec's default locale); another locale is refused.
    let utf8 = run(&image, None, &["LANG=C.UTF-8"], &[]);
    assert!(
        text(&utf8.stdout).contains("locale: C.UTF-8 accepted (codeset UTF-8)"),
        "{}{}",
        text(&utf8.stdout),
        text(&utf8.stderr)
    );
    let other = run(&image, None, &["LANG=de_DE.UTF-8"], &[]);
    assert!(
        text(&other.stdout).contains("locale: de_DE.UTF-8 not accepted"),
        "{}",
        text(&other.stdout)
    );

    let flags = run(&image, None, &[], &["--flags"]);
    assert!(flags.status.success(), "{}", text(&flags.stderr));
    assert_eq!(text(&flags.stdout).trim(), format!("-O2 -pipe {MARK}"));

    let cxx = run(&image, Some("/usr/bin/hello-cxx"), &[], &[]);
    assert!(cxx.status.success(), "{}", text(&cxx.stderr));
    assert_eq!(text(&cxx.stdout).trim(), "Hello from C++");

    // Every shared object that the image's binaries need is there, found through the image's loader cache.
    let files = dynamic_elf_files(&scratch.path("toolchain-stdlib.tar"));
    // (libfoo.so.1 uses nothing from libc, so with the profile's --as-needed it needs nothing itself.)
    for wanted in [
        "/usr/bin/hello-c",
        "/usr/bin/hello-cxx",
        "/usr/lib64/libstdc++.so.6",
        "/lib64/libc.so.6",
    ] {
        assert!(
            files.iter().any(|f| f == wanted),
            "{wanted} not among {files:?}"
        );
    }
    let lists = loader_lists(&image, &files);
    assert!(
        !lists.contains("not found") && !lists.contains("FAILED"),
        "a shared object is missing from the image:\n{lists}"
    );
    // Debian's loader searches neither /lib64 nor /usr/lib64 by itself: these come from /etc/ld.so.cache.
    assert_resolves(
        &lists,
        "/usr/bin/hello-c",
        "libfoo.so.1",
        "/usr/lib64/libfoo.so.1",
    );
    assert_resolves(&lists, "/usr/bin/hello-c", "libc.so.6", "/lib64/libc.so.6");
    assert_resolves(
        &lists,
        "/usr/bin/hello-cxx",
        "libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6",
    );
    assert_resolves(
        &lists,
        "/usr/bin/hello-cxx",
        "libgcc_s.so.1",
        "/usr/lib64/libgcc_s.so.1",
    );

    // The configuration behind the cache: env-update's ld.so.conf names both directories.
    let conf = run(
        &image,
        Some("/bin/busybox"),
        &[],
        &["cat", "/etc/ld.so.conf"],
    );
    let conf = text(&conf.stdout);
    let dirs: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        dirs.contains(&"/lib64") && dirs.contains(&"/usr/lib64"),
        "{conf}"
    );

    // --- the same spec without stdlib ----------------------------------------------------------------------
    let (bare, report) = scratch.build("toolchain-bare", false);
    assert_eq!(
        report["report"]["built_from_source"],
        serde_json::json!([]),
        "the second build should reuse the first one's binary packages: {report}"
    );
    let hello = run(&bare, None, &[], &[]);
    assert!(
        text(&hello.stdout).starts_with("Hello from C\n"),
        "{}",
        text(&hello.stderr)
    );
    let cxx = run(&bare, Some("/usr/bin/hello-cxx"), &[], &[]);
    assert!(
        !cxx.status.success(),
        "hello-cxx ran without libstdc++: {}",
        text(&cxx.stdout)
    );
    let err = text(&cxx.stderr);
    assert!(
        err.contains("libstdc++.so.6: cannot open shared object file"),
        "not the loader's message for the missing libstdc++: {err}"
    );
    // The check above sees the gap too: the loader lists libstdc++ as not found for hello-cxx only.
    let files = dynamic_elf_files(&scratch.path("toolchain-bare.tar"));
    let lists = loader_lists(&bare, &files);
    let missing: Vec<&str> = lists.lines().filter(|l| l.contains("not found")).collect();
    assert_eq!(missing.len(), 1, "{lists}");
    assert!(missing[0].contains("libstdc++.so.6"), "{lists}");
    assert!(
        list_of(&lists, "/usr/bin/hello-cxx")
            .iter()
            .any(|l| l.contains("libstdc++.so.6 => not found")),
        "{lists}"
    );
    assert_resolves(
        &lists,
        "/usr/bin/hello-cxx",
        "libgcc_s.so.1",
        "/usr/lib64/libgcc_s.so.1",
    );
}
