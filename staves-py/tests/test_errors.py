"""Python errors: OSError for files, TypeError/ValueError for bad arguments naming the parameter, SpecError for spec
content, exit_code on every StavesError, and no CLI flags or subcommands in any message."""

import re

import pytest

import staves
from conftest import HELLO

CLI_WORDS = re.compile(r"--[a-z]|staves (validate|build|plan)|`staves ")


def assert_pythonic(err):
    """The message names no CLI flag or subcommand."""
    assert not CLI_WORDS.search(str(err)), str(err)


@pytest.fixture
def spec():
    return staves.ImageSpec.from_file(HELLO)


@pytest.fixture
def mock(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "hello").write_text("hi\n")
    return staves.MockBuilder(root)


@pytest.mark.parametrize("outputs", ["docker", "oci-archive:x.tar"])
def test_a_bare_str_for_outputs_is_a_type_error(spec, mock, outputs, tmp_path):
    with pytest.raises(TypeError, match=r"`outputs` must be a list .* not a str") as info:
        staves.build(spec, mock, outputs)
    assert_pythonic(info.value)
    with pytest.raises(TypeError, match="`outputs`"):
        staves.assemble(tmp_path, spec, outputs)


def test_outputs_of_the_wrong_shape(spec, mock):
    with pytest.raises(TypeError, match="`outputs` must be a list of str"):
        staves.build(spec, mock, [1])
    with pytest.raises(ValueError, match="`outputs` is empty"):
        staves.build(spec, mock, [])
    with pytest.raises(ValueError, match=r"`outputs`: invalid output `oci:`") as info:
        staves.build(spec, mock, ["oci:"])
    assert_pythonic(info.value)


@pytest.mark.parametrize("jobs", [0, -1, -(2**40)])
def test_jobs_below_one_is_a_value_error(spec, mock, jobs, tmp_path):
    with pytest.raises(ValueError, match=rf"build\(\): `jobs` must be at least 1, not {jobs}"):
        staves.build(spec, mock, [f"oci:{tmp_path / 'x'}"], jobs=jobs)
    with pytest.raises(ValueError, match=rf"plan\(\): `jobs` must be at least 1, not {jobs}"):
        staves.plan(spec, jobs=jobs)
    assert not (tmp_path / "x").exists()


def test_load_average_is_a_value_error_naming_the_parameter(spec, mock, tmp_path):
    with pytest.raises(ValueError, match="`load_average`") as info:
        staves.build(spec, mock, [f"oci:{tmp_path / 'x'}"], load_average=0)
    assert_pythonic(info.value)


def test_compression_is_a_value_error(spec, tmp_path):
    with pytest.raises(ValueError, match=r"assemble\(\): `compression`: invalid compression `xz`"):
        staves.assemble(tmp_path, spec, [f"oci:{tmp_path / 'x'}"], compression="xz")


def test_a_missing_rootfs_is_file_not_found(spec, tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as info:
        staves.assemble(missing, spec, [f"oci:{tmp_path / 'x'}"])
    assert info.value.filename == str(missing)


def test_an_unwritable_output_is_an_os_error(spec, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError) as info:
        staves.assemble(tmp_path, spec, [f"oci-archive:{tmp_path / 'file' / 'x.tar'}"])
    assert info.value.errno is not None
    assert_pythonic(info.value)


def test_spec_content_is_a_spec_error_with_an_exit_code():
    with pytest.raises(staves.SpecError) as info:
        staves.ImageSpec.from_toml("name = 'x/y'\npackages = 'bash'\n", path="bad.toml")
    assert info.value.exit_code == 1
    assert (info.value.line, info.value.column, info.value.path) == (2, 12, "bad.toml")
    assert_pythonic(info.value)


def test_a_plan_for_an_invalid_spec_says_what_is_wrong():
    spec = staves.ImageSpec.from_toml("name = 'x/y'\npackages = ['bash']\n", path="bad.toml")
    with pytest.raises(staves.SpecError) as info:
        staves.plan(spec)
    message = str(info.value)
    assert_pythonic(info.value)
    # Every error, with its position, is in the message itself.
    assert "bad.toml:2:13:" in message
    assert all(d.message in message for d in info.value.diagnostics)
    assert info.value.exit_code == 1


def test_an_unreachable_engine_names_the_parameter_and_the_cause(spec, tmp_path):
    socket = tmp_path / "no-engine.sock"
    builder = staves.DockerBuilder("staves-test/stage3:latest", docker_host=f"unix://{socket}")
    with pytest.raises(staves.DockerError) as info:
        staves.build(spec, builder, [f"oci-archive:{tmp_path / 'x.tar'}"])
    message = str(info.value)
    assert info.value.exit_code == 3
    assert str(socket) in message
    assert "`docker_host`" in message
    # The cause is the innermost error (the socket is missing), not the HTTP client's wrapper of it.
    assert "no socket at" in message or "not found" in message or "No such file" in message, message
    assert "hyper" not in message, message
    assert_pythonic(info.value)


def test_every_staves_error_has_an_exit_code(spec, mock, tmp_path):
    errors = []
    for call in (
        lambda: staves.ImageSpec.from_toml("name = "),
        lambda: staves.plan(staves.ImageSpec(name="x/y")),
        lambda: staves.build(spec, staves.MockBuilder(tmp_path / "missing"), [f"oci:{tmp_path / 'x'}"]),
    ):
        with pytest.raises(staves.StavesError) as info:
            call()
        errors.append(info.value)
    assert [type(e) for e in errors][:2] == [staves.SpecError, staves.SpecError]
    for err in errors:
        assert isinstance(err.exit_code, int) and err.exit_code > 0
        assert_pythonic(err)
