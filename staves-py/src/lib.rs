//! Python bindings for Staves: the extension module `staves._staves`, re-exported by the package `staves`.
//!
//! Conversion glue only: every function here turns Python arguments into `staves_core` values, makes one call
//! into the library and converts the result back. Errors go through [`to_py_err`]; records (reports, events) are
//! built by the converters in `staves/_types.py`.

mod args;
mod build;
mod cache;
mod lock;
mod plan;
mod spec;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::prelude::*;
use staves_core::{
    Diagnostic, EngineError, Error, ImageError, PlanError, SpecError as CoreSpecError,
};
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
    "A spec could not be parsed or validated; `line`, `column`, `path` locate the first error and `diagnostics` \
     lists them all."
);
create_exception!(
    staves,
    BuildError,
    StavesError,
    "A build step failed, the build was cancelled, or the rootfs could not be exported from the builder."
);
create_exception!(
    staves,
    DockerError,
    StavesError,
    "The Docker engine could not be reached, or refused a request."
);

/// Convert a library error into the matching Python exception.
///
/// Bad arguments raise `ValueError`, unreadable files `OSError` (`FileNotFoundError`, ...), and the rest a
/// `StavesError` subclass with `exit_code` set (and, for spec errors, the position and every diagnostic):
/// invalid specs `SpecError`, engine failures `DockerError`, failed or cancelled builds `BuildError`. Messages
/// name Python parameters, not CLI flags.
pub(crate) fn to_py_err(py: Python<'_>, err: Error) -> PyErr {
    let exit_code = err.exit_code();
    let message = with_root_cause(&err);
    let result = match &err {
        Error::Spec(CoreSpecError::Read { path, error, .. }) => return os_error(error, Some(path)),
        Error::Spec(e) => spec_error(py, message, e.path(), e.diagnostics()),
        Error::Plan(PlanError::InvalidSpec { diagnostics }) => {
            spec_error(py, invalid_spec_message(diagnostics), None, diagnostics)
        }
        Error::Plan(PlanError::InvalidLoadAverage { .. }) => {
            return PyValueError::new_err(format!("`load_average`: {message}"));
        }
        Error::Plan(_) => spec_error(py, message, None, &[]),
        Error::Image(ImageError::InvalidOutput { .. } | ImageError::NoOutputs) => {
            return PyValueError::new_err(message);
        }
        Error::Image(ImageError::Write { source, .. }) | Error::Io { source, .. } => {
            if let Some(errno) = errno(source) {
                return PyOSError::new_err((errno, message));
            }
            Ok(StavesError::new_err(message))
        }
        Error::Engine(EngineError::Connect { host, reason, .. }) => {
            Ok(DockerError::new_err(format!(
                "cannot reach the Docker engine at {host}: {reason}\n  help: start the Docker daemon, or pass \
             `docker_host` (or set DOCKER_HOST) with the address of a running engine"
            )))
        }
        Error::Engine(_)
        | Error::Image(ImageError::DockerLoad { .. })
        | Error::Image(ImageError::Engine(_)) => Ok(DockerError::new_err(message)),
        Error::Build(_) => Ok(BuildError::new_err(message)),
        // A lock with positioned problems (syntax, atoms, newer format, hand-edited entries) is reported like a spec.
        Error::Lock(lock) if !lock.diagnostics().is_empty() => {
            let path = lock.diagnostics().first().and_then(|d| d.path.clone());
            spec_error(py, message, path.as_deref(), lock.diagnostics())
        }
        // Locked versions the snapshot lacks, or a resolution that failed: the build cannot go on.
        Error::Lock(lock) if lock.exit_code() == 4 => Ok(BuildError::new_err(message)),
        Error::Binhost(staves_core::BinhostError::InvalidUrl { .. }) => {
            return PyValueError::new_err(message);
        }
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

/// The error's message, plus the innermost cause on a line of its own when the message does not already say it
/// (engine errors otherwise end at "client error (Connect)").
fn with_root_cause(err: &Error) -> String {
    let message = err.to_string();
    let root = root_cause(err);
    if message.contains(&root) {
        message
    } else {
        format!("{message}\n  caused by: {root}")
    }
}

/// The message of the innermost error in `err`'s source chain.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// What a `SpecError` for a plan refused for an invalid spec says: every error, where it is.
fn invalid_spec_message(diagnostics: &[Diagnostic]) -> String {
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
    let mut message = format!("the spec is invalid: {} error(s)", errors.len());
    for d in errors {
        let file = d
            .path
            .as_ref()
            .map_or_else(|| "spec".to_owned(), |p| p.display().to_string());
        match (d.line, d.column) {
            (Some(line), Some(column)) => {
                message.push_str(&format!("\n  {file}:{line}:{column}: {}", d.message));
            }
            _ if !d.key.is_empty() => {
                message.push_str(&format!("\n  {file} (at `{}`): {}", d.key, d.message));
            }
            _ => message.push_str(&format!("\n  {file}: {}", d.message)),
        }
    }
    message
}

/// `OSError(errno, strerror, filename)`: Python picks the subclass (`FileNotFoundError`, `PermissionError`,
/// `IsADirectoryError`, ...) from the errno.
pub(crate) fn os_error(error: &std::io::Error, path: Option<&Path>) -> PyErr {
    let filename = path.map(|p| p.to_string_lossy().into_owned());
    match error.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, strerror(error), filename)),
        None => PyOSError::new_err(match filename {
            Some(f) => format!("{f}: {error}"),
            None => error.to_string(),
        }),
    }
}

/// The OS error number of an I/O error, also when it wraps another one (as `tempfile` does, to add the path).
fn errno(error: &std::io::Error) -> Option<i32> {
    if let Some(errno) = error.raw_os_error() {
        return Some(errno);
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = error.get_ref().map(|e| e as _);
    while let Some(e) = current {
        if let Some(errno) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Some(errno);
        }
        current = e.source();
    }
    // `tempfile`'s wrapper hides the inner error from `source()`, but still prints it: "... (os error 20) at path".
    let text = error.to_string();
    let (_, after) = text.split_once("(os error ")?;
    after.split_once(')')?.0.parse().ok()
}

/// The OS's text for an error, without the " (os error N)" that Rust appends.
fn strerror(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
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

/// The extension module; `staves/__init__.py` re-exports everything public in it.
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
    m.add_class::<build::PyCancelToken>()?;
    m.add_function(wrap_pyfunction!(plan::plan, m)?)?;
    m.add_function(wrap_pyfunction!(build::build, m)?)?;
    m.add_function(wrap_pyfunction!(lock::lock, m)?)?;
    m.add_function(wrap_pyfunction!(build::assemble, m)?)?;
    m.add_function(wrap_pyfunction!(cache::cache, m)?)?;
    m.add_function(wrap_pyfunction!(build::export_binhost, m)?)?;
    m.add_function(wrap_pyfunction!(build::audit, m)?)?;
    m.add_function(wrap_pyfunction!(spec::_restore_spec, m)?)?;
    m.add("DEFAULT_PORTAGE_IMAGE", staves_core::DEFAULT_PORTAGE_IMAGE)?;
    m.add("DEFAULT_BUILDER_IMAGE", staves_core::DEFAULT_BUILDER_IMAGE)?;
    m.add("DEFAULT_BUILD_CACHE", staves_core::DEFAULT_BUILD_CACHE)?;
    m.add("BUILD_LABEL", staves_core::BUILD_LABEL)?;
    Ok(())
}
