//! Turn an [`ImageSpec`] into Portage configuration: `make.conf`, `env/*`, `package.*` and `repos.conf`.
//!
//! Everything here is a pure function of the spec: nothing touches Docker or the file system.

mod output;
mod quote;

pub(crate) use output::{ADDED_FILE_MARKER, PACKAGE_LIST_MARKER};
pub use output::{
    EmergeEvent, InstalledPackage, parse_added_files, parse_emerge_line, parse_package_list,
};
pub use quote::shell_quote;
pub(crate) use quote::{ini_value, make_conf_value};

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

/// Settings that shape the rendered configuration but are not part of the spec.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlanOptions {
    /// Parallel jobs, for `MAKEOPTS` and emerge's `--jobs`.
    pub jobs: usize,
    /// emerge's `--load-average` (and make's `-l`): start no new job while the load average is at least this.
    ///
    /// `None` (the default) passes no `--load-average` to emerge and `-l JOBS` to make. emerge delays every job
    /// start by up to 5 s in proportion to the load when this is set, which on a small machine serialises builds of
    /// small packages; set it when the builder shares the machine with other work.
    pub load_average: Option<f64>,
}

impl PlanOptions {
    /// Options with `jobs` parallel jobs (one per CPU when `None`) and an optional load-average limit.
    pub fn new(jobs: Option<usize>, load_average: Option<f64>) -> Self {
        jobs.map(Self::with_jobs)
            .unwrap_or_default()
            .load_average(load_average)
    }

    /// Options with `jobs` parallel jobs (at least 1) and no load-average limit.
    pub fn with_jobs(jobs: usize) -> Self {
        Self {
            jobs: jobs.max(1),
            load_average: None,
        }
    }

    /// The same options with emerge's `--load-average` set to `load` (`None`: no limit).
    ///
    /// [`BuildPlan::new`](crate::BuildPlan::new) refuses a value that is not a finite number above 0.
    pub fn load_average(mut self, load: Option<f64>) -> Self {
        self.load_average = load;
        self
    }

    /// make's `-l` value: the load-average limit when one is set (and valid), the job count otherwise.
    ///
    /// An invalid limit never reaches a build: [`BuildPlan::new`](crate::BuildPlan::new) refuses it first.
    pub(crate) fn make_load(&self) -> String {
        match self.load_average.map(crate::plan::check_load_average) {
            Some(Ok(load)) => format_load(load),
            _ => self.jobs.to_string(),
        }
    }
}

/// A load average as Portage and make read it: `2`, `2.5` (Rust prints no exponent and no `.0`).
pub(crate) fn format_load(load: f64) -> String {
    format!("{load}")
}

impl Default for PlanOptions {
    /// One job per available CPU.
    fn default() -> Self {
        let jobs = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        Self::with_jobs(jobs)
    }
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

/// The FEATURES the original Staves set for building inside a container.
pub const CONTAINER_FEATURES: &str = "-userpriv -usersandbox -ipc-sandbox -network-sandbox -pid-sandbox -sandbox \
                                      buildpkg binpkg-multi-instance -binpkg-logs -news nodoc noinfo noman";

impl BuildEnv {
    /// Render the configuration for `spec`.
    ///
    /// The spec should have passed [`ImageSpec::validate`]: values are quoted for Portage, but only validation
    /// guarantees that nothing in them (a newline, a `"`) can break out of that quoting. [`crate::BuildPlan::new`]
    /// validates before it renders.
    pub fn render(spec: &ImageSpec, options: &PlanOptions) -> Self {
        let mut files = vec![PortageFile {
            path: format!("{PORTAGE_CONFIG_DIR}/make.conf"),
            content: render_make_conf(spec, options),
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
pub fn render_make_conf(spec: &ImageSpec, options: &PlanOptions) -> String {
    let jobs = options.jobs;
    let load = options.make_load();
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
pub fn render_assignments(vars: &indexmap::IndexMap<String, String>) -> String {
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
