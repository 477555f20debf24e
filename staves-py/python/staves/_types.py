"""The typed values Staves hands back: reports, packages, steps, outputs, build events, and the dict shapes of a spec.

Records are frozen dataclasses: they compare by value, print readably, pickle, and ``to_dict()`` turns them into
plain dicts and lists whose keys are exactly their fields. Events carry a ``kind`` with a ``Literal`` type, so a
type checker narrows ``Event`` on ``event.kind == "log"`` (or on ``isinstance``/``match``).

The converters at the bottom are called by the extension module; they pick the fields they know from the library's
serialized values, so a field the library adds later cannot break them.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Mapping, Optional, TypedDict, Union

StepKind = Literal[
    "write-files",
    "sync",
    "check-binaries",
    "fetch-binaries",
    "build-deps",
    "direct-merge",
    "rootfs",
    "locale-generate",
    "locale-install",
    "verify-binaries",
    "libraries",
    "package-list",
    "cleanup",
    "resolve",
]
"""What a step does."""

LogStream = Literal["stdout", "stderr"]
"""Which output stream a log line came from."""

Compression = Literal["gzip", "zstd"]
"""Layer compression of a written image."""


class Locale(TypedDict):
    """The locale generated into an image: ``locale = { name, charset }`` (default ``C`` / ``UTF-8``)."""

    name: str
    charset: str


class Repository(TypedDict):
    """An extra ebuild repository (``[[repositories]]``); ``type`` is Portage's sync type, e.g. ``git``."""

    name: str
    type: str
    uri: str


class PackageConfig(TypedDict, total=False):
    """Settings for one package atom: USE flags, keywords, named environments, licenses."""

    use: List[str]
    keywords: List[str]
    env: List[str]
    license: List[str]


class ImageConfig(TypedDict, total=False):
    """Runtime settings of the image (``[image]``), as in the OCI image config."""

    cmd: List[str]
    user: str
    workdir: str
    env: Dict[str, str]
    exposed_ports: List[str]
    volumes: List[str]
    stop_signal: str


class BuildSettings(TypedDict, total=False):
    """How the image is built (``[build]``); never changes what the image holds."""

    binhost: List[str]
    """Binary package hosts to fetch from before building, after the build's own ``binhost=`` URLs."""


class RegistryOptions(TypedDict, total=False):
    """TLS, credential and timeout settings of ``docker://`` outputs (``registry=`` of ``build()`` and
    ``assemble()``)."""

    tls_verify: bool
    """Verify the registry's certificate (default True); False also allows plain HTTP."""
    insecure_registries: List[str]
    """Registries (``HOST`` or ``HOST:PORT``) that may be reached over plain HTTP; loopback always may."""
    cert_dir: str
    """A directory of ``*.crt`` CA files used instead of ``/etc/docker/certs.d/HOST:PORT``."""
    auth_file: str
    """A credentials file read first (instead of ``REGISTRY_AUTH_FILE``), then docker's ``config.json``."""
    idle_timeout: int
    """Seconds (at least 1) a request may send and receive nothing before it fails (default 60)."""
    timeout: int
    """Seconds (at least 1) one request may take in all (default 300); a blob upload gets 4 s more per MiB."""


class _ImageSpecSettings(TypedDict):
    """The keys ``ImageSpec.to_dict()`` always has."""

    name: str
    version: str
    packages: List[str]
    command: List[str]
    annotations: Dict[str, str]
    locale: Locale
    stdlib: bool
    env: Dict[str, str]
    named_envs: Dict[str, Dict[str, str]]
    repositories: List[Repository]
    package_configs: Dict[str, PackageConfig]
    image: ImageConfig


class ImageSpecDict(_ImageSpecSettings, total=False):
    """``ImageSpec.to_dict()``: the keyword arguments of ``ImageSpec(...)`` that give the same spec. ``build`` is
    there only when the spec has a non-empty ``[build]`` table."""

    build: BuildSettings


class _Record:
    """Base of the records: ``to_dict()``."""

    __slots__ = ()

    def to_dict(self) -> Dict[str, Any]:
        """The record as plain dicts and lists; its keys are the record's fields."""
        plain: Dict[str, Any] = _plain(self)
        return plain


# ---------------------------------------------------------------------------------------------------------------
# Build events


@dataclass(frozen=True)
class PreparingEvent(_Record):
    """The backend is preparing: checking images, creating containers."""

    kind: Literal["preparing"] = field(default="preparing", init=False)
    message: str


@dataclass(frozen=True)
class StepStartedEvent(_Record):
    """A step started: step ``index`` (from 1) of ``total``."""

    kind: Literal["step-started"] = field(default="step-started", init=False)
    index: int
    total: int
    label: str


@dataclass(frozen=True)
class LogEvent(_Record):
    """One line of a step's output, without its newline."""

    kind: Literal["log"] = field(default="log", init=False)
    step: int
    stream: LogStream
    line: str


@dataclass(frozen=True)
class PackageEvent(_Record):
    """emerge started merging a package: ``index`` of ``total`` in its merge list, from a binary package or not."""

    kind: Literal["package"] = field(default="package", init=False)
    step: int
    index: int
    total: int
    cpv: str
    binary: bool


@dataclass(frozen=True)
class StepFinishedEvent(_Record):
    """Step ``index`` finished successfully after ``seconds``."""

    kind: Literal["step-finished"] = field(default="step-finished", init=False)
    index: int
    seconds: float


@dataclass(frozen=True)
class ExportingEvent(_Record):
    """The rootfs is being streamed into the image writer."""

    kind: Literal["exporting"] = field(default="exporting", init=False)


@dataclass(frozen=True)
class WarningEvent(_Record):
    """Something that does not stop the build but should be known, e.g. that the local image store cannot be
    written, so the image will not be kept in it."""

    kind: Literal["warning"] = field(default="warning", init=False)
    message: str


Event = Union[
    PreparingEvent, StepStartedEvent, LogEvent, PackageEvent, StepFinishedEvent, ExportingEvent, WarningEvent
]
"""Anything ``on_event`` receives; narrow it on ``event.kind``."""

_EVENTS: Dict[str, Any] = {
    "preparing": PreparingEvent,
    "step-started": StepStartedEvent,
    "log": LogEvent,
    "package": PackageEvent,
    "step-finished": StepFinishedEvent,
    "exporting": ExportingEvent,
    "warning": WarningEvent,
}

# ---------------------------------------------------------------------------------------------------------------
# Reports


@dataclass(frozen=True)
class PushReport(_Record):
    """What a ``docker://`` output pushed: the digest the registry stores under the tag, and the blob bytes
    uploaded, already there (skipped) or mounted from another repository of the registry."""

    destination: str
    digest: str
    uploaded_bytes: int
    skipped_bytes: int
    mounted_bytes: int
    uploaded_blobs: int
    skipped_blobs: int
    mounted_blobs: int
    referrers: List[str]
    """Digests of the referrer manifests (the SBOM) pushed with the image."""
    plain_http: bool


@dataclass(frozen=True)
class WrittenOutput(_Record):
    """One destination an image was written to, and the bytes written there (for ``docker``: the archive size;
    for ``docker://``: the bytes uploaded, with the details in ``pushed``)."""

    output: str
    size: int
    pushed: Optional[PushReport] = None


@dataclass(frozen=True)
class BinhostExport(_Record):
    """What ``export_binhost()`` wrote: the directory, the packages its ``Packages`` index lists, files and bytes."""

    dir: str
    packages: List[str]
    files: int
    bytes: int


@dataclass(frozen=True)
class Package(_Record):
    """A package installed in the image: ``category/package-version``, its USE flags, its repository, and whether it
    came from a binary package (``None`` when emerge did not say)."""

    cpv: str
    use: List[str]
    repository: str
    binary: Optional[bool]


@dataclass(frozen=True)
class StepReport(_Record):
    """What one step did: its kind and label, wall time in seconds, exit code; ``repository`` for ``sync`` steps;
    ``skipped`` and its ``reason`` when the step found nothing to do (build dependencies when nothing is compiled)."""

    kind: StepKind
    label: str
    seconds: float
    exit_code: int
    repository: Optional[str] = None
    skipped: bool = False
    reason: Optional[str] = None


@dataclass(frozen=True)
class ImageReport(_Record):
    """What the image writer wrote: digests, sizes, the tag and every destination."""

    digest: str
    """The image digest: ``sha256:...`` of the OCI manifest."""
    config_digest: str
    """``sha256:...`` of the image config (Docker's image ID)."""
    layer_digest: str
    """``sha256:...`` of the compressed layer."""
    diff_id: str
    """``sha256:...`` of the uncompressed layer tar."""
    layer_size: int
    """Size of the compressed layer in bytes."""
    uncompressed_size: int
    """Size of the uncompressed layer tar in bytes."""
    tag: str
    """The image reference ``name:version``."""
    outputs: List[WrittenOutput]
    """Every destination written, in the order given."""


@dataclass(frozen=True)
class LockChange(_Record):
    """One entry that differs between the old and the new ``staves.lock``."""

    section: Literal["rootfs", "builder", "repository"]
    """Which list of the lock: rootfs packages, builder packages (build dependencies), or repositories."""
    name: str
    """``category/package`` (with ``:slot`` when not 0), or the repository name."""
    kind: Literal["added", "removed", "changed"]
    old: Optional[str]
    """The entry before: ``=category/package-version::repository`` with its USE flags, or ``name commit``."""
    new: Optional[str]
    """The entry after."""


@dataclass(frozen=True)
class ReusedImage(_Record):
    """An image written from the local image store: no build ran."""

    key: str
    """The build key that matched (``sha256:...``)."""
    built: int
    """When the stored rootfs was built (unix seconds)."""
    reason: str
    """Why the store could stand for a build."""


@dataclass(frozen=True)
class BinhostUse(_Record):
    """What became of the binary packages a build fetched from the ``binhost`` URLs, in numbers."""

    fetched: int
    """Binary packages downloaded (``fetched_from_binhost``)."""
    installed: int
    """Of those, installed from the binary package (``installed_from_binhost``)."""
    built_from_source: int
    """Of those, built from source instead: the environment check masked the binary package (built with other
    flags than the spec gives its package now), or Portage would not take it (other USE flags)."""
    not_needed: int
    """Of those, not needed by this build."""


@dataclass(frozen=True)
class LockReport(_Record):
    """What a build did with ``staves.lock``."""

    locked: bool
    """True when the build installed the versions pinned by a lock."""
    path: Optional[str]
    """The lock file used, or looked for."""
    written: bool
    """True when the build rewrote the lock (the spec or Portage's resolution changed)."""
    changes: List[LockChange]
    """The entries that changed."""
    dropped: List[str]
    """Pins left out because the changed spec excludes them."""
    hash: Optional[str] = None
    """``sha256:...`` of the lock the build followed (as rewritten, when it was)."""


@dataclass(frozen=True)
class LockedPackage(_Record):
    """One pinned package of a lock."""

    atom: str
    """``=category/package-version::repository``."""
    slot: str
    use: List[str]
    """The USE flags Portage chose: ``flag``, ``-flag``, ``(flag)``/``(-flag)`` (forced or masked by the profile)."""


@dataclass(frozen=True)
class LockResult(_Record):
    """What ``lock()`` wrote."""

    path: str
    """The lock file."""
    spec_hash: str
    """``sha256:...`` of the spec settings that decide the resolution."""
    builder_image: Optional[str]
    """The builder image ID the resolution ran in."""
    portage_image: Optional[str]
    """The portage snapshot image ID."""
    rootfs: List[LockedPackage]
    """Every package the rootfs gets."""
    builder: List[LockedPackage]
    """Every build dependency the builder gets."""
    changes: List[LockChange]
    """How the lock differs from the one that was there before (every entry is new the first time)."""


@dataclass(frozen=True)
class PackageSize(_Record):
    """The installed size of one package (Portage's ``SIZE``) and the number of files it owns."""

    cpv: str
    size: int
    files: int


@dataclass(frozen=True)
class AddedFile(_Record):
    """A file Staves itself added to the image outside any package (locale archive, libgcc, libstdc++)."""

    path: str
    """Path in the image, without the leading ``/``."""
    size: int
    reason: str


@dataclass(frozen=True)
class SizeReport(_Record):
    """The packages of an image by installed size, largest first, the total, and what Staves added."""

    packages: List[PackageSize]
    added: List[AddedFile]
    packages_total: int
    added_total: int
    total: int


@dataclass(frozen=True)
class Advisory(_Record):
    """A security advisory (GLSA) that applies to an installed package."""

    id: str
    """The GLSA id, e.g. ``202611-01``."""
    title: str
    synopsis: str
    severity: str
    cpv: str
    """The affected package as installed."""
    slot: str
    vulnerable: List[str]
    """The vulnerable ranges, e.g. ``<2``."""
    unaffected: List[str]
    """The unaffected ranges (the fix), e.g. ``>=2``."""
    references: List[str]


@dataclass(frozen=True)
class UncheckedComponent(_Record):
    """A component of an SBOM that ``audit()`` could not check (no ``pkg:ebuild`` purl, or a version Portage
    would not read)."""

    name: str
    reason: str
    """Why it could not be checked."""


@dataclass(frozen=True)
class AuditReport(_Record):
    """What ``audit()`` found: the advisories of a snapshot that apply to the packages of an SBOM."""

    image: str
    """The image the SBOM describes (``name:tag``)."""
    manifest_digest: str
    advisory_source: str
    """The snapshot image (or GLSA directory) the advisories came from."""
    snapshot_image_id: Optional[str]
    snapshot_timestamp: Optional[str]
    advisories_checked: int
    packages_checked: int
    advisories: List[Advisory]
    unchecked: List[UncheckedComponent]
    """The components that could not be checked: an audit with any is incomplete (``staves audit`` exits 8)."""

    @property
    def clean(self) -> bool:
        """True when no advisory applies."""
        return not self.advisories

    @property
    def complete(self) -> bool:
        """True when every component of the SBOM was checked."""
        return not self.unchecked


@dataclass(frozen=True)
class BuildReport(_Record):
    """What ``build()`` did: the image it wrote, the packages in it, every step, and timings in seconds."""

    image: ImageReport
    """The image written: digests, sizes, tag, destinations."""
    packages: List[Package]
    """The packages in the image."""
    steps: List[StepReport]
    """Every step, in order."""
    built_from_source: List[str]
    """Packages emerge built from source (``category/package-version``)."""
    installed_from_binary: List[str]
    """Packages emerge installed from binary packages."""
    export_seconds: float
    """Time spent streaming the rootfs into the image writer."""
    total_seconds: float
    """Total wall time, including container setup and cleanup."""
    log: List[str] = field(repr=False)
    """The lines the steps printed, in order (``on_log`` receives every line as it is printed)."""
    lock: LockReport = field(default_factory=lambda: LockReport(False, None, False, [], []))
    """Whether the build was locked by ``staves.lock``, and what changed in it."""
    fetched_from_binhost: List[str] = field(default_factory=list)
    """Binary packages fetched from the ``binhost`` URLs into the build cache (``category/package-version``):
    downloads, used or not (``installed_from_binhost`` says which were installed)."""
    merged_directly: List[str] = field(default_factory=list)
    """Of ``installed_from_binary``, the packages Staves merged into the rootfs directly, without emerge's
    per-package merge (binary packages that define no install-time phase)."""
    sbom: Optional[Dict[str, Any]] = field(default=None, repr=False)
    """The image's SBOM as an SPDX 2.3 JSON document (``None`` for backends that read no package database, such as
    ``MockBuilder``). ``build(sbom=PATH)`` also writes it to a file."""
    size: Optional[SizeReport] = None
    """The packages by installed size, the total, and what Staves added (``None`` without an SBOM)."""
    advisories: List[Advisory] = field(default_factory=list)
    """The security advisories (GLSAs) of the Portage snapshot that apply to the installed packages."""
    sbom_file: Optional[str] = None
    """Where ``build(sbom=PATH)`` wrote the SBOM."""
    reused: Optional[ReusedImage] = None
    """Set when ``build(cache_dir=...)`` wrote the image from the local image store (``steps`` is then empty)."""
    build_key: Optional[str] = None
    """The build key (``sha256:...``) when the build used a local image store."""
    installed_from_binhost: List[str] = field(default_factory=list)
    """Of ``fetched_from_binhost``, the packages installed from a binary package (never built from source in this
    build). A fetched package the environment check masked (built with other flags than the spec gives it) is built
    from source instead and is not listed."""
    binhost_use: Optional[BinhostUse] = None
    """What became of the fetched binary packages, in numbers; ``None`` when nothing was fetched."""
    store_warnings: List[str] = field(default_factory=list)
    """What the build could not do with the local image store (``cache_dir``), and why: a stored image that could
    not be used (damaged, and then rebuilt), a store that cannot be written, a layer that could not be kept. Each was
    also sent to ``on_event`` as a ``WarningEvent``."""

    @property
    def image_digest(self) -> str:
        """The image digest: ``sha256:...`` of the OCI manifest (``image.digest``)."""
        return self.image.digest

    @property
    def outputs(self) -> List[WrittenOutput]:
        """Every destination written (``image.outputs``)."""
        return self.image.outputs

    def to_dict(self) -> Dict[str, Any]:
        """The report as plain dicts and lists, keyed by field; ``log`` is left out (read ``report.log``)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "log"}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------------------
# Converters, called by the extension module with the library's serialized values.


def _event(data: Dict[str, Any]) -> Optional[Event]:
    """The event for ``data`` (``{"kind": KIND, ...}``), or None for a kind this version does not know."""
    cls = _EVENTS.get(data.get("kind", ""))
    if cls is None:
        return None
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    event: Event = cls(**{k: v for k, v in data.items() if k in known})
    return event


def _written_output(data: Mapping[str, Any]) -> WrittenOutput:
    pushed = data.get("pushed")
    return WrittenOutput(
        output=data["output"],
        size=data["size"],
        pushed=None if pushed is None else PushReport(**{f.name: pushed[f.name] for f in dataclasses.fields(PushReport)}),
    )


def _binhost_export(data: Mapping[str, Any]) -> BinhostExport:
    return BinhostExport(dir=data["dir"], packages=data["packages"], files=data["files"], bytes=data["bytes"])


def _image_report(data: Mapping[str, Any]) -> ImageReport:
    return ImageReport(
        digest=data["digest"],
        config_digest=data["config_digest"],
        layer_digest=data["layer_digest"],
        diff_id=data["diff_id"],
        layer_size=data["layer_size"],
        uncompressed_size=data["uncompressed_size"],
        tag=data["tag"],
        outputs=[_written_output(o) for o in data["outputs"]],
    )


def _size_report(data: Mapping[str, Any]) -> SizeReport:
    return SizeReport(
        packages=[PackageSize(cpv=p["cpv"], size=p["size"], files=p["files"]) for p in data["packages"]],
        added=[AddedFile(path=a["path"], size=a["size"], reason=a["reason"]) for a in data["added"]],
        packages_total=data["packages_total"],
        added_total=data["added_total"],
        total=data["total"],
    )


def _advisory(data: Mapping[str, Any]) -> Advisory:
    return Advisory(
        id=data["id"],
        title=data["title"],
        synopsis=data["synopsis"],
        severity=data["severity"],
        cpv=data["cpv"],
        slot=data["slot"],
        vulnerable=list(data["vulnerable"]),
        unaffected=list(data["unaffected"]),
        references=list(data["references"]),
    )


def _audit_report(data: Mapping[str, Any]) -> AuditReport:
    snapshot = data.get("snapshot") or {}
    return AuditReport(
        image=data["image"],
        manifest_digest=data["manifest_digest"],
        advisory_source=data["advisory_source"],
        snapshot_image_id=snapshot.get("image_id"),
        snapshot_timestamp=snapshot.get("timestamp"),
        advisories_checked=data["advisories_checked"],
        packages_checked=data["packages_checked"],
        advisories=[_advisory(a) for a in data["advisories"]],
        unchecked=[UncheckedComponent(name=u["name"], reason=u["reason"]) for u in data["unchecked"]],
    )


def _build_report(data: Mapping[str, Any], log: List[str], spdx: Optional[str] = None) -> BuildReport:
    report = data["report"]
    return BuildReport(
        image=_image_report(data["image"]),
        packages=[
            Package(cpv=p["cpv"], use=p["use"], repository=p["repository"], binary=p["binary"])
            for p in report["packages"]
        ],
        steps=[
            StepReport(
                kind=s["kind"],
                label=s["label"],
                seconds=s["duration"],
                exit_code=s["exit_code"],
                repository=s.get("repository"),
                skipped=s.get("skipped", False),
                reason=s.get("reason"),
            )
            for s in report["steps"]
        ],
        built_from_source=report["built_from_source"],
        installed_from_binary=report["installed_from_binary"],
        fetched_from_binhost=report.get("fetched_from_binhost", []),
        merged_directly=report.get("merged_directly", []),
        export_seconds=report["export_duration"],
        total_seconds=report["total_duration"],
        lock=_lock_report(data.get("lock") or {}),
        log=log,
        sbom=json.loads(spdx) if spdx is not None else None,
        size=_size_report(data["size"]) if data.get("size") is not None else None,
        advisories=[_advisory(a) for a in data.get("advisories", [])],
        sbom_file=data.get("sbom_file"),
        reused=ReusedImage(**data["reused"]) if data.get("reused") else None,
        build_key=data.get("build_key"),
        installed_from_binhost=report.get("installed_from_binhost", []),
        binhost_use=BinhostUse(**report["binhost_use"]) if report.get("binhost_use") else None,
        store_warnings=list(data.get("store_warnings", [])),
    )


def _lock_change(data: Mapping[str, Any]) -> LockChange:
    return LockChange(
        section=data["section"], name=data["name"], kind=data["kind"], old=data.get("old"), new=data.get("new")
    )


def _lock_report(data: Mapping[str, Any]) -> LockReport:
    return LockReport(
        locked=bool(data.get("locked", False)),
        path=data.get("path"),
        written=bool(data.get("written", False)),
        changes=[_lock_change(c) for c in data.get("changes", [])],
        dropped=list(data.get("dropped", [])),
        hash=data.get("hash"),
    )


def _locked_package(data: Mapping[str, Any]) -> LockedPackage:
    return LockedPackage(
        atom="={}-{}::{}".format(data["cp"], data["version"], data["repository"]), slot=data["slot"], use=data["use"]
    )


def _lock_result(data: Mapping[str, Any]) -> LockResult:
    lock = data["lock"]
    return LockResult(
        path=data["path"],
        spec_hash=lock["spec_hash"],
        builder_image=lock.get("builder_image"),
        portage_image=lock.get("portage_image"),
        rootfs=[_locked_package(p) for p in lock["rootfs"]],
        builder=[_locked_package(p) for p in lock["builder"]],
        changes=[_lock_change(c) for c in data["changes"]],
    )
