//! Checks and conversions of Python arguments shared by `build()`, `plan()` and `assemble()`.
//!
//! A wrong type is a `TypeError`, a wrong value a `ValueError`; each message names the function and the parameter.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;
use serde::de::DeserializeOwned;
use staves_core::{Compression, Output};
use std::str::FromStr;

/// `outputs`: a list or tuple of destinations (`["docker"]` when None). A bare str is refused: iterating it
/// would give one destination per character.
pub(crate) fn outputs(func: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Output>> {
    let Some(value) = value else {
        return Ok(vec![Output::Docker]);
    };
    if value.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{func}(): `outputs` must be a list of destinations such as [\"docker\"] or \
             [\"oci-archive:image.tar\"], not a str"
        )));
    }
    let items: Vec<String> = value.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{func}(): `outputs` must be a list of str such as [\"docker\"], not {}",
            type_name(value)
        ))
    })?;
    if items.is_empty() {
        return Err(PyValueError::new_err(format!(
            "{func}(): `outputs` is empty: give at least one destination, such as [\"docker\"] or \
             [\"oci-archive:image.tar\"]"
        )));
    }
    items
        .iter()
        .map(|item| {
            Output::from_str(item)
                .map_err(|e| PyValueError::new_err(format!("{func}(): `outputs`: {e}")))
        })
        .collect()
}

/// `binhost`: one URL or a list of them (none when None), each one Portage can fetch from.
pub(crate) fn binhosts(func: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let urls: Vec<String> = if value.is_instance_of::<PyString>() {
        vec![value.extract()?]
    } else {
        value.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "{func}(): `binhost` must be a URL or a list of URLs, not {}",
                type_name(value)
            ))
        })?
    };
    for url in &urls {
        staves_core::binhost::check_binhost_url(url)
            .map_err(|e| PyValueError::new_err(format!("{func}(): `binhost`: {e}")))?;
    }
    Ok(urls)
}

/// `registry`: the `docker://` outputs' TLS and credential settings (a `staves.RegistryOptions` dict).
pub(crate) fn registry(
    func: &str,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<staves_core::RegistryOptions> {
    match value {
        None => Ok(staves_core::RegistryOptions::default()),
        Some(value) => from_py(func, "registry", "RegistryOptions", value),
    }
}

/// A timeout in whole seconds (`name`), at least 1; `default` when None.
pub(crate) fn seconds(
    func: &str,
    name: &str,
    value: Option<i64>,
    default: std::time::Duration,
) -> PyResult<std::time::Duration> {
    match value {
        None => Ok(default),
        Some(secs) => u64::try_from(secs)
            .ok()
            .filter(|&s| s >= 1)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "{func}(): `{name}` must be at least 1 (seconds), not {secs}"
                ))
            }),
    }
}

/// `binhost_idle_timeout` and `binhost_timeout`: the binhost download deadlines (the defaults when None).
pub(crate) fn binhost_timeouts(
    func: &str,
    idle: Option<i64>,
    total: Option<i64>,
) -> PyResult<(std::time::Duration, std::time::Duration)> {
    Ok((
        seconds(
            func,
            "binhost_idle_timeout",
            idle,
            staves_core::defaults::BINHOST_IDLE_TIMEOUT,
        )?,
        seconds(
            func,
            "binhost_timeout",
            total,
            staves_core::defaults::BINHOST_TIMEOUT,
        )?,
    ))
}

/// `compression`: `gzip` or `zstd`.
pub(crate) fn compression(func: &str, value: &str) -> PyResult<Compression> {
    Compression::from_str(value)
        .map_err(|e| PyValueError::new_err(format!("{func}(): `compression`: {e}")))
}

/// `jobs`: at least 1, or None for one job per CPU.
pub(crate) fn jobs(func: &str, value: Option<i64>) -> PyResult<Option<usize>> {
    match value {
        None => Ok(None),
        Some(jobs) => usize::try_from(jobs)
            .ok()
            .filter(|&j| j >= 1)
            .map(Some)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "{func}(): `jobs` must be at least 1, not {jobs} (None means one job per CPU)"
                ))
            }),
    }
}

/// A dict argument converted to a library type. A wrong shape is a `TypeError`, and so is a key the type does not
/// have (the TOML parser refuses those too); `shape` names the `TypedDict` that describes the keys.
pub(crate) fn from_py<T: DeserializeOwned>(
    func: &str,
    name: &str,
    shape: &str,
    value: &Bound<'_, PyAny>,
) -> PyResult<T> {
    let mut unknown: Vec<String> = Vec::new();
    let mut de = pythonize::Depythonizer::from_object(value);
    let parsed = serde_ignored::deserialize(&mut de, |path| unknown.push(subscript(&path)))
        .map_err(|e| PyTypeError::new_err(format!("{func}(): `{name}`: {e}")))?;
    match unknown.first() {
        None => Ok(parsed),
        Some(at) => Err(PyTypeError::new_err(format!(
            "{func}(): `{name}` has an unknown key at {name}{at}; the keys it takes are those of staves.{shape}"
        ))),
    }
}

/// A serde path as Python subscripts: `[0]["uri"]`.
fn subscript(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", subscript(parent)),
        Path::Map { parent, key } => format!("{}[{key:?}]", subscript(parent)),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => subscript(parent),
    }
}

/// The Python type name of `value`, for messages.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "this type".to_owned(), |n| n.to_string())
}
