//! Sharing compiled packages through Portage's binary package host (binhost): a `Packages` index plus the binary
//! packages, served by any static web server.
//!
//! - [`export_binhost`](crate::export_binhost) writes a build cache volume's binary packages and a `Packages` index (made by Portage's own
//!   `emaint binhost --fix`, in a short-lived container of the builder image) into a directory.
//! - [`BuildPlan::with_binhosts`](crate::BuildPlan::with_binhosts) makes a build fetch from binhosts: a `binrepos.conf` entry per URL whose
//!   `location` is the build cache, and a step before the emerge steps that runs the same two emerge commands with
//!   `--fetchonly --getbinpkg`. The binary packages they would use land in the cache (and stay there for later
//!   builds), so the emerge steps then take them with `--usepkg` like any cached binary package: Portage's
//!   `--binpkg-respect-use` applies, and whatever the binhost lacks is built from source. The report counts the
//!   packages fetched (emerge marks them `g` in its merge list).
//! - A spec's `[build] binhost` ([`crate::BuildSettings`]) is part of its plan ([`BuildPlan::new`](crate::BuildPlan::new)); the URLs a
//!   build adds with [`BuildPlan::with_binhosts`](crate::BuildPlan::with_binhosts) (`--binhost`, Python's `binhost=`) come first
//!   ([`merge_binhost_urls`]).
//! - The fetch step runs before the binary package check ([`crate::cache`]), so fetched packages are checked like
//!   any cached one: a package whose recorded build environment differs from what the spec gives it now is masked
//!   and built from source. Portage alone would compare USE only.
//!
//! Only the binhosts given are used: other `binrepos.conf` entries of the builder (a stage3's Gentoo binhost) are
//! set aside for the build.
//!
//! Each binary package download fails when it receives no byte for [`PlanOptions::binhost_idle_timeout`] or takes
//! longer than [`PlanOptions::binhost_timeout`]: the fetch step makes [`FETCH_HELPER`] Portage's `FETCHCOMMAND`
//! and `RESUMECOMMAND`. Portage fetches the `Packages` index itself, with a 10 s idle timeout of its own.
//!
//! [`PlanOptions::binhost_idle_timeout`]: crate::PlanOptions::binhost_idle_timeout
//! [`PlanOptions::binhost_timeout`]: crate::PlanOptions::binhost_timeout

use crate::portage::shell_quote;
use std::time::Duration;

/// Where the builder keeps binary packages: the build cache volume is mounted here (`PKGDIR`).
pub const PKGDIR: &str = "/var/cache/binpkgs";

/// The `binrepos.conf` file Staves writes for `--binhost`.
pub(crate) const BINREPOS_FILE: &str = "etc/portage/binrepos.conf/staves.conf";

/// Errors of the binary package host features.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BinhostError {
    /// A `--binhost` URL cannot be used.
    #[error(
        "invalid binhost URL `{url}`: {reason}\n  \
         help: give the base URL of a directory that holds a Packages index, e.g. http://binhost:8080/"
    )]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The build cache volume does not exist.
    #[error(
        "there is no build cache volume `{volume}` in the engine\n  \
         help: name the volume your builds use with --build-cache (the default is staves-binpkgs)"
    )]
    NoSuchVolume {
        /// The volume name.
        volume: String,
    },
    /// The export container failed.
    #[error("exporting the binary packages of `{volume}` failed (exit code {exit_code}):\n{log}")]
    ExportFailed {
        /// The volume.
        volume: String,
        /// The container's exit code.
        exit_code: i64,
        /// Its last output lines.
        log: String,
    },
    /// The exported files hold no `Packages` index.
    #[error(
        "the exported binary packages arrived without a Packages index\n  \
         help: check that the builder image's Portage runs `emaint binhost --fix`"
    )]
    NoIndex,
    /// The export stream holds an entry that cannot be written safely.
    #[error("the exported binary packages hold an unsafe entry `{entry}`: {reason}")]
    UnsafeEntry {
        /// The entry's path.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The destination cannot be used.
    #[error(
        "cannot export into {path}: {reason}\n  \
         help: give a new or empty directory, or one a previous `staves cache export` wrote"
    )]
    Destination {
        /// The directory.
        path: String,
        /// Why not.
        reason: String,
    },
    /// Writing the export failed.
    #[error("{context}: {source}")]
    Write {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Check a binhost URL: `http`, `https`, `ftp` or `file`, and nothing that could break out of `binrepos.conf`.
pub fn check_binhost_url(url: &str) -> Result<(), BinhostError> {
    match crate::spec::binhost_url_problem(url) {
        Some(reason) => Err(BinhostError::InvalidUrl {
            url: url.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The `binrepos.conf` content for `urls`: one section each, in priority order (the first one wins), all with the
/// build cache as `location` so that fetched packages are kept in it.
pub fn render_binrepos_conf(urls: &[String]) -> String {
    let mut out = String::from(
        "# Written by Staves for --binhost. location = PKGDIR: fetched binary packages go into the build cache.\n",
    );
    for (i, url) in urls.iter().enumerate() {
        out.push_str(&format!(
            "\n[staves-binhost-{n}]\npriority = {priority}\nsync-uri = {url}\nlocation = {PKGDIR}\n",
            n = i + 1,
            priority = urls.len() - i,
        ));
    }
    out
}

/// The default idle timeout of a binhost download: one that receives no byte for this long fails (as Portage's
/// own `wget -T 60`).
pub const DEFAULT_FETCH_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default total deadline of one binhost download (one binary package): 30 minutes.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Where the fetch step writes [`FETCH_HELPER`] in the builder.
const FETCH_HELPER_PATH: &str = "/var/tmp/staves/binhost-fetch";

/// Portage's fetch command for the binhost downloads of the fetch step:
/// `binhost-fetch [--resume] IDLE TOTAL URI FILE`. It fails a download that receives no byte for IDLE seconds or
/// takes more than TOTAL seconds in all: with `wget -T IDLE` under `timeout TOTAL` where the builder has both (a
/// stage3 does), else with Python (which Portage runs on), reading one buffer at a time against the deadline.
pub(crate) const FETCH_HELPER: &str = r#"# Written by Staves: Portage's FETCHCOMMAND/RESUMECOMMAND for binhost downloads.
# Usage: binhost-fetch [--resume] IDLE TOTAL URI FILE. Fails when no byte arrives for IDLE s, or after TOTAL s.
resume=
if [ "$1" = --resume ]; then resume=-c; shift; fi
idle=$1 total=$2 uri=$3 file=$4
if command -v wget >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1; then
  exec timeout "$total" wget $resume -t 3 -T "$idle" --passive-ftp -O "$file" "$uri"
fi
exec python3 -c '
import os, sys, time, urllib.request
idle, total, uri, path, resume = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
deadline = time.monotonic() + total
request = urllib.request.Request(uri)
have = os.path.getsize(path) if resume and os.path.exists(path) else 0
if have:
    request.add_header("Range", "bytes=%d-" % have)
try:
    with urllib.request.urlopen(request, timeout=idle) as answer:
        with open(path, "ab" if have and answer.status == 206 else "wb") as out:
            while True:
                if time.monotonic() > deadline:
                    sys.exit("staves: fetching %s took more than %d s" % (uri, total))
                chunk = answer.read1(65536)
                if not chunk:
                    break
                out.write(chunk)
except (OSError, ValueError) as e:
    sys.exit("staves: fetching %s failed: %s" % (uri, e))
' "$idle" "$total" "$uri" "$file" "$resume"
"#;

/// The fetch step's script: write [`FETCH_HELPER`] and make it Portage's fetch command for every protocol (with
/// the timeouts, in whole seconds), set aside the builder's other binhosts, then run each emerge command of the
/// plan with `--fetchonly --getbinpkg` (a fetch that fails only leaves more to build from source).
///
/// Portage reads the `Packages` index itself (urllib, with its own 10 s idle timeout); the packages go through the
/// helper.
pub(crate) fn fetch_script(commands: &[&[String]], idle: Duration, total: Duration) -> String {
    let (idle, total) = (idle.as_secs(), total.as_secs());
    let command = |resume: &str| {
        format!(
            "/bin/sh {FETCH_HELPER_PATH} {resume}{idle} {total} \"${{URI}}\" \"${{DISTDIR}}/${{FILE}}\""
        )
    };
    let mut s = String::from("set -u\n");
    s.push_str(&format!(
        "mkdir -p /var/tmp/staves\ncat > {FETCH_HELPER_PATH} <<'STAVES_FETCH'\n{FETCH_HELPER}STAVES_FETCH\n"
    ));
    // Portage takes a protocol's own command (FETCHCOMMAND_HTTP) first: those are set too.
    s.push_str(&format!(
        "FETCHCOMMAND='{}'\nRESUMECOMMAND='{}'\n\
         FETCHCOMMAND_HTTP=$FETCHCOMMAND FETCHCOMMAND_HTTPS=$FETCHCOMMAND FETCHCOMMAND_FTP=$FETCHCOMMAND\n\
         RESUMECOMMAND_HTTP=$RESUMECOMMAND RESUMECOMMAND_HTTPS=$RESUMECOMMAND RESUMECOMMAND_FTP=$RESUMECOMMAND\n\
         export FETCHCOMMAND RESUMECOMMAND FETCHCOMMAND_HTTP FETCHCOMMAND_HTTPS FETCHCOMMAND_FTP RESUMECOMMAND_HTTP \
         RESUMECOMMAND_HTTPS RESUMECOMMAND_FTP\n",
        command(""),
        command("--resume ")
    ));
    s.push_str(
        "for f in /etc/portage/binrepos.conf/*; do\n  \
         [ -e \"$f\" ] && [ \"$f\" != /etc/portage/binrepos.conf/staves.conf ] || continue\n  \
         mkdir -p /etc/portage/binrepos.conf.staves-aside && mv \"$f\" /etc/portage/binrepos.conf.staves-aside/\n  \
         echo \"staves: set aside the builder's binhost entry $f: only the --binhost URLs are used\"\n\
         done\n",
    );
    for argv in commands {
        let mut words: Vec<String> = Vec::new();
        for (i, word) in argv.iter().enumerate() {
            words.push(shell_quote(word));
            if i == 0 {
                words.extend(
                    ["--fetchonly", "--getbinpkg", "--keep-going"]
                        .iter()
                        .map(|w| (*w).to_owned()),
                );
            }
        }
        s.push_str(&format!(
            "{} || echo \"staves: warning: fetching from the binhost failed (exit $?); what is missing is built \
             from source\" >&2\n",
            words.join(" ")
        ));
    }
    s.push_str("exit 0\n");
    s
}

/// The binhost URLs a build uses: `first` (a build's `--binhost` flags), then `then` (the spec's `[build]
/// binhost`), each once. URLs that differ only in trailing slashes are the same binhost; the first spelling is
/// kept.
pub fn merge_binhost_urls(first: &[String], then: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for url in first.iter().chain(then) {
        let key = url.trim_end_matches('/');
        if !out.iter().any(|u| u.trim_end_matches('/') == key) {
            out.push(url.clone());
        }
    }
    out
}

/// The packages emerge marked as fetched from a binhost (`g` in its merge list), as `category/package-version`,
/// each once.
pub fn parse_fetched_binaries<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for line in lines {
        let Some(rest) = line.trim_start().strip_prefix("[binary") else {
            continue;
        };
        let Some((flags, rest)) = rest.split_once(']') else {
            continue;
        };
        if !flags.contains('g') {
            continue;
        }
        let Some(package) = rest.split_whitespace().next() else {
            continue;
        };
        let cpv = package.split("::").next().unwrap_or(package);
        let cpv = strip_build_id(cpv);
        if cpv.contains('/') && !found.iter().any(|f| f == cpv) {
            found.push(cpv.to_owned());
        }
    }
    found
}

/// `cat/pkg-1.0-3` (with a binpkg-multi-instance build ID) → `cat/pkg-1.0`; a plain cpv is returned as is.
fn strip_build_id(cpv: &str) -> &str {
    match cpv.rsplit_once('-') {
        Some((head, id))
            if !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && head.rsplit_once('-').is_some_and(|(_, v)| {
                    v.starts_with(|c: char| c.is_ascii_digit())
                        || (v.starts_with('r') && v[1..].bytes().all(|b| b.is_ascii_digit()))
                }) =>
        {
            head
        }
        _ => cpv,
    }
}

/// The packages a `Packages` index lists: `CPV` (with `-BUILD_ID` when there is one), in index order.
pub fn index_packages(index: &str) -> Vec<String> {
    let mut packages = Vec::new();
    for block in index.split("\n\n").skip(1) {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
        };
        if let Some(cpv) = field("CPV") {
            packages.push(match field("BUILD_ID") {
                Some(id) => format!("{cpv}-{id}"),
                None => cpv.to_owned(),
            });
        }
    }
    packages
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::plan::{BuildPlan, StepKind};
    use std::path::Path;

    #[test]
    fn binhost_urls_are_checked() {
        for url in [
            "http://binhost:8080",
            "https://b.example/pkgs/",
            "file:///srv/binpkgs",
        ] {
            check_binhost_url(url).unwrap();
        }
        for (url, expect) in [
            ("binhost:8080", "no scheme"),
            ("ssh://b/x", "not `ssh`"),
            ("http://", "no host"),
            ("http://b/x y", "whitespace"),
            ("http://b/\nlocation = /etc", "whitespace"),
            ("http://b/$(x)", "binrepos.conf cannot hold"),
        ] {
            let err = check_binhost_url(url).unwrap_err().to_string();
            assert!(err.contains(expect), "{url}: {err}");
        }
    }

    /// A local HTTP server for the fetch helper. `trickle`: the head of a 1 MiB answer, then a byte every 200 ms;
    /// else nothing at all. Each connection reports who ended it: the client (`gave up`), or the server after a
    /// guard of a minute (`guard`), which only keeps a client without deadlines from hanging the test.
    fn slow_server(trickle: bool) -> (u16, std::sync::mpsc::Receiver<&'static str>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (report, ends) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let report = report.clone();
                std::thread::spawn(move || {
                    let guard = std::time::Instant::now() + std::time::Duration::from_secs(60);
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                        line.clear();
                    }
                    let mut stream = reader.into_inner();
                    let end = if trickle {
                        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n";
                        let mut gone = stream.write_all(head.as_bytes()).is_err();
                        while !gone && std::time::Instant::now() < guard {
                            std::thread::sleep(std::time::Duration::from_millis(200));
                            gone = stream
                                .write_all(b"x")
                                .and_then(|()| stream.flush())
                                .is_err();
                        }
                        if gone { "gave up" } else { "guard" }
                    } else {
                        let _ =
                            stream.set_read_timeout(Some(std::time::Duration::from_millis(100)));
                        let mut buffer = [0u8; 512];
                        loop {
                            if std::time::Instant::now() >= guard {
                                break "guard";
                            }
                            match stream.read(&mut buffer) {
                                Ok(0) => break "gave up",
                                Ok(_) => {}
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break "gave up",
                            }
                        }
                    };
                    let _ = report.send(end);
                });
            }
        });
        (port, ends)
    }

    /// Run [`FETCH_HELPER`] as Portage runs the fetch command, with `path` as `PATH`; its exit status, and how the
    /// server's connections ended.
    fn run_helper(
        path: &std::ffi::OsStr,
        trickle: bool,
        idle: u64,
        total: u64,
    ) -> (std::process::ExitStatus, Vec<&'static str>) {
        let (port, ends) = slow_server(trickle);
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("binhost-fetch");
        std::fs::write(&helper, FETCH_HELPER).unwrap();
        let status = std::process::Command::new("/bin/sh")
            .arg(&helper)
            .arg(idle.to_string())
            .arg(total.to_string())
            .arg(format!(
                "http://127.0.0.1:{port}/All/app-misc/hello-1.gpkg.tar"
            ))
            .arg(dir.path().join("hello-1.gpkg.tar"))
            .env("PATH", path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        // Each connection reports once it has ended (wget retries: several); the first is waited for.
        let mut ended: Vec<&'static str> = ends
            .recv_timeout(std::time::Duration::from_secs(120))
            .into_iter()
            .collect();
        ended.extend(ends.try_iter());
        (status, ended)
    }

    /// The `PATH`s to run the helper with: the system's (wget under `timeout`, when the host has both), and one
    /// with only `python3` (the fallback a builder without wget takes), made in `scratch`.
    fn helper_paths(scratch: &Path) -> Vec<(String, std::ffi::OsString)> {
        let mut paths = Vec::new();
        let system = std::ffi::OsString::from("/usr/bin:/bin");
        let has = |tool: &str| {
            ["/usr/bin", "/bin"]
                .iter()
                .any(|d| std::path::Path::new(d).join(tool).exists())
        };
        if has("wget") && has("timeout") {
            paths.push(("wget".to_owned(), system));
        }
        let python = ["/usr/bin/python3", "/bin/python3"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("python3 in /usr/bin or /bin");
        let only_python = scratch.join("only-python");
        std::fs::create_dir_all(&only_python).unwrap();
        std::os::unix::fs::symlink(python, only_python.join("python3")).unwrap();
        paths.push(("python".to_owned(), only_python.into_os_string()));
        paths
    }

    /// A binhost that accepted a package download and then sent nothing hung the build's fetch step: Portage's
    /// fetch command (its wget default, or Staves' Python fallback) had no deadline of Staves'.
    #[test]
    fn a_stalled_binhost_download_ends_on_the_idle_timeout() {
        let scratch = tempfile::tempdir().unwrap();
        for (name, path) in helper_paths(scratch.path()) {
            let (status, ends) = run_helper(&path, false, 1, 600);
            assert!(!status.success(), "{name}: {status}");
            assert!(
                !ends.is_empty() && ends.iter().all(|e| *e == "gave up"),
                "{name}: {ends:?}"
            );
        }
    }

    /// A binhost that trickles a byte now and then never trips an idle timeout: the total deadline ends it.
    #[test]
    fn a_trickling_binhost_download_ends_on_the_total_deadline() {
        let scratch = tempfile::tempdir().unwrap();
        for (name, path) in helper_paths(scratch.path()) {
            let (status, ends) = run_helper(&path, true, 30, 2);
            assert!(!status.success(), "{name}: {status}");
            assert!(
                !ends.is_empty() && ends.iter().all(|e| *e == "gave up"),
                "{name}: {ends:?}"
            );
        }
    }

    #[test]
    fn the_fetch_step_makes_the_helper_portages_fetch_command() {
        let script = fetch_script(
            &[&["emerge".to_owned(), "app-misc/hello".to_owned()]],
            Duration::from_secs(7),
            Duration::from_secs(99),
        );
        assert!(
            script.contains(&format!("cat > {FETCH_HELPER_PATH} <<'STAVES_FETCH'\n")),
            "{script}"
        );
        assert!(
            script.contains(&format!(
                "FETCHCOMMAND='/bin/sh {FETCH_HELPER_PATH} 7 99 \"${{URI}}\" \"${{DISTDIR}}/${{FILE}}\"'"
            )),
            "{script}"
        );
        assert!(script.contains("--resume 7 99"), "{script}");
        assert!(
            script.contains("export FETCHCOMMAND RESUMECOMMAND FETCHCOMMAND_HTTP"),
            "{script}"
        );
        // The script a shell runs: the helper ends at its delimiter.
        let out = std::process::Command::new("/bin/sh")
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn binrepos_conf_keeps_fetched_packages_in_the_cache() {
        let conf = render_binrepos_conf(&["http://a:1".into(), "http://b:2/x".into()]);
        assert!(conf.contains(
            "[staves-binhost-1]\npriority = 2\nsync-uri = http://a:1\nlocation = /var/cache/binpkgs\n"
        ));
        assert!(conf.contains("[staves-binhost-2]\npriority = 1\nsync-uri = http://b:2/x\n"));
    }

    #[test]
    fn a_plan_with_binhosts_fetches_before_it_emerges() {
        let mut spec = crate::ImageSpec::new("staves-test/hello");
        spec.packages.push("app-misc/hello".into());
        let plan = BuildPlan::new(&spec, &crate::PlanOptions::with_jobs(2)).unwrap();
        let unchanged = plan.clone().with_binhosts(&[]).unwrap();
        assert_eq!(unchanged, plan);
        let with = plan
            .clone()
            .with_binhosts(&["http://binhost:8080".into()])
            .unwrap();
        let kinds: Vec<&StepKind> = with.steps.iter().map(|s| &s.kind).collect();
        let fetch = kinds
            .iter()
            .position(|k| **k == StepKind::FetchBinaries)
            .unwrap();
        // The environment check sees the fetched binary packages (and masks those built with other flags).
        assert_eq!(kinds[fetch + 1], &StepKind::CheckBinaries);
        assert_eq!(with.steps.len(), plan.steps.len() + 1);
        assert!(with.files.iter().any(|f| f.path == BINREPOS_FILE));
        let write = with.steps[0].shell_script().unwrap();
        assert!(write.contains("binrepos.conf/staves.conf"), "{write}");
        let script = with.steps[fetch].shell_script().unwrap();
        assert!(
            script.contains("emerge --fetchonly --getbinpkg --keep-going --verbose --onlydeps"),
            "{script}"
        );
        assert!(
            script.contains("--fetchonly --getbinpkg --keep-going --verbose --root=/tmp/rootfs"),
            "{script}"
        );
        assert!(script.ends_with("exit 0\n"), "{script}");
        let err = plan
            .with_binhosts(&["nope".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid binhost URL `nope`"), "{err}");
    }

    #[test]
    fn build_urls_come_before_the_spec_urls_each_once() {
        let s = |v: &[&str]| v.iter().map(|u| (*u).to_owned()).collect::<Vec<String>>();
        assert_eq!(
            merge_binhost_urls(
                &s(&["http://flag:1", "http://both:2/", "http://flag:1"]),
                &s(&["http://spec:3", "http://both:2", "http://spec:3/"])
            ),
            s(&["http://flag:1", "http://both:2/", "http://spec:3"])
        );
        assert_eq!(merge_binhost_urls(&[], &[]), Vec::<String>::new());

        // A spec's `[build] binhost` is in its plan; a build's own URLs go first, and the plan has one fetch step.
        let spec = crate::ImageSpec::parse(
            "name = 'a/b'\npackages = ['app-misc/hello']\n[build]\nbinhost = ['http://spec:3', 'http://both:2']\n",
            None,
        )
        .unwrap();
        let options = crate::PlanOptions::with_jobs(2);
        let plan = BuildPlan::new(&spec, &options).unwrap();
        assert_eq!(plan.binhosts, s(&["http://spec:3", "http://both:2"]));
        let fetches = |p: &BuildPlan| {
            p.steps
                .iter()
                .filter(|s| s.kind == StepKind::FetchBinaries)
                .count()
        };
        assert_eq!(fetches(&plan), 1);
        let conf = |p: &BuildPlan| {
            p.files
                .iter()
                .filter(|f| f.path == BINREPOS_FILE)
                .map(|f| f.content.clone())
                .collect::<Vec<String>>()
        };
        assert_eq!(
            conf(&plan),
            [render_binrepos_conf(&s(&[
                "http://spec:3",
                "http://both:2"
            ]))]
        );
        let same = plan.clone().with_binhosts(&s(&["http://both:2/"])).unwrap();
        assert_eq!(same.binhosts, s(&["http://both:2/", "http://spec:3"]));
        let merged = plan
            .clone()
            .with_binhosts(&s(&["http://flag:1", "http://spec:3"]))
            .unwrap();
        assert_eq!(
            merged.binhosts,
            s(&["http://flag:1", "http://spec:3", "http://both:2"])
        );
        assert_eq!(fetches(&merged), 1);
        assert_eq!(merged.steps.len(), plan.steps.len());
        assert_eq!(
            conf(&merged),
            [render_binrepos_conf(&merged.binhosts)],
            "one binrepos.conf with every URL"
        );
        let fetch = merged
            .steps
            .iter()
            .find(|s| s.kind == StepKind::FetchBinaries)
            .unwrap();
        assert_eq!(fetch.label, "Fetch binary packages from 3 binhosts");
        // Without [build], nothing changes: no binhosts, no fetch step, no binrepos.conf.
        let mut plain = spec.clone();
        plain.build = crate::BuildSettings::default();
        let plain = BuildPlan::new(&plain, &options).unwrap();
        assert!(plain.binhosts.is_empty() && fetches(&plain) == 0 && conf(&plain).is_empty());
        assert_eq!(plan.steps.len(), plain.steps.len() + 1);
        // `staves lock` resolves and builds nothing: it fetches nothing either.
        let resolve = BuildPlan::resolve(&spec, &options).unwrap();
        assert!(resolve.binhosts.is_empty() && fetches(&resolve) == 0);
    }

    #[test]
    fn fetched_binaries_are_read_from_the_merge_list() {
        let log = [
            "[binary  N g   ] dev-libs/libfoo-1-1::gentoo  10 KiB",
            "[binary  N g   ] dev-libs/libfoo-1-1::gentoo to /tmp/rootfs/ 10 KiB",
            "[binary  N     ] app-misc/hello-1-2::gentoo  1 KiB",
            "[ebuild  N     ] app-misc/other-1::gentoo",
            "[binary   R g  ] sys-libs/glibc-2.36-r7-3::gentoo",
            "[binary  N g   ] app-misc/nobuildid-1.0::gentoo",
            ">>> Emerging binary (1 of 3) dev-libs/libfoo-1::gentoo",
        ];
        assert_eq!(
            parse_fetched_binaries(log),
            [
                "dev-libs/libfoo-1",
                "sys-libs/glibc-2.36-r7",
                "app-misc/nobuildid-1.0"
            ]
        );
    }

    #[test]
    fn packages_index_lists_cpv_and_build_id() {
        let index = "ARCH: amd64\nPACKAGES: 2\n\nBUILD_ID: 1\nCPV: app-misc/hello-1\nPATH: x\n\nCPV: dev-libs/libfoo-1\n";
        assert_eq!(
            index_packages(index),
            ["app-misc/hello-1-1", "dev-libs/libfoo-1"]
        );
    }
}
