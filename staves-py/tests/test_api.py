"""The public surface: names fixed by the issue, docstrings everywhere, stubs that match the module, py.typed."""

import ast
import inspect
from pathlib import Path

import staves

PACKAGE = Path(staves.__file__).parent
FIXED_NAMES = {
    "ImageSpec", "Diagnostic", "BuildPlan", "BuildReport", "DockerBuilder", "MockBuilder",
    "plan", "build", "assemble", "StavesError", "SpecError", "BuildError", "DockerError",
}


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
        if isinstance(obj, str):
            continue
        assert (obj.__doc__ or "").strip(), f"staves.{name} has no docstring"
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for member in public_members(obj):
                doc = getattr(obj, member).__doc__
                assert (doc or "").strip(), f"staves.{name}.{member} has no docstring"


def stub_tree():
    return ast.parse((PACKAGE / "__init__.pyi").read_text())


def test_stubs_list_exactly_the_runtime_classes_and_members():
    tree = stub_tree()
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    runtime_classes = {n for n in staves.__all__ if inspect.isclass(getattr(staves, n))}
    runtime_functions = {n for n in staves.__all__ if inspect.isbuiltin(getattr(staves, n))}
    assert set(classes) == runtime_classes
    assert functions == runtime_functions
    for name, node in classes.items():
        cls = getattr(staves, name)
        if issubclass(cls, BaseException):
            continue
        stubbed = {
            item.name for item in node.body if isinstance(item, ast.FunctionDef) and not item.name.startswith("_")
        }
        assert stubbed == public_members(cls), name


def test_stub_signatures_name_the_runtime_parameters():
    tree = stub_tree()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            runtime = inspect.signature(getattr(staves, node.name))
            stubbed = [a.arg for a in node.args.args + node.args.kwonlyargs]
            assert stubbed == list(runtime.parameters), node.name


def test_package_is_typed():
    assert (PACKAGE / "py.typed").exists()
    assert (PACKAGE / "__init__.pyi").exists()


def test_default_images():
    builder = staves.DockerBuilder("gentoo/stage3:latest")
    assert builder.portage_image == staves.DEFAULT_PORTAGE_IMAGE
    assert builder.builder_image == staves.DEFAULT_BUILDER_IMAGE
    assert builder.docker_host is None
