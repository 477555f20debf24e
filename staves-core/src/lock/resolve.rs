//! Resolving a spec without building: the script of the resolve step (`emerge --pretend --verbose` for the build
//! dependencies and for the rootfs), and the parser of what it prints.

use super::{LockedPackage, LockedRepository, Lockfile};
use crate::portage::ROOTFS_DIR;
use crate::portage::{repository_location, shell_quote};
use serde::Serialize;

/// The marker that starts every line of the resolve script that is not Portage's own output.
pub(crate) const MARKER: &str = "staves-lock";

/// Where the pins are written in the builder (see [`super::Pins::render_package_mask`]).
pub(crate) const PINS_FILE: &str = "etc/portage/package.mask/staves-lock";

/// The comment that precedes each pin's mask lines: `# staves-pin CATEGORY/PACKAGE VERSION REPOSITORY`; the resolve
/// script reads it to check that the snapshot still has each pinned version.
pub(crate) const PIN_COMMENT: &str = "# staves-pin";

/// Where the portage snapshot is mounted in the builder.
const SNAPSHOT_DIR: &str = "/var/db/repos/gentoo";

/// The resolve step: report the snapshot's timestamp and each repository's commit, list pinned versions that the
/// repositories no longer have (and stop there when there are any), then resolve the build dependencies (as step
/// (a) of a build, into the builder) and the rootfs (as step (b), into [`ROOTFS_DIR`]) with `emerge --pretend`.
///
/// Binary packages are not consulted (`--usepkg` is left out): a lock names versions the snapshot has, not what a
/// cache volume happens to hold. The script exits with emerge's code when a resolution fails.
pub(crate) fn resolve_script(
    build_atoms: &[String],
    rootfs_atoms: &[String],
    repositories: &[String],
) -> String {
    let atoms = |list: &[String]| {
        list.iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut s = format!(
        r#"set -u
marker={marker}
if [ -f {snapshot}/metadata/timestamp.chk ]; then
  printf '%s\ttimestamp\t%s\n' "$marker" "$(head -n 1 {snapshot}/metadata/timestamp.chk)"
fi
"#,
        marker = MARKER,
        snapshot = SNAPSHOT_DIR,
    );
    for name in repositories {
        let location = shell_quote(&repository_location(name));
        s.push_str(&format!(
            "printf '%s\\trepository\\t%s\\t%s\\n' \"$marker\" {name} \"$(git -C {location} rev-parse HEAD 2>/dev/null || true)\"\n",
            name = shell_quote(name),
        ));
    }
    s.push_str(&format!(
        r#"pins=/{pins}
missing=
if [ -f "$pins" ]; then
  # One portageq call per repository, not per pin.
  locations=/var/tmp/staves/repository-locations
  mkdir -p "$(dirname "$locations")"
  : > "$locations"
  for repo in $(sed -n 's/^{comment} [^ ]* [^ ]* \([^ ]*\)$/\1/p' "$pins" | sort -u); do
    printf '%s %s\n' "$repo" "$(portageq get_repo_path / "$repo" 2>/dev/null)" >> "$locations"
  done
  missing=$(grep '^{comment} ' "$pins" | while read -r _ _ cp version repo; do
    location=$(sed -n "s|^$repo ||p" "$locations")
    if [ -z "$location" ] || [ ! -f "$location/$cp/${{cp#*/}}-$version.ebuild" ]; then
      printf '%s\tmissing\t=%s-%s::%s\n' "$marker" "$cp" "$version" "$repo"
    fi
  done)
fi
if [ -n "$missing" ]; then
  printf '%s\n' "$missing"
  exit 0
fi
mkdir -p {rootfs}
printf '%s\tbegin\tbuilder\n' "$marker"
emerge --pretend --verbose --onlydeps --with-bdeps=y --emptytree {build}
status=$?
printf '%s\tend\tbuilder\t%s\n' "$marker" "$status"
if [ "$status" -ne 0 ]; then exit "$status"; fi
printf '%s\tbegin\trootfs\n' "$marker"
emerge --pretend --verbose --root={rootfs} --root-deps=rdeps --oneshot {rootfs_atoms}
status=$?
printf '%s\tend\trootfs\t%s\n' "$marker" "$status"
exit "$status"
"#,
        pins = PINS_FILE,
        comment = PIN_COMMENT,
        rootfs = ROOTFS_DIR,
        build = atoms(build_atoms),
        rootfs_atoms = atoms(rootfs_atoms),
    ));
    s
}

/// One package line of `emerge --pretend --verbose`: `[ebuild  N     ] cat/pkg-1:2::repo [old] to /root/ USE="…"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PretendEntry {
    /// The package: version, repository, slot (`0` when emerge shows none) and USE flags (`USE` and every shown
    /// USE_EXPAND variable, the latter in long form).
    pub package: LockedPackage,
    /// A binary package (`[binary …]`) rather than an ebuild.
    pub binary: bool,
    /// The root it goes to when emerge names one (`to /tmp/rootfs/`), without the trailing `/`.
    pub root: Option<String>,
}

/// Recognise one package line of `emerge --pretend --verbose`. Other lines (headers, blockers, uninstalls,
/// totals) give `None`.
pub fn parse_pretend_line(line: &str) -> Option<PretendEntry> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (tag, rest) = rest.split_once(']')?;
    let binary = match tag.split_whitespace().next()? {
        "ebuild" => false,
        "binary" => true,
        _ => return None,
    };
    let mut tokens = tokens(rest).into_iter();
    let package = tokens.next()?;
    let atom = crate::spec::Atom::parse(&format!("={package}")).ok()?;
    let (version, repository) = (atom.version()?, atom.repository()?);
    if atom.is_wildcard() || !atom.use_deps().is_empty() {
        return None;
    }
    let slot = atom.slot().unwrap_or("0").to_owned();
    let mut root = None;
    let mut use_flags = Vec::new();
    let mut in_old_version = false;
    while let Some(token) = tokens.next() {
        if in_old_version {
            in_old_version = !token.ends_with(']');
            continue;
        }
        if token.starts_with('[') {
            in_old_version = !token.ends_with(']');
            continue;
        }
        if token == "to" {
            root = tokens
                .next()
                .map(|r| r.trim_end_matches('/').to_owned())
                .map(|r| if r.is_empty() { "/".to_owned() } else { r });
            continue;
        }
        if let Some((name, value)) = token.split_once("=\"") {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                continue;
            }
            let prefix = if name == "USE" {
                String::new()
            } else {
                format!("{}_", name.to_ascii_lowercase())
            };
            for flag in value.trim_end_matches('"').split_whitespace() {
                if let Some(flag) = clean_flag(flag, &prefix) {
                    use_flags.push(flag);
                }
            }
        }
    }
    Some(PretendEntry {
        package: LockedPackage::new(atom.cp(), version, repository, slot, use_flags),
        binary,
        root,
    })
}

/// A flag as emerge prints it (`nls`, `-nls%`, `(-nls)`, `doc*`) → the lock's form (`nls`, `-nls`, `(-nls)`,
/// `doc`), with `prefix` put before the name. Flags that a package no longer has (`(-flag%)`) give `None`.
fn clean_flag(flag: &str, prefix: &str) -> Option<String> {
    let (inner, fixed) = match flag.strip_prefix('(').and_then(|f| f.strip_suffix(')')) {
        Some(inner) => (inner, true),
        None => (flag, false),
    };
    let new = inner.contains('%');
    let inner = inner.trim_end_matches(['%', '*']);
    let (name, off) = match inner.strip_prefix('-') {
        Some(name) => (name, true),
        None => (inner, false),
    };
    if fixed && off && new {
        // `(-flag%)`: the flag was removed from IUSE; it is not a flag of the package any more.
        return None;
    }
    let name = format!("{prefix}{name}");
    if !crate::spec::is_use_flag_name(&name) {
        return None;
    }
    let flag = if off { format!("-{name}") } else { name };
    Some(if fixed { format!("({flag})") } else { flag })
}

/// Split at whitespace, keeping `NAME="a b c"` together.
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&text[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// What the resolve step found: the two resolutions, the snapshot's timestamp, each repository's commit, and the
/// pinned versions the repositories no longer have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Resolution {
    /// Packages the rootfs gets, sorted.
    pub rootfs: Vec<LockedPackage>,
    /// Packages the builder gets (build dependencies), sorted.
    pub builder: Vec<LockedPackage>,
    /// The first line of the snapshot's `metadata/timestamp.chk`.
    pub portage_timestamp: Option<String>,
    /// Each extra repository and its commit.
    pub repositories: Vec<LockedRepository>,
    /// Pinned versions the repositories lack, `=category/package-version::repository`. When there are any, the
    /// resolution was not attempted and `rootfs`/`builder` are empty.
    pub missing: Vec<String>,
}

impl Resolution {
    /// The lock this resolution gives for a spec with hash `spec_hash`, resolved in the given images.
    pub fn into_lock(
        self,
        spec_hash: impl Into<String>,
        builder_image: Option<String>,
        portage_image: Option<String>,
    ) -> Lockfile {
        let mut lock = Lockfile::new(spec_hash);
        lock.builder_image = builder_image;
        lock.portage_image = portage_image;
        lock.portage_timestamp = self.portage_timestamp;
        lock.repositories = self.repositories;
        lock.rootfs = self.rootfs;
        lock.builder = self.builder;
        lock.normalize();
        lock
    }
}

/// Parse the resolve step's output (see [`crate::StepKind::Resolve`]).
///
/// In the rootfs resolution, packages that go to `/` rather than the rootfs are build dependencies of rootfs
/// packages; they count as builder packages. `Err` says what is missing when the output is not a complete
/// resolution.
pub fn parse_resolution(output: &str) -> Result<Resolution, String> {
    let mut resolution = Resolution::default();
    let mut section: Option<String> = None;
    let mut finished = Vec::new();
    let rootfs_dir = ROOTFS_DIR.trim_end_matches('/');
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix(MARKER).and_then(|r| r.strip_prefix('\t')) {
            let fields: Vec<&str> = rest.split('\t').collect();
            match fields.as_slice() {
                ["timestamp", value] => {
                    let value = value.trim();
                    resolution.portage_timestamp = (!value.is_empty()).then(|| value.to_owned());
                }
                ["repository", name, commit] => {
                    let commit = commit.trim();
                    resolution.repositories.push(LockedRepository {
                        name: (*name).to_owned(),
                        commit: (!commit.is_empty()).then(|| commit.to_owned()),
                    });
                }
                ["missing", atom] => resolution.missing.push((*atom).to_owned()),
                ["begin", name] => section = Some((*name).to_owned()),
                ["end", name, status] => {
                    if status.trim() != "0" {
                        return Err(format!(
                            "emerge --pretend for the {name} failed (exit code {})",
                            status.trim()
                        ));
                    }
                    finished.push((*name).to_owned());
                    section = None;
                }
                _ => {}
            }
            continue;
        }
        let Some(section) = section.as_deref() else {
            continue;
        };
        let Some(entry) = parse_pretend_line(line) else {
            continue;
        };
        let into_rootfs = section == "rootfs"
            && entry
                .root
                .as_deref()
                .is_some_and(|r| r.trim_end_matches('/') == rootfs_dir);
        if into_rootfs {
            resolution.rootfs.push(entry.package);
        } else {
            resolution.builder.push(entry.package);
        }
    }
    resolution.missing.sort();
    resolution.missing.dedup();
    if resolution.missing.is_empty() {
        for name in ["builder", "rootfs"] {
            if !finished.iter().any(|f| f == name) {
                return Err(format!(
                    "the output has no complete {name} resolution (the step stopped early)"
                ));
            }
        }
    }
    resolution.repositories.sort();
    for list in [&mut resolution.rootfs, &mut resolution.builder] {
        list.sort();
        list.dedup();
    }
    Ok(resolution)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_new_reinstall_and_upgrade_lines() {
        let e = parse_pretend_line(
            "[ebuild  N     ] app-misc/hello-1::gentoo to /tmp/rootfs/ USE=\"nls -static%\" 0 KiB",
        )
        .unwrap();
        assert_eq!(e.package.atom(), "=app-misc/hello-1::gentoo");
        assert_eq!(e.package.slot, "0");
        assert_eq!(e.package.use_flags, ["nls", "-static"]);
        assert_eq!(e.root.as_deref(), Some("/tmp/rootfs"));
        assert!(!e.binary);

        let e = parse_pretend_line(
            "[ebuild     U  ] dev-lang/python-3.12.1-r1:3.12/3.12::gentoo [3.12.0:3.12/3.12::gentoo] \
             USE=\"ssl (-doc) -tk* (test%*)\" PYTHON_TARGETS=\"python3_12 -python3_11\" 20 MiB",
        )
        .unwrap();
        assert_eq!(e.package.cpv(), "dev-lang/python-3.12.1-r1");
        assert_eq!(e.package.slot, "3.12/3.12");
        assert_eq!(e.package.slot_name(), "3.12");
        assert_eq!(
            e.package.use_flags,
            [
                "(-doc)",
                "-python_targets_python3_11",
                "python_targets_python3_12",
                "ssl",
                "(test)",
                "-tk"
            ]
        );
        assert_eq!(e.root, None);

        let e = parse_pretend_line(
            "[binary   R    ] sys-libs/zlib-1.3:0/1::gentoo [1.2:0/1::gentoo, 1.2.13:0/1::gentoo] USE=\"(-removed%)\"",
        )
        .unwrap();
        assert!(e.binary);
        assert!(e.package.use_flags.is_empty());
        assert_eq!(e.package.slot, "0/1");

        for other in [
            "Calculating dependencies ... done!",
            "[blocks B      ] app-misc/foo (\"app-misc/foo\" is blocking app-misc/bar-1)",
            "[uninstall     ] app-misc/foo-1::gentoo",
            "[ebuild  N     ] not-an-atom",
            "Total: 3 packages (3 new), Size of downloads: 0 KiB",
        ] {
            assert_eq!(parse_pretend_line(other), None, "{other}");
        }
    }

    #[test]
    fn resolution_splits_rootfs_and_builder_and_reads_markers() {
        let out = "staves-lock\ttimestamp\tMon, 30 Nov 2026 00:00:01 +0000\n\
                   staves-lock\trepository\tstaves-extra\tabc1234def\n\
                   staves-lock\tbegin\tbuilder\n\
                   [ebuild  N     ] dev-libs/libfoo-1::gentoo  0 KiB\n\
                   [ebuild  N     ] dev-util/buildtool-1::gentoo  0 KiB\n\
                   staves-lock\tend\tbuilder\t0\n\
                   staves-lock\tbegin\trootfs\n\
                   [ebuild  N     ] dev-libs/libfoo-1::gentoo to /tmp/rootfs/ 0 KiB\n\
                   [ebuild  N     ] dev-util/buildtool-1::gentoo  0 KiB\n\
                   [ebuild  N     ] app-misc/hello-1::gentoo to /tmp/rootfs/ USE=\"nls\" 0 KiB\n\
                   staves-lock\tend\trootfs\t0\n";
        let r = parse_resolution(out).unwrap();
        let atoms = |l: &[LockedPackage]| l.iter().map(LockedPackage::atom).collect::<Vec<_>>();
        assert_eq!(
            atoms(&r.rootfs),
            ["=app-misc/hello-1::gentoo", "=dev-libs/libfoo-1::gentoo"]
        );
        assert_eq!(
            atoms(&r.builder),
            [
                "=dev-libs/libfoo-1::gentoo",
                "=dev-util/buildtool-1::gentoo"
            ]
        );
        assert_eq!(
            r.portage_timestamp.as_deref(),
            Some("Mon, 30 Nov 2026 00:00:01 +0000")
        );
        assert_eq!(r.repositories[0].commit.as_deref(), Some("abc1234def"));
        assert!(r.missing.is_empty());
    }

    #[test]
    fn incomplete_or_failed_resolutions_are_errors_unless_pins_are_missing() {
        assert!(parse_resolution("staves-lock\tbegin\tbuilder\n").is_err());
        let failed = "staves-lock\tbegin\tbuilder\nstaves-lock\tend\tbuilder\t1\n";
        assert!(
            parse_resolution(failed)
                .unwrap_err()
                .contains("exit code 1")
        );
        let missing = "staves-lock\tmissing\t=app-misc/versioned-1::gentoo\n";
        assert_eq!(
            parse_resolution(missing).unwrap().missing,
            ["=app-misc/versioned-1::gentoo"]
        );
    }
}
