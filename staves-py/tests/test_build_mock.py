"""build() with the MockBuilder and assemble(): same image digests as the `staves` CLI, events, errors."""

import os
import tarfile

import pytest

import staves
from conftest import HELLO, cli_json


@pytest.fixture
def rootfs(tmp_path):
    """A small rootfs directory: a binary-looking file, a config file, a symlink, an empty directory."""
    root = tmp_path / "rootfs"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "var" / "empty").mkdir(parents=True)
    hello = root / "usr" / "bin" / "hello"
    hello.write_bytes(b"#!/bin/sh\necho Hello, world\n")
    hello.chmod(0o755)
    (root / "etc" / "os-release").write_text("NAME=staves-test\n")
    os.symlink("usr/bin", root / "bin")
    return root


@pytest.fixture
def hello_spec():
    return staves.ImageSpec.from_file(HELLO)


def test_mock_build_digest_equals_the_cli_assemble(tmp_path, rootfs, hello_spec):
    ours = tmp_path / "py.tar"
    theirs = tmp_path / "cli.tar"
    lines = []
    report = staves.build(hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{ours}"], on_log=lines.append)
    cli = cli_json("assemble", "--rootfs", rootfs, "--config", HELLO, "--output", f"oci-archive:{theirs}")
    assert report.image_digest.startswith("sha256:")
    assert report.image_digest == cli["digest"]
    assert report.image.config_digest == cli["config_digest"]
    assert ours.read_bytes() == theirs.read_bytes()
    assert report.outputs == [{"output": f"oci-archive:{ours}", "size": ours.stat().st_size}]
    assert report.image.tag == "staves-test/hello:latest"
    assert lines, "the mock build emits log lines"
    with tarfile.open(ours) as archive:
        names = archive.getnames()
    assert "index.json" in names and "oci-layout" in names


def test_assemble_equals_the_cli_for_a_directory_and_a_tar(tmp_path, rootfs, hello_spec):
    out = tmp_path / "assembled.tar"
    report = staves.assemble(rootfs, hello_spec, [f"oci-archive:{out}"])
    cli = cli_json("assemble", "--rootfs", rootfs, "--config", HELLO, "--output", f"oci-archive:{tmp_path / 'c.tar'}")
    assert report.digest == cli["digest"]
    assert report.to_dict()["digest"] == cli["digest"]
    # The same rootfs as a tar file, in any order, gives the same image.
    rootfs_tar = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs_tar, "w") as archive:
        for path in sorted(rootfs.rglob("*"), reverse=True):
            archive.add(path, arcname=str(path.relative_to(rootfs)), recursive=False)
    from_tar = staves.assemble(rootfs_tar, hello_spec, [f"rootfs:{tmp_path / 'layer.tar'}"])
    assert from_tar.diff_id == report.diff_id


def test_mock_build_runs_every_step_of_the_plan(tmp_path, rootfs, hello_spec):
    builder = staves.MockBuilder(rootfs)
    events = []
    staves.build(hello_spec, builder, [f"oci:{tmp_path / 'layout'}"], on_event=events.append, jobs=2)
    plan = staves.plan(hello_spec, jobs=2)
    assert builder.steps_run == [s.argv for s in plan.steps]
    started = [e["label"] for e in events if e["kind"] == "step-started"]
    assert started == [s.label for s in plan.steps]
    assert (tmp_path / "layout" / "index.json").exists()


def test_invalid_outputs_and_builders(tmp_path, rootfs, hello_spec):
    with pytest.raises(staves.StavesError, match="unknown output type"):
        staves.build(hello_spec, staves.MockBuilder(rootfs), ["tarball:/x"])
    with pytest.raises(staves.StavesError):
        staves.build(hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{tmp_path / 'x'}"], compression="xz")
    with pytest.raises(TypeError, match="builder"):
        staves.build(hello_spec, object(), [f"oci-archive:{tmp_path / 'x'}"])


def test_an_invalid_spec_is_not_built(tmp_path, rootfs):
    spec = staves.ImageSpec(name="x/y", packages=["not an atom"])
    out = tmp_path / "never.tar"
    with pytest.raises(staves.SpecError) as info:
        staves.build(spec, staves.MockBuilder(rootfs), [f"oci-archive:{out}"])
    assert info.value.diagnostics
    assert not out.exists()


def test_a_missing_rootfs_is_a_build_error(tmp_path, hello_spec):
    out = tmp_path / "never.tar"
    with pytest.raises(staves.StavesError):
        staves.build(hello_spec, staves.MockBuilder(tmp_path / "missing"), [f"oci-archive:{out}"])
    assert not out.exists()


def test_an_exception_in_on_log_stops_the_build_and_is_raised(tmp_path, rootfs, hello_spec):
    out = tmp_path / "never.tar"

    def boom(line):
        raise ValueError(f"stop at {line!r}")

    with pytest.raises(ValueError, match="stop at"):
        staves.build(hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{out}"], on_log=boom)
    assert not out.exists()
