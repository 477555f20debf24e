//! `staves.build()`, `staves.assemble()`, the builder backends and `staves.CancelToken`.

use crate::spec::{PyImageSpec, to_py};
use crate::{args, os_error, to_py_err};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use staves_core::{
    BuildEvent, BuildOptions, BuildRequest, Builder, CancelToken, DockerBuilder, ImageSpec,
    ImageWriter, Locale, MockBuilder, build_image, defaults,
};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How often the waiting thread looks for Ctrl-C (Python runs signal handlers only on its main thread) and for a
/// cancelled `cancel` token.
const POLL: Duration = Duration::from_millis(100);

/// Builds in a Gentoo builder container on a Docker engine.
#[pyclass(name = "DockerBuilder", module = "staves", frozen)]
pub(crate) struct PyDockerBuilder {
    pub(crate) inner: DockerBuilder,
    build_cache: String,
    ssh: bool,
    netrc: bool,
    locale: String,
}

#[pymethods]
impl PyDockerBuilder {
    /// A Docker backend, with the defaults of `staves build`. `build_cache` names the binary-package volume;
    /// `ssh` and `netrc` mount `~/.ssh` and `~/.netrc` read-only into the builder when they exist; `locale` is
    /// `LANG` inside the builder; `docker_host` defaults to `DOCKER_HOST`, else the local socket.
    #[new]
    #[pyo3(signature = (
        builder_image = staves_core::DEFAULT_BUILDER_IMAGE.to_owned(), *,
        portage_image = staves_core::DEFAULT_PORTAGE_IMAGE.to_owned(),
        build_cache = staves_core::DEFAULT_BUILD_CACHE.to_owned(), ssh = defaults::SSH, netrc = defaults::NETRC,
        locale = defaults::BUILDER_LOCALE.to_owned(), docker_host = None, network = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        builder_image: String,
        portage_image: String,
        build_cache: String,
        ssh: bool,
        netrc: bool,
        locale: String,
        docker_host: Option<String>,
        network: Option<String>,
    ) -> PyResult<Self> {
        let inner = DockerBuilder::new(builder_image)
            .map_err(|e| to_py_err(py, e))?
            .portage_image(portage_image)
            .build_cache(build_cache.clone())
            .ssh(ssh)
            .netrc(netrc)
            .locale(locale.clone())
            .docker_host(docker_host)
            .network(network)
            // Python handles SIGINT itself; `build()` turns KeyboardInterrupt into a cancel.
            .cancel_on_ctrl_c(false);
        Ok(Self {
            inner,
            build_cache,
            ssh,
            netrc,
            locale,
        })
    }

    /// The builder image.
    #[getter]
    fn builder_image(&self) -> &str {
        self.inner.builder_image_name()
    }

    /// The Portage snapshot image.
    #[getter]
    fn portage_image(&self) -> &str {
        self.inner.portage_image_name()
    }

    /// The volume that keeps binary packages between builds.
    #[getter]
    fn build_cache(&self) -> &str {
        &self.build_cache
    }

    /// Whether `~/.ssh` is mounted read-only into the builder (when it exists).
    #[getter]
    fn ssh(&self) -> bool {
        self.ssh
    }

    /// Whether `~/.netrc` is mounted read-only into the builder (when it exists).
    #[getter]
    fn netrc(&self) -> bool {
        self.netrc
    }

    /// `LANG` inside the builder.
    #[getter]
    fn locale(&self) -> &str {
        &self.locale
    }

    /// The engine address, or None for `DOCKER_HOST` / the local socket.
    #[getter]
    fn docker_host(&self) -> Option<String> {
        self.inner.docker_host_address().map(str::to_owned)
    }

    /// The Docker network the builder container joins, or None for the default bridge.
    #[getter]
    fn network(&self) -> Option<String> {
        self.inner.network_name().map(str::to_owned)
    }

    fn __repr__(&self) -> String {
        format!(
            "DockerBuilder({:?}, portage_image={:?}, build_cache={:?})",
            self.inner.builder_image_name(),
            self.inner.portage_image_name(),
            self.build_cache
        )
    }
}

impl PyDockerBuilder {
    /// The same backend with another portage snapshot image.
    pub(crate) fn with_portage_image(&self, image: String) -> staves_core::Result<DockerBuilder> {
        Ok(DockerBuilder::new(self.inner.builder_image_name())?
            .portage_image(image)
            .build_cache(self.build_cache.clone())
            .ssh(self.ssh)
            .netrc(self.netrc)
            .locale(self.locale.clone())
            .docker_host(self.inner.docker_host_address().map(str::to_owned))
            .cancel_on_ctrl_c(false))
    }
}

/// A backend for tests: runs nothing, emits the events a real build would, and yields `rootfs_dir` as the rootfs.
#[pyclass(name = "MockBuilder", module = "staves", frozen)]
pub(crate) struct PyMockBuilder {
    pub(crate) inner: MockBuilder,
    rootfs_dir: PathBuf,
}

#[pymethods]
impl PyMockBuilder {
    /// A mock whose rootfs is the content of directory `rootfs_dir`.
    #[new]
    fn new(rootfs_dir: PathBuf) -> Self {
        Self {
            inner: MockBuilder::from_dir(rootfs_dir.clone()),
            rootfs_dir,
        }
    }

    /// The directory used as the rootfs.
    #[getter]
    fn rootfs_dir(&self) -> String {
        self.rootfs_dir.to_string_lossy().into_owned()
    }

    /// The argv of every step it "ran" so far, in order.
    #[getter]
    fn steps_run(&self) -> Vec<Vec<String>> {
        self.inner
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                staves_core::MockCall::Step { argv, .. } => Some(argv),
                _ => None,
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        format!("MockBuilder({:?})", self.rootfs_dir)
    }
}

/// Cancels the builds it is passed to (`build(..., cancel=token)`); `cancel()` may be called from any thread.
///
/// A cancelled build removes its containers, writes no image and raises `BuildError`. A token stays cancelled.
#[pyclass(name = "CancelToken", module = "staves", frozen)]
pub(crate) struct PyCancelToken {
    own: CancelToken,
    /// The tokens this one is a child of: cancelling any of them cancels this one.
    parents: Vec<CancelToken>,
}

impl PyCancelToken {
    pub(crate) fn cancelled(&self) -> bool {
        self.own.is_cancelled() || self.parents.iter().any(CancelToken::is_cancelled)
    }
}

#[pymethods]
impl PyCancelToken {
    /// A token that is not cancelled.
    #[new]
    fn new() -> Self {
        Self {
            own: CancelToken::new(),
            parents: Vec::new(),
        }
    }

    /// Cancel the builds this token was passed to. Safe from any thread, any number of times.
    fn cancel(&self) {
        self.own.cancel();
    }

    /// Whether this token (or a token it is a child of) was cancelled.
    fn is_cancelled(&self) -> bool {
        self.cancelled()
    }

    /// A new token that is cancelled when this one is, and that can be cancelled on its own without cancelling
    /// this one (`build_async` uses one, so that cancelling its task leaves the caller's token alone).
    fn child(&self) -> Self {
        let mut parents = self.parents.clone();
        parents.push(self.own.clone());
        Self {
            own: CancelToken::new(),
            parents,
        }
    }

    fn __repr__(&self) -> String {
        format!("CancelToken(cancelled={})", py_bool(self.cancelled()))
    }
}

/// `True` or `False`, as Python writes them.
fn py_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// The first exception a Python callback raised; it cancels the build and is re-raised afterwards.
pub(crate) type CallbackError = Arc<Mutex<Option<PyErr>>>;

/// The event handler: calls `on_log` for each log line and `on_event` for every event, with the GIL taken per call.
///
/// Events become the records of `staves/_types.py` through its `_event` converter; a kind it does not know is
/// not passed on.
pub(crate) fn event_handler(
    on_log: Option<Py<PyAny>>,
    on_event: Option<Py<PyAny>>,
    convert: Py<PyAny>,
    cancel: CancelToken,
    failed: CallbackError,
) -> staves_core::EventHandler {
    Arc::new(move |event: &BuildEvent| {
        if cancel.is_cancelled() {
            return;
        }
        Python::attach(|py| {
            let mut result = Ok(());
            if let (Some(on_log), BuildEvent::Log { line, .. }) = (&on_log, event) {
                result = on_log.call1(py, (line.as_str(),)).map(drop);
            }
            if let (Ok(()), Some(on_event)) = (&result, &on_event) {
                result = to_py(py, event)
                    .and_then(|data| convert.call1(py, (data,)))
                    .and_then(|record| {
                        if record.is_none(py) {
                            Ok(())
                        } else {
                            on_event.call1(py, (record,)).map(drop)
                        }
                    });
            }
            if let Err(err) = result {
                failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(err);
                cancel.cancel();
            }
        });
    })
}

/// How a blocking library call (a build, a lock) runs from Python: on a helper thread, with a cancel token of its own
/// (so Ctrl-C or a failed callback never cancels the caller's token), the callbacks wired to the library's events,
/// and this thread, without the GIL, forwarding the caller's cancel and Ctrl-C every [`POLL`].
pub(crate) struct CancellableRun<'t> {
    token: CancelToken,
    caller: Option<&'t PyCancelToken>,
    callback_error: CallbackError,
    options: BuildOptions,
}

impl<'t> CancellableRun<'t> {
    /// A run that reports to `on_log`/`on_event` and follows `caller`'s cancel.
    pub(crate) fn new(
        py: Python<'_>,
        on_log: Option<Py<PyAny>>,
        on_event: Option<Py<PyAny>>,
        caller: Option<&'t PyCancelToken>,
    ) -> PyResult<Self> {
        let token = CancelToken::new();
        let callback_error = CallbackError::default();
        let mut options = BuildOptions::default().with_cancel(token.clone());
        if on_log.is_some() || on_event.is_some() {
            options = options.with_events(event_handler(
                on_log,
                on_event,
                converter(py, "_event")?.unbind(),
                token.clone(),
                callback_error.clone(),
            ));
        }
        Ok(Self {
            token,
            caller,
            callback_error,
            options,
        })
    }

    fn forward_cancel(&self) {
        if self.caller.is_some_and(PyCancelToken::cancelled) {
            self.token.cancel();
        }
    }

    /// Run `work` with the run's options. A KeyboardInterrupt or a callback's exception is raised once `work` has
    /// returned (it removes its containers first); `Ok(None)` when `work` panicked.
    pub(crate) fn run<T: Send>(
        self,
        py: Python<'_>,
        work: impl FnOnce(&BuildOptions) -> T + Send,
    ) -> PyResult<Option<T>> {
        self.forward_cancel();
        let (result, interrupt) = py.detach(|| {
            std::thread::scope(|scope| {
                let (sender, receiver) = channel();
                let options = &self.options;
                let worker = scope.spawn(move || {
                    let _ = sender.send(work(options));
                });
                let mut interrupt = None;
                let result = loop {
                    match receiver.recv_timeout(POLL) {
                        Ok(result) => break Some(result),
                        Err(RecvTimeoutError::Disconnected) => break None,
                        Err(RecvTimeoutError::Timeout) => {
                            self.forward_cancel();
                            if interrupt.is_none() {
                                if let Err(err) = Python::attach(|py| py.check_signals()) {
                                    // Keep waiting: the library removes its containers before it returns.
                                    self.token.cancel();
                                    interrupt = Some(err);
                                }
                            }
                        }
                    }
                };
                let panicked = worker.join().is_err();
                (result.filter(|_| !panicked), interrupt)
            })
        });
        if let Some(err) = interrupt {
            return Err(err);
        }
        if let Some(err) = self
            .callback_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(err);
        }
        Ok(result)
    }
}

/// A converter of `staves/_types.py`.
pub(crate) fn converter<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("staves._types")?.getattr(name)
}

/// `spec` with `build()`'s overrides applied (the CLI's `--version` and `--stdlib`, and the spec's locale).
///
/// An override that breaks a rule of the spec is a `ValueError` naming the parameter.
fn with_overrides<'a>(
    spec: &'a ImageSpec,
    version: Option<String>,
    stdlib: Option<bool>,
    locale: Option<&Bound<'_, PyAny>>,
) -> PyResult<Cow<'a, ImageSpec>> {
    if version.is_none() && stdlib.is_none() && locale.is_none() {
        return Ok(Cow::Borrowed(spec));
    }
    let mut spec = spec.clone();
    let mut overridden = Vec::new();
    if let Some(version) = version {
        spec.version = version;
        overridden.push("version");
    }
    if let Some(stdlib) = stdlib {
        spec.stdlib = stdlib;
    }
    if let Some(locale) = locale {
        spec.locale = args::from_py::<Locale>("build", "locale", "Locale", locale)?;
        overridden.push("locale");
    }
    for diagnostic in spec.validate().iter().filter(|d| d.is_error()) {
        let key = diagnostic.key.as_str();
        if let Some(name) = overridden
            .iter()
            .find(|name| key == **name || key.starts_with(&format!("{name}.")))
        {
            return Err(PyValueError::new_err(format!(
                "build(): `{name}`: {}",
                diagnostic.message
            )));
        }
    }
    Ok(Cow::Owned(spec))
}

/// Build `spec` with `builder` (`DockerBuilder` or `MockBuilder`) and write the image to every output.
///
/// Runs with the GIL released. `on_log(line)` gets each line of the build's output as it is printed;
/// `on_event(event)` gets every progress event. `cancel`, Ctrl-C (KeyboardInterrupt) or an exception in a callback
/// cancels the build and removes its containers; the exception, or `BuildError` for `cancel`, is raised after.
#[pyfunction]
#[pyo3(signature = (
    spec, builder, outputs = None, on_log = None, *, on_event = None, jobs = None, load_average = None,
    compression = defaults::COMPRESSION.to_string(), version = None, stdlib = None, locale = None, cancel = None,
    locked = false, frozen = false, binhost = None, registry = None, sbom = None,
    sbom_format = "spdx-json".to_owned(), deny_advisories = false, cache_dir = None, rebuild = false,
    offline = false, portage_merge = false, binhost_idle_timeout = None, binhost_timeout = None
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    py: Python<'_>,
    spec: &Bound<'_, PyImageSpec>,
    builder: &Bound<'_, PyAny>,
    outputs: Option<&Bound<'_, PyAny>>,
    on_log: Option<Py<PyAny>>,
    on_event: Option<Py<PyAny>>,
    jobs: Option<i64>,
    load_average: Option<f64>,
    compression: String,
    version: Option<String>,
    stdlib: Option<bool>,
    locale: Option<&Bound<'_, PyAny>>,
    cancel: Option<Py<PyCancelToken>>,
    locked: bool,
    frozen: bool,
    binhost: Option<&Bound<'_, PyAny>>,
    registry: Option<&Bound<'_, PyAny>>,
    sbom: Option<PathBuf>,
    sbom_format: String,
    deny_advisories: bool,
    cache_dir: Option<PathBuf>,
    rebuild: bool,
    offline: bool,
    portage_merge: bool,
    binhost_idle_timeout: Option<i64>,
    binhost_timeout: Option<i64>,
) -> PyResult<Py<PyAny>> {
    let outputs = args::outputs("build", outputs)?;
    let (fetch_idle, fetch_total) =
        args::binhost_timeouts("build", binhost_idle_timeout, binhost_timeout)?;
    // The local image store is opt-in here (`staves build` uses the default one): a script decides where it lives.
    let store = cache_dir
        .map(|dir| staves_core::store::ImageStore::open(Some(&dir)))
        .transpose()
        .map_err(|e| to_py_err(py, staves_core::Error::from(e)))?;
    let sbom_format: staves_core::sbom::SbomFormat = sbom_format
        .parse()
        .map_err(|e: String| PyValueError::new_err(format!("build(): `sbom_format`: {e}")))?;
    let binhosts = args::binhosts("build", binhost)?;
    let registry = args::registry("build", registry)?;
    let compression = args::compression("build", &compression)?;
    let jobs = args::jobs("build", jobs)?;
    let (backend, docker_host): (&(dyn Builder + Sync), Option<String>) =
        if let Ok(docker) = builder.cast::<PyDockerBuilder>() {
            let docker = docker.get();
            (
                &docker.inner,
                docker.inner.docker_host_address().map(str::to_owned),
            )
        } else if let Ok(mock) = builder.cast::<PyMockBuilder>() {
            (&mock.get().inner, None)
        } else {
            return Err(PyTypeError::new_err(
                "build(): `builder` must be a staves.DockerBuilder or a staves.MockBuilder",
            ));
        };
    let spec = with_overrides(&spec.get().inner, version, stdlib, locale)?;
    let spec = spec.as_ref();
    let request = BuildRequest::new(outputs)
        .jobs(jobs)
        .load_average(load_average)
        .direct_merge(!portage_merge)
        .compression(compression)
        .docker_host(docker_host)
        .lock(crate::lock::lock_options(locked, frozen))
        .binhosts(binhosts)
        .binhost_timeouts(fetch_idle, fetch_total)
        .registry(registry)
        .sbom(sbom, sbom_format)
        .deny_advisories(deny_advisories)
        .store(store)
        .rebuild(rebuild)
        .offline(offline);
    let run = CancellableRun::new(py, on_log, on_event, cancel.as_ref().map(|t| t.get()))?;
    let result = run.run(py, |options| build_image(spec, backend, &request, options))?;
    match result {
        Some(Ok(outcome)) => {
            let data = to_py(py, &outcome)?;
            let log = outcome.report.log.clone();
            // The SBOM as its SPDX 2.3 JSON text; `_build_report` parses it into a dict.
            let spdx = outcome
                .sbom
                .as_ref()
                .map(staves_core::sbom::Sbom::to_spdx_json);
            Ok(converter(py, "_build_report")?
                .call1((data, log, spdx))?
                .unbind())
        }
        Some(Err(err)) => Err(to_py_err(py, err)),
        None => Err(PyRuntimeError::new_err(
            "the build thread panicked; this is a bug in Staves",
        )),
    }
}

/// Turn an existing rootfs (a directory or a tar file) into an image of `spec` and write it to every output.
///
/// No Portage step runs: only the spec's name, version, command, annotations and `[image]` settings are used.
/// Runs with the GIL released. A missing `rootfs` raises `FileNotFoundError`.
#[pyfunction]
#[pyo3(signature = (
    rootfs, spec, outputs, *, compression = defaults::COMPRESSION.to_string(), docker_host = None, registry = None
))]
pub(crate) fn assemble(
    py: Python<'_>,
    rootfs: PathBuf,
    spec: &Bound<'_, PyImageSpec>,
    outputs: &Bound<'_, PyAny>,
    compression: String,
    docker_host: Option<String>,
    registry: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let outputs = args::outputs("assemble", Some(outputs))?;
    let writer = ImageWriter::new(&spec.get().inner)
        .compression(args::compression("assemble", &compression)?)
        .docker_host(docker_host)
        .registry(args::registry("assemble", registry)?);
    if let Err(error) = std::fs::metadata(&rootfs) {
        return Err(os_error(&error, Some(&rootfs)));
    }
    let report = py
        .detach(|| writer.write_path(&rootfs, &outputs))
        .map_err(|e| to_py_err(py, e))?;
    let data = to_py(py, &report)?;
    Ok(converter(py, "_image_report")?.call1((data,))?.unbind())
}

/// Write the binary packages of the build cache volume `build_cache` and a `Packages` index into `dir`: a binhost
/// that any static web server can serve (then build with `binhost=URL`). Runs with the GIL released.
#[pyfunction]
#[pyo3(signature = (
    build_cache, dir, *, builder_image = staves_core::DEFAULT_BUILDER_IMAGE.to_owned(), docker_host = None
))]
pub(crate) fn export_binhost(
    py: Python<'_>,
    build_cache: String,
    dir: PathBuf,
    builder_image: String,
    docker_host: Option<String>,
) -> PyResult<Py<PyAny>> {
    let export = py
        .detach(|| {
            staves_core::export_binhost(&build_cache, &dir, &builder_image, docker_host.as_deref())
        })
        .map_err(|e| to_py_err(py, e))?;
    let data = to_py(py, &export)?;
    Ok(converter(py, "_binhost_export")?.call1((data,))?.unbind())
}

/// Check the SBOM at `sbom_path` (SPDX or CycloneDX JSON, as `build(sbom=...)` writes it) against the GLSAs of the
/// Portage snapshot image `portage_image` (or of the directory `glsa_dir`). Runs with the GIL released.
#[pyfunction]
#[pyo3(signature = (sbom_path, portage_image = None, *, glsa_dir = None, docker_host = None))]
pub(crate) fn audit(
    py: Python<'_>,
    sbom_path: PathBuf,
    portage_image: Option<String>,
    glsa_dir: Option<PathBuf>,
    docker_host: Option<String>,
) -> PyResult<Py<PyAny>> {
    use staves_core::audit::AdvisorySource;
    let source = match (glsa_dir, portage_image) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "audit(): pass either `portage_image` or `glsa_dir`, not both",
            ));
        }
        (Some(dir), None) => AdvisorySource::Directory(dir),
        (None, image) => AdvisorySource::PortageImage {
            image: image.unwrap_or_else(|| staves_core::DEFAULT_PORTAGE_IMAGE.to_owned()),
            docker_host,
        },
    };
    if let Err(error) = std::fs::metadata(&sbom_path) {
        return Err(os_error(&error, Some(&sbom_path)));
    }
    let report = py
        .detach(|| staves_core::audit::audit(&sbom_path, &source))
        .map_err(|e| to_py_err(py, e))?;
    let data = to_py(py, &report)?;
    Ok(converter(py, "_audit_report")?.call1((data,))?.unbind())
}
