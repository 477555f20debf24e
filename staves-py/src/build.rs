//! `staves.build()`, `staves.assemble()`, the builder backends and the reports.

use crate::spec::{PyImageSpec, to_py};
use crate::to_py_err;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use staves_core::{
    BuildEvent, BuildOptions, BuildOutcome, BuildRequest, Builder, CancelToken, Compression,
    DockerBuilder, ImageReport, ImageWriter, MockBuilder, Output, build_image,
};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How often the waiting thread looks for Ctrl-C (Python runs signal handlers only on its main thread).
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// Builds in a Gentoo builder container on a Docker engine.
#[pyclass(name = "DockerBuilder", module = "staves", frozen)]
pub(crate) struct PyDockerBuilder {
    inner: DockerBuilder,
}

#[pymethods]
impl PyDockerBuilder {
    /// A Docker backend. `build_cache` names the binary-package volume (`staves-binpkgs` when None); `ssh` and
    /// `netrc` mount `~/.ssh` and `~/.netrc` read-only into the builder; `docker_host` defaults to `DOCKER_HOST`.
    #[new]
    #[pyo3(signature = (
        builder_image, portage_image = "gentoo/portage:latest", build_cache = None, ssh = false,
        netrc = false, locale = "C.UTF-8", docker_host = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        builder_image: String,
        portage_image: &str,
        build_cache: Option<String>,
        ssh: bool,
        netrc: bool,
        locale: &str,
        docker_host: Option<String>,
    ) -> PyResult<Self> {
        let mut inner = DockerBuilder::new(builder_image)
            .map_err(|e| to_py_err(py, e))?
            .portage_image(portage_image)
            .ssh(ssh)
            .netrc(netrc)
            .locale(locale)
            .docker_host(docker_host)
            // Python handles SIGINT itself; `build()` turns KeyboardInterrupt into a cancel.
            .cancel_on_ctrl_c(false);
        if let Some(volume) = build_cache {
            inner = inner.build_cache(volume);
        }
        Ok(Self { inner })
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

    /// The engine address, or None for `DOCKER_HOST` / the local socket.
    #[getter]
    fn docker_host(&self) -> Option<String> {
        self.inner.docker_host_address().map(str::to_owned)
    }

    fn __repr__(&self) -> String {
        format!(
            "DockerBuilder(builder_image={:?}, portage_image={:?})",
            self.inner.builder_image_name(),
            self.inner.portage_image_name()
        )
    }
}

/// A backend for tests: runs nothing, emits the events a real build would, and yields `rootfs_dir` as the rootfs.
#[pyclass(name = "MockBuilder", module = "staves", frozen)]
pub(crate) struct PyMockBuilder {
    inner: MockBuilder,
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

/// What `staves.assemble()` wrote: digests, sizes and destinations.
#[pyclass(name = "ImageReport", module = "staves", frozen)]
pub(crate) struct PyImageReport {
    inner: ImageReport,
}

#[pymethods]
impl PyImageReport {
    /// The image digest: `sha256:...` of the OCI manifest.
    #[getter]
    fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// `sha256:...` of the image config (Docker's image ID).
    #[getter]
    fn config_digest(&self) -> &str {
        &self.inner.config_digest
    }

    /// `sha256:...` of the compressed layer.
    #[getter]
    fn layer_digest(&self) -> &str {
        &self.inner.layer_digest
    }

    /// `sha256:...` of the uncompressed layer tar.
    #[getter]
    fn diff_id(&self) -> &str {
        &self.inner.diff_id
    }

    /// Size of the compressed layer in bytes.
    #[getter]
    fn layer_size(&self) -> u64 {
        self.inner.layer_size
    }

    /// The image reference `name:version`.
    #[getter]
    fn tag(&self) -> &str {
        &self.inner.tag
    }

    /// Every destination written: a list of `{"output": "oci-archive:FILE", "size": BYTES}` dicts.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.outputs)
    }

    /// The report as a dict (what `staves assemble --format json` prints).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "ImageReport(tag={:?}, digest={:?})",
            self.inner.tag, self.inner.digest
        )
    }
}

/// What `staves.build()` did: the image it wrote and the packages in it.
#[pyclass(name = "BuildReport", module = "staves", frozen)]
pub(crate) struct PyBuildReport {
    inner: BuildOutcome,
}

#[pymethods]
impl PyBuildReport {
    /// The image digest: `sha256:...` of the OCI manifest.
    #[getter]
    fn image_digest(&self) -> &str {
        &self.inner.image.digest
    }

    /// The packages in the image: `{"cpv", "use", "repository", "binary"}` dicts.
    #[getter]
    fn packages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.report.packages)
    }

    /// Every destination written: a list of `{"output": "oci-archive:FILE", "size": BYTES}` dicts.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.image.outputs)
    }

    /// The image written: digests, sizes, tag, destinations.
    #[getter]
    fn image(&self) -> PyImageReport {
        PyImageReport {
            inner: self.inner.image.clone(),
        }
    }

    /// Every step with its kind, label, duration (seconds) and exit code.
    #[getter]
    fn steps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.report.steps)
    }

    /// Packages emerge built from source (`category/package-version`).
    #[getter]
    fn built_from_source(&self) -> Vec<String> {
        self.inner.report.built_from_source.clone()
    }

    /// Packages emerge installed from binary packages.
    #[getter]
    fn installed_from_binary(&self) -> Vec<String> {
        self.inner.report.installed_from_binary.clone()
    }

    /// Total wall time in seconds, including container setup and cleanup.
    #[getter]
    fn total_seconds(&self) -> f64 {
        self.inner.report.total_duration.as_secs_f64()
    }

    /// Every line the steps printed, in order.
    #[getter]
    fn log(&self) -> Vec<String> {
        self.inner.report.log.clone()
    }

    /// The report as a dict: `{"image": {...}, "report": {...}}` (what `staves build --format json` prints).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "BuildReport(image_digest={:?}, packages={})",
            self.inner.image.digest,
            self.inner.report.packages.len()
        )
    }
}

fn parse_outputs(py: Python<'_>, outputs: &[String]) -> PyResult<Vec<Output>> {
    outputs
        .iter()
        .map(|o| Output::from_str(o).map_err(|e| to_py_err(py, e.into())))
        .collect()
}

fn parse_compression(py: Python<'_>, compression: &str) -> PyResult<Compression> {
    Compression::from_str(compression).map_err(|e| to_py_err(py, e.into()))
}

/// The first exception a Python callback raised; it cancels the build and is re-raised afterwards.
type CallbackError = Arc<Mutex<Option<PyErr>>>;

/// The event handler: calls `on_log` for each log line and `on_event` for every event, with the GIL taken per call.
fn event_handler(
    on_log: Option<Py<PyAny>>,
    on_event: Option<Py<PyAny>>,
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
                result = to_py(py, event).and_then(|e| on_event.call1(py, (e,)).map(drop));
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

/// Build `spec` with `builder` ( `DockerBuilder` or `MockBuilder`) and write the image to every output.
///
/// Runs with the GIL released. `on_log(line)` gets each line of the build's output as it is printed;
/// `on_event(dict)` gets every progress event (`{"kind": "step-started", ...}`). Ctrl-C (KeyboardInterrupt) or an
/// exception in a callback cancels the build, removes its containers and is re-raised.
#[pyfunction]
#[pyo3(signature = (
    spec, builder, outputs = vec!["docker".to_owned()], on_log = None, *, on_event = None, jobs = None,
    load_average = None, compression = "gzip"
))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn build(
    py: Python<'_>,
    spec: &Bound<'_, PyImageSpec>,
    builder: &Bound<'_, PyAny>,
    outputs: Vec<String>,
    on_log: Option<Py<PyAny>>,
    on_event: Option<Py<PyAny>>,
    jobs: Option<usize>,
    load_average: Option<f64>,
    compression: &str,
) -> PyResult<PyBuildReport> {
    let outputs = parse_outputs(py, &outputs)?;
    let compression = parse_compression(py, compression)?;
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
    let spec = &spec.get().inner;
    let request = BuildRequest::new(outputs)
        .jobs(jobs)
        .load_average(load_average)
        .compression(compression)
        .docker_host(docker_host);
    let cancel = CancelToken::new();
    let callback_error = CallbackError::default();
    let mut options = BuildOptions::default().with_cancel(cancel.clone());
    if on_log.is_some() || on_event.is_some() {
        options = options.with_events(event_handler(
            on_log,
            on_event,
            cancel.clone(),
            callback_error.clone(),
        ));
    }

    let (result, interrupt) = py.detach(|| {
        std::thread::scope(|scope| {
            let (sender, receiver) = channel();
            let (request, options) = (&request, &options);
            let worker = scope.spawn(move || {
                let _ = sender.send(build_image(spec, backend, request, options));
            });
            let mut interrupt = None;
            let result = loop {
                match receiver.recv_timeout(SIGNAL_POLL) {
                    Ok(result) => break Some(result),
                    Err(RecvTimeoutError::Disconnected) => break None,
                    Err(RecvTimeoutError::Timeout) if interrupt.is_none() => {
                        if let Err(err) = Python::attach(|py| py.check_signals()) {
                            // Keep waiting: the build removes its containers before it returns.
                            cancel.cancel();
                            interrupt = Some(err);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
            };
            let panicked = worker.join().is_err();
            (result.filter(|_| !panicked), interrupt)
        })
    });
    if let Some(err) = interrupt {
        return Err(err);
    }
    if let Some(err) = callback_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        return Err(err);
    }
    match result {
        Some(Ok(inner)) => Ok(PyBuildReport { inner }),
        Some(Err(err)) => Err(to_py_err(py, err)),
        None => Err(PyRuntimeError::new_err(
            "the build thread panicked; this is a bug in Staves",
        )),
    }
}

/// Turn an existing rootfs (a directory or a tar file) into an image of `spec` and write it to every output.
///
/// No Portage step runs: only the spec's name, version, command, annotations and `[image]` settings are used.
/// Runs with the GIL released.
#[pyfunction]
#[pyo3(signature = (rootfs, spec, outputs, *, compression = "gzip", docker_host = None))]
pub(crate) fn assemble(
    py: Python<'_>,
    rootfs: PathBuf,
    spec: &Bound<'_, PyImageSpec>,
    outputs: Vec<String>,
    compression: &str,
    docker_host: Option<String>,
) -> PyResult<PyImageReport> {
    let outputs = parse_outputs(py, &outputs)?;
    let writer = ImageWriter::new(&spec.get().inner)
        .compression(parse_compression(py, compression)?)
        .docker_host(docker_host);
    let result = py.detach(|| writer.write_path(&rootfs, &outputs));
    result
        .map(|inner| PyImageReport { inner })
        .map_err(|e| to_py_err(py, e))
}
