//! Staves builds minimal container images from a declarative `staves.toml` with Gentoo's Portage.
//!
//! ```
//! use staves_core::{BuildEnv, ImageSpec, PlanOptions, SpecError};
//!
//! let text = "name = 'staves/bash'\npackages = ['app-shells/bash']\n['app-shells/bash']\nuse = ['-nls']\n";
//! let spec = ImageSpec::parse(text, None)?;
//! assert_eq!(spec.package_configs["app-shells/bash"].use_flags, ["-nls"]);
//!
//! // The Portage configuration a build writes into the builder, rendered without Docker.
//! let env = BuildEnv::render(&spec, &PlanOptions::with_jobs(2));
//! let package_use = env.file("etc/portage/package.use/staves").map(|f| f.content.as_str());
//! assert_eq!(package_use, Some("app-shells/bash -nls\n"));
//!
//! // Every diagnostic carries a position and says what to do, and the error renders them itself.
//! let err = ImageSpec::parse("name = 'x'\npackages = ['bash']\n", Some("staves.toml".as_ref())).unwrap_err();
//! let first = &err.diagnostics()[0];
//! assert_eq!((first.line, first.column), (Some(2), Some(13)));
//! assert!(err.render().contains(" --> staves.toml:2:13\n"));
//! # Ok::<(), SpecError>(())
//! ```
//!
//! The crate root holds the concepts. Helpers live in named modules: [`spec`] (atoms, value checks), [`plan`]
//! (paths inside the builder, load-average check), [`portage`] (what the rendered configuration holds), [`lock`]
//! (`staves.lock`: its model, pins, changes and the `emerge --pretend` parser), [`cache`] (which binary packages a
//! build may reuse), [`store`] (the local image store and build keys) and [`binhost`] (binary package host URLs,
//! `binrepos.conf`, the `Packages` index).
//!
//! # Layers
//! Each top-level module imports only modules below it (the README's development section says what each holds):
//!
//! 1. foundations: `spec`, `portage`, `timestamp`, `defaults`;
//! 2. package knowledge: `sbom`, `advisory`, `lock`, `cache`, `binhost`;
//! 3. `plan`;
//! 4. `engine`, the only door to Docker besides the Docker backend;
//! 5. backends: `builder`, `snapshot`;
//! 6. writers: `image`, `store`, `registry`;
//! 7. `error`;
//! 8. operations: `pipeline`, `locking`, `binpkgs`, `inspect`, `audit`.
//!
//! `builder`, `image`, `store` and `error` still import each other; untying them is open work.

pub mod advisory;
pub mod audit;
pub mod binhost;
mod binpkgs;
mod builder;
pub mod cache;
pub mod defaults;
mod engine;
mod error;
mod image;
mod inspect;
mod journal;
pub mod lock;
mod locking;
mod pipeline;
pub mod plan;
mod platform;
pub mod portage;
mod registry;
pub mod sbom;
pub mod snapshot;
pub mod spec;
pub mod store;
mod timestamp;

pub use binhost::BinhostError;
pub use binpkgs::{BinhostExport, BinpkgCache, export_binhost, export_binhost_async};
pub use builder::{
    BUILD_LABEL, BinhostUse, BuildError, BuildEvent, BuildFuture, BuildOptions, BuildOwner,
    BuildReport, BuildResources, Builder, CancelToken, DEFAULT_BUILD_CACHE, DEFAULT_BUILDER_IMAGE,
    DEFAULT_PORTAGE_IMAGE, DockerBuilder, EventHandler, KeyContextFuture, LogStream, MockBuilder,
    MockCall, MockEntry, Ownership, PruneOptions, PruneReport, Reaped, RootfsSink, StepReport,
    list_builds, list_builds_async, prune, prune_async, remove_builds, remove_builds_async,
    remove_leftovers, remove_leftovers_async,
};
pub use engine::{DEFAULT_DOCKER_HOST, Engine, EngineError};
pub use error::{Error, Result};
pub use image::{
    ImageError, ImageReport, ImageWriter, Output, Referrer, ReferrerSource, WrittenOutput,
};
pub use inspect::{FoundSbom, find_sbom, find_sbom_async};
pub use lock::{LockError, Lockfile};
pub use locking::{
    LockMode, LockOptions, LockOutcome, LockReport, LockRequest, PlannedPins, lock_spec,
    lock_spec_async, plan_for,
};
pub use pipeline::{BuildOutcome, BuildRequest, ReusedImage, build_image, build_image_async};
pub use plan::{BuildPlan, PlanError, PlanOptions, Step, StepKind, StepSkip};
pub use platform::{Compression, DEFAULT_EPOCH, InvalidCompression};
pub use portage::{BuildEnv, InstalledPackage, PortageFile};
pub use registry::{PushReport, RegistryError, RegistryOptions, RegistryTarget};
pub use spec::{
    BuildSettings, Diagnostic, ImageConfig, ImageSpec, ImageSpecBuilder, Locale, PackageConfig,
    Repository, Severity, SpecError,
};
