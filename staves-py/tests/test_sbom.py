"""What is in the image, from Python: the SBOM, the size report and the advisories of a real build of the hello
example (the fixture snapshot's GLSA 202611-01 affects its dev-libs/libfoo-1), ``deny_advisories`` and
``staves.audit``. These need the engine and the fixture images, like test_docker.py."""

import json
import os

import pytest

import staves
from conftest import HELLO, REPO


def test_build_returns_the_sbom_the_size_report_and_the_advisories(tmp_path, unique_images, cache_volume, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    builder_image, portage_image = unique_images
    builder = staves.DockerBuilder(builder_image, portage_image=portage_image, build_cache=cache_volume)
    layout = tmp_path / "layout"
    cdx = tmp_path / "hello.cdx.json"
    report = staves.build(
        staves.ImageSpec.from_file(HELLO),
        builder,
        [f"oci:{layout}"],
        sbom=cdx,
        sbom_format="cyclonedx-json",
    )

    assert report.sbom is not None and report.sbom["spdxVersion"] == "SPDX-2.3"
    names = {p["name"] for p in report.sbom["packages"]}
    assert {"app-misc/hello", "dev-libs/libfoo", "sys-libs/glibc", "virtual/libc"} <= names
    assert "dev-util/buildtool" not in names

    assert report.size is not None
    assert isinstance(report.size, staves.SizeReport)
    sizes = [p.size for p in report.size.packages]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 6
    assert report.size.total == report.size.packages_total + report.size.added_total
    assert any(a.reason == "locale archive" for a in report.size.added)

    assert [(a.id, a.cpv) for a in report.advisories] == [("202611-01", "dev-libs/libfoo-1")]
    assert isinstance(report.advisories[0], staves.Advisory)
    assert report.advisories[0].unaffected == [">=2"]

    assert report.sbom_file == str(cdx)
    assert json.loads(cdx.read_text())["bomFormat"] == "CycloneDX"
    assert report.to_dict()["size"]["total"] == report.size.total

    # The same document as the referrer the oci: output carries.
    index = json.loads((layout / "index.json").read_text())
    referrer = next(m for m in index["manifests"] if m.get("artifactType") == "application/spdx+json")
    manifest = json.loads((layout / "blobs" / "sha256" / referrer["digest"].split(":")[1]).read_text())
    document = (layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]).read_text()
    assert json.loads(document) == report.sbom

    # staves.audit on the written SBOM, against the snapshot image and against the GLSA directory.
    audit = staves.audit(cdx, portage_image=portage_image)
    assert isinstance(audit, staves.AuditReport)
    assert not audit.clean
    assert [a.id for a in audit.advisories] == ["202611-01"]
    assert audit.snapshot_timestamp is not None
    by_dir = staves.audit(cdx, glsa_dir=REPO / "tests" / "repo" / "metadata" / "glsa")
    assert [a.id for a in by_dir.advisories] == ["202611-01"]
    with pytest.raises(FileNotFoundError):
        staves.audit(tmp_path / "missing.json", glsa_dir=tmp_path)


def test_deny_advisories_raises_and_writes_nothing(tmp_path, unique_images, cache_volume, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    builder_image, portage_image = unique_images
    builder = staves.DockerBuilder(builder_image, portage_image=portage_image, build_cache=cache_volume)
    out = tmp_path / "hello.tar"
    sbom = tmp_path / "hello.spdx.json"
    with pytest.raises(staves.StavesError) as raised:
        staves.build(
            staves.ImageSpec.from_file(HELLO),
            builder,
            [f"oci-archive:{out}"],
            sbom=sbom,
            deny_advisories=True,
        )
    assert raised.value.exit_code == 6
    assert "202611-01" in str(raised.value)
    assert not out.exists() and not sbom.exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".staves-")] == []


def test_a_bad_sbom_format_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="sbom_format"):
        staves.build(
            staves.ImageSpec.from_file(HELLO),
            staves.MockBuilder(tmp_path),
            [f"oci:{tmp_path / 'x'}"],
            sbom_format="swid",  # type: ignore[arg-type]
        )
