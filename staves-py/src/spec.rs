//! `staves.ImageSpec` and `staves.Diagnostic`.

use crate::{args, to_py_err};
use indexmap::IndexMap;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pythonize::pythonize;
use staves_core::{
    BuildSettings, Diagnostic, ImageConfig, ImageSpec, Locale, PackageConfig, Repository, Severity,
    SpecError,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A parsed `staves.toml`: what to build. Immutable; equal specs compare equal; copies and pickles keep the
/// source text and path, so diagnostics keep their positions.
#[pyclass(name = "ImageSpec", module = "staves", frozen, eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct PyImageSpec {
    pub(crate) inner: ImageSpec,
}

/// A Python object from a serializable value.
pub(crate) fn to_py<'py, T: serde::Serialize>(
    py: Python<'py>,
    value: &T,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(pythonize(py, value)?)
}

/// `from_py` for the constructor's keyword arguments.
fn kwarg<T: serde::de::DeserializeOwned>(
    name: &str,
    shape: &str,
    value: &Bound<'_, PyAny>,
) -> PyResult<T> {
    args::from_py("ImageSpec", name, shape, value)
}

/// Rebuild a pickled `ImageSpec` from the state its `__reduce__` gave: `("toml", text, path)` for a spec parsed
/// from text (so positions survive), `("dict", to_dict())` for one built in code.
#[pyfunction]
pub(crate) fn _restore_spec<'py>(
    py: Python<'py>,
    state: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let kind: String = state.get_item(0)?.extract()?;
    match kind.as_str() {
        "toml" => {
            let text: String = state.get_item(1)?.extract()?;
            let path: Option<PathBuf> = state.get_item(2)?.extract()?;
            Ok(Bound::new(py, PyImageSpec::from_toml(py, &text, path)?)?.into_any())
        }
        "dict" => {
            let data = state.get_item(1)?;
            let kwargs = data.cast::<PyDict>()?;
            py.get_type::<PyImageSpec>().call((), Some(kwargs))
        }
        other => Err(PyValueError::new_err(format!(
            "cannot unpickle an ImageSpec from state kind {other:?}"
        ))),
    }
}

#[pymethods]
impl PyImageSpec {
    /// Build a spec in code. Keyword arguments take the shapes `to_dict()` returns; an unknown key in a dict
    /// argument is a `TypeError`, as it is an error in `staves.toml`.
    #[new]
    #[pyo3(signature = (
        name, *, version = None, packages = None, command = None, annotations = None, locale = None,
        stdlib = false, env = None, named_envs = None, repositories = None, package_configs = None, image = None,
        build = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: String,
        version: Option<String>,
        packages: Option<Vec<String>>,
        command: Option<Vec<String>>,
        annotations: Option<BTreeMap<String, String>>,
        locale: Option<&Bound<'_, PyAny>>,
        stdlib: bool,
        env: Option<&Bound<'_, PyAny>>,
        named_envs: Option<&Bound<'_, PyAny>>,
        repositories: Option<&Bound<'_, PyAny>>,
        package_configs: Option<&Bound<'_, PyAny>>,
        image: Option<&Bound<'_, PyAny>>,
        build: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut spec = ImageSpec::new(name);
        if let Some(version) = version {
            spec.version = version;
        }
        spec.packages = packages.unwrap_or_default();
        spec.command = command.unwrap_or_default();
        spec.annotations = annotations.unwrap_or_default();
        spec.stdlib = stdlib;
        if let Some(v) = locale {
            spec.locale = kwarg::<Locale>("locale", "Locale", v)?;
        }
        if let Some(v) = env {
            spec.env = kwarg::<IndexMap<String, String>>("env", "ImageSpecDict", v)?;
        }
        if let Some(v) = named_envs {
            spec.named_envs = kwarg("named_envs", "ImageSpecDict", v)?;
        }
        if let Some(v) = repositories {
            spec.repositories = kwarg::<Vec<Repository>>("repositories", "Repository", v)?;
        }
        if let Some(v) = package_configs {
            spec.package_configs =
                kwarg::<IndexMap<String, PackageConfig>>("package_configs", "PackageConfig", v)?;
        }
        if let Some(v) = image {
            spec.image = kwarg::<ImageConfig>("image", "ImageConfig", v)?;
        }
        if let Some(v) = build {
            spec.build = kwarg::<BuildSettings>("build", "BuildSettings", v)?;
        }
        Ok(Self { inner: spec })
    }

    /// Parse TOML text. `path` is only used in diagnostics. Raises `SpecError` with the position on bad input.
    #[staticmethod]
    #[pyo3(signature = (text, path = None))]
    fn from_toml(py: Python<'_>, text: &str, path: Option<PathBuf>) -> PyResult<Self> {
        structure_only(ImageSpec::parse(text, path.as_deref()))
            .map(|inner| Self { inner })
            .map_err(|e| to_py_err(py, e.into()))
    }

    /// Read and parse a `staves.toml`. Raises `OSError` (`FileNotFoundError`, ...) when the file cannot be read,
    /// `SpecError` with the position on bad content.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        structure_only(ImageSpec::load(&path))
            .map(|inner| Self { inner })
            .map_err(|e| to_py_err(py, e.into()))
    }

    /// Image repository name, e.g. `staves/bash`.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Image tag (`latest` unless the spec says otherwise).
    #[getter]
    fn version(&self) -> &str {
        &self.inner.version
    }

    /// Package atoms to install, as written.
    #[getter]
    fn packages(&self) -> Vec<String> {
        self.inner.packages.clone()
    }

    /// The image entrypoint.
    #[getter]
    fn command(&self) -> Vec<String> {
        self.inner.command.clone()
    }

    /// Image labels and manifest annotations.
    #[getter]
    fn annotations(&self) -> BTreeMap<String, String> {
        self.inner.annotations.clone()
    }

    /// The locale generated into the image: `{"name": ..., "charset": ...}`.
    #[getter]
    fn locale<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.locale)
    }

    /// Whether `libstdc++.so.6` is copied into the image.
    #[getter]
    fn stdlib(&self) -> bool {
        self.inner.stdlib
    }

    /// `[env]` string values appended to `make.conf`, in the order written.
    #[getter]
    fn env<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.env)
    }

    /// `[env.NAME]` tables: named environments, each a dict of variables.
    #[getter]
    fn named_envs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.named_envs)
    }

    /// Extra ebuild repositories: a list of `{"name", "type", "uri"}` dicts.
    #[getter]
    fn repositories<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.repositories)
    }

    /// Per-package settings: atom -> `{"use", "keywords", "env", "license"}` (empty lists left out).
    #[getter]
    fn package_configs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.package_configs)
    }

    /// Runtime settings of the image (`[image]`): `cmd`, `user`, `workdir`, `env`, ... (unset ones left out).
    #[getter]
    fn image<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.image)
    }

    /// How the image is built (`[build]`): `binhost`, the binary package hosts a build fetches from after its
    /// own `binhost=` URLs (unset ones left out).
    #[getter]
    fn build<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.build)
    }

    /// The file the spec was read from, if any.
    #[getter]
    fn path(&self) -> Option<String> {
        self.inner
            .source_path()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// The spec as TOML; `ImageSpec.from_toml(spec.to_toml()) == spec`.
    fn to_toml(&self) -> String {
        self.inner.to_toml_string()
    }

    /// The spec as plain dicts and lists (the shapes the constructor takes).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    /// Check every rule; returns all errors and warnings (an empty list when the spec is fine).
    fn validate(&self) -> Vec<PyDiagnostic> {
        self.inner
            .validate()
            .into_iter()
            .map(PyDiagnostic::from)
            .collect()
    }

    /// A copy (the spec is immutable, so this is only for `copy.copy`).
    fn __copy__(&self) -> Self {
        self.clone()
    }

    /// A copy (the spec holds no Python objects, so this is `__copy__`).
    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> Self {
        self.clone()
    }

    /// Pickle support: the source text and path when the spec was parsed, else its `to_dict()`.
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        // The module's own function object, which pickle finds again by its module and name.
        let restore = py.import("staves._staves")?.getattr("_restore_spec")?;
        let state = match self.inner.source_text() {
            Some(text) => ("toml", text, self.path()).into_pyobject(py)?,
            None => ("dict", self.to_dict(py)?).into_pyobject(py)?,
        };
        Ok((restore, PyTuple::new(py, [state])?))
    }

    fn __repr__(&self) -> String {
        format!(
            "ImageSpec(name={:?}, version={:?}, packages={:?})",
            self.inner.name, self.inner.version, self.inner.packages
        )
    }
}

/// One finding about a spec: what is wrong, where (1-based `line` and `column`), and what to do.
#[pyclass(name = "Diagnostic", module = "staves", frozen, eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct PyDiagnostic {
    inner: Diagnostic,
}

impl From<Diagnostic> for PyDiagnostic {
    fn from(inner: Diagnostic) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl PyDiagnostic {
    /// `"error"` or `"warning"`.
    #[getter]
    fn severity(&self) -> &'static str {
        match self.inner.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }

    /// What was wrong and what to do about it.
    #[getter]
    fn message(&self) -> &str {
        &self.inner.message
    }

    /// 1-based line, when the spec came from text.
    #[getter]
    fn line(&self) -> Option<usize> {
        self.inner.line
    }

    /// 1-based column (in characters), when the spec came from text.
    #[getter]
    fn column(&self) -> Option<usize> {
        self.inner.column
    }

    /// The file the spec came from, if any.
    #[getter]
    fn path(&self) -> Option<String> {
        self.inner
            .path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// Logical key path of the offending setting, e.g. `packages[2]` (empty for file-level problems).
    #[getter]
    fn key(&self) -> &str {
        &self.inner.key
    }

    /// True for errors, false for warnings.
    #[getter]
    fn is_error(&self) -> bool {
        self.inner.is_error()
    }

    /// The diagnostic as a dict, with the keys `staves validate --format json` prints.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    fn __str__(&self) -> String {
        self.inner.render(None)
    }

    fn __repr__(&self) -> String {
        format!(
            "Diagnostic(severity={:?}, line={}, column={}, message={:?})",
            self.severity(),
            py_optional(self.inner.line),
            py_optional(self.inner.column),
            self.inner.message
        )
    }
}

/// `None` or the number, as Python writes them.
fn py_optional(value: Option<usize>) -> String {
    value.map_or_else(|| "None".to_owned(), |v| v.to_string())
}

/// `from_toml`/`from_file` only parse (the rules are run by `validate()` and `plan()`): a spec that parsed but
/// breaks rules is taken back from the error.
fn structure_only(result: Result<ImageSpec, SpecError>) -> Result<ImageSpec, SpecError> {
    match result {
        Err(SpecError::Invalid {
            spec: Some(spec), ..
        }) => Ok(*spec),
        other => other,
    }
}
