//! Staves builds minimal container images from a declarative `staves.toml` with Gentoo's Portage.
//!
//! ```
//! use staves_core::{BuildEnv, ImageSpec, PlanOptions, Severity};
//!
//! let text = "name = 'staves/bash'\npackages = ['app-shells/bash']\n['app-shells/bash']\nuse = ['-nls']\n";
//! let spec = ImageSpec::load_str(text, None)?;
//! assert_eq!(spec.package_configs["app-shells/bash"].use_flags, ["-nls"]);
//!
//! // The Portage configuration a build writes into the builder, rendered without Docker.
//! let env = BuildEnv::render(&spec, &PlanOptions::with_jobs(2));
//! let package_use = env.file("etc/portage/package.use/staves").map(|f| f.content.as_str());
//! assert_eq!(package_use, Some("app-shells/bash -nls\n"));
//!
//! // Every diagnostic carries a position and says what to do.
//! let (diagnostics, _) = ImageSpec::check_str("name = 'x'\npackages = ['bash']\n", None);
//! assert_eq!(diagnostics[0].severity, Severity::Error);
//! assert_eq!((diagnostics[0].line, diagnostics[0].column), (Some(2), Some(13)));
//! # Ok::<(), staves_core::SpecError>(())
//! ```

mod binhost;
mod builder;
pub mod defaults;
mod engine;
mod engine_address;
mod error;
mod image;
mod pipeline;
mod plan;
mod portage;
mod registry;
mod spec;

pub use binhost::{
    BinhostError, BinhostExport, PKGDIR, check_binhost_url, export_binhost, export_binhost_async,
    index_packages, parse_fetched_binaries, render_binrepos_conf,
};
pub use builder::{
    BUILD_LABEL, BuildError, BuildEvent, BuildOptions, BuildReport, Builder, CancelToken,
    DEFAULT_BUILD_CACHE, DEFAULT_BUILDER_IMAGE, DEFAULT_PORTAGE_IMAGE, DockerBuilder, EventHandler,
    LogStream, MockBuilder, MockCall, MockEntry, RootfsSink, StepReport,
};
pub use engine::{DEFAULT_DOCKER_HOST, EngineError};
pub use error::{Error, Result};
pub use image::{
    Compression, DEFAULT_EPOCH, ImageError, ImageReport, ImageWriter, Output, WrittenOutput,
};
pub use pipeline::{BuildOutcome, BuildRequest, build_image};
pub use plan::{
    BuildPlan, LIBC_ATOM, PlanError, ROOTFS_DIR, STAGING_DIR, Step, StepKind, check_load_average,
    command_line,
};
pub use portage::{
    BuildEnv, CONTAINER_FEATURES, EmergeEvent, InstalledPackage, PlanOptions, PortageFile,
    WriteMode, parse_emerge_line, parse_package_list, repository_location, shell_quote,
};
pub use registry::{PushReport, RegistryError, RegistryOptions, RegistryTarget};
pub use spec::{
    Atom, AtomError, Diagnostic, ImageConfig, ImageSpec, ImageSpecBuilder, Locale, Operator,
    PackageConfig, Repository, Severity, SpecError, SpecReport, render_diagnostics,
};
