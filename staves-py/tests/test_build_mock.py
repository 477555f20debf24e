"""build() with the MockBuilder and assemble(): same image digests as the `staves` CLI, events, errors."""

import asyncio
import os
import tarfile
import threading

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
    assert report.outputs == [staves.WrittenOutput(output=f"oci-archive:{ours}", size=ours.stat().st_size)]
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
    started = [e.label for e in events if isinstance(e, staves.StepStartedEvent)]
    assert started == [s.label for s in plan.steps]
    assert (tmp_path / "layout" / "index.json").exists()


def test_invalid_outputs_and_builders(tmp_path, rootfs, hello_spec):
    with pytest.raises(ValueError, match="unknown output type"):
        staves.build(hello_spec, staves.MockBuilder(rootfs), ["tarball:/x"])
    with pytest.raises(ValueError, match="`compression`"):
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


def test_events_are_typed_records_in_order(tmp_path, rootfs, hello_spec):
    events = []
    report = staves.build(hello_spec, staves.MockBuilder(rootfs), [f"oci:{tmp_path / 'l'}"], on_event=events.append)
    kinds = {type(e): e.kind for e in events}
    assert kinds[staves.StepStartedEvent] == "step-started"
    assert kinds[staves.LogEvent] == "log"
    assert all(isinstance(e, staves._types._EVENTS[e.kind]) for e in events)
    finished = [e for e in events if isinstance(e, staves.StepFinishedEvent)]
    assert [e.index for e in finished] == list(range(1, len(report.steps) + 1))
    assert [s.kind for s in report.steps] == [s.kind for s in staves.plan(hello_spec).steps]
    assert all(isinstance(s, staves.StepReport) and s.exit_code == 0 for s in report.steps)
    logs = [e.line for e in events if isinstance(e, staves.LogEvent)]
    assert logs == report.log


def test_overrides_change_the_tag_and_libraries(tmp_path, rootfs, hello_spec):
    report = staves.build(
        hello_spec, staves.MockBuilder(rootfs), [f"oci:{tmp_path / 'l'}"], version="1.2", stdlib=True,
        locale={"name": "en_US", "charset": "UTF-8"},
    )
    assert report.image.tag == "staves-test/hello:1.2"
    builder = staves.MockBuilder(rootfs)
    staves.build(hello_spec, builder, [f"oci:{tmp_path / 'm'}"], stdlib=True, locale={"name": "en_US", "charset": "UTF-8"})
    overridden = staves.ImageSpec(**{**hello_spec.to_dict(), "stdlib": True, "locale": {"name": "en_US", "charset": "UTF-8"}})
    assert builder.steps_run == [s.argv for s in staves.plan(overridden).steps]
    assert builder.steps_run != [s.argv for s in staves.plan(hello_spec).steps]
    assert hello_spec.version == "latest" and hello_spec.stdlib is False  # the spec itself is untouched


def test_a_bad_override_is_a_value_error_naming_the_parameter(tmp_path, rootfs, hello_spec):
    out = tmp_path / "never.tar"
    with pytest.raises(ValueError, match=r"^build\(\): `version`: ") as info:
        staves.build(hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{out}"], version="bad tag!")
    assert "--version" not in str(info.value) and "staves validate" not in str(info.value)
    with pytest.raises(ValueError, match=r"^build\(\): `locale`: "):
        staves.build(hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{out}"], locale={"name": "a b", "charset": "UTF-8"})
    with pytest.raises(TypeError, match="locale"):
        staves.build(hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{out}"], locale="en_US.UTF-8")
    assert not out.exists()


def test_a_cancelled_token_stops_the_build_before_it_writes(tmp_path, rootfs, hello_spec):
    token = staves.CancelToken()
    token.cancel()
    out = tmp_path / "never.tar"
    with pytest.raises(staves.BuildError) as info:
        staves.build(hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{out}"], cancel=token)
    assert info.value.exit_code == 4
    assert not out.exists()
    # A child is cancelled with its parent, and cancelling a child leaves the parent alone.
    parent = staves.CancelToken()
    child = parent.child()
    child.cancel()
    assert child.is_cancelled() and not parent.is_cancelled()
    grandchild = parent.child().child()
    parent.cancel()
    assert grandchild.is_cancelled()
    # An uncancelled token lets the build run.
    report = staves.build(hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{out}"], cancel=staves.CancelToken())
    assert report.image_digest.startswith("sha256:")


def test_build_async_gives_the_same_image_and_calls_back_on_the_loop(tmp_path, rootfs, hello_spec):
    blocking = staves.build(hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{tmp_path / 'a.tar'}"])

    async def main():
        loop_thread = threading.get_ident()
        threads, lines, events = set(), [], []

        def on_log(line):
            threads.add(threading.get_ident())
            lines.append(line)

        report = await staves.build_async(
            hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{tmp_path / 'b.tar'}"], on_log, on_event=events.append
        )
        return report, threads, lines, events, loop_thread

    report, threads, lines, events, loop_thread = asyncio.run(main())
    assert report.image_digest == blocking.image_digest
    assert threads == {loop_thread}
    assert lines == report.log
    assert [e.label for e in events if isinstance(e, staves.StepStartedEvent)] == [s.label for s in report.steps]
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_build_async_raises_what_a_callback_raised(tmp_path, rootfs, hello_spec):
    out = tmp_path / "never.tar"

    def boom(line):
        raise LookupError(line)

    with pytest.raises(LookupError):
        asyncio.run(staves.build_async(hello_spec, staves.MockBuilder(rootfs), [f"oci-archive:{out}"], boom))
    # (Callbacks run on the event loop, after the line was printed: the mock's build is over by then, so whether an
    # image was written is not asserted here; a real build is cancelled as for task.cancel().)
    with pytest.raises(TypeError, match="not a str"):
        asyncio.run(staves.build_async(hello_spec, staves.MockBuilder(rootfs), "docker"))
