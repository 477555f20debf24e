//! Staves builds minimal container images from a declarative `staves.toml` with Gentoo's Portage.

mod builder;
mod engine;
mod error;
mod plan;
mod portage;
mod spec;

pub use builder::{
    BUILD_LABEL, BuildError, BuildEvent, BuildOptions, BuildReport, Builder, CancelToken,
    DEFAULT_BUILD_CACHE, DEFAULT_BUILDER_IMAGE, DEFAULT_PORTAGE_IMAGE, DockerBuilder, EventHandler,
    LogStream, MockBuilder, MockCall, MockEntry, RootfsSink, StepReport,
};
pub use engine::{DEFAULT_DOCKER_HOST, EngineError};
pub use error::{Error, Result};
pub use plan::{
    BuildPlan, LIBC_ATOM, PlanError, ROOTFS_DIR, STAGING_DIR, Step, StepKind, command_line,
};
pub use portage::{
    BuildEnv, CONTAINER_FEATURES, EmergeEvent, InstalledPackage, PlanOptions, PortageFile,
    WriteMode, parse_emerge_line, parse_package_list, repository_location, shell_quote,
};
pub use spec::{
    Atom, AtomError, Diagnostic, ImageConfig, ImageSpec, ImageSpecBuilder, Locale, Operator,
    PackageConfig, Repository, Severity, SpecError, SpecReport, render_diagnostics,
};
