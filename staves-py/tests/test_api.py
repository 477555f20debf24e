"""The public surface: names fixed by the issue, docstrings everywhere, stubs that match the module, py.typed,
records whose to_dict() keys are attributes, and defaults that are the CLI's."""

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import staves
import staves._staves
from conftest import run_cli

PACKAGE = Path(staves.__file__).parent
FIXED_NAMES = {
    "ImageSpec", "Diagnostic", "BuildPlan", "BuildReport", "DockerBuilder", "MockBuilder", "CancelToken",
    "plan", "build", "build_async", "assemble", "StavesError", "SpecError", "BuildError", "DockerError",
    "Event", "LogEvent", "StepStartedEvent", "PackageEvent", "Package", "StepReport", "WrittenOutput",
}
RECORDS = [
    staves.BuildReport, staves.ImageReport, staves.WrittenOutput, staves.Package, staves.StepReport,
    staves.PreparingEvent, staves.StepStartedEvent, staves.LogEvent, staves.PackageEvent,
    staves.StepFinishedEvent, staves.ExportingEvent, staves.WarningEvent,
]


def public_members(cls):
    return {n for n in vars(cls) if not n.startswith("_")}


def test_the_fixed_names_are_exported():
    assert FIXED_NAMES <= set(staves.__all__)
    for name in staves.__all__:
        assert hasattr(staves, name), name


def test_exception_hierarchy():
    assert issubclass(staves.StavesError, Exception)
    for sub in (staves.SpecError, staves.BuildError, staves.DockerError):
        assert issubclass(sub, staves.StavesError)
        assert sub.__module__ == "staves"


def test_every_public_class_and_function_has_a_docstring():
    for name in staves.__all__:
        obj = getattr(staves, name)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue  # constants and type aliases (Event, StepKind, ...)
        assert (obj.__doc__ or "").strip(), f"staves.{name} has no docstring"
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for member in public_members(obj):
                value = getattr(obj, member)
                if value is None or isinstance(value, str):
                    continue  # a record's default field value (an event's `kind`, `StepReport.repository`)
                assert (value.__doc__ or "").strip(), f"staves.{name}.{member} has no docstring"


def stub_tree():
    return ast.parse((PACKAGE / "_staves.pyi").read_text())


def test_stubs_list_exactly_the_runtime_classes_and_members():
    tree = stub_tree()
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}
    runtime = {n: getattr(staves._staves, n) for n in dir(staves._staves) if not n.startswith("_")}
    assert set(classes) == {n for n, v in runtime.items() if inspect.isclass(v)}
    assert functions == {n for n, v in runtime.items() if inspect.isbuiltin(v)}
    for name, node in classes.items():
        cls = runtime[name]
        if issubclass(cls, BaseException):
            continue
        stubbed = {
            item.name for item in node.body if isinstance(item, ast.FunctionDef) and not item.name.startswith("_")
        }
        assert stubbed == public_members(cls), name


def test_stub_signatures_name_the_runtime_parameters():
    for node in stub_tree().body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            runtime = inspect.signature(getattr(staves, node.name))
            stubbed = [a.arg for a in node.args.args + node.args.kwonlyargs]
            assert stubbed == list(runtime.parameters), node.name


def test_build_async_takes_the_arguments_of_build():
    assert list(inspect.signature(staves.build_async).parameters) == list(inspect.signature(staves.build).parameters)
    assert inspect.iscoroutinefunction(staves.build_async)


def test_package_is_typed():
    assert (PACKAGE / "py.typed").exists()
    assert (PACKAGE / "_staves.pyi").exists()


def test_records_to_dict_keys_are_attributes():
    for cls in RECORDS:
        assert dataclasses.is_dataclass(cls), cls
    output = staves.WrittenOutput(output="oci:x", size=3)
    image = staves.ImageReport(
        digest="sha256:1", config_digest="sha256:2", layer_digest="sha256:3", diff_id="sha256:4", layer_size=1,
        uncompressed_size=2, tag="x/y:latest", outputs=[output],
    )
    report = staves.BuildReport(
        image=image, packages=[staves.Package(cpv="a/b-1", use=["x"], repository="gentoo", binary=None)],
        steps=[staves.StepReport(kind="sync", label="Sync r", seconds=0.5, exit_code=0, repository="r")],
        built_from_source=["a/b-1"], installed_from_binary=[], export_seconds=0.1, total_seconds=2.0, log=["l"],
    )
    for record in [output, image, report, *report.packages, *report.steps, staves.LogEvent(1, "stdout", "hi")]:
        as_dict = record.to_dict()
        for key, value in as_dict.items():
            attribute = getattr(record, key)
            plain = attribute.to_dict() if hasattr(attribute, "to_dict") else attribute
            if isinstance(attribute, list):
                plain = [a.to_dict() if hasattr(a, "to_dict") else a for a in attribute]
            assert plain == value, (type(record).__name__, key)
    assert "log" not in report.to_dict()
    assert report.image_digest == "sha256:1" and report.outputs == [output]
    assert staves.LogEvent(1, "stdout", "hi").to_dict() == {"kind": "log", "step": 1, "stream": "stdout", "line": "hi"}


def test_pyclass_to_dict_keys_are_attributes(tmp_path):
    spec = staves.ImageSpec.from_toml(
        "name = 'x/y'\npackages = ['app-misc/hello']\n[[repositories]]\nname = 'r'\ntype = 'git'\nuri = '/r'\n",
        path="x.toml",
    )
    objects = [spec, staves.plan(spec, jobs=1), *staves.plan(spec, jobs=1).steps]
    objects += staves.ImageSpec(name="Bad Name").validate()
    for obj in objects:
        for key in obj.to_dict():
            assert hasattr(obj, key), (type(obj).__name__, key)


def cli_defaults():
    """`[default: X]` of each flag in `staves build --help`, and the help text."""
    text = run_cli("build", "--help").stdout
    flags, flag = {}, None
    for line in text.splitlines():
        named = re.match(r"\s+(?:-\w, )?--([a-z-]+)", line)
        if named:
            flag = named.group(1)
        default = re.search(r"\[default: (.+)\]", line)
        if default and flag:
            flags[flag] = default.group(1)
    return flags, " ".join(text.split())


def test_docker_builder_defaults_are_the_cli_defaults():
    flags, text = cli_defaults()
    builder = staves.DockerBuilder()
    assert builder.builder_image == staves.DEFAULT_BUILDER_IMAGE == flags["builder"]
    assert builder.portage_image == staves.DEFAULT_PORTAGE_IMAGE == flags["portage"]
    assert builder.build_cache == staves.DEFAULT_BUILD_CACHE == flags["build-cache"]
    assert builder.locale == flags["locale"]
    # `staves build` mounts ~/.ssh and ~/.netrc unless told --no-ssh / --no-netrc.
    assert "Mount ~/.ssh read-only into the builder when it exists (the default)" in text
    assert "Mount ~/.netrc read-only into the builder when it exists (the default)" in text
    assert builder.ssh is True and builder.netrc is True
    assert builder.docker_host is None
    assert flags["compression"] == "gzip"  # build()'s default, checked through the written image in test_build_mock


def test_cache_checks_its_arguments_and_reads_an_empty_store(tmp_path):
    with pytest.raises(ValueError, match="unknown cache command"):
        staves.cache("vacuum", binpkgs=False, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        staves.cache("prune", binpkgs=False, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        staves.cache("prune", binpkgs=False, cache_dir=tmp_path, keep_last=1, older_than=0)
    assert staves.cache("list", binpkgs=False, cache_dir=tmp_path) == {
        "binpkgs": None,
        "store": {"path": str(tmp_path), "images": []},
    }
    usage = staves.cache("du", binpkgs=False, cache_dir=tmp_path)["store"]
    assert (usage["builds"], usage["blobs"], usage["bytes"]) == (0, 0, 0)
    pruned = staves.cache("prune", binpkgs=False, cache_dir=tmp_path, keep_last=0, dry_run=True)["store"]
    assert pruned["removed_builds"] == [] and pruned["dry_run"] is True
