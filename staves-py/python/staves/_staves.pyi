"""The extension module: thin bindings of the Rust library ``staves_core``. Import everything from ``staves``."""

import os
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union, final

from staves._types import (
    AuditReport,
    BinhostExport,
    BuildReport,
    BuildSettings,
    Compression,
    Event,
    ImageConfig,
    ImageReport,
    ImageSpecDict,
    Locale,
    LockResult,
    PackageConfig,
    RegistryOptions,
    Repository,
    StepKind,
)

__all__ = [
    "audit",
    "StavesError",
    "SpecError",
    "BuildError",
    "DockerError",
    "ImageSpec",
    "Diagnostic",
    "BuildPlan",
    "Step",
    "DockerBuilder",
    "MockBuilder",
    "CancelToken",
    "plan",
    "build",
    "lock",
    "assemble",
    "cache",
    "export_binhost",
    "_restore_spec",
    "DEFAULT_PORTAGE_IMAGE",
    "DEFAULT_BUILDER_IMAGE",
    "DEFAULT_BUILD_CACHE",
    "BUILD_LABEL",
]

_Path = Union[str, "os.PathLike[str]"]
_Outputs = Union[List[str], Tuple[str, ...]]

BUILD_LABEL: str
"""The label every container a build creates carries (``io.staves.build``)."""
DEFAULT_BUILDER_IMAGE: str
"""The default builder image, ``gentoo/stage3:latest``."""
DEFAULT_PORTAGE_IMAGE: str
"""The default Portage snapshot image, ``gentoo/portage:latest``."""
DEFAULT_BUILD_CACHE: str
"""The default binary-package cache volume, ``staves-binpkgs``."""

class StavesError(Exception):
    """Base class of every error Staves raises."""

    exit_code: int
    """The code the ``staves`` CLI exits with for this error (1 spec, 3 engine, 4 build, 5 other)."""

class SpecError(StavesError):
    """A spec could not be parsed or validated (or a plan was refused because the spec is invalid)."""

    line: Optional[int]
    """1-based line of the first error, when known."""
    column: Optional[int]
    """1-based column (in characters) of the first error, when known."""
    path: Optional[str]
    """The file the spec came from, if any."""
    diagnostics: List[Diagnostic]
    """Every diagnostic, in file order."""

class BuildError(StavesError):
    """A build step failed, the build was cancelled, or the rootfs could not be exported from the builder."""

class DockerError(StavesError):
    """The Docker engine could not be reached, or refused a request."""

@final
class Diagnostic:
    """One finding about a spec: what is wrong, where, and what to do."""

    @property
    def severity(self) -> Literal["error", "warning"]:
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
        """The diagnostic as a dict (``severity``, ``message``, ``path``, ``line``, ``column``, ``key``)."""
    def __eq__(self, other: object, /) -> bool: ...

@final
class ImageSpec:
    """A parsed ``staves.toml``: what to build. Immutable; equal specs compare equal; copies and pickles keep the
    source text and path."""

    def __new__(
        cls,
        name: str,
        *,
        version: Optional[str] = None,
        packages: Optional[List[str]] = None,
        command: Optional[List[str]] = None,
        annotations: Optional[Dict[str, str]] = None,
        locale: Optional[Locale] = None,
        stdlib: bool = False,
        env: Optional[Dict[str, str]] = None,
        named_envs: Optional[Dict[str, Dict[str, str]]] = None,
        repositories: Optional[List[Repository]] = None,
        package_configs: Optional[Dict[str, PackageConfig]] = None,
        image: Optional[ImageConfig] = None,
        build: Optional[BuildSettings] = None,
    ) -> ImageSpec:
        """Build a spec in code. Keyword arguments take the shapes ``to_dict()`` returns, e.g.
        ``repositories=[{"name": "my-repo", "type": "git", "uri": "https://..."}]`` and
        ``package_configs={"app-shells/bash": {"use": ["-nls"]}}``. Version defaults to ``latest``. A wrong shape or
        an unknown key in a dict argument raises ``TypeError``."""
    @staticmethod
    def from_toml(text: str, path: Optional[_Path] = None) -> ImageSpec:
        """Parse TOML text; ``path`` is only used in diagnostics. Raises ``SpecError`` with the position."""
    @staticmethod
    def from_file(path: _Path) -> ImageSpec:
        """Read and parse a ``staves.toml``. Raises ``OSError`` (``FileNotFoundError``, ...) when it cannot be
        read, ``SpecError`` with the position on bad content."""
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
    def locale(self) -> Locale:
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
    def repositories(self) -> List[Repository]:
        """Extra ebuild repositories: ``{"name", "type", "uri"}`` dicts."""
    @property
    def package_configs(self) -> Dict[str, PackageConfig]:
        """Per-package settings: atom -> ``{"use", "keywords", "env", "license"}`` (empty lists left out)."""
    @property
    def image(self) -> ImageConfig:
        """Runtime settings (``[image]``): ``cmd``, ``user``, ``workdir``, ``env``, ... (unset ones left out)."""
    @property
    def build(self) -> BuildSettings:
        """How the image is built (``[build]``): ``binhost``, the binary package hosts a build fetches from after
        its own ``binhost=`` URLs (unset ones left out)."""
    @property
    def path(self) -> Optional[str]:
        """The file the spec was read from, if any."""
    def to_toml(self) -> str:
        """The spec as TOML; ``ImageSpec.from_toml(spec.to_toml()) == spec``."""
    def to_dict(self) -> ImageSpecDict:
        """The spec as plain dicts and lists: ``ImageSpec(**spec.to_dict()) == spec``."""
    def validate(self) -> List[Diagnostic]:
        """Check every rule; returns all errors and warnings (an empty list when the spec is fine)."""
    def __eq__(self, other: object, /) -> bool: ...
    def __copy__(self) -> ImageSpec:
        """A copy (the spec is immutable, so this is only for ``copy.copy``)."""
    def __deepcopy__(self, memo: Any, /) -> ImageSpec:
        """A copy (the spec holds no Python objects, so this is ``__copy__``)."""
    def __reduce__(self) -> Tuple[Any, ...]:
        """Pickle support: the source text and path when the spec was parsed, else its ``to_dict()``."""

@final
class Step:
    """One command of a plan."""

    @property
    def kind(self) -> StepKind:
        """What the step does."""
    @property
    def repository(self) -> Optional[str]:
        """The repository a ``sync`` step syncs; None for other steps."""
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
    def background(self) -> bool:
        """Whether the builder starts this step and goes on with the next ones without waiting for it."""
    @property
    def wait_background(self) -> bool:
        """Whether the builder waits for every background step started before this one before running it."""
    @property
    def skip_if(self) -> Optional[Dict[str, str]]:
        """When the step is skipped: ``{"path": FILE, "reason": TEXT}`` (it does nothing when an earlier step created
        FILE in the builder); None for steps that always run."""
    def to_dict(self) -> Dict[str, Any]:
        """The step as a dict: ``kind``, ``label``, ``argv``, ``env``, and ``repository``, ``background``,
        ``wait_background``, ``skip_if`` when set (the shape ``staves plan --format json`` prints)."""

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
        """The plan as plain dicts and lists (``files``, ``steps``, ``rootfs_atoms``; what ``staves plan --format
        json`` prints)."""

@final
class DockerBuilder:
    """Builds in a Gentoo builder container on a Docker engine."""

    def __new__(
        cls,
        builder_image: str = ...,
        *,
        portage_image: str = ...,
        build_cache: str = ...,
        ssh: bool = ...,
        netrc: bool = ...,
        locale: str = ...,
        docker_host: Optional[str] = None,
        network: Optional[str] = None,
    ) -> DockerBuilder:
        """A Docker backend with the defaults of ``staves build``: ``DEFAULT_BUILDER_IMAGE``,
        ``DEFAULT_PORTAGE_IMAGE``, ``DEFAULT_BUILD_CACHE``, ``~/.ssh`` and ``~/.netrc`` mounted read-only when they
        exist, ``LANG=C.UTF-8`` in the builder, and ``DOCKER_HOST`` (else the local socket) as the engine
        (``unix://``, or ``tcp://`` with ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH`` as the docker CLI reads them).
        ``network`` names a Docker network the builder container joins (e.g. where a binhost runs)."""
    @property
    def builder_image(self) -> str:
        """The builder image."""
    @property
    def portage_image(self) -> str:
        """The Portage snapshot image."""
    @property
    def build_cache(self) -> str:
        """The volume that keeps binary packages between builds."""
    @property
    def ssh(self) -> bool:
        """Whether ``~/.ssh`` is mounted read-only into the builder (when it exists)."""
    @property
    def netrc(self) -> bool:
        """Whether ``~/.netrc`` is mounted read-only into the builder (when it exists)."""
    @property
    def locale(self) -> str:
        """``LANG`` inside the builder."""
    @property
    def docker_host(self) -> Optional[str]:
        """The engine address, or None for ``DOCKER_HOST`` / the local socket."""
    @property
    def network(self) -> Optional[str]:
        """The Docker network the builder container joins, or None for the default bridge."""

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
class CancelToken:
    """Cancels the builds it is passed to (``build(..., cancel=token)``); ``cancel()`` may be called from any
    thread. A cancelled build removes its containers, writes no image and raises ``BuildError``."""

    def __new__(cls) -> CancelToken:
        """A token that is not cancelled."""
    def cancel(self) -> None:
        """Cancel the builds this token was passed to. Safe from any thread, any number of times."""
    def is_cancelled(self) -> bool:
        """Whether this token (or a token it is a child of) was cancelled."""
    def child(self) -> CancelToken:
        """A new token that is cancelled when this one is, and that can be cancelled on its own."""

def plan(
    spec: ImageSpec,
    jobs: Optional[int] = None,
    load_average: Optional[float] = None,
    portage_merge: bool = False,
    binhost_idle_timeout: Optional[int] = None,
    binhost_timeout: Optional[int] = None,
) -> BuildPlan:
    """Validate ``spec`` and lay out its build; ``jobs`` defaults to the number of CPUs, ``load_average`` (emerge's
    ``--load-average``) to no limit. ``portage_merge=True`` merges every package through emerge.
    ``binhost_idle_timeout`` and ``binhost_timeout`` (seconds) are the deadlines of each binhost download.

    Raises ``SpecError`` when the spec has errors or lists no packages, ``ValueError`` for ``jobs`` below 1, a
    ``load_average`` that is not above 0, or a timeout below 1."""

def build(
    spec: ImageSpec,
    builder: Union[DockerBuilder, MockBuilder],
    outputs: Optional[_Outputs] = None,
    on_log: Optional[Callable[[str], object]] = None,
    *,
    on_event: Optional[Callable[[Event], object]] = None,
    jobs: Optional[int] = None,
    load_average: Optional[float] = None,
    compression: Compression = ...,
    version: Optional[str] = None,
    stdlib: Optional[bool] = None,
    locale: Optional[Locale] = None,
    cancel: Optional[CancelToken] = None,
    locked: bool = False,
    frozen: bool = False,
    binhost: Optional[Union[str, List[str]]] = None,
    registry: Optional[RegistryOptions] = None,
    sbom: Optional[_Path] = None,
    sbom_format: Literal["spdx-json", "cyclonedx-json"] = ...,
    deny_advisories: bool = False,
    cache_dir: Optional[_Path] = None,
    rebuild: bool = False,
    offline: bool = False,
    portage_merge: bool = False,
    binhost_idle_timeout: Optional[int] = None,
    binhost_timeout: Optional[int] = None,
) -> BuildReport:
    """Build ``spec`` with ``builder`` and write the image to every output: ``docker`` (the default), ``oci:DIR``,
    ``oci-archive:FILE``, ``docker-archive:FILE``, ``rootfs:FILE`` or ``docker://HOST[:PORT]/REPO[:TAG]`` (pushed
    once everything else is written; ``registry`` holds its TLS, credential and timeout settings).

    ``binhost`` (a URL or a list) makes the build fetch binary packages from those binhosts first, then from the
    spec's ``[build] binhost`` (each URL once); what they lack, or have built with other flags than the spec gives
    a package, is built from source; ``report.fetched_from_binhost`` lists what was fetched, and
    ``report.installed_from_binhost`` which of those were installed. A binhost download fails when it receives no
    byte for ``binhost_idle_timeout`` seconds (default 60) or takes longer than ``binhost_timeout`` (default 1800).

    ``version``, ``stdlib`` and ``locale`` override the spec's settings of the same name for this build.
    A ``staves.lock`` next to the spec's file pins the versions (``report.lock`` says what it did); ``locked=True``
    requires it to exist and match (a missing or stale lock raises), ``frozen=True`` also forbids syncing
    repositories.
    Runs with the GIL released. ``on_log(line)`` gets each output line as it is printed; ``on_event(event)`` gets
    every progress event. ``cancel``, KeyboardInterrupt, or an exception raised by a callback cancels the build and
    removes its containers; the exception (``BuildError`` for ``cancel``) is raised after.

    With a ``DockerBuilder`` the report carries the image's SBOM (``report.sbom``, SPDX 2.3), the size report
    (``report.size``) and the security advisories of the snapshot that apply (``report.advisories``); ``oci:`` and
    ``oci-archive:`` outputs carry the SPDX SBOM as an OCI 1.1 referrer. ``sbom=PATH`` also writes it to a file
    (``sbom_format`` ``"spdx-json"`` or ``"cyclonedx-json"``). ``deny_advisories=True`` raises ``StavesError``
    before anything is tagged, written or pushed when an advisory applies.

    ``cache_dir`` turns on the local image store in that directory (``staves build`` uses ``$XDG_CACHE_HOME/staves``
    by default): when it holds an image of the same rootfs inputs (spec, builder and Portage image IDs, Staves
    version), the outputs are written from it without a container, and ``report.reused`` says so; a change to the
    image config only gets a new config and manifest. ``rebuild=True`` builds anyway; a spec with
    ``[[repositories]]`` is only reused with ``offline=True``.

    Binary packages that define no install-time phase (``pkg_setup``, ``pkg_preinst``, ``pkg_postinst``,
    ``pkg_pretend``) are merged into the rootfs by Staves directly, and emerge merges the rest and checks the result
    (``report.merged_directly`` lists them); ``portage_merge=True`` merges every package through emerge."""

def audit(
    sbom_path: _Path,
    portage_image: Optional[str] = None,
    *,
    glsa_dir: Optional[_Path] = None,
    docker_host: Optional[str] = None,
) -> AuditReport:
    """Check the SBOM at ``sbom_path`` (SPDX or CycloneDX JSON, as ``build(sbom=...)`` writes it) against the
    security advisories (GLSAs) of the Portage snapshot image ``portage_image`` (default: ``DEFAULT_PORTAGE_IMAGE``),
    or of the directory ``glsa_dir``. ``report.clean`` is True when none applies."""

def lock(
    spec: ImageSpec,
    builder: Union[DockerBuilder, MockBuilder],
    *,
    portage_image: Optional[str] = None,
    output: Optional[_Path] = None,
    on_log: Optional[Callable[[str], object]] = None,
    on_event: Optional[Callable[[Event], object]] = None,
    cancel: Optional[CancelToken] = None,
) -> LockResult:
    """Resolve ``spec`` with Portage in ``builder`` without building anything, and write ``staves.lock`` next to the
    spec's file (or to ``output``). ``portage_image`` resolves against another snapshot than the builder's.

    Runs with the GIL released; ``on_log``, ``on_event`` and ``cancel`` work as in ``build()``. A spec without a
    file needs ``output``."""

def assemble(
    rootfs: _Path,
    spec: ImageSpec,
    outputs: _Outputs,
    *,
    compression: Compression = ...,
    docker_host: Optional[str] = None,
    registry: Optional[RegistryOptions] = None,
) -> ImageReport:
    """Turn an existing rootfs (a directory or a tar file) into an image of ``spec``, with no Portage step."""

def cache(
    command: Literal["list", "prune", "clear", "du"],
    *,
    build_cache: str = ...,
    builder: str = ...,
    cache_dir: Optional[_Path] = None,
    binpkgs: bool = True,
    store: bool = True,
    keep_last: Optional[int] = None,
    older_than: Optional[int] = None,
    dry_run: bool = False,
    docker_host: Optional[str] = None,
) -> Dict[str, Any]:
    """What ``staves cache COMMAND --format json`` prints, as a dict with the keys ``binpkgs`` (the build cache
    volume ``build_cache``, handled in a short-lived container of ``builder``) and ``store`` (the local image store
    at ``cache_dir``, by default ``$XDG_CACHE_HOME/staves``); a part is None when ``binpkgs`` or ``store`` is False.

    ``prune`` takes exactly one of ``keep_last`` (keep what the last N builds used) and ``older_than`` (unix
    seconds: drop what was neither built nor used since). ``dry_run`` only says what ``prune``/``clear`` would
    remove. Raises ``ValueError`` for a bad command or prune rule, ``DockerError`` when the engine fails,
    ``StavesError`` when the volume does not exist or the cache container fails."""

def export_binhost(
    build_cache: str,
    dir: _Path,
    *,
    builder_image: str = ...,
    docker_host: Optional[str] = None,
) -> BinhostExport:
    """Write the binary packages of the build cache volume and a ``Packages`` index into ``dir`` (new, empty, or an
    earlier export, which is replaced): a binhost any static web server can serve. Portage's ``emaint binhost
    --fix`` writes the index, in a short-lived container of ``builder_image``."""

def _restore_spec(state: Tuple[Any, ...]) -> ImageSpec:
    """Pickle support: the callable ``ImageSpec.__reduce__`` names. Not for direct use."""
