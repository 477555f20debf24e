//! `staves.cache()`: the operations of `staves cache` on the binary package volume and the local image store.

use crate::spec::to_py;
use crate::to_py_err;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use staves_core::BinpkgCache;
use staves_core::cache::BinpkgPrune;
use staves_core::store::{ImageStore, StorePrune};
use std::path::PathBuf;

/// Run `command` (`list`, `prune`, `clear` or `du`) and return what `staves cache COMMAND --format json` prints.
#[pyfunction]
#[pyo3(signature = (
    command, *, build_cache = staves_core::DEFAULT_BUILD_CACHE.to_owned(),
    builder = staves_core::DEFAULT_BUILDER_IMAGE.to_owned(), cache_dir = None, binpkgs = true, store = true,
    keep_last = None, older_than = None, dry_run = false, docker_host = None
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn cache(
    py: Python<'_>,
    command: &str,
    build_cache: String,
    builder: String,
    cache_dir: Option<PathBuf>,
    binpkgs: bool,
    store: bool,
    keep_last: Option<usize>,
    older_than: Option<u64>,
    dry_run: bool,
    docker_host: Option<String>,
) -> PyResult<Py<PyAny>> {
    if !["list", "prune", "clear", "du"].contains(&command) {
        return Err(PyValueError::new_err(format!(
            "`command`: unknown cache command {command:?}; use 'list', 'prune', 'clear' or 'du'"
        )));
    }
    let rules = match (command, keep_last, older_than) {
        ("prune", Some(n), None) => Some((BinpkgPrune::KeepLast(n), StorePrune::KeepLast(n))),
        ("prune", None, Some(t)) => Some((BinpkgPrune::OlderThan(t), StorePrune::UsedSince(t))),
        ("prune", _, _) => {
            return Err(PyValueError::new_err(
                "`keep_last`, `older_than`: prune needs exactly one of them",
            ));
        }
        _ => None,
    };
    let volume = binpkgs.then(|| BinpkgCache::new(build_cache, builder).docker_host(docker_host));
    let image_store = if store {
        Some(ImageStore::open(cache_dir.as_deref()).map_err(|e| to_py_err(py, e.into()))?)
    } else {
        None
    };
    let result = py.detach(|| -> staves_core::Result<serde_json::Value> {
        let (binpkgs, store): (serde_json::Value, serde_json::Value) = match (command, rules) {
            ("list", _) => (
                json(volume.as_ref().map(BinpkgCache::list).transpose()?),
                json(
                    image_store
                        .as_ref()
                        .map(|s| -> staves_core::Result<_> {
                            Ok(serde_json::json!({"path": s.path(), "images": s.list()?}))
                        })
                        .transpose()?,
                ),
            ),
            ("du", _) => (
                json(volume.as_ref().map(BinpkgCache::disk_usage).transpose()?),
                json(
                    image_store
                        .as_ref()
                        .map(ImageStore::disk_usage)
                        .transpose()?,
                ),
            ),
            ("clear", _) => (
                json(volume.as_ref().map(|c| c.clear(dry_run)).transpose()?),
                json(image_store.as_ref().map(|s| s.clear(dry_run)).transpose()?),
            ),
            (_, Some((binpkg_rule, store_rule))) => (
                json(
                    volume
                        .as_ref()
                        .map(|c| c.prune(binpkg_rule, dry_run))
                        .transpose()?,
                ),
                json(
                    image_store
                        .as_ref()
                        .map(|s| s.prune(store_rule, dry_run))
                        .transpose()?,
                ),
            ),
            _ => (serde_json::Value::Null, serde_json::Value::Null),
        };
        Ok(serde_json::json!({"binpkgs": binpkgs, "store": store}))
    });
    let value = result.map_err(|e| to_py_err(py, e))?;
    Ok(to_py(py, &value)?.unbind())
}

fn json<T: serde::Serialize>(value: Option<T>) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
