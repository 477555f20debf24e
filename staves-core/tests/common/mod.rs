//! Helpers shared by the integration tests: fixtures for the image writer, and engine checks.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Deterministic pseudo-random bytes (xorshift), so fixtures are the same on every machine.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn write_file(path: &Path, data: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A long path component, so the entry needs a PAX `path` record.
pub fn long_name() -> String {
    format!("deep/{}/file", "n".repeat(120))
}

/// A small rootfs with every kind of entry a layer keeps. Modes are set explicitly; owners are the test's user.
pub fn fixture_dir(root: &Path) {
    mkdir(root, 0o755);
    mkdir(&root.join("bin"), 0o755);
    write_file(&root.join("bin/tool"), &pseudo_random(3 << 20, 7), 0o755);
    std::fs::hard_link(root.join("bin/tool"), root.join("bin/tool-link")).unwrap();
    std::os::unix::fs::symlink("tool", root.join("bin/sym")).unwrap();
    std::os::unix::fs::symlink("/bin/tool", root.join("bin/abs")).unwrap();
    mkdir(&root.join("a"), 0o750);
    write_file(&root.join("a/x"), b"in a\n", 0o644);
    write_file(&root.join("a-b"), b"a-b\n", 0o600);
    write_file(&root.join("a.c"), &b"text line\n".repeat(5000), 0o644);
    write_file(&root.join("empty"), b"", 0o644);
    write_file(&root.join("usr/bin/su"), b"setuid\n", 0o4755);
    mkdir(&root.join("tmp"), 0o1777);
    mkdir(&root.join("var/empty"), 0o755);
    write_file(&root.join(long_name()), b"long\n", 0o644);
    write_file(&root.join("etc/.wh.gone"), b"", 0o644);
    let status = Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(root.join("fifo"), std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Raw tar building, so hostile and hand-ordered archives can be written (the tar crate refuses `..`).
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        Self { bytes: Vec::new() }
    }

    fn header(name: &[u8], kind: tar::EntryType, mode: u32, size: u64, link: &[u8]) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().unwrap();
            u.name[..name.len()].copy_from_slice(name);
            u.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_username("someone").unwrap();
        h.set_groupname("somegroup").unwrap();
        h
    }

    pub fn push(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = Self::header(name.as_bytes(), tar::EntryType::Directory, mode, 0, b"");
        self.push(h, b"")
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        let h = Self::header(
            name.as_bytes(),
            tar::EntryType::Regular,
            mode,
            data.len() as u64,
            b"",
        );
        self.push(h, data)
    }

    pub fn file_owned(
        &mut self,
        name: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Self::header(
            name.as_bytes(),
            tar::EntryType::Regular,
            mode,
            data.len() as u64,
            b"",
        );
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.push(h, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = Self::header(
            name.as_bytes(),
            tar::EntryType::Symlink,
            0o777,
            0,
            target.as_bytes(),
        );
        self.push(h, b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = Self::header(
            name.as_bytes(),
            tar::EntryType::Link,
            0o644,
            0,
            target.as_bytes(),
        );
        self.push(h, b"")
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

/// One listed tar entry: `(path, type, mode, uid, gid, mtime, size, link)`.
pub type Listed = (String, char, u32, u64, u64, u64, u64, String);

/// Read a plain tar and list each entry.
pub fn list_tar(bytes: &[u8]) -> Vec<Listed> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                h.entry_type().as_byte() as char,
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                e.size(),
                e.link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// Names in `dir`, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The fixture images `tests/fixtures/build-images.sh` makes (`STAVES_TEST_BUILDER` at build time names another).
pub const BUILDER_IMAGE: &str = match option_env!("STAVES_TEST_BUILDER") {
    Some(image) => image,
    None => "staves-test/stage3:latest",
};
/// The fixture portage snapshot image (`STAVES_TEST_PORTAGE` at build time names another).
pub const PORTAGE_IMAGE: &str = match option_env!("STAVES_TEST_PORTAGE") {
    Some(image) => image,
    None => "staves-test/portage:latest",
};

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

/// Volumes carrying the Staves build label that this process created (their names start with its pid).
pub fn staves_volumes() -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "volume",
            "ls",
            "--filter",
            "label=io.staves.build",
            "--format",
            "{{.Name}}",
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

/// Run `cmd` with `input` on its stdin, capturing stdout and stderr.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}
