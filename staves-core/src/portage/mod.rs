//! Turn an [`ImageSpec`] into Portage configuration: `make.conf`, `env/*`, `package.*` and `repos.conf`.
//!
//! Everything here is a pure function of the spec: nothing touches Docker or the file system.

mod output;
mod quote;

pub use output::{AddedFile, EmergeEvent, InstalledPackage, parse_added_files};
pub(crate) use output::{package_list_script, parse_emerge_line, parse_package_list};
pub(crate) use quote::{ini_value, make_conf_value, shell_quote};

use crate::spec::ImageSpec;
use serde::Serialize;

/// Where the builder keeps its Portage configuration.
pub const PORTAGE_CONFIG_DIR: &str = "etc/portage";

/// The name Staves gives every `package.*` and `repos.conf` file it writes.
///
/// File names never come from user input, except named environments (`env/NAME`), whose names the spec
/// validation restricts to a single safe path component.
const STAVES_FILE: &str = "staves";

/// Markers around the block Staves appends to the builder's `make.conf`.
pub(crate) const MAKE_CONF_BEGIN: &str =
    "# BEGIN staves: written by Staves, replaced on every build";
pub(crate) const MAKE_CONF_END: &str = "# END staves";

/// How a rendered file is combined with what the builder already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum WriteMode {
    /// The file is created, or replaced if it exists.
    Replace,
    /// The content is a block appended to the existing file (`make.conf`); an earlier Staves block is removed first.
    AppendBlock,
}

/// One rendered Portage configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortageFile {
    /// Path relative to `/`, always below `etc/portage/`.
    pub path: String,
    /// The full content (or, for [`WriteMode::AppendBlock`], the block).
    pub content: String,
    /// How the file is written.
    pub mode: WriteMode,
}

/// The Portage configuration files a build writes into the builder, rendered from a spec.
///
/// ```
/// use staves_core::{BuildEnv, ImageSpec, PackageConfig, PlanOptions};
///
/// let mut spec = ImageSpec::new("staves/bash");
/// spec.packages.push("app-shells/bash".into());
/// let mut bash = PackageConfig::default();
/// bash.use_flags.push("-nls".into());
/// spec.package_configs.insert("app-shells/bash".into(), bash);
///
/// let env = BuildEnv::render(&spec, &PlanOptions::with_jobs(2));
/// assert_eq!(env.file("etc/portage/package.use/staves").unwrap().content, "app-shells/bash -nls\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildEnv {
    files: Vec<PortageFile>,
}

/// The package every rootfs gets, as in the original Staves.
pub const LIBC_ATOM: &str = "virtual/libc";

/// Where the rootfs is assembled inside the builder (Portage's `ROOT` for the rootfs merge).
pub const ROOTFS_DIR: &str = "/tmp/rootfs";

/// The FEATURES the original Staves set for building inside a container.
pub const CONTAINER_FEATURES: &str = "-userpriv -usersandbox -ipc-sandbox -network-sandbox -pid-sandbox -sandbox \
                                      buildpkg binpkg-multi-instance -binpkg-logs -news nodoc noinfo noman";

impl BuildEnv {
    /// Render the configuration for `spec` with `jobs` parallel jobs and make's `-l` value `make_load` (what
    /// [`BuildEnv::render`] takes from the plan's options).
    pub(crate) fn render_with(spec: &ImageSpec, jobs: usize, make_load: &str) -> Self {
        let mut files = vec![PortageFile {
            path: format!("{PORTAGE_CONFIG_DIR}/make.conf"),
            content: render_make_conf(spec, jobs, make_load),
            mode: WriteMode::AppendBlock,
        }];
        for (name, vars) in &spec.named_envs {
            files.push(replace(
                format!("{PORTAGE_CONFIG_DIR}/env/{name}"),
                render_assignments(vars),
            ));
        }
        let tables: [(&str, PackageField); 4] = [
            ("package.use", |c| &c.use_flags),
            ("package.accept_keywords", |c| &c.keywords),
            ("package.env", |c| &c.env),
            ("package.license", |c| &c.license),
        ];
        for (dir, field) in tables {
            let content = render_package_lines(spec, field);
            if !content.is_empty() {
                files.push(replace(
                    format!("{PORTAGE_CONFIG_DIR}/{dir}/{STAVES_FILE}"),
                    content,
                ));
            }
        }
        for repo in &spec.repositories {
            files.push(replace(
                format!("{PORTAGE_CONFIG_DIR}/repos.conf/{}.conf", repo.name),
                format!(
                    "[{name}]\nlocation = {location}\nsync-type = {sync_type}\nsync-uri = {uri}\n",
                    name = repo.name,
                    location = ini_value(&repository_location(&repo.name)),
                    sync_type = ini_value(&repo.sync_type),
                    uri = ini_value(&repo.uri),
                ),
            ));
        }
        Self { files }
    }

    /// Every rendered file, `make.conf` first.
    pub fn files(&self) -> &[PortageFile] {
        &self.files
    }

    /// The file at `path` (relative to `/`), if rendered.
    pub fn file(&self, path: &str) -> Option<&PortageFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// Picks one list out of a package table (`use`, `keywords`, `env` or `license`).
type PackageField = fn(&crate::PackageConfig) -> &Vec<String>;

/// Where a custom repository is synced to inside the builder.
pub fn repository_location(name: &str) -> String {
    format!("/var/db/repos/{name}")
}

fn replace(path: String, content: String) -> PortageFile {
    PortageFile {
        path,
        content,
        mode: WriteMode::Replace,
    }
}

/// The block appended to `make.conf`: container FEATURES, logging, emerge defaults, MAKEOPTS, then `[env]`.
fn render_make_conf(spec: &ImageSpec, jobs: usize, load: &str) -> String {
    let mut out = String::new();
    out.push_str(MAKE_CONF_BEGIN);
    out.push('\n');
    out.push_str(&format!(
        "FEATURES=\"${{FEATURES}} {CONTAINER_FEATURES}\"\n"
    ));
    out.push_str("PORTAGE_ELOG_SYSTEM=\"echo:warn,error\"\n");
    out.push_str("EMERGE_DEFAULT_OPTS=\"${EMERGE_DEFAULT_OPTS} --binpkg-respect-use=y\"\n");
    out.push_str(&format!("MAKEOPTS=\"-j{jobs} -l{load}\"\n"));
    out.push_str(&render_assignments(&spec.env));
    out.push_str(MAKE_CONF_END);
    out.push('\n');
    out
}

/// `KEY="value"` lines, in order, quoted so Portage reads back exactly the value.
pub(crate) fn render_assignments(vars: &indexmap::IndexMap<String, String>) -> String {
    vars.iter()
        .map(|(key, value)| format!("{key}={}\n", make_conf_value(value)))
        .collect()
}

/// One `ATOM VALUE…` line per package table whose `field` is non-empty, in the order written.
fn render_package_lines(
    spec: &ImageSpec,
    field: fn(&crate::PackageConfig) -> &Vec<String>,
) -> String {
    let mut out = String::new();
    for (atom, config) in &spec.package_configs {
        let values = field(config);
        if values.is_empty() {
            continue;
        }
        out.push_str(atom);
        for value in values {
            out.push(' ');
            out.push_str(value);
        }
        out.push('\n');
    }
    out
}
