//! How `staves build` ends when it is told to stop: SIGINT, SIGTERM and SIGHUP at three moments (container setup,
//! emerge, the image write), a second signal, SIGKILL, and what `staves prune` and the next build do about it.
//!
//! Each case asserts the exit code, the message, that no container or volume of the build remains, and that the
//! tag and the output file are either complete or absent. The moments come from the build's JSON log
//! (`--log-format json`), and two of them from the test-only pause `STAVES_TEST_PAUSE=setup|write`, which holds
//! the build at that point for a few seconds (a signal ends the pause).
//!
//! They need the engine and the fixture images; with `STAVES_REQUIRE_DOCKER=1` they fail instead of skipping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use support::{BUILDER, PORTAGE, docker, engine_ready, lock};

/// Only guards against a hung build; never an assertion on speed.
const HANG: Duration = Duration::from_secs(600);
const SIGNALS: [&str; 3] = ["INT", "TERM", "HUP"];

fn lines_of(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Containers and volumes made by the `staves` process `pid` (they carry its pid as owner label).
fn resources_of(pid: u32) -> Vec<String> {
    let filter = format!("label=io.staves.owner.pid={pid}");
    let mut found: Vec<String> = lines_of(&docker(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Names}}",
    ]))
    .into_iter()
    .map(|n| format!("container {n}"))
    .collect();
    found.extend(
        lines_of(&docker(&[
            "volume",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ]))
        .into_iter()
        .map(|n| format!("volume {n}")),
    );
    found
}

fn send(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {signal} {pid}");
}

/// A spec, an output directory, a cache volume and a tag for one test; removed on drop.
struct Case {
    dir: tempfile::TempDir,
    cache: String,
    tag: String,
}

impl Case {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        let tag = format!("staves-e2e/{name}:t{pid}");
        let (repo, version) = tag.split_once(':').unwrap();
        std::fs::write(
            dir.path().join("staves.toml"),
            format!(
                "name = '{repo}'\nversion = '{version}'\npackages = ['app-misc/hello']\n\
                 command = ['/usr/bin/hello']\n"
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Self {
            dir,
            cache: format!("staves-e2e-cache-{name}-{pid}"),
            tag,
        }
    }

    fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn archive(&self) -> PathBuf {
        self.out_dir().join("image.tar")
    }

    fn command(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_staves"));
        cmd.arg(subcommand)
            .env("HOME", self.dir.path())
            // The local image store under that home, not the one the test run shares.
            .env("XDG_CACHE_HOME", self.dir.path().join(".cache"))
            .env_remove("DOCKER_HOST")
            .env_remove("STAVES_TEST_PAUSE");
        cmd
    }

    /// `staves build` to the engine and to an OCI archive, with the JSON log on stderr.
    fn build_command(&self, pause: Option<&str>) -> Command {
        let mut cmd = self.command("build");
        cmd.arg("--config")
            .arg(self.dir.path().join("staves.toml"))
            .args([
                "--builder",
                BUILDER,
                "--portage",
                PORTAGE,
                "--build-cache",
                &self.cache,
                "--jobs",
                "2",
                "--log-format",
                "json",
                "--format",
                "json",
                "--output",
                "docker",
            ])
            .arg("--output")
            .arg(format!("oci-archive:{}", self.archive().display()));
        if let Some(point) = pause {
            cmd.env("STAVES_TEST_PAUSE", point);
        }
        cmd
    }

    fn start(&self, pause: Option<&str>) -> Running {
        Running::spawn(self.build_command(pause))
    }

    /// A whole build, then its tag removed: the image ID a later build of the case loads again (the same inputs
    /// give the same image), which the engine no longer has.
    fn build_and_untag(&self) -> String {
        let (status, stdout, log) = self.start(None).finish();
        assert_eq!(status.code(), Some(0), "{}", log.join("\n"));
        let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
        let image_id = report["image"]["config_digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let _ = docker(&["rmi", &self.tag]);
        std::fs::remove_file(self.archive()).unwrap_or_default();
        assert!(!docker(&["image", "inspect", &image_id]).status.success());
        image_id
    }

    /// The names in the output directory.
    fn out_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.out_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn tag_exists(&self) -> bool {
        docker(&["image", "inspect", &self.tag]).status.success()
    }

    /// No output and no temporary file next to it.
    fn assert_no_output(&self) {
        let left: Vec<_> = std::fs::read_dir(self.out_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "files left in the output directory: {left:?}"
        );
        assert!(!self.tag_exists(), "{} was tagged", self.tag);
    }

    /// Either everything the build reports exists and is complete, or nothing does.
    fn assert_all_or_nothing(&self, status: ExitStatus, stdout: &[u8]) {
        if status.code() == Some(0) {
            let report: serde_json::Value = serde_json::from_slice(stdout).unwrap();
            let id = report["image"]["config_digest"].as_str().unwrap();
            let inspect = docker(&["image", "inspect", "--format", "{{.Id}}", &self.tag]);
            assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), id);
            assert_complete_archive(&self.archive());
            let names: Vec<_> = std::fs::read_dir(self.out_dir())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["image.tar"], "temporary files were left");
        } else {
            assert_eq!(status.code(), Some(4), "{status:?}");
            self.assert_no_output();
        }
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag]);
        let _ = docker(&["volume", "rm", "-f", &self.cache]);
    }
}

fn assert_complete_archive(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    let names: Vec<String> = tar::Archive::new(file)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    for wanted in ["index.json", "manifest.json", "oci-layout"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing: {names:?}"
        );
    }
}

/// A running `staves build` whose JSON log lines arrive on a channel.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for a log event matching `wanted`; panics if the build ends first.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&serde_json::Value) -> bool) {
        let started = Instant::now();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if serde_json::from_str(&line).is_ok_and(|v| wanted(&v)) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the build ended before {what}:\n{}", self.seen.join("\n"))
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            assert!(
                started.elapsed() < HANG,
                "no {what}:\n{}",
                self.seen.join("\n")
            );
        }
    }

    fn wait_for_emerge(&mut self) {
        self.wait_for("emerge", |v| {
            v["kind"] == "log"
                && v["line"]
                    .as_str()
                    .is_some_and(|l| l.contains(">>> Emerging"))
        });
    }

    fn wait_for_pause(&mut self, point: &str) {
        let message = format!("test pause at {point}");
        self.wait_for(&message.clone(), move |v| {
            v["kind"] == "preparing"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&message))
        });
    }

    /// Wait for the exit; returns the status, stdout and every stderr line.
    fn finish(mut self) -> (ExitStatus, Vec<u8>, Vec<String>) {
        let mut stdout = Vec::new();
        std::io::Read::read_to_end(self.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        (status, stdout, self.seen)
    }
}

/// The build ended interrupted: exit 4, the signal acknowledged, an error that says nothing was written.
fn assert_interrupted(status: ExitStatus, log: &[String], signal: &str) {
    assert_eq!(status.code(), Some(4), "{status:?}\n{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("\"kind\":\"signal\"")
            && l.contains(&format!("received SIG{signal}: stopping the build"))),
        "{}",
        log.join("\n")
    );
    let error = log
        .iter()
        .find(|l| l.contains("\"kind\":\"error\""))
        .unwrap_or_else(|| panic!("no error line:\n{}", log.join("\n")));
    assert!(
        error.contains(
            "the build was interrupted; its containers and volumes were removed and no image was written"
        ),
        "{error}"
    );
}

#[test]
fn a_signal_during_container_setup_leaves_nothing() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("sig-setup");
    for signal in SIGNALS {
        // Between the snapshot's create and the builder's, held there by the test pause.
        let mut build = case.start(Some("setup"));
        build.wait_for_pause("setup");
        let pid = build.pid();
        assert!(
            !resources_of(pid).is_empty(),
            "the snapshot should exist now"
        );
        send(pid, signal);
        let (status, _, log) = build.finish();
        assert_interrupted(status, &log, signal);
        assert_eq!(
            resources_of(pid),
            Vec::<String>::new(),
            "SIG{signal} at setup"
        );
        case.assert_no_output();

        // The first 50 ms and a little after: whatever exists then (maybe only a create request in flight).
        for delay in [0u64, 10, 25, 50, 100, 200, 400] {
            let build = case.start(None);
            let pid = build.pid();
            std::thread::sleep(Duration::from_millis(delay));
            send(pid, signal);
            let (status, _, log) = build.finish();
            // Before the handler is installed the default action ends the process; nothing exists yet then.
            if status.signal().is_none() {
                assert_interrupted(status, &log, signal);
            }
            assert_eq!(
                resources_of(pid),
                Vec::<String>::new(),
                "SIG{signal} {delay} ms after the start ({status:?}):\n{}",
                log.join("\n")
            );
            case.assert_no_output();
        }
    }
}

#[test]
fn a_signal_during_emerge_leaves_nothing() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("sig-emerge");
    for signal in SIGNALS {
        let mut build = case.start(None);
        build.wait_for_emerge();
        let pid = build.pid();
        send(pid, signal);
        let (status, _, log) = build.finish();
        assert_interrupted(status, &log, signal);
        assert_eq!(
            resources_of(pid),
            Vec::<String>::new(),
            "SIG{signal} in emerge"
        );
        case.assert_no_output();
    }
}

#[test]
fn a_signal_during_the_image_write_leaves_all_or_nothing() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("sig-write");
    // A whole build first: its image is what the interrupted builds load (the same inputs give the same image).
    let (status, stdout, log) = case.start(None).finish();
    assert_eq!(status.code(), Some(0), "{}", log.join("\n"));
    case.assert_all_or_nothing(status, &stdout);
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let image_id = report["image"]["config_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    for signal in SIGNALS {
        let _ = docker(&["rmi", &case.tag]);
        std::fs::remove_file(case.archive()).unwrap_or_default();
        assert!(!docker(&["image", "inspect", &image_id]).status.success());
        // With every output written to temporary files and the image loaded untagged, before the commit.
        let mut build = case.start(Some("write"));
        build.wait_for_pause("write");
        let pid = build.pid();
        send(pid, signal);
        let (status, _, log) = build.finish();
        assert_interrupted(status, &log, signal);
        assert_eq!(
            resources_of(pid),
            Vec::<String>::new(),
            "SIG{signal} in the write"
        );
        case.assert_no_output();
        assert!(
            !docker(&["image", "inspect", &image_id]).status.success(),
            "the untagged image loaded before SIG{signal} was kept"
        );
    }
    // No pause: the signal lands somewhere in the write, or after the commit. Either way the report is true.
    // (--rebuild: the unchanged spec would otherwise be served from the local image store, with no export.)
    let mut build = Running::spawn({
        let mut command = case.build_command(None);
        command.arg("--rebuild");
        command
    });
    build.wait_for("the export", |v| v["kind"] == "exporting");
    let pid = build.pid();
    send(pid, "TERM");
    let (status, stdout, log) = build.finish();
    let received = log
        .iter()
        .any(|l| l.contains("received SIGTERM: stopping the build"));
    if status.code() == Some(0) {
        // Committed before the signal: if it was seen at all, the build says it came too late.
        assert!(
            !received
                || log
                    .iter()
                    .any(|l| l.contains("SIGTERM arrived after the image was committed")),
            "{}",
            log.join("\n")
        );
    } else {
        assert_interrupted(status, &log, "TERM");
    }
    case.assert_all_or_nothing(status, &stdout);
    assert_eq!(resources_of(pid), Vec::<String>::new());
}

#[test]
fn a_second_signal_exits_at_once_and_prune_removes_what_it_left() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("sig-twice");
    let mut build = case.start(None);
    build.wait_for_emerge();
    let pid = build.pid();

    // `prune --all` would stop this live build: without a terminal and without --yes it refuses.
    let refused = case.command("prune").arg("--all").output().unwrap();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("pass --yes"));
    let live = resources_of(pid);
    assert!(!live.is_empty());

    send(pid, "TERM");
    send(pid, "INT");
    let (status, _, log) = build.finish();
    assert_eq!(status.code(), Some(4), "{}", log.join("\n"));
    let note = log
        .iter()
        // Signals pending together are handled in signal-number order: which one comes "again" may vary.
        .find(|l| l.contains(" again: exiting at once"))
        .unwrap_or_else(|| panic!("{}", log.join("\n")));
    assert!(note.contains("staves prune"), "{note}");
    assert!(note.contains("io.staves.build="), "{note}");
    assert!(!case.tag_exists());

    // The process is gone, so a plain prune removes what it left.
    let left = resources_of(pid);
    assert!(
        !left.is_empty(),
        "the second signal should have left the build's resources"
    );
    let pruned = case.command("prune").output().unwrap();
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let removed = lines_of(&pruned);
    for resource in &left {
        assert!(
            removed.contains(&format!("removed {resource}")),
            "{resource} not in {removed:?}"
        );
    }
    assert_eq!(resources_of(pid), Vec::<String>::new());
}

/// SIGKILL leaves everything behind, emerge still running in the builder.
fn killed_during_emerge(case: &Case) -> (u32, Vec<String>) {
    let mut build = case.start(None);
    build.wait_for_emerge();
    let pid = build.pid();
    send(pid, "KILL");
    let (status, _, _) = build.finish();
    assert_eq!(status.signal(), Some(9));
    let left = resources_of(pid);
    assert!(
        left.iter().any(|r| r.ends_with("-builder")),
        "SIGKILL should leave the builder: {left:?}"
    );
    (pid, left)
}

#[test]
fn after_sigkill_prune_removes_everything_and_stops_emerge() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("sig-kill-prune");
    let (pid, left) = killed_during_emerge(&case);
    let pruned = case
        .command("prune")
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&pruned.stdout).unwrap();
    let removed: Vec<String> = ["containers", "volumes"]
        .iter()
        .flat_map(|kind| {
            report["removed"][kind]
                .as_array()
                .unwrap()
                .iter()
                .map(move |n| format!("{} {}", kind.trim_end_matches('s'), n.as_str().unwrap()))
        })
        .collect();
    for resource in &left {
        assert!(removed.contains(resource), "{resource} not in {report}");
    }
    assert_eq!(resources_of(pid), Vec::<String>::new());
    case.assert_no_output();
}

#[test]
fn after_sigkill_the_next_build_reaps_everything() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("sig-kill-reap");
    let (pid, left) = killed_during_emerge(&case);
    let (status, stdout, log) = case.start(None).finish();
    assert_eq!(status.code(), Some(0), "{}", log.join("\n"));
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let reaped = &report["report"]["reaped"];
    for resource in &left {
        let (kind, name) = resource.split_once(' ').unwrap();
        assert!(
            reaped[format!("{kind}s")]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n == name),
            "{resource} not reaped: {reaped}"
        );
    }
    assert!(
        log.iter().any(|l| l.contains("\"kind\":\"reaped\"")),
        "{}",
        log.join("\n")
    );
    assert_eq!(resources_of(pid), Vec::<String>::new());
    case.assert_all_or_nothing(status, &stdout);
}

/// SIGKILL during the commit (as a second signal, or a failed push) left an untagged image in the engine and
/// `.staves-*` files next to the outputs, which neither the message nor `staves prune` mentioned. The write
/// records them in the journal of the local image store before it makes them, and `staves prune` now removes them
/// and lists them.
#[test]
fn after_sigkill_during_the_commit_prune_removes_the_untagged_image_and_temporary_files() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("sig-kill-commit");
    let image_id = case.build_and_untag();
    // With every output written to temporary files and the image loaded untagged, before the commit.
    let mut build = case.start(Some("write"));
    build.wait_for_pause("write");
    let pid = build.pid();
    send(pid, "KILL");
    let (status, _, _) = build.finish();
    assert_eq!(status.signal(), Some(9));
    assert!(!case.tag_exists());
    assert!(
        docker(&["image", "inspect", &image_id]).status.success(),
        "SIGKILL during the commit should leave the untagged image"
    );
    let temp = case.out_names();
    assert!(
        !temp.is_empty() && temp.iter().all(|n| n.starts_with(".staves-")),
        "SIGKILL during the commit should leave temporary files: {temp:?}"
    );

    let pruned = case
        .command("prune")
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&pruned.stdout).unwrap();
    let images: Vec<&str> = report["removed"]["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no removed images in {report}"))
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert_eq!(images, [image_id.as_str()], "{report}");
    let files: Vec<String> = report["removed"]["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no removed files in {report}"))
        .iter()
        .map(|f| {
            let path = Path::new(f.as_str().unwrap());
            path.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    for name in &temp {
        assert!(files.contains(name), "{name} not in {report}");
    }
    assert_eq!(case.out_names(), Vec::<String>::new());
    assert!(!docker(&["image", "inspect", &image_id]).status.success());
    assert_eq!(resources_of(pid), Vec::<String>::new());
}

/// A commit that failed half way left the untagged image it had loaded in the engine (its removal was left to a
/// background thread that the exiting process cut short). Here the archive's path becomes a directory while the
/// build is paused before its commit, so the rename into place fails: the error names it, and the image is
/// removed before the build returns.
#[test]
fn a_commit_that_fails_half_way_removes_the_untagged_image() {
    if !engine_ready() {
        return;
    }
    let _lock = lock();
    let case = Case::new("commit-fails");
    let image_id = case.build_and_untag();
    let mut build = case.start(Some("write"));
    build.wait_for_pause("write");
    assert!(docker(&["image", "inspect", &image_id]).status.success());
    std::fs::create_dir(case.archive()).unwrap();
    std::fs::write(case.archive().join("mine"), b"mine").unwrap();
    let (status, _, log) = build.finish();
    assert_eq!(status.code(), Some(5), "{}", log.join("\n"));
    let error = log
        .iter()
        .find(|l| l.contains("\"kind\":\"error\""))
        .unwrap_or_else(|| panic!("no error line:\n{}", log.join("\n")));
    assert!(error.contains("moving the output into"), "{error}");
    assert!(!case.tag_exists());
    assert!(
        !docker(&["image", "inspect", &image_id]).status.success(),
        "the untagged image of the failed commit was kept"
    );
    assert_eq!(case.out_names(), ["image.tar"], "temporary files were left");
    assert_eq!(std::fs::read(case.archive().join("mine")).unwrap(), b"mine");
}
