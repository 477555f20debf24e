"""Staves: build minimal container images with Gentoo's Portage, from Python.

Thin bindings of the Rust library ``staves_core``: the ``staves`` CLI makes the same calls.
"""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union, final

__all__ = [
    "BUILD_LABEL",
    "DEFAULT_BUILDER_IMAGE",
    "DEFAULT_PORTAGE_IMAGE",
    "BuildError",
    "BuildPlan",
    "BuildReport",
    "Diagnostic",
    "DockerBuilder",
    "DockerError",
    "ImageReport",
    "ImageSpec",
    "MockBuilder",
    "SpecError",
    "StavesError",
    "Step",
    "assemble",
    "build",
    "plan",
]

_Path = Union[str, "os.PathLike[str]"]

BUILD_LABEL: str
"""The label every container a build creates carries (``io.staves.build``)."""
DEFAULT_BUILDER_IMAGE: str
"""The default builder image, ``gentoo/stage3:latest``."""
DEFAULT_PORTAGE_IMAGE: str
"""The default Portage snapshot image, ``gentoo/portage:latest``."""

class StavesError(Exception):
    """Base class of every error Staves raises."""

    exit_code: int
    """The code the ``staves`` CLI exits with for this error (1 spec, 3 engine, 4 build, 5 other)."""

class SpecError(StavesError):
    """A spec could not be read, parsed or validated (or a plan was refused because the spec is invalid)."""

    line: Optional[int]
    """1-based line of the first error, when known."""
    column: Optional[int]
    """1-based column (in characters) of the first error, when known."""
    path: Optional[str]
    """The file the spec came from, if any."""
    diagnostics: List[Diagnostic]
    """Every diagnostic, in file order."""

class BuildError(StavesError):
    """A build step failed, or the rootfs could not be exported from the builder."""

class DockerError(StavesError):
    """The Docker engine could not be reached, or refused a request."""

@final
class Diagnostic:
    """One finding about a spec: what is wrong, where, and what to do."""

    @property
    def severity(self) -> str:
        """``"error"`` or ``"warning"``."""
    @property
    def message(self) -> str:
        """What was wrong and what to do about it."""
    @property
    def line(self) -> Optional[int]:
        """1-based line, when the spec came from text."""
    @property
    def column(self) -> Optional[int]:
        """1-based column in characters, when the spec came from text."""
    @property
    def path(self) -> Optional[str]:
        """The file the spec came from, if any."""
    @property
    def key(self) -> str:
        """Logical key path of the offending setting, e.g. ``packages[2]`` (empty for file-level problems)."""
    @property
    def is_error(self) -> bool:
        """True for errors, false for warnings."""
    def to_dict(self) -> Dict[str, Any]:
        """The diagnostic as a dict, with the keys ``staves validate --format json`` prints."""
    def __eq__(self, other: object, /) -> bool: ...

@final
class ImageSpec:
    """A parsed ``staves.toml``: what to build. Immutable; equal specs compare equal."""

    def __new__(
        cls,
        name: str,
        *,
        version: Optional[str] = None,
        packages: Optional[Sequence[str]] = None,
        command: Optional[Sequence[str]] = None,
        annotations: Optional[Mapping[str, str]] = None,
        locale: Optional[Mapping[str, str]] = None,
        stdlib: bool = False,
        env: Optional[Mapping[str, str]] = None,
        named_envs: Optional[Mapping[str, Mapping[str, str]]] = None,
        repositories: Optional[Sequence[Mapping[str, str]]] = None,
        package_configs: Optional[Mapping[str, Mapping[str, Sequence[str]]]] = None,
        image: Optional[Mapping[str, Any]] = None,
    ) -> ImageSpec:
        """Build a spec in code. Keyword arguments take the shapes ``to_dict()`` returns, e.g.
        ``repositories=[{"name": "my-repo", "type": "git", "uri": "https://..."}]`` and
        ``package_configs={"app-shells/bash": {"use": ["-nls"]}}``. Version defaults to ``latest``."""
    @staticmethod
    def from_toml(text: str, path: Optional[_Path] = None) -> ImageSpec:
        """Parse TOML text; ``path`` is only used in diagnostics. Raises ``SpecError`` with the position."""
    @staticmethod
    def from_file(path: _Path) -> ImageSpec:
        """Read and parse a ``staves.toml``. Raises ``SpecError`` with the position."""
    @property
    def name(self) -> str:
        """Image repository name, e.g. ``staves/bash``."""
    @property
    def version(self) -> str:
        """Image tag (``latest`` unless the spec says otherwise)."""
    @property
    def packages(self) -> List[str]:
        """Package atoms to install, as written."""
    @property
    def command(self) -> List[str]:
        """The image entrypoint."""
    @property
    def annotations(self) -> Dict[str, str]:
        """Image labels and manifest annotations."""
    @property
    def locale(self) -> Dict[str, str]:
        """The locale generated into the image: ``{"name": ..., "charset": ...}``."""
    @property
    def stdlib(self) -> bool:
        """Whether ``libstdc++.so.6`` is copied into the image."""
    @property
    def env(self) -> Dict[str, str]:
        """``[env]`` string values appended to ``make.conf``, in the order written."""
    @property
    def named_envs(self) -> Dict[str, Dict[str, str]]:
        """``[env.NAME]`` tables: named environments."""
    @property
    def repositories(self) -> List[Dict[str, str]]:
        """Extra ebuild repositories: ``{"name", "type", "uri"}`` dicts."""
    @property
    def package_configs(self) -> Dict[str, Dict[str, List[str]]]:
        """Per-package settings: atom -> ``{"use", "keywords", "env", "license"}`` (empty lists left out)."""
    @property
    def image(self) -> Dict[str, Any]:
        """Runtime settings (``[image]``): ``cmd``, ``user``, ``workdir``, ``env``, ... (unset ones left out)."""
    @property
    def path(self) -> Optional[str]:
        """The file the spec was read from, if any."""
    def to_toml(self) -> str:
        """The spec as TOML; ``ImageSpec.from_toml(spec.to_toml()) == spec``."""
    def to_dict(self) -> Dict[str, Any]:
        """The spec as plain dicts and lists (the shapes the constructor takes)."""
    def validate(self) -> List[Diagnostic]:
        """Check every rule; returns all errors and warnings (an empty list when the spec is fine)."""
    def __eq__(self, other: object, /) -> bool: ...

@final
class Step:
    """One command of a plan."""

    @property
    def label(self) -> str:
        """A short human label."""
    @property
    def argv(self) -> List[str]:
        """Program and arguments, run without a shell (shell steps are ``["/bin/sh", "-c", SCRIPT]``)."""
    @property
    def env(self) -> Dict[str, str]:
        """Extra environment variables for the command."""
    @property
    def kind(self) -> str:
        """``write-files``, ``sync``, ``build-deps``, ``rootfs``, ``locale-generate``, ``locale-install``, ``libraries``, ``package-list`` or
        ``cleanup``."""
    def to_dict(self) -> Dict[str, Any]:
        """The step as a dict."""

@final
class BuildPlan:
    """What a build would do: the Portage files it writes and the steps it runs."""

    @property
    def files(self) -> Dict[str, str]:
        """The Portage configuration files: absolute path -> content."""
    @property
    def steps(self) -> List[Step]:
        """The steps, in order."""
    @property
    def script(self) -> str:
        """One POSIX ``sh`` script that runs the whole plan by hand in any Gentoo container."""
    @property
    def text(self) -> str:
        """The plan for people: the files, then the steps as command lines."""
    @property
    def rootfs_atoms(self) -> List[str]:
        """The atoms installed into the rootfs (the spec's packages plus ``virtual/libc``)."""
    def to_dict(self) -> Dict[str, Any]:
        """The plan as plain dicts and lists."""

@final
class DockerBuilder:
    """Builds in a Gentoo builder container on a Docker engine."""

    def __new__(
        cls,
        builder_image: str,
        portage_image: str = "gentoo/portage:latest",
        build_cache: Optional[str] = None,
        ssh: bool = False,
        netrc: bool = False,
        locale: str = "C.UTF-8",
        docker_host: Optional[str] = None,
    ) -> DockerBuilder:
        """A Docker backend. ``build_cache`` names the binary-package volume (``staves-binpkgs`` when None);
        ``ssh``/``netrc`` mount ``~/.ssh``/``~/.netrc`` read-only; ``docker_host`` defaults to ``DOCKER_HOST``."""
    @property
    def builder_image(self) -> str:
        """The builder image."""
    @property
    def portage_image(self) -> str:
        """The Portage snapshot image."""
    @property
    def docker_host(self) -> Optional[str]:
        """The engine address, or None for ``DOCKER_HOST`` / the local socket."""

@final
class MockBuilder:
    """A backend for tests: runs nothing, emits the events a real build would, yields a directory as the rootfs."""

    def __new__(cls, rootfs_dir: _Path) -> MockBuilder:
        """A mock whose rootfs is the content of directory ``rootfs_dir``."""
    @property
    def rootfs_dir(self) -> str:
        """The directory used as the rootfs."""
    @property
    def steps_run(self) -> List[List[str]]:
        """The argv of every step it "ran" so far, in order."""

@final
class ImageReport:
    """What ``assemble()`` wrote."""

    @property
    def digest(self) -> str:
        """The image digest: ``sha256:...`` of the OCI manifest."""
    @property
    def config_digest(self) -> str:
        """``sha256:...`` of the image config (Docker's image ID)."""
    @property
    def layer_digest(self) -> str:
        """``sha256:...`` of the compressed layer."""
    @property
    def diff_id(self) -> str:
        """``sha256:...`` of the uncompressed layer tar."""
    @property
    def layer_size(self) -> int:
        """Size of the compressed layer in bytes."""
    @property
    def tag(self) -> str:
        """The image reference ``name:version``."""
    @property
    def outputs(self) -> List[Dict[str, Any]]:
        """Every destination written: ``{"output": "oci-archive:FILE", "size": BYTES}`` dicts."""
    def to_dict(self) -> Dict[str, Any]:
        """The report as a dict (what ``staves assemble --format json`` prints)."""

@final
class BuildReport:
    """What ``build()`` did."""

    @property
    def image_digest(self) -> str:
        """The image digest: ``sha256:...`` of the OCI manifest."""
    @property
    def packages(self) -> List[Dict[str, Any]]:
        """The packages in the image: ``{"cpv", "use", "repository", "binary"}`` dicts."""
    @property
    def outputs(self) -> List[Dict[str, Any]]:
        """Every destination written: ``{"output": "oci-archive:FILE", "size": BYTES}`` dicts."""
    @property
    def image(self) -> ImageReport:
        """The image written."""
    @property
    def steps(self) -> List[Dict[str, Any]]:
        """Every step with its kind, label, duration (seconds) and exit code."""
    @property
    def built_from_source(self) -> List[str]:
        """Packages emerge built from source."""
    @property
    def installed_from_binary(self) -> List[str]:
        """Packages emerge installed from binary packages."""
    @property
    def total_seconds(self) -> float:
        """Total wall time in seconds, including container setup and cleanup."""
    @property
    def log(self) -> List[str]:
        """Every line the steps printed, in order."""
    def to_dict(self) -> Dict[str, Any]:
        """The report as a dict: ``{"image": {...}, "report": {...}}``."""

def plan(spec: ImageSpec, jobs: Optional[int] = None, load_average: Optional[float] = None) -> BuildPlan:
    """Validate ``spec`` and lay out its build; ``jobs`` defaults to the number of CPUs, ``load_average`` (emerge's
    ``--load-average``) to no limit.

    Raises ``SpecError`` when the spec has errors or lists no packages, ``ValueError`` for a load average that is
    not above 0."""

def build(
    spec: ImageSpec,
    builder: Union[DockerBuilder, MockBuilder],
    outputs: Sequence[str] = ...,
    on_log: Optional[Callable[[str], object]] = None,
    *,
    on_event: Optional[Callable[[Dict[str, Any]], object]] = None,
    jobs: Optional[int] = None,
    load_average: Optional[float] = None,
    compression: str = "gzip",
) -> BuildReport:
    """Build ``spec`` with ``builder`` and write the image to every output: ``docker`` (the default), ``oci:DIR``,
    ``oci-archive:FILE``, ``docker-archive:FILE`` or ``rootfs:FILE``.

    Runs with the GIL released. ``on_log(line)`` gets each output line as it is printed; ``on_event(dict)`` gets
    every progress event. KeyboardInterrupt, or an exception raised by a callback, cancels the build, removes its
    containers and is re-raised."""

def assemble(
    rootfs: _Path,
    spec: ImageSpec,
    outputs: Sequence[str],
    *,
    compression: str = "gzip",
    docker_host: Optional[str] = None,
) -> ImageReport:
    """Turn an existing rootfs (a directory or a tar file) into an image of ``spec``, with no Portage step."""
