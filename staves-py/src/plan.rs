//! `staves.plan()`, `staves.BuildPlan` and `staves.Step`.

use crate::spec::{PyImageSpec, to_py};
use crate::{args, to_py_err};
use pyo3::prelude::*;
use staves_core::{BuildPlan, PlanOptions, Step};
use std::collections::BTreeMap;

impl PyStep {
    /// A string field of the step's kind as the library serializes it (`{"kind": "sync", "repository": ...}`).
    fn kind_field(&self, name: &str) -> Option<String> {
        serde_json::to_value(&self.inner.kind)
            .ok()
            .and_then(|v| v.get(name).and_then(|k| k.as_str()).map(str::to_owned))
    }
}

/// What a build would do: the Portage files it writes and the steps it runs, in order.
#[pyclass(name = "BuildPlan", module = "staves", frozen)]
pub(crate) struct PyBuildPlan {
    inner: BuildPlan,
}

#[pymethods]
impl PyBuildPlan {
    /// The Portage configuration files: absolute path -> content.
    #[getter]
    fn files(&self) -> BTreeMap<String, String> {
        self.inner.files_by_path()
    }

    /// The steps, in order.
    #[getter]
    fn steps(&self) -> Vec<PyStep> {
        self.inner
            .steps
            .iter()
            .cloned()
            .map(|inner| PyStep { inner })
            .collect()
    }

    /// One POSIX `sh` script that runs the whole plan by hand in any Gentoo container.
    #[getter]
    fn script(&self) -> String {
        self.inner.render_script()
    }

    /// The plan for people: the files, then the steps as command lines.
    #[getter]
    fn text(&self) -> String {
        self.inner.render_text()
    }

    /// The atoms installed into the rootfs (the spec's packages plus `virtual/libc`).
    #[getter]
    fn rootfs_atoms(&self) -> Vec<String> {
        self.inner.rootfs_atoms.clone()
    }

    /// The plan as plain dicts and lists.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "BuildPlan({} files, {} steps)",
            self.inner.files.len(),
            self.inner.steps.len()
        )
    }
}

/// One command of a plan.
#[pyclass(name = "Step", module = "staves", frozen)]
pub(crate) struct PyStep {
    inner: Step,
}

#[pymethods]
impl PyStep {
    /// A short human label, e.g. `Install runtime dependencies into the rootfs`.
    #[getter]
    fn label(&self) -> &str {
        &self.inner.label
    }

    /// Program and arguments, run without a shell (shell steps are `["/bin/sh", "-c", SCRIPT]`).
    #[getter]
    fn argv(&self) -> Vec<String> {
        self.inner.argv.clone()
    }

    /// Extra environment variables for the command.
    #[getter]
    fn env(&self) -> BTreeMap<String, String> {
        self.inner.env.clone()
    }

    /// What the step does: `write-files`, `sync`, `check-binaries`, `build-deps`, `rootfs`, `locale-generate`,
    /// `locale-install`, `verify-binaries`, `libraries`, `package-list` or `cleanup`.
    #[getter]
    fn kind(&self) -> String {
        self.kind_field("kind").unwrap_or_default()
    }

    /// The repository a `sync` step syncs; None for other steps.
    #[getter]
    fn repository(&self) -> Option<String> {
        self.kind_field("repository")
    }

    /// Whether the builder starts this step and goes on with the next ones without waiting for it.
    #[getter]
    fn background(&self) -> bool {
        self.inner.background
    }

    /// Whether the builder waits for every background step started before this one before running it.
    #[getter]
    fn wait_background(&self) -> bool {
        self.inner.wait_background
    }

    /// When the step is skipped: `{"path": FILE, "reason": TEXT}` (it does nothing when an earlier step created
    /// FILE in the builder); None for steps that always run.
    #[getter]
    fn skip_if(&self) -> Option<BTreeMap<String, String>> {
        self.inner.skip_if.as_ref().map(|skip| {
            BTreeMap::from([
                ("path".to_owned(), skip.path.clone()),
                ("reason".to_owned(), skip.reason.clone()),
            ])
        })
    }

    /// The step as a dict: `kind`, `label`, `argv`, `env`, and `repository`, `background`, `wait_background`,
    /// `skip_if` when set (the shape `staves plan --format json` prints).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "Step(kind={:?}, label={:?}, argv={:?})",
            self.kind(),
            self.inner.label,
            self.inner.argv
        )
    }
}

/// Validate `spec` and lay out its build: Portage files and steps. `jobs` defaults to the number of CPUs;
/// `load_average` (emerge's `--load-average`) to no limit; `portage_merge=True` merges every package through
/// emerge (no direct merge of phase-less binary packages); `binhost_idle_timeout` and `binhost_timeout` (seconds)
/// are the binhost download deadlines of the fetch step.
///
/// Raises `SpecError` when the spec has errors or lists no packages, `ValueError` for `jobs` below 1, a
/// `load_average` that is not above 0, or a timeout below 1.
#[pyfunction]
#[pyo3(signature = (
    spec, jobs = None, load_average = None, portage_merge = false, binhost_idle_timeout = None,
    binhost_timeout = None
))]
pub(crate) fn plan(
    py: Python<'_>,
    spec: &Bound<'_, PyImageSpec>,
    jobs: Option<i64>,
    load_average: Option<f64>,
    portage_merge: bool,
    binhost_idle_timeout: Option<i64>,
    binhost_timeout: Option<i64>,
) -> PyResult<PyBuildPlan> {
    let (fetch_idle, fetch_total) =
        args::binhost_timeouts("plan", binhost_idle_timeout, binhost_timeout)?;
    let options = PlanOptions::new(args::jobs("plan", jobs)?, load_average)
        .direct_merge(!portage_merge)
        .binhost_timeouts(fetch_idle, fetch_total);
    BuildPlan::new(&spec.get().inner, &options)
        .map(|inner| PyBuildPlan { inner })
        .map_err(|e| to_py_err(py, e.into()))
}
