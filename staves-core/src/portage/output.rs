//! Reading what Portage prints: emerge's progress lines, and the rootfs package list (the script that prints it
//! and its parser, kept together so the format has one owner).

use super::ROOTFS_DIR;
use serde::{Deserialize, Serialize};

/// A file that Staves itself put into the rootfs (not owned by any package).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedFile {
    /// Path in the image, without a leading `/`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Why it is there (`locale archive`, `libgcc`, `libstdc++`).
    pub reason: String,
}

/// A progress line from `emerge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum EmergeEvent {
    /// `>>> Emerging (k of n) cat/pkg-ver::repo`, or `>>> Emerging binary (k of n) …`.
    Emerging {
        /// Position of this package in the merge list, from 1.
        index: usize,
        /// Length of the merge list.
        total: usize,
        /// `category/package-version`.
        cpv: String,
        /// The repository, when emerge names it.
        repository: Option<String>,
        /// Installed from a binary package rather than built from source.
        binary: bool,
    },
}

/// Recognise an emerge progress line. Other lines give `None`.
pub(crate) fn parse_emerge_line(line: &str) -> Option<EmergeEvent> {
    let rest = line.trim_start().strip_prefix(">>> Emerging ")?;
    let (binary, rest) = match rest.strip_prefix("binary ") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.strip_prefix('(')?;
    let (counts, rest) = rest.split_once(')')?;
    let (index, total) = counts.split_once(" of ")?;
    let index = index.trim().parse().ok()?;
    let total = total.trim().parse().ok()?;
    let package = rest.split_whitespace().next()?;
    let (cpv, repository) = match package.split_once("::") {
        Some((cpv, repo)) => (cpv, Some(repo.to_owned())),
        None => (package, None),
    };
    if !cpv.contains('/') {
        return None;
    }
    Some(EmergeEvent::Emerging {
        index,
        total,
        cpv: cpv.to_owned(),
        repository,
        binary,
    })
}

/// A package installed in the rootfs, read from its `/var/db/pkg` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InstalledPackage {
    /// `category/package-version` (with revision).
    pub cpv: String,
    /// The USE flags it was built with (only flags it declares in IUSE), sorted.
    #[serde(rename = "use")]
    pub use_flags: Vec<String>,
    /// The repository it came from.
    pub repository: String,
    /// Installed from a binary package (`Some(true)`), built from source (`Some(false)`), or unknown.
    pub binary: Option<bool>,
    /// The slot (`SLOT`, e.g. `0` or `3.11/3.11`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The Gentoo `LICENSE` expression, as the package declares it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// `HOMEPAGE` (may list several URLs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    /// `DESCRIPTION`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Installed size in bytes (`SIZE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Number of files, directories and symlinks it owns (entries of `CONTENTS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
}

/// The marker that starts each line the package-list step prints.
pub(crate) const PACKAGE_LIST_MARKER: &str = "staves-pkg";
/// The marker of the package-list step's lines about files Staves itself added to the rootfs.
pub(crate) const ADDED_FILE_MARKER: &str = "staves-added";

/// Parse the package-list step's `staves-added<TAB>path<TAB>size<TAB>reason` lines: the files Staves added to the
/// rootfs outside any package (the locale archive, libgcc, libstdc++).
pub fn parse_added_files(output: &str) -> Vec<AddedFile> {
    let mut added: Vec<AddedFile> = output
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            if fields.next()? != ADDED_FILE_MARKER {
                return None;
            }
            let path = fields.next()?.trim().trim_start_matches('/').to_owned();
            let size = fields.next()?.trim().parse().ok()?;
            let reason = fields.next().unwrap_or("").trim().to_owned();
            (!path.is_empty()).then_some(AddedFile { path, size, reason })
        })
        .collect();
    added.sort_by(|a, b| a.path.cmp(&b.path));
    added
}

/// The package-list step's script: the files Staves added outside any package (`staves-added<TAB>path<TAB>size<TAB>
/// reason`, read by [`parse_added_files`]), then one line per package in the rootfs package database, read back by
/// [`parse_package_list`].
pub(crate) fn package_list_script() -> String {
    format!(
        r#"set -eu
if [ -d /usr/lib64 ] && [ ! -L /usr/lib64 ]; then libdir=usr/lib64; else libdir=usr/lib; fi
for entry in "usr/lib/locale/locale-archive|locale archive" "$libdir/libgcc_s.so.1|libgcc" "$libdir/libstdc++.so.6|libstdc++"; do
  path=${{entry%%|*}}
  if [ -f "{rootfs}/$path" ] && [ ! -L "{rootfs}/$path" ]; then
    printf '{added}\t%s\t%s\t%s\n' "$path" "$(wc -c < "{rootfs}/$path" | tr -d ' ')" "${{entry#*|}}"
  fi
done
cd {rootfs}/var/db/pkg 2>/dev/null || exit 0
for d in */*/; do
  [ -d "$d" ] || continue
  d=${{d%/}}
  field() {{ if [ -f "$d/$1" ]; then tr '\t\n' '  ' < "$d/$1"; fi; }}
  files=$(grep -c '' "$d/CONTENTS" 2>/dev/null || true)
  printf '{marker}\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$d" "$(field repository)" "$(field USE)" "$(field IUSE)" \
    "$(field SLOT)" "$(field LICENSE)" "$(field SIZE)" "${{files:-0}}" "$(field HOMEPAGE)" "$(field DESCRIPTION)"
done
"#,
        rootfs = ROOTFS_DIR,
        marker = PACKAGE_LIST_MARKER,
        added = ADDED_FILE_MARKER,
    )
}

/// Parse the package-list step's output: one
/// `staves-pkg<TAB>cat/pf<TAB>repo<TAB>USE<TAB>IUSE<TAB>SLOT<TAB>LICENSE<TAB>SIZE<TAB>files<TAB>HOMEPAGE<TAB>DESCRIPTION`
/// line per package (the fields after IUSE are optional).
///
/// Other lines are ignored. USE is intersected with IUSE so that implicit flags (`amd64`, `elibc_glibc`, …) are
/// left out. `binary` is left unknown; the builder fills it in from emerge's output.
pub(crate) fn parse_package_list(output: &str) -> Vec<InstalledPackage> {
    let mut packages: Vec<InstalledPackage> = output
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            if fields.next()? != PACKAGE_LIST_MARKER {
                return None;
            }
            let cpv = fields.next()?.trim();
            let repository = fields.next().unwrap_or("").trim().to_owned();
            let used: Vec<&str> = fields.next().unwrap_or("").split_whitespace().collect();
            let declared: Vec<&str> = fields
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(|flag| flag.trim_start_matches(['+', '-']))
                .collect();
            let mut use_flags: Vec<String> = used
                .into_iter()
                .filter(|f| declared.contains(f))
                .map(str::to_owned)
                .collect();
            use_flags.sort();
            use_flags.dedup();
            let mut text = || {
                fields
                    .next()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            let slot = text();
            let license = text();
            let size = text().and_then(|s| s.parse().ok());
            let files = text().and_then(|s| s.parse().ok());
            let homepage = text();
            let description = text();
            (!cpv.is_empty()).then(|| InstalledPackage {
                cpv: cpv.to_owned(),
                use_flags,
                repository,
                binary: None,
                slot,
                license,
                homepage,
                description,
                size,
                files,
            })
        })
        .collect();
    packages.sort_by(|a, b| a.cpv.cmp(&b.cpv));
    packages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_and_binary_emerge_lines() {
        assert_eq!(
            parse_emerge_line(">>> Emerging (2 of 3) app-misc/hello-1::gentoo"),
            Some(EmergeEvent::Emerging {
                index: 2,
                total: 3,
                cpv: "app-misc/hello-1".into(),
                repository: Some("gentoo".into()),
                binary: false
            })
        );
        assert_eq!(
            parse_emerge_line(">>> Emerging binary (1 of 3) dev-libs/libfoo-1::gentoo"),
            Some(EmergeEvent::Emerging {
                index: 1,
                total: 3,
                cpv: "dev-libs/libfoo-1".into(),
                repository: Some("gentoo".into()),
                binary: true
            })
        );
        assert_eq!(parse_emerge_line(">>> Emerging (x of 3) a/b-1"), None);
        assert_eq!(parse_emerge_line(">>> Installing (1 of 3) a/b-1"), None);
        assert_eq!(parse_emerge_line("Calculating dependencies... done!"), None);
    }

    #[test]
    fn the_package_list_script_prints_what_the_parser_reads() {
        let root = tempfile::tempdir().unwrap();
        let vdb = root.path().join("var/db/pkg");
        for (cpv, repo, used, iuse) in [
            ("app-misc/hello-1", "gentoo", "amd64 nls", "+nls doc"),
            ("dev-libs/libfoo-2-r1", "extra", "", ""),
        ] {
            let dir = vdb.join(cpv);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("repository"), format!("{repo}\n")).unwrap();
            std::fs::write(dir.join("USE"), format!("{used}\n")).unwrap();
            std::fs::write(dir.join("IUSE"), format!("{iuse}\n")).unwrap();
        }
        let script = package_list_script().replace(ROOTFS_DIR, &root.path().display().to_string());
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pkgs = parse_package_list(&String::from_utf8_lossy(&out.stdout));
        let got: Vec<(&str, &str, Vec<String>)> = pkgs
            .iter()
            .map(|p| (p.cpv.as_str(), p.repository.as_str(), p.use_flags.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("app-misc/hello-1", "gentoo", vec!["nls".to_owned()]),
                ("dev-libs/libfoo-2-r1", "extra", vec![]),
            ]
        );
    }

    #[test]
    fn package_list_keeps_declared_use_flags_only() {
        let out = "noise\nstaves-pkg\tapp-misc/hello-1\tgentoo\tamd64 elibc_glibc nls\t+nls\n\
                   staves-pkg\tdev-libs/libfoo-1\tgentoo\tamd64\t\n";
        let pkgs = parse_package_list(out);
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].cpv, "app-misc/hello-1");
        assert_eq!(pkgs[0].use_flags, vec!["nls"]);
        assert_eq!(pkgs[0].repository, "gentoo");
        assert!(pkgs[1].use_flags.is_empty());
        assert_eq!(pkgs[1].slot, None);
    }

    #[test]
    fn added_files_are_read() {
        let out = "staves-added\tusr/lib/locale/locale-archive\t3000\tlocale archive\n\
                   staves-added\tusr/lib64/libgcc_s.so.1\tnot-a-number\tlibgcc\nstaves-pkg\ta/b-1\n";
        let added = parse_added_files(out);
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].path, "usr/lib/locale/locale-archive");
        assert_eq!(added[0].size, 3000);
        assert_eq!(added[0].reason, "locale archive");
        assert!(parse_package_list(out).iter().all(|p| p.cpv == "a/b-1"));
    }

    #[test]
    fn package_list_reads_vdb_details() {
        let out = "staves-pkg\tsys-libs/glibc-2.36\tgentoo\tamd64\t\t2.2\tLGPL-2.1+ BSD\t12345\t42\
                   \thttps://www.gnu.org/software/libc/ https://x\tGNU libc C library\n";
        let pkgs = parse_package_list(out);
        let p = &pkgs[0];
        assert_eq!(p.slot.as_deref(), Some("2.2"));
        assert_eq!(p.license.as_deref(), Some("LGPL-2.1+ BSD"));
        assert_eq!(p.size, Some(12345));
        assert_eq!(p.files, Some(42));
        assert_eq!(
            p.homepage.as_deref(),
            Some("https://www.gnu.org/software/libc/ https://x")
        );
        assert_eq!(p.description.as_deref(), Some("GNU libc C library"));
    }
}
