//! The shell scripts of the plan's shell steps. Every value from the spec goes through [`shell_quote`].

use super::{ROOTFS_DIR, STAGING_DIR};
use crate::portage::{MAKE_CONF_BEGIN, MAKE_CONF_END, PortageFile, WriteMode, shell_quote};
use crate::spec::Locale;
use std::collections::BTreeSet;

/// Install the staged files into place.
///
/// A `package.*`, `env` or `repos.conf` that the builder has as a plain file is turned into a directory holding
/// that file as `00-builder`, so the builder's own settings are kept. The `make.conf` block replaces an earlier
/// Staves block, so running the plan twice in one container gives the same configuration.
pub(crate) fn install_files(files: &[PortageFile]) -> String {
    let mut s = String::from("set -eu\n");
    s.push_str(&format!("staging={}\n", shell_quote(STAGING_DIR)));
    let dirs: BTreeSet<String> = files
        .iter()
        .filter(|f| f.mode == WriteMode::Replace)
        .filter_map(|f| f.path.rsplit_once('/').map(|(dir, _)| format!("/{dir}")))
        .collect();
    for dir in &dirs {
        let q = shell_quote(dir);
        s.push_str(&format!(
            "if [ -f {q} ] || [ -L {q} ]; then mv {q} {q}.staves-tmp && mkdir -p {q} && mv {q}.staves-tmp {q}/00-builder; fi\n"
        ));
        s.push_str(&format!("mkdir -p {q}\n"));
    }
    for file in files {
        let src = format!("\"$staging\"/{}", shell_quote(&file.path));
        let dest = shell_quote(&format!("/{}", file.path));
        match file.mode {
            WriteMode::Replace => s.push_str(&format!("cp {src} {dest}\n")),
            WriteMode::AppendBlock => {
                s.push_str(&format!(
                    "if [ -d {dest} ]; then cp {src} {dest}/zz-staves.conf; else\n  touch {dest}\n  \
                     sed -i '/^{begin}$/,/^{end}$/d' {dest}\n  cat {src} >> {dest}\nfi\n",
                    begin = sed_escape(MAKE_CONF_BEGIN),
                    end = sed_escape(MAKE_CONF_END),
                ));
            }
        }
    }
    s
}

fn sed_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escape = matches!(c, '/' | '.' | '*' | '[' | ']' | '^' | '$' | '\\');
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

/// Detect the libc; for glibc, generate the locale and copy the archive into the rootfs.
pub(crate) fn locale(locale: &Locale) -> String {
    let line = shell_quote(&format!("{} {}", locale.name, locale.charset));
    format!(
        r#"set -eu
elibc=$(portageq envvar ELIBC)
case "$elibc" in
  glibc)
    printf '%s\n' {line} >> /etc/locale.gen
    rm -f /usr/lib/locale/locale-archive
    locale-gen
    if [ ! -s /usr/lib/locale/locale-archive ]; then
      echo "staves: locale-gen did not write /usr/lib/locale/locale-archive for "{line}"; check the locale name and charset" >&2
      exit 1
    fi
    mkdir -p {rootfs}/usr/lib/locale
    cp /usr/lib/locale/locale-archive {rootfs}/usr/lib/locale/locale-archive
    ;;
  musl)
    echo "staves: musl libc: no locale archive to generate"
    ;;
  '')
    echo "staves: 'portageq envvar ELIBC' printed nothing: the builder has no Portage profile; set /etc/portage/make.profile in the builder image" >&2
    exit 1
    ;;
  *)
    echo "staves: unsupported libc '$elibc' (ELIBC): Staves knows glibc and musl" >&2
    exit 1
    ;;
esac
"#,
        rootfs = ROOTFS_DIR,
    )
}

/// Copy gcc runtime libraries from the builder's `/usr/lib/gcc/<CHOST>/<version>/` into the rootfs libdir.
///
/// The newest version wins when several gcc versions are installed. The rootfs libdir is `/usr/lib64` when the
/// builder has that directory (amd64, arm64), else `/usr/lib`; it is created when missing, so a library is never
/// copied to a path that should have been a directory.
pub(crate) fn libraries(names: &[&str]) -> String {
    let mut s = format!(
        r#"set -eu
if [ -d /usr/lib64 ] && [ ! -L /usr/lib64 ]; then libdir=usr/lib64; else libdir=usr/lib; fi
mkdir -p {rootfs}/"$libdir"
"#,
        rootfs = ROOTFS_DIR
    );
    for name in names {
        let q = shell_quote(name);
        s.push_str(&format!(
            r#"lib=$(find /usr/lib/gcc -name {q} \( -type f -o -type l \) 2>/dev/null | sort -V | tail -n 1)
if [ -z "$lib" ]; then
  echo "staves: "{q}" not found under /usr/lib/gcc in the builder; the builder image needs gcc's runtime libraries (a Gentoo stage3 has them)" >&2
  exit 1
fi
cp -L "$lib" {rootfs}/"$libdir"/{q}
echo "staves: copied $lib to /$libdir/"{q}
"#,
            rootfs = ROOTFS_DIR
        ));
    }
    s
}

/// Print one line per package in the rootfs package database.
pub(crate) fn package_list() -> String {
    format!(
        r#"set -eu
cd {rootfs}/var/db/pkg 2>/dev/null || exit 0
for d in */*/; do
  [ -d "$d" ] || continue
  d=${{d%/}}
  printf '{marker}\t%s\t%s\t%s\t%s\n' "$d" "$(cat "$d/repository" 2>/dev/null || true)" "$(cat "$d/USE" 2>/dev/null || true)" "$(cat "$d/IUSE" 2>/dev/null || true)"
done
"#,
        rootfs = ROOTFS_DIR,
        marker = crate::portage::PACKAGE_LIST_MARKER,
    )
}
