"""ImageSpec: parsing, validation, construction in code, round trips; positions and messages agree with Rust."""

import copy
import pickle

import pytest

import staves
from conftest import EXAMPLES, MALFORMED, cli_json

EXAMPLE_SPECS = sorted(EXAMPLES.glob("*/staves.toml"))
MALFORMED_SPECS = sorted(MALFORMED.glob("*.toml"))


def as_rows(diagnostics):
    return [(d["severity"], d["line"], d["column"], d["message"], d["key"]) for d in diagnostics]


def python_diagnostics(path):
    """What the module reports for a file: the parse error's diagnostics, else validate()."""
    try:
        spec = staves.ImageSpec.from_file(path)
    except staves.SpecError as err:
        return err, [d.to_dict() for d in err.diagnostics]
    return None, [d.to_dict() for d in spec.validate()]


def test_examples_and_corpus_are_there():
    names = {p.parent.name for p in EXAMPLE_SPECS}
    assert {"bash", "hello"} <= names
    assert len(MALFORMED_SPECS) >= 10


@pytest.mark.parametrize("path", EXAMPLE_SPECS, ids=lambda p: p.parent.name)
def test_examples_parse_and_validate_like_rust(path):
    spec = staves.ImageSpec.from_file(path)
    assert spec.path == str(path)
    diagnostics = spec.validate()
    assert not [d for d in diagnostics if d.is_error], diagnostics
    rust = cli_json("validate", "--config", path)
    assert as_rows(d.to_dict() for d in diagnostics) == as_rows(rust)


@pytest.mark.parametrize("path", MALFORMED_SPECS, ids=lambda p: p.stem)
def test_malformed_spec_matches_rust(path):
    err, ours = python_diagnostics(path)
    rust = cli_json("validate", "--config", path)
    assert ours, f"{path.name}: the module found nothing wrong"
    if err is None:
        # Parsed: validate() is the whole story, exactly as `staves validate` tells it.
        assert as_rows(ours) == as_rows(rust)
    else:
        # Did not parse: `staves validate` parses leniently and may add rule diagnostics, but every parse
        # diagnostic must be there with the same position and message.
        for row in as_rows(ours):
            assert row in as_rows(rust), f"{path.name}: {row} not in {as_rows(rust)}"
        first = next(d for d in err.diagnostics if d.is_error)
        assert (err.line, err.column) == (first.line, first.column)
        assert err.path == str(path)
        assert first.message in str(err)
        assert err.exit_code == 1
        assert isinstance(err, staves.StavesError)


def test_parse_error_carries_the_position():
    text = "name = 'x/y'\npackages = 'app-shells/bash'\n"
    with pytest.raises(staves.SpecError) as info:
        staves.ImageSpec.from_toml(text, path="inline.toml")
    err = info.value
    assert (err.line, err.column, err.path) == (2, 12, "inline.toml")
    assert "packages" in err.diagnostics[0].message
    assert err.diagnostics[0].severity == "error"


def test_syntax_error_is_a_spec_error_not_a_crash():
    with pytest.raises(staves.SpecError) as info:
        staves.ImageSpec.from_toml("name = 'unterminated\n")
    assert info.value.line == 1
    assert info.value.column is not None
    assert info.value.path is None


def test_a_missing_file_is_file_not_found(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(FileNotFoundError) as info:
        staves.ImageSpec.from_file(missing)
    assert info.value.filename == str(missing)
    assert "--config" not in str(info.value)


def test_a_directory_is_an_os_error(tmp_path):
    with pytest.raises(IsADirectoryError) as info:
        staves.ImageSpec.from_file(tmp_path)
    assert info.value.filename == str(tmp_path)


def test_properties_of_the_bash_example():
    spec = staves.ImageSpec.from_file(EXAMPLES / "bash" / "staves.toml")
    assert spec.name == "staves/bash"
    assert spec.version == "latest"
    assert spec.packages == ["app-shells/bash"]
    assert spec.command == ["/bin/bash", "-c"]
    assert spec.package_configs == {"app-shells/bash": {"use": ["-nls"]}}
    assert spec.repositories == []
    assert spec.annotations == {}
    assert spec.env == {}
    assert spec.image == {}
    assert spec.locale == {"name": "C", "charset": "UTF-8"}
    assert spec.stdlib is False


FULL = """\
name = 'staves/full'
version = '1.2'
packages = ['app-shells/bash', '=dev-libs/foo-1.0']
command = ['/bin/bash']
stdlib = true
locale = { name = 'en_US', charset = 'UTF-8' }

[annotations]
'org.opencontainers.image.title' = 'full'

[env]
CFLAGS = '-O2 -pipe'
MAKEOPTS = '-j2'

[env.nocache]
FEATURES = '-buildpkg'

['app-shells/bash']
use = ['-nls', 'readline']

['=dev-libs/foo-1.0']
env = ['nocache']
keywords = ['~amd64']

[[repositories]]
name = 'my-repo'
type = 'git'
uri = 'https://example.com/my-overlay.git'

[image]
cmd = ['-c', 'echo hi']
user = '1000:1000'
workdir = '/work'
env = { LANG = 'C.UTF-8' }
"""


def test_every_field_is_readable():
    spec = staves.ImageSpec.from_toml(FULL)
    assert spec.version == "1.2"
    assert spec.packages == ["app-shells/bash", "=dev-libs/foo-1.0"]
    assert spec.stdlib is True
    assert spec.locale == {"name": "en_US", "charset": "UTF-8"}
    assert spec.annotations == {"org.opencontainers.image.title": "full"}
    assert list(spec.env.items()) == [("CFLAGS", "-O2 -pipe"), ("MAKEOPTS", "-j2")]
    assert spec.named_envs == {"nocache": {"FEATURES": "-buildpkg"}}
    assert spec.repositories == [{"name": "my-repo", "type": "git", "uri": "https://example.com/my-overlay.git"}]
    assert spec.package_configs == {
        "app-shells/bash": {"use": ["-nls", "readline"]},
        "=dev-libs/foo-1.0": {"env": ["nocache"], "keywords": ["~amd64"]},
    }
    assert spec.image == {"cmd": ["-c", "echo hi"], "user": "1000:1000", "workdir": "/work", "env": {"LANG": "C.UTF-8"}}
    assert not [d for d in spec.validate() if d.is_error]


@pytest.mark.parametrize("path", EXAMPLE_SPECS, ids=lambda p: p.parent.name)
def test_round_trip_of_the_examples(path):
    spec = staves.ImageSpec.from_file(path)
    again = staves.ImageSpec.from_toml(spec.to_toml())
    assert again == spec
    assert again.to_dict() == spec.to_dict()


def test_round_trip_of_every_field():
    spec = staves.ImageSpec.from_toml(FULL)
    again = staves.ImageSpec.from_toml(spec.to_toml())
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    assert staves.ImageSpec(**spec.to_dict()) == spec


def test_construction_in_code_equals_parsing():
    built = staves.ImageSpec(
        name="staves/bash",
        packages=["app-shells/bash"],
        command=["/bin/bash", "-c"],
        package_configs={"app-shells/bash": {"use": ["-nls"]}},
    )
    assert built == staves.ImageSpec.from_file(EXAMPLES / "bash" / "staves.toml")
    assert built.path is None
    assert staves.ImageSpec.from_toml(built.to_toml()) == built


def test_inequality():
    a = staves.ImageSpec(name="x/y", packages=["app-misc/hello"])
    b = staves.ImageSpec(name="x/y", packages=["app-misc/hello"], version="2")
    assert a != b
    assert a == staves.ImageSpec(name="x/y", packages=["app-misc/hello"])


def test_validate_a_spec_built_in_code():
    spec = staves.ImageSpec(name="Bad Name", packages=["bash"])
    diagnostics = spec.validate()
    errors = [d for d in diagnostics if d.severity == "error"]
    assert len(errors) >= 2, diagnostics
    assert all(d.line is None and d.column is None for d in errors)
    keys = {d.key for d in errors}
    assert "name" in keys
    assert "packages[0]" in keys


def test_equality_copy_and_pickle_keep_the_spec_and_its_positions(tmp_path):
    path = tmp_path / "staves.toml"
    path.write_text("name = 'x/y'\n\npackages = ['app-misc/hello', 'bash']\n")
    parsed = staves.ImageSpec.from_file(path)
    in_code = staves.ImageSpec(name="x/y", packages=["app-misc/hello", "bash"], image={"user": "1000"})
    for spec in (parsed, in_code):
        for other in (copy.copy(spec), copy.deepcopy(spec), pickle.loads(pickle.dumps(spec))):
            assert other == spec
            assert other.path == spec.path
            assert other.to_dict() == spec.to_dict()
            assert [(d.line, d.column, d.path, d.message) for d in other.validate()] == [
                (d.line, d.column, d.path, d.message) for d in spec.validate()
            ]
    # The positions survive a pickle: the bad atom is on line 3 of the file.
    again = pickle.loads(pickle.dumps(parsed))
    assert [(d.line, d.key) for d in again.validate() if d.is_error] == [(3, "packages[1]")]
    assert in_code != parsed
    assert in_code != "x/y"


def test_an_unknown_key_in_a_dict_argument_is_a_type_error():
    with pytest.raises(TypeError, match=r'`image` has an unknown key at image\["usr"\].*staves.ImageConfig'):
        staves.ImageSpec(name="x/y", image={"usr": "1"})
    with pytest.raises(TypeError, match=r'repositories\[0\]\["urii"\]'):
        staves.ImageSpec(name="x/y", repositories=[{"name": "r", "type": "git", "uri": "/r", "urii": "/r"}])
    with pytest.raises(TypeError, match=r'locale\["nmae"\]'):
        staves.ImageSpec(name="x/y", locale={"name": "C", "charset": "UTF-8", "nmae": "C"})
    with pytest.raises(TypeError, match=r'package_configs\["app-shells/bash"\]\["usee"\]'):
        staves.ImageSpec(name="x/y", package_configs={"app-shells/bash": {"usee": ["-nls"]}})


def test_wrong_types_in_the_constructor_raise_type_error():
    with pytest.raises(TypeError):
        staves.ImageSpec(name="x/y", packages="app-shells/bash")
    with pytest.raises(TypeError, match="repositories"):
        staves.ImageSpec(name="x/y", repositories=[{"name": "r"}])
    with pytest.raises(TypeError):
        staves.ImageSpec(name="x/y", unknown=1)


def test_spec_is_read_only():
    spec = staves.ImageSpec(name="x/y")
    with pytest.raises(AttributeError):
        spec.name = "other"
