"""Typed use of the module. `mypy --strict` checks this file (tests/run.sh runs it after pytest), so it shows what
a type checker knows: `event.kind` narrows an `Event`, report fields have types, a spec's dict shapes are
TypedDicts. The last test runs mypy on code that must not type-check."""

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest

import staves

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello" / "staves.toml"


def describe(event: staves.Event) -> str:
    """One line per event; each branch uses fields only that kind of event has."""
    if event.kind == "step-started":
        return f"step {event.index}/{event.total}: {event.label}"
    if event.kind == "log":
        return f"{event.stream}: {event.line}"
    if event.kind == "package":
        return f"{event.cpv} ({'binary' if event.binary else 'source'})"
    if event.kind == "step-finished":
        return f"step {event.index} took {event.seconds:.1f}s"
    if event.kind == "preparing":
        return event.message
    if event.kind == "warning":
        return f"warning: {event.message}"
    exporting: staves.ExportingEvent = event  # every other kind was handled above
    return exporting.kind


def make_rootfs(parent: Path) -> Path:
    root = parent / "rootfs"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "hello").write_text("#!/bin/sh\necho hello\n")
    return root


def test_a_typed_build(tmp_path: Path) -> None:
    spec = staves.ImageSpec.from_file(HELLO)
    lines: List[str] = []
    report = staves.build(
        spec, staves.MockBuilder(make_rootfs(tmp_path)), [f"oci:{tmp_path / 'layout'}"],
        on_event=lambda event: lines.append(describe(event)), jobs=2,
    )
    digest: str = report.image_digest
    sizes: List[int] = [output.size for output in report.outputs]
    kinds: List[staves.StepKind] = [step.kind for step in report.steps]
    assert digest.startswith("sha256:") and sizes and kinds[0] == "write-files"
    assert any(line.startswith("step 1/") for line in lines)
    assert report.to_dict()["image"]["digest"] == digest
    # The mock reads no package database: no SBOM, no size report, no advisory.
    size: "staves.SizeReport | None" = report.size
    advisories: List[staves.Advisory] = report.advisories
    assert report.sbom is None and size is None and advisories == []


def test_a_typed_audit(tmp_path: Path) -> None:
    glsa = Path(__file__).resolve().parents[2] / "tests" / "repo" / "metadata" / "glsa"
    sbom = tmp_path / "sbom.spdx.json"
    sbom.write_text(
        '{"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "x:1",'
        ' "documentNamespace": "https://example.invalid/x", "creationInfo": {"created": "1970-01-01T00:00:00Z",'
        ' "creators": ["Tool: test"]}, "packages": [{"SPDXID": "SPDXRef-Package-libfoo", "name": "dev-libs/libfoo",'
        ' "versionInfo": "1", "downloadLocation": "NOASSERTION", "filesAnalyzed": false, "externalRefs":'
        ' [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",'
        ' "referenceLocator": "pkg:ebuild/dev-libs/libfoo@1"}], "comment": "slot: 0"}]}'
    )
    report: staves.AuditReport = staves.audit(sbom, glsa_dir=glsa)
    ids: List[str] = [advisory.id for advisory in report.advisories]
    assert not report.clean and ids == ["202611-01"]
    assert report.complete and report.unchecked == []


def test_an_audit_lists_what_it_could_not_check(tmp_path: Path) -> None:
    glsa = Path(__file__).resolve().parents[2] / "tests" / "repo" / "metadata" / "glsa"
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_text(
        '{"bomFormat": "CycloneDX", "specVersion": "1.5", "metadata": {"component": {"name": "x", "version": "1"}},'
        ' "components": [{"type": "library", "name": "dev-libs/libfoo", "version": "notaversion",'
        ' "purl": "pkg:ebuild/dev-libs/libfoo@notaversion"}, {"type": "library", "name": "no-purl"}]}'
    )
    report: staves.AuditReport = staves.audit(sbom, glsa_dir=glsa)
    unchecked: List[staves.UncheckedComponent] = report.unchecked
    assert report.clean and not report.complete and report.packages_checked == 0
    assert [u.name for u in unchecked] == ["dev-libs/libfoo notaversion", "no-purl"]
    assert "is not a Portage version" in unchecked[0].reason


def test_a_typed_async_build_and_spec(tmp_path: Path) -> None:
    image: staves.ImageConfig = {"user": "1000", "env": {"LANG": "C.UTF-8"}}
    locale: staves.Locale = {"name": "en_US", "charset": "UTF-8"}
    spec = staves.ImageSpec(name="staves-test/typed", packages=["app-misc/hello"], image=image, locale=locale)
    assert staves.ImageSpec(**spec.to_dict()) == spec
    token = staves.CancelToken()
    report = asyncio.run(
        staves.build_async(spec, staves.MockBuilder(make_rootfs(tmp_path)), [f"oci:{tmp_path / 'l'}"], cancel=token)
    )
    assert report.image.tag == "staves-test/typed:latest"
    assert not token.is_cancelled()


MUST_NOT_TYPE_CHECK = textwrap.dedent(
    """\
    import staves
    spec = staves.ImageSpec(name="x/y", image={"usr": "1"})
    staves.build(spec, staves.MockBuilder("rootfs"), "docker")
    staves.build(spec, staves.MockBuilder("rootfs"), ["docker"], compression="xz")
    def on_event(event: staves.Event) -> None:
        print(event.line)
    report = staves.build(spec, staves.MockBuilder("rootfs"), ["docker"], on_event=on_event)
    report.packages[0]["cpv"]
    """
)


def test_mypy_refuses_wrong_uses() -> None:
    pytest.importorskip("mypy")
    package_parent = str(Path(staves.__file__).resolve().parents[1])
    env = dict(os.environ)
    if "site-packages" not in package_parent:  # run from a source tree: show mypy where the package is
        env["MYPYPATH"] = package_parent
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--show-error-codes", "-c",
         MUST_NOT_TYPE_CHECK],
        capture_output=True, text=True, env=env,
    )
    errors = {int(line.split(":")[1]) for line in proc.stdout.splitlines() if ": error:" in line}
    # image={"usr": ...}, outputs as a str, an unknown compression, .line on any event, a record used as a dict.
    assert errors == {2, 3, 4, 6, 8}, proc.stdout + proc.stderr
