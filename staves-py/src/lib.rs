//! Python bindings for Staves: the extension module `staves._staves`, re-exported by the package `staves`.
//!
//! Conversion glue only: every function here turns Python arguments into `staves_core` values, makes one call
//! into the library and converts the result back. Errors go through [`to_py_err`].

mod build;
mod plan;
mod spec;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use staves_core::{Diagnostic, Error, ImageError, PlanError};
use std::path::Path;

create_exception!(
    staves,
    StavesError,
    PyException,
    "Base class of every error Staves raises; `exit_code` is the code the `staves` CLI exits with."
);
create_exception!(
    staves,
    SpecError,
    StavesError,
    "A spec could not be read, parsed or validated; `line`, `column`, `path` locate the first error and \
     `diagnostics` lists them all."
);
create_exception!(
    staves,
    BuildError,
    StavesError,
    "A build step failed, or the rootfs could not be exported from the builder."
);
create_exception!(
    staves,
    DockerError,
    StavesError,
    "The Docker engine could not be reached, or refused a request."
);

/// Convert a library error into the matching Python exception, with `exit_code` (and, for spec errors, the
/// position and every diagnostic) set on the instance.
///
/// The class follows the CLI's exit codes: invalid specs (including a plan refused for an invalid spec) raise
/// `SpecError`, engine failures `DockerError`, failed builds `BuildError`, everything else `StavesError`.
pub(crate) fn to_py_err(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    let exit_code = err.exit_code();
    let result = match &err {
        Error::Spec(e) => spec_error(py, message, e.path(), e.diagnostics()),
        Error::Plan(PlanError::InvalidSpec { diagnostics }) => {
            spec_error(py, message, None, diagnostics)
        }
        Error::Plan(PlanError::InvalidLoadAverage { .. }) => Ok(PyValueError::new_err(message)),
        Error::Plan(_) => spec_error(py, message, None, &[]),
        Error::Engine(_)
        | Error::Image(ImageError::DockerLoad { .. })
        | Error::Image(ImageError::Engine(_)) => Ok(DockerError::new_err(message)),
        Error::Build(_) => Ok(BuildError::new_err(message)),
        _ => Ok(StavesError::new_err(message)),
    };
    match result {
        Ok(py_err) => match py_err.value(py).setattr("exit_code", exit_code) {
            Ok(()) => py_err,
            Err(e) => e,
        },
        Err(e) => e,
    }
}

/// A `SpecError` carrying `diagnostics`, and `line`/`column`/`path` of the first error among them.
fn spec_error(
    py: Python<'_>,
    message: String,
    path: Option<&Path>,
    diagnostics: &[Diagnostic],
) -> PyResult<PyErr> {
    let first = diagnostics
        .iter()
        .find(|d| d.is_error())
        .or(diagnostics.first());
    let err = SpecError::new_err(message);
    let value = err.value(py);
    value.setattr("line", first.and_then(|d| d.line))?;
    value.setattr("column", first.and_then(|d| d.column))?;
    let path = path
        .map(Path::to_path_buf)
        .or_else(|| first.and_then(|d| d.path.clone()));
    value.setattr("path", path.map(|p| p.to_string_lossy().into_owned()))?;
    let diagnostics: Vec<spec::PyDiagnostic> = diagnostics
        .iter()
        .cloned()
        .map(spec::PyDiagnostic::from)
        .collect();
    value.setattr("diagnostics", diagnostics)?;
    Ok(err)
}

/// The extension module; `staves/__init__.py` re-exports everything in it.
#[pymodule]
fn _staves(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("StavesError", py.get_type::<StavesError>())?;
    m.add("SpecError", py.get_type::<SpecError>())?;
    m.add("BuildError", py.get_type::<BuildError>())?;
    m.add("DockerError", py.get_type::<DockerError>())?;
    m.add_class::<spec::PyImageSpec>()?;
    m.add_class::<spec::PyDiagnostic>()?;
    m.add_class::<plan::PyBuildPlan>()?;
    m.add_class::<plan::PyStep>()?;
    m.add_class::<build::PyDockerBuilder>()?;
    m.add_class::<build::PyMockBuilder>()?;
    m.add_class::<build::PyBuildReport>()?;
    m.add_class::<build::PyImageReport>()?;
    m.add_function(wrap_pyfunction!(plan::plan, m)?)?;
    m.add_function(wrap_pyfunction!(build::build, m)?)?;
    m.add_function(wrap_pyfunction!(build::assemble, m)?)?;
    m.add("DEFAULT_PORTAGE_IMAGE", staves_core::DEFAULT_PORTAGE_IMAGE)?;
    m.add("DEFAULT_BUILDER_IMAGE", staves_core::DEFAULT_BUILDER_IMAGE)?;
    m.add("BUILD_LABEL", staves_core::BUILD_LABEL)?;
    Ok(())
}
