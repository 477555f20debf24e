//! The binary package cache (the `--build-cache` volume): which binary packages a build may reuse.
//!
//! Portage's `--binpkg-respect-use` matches binary packages on USE flags only. A binary package built with other
//! `CFLAGS` (from `[env]`, a named env, or the builder's `make.conf`) would be installed as if nothing had changed.
//! Staves closes that hole with Portage's own machinery:
//!
//! 1. **Record.** A block in the builder's `/etc/portage/bashrc` runs when Portage starts a package's first ebuild
//!    phase, before the ebuild is sourced, so the values are the ones Portage's configuration gives the package
//!    (`make.conf`, profile, `package.env`) and nothing an ebuild or eclass changes later (flag-o-matic). It writes
//!    them to `build-info/STAVES_BUILD_ENV`, which Portage stores in the binary package and in the package database.
//! 2. **Check.** Before the emerge steps, [`StepKind::CheckBinaries`](crate::StepKind::CheckBinaries) runs
//!    `binpkg_env.py` with the builder's Portage: for every binary package instance in `PKGDIR` it compares the
//!    record with what `portage.config.setcpv()` gives that package now, and masks each instance whose record is
//!    missing or different by build ID (`=cat/pkg-1.0-3` in `/etc/portage/package.mask`, which Portage reads with
//!    build IDs allowed). Portage then picks among the remaining instances, or builds from source, with its own
//!    rules (USE, visibility, changed deps). `--usepkg-exclude` cannot do this: emerge rejects versioned atoms there.
//!    A stale instance without a build ID (written without `binpkg-multi-instance`) cannot be masked alone; its
//!    package is given to `--usepkg-exclude` instead, in a block the check adds to `make.conf`.
//! 3. **Decide.** The same step asks Portage (`emerge --pretend --usepkg --root=/tmp/rootfs --root-deps=rdeps`,
//!    with the masks) whether the rootfs step would use binary packages only; then the build-dependency step is
//!    skipped, since nothing is compiled.
//! 4. **Verify.** After the emerge steps, [`StepKind::VerifyBinaries`](crate::StepKind::VerifyBinaries) checks every
//!    package merged from a binary package in this build (in the builder and the rootfs) against the environment
//!    again: another build may have added an instance to a shared volume between the check and the emerge. It also
//!    records which instances the build used, for `staves cache prune --keep-last`.
//!
//! The compared variables are [`FINGERPRINT_VARIABLES`] plus every variable the spec sets in `[env]` or a named env,
//! less those that only steer Portage ([`PORTAGE_CONTROL_VARIABLES`]), `USE` and the `USE_EXPAND` variables (USE is
//! matched by Portage already). A package whose values did not change keeps its binary package.

mod when;

pub use when::{DateError, format_minutes, parse_cutoff};

use crate::portage::ROOTFS_DIR;
use crate::portage::{PortageFile, WriteMode, shell_quote};
use crate::spec::ImageSpec;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Variables that change what the compiler produces, compared for every package.
///
/// `FEATURES` stands for its tokens that change what a package installs (`nodoc`, `nostrip`, `splitdebug`, …).
pub const FINGERPRINT_VARIABLES: &[&str] = &[
    "AR",
    "AS",
    "ASFLAGS",
    "CBUILD",
    "CC",
    "CFLAGS",
    "CHOST",
    "CPP",
    "CPPFLAGS",
    "CTARGET",
    "CXX",
    "CXXFLAGS",
    "EXTRA_ECONF",
    "EXTRA_EINSTALL",
    "EXTRA_EMAKE",
    "FCFLAGS",
    "FEATURES",
    "FFLAGS",
    "LD",
    "LDFLAGS",
    "LIBCFLAGS",
    "LIBCXXFLAGS",
    "NM",
    "OBJCOPY",
    "PKG_INSTALL_MASK",
    "RANLIB",
    "RUSTFLAGS",
    "STRIP",
];

/// Variables a spec may set that steer Portage (parallelism, downloads, masking, output) rather than what a package
/// compiles to; they are never compared. Names starting with `PORTAGE_`, `EMERGE_`, `ACCEPT_`, `BINPKG_`,
/// `FETCHCOMMAND` or `RESUMECOMMAND` are treated the same.
pub const PORTAGE_CONTROL_VARIABLES: &[&str] = &[
    "AUTOCLEAN",
    "CLEAN_DELAY",
    "COLLISION_IGNORE",
    "CONFIG_PROTECT",
    "CONFIG_PROTECT_MASK",
    "DISTDIR",
    "GENTOO_MIRRORS",
    "INSTALL_MASK",
    "LC_MESSAGES",
    "MAKEOPTS",
    "NINJAOPTS",
    "NOCOLOR",
    "PKGDIR",
    "PORTDIR",
    "PORTDIR_OVERLAY",
    "UNINSTALL_IGNORE",
    "USE",
];

const PORTAGE_CONTROL_PREFIXES: &[&str] = &[
    "PORTAGE_",
    "EMERGE_",
    "ACCEPT_",
    "BINPKG_",
    "FETCHCOMMAND",
    "RESUMECOMMAND",
];

/// Where the plan puts the check script in the builder.
pub(crate) const SCRIPT_PATH: &str = "/var/tmp/staves/binpkg-env.py";
/// Written by the check when the rootfs step will use binary packages only.
pub(crate) const ROOTFS_FROM_BINARIES: &str = "/var/tmp/staves/rootfs-from-binaries";
/// The check's `emerge --pretend` resolution of the rootfs, which the direct merge follows.
const ROOTFS_PRETEND: &str = "/var/tmp/staves/rootfs-pretend.txt";
/// The packages the direct merge merged (`cpv::repo` per line); empty when it merged none.
const DIRECT_MERGED: &str = "/var/tmp/staves/rootfs-direct-merged";
/// How the direct merge ends its `>>> Emerging binary (k of n) cpv::repo for ROOT/` lines (Portage's own lines
/// have no such suffix), so the report can tell which packages skipped Portage's per-package merge.
pub const DIRECT_MERGE_SUFFIX: &str = "(merged directly)";

/// The package of a direct-merge progress line (`category/package-version`), if `line` is one.
pub fn parse_direct_merge_line(line: &str) -> Option<String> {
    if !line.trim_end().ends_with(DIRECT_MERGE_SUFFIX) {
        return None;
    }
    match crate::portage::parse_emerge_line(line)? {
        crate::portage::EmergeEvent::Emerging {
            cpv, binary: true, ..
        } => Some(cpv),
        _ => None,
    }
}

/// The masks the check writes for one build.
const MASK_FILE: &str = "etc/portage/package.mask/staves-binpkg-env";

/// The line a step prints when it decided to do nothing; the rest of the line is the reason.
pub const SKIPPED_MARKER: &str = "staves: skipped: ";

/// The reason a step printed with [`SKIPPED_MARKER`], if `line` is such a line.
pub fn parse_skipped_line(line: &str) -> Option<&str> {
    line.strip_prefix(SKIPPED_MARKER)
        .map(str::trim)
        .filter(|r| !r.is_empty())
}

pub(crate) const CHECK_SCRIPT: &str = include_str!("binpkg_env.py");
const BASHRC_BLOCK: &str = include_str!("bashrc.sh");

/// The variables compared between a binary package's record and the environment `spec` gives its package: the
/// fixed list, plus the spec's `[env]` and named-env variables, less the Portage control variables. Sorted.
///
/// `USE_EXPAND` variables are removed in the builder, where the profile is known.
pub fn fingerprint_variables(spec: &ImageSpec) -> Vec<String> {
    let mut names: BTreeSet<String> = FINGERPRINT_VARIABLES
        .iter()
        .map(|v| (*v).to_owned())
        .collect();
    let spec_names = spec
        .env
        .keys()
        .chain(spec.named_envs.values().flat_map(|vars| vars.keys()));
    for name in spec_names {
        if !is_portage_control(name) {
            names.insert(name.clone());
        }
    }
    names.into_iter().collect()
}

fn is_portage_control(name: &str) -> bool {
    name != "FEATURES"
        && (PORTAGE_CONTROL_VARIABLES.contains(&name)
            || PORTAGE_CONTROL_PREFIXES.iter().any(|p| name.starts_with(p)))
}

/// The files every build adds to the builder: the bashrc block, the check script, and the (empty) mask file the
/// check fills in.
pub(crate) fn plan_files() -> Vec<PortageFile> {
    vec![
        PortageFile {
            path: "etc/portage/bashrc".to_owned(),
            content: format!(
                "{}\n{BASHRC_BLOCK}{}\n",
                crate::portage::MAKE_CONF_BEGIN,
                crate::portage::MAKE_CONF_END
            ),
            mode: WriteMode::AppendBlock,
        },
        PortageFile {
            path: MASK_FILE.to_owned(),
            content: "# Filled in by the binary package check of each build.\n".to_owned(),
            mode: WriteMode::Replace,
        },
        PortageFile {
            path: SCRIPT_PATH.trim_start_matches('/').to_owned(),
            content: CHECK_SCRIPT.to_owned(),
            mode: WriteMode::Replace,
        },
    ]
}

/// A shell function that runs the check script with a Python that can import Portage: the interpreter that
/// `emerge` runs with when its wrapper names one, else `python3` or `python`.
fn python_launcher() -> String {
    format!(
        r#"staves_python() {{
  emerge_path=$(command -v emerge || true)
  candidates=
  if [ -n "$emerge_path" ] && [ -f "$emerge_path" ]; then
    candidates=$(sed -n -e '1s/^#![ ]*\([^ ]*python[^ ]*\).*/\1/p' -e 's/^exec[ ][ ]*\([^ ]*python[^ ]*\)[ ].*/\1/p' "$emerge_path" 2>/dev/null || true)
  fi
  for py in $candidates python3 python; do
    command -v "$py" >/dev/null 2>&1 || continue
    status=0
    "$py" {script} "$@" || status=$?
    [ "$status" -eq 97 ] || return "$status"
  done
  echo "staves: no Python in the builder can import Portage (tried the interpreter of emerge, python3 and python)" >&2
  return 1
}}
"#,
        script = SCRIPT_PATH
    )
}

/// The check step: mask stale binary packages, then ask Portage whether the rootfs comes from binaries only.
pub(crate) fn check_script(spec: &ImageSpec, rootfs_atoms: &[String]) -> String {
    let vars: Vec<String> = fingerprint_variables(spec)
        .iter()
        .map(|v| shell_quote(v))
        .collect();
    let atoms: Vec<String> = rootfs_atoms.iter().map(|a| shell_quote(a)).collect();
    format!(
        r#"set -eu
{launcher}rm -f {flag}
staves_python check {vars}
if [ "$(cat /var/tmp/staves/binpkg-usable 2>/dev/null || echo 0)" = 0 ]; then
  echo "staves: no binary package in the cache can be used: everything is built from source"
  exit 0
fi
echo "staves: asking Portage whether the rootfs comes from binary packages only (emerge --pretend):"
status=0
emerge --pretend --verbose --usepkg --root={rootfs} --root-deps=rdeps --oneshot {atoms} > {pretend} 2>&1 || status=$?
cat {pretend}
if [ "$status" -eq 0 ] && grep -q '^\[binary' {pretend} && ! grep -q '^\[ebuild' {pretend}; then
  : > {flag}
  echo "staves: every package of the rootfs comes from a binary package built with the environment this spec gives it"
else
  echo "staves: some packages of the rootfs are built from source: their build dependencies are installed first"
fi
"#,
        launcher = python_launcher(),
        flag = ROOTFS_FROM_BINARIES,
        vars = vars.join(" "),
        rootfs = ROOTFS_DIR,
        atoms = atoms.join(" "),
        pretend = ROOTFS_PRETEND,
    )
}

/// The direct-merge step: when the check found that the rootfs comes from binary packages only, merge those that
/// need no ebuild phase into the rootfs directly (the script's `merge` mode, following the check's resolution);
/// otherwise it is skipped.
pub(crate) fn direct_merge_script() -> String {
    format!(
        r#"set -eu
rm -f {merged}
if [ ! -e {flag} ]; then
  echo {skipped}
  exit 0
fi
{launcher}staves_python merge {rootfs} {pretend}
"#,
        merged = DIRECT_MERGED,
        flag = ROOTFS_FROM_BINARIES,
        skipped = shell_quote(&format!("{SKIPPED_MARKER}{DIRECT_MERGE_SKIP_REASON}")),
        launcher = python_launcher(),
        rootfs = ROOTFS_DIR,
        pretend = ROOTFS_PRETEND,
    )
}

/// Why the direct merge is skipped when some package of the rootfs is built from source.
pub(crate) const DIRECT_MERGE_SKIP_REASON: &str =
    "some packages of the rootfs are built from source, so emerge merges every package";

/// The rootfs step's command with the direct merge: `emerge_argv` as it is, plus `--noreplace --deep` when the
/// direct merge merged something. emerge then takes the merged packages as installed, merges what their
/// dependencies still need, and so checks the result against its own resolution (when nothing is left, it merges
/// nothing). On the empty rootfs of a build without direct merges the command is unchanged.
pub(crate) fn rootfs_argv(emerge_argv: Vec<String>) -> Vec<String> {
    let mut argv = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        format!(
            "if [ -s {merged} ]; then
  echo \"staves: emerge merges the other packages and checks the rootfs against \
             its resolution (--noreplace --deep)\"
  set -- \"$@\" --noreplace --deep
fi
exec \"$@\"",
            merged = DIRECT_MERGED
        ),
        "sh".to_owned(),
    ];
    argv.extend(emerge_argv);
    argv
}

/// The program and arguments a step wrapped by [`rootfs_argv`] runs (the step's argv otherwise).
pub(crate) fn unwrapped_argv(argv: &[String]) -> &[String] {
    match argv {
        [sh, c, _, name, rest @ ..]
            if sh == "/bin/sh" && c == "-c" && name == "sh" && !rest.is_empty() =>
        {
            rest
        }
        _ => argv,
    }
}

/// Why the build-dependency step is skipped when the check found that the rootfs comes from binary packages only.
pub(crate) const BUILD_DEPS_SKIP_REASON: &str = "every package of the rootfs comes from a binary package built with \
                                                 the environment this spec gives it, so nothing is compiled";

/// The script of a `staves cache` container: write the check script from the environment, then run it with
/// the arguments the container is given.
pub(crate) fn cache_container_script() -> String {
    format!(
        "set -eu\nmkdir -p /var/tmp/staves\nprintf '%s' \"$STAVES_BINPKG_ENV_PY\" > {SCRIPT_PATH}\n{}staves_python \"$@\"\n",
        python_launcher()
    )
}

/// Errors of `staves cache` on a binary package volume.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The volume does not exist.
    #[error(
        "there is no build cache volume named {volume}\n  \
         help: builds create it; list volumes with `docker volume ls`, or pass --build-cache NAME"
    )]
    NoVolume {
        /// The volume name.
        volume: String,
    },
    /// The script in the cache container failed.
    #[error("the cache container for volume {volume} failed (exit code {exit_code}):\n{stderr}")]
    Failed {
        /// The volume.
        volume: String,
        /// The container's exit code.
        exit_code: i64,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The script's output could not be read.
    #[error("the cache container printed something Staves cannot read ({reason}):\n{output}")]
    Output {
        /// What is wrong.
        reason: String,
        /// The output.
        output: String,
    },
}

/// One binary package instance in a build cache volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BinaryPackage {
    /// `category/package-version`.
    pub cpv: String,
    /// The instance's build ID (`binpkg-multi-instance`), when it has one.
    pub build_id: Option<u64>,
    /// The file, relative to the volume.
    pub path: String,
    /// The USE flags it was built with (flags in its IUSE), sorted.
    #[serde(rename = "use")]
    pub use_flags: Vec<String>,
    /// A short hash of its recorded build environment; `None` when it has no record (it is never reused).
    pub fingerprint: Option<String>,
    /// Its recorded build environment (variable → value); `None` without a record.
    pub environment: Option<BTreeMap<String, String>>,
    /// Size of the file in bytes.
    pub size: u64,
    /// When it was built (unix seconds).
    pub build_time: Option<u64>,
    /// When a Staves build last used it (unix seconds), if one recorded it.
    pub last_used: Option<f64>,
}

/// What a build cache volume holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BinpkgListing {
    /// The volume.
    #[serde(default)]
    pub volume: String,
    /// How many builds recorded what they used.
    pub builds: usize,
    /// Every binary package instance.
    pub packages: Vec<BinaryPackage>,
}

/// What [`BinpkgCache::prune`](crate::BinpkgCache::prune) removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BinpkgPruneReport {
    /// The removed instances.
    pub removed: Vec<BinaryPackage>,
    /// How many instances were kept.
    pub kept: usize,
    /// Nothing was removed: this is what would have been.
    pub dry_run: bool,
}

impl BinpkgPruneReport {
    /// Bytes the removed instances took.
    pub fn freed_bytes(&self) -> u64 {
        self.removed.iter().map(|p| p.size).sum()
    }
}

/// Space a build cache volume takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BinpkgUsage {
    /// Bytes of every file in the volume.
    pub bytes: u64,
    /// Files in the volume (packages, the index, Staves' records).
    pub files: u64,
    /// Binary package files.
    pub packages: u64,
}

/// What [`BinpkgCache::clear`](crate::BinpkgCache::clear) removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BinpkgClearReport {
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Files removed.
    pub files: u64,
    /// Binary package files among them.
    pub packages: u64,
    /// Nothing was removed: this is what would have been.
    pub dry_run: bool,
}

/// Which instances [`BinpkgCache::prune`](crate::BinpkgCache::prune) keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BinpkgPrune {
    /// Every instance that one of the last `n` builds used (built or installed); the others go.
    KeepLast(usize),
    /// Instances neither built nor used at or after this time (unix seconds) go.
    OlderThan(u64),
}

/// The verify step: packages merged from binary packages in this build still have the spec's environment.
pub(crate) fn verify_script() -> String {
    format!(
        "set -eu\n{launcher}staves_python verify / {rootfs}\n",
        launcher = python_launcher(),
        rootfs = ROOTFS_DIR
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_variables_join_the_fixed_list_but_portage_controls_do_not() {
        let text = "name = 'x'\npackages = ['a/b']\n[env]\nCFLAGS = '-O3'\nMY_FLAG = '1'\nMAKEOPTS = '-j9'\n\
                    PORTAGE_NICENESS = '3'\nFEATURES = 'nostrip'\n[env.fast]\nOTHER = '2'\nACCEPT_LICENSE = '*'\n";
        let spec = ImageSpec::parse(text, None).unwrap();
        let names = fingerprint_variables(&spec);
        for wanted in ["CFLAGS", "MY_FLAG", "OTHER", "FEATURES", "LDFLAGS", "CHOST"] {
            assert!(
                names.iter().any(|n| n == wanted),
                "{wanted} missing: {names:?}"
            );
        }
        for unwanted in ["MAKEOPTS", "PORTAGE_NICENESS", "ACCEPT_LICENSE", "USE"] {
            assert!(
                !names.iter().any(|n| n == unwanted),
                "{unwanted} compared: {names:?}"
            );
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn the_scripts_parse() {
        let bash = std::process::Command::new("bash")
            .args(["-n", "-c", BASHRC_BLOCK])
            .output()
            .unwrap();
        assert!(
            bash.status.success(),
            "{}",
            String::from_utf8_lossy(&bash.stderr)
        );
        let spec = ImageSpec::parse("name = 'x'\npackages = ['a/b']\n", None).unwrap();
        let rootfs = rootfs_argv(vec!["emerge".to_owned()]);
        for script in [
            check_script(&spec, &["a/b".to_owned()]),
            verify_script(),
            direct_merge_script(),
            rootfs[2].clone(),
        ] {
            let sh = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                sh.status.success(),
                "{}\n{script}",
                String::from_utf8_lossy(&sh.stderr)
            );
        }
        // The Python script compiles (a syntax error would only show in a builder otherwise).
        if let Ok(out) = std::process::Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(CHECK_SCRIPT.as_bytes())?;
                child.wait_with_output()
            })
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn direct_merge_lines_are_told_apart_from_emerge_lines() {
        assert_eq!(
            parse_direct_merge_line(
                ">>> Emerging binary (1 of 6) dev-libs/libfoo-1::gentoo for /tmp/rootfs/ (merged directly)"
            ),
            Some("dev-libs/libfoo-1".to_owned())
        );
        assert_eq!(
            parse_direct_merge_line(
                ">>> Emerging binary (2 of 6) sys-libs/glibc-2.36::gentoo for /tmp/rootfs/"
            ),
            None
        );
        assert_eq!(parse_direct_merge_line("staves: (merged directly)"), None);
    }

    #[test]
    fn the_rootfs_command_wraps_emerge_and_unwraps_back() {
        let emerge: Vec<String> = ["emerge", "--root=/tmp/rootfs", "app-misc/hello"]
            .iter()
            .map(|w| (*w).to_owned())
            .collect();
        let argv = rootfs_argv(emerge.clone());
        assert_eq!(argv[0], "/bin/sh");
        assert!(argv[2].contains("--noreplace --deep"), "{}", argv[2]);
        assert!(argv[2].contains(DIRECT_MERGED), "{}", argv[2]);
        assert_eq!(unwrapped_argv(&argv), emerge.as_slice());
        assert_eq!(unwrapped_argv(&emerge), emerge.as_slice());
        let script = direct_merge_script();
        assert!(
            script.contains("staves_python merge /tmp/rootfs"),
            "{script}"
        );
        assert!(
            script.contains(&format!("{SKIPPED_MARKER}{DIRECT_MERGE_SKIP_REASON}")),
            "{script}"
        );
    }

    #[test]
    fn skipped_lines_carry_their_reason() {
        assert_eq!(
            parse_skipped_line("staves: skipped: nothing to compile"),
            Some("nothing to compile")
        );
        assert_eq!(parse_skipped_line("staves: skipped: "), None);
        assert_eq!(parse_skipped_line(">>> Emerging (1 of 2) a/b-1"), None);
    }

    #[test]
    fn the_bashrc_block_and_the_script_use_the_same_names() {
        for (bashrc, script) in [
            (
                "build-info/STAVES_BUILD_ENV\"",
                "RECORD_KEY = \"STAVES_BUILD_ENV\"",
            ),
            ("build-info/STAVES_BUILD\"", "NONCE_KEY = \"STAVES_BUILD\""),
            (
                "echo \"staves-build-env 1\"",
                "RECORD_HEADER = \"staves-build-env 1\"",
            ),
            (
                "/var/tmp/staves/build-env-vars",
                "STATE_DIR + \"/build-env-vars\"",
            ),
            (
                "/var/tmp/staves/build-nonce",
                "STATE_DIR + \"/build-nonce\"",
            ),
        ] {
            assert!(BASHRC_BLOCK.contains(bashrc), "{bashrc}");
            assert!(CHECK_SCRIPT.contains(script), "{script}");
        }
        assert!(CHECK_SCRIPT.contains("STATE_DIR = \"/var/tmp/staves\""));
        assert!(CHECK_SCRIPT.contains(&format!("\"/{MASK_FILE}\"")));
        assert!(CHECK_SCRIPT.contains("STATE_DIR + \"/binpkg-usable\""));
        // The FEATURES tokens the bashrc keeps are the script's OUTPUT_FEATURES.
        assert!(BASHRC_BLOCK.contains(
            "compressdebug|dedupdebug|installsources|nodoc|noinfo|noman|nostrip|splitdebug"
        ));
        assert!(CHECK_SCRIPT.contains(
            "\"compressdebug dedupdebug installsources nodoc noinfo noman nostrip splitdebug\""
        ));
    }
}
