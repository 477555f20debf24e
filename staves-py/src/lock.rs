//! `staves.lock()` and the lock settings of `staves.build()`.

use crate::build::{CancellableRun, PyCancelToken, PyDockerBuilder, PyMockBuilder, converter};
use crate::spec::{PyImageSpec, to_py};
use crate::to_py_err;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use staves_core::{Builder, DockerBuilder, LockMode, LockOptions, LockRequest, lock_spec};
use std::path::PathBuf;

/// `build()`'s `locked` / `frozen` flags as the library's lock options (the lock next to the spec file).
pub(crate) fn lock_options(locked: bool, frozen: bool) -> LockOptions {
    LockOptions::new(if frozen {
        LockMode::Frozen
    } else if locked {
        LockMode::Locked
    } else {
        LockMode::Update
    })
}

/// Resolve `spec` with Portage in `builder` without building anything, and write `staves.lock`.
///
/// The lock goes next to the spec's file, or to `output`. `portage_image` resolves against another snapshot than
/// the builder's. Runs with the GIL released; `on_log`, `on_event` and `cancel` work as in `build()`.
#[pyfunction]
#[pyo3(signature = (
    spec, builder, *, portage_image = None, output = None, on_log = None, on_event = None, cancel = None
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn lock(
    py: Python<'_>,
    spec: &Bound<'_, PyImageSpec>,
    builder: &Bound<'_, PyAny>,
    portage_image: Option<String>,
    output: Option<PathBuf>,
    on_log: Option<Py<PyAny>>,
    on_event: Option<Py<PyAny>>,
    cancel: Option<Py<PyCancelToken>>,
) -> PyResult<Py<PyAny>> {
    let replaced: Option<DockerBuilder>;
    let backend: &(dyn Builder + Sync) = if let Ok(docker) = builder.cast::<PyDockerBuilder>() {
        let docker = docker.get();
        match portage_image {
            Some(image) => {
                replaced = Some(
                    docker
                        .with_portage_image(image)
                        .map_err(|e| to_py_err(py, e))?,
                );
                replaced.as_ref().map_or(&docker.inner, |b| b)
            }
            None => &docker.inner,
        }
    } else if let Ok(mock) = builder.cast::<PyMockBuilder>() {
        if portage_image.is_some() {
            return Err(PyTypeError::new_err(
                "lock(): `portage_image` needs a staves.DockerBuilder",
            ));
        }
        &mock.get().inner
    } else {
        return Err(PyTypeError::new_err(
            "lock(): `builder` must be a staves.DockerBuilder or a staves.MockBuilder",
        ));
    };
    let spec = &spec.get().inner;
    let request = LockRequest::new().output(output);
    let run = CancellableRun::new(py, on_log, on_event, cancel.as_ref().map(|t| t.get()))?;
    let result = run.run(py, |options| lock_spec(spec, backend, &request, options))?;
    match result {
        Some(Ok(outcome)) => {
            let data = to_py(py, &outcome)?;
            Ok(converter(py, "_lock_result")?.call1((data,))?.unbind())
        }
        Some(Err(err)) => Err(to_py_err(py, err)),
        None => Err(PyRuntimeError::new_err(
            "the lock thread panicked; this is a bug in Staves",
        )),
    }
}
